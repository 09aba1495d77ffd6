//! Profiles: a named way to serve a model, as Ollama's Modelfiles are. A
//! profile's name is a model name on the port: a request for it runs the
//! profile's model with the profile's sampling defaults (where the request
//! sets none) and its system prompt (where the request has none), within its
//! context length. "Keep loaded" exempts the model from eviction and the
//! idle timeout; an idle time-to-live of its own replaces the setting's.

use serde::{Deserialize, Serialize};
use ts_rs::TS;

/// A profile as stored and shown.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, TS)]
pub struct Profile {
    /// The model name clients use for it; unique, and not a library model's.
    pub name: String,
    /// The library model it serves.
    pub model: String,
    pub description: String,
    /// Used when a request brings no system prompt of its own; empty for none.
    pub system_prompt: String,
    pub temperature: Option<f32>,
    pub top_p: Option<f32>,
    pub top_k: Option<u32>,
    pub min_p: Option<f32>,
    pub repetition_penalty: Option<f32>,
    /// Used when a request does not say how many tokens it wants.
    pub max_tokens: Option<u32>,
    /// Prompts longer than this are refused (the model's own limit applies too).
    pub context_length: Option<u32>,
    /// Unload the model after this long idle, instead of the setting's.
    pub idle_ttl_minutes: Option<u64>,
    /// Never evict or time out the model.
    pub keep_loaded: bool,
}

impl Profile {
    /// Checks the fields; the message names the one at fault.
    pub fn validate(&self) -> Result<(), String> {
        let name = self.name.trim();
        if name.is_empty() || name.chars().count() > 64 {
            return Err("name: a profile's name has 1 to 64 characters".into());
        }
        if name.contains('/') {
            return Err(
                "name: a profile's name has no '/', so it never looks like a Hugging Face repo"
                    .into(),
            );
        }
        if self.model.trim().is_empty() {
            return Err("model: choose the library model this profile serves".into());
        }
        let range = |field: &str, value: Option<f32>, low: f32, high: f32| match value {
            Some(v) if !(low..=high).contains(&v) || v.is_nan() => Err(format!(
                "{field}: must be between {low} and {high} (or empty for the request's or the model's default)"
            )),
            _ => Ok(()),
        };
        range("temperature", self.temperature, 0.0, 2.0)?;
        range("top_p", self.top_p, 0.0, 1.0)?;
        range("min_p", self.min_p, 0.0, 1.0)?;
        // As the sampler takes them: top_p in (0, 1], min_p in [0, 1).
        if self.top_p == Some(0.0) {
            return Err("top_p: must be above 0 (1 keeps every token)".into());
        }
        if self.min_p == Some(1.0) {
            return Err("min_p: must be below 1 (0 turns it off)".into());
        }
        range("repetition_penalty", self.repetition_penalty, 0.5, 2.0)?;
        if self.max_tokens == Some(0) {
            return Err("max_tokens: at least 1 (or empty for no limit)".into());
        }
        if self.context_length.is_some_and(|c| c < 16) {
            return Err("context_length: at least 16 tokens (or empty for the model's)".into());
        }
        if self
            .idle_ttl_minutes
            .is_some_and(|m| m > orchard_store::MAX_IDLE_TTL_MINUTES)
        {
            return Err("idle_ttl_minutes: at most 525600 (a year)".into());
        }
        Ok(())
    }

    /// The system prompt, when it has one.
    pub fn system(&self) -> Option<&str> {
        Some(self.system_prompt.trim()).filter(|s| !s.is_empty())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn profile() -> Profile {
        Profile {
            name: "coder".into(),
            model: "m".into(),
            description: String::new(),
            system_prompt: String::new(),
            temperature: None,
            top_p: None,
            top_k: None,
            min_p: None,
            repetition_penalty: None,
            max_tokens: None,
            context_length: None,
            idle_ttl_minutes: None,
            keep_loaded: false,
        }
    }

    #[test]
    fn a_profile_takes_only_values_the_sampler_takes() {
        assert!(profile().validate().is_ok());
        for bad in [
            Profile {
                top_p: Some(0.0),
                ..profile()
            },
            Profile {
                min_p: Some(1.0),
                ..profile()
            },
            Profile {
                temperature: Some(2.5),
                ..profile()
            },
            Profile {
                max_tokens: Some(0),
                ..profile()
            },
            Profile {
                name: "org/name".into(),
                ..profile()
            },
        ] {
            assert!(bad.validate().is_err(), "{bad:?}");
        }
        assert!(
            Profile {
                top_p: Some(1.0),
                min_p: Some(0.0),
                ..profile()
            }
            .validate()
            .is_ok()
        );
    }
}
