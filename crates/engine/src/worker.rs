//! One thread per loaded model. The thread owns the model's MLX state (weights,
//! caches) and schedules its requests from a bounded queue, as mlx-lm's
//! `BatchGenerator` does: each tick is one decode step for every generating
//! sequence together, then one prefill chunk of the oldest waiting prompt,
//! which joins the batch once its prompt has run. Callers get a channel of
//! [`Event`]s. Dropping that channel, or setting the request's cancel flag,
//! takes the sequence out before the next step; a request cancelled while it
//! waits is never started, and one cancelled while its prompt is computed
//! stops before the next chunk.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::batch::{Batch, Prefill, SequenceId};
use crate::error::{EngineError, Result};
use crate::generate::{
    Counters, Event, FinishReason, GenerateOptions, GenerationStats, SequenceText, Step, Watch,
    is_set,
};
use crate::model::{LoadOptions, Model};
use crate::prompt_cache::PromptCache;
use crate::tokenizer::Tokenizer;
use crate::vision::{ImageProcessor, PromptImage, cache_key};

/// How a worker is set up.
#[derive(Debug, Clone)]
pub struct WorkerOptions {
    /// Requests waiting beyond the one running; more are refused with
    /// [`SubmitError::QueueFull`].
    pub queue_capacity: usize,
    /// Memory for reusable prompt caches (see [`PromptCache`]); 0 turns reuse off.
    pub prompt_cache_bytes: usize,
    /// Prompt tokens per forward pass, for requests that do not set it; 0
    /// means the engine's default.
    pub prefill_chunk: usize,
    /// Sequences generating at once; more wait for one to end.
    pub max_sequences: usize,
    /// How the model is loaded (the CPU fast path).
    pub load: LoadOptions,
}

impl Default for WorkerOptions {
    fn default() -> Self {
        WorkerOptions {
            queue_capacity: 16,
            prompt_cache_bytes: 512 << 20,
            prefill_chunk: 0,
            max_sequences: 32,
            load: LoadOptions::default(),
        }
    }
}

/// Why a request was not queued.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SubmitError {
    /// The queue is full: try again once running requests finish.
    #[error("the model's queue is full ({0} requests waiting); retry shortly")]
    QueueFull(usize),
    /// The worker has stopped (its model was unloaded).
    #[error("the model is no longer loaded")]
    Stopped,
}

enum Job {
    Generate {
        prompt: Vec<u32>,
        options: Box<GenerateOptions>,
        events: mpsc::Sender<Result<Event>>,
    },
    /// Makes the thread panic: how tests see what a crashed worker does.
    Crash,
    /// Embeddings of `inputs`, run between two decode steps.
    Embed {
        inputs: Vec<Vec<u32>>,
        spec: crate::embed::EmbeddingSpec,
        reply: mpsc::Sender<Result<Vec<Vec<f32>>>>,
    },
}

/// What a worker has done and holds, shared with its thread.
#[derive(Debug, Default)]
pub struct WorkerGauges {
    /// Tokens computed and generated, and the running sequence's cache.
    pub counters: Arc<Counters>,
    /// Bytes held by the reusable prompt caches.
    pub prompt_cache_bytes: AtomicU64,
    /// Requests whose caller gave up while they waited, dropped unstarted.
    pub skipped_requests: AtomicU64,
    /// Sequences generating together now, and the most there have been.
    pub sequences: AtomicU64,
    pub peak_sequences: AtomicU64,
}

/// What the model thread reports once the model is loaded.
struct Loaded {
    context_length: usize,
    tokenizer: Arc<Tokenizer>,
    dense_bytes: Option<u64>,
    images: Option<Arc<ImageProcessor>>,
}

/// A loaded model on its own thread.
#[derive(Debug)]
pub struct ModelWorker {
    dir: PathBuf,
    jobs: Option<SyncSender<Job>>,
    waiting: Arc<AtomicUsize>,
    capacity: usize,
    /// The model's context length in tokens.
    context_length: usize,
    /// The model's tokenizer, shared with its thread.
    tokenizer: Arc<Tokenizer>,
    /// With the CPU fast path, the bytes of the dequantized weights.
    dense_bytes: Option<u64>,
    /// For a model that takes images, how they are prepared.
    images: Option<Arc<ImageProcessor>>,
    gauges: Arc<WorkerGauges>,
    thread: Option<JoinHandle<()>>,
}

impl ModelWorker {
    /// Starts a thread that loads the model at `dir`; returns once it is loaded
    /// (or with the loading error).
    pub fn spawn(dir: &Path, options: WorkerOptions) -> Result<ModelWorker> {
        let (jobs_tx, jobs_rx) = mpsc::sync_channel::<Job>(options.queue_capacity);
        let (loaded_tx, loaded_rx) = mpsc::channel::<Result<Loaded>>();
        let waiting = Arc::new(AtomicUsize::new(0));
        let thread_waiting = Arc::clone(&waiting);
        let gauges = Arc::new(WorkerGauges::default());
        let thread_gauges = Arc::clone(&gauges);
        let thread_dir = dir.to_path_buf();
        let thread_options = options.clone();
        let thread = std::thread::Builder::new()
            .name(format!(
                "orchard-model-{}",
                dir.file_name().unwrap_or_default().to_string_lossy()
            ))
            .spawn(move || {
                let model = match Model::load_with(&thread_dir, thread_options.load) {
                    Ok(model) => {
                        let _ = loaded_tx.send(Ok(Loaded {
                            context_length: model.context_length(),
                            tokenizer: model.shared_tokenizer(),
                            dense_bytes: model.dequantized_bytes(),
                            images: model.image_processor(),
                        }));
                        model
                    }
                    Err(e) => {
                        let _ = loaded_tx.send(Err(e));
                        return;
                    }
                };
                serve(
                    &model,
                    jobs_rx,
                    &thread_waiting,
                    &thread_gauges,
                    &thread_options,
                );
                drop(model);
                // Freed buffers stay in MLX's cache until cleared; give them back.
                let _ = mlx_rs::memory::clear_cache();
            })
            .map_err(|e| EngineError::Exception(format!("cannot start the model thread: {e}")))?;
        let loaded = loaded_rx.recv();
        let Loaded {
            context_length,
            tokenizer,
            dense_bytes,
            images,
        } = match loaded {
            Ok(Ok(loaded)) => loaded,
            failed => {
                // The thread ends on its own after a failed load.
                drop(jobs_tx);
                let _ = thread.join();
                return Err(match failed {
                    Ok(Err(e)) => e,
                    _ => EngineError::Exception("the model thread ended while loading".into()),
                });
            }
        };
        Ok(ModelWorker {
            dir: dir.to_path_buf(),
            jobs: Some(jobs_tx),
            waiting,
            capacity: options.queue_capacity,
            context_length,
            tokenizer,
            dense_bytes,
            images,
            gauges,
            thread: Some(thread),
        })
    }

    /// The model folder this worker serves.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The model's context length in tokens.
    pub fn context_length(&self) -> usize {
        self.context_length
    }

    /// For a model that takes images, how to prepare them (shared with its thread).
    pub fn image_processor(&self) -> Option<Arc<ImageProcessor>> {
        self.images.clone()
    }

    /// The tokenizer the model was loaded with (read once per load).
    pub fn tokenizer(&self) -> Arc<Tokenizer> {
        Arc::clone(&self.tokenizer)
    }

    /// Whether the model's quantized layers run dequantized to float32.
    pub fn is_dequantized(&self) -> bool {
        self.dense_bytes.is_some()
    }

    /// With the CPU fast path, the bytes of the dequantized weights.
    pub fn dequantized_bytes(&self) -> Option<u64> {
        self.dense_bytes
    }

    /// Requests queued and not yet started.
    pub fn queue_depth(&self) -> usize {
        self.waiting.load(Ordering::Relaxed)
    }

    /// The work done and the memory held beside the weights.
    pub fn gauges(&self) -> &WorkerGauges {
        &self.gauges
    }

    /// False once the thread has ended: it panicked, or the worker stopped.
    pub fn is_alive(&self) -> bool {
        self.jobs.is_some() && self.thread.as_ref().is_some_and(|t| !t.is_finished())
    }

    /// Makes the worker's thread panic, as a bug in a model would; for tests
    /// of what happens to a dead worker.
    #[doc(hidden)]
    pub fn crash(&self) {
        if let Some(jobs) = &self.jobs {
            self.waiting.fetch_add(1, Ordering::Relaxed);
            if jobs.try_send(Job::Crash).is_err() {
                self.waiting.fetch_sub(1, Ordering::Relaxed);
            }
        }
    }

    /// Waits up to `timeout` for the thread to end; true when it has.
    pub fn wait_stopped(&self, timeout: Duration) -> bool {
        let deadline = std::time::Instant::now() + timeout;
        while std::time::Instant::now() < deadline {
            if !self.is_alive() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        !self.is_alive()
    }

    /// Embeds `inputs` on the model's thread, between two decode steps (all
    /// of them at once, in batches: a long list delays the sequences
    /// generating meanwhile). The vectors arrive on the returned channel.
    pub fn embed(
        &self,
        inputs: Vec<Vec<u32>>,
        spec: crate::embed::EmbeddingSpec,
    ) -> Result<Receiver<Result<Vec<Vec<f32>>>>, SubmitError> {
        let jobs = self.jobs.as_ref().ok_or(SubmitError::Stopped)?;
        let (reply, receiver) = mpsc::channel();
        match jobs.try_send(Job::Embed {
            inputs,
            spec,
            reply,
        }) {
            Ok(()) => Ok(receiver),
            Err(TrySendError::Full(_)) => Err(SubmitError::QueueFull(self.capacity)),
            Err(TrySendError::Disconnected(_)) => Err(SubmitError::Stopped),
        }
    }

    /// Queues a request; its events arrive on the returned channel, ending
    /// with `Event::Done` or an error.
    pub fn submit(
        &self,
        prompt: Vec<u32>,
        options: GenerateOptions,
    ) -> Result<Receiver<Result<Event>>, SubmitError> {
        let jobs = self.jobs.as_ref().ok_or(SubmitError::Stopped)?;
        let (events, receiver) = mpsc::channel();
        // The thread moves requests off the channel into its own queue, so
        // the count of those not yet started is the limit.
        if self.waiting.fetch_add(1, Ordering::Relaxed) >= self.capacity {
            self.waiting.fetch_sub(1, Ordering::Relaxed);
            return Err(SubmitError::QueueFull(self.capacity));
        }
        match jobs.try_send(Job::Generate {
            prompt,
            options: Box::new(options),
            events,
        }) {
            Ok(()) => Ok(receiver),
            Err(e) => {
                self.waiting.fetch_sub(1, Ordering::Relaxed);
                Err(match e {
                    TrySendError::Full(_) => SubmitError::QueueFull(self.capacity),
                    TrySendError::Disconnected(_) => SubmitError::Stopped,
                })
            }
        }
    }

    /// Finishes the queued requests, then frees the model's memory.
    pub fn unload(mut self) {
        self.stop();
    }

    fn stop(&mut self) {
        self.jobs = None;
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for ModelWorker {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A request whose prompt is being computed.
struct Waiting {
    request: Request,
    prefill: Prefill,
    /// Its cancel flag, the worker's counters and its chunk size.
    watch: Watch,
    started: Instant,
}

/// What waits in the worker's queue.
enum Queued {
    Request(Box<Request>),
    /// Makes the thread panic once everything before it has ended: how
    /// tests see what a crashed worker does.
    Crash,
}

/// A request, as queued.
struct Request {
    prompt: Vec<u32>,
    options: GenerateOptions,
    events: mpsc::Sender<Result<Event>>,
}

/// A sequence generating in the batch.
struct Generating {
    id: SequenceId,
    text: SequenceText,
    events: mpsc::Sender<Result<Event>>,
    /// The caller hung up: the sequence leaves at the next step.
    gone: bool,
    /// The prompt's images, which the prompt cache's key tells apart.
    images: Vec<PromptImage>,
}

/// The worker thread's loop: schedules the queued requests until the queue
/// closes and every started request has ended.
fn serve(
    model: &Model,
    jobs: Receiver<Job>,
    waiting: &AtomicUsize,
    gauges: &WorkerGauges,
    worker: &WorkerOptions,
) {
    let mut scheduler = Scheduler {
        model,
        waiting,
        batch: Batch::new(model),
        generating: Vec::new(),
        prefilling: None,
        queue: VecDeque::new(),
        prompt_cache: PromptCache::new(worker.prompt_cache_bytes),
        gauges,
        worker,
    };
    let mut open = true;
    loop {
        // Take in what was queued: wait when there is nothing else to do.
        while open {
            let job = if scheduler.is_idle() {
                match jobs.recv() {
                    Ok(job) => job,
                    Err(_) => {
                        open = false;
                        break;
                    }
                }
            } else {
                match jobs.try_recv() {
                    Ok(job) => job,
                    Err(mpsc::TryRecvError::Empty) => break,
                    Err(mpsc::TryRecvError::Disconnected) => {
                        open = false;
                        break;
                    }
                }
            };
            match job {
                Job::Generate {
                    prompt,
                    options,
                    events,
                } => scheduler.queue.push_back(Queued::Request(Box::new(Request {
                    prompt,
                    options: *options,
                    events,
                }))),
                Job::Crash => scheduler.queue.push_back(Queued::Crash),
                Job::Embed {
                    inputs,
                    spec,
                    reply,
                } => {
                    let _ = reply.send(model.embed(&inputs, spec));
                }
            }
        }
        if scheduler.is_idle() {
            if open {
                continue;
            }
            break;
        }
        scheduler.tick();
    }
}

/// The worker's sequences: generating in one batch, or waiting for their
/// prompt to run.
struct Scheduler<'m> {
    model: &'m Model,
    /// Requests queued and not yet started, shared with [`ModelWorker`].
    waiting: &'m AtomicUsize,
    batch: Batch<'m>,
    generating: Vec<Generating>,
    /// The prompt being computed, one chunk per tick.
    prefilling: Option<Waiting>,
    queue: VecDeque<Queued>,
    prompt_cache: PromptCache,
    gauges: &'m WorkerGauges,
    worker: &'m WorkerOptions,
}

impl Scheduler<'_> {
    fn is_idle(&self) -> bool {
        self.generating.is_empty() && self.prefilling.is_none() && self.queue.is_empty()
    }

    /// One decode step for the batch, then one prefill chunk.
    fn tick(&mut self) {
        if let Err(e) = self.decode() {
            // A failed step fails every sequence in it.
            let message = e.to_string();
            for seq in std::mem::take(&mut self.generating) {
                let _ = self.batch.leave(seq.id);
                let _ = seq
                    .events
                    .send(Err(EngineError::Exception(message.clone())));
            }
        }
        self.prefill();
        self.publish();
    }

    fn publish(&self) {
        let sequences = self.generating.len() as u64;
        self.gauges.sequences.store(sequences, Ordering::Relaxed);
        self.gauges
            .peak_sequences
            .fetch_max(sequences, Ordering::Relaxed);
        let prefilling = self.prefilling.as_ref().map_or(0, |w| w.prefill.kv_bytes());
        self.gauges.counters.kv_bytes.store(
            (self.batch.kv_bytes() + prefilling) as u64,
            Ordering::Relaxed,
        );
        self.gauges
            .prompt_cache_bytes
            .store(self.prompt_cache.bytes() as u64, Ordering::Relaxed);
    }

    fn decode(&mut self) -> Result<()> {
        // Sequences at their limit, cancelled, or whose caller hung up leave first.
        let mut i = 0;
        while i < self.generating.len() {
            let seq = &mut self.generating[i];
            let ending = if seq.gone {
                Some(seq.text.cancel())
            } else {
                seq.text.check()
            };
            match ending {
                Some(events) => {
                    let seq = self.generating.remove(i);
                    self.end(seq, events)?;
                }
                None => i += 1,
            }
        }
        if self.generating.is_empty() {
            return Ok(());
        }
        for (id, sampled) in self.batch.step()? {
            let Some(index) = self.generating.iter().position(|s| s.id == id) else {
                continue;
            };
            self.take(index, sampled)?;
        }
        Ok(())
    }

    /// Handles sequence `index`'s next token.
    fn take(&mut self, index: usize, sampled: crate::sampler::Sampled) -> Result<()> {
        let seq = &mut self.generating[index];
        if seq.text.is_finished() {
            return Ok(());
        }
        match seq.text.accept(self.model, sampled)? {
            Step::Continue(delta) => {
                if let Some(delta) = delta
                    && seq.events.send(Ok(delta)).is_err()
                {
                    seq.gone = true;
                }
            }
            Step::Force(tokens, delta) => {
                if let Some(delta) = delta
                    && seq.events.send(Ok(delta)).is_err()
                {
                    seq.gone = true;
                }
                let id = seq.id;
                self.batch.force(id, &tokens)?;
            }
            Step::Finished(events) => {
                let seq = self.generating.remove(index);
                self.end(seq, events)?;
            }
        }
        Ok(())
    }

    /// Takes a sequence out of the batch, keeps its cache for reuse, and
    /// sends its last events.
    fn end(&mut self, seq: Generating, events: Vec<Event>) -> Result<()> {
        let (tokens, cache) = self.batch.leave(seq.id)?;
        if self.worker.prompt_cache_bytes > 0 {
            self.prompt_cache
                .put(cache_key(&tokens, &seq.images), cache);
        }
        // The gauges say where the cache went before the caller hears the end.
        self.publish();
        for event in events {
            if seq.events.send(Ok(event)).is_err() {
                break;
            }
        }
        Ok(())
    }

    /// Runs one chunk of the waiting prompt, starting the next one when
    /// there is room; a prompt that has run joins the batch.
    fn prefill(&mut self) {
        if self.prefilling.is_none() {
            if self.generating.len() >= self.worker.max_sequences.max(1) {
                return;
            }
            let request = match self.queue.pop_front() {
                None => return,
                Some(Queued::Request(request)) => *request,
                Some(Queued::Crash) if self.generating.is_empty() => {
                    panic!("crash requested (a test of worker failure)")
                }
                Some(crash) => {
                    self.queue.push_front(crash);
                    return;
                }
            };
            self.waiting.fetch_sub(1, Ordering::Relaxed);
            self.prefilling = self.start(request);
        }
        let Some(mut waiting) = self.prefilling.take() else {
            return;
        };
        match waiting.watch.step(self.model, &mut waiting.prefill) {
            Ok(false) => self.prefilling = Some(waiting),
            Ok(true) => self.join(waiting),
            Err(EngineError::Cancelled) => {
                let prompt_tokens = waiting.request.prompt.len();
                let _ = waiting
                    .request
                    .events
                    .send(Ok(Event::Done(cancelled_stats(prompt_tokens))));
            }
            Err(e) => {
                let _ = waiting.request.events.send(Err(e));
            }
        }
    }

    /// Starts a queued request's prefill, unless its caller gave up.
    fn start(&mut self, mut request: Request) -> Option<Waiting> {
        if is_set(request.options.cancel.as_ref()) {
            // The caller gave up while waiting: none of its prompt is computed.
            self.gauges.skipped_requests.fetch_add(1, Ordering::Relaxed);
            let _ = request
                .events
                .send(Ok(Event::Done(cancelled_stats(request.prompt.len()))));
            return None;
        }
        let started = Instant::now();
        let _ = mlx_rs::memory::reset_peak_memory();
        request.options.counters = Some(Arc::clone(&self.gauges.counters));
        let chunk = match (request.options.prefill_chunk, self.worker.prefill_chunk) {
            (0, 0) => None,
            (0, worker) => Some(worker),
            (own, _) => Some(own),
        };
        let watch = Watch {
            cancel: request.options.cancel.clone(),
            counters: request.options.counters.clone(),
            chunk,
        };
        let store = (self.worker.prompt_cache_bytes > 0).then_some(&mut self.prompt_cache);
        let images = std::mem::take(&mut request.options.images);
        match Prefill::start_cached(self.model, &request.prompt, images, store) {
            Ok(prefill) => Some(Waiting {
                request,
                prefill,
                watch,
                started,
            }),
            Err(e) => {
                let _ = request.events.send(Err(e));
                None
            }
        }
    }

    /// Runs a filled prompt's last token and adds its sequence to the batch.
    fn join(&mut self, waiting: Waiting) {
        let Waiting {
            request,
            prefill,
            started,
            ..
        } = waiting;
        let cached_tokens = prefill.cached_tokens();
        let prefilled = Event::Prefilled { cached_tokens };
        if request.events.send(Ok(prefilled)).is_err() {
            return;
        }
        let mut options = request.options;
        let images = prefill.images().to_vec();
        match self.batch.join(
            prefill,
            options.sampling.clone(),
            options.top_logprobs,
            options.constraint.take(),
        ) {
            Ok((id, first)) => {
                let text = SequenceText::new(
                    self.model,
                    options,
                    request.prompt.len(),
                    cached_tokens,
                    started,
                );
                self.generating.push(Generating {
                    id,
                    text,
                    events: request.events,
                    gone: false,
                    images,
                });
                let index = self.generating.len() - 1;
                if let Err(e) = self.take(index, first)
                    && let Some(seq) = self.generating.iter().position(|s| s.id == id)
                {
                    let seq = self.generating.remove(seq);
                    let _ = self.batch.leave(seq.id);
                    let _ = seq.events.send(Err(e));
                }
            }
            Err(e) => {
                let _ = request.events.send(Err(e));
            }
        }
    }
}

/// The statistics of a request cancelled before its first token.
fn cancelled_stats(prompt_tokens: usize) -> GenerationStats {
    GenerationStats {
        prompt_tokens,
        cached_prompt_tokens: 0,
        generated_tokens: 0,
        time_to_first_token: Duration::ZERO,
        prompt_tokens_per_second: 0.0,
        decode_tokens_per_second: 0.0,
        peak_memory_bytes: 0,
        finish_reason: FinishReason::Cancelled,
        stop_sequence: None,
        reasoning_tokens: 0,
    }
}
