//! A run on a JetStream cluster of three servers, every stream kept on
//! all three: the server leading the work queue's stream is SIGKILLed in
//! the middle of the run; the others elect a new leader and the run
//! completes, every row once.

use std::time::{Duration, Instant};

use dmp_test_servers::{own_nats_cluster, postgres};

use super::{Workers, finished, submit};
use crate::support::sql::sql_pipeline;
use crate::support::{assert_exit, pipeline};

/// Runs `ask` with a JetStream context on the server at `url`.
fn with_jetstream<T>(url: &str, ask: impl AsyncFnOnce(async_nats::jetstream::Context) -> T) -> T {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let client = async_nats::connect(url).await.expect("connects");
        ask(async_nats::jetstream::new(client)).await
    })
}

/// The name of the server leading `stream`, asked of the server at `url`.
fn stream_leader(url: &str, stream: &str) -> String {
    with_jetstream(url, async |js| {
        let mut stream = js.get_stream(stream).await.expect("the stream exists");
        let info = stream.info().await.expect("stream info");
        info.cluster
            .as_ref()
            .and_then(|c| c.leader.clone())
            .expect("the stream has a leader")
    })
}

/// Waits until the cluster's JetStream answers (its meta leader elected).
fn wait_for_jetstream(url: &str) {
    with_jetstream(url, async |js| {
        let deadline = Instant::now() + Duration::from_secs(60);
        // "Stream not found" is an answer; a timeout or "temporarily
        // unavailable" is a cluster still forming.
        loop {
            match js.get_stream("READY_PROBE").await {
                Err(e) if e.to_string().contains("not found") => return,
                _ => {}
            }
            assert!(
                Instant::now() < deadline,
                "the JetStream cluster did not form"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    });
}

#[test]
fn a_run_completes_when_the_work_queue_leader_is_killed() {
    let cluster = own_nats_cluster(3);
    let source = postgres().create_database("jsc_src");
    source.exec(
        "CREATE TABLE events (id bigint PRIMARY KEY, kind text NOT NULL, at timestamptz NOT NULL);
         INSERT INTO events SELECT g, 'kind ' || (g % 17), timestamptz '2024-01-01 00:00:00+00' + g * interval '1 minute'
           FROM generate_series(1, 400000) g;
         ANALYZE;",
    );
    let target = postgres().create_database("jsc_dst");
    let dir = tempfile::tempdir().expect("tempdir");
    pipeline(
        dir.path(),
        "p.toml",
        &sql_pipeline(
            &source.url,
            &target.url,
            "chunk_rows = 20000\nbatch_rows = 5000",
        ),
    );
    let replicas = ["--replicas", "3"];
    wait_for_jetstream(&cluster.server("dmp-n1").url());
    let mut workers = Workers::new(dir.path(), &cluster.url()).with_args(&replicas);
    for name in ["w1", "w2", "w3"] {
        workers.start(name);
    }
    let mut run = submit(dir.path(), &cluster.url(), &replicas);
    let deadline = Instant::now() + Duration::from_secs(180);
    while target
        .try_scalar("SELECT count(*) FROM _dmp_checkpoints WHERE done")
        .map_or(true, |n| n.parse::<u32>().unwrap_or(0) < 2)
    {
        let ended = run.try_wait().expect("try_wait");
        assert!(
            Instant::now() < deadline && ended.is_none(),
            "no chunk was done (the submitter: {ended:?})\n{}\n{}",
            std::fs::read_to_string(dir.path().join("submit.log")).unwrap_or_default(),
            workers.logs()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let leader = stream_leader(&cluster.server("dmp-n1").url(), "DMP_WORK");
    cluster.server(&leader).kill();
    let out = finished(run, dir.path(), &workers, Duration::from_secs(300));
    assert_exit(&out, 0);
    let fingerprint = "SELECT count(*) || ':' || sum(hashtext(e::text)::bigint) FROM events e";
    assert_eq!(
        target.scalar(fingerprint),
        source.scalar(fingerprint),
        "killed {leader}\n{}",
        workers.logs()
    );
}
