//! The nats-server is stopped in the middle of a load, or of a change
//! stream, and started again a moment later: the run retries what was cut
//! and goes on, every row and change on the bus exactly once.

use std::time::{Duration, Instant};

use dmp_test_servers::{own_nats, postgres};

use crate::sql::cdc::{interrupt, spawn_run};
use crate::support::bus::{changes_once, message_count, read_stream};
use crate::support::sql::sql_pipeline;
use crate::support::{assert_exit, pipeline, run_dmp};

const ROWS: usize = 60_000;

#[test]
fn a_load_survives_a_nats_server_restart() {
    let server = own_nats();
    let source = postgres().create_database("nats_restart_src");
    source.exec(&format!(
        "CREATE TABLE items (id bigint PRIMARY KEY, name text NOT NULL, price numeric(10,2), at timestamptz);
         INSERT INTO items SELECT g, 'item ' || g, g / 100.0, '2026-01-01'::timestamptz + g * interval '1 minute'
           FROM generate_series(1, {ROWS}) g;"
    ));
    let url = server.url();
    let dir = tempfile::tempdir().expect("tempdir");
    pipeline(
        dir.path(),
        "p.toml",
        &sql_pipeline(
            &source.url,
            &format!("{url}/RESTART"),
            "mode = \"full\"\nbatch_rows = 1000\nchunk_rows = 10000\nparallelism = 2",
        ),
    );
    let child = spawn_run(dir.path());
    let deadline = Instant::now() + Duration::from_secs(60);
    while message_count(&url, "RESTART") < (ROWS / 5) as u64 {
        assert!(Instant::now() < deadline, "the load did not start");
        std::thread::sleep(Duration::from_millis(100));
    }
    server.stop();
    std::thread::sleep(Duration::from_secs(2));
    server.start();
    // The client holds what it sends while the server is away, and
    // what times out is retried from the chunk's checkpoint.
    let out = child.wait_with_output().expect("dmp ends");
    assert_exit(&out, 0);
    let messages = read_stream(&url, "RESTART");
    assert_eq!(changes_once(&messages).len(), ROWS);
}

/// The nats-server is stopped for two seconds while a change stream is
/// publishing: the stream retries, what the server stored past a lost
/// message is published again after it, and every insert reaches the bus
/// exactly once.
#[test]
fn a_change_stream_survives_a_nats_server_restart() {
    const INSERTS: usize = 3_000;
    let server = own_nats();
    let source = postgres().create_database("nats_restart_cdc");
    source
        .exec("CREATE TABLE t (id int PRIMARY KEY, v int NOT NULL); INSERT INTO t VALUES (0, 0);");
    let url = server.url();
    let dir = tempfile::tempdir().expect("tempdir");
    pipeline(
        dir.path(),
        "p.toml",
        &format!(
            "{}[cdc]\nslot = \"dmp_nats_restart\"\nheartbeat = \"1s\"\n",
            sql_pipeline(
                &source.url,
                &format!("{url}/RESTART_CDC"),
                "mode = \"full+cdc\""
            )
        ),
    );
    let child = spawn_run(dir.path());
    let deadline = Instant::now() + Duration::from_secs(60);
    while message_count(&url, "RESTART_CDC") < 2 {
        assert!(Instant::now() < deadline, "the snapshot did not arrive");
        std::thread::sleep(Duration::from_millis(100));
    }
    // One insert per transaction, for a few seconds.
    let writer = {
        let source = source.clone();
        std::thread::spawn(move || {
            let script: String = (1..=INSERTS)
                .map(|i| format!("INSERT INTO t VALUES ({i}, {i});\n"))
                .collect();
            source.exec(&script);
        })
    };
    while message_count(&url, "RESTART_CDC") < 300 {
        assert!(Instant::now() < deadline, "the stream did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    server.stop();
    std::thread::sleep(Duration::from_secs(2));
    server.start();
    writer.join().expect("writer");
    let deadline = Instant::now() + Duration::from_secs(120);
    let inserts = |messages: &[crate::support::bus::BusMessage]| {
        changes_once(messages)
            .iter()
            .filter(|m| m.body["op"] == "c")
            .count()
    };
    while inserts(&read_stream(&url, "RESTART_CDC")) < INSERTS {
        assert!(Instant::now() < deadline, "the stream did not catch up");
        std::thread::sleep(Duration::from_millis(300));
    }
    let out = interrupt(child);
    assert_exit(&out, 0);
    // Whether this time the server stored changes past a lost one.
    let log = crate::support::text(&out.stderr);
    eprintln!(
        "retries: {}, out-of-order changes removed: {}",
        log.matches("retrying").count(),
        log.matches("changes stored past a lost one removed")
            .count()
    );
    let messages = read_stream(&url, "RESTART_CDC");
    assert_eq!(inserts(&messages), INSERTS, "every insert once");
    // In commit order: the server's restart left nothing out of order.
    let order: Vec<i64> = changes_once(&messages)
        .iter()
        .filter(|m| m.body["op"] == "c")
        .filter_map(|m| m.body["after"]["id"].as_i64())
        .collect();
    let sorted = order.windows(2).all(|w| w[0] < w[1]);
    assert!(sorted, "inserts out of commit order: {order:?}");
    assert_exit(&run_dmp(dir.path(), &["cdc", "drop-slot", "p.toml"]), 0);
}
