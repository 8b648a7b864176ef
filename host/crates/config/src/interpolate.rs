//! `${VAR}`, `${VAR:-default}` and `${file:PATH}` in pipeline strings and
//! command-line URLs. Values are never echoed in errors: they may be
//! passwords. A secret file (a mounted Kubernetes or Docker secret, say)
//! keeps the password out of the environment and of `ps`.

use std::path::Path;

use crate::error::{Error, Result};

/// Replaces the variables of `text`; `place` names it in errors, secret
/// files are taken from `base_dir`.
pub(super) fn interpolate(text: &str, place: &str, base_dir: &Path) -> Result<String> {
    interpolate_with(text, place, |name| std::env::var(name).ok(), base_dir)
}

/// The contents of a secret file, without the line end editors add.
fn read_secret(path: &str, place: &str, base_dir: &Path) -> Result<String> {
    let full = base_dir.join(path);
    let text = std::fs::read_to_string(&full).map_err(|e| {
        Error::Config(format!(
            "{place}: cannot read the secret file {}: {e}",
            full.display()
        ))
    })?;
    Ok(text
        .strip_suffix('\n')
        .map_or(text.as_str(), |t| t.strip_suffix('\r').unwrap_or(t))
        .to_string())
}

fn interpolate_with(
    text: &str,
    place: &str,
    lookup: impl Fn(&str) -> Option<String>,
    base_dir: &Path,
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
        if let Some(path) = inner.strip_prefix("file:") {
            out.push_str(&read_secret(path, place, base_dir)?);
            rest = &after[end + 1..];
            continue;
        }
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
        let here = Path::new(".");
        let got = interpolate_with("postgres://u:${PASS}@h/${DB:-shop}", "k", env, here).unwrap();
        assert_eq!(got, "postgres://u:s3cret@h/shop");
        let err = interpolate_with("x${MISSING}", "p.toml:3 source.url", env, here).unwrap_err();
        assert_eq!(
            err.to_string(),
            "p.toml:3 source.url: environment variable MISSING is not set"
        );
        assert!(interpolate_with("${oops", "k", env, here).is_err());
        assert!(interpolate_with("${a b}", "k", env, here).is_err());
    }

    #[test]
    fn secret_files_are_read_from_the_pipeline_folder() {
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::write(dir.path().join("pg.pass"), "p@ss w0rd\n").expect("write");
        let got = interpolate_with("postgres://u:${file:pg.pass}@h/db", "k", env, dir.path())
            .expect("interpolates");
        assert_eq!(got, "postgres://u:p@ss w0rd@h/db");
        let err = interpolate_with("${file:nope}", "p.toml:2 source.url", env, dir.path())
            .expect_err("missing file");
        assert!(
            err.to_string()
                .contains("p.toml:2 source.url: cannot read the secret file")
        );
    }
}
