//! The binlog change source end to end against MariaDB servers started by
//! `dmp-test-servers`: the stream check reads over TLS (verify-identity, a
//! password user that must use TLS). `--nocapture` shows the events.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use mysql_async::prelude::Queryable;

use super::position::LogPosition;
use dmp_contract::Endpoint;
use dmp_contract::{ChangeFeed, ChangeOptions, SourceOptions, StreamEvent};
use dmp_model::{Change, Chunk, Position, Row, TableSchema, TableSelection, Value};

/// The source as the registry opens it (this crate cannot see the registry).
fn open_source(
    endpoint: &Endpoint,
    options: SourceOptions,
) -> dmp_contract::Result<Arc<dyn dmp_contract::Source>> {
    let limits = options.limits;
    Ok(Arc::new(crate::MysqlSource::open(
        endpoint, options, limits,
    )?))
}

const DB: &str = "mycdc_e2e";

/// The TLS server: its administrator's URL (root, no TLS, for setting up)
/// and the URL the source reads `db` with (TLS, verify-identity).
fn tls_urls(db: &str) -> (String, String) {
    let server = dmp_test_servers::tls_mariadb();
    let ca = server.tls().expect("a TLS server").ca();
    let source = format!(
        "mysql://{}:{}@localhost:{}/{db}?ssl-mode=verify-identity&ssl-ca={}",
        dmp_test_servers::PASSWORD_USER,
        dmp_test_servers::PASSWORD,
        server.port(),
        ca.display()
    );
    (server.url(), source)
}

async fn admin(url: &str) -> mysql_async::Conn {
    let mut conn = mysql_async::Conn::new(mysql_async::Opts::from_url(url).unwrap())
        .await
        .unwrap();
    conn.query_drop("SET time_zone = '+00:00', sql_mode = ''")
        .await
        .unwrap();
    conn
}

/// Events until `commits` commits arrived (or the time is up).
async fn collect(feed: &mut ChangeFeed, commits: usize) -> Vec<StreamEvent> {
    let mut events = Vec::new();
    let mut seen = 0;
    while seen < commits {
        let next = tokio::time::timeout(Duration::from_secs(10), feed.events.recv()).await;
        let Ok(Some(event)) = next else {
            panic!("stream ended or stalled after {events:#?}");
        };
        let event = event.unwrap();
        if matches!(event, StreamEvent::Commit { .. }) {
            seen += 1;
        }
        events.push(event);
    }
    events
}

fn key(row: &Row) -> Value {
    row.0[0].clone()
}

/// The rows the stream leaves, by first column.
fn replay(events: &[StreamEvent], table: usize, rows: &mut BTreeMap<String, Row>) {
    for event in events {
        match event {
            StreamEvent::Change { table: t, change } if *t == table => match change {
                Change::Insert(row) => {
                    rows.insert(format!("{:?}", key(row)), row.clone());
                }
                Change::Update { before, after } => {
                    if let Some(before) = before {
                        rows.remove(&format!("{:?}", key(before)));
                    }
                    rows.insert(format!("{:?}", key(after)), after.clone());
                }
                Change::Delete(row) => {
                    rows.remove(&format!("{:?}", key(row)));
                }
            },
            StreamEvent::Truncate { tables } if tables.contains(&table) => rows.clear(),
            _ => {}
        }
    }
}

async fn snapshot(
    source: &Arc<dyn dmp_contract::Source>,
    table: &Arc<TableSchema>,
) -> BTreeMap<String, Row> {
    let mut rx = source.read_chunk(table.clone(), Chunk::whole(0), Position::Start, 1000);
    let mut rows = BTreeMap::new();
    while let Some(batch) = rx.recv().await {
        let batch = batch.unwrap();
        assert!(batch.rejects.is_empty(), "{:?}", batch.rejects);
        for change in batch.changes {
            let row = change.row().clone();
            rows.insert(format!("{:?}", key(&row)), row);
        }
        if batch.last {
            break;
        }
    }
    rows
}

#[tokio::test]
async fn binlog_stream_end_to_end() {
    let (base, url) = tls_urls(DB);
    let mut conn = admin(&base).await;
    conn.query_drop(format!("DROP DATABASE IF EXISTS {DB}"))
        .await
        .unwrap();
    conn.query_drop(format!("CREATE DATABASE {DB}"))
        .await
        .unwrap();
    conn.query_drop(format!("USE {DB}")).await.unwrap();
    conn.query_drop(
        "CREATE TABLE types (
            id int PRIMARY KEY, tb tinyint(1), ti tinyint unsigned, si smallint,
            mi mediumint unsigned, i int unsigned, bi bigint unsigned, de decimal(10,2),
            f float, d double, bt bit(12), b1 bit(1), c char(5), vc varchar(20),
            l1 varchar(20) CHARACTER SET latin1, tx text, bl blob, bn binary(4),
            vb varbinary(10), j json, e enum('small','large'), s set('a','b','c'),
            dt date, dtm datetime(6), ts timestamp(6) NULL DEFAULT NULL, tm time(3), y year,
            u uuid, i4 inet4, i6 inet6, g point, gm geometry)",
    )
    .await
    .unwrap();
    conn.query_drop("CREATE TABLE items (id int PRIMARY KEY, name varchar(20))")
        .await
        .unwrap();
    // Streamed, never read by the snapshot (whose sessions would hold
    // its metadata lock and block the ALTER at the end).
    conn.query_drop("CREATE TABLE later (id int PRIMARY KEY)")
        .await
        .unwrap();
    conn.query_drop("CREATE TABLE other (id int PRIMARY KEY)")
        .await
        .unwrap();
    conn.query_drop("INSERT INTO items VALUES (1, 'one'), (2, 'two')")
        .await
        .unwrap();

    let endpoint = Endpoint::new(&url, Path::new("/tmp"), "test");
    let source = open_source(&endpoint, SourceOptions::readers(1)).unwrap();
    let all = TableSelection::new(&["*".to_string()], &[]).unwrap();
    let schemas: Vec<Arc<TableSchema>> = source
        .discover(&all)
        .await
        .unwrap()
        .into_iter()
        .filter(|t| t.name != "other")
        .map(Arc::new)
        .collect();
    let names: Vec<&str> = schemas.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(names, ["items", "later", "types"]);
    let changes = source
        .changes(&ChangeOptions {
            pipeline: "mycdc_e2e".into(),
            slot: None,
            publication: None,
            server_id: None,
            heartbeat: Duration::from_secs(1),
            selection: dmp_model::TableSelection::new(&[], &[]).expect("selection"),
            origin: None,
        })
        .unwrap()
        .unwrap();
    changes.begin_snapshot(&schemas, true).await.unwrap();
    let start = changes.current_position(&schemas).await.unwrap();
    println!("start: {start:?}");

    // 1: inserts of every type.
    conn.query_drop(
        "BEGIN; INSERT INTO types VALUES
          (1, 1, 200, -300, 16000000, 4000000000, 18446744073709551615, 12.50,
           1.5, -2.25, b'101000000011', b'1', 'ab', 'héllo', 'café', 'long text', x'00ff10',
           x'41', x'0001', '{\"a\": [1, 2.5, \"x\"], \"b\": null}', 'large', 'a,c',
           '2024-02-29', '2024-05-06 07:08:09.123456', '2024-05-06 07:08:09.5', '01:02:03.250',
           2024, '6ccd780c-baba-1026-9564-5b8c656024db', '10.0.0.1', '::ffff:1.2.3.4',
           POINT(1.5, -2), ST_GeomFromText('MULTIPOINT(1 1,2 2)')),
          (2, 0, 0, 0, 0, 0, 0, 0, 0, 0, b'0', b'0', '', '', '', '', '', x'00', '', '[]',
           'small', '', '0000-00-00', '0000-00-00 00:00:00', '1970-01-01 00:00:01', '00:00:00',
           0, 'ffffffff-ffff-4fff-bfff-ffffffffffff', '0.0.0.0', '2001:db8::1',
           POINT(0, 0), ST_GeomFromText('POLYGON((0 0,1 0,1 1,0 0))')),
          (3, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
           NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
           NULL, NULL, NULL, NULL);
         COMMIT",
    )
    .await
    .unwrap();
    // 2: updates (one moves a key), a delete.
    conn.query_drop(
        "BEGIN; UPDATE types SET vc = 'changed', s = 'b' WHERE id = 1;
         UPDATE items SET id = 10, name = 'ten' WHERE id = 1;
         DELETE FROM items WHERE id = 2; COMMIT",
    )
    .await
    .unwrap();
    // 3: another table only (not handed on).
    conn.query_drop("INSERT INTO other VALUES (1)")
        .await
        .unwrap();
    // 4: truncate, then a row.
    conn.query_drop("TRUNCATE TABLE items").await.unwrap();
    conn.query_drop("INSERT INTO items VALUES (5, 'five')")
        .await
        .unwrap();

    let mut feed = changes.open(schemas.clone(), start.clone()).await.unwrap();
    let events = collect(&mut feed, 4).await;
    for e in &events {
        println!("{e:?}");
    }
    // Begin positions and commits alternate; no event for `other`.
    let commits: Vec<Position> = events
        .iter()
        .filter_map(|e| match e {
            StreamEvent::Commit { position, .. } => Some(position.clone()),
            _ => None,
        })
        .collect();
    let begins: Vec<String> = events
        .iter()
        .filter_map(|e| match e {
            StreamEvent::Begin { log } => Some(log.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(begins.len(), 4);
    assert!(
        events
            .iter()
            .all(|e| !matches!(e, StreamEvent::Reject { .. })),
        "rejects"
    );

    // The stream's rows equal the snapshot reader's, value for value.
    let mut streamed = BTreeMap::new();
    replay(&events, 2, &mut streamed);
    let read = snapshot(&source, &schemas[2]).await;
    assert_eq!(streamed.len(), 3);
    for (k, row) in &read {
        assert_eq!(streamed.get(k), Some(row), "types row {k}");
    }
    let mut items = BTreeMap::new();
    replay(&events, 0, &mut items);
    assert_eq!(items, snapshot(&source, &schemas[0]).await);

    // A transaction of another table is not handed on, but once idle a
    // heartbeat says where the binlog went.
    conn.query_drop("INSERT INTO other VALUES (2)")
        .await
        .unwrap();
    let now = changes.current_position(&schemas).await.unwrap();
    let next = tokio::time::timeout(Duration::from_secs(5), feed.events.recv())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    println!("idle: {next:?}");
    match next {
        StreamEvent::Heartbeat { position } => {
            // Other sessions of the dev server may have written since.
            let (Position::Log { log: h, .. }, Position::Log { log: n, .. }) = (&position, &now)
            else {
                panic!("not log positions")
            };
            let pos = |t: &str| LogPosition::parse(t).unwrap().pos;
            assert!(pos(h) >= pos(n), "{h} before {n}");
        }
        other => panic!("expected a heartbeat, got {other:?}"),
    }
    drop(feed);

    // Restarting at the first commit sends the second transaction first.
    let mut feed = changes
        .open(schemas.clone(), commits[0].clone())
        .await
        .unwrap();
    let again = collect(&mut feed, 1).await;
    let Position::Log {
        log: first_commit, ..
    } = &commits[0]
    else {
        panic!("not a log position")
    };
    // Nothing between the two transactions: the second starts exactly
    // where the first ended (what the engine matches a resumed skip on).
    assert_eq!(&begins[1], first_commit);
    let at = |log: &String| {
        events
            .iter()
            .position(|e| matches!(e, StreamEvent::Begin { log: l } if l == log))
            .unwrap()
    };
    let expected = &events[at(&begins[1])..at(&begins[2])];
    // A feed's first word on each table is its shape: the restarted feed
    // says it where it first meets the table, the first one said it earlier.
    let changes_only = |events: &[StreamEvent]| {
        events
            .iter()
            .filter(|e| !matches!(e, StreamEvent::Schema { .. }))
            .map(|e| format!("{e:?}"))
            .collect::<Vec<_>>()
    };
    assert_eq!(changes_only(&again), changes_only(expected));
    drop(feed);

    // A position whose file is gone resumes from its GTID state.
    let Position::Log { log, .. } = &commits[1] else {
        panic!()
    };
    let gone = log.replacen("file=binlog.", "file=binlog.9", 1);
    println!("by gtid from: {gone}");
    let mut feed = changes
        .open(schemas.clone(), Position::Log { log: gone, skip: 0 })
        .await
        .unwrap();
    let by_gtid = collect(&mut feed, 1).await;
    println!("by gtid: {by_gtid:?}");
    assert!(matches!(&by_gtid[0], StreamEvent::Begin { log } if *log == begins[2]));
    drop(feed);

    // A schema change of a streamed table stops the stream.
    let mut feed = changes
        .open(schemas.clone(), commits[3].clone())
        .await
        .unwrap();
    // Into a new binlog file, with an update that logs too little.
    conn.query_drop("FLUSH BINARY LOGS").await.unwrap();
    conn.query_drop(
        "SET SESSION binlog_row_image = 'MINIMAL'; BEGIN; \
         UPDATE items SET name = 'FIVE' WHERE id = 5; DELETE FROM items WHERE id = 5; COMMIT; \
         SET SESSION binlog_row_image = 'FULL'",
    )
    .await
    .unwrap();
    let minimal: Vec<StreamEvent> = collect(&mut feed, 1)
        .await
        .into_iter()
        .filter(|e| !matches!(e, StreamEvent::Schema { .. }))
        .collect();
    println!("minimal: {minimal:?}");
    let file = |p: &Position| match p {
        Position::Log { log, .. } => LogPosition::parse(log).unwrap().file,
        other => panic!("{other:?}"),
    };
    let StreamEvent::Begin { log } = &minimal[0] else {
        panic!("no begin")
    };
    assert_ne!(LogPosition::parse(log).unwrap().file, file(&commits[3]));
    assert!(
        matches!(&minimal[1], StreamEvent::Reject { reject, .. } if reject.error.contains("binlog_row_image"))
    );
    assert!(matches!(
        &minimal[2],
        StreamEvent::Change { change: Change::Delete(Row(values)), .. } if values[0] == Value::Int(5)
    ));
    // A schema change of a streamed table is handed on, in stream order,
    // with its statement (the engine's policy decides what it does).
    conn.query_drop("ALTER TABLE later ADD COLUMN extra int")
        .await
        .unwrap();
    let change = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match feed.events.recv().await {
                Some(Ok(StreamEvent::Schema { change, .. })) if change.schema.name == "later" => {
                    return change;
                }
                Some(Ok(e)) => println!("before the change: {e:?}"),
                Some(Err(e)) => panic!("the stream stopped: {e}"),
                None => panic!("ended without the change"),
            }
        }
    })
    .await
    .expect("the schema change in time");
    println!("change: {change:?}");
    assert!(change.schema.columns.iter().any(|c| c.name == "extra"));
    assert!(
        change
            .statement
            .as_deref()
            .is_some_and(|s| s.contains("ALTER TABLE later"))
    );
    let lag = changes.lag().await.unwrap();
    println!("lag: {lag:?}");
}

#[tokio::test]
async fn binlog_stream_throughput() {
    let base = dmp_test_servers::mariadb().url();
    let db = "mycdc_bulk";
    let mut conn = admin(&base).await;
    conn.query_drop(format!("DROP DATABASE IF EXISTS {db}"))
        .await
        .unwrap();
    conn.query_drop(format!("CREATE DATABASE {db}"))
        .await
        .unwrap();
    conn.query_drop(format!("USE {db}")).await.unwrap();
    conn.query_drop(
        "CREATE TABLE bulk (id int PRIMARY KEY, n int, s varchar(50), ts datetime(6), \
         d decimal(12,2))",
    )
    .await
    .unwrap();
    let url = format!("{}/{db}", base.trim_end_matches('/'));
    let endpoint = Endpoint::new(&url, Path::new("/tmp"), "test");
    let source = open_source(&endpoint, SourceOptions::readers(1)).unwrap();
    let all = TableSelection::new(&["*".to_string()], &[]).unwrap();
    let schemas: Vec<Arc<TableSchema>> = source
        .discover(&all)
        .await
        .unwrap()
        .into_iter()
        .map(Arc::new)
        .collect();
    let changes = source
        .changes(&ChangeOptions {
            pipeline: "mycdc_bulk".into(),
            slot: None,
            publication: None,
            server_id: None,
            heartbeat: Duration::from_secs(1),
            selection: dmp_model::TableSelection::new(&[], &[]).expect("selection"),
            origin: None,
        })
        .unwrap()
        .unwrap();
    let start = changes.current_position(&schemas).await.unwrap();
    let rows = 100_000;
    conn.query_drop(format!(
        "INSERT INTO bulk SELECT seq, seq * 2, concat('row ', seq), now(6), seq / 7 \
         FROM seq_1_to_{rows}"
    ))
    .await
    .unwrap();
    conn.query_drop("UPDATE bulk SET n = n + 1").await.unwrap();
    let began = std::time::Instant::now();
    let mut feed = changes.open(schemas, start).await.unwrap();
    let events = collect(&mut feed, 2).await;
    let elapsed = began.elapsed();
    let changes = events
        .iter()
        .filter(|e| matches!(e, StreamEvent::Change { .. }))
        .count();
    assert_eq!(changes, 2 * rows);
    println!(
        "{changes} changes in {elapsed:?}: {:.0} changes/s",
        changes as f64 / elapsed.as_secs_f64()
    );
}
