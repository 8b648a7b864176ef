//! Schema discovery from `pg_catalog`: tables of one schema with their
//! columns (types resolved through domains, enum labels, constant
//! defaults), primary key, plain-column btree indexes and foreign keys.
//! Also how each column is read, which the chunk readers need.

use std::collections::{HashMap, HashSet};

use sqlx::postgres::types::Oid;
use sqlx::{PgPool, Row};
use tracing::{info, warn};

use super::types::{PgType, Read, source_type};
use crate::error::{Error, Result, ResultExt};
use crate::model::{Column, DataType, ForeignKey, Index, TableSchema, TableSelection, Value};

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
    let exists: Option<Oid> = sqlx::query_scalar("SELECT oid FROM pg_namespace WHERE nspname = $1")
        .bind(namespace)
        .fetch_optional(pool)
        .await
        .context(ctx)?;
    if exists.is_none() {
        return Err(Error::Config(format!(
            "{place}: schema {namespace} does not exist (set it with ?schema=NAME in the URL)"
        )));
    }
    let rows = sqlx::query(
        "SELECT c.oid, c.relname::text, c.relkind::text, c.relispartition \
         FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
         WHERE n.nspname = $1 AND c.relkind IN ('r', 'p', 'v', 'm', 'f') \
         AND c.relname::text NOT LIKE '\\_dmp\\_%' ORDER BY c.relname",
    )
    .bind(namespace)
    .fetch_all(pool)
    .await
    .context(ctx)?;
    let mut tables: Vec<(Oid, String, bool)> = Vec::new();
    for row in rows {
        let oid: Oid = row.try_get(0).context(ctx)?;
        let name: String = row.try_get(1).context(ctx)?;
        let kind: String = row.try_get(2).context(ctx)?;
        let is_partition: bool = row.try_get(3).context(ctx)?;
        let selected = match (only, selection) {
            (Some(only), _) => name == only,
            (None, Some(selection)) => selection.matches(&name),
            (None, None) => true,
        };
        if !selected {
            continue;
        }
        match kind.as_str() {
            "v" | "m" => info!(table = name, "view skipped: views are not copied"),
            "f" => info!(table = name, "foreign table skipped"),
            _ if is_partition => {
                info!(
                    table = name,
                    "partition skipped: its rows are read through its parent"
                );
            }
            _ => tables.push((oid, name, kind == "p")),
        }
    }
    tables.sort_by(|a, b| a.1.cmp(&b.1));
    if tables.is_empty() {
        return Ok(Vec::new());
    }
    let oids: Vec<Oid> = tables.iter().map(|t| t.0).collect();
    let mut columns = columns(pool, &oids, place).await?;
    let mut indexes = indexes(pool, &oids, place).await?;
    let mut foreign_keys = foreign_keys(pool, &oids, namespace, place).await?;
    let mut out = Vec::with_capacity(tables.len());
    for (oid, name, partitioned) in tables {
        let (cols, reads) = columns.remove(&oid).unwrap_or_default();
        let (primary_key, indexes) = indexes.remove(&oid).unwrap_or_default();
        let mut schema = TableSchema {
            namespace: Some(namespace.to_string()),
            name: name.clone(),
            columns: cols,
            primary_key,
            indexes,
            foreign_keys: foreign_keys.remove(&oid).unwrap_or_default(),
            ..Default::default()
        };
        // Key columns are never NULL, whatever the catalog row says.
        let keys: HashSet<String> = schema.primary_key.iter().cloned().collect();
        for c in &mut schema.columns {
            if keys.contains(&c.name) {
                c.nullable = false;
            }
        }
        out.push(SourceTable {
            oid,
            schema,
            columns: reads,
            partitioned,
        });
    }
    Ok(out)
}

type Columns = HashMap<Oid, (Vec<Column>, Vec<SourceColumn>)>;

async fn columns(pool: &PgPool, oids: &[Oid], place: &str) -> Result<Columns> {
    let ctx = || format!("{place}: reading column definitions");
    let rows = sqlx::query(
        "SELECT a.attrelid, c.relname::text, a.attname::text, a.atttypid, a.atttypmod, \
         format_type(a.atttypid, a.atttypmod), a.attnotnull, pg_get_expr(d.adbin, d.adrelid) \
         FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid \
         LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum \
         WHERE a.attrelid = ANY($1) AND a.attnum > 0 AND NOT a.attisdropped \
         ORDER BY a.attrelid, a.attnum",
    )
    .bind(oids)
    .fetch_all(pool)
    .await
    .context(ctx)?;
    struct Raw {
        table: Oid,
        table_name: String,
        name: String,
        type_oid: Oid,
        typmod: i32,
        sql_type: String,
        not_null: bool,
        default: Option<String>,
    }
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
        });
    }
    let wanted: Vec<(Oid, i32)> = raws.iter().map(|r| (r.type_oid, r.typmod)).collect();
    let resolved = resolve_types(pool, &wanted, place).await?;
    let enum_oids: Vec<Oid> = resolved
        .values()
        .filter(|(t, _)| t.kind == 'e')
        .map(|(_, base)| *base)
        .collect();
    let labels = enum_labels(pool, &enum_oids, place).await?;
    let mut out: Columns = HashMap::new();
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
        let default = raw
            .default
            .as_deref()
            .and_then(|expr| constant_default(expr, &mapped.data_type));
        let column = Column {
            name: raw.name,
            data_type: mapped.data_type,
            nullable: !raw.not_null,
            default,
            enum_values: (pg_type.kind == 'e')
                .then(|| labels.get(base_oid).cloned().unwrap_or_default()),
            default_expr: None,
            identity: None,
            on_update: None,
            comment: None,
            collation: None,
            source_type: None,
        };
        let entry = out.entry(raw.table).or_default();
        entry.0.push(column);
        entry.1.push(SourceColumn {
            read: mapped.read,
            sql_type: raw.sql_type,
        });
    }
    Ok(out)
}

/// Resolves (type, typmod) pairs through domains to their base types.
/// Returns the resolved type and the base type's oid.
async fn resolve_types(
    pool: &PgPool,
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
        .fetch_all(pool)
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
pub(super) async fn resolve_column_types(
    pool: &PgPool,
    wanted: &[(Oid, i32)],
    place: &str,
) -> Result<HashMap<(Oid, i32), PgType>> {
    Ok(resolve_types(pool, wanted, place)
        .await?
        .into_iter()
        .map(|(k, (t, _))| (k, t))
        .collect())
}

async fn enum_labels(
    pool: &PgPool,
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
    .fetch_all(pool)
    .await
    .context(|| format!("{place}: reading enum labels"))?;
    for (oid, label) in rows {
        out.entry(oid).or_default().push(label);
    }
    Ok(out)
}

type Indexes = HashMap<Oid, (Vec<String>, Vec<Index>)>;

/// Primary keys and plain-column btree indexes (unique or not).
async fn indexes(pool: &PgPool, oids: &[Oid], place: &str) -> Result<Indexes> {
    let ctx = || format!("{place}: reading indexes");
    let rows = sqlx::query(
        "SELECT i.indrelid, c.relname::text, ic.relname::text, i.indisprimary, i.indisunique, \
         (i.indexprs IS NOT NULL OR i.indpred IS NOT NULL), am.amname::text, \
         ARRAY(SELECT a.attname::text FROM unnest(i.indkey) WITH ORDINALITY k(attnum, n) \
               JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum \
               WHERE k.n <= i.indnkeyatts ORDER BY k.n) \
         FROM pg_index i JOIN pg_class ic ON ic.oid = i.indexrelid \
         JOIN pg_class c ON c.oid = i.indrelid JOIN pg_am am ON am.oid = ic.relam \
         WHERE i.indrelid = ANY($1) ORDER BY ic.relname",
    )
    .bind(oids)
    .fetch_all(pool)
    .await
    .context(ctx)?;
    let mut out: Indexes = HashMap::new();
    for row in rows {
        let table_oid: Oid = row.try_get(0).context(ctx)?;
        let table: String = row.try_get(1).context(ctx)?;
        let name: String = row.try_get(2).context(ctx)?;
        let primary: bool = row.try_get(3).context(ctx)?;
        let unique: bool = row.try_get(4).context(ctx)?;
        let special: bool = row.try_get(5).context(ctx)?;
        let method: String = row.try_get(6).context(ctx)?;
        let columns: Vec<String> = row.try_get(7).context(ctx)?;
        let entry = out.entry(table_oid).or_default();
        if primary {
            entry.0 = columns;
            continue;
        }
        if special {
            info!(table, index = name, "expression or partial index skipped");
        } else if method != "btree" {
            info!(table, index = name, method, "non-btree index skipped");
        } else {
            entry.1.push(Index {
                name,
                columns,
                unique,
                source_name: None,
            });
        }
    }
    Ok(out)
}

async fn foreign_keys(
    pool: &PgPool,
    oids: &[Oid],
    namespace: &str,
    place: &str,
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
    .fetch_all(pool)
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

/// A default that is a constant, as `pg_get_expr` prints it: a number, a
/// boolean or a string literal, possibly in parentheses and with casts
/// (`'new'::character varying`, `(-1)`, `'{}'::jsonb`). Expressions
/// (`nextval(…)`, `now()`) give `None`.
pub(super) fn constant_default(expr: &str, t: &DataType) -> Option<Value> {
    let (literal, rest) = split_literal(expr.trim())?;
    if !rest.trim().is_empty() {
        return None;
    }
    let text = match literal {
        Literal::Null => return None,
        Literal::Text(s) | Literal::Bare(s) => s,
    };
    Value::parse_text(&text, t).ok()
}

enum Literal {
    Null,
    /// A quoted string's content.
    Text(String),
    /// A number or boolean keyword.
    Bare(String),
}

/// The literal at the start of `s` (after opening parentheses, which stay
/// in the rest as a count), and what follows it.
fn split_literal(s: &str) -> Option<(Literal, &str)> {
    let mut s = s;
    let mut open = 0usize;
    while let Some(rest) = s.strip_prefix('(') {
        open += 1;
        s = rest.trim_start();
    }
    let (literal, mut rest) = if let Some(body) =
        s.strip_prefix("E'").or_else(|| s.strip_prefix('\''))
    {
        let escapes = s.starts_with('E');
        let mut out = String::new();
        let mut chars = body.char_indices();
        let mut end = None;
        while let Some((i, c)) = chars.next() {
            match c {
                '\'' if body[i + 1..].starts_with('\'') => {
                    out.push('\'');
                    chars.next();
                }
                '\'' => {
                    end = Some(i + 1);
                    break;
                }
                '\\' if escapes => match chars.next() {
                    Some((_, '\\')) => out.push('\\'),
                    Some((_, '\'')) => out.push('\''),
                    Some((_, 'n')) => out.push('\n'),
                    Some((_, 't')) => out.push('\t'),
                    Some((_, 'r')) => out.push('\r'),
                    _ => return None,
                },
                c => out.push(c),
            }
        }
        (Literal::Text(out), &body[end?..])
    } else {
        let len = s
            .find(|c: char| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '+' | '_')))
            .unwrap_or(s.len());
        let word = &s[..len];
        let literal = match word.to_ascii_lowercase().as_str() {
            "null" => Literal::Null,
            "true" | "false" => Literal::Bare(word.to_ascii_lowercase()),
            _ if word.parse::<crate::model::Decimal>().is_ok() => Literal::Bare(word.to_string()),
            _ => return None,
        };
        (literal, &s[len..])
    };
    // Casts and closing parentheses, in any order, must use up the rest.
    let mut closes = 0usize;
    loop {
        rest = rest.trim_start();
        if let Some(r) = rest.strip_prefix(')') {
            closes += 1;
            rest = r;
        } else if let Some(r) = rest.strip_prefix("::") {
            rest = skip_type_name(r)?;
        } else {
            break;
        }
    }
    (closes == open).then_some((literal, rest))
}

/// Skips a type name such as `character varying(10)`,
/// `timestamp(3) with time zone`, `"MyType"`, `public.mood[]`.
fn skip_type_name(s: &str) -> Option<&str> {
    let s = s.trim_start();
    let mut i = 0;
    let b = s.as_bytes();
    let mut any = false;
    while i < b.len() {
        match b[i] {
            b'"' => {
                let close = s[i + 1..].find('"')?;
                i += close + 2;
            }
            b'(' => {
                let close = s[i..].find(')')?;
                if !s[i + 1..i + close]
                    .bytes()
                    .all(|c| c.is_ascii_digit() || c == b',' || c == b' ')
                {
                    break;
                }
                i += close + 1;
            }
            b'[' if s[i..].starts_with("[]") => i += 2,
            c if c.is_ascii_alphanumeric() || c == b'_' || c == b'.' || c == b' ' => i += 1,
            _ if !b[i].is_ascii() => i += 1,
            _ => break,
        }
        any = true;
    }
    any.then_some(&s[i..])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn default(expr: &str, t: &str) -> Option<Value> {
        constant_default(expr, &t.parse().unwrap())
    }

    #[test]
    fn constant_defaults_are_kept() {
        assert_eq!(default("0", "int32"), Some(Value::Int(0)));
        assert_eq!(default("(-1)", "int64"), Some(Value::Int(-1)));
        assert_eq!(default("'-1'::integer", "int32"), Some(Value::Int(-1)));
        assert_eq!(
            default("'new'::character varying", "text(10)"),
            Some(Value::Text("new".into()))
        );
        assert_eq!(
            default("('a''b'::character varying)::text", "text"),
            Some(Value::Text("a'b".into()))
        );
        assert_eq!(default("true", "bool"), Some(Value::Bool(true)));
        assert_eq!(
            default("0.00", "decimal(12,2)"),
            Some(Value::Decimal("0.00".parse().unwrap()))
        );
        assert_eq!(
            default("'{}'::jsonb", "json"),
            Some(Value::Json("{}".into()))
        );
        assert_eq!(
            default(
                "'2024-01-01 00:00:00+00'::timestamp(3) with time zone",
                "timestamptz"
            ),
            Value::parse_text("2024-01-01 00:00:00+00:00", &DataType::TimestampTz).ok()
        );
        assert_eq!(
            default("'x'::\"MyText\"", "text"),
            Some(Value::Text("x".into()))
        );
        assert_eq!(
            default("E'a\\\\b'", "text"),
            Some(Value::Text("a\\b".into()))
        );
    }

    #[test]
    fn expressions_are_dropped() {
        for expr in [
            "nextval('t_id_seq'::regclass)",
            "now()",
            "CURRENT_TIMESTAMP",
            "'a'::text || 'b'::text",
            "(1 + 2)",
            "NULL::text",
            "gen_random_uuid()",
            "(('a'::text)",
        ] {
            assert_eq!(default(expr, "text"), None, "{expr}");
        }
        // A literal that is not a value of the column's type.
        assert_eq!(default("'abc'::text", "int32"), None);
    }
}
