//! Dead letters replayed from the pipeline page: an operator sees the
//! refused rows, the cause is fixed in the target, one click sends them
//! again and the count falls to zero.

use std::time::Duration;

use super::{PASSWORD, run_with_refused_rows};
use crate::support::browser::{Browser, WAIT};
use crate::support::serve::Serve;

#[test]
fn rows_refused_by_a_check_are_replayed_from_the_page_after_the_fix() {
    let dir = tempfile::tempdir().expect("temp dir");
    let serve = Serve::start(&dir.path().join("home"), &[], &[]);
    serve.user("olga", "operator", PASSWORD);
    let target = run_with_refused_rows(&serve, &serve.token("admin"), "refused");

    let browser = Browser::start("dead-letters");
    browser.sign_in(&serve.url, "olga", PASSWORD);
    browser.goto(&format!("{}/#/p/refused", serve.url));
    browser.wait_text("dlq-count", WAIT, "= 6", |t| t == "6");
    // An operator may read the refused rows themselves.
    browser.click("dlq-show-items");
    let html = browser.wait_for("the refused rows", WAIT, |b| {
        let html = b.html();
        html.contains("label-15").then_some(html)
    });
    for id in 15..=20 {
        assert!(html.contains(&format!("label-{id}")), "row {id} not shown");
    }
    assert!(html.contains("small_v"), "the error names the constraint");
    browser.screenshot("refused");

    // Replayed before the fix: they fail again and stay.
    browser.click("dlq-replay-items");
    browser.wait_text("message-error", WAIT, "failed again", |t| {
        t.contains("6 failed again")
    });
    assert_eq!(browser.text("dlq-count"), "6");

    target.exec("ALTER TABLE items DROP CONSTRAINT small_v");
    browser.click("dlq-replay-items");
    browser.wait_text("dlq-count", Duration::from_secs(30), "= 0", |t| t == "0");
    browser.wait_for("no dead letters", WAIT, |b| {
        b.body_text().contains("No dead letters.").then_some(())
    });
    browser.screenshot("replayed");
    assert_eq!(target.scalar("SELECT count(*) FROM items"), "20");

    // Verify from the page names a row the target lost; repair brings it back.
    target.exec("DELETE FROM items WHERE id = 3");
    browser.click("btn-verify");
    let shown = browser.wait_text(
        "verify-result",
        Duration::from_secs(60),
        "differences",
        |t| t.contains("differences found"),
    );
    assert!(
        shown.contains("Differing rows of items") && shown.contains("\"3\""),
        "{shown}"
    );
    assert!(shown.contains("missing in target"), "{shown}");
    browser.screenshot("verify-differs");
    browser.click("btn-verify-repair");
    browser.wait_text("verify-result", Duration::from_secs(60), "a match", |t| {
        t.contains("source and target match")
    });
    browser.screenshot("verify-repaired");
    assert_eq!(target.scalar("SELECT count(*) FROM items"), "20");
    assert_eq!(
        target.query("SELECT id, v, label FROM items WHERE id >= 15 ORDER BY id"),
        (15..=20)
            .map(|id| vec![
                Some(id.to_string()),
                Some((id * 10).to_string()),
                Some(format!("label-{id}"))
            ])
            .collect::<Vec<_>>()
    );
}
