//! Incremental runs: rows past the cursor mark arrive and are upserted,
//! equal cursor values on batch boundaries are not lost, soft-deleted rows
//! are deleted; `[run] every` repeats the run until stopped.

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use dmp_test_servers::{TestDb, mariadb, postgres};

use crate::support::sql::{assert_same_dump, sql_pipeline};
use crate::support::{assert_exit, dmp, pipeline, run_dmp, text};

const INCREMENTAL: &str = "mode = \"incremental\"\nbatch_rows = 2";
const ITEMS: &str = "[table.items]\ncursor = \"updated_at\"\nsoft_delete = \"deleted\"\n";

/// Live rows of the source (not soft-deleted) as both servers print them.
fn live_rows(db: &TestDb, postgres: bool) -> Vec<Vec<Option<String>>> {
    if postgres {
        db.query("SET TIME ZONE 'UTC'; SELECT id, name, to_char(updated_at, 'YYYY-MM-DD HH24:MI:SS.US') FROM items WHERE NOT deleted ORDER BY id")
    } else {
        db.query("SET time_zone = '+00:00'; SELECT id, name, DATE_FORMAT(updated_at, '%Y-%m-%d %H:%i:%s.%f') FROM items ORDER BY id")
    }
}

fn assert_in_sync(source: &TestDb, target: &TestDb, what: &str) {
    assert_same_dump(
        &live_rows(source, true),
        &live_rows(target, false),
        &["id", "name", "updated_at"],
        what,
    );
}

#[test]
fn incremental_postgres_to_mariadb() {
    let dir = tempfile::tempdir().expect("tempdir");
    let source = postgres().create_database("incr_source");
    let target = mariadb().create_database("incr_target");
    // Five rows share one cursor value: with 2 rows a batch, the value
    // spans batch boundaries.
    source.exec(
        "CREATE TABLE items (id integer PRIMARY KEY, name text NOT NULL, updated_at timestamptz NOT NULL, deleted boolean NOT NULL DEFAULT false);
         INSERT INTO items (id, name, updated_at) SELECT g, 'item ' || g, '2026-03-01 10:00:00+00' FROM generate_series(1, 5) g;
         INSERT INTO items (id, name, updated_at) SELECT g, 'item ' || g, '2026-03-01 09:00:00+00'::timestamptz + g * interval '1 ms' FROM generate_series(6, 9) g;",
    );
    pipeline(
        dir.path(),
        "p.toml",
        &format!(
            "{}{ITEMS}",
            sql_pipeline(&source.url, &target.url, INCREMENTAL)
        ),
    );
    let out = run_dmp(dir.path(), &["run", "p.toml"]);
    assert_exit(&out, 0);
    assert_in_sync(&source, &target, "first run (all rows)");

    // Between runs: new rows (one with the mark's very cursor value and a
    // higher key), updates, a soft delete.
    source.exec(
        "INSERT INTO items (id, name, updated_at) VALUES (10, 'same mark, higher key', '2026-03-01 10:00:00+00'), (11, 'later', '2026-03-02 00:00:00+00');
         UPDATE items SET name = 'renamed', updated_at = '2026-03-02 00:00:01+00' WHERE id IN (2, 7);
         UPDATE items SET deleted = true, updated_at = '2026-03-02 00:00:02+00' WHERE id = 3;",
    );
    let out = run_dmp(dir.path(), &["run", "p.toml", "--json"]);
    assert_exit(&out, 0);
    assert_in_sync(&source, &target, "second run");
    assert_eq!(
        target.scalar("SELECT count(*) FROM items WHERE id = 3"),
        "0",
        "the soft-deleted row is deleted in the target"
    );
    // Only what changed was read: 2 new, 2 updated, 1 soft-deleted.
    let summary: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON summary");
    assert_eq!(summary["rows"], 5, "{summary}");
    let tables = summary["tables"].as_array().expect("tables");
    assert!(tables.iter().all(|t| t["phase"] == "done"), "{summary}");

    // Nothing new: nothing read.
    let out = run_dmp(dir.path(), &["run", "p.toml", "--json"]);
    assert_exit(&out, 0);
    let summary: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON summary");
    assert_eq!(summary["rows"], 0, "{summary}");
}

#[test]
fn incremental_without_cursor_names_the_table() {
    let dir = tempfile::tempdir().expect("tempdir");
    let source = postgres().create_database("incr_nocursor");
    let target = postgres().create_database("incr_nocursor_target");
    source.exec("CREATE TABLE things (id integer PRIMARY KEY, v text)");
    pipeline(
        dir.path(),
        "p.toml",
        &sql_pipeline(&source.url, &target.url, INCREMENTAL),
    );
    let out = run_dmp(dir.path(), &["run", "p.toml"]);
    assert_exit(&out, 2);
    let err = text(&out.stderr);
    assert!(
        err.contains("table things") && err.contains("cursor"),
        "{err}"
    );
}

fn sqlite_exec(path: &Path, sql: &str) {
    rusqlite::Connection::open(path)
        .and_then(|c| c.execute_batch(sql))
        .expect("sqlite");
}

fn sqlite_count(path: &Path, sql: &str) -> i64 {
    rusqlite::Connection::open(path)
        .and_then(|c| c.query_row(sql, [], |r| r.get(0)))
        .unwrap_or(-1)
}

#[test]
fn periodic_incremental_sqlite_runs_until_stopped() {
    let dir = tempfile::tempdir().expect("tempdir");
    let source = dir.path().join("source.db");
    sqlite_exec(
        &source,
        "CREATE TABLE items (id INTEGER PRIMARY KEY, name TEXT, version INTEGER NOT NULL);
         INSERT INTO items VALUES (1, 'a', 1), (2, 'b', 1), (3, 'c', 1);",
    );
    pipeline(
        dir.path(),
        "p.toml",
        "[source]\nurl = \"sqlite://source.db\"\n[target]\nurl = \"sqlite://target.db\"\n\
         [run]\nmode = \"incremental\"\nevery = \"1s\"\n[table.\"*\"]\ncursor = \"version\"\n",
    );
    let child = dmp(dir.path())
        .args(["run", "p.toml"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("dmp starts");
    let target = dir.path().join("target.db");
    let wait_for = |sql: &str, want: i64| {
        let deadline = Instant::now() + Duration::from_secs(30);
        while sqlite_count(&target, sql) != want {
            assert!(Instant::now() < deadline, "`{sql}` never gave {want}");
            std::thread::sleep(Duration::from_millis(100));
        }
    };
    wait_for("SELECT count(*) FROM items", 3);
    sqlite_exec(
        &source,
        "INSERT INTO items VALUES (4, 'd', 2); UPDATE items SET name = 'B', version = 2 WHERE id = 2;",
    );
    wait_for("SELECT count(*) FROM items WHERE name IN ('B', 'd')", 2);
    let pid = child.id().to_string();
    std::process::Command::new("kill")
        .args(["-INT", &pid])
        .status()
        .expect("kill");
    let out = child.wait_with_output().expect("dmp ends");
    assert_exit(&out, 0);
    let log = text(&out.stderr);
    assert!(log.matches("scheduled run finished").count() >= 2, "{log}");
}

#[test]
fn incremental_into_files_writes_a_change_log() {
    let dir = tempfile::tempdir().expect("tempdir");
    let source = dir.path().join("source.db");
    sqlite_exec(
        &source,
        "CREATE TABLE items (id INTEGER PRIMARY KEY, name TEXT, version INTEGER NOT NULL, gone INTEGER NOT NULL DEFAULT 0);
         INSERT INTO items (id, name, version) VALUES (1, 'a', 1), (2, 'b', 1), (3, 'c', 1);",
    );
    pipeline(
        dir.path(),
        "p.toml",
        "[source]\nurl = \"sqlite://source.db\"\n[target]\nurl = \"file://out?format=jsonl\"\n\
         [run]\nmode = \"incremental\"\n[table.items]\ncursor = \"version\"\nsoft_delete = \"gone\"\n",
    );
    assert_exit(&run_dmp(dir.path(), &["run", "p.toml"]), 0);
    sqlite_exec(
        &source,
        "UPDATE items SET name = 'B', version = 2 WHERE id = 2; UPDATE items SET gone = 1, version = 3 WHERE id = 3;",
    );
    assert_exit(&run_dmp(dir.path(), &["run", "p.toml"]), 0);
    let log =
        std::fs::read_to_string(dir.path().join("out/items.changes.jsonl")).expect("change log");
    let lines: Vec<serde_json::Value> = log
        .lines()
        .map(|l| serde_json::from_str(l).expect("JSON line"))
        .collect();
    let ops: Vec<(String, i64)> = lines
        .iter()
        .map(|l| {
            (
                l["_op"].as_str().unwrap_or("?").to_string(),
                l["id"].as_i64().unwrap_or(-1),
            )
        })
        .collect();
    let expected: Vec<(String, i64)> = [
        ("insert", 1),
        ("insert", 2),
        ("insert", 3),
        ("insert", 2),
        ("delete", 3),
    ]
    .iter()
    .map(|(op, id)| ((*op).to_string(), *id))
    .collect();
    assert_eq!(ops, expected, "{log}");
    assert_eq!(lines[3]["name"], "B");
    assert!(lines.iter().all(|l| l["_position"].is_string()), "{log}");
}

#[test]
fn rows_the_target_refuses_are_dead_lettered_and_the_rest_applied() {
    let dir = tempfile::tempdir().expect("tempdir");
    let source = postgres().create_database("incr_bad_source");
    let target = postgres().create_database("incr_bad_target");
    source.exec(
        "CREATE TABLE items (id integer PRIMARY KEY, v integer NOT NULL, updated_at bigint NOT NULL);
         INSERT INTO items SELECT g, g * 10, g FROM generate_series(1, 20) g;",
    );
    // The target exists with a stricter rule than the source.
    target.exec(
        "CREATE TABLE items (id integer PRIMARY KEY, v integer NOT NULL CHECK (v < 150), updated_at bigint NOT NULL)",
    );
    pipeline(
        dir.path(),
        "p.toml",
        &format!(
            "{}[table.items]\ncursor = \"updated_at\"\n",
            sql_pipeline(
                &source.url,
                &target.url,
                "mode = \"incremental\"\nbatch_rows = 8"
            )
        ),
    );
    let out = run_dmp(dir.path(), &["run", "p.toml"]);
    assert_exit(&out, 1);
    assert_eq!(target.scalar("SELECT count(*) FROM items"), "14");
    let letters = crate::support::dead_letters(dir.path(), "p", "items");
    assert_eq!(letters.len(), 6, "{letters:?}");
    assert!(
        letters
            .iter()
            .all(|(_, error)| error.contains("check constraint")),
        "{letters:?}"
    );

    // `dmp dlq` shows them and purges them.
    let out = run_dmp(dir.path(), &["dlq", "list", "p.toml", "--json"]);
    assert_exit(&out, 0);
    let groups: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(groups[0]["table"], "items", "{groups}");
    assert_eq!(groups[0]["stage"], "target", "{groups}");
    assert_eq!(groups[0]["rows"], 6, "{groups}");
    let out = run_dmp(
        dir.path(),
        &["dlq", "show", "p.toml", "--json", "--limit", "2"],
    );
    assert_exit(&out, 0);
    let shown: Vec<serde_json::Value> = text(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("JSON line"))
        .collect();
    assert_eq!(shown.len(), 2);
    assert_eq!(shown[0]["row"]["v"], 150, "{shown:?}");
    let first = shown[0]["id"].as_i64().expect("id").to_string();
    let out = run_dmp(dir.path(), &["dlq", "purge", "p.toml"]);
    assert_exit(&out, 2);
    let out = run_dmp(dir.path(), &["dlq", "purge", "p.toml", "--id", &first]);
    assert_exit(&out, 0);
    assert_eq!(
        crate::support::dead_letters(dir.path(), "p", "items").len(),
        5
    );
    let out = run_dmp(dir.path(), &["dlq", "purge", "p.toml", "--table", "items"]);
    assert_exit(&out, 0);
    assert!(crate::support::dead_letters(dir.path(), "p", "items").is_empty());
}

#[test]
fn incremental_mariadb_to_postgres() {
    let dir = tempfile::tempdir().expect("tempdir");
    let source = mariadb().create_database("incr_my_source");
    let target = postgres().create_database("incr_my_target");
    source.exec(
        "CREATE TABLE items (id int PRIMARY KEY, name varchar(50) NOT NULL, updated_at datetime(6) NOT NULL, deleted tinyint(1) NOT NULL DEFAULT 0);
         INSERT INTO items (id, name, updated_at) SELECT seq, CONCAT('item ', seq), '2026-03-01 10:00:00' FROM seq_1_to_7;",
    );
    pipeline(
        dir.path(),
        "p.toml",
        &format!(
            "{}{ITEMS}",
            sql_pipeline(&source.url, &target.url, INCREMENTAL)
        ),
    );
    let rows = |db: &TestDb| db.query("SELECT id, name FROM items ORDER BY id");
    assert_exit(&run_dmp(dir.path(), &["run", "p.toml"]), 0);
    assert_eq!(rows(&target), rows(&source), "first run");
    source.exec(
        "INSERT INTO items (id, name, updated_at) VALUES (8, 'tie', '2026-03-01 10:00:00');
         UPDATE items SET name = 'renamed', updated_at = '2026-03-02 00:00:00' WHERE id = 2;
         UPDATE items SET deleted = 1, updated_at = '2026-03-02 00:00:01' WHERE id = 3;",
    );
    assert_exit(&run_dmp(dir.path(), &["run", "p.toml"]), 0);
    assert_eq!(
        rows(&target),
        source.query("SELECT id, name FROM items WHERE deleted = 0 ORDER BY id"),
        "second run"
    );

    // A column added between runs reaches the target before the rows that
    // carry it: with its default in the rows there, set where updated.
    source.exec(
        "ALTER TABLE items ADD COLUMN qty int DEFAULT 5;
         UPDATE items SET qty = 9, updated_at = '2026-03-03 00:00:00' WHERE id = 4;",
    );
    assert_exit(&run_dmp(dir.path(), &["run", "p.toml"]), 0);
    let with_qty = "SELECT id, name, qty FROM items WHERE id <> 3 ORDER BY id";
    assert_eq!(target.query(with_qty), source.query(with_qty), "third run");
    // A rename stops the run (additive by default), naming it.
    source.exec("ALTER TABLE items RENAME COLUMN qty TO quantity");
    let out = run_dmp(dir.path(), &["run", "p.toml"]);
    assert_exit(&out, 4);
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("qty") && stderr.contains("quantity"),
        "{stderr}"
    );
}
