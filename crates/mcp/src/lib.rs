//! MCP for Orchard: the user's tool servers (stdio children and
//! streamable-HTTP endpoints, supervised through rmcp clients), the built-in
//! `orchard-tools` server, and the aggregator that offers them all as one
//! MCP server on Orchard's port (`/mcp`) and over stdio.

pub mod aggregator;
pub mod builtin;
pub mod calc;
pub mod config;
pub mod hub;
pub mod names;
pub mod program;
pub mod uri_template;

pub use aggregator::Aggregator;
pub use config::{ServerSpec, Transport};
pub use hub::{
    AuditSink, CallRecord, Catalog, Hub, HubEvent, HubOptions, McpError, ServerStatus, SpecSource,
    ToolStats,
};
