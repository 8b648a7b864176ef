//! The audit log: each change made through the service, and each refused
//! attempt, is an entry naming who, from where, what, on what and how it
//! ended; and entries cannot be changed or removed in the store.

use std::time::Duration;

use crate::support::create_events_db;
use crate::support::serve::Serve;

fn pipeline(name: &str, source: &str) -> String {
    format!(
        "[pipeline]\nname = \"{name}\"\n\n[source]\nurl = \"{source}\"\n\n[target]\nurl = \"sqlite://{name}-dst.db\"\n"
    )
}

/// The entry of `action` on `target` by `who` whose result is `ok`, or
/// says `result`.
fn entry<'a>(
    entries: &'a [serde_json::Value],
    (action, target, who, result): (&str, &str, &str, &str),
) -> &'a serde_json::Value {
    entries
        .iter()
        .find(|e| {
            let said = e["result"].as_str().unwrap_or_default();
            e["action"] == action
                && e["target"] == target
                && e["who"] == who
                && if result == "ok" {
                    said == "ok"
                } else {
                    said != "ok" && said.contains(result)
                }
        })
        .unwrap_or_else(|| {
            panic!(
                "no audit entry {action} {target} by {who} saying {result} in:\n{}",
                serde_json::to_string_pretty(entries).unwrap_or_default()
            )
        })
}

#[test]
fn changes_and_refused_attempts_are_audited_and_entries_cannot_be_changed() {
    let dir = tempfile::tempdir().expect("temp dir");
    let home = dir.path().join("home");
    let serve = Serve::start(&home, &[], &[]);
    let admin = serve.token("admin");
    let operator = serve.token("operator");
    create_events_db(&serve.data().join("audited-src.db"), 2_000);
    let toml = pipeline("audited", "sqlite://audited-src.db");
    let delete = |name: &str| {
        serve.send(
            "DELETE",
            Some(&admin),
            &format!("/api/v1/pipelines/{name}"),
            "application/json",
            b"",
        )
    };

    serve.create(&admin, &toml);
    serve
        .post_toml(
            &admin,
            "/api/v1/pipelines",
            &pipeline("refused", "postgres://u:${env:HOME}@h/db"),
        )
        .expect(400);
    serve
        .send(
            "PUT",
            Some(&admin),
            "/api/v1/pipelines/audited",
            "application/toml",
            format!("{toml}\n[run]\nbatch_rows = 100\n").as_bytes(),
        )
        .expect(200);
    serve
        .post_json(
            &operator,
            "/api/v1/pipelines/audited/start",
            &serde_json::json!({}),
        )
        .expect(202);
    serve.wait_status(&admin, "audited", Duration::from_secs(60), |s| {
        s["state"] == "done"
    });
    serve
        .post_json(
            &operator,
            "/api/v1/pipelines/audited/pause",
            &serde_json::json!({}),
        )
        .expect(409);
    let made = serve
        .post_json(
            &admin,
            "/api/v1/tokens",
            &serde_json::json!({"name": "ci", "role": "operator"}),
        )
        .expect(201)
        .json();
    let id = made["id"].as_str().expect("id").to_string();
    serve
        .send(
            "DELETE",
            Some(&admin),
            &format!("/api/v1/tokens/{id}"),
            "application/json",
            b"",
        )
        .expect(204);
    serve
        .send(
            "DELETE",
            Some(&admin),
            "/api/v1/tokens/no-such-token",
            "application/json",
            b"",
        )
        .expect(404);
    serve
        .post_json(
            &admin,
            "/api/v1/users",
            &serde_json::json!({"name": "bob", "role": "viewer", "password": "short"}),
        )
        .expect(400);
    serve
        .post_json(
            &admin,
            "/api/v1/users",
            &serde_json::json!({"name": "bob", "role": "viewer", "password": "long enough"}),
        )
        .expect(201);
    let sign_in = |password: &str| {
        serve.call(
            "POST",
            "/api/v1/session",
            &[("Content-Type", "application/json")],
            serde_json::json!({"user": "bob", "password": password})
                .to_string()
                .as_bytes(),
        )
    };
    sign_in("not his password").expect(401);
    sign_in("long enough").expect(200);
    delete("audited").expect(204);
    delete("audited").expect(404);

    let entries = serve.get(Some(&admin), "/api/v1/audit").expect(200).json();
    let entries = entries.as_array().expect("entries").clone();
    let ids: Vec<i64> = entries.iter().filter_map(|e| e["id"].as_i64()).collect();
    assert!(
        ids.windows(2).all(|w| w[0] > w[1]),
        "not newest first: {ids:?}"
    );
    for e in &entries {
        for field in ["at", "who", "addr", "action", "target", "result"] {
            assert!(e[field].is_string(), "{field} missing: {e}");
        }
    }
    let by_admin = "token admin-token";
    let expected: [(&str, &str, &str, &str); 16] = [
        ("pipeline.create", "audited", by_admin, "ok"),
        ("pipeline.create", "refused", by_admin, "HOME"),
        ("pipeline.update", "audited", by_admin, "ok"),
        ("pipeline.start", "audited", "token operator-token", "ok"),
        (
            "pipeline.pause",
            "audited",
            "token operator-token",
            "not running",
        ),
        ("token.create", "ci (operator)", by_admin, "ok"),
        ("token.revoke", &id, by_admin, "ok"),
        ("token.revoke", "no-such-token", by_admin, "no such token"),
        ("user.add", "bob (viewer)", by_admin, "ok"),
        ("session.sign_in", "bob", "user bob", "ok"),
        (
            "session.sign_in",
            "bob",
            "user bob",
            "wrong user or password",
        ),
        (
            "user.add",
            "bob (viewer)",
            by_admin,
            "at least 8 characters",
        ),
        ("pipeline.delete", "audited", by_admin, "ok"),
        ("pipeline.delete", "audited", by_admin, "no pipeline"),
        ("token.create", "admin-token (admin)", "cli", "ok"),
        ("token.create", "operator-token (operator)", "cli", "ok"),
    ];
    for expected in expected {
        let e = entry(&entries, expected);
        if expected.2 != "cli" {
            assert_eq!(e["addr"], "127.0.0.1", "{e}");
        }
    }
    // The refused attempts next to the successful ones.
    let refusals = |action: &str, target: &str| {
        entries
            .iter()
            .filter(|e| e["action"] == action && e["target"] == target && e["result"] != "ok")
            .count()
    };
    assert_eq!(refusals("session.sign_in", "bob"), 1, "the wrong password");
    assert_eq!(
        refusals("user.add", "bob (viewer)"),
        1,
        "the short password"
    );
    assert_eq!(
        refusals("pipeline.delete", "audited"),
        1,
        "the second delete"
    );

    // Entries are append-only in the store itself.
    let db = rusqlite::Connection::open(home.join("service.db")).expect("service store");
    for sql in [
        "UPDATE audit SET result = 'forged'",
        "UPDATE audit SET who = 'nobody' WHERE action = 'pipeline.delete'",
        "DELETE FROM audit",
        "DELETE FROM audit WHERE action = 'session.sign_in'",
    ] {
        let err = db
            .execute(sql, [])
            .expect_err(&format!("`{sql}` changed the audit log"));
        assert!(err.to_string().contains("append-only"), "{sql}: {err}");
    }
    drop(db);
    let after = serve
        .get(
            Some(&admin),
            &format!("/api/v1/audit?limit={}", entries.len()),
        )
        .expect(200)
        .json();
    assert_eq!(after, serde_json::Value::Array(entries));
}
