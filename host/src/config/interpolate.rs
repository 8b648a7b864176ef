//! `${VAR}` and `${VAR:-default}` in pipeline strings. Values are never
//! echoed in errors: they may be passwords.

use crate::error::{Error, Result};

pub(super) fn interpolate(text: &str, place: &str) -> Result<String> {
    interpolate_with(text, place, |name| std::env::var(name).ok())
}

fn interpolate_with(
    text: &str,
    place: &str,
    lookup: impl Fn(&str) -> Option<String>,
) -> Result<String> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let end = after
            .find('}')
            .ok_or_else(|| Error::Config(format!("{place}: `${{` without a closing `}}`")))?;
        let inner = &after[..end];
        let (name, default) = match inner.split_once(":-") {
            Some((n, d)) => (n, Some(d)),
            None => (inner, None),
        };
        if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err(Error::Config(format!(
                "{place}: `${{{inner}}}` is not a valid variable name"
            )));
        }
        match (lookup(name), default) {
            (Some(value), _) => out.push_str(&value),
            (None, Some(default)) => out.push_str(default),
            (None, None) => {
                return Err(Error::Config(format!(
                    "{place}: environment variable {name} is not set"
                )));
            }
        }
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        (name == "PASS").then(|| "s3cret".to_string())
    }

    #[test]
    fn replaces_variables_and_defaults() {
        let got = interpolate_with("postgres://u:${PASS}@h/${DB:-shop}", "k", env).unwrap();
        assert_eq!(got, "postgres://u:s3cret@h/shop");
        let err = interpolate_with("x${MISSING}", "p.toml:3 source.url", env).unwrap_err();
        assert_eq!(
            err.to_string(),
            "p.toml:3 source.url: environment variable MISSING is not set"
        );
        assert!(interpolate_with("${oops", "k", env).is_err());
        assert!(interpolate_with("${a b}", "k", env).is_err());
    }
}
