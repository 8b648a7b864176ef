//! Schema discovery from `pg_catalog`: tables of one schema with their
//! columns (types resolved through domains, enum labels, defaults, identity,
//! comments), primary key, indexes, foreign keys, CHECK constraints and
//! partition trees, and what the model cannot hold (expression indexes,
//! triggers), named for the migration assessment. Also how each column is
//! read, which the chunk readers need, and the schema's other objects
//! (`objects`).
//!
//! Catalog queries run with `search_path` set to the discovered schema, so
//! that expressions name its objects unqualified (`nextval('s'::regclass)`)
//! and a target of another schema name can take them as they are.

mod columns;
mod constraints;
mod defaults;
mod objects;
mod partitions;

use std::collections::HashSet;

use sqlx::postgres::types::Oid;
use sqlx::{PgConnection, PgPool, Row};

use super::types::Read;
use crate::error::{Error, Result, ResultExt};
use dmp_model::{ObjectKind, Skipped, TableSchema, TableSelection};

pub(super) use columns::resolve_column_types;
pub(super) use objects::objects;

/// A source column's read plan.
#[derive(Debug, Clone)]
pub(super) struct SourceColumn {
    pub(super) read: Read,
    /// The column's type as `format_type` prints it: the cast of key
    /// literals, so bounds compare in the column's own order.
    pub(super) sql_type: String,
}

/// A discovered table: its model schema and how its columns are read.
#[derive(Debug, Clone)]
pub(super) struct SourceTable {
    pub(super) oid: Oid,
    pub(super) schema: TableSchema,
    /// One per `schema.columns` entry.
    pub(super) columns: Vec<SourceColumn>,
    /// A partitioned table: its rows live in its partitions.
    pub(super) partitioned: bool,
}

impl SourceTable {
    /// The select list of the table's columns, in order.
    pub(super) fn select_list(&self) -> String {
        self.schema
            .columns
            .iter()
            .zip(&self.columns)
            .map(|(c, s)| s.read.select_expr(&super::sql::quote_ident(&c.name)))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// A relation of the schema, as `pg_class` lists it.
struct Relation {
    oid: Oid,
    name: String,
    kind: String,
    is_partition: bool,
    comment: Option<String>,
}

/// Discovers the tables of `namespace` that `selection` picks, sorted by
/// name. With `only`, just that table (a reader that was not part of this
/// process's discovery).
pub(super) async fn discover(
    pool: &PgPool,
    namespace: &str,
    place: &str,
    selection: Option<&TableSelection>,
    only: Option<&str>,
) -> Result<Vec<SourceTable>> {
    let ctx = || format!("{place}: reading the catalog of schema {namespace}");
    let mut txn = pool.begin().await.context(ctx)?;
    let conn = &mut *txn;
    let exists = in_schema(conn, namespace, place).await?;
    if !exists {
        return Err(Error::Config(format!(
            "{place}: schema {namespace} does not exist (set it with ?schema=NAME in the URL)"
        )));
    }
    let mut tables: Vec<Relation> = Vec::new();
    for relation in relations(conn, namespace, place).await? {
        let selected = match (only, selection) {
            (Some(only), _) => relation.name == only,
            (None, Some(selection)) => selection.matches(&relation.name),
            (None, None) => true,
        };
        // Views and partitions are not tables to copy: the views are schema
        // objects (see `objects`), partitions are read through their parent.
        if selected && matches!(relation.kind.as_str(), "r" | "p") && !relation.is_partition {
            tables.push(relation);
        }
    }
    if tables.is_empty() {
        return Ok(Vec::new());
    }
    let oids: Vec<Oid> = tables.iter().map(|t| t.oid).collect();
    let mut columns = columns::columns(conn, &oids, place).await?;
    let mut keys = constraints::indexes(conn, &oids, place).await?;
    let mut checks = constraints::checks(conn, &oids, place).await?;
    let mut skipped_by_table = constraints::skipped(conn, &oids, place).await?;
    let mut foreign_keys =
        constraints::foreign_keys(conn, &oids, namespace, place, &mut skipped_by_table).await?;
    let mut out = Vec::with_capacity(tables.len());
    for relation in tables {
        let oid = relation.oid;
        let table_columns = columns.remove(&oid).unwrap_or_default();
        let keys = keys.remove(&oid).unwrap_or_default();
        let mut skipped = table_columns.skipped;
        skipped.extend(keys.skipped);
        skipped.extend(skipped_by_table.remove(&oid).unwrap_or_default());
        let partitioned = relation.kind == "p";
        let mut partitioning = None;
        if partitioned {
            match partitions::partitioning(conn, oid, place).await? {
                Ok(found) => partitioning = Some(found),
                Err(reason) => skipped.push(Skipped {
                    kind: ObjectKind::Partition,
                    name: relation.name.clone(),
                    reason,
                }),
            }
        }
        let mut schema = TableSchema {
            namespace: Some(namespace.to_string()),
            name: relation.name,
            columns: table_columns.columns,
            primary_key: keys.primary_key,
            primary_key_name: keys.primary_key_name,
            indexes: keys.indexes,
            foreign_keys: foreign_keys.remove(&oid).unwrap_or_default(),
            checks: checks.remove(&oid).unwrap_or_default(),
            comment: relation.comment,
            partitioning,
            skipped,
        };
        // Key columns are never NULL, whatever the catalog row says.
        let key: HashSet<String> = schema.primary_key.iter().cloned().collect();
        for c in &mut schema.columns {
            if key.contains(&c.name) {
                c.nullable = false;
            }
        }
        out.push(SourceTable {
            oid,
            schema,
            columns: table_columns.reads,
            partitioned,
        });
    }
    out.sort_by(|a, b| a.schema.name.cmp(&b.schema.name));
    Ok(out)
}

/// Whether the schema exists; from here on the session's `search_path` is
/// that schema (for this transaction).
async fn in_schema(conn: &mut PgConnection, namespace: &str, place: &str) -> Result<bool> {
    let ctx = || format!("{place}: reading the catalog of schema {namespace}");
    let exists: Option<Oid> = sqlx::query_scalar("SELECT oid FROM pg_namespace WHERE nspname = $1")
        .bind(namespace)
        .fetch_optional(&mut *conn)
        .await
        .context(ctx)?;
    sqlx::query("SELECT set_config('search_path', quote_ident($1), true)")
        .bind(namespace)
        .execute(&mut *conn)
        .await
        .context(ctx)?;
    Ok(exists.is_some())
}

/// Tables, views, materialized views and foreign tables of the schema
/// (not DMP's own), by name.
async fn relations(conn: &mut PgConnection, namespace: &str, place: &str) -> Result<Vec<Relation>> {
    let ctx = || format!("{place}: reading the catalog of schema {namespace}");
    let rows = sqlx::query(
        "SELECT c.oid, c.relname::text, c.relkind::text, c.relispartition, \
         obj_description(c.oid, 'pg_class') \
         FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
         WHERE n.nspname = $1 AND c.relkind IN ('r', 'p', 'v', 'm', 'f') \
         AND c.relname::text NOT LIKE '\\_dmp\\_%' ORDER BY c.relname",
    )
    .bind(namespace)
    .fetch_all(&mut *conn)
    .await
    .context(ctx)?;
    let mut out = Vec::with_capacity(rows.len());
    for row in rows {
        out.push(Relation {
            oid: row.try_get(0).context(ctx)?,
            name: row.try_get(1).context(ctx)?,
            kind: row.try_get(2).context(ctx)?,
            is_partition: row.try_get(3).context(ctx)?,
            comment: row.try_get(4).context(ctx)?,
        });
    }
    Ok(out)
}
