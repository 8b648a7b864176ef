//! A streaming pipeline's page: while the source is written to, the lag
//! chart gains points, the target follows, and the stream is stopped and
//! its slot dropped from the page.

use std::time::Duration;

use dmp_test_servers::postgres;
use serde_json::json;

use super::PASSWORD;
use crate::support::browser::{Browser, WAIT};
use crate::support::serve::Serve;
use crate::support::sql::scalar_i64;

fn points(browser: &Browser) -> Option<u64> {
    browser.peek("lag-chart", Some("data-points"))?.parse().ok()
}

/// The `N changes` of the lag card's `Current lag: … · N changes · …`.
fn changes_shown(page: &str) -> Option<u64> {
    let line = page.lines().find(|l| l.starts_with("Current lag: "))?;
    let part = line.split(" · ").find(|p| p.ends_with(" changes"))?;
    let digits: String = part.chars().filter(char::is_ascii_digit).collect();
    digits.parse().ok()
}

#[test]
fn the_lag_chart_of_a_stream_grows_while_the_source_is_written() {
    let dir = tempfile::tempdir().expect("temp dir");
    let serve = Serve::start(&dir.path().join("home"), &[], &[]);
    serve.user("ada", "admin", PASSWORD);
    let admin = serve.token("admin");
    let source = postgres().create_database("browser_lag_source");
    let target = postgres().create_database("browser_lag_target");
    source.exec(
        "CREATE TABLE ticks (id bigserial PRIMARY KEY, note text NOT NULL);
         INSERT INTO ticks (note) SELECT 'seed ' || g FROM generate_series(1, 100) g;",
    );
    serve.create(
        &admin,
        &format!(
            "[pipeline]\nname = \"lag\"\n\n[source]\nurl = \"{}\"\n\n[target]\nurl = \"{}\"\n\n\
             [run]\nmode = \"full+cdc\"\n\n[cdc]\nslot = \"{}\"\nheartbeat = \"1s\"\n",
            source.url, target.url, source.name
        ),
    );
    serve
        .post_json(&admin, "/api/v1/pipelines/lag/start", &json!({}))
        .expect(202);
    serve.wait_status(&admin, "lag", Duration::from_secs(30), |s| {
        s["state"] == "streaming"
    });

    let browser = Browser::start("lag");
    browser.sign_in(&serve.url, "ada", PASSWORD);
    browser.goto(&format!("{}/#/p/lag", serve.url));
    browser.wait_text("pipeline-state", WAIT, "streaming", |t| t == "streaming");
    let before = browser.wait_for("the lag chart", WAIT, points);

    // Each status event that carries a lag adds a point (about one a
    // second once changes flow): write until five more are drawn.
    let mut batch = 0;
    let after = browser.wait_for("five more lag points", Duration::from_secs(40), |b| {
        batch += 1;
        source.exec(&format!(
            "INSERT INTO ticks (note) SELECT 'batch {batch} row ' || g FROM generate_series(1, 20) g"
        ));
        points(b).filter(|&n| n >= before + 5)
    });
    assert!(after >= before + 5, "{before} → {after}");

    let written = scalar_i64(&source, "SELECT count(*) FROM ticks");
    browser.wait_for("the target to catch up", Duration::from_secs(30), |_| {
        (scalar_i64(&target, "SELECT count(*) FROM ticks") == written).then_some(())
    });
    // The seed rows came with the snapshot; every insert since, through
    // the stream.
    let streamed = 20 * batch;
    browser.wait_for(&format!("{streamed} changes shown"), WAIT, |b| {
        (changes_shown(&b.body_text()) == Some(streamed)).then_some(())
    });
    browser.screenshot("streaming");

    browser.click("btn-stop");
    browser.wait_text("pipeline-state", Duration::from_secs(30), "stopped", |t| {
        t == "stopped"
    });
    browser.click("stream-drop");
    browser.click("stream-drop-confirm");
    browser.wait_for("the slot gone", WAIT, |_| {
        let left = scalar_i64(
            &source,
            &format!(
                "SELECT count(*) FROM pg_replication_slots WHERE slot_name = '{}'",
                source.name
            ),
        );
        (left == 0).then_some(())
    });
    browser.screenshot("stopped");
}
