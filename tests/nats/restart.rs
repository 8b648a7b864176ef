//! The nats-server is stopped in the middle of a load and started again a
//! moment later: the load retries what was cut and completes, every row on
//! the bus exactly once.

use std::time::{Duration, Instant};

use dmp_test_servers::{own_nats, postgres};

use crate::sql::cdc::spawn_run;
use crate::support::bus::{changes_once, message_count, read_stream};
use crate::support::sql::sql_pipeline;
use crate::support::{assert_exit, pipeline};

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
