//! Wrong requests get a precise, JSON answer: the status says the kind,
//! the message names the line, the key, the pipeline or the limit.

use crate::support::serve::{Reply, Serve};

const VALID: &str = "[pipeline]\nname = \"good\"\n\n[source]\nurl = \"sqlite://a.db\"\n\n[target]\nurl = \"sqlite://b.db\"\n";

/// Asserts `reply` is `status` with a JSON error saying each of `says`.
fn refused(reply: Reply, status: u16, says: &[&str], what: &str) {
    assert_eq!(reply.status, status, "{what}: {}", reply.body);
    assert!(
        reply.content_type.starts_with("application/json"),
        "{what}: {} is not JSON: {}",
        reply.content_type,
        reply.body
    );
    let error = reply.json()["error"]
        .as_str()
        .unwrap_or_else(|| panic!("{what}: no error message: {}", reply.body))
        .to_string();
    for word in says {
        assert!(error.contains(word), "{what}: `{word}` not in: {error}");
    }
}

#[test]
fn bad_requests_are_refused_with_json_naming_the_problem() {
    let dir = tempfile::tempdir().expect("temp dir");
    let home = dir.path().join("home");
    std::fs::create_dir_all(&home).expect("home");
    std::fs::write(home.join("serve.toml"), "[serve]\nmax_body_kb = 4\n").expect("serve.toml");
    let serve = Serve::start(&home, &[], &[]);
    let admin = serve.token("admin");
    let post = |path: &str, toml: &str| serve.post_toml(&admin, path, toml);

    // The pipeline text: its syntax (by line), its keys (by name).
    let broken = "[pipeline]\nname = \"bad\"\n\n[source\nurl = \"sqlite://a.db\"\n";
    for path in ["/api/v1/pipelines", "/api/v1/pipelines/validate"] {
        refused(post(path, broken), 400, &["line 4"], "malformed TOML");
        refused(
            post(path, &VALID.replace("[target]", "[target]\nbatch_rowz = 5")),
            400,
            &["batch_rowz"],
            "an unknown key",
        );
        refused(
            post(path, &format!("{VALID}\n[sourse]\nurl = \"x\"\n")),
            400,
            &["sourse"],
            "an unknown section",
        );
        refused(
            post(path, &VALID.replace("name = \"good\"", "name = \"../up\"")),
            400,
            &["../up"],
            "a name that is a path",
        );
    }
    refused(
        serve.send(
            "PUT",
            Some(&admin),
            "/api/v1/pipelines/good",
            "application/toml",
            b"[pipeline\n",
        ),
        400,
        &["line 1"],
        "malformed TOML in a PUT",
    );

    // Malformed JSON bodies.
    let json = |method: &str, path: &str, body: &str| {
        serve.send(
            method,
            Some(&admin),
            path,
            "application/json",
            body.as_bytes(),
        )
    };
    refused(
        json("POST", "/api/v1/pipelines", r#"{"toml": "#),
        400,
        &["request body"],
        "a cut JSON pipeline",
    );
    refused(
        json(
            "POST",
            "/api/v1/tokens",
            r#"{"name": "x", "role": "viewer""#,
        ),
        400,
        &["request body"],
        "cut JSON",
    );
    refused(
        json("POST", "/api/v1/tokens", "name=x&role=viewer"),
        400,
        &["request body"],
        "a form, not JSON",
    );
    refused(
        json(
            "POST",
            "/api/v1/tokens",
            r#"{"name": "x", "role": "viewer", "rol": 1}"#,
        ),
        400,
        &["rol"],
        "an unknown JSON field",
    );
    serve.create(&admin, VALID);
    refused(
        json("POST", "/api/v1/pipelines/good/start", "{restart: yes}"),
        400,
        &["request body"],
        "a start with broken JSON",
    );
    refused(
        serve.get(Some(&admin), "/api/v1/pipelines/good/logs?level=loud"),
        400,
        &["loud"],
        "a bad query parameter",
    );

    // An unknown role makes no token, and no user.
    refused(
        serve.post_json(
            &admin,
            "/api/v1/tokens",
            &serde_json::json!({"name": "root", "role": "superuser"}),
        ),
        400,
        &["superuser"],
        "a token of an unknown role",
    );
    refused(
        serve.post_json(
            &admin,
            "/api/v1/users",
            &serde_json::json!({"name": "root", "role": "root", "password": "long enough"}),
        ),
        400,
        &["root"],
        "a user of an unknown role",
    );
    let tokens = serve.get(Some(&admin), "/api/v1/tokens").expect(200).json();
    assert!(
        tokens
            .as_array()
            .expect("tokens")
            .iter()
            .all(|t| t["name"] != "root"),
        "{tokens}"
    );
    let users = serve.get(Some(&admin), "/api/v1/users").expect(200).json();
    assert_eq!(users, serde_json::json!([]));

    // Unknown pipelines, endpoints and methods.
    for (method, path) in [
        ("GET", "/api/v1/pipelines/nope"),
        ("GET", "/api/v1/pipelines/nope/toml"),
        ("GET", "/api/v1/pipelines/nope/status"),
        ("GET", "/api/v1/pipelines/nope/runs"),
        ("GET", "/api/v1/pipelines/nope/logs"),
        ("GET", "/api/v1/pipelines/nope/events"),
        ("POST", "/api/v1/pipelines/nope/start"),
        ("POST", "/api/v1/pipelines/nope/stop"),
        ("DELETE", "/api/v1/pipelines/nope"),
    ] {
        refused(
            serve.send(method, Some(&admin), path, "application/json", b""),
            404,
            &["nope"],
            &format!("{method} {path}"),
        );
    }
    refused(
        serve.send(
            "PUT",
            Some(&admin),
            "/api/v1/pipelines/nope",
            "application/toml",
            VALID.replace("good", "nope").as_bytes(),
        ),
        404,
        &["nope"],
        "PUT of an unknown pipeline",
    );
    for path in [
        "/api/v1/nope",
        "/api/v2/pipelines",
        "/nope",
        "/api/v1/pipelines/good/nope",
    ] {
        refused(serve.get(Some(&admin), path), 404, &[], path);
        refused(serve.get(None, path), 404, &[], path);
    }
    for (method, path) in [
        ("PATCH", "/api/v1/pipelines"),
        ("DELETE", "/healthz"),
        ("PUT", "/api/v1/tokens"),
        ("POST", "/api/v1/pipelines/good/status"),
    ] {
        refused(
            serve.send(method, Some(&admin), path, "application/json", b"{}"),
            405,
            &[],
            &format!("{method} {path}"),
        );
    }

    // Over the body cap (4 KiB here), with the pipeline text or JSON.
    let big = format!("{VALID}# {}\n", "x".repeat(8 * 1024));
    refused(
        post("/api/v1/pipelines", &big),
        413,
        &["4 KiB"],
        "a big pipeline",
    );
    refused(
        serve.post_json(
            &admin,
            "/api/v1/tokens",
            &serde_json::json!({"name": "x".repeat(8 * 1024), "role": "viewer"}),
        ),
        413,
        &["4 KiB"],
        "a big JSON body",
    );
    // Just under it is fine.
    let fits = format!(
        "{}# {}\n",
        VALID.replace("good", "fits"),
        "x".repeat(3 * 1024)
    );
    serve.create(&admin, &fits);
}
