//! Writes a portable expression in a dialect's SQL. A function the dialect
//! has no equivalent for is an error saying so (the expression is then not
//! carried to that target).

use super::{BinaryOp, Dialect, Expr, Func};
use crate::Value;

impl Expr {
    /// This expression in `dialect`'s SQL, fully parenthesized.
    pub fn render(&self, dialect: Dialect) -> Result<String, String> {
        let mut out = String::new();
        write(self, dialect, &mut out)?;
        Ok(out)
    }
}

fn quote_ident(name: &str, dialect: Dialect) -> String {
    match dialect {
        Dialect::Mysql | Dialect::Mariadb => format!("`{}`", name.replace('`', "``")),
        Dialect::Postgres | Dialect::Sqlite => format!("\"{}\"", name.replace('"', "\"\"")),
    }
}

fn text_literal(text: &str, dialect: Dialect) -> String {
    match dialect {
        Dialect::Mysql | Dialect::Mariadb => {
            format!("'{}'", text.replace('\\', "\\\\").replace('\'', "''"))
        }
        Dialect::Postgres | Dialect::Sqlite => format!("'{}'", text.replace('\'', "''")),
    }
}

fn value_literal(value: &Value, dialect: Dialect) -> Result<String, String> {
    Ok(match value {
        Value::Null => "NULL".into(),
        Value::Bool(b) => match dialect {
            Dialect::Sqlite => i64::from(*b).to_string(),
            _ => if *b { "TRUE" } else { "FALSE" }.into(),
        },
        Value::Int(i) => i.to_string(),
        Value::Decimal(d) => d.to_string(),
        Value::Float(f) if f.is_finite() => format!("{f:?}"),
        Value::Text(s) => text_literal(s, dialect),
        other => return Err(format!("a {other:?} literal is not translated")),
    })
}

fn write(expr: &Expr, dialect: Dialect, out: &mut String) -> Result<(), String> {
    match expr {
        Expr::Column { name } => out.push_str(&quote_ident(name, dialect)),
        Expr::Literal { value } => out.push_str(&value_literal(value, dialect)?),
        Expr::Not { expr } => {
            out.push_str("(NOT ");
            write(expr, dialect, out)?;
            out.push(')');
        }
        Expr::Negate { expr } => {
            out.push_str("(-");
            write(expr, dialect, out)?;
            out.push(')');
        }
        Expr::Binary { op, left, right } => {
            // `CURRENT_DATE + 30` adds days in PostgreSQL, but makes a
            // number of the date in MySQL and SQLite.
            if matches!(op, BinaryOp::Plus | BinaryOp::Minus)
                && [left, right].iter().any(|e| is_clock(e))
            {
                return Err("arithmetic on dates and times is not translated".into());
            }
            out.push('(');
            write(left, dialect, out)?;
            out.push(' ');
            out.push_str(op_sql(*op));
            out.push(' ');
            write(right, dialect, out)?;
            out.push(')');
        }
        Expr::IsNull { expr, negated } => {
            out.push('(');
            write(expr, dialect, out)?;
            out.push_str(if *negated {
                " IS NOT NULL)"
            } else {
                " IS NULL)"
            });
        }
        Expr::InList {
            expr,
            list,
            negated,
        } => {
            out.push('(');
            write(expr, dialect, out)?;
            out.push_str(if *negated { " NOT IN (" } else { " IN (" });
            for (i, e) in list.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                write(e, dialect, out)?;
            }
            out.push_str("))");
        }
        Expr::Between {
            expr,
            low,
            high,
            negated,
        } => {
            out.push('(');
            write(expr, dialect, out)?;
            out.push_str(if *negated {
                " NOT BETWEEN "
            } else {
                " BETWEEN "
            });
            write(low, dialect, out)?;
            out.push_str(" AND ");
            write(high, dialect, out)?;
            out.push(')');
        }
        Expr::Call { func, args } => call(*func, args, dialect, out)?,
    }
    Ok(())
}

fn is_clock(expr: &Expr) -> bool {
    matches!(
        expr.as_call(),
        Some(Func::CurrentTimestamp | Func::CurrentDate | Func::CurrentTime)
    )
}

fn op_sql(op: BinaryOp) -> &'static str {
    match op {
        BinaryOp::And => "AND",
        BinaryOp::Or => "OR",
        BinaryOp::Eq => "=",
        BinaryOp::NotEq => "<>",
        BinaryOp::Lt => "<",
        BinaryOp::LtEq => "<=",
        BinaryOp::Gt => ">",
        BinaryOp::GtEq => ">=",
        BinaryOp::Plus => "+",
        BinaryOp::Minus => "-",
        BinaryOp::Multiply => "*",
        BinaryOp::Divide => "/",
        BinaryOp::Modulo => "%",
        BinaryOp::Like => "LIKE",
        BinaryOp::NotLike => "NOT LIKE",
    }
}

fn call(func: Func, args: &[Expr], dialect: Dialect, out: &mut String) -> Result<(), String> {
    let mysql = matches!(dialect, Dialect::Mysql | Dialect::Mariadb);
    let name = match (func, dialect) {
        (Func::CurrentTimestamp, _) if mysql => "current_timestamp()",
        (Func::CurrentTimestamp, _) => "CURRENT_TIMESTAMP",
        (Func::CurrentDate, _) if mysql => "curdate()",
        (Func::CurrentDate, _) => "CURRENT_DATE",
        (Func::CurrentTime, _) if mysql => "curtime()",
        (Func::CurrentTime, Dialect::Postgres) => "LOCALTIME",
        (Func::CurrentTime, _) => "CURRENT_TIME",
        (Func::RandomUuid, Dialect::Postgres) => "gen_random_uuid()",
        (Func::RandomUuid, _) if mysql => "uuid()",
        (Func::CurrentUser, Dialect::Postgres) => "CURRENT_USER",
        (Func::CurrentUser, _) if mysql => "current_user()",
        (Func::RandomUuid | Func::CurrentUser, _) => {
            return Err(format!("{} has no {func:?} function", dialect.as_str()));
        }
        (Func::NextVal, _) => {
            return Err("a sequence's next value is carried with its sequence only".into());
        }
        (Func::CharLength, Dialect::Sqlite) => "length",
        (Func::CharLength, _) => "char_length",
        (Func::OctetLength, Dialect::Sqlite) => {
            return Err("SQLite has no byte length of text".into());
        }
        (Func::OctetLength, _) => "octet_length",
        (Func::Lower, _) => "lower",
        (Func::Upper, _) => "upper",
        (Func::Abs, _) => "abs",
        (Func::Coalesce, _) => "coalesce",
        (Func::Trim, _) => "trim",
    };
    out.push_str(name);
    if name.ends_with(')') || name.chars().all(|c| c.is_ascii_uppercase() || c == '_') {
        return Ok(());
    }
    out.push('(');
    for (i, e) in args.iter().enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        write(e, dialect, out)?;
    }
    out.push(')');
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::{Carry, SqlExpr, parse};
    use super::*;

    #[test]
    fn checks_translate_between_dialects() {
        let pg = SqlExpr::new(
            Dialect::Postgres,
            "((status)::text = ANY ((ARRAY['new'::character varying, 'it''s'::character varying])::text[]))",
        );
        assert_eq!(
            pg.for_dialect(Dialect::Mariadb),
            Carry::Converted("(`status` IN ('new', 'it''s'))".into())
        );
        assert!(matches!(
            pg.for_dialect(Dialect::Postgres),
            Carry::Carried(_)
        ));
        let my = SqlExpr::new(
            Dialect::Mariadb,
            "`rental_rate` between 0 and 99.99 and char_length(`title`) > 0",
        );
        assert_eq!(
            my.for_dialect(Dialect::Postgres),
            Carry::Converted(
                "((\"rental_rate\" BETWEEN 0 AND 99.99) AND (char_length(\"title\") > 0))".into()
            )
        );
        assert_eq!(my.columns(), Some(vec!["rental_rate", "title"]));
        let opaque = SqlExpr::new(Dialect::Postgres, "(code ~ '^[A-Z]+$'::text)");
        assert!(matches!(
            opaque.for_dialect(Dialect::Mysql),
            Carry::NotCarried(_)
        ));
    }

    #[test]
    fn clock_and_uuid_defaults_per_dialect() {
        let now = parse("now()", Dialect::Postgres).unwrap();
        assert_eq!(now.render(Dialect::Mariadb).unwrap(), "current_timestamp()");
        assert_eq!(now.render(Dialect::Sqlite).unwrap(), "CURRENT_TIMESTAMP");
        let uuid = parse("uuid()", Dialect::Mariadb).unwrap();
        assert_eq!(uuid.render(Dialect::Postgres).unwrap(), "gen_random_uuid()");
        assert!(uuid.render(Dialect::Sqlite).is_err());
        let seq = parse("nextval('s'::regclass)", Dialect::Postgres).unwrap();
        assert!(seq.render(Dialect::Mariadb).is_err());
        let due = parse("(CURRENT_DATE + 30)", Dialect::Postgres).unwrap();
        assert!(due.render(Dialect::Mariadb).is_err());
        assert!(due.render(Dialect::Sqlite).is_err());
    }
}
