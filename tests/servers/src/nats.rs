//! A private NATS server with JetStream (`nats-server -js`, from the Debian
//! package) in a temp dir on a free 127.0.0.1 port: the message bus that
//! DMP's NATS connector and its workers meet on.

use std::ffi::OsString;
use std::io::{BufRead, BufReader};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::launch::{
    PORT_ATTEMPTS, StartError, Started, fail, find_binary, free_port, log_file, restart_on, run,
    server_dir, wait_until_ready,
};
use crate::reaper::Reaper;

const STOP_TIMEOUT: Duration = Duration::from_secs(60);

/// A NATS server of this process, JetStream on, no authentication.
pub struct NatsServer {
    port: u16,
    dir: PathBuf,
    launch: Launch,
    /// A test's own server: it may be stopped, and it goes when dropped.
    own: bool,
    pub(crate) reaper: Reaper,
}

/// How the server process is run, again after a stop.
struct Launch {
    binary: PathBuf,
    dir: PathBuf,
    log: PathBuf,
    /// A cluster member's name and routes.
    cluster: Vec<String>,
}

impl Launch {
    fn spawn(&self, port: u16) -> Result<Child, StartError> {
        let (stdout, stderr) = log_file(&self.log)?;
        Command::new(&self.binary)
            .args(["-js", "-a", "127.0.0.1", "-p", &port.to_string(), "-P"])
            // The reaper stops the server by it, restarted or not.
            .arg(self.dir.join("nats.pid"))
            // JetStream's files: kept across a stop, as a server's data is.
            .arg("-sd")
            .arg(self.dir.join("jetstream"))
            .args(&self.cluster)
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(stderr)
            .spawn()
            .map_err(|e| StartError(format!("cannot run {}: {e}", self.binary.display())))
    }
}

/// Whether a NATS server with JetStream answers on `port`: its greeting
/// is an `INFO {…}` line that says so.
fn answers(port: u16) -> bool {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let Ok(stream) = TcpStream::connect_timeout(&addr, Duration::from_millis(500)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
    let mut greeting = String::new();
    BufReader::new(stream).read_line(&mut greeting).is_ok()
        && greeting.starts_with("INFO ")
        && greeting.contains("\"jetstream\":true")
}

impl NatsServer {
    /// The TCP port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `nats://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// The directory of the `nats-server` binary.
    pub fn bin_dir(&self) -> &Path {
        self.launch.binary.parent().unwrap_or(Path::new("/"))
    }

    /// The server's temp dir: `jetstream/` (its streams), `nats.log`.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Stops the server (SIGTERM) and waits until it is gone. Only for a
    /// test's own server.
    ///
    /// # Panics
    /// On the shared server, or when it does not stop within a minute.
    pub fn stop(&self) {
        assert!(
            self.own,
            "other tests use this NATS server: stop only one from own_nats()"
        );
        let Some(pid) = self.reaper.server_pid() else {
            return;
        };
        let stopped = run(Command::new("kill").args(["-TERM", &pid.to_string()]))
            .and_then(|()| self.reaper.wait_server(STOP_TIMEOUT));
        if let Err(e) = stopped {
            panic!("cannot stop the NATS server on port {}: {e}", self.port);
        }
    }

    /// Starts the server again after [`NatsServer::stop`], on the same
    /// port and streams, and waits until it answers.
    ///
    /// # Panics
    /// When it cannot start (the message ends with its log).
    pub fn start(&self) {
        let port = self.port;
        match restart_on(
            port,
            "NATS",
            &self.launch.log,
            |p| self.launch.spawn(p),
            || answers(port),
        ) {
            Ok(server) => self.reaper.adopt(server, None),
            Err(e) => panic!("cannot start the NATS server again: {e}"),
        }
    }

    /// SIGKILLs the server and waits until it is gone. Only for a test's
    /// own server.
    ///
    /// # Panics
    /// On the shared server, or when it does not go within a minute.
    pub fn kill(&self) {
        assert!(self.own, "other tests use this NATS server");
        let Some(pid) = self.reaper.server_pid() else {
            return;
        };
        let killed = run(Command::new("kill").args(["-KILL", &pid.to_string()]))
            .and_then(|()| self.reaper.wait_server(STOP_TIMEOUT));
        if let Err(e) = killed {
            panic!("cannot kill the NATS server on port {}: {e}", self.port);
        }
    }

    /// Starts a server; `own` for one test alone (see [`crate::own_nats`]).
    pub(crate) fn launch(own: bool) -> Result<NatsServer, StartError> {
        Self::launch_with(own, Vec::new())
    }

    fn launch_with(own: bool, cluster: Vec<String>) -> Result<NatsServer, StartError> {
        let binary = find_binary("nats-server", &[], &[Path::new("/usr/sbin")])?;
        let temp = server_dir("dmp-test-nats-", None)?;
        let dir = temp.path().to_path_buf();
        // The reaper SIGKILLs the server by its pid file (an own one may
        // have been restarted), then removes the directory.
        let pid_file = dir.join("nats.pid");
        let kill = "[ -f \"$1\" ] && kill -KILL \"$(cat \"$1\")\"";
        let stop: Vec<OsString> = ["sh", "-c", kill, "sh"]
            .into_iter()
            .map(OsString::from)
            .chain([pid_file.clone().into_os_string()])
            .collect();
        let reaper = Reaper::spawn(&dir, &stop)?;
        let _ = temp.keep();
        let launch = Launch {
            binary,
            log: dir.join("nats.log"),
            dir: dir.clone(),
            cluster,
        };
        for _ in 0..PORT_ATTEMPTS {
            let port = free_port()?;
            let mut server = launch.spawn(port)?;
            let started = wait_until_ready("NATS", &mut server, &launch.log, || answers(port));
            reaper.adopt(server, (!own).then_some("nats-server"));
            match started? {
                Started::Ready => {
                    return Ok(NatsServer {
                        port,
                        dir,
                        launch,
                        own,
                        reaper,
                    });
                }
                Started::PortTaken => continue,
            }
        }
        fail(format!(
            "NATS found its port taken {PORT_ATTEMPTS} times in a row"
        ))
    }
}

/// Three (or more) NATS servers with JetStream, routed into one cluster on
/// loopback ports: streams are replicated over them, and one may be
/// killed while the others go on.
pub struct NatsCluster {
    servers: Vec<NatsServer>,
}

impl NatsCluster {
    /// Starts `size` servers named `dmp-n1`… for the calling test alone.
    pub(crate) fn launch(size: usize) -> Result<NatsCluster, StartError> {
        let routes: Vec<u16> = (0..size).map(|_| free_port()).collect::<Result<_, _>>()?;
        let all = routes
            .iter()
            .map(|p| format!("nats://127.0.0.1:{p}"))
            .collect::<Vec<_>>()
            .join(",");
        let servers = routes
            .iter()
            .enumerate()
            .map(|(i, route)| {
                NatsServer::launch_with(
                    true,
                    vec![
                        "-n".into(),
                        format!("dmp-n{}", i + 1),
                        "--cluster_name".into(),
                        "dmp".into(),
                        "--cluster".into(),
                        format!("nats://127.0.0.1:{route}"),
                        "--routes".into(),
                        all.clone(),
                    ],
                )
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(NatsCluster { servers })
    }

    /// Every server's URL, comma-separated, as clients take them.
    pub fn url(&self) -> String {
        self.servers
            .iter()
            .map(NatsServer::url)
            .collect::<Vec<_>>()
            .join(",")
    }

    /// The server named `name` (`dmp-n2`).
    ///
    /// # Panics
    /// When no server has that name.
    pub fn server(&self, name: &str) -> &NatsServer {
        let index: usize = name
            .strip_prefix("dmp-n")
            .and_then(|n| n.parse().ok())
            .filter(|n| (1..=self.servers.len()).contains(n))
            .unwrap_or_else(|| panic!("no server {name} in the cluster"));
        &self.servers[index - 1]
    }
}

impl Drop for NatsServer {
    /// An own server goes with its owner (the shared one lives in a static
    /// and goes with the process).
    fn drop(&mut self) {
        self.reaper.finish();
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn an_own_server_answers_with_jetstream_stops_and_starts_on_its_port() {
        let server = crate::own_nats();
        assert!(super::answers(server.port()));
        assert_eq!(server.url(), format!("nats://127.0.0.1:{}", server.port()));
        server.stop();
        assert!(!super::answers(server.port()));
        server.start();
        assert!(super::answers(server.port()));
        let dir = server.dir().to_path_buf();
        drop(server);
        assert!(!dir.exists(), "the server's directory goes with it");
    }
}
