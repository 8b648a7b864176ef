//! Names from a source shown on a terminal: a table or column named with a
//! newline or an escape sequence is printed escaped (`\n`, `\u{1b}`) in
//! `dmp run`'s summary and logs, `dmp plan`, and error messages, so it can
//! neither forge an output line nor drive the terminal.

use std::path::Path;

use crate::support::{assert_exit, pipeline, run_dmp, text};

const EVIL: &str = "evil\n\x1b[31mred";
const SHOWN: &str = "evil\\n\\u{1b}[31mred";

/// A SQLite database with one table named `EVIL`, a column `col\nx`.
fn evil_source(dir: &Path) {
    let conn = rusqlite::Connection::open(dir.join("src.db")).expect("create db");
    conn.execute_batch(&format!(
        "CREATE TABLE \"{EVIL}\" (id INTEGER PRIMARY KEY, \"col\nx\" TEXT);
         INSERT INTO \"{EVIL}\" VALUES (1, 'a'), (2, 'b'), (3, 'c');"
    ))
    .expect("fill db");
}

/// Asserts `output` holds no raw escape character and no raw newline
/// inside a name.
fn assert_nothing_raw(output: &str, what: &str) {
    assert!(
        !output.contains('\x1b'),
        "{what} holds a raw escape: {output:?}"
    );
    assert!(
        !output.contains("evil\n"),
        "{what} holds a raw newline: {output:?}"
    );
    assert!(
        !output.contains("col\nx"),
        "{what} holds a raw newline: {output:?}"
    );
}

#[test]
fn names_with_control_characters_are_shown_escaped() {
    let dir = tempfile::tempdir().expect("tempdir");
    evil_source(dir.path());
    pipeline(
        dir.path(),
        "p.toml",
        "[source]\nurl = \"sqlite://src.db\"\n[target]\nurl = \"file://out?format=jsonl\"\n",
    );

    let out = run_dmp(dir.path(), &["plan", "p.toml"]);
    assert_exit(&out, 0);
    let plan = text(&out.stdout);
    assert!(plan.contains(&format!("table {SHOWN}  ~")), "{plan}");
    assert!(plan.contains("col\\nx"), "{plan}");
    assert_nothing_raw(&plan, "dmp plan");

    let out = run_dmp(dir.path(), &["run", "p.toml"]);
    assert_exit(&out, 0);
    let summary = text(&out.stdout);
    assert!(
        summary
            .lines()
            .any(|l| l.trim_start().starts_with(SHOWN) && l.trim_end().ends_with("3 rows")),
        "{summary}"
    );
    assert_nothing_raw(&summary, "the run summary");
    let logs = text(&out.stderr);
    assert!(logs.contains(SHOWN), "{logs}");
    assert_nothing_raw(&logs, "the run's log");

    // An error quoting a name from the pipeline file.
    pipeline(
        dir.path(),
        "missing.toml",
        "[source]\nurl = \"sqlite://src.db\"\n[target]\nurl = \"file://out2?format=jsonl\"\n[tables]\ninclude = [\"nope\\n\\u001b[31m\"]\n",
    );
    let out = run_dmp(dir.path(), &["run", "missing.toml"]);
    assert_exit(&out, 2);
    let error = text(&out.stderr);
    assert!(error.contains("nope\\n\\u{1b}[31m"), "{error}");
    assert!(!error.contains('\x1b'), "{error:?}");
}
