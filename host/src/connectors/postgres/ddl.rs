//! DDL the target runs: tables (primary key included, enum values as
//! CHECK constraints), the checkpoint table, indexes and foreign keys.

use crate::error::{Error, Result};
use crate::model::{ForeignKey, Index, TableSchema, Value};

use super::sql::{ident_list, literal, qualified, quote_ident};
use super::types::ddl_type;

/// Name of the table holding the checkpoints, in the target schema.
pub(super) const CHECKPOINTS: &str = "_dmp_checkpoints";

/// Longest identifier PostgreSQL keeps (NAMEDATALEN - 1 bytes).
pub(super) const MAX_IDENT_BYTES: usize = 63;

pub(super) fn create_checkpoints(schema: &str) -> String {
    format!(
        "CREATE TABLE IF NOT EXISTS {} (pipeline text NOT NULL, table_name text NOT NULL, \
         chunk integer NOT NULL, position text NOT NULL, \"rows\" bigint NOT NULL, \
         done boolean NOT NULL, PRIMARY KEY (pipeline, table_name, chunk))",
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

/// `CREATE TABLE` with the primary key in it (the load fills its index as
/// it goes; secondary indexes come after the load).
pub(super) fn create_table(schema: &str, table: &TableSchema) -> String {
    let mut parts: Vec<String> = table
        .columns
        .iter()
        .map(|c| {
            let name = quote_ident(&c.name);
            let mut def = format!("{name} {}", ddl_type(c));
            if !c.nullable {
                def.push_str(" NOT NULL");
            }
            if let Some(d) = c.default.as_ref().filter(|d| !d.is_null()) {
                def.push_str(" DEFAULT ");
                def.push_str(&literal(d));
            }
            if let Some(values) = &c.enum_values {
                let list: Vec<String> = values
                    .iter()
                    .map(|v| literal(&Value::Text(v.clone())))
                    .collect();
                if !list.is_empty() {
                    def.push_str(&format!(" CHECK ({name} IN ({}))", list.join(", ")));
                }
            }
            def
        })
        .collect();
    if !table.primary_key.is_empty() {
        let constraint = table
            .primary_key_name
            .as_ref()
            .map_or_else(String::new, |n| format!("CONSTRAINT {} ", quote_ident(n)));
        parts.push(format!(
            "{constraint}PRIMARY KEY ({})",
            ident_list(&table.primary_key)
        ));
    }
    format!(
        "CREATE TABLE {} ({})",
        qualified(schema, &table.name),
        parts.join(", ")
    )
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
    use crate::model::{Column, DataType};

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
            create_table("public", &shop()),
            "CREATE TABLE \"public\".\"Order\" (\"Id\" integer NOT NULL, \"select\" numeric(12,2), \
             \"status\" varchar(10) NOT NULL DEFAULT 'new' CHECK (\"status\" IN ('new', 'it''s')), \
             PRIMARY KEY (\"Id\"))"
        );
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
