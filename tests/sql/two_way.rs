//! Two-way sync (`mode = "bidirectional"`): side A is loaded into side B,
//! then writers change both sides at once — each side its own keys
//! (inserts, updates, deletes, several rows a transaction) and a set of hot
//! keys both sides update, delete and insert again — while `dmp run` is
//! SIGKILLed twice and started again. Afterwards a sentinel row written on
//! each side reaches the other, both sides hold the same rows, every
//! conflict logged is of a hot key and decided as the policy says, and
//! nothing echoes: no row is written again once the writers stopped
//! (PostgreSQL: each row's version, `xmin`, stays; MariaDB: the binlog
//! holds no event of the table past that point).

use std::path::Path;
use std::process::Child;
use std::time::{Duration, Instant};

use dmp_test_servers::{TestDb, mariadb, postgres};

use super::cdc::{interrupt, seed};
use super::conflicts::{legs_streaming, start as start_dmp, table_log};
use crate::support::workload::{Dialect, Lcg};
use crate::support::{assert_exit, dmp, pipeline, text};

/// Rows of `items` before the first load: ids 1 to SEEDED.
const SEEDED: u64 = 1000;
/// Writer sessions per side, and transactions each.
const WRITERS: u64 = 2;
const TRANSACTIONS: u64 = 150;
/// Ids 1 to HOT are written by every writer of both sides.
const HOT: u64 = 16;

struct Side<'a> {
    db: &'a TestDb,
    dialect: Dialect,
}

fn create_items(side: &Side<'_>) {
    side.db.exec(&match side.dialect {
        Dialect::Postgres => format!(
            "CREATE TABLE items (id bigint PRIMARY KEY, side text NOT NULL, n integer NOT NULL, note text);
             ALTER TABLE items REPLICA IDENTITY FULL;
             INSERT INTO items SELECT g, 'seed', 0, 'seed ' || g FROM generate_series(1, {SEEDED}) g;"
        ),
        Dialect::Mariadb => format!(
            "CREATE TABLE items (id bigint PRIMARY KEY, side varchar(20) NOT NULL, n int NOT NULL, note text);
             INSERT INTO items SELECT seq, 'seed', 0, CONCAT('seed ', seq) FROM seq_1_to_{SEEDED};"
        ),
    });
}

/// The SQL of writer `session` of side `side` (0 = A, 1 = B): it owns the
/// ids of one class modulo 4, which no other writer touches, and shares
/// the hot ids with all.
fn writer_script(dialect: Dialect, side: u64, session: u64, seed: u64) -> String {
    let class = side * WRITERS + session;
    let mut rng = Lcg::new(seed ^ (class + 1).wrapping_mul(0x9E37_79B9));
    let mut live: Vec<u64> = (HOT + 1..=SEEDED).filter(|id| id % 4 == class).collect();
    let mut next = 0u64;
    let (mut sql, pause) = match dialect {
        Dialect::Postgres => (String::new(), "SELECT pg_sleep(0.01);"),
        Dialect::Mariadb => (
            "SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED;\n".to_string(),
            "DO SLEEP(0.01);",
        ),
    };
    let name = if side == 0 { "a" } else { "b" };
    for t in 0..TRANSACTIONS {
        sql.push_str("BEGIN;\n");
        for _ in 0..=rng.below(3) {
            if rng.below(5) == 0 {
                let hot = 1 + rng.below(HOT);
                sql.push_str(&hot_write(dialect, &mut rng, hot, name, t));
                continue;
            }
            match rng.below(10) {
                0..=2 => {
                    next += 1;
                    let id = 1_000_000 + next * 4 + class;
                    live.push(id);
                    sql.push_str(&format!(
                        "INSERT INTO items (id, side, n, note) VALUES ({id}, '{name}', 0, 'new {t}');\n"
                    ));
                }
                3..=7 if !live.is_empty() => {
                    let id = live[rng.below(live.len() as u64) as usize];
                    sql.push_str(&format!(
                        "UPDATE items SET n = n + 1, side = '{name}', note = 'u{t}' WHERE id = {id};\n"
                    ));
                }
                8 if live.len() > 20 => {
                    let id = live.swap_remove(rng.below(live.len() as u64) as usize);
                    sql.push_str(&format!("DELETE FROM items WHERE id = {id};\n"));
                }
                _ => {}
            }
        }
        sql.push_str("COMMIT;\n");
        sql.push_str(pause);
        sql.push('\n');
    }
    sql
}

/// An update, a delete or an insert (again) of hot key `id`.
fn hot_write(dialect: Dialect, rng: &mut Lcg, id: u64, name: &str, t: u64) -> String {
    match rng.below(20) {
        0 => format!("DELETE FROM items WHERE id = {id};\n"),
        1 => {
            let upsert = match dialect {
                Dialect::Postgres => "ON CONFLICT (id) DO UPDATE SET n = excluded.n",
                Dialect::Mariadb => "ON DUPLICATE KEY UPDATE n = VALUES(n)",
            };
            format!(
                "INSERT INTO items (id, side, n, note) VALUES ({id}, '{name}', {t}, 'hot {t}') {upsert};\n"
            )
        }
        _ => format!(
            "UPDATE items SET n = n + 1, side = '{name}', note = 'hot {t}' WHERE id = {id};\n"
        ),
    }
}

fn start_writers(side: &Side<'_>, index: u64, seed: u64) -> Vec<std::thread::JoinHandle<()>> {
    (0..WRITERS)
        .map(|session| {
            let script = writer_script(side.dialect, index, session, seed);
            let db = side.db.clone();
            std::thread::spawn(move || db.exec(&script))
        })
        .collect()
}

fn rows(side: &Side<'_>) -> Vec<Vec<Option<String>>> {
    side.db
        .try_query("SELECT id, side, n, note FROM items ORDER BY id")
        .unwrap_or_default()
}

fn logs(dir: &Path) -> String {
    let mut out = String::new();
    for n in 0..4 {
        if let Ok(log) = std::fs::read_to_string(dir.join(format!("run-{n}.log"))) {
            let lines: Vec<&str> = log.lines().collect();
            out.push_str(&format!(
                "--- run {n}:\n{}\n",
                lines[lines.len().saturating_sub(40)..].join("\n")
            ));
        }
    }
    out
}

fn wait_until(dir: &Path, child: &mut Child, what: &str, done: impl FnMut() -> bool) {
    wait_until_or(dir, child, what, done, String::new);
}

/// [`wait_until`], adding `state()` to the message when it gives up.
fn wait_until_or(
    dir: &Path,
    child: &mut Child,
    what: &str,
    mut done: impl FnMut() -> bool,
    state: impl Fn() -> String,
) {
    let deadline = Instant::now() + Duration::from_secs(180);
    while !done() {
        if let Ok(Some(status)) = child.try_wait() {
            panic!("dmp ended ({status}) waiting for {what}\n{}", logs(dir));
        }
        assert!(
            Instant::now() < deadline,
            "waited for {what}{}\n{}",
            state(),
            logs(dir)
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The rows only one side holds as they are, and the conflicts logged.
fn differences(a: &Side<'_>, b: &Side<'_>) -> String {
    let (on_a, on_b) = (rows(a), rows(b));
    let only_a: Vec<_> = on_a.iter().filter(|r| !on_b.contains(r)).collect();
    let only_b: Vec<_> = on_b.iter().filter(|r| !on_a.contains(r)).collect();
    let keys: Vec<String> = only_a
        .iter()
        .chain(&only_b)
        .filter_map(|r| r[0].clone())
        .collect();
    let mut out = format!("\nonly on A: {only_a:?}\nonly on B: {only_b:?}");
    for (name, side) in [("A", a), ("B", b)] {
        for id in &keys {
            let key = match side.dialect {
                Dialect::Postgres => "key",
                Dialect::Mariadb => "`key`",
            };
            let logged = side.db.try_query(&format!(
                "SELECT id, kind, decision, remote_old, remote_new, local_row FROM _dmp_conflicts \
                 WHERE table_name = 'items' AND {key} = '{{\"id\":{id}}}' ORDER BY id"
            ));
            out.push_str(&format!("\nconflicts of {id} on {name}: {logged:?}"));
        }
    }
    out
}

/// What shows a row written again on `side` from now on.
enum Mark {
    /// Each row's version.
    Versions(Vec<Vec<Option<String>>>),
    /// The binlog's end.
    Binlog(String, u64),
}

fn mark(side: &Side<'_>) -> Mark {
    match side.dialect {
        Dialect::Postgres => Mark::Versions(
            side.db
                .query("SELECT id, xmin::text FROM items ORDER BY id"),
        ),
        Dialect::Mariadb => {
            let status = side.db.query("SHOW MASTER STATUS");
            let file = status[0][0].clone().expect("binlog file");
            let pos = status[0][1]
                .as_deref()
                .and_then(|p| p.parse().ok())
                .expect("binlog position");
            Mark::Binlog(file, pos)
        }
    }
}

/// Panics when a row of `items` on `side` was written since `mark`.
fn assert_unwritten(side: &Side<'_>, mark: &Mark, which: &str) {
    match mark {
        Mark::Versions(before) => {
            let now = side
                .db
                .query("SELECT id, xmin::text FROM items ORDER BY id");
            assert!(
                &now == before,
                "side {which}: rows were written again after the writers stopped (an echo)"
            );
        }
        Mark::Binlog(file, pos) => {
            let events = side
                .db
                .query(&format!("SHOW BINLOG EVENTS IN '{file}' FROM {pos}"));
            let database = &side.db.name;
            let echoed: Vec<_> = events
                .iter()
                .filter_map(|e| e.get(5).cloned().flatten())
                .filter(|info| info.contains(&format!("({database}.items)")))
                .collect();
            assert!(
                echoed.is_empty(),
                "side {which}: rows of items were written again after the writers stopped (an echo): {echoed:?}"
            );
        }
    }
}

/// `initial`: `a_to_b` (A seeded, loaded into B), `b_to_a`, or `none`
/// (both seeded alike).
/// `policy`: the `[sync] conflict` lines.
fn two_way(a: Side<'_>, b: Side<'_>, slot: &str, initial: &str, policy: &str) {
    let dir = tempfile::tempdir().expect("tempdir");
    match initial {
        "a_to_b" => create_items(&a),
        "b_to_a" => create_items(&b),
        _ => {
            create_items(&a);
            create_items(&b);
        }
    }
    let loaded = if initial == "b_to_a" { &a } else { &b };
    let mut child = start_sync(dir.path(), &a, &b, slot, (initial, policy), loaded);
    let seed = seed();
    let mut rng = Lcg::new(seed);
    let mut writers = start_writers(&a, 0, seed);
    writers.extend(start_writers(&b, 1, seed));
    for kill in 1..=2 {
        std::thread::sleep(Duration::from_millis(500 + rng.below(1500)));
        child.kill().expect("SIGKILL");
        child.wait().expect("wait");
        eprintln!("SIGKILL {kill}");
        child = start_dmp(dir.path(), kill);
    }
    for writer in writers {
        writer.join().expect("writer");
    }
    a.db.exec("INSERT INTO items (id, side, n, note) VALUES (900000001, 'a', 0, 'sentinel of a')");
    b.db.exec("INSERT INTO items (id, side, n, note) VALUES (900000002, 'b', 0, 'sentinel of b')");
    wait_until_or(
        dir.path(),
        &mut child,
        "both sides equal, sentinels included",
        || {
            let (on_a, on_b) = (rows(&a), rows(&b));
            on_a == on_b
                && on_a
                    .iter()
                    .filter(|r| r[0].as_deref().is_some_and(|id| id.starts_with("90000000")))
                    .count()
                    == 2
        },
        || differences(&a, &b),
    );
    // Quiet now: a few heartbeats later, nothing was written again.
    let (mark_a, mark_b) = (mark(&a), mark(&b));
    std::thread::sleep(Duration::from_secs(4));
    assert_unwritten(&a, &mark_a, "A");
    assert_unwritten(&b, &mark_b, "B");
    assert_eq!(rows(&a), rows(&b));
    assert_conflicts_decided(&a, &b, policy);
    let verified = dmp(dir.path())
        .args(["verify", "p.toml"])
        .output()
        .expect("dmp verify");
    assert_exit(&verified, 0);
    stop(child, dir.path());
    // The clocks were compared when it started.
    let first = std::fs::read_to_string(dir.path().join("run-0.log")).unwrap_or_default();
    assert!(
        first.contains("the clocks of both sides agree with DMP's"),
        "{first}"
    );
    drop_streams(dir.path(), &a, &b, slot);
}

#[test]
fn postgres_and_postgres_stay_equal_when_both_are_written() {
    let a = postgres().create_database("two_way_pg_a");
    let b = postgres().create_database("two_way_pg_b");
    two_way(
        side(&a, Dialect::Postgres),
        side(&b, Dialect::Postgres),
        "tw_pg_pg",
        "a_to_b",
        // By commit time (track_commit_timestamp; no column).
        "conflict = \"last_writer_wins\"",
    );
}

#[test]
fn postgres_and_mariadb_stay_equal_when_both_are_written() {
    let a = postgres().create_database("two_way_pm_a");
    let b = mariadb().create_database("two_way_pm_b");
    two_way(
        side(&a, Dialect::Postgres),
        side(&b, Dialect::Mariadb),
        "tw_pg_maria",
        "a_to_b",
        "conflict = \"b_wins\"",
    );
}

#[test]
fn mariadb_and_mariadb_stay_equal_when_both_are_written() {
    let a = mariadb().create_database("two_way_mm_a");
    let b = mariadb().create_database("two_way_mm_b");
    two_way(
        side(&a, Dialect::Mariadb),
        side(&b, Dialect::Mariadb),
        "tw_maria_maria",
        "a_to_b",
        "conflict = \"last_writer_wins\"\nconflict_column = \"n\"",
    );
}

#[test]
fn mariadb_loaded_into_postgres_then_both_written_stay_equal() {
    let a = postgres().create_database("two_way_ba_a");
    let b = mariadb().create_database("two_way_ba_b");
    two_way(
        side(&a, Dialect::Postgres),
        side(&b, Dialect::Mariadb),
        "tw_b_to_a",
        "b_to_a",
        "",
    );
}

#[test]
fn two_equal_postgres_databases_without_a_first_load_stay_equal() {
    let a = postgres().create_database("two_way_none_a");
    let b = postgres().create_database("two_way_none_b");
    two_way(
        side(&a, Dialect::Postgres),
        side(&b, Dialect::Postgres),
        "tw_none",
        "none",
        // Hot keys deleted and inserted again on both sides at once: the
        // deletes are ordered by their tombstones.
        "conflict = \"last_writer_wins\"\nconflict_column = \"n\"",
    );
}

/// The conflicts of `items` logged on `side`: (id, kind, decision).
fn conflicts(side: &Side<'_>) -> Vec<(i64, String, String)> {
    table_log(side.db, side.dialect, "items")
}

/// Only hot keys conflicted (the others have one writer: a replay after a
/// kill is no conflict), some did (the kills leave both sides written
/// apart for a while), and each was decided as `policy` says.
fn assert_conflicts_decided(a: &Side<'_>, b: &Side<'_>, policy: &str) {
    let (on_a, on_b) = (conflicts(a), conflicts(b));
    assert!(
        !on_a.is_empty() || !on_b.is_empty(),
        "no conflict was logged on either side"
    );
    // The side that wins per log: a_wins applies A's changes on B, keeps
    // A's rows on A.
    let winner = if policy.contains("a_wins") {
        Some("a")
    } else if policy.contains("b_wins") {
        Some("b")
    } else {
        None
    };
    for (log, side, remote) in [(&on_a, "A", "b"), (&on_b, "B", "a")] {
        for (id, kind, decision) in log {
            assert!(
                u64::try_from(*id).is_ok_and(|id| id <= HOT),
                "side {side}: key {id}, written on one side only, conflicted ({kind})"
            );
            let expected = match winner {
                _ if kind == "delete_missing" => "apply_remote",
                Some(w) if w == remote => "apply_remote",
                Some(_) => "keep_local",
                None => {
                    assert!(
                        decision == "apply_remote" || decision == "keep_local",
                        "side {side}: key {id} {kind}: {decision}"
                    );
                    continue;
                }
            };
            assert_eq!(decision, expected, "side {side}: key {id} {kind}");
        }
    }
}

/// Writes the two-way pipeline of `a` and `b` into `dir`, starts it, and
/// waits until `loaded` holds the first load and both legs stream (their
/// start positions fixed: what is written from then on is carried).
fn start_sync(
    dir: &Path,
    a: &Side<'_>,
    b: &Side<'_>,
    slot: &str,
    (initial, policy): (&str, &str),
    loaded: &Side<'_>,
) -> Child {
    pipeline(
        dir,
        "p.toml",
        &format!(
            "[pipeline]\nname = \"{slot}\"\n[source]\nurl = \"{}\"\n[target]\nurl = \"{}\"\n\
             [tables]\ninclude = [\"items\"]\n\
             [run]\nmode = \"bidirectional\"\nbatch_rows = 500\n\
             [cdc]\nslot = \"{slot}\"\nheartbeat = \"1s\"\n[sync]\ninitial = \"{initial}\"\n{policy}\n",
            a.db.url, b.db.url
        ),
    );
    let mut child = start_dmp(dir, 0);
    wait_until(dir, &mut child, "the first load", || {
        rows(loaded).len() as u64 == SEEDED
    });
    wait_until(dir, &mut child, "both legs streaming", || {
        legs_streaming(&std::fs::read_to_string(dir.join("run-0.log")).unwrap_or_default())
    });
    child
}

/// Each leg's stream shown by `dmp cdc status`, then both removed at
/// their sources: no slot is left.
fn drop_streams(dir: &Path, a: &Side<'_>, b: &Side<'_>, slot: &str) {
    let status = dmp(dir)
        .args(["cdc", "status", "p.toml", "--json"])
        .output()
        .expect("dmp cdc status");
    assert_exit(&status, 0);
    let legs: serde_json::Value = serde_json::from_slice(&status.stdout).expect("JSON");
    let names: Vec<&str> = legs
        .as_array()
        .expect("one standing a leg")
        .iter()
        .filter_map(|l| l["pipeline"].as_str())
        .collect();
    assert_eq!(names, [format!("{slot}.a_to_b"), format!("{slot}.b_to_a")]);
    let dropped = dmp(dir)
        .args(["cdc", "drop-slot", "p.toml"])
        .output()
        .expect("dmp cdc drop-slot");
    assert_exit(&dropped, 0);
    for side in [a, b] {
        if side.dialect == Dialect::Postgres {
            let left = side.db.scalar(&format!(
                "SELECT count(*) FROM pg_replication_slots WHERE slot_name LIKE '{slot}%'"
            ));
            assert_eq!(left, "0", "slots left");
        }
    }
}

/// SIGINT: the sync stops between transactions, exit 0.
fn stop(child: Child, dir: &Path) {
    let out = interrupt(child);
    assert!(out.status.success(), "{}\n{}", text(&out.stderr), logs(dir));
}

fn side(db: &TestDb, dialect: Dialect) -> Side<'_> {
    Side { db, dialect }
}

/// A column added on side A reaches side B, and rows written on B with it
/// come back to A.
#[test]
fn a_column_added_on_one_side_is_carried_both_ways() {
    let a_db = postgres().create_database("two_way_ddl_a");
    let b_db = mariadb().create_database("two_way_ddl_b");
    let (a, b) = (
        side(&a_db, Dialect::Postgres),
        side(&b_db, Dialect::Mariadb),
    );
    let dir = tempfile::tempdir().expect("tempdir");
    create_items(&a);
    let mut child = start_sync(dir.path(), &a, &b, "tw_ddl", ("a_to_b", ""), &b);
    a.db.exec("ALTER TABLE items ADD COLUMN extra text; INSERT INTO items VALUES (5001, 'a', 0, 'with extra', 'from a')");
    wait_until(
        dir.path(),
        &mut child,
        "the new column and row on B",
        || {
            b.db.try_scalar("SELECT extra FROM items WHERE id = 5001")
                .ok()
                .as_deref()
                == Some("from a")
        },
    );
    b.db.exec("INSERT INTO items (id, side, n, note, extra) VALUES (5002, 'b', 0, 'with extra', 'from b')");
    wait_until(
        dir.path(),
        &mut child,
        "B's row with the new column on A",
        || {
            a.db.try_scalar("SELECT extra FROM items WHERE id = 5002")
                .ok()
                .as_deref()
                == Some("from b")
        },
    );
    stop(child, dir.path());
    drop_streams(dir.path(), &a, &b, "tw_ddl");
}

/// A MariaDB server two syncs write through (a hub between two
/// PostgreSQL databases): each sync drops only its own writes from the
/// hub's binlog, so a row written at either end reaches the other end
/// through the hub.
#[test]
fn a_mariadb_hub_passes_each_syncs_writes_on_to_the_other() {
    let (one, hub, two) = (
        postgres().create_database("hub_one"),
        mariadb().create_database("hub_mid"),
        postgres().create_database("hub_two"),
    );
    for end in [&one, &two] {
        end.exec(
            "CREATE TABLE t (id bigint PRIMARY KEY, v text); ALTER TABLE t REPLICA IDENTITY FULL;",
        );
    }
    one.exec("INSERT INTO t VALUES (1, 'one'), (2, 'one'), (3, 'one');");
    let rows = |db: &TestDb| super::conflicts::joined_rows(db, "SELECT id, v FROM t ORDER BY id");
    let (dir_one, dir_two) = (
        tempfile::tempdir().expect("dir"),
        tempfile::tempdir().expect("dir"),
    );
    // One → hub, loaded; then hub → two, loaded the other way.
    super::conflicts::sync_pipeline(dir_one.path(), "hub_x", "t", (&one, &hub), "");
    let mut x = start_dmp(dir_one.path(), 0);
    super::conflicts::wait_for(dir_one.path(), &mut x, "sync x", |log| {
        rows(&hub).len() == 3 && legs_streaming(log)
    });
    super::conflicts::sync_pipeline(
        dir_two.path(),
        "hub_y",
        "t",
        (&two, &hub),
        "initial = \"b_to_a\"",
    );
    let mut y = start_dmp(dir_two.path(), 0);
    super::conflicts::wait_for(dir_two.path(), &mut y, "sync y", |log| {
        rows(&two).len() == 3 && legs_streaming(log)
    });
    one.exec("INSERT INTO t VALUES (10, 'from one'); UPDATE t SET v = 'one again' WHERE id = 1;");
    two.exec("INSERT INTO t VALUES (20, 'from two'); DELETE FROM t WHERE id = 2;");
    let want: Vec<String> = ["1:one again", "3:one", "10:from one", "20:from two"]
        .iter()
        .map(ToString::to_string)
        .collect();
    super::conflicts::wait_for(
        dir_two.path(),
        &mut y,
        "both ends' writes everywhere",
        |_| [&one, &hub, &two].iter().all(|db| rows(db) == want),
    );
    for (child, dir) in [(x, &dir_one), (y, &dir_two)] {
        let stopped = interrupt(child);
        assert!(stopped.status.success(), "{}", text(&stopped.stderr));
        super::conflicts::drop_slots(dir.path());
    }
}

/// Side B on PostgreSQL under a role that is not a superuser (it cannot
/// publish a whole schema): the tables the first load creates there are
/// published for the leg back when it starts streaming, after the load,
/// so B's writes from then on reach A (those made during the load do not:
/// the README says so).
#[test]
fn a_first_load_into_postgres_under_a_plain_role_carries_b_writes_back() {
    let a = postgres().create_database("two_way_plain_a");
    let b = postgres().create_database("two_way_plain_b");
    let role = format!("tw_plain_{}", std::process::id());
    b.exec(&format!(
        "CREATE ROLE {role} LOGIN REPLICATION;
         GRANT ALL ON DATABASE \"{db}\" TO {role};
         GRANT ALL ON SCHEMA public TO {role};",
        db = b.name
    ));
    a.exec(
        "CREATE TABLE t (id bigint PRIMARY KEY, v text); ALTER TABLE t REPLICA IDENTITY FULL;
            INSERT INTO t VALUES (1, 'a'), (2, 'a');",
    );
    let b_plain = b.url.replacen("postgres@", &format!("{role}@"), 1);
    let rows = |db: &TestDb| super::conflicts::joined_rows(db, "SELECT id, v FROM t ORDER BY id");
    let dir = tempfile::tempdir().expect("dir");
    pipeline(
        dir.path(),
        "p.toml",
        &format!(
            "[pipeline]\nname = \"tw_plain\"\n[source]\nurl = \"{}\"\n[target]\nurl = \"{b_plain}\"\n\
             [tables]\ninclude = [\"t\"]\n[run]\nmode = \"bidirectional\"\n\
             [cdc]\nslot = \"tw_plain\"\nheartbeat = \"1s\"\n",
            a.url
        ),
    );
    let mut child = start_dmp(dir.path(), 0);
    super::conflicts::wait_for(dir.path(), &mut child, "the first load", |log| {
        rows(&b).len() == 2 && legs_streaming(log)
    });
    b.exec("INSERT INTO t VALUES (3, 'from b'); UPDATE t SET v = 'b' WHERE id = 1;");
    let want: Vec<String> = ["1:b", "2:a", "3:from b"]
        .iter()
        .map(ToString::to_string)
        .collect();
    super::conflicts::wait_for(dir.path(), &mut child, "B's writes on A", |_| {
        rows(&a) == want
    });
    let stopped = interrupt(child);
    assert!(stopped.status.success(), "{}", text(&stopped.stderr));
    super::conflicts::drop_slots(dir.path());
}
