//! A viewer signed in with a password (no token): the pipeline page shows
//! state, progress and dead-letter counts, but no control is built and no
//! row of data reaches the page.

use super::{PASSWORD, run_with_refused_rows};
use crate::support::browser::{Browser, WAIT};
use crate::support::serve::Serve;

/// Hooks only an operator or an admin gets.
const CONTROLS: &[&str] = &[
    "btn-start",
    "start-restart",
    "btn-stop",
    "btn-pause",
    "btn-resume",
    "btn-edit",
    "btn-delete",
    "dlq-show-items",
    "dlq-replay-items",
    "dlq-purge-items",
    "dlq-replay-all",
    "dlq-purge-all",
    "btn-verify",
    "btn-verify-repair",
];

#[test]
fn a_viewer_sees_the_pipeline_without_controls_or_row_data() {
    let dir = tempfile::tempdir().expect("temp dir");
    let serve = Serve::start(&dir.path().join("home"), &[], &[]);
    serve.user("vic", "viewer", PASSWORD);
    run_with_refused_rows(&serve, &serve.token("admin"), "watched");

    let browser = Browser::start("viewer");
    browser.sign_in(&serve.url, "vic", PASSWORD);
    assert_eq!(browser.text("session-role"), "viewer");
    browser.wait_for("the pipeline listed", WAIT, |b| {
        b.present("pipeline-row-watched").then_some(())
    });
    assert!(!browser.present("new-pipeline"));
    browser.screenshot("overview");

    browser.goto(&format!("{}/#/p/watched", serve.url));
    let state = browser.wait_text("pipeline-state", WAIT, "final", |t| {
        t == "done" || t == "failed"
    });
    // Every section loaded: the counts, the log, the verify card.
    browser.wait_text("dlq-count", WAIT, "= 6", |t| t == "6");
    browser.wait_text("log-lines", WAIT, "lines", |t| !t.is_empty());
    browser.wait_text("verify-result", WAIT, "loaded", |t| t != "Loading…");
    browser.screenshot("pipeline");
    for hook in CONTROLS {
        assert!(
            !browser.present(hook),
            "a viewer got {hook} (state {state})"
        );
    }
    let html = browser.html();
    assert!(
        !html.contains("label-"),
        "row data reached a viewer's page:\n{}",
        browser.body_text()
    );
    // Nor can the session fetch them.
    let status = browser.js(
        "return fetch('/api/v1/pipelines/watched/dead-letters/rows').then((r) => r.status);",
        vec![],
    );
    assert_eq!(status, serde_json::json!(403));

    // Forms that write are refused outright.
    browser.goto(&format!("{}/#/new", serve.url));
    browser.wait_for("the refusal", WAIT, |b| {
        b.body_text().contains("Not allowed").then_some(())
    });
    assert!(!browser.present("form-name"));
    browser.screenshot("new-refused");
}
