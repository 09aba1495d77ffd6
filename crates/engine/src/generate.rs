//! Generation in three layers, after mlx-lm's `generate.py`:
//! [`TokenSteps`] yields one sampled token per step; [`TextStream`] turns them
//! into UTF-8-safe text deltas, applies stop strings and limits, and ends with
//! the request's statistics; [`generate`] returns the whole text.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use mlx_rs::{Array, Dtype};

use crate::cache::KvCache;
use crate::error::{EngineError, Result};
use crate::model::Model;
use crate::prompt_cache::PromptCache;
use crate::sampler::{Sampled, Sampler, SamplingParams};

/// Prompt tokens run per forward pass during prefill (mlx-lm's default
/// `prefill_step_size`); bounds the memory of the attention scores.
const PREFILL_CHUNK: usize = 2048;

/// What to generate.
#[derive(Debug, Clone, Default)]
pub struct GenerateOptions {
    /// At most this many tokens (0 means up to the end of the context).
    pub max_tokens: usize,
    pub sampling: SamplingParams,
    /// Generation ends before the first of these; none of it is emitted.
    pub stop: Vec<String>,
    /// Report this many alternatives with each token (0 = none).
    pub top_logprobs: usize,
    /// Set to stop generating; checked before every step.
    pub cancel: Option<Arc<AtomicBool>>,
    /// Keep going past end-of-sequence tokens (benchmarks want exact lengths).
    pub ignore_eos: bool,
    /// Closes a reasoning block that runs longer than a budget.
    pub reasoning_budget: Option<ReasoningBudget>,
    /// Where the request counts its work (the worker's gauges); None counts nothing.
    pub counters: Option<Arc<Counters>>,
    /// Prompt tokens per forward pass; 0 means mlx-lm's 2048. Smaller chunks
    /// let a cancel land sooner, at some cost in prompt speed.
    pub prefill_chunk: usize,
    /// A context shorter than the model's (a profile's); 0 means the model's.
    pub max_context: usize,
}

/// A limit on reasoning: once `tokens` tokens were generated inside a block
/// opened by `open` and not yet closed by `close`, the tokens of `forced`
/// (which contains `close`) are written into the sequence as if sampled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReasoningBudget {
    pub tokens: usize,
    /// The prompt already opened the block (the template ends in `open`).
    pub starts_open: bool,
    pub open: String,
    pub close: String,
    /// The closing text's tokens, e.g. of `"\n</think>\n\n"`.
    pub forced: Vec<u32>,
}

/// Work done by the requests of one model, for gauges and tests. Every field
/// only grows except `kv_bytes`, the running sequence's cache.
#[derive(Debug, Default)]
pub struct Counters {
    /// Prompt tokens computed (not reused from a cache).
    pub prefilled_tokens: AtomicU64,
    /// Tokens generated (forced ones included).
    pub generated_tokens: AtomicU64,
    /// Bytes of keys and values of the sequence running now.
    pub kv_bytes: AtomicU64,
}

impl Counters {
    fn add(counter: &AtomicU64, n: usize) {
        counter.fetch_add(n as u64, Ordering::Relaxed);
    }
}

/// Why generation ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum FinishReason {
    /// An end-of-sequence token or a stop string.
    Stop,
    /// `max_tokens` or the context length.
    Length,
    /// The caller cancelled.
    Cancelled,
}

/// Measurements of one request.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct GenerationStats {
    pub prompt_tokens: usize,
    /// Prompt tokens whose keys and values came from a cache.
    pub cached_prompt_tokens: usize,
    pub generated_tokens: usize,
    pub time_to_first_token: Duration,
    pub prompt_tokens_per_second: f64,
    pub decode_tokens_per_second: f64,
    /// MLX's peak memory during the request, in bytes.
    pub peak_memory_bytes: usize,
    pub finish_reason: FinishReason,
    /// The stop string that ended generation, if one did.
    pub stop_sequence: Option<String>,
}

/// Where the next step starts from.
#[derive(Debug)]
enum Next {
    /// Host sampling: the prompt's last logits, copied out.
    Logits(Vec<f32>),
    /// Host sampling: the token sampled last, not yet run through the model.
    Token(u32),
    /// Greedy decoding on the device, one step ahead as mlx-lm's
    /// `generate_step`: the next token and its log-probability, already queued
    /// for evaluation while the caller handles the current one.
    Queued { token: Array, logprob: Array },
    /// The cache was taken out.
    Done,
}

/// Layer 1: prefill the prompt, then sample one token per step, forever.
#[derive(Debug)]
pub struct TokenSteps<'m> {
    model: &'m Model,
    cache: KvCache,
    sampler: Sampler,
    context: Vec<u32>,
    top_logprobs: usize,
    next: Next,
    /// Prompt tokens whose keys and values were reused rather than computed.
    cached_tokens: usize,
}

/// What a prefill reports to and checks with its caller.
#[derive(Debug, Default)]
pub struct Watch {
    pub cancel: Option<Arc<AtomicBool>>,
    pub counters: Option<Arc<Counters>>,
    /// Prompt tokens per forward pass (default [`PREFILL_CHUNK`]).
    pub chunk: Option<usize>,
}

impl Watch {
    fn check(&self) -> Result<()> {
        match &self.cancel {
            Some(flag) if flag.load(Ordering::Relaxed) => Err(EngineError::Cancelled),
            _ => Ok(()),
        }
    }

    fn prefilled(&self, tokens: usize, cache: &KvCache) {
        if let Some(counters) = &self.counters {
            Counters::add(&counters.prefilled_tokens, tokens);
            counters
                .kv_bytes
                .store(cache.nbytes() as u64, Ordering::Relaxed);
        }
    }
}

/// The most likely token of the last position and its log-probability, lazily.
fn greedy_on_device(logits: &Array) -> Result<(Array, Array)> {
    let vocab = logits.shape()[logits.ndim() - 1];
    let last = logits.reshape(&[-1, vocab])?;
    let last = last
        .take_axis(Array::from_int(last.shape()[0] - 1), 0)?
        .as_dtype(Dtype::Float32)?;
    let token = mlx_rs::ops::indexing::argmax(&last, None)?;
    let logprob = last.take(&token)?.subtract(last.logsumexp(None)?)?;
    mlx_rs::transforms::async_eval([&token, &logprob])?;
    Ok((token, logprob))
}

impl<'m> TokenSteps<'m> {
    /// Runs the prompt through the model (in chunks) and readies the first
    /// step. `reused` is a cache that already holds the prompt's first tokens,
    /// with their count (see [`PromptCache::take`]).
    pub fn new(
        model: &'m Model,
        prompt: &[u32],
        sampling: SamplingParams,
        top_logprobs: usize,
        reused: Option<(KvCache, usize)>,
    ) -> Result<Self> {
        Self::with_watch(
            model,
            prompt,
            sampling,
            top_logprobs,
            reused,
            &Watch::default(),
        )
    }

    /// Like [`TokenSteps::new`]; `watch` is checked for cancellation before
    /// each chunk of the prompt and told how many tokens were computed.
    pub fn with_watch(
        model: &'m Model,
        prompt: &[u32],
        sampling: SamplingParams,
        top_logprobs: usize,
        reused: Option<(KvCache, usize)>,
        watch: &Watch,
    ) -> Result<Self> {
        if prompt.is_empty() {
            return Err(EngineError::InvalidParameter {
                name: "prompt",
                message: "the prompt is empty".into(),
            });
        }
        if prompt.len() >= model.context_length() {
            return Err(EngineError::PromptTooLong {
                tokens: prompt.len(),
                limit: model.context_length(),
            });
        }
        let sampler = Sampler::new(sampling)?;
        let (mut cache, cached_tokens) = match reused {
            Some((cache, cached)) if cached < prompt.len() && cache.offset() as usize == cached => {
                (cache, cached)
            }
            _ => (model.new_cache(), 0),
        };
        // As mlx-lm does: all but the last token only fill the cache (their
        // logits are never computed); the last one runs alone for its logits.
        let (last, head) =
            prompt[cached_tokens..]
                .split_last()
                .ok_or_else(|| EngineError::InvalidParameter {
                    name: "prompt",
                    message: "no prompt token is left to compute".into(),
                })?;
        for chunk in head.chunks(watch.chunk.unwrap_or(PREFILL_CHUNK).max(1)) {
            watch.check()?;
            model.forward(chunk, &mut cache)?;
            cache.eval()?;
            watch.prefilled(chunk.len(), &cache);
        }
        // A hybrid model's recurrent state can come back to this point only
        // (the prompt but its last token: where the next turn, or the same
        // prompt sent again, leaves this sequence).
        cache.checkpoint();
        watch.check()?;
        watch.prefilled(1, &cache);
        let next = if sampler.is_plain_greedy() && top_logprobs == 0 {
            let (token, logprob) = greedy_on_device(&model.forward(&[*last], &mut cache)?)?;
            Next::Queued { token, logprob }
        } else {
            Next::Logits(model.last_logits(&[*last], &mut cache)?)
        };
        Ok(TokenSteps {
            model,
            cache,
            sampler,
            context: prompt.to_vec(),
            top_logprobs,
            next,
            cached_tokens,
        })
    }

    /// Prompt tokens that came from a reused cache.
    pub fn cached_tokens(&self) -> usize {
        self.cached_tokens
    }

    /// Takes the cache out, with the tokens whose positions it holds (all but
    /// a sampled token not yet run through the model). No step can follow.
    pub fn take_cache(&mut self) -> (Vec<u32>, KvCache) {
        self.next = Next::Done;
        let cache = std::mem::replace(&mut self.cache, self.model.new_cache());
        let mut tokens = std::mem::take(&mut self.context);
        tokens.truncate(cache.offset() as usize);
        (tokens, cache)
    }

    /// Every token so far: the prompt, then the generated ones.
    pub fn context(&self) -> &[u32] {
        &self.context
    }

    /// Samples the next token.
    pub fn step(&mut self) -> Result<Sampled> {
        let mut logits = match std::mem::replace(&mut self.next, Next::Done) {
            Next::Logits(logits) => logits,
            Next::Token(token) => self.model.last_logits(&[token], &mut self.cache)?,
            Next::Queued { token, logprob } => return self.step_queued(token, logprob),
            Next::Done => {
                return Err(EngineError::InvalidParameter {
                    name: "step",
                    message: "the sequence has ended: its cache was taken".into(),
                });
            }
        };
        let sampled = self
            .sampler
            .sample(&mut logits, &self.context, self.top_logprobs);
        self.context.push(sampled.token);
        self.next = Next::Token(sampled.token);
        Ok(sampled)
    }

    /// Queues the step after `token` on the device, then waits for `token`:
    /// the model computes while the caller handles this one.
    fn step_queued(&mut self, token: Array, logprob: Array) -> Result<Sampled> {
        let ids = token.reshape(&[1, 1])?;
        let (next_token, next_logprob) =
            greedy_on_device(&self.model.forward_ids(&ids, &mut self.cache)?)?;
        self.next = Next::Queued {
            token: next_token,
            logprob: next_logprob,
        };
        let sampled = Sampled {
            token: token
                .try_item_exact::<u32>()
                .map_err(|e| EngineError::Exception(format!("reading the sampled token: {e}")))?,
            logprob: logprob
                .try_item_exact::<f32>()
                .map_err(|e| EngineError::Exception(format!("reading its log-probability: {e}")))?,
            top: Vec::new(),
        };
        self.context.push(sampled.token);
        Ok(sampled)
    }

    /// Writes `tokens` into the sequence after the last sampled one, as if
    /// they had been sampled; the next step continues after them.
    pub fn force(&mut self, tokens: &[u32]) -> Result<()> {
        let Some((last, head)) = tokens.split_last() else {
            return Ok(());
        };
        let mut feed = Vec::with_capacity(tokens.len());
        match std::mem::replace(&mut self.next, Next::Done) {
            // The sampled token is in the context but not yet in the cache.
            Next::Token(token) => feed.push(token),
            // The cache holds the whole context; a queued prediction is dropped.
            Next::Queued { .. } | Next::Logits(_) => {}
            Next::Done => {
                return Err(EngineError::InvalidParameter {
                    name: "force",
                    message: "the sequence has ended: its cache was taken".into(),
                });
            }
        }
        feed.extend_from_slice(head);
        if !feed.is_empty() {
            self.model.forward(&feed, &mut self.cache)?;
            self.cache.eval()?;
        }
        self.context.extend_from_slice(tokens);
        self.next = if self.sampler.is_plain_greedy() && self.top_logprobs == 0 {
            let (token, logprob) =
                greedy_on_device(&self.model.forward(&[*last], &mut self.cache)?)?;
            Next::Queued { token, logprob }
        } else {
            Next::Logits(self.model.last_logits(&[*last], &mut self.cache)?)
        };
        Ok(())
    }

    /// Bytes of keys and values the sequence holds.
    pub fn kv_bytes(&self) -> usize {
        self.cache.nbytes()
    }
}

/// Turns tokens into text without splitting multi-byte characters. Text is
/// committed at each newline, so each step decodes only the current line (with
/// one token of context, so tokenizers that mark word starts keep the space).
#[derive(Debug, Default)]
struct Detokenizer {
    tokens: Vec<u32>,
    /// Index of the first token of the current line.
    line_start: usize,
    committed: String,
    line: String,
}

impl Detokenizer {
    fn push(&mut self, model: &Model, token: u32) -> Result<()> {
        self.tokens.push(token);
        let tokenizer = model.tokenizer();
        let anchor = self.line_start.saturating_sub(1);
        let with_anchor = tokenizer.decode(&self.tokens[anchor..])?;
        let anchor_text = tokenizer.decode(&self.tokens[anchor..self.line_start])?;
        let line = match with_anchor.strip_prefix(&anchor_text) {
            Some(line) => line.to_string(),
            None => tokenizer.decode(&self.tokens[self.line_start..])?,
        };
        // An incomplete UTF-8 sequence decodes to U+FFFD: send what comes
        // before it, and the character once its other bytes arrive.
        let stable = line.trim_end_matches('\u{FFFD}');
        if stable.len() == line.len() && line.ends_with('\n') {
            self.committed.push_str(&line);
            self.line.clear();
            self.line_start = self.tokens.len();
        } else {
            self.line = stable.to_string();
        }
        Ok(())
    }

    fn text_len(&self) -> usize {
        self.committed.len() + self.line.len()
    }

    fn text(&self) -> String {
        format!("{}{}", self.committed, self.line)
    }
}

/// One event of a [`TextStream`].
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// New text, and the tokens sampled since the last delta.
    Delta { text: String, tokens: Vec<Sampled> },
    /// Generation ended; always the last event.
    Done(GenerationStats),
    /// The prompt has been computed, `cached_tokens` of it reused from a
    /// cache. Sent by [`crate::ModelWorker`] before any text; [`TextStream`]
    /// itself never yields it.
    Prefilled { cached_tokens: usize },
}

/// Layer 2: text deltas and, at the end, the statistics.
#[derive(Debug)]
pub struct TextStream<'m> {
    steps: TokenSteps<'m>,
    /// Where the sequence's cache goes back when the stream ends.
    prompt_cache: Option<&'m mut PromptCache>,
    options: GenerateOptions,
    detokenizer: Detokenizer,
    /// Bytes of text already sent.
    sent: usize,
    unsent_tokens: Vec<Sampled>,
    generated: usize,
    prompt_tokens: usize,
    started: Instant,
    prompt_done: Duration,
    first_token: Option<Instant>,
    finished: bool,
    /// `Done`, held while the last delta goes out.
    pending_done: Option<Event>,
    /// The stop string found, once one is.
    matched_stop: Option<String>,
    reasoning: Reasoning,
}

/// Where a reasoning budget stands.
#[derive(Debug, Default)]
struct Reasoning {
    /// Tokens generated inside the open block.
    tokens: usize,
    /// The block was closed (by the model or by force): no more checks.
    closed: bool,
}

impl<'m> TextStream<'m> {
    /// Prefills `prompt` and returns the stream of its continuation.
    pub fn new(model: &'m Model, prompt: &[u32], options: GenerateOptions) -> Result<Self> {
        Self::start(model, prompt, options, None)
    }

    /// Like [`TextStream::new`], reusing the longest cached prefix of `prompt`
    /// from `prompt_cache` and storing this sequence's cache there at the end.
    pub fn with_prompt_cache(
        model: &'m Model,
        prompt: &[u32],
        options: GenerateOptions,
        prompt_cache: &'m mut PromptCache,
    ) -> Result<Self> {
        Self::start(model, prompt, options, Some(prompt_cache))
    }

    fn start(
        model: &'m Model,
        prompt: &[u32],
        options: GenerateOptions,
        mut prompt_cache: Option<&'m mut PromptCache>,
    ) -> Result<Self> {
        let started = Instant::now();
        // Peak memory is per request; ignore the error of a runtime without counters.
        let _ = mlx_rs::memory::reset_peak_memory();
        let reused = match prompt_cache.as_deref_mut() {
            Some(store) => store.take(prompt)?,
            None => None,
        };
        let watch = Watch {
            cancel: options.cancel.clone(),
            counters: options.counters.clone(),
            chunk: (options.prefill_chunk > 0).then_some(options.prefill_chunk),
        };
        let steps = TokenSteps::with_watch(
            model,
            prompt,
            options.sampling.clone(),
            options.top_logprobs,
            reused,
            &watch,
        )?;
        Ok(TextStream {
            steps,
            prompt_cache,
            options,
            detokenizer: Detokenizer::default(),
            sent: 0,
            unsent_tokens: Vec::new(),
            generated: 0,
            prompt_tokens: prompt.len(),
            started,
            prompt_done: started.elapsed(),
            first_token: None,
            finished: false,
            pending_done: None,
            matched_stop: None,
            reasoning: Reasoning::default(),
        })
    }

    /// Bytes of keys and values the sequence holds now.
    pub fn kv_bytes(&self) -> usize {
        self.steps.kv_bytes()
    }

    /// Prompt tokens whose keys and values came from the prompt cache.
    pub fn cached_tokens(&self) -> usize {
        self.steps.cached_tokens()
    }

    fn token_limit(&self) -> usize {
        let room = self.steps.model.context_length() - self.prompt_tokens;
        match self.options.max_tokens {
            0 => room,
            n => n.min(room),
        }
    }

    fn stats(&self, finish_reason: FinishReason) -> GenerationStats {
        let time_to_first_token = self
            .first_token
            .map_or(self.prompt_done, |t| t.duration_since(self.started));
        let decode_secs = self.first_token.map_or(0.0, |t| t.elapsed().as_secs_f64());
        let per_second = |n: usize, secs: f64| if secs > 0.0 { n as f64 / secs } else { 0.0 };
        let computed = self.prompt_tokens - self.steps.cached_tokens();
        GenerationStats {
            prompt_tokens: self.prompt_tokens,
            cached_prompt_tokens: self.steps.cached_tokens(),
            generated_tokens: self.generated,
            time_to_first_token,
            // Prompt tokens computed (not reused) per second until the first
            // token is known, as mlx-lm measures prompt speed.
            prompt_tokens_per_second: per_second(computed, time_to_first_token.as_secs_f64()),
            // The first token comes from the prefill, so the rate counts the rest.
            decode_tokens_per_second: per_second(self.generated.saturating_sub(1), decode_secs),
            peak_memory_bytes: mlx_rs::memory::peak_memory().unwrap_or(0),
            finish_reason,
            stop_sequence: self.matched_stop.clone(),
        }
    }

    /// The text that can be sent now: all of it when `flush`, otherwise
    /// holding back any tail that could still become a stop string.
    fn take_delta(&mut self, text: &str, flush: bool) -> Option<Event> {
        let hold = if flush {
            0
        } else {
            self.options
                .stop
                .iter()
                .map(|stop| partial_suffix_len(text, stop))
                .max()
                .unwrap_or(0)
        };
        let end = text.len() - hold;
        if end <= self.sent && self.unsent_tokens.is_empty() {
            return None;
        }
        let delta = text
            .get(self.sent..end.max(self.sent))
            .unwrap_or_default()
            .to_string();
        self.sent = end.max(self.sent);
        Some(Event::Delta {
            text: delta,
            tokens: std::mem::take(&mut self.unsent_tokens),
        })
    }

    fn advance(&mut self) -> Result<Option<Event>> {
        if self.generated >= self.token_limit() {
            return Ok(Some(self.finish(FinishReason::Length, None)));
        }
        if let Some(cancel) = &self.options.cancel
            && cancel.load(Ordering::Relaxed)
        {
            return Ok(Some(self.finish(FinishReason::Cancelled, None)));
        }
        let sampled = self.steps.step()?;
        self.first_token.get_or_insert_with(Instant::now);
        self.generated += 1;
        if let Some(counters) = &self.options.counters {
            Counters::add(&counters.generated_tokens, 1);
            counters
                .kv_bytes
                .store(self.steps.kv_bytes() as u64, Ordering::Relaxed);
        }
        if self
            .steps
            .model
            .tokenizer()
            .eos_ids()
            .contains(&sampled.token)
        {
            return Ok(Some(self.finish(FinishReason::Stop, None)));
        }
        let before = self.detokenizer.text_len();
        self.detokenizer.push(self.steps.model, sampled.token)?;
        self.unsent_tokens.push(sampled);
        self.check_reasoning_budget()?;
        let text = self.detokenizer.text();
        let stop_at = find_stop(&text, before, &self.options.stop);
        if let Some(at) = stop_at {
            self.matched_stop = self
                .options
                .stop
                .iter()
                .filter(|s| !s.is_empty())
                .find(|s| text[at..].starts_with(s.as_str()))
                .cloned();
            return Ok(Some(self.finish(FinishReason::Stop, Some(&text[..at]))));
        }
        Ok(self.take_delta(&text, false))
    }

    /// Closes the reasoning block once it has used its budget: the closing
    /// tokens go into the sequence and the text as if the model wrote them.
    fn check_reasoning_budget(&mut self) -> Result<()> {
        let Some(budget) = &self.options.reasoning_budget else {
            return Ok(());
        };
        if self.reasoning.closed {
            return Ok(());
        }
        let text = self.detokenizer.text();
        let opened_at = if budget.starts_open {
            Some(0)
        } else {
            text.find(&budget.open).map(|at| at + budget.open.len())
        };
        let Some(opened_at) = opened_at else {
            // The model answers without reasoning: nothing to limit.
            if !text.trim().is_empty() && !budget.open.starts_with(text.trim_start()) {
                self.reasoning.closed = true;
            }
            return Ok(());
        };
        if text[opened_at..].contains(&budget.close) {
            self.reasoning.closed = true;
            return Ok(());
        }
        self.reasoning.tokens += 1;
        if self.reasoning.tokens < budget.tokens {
            return Ok(());
        }
        let forced = budget.forced.clone();
        self.reasoning.closed = true;
        self.steps.force(&forced)?;
        for &token in &forced {
            self.generated += 1;
            self.detokenizer.push(self.steps.model, token)?;
            self.unsent_tokens.push(Sampled {
                token,
                logprob: 0.0,
                top: Vec::new(),
            });
        }
        if let Some(counters) = &self.options.counters {
            Counters::add(&counters.generated_tokens, forced.len());
        }
        Ok(())
    }

    /// Ends the stream: sends what is left (up to `text_end`), then `Done`.
    fn finish(&mut self, reason: FinishReason, text: Option<&str>) -> Event {
        self.finished = true;
        if let Some(store) = self.prompt_cache.take() {
            let (tokens, cache) = self.steps.take_cache();
            store.put(tokens, cache);
        }
        let text = text.map_or_else(|| self.detokenizer.text(), str::to_string);
        let done = Event::Done(self.stats(reason));
        match self.take_delta(&text, true) {
            Some(delta) => {
                self.pending_done = Some(done);
                delta
            }
            None => done,
        }
    }
}

impl Iterator for TextStream<'_> {
    type Item = Result<Event>;

    fn next(&mut self) -> Option<Self::Item> {
        if let Some(done) = self.pending_done.take() {
            return Some(Ok(done));
        }
        while !self.finished {
            match self.advance() {
                Ok(Some(event)) => return Some(Ok(event)),
                Ok(None) => continue,
                Err(e) => {
                    self.finished = true;
                    return Some(Err(e));
                }
            }
        }
        None
    }
}

/// Where the first stop string in `text` begins, looking only at matches that
/// end after byte `new_from` (earlier text was searched already).
fn find_stop(text: &str, new_from: usize, stops: &[String]) -> Option<usize> {
    let longest = stops.iter().map(String::len).max().unwrap_or(0);
    let mut from = new_from.saturating_sub(longest).min(text.len());
    // The window may start inside a multi-byte character.
    while !text.is_char_boundary(from) {
        from -= 1;
    }
    stops
        .iter()
        .filter(|s| !s.is_empty())
        .filter_map(|s| text[from..].find(s.as_str()).map(|i| from + i))
        .min()
}

/// How many bytes at the end of `text` are the start of `stop` (but not all of it).
fn partial_suffix_len(text: &str, stop: &str) -> usize {
    (1..stop.len())
        .rev()
        .find(|&n| stop.is_char_boundary(n) && text.ends_with(&stop[..n]))
        .unwrap_or(0)
}

/// The whole output of a request.
#[derive(Debug, Clone, PartialEq)]
pub struct Generation {
    pub text: String,
    pub tokens: Vec<u32>,
    pub stats: GenerationStats,
}

/// Layer 3: generates the continuation of `prompt` and returns it whole.
pub fn generate(model: &Model, prompt: &[u32], options: GenerateOptions) -> Result<Generation> {
    let mut text = String::new();
    let mut tokens = Vec::new();
    for event in TextStream::new(model, prompt, options)? {
        match event? {
            Event::Delta {
                text: delta,
                tokens: sampled,
            } => {
                text.push_str(&delta);
                tokens.extend(sampled.iter().map(|s| s.token));
            }
            Event::Done(stats) => {
                return Ok(Generation {
                    text,
                    tokens,
                    stats,
                });
            }
            Event::Prefilled { .. } => {}
        }
    }
    Err(EngineError::Exception(
        "the generation stream ended without statistics".into(),
    ))
}

#[cfg(test)]
mod tests {
    use super::{find_stop, partial_suffix_len};

    #[test]
    fn stop_strings_are_found_after_multibyte_characters() {
        let stops = vec!["ab".to_string()];
        // Two bytes before the new text ("ab") fall inside the 4-byte apple.
        assert_eq!(find_stop("x🍎ab", 5, &stops), Some(5));
        assert_eq!(find_stop("x🍎a", 5, &stops), None);
        assert_eq!(find_stop("abxab", 3, &[]), None);
    }

    #[test]
    fn partial_stop_strings_are_held_back() {
        assert_eq!(partial_suffix_len("Hello wor", "world"), 3);
        assert_eq!(partial_suffix_len("Hello", "world"), 0);
        assert_eq!(partial_suffix_len("a</", "</s>"), 2);
        // A whole stop string is not "partial": it is found and cut instead.
        assert_eq!(partial_suffix_len("ab", "ab"), 0);
    }
}
