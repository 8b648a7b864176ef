//! A full copy onto the bus, then read back from it into PostgreSQL and
//! MariaDB by change streams: both equal the source (`dmp verify`).

use std::path::Path;
use std::time::Duration;

use dmp_test_servers::{mariadb, nats, postgres};

use crate::sql::cdc::{interrupt, spawn_run};
use crate::support::bus::{changes_once, read_stream};
use crate::support::sql::sql_pipeline;
use crate::support::workload::{self, Dialect};
use crate::support::{assert_exit, pipeline, run_dmp, text};

fn own_stderr(child: &mut std::process::Child) -> String {
    use std::io::Read;
    let mut log = String::new();
    if let Some(mut err) = child.stderr.take() {
        let _ = err.read_to_string(&mut log);
    }
    log
}

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

    // Again: the stream already holds every row; a fresh run replaces it.
    let out = run_dmp(dir.path(), &["run", "p.toml"]);
    assert_exit(&out, 0);
    let again = read_stream(&nats().url(), "RT_ONE");
    assert_eq!(changes_once(&again).len(), 2 * workload::INITIAL as usize);

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
