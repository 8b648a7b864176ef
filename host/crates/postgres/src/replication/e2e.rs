//! The whole change source against real servers started by
//! `dmp-test-servers`: the stream check runs over TLS (verify-full, a SCRAM
//! user), and so do the replication sessions of `connects_as_configured`.
//! The integration suite covers pipelines end to end; this one looks at
//! the events themselves (`--nocapture` shows them).

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use sqlx::{Connection, Executor, PgConnection};

use dmp_contract::Endpoint;
use dmp_contract::{ChangeFeed, ChangeOptions, ChangeSource, Source, SourceOptions, StreamEvent};
use dmp_model::{Change, Chunk, Position, Row, TableSchema, TableSelection, Value};

/// The source as the registry opens it (this crate cannot see the registry).
fn open_source(
    endpoint: &Endpoint,
    options: SourceOptions,
) -> dmp_contract::Result<Arc<dyn dmp_contract::Source>> {
    let limits = options.limits;
    Ok(Arc::new(crate::PostgresSource::open(
        endpoint, options, limits,
    )?))
}

/// The TLS server's maintenance database as the SCRAM user, verify-full.
fn tls_url() -> String {
    let server = dmp_test_servers::tls_postgres();
    let ca = server.tls().expect("a TLS server").ca();
    format!(
        "postgres://{}:{}@localhost:{}/postgres?sslmode=verify-full&sslrootcert={}",
        dmp_test_servers::PASSWORD_USER,
        dmp_test_servers::PASSWORD,
        server.port(),
        ca.display()
    )
}

fn db_url(base: &str, db: &str) -> String {
    let (base, query) = base.split_once('?').unwrap_or((base, ""));
    let (server, _) = base.rsplit_once('/').unwrap();
    if query.is_empty() {
        format!("{server}/{db}")
    } else {
        format!("{server}/{db}?{query}")
    }
}

async fn sql(conn: &mut PgConnection, text: &str) {
    conn.execute(sqlx::AssertSqlSafe(text.to_string()))
        .await
        .unwrap_or_else(|e| panic!("{text}: {e}"));
}

/// A new database `db` with the tables the checks stream.
async fn setup(base: &str, db: &str) -> PgConnection {
    let mut admin = PgConnection::connect(base).await.unwrap();
    // A slot of the database keeps it from being dropped.
    sql(
        &mut admin,
        &format!(
            "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE database = '{db}'"
        ),
    )
    .await;
    sql(
        &mut admin,
        &format!("DROP DATABASE IF EXISTS {db} WITH (FORCE)"),
    )
    .await;
    sql(&mut admin, &format!("CREATE DATABASE {db}")).await;
    let mut conn = PgConnection::connect(&db_url(base, db)).await.unwrap();
    sql(
        &mut conn,
        "CREATE TYPE mood AS ENUM ('sad', 'ok', 'happy');
         CREATE TABLE kinds (
           id int PRIMARY KEY, b bool, i2 int2, i8 int8, f4 real, f8 float8,
           n numeric(12,3), nn numeric, t text, vc varchar(10), bp char(4), by bytea,
           j json, jb jsonb, d date, tm time, ts timestamp, tz timestamptz, u uuid,
           m mood, iv interval, ip inet, arr int[], tarr text[], tzarr timestamptz[],
           narr numeric[], big text);
         ALTER TABLE kinds ALTER COLUMN big SET STORAGE EXTERNAL;
         CREATE TABLE plain (id bigint PRIMARY KEY, v text, n numeric, ts timestamptz, big text);
         ALTER TABLE plain ALTER COLUMN big SET STORAGE EXTERNAL;
         CREATE TABLE fullid (id int PRIMARY KEY, v text);
         ALTER TABLE fullid REPLICA IDENTITY FULL;
         CREATE TABLE nothing (id int PRIMARY KEY, v text);
         ALTER TABLE nothing REPLICA IDENTITY NOTHING;
         INSERT INTO kinds (id, t, big) VALUES (1, 'one', repeat('x', 100000)), (2, 'two', NULL), (3, 'three', NULL);
         INSERT INTO plain VALUES (1, 'p1', 1.5, '2020-01-01 00:00:00+00', repeat('y', 100000));
         INSERT INTO fullid VALUES (1, 'f1');",
    )
    .await;
    conn
}

const ROW_10: &str = "INSERT INTO kinds VALUES (10, true, -32768, 9223372036854775807, 0.1, 1e300,
  -123456789.125, 0.000000000000000000001, 'tab\there \"q\" ''s''', 'varchar', 'ab',
  '\\x00ff', '{\"a\": [1, 2.50]}', '{\"b\": {\"c\": null}}', '0044-03-15 BC', '23:59:59.999999',
  '2024-02-29 12:34:56.789', '1999-12-31 23:59:59.5-03:30', 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11',
  'happy', '1 year 2 mons 3 days 04:05:06', '10.0.0.1',
  '{{1,2},{3,NULL}}', '{\"a b\",NULL,\"NULL\",\"q\\\"\",\"\",é}',
  '{\"2020-01-01 10:00:00+00\",infinity,\"0044-03-15 10:00:00.5+00 BC\"}', '{NaN,1.50,-0.001}', 'small')";

fn options(pipeline: &str, heartbeat: Duration) -> ChangeOptions {
    ChangeOptions {
        pipeline: pipeline.into(),
        slot: None,
        publication: None,
        server_id: None,
        heartbeat,
        selection: dmp_model::TableSelection::new(&[], &[]).expect("selection"),
        origin: None,
    }
}

async fn read_table(source: &dyn Source, table: &Arc<TableSchema>) -> HashMap<i64, Row> {
    let mut stream = source.read_chunk(table.clone(), Chunk::whole(0), Position::Start, 1000);
    let mut rows = HashMap::new();
    while let Some(batch) = stream.recv().await {
        let batch = batch.unwrap();
        for change in batch.changes {
            let row = change.row().clone();
            let Value::Int(id) = row.0[0] else { panic!() };
            rows.insert(id, row);
        }
        if batch.last {
            break;
        }
    }
    rows
}

/// Events until `commits` transactions committed.
async fn collect(feed: &mut ChangeFeed, commits: usize) -> Vec<StreamEvent> {
    let mut events = Vec::new();
    let mut seen = 0;
    while seen < commits {
        let event = tokio::time::timeout(Duration::from_secs(20), feed.events.recv())
            .await
            .expect("an event within 20 s")
            .expect("the stream is open")
            .expect("no stream error");
        if matches!(event, StreamEvent::Commit { .. }) {
            seen += 1;
        }
        events.push(event);
    }
    events
}

fn show(schemas: &[Arc<TableSchema>], events: &[StreamEvent]) {
    for e in events {
        match e {
            StreamEvent::Change { table, change } => {
                let short = |r: &Row| {
                    r.0.iter()
                        .map(|v| {
                            let t = v.to_text();
                            if t.len() > 40 {
                                format!("<{} chars>", t.len())
                            } else {
                                t
                            }
                        })
                        .collect::<Vec<_>>()
                        .join("|")
                };
                match change {
                    Change::Update { before, after } => println!(
                        "  {} update before={:?} after={}",
                        schemas[*table].name,
                        before.as_ref().map(short),
                        short(after)
                    ),
                    other => println!(
                        "  {} {} {}",
                        schemas[*table].name,
                        other.op(),
                        short(other.row())
                    ),
                }
            }
            other => println!("{other:?}"),
        }
    }
}

fn commits(events: &[StreamEvent]) -> Vec<Position> {
    events
        .iter()
        .filter_map(|e| match e {
            StreamEvent::Commit { position, .. } => Some(position.clone()),
            _ => None,
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stream_against_a_real_server() {
    let base = tls_url();
    let _ = tracing_subscriber::fmt()
        .with_env_filter("dmp=info")
        .with_test_writer()
        .try_init();
    let mut conn = setup(&base, "pgcdc_e2e").await;
    let endpoint = Endpoint::new(
        &db_url(&base, "pgcdc_e2e"),
        Path::new("."),
        "e2e source.url",
    );
    let source = open_source(&endpoint, SourceOptions::readers(2)).unwrap();
    let selection = TableSelection::new(&["*".to_string()], &[]).unwrap();
    let schemas: Vec<Arc<TableSchema>> = source
        .discover(&selection)
        .await
        .unwrap()
        .into_iter()
        .map(Arc::new)
        .collect();
    let index = |name: &str| schemas.iter().position(|s| s.name == name).unwrap();
    let changes: Arc<dyn ChangeSource> = source
        .changes(&options("PgCdc e2e", Duration::from_secs(1)))
        .unwrap()
        .unwrap();

    // A fresh full+cdc start: the slot's snapshot is what the copy reads.
    let start = changes.begin_snapshot(&schemas, true).await.unwrap();
    println!("snapshot start: {start:?}");
    let from = start.position.clone().unwrap();
    source
        .use_snapshot(start.snapshot.clone().unwrap())
        .unwrap();
    // Txn A, after the slot's consistent point.
    sql(&mut conn, ROW_10).await;
    let copied = read_table(&*source, &schemas[index("kinds")]).await;
    assert_eq!(
        copied
            .keys()
            .copied()
            .collect::<std::collections::BTreeSet<_>>(),
        [1, 2, 3].into(),
        "the copy reads the slot's snapshot, not row 10"
    );
    println!("snapshot position: {:?}", source.snapshot_position());

    // Txn B: update, key change, delete; C: an update leaving the TOASTed
    // value out; D: truncate + insert; E: FULL identity; F: NOTHING
    // identity refused by the server itself; G: special values.
    sql(
        &mut conn,
        "BEGIN; UPDATE kinds SET t = 'uno' WHERE id = 1; UPDATE kinds SET id = 20 WHERE id = 2;
         DELETE FROM kinds WHERE id = 3; COMMIT;",
    )
    .await;
    sql(&mut conn, "UPDATE kinds SET t = 'one again' WHERE id = 1").await;
    sql(
        &mut conn,
        "BEGIN; TRUNCATE plain; INSERT INTO plain VALUES (2, 'p2', 'NaN', 'infinity', NULL),
         (3, 'p3', 2.25, '2021-06-01 12:00:00.123456+02', repeat('z', 50000)); COMMIT;",
    )
    .await;
    sql(
        &mut conn,
        "UPDATE fullid SET v = 'f1b' WHERE id = 1; INSERT INTO nothing VALUES (1, 'n')",
    )
    .await;
    let refused = conn.execute("UPDATE nothing SET v = 'm'").await;
    println!("UPDATE of a REPLICA IDENTITY NOTHING table: {refused:?}");
    assert!(refused.is_err(), "the server refuses it while published");
    sql(&mut conn, "UPDATE plain SET v = 'p3b' WHERE id = 3").await;

    let mut feed = changes.open(schemas.clone(), from.clone()).await.unwrap();
    let events = collect(&mut feed, 6).await;
    show(&schemas, &events);
    let Position::Log { log: from_log, .. } = &from else {
        panic!()
    };
    assert!(
        matches!(&events[0], StreamEvent::Begin { log } if log == from_log),
        "the first transaction streams again from the start position"
    );
    // Row 10 as streamed equals row 10 as the snapshot reader reads it.
    let streamed_10 = events.iter().find_map(|e| match e {
        StreamEvent::Change {
            table,
            change: Change::Insert(row),
        } if *table == index("kinds") => Some(row.clone()),
        _ => None,
    });
    let fresh = open_source(&endpoint, SourceOptions::readers(1)).unwrap();
    let now = read_table(&*fresh, &schemas[index("kinds")]).await;
    assert_eq!(
        streamed_10.as_ref(),
        now.get(&10),
        "text-mode values equal the snapshot's"
    );
    // The TOASTed value left out by txn C is filled in.
    let toast = events.iter().find_map(|e| match e {
        StreamEvent::Change {
            change: Change::Update { after, .. },
            ..
        } if after.0[8] == Value::Text("one again".into()) => Some(after.clone()),
        _ => None,
    });
    assert_eq!(
        toast.as_ref().map(|r| &r.0[26]),
        Some(&Value::Text("x".repeat(100_000)))
    );
    // The key change carries the old key.
    assert!(events.iter().any(|e| matches!(e,
        StreamEvent::Change { change: Change::Update { before: Some(b), after }, .. }
        if b.0[0] == Value::Int(2) && after.0[0] == Value::Int(20))));
    assert!(
        events.iter().any(
            |e| matches!(e, StreamEvent::Truncate { tables } if tables == &vec![index("plain")])
        )
    );
    // FULL identity: the whole old row.
    assert!(events.iter().any(|e| matches!(e,
        StreamEvent::Change { change: Change::Update { before: Some(b), .. }, .. }
        if b.0 == vec![Value::Int(1), Value::Text("f1".into())])));
    let stamps: Vec<_> = commits(&events);
    assert_eq!(stamps.len(), 6);

    // Confirming a position makes the slot keep only what follows.
    let confirm = stamps[1].clone();
    feed.confirmed.send(Some(confirm.clone())).unwrap();
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let (flushed,): (String,) = sqlx::query_as(
        "SELECT confirmed_flush_lsn::text FROM pg_replication_slots WHERE slot_name = 'dmp_pgcdc_e2e'",
    )
    .fetch_one(&mut conn)
    .await
    .unwrap();
    let Position::Log { log, .. } = &confirm else {
        panic!()
    };
    assert_eq!(
        format!("lsn={flushed}"),
        *log,
        "the slot confirms what the engine confirmed"
    );

    // Heartbeat: idle, while WAL moves elsewhere (another schema: the
    // publication of a superuser's stream covers the whole of this one,
    // so a new table here would be streamed).
    sql(
        &mut conn,
        "CREATE SCHEMA elsewhere; CREATE TABLE elsewhere.other (x int); INSERT INTO elsewhere.other VALUES (1)",
    )
    .await;
    let beat = tokio::time::timeout(Duration::from_secs(15), feed.events.recv())
        .await
        .expect("a heartbeat")
        .unwrap()
        .unwrap();
    println!("idle: {beat:?}");
    assert!(matches!(beat, StreamEvent::Heartbeat { .. }));
    let lag = changes.lag().await.unwrap();
    println!("lag: {lag:?}");
    assert!(lag.retained_bytes.is_some());
    drop(feed);

    // Restart from txn B's commit: nothing before it comes again.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut again = changes
        .open(schemas.clone(), confirm.clone())
        .await
        .unwrap();
    let replay = collect(&mut again, 4).await;
    println!("after a restart at {confirm:?}:");
    show(&schemas, &replay);
    assert!(matches!(&replay[0], StreamEvent::Begin { log: l } if l == log));
    assert_eq!(commits(&replay), stamps[2..].to_vec());
    drop(again);

    // Binary mode: only columns with binary decoders.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let plain = vec![schemas[index("plain")].clone()];
    // The same slot, for a pipeline that selects only `plain` (else the
    // other tables of the publication arrive as tables to stream too).
    let plain_changes = source
        .changes(&ChangeOptions {
            selection: TableSelection::new(&["plain".to_string()], &[]).expect("selection"),
            origin: None,
            ..options("PgCdc e2e", Duration::from_secs(1))
        })
        .expect("changes")
        .expect("a change source");
    let mut binary = plain_changes
        .open(plain.clone(), confirm.clone())
        .await
        .expect("feed");
    let events = collect(&mut binary, 2).await;
    show(&plain, &events);
    let plain_now = read_table(&*fresh, &plain[0]).await;
    let streamed: HashMap<i64, Row> = events
        .iter()
        .filter_map(|e| match e {
            StreamEvent::Change { change, .. } => {
                let row = change.row().clone();
                let Value::Int(id) = row.0[0] else { panic!() };
                Some((id, row))
            }
            _ => None,
        })
        .collect();
    assert_eq!(
        streamed.get(&3),
        plain_now.get(&3),
        "binary values, TOAST filled"
    );
    assert!(
        events
            .iter()
            .any(|e| matches!(e, StreamEvent::Reject { .. })),
        "numeric NaN is refused as by the snapshot"
    );
    drop(binary);

    // A later run: the slot's confirmed point, no snapshot.
    let resumed = changes.begin_snapshot(&schemas, false).await.unwrap();
    println!("resumed start: {resumed:?}");
    assert_eq!(resumed.position.as_ref(), Some(&confirm));
    assert!(resumed.snapshot.is_none());
    assert_eq!(changes.current_position(&schemas).await.unwrap(), confirm);
    // A cdc run after a full run streams from the slot when it holds the
    // WAL since that run's snapshot.
    assert_eq!(
        changes
            .position_from_snapshot("lsn=FF/0 snapshot=x")
            .await
            .unwrap(),
        Some(confirm.clone())
    );
    assert_eq!(
        changes
            .position_from_snapshot("lsn=0/1 snapshot=x")
            .await
            .unwrap(),
        None
    );
    assert_eq!(
        changes.position_from_snapshot("snapshot=x").await.unwrap(),
        None
    );

    tokio::time::sleep(Duration::from_millis(300)).await;
    changes.drop_stream().await.unwrap();
    let (slots, pubs): (i64, i64) = sqlx::query_as(
        "SELECT (SELECT count(*) FROM pg_replication_slots WHERE slot_name = 'dmp_pgcdc_e2e'),
                (SELECT count(*) FROM pg_publication)",
    )
    .fetch_one(&mut conn)
    .await
    .unwrap();
    assert_eq!((slots, pubs), (0, 0));
    changes.drop_stream().await.unwrap();
    assert_eq!(
        changes.position_from_snapshot("lsn=FF/0").await.unwrap(),
        None,
        "no slot, no stream"
    );
}

/// The reader decodes a backlog (no target) in binary and in text mode,
/// and says how fast: `cargo test -p dmp --lib replication::e2e::backlog
/// -- --nocapture`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backlog_throughput() {
    let base = dmp_test_servers::postgres().url();
    // An array column has no binary decoder: that table streams in text.
    for (label, array) in [("binary", ""), ("text", ", arr int[] DEFAULT '{1,2}'")] {
        let db = format!("pgcdc_e2e_backlog_{label}");
        let mut conn = setup(&base, &db).await;
        sql(
            &mut conn,
            &format!(
                "CREATE TABLE bench (id int PRIMARY KEY, v int, t text, ts timestamptz, n numeric{array});
                 INSERT INTO bench SELECT g, 0, 'row ' || g, now(), g * 1.25 FROM generate_series(1, 20000) g;"
            ),
        )
        .await;
        let endpoint = Endpoint::new(&db_url(&base, &db), Path::new("."), "e2e source.url");
        let source = open_source(&endpoint, SourceOptions::readers(1)).expect("source");
        let selection = TableSelection::new(&["bench".to_string()], &[]).expect("selection");
        let table = Arc::new(
            source
                .discover(&selection)
                .await
                .expect("discover")
                .remove(0),
        );
        let changes = source
            .changes(&options(
                &format!("PgCdc e2e backlog {label}"),
                Duration::from_secs(10),
            ))
            .expect("changes")
            .expect("a change source");
        let from = changes
            .current_position(std::slice::from_ref(&table))
            .await
            .expect("position");
        for _ in 0..5 {
            sql(&mut conn, "UPDATE bench SET v = v + 1, ts = now()").await;
        }
        let mut feed = changes.open(vec![table], from).await.expect("feed");
        let started = std::time::Instant::now();
        let mut count = 0;
        while count < 100_000 {
            match feed.events.recv().await.expect("open").expect("event") {
                StreamEvent::Change { .. } => count += 1,
                StreamEvent::Reject { reject, .. } => panic!("{reject:?}"),
                _ => {}
            }
        }
        let secs = started.elapsed().as_secs_f64();
        println!(
            "{label}: {count} changes in {secs:.2}s: {:.0}/s",
            f64::from(count) / secs
        );
        drop(feed);
        tokio::time::sleep(Duration::from_millis(300)).await;
        changes.drop_stream().await.expect("drop the slot");
    }
}

/// Replication sessions (the hand-written client, not sqlx) in each TLS
/// mode and login method of the TLS server: what must connect does, what
/// must be refused is, and says why.
#[tokio::test]
async fn connects_as_configured() {
    let server = dmp_test_servers::tls_postgres();
    let tls = server.tls().expect("a TLS server");
    let port = server.port();
    let (ca, other) = (
        tls.ca().display().to_string(),
        tls.other_ca().display().to_string(),
    );
    let (cert, key) = (
        tls.client_cert().display().to_string(),
        tls.client_key().display().to_string(),
    );
    let (user, password) = (dmp_test_servers::PASSWORD_USER, dmp_test_servers::PASSWORD);
    let cert_user = dmp_test_servers::CERT_USER;
    let cases: Vec<(String, Option<&str>)> = vec![
        (
            format!(
                "postgres://{user}:{password}@localhost:{port}/postgres?sslmode=verify-full&sslrootcert={ca}"
            ),
            None,
        ),
        (
            format!(
                "postgres://{user}:{password}@127.0.0.1:{port}/postgres?sslmode=verify-ca&sslrootcert={ca}"
            ),
            None,
        ),
        (
            format!("postgres://{user}:{password}@127.0.0.1:{port}/postgres?sslmode=require"),
            None,
        ),
        (
            format!(
                "postgres://{cert_user}@localhost:{port}/postgres?sslmode=verify-full&sslrootcert={ca}&sslcert={cert}&sslkey={key}"
            ),
            None,
        ),
        (
            format!(
                "postgres://{user}:{password}@localhost:{port}/postgres?sslmode=verify-full&sslrootcert={other}"
            ),
            Some("UnknownIssuer"),
        ),
        (
            format!(
                "postgres://{user}:{password}@127.0.0.1:{port}/postgres?sslmode=verify-full&sslrootcert={ca}"
            ),
            Some("not valid for name"),
        ),
        (
            format!(
                "postgres://{cert_user}@localhost:{port}/postgres?sslmode=verify-full&sslrootcert={ca}"
            ),
            Some("certificate"),
        ),
        (
            format!(
                "postgres://{user}:wrong@localhost:{port}/postgres?sslmode=verify-full&sslrootcert={ca}"
            ),
            Some("password authentication failed"),
        ),
    ];
    for (url, refused) in cases {
        let endpoint = Endpoint::new(&url, Path::new("."), "url");
        let config = super::super::config::PgConfig::parse(&endpoint).expect("parses");
        let outcome = match super::protocol::Connection::connect(&config.url).await {
            Ok(mut conn) => {
                let rows = conn.simple_query("IDENTIFY_SYSTEM").await;
                conn.terminate().await;
                rows.map(|_| ()).map_err(|e| e.to_string())
            }
            Err(e) => Err(e.to_string()),
        };
        match (refused, outcome) {
            (None, Ok(())) => {}
            (Some(why), Err(e)) => assert!(e.contains(why), "{url}: expected `{why}` in `{e}`"),
            (None, Err(e)) => panic!("{url} was refused: {e}"),
            (Some(why), Ok(())) => panic!("{url} connected; expected a refusal ({why})"),
        }
    }
}
