//! The cache of one sequence: per attention layer, the keys and values of
//! every position seen so far, as mlx-lm's `KVCache` keeps them; per
//! recurrent layer (gated DeltaNet), the state after the last position, as
//! mlx-lm's `ArraysCache` keeps it.
//!
//! Keys and values can be cut back to any earlier position; a recurrent state
//! cannot (it folds every position into one array). So a cache with
//! recurrent layers keeps checkpoints: the states as they were at chosen
//! positions (the end of a prompt's prefill), and can be cut back exactly to
//! those. MLX arrays are immutable, so a checkpoint costs no copy while the
//! state it names is the current one.

use mlx_rs::ops::indexing::{TryIndexMutOp, TryIndexOp};
use mlx_rs::{Array, ops};

use crate::error::{EngineError, Result};

/// Positions added to a layer's buffers at a time: growing them by one token
/// per step would copy the whole cache every step.
const STEP: i32 = 256;

/// One layer's cached keys and values, shaped (batch, kv_heads, capacity,
/// head_dim); columns past `offset` are unused room (as mlx-lm's `KVCache`).
/// In a batch, rows are right-aligned: row b's first `padding[b]` columns
/// hold no position (as mlx-lm's `BatchKVCache`).
#[derive(Debug, Default)]
pub struct LayerCache {
    keys: Option<Array>,
    values: Option<Array>,
    offset: i32,
    /// Per row, the columns of left padding; None when no row has any.
    padding: Option<Array>,
}

/// Where the new tokens of a forward pass are in their sequences.
#[derive(Debug)]
pub enum Positions {
    /// Every row's first new token is at this position.
    Same(i32),
    /// Row b's is at `offsets[b]` (a batch of sequences of different lengths).
    PerRow(Array),
}

impl LayerCache {
    /// How many columns are cached: for one sequence, the position of the
    /// next token.
    pub fn offset(&self) -> i32 {
        self.offset
    }

    /// Per row, the columns of left padding, if any row has some.
    pub fn padding(&self) -> Option<&Array> {
        self.padding.as_ref()
    }

    /// The positions of the tokens about to be added.
    pub fn positions(&self) -> Result<Positions> {
        Ok(match &self.padding {
            None => Positions::Same(self.offset),
            Some(padding) => Positions::PerRow(Array::from_int(self.offset).subtract(padding)?),
        })
    }

    fn capacity(&self) -> i32 {
        self.keys.as_ref().map_or(0, |k| k.shape()[2])
    }

    /// Writes the new positions into the buffers (growing them when full) and
    /// returns the keys and values of every position so far.
    pub fn update_and_fetch(&mut self, keys: Array, values: Array) -> Result<(Array, Array)> {
        let added = keys.shape()[2];
        let start = self.offset;
        if start + added > self.capacity() {
            let grow = (added + STEP - 1) / STEP * STEP;
            let room = |like: &Array| -> Result<Array> {
                let s = like.shape();
                Ok(ops::zeros_dtype(&[s[0], s[1], grow, s[3]], like.dtype())?)
            };
            let (new_k, new_v) = (room(&keys)?, room(&values)?);
            let (k, v) = match (self.keys.take(), self.values.take()) {
                (Some(k), Some(v)) => (
                    ops::concatenate(&[k.try_index((.., .., ..start))?, new_k], 2)?,
                    ops::concatenate(&[v.try_index((.., .., ..start))?, new_v], 2)?,
                ),
                _ => (new_k, new_v),
            };
            self.keys = Some(k);
            self.values = Some(v);
        }
        self.offset += added;
        let end = self.offset;
        let (Some(k), Some(v)) = (self.keys.as_mut(), self.values.as_mut()) else {
            unreachable!("the buffers were just allocated");
        };
        k.try_index_mut((.., .., start..end), &keys)?;
        v.try_index_mut((.., .., start..end), &values)?;
        Ok((k.try_index((.., .., ..end))?, v.try_index((.., .., ..end))?))
    }

    /// A new cache holding this one's first `positions` positions. It shares
    /// their memory until its first update copies them into its own buffers;
    /// this cache is left as it was.
    fn copy_prefix(&self, positions: i32) -> Result<LayerCache> {
        let n = positions.min(self.offset);
        let (keys, values) = match (&self.keys, &self.values) {
            (Some(k), Some(v)) if n > 0 => (
                Some(k.try_index((.., .., ..n))?),
                Some(v.try_index((.., .., ..n))?),
            ),
            _ => (None, None),
        };
        Ok(LayerCache {
            keys,
            values,
            offset: n.max(0),
            padding: None,
        })
    }

    /// The cached columns, without the room past them.
    fn filled(&self) -> Result<(Array, Array)> {
        match (&self.keys, &self.values) {
            (Some(k), Some(v)) if self.offset > 0 => Ok((
                k.try_index((.., .., ..self.offset))?,
                v.try_index((.., .., ..self.offset))?,
            )),
            _ => Err(EngineError::InvalidParameter {
                name: "cache",
                message: "an empty cache cannot join a batch".into(),
            }),
        }
    }

    /// Adds `n` columns of padding on the left of every row.
    fn pad_left(&mut self, n: i32) -> Result<()> {
        if n == 0 {
            return Ok(());
        }
        let (k, v) = self.filled()?;
        let zeros = |like: &Array| -> Result<Array> {
            let s = like.shape();
            Ok(ops::zeros_dtype(&[s[0], s[1], n, s[3]], like.dtype())?)
        };
        self.keys = Some(ops::concatenate(&[zeros(&k)?, k], 2)?);
        self.values = Some(ops::concatenate(&[zeros(&v)?, v], 2)?);
        self.offset += n;
        Ok(())
    }

    /// Stacks the rows of `other` (aligned to the same offset) under these.
    fn append_rows(&mut self, other: &LayerCache) -> Result<()> {
        let ((k, v), (ok, ov)) = (self.filled()?, other.filled()?);
        self.keys = Some(ops::concatenate(&[k, ok], 0)?);
        self.values = Some(ops::concatenate(&[v, ov], 0)?);
        Ok(())
    }

    /// Keeps the rows `rows`, then drops the first `trim` columns.
    fn select(&mut self, rows: &Array, trim: i32) -> Result<()> {
        let (k, v) = self.filled()?;
        self.keys = Some(k.take_axis(rows, 0)?.try_index((.., .., trim..))?);
        self.values = Some(v.take_axis(rows, 0)?.try_index((.., .., trim..))?);
        self.offset -= trim;
        Ok(())
    }

    /// Row `row` alone, its padding (`skip` columns) dropped. Gathered into
    /// buffers of its own: a slice would keep the whole batch's alive (in
    /// the prompt cache, long after the batch moved on).
    fn row(&self, row: i32, skip: i32) -> Result<LayerCache> {
        let (k, v) = self.filled()?;
        let index = Array::from_slice(&[row], &[1]);
        let own = |a: Array| -> Result<Array> {
            Ok(a.try_index((.., .., skip..))?.take_axis(&index, 0)?)
        };
        Ok(LayerCache {
            keys: Some(own(k)?),
            values: Some(own(v)?),
            offset: self.offset - skip,
            padding: None,
        })
    }

    fn nbytes(&self) -> usize {
        [&self.keys, &self.values]
            .into_iter()
            .flatten()
            .map(Array::nbytes)
            .sum()
    }
}

/// Recurrent checkpoints kept per sequence: the latest few prefix
/// boundaries (a checkpoint per prompt; agents resend the last ones).
const CHECKPOINTS: usize = 4;

/// One recurrent layer's state: the last inputs of its short convolution and
/// the DeltaNet state, after `offset` positions (mlx-lm's `ArraysCache(2)`).
#[derive(Debug, Default, Clone)]
pub struct StateCache {
    conv: Option<Array>,
    state: Option<Array>,
    offset: i32,
}

impl StateCache {
    /// Positions folded into the state so far.
    pub fn offset(&self) -> i32 {
        self.offset
    }

    /// The convolution's input window and the recurrent state, if any
    /// position was seen.
    pub fn get(&self) -> (Option<&Array>, Option<&Array>) {
        (self.conv.as_ref(), self.state.as_ref())
    }

    /// The state after `added` more positions.
    pub fn set(&mut self, conv: Array, state: Array, added: i32) {
        self.conv = Some(conv);
        self.state = Some(state);
        self.offset += added;
    }

    fn arrays(&self) -> Result<(&Array, &Array)> {
        match (&self.conv, &self.state) {
            (Some(conv), Some(state)) => Ok((conv, state)),
            _ => Err(EngineError::InvalidParameter {
                name: "cache",
                message: "an empty cache cannot join a batch".into(),
            }),
        }
    }

    fn append_rows(&mut self, other: &StateCache) -> Result<()> {
        let ((conv, state), (other_conv, other_state)) = (self.arrays()?, other.arrays()?);
        let conv = ops::concatenate(&[conv, other_conv], 0)?;
        let state = ops::concatenate(&[state, other_state], 0)?;
        (self.conv, self.state) = (Some(conv), Some(state));
        Ok(())
    }

    fn select(&mut self, rows: &Array) -> Result<()> {
        let (conv, state) = self.arrays()?;
        let (conv, state) = (conv.take_axis(rows, 0)?, state.take_axis(rows, 0)?);
        (self.conv, self.state) = (Some(conv), Some(state));
        Ok(())
    }

    fn row(&self, row: i32, offset: i32) -> Result<StateCache> {
        let (conv, state) = self.arrays()?;
        let index = Array::from_slice(&[row], &[1]);
        Ok(StateCache {
            conv: Some(conv.take_axis(&index, 0)?),
            state: Some(state.take_axis(&index, 0)?),
            offset,
        })
    }

    fn nbytes(&self) -> usize {
        [&self.conv, &self.state]
            .into_iter()
            .flatten()
            .map(Array::nbytes)
            .sum()
    }
}

/// The recurrent layers' states as they were at one position.
#[derive(Debug, Clone)]
struct Checkpoint {
    position: i32,
    states: Vec<StateCache>,
}

/// The cache of a whole model for one sequence, or for a batch of sequences
/// decoding together (one row each).
#[derive(Debug)]
pub struct KvCache {
    layers: Vec<LayerCache>,
    states: Vec<StateCache>,
    /// Per row, its recurrent checkpoints, oldest first (none for a model
    /// without recurrent layers).
    checkpoints: Vec<Vec<Checkpoint>>,
    /// Per row, the columns of left padding: rows are right-aligned.
    padding: Vec<i32>,
}

impl KvCache {
    /// A cache for a model of `num_layers` attention layers.
    pub fn new(num_layers: usize) -> Self {
        Self::hybrid(num_layers, 0)
    }

    /// A cache for a model with `attention` attention layers and `recurrent`
    /// recurrent ones.
    pub fn hybrid(attention: usize, recurrent: usize) -> Self {
        KvCache {
            layers: (0..attention).map(|_| LayerCache::default()).collect(),
            states: (0..recurrent).map(|_| StateCache::default()).collect(),
            checkpoints: vec![Vec::new()],
            padding: vec![0],
        }
    }

    /// Columns cached so far: for one sequence, the position of the next token.
    pub fn offset(&self) -> i32 {
        match (self.layers.first(), self.states.first()) {
            (Some(layer), _) => layer.offset(),
            (None, Some(state)) => state.offset(),
            (None, None) => 0,
        }
    }

    /// Sequences in the cache.
    pub fn rows(&self) -> usize {
        self.padding.len()
    }

    pub fn layers_mut(&mut self) -> &mut [LayerCache] {
        &mut self.layers
    }

    /// The attention layers' caches and the recurrent layers' states.
    pub fn parts_mut(&mut self) -> (&mut [LayerCache], &mut [StateCache]) {
        (&mut self.layers, &mut self.states)
    }

    fn single_row(&self, what: &str) -> Result<()> {
        if self.rows() == 1 {
            Ok(())
        } else {
            Err(EngineError::InvalidParameter {
                name: "cache",
                message: format!("{what} needs the cache of one sequence, not of a batch"),
            })
        }
    }

    /// Remembers the recurrent states at the current position, so that
    /// [`KvCache::copy_prefix`] can come back to it. Nothing to do for a
    /// cache of attention layers only, or of a batch.
    pub fn checkpoint(&mut self) {
        let position = self.offset();
        if self.states.is_empty() || self.rows() != 1 {
            return;
        }
        let kept = &mut self.checkpoints[0];
        if kept.iter().any(|c| c.position == position) {
            return;
        }
        kept.push(Checkpoint {
            position,
            states: self.states.clone(),
        });
        if kept.len() > CHECKPOINTS {
            kept.remove(0);
        }
    }

    /// The longest prefix of at most `positions` positions that this cache
    /// can be cut back to: any, for attention layers; for recurrent ones, the
    /// current position or a checkpoint. 0 for a batch.
    pub fn restorable(&self, positions: usize) -> usize {
        if self.rows() != 1 {
            return 0;
        }
        let positions = i32::try_from(positions).unwrap_or(i32::MAX);
        let offset = self.offset();
        let best = if self.states.is_empty() {
            positions.min(offset)
        } else {
            self.checkpoints[0]
                .iter()
                .map(|c| c.position)
                .chain(std::iter::once(offset))
                .filter(|&p| p <= positions)
                .max()
                .unwrap_or(0)
        };
        best.max(0) as usize
    }

    /// A separate cache of the first `positions` positions; this one is
    /// unchanged. `positions` must be [`KvCache::restorable`].
    pub fn copy_prefix(&self, positions: usize) -> Result<KvCache> {
        self.single_row("cutting back")?;
        if self.restorable(positions) != positions {
            return Err(EngineError::InvalidParameter {
                name: "positions",
                message: format!(
                    "the recurrent state cannot be cut back to position {positions}: no checkpoint there"
                ),
            });
        }
        let at = i32::try_from(positions).unwrap_or(i32::MAX);
        let states = if at == self.offset() {
            self.states.clone()
        } else {
            self.checkpoints[0]
                .iter()
                .find(|c| c.position == at)
                .map_or_else(|| self.states.clone(), |c| c.states.clone())
        };
        Ok(KvCache {
            layers: self
                .layers
                .iter()
                .map(|l| l.copy_prefix(at))
                .collect::<Result<_>>()?,
            states,
            checkpoints: vec![
                self.checkpoints[0]
                    .iter()
                    .filter(|c| c.position <= at)
                    .cloned()
                    .collect(),
            ],
            padding: vec![0],
        })
    }

    /// Adds the rows of `other` (a cache of the same model) to this batch,
    /// right-aligned: the shorter side is padded on the left. Both must hold
    /// at least one position.
    pub fn extend(&mut self, mut other: KvCache) -> Result<()> {
        if self.layers.len() != other.layers.len() || self.states.len() != other.states.len() {
            return Err(EngineError::InvalidParameter {
                name: "cache",
                message: "caches of different models cannot form a batch".into(),
            });
        }
        let offset = self.offset().max(other.offset());
        self.pad_left(offset - self.offset())?;
        other.pad_left(offset - other.offset())?;
        for (layer, theirs) in self.layers.iter_mut().zip(&other.layers) {
            layer.append_rows(theirs)?;
        }
        for (state, theirs) in self.states.iter_mut().zip(&other.states) {
            state.append_rows(theirs)?;
        }
        self.checkpoints.append(&mut other.checkpoints);
        self.padding.append(&mut other.padding);
        self.share_padding()
    }

    /// Keeps only the rows `rows` (in that order), dropping the columns that
    /// no longer hold any row's position.
    pub fn retain_rows(&mut self, rows: &[usize]) -> Result<()> {
        if rows.is_empty() || rows.iter().any(|&r| r >= self.rows()) {
            return Err(EngineError::InvalidParameter {
                name: "rows",
                message: format!("rows {rows:?} of a batch of {}", self.rows()),
            });
        }
        let padding: Vec<i32> = rows.iter().map(|&r| self.padding[r]).collect();
        let trim = padding.iter().copied().min().unwrap_or(0);
        let index: Vec<i32> = rows.iter().map(|&r| r as i32).collect();
        let index = Array::from_slice(&index, &[index.len() as i32]);
        for layer in &mut self.layers {
            layer.select(&index, trim)?;
        }
        for state in &mut self.states {
            state.select(&index)?;
            state.offset -= trim;
        }
        self.checkpoints = rows
            .iter()
            .map(|&r| std::mem::take(&mut self.checkpoints[r]))
            .collect();
        self.padding = padding.iter().map(|p| p - trim).collect();
        self.share_padding()
    }

    /// The cache of row `row` alone, as it would be had it run by itself.
    pub fn extract(&self, row: usize) -> Result<KvCache> {
        let Some(&skip) = self.padding.get(row) else {
            return Err(EngineError::InvalidParameter {
                name: "row",
                message: format!("row {row} of a batch of {}", self.rows()),
            });
        };
        let r = row as i32;
        let own = KvCache {
            layers: self
                .layers
                .iter()
                .map(|l| l.row(r, skip))
                .collect::<Result<_>>()?,
            states: self
                .states
                .iter()
                .map(|s| s.row(r, s.offset - skip))
                .collect::<Result<_>>()?,
            checkpoints: vec![self.checkpoints[row].clone()],
            padding: vec![0],
        };
        // Computed now: a lazy row would keep the whole batch's buffers alive
        // as its inputs until its first use.
        own.eval()?;
        Ok(own)
    }

    fn pad_left(&mut self, n: i32) -> Result<()> {
        if n == 0 {
            return Ok(());
        }
        for layer in &mut self.layers {
            layer.pad_left(n)?;
        }
        for state in &mut self.states {
            state.offset += n;
        }
        self.padding.iter_mut().for_each(|p| *p += n);
        self.share_padding()
    }

    /// Gives every attention layer the rows' padding (for positions and masks).
    fn share_padding(&mut self) -> Result<()> {
        let padding = if self.padding.iter().any(|&p| p > 0) {
            Some(Array::from_slice(
                &self.padding,
                &[self.padding.len() as i32],
            ))
        } else {
            None
        };
        for layer in &mut self.layers {
            layer.padding = padding.clone();
        }
        Ok(())
    }

    /// Memory held by the cached keys and values and the recurrent states
    /// (a checkpoint of the current position shares its arrays).
    pub fn nbytes(&self) -> usize {
        let offset = self.offset();
        self.layers.iter().map(LayerCache::nbytes).sum::<usize>()
            + self.states.iter().map(StateCache::nbytes).sum::<usize>()
            + self
                .checkpoints
                .iter()
                .flatten()
                .filter(|c| c.position != offset)
                .flat_map(|c| &c.states)
                .map(StateCache::nbytes)
                .sum::<usize>()
    }

    /// Computes every cached array now, so the lazy graph does not grow
    /// across prefill chunks.
    pub fn eval(&self) -> Result<()> {
        let arrays = self
            .layers
            .iter()
            .flat_map(|l| [l.keys.as_ref(), l.values.as_ref()])
            .chain(
                self.states
                    .iter()
                    .flat_map(|s| [s.conv.as_ref(), s.state.as_ref()]),
            )
            .flatten();
        mlx_rs::transforms::eval(arrays)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A hybrid cache of one attention and one recurrent layer after `added`
    /// more positions.
    fn advance(cache: &mut KvCache, added: i32, fill: f32) {
        let (layers, states) = cache.parts_mut();
        let kv = Array::from_slice(&vec![fill; added as usize], &[1, 1, added, 1]);
        layers[0].update_and_fetch(kv.clone(), kv).expect("update");
        states[0].set(Array::from_f32(fill), Array::from_f32(fill), added);
    }

    #[test]
    fn a_recurrent_state_comes_back_only_to_its_checkpoints() {
        let mut cache = KvCache::hybrid(1, 1);
        advance(&mut cache, 3, 1.0);
        cache.checkpoint();
        advance(&mut cache, 2, 2.0);
        assert_eq!(cache.offset(), 5);
        assert_eq!(cache.restorable(2), 0);
        assert_eq!(cache.restorable(4), 3);
        assert_eq!(cache.restorable(9), 5);

        let err = cache.copy_prefix(4).expect_err("no checkpoint at 4");
        assert!(err.to_string().contains("position 4"), "{err}");
        let mut back = cache.copy_prefix(3).expect("the checkpoint");
        assert_eq!(back.offset(), 3);
        let (layers, states) = back.parts_mut();
        assert_eq!(layers[0].offset(), 3);
        let state = states[0].get().1.expect("a state");
        assert_eq!(state.item_exact::<f32>(), 1.0, "the state as it was at 3");
        // The original is unchanged.
        assert_eq!(cache.offset(), 5);
        let (_, states) = cache.parts_mut();
        assert_eq!(states[0].get().1.expect("a state").item_exact::<f32>(), 2.0);
    }

    #[test]
    fn attention_layers_come_back_to_any_position() {
        let mut cache = KvCache::new(1);
        let kv = Array::from_slice(&[0.5f32; 6], &[1, 1, 6, 1]);
        cache.layers_mut()[0]
            .update_and_fetch(kv.clone(), kv)
            .expect("update");
        assert_eq!(cache.restorable(4), 4);
        assert_eq!(cache.restorable(10), 6);
        assert_eq!(cache.copy_prefix(4).expect("prefix").offset(), 4);
    }
}
