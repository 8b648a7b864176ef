//! The audit log: every change made through the service (who, from
//! where, what, the result), append-only, secrets never in it.

use rusqlite::params;
use serde::Serialize;

use crate::error::{Result, StoreContext};
use crate::store::{ServiceStore, now};

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct AuditEntry {
    pub id: i64,
    pub at: String,
    /// `user NAME`, `token NAME`, or `cli` for the command line.
    pub who: String,
    pub addr: String,
    pub action: String,
    pub target: String,
    /// `ok`, or the error (masked).
    pub result: String,
}

impl ServiceStore {
    pub fn audit(&self, who: &str, addr: &str, action: &str, target: &str, result: &str) {
        let result = dmp_contract::mask_secrets(result);
        let outcome = self.conn().and_then(|conn| {
            conn.execute(
                "INSERT INTO audit (at, who, addr, action, target, result) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![now(), who, addr, action, target, result],
            )
            .store("writing the audit log")
        });
        if let Err(e) = outcome {
            // The change happened; losing its record must be loud.
            tracing::error!(error = %e, action, target, "audit log entry not written");
        }
    }

    pub fn audit_entries(&self, limit: usize) -> Result<Vec<AuditEntry>> {
        let conn = self.conn()?;
        let mut stmt = conn
            .prepare("SELECT id, at, who, addr, action, target, result FROM audit ORDER BY id DESC LIMIT ?1")
            .store("reading the audit log")?;
        let rows = stmt
            .query_map([i64::try_from(limit).unwrap_or(i64::MAX)], |r| {
                Ok(AuditEntry {
                    id: r.get(0)?,
                    at: r.get(1)?,
                    who: r.get(2)?,
                    addr: r.get(3)?,
                    action: r.get(4)?,
                    target: r.get(5)?,
                    result: r.get(6)?,
                })
            })
            .store("reading the audit log")?;
        rows.collect::<Result<Vec<_>, _>>()
            .store("reading the audit log")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_cannot_be_changed_or_deleted() {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = ServiceStore::open(&dir.path().join("s.db")).expect("opens");
        store.audit("user ann", "127.0.0.1", "pipeline.create", "p", "ok");
        let conn = store.conn().expect("conn");
        assert!(conn.execute("UPDATE audit SET result = 'x'", []).is_err());
        assert!(conn.execute("DELETE FROM audit", []).is_err());
        drop(conn);
        assert_eq!(store.audit_entries(10).expect("reads").len(), 1);
    }
}
