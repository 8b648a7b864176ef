//! The process that stops a server and deletes its directory once the test
//! process is gone, however it ends (normal exit, panic, SIGKILL).
//!
//! The reaper is a `sh` whose stdin is a pipe: we hold the write end for our
//! whole life and never write to it except to name the server's pid. When we
//! exit, the kernel closes it, the reaper reads EOF and cleans up. Rust opens
//! pipes close-on-exec, so no other child (psql, dmp...) inherits the write
//! end and keeps the reaper waiting. The reaper runs in its own process group
//! and ignores SIGINT/SIGHUP: a Ctrl-C to the test run must not kill it
//! before it has cleaned up.

use std::ffi::OsString;
use std::io::Write;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::launch::StartError;

/// Reads `pid comm` lines until EOF, runs the stop command given as
/// arguments, SIGKILLs the pids that still run the same program (a pid can
/// be reused once its process is reaped), waits up to ten seconds for them
/// to die, and removes the directory. A zombie counts as dead: it holds no
/// files, and PID 1 may take its time to reap it.
const SCRIPT: &str = r#"
trap '' INT HUP
procs=
while read -r pid comm; do procs="$procs $pid:$comm"; done
if [ $# -gt 0 ]; then "$@" >/dev/null 2>&1; fi
for p in $procs; do
    pid=${p%%:*}
    if [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = "${p#*:}" ]; then
        kill -KILL "$pid" 2>/dev/null
        n=0
        while [ $n -lt 200 ] && { read -r _ _ state _ <"/proc/$pid/stat"; } 2>/dev/null \
            && [ "$state" != Z ]; do
            sleep 0.05
            n=$((n + 1))
        done
    fi
done
rm -rf -- "$DMP_TEST_SERVER_DIR"
"#;

pub(crate) struct Reaper {
    /// The write end of the reaper's stdin: dropping it starts the cleanup.
    pipe: Mutex<Option<ChildStdin>>,
    reaper: Mutex<Child>,
    /// The server process we started, waited for by [`Reaper::finish`].
    server: Mutex<Option<Child>>,
}

impl Reaper {
    /// Starts a reaper that will run `stop` (program and arguments; may be
    /// empty) and then remove `dir`.
    pub(crate) fn spawn(dir: &Path, stop: &[OsString]) -> Result<Reaper, StartError> {
        let reaper = Command::new("sh")
            .arg("-c")
            .arg(SCRIPT)
            .arg("dmp-test-servers-reaper")
            .args(stop)
            .env("DMP_TEST_SERVER_DIR", dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn();
        let mut reaper =
            reaper.map_err(|e| StartError(format!("cannot start the cleanup process: {e}")))?;
        let pipe = reaper.stdin.take();
        Ok(Reaper {
            pipe: Mutex::new(pipe),
            reaper: Mutex::new(reaper),
            server: Mutex::new(None),
        })
    }

    /// Hands over the server process. With `kill_as` (its program name,
    /// as in /proc/PID/comm) the reaper SIGKILLs it after the stop command
    /// if it still runs; without, the stop command alone stops it.
    pub(crate) fn adopt(&self, server: Child, kill_as: Option<&str>) {
        let mut pipe = self.pipe.lock().expect("reaper pipe");
        if let (Some(pipe), Some(comm)) = (pipe.as_mut(), kill_as) {
            // The reaper only ends after EOF: it cannot have gone away.
            let _ = writeln!(pipe, "{} {comm}", server.id());
        }
        *self.server.lock().expect("reaper server") = Some(server);
    }

    /// The pid of the server process handed over last.
    pub(crate) fn server_pid(&self) -> Option<u32> {
        self.server
            .lock()
            .expect("reaper server")
            .as_ref()
            .map(Child::id)
    }

    /// Waits until the server process, being stopped, has exited.
    pub(crate) fn wait_server(&self, timeout: Duration) -> Result<(), StartError> {
        let mut server = self.server.lock().expect("reaper server");
        let Some(child) = server.as_mut() else {
            return Ok(());
        };
        let deadline = Instant::now() + timeout;
        loop {
            match child.try_wait() {
                Ok(Some(_)) => {
                    *server = None;
                    return Ok(());
                }
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(20));
                }
                Ok(None) => {
                    return Err(StartError(format!(
                        "the server (pid {}) still runs after {} s",
                        child.id(),
                        timeout.as_secs()
                    )));
                }
                Err(e) => return Err(StartError(format!("cannot wait for the server: {e}"))),
            }
        }
    }

    /// Starts the cleanup now and waits until the server has stopped and
    /// its directory is gone.
    pub(crate) fn finish(&self) {
        drop(self.pipe.lock().expect("reaper pipe").take());
        // The server is our child: reap it once the reaper has stopped it.
        if let Some(server) = self.server.lock().expect("reaper server").as_mut() {
            let _ = server.wait();
        }
        let _ = self.reaper.lock().expect("reaper").wait();
    }
}
