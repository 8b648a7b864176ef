//! Migrates a 1M-row SQLite table to SQLite with dmp and, as the baseline,
//! with SQLite's own `INSERT INTO ... SELECT` across two attached files (no
//! conversion, no checkpoints: the ceiling for this copy). Then the same dmp
//! run with an identity WASM transform and with `mask_pii`. Prints rows/s,
//! the ratios, the transform cost per row, and peak RSS.
//!
//! `make bench` (builds the plugins first); rows: `DMP_BENCH_ROWS`, default
//! 1000000.

use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use dmp::config::Pipeline;
use dmp::connectors::REGISTRY;
use dmp::engine::{self, Progress, Shutdown};
use dmp::state::StateStore;
use rusqlite::{Connection, params};

fn create_source(path: &Path, rows: i64) -> anyhow::Result<()> {
    let mut conn = Connection::open(path)?;
    conn.execute_batch(
        "PRAGMA journal_mode = WAL;
         CREATE TABLE orders (id INTEGER PRIMARY KEY, customer_id BIGINT NOT NULL, amount DECIMAL(12,2) NOT NULL,
            status VARCHAR(16) NOT NULL, created_at TIMESTAMP NOT NULL, note TEXT);",
    )?;
    let txn = conn.transaction()?;
    {
        let mut insert = txn.prepare("INSERT INTO orders VALUES (?1, ?2, ?3, ?4, ?5, ?6)")?;
        for id in 1..=rows {
            let note = (id % 5 == 0).then(|| format!("note for order {id}"));
            insert.execute(params![
                id,
                id % 9973,
                format!("{}.{:02}", id % 5000, id % 100),
                ["new", "paid", "shipped", "cancelled"][usize::try_from(id % 4)?],
                format!(
                    "2024-{:02}-{:02} {:02}:{:02}:{:02}.{:06}",
                    1 + id % 12,
                    1 + id % 28,
                    id % 24,
                    id % 60,
                    id % 60,
                    id % 1_000_000
                ),
                note
            ])?;
        }
    }
    txn.commit()?;
    Ok(())
}

fn baseline(source: &Path, target: &Path) -> anyhow::Result<f64> {
    let conn = Connection::open(target)?;
    conn.execute_batch("PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL;")?;
    conn.execute("ATTACH DATABASE ?1 AS src", [source.to_string_lossy()])?;
    let start = Instant::now();
    conn.execute_batch(
        "BEGIN;
         CREATE TABLE orders (id INTEGER PRIMARY KEY, customer_id BIGINT NOT NULL, amount DECIMAL(12,2) NOT NULL,
            status VARCHAR(16) NOT NULL, created_at TIMESTAMP NOT NULL, note TEXT);
         INSERT INTO orders SELECT * FROM src.orders;
         COMMIT;",
    )?;
    Ok(start.elapsed().as_secs_f64())
}

fn peak_rss_mib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines().find(|l| l.starts_with("VmHWM:")).and_then(|l| {
                l.split_whitespace()
                    .nth(1)
                    .and_then(|v| v.parse::<u64>().ok())
            })
        })
        .map_or(0, |kib| kib / 1024)
}

fn main() -> anyhow::Result<()> {
    let rows: i64 = std::env::var("DMP_BENCH_ROWS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let dir = tempfile::tempdir()?;
    let source = dir.path().join("source.db");
    create_source(&source, rows)?;
    let rss_before = peak_rss_mib();

    let plugins = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../target/plugins/wasm32-unknown-unknown/release");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let run = |name: &str, transform: &str| -> anyhow::Result<f64> {
        let file = dir.path().join(format!("{name}.toml"));
        std::fs::write(
            &file,
            format!(
                "[source]\nurl = \"sqlite://source.db\"\n[target]\nurl = \"sqlite://{name}.db\"\n{transform}[run]\nbatch_rows = 10000\nchunk_rows = 250000\nparallelism = 2\n"
            ),
        )?;
        let pipeline = Pipeline::load(&file)?;
        let summary = runtime.block_on(async {
            let (source, target) = engine::open_pipeline(&REGISTRY, &pipeline)?;
            let state = Arc::new(StateStore::open(&pipeline.state)?);
            engine::run(
                &pipeline,
                false,
                source,
                target,
                state,
                Progress::new(),
                Shutdown::new(),
            )
            .await
        })?;
        Ok(summary.elapsed.as_secs_f64())
    };
    let transform = |plugin: &str, config: &str| {
        format!(
            "[[transform]]\nplugin = \"{}\"\nconfig = {{ {config} }}\n",
            plugins.join(plugin).display()
        )
    };
    let identity = transform("identity.wasm", "");
    let mask = transform("mask_pii.wasm", "columns = \"status\"");
    let plain_first = run("plain", "")?;
    let rss_plain = peak_rss_mib();
    // Compile the plugins once so that the timed runs load them from the cache.
    run("warm-identity", &identity)?;
    run("warm-mask", &mask)?;
    // Rounds of the three runs, interleaved so that the machine's state
    // (page cache, writeback of earlier databases) weighs on all alike;
    // each is reported by its median.
    let mut times: [Vec<f64>; 3] = [vec![plain_first], Vec::new(), Vec::new()];
    for round in 0..3 {
        for (i, (name, config)) in [
            ("plain", ""),
            ("identity", identity.as_str()),
            ("mask", mask.as_str()),
        ]
        .iter()
        .enumerate()
        {
            if i == 0 && round == 2 {
                continue;
            }
            let secs = run(&format!("{name}-{round}"), config)?;
            std::fs::remove_file(dir.path().join(format!("{name}-{round}.db")))?;
            times[i].push(secs);
        }
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let [plain, identity_times, mask_times] = &mut times;
    let (dmp_secs, identity_secs, mask_secs) =
        (median(plain), median(identity_times), median(mask_times));
    let rss_after = peak_rss_mib();
    let base_secs = baseline(&source, &dir.path().join("baseline.db"))?;

    #[allow(clippy::cast_precision_loss)]
    let rate = |secs: f64| rows as f64 / secs;
    println!("rows: {rows} (dmp figures: median of 3 interleaved runs)");
    println!(
        "baseline (sqlite INSERT ... SELECT): {base_secs:.3} s, {:.0} rows/s",
        rate(base_secs)
    );
    println!(
        "dmp sqlite -> sqlite:                {dmp_secs:.3} s, {:.0} rows/s",
        rate(dmp_secs)
    );
    println!(
        "dmp / baseline wall time:            {:.2}x",
        dmp_secs / base_secs
    );
    println!(
        "dmp + identity WASM transform:       {identity_secs:.3} s, {:.0} rows/s, {:.2}x no transform",
        rate(identity_secs),
        identity_secs / dmp_secs
    );
    println!(
        "dmp + mask_pii WASM transform:       {mask_secs:.3} s, {:.0} rows/s, {:.2}x no transform",
        rate(mask_secs),
        mask_secs / dmp_secs
    );
    #[allow(clippy::cast_precision_loss)]
    let per_row = |secs: f64| (secs - dmp_secs) * 1e9 / rows as f64;
    println!(
        "transform cost per row (wall):       identity {:.0} ns, mask_pii {:.0} ns",
        per_row(identity_secs),
        per_row(mask_secs)
    );
    println!(
        "peak RSS: {rss_plain} MiB without transforms, {rss_after} MiB at the end (after generating the source: {rss_before} MiB)"
    );
    Ok(())
}
