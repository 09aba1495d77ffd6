//! The user's MCP servers in Orchard's database: their configuration in
//! SQLite, the values of their `env` and `headers` with the other secrets,
//! and the [`Hub`] that runs them.

use std::collections::BTreeMap;
use std::sync::Arc;

use orchard_mcp::config::{self, Imported};
use orchard_mcp::{Hub, HubOptions, ServerSpec, SpecSource};
use orchard_store::Store;

use crate::secrets::Secrets;

pub use orchard_mcp::{Aggregator, McpError, ServerStatus, builtin};

/// The configured servers: reads and changes them.
#[derive(Debug, Clone)]
pub struct McpServers {
    store: Store,
    /// None where there is no data folder (a `--no-state` run): servers
    /// with secret values cannot be kept then.
    secrets: Option<Secrets>,
}

impl McpServers {
    pub fn new(store: Store, secrets: Option<Secrets>) -> Self {
        McpServers { store, secrets }
    }

    /// A hub that runs these servers (and the built-in one), following
    /// every change made here or by another process.
    pub fn hub(&self, options: HubOptions) -> Hub {
        Hub::with_source(options, Arc::new(self.clone()))
    }

    /// Adds `spec`, or replaces the server of that name when `replace`.
    pub fn add(&self, spec: &ServerSpec, replace: bool) -> Result<(), String> {
        spec.validate()?;
        if spec.name == builtin::NAME {
            return Err(format!(
                "{:?} is the built-in server's name; choose another",
                builtin::NAME
            ));
        }
        let stored = ServerSpec {
            transport: spec.transport.without_secrets(),
            ..spec.clone()
        };
        let json = serde_json::to_value(&stored).map_err(|e| e.to_string())?;
        let values = spec.transport.secrets();
        // The secrets first: a server whose row exists always finds them.
        if values.values().any(|v| !v.is_empty()) {
            let secrets = self
                .secrets
                .as_ref()
                .ok_or("this Orchard has no data folder to keep the server's env or headers in")?;
            let text = serde_json::to_string(values).map_err(|e| e.to_string())?;
            secrets.set(&secret_name(&spec.name), &text)?;
        } else if let Some(secrets) = &self.secrets {
            secrets.delete(&secret_name(&spec.name))?;
        }
        self.store
            .put_mcp_server(&spec.name, &json, spec.enabled, replace)
            .map(|_| ())
            .map_err(|e| e.to_string())
    }

    /// Removes a server and its secrets; false when there was none.
    pub fn remove(&self, name: &str) -> Result<bool, String> {
        let removed = self
            .store
            .remove_mcp_server(name)
            .map_err(|e| e.to_string())?;
        if let Some(secrets) = &self.secrets
            && config::check_name(name).is_ok()
        {
            secrets.delete(&secret_name(name))?;
        }
        Ok(removed)
    }

    /// Turns a server on or off.
    pub fn set_enabled(&self, name: &str, enabled: bool) -> Result<(), String> {
        self.store
            .set_mcp_server_enabled(name, enabled)
            .map_err(|e| e.to_string())
    }

    /// Adds every server of an `mcpServers` or VS Code `servers` file, with
    /// `${env:VAR}` filled from this process's environment. With `replace`,
    /// servers of the same name are replaced; otherwise a clash is an error
    /// and nothing is added.
    pub fn import(&self, text: &str, replace: bool) -> Result<Imported, String> {
        let imported = config::import(text, |var| std::env::var(var).ok())?;
        if !replace {
            let existing = self.store.mcp_servers().map_err(|e| e.to_string())?;
            let clashes: Vec<&str> = imported
                .servers
                .iter()
                .filter(|s| existing.iter().any(|e| e.name == s.name) || s.name == builtin::NAME)
                .map(|s| s.name.as_str())
                .collect();
            if !clashes.is_empty() {
                return Err(format!(
                    "already configured: {}; remove them first, or import with --replace",
                    clashes.join(", ")
                ));
            }
        }
        for spec in &imported.servers {
            self.add(spec, replace)?;
        }
        Ok(imported)
    }

    /// The configured servers, secret values included.
    pub fn list(&self) -> Result<Vec<ServerSpec>, String> {
        let records = self.store.mcp_servers().map_err(|e| e.to_string())?;
        let mut specs = Vec::with_capacity(records.len());
        for record in records {
            let mut spec: ServerSpec = serde_json::from_value(record.spec).map_err(|e| {
                format!(
                    "MCP server {:?} has an unreadable configuration: {e}",
                    record.name
                )
            })?;
            spec.enabled = record.enabled;
            if let Some(secrets) = &self.secrets
                && let Some(text) = secrets.get(&secret_name(&spec.name))
            {
                let values: BTreeMap<String, String> =
                    serde_json::from_str(&text).map_err(|e| {
                        format!(
                            "the secrets of MCP server {:?} are unreadable: {e}",
                            spec.name
                        )
                    })?;
                spec.transport = spec.transport.with_secrets(values);
            }
            specs.push(spec);
        }
        Ok(specs)
    }
}

impl SpecSource for McpServers {
    fn revision(&self) -> Result<i64, String> {
        self.store.mcp_revision().map_err(|e| e.to_string())
    }

    fn specs(&self) -> Result<Vec<ServerSpec>, String> {
        self.list()
    }
}

/// Days the audit log keeps a tool call.
pub const AUDIT_DAYS: u32 = 30;
/// The log is pruned after this many calls (and when it is opened).
const PRUNE_EVERY: u64 = 1000;
/// The most calls written in one transaction.
const AUDIT_BATCH: usize = 512;

/// Writes each tool call to the database's audit log, which keeps the last
/// [`AUDIT_DAYS`] days.
///
/// A call only queues its record: a thread of its own writes what has
/// queued in one transaction, so a burst of calls costs one commit and no
/// call waits on the database. The thread ends, after writing the rest,
/// when the hub drops the sink.
pub fn audit_log(store: Store) -> orchard_mcp::AuditSink {
    let (queue, records) = std::sync::mpsc::channel::<orchard_store::McpCall>();
    let spawned = std::thread::Builder::new()
        .name("orchard-mcp-audit".into())
        .spawn(move || write_audit(&store, &records));
    if let Err(e) = spawned {
        tracing::warn!(target: "orchard::mcp", error = %e, "cannot start the MCP audit log's writer");
    }
    Arc::new(move |call: &orchard_mcp::CallRecord| {
        let record = orchard_store::McpCall {
            at: Store::mcp_call_time(),
            client: call.caller.clone(),
            tool: format!(
                "{}{}{}",
                call.server,
                orchard_mcp::names::SEPARATOR,
                call.tool
            ),
            duration_ms: u64::try_from(call.duration.as_millis()).unwrap_or(u64::MAX),
            outcome: call.outcome.to_string(),
        };
        if queue.send(record).is_err() {
            tracing::warn!(target: "orchard::mcp", "the MCP audit log's writer has stopped; a call was not logged");
        }
    })
}

/// The audit log's writer: waits for a record, then writes it with every
/// other one already queued.
fn write_audit(store: &Store, records: &std::sync::mpsc::Receiver<orchard_store::McpCall>) {
    let prune = |store: &Store| {
        if let Err(e) = store.prune_mcp_calls(AUDIT_DAYS) {
            tracing::warn!(target: "orchard::mcp", error = %e, "cannot prune the MCP audit log");
        }
    };
    prune(store);
    let mut written: u64 = 0;
    while let Ok(first) = records.recv() {
        let mut batch = vec![first];
        while batch.len() < AUDIT_BATCH {
            match records.try_recv() {
                Ok(record) => batch.push(record),
                Err(_) => break,
            }
        }
        if let Err(e) = store.record_mcp_calls(&batch) {
            tracing::warn!(target: "orchard::mcp", error = %e, calls = batch.len(), "cannot write the MCP audit log");
        }
        let before = written;
        written += batch.len() as u64;
        if before / PRUNE_EVERY != written / PRUNE_EVERY {
            prune(store);
        }
    }
}

/// Where a server's `env` or `headers` values are kept.
fn secret_name(server: &str) -> String {
    format!("mcp-server-{server}")
}

#[cfg(all(test, unix, not(target_os = "macos")))]
mod tests {
    use super::*;

    #[tokio::test]
    async fn an_imported_server_keeps_its_secrets_apart_and_a_running_hub_sees_it() {
        let dir = tempfile::tempdir().expect("tmp");
        let store = Store::open(&dir.path().join("orchard.db")).expect("store");
        let servers = McpServers::new(store.clone(), Some(Secrets::new(dir.path().to_path_buf())));
        let hub = servers.hub(HubOptions::default());
        assert_eq!(hub.status(false).await.len(), 1, "only the built-in server");
        let file = r#"{"mcpServers": {
            "remote": {"url": "http://127.0.0.1:9/mcp", "headers": {"Authorization": "Bearer tok_123"}}
        }}"#;
        servers.import(file, false).expect("import");
        // The database holds the header's name, never its value.
        let row = store.mcp_servers().expect("rows");
        assert!(
            !row[0].spec.to_string().contains("tok_123"),
            "{}",
            row[0].spec
        );
        let listed = servers.list().expect("list");
        assert_eq!(
            listed[0]
                .transport
                .secrets()
                .get("Authorization")
                .map(String::as_str),
            Some("Bearer tok_123")
        );
        // Importing the same file again clashes, unless replacing.
        assert!(
            servers
                .import(file, false)
                .expect_err("clash")
                .contains("remote")
        );
        servers.import(file, true).expect("replace");
        // The hub picks the change up without a restart.
        let names: Vec<String> = hub
            .status(false)
            .await
            .into_iter()
            .map(|s| s.name)
            .collect();
        assert_eq!(names, ["orchard-tools", "remote"]);
        assert!(servers.remove("remote").expect("remove"));
        assert!(servers.list().expect("list").is_empty());
        assert_eq!(hub.status(false).await.len(), 1);
        assert!(
            servers
                .add(
                    &ServerSpec {
                        name: builtin::NAME.into(),
                        ..listed[0].clone()
                    },
                    false
                )
                .expect_err("reserved")
                .contains("built-in")
        );
    }
}
