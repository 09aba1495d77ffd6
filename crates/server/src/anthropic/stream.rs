//! The SSE events of a streamed reply: `message_start`, then for each
//! content block `content_block_start`, its deltas and `content_block_stop`,
//! then `message_delta` (stop reason and the final usage) and `message_stop`;
//! `error` when generation fails after the response began.

use axum::response::sse::Event;
use orchard_core::Output;
use serde_json::{Value, json};

use super::reply::{input_usage, stop_reason, tool_use_id, usage};
use super::signature;
use crate::error::ApiError;
use crate::sse::Step;

/// Turns a generation's steps into Anthropic's events.
#[derive(Debug)]
pub struct Encoder {
    id: String,
    model: String,
    prompt_tokens: usize,
    omit_thinking: bool,
    started: bool,
    blocks: OpenBlock,
    /// `context_management` of the final `message_delta`.
    context_report: Option<Value>,
}

impl Encoder {
    pub fn new(id: String, model: String, prompt_tokens: usize, omit_thinking: bool) -> Self {
        Encoder {
            id,
            model,
            prompt_tokens,
            omit_thinking,
            started: false,
            blocks: OpenBlock::default(),
            context_report: None,
        }
    }

    /// Reports the context edits applied in the final `message_delta`.
    pub fn with_context_report(mut self, report: Option<Value>) -> Self {
        self.context_report = report;
        self
    }

    /// The events for one step.
    pub fn encode(&mut self, step: Step) -> Vec<Event> {
        let mut events = Vec::new();
        if !std::mem::replace(&mut self.started, true) {
            // The first step is `Started` once the prompt has run, with how
            // much of it the prompt cache held; a request that ends before
            // its prompt runs reports none cached.
            let cached = match &step {
                Step::Output(Output::Started {
                    cached_prompt_tokens,
                }) => *cached_prompt_tokens,
                _ => 0,
            };
            let mut usage = input_usage(self.prompt_tokens, cached);
            usage["output_tokens"] = json!(0);
            events.push(event(
                "message_start",
                json!({
                    "type": "message_start",
                    "message": {
                        "id": self.id, "type": "message", "role": "assistant", "model": self.model,
                        "content": [], "stop_reason": null, "stop_sequence": null, "usage": usage,
                    },
                }),
            ));
        }
        match step {
            Step::Output(Output::Delta(delta)) => {
                if !delta.reasoning.is_empty() {
                    let index = self.blocks.switch("thinking", None, &mut events);
                    self.blocks.reasoning.push_str(&delta.reasoning);
                    if !self.omit_thinking {
                        events.push(block_delta(
                            index,
                            json!({"type": "thinking_delta", "thinking": delta.reasoning}),
                        ));
                    }
                }
                if !delta.content.is_empty() {
                    let index = self.blocks.switch("text", None, &mut events);
                    events.push(block_delta(
                        index,
                        json!({"type": "text_delta", "text": delta.content}),
                    ));
                }
                for call in &delta.tool_calls {
                    let start = json!({"type": "tool_use", "id": tool_use_id(call), "name": call.name, "input": {}});
                    let index = self.blocks.switch("tool_use", Some(start), &mut events);
                    events.push(block_delta(
                        index,
                        json!({"type": "input_json_delta", "partial_json": call.arguments}),
                    ));
                }
            }
            Step::Output(Output::Done { stats, finish }) => {
                self.blocks.close(&mut events);
                let mut delta = json!({
                    "type": "message_delta",
                    "delta": {"stop_reason": stop_reason(finish, &stats), "stop_sequence": stats.stop_sequence.clone()},
                    "usage": usage(&stats),
                });
                if let Some(report) = self.context_report.take() {
                    delta["context_management"] = report;
                }
                events.push(event("message_delta", delta));
                events.push(event("message_stop", json!({"type": "message_stop"})));
            }
            Step::Error(error) => {
                let api: ApiError = error.into();
                events.push(event("error", api.anthropic().body()));
            }
            Step::Output(Output::Started { .. }) | Step::End => {}
        }
        events
    }
}

fn event(name: &str, data: Value) -> Event {
    Event::default().event(name).data(data.to_string())
}

fn block_delta(index: usize, delta: Value) -> Event {
    event(
        "content_block_delta",
        json!({"type": "content_block_delta", "index": index, "delta": delta}),
    )
}

/// The content block a stream has open.
#[derive(Debug, Default)]
struct OpenBlock {
    open: Option<&'static str>,
    index: usize,
    /// The open thinking block's reasoning, for its signature.
    reasoning: String,
}

impl OpenBlock {
    /// Makes the open block one of `kind` (a new one when `start` is given);
    /// returns its index.
    fn switch(
        &mut self,
        kind: &'static str,
        start: Option<Value>,
        events: &mut Vec<Event>,
    ) -> usize {
        if self.open.is_some() && (self.open != Some(kind) || start.is_some()) {
            self.close(events);
        }
        if self.open.is_none() {
            let block = start.unwrap_or_else(|| match kind {
                "thinking" => json!({"type": "thinking", "thinking": "", "signature": ""}),
                _ => json!({"type": "text", "text": ""}),
            });
            events.push(event(
                "content_block_start",
                json!({"type": "content_block_start", "index": self.index, "content_block": block}),
            ));
            self.open = Some(kind);
        }
        self.index
    }

    /// Closes the open block; a thinking block gets its signature first.
    fn close(&mut self, events: &mut Vec<Event>) {
        if let Some(kind) = self.open.take() {
            let reasoning = std::mem::take(&mut self.reasoning);
            if kind == "thinking" {
                let signature = signature::sign(&reasoning);
                events.push(block_delta(
                    self.index,
                    json!({"type": "signature_delta", "signature": signature}),
                ));
            }
            events.push(event(
                "content_block_stop",
                json!({"type": "content_block_stop", "index": self.index}),
            ));
            self.index += 1;
        }
    }
}
