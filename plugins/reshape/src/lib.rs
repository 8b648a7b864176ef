//! Changes the shape of rows. Settings, all optional, applied in this order:
//! - `split` = `full_name=first_name,last_name`: two new text columns from
//!   the first word and the rest of a text column;
//! - `cents_to_decimal` = `amount_cents=amount`: an integer number of cents
//!   as a `decimal(20,2)` column (the same name on both sides retypes the
//!   column in place);
//! - `constant` = `origin=legacy`: a new text column holding a constant;
//! - `rename` = `old=new, other=renamed`;
//! - `drop` = `a, b`.

use dmp_sdk::{
    Cell, Config, DataType, DecimalType, Outcome, Row, SchemaExt, TableSchema, Transform, Value,
};

fn pairs(config: &Config, key: &str) -> Result<Vec<(String, String)>, String> {
    config
        .list(key)
        .into_iter()
        .map(|p| {
            p.split_once('=')
                .map(|(a, b)| (a.trim().to_string(), b.trim().to_string()))
                .ok_or_else(|| format!("setting `{key}`: `{p}` is not `from=to`"))
        })
        .collect()
}

/// Cents as exact decimal text: -1234 is "-12.34".
fn cents(value: i64) -> String {
    let sign = if value < 0 { "-" } else { "" };
    let abs = value.unsigned_abs();
    format!("{sign}{}.{:02}", abs / 100, abs % 100)
}

pub struct Reshape {
    split: Option<(String, String, String)>,
    cents: Vec<(String, String)>,
    constants: Vec<(String, String)>,
    renames: Vec<(String, String)>,
    drops: Vec<String>,
    output: TableSchema,
}

impl Transform for Reshape {
    fn open(config: &Config, input: &TableSchema) -> Result<Self, String> {
        let need = |name: &str| {
            input
                .column(name)
                .map(|_| ())
                .ok_or_else(|| format!("table {} has no column `{name}`", input.name))
        };
        let mut output = input.clone();
        let split = match config.get("split") {
            None => None,
            Some(spec) => {
                let (from, to) = spec
                    .split_once('=')
                    .ok_or("setting `split`: expected `column=first,rest`")?;
                let (first, rest) = to
                    .split_once(',')
                    .ok_or("setting `split`: expected two target columns")?;
                need(from.trim())?;
                output = output
                    .with_column(first.trim(), DataType::Text(None))
                    .with_column(rest.trim(), DataType::Text(None));
                Some((
                    from.trim().to_string(),
                    first.trim().to_string(),
                    rest.trim().to_string(),
                ))
            }
        };
        let decimal = DataType::Decimal(DecimalType {
            precision: Some(20),
            scale: Some(2),
        });
        let cents = pairs(config, "cents_to_decimal")?;
        for (from, to) in &cents {
            need(from)?;
            output = if from == to {
                output.retyped(to, decimal)
            } else {
                output.with_column(to, decimal)
            };
        }
        let constants = pairs(config, "constant")?;
        for (name, _) in &constants {
            output = output.with_column(name, DataType::Text(None));
        }
        let renames = pairs(config, "rename")?;
        for (from, to) in &renames {
            need(from)?;
            output = output.renamed(from, to);
        }
        let drops = config.list("drop");
        for name in &drops {
            if output.column(name).is_none() {
                return Err(format!("setting `drop`: no column `{name}`"));
            }
            output = output.without_column(name);
        }
        Ok(Reshape {
            split,
            cents,
            constants,
            renames,
            drops,
            output,
        })
    }

    fn output_schema(&self, _input: &TableSchema) -> TableSchema {
        self.output.clone()
    }

    fn process(&mut self, row: &mut Row<'_>) -> Outcome {
        if let Some((from, first, rest)) = &self.split {
            let (a, b) = match row.get::<&str>(from) {
                Some(text) => {
                    let text = text.trim();
                    match text.split_once(char::is_whitespace) {
                        Some((a, b)) => (Some(a.to_string()), Some(b.trim().to_string())),
                        None => (Some(text.to_string()), None),
                    }
                }
                None => (None, None),
            };
            if !self.drops.contains(first) {
                row.set(first, a);
            }
            if !self.drops.contains(rest) {
                row.set(rest, b);
            }
        }
        for (from, to) in &self.cents {
            let value = match row.cell(from) {
                Some(Cell::Int(c)) => Value::Decimal(cents(c)),
                Some(Cell::Null) | None => Value::Null,
                Some(other) => {
                    return Outcome::Reject(format!(
                        "column {from}: {other:?} is not a whole number of cents"
                    ));
                }
            };
            if !self.drops.contains(to) {
                row.set(to, value);
            }
        }
        for (name, value) in &self.constants {
            if !self.drops.contains(name) {
                row.set(name, value.as_str());
            }
        }
        for (from, to) in &self.renames {
            if self.drops.contains(to) {
                continue;
            }
            let Some(column) = self.output.column(to) else {
                continue;
            };
            let data_type = column.data_type;
            let value = row
                .cell(from)
                .map_or(Value::Null, |c| c.to_value(&data_type));
            row.set(to, value);
        }
        Outcome::Keep
    }
}

dmp_sdk::export_transform!(Reshape);
