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
use dmp_model::{Carry, Check, Column, DataType, Dialect, Func, SqlExpr, TableSchema, Value};

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
            let created = match c.data_type {
                // CHAR(n) reads back as text(n), as varchar(n) does.
                DataType::Text { max_len: Some(n) }
                    if c.fixed_length && created == format!("varchar({n})") && n <= 255 =>
                {
                    format!("char({n})")
                }
                _ => created,
            };
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

/// A constant default as SQL, or `None` where MySQL cannot hold it.
fn default_sql(value: &Value, created: &str, server: Server) -> Option<String> {
    let sql = match value {
        Value::Null => return None,
        Value::Bool(b) => i64::from(*b).to_string(),
        Value::Int(i) => i.to_string(),
        Value::Float(f) if f.is_finite() => format!("{f:?}"),
        Value::Float(_) => return None,
        Value::Decimal(d) => d.to_string(),
        Value::Bytes(b) => format!("X'{}'", dmp_model::encode_hex(b)),
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

/// `CREATE TABLE` with the primary key, AUTO_INCREMENT, defaults, ON
/// UPDATE clauses, CHECK constraints and comments; indexes and foreign
/// keys come after the load. What cannot be carried is left out (the
/// assessment lists it).
pub(super) fn create_table(table: &TableSchema, server: Server) -> String {
    let types = column_types(table, server);
    let auto = auto_increment_column(table);
    let mut parts: Vec<String> = table
        .columns
        .iter()
        .zip(&types)
        .map(|(c, (created, comment))| column_def_as(c, created, comment.as_ref(), auto, server))
        .collect();
    if !table.primary_key.is_empty() {
        parts.push(format!("PRIMARY KEY ({})", quote_list(&table.primary_key)));
    }
    for check in &table.checks {
        if let Some(expr) = check_sql(check, server).value() {
            parts.push(format!("CONSTRAINT {} CHECK ({expr})", quote(&check.name)));
        }
    }
    let comment = table.comment.as_ref().map_or_else(String::new, |c| {
        format!(" COMMENT={}", literal(&cut_chars(c, MAX_TABLE_COMMENT)))
    });
    format!(
        "CREATE TABLE {} ({}) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE={}{comment}",
        quote(&table.name),
        parts.join(", "),
        binary_collation(server)
    )
}

/// Column `name` of `table` as `ADD COLUMN` / `MODIFY COLUMN` write it.
pub(super) fn column_def(table: &TableSchema, name: &str, server: Server) -> Option<String> {
    let at = table.column_index(name)?;
    let (created, comment) = column_types(table, server).into_iter().nth(at)?;
    Some(column_def_as(
        &table.columns[at],
        &created,
        comment.as_ref(),
        auto_increment_column(table),
        server,
    ))
}

/// A column's definition once its MySQL type is decided.
fn column_def_as(
    c: &Column,
    created: &str,
    comment: Option<&String>,
    auto: Option<&str>,
    server: Server,
) -> String {
    let mut def = format!("{} {created}", quote(&c.name));
    if !c.nullable {
        def.push_str(" NOT NULL");
    }
    if auto == Some(c.name.as_str()) {
        def.push_str(" AUTO_INCREMENT");
    }
    if let Some(default) = column_default(c, created, server).and_then(Carry::value) {
        def.push_str(" DEFAULT ");
        def.push_str(&default);
    }
    if let Some(on_update) = on_update_sql(c, created).and_then(Carry::value) {
        def.push_str(" ON UPDATE ");
        def.push_str(&on_update);
    }
    let comment = match (comment, &c.comment) {
        (Some(hint), Some(user)) => Some(format!("{hint}; {user}")),
        (Some(hint), None) => Some((*hint).clone()),
        (None, Some(user)) if user.trim_start().starts_with("dmp:") => {
            // Not to be read back as a type hint.
            Some(format!("; {user}"))
        }
        (None, user) => user.clone(),
    };
    if let Some(comment) = comment {
        def.push_str(" COMMENT ");
        def.push_str(&literal(&cut_chars(&comment, MAX_COLUMN_COMMENT)));
    }
    def
}

/// MySQL's longest column and table comments, in characters.
const MAX_COLUMN_COMMENT: usize = 1024;
const MAX_TABLE_COMMENT: usize = 2048;

fn cut_chars(text: &str, max: usize) -> String {
    text.chars().take(max).collect()
}

/// The one column that gets AUTO_INCREMENT: MySQL allows one per table, an
/// integer leading a key (here: the primary key's first column).
pub(super) fn auto_increment_column(table: &TableSchema) -> Option<&str> {
    let first = table.primary_key.first()?;
    let column = table.columns.iter().find(|c| &c.name == first)?;
    (column.identity.is_some() && is_integer(&column.data_type)).then_some(column.name.as_str())
}

fn is_integer(t: &DataType) -> bool {
    matches!(t, DataType::Int16 | DataType::Int32 | DataType::Int64)
}

/// Whether a column's identity becomes AUTO_INCREMENT here, and why not.
pub(super) fn identity_carry(table: &TableSchema, column: &Column) -> Carry<String> {
    if auto_increment_column(table) == Some(column.name.as_str()) {
        return Carry::Carried("AUTO_INCREMENT".into());
    }
    Carry::NotCarried(if !is_integer(&column.data_type) {
        format!(
            "AUTO_INCREMENT counts integers only, not {}",
            column.data_type
        )
    } else {
        "AUTO_INCREMENT needs the column to lead the primary key (one per table)".into()
    })
}

/// The fractional-second digits of a created `datetime(N)`/`time(N)`.
fn fsp(created: &str) -> Option<&str> {
    created
        .split_once('(')
        .and_then(|(_, rest)| rest.strip_suffix(')'))
}

/// The column's default here: a constant, or an expression (the clock
/// functions at the column's precision; other expressions in parentheses on
/// MySQL, which takes them from 8.0.13).
pub(super) fn column_default(
    column: &Column,
    created: &str,
    server: Server,
) -> Option<Carry<String>> {
    if let Some(value) = column.default.as_ref() {
        return default_sql(value, created, server).map(Carry::Carried);
    }
    let expr = column.default_expr.as_ref()?;
    if column.identity.is_some() {
        return None;
    }
    Some(
        expression_sql(expr, created, server).and_then_carry(|sql, is_clock| {
            if is_clock || server.mariadb {
                Ok(sql)
            } else if server.version >= (8, 0, 13) {
                Ok(format!("({sql})"))
            } else {
                Err("MySQL before 8.0.13 takes no expression defaults".into())
            }
        }),
    )
}

/// An ON UPDATE clause here: MySQL has only the clock's.
pub(super) fn on_update_sql(column: &Column, created: &str) -> Option<Carry<String>> {
    let expr = column.on_update.as_ref()?;
    if expr.portable.as_ref().and_then(dmp_model::Expr::as_call) != Some(Func::CurrentTimestamp) {
        return Some(Carry::NotCarried(format!(
            "MySQL updates a column only to the current time (ON UPDATE CURRENT_TIMESTAMP), not to {}",
            expr.sql
        )));
    }
    if !created.starts_with("datetime") && !created.starts_with("timestamp") {
        return Some(Carry::NotCarried(format!(
            "ON UPDATE CURRENT_TIMESTAMP needs a datetime column, not {created}"
        )));
    }
    let clock = clock(created);
    Some(
        if expr.dialect == Dialect::Mysql || expr.dialect == Dialect::Mariadb {
            Carry::Carried(clock)
        } else {
            Carry::Converted(clock)
        },
    )
}

fn clock(created: &str) -> String {
    match fsp(created) {
        Some(n) => format!("current_timestamp({n})"),
        None => "current_timestamp()".into(),
    }
}

/// An expression in this server's dialect; the clock rendered at the
/// column's precision (MySQL refuses another). The flag says it is the
/// clock.
fn expression_sql(expr: &SqlExpr, created: &str, server: Server) -> ExprCarry {
    let is_clock =
        expr.portable.as_ref().and_then(dmp_model::Expr::as_call) == Some(Func::CurrentTimestamp);
    if is_clock {
        let sql = clock(created);
        return ExprCarry(if expr.dialect == server.dialect() {
            Carry::Carried((sql, true))
        } else {
            Carry::Converted((sql, true))
        });
    }
    ExprCarry(expr.for_dialect(server.dialect()).map(|sql| (sql, false)))
}

/// An expression's SQL and whether it is the clock, still to be placed.
struct ExprCarry(Carry<(String, bool)>);

impl ExprCarry {
    fn and_then_carry(
        self,
        f: impl FnOnce(String, bool) -> Result<String, String>,
    ) -> Carry<String> {
        let wrap = |(sql, clock): (String, bool), converted: bool| match f(sql, clock) {
            Ok(sql) if converted => Carry::Converted(sql),
            Ok(sql) => Carry::Carried(sql),
            Err(why) => Carry::NotCarried(why),
        };
        match self.0 {
            Carry::Carried(v) => wrap(v, false),
            Carry::Converted(v) => wrap(v, true),
            Carry::NotCarried(why) => Carry::NotCarried(why),
        }
    }
}

/// A CHECK constraint's expression here (MariaDB 10.2 and MySQL 8.0.16
/// enforce them).
pub(super) fn check_sql(check: &Check, server: Server) -> Carry<String> {
    check.expr.for_dialect(server.dialect())
}

/// A binary collation that does not pad: keys `'a'` and `'a '` (or `'a'`
/// and `'A'`) stay distinct, as they are in PostgreSQL and SQLite.
/// `utf8mb4_bin` pads with spaces on both servers.
pub(super) fn binary_collation(server: Server) -> &'static str {
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
    use dmp_model::{ForeignKey, Index};

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
