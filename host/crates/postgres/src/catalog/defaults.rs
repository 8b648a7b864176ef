//! Column defaults as `pg_get_expr` prints them: constants become values
//! (`'new'::character varying` → `new`), everything else an expression.

use dmp_model::{DataType, Value};

/// A default that is a constant, as `pg_get_expr` prints it: a number, a
/// boolean or a string literal, possibly in parentheses and with casts
/// (`'new'::character varying`, `(-1)`, `'{}'::jsonb`). Expressions
/// (`nextval(…)`, `now()`) give `None`.
pub(super) fn constant_default(expr: &str, t: &DataType) -> Option<Value> {
    let (literal, rest) = split_literal(expr.trim())?;
    if !rest.trim().is_empty() {
        return None;
    }
    let text = match literal {
        Literal::Null => return None,
        Literal::Text(s) | Literal::Bare(s) => s,
    };
    Value::parse_text(&text, t).ok()
}

enum Literal {
    Null,
    /// A quoted string's content.
    Text(String),
    /// A number or boolean keyword.
    Bare(String),
}

/// The literal at the start of `s` (after opening parentheses, which stay
/// in the rest as a count), and what follows it.
fn split_literal(s: &str) -> Option<(Literal, &str)> {
    let mut s = s;
    let mut open = 0usize;
    while let Some(rest) = s.strip_prefix('(') {
        open += 1;
        s = rest.trim_start();
    }
    let (literal, mut rest) =
        if let Some(body) = s.strip_prefix("E'").or_else(|| s.strip_prefix('\'')) {
            let escapes = s.starts_with('E');
            let mut out = String::new();
            let mut chars = body.char_indices();
            let mut end = None;
            while let Some((i, c)) = chars.next() {
                match c {
                    '\'' if body[i + 1..].starts_with('\'') => {
                        out.push('\'');
                        chars.next();
                    }
                    '\'' => {
                        end = Some(i + 1);
                        break;
                    }
                    '\\' if escapes => match chars.next() {
                        Some((_, '\\')) => out.push('\\'),
                        Some((_, '\'')) => out.push('\''),
                        Some((_, 'n')) => out.push('\n'),
                        Some((_, 't')) => out.push('\t'),
                        Some((_, 'r')) => out.push('\r'),
                        _ => return None,
                    },
                    c => out.push(c),
                }
            }
            (Literal::Text(out), &body[end?..])
        } else {
            let len = s
                .find(|c: char| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '+' | '_')))
                .unwrap_or(s.len());
            let word = &s[..len];
            let literal = match word.to_ascii_lowercase().as_str() {
                "null" => Literal::Null,
                "true" | "false" => Literal::Bare(word.to_ascii_lowercase()),
                _ if word.parse::<dmp_model::Decimal>().is_ok() => Literal::Bare(word.to_string()),
                _ => return None,
            };
            (literal, &s[len..])
        };
    // Casts and closing parentheses, in any order, must use up the rest.
    let mut closes = 0usize;
    loop {
        rest = rest.trim_start();
        if let Some(r) = rest.strip_prefix(')') {
            closes += 1;
            rest = r;
        } else if let Some(r) = rest.strip_prefix("::") {
            rest = skip_type_name(r)?;
        } else {
            break;
        }
    }
    (closes == open).then_some((literal, rest))
}

/// Skips a type name such as `character varying(10)`,
/// `timestamp(3) with time zone`, `"MyType"`, `public.mood[]`.
fn skip_type_name(s: &str) -> Option<&str> {
    let s = s.trim_start();
    let mut i = 0;
    let b = s.as_bytes();
    let mut any = false;
    while i < b.len() {
        match b[i] {
            b'"' => {
                let close = s[i + 1..].find('"')?;
                i += close + 2;
            }
            b'(' => {
                let close = s[i..].find(')')?;
                if !s[i + 1..i + close]
                    .bytes()
                    .all(|c| c.is_ascii_digit() || c == b',' || c == b' ')
                {
                    break;
                }
                i += close + 1;
            }
            b'[' if s[i..].starts_with("[]") => i += 2,
            c if c.is_ascii_alphanumeric() || c == b'_' || c == b'.' || c == b' ' => i += 1,
            _ if !b[i].is_ascii() => i += 1,
            _ => break,
        }
        any = true;
    }
    any.then_some(&s[i..])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn default(expr: &str, t: &str) -> Option<Value> {
        constant_default(expr, &t.parse().unwrap())
    }

    #[test]
    fn constant_defaults_are_kept() {
        assert_eq!(default("0", "int32"), Some(Value::Int(0)));
        assert_eq!(default("(-1)", "int64"), Some(Value::Int(-1)));
        assert_eq!(default("'-1'::integer", "int32"), Some(Value::Int(-1)));
        assert_eq!(
            default("'new'::character varying", "text(10)"),
            Some(Value::Text("new".into()))
        );
        assert_eq!(
            default("('a''b'::character varying)::text", "text"),
            Some(Value::Text("a'b".into()))
        );
        assert_eq!(default("true", "bool"), Some(Value::Bool(true)));
        assert_eq!(
            default("0.00", "decimal(12,2)"),
            Some(Value::Decimal("0.00".parse().unwrap()))
        );
        assert_eq!(
            default("'{}'::jsonb", "json"),
            Some(Value::Json("{}".into()))
        );
        assert_eq!(
            default(
                "'2024-01-01 00:00:00+00'::timestamp(3) with time zone",
                "timestamptz"
            ),
            Value::parse_text("2024-01-01 00:00:00+00:00", &DataType::TimestampTz).ok()
        );
        assert_eq!(
            default("'x'::\"MyText\"", "text"),
            Some(Value::Text("x".into()))
        );
        assert_eq!(
            default("E'a\\\\b'", "text"),
            Some(Value::Text("a\\b".into()))
        );
    }

    #[test]
    fn expressions_are_dropped() {
        for expr in [
            "nextval('t_id_seq'::regclass)",
            "now()",
            "CURRENT_TIMESTAMP",
            "'a'::text || 'b'::text",
            "(1 + 2)",
            "NULL::text",
            "gen_random_uuid()",
            "(('a'::text)",
        ] {
            assert_eq!(default(expr, "text"), None, "{expr}");
        }
        // A literal that is not a value of the column's type.
        assert_eq!(default("'abc'::text", "int32"), None);
    }
}
