//! One thread per loaded model. The thread owns the model's MLX state (weights,
//! caches) and runs its requests one at a time from a bounded queue; callers
//! get a channel of [`Event`]s. Dropping that channel, or setting the
//! request's cancel flag, stops generation before the next decode step.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
use std::thread::JoinHandle;

use crate::error::{EngineError, Result};
use crate::generate::{Event, GenerateOptions, TextStream};
use crate::model::Model;
use crate::prompt_cache::PromptCache;

/// How a worker is set up.
#[derive(Debug, Clone)]
pub struct WorkerOptions {
    /// Requests waiting beyond the one running; more are refused with
    /// [`SubmitError::QueueFull`].
    pub queue_capacity: usize,
    /// Memory for reusable prompt caches (see [`PromptCache`]); 0 turns reuse off.
    pub prompt_cache_bytes: usize,
}

impl Default for WorkerOptions {
    fn default() -> Self {
        WorkerOptions {
            queue_capacity: 16,
            prompt_cache_bytes: 512 << 20,
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

struct Job {
    prompt: Vec<u32>,
    options: GenerateOptions,
    events: mpsc::Sender<Result<Event>>,
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
    thread: Option<JoinHandle<()>>,
}

impl ModelWorker {
    /// Starts a thread that loads the model at `dir`; returns once it is loaded
    /// (or with the loading error).
    pub fn spawn(dir: &Path, options: WorkerOptions) -> Result<ModelWorker> {
        let (jobs_tx, jobs_rx) = mpsc::sync_channel::<Job>(options.queue_capacity);
        let (loaded_tx, loaded_rx) = mpsc::channel::<Result<usize>>();
        let waiting = Arc::new(AtomicUsize::new(0));
        let thread_waiting = Arc::clone(&waiting);
        let thread_dir = dir.to_path_buf();
        let thread = std::thread::Builder::new()
            .name(format!(
                "orchard-model-{}",
                dir.file_name().unwrap_or_default().to_string_lossy()
            ))
            .spawn(move || {
                let model = match Model::load(&thread_dir) {
                    Ok(model) => {
                        let _ = loaded_tx.send(Ok(model.context_length()));
                        model
                    }
                    Err(e) => {
                        let _ = loaded_tx.send(Err(e));
                        return;
                    }
                };
                serve(&model, jobs_rx, &thread_waiting, options.prompt_cache_bytes);
                drop(model);
                // Freed buffers stay in MLX's cache until cleared; give them back.
                let _ = mlx_rs::memory::clear_cache();
            })
            .map_err(|e| EngineError::Exception(format!("cannot start the model thread: {e}")))?;
        let mut worker = ModelWorker {
            dir: dir.to_path_buf(),
            jobs: Some(jobs_tx),
            waiting,
            capacity: options.queue_capacity,
            context_length: 0,
            thread: Some(thread),
        };
        match loaded_rx.recv() {
            Ok(Ok(context_length)) => {
                worker.context_length = context_length;
                Ok(worker)
            }
            Ok(Err(e)) => {
                worker.stop();
                Err(e)
            }
            Err(_) => {
                worker.stop();
                Err(EngineError::Exception(
                    "the model thread ended while loading".into(),
                ))
            }
        }
    }

    /// The model folder this worker serves.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The model's context length in tokens.
    pub fn context_length(&self) -> usize {
        self.context_length
    }

    /// Requests queued and not yet started.
    pub fn queue_depth(&self) -> usize {
        self.waiting.load(Ordering::Relaxed)
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
        match jobs.try_send(Job {
            prompt,
            options,
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
fn serve(model: &Model, jobs: Receiver<Job>, waiting: &AtomicUsize, prompt_cache_bytes: usize) {
    let mut prompt_cache = PromptCache::new(prompt_cache_bytes);
    for job in jobs {
        waiting.fetch_sub(1, Ordering::Relaxed);
        let stream = if prompt_cache_bytes > 0 {
            TextStream::with_prompt_cache(model, &job.prompt, job.options, &mut prompt_cache)
        } else {
            TextStream::new(model, &job.prompt, job.options)
        };
        let stream = match stream {
            Ok(stream) => stream,
            Err(e) => {
                let _ = job.events.send(Err(e));
                continue;
            }
        };
        for event in stream {
            // The caller hung up: stop before computing another token.
            if job.events.send(event).is_err() {
                break;
            }
        }
    }
}
