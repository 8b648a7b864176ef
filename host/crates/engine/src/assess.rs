//! The migration assessment: every object of the planned tables and of the
//! schema's other objects, asked of the target (which answers from its DDL
//! functions), plus what the source's discovery could not model. `dmp
//! plan` shows it; a run counts what is not carried, and with
//! `strict_schema` refuses to start while anything is.

use std::sync::Arc;

use dmp_contract::{SchemaItem, Target};
use dmp_model::{Assessed, Carry, ObjectKind, SchemaObjects, Status, TableSchema};

/// The assessment of `tables` (as the target gets them) and `objects`.
pub fn assess(
    tables: &[Arc<TableSchema>],
    objects: &SchemaObjects,
    target: &dyn Target,
) -> Vec<Assessed> {
    let mut out = Vec::new();
    for table in tables {
        assess_table(table, target, &mut out);
    }
    let mut present: Vec<&str> = tables.iter().map(|t| t.name.as_str()).collect();
    for view in &objects.views {
        let item = SchemaItem::View(view);
        let carry = match view
            .depends_on
            .iter()
            .find(|d| **d != view.name && !present.contains(&d.as_str()))
        {
            Some(missing) => Carry::NotCarried(format!("it reads {missing}, which is not copied")),
            None => target.assess(None, item),
        };
        if carry.clone().value().is_some() {
            present.push(&view.name);
        }
        out.push(Assessed::from_carry(item.kind(), None, &view.name, carry));
    }
    for sequence in &objects.sequences {
        let item = SchemaItem::Sequence(sequence);
        let carry = target.assess(None, item);
        out.push(Assessed::from_carry(
            item.kind(),
            None,
            &sequence.name,
            carry,
        ));
    }
    for skipped in &objects.skipped {
        out.push(Assessed::new(
            skipped.kind,
            None,
            &skipped.name,
            Status::NotCarried,
            skipped.reason.clone(),
        ));
    }
    out
}

fn assess_table(table: &TableSchema, target: &dyn Target, out: &mut Vec<Assessed>) {
    let name = table.name.as_str();
    let ask = |item: SchemaItem<'_>| target.assess(Some(table), item);
    out.push(Assessed::new(
        ObjectKind::Table,
        None,
        name,
        Status::Carried,
        "",
    ));
    for column in &table.columns {
        let carry = ask(SchemaItem::Column(column)).map(|to| match &column.source_type {
            Some(from) if !to.is_empty() => format!("{from} → {to}"),
            _ => to,
        });
        out.push(Assessed::from_carry(
            ObjectKind::Column,
            Some(name),
            &column.name,
            carry,
        ));
    }
    if !table.primary_key.is_empty() {
        let carry = ask(SchemaItem::PrimaryKey).map(|d| describe(&table.primary_key, d));
        let key_name = table.primary_key_name.as_deref().unwrap_or("primary key");
        out.push(Assessed::from_carry(
            ObjectKind::PrimaryKey,
            Some(name),
            key_name,
            carry,
        ));
    }
    for index in &table.indexes {
        let carry = renamed(
            ask(SchemaItem::Index(index)),
            &index.name,
            index.source_name.is_some(),
        )
        .map(|d| describe(&index.columns, d));
        let shown = index.source_name.as_deref().unwrap_or(&index.name);
        out.push(Assessed::from_carry(
            ObjectKind::Index,
            Some(name),
            shown,
            carry,
        ));
    }
    for fk in &table.foreign_keys {
        let carry = renamed(
            ask(SchemaItem::ForeignKey(fk)),
            &fk.name,
            fk.source_name.is_some(),
        );
        let shown = fk.source_name.as_deref().unwrap_or(&fk.name);
        out.push(Assessed::from_carry(
            ObjectKind::ForeignKey,
            Some(name),
            shown,
            carry,
        ));
    }
    for check in &table.checks {
        let carry = renamed(
            ask(SchemaItem::Check(check)),
            &check.name,
            check.source_name.is_some(),
        );
        let shown = check.source_name.as_deref().unwrap_or(&check.name);
        out.push(Assessed::from_carry(
            ObjectKind::Check,
            Some(name),
            shown,
            carry,
        ));
    }
    for column in &table.columns {
        let mut items = Vec::new();
        if column.default.as_ref().is_some_and(|d| !d.is_null()) || column.default_expr.is_some() {
            items.push(SchemaItem::Default(column));
        }
        if column.identity.is_some() {
            items.push(SchemaItem::Identity(column));
        }
        if column.on_update.is_some() {
            items.push(SchemaItem::OnUpdate(column));
        }
        if column.comment.is_some() {
            items.push(SchemaItem::ColumnComment(column));
        }
        if column.collation.is_some() {
            items.push(SchemaItem::Collation(column));
        }
        for item in items {
            let carry = ask(item);
            let carry = match (item, carry) {
                (SchemaItem::Collation(c), Carry::NotCarried(why)) => Carry::NotCarried(format!(
                    "{}: {why}",
                    c.collation.as_deref().unwrap_or_default()
                )),
                (_, carry) => carry,
            };
            out.push(Assessed::from_carry(
                item.kind(),
                Some(name),
                &column.name,
                carry,
            ));
        }
    }
    if let Some(comment) = &table.comment {
        let carry = ask(SchemaItem::TableComment(comment));
        out.push(Assessed::from_carry(
            ObjectKind::Comment,
            Some(name),
            name,
            carry,
        ));
    }
    if let Some(partitioning) = &table.partitioning {
        let carry = ask(SchemaItem::Partitioning(partitioning));
        out.push(Assessed::from_carry(
            ObjectKind::Partition,
            Some(name),
            name,
            carry,
        ));
    }
    for skipped in &table.skipped {
        out.push(Assessed::new(
            skipped.kind,
            Some(name),
            &skipped.name,
            Status::NotCarried,
            skipped.reason.clone(),
        ));
    }
}

/// A carried object the plan renamed is converted: to its new name.
fn renamed(carry: Carry<String>, name: &str, was_renamed: bool) -> Carry<String> {
    match carry {
        Carry::Carried(detail) | Carry::Converted(detail) if was_renamed => {
            Carry::Converted(join(&format!("renamed {name}"), &detail))
        }
        other => other,
    }
}

fn describe(columns: &[String], detail: String) -> String {
    join(&format!("({})", columns.join(", ")), &detail)
}

fn join(a: &str, b: &str) -> String {
    match (a.is_empty(), b.is_empty()) {
        (_, true) => a.to_string(),
        (true, false) => b.to_string(),
        (false, false) => format!("{a}; {b}"),
    }
}

/// How many objects are not carried.
pub fn not_carried(assessment: &[Assessed]) -> usize {
    assessment.iter().filter(|a| a.not_carried()).count()
}

/// Says how many objects a run leaves behind (`dmp plan` lists them); with
/// `strict_schema`, refuses to start while there is any.
pub(super) fn check(
    pipeline: &dmp_config::Pipeline,
    tables: &[Arc<TableSchema>],
    objects: &SchemaObjects,
    target: &dyn Target,
) -> crate::error::Result<()> {
    let assessment = assess(tables, objects, target);
    let left: Vec<&Assessed> = assessment.iter().filter(|a| a.not_carried()).collect();
    if left.is_empty() {
        return Ok(());
    }
    if pipeline.strict_schema {
        let list: Vec<String> = left
            .iter()
            .map(|a| {
                let name = match &a.table {
                    Some(table) => format!("{table}.{}", a.name),
                    None => a.name.clone(),
                };
                format!("{} {name} ({})", a.kind, a.detail)
            })
            .collect();
        return Err(crate::error::Error::Config(format!(
            "pipeline {}: strict_schema refuses to run: {} source object(s) would not be carried: {}",
            pipeline.name,
            left.len(),
            list.join("; ")
        )));
    }
    tracing::warn!(
        not_carried = left.len(),
        "{} source schema object(s) are not carried to the target; `dmp plan` lists them and why",
        left.len()
    );
    Ok(())
}
