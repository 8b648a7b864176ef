//! A stream's lag history through the API: a two-way sync run by the
//! service samples both legs, so that its `/lag` points carry the lag from
//! side B back to side A (`back_lag_ms`) beside the one from A to B.

use std::time::{Duration, Instant};

use dmp_test_servers::{TestDb, postgres};
use serde_json::{Value, json};

use super::conflicts::{drop_stream, start_two_way};
use crate::sql::conflicts::hot;
use crate::support::serve::Serve;

/// The lag points of pipeline `name` over the last hour, oldest first.
pub(crate) fn lag_points(serve: &Serve, token: &str, name: &str) -> Vec<Value> {
    serve
        .get(
            Some(token),
            &format!("/api/v1/pipelines/{name}/lag?minutes=60"),
        )
        .expect(200)
        .json()
        .as_array()
        .cloned()
        .unwrap_or_else(|| panic!("/lag of {name} is no array"))
}

/// The points of `points` that carry the lag of the leg back.
pub(crate) fn with_back(points: &[Value]) -> Vec<&Value> {
    points
        .iter()
        .filter(|p| p.get("back_lag_ms").is_some())
        .collect()
}

/// Runs two-way sync `name` of table `hot` between `a` and `b` (created
/// by `admin`) through its first load, then inserts a row on each side
/// (each its own transaction) every half second until the service has
/// sampled the lag of both legs; returns the lag points then.
pub(crate) fn stream_both_ways(
    serve: &Serve,
    admin: &str,
    name: &str,
    a: &TestDb,
    b: &TestDb,
) -> Vec<Value> {
    start_two_way(serve, admin, name, a, b);
    let limit = Duration::from_secs(60);
    let started = Instant::now();
    for id in 100.. {
        a.exec(&format!("INSERT INTO hot VALUES ({id}, 'from a', 1)"));
        b.exec(&format!(
            "INSERT INTO hot VALUES ({}, 'from b', 1)",
            id + 1000
        ));
        std::thread::sleep(Duration::from_millis(500));
        let points = lag_points(serve, admin, name);
        let status = serve.status(admin, name);
        if !with_back(&points).is_empty() && status["lag"]["ms"].is_u64() {
            return points;
        }
        assert!(
            started.elapsed() < limit,
            "no lag of side B → A sampled within {limit:?}: {points:?}\nstatus: {status}\n\
             service log:\n{}",
            serve.log()
        );
    }
    unreachable!("ids run out")
}

/// Stops pipeline `name` and drops both legs' change streams.
pub(crate) fn stop_and_drop(serve: &Serve, admin: &str, name: &str) {
    serve
        .post_json(admin, &format!("/api/v1/pipelines/{name}/stop"), &json!({}))
        .expect(202);
    serve.wait_status(admin, name, Duration::from_secs(60), |s| {
        s["state"] == "stopped"
    });
    drop_stream(serve, admin, name);
}

#[test]
fn a_two_way_syncs_lag_points_carry_the_lag_of_both_directions() {
    let dir = tempfile::tempdir().expect("temp dir");
    let a = postgres().create_database("serve_lag_a");
    let b = postgres().create_database("serve_lag_b");
    let serve = Serve::start(&dir.path().join("home"), &[], &[]);
    let admin = serve.token("admin");
    let viewer = serve.token("viewer");
    stream_both_ways(&serve, &admin, "serve_lag", &a, &b);

    // Both sides hold both sides' rows: each leg applied changes.
    super::sql::wait_for(&serve, "both sides alike", Duration::from_secs(60), || {
        let (on_a, on_b) = (hot(&a), hot(&b));
        on_a == on_b && on_a.iter().any(|r| r.contains("from b"))
    });
    // What a viewer reads: every point a time and the A → B lag, those
    // sampled since side B's first change came back also the B → A lag.
    let points = lag_points(&serve, &viewer, "serve_lag");
    assert!(!points.is_empty());
    for point in &points {
        assert!(point["at"].is_i64() && point["lag_ms"].is_u64(), "{point}");
        let back = point.get("back_lag_ms");
        assert!(back.is_none_or(Value::is_u64), "{point}");
        let keys = point.as_object().map(|o| o.len());
        assert_eq!(keys, Some(2 + usize::from(back.is_some())), "{point}");
    }
    let backs = with_back(&points);
    assert!(!backs.is_empty(), "{points:?}");
    // Once the leg back has applied a change, every second's point has it.
    let first = points
        .iter()
        .position(|p| p.get("back_lag_ms").is_some())
        .expect("a point with the lag back");
    assert_eq!(backs.len(), points.len() - first, "{points:?}");
    assert!(serve.status(&viewer, "serve_lag")["back"]["ms"].is_u64());
    // The API's document says so: a field that may be left out.
    let doc = serve.get(None, "/api/v1/openapi.json").expect(200).json();
    let schema = &doc["components"]["schemas"]["LagPoint"];
    assert!(
        schema["properties"]["back_lag_ms"].is_object()
            && !schema["required"]
                .as_array()
                .is_some_and(|r| r.contains(&json!("back_lag_ms"))),
        "{schema}"
    );
    stop_and_drop(&serve, &admin, "serve_lag");
}
