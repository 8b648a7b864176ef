//! The database's objects besides tables: views (which a MySQL-family
//! target of the same server kind recreates, each after what it reads),
//! and routines and events, listed as not carried.

use mysql_async::prelude::Queryable;
use mysql_async::{Conn, Row};

use super::super::server::Server;
use super::text;
use crate::error::{Result, ResultExt};
use dmp_model::{
    ObjectKind, SchemaObjects, Skipped, TableSelection, View, views_in_dependency_order,
};

pub(in super::super) async fn objects(
    conn: &mut Conn,
    server: Server,
    database: &str,
    selection: &TableSelection,
) -> Result<SchemaObjects> {
    let ctx = || format!("reading the views and routines of MySQL database {database}");
    let rows: Vec<Row> = conn
        .exec(
            "SELECT TABLE_NAME, VIEW_DEFINITION FROM information_schema.VIEWS \
             WHERE TABLE_SCHEMA = ? ORDER BY TABLE_NAME",
            (database,),
        )
        .await
        .context(ctx)?;
    let mut views = Vec::new();
    for row in &rows {
        let (Some(name), Some(definition)) = (text(row, 0), text(row, 1)) else {
            continue;
        };
        if !selection.matches(&name) {
            continue;
        }
        let (definition, depends_on) = unqualify(&definition, database);
        views.push(View {
            name,
            materialized: false,
            dialect: server.dialect(),
            definition,
            depends_on,
            comment: None,
        });
    }
    let mut skipped = Vec::new();
    let routines: Vec<Row> = conn
        .exec(
            "SELECT ROUTINE_NAME, ROUTINE_TYPE FROM information_schema.ROUTINES \
             WHERE ROUTINE_SCHEMA = ? ORDER BY 1",
            (database,),
        )
        .await
        .context(ctx)?;
    for row in &routines {
        let Some(name) = text(row, 0) else { continue };
        skipped.push(Skipped {
            kind: ObjectKind::Routine,
            reason: format!(
                "{} {name}: routines are code and are not carried",
                text(row, 1).unwrap_or_default().to_lowercase()
            ),
            name,
        });
    }
    let events: Vec<Row> = conn
        .exec(
            "SELECT EVENT_NAME FROM information_schema.EVENTS WHERE EVENT_SCHEMA = ? ORDER BY 1",
            (database,),
        )
        .await
        .context(ctx)?;
    for row in &events {
        let Some(name) = text(row, 0) else { continue };
        skipped.push(Skipped {
            kind: ObjectKind::Routine,
            reason: "a scheduled event: not carried".into(),
            name,
        });
    }
    Ok(SchemaObjects {
        views: views_in_dependency_order(views),
        sequences: Vec::new(),
        skipped,
    })
}

/// The view's query with its own database's qualifier taken off (the
/// server prints `` `db`.`t` ``, and the target database has another
/// name), and the relations it names.
fn unqualify(definition: &str, database: &str) -> (String, Vec<String>) {
    let prefix = format!("`{}`.", database.replace('`', "``"));
    let mut out = String::with_capacity(definition.len());
    let mut depends = Vec::new();
    let mut rest = definition;
    while let Some(at) = rest.find(&prefix) {
        out.push_str(&rest[..at]);
        rest = &rest[at + prefix.len()..];
        // The relation: `name` (with `` for a back-quote inside).
        if let Some(body) = rest.strip_prefix('`') {
            let mut name = String::new();
            let mut chars = body.char_indices();
            while let Some((_, c)) = chars.next() {
                if c == '`' {
                    match chars.clone().next() {
                        Some((_, '`')) => {
                            chars.next();
                            name.push('`');
                        }
                        _ => break,
                    }
                } else {
                    name.push(c);
                }
            }
            if !depends.contains(&name) {
                depends.push(name);
            }
        }
    }
    out.push_str(rest);
    (out, depends)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn views_lose_their_database_qualifier() {
        let (sql, deps) = unqualify(
            "select `shop`.`actor`.`actor_id` AS `actor_id`,`shop`.`film`.`title` AS `title` \
             from (`shop`.`actor` join `shop`.`film`)",
            "shop",
        );
        assert_eq!(
            sql,
            "select `actor`.`actor_id` AS `actor_id`,`film`.`title` AS `title` from (`actor` join `film`)"
        );
        assert_eq!(deps, ["actor", "film"]);
    }
}
