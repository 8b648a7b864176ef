//! File targets write only inside their folder and never through a link:
//! table names that hold `/`, `..` or control characters (from PostgreSQL,
//! MariaDB, SQLite) become encoded file names that a file source decodes
//! back, and links planted at the partial or the final path leave their
//! targets untouched.

use std::path::{Path, PathBuf};

use dmp_test_servers::{mariadb, postgres};

use crate::support::sql::sql_pipeline;
use crate::support::{assert_exit, count, pipeline, run_dmp, tables, text};

/// Every file below `dir`, relative to it, sorted.
fn files_below(dir: &Path) -> Vec<String> {
    fn walk(root: &Path, dir: &Path, out: &mut Vec<String>) {
        for entry in std::fs::read_dir(dir).expect("read dir") {
            let path = entry.expect("entry").path();
            if path.is_dir() {
                walk(root, &path, out);
            } else {
                let relative = path.strip_prefix(root).expect("below root");
                out.push(relative.display().to_string());
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out);
    out.sort();
    out
}

/// Copies the tables of `source` to `DIR/out/a/b` as `format`, checks that
/// every file written is inside that folder under `expected` names, then
/// reads the folder back into SQLite and returns that database.
fn copy_out_and_back(dir: &Path, source: &str, format: &str, expected: &[&str]) -> PathBuf {
    let out_dir = dir.join("out/a/b");
    std::fs::create_dir_all(&out_dir).expect("out dir");
    pipeline(
        dir,
        "out.toml",
        &sql_pipeline(source, &format!("file://out/a/b?format={format}"), ""),
    );
    let out = run_dmp(dir, &["run", "out.toml"]);
    assert_exit(&out, 0);

    let outside: Vec<String> = files_below(dir)
        .into_iter()
        .filter(|f| !f.starts_with("out/a/b/") && !f.starts_with(".dmp/") && f != "out.toml")
        .collect();
    assert!(
        outside.is_empty(),
        "written outside the output folder: {outside:?}"
    );
    let written = files_below(&out_dir);
    for name in expected {
        let file = format!("{name}.{format}");
        assert!(written.contains(&file), "{file} not among {written:?}");
        assert!(
            written.contains(&format!("{name}.schema.json")),
            "{written:?}"
        );
    }

    pipeline(
        dir,
        "back.toml",
        &sql_pipeline(
            &format!("file://out/a/b?format={format}"),
            "sqlite://back.db",
            "",
        ),
    );
    let out = run_dmp(dir, &["run", "back.toml"]);
    assert_exit(&out, 0);
    dir.join("back.db")
}

#[test]
fn postgres_table_names_that_climb_out_stay_in_the_folder_and_come_back() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = postgres().create_database("escape_names");
    db.exec(
        "CREATE TABLE \"./../../esc2\" (id int PRIMARY KEY, v text);
         INSERT INTO \"./../../esc2\" VALUES (1, 'one'), (2, 'two');
         CREATE TABLE \"a/b\nc\" (id int PRIMARY KEY);
         INSERT INTO \"a/b\nc\" VALUES (7);
         CREATE TABLE orders (id int PRIMARY KEY);
         INSERT INTO orders VALUES (1);",
    );
    let back = copy_out_and_back(
        dir.path(),
        &db.url,
        "jsonl",
        &["%2E%2F..%2F..%2Fesc2", "a%2Fb%0Ac", "orders"],
    );
    assert_eq!(tables(&back), ["./../../esc2", "a/b\nc", "orders"]);
    assert_eq!(count(&back, "./../../esc2"), 2);
    assert_eq!(count(&back, "a/b\nc"), 1);
}

#[test]
fn mariadb_table_names_that_climb_out_stay_in_the_folder_and_come_back() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = mariadb().create_database("escape_names");
    db.exec(
        "CREATE TABLE `./../../esc2` (id int PRIMARY KEY, v text);
         INSERT INTO `./../../esc2` VALUES (1, 'one'), (2, 'two'), (3, 'three');",
    );
    let back = copy_out_and_back(dir.path(), &db.url, "csv", &["%2E%2F..%2F..%2Fesc2"]);
    assert_eq!(tables(&back), ["./../../esc2"]);
    assert_eq!(count(&back, "./../../esc2"), 3);
}

/// A pipeline `p.toml` from a SQLite table `t` of 100 rows to
/// `file://out?format=jsonl`, and a file outside `out` that links will
/// point at: the victim, returned.
fn sqlite_to_jsonl(dir: &Path) -> PathBuf {
    let conn = rusqlite::Connection::open(dir.join("src.db")).expect("create db");
    conn.execute_batch(
        "CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT);
         WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 100)
         INSERT INTO t SELECT i, 'row ' || i FROM n;",
    )
    .expect("fill db");
    std::fs::create_dir_all(dir.join("out")).expect("out");
    pipeline(
        dir,
        "p.toml",
        &sql_pipeline("sqlite://src.db", "file://out?format=jsonl", ""),
    );
    let victim = dir.join("victim.txt");
    std::fs::write(&victim, "precious").expect("victim");
    victim
}

fn plant_link(target: &Path, at: &Path) {
    std::os::unix::fs::symlink(target, at).expect("plant link");
}

/// Runs `p.toml`, expecting a refusal whose message says `says`.
fn refused(dir: &Path, says: &str) {
    let out = run_dmp(dir, &["run", "p.toml"]);
    let stderr = text(&out.stderr);
    assert_ne!(out.status.code(), Some(0), "{stderr}");
    assert!(stderr.contains(says), "{stderr}");
}

#[test]
fn a_link_planted_at_the_partial_path_is_replaced_not_followed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let victim = sqlite_to_jsonl(dir.path());
    plant_link(&victim, &dir.path().join("out/.t.jsonl.dmp-partial"));
    let out = run_dmp(dir.path(), &["run", "p.toml"]);
    assert_exit(&out, 0);
    assert_eq!(
        std::fs::read_to_string(&victim).expect("victim"),
        "precious"
    );
    let written = std::fs::read_to_string(dir.path().join("out/t.jsonl")).expect("t.jsonl");
    assert_eq!(written.lines().count(), 100);
    let published = std::fs::symlink_metadata(dir.path().join("out/t.jsonl")).expect("meta");
    assert!(published.file_type().is_file());
}

#[test]
fn a_link_planted_at_the_final_path_is_refused_naming_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let victim = sqlite_to_jsonl(dir.path());
    plant_link(&victim, &dir.path().join("out/t.jsonl"));
    plant_link(&victim, &dir.path().join("out/.t.jsonl.dmp-partial"));
    refused(dir.path(), "out/t.jsonl is a symbolic link");
    assert_eq!(
        std::fs::read_to_string(&victim).expect("victim"),
        "precious"
    );
}

#[test]
fn a_linked_checkpoint_folder_is_refused_naming_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    sqlite_to_jsonl(dir.path());
    let elsewhere = dir.path().join("elsewhere");
    std::fs::create_dir_all(&elsewhere).expect("elsewhere");
    plant_link(&elsewhere, &dir.path().join("out/.dmp-checkpoints"));
    refused(dir.path(), "out/.dmp-checkpoints is a symbolic link");
    assert!(files_below(&elsewhere).is_empty());
}
