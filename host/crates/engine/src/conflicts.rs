//! The conflicts a two-way sync logged on its two sides, for `dmp
//! conflicts` and the service alike: each side's `_dmp_conflicts` holds
//! those of the other side's changes; a parked one is resolved by choosing
//! the side whose row both keep. Reads and resolutions go straight to the
//! two databases, so they work whether the sync runs or not.

use std::sync::Arc;

use serde::Serialize;
use serde_json::value::RawValue;

use crate::error::{Error, Result};
use dmp_config::{Leg, Pipeline, RunMode};
use dmp_contract::conflict::{Decision, Side};
use dmp_contract::{Connectors, EntryId, ErrorKind, LoggedConflict, Resolution, RowWrite, Target};
use dmp_model::printable;

/// Why a conflict request cannot be done, kept apart from a database
/// failing ([`ConflictError::Engine`]) so that a caller can answer each
/// differently (the service: 400, 404 or 409).
#[derive(Debug, thiserror::Error)]
pub enum ConflictError {
    /// Only a two-way sync logs conflicts.
    #[error(
        "pipeline {pipeline}: conflicts are logged by a two-way sync \
         (mode = \"bidirectional\"); this pipeline's mode is \"{mode}\""
    )]
    NotTwoWay {
        pipeline: String,
        mode: &'static str,
    },
    /// The side's log holds no entry of that number.
    #[error(
        "sync {sync_id}: no conflict {id}: side {}'s log has no entry {} \
         (`dmp conflicts list --all` or `GET …/conflicts?all=true` lists every entry)",
        id.side.as_str(),
        id.id
    )]
    NoEntry { sync_id: String, id: EntryId },
    /// The entry was settled by the policy when logged: nothing waits.
    #[error(
        "{about} was not parked: it was settled as {decision} when logged; only parked \
         conflicts are resolved by hand"
    )]
    NotParked { about: About, decision: String },
    #[error("{about} is resolved already ({resolution}, at {at})")]
    Resolved {
        about: About,
        resolution: String,
        at: String,
    },
    /// A side could not be opened, read or written.
    #[error(transparent)]
    Engine(#[from] Error),
}

/// The command line's error: a refusal is a mistake of the request
/// (`Config`, exit 2); a failure keeps its own kind.
impl From<ConflictError> for Error {
    fn from(e: ConflictError) -> Self {
        match e {
            ConflictError::Engine(inner) => inner,
            refusal => Error::layer(ErrorKind::Config, refusal),
        }
    }
}

/// A conflict as messages name it: `conflict b:7 (table hot, key {"id":1})`.
#[derive(Debug, Clone)]
pub struct About {
    pub id: EntryId,
    pub table: String,
    pub key: String,
}

impl std::fmt::Display for About {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "conflict {} (table {}, key {})",
            self.id,
            printable(&self.table),
            printable(&self.key)
        )
    }
}

/// The other side.
fn other(side: Side) -> Side {
    match side {
        Side::A => Side::B,
        Side::B => Side::A,
    }
}

/// The two sides of a two-way sync, each opened as the target of the leg
/// that writes into it: with the sync id and the leg's conflict rules, as
/// the running sync has them (MariaDB sessions tagged as its own).
pub struct Sides {
    sync_id: String,
    a: Arc<dyn Target>,
    b: Arc<dyn Target>,
}

impl Sides {
    /// Opens both sides of `pipeline`, which must be a two-way sync.
    /// Connections are made as the connectors make them (lazily for the
    /// SQL ones): a side that cannot be reached fails the first read.
    pub fn open(
        connectors: &dyn Connectors,
        pipeline: &Pipeline,
    ) -> std::result::Result<Sides, ConflictError> {
        if pipeline.mode != RunMode::Bidirectional {
            return Err(ConflictError::NotTwoWay {
                pipeline: printable(&pipeline.name).into_owned(),
                mode: pipeline.mode.as_str(),
            });
        }
        // Side A is the target of the leg that carries B's changes.
        let open = |leg: Leg, endpoint| {
            let mut options = pipeline.leg(leg).target_options();
            // One statement at a time: one session is enough.
            options.writers = 1;
            connectors.open_target(endpoint, options)
        };
        Ok(Sides {
            sync_id: pipeline.sync_id().to_string(),
            a: open(Leg::BToA, &pipeline.source)?,
            b: open(Leg::AToB, &pipeline.target)?,
        })
    }

    /// The sync id: the entries' `pipeline` column.
    pub fn sync_id(&self) -> &str {
        &self.sync_id
    }

    fn side(&self, side: Side) -> &dyn Target {
        match side {
            Side::A => &*self.a,
            Side::B => &*self.b,
        }
    }

    /// Both logs' entries of this sync, oldest first (by the time each
    /// side logged them; clocks apart by less than `max_clock_skew`):
    /// every entry with `all`, else those parked and not resolved yet.
    pub async fn entries(&self, all: bool) -> Result<Vec<(Side, LoggedConflict)>> {
        let mut entries = Vec::new();
        for side in [Side::A, Side::B] {
            let log = self.side(side).conflict_log(&self.sync_id).await?;
            entries.extend(
                log.into_iter()
                    .filter(|e| all || e.is_open())
                    .map(|e| (side, e)),
            );
        }
        entries.sort_by(|(s1, e1), (s2, e2)| {
            (&e1.logged_at, s1.as_str(), e1.id).cmp(&(&e2.logged_at, s2.as_str(), e2.id))
        });
        Ok(entries)
    }

    /// Entry `id`, whatever its state.
    pub async fn find(&self, id: EntryId) -> std::result::Result<LoggedConflict, ConflictError> {
        let log = self.side(id.side).conflict_log(&self.sync_id).await?;
        self.pick(id, log)
    }

    /// Entry `id` of its side's `log`; an error naming it when there is
    /// none.
    fn pick(
        &self,
        id: EntryId,
        log: Vec<LoggedConflict>,
    ) -> std::result::Result<LoggedConflict, ConflictError> {
        log.into_iter()
            .find(|e| e.id == id.id)
            .ok_or_else(|| ConflictError::NoEntry {
                sync_id: printable(&self.sync_id).into_owned(),
                id,
            })
    }

    /// Resolves conflict `id` by side `chosen`: its row now is written to
    /// the other side with that side's entries marked (one transaction),
    /// then the chosen side's entries are marked. The other side goes
    /// first: should the second step fail, the chosen side's entries still
    /// wait, and resolving one of them again writes the chosen side's row
    /// again. Both logs are read before the row: only the entries seen
    /// then are marked. Refused for an entry that was not parked or is
    /// resolved already.
    pub async fn resolve(
        &self,
        id: EntryId,
        chosen: Side,
    ) -> std::result::Result<ResolveSummary, ConflictError> {
        let log = |side| self.side(side).conflict_log(&self.sync_id);
        let (log_a, log_b) = (log(Side::A).await?, log(Side::B).await?);
        let last = |log: &[LoggedConflict]| log.iter().map(|e| e.id).max().unwrap_or(0);
        let (seen_a, seen_b) = (last(&log_a), last(&log_b));
        let seen = |side| match side {
            Side::A => seen_a,
            Side::B => seen_b,
        };
        let entry = self.pick(id, if id.side == Side::A { log_a } else { log_b })?;
        let about = || About {
            id,
            table: entry.table.clone(),
            key: entry.key.clone(),
        };
        if entry.decision != Decision::Park.as_str() {
            return Err(ConflictError::NotParked {
                about: about(),
                decision: entry.decision.clone(),
            });
        }
        if let Some(resolution) = &entry.resolution {
            return Err(ConflictError::Resolved {
                about: about(),
                resolution: resolution.clone(),
                at: entry
                    .resolved_at
                    .clone()
                    .unwrap_or_else(|| "an unknown time".to_string()),
            });
        }
        let target = other(chosen);
        let row = self.side(chosen).read_row(&entry.table, &entry.key).await?;
        let outcome = match &row {
            Some(_) => RowOutcome::Written,
            None => RowOutcome::Deleted,
        };
        let resolution = |side, write| Resolution {
            sync_id: &self.sync_id,
            table: &entry.table,
            key: &entry.key,
            write,
            resolution: Resolution::label(chosen),
            seen_up_to: seen(side),
        };
        let write = row.map_or(RowWrite::Delete, RowWrite::Upsert);
        let marked_other = self
            .side(target)
            .resolve_conflicts(&resolution(target, write))
            .await?;
        let marked_chosen = self
            .side(chosen)
            .resolve_conflicts(&resolution(chosen, RowWrite::Keep))
            .await?;
        Ok(ResolveSummary {
            id: id.to_string(),
            table: entry.table.clone(),
            key: json(&entry.key),
            side: chosen.as_str(),
            other_side: target.as_str(),
            row: outcome,
            marked_on_side: marked_chosen,
            marked_on_other_side: marked_other,
        })
    }
}

/// What resolving did to the other side's row at the key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RowOutcome {
    /// The chosen side's row was written there.
    Written,
    /// The chosen side has no row at the key: the other side's was deleted.
    Deleted,
}

/// What a resolution did, for a person (the command line) or a client
/// (the API) to read.
#[derive(Debug, Clone, Serialize)]
pub struct ResolveSummary {
    /// The entry named in the request (`b:7`).
    pub id: String,
    pub table: String,
    /// The key as logged, as JSON.
    pub key: JsonColumn,
    /// The side whose row both now keep.
    pub side: &'static str,
    pub other_side: &'static str,
    /// What happened to the other side's row.
    pub row: RowOutcome,
    /// Entries of the key marked resolved on the chosen side, and on the
    /// other (a key conflicting several times has several).
    pub marked_on_side: u64,
    pub marked_on_other_side: u64,
}

/// An entry as `dmp conflicts --json` and the API show it: named `a:ID`,
/// its JSON columns as JSON. `rows` (the remote change's rows and this
/// side's row then) is left out of what a caller who may not read row
/// data sees.
#[derive(Debug, Clone, Serialize)]
pub struct EntryView {
    pub id: String,
    pub side: &'static str,
    pub log_id: i64,
    pub pipeline: String,
    pub table_name: String,
    pub key: JsonColumn,
    pub kind: String,
    pub decision: String,
    pub remote_side: String,
    #[serde(flatten)]
    pub rows: Option<EntryRows>,
    pub remote_commit_time: Option<String>,
    pub logged_at: String,
    pub resolution: Option<String>,
    pub resolved_at: Option<String>,
}

/// The row data of an entry, each `null` when there was no row.
#[derive(Debug, Clone, Serialize)]
pub struct EntryRows {
    pub remote_old: Option<JsonColumn>,
    pub remote_new: Option<JsonColumn>,
    pub local_row: Option<JsonColumn>,
}

/// A JSON column: its text as it is (every digit kept), or a string when
/// it is no JSON.
#[derive(Debug, Clone, Serialize)]
#[serde(untagged)]
pub enum JsonColumn {
    Raw(Box<RawValue>),
    Text(String),
}

/// `text` as a [`JsonColumn`] value.
fn json(text: &str) -> JsonColumn {
    RawValue::from_string(text.to_string())
        .map_or_else(|_| JsonColumn::Text(text.to_string()), JsonColumn::Raw)
}

/// Entry `e` of `side`'s log as shown; with its rows when `with_rows`.
pub fn entry_view(side: Side, e: LoggedConflict, with_rows: bool) -> EntryView {
    let rows = with_rows.then(|| EntryRows {
        remote_old: e.remote_old.as_deref().map(json),
        remote_new: e.remote_new.as_deref().map(json),
        local_row: e.local_row.as_deref().map(json),
    });
    EntryView {
        id: EntryId { side, id: e.id }.to_string(),
        side: side.as_str(),
        log_id: e.id,
        key: json(&e.key),
        rows,
        pipeline: e.pipeline,
        table_name: e.table,
        kind: e.kind,
        decision: e.decision,
        remote_side: e.remote_side,
        remote_commit_time: e.remote_commit_time,
        logged_at: e.logged_at,
        resolution: e.resolution,
        resolved_at: e.resolved_at,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry() -> LoggedConflict {
        LoggedConflict {
            id: 7,
            pipeline: "p".into(),
            table: "hot".into(),
            key: r#"{"id":1}"#.into(),
            kind: "update_differs".into(),
            decision: "parked".into(),
            remote_side: "b".into(),
            remote_old: None,
            remote_new: Some(r#"{"id":1,"n":1.50}"#.into()),
            local_row: Some("not json".into()),
            remote_commit_time: None,
            logged_at: "2024-05-01T10:00:00.000000Z".into(),
            resolution: None,
            resolved_at: None,
        }
    }

    #[test]
    fn an_entry_shows_its_json_columns_as_json() -> serde_json::Result<()> {
        let text = serde_json::to_string(&entry_view(Side::A, entry(), true))?;
        assert!(
            text.starts_with(r#"{"id":"a:7","side":"a","log_id":7,"pipeline":"p","#),
            "{text}"
        );
        assert!(text.contains(r#""key":{"id":1}"#), "{text}");
        assert!(text.contains(r#""remote_old":null"#), "{text}");
        assert!(text.contains(r#""remote_new":{"id":1,"n":1.50}"#), "{text}");
        assert!(text.contains(r#""local_row":"not json""#), "{text}");
        Ok(())
    }

    #[test]
    fn an_entry_without_rows_names_no_row_field() -> serde_json::Result<()> {
        let text = serde_json::to_string(&entry_view(Side::B, entry(), false))?;
        assert!(text.contains(r#""id":"b:7""#), "{text}");
        for field in ["remote_old", "remote_new", "local_row", "not json"] {
            assert!(!text.contains(field), "{field} in {text}");
        }
        Ok(())
    }

    #[test]
    fn refusals_are_configuration_errors_naming_the_entry() {
        let about = About {
            id: EntryId {
                side: Side::B,
                id: 3,
            },
            table: "hot".into(),
            key: r#"{"id":1}"#.into(),
        };
        let e = ConflictError::Resolved {
            about,
            resolution: "side a".into(),
            at: "then".into(),
        };
        let e = Error::from(e);
        assert_eq!(e.kind(), ErrorKind::Config);
        assert_eq!(
            e.report(),
            r#"conflict b:3 (table hot, key {"id":1}) is resolved already (side a, at then)"#
        );
    }
}
