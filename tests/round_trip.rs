//! Whole pipelines whose output must equal their input exactly: SQLite to
//! SQLite, and SQLite through CSV, JSON Lines and Parquet back to SQLite.

use std::path::Path;

use rusqlite::Connection;

use crate::support::{
    assert_exit, assert_same_rows, columns, create_every_type_db, dead_letters, pipeline, rows,
    run_dmp, tables, text,
};

fn indexes(db: &Path) -> Vec<(String, String)> {
    let conn = Connection::open(db).expect("open");
    let mut stmt = conn
        .prepare("SELECT name, tbl_name FROM sqlite_schema WHERE type = 'index' AND name NOT LIKE 'sqlite_%' ORDER BY name")
        .expect("prepare");
    stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .expect("query")
        .collect::<rusqlite::Result<_>>()
        .expect("rows")
}

/// Every table of `a` is in `b` with the same columns, types and rows.
pub fn assert_same_database(a: &Path, b: &Path) {
    let names = tables(a);
    assert_eq!(names, tables(b), "table lists differ");
    for table in &names {
        assert_eq!(columns(a, table), columns(b, table), "columns of {table}");
        assert_same_rows(&rows(a, table), &rows(b, table), table);
    }
    assert_eq!(indexes(a), indexes(b), "indexes");
}

#[test]
fn sqlite_to_sqlite_keeps_every_value() {
    let dir = tempfile::tempdir().expect("tempdir");
    create_every_type_db(&dir.path().join("source.db"));
    pipeline(
        dir.path(),
        "p.toml",
        "[source]\nurl = \"sqlite://source.db\"\n[target]\nurl = \"sqlite://target.db\"\n[run]\nbatch_rows = 2\nchunk_rows = 2\nparallelism = 3\n",
    );
    let out = run_dmp(dir.path(), &["run", "p.toml"]);
    assert_exit(&out, 0);
    assert!(
        text(&out.stdout).contains("every_type"),
        "{}",
        text(&out.stdout)
    );
    assert_same_database(&dir.path().join("source.db"), &dir.path().join("target.db"));

    // A second run of a finished pipeline starts anew and replaces the tables.
    let out = run_dmp(dir.path(), &["run", "p.toml"]);
    assert_exit(&out, 0);
    assert_same_database(&dir.path().join("source.db"), &dir.path().join("target.db"));
}

fn through_files(format: &str) {
    let dir = tempfile::tempdir().expect("tempdir");
    create_every_type_db(&dir.path().join("source.db"));
    pipeline(
        dir.path(),
        "out.toml",
        &format!(
            "[source]\nurl = \"sqlite://source.db\"\n[target]\nurl = \"file://files?format={format}\"\n[run]\nbatch_rows = 3\n"
        ),
    );
    pipeline(
        dir.path(),
        "back.toml",
        &format!(
            "[source]\nurl = \"file://files?format={format}\"\n[target]\nurl = \"sqlite://back.db\"\n[run]\nbatch_rows = 3\n"
        ),
    );
    assert_exit(&run_dmp(dir.path(), &["run", "out.toml"]), 0);
    let files = dir.path().join("files");
    for table in ["every_type", "empty_table", "no_pk", "Mixed Case"] {
        assert!(
            files.join(format!("{table}.{format}")).is_file(),
            "{table}.{format} missing"
        );
        assert!(
            files.join(format!("{table}.schema.json")).is_file(),
            "{table}.schema.json missing"
        );
        assert!(
            !files
                .join(format!(".{table}.{format}.dmp-partial"))
                .exists(),
            "partial file left"
        );
    }
    assert_exit(&run_dmp(dir.path(), &["run", "back.toml"]), 0);
    assert_same_database(&dir.path().join("source.db"), &dir.path().join("back.db"));
}

#[test]
fn round_trip_through_jsonl() {
    through_files("jsonl");
}

#[test]
fn round_trip_through_csv() {
    through_files("csv");
}

#[test]
fn round_trip_through_parquet() {
    through_files("parquet");
}

#[test]
fn csv_without_schema_is_inferred_and_bad_rows_are_dead_lettered() {
    let dir = tempfile::tempdir().expect("tempdir");
    let files = dir.path().join("in");
    std::fs::create_dir(&files).expect("mkdir");
    let mut csv = "id,name,amount,signed_up\n1,Zoë,12.50,2024-01-02\n2,\"Smith, Jr.\",7,2024-01-03\n3,short\n4,Bad,9.5,2024-01-05\n".as_bytes().to_vec();
    csv.extend_from_slice(b"5,\xff\xfe,1.25,2024-01-06\n6,,\\N,\n");
    std::fs::write(files.join("people.csv"), csv).expect("write csv");
    std::fs::write(files.join("events.jsonl"), "{\"id\": 1, \"kind\": \"a\"}\n{\"id\": 2, \"kind\": \nnot json\n{\"id\": 3, \"kind\": \"c\", \"extra\": true}\n{\"id\": 4, \"kind\": \"d\"}\n")
        .expect("write jsonl");
    std::fs::write(
        files.join("events.schema.json"),
        r#"{"name": "events", "columns": [{"name": "id", "type": "int64"}, {"name": "kind", "type": "text"}], "primary_key": ["id"]}"#,
    )
    .expect("write schema");
    pipeline(
        dir.path(),
        "p.toml",
        "[source]\nurl = \"file://in?format=csv\"\n[target]\nurl = \"sqlite://out.db\"\n",
    );
    let out = run_dmp(dir.path(), &["run", "p.toml"]);
    // Dead-lettered rows: exit code 1, good rows arrive.
    assert_exit(&out, 1);
    let db = dir.path().join("out.db");
    let expected: Vec<(String, String)> = [
        ("id", "BIGINT"),
        ("name", "TEXT"),
        ("amount", "DOUBLE"),
        ("signed_up", "DATE"),
    ]
    .iter()
    .map(|(n, t)| (n.to_string(), t.to_string()))
    .collect();
    assert_eq!(columns(&db, "people"), expected);
    let got = rows(&db, "people");
    let ids: Vec<i64> = got
        .iter()
        .map(|r| match r[0] {
            rusqlite::types::Value::Integer(i) => i,
            _ => -1,
        })
        .collect();
    assert_eq!(ids, vec![1, 2, 4, 6]);
    assert_eq!(got[1][1], rusqlite::types::Value::Text("Smith, Jr.".into()));
    // Empty in a text column is the empty string; `\N` and empty elsewhere are NULL.
    assert_eq!(got[3][1], rusqlite::types::Value::Text(String::new()));
    assert_eq!(got[3][2], rusqlite::types::Value::Null);
    assert_eq!(got[3][3], rusqlite::types::Value::Null);

    let refused = dead_letters(dir.path(), "p", "people");
    assert!(
        refused.iter().all(|(stage, _)| stage == "source"),
        "{refused:?}"
    );
    let errors: Vec<String> = refused.into_iter().map(|(_, e)| e).collect();
    assert_eq!(errors.len(), 2, "{errors:?}");
    assert!(
        errors[0].contains("people.csv line 4") && errors[0].contains("2 fields"),
        "{}",
        errors[0]
    );
    assert!(
        errors[1].contains("line 6") && errors[1].contains("UTF-8"),
        "{}",
        errors[1]
    );

    // JSON Lines: a line that does not parse and an unknown key are refused.
    pipeline(
        dir.path(),
        "j.toml",
        "[source]\nurl = \"file://in?format=jsonl\"\n[target]\nurl = \"sqlite://events.db\"\n",
    );
    let out = run_dmp(dir.path(), &["run", "j.toml"]);
    assert_exit(&out, 1);
    let got = rows(&dir.path().join("events.db"), "events");
    assert_eq!(got.len(), 2, "{got:?}");
    let errors: Vec<String> = dead_letters(dir.path(), "j", "events")
        .into_iter()
        .map(|(_, e)| e)
        .collect();
    assert_eq!(errors.len(), 3, "{errors:?}");
    assert!(
        errors
            .iter()
            .any(|e| e.contains("line 3") && e.contains("invalid JSON")),
        "{errors:?}"
    );
    assert!(
        errors.iter().any(|e| e.contains("unknown column `extra`")),
        "{errors:?}"
    );
}

#[test]
fn plan_shows_type_mapping_and_writes_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    create_every_type_db(&dir.path().join("source.db"));
    pipeline(
        dir.path(),
        "p.toml",
        "[source]\nurl = \"sqlite://source.db\"\n[target]\nurl = \"file://out?format=parquet\"\n",
    );
    let out = run_dmp(dir.path(), &["plan", "p.toml"]);
    assert_exit(&out, 0);
    let stdout = text(&out.stdout);
    assert!(stdout.contains("table every_type  ~4 rows"), "{stdout}");
    assert!(
        stdout.contains("decimal(30,4)") && stdout.contains("Decimal128(30, 4)"),
        "{stdout}"
    );
    assert!(
        stdout.contains("Timestamp(µs, \"UTC\")")
            || stdout.contains("Timestamp(Microsecond, Some(\"UTC\"))"),
        "{stdout}"
    );
    assert!(
        !dir.path().join("out").exists(),
        "plan created the target folder"
    );
    assert!(
        !dir.path().join(".dmp").exists(),
        "plan created the state store"
    );
}
