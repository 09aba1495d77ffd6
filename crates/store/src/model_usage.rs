//! When each model was last loaded or used, for the library.

use std::collections::HashMap;

use rusqlite::params;

use crate::{Result, Store};

impl Store {
    /// Records that `model` was used at `unix_seconds`; an earlier time than
    /// the one kept is ignored.
    pub fn touch_model(&self, model: &str, unix_seconds: u64) -> Result<()> {
        let seconds = i64::try_from(unix_seconds).unwrap_or(i64::MAX);
        self.conn().execute(
            "INSERT INTO model_usage (model, last_used) VALUES (?1, ?2)
             ON CONFLICT(model) DO UPDATE SET last_used = max(last_used, excluded.last_used)",
            params![model, seconds],
        )?;
        Ok(())
    }

    /// When each model was last used, in seconds since the Unix epoch.
    pub fn model_usage(&self) -> Result<HashMap<String, u64>> {
        let conn = self.conn();
        let mut stmt = conn.prepare("SELECT model, last_used FROM model_usage")?;
        let rows = stmt.query_map([], |row| {
            Ok((row.get::<_, String>(0)?, row.get::<_, i64>(1)?))
        })?;
        let mut usage = HashMap::new();
        for row in rows {
            let (model, seconds) = row?;
            usage.insert(model, u64::try_from(seconds).unwrap_or(0));
        }
        Ok(usage)
    }

    /// Forgets a model's use (it was deleted).
    pub fn forget_model_usage(&self, model: &str) -> Result<()> {
        self.conn()
            .execute("DELETE FROM model_usage WHERE model = ?1", params![model])?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use crate::Store;

    #[test]
    fn the_latest_use_is_kept() {
        let store = Store::open_in_memory().expect("store");
        store.touch_model("a", 200).expect("touch");
        store.touch_model("a", 100).expect("older");
        store.touch_model("b", 50).expect("touch");
        let usage = store.model_usage().expect("usage");
        assert_eq!(usage.get("a"), Some(&200));
        assert_eq!(usage.get("b"), Some(&50));
        store.forget_model_usage("a").expect("forget");
        assert_eq!(store.model_usage().expect("usage").get("a"), None);
    }
}
