//! Who may call what. The matrix is generated from the service's own route
//! table: every route, called with no credentials, stale credentials and
//! each role's token and browser session, must answer as its access says
//! (401, 403, or let through). Then the browser session's own rules: the
//! CSRF token on writes, the cookie's flags, a new id at each sign-in and
//! sign-out.

use std::cell::Cell;
use std::time::{Duration, Instant};

use dmp::server::{Access, Role, Route, route_table};

use crate::support::create_events_db;
use crate::support::serve::{Reply, Serve, Session};

const PASSWORD: &str = "correct horse battery";
const PIPELINE: &str = "matrix";
const PLUGIN: &str = "stamp";

/// Where a caller stands with the service.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Standing {
    /// Sends nothing.
    Anonymous,
    /// Sends credentials that no longer hold: expired, revoked, signed out.
    Stale,
    Signed(Role),
}

#[derive(Debug)]
enum Credential {
    Nothing,
    Bearer(String),
    /// A browser: the cookie, and the CSRF token echoed on writes. The
    /// user is signed in again when a call ends the session.
    Cookie {
        user: Option<String>,
        session: Session,
    },
}

#[derive(Debug)]
struct Caller {
    label: &'static str,
    standing: Standing,
    credential: Credential,
}

impl Caller {
    fn headers(&self, write: bool) -> Vec<(&'static str, String)> {
        match &self.credential {
            Credential::Nothing => Vec::new(),
            Credential::Bearer(token) => vec![("Authorization", format!("Bearer {token}"))],
            Credential::Cookie { session, .. } => {
                let mut headers = vec![("Cookie", session.cookie.clone())];
                if write {
                    headers.push(("X-CSRF-Token", session.csrf.clone()));
                }
                headers
            }
        }
    }
}

fn is_write(route: &Route) -> bool {
    !matches!(route.method.as_str(), "GET" | "HEAD" | "OPTIONS")
}

/// The id part of a token `dmp_<id>_<secret>`.
fn token_id(token: &str) -> &str {
    token
        .strip_prefix("dmp_")
        .and_then(|rest| rest.split_once('_'))
        .map(|(id, _)| id)
        .unwrap_or_else(|| panic!("not a token: {token}"))
}

fn pipeline_toml(name: &str) -> String {
    format!(
        "[pipeline]\nname = \"{name}\"\n\n[source]\nurl = \"sqlite://{PIPELINE}-src.db\"\n\n[target]\nurl = \"sqlite://{name}-dst.db\"\n"
    )
}

/// What the routes' placeholders and bodies are filled with.
struct Fixture<'a> {
    serve: &'a Serve,
    admin: String,
    made: Cell<u32>,
}

impl Fixture<'_> {
    fn next(&self) -> u32 {
        self.made.set(self.made.get() + 1);
        self.made.get()
    }

    /// The pipeline `{name}` stands for exists (an earlier cell may have
    /// deleted it).
    fn ensure_pipeline(&self) {
        let path = format!("/api/v1/pipelines/{PIPELINE}");
        if self.serve.get(Some(&self.admin), &path).status == 404 {
            self.serve.create(&self.admin, &pipeline_toml(PIPELINE));
        }
    }

    /// The route's path for one call: `{id}` is a token made for it, so
    /// that revoking it takes nothing from anyone else.
    fn path(&self, route: &Route) -> String {
        let mut path = route
            .path
            .replace("{name}", PIPELINE)
            .replace("{plugin}", PLUGIN);
        if path.contains("{id}") {
            let made = self
                .serve
                .post_json(
                    &self.admin,
                    "/api/v1/tokens",
                    &serde_json::json!({"name": format!("victim-{}", self.next()), "role": "viewer"}),
                )
                .expect(201)
                .json();
            path = path.replace("{id}", made["id"].as_str().expect("token id"));
        }
        assert!(!path.contains('{'), "a placeholder left in {path}");
        path
    }

    /// A body that the route, when let through, can act on.
    fn body(&self, route: &Route) -> (&'static str, Vec<u8>) {
        let json = |v: serde_json::Value| ("application/json", v.to_string().into_bytes());
        match (route.method.as_str(), route.path) {
            ("POST", "/api/v1/session") => {
                json(serde_json::json!({"user": "matrix-signin", "password": PASSWORD}))
            }
            ("POST", "/api/v1/pipelines") => (
                "application/toml",
                pipeline_toml(&format!("matrix-new-{}", self.next())).into_bytes(),
            ),
            ("POST", "/api/v1/pipelines/validate") | ("PUT", "/api/v1/pipelines/{name}") => {
                ("application/toml", pipeline_toml(PIPELINE).into_bytes())
            }
            ("POST", "/api/v1/tokens") => json(
                serde_json::json!({"name": format!("matrix-{}", self.next()), "role": "viewer"}),
            ),
            ("POST", "/api/v1/users") => json(serde_json::json!({
                "name": format!("matrix-user-{}", self.next()),
                "role": "viewer",
                "password": PASSWORD,
            })),
            ("POST", "/api/v1/pipelines/{name}/dead-letters/purge") => {
                json(serde_json::json!({"all": true}))
            }
            ("POST", "/api/v1/pipelines/{name}/plugins/{plugin}") => {
                ("application/wasm", b"\0asm\x01\0\0\0".to_vec())
            }
            ("POST", "/api/v1/pipelines/{name}/plugins/{plugin}/rollback") => {
                json(serde_json::json!({"version": 1}))
            }
            _ => ("application/json", Vec::new()),
        }
    }
}

/// A token that has expired: made to last a second, then waited out.
fn expired_token(serve: &Serve) -> String {
    let token = serve.token_with("admin", &["--expires", "1s"]);
    let started = Instant::now();
    while serve.get(Some(&token), "/api/v1/session").status != 401 {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "a token made to expire in 1s still works"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    token
}

/// A token revoked through the API (it worked before).
fn revoked_token(serve: &Serve, admin: &str) -> String {
    let token = serve.token("admin");
    serve.get(Some(&token), "/api/v1/session").expect(200);
    let path = format!("/api/v1/tokens/{}", token_id(&token));
    serve
        .call(
            "DELETE",
            &path,
            &[("Authorization", &format!("Bearer {admin}"))],
            b"",
        )
        .expect(204);
    token
}

/// A session cookie that was signed out.
fn signed_out_session(serve: &Serve) -> Session {
    let session = serve.sign_in("matrix-admin", PASSWORD);
    serve
        .call(
            "DELETE",
            "/api/v1/session",
            &[("Cookie", &session.cookie), ("X-CSRF-Token", &session.csrf)],
            b"",
        )
        .expect(204);
    session
}

fn callers(serve: &Serve, admin: &str) -> Vec<Caller> {
    for role in ["viewer", "operator", "admin"] {
        serve.user(&format!("matrix-{role}"), role, PASSWORD);
    }
    serve.user("matrix-signin", "viewer", PASSWORD);
    let signed = |label, role, credential| Caller {
        label,
        standing: Standing::Signed(role),
        credential,
    };
    let browser = |user: &str| Credential::Cookie {
        user: Some(user.to_string()),
        session: serve.sign_in(user, PASSWORD),
    };
    vec![
        Caller {
            label: "no credentials",
            standing: Standing::Anonymous,
            credential: Credential::Nothing,
        },
        Caller {
            label: "expired admin token",
            standing: Standing::Stale,
            credential: Credential::Bearer(expired_token(serve)),
        },
        Caller {
            label: "revoked admin token",
            standing: Standing::Stale,
            credential: Credential::Bearer(revoked_token(serve, admin)),
        },
        Caller {
            label: "signed-out admin session",
            standing: Standing::Stale,
            credential: Credential::Cookie {
                user: None,
                session: signed_out_session(serve),
            },
        },
        signed(
            "viewer token",
            Role::Viewer,
            Credential::Bearer(serve.token("viewer")),
        ),
        signed(
            "operator token",
            Role::Operator,
            Credential::Bearer(serve.token("operator")),
        ),
        signed(
            "admin token",
            Role::Admin,
            Credential::Bearer(admin.to_string()),
        ),
        signed("viewer session", Role::Viewer, browser("matrix-viewer")),
        signed(
            "operator session",
            Role::Operator,
            browser("matrix-operator"),
        ),
        signed("admin session", Role::Admin, browser("matrix-admin")),
    ]
}

/// What is wrong with `reply` to `caller` on `route`, if anything.
fn judge(route: &Route, caller: &Caller, reply: &Reply) -> Option<String> {
    let status = reply.status;
    if !(200..300).contains(&status) {
        let error = serde_json::from_str::<serde_json::Value>(&reply.body)
            .ok()
            .and_then(|v| v["error"].as_str().map(str::to_string));
        if error.is_none() || !reply.content_type.starts_with("application/json") {
            return Some(format!(
                "{status} without a JSON error ({}): {}",
                reply.content_type, reply.body
            ));
        }
    }
    if status >= 500 {
        return Some(format!("server error {status}: {}", reply.body));
    }
    let wanted = match (route.access, caller.standing) {
        // A stale token on a public route is refused (the service checks
        // any credentials it is sent), a stale cookie ignored: not part of
        // the access rule, see the report on this branch.
        (Access::Public, Standing::Stale) => return None,
        (Access::Public, _) => None,
        (Access::Role(_), Standing::Anonymous | Standing::Stale) => Some(401),
        (Access::Role(needed), Standing::Signed(role)) if role < needed => Some(403),
        (Access::Role(_), Standing::Signed(_)) => None,
    };
    match wanted {
        Some(wanted) if status != wanted => Some(format!("{status}, not {wanted}: {}", reply.body)),
        None if status == 401 || status == 403 => {
            Some(format!("{status}, but the caller may: {}", reply.body))
        }
        // The placeholder names a real pipeline: reading it works.
        None if route.method.as_str() == "GET"
            && route.path == "/api/v1/pipelines/{name}"
            && status != 200 =>
        {
            Some(format!("{status} reading the fixture: {}", reply.body))
        }
        _ => None,
    }
}

#[test]
fn every_route_answers_each_caller_as_its_access_says() {
    let dir = tempfile::tempdir().expect("temp dir");
    let serve = Serve::start(&dir.path().join("home"), &[], &[]);
    let admin = serve.token("admin");
    create_events_db(&serve.data().join(format!("{PIPELINE}-src.db")), 200);
    let fixture = Fixture {
        serve: &serve,
        admin: admin.clone(),
        made: Cell::new(0),
    };
    let mut callers = callers(&serve, &admin);
    let table = route_table();
    let mut wrong = Vec::new();
    let mut cells = 0;
    for route in &table {
        fixture.ensure_pipeline();
        let (content_type, body) = fixture.body(route);
        let method = route.method.as_str();
        // Every write behind a role, made with a session cookie, needs the
        // session's CSRF token: missing or wrong, it goes no further.
        if is_write(route) && route.access != Access::Public {
            let Some(Credential::Cookie { session, .. }) = callers
                .iter()
                .find(|c| c.label == "admin session")
                .map(|c| &c.credential)
            else {
                panic!("no admin session");
            };
            for csrf in [None, Some("not-the-token")] {
                let path = fixture.path(route);
                let mut headers = vec![
                    ("Content-Type", content_type.to_string()),
                    ("Cookie", session.cookie.clone()),
                ];
                if let Some(csrf) = csrf {
                    headers.push(("X-CSRF-Token", csrf.to_string()));
                }
                let headers: Vec<(&str, &str)> =
                    headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
                let reply = serve.call(method, &path, &headers, &body);
                cells += 1;
                if reply.status != 403 || !reply.body.contains("CSRF") {
                    wrong.push(format!(
                        "{method} {} with an admin session and CSRF token {csrf:?}: {} {}",
                        route.path, reply.status, reply.body
                    ));
                }
            }
        }
        for caller in &callers {
            let path = fixture.path(route);
            let (content_type, body) = fixture.body(route);
            let mut headers = caller.headers(is_write(route));
            headers.push(("Content-Type", content_type.to_string()));
            let headers: Vec<(&str, &str)> =
                headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
            let reply = serve.call(method, &path, &headers, &body);
            cells += 1;
            if let Some(problem) = judge(route, caller, &reply) {
                wrong.push(format!(
                    "{method} {} ({:?}) by {}: {problem}",
                    route.path, route.access, caller.label
                ));
            }
        }
        // Signing in and out with a cookie ends that cookie's session.
        if route.path == "/api/v1/session" && is_write(route) {
            for caller in &mut callers {
                if let Credential::Cookie {
                    user: Some(user),
                    session,
                } = &mut caller.credential
                {
                    *session = serve.sign_in(user, PASSWORD);
                }
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "{} of {cells} calls answered wrongly:\n{}",
        wrong.len(),
        wrong.join("\n")
    );
}

/// The cookie's attributes, lower-cased (`httponly`, `samesite=strict`…).
fn attributes(set_cookie: &str) -> Vec<String> {
    set_cookie
        .split(';')
        .skip(1)
        .map(|a| a.trim().to_ascii_lowercase())
        .collect()
}

#[test]
fn a_browser_session_needs_its_csrf_token_is_renewed_at_sign_in_and_ends_at_sign_out() {
    let dir = tempfile::tempdir().expect("temp dir");
    let serve = Serve::start(&dir.path().join("home"), &[], &[]);
    serve.user("ann", "admin", PASSWORD);
    let json = [("Content-Type", "application/json")];

    let refused = serve.call(
        "POST",
        "/api/v1/session",
        &json,
        serde_json::json!({"user": "ann", "password": "not her password"})
            .to_string()
            .as_bytes(),
    );
    assert_eq!(refused.status, 401, "{}", refused.body);
    assert!(refused.json()["error"].is_string());
    assert_eq!(refused.set_cookie, None, "no cookie for a wrong password");

    let first = serve.sign_in("ann", PASSWORD);
    let flags = attributes(&first.set_cookie);
    for flag in ["httponly", "samesite=strict", "path=/"] {
        assert!(
            flags.iter().any(|f| f == flag),
            "{flag} missing: {}",
            first.set_cookie
        );
    }
    assert!(
        !flags.iter().any(|f| f == "secure"),
        "Secure over plain HTTP: {}",
        first.set_cookie
    );
    let cookie = |s: &Session| vec![("Cookie", s.cookie.clone())];
    let with = |s: &Session, csrf: Option<&str>| {
        let mut h = cookie(s);
        h.push(("Content-Type", "application/json".to_string()));
        if let Some(csrf) = csrf {
            h.push(("X-CSRF-Token", csrf.to_string()));
        }
        h
    };
    let call = |method: &str, path: &str, headers: Vec<(&str, String)>, body: &str| {
        let headers: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
        serve.call(method, path, &headers, body.as_bytes())
    };

    let whoami = call("GET", "/api/v1/session", cookie(&first), "")
        .expect(200)
        .json();
    assert_eq!(
        (whoami["user"].as_str(), whoami["role"].as_str()),
        (Some("ann"), Some("admin"))
    );
    assert_eq!(whoami["csrf"].as_str(), Some(first.csrf.as_str()));

    // A write with the cookie alone, or with a wrong token, is refused and
    // does nothing; with the session's token it is done.
    let token = r#"{"name": "from-the-browser", "role": "viewer"}"#;
    for csrf in [None, Some("forged"), Some("")] {
        let reply = call("POST", "/api/v1/tokens", with(&first, csrf), token);
        assert_eq!(reply.status, 403, "CSRF token {csrf:?}: {}", reply.body);
        assert!(
            reply.json()["error"]
                .as_str()
                .is_some_and(|e| e.contains("CSRF"))
        );
    }
    call(
        "POST",
        "/api/v1/tokens",
        with(&first, Some(&first.csrf)),
        token,
    )
    .expect(201);
    let tokens = call("GET", "/api/v1/tokens", cookie(&first), "")
        .expect(200)
        .json();
    let made = tokens
        .as_array()
        .expect("tokens")
        .iter()
        .filter(|t| t["name"] == "from-the-browser")
        .count();
    assert_eq!(made, 1, "only the write with the token was done: {tokens}");

    // Signing in again (the browser sends its cookie) gives a new session
    // and ends the old one.
    let again = call(
        "POST",
        "/api/v1/session",
        with(&first, None),
        &serde_json::json!({"user": "ann", "password": PASSWORD}).to_string(),
    )
    .expect(200);
    let second_cookie = again
        .set_cookie
        .as_deref()
        .and_then(|c| c.split(';').next())
        .expect("a new cookie")
        .trim()
        .to_string();
    let second = Session {
        cookie: second_cookie,
        csrf: again.json()["csrf"].as_str().expect("csrf").to_string(),
        set_cookie: again.set_cookie.clone().unwrap_or_default(),
    };
    assert_ne!(
        second.cookie, first.cookie,
        "the session id was not renewed"
    );
    assert_ne!(second.csrf, first.csrf);
    call("GET", "/api/v1/session", cookie(&first), "").expect(401);
    call("GET", "/api/v1/session", cookie(&second), "").expect(200);

    // Signing out is a write: it needs the token too. Then the cookie is
    // worth nothing, and the browser is told to drop it.
    call("DELETE", "/api/v1/session", with(&second, None), "").expect(403);
    call("GET", "/api/v1/session", cookie(&second), "").expect(200);
    let out = call(
        "DELETE",
        "/api/v1/session",
        with(&second, Some(&second.csrf)),
        "",
    )
    .expect(204);
    let cleared = out.set_cookie.expect("a clearing cookie");
    assert!(
        cleared.starts_with("dmp_session=;") && attributes(&cleared).contains(&"max-age=0".into()),
        "{cleared}"
    );
    let after = call("GET", "/api/v1/session", cookie(&second), "");
    assert_eq!(after.status, 401, "{}", after.body);
    assert!(after.json()["error"].is_string());
    call(
        "POST",
        "/api/v1/tokens",
        with(&second, Some(&second.csrf)),
        token,
    )
    .expect(401);
}
