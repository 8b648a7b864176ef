//! The conflict log of a two-way sync as `dmp conflicts` reads and
//! resolves it: each side's `_dmp_conflicts` holds the conflicts of the
//! other side's changes; an entry is named by the side whose log holds it
//! (`a:7`). Resolving a parked conflict copies the chosen side's current
//! row to the other side and marks the key's parked entries on both.

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::value::RawValue;

use crate::conflict::{Decision, Side};
use crate::error::{Error, Result};

/// One entry of a side's conflict log, its columns as stored. Times are
/// RFC 3339 in UTC with microseconds (`2024-05-01T10:00:00.000000Z`), so
/// that entries of both sides sort by them as text.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LoggedConflict {
    /// The entry's number in its side's log.
    pub id: i64,
    /// The sync id (the pipeline's name, not a leg's).
    pub pipeline: String,
    #[serde(rename = "table_name")]
    pub table: String,
    /// The key's columns and values: JSON object text, as logged.
    pub key: String,
    /// See [`crate::conflict::ConflictKind`].
    pub kind: String,
    /// See [`Decision`].
    pub decision: String,
    /// Whose change it was: `a` or `b`.
    pub remote_side: String,
    /// The remote change's rows and this side's row then, as JSON text.
    pub remote_old: Option<String>,
    pub remote_new: Option<String>,
    pub local_row: Option<String>,
    pub remote_commit_time: Option<String>,
    pub logged_at: String,
    /// How it was resolved by hand (`side a`), `None` until then.
    pub resolution: Option<String>,
    pub resolved_at: Option<String>,
}

impl LoggedConflict {
    /// Parked and not resolved yet: what waits for `dmp conflicts resolve`.
    pub fn is_open(&self) -> bool {
        self.decision == Decision::Park.as_str() && self.resolution.is_none()
    }
}

/// An entry's name across both logs: the side whose log holds it and its
/// number there, written `a:7` or `b:7`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EntryId {
    pub side: Side,
    pub id: i64,
}

impl std::fmt::Display for EntryId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.side.as_str(), self.id)
    }
}

impl std::str::FromStr for EntryId {
    type Err = Error;

    fn from_str(text: &str) -> Result<Self> {
        let bad = || {
            Error::Config(format!(
                "`{text}` names no conflict: write the side whose log holds it and its number, \
                 as `dmp conflicts list` shows them (a:7, b:12)"
            ))
        };
        let (side, id) = text.trim().split_once(':').ok_or_else(bad)?;
        let side = match side.to_ascii_lowercase().as_str() {
            "a" => Side::A,
            "b" => Side::B,
            _ => return Err(bad()),
        };
        let id = id.parse().map_err(|_| bad())?;
        Ok(EntryId { side, id })
    }
}

/// What resolving a conflict does at its key on one side.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RowWrite {
    /// Nothing: the chosen side keeps its row.
    Keep,
    /// The row becomes this one (a JSON object of the chosen side's
    /// columns, as its `read_row` gave it): inserted, or updated by
    /// primary key.
    Upsert(String),
    /// The chosen side has no row at the key: this side's is deleted.
    Delete,
}

/// A resolution of the parked conflicts at one key, as one side carries
/// it out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolution<'a> {
    /// The sync id: the entries' `pipeline`, and the tag of the write, so
    /// that the change stream reading this side does not carry it back.
    pub sync_id: &'a str,
    pub table: &'a str,
    /// The key as the log holds it (JSON object text of the primary
    /// key's columns): entries are matched by it exactly.
    pub key: &'a str,
    pub write: RowWrite,
    /// What the entries' `resolution` says: `side a`.
    pub resolution: String,
    /// The last entry of this side's log that the resolution saw (read
    /// before the chosen side's row): entries past it are left, so that a
    /// conflict a running sync logs meanwhile waits for its own
    /// resolution rather than being marked by one that did not see it.
    pub seen_up_to: i64,
}

impl Resolution<'_> {
    /// The `resolution` text of choosing `side`.
    pub fn label(side: Side) -> String {
        format!("side {}", side.as_str())
    }
}

/// The fields of JSON object text (a key or a row as the log and
/// `read_row` give them), each as its own JSON text: numbers keep every
/// digit, which a parse into `serde_json::Value` would round.
pub fn object_fields(
    text: &str,
) -> std::result::Result<BTreeMap<String, Box<RawValue>>, serde_json::Error> {
    serde_json::from_str(text)
}

/// The fields of key `key` (JSON object text) for the primary key columns
/// `names`, in their order; an error naming `table` when one is missing.
pub fn key_fields<'k>(
    table: &str,
    key: &'k BTreeMap<String, Box<RawValue>>,
    names: &[String],
    key_text: &str,
) -> Result<Vec<&'k RawValue>> {
    names
        .iter()
        .map(|name| {
            key.get(name).map(AsRef::as_ref).ok_or_else(|| {
                Error::Data(format!(
                    "table {table}: the conflict's key {key_text} has no value for primary key column {name}"
                ))
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(decision: &str, resolution: Option<&str>) -> LoggedConflict {
        LoggedConflict {
            id: 1,
            pipeline: "p".into(),
            table: "t".into(),
            key: r#"{"id":1}"#.into(),
            kind: "update_differs".into(),
            decision: decision.into(),
            remote_side: "a".into(),
            remote_old: None,
            remote_new: None,
            local_row: None,
            remote_commit_time: None,
            logged_at: "2024-05-01T10:00:00.000000Z".into(),
            resolution: resolution.map(Into::into),
            resolved_at: None,
        }
    }

    #[test]
    fn entries_are_named_by_the_side_whose_log_holds_them() {
        let id: EntryId = "b:12".parse().unwrap();
        assert_eq!(
            id,
            EntryId {
                side: Side::B,
                id: 12
            }
        );
        assert_eq!(id.to_string(), "b:12");
        assert_eq!("A:3".parse::<EntryId>().unwrap().side, Side::A);
        for bad in ["12", "c:1", "a:", "a:x", ""] {
            let e = bad.parse::<EntryId>().unwrap_err().to_string();
            assert!(e.contains("a:7, b:12"), "{bad}: {e}");
        }
    }

    #[test]
    fn only_parked_unresolved_entries_are_open() {
        assert!(entry("parked", None).is_open());
        assert!(!entry("parked", Some("side a")).is_open());
        assert!(!entry("apply_remote", None).is_open());
        assert_eq!(Resolution::label(Side::B), "side b");
    }

    #[test]
    fn fields_keep_their_json_text() {
        let row = object_fields(r#"{"id": 12345678901234567890123, "v": null, "n": "x"}"#).unwrap();
        assert_eq!(row["id"].get(), "12345678901234567890123");
        assert_eq!(row["v"].get(), "null");
        let names = ["n".to_string(), "id".to_string()];
        let key = key_fields("t", &row, &names, "{}").unwrap();
        assert_eq!(key[0].get(), r#""x""#);
        let e = key_fields("t", &row, &["w".to_string()], r#"{"id":1}"#)
            .unwrap_err()
            .to_string();
        assert!(e.contains("table t") && e.contains("column w"), "{e}");
    }
}
