//! Columns of discovered tables: model types (with `dmp:` comment hints),
//! defaults, auto-increment, ON UPDATE, comments, collations.

use std::collections::BTreeMap;

use mysql_async::prelude::Queryable;
use mysql_async::{Conn, Row};
use tracing::{info, warn};

use super::super::server::Server;
use super::super::types::{Mapped, Wire, model_type, parse_default};
use super::{Discovered, ReadColumn, text};
use crate::error::{Result, ResultExt};
use dmp_model::{Column, DataType, Identity, SqlExpr};

pub(super) async fn read_columns(
    conn: &mut Conn,
    server: Server,
    database: &str,
    json_checks: &[(String, String)],
    tables: &mut BTreeMap<String, Discovered>,
) -> Result<()> {
    let rows: Vec<Row> = conn
        .exec(
            "SELECT TABLE_NAME, COLUMN_NAME, DATA_TYPE, COLUMN_TYPE, IS_NULLABLE, COLUMN_DEFAULT, \
             COLUMN_COMMENT, EXTRA, COLLATION_NAME FROM information_schema.COLUMNS \
             WHERE TABLE_SCHEMA = ? ORDER BY TABLE_NAME, ORDINAL_POSITION",
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
        let mut column = Column::new(name.clone(), mapped.data_type);
        column.comment = apply_comment(&mut mapped, &comment, &table_name, &name);
        column.data_type = mapped.data_type;
        column.nullable = nullable;
        column.enum_values = mapped.enum_values.clone();
        column.fixed_length =
            data_type == "char" && matches!(column.data_type, DataType::Text { .. });
        column.source_type = Some(column_type.clone());
        column.default = parse_default(
            default.as_deref(),
            server.mariadb,
            &extra,
            &column.data_type,
            mapped.wire,
        );
        if column.default.is_none()
            && let Some(expr) = expression_default(default.as_deref(), server.mariadb, &extra)
        {
            column.default_expr = Some(SqlExpr::new(server.dialect(), expr));
        }
        column.on_update = on_update(&extra).map(|expr| SqlExpr::new(server.dialect(), expr));
        if extra.to_ascii_lowercase().contains("auto_increment") {
            column.identity = Some(Identity {
                always: false,
                next: table.auto_increment,
                sequence: None,
            });
        }
        column.collation = text(row, 8).filter(|c| Some(c) != table.collation.as_ref());
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
            ReadColumn {
                read: mapped.read,
                wire: mapped.wire,
            },
        );
    }
    Ok(())
}

/// The text of a default that is an expression: MariaDB shows literals
/// quoted or as numbers and expressions bare (`current_timestamp()`);
/// MySQL flags expressions `DEFAULT_GENERATED` (5.7: CURRENT_TIMESTAMP
/// alone, unflagged).
fn expression_default<'a>(raw: Option<&'a str>, mariadb: bool, extra: &str) -> Option<&'a str> {
    let raw = raw?.trim();
    let upper = raw.to_ascii_uppercase();
    let expression = if mariadb {
        !(upper == "NULL"
            || raw.starts_with('\'')
            || raw.starts_with("b'")
            || raw.parse::<f64>().is_ok())
    } else {
        extra.to_ascii_uppercase().contains("DEFAULT_GENERATED")
            || upper.starts_with("CURRENT_TIMESTAMP")
    };
    expression.then_some(raw)
}

/// `on update current_timestamp()` (MariaDB), `DEFAULT_GENERATED on update
/// CURRENT_TIMESTAMP(6)` (MySQL): the expression.
fn on_update(extra: &str) -> Option<&str> {
    let at = extra.to_ascii_lowercase().find("on update ")?;
    let rest = extra[at + "on update ".len()..].trim();
    (!rest.is_empty()).then_some(rest)
}

/// A `dmp:<type>` column comment (written by our MySQL target) names the
/// model type the column had before it went through MySQL; what follows a
/// `; ` is the user's own comment, which is returned (as is a comment
/// without hint).
fn apply_comment(mapped: &mut Mapped, comment: &str, table: &str, column: &str) -> Option<String> {
    let Some(rest) = comment.trim().strip_prefix("dmp:") else {
        return Some(comment.to_string()).filter(|c| !c.is_empty());
    };
    let (hint, user) = match rest.split_once(';') {
        Some((hint, user)) => (
            hint,
            Some(user.trim().to_string()).filter(|u| !u.is_empty()),
        ),
        None => (rest, None),
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
    user
}

fn is_zero_date(default: Option<&str>, t: &DataType) -> bool {
    matches!(
        t,
        DataType::Date | DataType::Timestamp | DataType::TimestampTz
    ) && default.is_some_and(|d| d.trim_matches('\'').starts_with("0000-00-00"))
}

#[cfg(test)]
mod tests {
    use super::*;

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
        assert_eq!(
            apply_comment(&mut m, "a user comment", "t", "c").as_deref(),
            Some("a user comment")
        );
        assert_eq!(m.data_type, DataType::Int32);
        let mut m = model_type("datetime", "datetime(6)", false);
        assert_eq!(
            apply_comment(&mut m, "dmp:timestamptz; when it happened", "t", "c").as_deref(),
            Some("when it happened")
        );
        assert_eq!(m.data_type, DataType::TimestampTz);
        assert!(is_zero_date(
            Some("'0000-00-00 00:00:00'"),
            &DataType::Timestamp
        ));
        assert!(!is_zero_date(Some("'0000-00-00'"), &DataType::Int32));
    }

    #[test]
    fn expression_defaults_and_on_update() {
        assert_eq!(
            expression_default(Some("current_timestamp()"), true, ""),
            Some("current_timestamp()")
        );
        assert_eq!(expression_default(Some("'x'"), true, ""), None);
        assert_eq!(expression_default(Some("-1.5"), true, ""), None);
        assert_eq!(expression_default(Some("NULL"), true, ""), None);
        assert_eq!(
            expression_default(Some("uuid()"), false, "DEFAULT_GENERATED"),
            Some("uuid()")
        );
        assert_eq!(expression_default(Some("abc"), false, ""), None);
        assert_eq!(
            on_update("on update current_timestamp()"),
            Some("current_timestamp()")
        );
        assert_eq!(
            on_update("DEFAULT_GENERATED on update CURRENT_TIMESTAMP(6)"),
            Some("CURRENT_TIMESTAMP(6)")
        );
        assert_eq!(on_update("auto_increment"), None);
    }
}
