//! Schema discovery from `information_schema`: one query per catalog table
//! for the whole database (not one per table), grouped here. Views are
//! skipped with a note, as are indexes the model cannot carry (prefix,
//! expression, full-text and spatial ones).

use std::collections::{BTreeMap, HashMap};

use mysql_async::prelude::Queryable;
use mysql_async::{Conn, Row};
use tracing::{info, warn};

use super::server::Server;
use super::types::{Mapped, ReadAs, Wire, model_type, parse_default};
use crate::error::{Result, ResultExt};
use crate::model::{Column, DataType, ForeignKey, Index, TableSchema, TableSelection};

/// How the source reads one column besides its model type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct ReadColumn {
    pub(super) read: ReadAs,
    pub(super) wire: Wire,
}

/// A discovered table: its schema and how its columns are read, by name.
#[derive(Debug, Clone)]
pub(super) struct Discovered {
    pub(super) schema: TableSchema,
    pub(super) reads: HashMap<String, ReadColumn>,
}

fn text(row: &Row, i: usize) -> Option<String> {
    row.get_opt::<Option<String>, usize>(i)
        .and_then(|r| r.ok())
        .flatten()
}

fn number(row: &Row, i: usize) -> Option<i64> {
    row.get_opt::<Option<i64>, usize>(i)
        .and_then(|r| r.ok())
        .flatten()
}

/// The selected base tables of `database` (only `only` if given), sorted
/// by name. Tables whose name starts with `_dmp_` are DMP's own.
pub(super) async fn discover(
    conn: &mut Conn,
    server: Server,
    database: &str,
    selection: Option<&TableSelection>,
    only: Option<&str>,
) -> Result<Vec<Discovered>> {
    let ctx = || format!("reading the schema of MySQL database {database}");
    let tables: Vec<Row> = conn
        .exec(
            "SELECT TABLE_NAME, TABLE_TYPE FROM information_schema.TABLES WHERE TABLE_SCHEMA = ?",
            (database,),
        )
        .await
        .context(ctx)?;
    let mut selected: BTreeMap<String, Discovered> = BTreeMap::new();
    for row in &tables {
        let (Some(name), Some(kind)) = (text(row, 0), text(row, 1)) else {
            continue;
        };
        if name.starts_with("_dmp_")
            || only.is_some_and(|o| o != name)
            || selection.is_some_and(|s| !s.matches(&name))
        {
            continue;
        }
        if kind != "BASE TABLE" {
            info!(table = name, kind, "not a base table; skipped");
            continue;
        }
        selected.insert(
            name.clone(),
            Discovered {
                schema: TableSchema {
                    namespace: Some(database.to_string()),
                    name,
                    columns: Vec::new(),
                    primary_key: Vec::new(),
                    indexes: Vec::new(),
                    foreign_keys: Vec::new(),
                    ..Default::default()
                },
                reads: HashMap::new(),
            },
        );
    }
    if selected.is_empty() {
        return Ok(Vec::new());
    }
    let json_checks = json_checks(conn, server, database).await?;
    read_columns(conn, server, database, &json_checks, &mut selected).await?;
    read_indexes(conn, database, &mut selected).await?;
    read_foreign_keys(conn, database, &mut selected).await?;
    Ok(selected.into_values().collect())
}

/// MariaDB's JSON is LONGTEXT with `CHECK (json_valid(col))`: the
/// (table, column) pairs carrying such a check.
async fn json_checks(
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

async fn read_columns(
    conn: &mut Conn,
    server: Server,
    database: &str,
    json_checks: &[(String, String)],
    tables: &mut BTreeMap<String, Discovered>,
) -> Result<()> {
    let rows: Vec<Row> = conn
        .exec(
            "SELECT TABLE_NAME, COLUMN_NAME, DATA_TYPE, COLUMN_TYPE, IS_NULLABLE, COLUMN_DEFAULT, \
             COLUMN_COMMENT, EXTRA FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = ? \
             ORDER BY TABLE_NAME, ORDINAL_POSITION",
            (database,),
        )
        .await
        .context(|| format!("reading the columns of MySQL database {database}"))?;
    for row in &rows {
        let (Some(table_name), Some(name)) = (text(row, 0), text(row, 1)) else {
            continue;
        };
        let Some(table) = tables.get_mut(&table_name) else {
            continue;
        };
        let data_type = text(row, 2).unwrap_or_default();
        let column_type = text(row, 3).unwrap_or_default();
        let nullable = text(row, 4).as_deref() != Some("NO");
        let default = text(row, 5);
        let comment = text(row, 6).unwrap_or_default();
        let extra = text(row, 7).unwrap_or_default();
        let json = json_checks
            .iter()
            .any(|(t, c)| *t == table_name && *c == name);
        let mut mapped = model_type(&data_type, &column_type, json);
        if let Some(note) = mapped.note {
            warn!(table = table_name, column = name, column_type, "{note}");
        }
        apply_comment(&mut mapped, &comment, &table_name, &name);
        let mut column = Column {
            default: parse_default(
                default.as_deref(),
                server.mariadb,
                &extra,
                &mapped.data_type,
                mapped.wire,
            ),
            name: name.clone(),
            data_type: mapped.data_type,
            nullable,
            enum_values: mapped.enum_values.clone(),
            default_expr: None,
            identity: None,
            on_update: None,
            comment: None,
            collation: None,
            source_type: None,
        };
        if !nullable && is_zero_date(default.as_deref(), &column.data_type) {
            // pgloader's policy too: zero dates become NULL, so a column
            // that defaults to one cannot stay NOT NULL.
            info!(
                table = table_name,
                column = name,
                "NOT NULL column defaults to a zero date; created nullable (zero dates are read as NULL)"
            );
            column.nullable = true;
        }
        table.schema.columns.push(column);
        table.reads.insert(
            name,
            super::catalog::ReadColumn {
                read: mapped.read,
                wire: mapped.wire,
            },
        );
    }
    Ok(())
}

/// A `dmp:<type>` column comment (written by our MySQL target) names the
/// model type the column had before it went through MySQL.
fn apply_comment(mapped: &mut Mapped, comment: &str, table: &str, column: &str) {
    let Some(hint) = comment.trim().strip_prefix("dmp:") else {
        return;
    };
    match hint.parse::<DataType>() {
        Ok(t) => {
            if matches!(t, DataType::Json) && mapped.data_type != DataType::Json {
                mapped.wire = Wire::Other;
            }
            mapped.data_type = t;
        }
        Err(e) => {
            warn!(table, column, comment, error = %e, "unreadable dmp: column comment ignored")
        }
    }
}

fn is_zero_date(default: Option<&str>, t: &DataType) -> bool {
    matches!(
        t,
        DataType::Date | DataType::Timestamp | DataType::TimestampTz
    ) && default.is_some_and(|d| d.trim_matches('\'').starts_with("0000-00-00"))
}

/// An index as the catalog lists it: unique, its columns, and why the
/// model cannot carry it.
type FoundIndex = (bool, Vec<String>, Option<&'static str>);

async fn read_indexes(
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
            info!(
                table,
                index = name,
                "{why} skipped (only plain column indexes are carried)"
            );
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

async fn read_foreign_keys(
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
            warn!(
                table,
                foreign_key = name,
                references = format!("{ref_schema}.{references}"),
                "foreign key to another database skipped"
            );
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

    #[test]
    fn comments_override_the_inferred_type() {
        let mut m = model_type("datetime", "datetime(6)", false);
        apply_comment(&mut m, "dmp:timestamptz", "t", "c");
        assert_eq!(m.data_type, DataType::TimestampTz);
        let mut m = model_type("longtext", "longtext", false);
        apply_comment(&mut m, "dmp:text(2000)", "t", "c");
        assert_eq!(
            m.data_type,
            DataType::Text {
                max_len: Some(2000)
            }
        );
        let mut m = model_type("int", "int(11)", false);
        apply_comment(&mut m, "a user comment", "t", "c");
        assert_eq!(m.data_type, DataType::Int32);
        assert!(is_zero_date(
            Some("'0000-00-00 00:00:00'"),
            &DataType::Timestamp
        ));
        assert!(!is_zero_date(Some("'0000-00-00'"), &DataType::Int32));
    }
}
