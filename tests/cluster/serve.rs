//! `dmp serve --cluster`: the service hands a `full+cdc` pipeline to the
//! cluster's workers, shows the stream's holder and progress, and a stop
//! through the API ends the stream in the cluster (its holder lets the
//! slot go). A pipeline with a password written out is refused before
//! anything travels on the bus.

use std::time::{Duration, Instant};

use dmp_test_servers::{own_nats, postgres};
use serde_json::json;

use super::{ACK_WAIT, Workers};
use crate::support::serve::Serve;
use crate::support::sql::scalar_i64;

const LEASE: &str = "3s";

#[test]
fn a_service_runs_a_stream_on_the_cluster_and_a_stop_ends_it_there() {
    let nats = own_nats();
    let url = nats.url();
    let dir = tempfile::tempdir().expect("temp dir");
    let source = postgres().create_database("serve_cluster_src");
    let target = postgres().create_database("serve_cluster_dst");
    source.exec(
        "CREATE TABLE ticks (id bigserial PRIMARY KEY, note text NOT NULL);
         INSERT INTO ticks (note) SELECT 'seed ' || g FROM generate_series(1, 1000) g;",
    );
    let lease = ["--lease-time", LEASE];
    let mut workers = Workers::new(dir.path(), &url).with_args(&lease);
    workers.start("w1");
    workers.start("w2");
    let serve = Serve::start(
        &dir.path().join("home"),
        &[
            "--cluster",
            &url,
            "--ack-wait",
            ACK_WAIT,
            "--lease-time",
            LEASE,
        ],
        &[],
    );
    let admin = serve.token("admin");

    // A secret written out would travel to every worker in clear: refused,
    // naming where it is, never quoting it.
    serve.create(
        &admin,
        "[pipeline]\nname = \"leaky\"\n\n[source]\nurl = \"postgres://app:s3cret-pw@127.0.0.1:1/shop\"\n\n\
         [target]\nurl = \"postgres://app@127.0.0.1:1/copy\"\n",
    );
    serve
        .post_json(&admin, "/api/v1/pipelines/leaky/start", &json!({}))
        .expect(202);
    let status = serve.wait_status(&admin, "leaky", Duration::from_secs(30), |s| {
        s["state"] == "failed"
    });
    let error = status["error"].as_str().unwrap_or_default();
    assert!(
        error.contains("leaky.toml source.url") && error.contains("secret written out"),
        "{status}"
    );
    assert!(!error.contains("s3cret-pw"), "{status}");
    assert_eq!(
        serve
            .get(Some(&admin), "/api/v1/pipelines/leaky/placement")
            .expect(200)
            .body,
        "null"
    );

    serve.create(
        &admin,
        &format!(
            "[pipeline]\nname = \"follow\"\n\n[source]\nurl = \"{}\"\n\n[target]\nurl = \"{}\"\n\n\
             [run]\nmode = \"full+cdc\"\n\n[cdc]\nslot = \"dmp_serve_cluster\"\nheartbeat = \"1s\"\n",
            source.url, target.url
        ),
    );
    serve
        .post_json(&admin, "/api/v1/pipelines/follow/start", &json!({}))
        .expect(202);
    let holder = wait_for(&serve, &workers, "a worker holding the stream", || {
        let placement = serve
            .get(Some(&admin), "/api/v1/pipelines/follow/placement")
            .expect(200)
            .json();
        placement["stream"]["worker"].as_str().map(str::to_string)
    });
    assert!(holder == "w1" || holder == "w2", "{holder}");
    source.exec("INSERT INTO ticks (note) SELECT 'streamed ' || g FROM generate_series(1, 500) g");
    wait_for(&serve, &workers, "the target to catch up", || {
        let copied = target
            .try_scalar("SELECT count(*) FROM ticks")
            .ok()
            .and_then(|n| n.parse::<i64>().ok());
        (copied == Some(1500)).then_some(())
    });
    let status = serve.wait_status(&admin, "follow", Duration::from_secs(30), |s| {
        s["state"] == "streaming" && s["lag"]["changes"].as_u64().is_some_and(|n| n >= 500)
    });
    assert_eq!(status["place"], "cluster", "{status}");

    serve
        .post_json(&admin, "/api/v1/pipelines/follow/stop", &json!({}))
        .expect(202);
    serve.wait_status(&admin, "follow", Duration::from_secs(30), |s| {
        s["state"] == "stopped"
    });
    assert_eq!(
        serve
            .get(Some(&admin), "/api/v1/pipelines/follow/placement")
            .expect(200)
            .body,
        "null"
    );
    // The holder lets the slot go within a third of the lease: no change
    // is read from it any more.
    wait_for(&serve, &workers, "the slot let go", || {
        let active = scalar_i64(
            &source,
            "SELECT count(*) FROM pg_replication_slots WHERE slot_name = 'dmp_serve_cluster' AND active",
        );
        (active == 0).then_some(())
    });
}

/// Polls `probe` for up to two minutes, showing the logs should it fail.
fn wait_for<T>(
    serve: &Serve,
    workers: &Workers,
    what: &str,
    mut probe: impl FnMut() -> Option<T>,
) -> T {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        if let Some(found) = probe() {
            return found;
        }
        assert!(
            Instant::now() < deadline,
            "waited for {what}\nservice:\n{}\n{}",
            serve.log(),
            workers.logs()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}
