//! The dashboard in a real headless Chromium: a person's clicks and what
//! the page then shows, against a real `dmp serve` and real databases.
//! Every test saves screenshots under `target/screenshots/`.

mod cluster;
mod conflicts;
mod create;
mod dead_letters;
mod lag;
mod viewer;

use std::time::Duration;

use dmp_test_servers::{TestDb, postgres};
use rusqlite::Connection;

use crate::support::serve::Serve;

/// The password of every user these tests sign in as.
const PASSWORD: &str = "browser-test-pw";

/// A pipeline whose run leaves dead letters: a SQLite source of 20 items
/// (`v` = 10 × id, `label` = `label-ID`) in the data root, a PostgreSQL
/// target whose table refuses `v >= 150` (ids 15 to 20). Created through
/// the API with `token` and run to its end; returns the target.
fn run_with_refused_rows(serve: &Serve, token: &str, name: &str) -> TestDb {
    let conn = Connection::open(serve.data().join(format!("{name}-src.db"))).expect("source");
    conn.execute_batch(
        "CREATE TABLE items (id INTEGER PRIMARY KEY, v BIGINT NOT NULL, label TEXT NOT NULL);
         WITH RECURSIVE g(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM g WHERE i < 20)
         INSERT INTO items SELECT i, i * 10, 'label-' || i FROM g;",
    )
    .expect("source rows");
    let target = postgres().create_database(&format!("browser_{name}"));
    target.exec(
        "CREATE TABLE items (id bigint PRIMARY KEY, v bigint NOT NULL, label text NOT NULL,
         CONSTRAINT small_v CHECK (v < 150))",
    );
    serve.create(
        token,
        &format!(
            "[pipeline]\nname = \"{name}\"\n\n[source]\nurl = \"sqlite://{name}-src.db\"\n\n\
             [target]\nurl = \"{}\"\nif_exists = \"truncate\"\n\n[run]\nbatch_rows = 5\n",
            target.url
        ),
    );
    serve
        .post_json(
            token,
            &format!("/api/v1/pipelines/{name}/start"),
            &serde_json::json!({}),
        )
        .expect(202);
    serve.wait_status(token, name, Duration::from_secs(30), |s| {
        s["run"] == 1 && (s["state"] == "done" || s["state"] == "failed")
    });
    assert_eq!(target.scalar("SELECT count(*) FROM items"), "14");
    target
}
