//! gpt-oss's output format (OpenAI's "Harmony"): the answer comes as messages
//! on channels, each `<|channel|>NAME<|message|>TEXT` ended by `<|end|>`
//! (another message follows, after `<|start|>assistant`), `<|call|>` or
//! `<|return|>`. The `analysis` channel is the model's reasoning; `final` is
//! the answer; a `commentary` message addressed `to=functions.NAME` is a tool
//! call whose text is its JSON arguments, and one addressed to no one is a
//! preamble for the user. The parser streams each part as soon as it knows
//! which it is; headers never reach the output.

use super::parser::{Parsed, ToolCall, held_suffix};

const CHANNEL: &str = "<|channel|>";
const MESSAGE: &str = "<|message|>";
const ENDS: [&str; 3] = ["<|end|>", "<|call|>", "<|return|>"];
/// Past this much text without a header, the model is not writing Harmony:
/// what it wrote is the answer.
const HEADER_LIMIT: usize = 256;

#[derive(Debug, Clone, PartialEq)]
enum Part {
    /// Before `<|message|>`: which message comes next.
    Header,
    Reasoning,
    Content,
    /// A tool call's arguments, being collected.
    Call {
        name: String,
        arguments: String,
    },
}

/// The streaming parser for one response in Harmony format.
#[derive(Debug)]
pub(super) struct Harmony {
    /// Whether the request offered tools (otherwise a call is shown as text).
    tools: bool,
    part: Part,
    pending: String,
}

impl Harmony {
    pub(super) fn new(tools: bool) -> Harmony {
        Harmony {
            tools,
            part: Part::Header,
            pending: String::new(),
        }
    }

    /// Whether the output is in the reasoning channel now.
    pub(super) fn in_reasoning(&self) -> bool {
        self.part == Part::Reasoning
    }

    /// Takes the next delta; returns what can be decided so far. Tool calls
    /// come without ids (the caller numbers them).
    pub(super) fn feed(&mut self, text: &str) -> Parsed {
        self.pending.push_str(text);
        let mut out = Parsed::default();
        loop {
            if self.part == Part::Header {
                match self.pending.find(MESSAGE) {
                    Some(at) => {
                        let header = self.pending[..at].to_string();
                        self.pending.drain(..at + MESSAGE.len());
                        self.part = self.part_of(&header);
                        continue;
                    }
                    None if self.pending.len() > HEADER_LIMIT && !self.pending.contains("<|") => {
                        self.part = Part::Content;
                        continue;
                    }
                    None => break,
                }
            }
            let end = ENDS
                .iter()
                .filter_map(|m| self.pending.find(m).map(|at| (at, m.len())))
                .min_by_key(|(at, _)| *at);
            match end {
                Some((at, len)) => {
                    let body = self.pending[..at].to_string();
                    self.pending.drain(..at + len);
                    self.take(&mut out, &body);
                    self.close(&mut out);
                }
                None => {
                    let keep = held_suffix(&self.pending, &ENDS);
                    let ready = self.pending[..self.pending.len() - keep].to_string();
                    self.pending.drain(..ready.len());
                    self.take(&mut out, &ready);
                    break;
                }
            }
        }
        out
    }

    /// The end of the output (`<|call|>` and `<|return|>` end generation, so
    /// they are usually not in the text): what is held back is decided.
    pub(super) fn finish(&mut self) -> Parsed {
        let mut out = Parsed::default();
        let rest = std::mem::take(&mut self.pending);
        if self.part == Part::Header {
            // A header cut short is dropped; plain text is the answer.
            if !rest.contains("<|") {
                out.content.push_str(&rest);
            }
            return out;
        }
        self.take(&mut out, &rest);
        self.close(&mut out);
        out
    }

    /// Which part a header starts: `[<|start|>assistant][ to=RECIPIENT]
    /// <|channel|>NAME[ to=RECIPIENT][ <|constrain|>json]` in either order.
    fn part_of(&self, header: &str) -> Part {
        let channel = header
            .split_once(CHANNEL)
            .map(|(_, rest)| word(rest))
            .unwrap_or_default();
        let recipient = header.split_once("to=").map(|(_, rest)| word(rest));
        match (
            recipient.and_then(|r| r.strip_prefix("functions.")),
            channel,
        ) {
            (Some(name), _) if self.tools && !name.is_empty() => Part::Call {
                name: name.to_string(),
                arguments: String::new(),
            },
            (_, "analysis") => Part::Reasoning,
            _ => Part::Content,
        }
    }

    fn take(&mut self, out: &mut Parsed, text: &str) {
        match &mut self.part {
            Part::Reasoning => out.reasoning.push_str(text),
            Part::Content => out.content.push_str(text),
            Part::Call { arguments, .. } => arguments.push_str(text),
            Part::Header => {}
        }
    }

    /// The message ended: a call is read (or shown as text when its
    /// arguments are not JSON), and a header comes next.
    fn close(&mut self, out: &mut Parsed) {
        if let Part::Call { name, arguments } = std::mem::replace(&mut self.part, Part::Header) {
            let arguments = arguments.trim();
            let arguments = if arguments.is_empty() {
                "{}"
            } else {
                arguments
            };
            match serde_json::from_str::<serde_json::Value>(arguments) {
                Ok(value) => out.tool_calls.push(ToolCall {
                    id: String::new(),
                    name,
                    arguments: value.to_string(),
                }),
                Err(_) => out.content.push_str(arguments),
            }
        }
    }
}

/// The first word of `text`: up to white space or the next special token.
fn word(text: &str) -> &str {
    let text = text.trim_start();
    let end = text
        .find(|c: char| c.is_whitespace())
        .unwrap_or(text.len())
        .min(text.find("<|").unwrap_or(text.len()));
    &text[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds `text` a few characters at a time, as tokens arrive.
    fn stream(tools: bool, text: &str, step: usize) -> Parsed {
        let mut parser = Harmony::new(tools);
        let mut out = Parsed::default();
        let chars: Vec<char> = text.chars().collect();
        for piece in chars.chunks(step) {
            let part = parser.feed(&piece.iter().collect::<String>());
            out.content.push_str(&part.content);
            out.reasoning.push_str(&part.reasoning);
            out.tool_calls.extend(part.tool_calls);
        }
        let rest = parser.finish();
        out.content.push_str(&rest.content);
        out.reasoning.push_str(&rest.reasoning);
        out.tool_calls.extend(rest.tool_calls);
        out
    }

    #[test]
    fn analysis_is_reasoning_and_final_is_the_answer_however_the_text_is_cut() {
        let text = "<|channel|>analysis<|message|>The user greets. Reply briefly.<|end|>\
                    <|start|>assistant<|channel|>final<|message|>Hello! How can I help?";
        for step in [1, 2, 3, 7, 1000] {
            let out = stream(false, text, step);
            assert_eq!(
                out.reasoning, "The user greets. Reply briefly.",
                "step {step}"
            );
            assert_eq!(out.content, "Hello! How can I help?", "step {step}");
            assert!(out.tool_calls.is_empty());
        }
    }

    #[test]
    fn a_commentary_message_to_a_function_is_a_tool_call() {
        let text = "<|channel|>analysis<|message|>Need the weather.<|end|>\
                    <|start|>assistant<|channel|>commentary to=functions.get_weather <|constrain|>json<|message|>{\"location\": \"Tokyo\"}";
        for step in [1, 4, 1000] {
            let out = stream(true, text, step);
            assert_eq!(out.reasoning, "Need the weather.");
            assert_eq!(out.content, "");
            assert_eq!(out.tool_calls.len(), 1, "step {step}");
            assert_eq!(out.tool_calls[0].name, "get_weather");
            assert_eq!(out.tool_calls[0].arguments, r#"{"location":"Tokyo"}"#);
        }
        // The recipient may also come before the channel.
        let other_order =
            "<|start|>assistant to=functions.lookup<|channel|>commentary json<|message|>{}<|call|>";
        let out = stream(true, other_order, 5);
        assert_eq!(out.tool_calls[0].name, "lookup");
        assert_eq!(out.tool_calls[0].arguments, "{}");
    }

    #[test]
    fn without_tools_or_json_a_call_stays_text_and_preambles_are_content() {
        let call = "<|channel|>commentary to=functions.f <|constrain|>json<|message|>{\"a\": 1}";
        let out = stream(false, call, 3);
        assert!(out.tool_calls.is_empty());
        assert_eq!(out.content, "{\"a\": 1}");
        let broken = "<|channel|>commentary to=functions.f<|message|>not json";
        assert_eq!(stream(true, broken, 2).content, "not json");
        let preamble = "<|channel|>commentary<|message|>Let me check.<|end|>";
        assert_eq!(stream(true, preamble, 2).content, "Let me check.");
    }

    #[test]
    fn plain_text_without_headers_is_the_answer() {
        let plain = "A model that never writes a header still answers. ".repeat(8);
        assert_eq!(stream(false, &plain, 5).content, plain);
        assert_eq!(stream(false, "short", 1).content, "short");
    }
}
