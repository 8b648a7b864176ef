//! Keys, indexes, foreign keys and CHECK constraints of discovered tables,
//! and what of them the model cannot hold.

use std::collections::BTreeMap;

use mysql_async::prelude::Queryable;
use mysql_async::{Conn, Row};
use tracing::warn;

use super::super::server::Server;
use super::{Discovered, number, text};
use crate::error::{Result, ResultExt};
use dmp_model::{Check, ForeignKey, Index, ObjectKind, Skipped, SqlExpr};

/// MariaDB's JSON is LONGTEXT with `CHECK (json_valid(col))`: the
/// (table, column) pairs carrying such a check.
pub(super) async fn json_checks(
    conn: &mut Conn,
    server: Server,
    database: &str,
) -> Result<Vec<(String, String)>> {
    if !server.mariadb || server.version < (10, 2, 0) {
        return Ok(Vec::new());
    }
    let rows: Vec<Row> = conn
        .exec(
            "SELECT TABLE_NAME, CHECK_CLAUSE FROM information_schema.CHECK_CONSTRAINTS \
             WHERE CONSTRAINT_SCHEMA = ?",
            (database,),
        )
        .await
        .context(|| format!("reading CHECK constraints of MySQL database {database}"))?;
    Ok(rows
        .iter()
        .filter_map(|r| {
            let clause = text(r, 1)?;
            Some((text(r, 0)?, json_valid_column(&clause)?))
        })
        .collect())
}

/// `json_valid(`col`)` → `col`.
fn json_valid_column(clause: &str) -> Option<String> {
    let (func, rest) = clause.trim().split_once('(')?;
    if !func.trim().eq_ignore_ascii_case("json_valid") {
        return None;
    }
    let name = rest
        .strip_suffix(')')?
        .trim()
        .strip_prefix('`')?
        .strip_suffix('`')?;
    // One quoted identifier: back-quotes inside it come in pairs.
    if name.replace("``", "").contains('`') {
        return None;
    }
    Some(name.replace("``", "`"))
}

/// An index as the catalog lists it: unique, its columns, and why the
/// model cannot carry it.
type FoundIndex = (bool, Vec<String>, Option<&'static str>);

pub(super) async fn read_indexes(
    conn: &mut Conn,
    database: &str,
    tables: &mut BTreeMap<String, Discovered>,
) -> Result<()> {
    let rows: Vec<Row> = conn
        .exec(
            "SELECT TABLE_NAME, INDEX_NAME, NON_UNIQUE, COLUMN_NAME, SUB_PART, INDEX_TYPE \
             FROM information_schema.STATISTICS WHERE TABLE_SCHEMA = ? \
             ORDER BY TABLE_NAME, INDEX_NAME, SEQ_IN_INDEX",
            (database,),
        )
        .await
        .context(|| format!("reading the indexes of MySQL database {database}"))?;
    let mut found: BTreeMap<(String, String), FoundIndex> = BTreeMap::new();
    for row in &rows {
        let (Some(table), Some(index)) = (text(row, 0), text(row, 1)) else {
            continue;
        };
        if !tables.contains_key(&table) {
            continue;
        }
        let unique = number(row, 2) == Some(0);
        let column = text(row, 3);
        let prefix = number(row, 4).is_some();
        let kind = text(row, 5).unwrap_or_default();
        let entry = found
            .entry((table, index))
            .or_insert_with(|| (unique, Vec::new(), None));
        let skip = match (&column, prefix, kind.as_str()) {
            (_, _, "FULLTEXT") => Some("full-text index"),
            (_, _, "SPATIAL") => Some("spatial index"),
            (None, _, _) => Some("expression index"),
            (_, true, _) => Some("prefix index"),
            _ => None,
        };
        if entry.2.is_none() {
            entry.2 = skip;
        }
        if let Some(column) = column {
            entry.1.push(column);
        }
    }
    for ((table, name), (unique, columns, skip)) in found {
        let Some(t) = tables.get_mut(&table) else {
            continue;
        };
        if name == "PRIMARY" {
            if let Some(why) = skip {
                warn!(table, "{why} as primary key; the table is read without one");
            } else {
                t.schema.primary_key = columns;
            }
            continue;
        }
        if let Some(why) = skip {
            t.schema.skipped.push(Skipped {
                kind: ObjectKind::Index,
                reason: format!(
                    "a {why} on ({}): only plain column indexes are carried",
                    columns.join(", ")
                ),
                name,
            });
            continue;
        }
        t.schema.indexes.push(Index {
            name,
            columns,
            unique,
            source_name: None,
        });
    }
    for t in tables.values_mut() {
        let key = t.schema.primary_key.clone();
        for c in &mut t.schema.columns {
            if key.contains(&c.name) {
                c.nullable = false;
            }
        }
    }
    Ok(())
}

pub(super) async fn read_foreign_keys(
    conn: &mut Conn,
    database: &str,
    tables: &mut BTreeMap<String, Discovered>,
) -> Result<()> {
    let rows: Vec<Row> = conn
        .exec(
            "SELECT k.TABLE_NAME, k.CONSTRAINT_NAME, k.COLUMN_NAME, k.REFERENCED_TABLE_SCHEMA, \
             k.REFERENCED_TABLE_NAME, k.REFERENCED_COLUMN_NAME, r.DELETE_RULE, r.UPDATE_RULE \
             FROM information_schema.KEY_COLUMN_USAGE k \
             JOIN information_schema.REFERENTIAL_CONSTRAINTS r \
               ON r.CONSTRAINT_SCHEMA = k.CONSTRAINT_SCHEMA AND r.CONSTRAINT_NAME = k.CONSTRAINT_NAME \
              AND r.TABLE_NAME = k.TABLE_NAME \
             WHERE k.TABLE_SCHEMA = ? AND k.REFERENCED_TABLE_NAME IS NOT NULL \
             ORDER BY k.TABLE_NAME, k.CONSTRAINT_NAME, k.ORDINAL_POSITION",
            (database,),
        )
        .await
        .context(|| format!("reading the foreign keys of MySQL database {database}"))?;
    for row in &rows {
        let (Some(table), Some(name), Some(column)) = (text(row, 0), text(row, 1), text(row, 2))
        else {
            continue;
        };
        let Some(t) = tables.get_mut(&table) else {
            continue;
        };
        let ref_schema = text(row, 3).unwrap_or_default();
        let references = text(row, 4).unwrap_or_default();
        if ref_schema != database {
            if !t
                .schema
                .skipped
                .iter()
                .any(|s| s.kind == ObjectKind::ForeignKey && s.name == name)
            {
                warn!(
                    table,
                    foreign_key = name,
                    references = format!("{ref_schema}.{references}"),
                    "foreign key to another database skipped"
                );
                t.schema.skipped.push(Skipped {
                    kind: ObjectKind::ForeignKey,
                    reason: format!("it references {ref_schema}.{references}, in another database"),
                    name,
                });
            }
            continue;
        }
        let referenced = text(row, 5).unwrap_or_default();
        match t.schema.foreign_keys.iter_mut().find(|fk| fk.name == name) {
            Some(fk) => {
                fk.columns.push(column);
                fk.referenced_columns.push(referenced);
            }
            None => t.schema.foreign_keys.push(ForeignKey {
                name,
                columns: vec![column],
                references,
                referenced_columns: vec![referenced],
                on_delete: text(row, 6).unwrap_or_else(|| "NO ACTION".into()),
                on_update: text(row, 7).unwrap_or_else(|| "NO ACTION".into()),
                source_name: None,
            }),
        }
    }
    Ok(())
}

/// CHECK constraints, but the `json_valid` ones that make a column JSON.
/// MariaDB lists them with their table; MySQL 8.0.16+ through
/// TABLE_CONSTRAINTS.
pub(super) async fn read_checks(
    conn: &mut Conn,
    server: Server,
    database: &str,
    json_checks: &[(String, String)],
    tables: &mut BTreeMap<String, Discovered>,
) -> Result<()> {
    let sql = if server.mariadb {
        if server.version < (10, 2, 22) {
            return Ok(());
        }
        "SELECT TABLE_NAME, CONSTRAINT_NAME, CHECK_CLAUSE FROM information_schema.CHECK_CONSTRAINTS \
         WHERE CONSTRAINT_SCHEMA = ? ORDER BY TABLE_NAME, CONSTRAINT_NAME"
    } else {
        if server.version < (8, 0, 16) {
            return Ok(());
        }
        "SELECT t.TABLE_NAME, c.CONSTRAINT_NAME, c.CHECK_CLAUSE FROM information_schema.CHECK_CONSTRAINTS c \
         JOIN information_schema.TABLE_CONSTRAINTS t ON t.CONSTRAINT_SCHEMA = c.CONSTRAINT_SCHEMA \
         AND t.CONSTRAINT_NAME = c.CONSTRAINT_NAME AND t.CONSTRAINT_TYPE = 'CHECK' \
         WHERE c.CONSTRAINT_SCHEMA = ? ORDER BY 1, 2"
    };
    let rows: Vec<Row> = conn
        .exec(sql, (database,))
        .await
        .context(|| format!("reading CHECK constraints of MySQL database {database}"))?;
    for row in &rows {
        let (Some(table), Some(name), Some(clause)) = (text(row, 0), text(row, 1), text(row, 2))
        else {
            continue;
        };
        let Some(t) = tables.get_mut(&table) else {
            continue;
        };
        if json_valid_column(&clause)
            .is_some_and(|c| json_checks.iter().any(|(jt, jc)| *jt == table && *jc == c))
        {
            continue;
        }
        t.schema.checks.push(Check {
            name,
            expr: SqlExpr::new(server.dialect(), clause),
            source_name: None,
        });
    }
    Ok(())
}

/// Triggers: named per table, not carried.
pub(super) async fn read_triggers(
    conn: &mut Conn,
    database: &str,
    tables: &mut BTreeMap<String, Discovered>,
) -> Result<()> {
    let rows: Vec<Row> = conn
        .exec(
            "SELECT EVENT_OBJECT_TABLE, TRIGGER_NAME, ACTION_TIMING, EVENT_MANIPULATION \
             FROM information_schema.TRIGGERS WHERE TRIGGER_SCHEMA = ? ORDER BY 1, 2",
            (database,),
        )
        .await
        .context(|| format!("reading the triggers of MySQL database {database}"))?;
    for row in &rows {
        let (Some(table), Some(name)) = (text(row, 0), text(row, 1)) else {
            continue;
        };
        let Some(t) = tables.get_mut(&table) else {
            continue;
        };
        t.schema.skipped.push(Skipped {
            kind: ObjectKind::Trigger,
            reason: format!(
                "{} {} trigger: triggers are code and are not carried",
                text(row, 2).unwrap_or_default(),
                text(row, 3).unwrap_or_default()
            ),
            name,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_checks_name_their_column() {
        assert_eq!(json_valid_column("json_valid(`j`)").as_deref(), Some("j"));
        assert_eq!(
            json_valid_column("JSON_VALID(`Mixed ``q`` Col`)").as_deref(),
            Some("Mixed `q` Col")
        );
        assert_eq!(json_valid_column("`a` > 0"), None);
        assert_eq!(json_valid_column("json_valid(`a`) and `b` > 0"), None);
    }
}
