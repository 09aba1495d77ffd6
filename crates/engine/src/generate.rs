//! Generation in three layers, after mlx-lm's `generate.py`: the prefill
//! and the batched steps of [`crate::batch`] yield sampled tokens;
//! [`SequenceText`] turns one sequence's tokens into UTF-8-safe text deltas,
//! applies stop strings and limits, and ends with the request's statistics;
//! [`TextStream`] runs one request through both, and [`generate`] returns the
//! whole text. [`crate::ModelWorker`] drives many sequences through one batch.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::batch::{Batch, PREFILL_CHUNK, Prefill, SequenceId};
use crate::error::{EngineError, Result};
use crate::model::Model;
use crate::prompt_cache::PromptCache;
use crate::sampler::{Sampled, SamplingParams};

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
    /// Keeps the output inside a grammar (structured output).
    pub constraint: Option<crate::constrain::Constraint>,
    /// The prompt's images, in order, one per run of the model's image
    /// token (see [`crate::vision`]).
    pub images: Vec<crate::vision::PromptImage>,
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
    /// Generated tokens spent reasoning. The engine does not parse the reply
    /// and leaves it 0; the caller that does (core) fills it in.
    pub reasoning_tokens: usize,
}

/// What a prefill reports to and checks with its caller.
#[derive(Debug, Default)]
pub struct Watch {
    pub cancel: Option<Arc<AtomicBool>>,
    pub counters: Option<Arc<Counters>>,
    /// Prompt tokens per forward pass (default [`PREFILL_CHUNK`]).
    pub chunk: Option<usize>,
}

/// Whether a cancel flag is set.
pub(crate) fn is_set(flag: Option<&Arc<AtomicBool>>) -> bool {
    flag.is_some_and(|f| f.load(Ordering::Relaxed))
}

impl Watch {
    fn check(&self) -> Result<()> {
        if is_set(self.cancel.as_ref()) {
            Err(EngineError::Cancelled)
        } else {
            Ok(())
        }
    }

    fn prefilled(&self, tokens: usize, kv_bytes: usize) {
        if let Some(counters) = &self.counters {
            Counters::add(&counters.prefilled_tokens, tokens);
            counters.kv_bytes.store(kv_bytes as u64, Ordering::Relaxed);
        }
    }

    /// Checks for a cancel, then runs the next chunk of `prefill`; once
    /// only the last token is left, counts it and returns true (the prompt
    /// is ready to join a batch).
    pub(crate) fn step(&self, model: &Model, prefill: &mut Prefill) -> Result<bool> {
        self.check()?;
        if prefill.is_filled() {
            self.prefilled(1, prefill.kv_bytes());
            return Ok(true);
        }
        let n = prefill.run_chunk(model, self.chunk.unwrap_or(PREFILL_CHUNK))?;
        self.prefilled(n, prefill.kv_bytes());
        Ok(false)
    }

    /// Runs `prefill` to its last token, chunk by chunk, checking for a
    /// cancel before each.
    pub(crate) fn run(&self, model: &Model, prefill: &mut Prefill) -> Result<()> {
        while !self.step(model, prefill)? {}
        Ok(())
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

/// Where a reasoning budget stands.
#[derive(Debug, Default)]
struct Reasoning {
    /// Tokens generated inside the open block.
    tokens: usize,
    /// The block was closed (by the model or by force): no more checks.
    closed: bool,
}

/// What a sampled token does to its sequence.
#[derive(Debug)]
pub enum Step {
    /// The sequence goes on; send the delta, if any.
    Continue(Option<Event>),
    /// The reasoning budget ran out: write these tokens into the sequence
    /// (they are in the text already), then go on; send the delta, if any.
    Force(Vec<u32>, Option<Event>),
    /// The sequence ended: send these events (a last delta, then `Done`).
    Finished(Vec<Event>),
}

/// Layer 2 for one sequence: its sampled tokens become text deltas, checked
/// against end-of-sequence tokens, stop strings, the token limit and the
/// reasoning budget; it ends with the request's statistics.
#[derive(Debug)]
pub struct SequenceText {
    options: GenerateOptions,
    detokenizer: Detokenizer,
    /// Bytes of text already sent.
    sent: usize,
    unsent_tokens: Vec<Sampled>,
    generated: usize,
    prompt_tokens: usize,
    cached_tokens: usize,
    /// Tokens the sequence may generate (the request's limit and the context's).
    token_limit: usize,
    started: Instant,
    prompt_done: Duration,
    first_token: Option<Instant>,
    /// The stop string found, once one is.
    matched_stop: Option<String>,
    reasoning: Reasoning,
    finished: bool,
}

impl SequenceText {
    /// The text of a request started at `started` whose prompt of
    /// `prompt_tokens` (`cached_tokens` of them reused) has just run.
    pub fn new(
        model: &Model,
        options: GenerateOptions,
        prompt_tokens: usize,
        cached_tokens: usize,
        started: Instant,
    ) -> Self {
        let room = model.context_length().saturating_sub(prompt_tokens);
        let token_limit = match options.max_tokens {
            0 => room,
            n => n.min(room),
        };
        SequenceText {
            options,
            detokenizer: Detokenizer::default(),
            sent: 0,
            unsent_tokens: Vec::new(),
            generated: 0,
            prompt_tokens,
            cached_tokens,
            token_limit,
            started,
            prompt_done: started.elapsed(),
            first_token: None,
            matched_stop: None,
            reasoning: Reasoning::default(),
            finished: false,
        }
    }

    /// Whether the sequence has ended.
    pub fn is_finished(&self) -> bool {
        self.finished
    }

    /// Before another token: the events that end the sequence, if it is at
    /// its limit or was cancelled.
    pub fn check(&mut self) -> Option<Vec<Event>> {
        if self.finished {
            return None;
        }
        if self.generated >= self.token_limit {
            return Some(self.finish(FinishReason::Length, None));
        }
        if is_set(self.options.cancel.as_ref()) {
            return Some(self.finish(FinishReason::Cancelled, None));
        }
        None
    }

    /// Ends the sequence now, as cancelled.
    pub fn cancel(&mut self) -> Vec<Event> {
        self.finish(FinishReason::Cancelled, None)
    }

    /// Takes in the sequence's next sampled token.
    pub fn accept(&mut self, model: &Model, sampled: Sampled) -> Result<Step> {
        if let Some(events) = self.check() {
            return Ok(Step::Finished(events));
        }
        self.first_token.get_or_insert_with(Instant::now);
        self.generated += 1;
        if let Some(counters) = &self.options.counters {
            Counters::add(&counters.generated_tokens, 1);
        }
        if model.tokenizer().eos_ids().contains(&sampled.token) && !self.options.ignore_eos {
            return Ok(Step::Finished(self.finish(FinishReason::Stop, None)));
        }
        let before = self.detokenizer.text_len();
        self.detokenizer.push(model, sampled.token)?;
        self.unsent_tokens.push(sampled);
        let forced = self.check_reasoning_budget(model)?;
        let text = self.detokenizer.text();
        if let Some(at) = find_stop(&text, before, &self.options.stop) {
            self.matched_stop = self
                .options
                .stop
                .iter()
                .filter(|s| !s.is_empty())
                .find(|s| text[at..].starts_with(s.as_str()))
                .cloned();
            return Ok(Step::Finished(
                self.finish(FinishReason::Stop, Some(&text[..at])),
            ));
        }
        let delta = self.take_delta(&text, false);
        Ok(match forced {
            Some(tokens) => Step::Force(tokens, delta),
            None => Step::Continue(delta),
        })
    }

    fn stats(&self, finish_reason: FinishReason) -> GenerationStats {
        let time_to_first_token = self
            .first_token
            .map_or(self.prompt_done, |t| t.duration_since(self.started));
        let decode_secs = self.first_token.map_or(0.0, |t| t.elapsed().as_secs_f64());
        let per_second = |n: usize, secs: f64| if secs > 0.0 { n as f64 / secs } else { 0.0 };
        let computed = self.prompt_tokens - self.cached_tokens;
        GenerationStats {
            prompt_tokens: self.prompt_tokens,
            cached_prompt_tokens: self.cached_tokens,
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
            reasoning_tokens: 0,
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

    /// Closes the reasoning block once it has used its budget: the closing
    /// tokens go into the text as if the model wrote them, and are returned
    /// to be written into the sequence.
    fn check_reasoning_budget(&mut self, model: &Model) -> Result<Option<Vec<u32>>> {
        let Some(budget) = &self.options.reasoning_budget else {
            return Ok(None);
        };
        if self.reasoning.closed {
            return Ok(None);
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
            return Ok(None);
        };
        if text[opened_at..].contains(&budget.close) {
            self.reasoning.closed = true;
            return Ok(None);
        }
        self.reasoning.tokens += 1;
        if self.reasoning.tokens < budget.tokens {
            return Ok(None);
        }
        let forced = budget.forced.clone();
        self.reasoning.closed = true;
        for &token in &forced {
            self.generated += 1;
            self.detokenizer.push(model, token)?;
            self.unsent_tokens.push(Sampled {
                token,
                logprob: 0.0,
                top: Vec::new(),
            });
        }
        if let Some(counters) = &self.options.counters {
            Counters::add(&counters.generated_tokens, forced.len());
        }
        Ok(Some(forced))
    }

    /// Ends the sequence: what is left to send (up to `text`), then `Done`.
    fn finish(&mut self, reason: FinishReason, text: Option<&str>) -> Vec<Event> {
        self.finished = true;
        let text = text.map_or_else(|| self.detokenizer.text(), str::to_string);
        let done = Event::Done(self.stats(reason));
        let mut events: Vec<Event> = self.take_delta(&text, true).into_iter().collect();
        events.push(done);
        events
    }
}

/// One request's text deltas and, at the end, its statistics: its prompt's
/// prefill and a batch of one sequence under [`SequenceText`].
#[derive(Debug)]
pub struct TextStream<'m> {
    batch: Batch<'m>,
    id: SequenceId,
    text: SequenceText,
    /// Where the sequence's cache goes back when the stream ends.
    prompt_cache: Option<&'m mut PromptCache>,
    /// The prompt's images, which the cache's key tells apart.
    images: Vec<crate::vision::PromptImage>,
    /// Events ready to be yielded, oldest first.
    ready: std::collections::VecDeque<Event>,
    counters: Option<Arc<Counters>>,
    failed: bool,
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
        let watch = Watch {
            cancel: options.cancel.clone(),
            counters: options.counters.clone(),
            chunk: (options.prefill_chunk > 0).then_some(options.prefill_chunk),
        };
        let mut prefill = Prefill::start_cached(
            model,
            prompt,
            options.images.clone(),
            prompt_cache.as_deref_mut(),
        )?;
        let images = prefill.images().to_vec();
        watch.run(model, &mut prefill)?;
        let cached_tokens = prefill.cached_tokens();
        let mut batch = Batch::new(model);
        let (id, first) = batch.join(
            prefill,
            options.sampling.clone(),
            options.top_logprobs,
            options.constraint.clone(),
        )?;
        let counters = options.counters.clone();
        let text = SequenceText::new(model, options, prompt.len(), cached_tokens, started);
        let mut stream = TextStream {
            batch,
            id,
            text,
            prompt_cache,
            images,
            ready: Default::default(),
            counters,
            failed: false,
        };
        stream.handle(vec![(id, first)])?;
        Ok(stream)
    }

    /// Bytes of keys and values the sequence holds now.
    pub fn kv_bytes(&self) -> usize {
        self.batch.kv_bytes()
    }

    /// Prompt tokens whose keys and values came from the prompt cache.
    pub fn cached_tokens(&self) -> usize {
        self.text.cached_tokens
    }

    /// Handles sampled tokens; ends the sequence when one does.
    fn handle(&mut self, sampled: Vec<(SequenceId, Sampled)>) -> Result<()> {
        let model = self.batch.model();
        for (_, token) in sampled {
            if self.text.is_finished() {
                break;
            }
            match self.text.accept(model, token)? {
                Step::Continue(delta) => self.ready.extend(delta),
                Step::Force(tokens, delta) => {
                    self.ready.extend(delta);
                    self.batch.force(self.id, &tokens)?;
                }
                Step::Finished(events) => self.end(events)?,
            }
        }
        if let Some(counters) = &self.counters {
            counters
                .kv_bytes
                .store(self.batch.kv_bytes() as u64, Ordering::Relaxed);
        }
        Ok(())
    }

    /// Gives the sequence's cache to the prompt cache and queues `events`.
    fn end(&mut self, events: Vec<Event>) -> Result<()> {
        let (tokens, cache) = self.batch.leave(self.id)?;
        if let Some(store) = self.prompt_cache.take() {
            store.put(crate::vision::cache_key(&tokens, &self.images), cache);
        }
        self.ready.extend(events);
        Ok(())
    }

    fn advance(&mut self) -> Result<()> {
        if let Some(events) = self.text.check() {
            return self.end(events);
        }
        let sampled = self.batch.step()?;
        self.handle(sampled)
    }
}

impl Iterator for TextStream<'_> {
    type Item = Result<Event>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if let Some(event) = self.ready.pop_front() {
                return Some(Ok(event));
            }
            if self.failed || self.text.is_finished() {
                return None;
            }
            if let Err(e) = self.advance() {
                self.failed = true;
                return Some(Err(e));
            }
        }
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
