//! The connector conformance suite: one harness that every target
//! connector runs through the contract alone — opened by the registry,
//! written by the `Target` calls the engine makes, read back through the
//! same connector's `Source` — instead of each pair of connectors writing
//! its own checks. A new connector adds one `Subject`.
//!
//! - every model type round-trips (compared in `dmp verify`'s canonical
//!   text, so a `boolean` kept as `tinyint(1)` is the same value);
//! - a chunk resumed by a new target instance at its checkpoint (or from
//!   its start, where the connector keeps none mid-chunk) ends with exactly
//!   its rows, none twice;
//! - applying a batch of changes twice leaves what applying it once does;
//! - a row the target refuses reaches the dead-letter sink, the rest of its
//!   batch is written.

use std::path::Path;
use std::sync::{Arc, Mutex};

use dmp::connectors::REGISTRY;
use dmp_contract::{
    Connectors, Endpoint, IfExists, RejectSink, SourceOptions, Start, Target, TargetOptions,
};
use dmp_model::canonical::{canonical_text, parse_canonical};
use dmp_model::{
    Batch, Change, ChangeBatch, Checkpoint, Chunk, Column, DataType, Fence, Position, Reject, Row,
    TableChanges, TableSchema, TableSelection, Value,
};

/// A target connector under test.
struct Subject {
    name: &'static str,
    url: String,
    /// Its `apply` changes rows in place (files keep a change log instead).
    applies: bool,
    /// It enforces NOT NULL (files hold what they are given).
    refuses: bool,
}

fn subjects(dir: &Path) -> Vec<Subject> {
    let file = |format: &str| format!("file://{}/{format}?format={format}", dir.display());
    let postgres = dmp_test_servers::postgres().create_database("conformance");
    let mariadb = dmp_test_servers::mariadb().create_database("conformance");
    vec![
        Subject {
            name: "sqlite",
            url: format!("sqlite://{}/target.db", dir.display()),
            applies: true,
            refuses: true,
        },
        Subject {
            name: "csv",
            url: file("csv"),
            applies: false,
            refuses: false,
        },
        Subject {
            name: "jsonl",
            url: file("jsonl"),
            applies: false,
            refuses: false,
        },
        Subject {
            name: "parquet",
            url: file("parquet"),
            applies: false,
            refuses: false,
        },
        Subject {
            name: "postgres",
            url: postgres.url,
            applies: true,
            refuses: true,
        },
        Subject {
            name: "mariadb",
            url: mariadb.url,
            applies: true,
            refuses: true,
        },
    ]
}

/// Every model type, with a value each, as canonical text.
const EVERY_TYPE: &[(&str, DataType, &str)] = &[
    ("b", DataType::Bool, "1"),
    ("i2", DataType::Int16, "-32768"),
    ("i4", DataType::Int32, "2147483647"),
    ("i8", DataType::Int64, "-9223372036854775808"),
    ("f4", DataType::Float32, "1.5"),
    ("f8", DataType::Float64, "0.1"),
    (
        "d",
        DataType::Decimal {
            precision: Some(20),
            scale: Some(6),
        },
        "-12345678901234.5",
    ),
    (
        "t",
        DataType::Text { max_len: None },
        "naïve 😀 \"quoted\", comma\nnewline",
    ),
    ("vc", DataType::Text { max_len: Some(20) }, "short"),
    ("by", DataType::Bytes, "\\x00ff10"),
    ("j", DataType::Json, "{\"a\":[1,2.5,\"x\"],\"b\":null}"),
    ("dt", DataType::Date, "2024-02-29"),
    ("tm", DataType::Time, "23:59:59.999999"),
    ("ts", DataType::Timestamp, "2024-06-30 23:59:59.123456"),
    ("tz", DataType::TimestampTz, "2024-03-10 02:30:00.5"),
    ("u", DataType::Uuid, "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"),
];

fn key_column() -> Column {
    let mut id = Column::new("id", DataType::Int64);
    id.nullable = false;
    id
}

fn every_type_table() -> Arc<TableSchema> {
    let mut columns = vec![key_column()];
    columns.extend(EVERY_TYPE.iter().map(|(name, t, _)| Column::new(*name, *t)));
    Arc::new(TableSchema {
        name: "conf_types".into(),
        columns,
        primary_key: vec!["id".into()],
        ..TableSchema::default()
    })
}

/// Row 1 holds every value, row 2 every NULL.
fn every_type_rows() -> Vec<Row> {
    let values = EVERY_TYPE
        .iter()
        .map(|(name, t, text)| parse_canonical(text, t).unwrap_or_else(|e| panic!("{name}: {e}")));
    let full = std::iter::once(Value::Int(1)).chain(values).collect();
    let nulls = std::iter::once(Value::Int(2))
        .chain(EVERY_TYPE.iter().map(|_| Value::Null))
        .collect();
    vec![Row(full), Row(nulls)]
}

/// `id int64 key, label text NOT NULL`.
fn labelled_table(name: &str) -> Arc<TableSchema> {
    let mut label = Column::new("label", DataType::Text { max_len: None });
    label.nullable = false;
    Arc::new(TableSchema {
        name: name.into(),
        columns: vec![key_column(), label],
        primary_key: vec!["id".into()],
        ..TableSchema::default()
    })
}

fn labelled(id: i64, label: &str) -> Row {
    Row(vec![Value::Int(id), Value::Text(label.into())])
}

/// Keeps what a target refuses.
#[derive(Default)]
struct Refused(Mutex<Vec<Reject>>);

impl RejectSink for Refused {
    fn reject(&self, _: &TableSchema, rejects: Vec<Reject>) -> dmp::Result<()> {
        self.0.lock().expect("refused rows").extend(rejects);
        Ok(())
    }
}

fn endpoint(subject: &Subject) -> Endpoint {
    Endpoint::new(&subject.url, Path::new("."), subject.name)
}

fn open_target(subject: &Subject, if_exists: IfExists) -> Arc<dyn Target> {
    let options = TargetOptions {
        pipeline: "conformance".into(),
        if_exists,
        writers: 1,
        data_only: false,
        source_database: None,
        origin: None,
        conflicts: None,
    };
    REGISTRY
        .open_target(&endpoint(subject), options)
        .unwrap_or_else(|e| panic!("{}: {}", subject.name, e.report()))
}

/// The subject's target, its `table` prepared for a `start`.
async fn prepared(subject: &Subject, table: &Arc<TableSchema>, start: Start) -> Arc<dyn Target> {
    let target = open_target(subject, IfExists::Replace);
    target
        .prepare(std::slice::from_ref(table), start)
        .await
        .unwrap_or_else(|e| panic!("{}: {}", subject.name, e.report()));
    target
}

/// A batch of inserts of chunk 0 that follows `before` rows, checkpointed
/// after its last row.
fn insert_batch(
    table: &Arc<TableSchema>,
    before: u64,
    rows: Vec<Row>,
    last: bool,
) -> (Batch, Checkpoint) {
    let read = before + rows.len() as u64;
    let key = rows
        .last()
        .map(|row| row.0[0].clone())
        .unwrap_or(Value::Int(0));
    let position = Position::Key { key: vec![key] };
    let batch = Batch {
        table: table.clone(),
        chunk: 0,
        changes: rows.into_iter().map(Change::Insert).collect(),
        rejects: Vec::new(),
        wire: None,
        position: position.clone(),
        last,
    };
    let checkpoint = Checkpoint {
        table: table.name.clone(),
        chunk: 0,
        position,
        rows: read,
        done: last,
        fence: None,
    };
    (batch, checkpoint)
}

/// The table's rows as the connector's own source reads them back, with
/// their columns' types there.
async fn read_back(subject: &Subject, table: &str) -> (Vec<DataType>, Vec<Row>) {
    let source = REGISTRY
        .open_source(&endpoint(subject), SourceOptions::readers(1))
        .unwrap_or_else(|e| panic!("{}: {}", subject.name, e.report()));
    let selection = TableSelection::new(&[table.to_string()], &[]).expect("selection");
    let schema = source
        .discover(&selection)
        .await
        .unwrap_or_else(|e| panic!("{}: {}", subject.name, e.report()))
        .into_iter()
        .next()
        .unwrap_or_else(|| panic!("{}: table {table} not found", subject.name));
    let types = schema.columns.iter().map(|c| c.data_type).collect();
    let mut batches = source.read_chunk(Arc::new(schema), Chunk::whole(0), Position::Start, 1000);
    let mut rows = Vec::new();
    while let Some(batch) = batches.recv().await {
        let batch = batch.unwrap_or_else(|e| panic!("{}: {}", subject.name, e.report()));
        rows.extend(batch.changes.into_iter().filter_map(|c| match c {
            Change::Insert(row) => Some(row),
            _ => None,
        }));
        if batch.last {
            break;
        }
    }
    // Keys are integers: in their order, whatever order a file kept.
    rows.sort_by_key(|row| {
        canonical_text(&row.0[0], &DataType::Int64).and_then(|id| id.parse::<i64>().ok())
    });
    (types, rows)
}

/// The target's `table` holds exactly `rows`, as its source reads them.
async fn assert_holds(subject: &Subject, table: &TableSchema, rows: &[Row]) {
    let (types, back) = read_back(subject, &table.name).await;
    let sent: Vec<DataType> = table.columns.iter().map(|c| c.data_type).collect();
    assert_eq!(
        canonical(&types, &back),
        canonical(&sent, rows),
        "{}",
        subject.name
    );
}

/// The canonical text of each value, under its column's type.
fn canonical(types: &[DataType], rows: &[Row]) -> Vec<Vec<Option<String>>> {
    rows.iter()
        .map(|row| {
            row.0
                .iter()
                .zip(types)
                .map(|(value, t)| canonical_text(value, t))
                .collect()
        })
        .collect()
}

async fn every_type_round_trips(subject: &Subject) {
    let table = every_type_table();
    let target = prepared(subject, &table, Start::Fresh).await;
    let rows = every_type_rows();
    let (batch, checkpoint) = insert_batch(&table, 0, rows.clone(), true);
    let refused = Arc::new(Refused::default());
    target
        .write(batch, checkpoint, refused.clone())
        .await
        .unwrap_or_else(|e| panic!("{}: {}", subject.name, e.report()));
    target.finish_table(&table).await.expect("finish");
    assert!(
        refused.0.lock().expect("refused").is_empty(),
        "{}",
        subject.name
    );
    let (types, back) = read_back(subject, &table.name).await;
    let sent_types: Vec<DataType> = table.columns.iter().map(|c| c.data_type).collect();
    let sent = canonical(&sent_types, &rows);
    let got = canonical(&types, &back);
    for (column, (name, _, _)) in EVERY_TYPE.iter().enumerate() {
        for (row, (want, have)) in sent.iter().zip(&got).enumerate() {
            assert_eq!(
                want[column + 1],
                have[column + 1],
                "{}: column {name} of row {}",
                subject.name,
                row + 1
            );
        }
    }
    assert_eq!(got.len(), 2, "{}", subject.name);
}

async fn a_resumed_chunk_ends_with_exactly_its_rows(subject: &Subject) {
    let table = labelled_table("conf_resume");
    let rows: Vec<Row> = (1..=30).map(|i| labelled(i, &format!("row {i}"))).collect();
    let sink: Arc<dyn RejectSink> = Arc::new(Refused::default());
    {
        // A first process writes two batches, then is gone.
        let target = prepared(subject, &table, Start::Fresh).await;
        for (n, part) in rows[..20].chunks(10).enumerate() {
            let (batch, checkpoint) = insert_batch(&table, n as u64 * 10, part.to_vec(), false);
            target
                .write(batch, checkpoint, sink.clone())
                .await
                .expect("write");
        }
    }
    let target = prepared(subject, &table, Start::Resume).await;
    let held = target.checkpoints().await.expect("checkpoints");
    // Where the chunk goes on: after its last batch, or from its start
    // where the connector keeps no mid-chunk checkpoint (Parquet writes
    // its footer last) and drops the partial rows.
    let from = match held.iter().find(|c| c.table == table.name && c.chunk == 0) {
        Some(checkpoint) => {
            assert_eq!(
                (checkpoint.position.clone(), checkpoint.rows),
                (
                    Position::Key {
                        key: vec![Value::Int(20)]
                    },
                    20
                ),
                "{}",
                subject.name
            );
            20
        }
        None => 0,
    };
    let (batch, checkpoint) = insert_batch(&table, from as u64, rows[from..].to_vec(), true);
    target.write(batch, checkpoint, sink).await.expect("write");
    target.finish_table(&table).await.expect("finish");
    assert_holds(subject, &table, &rows).await;
}

/// A chunk write fenced on a checkpoint that moved since (another worker
/// wrote the chunk) is refused, whole; one fenced on where the chunk
/// stands goes in.
async fn a_write_fenced_on_a_moved_checkpoint_is_refused(subject: &Subject) {
    let table = labelled_table("conf_fence");
    let rows: Vec<Row> = (1..=20).map(|i| labelled(i, &format!("row {i}"))).collect();
    let sink: Arc<dyn RejectSink> = Arc::new(Refused::default());
    let target = prepared(subject, &table, Start::Fresh).await;
    let fenced = |before: u64, part: &[Row], last: bool| {
        let (batch, mut checkpoint) = insert_batch(&table, before, part.to_vec(), last);
        checkpoint.fence = Some(Fence::Rows(before));
        (batch, checkpoint)
    };
    let (batch, checkpoint) = fenced(0, &rows[..10], false);
    target
        .write(batch, checkpoint, sink.clone())
        .await
        .expect("first write");
    // A second worker that read the chunk at 0 rows writes its batch.
    let (batch, checkpoint) = fenced(0, &rows[10..], true);
    let refused = target.write(batch, checkpoint, sink.clone()).await;
    assert!(
        matches!(&refused, Err(e) if e.kind() == dmp::ErrorKind::Deposed),
        "{}: {refused:?}",
        subject.name
    );
    assert_holds(subject, &table, &rows[..10]).await;
    let (batch, checkpoint) = fenced(10, &rows[10..], true);
    target
        .write(batch, checkpoint, sink.clone())
        .await
        .expect("write in turn");
    // Done, the chunk takes no more.
    let (batch, checkpoint) = fenced(20, &[], true);
    let refused = target.write(batch, checkpoint, sink).await;
    assert!(
        matches!(&refused, Err(e) if e.kind() == dmp::ErrorKind::Deposed),
        "{}: {refused:?}",
        subject.name
    );
    assert_holds(subject, &table, &rows).await;
}

async fn applying_twice_is_applying_once(subject: &Subject) {
    let table = labelled_table("conf_apply");
    let target = prepared(subject, &table, Start::Keep).await;
    let changes = vec![
        Change::Insert(labelled(1, "one")),
        Change::Insert(labelled(2, "two")),
        Change::Insert(labelled(3, "three")),
        Change::Update {
            before: Some(labelled(2, "two")),
            after: labelled(2, "TWO"),
        },
        Change::Delete(labelled(3, "three")),
    ];
    let sink: Arc<dyn RejectSink> = Arc::new(Refused::default());
    for _ in 0..2 {
        let mut batch = ChangeBatch::new();
        batch.segments.push(TableChanges::Rows {
            table: table.clone(),
            changes: changes.clone(),
            origins: Vec::new(),
        });
        let checkpoint = Checkpoint {
            table: table.name.clone(),
            chunk: dmp_model::CURSOR_CHUNK,
            position: Position::Cursor {
                cursor: Value::Int(5),
                key: vec![Value::Int(3)],
            },
            rows: 5,
            done: false,
            fence: None,
        };
        target
            .apply(batch, checkpoint, sink.clone())
            .await
            .unwrap_or_else(|e| panic!("{}: {}", subject.name, e.report()));
    }
    assert_holds(subject, &table, &[labelled(1, "one"), labelled(2, "TWO")]).await;
}

/// A change stream's apply fenced on an epoch older than the one its
/// checkpoint holds (a deposed holder) is refused whole; a newer one goes
/// in.
async fn an_apply_of_a_deposed_stream_holder_is_refused(subject: &Subject) {
    let table = labelled_table("conf_epoch");
    let target = prepared(subject, &table, Start::Keep).await;
    let sink: Arc<dyn RejectSink> = Arc::new(Refused::default());
    let apply = |id: i64, epoch: u64| {
        let mut batch = ChangeBatch::new();
        batch.segments.push(TableChanges::Rows {
            table: table.clone(),
            changes: vec![Change::Insert(labelled(id, "row"))],
            origins: Vec::new(),
        });
        let checkpoint = Checkpoint {
            table: dmp_model::STREAM_CHECKPOINT.to_string(),
            chunk: 0,
            position: Position::Log {
                log: format!("at {id}"),
                skip: 0,
            },
            rows: 1,
            done: true,
            fence: Some(Fence::Epoch(epoch)),
        };
        target.apply(batch, checkpoint, sink.clone())
    };
    apply(1, 5)
        .await
        .unwrap_or_else(|e| panic!("{}: {}", subject.name, e.report()));
    let refused = apply(2, 3).await;
    assert!(
        matches!(&refused, Err(e) if e.kind() == dmp::ErrorKind::Deposed),
        "{}: {refused:?}",
        subject.name
    );
    apply(3, 7)
        .await
        .unwrap_or_else(|e| panic!("{}: {}", subject.name, e.report()));
    assert_holds(subject, &table, &[labelled(1, "row"), labelled(3, "row")]).await;
}

async fn refused_rows_are_dead_lettered(subject: &Subject) {
    let table = labelled_table("conf_refused");
    let target = prepared(subject, &table, Start::Fresh).await;
    let rows = vec![
        labelled(1, "fine"),
        Row(vec![Value::Int(2), Value::Null]),
        labelled(3, "fine too"),
    ];
    let (batch, checkpoint) = insert_batch(&table, 0, rows, true);
    let refused = Arc::new(Refused::default());
    target
        .write(batch, checkpoint, refused.clone())
        .await
        .unwrap_or_else(|e| panic!("{}: {}", subject.name, e.report()));
    target.finish_table(&table).await.expect("finish");
    let rejects = refused.0.lock().expect("refused").clone();
    assert_eq!(rejects.len(), 1, "{}: {rejects:?}", subject.name);
    assert_holds(
        subject,
        &table,
        &[labelled(1, "fine"), labelled(3, "fine too")],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_target_connector_keeps_the_contract() {
    let dir = tempfile::tempdir().expect("temp dir");
    for subject in subjects(dir.path()) {
        every_type_round_trips(&subject).await;
        a_resumed_chunk_ends_with_exactly_its_rows(&subject).await;
        if subject.applies {
            applying_twice_is_applying_once(&subject).await;
            a_write_fenced_on_a_moved_checkpoint_is_refused(&subject).await;
            an_apply_of_a_deposed_stream_holder_is_refused(&subject).await;
        }
        if subject.refuses {
            refused_rows_are_dead_lettered(&subject).await;
        }
    }
}
