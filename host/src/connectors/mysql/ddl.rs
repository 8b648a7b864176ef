//! `CREATE TABLE` for a model schema. Columns that MySQL cannot index as
//! they are (LONGTEXT, LONGBLOB) get a bounded type where they are part of
//! a key, an index or a foreign key, within InnoDB's 3072-byte key limit;
//! wide VARCHARs move to LONGTEXT where a row would pass the 65535-byte
//! limit. Each column whose MySQL type reads back as another model type
//! carries a `dmp:<type>` comment.

use std::collections::HashMap;

use super::server::Server;
use super::sql::{literal, quote, quote_list};
use super::types::{target_type, type_comment};
use crate::model::{Column, DataType, TableSchema, Value};

/// InnoDB's largest index key (DYNAMIC rows), in bytes.
const KEY_BYTES: u32 = 3072;
/// MySQL's largest row, not counting off-page TEXT/BLOB data.
const ROW_BYTES: u64 = 65_535;

/// Whether a key column shares the key budget with the other wide ones
/// (unbounded, or long enough to matter); the others count as fixed.
fn needs_bound(t: &DataType) -> bool {
    match t {
        DataType::Text { max_len: Some(n) } => *n > 255,
        DataType::Text { max_len: None } | DataType::Bytes => true,
        _ => false,
    }
}

/// Key bytes of a column that does not share the budget.
fn fixed_key_bytes(t: &DataType) -> u32 {
    match t {
        DataType::Text { max_len: Some(n) } => n.saturating_mul(4),
        DataType::Decimal { .. } => 30,
        _ => 8,
    }
}

/// Characters allowed to each key, index and foreign key column that
/// would otherwise be unbounded: the key budget shared among them.
pub(super) fn key_chars(table: &TableSchema) -> HashMap<String, u32> {
    let mut groups: Vec<&[String]> = vec![&table.primary_key];
    groups.extend(table.indexes.iter().map(|i| i.columns.as_slice()));
    groups.extend(table.foreign_keys.iter().map(|f| f.columns.as_slice()));
    let mut chars: HashMap<String, u32> = HashMap::new();
    for group in groups {
        let columns: Vec<&Column> = group
            .iter()
            .filter_map(|name| table.columns.iter().find(|c| &c.name == name))
            .collect();
        let wide = columns.iter().filter(|c| needs_bound(&c.data_type)).count();
        if wide == 0 {
            continue;
        }
        let fixed: u32 = columns
            .iter()
            .filter(|c| !needs_bound(&c.data_type))
            .map(|c| fixed_key_bytes(&c.data_type))
            .sum();
        let share = (KEY_BYTES.saturating_sub(fixed) / 4 / u32::try_from(wide).unwrap_or(1)).max(1);
        for c in columns.iter().filter(|c| needs_bound(&c.data_type)) {
            let entry = chars.entry(c.name.clone()).or_insert(share);
            *entry = (*entry).min(share);
        }
    }
    chars
}

/// The MySQL type of every column, in order, with its comment.
pub(super) fn column_types(table: &TableSchema, server: Server) -> Vec<(String, Option<String>)> {
    let keys = key_chars(table);
    let mut types: Vec<(String, Option<String>)> = table
        .columns
        .iter()
        .map(|c| {
            let created = target_type(
                &c.data_type,
                c.enum_values.as_deref(),
                keys.get(&c.name).copied(),
                server,
            );
            let comment = type_comment(&c.data_type, c.enum_values.as_deref(), &created);
            (created, comment)
        })
        .collect();
    fit_row_size(table, &keys, &mut types);
    types
}

/// Bytes a column takes in the row (utf8mb4: 4 bytes a character).
fn row_bytes(created: &str) -> u64 {
    let n = created
        .split_once('(')
        .and_then(|(_, r)| r.split([')', ',']).next())
        .and_then(|n| n.parse::<u64>().ok())
        .unwrap_or(0);
    match created.split('(').next().unwrap_or(created) {
        "varchar" => n * 4 + 2,
        "varbinary" => n + 2,
        "char" => n * 4,
        "decimal" => n / 2 + 1,
        "enum" => 2,
        "longtext" | "longblob" | "json" => 12,
        "uuid" => 16,
        _ => 8,
    }
}

/// Moves the widest non-key VARCHARs to LONGTEXT until the row fits.
fn fit_row_size(
    table: &TableSchema,
    keys: &HashMap<String, u32>,
    types: &mut [(String, Option<String>)],
) {
    let mut total: u64 = types.iter().map(|(t, _)| row_bytes(t)).sum();
    while total > ROW_BYTES {
        let widest = types
            .iter()
            .enumerate()
            .filter(|(i, (t, _))| {
                t.starts_with("varchar(") && !keys.contains_key(&table.columns[*i].name)
            })
            .max_by_key(|(_, (t, _))| row_bytes(t));
        let Some((i, _)) = widest else { return };
        let column = &table.columns[i];
        total -= row_bytes(&types[i].0);
        total += row_bytes("longtext");
        let created = "longtext".to_string();
        let comment = type_comment(&column.data_type, None, &created);
        types[i] = (created, comment);
    }
}

/// A default as SQL, or `None` where MySQL cannot hold it.
fn default_sql(value: &Value, created: &str, server: Server) -> Option<String> {
    let sql = match value {
        Value::Null => return None,
        Value::Bool(b) => i64::from(*b).to_string(),
        Value::Int(i) => i.to_string(),
        Value::Float(f) if f.is_finite() => format!("{f:?}"),
        Value::Float(_) => return None,
        Value::Decimal(d) => d.to_string(),
        Value::Bytes(b) => format!("X'{}'", crate::model::encode_hex(b)),
        Value::TimestampTz(ts) => literal(&Value::Timestamp(ts.naive_utc()).to_text()),
        other => literal(&other.to_text()),
    };
    let blob = matches!(created, "longtext" | "longblob" | "json");
    if blob && !server.mariadb {
        // MySQL takes defaults of TEXT/BLOB/JSON columns only as
        // expressions, from 8.0.13.
        return (server.version >= (8, 0, 13)).then(|| format!("({sql})"));
    }
    Some(sql)
}

/// `CREATE TABLE` with the primary key; indexes and foreign keys come
/// after the load.
pub(super) fn create_table(table: &TableSchema, server: Server) -> String {
    let types = column_types(table, server);
    let mut parts: Vec<String> = table
        .columns
        .iter()
        .zip(&types)
        .map(|(c, (created, comment))| {
            let mut def = format!("{} {created}", quote(&c.name));
            if !c.nullable {
                def.push_str(" NOT NULL");
            }
            if let Some(default) = c
                .default
                .as_ref()
                .and_then(|d| default_sql(d, created, server))
            {
                def.push_str(" DEFAULT ");
                def.push_str(&default);
            }
            if let Some(comment) = comment {
                def.push_str(" COMMENT ");
                def.push_str(&literal(comment));
            }
            def
        })
        .collect();
    if !table.primary_key.is_empty() {
        parts.push(format!("PRIMARY KEY ({})", quote_list(&table.primary_key)));
    }
    format!(
        "CREATE TABLE {} ({}) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE={}",
        quote(&table.name),
        parts.join(", "),
        binary_collation(server)
    )
}

/// A binary collation that does not pad: keys `'a'` and `'a '` (or `'a'`
/// and `'A'`) stay distinct, as they are in PostgreSQL and SQLite.
/// `utf8mb4_bin` pads with spaces on both servers.
fn binary_collation(server: Server) -> &'static str {
    if server.mariadb {
        "utf8mb4_nopad_bin"
    } else if server.version >= (8, 0, 0) {
        "utf8mb4_0900_bin"
    } else {
        "utf8mb4_bin"
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{ForeignKey, Index};

    fn column(name: &str, t: &str) -> Column {
        Column::new(name, t.parse().unwrap())
    }

    fn mariadb() -> Server {
        Server::for_tests(true, (10, 11, 0))
    }

    #[test]
    fn tables_are_created_with_key_and_comments() {
        let mut id = column("Id", "int64");
        id.nullable = false;
        let mut status = column("status", "text(7)");
        status.enum_values = Some(vec!["new".into(), "shipped".into()]);
        status.default = Some(Value::Text("new".into()));
        let mut note = column("it's", "text");
        note.default = Some(Value::Text("a\\b".into()));
        let table = TableSchema {
            namespace: None,
            name: "order".into(),
            columns: vec![
                id,
                column("at", "timestamptz"),
                status,
                note,
                column("price", "decimal"),
            ],
            primary_key: vec!["Id".into()],
            indexes: Vec::new(),
            foreign_keys: Vec::new(),
            ..Default::default()
        };
        assert_eq!(
            create_table(&table, mariadb()),
            "CREATE TABLE `order` (`Id` bigint NOT NULL, \
             `at` datetime(6) COMMENT 'dmp:timestamptz', \
             `status` enum('new','shipped') DEFAULT 'new', \
             `it's` longtext DEFAULT 'a\\\\b', \
             `price` decimal(65,30) COMMENT 'dmp:decimal', \
             PRIMARY KEY (`Id`)) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_nopad_bin"
        );
        let mysql = Server::for_tests(false, (8, 0, 36));
        assert!(create_table(&table, mysql).contains("`it's` longtext DEFAULT ('a\\\\b')"));
    }

    #[test]
    fn keys_get_bounded_types_within_the_key_limit() {
        let table = TableSchema {
            namespace: None,
            name: "t".into(),
            columns: vec![
                column("a", "text"),
                column("b", "bytes"),
                column("c", "text(20)"),
                column("d", "text"),
                column("e", "text(2000)"),
                column("f", "int64"),
            ],
            primary_key: vec!["a".into(), "b".into()],
            indexes: vec![Index {
                name: "i".into(),
                columns: vec!["c".into(), "e".into(), "f".into()],
                unique: false,
                source_name: None,
            }],
            foreign_keys: vec![ForeignKey {
                name: "fk".into(),
                columns: vec!["d".into()],
                references: "p".into(),
                referenced_columns: vec!["x".into()],
                on_delete: "CASCADE".into(),
                on_update: "NO ACTION".into(),
                source_name: None,
            }],
            ..Default::default()
        };
        let types: Vec<String> = column_types(&table, mariadb())
            .into_iter()
            .map(|(t, _)| t)
            .collect();
        assert_eq!(
            types,
            vec![
                "varchar(384)",
                "varbinary(1536)",
                "varchar(20)",
                "varchar(768)",
                "varchar(746)",
                "bigint"
            ]
        );
    }

    #[test]
    fn wide_rows_move_to_longtext() {
        let table = TableSchema {
            namespace: None,
            name: "wide".into(),
            columns: (0..20)
                .map(|i| column(&format!("c{i}"), "text(1000)"))
                .collect(),
            primary_key: Vec::new(),
            indexes: Vec::new(),
            foreign_keys: Vec::new(),
            ..Default::default()
        };
        let types = column_types(&table, mariadb());
        let total: u64 = types.iter().map(|(t, _)| row_bytes(t)).sum();
        assert!(total <= ROW_BYTES, "{total}");
        let moved: Vec<_> = types.iter().filter(|(t, _)| t == "longtext").collect();
        assert_eq!(moved.len(), 4);
        assert_eq!(moved[0].1.as_deref(), Some("dmp:text(1000)"));
    }
}
