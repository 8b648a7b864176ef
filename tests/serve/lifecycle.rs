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
    serve
        .post_json(
            &operator,
            "/api/v1/pipelines/life/start",
            &serde_json::json!({}),
        )
        .expect(202);
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
