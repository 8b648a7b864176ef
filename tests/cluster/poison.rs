//! A poison chunk: the target refuses the rows of one chunk (a CHECK
//! constraint), with `on_error = "fail"`. That chunk ends as failed after
//! `--max-deliver` deliveries, named in `dmp run`'s error with the reason;
//! every other chunk is copied, and the table is not finished. Once the
//! cause is fixed, submitting again retries that chunk alone and finishes
//! the table.

use std::time::Duration;

use dmp_test_servers::{own_nats, postgres};

use super::{Workers, finished, progress_records, submit};
use crate::support::{assert_exit, pipeline, text};

#[test]
fn a_chunk_the_target_refuses_fails_after_max_deliver_and_the_rest_is_copied() {
    let nats = own_nats();
    let source = postgres().create_database("poison_src");
    source.exec(
        "CREATE TABLE readings (id bigint PRIMARY KEY, value int NOT NULL);
         INSERT INTO readings SELECT g, g % 1000 FROM generate_series(1, 100000) g;
         ANALYZE;",
    );
    let target = postgres().create_database("poison_dst");
    // The target refuses one row: its chunk cannot be written.
    target.exec(
        "CREATE TABLE readings (id bigint PRIMARY KEY, value int NOT NULL,
           CONSTRAINT no_55555 CHECK (id <> 55555))",
    );
    let dir = tempfile::tempdir().expect("tempdir");
    pipeline(
        dir.path(),
        "p.toml",
        &format!(
            "[source]\nurl = \"{}\"\n[target]\nurl = \"{}\"\nif_exists = \"append\"\n\
             [run]\nchunk_rows = 10000\non_error = \"fail\"\n",
            source.url, target.url
        ),
    );
    let mut workers = Workers::new(dir.path(), &nats.url());
    for name in ["w1", "w2"] {
        workers.start(name);
    }
    let run = submit(dir.path(), &nats.url(), &["--max-deliver", "3"]);
    let out = finished(run, dir.path(), &workers, Duration::from_secs(300));
    assert_exit(&out, 1);
    let said = text(&out.stderr)
        + &std::fs::read_to_string(dir.path().join("submit.log")).unwrap_or_default();
    assert!(
        said.contains("chunk") && said.contains("after 3 deliveries"),
        "{said}"
    );
    assert!(said.contains("no_55555"), "the reason is not given: {said}");

    let failed: Vec<_> = progress_records(&nats.url())
        .into_iter()
        .filter(|(key, v)| key.contains(".chunk.") && v["state"] == "failed")
        .collect();
    assert_eq!(failed.len(), 1, "{failed:?}");
    assert_eq!(failed[0].1["attempts"], 3, "{failed:?}");
    assert_eq!(failed[0].1["errors"].as_array().map(Vec::len), Some(3));
    // Every other chunk is there: what is missing is one range of keys,
    // the poisoned chunk's, around the refused row.
    let missing = target.scalar(
        "SELECT count(*) || ':' || min(g) || ':' || max(g) FROM generate_series(1, 100000) g
         WHERE NOT EXISTS (SELECT 1 FROM readings r WHERE r.id = g)",
    );
    let parts: Vec<i64> = missing
        .split(':')
        .map(|p| p.parse().expect("number"))
        .collect();
    let (count, low, high) = (parts[0], parts[1], parts[2]);
    assert_eq!(
        high - low + 1,
        count,
        "more than one range is missing: {missing}"
    );
    assert!(low <= 55_555 && 55_555 <= high, "{missing}");
    assert!(
        count <= 20_000,
        "more than the poisoned chunk is missing: {missing}"
    );
    assert_eq!(workers.logged("table done"), 0, "{}", workers.logs());

    // The cause fixed, the same submission again retries the failed chunk
    // only and finishes the table.
    target.exec("ALTER TABLE readings DROP CONSTRAINT no_55555");
    let run = submit(dir.path(), &nats.url(), &["--max-deliver", "3"]);
    let out = finished(run, dir.path(), &workers, Duration::from_secs(300));
    assert_exit(&out, 0);
    assert!(
        text(&out.stdout).contains("(resumed)"),
        "{}",
        text(&out.stdout)
    );
    assert_eq!(
        target.scalar("SELECT count(*) || ':' || sum(id) FROM readings"),
        "100000:5000050000"
    );
    assert_eq!(workers.logged("table done"), 1, "{}", workers.logs());
}

/// A worker that cannot open the run (the pipeline names an environment
/// variable its machine lacks) counts its attempts all the same: the
/// chunk fails after `--max-deliver` deliveries, and `dmp run` names the
/// variable and where the file uses it.
#[test]
fn a_worker_without_the_pipelines_environment_fails_the_chunk_naming_the_variable() {
    let nats = own_nats();
    let source = postgres().create_database("noenv_src");
    source.exec(
        "CREATE TABLE t (id bigint PRIMARY KEY); INSERT INTO t SELECT generate_series(1, 10);",
    );
    let target = postgres().create_database("noenv_dst");
    let dir = tempfile::tempdir().expect("tempdir");
    pipeline(
        dir.path(),
        "p.toml",
        &format!(
            "[source]\nurl = \"${{DMP_CLUSTER_SOURCE}}\"\n[target]\nurl = \"{}\"\n",
            target.url
        ),
    );
    let mut workers = Workers::new(dir.path(), &nats.url());
    workers.start("w1");
    // Only the submitter has the variable.
    let log = std::fs::File::create(dir.path().join("submit.log")).expect("log");
    let run = crate::support::dmp(dir.path())
        .args([
            "run",
            "p.toml",
            "--cluster",
            &nats.url(),
            "--max-deliver",
            "2",
        ])
        .env("DMP_CLUSTER_SOURCE", &source.url)
        .stdout(std::process::Stdio::piped())
        .stderr(log)
        .spawn()
        .expect("dmp run starts");
    let out = finished(run, dir.path(), &workers, Duration::from_secs(120));
    assert_exit(&out, 1);
    let said = std::fs::read_to_string(dir.path().join("submit.log")).unwrap_or_default();
    assert!(
        said.contains("p.toml:2 source.url: environment variable DMP_CLUSTER_SOURCE is not set")
            && said.contains("after 2 deliveries"),
        "{said}"
    );
    assert_eq!(target.scalar("SELECT count(*) FROM t"), "0");
}
