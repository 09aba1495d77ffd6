//! What a finished reply says, streamed or not: its content blocks, stop
//! reason and usage. Usage follows Anthropic's convention: `input_tokens`
//! are the prompt tokens computed for this request, `cache_read_input_tokens`
//! those reused from Orchard's prompt cache; together they are the prompt.

use orchard_core::chat::ToolCall;
use orchard_core::{Finish, GenerationStats};
use serde_json::{Value, json};

use super::signature;

/// Content blocks of a whole reply, in order, merging runs of one kind.
#[derive(Debug, Default)]
pub struct Blocks {
    blocks: Vec<Value>,
    /// The whole reasoning of each thinking block (by index), for its signature.
    reasoning: Vec<String>,
    /// `thinking.display: "omitted"`: thinking blocks keep empty text.
    omit_thinking: bool,
}

impl Blocks {
    pub fn new(omit_thinking: bool) -> Self {
        Blocks {
            omit_thinking,
            ..Blocks::default()
        }
    }

    pub fn add(&mut self, reasoning: &str, text: &str, calls: &[ToolCall]) {
        if !reasoning.is_empty() {
            let shown = if self.omit_thinking { "" } else { reasoning };
            self.push_text("thinking", shown);
            if let Some(whole) = self.reasoning.last_mut() {
                whole.push_str(reasoning);
            }
        }
        if !text.is_empty() {
            self.push_text("text", text);
        }
        for call in calls {
            let input: Value = serde_json::from_str(&call.arguments).unwrap_or_else(|_| json!({}));
            self.push(json!({"type": "tool_use", "id": tool_use_id(call), "name": call.name, "input": input}));
        }
    }

    fn push_text(&mut self, kind: &str, text: &str) {
        if let Some(last) = self.blocks.last_mut().filter(|b| b["type"] == kind) {
            let joined = format!("{}{text}", last[kind].as_str().unwrap_or_default());
            last[kind] = Value::String(joined);
            return;
        }
        self.push(json!({"type": kind, kind: text}));
    }

    fn push(&mut self, block: Value) {
        self.blocks.push(block);
        self.reasoning.push(String::new());
    }

    pub fn into_json(self) -> Value {
        let blocks = self
            .blocks
            .into_iter()
            .zip(self.reasoning)
            .map(|(mut block, reasoning)| {
                if block["type"] == "thinking" {
                    block["signature"] = Value::String(signature::sign(&reasoning));
                }
                block
            })
            .collect();
        Value::Array(blocks)
    }
}

/// Anthropic's ids start with `toolu_`; the call's own random part is kept.
pub fn tool_use_id(call: &ToolCall) -> String {
    format!("toolu_{}", call.id.trim_start_matches("call_"))
}

/// `stop_reason`: the context filling up is `max_tokens` too, since
/// `max_tokens` is only an upper bound.
pub fn stop_reason(finish: Finish, stats: &GenerationStats) -> Value {
    match finish {
        Finish::Stop if stats.stop_sequence.is_some() => json!("stop_sequence"),
        Finish::Stop => json!("end_turn"),
        Finish::Length => json!("max_tokens"),
        Finish::ToolCalls => json!("tool_use"),
        Finish::Cancelled => Value::Null,
    }
}

/// The input side of usage: computed and cached prompt tokens.
pub fn input_usage(prompt_tokens: usize, cached_tokens: usize) -> Value {
    json!({
        "input_tokens": prompt_tokens.saturating_sub(cached_tokens),
        "cache_read_input_tokens": cached_tokens,
        "cache_creation_input_tokens": 0,
    })
}

/// The whole usage of a finished reply.
pub fn usage(stats: &GenerationStats) -> Value {
    let mut usage = input_usage(stats.prompt_tokens, stats.cached_prompt_tokens);
    usage["output_tokens"] = json!(stats.generated_tokens);
    usage
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn omitted_thinking_keeps_the_block_and_its_signature() {
        let mut shown = Blocks::new(false);
        let mut omitted = Blocks::new(true);
        for blocks in [&mut shown, &mut omitted] {
            blocks.add("Let me think.", "", &[]);
            blocks.add(" Done.", "Hi", &[]);
        }
        let signature = signature::sign("Let me think. Done.");
        assert_eq!(
            shown.into_json(),
            json!([{"type": "thinking", "thinking": "Let me think. Done.", "signature": signature}, {"type": "text", "text": "Hi"}])
        );
        assert_eq!(
            omitted.into_json(),
            json!([{"type": "thinking", "thinking": "", "signature": signature}, {"type": "text", "text": "Hi"}])
        );
    }
}
