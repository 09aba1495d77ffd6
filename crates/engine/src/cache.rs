//! The key/value cache of one sequence: per layer, the keys and values of
//! every position seen so far, as mlx-lm's `KVCache` keeps them.

use mlx_rs::ops::indexing::TryIndexOp;
use mlx_rs::{Array, ops};

use crate::error::Result;

/// One layer's cached keys and values, shaped (batch, kv_heads, positions, head_dim).
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

    /// Appends the new positions and returns the keys and values of all of them.
    pub fn update_and_fetch(&mut self, keys: Array, values: Array) -> Result<(Array, Array)> {
        let added = keys.shape()[2];
        let (keys, values) = match (self.keys.take(), self.values.take()) {
            (Some(old_k), Some(old_v)) => (
                ops::concatenate(&[old_k, keys], 2)?,
                ops::concatenate(&[old_v, values], 2)?,
            ),
            _ => (keys, values),
        };
        self.offset += added;
        self.keys = Some(keys.clone());
        self.values = Some(values.clone());
        Ok((keys, values))
    }

    /// Keeps only the first `positions` positions.
    fn truncate(&mut self, positions: i32) -> Result<()> {
        if positions >= self.offset {
            return Ok(());
        }
        for array in [&mut self.keys, &mut self.values].into_iter().flatten() {
            *array = array.try_index((.., .., ..positions))?;
        }
        self.offset = positions;
        Ok(())
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
    pub fn truncate(&mut self, positions: usize) -> Result<()> {
        let positions = i32::try_from(positions).unwrap_or(i32::MAX);
        self.layers
            .iter_mut()
            .try_for_each(|l| l.truncate(positions))
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
