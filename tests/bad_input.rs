//! Bad input, record by record: each bad record or row gets a message that
//! names its place (file and line, or table, column and key), lands in the
//! dead-letter store (as `dmp dlq show --json` shows it), and the good rows
//! around it arrive.

use std::path::Path;

use dmp_test_servers::{TestDb, mariadb, postgres};
use rusqlite::types::Value;

use crate::support::{assert_exit, count, dlq_shown, pipeline, rows, run_dmp, text};

/// Asserts that the letter refused at source record `index` (1-based) names
/// `place` and says `why`.
fn assert_letter(letters: &[serde_json::Value], index: u64, place: &str, why: &str) {
    let letter = letters
        .iter()
        .find(|l| l["position"]["kind"] == "record" && l["position"]["index"] == index)
        .unwrap_or_else(|| panic!("no letter for record {index}: {letters:#?}"));
    let error = letter["error"].as_str().unwrap_or("");
    assert_eq!(letter["stage"], "source", "{letter}");
    assert!(
        error.contains(place) && error.contains(why),
        "record {index}: {error}"
    );
}

fn ids(db: &Path, table: &str) -> Vec<i64> {
    rows(db, table)
        .into_iter()
        .map(|r| match r[0] {
            Value::Integer(i) => i,
            ref other => panic!("id {other:?}"),
        })
        .collect()
}

#[test]
fn bad_records_in_files_name_file_and_line() {
    let dir = tempfile::tempdir().expect("tempdir");
    let input = dir.path().join("in");
    std::fs::create_dir(&input).expect("mkdir");
    let mut csv = b"id,name,amount\n1,Ann,1.5\n2,Bob\n3,".to_vec();
    csv.extend_from_slice(b"\xff\xfe,2\n4,Cy,lots\n5,Di,5\n6,\"Ed,6\n7,Fay,7\n");
    std::fs::write(input.join("people.csv"), csv).expect("csv");
    std::fs::write(
        input.join("people.schema.json"),
        r#"{"name": "people", "columns": [{"name": "id", "type": "int64"}, {"name": "name", "type": "text"}, {"name": "amount", "type": "float64"}], "primary_key": ["id"]}"#,
    )
    .expect("schema");
    pipeline(
        dir.path(),
        "c.toml",
        "[source]\nurl = \"file://in?format=csv\"\n[target]\nurl = \"sqlite://people.db\"\n",
    );
    let out = run_dmp(dir.path(), &["run", "c.toml"]);
    assert_exit(&out, 1);
    let db = dir.path().join("people.db");
    assert_eq!(ids(&db, "people"), [1, 5]);
    let refused = dlq_shown(dir.path(), "c.toml");
    assert_eq!(refused.len(), 4, "{refused:#?}");
    assert_letter(
        &refused,
        2,
        "people.csv line 3",
        "2 fields where the header has 3",
    );
    assert_letter(
        &refused,
        3,
        "people.csv line 4",
        "column name: invalid UTF-8",
    );
    assert_letter(&refused, 4, "people.csv line 5", "column amount: `lots`");
    // A quote left open swallows the lines after it: said so, with both ends.
    assert_letter(
        &refused,
        6,
        "people.csv line 7",
        "a quoted field runs from line 7 to line 8: is a closing quote missing?",
    );

    let mut jsonl = b"{\"id\": 1, \"kind\": \"a\"}\n{\"id\": 2, \"kind\": \"".to_vec();
    jsonl.extend_from_slice(
        b"\xff\"}\n{\"id\": 3, \"kind\":\n[4, \"d\"]\n{\"id\": 1e300, \"kind\": \"e\"}\n\n{\"id\": 6, \"kind\": \"f\"}\n",
    );
    std::fs::write(input.join("events.jsonl"), jsonl).expect("jsonl");
    std::fs::write(
        input.join("events.schema.json"),
        r#"{"name": "events", "columns": [{"name": "id", "type": "int64"}, {"name": "kind", "type": "text"}], "primary_key": ["id"]}"#,
    )
    .expect("schema");
    pipeline(
        dir.path(),
        "j.toml",
        "[source]\nurl = \"file://in?format=jsonl\"\n[tables]\ninclude = [\"events\"]\n[target]\nurl = \"sqlite://events.db\"\n",
    );
    let out = run_dmp(dir.path(), &["run", "j.toml"]);
    assert_exit(&out, 1);
    assert_eq!(ids(&dir.path().join("events.db"), "events"), [1, 6]);
    let refused = dlq_shown(dir.path(), "j.toml");
    assert_eq!(refused.len(), 4, "{refused:#?}");
    assert_letter(
        &refused,
        2,
        "events.jsonl line 2",
        "invalid UTF-8 after byte 19",
    );
    assert_letter(
        &refused,
        3,
        "events.jsonl line 3",
        "invalid JSON at column 17: EOF while parsing",
    );
    assert_letter(&refused, 4, "events.jsonl line 4", "not a JSON object");
    assert_letter(
        &refused,
        5,
        "events.jsonl line 5",
        "column id: JSON 1e300 is not a valid int64",
    );
    // The summary counts them too.
    assert!(
        text(&out.stdout).contains("4 dead-lettered"),
        "{}",
        text(&out.stdout)
    );
}

/// A SQLite source whose rows each break one rule of the target table.
const SOURCE_ROWS: &str = "CREATE TABLE m (id INTEGER PRIMARY KEY, n BIGINT, f DOUBLE, label TEXT, code TEXT);
     INSERT INTO m VALUES (1, 1, 1.0, 'a', 'c1'), (2, 3000000000, 2.0, 'b', 'c2'), (3, 3, 1e300, 'c', 'c3'),
       (4, 4, 4.0, NULL, 'c4'), (5, 5, 5.0, 'e', 'c1'), (6, 6, 6.0, 'f', 'c6'), (7, 7, 7.0, '', 'c7');";

/// Runs the source into `target`, whose table `m` exists already, and
/// returns the letters by the key of their row.
fn refused_by(dir: &Path, target: &TestDb) -> Vec<(i64, String)> {
    let source = dir.join("source.db");
    rusqlite::Connection::open(&source)
        .and_then(|c| c.execute_batch(SOURCE_ROWS))
        .expect("source");
    pipeline(
        dir,
        "p.toml",
        &format!(
            "[source]\nurl = \"sqlite://source.db\"\n[target]\nurl = \"{}\"\nif_exists = \"truncate\"\n",
            target.url
        ),
    );
    let out = run_dmp(dir, &["run", "p.toml"]);
    assert_exit(&out, 1);
    let said = text(&out.stdout);
    assert!(said.contains("4 dead-lettered"), "{said}");
    // Good rows arrive, the empty string as itself.
    assert_eq!(
        target.query("SELECT id, label FROM m ORDER BY id"),
        vec![
            vec![Some("1".to_string()), Some("a".to_string())],
            vec![Some("6".to_string()), Some("f".to_string())],
            vec![Some("7".to_string()), Some(String::new())],
        ]
    );
    dlq_shown(dir, "p.toml")
        .into_iter()
        .map(|l| {
            assert_eq!(l["stage"], "target", "{l}");
            assert_eq!(l["table"], "m", "{l}");
            // The position is the row's own key.
            assert_eq!(l["position"]["kind"], "key", "{l}");
            let key = l["position"]["key"][0]["int"].as_i64().expect("key");
            assert_eq!(l["row"]["id"].as_i64(), Some(key), "{l}");
            (key, l["error"].as_str().unwrap_or("").to_string())
        })
        .collect()
}

fn assert_refused(refused: &[(i64, String)], key: i64, says: &[&str]) {
    let (_, error) = refused
        .iter()
        .find(|(k, _)| *k == key)
        .unwrap_or_else(|| panic!("row {key} was not refused: {refused:?}"));
    assert!(says.iter().all(|s| error.contains(s)), "row {key}: {error}");
}

#[test]
fn rows_postgres_refuses_are_named_by_table_column_and_key() {
    let dir = tempfile::tempdir().expect("tempdir");
    let target = postgres().create_database("bad_input_pg");
    target.exec(
        "CREATE TABLE m (id bigint PRIMARY KEY, n integer, f integer, label text NOT NULL, code text UNIQUE)",
    );
    let refused = refused_by(dir.path(), &target);
    assert_eq!(refused.len(), 4, "{refused:?}");
    assert_refused(
        &refused,
        2,
        &["column n", "3000000000", "out of range for integer"],
    );
    assert_refused(&refused, 3, &["column f", "does not fit", "int32"]);
    assert_refused(&refused, 4, &["column \"label\"", "not-null"]);
    assert_refused(&refused, 5, &["unique", "(code)=(c1)"]);
    assert_eq!(count(&dir.path().join("source.db"), "m"), 7);
}

#[test]
fn rows_mariadb_refuses_are_named_by_table_column_and_key() {
    let dir = tempfile::tempdir().expect("tempdir");
    let target = mariadb().create_database("bad_input_my");
    target.exec(
        "CREATE TABLE m (id bigint PRIMARY KEY, n smallint, f smallint, label text NOT NULL, code varchar(10) UNIQUE)",
    );
    let refused = refused_by(dir.path(), &target);
    assert_eq!(refused.len(), 4, "{refused:?}");
    assert_refused(&refused, 2, &["column 'n'", "Out of range"]);
    assert_refused(&refused, 3, &["column 'f'", "Out of range"]);
    assert_refused(&refused, 4, &["'label'", "cannot be null"]);
    assert_refused(&refused, 5, &["Duplicate entry 'c1'", "'code'"]);
}

/// A folder `in` holding `file`, and a pipeline `p.toml` reading it (as
/// `format`) into SQLite with `max_value_bytes = 4096`.
fn bounded_file_pipeline(dir: &Path, file: &str, body: &[u8], format: &str) {
    let input = dir.join("in");
    std::fs::create_dir(&input).expect("mkdir");
    std::fs::write(input.join(file), body).expect("input file");
    pipeline(
        dir,
        "p.toml",
        &format!(
            "[source]\nurl = \"file://in?format={format}\"\n[target]\nurl = \"sqlite://out.db\"\n[run]\nmax_value_bytes = 4096\nbatch_rows = 500\n"
        ),
    );
}

/// Runs `p.toml`, expecting one refusal, of record `index`, naming
/// `place` and saying `why`; returns the excerpt kept as its row, checked
/// to be 1 KiB long (cut mark included) whatever the record's size.
fn the_one_oversized_record(dir: &Path, index: u64, place: &str, why: &str) -> String {
    let out = run_dmp(dir, &["run", "p.toml"]);
    assert_exit(&out, 1);
    let refused = dlq_shown(dir, "p.toml");
    assert_eq!(refused.len(), 1, "{refused:#?}");
    assert_letter(&refused, index, place, why);
    let excerpt = refused[0]["row"].as_str().expect("excerpt");
    // 1 KiB with the cut mark, which keeps replay from taking it as a row.
    assert_eq!(excerpt.len(), 1024);
    assert!(excerpt.ends_with('…'), "{excerpt}");
    excerpt.to_string()
}

#[test]
fn a_csv_quote_left_open_is_refused_at_max_value_bytes_and_the_rows_after_it_load() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut csv = String::from("id,v\n1,one\n2,two\n3,\"never closed\n");
    for i in 4..=20_000 {
        csv.push_str(&format!("{i},row {i}\n"));
    }
    bounded_file_pipeline(dir.path(), "t.csv", csv.as_bytes(), "csv");
    // Only an excerpt is kept, not the 200 KiB the quote runs over.
    let excerpt = the_one_oversized_record(
        dir.path(),
        3,
        "t.csv line 4",
        "longer than max_value_bytes (4096); its first 1021 bytes are kept",
    );
    assert!(
        excerpt.starts_with("3,\"never closed\n4,row 4\n"),
        "{excerpt}"
    );
    let loaded = ids(&dir.path().join("out.db"), "t");
    assert_eq!(loaded.len(), 19_999);
    assert_eq!(loaded[..3], [1, 2, 4]);
}

#[test]
fn a_json_line_longer_than_max_value_bytes_is_refused_with_an_excerpt() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut jsonl = String::new();
    for i in 1..=1000 {
        if i == 500 {
            let huge = "y".repeat(1 << 20);
            jsonl.push_str(&format!("{{\"id\":{i},\"v\":\"{huge}\"}}\n"));
        } else {
            jsonl.push_str(&format!("{{\"id\":{i},\"v\":\"row {i}\"}}\n"));
        }
    }
    bounded_file_pipeline(dir.path(), "t.jsonl", jsonl.as_bytes(), "jsonl");
    let excerpt = the_one_oversized_record(
        dir.path(),
        500,
        "t.jsonl line 500",
        "a record of 1048593 bytes, longer than max_value_bytes (4096)",
    );
    assert!(excerpt.starts_with("{\"id\":500,\"v\":\"yyy"), "{excerpt}");
    let loaded = ids(&dir.path().join("out.db"), "t");
    assert_eq!(loaded.len(), 999);
    assert!(!loaded.contains(&500));
}

/// Asserts that one source letter says `what` and keeps at most 1 KiB.
fn assert_long_value_letter(letters: &[serde_json::Value], what: &str) {
    let letter = letters
        .iter()
        .find(|l| l["error"].as_str().is_some_and(|e| e.contains(what)))
        .unwrap_or_else(|| panic!("no letter saying {what}: {letters:#?}"));
    assert_eq!(letter["stage"], "source", "{letter}");
    let excerpt = letter["row"].as_str().unwrap_or_default();
    assert!(
        !excerpt.is_empty() && excerpt.len() <= 1024,
        "{} bytes kept",
        excerpt.len()
    );
}

#[test]
fn a_postgres_value_over_max_value_bytes_is_a_dead_letter_with_its_key_and_an_excerpt() {
    let dir = tempfile::tempdir().expect("tempdir");
    let source = postgres().create_database("bad_input_long_value_source");
    let target = postgres().create_database("bad_input_long_value_target");
    source.exec(
        "CREATE TABLE docs (id integer PRIMARY KEY, body text, data bytea);
         INSERT INTO docs SELECT g, 'short', '\\x00' FROM generate_series(1, 6) g;
         UPDATE docs SET body = repeat('x', 5000) WHERE id = 3;
         UPDATE docs SET data = decode(repeat('ab', 6000), 'hex') WHERE id = 6;",
    );
    pipeline(
        dir.path(),
        "p.toml",
        &crate::support::sql::sql_pipeline(&source.url, &target.url, "max_value_bytes = 4096"),
    );
    // PostgreSQL to PostgreSQL: rows travel in COPY's binary form, and the
    // refused rows are cut out of it.
    assert_exit(&run_dmp(dir.path(), &["run", "p.toml"]), 1);
    assert_eq!(
        target.scalar("SELECT string_agg(id::text, ',' ORDER BY id) FROM docs"),
        "1,2,4,5"
    );
    let letters = dlq_shown(dir.path(), "p.toml");
    assert_eq!(letters.len(), 2, "{letters:#?}");
    assert_long_value_letter(
        &letters,
        "table docs chunk 0, row with key (3), column body: a value of 5000 bytes, longer than max_value_bytes (4096)",
    );
    assert_long_value_letter(
        &letters,
        "table docs chunk 0, row with key (6), column data: a value of 6000 bytes",
    );
    let listed = run_dmp(dir.path(), &["dlq", "list", "p.toml"]);
    assert_exit(&listed, 0);
    let listed = text(&listed.stdout);
    assert!(
        listed.contains("docs") && listed.contains("max_value_bytes (4096)"),
        "{listed}"
    );
}

/// An incremental run from `source` (a table `items` of 12 rows of about
/// 1000 bytes, row 5 holding 5000) with batch_bytes 3000: the pages end at
/// batch_bytes, every row but 5 arrives, row 5 is a dead letter.
fn incremental_pages_end_at_batch_bytes(source: &TestDb) {
    let dir = tempfile::tempdir().expect("tempdir");
    let run =
        "mode = \"incremental\"\nbatch_rows = 1000\nbatch_bytes = 3000\nmax_value_bytes = 4096";
    pipeline(
        dir.path(),
        "p.toml",
        &format!(
            "{}[table.items]\ncursor = \"updated_at\"\n",
            crate::support::sql::sql_pipeline(&source.url, "sqlite://out.db", run)
        ),
    );
    let out = crate::support::dmp(dir.path())
        .args(["run", "p.toml"])
        .env("RUST_LOG", "dmp=debug")
        .output()
        .expect("dmp starts");
    assert_exit(&out, 1);
    let pages = text(&out.stderr).matches("reading page").count();
    assert!(pages >= 4, "{pages} pages");
    let expected: Vec<i64> = (1..=12).filter(|&i| i != 5).collect();
    assert_eq!(ids(&dir.path().join("out.db"), "items"), expected);
    let letters = dlq_shown(dir.path(), "p.toml");
    assert_eq!(letters.len(), 1, "{letters:#?}");
    assert_long_value_letter(
        &letters,
        "row with cursor 5 and key (5), column body: a value of 5000 bytes, longer than max_value_bytes (4096)",
    );
}

#[test]
fn postgres_incremental_pages_end_at_batch_bytes_and_refuse_long_values() {
    let source = postgres().create_database("bad_input_pages_pg");
    source.exec(
        "CREATE TABLE items (id integer PRIMARY KEY, updated_at bigint NOT NULL, body text);
         INSERT INTO items SELECT g, g, repeat('x', 1000) FROM generate_series(1, 12) g;
         UPDATE items SET body = repeat('y', 5000) WHERE id = 5;",
    );
    incremental_pages_end_at_batch_bytes(&source);
}

#[test]
fn mariadb_incremental_pages_end_at_batch_bytes_and_refuse_long_values() {
    let source = mariadb().create_database("bad_input_pages_my");
    source.exec(
        "CREATE TABLE items (id int PRIMARY KEY, updated_at bigint NOT NULL, body longtext);
         INSERT INTO items SELECT seq, seq, repeat('x', 1000) FROM seq_1_to_12;
         UPDATE items SET body = repeat('y', 5000) WHERE id = 5;",
    );
    incremental_pages_end_at_batch_bytes(&source);
}

#[test]
fn a_mariadb_value_over_max_value_bytes_is_a_dead_letter_with_its_key() {
    let dir = tempfile::tempdir().expect("tempdir");
    let source = mariadb().create_database("bad_input_long_value_my");
    source.exec(
        "CREATE TABLE docs (id int PRIMARY KEY, body longtext, data longblob);
         INSERT INTO docs SELECT seq, 'short', x'00' FROM seq_1_to_5;
         UPDATE docs SET data = repeat(x'ab', 6000) WHERE id = 2;",
    );
    pipeline(
        dir.path(),
        "p.toml",
        &crate::support::sql::sql_pipeline(
            &source.url,
            "sqlite://out.db",
            "max_value_bytes = 4096",
        ),
    );
    assert_exit(&run_dmp(dir.path(), &["run", "p.toml"]), 1);
    assert_eq!(ids(&dir.path().join("out.db"), "docs"), [1, 3, 4, 5]);
    let letters = dlq_shown(dir.path(), "p.toml");
    assert_eq!(letters.len(), 1, "{letters:#?}");
    assert_long_value_letter(
        &letters,
        "table docs, row with key (2), column data: a value of 6000 bytes, longer than max_value_bytes (4096)",
    );
}
