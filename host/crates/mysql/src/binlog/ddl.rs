//! What a binlog QUERY event does, as far as the stream cares: transaction
//! markers, `TRUNCATE` (streamed as a truncate), statements that change a
//! table's shape (which stop the stream: the chosen policy), and row
//! changes logged as statements (which a row stream cannot decode).

/// A table named in a statement; `database` when it was qualified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct TableName {
    pub(super) database: Option<String>,
    pub(super) name: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Statement {
    Begin,
    Commit,
    /// `ROLLBACK` (not `ROLLBACK TO SAVEPOINT`): ends a group whose
    /// non-transactional changes stay.
    Rollback,
    Truncate(TableName),
    /// ALTER / DROP / RENAME / CREATE TABLE: `verb` names it for messages.
    Ddl {
        verb: &'static str,
        tables: Vec<TableName>,
    },
    /// INSERT / UPDATE / DELETE / REPLACE / LOAD DATA logged as a statement
    /// (binlog_format STATEMENT or MIXED); the first table it names.
    Dml(TableName),
    Other,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Token {
    /// A bare word, upper-cased.
    Word(String),
    /// A back-quoted or bare identifier as written.
    Ident(String),
    Punct(char),
    /// A quoted string's content.
    Literal(String),
}

impl Token {
    pub(super) fn is(&self, word: &str) -> bool {
        matches!(self, Token::Word(w) if w == word)
    }
}

/// Splits a statement into tokens, skipping comments (the text of
/// `/*! … */` version comments is kept: the server runs it).
pub(super) fn tokens(sql: &str) -> Vec<Token> {
    let chars: Vec<char> = sql.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let next = chars.get(i + 1).copied();
        match c {
            c if c.is_whitespace() => i += 1,
            '/' if next == Some('*') && chars.get(i + 2) == Some(&'!') => {
                i += 3;
                while i < chars.len() && chars[i].is_ascii_digit() {
                    i += 1;
                }
            }
            '/' if next == Some('*') => {
                i += 2;
                while i < chars.len() && !(chars[i] == '*' && chars.get(i + 1) == Some(&'/')) {
                    i += 1;
                }
                i += 2;
            }
            '*' if next == Some('/') => i += 2,
            '#' => {
                while i < chars.len() && chars[i] != '\n' {
                    i += 1;
                }
            }
            '-' if next == Some('-') && chars.get(i + 2).is_none_or(|c| c.is_whitespace()) => {
                while i < chars.len() && chars[i] != '\n' {
                    i += 1;
                }
            }
            '`' => {
                let mut ident = String::new();
                i += 1;
                while i < chars.len() {
                    if chars[i] == '`' {
                        if chars.get(i + 1) == Some(&'`') {
                            ident.push('`');
                            i += 2;
                            continue;
                        }
                        i += 1;
                        break;
                    }
                    ident.push(chars[i]);
                    i += 1;
                }
                out.push(Token::Ident(ident));
            }
            '\'' | '"' => {
                let quote = c;
                let mut text = String::new();
                i += 1;
                while i < chars.len() {
                    if chars[i] == '\\' {
                        if let Some(&next) = chars.get(i + 1) {
                            text.push(match next {
                                'n' => '\n',
                                't' => '\t',
                                'r' => '\r',
                                '0' => '\0',
                                other => other,
                            });
                        }
                        i += 2;
                        continue;
                    }
                    if chars[i] == quote {
                        if chars.get(i + 1) == Some(&quote) {
                            text.push(quote);
                            i += 2;
                            continue;
                        }
                        i += 1;
                        break;
                    }
                    text.push(chars[i]);
                    i += 1;
                }
                out.push(Token::Literal(text));
            }
            c if c.is_alphanumeric() || c == '_' || c == '$' => {
                let start = i;
                while i < chars.len()
                    && (chars[i].is_alphanumeric() || chars[i] == '_' || chars[i] == '$')
                {
                    i += 1;
                }
                let word: String = chars[start..i].iter().collect();
                // A bare word may be a keyword or a name: both forms go,
                // the parser takes the one it expects.
                out.push(Token::Word(word.to_uppercase()));
                out.push(Token::Ident(word));
            }
            c => {
                out.push(Token::Punct(c));
                i += 1;
            }
        }
    }
    out
}

/// A cursor over tokens, where each bare word is followed by its
/// identifier form (see `tokens`).
struct Parser {
    tokens: Vec<Token>,
    at: usize,
}

impl Parser {
    fn peek(&self) -> Option<&Token> {
        self.tokens.get(self.at)
    }

    /// Takes the keyword `word` if it comes next.
    fn keyword(&mut self, word: &str) -> bool {
        if self.peek().is_some_and(|t| t.is(word)) {
            self.at += 2;
            true
        } else {
            false
        }
    }

    /// Takes the keywords `words` if they all come next, in order.
    fn phrase(&mut self, words: &[&str]) {
        let at = self.at;
        if !words.iter().all(|w| self.keyword(w)) {
            self.at = at;
        }
    }

    fn punct(&mut self, c: char) -> bool {
        if self.peek() == Some(&Token::Punct(c)) {
            self.at += 1;
            true
        } else {
            false
        }
    }

    fn ident(&mut self) -> Option<String> {
        match self.tokens.get(self.at)? {
            Token::Word(_) => {
                let Some(Token::Ident(name)) = self.tokens.get(self.at + 1) else {
                    return None;
                };
                self.at += 2;
                Some(name.clone())
            }
            Token::Ident(name) => {
                self.at += 1;
                Some(name.clone())
            }
            _ => None,
        }
    }

    /// `name` or `database.name`.
    fn table(&mut self) -> Option<TableName> {
        let first = self.ident()?;
        if self.punct('.') {
            let name = self.ident()?;
            return Some(TableName {
                database: Some(first),
                name,
            });
        }
        Some(TableName {
            database: None,
            name: first,
        })
    }

    /// Steps over one token (a bare word with its identifier form).
    fn skip(&mut self) {
        self.at += match self.peek() {
            Some(Token::Word(_)) => 2,
            _ => 1,
        };
    }

    fn skip_modifiers(&mut self, words: &[&str]) {
        while words.iter().any(|w| self.keyword(w)) {}
    }
}

/// Classifies one QUERY event statement.
pub(super) fn classify(sql: &str) -> Statement {
    let mut p = Parser {
        tokens: tokens(sql),
        at: 0,
    };
    let Some(Token::Word(first)) = p.peek().cloned() else {
        return Statement::Other;
    };
    p.at += 2;
    match first.as_str() {
        "BEGIN" => Statement::Begin,
        "COMMIT" => Statement::Commit,
        "ROLLBACK" if p.peek().is_none() || p.keyword("WORK") => Statement::Rollback,
        // An XA transaction's branch: it ends at its prepare event, or at
        // a one-phase `XA COMMIT`.
        "XA" if p.keyword("START") || p.keyword("BEGIN") => Statement::Begin,
        "XA" if p.keyword("COMMIT") => Statement::Commit,
        "XA" if p.keyword("ROLLBACK") => Statement::Rollback,
        "TRUNCATE" => {
            p.keyword("TABLE");
            p.table().map_or(Statement::Other, Statement::Truncate)
        }
        "ALTER" => {
            p.skip_modifiers(&["ONLINE", "IGNORE"]);
            if !p.keyword("TABLE") {
                return Statement::Other;
            }
            p.phrase(&["IF", "EXISTS"]);
            ddl("ALTER TABLE", p.table().into_iter().collect())
        }
        "DROP" => {
            let temporary = p.keyword("TEMPORARY");
            if !p.keyword("TABLE") && !p.keyword("TABLES") || temporary {
                return Statement::Other;
            }
            p.phrase(&["IF", "EXISTS"]);
            ddl("DROP TABLE", list(&mut p, None))
        }
        "RENAME" => {
            if !p.keyword("TABLE") && !p.keyword("TABLES") {
                return Statement::Other;
            }
            ddl("RENAME TABLE", list(&mut p, Some("TO")))
        }
        "CREATE" => {
            p.phrase(&["OR", "REPLACE"]);
            if p.keyword("TEMPORARY") || !p.keyword("TABLE") {
                return Statement::Other;
            }
            p.phrase(&["IF", "NOT", "EXISTS"]);
            ddl("CREATE TABLE", p.table().into_iter().collect())
        }
        "INSERT" | "REPLACE" => {
            p.skip_modifiers(&["LOW_PRIORITY", "DELAYED", "HIGH_PRIORITY", "IGNORE", "INTO"]);
            p.table().map_or(Statement::Other, Statement::Dml)
        }
        "UPDATE" => {
            p.skip_modifiers(&["LOW_PRIORITY", "IGNORE"]);
            p.table().map_or(Statement::Other, Statement::Dml)
        }
        "DELETE" => {
            p.skip_modifiers(&["LOW_PRIORITY", "QUICK", "IGNORE", "FROM"]);
            p.table().map_or(Statement::Other, Statement::Dml)
        }
        "LOAD" => {
            while p.peek().is_some() && !p.keyword("INTO") {
                p.skip();
            }
            p.keyword("TABLE");
            p.table().map_or(Statement::Other, Statement::Dml)
        }
        _ => Statement::Other,
    }
}

fn ddl(verb: &'static str, tables: Vec<TableName>) -> Statement {
    if tables.is_empty() {
        Statement::Other
    } else {
        Statement::Ddl { verb, tables }
    }
}

/// `a, b, c` (or `a TO b, c TO d` with `pair = Some("TO")`).
fn list(p: &mut Parser, pair: Option<&str>) -> Vec<TableName> {
    let mut tables = Vec::new();
    while let Some(table) = p.table() {
        tables.push(table);
        if let Some(word) = pair
            && p.keyword(word)
            && let Some(table) = p.table()
        {
            tables.push(table);
        }
        if !p.punct(',') {
            break;
        }
    }
    tables
}

/// What an `ALTER TABLE` renames: columns (`CHANGE old new …`, `RENAME
/// COLUMN old TO new`) and the table itself (`RENAME [TO|AS] name`). Other
/// changes are read from the table's catalog after the statement.
#[derive(Debug, Default, PartialEq, Eq)]
pub(super) struct AlterRenames {
    pub(super) columns: Vec<(String, String)>,
    pub(super) table: Option<TableName>,
}

pub(super) fn alter_renames(sql: &str) -> AlterRenames {
    let mut out = AlterRenames::default();
    let mut p = Parser {
        tokens: tokens(sql),
        at: 0,
    };
    if !p.keyword("ALTER") {
        return out;
    }
    p.skip_modifiers(&["ONLINE", "IGNORE"]);
    if !p.keyword("TABLE") {
        return out;
    }
    p.phrase(&["IF", "EXISTS"]);
    if p.table().is_none() {
        return out;
    }
    loop {
        if p.keyword("CHANGE") {
            p.keyword("COLUMN");
            p.phrase(&["IF", "EXISTS"]);
            if let (Some(old), Some(new)) = (p.ident(), p.ident())
                && old != new
            {
                out.columns.push((old, new));
            }
        } else if p.keyword("RENAME") {
            if p.keyword("COLUMN") {
                if let Some(old) = p.ident()
                    && p.keyword("TO")
                    && let Some(new) = p.ident()
                {
                    out.columns.push((old, new));
                }
            } else if !(p.keyword("INDEX") || p.keyword("KEY")) {
                let _ = p.keyword("TO") || p.keyword("AS");
                out.table = p.table();
            }
        }
        // On to the next comma outside parentheses.
        let mut depth = 0usize;
        loop {
            match p.peek() {
                None => return out,
                Some(Token::Punct('(')) => depth += 1,
                Some(Token::Punct(')')) => depth = depth.saturating_sub(1),
                Some(Token::Punct(',')) if depth == 0 => {
                    p.at += 1;
                    break;
                }
                _ => {}
            }
            p.skip();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alter_table_renames() {
        assert_eq!(
            alter_renames(
                "ALTER TABLE `t` ADD COLUMN c int DEFAULT (1 + 2), CHANGE COLUMN `a` `b` varchar(10), \
                 RENAME COLUMN x TO y, MODIFY z bigint, CHANGE q q int, RENAME INDEX i TO j"
            ),
            AlterRenames {
                columns: vec![("a".into(), "b".into()), ("x".into(), "y".into())],
                table: None
            }
        );
        assert_eq!(
            alter_renames("alter table a rename to db.b").table,
            Some(t(Some("db"), "b"))
        );
        assert_eq!(
            alter_renames("ALTER TABLE a ADD COLUMN b int"),
            AlterRenames::default()
        );
    }

    fn t(database: Option<&str>, name: &str) -> TableName {
        TableName {
            database: database.map(str::to_string),
            name: name.to_string(),
        }
    }

    #[test]
    fn transaction_markers() {
        assert_eq!(classify("BEGIN"), Statement::Begin);
        assert_eq!(classify("COMMIT"), Statement::Commit);
        assert_eq!(classify("ROLLBACK"), Statement::Rollback);
        assert_eq!(classify("ROLLBACK TO SAVEPOINT `a`"), Statement::Other);
        assert_eq!(classify("SAVEPOINT `a`"), Statement::Other);
        assert_eq!(classify("XA START X'31',X'',1"), Statement::Begin);
        assert_eq!(classify("XA END X'31',X'',1"), Statement::Other);
        assert_eq!(
            classify("XA COMMIT X'31',X'',1 ONE PHASE"),
            Statement::Commit
        );
    }

    #[test]
    fn truncates_name_their_table() {
        assert_eq!(
            classify("truncate table `Order Items`"),
            Statement::Truncate(t(None, "Order Items"))
        );
        assert_eq!(
            classify("TRUNCATE shop.orders"),
            Statement::Truncate(t(Some("shop"), "orders"))
        );
    }

    #[test]
    fn shape_changes_name_every_table() {
        assert_eq!(
            classify("/* note */ ALTER ONLINE TABLE `a``b` ADD COLUMN c int"),
            Statement::Ddl {
                verb: "ALTER TABLE",
                tables: vec![t(None, "a`b")]
            }
        );
        assert_eq!(
            classify("DROP TABLE IF EXISTS `x`,`db`.`y` /* generated by server */"),
            Statement::Ddl {
                verb: "DROP TABLE",
                tables: vec![t(None, "x"), t(Some("db"), "y")]
            }
        );
        assert_eq!(
            classify("RENAME TABLE a TO b, c TO d"),
            Statement::Ddl {
                verb: "RENAME TABLE",
                tables: vec![t(None, "a"), t(None, "b"), t(None, "c"), t(None, "d")]
            }
        );
        assert_eq!(
            classify("CREATE OR REPLACE TABLE IF NOT EXISTS Items (id int)"),
            Statement::Ddl {
                verb: "CREATE TABLE",
                tables: vec![t(None, "Items")]
            }
        );
        assert_eq!(classify("DROP TEMPORARY TABLE t"), Statement::Other);
        assert_eq!(
            classify("CREATE TEMPORARY TABLE t (a int)"),
            Statement::Other
        );
        assert_eq!(classify("CREATE INDEX i ON t (a)"), Statement::Other);
        assert_eq!(
            classify("ALTER DATABASE d CHARACTER SET utf8mb4"),
            Statement::Other
        );
        assert_eq!(
            classify("/*!40000 ALTER TABLE `t` DISABLE KEYS */"),
            Statement::Ddl {
                verb: "ALTER TABLE",
                tables: vec![t(None, "t")]
            }
        );
    }

    #[test]
    fn statements_that_change_rows() {
        assert_eq!(
            classify("insert ignore into `t` values (1, 'a;b')"),
            Statement::Dml(t(None, "t"))
        );
        assert_eq!(
            classify("UPDATE LOW_PRIORITY d.t SET a = 1"),
            Statement::Dml(t(Some("d"), "t"))
        );
        assert_eq!(
            classify("DELETE QUICK FROM t WHERE a = '--'"),
            Statement::Dml(t(None, "t"))
        );
        assert_eq!(
            classify("LOAD DATA LOCAL INFILE 'x' INTO TABLE t"),
            Statement::Dml(t(None, "t"))
        );
        assert_eq!(classify("GRANT SELECT ON *.* TO u"), Statement::Other);
        assert_eq!(classify(""), Statement::Other);
    }
}
