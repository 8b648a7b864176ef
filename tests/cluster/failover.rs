//! CDC failover: a `full+cdc` pipeline submitted to two workers; one of
//! them takes the change stream's lease and runs it. Under a write
//! workload, that holder is SIGKILLed: the other takes the stream over
//! within the lease time and goes on from the target's checkpoint, and
//! the target ends equal to the source, nothing lost or doubled (every
//! update bumps a counter).

use std::time::{Duration, Instant};

use dmp_test_servers::{own_nats, postgres};

use super::{Workers, progress_records, submit};
use crate::sql::cdc::{interrupt, seed};
use crate::support::sql::sql_pipeline;
use crate::support::workload::{self, Dialect};
use crate::support::{assert_exit, dmp, pipeline};

const LEASE: &str = "3s";

/// The holder of the stream and its epoch, once one reports.
fn stream_holder(url: &str) -> Option<(String, u64)> {
    progress_records(url)
        .into_iter()
        .find(|(key, _)| key.starts_with("stream."))
        .and_then(|(_, v)| Some((v["worker"].as_str()?.to_string(), v["epoch"].as_u64()?)))
}

fn wait_for_holder(
    url: &str,
    other_than: Option<&(String, u64)>,
    workers: &Workers,
) -> (String, u64) {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        if let Some(holder) = stream_holder(url)
            && other_than.is_none_or(|old| holder.0 != old.0 && holder.1 > old.1)
        {
            return holder;
        }
        assert!(
            Instant::now() < deadline,
            "no worker took the stream\n{}",
            workers.logs()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn a_change_stream_moves_to_another_worker_when_its_holder_is_killed() {
    let nats = own_nats();
    let url = nats.url();
    let source = postgres().create_database("failover_src");
    let target = postgres().create_database("failover_dst");
    workload::create_tables(&source, Dialect::Postgres);
    let dir = tempfile::tempdir().expect("tempdir");
    pipeline(
        dir.path(),
        "p.toml",
        &format!(
            "{}[cdc]\nslot = \"dmp_failover\"\nheartbeat = \"1s\"\n",
            sql_pipeline(&source.url, &target.url, "mode = \"full+cdc\"")
        ),
    );
    let lease = ["--lease-time", LEASE];
    let mut workers = Workers::new(dir.path(), &url).with_args(&lease);
    workers.start("w1");
    workers.start("w2");
    let mut watching = submit(dir.path(), &url, &lease);
    let first = wait_for_holder(&url, None, &workers);
    // The snapshot is copied and the stream runs.
    let deadline = Instant::now() + Duration::from_secs(120);
    while source.scalar("SELECT count(*) FROM accounts")
        != target
            .try_scalar("SELECT count(*) FROM accounts")
            .unwrap_or_default()
    {
        assert!(
            Instant::now() < deadline,
            "the snapshot was not copied\n{}",
            workers.logs()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let seed = seed();
    let writers = workload::start(&source, Dialect::Postgres, 300, seed, 0);
    std::thread::sleep(Duration::from_millis(1500));
    workers.kill(&first.0);
    let killed = Instant::now();
    let second = wait_for_holder(&url, Some(&first), &workers);
    let took = killed.elapsed();
    eprintln!(
        "{} took the stream from {} after {took:?}",
        second.0, first.0
    );
    // The lease time, a renewal period to notice, and the new holder's
    // start (a debug build, a busy machine).
    assert!(
        took < Duration::from_secs(20),
        "taken over after {took:?}\n{}",
        workers.logs()
    );
    for writer in writers {
        writer.join().expect("workload session");
    }
    workload::wait_until_in_sync(
        &mut watching,
        &source,
        Dialect::Postgres,
        &target,
        Dialect::Postgres,
        Duration::from_secs(120),
        |_| workers.logs(),
    );
    let out = dmp(dir.path())
        .args(["run", "p.toml", "--cluster", &url, "--stop"])
        .output()
        .expect("dmp starts");
    assert_exit(&out, 0);
    let out = interrupt(watching);
    assert_exit(&out, 0);
    // The holder lets go of the stream and its slot: it can be dropped.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let out = dmp(dir.path())
            .args(["cdc", "drop-slot", "p.toml"])
            .output()
            .expect("dmp starts");
        if out.status.success() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the slot stayed busy\n{}",
            workers.logs()
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}
