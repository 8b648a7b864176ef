//! DDL the target runs: tables (primary key, CHECK constraints, identity
//! and serial columns, defaults and comments included, enum values as CHECK
//! constraints), the checkpoint table, indexes, foreign keys and the
//! triggers of ON UPDATE columns.

use md5::Digest;

use crate::error::{Error, Result};
use dmp_model::{
    Carry, Check, Column, DataType, Dialect, ForeignKey, Index, Partitioning, TableSchema, Value,
};

use super::sql::{ident_list, literal, qualified, quote_ident, quote_literal};
use super::types::ddl_type;

/// Name of the table holding the checkpoints, in the target schema.
pub(super) const CHECKPOINTS: &str = "_dmp_checkpoints";

/// Longest identifier PostgreSQL keeps (NAMEDATALEN - 1 bytes).
pub(super) const MAX_IDENT_BYTES: usize = 63;

pub(super) fn create_checkpoints(schema: &str) -> String {
    format!(
        "CREATE TABLE IF NOT EXISTS {} (pipeline text NOT NULL, table_name text NOT NULL, \
         chunk integer NOT NULL, position text NOT NULL, \"rows\" bigint NOT NULL, \
         done boolean NOT NULL, epoch bigint NOT NULL DEFAULT 0, \
         PRIMARY KEY (pipeline, table_name, chunk))",
        qualified(schema, CHECKPOINTS)
    )
}

pub(super) fn upsert_checkpoint(schema: &str) -> String {
    format!(
        "INSERT INTO {} (pipeline, table_name, chunk, position, \"rows\", done) \
         VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (pipeline, table_name, chunk) DO UPDATE \
         SET position = EXCLUDED.position, \"rows\" = EXCLUDED.\"rows\", done = EXCLUDED.done",
        qualified(schema, CHECKPOINTS)
    )
}

/// Adds the stream holder's epoch to a checkpoint table made before it
/// was kept.
pub(super) fn add_checkpoint_epoch(schema: &str) -> String {
    format!(
        "ALTER TABLE {} ADD COLUMN IF NOT EXISTS epoch bigint NOT NULL DEFAULT 0",
        qualified(schema, CHECKPOINTS)
    )
}

/// `upsert_checkpoint` for a fenced chunk write (`Checkpoint::fence`):
/// the checkpoint moves only from the rows it was read at ($7), so no row
/// is affected when another writer moved it first.
pub(super) fn upsert_fenced_checkpoint(schema: &str) -> String {
    format!(
        "{} WHERE {}.\"rows\" = $7 AND NOT {}.done",
        upsert_checkpoint(schema),
        qualified(schema, CHECKPOINTS),
        qualified(schema, CHECKPOINTS)
    )
}

/// The statements that create a table: the sequences of its serial
/// columns, `CREATE TABLE` with the primary key and CHECK constraints in it
/// (the load fills the key's index as it goes; secondary indexes come after
/// the load), the sequences' ownership and the comments. Defaults, checks
/// and identities that cannot be carried are left out (the assessment
/// lists them).
pub(super) fn create_table(schema: &str, table: &TableSchema, with_key: bool) -> Vec<String> {
    let mut statements = Vec::new();
    let mut owned = Vec::new();
    let mut parts: Vec<String> = Vec::with_capacity(table.columns.len() + 2);
    for c in &table.columns {
        let name = quote_ident(&c.name);
        let mut def = format!("{name} {}", ddl_type(c));
        match identity_sql(schema, c).and_then(Carry::value) {
            Some(Identity::Generated(clause)) => {
                def.push(' ');
                def.push_str(&clause);
            }
            Some(Identity::Serial(sequence)) => {
                statements.push(format!(
                    "CREATE SEQUENCE IF NOT EXISTS {sequence} AS {}",
                    ddl_type(c)
                ));
                def.push_str(&format!(" DEFAULT nextval({})", quote_literal(&sequence)));
                owned.push((sequence, name.clone()));
            }
            None => {}
        }
        def.push_str(&column_constraints(c));
        parts.push(def);
    }
    if !table.primary_key.is_empty() && with_key {
        parts.push(primary_key_clause(table));
    }
    for check in &table.checks {
        if let Some(expr) = check_sql(check).value() {
            parts.push(format!(
                "CONSTRAINT {} CHECK ({expr})",
                quote_ident(&check.name)
            ));
        }
    }
    let qualified_name = qualified(schema, &table.name);
    let partitioning = table
        .partitioning
        .as_ref()
        .filter(|p| p.dialect == Dialect::Postgres);
    let partition_by =
        partitioning.map_or_else(String::new, |p| format!(" PARTITION BY {}", p.key));
    statements.push(format!(
        "CREATE TABLE {qualified_name} ({}){partition_by}",
        parts.join(", ")
    ));
    if let Some(partitioning) = partitioning {
        create_partitions(schema, &table.name, partitioning, &mut statements);
    }
    for (sequence, column) in owned {
        statements.push(format!(
            "ALTER SEQUENCE {sequence} OWNED BY {qualified_name}.{column}"
        ));
    }
    if let Some(comment) = &table.comment {
        statements.push(format!(
            "COMMENT ON TABLE {qualified_name} IS {}",
            quote_literal(comment)
        ));
    }
    for c in &table.columns {
        if let Some(comment) = &c.comment {
            statements.push(format!(
                "COMMENT ON COLUMN {qualified_name}.{} IS {}",
                quote_ident(&c.name),
                quote_literal(comment)
            ));
        }
    }
    statements
}

/// `CREATE TABLE … PARTITION OF …` for each partition of `parent`, each
/// before its own partitions. They take the parent's columns, keys and
/// indexes (PostgreSQL makes the partitions' own).
fn create_partitions(
    schema: &str,
    parent: &str,
    partitioning: &Partitioning,
    statements: &mut Vec<String>,
) {
    for partition in &partitioning.partitions {
        let sub = partition
            .partitioning
            .as_ref()
            .map_or_else(String::new, |p| format!(" PARTITION BY {}", p.key));
        statements.push(format!(
            "CREATE TABLE {} PARTITION OF {} {}{sub}",
            qualified(schema, &partition.name),
            qualified(schema, parent),
            partition.bound
        ));
        if let Some(sub) = &partition.partitioning {
            create_partitions(schema, &partition.name, sub, statements);
        }
    }
}

/// `[CONSTRAINT name] PRIMARY KEY (…)`.
fn primary_key_clause(table: &TableSchema) -> String {
    let constraint = table
        .primary_key_name
        .as_ref()
        .map_or_else(String::new, |n| format!("CONSTRAINT {} ", quote_ident(n)));
    format!(
        "{constraint}PRIMARY KEY ({})",
        ident_list(&table.primary_key)
    )
}

/// The primary key of a table loaded without it.
pub(super) fn add_primary_key(schema: &str, table: &TableSchema) -> String {
    format!(
        "ALTER TABLE {} ADD {}",
        qualified(schema, &table.name),
        primary_key_clause(table)
    )
}

/// A column as `ADD COLUMN` adds it: type, NOT NULL, default, enum CHECK
/// (an identity is not added to an existing table).
pub(super) fn column_def(c: &Column) -> String {
    format!(
        "{} {}{}",
        quote_ident(&c.name),
        ddl_type(c),
        column_constraints(c)
    )
}

/// ` NOT NULL`, ` DEFAULT …`, ` CHECK (… IN (…))` of a column.
fn column_constraints(c: &Column) -> String {
    let mut def = String::new();
    if !c.nullable {
        def.push_str(" NOT NULL");
    }
    if let Some(default) = default_sql(c).and_then(Carry::value) {
        def.push_str(" DEFAULT ");
        def.push_str(&default);
    }
    if let Some(values) = &c.enum_values {
        let list: Vec<String> = values
            .iter()
            .map(|v| literal(&Value::Text(v.clone())))
            .collect();
        if !list.is_empty() {
            def.push_str(&format!(
                " CHECK ({} IN ({}))",
                quote_ident(&c.name),
                list.join(", ")
            ));
        }
    }
    def
}

/// How a column's values are generated here.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Identity {
    /// `GENERATED … AS IDENTITY`.
    Generated(String),
    /// A `serial`: a sequence (qualified name) the column owns and draws
    /// its default from, as the source had it.
    Serial(String),
}

/// The column's identity on PostgreSQL, if it has one.
pub(super) fn identity_sql(schema: &str, column: &Column) -> Option<Carry<Identity>> {
    let identity = column.identity.as_ref()?;
    if !matches!(
        column.data_type,
        DataType::Int16 | DataType::Int32 | DataType::Int64
    ) {
        return Some(Carry::NotCarried(format!(
            "PostgreSQL generates integers only, not {}",
            column.data_type
        )));
    }
    Some(match &identity.sequence {
        Some(sequence) => Carry::Carried(Identity::Serial(qualified(schema, sequence))),
        None if identity.always => {
            Carry::Carried(Identity::Generated("GENERATED ALWAYS AS IDENTITY".into()))
        }
        None => Carry::Carried(Identity::Generated(
            "GENERATED BY DEFAULT AS IDENTITY".into(),
        )),
    })
}

/// The column's default as SQL, if it has one: a constant, or an
/// expression as the source wrote it (PostgreSQL) or translated.
pub(super) fn default_sql(column: &Column) -> Option<Carry<String>> {
    if let Some(value) = column.default.as_ref().filter(|d| !d.is_null()) {
        return Some(Carry::Carried(literal(value)));
    }
    let expr = column.default_expr.as_ref()?;
    if column.identity.is_some() {
        return None;
    }
    Some(expr.for_dialect(Dialect::Postgres))
}

/// A CHECK constraint's expression here.
pub(super) fn check_sql(check: &Check) -> Carry<String> {
    check.expr.for_dialect(Dialect::Postgres)
}

/// The trigger that sets `ON UPDATE` columns when a row changes (MySQL's
/// `ON UPDATE CURRENT_TIMESTAMP`): a column the update leaves as it was
/// gets the expression, one the update sets keeps its new value. None when
/// no column has one that translates.
pub(super) fn on_update_trigger(schema: &str, table: &TableSchema) -> Option<Vec<String>> {
    let sets: Vec<String> = table
        .columns
        .iter()
        .filter_map(|c| {
            let expr = on_update_sql(c)?.value()?;
            let col = quote_ident(&c.name);
            Some(format!(
                "IF NEW.{col} IS NOT DISTINCT FROM OLD.{col} THEN NEW.{col} := {expr}; END IF;"
            ))
        })
        .collect();
    if sets.is_empty() {
        return None;
    }
    let name = on_update_name(&table.name);
    let function = qualified(schema, &name);
    Some(vec![
        format!(
            "CREATE OR REPLACE FUNCTION {function}() RETURNS trigger LANGUAGE plpgsql AS $dmp$ \
             BEGIN IF NEW IS DISTINCT FROM OLD THEN {} END IF; RETURN NEW; END $dmp$",
            sets.join(" ")
        ),
        format!(
            "DROP TRIGGER IF EXISTS {} ON {}",
            quote_ident(&name),
            qualified(schema, &table.name)
        ),
        format!(
            "CREATE TRIGGER {} BEFORE UPDATE ON {} FOR EACH ROW EXECUTE FUNCTION {function}()",
            quote_ident(&name),
            qualified(schema, &table.name)
        ),
    ])
}

/// A column's ON UPDATE expression here.
pub(super) fn on_update_sql(column: &Column) -> Option<Carry<String>> {
    let expr = column.on_update.as_ref()?;
    Some(expr.for_dialect(Dialect::Postgres))
}

/// `<table>_on_update`, cut to fit with a digest of the whole table name
/// when it is too long (function and trigger share it).
fn on_update_name(table: &str) -> String {
    let name = format!("{table}_on_update");
    if name.len() <= MAX_IDENT_BYTES {
        return name;
    }
    let digest = dmp_model::encode_hex(&md5::Md5::digest(table.as_bytes())[..4]);
    let mut end = MAX_IDENT_BYTES - digest.len() - 1;
    while !table.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}_{digest}", &table[..end])
}

/// Sets the sequence of an identity or serial column past both the
/// largest value loaded and the value the source would hand out next.
/// `max` is the column's largest value on the target.
pub(super) fn advance_identity(
    schema: &str,
    table: &str,
    column: &Column,
    max: Option<i64>,
) -> Option<String> {
    let identity = column.identity.as_ref()?;
    let last = [max, identity.next.map(|n| n.saturating_sub(1))]
        .into_iter()
        .flatten()
        .max()?;
    // A sequence starts at 1: nothing to move below that.
    (last >= 1).then(|| {
        format!(
            "SELECT setval(pg_get_serial_sequence({}, {}), {last}, true)",
            quote_literal(&qualified(schema, table)),
            quote_literal(&column.name)
        )
    })
}

pub(super) fn create_index(schema: &str, table: &str, name: &str, index: &Index) -> String {
    format!(
        "CREATE {}INDEX IF NOT EXISTS {} ON {} ({})",
        if index.unique { "UNIQUE " } else { "" },
        quote_ident(name),
        qualified(schema, table),
        ident_list(&index.columns)
    )
}

/// An index the primary key already provides.
pub(super) fn duplicates_primary_key(table: &TableSchema, index: &Index) -> bool {
    !table.primary_key.is_empty() && index.columns == table.primary_key
}

/// The referential action as SQL, refusing anything else (the words come
/// from schema files too, and are spliced into DDL).
fn action(word: &str, fk: &ForeignKey, table: &str) -> Result<&'static str> {
    match word.trim().to_ascii_uppercase().as_str() {
        "CASCADE" => Ok("CASCADE"),
        "SET NULL" => Ok("SET NULL"),
        "SET DEFAULT" => Ok("SET DEFAULT"),
        "RESTRICT" => Ok("RESTRICT"),
        "NO ACTION" | "" => Ok("NO ACTION"),
        other => Err(Error::Config(format!(
            "foreign key {} of table {table}: unknown referential action `{other}`",
            fk.name
        ))),
    }
}

pub(super) fn add_foreign_key(
    schema: &str,
    table: &str,
    fk: &ForeignKey,
    validate: bool,
) -> Result<String> {
    Ok(format!(
        "ALTER TABLE {} ADD CONSTRAINT {} FOREIGN KEY ({}) REFERENCES {} ({}) ON DELETE {} ON UPDATE {}{}",
        qualified(schema, table),
        quote_ident(&fk.name),
        ident_list(&fk.columns),
        qualified(schema, &fk.references),
        ident_list(&fk.referenced_columns),
        action(&fk.on_delete, fk, table)?,
        action(&fk.on_update, fk, table)?,
        if validate { "" } else { " NOT VALID" }
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use dmp_model::{Column, DataType};

    fn shop() -> TableSchema {
        let mut status = Column::new("status", DataType::Text { max_len: Some(10) });
        status.nullable = false;
        status.default = Some(Value::Text("new".into()));
        status.enum_values = Some(vec!["new".into(), "it's".into()]);
        let mut id = Column::new("Id", DataType::Int32);
        id.nullable = false;
        TableSchema {
            namespace: None,
            name: "Order".into(),
            columns: vec![
                id,
                Column::new(
                    "select",
                    DataType::Decimal {
                        precision: Some(12),
                        scale: Some(2),
                    },
                ),
                status,
            ],
            primary_key: vec!["Id".into()],
            indexes: Vec::new(),
            foreign_keys: Vec::new(),
            ..Default::default()
        }
    }

    #[test]
    fn tables_are_created_with_key_defaults_and_checks() {
        assert_eq!(
            create_table("public", &shop(), true),
            [
                "CREATE TABLE \"public\".\"Order\" (\"Id\" integer NOT NULL, \"select\" numeric(12,2), \
             \"status\" varchar(10) NOT NULL DEFAULT 'new' CHECK (\"status\" IN ('new', 'it''s')), \
             PRIMARY KEY (\"Id\"))"
            ]
        );
    }

    #[test]
    fn partitioned_tables_are_created_with_their_partitions_at_every_depth() {
        use dmp_model::Partition;
        let mut table = shop();
        let partition = |name: &str, bound: &str| Partition {
            name: name.into(),
            bound: bound.into(),
            partitioning: None,
        };
        let mut by_status = partition("order_a", "FOR VALUES FROM (1) TO (100)");
        by_status.partitioning = Some(Box::new(Partitioning {
            dialect: Dialect::Postgres,
            key: "LIST (status)".into(),
            partitions: vec![partition("order_a_new", "FOR VALUES IN ('new')")],
        }));
        table.partitioning = Some(Partitioning {
            dialect: Dialect::Postgres,
            key: "RANGE (\"Id\")".into(),
            partitions: vec![by_status, partition("order_rest", "DEFAULT")],
        });
        let sql = create_table("s", &table, false);
        assert!(
            sql[0].ends_with(") PARTITION BY RANGE (\"Id\")"),
            "{}",
            sql[0]
        );
        assert_eq!(
            sql[1..],
            [
                "CREATE TABLE \"s\".\"order_a\" PARTITION OF \"s\".\"Order\" FOR VALUES FROM (1) TO (100) PARTITION BY LIST (status)",
                "CREATE TABLE \"s\".\"order_a_new\" PARTITION OF \"s\".\"order_a\" FOR VALUES IN ('new')",
                "CREATE TABLE \"s\".\"order_rest\" PARTITION OF \"s\".\"Order\" DEFAULT",
            ]
        );
        // Another dialect's partitioning is not written.
        if let Some(p) = table.partitioning.as_mut() {
            p.dialect = Dialect::Mysql;
        }
        assert_eq!(create_table("s", &table, false).len(), 1);
    }

    #[test]
    fn identities_expression_defaults_checks_and_comments() {
        use dmp_model::{Identity as ModelIdentity, SqlExpr};
        let mut table = shop();
        table.primary_key_name = Some("order_pk".into());
        table.columns[0].identity = Some(ModelIdentity {
            always: false,
            next: Some(42),
            sequence: None,
        });
        let mut serial = Column::new("line", DataType::Int64);
        serial.identity = Some(ModelIdentity {
            always: false,
            next: None,
            sequence: Some("order_line_seq".into()),
        });
        let mut at = Column::new("at", DataType::Timestamp);
        at.default_expr = Some(SqlExpr::new(Dialect::Mariadb, "current_timestamp()"));
        at.on_update = Some(SqlExpr::new(Dialect::Mariadb, "current_timestamp()"));
        at.comment = Some("when it's done".into());
        let mut odd = Column::new("odd", DataType::TEXT);
        odd.default_expr = Some(SqlExpr::new(Dialect::Mariadb, "concat(`a`, 'b')"));
        table.columns.extend([serial, at, odd]);
        table.checks.push(Check {
            name: "positive".into(),
            expr: SqlExpr::new(Dialect::Mariadb, "`select` > 0"),
            source_name: None,
        });
        table.comment = Some("orders".into());
        let sql = create_table("s", &table, true);
        assert_eq!(
            sql[0],
            "CREATE SEQUENCE IF NOT EXISTS \"s\".\"order_line_seq\" AS bigint"
        );
        assert!(
            sql[1].starts_with(
                "CREATE TABLE \"s\".\"Order\" (\"Id\" integer GENERATED BY DEFAULT AS IDENTITY NOT NULL, "
            ),
            "{}",
            sql[1]
        );
        assert!(sql[1].contains(
            "\"line\" bigint DEFAULT nextval('\"s\".\"order_line_seq\"'), \
             \"at\" timestamp DEFAULT CURRENT_TIMESTAMP, \"odd\" text, "
        ));
        assert!(sql[1].ends_with(
            "CONSTRAINT \"order_pk\" PRIMARY KEY (\"Id\"), CONSTRAINT \"positive\" CHECK ((\"select\" > 0)))"
        ));
        assert_eq!(
            sql[2..],
            [
                "ALTER SEQUENCE \"s\".\"order_line_seq\" OWNED BY \"s\".\"Order\".\"line\""
                    .to_string(),
                "COMMENT ON TABLE \"s\".\"Order\" IS 'orders'".into(),
                "COMMENT ON COLUMN \"s\".\"Order\".\"at\" IS 'when it''s done'".into(),
            ]
        );
        let trigger = on_update_trigger("s", &table).expect("a trigger");
        assert!(trigger[0].contains(
            "IF NEW.\"at\" IS NOT DISTINCT FROM OLD.\"at\" THEN NEW.\"at\" := CURRENT_TIMESTAMP; END IF;"
        ));
        assert_eq!(
            trigger[2],
            "CREATE TRIGGER \"Order_on_update\" BEFORE UPDATE ON \"s\".\"Order\" FOR EACH ROW \
             EXECUTE FUNCTION \"s\".\"Order_on_update\"()"
        );
        // The counter moves past the largest key and the source's next value.
        let id = &table.columns[0];
        assert_eq!(
            advance_identity("s", "Order", id, Some(7)).as_deref(),
            Some("SELECT setval(pg_get_serial_sequence('\"s\".\"Order\"', 'Id'), 41, true)")
        );
        assert!(advance_identity("s", "Order", &table.columns[3], None).is_none());
        assert_eq!(on_update_name(&"t".repeat(70)).len(), 63);
    }

    #[test]
    fn indexes_and_foreign_keys() {
        let index = Index {
            name: "by name".into(),
            columns: vec!["b".into(), "A".into()],
            unique: true,
            source_name: None,
        };
        assert_eq!(
            create_index("s", "t", "by name", &index),
            "CREATE UNIQUE INDEX IF NOT EXISTS \"by name\" ON \"s\".\"t\" (\"b\", \"A\")"
        );
        let fk = ForeignKey {
            name: "note_order".into(),
            columns: vec!["order_id".into()],
            references: "order".into(),
            referenced_columns: vec!["id".into()],
            on_delete: "cascade".into(),
            on_update: "NO ACTION".into(),
            source_name: None,
        };
        assert_eq!(
            add_foreign_key("public", "note", &fk, true).unwrap(),
            "ALTER TABLE \"public\".\"note\" ADD CONSTRAINT \"note_order\" FOREIGN KEY (\"order_id\") \
             REFERENCES \"public\".\"order\" (\"id\") ON DELETE CASCADE ON UPDATE NO ACTION"
        );
        let mut bad = fk.clone();
        bad.on_update = "CASCADE; DROP TABLE x".into();
        assert!(add_foreign_key("public", "note", &bad, true).is_err());
        assert!(
            add_foreign_key("public", "note", &fk, false)
                .unwrap()
                .ends_with("NOT VALID")
        );
    }

    #[test]
    fn indexes_the_primary_key_provides() {
        let t = shop();
        assert!(duplicates_primary_key(
            &t,
            &Index {
                name: "x".into(),
                columns: vec!["Id".into()],
                unique: true,
                source_name: None,
            }
        ));
    }
}
