//! A response's output items, built from a generation's steps, and the
//! events that stream them as OpenAI sends them:
//!
//! `response.created`, `response.in_progress`; for each output item
//! `response.output_item.added`, its deltas and `response.output_item.done`
//! (a message's text inside `response.content_part.added` / `.done`, with
//! `response.output_text.delta` / `.done`; reasoning with
//! `response.reasoning_text.delta` / `.done`; a call with
//! `response.function_call_arguments.delta` / `.done`, or
//! `response.custom_tool_call_input.delta` / `.done`); then
//! `response.completed`, `response.incomplete` (`max_output_tokens`) or
//! `response.failed`. Every event carries a `sequence_number`.
//!
//! The answer that is not streamed is the same encoder's final response,
//! its events thrown away, so both forms cannot disagree.

use axum::response::sse::Event;
use orchard_core::{CoreError, Finish, GenerationStats, Output};
use orchard_store::{Store, StoredResponse};
use serde_json::{Value, json};

use super::super::Reply;
use super::tools::Tools;
use crate::error::ApiError;
use crate::new_id;
use crate::sse::Step;

/// Keeps a finished response for `previous_response_id`.
#[derive(Debug)]
pub(super) struct Saver {
    pub(super) store: Store,
    /// The conversation's items before this response's output.
    pub(super) items: Vec<Value>,
    pub(super) retention_days: u64,
}

impl Saver {
    fn save(self, response: &Value, output: &[Value]) {
        let created_at = response["created_at"].as_u64().unwrap_or(0);
        let mut items = self.items;
        items.extend(output.iter().cloned());
        let stored = StoredResponse {
            id: response["id"].as_str().unwrap_or_default().to_string(),
            created_at,
            model: response["model"].as_str().unwrap_or_default().to_string(),
            items,
            body: response.clone(),
        };
        if let Err(error) = self.store.save_response(&stored) {
            tracing::error!(%error, id = %stored.id, "the response could not be stored");
        }
        let cutoff = created_at.saturating_sub(self.retention_days.saturating_mul(86_400));
        if let Err(error) = self.store.prune_responses(cutoff) {
            tracing::warn!(%error, "old stored responses could not be removed");
        }
    }
}

/// The item being written.
#[derive(Debug)]
struct Open {
    reasoning: bool,
    id: String,
    text: String,
}

#[derive(Debug)]
pub(super) struct Encoder {
    /// The response object; `status`, `output` and `usage` are filled in
    /// as it goes.
    response: Value,
    reply: Reply,
    tools: Tools,
    saver: Option<Saver>,
    sequence: u64,
    started: bool,
    output: Vec<Value>,
    open: Option<Open>,
    /// Set once the response has ended (completed, incomplete or failed).
    finished: bool,
}

impl Encoder {
    pub(super) fn new(response: Value, reply: Reply, tools: Tools, saver: Option<Saver>) -> Self {
        Encoder {
            response,
            reply,
            tools,
            saver,
            sequence: 0,
            started: false,
            output: Vec::new(),
            open: None,
            finished: false,
        }
    }

    /// The response as it stands: the final one once `Done` was encoded.
    pub(super) fn response(&self) -> &Value {
        &self.response
    }

    pub(super) fn finished(&self) -> bool {
        self.finished
    }

    /// The events for one step.
    pub(super) fn encode(&mut self, step: Step) -> Vec<Event> {
        let mut events = Vec::new();
        self.start(&mut events);
        match step {
            Step::Output(Output::Delta(delta)) => {
                self.reply.saw_output();
                if !delta.reasoning.is_empty() {
                    self.write(true, &delta.reasoning, &mut events);
                }
                if !delta.content.is_empty() {
                    self.write(false, &delta.content, &mut events);
                }
                for call in &delta.tool_calls {
                    self.close(&mut events);
                    let index = self.output.len();
                    let id = new_id(if self.tools.is_custom(&call.name) {
                        "ctc_"
                    } else {
                        "fc_"
                    });
                    let item = self.tools.call_item(&id, call);
                    let custom = item["type"] == "custom_tool_call";
                    let mut added = item.clone();
                    added["status"] = json!("in_progress");
                    added[if custom { "input" } else { "arguments" }] = json!("");
                    self.event(
                        &mut events,
                        "response.output_item.added",
                        json!({"output_index": index, "item": added}),
                    );
                    let (kind, field, text) = if custom {
                        ("response.custom_tool_call_input", "input", &item["input"])
                    } else {
                        (
                            "response.function_call_arguments",
                            "arguments",
                            &item["arguments"],
                        )
                    };
                    let text = text.clone();
                    self.event(
                        &mut events,
                        &format!("{kind}.delta"),
                        json!({"item_id": id, "output_index": index, "delta": text}),
                    );
                    self.event(
                        &mut events,
                        &format!("{kind}.done"),
                        json!({"item_id": id, "output_index": index, field: text}),
                    );
                    self.event(
                        &mut events,
                        "response.output_item.done",
                        json!({"output_index": index, "item": item}),
                    );
                    self.output.push(item);
                }
            }
            Step::Output(Output::Done { stats, finish }) => {
                self.close(&mut events);
                self.reply.done(&stats);
                self.finish(&stats, finish, &mut events);
            }
            Step::Error(error) => self.fail(error, &mut events),
            Step::Output(Output::Started { .. }) | Step::End => {}
        }
        events
    }

    /// The events of a response that failed before its generation began.
    pub(super) fn failed_before_start(&mut self, error: CoreError) -> Vec<Event> {
        let mut events = Vec::new();
        self.start(&mut events);
        self.fail(error, &mut events);
        events
    }

    fn start(&mut self, events: &mut Vec<Event>) {
        if std::mem::replace(&mut self.started, true) {
            return;
        }
        let response = self.response.clone();
        self.event(events, "response.created", json!({"response": response}));
        self.event(
            events,
            "response.in_progress",
            json!({"response": response}),
        );
    }

    /// Appends `text` to the open reasoning (or message) item, opening one.
    fn write(&mut self, reasoning: bool, text: &str, events: &mut Vec<Event>) {
        if self.open.as_ref().is_some_and(|o| o.reasoning != reasoning) {
            self.close(events);
        }
        let index = self.output.len();
        if self.open.is_none() {
            let id = new_id(if reasoning { "rs_" } else { "msg_" });
            let item = if reasoning {
                json!({"type": "reasoning", "id": id, "summary": [], "content": [], "status": "in_progress"})
            } else {
                json!({"type": "message", "id": id, "role": "assistant", "status": "in_progress", "content": []})
            };
            self.event(
                events,
                "response.output_item.added",
                json!({"output_index": index, "item": item}),
            );
            if !reasoning {
                self.event(
                    events,
                    "response.content_part.added",
                    json!({"item_id": id, "output_index": index, "content_index": 0, "part": text_part("")}),
                );
            }
            self.open = Some(Open {
                reasoning,
                id,
                text: String::new(),
            });
        }
        let Some(open) = self.open.as_mut() else {
            return;
        };
        open.text.push_str(text);
        let id = open.id.clone();
        let kind = if reasoning {
            "response.reasoning_text.delta"
        } else {
            "response.output_text.delta"
        };
        let mut data =
            json!({"item_id": id, "output_index": index, "content_index": 0, "delta": text});
        if !reasoning {
            data["logprobs"] = json!([]);
        }
        self.event(events, kind, data);
    }

    /// Finishes the open item, if any.
    fn close(&mut self, events: &mut Vec<Event>) {
        let Some(open) = self.open.take() else {
            return;
        };
        let index = self.output.len();
        let Open {
            reasoning,
            id,
            text,
        } = open;
        let item = if reasoning {
            self.event(
                events,
                "response.reasoning_text.done",
                json!({"item_id": id, "output_index": index, "content_index": 0, "text": text}),
            );
            json!({
                "type": "reasoning", "id": id, "summary": [], "status": "completed",
                "content": [{"type": "reasoning_text", "text": text}],
            })
        } else {
            self.event(
                events,
                "response.output_text.done",
                json!({"item_id": id, "output_index": index, "content_index": 0, "text": text, "logprobs": []}),
            );
            let part = text_part(&text);
            self.event(
                events,
                "response.content_part.done",
                json!({"item_id": id, "output_index": index, "content_index": 0, "part": part}),
            );
            json!({"type": "message", "id": id, "role": "assistant", "status": "completed", "content": [part]})
        };
        self.event(
            events,
            "response.output_item.done",
            json!({"output_index": index, "item": item}),
        );
        self.output.push(item);
    }

    fn finish(&mut self, stats: &GenerationStats, finish: Finish, events: &mut Vec<Event>) {
        let complete = matches!(finish, Finish::Stop | Finish::ToolCalls);
        self.response["status"] = json!(if complete { "completed" } else { "incomplete" });
        if finish == Finish::Length {
            self.response["incomplete_details"] = json!({"reason": "max_output_tokens"});
        }
        self.response["output"] = Value::Array(self.output.clone());
        self.response["usage"] = usage(stats);
        self.finished = true;
        if let Some(saver) = self.saver.take() {
            saver.save(&self.response, &self.output);
        }
        let response = self.response.clone();
        let kind = if complete {
            "response.completed"
        } else {
            "response.incomplete"
        };
        self.event(events, kind, json!({"response": response}));
    }

    fn fail(&mut self, error: CoreError, events: &mut Vec<Event>) {
        let api: ApiError = error.into();
        self.response["status"] = json!("failed");
        self.response["error"] = json!({
            "code": api.code.unwrap_or("server_error"),
            "message": api.message,
        });
        self.response["output"] = Value::Array(self.output.clone());
        self.finished = true;
        let response = self.response.clone();
        self.event(events, "response.failed", json!({"response": response}));
    }

    fn event(&mut self, events: &mut Vec<Event>, kind: &str, mut data: Value) {
        data["type"] = json!(kind);
        data["sequence_number"] = json!(self.sequence);
        self.sequence += 1;
        events.push(Event::default().event(kind).data(data.to_string()));
    }
}

fn text_part(text: &str) -> Value {
    json!({"type": "output_text", "text": text, "annotations": [], "logprobs": []})
}

/// Usage as the Responses API reports it.
fn usage(stats: &GenerationStats) -> Value {
    json!({
        "input_tokens": stats.prompt_tokens,
        "input_tokens_details": {"cached_tokens": stats.cached_prompt_tokens},
        "output_tokens": stats.generated_tokens,
        "output_tokens_details": {"reasoning_tokens": stats.reasoning_tokens},
        "total_tokens": stats.prompt_tokens + stats.generated_tokens,
    })
}
