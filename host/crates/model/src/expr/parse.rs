//! Reads an expression as a catalog prints it (`pg_get_expr`,
//! `pg_get_constraintdef`, MySQL's `CHECK_CLAUSE` and `COLUMN_DEFAULT`,
//! SQLite's `dflt_value`) into its portable form. Anything outside the
//! portable subset is an error naming the first thing not understood:
//! the expression is then carried only to its own dialect.
//!
//! PostgreSQL's casts are dropped (`(0)::numeric`, `'a'::text`: the target
//! compares and assigns by its own column types), and its
//! `x = ANY (ARRAY[…])` reads as `x IN (…)`.

use super::{BinaryOp, Dialect, Expr, Func};
use crate::{Decimal, Value};

#[derive(Debug, Clone, PartialEq)]
enum Token {
    /// A bare word as written (keyword or name).
    Word(String),
    /// A quoted identifier.
    Quoted(String),
    Text(String),
    Number(String),
    Op(&'static str),
}

/// Parses `sql` of `dialect`.
pub fn parse(sql: &str, dialect: Dialect) -> Result<Expr, String> {
    let tokens = tokenize(sql, dialect)?;
    let mut parser = Parser {
        tokens,
        at: 0,
        dialect,
    };
    let expr = parser.expr()?;
    match parser.peek() {
        None => Ok(expr),
        Some(t) => Err(format!("unexpected {}", describe(t))),
    }
}

fn describe(t: &Token) -> String {
    match t {
        Token::Word(w) => format!("`{w}`"),
        Token::Quoted(q) => format!("name `{q}`"),
        Token::Text(_) => "text literal".into(),
        Token::Number(n) => format!("number {n}"),
        Token::Op(op) => format!("`{op}`"),
    }
}

const OPS: [&str; 22] = [
    "!~~", "::", "<=", ">=", "<>", "!=", "||", "~~", "=", "<", ">", "+", "-", "*", "/", "%", "(",
    ")", ",", "[", "]", ".",
];

fn tokenize(sql: &str, dialect: Dialect) -> Result<Vec<Token>, String> {
    let chars: Vec<char> = sql.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    let mysql = matches!(dialect, Dialect::Mysql | Dialect::Mariadb);
    while i < chars.len() {
        let c = chars[i];
        if c.is_whitespace() {
            i += 1;
            continue;
        }
        let quote_ident = match dialect {
            Dialect::Postgres => c == '"',
            Dialect::Mysql | Dialect::Mariadb => c == '`',
            Dialect::Sqlite => c == '"' || c == '`' || c == '[',
        };
        if quote_ident {
            let close = if c == '[' { ']' } else { c };
            let (text, next) = quoted(&chars, i + 1, close, false)?;
            out.push(Token::Quoted(text));
            i = next;
            continue;
        }
        // PostgreSQL E'…' strings take backslash escapes.
        if dialect == Dialect::Postgres && (c == 'E' || c == 'e') && chars.get(i + 1) == Some(&'\'')
        {
            let (text, next) = quoted(&chars, i + 2, '\'', true)?;
            out.push(Token::Text(text));
            i = next;
            continue;
        }
        if c == '\'' || (mysql && c == '"') {
            let (text, next) = quoted(&chars, i + 1, c, mysql)?;
            out.push(Token::Text(text));
            i = next;
            continue;
        }
        if c.is_ascii_digit() || (c == '.' && chars.get(i + 1).is_some_and(char::is_ascii_digit)) {
            let start = i;
            while i < chars.len() && (chars[i].is_ascii_digit() || chars[i] == '.') {
                i += 1;
            }
            if i < chars.len() && (chars[i] == 'e' || chars[i] == 'E') {
                let sign = usize::from(matches!(chars.get(i + 1), Some('+' | '-')));
                if chars.get(i + 1 + sign).is_some_and(char::is_ascii_digit) {
                    i += 1 + sign;
                    while i < chars.len() && chars[i].is_ascii_digit() {
                        i += 1;
                    }
                }
            }
            out.push(Token::Number(chars[start..i].iter().collect()));
            continue;
        }
        if c.is_alphabetic() || c == '_' {
            let start = i;
            while i < chars.len()
                && (chars[i].is_alphanumeric() || chars[i] == '_' || chars[i] == '$')
            {
                i += 1;
            }
            let word: String = chars[start..i].iter().collect();
            // MySQL's charset introducer: `_utf8mb4'abc'` is just 'abc'.
            if mysql && word.starts_with('_') && matches!(chars.get(i), Some('\'' | '"')) {
                continue;
            }
            out.push(Token::Word(word));
            continue;
        }
        let rest: String = chars[i..chars.len().min(i + 3)].iter().collect();
        let Some(op) = OPS.iter().find(|op| rest.starts_with(**op)) else {
            return Err(format!("unexpected character `{c}`"));
        };
        out.push(Token::Op(op));
        i += op.len();
    }
    Ok(out)
}

/// Reads a quoted text starting after its opening quote: a doubled quote
/// is one; `backslash` escapes take the next character (MySQL strings,
/// PostgreSQL E'' strings).
fn quoted(
    chars: &[char],
    mut i: usize,
    close: char,
    backslash: bool,
) -> Result<(String, usize), String> {
    let mut text = String::new();
    while i < chars.len() {
        let c = chars[i];
        if backslash && c == '\\' {
            let next = chars.get(i + 1).ok_or("unterminated escape")?;
            text.push(match next {
                'n' => '\n',
                't' => '\t',
                'r' => '\r',
                '0' => '\0',
                other => *other,
            });
            i += 2;
            continue;
        }
        if c == close {
            if chars.get(i + 1) == Some(&close) && close != ']' {
                text.push(close);
                i += 2;
                continue;
            }
            return Ok((text, i + 1));
        }
        text.push(c);
        i += 1;
    }
    Err("unterminated quote".into())
}

struct Parser {
    tokens: Vec<Token>,
    at: usize,
    dialect: Dialect,
}

impl Parser {
    fn peek(&self) -> Option<&Token> {
        self.tokens.get(self.at)
    }

    fn next(&mut self) -> Option<Token> {
        let t = self.tokens.get(self.at).cloned();
        self.at += 1;
        t
    }

    fn is_word(&self, word: &str) -> bool {
        matches!(self.peek(), Some(Token::Word(w)) if w.eq_ignore_ascii_case(word))
    }

    fn eat_word(&mut self, word: &str) -> bool {
        let found = self.is_word(word);
        if found {
            self.at += 1;
        }
        found
    }

    fn eat_op(&mut self, op: &str) -> bool {
        let found = matches!(self.peek(), Some(Token::Op(o)) if *o == op);
        if found {
            self.at += 1;
        }
        found
    }

    fn expect_op(&mut self, op: &str) -> Result<(), String> {
        if self.eat_op(op) {
            Ok(())
        } else {
            Err(match self.peek() {
                Some(t) => format!("expected `{op}`, found {}", describe(t)),
                None => format!("expected `{op}` at the end"),
            })
        }
    }

    fn expr(&mut self) -> Result<Expr, String> {
        let mut left = self.and()?;
        while self.eat_word("OR") || (self.mysql() && self.eat_op("||")) {
            let right = self.and()?;
            left = binary(BinaryOp::Or, left, right);
        }
        Ok(left)
    }

    fn mysql(&self) -> bool {
        matches!(self.dialect, Dialect::Mysql | Dialect::Mariadb)
    }

    fn and(&mut self) -> Result<Expr, String> {
        let mut left = self.not()?;
        while self.eat_word("AND") {
            let right = self.not()?;
            left = binary(BinaryOp::And, left, right);
        }
        Ok(left)
    }

    fn not(&mut self) -> Result<Expr, String> {
        if self.eat_word("NOT") {
            let expr = self.not()?;
            return Ok(Expr::Not {
                expr: Box::new(expr),
            });
        }
        self.predicate()
    }

    fn predicate(&mut self) -> Result<Expr, String> {
        let left = self.additive()?;
        if self.eat_word("IS") {
            let negated = self.eat_word("NOT");
            if !self.eat_word("NULL") {
                return Err("only IS [NOT] NULL is understood".into());
            }
            return Ok(Expr::IsNull {
                expr: Box::new(left),
                negated,
            });
        }
        let negated = self.eat_word("NOT");
        if self.eat_word("IN") {
            self.expect_op("(")?;
            let list = self.list(")")?;
            return Ok(Expr::InList {
                expr: Box::new(left),
                list,
                negated,
            });
        }
        if self.eat_word("BETWEEN") {
            let low = self.additive()?;
            if !self.eat_word("AND") {
                return Err("BETWEEN without AND".into());
            }
            let high = self.additive()?;
            return Ok(Expr::Between {
                expr: Box::new(left),
                low: Box::new(low),
                high: Box::new(high),
                negated,
            });
        }
        if self.eat_word("LIKE") {
            let right = self.additive()?;
            let op = if negated {
                BinaryOp::NotLike
            } else {
                BinaryOp::Like
            };
            return Ok(binary(op, left, right));
        }
        if negated {
            return Err("NOT must be followed by IN, BETWEEN or LIKE here".into());
        }
        let op = match self.peek() {
            Some(Token::Op("=")) => BinaryOp::Eq,
            Some(Token::Op("<>" | "!=")) => BinaryOp::NotEq,
            Some(Token::Op("<")) => BinaryOp::Lt,
            Some(Token::Op("<=")) => BinaryOp::LtEq,
            Some(Token::Op(">")) => BinaryOp::Gt,
            Some(Token::Op(">=")) => BinaryOp::GtEq,
            Some(Token::Op("~~")) => BinaryOp::Like,
            Some(Token::Op("!~~")) => BinaryOp::NotLike,
            _ => return Ok(left),
        };
        self.at += 1;
        // PostgreSQL prints `x IN (…)` as `x = ANY (ARRAY[…])`.
        if (op == BinaryOp::Eq && self.is_word("ANY"))
            || (op == BinaryOp::NotEq && self.is_word("ALL"))
        {
            self.at += 1;
            let list = self.any_array()?;
            return Ok(Expr::InList {
                expr: Box::new(left),
                list,
                negated: op == BinaryOp::NotEq,
            });
        }
        let right = self.additive()?;
        Ok(binary(op, left, right))
    }

    /// `(ARRAY[a, b]::type[])` after ANY / ALL.
    fn any_array(&mut self) -> Result<Vec<Expr>, String> {
        self.expect_op("(")?;
        let mut depth = 0;
        while self.eat_op("(") {
            depth += 1;
        }
        if !self.eat_word("ARRAY") {
            return Err("ANY / ALL over something other than an ARRAY list".into());
        }
        self.expect_op("[")?;
        let list = self.list("]")?;
        for _ in 0..depth {
            self.casts()?;
            self.expect_op(")")?;
        }
        self.casts()?;
        self.expect_op(")")?;
        Ok(list)
    }

    /// Comma-separated expressions up to `close`.
    fn list(&mut self, close: &str) -> Result<Vec<Expr>, String> {
        let mut list = Vec::new();
        if self.eat_op(close) {
            return Ok(list);
        }
        loop {
            list.push(self.expr()?);
            if self.eat_op(close) {
                return Ok(list);
            }
            self.expect_op(",")?;
        }
    }

    fn additive(&mut self) -> Result<Expr, String> {
        let mut left = self.multiplicative()?;
        loop {
            let op = if self.eat_op("+") {
                BinaryOp::Plus
            } else if self.eat_op("-") {
                BinaryOp::Minus
            } else if !self.mysql() && matches!(self.peek(), Some(Token::Op("||"))) {
                return Err("text concatenation (`||`) is not translated".into());
            } else {
                return Ok(left);
            };
            let right = self.multiplicative()?;
            left = binary(op, left, right);
        }
    }

    fn multiplicative(&mut self) -> Result<Expr, String> {
        let mut left = self.unary()?;
        loop {
            let op = if self.eat_op("*") {
                BinaryOp::Multiply
            } else if self.eat_op("/") {
                BinaryOp::Divide
            } else if self.eat_op("%") {
                BinaryOp::Modulo
            } else {
                return Ok(left);
            };
            let right = self.unary()?;
            left = binary(op, left, right);
        }
    }

    fn unary(&mut self) -> Result<Expr, String> {
        if self.eat_op("-") {
            let expr = self.unary()?;
            return Ok(match expr {
                Expr::Literal {
                    value: Value::Int(i),
                } => literal(Value::Int(-i)),
                Expr::Literal {
                    value: Value::Decimal(d),
                } => literal(Value::Decimal(
                    format!("-{d}").parse::<Decimal>().unwrap_or(d),
                )),
                other => Expr::Negate {
                    expr: Box::new(other),
                },
            });
        }
        if self.eat_op("+") {
            return self.unary();
        }
        let primary = self.primary()?;
        self.casts()?;
        Ok(primary)
    }

    /// Skips PostgreSQL casts: `::character varying(10)[]`, `::regclass`.
    fn casts(&mut self) -> Result<(), String> {
        while self.eat_op("::") {
            match self.next() {
                Some(Token::Word(_) | Token::Quoted(_)) => {}
                other => {
                    return Err(format!(
                        "expected a type name after `::`, found {}",
                        other.as_ref().map_or_else(|| "the end".into(), describe)
                    ));
                }
            }
            // Qualified names and multi-word types.
            loop {
                if self.eat_op(".") {
                    self.next();
                    continue;
                }
                let more = ["varying", "precision", "without", "with", "time", "zone"]
                    .iter()
                    .any(|w| self.is_word(w));
                if !more {
                    break;
                }
                self.at += 1;
            }
            if matches!(self.peek(), Some(Token::Op("("))) {
                // A type modifier: numbers only.
                let save = self.at;
                self.at += 1;
                while matches!(self.peek(), Some(Token::Number(_) | Token::Op(","))) {
                    self.at += 1;
                }
                if !self.eat_op(")") {
                    self.at = save;
                }
            }
            while self.eat_op("[") {
                self.expect_op("]")?;
            }
        }
        Ok(())
    }

    fn primary(&mut self) -> Result<Expr, String> {
        let Some(token) = self.next() else {
            return Err("the expression ends too early".into());
        };
        match token {
            Token::Number(n) => number(&n),
            Token::Text(s) => Ok(literal(Value::Text(s))),
            Token::Quoted(name) => Ok(Expr::Column { name }),
            Token::Op("(") => {
                let inner = self.expr()?;
                self.expect_op(")")?;
                Ok(inner)
            }
            Token::Op(op) => Err(format!("unexpected `{op}`")),
            Token::Word(word) => self.word(word),
        }
    }

    fn word(&mut self, word: String) -> Result<Expr, String> {
        let upper = word.to_ascii_uppercase();
        let call = matches!(self.peek(), Some(Token::Op("(")));
        if !call {
            match upper.as_str() {
                "TRUE" => return Ok(literal(Value::Bool(true))),
                "FALSE" => return Ok(literal(Value::Bool(false))),
                "NULL" => return Ok(literal(Value::Null)),
                "CURRENT_TIMESTAMP" | "LOCALTIMESTAMP" => return Ok(call0(Func::CurrentTimestamp)),
                "CURRENT_DATE" => return Ok(call0(Func::CurrentDate)),
                "CURRENT_TIME" | "LOCALTIME" => return Ok(call0(Func::CurrentTime)),
                "CURRENT_USER" | "SESSION_USER" | "USER" => return Ok(call0(Func::CurrentUser)),
                _ => {}
            }
            if is_keyword(&upper) {
                return Err(format!("`{word}` is not understood"));
            }
            return Ok(Expr::Column { name: word });
        }
        self.at += 1;
        let args = self.list(")")?;
        let func = match upper.as_str() {
            "NOW" | "CURRENT_TIMESTAMP" | "TRANSACTION_TIMESTAMP" | "LOCALTIMESTAMP" => {
                Func::CurrentTimestamp
            }
            "CURRENT_DATE" | "CURDATE" => Func::CurrentDate,
            "CURRENT_TIME" | "CURTIME" | "LOCALTIME" => Func::CurrentTime,
            "GEN_RANDOM_UUID" | "UUID_GENERATE_V4" | "UUID" => Func::RandomUuid,
            "CURRENT_USER" | "SESSION_USER" | "USER" => Func::CurrentUser,
            "NEXTVAL" => Func::NextVal,
            "CHAR_LENGTH" | "CHARACTER_LENGTH" => Func::CharLength,
            // MySQL's LENGTH counts bytes, PostgreSQL's and SQLite's characters.
            "LENGTH" if self.mysql() => Func::OctetLength,
            "LENGTH" => Func::CharLength,
            "OCTET_LENGTH" => Func::OctetLength,
            "LOWER" | "LCASE" => Func::Lower,
            "UPPER" | "UCASE" => Func::Upper,
            "ABS" => Func::Abs,
            "COALESCE" | "IFNULL" => Func::Coalesce,
            "TRIM" | "BTRIM" if args.len() == 1 => Func::Trim,
            _ => return Err(format!("function `{word}` is not translated")),
        };
        // Precision arguments of the clock functions (`current_timestamp(6)`)
        // are the column's business.
        let args = match func {
            Func::CurrentTimestamp | Func::CurrentTime | Func::CurrentDate => Vec::new(),
            _ => args,
        };
        if func == Func::NextVal
            && !matches!(
                args.as_slice(),
                [Expr::Literal {
                    value: Value::Text(_)
                }]
            )
        {
            return Err("nextval of something other than a sequence name".into());
        }
        Ok(Expr::Call { func, args })
    }
}

fn is_keyword(upper: &str) -> bool {
    matches!(
        upper,
        "AND"
            | "OR"
            | "NOT"
            | "IS"
            | "IN"
            | "BETWEEN"
            | "LIKE"
            | "CASE"
            | "WHEN"
            | "THEN"
            | "ELSE"
            | "END"
            | "ARRAY"
            | "ANY"
            | "ALL"
            | "SELECT"
            | "INTERVAL"
            | "COLLATE"
            | "CAST"
            | "EXISTS"
            | "SIMILAR"
            | "REGEXP"
            | "RLIKE"
    )
}

fn binary(op: BinaryOp, left: Expr, right: Expr) -> Expr {
    Expr::Binary {
        op,
        left: Box::new(left),
        right: Box::new(right),
    }
}

fn literal(value: Value) -> Expr {
    Expr::Literal { value }
}

fn call0(func: Func) -> Expr {
    Expr::Call {
        func,
        args: Vec::new(),
    }
}

fn number(text: &str) -> Result<Expr, String> {
    if let Ok(i) = text.parse::<i64>() {
        return Ok(literal(Value::Int(i)));
    }
    if text.contains(['e', 'E']) {
        return text
            .parse::<f64>()
            .map(|f| literal(Value::Float(f)))
            .map_err(|e| format!("number {text}: {e}"));
    }
    text.parse::<Decimal>()
        .map(|d| literal(Value::Decimal(d)))
        .map_err(|e| format!("number {text}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn col(name: &str) -> Expr {
        Expr::Column { name: name.into() }
    }

    fn text(s: &str) -> Expr {
        literal(Value::Text(s.into()))
    }

    #[test]
    fn postgres_checks_read_as_portable_expressions() {
        assert_eq!(
            parse("(price > (0)::numeric)", Dialect::Postgres),
            Ok(binary(BinaryOp::Gt, col("price"), literal(Value::Int(0))))
        );
        assert_eq!(
            parse(
                "((status)::text = ANY ((ARRAY['new'::character varying, 'it''s'::character varying])::text[]))",
                Dialect::Postgres
            ),
            Ok(Expr::InList {
                expr: Box::new(col("status")),
                list: vec![text("new"), text("it's")],
                negated: false
            })
        );
        assert_eq!(
            parse(
                "((char_length(\"Name\") > 0) AND (\"Name\" IS NOT NULL))",
                Dialect::Postgres
            ),
            Ok(binary(
                BinaryOp::And,
                binary(
                    BinaryOp::Gt,
                    Expr::Call {
                        func: Func::CharLength,
                        args: vec![col("Name")]
                    },
                    literal(Value::Int(0))
                ),
                Expr::IsNull {
                    expr: Box::new(col("Name")),
                    negated: true
                }
            ))
        );
        assert_eq!(
            parse("(code ~~ 'A%'::text)", Dialect::Postgres),
            Ok(binary(BinaryOp::Like, col("code"), text("A%")))
        );
        assert_eq!(
            parse(
                "((qty >= '-1'::integer) AND (qty <= 10))",
                Dialect::Postgres
            )
            .map(|e| matches!(
                e,
                Expr::Binary {
                    op: BinaryOp::And,
                    ..
                }
            )),
            Ok(true)
        );
    }

    #[test]
    fn defaults_read_as_functions() {
        for (sql, dialect, func) in [
            ("now()", Dialect::Postgres, Func::CurrentTimestamp),
            (
                "CURRENT_TIMESTAMP",
                Dialect::Postgres,
                Func::CurrentTimestamp,
            ),
            (
                "current_timestamp()",
                Dialect::Mariadb,
                Func::CurrentTimestamp,
            ),
            (
                "current_timestamp(6)",
                Dialect::Mariadb,
                Func::CurrentTimestamp,
            ),
            ("CURRENT_DATE", Dialect::Postgres, Func::CurrentDate),
            ("curdate()", Dialect::Mariadb, Func::CurrentDate),
            ("gen_random_uuid()", Dialect::Postgres, Func::RandomUuid),
            ("uuid()", Dialect::Mariadb, Func::RandomUuid),
            ("CURRENT_USER", Dialect::Postgres, Func::CurrentUser),
            (
                "nextval('seq_shared'::regclass)",
                Dialect::Postgres,
                Func::NextVal,
            ),
        ] {
            assert_eq!(
                parse(sql, dialect).map(|e| e.as_call()),
                Ok(Some(func)),
                "{sql}"
            );
        }
    }

    #[test]
    fn mysql_checks_with_introducers_and_backquotes() {
        assert_eq!(
            parse(
                "(`status` in (_utf8mb4'a',_utf8mb4'b\\'c'))",
                Dialect::Mysql
            ),
            Ok(Expr::InList {
                expr: Box::new(col("status")),
                list: vec![text("a"), text("b'c")],
                negated: false
            })
        );
        assert_eq!(
            parse("`rental_rate` between 0 and 99.99", Dialect::Mariadb),
            Ok(Expr::Between {
                expr: Box::new(col("rental_rate")),
                low: Box::new(literal(Value::Int(0))),
                high: Box::new(literal(Value::Decimal("99.99".parse().unwrap()))),
                negated: false
            })
        );
    }

    #[test]
    fn what_is_not_understood_is_an_error() {
        for sql in [
            "(a || b)",
            "(x ~ '^a'::text)",
            "CASE WHEN a THEN 1 END",
            "my_function(a)",
            "(a > 0",
            "a IS TRUE",
        ] {
            assert!(parse(sql, Dialect::Postgres).is_err(), "{sql}");
        }
        assert!(parse("json_valid(`doc`)", Dialect::Mariadb).is_err());
    }
}
