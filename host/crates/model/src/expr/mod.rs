//! Expressions from a source's catalog (defaults, CHECK constraints, ON
//! UPDATE clauses): kept as the source wrote them, for a target of the same
//! dialect, and where DMP understands them also in a portable form that
//! any SQL target renders in its own dialect. An expression without a
//! portable form is carried only to its own dialect; the migration
//! assessment lists it as not carried elsewhere.

mod parse;
mod render;

use serde::{Deserialize, Serialize};

use super::Value;

pub use parse::parse;

/// An SQL dialect, as far as expressions and native definitions differ.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Dialect {
    Postgres,
    Mysql,
    Mariadb,
    Sqlite,
}

impl Dialect {
    pub fn as_str(self) -> &'static str {
        match self {
            Dialect::Postgres => "PostgreSQL",
            Dialect::Mysql => "MySQL",
            Dialect::Mariadb => "MariaDB",
            Dialect::Sqlite => "SQLite",
        }
    }
}

/// An expression as a source's catalog holds it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SqlExpr {
    pub dialect: Dialect,
    /// The source's own text (`now()`, `` `price` > 0 ``).
    pub sql: String,
    /// Its meaning, where DMP understands it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub portable: Option<Expr>,
}

impl SqlExpr {
    /// `sql` of `dialect`, parsed for its portable form.
    pub fn new(dialect: Dialect, sql: impl Into<String>) -> Self {
        let sql = sql.into();
        let portable = parse(&sql, dialect).ok();
        SqlExpr {
            dialect,
            sql,
            portable,
        }
    }

    /// How a target of `dialect` writes this expression: the source's own
    /// text for the same dialect, else the portable form rendered (with
    /// `columns` renamed as the target names them: identity here).
    pub fn for_dialect(&self, dialect: Dialect) -> Carry<String> {
        if self.dialect == dialect {
            return Carry::Carried(self.sql.clone());
        }
        match &self.portable {
            Some(expr) => match expr.render(dialect) {
                Ok(sql) => Carry::Converted(sql),
                Err(why) => Carry::NotCarried(why),
            },
            None => Carry::NotCarried(format!(
                "{} expression that DMP cannot translate to {}",
                self.dialect.as_str(),
                dialect.as_str()
            )),
        }
    }

    /// The columns the expression reads, when known.
    pub fn columns(&self) -> Option<Vec<&str>> {
        let mut out = Vec::new();
        self.portable.as_ref()?.collect_columns(&mut out);
        Some(out)
    }
}

/// Whether and how something of the source reaches the target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Carry<T> {
    /// As it is.
    Carried(T),
    /// Translated; the target's form.
    Converted(T),
    /// Left behind, and why.
    NotCarried(String),
}

impl<T> Carry<T> {
    /// What the target gets, if anything.
    pub fn value(self) -> Option<T> {
        match self {
            Carry::Carried(v) | Carry::Converted(v) => Some(v),
            Carry::NotCarried(_) => None,
        }
    }

    pub fn map<U>(self, f: impl FnOnce(T) -> U) -> Carry<U> {
        match self {
            Carry::Carried(v) => Carry::Carried(f(v)),
            Carry::Converted(v) => Carry::Converted(f(v)),
            Carry::NotCarried(why) => Carry::NotCarried(why),
        }
    }
}

/// A portable expression: the subset of SQL that defaults and CHECK
/// constraints mostly use, with one meaning in every dialect.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Expr {
    Column {
        name: String,
    },
    Literal {
        value: Value,
    },
    Not {
        expr: Box<Expr>,
    },
    Negate {
        expr: Box<Expr>,
    },
    Binary {
        op: BinaryOp,
        left: Box<Expr>,
        right: Box<Expr>,
    },
    IsNull {
        expr: Box<Expr>,
        negated: bool,
    },
    InList {
        expr: Box<Expr>,
        list: Vec<Expr>,
        negated: bool,
    },
    Between {
        expr: Box<Expr>,
        low: Box<Expr>,
        high: Box<Expr>,
        negated: bool,
    },
    Call {
        func: Func,
        args: Vec<Expr>,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BinaryOp {
    And,
    Or,
    Eq,
    NotEq,
    Lt,
    LtEq,
    Gt,
    GtEq,
    Plus,
    Minus,
    Multiply,
    Divide,
    Modulo,
    Like,
    NotLike,
}

/// Functions with one meaning across dialects (their spellings differ).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Func {
    /// The transaction's start time (`now()`, `CURRENT_TIMESTAMP`).
    CurrentTimestamp,
    CurrentDate,
    CurrentTime,
    /// A random UUID (`gen_random_uuid()`, `uuid()`).
    RandomUuid,
    /// The connected user.
    CurrentUser,
    /// The next value of the sequence named by its text argument.
    NextVal,
    /// Length in characters.
    CharLength,
    /// Length in bytes.
    OctetLength,
    Lower,
    Upper,
    Abs,
    Coalesce,
    Trim,
}

impl Expr {
    fn collect_columns<'a>(&'a self, out: &mut Vec<&'a str>) {
        match self {
            Expr::Column { name } => {
                if !out.contains(&name.as_str()) {
                    out.push(name);
                }
            }
            Expr::Literal { .. } => {}
            Expr::Not { expr } | Expr::Negate { expr } | Expr::IsNull { expr, .. } => {
                expr.collect_columns(out);
            }
            Expr::Binary { left, right, .. } => {
                left.collect_columns(out);
                right.collect_columns(out);
            }
            Expr::InList { expr, list, .. } => {
                expr.collect_columns(out);
                for e in list {
                    e.collect_columns(out);
                }
            }
            Expr::Between {
                expr, low, high, ..
            } => {
                expr.collect_columns(out);
                low.collect_columns(out);
                high.collect_columns(out);
            }
            Expr::Call { args, .. } => {
                for e in args {
                    e.collect_columns(out);
                }
            }
        }
    }

    /// The function this expression is, when it is a bare call
    /// (`CURRENT_TIMESTAMP`, `uuid()`).
    pub fn as_call(&self) -> Option<Func> {
        match self {
            Expr::Call { func, .. } => Some(*func),
            _ => None,
        }
    }
}
