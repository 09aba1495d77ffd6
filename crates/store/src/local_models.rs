//! Model folders registered by the user, served by name like cached models.

use rusqlite::params;
use serde::Serialize;

use crate::{Result, Store, StoreError, now};

/// A registered folder.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LocalModel {
    pub name: String,
    pub path: String,
    pub added_at: String,
}

impl Store {
    /// Registers `path` under `name`; a name or path already registered is an error.
    pub fn add_local_model(&self, name: &str, path: &str) -> Result<LocalModel> {
        if name.trim().is_empty() || path.trim().is_empty() {
            return Err(StoreError::Invalid(
                "a local model needs a name and a path".into(),
            ));
        }
        let added_at = now();
        let conn = self.conn();
        let taken: i64 = conn.query_row(
            "SELECT COUNT(*) FROM local_models WHERE name = ?1 OR path = ?2",
            params![name, path],
            |row| row.get(0),
        )?;
        if taken > 0 {
            return Err(StoreError::Invalid(format!(
                "a local model named {name:?} or at {path} is already registered; `orchard models forget NAME` first"
            )));
        }
        conn.execute(
            "INSERT INTO local_models (name, path, added_at) VALUES (?1, ?2, ?3)",
            params![name, path, added_at],
        )?;
        Ok(LocalModel {
            name: name.to_string(),
            path: path.to_string(),
            added_at,
        })
    }

    /// Registered folders, by name.
    pub fn local_models(&self) -> Result<Vec<LocalModel>> {
        let conn = self.conn();
        let mut stmt =
            conn.prepare("SELECT name, path, added_at FROM local_models ORDER BY name")?;
        let rows = stmt.query_map([], |row| {
            Ok(LocalModel {
                name: row.get(0)?,
                path: row.get(1)?,
                added_at: row.get(2)?,
            })
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// Forgets a registered folder (its files stay).
    pub fn remove_local_model(&self, name: &str) -> Result<()> {
        let removed = self
            .conn()
            .execute("DELETE FROM local_models WHERE name = ?1", params![name])?;
        if removed == 0 {
            return Err(StoreError::NotFound(format!(
                "no local model is named {name:?}"
            )));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folders_are_registered_once_listed_and_removed() {
        let store = Store::open_in_memory().expect("store");
        store.add_local_model("tiny", "/models/tiny").expect("add");
        assert!(
            store.add_local_model("tiny", "/elsewhere").is_err(),
            "name taken"
        );
        assert!(
            store.add_local_model("other", "/models/tiny").is_err(),
            "path taken"
        );
        let listed = store.local_models().expect("list");
        assert_eq!(listed.len(), 1);
        assert_eq!(listed[0].path, "/models/tiny");
        store.remove_local_model("tiny").expect("remove");
        assert!(matches!(
            store.remove_local_model("tiny"),
            Err(StoreError::NotFound(_))
        ));
    }
}
