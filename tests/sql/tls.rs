//! TLS modes mean what they say, against servers with certificates of a
//! private CA (`dmp_test_servers::tls_postgres` / `tls_mariadb`): a chain
//! to another CA, a certificate for another name, a missing client
//! certificate are refused; a server that will not encrypt never sees the
//! password.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::Path;
use std::sync::mpsc;
use std::time::Duration;

use dmp_test_servers::{CERT_USER, PASSWORD, PASSWORD_USER, TestDb, TlsFiles};

use crate::support::sql::sql_pipeline;
use crate::support::{run_dmp, text};

/// Copies `source` (a URL) into a new SQLite file; dmp's output.
fn copy(dir: &Path, name: &str, source: &str) -> std::process::Output {
    let target = format!("sqlite://{}", dir.join(format!("{name}.db")).display());
    let body = format!(
        "[pipeline]\nname = \"{name}\"\n{}",
        sql_pipeline(source, &target, "")
    );
    std::fs::write(dir.join(format!("{name}.toml")), body).expect("write pipeline");
    run_dmp(dir, &["run", &format!("{name}.toml")])
}

/// Runs each case and checks it succeeded or failed with the expected
/// words in its error.
fn check_cases(dir: &Path, cases: &[(&str, String, Result<(), &str>)]) {
    for (name, url, expected) in cases {
        let out = copy(dir, name, url);
        let stderr = text(&out.stderr);
        match expected {
            Ok(()) => assert!(
                out.status.success(),
                "{name}: {url} should connect\n{stderr}"
            ),
            Err(words) => {
                assert!(!out.status.success(), "{name}: {url} should be refused");
                assert!(
                    stderr.to_lowercase().contains(&words.to_lowercase()),
                    "{name}: expected `{words}` in:\n{stderr}"
                );
                assert!(
                    !stderr.contains(PASSWORD),
                    "{name}: password shown:\n{stderr}"
                );
            }
        }
    }
}

fn seed(db: &TestDb) {
    db.exec("CREATE TABLE t (id int PRIMARY KEY, v text); INSERT INTO t VALUES (1, 'a'), (2, 'b')");
}

fn path(p: &Path) -> String {
    p.display().to_string()
}

#[test]
fn postgres_tls_modes_verify_what_they_say() {
    let server = dmp_test_servers::tls_postgres();
    let db = server.create_database("tls_pg");
    seed(&db);
    let tls: &TlsFiles = server.tls().expect("a TLS server");
    let (port, name) = (server.port(), &db.name);
    let (ca, other) = (path(&tls.ca()), path(&tls.other_ca()));
    let (cert, key) = (path(&tls.client_cert()), path(&tls.client_key()));
    let scram = |host: &str, query: &str| {
        format!("postgres://{PASSWORD_USER}:{PASSWORD}@{host}:{port}/{name}?{query}")
    };
    let by_cert = |query: &str| format!("postgres://{CERT_USER}@localhost:{port}/{name}?{query}");
    let dir = tempfile::tempdir().expect("temp dir");
    check_cases(
        dir.path(),
        &[
            (
                "full",
                scram(
                    "localhost",
                    &format!("sslmode=verify-full&sslrootcert={ca}"),
                ),
                Ok(()),
            ),
            (
                "ca_by_address",
                scram("127.0.0.1", &format!("sslmode=verify-ca&sslrootcert={ca}")),
                Ok(()),
            ),
            (
                "other_ca",
                scram(
                    "localhost",
                    &format!("sslmode=verify-full&sslrootcert={other}"),
                ),
                Err("certificate"),
            ),
            // require with a root certificate checks the chain (libpq's rule).
            (
                "require_other_ca",
                scram("localhost", &format!("sslmode=require&sslrootcert={other}")),
                Err("certificate"),
            ),
            (
                "wrong_name",
                scram(
                    "127.0.0.1",
                    &format!("sslmode=verify-full&sslrootcert={ca}"),
                ),
                Err("certificate"),
            ),
            (
                "client_cert",
                by_cert(&format!(
                    "sslmode=verify-full&sslrootcert={ca}&sslcert={cert}&sslkey={key}"
                )),
                Ok(()),
            ),
            (
                "no_client_cert",
                by_cert(&format!("sslmode=verify-full&sslrootcert={ca}")),
                Err("certificate"),
            ),
            (
                "bad_password",
                format!(
                    "postgres://{PASSWORD_USER}:wrong@localhost:{port}/{name}?sslmode=verify-full&sslrootcert={ca}"
                ),
                Err("password"),
            ),
        ],
    );
    let copied = rusqlite::Connection::open(dir.path().join("client_cert.db"))
        .and_then(|c| c.query_row("SELECT count(*) FROM t", [], |r| r.get::<_, i64>(0)))
        .expect("copied rows");
    assert_eq!(copied, 2);
}

#[test]
fn mariadb_tls_modes_verify_what_they_say() {
    let server = dmp_test_servers::tls_mariadb();
    let db = server.create_database("tls_my");
    seed(&db);
    let tls = server.tls().expect("a TLS server");
    let (port, name) = (server.port(), &db.name);
    let (ca, other) = (path(&tls.ca()), path(&tls.other_ca()));
    let (cert, key) = (path(&tls.client_cert()), path(&tls.client_key()));
    let password = |host: &str, query: &str| {
        format!("mysql://{PASSWORD_USER}:{PASSWORD}@{host}:{port}/{name}?{query}")
    };
    let by_cert = |query: &str| format!("mysql://{CERT_USER}@localhost:{port}/{name}?{query}");
    let dir = tempfile::tempdir().expect("temp dir");
    check_cases(
        dir.path(),
        &[
            (
                "identity",
                password(
                    "localhost",
                    &format!("ssl-mode=verify-identity&ssl-ca={ca}"),
                ),
                Ok(()),
            ),
            (
                "ca_by_address",
                password("127.0.0.1", &format!("ssl-mode=verify-ca&ssl-ca={ca}")),
                Ok(()),
            ),
            (
                "other_ca",
                password(
                    "localhost",
                    &format!("ssl-mode=verify-identity&ssl-ca={other}"),
                ),
                Err("certificate"),
            ),
            (
                "require_other_ca",
                password("localhost", &format!("ssl-mode=required&ssl-ca={other}")),
                Err("certificate"),
            ),
            (
                "wrong_name",
                password(
                    "127.0.0.1",
                    &format!("ssl-mode=verify-identity&ssl-ca={ca}"),
                ),
                Err("certificate"),
            ),
            (
                "client_cert",
                by_cert(&format!(
                    "ssl-mode=verify-identity&ssl-ca={ca}&ssl-cert={cert}&ssl-key={key}"
                )),
                Ok(()),
            ),
            (
                "no_client_cert",
                by_cert(&format!("ssl-mode=verify-identity&ssl-ca={ca}")),
                Err("access denied"),
            ),
        ],
    );
}

/// A server on 127.0.0.1 that reads what a client sends first, answers
/// with `reply`, and reports every byte the client sent afterwards.
fn refusing_server(first: usize, reply: Vec<u8>) -> (u16, mpsc::Receiver<Vec<u8>>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("address").port();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
            let mut request = vec![0; first];
            if stream.read_exact(&mut request).is_err() || stream.write_all(&reply).is_err() {
                let _ = tx.send(Vec::new());
                continue;
            }
            let mut rest = Vec::new();
            let _ = stream.read_to_end(&mut rest);
            let _ = tx.send(rest);
        }
    });
    (port, rx)
}

/// Everything the fake servers were sent after their first answer.
fn sent_after(rx: &mpsc::Receiver<Vec<u8>>) -> Vec<u8> {
    let mut all = Vec::new();
    while let Ok(bytes) = rx.recv_timeout(Duration::from_secs(2)) {
        all.extend(bytes);
    }
    all
}

#[test]
fn a_server_that_will_not_encrypt_never_sees_the_password() {
    let dir = tempfile::tempdir().expect("temp dir");
    // PostgreSQL: an SSLRequest (8 bytes) answered `N`.
    let (port, rx) = refusing_server(8, b"N".to_vec());
    let url = format!("postgres://app:{PASSWORD}@127.0.0.1:{port}/db?sslmode=require");
    let out = copy(dir.path(), "pg_plain", &url);
    assert!(!out.status.success());
    let stderr = text(&out.stderr);
    assert!(stderr.contains("TLS"), "{stderr}");
    let sent = sent_after(&rx);
    assert!(
        sent.is_empty(),
        "the client went on in plain text: {sent:?}"
    );

    // MySQL: a greeting without the SSL capability.
    let (port, rx) = refusing_server(0, mysql_greeting_without_tls());
    let url = format!("mysql://app:{PASSWORD}@127.0.0.1:{port}/db?ssl-mode=required");
    let out = copy(dir.path(), "my_plain", &url);
    assert!(!out.status.success());
    let stderr = text(&out.stderr);
    assert!(
        stderr.to_lowercase().contains("ssl") || stderr.contains("TLS"),
        "{stderr}"
    );
    let sent = sent_after(&rx);
    assert!(
        !sent.windows(3).any(|w| w == b"app"),
        "the client logged in in plain text: {sent:?}"
    );
}

/// A MySQL protocol-10 greeting whose capabilities lack CLIENT_SSL.
fn mysql_greeting_without_tls() -> Vec<u8> {
    // PROTOCOL_41 | SECURE_CONNECTION | PLUGIN_AUTH | LONG_PASSWORD |
    // CONNECT_WITH_DB | TRANSACTIONS; no SSL (0x0800).
    let capabilities: u32 = 0x0000_0200 | 0x0000_8000 | 0x0008_0000 | 0x1 | 0x8 | 0x2000;
    let mut body = vec![10];
    body.extend(b"10.11.0-fake\0");
    body.extend(7u32.to_le_bytes());
    body.extend(b"abcdefgh\0");
    body.extend(
        u16::try_from(capabilities & 0xffff)
            .expect("low")
            .to_le_bytes(),
    );
    body.push(45); // utf8mb4
    body.extend(2u16.to_le_bytes());
    body.extend(
        u16::try_from(capabilities >> 16)
            .expect("high")
            .to_le_bytes(),
    );
    body.push(21);
    body.extend([0; 10]);
    body.extend(b"ijklmnopqrst\0");
    body.extend(b"mysql_native_password\0");
    let len = u32::try_from(body.len()).expect("length").to_le_bytes();
    let mut packet = vec![len[0], len[1], len[2], 0];
    packet.extend(body);
    packet
}
