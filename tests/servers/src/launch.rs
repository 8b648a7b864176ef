//! What starting either server takes: the Debian packages' binaries, a temp
//! dir the server's system user owns, a free port, and a wait until the
//! server answers a query — or an error carrying the tail of its log.

use std::ffi::OsString;
use std::fmt;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::net::{Ipv4Addr, TcpListener};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How long a server may take to accept connections. Generous: the tests
/// start both servers while cargo may still be linking on two cores.
const READY_TIMEOUT: Duration = Duration::from_secs(90);
const POLL_INTERVAL: Duration = Duration::from_millis(20);
/// Fresh ports to try when the one picked is taken before the server binds it.
pub(crate) const PORT_ATTEMPTS: usize = 5;

/// Why a server could not be started; the message says what to do.
#[derive(Debug, Clone)]
pub struct StartError(pub(crate) String);

impl fmt::Display for StartError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for StartError {}

pub(crate) fn fail<T>(message: impl Into<String>) -> Result<T, StartError> {
    Err(StartError(message.into()))
}

/// The first executable `name` in `before_path`, then `PATH`, then
/// `after_path`.
pub(crate) fn find_binary(
    name: &str,
    before_path: &[&Path],
    after_path: &[&Path],
) -> Result<PathBuf, StartError> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let dirs = before_path
        .iter()
        .map(|d| d.to_path_buf())
        .chain(std::env::split_paths(&path))
        .chain(after_path.iter().map(|d| d.to_path_buf()));
    for dir in dirs {
        let candidate = dir.join(name);
        if let Ok(meta) = std::fs::metadata(&candidate)
            && meta.is_file()
            && meta.permissions().mode() & 0o111 != 0
        {
            return Ok(candidate);
        }
    }
    let elsewhere: Vec<String> = before_path
        .iter()
        .chain(after_path)
        .map(|d| d.display().to_string())
        .collect();
    fail(format!(
        "`{name}` is not on PATH nor in {}: run `make test` (it installs the servers) \
         or `apt-get install postgresql mariadb-server`",
        elsewhere.join(", ")
    ))
}

/// Whether this process runs as root: then the servers run as their Debian
/// system users (`initdb` and `pg_ctl` refuse root).
pub(crate) fn is_root() -> bool {
    // /proc/self belongs to the effective user; std has no geteuid.
    std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
}

/// `program` as a command run by `user` (through `runuser`), or by us.
pub(crate) fn command_as(user: Option<&str>, program: &Path) -> Result<Command, StartError> {
    Ok(match user {
        Some(user) => {
            let runuser = find_binary(
                "runuser",
                &[],
                &[Path::new("/usr/sbin"), Path::new("/sbin")],
            )?;
            let mut cmd = Command::new(runuser);
            cmd.args(["-u", user, "--"]).arg(program);
            cmd
        }
        None => Command::new(program),
    })
}

/// A fresh directory under /tmp for one server, owned by `owner` if given.
/// /tmp rather than `$TMPDIR`: the server's user must reach it, and the
/// unix socket path inside must stay under 108 bytes.
pub(crate) fn server_dir(
    prefix: &str,
    owner: Option<&str>,
) -> Result<tempfile::TempDir, StartError> {
    let dir = tempfile::Builder::new()
        .prefix(prefix)
        .tempdir_in("/tmp")
        .map_err(|e| StartError(format!("cannot create a temp dir in /tmp: {e}")))?;
    if let Some(owner) = owner {
        run(Command::new("chown")
            .arg(format!("{owner}:"))
            .arg(dir.path()))?;
    }
    Ok(dir)
}

/// `cmd` as program and arguments, to hand to another process.
pub(crate) fn argv(cmd: &Command) -> Vec<OsString> {
    std::iter::once(cmd.get_program())
        .chain(cmd.get_args())
        .map(ToOwned::to_owned)
        .collect()
}

/// Runs `cmd` to completion; its output becomes the error when it fails.
pub(crate) fn run(cmd: &mut Command) -> Result<(), StartError> {
    let what = format!("{cmd:?}");
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .map_err(|e| StartError(format!("cannot run {what}: {e}")))?;
    if out.status.success() {
        return Ok(());
    }
    fail(format!(
        "{what} failed ({}):\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    ))
}

/// A port nobody listens on right now. The server binds it a moment later,
/// so another process may take it first: callers retry on "Address already
/// in use".
pub(crate) fn free_port() -> Result<u16, StartError> {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| StartError(format!("cannot pick a free port on 127.0.0.1: {e}")))
}

/// A new, empty log file, as the server's stdout and stderr. The server's
/// user writes through the inherited descriptors, whoever owns the file.
pub(crate) fn log_file(path: &Path) -> Result<(Stdio, Stdio), StartError> {
    let open = || -> std::io::Result<(Stdio, Stdio)> {
        let file = File::create(path)?;
        let err = file.try_clone()?;
        Ok((file.into(), err.into()))
    };
    open().map_err(|e| StartError(format!("cannot create {}: {e}", path.display())))
}

/// How a start attempt ended.
pub(crate) enum Started {
    Ready,
    /// Someone bound the port between our pick and the server's bind.
    PortTaken,
}

/// Polls `probe` until it succeeds, `server` exits, or the timeout passes.
pub(crate) fn wait_until_ready(
    what: &str,
    server: &mut Child,
    log: &Path,
    mut probe: impl FnMut() -> bool,
) -> Result<Started, StartError> {
    let deadline = Instant::now() + READY_TIMEOUT;
    loop {
        if let Ok(Some(status)) = server.try_wait() {
            let tail = log_tail(log);
            if tail.contains("Address already in use") {
                return Ok(Started::PortTaken);
            }
            return fail(format!(
                "{what} exited during start-up ({status}); end of {}:\n{tail}",
                log.display()
            ));
        }
        if probe() {
            return Ok(Started::Ready);
        }
        if Instant::now() > deadline {
            return fail(format!(
                "{what} did not accept connections within {} s; end of {}:\n{}",
                READY_TIMEOUT.as_secs(),
                log.display(),
                log_tail(log)
            ));
        }
        std::thread::sleep(POLL_INTERVAL);
    }
}

/// Starts a stopped server again on its own `port` (its clients know no
/// other): `spawn` runs it, `probe` asks whether it answers. When another
/// process holds the port for a moment, waits and tries again.
pub(crate) fn restart_on(
    port: u16,
    what: &str,
    log: &Path,
    mut spawn: impl FnMut(u16) -> Result<Child, StartError>,
    mut probe: impl FnMut() -> bool,
) -> Result<Child, StartError> {
    for _ in 0..PORT_ATTEMPTS {
        let mut server = spawn(port)?;
        match wait_until_ready(what, &mut server, log, &mut probe)? {
            Started::Ready => return Ok(server),
            Started::PortTaken => std::thread::sleep(Duration::from_secs(1)),
        }
    }
    fail(format!(
        "{what} found its port {port} taken {PORT_ATTEMPTS} times in a row"
    ))
}

/// The last lines of a log, for error messages.
fn log_tail(path: &Path) -> String {
    const TAIL_BYTES: u64 = 4096;
    let mut text = Vec::new();
    if let Ok(mut file) = File::open(path) {
        let len = file.metadata().map(|m| m.len()).unwrap_or(0);
        let _ = file.seek(SeekFrom::Start(len.saturating_sub(TAIL_BYTES)));
        let _ = file.read_to_end(&mut text);
    }
    let text = String::from_utf8_lossy(&text);
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(25)..].join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_binary_says_how_to_install_it() {
        let err = find_binary("dmp-no-such-server", &[Path::new("/nonexistent/bin")], &[])
            .expect_err("not installed");
        assert!(err.0.contains("`dmp-no-such-server`"), "{err}");
        assert!(err.0.contains("/nonexistent/bin"), "{err}");
        assert!(err.0.contains("make test"), "{err}");
        assert!(
            err.0.contains("apt-get install postgresql mariadb-server"),
            "{err}"
        );
    }
}
