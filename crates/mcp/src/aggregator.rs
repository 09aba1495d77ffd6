//! The one MCP server Orchard offers (on `/mcp` and over stdio): the tools,
//! prompts and resources of every enabled server in the [`Hub`], each routed
//! by an exact map to its owner.

use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, CompleteRequestParams, CompleteResult,
    ContentBlock, GetPromptRequestParams, GetPromptResponse, Implementation, InitializeResult,
    ListPromptsResult, ListResourcesResult, ListToolsResult, PaginatedRequestParams,
    ReadResourceRequestParams, ReadResourceResponse, ResultType, ServerCapabilities, ServerConfig,
    Tool,
};
use rmcp::service::RequestContext;
use rmcp::{ErrorData, RoleServer, ServerHandler};
use serde_json::json;

use crate::hub::{Catalog, Hub, McpError};

/// The tool that finds the tools left out of a long list.
pub const SEARCH_TOOL: &str = "orchard__search_tools";
/// How many matches the search returns.
const SEARCH_RESULTS: usize = 10;

/// Who is calling through the port (an API key's id): the HTTP layer puts
/// it in the request's extensions, the audit log records it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller(pub Option<String>);

/// The aggregating MCP server. Cheap to clone: each session gets one.
#[derive(Debug, Clone)]
pub struct Aggregator {
    hub: Hub,
    /// At most this many tools are listed (0: all). The rest stay callable
    /// and are found through [`SEARCH_TOOL`].
    max_tools: usize,
}

impl Aggregator {
    pub fn new(hub: Hub, max_tools: usize) -> Aggregator {
        Aggregator { hub, max_tools }
    }

    /// The tools a client sees: all of them, or the first `max_tools` and
    /// the search tool.
    pub fn listed(&self, catalog: &Catalog) -> Vec<Tool> {
        if self.max_tools == 0 || catalog.tools.len() <= self.max_tools {
            return catalog.tools.clone();
        }
        let mut tools: Vec<Tool> = catalog.tools[..self.max_tools].to_vec();
        tools.push(search_tool(catalog.tools.len()));
        tools
    }

    async fn search(&self, arguments: Option<&rmcp::model::JsonObject>) -> CallToolResult {
        let query = arguments
            .and_then(|a| a.get("query"))
            .and_then(|q| q.as_str())
            .unwrap_or_default()
            .to_lowercase();
        let words: Vec<&str> = query.split_whitespace().collect();
        if words.is_empty() {
            return CallToolResult::error(vec![ContentBlock::text(
                "search_tools needs a \"query\": words from the tool's name or purpose",
            )]);
        }
        let catalog = self.hub.catalog().await;
        let mut scored: Vec<(usize, &Tool)> = catalog
            .tools
            .iter()
            .filter_map(|tool| {
                let name = tool.name.to_lowercase();
                let description = tool
                    .description
                    .as_deref()
                    .unwrap_or_default()
                    .to_lowercase();
                let score: usize = words
                    .iter()
                    .map(|w| {
                        3 * usize::from(name.contains(w)) + usize::from(description.contains(w))
                    })
                    .sum();
                (score > 0).then_some((score, tool))
            })
            .collect();
        scored.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| a.1.name.cmp(&b.1.name)));
        let found: Vec<serde_json::Value> = scored
            .iter()
            .take(SEARCH_RESULTS)
            .map(|(_, tool)| {
                json!({
                    "name": tool.name,
                    "description": tool.description,
                    "inputSchema": tool.input_schema,
                })
            })
            .collect();
        let text = if found.is_empty() {
            format!("No tool matches {query:?}.")
        } else {
            serde_json::to_string_pretty(&found).unwrap_or_default()
        };
        let mut result = CallToolResult::success(vec![ContentBlock::text(text)]);
        result.structured_content = Some(json!({ "tools": found }));
        result
    }
}

fn search_tool(total: usize) -> Tool {
    let schema = json!({
        "type": "object",
        "properties": {"query": {"type": "string", "description": "Words from the tool's name or purpose"}},
        "required": ["query"],
        "additionalProperties": false
    });
    let schema = match schema {
        serde_json::Value::Object(map) => map,
        _ => rmcp::model::JsonObject::new(),
    };
    Tool::new(
        SEARCH_TOOL,
        format!(
            "Finds tools by name and description among all {total} tools Orchard offers, including those not listed here. Returns each match's name, description and input schema; call a match by its name."
        ),
        std::sync::Arc::new(schema),
    )
}

fn protocol_error(error: McpError) -> ErrorData {
    match error {
        McpError::NotFound(message) => ErrorData::invalid_params(message, None),
        other => ErrorData::internal_error(other.to_string(), None),
    }
}

impl ServerHandler for Aggregator {
    fn get_info(&self) -> ServerConfig {
        InitializeResult::new(
            ServerCapabilities::builder()
                .enable_tools()
                .enable_prompts()
                .enable_resources()
                .enable_completions()
                .build(),
        )
        .with_server_info(Implementation::new("orchard", env!("CARGO_PKG_VERSION")))
        .with_instructions(
            "Tools, prompts and resources from the MCP servers configured in Orchard. Each tool is named server__tool.",
        )
    }

    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, ErrorData> {
        let catalog = self.hub.catalog().await;
        Ok(ListToolsResult::with_all_items(self.listed(&catalog)))
    }

    fn get_tool(&self, _name: &str) -> Option<Tool> {
        // Arguments are checked by the server that owns the tool.
        None
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        if request.name == SEARCH_TOOL {
            return Ok(self.search(request.arguments.as_ref()).await.into());
        }
        let caller = context
            .extensions
            .get::<http::request::Parts>()
            .and_then(|parts| parts.extensions.get::<Caller>())
            .and_then(|caller| caller.0.clone());
        match self
            .hub
            .call_tool(
                &request.name,
                request.arguments,
                context.ct.clone(),
                caller.as_deref(),
            )
            .await
        {
            Ok(mut result) => {
                // A server on an older protocol leaves the result type out;
                // a client on the current one needs it.
                result.result_type.get_or_insert(ResultType::COMPLETE);
                Ok(result.into())
            }
            Err(McpError::NotFound(message)) => Err(ErrorData::invalid_params(message, None)),
            // The server is down or slow: the caller (often a model) reads why.
            Err(error) => {
                Ok(CallToolResult::error(vec![ContentBlock::text(error.to_string())]).into())
            }
        }
    }

    async fn list_prompts(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListPromptsResult, ErrorData> {
        let catalog = self.hub.catalog().await;
        Ok(ListPromptsResult::with_all_items(catalog.prompts.clone()))
    }

    async fn get_prompt(
        &self,
        request: GetPromptRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<GetPromptResponse, ErrorData> {
        self.hub
            .get_prompt(&request.name, request.arguments, context.ct.clone())
            .await
            .map(|mut result| {
                result.result_type.get_or_insert(ResultType::COMPLETE);
                result.into()
            })
            .map_err(protocol_error)
    }

    async fn complete(
        &self,
        request: CompleteRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CompleteResult, ErrorData> {
        self.hub
            .complete_prompt_argument(request, context.ct.clone())
            .await
            .map(|mut result| {
                result.result_type.get_or_insert(ResultType::COMPLETE);
                result
            })
            .map_err(protocol_error)
    }

    async fn list_resources(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListResourcesResult, ErrorData> {
        let catalog = self.hub.catalog().await;
        Ok(ListResourcesResult::with_all_items(
            catalog.resources.clone(),
        ))
    }

    async fn read_resource(
        &self,
        request: ReadResourceRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<ReadResourceResponse, ErrorData> {
        match self
            .hub
            .read_resource(&request.uri, context.ct.clone())
            .await
        {
            Ok(mut result) => {
                result.result_type.get_or_insert(ResultType::COMPLETE);
                Ok(result.into())
            }
            Err(McpError::NotFound(message)) => Err(ErrorData::resource_not_found(
                message,
                Some(json!({"uri": request.uri})),
            )),
            Err(error) => Err(protocol_error(error)),
        }
    }
}

/// Serves the aggregator on this process's stdin and stdout until the
/// client closes them (`orchard mcp serve --stdio`).
pub async fn serve_stdio(aggregator: Aggregator) -> Result<(), String> {
    use rmcp::ServiceExt;
    let running = aggregator
        .serve(rmcp::transport::stdio())
        .await
        .map_err(|e| format!("the MCP client did not complete the handshake: {e}"))?;
    running
        .waiting()
        .await
        .map_err(|e| format!("the MCP session failed: {e}"))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hub::HubOptions;

    #[tokio::test]
    async fn a_long_list_is_cut_to_the_limit_plus_a_search_that_finds_the_rest() {
        let hub = Hub::new(HubOptions::default());
        let aggregator = Aggregator::new(hub.clone(), 1);
        let catalog = hub.catalog().await;
        let listed: Vec<String> = aggregator
            .listed(&catalog)
            .iter()
            .map(|t| t.name.to_string())
            .collect();
        assert_eq!(listed, ["orchard-tools__calculate", SEARCH_TOOL]);
        let mut args = rmcp::model::JsonObject::new();
        args.insert("query".into(), "weather".into());
        let found = aggregator.search(Some(&args)).await;
        let names: Vec<String> = found.structured_content.as_ref().expect("structured")["tools"]
            .as_array()
            .expect("list")
            .iter()
            .map(|t| t["name"].as_str().unwrap_or_default().to_string())
            .collect();
        assert_eq!(names, ["orchard-tools__get_weather"]);
        // Unlimited: everything, no search tool.
        let all = Aggregator::new(hub, 0).listed(&catalog);
        assert_eq!(all.len(), 2);
    }
}
