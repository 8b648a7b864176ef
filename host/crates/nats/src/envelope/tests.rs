use super::*;
use dmp_model::{Column, DataType};

fn schema() -> TableSchema {
    let column = |name: &str, t: DataType| Column::new(name, t);
    TableSchema {
        name: "items".into(),
        columns: vec![
            column("id", DataType::Int64),
            column("ok", DataType::Bool),
            column(
                "price",
                DataType::Decimal {
                    precision: Some(40),
                    scale: Some(2),
                },
            ),
            column("ratio", DataType::Float64),
            column("label", DataType::TEXT),
            column("blob", DataType::Bytes),
            column("doc", DataType::Json),
            column("day", DataType::Date),
            column("at", DataType::Time),
            column("local", DataType::Timestamp),
            column("instant", DataType::TimestampTz),
            column("uid", DataType::Uuid),
        ],
        primary_key: vec!["id".into()],
        ..TableSchema::default()
    }
}

fn row(id: i64, ratio: f64) -> Row {
    let schema = schema();
    let text = [
        "12345678901234567890123456789012345678.90",
        "",
        "ü ✓ \"quoted\"\nline",
        "",
        r#"{"a": [1, 2.5, null], "ü": true}"#,
        "2024-02-29",
        "23:59:59.000001",
        "1999-12-31 23:00:00.000001",
        "2024-01-02T03:04:05.123456Z",
        "0e0f1a2b-3c4d-4e5f-8a9b-0c1d2e3f4a5b",
    ];
    let mut values = vec![Value::Int(id), Value::Bool(true)];
    values.push(Value::parse_text(text[0], &schema.columns[2].data_type).expect("decimal"));
    values.push(Value::Float(ratio));
    values.push(Value::Text(text[2].into()));
    values.push(Value::Bytes(vec![0, 255, 16]));
    values.push(Value::Json(text[4].into()));
    for (i, t) in text[5..].iter().enumerate() {
        values.push(Value::parse_text(t, &schema.columns[7 + i].data_type).expect("value"));
    }
    Row(values)
}

fn source(snapshot: bool) -> SourceInfo {
    SourceInfo {
        name: "p".into(),
        db: "shop".into(),
        schema: Some("public".into()),
        table: "items".into(),
        position: vec![("lsn".into(), "0/16B3748".into())],
        ts_ms: 1_700_000_000_000,
        snapshot,
    }
}

fn round_trip(change: &Change, snapshot: bool) -> (Json, Envelope) {
    let text = encode(
        &schema(),
        change,
        snapshot,
        &source(snapshot),
        1_700_000_000_123,
    );
    let json: Json = serde_json::from_str(&text).expect("the message is JSON");
    let decoded = decode(text.as_bytes(), &schema()).expect("decodes");
    (json, decoded)
}

#[test]
fn every_type_goes_out_and_comes_back_exactly() {
    for ratio in [1.5, f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
        let (json, decoded) = round_trip(&Change::Insert(row(1, ratio)), false);
        assert_eq!(json["op"], "c");
        assert_eq!(
            json["after"]["price"],
            "12345678901234567890123456789012345678.90"
        );
        assert_eq!(json["after"]["blob"], "AP8Q");
        assert_eq!(json["after"]["doc"]["a"][1], 2.5);
        assert_eq!(json["after"]["instant"], "2024-01-02T03:04:05.123456Z");
        assert_eq!(json["source"]["connector"], "dmp");
        assert_eq!(json["source"]["lsn"], "0/16B3748");
        let after = decoded.after.clone().expect("after");
        let want = row(1, ratio);
        for (i, (got, want)) in after.0.iter().zip(&want.0).enumerate() {
            match (got, want) {
                (Value::Float(a), Value::Float(b)) if a.is_nan() => assert!(b.is_nan()),
                _ => assert_eq!(got, want, "column {}", schema().columns[i].name),
            }
        }
        assert_eq!(decoded.source_ts_ms, Some(1_700_000_000_000));
    }
}

#[test]
fn ops_follow_the_change_and_snapshot_rows_are_reads() {
    let (json, decoded) = round_trip(&Change::Insert(row(1, 1.0)), true);
    assert_eq!(
        (json["op"].as_str(), json["source"]["snapshot"].as_bool()),
        (Some("r"), Some(true))
    );
    assert!(matches!(decoded.change(), Some(Change::Insert(_))));
    let update = Change::Update {
        before: Some(row(1, 1.0)),
        after: row(1, 2.0),
    };
    let (json, decoded) = round_trip(&update, false);
    assert_eq!(json["op"], "u");
    assert_eq!(decoded.change(), Some(update));
    let (json, decoded) = round_trip(&Change::Delete(row(1, 1.0)), false);
    assert_eq!(
        (json["op"].as_str(), json["after"].is_null()),
        (Some("d"), true)
    );
    assert_eq!(decoded.change(), Some(Change::Delete(row(1, 1.0))));
    let truncate = encode_truncate(&source(false), 0);
    let decoded = decode(truncate.as_bytes(), &schema()).expect("decodes");
    assert_eq!((decoded.op, decoded.change()), (Op::Truncate, None));
}

#[test]
fn messages_that_do_not_fit_name_the_problem() {
    let s = schema();
    let err = |text: &str| {
        decode(text.as_bytes(), &s)
            .expect_err("refused")
            .to_string()
    };
    assert!(err("not json").starts_with("not a JSON object"));
    assert_eq!(
        err(r#"{"op": "x"}"#),
        "`op` is missing or not one of r, c, u, d, t"
    );
    assert_eq!(
        err(r#"{"op": "d", "after": {"id": 1}}"#),
        "`before` is missing (a `d` event needs it)"
    );
    assert!(err(r#"{"op": "c", "after": {"id": "one"}}"#).starts_with("`after.id`: "));
    assert!(err(r#"{"op": "c", "after": {"day": "2024-02-30"}}"#).starts_with("`after.day`: "));
    assert_eq!(
        err(r#"{"op": "c", "after": {"id": 1, "nope": 2}}"#),
        "`after` has no column `nope` of table items"
    );
    // A key-only image leaves the other columns null.
    let decoded = decode(br#"{"op": "d", "before": {"id": 7}}"#, &s).expect("decodes");
    let before = decoded.before.expect("before");
    assert_eq!(before.0[0], Value::Int(7));
    assert!(before.0[1..].iter().all(Value::is_null));
}
