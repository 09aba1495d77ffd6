//! The `clear_tool_uses_20250919` context edit: once a prompt is longer than
//! its trigger, the results of all but the last few tool uses are replaced by
//! a short note (and, if asked, their inputs emptied), so a long agent
//! session keeps fitting the model's context.

use std::collections::HashSet;

use serde_json::{Map, Value, json};

use super::types::InMessage;
use crate::error::ApiError;

/// What a cleared tool result says instead.
pub const CLEARED: &str = "[tool result cleared to save context]";

/// When clearing starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trigger {
    /// The prompt has more tokens than this.
    InputTokens(usize),
    /// The conversation has more tool uses than this.
    ToolUses(usize),
}

/// The edit's settings, with Anthropic's defaults.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClearToolUses {
    pub trigger: Trigger,
    /// The last this many tool uses stay as they are.
    pub keep: usize,
    /// Clear only if that frees at least this many tokens.
    pub clear_at_least: usize,
    /// Tools whose uses are never cleared.
    pub exclude: HashSet<String>,
    /// Also empty the cleared calls' inputs.
    pub clear_inputs: bool,
}

impl ClearToolUses {
    /// Reads the edit at `param` (its keys already checked).
    pub fn read(fields: &Map<String, Value>, param: &str) -> Result<ClearToolUses, ApiError> {
        let exclude = match fields.get("exclude_tools") {
            None | Some(Value::Null) => HashSet::new(),
            Some(Value::Array(names)) => names
                .iter()
                .map(|n| n.as_str().map(str::to_string))
                .collect::<Option<HashSet<String>>>()
                .ok_or_else(|| {
                    ApiError::invalid(
                        &format!("{param}.exclude_tools"),
                        format!("{param}.exclude_tools must be a list of tool names"),
                    )
                })?,
            Some(_) => {
                return Err(ApiError::invalid(
                    &format!("{param}.exclude_tools"),
                    format!("{param}.exclude_tools must be a list of tool names"),
                ));
            }
        };
        let clear_inputs = match fields.get("clear_tool_inputs") {
            None | Some(Value::Null) => false,
            Some(Value::Bool(clear)) => *clear,
            Some(_) => {
                return Err(ApiError::invalid(
                    &format!("{param}.clear_tool_inputs"),
                    format!("{param}.clear_tool_inputs must be true or false"),
                ));
            }
        };
        let trigger = match fields
            .get("trigger")
            .and_then(|t| t.get("type"))
            .and_then(Value::as_str)
        {
            Some("tool_uses") => {
                Trigger::ToolUses(amount(fields, param, "trigger", "tool_uses", 0)?)
            }
            _ => Trigger::InputTokens(amount(fields, param, "trigger", "input_tokens", 100_000)?),
        };
        Ok(ClearToolUses {
            trigger,
            keep: amount(fields, param, "keep", "tool_uses", 3)?,
            clear_at_least: amount(fields, param, "clear_at_least", "input_tokens", 0)?,
            exclude,
            clear_inputs,
        })
    }

    /// Whether a prompt of `prompt_tokens` made of `messages` is to be cleared.
    pub fn triggered(&self, prompt_tokens: usize, messages: &[InMessage]) -> bool {
        match self.trigger {
            Trigger::InputTokens(limit) => prompt_tokens > limit,
            Trigger::ToolUses(limit) => tool_uses(messages).len() > limit,
        }
    }

    /// `messages` with the older tool uses cleared, and how many were.
    pub fn apply(&self, messages: &[InMessage]) -> (Vec<InMessage>, usize) {
        let uses = tool_uses(messages);
        let older = uses.len().saturating_sub(self.keep);
        let cleared: HashSet<&str> = uses[..older]
            .iter()
            .filter(|(_, name)| !self.exclude.contains(name))
            .map(|(id, _)| id.as_str())
            .collect();
        let mut count = HashSet::new();
        let mut out = messages.to_vec();
        for message in &mut out {
            let Value::Array(blocks) = &mut message.content else {
                continue;
            };
            for block in blocks {
                match kind(block) {
                    Some("tool_result") => {
                        let Some(id) = text(block, "tool_use_id").filter(|id| cleared.contains(id))
                        else {
                            continue;
                        };
                        if block.get("content") != Some(&json!(CLEARED)) {
                            count.insert(id.to_string());
                            block["content"] = json!(CLEARED);
                        }
                    }
                    Some("tool_use") if self.clear_inputs => {
                        let Some(id) = text(block, "id").filter(|id| cleared.contains(id)) else {
                            continue;
                        };
                        if block.get("input") != Some(&json!({})) {
                            count.insert(id.to_string());
                            block["input"] = json!({});
                        }
                    }
                    _ => {}
                }
            }
        }
        (out, count.len())
    }
}

/// The (id, name) of each tool use, oldest first.
fn tool_uses(messages: &[InMessage]) -> Vec<(String, String)> {
    messages
        .iter()
        .filter(|m| m.role == "assistant")
        .flat_map(|m| blocks(&m.content))
        .filter(|b| kind(b) == Some("tool_use"))
        .filter_map(|b| Some((text(b, "id")?.to_string(), text(b, "name")?.to_string())))
        .collect()
}

/// `{"type": unit, "value": N}` at `fields[key]`, or `default`.
fn amount(
    fields: &Map<String, Value>,
    param: &str,
    key: &str,
    unit: &str,
    default: usize,
) -> Result<usize, ApiError> {
    let Some(value) = fields.get(key).filter(|v| !v.is_null()) else {
        return Ok(default);
    };
    let param = format!("{param}.{key}");
    if value.get("type").and_then(Value::as_str) != Some(unit) {
        return Err(ApiError::invalid(
            &param,
            format!("{param} must be {{\"type\": \"{unit}\", \"value\": N}}"),
        ));
    }
    value
        .get("value")
        .and_then(Value::as_u64)
        .and_then(|n| usize::try_from(n).ok())
        .ok_or_else(|| ApiError::invalid(&param, format!("{param}.value must be a whole number")))
}

fn blocks(content: &Value) -> &[Value] {
    content.as_array().map(Vec::as_slice).unwrap_or_default()
}

fn kind(block: &Value) -> Option<&str> {
    block.get("type").and_then(Value::as_str)
}

fn text<'a>(block: &'a Value, key: &str) -> Option<&'a str> {
    block.get(key).and_then(Value::as_str)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn session() -> Vec<InMessage> {
        let mut messages = vec![InMessage {
            role: "user".into(),
            content: json!("Look around."),
        }];
        for (n, name) in ["Read", "Bash", "Read", "Read"].iter().enumerate() {
            messages.push(InMessage {
                role: "assistant".into(),
                content: json!([{"type": "tool_use", "id": format!("toolu_{n}"), "name": name, "input": {"n": n}}]),
            });
            messages.push(InMessage {
                role: "user".into(),
                content: json!([{"type": "tool_result", "tool_use_id": format!("toolu_{n}"), "content": format!("output {n}")}]),
            });
        }
        messages
    }

    fn results(messages: &[InMessage]) -> Vec<Value> {
        messages
            .iter()
            .flat_map(|m| blocks(&m.content))
            .filter(|b| kind(b) == Some("tool_result"))
            .map(|b| b["content"].clone())
            .collect()
    }

    #[test]
    fn older_uses_are_cleared_except_excluded_tools() {
        let edit = json!({"type": "clear_tool_uses_20250919", "keep": {"type": "tool_uses", "value": 1}, "exclude_tools": ["Bash"]});
        let rule = ClearToolUses::read(edit.as_object().expect("object"), "e").expect("rule");
        let (cleared, count) = rule.apply(&session());
        assert_eq!(count, 2);
        assert_eq!(
            results(&cleared),
            [
                json!(CLEARED),
                json!("output 1"),
                json!(CLEARED),
                json!("output 3")
            ]
        );
        let (again, count) = rule.apply(&cleared);
        assert_eq!((results(&again), count), (results(&cleared), 0));
    }

    #[test]
    fn bad_amounts_are_named() {
        let edit = json!({"type": "clear_tool_uses_20250919", "keep": {"type": "input_tokens", "value": 3}});
        let error = ClearToolUses::read(
            edit.as_object().expect("object"),
            "context_management.edits.0",
        )
        .expect_err("unit");
        assert_eq!(
            error.param.as_deref(),
            Some("context_management.edits.0.keep")
        );
        let edit = json!({"type": "clear_tool_uses_20250919", "trigger": {"type": "tool_uses", "value": 3}});
        let rule = ClearToolUses::read(edit.as_object().expect("object"), "e").expect("rule");
        assert!(rule.triggered(0, &session()) && !rule.triggered(10_000, &session()[..3]));
    }
}
