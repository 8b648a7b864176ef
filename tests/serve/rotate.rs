//! `dmp secrets rotate`: a new key file, every stored pipeline sealed with
//! it (the old key opens none of them any more), and the service started
//! again lists and runs them as before.

use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use dmp::server::secrets::SecretKey;

use crate::support::serve::Serve;
use crate::support::{count, create_events_db, run_dmp, text};

/// Each pipeline's name, sealed text and key id, as stored.
fn sealed(home: &std::path::Path) -> Vec<(String, Vec<u8>, String)> {
    let db = rusqlite::Connection::open_with_flags(
        home.join("service.db"),
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
    )
    .expect("service store");
    let mut stmt = db
        .prepare("SELECT name, sealed, key_id FROM pipelines ORDER BY name")
        .expect("prepare");
    stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .expect("query")
        .collect::<rusqlite::Result<_>>()
        .expect("rows")
}

fn key(home: &std::path::Path) -> String {
    std::fs::read_to_string(home.join("secret.key"))
        .expect("key file")
        .trim()
        .to_string()
}

#[test]
fn rotation_reseals_every_pipeline_and_the_service_runs_them_after() {
    let dir = tempfile::tempdir().expect("temp dir");
    let home = dir.path().join("home");
    let mut serve = Serve::start(&home, &[], &[]);
    let admin = serve.token("admin");
    let operator = serve.token("operator");
    for name in ["rot-a", "rot-b"] {
        create_events_db(&serve.data().join(format!("{name}-src.db")), 1_000);
        serve.create(
            &admin,
            &format!(
                "[pipeline]\nname = \"{name}\"\n\n[source]\nurl = \"sqlite://{name}-src.db\"\n\n[target]\nurl = \"sqlite://{name}-dst.db\"\n"
            ),
        );
    }
    // A literal password, to see that it survives the rotation sealed.
    serve.create(
        &admin,
        "[pipeline]\nname = \"rot-pg\"\n\n[source]\nurl = \"postgres://app:RotPw77@127.0.0.1:1/shop\"\n\n[target]\nurl = \"sqlite://rot-pg.db\"\n",
    );
    let before = sealed(&home);
    let old_key = key(&home);
    let old = SecretKey::from_hex(&old_key).expect("the key file holds a key");
    assert_eq!(before.len(), 3);
    assert!(before.iter().all(|(_, _, id)| *id == old.id), "{before:?}");
    // Not under a running service (it holds the old key), and not under a
    // second service either.
    let home_arg = home.display().to_string();
    let refused = run_dmp(dir.path(), &["secrets", "rotate", "--home", &home_arg]);
    assert_eq!(refused.status.code(), Some(2), "{}", text(&refused.stderr));
    assert!(
        text(&refused.stderr).contains("is using the home"),
        "{}",
        text(&refused.stderr)
    );
    let second = run_dmp(
        dir.path(),
        &["serve", "--home", &home_arg, "--listen", "127.0.0.1:0"],
    );
    assert_eq!(second.status.code(), Some(2), "{}", text(&second.stderr));
    assert_eq!(key(&home), old_key);
    serve.terminate();

    let out = run_dmp(
        dir.path(),
        &["secrets", "rotate", "--home", &home.display().to_string()],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let said = text(&out.stdout);
    let new_id = said
        .trim()
        .strip_prefix("3 pipelines sealed with the new key ")
        .unwrap_or_else(|| panic!("unexpected report: {said}"))
        .to_string();

    let new_key = key(&home);
    assert_ne!(new_key, old_key, "the key file did not change");
    let new = SecretKey::from_hex(&new_key).expect("the new key file holds a key");
    assert_eq!(new.id, new_id);
    assert_ne!(new.id, old.id);
    let mode = std::fs::metadata(home.join("secret.key"))
        .expect("key file")
        .permissions()
        .mode();
    assert_eq!(
        mode & 0o077,
        0,
        "the new key file is readable by others: {mode:o}"
    );
    assert!(
        !home.join("secret.key.next").exists(),
        "the rotation left its next key behind"
    );
    let after = sealed(&home);
    assert_eq!(after.len(), 3);
    for ((name, was, _), (again, now, id)) in before.iter().zip(&after) {
        assert_eq!(name, again);
        assert_eq!(*id, new.id, "{name} still names the old key");
        assert!(old.open(now).is_err(), "the old key still opens {name}");
        assert_eq!(
            new.open(now).expect("the new key opens it"),
            old.open(was).expect("the old key opened it before"),
            "{name} changed in the rotation"
        );
    }

    serve.restart();
    let listed = serve
        .get(Some(&admin), "/api/v1/pipelines")
        .expect(200)
        .json();
    let names: Vec<&str> = listed
        .as_array()
        .expect("pipelines")
        .iter()
        .filter_map(|p| p["name"].as_str())
        .collect();
    assert_eq!(names, ["rot-a", "rot-b", "rot-pg"], "{listed}");
    let shown = serve
        .get(Some(&admin), "/api/v1/pipelines/rot-pg")
        .expect(200)
        .json();
    assert_eq!(shown["source"]["password_set"], true, "{shown}");
    assert!(!shown.to_string().contains("RotPw77"), "{shown}");
    serve
        .post_json(
            &operator,
            "/api/v1/pipelines/rot-a/start",
            &serde_json::json!({}),
        )
        .expect(202);
    let status = serve.wait_status(&admin, "rot-a", Duration::from_secs(60), |s| {
        s["state"] == "done" || s["state"] == "failed"
    });
    assert_eq!(status["state"], "done", "{status}");
    assert_eq!(count(&serve.data().join("rot-a-dst.db"), "events"), 1_000);
}
