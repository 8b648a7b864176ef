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

/// Passwords do not leak on the rare paths: a TOML syntax error on the
/// URL's line, a mistyped URL, a command-line URL (which takes `${VAR}`
/// and `${file:PATH}` so that no password need be on the command line).
#[test]
fn passwords_stay_hidden_on_every_error_path() {
    let dir = tempfile::tempdir().expect("tempdir");
    create_every_type_db(&dir.path().join("source.db"));
    pipeline(
        dir.path(),
        "syntax.toml",
        "[source]\nurl = \"postgres://app:hunter2@db/shop\n[target]\nurl = \"sqlite://t.db\"\n",
    );
    let out = run_dmp(dir.path(), &["run", "syntax.toml"]);
    assert_exit(&out, 2);
    let err = text(&out.stderr);
    assert!(err.contains("syntax.toml: line 2"), "{err}");
    assert!(!err.contains("hunter2"), "{err}");
    pipeline(
        dir.path(),
        "secret.toml",
        "[source]\nurl = \"sqlite://source.db\"\n[target]\nurl = \"sqlite://t.db\"\n[[transform]]\nplugin = \"p.wasm\"\nconfig = { password = \"hunter2\", salt = 5, }\n",
    );
    let out = run_dmp(dir.path(), &["run", "secret.toml"]);
    assert_exit(&out, 2);
    let err = text(&out.stderr);
    assert!(!err.contains("hunter2"), "{err}");

    pipeline(
        dir.path(),
        "typo.toml",
        "[source]\nurl = \"postgres:/app:hunter2@db/shop\"\n[target]\nurl = \"sqlite://t.db\"\n",
    );
    let out = run_dmp(dir.path(), &["run", "typo.toml"]);
    assert_exit(&out, 2);
    let err = text(&out.stderr);
    assert!(err.contains("typo.toml:2 source.url"), "{err}");
    assert!(!err.contains("hunter2"), "{err}");

    // The command line: a variable and a secret file; the same pipeline
    // name (its checkpoints) whatever the password.
    std::fs::write(dir.path().join("db.name"), "source.db\n").expect("secret file");
    let out = crate::support::dmp(dir.path())
        .env("OUT_DIR_NAME", "out")
        .args([
            "run",
            "--source",
            "sqlite://${file:db.name}",
            "--target",
            "file://${OUT_DIR_NAME}?format=csv",
            "--tables",
            "no_pk",
        ])
        .output()
        .expect("dmp starts");
    assert_exit(&out, 0);
    assert!(dir.path().join("out/no_pk.csv").exists());
    let names: Vec<String> = ["hunter2", "other-password"]
        .iter()
        .map(|password| {
            let out = run_dmp(
                dir.path(),
                &[
                    "run",
                    "--source",
                    &format!("postgres://app:{password}@127.0.0.1:1/shop?sslmode=disable"),
                    "--target",
                    "sqlite://t.db",
                ],
            );
            let err = text(&out.stderr);
            assert!(!err.contains(password), "{err}");
            err.split("cli-")
                .nth(1)
                .map(|rest| rest.chars().take(16).collect())
                .unwrap_or_default()
        })
        .collect();
    assert_eq!(
        names[0], names[1],
        "the pipeline's name depends on the password"
    );
}

/// One pipeline file per kind of mistake: each is refused with exit code 2
/// and a message naming the file, the line and the key, before anything is
/// written.
#[test]
fn every_kind_of_config_mistake_names_its_key_and_line() {
    let dir = tempfile::tempdir().expect("tempdir");
    create_every_type_db(&dir.path().join("source.db"));
    let base = "[source]\nurl = \"sqlite://source.db\"\n[target]\nurl = \"sqlite://t.db\"\n";
    let cases: &[(&str, String, &[&str])] = &[
        (
            "wrong type",
            format!("{base}[run]\nbatch_rows = \"many\"\n"),
            &["line 6", "batch_rows = \"many\"", "invalid type: string \"many\""],
        ),
        (
            "negative number",
            format!("{base}[run]\nparallelism = -1\n"),
            &["line 6", "parallelism = -1", "invalid value"],
        ),
        (
            "unknown mode",
            format!("{base}[run]\nmode = \"sometimes\"\n"),
            &["line 6", "unknown variant `sometimes`", "`incremental`"],
        ),
        (
            "unknown on_error",
            format!("{base}[run]\non_error = \"ignore\"\n"),
            &["line 6", "unknown variant `ignore`", "`dead-letter`"],
        ),
        (
            "missing source",
            "[target]\nurl = \"sqlite://t.db\"\n".to_string(),
            &["missing field `source`"],
        ),
        (
            "not TOML",
            format!("{base}[run\nmode = \"full\"\n"),
            &["line 5", "unclosed table"],
        ),
        (
            "unknown URL scheme",
            "[source]\nurl = \"ftp://host/x\"\n[target]\nurl = \"sqlite://t.db\"\n".to_string(),
            &[":2 source.url", "no connector for `ftp://`"],
        ),
        (
            "bad port",
            "[source]\nurl = \"sqlite://source.db\"\n[target]\nurl = \"postgres://u@127.0.0.1:port/db\"\n"
                .to_string(),
            &[":4 target.url", "port `port`"],
        ),
        (
            "bad file format",
            "[source]\nurl = \"sqlite://source.db\"\n[target]\nurl = \"file://out?format=xml\"\n"
                .to_string(),
            &[":4 target.url", "unknown file format `xml`"],
        ),
        (
            "bad duration",
            format!("{base}[run]\nretry_max_delay = \"soon\"\n"),
            &[":6 run.retry_max_delay", "`soon` is not a duration"],
        ),
        (
            "zero heartbeat",
            format!("{base}[cdc]\nheartbeat = \"0s\"\n"),
            &[":6 cdc.heartbeat", "`0s` is not a duration"],
        ),
        (
            "bad cron",
            format!("{base}[run]\nmode = \"incremental\"\nevery = \"61 * * * *\"\n"),
            &[":7 run.every", "`61 * * * *` is not a valid cron expression"],
        ),
        (
            "bad include glob",
            format!("{base}[tables]\ninclude = [\n  \"every_type\",\n  \"[abc\",\n]\n"),
            &[":8 tables.include", "bad table pattern `[abc`"],
        ),
        (
            "bad exclude glob",
            format!("{base}[tables]\nexclude = [\"x[\"]\n"),
            &[":6 tables.exclude", "bad table pattern `x[`"],
        ),
        (
            "bad table glob",
            format!("{base}[table.\"[bad\"]\ncursor = \"id\"\n"),
            &[":5 table.\"[bad\"", "bad table pattern `[bad`"],
        ),
        (
            "missing plugin",
            format!("{base}\n[[transform]]\nplugin = \"nope.wasm\"\n"),
            &[":6 transform[0].plugin", "nope.wasm does not exist"],
        ),
        (
            "zero memory",
            format!("{base}[[transform]]\nplugin = \"nope.wasm\"\nmemory_mb = 0\n"),
            &[":5 transform[0]", "memory_mb and timeout_ms must be at least 1"],
        ),
        (
            "empty cursor",
            format!("{base}[table.every_type]\ncursor = \"\"\n"),
            &["table.\"every_type\".cursor: must not be empty"],
        ),
        (
            "unset variable",
            format!("{base}[run]\nstate = \"${{DMP_TEST_SURELY_UNSET}}/s.db\"\n"),
            &[":6 run.state", "DMP_TEST_SURELY_UNSET is not set"],
        ),
    ];
    for (what, body, says) in cases {
        pipeline(dir.path(), "x.toml", body);
        let out = run_dmp(dir.path(), &["run", "x.toml"]);
        assert_exit(&out, 2);
        let err = text(&out.stderr);
        assert!(
            err.contains("x.toml") && says.iter().all(|s| err.contains(s)),
            "{what}: {err}"
        );
    }
    assert!(
        !dir.path().join("t.db").exists() && !dir.path().join("out").exists(),
        "a failed config wrote a target"
    );
}

#[test]
fn connector_options_are_typed_by_their_connector() {
    let dir = tempfile::tempdir().expect("tempdir");
    create_every_type_db(&dir.path().join("source.db"));

    // The folder's options as a table instead of in the URL.
    pipeline(
        dir.path(),
        "table.toml",
        "[source]\nurl = \"sqlite://source.db\"\n[target]\nurl = \"file://out\"\n[target.options]\nformat = \"jsonl\"\n",
    );
    let out = run_dmp(dir.path(), &["run", "table.toml"]);
    assert_exit(&out, 0);
    assert!(dir.path().join("out/every_type.jsonl").is_file());

    let refused = [
        (
            "typo.toml",
            "[source]\nurl = \"sqlite://source.db\"\n[target]\nurl = \"file://out2\"\n[target.options]\nformat = \"csv\"\ndelimeter = \";\"\n",
            vec![
                "typo.toml:5 target.options",
                "unknown field `delimeter`",
                "`delimiter`",
            ],
        ),
        (
            "twice.toml",
            "[source]\nurl = \"sqlite://source.db\"\n[target]\nurl = \"file://out3?format=csv\"\n[target.options]\nformat = \"jsonl\"\n",
            vec![
                "twice.toml:5 target.options",
                "`format` is given both in the URL and in its options",
            ],
        ),
        (
            "none.toml",
            "[source]\nurl = \"sqlite://source.db\"\n[source.options]\nslot = \"s\"\n[target]\nurl = \"sqlite://t.db\"\n",
            vec![
                "none.toml:3 source.options",
                "`sqlite://` as a source takes no options",
            ],
        ),
        (
            "cdc.toml",
            "[source]\nurl = \"postgres://u@127.0.0.1:1/db\"\n[source.options]\nslot = \"a\"\n[target]\nurl = \"sqlite://t.db\"\n[run]\nmode = \"cdc\"\n[cdc]\nslot = \"b\"\n",
            vec![
                "cdc.toml:3 source.options",
                "`slot` is given both here and in [cdc]",
            ],
        ),
    ];
    for (file, text_of_file, expected) in refused {
        pipeline(dir.path(), file, text_of_file);
        let out = run_dmp(dir.path(), &["run", file]);
        assert_exit(&out, 2);
        let err = text(&out.stderr);
        for part in expected {
            assert!(err.contains(part), "{file}: {part:?} not in {err}");
        }
    }
    assert!(!dir.path().join("out2").exists() && !dir.path().join("t.db").exists());
}
