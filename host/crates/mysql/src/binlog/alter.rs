//! An `ALTER TABLE` statement of the binlog, applied to the stream's own
//! picture of the table: columns added, dropped, renamed, retyped and moved,
//! defaults set, the primary key replaced, the table renamed. The catalog
//! cannot stand in for this: by the time the stream reads the statement,
//! the source may have changed the table again (or the stream replays it
//! after a restart), and the rows in between have the shape the statement
//! made. Index, constraint and table-option clauses change no row and are
//! passed over; any other clause is refused, and the caller falls back to
//! the catalog.

use super::super::server::Server;
use super::super::types::{model_type, parse_default};
use super::columns::SourceColumn;
use super::ddl::{Token, tokens};
use dmp_model::{Column, Identity, SqlExpr, TableSchema};

/// What the statement did besides reshaping the columns in place.
#[derive(Debug, Default, PartialEq, Eq)]
pub(super) struct Altered {
    pub(super) renamed: Vec<(String, String)>,
    pub(super) dropped: Vec<String>,
    /// The table's new name.
    pub(super) table: Option<String>,
}

/// Applies `sql` to `schema` and `source` (the binlog's view of the same
/// columns, in the same order). On an error nothing is changed.
pub(super) fn apply(
    sql: &str,
    server: Server,
    schema: &mut TableSchema,
    source: &mut Vec<SourceColumn>,
) -> Result<Altered, String> {
    let mut table = Table {
        schema: schema.clone(),
        source: source.clone(),
        server,
        altered: Altered::default(),
    };
    let mut p = Cursor {
        tokens: tokens(sql),
        at: 0,
    };
    if !p.keyword("ALTER") {
        return Err("not an ALTER statement".into());
    }
    p.modifiers(&["ONLINE", "OFFLINE", "IGNORE"]);
    if !p.keyword("TABLE") {
        return Err("not an ALTER TABLE statement".into());
    }
    p.phrase(&["IF", "EXISTS"]);
    p.table().ok_or("no table name")?;
    // WAIT n / NOWAIT (MariaDB)
    if p.keyword("WAIT") {
        p.skip();
    }
    p.keyword("NOWAIT");
    while p.peek().is_some() {
        table.clause(&mut p)?;
        if !p.punct(',') && p.peek().is_some() {
            return Err(format!("unexpected {:?}", p.peek()));
        }
    }
    *schema = table.schema;
    *source = table.source;
    Ok(table.altered)
}

struct Table {
    schema: TableSchema,
    source: Vec<SourceColumn>,
    server: Server,
    altered: Altered,
}

/// Clauses that change no row's shape.
const IGNORED_ADD: &[&str] = &[
    "INDEX",
    "KEY",
    "UNIQUE",
    "FULLTEXT",
    "SPATIAL",
    "CONSTRAINT",
    "FOREIGN",
    "CHECK",
    "PERIOD",
    "PARTITION",
    "SYSTEM",
];
const IGNORED_DROP: &[&str] = &[
    "INDEX",
    "KEY",
    "FOREIGN",
    "CONSTRAINT",
    "CHECK",
    "PARTITION",
    "SYSTEM",
];
const TABLE_OPTIONS: &[&str] = &[
    "ENGINE",
    "AUTO_INCREMENT",
    "COMMENT",
    "DEFAULT",
    "CHARSET",
    "CHARACTER",
    "COLLATE",
    "ALGORITHM",
    "LOCK",
    "FORCE",
    "ROW_FORMAT",
    "KEY_BLOCK_SIZE",
    "STATS_PERSISTENT",
    "STATS_AUTO_RECALC",
    "STATS_SAMPLE_PAGES",
    "PACK_KEYS",
    "CHECKSUM",
    "DELAY_KEY_WRITE",
    "MAX_ROWS",
    "MIN_ROWS",
    "AVG_ROW_LENGTH",
    "ENABLE",
    "DISABLE",
    "ORDER",
    "PAGE_CHECKSUM",
    "TRANSACTIONAL",
    "ENCRYPTED",
    "ENCRYPTION_KEY_ID",
    "WITH",
    "WITHOUT",
    "REMOVE",
    "COALESCE",
    "REORGANIZE",
    "ANALYZE",
    "CHECK",
    "OPTIMIZE",
    "REBUILD",
    "REPAIR",
    "TRUNCATE",
    "EXCHANGE",
    "DISCARD",
    "IMPORT",
    "SECONDARY_ENGINE",
];

impl Table {
    fn clause(&mut self, p: &mut Cursor) -> Result<(), String> {
        if p.keyword("ADD") {
            if p.peek_any(IGNORED_ADD) || p.peek_phrase(&["PRIMARY", "KEY"]) {
                return self.add_key(p);
            }
            p.keyword("COLUMN");
            p.phrase(&["IF", "NOT", "EXISTS"]);
            if p.punct('(') {
                loop {
                    let name = p.ident().ok_or("a column name")?;
                    self.add(p, name)?;
                    if !p.punct(',') {
                        break;
                    }
                }
                return p.expect(')');
            }
            let name = p.ident().ok_or("a column name")?;
            return self.add(p, name);
        }
        if p.keyword("DROP") {
            if p.peek_phrase(&["PRIMARY", "KEY"]) {
                self.schema.primary_key.clear();
                return p.rest_of_clause();
            }
            if p.peek_any(IGNORED_DROP) {
                return p.rest_of_clause();
            }
            p.keyword("COLUMN");
            p.phrase(&["IF", "EXISTS"]);
            let name = p.ident().ok_or("a column name")?;
            self.drop(&name);
            p.keyword("RESTRICT");
            p.keyword("CASCADE");
            return Ok(());
        }
        if p.keyword("MODIFY") {
            p.keyword("COLUMN");
            p.phrase(&["IF", "EXISTS"]);
            let name = p.ident().ok_or("a column name")?;
            return self.replace(p, &name, name.clone());
        }
        if p.keyword("CHANGE") {
            p.keyword("COLUMN");
            p.phrase(&["IF", "EXISTS"]);
            let old = p.ident().ok_or("a column name")?;
            let new = p.ident().ok_or("a new column name")?;
            if old != new {
                self.altered.renamed.push((old.clone(), new.clone()));
            }
            return self.replace(p, &old, new);
        }
        if p.keyword("RENAME") {
            if p.keyword("COLUMN") {
                let old = p.ident().ok_or("a column name")?;
                if !p.keyword("TO") {
                    return Err("RENAME COLUMN without TO".into());
                }
                let new = p.ident().ok_or("a new column name")?;
                self.rename(&old, &new)?;
                return Ok(());
            }
            if p.keyword("INDEX") || p.keyword("KEY") {
                return p.rest_of_clause();
            }
            let _ = p.keyword("TO") || p.keyword("AS");
            let name = p.table().ok_or("a new table name")?;
            self.schema.name.clone_from(&name);
            self.altered.table = Some(name);
            return Ok(());
        }
        if p.keyword("ALTER") {
            if p.peek_any(&["INDEX", "KEY", "CONSTRAINT", "CHECK"]) {
                return p.rest_of_clause();
            }
            p.keyword("COLUMN");
            let name = p.ident().ok_or("a column name")?;
            let at = self.index(&name)?;
            if p.keyword("DROP") && p.keyword("DEFAULT") {
                self.schema.columns[at].default = None;
                self.schema.columns[at].default_expr = None;
                return Ok(());
            }
            if p.keyword("SET") && p.keyword("DEFAULT") {
                let (raw, expr) = p.default_value()?;
                let column = &mut self.schema.columns[at];
                set_default(column, raw.as_deref(), expr, self.server);
                return Ok(());
            }
            return p.rest_of_clause();
        }
        if p.peek_any(TABLE_OPTIONS) || p.peek_any(&["CONVERT"]) {
            return p.rest_of_clause();
        }
        Err(format!("clause {:?} is not understood", p.peek()))
    }

    fn index(&self, name: &str) -> Result<usize, String> {
        self.schema
            .columns
            .iter()
            .position(|c| c.name.eq_ignore_ascii_case(name))
            .ok_or_else(|| format!("column {name} is not known"))
    }

    fn add_key(&mut self, p: &mut Cursor) -> Result<(), String> {
        if p.keyword("CONSTRAINT") {
            // CONSTRAINT [name] PRIMARY KEY …
            if !p.peek_phrase(&["PRIMARY", "KEY"]) {
                p.ident();
            }
        }
        if p.keyword("PRIMARY") && p.keyword("KEY") {
            p.modifiers(&["USING", "BTREE", "HASH"]);
            p.expect('(')?;
            let mut key = Vec::new();
            loop {
                key.push(p.ident().ok_or("a key column")?);
                if p.punct('(') {
                    p.skip_to(')');
                    p.expect(')')?;
                }
                p.keyword("ASC");
                p.keyword("DESC");
                if !p.punct(',') {
                    break;
                }
            }
            p.expect(')')?;
            for k in &key {
                let at = self.index(k)?;
                self.schema.columns[at].nullable = false;
            }
            self.schema.primary_key = key;
        }
        p.rest_of_clause()
    }

    fn add(&mut self, p: &mut Cursor, name: String) -> Result<(), String> {
        let (column, source, position) = definition(p, name, self.server)?;
        let at = match position {
            Position::Last => self.schema.columns.len(),
            Position::First => 0,
            Position::After(after) => self.index(&after)? + 1,
        };
        if self.index(&column.name).is_ok() {
            return Err(format!("column {} exists already", column.name));
        }
        self.schema.columns.insert(at, column);
        self.source.insert(at.min(self.source.len()), source);
        Ok(())
    }

    fn replace(&mut self, p: &mut Cursor, old: &str, new: String) -> Result<(), String> {
        let at = self.index(old)?;
        let (mut column, mut source, position) = definition(p, new.clone(), self.server)?;
        let before = self.schema.columns.remove(at);
        if at < self.source.len() {
            self.source.remove(at);
        }
        column.comment = column.comment.or(before.comment);
        source.name.clone_from(&new);
        let to = match position {
            Position::Last => at,
            Position::First => 0,
            Position::After(after) => self.index(&after)? + 1,
        };
        self.schema.columns.insert(to, column);
        self.source.insert(to.min(self.source.len()), source);
        for k in &mut self.schema.primary_key {
            if k.eq_ignore_ascii_case(old) {
                k.clone_from(&new);
            }
        }
        Ok(())
    }

    fn rename(&mut self, old: &str, new: &str) -> Result<(), String> {
        let at = self.index(old)?;
        self.schema.columns[at].name = new.to_string();
        if let Some(source) = self.source.get_mut(at) {
            source.name = new.to_string();
        }
        for k in &mut self.schema.primary_key {
            if k.eq_ignore_ascii_case(old) {
                *k = new.to_string();
            }
        }
        self.altered
            .renamed
            .push((old.to_string(), new.to_string()));
        Ok(())
    }

    fn drop(&mut self, name: &str) {
        if let Ok(at) = self.index(name) {
            let gone = self.schema.columns.remove(at);
            if at < self.source.len() {
                self.source.remove(at);
            }
            self.schema.primary_key.retain(|k| *k != gone.name);
            self.altered.dropped.push(gone.name);
        }
    }
}

enum Position {
    Last,
    First,
    After(String),
}

/// A column definition: the model column, its binlog view, and where it
/// goes.
fn definition(
    p: &mut Cursor,
    name: String,
    server: Server,
) -> Result<(Column, SourceColumn, Position), String> {
    let Some(Token::Word(type_name)) = p.peek().cloned() else {
        return Err(format!("column {name}: no type"));
    };
    p.skip();
    let data_type = type_name.to_ascii_lowercase();
    let mut column_type = data_type.clone();
    if p.punct('(') {
        let mut args = Vec::new();
        while !p.punct(')') {
            match p.peek().cloned() {
                Some(Token::Literal(s)) => {
                    args.push(format!("'{}'", s.replace('\'', "''")));
                    p.at += 1;
                }
                Some(Token::Word(w)) => {
                    args.push(w);
                    p.skip();
                }
                Some(Token::Punct(',')) => p.at += 1,
                _ => return Err(format!("column {name}: unreadable type arguments")),
            }
        }
        column_type = format!("{data_type}({})", args.join(","));
    }
    let mut nullable = true;
    let mut raw_default: Option<String> = None;
    let mut expr_default: Option<String> = None;
    let mut on_update = None;
    let mut auto_increment = false;
    let mut comment = None;
    let mut charset = None;
    let mut primary = false;
    let mut position = Position::Last;
    loop {
        if p.keyword("UNSIGNED") {
            column_type.push_str(" unsigned");
        } else if p.keyword("ZEROFILL") || p.keyword("SIGNED") || p.keyword("BINARY") {
        } else if p.keyword("NOT") {
            p.keyword("NULL");
            nullable = false;
        } else if p.keyword("NULL") {
            nullable = true;
        } else if p.keyword("DEFAULT") {
            (raw_default, expr_default) = p.default_value()?;
        } else if p.keyword("ON") {
            p.keyword("UPDATE");
            on_update = Some(p.function()?);
        } else if p.keyword("AUTO_INCREMENT") {
            auto_increment = true;
        } else if p.keyword("COMMENT") {
            if let Some(Token::Literal(text)) = p.peek().cloned() {
                comment = Some(text);
                p.at += 1;
            }
        } else if p.keyword("CHARACTER") || p.keyword("CHARSET") {
            p.keyword("SET");
            charset = p.ident();
        } else if p.keyword("COLLATE") {
            p.ident();
        } else if p.keyword("PRIMARY") {
            p.keyword("KEY");
            primary = true;
            nullable = false;
        } else if p.keyword("UNIQUE") {
            p.keyword("KEY");
        } else if p.keyword("KEY") || p.keyword("INVISIBLE") || p.keyword("VISIBLE") {
        } else if p.keyword("CHECK") || p.keyword("GENERATED") || p.keyword("AS") {
            p.phrase(&["ALWAYS", "AS"]);
            p.expect('(')?;
            p.skip_to(')');
            p.expect(')')?;
            p.modifiers(&["STORED", "VIRTUAL", "PERSISTENT"]);
        } else if p.keyword("REFERENCES") {
            p.rest_of_clause_keep_position();
        } else if p.keyword("COLUMN_FORMAT") || p.keyword("STORAGE") {
            p.skip();
        } else if p.keyword("FIRST") {
            position = Position::First;
        } else if p.keyword("AFTER") {
            position = Position::After(p.ident().ok_or("AFTER without a column")?);
        } else {
            break;
        }
    }
    let json = data_type == "json";
    let mapped = model_type(&data_type, &column_type, json);
    let mut column = Column::new(name.clone(), mapped.data_type);
    column.nullable = nullable;
    column.enum_values = mapped.enum_values;
    column.source_type = Some(column_type.clone());
    column.comment = comment;
    if auto_increment {
        column.identity = Some(Identity {
            always: false,
            next: None,
            sequence: None,
        });
    }
    set_default(&mut column, raw_default.as_deref(), expr_default, server);
    column.on_update = on_update.map(|sql| SqlExpr::new(server.dialect(), sql));
    let _ = primary;
    let mut source = SourceColumn::new(&name, &data_type, &column_type);
    source.charset = charset.map(|c| c.to_ascii_lowercase());
    Ok((column, source, position))
}

fn set_default(column: &mut Column, raw: Option<&str>, expr: Option<String>, server: Server) {
    column.default = raw.and_then(|raw| {
        parse_default(
            Some(raw),
            true,
            "",
            &column.data_type,
            super::super::types::Wire::Other,
        )
    });
    column.default_expr = expr.map(|sql| SqlExpr::new(server.dialect(), sql));
}

/// A cursor over tokens, where each bare word is followed by its identifier
/// form (see `ddl::tokens`).
struct Cursor {
    tokens: Vec<Token>,
    at: usize,
}

impl Cursor {
    fn peek(&self) -> Option<&Token> {
        self.tokens.get(self.at)
    }

    fn keyword(&mut self, word: &str) -> bool {
        if self.peek().is_some_and(|t| t.is(word)) {
            self.at += 2;
            true
        } else {
            false
        }
    }

    fn peek_any(&self, words: &[&str]) -> bool {
        self.peek().is_some_and(|t| words.iter().any(|w| t.is(w)))
    }

    fn peek_phrase(&self, words: &[&str]) -> bool {
        words
            .iter()
            .enumerate()
            .all(|(i, w)| self.tokens.get(self.at + 2 * i).is_some_and(|t| t.is(w)))
    }

    fn phrase(&mut self, words: &[&str]) {
        if self.peek_phrase(words) {
            self.at += 2 * words.len();
        }
    }

    fn modifiers(&mut self, words: &[&str]) {
        while words.iter().any(|w| self.keyword(w)) {}
    }

    fn punct(&mut self, c: char) -> bool {
        if self.peek() == Some(&Token::Punct(c)) {
            self.at += 1;
            true
        } else {
            false
        }
    }

    fn expect(&mut self, c: char) -> Result<(), String> {
        if self.punct(c) {
            Ok(())
        } else {
            Err(format!("expected `{c}`, found {:?}", self.peek()))
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

    /// `name` or `database.name`: the name.
    fn table(&mut self) -> Option<String> {
        let first = self.ident()?;
        if self.punct('.') {
            return self.ident();
        }
        Some(first)
    }

    fn skip(&mut self) {
        self.at += match self.peek() {
            Some(Token::Word(_)) => 2,
            _ => 1,
        };
    }

    /// Steps to the next `close` at this depth (not over it).
    fn skip_to(&mut self, close: char) {
        let mut depth = 0usize;
        while let Some(t) = self.peek() {
            match t {
                Token::Punct('(') => depth += 1,
                Token::Punct(c) if *c == close && depth == 0 => return,
                Token::Punct(')') => depth = depth.saturating_sub(1),
                _ => {}
            }
            self.skip();
        }
    }

    /// Steps to the comma that ends this clause (not over it).
    fn rest_of_clause(&mut self) -> Result<(), String> {
        self.rest_of_clause_keep_position();
        Ok(())
    }

    fn rest_of_clause_keep_position(&mut self) {
        let mut depth = 0usize;
        while let Some(t) = self.peek() {
            match t {
                Token::Punct('(') => depth += 1,
                Token::Punct(')') => depth = depth.saturating_sub(1),
                Token::Punct(',') if depth == 0 => return,
                _ => {}
            }
            self.skip();
        }
    }

    /// A DEFAULT's value: a constant as MariaDB's catalog shows it
    /// (`'text'`, `-1.5`, `NULL`), or an expression's text.
    fn default_value(&mut self) -> Result<(Option<String>, Option<String>), String> {
        match self.peek().cloned() {
            Some(Token::Literal(text)) => {
                self.at += 1;
                Ok((Some(format!("'{}'", text.replace('\'', "''"))), None))
            }
            Some(Token::Punct('-' | '+')) => {
                let sign = if self.punct('-') {
                    "-"
                } else {
                    self.at += 1;
                    ""
                };
                match self.peek().cloned() {
                    Some(Token::Word(n)) => {
                        self.skip();
                        Ok((Some(format!("{sign}{}", number(self, n))), None))
                    }
                    _ => Err("a sign without a number".into()),
                }
            }
            Some(Token::Punct('(')) => {
                let start = self.at;
                self.at += 1;
                self.skip_to(')');
                self.expect(')')?;
                Ok((None, Some(render(&self.tokens[start..self.at]))))
            }
            Some(Token::Word(w)) if w == "NULL" => {
                self.skip();
                Ok((None, None))
            }
            Some(Token::Word(w)) if w.chars().next().is_some_and(|c| c.is_ascii_digit()) => {
                self.skip();
                Ok((Some(number(self, w)), None))
            }
            Some(Token::Word(_)) => Ok((None, Some(self.function()?))),
            other => Err(format!("DEFAULT {other:?} is not understood")),
        }
    }

    /// `current_timestamp`, `current_timestamp(6)`, `uuid()`: its text.
    fn function(&mut self) -> Result<String, String> {
        let start = self.at;
        let Some(Token::Word(_)) = self.peek() else {
            return Err("a function name".into());
        };
        self.skip();
        if self.punct('(') {
            self.skip_to(')');
            self.expect(')')?;
        }
        Ok(render(&self.tokens[start..self.at]))
    }
}

/// A number whose fraction the tokenizer split off (`4.99`: `4`, `.`, `99`).
fn number(p: &mut Cursor, whole: String) -> String {
    if p.peek() == Some(&Token::Punct('.'))
        && let Some(Token::Word(fraction)) = p.tokens.get(p.at + 1).cloned()
    {
        p.at += 1;
        p.skip();
        return format!("{whole}.{fraction}");
    }
    whole
}

/// Tokens back to SQL text (identifiers back-quoted, literals quoted).
fn render(tokens: &[Token]) -> String {
    let mut out = String::new();
    let mut skip_ident = false;
    for t in tokens {
        match t {
            Token::Word(w) => {
                out.push_str(&w.to_ascii_lowercase());
                skip_ident = true;
                continue;
            }
            Token::Ident(_) if skip_ident => {}
            Token::Ident(name) => out.push_str(&format!("`{}`", name.replace('`', "``"))),
            Token::Punct(c) => out.push(*c),
            Token::Literal(s) => out.push_str(&format!("'{}'", s.replace('\'', "''"))),
        }
        skip_ident = false;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use dmp_model::{DataType, Func, Value};

    fn table() -> (TableSchema, Vec<SourceColumn>) {
        let schema = TableSchema {
            name: "t".into(),
            columns: vec![
                Column::new("id", DataType::Int32),
                Column::new("a", DataType::Text { max_len: Some(10) }),
            ],
            primary_key: vec!["id".into()],
            ..Default::default()
        };
        let source = vec![
            SourceColumn::new("id", "int", "int(11)"),
            SourceColumn::new("a", "varchar", "varchar(10)"),
        ];
        (schema, source)
    }

    fn server() -> Server {
        Server::for_tests(true, (10, 11, 0))
    }

    fn names(schema: &TableSchema) -> Vec<&str> {
        schema.columns.iter().map(|c| c.name.as_str()).collect()
    }

    #[test]
    fn columns_are_added_moved_renamed_and_dropped() {
        let (mut schema, mut source) = table();
        let altered = apply(
            "ALTER TABLE `t` ADD COLUMN b int DEFAULT 7, ADD c varchar(20) NOT NULL DEFAULT 'it''s' AFTER id, \
             ADD COLUMN IF NOT EXISTS (d decimal(10,2) DEFAULT -4.99, e enum('x','y') DEFAULT 'x'), \
             ADD INDEX i (a), MODIFY a varchar(40) FIRST, ALGORITHM=INSTANT",
            server(),
            &mut schema,
            &mut source,
        )
        .expect("applies");
        assert_eq!(altered, Altered::default());
        assert_eq!(names(&schema), ["a", "id", "c", "b", "d", "e"]);
        assert_eq!(
            schema.columns[0].data_type,
            DataType::Text { max_len: Some(40) }
        );
        assert_eq!(schema.columns[3].default, Some(Value::Int(7)));
        assert_eq!(schema.columns[2].default, Some(Value::Text("it's".into())));
        assert!(!schema.columns[2].nullable);
        assert_eq!(
            schema.columns[4].default,
            Some(Value::Decimal("-4.99".parse().unwrap()))
        );
        assert_eq!(
            schema.columns[5].enum_values,
            Some(vec!["x".into(), "y".into()])
        );
        let source_names: Vec<&str> = source.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(source_names, names(&schema));

        let altered = apply(
            "ALTER TABLE t CHANGE COLUMN b bb bigint, RENAME COLUMN c TO cc, DROP COLUMN d, \
             ALTER COLUMN e SET DEFAULT 'y', ADD COLUMN at datetime(6) DEFAULT current_timestamp(6) \
             ON UPDATE current_timestamp(6), RENAME TO t2",
            server(),
            &mut schema,
            &mut source,
        )
        .expect("applies");
        assert_eq!(
            altered.renamed,
            vec![
                ("b".to_string(), "bb".to_string()),
                ("c".into(), "cc".into())
            ]
        );
        assert_eq!(altered.dropped, vec!["d".to_string()]);
        assert_eq!(altered.table.as_deref(), Some("t2"));
        assert_eq!(names(&schema), ["a", "id", "cc", "bb", "e", "at"]);
        assert_eq!(schema.columns[3].data_type, DataType::Int64);
        let at = &schema.columns[5];
        assert_eq!(
            at.default_expr
                .as_ref()
                .and_then(|e| e.portable.as_ref()?.as_call()),
            Some(Func::CurrentTimestamp)
        );
        assert!(at.on_update.is_some());
        assert_eq!(schema.name, "t2");
    }

    #[test]
    fn what_is_not_understood_changes_nothing() {
        let (mut schema, mut source) = table();
        let before = schema.clone();
        assert!(
            apply(
                "ALTER TABLE t ADD COLUMN b int, FROBNICATE",
                server(),
                &mut schema,
                &mut source
            )
            .is_err()
        );
        assert_eq!(schema, before);
        assert!(
            apply(
                "ALTER TABLE t DROP COLUMN nope",
                server(),
                &mut schema,
                &mut source
            )
            .is_ok()
        );
    }
}
