//! The publication and the replication slot a pipeline streams through:
//! their names, creation, state, lag and removal. Publication and slot
//! queries go over an ordinary SQL session; only creating a slot needs the
//! replication session (whose exported snapshot lives as long as that
//! session stays idle).

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use sqlx::postgres::types::Oid;
use sqlx::{AssertSqlSafe, PgPool};
use tracing::{info, warn};

use super::super::sql::{qualified, quote_ident};
use super::lsn::Lsn;
use super::protocol::Connection;
use crate::error::{Error, Result, ResultExt};
use dmp_contract::{ChangeOptions, StreamLag};
use dmp_model::TableSchema;

/// PostgreSQL's longest name (`NAMEDATALEN - 1`).
const MAX_NAME: usize = 63;
/// How long a slot still used by a gone session (a killed run whose
/// walsender has not noticed yet) is waited for.
const SLOT_RELEASE_WAIT: Duration = Duration::from_secs(15);
const SLOT_POLL: Duration = Duration::from_millis(100);

/// The slot's name: configured, or `dmp_<pipeline>` with the pipeline
/// name lower-cased and other characters than `[a-z0-9_]` as `_`.
pub(super) fn slot_name(options: &ChangeOptions) -> Result<String> {
    if let Some(slot) = &options.slot {
        let valid = !slot.is_empty()
            && slot.len() <= MAX_NAME
            && slot
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
        if !valid {
            return Err(Error::Config(format!(
                "pipeline {}: [cdc] slot `{slot}` is not a replication slot name (1 to {MAX_NAME} of a-z, 0-9 and _)",
                options.pipeline
            )));
        }
        return Ok(slot.clone());
    }
    let mut name = String::from("dmp_");
    for c in options.pipeline.chars().flat_map(char::to_lowercase) {
        name.push(
            if c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' {
                c
            } else {
                '_'
            },
        );
    }
    name.truncate(MAX_NAME);
    Ok(name)
}

/// The publication's name: configured, or the slot's.
pub(super) fn publication_name(options: &ChangeOptions, slot: &str) -> Result<String> {
    match &options.publication {
        None => Ok(slot.to_string()),
        Some(p) if !p.is_empty() && p.len() <= MAX_NAME && !p.contains('\0') => Ok(p.clone()),
        Some(p) => Err(Error::Config(format!(
            "pipeline {}: [cdc] publication `{p}` is not a valid name (1 to {MAX_NAME} bytes)",
            options.pipeline
        ))),
    }
}

/// A slot as `pg_replication_slots` shows it.
#[derive(Debug, Clone)]
pub(super) struct SlotState {
    pub(super) logical: bool,
    pub(super) plugin: Option<String>,
    pub(super) database: Option<String>,
    pub(super) active_pid: Option<i32>,
    /// Up to where the stream was acknowledged (the consistent point of a
    /// new slot).
    pub(super) confirmed: Option<Lsn>,
}

impl SlotState {
    /// Refuses a slot of that name that this connector did not make for
    /// this database.
    pub(super) fn check(&self, slot: &str, database: &str, place: &str) -> Result<()> {
        let plugin = self.plugin.as_deref().unwrap_or("");
        let db = self.database.as_deref().unwrap_or("");
        if self.logical && plugin == "pgoutput" && db == database {
            return Ok(());
        }
        Err(Error::Config(format!(
            "{place}: replication slot {slot} exists but is {} (this pipeline needs a logical pgoutput slot of database {database}); name another one with [cdc] slot",
            if self.logical {
                format!("a slot of plugin {plugin} for database {db}")
            } else {
                "a physical slot".to_string()
            }
        )))
    }
}

/// slot_type, plugin, database, active_pid, confirmed_flush_lsn.
type SlotRow = (
    String,
    Option<String>,
    Option<String>,
    Option<i32>,
    Option<String>,
);

pub(super) async fn state(pool: &PgPool, place: &str, slot: &str) -> Result<Option<SlotState>> {
    let row: Option<SlotRow> = sqlx::query_as(
        "SELECT slot_type::text, plugin::text, database::text, active_pid, \
             confirmed_flush_lsn::text FROM pg_replication_slots WHERE slot_name = $1",
    )
    .bind(slot)
    .fetch_optional(pool)
    .await
    .context(|| format!("{place}: reading replication slot {slot}"))?;
    Ok(row.map(
        |(kind, plugin, database, active_pid, confirmed)| SlotState {
            logical: kind == "logical",
            plugin,
            database,
            active_pid,
            confirmed: confirmed.as_deref().and_then(Lsn::parse),
        },
    ))
}

/// Creates a logical pgoutput slot on the replication session `conn`.
/// With `export`, the slot's snapshot is exported: it stays valid while
/// `conn` runs no other command. Returns the consistent point (where
/// streaming from the slot starts) and the snapshot's name.
pub(super) async fn create(
    conn: &mut Connection,
    place: &str,
    slot: &str,
    export: bool,
) -> Result<(Lsn, Option<String>)> {
    let command = if conn.server_version() >= 150_000 {
        let snapshot = if export { "export" } else { "nothing" };
        format!("CREATE_REPLICATION_SLOT {slot} LOGICAL pgoutput (SNAPSHOT '{snapshot}')")
    } else {
        let snapshot = if export {
            "EXPORT_SNAPSHOT"
        } else {
            "NOEXPORT_SNAPSHOT"
        };
        format!("CREATE_REPLICATION_SLOT {slot} LOGICAL pgoutput {snapshot}")
    };
    let ctx = || format!("{place}: creating replication slot {slot}");
    let rows = conn.simple_query(&command).await.context(ctx)?;
    // slot_name, consistent_point, snapshot_name, output_plugin
    let row = rows
        .first()
        .ok_or_else(|| Error::Data(format!("{}: the server answered no row", ctx())))?;
    let point = row
        .get(1)
        .cloned()
        .flatten()
        .and_then(|text| Lsn::parse(&text))
        .ok_or_else(|| Error::Data(format!("{}: no consistent point in the answer", ctx())))?;
    let snapshot = row.get(2).cloned().flatten().filter(|s| !s.is_empty());
    if export && snapshot.is_none() {
        return Err(Error::Data(format!("{}: no snapshot was exported", ctx())));
    }
    match &snapshot {
        Some(name) => {
            info!(slot, consistent_point = %point, snapshot = name, "replication slot created")
        }
        None => info!(slot, consistent_point = %point, "replication slot created"),
    }
    Ok((point, snapshot))
}

/// Waits until no session streams from the slot: a run killed a moment
/// ago leaves a walsender that ends once the server notices.
pub(super) async fn wait_released(pool: &PgPool, place: &str, slot: &str) -> Result<()> {
    let deadline = tokio::time::Instant::now() + SLOT_RELEASE_WAIT;
    loop {
        let Some(pid) = state(pool, place, slot).await?.and_then(|s| s.active_pid) else {
            return Ok(());
        };
        if tokio::time::Instant::now() >= deadline {
            return Err(Error::Config(format!(
                "{place}: replication slot {slot} is in use by server process {pid} (another run of this pipeline?)"
            )));
        }
        tokio::time::sleep(SLOT_POLL).await;
    }
}

/// Drops the slot, ending the session that streams from it if any.
/// Returns whether there was one.
pub(super) async fn drop(pool: &PgPool, place: &str, slot: &str) -> Result<bool> {
    let ctx = || format!("{place}: dropping replication slot {slot}");
    let deadline = tokio::time::Instant::now() + SLOT_RELEASE_WAIT;
    loop {
        let Some(found) = state(pool, place, slot).await? else {
            return Ok(false);
        };
        if let Some(pid) = found.active_pid {
            if tokio::time::Instant::now() >= deadline {
                return Err(Error::Config(format!(
                    "{place}: replication slot {slot} is still in use by server process {pid}"
                )));
            }
            info!(slot, pid, "ending the session that streams from the slot");
            sqlx::query("SELECT pg_terminate_backend($1)")
                .bind(pid)
                .execute(pool)
                .await
                .context(ctx)?;
            tokio::time::sleep(SLOT_POLL).await;
            continue;
        }
        match sqlx::query("SELECT pg_drop_replication_slot($1)")
            .bind(slot)
            .execute(pool)
            .await
        {
            Ok(_) => {
                info!(slot, "replication slot dropped");
                return Ok(true);
            }
            // Gone meanwhile.
            Err(sqlx::Error::Database(e)) if e.code().as_deref() == Some("42704") => {
                return Ok(false);
            }
            // Taken meanwhile: end that session too.
            Err(sqlx::Error::Database(e)) if e.code().as_deref() == Some("55006") => {}
            Err(e) => return Err(e).context(ctx),
        }
    }
}

/// The publication's settings and members.
struct Publication {
    all_tables: bool,
    /// Schemas it publishes whole (PostgreSQL 15+).
    schemas: BTreeSet<String>,
    /// Publishes inserts, updates, deletes and truncates (and the changes
    /// of partitions as their root table, where the server knows that).
    complete: bool,
    /// Schema members, row filters or column lists: more or less than the
    /// tables' whole rows.
    filtered: bool,
    tables: BTreeSet<(String, String)>,
}

/// Makes the publication publish all changes of the tables: those of
/// `schema` as a whole where the role may (a superuser, PostgreSQL 15+),
/// so that a table created there while streaming is streamed too; else
/// exactly `tables`. Created when missing, its members and options set
/// when they differ. A `FOR ALL TABLES` publication keeps its list (it
/// covers them all).
pub(super) async fn ensure_publication(
    pool: &PgPool,
    place: &str,
    name: &str,
    tables: &[Arc<TableSchema>],
    schema: &str,
) -> Result<()> {
    let ctx = || format!("{place}: setting up publication {name}");
    let (version, superuser): (i32, bool) = sqlx::query_as(
        "SELECT current_setting('server_version_num')::int, \
         (SELECT rolsuper FROM pg_roles WHERE rolname = current_user)",
    )
    .fetch_one(pool)
    .await
    .context(ctx)?;
    if version >= 150_000 && superuser {
        return ensure_schema_publication(pool, place, name, schema, version).await;
    }
    warn!(
        publication = name,
        "tables created at the source while streaming are not streamed: publishing a whole \
         schema takes a superuser and PostgreSQL 15"
    );
    let wanted: BTreeSet<(String, String)> = tables
        .iter()
        .map(|t| {
            (
                t.namespace.clone().unwrap_or_else(|| "public".into()),
                t.name.clone(),
            )
        })
        .collect();
    let list = wanted
        .iter()
        .map(|(ns, t)| qualified(ns, t))
        .collect::<Vec<_>>()
        .join(", ");
    let mut options = vec!["publish = 'insert, update, delete, truncate'"];
    // Changes of a partition then come as its partitioned table's, which
    // is what the snapshot reads.
    if version >= 130_000 {
        options.push("publish_via_partition_root = true");
    }
    let options = options.join(", ");
    let quoted = quote_ident(name);
    let Some(existing) = publication(pool, name, version).await.context(ctx)? else {
        let sql = if wanted.is_empty() {
            format!("CREATE PUBLICATION {quoted} WITH ({options})")
        } else {
            format!("CREATE PUBLICATION {quoted} FOR TABLE {list} WITH ({options})")
        };
        sqlx::raw_sql(AssertSqlSafe(sql))
            .execute(pool)
            .await
            .context(ctx)?;
        info!(
            publication = name,
            tables = wanted.len(),
            "publication created"
        );
        return Ok(());
    };
    if !existing.all_tables && (existing.tables != wanted || existing.filtered) {
        let sql = if wanted.is_empty() {
            // SET TABLE needs a list: drop the members one by one.
            let members = existing
                .tables
                .iter()
                .map(|(ns, t)| qualified(ns, t))
                .collect::<Vec<_>>()
                .join(", ");
            format!("ALTER PUBLICATION {quoted} DROP TABLE {members}")
        } else {
            format!("ALTER PUBLICATION {quoted} SET TABLE {list}")
        };
        sqlx::raw_sql(AssertSqlSafe(sql))
            .execute(pool)
            .await
            .context(ctx)?;
        info!(
            publication = name,
            tables = wanted.len(),
            "publication tables set"
        );
    }
    if !existing.complete {
        sqlx::raw_sql(AssertSqlSafe(format!(
            "ALTER PUBLICATION {quoted} SET ({options})"
        )))
        .execute(pool)
        .await
        .context(ctx)?;
        info!(publication = name, "publication options set: {options}");
    }
    Ok(())
}

/// `FOR TABLES IN SCHEMA schema`, with the options every publication here
/// has.
async fn ensure_schema_publication(
    pool: &PgPool,
    place: &str,
    name: &str,
    schema: &str,
    version: i32,
) -> Result<()> {
    let ctx = || format!("{place}: setting up publication {name}");
    let quoted = quote_ident(name);
    let options = "publish = 'insert, update, delete, truncate', publish_via_partition_root = true";
    let existing = publication(pool, name, version).await.context(ctx)?;
    let sql = match &existing {
        None => Some(format!(
            "CREATE PUBLICATION {quoted} FOR TABLES IN SCHEMA {} WITH ({options})",
            quote_ident(schema)
        )),
        Some(p) if p.all_tables => None,
        Some(p) if p.schemas.len() == 1 && p.schemas.contains(schema) && p.tables.is_empty() => {
            None
        }
        Some(_) => Some(format!(
            "ALTER PUBLICATION {quoted} SET TABLES IN SCHEMA {}",
            quote_ident(schema)
        )),
    };
    if let Some(sql) = sql {
        sqlx::raw_sql(AssertSqlSafe(sql))
            .execute(pool)
            .await
            .context(ctx)?;
        info!(
            publication = name,
            schema, "publication of the whole schema set"
        );
    }
    if existing.is_some_and(|p| !p.complete) {
        sqlx::raw_sql(AssertSqlSafe(format!(
            "ALTER PUBLICATION {quoted} SET ({options})"
        )))
        .execute(pool)
        .await
        .context(ctx)?;
    }
    Ok(())
}

async fn publication(
    pool: &PgPool,
    name: &str,
    version: i32,
) -> std::result::Result<Option<Publication>, sqlx::Error> {
    // to_jsonb reads the columns each server version has.
    let row: Option<(Oid, String)> =
        sqlx::query_as("SELECT oid, to_jsonb(p)::text FROM pg_publication p WHERE pubname = $1")
            .bind(name)
            .fetch_optional(pool)
            .await?;
    let Some((oid, settings)) = row else {
        return Ok(None);
    };
    let settings = json(&settings)?;
    let flag = |key: &str| settings.get(key).and_then(serde_json::Value::as_bool);
    let complete = ["pubinsert", "pubupdate", "pubdelete", "pubtruncate"]
        .iter()
        .all(|k| flag(k).unwrap_or(true))
        && (version < 130_000 || flag("pubviaroot") == Some(true));
    let members: Vec<(String, String, String)> = sqlx::query_as(
        "SELECT n.nspname::text, c.relname::text, to_jsonb(r)::text FROM pg_publication_rel r \
         JOIN pg_class c ON c.oid = r.prrelid JOIN pg_namespace n ON n.oid = c.relnamespace \
         WHERE r.prpubid = $1",
    )
    .bind(oid)
    .fetch_all(pool)
    .await?;
    let mut filtered = false;
    for (_, _, member) in &members {
        let member = json(member)?;
        filtered |= ["prqual", "prattrs"]
            .iter()
            .any(|k| member.get(*k).is_some_and(|v| !v.is_null()));
    }
    let mut schemas = BTreeSet::new();
    if version >= 150_000 {
        let names: Vec<String> = sqlx::query_scalar(
            "SELECT n.nspname::text FROM pg_publication_namespace p \
             JOIN pg_namespace n ON n.oid = p.pnnspid WHERE p.pnpubid = $1",
        )
        .bind(oid)
        .fetch_all(pool)
        .await?;
        filtered |= !names.is_empty();
        schemas.extend(names);
    }
    Ok(Some(Publication {
        all_tables: flag("puballtables").unwrap_or(false),
        schemas,
        complete,
        filtered,
        tables: members.into_iter().map(|(ns, t, _)| (ns, t)).collect(),
    }))
}

fn json(text: &str) -> std::result::Result<serde_json::Value, sqlx::Error> {
    serde_json::from_str(text).map_err(|e| sqlx::Error::Decode(e.into()))
}

pub(super) async fn drop_publication(pool: &PgPool, place: &str, name: &str) -> Result<()> {
    let ctx = || format!("{place}: dropping publication {name}");
    let exists: bool =
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_publication WHERE pubname = $1)")
            .bind(name)
            .fetch_one(pool)
            .await
            .context(ctx)?;
    if !exists {
        return Ok(());
    }
    sqlx::raw_sql(AssertSqlSafe(format!(
        "DROP PUBLICATION IF EXISTS {}",
        quote_ident(name)
    )))
    .execute(pool)
    .await
    .context(ctx)?;
    info!(publication = name, "publication dropped");
    Ok(())
}

/// WAL the slot keeps: from its confirmed point to the server's current
/// position.
pub(super) async fn lag(pool: &PgPool, place: &str, slot: &str) -> Result<StreamLag> {
    let ctx = || format!("{place}: reading the lag of replication slot {slot}");
    let current: Option<String> = sqlx::query_scalar(
        "SELECT (CASE WHEN pg_is_in_recovery() THEN pg_last_wal_receive_lsn() \
         ELSE pg_current_wal_lsn() END)::text",
    )
    .fetch_one(pool)
    .await
    .context(ctx)?;
    let confirmed = state(pool, place, slot).await?.and_then(|s| s.confirmed);
    let current_lsn = current.as_deref().and_then(Lsn::parse);
    if confirmed.is_none() {
        warn!(slot, "no replication slot to report the lag of");
    }
    Ok(StreamLag {
        retained_bytes: current_lsn
            .zip(confirmed)
            .map(|(c, f)| c.0.saturating_sub(f.0)),
        current: current_lsn.map(|l| l.to_string()),
        confirmed: confirmed.map(|l| l.to_string()),
    })
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn options(pipeline: &str, slot: Option<&str>, publication: Option<&str>) -> ChangeOptions {
        ChangeOptions {
            pipeline: pipeline.into(),
            slot: slot.map(str::to_string),
            publication: publication.map(str::to_string),
            server_id: None,
            heartbeat: Duration::from_secs(10),
            selection: dmp_model::TableSelection::new(&[], &[]).expect("selection"),
            origin: None,
        }
    }

    #[test]
    fn names_derive_from_the_pipeline() {
        let o = options("Orders-Sync v2", None, None);
        assert_eq!(slot_name(&o).unwrap(), "dmp_orders_sync_v2");
        assert_eq!(
            publication_name(&o, "dmp_orders_sync_v2").unwrap(),
            "dmp_orders_sync_v2"
        );
        assert_eq!(
            slot_name(&options("Straße", None, None)).unwrap(),
            "dmp_stra_e"
        );
        let long = "x".repeat(100);
        assert_eq!(slot_name(&options(&long, None, None)).unwrap().len(), 63);
        let o = options("p", Some("my_slot_1"), Some("My Pub"));
        assert_eq!(slot_name(&o).unwrap(), "my_slot_1");
        assert_eq!(publication_name(&o, "my_slot_1").unwrap(), "My Pub");
        for bad in ["", "Upper", "dash-ed", &"s".repeat(64)] {
            let err = slot_name(&options("p", Some(bad), None)).unwrap_err();
            assert!(err.to_string().contains("[cdc] slot"), "{err}");
        }
        assert!(publication_name(&options("p", None, Some("")), "s").is_err());
    }

    #[test]
    fn foreign_slots_are_refused() {
        let ours = SlotState {
            logical: true,
            plugin: Some("pgoutput".into()),
            database: Some("shop".into()),
            active_pid: None,
            confirmed: Some(Lsn(1)),
        };
        assert!(ours.check("s", "shop", "source").is_ok());
        let other_db = ours.check("s", "crm", "source").unwrap_err().to_string();
        assert!(other_db.contains("database shop"), "{other_db}");
        let physical = SlotState {
            logical: false,
            ..ours
        };
        assert!(
            physical
                .check("s", "shop", "source")
                .unwrap_err()
                .to_string()
                .contains("physical")
        );
    }
}
