//! `dmp verify` on tables of a million rows built independently in
//! PostgreSQL and MariaDB: equal data checksums alike in both, planted
//! differences (a changed value, a deleted row, an extra row, NULL against
//! an empty string) are named exactly, and `--repair` fixes them.

use std::path::Path;

use dmp_test_servers::{mariadb, postgres};

use crate::support::sql::sql_pipeline;
use crate::support::{assert_exit, pipeline, run_dmp, text};

/// Runs `dmp verify FILE ARGS…`, checks its exit code and that its report
/// says each of `says`; gives the report.
pub(crate) fn verified(dir: &Path, file: &str, exit: i32, says: &[&str]) -> String {
    verified_with(dir, &[file], exit, says)
}

fn verified_with(dir: &Path, args: &[&str], exit: i32, says: &[&str]) -> String {
    let mut all = vec!["verify"];
    all.extend_from_slice(args);
    let out = run_dmp(dir, &all);
    assert_exit(&out, exit);
    let report = text(&out.stdout);
    for expected in says {
        assert!(
            report.contains(expected),
            "`dmp {}` should say {expected:?}:\n{report}",
            all.join(" ")
        );
    }
    report
}

const ROWS: i64 = 1_000_000;

#[test]
fn verify_names_planted_differences_in_a_million_rows_and_repairs_them() {
    let dir = tempfile::tempdir().expect("tempdir");
    let source = postgres().create_database("verify_source");
    let target = mariadb().create_database("verify_target");
    // The same rows, computed by each server: scores are binary fractions
    // and balances exact decimals, so both hold identical values.
    source.exec(&format!(
        "CREATE TABLE accounts (id bigint PRIMARY KEY, owner text NOT NULL, balance numeric(14,2),
             opened timestamp, note text, score double precision);
         INSERT INTO accounts SELECT g, 'owner ' || g, (g % 100000) * 0.37,
             timestamp '2020-01-01' + g * interval '1 minute',
             CASE WHEN g % 3 = 0 THEN NULL ELSE 'n' || (g % 97) END, g / 8.0
           FROM generate_series(1, {ROWS}) g;"
    ));
    target.exec(&format!(
        "CREATE TABLE accounts (id bigint PRIMARY KEY, owner varchar(100) NOT NULL,
             balance decimal(14,2), opened datetime(6), note text, score double);
         INSERT INTO accounts SELECT seq, CONCAT('owner ', seq), (seq % 100000) * 0.37,
             '2020-01-01' + INTERVAL seq MINUTE,
             IF(seq % 3 = 0, NULL, CONCAT('n', seq % 97)), seq / 8
           FROM seq_1_to_{ROWS};"
    ));
    pipeline(
        dir.path(),
        "p.toml",
        &sql_pipeline(&source.url, &target.url, ""),
    );
    verified(
        dir.path(),
        "p.toml",
        0,
        &[
            &format!("accounts: equal, {ROWS} rows"),
            "all 1 tables equal",
        ],
    );

    target.exec(
        "UPDATE accounts SET balance = balance + 1 WHERE id = 123457;
         DELETE FROM accounts WHERE id = 500000;
         INSERT INTO accounts VALUES (1000001, 'intruder', 0, NULL, NULL, 0);
         UPDATE accounts SET note = '' WHERE id = 999;",
    );
    let report = verified(
        dir.path(),
        "p.toml",
        1,
        &[
            "accounts: 4 differences: 1 missing in target, 1 extra in target, 2 differing",
            "differs:           id=\"123457\": balance: source \"8679.09\", target \"8680.09\"",
            "missing in target: id=\"500000\"",
            "extra in target:   id=\"1000001\"",
            "differs:           id=\"999\": note: source NULL, target \"\"",
        ],
    );
    assert_eq!(report.matches("    differs:").count(), 2, "{report}");

    // The JSON report names the same rows.
    let out = run_dmp(dir.path(), &["verify", "p.toml", "--json"]);
    assert_exit(&out, 1);
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json report");
    let table = &json["tables"][0];
    assert_eq!(table["status"], "different");
    assert_eq!(table["source_hashing"], "database");
    assert_eq!(table["target_hashing"], "database");
    assert_eq!(table["source_rows"], ROWS);
    let mut kinds: Vec<String> = table["differences"]
        .as_array()
        .expect("differences")
        .iter()
        .map(|d| format!("{} {}", d["kind"], d["key"]["id"]))
        .collect();
    kinds.sort();
    assert_eq!(
        kinds,
        [
            "\"differs\" \"123457\"",
            "\"differs\" \"999\"",
            "\"extra_in_target\" \"1000001\"",
            "\"missing_in_target\" \"500000\""
        ]
    );

    verified_with(
        dir.path(),
        &["p.toml", "--repair"],
        0,
        &[
            "repaired 4 differences: 3 rows written, 1 deleted, 0 refused",
            "accounts: equal",
        ],
    );
    verified(dir.path(), "p.toml", 0, &["all 1 tables equal"]);
    assert_eq!(
        target.scalar("SELECT CONCAT(balance, '|', COALESCE(note, 'NULL'), '|', (SELECT COUNT(*) FROM accounts)) FROM accounts WHERE id = 999"),
        "369.63|NULL|1000000"
    );

    // A sample compares part of the key space, and says so.
    target.exec("DELETE FROM accounts WHERE id = 7");
    let out = run_dmp(
        dir.path(),
        &["verify", "p.toml", "--sample", "50", "--json"],
    );
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json report");
    assert_eq!(json["sample_percent"], 50.0);
    let compared = json["tables"][0]["source_rows"].as_u64().expect("rows");
    assert!(
        compared > 400_000 && compared < 600_000,
        "a 50% sample compared {compared} rows"
    );
}

#[test]
fn files_are_verified_and_repair_is_refused_where_it_cannot_stick() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = rusqlite::Connection::open(dir.path().join("s.db")).expect("sqlite");
    db.execute_batch(
        "CREATE TABLE t (id integer PRIMARY KEY, name text, price real);
         WITH RECURSIVE g(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM g WHERE i < 100)
         INSERT INTO t SELECT i, 'n' || i, i / 3.0 FROM g;",
    )
    .expect("rows");
    pipeline(
        dir.path(),
        "p.toml",
        &sql_pipeline("sqlite://s.db", "file://out?format=csv", ""),
    );
    assert_exit(&run_dmp(dir.path(), &["run", "p.toml"]), 0);
    verified(dir.path(), "p.toml", 0, &["t: equal, 100 rows"]);
    let csv = dir.path().join("out/t.csv");
    let body = std::fs::read_to_string(&csv).expect("csv");
    let body: String = body
        .lines()
        .filter(|l| !l.starts_with("7,"))
        .map(|l| format!("{}\n", l.replace("5,n5,", "5,changed,")))
        .collect();
    std::fs::write(&csv, body).expect("write csv");
    verified(
        dir.path(),
        "p.toml",
        1,
        &[
            "differs:           id=\"5\": name: source \"n5\", target \"changed\"",
            "missing in target: id=\"7\"",
        ],
    );
    let out = run_dmp(dir.path(), &["verify", "p.toml", "--repair"]);
    assert_exit(&out, 2);
    assert!(
        text(&out.stderr).contains("keeps changes in a change log"),
        "{}",
        text(&out.stderr)
    );
}

/// A source column the target lacks is a difference: its values are not
/// there. A column only the target has is not compared.
#[test]
fn a_column_missing_in_the_target_is_a_difference() {
    let dir = tempfile::tempdir().expect("tempdir");
    let source = postgres().create_database("verify_cols_src");
    source.exec(
        "CREATE TABLE t (id integer PRIMARY KEY, a text, b integer); \
         INSERT INTO t SELECT g, 'a' || g, g FROM generate_series(1, 100) g",
    );
    let target = mariadb().create_database("verify_cols_dst");
    pipeline(
        dir.path(),
        "p.toml",
        &sql_pipeline(&source.url, &target.url, ""),
    );
    assert_exit(&run_dmp(dir.path(), &["run", "p.toml"]), 0);
    verified(dir.path(), "p.toml", 0, &["t: equal, 100 rows"]);
    target.exec("ALTER TABLE t DROP COLUMN b, ADD COLUMN extra int");
    let report = verified(
        dir.path(),
        "p.toml",
        1,
        &[
            "t: differs: 1 column(s) missing in target (b)",
            "column missing in target: b",
            "not compared: extra (target only)",
        ],
    );
    assert!(!report.contains("equal"), "{report}");
}
