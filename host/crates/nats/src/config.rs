//! `nats://[USER:PASS@]HOST:PORT/STREAM[?subject_prefix=P&…]`: the server,
//! the JetStream stream, and how messages are laid out on it. Parsed when
//! the endpoint is opened; mistakes name the URL's place and the option.

use std::path::PathBuf;
use std::time::Duration;

use dmp_contract::{Endpoint, Error, Result, resolve_path};
use secrecy::SecretString;

pub const EXAMPLE: &str = "nats://HOST:4222/STREAM";
const DEFAULT_PORT: u16 = 4222;

/// How a message body is laid out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// Debezium's envelope (the default).
    Debezium,
    /// CloudEvents, structured mode.
    CloudEvents,
}

/// Secrets are `SecretString`s: their `Debug` says `[REDACTED]`.
#[derive(Debug, Clone)]
pub struct NatsConfig {
    /// `host:port`.
    pub server: String,
    pub user: Option<String>,
    pub password: Option<SecretString>,
    pub token: Option<SecretString>,
    /// A `.creds` file (JWT and NKey seed).
    pub creds: Option<PathBuf>,
    /// Refuse a connection without TLS.
    pub tls: bool,
    pub stream: String,
    /// Subjects are `PREFIX.<table>` (`PREFIX.<schema>.<table>`).
    pub subject_prefix: String,
    /// When the stream is created: its replicas, and how long and how much
    /// it keeps (JetStream's defaults: 1, for ever, no limit).
    pub replicas: usize,
    pub max_age: Option<Duration>,
    pub max_bytes: Option<i64>,
    pub format: Format,
    /// Embed Debezium's `schema` part in each message.
    pub schemas: bool,
    /// Where the URL was written, for messages.
    pub place: String,
}

impl NatsConfig {
    pub fn parse(endpoint: &Endpoint) -> Result<NatsConfig> {
        let place = endpoint.place().to_string();
        let bad = |what: String| Error::Config(format!("{place}: {what}"));
        let url =
            dmp_contract::sql_url::parse(endpoint.expose_url(), "NATS", EXAMPLE).map_err(bad)?;
        if url.host.is_empty() {
            return Err(bad(format!("no server (write {EXAMPLE})")));
        }
        check_stream(&url.database).map_err(bad)?;
        let mut config = NatsConfig {
            server: format!("{}:{}", url.host, url.port.unwrap_or(DEFAULT_PORT)),
            user: Some(url.user).filter(|u| !u.is_empty()),
            password: url.password.map(SecretString::from),
            token: None,
            creds: None,
            tls: false,
            subject_prefix: url.database.clone(),
            stream: url.database,
            replicas: 1,
            max_age: None,
            max_bytes: None,
            format: Format::Debezium,
            schemas: false,
            place: place.clone(),
        };
        for (key, value) in url.options {
            config.set(&key, &value, endpoint).map_err(bad)?;
        }
        Ok(config)
    }

    /// One `?key=value` option.
    fn set(
        &mut self,
        key: &str,
        value: &str,
        endpoint: &Endpoint,
    ) -> std::result::Result<(), String> {
        let flag = |value: &str| match value {
            "true" | "1" | "yes" => Ok(true),
            "false" | "0" | "no" => Ok(false),
            _ => Err(format!("`{key}={value}`: expected true or false")),
        };
        match key {
            "subject_prefix" => {
                if value.is_empty()
                    || value
                        .split('.')
                        .any(|t| t.is_empty() || t != subject_token(t))
                {
                    return Err(format!(
                        "`subject_prefix={value}`: dot-separated tokens without spaces, `*` or `>`"
                    ));
                }
                self.subject_prefix = value.to_string();
            }
            "token" => self.token = Some(SecretString::from(value.to_string())),
            "creds" => self.creds = Some(resolve_path(endpoint.base_dir(), value)),
            "tls" => self.tls = flag(value)?,
            "replicas" => {
                self.replicas = value
                    .parse()
                    .ok()
                    .filter(|n| (1..=5).contains(n))
                    .ok_or_else(|| format!("`replicas={value}`: 1 to 5"))?;
            }
            "max_age" => {
                let age = humantime_like(value)
                    .ok_or_else(|| format!("`max_age={value}`: a duration such as 7d or 12h"))?;
                self.max_age = Some(age);
            }
            "max_bytes" => {
                self.max_bytes =
                    Some(value.parse().ok().filter(|n| *n > 0).ok_or_else(|| {
                        format!("`max_bytes={value}`: a positive number of bytes")
                    })?);
            }
            "format" => {
                self.format = match value {
                    "debezium" => Format::Debezium,
                    "cloudevents" => Format::CloudEvents,
                    _ => return Err(format!("`format={value}`: debezium or cloudevents")),
                };
            }
            "schemas" => self.schemas = flag(value)?,
            _ => {
                return Err(format!(
                    "unknown nats:// option `{key}` (subject_prefix, token, creds, tls, replicas, max_age, max_bytes, format, schemas)"
                ));
            }
        }
        Ok(())
    }

    /// The subject of a table's changes: `PREFIX[.SCHEMA].TABLE`.
    pub fn subject(&self, namespace: Option<&str>, table: &str) -> String {
        match namespace {
            Some(schema) => format!(
                "{}.{}.{}",
                self.subject_prefix,
                subject_token(schema),
                subject_token(table)
            ),
            None => format!("{}.{}", self.subject_prefix, subject_token(table)),
        }
    }

    /// The subject of a table's schema messages: `PREFIX._schema[.SCHEMA].TABLE`
    /// (no table subject is there: `_schema` is a prefix's own token).
    pub fn schema_subject(&self, namespace: Option<&str>, table: &str) -> String {
        let prefix = format!("{}._schema", self.subject_prefix);
        match namespace {
            Some(schema) => format!(
                "{prefix}.{}.{}",
                subject_token(schema),
                subject_token(table)
            ),
            None => format!("{prefix}.{}", subject_token(table)),
        }
    }

    /// Every subject of this endpoint, for the stream's configuration.
    pub fn subjects(&self) -> String {
        format!("{}.>", self.subject_prefix)
    }
}

/// `7d`, `12h`, `30m`, `45s`.
fn humantime_like(text: &str) -> Option<Duration> {
    let (number, unit) = text.split_at(text.find(|c: char| !c.is_ascii_digit())?);
    let n: u64 = number.parse().ok().filter(|n| *n > 0)?;
    let secs = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => return None,
    };
    Some(Duration::from_secs(n.checked_mul(secs)?))
}

/// JetStream stream names: no spaces, dots, wildcards or path separators.
fn check_stream(name: &str) -> std::result::Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 255
        && name.chars().all(|c| {
            !c.is_whitespace() && !c.is_control() && !matches!(c, '.' | '*' | '>' | '/' | '\\')
        });
    if ok {
        Ok(())
    } else {
        Err(format!(
            "`{}` is not a JetStream stream name (the URL's path, without spaces, `.`, `*`, `>` or slashes)",
            dmp_model::printable(name)
        ))
    }
}

/// A name as one subject token: `%`, `.`, `*`, `>` and whitespace written
/// as `%XX`, so that every table has its own subject and no name is a
/// wildcard.
pub fn subject_token(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for c in name.chars() {
        if matches!(c, '%' | '.' | '*' | '>') || c.is_whitespace() || c.is_control() {
            let mut bytes = [0u8; 4];
            for b in c.encode_utf8(&mut bytes).bytes() {
                out.push_str(&format!("%{b:02X}"));
            }
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(url: &str) -> Result<NatsConfig> {
        NatsConfig::parse(&Endpoint::new(
            url,
            std::path::Path::new("/base"),
            "p.toml:3 target.url",
        ))
    }

    #[test]
    fn urls_give_server_stream_subjects_and_options() {
        let c = parse("nats://u:p%40ss@bus:4333/CHANGES?subject_prefix=shop.cdc&replicas=3&max_age=7d&creds=app.creds")
            .expect("parses");
        assert_eq!(
            (c.server.as_str(), c.stream.as_str()),
            ("bus:4333", "CHANGES")
        );
        use secrecy::ExposeSecret;
        assert_eq!(c.user.as_deref(), Some("u"));
        assert_eq!(
            c.password.as_ref().map(ExposeSecret::expose_secret),
            Some("p@ss")
        );
        assert!(!format!("{c:?}").contains("p@ss"));
        assert_eq!(
            (c.replicas, c.max_age),
            (3, Some(Duration::from_secs(7 * 86_400)))
        );
        assert_eq!(c.creds, Some(PathBuf::from("/base/app.creds")));
        assert_eq!(
            c.subject(Some("public"), "order items"),
            "shop.cdc.public.order%20items"
        );
        assert_eq!(c.subject(None, "a.b*"), "shop.cdc.a%2Eb%2A");
        assert_eq!(c.subjects(), "shop.cdc.>");
        let d = parse("nats://127.0.0.1/S").expect("parses");
        assert_eq!(
            (d.server.as_str(), d.subject_prefix.as_str(), d.format),
            ("127.0.0.1:4222", "S", Format::Debezium)
        );
    }

    #[test]
    fn mistakes_name_the_place_and_the_option() {
        let err = |url: &str| parse(url).expect_err("refused").to_string();
        assert!(
            err("nats://h/S?nope=1")
                .starts_with("p.toml:3 target.url: unknown nats:// option `nope`")
        );
        assert!(err("nats://h/a.b").contains("is not a JetStream stream name"));
        assert!(err("nats://h/").contains("is not a JetStream stream name"));
        assert!(err("nats://h/S?replicas=9").contains("`replicas=9`: 1 to 5"));
        assert!(err("nats://h/S?subject_prefix=a..b").contains("`subject_prefix=a..b`"));
        assert!(err("nats://h/S?max_age=soon").contains("`max_age=soon`"));
        assert!(!err("nats://u:secret@h/a.b").contains("secret"));
    }
}
