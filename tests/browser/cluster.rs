//! `dmp serve --cluster`: a full load the service hands to two workers;
//! its page shows each worker's share and which worker holds (or did)
//! each chunk, as the cluster's progress records say.

use std::collections::BTreeSet;
use std::time::Duration;

use dmp_test_servers::{own_nats, postgres};
use serde_json::json;

use super::PASSWORD;
use crate::cluster::{ACK_WAIT, Workers};
use crate::support::browser::{Browser, WAIT};
use crate::support::serve::Serve;
use crate::support::sql::scalar_i64;

#[test]
fn the_page_of_a_load_on_the_cluster_shows_which_worker_holds_which_chunk() {
    let nats = own_nats();
    let dir = tempfile::tempdir().expect("temp dir");
    let source = postgres().create_database("browser_cluster_source");
    let target = postgres().create_database("browser_cluster_target");
    source.exec(
        "CREATE TABLE readings (id bigint PRIMARY KEY, value int NOT NULL, note text NOT NULL);
         INSERT INTO readings SELECT g, g % 1000, 'reading ' || g FROM generate_series(1, 200000) g;
         ANALYZE;",
    );
    let mut workers = Workers::new(dir.path(), &nats.url());
    workers.start("w1");
    workers.start("w2");
    let serve = Serve::start(
        &dir.path().join("home"),
        &["--cluster", &nats.url(), "--ack-wait", ACK_WAIT],
        &[],
    );
    serve.user("ada", "admin", PASSWORD);
    let admin = serve.token("admin");
    serve.create(
        &admin,
        &format!(
            "[pipeline]\nname = \"spread\"\n\n[source]\nurl = \"{}\"\n\n[target]\nurl = \"{}\"\n\n\
             [run]\nchunk_rows = 10000\n",
            source.url, target.url
        ),
    );
    serve
        .post_json(&admin, "/api/v1/pipelines/spread/start", &json!({}))
        .expect(202);

    let browser = Browser::start("cluster");
    browser.sign_in(&serve.url, "ada", PASSWORD);
    browser.goto(&format!("{}/#/p/spread", serve.url));
    browser.wait_text("cluster-summary", WAIT, "a run", |t| t.starts_with("Run "));
    let status = serve.wait_status(&admin, "spread", Duration::from_secs(240), |s| {
        s["state"] == "done" || s["state"] == "failed"
    });
    assert_eq!(
        status["state"],
        "done",
        "{status}\nworkers:\n{}",
        workers.logs()
    );
    assert_eq!(status["place"], "cluster", "{status}");
    assert_eq!(
        scalar_i64(&target, "SELECT count(*) FROM readings"),
        200_000
    );
    assert_eq!(
        source.scalar("SELECT md5(string_agg(id || ':' || value || ':' || note, ',' ORDER BY id)) FROM readings"),
        target.scalar("SELECT md5(string_agg(id || ':' || value || ':' || note, ',' ORDER BY id)) FROM readings"),
    );

    // The API's placement: every chunk done, each by one of the workers.
    let placement = serve
        .get(Some(&admin), "/api/v1/pipelines/spread/placement")
        .expect(200)
        .json();
    let work = placement["work"].as_array().expect("work").clone();
    let chunks: Vec<_> = work.iter().filter(|w| w["chunk"].is_u64()).collect();
    assert!(chunks.len() >= 10, "{placement}");
    assert!(work.iter().all(|w| w["state"] == "done"), "{placement}");
    let doers: BTreeSet<&str> = chunks.iter().filter_map(|w| w["worker"].as_str()).collect();
    assert_eq!(
        doers,
        BTreeSet::from(["w1", "w2"]),
        "both workers copy chunks: {placement}"
    );

    // The page shows the same: each chunk's row names its worker.
    browser.wait_for("every chunk shown done", WAIT, |b| {
        chunks
            .iter()
            .all(|w| {
                let id = format!("cluster-work-readings-{}", w["chunk"]);
                b.peek(&id, Some("data-state")).as_deref() == Some("done")
            })
            .then_some(())
    });
    for w in &chunks {
        let id = format!("cluster-work-readings-{}", w["chunk"]);
        assert_eq!(
            browser.peek(&id, Some("data-worker")).as_deref(),
            w["worker"].as_str(),
            "{id}"
        );
    }
    assert_eq!(
        browser
            .peek("cluster-work-readings-finish", Some("data-state"))
            .as_deref(),
        Some("done")
    );
    assert!(browser.present("cluster-work-finish"));
    for name in ["w1", "w2"] {
        assert!(browser.present(&format!("cluster-worker-{name}")), "{name}");
    }
    browser.screenshot("done");
}
