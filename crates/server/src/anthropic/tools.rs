//! Anthropic tool definitions as the OpenAI-style functions chat templates
//! take. A tool with `defer_loading: true` stays out of the prompt until a
//! `tool_reference` block in a tool result names it, as Anthropic's tool
//! search does; `cache_control` and `eager_input_streaming` change nothing.

use std::collections::HashSet;

use serde_json::{Map, Value, json};

use crate::error::ApiError;

/// Keys a custom tool may have.
const TOOL_KEYS: [&str; 8] = [
    "type",
    "name",
    "description",
    "input_schema",
    "cache_control",
    "defer_loading",
    "eager_input_streaming",
    "strict",
];

/// One tool, as the template will see it.
#[derive(Debug, Clone)]
struct Tool {
    name: String,
    function: Value,
    deferred: bool,
}

/// The request's tools.
#[derive(Debug, Clone, Default)]
pub struct Tools(Vec<Tool>);

impl Tools {
    /// Reads `tools`; server tools (`web_search_...`, `bash_...`) are refused.
    pub fn read(tools: Option<&[Value]>) -> Result<Tools, ApiError> {
        let mut out = Vec::new();
        for (index, tool) in tools.unwrap_or_default().iter().enumerate() {
            let param = format!("tools.{index}");
            let fields = tool
                .as_object()
                .ok_or_else(|| ApiError::invalid(&param, format!("{param} must be an object")))?;
            out.push(read_tool(fields, &param)?);
        }
        Ok(Tools(out))
    }

    /// The functions to offer: every tool not deferred, and deferred ones
    /// that a `tool_reference` in the conversation has loaded.
    pub fn offered(&self, referenced: &HashSet<String>) -> Vec<Value> {
        self.0
            .iter()
            .filter(|tool| !tool.deferred || referenced.contains(&tool.name))
            .map(|tool| tool.function.clone())
            .collect()
    }
}

fn read_tool(fields: &Map<String, Value>, param: &str) -> Result<Tool, ApiError> {
    match fields.get("type").and_then(Value::as_str) {
        None | Some("custom") => {}
        Some(kind) => {
            return Err(ApiError::unsupported(
                &format!("{param}.type"),
                &format!("the server tool {kind:?} (only custom tools with input_schema are)"),
            ));
        }
    }
    if let Some(key) = fields.keys().find(|k| !TOOL_KEYS.contains(&k.as_str())) {
        let param = format!("{param}.{key}");
        return Err(ApiError::unsupported(&param, &format!("`{param}`")));
    }
    if fields.get("strict").and_then(Value::as_bool) == Some(true) {
        return Err(ApiError::unsupported(
            &format!("{param}.strict"),
            "strict tool input (schema-constrained decoding)",
        ));
    }
    let name = fields
        .get("name")
        .and_then(Value::as_str)
        .filter(|n| !n.is_empty())
        .ok_or_else(|| {
            ApiError::invalid(&format!("{param}.name"), format!("{param} needs a `name`"))
        })?;
    let schema = fields
        .get("input_schema")
        .filter(|s| s.is_object())
        .ok_or_else(|| {
            ApiError::invalid(
                &format!("{param}.input_schema"),
                format!("{param} needs an `input_schema` object"),
            )
        })?;
    let description = match fields.get("description") {
        None | Some(Value::Null) => Value::Null,
        Some(Value::String(text)) => Value::String(text.clone()),
        Some(_) => {
            return Err(ApiError::invalid(
                &format!("{param}.description"),
                format!("{param}.description must be a string"),
            ));
        }
    };
    Ok(Tool {
        name: name.to_string(),
        function: json!({
            "type": "function",
            "function": {"name": name, "description": description, "parameters": schema},
        }),
        deferred: fields.get("defer_loading").and_then(Value::as_bool) == Some(true),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(functions: &[Value]) -> Vec<&str> {
        functions
            .iter()
            .filter_map(|f| f["function"]["name"].as_str())
            .collect()
    }

    #[test]
    fn deferred_tools_wait_for_a_reference() {
        let schema = json!({"type": "object"});
        let tools = Tools::read(Some(&[
            json!({"name": "Read", "input_schema": schema, "cache_control": {"type": "ephemeral"}}),
            json!({"name": "Cron", "input_schema": schema, "defer_loading": true}),
        ][..]))
        .expect("tools");
        assert_eq!(names(&tools.offered(&HashSet::new())), ["Read"]);
        let loaded = HashSet::from(["Cron".to_string()]);
        assert_eq!(names(&tools.offered(&loaded)), ["Read", "Cron"]);
    }

    #[test]
    fn server_tools_and_unknown_keys_are_refused() {
        let search = Tools::read(Some(
            &[json!({"type": "web_search_20250305", "name": "web_search"})][..],
        ));
        assert_eq!(
            search.expect_err("server tool").param.as_deref(),
            Some("tools.0.type")
        );
        let odd = Tools::read(Some(
            &[json!({"name": "x", "input_schema": {}, "frob": 1})][..],
        ));
        assert_eq!(
            odd.expect_err("unknown key").param.as_deref(),
            Some("tools.0.frob")
        );
    }
}
