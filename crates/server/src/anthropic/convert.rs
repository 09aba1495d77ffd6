//! Anthropic messages as template messages. `system` turns inside `messages`
//! are folded into the system prompt (templates accept one system message, at
//! the start); `tool_use` blocks become assistant tool calls and `tool_result`
//! blocks `tool` messages; consecutive turns of one role are joined, as
//! Anthropic joins them; earlier thinking goes back as `reasoning_content`
//! only when `context_management` keeps it.

use std::collections::HashSet;

use orchard_core::{ChatMessage, ImageInput};
use serde_json::{Value, json};

use super::params::KeepThinking;
use super::signature;
use super::types::InMessage;
use crate::error::ApiError;
use crate::images::{Content, Fetched};

/// The conversation as the template will see it.
#[derive(Debug)]
pub struct Conversation {
    pub messages: Vec<ChatMessage>,
    /// Tools named by `tool_reference` blocks: deferred tools they load.
    pub referenced_tools: HashSet<String>,
    /// The images of the user turns, in order; each is a `{"type": "image"}`
    /// part of its message's content.
    pub images: Vec<ImageInput>,
}

/// Text of a `system` field (or a system turn's content): a string or text blocks.
pub fn system_text(system: Option<&Value>, param: &str) -> Result<Option<String>, ApiError> {
    match system {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(text)) => Ok(Some(text.clone())),
        Some(Value::Array(blocks)) => {
            let mut text = String::new();
            for block in blocks {
                text.push_str(block_text(block, param)?);
            }
            Ok(Some(text))
        }
        Some(_) => Err(ApiError::invalid(
            param,
            format!("{param} must be a string or text blocks"),
        )),
    }
}

fn block_text<'a>(block: &'a Value, param: &str) -> Result<&'a str, ApiError> {
    if block.get("type").and_then(Value::as_str) != Some("text") {
        return Err(ApiError::invalid(
            param,
            format!("{param}: expected a text block"),
        ));
    }
    block
        .get("text")
        .and_then(Value::as_str)
        .ok_or_else(|| ApiError::invalid(param, format!("{param}: a text block needs `text`")))
}

/// Builds the template's messages from the top-level `system` and `messages`.
pub fn conversation(
    system: Option<&Value>,
    messages: &[InMessage],
    keep: KeepThinking,
    fetched: &Fetched,
) -> Result<Conversation, ApiError> {
    if messages.is_empty() {
        return Err(ApiError::invalid("messages", "messages must not be empty"));
    }
    let mut system_parts: Vec<String> = system_text(system, "system")?.into_iter().collect();
    let thinking_turns = messages.iter().filter(|m| has_thinking(m)).count();
    let kept_from = match keep {
        KeepThinking::NoTurns => usize::MAX,
        KeepThinking::LastTurns(n) => thinking_turns.saturating_sub(n),
        KeepThinking::All => 0,
    };
    let mut thinking_turn = 0;
    let mut out: Vec<ChatMessage> = Vec::new();
    let mut referenced_tools = HashSet::new();
    let mut images = Vec::new();
    for (index, message) in messages.iter().enumerate() {
        let param = format!("messages.{index}.content");
        match message.role.as_str() {
            "system" => {
                if let Some(text) = system_text(Some(&message.content), &param)? {
                    system_parts.push(text);
                }
            }
            "user" | "assistant" => {
                let keep_reasoning = if has_thinking(message) {
                    thinking_turn += 1;
                    thinking_turn > kept_from
                } else {
                    false
                };
                let turn = Turn::read(
                    message,
                    &param,
                    keep_reasoning,
                    &mut referenced_tools,
                    fetched,
                )?;
                images.extend(turn.images);
                out.extend(turn.results);
                if let Some(chat) = turn.chat {
                    push_joined(&mut out, chat);
                }
            }
            role => {
                return Err(ApiError::invalid(
                    &format!("messages.{index}.role"),
                    format!(
                        "messages.{index}.role must be user, assistant or system, not {role:?}"
                    ),
                ));
            }
        }
    }
    if !system_parts.is_empty() {
        out.insert(0, ChatMessage::text("system", &system_parts.join("\n\n")));
    }
    Ok(Conversation {
        messages: out,
        referenced_tools,
        images,
    })
}

/// An assistant turn with a thinking block that has reasoning.
fn has_thinking(message: &InMessage) -> bool {
    message.role == "assistant"
        && message.content.as_array().is_some_and(|blocks| {
            blocks.iter().any(|b| {
                b.get("type").and_then(Value::as_str) == Some("thinking")
                    && !thinking_text(b).is_empty()
            })
        })
}

/// A thinking block's reasoning: its text, or, when that was omitted from
/// the reply, what Orchard's signature carries.
fn thinking_text(block: &Value) -> String {
    match block.get("thinking").and_then(Value::as_str) {
        Some(text) if !text.is_empty() => text.to_string(),
        _ => block
            .get("signature")
            .and_then(Value::as_str)
            .and_then(signature::reasoning)
            .unwrap_or_default(),
    }
}

/// One user or assistant message, read.
#[derive(Debug, Default)]
struct Turn {
    /// `tool` messages from `tool_result` blocks, which come first.
    results: Vec<ChatMessage>,
    /// The turn's own text, calls and reasoning; None for a user turn of
    /// tool results only.
    chat: Option<ChatMessage>,
    /// The images of a user turn, in order.
    images: Vec<ImageInput>,
}

impl Turn {
    fn read(
        message: &InMessage,
        param: &str,
        keep_reasoning: bool,
        referenced_tools: &mut HashSet<String>,
        fetched: &Fetched,
    ) -> Result<Turn, ApiError> {
        let role = message.role.as_str();
        let single;
        let blocks: &[Value] = match &message.content {
            Value::String(text) => {
                single = [json!({"type": "text", "text": text})];
                &single
            }
            Value::Array(blocks) => blocks,
            _ => {
                return Err(ApiError::invalid(
                    param,
                    format!("{param} must be a string or a list of blocks"),
                ));
            }
        };
        let mut turn = Turn::default();
        let mut content = Content::default();
        let mut reasoning = String::new();
        let mut calls = Vec::new();
        for (index, block) in blocks.iter().enumerate() {
            match block.get("type").and_then(Value::as_str) {
                Some("text") => content.push_text(block_text(block, param)?),
                Some("image") if role == "user" => {
                    turn.images
                        .push(image(block, &format!("{param}.{index}"), fetched)?);
                    content.push_image();
                }
                Some("tool_use") if role == "assistant" => calls.push(tool_call(block, param)?),
                Some("tool_result") if role == "user" => {
                    turn.results
                        .push(tool_result(block, param, referenced_tools)?);
                }
                Some("thinking") if role == "assistant" => {
                    if keep_reasoning {
                        reasoning.push_str(&thinking_text(block));
                    }
                }
                // Encrypted reasoning of Anthropic's models means nothing here.
                Some("redacted_thinking") if role == "assistant" => {}
                Some("document") => {
                    return Err(ApiError::unsupported(param, "document blocks"));
                }
                other => {
                    return Err(ApiError::invalid(
                        param,
                        format!("{param}: a {role} message cannot hold a block of type {other:?}"),
                    ));
                }
            }
        }
        let only_results = role == "user"
            && content.is_empty()
            && !blocks.is_empty()
            && blocks
                .iter()
                .all(|b| b.get("type").and_then(Value::as_str) == Some("tool_result"));
        if !only_results {
            let mut chat = ChatMessage {
                role: role.into(),
                content: content.into_value(),
                extra: serde_json::Map::new(),
            };
            if !calls.is_empty() {
                chat.extra.insert("tool_calls".into(), Value::Array(calls));
            }
            if !reasoning.is_empty() {
                chat.extra
                    .insert("reasoning_content".into(), Value::String(reasoning));
            }
            turn.chat = Some(chat);
        }
        Ok(turn)
    }
}

/// The `http(s)` URLs of the messages' `image` blocks (`url` sources),
/// with the block each is in, for [`crate::images::fetch`].
pub fn remote_images(messages: &[InMessage]) -> Vec<(String, String)> {
    let mut urls = Vec::new();
    for (index, message) in messages.iter().enumerate() {
        let Value::Array(blocks) = &message.content else {
            continue;
        };
        for (block_index, block) in blocks.iter().enumerate() {
            if block.get("type").and_then(Value::as_str) != Some("image") {
                continue;
            }
            let source = block.get("source").unwrap_or(&Value::Null);
            if source.get("type").and_then(Value::as_str) != Some("url") {
                continue;
            }
            if let Some(url) = source
                .get("url")
                .and_then(Value::as_str)
                .filter(|u| crate::images::is_remote(u))
            {
                urls.push((
                    url.to_string(),
                    format!("messages.{index}.content.{block_index}"),
                ));
            }
        }
    }
    urls
}

/// An `image` block's file: a base64 source, or a URL one (a `data:` URL,
/// or an `http(s)` one fetched beforehand; see [`crate::images::from_url`]).
fn image(block: &Value, param: &str, fetched: &Fetched) -> Result<ImageInput, ApiError> {
    let source = block.get("source").unwrap_or(&Value::Null);
    match source.get("type").and_then(Value::as_str) {
        Some("base64") => {
            let data = source.get("data").and_then(Value::as_str).ok_or_else(|| {
                ApiError::invalid(
                    param,
                    format!("{param}: a base64 image source needs `data`"),
                )
            })?;
            crate::images::from_base64(data, param)
        }
        Some("url") => {
            let url = source.get("url").and_then(Value::as_str).ok_or_else(|| {
                ApiError::invalid(param, format!("{param}: a url image source needs `url`"))
            })?;
            crate::images::from_url(url, param, fetched)
        }
        other => Err(ApiError::invalid(
            param,
            format!("{param}: an image source of type {other:?} cannot be read; use base64"),
        )),
    }
}

/// A `tool_use` block as an OpenAI-style call.
fn tool_call(block: &Value, param: &str) -> Result<Value, ApiError> {
    let id = block.get("id").and_then(Value::as_str).unwrap_or_default();
    let name = block.get("name").and_then(Value::as_str).ok_or_else(|| {
        ApiError::invalid(param, format!("{param}: a tool_use block needs `name`"))
    })?;
    let input = block.get("input").cloned().unwrap_or_else(|| json!({}));
    Ok(
        json!({"id": id, "type": "function", "function": {"name": name, "arguments": input.to_string()}}),
    )
}

/// A `tool_result` block as a `tool` message. Its `tool_reference` parts load
/// deferred tools and add no text; `is_error` and `cache_control` change nothing.
fn tool_result(
    block: &Value,
    param: &str,
    referenced_tools: &mut HashSet<String>,
) -> Result<ChatMessage, ApiError> {
    let id = block
        .get("tool_use_id")
        .and_then(Value::as_str)
        .ok_or_else(|| {
            ApiError::invalid(
                param,
                format!("{param}: a tool_result block needs `tool_use_id`"),
            )
        })?;
    let content = match block.get("content") {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(s)) => s.clone(),
        Some(Value::Array(parts)) => {
            let mut s = String::new();
            for part in parts {
                match part.get("type").and_then(Value::as_str) {
                    Some("tool_reference") => {
                        let name =
                            part.get("tool_name")
                                .and_then(Value::as_str)
                                .ok_or_else(|| {
                                    ApiError::invalid(
                                        param,
                                        format!("{param}: a tool_reference needs `tool_name`"),
                                    )
                                })?;
                        referenced_tools.insert(name.to_string());
                    }
                    Some("image" | "document") => {
                        return Err(ApiError::unsupported(
                            param,
                            "images and documents in tool results",
                        ));
                    }
                    _ => s.push_str(block_text(part, param)?),
                }
            }
            s
        }
        Some(_) => {
            return Err(ApiError::invalid(
                param,
                format!("{param}: tool_result content must be a string or text blocks"),
            ));
        }
    };
    let mut result = ChatMessage::text("tool", &content);
    result
        .extra
        .insert("tool_call_id".into(), Value::String(id.to_string()));
    Ok(result)
}

/// Appends `message`, joining it to the last one when both are user turns or
/// both assistant turns (a system turn between them was folded away).
fn push_joined(out: &mut Vec<ChatMessage>, message: ChatMessage) {
    let Some(last) = out.last_mut().filter(|last| last.role == message.role) else {
        out.push(message);
        return;
    };
    join_text(&mut last.content, &message.content);
    for (key, value) in message.extra {
        match (last.extra.get_mut(&key), value) {
            (Some(Value::Array(calls)), Value::Array(more)) => calls.extend(more),
            (Some(existing @ Value::String(_)), ref more @ Value::String(_)) => {
                join_text(existing, more)
            }
            (None, value) => {
                last.extra.insert(key, value);
            }
            _ => {}
        }
    }
}

fn join_text(into: &mut Value, more: &Value) {
    if into.is_array() || more.is_array() {
        // A turn with images: its parts, then the other's.
        let parts = |v: &Value| match v {
            Value::Array(parts) => parts.clone(),
            Value::String(s) if s.is_empty() => Vec::new(),
            other => vec![json!({"type": "text", "text": other.as_str().unwrap_or_default()})],
        };
        let mut joined = parts(into);
        joined.extend(parts(more));
        *into = Value::Array(joined);
        return;
    }
    let (Some(a), Some(b)) = (into.as_str(), more.as_str()) else {
        return;
    };
    *into = Value::String(match (a.is_empty(), b.is_empty()) {
        (_, true) => a.to_string(),
        (true, false) => b.to_string(),
        (false, false) => format!("{a}\n\n{b}"),
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(role: &str, content: Value) -> InMessage {
        InMessage {
            role: role.into(),
            content,
        }
    }

    #[test]
    fn system_turns_fold_into_the_system_prompt() {
        let conversation = conversation(
            Some(&json!([{"type": "text", "text": "Be brief.", "cache_control": {"type": "ephemeral"}}])),
            &[
                message("user", json!("hi")),
                message("system", json!([{"type": "text", "text": "Today is Monday."}])),
                message("user", json!("what day is it?")),
            ],
            KeepThinking::NoTurns,
            &Fetched::new(),
        )
        .expect("conversation");
        let roles: Vec<&str> = conversation
            .messages
            .iter()
            .map(|m| m.role.as_str())
            .collect();
        assert_eq!(roles, ["system", "user"]);
        assert_eq!(
            conversation.messages[0].content,
            json!("Be brief.\n\nToday is Monday.")
        );
        assert_eq!(
            conversation.messages[1].content,
            json!("hi\n\nwhat day is it?")
        );
    }

    #[test]
    fn thinking_is_kept_only_when_asked() {
        let turns = || {
            vec![
                message("user", json!("a")),
                message(
                    "assistant",
                    json!([{"type": "thinking", "thinking": "first", "signature": ""}, {"type": "text", "text": "A"}]),
                ),
                message("user", json!("b")),
                message(
                    "assistant",
                    json!([{"type": "thinking", "thinking": "second", "signature": ""}, {"type": "text", "text": "B"}]),
                ),
                message("user", json!("c")),
            ]
        };
        let reasoning = |keep| -> Vec<Option<Value>> {
            conversation(None, &turns(), keep, &Fetched::new())
                .expect("conversation")
                .messages
                .iter()
                .filter(|m| m.role == "assistant")
                .map(|m| m.extra.get("reasoning_content").cloned())
                .collect()
        };
        assert_eq!(reasoning(KeepThinking::NoTurns), [None, None]);
        assert_eq!(
            reasoning(KeepThinking::LastTurns(1)),
            [None, Some(json!("second"))]
        );
        assert_eq!(
            reasoning(KeepThinking::All),
            [Some(json!("first")), Some(json!("second"))]
        );
    }

    #[test]
    fn omitted_thinking_comes_back_from_its_signature() {
        let sent = vec![
            message("user", json!("a")),
            message(
                "assistant",
                json!([{"type": "thinking", "thinking": "", "signature": signature::sign("kept")}, {"type": "text", "text": "A"}]),
            ),
            message(
                "assistant",
                json!([{"type": "thinking", "thinking": "", "signature": "EqQBCkYIBxgC"}, {"type": "text", "text": "B"}]),
            ),
            message("user", json!("b")),
        ];
        let messages = conversation(None, &sent, KeepThinking::All, &Fetched::new())
            .expect("conversation")
            .messages;
        assert_eq!(
            messages[1].extra.get("reasoning_content"),
            Some(&json!("kept"))
        );
        assert_eq!(messages[1].content, json!("A\n\nB"));
    }

    #[test]
    fn tool_references_are_collected() {
        let conversation = conversation(
            None,
            &[
                message("user", json!("find a tool")),
                message("assistant", json!([{"type": "tool_use", "id": "toolu_1", "name": "ToolSearch", "input": {"query": "cron"}}])),
                message("user", json!([{"type": "tool_result", "tool_use_id": "toolu_1", "content": [{"type": "tool_reference", "tool_name": "CronCreate"}]}])),
            ],
            KeepThinking::NoTurns,
            &Fetched::new(),
        )
        .expect("conversation");
        assert!(conversation.referenced_tools.contains("CronCreate"));
        assert_eq!(
            conversation.messages.last().map(|m| m.role.as_str()),
            Some("tool")
        );
    }
}
