//! A source or target URL. The URL may hold a password: it is kept as a
//! secret and only ever shown masked.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use secrecy::{ExposeSecret, SecretString};

use crate::error::{Error, Result};

#[derive(Clone)]
pub struct Endpoint {
    url: SecretString,
    scheme: String,
    masked: String,
    base_dir: PathBuf,
    place: String,
    options: Option<Arc<ConnectorOptions>>,
}

/// A `[source.options]` or `[target.options]` table: settings of one
/// connector, which it reads as a typed struct of its own.
struct ConnectorOptions {
    /// Always an object.
    table: serde_json::Value,
    /// Where the table was written (`pipeline.toml:7 source.options`).
    place: String,
    /// Whether the connector read it: the registry refuses a table that
    /// a connector without options was given.
    read: AtomicBool,
}

impl Endpoint {
    /// `place` names where the URL was written (`pipeline.toml:3 source.url`);
    /// relative paths in it are taken from `base_dir`. Text that is not a
    /// URL is kept too: the connector registry refuses it when the endpoint
    /// is opened, with an example of each connector's URL.
    pub fn new(url: &str, base_dir: &Path, place: impl Into<String>) -> Self {
        let scheme = match url.split_once("://") {
            Some((scheme, _))
                if !scheme.is_empty()
                    && scheme
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '+') =>
            {
                scheme.to_ascii_lowercase()
            }
            _ => String::new(),
        };
        Endpoint {
            url: SecretString::from(url.to_string()),
            scheme,
            masked: mask_url(url),
            base_dir: base_dir.to_path_buf(),
            place: place.into(),
            options: None,
        }
    }

    /// The connector's own settings (`[source.options]`), written at
    /// `place`.
    pub fn with_options(
        mut self,
        table: serde_json::Map<String, serde_json::Value>,
        place: impl Into<String>,
    ) -> Self {
        self.options = Some(Arc::new(ConnectorOptions {
            table: serde_json::Value::Object(table),
            place: place.into(),
            read: AtomicBool::new(false),
        }));
        self
    }

    /// The connector's settings as its typed struct `T` (which denies
    /// unknown fields), or `T::default()` where none were given. A mistake
    /// names the place and the fields `T` knows.
    pub fn options<T: serde::de::DeserializeOwned + Default>(&self) -> Result<T> {
        let Some(options) = &self.options else {
            return Ok(T::default());
        };
        options.read.store(true, Ordering::Relaxed);
        T::deserialize(&options.table).map_err(|e| {
            Error::Config(format!(
                "{}: {}",
                options.place,
                mask_secrets(&e.to_string())
            ))
        })
    }

    /// Where the connector's options were written, if they were.
    pub fn options_place(&self) -> Option<&str> {
        self.options.as_ref().map(|options| options.place.as_str())
    }

    /// Where options were given that no connector read: the place to name.
    pub fn unread_options(&self) -> Option<&str> {
        self.options
            .as_ref()
            .filter(|options| !options.read.load(Ordering::Relaxed))
            .map(|options| options.place.as_str())
    }

    /// Whether the text has the form `SCHEME://…`.
    pub fn is_url(&self) -> bool {
        !self.scheme.is_empty()
    }

    /// The URL without its password, for messages.
    pub fn masked(&self) -> &str {
        &self.masked
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

    /// The name of the database (or file) the URL points at, as a message
    /// names where its rows come from: the last segment of its path, a
    /// file's without its extension. `None` when the path has none.
    pub fn database_name(&self) -> Option<String> {
        let rest = self.expose_url().split_once("://")?.1;
        let path = rest.split(['?', '#']).next()?;
        // Credentials and host come before the first slash of a server URL.
        let last = path.rsplit('/').find(|s| !s.is_empty())?;
        if !path.contains('/') && self.scheme != "sqlite" && self.scheme != "file" {
            return None;
        }
        let name = match last.rsplit_once('.') {
            Some((stem, _))
                if !stem.is_empty() && matches!(self.scheme.as_str(), "sqlite" | "file") =>
            {
                stem
            }
            _ => last,
        };
        Some(name.to_string())
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
                if let Some(b) = dmp_model::decode_hex(digits) {
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

/// Hides the password of `user:password@host` and of `password=` options,
/// also in a mistyped URL (`postgres:/user:pw@host`, `user:pw@host`):
/// everything after the first `:` of the user part goes, which may hide
/// more than the password but never less.
pub fn mask_url(url: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((base, query)) => (base, Some(query)),
        None => (url, None),
    };
    let mut out = mask_userinfo(base);
    if let Some(query) = query {
        let masked: Vec<String> = query
            .split('&')
            .map(|pair| match pair.split_once('=') {
                Some((k, _)) if is_secret_key(k) => format!("{k}=***"),
                _ => pair.to_string(),
            })
            .collect();
        out = format!("{out}?{}", masked.join("&"));
    }
    out
}

/// `scheme://user:secret@rest` → `scheme://user:***@rest`, for any number
/// of slashes (or none) after the scheme.
fn mask_userinfo(base: &str) -> String {
    let Some(at) = base.rfind('@') else {
        return base.to_string();
    };
    // The user part starts after the scheme's `:` and slashes, if any.
    let start = match base[..at].find("://") {
        Some(i) => i + 3,
        None => match base[..at].find(":/") {
            Some(i) => i + 1 + base[i + 1..at].chars().take_while(|c| *c == '/').count(),
            None => 0,
        },
    };
    match base[start..at].find(':') {
        Some(colon) => format!("{}:***{}", &base[..start + colon], &base[at..]),
        None => base.to_string(),
    }
}

/// `password = "x"`, `token: x`, `"secret"="x"` → the value as `***`.
fn mask_assignments(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find(['=', ':']) {
        let (before, after) = (&rest[..i], &rest[i + 1..]);
        out.push_str(before);
        out.push_str(&rest[i..=i]);
        let key: String = before
            .trim_end()
            .trim_end_matches(['"', '\''])
            .chars()
            .rev()
            .take_while(|c| c.is_alphanumeric() || matches!(c, '_' | '-'))
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect();
        if key.is_empty() || !is_secret_key(&key) || after.starts_with("//") {
            rest = after;
            continue;
        }
        let spaces = after.len() - after.trim_start().len();
        out.push_str(&after[..spaces]);
        let value = &after[spaces..];
        let end = match value.chars().next() {
            Some(quote @ ('"' | '\'')) => value[1..].find(quote).map_or(value.len(), |e| e + 2),
            _ => value
                .find([',', '}', ']', ' ', '&', ';'])
                .unwrap_or(value.len()),
        };
        let quoted = value.starts_with(['"', '\'']) && end >= 2;
        if quoted {
            out.push_str(&value[..1]);
            out.push_str("***");
            out.push_str(&value[end - 1..end]);
        } else if end > 0 {
            out.push_str("***");
        }
        rest = &value[end..];
    }
    out.push_str(rest);
    out
}

/// Whether an option or setting of this name holds a secret.
pub fn is_secret_key(key: &str) -> bool {
    let key = key.to_ascii_lowercase();
    key.contains("pass") || key.contains("secret") || key.contains("token")
}

/// Masks every URL-like word of a free text (an error of another
/// library, a line of a file that may quote the input): words with `@` or
/// a secret option, and the value of every `secret_key = value`.
pub fn mask_secrets(text: &str) -> String {
    let text = mask_assignments(text);
    let mut out = String::with_capacity(text.len());
    let mut word = String::new();
    let flush = |word: &mut String, out: &mut String| {
        if word.contains('@') || word.contains('=') {
            out.push_str(&mask_url(word));
        } else {
            out.push_str(word);
        }
        word.clear();
    };
    for c in text.chars() {
        if c.is_whitespace() || matches!(c, '"' | '\'' | '`' | '<' | '>' | ',' | ';') {
            flush(&mut word, &mut out);
            out.push(c);
        } else {
            word.push(c);
        }
    }
    flush(&mut word, &mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_database_is_named_from_the_path() {
        let name = |url: &str| Endpoint::new(url, Path::new("."), "t").database_name();
        assert_eq!(
            name("postgres://u:p@db:5432/shop?sslmode=require").as_deref(),
            Some("shop")
        );
        assert_eq!(name("mysql://u@db/sales").as_deref(), Some("sales"));
        assert_eq!(name("sqlite://data/shop.db").as_deref(), Some("shop"));
        assert_eq!(name("sqlite://shop.db").as_deref(), Some("shop"));
        assert_eq!(name("postgres://db:5432"), None);
    }

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
        let e = Endpoint::new("postgres://u:hunter2@h/db", Path::new("."), "here");
        assert!(!format!("{e} {e:?}").contains("hunter2"));
        let not_url = Endpoint::new("u:hunter2@h/db", Path::new("."), "here");
        assert!(!not_url.is_url());
        assert!(!format!("{not_url} {not_url:?}").contains("hunter2"));
    }

    #[test]
    fn mistyped_urls_hide_their_password_too() {
        for typo in [
            "postgres:/user:hunter2@host/db",
            "postgres:user:hunter2@host/db",
            "postgres//user:hunter2@host/db",
            "user:hunter2@host/db",
            "postgres://user:hun/ter2@host/db",
            "postgres://user:hunter2@host/db?sslmode=require&password=hunter2",
        ] {
            let masked = mask_url(typo);
            assert!(
                !masked.contains("hunter2") && !masked.contains("ter2"),
                "{typo} -> {masked}"
            );
            let endpoint = Endpoint::new(typo, Path::new("."), "here");
            let shown = format!("{endpoint} {endpoint:?}");
            assert!(!shown.contains("hunter2"), "{shown}");
        }
        assert_eq!(
            mask_url("postgres:/user:pw@host/db"),
            "postgres:/user:***@host/db"
        );
        let text = "invalid type: string \"postgres://u:hunter2@h/db\", expected an integer";
        assert_eq!(
            mask_secrets(text),
            "invalid type: string \"postgres://u:***@h/db\", expected an integer"
        );
        assert_eq!(
            mask_secrets("config = { password = \"hunter2\", salt = 5, api_token: t0k }"),
            "config = { password = \"***\", salt = 5, api_token: *** }"
        );
    }

    #[test]
    fn path_and_options() {
        let e = Endpoint::new(
            "file://out/dir?format=csv&null=%5CN",
            Path::new("."),
            "here",
        );
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
