//! What row events do not say about a column, read from
//! `information_schema`: its position when the server logs no names
//! (`binlog_row_metadata=MINIMAL`), its exact type (INET6 and UUID travel
//! as plain binary), signedness, character set and ENUM/SET labels.

use std::collections::HashMap;

use mysql_async::Conn;
use mysql_async::prelude::Queryable;

use super::super::types::enum_labels;
use crate::error::{Result, ResultExt};

/// One column of a source table, as its row events are decoded.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct SourceColumn {
    pub(super) name: String,
    /// `DATA_TYPE`, lower case: `int`, `inet6`, `set`, …
    pub(super) data_type: String,
    pub(super) unsigned: bool,
    /// `CHARACTER_SET_NAME` of text columns.
    pub(super) charset: Option<String>,
    /// ENUM and SET labels in declaration order.
    pub(super) labels: Vec<String>,
    /// BINARY(n): the binlog drops trailing zero bytes, the column has n.
    pub(super) fixed_bytes: Option<usize>,
}

impl SourceColumn {
    pub(super) fn new(name: &str, data_type: &str, column_type: &str) -> Self {
        let data_type = data_type.trim().to_ascii_lowercase();
        let column_type = column_type.trim();
        let lower = column_type.to_ascii_lowercase();
        let fixed_bytes = match data_type.as_str() {
            "binary" => lower
                .split_once('(')
                .and_then(|(_, rest)| rest.split_once(')'))
                .and_then(|(n, _)| n.trim().parse().ok()),
            "uuid" | "inet6" => Some(16),
            "inet4" => Some(4),
            _ => None,
        };
        SourceColumn {
            name: name.to_string(),
            unsigned: lower.contains("unsigned"),
            charset: None,
            labels: if matches!(data_type.as_str(), "enum" | "set") {
                enum_labels(column_type)
            } else {
                Vec::new()
            },
            fixed_bytes,
            data_type,
        }
    }
}

/// The columns of `tables` in `database`, in table order, by table name.
pub(super) async fn load(
    conn: &mut Conn,
    database: &str,
    tables: &[&str],
) -> Result<HashMap<String, Vec<SourceColumn>>> {
    let rows: Vec<(String, String, String, String, Option<String>)> = conn
        .exec(
            "SELECT TABLE_NAME, COLUMN_NAME, DATA_TYPE, COLUMN_TYPE, CHARACTER_SET_NAME \
             FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = ? \
             ORDER BY TABLE_NAME, ORDINAL_POSITION",
            (database,),
        )
        .await
        .context(|| format!("reading the columns of MySQL database {database}"))?;
    let mut found: HashMap<String, Vec<SourceColumn>> = HashMap::new();
    for (table, name, data_type, column_type, charset) in rows {
        if !tables.contains(&table.as_str()) {
            continue;
        }
        let mut column = SourceColumn::new(&name, &data_type, &column_type);
        column.charset = charset.map(|c| c.to_ascii_lowercase());
        found.entry(table).or_default().push(column);
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn column_types_say_what_the_binlog_does_not() {
        let c = SourceColumn::new("a", "INT", "int(10) unsigned");
        assert!(c.unsigned);
        assert_eq!(c.data_type, "int");
        let c = SourceColumn::new("s", "set", "set('a','b''c')");
        assert_eq!(c.labels, vec!["a", "b'c"]);
        assert_eq!(
            SourceColumn::new("b", "binary", "binary(6)").fixed_bytes,
            Some(6)
        );
        assert_eq!(SourceColumn::new("u", "uuid", "uuid").fixed_bytes, Some(16));
        assert_eq!(
            SourceColumn::new("v", "varbinary", "varbinary(6)").fixed_bytes,
            None
        );
    }
}
