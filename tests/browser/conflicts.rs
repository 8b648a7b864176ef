//! A two-way sync's parked conflict on the pipeline page: a viewer sees
//! the entries without row data or buttons; an operator sees both sides'
//! rows, resolves the conflict by side B with a click, and the panel
//! empties while both databases now hold B's row.

use super::PASSWORD;
use crate::serve::conflicts::{drop_stream, entry_of, park_a_conflict, resolved_by_b};
use crate::sql::conflicts::hot;
use crate::support::browser::{Browser, WAIT};
use crate::support::serve::Serve;
use dmp_test_servers::postgres;

#[test]
fn a_parked_conflict_is_shown_in_the_panel_and_resolved_by_a_click() {
    let dir = tempfile::tempdir().expect("temp dir");
    let a = postgres().create_database("browser_conflicts_a");
    let b = postgres().create_database("browser_conflicts_b");
    let serve = Serve::start(&dir.path().join("home"), &[], &[]);
    serve.user("vic", "viewer", PASSWORD);
    serve.user("olga", "operator", PASSWORD);
    let admin = serve.token("admin");
    let parked = park_a_conflict(&serve, &admin, "browser_conflicts", &a, &b);
    let on_b = entry_of(&parked, "b")["id"]
        .as_str()
        .expect("an id")
        .to_string();
    let on_a = entry_of(&parked, "a")["id"]
        .as_str()
        .expect("an id")
        .to_string();
    let page = format!("{}/#/p/browser_conflicts", serve.url);

    let browser = Browser::start("conflicts");
    browser.sign_in(&serve.url, "vic", PASSWORD);
    browser.goto(&page);
    browser.wait_text("conflicts-count", WAIT, "= 2", |t| t == "2");
    let row = browser.text(&format!("conflict-{on_b}"));
    assert!(
        row.contains("hot") && row.contains("update_differs") && row.contains("parked"),
        "{row}"
    );
    assert!(!browser.present(&format!("conflict-resolve-b-{on_b}")));
    let html = browser.html();
    assert!(
        !html.contains("\"a1\"") && !html.contains("\"b1\""),
        "row data reached a viewer's page:\n{}",
        browser.body_text()
    );
    browser.screenshot("viewer");
    browser.click("logout");

    browser.sign_in(&serve.url, "olga", PASSWORD);
    browser.goto(&page);
    browser.wait_text("conflicts-count", WAIT, "= 2", |t| t == "2");
    // B's entry: A's change (a1) against B's row then (b1).
    let row = browser.text(&format!("conflict-{on_b}"));
    assert!(row.contains("\"a1\"") && row.contains("\"b1\""), "{row}");
    browser.screenshot("parked");

    browser.click(&format!("conflict-resolve-b-{on_b}"));
    browser.click(&format!("conflict-resolve-b-{on_b}-confirm"));
    browser.wait_text("conflicts-count", WAIT, "= 0", |t| t == "0");
    browser.wait_for("the empty panel", WAIT, |b| {
        b.body_text()
            .contains("No parked conflicts wait.")
            .then_some(())
    });
    assert_eq!((hot(&a), hot(&b)), (resolved_by_b(), resolved_by_b()));

    // Every entry: both marked, no button left.
    browser.click("conflicts-all");
    for id in [&on_a, &on_b] {
        browser.wait_text(&format!("conflict-{id}"), WAIT, "resolved", |t| {
            t.contains("side b")
        });
        assert_eq!(
            browser.attr(&format!("conflict-{id}"), "data-open"),
            "false"
        );
    }
    assert!(!browser.present(&format!("conflict-resolve-a-{on_a}")));
    browser.screenshot("resolved");
    drop_stream(&serve, &admin, "browser_conflicts");
}
