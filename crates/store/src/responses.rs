//! Stored responses: what `/v1/responses` keeps when a request has `store`,
//! so a later request can continue it with `previous_response_id`.

use rusqlite::{OptionalExtension, params};
use serde_json::Value;

use crate::{Result, Store, StoreError};

/// One stored response.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredResponse {
    pub id: String,
    /// Seconds since the Unix epoch.
    pub created_at: u64,
    pub model: String,
    /// The conversation as Responses items: the input it was given (with
    /// what earlier responses it continued held) and its output.
    pub items: Vec<Value>,
    /// The response object as it was sent.
    pub body: Value,
}

impl Store {
    /// Keeps `response`, replacing one with the same id.
    pub fn save_response(&self, response: &StoredResponse) -> Result<()> {
        let seconds = i64::try_from(response.created_at).unwrap_or(i64::MAX);
        self.conn().execute(
            "INSERT OR REPLACE INTO responses (id, created_at, model, items, body)
             VALUES (?1, ?2, ?3, ?4, ?5)",
            params![
                response.id,
                seconds,
                response.model,
                Value::Array(response.items.clone()).to_string(),
                response.body.to_string(),
            ],
        )?;
        Ok(())
    }

    /// The stored response `id`, if it is kept.
    pub fn response(&self, id: &str) -> Result<Option<StoredResponse>> {
        let row = self
            .conn()
            .query_row(
                "SELECT created_at, model, items, body FROM responses WHERE id = ?1",
                params![id],
                |row| {
                    Ok((
                        row.get::<_, i64>(0)?,
                        row.get::<_, String>(1)?,
                        row.get::<_, String>(2)?,
                        row.get::<_, String>(3)?,
                    ))
                },
            )
            .optional()?;
        let Some((created_at, model, items, body)) = row else {
            return Ok(None);
        };
        let unreadable = |e: serde_json::Error| {
            StoreError::Unreadable(format!("stored response {id} holds bad JSON: {e}"))
        };
        let items = match serde_json::from_str(&items).map_err(unreadable)? {
            Value::Array(items) => items,
            _ => {
                return Err(StoreError::Unreadable(format!(
                    "stored response {id}'s items are not a list"
                )));
            }
        };
        Ok(Some(StoredResponse {
            id: id.to_string(),
            created_at: u64::try_from(created_at).unwrap_or(0),
            model,
            items,
            body: serde_json::from_str(&body).map_err(unreadable)?,
        }))
    }

    /// Forgets the response `id`; false when it was not kept.
    pub fn delete_response(&self, id: &str) -> Result<bool> {
        let deleted = self
            .conn()
            .execute("DELETE FROM responses WHERE id = ?1", params![id])?;
        Ok(deleted > 0)
    }

    /// Forgets the responses created before `unix_seconds`; returns how many.
    pub fn prune_responses(&self, unix_seconds: u64) -> Result<usize> {
        let seconds = i64::try_from(unix_seconds).unwrap_or(i64::MAX);
        Ok(self.conn().execute(
            "DELETE FROM responses WHERE created_at < ?1",
            params![seconds],
        )?)
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::StoredResponse;
    use crate::Store;

    fn response(id: &str, created_at: u64) -> StoredResponse {
        StoredResponse {
            id: id.into(),
            created_at,
            model: "m".into(),
            items: vec![json!({"type": "message", "role": "user", "content": id})],
            body: json!({"id": id, "object": "response"}),
        }
    }

    #[test]
    fn responses_are_kept_read_back_and_pruned_by_age() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("orchard.db");
        let store = Store::open(&path).expect("store");
        store
            .save_response(&response("resp_old", 100))
            .expect("old");
        store
            .save_response(&response("resp_new", 200))
            .expect("new");
        drop(store);

        // A new connection on the same file reads what the first wrote.
        let store = Store::open(&path).expect("reopen");
        assert_eq!(
            store.response("resp_new").expect("read"),
            Some(response("resp_new", 200))
        );
        assert_eq!(store.prune_responses(150).expect("prune"), 1);
        assert_eq!(store.response("resp_old").expect("read"), None);
        assert!(store.delete_response("resp_new").expect("delete"));
        assert!(!store.delete_response("resp_new").expect("again"));
        assert_eq!(store.response("resp_new").expect("read"), None);
    }
}
