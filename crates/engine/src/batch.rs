//! Layer 1 of generation, after mlx-lm's `generate.py`: a prompt's prefill
//! ([`Prefill`]), then sequences decoding together ([`Batch`]): each step is
//! one forward pass of one token for every sequence, over one cache whose
//! rows are the sequences (right-aligned, as mlx-lm's `BatchGenerator`
//! keeps them). Sequences join after their prefill and leave when they end,
//! between steps; each keeps its own sampler and tokens.
//!
//! When every sequence decodes greedily, the step samples on the device and
//! runs one step ahead: the next forward pass is queued before the tokens of
//! this one are read, so the model computes while the caller handles them.
//! A sequence with a [`Constraint`] (structured output) has its token mask
//! added to its logits on the device; while one is in the batch, steps are
//! not run ahead, since its next mask depends on the token just sampled.

use mlx_rs::{Array, Dtype, ops};

use crate::cache::KvCache;
use crate::constrain::Constraint;
use crate::error::{EngineError, Result};
use crate::model::Model;
use crate::prompt_cache::PromptCache;
use crate::sampler::{Sampled, Sampler, SamplingParams};
use crate::vision::PromptImage;

/// Prompt tokens run per forward pass during prefill (mlx-lm's default
/// `prefill_step_size`); bounds the memory of the attention scores.
pub const PREFILL_CHUNK: usize = 2048;

/// A prompt on its way into the cache, one chunk at a time.
#[derive(Debug)]
pub struct Prefill {
    prompt: Vec<u32>,
    cache: KvCache,
    /// Prompt tokens in the cache so far.
    done: usize,
    /// Prompt tokens whose keys and values were reused rather than computed.
    cached_tokens: usize,
    /// The prompt's images, placed (see [`crate::vision::place`]), and
    /// their features once the vision tower has run them.
    images: Vec<PromptImage>,
    features: Vec<Option<Array>>,
}

impl Prefill {
    /// Checks the prompt against the model and starts from `reused` (a cache
    /// that already holds the prompt's first tokens, with their count; see
    /// [`crate::PromptCache::take`]) when it fits.
    pub fn start(
        model: &Model,
        prompt: &[u32],
        reused: Option<(KvCache, usize)>,
    ) -> Result<Prefill> {
        check(model, prompt)?;
        Ok(Self::begin(model, prompt, Vec::new(), reused))
    }

    /// Like [`Prefill::start`] for a prompt that may hold images, starting
    /// from the longest prefix `store` holds: `images` are placed at the
    /// prompt's runs of the model's image token, in order, and the prompt is
    /// looked up keyed by them ([`crate::vision::cache_key`]).
    pub fn start_cached(
        model: &Model,
        prompt: &[u32],
        mut images: Vec<PromptImage>,
        store: Option<&mut PromptCache>,
    ) -> Result<Prefill> {
        check(model, prompt)?;
        crate::vision::place_for(model, prompt, &mut images)?;
        let reused = match store {
            Some(store) => store.take(&crate::vision::cache_key(prompt, &images))?,
            None => None,
        };
        Ok(Self::begin(model, prompt, images, reused))
    }

    /// A prefill of a checked prompt with its placed images.
    fn begin(
        model: &Model,
        prompt: &[u32],
        images: Vec<PromptImage>,
        reused: Option<(KvCache, usize)>,
    ) -> Prefill {
        let (cache, cached_tokens) = match reused {
            Some((cache, cached)) if cached < prompt.len() && cache.offset() as usize == cached => {
                (cache, cached)
            }
            _ => (model.new_cache(), 0),
        };
        Prefill {
            prompt: prompt.to_vec(),
            cache,
            done: cached_tokens,
            cached_tokens,
            features: vec![None; images.len()],
            images,
        }
    }

    /// The prompt's images, placed: what the prompt cache's key needs when
    /// the sequence ends.
    pub fn images(&self) -> &[PromptImage] {
        &self.images
    }

    /// Prompt tokens that came from a reused cache.
    pub fn cached_tokens(&self) -> usize {
        self.cached_tokens
    }

    /// Bytes of keys and values computed so far.
    pub fn kv_bytes(&self) -> usize {
        self.cache.nbytes()
    }

    /// Runs the next chunk of at most `chunk` tokens; the number run, 0 once
    /// only the last token is left. As mlx-lm does, all but the last token
    /// only fill the cache (their logits are never computed).
    pub fn run_chunk(&mut self, model: &Model, chunk: usize) -> Result<usize> {
        let head = self.prompt.len() - 1;
        let n = chunk.max(1).min(head - self.done);
        if n == 0 {
            return Ok(0);
        }
        let (start, end) = (self.done, self.done + n);
        let mut positions = Vec::new();
        let mut rows = Vec::new();
        for (image, features) in self.images.iter().zip(&mut self.features) {
            let (from, to) = (image.start.max(start), (image.start + image.len).min(end));
            if from >= to {
                continue;
            }
            if features.is_none() {
                let [c, h, w] = image.shape.map(|d| d as i32);
                let pixels = Array::from_slice(&image.pixels, &[1, c, h, w]);
                let encoded = model.encode_images(&pixels)?;
                let width = encoded.shape()[2];
                *features = Some(encoded.reshape(&[-1, width])?);
            }
            let all = features.as_ref().expect("encoded above");
            if all.shape()[0] as usize != image.len {
                return Err(EngineError::InvalidParameter {
                    name: "images",
                    message: format!(
                        "an image makes {} features but has {} tokens in the prompt",
                        all.shape()[0],
                        image.len
                    ),
                });
            }
            let offsets: Vec<i32> = (from - image.start..to - image.start)
                .map(|i| i as i32)
                .collect();
            rows.push(all.take_axis(Array::from_slice(&offsets, &[offsets.len() as i32]), 0)?);
            positions.extend(from - start..to - start);
        }
        if rows.is_empty() {
            model.forward(&self.prompt[start..end], &mut self.cache)?;
        } else {
            let features = ops::concatenate(&rows, 0)?;
            model.forward_with_images(
                &self.prompt[start..end],
                &positions,
                &features,
                &mut self.cache,
            )?;
        }
        self.cache.eval()?;
        self.done += n;
        Ok(n)
    }

    /// True when only the last token is left to run.
    pub fn is_filled(&self) -> bool {
        self.done + 1 >= self.prompt.len()
    }
}

/// A prompt the model can run: not empty, and shorter than its context.
fn check(model: &Model, prompt: &[u32]) -> Result<()> {
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
    Ok(())
}

/// Sequence `id`'s place in a batch.
pub type SequenceId = u64;

/// One sequence of a batch.
#[derive(Debug)]
struct Row {
    id: SequenceId,
    sampler: Sampler,
    /// Every token so far: the prompt, then the sampled ones.
    context: Vec<u32>,
    top_logprobs: usize,
    /// The last sampled token, not yet run through the model. Unused while
    /// the row is queued (see [`Batch::queued`]): then the model has run it.
    feed: u32,
    /// Keeps the sampled tokens inside a grammar.
    constraint: Option<Constraint>,
}

/// Greedy tokens sampled on the device for the first `rows` rows, not yet read.
#[derive(Debug)]
struct Queued {
    tokens: Array,
    logprobs: Array,
    rows: usize,
}

/// Sequences decoding together.
#[derive(Debug)]
pub struct Batch<'m> {
    model: &'m Model,
    cache: Option<KvCache>,
    rows: Vec<Row>,
    /// For the first rows, the model has run their last sampled token and
    /// queued the next: greedy decoding one step ahead.
    queued: Option<Queued>,
    next_id: SequenceId,
}

impl<'m> Batch<'m> {
    pub fn new(model: &'m Model) -> Self {
        Batch {
            model,
            cache: None,
            rows: Vec::new(),
            queued: None,
            next_id: 0,
        }
    }

    pub fn model(&self) -> &'m Model {
        self.model
    }

    /// Sequences in the batch.
    pub fn len(&self) -> usize {
        self.rows.len()
    }

    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// Bytes of keys and values the batch holds.
    pub fn kv_bytes(&self) -> usize {
        self.cache.as_ref().map_or(0, KvCache::nbytes)
    }

    /// Runs the last prompt token of `prefill`, samples the sequence's first
    /// token, and adds the sequence to the batch. Returns its id and that token.
    pub fn join(
        &mut self,
        mut prefill: Prefill,
        sampling: SamplingParams,
        top_logprobs: usize,
        mut constraint: Option<Constraint>,
    ) -> Result<(SequenceId, Sampled)> {
        let mut sampler = Sampler::new(sampling)?;
        while prefill.run_chunk(self.model, PREFILL_CHUNK)? > 0 {}
        // A hybrid model's recurrent state can come back to this point only
        // (the prompt but its last token: where the next turn, or the same
        // prompt sent again, leaves this sequence).
        prefill.cache.checkpoint();
        let last = prefill.prompt[prefill.prompt.len() - 1];
        let mut cache = prefill.cache;
        let logits = last_logits(&self.model.forward(&[last], &mut cache)?)?;
        let logits = masked(logits, std::slice::from_mut(&mut constraint))?;
        let mut context = prefill.prompt;
        let sampled = if sampler.is_plain_greedy() && top_logprobs == 0 {
            let (tokens, logprobs) = greedy_on_device(&logits)?;
            read_greedy(&tokens, &logprobs)?.remove(0)
        } else {
            let mut host = host_logits(&logits)?;
            sampler.sample(&mut host, &context, top_logprobs)
        };
        if let Some(constraint) = constraint.as_mut() {
            constraint.commit(sampled.token);
        }
        context.push(sampled.token);
        let id = self.next_id;
        self.next_id += 1;
        self.add(
            Row {
                id,
                sampler,
                context,
                top_logprobs,
                feed: sampled.token,
                constraint,
            },
            cache,
        )?;
        Ok((id, sampled))
    }

    fn add(&mut self, row: Row, cache: KvCache) -> Result<()> {
        match &mut self.cache {
            Some(batch) => batch.extend(cache)?,
            None => self.cache = Some(cache),
        }
        self.rows.push(row);
        Ok(())
    }

    fn index(&self, id: SequenceId) -> Result<usize> {
        self.rows
            .iter()
            .position(|r| r.id == id)
            .ok_or_else(|| EngineError::InvalidParameter {
                name: "sequence",
                message: format!("no sequence {id} in the batch"),
            })
    }

    /// Takes sequence `id` out of the batch: the tokens whose positions its
    /// cache holds, and that cache (for the prompt cache).
    pub fn leave(&mut self, id: SequenceId) -> Result<(Vec<u32>, KvCache)> {
        let (row, cache) = self.remove(self.index(id)?)?;
        let mut tokens = row.context;
        tokens.truncate(cache.offset() as usize);
        Ok((tokens, cache))
    }

    /// Removes row `index`: its state and its own cache.
    fn remove(&mut self, index: usize) -> Result<(Row, KvCache)> {
        let Some(batch) = self.cache.as_mut() else {
            return Err(EngineError::InvalidParameter {
                name: "sequence",
                message: "the batch is empty".into(),
            });
        };
        let cache = if self.rows.len() == 1 {
            let last = self.cache.take().unwrap_or_else(|| self.model.new_cache());
            // Computed now, so no lazy input outlives the batch.
            last.eval()?;
            last
        } else {
            let own = batch.extract(index)?;
            let keep: Vec<usize> = (0..self.rows.len()).filter(|&i| i != index).collect();
            batch.retain_rows(&keep)?;
            own
        };
        if let Some(queued) = self.queued.take() {
            if index < queued.rows && queued.rows > 1 {
                let keep: Vec<i32> = (0..queued.rows as i32)
                    .filter(|&i| i != index as i32)
                    .collect();
                let keep = Array::from_slice(&keep, &[keep.len() as i32]);
                self.queued = Some(Queued {
                    tokens: queued.tokens.take_axis(&keep, 0)?,
                    logprobs: queued.logprobs.take_axis(&keep, 0)?,
                    rows: queued.rows - 1,
                });
            } else if index >= queued.rows {
                self.queued = Some(queued);
            }
        }
        Ok((self.rows.remove(index), cache))
    }

    /// Writes `tokens` into sequence `id` after its last sampled token, as if
    /// they had been sampled (a queued prediction is dropped); the next step
    /// continues after them.
    pub fn force(&mut self, id: SequenceId, tokens: &[u32]) -> Result<()> {
        let Some((last, head)) = tokens.split_last() else {
            return Ok(());
        };
        let index = self.index(id)?;
        let queued = self.queued.as_ref().is_some_and(|q| index < q.rows);
        let (mut row, mut cache) = self.remove(index)?;
        let mut feed = Vec::with_capacity(tokens.len());
        if !queued {
            // The last sampled token is in the context, not yet in the cache.
            feed.push(row.feed);
        }
        feed.extend_from_slice(head);
        if !feed.is_empty() {
            self.model.forward(&feed, &mut cache)?;
            cache.eval()?;
        }
        row.context.extend_from_slice(tokens);
        row.feed = *last;
        if let Some(constraint) = row.constraint.as_mut() {
            for &token in tokens {
                constraint.commit(token);
            }
        }
        self.add(row, cache)
    }

    /// One step: runs every sequence's last token and samples its next.
    /// Returns the tokens sampled, each with its sequence; while greedy
    /// decoding runs one step ahead, a sequence's token comes a step later.
    pub fn step(&mut self) -> Result<Vec<(SequenceId, Sampled)>> {
        let Some(cache) = self.cache.as_mut() else {
            return Ok(Vec::new());
        };
        let rows = self.rows.len();
        let previous = self.queued.take();
        let queued_rows = previous.as_ref().map_or(0, |q| q.rows);
        let mut ids = Vec::with_capacity(2);
        if let Some(q) = &previous {
            ids.push(q.tokens.as_dtype(Dtype::Int32)?);
        }
        let feeds: Vec<i32> = self.rows[queued_rows..]
            .iter()
            .map(|r| r.feed as i32)
            .collect();
        if !feeds.is_empty() {
            ids.push(Array::from_slice(&feeds, &[feeds.len() as i32]));
        }
        let ids = ops::concatenate(&ids, 0)?.reshape(&[rows as i32, 1])?;
        let logits = last_logits(&self.model.forward_ids(&ids, cache)?)?;
        let greedy = self
            .rows
            .iter()
            .all(|r| r.sampler.is_plain_greedy() && r.top_logprobs == 0);
        let constrained = self.rows.iter().any(|r| r.constraint.is_some());
        let mut out = Vec::with_capacity(rows);
        if greedy && !constrained {
            let (tokens, logprobs) = greedy_on_device(&logits)?;
            self.queued = Some(Queued {
                tokens,
                logprobs,
                rows,
            });
        }
        // The tokens queued by the last step come first in their sequences.
        if let Some(q) = previous {
            for (row, sampled) in self
                .rows
                .iter_mut()
                .zip(read_greedy(&q.tokens, &q.logprobs)?)
            {
                row.context.push(sampled.token);
                row.feed = sampled.token;
                out.push((row.id, sampled));
            }
        }
        if constrained {
            let mut constraints: Vec<Option<Constraint>> =
                self.rows.iter_mut().map(|r| r.constraint.take()).collect();
            let logits = masked(logits, &mut constraints);
            for (row, constraint) in self.rows.iter_mut().zip(constraints) {
                row.constraint = constraint;
            }
            let logits = logits?;
            let sampled = if greedy {
                let (tokens, logprobs) = greedy_on_device(&logits)?;
                read_greedy(&tokens, &logprobs)?
            } else {
                self.sample_on_host(&logits)?
            };
            for (row, sampled) in self.rows.iter_mut().zip(sampled) {
                if let Some(constraint) = row.constraint.as_mut() {
                    constraint.commit(sampled.token);
                }
                row.context.push(sampled.token);
                row.feed = sampled.token;
                out.push((row.id, sampled));
            }
        } else if !greedy {
            for (row, sampled) in (0..rows).zip(self.sample_on_host(&logits)?) {
                let row = &mut self.rows[row];
                row.context.push(sampled.token);
                row.feed = sampled.token;
                out.push((row.id, sampled));
            }
        }
        Ok(out)
    }

    /// Samples each row's token from its logits on the host, with its sampler.
    fn sample_on_host(&mut self, logits: &Array) -> Result<Vec<Sampled>> {
        let host = host_logits(logits)?;
        let vocab = host.len() / self.rows.len().max(1);
        Ok(self
            .rows
            .iter_mut()
            .zip(host.chunks_exact(vocab))
            .map(|(row, logits)| {
                let mut logits = logits.to_vec();
                row.sampler
                    .sample(&mut logits, &row.context, row.top_logprobs)
            })
            .collect())
    }
}

/// The last position's logits of every row, `[rows, vocab]` in float32.
fn last_logits(logits: &Array) -> Result<Array> {
    let shape = logits.shape();
    let (rows, vocab) = (shape[0], shape[shape.len() - 1]);
    Ok(logits
        .take_axis(Array::from_int(shape[1] - 1), 1)?
        .reshape(&[rows, vocab])?
        .as_dtype(Dtype::Float32)?)
}

/// `logits` (`[rows, vocab]`) with each constrained row's token mask added:
/// -inf where its grammar forbids the token. Unchanged when no row has a
/// constraint still holding.
fn masked(logits: Array, constraints: &mut [Option<Constraint>]) -> Result<Array> {
    let shape = logits.shape();
    let vocab = shape[shape.len() - 1];
    // Only constrained rows' masks come from the host; the others add a row
    // of zeros made on the device.
    let zeros = Array::zeros::<f32>(&[1, vocab])?;
    let mut constrained = false;
    let rows: Vec<Array> = constraints
        .iter_mut()
        .map(|c| match c.as_mut().and_then(|c| c.bias(vocab as usize)) {
            Some(bias) => {
                constrained = true;
                Array::from_slice(&bias, &[1, vocab])
            }
            None => zeros.clone(),
        })
        .collect();
    if !constrained {
        return Ok(logits);
    }
    Ok(logits.add(ops::concatenate(&rows, 0)?)?)
}

/// Each row's most likely next token and its log-probability from its
/// last-position logits (`[rows, vocab]`, float32), lazily, with their
/// evaluation started.
fn greedy_on_device(last: &Array) -> Result<(Array, Array)> {
    let rows = last.shape()[0];
    let tokens = mlx_rs::ops::indexing::argmax_axis(last, -1, true)?;
    let logprobs = last
        .take_along_axis(&tokens, -1)?
        .subtract(last.logsumexp_axis(-1, true)?)?;
    let (tokens, logprobs) = (tokens.reshape(&[rows])?, logprobs.reshape(&[rows])?);
    mlx_rs::transforms::async_eval([&tokens, &logprobs])?;
    Ok((tokens, logprobs))
}

/// Reads greedy tokens sampled on the device.
fn read_greedy(tokens: &Array, logprobs: &Array) -> Result<Vec<Sampled>> {
    let read = |e: mlx_rs::error::Exception| {
        EngineError::Exception(format!("reading the sampled tokens: {e}"))
    };
    let tokens = tokens.as_dtype(Dtype::Uint32)?;
    tokens.eval().map_err(read)?;
    logprobs.eval().map_err(read)?;
    Ok(tokens
        .as_slice::<u32>()
        .iter()
        .zip(logprobs.as_slice::<f32>())
        .map(|(&token, &logprob)| Sampled {
            token,
            logprob,
            top: Vec::new(),
        })
        .collect())
}

/// Last-position logits (`[rows, vocab]`, float32) on the host, rows one
/// after another.
fn host_logits(last: &Array) -> Result<Vec<f32>> {
    last.eval()?;
    Ok(last.as_slice::<f32>().to_vec())
}
