//! Secrets through the service. A PostgreSQL password posted in a
//! pipeline's URL is used by its runs but never comes back: not in any
//! answer of the API, not in the service's log, not in plain text in any
//! file of its home. References reach only the allowed variables, files
//! only the data root.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use dmp_test_servers::TestDb;

use crate::support::count;
use crate::support::serve::{Reply, Serve, file_text};

const ROLE: &str = "dmp_api_secret";
const ALLOWED_VAR: &str = "DMP_TEST_PG_PASS";

/// Distinctive enough that finding it anywhere means it leaked.
fn password() -> String {
    format!("Qz7Pw{}xVtK9", std::process::id())
}

/// Makes the server ask `ROLE` for its password (the test servers trust
/// everyone): a line before the others in `pg_hba.conf`, reloaded, and
/// waited for until a wrong password is refused.
fn require_password(db: &TestDb, server: &dmp_test_servers::PostgresServer) {
    let hba = PathBuf::from(db.scalar("SHOW hba_file"));
    let rules = std::fs::read_to_string(&hba).expect("pg_hba.conf");
    std::fs::write(
        &hba,
        format!("host all {ROLE} 127.0.0.1/32 scram-sha-256\n{rules}"),
    )
    .expect("pg_hba.conf written");
    db.scalar("SELECT pg_reload_conf()");
    let started = Instant::now();
    loop {
        let refused = !Command::new(server.bin_dir().join("psql"))
            .args(["-X", "-q", "-h", "127.0.0.1", "-p"])
            .arg(server.port().to_string())
            .args(["-U", ROLE, "-d", &db.name, "-c", "SELECT 1"])
            .env("PGPASSWORD", "not the password")
            .env("PGCONNECT_TIMEOUT", "10")
            .output()
            .expect("psql runs")
            .status
            .success();
        if refused {
            return;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the server still lets {ROLE} in without its password"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn pipeline(name: &str, source: &str) -> String {
    format!(
        "[pipeline]\nname = \"{name}\"\n\n[source]\nurl = \"{source}\"\n\n[target]\nurl = \"sqlite://{name}-dst.db\"\n"
    )
}

/// Every answer the test was given, for the leak check at the end.
#[derive(Default)]
struct Answers {
    seen: Vec<(String, String)>,
}

impl Answers {
    fn keep(&mut self, what: &str, reply: Reply) -> Reply {
        self.seen.push((what.to_string(), reply.body.clone()));
        reply
    }
}

/// Every file under `dir`, however deep.
fn files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut dirs = vec![dir.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).expect("read dir") {
            let entry = entry.expect("dir entry");
            let kind = entry.file_type().expect("file type");
            if kind.is_dir() {
                dirs.push(entry.path());
            } else if kind.is_file() {
                out.push(entry.path());
            }
        }
    }
    out
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

#[test]
fn a_posted_password_is_used_but_never_shown_logged_or_stored_in_clear() {
    let server = dmp_test_servers::own_postgres();
    let db = server.create_database("api_secret");
    let secret = password();
    db.exec(&format!(
        "CREATE ROLE {ROLE} LOGIN PASSWORD '{secret}';
         CREATE TABLE accounts (id int PRIMARY KEY, owner text NOT NULL);
         INSERT INTO accounts SELECT g, 'owner ' || g FROM generate_series(1, 500) g;
         GRANT SELECT ON ALL TABLES IN SCHEMA public TO {ROLE};"
    ));
    require_password(&db, &server);
    let url = |password: &str, database: &str| {
        format!(
            "postgres://{ROLE}:{password}@127.0.0.1:{}/{database}?sslmode=disable",
            server.port()
        )
    };

    let dir = tempfile::tempdir().expect("temp dir");
    let home = dir.path().join("home");
    std::fs::create_dir_all(&home).expect("home");
    std::fs::write(
        home.join("serve.toml"),
        "[serve]\nsecret_env = [\"DMP_TEST_*\"]\n",
    )
    .expect("serve.toml");
    let serve = Serve::start(&home, &[], &[(ALLOWED_VAR, &secret)]);
    let admin = serve.token("admin");
    let operator = serve.token("operator");
    let mut answers = Answers::default();
    let toml = pipeline("secret", &url(&secret, &db.name));

    // Tested and created with the password; a wrong one is refused by the
    // server, so the runs below prove the stored one is used.
    let plan = answers
        .keep(
            "validate",
            serve.post_toml(&admin, "/api/v1/pipelines/validate", &toml),
        )
        .expect(200)
        .json();
    assert_eq!(plan["tables"][0]["name"], "public.accounts", "{plan}");
    let wrong = answers.keep(
        "validate with a wrong password",
        serve.post_toml(
            &admin,
            "/api/v1/pipelines/validate",
            &pipeline("secret", &url("WrongPw123", &db.name)),
        ),
    );
    assert!(
        wrong.status >= 400
            && wrong.json()["error"]
                .as_str()
                .is_some_and(|e| e.contains("password")),
        "{} {}",
        wrong.status,
        wrong.body
    );
    assert!(!wrong.body.contains("WrongPw123"), "{}", wrong.body);
    answers
        .keep(
            "create",
            serve.post_toml(&admin, "/api/v1/pipelines", &toml),
        )
        .expect(201);

    let listed = answers
        .keep("list", serve.get(Some(&admin), "/api/v1/pipelines"))
        .expect(200)
        .json();
    assert!(
        listed[0]["source"]
            .as_str()
            .is_some_and(|s| s.contains(&format!("{ROLE}:***@"))),
        "{listed}"
    );
    let shown = answers
        .keep("show", serve.get(Some(&admin), "/api/v1/pipelines/secret"))
        .expect(200)
        .json();
    assert_eq!(shown["source"]["password_set"], true, "{shown}");
    let exported = answers
        .keep(
            "export",
            serve.get(Some(&admin), "/api/v1/pipelines/secret/toml"),
        )
        .expect(200)
        .body;
    assert!(exported.contains(&format!("{ROLE}:***@")), "{exported}");

    // It runs with the password.
    serve
        .post_json(
            &operator,
            "/api/v1/pipelines/secret/start",
            &serde_json::json!({}),
        )
        .expect(202);
    let events = serve.follow_events(&admin, "secret", |s| {
        s["state"] == "done" || s["state"] == "failed"
    });
    for (kind, data) in &events {
        answers.seen.push((format!("event {kind}"), data.clone()));
    }
    let status = answers
        .keep(
            "status",
            serve.get(Some(&admin), "/api/v1/pipelines/secret/status"),
        )
        .expect(200)
        .json();
    assert_eq!(status["state"], "done", "{status}\n{}", serve.log());
    assert_eq!(count(&serve.data().join("secret-dst.db"), "accounts"), 500);

    // PUT of the exported text keeps the stored password: tested and run
    // again with it.
    answers
        .keep(
            "validate the export",
            serve.post_toml(&admin, "/api/v1/pipelines/validate", &exported),
        )
        .expect(200);
    answers
        .keep(
            "put the export",
            serve.send(
                "PUT",
                Some(&admin),
                "/api/v1/pipelines/secret",
                "application/toml",
                exported.as_bytes(),
            ),
        )
        .expect(200);
    assert_eq!(
        answers
            .keep(
                "export after put",
                serve.get(Some(&admin), "/api/v1/pipelines/secret/toml"),
            )
            .body,
        exported
    );
    serve
        .post_json(
            &operator,
            "/api/v1/pipelines/secret/start",
            &serde_json::json!({"restart": true}),
        )
        .expect(202);
    let again = serve.wait_status(&admin, "secret", Duration::from_secs(120), |s| {
        s["run"] != status["run"] && (s["state"] == "done" || s["state"] == "failed")
    });
    assert_eq!(again["state"], "done", "{again}\n{}", serve.log());

    // A run that fails with the password in its URL: its error, logs and
    // runs are shown masked too.
    answers
        .keep(
            "create broken",
            serve.post_toml(
                &admin,
                "/api/v1/pipelines",
                &pipeline("broken", &url(&secret, "no_such_database")),
            ),
        )
        .expect(201);
    serve
        .post_json(
            &operator,
            "/api/v1/pipelines/broken/start",
            &serde_json::json!({}),
        )
        .expect(202);
    let failed = serve.wait_status(&admin, "broken", Duration::from_secs(120), |s| {
        s["state"] == "failed"
    });
    answers
        .seen
        .push(("broken status".into(), failed.to_string()));

    // Errors that quote the posted text or reach the server.
    let errors = [
        ("create twice", toml.clone(), 409),
        (
            "syntax error beside the password",
            toml.replace("[target]", "[target"),
            400,
        ),
        (
            "a wrong key beside the password",
            toml.replace("[target]", "[target]\npasword = 1"),
            400,
        ),
    ];
    for (what, text, code) in errors {
        answers
            .keep(what, serve.post_toml(&admin, "/api/v1/pipelines", &text))
            .expect(code);
    }
    let unreachable = answers.keep(
        "validate an unreachable server",
        serve.post_toml(
            &admin,
            "/api/v1/pipelines/validate",
            &format!(
                "{}\n[run]\nretries = 0\n",
                pipeline(
                    "secret",
                    &format!("postgres://{ROLE}:{secret}@127.0.0.1:1/x?sslmode=disable"),
                )
            ),
        ),
    );
    assert!(unreachable.status >= 400, "{}", unreachable.body);

    // References: only the allowed variables, shown as written.
    let home_ref = answers.keep(
        "reference to HOME",
        serve.post_toml(
            &admin,
            "/api/v1/pipelines",
            &pipeline("env-home", &url("${env:HOME}", &db.name)),
        ),
    );
    assert_eq!(home_ref.status, 400, "{}", home_ref.body);
    assert!(
        home_ref.json()["error"]
            .as_str()
            .is_some_and(|e| e.contains("HOME")),
        "{}",
        home_ref.body
    );
    let by_env = url(&format!("${{env:{ALLOWED_VAR}}}"), &db.name);
    answers
        .keep(
            "create by reference",
            serve.post_toml(&admin, "/api/v1/pipelines", &pipeline("by-env", &by_env)),
        )
        .expect(201);
    let shown = answers
        .keep(
            "show by reference",
            serve.get(Some(&admin), "/api/v1/pipelines/by-env"),
        )
        .expect(200)
        .json();
    assert_eq!(
        shown["source"]["url"].as_str(),
        Some(by_env.as_str()),
        "{shown}"
    );
    assert!(
        shown["toml"].as_str().is_some_and(|t| t.contains(&by_env)),
        "{shown}"
    );
    serve
        .post_json(
            &operator,
            "/api/v1/pipelines/by-env/start",
            &serde_json::json!({}),
        )
        .expect(202);
    let by_env_run = serve.wait_status(&admin, "by-env", Duration::from_secs(120), |s| {
        s["state"] == "done" || s["state"] == "failed"
    });
    assert_eq!(by_env_run["state"], "done", "{by_env_run}");

    // Everything a viewer and an admin can read about the pipelines.
    for path in [
        "/api/v1/pipelines",
        "/api/v1/pipelines/secret",
        "/api/v1/pipelines/secret/toml",
        "/api/v1/pipelines/secret/status",
        "/api/v1/pipelines/secret/runs",
        "/api/v1/pipelines/secret/logs?level=debug&limit=10000",
        "/api/v1/pipelines/secret/dead-letters",
        "/api/v1/pipelines/broken/status",
        "/api/v1/pipelines/broken/runs",
        "/api/v1/pipelines/broken/logs?level=debug&limit=10000",
        "/api/v1/pipelines/by-env/toml",
        "/api/v1/audit?limit=10000",
        "/metrics",
    ] {
        answers
            .keep(path, serve.get(Some(&admin), path))
            .expect(200);
    }
    let runs = serve
        .get(Some(&admin), "/api/v1/pipelines/broken/runs")
        .json();
    assert!(
        runs[0]["error"].as_str().is_some_and(|e| !e.is_empty()),
        "the failed run has no error: {runs}"
    );

    for (what, body) in &answers.seen {
        assert!(!body.contains(&secret), "{what} shows the password: {body}");
    }
    let log = serve.log();
    assert!(
        !log.contains(&secret),
        "the service's log has the password:\n{log}"
    );
    let scanned = files(&home);
    for file in &scanned {
        let bytes = std::fs::read(file).expect("read");
        assert!(
            !contains(&bytes, secret.as_bytes()),
            "{} holds the password in clear",
            file.display()
        );
    }
    let names: Vec<String> = scanned
        .iter()
        .filter_map(|f| f.file_name().map(|n| n.to_string_lossy().into_owned()))
        .collect();
    for expected in ["service.db", "service.db-wal", "secret.key", "serve.log"] {
        assert!(
            names.iter().any(|n| n == expected),
            "{expected} not among the files checked: {names:?}"
        );
    }
    assert!(!file_text(&home.join("service.db")).is_empty());
}

/// Outside the data root, by an absolute path, by `..` and through a link
/// inside the root: refused, with nothing created out there.
#[test]
fn files_outside_the_data_root_are_refused() {
    let dir = tempfile::tempdir().expect("temp dir");
    let outside = dir.path().join("outside");
    std::fs::create_dir_all(&outside).expect("outside");
    std::fs::write(outside.join("secret.txt"), "a password\n").expect("secret file");
    let serve = Serve::start(&dir.path().join("home"), &[], &[]);
    let admin = serve.token("admin");
    let data = serve.data();
    std::os::unix::fs::symlink(&outside, data.join("escape")).expect("link");
    crate::support::create_events_db(&data.join("inside.db"), 10);
    std::fs::write(data.join("inside.txt"), "inside-pass\n").expect("inside secret");
    let with = |source: &str, target: &str| {
        format!(
            "[pipeline]\nname = \"confined\"\n\n[source]\nurl = \"{source}\"\n\n[target]\nurl = \"{target}\"\n"
        )
    };
    let out = outside.display();
    let pg = |password: &str| format!("postgres://u:{password}@127.0.0.1:1/db?sslmode=disable");
    let refused = [
        with(&format!("sqlite://{out}/x.db"), "sqlite://t.db"),
        with("sqlite://inside.db", &format!("sqlite://{out}/x.db")),
        with("sqlite://../../outside/x.db", "sqlite://t.db"),
        with("sqlite://inside.db", "sqlite://escape/x.db"),
        with(
            "sqlite://inside.db",
            &format!("file://{out}/files?format=csv"),
        ),
        with(
            "sqlite://inside.db",
            "file://../../outside/files?format=csv",
        ),
        with("sqlite://inside.db", "file://escape/files?format=csv"),
        with(&pg(&format!("${{file:{out}/secret.txt}}")), "sqlite://t.db"),
        with(&pg("${file:../../outside/secret.txt}"), "sqlite://t.db"),
        with(&pg("${file:escape/secret.txt}"), "sqlite://t.db"),
    ];
    for toml in &refused {
        for path in ["/api/v1/pipelines", "/api/v1/pipelines/validate"] {
            let reply = serve.post_toml(&admin, path, toml);
            assert_eq!(reply.status, 400, "{path}\n{toml}\n{}", reply.body);
            let error = reply.json()["error"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            assert!(
                error.contains("outside the service's data root"),
                "{toml}\n{error}"
            );
        }
    }
    let mut left: Vec<_> = std::fs::read_dir(&outside)
        .expect("outside")
        .map(|e| e.expect("entry").file_name())
        .collect();
    left.sort();
    assert_eq!(
        left,
        ["secret.txt"],
        "something was made outside the data root"
    );
    assert_eq!(
        serve.get(Some(&admin), "/api/v1/pipelines").json(),
        serde_json::json!([]),
        "a refused pipeline was saved"
    );

    // The same inside the root is accepted: the refusals were about where.
    for toml in [
        with("sqlite://inside.db", "sqlite://t.db"),
        with("sqlite://inside.db", "file://files?format=csv"),
        with(&pg("${file:inside.txt}"), "sqlite://t.db"),
    ] {
        serve.create(&admin, &toml);
        serve
            .send(
                "DELETE",
                Some(&admin),
                "/api/v1/pipelines/confined",
                "application/json",
                b"",
            )
            .expect(204);
    }
}
