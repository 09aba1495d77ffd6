//! Orchard's state in one SQLite file (`orchard.db` in the data directory):
//! settings, API keys, registered model folders, downloads, profiles, stored responses and MCP servers. Schema changes are numbered files in `migrations/`
//! that are only ever added; [`Store::open`] applies the ones a file lacks.

mod api_keys;
mod downloads;
mod local_models;
mod mcp;
mod model_usage;
mod profiles;
mod responses;
mod settings;

use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};

use rusqlite::{Connection, TransactionBehavior};

pub use api_keys::{ApiKeyInfo, NewApiKey};
pub use downloads::{DOWNLOAD_STATES, DownloadRecord};
pub use local_models::LocalModel;
pub use mcp::{McpCall, McpServerRecord};
pub use responses::StoredResponse;
pub use settings::{MAX_IDLE_TTL_MINUTES, Settings};

/// The schema, in order. `PRAGMA user_version` records how many are applied.
const MIGRATIONS: &[&str] = &[
    include_str!("../migrations/0001_init.sql"),
    include_str!("../migrations/0002_local_models.sql"),
    include_str!("../migrations/0003_downloads.sql"),
    include_str!("../migrations/0004_model_usage.sql"),
    include_str!("../migrations/0005_profiles.sql"),
    include_str!("../migrations/0006_responses.sql"),
    include_str!("../migrations/0007_mcp.sql"),
];

/// How long a statement waits for another connection's write lock. Writes here
/// take milliseconds; a wait this long means something is stuck.
const BUSY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// What can go wrong with the store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The thing asked for does not exist.
    #[error("{0}")]
    NotFound(String),
    /// A value was rejected before it reached the database.
    #[error("{0}")]
    Invalid(String),
    /// What the database holds cannot be read back (a row this version
    /// cannot parse), or the system failed us (its random source): not the
    /// caller's fault.
    #[error("{0}")]
    Unreadable(String),
    /// The file was written by a newer Orchard.
    #[error(
        "the database is at schema version {found}, newer than this Orchard knows ({known}); upgrade Orchard"
    )]
    TooNew { found: usize, known: usize },
    #[error("database error: {0}")]
    Sqlite(#[from] rusqlite::Error),
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// A handle on the database; clones share one connection.
#[derive(Debug, Clone)]
pub struct Store {
    /// The only connection. SQLite calls here take microseconds, so callers on
    /// async threads use it directly.
    conn: Arc<Mutex<Connection>>,
}

impl Store {
    /// Opens (creating if needed) the database file and brings its schema up to date.
    pub fn open(path: &Path) -> Result<Store> {
        // While another process creates the file or switches it to WAL, SQLite
        // answers some steps with "database is locked" at once, without its
        // busy handler: those are tried again, for as long as a busy wait lasts.
        let deadline = std::time::Instant::now() + BUSY_TIMEOUT;
        let mut pause = std::time::Duration::from_millis(5);
        loop {
            match Self::open_once(path) {
                Err(StoreError::Sqlite(e))
                    if is_busy(&e) && std::time::Instant::now() < deadline =>
                {
                    std::thread::sleep(pause);
                    pause = (pause * 2).min(std::time::Duration::from_millis(100));
                }
                opened => return opened,
            }
        }
    }

    fn open_once(path: &Path) -> Result<Store> {
        let conn = Connection::open(path)?;
        // Before anything else: another process may be creating this file now.
        conn.busy_timeout(BUSY_TIMEOUT)?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        Self::init(conn)
    }

    /// A private database that lives as long as the handle (tests, `--no-state` runs).
    pub fn open_in_memory() -> Result<Store> {
        Self::init(Connection::open_in_memory()?)
    }

    fn init(mut conn: Connection) -> Result<Store> {
        conn.busy_timeout(BUSY_TIMEOUT)?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        migrate(&mut conn)?;
        Ok(Store {
            conn: Arc::new(Mutex::new(conn)),
        })
    }

    /// The schema version the database is at.
    pub fn schema_version(&self) -> Result<usize> {
        user_version(&self.conn())
    }

    fn conn(&self) -> MutexGuard<'_, Connection> {
        // A panic while holding the lock cannot leave SQLite half-written (each
        // statement is atomic), so a poisoned lock is still usable.
        self.conn
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// Whether SQLite refused because another connection holds a lock.
fn is_busy(error: &rusqlite::Error) -> bool {
    matches!(
        error.sqlite_error_code(),
        Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked)
    )
}

fn user_version(conn: &Connection) -> Result<usize> {
    let version: i64 = conn.pragma_query_value(None, "user_version", |row| row.get(0))?;
    Ok(usize::try_from(version).unwrap_or(0))
}

/// Applies each missing migration in its own transaction.
///
/// Another process may be migrating the same file at this moment (the app and
/// the CLI started together on a new database). So each transaction takes the
/// write lock first (`BEGIN IMMEDIATE`, waiting up to the busy timeout) and
/// reads `user_version` again under it: a migration another process applied
/// meanwhile is skipped, not run twice.
fn migrate(conn: &mut Connection) -> Result<()> {
    // Checked before taking any lock, so that a newer file is refused and an
    // up-to-date one (the usual case) is opened without writing.
    let current = user_version(conn)?;
    check_known(current)?;
    if current == MIGRATIONS.len() {
        return Ok(());
    }
    loop {
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let current = user_version(&tx)?;
        check_known(current)?;
        let Some(sql) = MIGRATIONS.get(current) else {
            return Ok(());
        };
        tx.execute_batch(sql)?;
        tx.pragma_update(None, "user_version", current + 1)?;
        tx.commit()?;
    }
}

/// Refuses a schema version from a newer Orchard.
fn check_known(version: usize) -> Result<()> {
    if version > MIGRATIONS.len() {
        return Err(StoreError::TooNew {
            found: version,
            known: MIGRATIONS.len(),
        });
    }
    Ok(())
}

fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_file_gets_every_migration_and_reopens_without_change() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("orchard.db");
        let store = Store::open(&path).expect("open");
        assert_eq!(store.schema_version().expect("version"), MIGRATIONS.len());
        store.create_api_key("laptop").expect("create");
        drop(store);
        let store = Store::open(&path).expect("reopen");
        assert_eq!(store.schema_version().expect("version"), MIGRATIONS.len());
        assert_eq!(store.list_api_keys().expect("list").len(), 1);
    }

    #[test]
    fn a_database_from_a_newer_orchard_is_refused() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("orchard.db");
        {
            let conn = Connection::open(&path).expect("open");
            conn.pragma_update(None, "user_version", 99)
                .expect("set version");
        }
        let err = Store::open(&path).expect_err("newer schema");
        assert!(matches!(err, StoreError::TooNew { found: 99, .. }), "{err}");
    }
}
