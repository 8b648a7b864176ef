//! Schema evolution while streaming, under the concurrent workload: a
//! column added with a default (and set by later updates), a varchar
//! widened, a table created, all carried to the target in stream order;
//! then a column renamed, which stops the stream with the statement, the
//! table and the way on (`schema_changes = "additive"`, the default), and
//! which `schema_changes = "apply"` carries. After each step the target
//! equals the source and `dmp verify` passes. Sources: PostgreSQL, MariaDB
//! with its default `binlog_row_metadata` (NO_LOG: rows by position) and
//! with FULL (rows by name).

use std::path::Path;
use std::time::{Duration, Instant};

use dmp_test_servers::{TestDb, mariadb, own_mariadb, postgres};

use super::cdc::{interrupt, own_stderr, seed, spawn_run};
use crate::support::sql::{assert_same_dump, sql_pipeline};
use crate::support::workload::{self, Dialect};
use crate::support::{assert_exit, pipeline, run_dmp, text};

fn write_pipeline(dir: &Path, source: &TestDb, target: &TestDb, slot: &str, policy: &str) {
    pipeline(
        dir,
        "p.toml",
        &format!(
            "{}[cdc]\nslot = \"{slot}\"\nheartbeat = \"1s\"\n{policy}",
            sql_pipeline(
                &source.url,
                &target.url,
                "mode = \"full+cdc\"\nbatch_rows = 300\nchunk_rows = 700\nparallelism = 2"
            )
        ),
    );
}

/// The tables compared, as the same text on both servers.
fn dumps(items_label: &str) -> Vec<(&'static str, String)> {
    vec![
        (
            "accounts",
            "SELECT id, owner, balance, n, tier FROM accounts ORDER BY id".to_string(),
        ),
        (
            "events",
            "SELECT id, account, kind, amount FROM events ORDER BY id".to_string(),
        ),
        (
            "items",
            format!("SELECT id, {items_label}, qty FROM items ORDER BY id"),
        ),
        (
            "extra",
            "SELECT id, note FROM extra ORDER BY id".to_string(),
        ),
    ]
}

/// Waits until every table of `target` equals the source's, or fails with
/// the first difference (or dmp's log if it ended).
fn wait_in_sync(
    child: &mut std::process::Child,
    source: &TestDb,
    target: &TestDb,
    items_label: &str,
) {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            panic!(
                "dmp ended while streaming ({status}):\n{}",
                own_stderr(child)
            );
        }
        let pairs: Vec<_> = dumps(items_label)
            .into_iter()
            .map(|(table, sql)| {
                let want = source.query(&sql);
                let got = target.try_query(&sql).unwrap_or_default();
                (table, want, got)
            })
            .collect();
        if pairs.iter().all(|(_, want, got)| want == got) {
            return;
        }
        if Instant::now() > deadline {
            for (table, want, got) in &pairs {
                assert_same_dump(want, got, &[], table);
            }
        }
        std::thread::sleep(Duration::from_millis(300));
    }
}

fn verify_equal(dir: &Path) {
    let out = run_dmp(dir, &["verify", "p.toml"]);
    assert_exit(&out, 0);
}

/// `rows_named`: the source's row events name their columns (PostgreSQL,
/// MariaDB with FULL row metadata). Without names, a stream restarted after
/// a rename reads the table's columns by place under the catalog's names:
/// it meets the rename at the table's first rows, from the catalog, rather
/// than at the statement (so it stops a little earlier, with no statement
/// to show).
fn evolve_while_streaming(
    from: Dialect,
    source: &TestDb,
    target: &TestDb,
    slot: &str,
    rows_named: bool,
) {
    let dir = tempfile::tempdir().expect("tempdir");
    workload::create_tables(source, from);
    source.exec(
        "CREATE TABLE items (id int PRIMARY KEY, label varchar(20), qty int); \
         INSERT INTO items VALUES (1, 'one', 1), (2, 'two', 2), (3, NULL, 3)",
    );
    let (alter_column, widen) = match from {
        Dialect::Postgres => (
            "ALTER TABLE",
            "ALTER TABLE items ALTER COLUMN label TYPE varchar(60)",
        ),
        Dialect::Mariadb => ("ALTER TABLE", "ALTER TABLE items MODIFY label varchar(60)"),
    };
    write_pipeline(dir.path(), source, target, slot, "");
    let seed = seed();
    let writers = workload::start(source, from, 200, seed, 0);
    let mut child = spawn_run(dir.path());
    // While the workload writes and the snapshot is copied or streamed;
    // single-row updates, which may wait for the workload's locks but not
    // deadlock with it.
    let tiers: String = (0..20)
        .map(|i| format!("UPDATE accounts SET tier = 3 WHERE id = {};", 10 * i + 1))
        .collect();
    source.exec(&format!(
        "{alter_column} accounts ADD COLUMN tier int DEFAULT 7; {tiers} \
         {widen}; \
         INSERT INTO items VALUES (4, 'a label of forty characters, give or take', 4); \
         UPDATE items SET label = 'now much longer than twenty' WHERE id = 1; \
         CREATE TABLE extra (id int PRIMARY KEY, note varchar(30) DEFAULT 'x'); \
         INSERT INTO extra (id) VALUES (1), (2); INSERT INTO extra VALUES (3, 'three')"
    ));
    for writer in writers {
        writer.join().expect("workload session");
    }
    wait_in_sync(&mut child, source, target, "label");
    let out = interrupt(child);
    assert_exit(&out, 0);
    verify_equal(dir.path());
    // Cut-over: the target's own counter continues past the keys the
    // stream inserted.
    let before: i64 = target
        .scalar("SELECT max(id) FROM events")
        .parse()
        .expect("max id");
    target.exec("INSERT INTO events (account, kind) VALUES (1, 'cut-over')");
    let next: i64 = target
        .scalar("SELECT id FROM events WHERE kind = 'cut-over'")
        .parse()
        .expect("new id");
    assert!(
        next > before,
        "the target's counter gave {next}, at or below {before}"
    );
    target.exec("DELETE FROM events WHERE kind = 'cut-over'");

    // A rename stops the stream by default, with what and how to go on;
    // the target keeps every change before it.
    source.exec(
        "INSERT INTO items VALUES (5, 'before the rename', 5); \
         ALTER TABLE items RENAME COLUMN label TO title; \
         INSERT INTO items VALUES (6, 'after the rename', 6)",
    );
    let out = run_dmp(dir.path(), &["run", "p.toml"]);
    assert_exit(&out, 4);
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("table items: column label was renamed to title at the source"),
        "{stderr}"
    );
    assert!(stderr.contains("schema_changes = \"apply\""), "{stderr}");
    if from == Dialect::Mariadb && rows_named {
        assert!(
            stderr.contains("`ALTER TABLE items RENAME COLUMN label TO title`"),
            "{stderr}"
        );
    }
    if rows_named {
        assert_eq!(
            target.scalar("SELECT label FROM items WHERE id = 5"),
            "before the rename"
        );
    }

    // `apply` carries it.
    write_pipeline(
        dir.path(),
        source,
        target,
        slot,
        "schema_changes = \"apply\"\n",
    );
    let writers = workload::start(source, from, 30, seed + 1, 1);
    let mut child = spawn_run(dir.path());
    for writer in writers {
        writer.join().expect("workload session");
    }
    wait_in_sync(&mut child, source, target, "title");
    let out = interrupt(child);
    assert_exit(&out, 0);
    verify_equal(dir.path());
}

#[test]
fn postgres_schema_changes_reach_mariadb_while_streaming() {
    let source = postgres().create_database("evolve_pg_src");
    let target = mariadb().create_database("evolve_pg_dst");
    evolve_while_streaming(Dialect::Postgres, &source, &target, "dmp_evolve_pg", true);
}

#[test]
fn mariadb_schema_changes_reach_postgres_with_full_row_metadata() {
    let source = mariadb().create_database("evolve_full_src");
    let target = postgres().create_database("evolve_full_dst");
    evolve_while_streaming(Dialect::Mariadb, &source, &target, "unused", true);
}

#[test]
fn mariadb_schema_changes_reach_postgres_with_default_row_metadata() {
    // MariaDB's default: row events carry no column names.
    let server = own_mariadb();
    let admin = server.create_database("evolve_admin");
    admin.exec("SET GLOBAL binlog_row_metadata = 'NO_LOG'");
    let source = server.create_database("evolve_nolog_src");
    let target = postgres().create_database("evolve_nolog_dst");
    evolve_while_streaming(Dialect::Mariadb, &source, &target, "unused", false);
}
