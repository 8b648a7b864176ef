//! The URL of a SQL server, as the PostgreSQL and MySQL connectors take it:
//! `scheme://user[:password]@host[:port]/database[?key=value&…]`. One
//! parser, so that both read `%`-escapes, IPv6 brackets and ports alike;
//! each connector then applies its defaults and reads the options it knows.
//! Errors say which part is wrong and never repeat the password.

/// The parts of a URL, `%`-escapes decoded.
#[derive(Debug, PartialEq, Eq)]
pub struct SqlUrl {
    /// Empty when the URL names none.
    pub user: String,
    pub password: Option<String>,
    /// A name or address (brackets of an IPv6 address removed), or a Unix
    /// socket directory given as `%2Frun%2Fpg`; empty when the URL has none.
    pub host: String,
    pub port: Option<u16>,
    /// Empty when the URL names none.
    pub database: String,
    /// `key=value` options in their order, values decoded.
    pub options: Vec<(String, String)>,
}

/// Parses `url`; `system` names the server in messages ("PostgreSQL") and
/// `example` shows a good URL.
pub fn parse(url: &str, system: &str, example: &str) -> Result<SqlUrl, String> {
    let rest = url
        .split_once("://")
        .map(|(_, rest)| rest)
        .ok_or_else(|| format!("expected a URL like {example}"))?;
    let (rest, query) = rest.split_once('?').unwrap_or((rest, ""));
    let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
    // The last `@`: a password may hold an unescaped one.
    let (userinfo, hostport) = match authority.rsplit_once('@') {
        Some((u, h)) => (Some(u), h),
        None => (None, authority),
    };
    let (user, password) = match userinfo {
        Some(info) => match info.split_once(':') {
            Some((u, p)) => (decode(u, system)?, Some(decode(p, system)?)),
            None => (decode(info, system)?, None),
        },
        None => (String::new(), None),
    };
    let (host, port) = host_and_port(hostport, system)?;
    let mut options = Vec::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair
            .split_once('=')
            .ok_or_else(|| format!("URL option `{pair}` has no `=value`"))?;
        options.push((key.to_string(), decode(value, system)?));
    }
    Ok(SqlUrl {
        user,
        password,
        host,
        port,
        database: decode(path.trim_end_matches('/'), system)?,
        options,
    })
}

fn host_and_port(hostport: &str, system: &str) -> Result<(String, Option<u16>), String> {
    let (host, port) = if let Some(v6) = hostport.strip_prefix('[') {
        let (host, after) = v6
            .split_once(']')
            .ok_or_else(|| format!("unclosed `[` in the {system} URL's host"))?;
        (host.to_string(), after.strip_prefix(':'))
    } else {
        match hostport.rsplit_once(':') {
            Some((h, p)) => (decode(h, system)?, Some(p)),
            None => (decode(hostport, system)?, None),
        }
    };
    let port = match port {
        None | Some("") => None,
        Some(p) => Some(p.parse().map_err(|_| {
            format!("the {system} URL's port `{p}` is not a number from 1 to 65535")
        })?),
    };
    Ok((host, port))
}

/// `%XX` escapes of user, password, host, database and option values.
fn decode(text: &str, system: &str) -> Result<String, String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let decoded = bytes
                .get(i + 1..i + 3)
                .and_then(|hex| std::str::from_utf8(hex).ok())
                .and_then(dmp_model::decode_hex);
            match decoded {
                Some(b) => {
                    out.extend(b);
                    i += 3;
                    continue;
                }
                None => return Err(format!("bad `%` escape in the {system} URL")),
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8(out).map_err(|_| format!("a `%` escape in the {system} URL is not UTF-8"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(url: &str) -> Result<SqlUrl, String> {
        super::parse(url, "X", "x://u@h/db")
    }

    #[test]
    fn every_part_is_decoded_alike() {
        let url = parse("x://a%40b:p%40ss@w%2Eexample:6543/my%20db?o=%5CN&k=v").expect("parses");
        assert_eq!(
            url,
            SqlUrl {
                user: "a@b".into(),
                password: Some("p@ss".into()),
                host: "w.example".into(),
                port: Some(6543),
                database: "my db".into(),
                options: vec![("o".into(), "\\N".into()), ("k".into(), "v".into())],
            }
        );
        let url = parse("x://u@[::1]/").expect("parses");
        assert_eq!(
            (url.host.as_str(), url.port, url.database.as_str()),
            ("::1", None, "")
        );
        // An unescaped `@` in the password: the last one ends it.
        let url = parse("x://u:p@ss@h/db").expect("parses");
        assert_eq!(
            (url.password.as_deref(), url.host.as_str()),
            (Some("p@ss"), "h")
        );
    }

    #[test]
    fn mistakes_are_named_without_the_password() {
        for (url, says) in [
            ("u:hunter2@h/db", "expected a URL like"),
            ("x://u:hunter2@h:port/db", "port `port`"),
            ("x://u:hunter2@[::1/db", "unclosed `[`"),
            ("x://u:hunter2@h/db?flag", "`flag` has no `=value`"),
            ("x://u:hunter2@h/d%zz", "bad `%` escape"),
            ("x://u:hunter2@h/d%ff", "not UTF-8"),
        ] {
            let err = parse(url).expect_err(url);
            assert!(
                err.contains(says) && !err.contains("hunter2"),
                "{url}: {err}"
            );
        }
    }
}
