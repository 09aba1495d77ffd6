//! API keys for the local port. A key is shown once, when it is made; the
//! database keeps only its SHA-256. Keys are 256 random bits, so a plain hash
//! cannot be brute-forced and needs no salt.

use std::fmt;

use rusqlite::{OptionalExtension, params};
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::{Result, Store, StoreError, now};

/// What every key starts with, so that it is recognisable in a config file.
const KEY_PREFIX: &str = "orch-";
/// Characters of a key kept in the clear for listings.
const SHOWN_CHARS: usize = 12;
/// How often a key's `last_used_at` is written at most: a busy client would
/// otherwise make every request a database write.
const USE_RECORD_INTERVAL: chrono::TimeDelta = chrono::TimeDelta::minutes(1);

/// A key just made: the only time its secret is known.
#[derive(Clone)]
pub struct NewApiKey {
    pub id: i64,
    pub name: String,
    pub secret: String,
}

impl fmt::Debug for NewApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NewApiKey")
            .field("id", &self.id)
            .field("name", &self.name)
            .field("secret", &"<redacted>")
            .finish()
    }
}

/// A key as listed: no secret, only its first characters.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ApiKeyInfo {
    pub id: i64,
    pub name: String,
    /// The key's first characters, followed by "...".
    pub prefix: String,
    pub created_at: String,
    pub last_used_at: Option<String>,
    pub revoked_at: Option<String>,
}

/// The stored form of a secret.
pub(crate) fn hash_secret(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

impl Store {
    /// Makes a key named `name` and returns its secret (not stored).
    pub fn create_api_key(&self, name: &str) -> Result<NewApiKey> {
        let name = name.trim();
        if name.is_empty() || name.chars().count() > 64 {
            return Err(StoreError::Invalid(
                "a key's name must have 1 to 64 characters".into(),
            ));
        }
        let mut bytes = [0u8; 32];
        getrandom::fill(&mut bytes).map_err(|e| {
            StoreError::Unreadable(format!("the system's random source failed: {e}"))
        })?;
        let secret = format!("{KEY_PREFIX}{}", hex::encode(bytes));
        let prefix = format!("{}...", &secret[..SHOWN_CHARS]);
        let conn = self.conn();
        conn.execute(
            "INSERT INTO api_keys (name, prefix, hash, created_at) VALUES (?1, ?2, ?3, ?4)",
            params![name, prefix, hash_secret(&secret), now()],
        )?;
        Ok(NewApiKey {
            id: conn.last_insert_rowid(),
            name: name.to_string(),
            secret,
        })
    }

    /// Every key, revoked ones included, oldest first.
    pub fn list_api_keys(&self) -> Result<Vec<ApiKeyInfo>> {
        let conn = self.conn();
        let mut stmt = conn.prepare(
            "SELECT id, name, prefix, created_at, last_used_at, revoked_at FROM api_keys ORDER BY id",
        )?;
        let rows = stmt.query_map([], |row| {
            Ok(ApiKeyInfo {
                id: row.get(0)?,
                name: row.get(1)?,
                prefix: row.get(2)?,
                created_at: row.get(3)?,
                last_used_at: row.get(4)?,
                revoked_at: row.get(5)?,
            })
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// Whether any key can still be used.
    pub fn has_active_api_key(&self) -> Result<bool> {
        let count: i64 = self.conn().query_row(
            "SELECT COUNT(*) FROM api_keys WHERE revoked_at IS NULL",
            [],
            |row| row.get(0),
        )?;
        Ok(count > 0)
    }

    /// Revokes key `id`; it stops working at once. Revoking twice is not an error.
    pub fn revoke_api_key(&self, id: i64) -> Result<()> {
        let conn = self.conn();
        let changed = conn.execute(
            "UPDATE api_keys SET revoked_at = COALESCE(revoked_at, ?2) WHERE id = ?1",
            params![id, now()],
        )?;
        if changed == 0 {
            return Err(StoreError::NotFound(format!(
                "no API key has id {id}; `orchard keys list` shows them"
            )));
        }
        Ok(())
    }

    /// The id of the live key whose secret this is, recording its use.
    ///
    /// The use is recorded at most once a minute per key, and only when the
    /// database is free at once: a request never waits for, or fails on, this
    /// bookkeeping. A skipped record is logged and made by a later request.
    pub fn verify_api_key(&self, secret: &str) -> Result<Option<i64>> {
        let conn = self.conn();
        let found: Option<(i64, Option<String>)> = conn
            .query_row(
                "SELECT id, last_used_at FROM api_keys WHERE hash = ?1 AND revoked_at IS NULL",
                params![hash_secret(secret)],
                |row| Ok((row.get(0)?, row.get(1)?)),
            )
            .optional()?;
        let Some((id, last_used_at)) = found else {
            return Ok(None);
        };
        if used_recently(last_used_at.as_deref()) {
            return Ok(Some(id));
        }
        // Another process holding the write lock must not hold up the request:
        // try the write without waiting, then restore the usual wait.
        conn.busy_timeout(std::time::Duration::ZERO)?;
        let written = conn.execute(
            "UPDATE api_keys SET last_used_at = ?2 WHERE id = ?1",
            params![id, now()],
        );
        conn.busy_timeout(crate::BUSY_TIMEOUT)?;
        if let Err(e) = written {
            tracing::info!(key_id = id, error = %e, "did not record the API key's use this time");
        }
        Ok(Some(id))
    }
}

/// Whether a key's recorded last use is less than [`USE_RECORD_INTERVAL`] old.
/// An unreadable value is rewritten.
fn used_recently(last_used_at: Option<&str>) -> bool {
    let Some(at) = last_used_at.and_then(|at| chrono::DateTime::parse_from_rfc3339(at).ok()) else {
        return false;
    };
    let age = chrono::Utc::now().signed_duration_since(at);
    // A time in the future (the clock was set back) is rewritten too.
    age >= chrono::TimeDelta::zero() && age < USE_RECORD_INTERVAL
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_works_until_revoked_and_only_its_hash_is_stored() {
        let store = Store::open_in_memory().expect("store");
        let key = store.create_api_key("editor").expect("create");
        assert!(key.secret.starts_with(KEY_PREFIX));
        assert!(!format!("{key:?}").contains(&key.secret));
        assert_eq!(
            store.verify_api_key(&key.secret).expect("verify"),
            Some(key.id)
        );
        assert_eq!(store.verify_api_key("orch-wrong").expect("verify"), None);

        let stored: String = store
            .conn()
            .query_row("SELECT hash FROM api_keys", [], |row| row.get(0))
            .expect("row");
        assert_eq!(stored, hash_secret(&key.secret));
        assert!(!stored.contains(&key.secret[KEY_PREFIX.len()..]));

        let listed = store.list_api_keys().expect("list");
        assert_eq!(listed.len(), 1);
        assert!(
            key.secret
                .starts_with(listed[0].prefix.trim_end_matches("..."))
        );
        assert!(listed[0].last_used_at.is_some());

        store.revoke_api_key(key.id).expect("revoke");
        assert_eq!(store.verify_api_key(&key.secret).expect("verify"), None);
        assert!(!store.has_active_api_key().expect("active"));
        store
            .revoke_api_key(key.id)
            .expect("revoking twice is fine");
        assert!(matches!(
            store.revoke_api_key(key.id + 1),
            Err(StoreError::NotFound(_))
        ));
    }

    /// The stored `last_used_at` of key `id`.
    fn last_used_at(store: &Store, id: i64) -> Option<String> {
        store
            .conn()
            .query_row(
                "SELECT last_used_at FROM api_keys WHERE id = ?1",
                params![id],
                |row| row.get(0),
            )
            .expect("row")
    }

    fn set_last_used_at(store: &Store, id: i64, at: chrono::DateTime<chrono::Utc>) -> String {
        let at = at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
        store
            .conn()
            .execute(
                "UPDATE api_keys SET last_used_at = ?2 WHERE id = ?1",
                params![id, at],
            )
            .expect("set last_used_at");
        at
    }

    #[test]
    fn last_used_at_is_written_at_most_once_a_minute() {
        let store = Store::open_in_memory().expect("store");
        let key = store.create_api_key("busy client").expect("create");
        assert_eq!(
            store.verify_api_key(&key.secret).expect("verify"),
            Some(key.id)
        );
        assert!(
            last_used_at(&store, key.id).is_some(),
            "the first use is recorded"
        );

        // A second request straight after writes nothing at all.
        let writes = store.conn().total_changes();
        assert_eq!(
            store.verify_api_key(&key.secret).expect("verify"),
            Some(key.id)
        );
        assert_eq!(
            store.conn().total_changes(),
            writes,
            "a second use within a minute wrote to the database"
        );

        // A use 30 s ago is recent enough: kept as it is.
        let recent = set_last_used_at(
            &store,
            key.id,
            chrono::Utc::now() - chrono::Duration::seconds(30),
        );
        store.verify_api_key(&key.secret).expect("verify");
        assert_eq!(last_used_at(&store, key.id), Some(recent));

        // A use more than a minute ago is refreshed.
        let stale = set_last_used_at(
            &store,
            key.id,
            chrono::Utc::now() - chrono::Duration::seconds(90),
        );
        store.verify_api_key(&key.secret).expect("verify");
        let refreshed = last_used_at(&store, key.id).expect("recorded");
        assert_ne!(refreshed, stale, "a use after a minute is recorded");
    }

    #[test]
    fn a_locked_database_does_not_fail_or_stall_verification() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("orchard.db");
        let store = Store::open(&path).expect("store");
        let key = store.create_api_key("editor").expect("create");

        // Another process (here: another connection) holds the write lock.
        let other = rusqlite::Connection::open(&path).expect("second connection");
        other
            .execute_batch("BEGIN IMMEDIATE")
            .expect("take the write lock");
        assert_eq!(
            store
                .verify_api_key(&key.secret)
                .expect("verification must not fail on a locked database"),
            Some(key.id)
        );
        other
            .execute_batch("ROLLBACK")
            .expect("release the write lock");

        // The write was skipped, not queued; the next request records the use.
        assert_eq!(last_used_at(&store, key.id), None);
        assert_eq!(
            store.verify_api_key(&key.secret).expect("verify"),
            Some(key.id)
        );
        assert!(last_used_at(&store, key.id).is_some());
    }

    #[test]
    fn keys_are_unique_and_names_are_checked() {
        let store = Store::open_in_memory().expect("store");
        let a = store.create_api_key("a").expect("a");
        let b = store.create_api_key("b").expect("b");
        assert_ne!(a.secret, b.secret);
        assert!(matches!(
            store.create_api_key("  "),
            Err(StoreError::Invalid(_))
        ));
    }
}
