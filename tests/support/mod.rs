//! Helpers shared by the integration tests: running `dmp`, building sample
//! databases, reading tables back for exact comparison.

#![allow(dead_code)]

pub mod browser;
pub mod bus;
pub mod proxy;
pub mod serve;
pub mod sql;
pub mod workload;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use rusqlite::Connection;
use rusqlite::types::Value;

/// A `dmp` command running in `dir`.
pub fn dmp(dir: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_dmp"));
    cmd.current_dir(dir).env_remove("RUST_LOG");
    cmd
}

/// Runs `dmp args...` in `dir` and returns its output.
pub fn run_dmp(dir: &Path, args: &[&str]) -> Output {
    dmp(dir).args(args).output().expect("dmp starts")
}

pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Asserts an exit code, showing dmp's output when it differs.
pub fn assert_exit(out: &Output, code: i32) {
    assert_eq!(
        out.status.code(),
        Some(code),
        "exit status {:?}\nstdout:\n{}\nstderr:\n{}",
        out.status,
        text(&out.stdout),
        text(&out.stderr)
    );
}

/// Writes a pipeline file into `dir` and returns its path.
pub fn pipeline(dir: &Path, name: &str, body: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, body).expect("write pipeline");
    path
}

/// Every row of `table`, as stored, sorted so that row order does not matter.
pub fn rows(db: &Path, table: &str) -> Vec<Vec<Value>> {
    let conn = Connection::open(db).expect("open db");
    let ncols: i64 = conn
        .query_row("SELECT count(*) FROM pragma_table_info(?1)", [table], |r| {
            r.get(0)
        })
        .expect("column count");
    let ncols = usize::try_from(ncols).expect("column count");
    let order: Vec<String> = (1..=ncols).map(|i| i.to_string()).collect();
    let sql = format!(
        "SELECT * FROM \"{}\" ORDER BY {}",
        table.replace('"', "\"\""),
        order.join(", ")
    );
    let mut stmt = conn.prepare(&sql).expect("prepare");
    stmt.query_map([], |r| (0..ncols).map(|i| r.get::<_, Value>(i)).collect())
        .expect("query")
        .collect::<rusqlite::Result<Vec<Vec<Value>>>>()
        .expect("rows")
}

/// Column names and declared types of `table`.
pub fn columns(db: &Path, table: &str) -> Vec<(String, String)> {
    let conn = Connection::open(db).expect("open db");
    let mut stmt = conn
        .prepare("SELECT name, type FROM pragma_table_info(?1) ORDER BY cid")
        .expect("prepare");
    stmt.query_map([table], |r| Ok((r.get(0)?, r.get(1)?)))
        .expect("query")
        .collect::<rusqlite::Result<_>>()
        .expect("columns")
}

pub fn count(db: &Path, table: &str) -> i64 {
    let conn = Connection::open(db).expect("open db");
    conn.query_row(&format!("SELECT count(*) FROM \"{table}\""), [], |r| {
        r.get(0)
    })
    .expect("count")
}

/// Rows a target has committed so far, by its own checkpoints (0 before it
/// exists).
pub fn committed_rows(db: &Path) -> i64 {
    let Ok(conn) = Connection::open_with_flags(db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
    else {
        return 0;
    };
    conn.query_row(
        "SELECT coalesce(sum(rows), 0) FROM _dmp_checkpoints",
        [],
        |r| r.get(0),
    )
    .unwrap_or(0)
}

/// The dead-letter rows of `table` in the state store of a pipeline run
/// from `dir`, as (stage, error), read through the store's own API.
pub fn dead_letters(dir: &Path, pipeline: &str, table: &str) -> Vec<(String, String)> {
    let store = dmp::state::StateStore::open(&dir.join(".dmp/state.db")).expect("state store");
    store
        .dead_letters(pipeline)
        .expect("dead letters")
        .into_iter()
        .filter(|d| d.table == table)
        .map(|d| (d.stage, d.error))
        .collect()
}

/// Tables of a database (without SQLite's and dmp's own).
pub fn tables(db: &Path) -> Vec<String> {
    let conn = Connection::open(db).expect("open db");
    let mut stmt = conn
        .prepare("SELECT name FROM sqlite_schema WHERE type = 'table' AND name NOT LIKE 'sqlite_%' AND name NOT LIKE '_dmp_%' ORDER BY name")
        .expect("prepare");
    stmt.query_map([], |r| r.get(0))
        .expect("query")
        .collect::<rusqlite::Result<_>>()
        .expect("tables")
}

/// A database with one table per interesting case: every data type (with
/// extremes, NULLs, unicode), an empty table, a table without primary key
/// and with duplicate rows, and awkward identifiers. Values are stored in
/// the canonical form dmp writes, so a round trip must give them back
/// byte for byte.
pub fn create_every_type_db(path: &Path) {
    let conn = Connection::open(path).expect("create db");
    conn.execute_batch(
        r#"
        CREATE TABLE every_type (
            id INTEGER PRIMARY KEY,
            b BOOLEAN, i16 SMALLINT, i32 INT4, i64 BIGINT,
            f32 FLOAT4, f64 DOUBLE,
            dec DECIMAL_TEXT(30,4), dec_free DECIMAL_TEXT,
            txt TEXT, vc VARCHAR(12), bin BLOB, doc JSON_TEXT,
            d DATE, t TIME, ts TIMESTAMP, tstz TIMESTAMPTZ, u UUID);
        INSERT INTO every_type VALUES
            (1, 1, -32768, 2147483647, -9223372036854775808, 1.5, 0.1,
             '12345678901234567890123456.1234', '-0.000001',
             'plain', 'twelve chars', X'00FF10', '{"a": [1, 2.50, null], "ü": "✓"}',
             '2024-02-29', '23:59:59.999999', '2024-02-29 23:59:59.123456', '1999-12-31 23:00:00.000001+00:00',
             'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11'),
            (2, 0, 32767, -2147483648, 9223372036854775807, -2.25, 1.7976931348623157e308,
             '-0.5000', '123456789012345678901234567890.5',
             'quote " comma , semicolon ; tab	 newline
 second line', 'émoji 😀', X'', '[]',
             '0001-01-01', '00:00:00', '1970-01-01 00:00:00', '2038-01-19 03:14:07+00:00',
             '00000000-0000-0000-0000-000000000000'),
            (3, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL),
            (4, 1, 0, 0, 0, 1048576.0, -1e-300, '0.0000', '0', '', 'Ünïcödé 中文', X'0A0D22', '"just a string"',
             '9999-12-31', '12:00:00.500', '2024-06-01 12:00:00.500', '2024-06-01 10:00:00.500+00:00',
             'ffffffff-ffff-ffff-ffff-ffffffffffff');
        CREATE TABLE empty_table (id INTEGER PRIMARY KEY, name TEXT NOT NULL, price DECIMAL_TEXT(10,2));
        CREATE TABLE no_pk (tag TEXT, n BIGINT);
        INSERT INTO no_pk VALUES ('dup', 1), ('dup', 1), ('dup', 1), (NULL, NULL), ('x', 2);
        CREATE TABLE "Mixed Case" ("select" TEXT, "Ünïcode" INTEGER NOT NULL, "from" DOUBLE, PRIMARY KEY ("Ünïcode"));
        INSERT INTO "Mixed Case" VALUES ('a', 1, 1.25), (NULL, 2, NULL);
        CREATE INDEX every_type_ts ON every_type (ts);
        CREATE UNIQUE INDEX every_type_u ON every_type (u);
        "#,
    )
    .expect("fill db");
}

/// A timestamp `n` microseconds and seconds after 2024-01-01, in the text
/// form dmp writes to SQLite.
fn canonical_timestamp(n: i64) -> String {
    let start = chrono::NaiveDate::from_ymd_opt(2024, 1, 1)
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .expect("date");
    (start + chrono::Duration::seconds(n) + chrono::Duration::microseconds(n % 1_000_000))
        .format("%Y-%m-%d %H:%M:%S%.f")
        .to_string()
}

/// Asserts two row lists are equal, showing only the first difference.
pub fn assert_same_rows(left: &[Vec<Value>], right: &[Vec<Value>], what: &str) {
    if let Some(i) = (0..left.len().min(right.len())).find(|&i| left[i] != right[i]) {
        panic!(
            "{what}: row {i} differs:\n  {:?}\n  {:?}",
            left[i], right[i]
        );
    }
    assert_eq!(left.len(), right.len(), "{what}: row counts differ");
}

/// A big table for crash and speed tests: `rows` rows, no primary key.
pub fn create_events_db(path: &Path, rows: i64) {
    let mut conn = Connection::open(path).expect("create db");
    conn.execute_batch("CREATE TABLE events (n BIGINT NOT NULL, payload TEXT, at TIMESTAMP);")
        .expect("schema");
    let txn = conn.transaction().expect("txn");
    {
        let mut insert = txn
            .prepare("INSERT INTO events VALUES (?1, ?2, ?3)")
            .expect("prepare");
        for n in 0..rows {
            insert
                .execute(rusqlite::params![
                    n,
                    format!("payload {n} ✓"),
                    canonical_timestamp(n)
                ])
                .expect("insert");
        }
    }
    txn.commit().expect("commit");
}

/// The dead-letter rows of a pipeline run from `dir`, as `dmp dlq show
/// --json` gives them: one object per row.
pub fn dlq_shown(dir: &Path, file: &str) -> Vec<serde_json::Value> {
    let out = run_dmp(dir, &["dlq", "show", file, "--json", "--limit", "1000"]);
    assert_exit(&out, 0);
    text(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("JSON line"))
        .collect()
}
