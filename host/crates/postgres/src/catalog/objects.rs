//! The schema's objects besides tables: views and materialized views (in
//! an order that creates each after what it reads), sequences no copied
//! column owns, and what is not carried (routines, extensions, foreign
//! tables), for the assessment.

use std::collections::HashMap;

use sqlx::{PgConnection, PgPool};

use crate::error::{Result, ResultExt};
use dmp_model::{
    Dialect, Expr, Func, ObjectKind, SchemaObjects, Sequence, Skipped, TableSchema, TableSelection,
    Value, View, views_in_dependency_order,
};

/// The objects of `namespace` that go with the selected `tables`: views
/// the globs select, sequences they select or the tables' defaults use.
pub(in super::super) async fn objects(
    pool: &PgPool,
    namespace: &str,
    place: &str,
    selection: &TableSelection,
    tables: &[TableSchema],
) -> Result<SchemaObjects> {
    let ctx = || format!("{place}: reading the objects of schema {namespace}");
    let mut txn = pool.begin().await.context(ctx)?;
    let conn = &mut *txn;
    if !super::in_schema(conn, namespace, place).await? {
        return Ok(SchemaObjects::default());
    }
    let mut objects = SchemaObjects {
        views: views(conn, namespace, place, selection).await?,
        sequences: sequences(conn, namespace, place, selection, tables).await?,
        skipped: Vec::new(),
    };
    objects.skipped = skipped(conn, namespace, place, selection).await?;
    Ok(objects)
}

async fn views(
    conn: &mut PgConnection,
    namespace: &str,
    place: &str,
    selection: &TableSelection,
) -> Result<Vec<View>> {
    let ctx = || format!("{place}: reading the views of schema {namespace}");
    let rows: Vec<(String, String, String, Option<String>)> = sqlx::query_as(
        "SELECT c.relname::text, c.relkind::text, pg_get_viewdef(c.oid, true), \
         obj_description(c.oid, 'pg_class') \
         FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
         WHERE n.nspname = $1 AND c.relkind IN ('v', 'm') ORDER BY c.relname",
    )
    .bind(namespace)
    .fetch_all(&mut *conn)
    .await
    .context(ctx)?;
    // What each view reads: relations of this schema by name, others
    // qualified (which no target table matches).
    let deps: Vec<(String, String, String)> = sqlx::query_as(
        "SELECT DISTINCT v.relname::text, dn.nspname::text, d.relname::text \
         FROM pg_class v JOIN pg_namespace n ON n.oid = v.relnamespace \
         JOIN pg_rewrite r ON r.ev_class = v.oid \
         JOIN pg_depend dep ON dep.classid = 'pg_rewrite'::regclass AND dep.objid = r.oid \
              AND dep.refclassid = 'pg_class'::regclass \
         JOIN pg_class d ON d.oid = dep.refobjid AND d.oid <> v.oid \
         JOIN pg_namespace dn ON dn.oid = d.relnamespace \
         WHERE n.nspname = $1 AND v.relkind IN ('v', 'm') ORDER BY 1, 2, 3",
    )
    .bind(namespace)
    .fetch_all(&mut *conn)
    .await
    .context(ctx)?;
    let mut depends: HashMap<String, Vec<String>> = HashMap::new();
    for (view, schema, relation) in deps {
        let name = if schema == namespace {
            relation
        } else {
            format!("{schema}.{relation}")
        };
        depends.entry(view).or_default().push(name);
    }
    let views = rows
        .into_iter()
        .filter(|(name, ..)| selection.matches(name))
        .map(|(name, kind, definition, comment)| View {
            depends_on: depends.remove(&name).unwrap_or_default(),
            materialized: kind == "m",
            dialect: Dialect::Postgres,
            definition: definition.trim().trim_end_matches(';').to_string(),
            comment,
            name,
        })
        .collect();
    Ok(views_in_dependency_order(views))
}

/// Sequences no column owns (those travel as their column's identity),
/// which the globs select or a copied column's default draws from.
async fn sequences(
    conn: &mut PgConnection,
    namespace: &str,
    place: &str,
    selection: &TableSelection,
    tables: &[TableSchema],
) -> Result<Vec<Sequence>> {
    type Row = (String, String, i64, i64, i64, i64, i64, bool, Option<i64>);
    let rows: Vec<Row> = sqlx::query_as(
        "SELECT c.relname::text, format_type(s.seqtypid, NULL), s.seqstart, s.seqincrement, \
         s.seqmin, s.seqmax, s.seqcache, s.seqcycle, \
         CASE WHEN has_sequence_privilege(c.oid, 'SELECT') THEN pg_sequence_last_value(c.oid) END \
         FROM pg_sequence s JOIN pg_class c ON c.oid = s.seqrelid \
         JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = $1 \
         AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_class'::regclass \
                         AND d.objid = c.oid AND d.deptype IN ('a', 'i')) ORDER BY c.relname",
    )
    .bind(namespace)
    .fetch_all(&mut *conn)
    .await
    .context(|| format!("{place}: reading the sequences of schema {namespace}"))?;
    let used: Vec<&str> = tables
        .iter()
        .flat_map(|t| &t.columns)
        .filter_map(|c| match c.default_expr.as_ref()?.portable.as_ref()? {
            Expr::Call {
                func: Func::NextVal,
                args,
            } => match args.first() {
                Some(Expr::Literal {
                    value: Value::Text(name),
                }) => Some(name.as_str()),
                _ => None,
            },
            _ => None,
        })
        .collect();
    Ok(rows
        .into_iter()
        .filter(|row| {
            selection.matches(&row.0) || used.iter().any(|u| u.trim_matches('"') == row.0)
        })
        .map(
            |(name, data_type, start, increment, min, max, cache, cycle, last_value)| Sequence {
                name,
                data_type,
                start,
                increment,
                min,
                max,
                cache,
                cycle,
                last_value,
            },
        )
        .collect())
}

/// Routines, extensions and foreign tables: listed, not carried.
async fn skipped(
    conn: &mut PgConnection,
    namespace: &str,
    place: &str,
    selection: &TableSelection,
) -> Result<Vec<Skipped>> {
    let rows: Vec<(String, String, String)> = sqlx::query_as(
        "SELECT 'routine', p.proname::text, \
           CASE p.prokind WHEN 'p' THEN 'procedure' WHEN 'a' THEN 'aggregate' ELSE 'function' END \
           || ' ' || p.proname || '(' || pg_get_function_identity_arguments(p.oid) || ')' \
         FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace WHERE n.nspname = $1 \
         AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_proc'::regclass \
                         AND d.objid = p.oid AND d.deptype = 'e') \
         UNION ALL SELECT 'extension', extname::text, 'extension ' || extname || ' ' || extversion \
         FROM pg_extension WHERE extname <> 'plpgsql' \
         UNION ALL SELECT 'foreign table', c.relname::text, 'foreign table' FROM pg_class c \
         JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = $1 AND c.relkind = 'f' \
         ORDER BY 1, 2",
    )
    .bind(namespace)
    .fetch_all(&mut *conn)
    .await
    .context(|| format!("{place}: reading the routines of schema {namespace}"))?;
    Ok(rows
        .into_iter()
        .filter(|(kind, name, _)| kind != "foreign table" || selection.matches(name))
        .map(|(kind, name, what)| {
            let (kind, reason) = match kind.as_str() {
                "routine" => (
                    ObjectKind::Routine,
                    format!("{what}: routines are code and are not carried"),
                ),
                "extension" => (
                    ObjectKind::Extension,
                    format!("{what}: create it on the target where its objects are needed"),
                ),
                _ => (
                    ObjectKind::Table,
                    "a foreign table: its rows live on another server".to_string(),
                ),
            };
            Skipped { kind, name, reason }
        })
        .collect())
}
