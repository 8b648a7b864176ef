//! Keeps the rows that match a predicate.
//!
//! Setting `where` (required): comparisons joined by `and`, each
//! `COLUMN OP VALUE` with OP one of `= != <> < <= > >=`, VALUE a number or a
//! 'quoted string', or `COLUMN is null` / `COLUMN is not null`. Examples:
//! `status != 'cancelled'`, `amount > 100 and country = 'DE'`.
//!
//! A NULL never matches a comparison (as in SQL). A numeric comparison on a
//! text value that is not a number rejects the row, naming the column.

use std::cmp::Ordering;

use dmp_sdk::{Cell, Config, Outcome, Row, SchemaExt, TableSchema, Transform};

#[derive(Debug, Clone, PartialEq)]
enum Literal {
    Number(f64),
    Text(String),
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Op {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
    IsNull,
    IsNotNull,
}

#[derive(Debug, Clone, PartialEq)]
struct Comparison {
    column: String,
    op: Op,
    literal: Option<Literal>,
}

fn parse_comparison(text: &str) -> Result<Comparison, String> {
    let text = text.trim();
    let lower = text.to_ascii_lowercase();
    for (suffix, op) in [(" is not null", Op::IsNotNull), (" is null", Op::IsNull)] {
        if lower.ends_with(suffix) {
            let column = text[..text.len() - suffix.len()].trim();
            return Ok(Comparison {
                column: column.to_string(),
                op,
                literal: None,
            });
        }
    }
    let ops = [
        ("!=", Op::Ne),
        ("<>", Op::Ne),
        ("<=", Op::Le),
        (">=", Op::Ge),
        ("=", Op::Eq),
        ("<", Op::Lt),
        (">", Op::Gt),
    ];
    let (at, symbol, op) = ops
        .iter()
        .filter_map(|(s, op)| text.find(s).map(|at| (at, *s, *op)))
        .min_by_key(|(at, s, _)| (*at, usize::MAX - s.len()))
        .ok_or_else(|| format!("`{text}` has no comparison operator (= != < <= > >= is null)"))?;
    let column = text[..at].trim();
    let value = text[at + symbol.len()..].trim();
    if column.is_empty() || value.is_empty() {
        return Err(format!("`{text}` needs a column and a value"));
    }
    let literal = if let Some(quoted) = value.strip_prefix('\'').and_then(|v| v.strip_suffix('\''))
    {
        Literal::Text(quoted.replace("''", "'"))
    } else {
        Literal::Number(
            value
                .parse()
                .map_err(|_| format!("`{value}` is neither a number nor a 'quoted string'"))?,
        )
    };
    Ok(Comparison {
        column: column.to_string(),
        op,
        literal: Some(literal),
    })
}

fn parse(predicate: &str) -> Result<Vec<Comparison>, String> {
    let mut parts = Vec::new();
    let mut rest = predicate;
    loop {
        let lower = rest.to_ascii_lowercase();
        match lower.find(" and ") {
            Some(at) => {
                parts.push(parse_comparison(&rest[..at])?);
                rest = &rest[at + 5..];
            }
            None => {
                parts.push(parse_comparison(rest)?);
                return Ok(parts);
            }
        }
    }
}

fn holds(op: Op, ordering: Ordering) -> bool {
    match op {
        Op::Eq => ordering == Ordering::Equal,
        Op::Ne => ordering != Ordering::Equal,
        Op::Lt => ordering == Ordering::Less,
        Op::Le => ordering != Ordering::Greater,
        Op::Gt => ordering == Ordering::Greater,
        Op::Ge => ordering != Ordering::Less,
        Op::IsNull | Op::IsNotNull => false,
    }
}

/// Whether the row matches; an error names a value that cannot be compared.
fn matches(c: &Comparison, cell: Cell<'_>) -> Result<bool, String> {
    let is_null = matches!(cell, Cell::Null);
    match (c.op, &c.literal) {
        (Op::IsNull, _) => return Ok(is_null),
        (Op::IsNotNull, _) => return Ok(!is_null),
        _ if is_null => return Ok(false),
        _ => {}
    }
    let ordering = match (&c.literal, cell) {
        (Some(Literal::Number(n)), Cell::Int(i)) => (i as f64).partial_cmp(n),
        (Some(Literal::Number(n)), Cell::Float(f)) => f.partial_cmp(n),
        (Some(Literal::Number(n)), Cell::Text(t)) => {
            let value: f64 = t
                .trim()
                .parse()
                .map_err(|_| format!("column {}: `{t}` is not a number", c.column))?;
            value.partial_cmp(n)
        }
        (Some(Literal::Number(n)), Cell::Boolean(b)) => f64::from(u8::from(b)).partial_cmp(n),
        (Some(Literal::Text(s)), Cell::Text(t)) => Some(t.cmp(s.as_str())),
        (Some(Literal::Text(s)), Cell::Int(i)) => Some(i.to_string().cmp(s)),
        (Some(Literal::Text(s)), Cell::Boolean(b)) => Some(b.to_string().cmp(s)),
        (literal, cell) => {
            return Err(format!(
                "column {}: cannot compare {cell:?} with {literal:?}",
                c.column
            ));
        }
    };
    Ok(ordering.is_some_and(|o| holds(c.op, o)))
}

pub struct FilterRows {
    predicate: Vec<Comparison>,
}

impl Transform for FilterRows {
    fn open(config: &Config, input: &TableSchema) -> Result<Self, String> {
        let predicate =
            parse(config.require("where")?).map_err(|e| format!("setting `where`: {e}"))?;
        for c in &predicate {
            if input.column(&c.column).is_none() {
                return Err(format!(
                    "setting `where`: table {} has no column `{}`",
                    input.name, c.column
                ));
            }
        }
        Ok(FilterRows { predicate })
    }

    fn process(&mut self, row: &mut Row<'_>) -> Outcome {
        for c in &self.predicate {
            let cell = row.cell(&c.column).unwrap_or(Cell::Null);
            match matches(c, cell) {
                Ok(true) => {}
                Ok(false) => return Outcome::Drop,
                Err(reason) => return Outcome::Reject(reason),
            }
        }
        Outcome::Keep
    }
}

dmp_sdk::export_transform!(FilterRows);
