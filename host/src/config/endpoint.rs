//! A source or target URL. The URL may hold a password: it is kept as a
//! secret and only ever shown masked.

use std::fmt;
use std::path::{Path, PathBuf};

use secrecy::{ExposeSecret, SecretString};

use crate::error::{Error, Result};

#[derive(Clone)]
pub struct Endpoint {
    url: SecretString,
    scheme: String,
    masked: String,
    base_dir: PathBuf,
    place: String,
}

impl Endpoint {
    /// `place` names where the URL was written (`pipeline.toml:3 source.url`);
    /// relative paths in it are taken from `base_dir`.
    pub fn new(url: &str, base_dir: &Path, place: impl Into<String>) -> Result<Self> {
        let place = place.into();
        let masked = mask_url(url);
        let scheme = match url.split_once("://") {
            Some((scheme, _))
                if !scheme.is_empty()
                    && scheme
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '+') =>
            {
                scheme.to_ascii_lowercase()
            }
            _ => {
                return Err(Error::Config(format!(
                    "{place}: `{masked}` is not a URL (expected sqlite://PATH, file://DIR?format=csv|jsonl|parquet, postgres://..., mysql://...)"
                )));
            }
        };
        Ok(Endpoint {
            url: SecretString::from(url.to_string()),
            scheme,
            masked,
            base_dir: base_dir.to_path_buf(),
            place,
        })
    }

    pub fn scheme(&self) -> &str {
        &self.scheme
    }

    /// Where the URL was written, for error messages.
    pub fn place(&self) -> &str {
        &self.place
    }

    pub fn base_dir(&self) -> &Path {
        &self.base_dir
    }

    /// The URL with its password, for connectors only.
    pub fn expose_url(&self) -> &str {
        self.url.expose_secret()
    }

    /// For path-like URLs (`sqlite://`, `file://`): the part after `://` up
    /// to `?`, and the query's `key=value` pairs.
    pub fn path_and_params(&self) -> Result<(&str, Vec<(String, String)>)> {
        let rest = self
            .expose_url()
            .split_once("://")
            .map_or("", |(_, rest)| rest);
        let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
        let mut params = Vec::new();
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (k, v) = pair.split_once('=').ok_or_else(|| {
                Error::Config(format!(
                    "{}: URL option `{pair}` has no `=value`",
                    self.place
                ))
            })?;
            params.push((k.to_string(), percent_decode(v)));
        }
        Ok((path, params))
    }
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.masked)
    }
}

impl fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Endpoint({})", self.masked)
    }
}

/// `%XX` escapes in URL options (`null=%5CN` is `\N`).
fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 3 <= bytes.len() {
            let hex = &bytes[i + 1..i + 3];
            if hex.iter().all(u8::is_ascii_hexdigit) {
                let digits = std::str::from_utf8(hex).unwrap_or("");
                if let Some(b) = crate::model::decode_hex(digits) {
                    out.extend(b);
                    i += 3;
                    continue;
                }
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Hides the password of `user:password@host` and of `password=` options.
pub fn mask_url(url: &str) -> String {
    let (prefix, rest) = match url.split_once("://") {
        Some((scheme, rest)) => (format!("{scheme}://"), rest),
        None => (String::new(), url),
    };
    let mut out = url.to_string();
    let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
    let authority = &rest[..authority_end];
    if let Some(at) = authority.rfind('@')
        && let Some((user, _)) = authority[..at].split_once(':')
    {
        out = format!("{prefix}{user}:***{}", &rest[at..]);
    }
    if let Some((base, query)) = out.clone().split_once('?') {
        let masked: Vec<String> = query
            .split('&')
            .map(|pair| match pair.split_once('=') {
                Some((k, _))
                    if k.to_ascii_lowercase().contains("pass")
                        || k.eq_ignore_ascii_case("secret") =>
                {
                    format!("{k}=***")
                }
                _ => pair.to_string(),
            })
            .collect();
        out = format!("{base}?{}", masked.join("&"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_never_show() {
        assert_eq!(
            mask_url("postgres://app:s3cr%40t@db:5432/shop?sslmode=require"),
            "postgres://app:***@db:5432/shop?sslmode=require"
        );
        assert_eq!(
            mask_url("mysql://root@h/db?password=x&a=1"),
            "mysql://root@h/db?password=***&a=1"
        );
        assert_eq!(mask_url("sqlite://data/shop.db"), "sqlite://data/shop.db");
        let e = Endpoint::new("postgres://u:hunter2@h/db", Path::new("."), "here").unwrap();
        assert!(!format!("{e} {e:?}").contains("hunter2"));
        let err = Endpoint::new("u:hunter2@h/db", Path::new("."), "here").unwrap_err();
        assert!(!err.to_string().contains("hunter2"));
    }

    #[test]
    fn path_and_options() {
        let e = Endpoint::new(
            "file://out/dir?format=csv&null=%5CN",
            Path::new("."),
            "here",
        )
        .unwrap();
        let (path, params) = e.path_and_params().unwrap();
        assert_eq!(path, "out/dir");
        assert_eq!(
            params,
            vec![
                ("format".into(), "csv".into()),
                ("null".into(), "\\N".into())
            ]
        );
    }
}
