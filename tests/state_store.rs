//! The state store on a full disk or a read-only file system: the run
//! stops with an error naming the store, the store stays sound
//! (`PRAGMA integrity_check`), and once the cause is gone the next run
//! resumes and ends with every row once. The file system is a small tmpfs
//! mounted for the test; where mounting is not allowed (not root, no
//! CAP_SYS_ADMIN) the test says so and skips.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::support::{assert_exit, count, pipeline, run_dmp, text};

/// A tmpfs mounted on a folder for the life of the value.
struct Tmpfs {
    path: PathBuf,
}

impl Tmpfs {
    /// Mounts a tmpfs of `size` (`256k`) on `path`, or says why it cannot.
    fn mount(path: &Path, size: &str) -> Result<Tmpfs, String> {
        std::fs::create_dir_all(path).map_err(|e| e.to_string())?;
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(path)
            .output()
            .map_err(|e| format!("cannot run mount: {e}"))?;
        if !out.status.success() {
            return Err(text(&out.stderr).trim().to_string());
        }
        Ok(Tmpfs {
            path: path.to_path_buf(),
        })
    }

    fn remount(&self, options: &str) {
        let out = Command::new("mount")
            .args(["-o", &format!("remount,{options}")])
            .arg(&self.path)
            .output()
            .expect("mount runs");
        assert!(
            out.status.success(),
            "remount {options}: {}",
            text(&out.stderr)
        );
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let unmounted = Command::new("umount")
            .arg(&self.path)
            .status()
            .is_ok_and(|s| s.success());
        if !unmounted {
            let _ = Command::new("umount").arg("-l").arg(&self.path).status();
        }
    }
}

fn mount_or_skip(path: &Path, size: &str, test: &str) -> Option<Tmpfs> {
    match Tmpfs::mount(path, size) {
        Ok(tmpfs) => Some(tmpfs),
        Err(reason) => {
            println!("{test}: skipped: cannot mount a tmpfs here ({reason})");
            None
        }
    }
}

/// A JSON Lines source of `lines` records, every second one not JSON, and
/// a pipeline keeping its state store in `st/`.
fn half_bad_source(dir: &Path, lines: u64) {
    let input = dir.join("in");
    std::fs::create_dir_all(&input).expect("mkdir");
    let mut jsonl = String::new();
    for i in 1..=lines {
        if i % 2 == 1 {
            jsonl.push_str(&format!("{{\"id\": {i}, \"kind\": \"kind {i}\"}}\n"));
        } else {
            jsonl.push_str(&format!("{{\"id\": {i}, \"kind\": oops}}\n"));
        }
    }
    std::fs::write(input.join("ev.jsonl"), jsonl).expect("jsonl");
    std::fs::write(
        input.join("ev.schema.json"),
        r#"{"name": "ev", "columns": [{"name": "id", "type": "int64"}, {"name": "kind", "type": "text"}], "primary_key": ["id"]}"#,
    )
    .expect("schema");
    pipeline(
        dir,
        "p.toml",
        "[source]\nurl = \"file://in?format=jsonl\"\n[target]\nurl = \"sqlite://t.db\"\n[run]\nbatch_rows = 100\nstate = \"st/state.db\"\n",
    );
}

/// `PRAGMA integrity_check` of the store, and its dead-letter rows (all,
/// and distinct by position).
fn check_store(dir: &Path) -> (String, i64, i64) {
    let conn = rusqlite::Connection::open_with_flags(
        dir.join("st/state.db"),
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
    )
    .expect("open the state store");
    let integrity: String = conn
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .expect("integrity check");
    let (all, distinct) = conn
        .query_row(
            "SELECT count(*), count(DISTINCT position || '/' || seq) FROM dead_letters",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .expect("dead letters");
    (integrity, all, distinct)
}

#[test]
fn a_full_disk_stops_the_run_naming_the_state_store_and_the_next_run_resumes() {
    let dir = tempfile::tempdir().expect("tempdir");
    half_bad_source(dir.path(), 20_000);
    // Room for the store and its plan, not for 10 000 dead-letter rows.
    let Some(disk) = mount_or_skip(&dir.path().join("st"), "256k", "full disk") else {
        return;
    };
    let out = run_dmp(dir.path(), &["run", "p.toml"]);
    assert_exit(&out, 3);
    let err = text(&out.stderr);
    assert!(
        err.contains("error: ")
            && err.contains("state store ./st/state.db")
            && err.contains("disk is full"),
        "{err}"
    );
    let (integrity, stored, distinct) = check_store(dir.path());
    assert_eq!(integrity, "ok");
    assert_eq!(stored, distinct);
    assert!(stored < 10_000, "{stored} rows stored on a full disk");

    disk.remount("size=64m");
    let out = run_dmp(dir.path(), &["run", "p.toml"]);
    assert_exit(&out, 1);
    assert!(
        text(&out.stdout).contains("(resumed)"),
        "{}",
        text(&out.stdout)
    );
    assert_eq!(count(&dir.path().join("t.db"), "ev"), 10_000);
    assert_eq!(check_store(dir.path()), ("ok".to_string(), 10_000, 10_000));
}

#[test]
fn a_read_only_state_store_is_named_and_left_as_it_was() {
    let dir = tempfile::tempdir().expect("tempdir");
    half_bad_source(dir.path(), 2_000);
    let Some(disk) = mount_or_skip(&dir.path().join("st"), "64m", "read-only store") else {
        return;
    };
    assert_exit(&run_dmp(dir.path(), &["run", "p.toml"]), 1);
    let before = check_store(dir.path());
    assert_eq!(before, ("ok".to_string(), 1_000, 1_000));

    // More rows arrive; the store's file system is now read-only.
    let more: String = (2_001..=2_100)
        .map(|i| format!("{{\"id\": {i}, \"kind\": \"kind {i}\"}}\n"))
        .collect();
    let source = dir.path().join("in/ev.jsonl");
    let mut all = std::fs::read_to_string(&source).expect("source");
    all.push_str(&more);
    std::fs::write(&source, all).expect("source");
    disk.remount("ro");
    let out = run_dmp(dir.path(), &["run", "p.toml"]);
    assert_exit(&out, 3);
    let err = text(&out.stderr);
    assert!(
        err.contains("state store ./st/state.db") && err.contains("Read-only file system"),
        "{err}"
    );
    // Nothing moved without a store to record it.
    assert_eq!(count(&dir.path().join("t.db"), "ev"), 1_000);
    assert_eq!(check_store(dir.path()), before);

    disk.remount("rw");
    assert_exit(&run_dmp(dir.path(), &["run", "p.toml"]), 1);
    assert_eq!(count(&dir.path().join("t.db"), "ev"), 1_100);
    assert_eq!(check_store(dir.path()), ("ok".to_string(), 1_000, 1_000));
}
