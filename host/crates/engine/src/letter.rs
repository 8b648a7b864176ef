//! A stored dead-letter row back as a model change: its JSON decoded by the
//! table's current schema (the form `model::json` writes: decimals as
//! strings, bytes as base64, times in ISO 8601, JSON columns embedded), and
//! the operation it stood for. What cannot be told exactly is refused with
//! the reason, never guessed.

use std::collections::HashMap;

use serde_json::value::RawValue;

use dmp_model::json::value_from_json;
use dmp_model::{Change, Position, Row, TableSchema, Value};
use dmp_state::StoredLetter;

/// The change a letter stands for, in `schema` (the source's for rows the
/// reader or a transform refused, the transforms' output for rows the
/// target refused). `soft_delete` is the index of the table's soft-delete
/// column in `schema`, when the pipeline has one for the table.
pub(super) fn letter_change(
    letter: &StoredLetter,
    schema: &TableSchema,
    soft_delete: SoftDelete,
) -> Result<Change, String> {
    if matches!(letter.position, Position::Log { .. }) {
        return Err(
            "a change from the change stream: its operation (insert, update or \
                    delete) is not kept with the row, so replaying it could undo a delete; \
                    re-sync the table or purge the row"
                .to_string(),
        );
    }
    let row = decode_row(&letter.row, schema)?;
    // Only incremental runs turn rows into deletes (by their soft-delete
    // column); a full run copies every row as it is.
    if letter.run_mode.as_deref() != Some("incremental") {
        return Ok(Change::Insert(row));
    }
    match soft_delete {
        SoftDelete::None => Ok(Change::Insert(row)),
        SoftDelete::At(i) => {
            if row.0.get(i).is_some_and(super::incremental::is_marked) {
                Ok(Change::Delete(row))
            } else {
                Ok(Change::Insert(row))
            }
        }
        SoftDelete::Dropped(column) => Err(format!(
            "the transforms drop soft-delete column `{column}`, so whether this row was a \
             delete cannot be told; re-sync the table or purge the row"
        )),
    }
}

/// Where a table's soft-delete column is in the schema a letter is read by.
#[derive(Debug, Clone, Copy)]
pub(super) enum SoftDelete<'a> {
    None,
    At(usize),
    /// The pipeline names one but the schema lacks it.
    Dropped(&'a str),
}

impl<'a> SoftDelete<'a> {
    pub(super) fn find(column: Option<&'a str>, schema: &TableSchema) -> Self {
        match column {
            None => SoftDelete::None,
            Some(name) => schema
                .column_index(name)
                .map_or(SoftDelete::Dropped(name), SoftDelete::At),
        }
    }
}

/// Decodes a stored row: a JSON object by column name, or (a JSON Lines
/// record the reader refused) a string holding one. Columns the stored row
/// lacks are NULL; a stored column the schema lacks is an error, as it
/// would be lost.
pub(super) fn decode_row(text: &str, schema: &TableSchema) -> Result<Row, String> {
    type Fields = HashMap<String, Box<RawValue>>;
    let fields: Fields = match serde_json::from_str(text) {
        Ok(fields) => fields,
        Err(_) => serde_json::from_str::<String>(text)
            .ok()
            .and_then(|line| serde_json::from_str::<Fields>(&line).ok())
            .ok_or_else(|| {
                "the row is kept as the source's raw record (the reader could not decode \
                 it); fix the source and run the pipeline again, or purge the row"
                    .to_string()
            })?,
    };
    if let Some(unknown) = fields
        .keys()
        .filter(|k| schema.column_index(k).is_none())
        .min()
    {
        return Err(format!(
            "the row has column `{unknown}`, which table {} no longer has",
            schema.name
        ));
    }
    schema
        .columns
        .iter()
        .map(|column| match fields.get(&column.name) {
            None => Ok(Value::Null),
            Some(raw) => value_from_json(raw, &column.data_type)
                .map_err(|e| format!("column {}: {e}", column.name)),
        })
        .collect::<Result<Vec<_>, _>>()
        .map(Row)
}

#[cfg(test)]
mod tests {
    use super::*;
    use dmp_model::json::row_to_json;
    use dmp_model::{Column, DataType, RejectStage};

    fn schema(columns: &[(&str, &str)]) -> TableSchema {
        TableSchema {
            namespace: None,
            name: "t".into(),
            columns: columns
                .iter()
                .map(|(name, t)| Column::new(*name, t.parse::<DataType>().unwrap()))
                .collect(),
            primary_key: vec!["id".into()],
            indexes: Vec::new(),
            foreign_keys: Vec::new(),
            ..Default::default()
        }
    }

    fn letter(row: &str, position: Position, run_mode: &str) -> StoredLetter {
        StoredLetter {
            id: 1,
            table: "t".into(),
            stage: RejectStage::Target,
            row: row.to_string(),
            position,
            plugins: String::new(),
            run_mode: Some(run_mode.to_string()),
        }
    }

    #[test]
    fn every_type_comes_back_as_it_was_stored() {
        let schema = schema(&[
            ("id", "int64"),
            ("d", "decimal(40,2)"),
            ("b", "bytes"),
            ("ts", "timestamp"),
            ("tz", "timestamptz"),
            ("doc", "json"),
            ("empty", "text"),
            ("nothing", "text"),
            ("f", "float64"),
            ("u", "uuid"),
        ]);
        let texts = [
            "7",
            "123456789012345678901234567890.50",
            "\\x00fffe",
            "2024-02-29 23:59:59.000001",
            "1999-12-31 23:00:00.000001+00:00",
            "{\"a\": [1, null], \"b\": \"✓\"}",
            "",
        ];
        let mut values: Vec<Value> = schema
            .columns
            .iter()
            .zip(texts)
            .map(|(c, t)| Value::parse_text(t, &c.data_type).unwrap())
            .collect();
        values.push(Value::Null);
        values.push(Value::Float(1e300));
        values.push(
            Value::parse_text(
                "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11",
                &"uuid".parse().unwrap(),
            )
            .unwrap(),
        );
        let row = Row(values);
        // As the store keeps it: a JSON value written out as text.
        let stored = row_to_json(&schema, &row).to_string();
        let back = decode_row(&stored, &schema).unwrap();
        for (i, (a, b)) in row.0.iter().zip(&back.0).enumerate() {
            match (a, b) {
                // A JSON document keeps its meaning; spacing may change.
                (Value::Json(a), Value::Json(b)) => assert_eq!(
                    serde_json::from_str::<serde_json::Value>(a).unwrap(),
                    serde_json::from_str::<serde_json::Value>(b).unwrap()
                ),
                _ => assert_eq!(a, b, "column {i}"),
            }
        }
        assert_eq!(back.0[6], Value::Text(String::new()));
        assert_eq!(back.0[7], Value::Null);
    }

    #[test]
    fn raw_records_and_unknown_columns_are_refused_with_the_reason() {
        let s = schema(&[("id", "int64"), ("v", "text")]);
        // A JSON Lines record kept as its line decodes when it now fits.
        let line = serde_json::Value::String("{\"id\": 3, \"v\": \"x\"}".into()).to_string();
        assert_eq!(
            decode_row(&line, &s).unwrap(),
            Row(vec![Value::Int(3), Value::Text("x".into())])
        );
        // A CSV record kept as its fields is not guessed at.
        let err = decode_row("[\"3\",\"x\"]", &s).unwrap_err();
        assert!(err.contains("raw record"), "{err}");
        let err = decode_row("null", &s).unwrap_err();
        assert!(err.contains("raw record"), "{err}");
        let err = decode_row("{\"id\": 1, \"gone\": 2}", &s).unwrap_err();
        assert!(err.contains("`gone`"), "{err}");
        let err = decode_row("{\"id\": \"x\"}", &s).unwrap_err();
        assert!(err.starts_with("column id:"), "{err}");
        // A missing column is NULL (one the table gained since).
        assert_eq!(
            decode_row("{\"id\": 1}", &s).unwrap(),
            Row(vec![Value::Int(1), Value::Null])
        );
    }

    #[test]
    fn operations_are_told_only_where_they_are_known() {
        let s = schema(&[("id", "int64"), ("deleted", "bool")]);
        let key = Position::Key {
            key: vec![Value::Int(1)],
        };
        let marked = "{\"id\": 1, \"deleted\": true}";
        let soft = SoftDelete::find(Some("deleted"), &s);
        // A full run copied the row as it was, marked or not.
        assert!(matches!(
            letter_change(&letter(marked, key.clone(), "full"), &s, soft),
            Ok(Change::Insert(_))
        ));
        let cursor = Position::Cursor {
            cursor: Value::Int(5),
            key: vec![Value::Int(1)],
        };
        assert!(matches!(
            letter_change(&letter(marked, cursor.clone(), "incremental"), &s, soft),
            Ok(Change::Delete(_))
        ));
        assert!(matches!(
            letter_change(
                &letter(
                    "{\"id\": 1, \"deleted\": false}",
                    cursor.clone(),
                    "incremental"
                ),
                &s,
                soft
            ),
            Ok(Change::Insert(_))
        ));
        let dropped = SoftDelete::find(Some("gone"), &s);
        assert!(
            letter_change(&letter(marked, cursor, "incremental"), &s, dropped)
                .unwrap_err()
                .contains("soft-delete column `gone`")
        );
        let log = Position::Log {
            log: "lsn=0/1".into(),
            skip: 0,
        };
        assert!(
            letter_change(&letter(marked, log, "cdc"), &s, SoftDelete::None)
                .unwrap_err()
                .contains("change stream")
        );
    }
}
