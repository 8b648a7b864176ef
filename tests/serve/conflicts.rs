//! A two-way sync's conflicts through the service's API: a manual-policy
//! PostgreSQL <-> PostgreSQL sync run by the service parks a conflict
//! (both sides changed key 1 while it was stopped); viewers list it
//! without row data, operators with it, and an operator resolves it by
//! choosing side B's row.

use std::time::Duration;

use dmp_test_servers::{TestDb, postgres};
use serde_json::{Value, json};

use crate::sql::conflicts::{create_hot, hot};
use crate::support::serve::Serve;
use crate::support::workload::Dialect;

/// A two-way sync `name` of table `hot` between `a` and `b`, conflicts
/// parked for a person to resolve.
fn two_way_toml(name: &str, a: &TestDb, b: &TestDb) -> String {
    format!(
        "[pipeline]\nname = \"{name}\"\n[source]\nurl = \"{}\"\n[target]\nurl = \"{}\"\n\
         [tables]\ninclude = [\"hot\"]\n[run]\nmode = \"bidirectional\"\n\
         [cdc]\nslot = \"{name}\"\nheartbeat = \"1s\"\n[sync]\nconflict = \"manual\"\n",
        a.url, b.url
    )
}

/// Waits until `done` holds, failing with `what` and the service's log.
fn wait_until(serve: &Serve, what: &str, done: impl Fn() -> bool) {
    super::sql::wait_for(serve, what, Duration::from_secs(120), done);
}

/// Both sides' rows once the parked conflict at key 1 is resolved by
/// side B: its row there, nothing else moved.
pub(crate) fn resolved_by_b() -> Vec<String> {
    [
        "1:b1:3", "2:seed:1", "3:seed:1", "4:seed:1", "5:seed:1", "6:seed:1",
    ]
    .iter()
    .map(ToString::to_string)
    .collect()
}

fn post(serve: &Serve, token: &str, path: &str) {
    serve.post_json(token, path, &json!({})).expect(202);
}

/// Creates two-way sync `name` of table `hot` (made on `a`) as `admin`
/// and starts it; returns once the first load is in `b` and both legs
/// stream.
pub(crate) fn start_two_way(serve: &Serve, admin: &str, name: &str, a: &TestDb, b: &TestDb) {
    create_hot(a, Dialect::Postgres);
    serve.create(admin, &two_way_toml(name, a, b));
    post(serve, admin, &format!("/api/v1/pipelines/{name}/start"));
    wait_until(serve, "the first load", || hot(b).len() == 6);
    serve.wait_status(admin, name, Duration::from_secs(120), |s| {
        s["state"] == "streaming" && s["back"].is_object()
    });
}

/// Runs two-way sync `name` (created by `admin`) through its first load,
/// stops it, changes key 1 of `hot` on both sides (A: `a1`, version 2;
/// B: `b1`, version 3), and runs it again until both sides logged the
/// other's change as a parked conflict; then stops it, so that nothing
/// moves under the caller's checks. Returns the two entries as an
/// operator lists them.
pub(crate) fn park_a_conflict(
    serve: &Serve,
    admin: &str,
    name: &str,
    a: &TestDb,
    b: &TestDb,
) -> Vec<Value> {
    start_two_way(serve, admin, name, a, b);
    let base = format!("/api/v1/pipelines/{name}");
    let stop = || {
        post(serve, admin, &format!("{base}/stop"));
        serve.wait_status(admin, name, Duration::from_secs(60), |s| {
            s["state"] == "stopped"
        });
    };
    stop();
    a.exec("UPDATE hot SET v = 'a1', version = 2 WHERE id = 1");
    b.exec("UPDATE hot SET v = 'b1', version = 3 WHERE id = 1");
    post(serve, admin, &format!("{base}/start"));
    let listed = || {
        serve
            .get(Some(admin), &format!("{base}/conflicts"))
            .expect(200)
            .json()
    };
    wait_until(serve, "both sides' conflicts logged", || {
        listed().as_array().map(Vec::len) == Some(2)
    });
    stop();
    listed().as_array().cloned().unwrap_or_default()
}

/// Drops both legs' change streams at their sources.
pub(crate) fn drop_stream(serve: &Serve, admin: &str, name: &str) {
    serve
        .send(
            "DELETE",
            Some(admin),
            &format!("/api/v1/pipelines/{name}/stream"),
            "application/json",
            b"",
        )
        .expect(204);
}

/// The entry of `side`'s log in `entries`.
pub(crate) fn entry_of<'e>(entries: &'e [Value], side: &str) -> &'e Value {
    entries
        .iter()
        .find(|e| e["side"] == side)
        .unwrap_or_else(|| panic!("no entry of side {side}: {entries:?}"))
}

fn error_of(reply: &crate::support::serve::Reply) -> String {
    reply.json()["error"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

#[test]
fn a_parked_conflict_is_listed_shown_and_resolved_through_the_api() {
    let dir = tempfile::tempdir().expect("temp dir");
    let a = postgres().create_database("serve_conflicts_a");
    let b = postgres().create_database("serve_conflicts_b");
    let serve = Serve::start(&dir.path().join("home"), &[], &[]);
    let (admin, operator, viewer) = (
        serve.token("admin"),
        serve.token("operator"),
        serve.token("viewer"),
    );
    let parked = park_a_conflict(&serve, &admin, "serve_conflicts", &a, &b);
    let base = "/api/v1/pipelines/serve_conflicts";

    // On B: A's change of key 1 against B's row then; on A the reverse.
    let on_b = entry_of(&parked, "b");
    let on_a = entry_of(&parked, "a");
    for (entry, remote, theirs, ours) in [(on_b, "a", "a1", "b1"), (on_a, "b", "b1", "a1")] {
        assert_eq!(
            (
                &entry["key"],
                &entry["kind"],
                &entry["decision"],
                &entry["remote_side"]
            ),
            (
                &json!({"id": 1}),
                &json!("update_differs"),
                &json!("parked"),
                &json!(remote)
            ),
            "{entry}"
        );
        assert_eq!(
            (&entry["remote_new"]["v"], &entry["local_row"]["v"]),
            (&json!(theirs), &json!(ours)),
            "{entry}"
        );
        assert!(
            entry["resolution"].is_null() && entry["logged_at"].is_string(),
            "{entry}"
        );
    }
    let b_id = on_b["id"].as_str().expect("an id").to_string();
    assert!(b_id.starts_with("b:"), "{b_id}");

    // A viewer sees the entries, not the rows in them.
    let seen = serve
        .get(Some(&viewer), &format!("{base}/conflicts"))
        .expect(200)
        .json();
    let seen = seen.as_array().expect("an array");
    assert_eq!(seen.len(), 2, "{seen:?}");
    for entry in seen {
        for field in ["remote_old", "remote_new", "local_row"] {
            assert!(
                entry.get(field).is_none(),
                "{field} shown to a viewer: {entry}"
            );
        }
        assert_eq!(entry["key"], json!({"id": 1}), "{entry}");
    }
    assert!(
        !serve
            .get(Some(&viewer), &format!("{base}/conflicts"))
            .body
            .contains("b1")
    );

    // One entry; the rows again only for the operator.
    let shown = serve
        .get(Some(&viewer), &format!("{base}/conflicts/{b_id}"))
        .expect(200)
        .json();
    assert_eq!(
        (&shown["id"], shown.get("local_row")),
        (&json!(b_id), None),
        "{shown}"
    );
    let shown = serve
        .get(Some(&operator), &format!("{base}/conflicts/{b_id}"))
        .expect(200)
        .json();
    assert_eq!(shown["local_row"]["v"], "b1", "{shown}");
    let bad = serve
        .get(Some(&viewer), &format!("{base}/conflicts/seven"))
        .expect(400);
    assert!(error_of(&bad).contains("a:7, b:12"), "{}", bad.body);
    let unknown = serve
        .get(Some(&viewer), &format!("{base}/conflicts/b:999999"))
        .expect(404);
    assert!(error_of(&unknown).contains("b:999999"), "{}", unknown.body);
    serve
        .get(Some(&viewer), "/api/v1/pipelines/nowhere/conflicts")
        .expect(404);

    // Resolving is an operator's.
    let resolve = format!("{base}/conflicts/{b_id}/resolve");
    serve
        .post_json(&viewer, &resolve, &json!({"side": "b"}))
        .expect(403);
    let refused = serve
        .post_json(&operator, &resolve, &json!({"side": "c"}))
        .expect(400);
    assert!(error_of(&refused).contains("\"side\""), "{}", refused.body);
    let done = serve
        .post_json(&operator, &resolve, &json!({"side": "b"}))
        .expect(200)
        .json();
    assert_eq!(
        done,
        json!({
            "id": b_id,
            "table": "hot",
            "key": {"id": 1},
            "side": "b",
            "other_side": "a",
            "row": "written",
            "marked_on_side": 1,
            "marked_on_other_side": 1,
        })
    );
    // Side B's row on both sides; nothing else moved.
    assert_eq!((hot(&a), hot(&b)), (resolved_by_b(), resolved_by_b()));

    // Nothing waits now; every entry shows how it was resolved.
    assert_eq!(
        serve
            .get(Some(&viewer), &format!("{base}/conflicts"))
            .expect(200)
            .json(),
        json!([])
    );
    let every = serve
        .get(Some(&viewer), &format!("{base}/conflicts?all=true"))
        .expect(200)
        .json();
    let every = every.as_array().expect("an array");
    assert_eq!(every.len(), 2, "{every:?}");
    assert!(
        every
            .iter()
            .all(|e| e["resolution"] == "side b" && e["resolved_at"].is_string()),
        "{every:?}"
    );
    let again = serve
        .post_json(&operator, &resolve, &json!({"side": "a"}))
        .expect(409);
    assert!(
        error_of(&again).contains("resolved already"),
        "{}",
        again.body
    );
    let audit = serve.get(Some(&admin), "/api/v1/audit").expect(200).json();
    let resolved: Vec<&Value> = audit
        .as_array()
        .expect("entries")
        .iter()
        .filter(|e| e["action"] == "conflicts.resolve")
        .collect();
    assert!(
        resolved.iter().any(|e| e["result"]
            .as_str()
            .is_some_and(|r| r.starts_with(&format!("ok: {b_id} resolved by side b")))),
        "{resolved:?}"
    );
    assert!(
        resolved.iter().any(|e| e["result"]
            .as_str()
            .is_some_and(|r| r.contains("resolved already"))),
        "the refusal is audited too: {resolved:?}"
    );

    // Only a two-way sync logs conflicts.
    serve.create(
        &admin,
        &format!(
            "[pipeline]\nname = \"one_way\"\n[source]\nurl = \"{}\"\n[target]\nurl = \"{}\"\n",
            a.url, b.url
        ),
    );
    let one_way = serve
        .get(Some(&viewer), "/api/v1/pipelines/one_way/conflicts")
        .expect(400);
    assert!(
        error_of(&one_way).contains("bidirectional") && error_of(&one_way).contains("\"full\""),
        "{}",
        one_way.body
    );
    drop_stream(&serve, &admin, "serve_conflicts");
}
