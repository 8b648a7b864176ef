//! Rows between PostgreSQL servers in binary COPY form. A source table
//! whose columns are all read in their own binary form hands its tuples on
//! undecoded; a target whose columns take the same forms sends them on as
//! they came (its server checks each value against the column's type as it
//! would any COPY). Only each batch's last key is decoded, for the
//! checkpoint; the rows are decoded only when the target refuses some of
//! them and must find which.

use std::sync::Arc;

use super::catalog::SourceTable;
use super::copy_binary::{CopyDecoder, Encoding, FieldSpan, Wire, decode_value, header, trailer};
use super::source::{decode_tuple, undecodable_row};
use super::types::Read;
use dmp_model::{Position, Reject, Row, TableSchema, Value, WireColumn, WireDecoder, WireFormat};

/// The wire format of `table`'s rows, when every column is read in its
/// own binary form (no text or JSON conversion in the select list).
pub(super) fn format(table: &SourceTable) -> Option<WireFormat> {
    let columns = table
        .columns
        .iter()
        .map(|c| match c.read {
            Read::Native(wire) => Some(WireColumn {
                form: form(wire),
                sql_type: c.sql_type.clone(),
            }),
            Read::ArrayAsJson | Read::AsText => None,
        })
        .collect::<Option<Vec<_>>>()?;
    Some(WireFormat::PostgresBinary(columns))
}

fn form(wire: Wire) -> String {
    format!("{wire:?}")
}

/// Whether a target table whose columns are written with `encodings` (of
/// types `sql_types`) takes tuples of `format` as they are: each column in
/// the same binary form, and of the same type where the form leaves room
/// for a difference the server would not check (numeric scale, timestamp
/// precision). Text of any length limit is the server's to check.
pub(super) fn takes(
    format: &WireFormat,
    encodings: &[Option<Encoding>],
    sql_types: &[String],
) -> bool {
    let WireFormat::PostgresBinary(columns) = format;
    columns.len() == encodings.len()
        && columns
            .iter()
            .zip(encodings)
            .zip(sql_types)
            .all(|((column, encoding), sql_type)| match encoding {
                Some(encoding) => {
                    column.form == form(encoding.wire)
                        && (matches!(encoding.wire, Wire::Text | Wire::Char)
                            || column.sql_type == *sql_type)
                }
                // A generated column takes no value.
                None => false,
            })
}

/// Decodes tuples of one source table: travels with its rows.
pub(super) struct TupleDecoder {
    pub(super) wires: Vec<Wire>,
    pub(super) keys: Vec<usize>,
}

impl TupleDecoder {
    pub(super) fn new(table: &SourceTable, schema: &TableSchema) -> Arc<Self> {
        Arc::new(TupleDecoder {
            wires: table.columns.iter().map(|c| c.read.wire()).collect(),
            keys: schema.primary_key_indices(),
        })
    }

    /// A stream of `tuples` as the server would send it.
    fn stream(&self, tuples: &[u8]) -> CopyDecoder {
        let mut decoder = CopyDecoder::new(self.wires.len());
        decoder.feed(header());
        decoder.feed(tuples);
        decoder.feed(trailer());
        decoder
    }

    /// The key of one tuple, or `None` when a key value does not decode.
    pub(super) fn key(&self, tuple: &[u8]) -> Option<Vec<Value>> {
        let mut decoder = self.stream(tuple);
        let mut spans: Vec<FieldSpan> = Vec::with_capacity(self.wires.len());
        if !decoder.next_row(&mut spans).ok()? {
            return None;
        }
        let data = decoder.data();
        self.keys
            .iter()
            .map(|&k| {
                let (start, end) = spans.get(k).copied().flatten()?;
                decode_value(self.wires[k], data.get(start..end)?).ok()
            })
            .collect()
    }
}

impl WireDecoder for TupleDecoder {
    fn decode(
        &self,
        bytes: &[u8],
        table: &TableSchema,
        position: &Position,
    ) -> std::result::Result<(Vec<Row>, Vec<Reject>), String> {
        let mut decoder = self.stream(bytes);
        let mut spans: Vec<FieldSpan> = Vec::with_capacity(self.wires.len());
        let mut rows = Vec::new();
        let mut rejects = Vec::new();
        while decoder
            .next_row(&mut spans)
            .map_err(|e| format!("table {}: broken COPY tuples: {}", table.name, e.0))?
        {
            let (values, bad) = decode_tuple(decoder.data(), &spans, &self.wires);
            if bad.is_empty() {
                rows.push(Row(values));
                continue;
            }
            let key: Option<Vec<Value>> = self
                .keys
                .iter()
                .map(|&k| (!bad.iter().any(|(i, _)| *i == k)).then(|| values[k].clone()))
                .collect();
            let at = match key {
                Some(key) if !key.is_empty() => Position::Key { key },
                _ => position.clone(),
            };
            rejects.push(undecodable_row(table, values, bad, at));
        }
        if !decoder.finished() {
            return Err(format!("table {}: COPY tuples cut short", table.name));
        }
        Ok((rows, rejects))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::copy_binary::CopyEncoder;
    use dmp_model::{Column, DataType};

    fn format(columns: &[(Wire, &str)]) -> WireFormat {
        WireFormat::PostgresBinary(
            columns
                .iter()
                .map(|(wire, sql_type)| WireColumn {
                    form: form(*wire),
                    sql_type: (*sql_type).to_string(),
                })
                .collect(),
        )
    }

    fn target(columns: &[(Wire, &str)]) -> (Vec<Option<Encoding>>, Vec<String>) {
        columns
            .iter()
            .map(|(wire, sql_type)| (Some(Encoding::plain(*wire)), (*sql_type).to_string()))
            .unzip()
    }

    #[test]
    fn a_target_takes_tuples_whose_columns_have_its_binary_forms() {
        let source = format(&[
            (Wire::Int4, "integer"),
            (Wire::Text, "character varying(20)"),
        ]);
        let takes_from = |columns: &[(Wire, &str)]| {
            let (encodings, types) = target(columns);
            takes(&source, &encodings, &types)
        };
        assert!(takes_from(&[(Wire::Int4, "integer"), (Wire::Text, "text")]));
        // The server checks a text's length itself.
        assert!(takes_from(&[
            (Wire::Int4, "integer"),
            (Wire::Text, "character varying(5)")
        ]));
        assert!(!takes_from(&[(Wire::Int8, "bigint"), (Wire::Text, "text")]));
        // A CHAR(n) pads: its values are not a varchar's.
        assert!(!takes_from(&[
            (Wire::Int4, "integer"),
            (Wire::Char, "character(20)")
        ]));
        assert!(!takes_from(&[(Wire::Int4, "integer")]));
        // Numeric scale would be rounded by the server, not refused.
        let numeric = format(&[(Wire::Numeric, "numeric(12,4)")]);
        let (encodings, types) = target(&[(Wire::Numeric, "numeric(12,2)")]);
        assert!(!takes(&numeric, &encodings, &types));
        // A generated column takes no value.
        assert!(!takes(&numeric, &[None], &["numeric(12,4)".to_string()]));
    }

    #[test]
    fn tuples_decode_to_rows_and_the_last_key_alone() {
        let decoder = TupleDecoder {
            wires: vec![Wire::Int8, Wire::Char, Wire::Text],
            keys: vec![0],
        };
        let mut encoder = CopyEncoder::with_capacity(64);
        let rows = [
            [Value::Int(7), Value::Text("ab  ".into()), Value::Null],
            [
                Value::Int(9),
                Value::Text("c".into()),
                Value::Text("x".into()),
            ],
        ];
        let mut last = 0;
        for row in &rows {
            let start = encoder.begin_row(3);
            last = start - header().len();
            for (value, wire) in row.iter().zip(&decoder.wires) {
                encoder
                    .field(value, &Encoding::plain(*wire))
                    .expect("encodes");
            }
        }
        let stream = encoder.finish();
        let tuples = &stream[header().len()..stream.len() - trailer().len()];
        assert_eq!(decoder.key(&tuples[last..]), Some(vec![Value::Int(9)]));
        let mut table = TableSchema {
            name: "t".into(),
            columns: vec![
                Column::new("id", DataType::Int64),
                Column::new("c", DataType::TEXT),
                Column::new("t", DataType::TEXT),
            ],
            primary_key: vec!["id".into()],
            ..Default::default()
        };
        table.columns[1].fixed_length = true;
        let (decoded, rejects) = decoder
            .decode(tuples, &table, &Position::Start)
            .expect("decodes");
        assert!(rejects.is_empty());
        // A CHAR(n) value is read without its padding.
        assert_eq!(decoded[0].0[1], Value::Text("ab".into()));
        assert_eq!(decoded[1].0, rows[1].to_vec());
        // Cut short: said so.
        assert!(
            decoder
                .decode(&tuples[..tuples.len() - 1], &table, &Position::Start)
                .is_err()
        );
    }
}
