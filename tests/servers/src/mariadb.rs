//! A private MariaDB 10.11: `mariadb-install-db` in a temp dir, `mariadbd`
//! on a free 127.0.0.1 port with the row-based binlog the CDC connector
//! reads, and durability off for speed. A test's own server can be
//! stopped and started again on the same port and data.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::database::{Client, TestDb, unique_name};
use crate::launch::{
    PORT_ATTEMPTS, StartError, Started, fail, find_binary, free_port, is_root, log_file,
    restart_on, run, server_dir, wait_until_ready,
};
use crate::reaper::Reaper;
use crate::tls::{CERT_USER, PASSWORD, PASSWORD_USER, TlsFiles};

/// The system user that owns the data when we run as root.
const MARIADB_USER: &str = "mysql";

/// A MariaDB server of this process; `root@127.0.0.1` without a password.
pub struct MariadbServer {
    port: u16,
    dir: PathBuf,
    bin_dir: PathBuf,
    client: Client,
    launch: Launch,
    /// A test's own server (see [`crate::own_mariadb`]): it may be
    /// stopped, and it goes when dropped.
    own: bool,
    pub(crate) reaper: Reaper,
}

/// How the server process is run, again after a stop.
struct Launch {
    mariadbd: PathBuf,
    user: Option<&'static str>,
    dir: PathBuf,
    log: PathBuf,
    tls: Option<TlsFiles>,
}

impl Launch {
    fn spawn(&self, port: u16) -> Result<Child, StartError> {
        let (stdout, stderr) = log_file(&self.log)?;
        Command::new(&self.mariadbd)
            .args(settings(port, &self.dir, self.user, self.tls.as_ref()))
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(stderr)
            .spawn()
            .map_err(|e| StartError(format!("cannot run {}: {e}", self.mariadbd.display())))
    }
}

impl MariadbServer {
    /// The TCP port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `mysql://root@127.0.0.1:PORT/`: the server, no database selected.
    pub fn url(&self) -> String {
        format!("mysql://root@127.0.0.1:{}/", self.port)
    }

    /// The directory of the `mariadb` client (and `mariadb-dump`…).
    pub fn bin_dir(&self) -> &Path {
        &self.bin_dir
    }

    /// The server's temp dir: `data/`, `mariadbd.log`, binlogs, the socket.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The certificates of a TLS server ([`crate::tls_mariadb`]).
    pub fn tls(&self) -> Option<&TlsFiles> {
        self.launch.tls.as_ref()
    }

    /// A new, empty database for one test (the server's default utf8mb4).
    ///
    /// # Panics
    /// When the server refuses it.
    pub fn create_database(&self, name_hint: &str) -> TestDb {
        let name = unique_name(name_hint);
        let url = format!("{}{name}", self.url());
        let sql = format!("CREATE DATABASE {name}");
        TestDb::create(self.client.clone(), name, url, &sql)
    }

    /// Shuts the server down cleanly (SIGTERM: sessions are ended, work in
    /// flight rolled back) and waits until it is gone. Only for a test's
    /// own server.
    ///
    /// # Panics
    /// On the shared server, or when it does not stop within a minute and
    /// a half.
    pub fn stop(&self) {
        assert!(
            self.own,
            "other tests use this MariaDB server: stop only one from own_mariadb()"
        );
        let Some(pid) = self.reaper.server_pid() else {
            return;
        };
        let stopped = run(Command::new("kill").args(["-TERM", &pid.to_string()]))
            .and_then(|()| self.reaper.wait_server(STOP_TIMEOUT));
        if let Err(e) = stopped {
            panic!("cannot stop the MariaDB server on port {}: {e}", self.port);
        }
    }

    /// Starts the server again after [`MariadbServer::stop`], on the same
    /// port and data, and waits until it answers.
    ///
    /// # Panics
    /// When it cannot start (the message ends with its log).
    pub fn start(&self) {
        let client = self.client.clone();
        let started = restart_on(
            self.port,
            "MariaDB",
            &self.launch.log,
            |port| self.launch.spawn(port),
            || client.run("", "SELECT 1", false).is_ok(),
        );
        match started {
            Ok(server) => self.reaper.adopt(server, None),
            Err(e) => panic!("cannot start the MariaDB server again: {e}"),
        }
    }

    /// Starts a server; `own` for one test alone (see [`crate::own_mariadb`]).
    pub(crate) fn launch(own: bool, tls: bool) -> Result<MariadbServer, StartError> {
        let sbin = [Path::new("/usr/sbin")];
        let mariadbd = find_binary("mariadbd", &[], &sbin)?;
        let install_db = find_binary("mariadb-install-db", &[], &[Path::new("/usr/bin")])?;
        let mariadb = find_binary("mariadb", &[], &[Path::new("/usr/bin")])?;
        let bin_dir = mariadb.parent().unwrap_or(Path::new("/")).to_path_buf();
        let user = is_root().then_some(MARIADB_USER);

        let temp = server_dir("dmp-test-mariadb-", user)?;
        let dir = temp.path().to_path_buf();
        let data = dir.join("data");
        // The reaper SIGKILLs mariadbd (the data goes anyway): the shared
        // one by the pid handed over, an own one, which may have been
        // restarted, by its pid file (a stopped one has none).
        let stop: Vec<OsString> = if own {
            let kill = "pid=$(cat \"$1\") && kill -KILL \"$pid\"";
            ["sh", "-c", kill, "sh"]
                .into_iter()
                .map(OsString::from)
                .chain([dir.join("mariadbd.pid").into_os_string()])
                .collect()
        } else {
            Vec::new()
        };
        let reaper = Reaper::spawn(&dir, &stop)?;
        // From here on the reaper removes the directory.
        let _ = temp.keep();

        let mut install = Command::new(&install_db);
        // --no-defaults must come first; the system's my.cnf is not ours.
        install
            .arg("--no-defaults")
            .arg(format!("--datadir={}", data.display()));
        if let Some(user) = user {
            install.arg(format!("--user={user}"));
        }
        // Its own temp dir, as the server's below: bootstraps running at
        // the same time in /tmp were seen to lose each other's temporary
        // tables ("Could not remove temporary table … Unknown table").
        install.arg(format!("--tmpdir={}", dir.display()));
        run(install.args([
            "--auth-root-authentication-method=normal",
            "--skip-test-db",
            "--skip-name-resolve",
        ]))?;

        let tls = if tls {
            Some(TlsFiles::generate(&dir, user)?)
        } else {
            None
        };
        let launch = Launch {
            mariadbd,
            user,
            log: dir.join("mariadbd.log"),
            dir: dir.clone(),
            tls,
        };
        for _ in 0..PORT_ATTEMPTS {
            let port = free_port()?;
            let mut server = launch.spawn(port)?;
            let client = Client::Mariadb {
                program: mariadb.clone(),
                port,
            };
            let started = wait_until_ready("MariaDB", &mut server, &launch.log, || {
                client.run("", "SELECT 1", false).is_ok()
            });
            reaper.adopt(server, (!own).then_some("mariadbd"));
            match started? {
                Started::Ready => {
                    if launch.tls.is_some() {
                        // TLS users: one with a password over TLS, one with
                        // a client certificate the CA signed.
                        let users = format!(
                            "CREATE USER {PASSWORD_USER}@'%' IDENTIFIED BY '{PASSWORD}' REQUIRE SSL;
                             GRANT ALL ON *.* TO {PASSWORD_USER}@'%';
                             CREATE USER {CERT_USER}@'%' REQUIRE SUBJECT '/CN={CERT_USER}';
                             GRANT ALL ON *.* TO {CERT_USER}@'%';"
                        );
                        client
                            .run("", &users, false)
                            .map_err(|e| StartError(format!("creating the TLS users: {e}")))?;
                    }
                    return Ok(MariadbServer {
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
            "MariaDB found its port taken {PORT_ATTEMPTS} times in a row"
        ))
    }
}

impl Drop for MariadbServer {
    /// An own server goes with its owner (the shared one lives in a static
    /// and goes with the process).
    fn drop(&mut self) {
        self.reaper.finish();
    }
}

/// How long a clean shutdown may take.
const STOP_TIMEOUT: Duration = Duration::from_secs(90);

/// mariadbd's options; `--no-defaults` first (it must be).
fn settings(port: u16, dir: &Path, user: Option<&str>, tls: Option<&TlsFiles>) -> Vec<String> {
    let path = |name: &str| dir.join(name).display().to_string();
    let mut settings = vec![
        "--no-defaults".to_owned(),
        format!("--datadir={}", path("data")),
        format!("--port={port}"),
        "--bind-address=127.0.0.1".to_owned(),
        format!("--socket={}", path("mysql.sock")),
        format!("--pid-file={}", path("mariadbd.pid")),
        format!("--tmpdir={}", dir.display()),
        // The row-based binlog with full images and column names that CDC
        // reads, as production servers must be configured for it.
        format!("--log-bin={}", path("binlog")),
        "--server-id=1".to_owned(),
        "--binlog-format=ROW".to_owned(),
        "--binlog-row-image=FULL".to_owned(),
        "--binlog-row-metadata=FULL".to_owned(),
        // LOAD DATA LOCAL INFILE: the fast write path.
        "--local-infile=1".to_owned(),
        "--skip-name-resolve".to_owned(),
        // Debian's packaged defaults (--no-defaults drops its my.cnf, and
        // the compiled-in default is latin1).
        "--character-set-server=utf8mb4".to_owned(),
        "--collation-server=utf8mb4_general_ci".to_owned(),
        // Test speed: nothing here must survive a machine crash.
        "--innodb-flush-log-at-trx-commit=0".to_owned(),
        "--innodb-doublewrite=0".to_owned(),
        // Tests run in parallel, each with a pool of connections.
        "--max-connections=300".to_owned(),
        // Rows with 16 MiB blobs.
        "--max-allowed-packet=256M".to_owned(),
        // Benchmarks: a 1M-row table fits in memory, so they measure the
        // connector rather than the disk.
        "--innodb-buffer-pool-size=1G".to_owned(),
    ];
    if let Some(files) = tls {
        settings.extend([
            format!("--ssl-cert={}", files.server_cert().display()),
            format!("--ssl-key={}", files.server_key().display()),
            format!("--ssl-ca={}", files.ca().display()),
        ]);
    }
    if let Some(user) = user {
        // Root only: mariadbd then switches to this user.
        settings.insert(2, format!("--user={user}"));
    }
    settings
}
