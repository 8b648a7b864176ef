//! `dmp run` killed with SIGKILL during a parallel, multi-chunk PostgreSQL →
//! MariaDB copy: the next run redoes only unfinished chunks and the target
//! ends equal to the source row for row.

use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use dmp_test_servers::{TestDb, mariadb, postgres};

use crate::support::sql::{assert_same_dump, dump, scalar_i64, sql_pipeline};
use crate::support::{assert_exit, dmp, pipeline, run_dmp, text};

const ROWS: i64 = 200_000;

fn committed(target: &TestDb) -> i64 {
    target
        .try_scalar("SELECT COALESCE(SUM(`rows`), 0) FROM _dmp_checkpoints")
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

fn wait_for_progress(child: &mut Child, target: &TestDb, before: i64) {
    let deadline = Instant::now() + Duration::from_secs(120);
    while committed(target) <= before {
        if let Some(status) = child.try_wait().expect("try_wait") {
            panic!("dmp ended before committing anything: {status}");
        }
        assert!(Instant::now() < deadline, "no progress within two minutes");
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn sigkill_during_parallel_postgres_to_mariadb_copy() {
    let dir = tempfile::tempdir().expect("tempdir");
    let source = postgres().create_database("crash_source");
    source.exec(&format!(
        "CREATE TABLE items (id bigint PRIMARY KEY, n integer NOT NULL, label text, price numeric(12,2));
         INSERT INTO items SELECT g, g % 1000, 'item ' || g, g * 0.01 FROM generate_series(1, {ROWS}) g;
         CREATE TABLE tags (item bigint, tag text);
         INSERT INTO tags SELECT g, 'tag ' || (g % 7) FROM generate_series(1, 20000) g;"
    ));
    let target = mariadb().create_database("crash_target");
    pipeline(
        dir.path(),
        "p.toml",
        &sql_pipeline(
            &source.url,
            &target.url,
            "batch_rows = 1000\nchunk_rows = 20000\nparallelism = 4",
        ),
    );
    let mut kills = 0;
    for _ in 0..3 {
        let mut child = dmp(dir.path())
            .args(["run", "p.toml"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("dmp starts");
        let before = committed(&target);
        wait_for_progress(&mut child, &target, before);
        child.kill().expect("SIGKILL");
        child.wait().expect("wait");
        if committed(&target) < ROWS {
            kills += 1;
            // Nothing beyond the checkpoints is in the table.
            let in_table = scalar_i64(&target, "SELECT count(*) FROM items");
            let checkpointed = scalar_i64(
                &target,
                "SELECT COALESCE(SUM(`rows`), 0) FROM _dmp_checkpoints WHERE table_name = 'items'",
            );
            assert_eq!(
                in_table, checkpointed,
                "rows without a checkpoint after a kill"
            );
        }
    }
    assert!(kills >= 1, "every run finished before it was killed");
    let out = run_dmp(dir.path(), &["run", "p.toml"]);
    assert_exit(&out, 0);
    assert!(
        text(&out.stdout).contains("(resumed)"),
        "{}",
        text(&out.stdout)
    );
    let sql = "SELECT id, n, label, price FROM items ORDER BY id";
    assert_same_dump(
        &dump(&source, sql),
        &dump(&target, sql),
        &["id", "n", "label", "price"],
        "items",
    );
    let tags = "SELECT item, tag FROM tags ORDER BY item";
    assert_same_dump(
        &dump(&source, tags),
        &dump(&target, tags),
        &["item", "tag"],
        "tags",
    );
}

/// The target's sessions are killed several times during a load: each
/// chunk waits, continues from its checkpoint on the target, and the run
/// completes with every row once.
#[test]
fn target_sessions_killed_during_a_load_are_retried() {
    let dir = tempfile::tempdir().expect("tempdir");
    let source = postgres().create_database("retry_source");
    let target = postgres().create_database("retry_target");
    source.exec(
        "CREATE TABLE items (id bigint PRIMARY KEY, n integer NOT NULL, label text);
         INSERT INTO items SELECT g, g % 1000, 'item ' || g FROM generate_series(1, 300000) g;",
    );
    pipeline(
        dir.path(),
        "p.toml",
        &sql_pipeline(
            &source.url,
            &target.url,
            "batch_rows = 2000\nchunk_rows = 50000\nparallelism = 2\nretry_max_delay = \"1s\"",
        ),
    );
    let child = dmp(dir.path())
        .args(["run", "p.toml"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("dmp starts");
    let kill = format!(
        "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE datname = '{}' AND pid <> pg_backend_pid()",
        target.name
    );
    let mut killed = 0;
    let deadline = Instant::now() + Duration::from_secs(60);
    while killed < 4 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(250));
        if scalar_i64(&source, &kill) > 0 {
            killed += 1;
        }
    }
    let out = child.wait_with_output().expect("dmp ends");
    assert_exit(&out, 0);
    assert!(killed >= 1, "no target session was ever killed");
    assert!(
        text(&out.stderr).contains("transient failure; retrying"),
        "{}",
        text(&out.stderr)
    );
    let sql = "SELECT id, n, label FROM items ORDER BY id";
    assert_same_dump(
        &dump(&source, sql),
        &dump(&target, sql),
        &["id", "n", "label"],
        "items",
    );
}
