//! Orchard's chat prompts against the reference's: for each template, the
//! prompt Orchard renders (text and token ids) must be the one `transformers`'
//! `apply_chat_template` renders (what mlx-lm uses), run in the venv by
//! `scripts/chat_template_reference.py`.
//!
//! Real templates: Qwen3's and Llama 3's, and Gemma 3's; written for these
//! tests in their families' conventions: a Mistral-style and a Gemma-style one
//! with tools (in `tests/templates/`, on the Llama 2 and Gemma 3 tokenizers).
//! Every conversation has tools, assistant tool calls (one with `content:
//! null`) and tool results, passed through the server's conversion and
//! [`ChatFormat::prepare`] as a request would be.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};

use orchard_core::chat::ChatFormat;
use orchard_engine::{ChatMessage, TemplateOptions, Tokenizer};
use serde_json::{Value, json};

fn deps_dir() -> PathBuf {
    PathBuf::from(std::env::var_os("ORCHARD_DEPS_DIR").expect("set by .cargo/config.toml"))
}

/// A folder with `tokenizer.json` and `tokenizer_config.json`: a real one
/// from `make setup`, or one whose config gets `template` as its chat template.
fn tokenizer_dir(name: &str, template: Option<&str>, scratch: &Path) -> PathBuf {
    let real = deps_dir().join("templates").join(name);
    assert!(
        real.join("tokenizer.json").is_file(),
        "{}: run `make setup`",
        real.display()
    );
    let Some(template) = template else {
        return real;
    };
    let dir = scratch.join(format!("{name}-{}", template.len()));
    std::fs::create_dir_all(&dir).expect("mkdir");
    std::fs::copy(real.join("tokenizer.json"), dir.join("tokenizer.json")).expect("copy");
    let text = std::fs::read_to_string(real.join("tokenizer_config.json")).expect("config");
    let mut config: Value = serde_json::from_str(&text).expect("json");
    config["chat_template"] = json!(template);
    std::fs::write(dir.join("tokenizer_config.json"), config.to_string()).expect("write");
    dir
}

fn fixture_template(file: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/templates")
        .join(file);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn tools() -> Vec<Value> {
    vec![
        json!({"type": "function", "function": {
            "name": "get_weather",
            "description": "Current weather in a city. Use it when the user asks about <weather> & 'now'; answers in °C.",
            "parameters": {"type": "object",
                "properties": {
                    "city": {"type": "string", "description": "City name, e.g. Zürich"},
                    "unit": {"type": "string", "enum": ["celsius", "fahrenheit"], "default": "celsius"}},
                "required": ["city"]}}}),
        json!({"type": "function", "function": {
            "name": "get_forecast",
            "description": "Forecast for the next days",
            "parameters": {"type": "object",
                "properties": {
                    "city": {"type": "string"},
                    "days": {"type": "integer", "minimum": 1, "maximum": 7},
                    "threshold": {"type": "number", "default": 1.0}},
                "required": ["city", "days"]}}}),
    ]
}

/// An OpenAI request's messages: a call with `content: null`, two results,
/// a call with text, its result.
fn openai_messages(system: bool) -> Vec<Value> {
    let mut messages = Vec::new();
    if system {
        messages.push(json!({"role": "system", "content": "You are a helpful assistant. Réponds en français si on te parle français."}));
    }
    messages.extend([
        json!({"role": "user", "content": "What's the weather in Paris and in Zürich?"}),
        json!({"role": "assistant", "content": null, "tool_calls": [
            {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\": \"Paris\"}"}},
            {"id": "call_2", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\": \"Zürich\", \"unit\": \"celsius\"}"}}]}),
        json!({"role": "tool", "tool_call_id": "call_1", "content": "{\"temperature\": 21.5, \"sky\": \"sunny\"}"}),
        json!({"role": "tool", "tool_call_id": "call_2", "content": "{\"temperature\": 18.0, \"sky\": \"cloudy\"}"}),
        json!({"role": "assistant", "content": "Paris is sunny. Let me check the forecast.", "tool_calls": [
            {"id": "call_3", "type": "function", "function": {"name": "get_forecast", "arguments": "{\"city\": \"Paris\", \"days\": 3, \"threshold\": 0.5}"}}]}),
        json!({"role": "tool", "tool_call_id": "call_3", "content": "Rain on day 2."}),
    ]);
    messages
}

/// What the server makes of an OpenAI message: text content (`null` is
/// empty), tool calls and the call id kept as they are.
fn server_message(message: &Value, null_as_empty: bool) -> ChatMessage {
    let role = message["role"].as_str().expect("role");
    let content = match &message["content"] {
        Value::Null if null_as_empty => json!(""),
        other => other.clone(),
    };
    let mut chat = ChatMessage {
        role: role.into(),
        content,
        extra: serde_json::Map::new(),
    };
    for key in ["tool_calls", "tool_call_id"] {
        if let Some(value) = message.get(key) {
            chat.extra.insert(key.into(), value.clone());
        }
    }
    chat
}

/// One prompt to render both ways.
struct Case {
    name: String,
    dir: PathBuf,
    messages: Vec<ChatMessage>,
    tools: Option<Value>,
    enable_thinking: Option<bool>,
}

/// The case for `messages` as a request brings them: prepared for the
/// template by the same [`ChatFormat`] the server uses.
fn case(name: &str, dir: &Path, messages: &[Value], null_as_empty: bool) -> Case {
    let tokenizer = load(dir);
    let format = ChatFormat::detect(tokenizer.chat_template());
    let messages = messages
        .iter()
        .map(|m| server_message(m, null_as_empty))
        .collect();
    let (messages, tools) = format.prepare(messages, &tools());
    Case {
        name: name.into(),
        dir: dir.to_path_buf(),
        messages,
        tools,
        enable_thinking: None,
    }
}

/// `transformers`' renderings of the cases, by name.
fn reference(cases: &[Case], scratch: &Path) -> HashMap<String, Value> {
    let request = json!({"cases": cases.iter().map(|c| {
        let mut kwargs = serde_json::Map::new();
        if let Some(thinking) = c.enable_thinking {
            kwargs.insert("enable_thinking".into(), json!(thinking));
        }
        json!({"name": c.name, "tokenizer": c.dir, "messages": c.messages,
               "tools": c.tools, "template_kwargs": kwargs})
    }).collect::<Vec<_>>()});
    let request_path = scratch.join("request.json");
    let out_path = scratch.join("reference.json");
    std::fs::write(&request_path, request.to_string()).expect("write request");
    let output = Command::new(deps_dir().join("venv/bin/python"))
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/chat_template_reference.py"))
        .arg(&request_path)
        .arg(&out_path)
        .output()
        .expect("run chat_template_reference.py (run `make setup`)");
    assert!(
        output.status.success(),
        "chat_template_reference.py: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let text = std::fs::read_to_string(&out_path).expect("reference output");
    serde_json::from_str(&text).expect("reference JSON")
}

/// The tokenizer in `dir`, loaded once per test (Gemma's is 33 MB).
fn load(dir: &Path) -> Arc<Tokenizer> {
    static LOADED: Mutex<Vec<(PathBuf, Arc<Tokenizer>)>> = Mutex::new(Vec::new());
    let mut loaded = LOADED.lock().expect("lock");
    if let Some((_, tokenizer)) = loaded.iter().find(|(d, _)| d == dir) {
        return Arc::clone(tokenizer);
    }
    let tokenizer = Arc::new(Tokenizer::load(dir).expect("tokenizer"));
    loaded.push((dir.to_path_buf(), Arc::clone(&tokenizer)));
    tokenizer
}

/// Orchard's rendering: the prompt text and its token ids.
fn orchard(case: &Case) -> Result<(String, Vec<u32>), String> {
    let tokenizer = load(&case.dir);
    let options = TemplateOptions {
        add_generation_prompt: true,
        tools: case.tools.clone(),
        documents: None,
        enable_thinking: case.enable_thinking,
    };
    let text = tokenizer
        .apply_chat_template(&case.messages, &options)
        .map_err(|e| e.to_string())?;
    let tokens = tokenizer
        .encode_chat(&case.messages, &options)
        .map_err(|e| e.to_string())?;
    Ok((text, tokens))
}

/// Every case renders to the reference's text and tokens, or fails where
/// the reference fails. Returns the prompt sizes, for the log.
fn assert_same_prompts(cases: &[Case], scratch: &Path) -> Vec<(String, usize)> {
    let reference = reference(cases, scratch);
    let mut sizes = Vec::new();
    for case in cases {
        let expected = &reference[&case.name];
        match (orchard(case), expected.get("error")) {
            (Ok((text, tokens)), None) => {
                let expected_text = expected["text"].as_str().expect("text");
                let expected_tokens: Vec<u32> =
                    serde_json::from_value(expected["tokens"].clone()).expect("tokens");
                eprintln!(
                    "{}: Orchard {} prompt tokens, transformers {}",
                    case.name,
                    tokens.len(),
                    expected_tokens.len()
                );
                assert_eq!(
                    text, expected_text,
                    "{}: Orchard's prompt differs from transformers'",
                    case.name
                );
                assert_eq!(
                    tokens.len(),
                    expected_tokens.len(),
                    "{}: token count",
                    case.name
                );
                assert_eq!(tokens, expected_tokens, "{}: token ids", case.name);
                sizes.push((case.name.clone(), tokens.len()));
            }
            (Err(error), Some(reference_error)) => {
                // The template's own message (raise_exception) comes through.
                let reference_error = reference_error.as_str().unwrap_or_default();
                if let Some(message) = reference_error.strip_prefix("TemplateError: ") {
                    assert!(
                        error.contains(message),
                        "{}: {error} / {reference_error}",
                        case.name
                    );
                }
                eprintln!("{}: both refuse: {error} / {reference_error}", case.name);
            }
            (Ok((text, _)), Some(reference_error)) => panic!(
                "{}: transformers refuses ({reference_error}) but Orchard rendered {text:?}",
                case.name
            ),
            (Err(error), None) => panic!(
                "{}: transformers renders {:?} but Orchard fails: {error}",
                case.name, expected["text"]
            ),
        }
    }
    eprintln!("prompt tokens: {sizes:?}");
    sizes
}

#[test]
fn qwen3_prompts_with_tools_calls_and_results_match_transformers() {
    let scratch = tempfile::tempdir().expect("tempdir");
    let dir = tokenizer_dir("qwen3", None, scratch.path());
    let mut thinking = case("qwen3_thinking", &dir, &openai_messages(true), true);
    thinking.enable_thinking = Some(true);
    let mut no_thinking = case("qwen3_no_thinking", &dir, &openai_messages(false), true);
    no_thinking.enable_thinking = Some(false);
    // A plain question with tools: the prompt of issue 9 (186 tokens compact, 222 spaced).
    let question = case(
        "qwen3_question",
        &dir,
        &[json!({"role": "user", "content": "What's the weather in Paris?"})],
        true,
    );
    // `content: null` reaching the template as None (Qwen3's template
    // cannot take it: both must refuse, neither may render something else).
    let raw_null = case("qwen3_raw_null", &dir, &openai_messages(false), false);
    let sizes = assert_same_prompts(&[thinking, no_thinking, question, raw_null], scratch.path());
    assert_eq!(sizes.len(), 3, "{sizes:?}");
}

#[test]
fn llama3_prompts_with_tools_calls_and_results_match_transformers() {
    let scratch = tempfile::tempdir().expect("tempdir");
    let dir = tokenizer_dir("llama3", None, scratch.path());
    let cases = [
        case("llama3_system", &dir, &openai_messages(true), true),
        case("llama3", &dir, &openai_messages(false), true),
    ];
    assert_eq!(assert_same_prompts(&cases, scratch.path()).len(), 2);
}

#[test]
fn mistral_style_prompts_match_transformers() {
    let scratch = tempfile::tempdir().expect("tempdir");
    let template = fixture_template("mistral_style.jinja");
    let dir = tokenizer_dir("llama2", Some(&template), scratch.path());
    let format = ChatFormat::detect(Some(&template));
    assert!(format.template_has_tools);
    assert_eq!(format.tool_syntax, orchard_core::chat::ToolSyntax::Mistral);
    let cases = [
        case("mistral_system", &dir, &openai_messages(true), true),
        case("mistral", &dir, &openai_messages(false), true),
        case("mistral_raw_null", &dir, &openai_messages(false), false),
    ];
    // Without the server's conversion, `content: null` never reaches the
    // template (transformers drops None keys): the same prompt.
    assert_eq!(assert_same_prompts(&cases, scratch.path()).len(), 3);
}

#[test]
fn gemma_prompts_match_transformers() {
    let scratch = tempfile::tempdir().expect("tempdir");
    // Gemma-style with tools: tojson(indent=4), alternating turns.
    let template = fixture_template("gemma_style.jinja");
    let styled = tokenizer_dir("gemma3", Some(&template), scratch.path());
    // Gemma 3's own template has no tools (Orchard describes them) and refuses
    // a tool turn, since roles must alternate: both must refuse it.
    let real = tokenizer_dir("gemma3", None, scratch.path());
    let mut no_results = openai_messages(true);
    no_results.truncate(3);
    no_results.push(json!({"role": "user", "content": "Thanks. And tomorrow?"}));
    let cases = [
        case("gemma_style_system", &styled, &openai_messages(true), true),
        case("gemma_style", &styled, &openai_messages(false), true),
        case(
            "gemma_style_raw_null",
            &styled,
            &openai_messages(false),
            false,
        ),
        case("gemma3_calls", &real, &no_results, true),
        case("gemma3_results", &real, &openai_messages(true), true),
    ];
    // The styled template refuses a missing content (as None is dropped)
    // and Gemma 3's refuses the tool turn: rendered, the other three.
    assert_eq!(assert_same_prompts(&cases, scratch.path()).len(), 3);
}
