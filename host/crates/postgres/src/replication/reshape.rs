//! A streamed table's shape as a Relation message gives it. PostgreSQL's
//! logical decoding carries no DDL: the walsender sends a table's Relation
//! message again before its first change after the table changed, with the
//! columns (names, types) its rows have from there on. When those differ
//! from the ones the stream reads by, the new shape is handed on as a
//! change of shape before the rows that have it.
//!
//! Each column is read as its type says (from the message, so a column the
//! source has renamed or dropped again since is still read right); the
//! catalog adds what the message lacks (nullability, default, key) where it
//! still has the column with that type. A column of the old shape that the
//! message lacks and the catalog still has belongs to rows older than it
//! (a restart replays them); one the catalog lacks was dropped, or renamed
//! when another column now has its number.

use std::sync::Arc;

use sqlx::PgPool;
use sqlx::postgres::types::Oid;

use super::super::catalog::{self, SourceTable};
use super::super::types::source_type;
use super::columns::{self, ColumnPlan, TablePlan, TextForm};
use super::pgoutput::{Relation, RelationColumn};
use crate::error::{Error, Result, ResultExt};
use dmp_contract::{SchemaChange, TableEvent};
use dmp_model::{Column, TableSchema};

/// Whether the Relation message describes the rows as `plan` reads them.
pub(super) fn same_shape(plan: &TablePlan, relation: &Relation) -> bool {
    plan.columns.len() == relation.columns.len()
        && plan
            .columns
            .iter()
            .zip(&relation.columns)
            .all(|(c, r)| c.name == r.name && c.type_oid == r.type_oid && c.typmod == r.typmod)
}

/// The read plan of the table's new shape, and the change of shape to
/// hand on (a new table when there is no `old` plan).
pub(super) async fn reshape(
    pool: &PgPool,
    place: &str,
    old: Option<&TablePlan>,
    namespace: &str,
    relation: &Relation,
) -> Result<(TablePlan, SchemaChange)> {
    let current = catalog::discover(pool, namespace, place, None, Some(&relation.name))
        .await?
        .into_iter()
        .next();
    let now = match &current {
        Some(table) => columns::column_types(pool, place, table.oid).await?,
        None => Default::default(),
    };
    let mut model = Vec::with_capacity(relation.columns.len());
    let mut plans = Vec::with_capacity(relation.columns.len());
    for (at, rc) in relation.columns.iter().enumerate() {
        let (column, plan) = column(pool, place, current.as_ref(), &now, at, rc).await?;
        model.push(column);
        plans.push(plan);
    }
    let base = match (&current, old) {
        (Some(table), _) => table.schema.clone(),
        (None, Some(old)) => (*old.schema).clone(),
        (None, None) => {
            return Err(Error::SourceChanged(format!(
                "{place}: table {namespace}.{} was created at the source and is gone again: \
                 its rows in the stream cannot be read; run with --restart",
                relation.name
            )));
        }
    };
    let mut schema = TableSchema {
        namespace: Some(namespace.to_string()),
        name: relation.name.clone(),
        columns: model,
        ..base
    };
    let key: Vec<String> = relation
        .columns
        .iter()
        .filter(|c| c.key)
        .map(|c| c.name.clone())
        .collect();
    if !schema
        .primary_key
        .iter()
        .all(|k| schema.column_index(k).is_some())
    {
        schema.primary_key = key;
    }
    for c in &mut schema.columns {
        if schema.primary_key.contains(&c.name) {
            c.nullable = false;
        }
    }
    // What reads columns these rows do not have is not this shape's.
    let has = |names: &[String]| names.iter().all(|n| schema.column_index(n).is_some());
    let indexes = schema
        .indexes
        .iter()
        .filter(|i| has(&i.columns))
        .cloned()
        .collect();
    let foreign_keys = schema
        .foreign_keys
        .iter()
        .filter(|f| has(&f.columns))
        .cloned()
        .collect();
    let checks = schema
        .checks
        .iter()
        .filter(|c| {
            c.expr
                .columns()
                .is_some_and(|read| read.iter().all(|n| schema.column_index(n).is_some()))
        })
        .cloned()
        .collect();
    schema.indexes = indexes;
    schema.foreign_keys = foreign_keys;
    schema.checks = checks;
    let schema = Arc::new(schema);
    let mut plan = [TablePlan {
        oid: relation.oid,
        keys: schema.primary_key_indices(),
        schema: schema.clone(),
        columns: plans,
    }];
    columns::with_text_forms(pool, place, &mut plan).await?;
    let [plan] = plan;
    let mut change = SchemaChange {
        schema,
        event: TableEvent::Created,
        statement: None,
        renamed: Vec::new(),
        dropped: Vec::new(),
    };
    if let Some(old) = old {
        change.event = if old.schema.name == relation.name {
            TableEvent::Altered
        } else {
            TableEvent::Renamed(old.schema.name.clone())
        };
        for column in &old.columns {
            if relation.columns.iter().any(|r| r.name == column.name)
                || now.contains_key(&column.name)
            {
                // Kept, or only missing from these (older) rows.
                continue;
            }
            match now
                .iter()
                .find(|(_, (_, attnum, _))| *attnum == column.attnum)
            {
                Some((name, _)) => change.renamed.push((column.name.clone(), name.clone())),
                None => change.dropped.push(column.name.clone()),
            }
        }
    }
    Ok((plan, change))
}

/// One column of the message (the `at`th): its model column (from the
/// catalog when it still has the column with this type: by name, or, renamed
/// since, at the same place) and how the stream reads it.
async fn column(
    pool: &PgPool,
    place: &str,
    current: Option<&SourceTable>,
    now: &std::collections::HashMap<String, (u32, i16, i32)>,
    at: usize,
    rc: &RelationColumn,
) -> Result<(Column, ColumnPlan)> {
    let known = current.and_then(|table| {
        // Columns keep their order (added ones come last): one renamed
        // since sits where the message has it, unless one before it was
        // dropped since (then its type rarely matches).
        let at = table
            .schema
            .column_index(&rc.name)
            .or_else(|| (at < table.schema.columns.len()).then_some(at))?;
        let name = &table.schema.columns[at].name;
        let &(type_oid, attnum, typmod) = now.get(name)?;
        (type_oid == rc.type_oid && typmod == rc.typmod).then(|| {
            let column = Column {
                name: rc.name.clone(),
                ..table.schema.columns[at].clone()
            };
            let read = &table.columns[at];
            let plan = ColumnPlan {
                name: rc.name.clone(),
                type_oid,
                attnum,
                typmod,
                read: read.read,
                sql_type: read.sql_type.clone(),
                text: TextForm::AsIs,
            };
            (column, plan)
        })
    });
    if let Some(found) = known {
        return Ok(found);
    }
    // Renamed or retyped again since: read by the message's own type.
    let ctx = || {
        format!(
            "{place}: reading type {} of column {}",
            rc.type_oid, rc.name
        )
    };
    let wanted = [(Oid(rc.type_oid), rc.typmod)];
    let types = catalog::resolve_column_types(pool, &wanted, place).await?;
    let pg_type = types.get(&wanted[0]).ok_or_else(|| {
        Error::Data(format!(
            "{}: type of column {} not found in pg_type",
            ctx(),
            rc.name
        ))
    })?;
    let mapped = source_type(pg_type);
    let sql_type: String = sqlx::query_scalar("SELECT format_type($1, $2)")
        .bind(Oid(rc.type_oid))
        .bind(rc.typmod)
        .fetch_one(pool)
        .await
        .context(ctx)?;
    let mut column = Column::new(rc.name.clone(), mapped.data_type);
    column.source_type = Some(sql_type.clone());
    let plan = ColumnPlan {
        name: rc.name.clone(),
        type_oid: rc.type_oid,
        attnum: now.get(&rc.name).map_or(0, |c| c.1),
        typmod: rc.typmod,
        read: mapped.read,
        sql_type,
        text: TextForm::AsIs,
    };
    Ok((column, plan))
}
