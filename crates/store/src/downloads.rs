//! Model downloads: what was asked for and how far it got.

use rusqlite::{OptionalExtension, params};
use serde::Serialize;

use crate::{Result, Store, StoreError, now};

/// One model download.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DownloadRecord {
    pub repo: String,
    pub revision: String,
    /// File patterns it fetches.
    pub patterns: Vec<String>,
    /// queued, running, paused, done, failed or cancelled.
    pub state: String,
    pub downloaded: u64,
    pub total: u64,
    pub error: Option<String>,
    pub updated_at: String,
}

/// States a download can be in.
pub const DOWNLOAD_STATES: [&str; 6] =
    ["queued", "running", "paused", "done", "failed", "cancelled"];

fn check_state(state: &str) -> Result<()> {
    if DOWNLOAD_STATES.contains(&state) {
        Ok(())
    } else {
        Err(StoreError::Invalid(format!(
            "unknown download state {state:?}"
        )))
    }
}

impl Store {
    /// Records a download (replacing an earlier one of the same repo), progress reset.
    pub fn put_download(
        &self,
        repo: &str,
        revision: &str,
        patterns: &[String],
        state: &str,
    ) -> Result<()> {
        check_state(state)?;
        let patterns =
            serde_json::to_string(patterns).map_err(|e| StoreError::Invalid(e.to_string()))?;
        self.conn().execute(
            "INSERT INTO downloads (repo, revision, patterns, state, downloaded, total, error, updated_at)
             VALUES (?1, ?2, ?3, ?4, 0, 0, NULL, ?5)
             ON CONFLICT(repo) DO UPDATE SET revision = excluded.revision, patterns = excluded.patterns,
               state = excluded.state, error = NULL, updated_at = excluded.updated_at",
            params![repo, revision, patterns, state, now()],
        )?;
        Ok(())
    }

    /// Sets the state (and the error, for `failed`); returns whether it
    /// changed. A `done` download stays done: a pause, cancel or failure that
    /// races its end (or another process's) cannot undo it; only
    /// [`Store::put_download`], a new start, replaces it.
    pub fn set_download_state(&self, repo: &str, state: &str, error: Option<&str>) -> Result<bool> {
        check_state(state)?;
        let conn = self.conn();
        // One statement, so the check and the write cannot be split by a writer.
        let changed = conn.execute(
            "UPDATE downloads SET state = ?2, error = ?3, updated_at = ?4
             WHERE repo = ?1 AND (state <> 'done' OR ?2 = 'done')",
            params![repo, state, error, now()],
        )?;
        if changed > 0 {
            return Ok(true);
        }
        let exists = conn
            .query_row(
                "SELECT 1 FROM downloads WHERE repo = ?1",
                params![repo],
                |_| Ok(()),
            )
            .optional()?
            .is_some();
        if exists {
            Ok(false)
        } else {
            Err(StoreError::NotFound(format!("no download of {repo}")))
        }
    }

    pub fn set_download_progress(&self, repo: &str, downloaded: u64, total: u64) -> Result<()> {
        self.conn().execute(
            "UPDATE downloads SET downloaded = ?2, total = ?3, updated_at = ?4 WHERE repo = ?1",
            params![repo, downloaded as i64, total as i64, now()],
        )?;
        Ok(())
    }

    pub fn download(&self, repo: &str) -> Result<Option<DownloadRecord>> {
        let conn = self.conn();
        conn.query_row(
            "SELECT repo, revision, patterns, state, downloaded, total, error, updated_at FROM downloads WHERE repo = ?1",
            params![repo],
            read_row,
        )
        .optional()
        .map_err(Into::into)
    }

    /// Every download, most recently changed first.
    pub fn downloads(&self) -> Result<Vec<DownloadRecord>> {
        let conn = self.conn();
        let mut stmt = conn.prepare(
            "SELECT repo, revision, patterns, state, downloaded, total, error, updated_at FROM downloads ORDER BY updated_at DESC, repo",
        )?;
        let rows = stmt.query_map([], read_row)?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }
}

fn read_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<DownloadRecord> {
    let patterns: String = row.get(2)?;
    Ok(DownloadRecord {
        repo: row.get(0)?,
        revision: row.get(1)?,
        patterns: serde_json::from_str(&patterns).unwrap_or_default(),
        state: row.get(3)?,
        downloaded: row.get::<_, i64>(4)?.max(0) as u64,
        total: row.get::<_, i64>(5)?.max(0) as u64,
        error: row.get(6)?,
        updated_at: row.get(7)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn downloads_are_recorded_progressed_and_restated() {
        let store = Store::open_in_memory().expect("store");
        store
            .put_download("org/m", "main", &["*.json".into()], "running")
            .expect("put");
        store
            .set_download_progress("org/m", 10, 100)
            .expect("progress");
        store
            .set_download_state("org/m", "failed", Some("network"))
            .expect("state");
        let record = store.download("org/m").expect("read").expect("exists");
        assert_eq!(
            (record.downloaded, record.total, record.state.as_str()),
            (10, 100, "failed")
        );
        assert_eq!(record.error.as_deref(), Some("network"));
        assert_eq!(record.patterns, ["*.json"]);
        assert!(store.set_download_state("org/m", "sleeping", None).is_err());
        assert!(matches!(
            store.set_download_state("x/y", "done", None),
            Err(StoreError::NotFound(_))
        ));
        assert_eq!(store.downloads().expect("list").len(), 1);
    }

    #[test]
    fn a_done_download_stays_done_until_it_is_started_again() {
        let store = Store::open_in_memory().expect("store");
        store
            .put_download("org/m", "main", &[], "running")
            .expect("put");
        assert!(
            store
                .set_download_state("org/m", "done", None)
                .expect("done")
        );
        for late in ["paused", "cancelled", "failed", "running"] {
            assert!(
                !store
                    .set_download_state("org/m", late, Some("late"))
                    .expect("kept"),
                "{late}"
            );
            let record = store.download("org/m").expect("read").expect("row");
            assert_eq!(
                (record.state.as_str(), record.error),
                ("done", None),
                "{late}"
            );
        }
        // A new start replaces it.
        store
            .put_download("org/m", "main", &[], "running")
            .expect("restart");
        assert!(
            store
                .set_download_state("org/m", "paused", None)
                .expect("paused")
        );
        assert_eq!(
            store.download("org/m").expect("read").expect("row").state,
            "paused"
        );
    }
}
