//! Row values out of log lines. A database's refusal often quotes the row
//! (`Failing row contains (45, user45@example.com, …)`, `Key (email)=(…)
//! already exists`, MySQL's `Duplicate entry '…'`): the dead-letter store
//! keeps the whole text, the log at INFO/WARN gets it with the values cut.

/// What stands for a value that was cut.
const HIDDEN: &str = "…";

/// `text` with the row values databases quote in their errors replaced by
/// `…`; the rest (constraint, column, table names) stays.
pub fn without_row_values(text: &str) -> String {
    let mut text = failing_row(text);
    text = key_values(&text);
    for (open, close) in [
        // MySQL: duplicate keys, and values a column's type refuses.
        ("Duplicate entry '", "' for key"),
        ("value: '", "' for column"),
        ("value: '", "'"),
        // PostgreSQL: values a column's type refuses.
        (" syntax for type ", "\0"),
    ] {
        text = between(&text, open, close);
    }
    text
}

/// PostgreSQL's check and not-null refusals print the whole row, last.
fn failing_row(text: &str) -> String {
    const MARK: &str = "Failing row contains";
    match text.find(MARK) {
        Some(at) => format!("{}{MARK} ({HIDDEN}).", &text[..at]),
        None => text.to_string(),
    }
}

/// PostgreSQL's unique and foreign-key refusals: `Key (cols)=(values) …`.
fn key_values(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find(")=(") {
        out.push_str(&rest[..at + 3]);
        let after = &rest[at + 3..];
        // Values may hold `)`: the clause goes on with one of these.
        let end = [
            ") already exists",
            ") is not present",
            ") is still referenced",
            ") conflicts with",
            ") is duplicated",
        ]
        .iter()
        .filter_map(|tail| after.find(tail))
        .min()
        .unwrap_or(after.len());
        out.push_str(HIDDEN);
        rest = &after[end..];
    }
    out.push_str(rest);
    out
}

/// The text between `open` and the next `close` after it replaced, each
/// time; `close` = `"\0"`: to the end of `text`, after a `: `.
fn between(text: &str, open: &str, close: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find(open) {
        let start = at + open.len();
        out.push_str(&rest[..start]);
        let after = &rest[start..];
        if close == "\0" {
            // `invalid input syntax for type integer: "abc"`.
            match after.find(": ") {
                Some(colon) => {
                    out.push_str(&after[..colon + 2]);
                    out.push_str(HIDDEN);
                }
                None => out.push_str(after),
            }
            return out;
        }
        let end = after.find(close).unwrap_or(after.len());
        out.push_str(HIDDEN);
        rest = &after[end..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn database_errors_lose_their_row_values() {
        let cases = [
            (
                r#"new row for relation "people" violates check constraint "ok_status": Failing row contains (45, user45@example.com, SSN-45, ok)."#,
                r#"new row for relation "people" violates check constraint "ok_status": Failing row contains (…)."#,
            ),
            (
                r#"duplicate key value violates unique constraint "u": Key (email, name)=(a@b.c, x) y) already exists."#,
                r#"duplicate key value violates unique constraint "u": Key (email, name)=(…) already exists."#,
            ),
            (
                r#"insert or update on table "c" violates foreign key constraint "f": Key (p)=(SSN-1) is not present in table "p"."#,
                r#"insert or update on table "c" violates foreign key constraint "f": Key (p)=(…) is not present in table "p"."#,
            ),
            (
                "Duplicate entry 'user45@example.com' for key 'people.email'",
                "Duplicate entry '…' for key 'people.email'",
            ),
            (
                "Incorrect integer value: 'SSN-45' for column `t`.`n` at row 1",
                "Incorrect integer value: '…' for column `t`.`n` at row 1",
            ),
            (
                r#"invalid input syntax for type integer: "SSN-45""#,
                "invalid input syntax for type integer: …",
            ),
            (
                "Check constraint 'ok_status' is violated.",
                "Check constraint 'ok_status' is violated.",
            ),
        ];
        for (text, expected) in cases {
            assert_eq!(without_row_values(text), expected);
        }
    }
}
