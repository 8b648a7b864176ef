//! `${VAR}`, `${VAR:-default}` and `${file:PATH}` in pipeline strings and
//! command-line URLs. Values are never echoed in errors: they may be
//! passwords. A secret file (a mounted Kubernetes or Docker secret, say)
//! keeps the password out of the environment and of `ps`.

use std::path::Path;

use crate::error::{Error, Result};

/// Where `${…}` references take their values. The command line reads
/// the process's environment and any file ([`ProcessSecrets`]); the
/// service allows only the variables and the folder it was configured
/// with, so that a posted pipeline cannot read the others.
pub trait Secrets: Sync {
    /// `${VAR}`, `${env:VAR}`: the variable's value, `None` when unset.
    /// An error refuses the reference (`place` names it).
    fn env(&self, name: &str, place: &str) -> Result<Option<String>>;
    /// `${file:PATH}`: the secret file's contents (`path` is resolved
    /// against the pipeline's folder).
    fn file(&self, path: &Path, place: &str) -> Result<String>;
}

/// The process's environment and any readable file.
pub struct ProcessSecrets;

impl Secrets for ProcessSecrets {
    fn env(&self, name: &str, _place: &str) -> Result<Option<String>> {
        Ok(std::env::var(name).ok())
    }

    fn file(&self, path: &Path, place: &str) -> Result<String> {
        read_secret_file(path, place)
    }
}

/// The contents of a secret file, without the line end editors add.
pub fn read_secret_file(path: &Path, place: &str) -> Result<String> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        Error::Config(format!(
            "{place}: cannot read the secret file {}: {e}",
            path.display()
        ))
    })?;
    Ok(text
        .strip_suffix('\n')
        .map_or(text.as_str(), |t| t.strip_suffix('\r').unwrap_or(t))
        .to_string())
}

/// Replaces the references of `text`; `place` names it in errors, secret
/// files are taken from `base_dir`.
pub(super) fn interpolate(
    text: &str,
    place: &str,
    base_dir: &Path,
    secrets: &dyn Secrets,
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
        rest = &after[end + 1..];
        if let Some(path) = inner.strip_prefix("file:") {
            out.push_str(&secrets.file(&base_dir.join(path), place)?);
            continue;
        }
        let inner = inner.strip_prefix("env:").unwrap_or(inner);
        let (name, default) = match inner.split_once(":-") {
            Some((n, d)) => (n, Some(d)),
            None => (inner, None),
        };
        if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err(Error::Config(format!(
                "{place}: `${{{inner}}}` is not a valid variable name"
            )));
        }
        match (secrets.env(name, place)?, default) {
            (Some(value), _) => out.push_str(&value),
            (None, Some(default)) => out.push_str(default),
            (None, None) => {
                return Err(Error::Config(format!(
                    "{place}: environment variable {name} is not set"
                )));
            }
        }
    }
    out.push_str(rest);
    Ok(out)
}

/// The references `${…}` of `text`, as written between the braces.
pub fn references(text: &str) -> Vec<&str> {
    let mut found = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find("${") {
        let after = &rest[start + 2..];
        let Some(end) = after.find('}') else { break };
        found.push(&after[..end]);
        rest = &after[end + 1..];
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Pass;

    impl Secrets for Pass {
        fn env(&self, name: &str, _: &str) -> Result<Option<String>> {
            Ok((name == "PASS").then(|| "s3cret".to_string()))
        }
        fn file(&self, path: &Path, place: &str) -> Result<String> {
            read_secret_file(path, place)
        }
    }

    fn interpolate_with(text: &str, place: &str, secrets: Pass, dir: &Path) -> Result<String> {
        interpolate(text, place, dir, &secrets)
    }
    #[allow(non_upper_case_globals)]
    const env: Pass = Pass;

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
        let got = interpolate_with("${env:PASS}/${env:NO:-x}", "k", env, here).unwrap();
        assert_eq!(got, "s3cret/x");
        assert_eq!(references("a${env:A}b${file:f}c${x"), ["env:A", "file:f"]);
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
