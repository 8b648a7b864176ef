//! The process dies right after a batch's messages are acknowledged and
//! before its checkpoint is written, and restarts after the stream's
//! dedupe window has passed: the restarted target finds those messages on
//! the stream and publishes none of them again — for a snapshot chunk and
//! for a change stream.

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use dmp_test_servers::{nats, postgres};

use crate::sql::cdc::{interrupt, spawn_run};
use crate::support::bus::{changes_once, create_forgetful_stream, read_stream};
use crate::support::{assert_exit, dmp, pipeline, run_dmp};

/// Runs `dmp run p.toml` in `dir` set to abort at `point`, and waits for it.
fn run_until_crash(dir: &Path, point: &str) {
    let mut child = dmp(dir)
        .args(["run", "p.toml"])
        .env("DMP_CRASH_AT", point)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("dmp runs");
    let deadline = Instant::now() + Duration::from_secs(60);
    while child.try_wait().expect("waits").is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("dmp did not reach crash point {point}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = child.wait_with_output().expect("dmp ends");
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(log.contains("crash point reached"), "{log}");
    assert!(!out.status.success());
    // The dedupe window (100 ms) passes.
    std::thread::sleep(Duration::from_millis(300));
}

#[test]
fn a_snapshot_batch_published_before_a_crash_is_not_published_again() {
    let url = nats().url();
    create_forgetful_stream(&url, "POINT_SNAP", "point_snap", Duration::from_millis(100));
    let dir = tempfile::tempdir().expect("tempdir");
    let db = rusqlite::Connection::open(dir.path().join("s.db")).expect("db");
    db.execute_batch(
        "CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT);
         WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 3000)
         INSERT INTO t SELECT i, 'row ' || i FROM n;
         CREATE TABLE k (v TEXT);
         INSERT INTO k VALUES ('a'), ('b'), ('a');",
    )
    .expect("rows");
    pipeline(
        dir.path(),
        "p.toml",
        &format!(
            "[source]\nurl = \"sqlite://s.db\"\n[target]\nurl = \"{url}/POINT_SNAP?subject_prefix=point_snap\"\n[run]\nmode = \"full\"\nbatch_rows = 400\nchunk_rows = 1000\nparallelism = 1\n"
        ),
    );
    run_until_crash(dir.path(), "write:3");
    assert_exit(&run_dmp(dir.path(), &["run", "p.toml"]), 0);
    let messages = read_stream(&url, "POINT_SNAP");
    let rows = changes_once(&messages);
    assert_eq!(rows.len(), 3003, "every row once, keyless ones too");
}

#[test]
fn changes_published_before_a_crash_are_not_published_again() {
    let url = nats().url();
    create_forgetful_stream(&url, "POINT_CDC", "POINT_CDC", Duration::from_millis(100));
    let source = postgres().create_database("nats_point_cdc");
    source
        .exec("CREATE TABLE t (id int PRIMARY KEY, v int NOT NULL); INSERT INTO t VALUES (1, 0);");
    let dir = tempfile::tempdir().expect("tempdir");
    pipeline(
        dir.path(),
        "p.toml",
        &format!(
            "[source]\nurl = \"{}\"\n[target]\nurl = \"{url}/POINT_CDC\"\n[run]\nmode = \"full+cdc\"\nbatch_rows = 5\n[cdc]\nslot = \"dmp_nats_point\"\nheartbeat = \"1s\"\n",
            source.url
        ),
    );
    // Transactions of 12 changes each: batches of 5 cut them.
    let write = |from: i32| {
        let values: Vec<String> = (from..from + 12).map(|i| format!("({i}, {i})")).collect();
        source.exec(&format!("INSERT INTO t VALUES {}", values.join(", ")));
    };
    let writer = {
        let source = source.clone();
        std::thread::spawn(move || {
            for round in 0..10 {
                let from = 100 + round * 12;
                let values: Vec<String> =
                    (from..from + 12).map(|i| format!("({i}, {i})")).collect();
                source.exec(&format!("INSERT INTO t VALUES {}", values.join(", ")));
                std::thread::sleep(Duration::from_millis(100));
            }
        })
    };
    run_until_crash(dir.path(), "apply:4");
    writer.join().expect("writer");
    write(1000);
    let child = spawn_run(dir.path());
    let deadline = Instant::now() + Duration::from_secs(60);
    let messages = loop {
        let messages = read_stream(&url, "POINT_CDC");
        let rows = changes_once(&messages);
        // One snapshot row and 11 transactions of 12 inserts.
        const ALL: usize = 1 + 11 * 12;
        if rows.len() >= ALL || Instant::now() > deadline {
            break messages;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_exit(&interrupt(child), 0);
    let rows = changes_once(&messages);
    assert_eq!(
        rows.len(),
        1 + 11 * 12,
        "one snapshot row and every insert once"
    );
    assert_exit(&run_dmp(dir.path(), &["cdc", "drop-slot", "p.toml"]), 0);
}

/// `full+cdc` stops after its snapshot is copied and before its change
/// stream holds a checkpoint: the restart streams from where the snapshot
/// began and copies nothing again (a second copy could not take back the
/// rows consumers took from the first), and what changed in between
/// follows on the bus.
#[test]
fn a_stop_between_the_snapshot_and_the_stream_copies_nothing_twice() {
    let url = nats().url();
    let source = postgres().create_database("nats_point_copied");
    source.exec(
        "CREATE TABLE t (id int PRIMARY KEY, v int NOT NULL);
         INSERT INTO t SELECT g, g FROM generate_series(1, 500) g;",
    );
    let dir = tempfile::tempdir().expect("tempdir");
    pipeline(
        dir.path(),
        "p.toml",
        &format!(
            "[source]\nurl = \"{}\"\n[target]\nurl = \"{url}/POINT_COPIED\"\n[run]\nmode = \"full+cdc\"\nbatch_rows = 100\n[cdc]\nslot = \"dmp_nats_copied\"\nheartbeat = \"1s\"\n",
            source.url
        ),
    );
    run_until_crash(dir.path(), "snapshot-copied:1");
    source.exec("DELETE FROM t WHERE id = 7; UPDATE t SET v = -8 WHERE id = 8;");
    let child = spawn_run(dir.path());
    let deadline = Instant::now() + Duration::from_secs(60);
    let ops = |messages: &[crate::support::bus::BusMessage]| -> Vec<String> {
        changes_once(messages)
            .iter()
            .filter_map(|m| m.body["op"].as_str().map(str::to_string))
            .collect()
    };
    let messages = loop {
        let messages = read_stream(&url, "POINT_COPIED");
        if ops(&messages).len() >= 502 || Instant::now() > deadline {
            break messages;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_exit(&interrupt(child), 0);
    let ops = ops(&messages);
    assert_eq!(ops.iter().filter(|op| *op == "r").count(), 500, "one copy");
    assert_eq!(&ops[500..], ["d", "u"], "then the changes made in between");
    assert_exit(&run_dmp(dir.path(), &["cdc", "drop-slot", "p.toml"]), 0);
}
