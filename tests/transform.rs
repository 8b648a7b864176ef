//! Pipelines with WebAssembly transforms: real plugin components built by
//! `make plugins`, run by the real `dmp` binary.

use std::path::{Path, PathBuf};

use rusqlite::Connection;
use rusqlite::types::Value;

use crate::round_trip::assert_same_database;
use crate::support::{
    assert_exit, create_every_type_db, dead_letters, pipeline, rows, run_dmp, text,
};

/// A plugin built by `make plugins` (`wasi`: the WASI build).
pub fn plugin(name: &str, wasi: bool) -> PathBuf {
    let target = if wasi {
        "wasm32-wasip2"
    } else {
        "wasm32-unknown-unknown"
    };
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../target/plugins")
        .join(target)
        .join("release")
        .join(format!("{name}.wasm"));
    assert!(
        path.is_file(),
        "{} is missing: run `make plugins` (or `make test`)",
        path.display()
    );
    path
}

#[test]
fn identity_plugin_keeps_every_value_of_every_type() {
    let dir = tempfile::tempdir().expect("tempdir");
    create_every_type_db(&dir.path().join("source.db"));
    pipeline(
        dir.path(),
        "p.toml",
        &format!(
            "[source]\nurl = \"sqlite://source.db\"\n[target]\nurl = \"sqlite://target.db\"\n[[transform]]\nplugin = \"{}\"\n[run]\nbatch_rows = 3\n",
            plugin("identity", false).display()
        ),
    );
    assert_exit(&run_dmp(dir.path(), &["run", "p.toml"]), 0);
    assert_same_database(&dir.path().join("source.db"), &dir.path().join("target.db"));
}

fn create_people_db(path: &Path) {
    let conn = Connection::open(path).expect("db");
    conn.execute_batch(
        "CREATE TABLE people (id INTEGER PRIMARY KEY, full_name TEXT, email TEXT, phone TEXT, amount_cents BIGINT, status TEXT);
         INSERT INTO people VALUES
           (1, 'Zoë Müller', 'zoe.mueller@example.com', '+49 170 1234589', 12345, 'active'),
           (2, 'Li', 'li@例え.jp', NULL, -5, 'cancelled'),
           (3, NULL, NULL, '12', NULL, 'active');
         CREATE TABLE orders (id INTEGER PRIMARY KEY, status TEXT, amount TEXT);
         INSERT INTO orders VALUES (1, 'paid', '250.00'), (2, 'cancelled', '900'), (3, 'paid', '99.99'),
           (4, 'paid', 'abc'), (5, NULL, '500'), (6, 'shipped', '101');",
    )
    .expect("fill");
}

#[test]
fn example_plugins_mask_filter_and_reshape() {
    let dir = tempfile::tempdir().expect("tempdir");
    create_people_db(&dir.path().join("source.db"));
    pipeline(
        dir.path(),
        "p.toml",
        &format!(
            r#"[source]
url = "sqlite://source.db"
[target]
url = "sqlite://target.db"
[[transform]]
plugin = "{mask}"
tables = ["people"]
config = {{ columns = "email, phone" }}
[[transform]]
plugin = "{reshape}"
tables = ["people"]
config = {{ split = "full_name=first_name,last_name", cents_to_decimal = "amount_cents=amount", rename = "status=state", drop = "full_name, amount_cents" }}
[[transform]]
plugin = "{filter}"
tables = ["orders"]
config = {{ where = "status != 'cancelled' and amount > 100" }}
"#,
            mask = plugin("mask_pii", false).display(),
            reshape = plugin("reshape", false).display(),
            filter = plugin("filter_rows", false).display(),
        ),
    );
    let out = run_dmp(dir.path(), &["run", "p.toml"]);
    // The order with amount `abc` is refused: exit code 1.
    assert_exit(&out, 1);
    let target = dir.path().join("target.db");
    let columns: Vec<String> = crate::support::columns(&target, "people")
        .into_iter()
        .map(|(n, _)| n)
        .collect();
    assert_eq!(
        columns,
        [
            "id",
            "email",
            "phone",
            "state",
            "first_name",
            "last_name",
            "amount"
        ]
    );
    let t = |s: &str| Value::Text(s.to_string());
    assert_eq!(
        rows(&target, "people"),
        vec![
            vec![
                Value::Integer(1),
                t("z***@example.com"),
                t("*************89"),
                t("active"),
                t("Zoë"),
                t("Müller"),
                t("123.45")
            ],
            vec![
                Value::Integer(2),
                t("l***@例え.jp"),
                Value::Null,
                t("cancelled"),
                t("Li"),
                Value::Null,
                t("-0.05")
            ],
            vec![
                Value::Integer(3),
                Value::Null,
                t("*12"),
                t("active"),
                Value::Null,
                Value::Null,
                Value::Null
            ],
        ]
    );
    let ids: Vec<Value> = rows(&target, "orders")
        .into_iter()
        .map(|r| r[0].clone())
        .collect();
    assert_eq!(ids, vec![Value::Integer(1), Value::Integer(6)]);
    let refused = dead_letters(dir.path(), "p", "orders");
    assert_eq!(refused.len(), 1, "{refused:?}");
    assert_eq!(refused[0].0, "transform");
    assert!(
        refused[0].1.starts_with("filter_rows (sha256 ")
            && refused[0].1.contains("`abc` is not a number"),
        "{}",
        refused[0].1
    );

    // Verify compares the target with the source's rows as the transforms
    // make them; the order a transform refused is counted, not compared.
    let out = run_dmp(dir.path(), &["verify", "p.toml", "--json"]);
    assert_exit(&out, 1);
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json report");
    let tables = report["tables"].as_array().expect("tables");
    let (orders, people) = (&tables[0], &tables[1]);
    assert_eq!(people["status"], "equal", "{report}");
    assert_eq!(people["source_hashing"], "dmp");
    assert_eq!(orders["unreadable_source_rows"], 1, "{report}");
    assert_eq!(orders["missing_in_target"], 0, "{report}");
    assert_eq!(orders["extra_in_target"], 0, "{report}");
    // A changed row is named, in the transformed column, and repaired.
    let conn = rusqlite::Connection::open(&target).expect("open target");
    conn.execute("UPDATE people SET state = 'gone' WHERE id = 1", [])
        .expect("update");
    let out = run_dmp(dir.path(), &["verify", "p.toml", "--tables", "people"]);
    assert_exit(&out, 1);
    assert!(
        text(&out.stdout).contains("id=\"1\": state: source \"active\", target \"gone\""),
        "{}",
        text(&out.stdout)
    );
    let out = run_dmp(
        dir.path(),
        &["verify", "p.toml", "--tables", "people", "--repair"],
    );
    assert_exit(&out, 0);

    let plan = run_dmp(dir.path(), &["plan", "p.toml"]);
    assert_exit(&plan, 0);
    let plan = text(&plan.stdout);
    assert!(
        plan.contains("transforms: mask_pii@") && plan.contains("→ reshape@"),
        "{plan}"
    );
    assert!(
        plan.contains("amount") && plan.contains("decimal(20,2)"),
        "{plan}"
    );
}

/// Runs the hostile plugin in `mode` on table `victim` while table
/// `bystander` has no transform; returns dmp's output.
fn run_hostile(dir: &Path, mode: &str) -> std::process::Output {
    let conn = Connection::open(dir.join("source.db")).expect("db");
    conn.execute_batch(
        "CREATE TABLE IF NOT EXISTS victim (id INTEGER PRIMARY KEY, n BIGINT, note TEXT);
         CREATE TABLE IF NOT EXISTS bystander (id INTEGER PRIMARY KEY, note TEXT);
         INSERT OR IGNORE INTO victim VALUES (1, 10, 'a'), (2, 20, 'b'), (3, 30, NULL), (4, 40, 'd'), (5, 50, 'e');
         INSERT OR IGNORE INTO bystander VALUES (1, 'x'), (2, 'y');",
    )
    .expect("fill");
    pipeline(
        dir,
        "p.toml",
        &format!(
            "[source]\nurl = \"sqlite://source.db\"\n[target]\nurl = \"sqlite://target.db\"\n[[transform]]\nplugin = \"{}\"\ntables = [\"victim\"]\nconfig = {{ mode = \"{mode}\" }}\nmemory_mb = 16\ntimeout_ms = 300\n[run]\nbatch_rows = 2\n",
            plugin("hostile", false).display()
        ),
    );
    run_dmp(dir, &["run", "p.toml"])
}

#[test]
fn hostile_plugins_fail_their_batches_and_the_host_goes_on() {
    let cases = [
        ("loop", "ran past its time limit"),
        ("alloc", "ran past its memory limit"),
        ("panic", "panicked: "),
        ("trap", "trapped"),
        ("refuse", "hostile plugin refuses this batch"),
        (
            "wrong-count",
            "returned an invalid result: output column id",
        ),
        ("wrong-type", "returned an invalid result"),
        ("fanout", "more than 100x fan-out"),
    ];
    for (mode, expected) in cases {
        let dir = tempfile::tempdir().expect("tempdir");
        let started = std::time::Instant::now();
        let out = run_hostile(dir.path(), mode);
        assert_exit(&out, 1);
        assert!(
            started.elapsed() < std::time::Duration::from_secs(60),
            "{mode} took {:?}",
            started.elapsed()
        );
        let target = dir.path().join("target.db");
        assert_eq!(
            rows(&target, "bystander").len(),
            2,
            "{mode}: bystander incomplete"
        );
        assert!(
            rows(&target, "victim").is_empty(),
            "{mode}: rows passed a failing plugin"
        );
        let refused = dead_letters(dir.path(), "p", "victim");
        assert_eq!(refused.len(), 5, "{mode}: {refused:?}");
        for (stage, error) in &refused {
            assert_eq!(stage, "transform");
            assert!(
                error.contains(expected) && error.contains("plugin hostile"),
                "{mode}: {error}"
            );
            assert!(error.contains("on table victim"), "{mode}: {error}");
        }
    }
}

#[test]
fn plugins_that_refuse_to_open_or_import_wasi_stop_before_any_row_moves() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = run_hostile(dir.path(), "fail-open");
    assert_exit(&out, 2);
    assert!(
        text(&out.stderr).contains("hostile plugin refuses table victim"),
        "{}",
        text(&out.stderr)
    );
    assert!(
        !dir.path().join("target.db").exists()
            || crate::support::tables(&dir.path().join("target.db")).is_empty()
    );

    let dir = tempfile::tempdir().expect("tempdir");
    create_every_type_db(&dir.path().join("source.db"));
    pipeline(
        dir.path(),
        "p.toml",
        &format!(
            "[source]\nurl = \"sqlite://source.db\"\n[target]\nurl = \"sqlite://target.db\"\n[[transform]]\nplugin = \"{}\"\n",
            plugin("identity", true).display()
        ),
    );
    let out = run_dmp(dir.path(), &["run", "p.toml"]);
    assert_exit(&out, 2);
    let err = text(&out.stderr);
    assert!(
        err.contains("imports wasi:") && err.contains("may import only dmp:transform/host@0.1.0"),
        "{err}"
    );
}

#[test]
fn on_error_fail_stops_at_the_first_failing_batch() {
    let dir = tempfile::tempdir().expect("tempdir");
    let _ = run_hostile(dir.path(), "refuse");
    let body = std::fs::read_to_string(dir.path().join("p.toml")).expect("read");
    pipeline(
        dir.path(),
        "p.toml",
        &format!("{body}on_error = \"fail\"\n"),
    );
    let out = run_dmp(dir.path(), &["run", "p.toml", "--restart"]);
    assert_exit(&out, 1);
    assert!(
        text(&out.stderr).contains("refuses this batch")
            && text(&out.stderr).contains("on_error = \"fail\""),
        "{}",
        text(&out.stderr)
    );
}

/// `dmp plugin test` in `dir`.
fn plugin_test(
    dir: &Path,
    wasm: &Path,
    schema: &str,
    rows: &str,
    config: &str,
) -> std::process::Output {
    let wasm = wasm.to_string_lossy();
    run_dmp(
        dir,
        &[
            "plugin", "test", &wasm, "--schema", schema, "--rows", rows, "--config", config,
        ],
    )
}

#[test]
fn plugin_test_shows_schema_and_outcomes_without_a_database() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        dir.path().join("schema.json"),
        r#"{"name": "orders", "columns": [{"name": "id", "type": "int64", "nullable": false}, {"name": "amount", "type": "text"}], "primary_key": ["id"]}"#,
    )
    .expect("schema");
    std::fs::write(dir.path().join("rows.jsonl"), "{\"id\": 1, \"amount\": \"250\"}\n{\"id\": 2, \"amount\": \"5\"}\n{\"id\": 3, \"amount\": \"abc\"}\n").expect("rows");
    let out = plugin_test(
        dir.path(),
        &plugin("filter_rows", false),
        "schema.json",
        "rows.jsonl",
        "where=amount > 100",
    );
    assert_exit(&out, 0);
    let stdout = text(&out.stdout);
    assert!(
        stdout.contains("output schema of table orders:\n  id int64 NOT NULL\n  amount text\n"),
        "{stdout}"
    );
    assert!(
        stdout.contains(
            "row 1: {\"id\":1,\"amount\":\"250\"}\n  kept: {\"id\":1,\"amount\":\"250\"}"
        ),
        "{stdout}"
    );
    assert!(
        stdout.contains("row 2: {\"id\":2,\"amount\":\"5\"}\n  dropped"),
        "{stdout}"
    );
    assert!(
        stdout.contains(
            "row 3: {\"id\":3,\"amount\":\"abc\"}\n  rejected: column amount: `abc` is not a number"
        ),
        "{stdout}"
    );
}

/// Copies `from` over `to` the way a plugin is published: a temporary file
/// renamed into place.
fn publish(from: &Path, to: &Path) {
    let tmp = to.with_extension("wasm.tmp");
    std::fs::copy(from, &tmp).expect("copy plugin");
    std::fs::rename(&tmp, to).expect("publish plugin");
}

fn wait_for(what: &str, child: &mut std::process::Child, done: impl Fn() -> bool) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    while !done() {
        if let Some(status) = child.try_wait().expect("try_wait") {
            panic!("dmp ended ({status}) before {what}: make the table bigger");
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no {what} within two minutes"
        );
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
}

/// A running `dmp` over `rows` events with the `stamp` plugin (v1) at
/// `live`, one ordered chunk, its log in `log`.
struct SwapRun {
    dir: tempfile::TempDir,
    live: PathBuf,
    target: PathBuf,
    log: PathBuf,
    child: std::process::Child,
}

fn start_swap_run(rows: i64, watch_plugins: bool) -> SwapRun {
    let dir = tempfile::tempdir().expect("tempdir");
    crate::support::create_events_db(&dir.path().join("source.db"), rows);
    let live = dir.path().join("plugin.wasm");
    publish(&plugin("stamp_v1", false), &live);
    pipeline(
        dir.path(),
        "p.toml",
        &format!(
            "[source]\nurl = \"sqlite://source.db\"\n[target]\nurl = \"sqlite://target.db\"\n[[transform]]\nplugin = \"plugin.wasm\"\n[run]\nbatch_rows = 500\nchunk_rows = 10000000\nparallelism = 1\nwatch_plugins = {watch_plugins}\n"
        ),
    );
    let log = dir.path().join("dmp.log");
    let child = crate::support::dmp(dir.path())
        .args(["run", "p.toml"])
        .env("RUST_LOG", "info")
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&log).expect("log"))
        .spawn()
        .expect("dmp starts");
    SwapRun {
        target: dir.path().join("target.db"),
        dir,
        live,
        log,
        child,
    }
}

#[test]
fn hot_swap_mid_run_moves_every_row_once_and_refuses_a_broken_version() {
    const ROWS: i64 = 1_000_000;
    let SwapRun {
        dir,
        live,
        target,
        log,
        mut child,
    } = start_swap_run(ROWS, true);
    let committed = || crate::support::committed_rows(&target);
    let logged = |needle: &str| std::fs::read_to_string(&log).is_ok_and(|l| l.contains(needle));
    wait_for("the first commit", &mut child, || committed() > 0);
    publish(&plugin("stamp_v2", false), &live);
    wait_for("the swap to v2", &mut child, || logged("plugin swapped"));
    publish(&plugin("stamp_broken", false), &live);
    wait_for("the broken version's refusal", &mut child, || {
        logged("hot swap refused")
    });
    let status = child.wait().expect("wait");
    let log_text = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(status.success(), "dmp failed: {status}\n{log_text}");
    assert!(
        log_text.contains("this build is broken on purpose"),
        "{log_text}"
    );

    // Every row once, each stamped by the version running when it passed:
    // v1 first, then v2, never the broken one.
    let got = rows(&target, "events");
    assert_eq!(got.len() as i64, ROWS);
    let source = rows(&dir.path().join("source.db"), "events");
    let mut stamps = Vec::new();
    for (row, expected) in got.iter().zip(&source) {
        assert_eq!(&row[..3], &expected[..], "row data changed");
        stamps.push(row[3].clone());
    }
    let v1 = Value::Text("v1".into());
    let v2 = Value::Text("v2".into());
    let switch = stamps
        .iter()
        .position(|s| *s == v2)
        .expect("no row was processed by v2");
    assert!(switch > 0, "no row was processed by v1");
    assert!(
        stamps[..switch].iter().all(|s| *s == v1),
        "a row before the swap was not stamped v1"
    );
    assert!(
        stamps[switch..].iter().all(|s| *s == v2),
        "a row after the swap was not stamped v2"
    );

    // The state store recorded which plugin version produced the last batch.
    let state = Connection::open(dir.path().join(".dmp/state.db")).expect("state");
    let recorded: String = state
        .query_row("SELECT plugins FROM chunks", [], |r| r.get(0))
        .expect("plugins");
    assert!(recorded.starts_with("plugin@"), "{recorded}");
}

/// A plugin built from another language by `make plugins`.
fn foreign_plugin(file: &str) -> PathBuf {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../target/plugins")
        .join(file);
    assert!(
        path.is_file(),
        "{} is missing: run `make plugins` (or `make test`)",
        path.display()
    );
    path
}

#[test]
fn rust_python_and_javascript_plugins_give_the_same_rows() {
    let dir = tempfile::tempdir().expect("tempdir");
    create_every_type_db(&dir.path().join("source.db"));
    let plugins = [
        ("rust", plugin("mask_pii", false)),
        ("python", foreign_plugin("mask_pii_py.wasm")),
        ("js", foreign_plugin("mask_pii_js.wasm")),
    ];
    let mut results = Vec::new();
    for (language, path) in &plugins {
        pipeline(
            dir.path(),
            &format!("{language}.toml"),
            &format!(
                "[source]\nurl = \"sqlite://source.db\"\n[target]\nurl = \"sqlite://{language}.db\"\n[tables]\ninclude = [\"every_type\"]\n[[transform]]\nplugin = \"{}\"\nconfig = {{ columns = \"txt, vc\" }}\n[run]\nbatch_rows = 3\n",
                path.display()
            ),
        );
        assert_exit(
            &run_dmp(dir.path(), &["run", &format!("{language}.toml")]),
            0,
        );
        results.push(rows(
            &dir.path().join(format!("{language}.db")),
            "every_type",
        ));
    }
    assert_eq!(results[0], results[1], "Python differs from Rust");
    assert_eq!(results[0], results[2], "JavaScript differs from Rust");
    // Masked where asked, everything else as in the source.
    let source = rows(&dir.path().join("source.db"), "every_type");
    let t = |s: &str| Value::Text(s.to_string());
    let (txt, vc) = (9, 10);
    let masked: Vec<(Value, Value)> = results[0]
        .iter()
        .map(|r| (r[txt].clone(), r[vc].clone()))
        .collect();
    assert_eq!(
        masked,
        vec![
            (t("***in"), t("**********rs")),
            (t(&format!("{}ne", "*".repeat(51))), t("***** 😀")),
            (Value::Null, Value::Null),
            (t("*"), t("********中文")),
        ]
    );
    for (got, want) in results[0].iter().zip(&source) {
        for (i, (g, w)) in got.iter().zip(want).enumerate() {
            if i != txt && i != vc {
                assert_eq!(g, w, "column {i} changed");
            }
        }
    }
}

/// Runs a build command of a scaffolded plugin, failing with its output.
fn build(dir: &Path, program: &str, args: &[&str]) {
    let out = std::process::Command::new(program)
        .args(args)
        .current_dir(dir)
        .env(
            "CARGO_TARGET_DIR",
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/plugins"),
        )
        .output()
        .unwrap_or_else(|e| panic!("{program} does not start: {e} (run `make plugins` first)"));
    assert!(
        out.status.success(),
        "{program} {args:?} failed:\n{}\n{}",
        text(&out.stdout),
        text(&out.stderr)
    );
}

#[test]
fn scaffolded_plugins_build_as_they_are_in_three_languages() {
    let dir = tempfile::tempdir().expect("tempdir");
    let rust_wasm = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../target/plugins/wasm32-unknown-unknown/release/shout_rs.wasm");
    let cases: [(&str, &str, PathBuf); 3] = [
        ("shout-rs", "rust", rust_wasm),
        (
            "shout-py",
            "python",
            dir.path().join("shout-py/shout_py.wasm"),
        ),
        ("shout-js", "js", dir.path().join("shout-js/shout_js.wasm")),
    ];
    for (name, lang, wasm) in cases {
        assert_exit(
            &run_dmp(dir.path(), &["plugin", "new", name, "--lang", lang]),
            0,
        );
        let project = dir.path().join(name);
        match lang {
            "rust" => build(
                &project,
                "cargo",
                &["build", "--release", "--target", "wasm32-unknown-unknown"],
            ),
            "python" => build(
                &project,
                "componentize-py",
                &[
                    "-d",
                    "wit",
                    "-w",
                    "plugin",
                    "componentize",
                    "--stub-wasi",
                    "-p",
                    ".",
                    "app",
                    "-o",
                    "shout_py.wasm",
                ],
            ),
            _ => {
                let modules =
                    Path::new(env!("CARGO_MANIFEST_DIR")).join("../plugins/js/node_modules");
                std::os::unix::fs::symlink(&modules, project.join("node_modules"))
                    .expect("link node_modules");
                build(&project, "node", &["build.mjs"]);
            }
        }
        let out = plugin_test(
            &project,
            &wasm,
            "sample/schema.json",
            "sample/rows.jsonl",
            "column=name",
        );
        assert_exit(&out, 0);
        let stdout = text(&out.stdout);
        assert!(
            stdout.contains("kept: {\"id\":1,\"name\":\"ZOË\"}"),
            "{lang}: {stdout}"
        );
        assert!(
            stdout.contains("row 2: {\"id\":2,\"name\":\"\"}\n  dropped"),
            "{lang}: {stdout}"
        );
        assert!(
            stdout.contains("kept: {\"id\":3,\"name\":null}"),
            "{lang}: {stdout}"
        );
    }
    assert_exit(&run_dmp(dir.path(), &["plugin", "new", "shout-rs"]), 2);
    assert_exit(&run_dmp(dir.path(), &["plugin", "new", "9 lives"]), 2);
}

#[test]
fn python_and_javascript_plugins_handle_every_column_type() {
    for file in ["rebuild_py.wasm", "rebuild_js.wasm"] {
        let dir = tempfile::tempdir().expect("tempdir");
        create_every_type_db(&dir.path().join("source.db"));
        pipeline(
            dir.path(),
            "p.toml",
            &format!(
                "[source]\nurl = \"sqlite://source.db\"\n[target]\nurl = \"sqlite://target.db\"\n[[transform]]\nplugin = \"{}\"\nmemory_mb = 256\n[run]\nbatch_rows = 3\n",
                foreign_plugin(file).display()
            ),
        );
        let out = run_dmp(dir.path(), &["run", "p.toml"]);
        assert_exit(&out, 0);
        assert_same_database(&dir.path().join("source.db"), &dir.path().join("target.db"));
    }
}

#[test]
fn with_watching_off_a_plugin_is_swapped_on_sighup_only() {
    const ROWS: i64 = 1_000_000;
    let SwapRun {
        dir: _dir,
        live,
        target,
        log,
        mut child,
    } = start_swap_run(ROWS, false);
    let committed = || crate::support::committed_rows(&target);
    let logged = |needle: &str| std::fs::read_to_string(&log).is_ok_and(|l| l.contains(needle));
    wait_for("the first commit", &mut child, || committed() > 0);
    publish(&plugin("stamp_v2", false), &live);
    // Long enough for a watcher to have swapped (it takes well under a
    // second): 200,000 more rows.
    let published_at = committed();
    wait_for("200,000 more rows", &mut child, || {
        committed() > published_at + 200_000
    });
    assert!(
        !logged("plugin swapped"),
        "the plugin was swapped without SIGHUP"
    );
    let status = std::process::Command::new("kill")
        .args(["-HUP", &child.id().to_string()])
        .status()
        .expect("kill -HUP");
    assert!(status.success());
    wait_for("the swap on SIGHUP", &mut child, || {
        logged("plugin swapped")
    });
    assert!(child.wait().expect("wait").success());
    let stamps: Vec<Value> = rows(&target, "events")
        .into_iter()
        .map(|r| r[3].clone())
        .collect();
    assert_eq!(stamps.len() as i64, ROWS);
    let switch = stamps
        .iter()
        .position(|s| *s == Value::Text("v2".into()))
        .expect("no row stamped v2");
    assert!(
        switch as i64 > published_at + 200_000,
        "v2 ran before the SIGHUP"
    );
    assert!(
        stamps[switch..]
            .iter()
            .all(|s| *s == Value::Text("v2".into()))
    );
}

#[test]
fn filter_rows_and_reshape_carry_every_type_through() {
    let dir = tempfile::tempdir().expect("tempdir");
    create_every_type_db(&dir.path().join("source.db"));
    pipeline(
        dir.path(),
        "p.toml",
        &format!(
            r#"[source]
url = "sqlite://source.db"
[target]
url = "sqlite://target.db"
[tables]
include = ["every_type"]
[[transform]]
plugin = "{filter}"
config = {{ where = "i16 >= 0" }}
[[transform]]
plugin = "{reshape}"
config = {{ rename = "txt=text_renamed", constant = "origin=legacy" }}
"#,
            filter = plugin("filter_rows", false).display(),
            reshape = plugin("reshape", false).display(),
        ),
    );
    assert_exit(&run_dmp(dir.path(), &["run", "p.toml"]), 0);
    let target = dir.path().join("target.db");
    let source_columns = crate::support::columns(&dir.path().join("source.db"), "every_type");
    let mut expected_columns = source_columns.clone();
    expected_columns[9].0 = "text_renamed".into();
    expected_columns.push(("origin".into(), "TEXT".into()));
    assert_eq!(
        crate::support::columns(&target, "every_type"),
        expected_columns
    );
    // Rows 2 (i16 = 32767) and 4 (i16 = 0) pass; every value as in the source.
    let expected: Vec<Vec<Value>> = rows(&dir.path().join("source.db"), "every_type")
        .into_iter()
        .filter(|r| matches!(r[2], Value::Integer(i) if i >= 0))
        .map(|mut r| {
            r.push(Value::Text("legacy".into()));
            r
        })
        .collect();
    assert_eq!(expected.len(), 2);
    assert_eq!(rows(&target, "every_type"), expected);
}
