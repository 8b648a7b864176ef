//! SQL text for MySQL / MariaDB: quoted identifiers and literals, and the
//! key-range predicates chunk reads are made of. Sessions never run with
//! `NO_BACKSLASH_ESCAPES` or `ANSI_QUOTES` (we set `sql_mode` ourselves), so
//! the quoting here is the server's default one.

/// The `sql_mode` of every session: strict, so a value that does not fit
/// is an error instead of a silent truncation, and no zero dates.
pub(super) const SQL_MODE: &str = "STRICT_ALL_TABLES,NO_ZERO_IN_DATE,NO_ZERO_DATE,\
ERROR_FOR_DIVISION_BY_ZERO,NO_AUTO_VALUE_ON_ZERO,NO_ENGINE_SUBSTITUTION";

/// Back-quotes an identifier, doubling back-quotes inside it (mixed case,
/// reserved words and unicode names all survive).
pub(crate) fn quote(ident: &str) -> String {
    let mut out = String::with_capacity(ident.len() + 2);
    out.push('`');
    for c in ident.chars() {
        if c == '`' {
            out.push('`');
        }
        out.push(c);
    }
    out.push('`');
    out
}

/// `a, b, c` with each name quoted.
pub(super) fn quote_list<S: AsRef<str>>(idents: &[S]) -> String {
    idents
        .iter()
        .map(|i| quote(i.as_ref()))
        .collect::<Vec<_>>()
        .join(", ")
}

/// A string literal: quotes doubled and backslashes escaped (the server
/// reads `\` as an escape character in the default `sql_mode`).
pub(super) fn literal(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('\'');
    for c in text.chars() {
        match c {
            '\'' => out.push_str("''"),
            '\\' => out.push_str("\\\\"),
            '\0' => out.push_str("\\0"),
            c => out.push(c),
        }
    }
    out.push('\'');
    out
}

/// Which side of a key range a predicate bounds.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(super) enum Bound {
    /// `key > bound` (a chunk's lower bound, exclusive).
    After,
    /// `key <= bound` (a chunk's upper bound, inclusive).
    UpTo,
}

/// `(k1, k2, …) > (?, ?, …)` (or `<=`) written out as nested comparisons.
///
/// MariaDB's range optimizer does not turn a row-value comparison into an
/// index range (EXPLAIN shows a full index scan), but it does for this
/// expansion, so a chunk read touches only its own part of the primary key.
/// `placeholders[i]` is the parameter text for key column `i` (usually `?`,
/// or a `CAST(? AS …)` where a plain parameter would compare as a double);
/// returns the SQL and, for each `?` in it, the key column it binds.
pub(super) fn key_predicate(
    columns: &[String],
    placeholders: &[String],
    bound: Bound,
) -> (String, Vec<usize>) {
    let mut binds = Vec::new();
    let sql = expand(columns, placeholders, bound, 0, &mut binds);
    (sql, binds)
}

fn expand(
    columns: &[String],
    placeholders: &[String],
    bound: Bound,
    at: usize,
    binds: &mut Vec<usize>,
) -> String {
    let column = &columns[at];
    let param = &placeholders[at];
    let last = at + 1 == columns.len();
    let (strict, loose) = match bound {
        Bound::After => (">", ">="),
        Bound::UpTo => ("<", "<="),
    };
    if last {
        binds.push(at);
        let op = if bound == Bound::After { ">" } else { "<=" };
        return format!("{column} {op} {param}");
    }
    // k1 >= ? AND (k1 > ? OR (k1 = ? AND <rest>)): the leading conjunct is
    // what the optimizer turns into the range.
    binds.extend([at, at, at]);
    let rest = expand(columns, placeholders, bound, at + 1, binds);
    format!(
        "{column} {loose} {param} AND ({column} {strict} {param} OR ({column} = {param} AND {rest}))"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifiers_are_back_quoted() {
        assert_eq!(quote("order"), "`order`");
        assert_eq!(quote("Mixed Case"), "`Mixed Case`");
        assert_eq!(quote("a`b"), "`a``b`");
        assert_eq!(quote("ünïcødé😀"), "`ünïcødé😀`");
        assert_eq!(quote_list(&["a", "b`"]), "`a`, `b```");
    }

    #[test]
    fn literals_escape_quotes_and_backslashes() {
        assert_eq!(literal("it's"), "'it''s'");
        assert_eq!(literal("a\\b"), "'a\\\\b'");
        assert_eq!(literal("nul\0"), "'nul\\0'");
        assert_eq!(literal("😀"), "'😀'");
    }

    #[test]
    fn key_predicates_expand_row_comparisons() {
        let cols = vec!["`a`".to_string()];
        let ph = vec!["?".to_string()];
        assert_eq!(
            key_predicate(&cols, &ph, Bound::After),
            ("`a` > ?".to_string(), vec![0])
        );
        let cols = vec!["`a`".to_string(), "`b`".to_string()];
        let ph = vec!["?".to_string(), "CAST(? AS DECIMAL(5,2))".to_string()];
        let (sql, binds) = key_predicate(&cols, &ph, Bound::UpTo);
        assert_eq!(
            sql,
            "`a` <= ? AND (`a` < ? OR (`a` = ? AND `b` <= CAST(? AS DECIMAL(5,2))))"
        );
        assert_eq!(binds, vec![0, 0, 0, 1]);
        let cols: Vec<String> = ["`a`", "`b`", "`c`"].map(String::from).to_vec();
        let ph = vec!["?".to_string(); 3];
        let (sql, binds) = key_predicate(&cols, &ph, Bound::After);
        assert_eq!(
            sql,
            "`a` >= ? AND (`a` > ? OR (`a` = ? AND `b` >= ? AND (`b` > ? OR (`b` = ? AND `c` > ?))))"
        );
        assert_eq!(binds, vec![0, 0, 0, 1, 1, 1, 2]);
    }
}
