//! Schema discovery from `information_schema`: one query per catalog table
//! for the whole database (not one per table), grouped here. What the model
//! cannot hold (prefix, expression, full-text and spatial indexes,
//! triggers, foreign keys into another database) is named in each table's
//! `skipped` for the migration assessment; views and routines are the
//! schema's objects (`objects`).

mod columns;
mod constraints;
mod objects;

use std::collections::{BTreeMap, HashMap};

use mysql_async::prelude::Queryable;
use mysql_async::{Conn, Row};

use super::server::Server;
use super::types::{ReadAs, Wire};
use crate::error::{Result, ResultExt};
use dmp_model::{TableSchema, TableSelection};

pub(super) use objects::objects;

/// How the source reads one column besides its model type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct ReadColumn {
    pub(super) read: ReadAs,
    pub(super) wire: Wire,
}

/// A discovered table: its schema and how its columns are read, by name.
#[derive(Debug, Clone)]
pub(super) struct Discovered {
    pub(super) schema: TableSchema,
    pub(super) reads: HashMap<String, ReadColumn>,
    /// The table's default collation: columns with another one say so.
    collation: Option<String>,
    /// The next AUTO_INCREMENT value.
    auto_increment: Option<i64>,
}

fn text(row: &Row, i: usize) -> Option<String> {
    row.get_opt::<Option<String>, usize>(i)
        .and_then(|r| r.ok())
        .flatten()
}

fn number(row: &Row, i: usize) -> Option<i64> {
    row.get_opt::<Option<i64>, usize>(i)
        .and_then(|r| r.ok())
        .flatten()
}

/// The selected base tables of `database` (only `only` if given), sorted
/// by name. Tables whose name starts with `_dmp_` are DMP's own.
pub(super) async fn discover(
    conn: &mut Conn,
    server: Server,
    database: &str,
    selection: Option<&TableSelection>,
    only: Option<&str>,
) -> Result<Vec<Discovered>> {
    let ctx = || format!("reading the schema of MySQL database {database}");
    // MySQL 8 caches AUTO_INCREMENT in information_schema for a day
    // unless told otherwise (MariaDB has no such variable).
    if !server.mariadb && server.version >= (8, 0, 0) {
        conn.query_drop("SET SESSION information_schema_stats_expiry = 0")
            .await
            .context(ctx)?;
    }
    let tables: Vec<Row> = conn
        .exec(
            "SELECT TABLE_NAME, TABLE_TYPE, TABLE_COLLATION, TABLE_COMMENT, AUTO_INCREMENT \
             FROM information_schema.TABLES WHERE TABLE_SCHEMA = ?",
            (database,),
        )
        .await
        .context(ctx)?;
    let mut selected: BTreeMap<String, Discovered> = BTreeMap::new();
    for row in &tables {
        let (Some(name), Some(kind)) = (text(row, 0), text(row, 1)) else {
            continue;
        };
        if name.starts_with("_dmp_")
            || only.is_some_and(|o| o != name)
            || selection.is_some_and(|s| !s.matches(&name))
            // Views are the schema's objects (see `objects`).
            || kind != "BASE TABLE"
        {
            continue;
        }
        let comment = text(row, 3).filter(|c| !c.is_empty());
        selected.insert(
            name.clone(),
            Discovered {
                schema: TableSchema {
                    namespace: Some(database.to_string()),
                    name,
                    comment,
                    ..Default::default()
                },
                reads: HashMap::new(),
                collation: text(row, 2),
                auto_increment: number(row, 4),
            },
        );
    }
    if selected.is_empty() {
        return Ok(Vec::new());
    }
    let json_checks = constraints::json_checks(conn, server, database).await?;
    columns::read_columns(conn, server, database, &json_checks, &mut selected).await?;
    constraints::read_indexes(conn, database, &mut selected).await?;
    constraints::read_foreign_keys(conn, database, &mut selected).await?;
    constraints::read_checks(conn, server, database, &json_checks, &mut selected).await?;
    constraints::read_triggers(conn, database, &mut selected).await?;
    Ok(selected.into_values().collect())
}
