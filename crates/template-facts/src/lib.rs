//! What a model's chat template says about it, read in one place.
//!
//! The engine renders the template, the server decides how to offer tools and
//! parse the output, and the Library shows "tools" and "reasoning" badges.
//! All three ask this crate, so they cannot disagree about the same model:
//!
//! - [`ChatTemplates`] picks the templates out of a model's files the way
//!   `transformers` does (`chat_template.jinja`, or the tokenizer config's
//!   template, or its named `default` / `tool_use` templates);
//! - [`TemplateFacts`] is what one reading of them finds: whether the
//!   template renders `tools`, how the model writes tool calls, and whether it
//!   reasons in `<think>` blocks or has a thinking switch.

use std::collections::HashSet;

use serde::Serialize;
use serde_json::Value;

/// How a model writes tool calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ToolSyntax {
    /// `<tool_call>{"name": ..., "arguments": ...}</tool_call>` (Qwen, Hermes, and
    /// what Orchard teaches models whose template has no tool support).
    Hermes,
    /// A bare `{"name": ..., "parameters": ...}`, maybe after `<|python_tag|>` (Llama 3.1+).
    Llama3,
    /// `[TOOL_CALLS][{"name": ..., "arguments": ...}]` or `[TOOL_CALLS]name[ARGS]{...}` (Mistral).
    Mistral,
    /// gpt-oss's channels: `<|channel|>commentary to=functions.NAME ...<|message|>{...}`,
    /// with reasoning on the `analysis` channel and the answer on `final`.
    Harmony,
}

/// The facts a chat template gives about its model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct TemplateFacts {
    /// The template renders the request's `tools` itself. When it does not,
    /// Orchard describes the tools in the system message.
    pub tools: bool,
    /// How tool calls appear in the output ([`ToolSyntax::Hermes`] when the
    /// template has no tools: that is the syntax Orchard then teaches).
    pub tool_syntax: ToolSyntax,
    /// The model reasons: the template writes `<think>` blocks or reads a
    /// thinking switch.
    pub thinking: bool,
    /// The template reads `enable_thinking`, so requests can turn thinking on or off.
    pub thinking_switch: bool,
}

impl Default for TemplateFacts {
    /// No template: no tools, no thinking.
    fn default() -> Self {
        TemplateFacts {
            tools: false,
            tool_syntax: ToolSyntax::Hermes,
            thinking: false,
            thinking_switch: false,
        }
    }
}

impl TemplateFacts {
    /// Reads the facts from one template's source text.
    pub fn read(template: &str) -> TemplateFacts {
        let variables = variables_read(template);
        let reads = |name: &str| match &variables {
            Some(names) => names.contains(name),
            // A template minijinja cannot parse still says what it mentions.
            None => template.contains(name),
        };
        let tools = reads("tools");
        let thinking_switch = reads("enable_thinking");
        let harmony = template.contains("<|channel|>");
        let tool_syntax = if harmony {
            ToolSyntax::Harmony
        } else if !tools || template.contains("<tool_call>") {
            ToolSyntax::Hermes
        } else if template.contains("[TOOL_CALLS]") {
            ToolSyntax::Mistral
        } else if template.contains("<|python_tag|>")
            || template.contains("ipython")
            || template.contains("<|start_header_id|>")
        {
            ToolSyntax::Llama3
        } else {
            ToolSyntax::Hermes
        };
        TemplateFacts {
            tools,
            tool_syntax,
            thinking: template.contains("<think>") || thinking_switch || harmony,
            thinking_switch,
        }
    }

    /// The facts of a model with several templates: tools as the template
    /// used with tools renders them, thinking when either template thinks.
    fn merge(for_tools: TemplateFacts, default: TemplateFacts) -> TemplateFacts {
        TemplateFacts {
            tools: for_tools.tools,
            tool_syntax: for_tools.tool_syntax,
            thinking: for_tools.thinking || default.thinking,
            thinking_switch: for_tools.thinking_switch || default.thinking_switch,
        }
    }
}

/// The variables a template reads from its context (`tools`, `messages`, ...),
/// or None when it does not parse.
fn variables_read(template: &str) -> Option<HashSet<String>> {
    let env = minijinja::Environment::new();
    let parsed = env.template_from_str(template).ok()?;
    Some(parsed.undeclared_variables(false))
}

/// A model's chat templates, chosen from its files as `transformers` chooses them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ChatTemplates {
    /// The template for ordinary requests.
    pub default: Option<String>,
    /// A template used instead when the request has tools (named `tool_use`
    /// in the tokenizer config; few models have one).
    pub tool_use: Option<String>,
}

impl ChatTemplates {
    /// The templates from `chat_template.jinja` (which wins when present) or
    /// the tokenizer config's `chat_template`: a string, or a list of
    /// `{"name", "template"}` of which `default` and `tool_use` are used.
    pub fn from_files(jinja_file: Option<String>, tokenizer_config: Option<&Value>) -> Self {
        if let Some(template) = jinja_file {
            return ChatTemplates {
                default: Some(template),
                tool_use: None,
            };
        }
        match tokenizer_config.and_then(|c| c.get("chat_template")) {
            Some(Value::String(template)) => ChatTemplates {
                default: Some(template.clone()),
                tool_use: None,
            },
            Some(Value::Array(named)) => {
                let named = |wanted: &str| {
                    named
                        .iter()
                        .find(|t| t.get("name").and_then(Value::as_str) == Some(wanted))
                        .and_then(|t| t.get("template")?.as_str())
                        .map(str::to_string)
                };
                ChatTemplates {
                    default: named("default"),
                    tool_use: named("tool_use"),
                }
            }
            _ => ChatTemplates::default(),
        }
    }

    /// The template for a request: `tool_use` when the request has tools and
    /// the model has one, else `default`.
    pub fn for_request(&self, with_tools: bool) -> Option<&str> {
        match (&self.tool_use, with_tools) {
            (Some(tool_use), true) => Some(tool_use),
            _ => self.default.as_deref(),
        }
    }

    /// What the templates say about the model.
    pub fn facts(&self) -> TemplateFacts {
        let read = |t: &Option<String>| t.as_deref().map(TemplateFacts::read);
        match (read(&self.tool_use), read(&self.default)) {
            (Some(tool_use), Some(default)) => TemplateFacts::merge(tool_use, default),
            (Some(only), None) | (None, Some(only)) => only,
            (None, None) => TemplateFacts::default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn qwen_style_templates_render_tools_in_hermes_syntax_and_think() {
        let qwen = "{% if tools %}<tools>{% for tool in tools %}{{ tool | tojson }}{% endfor %}</tools> <tool_call>{% endif %}{% if enable_thinking is false %}<think>\n\n</think>{% endif %}";
        let facts = TemplateFacts::read(qwen);
        assert_eq!(
            facts,
            TemplateFacts {
                tools: true,
                tool_syntax: ToolSyntax::Hermes,
                thinking: true,
                thinking_switch: true,
            }
        );
    }

    #[test]
    fn mistral_and_llama_syntaxes_are_recognised() {
        let mistral = "{% if tools %}[AVAILABLE_TOOLS]{{ tools|tojson }}{% endif %}[TOOL_CALLS]";
        assert_eq!(
            TemplateFacts::read(mistral).tool_syntax,
            ToolSyntax::Mistral
        );
        let llama = "{% if tools %}<|start_header_id|>ipython<|end_header_id|>{% endif %}";
        assert_eq!(TemplateFacts::read(llama).tool_syntax, ToolSyntax::Llama3);
    }

    #[test]
    fn gpt_oss_channels_are_harmony_with_reasoning() {
        // The shape of gpt-oss's template: tools become a TypeScript-like
        // namespace in the developer message; answers go on channels.
        let harmony = "{%- if tools %}<|start|>developer<|message|># Tools\n\nnamespace functions {\n{%- for tool in tools %}type {{ tool.function.name }} = () => any;{%- endfor %}\n} // namespace functions<|end|>{%- endif %}\
            {%- for m in messages %}<|start|>{{ m.role }}<|channel|>final<|message|>{{ m.content }}<|end|>{%- endfor %}\
            {%- if add_generation_prompt %}<|start|>assistant{%- endif %}";
        let facts = TemplateFacts::read(harmony);
        assert_eq!(facts.tool_syntax, ToolSyntax::Harmony);
        assert!(facts.tools && facts.thinking);
        assert!(!facts.thinking_switch);
    }

    #[test]
    fn the_word_tools_in_text_is_not_tool_support() {
        // It says "tools" but never reads the variable: nothing renders them.
        let template = "{{ '<|im_start|>system\nYou have no tools.<|im_end|>' }}{% for m in messages %}{{ m.content }}{% endfor %}";
        let facts = TemplateFacts::read(template);
        assert!(!facts.tools && !facts.thinking, "{facts:?}");
        assert_eq!(facts.tool_syntax, ToolSyntax::Hermes);
    }

    #[test]
    fn a_template_that_does_not_parse_is_read_by_its_words() {
        let broken = "{% if tools %}<tool_call>{% for %}";
        assert!(TemplateFacts::read(broken).tools);
    }

    #[test]
    fn named_templates_use_tool_use_for_tools_and_default_otherwise() {
        let config = json!({"chat_template": [
            {"name": "default", "template": "{{ messages }}"},
            {"name": "tool_use", "template": "{{ tools }}<tool_call>"},
        ]});
        let templates = ChatTemplates::from_files(None, Some(&config));
        assert_eq!(templates.for_request(false), Some("{{ messages }}"));
        assert_eq!(templates.for_request(true), Some("{{ tools }}<tool_call>"));
        assert!(templates.facts().tools);

        let file = ChatTemplates::from_files(Some("{{ file }}".into()), Some(&config));
        assert_eq!(file.for_request(true), Some("{{ file }}"));
        assert_eq!(
            ChatTemplates::from_files(None, None).facts(),
            TemplateFacts::default()
        );
    }
}
