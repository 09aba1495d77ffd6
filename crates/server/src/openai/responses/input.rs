//! The Responses API's `input` (a string, or a list of items) and the
//! conversation it makes for the chat template.
//!
//! - `message` items (or items with a `role` and no `type`): user,
//!   developer (as system), system and assistant; content a string or
//!   `input_text` / `output_text` / `refusal` parts.
//! - `function_call` and `custom_tool_call`: tool calls of the assistant
//!   turn they follow (a new one when no assistant message precedes them).
//! - `function_call_output` and `custom_tool_call_output`: tool messages.
//! - `reasoning`: its text goes back as the next assistant turn's
//!   `reasoning_content`, which templates that keep reasoning render.

use std::collections::HashMap;

use orchard_core::{ChatMessage, ImageInput};
use serde_json::{Value, json};

use crate::error::ApiError;
use crate::images::{Content, Fetched};

/// The items of `input`: a string is one user message.
pub(super) fn items(input: Option<Value>) -> Result<Vec<Value>, ApiError> {
    match input {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::String(text)) => Ok(vec![
            json!({"type": "message", "role": "user", "content": text}),
        ]),
        Some(Value::Array(items)) => {
            for (index, item) in items.iter().enumerate() {
                if !item.is_object() {
                    return Err(ApiError::invalid(
                        &format!("input[{index}]"),
                        "each input item must be an object",
                    ));
                }
            }
            Ok(items)
        }
        Some(_) => Err(ApiError::invalid(
            "input",
            "input must be a string or a list of items",
        )),
    }
}

/// The conversation for the template: `instructions` as the system
/// message, then `items` in order. The first `stored` items came from a
/// stored response (`previous_response_id`); the rest are the request's
/// `input`, named by their index there when at fault.
pub(super) fn messages(
    instructions: Option<&str>,
    items: &[Value],
    stored: usize,
    fetched: &Fetched,
) -> Result<(Vec<ChatMessage>, Vec<ImageInput>), ApiError> {
    let mut out: Vec<ChatMessage> = Vec::new();
    let mut images = Vec::new();
    if let Some(instructions) = instructions.filter(|i| !i.is_empty()) {
        out.push(ChatMessage::text("system", instructions));
    }
    // Tool names by call id, for the tool messages that answer them.
    let mut names: HashMap<String, String> = HashMap::new();
    let mut reasoning: Option<String> = None;
    for (position, item) in items.iter().enumerate() {
        let param = match position.checked_sub(stored) {
            Some(index) => format!("input[{index}]"),
            None => "previous_response_id".to_string(),
        };
        let kind = match item.get("type").and_then(Value::as_str) {
            Some(kind) => kind,
            None if item.get("role").is_some() => "message",
            None => {
                return Err(ApiError::invalid(
                    &param,
                    "an input item needs a `type` (message, function_call, function_call_output, ...)",
                ));
            }
        };
        match kind {
            "message" => {
                let role = match item.get("role").and_then(Value::as_str) {
                    Some("developer" | "system") => "system",
                    Some(role @ ("user" | "assistant")) => role,
                    other => {
                        return Err(ApiError::invalid(
                            &format!("{param}.role"),
                            format!(
                                "unknown role {other:?}; use user, developer, system or assistant"
                            ),
                        ));
                    }
                };
                let param = format!("{param}.content");
                let content = content(item.get("content"), &param, &mut images, fetched)?;
                if content.is_array() && role != "user" {
                    return Err(ApiError::invalid(
                        &param,
                        "only user messages can hold images",
                    ));
                }
                let mut message = ChatMessage {
                    role: role.into(),
                    content,
                    extra: serde_json::Map::new(),
                };
                if role == "assistant"
                    && let Some(reasoning) = reasoning.take()
                {
                    message
                        .extra
                        .insert("reasoning_content".into(), Value::String(reasoning));
                }
                out.push(message);
            }
            "reasoning" => {
                let text = reasoning_text(item);
                if !text.is_empty() {
                    reasoning.get_or_insert_default().push_str(&text);
                }
            }
            "function_call" | "custom_tool_call" => {
                let field = |name: &str| {
                    item.get(name).and_then(Value::as_str).ok_or_else(|| {
                        ApiError::invalid(
                            &format!("{param}.{name}"),
                            format!("a {kind} item needs `{name}`"),
                        )
                    })
                };
                let (call_id, name) = (field("call_id")?, field("name")?);
                let arguments = if kind == "custom_tool_call" {
                    json!({"input": field("input")?}).to_string()
                } else {
                    field("arguments")?.to_string()
                };
                names.insert(call_id.to_string(), name.to_string());
                let call = json!({
                    "id": call_id, "type": "function",
                    "function": {"name": name, "arguments": arguments},
                });
                let turn = match out.last_mut() {
                    Some(last) if last.role == "assistant" => last,
                    _ => {
                        let mut message = ChatMessage::text("assistant", "");
                        if let Some(reasoning) = reasoning.take() {
                            message
                                .extra
                                .insert("reasoning_content".into(), Value::String(reasoning));
                        }
                        out.push(message);
                        out.last_mut().expect("just pushed")
                    }
                };
                match turn.extra.get_mut("tool_calls") {
                    Some(Value::Array(calls)) => calls.push(call),
                    _ => {
                        turn.extra
                            .insert("tool_calls".into(), Value::Array(vec![call]));
                    }
                }
            }
            "function_call_output" | "custom_tool_call_output" => {
                let call_id = item.get("call_id").and_then(Value::as_str).ok_or_else(|| {
                    ApiError::invalid(
                        &format!("{param}.call_id"),
                        format!("a {kind} item needs the `call_id` it answers"),
                    )
                })?;
                let output = match item.get("output") {
                    Some(Value::String(text)) => text.clone(),
                    parts @ Some(Value::Array(_)) => {
                        content_text(parts, &format!("{param}.output"))?
                    }
                    _ => {
                        return Err(ApiError::invalid(
                            &format!("{param}.output"),
                            format!("a {kind} item needs `output`, a string or a list of parts"),
                        ));
                    }
                };
                let mut message = ChatMessage::text("tool", &output);
                message
                    .extra
                    .insert("tool_call_id".into(), Value::String(call_id.into()));
                if let Some(name) = names.get(call_id) {
                    message
                        .extra
                        .insert("name".into(), Value::String(name.clone()));
                }
                out.push(message);
            }
            "item_reference" => {
                return Err(ApiError::unsupported(
                    &param,
                    "item_reference input items (send the items, or continue with previous_response_id)",
                ));
            }
            other => {
                return Err(ApiError::invalid(
                    &param,
                    format!(
                        "Orchard does not take input items of type {other:?}; it takes message, reasoning, function_call, function_call_output, custom_tool_call and custom_tool_call_output"
                    ),
                ));
            }
        }
    }
    if !out.iter().any(|m| m.role != "system") {
        return Err(ApiError::invalid(
            "input",
            "input has no message for the model to answer",
        ));
    }
    Ok((out, images))
}

/// The `http(s)` URLs of the items' `input_image` parts, with where each
/// is, for [`crate::images::fetch`].
pub(super) fn remote_images(items: &[Value], stored: usize) -> Vec<(String, String)> {
    let mut urls = Vec::new();
    for (position, item) in items.iter().enumerate() {
        let Some(Value::Array(parts)) = item.get("content") else {
            continue;
        };
        for (index, part) in parts.iter().enumerate() {
            if part.get("type").and_then(Value::as_str) != Some("input_image") {
                continue;
            }
            if let Some(url) = part
                .get("image_url")
                .and_then(Value::as_str)
                .filter(|u| crate::images::is_remote(u))
            {
                let param = match position.checked_sub(stored) {
                    Some(item) => format!("input[{item}].content[{index}]"),
                    None => "previous_response_id".to_string(),
                };
                urls.push((url.to_string(), param));
            }
        }
    }
    urls
}

/// A message's content as the chat template takes it: its text, or, with
/// `input_image` parts, its parts in order (see [`Content`]), the images'
/// bytes added to `images`.
fn content(
    content: Option<&Value>,
    param: &str,
    images: &mut Vec<ImageInput>,
    fetched: &Fetched,
) -> Result<Value, ApiError> {
    let Some(Value::Array(parts)) = content else {
        return content_text(content, param).map(Value::String);
    };
    let mut built = Content::default();
    for (index, part) in parts.iter().enumerate() {
        if part.get("type").and_then(Value::as_str) == Some("input_image") {
            let part_param = format!("{param}[{index}]");
            let url = part
                .get("image_url")
                .and_then(Value::as_str)
                .ok_or_else(|| {
                    ApiError::unsupported(
                        &format!("{part_param}.file_id"),
                        "an image by file id (send image_url)",
                    )
                })?;
            images.push(crate::images::from_url(url, &part_param, fetched)?);
            built.push_image();
        } else {
            built.push_text(part_text(part, param)?);
        }
    }
    Ok(built.into_value())
}

/// The text of a message's content: a string, or a list of text parts.
fn content_text(content: Option<&Value>, param: &str) -> Result<String, ApiError> {
    match content {
        None | Some(Value::Null) => Ok(String::new()),
        Some(Value::String(text)) => Ok(text.clone()),
        Some(Value::Array(parts)) => parts.iter().map(|part| part_text(part, param)).collect(),
        Some(_) => Err(ApiError::invalid(
            param,
            "content must be a string or a list of parts",
        )),
    }
}

/// The text of one content part.
fn part_text<'a>(part: &'a Value, param: &str) -> Result<&'a str, ApiError> {
    match part.get("type").and_then(Value::as_str) {
        Some("input_text" | "output_text" | "text") => part
            .get("text")
            .and_then(Value::as_str)
            .ok_or_else(|| ApiError::invalid(param, "a text part needs a `text` string")),
        Some("refusal") => Ok(part.get("refusal").and_then(Value::as_str).unwrap_or("")),
        Some("input_image") => Err(ApiError::unsupported(
            param,
            "an image outside a user message",
        )),
        Some("input_file" | "input_audio") => {
            Err(ApiError::unsupported(param, "file and audio input"))
        }
        other => Err(ApiError::invalid(
            param,
            format!("unknown content part type {other:?}; use \"input_text\""),
        )),
    }
}

/// A reasoning item's text: its `reasoning_text` content, else its summary.
fn reasoning_text(item: &Value) -> String {
    let join = |key: &str| -> String {
        item.get(key)
            .and_then(Value::as_array)
            .map(|parts| {
                parts
                    .iter()
                    .filter_map(|p| p.get("text").and_then(Value::as_str))
                    .collect::<Vec<_>>()
                    .join("\n")
            })
            .unwrap_or_default()
    };
    let content = join("content");
    if content.is_empty() {
        join("summary")
    } else {
        content
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tool_round_trip_becomes_the_chat_turns_the_template_knows() {
        let input = json!([
            {"role": "developer", "content": "Be brief."},
            {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "Weather in Paris?"}]},
            {"type": "reasoning", "id": "rs_1", "summary": [], "content": [{"type": "reasoning_text", "text": "Call the tool."}]},
            {"type": "function_call", "call_id": "call_1", "name": "weather", "arguments": "{\"city\":\"Paris\"}"},
            {"type": "custom_tool_call", "call_id": "call_2", "name": "note", "input": "raw text"},
            {"type": "function_call_output", "call_id": "call_1", "output": "18C"},
            {"type": "custom_tool_call_output", "call_id": "call_2", "output": [{"type": "input_text", "text": "noted"}]},
        ]);
        let items = items(Some(input)).expect("items");
        let (messages, images) =
            messages(Some("You are Orchard."), &items, 0, &Fetched::new()).expect("messages");
        assert!(images.is_empty());
        let roles: Vec<&str> = messages.iter().map(|m| m.role.as_str()).collect();
        assert_eq!(
            roles,
            ["system", "system", "user", "assistant", "tool", "tool"]
        );
        let assistant = &messages[3];
        assert_eq!(assistant.extra["reasoning_content"], "Call the tool.");
        let calls = assistant.extra["tool_calls"].as_array().expect("calls");
        assert_eq!(calls.len(), 2);
        assert_eq!(calls[1]["function"]["arguments"], r#"{"input":"raw text"}"#);
        assert_eq!(messages[4].extra["name"], "weather");
        assert_eq!(messages[5].content, "noted");
    }

    #[test]
    fn bad_items_name_the_item_at_fault() {
        let none = Fetched::new();
        let image = json!([{"type": "message", "role": "user", "content": [{"type": "input_image", "image_url": "data:"}]}]);
        let error =
            messages(None, &items(Some(image)).expect("items"), 0, &none).expect_err("image");
        assert_eq!(error.param.as_deref(), Some("input[0].content[0]"));
        let by_file = json!([{"type": "message", "role": "user", "content": [{"type": "input_image", "file_id": "file_1"}]}]);
        let error =
            messages(None, &items(Some(by_file)).expect("items"), 0, &none).expect_err("file id");
        assert_eq!(error.param.as_deref(), Some("input[0].content[0].file_id"));
        let error = messages(
            None,
            &[json!({"type": "function_call_output", "output": "x"})],
            0,
            &none,
        )
        .expect_err("no call id");
        assert_eq!(error.param.as_deref(), Some("input[0].call_id"));
        let error =
            messages(None, &[json!({"type": "computer_call"})], 0, &none).expect_err("type");
        assert!(error.message.contains("computer_call"), "{}", error.message);
        assert!(items(Some(json!(3))).is_err());
        assert!(messages(Some("only instructions"), &[], 0, &none).is_err());
    }
}
