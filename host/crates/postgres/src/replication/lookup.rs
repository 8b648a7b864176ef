//! What the stream asks the source over SQL while it decodes: values only
//! the server can print as the snapshot reads them, and the current value
//! of a column an update left out (an unchanged TOASTed value).

use sqlx::{AssertSqlSafe, PgPool, Row, ValueRef};

use super::super::copy_binary::decode_value;
use super::super::sql::{qualified, quote_ident, quote_literal, typed_literal};
use super::columns::{ColumnPlan, TablePlan, TextForm};
use super::decode::Decoded;
use crate::error::{Error, Result, ResultExt};
use dmp_model::Value;

pub(super) struct Lookup {
    pool: PgPool,
    place: String,
}

impl Lookup {
    pub(super) fn new(pool: PgPool, place: String) -> Self {
        Lookup { pool, place }
    }

    /// The source's sessions, for the catalog.
    pub(super) fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// Reads an output text back as the column's type and prints it as the
    /// snapshot does (`col::text` or `to_json(col)::text`). The literal is
    /// untyped, so the type's input function reads it: the exact inverse of
    /// the output function that printed it.
    pub(super) async fn convert(&self, column: &ColumnPlan, text: &str) -> Result<Value> {
        let literal = format!("{}::{}", quote_literal(text), column.sql_type);
        let (sql, json) = match column.text {
            TextForm::ServerJson => (format!("SELECT to_json({literal})::text"), true),
            _ => (format!("SELECT ({literal})::text"), false),
        };
        let printed: Option<String> = sqlx::query_scalar(AssertSqlSafe(sql))
            .persistent(false)
            .fetch_one(&self.pool)
            .await
            .context(|| {
                format!(
                    "{}: converting a value of column {} ({})",
                    self.place, column.name, column.sql_type
                )
            })?;
        Ok(match printed {
            None => Value::Null,
            Some(text) if json => Value::Json(text),
            Some(text) => Value::Text(text),
        })
    }

    /// The current values of `columns` (schema indices) of the row whose
    /// primary key is `key`, read as the snapshot reads them; `None` when
    /// no such row exists any more.
    pub(super) async fn current(
        &self,
        table: &TablePlan,
        key: &[Value],
        columns: &[usize],
    ) -> Result<Option<Vec<Decoded>>> {
        let schema = &table.schema;
        let mut conditions = Vec::with_capacity(key.len());
        for (&k, value) in table.keys.iter().zip(key) {
            let column = &table.columns[k];
            if !matches!(column.text, TextForm::Native(_) | TextForm::AsIs) {
                return Err(Error::Unsupported(format!(
                    "{}: table {}: key column {} ({}) cannot be matched by value",
                    self.place, schema.name, column.name, column.sql_type
                )));
            }
            conditions.push(format!(
                "{} = {}",
                quote_ident(&column.name),
                typed_literal(value, &column.sql_type)
            ));
        }
        let select: Vec<String> = columns
            .iter()
            .map(|&c| {
                table.columns[c]
                    .read
                    .select_expr(&quote_ident(&table.columns[c].name))
            })
            .collect();
        let sql = format!(
            "SELECT {} FROM {} WHERE {}",
            select.join(", "),
            qualified(table.namespace(), &schema.name),
            conditions.join(" AND ")
        );
        let ctx = || {
            format!(
                "{}: reading the current values of an updated row of table {}",
                self.place, schema.name
            )
        };
        let Some(row) = sqlx::query(AssertSqlSafe(sql))
            .persistent(false)
            .fetch_optional(&self.pool)
            .await
            .context(ctx)?
        else {
            return Ok(None);
        };
        let mut out = Vec::with_capacity(columns.len());
        for (i, &c) in columns.iter().enumerate() {
            let raw = row.try_get_raw(i).context(ctx)?;
            if raw.is_null() {
                out.push(Decoded::Value(Value::Null));
                continue;
            }
            let bytes = raw.as_bytes().map_err(|e| {
                Error::Data(format!(
                    "{}: table {} column {}: {e}",
                    self.place, schema.name, table.columns[c].name
                ))
            })?;
            out.push(match decode_value(table.columns[c].read.wire(), bytes) {
                Ok(v) => Decoded::Value(v),
                Err(u) => Decoded::Bad(u),
            });
        }
        Ok(Some(out))
    }
}
