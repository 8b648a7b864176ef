//! Resolvers run for real: the example `merge_counters` plugin built by
//! `make plugins`, and small hand-written resolvers (WAT core modules given
//! the `resolver` world's type information) that misbehave on purpose.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use dmp_model::{Column, DataType, Row, TableSchema, Value};

use super::*;
use crate::instance::Failure;
use crate::runtime::{Limits, LoadLimits, PluginRuntime};

/// A plugin built by `make plugins`.
fn built_plugin(name: &str) -> PathBuf {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../../target/plugins/wasm32-unknown-unknown/release")
        .join(format!("{name}.wasm"));
    assert!(
        path.is_file(),
        "{} is missing: run `make plugins` (or `make test`)",
        path.display()
    );
    path
}

/// A runtime with a compile cache of its own, kept as long as the guard.
fn runtime() -> (tempfile::TempDir, Arc<PluginRuntime>) {
    let dir = tempfile::tempdir().expect("tempdir");
    let runtime = PluginRuntime::shared(dir.path()).expect("runtime");
    (dir, runtime)
}

fn load(runtime: &PluginRuntime, path: &Path) -> Arc<ResolverPlugin> {
    ResolverPlugin::load(runtime, path, LoadLimits::default()).expect("resolver loads")
}

fn settings(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_string(), (*v).to_string()))
        .collect()
}

fn merge_counters(runtime: &PluginRuntime) -> ConflictResolver {
    load(runtime, &built_plugin("merge_counters"))
        .open(settings(&[("counters", "views, likes")]), Limits::default())
        .expect("opens")
}

/// `tally (id BIGINT PRIMARY KEY, name TEXT, views BIGINT, likes INT)`.
fn tally() -> Arc<TableSchema> {
    let mut id = Column::new("id", DataType::Int64);
    id.nullable = false;
    Arc::new(TableSchema {
        namespace: Some("public".into()),
        name: "tally".into(),
        columns: vec![
            id,
            Column::new("name", DataType::Text { max_len: None }),
            Column::new("views", DataType::Int64),
            Column::new("likes", DataType::Int32),
        ],
        primary_key: vec!["id".into()],
        ..TableSchema::default()
    })
}

fn row(name: &str, views: Option<i64>, likes: i64) -> Row {
    Row(vec![
        Value::Int(1),
        Value::Text(name.into()),
        views.map_or(Value::Null, Value::Int),
        Value::Int(likes),
    ])
}

fn version(row: Option<Row>, origin: Side) -> RowVersion {
    RowVersion {
        row,
        commit_time: None,
        origin,
    }
}

/// A conflict on table `tally` met while applying side A's change to B.
fn on_b(kind: ConflictKind, b: Option<Row>, old: Option<Row>, a: Option<Row>) -> Conflict {
    Conflict {
        table: tally(),
        key: vec![Value::Int(1)],
        kind,
        local: version(b, Side::B),
        remote_old: old,
        remote_new: version(a, Side::A),
    }
}

#[test]
fn counters_merge_by_adding_both_sides_deltas() {
    let (_dir, runtime) = runtime();
    let mut resolver = merge_counters(&runtime);
    // From 10 views and 5 likes, A counted 3 views and renamed the row, B
    // counted 2 likes and renamed it too.
    let conflict = on_b(
        ConflictKind::UpdateDiffers,
        Some(row("from b", Some(10), 7)),
        Some(row("old", Some(10), 5)),
        Some(row("from a", Some(13), 5)),
    );
    let merged = row("from a", Some(13), 7);
    assert_eq!(
        resolver.resolve(&conflict).expect("resolves"),
        Resolution::Merged(merged.clone())
    );
    // Met on the other leg, with local and remote swapped: the same row.
    assert_eq!(
        resolver.resolve(&conflict.mirrored()).expect("resolves"),
        Resolution::Merged(merged)
    );
    // Both sides inserted the key: both counted from nothing.
    let both_inserted = on_b(
        ConflictKind::InsertExists,
        Some(row("b", Some(4), 1)),
        None,
        Some(row("a", Some(6), 2)),
    );
    assert_eq!(
        resolver.resolve(&both_inserted).expect("resolves"),
        Resolution::Merged(row("a", Some(10), 3))
    );
}

#[test]
fn both_legs_settle_on_the_same_row() {
    let (_dir, runtime) = runtime();
    let mut resolver = merge_counters(&runtime);
    let old = || Some(row("old", Some(10), 5));
    let cases = [
        (
            on_b(
                ConflictKind::UpdateDiffers,
                Some(row("b", Some(11), 5)),
                old(),
                Some(row("a", Some(10), 9)),
            ),
            Settled::Row(row("a", Some(11), 9)),
        ),
        (
            on_b(
                ConflictKind::InsertExists,
                Some(row("b", Some(1), 0)),
                None,
                Some(row("a", Some(2), 0)),
            ),
            Settled::Row(row("a", Some(3), 0)),
        ),
        // A deleted the row, B went on counting: the row stays on both.
        (
            on_b(
                ConflictKind::DeleteDiffers,
                Some(row("b", Some(12), 5)),
                old(),
                None,
            ),
            Settled::Row(row("b", Some(12), 5)),
        ),
        // Both deleted it.
        (
            on_b(ConflictKind::DeleteMissing, None, old(), None),
            Settled::Absent,
        ),
        // A NULL counter cannot be merged: both legs park.
        (
            on_b(
                ConflictKind::UpdateDiffers,
                Some(row("b", None, 5)),
                old(),
                Some(row("a", Some(10), 6)),
            ),
            Settled::Parked,
        ),
        // Neither can a sum past i64, nor one past `likes`' INT.
        (
            on_b(
                ConflictKind::UpdateDiffers,
                Some(row("b", Some(i64::MAX), 5)),
                old(),
                Some(row("a", Some(11), 5)),
            ),
            Settled::Parked,
        ),
        (
            on_b(
                ConflictKind::InsertExists,
                Some(row("b", Some(1), i64::from(i32::MAX))),
                None,
                Some(row("a", Some(1), 1)),
            ),
            Settled::Parked,
        ),
    ];
    for (conflict, expected) in cases {
        // From B's end, then from A's (where an update-missing is the
        // delete-differs seen from the other side).
        for conflict in [conflict.clone(), conflict.mirrored()] {
            let settled = resolver
                .check_converges(&conflict)
                .unwrap_or_else(|e| panic!("{}: {e}", conflict.kind));
            assert_eq!(settled, expected, "{}", conflict.kind);
        }
    }
}

#[test]
fn park_and_apply_remote_pass_through() {
    let (_dir, runtime) = runtime();
    let mut resolver = merge_counters(&runtime);
    let deleted_on_b = on_b(
        ConflictKind::UpdateMissing,
        None,
        Some(row("old", Some(10), 5)),
        Some(row("a", Some(11), 5)),
    );
    assert_eq!(
        resolver.resolve(&deleted_on_b).expect("resolves"),
        Resolution::ApplyRemote
    );
    let null_counter = on_b(
        ConflictKind::InsertExists,
        Some(row("b", None, 1)),
        None,
        Some(row("a", Some(2), 2)),
    );
    assert_eq!(
        resolver.resolve(&null_counter).expect("resolves"),
        Resolution::Park
    );
}

#[test]
fn settings_mistakes_are_errors_naming_the_plugin() {
    let (_dir, runtime) = runtime();
    let plugin = load(&runtime, &built_plugin("merge_counters"));
    let err = plugin
        .open(Vec::new(), Limits::default())
        .err()
        .expect("`counters` is required");
    assert!(
        matches!(&err, ResolveError::Open { failure: Failure::Refused(m), .. } if m.contains("`counters`")),
        "{err:?}"
    );
    assert!(err.to_string().contains("plugin merge_counters ("), "{err}");
    // A counter that is not an integer column of the table.
    let mut resolver = plugin
        .open(settings(&[("counters", "name")]), Limits::default())
        .expect("opens");
    let conflict = on_b(
        ConflictKind::InsertExists,
        Some(row("b", Some(1), 1)),
        None,
        Some(row("a", Some(1), 1)),
    );
    let err = resolver.resolve(&conflict).expect_err("not a counter");
    assert!(
        matches!(&err, ResolveError::Call { failure: Failure::Refused(m), table, .. }
            if m.contains("`name`") && table == "public.tally"),
        "{err:?}"
    );
}

#[test]
fn a_transform_is_not_a_resolver() {
    let (_dir, runtime) = runtime();
    let err = ResolverPlugin::load(&runtime, &built_plugin("mask_pii"), LoadLimits::default())
        .err()
        .expect("a transform is refused");
    assert!(
        err.to_string().contains("is not a conflict resolver"),
        "{err}"
    );
}

#[test]
fn a_conflict_that_does_not_fit_its_table_is_refused_unasked() {
    let (_dir, runtime) = runtime();
    let mut resolver = merge_counters(&runtime);
    let mut conflict = on_b(
        ConflictKind::InsertExists,
        Some(row("b", Some(1), 1)),
        None,
        Some(row("a", Some(1), 1)),
    );
    conflict.local.row = Some(Row(vec![Value::Int(1)]));
    let err = resolver.resolve(&conflict).expect_err("malformed");
    assert!(
        matches!(err, ResolveError::Malformed { ref reason, .. } if reason.contains("local row has 1 values")),
        "{err:?}"
    );
}

/// The `resolver` world's type information as the SDK embeds it in a
/// plugin (`component-type` custom sections), taken from the built
/// example: what turns a core module into a resolver component.
fn resolver_world_sections() -> Vec<u8> {
    let bytes = std::fs::read(built_plugin("merge_counters")).expect("read plugin");
    let mut sections = Vec::new();
    for payload in wasmparser::Parser::new(0).parse_all(&bytes) {
        if let Ok(wasmparser::Payload::CustomSection(section)) = payload
            && section.name().starts_with("component-type")
        {
            // A custom section: id 0, size, then its name and its data.
            let mut body = leb128(section.name().len());
            body.extend_from_slice(section.name().as_bytes());
            body.extend_from_slice(section.data());
            sections.push(0);
            sections.extend(leb128(body.len()));
            sections.extend(body);
        }
    }
    assert!(!sections.is_empty(), "merge_counters carries no WIT type");
    sections
}

fn leb128(mut n: usize) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let byte = (n & 0x7f) as u8;
        n >>= 7;
        if n == 0 {
            out.push(byte);
            return out;
        }
        out.push(byte | 0x80);
    }
}

/// A resolver whose `resolve` runs `body`, which returns the address of
/// one of the canned answers (laid out as the canonical ABI lays out a
/// `result<resolution, string>`): 16 `ok(park)`, 24 `ok(apply-remote)`,
/// 32 `ok(merged([int(7)]))`, 48 `err("nope!")`. `$args` points at the
/// call's arguments: the resource handle, then the conflict from offset 8
/// (its `kind` at 52).
fn wat_resolver(dir: &Path, name: &str, body: &str) -> PathBuf {
    let wat = format!(
        r#"(module
  (import "[export]dmp:transform/resolve@0.1.0" "[resource-new]resolver"
    (func $new (param i32) (result i32)))
  (memory (export "memory") 1)
  (global $heap (mut i32) (i32.const 1024))
  (data (i32.const 16) "\00\00\00\00\04")
  (data (i32.const 24) "\00\00\00\00\00")
  (data (i32.const 32) "\00\00\00\00\02\00\00\00\80\00\00\00\01\00\00\00")
  (data (i32.const 128) "\02\00\00\00\00\00\00\00\07\00\00\00\00\00\00\00")
  (data (i32.const 48) "\01\00\00\00\a0\00\00\00\05\00\00\00")
  (data (i32.const 160) "nope!")
  (func (export "cabi_realloc") (param i32 i32 i32 i32) (result i32)
    (local $at i32)
    (local.set $at
      (i32.and
        (i32.add (global.get $heap) (i32.sub (local.get 2) (i32.const 1)))
        (i32.sub (i32.const 0) (local.get 2))))
    (global.set $heap (i32.add (local.get $at) (local.get 3)))
    (if (i32.gt_u (global.get $heap) (i32.mul (memory.size) (i32.const 65536)))
      (then
        (drop (memory.grow
          (i32.add (i32.shr_u (global.get $heap) (i32.const 16)) (i32.const 1))))))
    (local.get $at))
  (func (export "dmp:transform/resolve@0.1.0#[static]resolver.open")
    (param i32 i32) (result i32)
    (i32.store (i32.const 0) (i32.const 0))
    (i32.store (i32.const 4) (call $new (i32.const 1)))
    (i32.const 0))
  (func (export "dmp:transform/resolve@0.1.0#[method]resolver.resolve")
    (param $args i32) (result i32)
    {body})
  (func (export "dmp:transform/resolve@0.1.0#[dtor]resolver") (param i32)))"#
    );
    let mut module = wat::parse_str(&wat).expect("valid WAT");
    module.extend(resolver_world_sections());
    let path = dir.join(format!("{name}.wasm"));
    std::fs::write(&path, module).expect("write plugin");
    path
}

fn open_wat(runtime: &PluginRuntime, dir: &Path, name: &str, body: &str) -> ConflictResolver {
    let limits = Limits {
        time_per_call: Duration::from_millis(100),
        ..Limits::default()
    };
    load(runtime, &wat_resolver(dir, name, body))
        .open(Vec::new(), limits)
        .expect("opens")
}

fn some_conflict() -> Conflict {
    on_b(
        ConflictKind::UpdateDiffers,
        Some(row("b", Some(1), 1)),
        Some(row("old", Some(0), 0)),
        Some(row("a", Some(1), 1)),
    )
}

#[test]
fn a_merged_row_of_the_wrong_width_is_refused_naming_plugin_and_table() {
    let (dir, runtime) = runtime();
    let mut resolver = open_wat(&runtime, dir.path(), "short_merge", "(i32.const 32)");
    let err = resolver
        .resolve(&some_conflict())
        .expect_err("one value for four columns");
    assert!(
        matches!(
            &err,
            ResolveError::Merged {
                problem: BadMerge::Width { got: 1, want: 4 },
                kind: ConflictKind::UpdateDiffers,
                ..
            }
        ),
        "{err:?}"
    );
    let message = err.to_string();
    assert!(message.contains("plugin short_merge ("), "{message}");
    assert!(message.contains("on table public.tally"), "{message}");
}

#[test]
fn a_merged_row_must_keep_the_conflicts_key() {
    let (dir, runtime) = runtime();
    let mut resolver = open_wat(&runtime, dir.path(), "seven", "(i32.const 32)");
    let mut id = Column::new("id", DataType::Int64);
    id.nullable = false;
    let keyed = |key: i64| Conflict {
        table: Arc::new(TableSchema {
            name: "ids".into(),
            columns: vec![id.clone()],
            primary_key: vec!["id".into()],
            ..TableSchema::default()
        }),
        key: vec![Value::Int(key)],
        kind: ConflictKind::InsertExists,
        local: version(Some(Row(vec![Value::Int(key)])), Side::B),
        remote_old: None,
        remote_new: version(Some(Row(vec![Value::Int(key)])), Side::A),
    };
    assert_eq!(
        resolver.resolve(&keyed(7)).expect("the same key"),
        Resolution::Merged(Row(vec![Value::Int(7)]))
    );
    let err = resolver.resolve(&keyed(1)).expect_err("another key");
    assert!(
        matches!(&err, ResolveError::Merged { problem: BadMerge::Key { column }, .. } if column == "id"),
        "{err:?}"
    );
}

#[test]
fn errors_traps_and_timeouts_name_the_plugin_and_the_table() {
    let (dir, runtime) = runtime();
    let cases: [(&str, &str, Failure); 3] = [
        (
            "refuses",
            "(i32.const 48)",
            Failure::Refused("nope!".into()),
        ),
        (
            "spins",
            "(loop $forever (br $forever)) (i32.const 16)",
            Failure::Timeout,
        ),
        (
            "traps",
            "unreachable",
            Failure::Trap("reached unreachable code (a panic)".into()),
        ),
    ];
    for (name, body, expected) in cases {
        let mut resolver = open_wat(&runtime, dir.path(), name, body);
        let err = resolver.resolve(&some_conflict()).expect_err(name);
        match &err {
            ResolveError::Call { failure, table, .. } => {
                assert_eq!(failure, &expected, "{name}");
                assert_eq!(table, "public.tally");
            }
            other => panic!("{name}: {other:?}"),
        }
        assert!(
            err.to_string().contains(&format!("plugin {name} (")),
            "{err}"
        );
        assert_eq!(
            crate::error::Error::from(err).kind(),
            crate::error::ErrorKind::Data
        );
    }
}

#[test]
fn a_trap_costs_only_its_own_conflict() {
    let (dir, runtime) = runtime();
    // Traps on update-differs (2), parks anything else.
    let body = "(if (i32.eq (i32.load8_u offset=52 (local.get $args)) (i32.const 2)) \
                (then unreachable)) (i32.const 16)";
    let mut resolver = open_wat(&runtime, dir.path(), "picky", body);
    let err = resolver.resolve(&some_conflict()).expect_err("traps");
    assert!(
        matches!(
            err,
            ResolveError::Call {
                failure: Failure::Trap(_),
                ..
            }
        ),
        "{err:?}"
    );
    let mut other = some_conflict();
    other.kind = ConflictKind::InsertExists;
    other.remote_old = None;
    assert_eq!(
        resolver.resolve(&other).expect("a fresh instance answers"),
        Resolution::Park
    );
}

#[test]
fn a_resolver_that_favours_the_remote_end_is_caught_diverging() {
    let (dir, runtime) = runtime();
    // Always apply-remote: each leg takes the other side's row.
    let mut resolver = open_wat(&runtime, dir.path(), "remote_wins", "(i32.const 24)");
    let err = resolver
        .check_converges(&some_conflict())
        .expect_err("the legs swap rows");
    match &err {
        ResolveError::Diverged {
            this_leg,
            other_leg,
            ..
        } => {
            assert_eq!(this_leg, &Settled::Row(row("a", Some(1), 1)));
            assert_eq!(other_leg, &Settled::Row(row("b", Some(1), 1)));
        }
        other => panic!("{other:?}"),
    }
    assert!(err.to_string().contains("not deterministic"), "{err}");
}
