//! The one MCP server Orchard offers (on `/mcp` and over stdio): the tools,
//! prompts and resources of every enabled server in the [`Hub`], each routed
//! by an exact map to its owner.

use std::collections::HashSet;
use std::sync::{Arc, Mutex, Weak};

use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, CompleteRequestParams, CompleteResult,
    ContentBlock, GetPromptRequestParams, GetPromptResponse, Implementation, InitializeResult,
    ListPromptsResult, ListResourceTemplatesResult, ListResourcesResult, ListToolsResult,
    PaginatedRequestParams, Prompt, ReadResourceRequestParams, ReadResourceResponse, Resource,
    ResourceTemplate, ResourceUpdatedNotification, ResourceUpdatedNotificationParam, ResultType,
    ServerCapabilities, ServerConfig, ServerNotification, SubscribeRequestParams,
    SubscriptionFilter, Tool, UnsubscribeRequestParams,
};
#[allow(deprecated)] // logging: deprecated by SEP-2577, still what 2025 clients speak
use rmcp::model::{LoggingLevel, SetLevelRequestParams};
use rmcp::service::{
    NotificationContext, RequestContext, SubscriptionContext, SubscriptionSendError,
};
use rmcp::{ErrorData, RoleServer, ServerHandler};
use serde_json::json;
use tokio::sync::broadcast::error::RecvError;
use tokio_util::sync::CancellationToken;

use crate::hub::{Catalog, Hub, HubEvent, McpError, level_rank};

/// The tool that finds the tools left out of a long list.
pub const SEARCH_TOOL: &str = "orchard__search_tools";
/// How many matches the search returns.
const SEARCH_RESULTS: usize = 10;

/// Who is calling through the port (an API key's id): the HTTP layer puts
/// it in the request's extensions, the audit log records it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller(pub Option<String>);

/// The aggregating MCP server. Each client session gets one (clones share
/// the session).
#[derive(Debug, Clone)]
pub struct Aggregator {
    hub: Hub,
    /// At most this many tools are listed (0: all). The rest stay callable
    /// and are found through [`SEARCH_TOOL`].
    max_tools: usize,
    session: Arc<Session>,
}

/// What one client session asked for: the resources it subscribed to and
/// the log level. Its subscriptions are given back when it ends.
#[derive(Debug)]
struct Session {
    hub: Hub,
    subscribed: Mutex<HashSet<String>>,
    #[allow(deprecated)]
    level: Mutex<Option<LoggingLevel>>,
    /// Ends the session's notifier.
    ended: CancellationToken,
}

impl Drop for Session {
    fn drop(&mut self) {
        self.ended.cancel();
        let uris: Vec<String> = lock(&self.subscribed).drain().collect();
        if uris.is_empty() {
            return;
        }
        let hub = self.hub.clone();
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                for uri in uris {
                    hub.unsubscribe_resource(&uri).await;
                }
            });
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The lists a client was last told about, to tell it what changed.
#[derive(Debug, PartialEq)]
struct Seen {
    tools: Vec<Tool>,
    prompts: Vec<Prompt>,
    resources: (Vec<Resource>, Vec<ResourceTemplate>),
}

fn seen(max_tools: usize, catalog: &Catalog) -> Seen {
    Seen {
        tools: listed(catalog, max_tools),
        prompts: catalog.prompts.clone(),
        resources: (
            catalog.resources.clone(),
            catalog.resource_templates.clone(),
        ),
    }
}

/// Where a session's notices go: the session's own channel (2025
/// clients) or a `subscriptions/listen` stream (2026-07-28 clients).
enum Notices<'a> {
    Session(rmcp::Peer<RoleServer>),
    Listen(&'a SubscriptionContext),
}

impl Notices<'_> {
    /// Sends one notice; `Err` when the client is gone. A notice a listener
    /// did not ask for is skipped, not an error.
    async fn send(&self, notice: ServerNotification) -> Result<(), ()> {
        match self {
            Notices::Session(peer) => peer.send_notification(notice).await.map_err(drop),
            Notices::Listen(context) => match context.sink().send(notice).await {
                Ok(()) | Err(SubscriptionSendError::NotificationNotAccepted(_)) => Ok(()),
                Err(_) => Err(()),
            },
        }
    }

    /// Sends the notices for the lists that differ.
    async fn lists_changed(&self, before: &Seen, now: &Seen) -> Result<(), ()> {
        if before.tools != now.tools {
            self.send(ServerNotification::ToolListChangedNotification(
                Default::default(),
            ))
            .await?;
        }
        if before.prompts != now.prompts {
            self.send(ServerNotification::PromptListChangedNotification(
                Default::default(),
            ))
            .await?;
        }
        if before.resources != now.resources {
            self.send(ServerNotification::ResourceListChangedNotification(
                Default::default(),
            ))
            .await?;
        }
        Ok(())
    }

    async fn resource_updated(&self, uri: String) -> Result<(), ()> {
        self.send(ServerNotification::ResourceUpdatedNotification(
            ResourceUpdatedNotification::new(ResourceUpdatedNotificationParam::new(uri)),
        ))
        .await
    }
}

impl Aggregator {
    pub fn new(hub: Hub, max_tools: usize) -> Aggregator {
        let session = Arc::new(Session {
            hub: hub.clone(),
            subscribed: Mutex::new(HashSet::new()),
            level: Mutex::new(None),
            ended: CancellationToken::new(),
        });
        Aggregator {
            hub,
            max_tools,
            session,
        }
    }

    /// The tools a client sees: all of them, or the first `max_tools` and
    /// the search tool.
    pub fn listed(&self, catalog: &Catalog) -> Vec<Tool> {
        listed(catalog, self.max_tools)
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

/// Tells a client what changed until it goes away: list changes,
/// updates of the resources it subscribed to (`uris` for a listener,
/// the session's own set otherwise) and, for a session, log messages.
async fn notify(
    hub: &Hub,
    max_tools: usize,
    notices: Notices<'_>,
    session: Weak<Session>,
    uris: Option<&HashSet<String>>,
    ended: CancellationToken,
) {
    let mut events = hub.events();
    let mut before = seen(max_tools, &*hub.current_catalog().await);
    let closing = hub.closing();
    loop {
        let event = tokio::select! {
            event = events.recv() => event,
            _ = ended.cancelled() => return,
            _ = closing.cancelled() => return,
        };
        let sent = match event {
            Ok(HubEvent::ListsChanged) | Err(RecvError::Lagged(_)) => {
                let now = seen(max_tools, &*hub.current_catalog().await);
                let sent = notices.lists_changed(&before, &now).await;
                before = now;
                sent
            }
            Ok(HubEvent::ResourceUpdated(uri)) => {
                let wanted = match uris {
                    Some(uris) => uris.contains(&uri),
                    None => session
                        .upgrade()
                        .is_some_and(|s| lock(&s.subscribed).contains(&uri)),
                };
                if wanted {
                    notices.resource_updated(uri).await
                } else {
                    Ok(())
                }
            }
            #[allow(deprecated)]
            Ok(HubEvent::Log(message)) => match (&notices, session.upgrade()) {
                (Notices::Session(peer), Some(session)) => {
                    let level = *lock(&session.level);
                    if level.is_some_and(|l| level_rank(message.level) >= level_rank(l)) {
                        peer.notify_logging_message(message).await.map_err(drop)
                    } else {
                        Ok(())
                    }
                }
                _ => Ok(()),
            },
            Err(RecvError::Closed) => return,
        };
        if sent.is_err() {
            return;
        }
    }
}

fn listed(catalog: &Catalog, max_tools: usize) -> Vec<Tool> {
    if max_tools == 0 || catalog.tools.len() <= max_tools {
        return catalog.tools.clone();
    }
    let mut tools: Vec<Tool> = catalog.tools[..max_tools].to_vec();
    tools.push(search_tool(catalog.tools.len()));
    tools
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

fn subscription_error(error: McpError, uri: &str) -> ErrorData {
    match error {
        McpError::NotFound(message) => {
            ErrorData::resource_not_found(message, Some(json!({"uri": uri})))
        }
        other => ErrorData::internal_error(other.to_string(), None),
    }
}

fn protocol_error(error: McpError) -> ErrorData {
    match error {
        McpError::NotFound(message) => ErrorData::invalid_params(message, None),
        other => ErrorData::internal_error(other.to_string(), None),
    }
}

impl ServerHandler for Aggregator {
    #[allow(deprecated)] // logging, for 2025 clients
    fn get_info(&self) -> ServerConfig {
        InitializeResult::new(
            ServerCapabilities::builder()
                .enable_logging()
                .enable_completions()
                .enable_prompts()
                .enable_resources()
                .enable_tools()
                .enable_tool_list_changed()
                .enable_prompts_list_changed()
                .enable_resources_list_changed()
                .enable_resources_subscribe()
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

    async fn list_resource_templates(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListResourceTemplatesResult, ErrorData> {
        let catalog = self.hub.catalog().await;
        Ok(ListResourceTemplatesResult::with_all_items(
            catalog.resource_templates.clone(),
        ))
    }

    #[allow(deprecated)]
    async fn subscribe(
        &self,
        request: SubscribeRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<(), ErrorData> {
        if lock(&self.session.subscribed).contains(&request.uri) {
            return Ok(());
        }
        self.hub
            .subscribe_resource(&request.uri, context.ct.clone())
            .await
            .map_err(|error| subscription_error(error, &request.uri))?;
        let duplicate = !lock(&self.session.subscribed).insert(request.uri.clone());
        if duplicate {
            // Two requests for one URI raced: keep one subscription.
            self.hub.unsubscribe_resource(&request.uri).await;
        }
        Ok(())
    }

    #[allow(deprecated)]
    async fn unsubscribe(
        &self,
        request: UnsubscribeRequestParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<(), ErrorData> {
        if lock(&self.session.subscribed).remove(&request.uri) {
            self.hub.unsubscribe_resource(&request.uri).await;
        }
        Ok(())
    }

    #[allow(deprecated)]
    async fn set_level(
        &self,
        request: SetLevelRequestParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<(), ErrorData> {
        *lock(&self.session.level) = Some(request.level);
        self.hub.set_log_level(request.level).await;
        Ok(())
    }

    async fn on_initialized(&self, context: NotificationContext<RoleServer>) {
        // A 2025 client: notices go on its session's own channel. The task
        // holds the session weakly, or the session would never end.
        let (hub, max_tools) = (self.hub.clone(), self.max_tools);
        let session = Arc::downgrade(&self.session);
        let ended = self.session.ended.clone();
        tokio::spawn(async move {
            let notices = Notices::Session(context.peer);
            notify(&hub, max_tools, notices, session, None, ended).await;
        });
    }

    fn accepted_subscription_filter(
        &self,
        requested: &SubscriptionFilter,
    ) -> Option<SubscriptionFilter> {
        // Everything asked for; the SDK keeps what the capabilities offer.
        Some(requested.clone())
    }

    async fn listen(&self, context: SubscriptionContext) -> Result<(), ErrorData> {
        // A 2026-07-28 client: notices go on this request's stream, for as
        // long as it stays open.
        let mut held = HashSet::new();
        let mut failed = None;
        for uri in context
            .accepted()
            .resource_subscriptions
            .clone()
            .unwrap_or_default()
        {
            match self
                .hub
                .subscribe_resource(&uri, context.request_context().ct.clone())
                .await
            {
                Ok(()) => {
                    held.insert(uri);
                }
                Err(error) => {
                    failed = Some(subscription_error(error, &uri));
                    break;
                }
            }
        }
        if failed.is_none() {
            let ended = context.request_context().ct.clone();
            let notices = Notices::Listen(&context);
            notify(
                &self.hub,
                self.max_tools,
                notices,
                Weak::new(),
                Some(&held),
                ended,
            )
            .await;
        }
        for uri in &held {
            self.hub.unsubscribe_resource(uri).await;
        }
        failed.map_or(Ok(()), Err)
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
