//! A streaming pipeline's page: while the source is written to, the lag
//! chart gains points, the target follows, and the stream is stopped and
//! its slot dropped from the page. A two-way sync's chart draws a second
//! line, the lag from side B back to side A, with a legend.

use std::time::Duration;

use dmp_test_servers::postgres;
use serde_json::json;

use super::PASSWORD;
use crate::serve::lag::{lag_points, stop_and_drop, stream_both_ways, with_back};
use crate::support::browser::{Browser, WAIT};
use crate::support::serve::Serve;
use crate::support::sql::scalar_i64;

/// The lines' colours in app.js: A → B (`LAG_COLOR`), B → A (`BACK_COLOR`).
const LAG_COLOR: [u8; 3] = [0x25, 0x63, 0xeb];
const BACK_COLOR: [u8; 3] = [0xdc, 0x68, 0x03];

fn points(browser: &Browser) -> Option<u64> {
    browser.peek("lag-chart", Some("data-points"))?.parse().ok()
}

/// How many points the chart's B → A line has.
fn back_points(browser: &Browser) -> Option<u64> {
    browser
        .peek("lag-chart", Some("data-back-points"))?
        .parse()
        .ok()
}

/// The opaque pixels of the lag chart near `color`: a line drawn in it.
fn pixels_of(browser: &Browser, color: [u8; 3]) -> u64 {
    browser
        .js(
            "const c = document.querySelector('[data-testid=\"lag-chart\"]');
             const [r, g, b] = arguments[0];
             const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
             let n = 0;
             for (let i = 0; i < d.length; i += 4) {
               const off = Math.abs(d[i] - r) + Math.abs(d[i + 1] - g) + Math.abs(d[i + 2] - b);
               if (d[i + 3] > 200 && off < 60) n++;
             }
             return n;",
            vec![json!(color)],
        )
        .as_u64()
        .expect("a count")
}

/// The legend's text while a person sees it (laid out, not hidden).
fn legend_shown(browser: &Browser) -> Option<String> {
    browser
        .js(
            "const el = document.querySelector('[data-testid=\"lag-legend\"]');
             return el && !el.hidden && el.offsetParent !== null ? el.innerText : null;",
            vec![],
        )
        .as_str()
        .map(str::to_string)
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
    // One way: one line, no legend, and no lag back in the API's points.
    assert_eq!(back_points(&browser), Some(0));
    assert_eq!(legend_shown(&browser), None);
    assert!(pixels_of(&browser, LAG_COLOR) > 0);
    assert_eq!(pixels_of(&browser, BACK_COLOR), 0);
    let sampled = lag_points(&serve, &admin, "lag");
    assert!(
        !sampled.is_empty() && with_back(&sampled).is_empty(),
        "{sampled:?}"
    );

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

#[test]
fn the_lag_chart_of_a_two_way_sync_draws_both_directions() {
    let dir = tempfile::tempdir().expect("temp dir");
    let a = postgres().create_database("browser_lag_a");
    let b = postgres().create_database("browser_lag_b");
    let serve = Serve::start(&dir.path().join("home"), &[], &[]);
    serve.user("ada", "admin", PASSWORD);
    let admin = serve.token("admin");
    let sampled = stream_both_ways(&serve, &admin, "browser_lag_both", &a, &b);
    assert!(!with_back(&sampled).is_empty(), "{sampled:?}");

    let browser = Browser::start("lag-two-way");
    browser.sign_in(&serve.url, "ada", PASSWORD);
    browser.goto(&format!("{}/#/p/browser_lag_both", serve.url));
    browser.wait_text("pipeline-state", WAIT, "streaming", |t| t == "streaming");
    // The history's B → A points, then one more with each status event.
    let before = browser.wait_for("the B → A line", WAIT, |b| {
        back_points(b).filter(|&n| n > 0)
    });
    let after = browser.wait_for("three more B → A points", WAIT, |b| {
        back_points(b).filter(|&n| n >= before + 3)
    });
    assert!(points(&browser).is_some_and(|n| n >= after));
    let legend = browser.wait_for("the legend", WAIT, legend_shown);
    assert!(
        legend.contains("A → B") && legend.contains("B → A"),
        "{legend}"
    );
    // Both lines drawn, each in its colour.
    assert!(pixels_of(&browser, LAG_COLOR) > 0);
    assert!(pixels_of(&browser, BACK_COLOR) > 0);
    browser.screenshot("streaming");
    stop_and_drop(&serve, &admin, "browser_lag_both");
}
