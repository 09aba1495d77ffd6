//! One thread per loaded model. The thread owns the model's MLX state (weights,
//! caches) and runs its requests one at a time from a bounded queue; callers
//! get a channel of [`Event`]s. Dropping that channel, or setting the
//! request's cancel flag, stops generation before the next decode step; a
//! request cancelled while it waits is never started, and one cancelled while
//! its prompt is computed stops before the next chunk.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
use std::thread::JoinHandle;
use std::time::Duration;

use crate::error::{EngineError, Result};
use crate::generate::{
    Counters, Event, FinishReason, GenerateOptions, GenerationStats, TextStream,
};
use crate::model::Model;
use crate::prompt_cache::PromptCache;
use crate::tokenizer::Tokenizer;

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
}

impl Default for WorkerOptions {
    fn default() -> Self {
        WorkerOptions {
            queue_capacity: 16,
            prompt_cache_bytes: 512 << 20,
            prefill_chunk: 0,
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
    gauges: Arc<WorkerGauges>,
    thread: Option<JoinHandle<()>>,
}

impl ModelWorker {
    /// Starts a thread that loads the model at `dir`; returns once it is loaded
    /// (or with the loading error).
    pub fn spawn(dir: &Path, options: WorkerOptions) -> Result<ModelWorker> {
        let (jobs_tx, jobs_rx) = mpsc::sync_channel::<Job>(options.queue_capacity);
        let (loaded_tx, loaded_rx) = mpsc::channel::<Result<(usize, Arc<Tokenizer>)>>();
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
                let model = match Model::load(&thread_dir) {
                    Ok(model) => {
                        let _ =
                            loaded_tx.send(Ok((model.context_length(), model.shared_tokenizer())));
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
        let (context_length, tokenizer) = match loaded {
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

    /// The tokenizer the model was loaded with (read once per load).
    pub fn tokenizer(&self) -> Arc<Tokenizer> {
        Arc::clone(&self.tokenizer)
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

    /// Queues a request; its events arrive on the returned channel, ending
    /// with `Event::Done` or an error.
    pub fn submit(
        &self,
        prompt: Vec<u32>,
        options: GenerateOptions,
    ) -> Result<Receiver<Result<Event>>, SubmitError> {
        let jobs = self.jobs.as_ref().ok_or(SubmitError::Stopped)?;
        let (events, receiver) = mpsc::channel();
        self.waiting.fetch_add(1, Ordering::Relaxed);
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

/// The worker thread's loop: one request at a time until the queue closes.
fn serve(
    model: &Model,
    jobs: Receiver<Job>,
    waiting: &AtomicUsize,
    gauges: &WorkerGauges,
    worker: &WorkerOptions,
) {
    let prompt_cache_bytes = worker.prompt_cache_bytes;
    let mut prompt_cache = PromptCache::new(prompt_cache_bytes);
    for job in jobs {
        waiting.fetch_sub(1, Ordering::Relaxed);
        let (prompt, mut options, events) = match job {
            Job::Generate {
                prompt,
                options,
                events,
            } => (prompt, *options, events),
            Job::Crash => panic!("crash requested (a test of worker failure)"),
        };
        let cancelled = options
            .cancel
            .as_ref()
            .is_some_and(|c| c.load(Ordering::Relaxed));
        if cancelled {
            // The caller gave up while waiting: none of its prompt is computed.
            gauges.skipped_requests.fetch_add(1, Ordering::Relaxed);
            let _ = events.send(Ok(Event::Done(cancelled_stats(prompt.len()))));
            continue;
        }
        options.counters = Some(Arc::clone(&gauges.counters));
        if options.prefill_chunk == 0 {
            options.prefill_chunk = worker.prefill_chunk;
        }
        let stream = if prompt_cache_bytes > 0 {
            TextStream::with_prompt_cache(model, &prompt, options, &mut prompt_cache)
        } else {
            TextStream::new(model, &prompt, options)
        };
        match stream {
            Ok(stream) => {
                let prefilled = Event::Prefilled {
                    cached_tokens: stream.cached_tokens(),
                };
                if events.send(Ok(prefilled)).is_err() {
                    continue;
                }
                let mut done = None;
                for event in stream {
                    if let Ok(Event::Done(_)) = &event {
                        done = Some(event);
                        break;
                    }
                    // The caller hung up: stop before computing another token.
                    if events.send(event).is_err() {
                        break;
                    }
                }
                if let Some(done) = done {
                    // The sequence's cache is in the prompt cache now: the
                    // gauges say so before the caller hears the request ended.
                    gauges.counters.kv_bytes.store(0, Ordering::Relaxed);
                    gauges
                        .prompt_cache_bytes
                        .store(prompt_cache.bytes() as u64, Ordering::Relaxed);
                    let _ = events.send(done);
                }
            }
            Err(EngineError::Cancelled) => {
                let _ = events.send(Ok(Event::Done(cancelled_stats(prompt.len()))));
            }
            Err(e) => {
                let _ = events.send(Err(e));
            }
        }
        gauges.counters.kv_bytes.store(0, Ordering::Relaxed);
        gauges
            .prompt_cache_bytes
            .store(prompt_cache.bytes() as u64, Ordering::Relaxed);
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
    }
}
