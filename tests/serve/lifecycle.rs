//! A pipeline's life through the API: created, tested, started, followed
//! to the end through its events, its runs and logs read back.

use std::time::Duration;

use crate::support::serve::Serve;
use crate::support::{count, create_events_db};

fn sqlite_pipeline(name: &str) -> String {
    format!(
        "[pipeline]\nname = \"{name}\"\n\n[source]\nurl = \"sqlite://{name}-src.db\"\n\n[target]\nurl = \"sqlite://{name}-dst.db\"\n\n[run]\nbatch_rows = 500\n"
    )
}

#[test]
fn created_tested_started_and_followed_to_done() {
    let dir = tempfile::tempdir().expect("temp dir");
    let serve = Serve::start(&dir.path().join("home"), &[], &[]);
    let admin = serve.token("admin");
    create_events_db(&serve.data().join("life-src.db"), 20_000);
    // Public routes serve anyone, whatever stale token they send.
    serve.get(Some("dmp_0_stale"), "/healthz").expect(200);
    serve.get(None, "/api/v1/pipelines").expect(401);
    let toml = sqlite_pipeline("life");

    let plan = serve
        .post_toml(&admin, "/api/v1/pipelines/validate", &toml)
        .expect(200)
        .json();
    assert_eq!(plan["name"], "life");
    assert_eq!(plan["tables"][0]["name"], "events", "{plan}");
    assert!(
        plan["tables"][0]["columns"]
            .as_array()
            .is_some_and(|c| !c.is_empty())
    );
    assert_eq!(
        serve.get(Some(&admin), "/api/v1/pipelines/life").status,
        404,
        "validate saves nothing"
    );

    // Both ends are tried: a target that cannot be reached is named, at
    // once.
    for url in [
        "postgres://dmp@127.0.0.1:1/nowhere",
        "mysql://dmp@127.0.0.1:1/nowhere",
    ] {
        let unreachable = toml.replace("sqlite://life-dst.db", url);
        let asked = std::time::Instant::now();
        let refused = serve
            .post_toml(&admin, "/api/v1/pipelines/validate", &unreachable)
            .expect(502);
        assert!(
            refused.json()["error"]
                .as_str()
                .is_some_and(|e| e.contains("target.url")),
            "{}",
            refused.body
        );
        assert!(
            asked.elapsed() < Duration::from_secs(20),
            "{url}: {:?}",
            asked.elapsed()
        );
    }

    serve.create(&admin, &toml);
    serve
        .post_toml(&admin, "/api/v1/pipelines", &toml)
        .expect(409);
    let listed = serve
        .get(Some(&admin), "/api/v1/pipelines")
        .expect(200)
        .json();
    assert_eq!(listed[0]["name"], "life");
    assert_eq!(listed[0]["state"], "idle");

    let operator = serve.token("operator");
    let viewer = serve.token("viewer");
    // A follower of the log, there before the run starts, hears it all.
    let followed = std::thread::scope(|scope| {
        let follower =
            scope.spawn(|| serve.follow_logs(&viewer, "life", "&level=info", "run finished"));
        serve
            .post_json(
                &operator,
                "/api/v1/pipelines/life/start",
                &serde_json::json!({}),
            )
            .expect(202);
        follower.join().expect("log follower")
    });
    assert!(
        followed.iter().any(|l| l["message"]
            .as_str()
            .is_some_and(|m| m.starts_with("table planned"))),
        "{followed:?}"
    );
    let events = serve.follow_events(&admin, "life", |s| s["state"] == "done");
    assert!(events.iter().any(|(kind, _)| kind == "status"));
    assert_eq!(count(&serve.data().join("life-dst.db"), "events"), 20_000);

    let status = serve.status(&admin, "life");
    let table = &status["tables"][0];
    assert_eq!(
        (table["rows_done"].as_u64(), table["rows_total"].as_u64()),
        (Some(20_000), Some(20_000))
    );
    let runs = serve
        .get(Some(&admin), "/api/v1/pipelines/life/runs")
        .expect(200)
        .json();
    assert_eq!(
        (runs[0]["status"].as_str(), runs[0]["rows"].as_i64()),
        (Some("done"), Some(20_000))
    );
    let logs = serve
        .get(Some(&admin), "/api/v1/pipelines/life/logs")
        .expect(200)
        .json();
    assert!(
        logs.as_array().expect("lines").iter().any(|l| l["message"]
            .as_str()
            .is_some_and(|m| m.contains("run finished"))),
        "{logs}"
    );
    let metrics = serve.get(Some(&admin), "/metrics").expect(200).body;
    assert!(
        metrics.contains("dmp_rows_written_total{pipeline=\"life\",table=\"events\"} 20000"),
        "{metrics}"
    );

    // Started again: a second full run, listed first.
    serve
        .post_json(
            &operator,
            "/api/v1/pipelines/life/start",
            &serde_json::json!({"restart": true}),
        )
        .expect(202);
    serve.wait_status(&admin, "life", Duration::from_secs(60), |s| {
        s["state"] == "done" && s["run"] == 2
    });
    assert_eq!(
        serve
            .get(Some(&admin), "/api/v1/pipelines/life/runs")
            .json()[0]["run"],
        2
    );
}

/// Starts pipeline `name` and waits until it has copied some rows.
fn started_and_copying(serve: &Serve, token: &str, name: &str, restart: bool) {
    serve
        .post_json(
            token,
            &format!("/api/v1/pipelines/{name}/start"),
            &serde_json::json!({"restart": restart}),
        )
        .expect(202);
    let status = serve.wait_status(token, name, Duration::from_secs(60), |s| {
        s["tables"][0]["rows_done"].as_u64().is_some_and(|n| n > 0) || s["state"] == "done"
    });
    assert_eq!(
        status["state"], "running",
        "the load ended too soon to be interrupted: {status}"
    );
    // The run under way counts its rows so far.
    let runs = serve
        .get(Some(token), &format!("/api/v1/pipelines/{name}/runs"))
        .expect(200)
        .json();
    assert_eq!(runs[0]["status"], "running", "{runs}");
    assert!(runs[0]["rows"].as_i64().is_some_and(|n| n > 0), "{runs}");
}

#[test]
fn a_full_load_resumes_after_the_service_is_stopped_or_killed() {
    const ROWS: i64 = 400_000;
    let dir = tempfile::tempdir().expect("temp dir");
    let mut serve = Serve::start(&dir.path().join("home"), &[], &[]);
    let admin = serve.token("admin");
    create_events_db(&serve.data().join("big-src.db"), ROWS);
    serve.create(
        &admin,
        &sqlite_pipeline("big").replace("batch_rows = 500", "batch_rows = 200\nparallelism = 1"),
    );
    let target = serve.data().join("big-dst.db");

    // SIGTERM: the batches in flight commit, the service exits cleanly,
    // and the run comes back by itself at the next start.
    started_and_copying(&serve, &admin, "big", false);
    assert!(serve.terminate().success(), "{}", serve.log());
    let stopped_at = count(&target, "events");
    assert!(stopped_at > 0 && stopped_at < ROWS, "{stopped_at}");
    serve.restart();
    serve.wait_status(&admin, "big", Duration::from_secs(120), |s| {
        s["state"] == "done"
    });
    assert_eq!(count(&target, "events"), ROWS);
    let runs = serve
        .get(Some(&admin), "/api/v1/pipelines/big/runs")
        .expect(200)
        .json();
    assert_eq!(
        (runs[0]["status"].as_str(), runs[1]["status"].as_str()),
        (Some("done"), Some("interrupted")),
        "{runs}"
    );
    assert!(
        serve.log().contains("resum"),
        "the second run resumed: {}",
        serve.log()
    );

    // SIGKILL in the middle of a new run: the same, from the checkpoints.
    started_and_copying(&serve, &admin, "big", true);
    serve.kill9();
    serve.restart();
    serve.wait_status(&admin, "big", Duration::from_secs(120), |s| {
        s["state"] == "done"
    });
    assert_eq!(count(&target, "events"), ROWS);
    // A finished run is not started again by the next restart.
    serve.kill9();
    serve.restart();
    assert_eq!(serve.status(&admin, "big")["state"], "idle");
}

#[test]
fn a_schedule_keeps_running_and_comes_back_after_a_crash() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut serve = Serve::start(&dir.path().join("home"), &[], &[]);
    let admin = serve.token("admin");
    create_events_db(&serve.data().join("tick-src.db"), 100);
    serve.create(
        &admin,
        &format!("{}every = \"1s\"\n", sqlite_pipeline("tick")),
    );
    serve
        .post_json(
            &admin,
            "/api/v1/pipelines/tick/start",
            &serde_json::json!({}),
        )
        .expect(202);
    let runs = |serve: &Serve| {
        serve
            .get(Some(&admin), "/api/v1/pipelines/tick/runs")
            .expect(200)
            .json()
            .as_array()
            .map_or(0, Vec::len)
    };
    let started = std::time::Instant::now();
    while runs(&serve) < 2 {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "{}",
            serve.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    serve.kill9();
    serve.restart();
    let before = runs(&serve);
    while runs(&serve) < before + 2 {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the schedule did not come back: {}",
            serve.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    serve
        .post_json(
            &admin,
            "/api/v1/pipelines/tick/stop",
            &serde_json::json!({}),
        )
        .expect(202);
    serve.wait_status(&admin, "tick", Duration::from_secs(30), |s| {
        s["state"] == "stopped"
    });
}
