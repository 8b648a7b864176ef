//! A full copy onto the bus, then read back from it into PostgreSQL and
//! MariaDB by change streams: both equal the source (`dmp verify`).

use std::path::Path;
use std::time::Duration;

use dmp_test_servers::{mariadb, nats, postgres};

use crate::sql::cdc::{interrupt, own_stderr, spawn_run};
use crate::support::bus::{changes_once, read_stream};
use crate::support::sql::sql_pipeline;
use crate::support::workload::{self, Dialect};
use crate::support::{assert_exit, pipeline, run_dmp, text};

/// `mode = "cdc"` from `stream` into `target`, in `dir`.
fn from_bus(dir: &Path, bus: &str, target: &str) {
    pipeline(
        dir,
        "p.toml",
        &sql_pipeline(bus, target, "mode = \"cdc\"\nbatch_rows = 500"),
    );
}

#[test]
fn postgres_to_nats_and_back_to_postgres_and_mariadb() {
    let source = postgres().create_database("nats_rt_source");
    workload::create_tables(&source, Dialect::Postgres);
    let bus = format!("{}/RT_ONE?subject_prefix=rt", nats().url());
    let dir = tempfile::tempdir().expect("tempdir");
    pipeline(
        dir.path(),
        "p.toml",
        &sql_pipeline(
            &source.url,
            &bus,
            "mode = \"full\"\nchunk_rows = 700\nparallelism = 2",
        ),
    );
    let out = run_dmp(dir.path(), &["run", "p.toml"]);
    assert_exit(&out, 0);

    let messages = read_stream(&nats().url(), "RT_ONE");
    let changes = changes_once(&messages);
    assert_eq!(changes.len(), 2 * workload::INITIAL as usize);
    assert!(changes.iter().all(|m| m.body["op"] == "r"));
    let schemas: Vec<_> = messages.iter().filter(|m| m.is_schema()).collect();
    assert_eq!(schemas.len(), 2, "one schema message per table");
    let account = changes
        .iter()
        .find(|m| m.subject == "rt.public.accounts" && m.body["after"]["id"] == 5)
        .expect("account 5 is on its subject");
    assert_eq!(account.body["after"]["balance"], "2.50");
    assert_eq!(account.body["after"]["note"], serde_json::Value::Null);
    assert_eq!(account.body["source"]["table"], "accounts");
    assert_eq!(account.body["source"]["snapshot"], true);
    assert_eq!(account.header("Dmp-Op"), Some("r"));

    // Again: the stream already holds every row; a fresh run replaces it,
    // each table's subject starting with a truncate event.
    let out = run_dmp(dir.path(), &["run", "p.toml"]);
    assert_exit(&out, 0);
    let again = read_stream(&nats().url(), "RT_ONE");
    let again = changes_once(&again);
    assert_eq!(again.len(), 2 + 2 * workload::INITIAL as usize);
    let truncates: Vec<&str> = again
        .iter()
        .filter(|m| m.body["op"] == "t")
        .map(|m| m.subject.as_str())
        .collect();
    assert_eq!(truncates, ["rt.public.accounts", "rt.public.events"]);

    for (target, dialect) in [
        (postgres().create_database("nats_rt_pg"), Dialect::Postgres),
        (mariadb().create_database("nats_rt_my"), Dialect::Mariadb),
    ] {
        let back = tempfile::tempdir().expect("tempdir");
        from_bus(back.path(), &bus, &target.url);
        let mut child = spawn_run(back.path());
        workload::wait_until_in_sync(
            &mut child,
            &source,
            Dialect::Postgres,
            &target,
            dialect,
            Duration::from_secs(120),
            own_stderr,
        );
        let out = interrupt(child);
        assert_exit(&out, 0);
        // The stream and the pipeline's consumer, all read.
        let out = run_dmp(back.path(), &["cdc", "status", "p.toml"]);
        assert_exit(&out, 0);
        let status = text(&out.stdout);
        assert!(status.contains("stream RT_ONE: 4004 messages"), "{status}");
        assert!(status.contains("pending 0"), "{status}");
        let verify = tempfile::tempdir().expect("tempdir");
        pipeline(
            verify.path(),
            "p.toml",
            &sql_pipeline(&source.url, &target.url, "mode = \"full\""),
        );
        let out = run_dmp(verify.path(), &["verify", "p.toml"]);
        assert_exit(&out, 0);
        assert!(!text(&out.stdout).is_empty());
    }
}

#[test]
fn cloud_events_with_connect_schemas_travel_and_are_read_back() {
    let dir = tempfile::tempdir().expect("tempdir");
    let conn = rusqlite::Connection::open(dir.path().join("shop.db")).expect("db");
    conn.execute_batch(
        "CREATE TABLE items (id INTEGER PRIMARY KEY, name TEXT NOT NULL, price DECIMAL(8,2), seen TIMESTAMP);
         INSERT INTO items VALUES (1, 'one', 1.50, '2026-01-02 03:04:05'), (2, 'two', NULL, NULL);",
    )
    .expect("items");
    let url = nats().url();
    let bus = format!("{url}/CLOUD?subject_prefix=cloud&format=cloudevents&schemas=true");
    super::load_onto_bus(dir.path(), "shop.db", &bus);
    assert_exit(&run_dmp(dir.path(), &["run", "load.toml"]), 0);
    let messages = read_stream(&url, "CLOUD");
    let rows = changes_once(&messages);
    assert_eq!(rows.len(), 2);
    let event = &rows[0].body;
    assert_eq!(event["specversion"], "1.0");
    assert_eq!(event["type"], "io.dmp.change.read");
    assert_eq!(event["subject"], "items");
    assert_eq!(event["id"].as_str(), rows[0].header("Nats-Msg-Id"));
    let data = &event["data"];
    assert_eq!(data["schema"]["name"], "cloud.items.Envelope");
    let fields = &data["schema"]["fields"][1]["fields"];
    assert_eq!(fields[2]["field"], "price");
    assert_eq!(fields[2]["name"], "io.dmp.Decimal");
    assert_eq!(data["payload"]["after"]["price"], "1.50");
    assert_eq!(data["payload"]["op"], "r");

    // Read back into SQLite: the same rows.
    let mut child = super::read_into_sqlite(dir.path(), &bus);
    let copy = dir.path().join("copy.db");
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    // SQLite keeps the decimal as REAL at the source, and a SQLite target
    // keeps decimals as their exact text.
    use rusqlite::types::Value as V;
    let text = |s: &str| V::Text(s.to_string());
    let want = vec![
        vec![
            V::Integer(1),
            text("one"),
            text("1.50"),
            text("2026-01-02 03:04:05"),
        ],
        vec![V::Integer(2), text("two"), V::Null, V::Null],
    ];
    let has_items = || {
        rusqlite::Connection::open(&copy)
            .and_then(|c| {
                c.query_row(
                    "SELECT count(*) FROM sqlite_master WHERE name = 'items'",
                    [],
                    |r| r.get::<_, i64>(0),
                )
            })
            .is_ok_and(|n| n == 1)
    };
    while !(has_items() && crate::support::rows(&copy, "items") == want) {
        if let Ok(Some(status)) = child.try_wait() {
            panic!("dmp ended ({status}):\n{}", own_stderr(&mut child));
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the copy did not catch up: {:?} / {want:?}",
            has_items().then(|| crate::support::rows(&copy, "items"))
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_exit(&interrupt(child), 0);
}

/// A full run made again empties its tables' subjects and says so with a
/// truncate event: a consumer that took the first copy's rows drops those
/// the second copy no longer holds.
#[test]
fn a_copy_made_again_replaces_what_consumers_took_from_the_first() {
    let dir = tempfile::tempdir().expect("tempdir");
    let source = dir.path().join("s.db");
    let conn = rusqlite::Connection::open(&source).expect("db");
    conn.execute_batch(
        "CREATE TABLE items (id INTEGER PRIMARY KEY, name TEXT NOT NULL);
         INSERT INTO items VALUES (1, 'one'), (2, 'two'), (3, 'three');",
    )
    .expect("items");
    let url = nats().url();
    let bus = format!("{url}/AGAIN?subject_prefix=again");
    super::load_onto_bus(dir.path(), "s.db", &bus);
    assert_exit(&run_dmp(dir.path(), &["run", "load.toml"]), 0);
    let mut child = super::read_into_sqlite(dir.path(), &bus);
    let copy = dir.path().join("copy.db");
    let ids = || {
        rusqlite::Connection::open(&copy)
            .and_then(|c| {
                let mut select = c.prepare("SELECT id FROM items ORDER BY id")?;
                let ids: rusqlite::Result<Vec<i64>> =
                    select.query_map([], |r| r.get::<_, i64>(0))?.collect();
                ids
            })
            .unwrap_or_default()
    };
    let mut wait_for = |want: &[i64]| {
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        while ids() != want {
            if let Ok(Some(status)) = child.try_wait() {
                panic!("dmp ended ({status}):\n{}", own_stderr(&mut child));
            }
            assert!(
                std::time::Instant::now() < deadline,
                "the copy holds {:?}, not {want:?}",
                ids()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    };
    wait_for(&[1, 2, 3]);
    conn.execute("DELETE FROM items WHERE id = 2", [])
        .expect("delete");
    assert_exit(&run_dmp(dir.path(), &["run", "load.toml"]), 0);
    wait_for(&[1, 3]);
    let messages = read_stream(&url, "AGAIN");
    let ops: Vec<&str> = changes_once(&messages)
        .iter()
        .filter_map(|m| m.body["op"].as_str())
        .collect();
    assert_eq!(
        ops,
        ["t", "r", "r"],
        "the subject emptied, then the new copy"
    );
    assert_exit(&interrupt(child), 0);
}
