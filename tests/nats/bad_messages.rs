//! A stream written by others holds messages DMP cannot apply: text that is
//! not JSON, a value that does not fit its column, a column the table does
//! not have, a subject no schema describes. Each becomes a dead letter
//! named by its sequence and subject; the good messages around them are
//! applied.

use std::time::{Duration, Instant};

use dmp_test_servers::nats;
use rusqlite::types::Value;

use crate::sql::cdc::interrupt;
use crate::support::bus::publish;
use crate::support::{assert_exit, dead_letters, rows, run_dmp, text};

#[test]
fn bad_messages_become_dead_letters_and_the_stream_goes_on() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("shop.db");
    let conn = rusqlite::Connection::open(&db).expect("db");
    conn.execute_batch(
        "CREATE TABLE items (id INTEGER PRIMARY KEY, name TEXT NOT NULL, qty INTEGER);
         INSERT INTO items VALUES (1, 'one', 1), (2, 'two', 2), (3, 'three', 3);",
    )
    .expect("items");
    let bus = format!("{}/BAD_ONE?subject_prefix=bad", nats().url());
    super::load_onto_bus(dir.path(), "shop.db", &bus);
    assert_exit(&run_dmp(dir.path(), &["run", "load.toml"]), 0);

    let url = nats().url();
    let send = |subject: &str, body: &str| publish(&url, subject, &[], body.as_bytes());
    send("bad.items", "not json at all");
    send(
        "bad.items",
        r#"{"op":"c","after":{"id":"ten","name":"x","qty":1}}"#,
    );
    send(
        "bad.items",
        r#"{"op":"c","after":{"id":12,"name":"x","colour":"red"}}"#,
    );
    send("bad.ghosts", r#"{"op":"c","after":{"id":1}}"#);
    send(
        "bad.items",
        r#"{"op":"c","after":{"id":11,"name":"eleven","qty":11}}"#,
    );
    send(
        "bad.items",
        r#"{"op":"u","before":{"id":1},"after":{"id":1,"name":"one!","qty":5}}"#,
    );
    send("bad.items", r#"{"op":"d","before":{"id":2}}"#);

    let copy = dir.path().join("copy.db");
    let mut child = super::read_into_sqlite(dir.path(), &bus);
    let want = vec![
        vec![
            Value::Integer(1),
            Value::Text("one!".into()),
            Value::Integer(5),
        ],
        vec![
            Value::Integer(3),
            Value::Text("three".into()),
            Value::Integer(3),
        ],
        vec![
            Value::Integer(11),
            Value::Text("eleven".into()),
            Value::Integer(11),
        ],
    ];
    let deadline = Instant::now() + Duration::from_secs(60);
    while !(copy.exists() && has_table(&copy) && rows(&copy, "items") == want) {
        assert!(Instant::now() < deadline, "the copy did not catch up");
        if let Ok(Some(status)) = child.try_wait() {
            panic!("dmp ended ({status})");
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let out = interrupt(child);
    // Rows were dead-lettered.
    assert_exit(&out, 1);

    let letters = dead_letters(dir.path(), "p", "items");
    assert_eq!(letters.len(), 3, "{letters:?}\n{}", text(&out.stderr));
    // Sequences: 1 schema message and 3 rows from the load, then ours.
    for (sequence, says) in [
        (5, "not a JSON object"),
        (6, "`after.id`"),
        (7, "no column `colour`"),
    ] {
        let named = format!("message {sequence} on bad.items");
        assert!(
            letters
                .iter()
                .any(|(_, e)| e.contains(&named) && e.contains(says)),
            "{named} / {says}: {letters:?}"
        );
    }
    let ghosts = dead_letters(dir.path(), "p", "bad.ghosts");
    assert_eq!(ghosts.len(), 1, "{ghosts:?}");
    assert!(
        ghosts[0]
            .1
            .contains("message 8 on bad.ghosts: no schema message"),
        "{ghosts:?}"
    );
}

fn has_table(db: &std::path::Path) -> bool {
    rusqlite::Connection::open(db)
        .and_then(|c| {
            c.query_row(
                "SELECT count(*) FROM sqlite_master WHERE name = 'items'",
                [],
                |r| r.get::<_, i64>(0),
            )
        })
        .is_ok_and(|n| n == 1)
}
