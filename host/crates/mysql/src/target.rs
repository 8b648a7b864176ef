//! Writes MySQL / MariaDB tables: created from the model schema (primary
//! key with the data, indexes once a table is loaded, foreign keys at the
//! end), written batch by batch over a pool of sessions, each batch (or
//! batch of changes, see `apply`) in one transaction with its checkpoint in
//! `_dmp_checkpoints`.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use mysql_async::prelude::Queryable;
use mysql_async::{Conn, Pool};
use tokio::sync::OnceCell;
use tracing::{info, warn};

use super::apply;
use super::config::{MysqlConfig, Role};
use super::conflict_log;
use super::ddl::{
    auto_increment_column, binary_collation, check_sql, column_default, column_types, create_table,
    identity_carry, on_update_sql,
};
use super::evolve::evolve;
use super::server::Server;
use super::sql::{quote, quote_list};
use super::types::target_type;
use super::writer::{Method, TablePlan, write_batch};
use crate::error::{Error, Result, ResultExt};
use dmp_contract::Endpoint;
use dmp_contract::conflict::{PurgeClock, tombstone_tables};
use dmp_contract::prepare::{Checkpointed, TablePrep, decide};
use dmp_contract::{
    CONSTRAINTS, LoggedConflict, NameRules, NameScope, RejectSink, Resolution, RowWrite,
    SchemaItem, Start, TakenName, Target, TargetOptions,
};
use dmp_model::{
    Batch, Carry, ChangeBatch, Checkpoint, Column, ForeignKey, SchemaObjects, TableChanges,
    TableSchema,
};

pub struct MysqlTarget {
    config: MysqlConfig,
    options: TargetOptions,
    /// Opened at first use: `dmp plan` needs no server.
    pool: OnceCell<(Pool, Server)>,
    plans: Mutex<HashMap<String, Arc<TablePlan>>>,
    /// Cleared when the server refuses LOAD DATA LOCAL.
    load_data: AtomicBool,
    /// Two-way sync: when expired tombstones were last forgotten.
    purge: PurgeClock,
}

const CHECKPOINTS_DDL: &str = "CREATE TABLE IF NOT EXISTS _dmp_checkpoints (
    pipeline VARCHAR(255) NOT NULL, table_name VARCHAR(255) NOT NULL, chunk INT NOT NULL,
    position LONGTEXT NOT NULL, `rows` BIGINT NOT NULL, done TINYINT(1) NOT NULL,
    epoch BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (pipeline, table_name, chunk))
    ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin";

/// Adds the stream holder's epoch to a checkpoint table made before it
/// was kept (MySQL 8 has no `ADD COLUMN IF NOT EXISTS`).
const CHECKPOINTS_EPOCH: &str = "SELECT count(*) FROM information_schema.columns \
    WHERE table_schema = DATABASE() AND table_name = '_dmp_checkpoints' AND column_name = 'epoch'";

/// Error number of a missing table.
const NO_SUCH_TABLE: u16 = 1146;

impl MysqlTarget {
    /// Two-way sync: after a batch (when the purge is due, see
    /// `PurgeClock`), forgets the expired tombstones of its tables. A failure is only logged: the
    /// tombstones stay until the next purge.
    async fn purge_tombstones(&self, conn: &mut Conn, purge: Option<(Vec<String>, i64)>) {
        let (Some(rules), Some((tables, commit_us))) = (&self.options.conflicts, purge) else {
            return;
        };
        for table in tables {
            let sql = super::conflicts::purge_sql(&table, rules.tombstone_retention, commit_us);
            if let Err(e) = conn.query_drop(sql).await {
                warn!(place = self.config.place, table = %table, error = %e,
                    "expired tombstones not forgotten; tried again in a minute");
            }
        }
    }

    pub fn open(endpoint: &Endpoint, options: TargetOptions) -> Result<Self> {
        Ok(MysqlTarget {
            config: MysqlConfig::parse(endpoint)?,
            options,
            pool: OnceCell::new(),
            plans: Mutex::new(HashMap::new()),
            load_data: AtomicBool::new(true),
            purge: PurgeClock::default(),
        })
    }

    async fn pool(&self) -> Result<&(Pool, Server)> {
        self.pool
            .get_or_try_init(|| {
                self.config
                    .connect(Role::Target, self.options.writers.max(1) + 1)
            })
            .await
    }

    async fn conn_from(&self, pool: &Pool) -> Result<Conn> {
        pool.get_conn().await.context(|| self.config.connecting())
    }

    /// A session of the pool; in a two-way sync, one whose writes are
    /// tagged as DMP's own (the first load's, the stream's).
    async fn conn(&self) -> Result<(Conn, Server)> {
        let (pool, server) = self.pool().await?;
        let mut conn = self.conn_from(pool).await?;
        if self.options.origin.is_some() {
            self.tag_session(&mut conn, *server).await?;
        }
        Ok((conn, *server))
    }

    /// How batches of `table` are written, worked out at its first batch
    /// from the table as the server has it.
    async fn plan(
        &self,
        conn: &mut Conn,
        table: &Arc<TableSchema>,
        server: Server,
    ) -> Result<Arc<TablePlan>> {
        let poisoned = || Error::Data("MySQL target state poisoned by a panic".into());
        if let Some(plan) = self.plans.lock().map_err(|_| poisoned())?.get(&table.name)
            && plan.table.columns == table.columns
        {
            return Ok(plan.clone());
        }
        let actual: HashMap<String, String> = conn
            .exec::<(String, String), _, _>(
                "SELECT COLUMN_NAME, LOWER(DATA_TYPE) FROM information_schema.COLUMNS \
                 WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = ?",
                (table.name.as_str(),),
            )
            .await
            .context(|| format!("reading the columns of target table {}", table.name))?
            .into_iter()
            .collect();
        let plan = Arc::new(TablePlan::new(table.clone(), server, &actual));
        self.plans
            .lock()
            .map_err(|_| poisoned())?
            .insert(table.name.clone(), plan.clone());
        Ok(plan)
    }

    /// Two-way sync: marks what `conn` writes as DMP's own. MariaDB's
    /// `skip_replication` flags the session's binlog events
    /// (`LOG_EVENT_SKIP_REPLICATION_F`), which the reader of the way back
    /// drops; MySQL has no such flag.
    async fn tag_session(&self, conn: &mut Conn, server: Server) -> Result<()> {
        if !server.mariadb {
            return Err(Error::Config(format!(
                "{}: a two-way sync with MySQL is not supported: DMP tags its own writes with MariaDB's skip_replication, which MySQL lacks",
                self.place()
            )));
        }
        conn.query_drop("SET SESSION skip_replication = 1")
            .await
            .context(|| {
                format!(
                    "{}: marking DMP's own writes (`SET SESSION skip_replication`, which needs the BINLOG ADMIN or SUPER privilege)",
                    self.place()
                )
            })
    }

    fn place(&self) -> String {
        self.config.place.clone()
    }

    /// `table` as this side has it, for resolving a conflict at one of its
    /// keys: its primary key decides which row a key names.
    async fn keyed_table(&self, table: &str) -> Result<TableSchema> {
        let Some(schema) = self.describe(table).await? else {
            return Err(Error::Config(format!(
                "{}: table {table} does not exist",
                self.place()
            )));
        };
        if schema.primary_key.is_empty() {
            return Err(Error::Config(format!(
                "{}: table {table} has no primary key: a conflict's key names no row of it",
                self.place()
            )));
        }
        Ok(schema)
    }

    /// The server, once connected; until then MariaDB is assumed.
    fn server(&self) -> Server {
        self.pool
            .get()
            .map_or_else(Server::assumed, |(_, server)| *server)
    }

    /// Sets the AUTO_INCREMENT counter to the source's next value: InnoDB
    /// keeps it past the largest key by itself, but the source's may be
    /// further (rows deleted there).
    async fn advance_auto_increment(&self, table: &TableSchema) -> Result<()> {
        let Some(next) = auto_increment_column(table)
            .and_then(|name| table.columns.iter().find(|c| c.name == name))
            .and_then(|c| c.identity.as_ref()?.next)
            .filter(|n| *n > 1)
        else {
            return Ok(());
        };
        let (mut conn, _) = self.conn().await?;
        conn.query_drop(format!(
            "ALTER TABLE {} AUTO_INCREMENT = {next}",
            quote(&table.name)
        ))
        .await
        .context(|| format!("setting the AUTO_INCREMENT of table {}", table.name))
    }
}

/// What becomes of a source schema item on a MySQL-family target (the
/// same functions build the DDL).
fn assess(server: Server, table: Option<&TableSchema>, item: SchemaItem<'_>) -> Carry<String> {
    let created = |column: &Column| {
        table
            .and_then(|t| {
                let at = t.columns.iter().position(|c| c.name == column.name)?;
                column_types(t, server)
                    .into_iter()
                    .nth(at)
                    .map(|(created, _)| created)
            })
            .unwrap_or_else(|| {
                target_type(
                    &column.data_type,
                    column.enum_values.as_deref(),
                    None,
                    server,
                )
            })
    };
    match item {
        SchemaItem::Column(c) => Carry::Carried(created(c)),
        SchemaItem::PrimaryKey
        | SchemaItem::Index(_)
        | SchemaItem::ForeignKey(_)
        | SchemaItem::ColumnComment(_)
        | SchemaItem::TableComment(_) => Carry::Carried(String::new()),
        SchemaItem::Check(check) => check_sql(check, server).map(|sql| format!("CHECK ({sql})")),
        SchemaItem::Default(c) => column_default(c, &created(c), server)
            .unwrap_or_else(|| Carry::NotCarried("MySQL cannot hold this default".into())),
        SchemaItem::Identity(c) => match table {
            Some(t) => identity_carry(t, c),
            None => Carry::NotCarried("no table".into()),
        },
        SchemaItem::OnUpdate(c) => on_update_sql(c, &created(c))
            .unwrap_or_else(|| Carry::NotCarried("no ON UPDATE".into())),
        SchemaItem::Collation(_) => Carry::NotCarried(format!(
            "text columns compare by {} (distinct keys stay distinct)",
            binary_collation(server)
        )),
        SchemaItem::View(view) if view.dialect == server.dialect() => Carry::Carried("view".into()),
        SchemaItem::View(view) => Carry::NotCarried(format!(
            "a {} view's query is not translated",
            view.dialect.as_str()
        )),
        SchemaItem::Partitioning(_) => Carry::NotCarried(
            "partitioning is not written on MySQL/MariaDB: the partitions' rows go into one table"
                .into(),
        ),
        SchemaItem::Sequence(_) => {
            Carry::NotCarried("sequences are carried between PostgreSQL databases only".into())
        }
    }
}

async fn existing_tables(conn: &mut Conn) -> Result<HashSet<String>> {
    let names: Vec<String> = conn
        .query(
            "SELECT TABLE_NAME FROM information_schema.TABLES \
             WHERE TABLE_SCHEMA = DATABASE() AND TABLE_TYPE = 'BASE TABLE'",
        )
        .await
        .context(|| "listing the target's tables".to_string())?;
    Ok(names.into_iter().collect())
}

#[async_trait]
impl Target for MysqlTarget {
    fn column_type(&self, column: &Column) -> String {
        // Known once connected; until then types are named for MariaDB.
        let server = self.server();
        target_type(
            &column.data_type,
            column.enum_values.as_deref(),
            None,
            server,
        )
    }

    fn assess(&self, table: Option<&TableSchema>, item: SchemaItem<'_>) -> Carry<String> {
        assess(self.server(), table, item)
    }

    async fn finish_objects(
        &self,
        objects: &SchemaObjects,
        tables: &[Arc<TableSchema>],
    ) -> Result<()> {
        if self.options.data_only || objects.views.is_empty() {
            return Ok(());
        }
        let (mut conn, server) = self.conn().await?;
        let mut present: Vec<&str> = tables.iter().map(|t| t.name.as_str()).collect();
        for view in &objects.views {
            if view.dialect != server.dialect() {
                continue;
            }
            if let Some(missing) = view
                .depends_on
                .iter()
                .find(|d| **d != view.name && !present.contains(&d.as_str()))
            {
                warn!(
                    view = view.name,
                    reads = missing,
                    "view not created: it reads a relation that is not on the target"
                );
                continue;
            }
            let sql = format!(
                "CREATE OR REPLACE VIEW {} AS {}",
                quote(&view.name),
                view.definition
            );
            match conn.query_drop(sql).await {
                Ok(()) => {
                    info!(view = view.name, "view created");
                    present.push(&view.name);
                }
                Err(e) => warn!(view = view.name, error = %e, "view not created"),
            }
        }
        Ok(())
    }

    async fn describe(&self, table: &str) -> Result<Option<TableSchema>> {
        let (mut conn, server) = self.conn().await?;
        let found =
            super::catalog::discover(&mut conn, server, &self.config.database, None, Some(table))
                .await?;
        Ok(found.into_iter().next().map(|d| d.schema))
    }

    fn name_rules(&self) -> NameRules {
        let server = self.server();
        // Index names are per table; foreign key names per database (InnoDB),
        // and so are CHECK names on MySQL (MariaDB keeps them per table).
        NameRules {
            max_bytes: 64,
            case_insensitive: true,
            index: NameScope::Table,
            primary_key: NameScope::Table,
            foreign_key: NameScope::Schema(CONSTRAINTS),
            check: if server.mariadb {
                NameScope::Table
            } else {
                NameScope::Schema(CONSTRAINTS)
            },
            primary_key_suffix: None,
        }
    }

    async fn taken_names(&self, tables: &[String]) -> Result<Vec<TakenName>> {
        let (mut conn, _) = self.conn().await?;
        let rows: Vec<(String, String)> = conn
            .query(
                "SELECT TABLE_NAME, CONSTRAINT_NAME FROM information_schema.TABLE_CONSTRAINTS \
                 WHERE CONSTRAINT_SCHEMA = DATABASE() AND CONSTRAINT_TYPE IN ('FOREIGN KEY', 'CHECK')",
            )
            .await
            .context(|| format!("reading the constraint names of {}", self.place()))?;
        Ok(rows
            .into_iter()
            .filter(|(table, _)| !tables.iter().any(|t| t.eq_ignore_ascii_case(table)))
            .map(|(_, name)| TakenName {
                group: CONSTRAINTS,
                name,
            })
            .collect())
    }

    async fn prepare(&self, tables: &[Arc<TableSchema>], start: Start) -> Result<()> {
        let (mut conn, server) = self.conn().await?;
        let place = self.place();
        let ctx = || format!("preparing {place}");
        conn.query_drop(CHECKPOINTS_DDL).await.context(ctx)?;
        if self.options.conflicts.is_some() {
            conn.query_drop(super::conflicts::CONFLICTS_DDL)
                .await
                .context(ctx)?;
        }
        if self.options.origin.is_some() {
            conn.query_drop(super::origin::ORIGIN_DDL)
                .await
                .context(ctx)?;
        }
        let has_epoch: Option<u64> = conn.query_first(CHECKPOINTS_EPOCH).await.context(ctx)?;
        if has_epoch == Some(0) {
            conn.query_drop(
                "ALTER TABLE _dmp_checkpoints ADD COLUMN epoch BIGINT NOT NULL DEFAULT 0",
            )
            .await
            .context(ctx)?;
        }
        let pipeline = self.options.pipeline.as_str();
        if start == Start::Fresh {
            conn.exec_drop(
                "DELETE FROM _dmp_checkpoints WHERE pipeline = ?",
                (pipeline,),
            )
            .await
            .context(ctx)?;
        }
        let existing = existing_tables(&mut conn).await?;
        let checkpointed: Checkpointed = conn
            .exec::<(String, bool), _, _>(
                "SELECT table_name, max(done) = 1 FROM _dmp_checkpoints WHERE pipeline = ? \
                 GROUP BY table_name",
                (pipeline,),
            )
            .await
            .context(ctx)?
            .into_iter()
            .collect();
        for table in tables {
            let name = quote(&table.name);
            let table_ctx = || format!("preparing table {} in {place}", table.name);
            let exists = existing.contains(&table.name);
            let prep = decide(start, table, exists, &checkpointed, &self.options)
                .map_err(|refusal| refusal.error(&table.name, &place))?;
            let statements = match prep {
                TablePrep::Leave => vec![],
                // MySQL tables get their key with them (upserts or not).
                TablePrep::Create { .. } => vec![create_table(table, server)],
                TablePrep::Empty => vec![format!("TRUNCATE TABLE {name}")],
                TablePrep::Replace => vec![
                    format!("DROP TABLE IF EXISTS {name}"),
                    create_table(table, server),
                ],
                TablePrep::Restart => {
                    info!(
                        table = table.name,
                        "table without primary key partly copied: copied again"
                    );
                    vec![format!("TRUNCATE TABLE {name}")]
                }
            };
            for statement in statements {
                conn.query_drop(statement).await.context(table_ctx)?;
            }
            // After the rows are gone (TRUNCATE commits on its own): a crash
            // in between leaves the checkpoints, and the next run restarts
            // the table again.
            if prep == TablePrep::Restart {
                conn.exec_drop(
                    "DELETE FROM _dmp_checkpoints WHERE pipeline = ? AND table_name = ?",
                    (pipeline, table.name.as_str()),
                )
                .await
                .context(table_ctx)?;
            }
            if (self.options.conflicts.as_ref()).is_some_and(|r| r.by_commit_time(&table.name)) {
                return Err(Error::Config(format!(
                    "{place}: last_writer_wins by commit time (table {}) needs each row's commit \
                     time, which MySQL and MariaDB do not keep (a binlog's times have one-second \
                     resolution): name a conflict_column that orders the writes (an updated_at \
                     DATETIME(6) set on every write, or a version)",
                    table.name
                )));
            }
            // Two-way sync: a table whose policy orders writes by a column
            // remembers its deleted rows.
            let column = match &self.options.conflicts {
                // A table without the column is refused here, by name.
                Some(rules) => rules
                    .order_column(table)
                    .map_err(|e| Error::Config(format!("{place}: {e}")))?
                    .map(|c| table.columns[c].name.as_str()),
                None => None,
            };
            if let Some(column) = column {
                let statements = super::conflicts::tombstone_ddl(table, column)
                    .map_err(|e| Error::Config(format!("{place}: {e}")))?;
                for statement in statements {
                    conn.query_drop(statement).await.context(|| {
                        format!(
                            "keeping the tombstones of table {}'s deleted rows in {place}",
                            table.name
                        )
                    })?;
                }
            }
        }
        Ok(())
    }

    async fn checkpoints(&self) -> Result<Vec<Checkpoint>> {
        let (mut conn, _) = self.conn().await?;
        let ctx = || format!("reading checkpoints from {}", self.place());
        let rows: Vec<(String, u32, String, u64, bool)> = match conn
            .exec(
                "SELECT table_name, chunk, position, `rows`, done FROM _dmp_checkpoints WHERE pipeline = ?",
                (self.options.pipeline.as_str(),),
            )
            .await
        {
            Ok(rows) => rows,
            Err(mysql_async::Error::Server(e)) if e.code == NO_SUCH_TABLE => Vec::new(),
            Err(e) => return Err(e).context(ctx),
        };
        rows.into_iter()
            .map(|(table, chunk, position, rows, done)| {
                Ok(Checkpoint {
                    position: serde_json::from_str(&position).context(ctx)?,
                    table,
                    chunk,
                    rows,
                    done,
                    fence: None,
                })
            })
            .collect()
    }

    async fn write(
        &self,
        batch: Batch,
        checkpoint: Checkpoint,
        rejects: Arc<dyn RejectSink>,
    ) -> Result<u64> {
        let (mut conn, server) = self.conn().await?;
        let plan = self.plan(&mut conn, &batch.table, server).await?;
        let method = if self.load_data.load(Ordering::Relaxed) {
            Method::LoadData
        } else {
            Method::Insert
        };
        let written = write_batch(
            &mut conn,
            &plan,
            &batch,
            &checkpoint,
            &self.options.pipeline,
            self.options.origin.as_deref(),
            method,
            rejects,
        )
        .await?;
        if written.load_data_disabled && self.load_data.swap(false, Ordering::Relaxed) {
            warn!(
                place = self.config.place,
                "the server refuses LOAD DATA LOCAL INFILE (local_infile is off); writing with INSERTs"
            );
        }
        Ok(written.rows)
    }

    async fn apply(
        &self,
        batch: ChangeBatch,
        checkpoint: Checkpoint,
        rejects: Arc<dyn RejectSink>,
    ) -> Result<u64> {
        let (mut conn, server) = self.conn().await?;
        // DDL commits on its own: changes of shape go after the rows and
        // checkpoint before them (the engine puts none of a table's rows
        // after its change of shape in a batch).
        let (evolutions, segments): (Vec<TableChanges>, Vec<TableChanges>) = batch
            .segments
            .into_iter()
            .partition(|s| matches!(s, TableChanges::Evolve { .. }));
        let batch = ChangeBatch { segments };
        // What a purge of tombstones after it needs of the batch.
        let purge = (self.options.conflicts.as_ref())
            .filter(|r| r.keeps_tombstones() && self.purge.due(r.tombstone_retention))
            .and_then(|r| tombstone_tables(r, &batch));
        let mut plans = Vec::with_capacity(batch.segments.len());
        for segment in &batch.segments {
            plans.push(self.plan(&mut conn, segment.table(), server).await?);
        }
        let applied = apply::apply(
            &mut conn,
            &plans,
            server,
            &self.options.pipeline,
            self.options.conflicts.as_ref().map(|rules| {
                let sync_id = self.options.origin.as_deref();
                (rules, sync_id.unwrap_or(&self.options.pipeline))
            }),
            batch,
            checkpoint,
            rejects,
        )
        .await?;
        self.purge_tombstones(&mut conn, purge).await;
        for evolution in evolutions {
            if let TableChanges::Evolve {
                table,
                from,
                changes,
            } = evolution
            {
                evolve(&mut conn, server, &from, &table, &changes).await?;
                if let Ok(mut plans) = self.plans.lock() {
                    plans.remove(&from.name);
                    plans.remove(&table.name);
                }
            }
        }
        Ok(applied)
    }

    async fn conflict_log(&self, sync_id: &str) -> Result<Vec<LoggedConflict>> {
        let (mut conn, _) = self.conn().await?;
        conflict_log::entries(&mut conn, &self.place(), sync_id).await
    }

    async fn read_row(&self, table: &str, key: &str) -> Result<Option<String>> {
        let schema = self.keyed_table(table).await?;
        let (mut conn, _) = self.conn().await?;
        conflict_log::read_row(&mut conn, &schema, key, &self.place()).await
    }

    async fn resolve_conflicts(&self, resolution: &Resolution<'_>) -> Result<u64> {
        let schema = match resolution.write {
            RowWrite::Keep => None,
            RowWrite::Upsert(_) | RowWrite::Delete => {
                Some(self.keyed_table(resolution.table).await?)
            }
        };
        // Tagged whatever the options say: the write must not come back.
        let (mut conn, server) = self.conn().await?;
        self.tag_session(&mut conn, server).await?;
        conflict_log::resolve(&mut conn, &self.place(), schema.as_ref(), resolution).await
    }

    async fn finish_table(&self, table: &TableSchema) -> Result<()> {
        self.advance_auto_increment(table).await?;
        if self.options.data_only || table.indexes.is_empty() {
            return Ok(());
        }
        let (mut conn, _) = self.conn().await?;
        let ctx = || format!("creating the indexes of table {}", table.name);
        let existing: HashSet<String> = conn
            .exec::<String, _, _>(
                "SELECT DISTINCT INDEX_NAME FROM information_schema.STATISTICS \
                 WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = ?",
                (table.name.as_str(),),
            )
            .await
            .context(ctx)?
            .into_iter()
            .collect();
        let column_types: HashMap<String, String> = conn
            .exec::<(String, String), _, _>(
                "SELECT COLUMN_NAME, DATA_TYPE FROM information_schema.COLUMNS \
                 WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = ?",
                (table.name.as_str(),),
            )
            .await
            .context(ctx)?
            .into_iter()
            .collect();
        let mut adds = Vec::new();
        for index in &table.indexes {
            if existing.contains(&index.name) {
                continue;
            }
            let unindexable = index.columns.iter().find(|c| {
                column_types.get(*c).is_none_or(|t| {
                    matches!(
                        t.to_ascii_lowercase().as_str(),
                        "tinytext"
                            | "text"
                            | "mediumtext"
                            | "longtext"
                            | "tinyblob"
                            | "blob"
                            | "mediumblob"
                            | "longblob"
                            | "json"
                    )
                })
            });
            if let Some(column) = unindexable {
                warn!(
                    table = table.name,
                    index = index.name,
                    column,
                    "index skipped: the column is missing or of a type MySQL cannot index whole"
                );
                continue;
            }
            adds.push(format!(
                "ADD {}INDEX {} ({})",
                if index.unique { "UNIQUE " } else { "" },
                quote(&index.name),
                quote_list(&index.columns)
            ));
        }
        if adds.is_empty() {
            return Ok(());
        }
        // One ALTER builds every index in one pass over the table.
        conn.query_drop(format!(
            "ALTER TABLE {} {}",
            quote(&table.name),
            adds.join(", ")
        ))
        .await
        .context(ctx)
    }

    async fn finish_pipeline(&self, tables: &[Arc<TableSchema>]) -> Result<()> {
        if self.options.data_only || tables.iter().all(|t| t.foreign_keys.is_empty()) {
            return Ok(());
        }
        let (mut conn, _) = self.conn().await?;
        let existing: Vec<(String, String)> = conn
            .query(
                "SELECT TABLE_NAME, CONSTRAINT_NAME FROM information_schema.REFERENTIAL_CONSTRAINTS \
                 WHERE CONSTRAINT_SCHEMA = DATABASE()",
            )
            .await
            .context(|| "reading the target's foreign keys".to_string())?;
        let names: HashSet<&str> = tables.iter().map(|t| t.name.as_str()).collect();
        let mut failures = Vec::new();
        for table in tables {
            for fk in &table.foreign_keys {
                if !names.contains(fk.references.as_str()) {
                    warn!(
                        table = table.name,
                        foreign_key = fk.name,
                        references = fk.references,
                        "foreign key skipped: the referenced table is not copied"
                    );
                    continue;
                }
                // Built by an earlier try (names were planned unique).
                if existing
                    .iter()
                    .any(|(t, n)| *t == table.name && n.eq_ignore_ascii_case(&fk.name))
                {
                    continue;
                }
                if let Err(e) = add_foreign_key(&mut conn, table, fk, &fk.name).await {
                    failures.push(e.to_string());
                }
            }
        }
        if failures.is_empty() {
            Ok(())
        } else {
            Err(Error::Data(format!(
                "foreign keys not created: {}",
                failures.join("; ")
            )))
        }
    }
}

/// Adds one foreign key after checking that every row has its parent: the
/// session's FOREIGN_KEY_CHECKS=0 lets InnoDB add it in place without a
/// table copy, but also without that check.
async fn add_foreign_key(
    conn: &mut Conn,
    table: &TableSchema,
    fk: &ForeignKey,
    name: &str,
) -> Result<()> {
    let ctx = || format!("foreign key {} of table {}", fk.name, table.name);
    let child = quote(&table.name);
    let parent = quote(&fk.references);
    let not_null: Vec<String> = fk
        .columns
        .iter()
        .map(|c| format!("c.{} IS NOT NULL", quote(c)))
        .collect();
    let matches: Vec<String> = fk
        .columns
        .iter()
        .zip(&fk.referenced_columns)
        .map(|(c, p)| format!("p.{} = c.{}", quote(p), quote(c)))
        .collect();
    let orphans: Option<u64> = conn
        .query_first(format!(
            "SELECT COUNT(*) FROM {child} c WHERE {} AND NOT EXISTS (SELECT 1 FROM {parent} p WHERE {})",
            not_null.join(" AND "),
            matches.join(" AND ")
        ))
        .await
        .context(ctx)?;
    if let Some(n) = orphans.filter(|n| *n > 0) {
        return Err(Error::Data(format!(
            "{}: {n} rows reference no row of {}",
            ctx(),
            fk.references
        )));
    }
    let rule = |r: &str| {
        let upper = r.trim().to_ascii_uppercase();
        match upper.as_str() {
            "CASCADE" | "SET NULL" | "RESTRICT" | "NO ACTION" => upper,
            other => {
                // InnoDB rejects SET DEFAULT.
                warn!(
                    table = table.name,
                    foreign_key = fk.name,
                    rule = other,
                    "referential action not supported by InnoDB; NO ACTION used"
                );
                "NO ACTION".to_string()
            }
        }
    };
    let sql = format!(
        "ALTER TABLE {child} ADD CONSTRAINT {} FOREIGN KEY ({}) REFERENCES {parent} ({}) ON DELETE {} ON UPDATE {}",
        quote(name),
        quote_list(&fk.columns),
        quote_list(&fk.referenced_columns),
        rule(&fk.on_delete),
        rule(&fk.on_update)
    );
    conn.query_drop(sql).await.context(ctx)
}
