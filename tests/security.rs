//! Security issue 13, the sandbox and the state store: limits a hostile
//! plugin cannot talk its way around (error size, log flood, plugin size,
//! compile time, the compiled-plugin cache), and dead letters kept private
//! (file modes, purge, retention, values out of the log, sealing).

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use dmp_test_servers::postgres;
use rusqlite::Connection;

use crate::support::sql::sql_pipeline;
use crate::support::{assert_exit, dlq_shown, dmp, pipeline, rows, run_dmp, text};
use crate::transform::plugin;

/// A value that must not leak: it is in one row of table `people`.
const SECRET: &str = "SSN-424242-77";

/// A source with table `people` whose row 2 holds `SECRET`.
fn create_people(dir: &Path) {
    let conn = Connection::open(dir.join("source.db")).expect("db");
    conn.execute_batch(&format!(
        "CREATE TABLE people (id INTEGER PRIMARY KEY, ssn TEXT, note TEXT);
         INSERT INTO people VALUES (1, 'SSN-1', 'a'), (2, '{SECRET}', 'b'), (3, 'SSN-3', 'c');"
    ))
    .expect("fill");
}

/// A pipeline moving `people` through the hostile plugin in `mode`.
fn hostile_pipeline(dir: &Path, mode: &str, run: &str) {
    pipeline(
        dir,
        "p.toml",
        &format!(
            "[source]\nurl = \"sqlite://source.db\"\n[target]\nurl = \"sqlite://target.db\"\n[[transform]]\nplugin = \"{}\"\nconfig = {{ mode = \"{mode}\" }}\ntimeout_ms = 20000\n[run]\nbatch_rows = 2\n{run}",
            plugin("hostile", false).display()
        ),
    );
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path)
        .expect("metadata")
        .permissions()
        .mode()
        & 0o777
}

/// Whether any of the state store's files holds `needle`, byte for byte.
fn store_files_contain(dir: &Path, needle: &str) -> bool {
    ["state.db", "state.db-wal", "state.db-shm"]
        .iter()
        .any(|f| {
            std::fs::read(dir.join(".dmp").join(f))
                .is_ok_and(|bytes| bytes.windows(needle.len()).any(|w| w == needle.as_bytes()))
        })
}

#[test]
fn a_plugins_huge_error_is_capped_and_stored_once_per_batch() {
    let dir = tempfile::tempdir().expect("tempdir");
    create_people(dir.path());
    hostile_pipeline(dir.path(), "big-error", "");
    let out = run_dmp(dir.path(), &["run", "p.toml"]);
    assert_exit(&out, 1);
    let letters = dlq_shown(dir.path(), "p.toml");
    assert_eq!(letters.len(), 3, "{letters:?}");
    for letter in &letters {
        let error = letter["error"].as_str().unwrap_or_default();
        assert!(error.contains("plugin hostile"), "{error:.200}");
        assert!(
            error.len() < 5 << 10 && error.contains(" bytes in all]"),
            "{} bytes: {:.200}",
            error.len(),
            &error[error.len().saturating_sub(200)..]
        );
    }
    // Two batches: rows 1-2 share one stored error, row 3 has its own.
    let store = Connection::open(dir.path().join(".dmp/state.db")).expect("store");
    let shared: i64 = store
        .query_row("SELECT count(*) FROM dead_letter_errors", [], |r| r.get(0))
        .expect("count");
    let pointing: i64 = store
        .query_row(
            "SELECT count(*) FROM dead_letters WHERE error_id IS NOT NULL AND error = ''",
            [],
            |r| r.get(0),
        )
        .expect("count");
    assert_eq!((shared, pointing), (1, 2));
    let size = std::fs::metadata(dir.path().join(".dmp/state.db"))
        .expect("size")
        .len();
    assert!(size < 1 << 20, "state store of {size} bytes");
}

#[test]
fn a_plugin_flooding_its_log_is_cut_to_a_rate_and_the_drops_are_counted() {
    let dir = tempfile::tempdir().expect("tempdir");
    create_people(dir.path());
    hostile_pipeline(dir.path(), "log-flood", "");
    let out = run_dmp(dir.path(), &["run", "p.toml"]);
    assert_exit(&out, 0);
    assert_eq!(rows(&dir.path().join("target.db"), "people").len(), 3);
    let stderr = text(&out.stderr);
    // 10000 lines of 4 KiB were logged (40 MiB): a burst of 200 lines of
    // at most 1 KiB each passes, and 100 a second while it runs (a run of
    // a second or two; the bounds leave room for a slow machine).
    assert!(stderr.len() < 4 << 20, "{} bytes of log", stderr.len());
    let logged = stderr.matches("hostile plugin floods the log").count();
    assert!((200..3000).contains(&logged), "{logged} lines logged");
    assert!(
        stderr.contains("[truncated: ") && stderr.contains("plugin log lines dropped"),
        "{:.2000}",
        &stderr[stderr.len().saturating_sub(2000)..]
    );
}

#[test]
fn plugins_over_their_size_or_compile_time_are_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    create_people(dir.path());
    // A valid plugin made 2 MiB by a custom section.
    let mut big = std::fs::read(plugin("identity", false)).expect("plugin");
    let payload = vec![0u8; 2 << 20];
    let name = b"padding";
    let mut section = vec![name.len() as u8];
    section.extend_from_slice(name);
    section.extend_from_slice(&payload);
    big.push(0);
    let mut len = section.len();
    loop {
        let byte = (len & 0x7f) as u8;
        len >>= 7;
        big.push(if len == 0 { byte } else { byte | 0x80 });
        if len == 0 {
            break;
        }
    }
    big.extend_from_slice(&section);
    std::fs::write(dir.path().join("big.wasm"), &big).expect("write");
    let body = |extra: &str| {
        format!(
            "[source]\nurl = \"sqlite://source.db\"\n[target]\nurl = \"sqlite://target.db\"\n[[transform]]\nplugin = \"big.wasm\"\n{extra}\n"
        )
    };
    // Over its size; then within it but compiling may take no time at all
    // (a fresh cache: nothing is loaded from it).
    for (setting, says) in [
        ("max_plugin_mb = 1", "over the limit of 1048576 bytes"),
        ("compile_timeout_ms = 1", "compiling took longer than 1ms"),
    ] {
        pipeline(dir.path(), "p.toml", &body(setting));
        let out = run_with_cache(dir.path(), &["run", "p.toml"]);
        assert_exit(&out, 2);
        let err = text(&out.stderr);
        assert!(err.contains("plugin big") && err.contains(says), "{err}");
    }
    pipeline(dir.path(), "p.toml", &body(""));
    assert_exit(&run_with_cache(dir.path(), &["run", "p.toml"]), 0);
    assert_eq!(rows(&dir.path().join("target.db"), "people").len(), 3);
}

/// `dmp args` in `dir` with a plugin cache and cache key of its own, and
/// the INFO log (it says when a plugin is compiled).
fn run_with_cache(dir: &Path, args: &[&str]) -> std::process::Output {
    dmp(dir)
        .args(args)
        .env("DMP_PLUGIN_CACHE", dir.join("cache"))
        .env("XDG_STATE_HOME", dir.join("state-home"))
        .env("RUST_LOG", "dmp=info")
        .output()
        .expect("dmp runs")
}

/// Runs `p.toml` with [`run_with_cache`]; returns the log.
fn run_cached(dir: &Path, restart: bool) -> String {
    let mut args = vec!["run", "p.toml"];
    if restart {
        args.push("--restart");
    }
    let out = run_with_cache(dir, &args);
    assert_exit(&out, 0);
    text(&out.stderr)
}

/// A run that refuses the identity plugin's cache entry, compiles the
/// plugin again, and moves the rows unchanged.
fn assert_compiled_again(dir: &Path) {
    let log = run_cached(dir, true);
    assert!(
        log.contains("failed authentication") && log.contains("plugin compiled"),
        "{log}"
    );
    assert_eq!(
        rows(&dir.join("target.db"), "people")[1][1],
        rusqlite::types::Value::Text(SECRET.into())
    );
}

fn cache_entries(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut entries: Vec<_> = std::fs::read_dir(dir.join("cache"))
        .expect("cache folder")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "cwasm"))
        .collect();
    entries.sort();
    entries
}

#[test]
fn a_tampered_compiled_plugin_is_compiled_again_never_loaded() {
    let dir = tempfile::tempdir().expect("tempdir");
    create_people(dir.path());
    // mask_pii first, to have another valid entry at hand.
    let with = |name: &str, config: &str| {
        format!(
            "[source]\nurl = \"sqlite://source.db\"\n[target]\nurl = \"sqlite://target.db\"\n[[transform]]\nplugin = \"{}\"\n{config}\n",
            plugin(name, false).display()
        )
    };
    pipeline(
        dir.path(),
        "p.toml",
        &with("mask_pii", "config = { columns = \"ssn\" }"),
    );
    let log = run_cached(dir.path(), false);
    assert!(log.contains("plugin compiled"), "{log}");
    let masked = cache_entries(dir.path());
    assert_eq!(masked.len(), 1);

    pipeline(dir.path(), "p.toml", &with("identity", ""));
    let log = run_cached(dir.path(), true);
    assert!(log.contains("plugin compiled"), "{log}");
    let identity: Vec<_> = cache_entries(dir.path())
        .into_iter()
        .filter(|p| !masked.contains(p))
        .collect();
    assert_eq!(identity.len(), 1);
    let entry = &identity[0];
    assert_eq!(mode(&dir.path().join("cache")), 0o700);
    assert_eq!(mode(entry), 0o600);
    assert_eq!(
        mode(&dir.path().join("state-home/dmp/plugin-cache.key")),
        0o600
    );
    // Untouched, the entry is loaded: no compilation.
    let log = run_cached(dir.path(), true);
    assert!(!log.contains("plugin compiled"), "{log}");

    // Bytes flipped in the middle of the native code.
    let mut bytes = std::fs::read(entry).expect("entry");
    let middle = bytes.len() / 2;
    for b in &mut bytes[middle..middle + 16] {
        *b ^= 0xff;
    }
    std::fs::write(entry, &bytes).expect("tamper");
    assert_compiled_again(dir.path());

    // Another plugin's valid entry put in its place: not loaded either
    // (mask_pii's code would mask the column).
    std::fs::copy(&masked[0], entry).expect("swap entries");
    assert_compiled_again(dir.path());
    // The entry was written again: the next run loads it.
    let log = run_cached(dir.path(), true);
    assert!(!log.contains("plugin compiled"), "{log}");
}

#[test]
fn the_state_store_is_private_and_loose_modes_are_tightened() {
    let dir = tempfile::tempdir().expect("tempdir");
    create_people(dir.path());
    hostile_pipeline(dir.path(), "refuse", "");
    assert_exit(&run_dmp(dir.path(), &["run", "p.toml"]), 1);
    let home = dir.path().join(".dmp");
    assert_eq!(mode(&home), 0o700);
    for file in ["state.db", "state.db-wal", "state.db-shm"] {
        let path = home.join(file);
        if path.exists() {
            assert_eq!(mode(&path), 0o600, "{file}");
        }
    }
    let leases = home.join("state.leases");
    assert_eq!(mode(&leases), 0o700);
    for lease in std::fs::read_dir(&leases).expect("leases") {
        assert_eq!(mode(&lease.expect("lease").path()), 0o600);
    }
    // A store left readable by an older dmp is tightened, with a warning.
    for (path, loose) in [(home.clone(), 0o755), (home.join("state.db"), 0o644)] {
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(loose)).expect("chmod");
    }
    let out = run_dmp(dir.path(), &["dlq", "list", "p.toml"]);
    assert_exit(&out, 0);
    assert!(
        text(&out.stderr).contains("made it private"),
        "{}",
        text(&out.stderr)
    );
    assert_eq!(mode(&home), 0o700);
    assert_eq!(mode(&home.join("state.db")), 0o600);
}

#[test]
fn purged_dead_letters_are_gone_from_the_files() {
    let dir = tempfile::tempdir().expect("tempdir");
    create_people(dir.path());
    hostile_pipeline(dir.path(), "refuse", "");
    assert_exit(&run_dmp(dir.path(), &["run", "p.toml"]), 1);
    assert!(store_files_contain(dir.path(), SECRET));
    let out = run_dmp(dir.path(), &["dlq", "purge", "p.toml", "--all"]);
    assert_exit(&out, 0);
    assert!(dlq_shown(dir.path(), "p.toml").is_empty());
    assert!(!store_files_contain(dir.path(), SECRET));
}

#[test]
fn dead_letters_past_their_retention_are_deleted_when_a_run_starts() {
    let dir = tempfile::tempdir().expect("tempdir");
    create_people(dir.path());
    hostile_pipeline(dir.path(), "refuse", "dead_letter_retention = \"7d\"\n");
    assert_exit(&run_dmp(dir.path(), &["run", "p.toml"]), 1);
    assert_eq!(dlq_shown(dir.path(), "p.toml").len(), 3);
    // Row 1's letter was stored 8 days ago, row 2's 6 days ago.
    let store = Connection::open(dir.path().join(".dmp/state.db")).expect("store");
    let aged = |id: i64, days: i64| {
        let at = (chrono::Utc::now() - chrono::Duration::days(days))
            .format("%Y-%m-%dT%H:%M:%S%.3fZ")
            .to_string();
        store
            .execute(
                "UPDATE dead_letters SET created_at = ?1 WHERE json_extract(row, '$.id') = ?2",
                rusqlite::params![at, id],
            )
            .expect("age a letter");
    };
    aged(1, 8);
    aged(2, 6);
    drop(store);
    // The next run starts by deleting the expired letter; the plugin is
    // fixed meanwhile (it passes rows), so no new ones come.
    hostile_pipeline(dir.path(), "keep", "dead_letter_retention = \"7d\"\n");
    assert_exit(&run_dmp(dir.path(), &["run", "p.toml", "--restart"]), 0);
    let ids: Vec<i64> = dlq_shown(dir.path(), "p.toml")
        .iter()
        .filter_map(|l| l["row"]["id"].as_i64())
        .collect();
    assert_eq!(ids, [2, 3]);
}

#[test]
fn sealed_dead_letters_are_unreadable_in_the_file_and_replay_with_the_key() {
    let dir = tempfile::tempdir().expect("tempdir");
    create_people(dir.path());
    std::fs::write(dir.path().join("dlq.key"), "ab".repeat(32)).expect("key");
    let key = "dead_letter_key = \"dlq.key\"\n";
    hostile_pipeline(dir.path(), "refuse", key);
    assert_exit(&run_dmp(dir.path(), &["run", "p.toml"]), 1);
    assert!(!store_files_contain(dir.path(), SECRET));
    assert!(!store_files_contain(dir.path(), "refuses this batch"));
    // The key was made private to its owner.
    assert_eq!(mode(&dir.path().join("dlq.key")), 0o600);
    let letters = dlq_shown(dir.path(), "p.toml");
    assert_eq!(letters.len(), 3);
    assert_eq!(letters[1]["row"]["ssn"], SECRET);
    assert!(
        letters[1]["error"]
            .as_str()
            .is_some_and(|e| e.contains("refuses this batch")),
        "{letters:?}"
    );
    let out = run_dmp(dir.path(), &["dlq", "list", "p.toml"]);
    assert_exit(&out, 0);
    assert!(text(&out.stdout).contains("refuses this batch"));

    // Without the key, or with another, the rows do not open; the key
    // file is named.
    std::fs::write(dir.path().join("other.key"), "cd".repeat(32)).expect("key");
    for (setting, says) in [
        ("", &["no `[run] dead_letter_key`"][..]),
        (
            "dead_letter_key = \"other.key\"\n",
            &["does not open with key file", "other.key"],
        ),
        (
            "dead_letter_key = \"missing.key\"\n",
            &["dead-letter key file", "missing.key"],
        ),
    ] {
        hostile_pipeline(dir.path(), "refuse", setting);
        let out = run_dmp(dir.path(), &["dlq", "list", "p.toml"]);
        assert_exit(&out, 2);
        let err = text(&out.stderr);
        assert!(says.iter().all(|s| err.contains(s)), "{setting}: {err}");
    }

    // The plugin fixed, replay opens the rows with the key and sends them.
    hostile_pipeline(dir.path(), "keep", key);
    let out = run_dmp(dir.path(), &["dlq", "replay", "p.toml"]);
    assert_exit(&out, 0);
    assert_eq!(rows(&dir.path().join("target.db"), "people").len(), 3);
    assert!(dlq_shown(dir.path(), "p.toml").is_empty());
}

#[test]
fn a_check_constraint_refusal_keeps_row_values_out_of_the_log() {
    let dir = tempfile::tempdir().expect("tempdir");
    let source = postgres().create_database("sec_log_source");
    let target = postgres().create_database("sec_log_target");
    source.exec(&format!(
        "CREATE TABLE people (id integer PRIMARY KEY, email text, ssn text, status text);
         INSERT INTO people VALUES (1, 'user1@example.com', 'SSN-1', 'ok'),
           (45, 'user45@example.com', '{SECRET}', 'bad'), (46, 'user46@example.com', 'SSN-46', 'ok');"
    ));
    target.exec(
        "CREATE TABLE people (id integer PRIMARY KEY, email text, ssn text, status text,
           CONSTRAINT ok_status CHECK (status = 'ok'))",
    );
    let body = sql_pipeline(&source.url, &target.url, "")
        .replace("[run]", "if_exists = \"truncate\"\n[run]");
    pipeline(dir.path(), "p.toml", &body);
    let out = run_dmp(dir.path(), &["run", "p.toml"]);
    assert_exit(&out, 1);
    let log = text(&out.stderr);
    assert!(
        log.contains("rows dead-lettered") && log.contains("ok_status"),
        "{log}"
    );
    assert!(
        !log.contains(SECRET) && !log.contains("user45@example.com"),
        "{log}"
    );
    assert_eq!(target.scalar("SELECT count(*) FROM people"), "2");
    // The store keeps the whole error and the row.
    let out = run_dmp(dir.path(), &["dlq", "list", "p.toml"]);
    assert_exit(&out, 0);
    assert!(text(&out.stdout).contains(SECRET), "{}", text(&out.stdout));
    let letters = dlq_shown(dir.path(), "p.toml");
    assert_eq!(letters.len(), 1);
    assert_eq!(letters[0]["row"]["ssn"], SECRET);

    // With on_error = "fail" the run stops on the row, naming the
    // constraint, not the values.
    pipeline(
        dir.path(),
        "p.toml",
        &body.replace("[run]", "[run]\non_error = \"fail\""),
    );
    let out = run_dmp(dir.path(), &["run", "p.toml", "--restart"]);
    let log = text(&out.stderr);
    assert!(
        log.contains("ok_status") && log.contains("on_error = \"fail\""),
        "{log}"
    );
    assert!(
        !log.contains(SECRET) && !log.contains("user45@example.com"),
        "{log}"
    );
}
