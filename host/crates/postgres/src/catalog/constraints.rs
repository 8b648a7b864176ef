//! Keys, indexes, foreign keys and CHECK constraints of discovered tables.

use std::collections::HashMap;

use sqlx::postgres::types::Oid;
use sqlx::{PgConnection, Row};
use tracing::warn;

use crate::error::{Result, ResultExt};
use dmp_model::{Check, Dialect, ForeignKey, Index, ObjectKind, Skipped, SqlExpr};

/// A table's primary key and indexes, and the indexes the model cannot
/// hold.
#[derive(Default)]
pub(super) struct Keys {
    pub(super) primary_key: Vec<String>,
    pub(super) primary_key_name: Option<String>,
    pub(super) indexes: Vec<Index>,
    pub(super) skipped: Vec<Skipped>,
}

/// Primary keys and plain-column btree indexes (unique or not).
pub(super) async fn indexes(
    conn: &mut PgConnection,
    oids: &[Oid],
    place: &str,
) -> Result<HashMap<Oid, Keys>> {
    let ctx = || format!("{place}: reading indexes");
    let rows = sqlx::query(
        "SELECT i.indrelid, ic.relname::text, i.indisprimary, i.indisunique, \
         (i.indexprs IS NOT NULL OR i.indpred IS NOT NULL), am.amname::text, \
         ARRAY(SELECT a.attname::text FROM unnest(i.indkey) WITH ORDINALITY k(attnum, n) \
               JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum \
               WHERE k.n <= i.indnkeyatts ORDER BY k.n), \
         pg_get_indexdef(i.indexrelid) \
         FROM pg_index i JOIN pg_class ic ON ic.oid = i.indexrelid \
         JOIN pg_am am ON am.oid = ic.relam \
         WHERE i.indrelid = ANY($1) ORDER BY ic.relname",
    )
    .bind(oids)
    .fetch_all(&mut *conn)
    .await
    .context(ctx)?;
    let mut out: HashMap<Oid, Keys> = HashMap::new();
    for row in rows {
        let table_oid: Oid = row.try_get(0).context(ctx)?;
        let name: String = row.try_get(1).context(ctx)?;
        let primary: bool = row.try_get(2).context(ctx)?;
        let unique: bool = row.try_get(3).context(ctx)?;
        let special: bool = row.try_get(4).context(ctx)?;
        let method: String = row.try_get(5).context(ctx)?;
        let columns: Vec<String> = row.try_get(6).context(ctx)?;
        let definition: String = row.try_get(7).context(ctx)?;
        let entry = out.entry(table_oid).or_default();
        if primary {
            entry.primary_key = columns;
            entry.primary_key_name = Some(name);
            continue;
        }
        let why = if special {
            Some("an expression or partial index")
        } else if method != "btree" {
            Some("not a btree index")
        } else {
            None
        };
        match why {
            Some(why) => entry.skipped.push(Skipped {
                kind: ObjectKind::Index,
                name,
                reason: format!("{why}: {definition}"),
            }),
            None => entry.indexes.push(Index {
                name,
                columns,
                unique,
                source_name: None,
            }),
        }
    }
    Ok(out)
}

/// CHECK constraints (`NOT NULL` is the column's business).
pub(super) async fn checks(
    conn: &mut PgConnection,
    oids: &[Oid],
    place: &str,
) -> Result<HashMap<Oid, Vec<Check>>> {
    let rows: Vec<(Oid, String, String)> = sqlx::query_as(
        "SELECT c.conrelid, c.conname::text, pg_get_expr(c.conbin, c.conrelid) \
         FROM pg_constraint c WHERE c.contype = 'c' AND c.conrelid = ANY($1) \
         AND c.conparentid = 0 ORDER BY c.conname",
    )
    .bind(oids)
    .fetch_all(&mut *conn)
    .await
    .context(|| format!("{place}: reading CHECK constraints"))?;
    let mut out: HashMap<Oid, Vec<Check>> = HashMap::new();
    for (table, name, expr) in rows {
        out.entry(table).or_default().push(Check {
            name,
            expr: SqlExpr::new(Dialect::Postgres, expr),
            source_name: None,
        });
    }
    Ok(out)
}

/// What a table has that is not carried: its triggers, rules and row
/// security policies.
pub(super) async fn skipped(
    conn: &mut PgConnection,
    oids: &[Oid],
    place: &str,
) -> Result<HashMap<Oid, Vec<Skipped>>> {
    let rows: Vec<(Oid, String, String, String)> = sqlx::query_as(
        "SELECT tgrelid, 'trigger', tgname::text, pg_get_triggerdef(oid) FROM pg_trigger \
           WHERE tgrelid = ANY($1) AND NOT tgisinternal \
         UNION ALL SELECT ev_class, 'rule', rulename::text, pg_get_ruledef(oid) FROM pg_rewrite \
           WHERE ev_class = ANY($1) AND rulename <> '_RETURN' \
         UNION ALL SELECT polrelid, 'policy', polname::text, 'row security policy' FROM pg_policy \
           WHERE polrelid = ANY($1) ORDER BY 1, 2, 3",
    )
    .bind(oids)
    .fetch_all(&mut *conn)
    .await
    .context(|| format!("{place}: reading triggers, rules and policies"))?;
    let mut out: HashMap<Oid, Vec<Skipped>> = HashMap::new();
    for (table, kind, name, definition) in rows {
        let (kind, reason) = match kind.as_str() {
            "trigger" => (
                ObjectKind::Trigger,
                format!("triggers are not carried (their functions are code): {definition}"),
            ),
            "rule" => (
                ObjectKind::Rule,
                format!("rules are not carried: {definition}"),
            ),
            _ => (
                ObjectKind::Policy,
                "row security policies are not carried".to_string(),
            ),
        };
        out.entry(table)
            .or_default()
            .push(Skipped { kind, name, reason });
    }
    Ok(out)
}

/// Foreign keys among the schema's tables; those into another schema go
/// to `skipped`.
pub(super) async fn foreign_keys(
    conn: &mut PgConnection,
    oids: &[Oid],
    namespace: &str,
    place: &str,
    skipped: &mut HashMap<Oid, Vec<Skipped>>,
) -> Result<HashMap<Oid, Vec<ForeignKey>>> {
    let ctx = || format!("{place}: reading foreign keys");
    let rows = sqlx::query(
        "SELECT c.conrelid, t.relname::text, c.conname::text, fc.relname::text, fn.nspname::text, \
         c.confdeltype::text, c.confupdtype::text, \
         ARRAY(SELECT a.attname::text FROM unnest(c.conkey) WITH ORDINALITY k(attnum, n) \
               JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = k.attnum ORDER BY k.n), \
         ARRAY(SELECT a.attname::text FROM unnest(c.confkey) WITH ORDINALITY k(attnum, n) \
               JOIN pg_attribute a ON a.attrelid = c.confrelid AND a.attnum = k.attnum ORDER BY k.n) \
         FROM pg_constraint c JOIN pg_class t ON t.oid = c.conrelid \
         JOIN pg_class fc ON fc.oid = c.confrelid JOIN pg_namespace fn ON fn.oid = fc.relnamespace \
         WHERE c.contype = 'f' AND c.conparentid = 0 AND c.conrelid = ANY($1) ORDER BY c.conname",
    )
    .bind(oids)
    .fetch_all(&mut *conn)
    .await
    .context(ctx)?;
    let action = |code: &str| {
        match code {
            "r" => "RESTRICT",
            "c" => "CASCADE",
            "n" => "SET NULL",
            "d" => "SET DEFAULT",
            _ => "NO ACTION",
        }
        .to_string()
    };
    let mut out: HashMap<Oid, Vec<ForeignKey>> = HashMap::new();
    for row in rows {
        let table_oid: Oid = row.try_get(0).context(ctx)?;
        let table: String = row.try_get(1).context(ctx)?;
        let name: String = row.try_get(2).context(ctx)?;
        let references: String = row.try_get(3).context(ctx)?;
        let ref_schema: String = row.try_get(4).context(ctx)?;
        let on_delete: String = row.try_get(5).context(ctx)?;
        let on_update: String = row.try_get(6).context(ctx)?;
        if ref_schema != namespace {
            warn!(
                table,
                foreign_key = name,
                references = format!("{ref_schema}.{references}"),
                "foreign key to another schema skipped"
            );
            skipped.entry(table_oid).or_default().push(Skipped {
                kind: ObjectKind::ForeignKey,
                name,
                reason: format!("it references {ref_schema}.{references}, in another schema"),
            });
            continue;
        }
        out.entry(table_oid).or_default().push(ForeignKey {
            name,
            columns: row.try_get(7).context(ctx)?,
            references,
            referenced_columns: row.try_get(8).context(ctx)?,
            on_delete: action(&on_delete),
            on_update: action(&on_update),
            source_name: None,
        });
    }
    Ok(out)
}
