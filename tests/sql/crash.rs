//! `dmp run` killed with SIGKILL again and again at random points — while
//! planning, preparing the target, in the middle of chunks — of a parallel,
//! multi-chunk PostgreSQL → MariaDB (and → PostgreSQL) copy and of
//! incremental MariaDB → PostgreSQL runs: each next run continues from the
//! target's checkpoints and the target ends equal to the source row for
//! row.

use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use dmp_test_servers::{TestDb, mariadb, postgres};

use super::faults::{assert_exit_logged, committed, finish, log, seed, spawn_run};
use crate::support::sql::{assert_same_dump, dump, scalar_i64, sql_pipeline};
use crate::support::workload::Lcg;
use crate::support::{assert_exit, dmp, pipeline, text};

const ROWS: i64 = 200_000;
/// Kills each loop must land on a run that had not finished.
const KILLS: usize = 5;
/// Kills enough to call the loop done when a resumed run completes first.
const MIN_KILLS: usize = 3;

/// Waits until the target has committed more than `rows` rows. Returns
/// false if dmp finished first (it must have succeeded).
fn wait_for_progress(
    child: &mut Child,
    dir: &std::path::Path,
    target: &TestDb,
    mysql: bool,
    rows: i64,
) -> bool {
    let deadline = Instant::now() + Duration::from_secs(120);
    while committed(target, mysql) <= rows {
        if let Some(status) = child.try_wait().expect("try_wait") {
            assert!(
                status.success(),
                "dmp failed ({status}); its log:\n{}",
                log(dir)
            );
            return false;
        }
        assert!(Instant::now() < deadline, "no progress within two minutes");
        std::thread::sleep(Duration::from_millis(5));
    }
    true
}

/// SIGKILL; true if it ended a run that was still going.
fn kill(mut child: Child, dir: &std::path::Path) -> bool {
    let running = child.try_wait().expect("try_wait").is_none();
    child.kill().expect("SIGKILL");
    let status = child.wait().expect("wait");
    if !running {
        assert!(
            status.success(),
            "dmp failed ({status}); its log:\n{}",
            log(dir)
        );
    }
    running
}

#[test]
fn sigkill_loop_during_parallel_postgres_to_mariadb_copy() {
    let source = postgres().create_database("crash_source");
    let target = mariadb().create_database("crash_target");
    sigkill_loop(&source, &target, true);
}

/// PostgreSQL → PostgreSQL: the rows pass as the source's binary tuples,
/// each batch's checkpoint at the key of its last tuple.
#[test]
fn sigkill_loop_during_parallel_postgres_to_postgres_copy() {
    let source = postgres().create_database("crash_pg_source");
    let target = postgres().create_database("crash_pg_target");
    sigkill_loop(&source, &target, false);
}

fn sigkill_loop(source: &TestDb, target: &TestDb, mysql: bool) {
    let dir = tempfile::tempdir().expect("tempdir");
    source.exec(&format!(
        "CREATE TABLE items (id bigint PRIMARY KEY, n integer NOT NULL, label text, price numeric(12,2));
         INSERT INTO items SELECT g, g % 1000, 'item ' || g, g * 0.01 FROM generate_series(1, {ROWS}) g;
         CREATE TABLE tags (item bigint, tag text);
         INSERT INTO tags SELECT g, 'tag ' || (g % 7) FROM generate_series(1, 20000) g;"
    ));
    pipeline(
        dir.path(),
        "p.toml",
        &sql_pipeline(
            &source.url,
            &target.url,
            "batch_rows = 1000\nchunk_rows = 20000\nparallelism = 4",
        ),
    );
    let mut rng = Lcg::new(seed());
    let (mut kills, mut runs) = (0, 0);
    // The run that ends the copy: one after the last kill, or one that
    // finished its copy (resumed) before its kill point came — a fast copy
    // on a busy machine may, once enough kills are in.
    let mut last = None;
    while kills < KILLS {
        runs += 1;
        assert!(
            runs <= 3 * KILLS,
            "only {kills} of {runs} runs were killed before they ended"
        );
        let mut child = spawn_run(dir.path());
        // A copy that completed is started over by the next run (replace).
        let before = committed(target, mysql) % ROWS;
        // One kill in four at start-up (discovery, planning, preparing the
        // target), the others once a random share of what is left is in.
        let point = if kills > 0 && rng.below(4) == 0 {
            let wait = Duration::from_millis(rng.below(600));
            std::thread::sleep(wait);
            format!("{wait:?} after start")
        } else {
            let left = u64::try_from(ROWS - before).unwrap_or(0);
            let at = before + i64::try_from(rng.below(left / 4)).unwrap_or(0);
            if !wait_for_progress(&mut child, dir.path(), target, mysql, at) {
                if kills >= MIN_KILLS {
                    last = Some(child.wait_with_output().expect("dmp ended"));
                    break;
                }
                continue;
            }
            format!("{at} rows")
        };
        if !kill(child, dir.path()) {
            continue;
        }
        kills += 1;
        eprintln!("kill {kills} at {point}");
        if committed(target, mysql) < ROWS {
            // Nothing beyond the checkpoints is in the table.
            let in_table = target
                .try_scalar("SELECT count(*) FROM items")
                .map_or(0, |v| v.parse::<i64>().expect("count"));
            let rows = if mysql { "`rows`" } else { "\"rows\"" };
            let checkpointed = scalar_i64(
                target,
                &format!(
                    "SELECT COALESCE(SUM({rows}), 0) FROM _dmp_checkpoints WHERE table_name = 'items'"
                ),
            );
            assert_eq!(
                in_table, checkpointed,
                "rows without a checkpoint after kill {kills}"
            );
        }
    }
    let out = last.unwrap_or_else(|| finish(spawn_run(dir.path())));
    assert_exit_logged(&out, 0, &log(dir.path()));
    assert!(
        text(&out.stdout).contains("(resumed)"),
        "{}",
        text(&out.stdout)
    );
    let sql = "SELECT id, n, label, price FROM items ORDER BY id";
    assert_same_dump(
        &dump(source, sql),
        &dump(target, sql),
        &["id", "n", "label", "price"],
        "items",
    );
    let tags = "SELECT item, tag FROM tags ORDER BY item";
    assert_same_dump(
        &dump(source, tags),
        &dump(target, tags),
        &["item", "tag"],
        "tags",
    );
}

const INCREMENTAL_ROWS: i64 = 60_000;

/// Inserts and updates on the source between two incremental runs, each
/// with a cursor value above all earlier ones: 5000 rows with new ids, and
/// an update of every 23rd row (which ones shifts with `step`) where all
/// share one cursor value, so that equal values span many batches.
fn change_source(source: &TestDb, step: i64) {
    let base = 1_000_000 * step;
    let first = INCREMENTAL_ROWS + 5000 * (step - 1) + 1;
    source.exec(&format!(
        "INSERT INTO items (id, v, n, version) SELECT seq, CONCAT('new ', seq), 0, {base} + seq
             FROM seq_{first}_to_{last};
         UPDATE items SET v = CONCAT('step {step} ', id), n = n + 1, version = {base} + 900000
             WHERE id % 23 = {step};",
        last = first + 4999,
    ));
}

#[test]
fn sigkill_loop_during_incremental_mariadb_to_postgres_runs() {
    let dir = tempfile::tempdir().expect("tempdir");
    let source = mariadb().create_database("crash_incr_source");
    let target = postgres().create_database("crash_incr_target");
    source.exec(&format!(
        "CREATE TABLE items (id bigint PRIMARY KEY, v varchar(100) NOT NULL, n int NOT NULL, version bigint NOT NULL);
         INSERT INTO items SELECT seq, CONCAT('item ', seq), 0, seq FROM seq_1_to_{INCREMENTAL_ROWS};"
    ));
    pipeline(
        dir.path(),
        "p.toml",
        &format!(
            "{}[table.items]\ncursor = \"version\"\n",
            sql_pipeline(
                &source.url,
                &target.url,
                "mode = \"incremental\"\nbatch_rows = 500"
            )
        ),
    );
    let mut rng = Lcg::new(seed());
    let (mut kills, mut runs) = (0, 0);
    while kills < KILLS {
        runs += 1;
        assert!(
            runs <= 3 * KILLS,
            "only {kills} of {runs} runs were killed before they ended"
        );
        if runs > 1 {
            change_source(&source, i64::try_from(runs).expect("runs"));
        }
        // Rows past the target's mark: at least what this run must move.
        let mark = target
            .try_scalar("SELECT max(version) FROM items")
            .map_or(0, |v| v.parse::<i64>().expect("version"));
        let left = scalar_i64(
            &source,
            &format!("SELECT count(*) FROM items WHERE version > {mark}"),
        );
        let before = committed(&target, false);
        let mut child = spawn_run(dir.path());
        let at =
            before + i64::try_from(rng.below(u64::try_from(left / 2).unwrap_or(0))).unwrap_or(0);
        if !wait_for_progress(&mut child, dir.path(), &target, false, at)
            || !kill(child, dir.path())
        {
            continue;
        }
        kills += 1;
        eprintln!("kill {kills} after {} of {left} new rows", at - before);
    }
    change_source(&source, i64::try_from(runs + 1).expect("runs"));
    let out = finish(spawn_run(dir.path()));
    assert_exit_logged(&out, 0, &log(dir.path()));
    let sql = "SELECT id, v, n, version FROM items ORDER BY id";
    assert_same_dump(
        &dump(&source, sql),
        &dump(&target, sql),
        &["id", "v", "n", "version"],
        "items",
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
