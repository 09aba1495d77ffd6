//! What a chat template tells us about a model, read once at load time, and
//! how a request's tools and tool messages are put into the template's terms.

use orchard_engine::ChatMessage;
use serde_json::{Value, json};

use super::parser::OutputParser;

use orchard_template_facts::TemplateFacts;
/// How a model writes tool calls; read from the template by the crate that
/// the engine and the Library's badges use too.
pub use orchard_template_facts::ToolSyntax;

/// Which tool the request lets or makes the model call.
#[derive(Debug, Clone, Default, PartialEq)]
pub enum ToolChoice {
    /// The model decides.
    #[default]
    Auto,
    /// Tools are not offered.
    None,
    /// The model must call some tool.
    Required,
    /// The model must call this one.
    Function(String),
}

/// A model's chat conventions, read from its chat template.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct ChatFormat {
    /// How tool calls appear in the output.
    pub tool_syntax: ToolSyntax,
    /// Whether the template renders `tools` itself. When it does not, Orchard
    /// describes the tools in the system message and asks for `<tool_call>`.
    pub template_has_tools: bool,
    /// Whether the model reasons inside `<think>...</think>`.
    pub thinking: bool,
}

impl ChatFormat {
    /// Reads the conventions from the template's text.
    pub fn detect(template: Option<&str>) -> ChatFormat {
        ChatFormat::from_facts(&template.map(TemplateFacts::read).unwrap_or_default())
    }

    /// The conventions the template's facts imply (the same facts the
    /// engine and the Library read, so the "tools" badge and the server agree).
    pub fn from_facts(facts: &TemplateFacts) -> ChatFormat {
        ChatFormat {
            tool_syntax: facts.tool_syntax,
            template_has_tools: facts.tools,
            thinking: facts.thinking,
        }
    }

    /// The messages and tools to render, adapted to what the template understands.
    /// OpenAI messages carry `tool_calls[].function.arguments` as JSON text;
    /// templates expect an object, so it is parsed here.
    pub fn prepare(
        &self,
        messages: Vec<ChatMessage>,
        tools: &[Value],
    ) -> (Vec<ChatMessage>, Option<Value>) {
        let mut messages: Vec<ChatMessage> = messages
            .into_iter()
            .map(|message| self.prepare_message(message))
            .collect();
        if tools.is_empty() {
            return (messages, None);
        }
        if self.template_has_tools {
            return (messages, Some(Value::Array(tools.to_vec())));
        }
        let instructions = tool_instructions(tools);
        match messages.first_mut() {
            Some(first) if first.role == "system" => {
                let text = first.content.as_str().unwrap_or_default();
                first.content = Value::String(format!("{text}\n\n{instructions}"));
            }
            _ => messages.insert(0, ChatMessage::text("system", &instructions)),
        }
        (messages, None)
    }

    fn prepare_message(&self, mut message: ChatMessage) -> ChatMessage {
        let calls = message.extra.remove("tool_calls");
        let Some(Value::Array(calls)) = calls else {
            return message;
        };
        let calls: Vec<Value> = calls.into_iter().map(call_with_object_arguments).collect();
        if self.template_has_tools {
            message
                .extra
                .insert("tool_calls".into(), Value::Array(calls));
            return message;
        }
        // Write the calls into the text the way the model was asked to write them.
        let mut text = message.content.as_str().unwrap_or_default().to_string();
        for call in &calls {
            let function = call.get("function").unwrap_or(call);
            let body =
                json!({"name": function.get("name"), "arguments": function.get("arguments")});
            if !text.is_empty() {
                text.push('\n');
            }
            text.push_str(&format!("<tool_call>\n{body}\n</tool_call>"));
        }
        message.content = Value::String(text);
        message
    }

    /// Text added after the rendered prompt to make the model call a tool, and
    /// the parser for the output (primed with that text).
    ///
    /// For a named function, the opening also starts its arguments with the
    /// first required parameter's name, so even a small model writes the value
    /// rather than echoing the schema.
    pub fn start_output(
        &self,
        prompt: &str,
        tools: &[Value],
        choice: &ToolChoice,
    ) -> (String, OutputParser) {
        self.start_output_with(prompt, tools, choice, true)
    }

    /// As [`Self::start_output`]; with `open_arguments` false a forced
    /// call's opening ends where its arguments begin, for a caller that
    /// constrains them to the tool's schema from their first brace.
    pub fn start_output_with(
        &self,
        prompt: &str,
        tools: &[Value],
        choice: &ToolChoice,
        open_arguments: bool,
    ) -> (String, OutputParser) {
        let tools_offered = !tools.is_empty();
        let syntax = tools_offered.then_some(self.tool_syntax);
        let harmony = self.tool_syntax == ToolSyntax::Harmony;
        let in_reasoning = !harmony && self.thinking && prompt.trim_end().ends_with("<think>");
        let mut parser = if harmony {
            OutputParser::harmony(tools_offered)
        } else {
            OutputParser::new(syntax, self.thinking, in_reasoning)
        };
        let forced = match (tools_offered, choice) {
            (true, ToolChoice::Function(name)) => Some(name_json(name)),
            (true, ToolChoice::Required) => Some(String::new()),
            _ => None,
        };
        let Some(name) = forced else {
            return (String::new(), parser);
        };
        let arguments = match choice {
            ToolChoice::Function(function) if open_arguments => arguments_opening(tools, function),
            _ => String::new(),
        };
        let opening = match (self.tool_syntax, name.is_empty()) {
            (ToolSyntax::Hermes, true) => "<tool_call>\n{\"name\": \"".to_string(),
            (ToolSyntax::Hermes, false) => {
                format!("<tool_call>\n{{\"name\": {name}, \"arguments\": {arguments}")
            }
            (ToolSyntax::Llama3, true) => "{\"name\": \"".to_string(),
            (ToolSyntax::Llama3, false) => {
                format!("{{\"name\": {name}, \"parameters\": {arguments}")
            }
            (ToolSyntax::Mistral, true) => "[TOOL_CALLS][{\"name\": \"".to_string(),
            (ToolSyntax::Mistral, false) => {
                format!("[TOOL_CALLS][{{\"name\": {name}, \"arguments\": {arguments}")
            }
            (ToolSyntax::Harmony, true) => "<|channel|>commentary to=functions.".to_string(),
            (ToolSyntax::Harmony, false) => {
                let bare = name.trim_matches('"');
                format!(
                    "<|channel|>commentary to=functions.{bare} <|constrain|>json<|message|>{arguments}"
                )
            }
        };
        // A prompt that opened a reasoning block (Qwen3's thinking templates)
        // gets it closed first, as an empty block: the call is the answer.
        let opening = if in_reasoning {
            let newline = if prompt.ends_with('\n') { "" } else { "\n" };
            format!("{newline}</think>\n\n{opening}")
        } else {
            opening
        };
        // The parser sees the opening as output, so the call it starts is read
        // whole; what it gives back now is at most the empty reasoning block.
        let primed = parser.feed(&opening);
        if !(primed.content.trim().is_empty()
            && primed.reasoning.trim().is_empty()
            && primed.tool_calls.is_empty())
        {
            tracing::warn!(?primed, "a forced tool-call opening produced output");
        }
        (opening, parser)
    }
}

/// The start of a named function's arguments: `{"first_required": ` (and the
/// opening quote when that parameter is a string); empty when the schema names
/// no required parameter.
fn arguments_opening(tools: &[Value], function: &str) -> String {
    let parameters = tools
        .iter()
        .filter_map(|t| t.get("function"))
        .find(|f| f.get("name").and_then(Value::as_str) == Some(function))
        .and_then(|f| f.get("parameters"));
    let Some(parameters) = parameters else {
        return String::new();
    };
    let first = parameters
        .get("required")
        .and_then(Value::as_array)
        .and_then(|r| r.first())
        .and_then(Value::as_str);
    let Some(first) = first else {
        return String::new();
    };
    let kind = parameters
        .get("properties")
        .and_then(|p| p.get(first))
        .and_then(|p| p.get("type"))
        .and_then(Value::as_str);
    let quote = if kind == Some("string") { "\"" } else { "" };
    format!("{{{}: {quote}", name_json(first))
}

fn name_json(name: &str) -> String {
    Value::String(name.to_string()).to_string()
}

fn call_with_object_arguments(mut call: Value) -> Value {
    if let Some(function) = call.get_mut("function")
        && let Some(Value::String(text)) = function.get("arguments")
        && let Ok(parsed) = serde_json::from_str::<Value>(text)
    {
        function["arguments"] = parsed;
    }
    call
}

/// The system text that teaches a model without tool support in its template
/// which tools exist and how to call them.
fn tool_instructions(tools: &[Value]) -> String {
    let mut text = String::from(
        "You may call functions to help answer. The functions are listed inside <tools></tools>:\n<tools>\n",
    );
    for tool in tools {
        text.push_str(&tool.get("function").unwrap_or(tool).to_string());
        text.push('\n');
    }
    text.push_str(
        "</tools>\nTo call a function, answer with only a JSON object naming it and giving its arguments, inside <tool_call></tool_call>:\n<tool_call>\n{\"name\": \"function name\", \"arguments\": {\"argument\": \"value\"}}\n</tool_call>",
    );
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_are_read_from_templates() {
        let qwen = "{% if tools %}<tools>{% for tool in tools %}{{ tool | tojson }}{% endfor %}</tools> <tool_call>{% endif %}<think>";
        let format = ChatFormat::detect(Some(qwen));
        assert_eq!(format.tool_syntax, ToolSyntax::Hermes);
        assert!(format.template_has_tools && format.thinking);
        let mistral = "{% if tools %}[AVAILABLE_TOOLS]{{ tools|tojson }}{% endif %}[TOOL_CALLS]";
        assert_eq!(
            ChatFormat::detect(Some(mistral)).tool_syntax,
            ToolSyntax::Mistral
        );
        let llama = "{% if tools %}<|start_header_id|>ipython<|end_header_id|>{% endif %}";
        assert_eq!(
            ChatFormat::detect(Some(llama)).tool_syntax,
            ToolSyntax::Llama3
        );
        let chatml = "{% for m in messages %}<|im_start|>{{ m.role }}{% endfor %}";
        let plain = ChatFormat::detect(Some(chatml));
        assert!(!plain.template_has_tools && !plain.thinking);
        assert_eq!(plain.tool_syntax, ToolSyntax::Hermes);
    }

    #[test]
    fn templates_without_tools_get_instructions_and_calls_as_text() {
        let format = ChatFormat::detect(Some("{{ messages }}"));
        let tool = json!({"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}});
        let mut assistant = ChatMessage::text("assistant", "");
        assistant.extra.insert(
            "tool_calls".into(),
            json!([{"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\": \"Paris\"}"}}]),
        );
        let (messages, tools) = format.prepare(
            vec![ChatMessage::text("user", "Weather?"), assistant],
            &[tool],
        );
        assert!(tools.is_none());
        assert_eq!(messages[0].role, "system");
        assert!(
            messages[0]
                .content
                .as_str()
                .expect("text")
                .contains("\"get_weather\"")
        );
        let call_text = messages[2].content.as_str().expect("text");
        assert!(
            call_text.contains(r#"{"name":"get_weather","arguments":{"city":"Paris"}}"#),
            "{call_text}"
        );
    }

    #[test]
    fn templates_with_tools_get_them_and_object_arguments() {
        let format = ChatFormat::detect(Some("{{ tools }}<tool_call>"));
        let mut assistant = ChatMessage::text("assistant", "");
        assistant.extra.insert(
            "tool_calls".into(),
            json!([{"type": "function", "function": {"name": "f", "arguments": "{\"a\": 1}"}}]),
        );
        let (messages, tools) = format.prepare(vec![assistant], &[json!({"type": "function"})]);
        assert_eq!(tools, Some(json!([{"type": "function"}])));
        assert_eq!(
            messages[0].extra["tool_calls"][0]["function"]["arguments"],
            json!({"a": 1})
        );
    }

    #[test]
    fn a_forced_call_opens_the_output_and_the_parser_reads_it() {
        let format = ChatFormat::detect(Some("{{ messages }}"));
        let tools = [
            json!({"type": "function", "function": {"name": "get_weather", "parameters": {
            "type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}),
        ];
        let (opening, mut parser) = format.start_output(
            "prompt",
            &tools,
            &ToolChoice::Function("get_weather".into()),
        );
        assert_eq!(
            opening,
            "<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \""
        );
        let mut out = parser.feed("Paris\"}}\n</tool_call>");
        let rest = parser.finish();
        out.tool_calls.extend(rest.tool_calls);
        assert_eq!(out.tool_calls.len(), 1);
        assert_eq!(out.tool_calls[0].name, "get_weather");
        assert_eq!(out.tool_calls[0].arguments, r#"{"city":"Paris"}"#);
        let (none, _) = format.start_output("prompt", &tools, &ToolChoice::Auto);
        assert!(none.is_empty());
    }

    #[test]
    fn harmony_answers_are_read_by_channel_and_a_forced_call_opens_one() {
        let format = ChatFormat::detect(Some(
            "{{ tools }}<|start|>assistant<|channel|>final<|message|>",
        ));
        assert_eq!(format.tool_syntax, ToolSyntax::Harmony);
        // Without tools the channels still split reasoning from the answer.
        let (opening, parser) = format.start_output("<|start|>assistant", &[], &ToolChoice::Auto);
        assert!(opening.is_empty());
        let out = parser.parse_all(
            "<|channel|>analysis<|message|>Think.<|end|><|start|>assistant<|channel|>final<|message|>Answer.",
        );
        assert_eq!(
            (out.reasoning.as_str(), out.content.as_str()),
            ("Think.", "Answer.")
        );

        let tools = [
            json!({"type": "function", "function": {"name": "get_weather", "parameters": {
            "type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}),
        ];
        let (opening, mut parser) = format.start_output(
            "<|start|>assistant",
            &tools,
            &ToolChoice::Function("get_weather".into()),
        );
        assert_eq!(
            opening,
            "<|channel|>commentary to=functions.get_weather <|constrain|>json<|message|>{\"city\": \""
        );
        let mut out = parser.feed("Oslo\"}");
        out.tool_calls.extend(parser.finish().tool_calls);
        assert_eq!(out.tool_calls.len(), 1);
        assert_eq!(out.tool_calls[0].name, "get_weather");
        assert_eq!(out.tool_calls[0].arguments, r#"{"city":"Oslo"}"#);
        assert!(
            out.tool_calls[0].id.starts_with("call_"),
            "{:?}",
            out.tool_calls[0]
        );
    }
}
