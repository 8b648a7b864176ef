//! Mistakes in the pipeline file or on the command line: a clear message
//! naming the place, exit code 2, nothing written.

use crate::support::{assert_exit, create_every_type_db, pipeline, run_dmp, text};

#[test]
fn config_mistakes_name_file_key_and_line() {
    let dir = tempfile::tempdir().expect("tempdir");
    create_every_type_db(&dir.path().join("source.db"));

    pipeline(
        dir.path(),
        "unknown.toml",
        "[source]\nurl = \"sqlite://source.db\"\n[target]\nurl = \"sqlite://t.db\"\nbatchsize = 5\n",
    );
    let out = run_dmp(dir.path(), &["run", "unknown.toml"]);
    assert_exit(&out, 2);
    let err = text(&out.stderr);
    assert!(
        err.contains("unknown.toml") && err.contains("line 5") && err.contains("batchsize"),
        "{err}"
    );

    pipeline(
        dir.path(),
        "missing.toml",
        "[source]\nurl = \"sqlite://source.db\"\n[target]\nurl = \"sqlite://t.db\"\n[tables]\ninclude = [\n  \"every_type\",\n  \"nope\",\n]\n",
    );
    let out = run_dmp(dir.path(), &["run", "missing.toml"]);
    assert_exit(&out, 2);
    let err = text(&out.stderr);
    assert!(
        err.contains("missing.toml:8 tables.include: table `nope` does not exist"),
        "{err}"
    );

    pipeline(
        dir.path(),
        "url.toml",
        "[source]\nurl = \"sqlite://absent.db\"\n[target]\nurl = \"file://x?format=xml\"\n",
    );
    let out = run_dmp(dir.path(), &["run", "url.toml"]);
    assert_exit(&out, 2);
    let err = text(&out.stderr);
    assert!(
        err.contains("url.toml:2 source.url") && err.contains("does not exist"),
        "{err}"
    );

    pipeline(
        dir.path(),
        "secret.toml",
        "[source]\nurl = \"postgres://app:${DMP_TEST_PASSWORD}@127.0.0.1/db\"\n[target]\nurl = \"sqlite://t.db\"\n",
    );
    let out = crate::support::dmp(dir.path())
        .args(["run", "secret.toml"])
        .env("DMP_TEST_PASSWORD", "hunter2")
        .output()
        .expect("dmp");
    // Nothing listens there: the connection error names the source at
    // once, with the password masked.
    assert_exit(&out, 3);
    let err = text(&out.stderr);
    assert!(
        err.contains("secret.toml:2 source.url")
            && err.contains("connecting to PostgreSQL")
            && !err.contains("hunter2"),
        "{err}"
    );

    let out = run_dmp(dir.path(), &["run"]);
    assert_exit(&out, 2);
    let out = run_dmp(dir.path(), &["frobnicate"]);
    assert_exit(&out, 2);
    assert!(
        !dir.path().join("t.db").exists(),
        "a failed config wrote a target"
    );
}

#[test]
fn run_from_the_command_line_without_a_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    create_every_type_db(&dir.path().join("source.db"));
    let out = run_dmp(
        dir.path(),
        &[
            "run",
            "--source",
            "sqlite://source.db",
            "--target",
            "file://out?format=csv",
            "--tables",
            "no_pk",
            "--tables",
            "Mixed*",
        ],
    );
    assert_exit(&out, 0);
    let files: Vec<String> = std::fs::read_dir(dir.path().join("out"))
        .expect("out")
        .filter_map(|e| e.ok().map(|e| e.file_name().to_string_lossy().into_owned()))
        .filter(|n| n.ends_with(".csv"))
        .collect();
    let mut files = files;
    files.sort();
    assert_eq!(
        files,
        vec!["Mixed Case.csv".to_string(), "no_pk.csv".to_string()]
    );
    let csv = std::fs::read_to_string(dir.path().join("out/no_pk.csv")).expect("csv");
    assert_eq!(csv, "tag,n\ndup,1\ndup,1\ndup,1\n\\N,\\N\nx,2\n");
}
