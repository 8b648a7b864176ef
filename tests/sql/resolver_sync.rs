//! Two-way sync with a WASM conflict resolver: the example
//! `merge_counters` plugin keeps both sides' increments of a counter that
//! both changed while DMP was stopped, and both sides end with the same
//! merged rows, logged as `merged` on each.

use std::path::{Path, PathBuf};
use std::time::Duration;

use dmp_test_servers::{TestDb, mariadb, postgres};

use super::conflicts::{joined_rows, legs_streaming, start, wait_for};
use crate::support::{assert_exit, dmp, pipeline, text};

fn merge_counters() -> PathBuf {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../target/plugins/wasm32-unknown-unknown/release/merge_counters.wasm");
    assert!(
        path.is_file(),
        "{} is missing: run `make plugins` (or `make test`)",
        path.display()
    );
    path
}

fn counters(db: &TestDb) -> Vec<String> {
    joined_rows(db, "SELECT id, name, n FROM counters ORDER BY id")
}

fn merged_keys(db: &TestDb, key: &str) -> Vec<(String, String)> {
    let mut keys: Vec<(String, String)> = db
        .try_query(&format!(
            "SELECT {key}, decision FROM _dmp_conflicts WHERE table_name = 'counters'"
        ))
        .unwrap_or_default()
        .into_iter()
        .map(|r| {
            (
                r[0].clone().unwrap_or_default(),
                r[1].clone().unwrap_or_default(),
            )
        })
        .collect();
    keys.sort();
    keys
}

#[test]
fn a_resolver_plugin_merges_counters_alike_on_postgres_and_mariadb() {
    let a = postgres().create_database("resolver_a");
    let b = mariadb().create_database("resolver_b");
    a.exec(
        "CREATE TABLE counters (id bigint PRIMARY KEY, name varchar(20) NOT NULL, n bigint NOT NULL);
         ALTER TABLE counters REPLICA IDENTITY FULL;
         INSERT INTO counters VALUES (1, 'one', 10), (2, 'two', 10), (3, 'three', 10);",
    );
    let dir = tempfile::tempdir().expect("tempdir");
    pipeline(
        dir.path(),
        "p.toml",
        &format!(
            "[pipeline]\nname = \"resolver\"\n[source]\nurl = \"{}\"\n[target]\nurl = \"{}\"\n\
             [tables]\ninclude = [\"counters\"]\n[run]\nmode = \"bidirectional\"\n\
             [cdc]\nslot = \"resolver\"\nheartbeat = \"1s\"\n\
             [sync]\nconflict = \"resolver\"\nresolver = \"{}\"\n\
             [sync.resolver_config]\ncounters = \"n\"\n",
            a.url,
            b.url,
            merge_counters().display()
        ),
    );
    let mut child = start(dir.path(), 0);
    wait_for(
        dir.path(),
        &mut child,
        "the first load and both legs",
        |log| {
            counters(&b).len() == 3
                && log.contains("conflict resolver loaded")
                && legs_streaming(log)
        },
    );
    let stopped = super::cdc::interrupt(child);
    assert!(stopped.status.success(), "{}", text(&stopped.stderr));
    // Both count on 1 and both insert 4; 2 and 3 are counted on one side.
    a.exec(
        "UPDATE counters SET n = n + 5 WHERE id IN (1, 2);
         INSERT INTO counters VALUES (4, 'four-a', 3);",
    );
    b.exec(
        "UPDATE counters SET n = n + 7 WHERE id IN (1, 3);
         INSERT INTO counters VALUES (4, 'four-b', 4);",
    );
    let want = ["1:one:22", "2:two:15", "3:three:17", "4:four-a:7"];
    let mut child = start(dir.path(), 1);
    wait_for(
        dir.path(),
        &mut child,
        "the merged counters on both sides",
        |_| counters(&a) == want && counters(&b) == want,
    );
    // Settled: both sides stay merged.
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(counters(&a), want);
    assert_eq!(counters(&b), want);
    let stopped = super::cdc::interrupt(child);
    assert!(stopped.status.success(), "{}", text(&stopped.stderr));
    let merged = |id: u32| (format!("{{\"id\":{id}}}"), "merged".to_string());
    let expected = vec![merged(1), merged(4)];
    assert_eq!(merged_keys(&a, "key"), expected);
    assert_eq!(merged_keys(&b, "`key`"), expected);
    let dropped = dmp(dir.path())
        .args(["cdc", "drop-slot", "p.toml"])
        .output()
        .expect("dmp cdc drop-slot");
    assert_exit(&dropped, 0);
}
