//! A minimal client of PostgreSQL's frontend/backend protocol for a
//! `replication=database` session: startup and authentication (trust,
//! cleartext, md5, SCRAM-SHA-256), simple queries (the replication
//! commands) and the CopyBoth sub-protocol `START_REPLICATION` enters.
//! Frontend messages are encoded by `postgres-protocol`; the few backend
//! messages are framed here, because its parser knows no CopyBothResponse.
//!
//! Reading is cancel-safe: what has arrived stays in the buffer until a
//! whole message is there, so a `select!` may drop a pending read.

use bytes::{Buf, Bytes, BytesMut};
use postgres_protocol::authentication::sasl::{self, ChannelBinding, ScramSha256};
use postgres_protocol::message::frontend;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tracing::{debug, info};

use super::super::config::Url;
use super::error::{ServerError, protocol, server};
use super::socket::{self, Socket};

type Result<T> = std::result::Result<T, sqlx::Error>;

/// Session settings: values print as the snapshot readers' sessions print
/// them (UTC, ISO dates, hex bytea, floats in their shortest exact form),
/// and no server default may cancel a long slot creation or end the idle
/// session that holds an exported snapshot.
const SESSION: &[(&str, &str)] = &[
    ("replication", "database"),
    ("application_name", "dmp"),
    ("client_encoding", "UTF8"),
    ("DateStyle", "ISO, MDY"),
    ("TimeZone", "UTC"),
    ("IntervalStyle", "postgres"),
    ("extra_float_digits", "3"),
    ("bytea_output", "hex"),
    ("statement_timeout", "0"),
    ("idle_in_transaction_session_timeout", "0"),
];

/// The largest message a server sends before the session is authenticated
/// (authentication requests, errors, parameters are a few hundred bytes).
const MAX_STARTUP_MESSAGE: usize = 1 << 20;
/// The largest message after it: a walsender's messages are built in one
/// buffer, which PostgreSQL caps at 1 GB.
const MAX_MESSAGE: usize = 1 << 30;

/// One backend message: its tag and body.
struct Frame {
    tag: u8,
    body: Bytes,
}

/// A result row of a simple query, in text format.
pub(super) type TextRow = Vec<Option<String>>;

pub(super) struct Connection {
    socket: Socket,
    input: BytesMut,
    output: BytesMut,
    /// `server_version_num`-like: 150004 for 15.4 (0 when not reported).
    server_version: u32,
    /// The walsender's process id.
    pid: i32,
    /// The largest message length accepted now: a server may announce up
    /// to 4 GB, and nothing is reserved for more than this.
    max_message: usize,
}

impl Connection {
    pub(super) async fn connect(url: &Url) -> Result<Connection> {
        let socket = socket::connect(url).await?;
        let mut conn = Connection {
            socket,
            input: BytesMut::with_capacity(64 * 1024),
            output: BytesMut::with_capacity(1024),
            server_version: 0,
            pid: 0,
            max_message: MAX_STARTUP_MESSAGE,
        };
        conn.startup(url).await?;
        debug!(
            pid = conn.pid,
            version = conn.server_version,
            "replication session open"
        );
        Ok(conn)
    }

    pub(super) fn server_version(&self) -> u32 {
        self.server_version
    }

    pub(super) fn pid(&self) -> i32 {
        self.pid
    }

    async fn startup(&mut self, url: &Url) -> Result<()> {
        let mut params: Vec<(&str, &str)> = vec![
            ("user", url.user.as_str()),
            ("database", url.database.as_str()),
        ];
        params.extend_from_slice(SESSION);
        if let Some(options) = &url.server_options {
            params.push(("options", options.as_str()));
        }
        frontend::startup_message(params, &mut self.output)?;
        self.flush().await?;
        self.authenticate(url).await?;
        self.max_message = MAX_MESSAGE;
        loop {
            let frame = self.read_frame().await?;
            match frame.tag {
                b'S' => self.parameter_status(&frame.body),
                b'K' => {
                    let mut body = frame.body;
                    if body.len() >= 4 {
                        self.pid = body.get_i32();
                    }
                }
                b'Z' => return Ok(()),
                b'E' => return Err(server(ServerError::parse(&frame.body))),
                b'N' => notice(&frame.body),
                other => return Err(unexpected(other, "during startup")),
            }
        }
    }

    async fn authenticate(&mut self, url: &Url) -> Result<()> {
        let password = || {
            url.password.as_deref().ok_or_else(|| {
                sqlx::Error::Configuration(
                    "the server asks for a password and the URL has none".into(),
                )
            })
        };
        let mut scram: Option<ScramSha256> = None;
        // The server's SCRAM signature proves it knows the password; a
        // server that says "ok" before it (or without it, once SCRAM began)
        // may be anyone in the middle.
        let mut server_proven = false;
        loop {
            let frame = self.read_frame().await?;
            match frame.tag {
                b'R' => {}
                b'E' => return Err(server(ServerError::parse(&frame.body))),
                b'N' => {
                    notice(&frame.body);
                    continue;
                }
                other => return Err(unexpected(other, "during authentication")),
            }
            let mut body = frame.body;
            if body.len() < 4 {
                return Err(protocol("a truncated authentication request"));
            }
            match body.get_i32() {
                0 if scram.is_some() && !server_proven => {
                    return Err(sqlx::Error::Tls(
                        "the server accepted the SCRAM login without proving that it knows the password (no server signature): refusing the session".into(),
                    ));
                }
                0 => return Ok(()),
                3 => frontend::password_message(password()?.as_bytes(), &mut self.output)?,
                5 => {
                    if body.len() < 4 {
                        return Err(protocol("an md5 request without salt"));
                    }
                    let salt = [body[0], body[1], body[2], body[3]];
                    let hashed = postgres_protocol::authentication::md5_hash(
                        url.user.as_bytes(),
                        password()?.as_bytes(),
                        salt,
                    );
                    frontend::password_message(hashed.as_bytes(), &mut self.output)?;
                }
                10 => {
                    let offered: Vec<&[u8]> =
                        body.split(|b| *b == 0).filter(|m| !m.is_empty()).collect();
                    if !offered.contains(&sasl::SCRAM_SHA_256.as_bytes()) {
                        return Err(sqlx::Error::Configuration(
                            format!(
                                "the server offers SASL mechanisms {} and this client knows only {}",
                                offered
                                    .iter()
                                    .map(|m| String::from_utf8_lossy(m).into_owned())
                                    .collect::<Vec<_>>()
                                    .join(", "),
                                sasl::SCRAM_SHA_256
                            )
                            .into(),
                        ));
                    }
                    // No channel binding: the `n` flag, which a server
                    // offering SCRAM-SHA-256-PLUS accepts too.
                    let client =
                        ScramSha256::new(password()?.as_bytes(), ChannelBinding::unsupported());
                    frontend::sasl_initial_response(
                        sasl::SCRAM_SHA_256,
                        client.message(),
                        &mut self.output,
                    )?;
                    scram = Some(client);
                }
                11 => {
                    let client = scram
                        .as_mut()
                        .ok_or_else(|| protocol("a SASL continuation before SASL started"))?;
                    client
                        .update(&body)
                        .map_err(|e| protocol(format!("SCRAM exchange: {e}")))?;
                    frontend::sasl_response(client.message(), &mut self.output)?;
                }
                12 => {
                    let client = scram
                        .as_mut()
                        .ok_or_else(|| protocol("a SASL outcome before SASL started"))?;
                    client.finish(&body).map_err(|e| {
                        sqlx::Error::Tls(
                            format!(
                                "the server's SCRAM signature is wrong ({e}): refusing the session"
                            )
                            .into(),
                        )
                    })?;
                    server_proven = true;
                    continue;
                }
                other => {
                    return Err(sqlx::Error::Configuration(
                        format!(
                            "the server asks for authentication method {other} (Kerberos, GSSAPI or SSPI), which this client does not support"
                        )
                        .into(),
                    ));
                }
            }
            self.flush().await?;
        }
    }

    fn parameter_status(&mut self, body: &[u8]) {
        let mut parts = body.split(|b| *b == 0);
        let name = parts.next().unwrap_or_default();
        let value = parts.next().unwrap_or_default();
        if name == b"server_version" {
            self.server_version = version_number(&String::from_utf8_lossy(value));
        }
    }

    /// Runs one command with the simple query protocol and returns its rows
    /// (replication commands answer in text).
    pub(super) async fn simple_query(&mut self, sql: &str) -> Result<Vec<TextRow>> {
        debug!(sql, "replication command");
        frontend::query(sql, &mut self.output)?;
        self.flush().await?;
        let mut rows = Vec::new();
        let mut failed = None;
        loop {
            let frame = self.read_frame().await?;
            match frame.tag {
                b'T' | b'C' | b'I' => {}
                b'D' => rows.push(data_row(frame.body)?),
                b'E' => failed = Some(ServerError::parse(&frame.body)),
                b'N' => notice(&frame.body),
                b'S' => self.parameter_status(&frame.body),
                b'Z' => {
                    return match failed {
                        Some(e) => Err(server(e)),
                        None => Ok(rows),
                    };
                }
                other => return Err(unexpected(other, "in a query's answer")),
            }
        }
    }

    /// Sends a command that answers with CopyBothResponse
    /// (`START_REPLICATION`); the session then carries CopyData both ways.
    pub(super) async fn start_copy_both(&mut self, sql: &str) -> Result<()> {
        info!(command = sql, "starting replication");
        frontend::query(sql, &mut self.output)?;
        self.flush().await?;
        loop {
            let frame = self.read_frame().await?;
            match frame.tag {
                b'W' => return Ok(()),
                b'N' => notice(&frame.body),
                b'S' => self.parameter_status(&frame.body),
                b'E' => {
                    let error = ServerError::parse(&frame.body);
                    // The session is ready for another command; nobody will
                    // send one.
                    return Err(server(error));
                }
                other => return Err(unexpected(other, "in answer to START_REPLICATION")),
            }
        }
    }

    /// The next CopyData payload of the replication stream; `None` when
    /// the server ends the stream (CopyDone). Cancel-safe.
    pub(super) async fn recv_copy(&mut self) -> Result<Option<Bytes>> {
        loop {
            let frame = self.read_frame().await?;
            match frame.tag {
                b'd' => return Ok(Some(frame.body)),
                b'c' => return Ok(None),
                b'N' => notice(&frame.body),
                b'S' => self.parameter_status(&frame.body),
                b'E' => return Err(server(ServerError::parse(&frame.body))),
                other => return Err(unexpected(other, "in the replication stream")),
            }
        }
    }

    /// Sends one CopyData message.
    pub(super) async fn send_copy(&mut self, payload: &[u8]) -> Result<()> {
        self.output.extend_from_slice(b"d");
        let len = i32::try_from(payload.len() + 4)
            .map_err(|_| protocol("a CopyData message over 2 GiB"))?;
        self.output.extend_from_slice(&len.to_be_bytes());
        self.output.extend_from_slice(payload);
        self.flush().await
    }

    /// Says goodbye; the server ends the session.
    pub(super) async fn terminate(mut self) {
        frontend::terminate(&mut self.output);
        let _ = self.flush().await;
        let _ = self.socket.shutdown().await;
    }

    async fn flush(&mut self) -> Result<()> {
        self.socket.write_all(&self.output).await?;
        self.output.clear();
        self.socket.flush().await?;
        Ok(())
    }

    async fn read_frame(&mut self) -> Result<Frame> {
        loop {
            if self.input.len() >= 5 {
                let len = u32::from_be_bytes([
                    self.input[1],
                    self.input[2],
                    self.input[3],
                    self.input[4],
                ]);
                let len = usize::try_from(len).unwrap_or(usize::MAX);
                if len < 4 || len > self.max_message {
                    return Err(protocol(format!(
                        "a message length of {len} (at most {} here)",
                        self.max_message
                    )));
                }
                if self.input.len() > len {
                    let mut frame = self.input.split_to(len + 1).freeze();
                    let tag = frame[0];
                    frame.advance(5);
                    return Ok(Frame { tag, body: frame });
                }
                // Grown as the bytes arrive, not as announced.
                self.input
                    .reserve((len + 1 - self.input.len()).min(MAX_STARTUP_MESSAGE));
            }
            if self.input.capacity() - self.input.len() < 8 * 1024 {
                self.input.reserve(64 * 1024);
            }
            if self.socket.read_buf(&mut self.input).await? == 0 {
                return Err(sqlx::Error::Io(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    "the server closed the replication connection",
                )));
            }
        }
    }
}

/// A DataRow: `int16 count`, then per column `int32 len` (-1 NULL) and the
/// bytes.
fn data_row(mut body: Bytes) -> Result<TextRow> {
    let truncated = || protocol("a truncated data row");
    if body.len() < 2 {
        return Err(truncated());
    }
    let count = body.get_i16();
    let mut row = Vec::with_capacity(usize::try_from(count).unwrap_or(0));
    for _ in 0..count {
        if body.len() < 4 {
            return Err(truncated());
        }
        let len = body.get_i32();
        if len < 0 {
            row.push(None);
            continue;
        }
        let len = usize::try_from(len).unwrap_or(usize::MAX);
        if body.len() < len {
            return Err(truncated());
        }
        let value = body.split_to(len);
        row.push(Some(String::from_utf8_lossy(&value).into_owned()));
    }
    Ok(row)
}

fn notice(body: &[u8]) {
    let notice = ServerError::parse(body);
    info!(code = notice.code, "server notice: {}", notice.message);
}

fn unexpected(tag: u8, when: &str) -> sqlx::Error {
    protocol(format!(
        "unexpected message `{}` {when}",
        char::from(tag).escape_default()
    ))
}

/// `15.4 (Debian …)` → 150004; `9.6.24` → 90624; `16beta1` → 160000.
fn version_number(text: &str) -> u32 {
    let mut parts = text
        .split(|c: char| !c.is_ascii_digit())
        .filter(|p| !p.is_empty())
        .map(|p| p.parse::<u32>().unwrap_or(0));
    let major = parts.next().unwrap_or(0);
    let minor = parts.next().unwrap_or(0);
    if major >= 10 {
        // 16beta1: `beta1` is no minor version.
        let digits = text.bytes().take_while(u8::is_ascii_digit).count();
        let minor = if text.as_bytes().get(digits) == Some(&b'.') {
            minor
        } else {
            0
        };
        major * 10_000 + minor
    } else {
        let patch = parts.next().unwrap_or(0);
        major * 10_000 + minor * 100 + patch
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_versions() {
        assert_eq!(version_number("15.4 (Debian 15.4-1.pgdg120+1)"), 150_004);
        assert_eq!(version_number("15.18"), 150_018);
        assert_eq!(version_number("9.6.24"), 90_624);
        assert_eq!(version_number("16beta1"), 160_000);
        assert_eq!(version_number("17devel"), 170_000);
    }

    #[test]
    fn data_rows_are_split_into_text_columns() {
        let mut body = Vec::new();
        body.extend_from_slice(&3i16.to_be_bytes());
        body.extend_from_slice(&2i32.to_be_bytes());
        body.extend_from_slice(b"s1");
        body.extend_from_slice(&(-1i32).to_be_bytes());
        body.extend_from_slice(&9i32.to_be_bytes());
        body.extend_from_slice(b"0/1946198");
        let row = data_row(Bytes::from(body.clone())).unwrap();
        assert_eq!(row, vec![Some("s1".into()), None, Some("0/1946198".into())]);
        body.truncate(body.len() - 1);
        assert!(data_row(Bytes::from(body)).is_err());
    }

    /// A fake server's side of one session: what it answers after the
    /// startup message and after each message of the client.
    enum Script {
        /// Offers SCRAM, then says "ok" without the server signature.
        OkWithoutProof,
        /// Runs SCRAM with a wrong server signature.
        WrongSignature,
        /// Announces a 4 GB message right after the startup.
        HugeMessage,
    }

    async fn read_message(socket: &mut tokio::net::TcpStream, tagged: bool) -> Vec<u8> {
        if tagged {
            socket.read_u8().await.expect("tag");
        }
        let len = socket.read_u32().await.expect("length");
        let mut body = vec![0; usize::try_from(len).expect("length") - 4];
        socket.read_exact(&mut body).await.expect("body");
        body
    }

    fn auth(code: i32, data: &[u8]) -> Vec<u8> {
        let mut message = vec![b'R'];
        let len = u32::try_from(8 + data.len()).expect("length");
        message.extend(len.to_be_bytes());
        message.extend(code.to_be_bytes());
        message.extend(data);
        message
    }

    async fn fake_server(script: Script) -> u16 {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let port = listener.local_addr().expect("address").port();
        tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.expect("accept");
            read_message(&mut socket, false).await;
            if let Script::HugeMessage = script {
                let _ = socket.write_all(&[b'R', 0xff, 0xff, 0xff, 0xff]).await;
                let _ = socket.write_all(&[0; 64]).await;
                return;
            }
            let _ = socket.write_all(&auth(10, b"SCRAM-SHA-256\0\0")).await;
            let first = read_message(&mut socket, true).await;
            if let Script::OkWithoutProof = script {
                let _ = socket.write_all(&auth(0, b"")).await;
                return;
            }
            // client-first-message: "n,,n=,r=NONCE" after the mechanism
            // name and a length.
            let text = String::from_utf8_lossy(&first).into_owned();
            let nonce = text.rsplit("r=").next().expect("nonce").to_string();
            let server_first = format!("r={nonce}server,s=c2FsdHNhbHQ=,i=4096");
            let _ = socket.write_all(&auth(11, server_first.as_bytes())).await;
            read_message(&mut socket, true).await;
            let bogus = "v=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=";
            let _ = socket.write_all(&auth(12, bogus.as_bytes())).await;
            let _ = socket.write_all(&auth(0, b"")).await;
        });
        port
    }

    async fn connect_to(script: Script) -> sqlx::Error {
        let port = fake_server(script).await;
        let url = format!("postgres://u:secret@127.0.0.1:{port}/db?sslmode=disable");
        let url =
            super::super::super::config::parse_url(&url, std::path::Path::new("."), &|_| None)
                .expect("url");
        match Connection::connect(&url).await {
            Ok(_) => panic!("the fake server was accepted"),
            Err(e) => e,
        }
    }

    #[tokio::test]
    async fn a_server_must_prove_it_knows_the_password() {
        let err = connect_to(Script::OkWithoutProof).await.to_string();
        assert!(err.contains("without proving"), "{err}");
        let err = connect_to(Script::WrongSignature).await.to_string();
        assert!(err.contains("signature is wrong"), "{err}");
    }

    #[tokio::test]
    async fn announced_lengths_are_capped() {
        let err = connect_to(Script::HugeMessage).await.to_string();
        assert!(err.contains("message length of 4294967295"), "{err}");
    }
}
