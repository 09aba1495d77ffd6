//! The tokenizer (`tokenizer.json`), its special tokens
//! (`tokenizer_config.json`) and the chat template, rendered with minijinja the
//! way Hugging Face's `apply_chat_template` renders it: the same whitespace
//! control (`trim_blocks`, `lstrip_blocks`), the same `tojson` (Python's
//! `json.dumps`, in [`pyjson`]) and the same helpers. The template is compiled
//! once, when the tokenizer loads.

mod pyjson;

use std::path::Path;

use minijinja::{Environment, Error as JinjaError, ErrorKind, Value, context};
use orchard_template_facts::{ChatTemplates, TemplateFacts};
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
    /// The template sources, as `transformers` picks them from the files.
    templates: ChatTemplates,
    /// What they say about tools and thinking (one reading for the whole app).
    facts: TemplateFacts,
    /// `templates.default` compiled, or why it does not compile.
    default_template: Option<Compiled>,
    /// `templates.tool_use` compiled, when the model has one.
    tool_use_template: Option<Compiled>,
    bos_token: Option<String>,
    eos_token: Option<String>,
    eos_ids: Vec<u32>,
    /// Structured output's view of the vocabulary, built on first use.
    grammars: std::sync::OnceLock<std::result::Result<crate::constrain::Grammars, String>>,
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
        let templates = ChatTemplates::from_files(
            read_text_if_present(&dir.join("chat_template.jinja"))?,
            Some(&config),
        );
        // A template that does not compile fails the chat requests, not the
        // load: the model still serves plain completions.
        let compile = |source: &Option<String>| {
            source
                .as_deref()
                .map(|source| ChatTemplate::compile(source).map_err(|e| e.to_string()))
        };
        let default_template = compile(&templates.default);
        let tool_use_template = compile(&templates.tool_use);
        let facts = templates.facts();
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
            templates,
            facts,
            default_template,
            tool_use_template,
            bos_token,
            eos_token,
            eos_ids,
            grammars: std::sync::OnceLock::new(),
        })
    }

    /// Structured output's grammars for this vocabulary (the token trie is
    /// built on the first call, a few hundred milliseconds for a large one).
    pub fn grammars(&self) -> Result<&crate::constrain::Grammars> {
        let built = self.grammars.get_or_init(|| {
            let eos = self.eos_ids.first().copied().unwrap_or(0);
            crate::constrain::Grammars::new(&self.inner, eos).map_err(|e| e.to_string())
        });
        built
            .as_ref()
            .map_err(|message| EngineError::Exception(message.clone()))
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

    /// Token ids run from 0 to this, added tokens included.
    /// The text of token `id` as the vocabulary writes it (`<start_of_image>`).
    pub fn token_text(&self, id: u32) -> Option<String> {
        self.inner.id_to_token(id)
    }

    pub fn vocab_size(&self) -> usize {
        self.inner.get_vocab_size(true)
    }

    /// Ids that end generation.
    pub fn eos_ids(&self) -> &[u32] {
        &self.eos_ids
    }

    /// The raw chat template, if the model has one (the `default` one when
    /// the model names several).
    pub fn chat_template(&self) -> Option<&str> {
        self.templates.default.as_deref()
    }

    /// What the chat template says about tools and thinking.
    pub fn template_facts(&self) -> &TemplateFacts {
        &self.facts
    }

    /// Renders `messages` with the model's chat template (its `tool_use`
    /// template when the request has tools and the model has one, as
    /// `transformers` chooses).
    pub fn apply_chat_template(
        &self,
        messages: &[ChatMessage],
        options: &TemplateOptions,
    ) -> Result<String> {
        let compiled = match (&self.tool_use_template, options.tools.is_some()) {
            (Some(tool_use), true) => Some(tool_use),
            _ => self.default_template.as_ref(),
        };
        let template = compiled
            .ok_or_else(|| EngineError::Template("the model has no chat template".into()))?
            .as_ref()
            .map_err(|message| EngineError::Template(message.clone()))?;
        template.render(
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

/// A compiled template, or the compile error's message.
type Compiled = std::result::Result<ChatTemplate, String>;

/// A chat template compiled into its own minijinja environment, set up as
/// `transformers` sets up Jinja for `apply_chat_template`.
#[derive(Debug)]
pub struct ChatTemplate {
    env: Environment<'static>,
}

impl ChatTemplate {
    /// Compiles `source`; a syntax error is an [`EngineError::Template`].
    pub fn compile(source: &str) -> Result<ChatTemplate> {
        let mut env = Environment::new();
        // transformers' ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True).
        env.set_trim_blocks(true);
        env.set_lstrip_blocks(true);
        env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
        env.add_filter("tojson", pyjson::tojson);
        env.add_function(
            "raise_exception",
            |message: String| -> std::result::Result<Value, JinjaError> {
                Err(JinjaError::new(ErrorKind::InvalidOperation, message))
            },
        );
        env.add_function("strftime_now", |format: String| {
            chrono::Local::now().format(&format).to_string()
        });
        env.add_template_owned("chat", source.to_string())
            .map_err(template_error)?;
        Ok(ChatTemplate { env })
    }

    /// Renders `messages` with the template.
    pub fn render(
        &self,
        messages: &[ChatMessage],
        options: &TemplateOptions,
        bos_token: Option<&str>,
        eos_token: Option<&str>,
    ) -> Result<String> {
        // transformers drops a message's keys whose value is None (OpenAI's
        // `content: null`), so templates see them missing, not None.
        let messages: Vec<serde_json::Map<String, Json>> = messages
            .iter()
            .map(|message| match serde_json::to_value(message) {
                Ok(Json::Object(mut fields)) => {
                    fields.retain(|_, value| !value.is_null());
                    fields
                }
                _ => serde_json::Map::new(),
            })
            .collect();
        self.env
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
            .map_err(template_error)
    }
}

/// A template error with minijinja's detail (the template's own message for
/// `raise_exception`).
fn template_error(e: JinjaError) -> EngineError {
    let mut message = e.to_string();
    if let Some(detail) = e.detail() {
        message = format!("{message}: {detail}");
    }
    EngineError::Template(message)
}

/// Renders a Hugging Face chat template once (compiles it each call; a
/// loaded [`Tokenizer`] keeps its template compiled).
pub fn render_chat_template(
    template: &str,
    messages: &[ChatMessage],
    options: &TemplateOptions,
    bos_token: Option<&str>,
    eos_token: Option<&str>,
) -> Result<String> {
    ChatTemplate::compile(template)?.render(messages, options, bos_token, eos_token)
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
    fn templates_see_tools_thinking_and_python_methods() {
        // Jinja in Python prints booleans as True/False; so must we.
        let template = "{{ bos_token }}{{ tools[0].type }}|{{ enable_thinking }}|{{ messages[0].content.strip().upper() }}|{{ strftime_now('%Y') | length }}";
        let options = TemplateOptions {
            tools: Some(serde_json::json!([{"type": "function"}])),
            enable_thinking: Some(false),
            ..Default::default()
        };
        assert_eq!(
            render(template, options).expect("render"),
            "<s>function|False|HI|4"
        );
    }

    fn tools_json(template: &str, tools: Json) -> Result<String> {
        let options = TemplateOptions {
            tools: Some(tools),
            ..Default::default()
        };
        render(template, options)
    }

    #[test]
    fn tojson_writes_what_python_json_dumps_writes() {
        // What transformers' `tojson` (json.dumps(ensure_ascii=False)) gives:
        // spaced separators, key order kept, non-ASCII and <>&' kept, 1.0 a float.
        let tools = serde_json::json!([{"type": "function", "function": {
            "name": "get_weather", "description": "Météo <ville> & 'pays'\n",
            "parameters": {"zeta": 1.0, "alpha": [1, 2.5, null, true], "big": 1e16, "small": 0.00001, "empty": {}, "none": []}}}]);
        assert_eq!(
            tools_json("{{ tools | tojson }}", tools.clone()).expect("render"),
            r#"[{"type": "function", "function": {"name": "get_weather", "description": "Météo <ville> & 'pays'\n", "parameters": {"zeta": 1.0, "alpha": [1, 2.5, null, true], "big": 1e+16, "small": 1e-05, "empty": {}, "none": []}}}]"#
        );
        assert_eq!(
            tools_json(
                "{{ tools[0].function.parameters | tojson(indent=4) }}",
                tools.clone()
            )
            .expect("render"),
            "{\n    \"zeta\": 1.0,\n    \"alpha\": [\n        1,\n        2.5,\n        null,\n        true\n    ],\n    \"big\": 1e+16,\n    \"small\": 1e-05,\n    \"empty\": {},\n    \"none\": []\n}"
        );
        assert_eq!(
            tools_json(
                "{{ tools[0].function.parameters.alpha | tojson(separators=(',', ':')) }}|{{ tools[0].function | tojson(ensure_ascii=true, sort_keys=true) }}",
                tools
            )
            .expect("render"),
            r#"[1,2.5,null,true]|{"description": "M\u00e9t\u00e9o <ville> & 'pays'\n", "name": "get_weather", "parameters": {"alpha": [1, 2.5, null, true], "big": 1e+16, "empty": {}, "none": [], "small": 1e-05, "zeta": 1.0}}"#
        );
        let err = tools_json("{{ tools | tojson(indent=[]) }}", serde_json::json!([]))
            .expect_err("a list is no indent");
        assert!(err.to_string().contains("indent"), "{err}");
    }

    #[test]
    fn block_tags_trim_their_newline_and_leading_spaces_as_in_transformers() {
        let template = "{% for m in messages %}\n    {% if m.role == 'user' %}\n[{{ m.content }}]\n    {% endif %}\n{% endfor %}";
        assert_eq!(
            render(template, TemplateOptions::default()).expect("render"),
            "[Hi]\n"
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
