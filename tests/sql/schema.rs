//! A schema with foreign keys, composite keys, a table without a key,
//! reserved and unicode names migrates PostgreSQL → MariaDB → PostgreSQL;
//! each target enforces the foreign keys it received. `--schema-only` and
//! `--data-only` split the two halves of a migration.

use dmp_test_servers::{TestDb, mariadb, postgres};

use crate::support::sql::{assert_same_dump, dump, scalar_i64, sql_pipeline};
use crate::support::{assert_exit, pipeline, run_dmp, text};

const SHOP: &str = r#"
CREATE TABLE "Customer" ("Id" integer PRIMARY KEY, "Name" text NOT NULL, email varchar(100) UNIQUE,
                         status varchar(10) NOT NULL DEFAULT 'new');
CREATE TABLE "order" (id integer, line integer, "Customer" integer NOT NULL
                      REFERENCES "Customer" ("Id") ON DELETE CASCADE,
                      "select" text DEFAULT 'x', amount numeric(12,2) NOT NULL DEFAULT 0,
                      PRIMARY KEY (id, line));
CREATE INDEX order_by_customer ON "order" ("Customer");
CREATE TABLE order_note (order_id integer, order_line integer, note text,
                         CONSTRAINT note_order FOREIGN KEY (order_id, order_line) REFERENCES "order" (id, line));
CREATE TABLE "Ünïcödé" (k text PRIMARY KEY, v integer);
CREATE TABLE log_lines (at timestamp, msg text);
CREATE VIEW big_orders AS SELECT * FROM "order" WHERE amount > 100;
INSERT INTO "Customer" SELECT g, 'name ' || g, 'c' || g || '@example.com', 'new' FROM generate_series(1, 300) g;
INSERT INTO "order" SELECT g / 3, g % 3, 1 + g % 300, 's' || g, g * 1.25 FROM generate_series(3, 2999) g;
INSERT INTO order_note SELECT g / 3, g % 3, 'note ' || g FROM generate_series(3, 2999, 7) g;
INSERT INTO order_note VALUES (NULL, NULL, 'no order');
INSERT INTO "Ünïcödé" VALUES ('ä', 1), ('A', 2), ('a', 3), ('a ', 4), ('😀', 5);
INSERT INTO log_lines SELECT '2024-01-01'::timestamp + g * interval '1 second', 'same line' FROM generate_series(1, 50) g;
INSERT INTO log_lines SELECT '2024-01-01', 'same line' FROM generate_series(1, 5);
"#;

const DUMPS: &[(&str, &str)] = &[
    (
        "Customer",
        "SELECT \"Id\", \"Name\", email, status FROM \"Customer\" ORDER BY 1",
    ),
    (
        "order",
        "SELECT id, line, \"Customer\", \"select\", amount FROM \"order\" ORDER BY 1, 2",
    ),
    (
        "order_note",
        "SELECT order_id, order_line, note FROM order_note ORDER BY 3",
    ),
    ("Ünïcödé", "SELECT k, v FROM \"Ünïcödé\" ORDER BY v"),
    (
        "log_lines",
        "SELECT at, msg, count(*) FROM log_lines GROUP BY at, msg ORDER BY 1",
    ),
];

/// The same dumps in MariaDB's dialect.
fn mariadb_sql(sql: &str) -> String {
    sql.replace('"', "`")
}

fn migrate(dir: &std::path::Path, file: &str, source: &TestDb, target: &TestDb, flags: &[&str]) {
    pipeline(
        dir,
        file,
        &sql_pipeline(
            &source.url,
            &target.url,
            "chunk_rows = 500\nbatch_rows = 200",
        ),
    );
    let mut args = vec!["run", file];
    args.extend_from_slice(flags);
    let out = run_dmp(dir, &args);
    assert_exit(&out, 0);
    assert!(
        !text(&out.stdout).contains("big_orders"),
        "views are not copied"
    );
}

#[test]
fn foreign_keys_and_odd_names_migrate_both_ways() {
    let dir = tempfile::tempdir().expect("tempdir");
    let origin = postgres().create_database("shop_origin");
    origin.exec(SHOP);
    let middle = mariadb().create_database("shop_middle");
    let back = postgres().create_database("shop_back");
    migrate(dir.path(), "there.toml", &origin, &middle, &[]);
    migrate(dir.path(), "back.toml", &middle, &back, &[]);
    // Where each source's change log stood at its snapshot is recorded
    // (change data capture starts there).
    let store = dmp::state::StateStore::open(&dir.path().join(".dmp/state.db")).expect("state");
    let position = |p: &str| {
        store
            .snapshot_position(p)
            .expect("read")
            .unwrap_or_default()
    };
    assert!(
        position("there").starts_with("lsn="),
        "{}",
        position("there")
    );
    assert!(
        position("back").starts_with("file="),
        "{}",
        position("back")
    );
    assert!(position("back").contains(" gtid="), "{}", position("back"));
    drop(store);

    for (table, sql) in DUMPS {
        let original = dump(&origin, sql);
        assert_same_dump(
            &original,
            &dump(&back, sql),
            &[],
            &format!("{table} back in PostgreSQL"),
        );
        let in_mariadb = dump(&middle, &mariadb_sql(sql));
        assert_eq!(original.len(), in_mariadb.len(), "{table} rows in MariaDB");
    }
    // Keys, indexes and both foreign keys arrived, and are enforced.
    assert_eq!(
        scalar_i64(
            &middle,
            "SELECT count(*) FROM information_schema.REFERENTIAL_CONSTRAINTS WHERE CONSTRAINT_SCHEMA = DATABASE()"
        ),
        2
    );
    assert_eq!(
        scalar_i64(
            &back,
            "SELECT count(*) FROM pg_constraint WHERE contype = 'f' AND convalidated"
        ),
        2
    );
    assert_eq!(
        scalar_i64(
            &back,
            "SELECT count(*) FROM pg_indexes WHERE indexname = 'order_by_customer'"
        ),
        1
    );
    assert_eq!(
        scalar_i64(
            &middle,
            "SELECT count(*) FROM information_schema.STATISTICS WHERE TABLE_SCHEMA = DATABASE() AND INDEX_NAME = 'order_by_customer'"
        ),
        1
    );
    assert!(
        back.try_exec("INSERT INTO order_note VALUES (999999, 1, 'dangling')")
            .is_err()
    );
    assert!(
        middle
            .try_exec("INSERT INTO order_note VALUES (999999, 1, 'dangling')")
            .is_err()
    );
    // Unique and NOT NULL + constant default came along.
    assert!(
        back.try_exec("INSERT INTO \"Customer\" VALUES (1000, 'x', 'c1@example.com')")
            .is_err()
    );
    back.exec("INSERT INTO \"Customer\" (\"Id\", \"Name\") VALUES (1001, 'defaulted')");
    assert_eq!(
        back.scalar("SELECT status FROM \"Customer\" WHERE \"Id\" = 1001"),
        "new"
    );
    // The view stayed behind.
    assert_eq!(
        scalar_i64(
            &back,
            "SELECT count(*) FROM information_schema.tables WHERE table_name = 'big_orders'"
        ),
        0
    );
}

#[test]
fn schema_only_then_data_only() {
    let dir = tempfile::tempdir().expect("tempdir");
    let origin = postgres().create_database("split_origin");
    origin.exec(SHOP);
    let target = mariadb().create_database("split_target");
    migrate(dir.path(), "p.toml", &origin, &target, &["--schema-only"]);
    assert_eq!(scalar_i64(&target, "SELECT count(*) FROM `order`"), 0);
    assert_eq!(
        scalar_i64(
            &target,
            "SELECT count(*) FROM information_schema.REFERENTIAL_CONSTRAINTS WHERE CONSTRAINT_SCHEMA = DATABASE()"
        ),
        2
    );
    // Rows now, into the existing tables, foreign keys on: dmp must load
    // them without tripping over the order of the tables.
    migrate(dir.path(), "p.toml", &origin, &target, &["--data-only"]);
    for (table, sql) in DUMPS {
        assert_eq!(
            dump(&origin, sql).len(),
            dump(&target, &mariadb_sql(sql)).len(),
            "{table} rows"
        );
    }
    // A data-only run into a database without the tables says which one.
    let empty = postgres().create_database("split_empty");
    pipeline(
        dir.path(),
        "q.toml",
        &sql_pipeline(&origin.url, &empty.url, ""),
    );
    let out = run_dmp(dir.path(), &["run", "q.toml", "--data-only"]);
    assert_exit(&out, 2);
    assert!(
        text(&out.stderr).contains("Customer"),
        "{}",
        text(&out.stderr)
    );
}

/// A database error at run time names the database (not the pipeline
/// file's line, which is for configuration mistakes), says the server's
/// message and detail once, and no source-file line of the server's.
#[test]
fn runtime_errors_name_the_database_and_say_each_cause_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let source = postgres().create_database("err_source");
    source.exec(
        "CREATE TABLE t (id integer PRIMARY KEY, code text UNIQUE); INSERT INTO t VALUES (1, 'A')",
    );
    // The target's table has no unique index and a row of the same code:
    // appending succeeds, building the index cannot.
    let target = postgres().create_database("err_target");
    target.exec(
        "CREATE TABLE t (id integer PRIMARY KEY, code text); INSERT INTO t VALUES (1000, 'A')",
    );
    pipeline(
        dir.path(),
        "p.toml",
        &format!(
            "[source]\nurl = \"{}\"\n[target]\nurl = \"{}\"\nif_exists = \"append\"\n",
            source.url, target.url
        ),
    );
    let out = run_dmp(dir.path(), &["run", "p.toml"]);
    assert_exit(&out, 3);
    let error = text(&out.stderr)
        .lines()
        .find(|l| l.starts_with("error: "))
        .unwrap_or_default()
        .to_string();
    assert!(
        error.contains("creating index t_code_key on table t"),
        "{error}"
    );
    assert!(error.contains("Key (code)=(A) is duplicated"), "{error}");
    assert!(error.contains("/err_target"), "{error}");
    assert!(!error.contains("p.toml"), "{error}");
    assert!(!error.contains(" at line "), "{error}");
    assert_eq!(
        error.matches("could not create unique index").count(),
        1,
        "{error}"
    );

    // A connection error says which URL it came from, once.
    pipeline(
        dir.path(),
        "q.toml",
        &format!(
            "[source]\nurl = \"{}\"\n[target]\nurl = \"sqlite://q.db\"\n",
            source.url.replace("err_source", "no_such_database")
        ),
    );
    let out = run_dmp(dir.path(), &["run", "q.toml"]);
    // A database the server does not have is a setting to change.
    assert_exit(&out, 2);
    let error = text(&out.stderr);
    assert!(error.contains("(q.toml:2 source.url)"), "{error}");
    assert!(error.contains("database \"no_such_database"), "{error}");
    assert_eq!(error.matches("does not exist").count(), 1, "{error}");
    assert!(!error.contains(" at line "), "{error}");
}

/// Each table's phase is kept with the run: done, or failed with the
/// reason (here: duplicate keys, found when the key is built after the
/// load), for anyone reading the run later.
#[test]
fn table_phases_are_kept_with_the_run() {
    let target = postgres().create_database("phases");
    let dir = tempfile::tempdir().expect("tempdir");
    let input = dir.path().join("in");
    std::fs::create_dir_all(&input).expect("input folder");
    for (table, ids) in [("ok", [1, 2, 3]), ("dup", [1, 2, 2])] {
        let rows: String = ids
            .iter()
            .map(|id| format!("{{\"id\": {id}, \"v\": \"row {id}\"}}\n"))
            .collect();
        std::fs::write(input.join(format!("{table}.jsonl")), rows).expect("rows");
        let schema = format!(
            r#"{{"name": "{table}", "columns": [{{"name": "id", "type": "int64"}}, {{"name": "v", "type": "text"}}], "primary_key": ["id"]}}"#
        );
        std::fs::write(input.join(format!("{table}.schema.json")), schema).expect("schema");
    }
    let body = sql_pipeline("file://in?format=jsonl", &target.url, "parallelism = 1");
    pipeline(
        dir.path(),
        "ok.toml",
        &format!("{body}[tables]\ninclude = [\"ok\"]\n"),
    );
    pipeline(
        dir.path(),
        "dup.toml",
        &format!("{body}[tables]\ninclude = [\"dup\"]\n"),
    );
    let ok = run_dmp(dir.path(), &["run", "ok.toml", "--json"]);
    assert_exit(&ok, 0);
    let summary: serde_json::Value = serde_json::from_slice(&ok.stdout).expect("JSON summary");
    assert_eq!(summary["tables"][0]["phase"], "done", "{summary}");
    assert_exit(&run_dmp(dir.path(), &["run", "dup.toml"]), 3);
    let db = rusqlite::Connection::open(dir.path().join(".dmp/state.db")).expect("state db");
    let last_run = |pipeline: &str| -> i64 {
        db.query_row(
            "SELECT max(id) FROM runs WHERE pipeline = ?1",
            [pipeline],
            |r| r.get(0),
        )
        .expect("a run")
    };
    let store = dmp::state::StateStore::open(&dir.path().join(".dmp/state.db")).expect("state");
    let phase = |pipeline: &str, table: &str| {
        let phases = store.table_phases(last_run(pipeline)).expect("phases");
        phases
            .iter()
            .find(|(name, _)| name == table)
            .map(|(_, phase)| phase.clone())
            .unwrap_or_else(|| panic!("no phase for {table}: {phases:?}"))
    };
    assert_eq!(phase("ok", "ok"), dmp::model::TablePhase::Done);
    match phase("dup", "dup") {
        dmp::model::TablePhase::Failed { reason } => {
            assert!(
                reason.contains("dup") || reason.contains("unique"),
                "{reason}"
            );
        }
        other => panic!("dup: {other:?}"),
    }
}

#[test]
fn pipelines_started_together_into_one_new_database_all_prepare_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let source = postgres().create_database("together_source");
    let target = postgres().create_database("together_target");
    for i in 0..5 {
        source.exec(&format!(
            "CREATE TABLE t{i} (id integer PRIMARY KEY); INSERT INTO t{i} SELECT generate_series(1, 100);"
        ));
        pipeline(
            dir.path(),
            &format!("p{i}.toml"),
            &format!(
                "[pipeline]\nname = \"together_{i}\"\n[source]\nurl = \"{}\"\n[target]\nurl = \"{}\"\n[tables]\ninclude = [\"t{i}\"]\n",
                source.url, target.url
            ),
        );
    }
    // All at once: each creates the checkpoint table if it is missing.
    let runs: Vec<_> = (0..5)
        .map(|i| {
            crate::support::dmp(dir.path())
                .args(["run", &format!("p{i}.toml")])
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .expect("dmp starts")
        })
        .collect();
    for run in runs {
        assert_exit(&run.wait_with_output().expect("dmp ends"), 0);
    }
    for i in 0..5 {
        assert_eq!(target.scalar(&format!("SELECT count(*) FROM t{i}")), "100");
    }
}
