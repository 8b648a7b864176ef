//! `full+cdc` from PostgreSQL and from MariaDB onto the bus while the
//! source is written to, `dmp` killed with SIGKILL three times; at the
//! same time a pipeline reads the bus into PostgreSQL and is killed twice.
//! Afterwards no message id is stored twice, every source change after the
//! snapshot has exactly one message (an audit trigger writes one row per
//! change in the same transaction, and the audit table travels too), and
//! the final target equals the source.

use std::path::Path;
use std::process::Child;
use std::time::{Duration, Instant};

use dmp_test_servers::{TestDb, mariadb, nats, postgres};

use crate::sql::cdc::{interrupt, seed};
use crate::sql::faults::{log, spawn_run_with};
use crate::support::bus::{BusMessage, changes_once, create_forgetful_stream, read_stream};
use crate::support::sql::sql_pipeline;
use crate::support::workload::{self, Dialect};
use crate::support::{assert_exit, pipeline};

fn audit(db: &TestDb, dialect: Dialect) {
    match dialect {
        Dialect::Postgres => db.exec(
            "CREATE TABLE audit (id bigserial PRIMARY KEY, tbl text NOT NULL);
             CREATE FUNCTION audited() RETURNS trigger LANGUAGE plpgsql AS
               $$ BEGIN INSERT INTO audit (tbl) VALUES (TG_TABLE_NAME); RETURN NULL; END $$;
             CREATE TRIGGER accounts_audit AFTER INSERT OR UPDATE OR DELETE ON accounts
               FOR EACH ROW EXECUTE FUNCTION audited();
             CREATE TRIGGER events_audit AFTER INSERT OR UPDATE OR DELETE ON events
               FOR EACH ROW EXECUTE FUNCTION audited();",
        ),
        Dialect::Mariadb => {
            db.exec("CREATE TABLE audit (id bigint AUTO_INCREMENT PRIMARY KEY, tbl varchar(20) NOT NULL)");
            for table in ["accounts", "events"] {
                for op in ["INSERT", "UPDATE", "DELETE"] {
                    db.exec(&format!(
                        "CREATE TRIGGER {table}_{op} AFTER {op} ON {table} FOR EACH ROW INSERT INTO audit (tbl) VALUES ('{table}')"
                    ));
                }
            }
        }
    }
}

/// `dmp run` in `dir`, logging to `dir/dmp.log` with the NATS
/// connector's details.
fn spawn_run(dir: &Path) -> Child {
    spawn_run_with(dir, &[("RUST_LOG", "info,dmp_nats=debug")])
}

/// The last lines of the log of the runs in `dir`.
fn log_tail(dir: &Path) -> String {
    let log = log(dir);
    let lines: Vec<&str> = log.lines().collect();
    lines[lines.len().saturating_sub(300)..].join("\n")
}

/// Runs `check`; should it fail, shows the logs of the pipelines in
/// `dirs` (onto the bus, from the bus) first.
fn showing_logs<T>(dirs: [&Path; 2], check: impl FnOnce() -> T) -> T {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(check)) {
        Ok(value) => value,
        Err(failure) => {
            eprintln!(
                "onto the bus:\n{}\n\nfrom the bus:\n{}",
                log_tail(dirs[0]),
                log_tail(dirs[1])
            );
            std::panic::resume_unwind(failure)
        }
    }
}

fn sigkill(mut child: Child) {
    child.kill().expect("SIGKILL");
    let _ = child.wait();
}

/// Streamed changes (not snapshot rows) of the workload's tables, and
/// the audit rows streamed.
fn streamed(messages: &[&BusMessage]) -> (usize, usize) {
    let ops = ["c", "u", "d"];
    let of = |table: &str| {
        messages
            .iter()
            .filter(|m| m.subject.ends_with(&format!(".{table}")))
            .filter(|m| m.body["op"].as_str().is_some_and(|op| ops.contains(&op)))
            .count()
    };
    (of("accounts") + of("events"), of("audit"))
}

fn through_the_bus_with_kills(from: Dialect, source: &TestDb, stream: &str, slot: &str) {
    workload::create_tables(source, from);
    audit(source, from);
    let url = nats().url();
    // A dedupe window far shorter than the time between a kill and the
    // restart.
    create_forgetful_stream(&url, stream, stream, Duration::from_millis(100));
    let bus = format!("{url}/{stream}");
    let onto = tempfile::tempdir().expect("tempdir");
    pipeline(
        onto.path(),
        "p.toml",
        &format!(
            "{}[cdc]\nslot = \"{slot}\"\nheartbeat = \"1s\"\n",
            sql_pipeline(
                &source.url,
                &bus,
                "mode = \"full+cdc\"\nbatch_rows = 300\nchunk_rows = 700\nparallelism = 2"
            )
        ),
    );
    let target = postgres().create_database(&format!("{}_back", stream.to_lowercase()));
    let back = tempfile::tempdir().expect("tempdir");
    pipeline(
        back.path(),
        "p.toml",
        &sql_pipeline(&bus, &target.url, "mode = \"cdc\"\nbatch_rows = 300"),
    );
    let writers = workload::start(source, from, 400, seed(), 0);
    let started = Instant::now();
    let mut onto_run = spawn_run(onto.path());
    let mut back_run: Option<Child> = None;
    let mut back_kills = 0;
    for (kill, after_ms) in [800u64, 2500, 4500].into_iter().enumerate() {
        while started.elapsed() < Duration::from_millis(after_ms) {
            std::thread::sleep(Duration::from_millis(50));
        }
        sigkill(onto_run);
        // Past the dedupe window.
        std::thread::sleep(Duration::from_millis(300));
        onto_run = spawn_run(onto.path());
        // The reader starts once the bus has its schemas, and is killed
        // twice on the way.
        match back_run.take() {
            None => back_run = Some(spawn_run(back.path())),
            Some(run) if back_kills < 2 && kill > 0 => {
                sigkill(run);
                back_kills += 1;
                back_run = Some(spawn_run(back.path()));
            }
            Some(run) => back_run = Some(run),
        }
    }
    std::thread::sleep(Duration::from_millis(800));
    if let Some(run) = back_run.take() {
        sigkill(run);
    }
    let mut back_run = spawn_run(back.path());
    for writer in writers {
        writer.join().expect("workload session");
    }
    let logs = [onto.path(), back.path()];
    showing_logs(logs, || {
        workload::wait_until_in_sync(
            &mut back_run,
            source,
            from,
            &target,
            Dialect::Postgres,
            Duration::from_secs(180),
            |_| String::new(),
        );
    });
    // Every change reached the bus: as many streamed changes as streamed
    // audit rows (the last ones may still be on their way).
    let deadline = Instant::now() + Duration::from_secs(60);
    let messages = showing_logs(logs, || {
        loop {
            let messages = read_stream(&url, stream);
            let (changes, audited) = streamed(&changes_once(&messages));
            if changes == audited || Instant::now() > deadline {
                assert_eq!(changes, audited, "streamed changes vs audit rows");
                break messages;
            }
            std::thread::sleep(Duration::from_millis(500));
        }
    });
    let data = changes_once(&messages);
    assert!(
        data.iter().any(|m| m.body["op"] == "r"),
        "snapshot rows are on the bus"
    );
    assert!(
        streamed(&data).0 > 100,
        "the workload streamed through the bus"
    );
    assert_exit(&interrupt(onto_run), 0);
    assert_exit(&interrupt(back_run), 0);
    drop_slot(onto.path());
}

fn drop_slot(dir: &Path) {
    let out = crate::support::run_dmp(dir, &["cdc", "drop-slot", "p.toml"]);
    assert_exit(&out, 0);
}

#[test]
fn postgres_through_nats_to_postgres_with_kills() {
    let source = postgres().create_database("nats_crash_pg");
    through_the_bus_with_kills(Dialect::Postgres, &source, "CRASH_PG", "dmp_nats_crash_pg");
}

#[test]
fn mariadb_through_nats_to_postgres_with_kills() {
    let source = mariadb().create_database("nats_crash_my");
    through_the_bus_with_kills(Dialect::Mariadb, &source, "CRASH_MY", "dmp_nats_crash_my");
}
