//! `dmp demo`: the product on a laptop with no server. Builds a sample shop
//! database, then runs two real pipelines from it: into a second SQLite
//! database and into JSON Lines files.

use std::path::{Path, PathBuf};

use clap::Args;
use rusqlite::{Connection, params};

use super::run::{print_summary, run_pipeline};
use super::{EXIT_DATA, EXIT_OK};
use crate::config::Pipeline;
use crate::error::{Error, Result, ResultExt};

#[derive(Debug, Args)]
pub(super) struct DemoArgs {
    /// Folder for the sample database, pipelines and outputs.
    #[arg(long, default_value = "demo")]
    dir: PathBuf,
    /// Orders in the sample database.
    #[arg(long, default_value_t = 120_000)]
    orders: u64,
    /// Where the built plugins are (`make plugins` puts them there).
    #[arg(long, default_value = "target/plugins/wasm32-unknown-unknown/release")]
    plugins: PathBuf,
    /// Run the pipelines without the WebAssembly transforms.
    #[arg(long)]
    no_transforms: bool,
}

/// The demo's transforms: e-mail addresses hashed (domain kept, still
/// unique), cancelled orders left out.
const TRANSFORMS: &str = r#"
[[transform]]
plugin = "plugins/mask_pii.wasm"
tables = ["customers"]
config = { columns = "email", mode = "hash", salt = "demo" }

[[transform]]
plugin = "plugins/filter_rows.wasm"
tables = ["orders"]
config = { where = "status != 'cancelled'" }
"#;

/// Copies the demo's plugins next to its pipelines.
fn install_plugins(from: &Path, demo: &Path) -> Result<()> {
    let dir = demo.join("plugins");
    std::fs::create_dir_all(&dir).context(|| format!("creating {}", dir.display()))?;
    for name in ["mask_pii.wasm", "filter_rows.wasm"] {
        let source = from.join(name);
        if !source.is_file() {
            return Err(Error::Config(format!(
                "plugin {} is not built: run `make plugins` first, or `dmp demo --no-transforms`",
                source.display()
            )));
        }
        std::fs::copy(&source, dir.join(name))
            .context(|| format!("copying {}", source.display()))?;
    }
    Ok(())
}

pub(super) async fn demo(args: DemoArgs, interactive: bool) -> Result<u8> {
    std::fs::create_dir_all(&args.dir).context(|| format!("creating {}", args.dir.display()))?;
    let db = args.dir.join("shop.db");
    let orders = args.orders;
    let db_for_task = db.clone();
    let created = tokio::task::spawn_blocking(move || create_shop(&db_for_task, orders))
        .await
        .context(|| "demo task".to_string())??;
    if created {
        println!("created {} ({} orders)", db.display(), orders);
    } else {
        println!("using existing {}", db.display());
    }
    let transforms = if args.no_transforms {
        ""
    } else {
        install_plugins(&args.plugins, &args.dir)?;
        TRANSFORMS
    };
    let mut code = EXIT_OK;
    for (name, target) in [
        ("shop-to-sqlite", "sqlite://shop_copy.db"),
        ("shop-to-jsonl", "file://jsonl?format=jsonl"),
    ] {
        let file = args.dir.join(format!("{name}.toml"));
        let text = format!(
            "# Written by `dmp demo`; run it again with `dmp run {}`.\n\
             [source]\nurl = \"sqlite://shop.db\"\n\n[target]\nurl = \"{target}\"\n\n\
             [tables]\ninclude = [\"customers\", \"products\", \"orders\"]\n{transforms}\n\
             [run]\nbatch_rows = 10000\nparallelism = 4\non_error = \"dead-letter\"\n",
            file.display()
        );
        std::fs::write(&file, text).context(|| format!("writing {}", file.display()))?;
        println!("\nrunning {}", file.display());
        let pipeline = Pipeline::load(&file)?;
        let summary = run_pipeline(&pipeline, true, interactive, None).await?;
        print_summary(&summary, false);
        if summary.rejected > 0 {
            code = EXIT_DATA;
        }
    }
    println!(
        "\nDone. Look at {}/shop_copy.db and {}/jsonl/*.jsonl; `dmp plan {}/shop-to-sqlite.toml` shows the type mapping.",
        args.dir.display(),
        args.dir.display(),
        args.dir.display()
    );
    Ok(code)
}

/// A small deterministic generator, so every demo database is the same.
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        self.0 >> 33
    }
    /// A number in `0..n` (small enough for any SQL integer).
    fn below(&mut self, n: i64) -> i64 {
        i64::try_from(self.next() % n.max(1).unsigned_abs()).unwrap_or(0)
    }
    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[usize::try_from(self.below(items.len() as i64)).unwrap_or(0)]
    }
}

/// Creates the shop database unless it is there with the same order count.
fn create_shop(path: &Path, orders: u64) -> Result<bool> {
    let ctx = || format!("creating demo database {}", path.display());
    if path.exists() {
        let existing = Connection::open(path)
            .and_then(|c| c.query_row("SELECT count(*) FROM orders", [], |r| r.get::<_, i64>(0)))
            .ok();
        if existing.is_some_and(|n| n.unsigned_abs() == orders) {
            return Ok(false);
        }
        std::fs::remove_file(path).context(ctx)?;
    }
    let mut conn = Connection::open(path).context(ctx)?;
    conn.execute_batch(
        "PRAGMA journal_mode = WAL;
         CREATE TABLE customers (
            id INTEGER PRIMARY KEY,
            full_name TEXT NOT NULL,
            email VARCHAR(200) NOT NULL,
            country CHAR(2),
            vip BOOLEAN NOT NULL DEFAULT 0,
            created_at TIMESTAMP NOT NULL,
            notes TEXT);
         CREATE UNIQUE INDEX customers_email ON customers (email);
         CREATE TABLE products (
            id INTEGER PRIMARY KEY,
            sku VARCHAR(20) NOT NULL,
            name TEXT NOT NULL,
            price DECIMAL(10,2) NOT NULL,
            attributes JSON);
         CREATE TABLE orders (
            id INTEGER PRIMARY KEY,
            customer_id INTEGER NOT NULL REFERENCES customers (id),
            product_id INTEGER NOT NULL REFERENCES products (id),
            quantity SMALLINT NOT NULL,
            amount DECIMAL(12,2) NOT NULL,
            status VARCHAR(16) NOT NULL DEFAULT 'new',
            ordered_at TIMESTAMPTZ NOT NULL,
            shipped_on DATE,
            order_uuid UUID NOT NULL);
         CREATE INDEX orders_customer ON orders (customer_id);",
    )
    .context(ctx)?;
    let first = [
        "Ada",
        "Zoë",
        "José",
        "Łukasz",
        "Søren",
        "李",
        "Мария",
        "Aïsha",
        "Nguyễn",
        "O'Brien",
    ];
    let last = [
        "Müller",
        "García",
        "Smith",
        "王",
        "Иванова",
        "Kowalski",
        "Dubois",
        "Tanaka",
        "Ó Briain",
        "🦀 Crab",
    ];
    let countries = ["DE", "FR", "US", "CN", "PL", "JP", "BR", "IN", "GB", "ES"];
    let statuses = ["new", "paid", "shipped", "delivered", "cancelled"];
    let mut rng = Lcg(42);
    let orders = i64::try_from(orders).unwrap_or(i64::MAX);
    let customers = (orders / 12).max(10);
    let products = 1000i64;
    let txn = conn.transaction().context(ctx)?;
    {
        let mut insert = txn
            .prepare("INSERT INTO customers VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)")
            .context(ctx)?;
        for id in 1..=customers {
            let name = format!("{} {}", rng.pick(&first), rng.pick(&last));
            let email = format!(
                "user{id}@{}.example",
                rng.pick(&["mail", "shop", "corp", "uni"])
            );
            let created = format!(
                "2023-{:02}-{:02} {:02}:{:02}:{:02}.{:06}",
                1 + rng.below(12),
                1 + rng.below(28),
                rng.below(24),
                rng.below(60),
                rng.below(60),
                rng.below(1_000_000)
            );
            let notes: Option<String> = (rng.below(4) == 0)
                .then(|| format!("prefers \"express\" delivery\nline two #{id}"));
            let country: Option<&str> = (rng.below(20) != 0).then(|| rng.pick(&countries));
            insert
                .execute(params![
                    id,
                    name,
                    email,
                    country,
                    rng.below(10) == 0,
                    created,
                    notes
                ])
                .context(ctx)?;
        }
        let mut insert = txn
            .prepare("INSERT INTO products VALUES (?1, ?2, ?3, ?4, ?5)")
            .context(ctx)?;
        for id in 1..=products {
            let price = format!("{}.{:02}", 1 + rng.below(500), rng.below(100));
            let attributes: Option<String> = (rng.below(3) != 0).then(|| {
                format!(
                    "{{\"color\": \"{}\", \"weight_kg\": {}.{}}}",
                    rng.pick(&["red", "grün", "藍"]),
                    rng.below(20),
                    rng.below(10)
                )
            });
            insert
                .execute(params![
                    id,
                    format!("SKU-{id:05}"),
                    format!("Product {id} «{}»", rng.pick(&last)),
                    price,
                    attributes
                ])
                .context(ctx)?;
        }
        let mut insert = txn
            .prepare("INSERT INTO orders VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)")
            .context(ctx)?;
        for id in 1..=orders {
            let status = rng.pick(&statuses);
            let month = 1 + rng.below(12);
            let day = 1 + rng.below(28);
            let ordered = format!(
                "2024-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:06}+00:00",
                rng.below(24),
                rng.below(60),
                rng.below(60),
                rng.below(1_000_000)
            );
            let shipped: Option<String> = matches!(status, "shipped" | "delivered")
                .then(|| format!("2024-{month:02}-{:02}", (day + 1).min(28)));
            let uuid = uuid::Uuid::from_u64_pair(
                rng.next() << 32 | rng.next(),
                rng.next() << 32 | id.unsigned_abs(),
            );
            insert
                .execute(params![
                    id,
                    1 + rng.below(customers),
                    1 + rng.below(products),
                    1 + rng.below(5),
                    format!("{}.{:02}", rng.below(2000), rng.below(100)),
                    status,
                    ordered,
                    shipped,
                    uuid.to_string()
                ])
                .context(ctx)?;
        }
    }
    txn.commit().context(ctx)?;
    if !path.exists() {
        return Err(Error::Data(format!(
            "demo database {} was not created",
            path.display()
        )));
    }
    Ok(true)
}
