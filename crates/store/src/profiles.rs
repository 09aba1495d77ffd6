//! Profiles, kept as JSON bodies under their names (core defines and checks
//! the fields).

use rusqlite::{OptionalExtension, params};
use serde_json::Value;

use crate::{Result, Store, StoreError, now};

impl Store {
    /// Every profile's body, by name.
    pub fn profiles(&self) -> Result<Vec<(String, Value)>> {
        let conn = self.conn();
        let mut stmt = conn.prepare("SELECT name, body FROM profiles ORDER BY name")?;
        let rows = stmt.query_map([], |row| {
            Ok((row.get::<_, String>(0)?, row.get::<_, String>(1)?))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (name, body) = row?;
            let body = serde_json::from_str(&body).map_err(|e| {
                StoreError::Unreadable(format!("profile {name:?} is unreadable: {e}"))
            })?;
            out.push((name, body));
        }
        Ok(out)
    }

    /// Stores a profile as `name`. With `replacing`, the profile of that name
    /// is replaced (and renamed); without, `name` must be new.
    pub fn put_profile(&self, replacing: Option<&str>, name: &str, body: &Value) -> Result<()> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        let exists = |n: &str| -> rusqlite::Result<bool> {
            tx.query_row("SELECT 1 FROM profiles WHERE name = ?1", params![n], |_| {
                Ok(())
            })
            .optional()
            .map(|r| r.is_some())
        };
        let created_at = match replacing {
            Some(old) => {
                let created: Option<String> = tx
                    .query_row(
                        "SELECT created_at FROM profiles WHERE name = ?1",
                        params![old],
                        |row| row.get(0),
                    )
                    .optional()?;
                let created = created
                    .ok_or_else(|| StoreError::NotFound(format!("no profile is named {old:?}")))?;
                if old != name && exists(name)? {
                    return Err(StoreError::Invalid(format!(
                        "a profile named {name:?} already exists"
                    )));
                }
                tx.execute("DELETE FROM profiles WHERE name = ?1", params![old])?;
                created
            }
            None => {
                if exists(name)? {
                    return Err(StoreError::Invalid(format!(
                        "a profile named {name:?} already exists; choose another name"
                    )));
                }
                now()
            }
        };
        tx.execute(
            "INSERT INTO profiles (name, body, created_at, updated_at) VALUES (?1, ?2, ?3, ?4)",
            params![name, body.to_string(), created_at, now()],
        )?;
        tx.commit()?;
        Ok(())
    }

    /// Deletes a profile.
    pub fn delete_profile(&self, name: &str) -> Result<()> {
        let removed = self
            .conn()
            .execute("DELETE FROM profiles WHERE name = ?1", params![name])?;
        if removed == 0 {
            return Err(StoreError::NotFound(format!(
                "no profile is named {name:?}"
            )));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use crate::Store;

    #[test]
    fn profiles_are_created_renamed_and_deleted_by_name() {
        let store = Store::open_in_memory().expect("store");
        store
            .put_profile(None, "coder", &json!({"model": "m"}))
            .expect("create");
        assert!(
            store.put_profile(None, "coder", &json!({})).is_err(),
            "a duplicate name"
        );
        store
            .put_profile(Some("coder"), "writer", &json!({"model": "n"}))
            .expect("rename");
        let all = store.profiles().expect("list");
        assert_eq!(all, vec![("writer".to_string(), json!({"model": "n"}))]);
        assert!(store.put_profile(Some("nobody"), "x", &json!({})).is_err());
        store.delete_profile("writer").expect("delete");
        assert!(store.delete_profile("writer").is_err());
        assert!(store.profiles().expect("list").is_empty());
    }
}
