//! Structured output: a grammar (a JSON schema) compiled with llguidance for
//! the model's tokenizer, and per sequence a [`Constraint`] that says, before
//! each token, which tokens keep the output inside the grammar.
//!
//! The batch adds each constrained row's mask to its logits on the device
//! (0 for an allowed token, -inf otherwise) before sampling. A constrained
//! sequence is sampled every step rather than one step ahead, since its next
//! mask depends on the token it just sampled.

use std::fmt;
use std::sync::Arc;

use llguidance::api::TopLevelGrammar;
use llguidance::toktrie::{TokEnv, TokRxInfo, TokTrie, TokenId, TokenizerEnv};
use llguidance::{Matcher, ParserFactory};
use serde_json::Value;

use crate::error::{EngineError, Result};

/// What a constraint does once its grammar is complete.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnComplete {
    /// Only end-of-sequence may follow: the answer is the grammar's text.
    End,
    /// The constraint lets go and the model writes on freely (a forced tool
    /// call's arguments, after which the call's closing comes).
    Release,
}

/// Grammars for one tokenizer: the token trie llguidance walks, built once.
pub struct Grammars {
    factory: ParserFactory,
    vocab: usize,
}

impl fmt::Debug for Grammars {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Grammars")
            .field("vocab", &self.vocab)
            .finish()
    }
}

/// The tokenizer as llguidance sees it: the trie of every token's bytes, and
/// the real tokenizer for the literal strings of a grammar.
struct Env {
    trie: TokTrie,
    tokenizer: tokenizers::Tokenizer,
}

impl TokenizerEnv for Env {
    fn tok_trie(&self) -> &TokTrie {
        &self.trie
    }

    fn tokenize_bytes(&self, s: &[u8]) -> Vec<TokenId> {
        match std::str::from_utf8(s) {
            Ok(text) => match self.tokenizer.encode_fast(text, false) {
                Ok(encoding) => encoding.get_ids().to_vec(),
                Err(_) => self.trie.greedy_tokenize(s),
            },
            Err(_) => self.trie.greedy_tokenize(s),
        }
    }
}

impl Grammars {
    /// Reads every token's bytes from `tokenizer`; `eos` is the token that
    /// ends an answer.
    pub fn new(tokenizer: &tokenizers::Tokenizer, eos: u32) -> Result<Grammars> {
        let fail = |what: &str, e: &dyn fmt::Display| {
            EngineError::Exception(format!("structured output: {what}: {e}"))
        };
        let json = tokenizer
            .to_string(false)
            .map_err(|e| fail("serializing the tokenizer", &e))?;
        let json: Value =
            serde_json::from_str(&json).map_err(|e| fail("reading the tokenizer", &e))?;
        let words = llguidance::token_bytes_from_tokenizer_json(&json)
            .map_err(|e| fail("reading the tokens' bytes", &e))?;
        let vocab = words.len();
        let info = TokRxInfo::new(vocab as u32, eos);
        let trie = TokTrie::from(&info, &words);
        let env: TokEnv = Arc::new(Env {
            trie,
            tokenizer: tokenizer.clone(),
        });
        let mut factory =
            ParserFactory::new_simple(&env).map_err(|e| fail("building the parser", &e))?;
        factory.quiet();
        Ok(Grammars { factory, vocab })
    }

    /// A constraint to answers that follow `schema`. A schema llguidance
    /// cannot compile (an unsupported keyword, a bad `$ref`) is refused with
    /// its reason.
    /// The JSON is written with single spaces after `,` and `:` and no other
    /// whitespace (unless the schema's `x-guidance` says otherwise): free
    /// whitespace lets a small model loop on newlines until its token limit.
    pub fn json_schema(&self, schema: &Value, on_complete: OnComplete) -> Result<Constraint> {
        let mut schema = schema.clone();
        if let Value::Object(object) = &mut schema
            && !object.contains_key("x-guidance")
        {
            object.insert(
                "x-guidance".into(),
                serde_json::json!({
                    "whitespace_flexible": false,
                    "item_separator": ", ",
                    "key_separator": ": ",
                }),
            );
        }
        let grammar = TopLevelGrammar::from_json_schema(schema);
        let parser =
            self.factory
                .create_parser(grammar)
                .map_err(|e| EngineError::InvalidParameter {
                    name: "json_schema",
                    message: format!("the JSON schema cannot be used for structured output: {e}"),
                })?;
        let matcher = Matcher::new(Ok(parser));
        if let Some(error) = matcher.get_error() {
            return Err(EngineError::InvalidParameter {
                name: "json_schema",
                message: format!("the JSON schema cannot be used for structured output: {error}"),
            });
        }
        Ok(Constraint {
            matcher,
            on_complete,
            released: false,
            failure: None,
            vocab: self.vocab,
        })
    }
}

/// One sequence's place in its grammar.
#[derive(Clone)]
pub struct Constraint {
    matcher: Matcher,
    on_complete: OnComplete,
    released: bool,
    failure: Option<String>,
    vocab: usize,
}

impl fmt::Debug for Constraint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Constraint")
            .field("on_complete", &self.on_complete)
            .field("released", &self.released)
            .field("failure", &self.failure)
            .finish()
    }
}

impl Constraint {
    /// The next token's bias over `width` logits: 0 where the grammar allows
    /// the token, -inf elsewhere (and past the tokenizer's vocabulary). None
    /// once the constraint has let go.
    ///
    /// A parser that fails (it cannot: every token it sees was allowed by
    /// its own mask) lets go rather than fail the step, which would end
    /// every sequence in the batch; [`Constraint::failure`] keeps why.
    pub fn bias(&mut self, width: usize) -> Option<Vec<f32>> {
        if self.released {
            return None;
        }
        let mask = match self.matcher.compute_mask_or_eos() {
            Ok(mask) => mask,
            Err(error) => {
                self.let_go(&error);
                return None;
            }
        };
        // A forced call's arguments are complete once the grammar could end.
        if self.on_complete == OnComplete::Release
            && (self.matcher.is_stopped() || self.matcher.is_accepting().unwrap_or(false))
        {
            self.released = true;
            return None;
        }
        let mut bias = vec![f32::NEG_INFINITY; width];
        mask.iter_set_entries(|token| {
            if token < width.min(self.vocab) {
                bias[token] = 0.0;
            }
        });
        Some(bias)
    }

    /// Advances past `token`, sampled (or forced) next. A token the
    /// grammar refuses (only a forced one can be) makes the constraint let go.
    pub fn commit(&mut self, token: u32) {
        if self.released || self.matcher.is_stopped() {
            return;
        }
        if let Err(error) = self.matcher.consume_token(token) {
            self.let_go(&error);
        }
    }

    /// Why the constraint let go before its grammar was complete, if it did.
    pub fn failure(&self) -> Option<&str> {
        self.failure.as_deref()
    }

    fn let_go(&mut self, error: &dyn fmt::Display) {
        self.released = true;
        self.failure = Some(format!("structured output stopped: {error}"));
    }
}
