//! A consumer that is not DMP reads the bus: a short Python program with
//! nats-py reads every message of a stream of every type and checks the
//! envelope and the documented value encodings. A row too large for a
//! message is a dead letter, named.

use std::process::Command;

use dmp_test_servers::{nats, postgres};

use crate::sql::every_type::PG_TABLE;
use crate::support::sql::sql_pipeline;
use crate::support::{assert_exit, dead_letters, pipeline, run_dmp, text};

#[test]
fn a_python_consumer_reads_every_type_from_the_bus() {
    let source = postgres().create_database("nats_every_type");
    source.exec(PG_TABLE);
    let dir = tempfile::tempdir().expect("tempdir");
    let url = nats().url();
    pipeline(
        dir.path(),
        "p.toml",
        &sql_pipeline(
            &source.url,
            &format!("{url}/EVERY?subject_prefix=every"),
            "mode = \"full\"",
        ),
    );
    let out = run_dmp(dir.path(), &["run", "p.toml"]);
    // Row 5 holds 16 MiB: more than a message may.
    assert_exit(&out, 1);
    let letters = dead_letters(dir.path(), "p", "every_type");
    assert_eq!(letters.len(), 1, "{letters:?}\n{}", text(&out.stderr));
    assert!(
        letters[0]
            .1
            .contains("more than the 1048576 bytes the NATS server takes"),
        "{letters:?}"
    );

    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/nats/consumer.py");
    let out = Command::new("python3")
        .arg(script)
        .args([&url, "EVERY", "every"])
        .output()
        .expect("python3 runs");
    assert!(
        out.status.success(),
        "the consumer says:\n{}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    assert!(
        text(&out.stdout).contains("5 rows checked"),
        "{}",
        text(&out.stdout)
    );
}
