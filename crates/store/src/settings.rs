//! Settings: each one a row (`key`, JSON `value`); a missing row means the
//! default. Unknown keys and values of the wrong type or range are refused
//! before they are written.

use rusqlite::params;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::{Result, Store, StoreError};

/// Everything the user can change, with the defaults a new install gets.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Settings {
    /// The address the API port binds to.
    pub host: String,
    /// The API port.
    pub port: u16,
    /// Whether requests need an API key. Binding beyond localhost forces it on.
    pub require_api_key: bool,
    /// Load a downloaded model when a request names it.
    pub jit_loading: bool,
    /// Unload a model idle this long (0 keeps models loaded).
    pub idle_ttl_minutes: u64,
    /// Loaded models' weights may use at most this share of the RAM.
    pub memory_budget_percent: u8,
    /// At most this many models loaded at once.
    pub max_loaded_models: usize,
    /// Requests that may wait per model before new ones get 429.
    pub queue_capacity: usize,
    /// Largest request body accepted, in bytes.
    pub max_request_bytes: usize,
    /// On shutdown, requests in flight get this long to finish.
    pub shutdown_grace_seconds: u64,
    /// Host names (no port) clients may call the port by, besides 127.0.0.1,
    /// localhost and [::1]: for serving beyond this machine. Other `Host`
    /// headers are refused (DNS rebinding).
    pub allowed_hosts: Vec<String>,
    /// Web origins (`https://app.example`) allowed to call from a browser,
    /// besides the app's own windows.
    pub allowed_origins: Vec<String>,
    /// On the CPU backend, run quantized models dequantized to float32:
    /// "auto" (when that fits in the memory budget), "on" or "off".
    pub cpu_fast_path: String,
    /// Sequences each model generates at once (continuous batching); more
    /// requests wait in its queue.
    pub max_sequences: usize,
    /// Days a stored response (`/v1/responses` with `store`) is kept for
    /// `previous_response_id`.
    pub responses_retention_days: u64,
    /// The longest an MCP tool call (or prompt or resource read) may take
    /// before it is cancelled. Tool calls are never retried.
    pub mcp_call_timeout_seconds: u64,
    /// At most this many tools are listed on `/mcp` (0: all); the others
    /// are found through its `orchard__search_tools` tool.
    pub mcp_max_tools: usize,
    /// Fetch the `http(s)` image URLs of chat requests (off: only images
    /// sent inline, as `data:` URLs or base64, are read).
    pub fetch_image_urls: bool,
}

/// The longest idle time-to-live, in minutes.
pub const MAX_IDLE_TTL_MINUTES: u64 = 525_600;

impl Default for Settings {
    fn default() -> Self {
        Settings {
            host: "127.0.0.1".into(),
            port: 10240,
            require_api_key: true,
            jit_loading: true,
            idle_ttl_minutes: 30,
            memory_budget_percent: 75,
            max_loaded_models: 4,
            queue_capacity: 16,
            max_request_bytes: 32 << 20,
            shutdown_grace_seconds: 30,
            allowed_hosts: Vec::new(),
            allowed_origins: Vec::new(),
            cpu_fast_path: "auto".into(),
            max_sequences: 32,
            responses_retention_days: 30,
            mcp_call_timeout_seconds: 60,
            mcp_max_tools: 0,
            fetch_image_urls: true,
        }
    }
}

impl Settings {
    /// Checks the ranges that types alone do not.
    pub fn validate(&self) -> Result<()> {
        let fail = |message: &str| Err(StoreError::Invalid(message.into()));
        if self.host != "localhost" && self.host.parse::<std::net::IpAddr>().is_err() {
            return fail(
                "host must be an IP address to listen on (127.0.0.1, ::1, 0.0.0.0) or localhost",
            );
        }
        let loopback = self.host == "localhost"
            || self
                .host
                .parse::<std::net::IpAddr>()
                .is_ok_and(|ip| ip.is_loopback());
        if !self.require_api_key && !loopback {
            return fail(
                "require_api_key must stay on when the host is beyond this machine; bind 127.0.0.1 to serve without keys",
            );
        }
        // A year: longer is "never", which 0 already says.
        if self.idle_ttl_minutes > MAX_IDLE_TTL_MINUTES {
            return fail("idle_ttl_minutes must be at most 525600 (a year); 0 keeps models loaded");
        }
        if !(1..=100).contains(&self.memory_budget_percent) {
            return fail("memory_budget_percent must be between 1 and 100");
        }
        if self.max_loaded_models == 0 {
            return fail("max_loaded_models must be at least 1");
        }
        if self.queue_capacity == 0 {
            return fail("queue_capacity must be at least 1");
        }
        if !["auto", "on", "off"].contains(&self.cpu_fast_path.as_str()) {
            return fail("cpu_fast_path must be \"auto\", \"on\" or \"off\"");
        }
        if !(1..=256).contains(&self.max_sequences) {
            return fail("max_sequences must be between 1 and 256");
        }
        if !(1..=3650).contains(&self.responses_retention_days) {
            return fail("responses_retention_days must be between 1 and 3650");
        }
        if !(1..=3600).contains(&self.mcp_call_timeout_seconds) {
            return fail("mcp_call_timeout_seconds must be between 1 and 3600");
        }
        if self.mcp_max_tools > 10_000 {
            return fail("mcp_max_tools must be at most 10000; 0 lists every tool");
        }
        if self.max_request_bytes < 1024 {
            return fail("max_request_bytes must be at least 1024");
        }
        let bad_host =
            |h: &String| h.trim().is_empty() || h.contains(['/', ' ', '@']) || h.contains("://");
        if self.allowed_hosts.iter().any(bad_host) {
            return fail(
                "allowed_hosts takes host names or addresses, like \"studio.local\" or \"192.168.1.5\" (no scheme, path or port)",
            );
        }
        let bad_origin = |o: &String| {
            let rest = o
                .strip_prefix("https://")
                .or_else(|| o.strip_prefix("http://"));
            rest.is_none_or(|r| r.is_empty() || r.contains('/'))
        };
        if self.allowed_origins.iter().any(bad_origin) {
            return fail(
                "allowed_origins takes origins like \"https://app.example\" (scheme and host, no path)",
            );
        }
        Ok(())
    }

    /// The names of the settings.
    pub fn keys() -> Vec<String> {
        match serde_json::to_value(Settings::default()) {
            Ok(Value::Object(map)) => map.keys().cloned().collect(),
            _ => Vec::new(),
        }
    }
}

impl Store {
    /// The settings, defaults filled in.
    pub fn settings(&self) -> Result<Settings> {
        let conn = self.conn();
        let mut stmt = conn.prepare("SELECT key, value FROM settings")?;
        let rows = stmt.query_map([], |row| {
            Ok((row.get::<_, String>(0)?, row.get::<_, String>(1)?))
        })?;
        let mut map = Map::new();
        for row in rows {
            let (key, value) = row?;
            // A row this version does not know (written by a newer one) is skipped.
            if Settings::keys().contains(&key) {
                let value = serde_json::from_str(&value).map_err(|e| {
                    StoreError::Unreadable(format!("setting {key} holds bad JSON: {e}"))
                })?;
                map.insert(key, value);
            }
        }
        serde_json::from_value(Value::Object(map))
            .map_err(|e| StoreError::Unreadable(format!("stored settings are invalid: {e}")))
    }

    /// Sets several settings at once: all are checked together, then all
    /// are stored, or none.
    pub fn set_settings(&self, values: &serde_json::Map<String, Value>) -> Result<Settings> {
        if let Some(key) = values.keys().find(|k| !Settings::keys().contains(k)) {
            return Err(StoreError::NotFound(format!(
                "there is no setting {key:?}; the settings are: {}",
                Settings::keys().join(", ")
            )));
        }
        let mut merged = serde_json::to_value(self.settings()?)
            .map_err(|e| StoreError::Unreadable(e.to_string()))?;
        for (key, value) in values {
            merged[key] = value.clone();
        }
        let settings: Settings = serde_json::from_value(merged)
            .map_err(|e| StoreError::Invalid(format!("bad settings: {e}")))?;
        settings.validate()?;
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        for (key, value) in values {
            tx.execute(
                "INSERT INTO settings (key, value) VALUES (?1, ?2)
                 ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                params![key, value.to_string()],
            )?;
        }
        tx.commit()?;
        Ok(settings)
    }

    /// Sets one setting after checking its name, type and range.
    pub fn set_setting(&self, key: &str, value: Value) -> Result<Settings> {
        if !Settings::keys().iter().any(|k| k == key) {
            return Err(StoreError::NotFound(format!(
                "there is no setting {key:?}; the settings are: {}",
                Settings::keys().join(", ")
            )));
        }
        let mut merged = serde_json::to_value(self.settings()?)
            .map_err(|e| StoreError::Unreadable(e.to_string()))?;
        merged[key] = value.clone();
        let settings: Settings = serde_json::from_value(merged)
            .map_err(|e| StoreError::Invalid(format!("bad value for {key}: {e}")))?;
        settings.validate()?;
        self.conn().execute(
            "INSERT INTO settings (key, value) VALUES (?1, ?2)
             ON CONFLICT(key) DO UPDATE SET value = excluded.value",
            params![key, value.to_string()],
        )?;
        Ok(settings)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_host_that_cannot_be_listened_on_and_an_endless_ttl_are_refused() {
        let store = Store::open_in_memory().expect("store");
        for host in ["foo bar", "", "example.com"] {
            assert!(store.set_setting("host", json!(host)).is_err(), "{host}");
        }
        for host in ["localhost", "127.0.0.1", "::1", "0.0.0.0"] {
            store.set_setting("host", json!(host)).expect(host);
        }
        assert!(
            store
                .set_setting("idle_ttl_minutes", json!(u64::MAX))
                .is_err()
        );
        store
            .set_setting("idle_ttl_minutes", json!(MAX_IDLE_TTL_MINUTES))
            .expect("a year");
    }

    #[test]
    fn defaults_until_set_and_kept_across_reopening() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("orchard.db");
        let store = Store::open(&path).expect("open");
        assert_eq!(store.settings().expect("settings"), Settings::default());
        store.set_setting("port", json!(8080)).expect("set port");
        drop(store);
        let settings = Store::open(&path)
            .expect("reopen")
            .settings()
            .expect("settings");
        assert_eq!(settings.port, 8080);
        assert_eq!(settings.host, "127.0.0.1");
    }

    #[test]
    fn bad_settings_are_refused_and_nothing_is_written() {
        let store = Store::open_in_memory().expect("store");
        let unknown = store
            .set_setting("colour", json!("red"))
            .expect_err("unknown");
        assert!(
            unknown.to_string().contains("idle_ttl_minutes"),
            "{unknown}"
        );
        let wrong_type = store.set_setting("port", json!("high")).expect_err("type");
        assert!(wrong_type.to_string().contains("port"), "{wrong_type}");
        let range = store
            .set_setting("memory_budget_percent", json!(150))
            .expect_err("range");
        assert!(range.to_string().contains("between 1 and 100"), "{range}");
        for bad in [json!(["http://studio.local"]), json!(["a/b"]), json!([""])] {
            let err = store.set_setting("allowed_hosts", bad).expect_err("host");
            assert!(err.to_string().contains("allowed_hosts"), "{err}");
        }
        let err = store
            .set_setting("allowed_origins", json!(["app.example"]))
            .expect_err("origin without scheme");
        assert!(err.to_string().contains("allowed_origins"), "{err}");
        let err = store
            .set_setting("cpu_fast_path", json!("fast"))
            .expect_err("not a choice");
        assert!(
            err.to_string().contains("\"auto\", \"on\" or \"off\""),
            "{err}"
        );
        let err = store
            .set_setting("max_sequences", json!(0))
            .expect_err("no sequence");
        assert!(err.to_string().contains("max_sequences"), "{err}");
        assert_eq!(store.settings().expect("settings"), Settings::default());
        store
            .set_setting("cpu_fast_path", json!("off"))
            .expect("off");
        store.set_setting("max_sequences", json!(8)).expect("8");
        store
            .set_setting("cpu_fast_path", json!("auto"))
            .expect("auto");
        store.set_setting("max_sequences", json!(32)).expect("32");
        let set = store
            .set_setting("allowed_hosts", json!(["studio.local"]))
            .expect("a host name");
        assert_eq!(set.allowed_hosts, ["studio.local"]);
    }
}
