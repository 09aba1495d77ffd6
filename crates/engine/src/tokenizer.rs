//! The tokenizer (`tokenizer.json`), its special tokens
//! (`tokenizer_config.json`) and the chat template, rendered with minijinja the
//! way Hugging Face's `apply_chat_template` renders it.

use std::path::Path;

use minijinja::{Environment, Error as JinjaError, ErrorKind, Value, context};
use serde::Serialize;
use serde_json::Value as Json;

use crate::error::{EngineError, Result};

/// One chat message as templates expect it (`role`, `content`, and for tool
/// use `tool_calls` / `tool_call_id` / `name`).
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ChatMessage {
    pub role: String,
    pub content: Json,
    #[serde(flatten)]
    pub extra: serde_json::Map<String, Json>,
}

impl ChatMessage {
    /// A plain text message.
    pub fn text(role: &str, content: &str) -> Self {
        ChatMessage {
            role: role.into(),
            content: Json::String(content.into()),
            extra: serde_json::Map::new(),
        }
    }
}

/// What to pass to the chat template besides the messages.
#[derive(Debug, Clone, Default)]
pub struct TemplateOptions {
    pub add_generation_prompt: bool,
    pub tools: Option<Json>,
    pub documents: Option<Json>,
    /// Passed through as `enable_thinking` when set.
    pub enable_thinking: Option<bool>,
}

/// A model's tokenizer with its chat template and end-of-sequence tokens.
#[derive(Debug)]
pub struct Tokenizer {
    inner: tokenizers::Tokenizer,
    chat_template: Option<String>,
    bos_token: Option<String>,
    eos_token: Option<String>,
    eos_ids: Vec<u32>,
}

impl Tokenizer {
    /// Reads `tokenizer.json`, `tokenizer_config.json` (optional),
    /// `chat_template.jinja` (optional, wins over the config's template) and
    /// `generation_config.json` (optional, for extra EOS ids).
    pub fn load(dir: &Path) -> Result<Self> {
        let path = dir.join("tokenizer.json");
        if !path.is_file() {
            return Err(EngineError::file(
                &path,
                "missing: the model folder has no tokenizer",
            ));
        }
        let inner = tokenizers::Tokenizer::from_file(&path)
            .map_err(|e| EngineError::invalid(&path, format!("cannot load the tokenizer: {e}")))?;
        let config =
            read_json_if_present(&dir.join("tokenizer_config.json"))?.unwrap_or(Json::Null);
        let chat_template = match read_text_if_present(&dir.join("chat_template.jinja"))? {
            Some(template) => Some(template),
            None => template_from_config(&config),
        };
        let bos_token = special_token(&config, "bos_token");
        let eos_token = special_token(&config, "eos_token");
        let mut eos_ids: Vec<u32> = eos_token
            .iter()
            .filter_map(|t| inner.token_to_id(t))
            .collect();
        if let Some(generation) = read_json_if_present(&dir.join("generation_config.json"))? {
            for id in ids_of(generation.get("eos_token_id")) {
                if !eos_ids.contains(&id) {
                    eos_ids.push(id);
                }
            }
        }
        Ok(Tokenizer {
            inner,
            chat_template,
            bos_token,
            eos_token,
            eos_ids,
        })
    }

    /// Token ids of `text`; `special` adds the tokenizer's own special tokens
    /// (as `tokenizer.encode(text)` does in mlx-lm for raw prompts).
    pub fn encode(&self, text: &str, special: bool) -> Result<Vec<u32>> {
        self.inner
            .encode(text, special)
            .map(|e| e.get_ids().to_vec())
            .map_err(|e| EngineError::InvalidParameter {
                name: "prompt",
                message: format!("cannot tokenize: {e}"),
            })
    }

    /// Text of `ids`, special tokens included.
    pub fn decode(&self, ids: &[u32]) -> Result<String> {
        self.inner
            .decode(ids, false)
            .map_err(|e| EngineError::Exception(format!("cannot decode tokens: {e}")))
    }

    /// Ids that end generation.
    pub fn eos_ids(&self) -> &[u32] {
        &self.eos_ids
    }

    /// The raw chat template, if the model has one.
    pub fn chat_template(&self) -> Option<&str> {
        self.chat_template.as_deref()
    }

    /// Renders `messages` with the model's chat template.
    pub fn apply_chat_template(
        &self,
        messages: &[ChatMessage],
        options: &TemplateOptions,
    ) -> Result<String> {
        let template = self
            .chat_template
            .as_deref()
            .ok_or_else(|| EngineError::Template("the model has no chat template".into()))?;
        render_chat_template(
            template,
            messages,
            options,
            self.bos_token.as_deref(),
            self.eos_token.as_deref(),
        )
    }

    /// The chat prompt's token ids. The template writes any special tokens
    /// itself, so none are added (as `apply_chat_template(tokenize=True)`).
    pub fn encode_chat(
        &self,
        messages: &[ChatMessage],
        options: &TemplateOptions,
    ) -> Result<Vec<u32>> {
        self.encode(&self.apply_chat_template(messages, options)?, false)
    }
}

/// Renders a Hugging Face chat template.
pub fn render_chat_template(
    template: &str,
    messages: &[ChatMessage],
    options: &TemplateOptions,
    bos_token: Option<&str>,
    eos_token: Option<&str>,
) -> Result<String> {
    let mut env = Environment::new();
    env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
    env.add_function(
        "raise_exception",
        |message: String| -> Result<Value, JinjaError> {
            Err(JinjaError::new(ErrorKind::InvalidOperation, message))
        },
    );
    env.add_function("strftime_now", |format: String| {
        chrono::Local::now().format(&format).to_string()
    });
    let template_error = |e: JinjaError| {
        let mut message = e.to_string();
        if let Some(detail) = e.detail() {
            message = format!("{message}: {detail}");
        }
        EngineError::Template(message)
    };
    env.add_template("chat", template).map_err(template_error)?;
    let rendered = env
        .get_template("chat")
        .and_then(|t| {
            t.render(context! {
                messages => messages,
                add_generation_prompt => options.add_generation_prompt,
                tools => options.tools,
                documents => options.documents,
                enable_thinking => options.enable_thinking,
                bos_token => bos_token.unwrap_or_default(),
                eos_token => eos_token.unwrap_or_default(),
            })
        })
        .map_err(template_error)?;
    Ok(rendered)
}

fn read_text_if_present(path: &Path) -> Result<Option<String>> {
    match std::fs::read_to_string(path) {
        Ok(text) => Ok(Some(text)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(EngineError::file(path, format!("cannot read: {e}"))),
    }
}

fn read_json_if_present(path: &Path) -> Result<Option<Json>> {
    let Some(text) = read_text_if_present(path)? else {
        return Ok(None);
    };
    serde_json::from_str(&text)
        .map(Some)
        .map_err(|e| EngineError::invalid(path, format!("not valid JSON: {e}")))
}

/// The template from `tokenizer_config.json`: a string, or a list of named
/// templates of which "default" is the chat one.
fn template_from_config(config: &Json) -> Option<String> {
    match config.get("chat_template")? {
        Json::String(template) => Some(template.clone()),
        Json::Array(named) => named
            .iter()
            .find(|t| t.get("name").and_then(Json::as_str) == Some("default"))
            .and_then(|t| t.get("template")?.as_str())
            .map(str::to_string),
        _ => None,
    }
}

/// A special token, written either as a string or as `{ "content": ... }`.
fn special_token(config: &Json, key: &str) -> Option<String> {
    match config.get(key)? {
        Json::String(token) => Some(token.clone()),
        Json::Object(token) => token.get("content")?.as_str().map(str::to_string),
        _ => None,
    }
}

fn ids_of(value: Option<&Json>) -> Vec<u32> {
    match value {
        Some(Json::Number(n)) => n.as_u64().map(|id| vec![id as u32]).unwrap_or_default(),
        Some(Json::Array(ids)) => ids
            .iter()
            .filter_map(Json::as_u64)
            .map(|id| id as u32)
            .collect(),
        _ => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CHATML: &str = "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}";

    fn render(template: &str, options: TemplateOptions) -> Result<String> {
        render_chat_template(
            template,
            &[ChatMessage::text("user", "Hi")],
            &options,
            Some("<s>"),
            Some("</s>"),
        )
    }

    #[test]
    fn chatml_renders_with_the_generation_prompt() {
        let options = TemplateOptions {
            add_generation_prompt: true,
            ..Default::default()
        };
        assert_eq!(
            render(CHATML, options).expect("render"),
            "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"
        );
    }

    #[test]
    fn templates_see_tools_thinking_json_and_python_methods() {
        // Jinja in Python prints booleans as True/False; so must we.
        let template = "{{ bos_token }}{{ tools | tojson }}|{{ enable_thinking }}|{{ messages[0].content.strip().upper() }}|{{ strftime_now('%Y') | length }}";
        let options = TemplateOptions {
            tools: Some(serde_json::json!([{"type": "function"}])),
            enable_thinking: Some(false),
            ..Default::default()
        };
        assert_eq!(
            render(template, options).expect("render"),
            r#"<s>[{"type":"function"}]|False|HI|4"#
        );
    }

    #[test]
    fn raise_exception_and_syntax_errors_are_template_errors() {
        let err = render(
            "{{ raise_exception('only user and assistant roles') }}",
            TemplateOptions::default(),
        )
        .expect_err("raises");
        assert!(
            err.to_string().contains("only user and assistant roles"),
            "{err}"
        );
        let err =
            render("{% for m in messages %}", TemplateOptions::default()).expect_err("syntax");
        assert!(matches!(err, EngineError::Template(_)), "{err}");
    }
}
