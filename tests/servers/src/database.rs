//! One test's own database, and SQL run in it through the servers' own
//! command-line clients (`psql`, `mariadb`), so the test support shares no
//! driver code with the connectors it checks.

use std::fmt;
use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};

/// psql's field separator and NULL marker: control characters no test value
/// holds. Rows end with NUL, which PostgreSQL text cannot contain.
const PG_FIELD_SEPARATOR: &str = "\u{1f}";
const PG_NULL: &str = "\u{1d}";

/// Which client runs the SQL, and where it connects.
#[derive(Debug, Clone)]
pub(crate) enum Client {
    Psql { program: PathBuf, port: u16 },
    Mariadb { program: PathBuf, port: u16 },
}

impl Client {
    /// A client session on `database` ("" for none, MariaDB only), reading
    /// SQL from stdin. `rows` selects the machine-readable output.
    pub(crate) fn command(&self, database: &str, rows: bool) -> Command {
        match self {
            Client::Psql { program, port } => {
                let mut cmd = Command::new(program);
                cmd.args(["-X", "-q", "-v", "ON_ERROR_STOP=1", "-h", "127.0.0.1"])
                    .args(["-p", &port.to_string(), "-U", "postgres", "-d", database])
                    .env("PGCLIENTENCODING", "UTF8")
                    .env("PGCONNECT_TIMEOUT", "10");
                if rows {
                    cmd.args(["-A", "-t", "-0", "-F", PG_FIELD_SEPARATOR])
                        .args(["-P", &format!("null={PG_NULL}")]);
                }
                cmd
            }
            Client::Mariadb { program, port } => {
                let mut cmd = Command::new(program);
                // --no-defaults first: no ~/.my.cnf or /etc/mysql settings.
                cmd.args([
                    "--no-defaults",
                    "--protocol=TCP",
                    "-h",
                    "127.0.0.1",
                    "-u",
                    "root",
                ])
                .args(["-P", &port.to_string(), "--default-character-set=utf8mb4"])
                .args([
                    "--connect-timeout=10",
                    "--max-allowed-packet=1G",
                    "--batch",
                ]);
                if rows {
                    // XML is the one output that keeps NULL apart from the
                    // string 'NULL' and tabs and newlines inside values.
                    cmd.arg("--xml");
                }
                if !database.is_empty() {
                    cmd.arg(database);
                }
                cmd
            }
        }
    }

    /// Runs `sql` (any number of statements) and returns the client's stdout.
    pub(crate) fn run(&self, database: &str, sql: &str, rows: bool) -> Result<String, SqlError> {
        let error = |message: String| SqlError {
            database: database.to_owned(),
            sql: sql.to_owned(),
            message,
        };
        let mut child = self
            .command(database, rows)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| {
                error(format!(
                    "cannot run {:?}: {e}",
                    self.command(database, rows)
                ))
            })?;
        // SQL goes through stdin (no argument length limit); a thread feeds it
        // so that a big result cannot block the client while we write.
        let mut stdin = child.stdin.take().expect("piped stdin");
        let input = sql.to_owned();
        let feeder = std::thread::spawn(move || stdin.write_all(input.as_bytes()));
        let out = child
            .wait_with_output()
            .map_err(|e| error(format!("client failed: {e}")))?;
        let fed = feeder.join().expect("stdin feeder");
        if !out.status.success() {
            let stderr = String::from_utf8_lossy(&out.stderr);
            return Err(error(format!("{} ({})", stderr.trim_end(), out.status)));
        }
        fed.map_err(|e| error(format!("cannot send the SQL to the client: {e}")))?;
        String::from_utf8(out.stdout).map_err(|_| {
            error(
                "the result is not UTF-8: select binary values as text \
                 (encode(x, 'hex') in PostgreSQL, HEX(x) in MariaDB)"
                    .into(),
            )
        })
    }

    fn parse(&self, output: &str) -> Result<Rows, String> {
        match self {
            Client::Psql { .. } => Ok(parse_psql(output)),
            Client::Mariadb { .. } => parse_mariadb_xml(output),
        }
    }
}

/// Rows of text cells, `None` for NULL.
pub type Rows = Vec<Vec<Option<String>>>;

/// `psql -A -t -0`: rows end with NUL, fields are separated by
/// [`PG_FIELD_SEPARATOR`], NULL is printed as [`PG_NULL`].
fn parse_psql(output: &str) -> Rows {
    let mut records: Vec<&str> = output.split('\0').collect();
    // Text after the last NUL is not a row (it is empty).
    records.pop();
    records
        .into_iter()
        .map(|record| {
            record
                .split(PG_FIELD_SEPARATOR)
                .map(|v| (v != PG_NULL).then(|| v.to_owned()))
                .collect()
        })
        .collect()
}

/// `mariadb --xml`: `<row>`s of `<field name="…">value</field>`, or
/// `<field name="…" xsi:nil="true" />` for NULL. The client escapes `<`, `>`,
/// `&` and `"` everywhere else, so every `<` starts a tag.
fn parse_mariadb_xml(output: &str) -> Result<Rows, String> {
    let mut rows = Vec::new();
    let mut row: Option<Vec<Option<String>>> = None;
    let mut rest = output;
    while let Some(start) = rest.find('<') {
        rest = &rest[start..];
        if let Some(after) = rest.strip_prefix("<row>") {
            row = Some(Vec::new());
            rest = after;
        } else if let Some(after) = rest.strip_prefix("</row>") {
            rows.extend(row.take());
            rest = after;
        } else if rest.starts_with("<field ") {
            let fields = row.as_mut().ok_or("<field> outside a <row>")?;
            let end = rest.find('>').ok_or("unterminated <field> tag")?;
            let (tag, after) = (&rest[..end], &rest[end + 1..]);
            if tag.ends_with('/') {
                fields.push(None);
                rest = after;
            } else {
                let close = after.find("</field>").ok_or("unterminated <field>")?;
                fields.push(Some(xml_unescape(&after[..close])));
                rest = &after[close + "</field>".len()..];
            }
        } else {
            rest = &rest[1..];
        }
    }
    Ok(rows)
}

fn xml_unescape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(amp) = rest.find('&') {
        out.push_str(&rest[..amp]);
        rest = &rest[amp..];
        let (ch, len) = [
            ("&lt;", '<'),
            ("&gt;", '>'),
            ("&quot;", '"'),
            ("&amp;", '&'),
        ]
        .into_iter()
        .find(|(entity, _)| rest.starts_with(entity))
        .map_or(('&', 1), |(entity, ch)| (ch, entity.len()));
        out.push(ch);
        rest = &rest[len..];
    }
    out.push_str(rest);
    out
}

/// A database of its own for one test, on a server of this process. It is
/// not dropped at the end: the whole server goes when the process ends.
#[derive(Debug, Clone)]
pub struct TestDb {
    /// The database name: the hint given, a counter and our pid, e.g.
    /// `types_origin_3_4711`.
    pub name: String,
    /// A URL for `dmp`: `postgres://postgres@127.0.0.1:PORT/NAME` or
    /// `mysql://root@127.0.0.1:PORT/NAME` (no password).
    pub url: String,
    client: Client,
}

impl TestDb {
    /// Creates the database `name` on the server `client` talks to.
    pub(crate) fn create(client: Client, name: String, url: String, sql: &str) -> TestDb {
        let admin = match client {
            Client::Psql { .. } => "postgres",
            Client::Mariadb { .. } => "",
        };
        if let Err(e) = client.run(admin, sql, false) {
            panic!("cannot create test database {name}: {e}");
        }
        TestDb { name, url, client }
    }

    /// Runs `sql` (one or more statements, stopping at the first error).
    ///
    /// # Panics
    /// With the server's message when a statement fails.
    pub fn exec(&self, sql: &str) {
        if let Err(e) = self.try_exec(sql) {
            panic!("{e}");
        }
    }

    /// Runs `sql` (one or more statements, stopping at the first error).
    pub fn try_exec(&self, sql: &str) -> Result<(), SqlError> {
        self.client.run(&self.name, sql, false).map(drop)
    }

    /// The rows of every row-returning statement in `sql`, in order, each
    /// value as the server's client prints it as text.
    ///
    /// What it guarantees: NULL is `None`, distinct from `Some("")` and, on
    /// both servers, from the string `'NULL'`; tabs, newlines, backslashes,
    /// quotes and any Unicode come back as stored. On MariaDB this is exact
    /// for any value. On PostgreSQL two control characters are reserved: a
    /// value holding U+001F (the field separator) is split in two, and a
    /// value that is exactly U+001D (the NULL marker) reads as NULL. The
    /// output must be UTF-8: select binary values through `encode(x, 'hex')`
    /// or `HEX(x)`. Text is the client's rendering (e.g. PostgreSQL `t`/`f`,
    /// MariaDB `1`/`0` for booleans, timestamps in the session time zone),
    /// so compare values of one server with values of the same server, or
    /// select them in a form both print alike.
    ///
    /// # Panics
    /// With the server's message when a statement fails.
    pub fn query(&self, sql: &str) -> Rows {
        self.try_query(sql).unwrap_or_else(|e| panic!("{e}"))
    }

    /// [`TestDb::query`] returning the error instead of panicking.
    pub fn try_query(&self, sql: &str) -> Result<Rows, SqlError> {
        let output = self.client.run(&self.name, sql, true)?;
        self.client.parse(&output).map_err(|message| SqlError {
            database: self.name.clone(),
            sql: sql.to_owned(),
            message: format!("cannot read the client's output: {message}"),
        })
    }

    /// The one value of a query returning one row of one non-NULL column.
    ///
    /// # Panics
    /// When a statement fails or the result has another shape.
    pub fn scalar(&self, sql: &str) -> String {
        self.try_scalar(sql).unwrap_or_else(|e| panic!("{e}"))
    }

    /// [`TestDb::scalar`] returning the error instead of panicking.
    pub fn try_scalar(&self, sql: &str) -> Result<String, SqlError> {
        let rows = self.try_query(sql)?;
        match rows.as_slice() {
            [row] => match row.as_slice() {
                [Some(value)] => Ok(value.clone()),
                other => Err(format!("one non-NULL column expected, got {other:?}")),
            },
            other => Err(format!("one row expected, got {}", other.len())),
        }
        .map_err(|message| SqlError {
            database: self.name.clone(),
            sql: sql.to_owned(),
            message,
        })
    }

    /// The client (`psql` / `mariadb`) connected to this database, with
    /// nothing else set up: for tests that pipe data through it.
    pub fn client(&self) -> Command {
        self.client.command(&self.name, false)
    }
}

/// A statement failed (or its result could not be read).
#[derive(Debug, Clone)]
pub struct SqlError {
    pub database: String,
    pub sql: String,
    /// The client's error output, e.g. `ERROR:  relation "t" does not exist`.
    pub message: String,
}

impl fmt::Display for SqlError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const SHOWN: usize = 300;
        let sql = self.sql.trim();
        let sql = match sql.char_indices().nth(SHOWN) {
            Some((cut, _)) => format!("{}… ({} bytes)", &sql[..cut], sql.len()),
            None => sql.to_owned(),
        };
        write!(
            f,
            "SQL failed in database {}: {}\n--- SQL:\n{sql}",
            self.database, self.message
        )
    }
}

impl std::error::Error for SqlError {}

/// A name no other test of any process on this server uses: `hint` in
/// lowercase ASCII letters, digits and `_`, then a counter and our pid, at
/// most 60 bytes (both servers allow 63+) and safe unquoted.
pub(crate) fn unique_name(hint: &str) -> String {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let suffix = format!(
        "_{}_{}",
        COUNTER.fetch_add(1, Ordering::Relaxed),
        std::process::id()
    );
    let mut base: String = hint
        .chars()
        .map(|c| match c {
            'a'..='z' | '0'..='9' => c,
            'A'..='Z' => c.to_ascii_lowercase(),
            _ => '_',
        })
        .collect();
    if !base.starts_with(|c: char| c.is_ascii_lowercase()) {
        base.insert_str(0, "db_");
    }
    base.truncate(60 - suffix.len());
    base + &suffix
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_sanitized_unique_and_short() {
        let a = unique_name("Types Origin!");
        let b = unique_name("Types Origin!");
        assert!(a.starts_with("types_origin__"), "{a}");
        assert_ne!(a, b);
        assert!(unique_name("9lives").starts_with("db_9lives_"));
        assert!(unique_name("").starts_with("db__"));
        let long = unique_name(&"x".repeat(100));
        assert!(long.len() <= 60, "{long}");
        assert!(long.ends_with(&format!("_{}", std::process::id())));
    }

    #[test]
    fn psql_output_is_split_on_nul_and_separator() {
        let out = format!("1{PG_FIELD_SEPARATOR}{PG_NULL}\0{PG_FIELD_SEPARATOR}a\tb\n\0\n\0");
        assert_eq!(
            parse_psql(&out),
            vec![
                vec![Some("1".into()), None],
                vec![Some(String::new()), Some("a\tb\n".into())],
                vec![Some("\n".into())],
            ]
        );
        assert!(parse_psql("").is_empty());
    }

    #[test]
    fn mariadb_xml_keeps_null_apart_from_text() {
        let out = "<?xml version=\"1.0\"?>\n\n<resultset statement=\"SELECT &lt;x&gt;\" \
            xmlns:xsi=\"http://www.w3.org/2001/XMLSchema-instance\">\n  <row>\n\
            \t<field name=\"a\" xsi:nil=\"true\" />\n\t<field name=\"b\">NULL</field>\n\
            \t<field name=\"c\"></field>\n\t<field name=\"d&lt;\">&lt;/field&gt;&amp;amp;\t\n&quot;</field>\n\
            </row>\n</resultset>\n<resultset statement=\"x\"></resultset>\n";
        assert_eq!(
            parse_mariadb_xml(out),
            Ok(vec![vec![
                None,
                Some("NULL".into()),
                Some(String::new()),
                Some("</field>&amp;\t\n\"".into())
            ]])
        );
    }
}
