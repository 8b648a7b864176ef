//! SQL text: quoted identifiers and literals. `COPY` takes no bind
//! parameters, so key bounds are written into its query as typed literals;
//! every string goes through one escaping function that is correct whatever
//! `standard_conforming_strings` says.

use dmp_model::Value;

use super::copy_binary::{pg_date_text, pg_timestamp_text, write_time_text};

/// `"name"`, with `"` doubled: mixed case, reserved words and any Unicode
/// survive as they are.
pub(super) fn quote_ident(name: &str) -> String {
    let mut out = String::with_capacity(name.len() + 2);
    out.push('"');
    for c in name.chars() {
        if c == '"' {
            out.push('"');
        }
        out.push(c);
    }
    out.push('"');
    out
}

/// `"schema"."table"`.
pub(super) fn qualified(schema: &str, table: &str) -> String {
    format!("{}.{}", quote_ident(schema), quote_ident(table))
}

/// `"a", "b"`.
pub(super) fn ident_list<S: AsRef<str>>(names: &[S]) -> String {
    names
        .iter()
        .map(|n| quote_ident(n.as_ref()))
        .collect::<Vec<_>>()
        .join(", ")
}

/// A string literal. Plain `'…'` with `'` doubled when there is no
/// backslash; `E'…'` with backslashes doubled otherwise, which reads the
/// same with `standard_conforming_strings` on or off.
pub(super) fn quote_literal(text: &str) -> String {
    let escaped = text.contains('\\');
    let mut out = String::with_capacity(text.len() + 3);
    if escaped {
        out.push('E');
    }
    out.push('\'');
    for c in text.chars() {
        match c {
            '\'' => out.push_str("''"),
            '\\' => out.push_str("\\\\"),
            c => out.push(c),
        }
    }
    out.push('\'');
    out
}

/// A value's text as PostgreSQL's input functions read it.
pub(super) fn pg_text(value: &Value) -> Option<String> {
    Some(match value {
        Value::Null => return None,
        Value::Float(f) if f.is_nan() => "NaN".into(),
        Value::Float(f) if f.is_infinite() => {
            if *f > 0.0 { "Infinity" } else { "-Infinity" }.into()
        }
        Value::Float(f) => format!("{f:?}"),
        Value::Date(d) => pg_date_text(*d),
        Value::Time(t) => {
            let mut out = String::with_capacity(15);
            write_time_text(&mut out, *t);
            out
        }
        Value::Timestamp(ts) => pg_timestamp_text(*ts, false),
        Value::TimestampTz(ts) => pg_timestamp_text(ts.naive_utc(), true),
        other => other.to_text(),
    })
}

/// A literal for a column DEFAULT or a CHECK list: numbers and booleans
/// bare, anything else a string the column's type reads (an untyped
/// literal takes the column's type).
pub(super) fn literal(value: &Value) -> String {
    match value {
        Value::Null => "NULL".into(),
        Value::Bool(b) => if *b { "true" } else { "false" }.into(),
        Value::Int(i) => i.to_string(),
        Value::Decimal(d) => quote_literal(d.as_str()),
        other => quote_literal(&pg_text(other).unwrap_or_default()),
    }
}

/// `'text'::type`: a key value compared with a column of SQL type
/// `sql_type` (as `format_type` prints it), in that type's order.
pub(super) fn typed_literal(value: &Value, sql_type: &str) -> String {
    match pg_text(value) {
        None => format!("NULL::{sql_type}"),
        Some(text) => format!("{}::{sql_type}", quote_literal(&text)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use dmp_model::DataType;

    #[test]
    fn identifiers_are_quoted() {
        assert_eq!(quote_ident("Order"), "\"Order\"");
        assert_eq!(quote_ident("select"), "\"select\"");
        assert_eq!(quote_ident("Ünïcödé"), "\"Ünïcödé\"");
        assert_eq!(quote_ident("a\"b"), "\"a\"\"b\"");
        assert_eq!(qualified("My Schema", "t"), "\"My Schema\".\"t\"");
        assert_eq!(ident_list(&["a", "B"]), "\"a\", \"B\"");
    }

    #[test]
    fn strings_are_escaped_for_either_setting() {
        assert_eq!(quote_literal("it's"), "'it''s'");
        assert_eq!(quote_literal("a\\b'"), "E'a\\\\b'''");
        assert_eq!(quote_literal(""), "''");
        assert_eq!(quote_literal("😀"), "'😀'");
    }

    #[test]
    fn key_literals_are_typed() {
        let v =
            |text: &str, t: &str| Value::parse_text(text, &t.parse::<DataType>().unwrap()).unwrap();
        assert_eq!(typed_literal(&Value::Int(-5), "bigint"), "'-5'::bigint");
        assert_eq!(
            typed_literal(&v("O'Neil", "text"), "character varying(20)"),
            "'O''Neil'::character varying(20)"
        );
        assert_eq!(
            typed_literal(&Value::Bytes(vec![0, 0xff]), "bytea"),
            "E'\\\\x00ff'::bytea"
        );
        assert_eq!(
            typed_literal(
                &v("2024-02-29 23:59:59.000001+02:00", "timestamptz"),
                "timestamp with time zone"
            ),
            "'2024-02-29 21:59:59.000001+00'::timestamp with time zone"
        );
        assert_eq!(
            typed_literal(&v("12.50", "decimal"), "numeric(10,2)"),
            "'12.50'::numeric(10,2)"
        );
        assert_eq!(
            typed_literal(&Value::Float(f64::NAN), "double precision"),
            "'NaN'::double precision"
        );
        assert_eq!(
            typed_literal(&Value::Float(f64::NEG_INFINITY), "real"),
            "'-Infinity'::real"
        );
        assert_eq!(
            typed_literal(&Value::Float(0.1), "double precision"),
            "'0.1'::double precision"
        );
        assert_eq!(
            typed_literal(&Value::Float(1e300), "double precision"),
            "'1e300'::double precision"
        );
        assert_eq!(typed_literal(&Value::Null, "integer"), "NULL::integer");
        assert_eq!(
            typed_literal(&v("23:59:59.5", "time"), "time without time zone"),
            "'23:59:59.500000'::time without time zone"
        );
        assert_eq!(
            typed_literal(&Value::Bool(true), "boolean"),
            "'true'::boolean"
        );
        assert_eq!(
            typed_literal(&v("a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11", "uuid"), "uuid"),
            "'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11'::uuid"
        );
    }

    #[test]
    fn default_literals() {
        assert_eq!(literal(&Value::Int(0)), "0");
        assert_eq!(literal(&Value::Bool(false)), "false");
        assert_eq!(literal(&Value::Text("new".into())), "'new'");
        assert_eq!(
            literal(&Value::Decimal("-1.50".parse().unwrap())),
            "'-1.50'"
        );
        assert_eq!(
            literal(&Value::Json("{\"a\": \"x'y\"}".into())),
            "'{\"a\": \"x''y\"}'"
        );
    }
}
