//! The Responses API's `tools` and `tool_choice`, turned into the function
//! tools the chat templates take, and the model's calls turned back into
//! the items each kind of tool answers with.
//!
//! - `function` tools are offered as they are.
//! - `custom` tools (free-form input) are offered as a function with one
//!   string argument, `input`; a call answers as a `custom_tool_call`.
//! - `namespace` tools offer the function and custom tools they group; a
//!   call answers with its namespace.
//! - Hosted tools (`web_search`, `file_search`, ...) run on OpenAI's side:
//!   Orchard cannot run them, so they are not offered, and never an error
//!   (Codex CLI sends `web_search` with every request).

use std::collections::HashMap;

use orchard_core::chat::{ToolCall, ToolChoice};
use serde_json::{Value, json};

use crate::error::ApiError;

/// What a tool the model may call answers with.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Kind {
    Function,
    Custom,
}

#[derive(Debug, Clone)]
struct Known {
    kind: Kind,
    namespace: Option<String>,
}

/// The request's tools, as offered to the model.
#[derive(Debug, Default)]
pub(super) struct Tools {
    /// Chat-style function tools for the template.
    pub(super) offered: Vec<Value>,
    known: HashMap<String, Known>,
}

impl Tools {
    pub(super) fn read(tools: Option<&[Value]>) -> Result<Tools, ApiError> {
        let mut read = Tools::default();
        for (index, tool) in tools.unwrap_or_default().iter().enumerate() {
            let param = format!("tools[{index}]");
            match tool.get("type").and_then(Value::as_str) {
                Some("namespace") => {
                    let namespace = name(tool, &param)?;
                    let inner = tool.get("tools").and_then(Value::as_array).ok_or_else(|| {
                        ApiError::invalid(&param, "a namespace tool needs a `tools` list")
                    })?;
                    for (i, tool) in inner.iter().enumerate() {
                        let param = format!("{param}.tools[{i}]");
                        match tool.get("type").and_then(Value::as_str) {
                            Some("function" | "custom") => {
                                read.add(tool, Some(namespace.clone()), &param)?
                            }
                            _ => {
                                return Err(ApiError::invalid(
                                    &param,
                                    "a namespace groups tools of type \"function\" or \"custom\"",
                                ));
                            }
                        }
                    }
                }
                Some("function" | "custom") => read.add(tool, None, &param)?,
                Some(_) => {
                    tracing::debug!(tool = %tool, "a hosted tool is not offered to the model");
                }
                None => {
                    return Err(ApiError::invalid(
                        &param,
                        "a tool needs a `type`: function, custom or namespace",
                    ));
                }
            }
        }
        Ok(read)
    }

    fn add(
        &mut self,
        tool: &Value,
        namespace: Option<String>,
        param: &str,
    ) -> Result<(), ApiError> {
        let name = name(tool, param)?;
        if self.known.contains_key(&name) {
            return Err(ApiError::invalid(
                param,
                format!("two tools are named {name:?}; tool names must be unique"),
            ));
        }
        let description = tool.get("description").and_then(Value::as_str);
        let (kind, parameters) = if tool.get("type").and_then(Value::as_str) == Some("custom") {
            (Kind::Custom, custom_parameters(tool.get("format")))
        } else {
            let parameters = match tool.get("parameters") {
                None | Some(Value::Null) => json!({"type": "object", "properties": {}}),
                Some(object @ Value::Object(_)) => object.clone(),
                Some(_) => {
                    return Err(ApiError::invalid(
                        &format!("{param}.parameters"),
                        "parameters must be a JSON Schema object",
                    ));
                }
            };
            (Kind::Function, parameters)
        };
        let mut function = json!({"name": name, "parameters": parameters});
        if let Some(description) = description {
            function["description"] = json!(description);
        }
        self.offered
            .push(json!({"type": "function", "function": function}));
        self.known.insert(name, Known { kind, namespace });
        Ok(())
    }

    /// `tool_choice`, and the tools it leaves offered.
    pub(super) fn choice(&mut self, value: Option<&Value>) -> Result<ToolChoice, ApiError> {
        let choice = match value {
            None | Some(Value::Null) => ToolChoice::Auto,
            Some(Value::String(mode)) => mode_choice(mode)?,
            Some(object) => match object.get("type").and_then(Value::as_str) {
                Some("function" | "custom") => {
                    let name = object.get("name").and_then(Value::as_str).ok_or_else(|| {
                        ApiError::invalid("tool_choice", "tool_choice needs the tool's `name`")
                    })?;
                    if !self.known.contains_key(name) {
                        return Err(ApiError::invalid(
                            "tool_choice",
                            format!("tool_choice names the tool {name:?}, which is not in tools"),
                        ));
                    }
                    ToolChoice::Function(name.to_string())
                }
                Some("allowed_tools") => {
                    let mode = object.get("mode").and_then(Value::as_str).unwrap_or("auto");
                    let allowed: Vec<&str> = object
                        .get("tools")
                        .and_then(Value::as_array)
                        .map(|tools| {
                            tools
                                .iter()
                                .filter_map(|t| t.get("name").and_then(Value::as_str))
                                .collect()
                        })
                        .unwrap_or_default();
                    self.offered.retain(|tool| {
                        tool["function"]["name"]
                            .as_str()
                            .is_some_and(|name| allowed.contains(&name))
                    });
                    mode_choice(mode)?
                }
                Some(hosted) => {
                    return Err(ApiError::unsupported(
                        "tool_choice",
                        &format!("forcing the hosted tool {hosted:?}, which Orchard cannot run"),
                    ));
                }
                None => {
                    return Err(ApiError::invalid(
                        "tool_choice",
                        "tool_choice is \"auto\", \"none\", \"required\" or {\"type\": \"function\", \"name\": ...}",
                    ));
                }
            },
        };
        if self.offered.is_empty()
            && matches!(choice, ToolChoice::Required | ToolChoice::Function(_))
        {
            return Err(ApiError::invalid(
                "tool_choice",
                "tool_choice asks for a tool call, but no function or custom tool is offered",
            ));
        }
        Ok(choice)
    }

    /// Whether `name` is a custom tool (free-form input).
    pub(super) fn is_custom(&self, name: &str) -> bool {
        self.known
            .get(name)
            .is_some_and(|known| known.kind == Kind::Custom)
    }

    /// The output item for one of the model's calls, with the item's `id`.
    pub(super) fn call_item(&self, id: &str, call: &ToolCall) -> Value {
        let known = self.known.get(&call.name);
        if known.is_some_and(|k| k.kind == Kind::Custom) {
            return json!({
                "type": "custom_tool_call", "id": id, "call_id": call.id, "name": call.name,
                "input": custom_input(&call.arguments), "status": "completed",
            });
        }
        let mut item = json!({
            "type": "function_call", "id": id, "call_id": call.id, "name": call.name,
            "arguments": call.arguments, "status": "completed",
        });
        if let Some(namespace) = known.and_then(|k| k.namespace.as_ref()) {
            item["namespace"] = json!(namespace);
        }
        item
    }
}

fn name(tool: &Value, param: &str) -> Result<String, ApiError> {
    match tool.get("name").and_then(Value::as_str) {
        Some(name) if !name.is_empty() => Ok(name.to_string()),
        _ => Err(ApiError::invalid(param, "a tool needs a `name`")),
    }
}

fn mode_choice(mode: &str) -> Result<ToolChoice, ApiError> {
    match mode {
        "auto" => Ok(ToolChoice::Auto),
        "none" => Ok(ToolChoice::None),
        "required" => Ok(ToolChoice::Required),
        other => Err(ApiError::invalid(
            "tool_choice",
            format!("unknown tool_choice {other:?}; use auto, none, required or a tool"),
        )),
    }
}

/// A custom tool's one argument; its grammar, when it has one, is told to
/// the model in the argument's description.
fn custom_parameters(format: Option<&Value>) -> Value {
    let mut input = json!({"type": "string", "description": "The tool's input, as free text."});
    if let Some(format) = format
        && format.get("type").and_then(Value::as_str) == Some("grammar")
        && let Some(definition) = format.get("definition").and_then(Value::as_str)
    {
        let syntax = format
            .get("syntax")
            .and_then(Value::as_str)
            .unwrap_or("lark");
        input["description"] = json!(format!(
            "The tool's input, as free text in this {syntax} grammar:\n{definition}"
        ));
    }
    json!({"type": "object", "properties": {"input": input}, "required": ["input"]})
}

/// A custom tool's input from the arguments the model wrote: the `input`
/// string, or the arguments as written when they are not that.
pub(super) fn custom_input(arguments: &str) -> String {
    match serde_json::from_str::<Value>(arguments) {
        Ok(Value::Object(mut object)) => match object.remove("input") {
            Some(Value::String(input)) => input,
            _ => arguments.to_string(),
        },
        _ => arguments.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codex_like_tools_are_offered_as_functions_and_hosted_ones_dropped() {
        let tools = vec![
            json!({"type": "function", "name": "exec_command", "parameters": {"type": "object", "properties": {"cmd": {"type": "string"}}}}),
            json!({"type": "custom", "name": "apply_patch", "description": "Patch files.", "format": {"type": "grammar", "syntax": "lark", "definition": "start: \"*** Begin Patch\""}}),
            json!({"type": "namespace", "name": "agents", "tools": [{"type": "function", "name": "close_agent"}]}),
            json!({"type": "web_search", "external_web_access": false}),
        ];
        let mut read = Tools::read(Some(&tools)).expect("tools");
        let names: Vec<&str> = read
            .offered
            .iter()
            .map(|t| t["function"]["name"].as_str().expect("name"))
            .collect();
        assert_eq!(names, ["exec_command", "apply_patch", "close_agent"]);
        let patch = &read.offered[1]["function"]["parameters"]["properties"]["input"];
        assert!(
            patch["description"]
                .as_str()
                .expect("description")
                .contains("*** Begin Patch")
        );

        let call = |name: &str, arguments: &str| ToolCall {
            id: "call_1".into(),
            name: name.into(),
            arguments: arguments.into(),
        };
        let custom = read.call_item(
            "ctc_1",
            &call("apply_patch", r#"{"input": "*** Begin Patch"}"#),
        );
        assert_eq!(custom["type"], "custom_tool_call");
        assert_eq!(custom["input"], "*** Begin Patch");
        let grouped = read.call_item("fc_1", &call("close_agent", "{}"));
        assert_eq!(grouped["type"], "function_call");
        assert_eq!(grouped["namespace"], "agents");
        assert!(
            read.call_item("fc_2", &call("exec_command", "{}"))
                .get("namespace")
                .is_none()
        );

        let forced = json!({"type": "custom", "name": "apply_patch"});
        assert_eq!(
            read.choice(Some(&forced)).expect("choice"),
            ToolChoice::Function("apply_patch".into())
        );
        let allowed = json!({"type": "allowed_tools", "mode": "required", "tools": [{"type": "function", "name": "close_agent"}]});
        assert_eq!(
            read.choice(Some(&allowed)).expect("allowed"),
            ToolChoice::Required
        );
        assert_eq!(read.offered.len(), 1);
    }

    #[test]
    fn bad_tools_are_refused_with_the_field_named() {
        let duplicate = vec![
            json!({"type": "function", "name": "a"}),
            json!({"type": "custom", "name": "a"}),
        ];
        let error = Tools::read(Some(&duplicate)).expect_err("duplicate");
        assert_eq!(error.param.as_deref(), Some("tools[1]"));
        let unnamed = vec![json!({"type": "function"})];
        assert!(Tools::read(Some(&unnamed)).is_err());
        let mut none = Tools::read(Some(&[json!({"type": "web_search"})])).expect("hosted only");
        assert!(none.choice(Some(&json!("required"))).is_err());
        assert!(none.choice(Some(&json!({"type": "web_search"}))).is_err());
        assert_eq!(
            none.choice(Some(&json!("auto"))).expect("auto"),
            ToolChoice::Auto
        );
    }
}
