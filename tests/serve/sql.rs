//! The service with the real PostgreSQL server: a change stream that
//! outlives a killed service, dead letters replayed, verify and repair,
//! and a plugin swapped under load — all through the API.

use std::time::{Duration, Instant};

use dmp_test_servers::{TestDb, postgres};

use crate::support::serve::Serve;
use crate::support::sql::sql_pipeline;
use crate::support::workload::{self, Dialect};
use crate::transform::plugin;

/// A pipeline named `name` between two databases, with extra `[run]` lines.
fn named(name: &str, source: &TestDb, target: &TestDb, run: &str) -> String {
    format!(
        "[pipeline]\nname = \"{name}\"\n{}",
        sql_pipeline(&source.url, &target.url, run)
    )
}

/// Waits until `done` holds, failing with `what` and the service's log.
pub(super) fn wait_for(serve: &Serve, what: &str, limit: Duration, done: impl Fn() -> bool) {
    let started = Instant::now();
    while !done() {
        assert!(
            started.elapsed() < limit,
            "{what} did not happen within {limit:?}; service log:\n{}",
            serve.log()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn a_stream_outlives_a_killed_service_and_its_slot_is_dropped_through_the_api() {
    let dir = tempfile::tempdir().expect("temp dir");
    let source = postgres().create_database("serve_cdc_source");
    let target = postgres().create_database("serve_cdc_target");
    workload::create_tables(&source, Dialect::Postgres);
    let mut serve = Serve::start(&dir.path().join("home"), &[], &[]);
    let admin = serve.token("admin");
    let slot = format!("dmp_serve_{}", source.name);
    let toml = format!(
        "{}[cdc]\nslot = \"{slot}\"\nheartbeat = \"1s\"\n",
        named(
            "stream",
            &source,
            &target,
            "mode = \"full+cdc\"\nbatch_rows = 500\nchunk_rows = 700"
        )
    );
    serve.create(&admin, &toml);
    let seed = crate::sql::cdc::seed();
    let writers = workload::start(&source, Dialect::Postgres, 300, seed, 0);
    serve
        .post_json(
            &admin,
            "/api/v1/pipelines/stream/start",
            &serde_json::json!({}),
        )
        .expect(202);
    serve.wait_status(&admin, "stream", Duration::from_secs(120), |s| {
        s["state"] == "streaming"
    });

    // A crash of the service: the stream comes back by itself.
    serve.kill9();
    serve.restart();
    for writer in writers {
        writer.join().expect("workload session");
    }
    let want = || workload::snapshot(&source, Dialect::Postgres);
    wait_for(
        &serve,
        "the target catching up",
        Duration::from_secs(120),
        || want() == workload::snapshot(&target, Dialect::Postgres),
    );
    let status = serve.status(&admin, "stream");
    assert_eq!(status["state"], "streaming", "{status}");
    let runs = serve
        .get(Some(&admin), "/api/v1/pipelines/stream/runs")
        .expect(200)
        .json();
    assert_eq!(runs[1]["status"], "interrupted", "the killed run: {runs}");
    let stream = serve
        .get(Some(&admin), "/api/v1/pipelines/stream/stream")
        .expect(200)
        .json();
    assert!(stream["target_position"].is_string(), "{stream}");

    // The slot is an admin's to drop, once the stream is stopped.
    let operator = serve.token("operator");
    serve
        .send(
            "DELETE",
            Some(&operator),
            "/api/v1/pipelines/stream/stream",
            "application/json",
            b"",
        )
        .expect(403);
    serve
        .send(
            "DELETE",
            Some(&admin),
            "/api/v1/pipelines/stream/stream",
            "application/json",
            b"",
        )
        .expect(409);
    serve
        .post_json(
            &operator,
            "/api/v1/pipelines/stream/stop",
            &serde_json::json!({}),
        )
        .expect(202);
    serve.wait_status(&admin, "stream", Duration::from_secs(60), |s| {
        s["state"] == "stopped"
    });
    serve
        .send(
            "DELETE",
            Some(&admin),
            "/api/v1/pipelines/stream/stream",
            "application/json",
            b"",
        )
        .expect(204);
    let held = source.scalar(&format!(
        "SELECT count(*) FROM pg_replication_slots WHERE slot_name = '{slot}'"
    ));
    assert_eq!(held, "0");
    // Stopped stays stopped after a restart.
    serve.kill9();
    serve.restart();
    assert_eq!(serve.status(&admin, "stream")["state"], "idle");
}

#[test]
fn settings_a_database_refuses_are_bad_requests_naming_them() {
    let dir = tempfile::tempdir().expect("temp dir");
    let source = postgres().create_database("serve_refused_source");
    let serve = Serve::start(&dir.path().join("home"), &[], &[]);
    let admin = serve.token("admin");
    let url = source.url.replace(&source.name, "no_such_database");
    let toml = format!(
        "[pipeline]\nname = \"refused\"\n[source]\nurl = \"{url}\"\n[target]\nurl = \"sqlite://t.db\"\n"
    );
    let refused = serve
        .post_toml(&admin, "/api/v1/pipelines/validate", &toml)
        .expect(400);
    let error = refused.json()["error"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(
        error.contains("source.url") && error.contains("no_such_database"),
        "{error}"
    );
    assert!(
        !serve.log().contains("ERROR"),
        "a refused setting is no server error: {}",
        serve.log()
    );
}

#[test]
fn dead_letters_are_shown_to_operators_and_replayed_through_the_api() {
    let dir = tempfile::tempdir().expect("temp dir");
    let source = postgres().create_database("serve_dlq_source");
    let target = postgres().create_database("serve_dlq_target");
    source.exec("CREATE TABLE items (id integer PRIMARY KEY, v integer NOT NULL); INSERT INTO items SELECT g, g * 10 FROM generate_series(1, 40) g;");
    target.exec("CREATE TABLE items (id integer PRIMARY KEY, v integer NOT NULL, CONSTRAINT small_v CHECK (v < 250))");
    let serve = Serve::start(&dir.path().join("home"), &[], &[]);
    let (admin, operator, viewer) = (
        serve.token("admin"),
        serve.token("operator"),
        serve.token("viewer"),
    );
    let toml = named("dlq", &source, &target, "batch_rows = 7")
        .replace("[run]", "if_exists = \"truncate\"\n[run]");
    serve.create(&admin, &toml);
    serve
        .post_json(
            &operator,
            "/api/v1/pipelines/dlq/start",
            &serde_json::json!({}),
        )
        .expect(202);
    serve.wait_status(&admin, "dlq", Duration::from_secs(60), |s| {
        s["state"] == "done"
    });

    let groups = serve
        .get(Some(&viewer), "/api/v1/pipelines/dlq/dead-letters")
        .expect(200)
        .json();
    assert_eq!(groups[0]["table"], "items", "{groups}");
    assert_eq!(groups[0]["rows"], 16, "{groups}");
    // Row data is for operators.
    serve
        .get(Some(&viewer), "/api/v1/pipelines/dlq/dead-letters/rows")
        .expect(403);
    let rows = serve
        .get(
            Some(&operator),
            "/api/v1/pipelines/dlq/dead-letters/rows?table=items",
        )
        .expect(200)
        .json();
    assert_eq!(rows.as_array().map(Vec::len), Some(16));
    assert!(
        rows[0]["row"].is_object()
            && rows[0]["error"]
                .as_str()
                .is_some_and(|e| e.contains("small_v")),
        "{}",
        rows[0]
    );

    // Still refused: they stay, with the error.
    let again = serve
        .post_json(
            &operator,
            "/api/v1/pipelines/dlq/dead-letters/replay",
            &serde_json::json!({}),
        )
        .expect(200)
        .json();
    assert_eq!(
        (again["replayed"].as_u64(), again["still_failing"].as_u64()),
        (Some(0), Some(16)),
        "{again}"
    );
    target.exec("ALTER TABLE items DROP CONSTRAINT small_v");
    let replayed = serve
        .post_json(
            &operator,
            "/api/v1/pipelines/dlq/dead-letters/replay",
            &serde_json::json!({"table": "items"}),
        )
        .expect(200)
        .json();
    assert_eq!(replayed["replayed"], 16, "{replayed}");
    assert_eq!(
        serve
            .get(Some(&viewer), "/api/v1/pipelines/dlq/dead-letters")
            .expect(200)
            .json(),
        serde_json::json!([])
    );
    assert_eq!(
        target.scalar("SELECT count(*) || ':' || sum(v) FROM items"),
        "40:8200"
    );
    let audit = serve.get(Some(&admin), "/api/v1/audit").expect(200).json();
    assert!(
        audit
            .as_array()
            .expect("entries")
            .iter()
            .any(|e| e["action"] == "dead_letters.replay"
                && e["result"]
                    .as_str()
                    .is_some_and(|r| r.starts_with("ok: 16 replayed"))),
        "{audit}"
    );
}

#[test]
fn verify_names_the_differing_rows_to_operators_and_repair_makes_the_target_equal() {
    let dir = tempfile::tempdir().expect("temp dir");
    let source = postgres().create_database("serve_verify_source");
    let target = postgres().create_database("serve_verify_target");
    source.exec("CREATE TABLE items (id integer PRIMARY KEY, v text); INSERT INTO items SELECT g, 'v' || g FROM generate_series(1, 500) g;");
    let serve = Serve::start(&dir.path().join("home"), &[], &[]);
    let (admin, operator, viewer) = (
        serve.token("admin"),
        serve.token("operator"),
        serve.token("viewer"),
    );
    serve.create(&admin, &named("check", &source, &target, ""));
    serve
        .post_json(
            &operator,
            "/api/v1/pipelines/check/start",
            &serde_json::json!({}),
        )
        .expect(202);
    serve.wait_status(&admin, "check", Duration::from_secs(60), |s| {
        s["state"] == "done"
    });
    target.exec("DELETE FROM items WHERE id = 7; UPDATE items SET v = 'changed' WHERE id = 300;");

    let verify = |repair: bool| {
        serve
            .post_json(
                &operator,
                "/api/v1/pipelines/check/verify",
                &serde_json::json!({"repair": repair}),
            )
            .expect(202);
        let started = Instant::now();
        loop {
            let job = serve
                .get(Some(&operator), "/api/v1/pipelines/check/verify")
                .expect(200)
                .json();
            if job["state"] != "running" {
                return job;
            }
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "verify did not end: {job}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    };
    let job = verify(false);
    assert_eq!(
        (job["state"].as_str(), job["equal"].as_bool()),
        (Some("done"), Some(false)),
        "{job}"
    );
    let differences = job["report"]["tables"][0]["differences"].to_string();
    assert!(
        differences.contains("\"7\"") && differences.contains("\"300\""),
        "{job}"
    );
    // A viewer sees the counts, not the rows.
    let seen = serve
        .get(Some(&viewer), "/api/v1/pipelines/check/verify")
        .expect(200)
        .json();
    assert!(
        seen["report"]["tables"][0].get("differences").is_none(),
        "{seen}"
    );
    assert_eq!(seen["report"]["tables"][0]["missing_in_target"], 1);
    serve
        .post_json(
            &viewer,
            "/api/v1/pipelines/check/verify",
            &serde_json::json!({}),
        )
        .expect(403);

    let repaired = verify(true);
    assert_eq!(repaired["equal"], true, "{repaired}");
    assert_eq!(
        target.scalar("SELECT count(*) || ':' || (SELECT v FROM items WHERE id = 300) FROM items"),
        "500:v300"
    );
}

#[test]
fn a_plugin_uploaded_under_load_is_swapped_in_and_a_broken_one_refused() {
    let dir = tempfile::tempdir().expect("temp dir");
    let source = postgres().create_database("serve_plugin_source");
    let target = postgres().create_database("serve_plugin_target");
    source.exec("CREATE TABLE items (id integer PRIMARY KEY, v text);");
    let serve = Serve::start(&dir.path().join("home"), &[], &[]);
    let (admin, operator) = (serve.token("admin"), serve.token("operator"));
    std::fs::create_dir_all(serve.data().join("plugins")).expect("plugins folder");
    std::fs::copy(
        plugin("stamp_v1", false),
        serve.data().join("plugins/stamp.wasm"),
    )
    .expect("plugin");
    let toml = format!(
        "{}[cdc]\nslot = \"dmp_serve_{}\"\nheartbeat = \"1s\"\n\n[[transform]]\nplugin = \"plugins/stamp.wasm\"\n",
        named("stamped", &source, &target, "mode = \"full+cdc\""),
        source.name
    );
    serve.create(&admin, &toml);
    serve
        .post_json(
            &operator,
            "/api/v1/pipelines/stamped/start",
            &serde_json::json!({}),
        )
        .expect(202);
    serve.wait_status(&admin, "stamped", Duration::from_secs(120), |s| {
        s["state"] == "streaming"
    });

    // Rows keep coming while versions change.
    let load = {
        let source = source.clone();
        std::thread::spawn(move || {
            for i in 1000..1300 {
                source.exec(&format!("INSERT INTO items VALUES ({i}, 'load')"));
                std::thread::sleep(Duration::from_millis(10));
            }
        })
    };
    let stamp_of = |id: i64| {
        target
            .try_scalar(&format!("SELECT stamped_by FROM items WHERE id = {id}"))
            .ok()
            .filter(|s| !s.is_empty())
    };
    let marked = |id: i64, stamp: &str| {
        source.exec(&format!("INSERT INTO items VALUES ({id}, 'marker')"));
        wait_for(
            &serve,
            &format!("row {id} stamped {stamp}"),
            Duration::from_secs(60),
            || stamp_of(id).is_some(),
        );
        assert_eq!(stamp_of(id).as_deref(), Some(stamp), "row {id}");
    };
    let swapped = |times: usize| {
        wait_for(&serve, "the hot swap", Duration::from_secs(60), || {
            let logs = serve
                .get(Some(&admin), "/api/v1/pipelines/stamped/logs?limit=1000")
                .json();
            logs.as_array()
                .expect("lines")
                .iter()
                .filter(|l| {
                    l["message"]
                        .as_str()
                        .is_some_and(|m| m.starts_with("plugin swapped"))
                })
                .count()
                >= times
        });
    };
    marked(1, "v1");
    let upload = |file: &str| {
        let bytes = std::fs::read(plugin(file, false)).expect("plugin bytes");
        serve.send(
            "POST",
            Some(&admin),
            "/api/v1/pipelines/stamped/plugins/stamp",
            "application/wasm",
            &bytes,
        )
    };
    upload("stamp_v2").expect(201);
    swapped(1);
    marked(2, "v2");

    let refused = upload("stamp_broken").expect(400);
    assert!(
        refused.json()["error"]
            .as_str()
            .is_some_and(|e| e.contains("broken on purpose")),
        "{}",
        refused.body
    );
    serve
        .send(
            "POST",
            Some(&operator),
            "/api/v1/pipelines/stamped/plugins/stamp",
            "application/wasm",
            b"\0asm",
        )
        .expect(403);
    marked(3, "v2");

    upload("stamp_v1").expect(201);
    swapped(2);
    marked(4, "v1");
    serve
        .post_json(
            &admin,
            "/api/v1/pipelines/stamped/plugins/stamp/rollback",
            &serde_json::json!({"version": 1}),
        )
        .expect(200);
    swapped(3);
    marked(5, "v2");

    load.join().expect("load");
    let versions = serve
        .get(Some(&admin), "/api/v1/pipelines/stamped/plugins")
        .expect(200)
        .json();
    assert_eq!(versions[0]["active"], 1, "{versions}");
    assert_eq!(
        versions[0]["versions"].as_array().map(Vec::len),
        Some(2),
        "the broken upload is not kept: {versions}"
    );
    wait_for(&serve, "every row", Duration::from_secs(60), || {
        source.scalar("SELECT count(*) FROM items") == target.scalar("SELECT count(*) FROM items")
    });
    assert_eq!(serve.status(&admin, "stamped")["state"], "streaming");
}

/// A two-way sync run by the service: its status shows a stream each way,
/// both sides' writes reach the other, and dropping its stream removes
/// both legs' slots.
#[test]
fn a_two_way_sync_shows_both_directions_and_drops_both_slots() {
    let dir = tempfile::tempdir().expect("temp dir");
    let a = postgres().create_database("serve_two_way_a");
    let b = postgres().create_database("serve_two_way_b");
    a.exec(
        "CREATE TABLE notes (id bigint PRIMARY KEY, body text NOT NULL);
         ALTER TABLE notes REPLICA IDENTITY FULL;
         INSERT INTO notes SELECT g, 'seed ' || g FROM generate_series(1, 100) g;",
    );
    let serve = Serve::start(&dir.path().join("home"), &[], &[]);
    let admin = serve.token("admin");
    serve.create(
        &admin,
        &format!(
            "{}[cdc]\nslot = \"serve_two_way\"\nheartbeat = \"1s\"\n",
            named("both", &a, &b, "mode = \"bidirectional\"")
        ),
    );
    serve
        .post_json(
            &admin,
            "/api/v1/pipelines/both/start",
            &serde_json::json!({}),
        )
        .expect(202);
    wait_for(&serve, "the first load", Duration::from_secs(60), || {
        b.try_scalar("SELECT count(*) FROM notes").ok().as_deref() == Some("100")
    });
    serve.wait_status(&admin, "both", Duration::from_secs(60), |s| {
        s["state"] == "streaming" && s["back"].is_object()
    });
    a.exec("INSERT INTO notes VALUES (1001, 'written on A')");
    b.exec("INSERT INTO notes VALUES (2001, 'written on B')");
    wait_for(
        &serve,
        "each side's write on the other",
        Duration::from_secs(60),
        || {
            b.try_scalar("SELECT count(*) FROM notes WHERE id = 1001")
                .ok()
                .as_deref()
                == Some("1")
                && a.try_scalar("SELECT count(*) FROM notes WHERE id = 2001")
                    .ok()
                    .as_deref()
                    == Some("1")
        },
    );
    let status = serve.wait_status(&admin, "both", Duration::from_secs(30), |s| {
        s["lag"]["changes"].as_u64() >= Some(1) && s["back"]["changes"].as_u64() >= Some(1)
    });
    assert_eq!(status["mode"], "bidirectional", "{status}");
    serve
        .post_json(
            &admin,
            "/api/v1/pipelines/both/stop",
            &serde_json::json!({}),
        )
        .expect(202);
    serve.wait_status(&admin, "both", Duration::from_secs(60), |s| {
        s["state"] == "stopped"
    });
    serve
        .send(
            "DELETE",
            Some(&admin),
            "/api/v1/pipelines/both/stream",
            "application/json",
            b"",
        )
        .expect(204);
    let left = a.scalar(
        "SELECT count(*) FROM pg_replication_slots WHERE slot_name IN ('serve_two_way', 'serve_two_way_b')",
    );
    assert_eq!(left, "0", "slots left after the drop");
}
