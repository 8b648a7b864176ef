//! What a streamed table's change of shape does to the target: the steps
//! that make the target's table the new shape, or a stop that names the
//! change, the table and the way to go on. `[cdc] schema_changes` decides:
//! `additive` carries what loses nothing (a new column, a wider type, a
//! column made nullable, a new table), `apply` carries everything, `stop`
//! nothing.

use crate::error::{Error, Result};
use dmp_config::SchemaChanges;
use dmp_contract::{SchemaChange, TableEvent};
use dmp_model::{Column, DataType, SchemaDelta, TableSchema};

/// The steps from `target` (the table as the target has it) to `new` (the
/// source's new shape after the transforms), or the stop the policy asks
/// for. `before` is the shape the stream had for the table, when it has
/// streamed it (a narrower type is seen against it; right after a restart
/// the stream may replay shapes older than what it was opened with).
/// Columns `target` has and the change neither keeps nor drops are missing
/// from older rows (replayed after a restart): they need nothing.
pub(super) fn deltas(
    target: &TableSchema,
    before: Option<&TableSchema>,
    new: &TableSchema,
    change: &SchemaChange,
    policy: SchemaChanges,
    at: &str,
) -> Result<Vec<SchemaDelta>> {
    let mut deltas = Vec::new();
    let mut lossy = Vec::new();
    match &change.event {
        TableEvent::Dropped => {
            deltas.push(SchemaDelta::DropTable);
            lossy.push("the table was dropped".to_string());
        }
        TableEvent::Renamed(from) => {
            deltas.push(SchemaDelta::RenameTable { from: from.clone() });
            lossy.push(format!("the table was renamed from {from}"));
        }
        TableEvent::Created | TableEvent::Altered => {
            column_deltas(target, before, new, change, &mut deltas, &mut lossy);
        }
    }
    let stop = match policy {
        SchemaChanges::Apply => None,
        SchemaChanges::Additive => (!lossy.is_empty()).then(|| lossy.join(", ")),
        SchemaChanges::Stop => (!deltas.is_empty()).then(|| describe(&deltas)),
    };
    match stop {
        None => Ok(deltas),
        Some(what) => Err(Error::SourceChanged(format!(
            "table {}: {what} at the source ({}), at {at}. With [cdc] schema_changes = \"{}\" \
             the run stops here; the target holds every change before it. To carry it, set \
             schema_changes = \"apply\" under [cdc] and run the same command again; to copy the \
             table anew, run it with --restart",
            new.name,
            change.statement.as_deref().map_or_else(
                || "seen in the change stream".to_string(),
                |s| format!("`{}`", s.trim())
            ),
            policy.as_str()
        ))),
    }
}

fn column_deltas(
    target: &TableSchema,
    before: Option<&TableSchema>,
    new: &TableSchema,
    change: &SchemaChange,
    deltas: &mut Vec<SchemaDelta>,
    lossy: &mut Vec<String>,
) {
    let mut renamed = change.renamed.clone();
    if before.is_none() {
        renamed.extend(inferred_renames(target, new));
    }
    let change = &SchemaChange {
        renamed,
        ..change.clone()
    };
    let renamed_to = |name: &str| change.renamed.iter().any(|(_, to)| to == name);
    for (from, to) in &change.renamed {
        if target.column_index(from).is_some() && new.column_index(to).is_some() {
            deltas.push(SchemaDelta::RenameColumn {
                from: from.clone(),
                to: to.clone(),
            });
            lossy.push(format!("column {from} was renamed to {to}"));
        }
    }
    for name in &change.dropped {
        if target.column_index(name).is_some() && new.column_index(name).is_none() {
            deltas.push(SchemaDelta::DropColumn(name.clone()));
            lossy.push(format!("column {name} was dropped"));
        }
    }
    let find = |table: &'_ TableSchema, name: &str| -> Option<Column> {
        let old = change
            .renamed
            .iter()
            .find(|(_, to)| to == name)
            .map_or(name, |(from, _)| from.as_str());
        table
            .columns
            .iter()
            .find(|c| c.name == name || c.name == old)
            .cloned()
    };
    for column in &new.columns {
        match find(target, &column.name) {
            None if !renamed_to(&column.name) => {
                deltas.push(SchemaDelta::AddColumn(Box::new(column.clone())));
            }
            None => {}
            Some(held) => {
                let streamed = before.and_then(|b| find(b, &column.name));
                if let Some(delta) = alter(&held, streamed.as_ref(), column, lossy) {
                    deltas.push(delta);
                }
            }
        }
    }
}

/// Renames the source made while no stream followed it (stopped, or
/// before a restart): the target's column that the source no longer has,
/// at the place where the source has a column the target lacks, of the
/// same type. Without the stream's own record of the change, this is the
/// reading that loses nothing; `schema_changes` decides whether it is
/// carried.
fn inferred_renames(target: &TableSchema, new: &TableSchema) -> Vec<(String, String)> {
    target
        .columns
        .iter()
        .zip(&new.columns)
        .filter(|(t, n)| {
            t.name != n.name
                && t.data_type == n.data_type
                && new.column_index(&t.name).is_none()
                && target.column_index(&n.name).is_none()
        })
        .map(|(t, n)| (t.name.clone(), n.name.clone()))
        .collect()
}

/// What an existing column of the target (`before`) needs for the new
/// shape: nothing when it holds every value of the new type (it may be
/// wider: a target's types need not be the source's) and the source did
/// not narrow it (against `streamed`, its shape in the stream), else a
/// wider type, or another one (lossy). NOT NULL is lifted, never added
/// (the target keeps rows the source may since have filled).
fn alter(
    before: &Column,
    streamed: Option<&Column>,
    column: &Column,
    lossy: &mut Vec<String>,
) -> Option<SchemaDelta> {
    if let Some(streamed) = streamed
        && !widens(streamed, column)
    {
        lossy.push(format!(
            "column {} changed from {} to {}",
            column.name, streamed.data_type, column.data_type
        ));
        return Some(SchemaDelta::AlterColumn {
            from: Box::new(Column {
                name: column.name.clone(),
                ..before.clone()
            }),
            to: Box::new(Column {
                name: column.name.clone(),
                nullable: before.nullable || column.nullable,
                ..column.clone()
            }),
        });
    }
    let values_fit = match (&before.enum_values, &column.enum_values) {
        // A target that does not say its values holds any.
        (None, _) => true,
        (Some(a), Some(b)) => b.iter().all(|v| a.contains(v)),
        (Some(_), None) => false,
    };
    let holds = values_fit && wider_type(&column.data_type, &before.data_type);
    let relax = !before.nullable && column.nullable;
    if holds && !relax {
        return None;
    }
    let mut to = Column {
        name: column.name.clone(),
        nullable: before.nullable || column.nullable,
        ..column.clone()
    };
    if holds {
        to.data_type = before.data_type;
        to.enum_values.clone_from(&before.enum_values);
    } else if !widens(before, column) {
        lossy.push(format!(
            "column {} changed from {} to {}",
            column.name, before.data_type, column.data_type
        ));
    }
    Some(SchemaDelta::AlterColumn {
        from: Box::new(Column {
            name: column.name.clone(),
            ..before.clone()
        }),
        to: Box::new(to),
    })
}

/// Whether every value of `from` fits `to` as it is: a wider type, more
/// enum values (or none).
fn widens(from: &Column, to: &Column) -> bool {
    let values = match (&from.enum_values, &to.enum_values) {
        (_, None) => true,
        (Some(a), Some(b)) => a.iter().all(|v| b.contains(v)),
        (None, Some(_)) => false,
    };
    values && wider_type(&from.data_type, &to.data_type)
}

fn wider_type(from: &DataType, to: &DataType) -> bool {
    use DataType as T;
    let rank = |t: &DataType| match t {
        T::Int16 => 1,
        T::Int32 => 2,
        T::Int64 => 3,
        _ => 0,
    };
    match (from, to) {
        _ if from == to => true,
        (T::Int16 | T::Int32 | T::Int64, T::Int16 | T::Int32 | T::Int64) => rank(from) <= rank(to),
        (T::Float32, T::Float64) => true,
        (T::Text { max_len: a }, T::Text { max_len: b }) => match (a, b) {
            (_, None) => true,
            (Some(a), Some(b)) => a <= b,
            (None, Some(_)) => false,
        },
        (
            T::Decimal {
                precision: p1,
                scale: s1,
            },
            T::Decimal {
                precision: p2,
                scale: s2,
            },
        ) => match (p1, s1, p2, s2) {
            (_, _, None, _) => true,
            (Some(p1), Some(s1), Some(p2), Some(s2)) => s2 >= s1 && p2 - s2 >= p1 - s1,
            _ => false,
        },
        // Integers into a decimal with room for their digits.
        (T::Int16 | T::Int32 | T::Int64, T::Decimal { precision, scale }) => {
            let digits = match from {
                T::Int16 => 5,
                T::Int32 => 10,
                _ => 19,
            };
            precision.is_none_or(|p| p - scale.unwrap_or(0) >= digits)
        }
        (T::Date | T::Time | T::Uuid | T::Bool | T::Json, T::Text { max_len: None }) => true,
        _ => false,
    }
}

fn describe(deltas: &[SchemaDelta]) -> String {
    deltas
        .iter()
        .map(|d| match d {
            SchemaDelta::AddColumn(c) => format!("column {} was added", c.name),
            SchemaDelta::DropColumn(c) => format!("column {c} was dropped"),
            SchemaDelta::RenameColumn { from, to } => format!("column {from} was renamed to {to}"),
            SchemaDelta::AlterColumn { to, .. } => {
                format!("column {} changed to {}", to.name, to.data_type)
            }
            SchemaDelta::RenameTable { from } => format!("the table was renamed from {from}"),
            SchemaDelta::DropTable => "the table was dropped".to_string(),
        })
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn table(columns: &[(&str, &str)]) -> TableSchema {
        TableSchema {
            name: "t".into(),
            columns: columns
                .iter()
                .map(|(n, t)| Column::new(*n, t.parse().expect("type")))
                .collect(),
            primary_key: vec!["id".into()],
            ..Default::default()
        }
    }

    fn change(schema: &TableSchema) -> SchemaChange {
        SchemaChange {
            schema: Arc::new(schema.clone()),
            event: TableEvent::Altered,
            statement: None,
            renamed: Vec::new(),
            dropped: Vec::new(),
        }
    }

    #[test]
    fn additive_changes_are_carried_and_the_rest_stops() {
        let old = table(&[("id", "int64"), ("a", "text(10)"), ("n", "int32")]);
        let new = table(&[
            ("id", "int64"),
            ("a", "text(20)"),
            ("n", "int64"),
            ("b", "int32"),
        ]);
        let carried = deltas(
            &old,
            Some(&old),
            &new,
            &change(&new),
            SchemaChanges::Additive,
            "here",
        )
        .unwrap();
        assert_eq!(carried.len(), 3);
        assert!(matches!(&carried[2], SchemaDelta::AddColumn(c) if c.name == "b"));
        // Stop stops on any.
        assert!(
            deltas_err(&old, &new, change(&new), SchemaChanges::Stop).contains("column a changed")
        );
        // Narrower types and drops stop by default and are carried with apply.
        let narrower = table(&[("id", "int64"), ("a", "text(5)"), ("n", "int32")]);
        let err = deltas_err(&old, &narrower, change(&narrower), SchemaChanges::Additive);
        assert!(
            err.contains("column a changed from text(10) to text(5)"),
            "{err}"
        );
        assert!(err.contains("schema_changes = \"apply\""), "{err}");
        // A target wider than the source (SQLite's 64-bit rowid for an
        // int32 key) needs nothing, nor a source narrower than it was
        // opened with right after a restart (older rows replayed).
        let wide = table(&[("id", "int64"), ("a", "text"), ("n", "int64")]);
        assert!(
            deltas(
                &wide,
                None,
                &old,
                &change(&old),
                SchemaChanges::Additive,
                "here"
            )
            .unwrap()
            .is_empty()
        );
        let mut dropped = change(&table(&[("id", "int64"), ("a", "text(10)")]));
        dropped.dropped = vec!["n".into()];
        dropped.statement = Some("ALTER TABLE t DROP COLUMN n".into());
        let err = deltas_err(
            &old,
            &dropped.schema.clone(),
            dropped.clone(),
            SchemaChanges::Additive,
        );
        assert!(
            err.contains("column n was dropped at the source (`ALTER TABLE t DROP COLUMN n`)"),
            "{err}"
        );
        let applied = deltas(
            &old,
            Some(&old),
            &dropped.schema.clone(),
            &dropped,
            SchemaChanges::Apply,
            "here",
        )
        .unwrap();
        assert_eq!(applied, vec![SchemaDelta::DropColumn("n".into())]);
    }

    #[test]
    fn older_rows_missing_a_column_need_nothing_and_renames_are_renames() {
        let target = table(&[("id", "int64"), ("a", "text"), ("b", "int32")]);
        let older = table(&[("id", "int64"), ("a", "text")]);
        assert!(
            deltas(
                &target,
                None,
                &older,
                &change(&older),
                SchemaChanges::Additive,
                "here"
            )
            .unwrap()
            .is_empty()
        );
        let renamed = table(&[("id", "int64"), ("c", "text"), ("b", "int32")]);
        let mut rename = change(&renamed);
        rename.renamed = vec![("a".into(), "c".into())];
        assert_eq!(
            deltas(
                &target,
                Some(&target),
                &renamed,
                &rename,
                SchemaChanges::Apply,
                "here"
            )
            .unwrap(),
            vec![SchemaDelta::RenameColumn {
                from: "a".into(),
                to: "c".into()
            }]
        );
        assert!(
            deltas_err(&target, &renamed, rename, SchemaChanges::Additive).contains("renamed to c")
        );
        assert!(wider_type(
            &"int32".parse().unwrap(),
            &"decimal(12,2)".parse().unwrap()
        ));
        assert!(!wider_type(
            &"int64".parse().unwrap(),
            &"decimal(12,2)".parse().unwrap()
        ));
        assert!(wider_type(
            &"decimal(8,2)".parse().unwrap(),
            &"decimal(10,3)".parse().unwrap()
        ));
        assert!(!wider_type(
            &"decimal(8,2)".parse().unwrap(),
            &"decimal(8,3)".parse().unwrap()
        ));
    }

    fn deltas_err(
        old: &TableSchema,
        new: &TableSchema,
        change: SchemaChange,
        policy: SchemaChanges,
    ) -> String {
        match deltas(old, Some(old), new, &change, policy, "here") {
            Err(e) => e.to_string(),
            Ok(d) => panic!("no stop: {d:?}"),
        }
    }
}
