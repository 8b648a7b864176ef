use super::*;
use dmp_model::{Column, DataType, Value};

fn row(id: i64, v: &str) -> Row {
    Row(vec![Value::Int(id), Value::Text(v.into())])
}

fn table() -> TableSchema {
    TableSchema {
        name: "items".into(),
        columns: vec![
            Column::new("id", DataType::Int64),
            Column::new("v", DataType::TEXT),
        ],
        primary_key: vec!["id".into()],
        ..Default::default()
    }
}

fn found(present: bool, same_as_expected: bool, same_as_last: bool) -> Found {
    Found {
        present,
        same_as_expected,
        same_as_last,
        order: None,
        local: None,
    }
}

fn update(before: Row, after: Row) -> Change {
    Change::Update {
        before: Some(before),
        after,
    }
}

#[test]
fn a_key_keeps_its_first_expectation_and_its_last_row() {
    let changes = vec![
        update(row(1, "a"), row(1, "b")),
        Change::Insert(row(2, "x")),
        update(row(1, "b"), row(1, "c")),
        Change::Delete(row(2, "x")),
        // The key moves: 3 is expected gone after, 4 absent before.
        update(row(3, "m"), row(4, "m")),
    ];
    let checks = key_checks(&[0], &changes, &[]);
    let shape: Vec<(Expected<'_>, Option<&Row>)> =
        checks.iter().map(|c| (c.expected, c.last)).collect();
    assert_eq!(
        shape,
        vec![
            (Expected::Row(&row(1, "a")), Some(&row(1, "c"))),
            (Expected::Absent, None),
            (Expected::Row(&row(3, "m")), None),
            (Expected::Absent, Some(&row(4, "m"))),
        ]
    );
}

/// Changes whose old image is not the row the change before left start
/// from a row the stream did not carry (DMP's own write on that side): the
/// key is expected to hold that row, not the first one.
#[test]
fn a_broken_run_of_changes_expects_its_last_old_image() {
    let changes = vec![
        update(row(1, "a"), row(1, "b")),
        // "x" came from this side, written there by DMP.
        update(row(1, "x"), row(1, "y")),
        update(row(1, "y"), row(1, "z")),
    ];
    let checks = key_checks(&[0], &changes, &[]);
    assert_eq!(checks[0].expected, Expected::Row(&row(1, "x")));
    assert_eq!(checks[0].remote_old, Some(&row(1, "x")));
    assert_eq!(checks[0].last, Some(&row(1, "z")));
    // Deleted and inserted again: one run.
    let changes = vec![Change::Delete(row(2, "a")), Change::Insert(row(2, "b"))];
    let checks = key_checks(&[0], &changes, &[]);
    assert_eq!(checks[0].expected, Expected::Row(&row(2, "a")));
}

#[test]
fn each_kind_is_told_and_agreement_is_none() {
    let insert = vec![Change::Insert(row(1, "a"))];
    let upd = vec![update(row(1, "a"), row(1, "b"))];
    let del = vec![Change::Delete(row(1, "a"))];
    let judged = |changes: &[Change], f: Found| judge(&key_checks(&[0], changes, &[])[0], &f);
    assert_eq!(judged(&insert, found(false, false, false)), None);
    assert_eq!(
        judged(&insert, found(true, false, false)),
        Some(ConflictKind::InsertExists)
    );
    // The same row already there (a replay, or the same write on both).
    assert_eq!(judged(&insert, found(true, false, true)), None);
    assert_eq!(judged(&upd, found(true, true, false)), None);
    assert_eq!(
        judged(&upd, found(true, false, false)),
        Some(ConflictKind::UpdateDiffers)
    );
    assert_eq!(
        judged(&upd, found(false, false, false)),
        Some(ConflictKind::UpdateMissing)
    );
    assert_eq!(judged(&del, found(true, true, false)), None);
    assert_eq!(
        judged(&del, found(true, false, false)),
        Some(ConflictKind::DeleteDiffers)
    );
    assert_eq!(
        judged(&del, found(false, false, true)),
        Some(ConflictKind::DeleteMissing)
    );
}

/// The two legs of one conflict decide alike: the row that wins on one
/// side is the one the other side keeps.
#[test]
fn both_legs_reach_the_same_row_under_every_policy() {
    let lww = Policy::LastWriterWins { column: "v".into() };
    // Concurrent updates; A's row orders `a_order` against B's.
    for (policy, a_order, winner) in [
        (Policy::AWins, None, Side::A),
        (Policy::BWins, None, Side::B),
        (lww.clone(), Some(1), Side::A),
        (lww.clone(), Some(-1), Side::B),
        (lww.clone(), Some(0), Side::A),
    ] {
        let on = |remote: Side, order: Option<i8>| {
            let f = Found {
                order,
                ..found(true, false, false)
            };
            decide(remote, &policy, ConflictKind::UpdateDiffers, &f)
        };
        let on_b = on(Side::A, a_order);
        let on_a = on(Side::B, a_order.map(|o| -o));
        let expected = if winner == Side::A {
            (Decision::ApplyRemote, Decision::KeepLocal)
        } else {
            (Decision::KeepLocal, Decision::ApplyRemote)
        };
        assert_eq!((on_b, on_a), expected, "{policy:?} {a_order:?}");
    }
    // A deletes while B updates: under last_writer_wins the delete wins
    // on both sides.
    let on_b = decide(
        Side::A,
        &lww,
        ConflictKind::DeleteDiffers,
        &found(true, false, false),
    );
    let on_a = decide(
        Side::B,
        &lww,
        ConflictKind::UpdateMissing,
        &found(false, false, false),
    );
    assert_eq!((on_b, on_a), (Decision::ApplyRemote, Decision::KeepLocal));
    assert_eq!(
        decide(
            Side::A,
            &Policy::Manual,
            ConflictKind::UpdateDiffers,
            &found(true, false, false)
        ),
        Decision::Park
    );
}

#[test]
fn settled_keys_leave_the_net_effect_and_enter_the_log() {
    let table = table();
    let changes = vec![
        update(row(1, "a"), row(1, "b")),
        update(row(2, "a"), row(2, "b")),
    ];
    let checks = key_checks(&[0], &changes, &[]);
    let rules = ConflictRules {
        remote: Side::B,
        policy: Policy::AWins,
        tables: BTreeMap::new(),
        tombstone_retention: std::time::Duration::from_secs(3600),
    };
    let found = vec![
        Found {
            local: Some(r#"{"id":1,"v":"z"}"#.into()),
            ..found(true, false, false)
        },
        found(true, true, false),
    ];
    let settled = settle(&rules, &table, &[0], &checks, &found);
    assert_eq!(settled.entries.len(), 1);
    let entry = &settled.entries[0];
    assert_eq!(entry.key, serde_json::json!({"id": 1}));
    assert_eq!(
        (entry.kind, entry.decision.clone()),
        (ConflictKind::UpdateDiffers, Decision::KeepLocal)
    );
    assert_eq!(
        entry.remote_new,
        Some(serde_json::json!({"id": 1, "v": "b"}))
    );
    let mut net = crate::net_effect::net_effect(&[0], &changes);
    net.without(&[0], &settled.skip);
    let kept: Vec<&Row> = net.upserts.iter().map(|r| r.row).collect();
    assert_eq!(kept, vec![&row(2, "b")]);
    // A table of its own policy.
    let rules = ConflictRules {
        tables: [("items".to_string(), Policy::BWins)].into(),
        ..rules
    };
    let settled = settle(&rules, &table, &[0], &checks, &found);
    assert_eq!(settled.entries[0].decision, Decision::ApplyRemote);
    assert!(settled.skip.is_empty());
}

/// A run ending in a delete remembers the row it deleted (its value is
/// the delete's under last_writer_wins); one that inserts again after
/// does not.
#[test]
fn a_delete_keeps_the_row_it_deleted() {
    let changes = vec![
        update(row(1, "a"), row(1, "b")),
        Change::Delete(row(1, "b")),
        Change::Delete(row(2, "a")),
        Change::Insert(row(2, "c")),
        update(row(3, "m"), row(4, "m")),
    ];
    let checks = key_checks(&[0], &changes, &[]);
    let deleted: Vec<Option<&Row>> = checks.iter().map(|c| c.deleted).collect();
    assert_eq!(
        deleted,
        vec![Some(&row(1, "b")), None, Some(&row(3, "m")), None]
    );
}

/// The order of two writes: by value, a delete later than an update of
/// the same value, two alike equal.
#[test]
fn a_delete_is_later_than_an_update_of_the_same_value() {
    let sql = write_order_sql("r", "l", true, false);
    assert_eq!(
        sql,
        "CASE WHEN r > l THEN 1 WHEN r < l THEN -1 WHEN r = l THEN 1 END"
    );
    assert!(write_order_sql("r", "l", false, true).ends_with("THEN -1 END"));
    assert!(write_order_sql("r", "l", true, true).ends_with("THEN 0 END"));
    assert!(write_order_sql("r", "l", false, false).ends_with("THEN 0 END"));
}

#[test]
fn tombstone_tables_fit_every_server_and_never_collide() {
    assert_eq!(tombstone_table("items"), "_dmp_tomb_items");
    let long_a = format!("{}a", "x".repeat(70));
    let long_b = format!("{}b", "x".repeat(70));
    let (a, b) = (tombstone_table(&long_a), tombstone_table(&long_b));
    assert!(a.len() <= 63 && b.len() <= 63, "{a} {b}");
    assert_ne!(a, b);
    assert!(a.starts_with("_dmp_"));
    // Cut on a character boundary.
    let wide = tombstone_table(&"é".repeat(40));
    assert!(wide.len() <= 63);
}

/// Under last_writer_wins a known order decides, ties go to side A, and
/// a delete of unknown value (no tombstone) beats an update.
#[test]
fn last_writer_wins_follows_the_order_of_the_writes() {
    let by_column = Policy::LastWriterWins {
        column: "version".into(),
    };
    for policy in [by_column, Policy::LastCommitWins] {
        decides_by_order(&policy);
    }
}

fn decides_by_order(policy: &Policy) {
    let with = |order| Found {
        order,
        ..found(true, false, false)
    };
    let decide_b = |kind, order| decide(Side::B, policy, kind, &with(order));
    assert_eq!(
        decide_b(ConflictKind::UpdateMissing, Some(1)),
        Decision::ApplyRemote
    );
    assert_eq!(
        decide_b(ConflictKind::DeleteDiffers, Some(-1)),
        Decision::KeepLocal
    );
    assert_eq!(
        decide_b(ConflictKind::UpdateDiffers, Some(0)),
        Decision::KeepLocal
    );
    assert_eq!(
        decide(Side::A, policy, ConflictKind::UpdateDiffers, &with(Some(0))),
        Decision::ApplyRemote
    );
    assert_eq!(
        decide_b(ConflictKind::UpdateMissing, None),
        Decision::KeepLocal
    );
    assert_eq!(
        decide_b(ConflictKind::DeleteDiffers, None),
        Decision::ApplyRemote
    );
}

#[test]
fn a_purge_is_due_once_a_minute_or_once_per_retention() {
    let clock = PurgeClock::default();
    let day = std::time::Duration::from_secs(86_400);
    assert!(clock.due(day));
    assert!(!clock.due(day));
    // A retention shorter than a minute purges as often.
    std::thread::sleep(std::time::Duration::from_millis(20));
    assert!(clock.due(std::time::Duration::from_millis(10)));
}
