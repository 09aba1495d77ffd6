//! MCP servers (their configuration without secrets) and the audit log of
//! tool calls made through Orchard's MCP port.

use rusqlite::{OptionalExtension, params};
use serde::Serialize;

use crate::{Result, Store, StoreError, now};

/// A configured server as stored.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct McpServerRecord {
    pub name: String,
    /// The server's configuration as JSON, secret values blanked.
    pub spec: serde_json::Value,
    pub enabled: bool,
    pub added_at: String,
}

/// One tool call, for the audit log.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct McpCall {
    pub at: String,
    /// The API key's id, or `None` when the port needs no key.
    pub client: Option<String>,
    pub tool: String,
    pub duration_ms: u64,
    /// `ok`, `tool_error` (the tool ran and reported a failure), `error`
    /// (the call could not be made) or `timeout`.
    pub outcome: String,
}

impl Store {
    /// Adds a server, or replaces the one of that name when `replace`.
    pub fn put_mcp_server(
        &self,
        name: &str,
        spec: &serde_json::Value,
        enabled: bool,
        replace: bool,
    ) -> Result<McpServerRecord> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        let existing: Option<String> = tx
            .query_row(
                "SELECT added_at FROM mcp_servers WHERE name = ?1",
                params![name],
                |row| row.get(0),
            )
            .optional()?;
        if existing.is_some() && !replace {
            return Err(StoreError::Invalid(format!(
                "an MCP server named {name:?} already exists; remove it first or choose another name"
            )));
        }
        let added_at = existing.unwrap_or_else(now);
        tx.execute(
            "INSERT INTO mcp_servers (name, spec, enabled, added_at) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (name) DO UPDATE SET spec = excluded.spec, enabled = excluded.enabled",
            params![name, spec.to_string(), enabled, added_at],
        )?;
        tx.execute("UPDATE mcp_revision SET revision = revision + 1", [])?;
        tx.commit()?;
        Ok(McpServerRecord {
            name: name.to_string(),
            spec: spec.clone(),
            enabled,
            added_at,
        })
    }

    /// Turns a server on or off.
    pub fn set_mcp_server_enabled(&self, name: &str, enabled: bool) -> Result<()> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        let changed = tx.execute(
            "UPDATE mcp_servers SET enabled = ?2 WHERE name = ?1",
            params![name, enabled],
        )?;
        if changed == 0 {
            return Err(StoreError::NotFound(format!(
                "no MCP server named {name:?}"
            )));
        }
        tx.execute("UPDATE mcp_revision SET revision = revision + 1", [])?;
        tx.commit()?;
        Ok(())
    }

    /// Removes a server; false when there was none of that name.
    pub fn remove_mcp_server(&self, name: &str) -> Result<bool> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        let removed = tx.execute("DELETE FROM mcp_servers WHERE name = ?1", params![name])?;
        tx.execute("UPDATE mcp_revision SET revision = revision + 1", [])?;
        tx.commit()?;
        Ok(removed > 0)
    }

    /// Every configured server, by name.
    pub fn mcp_servers(&self) -> Result<Vec<McpServerRecord>> {
        let conn = self.conn();
        let mut stmt =
            conn.prepare("SELECT name, spec, enabled, added_at FROM mcp_servers ORDER BY name")?;
        let rows = stmt.query_map([], |row| {
            Ok((
                row.get::<_, String>(0)?,
                row.get::<_, String>(1)?,
                row.get::<_, bool>(2)?,
                row.get::<_, String>(3)?,
            ))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (name, spec, enabled, added_at) = row?;
            let spec = serde_json::from_str(&spec).map_err(|e| {
                StoreError::Unreadable(format!(
                    "MCP server {name:?} has an unreadable configuration: {e}"
                ))
            })?;
            out.push(McpServerRecord {
                name,
                spec,
                enabled,
                added_at,
            });
        }
        Ok(out)
    }

    /// A number that changes whenever the servers do.
    pub fn mcp_revision(&self) -> Result<i64> {
        let conn = self.conn();
        Ok(conn.query_row(
            "SELECT revision FROM mcp_revision WHERE id = 1",
            [],
            |row| row.get(0),
        )?)
    }

    /// Writes one tool call to the audit log.
    pub fn record_mcp_call(&self, call: &McpCall) -> Result<()> {
        self.record_mcp_calls(std::slice::from_ref(call))
    }

    /// Writes tool calls to the audit log in one transaction: all or none.
    pub fn record_mcp_calls(&self, calls: &[McpCall]) -> Result<()> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        {
            let mut insert = tx.prepare_cached(
                "INSERT INTO mcp_calls (at, client, tool, duration_ms, outcome) VALUES (?1, ?2, ?3, ?4, ?5)",
            )?;
            for call in calls {
                insert.execute(params![
                    call.at,
                    call.client,
                    call.tool,
                    i64::try_from(call.duration_ms).unwrap_or(i64::MAX),
                    call.outcome
                ])?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    /// Deletes the tool calls older than `days` days; how many went.
    pub fn prune_mcp_calls(&self, days: u32) -> Result<usize> {
        let cutoff = chrono::Utc::now() - chrono::Duration::days(i64::from(days));
        let cutoff = cutoff.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
        let conn = self.conn();
        // `at` is RFC 3339 in UTC with a fixed width, so text order is time order.
        Ok(conn.execute("DELETE FROM mcp_calls WHERE at < ?1", params![cutoff])?)
    }

    /// The latest `limit` tool calls, newest first.
    pub fn mcp_calls(&self, limit: usize) -> Result<Vec<McpCall>> {
        let conn = self.conn();
        let mut stmt = conn.prepare(
            "SELECT at, client, tool, duration_ms, outcome FROM mcp_calls ORDER BY id DESC LIMIT ?1",
        )?;
        let rows = stmt.query_map(params![i64::try_from(limit).unwrap_or(i64::MAX)], |row| {
            Ok(McpCall {
                at: row.get(0)?,
                client: row.get(1)?,
                tool: row.get(2)?,
                duration_ms: u64::try_from(row.get::<_, i64>(3)?).unwrap_or(0),
                outcome: row.get(4)?,
            })
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// The current time as the audit log writes it.
    pub fn mcp_call_time() -> String {
        now()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn servers_are_added_replaced_toggled_and_removed_and_each_change_bumps_the_revision() {
        let dir = tempfile::tempdir().expect("tmp");
        let store = Store::open(&dir.path().join("orchard.db")).expect("open");
        let r0 = store.mcp_revision().expect("revision");
        let spec = json!({"name": "time", "transport": {"type": "stdio", "command": "uvx"}});
        store
            .put_mcp_server("time", &spec, true, false)
            .expect("add");
        let again = store.put_mcp_server("time", &spec, true, false);
        assert!(matches!(again, Err(StoreError::Invalid(_))), "{again:?}");
        let changed = json!({"name": "time", "transport": {"type": "stdio", "command": "uv"}});
        store
            .put_mcp_server("time", &changed, true, true)
            .expect("replace");
        store
            .set_mcp_server_enabled("time", false)
            .expect("disable");
        let listed = store.mcp_servers().expect("list");
        assert_eq!(listed.len(), 1);
        assert_eq!(
            (listed[0].spec.clone(), listed[0].enabled),
            (changed, false)
        );
        assert!(store.set_mcp_server_enabled("nope", true).is_err());
        assert_eq!(store.mcp_revision().expect("revision"), r0 + 3);
        // Another connection to the same file sees the change.
        let other = Store::open(&dir.path().join("orchard.db")).expect("open");
        assert!(other.remove_mcp_server("time").expect("remove"));
        assert!(!other.remove_mcp_server("time").expect("gone"));
        assert_eq!(store.mcp_revision().expect("revision"), r0 + 5);
        assert!(store.mcp_servers().expect("list").is_empty());
    }

    #[test]
    fn tool_calls_are_kept_newest_first() {
        let store = Store::open_in_memory().expect("open");
        for (tool, outcome) in [("a__x", "ok"), ("b__y", "timeout")] {
            store
                .record_mcp_call(&McpCall {
                    at: Store::mcp_call_time(),
                    client: Some("key_1".into()),
                    tool: tool.into(),
                    duration_ms: 12,
                    outcome: outcome.into(),
                })
                .expect("record");
        }
        let calls = store.mcp_calls(10).expect("calls");
        assert_eq!(
            calls.iter().map(|c| c.tool.as_str()).collect::<Vec<_>>(),
            ["b__y", "a__x"]
        );
        assert_eq!(calls[0].outcome, "timeout");
        // Old calls are pruned, recent ones kept.
        store
            .record_mcp_call(&McpCall {
                at: "2020-01-01T00:00:00Z".into(),
                client: None,
                tool: "old__call".into(),
                duration_ms: 1,
                outcome: "ok".into(),
            })
            .expect("record");
        assert_eq!(store.prune_mcp_calls(30).expect("prune"), 1);
        assert_eq!(store.mcp_calls(10).expect("calls").len(), 2);
    }
}
