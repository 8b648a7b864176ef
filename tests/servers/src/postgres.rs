//! A private PostgreSQL 15: `initdb` in a temp dir, `postgres` on a free
//! 127.0.0.1 port with logical decoding on and durability off (tests need
//! speed; a crash loses the whole temp cluster anyway). A test's own
//! server can be stopped and started again on the same port and data.

use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::Duration;

use crate::database::{Client, TestDb, unique_name};
use crate::launch::{
    PORT_ATTEMPTS, StartError, Started, argv, command_as, fail, find_binary, free_port, is_root,
    log_file, restart_on, run, server_dir, wait_until_ready,
};
use crate::reaper::Reaper;
use crate::tls::{CERT_USER, PASSWORD, PASSWORD_USER, TlsFiles};

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
    launch: Launch,
    /// A test's own server (see [`crate::own_postgres`]): it may be
    /// stopped, and it goes when dropped.
    own: bool,
    pub(crate) reaper: Reaper,
}

/// `pg_hba.conf` of a TLS server: [`CERT_USER`] only with its client
/// certificate, [`PASSWORD_USER`] only with SCRAM, everyone else trusted
/// (with or without TLS) as on the plain servers.
const TLS_HBA: &str = "\
local all all trust
hostssl all dmp_cert 127.0.0.1/32 cert
hostssl replication dmp_cert 127.0.0.1/32 cert
host all dmp_cert 127.0.0.1/32 reject
host replication dmp_cert 127.0.0.1/32 reject
host all dmp_password 127.0.0.1/32 scram-sha-256
host replication dmp_password 127.0.0.1/32 scram-sha-256
host all all 127.0.0.1/32 trust
host replication all 127.0.0.1/32 trust
";

/// How the server process is run, again after a stop.
struct Launch {
    postgres: PathBuf,
    pg_ctl: PathBuf,
    user: Option<&'static str>,
    dir: PathBuf,
    data: PathBuf,
    log: PathBuf,
    tls: Option<TlsFiles>,
}

impl Launch {
    fn spawn(&self, port: u16) -> Result<Child, StartError> {
        let (stdout, stderr) = log_file(&self.log)?;
        command_as(self.user, &self.postgres)?
            .arg("-D")
            .arg(&self.data)
            .args(settings(port, &self.dir, self.tls.as_ref()))
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(stderr)
            .spawn()
            .map_err(|e| StartError(format!("cannot run {}: {e}", self.postgres.display())))
    }
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

    /// The certificates of a TLS server ([`crate::tls_postgres`]).
    pub fn tls(&self) -> Option<&TlsFiles> {
        self.launch.tls.as_ref()
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

    /// Shuts the server down as an administrator's restart does (`pg_ctl
    /// stop -m fast`: sessions are ended, work in flight rolled back) and
    /// waits until it is gone. Only for a test's own server.
    ///
    /// # Panics
    /// On the shared server, or when it does not stop within a minute.
    pub fn stop(&self) {
        assert!(
            self.own,
            "other tests use this PostgreSQL server: stop only one from own_postgres()"
        );
        let stopped = command_as(self.launch.user, &self.launch.pg_ctl).and_then(|mut cmd| {
            run(cmd
                .arg("stop")
                .arg("-D")
                .arg(&self.launch.data)
                .args(["-m", "fast", "-w", "-t", "60", "-s"]))
        });
        let stopped = stopped.and_then(|()| self.reaper.wait_server(STOP_TIMEOUT));
        if let Err(e) = stopped {
            panic!(
                "cannot stop the PostgreSQL server on port {}: {e}",
                self.port
            );
        }
    }

    /// Starts the server again after [`PostgresServer::stop`], on the same
    /// port and data, and waits until it answers.
    ///
    /// # Panics
    /// When it cannot start (the message ends with its log).
    pub fn start(&self) {
        let client = self.client.clone();
        let started = restart_on(
            self.port,
            "PostgreSQL",
            &self.launch.log,
            |port| self.launch.spawn(port),
            || client.run("postgres", "SELECT 1", false).is_ok(),
        );
        match started {
            Ok(server) => self.reaper.adopt(server, None),
            Err(e) => panic!("cannot start the PostgreSQL server again: {e}"),
        }
    }

    /// Starts a server; `own` for one test alone (see [`crate::own_postgres`]);
    /// `tls` with certificates of a private CA and users who must use them.
    pub(crate) fn launch(own: bool, tls: bool) -> Result<PostgresServer, StartError> {
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
        let tls = if tls {
            write_hba(&data.join("pg_hba.conf"))?;
            Some(TlsFiles::generate(&dir, user)?)
        } else {
            None
        };

        let launch = Launch {
            postgres,
            pg_ctl,
            user,
            log: dir.join("postgres.log"),
            dir: dir.clone(),
            data,
            tls,
        };
        for _ in 0..PORT_ATTEMPTS {
            let port = free_port()?;
            let mut server = launch.spawn(port)?;
            let client = Client::Psql {
                program: psql.clone(),
                port,
            };
            let started = wait_until_ready("PostgreSQL", &mut server, &launch.log, || {
                client.run("postgres", "SELECT 1", false).is_ok()
            });
            // Without runuser in between, the reaper can also SIGKILL it.
            // Not an own server: once stopped, its pid may go to another
            // process (pg_ctl, the stop command, finds the running one).
            reaper.adopt(server, (user.is_none() && !own).then_some("postgres"));
            match started? {
                Started::Ready => {
                    if launch.tls.is_some() {
                        let roles = format!(
                            "CREATE ROLE {CERT_USER} LOGIN SUPERUSER REPLICATION;
                             CREATE ROLE {PASSWORD_USER} LOGIN SUPERUSER REPLICATION PASSWORD '{PASSWORD}';"
                        );
                        client
                            .run("postgres", &roles, false)
                            .map_err(|e| StartError(format!("creating the TLS users: {e}")))?;
                    }
                    return Ok(PostgresServer {
                        port,
                        dir,
                        bin_dir,
                        client,
                        launch,
                        own,
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

impl Drop for PostgresServer {
    /// An own server goes with its owner (the shared one lives in a static
    /// and goes with the process).
    fn drop(&mut self) {
        self.reaper.finish();
    }
}

/// How long a clean shutdown may take.
const STOP_TIMEOUT: Duration = Duration::from_secs(90);

/// Replaces initdb's `pg_hba.conf` (its owner stays).
fn write_hba(path: &Path) -> Result<(), StartError> {
    std::fs::write(path, TLS_HBA).map_err(|e| StartError(format!("{}: {e}", path.display())))
}

/// The server's settings, as `-c` options.
fn settings(port: u16, socket_dir: &Path, tls: Option<&TlsFiles>) -> Vec<String> {
    let tls = tls.map(|files| {
        [
            "ssl=on".to_owned(),
            format!("ssl_cert_file={}", files.server_cert().display()),
            format!("ssl_key_file={}", files.server_key().display()),
            // Client certificates are checked against the same CA.
            format!("ssl_ca_file={}", files.ca().display()),
        ]
    });
    [
        "listen_addresses=127.0.0.1".to_owned(),
        format!("port={port}"),
        format!("unix_socket_directories={}", socket_dir.display()),
        // What the CDC connector needs: logical decoding and slots.
        "wal_level=logical".to_owned(),
        "max_wal_senders=10".to_owned(),
        "max_replication_slots=10".to_owned(),
        // Two-way sync's last_writer_wins by commit time reads each row's.
        "track_commit_timestamp=on".to_owned(),
        // Tests run in parallel, each with a pool of connections.
        "max_connections=200".to_owned(),
        // Test speed: nothing here must survive a machine crash.
        "fsync=off".to_owned(),
        "synchronous_commit=off".to_owned(),
        "full_page_writes=off".to_owned(),
    ]
    .into_iter()
    .chain(tls.into_iter().flatten())
    .flat_map(|setting| ["-c".to_owned(), setting])
    .collect()
}
