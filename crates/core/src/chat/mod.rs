//! What a model's chat template means for its output: where reasoning and
//! tool calls appear in the text and how to read them back out, and how
//! OpenAI-style tool messages are given to the template.

mod format;
mod harmony;
mod parser;

pub use format::{ChatFormat, ToolChoice, ToolSyntax};
pub use parser::{OutputParser, Parsed, ToolCall};
