//! Reuse of computed prompts across requests to one model. Agents and chats
//! resend the whole conversation every turn; the keys and values of the part
//! seen before are kept, so only the new tokens are prefilled.
//!
//! Entries are whole sequence caches keyed by their tokens. A request takes
//! the entry sharing the longest prefix with its prompt (trimmed to that
//! prefix; for a hybrid model, to the longest shared prefix its recurrent
//! layers kept a checkpoint of) and gives its cache back, extended, when it
//! ends. The least recently
//! used entries are dropped to stay within the memory budget.

use crate::cache::KvCache;
use crate::error::Result;

#[derive(Debug)]
struct Entry {
    tokens: Vec<u32>,
    cache: KvCache,
    last_used: u64,
}

/// Recent sequence caches of one model, within a memory budget.
#[derive(Debug)]
pub struct PromptCache {
    entries: Vec<Entry>,
    budget_bytes: usize,
    clock: u64,
}

impl PromptCache {
    /// An empty store that holds at most `budget_bytes` of keys and values.
    pub fn new(budget_bytes: usize) -> Self {
        PromptCache {
            entries: Vec::new(),
            budget_bytes,
            clock: 0,
        }
    }

    /// Memory held by the stored caches.
    pub fn bytes(&self) -> usize {
        self.entries.iter().map(|e| e.cache.nbytes()).sum()
    }

    /// Number of stored sequences.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Removes and returns the cache sharing the longest prefix with `prompt`,
    /// trimmed to that prefix, with the prefix's length. At least the prompt's
    /// last token is always left to compute, since its logits are needed.
    pub fn take(&mut self, prompt: &[u32]) -> Result<Option<(KvCache, usize)>> {
        let best = self
            .entries
            .iter()
            .enumerate()
            .map(|(i, e)| {
                let shared = common_prefix(&e.tokens, prompt).min(prompt.len().saturating_sub(1));
                // A recurrent state comes back only to its checkpoints.
                (i, e.cache.restorable(shared))
            })
            .filter(|&(_, shared)| shared > 0)
            .max_by_key(|&(_, shared)| shared);
        let Some((index, shared)) = best else {
            return Ok(None);
        };
        if shared < self.entries[index].tokens.len() {
            // The prompt leaves this sequence part-way (another conversation
            // with the same system prompt, or an edited turn): copy the shared
            // part and keep the sequence for the request that continues it.
            self.clock += 1;
            let entry = &mut self.entries[index];
            entry.last_used = self.clock;
            return Ok(Some((entry.cache.copy_prefix(shared)?, shared)));
        }
        // The prompt continues the whole sequence: move it out, no copy.
        let entry = self.entries.swap_remove(index);
        Ok(Some((entry.cache, shared)))
    }

    /// Stores the cache of a finished sequence; `tokens` are the positions it holds.
    pub fn put(&mut self, tokens: Vec<u32>, cache: KvCache) {
        if tokens.is_empty() {
            return;
        }
        self.clock += 1;
        // A stored sequence that the new one extends is superseded by it.
        self.entries
            .retain(|e| common_prefix(&e.tokens, &tokens) < e.tokens.len());
        self.entries.push(Entry {
            tokens,
            cache,
            last_used: self.clock,
        });
        while self.bytes() > self.budget_bytes {
            let Some(oldest) = self
                .entries
                .iter()
                .enumerate()
                .min_by_key(|(_, e)| e.last_used)
                .map(|(i, _)| i)
            else {
                break;
            };
            self.entries.swap_remove(oldest);
        }
    }
}

fn common_prefix(a: &[u32], b: &[u32]) -> usize {
    a.iter().zip(b).take_while(|(x, y)| x == y).count()
}
