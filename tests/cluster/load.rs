//! Full loads shared by three workers, one SIGKILLed in the middle of a
//! chunk and a fourth joining mid-run: PostgreSQL → PostgreSQL (2M rows,
//! foreign key and index built once at the end) and SQLite → MariaDB.

use std::time::Duration;

use dmp_test_servers::{TestDb, mariadb, own_nats, postgres};

use super::{Workers, chunks_by_worker, finished, latest_records, submit, wait_until_copying};
use crate::support::sql::sql_pipeline;
use crate::support::{assert_exit, pipeline, text};

const ORDERS: i64 = 2_000_000;

fn postgres_source() -> TestDb {
    let source = postgres().create_database("cluster_src");
    source.exec(&format!(
        "CREATE TABLE customers (id bigint PRIMARY KEY, name text NOT NULL);
         INSERT INTO customers SELECT g, 'customer ' || g FROM generate_series(1, 1000) g;
         CREATE TABLE orders (id bigint PRIMARY KEY,
           customer_id bigint NOT NULL REFERENCES customers (id),
           amount numeric(12,2) NOT NULL, note text, placed timestamptz NOT NULL);
         CREATE INDEX orders_customer ON orders (customer_id);
         INSERT INTO orders SELECT g, 1 + g % 1000, (g % 100000) / 100.0, md5(g::text),
           timestamptz '2024-01-01 00:00:00+00' + g * interval '1 second'
           FROM generate_series(1, {ORDERS}) g;
         ANALYZE;"
    ));
    source
}

/// Rows and a hash over every row's text: equal on both sides only when
/// every row is there once, unchanged.
fn fingerprint(db: &TestDb, table: &str) -> String {
    db.scalar(&format!(
        "SELECT count(*) || ':' || coalesce(sum(hashtext(t::text)::bigint), 0) FROM {table} t"
    ))
}

#[test]
fn three_workers_load_postgres_into_postgres_through_a_kill_and_a_join() {
    let nats = own_nats();
    let source = postgres_source();
    let target = postgres().create_database("cluster_dst");
    let dir = tempfile::tempdir().expect("tempdir");
    pipeline(
        dir.path(),
        "p.toml",
        &sql_pipeline(&source.url, &target.url, "chunk_rows = 100000"),
    );
    let (workers, out, killed) = share_with_a_kill_and_a_join(dir.path(), &nats.url(), 3);
    let summary = text(&out.stdout);
    assert!(summary.contains(&format!("{ORDERS} rows")), "{summary}");

    for table in ["customers", "orders"] {
        assert_eq!(
            fingerprint(&target, table),
            fingerprint(&source, table),
            "table {table} differs\n{}",
            workers.logs()
        );
    }
    // The finish steps ran, once: the index and the foreign key are there.
    assert_eq!(
        target.scalar("SELECT count(*) FROM pg_indexes WHERE indexname = 'orders_customer'"),
        "1"
    );
    assert_eq!(
        target.scalar("SELECT count(*) FROM pg_constraint WHERE contype = 'f' AND conrelid = 'orders'::regclass"),
        "1"
    );
    assert_eq!(workers.logged("table done"), 2, "{}", workers.logs());
    assert_eq!(workers.logged("run finished"), 1, "{}", workers.logs());
    assert_each_did_a_part(&nats.url(), &["w1", "w3", "w4"], &workers);
    // The chunk w2 held was copied again elsewhere, from its checkpoint.
    let record = latest_records(&nats.url())
        .remove(&killed)
        .unwrap_or_default();
    assert!(
        record["state"] == "done"
            && record["worker"] != "w2"
            && record["attempts"].as_u64() > Some(1),
        "chunk {killed}, held by w2 when it was killed, was not delivered again: {record}\n{}",
        workers.logs()
    );
}

/// Runs `dir/p.toml` on workers w1, w2 and w3; once `done` chunks are
/// finished and w2 holds one, SIGKILLs w2 and starts w4. Returns the
/// workers, how the run ended (exit 0 asserted) and the record key of the
/// chunk w2 held.
fn share_with_a_kill_and_a_join(
    dir: &std::path::Path,
    url: &str,
    done: u64,
) -> (Workers, std::process::Output, String) {
    let mut workers = Workers::new(dir, url);
    for name in ["w1", "w2", "w3"] {
        workers.start(name);
    }
    let run = submit(dir, url, &[]);
    let held = wait_until_copying(url, "w2", done, &workers);
    workers.kill("w2");
    workers.start("w4");
    let out = finished(run, dir, &workers, Duration::from_secs(600));
    assert_exit(&out, 0);
    (workers, out, held)
}

fn assert_each_did_a_part(url: &str, names: &[&str], workers: &Workers) {
    let done = chunks_by_worker(url);
    for name in names {
        let chunks = done
            .iter()
            .find(|(worker, _)| worker == name)
            .map_or(0, |(_, chunks)| *chunks);
        assert!(
            chunks > 0,
            "worker {name} finished no chunk: {done:?}\n{}",
            workers.logs()
        );
    }
}

#[test]
fn three_workers_load_sqlite_into_mariadb_through_a_kill_and_a_join() {
    let nats = own_nats();
    let dir = tempfile::tempdir().expect("tempdir");
    let source = dir.path().join("shop.db");
    let rows = 300_000;
    {
        let conn = rusqlite::Connection::open(&source).expect("sqlite");
        conn.execute_batch(&format!(
            "CREATE TABLE items (id INTEGER PRIMARY KEY, name TEXT NOT NULL, qty INTEGER, price REAL);
             WITH RECURSIVE g(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM g WHERE n < {rows})
             INSERT INTO items SELECT n, 'item ' || n, n % 97, n / 4.0 FROM g;
             CREATE INDEX items_name ON items (name);"
        ))
        .expect("source");
    }
    let target = mariadb().create_database("cluster_items");
    pipeline(
        dir.path(),
        "p.toml",
        &sql_pipeline(
            &format!("sqlite://{}", source.display()),
            &target.url,
            "chunk_rows = 4000\nbatch_rows = 1000",
        ),
    );
    let (workers, _, _) = share_with_a_kill_and_a_join(dir.path(), &nats.url(), 2);

    assert_eq!(
        target.scalar("SELECT CONCAT(count(*), ':', count(DISTINCT id), ':', sum(id), ':', sum(qty), ':', sum(price)) FROM items"),
        format!("{rows}:{rows}:{}:{}:{}", rows * (rows + 1) / 2, (1..=rows).map(|n| n % 97).sum::<i64>(), rows * (rows + 1) / 8),
        "{}",
        workers.logs()
    );
    assert_eq!(
        target.scalar("SELECT count(*) FROM information_schema.statistics WHERE table_schema = DATABASE() AND table_name = 'items' AND index_name = 'items_name'"),
        "1"
    );
    assert_eq!(workers.logged("table done"), 1, "{}", workers.logs());
    assert_each_did_a_part(&nats.url(), &["w1", "w3", "w4"], &workers);
}
