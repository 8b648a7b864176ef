//! A pipeline made the way a person makes one: signed in, the form filled,
//! connections tested (the tables and the type mapping shown), saved,
//! started, its progress bar followed to 100 % and the state to done.

use std::time::Duration;

use serde_json::json;

use super::PASSWORD;
use crate::support::browser::{Browser, WAIT};
use crate::support::serve::Serve;
use crate::support::{count, create_events_db};

const ROWS: i64 = 200_000;

#[test]
fn a_pipeline_made_in_the_form_is_tested_saved_and_run_to_done() {
    let dir = tempfile::tempdir().expect("temp dir");
    let serve = Serve::start(&dir.path().join("home"), &[], &[]);
    serve.user("ada", "admin", PASSWORD);
    create_events_db(&serve.data().join("form-src.db"), ROWS);

    let browser = Browser::start("create");
    browser.sign_in(&serve.url, "ada", PASSWORD);
    browser.wait_for("the empty overview", WAIT, |b| {
        b.body_text().contains("No pipelines yet.").then_some(())
    });
    browser.screenshot("overview");

    browser.click("new-pipeline");
    browser.type_into("form-name", "form");
    browser.select("form-mode", "full");
    browser.type_into("form-source", "sqlite://form-src.db");
    browser.type_into("form-target", "sqlite://form-dst.db");
    browser.type_into("form-tables", "events");
    let toml = browser.attr("form-toml", "value");
    for line in [
        "name = \"form\"",
        "url = \"sqlite://form-src.db\"",
        "url = \"sqlite://form-dst.db\"",
        "include = [\"events\"]",
        "mode = \"full\"",
    ] {
        assert!(toml.contains(line), "{line} not in the TOML:\n{toml}");
    }

    browser.click("btn-test");
    let tested = browser.wait_text("test-result", WAIT, "connections OK", |t| {
        t.contains("connections OK")
    });
    assert!(tested.contains("events"), "{tested}");
    // The type mapping, one row per column: name, model type, →, target
    // type, nullable.
    let mapping = browser.js(
        "return [...document.querySelectorAll('[data-testid=test-result] table.mapping tbody tr')]
           .map((tr) => [...tr.cells].map((td) => td.textContent));",
        vec![],
    );
    let mapping = mapping.as_array().expect("mapping rows");
    let columns: Vec<&str> = mapping.iter().filter_map(|r| r[0].as_str()).collect();
    assert_eq!(columns, ["n", "payload", "at"], "{mapping:?}");
    assert!(
        mapping
            .iter()
            .all(|r| r[1] != json!("") && r[3] != json!("")),
        "every column has a model and a target type: {mapping:?}"
    );
    assert_eq!(mapping[0][4], json!("no"), "n is NOT NULL: {mapping:?}");
    browser.screenshot("test-connections");

    browser.click("btn-save");
    browser.wait_for("the new pipeline's page", WAIT, |b| {
        b.url().ends_with("#/p/form").then_some(())
    });
    browser.wait_text("pipeline-state", WAIT, "idle", |t| t == "idle");
    browser.screenshot("saved");

    browser.click("btn-start");
    // The bar follows the run to 100; the first value on the way there is
    // photographed.
    let mut on_the_way = false;
    browser.wait_for("the events bar at 100", Duration::from_secs(60), |b| {
        let percent: u32 = b
            .peek("table-progress-events", Some("data-percent"))?
            .parse()
            .ok()?;
        if (1..100).contains(&percent) && !on_the_way {
            on_the_way = true;
            b.screenshot("progress");
        }
        (percent == 100).then_some(())
    });
    browser.wait_text("pipeline-state", WAIT, "done", |t| t == "done");
    browser.screenshot("done");
    assert_eq!(count(&serve.data().join("form-dst.db"), "events"), ROWS);
}
