//! Interrupted runs: `dmp run` killed with SIGKILL or stopped with Ctrl-C in
//! the middle of a table, then run again, must leave every row exactly once.

use std::path::Path;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use rusqlite::Connection;

use crate::support::{
    assert_exit, assert_same_rows, committed_rows, create_events_db, dmp, pipeline, rows, run_dmp,
    text,
};

const ROWS: i64 = 300_000;
/// Small batches and chunks, so a kill lands mid-table.
const PIPELINE: &str = "[source]\nurl = \"sqlite://source.db\"\n[target]\nurl = \"sqlite://target.db\"\n[run]\nbatch_rows = 500\nchunk_rows = 60000\nparallelism = 2\n";

fn start(dir: &Path, file: &str) -> Child {
    dmp(dir)
        .args(["run", file])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("dmp starts")
}

/// Waits until `progress()` reports rows, as the target commits them.
fn wait_for_progress(child: &mut Child, progress: impl Fn() -> i64) -> i64 {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let done = progress();
        if done > 0 {
            return done;
        }
        if let Some(status) = child.try_wait().expect("try_wait") {
            panic!("dmp ended before committing anything: {status}");
        }
        assert!(Instant::now() < deadline, "no progress within two minutes");
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn source_rows(dir: &Path) -> Vec<Vec<rusqlite::types::Value>> {
    rows(&dir.join("source.db"), "events")
}

#[test]
fn sigkill_mid_table_then_rerun_gives_every_row_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    create_events_db(&dir.path().join("source.db"), ROWS);
    pipeline(dir.path(), "p.toml", PIPELINE);
    let target = dir.path().join("target.db");
    // Several kills at different points, then a run that finishes.
    let mut kills = 0;
    for _ in 0..3 {
        let mut child = start(dir.path(), "p.toml");
        let before = committed_rows(&target);
        wait_for_progress(&mut child, || committed_rows(&target) - before);
        child.kill().expect("SIGKILL");
        child.wait().expect("wait");
        let committed = committed_rows(&target);
        if committed < ROWS {
            kills += 1;
            // Nothing beyond the checkpoints is visible in the target.
            let conn = Connection::open(&target).expect("open");
            let in_table: i64 = conn
                .query_row("SELECT count(*) FROM events", [], |r| r.get(0))
                .expect("count");
            assert_eq!(in_table, committed, "rows without checkpoint after a kill");
        }
    }
    assert!(
        kills >= 1,
        "every run finished before it could be killed: make the table bigger"
    );
    let out = run_dmp(dir.path(), &["run", "p.toml"]);
    assert_exit(&out, 0);
    assert!(
        text(&out.stdout).contains("(resumed)"),
        "{}",
        text(&out.stdout)
    );
    assert_same_rows(&rows(&target, "events"), &source_rows(dir.path()), "events");
}

#[test]
fn sigkill_while_writing_jsonl_then_rerun_gives_every_row_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    create_events_db(&dir.path().join("source.db"), ROWS);
    pipeline(
        dir.path(),
        "out.toml",
        "[source]\nurl = \"sqlite://source.db\"\n[target]\nurl = \"file://files?format=jsonl\"\n[run]\nbatch_rows = 500\nchunk_rows = 60000\nparallelism = 2\n",
    );
    let partial = dir.path().join("files/.events.jsonl.dmp-partial");
    let mut child = start(dir.path(), "out.toml");
    wait_for_progress(&mut child, || {
        std::fs::metadata(&partial).map_or(0, |m| i64::try_from(m.len()).unwrap_or(0))
    });
    child.kill().expect("SIGKILL");
    child.wait().expect("wait");
    assert!(
        !dir.path().join("files/events.jsonl").exists(),
        "a half file was published"
    );

    assert_exit(&run_dmp(dir.path(), &["run", "out.toml"]), 0);
    assert!(!partial.exists());
    // Read the file back into SQLite and compare with the source.
    pipeline(
        dir.path(),
        "back.toml",
        "[source]\nurl = \"file://files?format=jsonl\"\n[target]\nurl = \"sqlite://back.db\"\n",
    );
    assert_exit(&run_dmp(dir.path(), &["run", "back.toml"]), 0);
    assert_same_rows(
        &rows(&dir.path().join("back.db"), "events"),
        &source_rows(dir.path()),
        "events",
    );
}

#[test]
fn ctrl_c_stops_cleanly_and_the_next_run_resumes() {
    let dir = tempfile::tempdir().expect("tempdir");
    create_events_db(&dir.path().join("source.db"), ROWS);
    pipeline(dir.path(), "p.toml", PIPELINE);
    let target = dir.path().join("target.db");
    let mut child = start(dir.path(), "p.toml");
    wait_for_progress(&mut child, || committed_rows(&target));
    let status = std::process::Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .expect("kill -INT");
    assert!(status.success());
    let out = child.wait_with_output().expect("wait");
    if out.status.code() == Some(0) {
        // The run finished before the signal arrived; nothing to resume.
        assert_same_rows(&rows(&target, "events"), &source_rows(dir.path()), "events");
        return;
    }
    assert_exit(&out, 130);
    assert!(
        text(&out.stderr).contains("run the same command again to resume"),
        "{}",
        text(&out.stderr)
    );
    let out = run_dmp(dir.path(), &["run", "p.toml"]);
    assert_exit(&out, 0);
    assert!(text(&out.stdout).contains("(resumed)"));
    assert_same_rows(&rows(&target, "events"), &source_rows(dir.path()), "events");
}
