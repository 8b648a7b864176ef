//! Faults between `dmp` and its databases: connections cut, stalled or
//! dropped mid-stream by a proxy during a full load and during a change
//! stream; the target server restarted during a load. Each run must wait,
//! retry from the target's checkpoints and end with the target equal to
//! the source, row for row.

use std::path::Path;
use std::process::{Child, Output, Stdio};
use std::time::{Duration, Instant};

use dmp_test_servers::{TestDb, mariadb, postgres};

use crate::support::proxy::{Flow, Proxy};
use crate::support::sql::{assert_same_dump, dump, scalar_i64, sql_pipeline};
use crate::support::workload::{self, Dialect, Lcg};
use crate::support::{dmp, pipeline, text};

const ROWS: i64 = 300_000;
/// Small batches, several chunks at once, and short pauses between
/// retries: faults land mid-chunk and the test does not wait long.
const LOAD: &str =
    "batch_rows = 2000\nchunk_rows = 30000\nparallelism = 3\nretry_max_delay = \"2s\"";
const ITEMS: &str = "SELECT id, n, label, price FROM items ORDER BY id";
const ITEM_COLUMNS: [&str; 4] = ["id", "n", "label", "price"];

pub(crate) fn seed() -> u64 {
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(7, |d| d.as_secs());
    eprintln!("fault seed {seed}");
    seed
}

/// Rows the target has committed, by dmp's own checkpoints (0 before the
/// table exists).
pub(crate) fn committed(target: &TestDb, mysql: bool) -> i64 {
    let sql = if mysql {
        "SELECT COALESCE(SUM(`rows`), 0) FROM _dmp_checkpoints"
    } else {
        "SELECT COALESCE(SUM(rows), 0) FROM _dmp_checkpoints"
    };
    target
        .try_scalar(sql)
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

fn fill_postgres(db: &TestDb) {
    db.exec(&format!(
        "CREATE TABLE items (id bigint PRIMARY KEY, n integer NOT NULL, label text, price numeric(12,2));
         INSERT INTO items SELECT g, g % 1000, CASE WHEN g % 11 = 0 THEN NULL ELSE 'item ' || g || ' ✓' END, g * 0.01
             FROM generate_series(1, {ROWS}) g;"
    ));
}

fn fill_mariadb(db: &TestDb) {
    db.exec(&format!(
        "CREATE TABLE items (id bigint PRIMARY KEY, n int NOT NULL, label text, price decimal(12,2));
         INSERT INTO items SELECT seq, seq % 1000, IF(seq % 11 = 0, NULL, CONCAT('item ', seq, ' ✓')), seq * 0.01
             FROM seq_1_to_{ROWS};"
    ));
}

/// `dmp run p.toml` in `dir`, its log going to `dir/dmp.log` (a pipe
/// nobody reads during the run could fill up and block it).
pub(crate) fn spawn_run(dir: &Path) -> Child {
    spawn_run_with(dir, &[])
}

/// `spawn_run` with environment variables `env` set.
pub(crate) fn spawn_run_with(dir: &Path, env: &[(&str, &str)]) -> Child {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("dmp.log"))
        .expect("log file");
    dmp(dir)
        .args(["run", "p.toml"])
        .envs(env.iter().copied())
        .stdout(Stdio::piped())
        .stderr(log)
        .spawn()
        .expect("dmp starts")
}

/// What dmp logged in `dir` so far.
pub(crate) fn log(dir: &Path) -> String {
    std::fs::read_to_string(dir.join("dmp.log")).unwrap_or_default()
}

/// Waits until the target has committed more than `rows` rows; fails if
/// dmp ends first.
pub(crate) fn wait_for_committed(
    child: &mut Child,
    dir: &Path,
    target: &TestDb,
    mysql: bool,
    rows: i64,
) {
    let deadline = Instant::now() + Duration::from_secs(180);
    while committed(target, mysql) <= rows {
        if let Ok(Some(status)) = child.try_wait() {
            panic!(
                "dmp ended ({status}) before the target held {rows} rows; its log:\n{}",
                log(dir)
            );
        }
        assert!(
            Instant::now() < deadline,
            "the target did not reach {rows} rows within three minutes"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Waits for dmp to end on its own; kills it (and fails) if it has not
/// after three minutes, rather than hang the suite.
pub(crate) fn finish(mut child: Child) -> Output {
    let deadline = Instant::now() + Duration::from_secs(180);
    while child.try_wait().expect("try_wait").is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("dmp did not end within three minutes");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    child.wait_with_output().expect("dmp ends")
}

/// Asserts an exit code, showing dmp's log when it differs.
pub(crate) fn assert_exit_logged(out: &Output, code: i32, log: &str) {
    assert_eq!(
        out.status.code(),
        Some(code),
        "exit status {:?}\nstdout:\n{}\nlog:\n{log}",
        out.status,
        text(&out.stdout),
    );
}

/// A full load from `source` to `target`, both through proxies: at random
/// points of the copy the proxies cut every connection (source, target or
/// both), drop a connection in the middle of a reply, and stall for a
/// while. The run must complete on its own.
fn load_through_faults(source: &TestDb, source_port: u16, target: &TestDb, target_port: u16) {
    let mysql_target = target.url.starts_with("mysql:");
    let dir = tempfile::tempdir().expect("tempdir");
    let from = Proxy::start(source_port);
    let to = Proxy::start(target_port);
    pipeline(
        dir.path(),
        "p.toml",
        &sql_pipeline(
            &from.url(&source.url),
            &to.url(&target.url),
            &format!("{LOAD}\nretries = 10"),
        ),
    );
    let mut rng = Lcg::new(seed());
    let mut child = spawn_run(dir.path());
    // Fault k strikes once the target holds about k/7 of the rows.
    let faults = 6;
    for k in 1..=faults {
        let at = ROWS * k / (faults + 1) + i64::try_from(rng.below(5000)).unwrap_or(0);
        wait_for_committed(&mut child, dir.path(), target, mysql_target, at);
        match k {
            1 | 4 => {
                let cut = from.cut_all() + to.cut_all();
                eprintln!("fault {k} at {at} rows: cut {cut} connections on both sides");
            }
            2 => {
                // In the middle of a COPY (or a result set) being read.
                from.drop_after(Flow::ToClient, 10_000 + rng.below(200_000));
                eprintln!("fault {k} at {at} rows: source connection dropped mid-reply");
            }
            3 => {
                to.stall(Duration::from_secs(3));
                let cut = from.cut_all();
                eprintln!("fault {k} at {at} rows: target stalled, {cut} source connections cut");
            }
            5 => {
                // In the middle of a COPY FROM STDIN or LOAD DATA upload.
                to.drop_after(Flow::ToServer, 10_000 + rng.below(100_000));
                eprintln!("fault {k} at {at} rows: target connection dropped mid-write");
            }
            _ => {
                let cut = from.cut_all();
                eprintln!("fault {k} at {at} rows: cut {cut} source connections");
            }
        }
    }
    let out = finish(child);
    let log = log(dir.path());
    assert_exit_logged(&out, 0, &log);
    assert!(log.contains("retrying"), "no retry logged:\n{log}");
    // The first cut took the source's snapshot sessions along while chunks
    // were still to read: they read a new snapshot.
    let renewed = if source.url.starts_with("mysql:") {
        "its replacement reads the data as of now"
    } else {
        "chunks not started yet read a new one"
    };
    assert!(log.contains(renewed), "no new snapshot:\n{log}");
    assert!(
        !from.drop_pending(),
        "no source connection was dropped mid-reply"
    );
    assert!(
        !to.drop_pending(),
        "no target connection was dropped mid-write"
    );
    assert!(
        from.cuts() + to.cuts() >= 4,
        "only {} connections were cut",
        from.cuts() + to.cuts()
    );
    assert_same_dump(
        &dump(source, ITEMS),
        &dump(target, ITEMS),
        &ITEM_COLUMNS,
        "items after cuts",
    );
    assert_eq!(scalar_i64(target, "SELECT count(*) FROM items"), ROWS);
}

#[test]
fn full_load_postgres_to_mariadb_through_cuts() {
    let source = postgres().create_database("fault_pg_source");
    let target = mariadb().create_database("fault_my_target");
    fill_postgres(&source);
    load_through_faults(&source, postgres().port(), &target, mariadb().port());
}

#[test]
fn full_load_mariadb_to_postgres_through_cuts() {
    let source = mariadb().create_database("fault_my_source");
    let target = postgres().create_database("fault_pg_target");
    fill_mariadb(&source);
    load_through_faults(&source, mariadb().port(), &target, postgres().port());
}

/// SIGINT: the stream stops after the transaction being applied.
fn interrupt(child: Child) -> Output {
    let status = std::process::Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .expect("kill runs");
    assert!(status.success());
    finish(child)
}

/// `full+cdc` from `source` (through a proxy) while a workload writes to
/// it: the proxy cuts every source connection at random moments, during
/// the snapshot copy and while streaming, and once drops the stream in the
/// middle of a message. The target must end equal to the source.
fn stream_through_cuts(
    source: &TestDb,
    source_port: u16,
    from: Dialect,
    target: &TestDb,
    to: Dialect,
    slot: &str,
) {
    let dir = tempfile::tempdir().expect("tempdir");
    let proxy = Proxy::start(source_port);
    workload::create_tables(source, from);
    pipeline(
        dir.path(),
        "p.toml",
        &format!(
            "{}[cdc]\nslot = \"{slot}\"\nheartbeat = \"1s\"\n",
            sql_pipeline(
                &proxy.url(&source.url),
                &target.url,
                "mode = \"full+cdc\"\nbatch_rows = 500\nchunk_rows = 700\nparallelism = 2\n\
                 retries = 20\nretry_max_delay = \"2s\""
            )
        ),
    );
    let seed = seed();
    let mut rng = Lcg::new(seed);
    let writers = workload::start(source, from, 400, seed, 0);
    let mut child = spawn_run(dir.path());
    // The first cut while the snapshot is copied (it takes the session
    // holding the snapshot along), the others at random.
    wait_for_committed(&mut child, dir.path(), target, to == Dialect::Mariadb, 0);
    eprintln!("fault 0: cut {} source connections", proxy.cut_all());
    for k in 1..6 {
        std::thread::sleep(Duration::from_millis(300 + rng.below(1500)));
        if k == 3 {
            proxy.drop_after(Flow::ToClient, 1 + rng.below(2000));
            eprintln!("fault {k}: the next source reply dropped part way");
        } else {
            eprintln!("fault {k}: cut {} source connections", proxy.cut_all());
        }
    }
    for writer in writers {
        writer.join().expect("workload session");
    }
    workload::wait_until_in_sync(
        &mut child,
        source,
        from,
        target,
        to,
        Duration::from_secs(180),
        |_| log(dir.path()),
    );
    let out = interrupt(child);
    let log = log(dir.path());
    assert_exit_logged(&out, 0, &log);
    assert!(log.contains("retrying"), "no retry logged:\n{log}");
    assert!(
        proxy.cuts() >= 5,
        "only {} connections were cut",
        proxy.cuts()
    );
    if from == Dialect::Postgres {
        // A slot left behind would hold WAL, and one of the server's few
        // slots, for the rest of the test process.
        let out = dmp(dir.path())
            .args(["cdc", "drop-slot", "p.toml"])
            .output()
            .expect("dmp starts");
        assert_exit_logged(&out, 0, &text(&out.stderr));
    }
}

#[test]
fn full_and_cdc_from_postgres_through_cuts() {
    let source = postgres().create_database("fault_cdc_pg_source");
    let target = mariadb().create_database("fault_cdc_my_target");
    stream_through_cuts(
        &source,
        postgres().port(),
        Dialect::Postgres,
        &target,
        Dialect::Mariadb,
        "dmp_test_fault_cdc",
    );
}

#[test]
fn full_and_cdc_from_mariadb_through_cuts() {
    let source = mariadb().create_database("fault_cdc_my_source");
    let target = postgres().create_database("fault_cdc_pg_target");
    stream_through_cuts(
        &source,
        mariadb().port(),
        Dialect::Mariadb,
        &target,
        Dialect::Postgres,
        "unused",
    );
}

/// A full load into `target`, whose server is stopped (as for a restart)
/// once a quarter of the rows are in, and started again after a few
/// seconds: the run waits, retries and completes.
fn load_through_restart(source: &TestDb, target: &TestDb, stop: &dyn Fn(), start: &dyn Fn()) {
    let mysql_target = target.url.starts_with("mysql:");
    let dir = tempfile::tempdir().expect("tempdir");
    pipeline(
        dir.path(),
        "p.toml",
        &sql_pipeline(&source.url, &target.url, &format!("{LOAD}\nretries = 20")),
    );
    let mut child = spawn_run(dir.path());
    wait_for_committed(&mut child, dir.path(), target, mysql_target, ROWS / 4);
    stop();
    // The outage: chunks caught writing retry, the others wait for a
    // session; none may give up, and the rows still missing (three
    // quarters) cannot arrive before the server is back.
    std::thread::sleep(Duration::from_secs(4));
    if let Ok(Some(status)) = child.try_wait() {
        panic!(
            "dmp ended while the target was down ({status}); its log:\n{}",
            log(dir.path())
        );
    }
    start();
    let out = finish(child);
    let log = log(dir.path());
    assert_exit_logged(&out, 0, &log);
    assert_same_dump(
        &dump(source, ITEMS),
        &dump(target, ITEMS),
        &ITEM_COLUMNS,
        "items after the restart",
    );
}

#[test]
fn mariadb_target_restarted_during_a_load() {
    let source = postgres().create_database("restart_pg_source");
    fill_postgres(&source);
    let server = dmp_test_servers::own_mariadb();
    let target = server.create_database("restart_my_target");
    load_through_restart(&source, &target, &|| server.stop(), &|| server.start());
}

#[test]
fn postgres_target_restarted_during_a_load() {
    let source = mariadb().create_database("restart_my_source");
    fill_mariadb(&source);
    let server = dmp_test_servers::own_postgres();
    let target = server.create_database("restart_pg_target");
    load_through_restart(&source, &target, &|| server.stop(), &|| server.start());
}
