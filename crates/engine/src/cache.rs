//! The key/value cache of one sequence: per layer, the keys and values of
//! every position seen so far, as mlx-lm's `KVCache` keeps them.

use mlx_rs::ops::indexing::{TryIndexMutOp, TryIndexOp};
use mlx_rs::{Array, ops};

use crate::error::Result;

/// Positions added to a layer's buffers at a time: growing them by one token
/// per step would copy the whole cache every step.
const STEP: i32 = 256;

/// One layer's cached keys and values, shaped (batch, kv_heads, capacity,
/// head_dim); positions past `offset` are unused room (as mlx-lm's `KVCache`).
#[derive(Debug, Default)]
pub struct LayerCache {
    keys: Option<Array>,
    values: Option<Array>,
    offset: i32,
}

impl LayerCache {
    /// How many positions are cached: the position of the next token.
    pub fn offset(&self) -> i32 {
        self.offset
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
        })
    }

    /// Keeps only the first `positions` positions (the rest becomes room).
    fn truncate(&mut self, positions: i32) {
        self.offset = self.offset.min(positions);
    }

    fn nbytes(&self) -> usize {
        [&self.keys, &self.values]
            .into_iter()
            .flatten()
            .map(Array::nbytes)
            .sum()
    }
}

/// The cache of a whole model for one sequence.
#[derive(Debug)]
pub struct KvCache {
    layers: Vec<LayerCache>,
}

impl KvCache {
    pub fn new(num_layers: usize) -> Self {
        KvCache {
            layers: (0..num_layers).map(|_| LayerCache::default()).collect(),
        }
    }

    /// Positions cached so far.
    pub fn offset(&self) -> i32 {
        self.layers.first().map_or(0, LayerCache::offset)
    }

    pub fn layers_mut(&mut self) -> &mut [LayerCache] {
        &mut self.layers
    }

    /// Keeps only the first `positions` positions of every layer.
    pub fn truncate(&mut self, positions: usize) {
        let positions = i32::try_from(positions).unwrap_or(i32::MAX);
        self.layers.iter_mut().for_each(|l| l.truncate(positions));
    }

    /// A separate cache of the first `positions` positions; this one is unchanged.
    pub fn copy_prefix(&self, positions: usize) -> Result<KvCache> {
        let positions = i32::try_from(positions).unwrap_or(i32::MAX);
        Ok(KvCache {
            layers: self
                .layers
                .iter()
                .map(|l| l.copy_prefix(positions))
                .collect::<Result<_>>()?,
        })
    }

    /// Memory held by the cached keys and values.
    pub fn nbytes(&self) -> usize {
        self.layers.iter().map(LayerCache::nbytes).sum()
    }

    /// Computes every cached array now, so the lazy graph does not grow
    /// across prefill chunks.
    pub fn eval(&self) -> Result<()> {
        let arrays = self
            .layers
            .iter()
            .flat_map(|l| [l.keys.as_ref(), l.values.as_ref()])
            .flatten();
        mlx_rs::transforms::eval(arrays)?;
        Ok(())
    }
}
