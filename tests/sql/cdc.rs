//! Change data capture while the source is written to: `full+cdc` copies a
//! snapshot during the workload and streams the rest; PostgreSQL → MariaDB
//! and MariaDB → PostgreSQL; `dmp` killed with SIGKILL at random points and
//! restarted. Afterwards the target equals the source row for row (every
//! update bumps a counter column, so a change lost or applied twice shows).

use std::path::Path;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use dmp_test_servers::{TestDb, mariadb, postgres};

use crate::support::sql::sql_pipeline;
use crate::support::workload::{self, Dialect, Lcg};
use crate::support::{assert_exit, dmp, pipeline, run_dmp, text};

/// The workload's seed: `DMP_TEST_SEED` to replay a failure, else the
/// time (printed).
pub(crate) fn seed() -> u64 {
    let seed = std::env::var("DMP_TEST_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(7, |d| d.as_secs())
        });
    eprintln!("workload seed {seed} (DMP_TEST_SEED={seed} replays it)");
    seed
}

pub(crate) fn spawn_run(dir: &Path) -> Child {
    dmp(dir)
        .args(["run", "p.toml", "--json"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("dmp starts")
}

/// SIGINT: the stream stops after the transaction being applied.
pub(crate) fn interrupt(child: Child) -> std::process::Output {
    let pid = child.id().to_string();
    let status = std::process::Command::new("kill")
        .args(["-INT", &pid])
        .status()
        .expect("kill runs");
    assert!(status.success());
    child.wait_with_output().expect("dmp ends")
}

fn cdc_pipeline(dir: &Path, source: &TestDb, target: &TestDb, slot: &str) {
    pipeline(
        dir,
        "p.toml",
        &format!(
            "{}[cdc]\nslot = \"{slot}\"\nheartbeat = \"1s\"\n",
            sql_pipeline(
                &source.url,
                &target.url,
                "mode = \"full+cdc\"\nbatch_rows = 500\nchunk_rows = 700\nparallelism = 2"
            )
        ),
    );
}

fn stream_while_writing(
    from: Dialect,
    source: &TestDb,
    to: Dialect,
    target: &TestDb,
    slot: &str,
) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    workload::create_tables(source, from);
    cdc_pipeline(dir.path(), source, target, slot);
    let seed = seed();
    // Writes run while the snapshot is copied and while it streams.
    let writers = workload::start(source, from, 300, seed, 0);
    let mut child = spawn_run(dir.path());
    for writer in writers {
        writer.join().expect("workload session");
    }
    workload::wait_until_in_sync(
        &mut child,
        source,
        from,
        target,
        to,
        Duration::from_secs(120),
        own_stderr,
    );
    let out = interrupt(child);
    assert_exit(&out, 0);
    let summary = text(&out.stdout);
    assert!(summary.contains("\"stream\""), "{summary}");
    assert!(summary.contains("\"lag_p99_ms\""), "{summary}");

    // A second run continues the stream where the target stands: more
    // writes arrive, nothing is copied again.
    let writers = workload::start(source, from, 30, seed + 1, 1);
    let mut child = spawn_run(dir.path());
    for writer in writers {
        writer.join().expect("workload session");
    }
    workload::wait_until_in_sync(
        &mut child,
        source,
        from,
        target,
        to,
        Duration::from_secs(120),
        own_stderr,
    );
    let out = interrupt(child);
    assert_exit(&out, 0);
    assert!(
        text(&out.stderr).contains("continuing the change stream where the target stands"),
        "{}",
        text(&out.stderr)
    );
    assert!(
        text(&out.stdout).contains("\"tables\": []"),
        "{}",
        text(&out.stdout)
    );
    dir
}

#[test]
fn full_and_cdc_postgres_to_mariadb_during_writes() {
    let source = postgres().create_database("cdc_pg_source");
    let target = mariadb().create_database("cdc_my_target");
    let dir = stream_while_writing(
        Dialect::Postgres,
        &source,
        Dialect::Mariadb,
        &target,
        "dmp_test_pg_to_my",
    );
    let held = || {
        source.scalar(
            "SELECT count(*) FROM pg_replication_slots WHERE slot_name = 'dmp_test_pg_to_my'",
        )
    };
    assert_eq!(held(), "1");
    // The slot goes with `dmp cdc drop-slot`.
    let out = dmp(dir.path())
        .args(["cdc", "drop-slot", "p.toml"])
        .output()
        .expect("dmp starts");
    assert_exit(&out, 0);
    assert_eq!(held(), "0");
}

#[test]
fn full_and_cdc_mariadb_to_postgres_during_writes() {
    let source = mariadb().create_database("cdc_my_source");
    let target = postgres().create_database("cdc_pg_target");
    stream_while_writing(
        Dialect::Mariadb,
        &source,
        Dialect::Postgres,
        &target,
        "unused",
    );
}

/// Streams `source` into `target` while a workload runs, killing `dmp`
/// with SIGKILL at five random points, then lets a last run catch up and
/// checks the target equals the source. Returns the pipeline's folder.
fn kill_while_streaming(
    dialect: Dialect,
    source: &TestDb,
    target: &TestDb,
    slot: &str,
) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    workload::create_tables(source, dialect);
    cdc_pipeline(dir.path(), source, target, slot);
    let seed = seed();
    let mut rng = Lcg::new(seed);
    let writers = workload::start(source, dialect, 400, seed, 0);
    for kill in 0..5 {
        let mut child = spawn_run(dir.path());
        let wait = Duration::from_millis(300 + rng.below(2500));
        std::thread::sleep(wait);
        if let Some(status) = child.try_wait().expect("try_wait") {
            let out = child.wait_with_output().expect("output");
            panic!(
                "dmp ended before kill {kill}: {status}\n{}",
                text(&out.stderr)
            );
        }
        child.kill().expect("SIGKILL");
        child.wait().expect("wait");
        eprintln!("kill {kill} after {wait:?}");
    }
    for writer in writers {
        writer.join().expect("workload session");
    }
    let mut child = spawn_run(dir.path());
    workload::wait_until_in_sync(
        &mut child,
        source,
        dialect,
        target,
        dialect,
        Duration::from_secs(120),
        own_stderr,
    );
    let out = interrupt(child);
    assert_exit(&out, 0);
    dir
}

#[test]
fn sigkill_during_postgres_cdc_loses_and_doubles_nothing() {
    let source = postgres().create_database("cdc_kill_source");
    let target = postgres().create_database("cdc_kill_target");
    let dir = kill_while_streaming(Dialect::Postgres, &source, &target, "dmp_test_kill");

    let out = dmp(dir.path())
        .args(["cdc", "status", "p.toml"])
        .output()
        .expect("dmp starts");
    assert_exit(&out, 0);
    assert!(text(&out.stdout).contains("lsn="), "{}", text(&out.stdout));
    let out = dmp(dir.path())
        .args(["cdc", "drop-slot", "p.toml"])
        .output()
        .expect("dmp starts");
    assert_exit(&out, 0);
    assert_eq!(
        source
            .scalar("SELECT count(*) FROM pg_replication_slots WHERE slot_name = 'dmp_test_kill'"),
        "0"
    );
}

#[test]
fn sigkill_during_mariadb_cdc_loses_and_doubles_nothing() {
    let source = mariadb().create_database("cdc_mykill_source");
    let target = mariadb().create_database("cdc_mykill_target");
    kill_while_streaming(Dialect::Mariadb, &source, &target, "unused");
}

#[test]
fn transforms_apply_to_streamed_changes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let source = postgres().create_database("cdc_transform_source");
    let target = postgres().create_database("cdc_transform_target");
    source.exec(
        "CREATE TABLE t (id integer PRIMARY KEY, v text);
         INSERT INTO t SELECT g, 'v' || g FROM generate_series(1, 100) g;",
    );
    let plugin = crate::transform::plugin("mask_pii", false);
    pipeline(
        dir.path(),
        "p.toml",
        &format!(
            "{}[cdc]\nslot = \"dmp_test_transform\"\n[[transform]]\nplugin = \"{}\"\nconfig = {{ columns = \"v\" }}\n",
            sql_pipeline(&source.url, &target.url, "mode = \"full+cdc\""),
            plugin.display()
        ),
    );
    let mut child = spawn_run(dir.path());
    // What mask_pii makes of `v`: its last two characters behind stars.
    let masked = || {
        source.query(
            "SELECT id, repeat('*', greatest(length(v) - 2, 1)) || right(v, 2) FROM t ORDER BY id",
        )
    };
    let wait_for = |child: &mut Child, what: &str| {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(status) = child.try_wait().expect("try_wait") {
                panic!("dmp ended: {status}");
            }
            let got = target
                .try_query("SELECT id, v FROM t ORDER BY id")
                .unwrap_or_default();
            if got == masked() {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{what}: the target did not catch up"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    };
    wait_for(&mut child, "snapshot");
    source.exec(
        "UPDATE t SET v = 'changed' WHERE id <= 10;
         DELETE FROM t WHERE id > 95;
         INSERT INTO t VALUES (200, 'new');",
    );
    wait_for(&mut child, "stream");
    // A new column: the plugin is opened again on the new shape and the
    // column passes through it to the target.
    source.exec("ALTER TABLE t ADD COLUMN w int DEFAULT 7; INSERT INTO t VALUES (300, 'added', 9)");
    wait_for(&mut child, "after a column was added");
    let deadline = Instant::now() + Duration::from_secs(60);
    while target.try_scalar("SELECT w FROM t WHERE id = 300").ok() != Some("9".into()) {
        assert!(
            Instant::now() < deadline,
            "column w did not reach the target"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(target.scalar("SELECT sum(w) FROM t WHERE id <> 300"), "672");
    let out = interrupt(child);
    assert_exit(&out, 0);
    // Every row the target holds went through the plugin, streamed ones
    // too: `changed` arrived as `*****ed`.
    assert_eq!(
        target.scalar("SELECT count(*) FROM t WHERE v = '*****ed'"),
        "10"
    );
    assert_eq!(target.scalar("SELECT count(*) FROM t"), "97");

    // Renamed under `apply`, the column the plugin masks is gone: its
    // refusal stops the stream, saying why, and the row after it waits.
    let toml = std::fs::read_to_string(dir.path().join("p.toml")).expect("pipeline");
    std::fs::write(
        dir.path().join("p.toml"),
        toml.replace("[cdc]\n", "[cdc]\nschema_changes = \"apply\"\n"),
    )
    .expect("pipeline");
    source.exec("ALTER TABLE t RENAME COLUMN v TO secret; INSERT INTO t VALUES (301, 'after', 1)");
    let out = run_dmp(dir.path(), &["run", "p.toml"]);
    assert!(!out.status.success(), "the stream went on");
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("mask_pii") && stderr.contains("table t has no column `v`"),
        "{stderr}"
    );
    assert_eq!(target.scalar("SELECT count(*) FROM t WHERE id = 301"), "0");
    let out = dmp(dir.path())
        .args(["cdc", "drop-slot", "p.toml"])
        .output()
        .expect("dmp starts");
    assert_exit(&out, 0);
}

/// What a dmp run started with a piped stderr has written there.
pub(crate) fn own_stderr(child: &mut Child) -> String {
    let mut err = String::new();
    if let Some(mut e) = child.stderr.take() {
        use std::io::Read;
        let _ = e.read_to_string(&mut err);
    }
    err
}

/// The state store is shared: while a stream runs, its dead letters and
/// its status can be read, and only a second run of the same pipeline is
/// refused (its lease is held).
#[test]
fn dead_letters_and_status_are_read_while_the_stream_runs() {
    let source = postgres().create_database("lease_source");
    let target = postgres().create_database("lease_target");
    source.exec(
        "CREATE TABLE t (id int PRIMARY KEY, v text);
         INSERT INTO t SELECT g, 'row ' || g FROM generate_series(1, 100) g",
    );
    let dir = tempfile::tempdir().expect("tempdir");
    cdc_pipeline(dir.path(), &source, &target, "dmp_test_lease");
    let child = spawn_run(dir.path());
    let deadline = Instant::now() + Duration::from_secs(60);
    source.exec("INSERT INTO t VALUES (101, 'streamed')");
    while target.try_scalar("SELECT count(*) FROM t").ok().as_deref() != Some("101") {
        assert!(
            Instant::now() < deadline,
            "the stream did not apply the insert"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let list = run_dmp(dir.path(), &["dlq", "list", "p.toml"]);
    assert_exit(&list, 0);
    let status = run_dmp(dir.path(), &["cdc", "status", "p.toml"]);
    assert_exit(&status, 0);
    assert!(
        text(&status.stdout).contains("target holds"),
        "{}",
        text(&status.stdout)
    );
    let second = run_dmp(dir.path(), &["run", "p.toml"]);
    assert_exit(&second, 2);
    assert!(
        text(&second.stderr).contains("is running in another dmp process"),
        "{}",
        text(&second.stderr)
    );
    let out = interrupt(child);
    assert_exit(&out, 0);
    // Released with the run: the pipeline runs again.
    let again = spawn_run(dir.path());
    std::thread::sleep(Duration::from_millis(500));
    assert_exit(&interrupt(again), 0);
}
