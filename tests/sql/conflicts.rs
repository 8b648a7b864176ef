//! Two-way sync conflicts: the same scripted set of conflicting writes,
//! made on both sides while DMP is stopped (so that every one of them is a
//! conflict when it starts again), settled by each policy. Asserts each
//! side's final rows and each side's conflict log: the kind and decision
//! of every conflicting key.

use std::path::Path;

use dmp_test_servers::{TestDb, mariadb, postgres};

use crate::support::workload::Dialect;
use crate::support::{assert_exit, dmp, pipeline, text};

/// `hot` before: ids 1 to 6, `v = 'seed'`, `version = 1`.
pub(crate) fn create_hot(db: &TestDb, dialect: Dialect) {
    let identity = match dialect {
        Dialect::Postgres => "ALTER TABLE hot REPLICA IDENTITY FULL;",
        Dialect::Mariadb => "",
    };
    db.exec(&format!(
        "CREATE TABLE hot (id bigint PRIMARY KEY, v varchar(20) NOT NULL, version int NOT NULL);
         {identity}
         INSERT INTO hot VALUES (1, 'seed', 1), (2, 'seed', 1), (3, 'seed', 1), (4, 'seed', 1),
           (5, 'seed', 1), (6, 'seed', 1);"
    ));
}

/// Side A's writes: 1 updated, 2 deleted (one transaction), 3 updated,
/// 4 deleted, 10 inserted, 5 deleted and inserted again, 6 updated (no
/// conflict: B leaves it).
const WRITES_A: &str = "BEGIN;
    UPDATE hot SET v = 'a1', version = 2 WHERE id = 1;
    DELETE FROM hot WHERE id = 2;
    COMMIT;
    UPDATE hot SET v = 'a3', version = 5 WHERE id = 3;
    DELETE FROM hot WHERE id = 4;
    INSERT INTO hot VALUES (10, 'a10', 1);
    BEGIN;
    DELETE FROM hot WHERE id = 5;
    INSERT INTO hot VALUES (5, 'a5', 7);
    COMMIT;
    UPDATE hot SET v = 'a6', version = 2 WHERE id = 6;";

/// Side B's: 1 and 2 updated, 3 and 4 deleted, 10 inserted, 5 updated.
const WRITES_B: &str = "UPDATE hot SET v = 'b1', version = 3 WHERE id = 1;
    UPDATE hot SET v = 'b2', version = 2 WHERE id = 2;
    DELETE FROM hot WHERE id = 3;
    DELETE FROM hot WHERE id = 4;
    INSERT INTO hot VALUES (10, 'b10', 2);
    UPDATE hot SET v = 'b5', version = 2 WHERE id = 5;";

/// The conflicts each side's log holds: (id, kind), the same for every
/// policy. On B they are A's changes, on A they are B's.
const ON_B: [(i64, &str); 6] = [
    (1, "update_differs"),
    (2, "delete_differs"),
    (3, "update_missing"),
    (4, "delete_missing"),
    (5, "update_differs"),
    (10, "insert_exists"),
];
const ON_A: [(i64, &str); 6] = [
    (1, "update_differs"),
    (2, "update_missing"),
    (3, "delete_differs"),
    (4, "delete_missing"),
    (5, "update_differs"),
    (10, "insert_exists"),
];

/// `id:v:version` of each row.
pub(crate) type Rows = Vec<String>;

pub(crate) fn hot(db: &TestDb) -> Rows {
    joined_rows(db, "SELECT id, v, version FROM hot ORDER BY id")
}

/// Each row of `sql` as its values joined by `:`; none while the table is
/// not there (until the first load made it).
pub(super) fn joined_rows(db: &TestDb, sql: &str) -> Rows {
    db.try_query(sql)
        .unwrap_or_default()
        .into_iter()
        .map(|r| {
            r.into_iter()
                .map(Option::unwrap_or_default)
                .collect::<Vec<_>>()
                .join(":")
        })
        .collect()
}

fn rows(list: &[&str]) -> Rows {
    list.iter().map(ToString::to_string).collect()
}

/// What a policy leaves: the rows of A and of B, and the decision each
/// side's log shows per id (delete_missing, where both deleted, is
/// always `apply_remote`).
struct Expected {
    a: Rows,
    b: Rows,
    /// Decisions on B (A's changes), then on A, for ids 1, 2, 3, 5, 10.
    decisions: [&'static str; 2],
}

fn expected(policy: &str) -> Expected {
    let a_rows = rows(&["1:a1:2", "3:a3:5", "5:a5:7", "6:a6:2", "10:a10:1"]);
    let b_rows = rows(&["1:b1:3", "2:b2:2", "5:b5:2", "6:a6:2", "10:b10:2"]);
    match policy {
        "a_wins" => Expected {
            a: a_rows.clone(),
            b: a_rows,
            decisions: ["apply_remote", "keep_local"],
        },
        "b_wins" => Expected {
            a: b_rows.clone(),
            b: b_rows,
            decisions: ["keep_local", "apply_remote"],
        },
        "manual" => Expected {
            a: a_rows,
            b: b_rows,
            decisions: ["parked", "parked"],
        },
        _ => unreachable!("{policy}"),
    }
}

/// By `version`: 1 goes to B (3 > 2), 2 to B's update (2) over A's delete
/// of version 1 (its tombstone's), 3 to A's update (5) over B's delete of
/// version 1, 5 to A (7 > 2), 10 to B (2 > 1).
fn last_writer_rows() -> Rows {
    rows(&["1:b1:3", "2:b2:2", "3:a3:5", "5:a5:7", "6:a6:2", "10:b10:2"])
}

/// The conflict log of table `hot` in `db`: (id, kind, decision) by id.
fn log_of(db: &TestDb, dialect: Dialect) -> Vec<(i64, String, String)> {
    table_log(db, dialect, "hot")
}

/// The conflict log of `table` in `db`: (id, kind, decision) by id.
pub(super) fn table_log(db: &TestDb, dialect: Dialect, table: &str) -> Vec<(i64, String, String)> {
    let key = match dialect {
        Dialect::Postgres => "key",
        Dialect::Mariadb => "`key`",
    };
    let mut log: Vec<(i64, String, String)> = db
        .try_query(&format!(
            "SELECT {key}, kind, decision FROM _dmp_conflicts WHERE table_name = '{table}'"
        ))
        .unwrap_or_default()
        .into_iter()
        .map(|r| {
            let key: serde_json::Value =
                serde_json::from_str(r[0].as_deref().unwrap_or("{}")).expect("key JSON");
            (
                key["id"].as_i64().expect("id"),
                r[1].clone().unwrap_or_default(),
                r[2].clone().unwrap_or_default(),
            )
        })
        .collect();
    log.sort();
    log
}

/// The log each side should hold, with `decide(id, kind)` per entry.
fn log_expected(
    kinds: &[(i64, &str)],
    decide: impl Fn(i64, &str) -> &'static str,
) -> Vec<(i64, String, String)> {
    kinds
        .iter()
        .map(|&(id, kind)| {
            let decision = if kind == "delete_missing" {
                "apply_remote"
            } else {
                decide(id, kind)
            };
            (id, kind.to_string(), decision.to_string())
        })
        .collect()
}

/// Logs of both sides: A's, then B's (see [`log_of`]).
type Logs = (Vec<(i64, String, String)>, Vec<(i64, String, String)>);

/// A two-way sync of `hot` that went through the scripted conflicts and
/// stopped: its folder (the pipeline, the runs' logs), and what each side
/// held then. Its change streams still hold their places at the sources
/// (see [`drop_slots`]).
struct Settled {
    dir: tempfile::TempDir,
    on_a: Rows,
    on_b: Rows,
    logs: Logs,
}

fn run_policy(a: (&TestDb, Dialect), b: (&TestDb, Dialect), name: &str, sync: &str) {
    let settled = settle(a, b, name, sync);
    drop_slots(settled.dir.path());
    check(sync, &settled.on_a, &settled.on_b, &settled.logs);
}

/// Loads `hot` from A into B, stops, makes both sides' scripted writes
/// and runs the sync again until both logs hold every conflict.
fn settle(a: (&TestDb, Dialect), b: (&TestDb, Dialect), name: &str, sync: &str) -> Settled {
    let dir = tempfile::tempdir().expect("tempdir");
    create_hot(a.0, a.1);
    hot_pipeline(dir.path(), name, (a.0, b.0), sync);
    let mut child = start(dir.path(), 0);
    wait_for(
        dir.path(),
        &mut child,
        "the first load and both legs",
        |log| hot(b.0).len() == 6 && legs_streaming(log),
    );
    let stopped = super::cdc::interrupt(child);
    assert!(stopped.status.success(), "{}", text(&stopped.stderr));
    a.0.exec(WRITES_A);
    b.0.exec(WRITES_B);
    let mut child = start(dir.path(), 1);
    wait_for(dir.path(), &mut child, "both logs complete", |_| {
        log_of(a.0, a.1).len() == 6 && log_of(b.0, b.1).len() == 6
    });
    // Settled: a moment for the last applies, then both sides stay.
    std::thread::sleep(std::time::Duration::from_secs(3));
    let (on_a, on_b) = (hot(a.0), hot(b.0));
    let stopped = super::cdc::interrupt(child);
    assert!(stopped.status.success(), "{}", text(&stopped.stderr));
    let logs = (log_of(a.0, a.1), log_of(b.0, b.1));
    Settled {
        dir,
        on_a,
        on_b,
        logs,
    }
}

/// `p.toml` in `dir`: sync `name` of table `hot` between `sides`, with
/// `sync` as its `[sync]` lines.
fn hot_pipeline(dir: &Path, name: &str, sides: (&TestDb, &TestDb), sync: &str) {
    sync_pipeline(dir, name, "hot", sides, sync);
}

/// `p.toml` in `dir`: sync `name` of `table` between `sides`, with `sync`
/// as its `[sync]` lines.
pub(super) fn sync_pipeline(
    dir: &Path,
    name: &str,
    table: &str,
    (a, b): (&TestDb, &TestDb),
    sync: &str,
) {
    pipeline(
        dir,
        "p.toml",
        &format!(
            "[pipeline]\nname = \"{name}\"\n[source]\nurl = \"{}\"\n[target]\nurl = \"{}\"\n\
             [tables]\ninclude = [\"{table}\"]\n[run]\nmode = \"bidirectional\"\n\
             [cdc]\nslot = \"{name}\"\nheartbeat = \"1s\"\n[sync]\n{sync}\n",
            a.url, b.url
        ),
    );
}

/// Bytes cross whole in a resolution, both ways: MariaDB hands its row
/// over with them as hex, as PostgreSQL prints them.
#[test]
fn a_resolution_carries_bytes_between_postgres_and_mariadb() {
    let a = postgres().create_database("conflict_bin_a");
    let b = mariadb().create_database("conflict_bin_b");
    a.exec(
        "CREATE TABLE blobs (id bigint PRIMARY KEY, data bytea);
         ALTER TABLE blobs REPLICA IDENTITY FULL;
         INSERT INTO blobs VALUES (1, '\\x00'), (2, '\\x00');",
    );
    let dir = tempfile::tempdir().expect("tempdir");
    sync_pipeline(
        dir.path(),
        "cf_bytes",
        "blobs",
        (&a, &b),
        "conflict = \"manual\"",
    );
    let blobs_b =
        |db: &TestDb| joined_rows(db, "SELECT id, LOWER(HEX(data)) FROM blobs ORDER BY id");
    let mut child = start(dir.path(), 0);
    wait_for(dir.path(), &mut child, "the first load", |log| {
        blobs_b(&b).len() == 2 && legs_streaming(log)
    });
    let stopped = super::cdc::interrupt(child);
    assert!(stopped.status.success(), "{}", text(&stopped.stderr));
    a.exec(
        "UPDATE blobs SET data = '\\x00ff80c3' WHERE id = 1;
         UPDATE blobs SET data = '\\x01' WHERE id = 2;",
    );
    b.exec("UPDATE blobs SET data = 0x02 WHERE id = 1; UPDATE blobs SET data = 0xfe00e9ff WHERE id = 2;");
    let mut child = start(dir.path(), 1);
    wait_for(dir.path(), &mut child, "both sides' conflicts", |_| {
        table_log(&a, Dialect::Postgres, "blobs").len() == 2
            && table_log(&b, Dialect::Mariadb, "blobs").len() == 2
    });
    let stopped = super::cdc::interrupt(child);
    assert!(stopped.status.success(), "{}", text(&stopped.stderr));
    let parked = listed(dir.path(), &[]);
    for (id, side) in [(1, "a"), (2, "b")] {
        let resolved = conflicts(
            dir.path(),
            &[
                "resolve",
                "p.toml",
                &entry_at(&parked, "a", id),
                "--side",
                side,
            ],
        );
        assert_exit(&resolved, 0);
    }
    let want = vec!["1:00ff80c3".to_string(), "2:fe00e9ff".to_string()];
    let on_a = joined_rows(&a, "SELECT id, encode(data, 'hex') FROM blobs ORDER BY id");
    assert_eq!((on_a, blobs_b(&b)), (want.clone(), want));
    drop_slots(dir.path());
}

/// The keys of `hot`'s tombstones in `db`; none while there is no
/// tombstone table.
fn tombstones(db: &TestDb) -> Vec<String> {
    joined_rows(db, "SELECT id FROM _dmp_tomb_hot ORDER BY id")
}

/// Under last_writer_wins each side keeps a tombstone of every deleted
/// row (the user's deletes and the sync's own), and forgets it once it is
/// older than the retention and a later change was applied.
#[test]
fn last_writer_wins_keeps_tombstones_for_the_retention() {
    let a = postgres().create_database("conflict_tomb_a");
    let b = mariadb().create_database("conflict_tomb_b");
    create_hot(&a, Dialect::Postgres);
    let dir = tempfile::tempdir().expect("tempdir");
    hot_pipeline(
        dir.path(),
        "cf_tomb",
        (&a, &b),
        "conflict = \"last_writer_wins\"\nconflict_column = \"version\"\n\
         tombstone_retention = \"2s\"",
    );
    let mut child = start(dir.path(), 0);
    wait_for(dir.path(), &mut child, "the first load", |log| {
        hot(&b).len() == 6 && legs_streaming(log)
    });
    a.exec("DELETE FROM hot WHERE id = 1");
    b.exec("DELETE FROM hot WHERE id = 2");
    wait_for(dir.path(), &mut child, "both deletes on both sides", |_| {
        hot(&a).len() == 4 && hot(&b).len() == 4
    });
    assert_eq!(tombstones(&a), vec!["1", "2"]);
    assert_eq!(tombstones(&b), vec!["1", "2"]);
    // Past the retention, a change each way: both purge.
    std::thread::sleep(std::time::Duration::from_secs(3));
    a.exec("INSERT INTO hot VALUES (20, 'a20', 1)");
    b.exec("INSERT INTO hot VALUES (21, 'b21', 1)");
    wait_for(dir.path(), &mut child, "the tombstones forgotten", |_| {
        tombstones(&a).is_empty() && tombstones(&b).is_empty()
    });
    assert_eq!(hot(&a), hot(&b));
    let stopped = super::cdc::interrupt(child);
    assert!(stopped.status.success(), "{}", text(&stopped.stderr));
    drop_slots(dir.path());
}

/// Drops both legs' change streams at their sources.
pub(super) fn drop_slots(dir: &Path) {
    let dropped = dmp(dir)
        .args(["cdc", "drop-slot", "p.toml"])
        .output()
        .expect("dmp cdc drop-slot");
    assert_exit(&dropped, 0);
}

fn check(sync: &str, on_a: &Rows, on_b: &Rows, (log_a, log_b): &Logs) {
    // By commit time: B's writes, all made after A's, win every conflict.
    let sync = if sync.contains("last_writer_wins") && !sync.contains("conflict_column") {
        "conflict = \"b_wins\""
    } else {
        sync
    };
    if sync.contains("last_writer_wins") {
        assert_eq!((on_a, on_b), (&last_writer_rows(), &last_writer_rows()));
        // B's change wins on 1, 2 (its update over A's older delete) and
        // 10; A's on 3 (its update over B's older delete) and 5.
        let b_won = [1, 2, 10];
        assert_eq!(
            log_b,
            &log_expected(&ON_B, |id, _| if b_won.contains(&id) {
                "keep_local"
            } else {
                "apply_remote"
            })
        );
        assert_eq!(
            log_a,
            &log_expected(&ON_A, |id, _| if b_won.contains(&id) {
                "apply_remote"
            } else {
                "keep_local"
            })
        );
        return;
    }
    let policy = sync
        .split('"')
        .nth(1)
        .expect("conflict = \"policy\" in the [sync] lines");
    let want = expected(policy);
    assert_eq!((on_a, on_b), (&want.a, &want.b), "rows under {policy}");
    assert_eq!(log_b, &log_expected(&ON_B, |_, _| want.decisions[0]));
    assert_eq!(log_a, &log_expected(&ON_A, |_, _| want.decisions[1]));
}

/// Whether `log` shows both legs of a two-way sync streaming.
pub(super) fn legs_streaming(log: &str) -> bool {
    ["a_to_b", "b_to_a"]
        .iter()
        .all(|leg| log.contains(&format!("leg{{leg=\"{leg}\"}}: streaming changes log=")))
}

/// `dmp run p.toml` in `dir`, logging to `run-N.log`.
pub(super) fn start(dir: &Path, n: u32) -> std::process::Child {
    let log = std::fs::File::create(dir.join(format!("run-{n}.log"))).expect("log");
    dmp(dir)
        .args(["run", "p.toml"])
        .env("RUST_LOG", "info")
        .stdout(std::process::Stdio::null())
        .stderr(log)
        .spawn()
        .expect("dmp starts")
}

/// Waits until `done` holds for the logs of the runs so far.
pub(super) fn wait_for(
    dir: &Path,
    child: &mut std::process::Child,
    what: &str,
    mut done: impl FnMut(&str) -> bool,
) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    loop {
        // Every run's log so far, in order.
        let log: String = (0..)
            .map_while(|n| std::fs::read_to_string(dir.join(format!("run-{n}.log"))).ok())
            .collect();
        if done(&log) {
            return;
        }
        if let Ok(Some(status)) = child.try_wait() {
            panic!("dmp ended ({status}) waiting for {what}\n{log}");
        }
        assert!(
            std::time::Instant::now() < deadline,
            "waited for {what}\n{log}"
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
}

#[test]
fn a_wins_on_postgres_and_postgres() {
    let a = postgres().create_database("conflict_aw_a");
    let b = postgres().create_database("conflict_aw_b");
    run_policy(
        (&a, Dialect::Postgres),
        (&b, Dialect::Postgres),
        "cf_a_wins",
        "conflict = \"a_wins\"",
    );
}

#[test]
fn b_wins_on_postgres_and_mariadb() {
    let a = postgres().create_database("conflict_bw_a");
    let b = mariadb().create_database("conflict_bw_b");
    run_policy(
        (&a, Dialect::Postgres),
        (&b, Dialect::Mariadb),
        "cf_b_wins",
        "conflict = \"b_wins\"",
    );
}

#[test]
fn last_writer_wins_by_version_on_postgres_and_mariadb() {
    let a = postgres().create_database("conflict_lw_a");
    let b = mariadb().create_database("conflict_lw_b");
    run_policy(
        (&a, Dialect::Postgres),
        (&b, Dialect::Mariadb),
        "cf_lww",
        "conflict = \"last_writer_wins\"\nconflict_column = \"version\"",
    );
}

#[test]
fn last_writer_wins_by_version_on_postgres_and_postgres() {
    let a = postgres().create_database("conflict_lwp_a");
    let b = postgres().create_database("conflict_lwp_b");
    run_policy(
        (&a, Dialect::Postgres),
        (&b, Dialect::Postgres),
        "cf_lww_p",
        "conflict = \"last_writer_wins\"\nconflict_column = \"version\"",
    );
}

/// By commit time (no column), between two PostgreSQL sides: side B's
/// writes were made after side A's.
#[test]
fn last_writer_wins_by_commit_time_on_postgres_and_postgres() {
    let a = postgres().create_database("conflict_lwt_a");
    let b = postgres().create_database("conflict_lwt_b");
    let sync = "conflict = \"last_writer_wins\"";
    let settled = settle(
        (&a, Dialect::Postgres),
        (&b, Dialect::Postgres),
        "cf_lww_t",
        sync,
    );
    drop_slots(settled.dir.path());
    check(sync, &settled.on_a, &settled.on_b, &settled.logs);
    // A row DMP wrote carries the remote write's commit time: 6, updated
    // on A only, holds on B the time A committed it.
    let commit_us = "round(extract(epoch FROM pg_xact_commit_timestamp(xmin)) * 1000000)::bigint";
    let on_a = joined_rows(&a, &format!("SELECT id, {commit_us} FROM hot WHERE id = 6"));
    let on_b = joined_rows(
        &b,
        "SELECT t.id, v.write_us FROM hot t JOIN _dmp_ver_hot v USING (id) WHERE v.xid = t.xmin",
    );
    assert_eq!(on_b, on_a);
    // B's delete of 3 applied on A: its tombstone holds B's delete's time.
    let tomb = joined_rows(
        &a,
        "SELECT id FROM _dmp_tomb_hot WHERE write_us IS NOT NULL",
    );
    assert_eq!(tomb, vec!["3"]);
}

/// MariaDB keeps no commit time per row: last_writer_wins without a
/// column is refused there, with what to do instead.
#[test]
fn last_writer_wins_by_commit_time_is_refused_on_mariadb() {
    let a = postgres().create_database("conflict_lwr_a");
    let b = mariadb().create_database("conflict_lwr_b");
    create_hot(&a, Dialect::Postgres);
    let dir = tempfile::tempdir().expect("tempdir");
    hot_pipeline(
        dir.path(),
        "cf_lww_r",
        (&a, &b),
        "conflict = \"last_writer_wins\"",
    );
    let run = dmp(dir.path())
        .args(["run", "p.toml"])
        .output()
        .expect("dmp run");
    assert_exit(&run, 2);
    let stderr = text(&run.stderr);
    assert!(
        stderr.contains("last_writer_wins by commit time (table hot)")
            && stderr.contains("conflict_column"),
        "{stderr}"
    );
    drop_slots(dir.path());
}

#[test]
fn last_writer_wins_by_version_on_mariadb_and_mariadb() {
    let a = mariadb().create_database("conflict_lwm_a");
    let b = mariadb().create_database("conflict_lwm_b");
    run_policy(
        (&a, Dialect::Mariadb),
        (&b, Dialect::Mariadb),
        "cf_lww_m",
        "conflict = \"last_writer_wins\"\nconflict_column = \"version\"",
    );
}

#[test]
fn manual_parks_both_sides_on_postgres_and_postgres() {
    let a = postgres().create_database("conflict_mn_a");
    let b = postgres().create_database("conflict_mn_b");
    run_policy(
        (&a, Dialect::Postgres),
        (&b, Dialect::Postgres),
        "cf_manual",
        "conflict = \"manual\"",
    );
}

/// `dmp conflicts ARGS…` in `dir`.
fn conflicts(dir: &Path, args: &[&str]) -> std::process::Output {
    dmp(dir)
        .arg("conflicts")
        .args(args)
        .output()
        .expect("dmp conflicts")
}

/// `dmp conflicts list p.toml --json` (with `extra`): the entries.
fn listed(dir: &Path, extra: &[&str]) -> Vec<serde_json::Value> {
    let out = conflicts(dir, &[&["list", "p.toml", "--json"], extra].concat());
    assert_exit(&out, 0);
    serde_json::from_slice(&out.stdout).expect("a JSON array")
}

/// (side, key id) of each entry, sorted.
fn keys_of(entries: &[serde_json::Value]) -> Vec<(String, i64)> {
    let mut keys: Vec<(String, i64)> = entries
        .iter()
        .map(|e| {
            (
                e["side"].as_str().expect("side").to_string(),
                e["key"]["id"].as_i64().expect("key id"),
            )
        })
        .collect();
    keys.sort();
    keys
}

/// The name (`b:7`) of the entry of `side`'s log at key `id`.
fn entry_at(entries: &[serde_json::Value], side: &str, id: i64) -> String {
    entries
        .iter()
        .find(|e| e["side"] == side && e["key"]["id"] == id)
        .and_then(|e| e["id"].as_str())
        .unwrap_or_else(|| panic!("no entry of side {side} at key {id}: {entries:?}"))
        .to_string()
}

/// Each row's version on PostgreSQL: a row written again gets a new one.
fn versions(db: &TestDb) -> Vec<Vec<Option<String>>> {
    db.query("SELECT id::text, xmin::text FROM hot ORDER BY id")
}

#[test]
fn manual_conflicts_are_listed_and_resolved_by_side() {
    let (a, b) = (
        postgres().create_database("conflict_rs_a"),
        mariadb().create_database("conflict_rs_b"),
    );
    let sync = "conflict = \"manual\"";
    let settled = settle(
        (&a, Dialect::Postgres),
        (&b, Dialect::Mariadb),
        "cf_resolve",
        sync,
    );
    check(sync, &settled.on_a, &settled.on_b, &settled.logs);
    let dir = settled.dir.path();

    // Parked on both sides: every key but 4, which both deleted.
    let parked = listed(dir, &[]);
    let both = |ids: &[i64]| -> Vec<(String, i64)> {
        let mut keys: Vec<(String, i64)> = ["a", "b"]
            .iter()
            .flat_map(|s| ids.iter().map(move |&id| (s.to_string(), id)))
            .collect();
        keys.sort();
        keys
    };
    assert_eq!(keys_of(&parked), both(&[1, 2, 3, 5, 10]));
    assert!(parked.iter().all(|e| e["decision"] == "parked"
        && e["pipeline"] == "cf_resolve"
        && e["resolution"].is_null()));
    let every = listed(dir, &["--all"]);
    assert_eq!(keys_of(&every), both(&[1, 2, 3, 4, 5, 10]));
    let text_list = conflicts(dir, &["list", "p.toml"]);
    assert_exit(&text_list, 0);
    assert!(
        text(&text_list.stdout).contains("10 parked conflicts"),
        "{}",
        text(&text_list.stdout)
    );

    // One in full: on B, A's change of key 1 against B's row then.
    let b1 = entry_at(&parked, "b", 1);
    let shown = conflicts(dir, &["show", "p.toml", &b1, "--json"]);
    assert_exit(&shown, 0);
    let shown: serde_json::Value = serde_json::from_slice(&shown.stdout).expect("JSON");
    assert_eq!(
        (&shown["kind"], &shown["remote_side"]),
        (&"update_differs".into(), &"a".into())
    );
    assert_eq!(
        (&shown["remote_new"]["v"], &shown["local_row"]["v"]),
        (&"a1".into(), &"b1".into())
    );
    let shown = conflicts(dir, &["show", "p.toml", &b1]);
    assert_exit(&shown, 0);
    assert!(
        text(&shown.stdout).contains("\"v\": \"b1\""),
        "{}",
        text(&shown.stdout)
    );
    let unknown = conflicts(dir, &["show", "p.toml", "b:999999"]);
    assert_exit(&unknown, 2);
    assert!(
        text(&unknown.stderr).contains("b:999999"),
        "{}",
        text(&unknown.stderr)
    );

    // Key 1 by side A, named by B's entry: B's row becomes A's.
    let resolved = conflicts(dir, &["resolve", "p.toml", &b1, "--side", "a"]);
    assert_exit(&resolved, 0);
    assert!(hot(&b).contains(&"1:a1:2".to_string()), "{:?}", hot(&b));
    let again = conflicts(dir, &["resolve", "p.toml", &b1, "--side", "b"]);
    assert_exit(&again, 2);
    assert!(
        text(&again.stderr).contains("resolved already"),
        "{}",
        text(&again.stderr)
    );
    // Key 3 by side B, named by A's entry: B deleted it, so A's row goes.
    let a3 = entry_at(&parked, "a", 3);
    let resolved = conflicts(dir, &["resolve", "p.toml", &a3, "--side", "b"]);
    assert_exit(&resolved, 0);
    // Key 4 was settled when logged (both deleted it): nothing to resolve.
    let settled_4 = conflicts(
        dir,
        &[
            "resolve",
            "p.toml",
            &entry_at(&every, "a", 4),
            "--side",
            "a",
        ],
    );
    assert_exit(&settled_4, 2);
    assert!(
        text(&settled_4.stderr).contains("not parked"),
        "{}",
        text(&settled_4.stderr)
    );

    let resolved_rows_a = rows(&["1:a1:2", "5:a5:7", "6:a6:2", "10:a10:1"]);
    let resolved_rows_b = rows(&["1:a1:2", "2:b2:2", "5:b5:2", "6:a6:2", "10:b10:2"]);
    assert_eq!(
        (hot(&a), hot(&b)),
        (resolved_rows_a.clone(), resolved_rows_b.clone())
    );
    assert_eq!(keys_of(&listed(dir, &[])), both(&[2, 5, 10]));
    let every = listed(dir, &["--all"]);
    for (key, by) in [(1, "side a"), (3, "side b")] {
        let marked: Vec<_> = every.iter().filter(|e| e["key"]["id"] == key).collect();
        assert_eq!(marked.len(), 2, "{marked:?}");
        assert!(
            marked
                .iter()
                .all(|e| e["resolution"] == by && e["resolved_at"].is_string()),
            "{marked:?}"
        );
    }

    // Nothing echoes: the sync runs again until a row written on each side
    // after the resolutions reached the other (each stream has read past
    // them); no row of A was written again (its versions stay), and no
    // conflict was logged (B deleting 3 again would log one).
    let before = versions(&a);
    let mut child = start(dir, 2);
    a.exec("INSERT INTO hot VALUES (100, 'after', 1)");
    b.exec("INSERT INTO hot VALUES (200, 'after', 1)");
    wait_for(
        dir,
        &mut child,
        "rows written after the resolutions",
        |_| {
            hot(&a).contains(&"200:after:1".to_string())
                && hot(&b).contains(&"100:after:1".to_string())
        },
    );
    let stopped = super::cdc::interrupt(child);
    assert!(stopped.status.success(), "{}", text(&stopped.stderr));
    let after: Vec<_> = versions(&a)
        .into_iter()
        .filter(|r| !matches!(r[0].as_deref(), Some("100" | "200")))
        .collect();
    assert_eq!(after, before, "rows of A were written again (an echo)");
    let sentinels = ["100:after:1".to_string(), "200:after:1".to_string()];
    assert_eq!(
        (hot(&a), hot(&b)),
        (
            [resolved_rows_a, sentinels.to_vec()].concat(),
            [resolved_rows_b, sentinels.to_vec()].concat()
        )
    );
    assert_eq!(
        (log_of(&a, Dialect::Postgres), log_of(&b, Dialect::Mariadb)),
        settled.logs
    );
    drop_slots(dir);
}
