//! Private PostgreSQL 15 and MariaDB 10.11 servers, and a NATS server with
//! JetStream ([`nats()`]), for DMP's tests and benchmarks, run from the
//! Debian packages' binaries (`make test` installs them) in temp dirs on
//! free 127.0.0.1 ports. No server of the machine is used or touched.
//!
//! In tests, [`postgres()`] and [`mariadb()`] start their server on first
//! use, once per process, and [`PostgresServer::create_database`] /
//! [`MariadbServer::create_database`] give each test a database of its own
//! with helpers to run SQL through `psql` / `mariadb`:
//!
//! ```text
//! let db = dmp_test_servers::postgres().create_database("copy_source");
//! db.exec("CREATE TABLE t (id int PRIMARY KEY); INSERT INTO t VALUES (1)");
//! assert_eq!(db.scalar("SELECT count(*) FROM t"), "1");
//! ```
//!
//! A test that stops and restarts its server takes one of its own, which
//! goes (server and directory) when dropped:
//!
//! ```text
//! let server = dmp_test_servers::own_postgres();
//! let db = server.create_database("restart_target");
//! server.stop();   // as an administrator's restart: sessions end
//! server.start();  // same port, same data
//! ```
//!
//! Servers stop, and their directories are removed, when the process ends in
//! any way — normal exit, panic, SIGKILL: each server has a reaper process
//! waiting for EOF on a pipe only this process holds open (see `reaper.rs`).
//!
//! Scripts (the benchmarks) run the `dmp-test-servers` binary, which prints
//! `export` lines, then `ready`, and keeps the servers until its stdin
//! closes or it is killed (SIGTERM, SIGINT, even SIGKILL):
//!
//! ```sh
//! coproc SERVERS { exec dmp-test-servers start postgres mariadb; }
//! while IFS= read -r line <&"${SERVERS[0]}"; do
//!     case "$line" in export\ *) eval "$line" ;; ready) break ;; esac
//! done
//! psql "$DMP_TEST_PG_URL" -c 'SELECT 1'   # servers stop when the script exits
//! ```
//!
//! It exports `DMP_TEST_PG_URL` (`postgres://postgres@127.0.0.1:PORT/postgres`),
//! `DMP_TEST_PG_PORT`, `DMP_TEST_PG_BIN_DIR`, `DMP_TEST_MARIADB_URL`
//! (`mysql://root@127.0.0.1:PORT/`), `DMP_TEST_MARIADB_PORT` and
//! `DMP_TEST_MARIADB_BIN_DIR` for the servers it started. Without a coprocess,
//! `exec 3> >(dmp-test-servers start > servers.env)` keeps them until fd 3
//! closes; source `servers.env` once its last line is `ready`.

mod database;
mod launch;
mod mariadb;
mod nats;
mod postgres;
mod reaper;
mod tls;

use std::sync::OnceLock;

pub use database::{Rows, SqlError, TestDb};
pub use launch::StartError;
pub use mariadb::MariadbServer;
pub use nats::{NatsCluster, NatsServer};
pub use postgres::PostgresServer;
pub use tls::{CERT_USER, PASSWORD, PASSWORD_USER, TlsFiles};

// A failed start is kept too: every test then fails at once with the same
// message instead of each retrying a start that takes seconds.
static POSTGRES: OnceLock<Result<PostgresServer, StartError>> = OnceLock::new();
static MARIADB: OnceLock<Result<MariadbServer, StartError>> = OnceLock::new();
static TLS_POSTGRES: OnceLock<Result<PostgresServer, StartError>> = OnceLock::new();
static TLS_MARIADB: OnceLock<Result<MariadbServer, StartError>> = OnceLock::new();
static NATS: OnceLock<Result<NatsServer, StartError>> = OnceLock::new();

/// This process's NATS server (JetStream on), started on first call.
///
/// # Panics
/// As [`postgres()`].
pub fn nats() -> &'static NatsServer {
    try_nats().unwrap_or_else(|e| panic!("cannot start the test NATS server: {e}"))
}

/// [`nats()`] returning the error instead of panicking.
pub fn try_nats() -> Result<&'static NatsServer, StartError> {
    NATS.get_or_init(|| NatsServer::launch(false))
        .as_ref()
        .map_err(Clone::clone)
}

/// A NATS server for the calling test alone, which it may stop and start
/// again; see [`own_postgres()`].
///
/// # Panics
/// As [`postgres()`].
pub fn own_nats() -> NatsServer {
    NatsServer::launch(true).unwrap_or_else(|e| panic!("cannot start an own NATS server: {e}"))
}

/// A cluster of `size` NATS servers for the calling test alone.
///
/// # Panics
/// As [`postgres()`].
pub fn own_nats_cluster(size: usize) -> NatsCluster {
    NatsCluster::launch(size).unwrap_or_else(|e| panic!("cannot start a NATS cluster: {e}"))
}

/// This process's PostgreSQL server, started on first call.
///
/// # Panics
/// When it cannot start: binaries missing (the message says how to install
/// them), or the server failed (the message ends with its log).
pub fn postgres() -> &'static PostgresServer {
    try_postgres().unwrap_or_else(|e| panic!("cannot start the test PostgreSQL server: {e}"))
}

/// This process's MariaDB server, started on first call.
///
/// # Panics
/// As [`postgres()`].
pub fn mariadb() -> &'static MariadbServer {
    try_mariadb().unwrap_or_else(|e| panic!("cannot start the test MariaDB server: {e}"))
}

/// A PostgreSQL server for the calling test alone, which it may
/// [`stop`](PostgresServer::stop) and [`start`](PostgresServer::start)
/// again. It stops, and its directory goes, when dropped (or when the
/// process ends).
///
/// # Panics
/// As [`postgres()`].
pub fn own_postgres() -> PostgresServer {
    PostgresServer::launch(true, false)
        .unwrap_or_else(|e| panic!("cannot start an own PostgreSQL server: {e}"))
}

/// A MariaDB server for the calling test alone; see [`own_postgres()`].
///
/// # Panics
/// As [`postgres()`].
pub fn own_mariadb() -> MariadbServer {
    MariadbServer::launch(true, false)
        .unwrap_or_else(|e| panic!("cannot start an own MariaDB server: {e}"))
}

/// This process's PostgreSQL server with TLS, started on first call: its
/// certificates come from a private CA ([`PostgresServer::tls`]); the
/// superuser `postgres` is trusted with or without TLS, [`CERT_USER`] logs
/// in only with its client certificate, [`PASSWORD_USER`] only with SCRAM
/// and [`PASSWORD`]. The certificate names `localhost`, not `127.0.0.1`.
///
/// # Panics
/// As [`postgres()`].
pub fn tls_postgres() -> &'static PostgresServer {
    TLS_POSTGRES
        .get_or_init(|| PostgresServer::launch(false, true))
        .as_ref()
        .unwrap_or_else(|e| panic!("cannot start the TLS PostgreSQL server: {e}"))
}

/// This process's MariaDB server with TLS, started on first call; as
/// [`tls_postgres()`]: `root` without TLS, [`PASSWORD_USER`] only over TLS,
/// [`CERT_USER`] only with its client certificate.
///
/// # Panics
/// As [`postgres()`].
pub fn tls_mariadb() -> &'static MariadbServer {
    TLS_MARIADB
        .get_or_init(|| MariadbServer::launch(false, true))
        .as_ref()
        .unwrap_or_else(|e| panic!("cannot start the TLS MariaDB server: {e}"))
}

/// [`postgres()`] returning the error instead of panicking.
pub fn try_postgres() -> Result<&'static PostgresServer, StartError> {
    POSTGRES
        .get_or_init(|| PostgresServer::launch(false, false))
        .as_ref()
        .map_err(Clone::clone)
}

/// [`mariadb()`] returning the error instead of panicking.
pub fn try_mariadb() -> Result<&'static MariadbServer, StartError> {
    MARIADB
        .get_or_init(|| MariadbServer::launch(false, false))
        .as_ref()
        .map_err(Clone::clone)
}

/// Stops the servers now and waits until their directories are gone, for
/// the binary's orderly exit. The process must not use them afterwards.
#[doc(hidden)]
pub fn shutdown() {
    if let Some(Ok(server)) = POSTGRES.get() {
        server.reaper.finish();
    }
    for server in [MARIADB.get(), TLS_MARIADB.get()]
        .into_iter()
        .flatten()
        .flatten()
    {
        server.reaper.finish();
    }
    if let Some(Ok(server)) = TLS_POSTGRES.get() {
        server.reaper.finish();
    }
    if let Some(Ok(server)) = NATS.get() {
        server.reaper.finish();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Tab, newline, backslash, quotes, 4-byte UTF-8, XML's specials.
    const TRICKY: &str = "a\tb\nc\\d 'q' \"dq\" 😀 <x>&amp;";

    fn check(db: &TestDb, other: &TestDb, string_literal: &dyn Fn(&str) -> String) {
        db.exec(&format!(
            "CREATE TABLE t (id int PRIMARY KEY, v text);
             INSERT INTO t VALUES (1, NULL), (2, ''), (3, 'NULL'), (4, {}), (5, ' ');",
            string_literal(TRICKY)
        ));
        assert_eq!(
            db.query("SELECT id, v FROM t ORDER BY id"),
            vec![
                vec![Some("1".to_owned()), None],
                vec![Some("2".to_owned()), Some(String::new())],
                vec![Some("3".to_owned()), Some("NULL".to_owned())],
                vec![Some("4".to_owned()), Some(TRICKY.to_owned())],
                vec![Some("5".to_owned()), Some(" ".to_owned())],
            ]
        );
        assert_eq!(db.scalar("SELECT count(*) FROM t"), "5");
        assert_eq!(db.query("SELECT v FROM t WHERE id > 5"), Rows::new());
        // Each test's database is its own.
        other.exec("CREATE TABLE t (other int)");
        assert_eq!(other.scalar("SELECT count(*) FROM t"), "0");
        let err = db
            .try_exec("SELECT * FROM no_such_table")
            .expect_err("missing table");
        assert!(err.message.contains("no_such_table"), "{err}");
        assert!(db.try_scalar("SELECT v FROM t WHERE id = 1").is_err());
    }

    #[test]
    fn both_servers_start_and_round_trip_values() {
        let pg = std::thread::spawn(|| {
            let server = postgres();
            let (a, b) = (
                server.create_database("pg one"),
                server.create_database("pg one"),
            );
            assert_ne!(a.name, b.name);
            assert_eq!(
                a.url,
                format!("postgres://postgres@127.0.0.1:{}/{}", server.port(), a.name)
            );
            check(&a, &b, &|s| {
                format!("E'{}'", s.replace('\\', "\\\\").replace('\'', "\\'"))
            });
            assert_eq!(a.scalar("SHOW wal_level"), "logical");
        });
        let my = std::thread::spawn(|| {
            let server = mariadb();
            let (a, b) = (server.create_database("my"), server.create_database("my"));
            assert_ne!(a.name, b.name);
            assert_eq!(
                a.url,
                format!("mysql://root@127.0.0.1:{}/{}", server.port(), a.name)
            );
            check(&a, &b, &|s| {
                format!("'{}'", s.replace('\\', "\\\\").replace('\'', "\\'"))
            });
            assert_eq!(
                a.query("SELECT @@binlog_format, @@binlog_row_metadata, @@local_infile"),
                vec![vec![
                    Some("ROW".into()),
                    Some("FULL".into()),
                    Some("1".into())
                ]]
            );
        });
        pg.join().expect("PostgreSQL checks");
        my.join().expect("MariaDB checks");
    }

    /// Stopped, an own server refuses connections; started again, it has
    /// its port and data back; dropped, its directory is gone.
    fn stop_and_start(stop: &dyn Fn(), start: &dyn Fn(), db: &TestDb, dir: &std::path::Path) {
        db.exec("CREATE TABLE t (id int PRIMARY KEY); INSERT INTO t VALUES (1), (2)");
        stop();
        assert!(db.try_scalar("SELECT count(*) FROM t").is_err());
        start();
        assert_eq!(db.scalar("SELECT count(*) FROM t"), "2");
        assert!(dir.exists());
    }

    #[test]
    fn own_servers_stop_and_start_again_with_their_data() {
        let pg = std::thread::spawn(|| {
            let server = own_postgres();
            assert_ne!(server.port(), postgres().port());
            let db = server.create_database("own");
            let dir = server.dir().to_path_buf();
            stop_and_start(&|| server.stop(), &|| server.start(), &db, &dir);
            drop(server);
            assert!(!dir.exists(), "{} left behind", dir.display());
        });
        let my = std::thread::spawn(|| {
            let server = own_mariadb();
            let db = server.create_database("own");
            let dir = server.dir().to_path_buf();
            stop_and_start(&|| server.stop(), &|| server.start(), &db, &dir);
            drop(server);
            assert!(!dir.exists(), "{} left behind", dir.display());
        });
        pg.join().expect("PostgreSQL checks");
        my.join().expect("MariaDB checks");
    }

    #[test]
    #[should_panic(expected = "other tests use this PostgreSQL server")]
    fn the_shared_server_cannot_be_stopped() {
        postgres().stop();
    }
}
