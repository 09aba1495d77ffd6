//! Reading the request parameters that are not messages or tools: thinking,
//! effort, context management, metadata, tool choice and stop sequences.
//! Each is either honoured, accepted with its (lack of) effect written down
//! in docs/anthropic.md, or refused with a 400 that names it.

use orchard_core::chat::ToolChoice;
use serde_json::{Map, Value};

use super::clearing::ClearToolUses;
use crate::error::ApiError;

/// Most stop sequences one request may give: each is searched for after every token.
pub const MAX_STOP_SEQUENCES: usize = 16;
/// Longest stop sequence, in bytes.
pub const MAX_STOP_SEQUENCE_BYTES: usize = 256;

/// Refuses any top-level field no other part of the request reads.
pub fn refuse_unknown(other: &Map<String, Value>) -> Result<(), ApiError> {
    match other.iter().find(|(_, value)| !value.is_null()) {
        Some((key, _)) => Err(ApiError::unsupported(
            key,
            &format!("the parameter `{key}`"),
        )),
        None => Ok(()),
    }
}

/// Fails on a key of `object` (found at `param`) that is not in `known`.
fn refuse_unknown_keys(
    object: &Map<String, Value>,
    param: &str,
    known: &[&str],
) -> Result<(), ApiError> {
    match object.keys().find(|key| !known.contains(&key.as_str())) {
        Some(key) => {
            let param = format!("{param}.{key}");
            Err(ApiError::unsupported(&param, &format!("`{param}`")))
        }
        None => Ok(()),
    }
}

/// `value` as an object, or a 400 naming `param`.
fn object<'a>(value: &'a Value, param: &str) -> Result<&'a Map<String, Value>, ApiError> {
    value
        .as_object()
        .ok_or_else(|| ApiError::invalid(param, format!("{param} must be an object")))
}

/// `metadata`: only `user_id`, which Orchard neither stores nor uses.
pub fn check_metadata(metadata: Option<&Value>) -> Result<(), ApiError> {
    let Some(metadata) = metadata.filter(|m| !m.is_null()) else {
        return Ok(());
    };
    let fields = object(metadata, "metadata")?;
    refuse_unknown_keys(fields, "metadata", &["user_id"])?;
    match fields.get("user_id") {
        None | Some(Value::Null | Value::String(_)) => Ok(()),
        Some(_) => Err(ApiError::invalid(
            "metadata.user_id",
            "metadata.user_id must be a string",
        )),
    }
}

/// `service_tier`: `auto` or `standard_only`, both the one tier a local port has.
pub fn check_service_tier(tier: Option<&Value>) -> Result<(), ApiError> {
    match tier {
        None | Some(Value::Null) => Ok(()),
        Some(Value::String(s)) if s == "auto" || s == "standard_only" => Ok(()),
        Some(other) => Err(ApiError::invalid(
            "service_tier",
            format!("service_tier must be auto or standard_only, not {other}"),
        )),
    }
}

/// Top-level `cache_control`: an object such as `{"type": "ephemeral"}`.
pub fn check_cache_control(cache_control: Option<&Value>) -> Result<(), ApiError> {
    match cache_control {
        None | Some(Value::Null | Value::Object(_)) => Ok(()),
        Some(_) => Err(ApiError::invalid(
            "cache_control",
            "cache_control must be an object such as {\"type\": \"ephemeral\"}",
        )),
    }
}

/// `output_config.effort`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Effort {
    Low,
    Medium,
    High,
    XHigh,
    Max,
}

/// `output_config`: `effort` is read; a `format` (structured output) is refused.
pub fn effort(output_config: Option<&Value>) -> Result<Option<Effort>, ApiError> {
    let Some(config) = output_config.filter(|c| !c.is_null()) else {
        return Ok(None);
    };
    let fields = object(config, "output_config")?;
    if fields.get("format").is_some_and(|f| !f.is_null()) {
        return Err(ApiError::unsupported(
            "output_config.format",
            "structured output (`output_config.format`)",
        ));
    }
    refuse_unknown_keys(fields, "output_config", &["effort", "format"])?;
    match fields.get("effort") {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(level)) => match level.as_str() {
            "low" => Ok(Some(Effort::Low)),
            "medium" => Ok(Some(Effort::Medium)),
            "high" => Ok(Some(Effort::High)),
            "xhigh" => Ok(Some(Effort::XHigh)),
            "max" => Ok(Some(Effort::Max)),
            other => Err(effort_error(other)),
        },
        Some(other) => Err(effort_error(&other.to_string())),
    }
}

fn effort_error(found: &str) -> ApiError {
    ApiError::invalid(
        "output_config.effort",
        format!("output_config.effort must be low, medium, high, xhigh or max, not {found}"),
    )
}

/// What `thinking` (with `output_config.effort`) asks of the template and the reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Thinking {
    /// The template's thinking switch; None leaves the template's default.
    pub enable: Option<bool>,
    /// Close the reasoning block after this many tokens.
    pub budget: Option<usize>,
    /// `display: "omitted"`: thinking blocks come back with empty text.
    pub omit: bool,
}

/// Reads `thinking`: `enabled` (with `budget_tokens`), `disabled`, or
/// `adaptive`, which lets the model think unless `effort` is `low` (at low
/// effort Anthropic's models skip thinking on simple requests; a template's
/// switch is all or nothing, so low means off).
pub fn thinking(value: Option<&Value>, effort: Option<Effort>) -> Result<Thinking, ApiError> {
    let Some(value) = value.filter(|v| !v.is_null()) else {
        return Ok(Thinking::default());
    };
    let fields = object(value, "thinking")?;
    let kind = fields.get("type").and_then(Value::as_str);
    let mut thinking = Thinking {
        omit: display_omitted(fields.get("display"))?,
        ..Thinking::default()
    };
    match kind {
        Some("enabled") => {
            refuse_unknown_keys(fields, "thinking", &["type", "budget_tokens", "display"])?;
            thinking.enable = Some(true);
            thinking.budget = match fields.get("budget_tokens") {
                None | Some(Value::Null) => None,
                Some(budget) => Some(
                    budget
                        .as_u64()
                        .filter(|&n| n >= 1)
                        .and_then(|n| usize::try_from(n).ok())
                        .ok_or_else(|| {
                            ApiError::invalid(
                                "thinking.budget_tokens",
                                "thinking.budget_tokens must be a whole number of at least 1",
                            )
                        })?,
                ),
            };
        }
        Some("disabled") => {
            refuse_unknown_keys(fields, "thinking", &["type"])?;
            thinking.enable = Some(false);
        }
        Some("adaptive") => {
            refuse_unknown_keys(fields, "thinking", &["type", "display"])?;
            thinking.enable = Some(effort != Some(Effort::Low));
        }
        other => {
            return Err(ApiError::invalid(
                "thinking.type",
                format!("thinking.type must be enabled, disabled or adaptive, not {other:?}"),
            ));
        }
    }
    Ok(thinking)
}

fn display_omitted(display: Option<&Value>) -> Result<bool, ApiError> {
    match display {
        None | Some(Value::Null) => Ok(false),
        Some(Value::String(s)) if s == "summarized" => Ok(false),
        Some(Value::String(s)) if s == "omitted" => Ok(true),
        Some(other) => Err(ApiError::invalid(
            "thinking.display",
            format!("thinking.display must be summarized or omitted, not {other}"),
        )),
    }
}

/// Which earlier thinking blocks go back into the prompt.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum KeepThinking {
    /// None (without `clear_thinking_20251015`): earlier reasoning is not fed back.
    #[default]
    NoTurns,
    /// The thinking of the last this many assistant turns that have any.
    LastTurns(usize),
    All,
}

/// What `context_management` asks for.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ContextManagement {
    pub keep_thinking: KeepThinking,
    pub clear_tool_uses: Option<ClearToolUses>,
}

/// Reads `context_management.edits`. `clear_thinking_20251015` decides which
/// earlier thinking blocks reach the template (as `reasoning_content`);
/// `clear_tool_uses_20250919` clears older tool results once the prompt is
/// long (applied where the prompt's length is known, in `mod.rs`).
pub fn context_management(value: Option<&Value>) -> Result<ContextManagement, ApiError> {
    let Some(value) = value.filter(|v| !v.is_null()) else {
        return Ok(ContextManagement::default());
    };
    let fields = object(value, "context_management")?;
    refuse_unknown_keys(fields, "context_management", &["edits"])?;
    let edits = match fields.get("edits") {
        None | Some(Value::Null) => return Ok(ContextManagement::default()),
        Some(Value::Array(edits)) => edits,
        Some(_) => {
            return Err(ApiError::invalid(
                "context_management.edits",
                "context_management.edits must be a list",
            ));
        }
    };
    let mut wanted = ContextManagement::default();
    for (index, edit) in edits.iter().enumerate() {
        let param = format!("context_management.edits.{index}");
        let fields = object(edit, &param)?;
        match fields.get("type").and_then(Value::as_str) {
            Some("clear_thinking_20251015") => {
                refuse_unknown_keys(fields, &param, &["type", "keep"])?;
                wanted.keep_thinking = keep_thinking(fields.get("keep"), &param)?;
            }
            Some("clear_tool_uses_20250919") => {
                refuse_unknown_keys(
                    fields,
                    &param,
                    &[
                        "type",
                        "trigger",
                        "keep",
                        "clear_at_least",
                        "exclude_tools",
                        "clear_tool_inputs",
                    ],
                )?;
                wanted.clear_tool_uses = Some(ClearToolUses::read(fields, &param)?);
            }
            other => {
                return Err(ApiError::unsupported(
                    &format!("{param}.type"),
                    &format!("the context management edit {other:?}"),
                ));
            }
        }
    }
    Ok(wanted)
}

/// `keep` of `clear_thinking_20251015`: `"all"` or `{"type": "thinking_turns",
/// "value": N}`; Anthropic's default is the last turn.
fn keep_thinking(keep: Option<&Value>, param: &str) -> Result<KeepThinking, ApiError> {
    let param = format!("{param}.keep");
    let invalid = || {
        ApiError::invalid(
            &param,
            format!("{param} must be \"all\" or {{\"type\": \"thinking_turns\", \"value\": N}}"),
        )
    };
    match keep {
        None | Some(Value::Null) => Ok(KeepThinking::LastTurns(1)),
        Some(Value::String(s)) if s == "all" => Ok(KeepThinking::All),
        Some(Value::Object(fields))
            if fields.get("type").and_then(Value::as_str) == Some("thinking_turns") =>
        {
            let turns = fields
                .get("value")
                .and_then(Value::as_u64)
                .and_then(|n| usize::try_from(n).ok())
                .ok_or_else(invalid)?;
            Ok(KeepThinking::LastTurns(turns))
        }
        Some(_) => Err(invalid()),
    }
}

/// `tool_choice`: auto, any, tool (with `name`) or none; its
/// `disable_parallel_tool_use` is read by [`single_tool_call`].
pub fn tool_choice(value: Option<&Value>) -> Result<ToolChoice, ApiError> {
    let Some(value) = value.filter(|v| !v.is_null()) else {
        return Ok(ToolChoice::Auto);
    };
    let fields = object(value, "tool_choice")?;
    refuse_unknown_keys(
        fields,
        "tool_choice",
        &["type", "name", "disable_parallel_tool_use"],
    )?;
    match fields.get("type").and_then(Value::as_str) {
        Some("auto") => Ok(ToolChoice::Auto),
        Some("any") => Ok(ToolChoice::Required),
        Some("none") => Ok(ToolChoice::None),
        Some("tool") => fields
            .get("name")
            .and_then(Value::as_str)
            .map(|n| ToolChoice::Function(n.to_string()))
            .ok_or_else(|| {
                ApiError::invalid("tool_choice.name", "tool_choice of type tool needs `name`")
            }),
        _ => Err(ApiError::invalid(
            "tool_choice.type",
            "tool_choice.type must be auto, any, tool or none",
        )),
    }
}

/// `tool_choice.disable_parallel_tool_use`: at most one tool call.
pub fn single_tool_call(value: Option<&Value>) -> bool {
    value
        .and_then(|v| v.get("disable_parallel_tool_use"))
        .and_then(Value::as_bool)
        .unwrap_or(false)
}

/// `stop_sequences`, limited in count and length.
pub fn stop_sequences(stop: Option<Vec<String>>) -> Result<Vec<String>, ApiError> {
    let stop = stop.unwrap_or_default();
    if stop.len() > MAX_STOP_SEQUENCES {
        return Err(ApiError::invalid(
            "stop_sequences",
            format!(
                "stop_sequences has {} entries; at most {MAX_STOP_SEQUENCES} are allowed",
                stop.len()
            ),
        ));
    }
    if let Some(index) = stop.iter().position(String::is_empty) {
        return Err(ApiError::invalid(
            &format!("stop_sequences.{index}"),
            format!("stop_sequences.{index} is empty; stop sequences must not be empty"),
        ));
    }
    if let Some(index) = stop.iter().position(|s| s.len() > MAX_STOP_SEQUENCE_BYTES) {
        return Err(ApiError::invalid(
            &format!("stop_sequences.{index}"),
            format!(
                "stop_sequences.{index} is {} bytes long; each may be at most {MAX_STOP_SEQUENCE_BYTES} bytes",
                stop[index].len()
            ),
        ));
    }
    Ok(stop)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn adaptive_thinking_follows_effort() {
        let adaptive = json!({"type": "adaptive", "display": "omitted"});
        let high = thinking(Some(&adaptive), Some(Effort::High)).expect("adaptive");
        assert_eq!(
            high,
            Thinking {
                enable: Some(true),
                budget: None,
                omit: true
            }
        );
        let low = thinking(Some(&adaptive), Some(Effort::Low)).expect("adaptive");
        assert_eq!(low.enable, Some(false));
        let budget = thinking(Some(&json!({"type": "enabled", "budget_tokens": 64})), None)
            .expect("enabled");
        assert_eq!(budget.budget, Some(64));
        let error = thinking(Some(&json!({"type": "sometimes"})), None).expect_err("bad type");
        assert_eq!(error.param.as_deref(), Some("thinking.type"));
    }

    #[test]
    fn context_management_reads_clear_thinking() {
        let all = json!({"edits": [{"type": "clear_thinking_20251015", "keep": "all"}]});
        assert_eq!(
            context_management(Some(&all)).expect("all").keep_thinking,
            KeepThinking::All
        );
        let two = json!({"edits": [{"type": "clear_thinking_20251015", "keep": {"type": "thinking_turns", "value": 2}}]});
        assert_eq!(
            context_management(Some(&two)).expect("two").keep_thinking,
            KeepThinking::LastTurns(2)
        );
        let tools = json!({"edits": [{"type": "clear_tool_uses_20250919", "trigger": {"type": "input_tokens", "value": 30000}}]});
        assert_eq!(
            context_management(Some(&tools))
                .expect("tools")
                .keep_thinking,
            KeepThinking::NoTurns
        );
        let rule = context_management(Some(&tools))
            .expect("tools")
            .clear_tool_uses
            .expect("rule");
        assert_eq!(
            rule.trigger,
            super::super::clearing::Trigger::InputTokens(30000)
        );
        assert_eq!(rule.keep, 3);
        let unknown = json!({"edits": [{"type": "compact_everything"}]});
        let error = context_management(Some(&unknown)).expect_err("unknown edit");
        assert_eq!(
            error.param.as_deref(),
            Some("context_management.edits.0.type")
        );
    }

    #[test]
    fn stop_sequences_are_limited() {
        assert!(stop_sequences(Some(vec!["x".into(); MAX_STOP_SEQUENCES])).is_ok());
        let many =
            stop_sequences(Some(vec!["x".into(); MAX_STOP_SEQUENCES + 1])).expect_err("too many");
        assert!(many.message.contains("stop_sequences"));
        let long = stop_sequences(Some(vec![
            "ok".into(),
            "y".repeat(MAX_STOP_SEQUENCE_BYTES + 1),
        ]))
        .expect_err("too long");
        assert_eq!(long.param.as_deref(), Some("stop_sequences.1"));
    }
}
