//! `dmp dlq replay`: rows a target or a plugin refused are sent again
//! after the fix, through the current transforms and the target's normal
//! write path; exactly the rows that arrive leave the store.

use std::path::Path;

use dmp_test_servers::{mariadb, postgres};
use rusqlite::Connection;
use rusqlite::types::Value;

use crate::support::sql::{assert_same_dump, sql_pipeline};
use crate::support::{assert_exit, dlq_shown, pipeline, rows, run_dmp, text};
use crate::transform::plugin;

/// `dmp dlq replay FILE --json` with its exit code checked.
fn replay(dir: &Path, file: &str, extra: &[&str], exit: i32) -> serde_json::Value {
    let mut args = vec!["dlq", "replay", file, "--json"];
    args.extend_from_slice(extra);
    let out = run_dmp(dir, &args);
    assert_exit(&out, exit);
    serde_json::from_slice(&out.stdout).expect("replay JSON")
}

const ITEMS: &str = "id integer PRIMARY KEY, d numeric(40,2), b bytea, ts timestamp(6), \
                     tz timestamptz, doc jsonb, note text, v integer NOT NULL";

/// Every value as PostgreSQL prints it, in UTC.
const DUMP: &str = "SET TIME ZONE 'UTC'; SELECT id, d::text, encode(b, 'hex'), ts::text, tz::text, \
                    doc::text, note, note IS NULL, v FROM items ORDER BY id";

#[test]
fn rows_a_check_constraint_refused_arrive_after_it_is_dropped() {
    let dir = tempfile::tempdir().expect("tempdir");
    let source = postgres().create_database("dlq_check_source");
    let target = postgres().create_database("dlq_check_target");
    source.exec(&format!(
        "CREATE TABLE items ({ITEMS});
         INSERT INTO items
         SELECT g,
                CASE WHEN g % 3 = 0 THEN NULL ELSE 123456789012345678901234567890.50 + g END,
                CASE WHEN g % 4 = 0 THEN NULL WHEN g % 4 = 1 THEN ''::bytea ELSE decode('00ff10' || lpad(g::text, 4, '0'), 'hex') END,
                timestamp '2024-02-29 23:59:59.000001' + g * interval '1 day 1 microsecond',
                timestamptz '1999-12-31 23:00:00.000001+00' - g * interval '1 hour',
                CASE WHEN g % 5 = 0 THEN NULL ELSE jsonb_build_object('g', g, 'list', jsonb_build_array(1, 2.5, null), 'ü', '✓') END,
                CASE WHEN g % 2 = 0 THEN '' WHEN g % 7 = 0 THEN NULL ELSE 'note ' || g END,
                g * 10
         FROM generate_series(1, 40) g;"
    ));
    // The target's table exists with a stricter rule than the source.
    target.exec(&format!(
        "CREATE TABLE items ({ITEMS}, CONSTRAINT small_v CHECK (v < 250))"
    ));
    let body = sql_pipeline(&source.url, &target.url, "batch_rows = 7")
        .replace("[run]", "if_exists = \"truncate\"\n[run]");
    pipeline(dir.path(), "p.toml", &body);
    let out = run_dmp(dir.path(), &["run", "p.toml"]);
    assert_exit(&out, 1);
    // Between PostgreSQL servers the rows went as the source's binary
    // tuples; the refused batches were decoded to find the bad rows.
    assert!(
        text(&out.stderr).contains("undecoded"),
        "{}",
        text(&out.stderr)
    );
    assert_eq!(target.scalar("SELECT count(*) FROM items"), "24");
    let letters = dlq_shown(dir.path(), "p.toml");
    assert_eq!(letters.len(), 16, "{letters:?}");
    assert!(
        letters.iter().all(
            |l| l["stage"] == "target" && l["error"].as_str().unwrap_or("").contains("small_v")
        ),
        "{letters:?}"
    );
    // No transforms: no plugin handled these rows.
    assert!(letters.iter().all(|l| l["plugins"] == ""), "{letters:?}");

    // Replayed before the fix: every row fails again and stays.
    let report = replay(dir.path(), "p.toml", &[], 1);
    assert_eq!(report["replayed"], 0, "{report}");
    assert_eq!(report["still_failing"], 16, "{report}");
    assert!(
        report["tables"][0]["errors"][0]
            .as_str()
            .unwrap_or("")
            .contains("small_v"),
        "{report}"
    );
    assert_eq!(dlq_shown(dir.path(), "p.toml").len(), 16);

    // Two rows by number first, then the rest.
    target.exec("ALTER TABLE items DROP CONSTRAINT small_v");
    let first = letters[0]["id"].as_i64().expect("id").to_string();
    let second = letters[1]["id"].as_i64().expect("id").to_string();
    let report = replay(dir.path(), "p.toml", &["--id", &first, &second], 0);
    assert_eq!(report["replayed"], 2, "{report}");
    assert_eq!(dlq_shown(dir.path(), "p.toml").len(), 14);
    let out = run_dmp(dir.path(), &["dlq", "replay", "p.toml"]);
    assert_exit(&out, 0);
    let said = text(&out.stdout);
    assert!(
        said.contains("items") && said.contains("replayed") && said.contains("14"),
        "{said}"
    );
    assert!(dlq_shown(dir.path(), "p.toml").is_empty());

    // Every value arrived as the source has it: decimals, bytes (empty vs
    // NULL), timestamps to the microsecond, JSON, NULL vs empty text.
    let columns = ["id", "d", "b", "ts", "tz", "doc", "note", "null", "v"];
    assert_same_dump(
        &target.query(DUMP),
        &source.query(DUMP),
        &columns,
        "after replay",
    );
    // Nothing left to do: a second replay says so and exits 0.
    let report = replay(dir.path(), "p.toml", &[], 0);
    assert_eq!(report["tables"], serde_json::json!([]), "{report}");
}

fn create_orders(path: &Path) {
    let conn = Connection::open(path).expect("db");
    conn.execute_batch(
        "CREATE TABLE orders (id INTEGER PRIMARY KEY, status TEXT, amount TEXT);
         INSERT INTO orders VALUES (1, 'paid', '250.00'), (2, 'paid', 'abc'), (3, 'paid', '99'),
           (4, 'paid', 'n/a'), (5, NULL, ''), (6, 'shipped', '101');",
    )
    .expect("fill");
}

/// A pipeline stamping every row, then filtering orders by amount (which
/// refuses amounts that are not numbers).
fn orders_pipeline(dir: &Path, target: &str, second: &str) {
    pipeline(
        dir,
        "p.toml",
        &format!(
            r#"[source]
url = "sqlite://source.db"
[target]
url = "{target}"
[[transform]]
plugin = "{stamp}"
[[transform]]
plugin = "{second}"
config = {{ where = "amount > 100" }}
"#,
            stamp = plugin("stamp_v1", false).display(),
        ),
    );
}

#[test]
fn rows_a_plugin_refused_arrive_after_the_plugin_is_swapped() {
    let dir = tempfile::tempdir().expect("tempdir");
    create_orders(&dir.path().join("source.db"));
    let filter = plugin("filter_rows", false);
    orders_pipeline(
        dir.path(),
        "sqlite://target.db",
        &filter.display().to_string(),
    );
    let out = run_dmp(dir.path(), &["run", "p.toml"]);
    assert_exit(&out, 1);
    let target = dir.path().join("target.db");
    let ids = |db: &Path| -> Vec<Value> {
        rows(db, "orders")
            .into_iter()
            .map(|r| r[0].clone())
            .collect()
    };
    assert_eq!(ids(&target), vec![Value::Integer(1), Value::Integer(6)]);
    let letters = dlq_shown(dir.path(), "p.toml");
    assert_eq!(letters.len(), 3, "{letters:?}");
    for letter in &letters {
        assert_eq!(letter["stage"], "transform", "{letter}");
        // The second plugin refused it, but the row kept is the source's
        // (no `stamped_by` yet): replay sends it through the whole chain.
        assert!(letter["row"].get("stamped_by").is_none(), "{letter}");
        let plugins = letter["plugins"].as_str().unwrap_or("");
        assert!(
            plugins.starts_with("stamp_v1@") && plugins.contains(",filter_rows@"),
            "{letter}"
        );
    }
    let out = run_dmp(dir.path(), &["dlq", "show", "p.toml"]);
    assert!(
        text(&out.stdout).contains("plugins: stamp_v1@"),
        "{}",
        text(&out.stdout)
    );

    // The same plugin refuses them again, with the error updated.
    let report = replay(dir.path(), "p.toml", &["--table", "orders"], 1);
    assert_eq!(report["still_failing"], 3, "{report}");

    // Swapped for a plugin that keeps every row: they arrive, stamped by
    // the current chain.
    orders_pipeline(
        dir.path(),
        "sqlite://target.db",
        &plugin("identity", false).display().to_string(),
    );
    let report = replay(dir.path(), "p.toml", &[], 0);
    assert_eq!(report["replayed"], 3, "{report}");
    assert_eq!(report["still_failing"], 0, "{report}");
    assert!(dlq_shown(dir.path(), "p.toml").is_empty());
    let got = rows(&target, "orders");
    let t = |s: &str| Value::Text(s.to_string());
    assert_eq!(got.len(), 5, "{got:?}");
    assert_eq!(
        got[1],
        vec![Value::Integer(2), t("paid"), t("abc"), t("v1")]
    );
    assert_eq!(
        got[2],
        vec![Value::Integer(4), t("paid"), t("n/a"), t("v1")]
    );
    // NULL and the empty string stay apart.
    assert_eq!(got[3], vec![Value::Integer(5), Value::Null, t(""), t("v1")]);
}

#[test]
fn replay_into_files_appends_to_the_change_log() {
    let dir = tempfile::tempdir().expect("tempdir");
    create_orders(&dir.path().join("source.db"));
    let filter = plugin("filter_rows", false);
    orders_pipeline(
        dir.path(),
        "file://out?format=jsonl",
        &filter.display().to_string(),
    );
    assert_exit(&run_dmp(dir.path(), &["run", "p.toml"]), 1);
    let published =
        std::fs::read_to_string(dir.path().join("out/orders.jsonl")).expect("published");
    assert_eq!(published.lines().count(), 2, "{published}");
    orders_pipeline(
        dir.path(),
        "file://out?format=jsonl",
        &plugin("identity", false).display().to_string(),
    );
    let report = replay(dir.path(), "p.toml", &[], 0);
    assert_eq!(report["replayed"], 3, "{report}");
    // A published file is never rewritten: the rows go to the table's
    // change log, as upserts, like an incremental run's.
    assert_eq!(
        std::fs::read_to_string(dir.path().join("out/orders.jsonl")).expect("published"),
        published
    );
    let log =
        std::fs::read_to_string(dir.path().join("out/orders.changes.jsonl")).expect("change log");
    let lines: Vec<serde_json::Value> = log
        .lines()
        .map(|l| serde_json::from_str(l).expect("JSON line"))
        .collect();
    assert_eq!(lines.len(), 3, "{log}");
    assert!(
        lines
            .iter()
            .all(|l| l["_op"] == "insert" && l["stamped_by"] == "v1"),
        "{log}"
    );
    let ids: Vec<i64> = lines.iter().filter_map(|l| l["id"].as_i64()).collect();
    assert_eq!(ids, [2, 4, 5]);
    assert!(dlq_shown(dir.path(), "p.toml").is_empty());
}

#[test]
fn incremental_rows_mariadb_refused_arrive_and_later_runs_go_on() {
    let dir = tempfile::tempdir().expect("tempdir");
    let source = postgres().create_database("dlq_incr_source");
    let target = mariadb().create_database("dlq_incr_target");
    source.exec(
        "CREATE TABLE items (id integer PRIMARY KEY, v integer NOT NULL, label text, deleted boolean NOT NULL DEFAULT false, updated_at bigint NOT NULL);
         INSERT INTO items (id, v, label, updated_at) SELECT g, g * 10, CASE WHEN g % 2 = 0 THEN '' END, g FROM generate_series(1, 10) g;",
    );
    target.exec(
        "CREATE TABLE items (id int PRIMARY KEY, v int NOT NULL, label longtext, deleted tinyint(1) NOT NULL, updated_at bigint NOT NULL, CONSTRAINT small_v CHECK (v < 60))",
    );
    pipeline(
        dir.path(),
        "p.toml",
        &format!(
            "{}[table.items]\ncursor = \"updated_at\"\nsoft_delete = \"deleted\"\n",
            sql_pipeline(
                &source.url,
                &target.url,
                "mode = \"incremental\"\nbatch_rows = 3"
            )
        ),
    );
    assert_exit(&run_dmp(dir.path(), &["run", "p.toml"]), 1);
    assert_eq!(target.scalar("SELECT count(*) FROM items"), "5");
    assert_eq!(dlq_shown(dir.path(), "p.toml").len(), 5);

    target.exec("ALTER TABLE items DROP CONSTRAINT small_v");
    let report = replay(dir.path(), "p.toml", &[], 0);
    assert_eq!(report["replayed"], 5, "{report}");
    let live = "SELECT id, v, label, label IS NULL FROM items WHERE NOT deleted ORDER BY id";
    let columns = ["id", "v", "label", "null"];
    assert_same_dump(
        &target.query("SELECT id, v, label, label IS NULL FROM items ORDER BY id"),
        &source.query(
            &live
                .replace("NOT deleted", "true")
                .replace(", label IS NULL", ", (label IS NULL)::int"),
        ),
        &columns,
        "after replay",
    );
    // The next run goes on from its mark: a soft delete and an update.
    source.exec(
        "UPDATE items SET deleted = true, updated_at = 20 WHERE id = 7;
         UPDATE items SET v = 1, updated_at = 21 WHERE id = 9;",
    );
    assert_exit(&run_dmp(dir.path(), &["run", "p.toml"]), 0);
    assert_same_dump(
        &target.query("SELECT id, v, label, label IS NULL FROM items ORDER BY id"),
        &source.query(&live.replace(", label IS NULL", ", (label IS NULL)::int")),
        &columns,
        "after the next run",
    );
}

#[test]
fn rows_of_batches_a_later_plugin_failed_on_are_kept_as_the_source_had_them() {
    let dir = tempfile::tempdir().expect("tempdir");
    create_orders(&dir.path().join("source.db"));
    let chain = |second: &str, config: &str| {
        pipeline(
            dir.path(),
            "p.toml",
            &format!(
                "[source]\nurl = \"sqlite://source.db\"\n[target]\nurl = \"sqlite://target.db\"\n\
                 [[transform]]\nplugin = \"{}\"\n[[transform]]\nplugin = \"{second}\"\nconfig = {config}\n\
                 [run]\nbatch_rows = 4\n",
                plugin("stamp_v2", false).display(),
            ),
        );
    };
    chain(
        &plugin("hostile", false).display().to_string(),
        "{ mode = \"refuse\" }",
    );
    assert_exit(&run_dmp(dir.path(), &["run", "p.toml"]), 1);
    let letters = dlq_shown(dir.path(), "p.toml");
    assert_eq!(letters.len(), 6, "{letters:?}");
    for letter in &letters {
        let error = letter["error"].as_str().unwrap_or("");
        assert!(
            error.contains("hostile plugin refuses this batch"),
            "{letter}"
        );
        // The whole batch failed in the second plugin; each row is kept in
        // the source's columns, not the first plugin's output.
        assert!(letter["row"].get("stamped_by").is_none(), "{letter}");
        assert!(letter["row"].get("amount").is_some(), "{letter}");
        assert!(
            letter["plugins"]
                .as_str()
                .is_some_and(|p| p.starts_with("stamp_v2@") && p.contains(",hostile@")),
            "{letter}"
        );
    }
    chain(&plugin("identity", false).display().to_string(), "{}");
    let report = replay(dir.path(), "p.toml", &[], 0);
    assert_eq!(report["replayed"], 6, "{report}");
    let got = rows(&dir.path().join("target.db"), "orders");
    assert_eq!(got.len(), 6, "{got:?}");
    assert!(
        got.iter().all(|r| r[3] == Value::Text("v2".into())),
        "{got:?}"
    );
    assert!(dlq_shown(dir.path(), "p.toml").is_empty());
}

#[test]
fn a_row_with_json_nested_200_deep_keeps_its_text_in_the_dead_letters() {
    let dir = tempfile::tempdir().expect("tempdir");
    let source = postgres().create_database("dlq_deep_source");
    let target = postgres().create_database("dlq_deep_target");
    // serde_json holds documents up to 128 levels deep.
    let deep = format!("{}1{}", "[".repeat(200), "]".repeat(200));
    source.exec(&format!(
        "CREATE TABLE docs (id integer PRIMARY KEY, doc jsonb);
         INSERT INTO docs VALUES (1, '[1]'), (2, '{deep}'), (3, '{{\"a\": 3}}');"
    ));
    target.exec(
        "CREATE TABLE docs (id integer PRIMARY KEY, doc jsonb, CONSTRAINT not_two CHECK (id <> 2))",
    );
    let body = sql_pipeline(&source.url, &target.url, "")
        .replace("[run]", "if_exists = \"truncate\"\n[run]");
    pipeline(dir.path(), "p.toml", &body);
    let out = run_dmp(dir.path(), &["run", "p.toml"]);
    assert_exit(&out, 1);
    assert_eq!(target.scalar("SELECT count(*) FROM docs"), "2");

    let letters = dlq_shown(dir.path(), "p.toml");
    assert_eq!(letters.len(), 1, "{letters:?}");
    // Kept as its text: PostgreSQL prints jsonb arrays without spaces.
    let kept = letters[0]["row"].as_str().unwrap_or_default();
    assert_eq!(kept, format!("{{\"id\":2,\"doc\":{deep}}}"), "{letters:?}");
    let listed = run_dmp(dir.path(), &["dlq", "list", "p.toml"]);
    assert_exit(&listed, 0);
    assert!(
        text(&listed.stdout).contains("docs"),
        "{}",
        text(&listed.stdout)
    );
}
