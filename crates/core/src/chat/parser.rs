//! Splits a model's streamed text into content, reasoning and tool calls.
//! Text that could still be the start of a marker (`<think>`, `<tool_call>`,
//! ...) is held back until the next delta shows what it is, so no marker ever
//! leaks into the content.

use serde_json::Value;

use super::format::ToolSyntax;
use super::harmony::Harmony;

const THINK_OPEN: &str = "<think>";
const THINK_CLOSE: &str = "</think>";
const HERMES_OPEN: &str = "<tool_call>";
const HERMES_CLOSE: &str = "</tool_call>";
const MISTRAL_MARKER: &str = "[TOOL_CALLS]";
const LLAMA_MARKER: &str = "<|python_tag|>";

/// One call the model asked for; `arguments` is JSON text, as OpenAI sends it.
#[derive(Debug, Clone, PartialEq)]
pub struct ToolCall {
    pub id: String,
    pub name: String,
    pub arguments: String,
}

/// What one piece of output turned out to be.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Parsed {
    pub content: String,
    pub reasoning: String,
    pub tool_calls: Vec<ToolCall>,
}

impl Parsed {
    pub fn is_empty(&self) -> bool {
        self.content.is_empty() && self.reasoning.is_empty() && self.tool_calls.is_empty()
    }

    fn append(&mut self, other: Parsed) {
        self.content.push_str(&other.content);
        self.reasoning.push_str(&other.reasoning);
        self.tool_calls.extend(other.tool_calls);
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Mode {
    Text,
    Reasoning,
    /// Inside `<tool_call>`, until `</tool_call>`.
    HermesCall,
    /// After a Mistral or Llama marker (or a Llama JSON start): calls run to the end.
    CallsToEnd,
}

/// The streaming splitter for one response.
#[derive(Debug)]
pub struct OutputParser {
    /// How tool calls look, when the request offered tools.
    tools: Option<ToolSyntax>,
    /// Whether `<think>` opens reasoning.
    thinking: bool,
    mode: Mode,
    /// Text received and not yet given out.
    pending: String,
    /// Whether anything but whitespace has been given out as content.
    started: bool,
    /// The marker that opened `CallsToEnd`, put back if the calls do not parse.
    opener: &'static str,
    call_ids: CallIds,
    /// gpt-oss's channels, which replace all of the above.
    harmony: Option<Harmony>,
}

impl OutputParser {
    /// `tools`: the syntax to look for (None when the request has no tools).
    /// `thinking`: the model reasons inside `<think>`; `in_reasoning`: the
    /// prompt already opened the `<think>` block.
    pub fn new(tools: Option<ToolSyntax>, thinking: bool, in_reasoning: bool) -> Self {
        OutputParser {
            tools,
            thinking: thinking || in_reasoning,
            mode: if in_reasoning {
                Mode::Reasoning
            } else {
                Mode::Text
            },
            pending: String::new(),
            started: false,
            opener: "",
            call_ids: CallIds::new(),
            harmony: None,
        }
    }

    /// The parser for gpt-oss's channels (see `harmony.rs`); `tools`: the
    /// request offered tools.
    pub fn harmony(tools: bool) -> Self {
        OutputParser {
            harmony: Some(Harmony::new(tools)),
            ..OutputParser::new(None, true, false)
        }
    }

    /// Whether the model reasons in this response (`<think>`, or a channel).
    pub fn thinking(&self) -> bool {
        self.thinking
    }

    /// Whether the text so far leaves a reasoning block open.
    pub fn in_reasoning(&self) -> bool {
        match &self.harmony {
            Some(harmony) => harmony.in_reasoning(),
            None => self.mode == Mode::Reasoning,
        }
    }

    /// Takes the next delta; returns what can be decided so far.
    pub fn feed(&mut self, text: &str) -> Parsed {
        if let Some(harmony) = &mut self.harmony {
            let out = harmony.feed(text);
            return self.numbered(out);
        }
        self.pending.push_str(text);
        let mut out = Parsed::default();
        loop {
            match self.mode {
                Mode::Reasoning => {
                    if let Some(at) = self.pending.find(THINK_CLOSE) {
                        out.reasoning.push_str(&self.pending[..at]);
                        let rest = self.pending[at + THINK_CLOSE.len()..]
                            .trim_start()
                            .to_string();
                        self.pending = rest;
                        self.mode = Mode::Text;
                        continue;
                    }
                    let keep = held_suffix(&self.pending, &[THINK_CLOSE]);
                    out.reasoning
                        .push_str(&self.pending[..self.pending.len() - keep]);
                    self.pending.drain(..self.pending.len() - keep);
                    break;
                }
                Mode::Text => {
                    if self.tools == Some(ToolSyntax::Llama3) && !self.started {
                        let trimmed = self.pending.trim_start();
                        if trimmed.is_empty() {
                            break;
                        }
                        if trimmed.starts_with('{') {
                            self.pending = trimmed.to_string();
                            self.opener = "";
                            self.mode = Mode::CallsToEnd;
                            continue;
                        }
                    }
                    let markers = self.markers();
                    let first = markers
                        .iter()
                        .filter_map(|m| self.pending.find(m).map(|at| (at, *m)))
                        .min_by_key(|(at, _)| *at);
                    if let Some((at, marker)) = first {
                        let before = self.pending[..at].to_string();
                        self.emit_content(&mut out, &before);
                        self.pending.drain(..at + marker.len());
                        self.mode = match marker {
                            THINK_OPEN => Mode::Reasoning,
                            HERMES_OPEN => Mode::HermesCall,
                            _ => {
                                self.opener = marker;
                                Mode::CallsToEnd
                            }
                        };
                        continue;
                    }
                    let keep = held_suffix(&self.pending, &markers);
                    let ready = self.pending[..self.pending.len() - keep].to_string();
                    self.emit_content(&mut out, &ready);
                    self.pending.drain(..ready.len());
                    break;
                }
                Mode::HermesCall => {
                    let Some(at) = self.pending.find(HERMES_CLOSE) else {
                        break;
                    };
                    let body = self.pending[..at].to_string();
                    self.pending.drain(..at + HERMES_CLOSE.len());
                    match self.parse_call(&body) {
                        Some(call) => out.tool_calls.push(call),
                        None => {
                            let raw = format!("{HERMES_OPEN}{body}{HERMES_CLOSE}");
                            self.emit_content(&mut out, &raw);
                        }
                    }
                    self.mode = Mode::Text;
                }
                Mode::CallsToEnd => break,
            }
        }
        out
    }

    /// The end of the output: everything held back is decided.
    pub fn finish(&mut self) -> Parsed {
        if let Some(harmony) = &mut self.harmony {
            let out = harmony.finish();
            return self.numbered(out);
        }
        let mut out = Parsed::default();
        let rest = std::mem::take(&mut self.pending);
        match self.mode {
            Mode::Reasoning => out.reasoning.push_str(&rest),
            Mode::Text => self.emit_content(&mut out, &rest),
            Mode::HermesCall => match self.parse_call(&rest) {
                // Models often stop right after the JSON, without the closing tag.
                Some(call) => out.tool_calls.push(call),
                None => self.emit_content(&mut out, &format!("{HERMES_OPEN}{rest}")),
            },
            Mode::CallsToEnd => match self.parse_calls_to_end(&rest) {
                Some(calls) => out.tool_calls.extend(calls),
                None => {
                    let raw = format!("{}{rest}", self.opener);
                    self.emit_content(&mut out, &raw);
                }
            },
        }
        self.mode = Mode::Text;
        out
    }

    /// Parses a whole response at once.
    pub fn parse_all(mut self, text: &str) -> Parsed {
        let mut out = self.feed(text);
        out.append(self.finish());
        out
    }

    /// Gives the calls that came without one an id.
    fn numbered(&mut self, mut out: Parsed) -> Parsed {
        for call in &mut out.tool_calls {
            if call.id.is_empty() {
                call.id = self.call_ids.next();
            }
        }
        out
    }

    fn markers(&self) -> Vec<&'static str> {
        let mut markers = Vec::new();
        if self.thinking {
            markers.push(THINK_OPEN);
        }
        match self.tools {
            Some(ToolSyntax::Hermes) => markers.push(HERMES_OPEN),
            Some(ToolSyntax::Mistral) => markers.push(MISTRAL_MARKER),
            Some(ToolSyntax::Llama3) => markers.push(LLAMA_MARKER),
            Some(ToolSyntax::Harmony) | None => {}
        }
        markers
    }

    fn emit_content(&mut self, out: &mut Parsed, text: &str) {
        if !self.started {
            // Whitespace before the first word (after a tool call or reasoning) is noise.
            let text = text.trim_start();
            if text.is_empty() {
                return;
            }
            self.started = true;
            out.content.push_str(text);
        } else {
            out.content.push_str(text);
        }
    }

    fn parse_call(&mut self, body: &str) -> Option<ToolCall> {
        let body = body.trim();
        let value: Value = serde_json::from_str(body)
            .ok()
            .or_else(|| serde_json::from_str(&close_unbalanced(body)?).ok())?;
        self.call_from_json(&value)
    }

    /// `{"name": ..., "arguments" | "parameters": {...}}`.
    fn call_from_json(&mut self, value: &Value) -> Option<ToolCall> {
        let name = value.get("name")?.as_str()?.to_string();
        if name.is_empty() {
            return None;
        }
        let arguments = match value.get("arguments").or_else(|| value.get("parameters")) {
            None | Some(Value::Null) => "{}".to_string(),
            // Some models write the arguments as a JSON string already.
            Some(Value::String(text)) => {
                serde_json::from_str::<Value>(text).ok()?;
                text.clone()
            }
            Some(other) => other.to_string(),
        };
        Some(ToolCall {
            id: self.call_ids.next(),
            name,
            arguments,
        })
    }

    fn parse_calls_to_end(&mut self, text: &str) -> Option<Vec<ToolCall>> {
        let text = text.trim();
        match self.tools? {
            // Mistral v11+: `name[ARGS]{...}`, repeated with further [TOOL_CALLS].
            ToolSyntax::Mistral if !text.starts_with('[') => {
                let mut calls = Vec::new();
                for part in text.split(MISTRAL_MARKER) {
                    let (name, args) = part.split_once("[ARGS]")?;
                    let args: Value = serde_json::from_str(args.trim()).ok()?;
                    let value = serde_json::json!({"name": name.trim(), "arguments": args});
                    calls.push(self.call_from_json(&value)?);
                }
                Some(calls)
            }
            ToolSyntax::Mistral => {
                let list: Vec<Value> = serde_json::from_str(text).ok()?;
                let calls: Option<Vec<ToolCall>> =
                    list.iter().map(|v| self.call_from_json(v)).collect();
                calls.filter(|c| !c.is_empty())
            }
            // Llama 3: one JSON object, or several separated by `;` or white space.
            ToolSyntax::Llama3 => {
                let mut calls = Vec::new();
                let mut rest = text;
                loop {
                    rest = rest.trim_start().trim_start_matches(';').trim_start();
                    if rest.is_empty() {
                        break;
                    }
                    let mut values = serde_json::Deserializer::from_str(rest).into_iter::<Value>();
                    let value = values.next()?.ok()?;
                    let used = values.byte_offset();
                    calls.push(self.call_from_json(&value)?);
                    rest = &rest[used..];
                }
                (!calls.is_empty()).then_some(calls)
            }
            ToolSyntax::Hermes | ToolSyntax::Harmony => None,
        }
    }
}

/// The length of the longest end of `text` that begins one of `markers`.
pub(super) fn held_suffix(text: &str, markers: &[&str]) -> usize {
    let mut keep = 0;
    for marker in markers {
        for len in (1..marker.len()).rev() {
            if len <= keep {
                break;
            }
            if text.len() >= len
                && text.is_char_boundary(text.len() - len)
                && marker.starts_with(&text[text.len() - len..])
            {
                keep = len;
                break;
            }
        }
    }
    keep
}

/// Tool-call ids: `call_` and 24 hex characters, random per response.
#[derive(Debug)]
struct CallIds {
    base: u64,
    count: u32,
}

impl CallIds {
    fn new() -> Self {
        let mut bytes = [0u8; 8];
        // A clock-based id is fine if the random source is unavailable.
        if getrandom::fill(&mut bytes).is_err() {
            let nanos = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or(0);
            bytes = nanos.to_le_bytes();
        }
        CallIds {
            base: u64::from_le_bytes(bytes),
            count: 0,
        }
    }

    fn next(&mut self) -> String {
        self.count += 1;
        format!("call_{:016x}{:08x}", self.base, self.count)
    }
}

/// `text` with the objects and lists it leaves open closed, when that is
/// all it lacks: small models often end a call's JSON one brace short
/// (`{"name": "f", "arguments": {"a": 1}` then `</tool_call>`). None when
/// nothing is open, a string is, or more than two levels are.
fn close_unbalanced(text: &str) -> Option<String> {
    let mut open = Vec::new();
    let (mut in_string, mut escaped) = (false, false);
    for c in text.chars() {
        if in_string {
            match c {
                _ if escaped => escaped = false,
                '\\' => escaped = true,
                '"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match c {
            '"' => in_string = true,
            '{' => open.push('}'),
            '[' => open.push(']'),
            '}' | ']' if open.pop() != Some(c) => return None,
            _ => {}
        }
    }
    if in_string || open.is_empty() || open.len() > 2 {
        return None;
    }
    Some(text.chars().chain(open.into_iter().rev()).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds `text` one character at a time, as the worst-case stream.
    fn by_chars(mut parser: OutputParser, text: &str) -> Parsed {
        let mut out = Parsed::default();
        for ch in text.chars() {
            out.append(parser.feed(&ch.to_string()));
        }
        out.append(parser.finish());
        out
    }

    fn both(tools: Option<ToolSyntax>, thinking: bool, text: &str) -> Parsed {
        let whole = OutputParser::new(tools, thinking, false).parse_all(text);
        let streamed = by_chars(OutputParser::new(tools, thinking, false), text);
        assert_eq!(whole.content, streamed.content);
        assert_eq!(whole.reasoning, streamed.reasoning);
        assert_eq!(whole.tool_calls.len(), streamed.tool_calls.len());
        whole
    }

    #[test]
    fn plain_text_passes_through_even_with_angle_brackets() {
        let out = both(
            Some(ToolSyntax::Hermes),
            true,
            "a < b and <tool> is not a call",
        );
        assert_eq!(out.content, "a < b and <tool> is not a call");
        assert!(out.tool_calls.is_empty());
    }

    #[test]
    fn reasoning_is_separated_from_content() {
        let out = both(
            None,
            true,
            "<think>\nCount: 2+2=4.\n</think>\n\nThe answer is 4.",
        );
        assert_eq!(out.reasoning, "\nCount: 2+2=4.\n");
        assert_eq!(out.content, "The answer is 4.");
    }

    #[test]
    fn a_prompt_that_opened_think_starts_in_reasoning() {
        let mut parser = OutputParser::new(None, true, true);
        let mut out = parser.feed("plan</thi");
        out.append(parser.feed("nk>done"));
        out.append(parser.finish());
        assert_eq!(out.reasoning, "plan");
        assert_eq!(out.content, "done");
    }

    #[test]
    fn hermes_calls_are_parsed_and_text_around_them_kept() {
        let text = "Let me check.\n<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}\n</tool_call>\n<tool_call>\n{\"name\": \"get_time\", \"arguments\": {}}\n</tool_call>";
        let out = both(Some(ToolSyntax::Hermes), false, text);
        assert_eq!(out.content, "Let me check.\n\n");
        assert_eq!(out.tool_calls.len(), 2);
        assert_eq!(out.tool_calls[0].name, "get_weather");
        assert_eq!(out.tool_calls[0].arguments, r#"{"city":"Paris"}"#);
        assert_eq!(out.tool_calls[1].arguments, "{}");
        assert_ne!(out.tool_calls[0].id, out.tool_calls[1].id);
        assert!(out.tool_calls[0].id.starts_with("call_"));
    }

    #[test]
    fn an_unclosed_hermes_call_at_the_end_still_counts() {
        let out = both(
            Some(ToolSyntax::Hermes),
            false,
            "<tool_call>\n{\"name\": \"f\", \"arguments\": {\"x\": 1}}",
        );
        assert_eq!(out.tool_calls.len(), 1);
        assert_eq!(out.tool_calls[0].arguments, r#"{"x":1}"#);
    }

    #[test]
    fn a_call_one_brace_short_is_closed_but_other_damage_is_not_guessed() {
        // SmolLM2 ends forced calls like this one.
        let short = "<tool_call>\n{\"name\": \"take_note\", \"arguments\": {\"input\": \"noon {ok}\"}\n</tool_call>";
        let out = both(Some(ToolSyntax::Hermes), false, short);
        assert_eq!(out.tool_calls.len(), 1, "{out:?}");
        assert_eq!(out.tool_calls[0].arguments, r#"{"input":"noon {ok}"}"#);
        assert_eq!(out.content, "");
        for broken in [
            "{\"name\": \"f\", \"arguments\": {\"a\": \"open string",
            "{\"name\": \"f\", \"arguments\": {\"a\": [{\"b\": 1",
            "{\"name\": \"f\"]",
        ] {
            assert_eq!(close_unbalanced(broken), None, "{broken}");
        }
    }

    #[test]
    fn a_broken_call_comes_back_as_text() {
        let text = "<tool_call>{\"name\": oops}</tool_call> sorry";
        let out = both(Some(ToolSyntax::Hermes), false, text);
        assert!(out.tool_calls.is_empty());
        assert_eq!(out.content, text);
    }

    #[test]
    fn without_tools_markers_are_plain_text() {
        let text = "<tool_call>{\"name\": \"f\"}</tool_call>";
        assert_eq!(both(None, false, text).content, text);
    }

    #[test]
    fn llama3_json_calls() {
        let one = both(
            Some(ToolSyntax::Llama3),
            false,
            " {\"name\": \"get_weather\", \"parameters\": {\"city\": \"Oslo\"}}",
        );
        assert_eq!(one.tool_calls.len(), 1);
        assert_eq!(one.tool_calls[0].arguments, r#"{"city":"Oslo"}"#);
        let tagged = both(
            Some(ToolSyntax::Llama3),
            false,
            "<|python_tag|>{\"name\": \"a\", \"parameters\": {}}; {\"name\": \"b\", \"parameters\": {\"k\": true}}",
        );
        assert_eq!(
            tagged
                .tool_calls
                .iter()
                .map(|c| c.name.as_str())
                .collect::<Vec<_>>(),
            ["a", "b"]
        );
        let prose = both(Some(ToolSyntax::Llama3), false, "{not json} and words");
        assert!(prose.tool_calls.is_empty());
        assert_eq!(prose.content, "{not json} and words");
    }

    #[test]
    fn mistral_calls_in_both_layouts() {
        let list = both(
            Some(ToolSyntax::Mistral),
            false,
            "[TOOL_CALLS][{\"name\": \"add\", \"arguments\": {\"a\": 1, \"b\": 2}}]",
        );
        assert_eq!(list.tool_calls.len(), 1);
        assert_eq!(list.tool_calls[0].arguments, r#"{"a":1,"b":2}"#);
        let args = both(
            Some(ToolSyntax::Mistral),
            false,
            "[TOOL_CALLS]add[ARGS]{\"a\": 1}[TOOL_CALLS]neg[ARGS]{\"x\": 3}",
        );
        assert_eq!(
            args.tool_calls
                .iter()
                .map(|c| c.name.as_str())
                .collect::<Vec<_>>(),
            ["add", "neg"]
        );
    }

    #[test]
    fn multibyte_text_is_never_split() {
        let out = both(Some(ToolSyntax::Hermes), true, "héllo <wörld> ✓");
        assert_eq!(out.content, "héllo <wörld> ✓");
    }
}
