//! One request's generation, as the HTTP and app adapters see it: a prompt
//! goes in, a stream of [`Output`]s comes out (text, reasoning and tool-call
//! deltas, then the statistics). Dropping the [`Generation`] cancels it
//! before the model's next decode step.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use orchard_engine::sampler::Sampled;
use orchard_engine::{
    ChatMessage, EngineError, Event, FinishReason, GenerateOptions, GenerationStats, OnComplete,
    ReasoningBudget, SubmitError, TemplateOptions,
};
use serde_json::Value;
use tokio::sync::mpsc;

use crate::chat::{OutputParser, Parsed, ToolCall, ToolChoice};
use crate::error::CoreError;
use crate::manager::{LoadedModel, Prompter};

/// What to run.
#[derive(Debug, Clone)]
pub enum GenerationRequest {
    /// A conversation, rendered with the model's chat template.
    Chat {
        messages: Vec<ChatMessage>,
        /// OpenAI-style tool definitions (`{"type": "function", "function": {...}}`).
        tools: Vec<Value>,
        tool_choice: ToolChoice,
        /// Passed to templates that can switch reasoning on and off.
        enable_thinking: Option<bool>,
        /// Close the reasoning block after this many tokens.
        reasoning_budget: Option<usize>,
        /// At most one tool call (OpenAI's `parallel_tool_calls: false`):
        /// generation ends once the first call is complete.
        single_tool_call: bool,
        options: GenerateOptions,
        /// Report each token's log-probability.
        logprobs: bool,
        /// Structured output: the answer follows this JSON schema.
        json_output: Option<JsonOutput>,
        /// The images of `messages`, in order: each message part that holds
        /// one is `{"type": "image"}` there.
        images: Vec<ImageInput>,
    },
    /// Raw text continued as is (the completions API).
    Text {
        prompt: String,
        options: GenerateOptions,
        logprobs: bool,
    },
}

/// An image of a chat request, as sent.
#[derive(Debug, Clone, PartialEq)]
pub struct ImageInput {
    /// The image file's bytes (PNG, JPEG, WebP or GIF).
    pub bytes: Vec<u8>,
    /// Where the request carried it (`messages[1].content[0]`), for errors.
    pub param: String,
}

/// Structured output: the answer is JSON that follows `schema`, each token
/// kept inside it by a grammar (llguidance). Thinking templates are switched
/// off for it, so the answer starts with the JSON.
#[derive(Debug, Clone, PartialEq)]
pub struct JsonOutput {
    pub schema: Value,
    /// The request field that carried it, named when the schema is refused.
    pub param: &'static str,
}

/// A token's log-probability and the alternatives asked for.
#[derive(Debug, Clone, PartialEq)]
pub struct TokenLogprobs {
    pub token: String,
    pub logprob: f32,
    pub top: Vec<(String, f32)>,
}

/// New output since the last one; any part may be empty.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Delta {
    pub content: String,
    pub reasoning: String,
    pub tool_calls: Vec<ToolCall>,
    pub logprobs: Vec<TokenLogprobs>,
}

/// Why a response ended, in the APIs' terms.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Finish {
    Stop,
    Length,
    ToolCalls,
    Cancelled,
}

/// One item of a generation's stream.
#[derive(Debug, Clone, PartialEq)]
pub enum Output {
    /// The prompt has been computed; first, unless the request ends before
    /// its prompt runs (cancelled while waiting, or failed).
    Started {
        cached_prompt_tokens: usize,
    },
    Delta(Delta),
    /// Always last.
    Done {
        stats: GenerationStats,
        finish: Finish,
    },
}

/// A running generation.
#[derive(Debug)]
pub struct Generation {
    pub model: Arc<LoadedModel>,
    /// Tokens in the prompt as run (template and any forced tool-call opening).
    pub prompt_tokens: usize,
    receiver: mpsc::Receiver<Result<Output, CoreError>>,
    cancel: Arc<AtomicBool>,
}

impl Generation {
    /// The next output; None after `Done` or an error.
    pub async fn next(&mut self) -> Option<Result<Output, CoreError>> {
        self.receiver.recv().await
    }

    /// Stops the generation before its next step.
    pub fn cancel(&self) {
        self.cancel.store(true, Ordering::Relaxed);
    }
}

impl Drop for Generation {
    fn drop(&mut self) {
        self.cancel();
    }
}

impl LoadedModel {
    /// What a refused submission to the worker means for the caller.
    pub(crate) fn submit_error(&self, error: SubmitError) -> CoreError {
        match error {
            SubmitError::QueueFull(waiting) => CoreError::Busy {
                name: self.id.clone(),
                waiting,
            },
            // The worker stops only when the model is dropped, and the
            // caller holds it: a stopped worker is a dead thread.
            SubmitError::Stopped => CoreError::WorkerDied(self.id.clone()),
        }
    }

    /// The prompt tokens of a conversation and the parser for the reply.
    pub fn chat_prompt(
        &self,
        messages: Vec<ChatMessage>,
        tools: &[Value],
        tool_choice: &ToolChoice,
        enable_thinking: Option<bool>,
    ) -> Result<(Vec<u32>, OutputParser), CoreError> {
        self.prompter
            .chat_prompt(messages, tools, tool_choice, enable_thinking)
    }

    /// Tokens a conversation's prompt takes.
    pub fn count_chat_tokens(
        &self,
        messages: Vec<ChatMessage>,
        tools: &[Value],
    ) -> Result<usize, CoreError> {
        self.prompter.count_chat_tokens(messages, tools)
    }
}

/// A template's refusal ("roles must alternate", "No user query found") is
/// the request's fault, named on `messages`; so are tokenizer parameter errors.
fn prompt_error(error: EngineError) -> CoreError {
    match error {
        EngineError::Template(message) => CoreError::invalid(
            "messages",
            format!("the model's chat template rejected the messages: {message}"),
        ),
        EngineError::InvalidParameter { name, message } => CoreError::invalid(name, message),
        other => CoreError::Engine(other),
    }
}

/// The function `tool_choice` forces: the one it names, or the only tool
/// offered when some call is required.
fn forced_function(tools: &[Value], tool_choice: &ToolChoice) -> Option<ToolChoice> {
    match (tool_choice, tools) {
        (ToolChoice::Required, [only]) => only
            .get("function")
            .and_then(|f| f.get("name"))
            .and_then(Value::as_str)
            .map(|name| ToolChoice::Function(name.to_string())),
        (ToolChoice::Function(_), _) => Some(tool_choice.clone()),
        _ => None,
    }
}

/// The parameters schema of the call `tool_choice` forces, if it forces one
/// whose tool has a schema.
fn forced_parameters<'t>(tools: &'t [Value], tool_choice: &ToolChoice) -> Option<&'t Value> {
    let Some(ToolChoice::Function(name)) = forced_function(tools, tool_choice) else {
        return None;
    };
    tools
        .iter()
        .filter_map(|t| t.get("function"))
        .find(|f| f.get("name").and_then(Value::as_str) == Some(name.as_str()))
        .and_then(|f| f.get("parameters"))
        .filter(|p| p.is_object())
}

impl Prompter {
    /// The prompt tokens of a conversation and the parser for the reply.
    pub fn chat_prompt(
        &self,
        messages: Vec<ChatMessage>,
        tools: &[Value],
        tool_choice: &ToolChoice,
        enable_thinking: Option<bool>,
    ) -> Result<(Vec<u32>, OutputParser), CoreError> {
        self.render(messages, tools, tool_choice, enable_thinking, true)
    }

    /// As [`Self::chat_prompt`]; with `open_arguments` false a forced call's
    /// opening stops where its arguments begin (they are then constrained).
    /// The image parts of the messages (`{"type": "image"}`) become the
    /// image tokens of a model that takes images.
    fn render(
        &self,
        messages: Vec<ChatMessage>,
        tools: &[Value],
        tool_choice: &ToolChoice,
        enable_thinking: Option<bool>,
        open_arguments: bool,
    ) -> Result<(Vec<u32>, OutputParser), CoreError> {
        let images = messages.iter().map(image_parts).sum::<usize>();
        let offered: &[Value] = if *tool_choice == ToolChoice::None {
            &[]
        } else {
            tools
        };
        // "Some tool, required" with one tool offered means that tool.
        let single = match tool_choice {
            ToolChoice::Required => forced_function(offered, tool_choice),
            _ => None,
        };
        let tool_choice = single.as_ref().unwrap_or(tool_choice);
        if let ToolChoice::Function(name) = tool_choice {
            let known = offered.iter().any(|t| {
                t.get("function")
                    .and_then(|f| f.get("name"))
                    .and_then(Value::as_str)
                    == Some(name)
            });
            if !known {
                return Err(CoreError::invalid(
                    "tool_choice",
                    format!("tool_choice names the function {name:?}, which is not in tools"),
                ));
            }
        }
        let (messages, template_tools) = self.format.prepare(messages, offered);
        let options = TemplateOptions {
            add_generation_prompt: true,
            tools: template_tools,
            documents: None,
            enable_thinking,
        };
        let mut text = self
            .tokenizer
            .apply_chat_template(&messages, &options)
            .map_err(prompt_error)?;
        let (opening, parser) =
            self.format
                .start_output_with(&text, offered, tool_choice, open_arguments);
        text.push_str(&opening);
        if images > 0
            && let Some(processor) = &self.images
        {
            text = processor.expand(&text, images).map_err(|e| match e {
                EngineError::InvalidParameter { name, message } => {
                    CoreError::invalid(name, message)
                }
                other => CoreError::Engine(other),
            })?;
        }
        let tokens = self.tokenizer.encode(&text, false).map_err(prompt_error)?;
        Ok((tokens, parser))
    }

    /// Tokens a conversation's prompt takes.
    pub fn count_chat_tokens(
        &self,
        messages: Vec<ChatMessage>,
        tools: &[Value],
    ) -> Result<usize, CoreError> {
        Ok(self
            .chat_prompt(messages, tools, &ToolChoice::Auto, None)?
            .0
            .len())
    }

    /// The engine's limit on reasoning for a reply read by `parser`: None
    /// when the model does not reason in `<think>` blocks (nothing to limit).
    pub fn reasoning_budget(
        &self,
        tokens: usize,
        parser: &OutputParser,
    ) -> Result<Option<ReasoningBudget>, CoreError> {
        if !parser.thinking() {
            return Ok(None);
        }
        let forced = self
            .tokenizer
            .encode("\n</think>\n\n", false)
            .map_err(prompt_error)?;
        Ok(Some(ReasoningBudget {
            tokens,
            starts_open: parser.in_reasoning(),
            open: "<think>".into(),
            close: "</think>".into(),
            forced,
        }))
    }
}

/// The image parts of a message's content (`{"type": "image"}`).
fn image_parts(message: &ChatMessage) -> usize {
    message.content.as_array().map_or(0, |parts| {
        parts
            .iter()
            .filter(|p| p.get("type").and_then(Value::as_str) == Some("image"))
            .count()
    })
}

/// Queues `request` on the model's worker and returns its stream. Fails at
/// once (before any output) on bad parameters, a prompt too long, or a full queue.
pub async fn start(
    model: Arc<LoadedModel>,
    request: GenerationRequest,
) -> Result<Generation, CoreError> {
    if model.embedding.is_some() {
        return Err(CoreError::invalid(
            "model",
            format!(
                "{} is an embedding model: it makes vectors, not text; send its inputs to /v1/embeddings",
                model.id
            ),
        ));
    }
    let prepare_model = Arc::clone(&model);
    let prepared = tokio::task::spawn_blocking(move || {
        let model = prepare_model;
        match request {
            GenerationRequest::Chat {
                messages,
                tools,
                tool_choice,
                enable_thinking,
                reasoning_budget,
                single_tool_call,
                mut options,
                logprobs,
                json_output,
                images,
            } => {
                if let Some(first) = images.first() {
                    let processor = model.worker.image_processor().ok_or_else(|| {
                        CoreError::invalid(
                            &first.param,
                            format!(
                                "{} does not take images. Orchard reads images with Gemma 3 models (such as mlx-community/gemma-3-4b-it-4bit); load one of those, or send text only",
                                model.id
                            ),
                        )
                    })?;
                    for image in &images {
                        let prepared = processor
                            .prepare(&image.bytes)
                            .map_err(|e| CoreError::invalid(&image.param, e.to_string()))?;
                        options.images.push(prepared);
                    }
                }
                let enable_thinking = match &json_output {
                    Some(_) => Some(false),
                    None => enable_thinking,
                };
                // A forced call's arguments follow its tool's schema; a
                // schema the grammar cannot take leaves them free.
                let arguments = match (&json_output, forced_parameters(&tools, &tool_choice)) {
                    (None, Some(schema)) if tool_choice != ToolChoice::None => {
                        let compiled = model
                            .tokenizer()
                            .grammars()
                            .and_then(|g| g.json_schema(schema, OnComplete::Release));
                        match compiled {
                            Ok(constraint) => Some(constraint),
                            Err(error) => {
                                tracing::warn!(%error, "a forced tool call's arguments are not constrained");
                                None
                            }
                        }
                    }
                    _ => None,
                };
                let (tokens, parser) = model.prompter.render(
                    messages,
                    &tools,
                    &tool_choice,
                    enable_thinking,
                    arguments.is_none(),
                )?;
                options.constraint = arguments;
                if let Some(json) = json_output {
                    let grammars = model.tokenizer().grammars().map_err(CoreError::Engine)?;
                    let constraint = grammars
                        .json_schema(&json.schema, OnComplete::End)
                        .map_err(|e| match e {
                            EngineError::InvalidParameter { message, .. } => {
                                CoreError::invalid(json.param, message)
                            }
                            other => CoreError::Engine(other),
                        })?;
                    options.constraint = Some(constraint);
                }
                if let Some(budget) = reasoning_budget {
                    options.reasoning_budget = model.prompter.reasoning_budget(budget, &parser)?;
                }
                Ok::<_, CoreError>((tokens, Some(parser), options, logprobs, single_tool_call))
            }
            GenerationRequest::Text {
                prompt,
                options,
                logprobs,
            } => Ok((
                model
                    .tokenizer()
                    .encode(&prompt, true)
                    .map_err(prompt_error)?,
                None,
                options,
                logprobs,
                false,
            )),
        }
    })
    .await
    .map_err(|e| CoreError::Engine(orchard_engine::EngineError::Exception(e.to_string())))?;
    let (tokens, parser, mut options, logprobs, single_tool_call) = prepared?;

    options.sampling.validate().map_err(|e| match e {
        orchard_engine::EngineError::InvalidParameter { name, message } => {
            CoreError::invalid(name, message)
        }
        other => CoreError::Engine(other),
    })?;
    let limit = match options.max_context {
        0 => model.context_length(),
        profile => profile.min(model.context_length()),
    };
    if tokens.is_empty() {
        return Err(CoreError::invalid("prompt", "the prompt is empty"));
    }
    if tokens.len() >= limit {
        return Err(CoreError::PromptTooLong {
            tokens: tokens.len(),
            limit,
        });
    }
    let cancel = Arc::new(AtomicBool::new(false));
    options.cancel = Some(Arc::clone(&cancel));
    let prompt_tokens = tokens.len();
    let events = model
        .worker
        .submit(tokens, options)
        .map_err(|e| model.submit_error(e))?;
    model.active.fetch_add(1, Ordering::Relaxed);
    model.touch();
    let (sender, receiver) = mpsc::channel(64);
    let bridge_model = Arc::clone(&model);
    let relay_cancel = Arc::clone(&cancel);
    tokio::task::spawn_blocking(move || {
        let relay = Relay {
            model: &bridge_model,
            logprobs,
            single_tool_call,
            cancel: &relay_cancel,
        };
        relay.run(events, parser, &sender)
    });
    Ok(Generation {
        model,
        prompt_tokens,
        receiver,
        cancel,
    })
}

/// Moves the worker's events to the async side, parsing text on the way.
struct Relay<'a> {
    model: &'a LoadedModel,
    logprobs: bool,
    single_tool_call: bool,
    cancel: &'a AtomicBool,
}

impl Relay<'_> {
    /// Returning drops `events`, which stops the worker at its next step.
    fn run(
        &self,
        events: std::sync::mpsc::Receiver<orchard_engine::Result<Event>>,
        mut parser: Option<OutputParser>,
        sender: &mpsc::Sender<Result<Output, CoreError>>,
    ) {
        struct Active<'a>(&'a LoadedModel);
        impl Drop for Active<'_> {
            fn drop(&mut self) {
                self.0.active.fetch_sub(1, Ordering::Relaxed);
                self.0.touch();
            }
        }
        let model = self.model;
        let _active = Active(model);
        let mut called_tools = false;
        // Tokens sampled while a reasoning block was open, or that wrote
        // reasoning: the closing tag counts as reasoning, the opening one too
        // when the model writes it.
        let mut reasoning_tokens = 0;
        for event in events {
            match event {
                Err(e) => {
                    tracing::error!(model = %model.id, error = %e, "generation failed");
                    let _ = sender.blocking_send(Err(CoreError::Engine(e)));
                    return;
                }
                Ok(Event::Delta { text, tokens }) => {
                    let was_reasoning = parser.as_ref().is_some_and(OutputParser::in_reasoning);
                    let mut parsed = match parser.as_mut() {
                        Some(parser) => parser.feed(&text),
                        None => Parsed {
                            content: text,
                            ..Parsed::default()
                        },
                    };
                    if was_reasoning || !parsed.reasoning.is_empty() {
                        reasoning_tokens += tokens.len();
                    }
                    let logprobs = if self.logprobs {
                        tokens.iter().map(|t| token_logprobs(model, t)).collect()
                    } else {
                        Vec::new()
                    };
                    if self.single_tool_call && !parsed.tool_calls.is_empty() {
                        if called_tools {
                            parsed.tool_calls.clear();
                        }
                        parsed.tool_calls.truncate(1);
                        if !parsed.tool_calls.is_empty() || called_tools {
                            // One call is all that was asked for: stop the model.
                            self.cancel.store(true, Ordering::Relaxed);
                        }
                    }
                    called_tools |= !parsed.tool_calls.is_empty();
                    if !send_delta(sender, parsed, logprobs) {
                        return;
                    }
                }
                Ok(Event::Prefilled { cached_tokens }) => {
                    let started = Output::Started {
                        cached_prompt_tokens: cached_tokens,
                    };
                    if sender.blocking_send(Ok(started)).is_err() {
                        return;
                    }
                }
                Ok(Event::Done(mut stats)) => {
                    stats.reasoning_tokens = reasoning_tokens.min(stats.generated_tokens);
                    self.finish(stats, parser.as_mut(), called_tools, sender);
                    return;
                }
            }
        }
        // The worker dropped the request without finishing it: its thread died.
        tracing::error!(model = %model.id, "the model's worker stopped in the middle of a request");
        let _ = sender.blocking_send(Err(CoreError::WorkerDied(model.id.clone())));
    }

    fn finish(
        &self,
        mut stats: GenerationStats,
        parser: Option<&mut OutputParser>,
        mut called_tools: bool,
        sender: &mpsc::Sender<Result<Output, CoreError>>,
    ) {
        let model = self.model;
        if let Some(parser) = parser {
            let mut rest = parser.finish();
            if self.single_tool_call && called_tools {
                rest.tool_calls.clear();
            }
            rest.tool_calls
                .truncate(if self.single_tool_call { 1 } else { usize::MAX });
            called_tools |= !rest.tool_calls.is_empty();
            if !send_delta(sender, rest, Vec::new()) {
                return;
            }
        }
        model
            .generated_tokens
            .fetch_add(stats.generated_tokens as u64, Ordering::Relaxed);
        model.last_decode_milli_tps.store(
            (stats.decode_tokens_per_second * 1000.0) as u64,
            Ordering::Relaxed,
        );
        model.record(&stats);
        // Stopped after the one call asked for: that is a finished answer.
        if self.single_tool_call && called_tools && stats.finish_reason == FinishReason::Cancelled {
            stats.finish_reason = FinishReason::Stop;
        }
        let finish = match stats.finish_reason {
            FinishReason::Cancelled => Finish::Cancelled,
            _ if called_tools => Finish::ToolCalls,
            FinishReason::Stop => Finish::Stop,
            FinishReason::Length => Finish::Length,
        };
        let _ = sender.blocking_send(Ok(Output::Done { stats, finish }));
    }
}

/// Sends a delta unless it is empty; false when the receiver has gone.
fn send_delta(
    sender: &mpsc::Sender<Result<Output, CoreError>>,
    parsed: Parsed,
    logprobs: Vec<TokenLogprobs>,
) -> bool {
    if parsed.is_empty() && logprobs.is_empty() {
        return true;
    }
    sender
        .blocking_send(Ok(Output::Delta(Delta {
            content: parsed.content,
            reasoning: parsed.reasoning,
            tool_calls: parsed.tool_calls,
            logprobs,
        })))
        .is_ok()
}

fn token_logprobs(model: &LoadedModel, sampled: &Sampled) -> TokenLogprobs {
    let text = |id: u32| model.tokenizer().decode(&[id]).unwrap_or_default();
    TokenLogprobs {
        token: text(sampled.token),
        logprob: sampled.logprob,
        top: sampled
            .top
            .iter()
            .map(|t| (text(t.token), t.logprob))
            .collect(),
    }
}
