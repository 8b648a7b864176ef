//! A private PostgreSQL 15: `initdb` in a temp dir, `postgres` on a free
//! 127.0.0.1 port with logical decoding on and durability off (tests need
//! speed; a crash loses the whole temp cluster anyway).

use std::path::{Path, PathBuf};
use std::process::Stdio;

use crate::database::{Client, TestDb, unique_name};
use crate::launch::{
    PORT_ATTEMPTS, StartError, Started, argv, command_as, fail, find_binary, free_port, is_root,
    log_file, run, server_dir, wait_until_ready,
};
use crate::reaper::Reaper;

/// Where Debian's postgresql-15 puts the server programs.
const PG_BIN_DIR: &str = "/usr/lib/postgresql/15/bin";
/// The system user that owns the cluster when we run as root.
const PG_USER: &str = "postgres";

/// A PostgreSQL server of this process; superuser `postgres`, trust
/// authentication, no password.
pub struct PostgresServer {
    port: u16,
    dir: PathBuf,
    bin_dir: PathBuf,
    client: Client,
    pub(crate) reaper: Reaper,
}

impl PostgresServer {
    /// The TCP port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `postgres://postgres@127.0.0.1:PORT/postgres`: the maintenance
    /// database, for tools that create their own.
    pub fn url(&self) -> String {
        self.url_of("postgres")
    }

    /// The directory of `initdb`, `postgres`, `psql`, `pg_dump`…
    pub fn bin_dir(&self) -> &Path {
        &self.bin_dir
    }

    /// The server's temp dir: `data/`, `postgres.log`, the unix socket.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// A new, empty database for one test (UTF8, from `template1`).
    ///
    /// # Panics
    /// When the server refuses it.
    pub fn create_database(&self, name_hint: &str) -> TestDb {
        let name = unique_name(name_hint);
        let url = self.url_of(&name);
        let sql = format!("CREATE DATABASE {name}");
        TestDb::create(self.client.clone(), name, url, &sql)
    }

    fn url_of(&self, database: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{database}", self.port)
    }

    pub(crate) fn start() -> Result<PostgresServer, StartError> {
        let initdb = find_binary("initdb", &[Path::new(PG_BIN_DIR)], &[])?;
        // The server programs of the same installation as initdb.
        let bin_dir = initdb.parent().unwrap_or(Path::new("/")).to_path_buf();
        let postgres = find_binary("postgres", &[&bin_dir], &[])?;
        let pg_ctl = find_binary("pg_ctl", &[&bin_dir], &[])?;
        let psql = find_binary("psql", &[], &[Path::new(PG_BIN_DIR)])?;
        let user = is_root().then_some(PG_USER);

        let temp = server_dir("dmp-test-pg-", user)?;
        let dir = temp.path().to_path_buf();
        let data = dir.join("data");
        let mut stop = command_as(user, &pg_ctl)?;
        stop.arg("stop")
            .arg("-D")
            .arg(&data)
            .args(["-m", "immediate", "-s"]);
        let reaper = Reaper::spawn(&dir, &argv(&stop))?;
        // From here on the reaper removes the directory.
        let _ = temp.keep();

        run(command_as(user, &initdb)?
            .arg("-D")
            .arg(&data)
            .args([
                "-U",
                "postgres",
                "--auth=trust",
                "-E",
                "UTF8",
                "--locale=C.UTF-8",
            ])
            .arg("--no-sync"))?;

        let log = dir.join("postgres.log");
        for _ in 0..PORT_ATTEMPTS {
            let port = free_port()?;
            let (stdout, stderr) = log_file(&log)?;
            let mut server = command_as(user, &postgres)?
                .arg("-D")
                .arg(&data)
                .args(settings(port, &dir))
                .stdin(Stdio::null())
                .stdout(stdout)
                .stderr(stderr)
                .spawn()
                .map_err(|e| StartError(format!("cannot run {}: {e}", postgres.display())))?;
            let client = Client::Psql {
                program: psql.clone(),
                port,
            };
            let started = wait_until_ready("PostgreSQL", &mut server, &log, || {
                client.run("postgres", "SELECT 1", false).is_ok()
            });
            // Without runuser in between, the reaper can also SIGKILL it.
            reaper.adopt(server, user.is_none().then_some("postgres"));
            match started? {
                Started::Ready => {
                    return Ok(PostgresServer {
                        port,
                        dir,
                        bin_dir,
                        client,
                        reaper,
                    });
                }
                Started::PortTaken => continue,
            }
        }
        fail(format!(
            "PostgreSQL found its port taken {PORT_ATTEMPTS} times in a row"
        ))
    }
}

/// The server's settings, as `-c` options.
fn settings(port: u16, socket_dir: &Path) -> Vec<String> {
    [
        "listen_addresses=127.0.0.1".to_owned(),
        format!("port={port}"),
        format!("unix_socket_directories={}", socket_dir.display()),
        // What the CDC connector needs: logical decoding and slots.
        "wal_level=logical".to_owned(),
        "max_wal_senders=10".to_owned(),
        "max_replication_slots=10".to_owned(),
        // Tests run in parallel, each with a pool of connections.
        "max_connections=200".to_owned(),
        // Test speed: nothing here must survive a machine crash.
        "fsync=off".to_owned(),
        "synchronous_commit=off".to_owned(),
        "full_page_writes=off".to_owned(),
    ]
    .into_iter()
    .flat_map(|setting| ["-c".to_owned(), setting])
    .collect()
}
