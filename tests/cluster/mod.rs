//! Runs shared by `dmp worker` processes over a private NATS JetStream:
//! workers started, killed with SIGKILL and added while `dmp run
//! --cluster` watches; afterwards the target equals the source row for
//! row, every worker's part shows in the progress records, and the finish
//! steps ran once.

mod failover;
mod jetstream_cluster;
mod load;
mod poison;
mod serve;

use std::path::{Path, PathBuf};
use std::process::{Child, Output, Stdio};
use std::time::{Duration, Instant};

use crate::support::bus::{BusMessage, message_count, read_stream};
use crate::support::dmp;

/// How long a worker may be silent before its chunk goes to another: short,
/// so that a killed worker's chunk comes back soon.
pub(crate) const ACK_WAIT: &str = "5s";

/// Worker processes of one test, each logging to `<dir>/<name>.log`.
pub(crate) struct Workers {
    dir: PathBuf,
    url: String,
    /// More arguments for each worker.
    args: Vec<String>,
    running: Vec<(String, Child)>,
    started: Vec<String>,
}

impl Workers {
    pub(crate) fn new(dir: &Path, url: &str) -> Self {
        Workers {
            dir: dir.to_path_buf(),
            url: url.to_string(),
            args: Vec::new(),
            running: Vec::new(),
            started: Vec::new(),
        }
    }

    /// Workers started from now on get `args` too.
    pub(crate) fn with_args(mut self, args: &[&str]) -> Self {
        self.args = args.iter().map(ToString::to_string).collect();
        self
    }

    /// Starts worker `name` with one slot.
    pub(crate) fn start(&mut self, name: &str) {
        let log = std::fs::File::create(self.log_path(name)).expect("worker log");
        let child = dmp(&self.dir)
            .args([
                "worker",
                "--cluster",
                &self.url,
                "--name",
                name,
                "--slots",
                "1",
            ])
            .args(["--ack-wait", ACK_WAIT])
            .args(&self.args)
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("dmp worker starts");
        self.running.push((name.to_string(), child));
        self.started.push(name.to_string());
    }

    /// SIGKILLs worker `name`.
    pub(crate) fn kill(&mut self, name: &str) {
        let at = self
            .running
            .iter()
            .position(|(n, _)| n == name)
            .expect("a running worker");
        let (_, mut child) = self.running.remove(at);
        child.kill().expect("SIGKILL");
        let _ = child.wait();
    }

    fn log_path(&self, name: &str) -> PathBuf {
        self.dir.join(format!("{name}.log"))
    }

    /// Lines of every worker's log holding `needle`.
    pub(crate) fn logged(&self, needle: &str) -> usize {
        self.started
            .iter()
            .map(|name| {
                std::fs::read_to_string(self.log_path(name))
                    .unwrap_or_default()
                    .lines()
                    .filter(|l| l.contains(needle))
                    .count()
            })
            .sum()
    }

    /// Every worker's log, for a failure's message.
    pub(crate) fn logs(&self) -> String {
        self.started
            .iter()
            .map(|name| {
                let log = std::fs::read_to_string(self.log_path(name)).unwrap_or_default();
                let lines: Vec<&str> = log.lines().collect();
                format!(
                    "--- worker {name}:\n{}",
                    lines[lines.len().saturating_sub(60)..].join("\n")
                )
            })
            .collect::<Vec<_>>()
            .join("\n")
    }
}

impl Drop for Workers {
    fn drop(&mut self) {
        for (_, child) in &mut self.running {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// `dmp run p.toml --cluster URL` in `dir`, logging to `dir/submit.log`.
pub(crate) fn submit(dir: &Path, url: &str, extra: &[&str]) -> Child {
    let log = std::fs::File::create(dir.join("submit.log")).expect("submit log");
    dmp(dir)
        .args(["run", "p.toml", "--cluster", url, "--ack-wait", ACK_WAIT])
        .args(extra)
        .env("RUST_LOG", "info")
        .stdout(Stdio::piped())
        .stderr(log)
        .spawn()
        .expect("dmp run starts")
}

/// Waits for the submitter to end (at most `limit`), showing every log
/// should it not.
pub(crate) fn finished(child: Child, dir: &Path, workers: &Workers, limit: Duration) -> Output {
    let mut child = child;
    let deadline = Instant::now() + limit;
    while child.try_wait().expect("try_wait").is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "the cluster run did not end within {limit:?}\nsubmitter:\n{}\n{}",
                std::fs::read_to_string(dir.join("submit.log")).unwrap_or_default(),
                workers.logs()
            );
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    child.wait_with_output().expect("output")
}

/// The progress records of the cluster at `url`: `(key, value)`.
pub(crate) fn progress_records(url: &str) -> Vec<(String, serde_json::Value)> {
    // Not there until the first member joined.
    if message_count(url, "KV_DMP_PROGRESS") == 0 {
        return Vec::new();
    }
    read_stream(url, "KV_DMP_PROGRESS")
        .into_iter()
        .map(|m: BusMessage| {
            let key = m
                .subject
                .trim_start_matches("$KV.DMP_PROGRESS.")
                .to_string();
            (key, m.body)
        })
        .collect()
}

/// Chunks each worker finished, by worker name.
pub(crate) fn chunks_by_worker(url: &str) -> Vec<(String, u64)> {
    latest_records(url)
        .into_iter()
        .filter(|(key, _)| key.contains(".worker."))
        .map(|(_, v)| {
            (
                v["worker"].as_str().unwrap_or_default().to_string(),
                v["chunks_done"].as_u64().unwrap_or_default(),
            )
        })
        .collect()
}

/// Waits until `done` chunks are finished and worker `name` holds a
/// chunk: that chunk's own record (written before its copy begins and
/// again after its commit) says running, by `name`. Returns its key.
/// (The worker's record, rewritten once a second, may still list a chunk
/// already committed.)
pub(crate) fn wait_until_copying(url: &str, name: &str, done: u64, workers: &Workers) -> String {
    let deadline = Instant::now() + Duration::from_secs(180);
    loop {
        let latest = latest_records(url);
        let finished: u64 = latest
            .iter()
            .filter(|(key, _)| key.contains(".worker."))
            .filter_map(|(_, v)| v["chunks_done"].as_u64())
            .sum();
        let held = latest
            .iter()
            .find(|(key, v)| key.contains(".chunk.") && holds(v, name))
            .map(|(key, _)| key.clone());
        if let Some(key) = held.filter(|_| finished >= done) {
            return key;
        }
        assert!(
            Instant::now() < deadline,
            "worker {name} was never seen copying after {done} chunks\n{}",
            workers.logs()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Whether a chunk's record says `name` is copying it.
fn holds(record: &serde_json::Value, name: &str) -> bool {
    record["state"] == "running" && record["worker"] == name
}

/// The progress bucket's current value of each key (the stream also
/// holds older revisions).
pub(crate) fn latest_records(url: &str) -> std::collections::BTreeMap<String, serde_json::Value> {
    progress_records(url).into_iter().collect()
}
