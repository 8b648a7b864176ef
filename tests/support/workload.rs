//! A write workload for change data capture tests: several client sessions
//! run transactions of inserts, updates (some changing the primary key) and
//! deletes on two tables, with pauses, while `dmp` streams. Each session
//! owns a residue class of account ids, so sessions never wait on each
//! other's locks; every update bumps `n`, so a change applied twice or lost
//! shows in the target.

use std::thread::JoinHandle;

use dmp_test_servers::TestDb;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Dialect {
    Postgres,
    Mariadb,
}

/// Sessions of a workload.
pub const SESSIONS: u64 = 3;
/// Accounts created before the workload: ids 1..=INITIAL.
pub const INITIAL: u64 = 2000;

/// Creates `accounts` and `events` with `INITIAL` accounts.
pub fn create_tables(db: &TestDb, dialect: Dialect) {
    match dialect {
        Dialect::Postgres => db.exec(&format!(
            "CREATE TABLE accounts (id bigint PRIMARY KEY, owner text NOT NULL, balance numeric(12,2) NOT NULL,
                 n integer NOT NULL DEFAULT 0, updated_at timestamptz NOT NULL, note text);
             CREATE TABLE events (id bigserial PRIMARY KEY, account bigint NOT NULL, kind text NOT NULL,
                 amount numeric(12,2));
             CREATE INDEX events_account ON events (account);
             INSERT INTO accounts SELECT g, 'owner ' || g, g * 0.5, 0, '2026-01-01 00:00:00+00'::timestamptz + g * interval '1 second',
                 CASE WHEN g % 5 = 0 THEN NULL ELSE 'note ' || g END FROM generate_series(1, {INITIAL}) g;
             INSERT INTO events (account, kind, amount) SELECT g, 'open', g FROM generate_series(1, {INITIAL}) g;"
        )),
        Dialect::Mariadb => db.exec(&format!(
            "CREATE TABLE accounts (id bigint PRIMARY KEY, owner varchar(100) NOT NULL, balance decimal(12,2) NOT NULL,
                 n int NOT NULL DEFAULT 0, updated_at datetime(6) NOT NULL, note text);
             CREATE TABLE events (id bigint AUTO_INCREMENT PRIMARY KEY, account bigint NOT NULL, kind varchar(20) NOT NULL,
                 amount decimal(12,2), KEY events_account (account));
             INSERT INTO accounts SELECT seq, CONCAT('owner ', seq), seq * 0.5, 0, TIMESTAMP'2026-01-01 00:00:00' + INTERVAL seq SECOND,
                 IF(seq % 5 = 0, NULL, CONCAT('note ', seq)) FROM seq_1_to_{INITIAL};
             INSERT INTO events (account, kind, amount) SELECT seq, 'open', seq FROM seq_1_to_{INITIAL};"
        )),
    }
}

/// A small deterministic generator (tests print their seed).
pub struct Lcg(u64);

impl Lcg {
    pub fn new(seed: u64) -> Self {
        Lcg(seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1))
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (self.0 >> 33) % n.max(1)
    }
}

/// The SQL of one session: `transactions` transactions of 1 to 4
/// operations each, a short pause after each. Later `phase`s of a test
/// create and move rows to ids of their own (ids an earlier phase deleted
/// or moved are just not found by its updates).
pub fn session_script(
    dialect: Dialect,
    session: u64,
    transactions: u64,
    seed: u64,
    phase: u64,
) -> String {
    let mut rng = Lcg::new(seed ^ (session + 1).wrapping_mul(0x9E37_79B9));
    let mut live: Vec<u64> = (1..=INITIAL)
        .filter(|id| id % SESSIONS == session)
        .collect();
    let mut next_new = 0u64;
    let (now, pause) = match dialect {
        Dialect::Postgres => ("clock_timestamp()", "SELECT pg_sleep(0.01);"),
        Dialect::Mariadb => ("NOW(6)", "DO SLEEP(0.01);"),
    };
    // Sessions touch disjoint rows; READ COMMITTED keeps InnoDB from
    // locking the gaps between them (which would deadlock the sessions).
    let mut sql = match dialect {
        Dialect::Postgres => String::new(),
        Dialect::Mariadb => "SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED;\n".to_string(),
    };
    for t in 0..transactions {
        sql.push_str("BEGIN;\n");
        for _ in 0..=rng.below(4) {
            let pick = |rng: &mut Lcg, live: &Vec<u64>| live[rng.below(live.len() as u64) as usize];
            match rng.below(10) {
                0..=2 => {
                    next_new += 1;
                    let id = 10_000_000 * (phase + 1) + next_new * SESSIONS + session;
                    live.push(id);
                    sql.push_str(&format!(
                        "INSERT INTO accounts (id, owner, balance, n, updated_at, note) VALUES ({id}, 'new {session}-{t}', {}.{:02}, 0, {now}, {});\n",
                        rng.below(10_000),
                        rng.below(100),
                        if rng.below(3) == 0 { "NULL".to_string() } else { format!("'n{t}'") }
                    ));
                }
                3..=6 if !live.is_empty() => {
                    let id = pick(&mut rng, &live);
                    sql.push_str(&format!(
                        "UPDATE accounts SET balance = balance + 1.25, n = n + 1, updated_at = {now}, note = {} WHERE id = {id};\n",
                        if rng.below(4) == 0 { "NULL".to_string() } else { format!("'u{t}'") }
                    ));
                    sql.push_str(&format!(
                        "INSERT INTO events (account, kind, amount) VALUES ({id}, 'credit', 1.25);\n"
                    ));
                }
                7 if !live.is_empty() => {
                    // A primary key change, staying in this session's class.
                    let at = rng.below(live.len() as u64) as usize;
                    let id = live[at];
                    let moved = id + 100_000_000 * SESSIONS * (phase + 1);
                    live[at] = moved;
                    sql.push_str(&format!(
                        "UPDATE accounts SET id = {moved}, n = n + 1 WHERE id = {id};\n"
                    ));
                }
                8 if live.len() > 10 => {
                    let at = rng.below(live.len() as u64) as usize;
                    let id = live.swap_remove(at);
                    sql.push_str(&format!("DELETE FROM accounts WHERE id = {id};\n"));
                    sql.push_str(&format!("DELETE FROM events WHERE account = {id};\n"));
                }
                _ if !live.is_empty() => {
                    let id = pick(&mut rng, &live);
                    sql.push_str(&format!(
                        "UPDATE events SET amount = amount + 1 WHERE account = {id};\n"
                    ));
                }
                _ => {}
            }
        }
        sql.push_str("COMMIT;\n");
        sql.push_str(pause);
        sql.push('\n');
    }
    sql
}

/// Starts the sessions in the background; join the handles to wait for the
/// end (each panics with the server's message if a statement failed).
pub fn start(
    db: &TestDb,
    dialect: Dialect,
    transactions: u64,
    seed: u64,
    phase: u64,
) -> Vec<JoinHandle<()>> {
    (0..SESSIONS)
        .map(|session| {
            let script = session_script(dialect, session, transactions, seed, phase);
            let db = db.clone();
            std::thread::spawn(move || db.exec(&script))
        })
        .collect()
}

/// The two tables as text rendered alike by both servers.
pub fn snapshot(db: &TestDb, dialect: Dialect) -> Vec<Vec<Option<String>>> {
    // Both print UTC: PostgreSQL's session in UTC; MariaDB datetimes hold
    // UTC as dmp writes them (and as the workload's NOW(6) does on a
    // server in UTC).
    let (set, ts) = match dialect {
        Dialect::Postgres => (
            "SET TIME ZONE 'UTC';",
            "to_char(updated_at, 'YYYY-MM-DD HH24:MI:SS.US')",
        ),
        Dialect::Mariadb => (
            "SET time_zone = '+00:00';",
            "DATE_FORMAT(updated_at, '%Y-%m-%d %H:%i:%s.%f')",
        ),
    };
    let mut rows = db.query(&format!(
        "{set} SELECT 'a', id, owner, balance, n, {ts}, note FROM accounts ORDER BY id"
    ));
    rows.extend(
        db.query("SELECT 'e', id, account, kind, amount, NULL, NULL FROM events ORDER BY id"),
    );
    rows
}

/// Waits until the workload tables of `target` equal those of `source`,
/// or fails showing the first difference after `within`, or dmp's log
/// (`log`) if it ended.
pub fn wait_until_in_sync(
    child: &mut std::process::Child,
    source: &TestDb,
    from: Dialect,
    target: &TestDb,
    to: Dialect,
    within: std::time::Duration,
    log: impl Fn(&mut std::process::Child) -> String,
) {
    let deadline = std::time::Instant::now() + within;
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            panic!(
                "dmp ended while streaming ({status}); its log:\n{}",
                log(child)
            );
        }
        let want = snapshot(source, from);
        let got = target
            .try_query("SELECT 1 FROM accounts LIMIT 0")
            .map(|_| snapshot(target, to))
            .unwrap_or_default();
        if want == got {
            return;
        }
        if std::time::Instant::now() > deadline {
            crate::support::sql::assert_same_dump(
                &want,
                &got,
                &["table", "id", "c2", "c3", "n", "c5", "note"],
                "target after the stream",
            );
            panic!("the target did not catch up within {within:?}");
        }
        std::thread::sleep(std::time::Duration::from_millis(300));
    }
}
