//! Columns of discovered tables: types resolved through domains, enum
//! labels, defaults, identity and serial counters, comments, collations.

use std::collections::HashMap;

use sqlx::postgres::types::Oid;
use sqlx::{PgConnection, PgPool, Row};
use tracing::warn;

use super::super::copy_binary::Wire;
use super::super::types::{PgType, Read, source_type};
use super::SourceColumn;
use super::defaults::constant_default;
use crate::error::{Error, Result, ResultExt};
use dmp_model::{Column, Dialect, Expr, Func, Identity, ObjectKind, Skipped, SqlExpr, Value};

/// A table's columns and read plans, and what of its columns the model
/// does not hold.
#[derive(Default)]
pub(super) struct TableColumns {
    pub(super) columns: Vec<Column>,
    pub(super) reads: Vec<SourceColumn>,
    pub(super) skipped: Vec<Skipped>,
}

/// A column's catalog row.
struct Raw {
    table: Oid,
    table_name: String,
    name: String,
    type_oid: Oid,
    typmod: i32,
    sql_type: String,
    not_null: bool,
    default: Option<String>,
    /// `attidentity`: `a` always, `d` by default, empty for none.
    identity: String,
    /// `attgenerated`: `s` stored, empty for none.
    generated: String,
    comment: Option<String>,
    collation: Option<String>,
    /// The sequence the column owns (identity or serial), its start,
    /// increment and last value (`None` before the first `nextval`, or
    /// where the role may not read it).
    sequence: Option<String>,
    sequence_start: Option<i64>,
    sequence_increment: Option<i64>,
    sequence_last: Option<i64>,
}

const COLUMNS: &str = "SELECT a.attrelid, c.relname::text, a.attname::text, a.atttypid, a.atttypmod, \
     format_type(a.atttypid, a.atttypmod), a.attnotnull, pg_get_expr(d.adbin, d.adrelid), \
     a.attidentity::text, a.attgenerated::text, col_description(a.attrelid, a.attnum), \
     CASE WHEN a.attcollation <> 0 AND a.attcollation <> t.typcollation THEN co.collname::text END, \
     s.relname::text, ps.seqstart, ps.seqincrement, \
     CASE WHEN has_sequence_privilege(s.oid, 'SELECT') THEN pg_sequence_last_value(s.oid) END \
     FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid JOIN pg_type t ON t.oid = a.atttypid \
     LEFT JOIN pg_collation co ON co.oid = a.attcollation \
     LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum \
     LEFT JOIN LATERAL (SELECT sc.oid, sc.relname FROM pg_depend dep JOIN pg_class sc ON sc.oid = dep.objid \
         WHERE dep.classid = 'pg_class'::regclass AND dep.refclassid = 'pg_class'::regclass \
         AND dep.refobjid = a.attrelid AND dep.refobjsubid = a.attnum AND dep.deptype IN ('a', 'i') \
         AND sc.relkind = 'S' LIMIT 1) s ON true \
     LEFT JOIN pg_sequence ps ON ps.seqrelid = s.oid \
     WHERE a.attrelid = ANY($1) AND a.attnum > 0 AND NOT a.attisdropped \
     ORDER BY a.attrelid, a.attnum";

async fn raw_columns(conn: &mut PgConnection, oids: &[Oid], place: &str) -> Result<Vec<Raw>> {
    let ctx = || format!("{place}: reading column definitions");
    let rows = sqlx::query(COLUMNS)
        .bind(oids)
        .fetch_all(&mut *conn)
        .await
        .context(ctx)?;
    let mut raws = Vec::with_capacity(rows.len());
    for row in rows {
        raws.push(Raw {
            table: row.try_get(0).context(ctx)?,
            table_name: row.try_get(1).context(ctx)?,
            name: row.try_get(2).context(ctx)?,
            type_oid: row.try_get(3).context(ctx)?,
            typmod: row.try_get(4).context(ctx)?,
            sql_type: row.try_get(5).context(ctx)?,
            not_null: row.try_get(6).context(ctx)?,
            default: row.try_get(7).context(ctx)?,
            identity: row.try_get(8).context(ctx)?,
            generated: row.try_get(9).context(ctx)?,
            comment: row.try_get(10).context(ctx)?,
            collation: row.try_get(11).context(ctx)?,
            sequence: row.try_get(12).context(ctx)?,
            sequence_start: row.try_get(13).context(ctx)?,
            sequence_increment: row.try_get(14).context(ctx)?,
            sequence_last: row.try_get(15).context(ctx)?,
        });
    }
    Ok(raws)
}

pub(super) async fn columns(
    conn: &mut PgConnection,
    oids: &[Oid],
    place: &str,
) -> Result<HashMap<Oid, TableColumns>> {
    let raws = raw_columns(conn, oids, place).await?;
    let wanted: Vec<(Oid, i32)> = raws.iter().map(|r| (r.type_oid, r.typmod)).collect();
    let resolved = resolve_types(conn, &wanted, place).await?;
    let enum_oids: Vec<Oid> = resolved
        .values()
        .filter(|(t, _)| t.kind == 'e')
        .map(|(_, base)| *base)
        .collect();
    let labels = enum_labels(conn, &enum_oids, place).await?;
    let mut out: HashMap<Oid, TableColumns> = HashMap::new();
    for raw in raws {
        let Some((pg_type, base_oid)) = resolved.get(&(raw.type_oid, raw.typmod)) else {
            return Err(Error::Data(format!(
                "{place}: type of column {}.{} not found in pg_type",
                raw.table_name, raw.name
            )));
        };
        let mapped = source_type(pg_type);
        if mapped.fallback {
            warn!(
                table = raw.table_name,
                column = raw.name,
                sql_type = raw.sql_type,
                "read as text: the model has no such type"
            );
        }
        let entry = out.entry(raw.table).or_default();
        if raw.generated == "s" {
            entry.skipped.push(Skipped {
                kind: ObjectKind::Column,
                name: raw.name.clone(),
                reason: format!(
                    "generated column ({}): its values are copied into a plain column",
                    raw.default.as_deref().unwrap_or("?")
                ),
            });
        }
        let mut column = Column::new(raw.name.clone(), mapped.data_type);
        column.nullable = !raw.not_null;
        column.enum_values =
            (pg_type.kind == 'e').then(|| labels.get(base_oid).cloned().unwrap_or_default());
        column.fixed_length = mapped.read == Read::Native(Wire::Char);
        column.comment = raw.comment.clone();
        column.collation = raw.collation.clone();
        column.source_type = Some(raw.sql_type.clone());
        column.identity = identity(&raw);
        if raw.generated.is_empty() {
            set_default(&mut column, raw.default.as_deref());
        }
        entry.columns.push(column);
        entry.reads.push(SourceColumn {
            read: mapped.read,
            sql_type: raw.sql_type,
        });
    }
    Ok(out)
}

/// Identity columns, and serial ones (a `nextval` default on the sequence
/// the column owns), with the value their sequence hands out next.
fn identity(raw: &Raw) -> Option<Identity> {
    let next = match (raw.sequence_last, raw.sequence_increment) {
        (Some(last), Some(step)) => last.checked_add(step),
        _ => raw.sequence_start,
    };
    match raw.identity.as_str() {
        "a" | "d" => Some(Identity {
            always: raw.identity == "a",
            next,
            sequence: None,
        }),
        _ => {
            let sequence = raw.sequence.as_ref()?;
            let expr = SqlExpr::new(Dialect::Postgres, raw.default.as_deref()?);
            let serial = matches!(
                &expr.portable,
                Some(Expr::Call { func: Func::NextVal, args })
                    if matches!(args.as_slice(), [Expr::Literal { value: Value::Text(s) }]
                        if s.trim_matches('"') == sequence)
            );
            serial.then(|| Identity {
                always: false,
                next,
                sequence: Some(sequence.clone()),
            })
        }
    }
}

/// A constant default as a value, an expression as itself; a serial
/// column's `nextval` is its identity, not a default.
fn set_default(column: &mut Column, default: Option<&str>) {
    let Some(expr) = default else { return };
    if column.identity.is_some() {
        return;
    }
    match constant_default(expr, &column.data_type) {
        Some(value) => column.default = Some(value),
        // `NULL::text` and the like: no default.
        None if expr.trim_start().to_ascii_uppercase().starts_with("NULL") => {}
        None => column.default_expr = Some(SqlExpr::new(Dialect::Postgres, expr)),
    }
}

/// Resolves (type, typmod) pairs through domains to their base types.
/// Returns the resolved type and the base type's oid.
async fn resolve_types(
    conn: &mut PgConnection,
    wanted: &[(Oid, i32)],
    place: &str,
) -> Result<HashMap<(Oid, i32), (PgType, Oid)>> {
    let ctx = || format!("{place}: reading pg_type");
    struct Info {
        name: String,
        schema: String,
        kind: char,
        category: char,
        base: Oid,
        base_typmod: i32,
    }
    let mut known: HashMap<Oid, Info> = HashMap::new();
    let mut missing: Vec<Oid> = wanted.iter().map(|(o, _)| *o).collect();
    // Domains over domains: a few rounds at most.
    for _ in 0..16 {
        missing.sort_by_key(|o| o.0);
        missing.dedup();
        missing.retain(|o| !known.contains_key(o));
        if missing.is_empty() {
            break;
        }
        let rows = sqlx::query(
            "SELECT t.oid, t.typname::text, n.nspname::text, t.typtype::text, t.typcategory::text, \
             t.typbasetype, t.typtypmod FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace \
             WHERE t.oid = ANY($1)",
        )
        .bind(&missing)
        .fetch_all(&mut *conn)
        .await
        .context(ctx)?;
        missing.clear();
        for row in rows {
            let oid: Oid = row.try_get(0).context(ctx)?;
            let kind: String = row.try_get(3).context(ctx)?;
            let category: String = row.try_get(4).context(ctx)?;
            let info = Info {
                name: row.try_get(1).context(ctx)?,
                schema: row.try_get(2).context(ctx)?,
                kind: kind.chars().next().unwrap_or('b'),
                category: category.chars().next().unwrap_or('X'),
                base: row.try_get(5).context(ctx)?,
                base_typmod: row.try_get(6).context(ctx)?,
            };
            if info.kind == 'd' {
                missing.push(info.base);
            }
            known.insert(oid, info);
        }
    }
    let mut out = HashMap::new();
    for &(oid, typmod) in wanted {
        let mut oid_now = oid;
        let mut typmod_now = typmod;
        let mut hops = 0;
        while let Some(info) = known.get(&oid_now).filter(|i| i.kind == 'd') {
            if typmod_now == -1 {
                typmod_now = info.base_typmod;
            }
            oid_now = info.base;
            hops += 1;
            if hops > 16 {
                break;
            }
        }
        if let Some(info) = known.get(&oid_now) {
            out.insert(
                (oid, typmod),
                (
                    PgType {
                        name: info.name.clone(),
                        schema: info.schema.clone(),
                        kind: info.kind,
                        category: info.category,
                        typmod: typmod_now,
                    },
                    oid_now,
                ),
            );
        }
    }
    Ok(out)
}

/// Public for the target, which reads its own columns' types.
pub(in super::super) async fn resolve_column_types(
    pool: &PgPool,
    wanted: &[(Oid, i32)],
    place: &str,
) -> Result<HashMap<(Oid, i32), PgType>> {
    let mut conn = pool
        .acquire()
        .await
        .context(|| format!("{place}: reading pg_type"))?;
    Ok(resolve_types(&mut conn, wanted, place)
        .await?
        .into_iter()
        .map(|(k, (t, _))| (k, t))
        .collect())
}

async fn enum_labels(
    conn: &mut PgConnection,
    oids: &[Oid],
    place: &str,
) -> Result<HashMap<Oid, Vec<String>>> {
    let mut out: HashMap<Oid, Vec<String>> = HashMap::new();
    if oids.is_empty() {
        return Ok(out);
    }
    let rows: Vec<(Oid, String)> = sqlx::query_as(
        "SELECT enumtypid, enumlabel::text FROM pg_enum WHERE enumtypid = ANY($1) \
         ORDER BY enumtypid, enumsortorder",
    )
    .bind(oids)
    .fetch_all(&mut *conn)
    .await
    .context(|| format!("{place}: reading enum labels"))?;
    for (oid, label) in rows {
        out.entry(oid).or_default().push(label);
    }
    Ok(out)
}
