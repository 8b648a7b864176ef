//! Writes PostgreSQL tables. `prepare` creates (or truncates, drops, checks)
//! the tables and the `_dmp_checkpoints` table in one transaction, then
//! reads each table's actual column types, which decide how values are
//! encoded. Each batch is one transaction on a pooled session: binary COPY
//! of its rows plus the chunk's checkpoint; a batch of changes is applied
//! the same way (see `apply`). Secondary indexes are built when a table is
//! done, foreign keys when every table is.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use sqlx::postgres::types::Oid;
use sqlx::{AssertSqlSafe, PgPool, Postgres, Row, Transaction};
use tracing::{info, warn};

use super::apply;
use super::catalog::resolve_column_types;
use super::config::PgConfig;
use super::conflict_log;
use super::ddl::{self, CHECKPOINTS};
use super::objects::{self, view_carry};
use super::sql::qualified;
use super::types::{ddl_type, native};
use super::writer::{self, WriteTable};
use crate::error::{Error, Result, ResultExt};
use dmp_contract::Endpoint;
use dmp_contract::conflict::{PurgeClock, tombstone_tables};
use dmp_contract::prepare::{Checkpointed, TablePrep, decide};
use dmp_contract::{
    IfExists, LoggedConflict, NameRules, NameScope, RELATIONS, RejectSink, Resolution, RowWrite,
    SchemaItem, Start, TakenName, Target, TargetOptions,
};
use dmp_model::{
    Batch, Carry, ChangeBatch, Checkpoint, Column, Dialect, SchemaObjects, TableChanges,
    TableSchema, View, WireFormat,
};

pub struct PostgresTarget {
    config: PgConfig,
    pool: PgPool,
    options: TargetOptions,
    /// Tables as prepared, by name.
    tables: Mutex<HashMap<String, Arc<WriteTable>>>,
    /// Whether the role may set `session_replication_role`, asked once.
    superuser: tokio::sync::OnceCell<bool>,
    /// Two-way sync: when expired tombstones were last forgotten.
    purge: PurgeClock,
}

impl PostgresTarget {
    pub fn open(endpoint: &Endpoint, options: TargetOptions) -> Result<Self> {
        let config = PgConfig::parse(endpoint)?;
        // One session per writer, and one for index builds running while
        // other tables are still being written.
        let pool = config.pool(options.writers.max(1) + 1);
        Ok(PostgresTarget {
            config,
            pool,
            options,
            tables: Mutex::new(HashMap::new()),
            superuser: tokio::sync::OnceCell::new(),
            purge: PurgeClock::default(),
        })
    }

    fn place(&self) -> &str {
        &self.config.place
    }

    fn schema(&self) -> &str {
        &self.config.schema
    }

    fn cached(&self, name: &str) -> Option<Arc<WriteTable>> {
        self.tables.lock().ok()?.get(name).cloned()
    }

    /// `table` as prepared, or read again when its columns changed since.
    async fn write_table(&self, table: &TableSchema) -> Result<Arc<WriteTable>> {
        match self.cached(&table.name) {
            Some(t)
                if t.key == table.primary_key_indices()
                    && t.quoted_names.len() == table.columns.len()
                    && t.quoted_names
                        .iter()
                        .zip(&table.columns)
                        .all(|(q, c)| *q == super::sql::quote_ident(&c.name)) =>
            {
                Ok(t)
            }
            _ => self.load(table).await,
        }
    }

    /// Reads `table`'s columns on the target and how each is encoded.
    async fn load(&self, table: &TableSchema) -> Result<Arc<WriteTable>> {
        let ctx = || {
            format!(
                "{}: reading the columns of target table {}",
                self.place(),
                table.name
            )
        };
        let rows = sqlx::query(
            "SELECT a.attname::text, a.atttypid, a.atttypmod, format_type(a.atttypid, a.atttypmod), \
             a.attgenerated::text, \
             EXISTS (SELECT 1 FROM pg_constraint f WHERE f.conrelid = c.oid AND f.contype = 'f') \
             FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid \
             JOIN pg_namespace n ON n.oid = c.relnamespace \
             WHERE n.nspname = $1 AND c.relname = $2 AND c.relkind IN ('r', 'p') \
             AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum",
        )
        .bind(self.schema())
        .bind(&table.name)
        .fetch_all(&self.pool)
        .await
        .context(ctx)?;
        if rows.is_empty() {
            return Err(Error::Config(format!(
                "{}: target table {}.{} does not exist",
                self.place(),
                self.schema(),
                table.name
            )));
        }
        struct Attr {
            type_oid: Oid,
            typmod: i32,
            sql_type: String,
            generated: bool,
        }
        let mut attrs: HashMap<String, Attr> = HashMap::new();
        let mut has_foreign_keys = false;
        for row in rows {
            let name: String = row.try_get(0).context(ctx)?;
            let generated: String = row.try_get(4).context(ctx)?;
            has_foreign_keys = row.try_get(5).context(ctx)?;
            attrs.insert(
                name,
                Attr {
                    type_oid: row.try_get(1).context(ctx)?,
                    typmod: row.try_get(2).context(ctx)?,
                    sql_type: row.try_get(3).context(ctx)?,
                    generated: !generated.is_empty(),
                },
            );
        }
        let wanted: Vec<(Oid, i32)> = attrs.values().map(|a| (a.type_oid, a.typmod)).collect();
        let types = resolve_column_types(&self.pool, &wanted, self.place()).await?;
        let mut encodings = Vec::with_capacity(table.columns.len());
        let mut sql_types = Vec::with_capacity(table.columns.len());
        for column in &table.columns {
            let Some(attr) = attrs.get(&column.name) else {
                return Err(Error::Config(format!(
                    "{}: target table {} has no column {} (it has {})",
                    self.place(),
                    table.name,
                    column.name,
                    {
                        let mut names: Vec<&str> = attrs.keys().map(String::as_str).collect();
                        names.sort_unstable();
                        names.join(", ")
                    }
                )));
            };
            sql_types.push(attr.sql_type.clone());
            if attr.generated {
                info!(
                    table = table.name,
                    column = column.name,
                    "generated column on the target: its values are computed there"
                );
                encodings.push(None);
                continue;
            }
            let encoding = types
                .get(&(attr.type_oid, attr.typmod))
                .and_then(native)
                .ok_or_else(|| {
                    Error::Unsupported(format!(
                        "{}: target column {}.{} has type {}, which dmp cannot write (it writes {} values as {})",
                        self.place(),
                        table.name,
                        column.name,
                        attr.sql_type,
                        column.data_type,
                        ddl_type(column)
                    ))
                })?;
            encodings.push(Some(encoding));
        }
        let replica = has_foreign_keys && self.may_skip_foreign_keys(&table.name).await?;
        let write_table = Arc::new(WriteTable {
            origin: self.options.origin.clone(),
            ..WriteTable::new(self.schema(), table, encodings, sql_types, replica)
        });
        if let Ok(mut tables) = self.tables.lock() {
            tables.insert(table.name.clone(), write_table.clone());
        }
        Ok(write_table)
    }

    /// Whether rows may load with foreign key triggers off: only a
    /// superuser may set `session_replication_role`. Otherwise rows whose
    /// parent arrives later are refused, and the user is told.
    async fn may_skip_foreign_keys(&self, table: &str) -> Result<bool> {
        let superuser = self.superuser().await?;
        if !superuser {
            warn!(
                table,
                "the target table has foreign keys and the role may not defer them: \
                 rows whose referenced row is not loaded yet will be refused"
            );
        }
        Ok(superuser)
    }

    async fn superuser(&self) -> Result<bool> {
        self.superuser
            .get_or_try_init(|| async {
                let superuser: Option<bool> = sqlx::query_scalar(
                    "SELECT rolsuper FROM pg_roles WHERE rolname = current_user",
                )
                .fetch_optional(&self.pool)
                .await
                .context(|| format!("{}: reading the role's privileges", self.place()))?;
                Ok(superuser.unwrap_or(false))
            })
            .await
            .copied()
    }

    async fn exists(
        txn: &mut Transaction<'static, Postgres>,
        schema: &str,
        table: &str,
    ) -> std::result::Result<bool, sqlx::Error> {
        sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
             WHERE n.nspname = $1 AND c.relname = $2 AND c.relkind IN ('r', 'p'))",
        )
        .bind(schema)
        .bind(table)
        .fetch_one(&mut **txn)
        .await
    }

    /// Whether the checkpoint table has the stream holder's epoch.
    async fn has_epoch(
        txn: &mut Transaction<'static, Postgres>,
        schema: &str,
    ) -> std::result::Result<bool, sqlx::Error> {
        sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM information_schema.columns \
             WHERE table_schema = $1 AND table_name = $2 AND column_name = 'epoch')",
        )
        .bind(schema)
        .bind(CHECKPOINTS)
        .fetch_one(&mut **txn)
        .await
    }

    async fn prepare_in(
        &self,
        txn: &mut Transaction<'static, Postgres>,
        tables: &[Arc<TableSchema>],
        start: Start,
    ) -> Result<()> {
        let schema = self.schema();
        let place = self.place();
        let ctx = || format!("{place}: preparing the target tables");
        let exec = |sql: String| sqlx::raw_sql(AssertSqlSafe(sql));
        // Runs preparing the same schema at once (pipelines started
        // together into a new database) go one after the other: `IF NOT
        // EXISTS` does not make two concurrent CREATEs of the checkpoint
        // table or the schema safe in PostgreSQL. Held to the commit.
        sqlx::query("SELECT pg_advisory_xact_lock(hashtext('dmp.prepare:' || $1)::bigint)")
            .bind(schema)
            .execute(&mut **txn)
            .await
            .context(ctx)?;
        // A two-way sync: what preparing empties is not a change of this
        // side's to carry back.
        if let Some(origin) = &self.options.origin {
            exec(crate::replication::origin_tag(origin))
                .execute(&mut **txn)
                .await
                .context(ctx)?;
        }
        let found: bool =
            sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = $1)")
                .bind(schema)
                .fetch_one(&mut **txn)
                .await
                .context(ctx)?;
        if !found && self.options.data_only {
            return Err(Error::Config(format!(
                "{place}: schema {schema} does not exist (--data-only creates nothing); \
                 the tables {} must exist",
                tables
                    .iter()
                    .map(|t| t.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        }
        if !found {
            exec(format!("CREATE SCHEMA {}", super::sql::quote_ident(schema)))
                .execute(&mut **txn)
                .await
                .context(ctx)?;
        }
        // Expressions (defaults, checks, views) name the schema's objects
        // unqualified, as the source's catalog printed them.
        sqlx::query("SELECT set_config('search_path', quote_ident($1), true)")
            .bind(schema)
            .execute(&mut **txn)
            .await
            .context(ctx)?;
        // The checkpoint table is dmp's own, made even in data-only runs.
        if !Self::exists(txn, schema, CHECKPOINTS).await.context(ctx)? {
            exec(ddl::create_checkpoints(schema))
                .execute(&mut **txn)
                .await
                .context(ctx)?;
        } else if !Self::has_epoch(txn, schema).await.context(ctx)? {
            exec(ddl::add_checkpoint_epoch(schema))
                .execute(&mut **txn)
                .await
                .context(ctx)?;
        }
        if self.options.conflicts.is_some() {
            exec(super::conflicts::create_conflicts(schema))
                .execute(&mut **txn)
                .await
                .context(ctx)?;
        }
        if start == Start::Fresh {
            sqlx::query(AssertSqlSafe(format!(
                "DELETE FROM {} WHERE pipeline = $1",
                qualified(schema, CHECKPOINTS)
            )))
            .bind(&self.options.pipeline)
            .execute(&mut **txn)
            .await
            .context(ctx)?;
        }
        let checkpointed = self.checkpointed(txn).await?;
        // Emptied together, in one statement: tables that reference each
        // other can only be truncated at once.
        let mut truncate: Vec<String> = Vec::new();
        for table in tables {
            let name = qualified(schema, &table.name);
            let table_ctx = || format!("{place}: preparing target table {}", table.name);
            let exists = Self::exists(txn, schema, &table.name)
                .await
                .context(table_ctx)?;
            let prep = decide(start, table, exists, &checkpointed, &self.options)
                .map_err(|refusal| refusal.error(&format!("{schema}.{}", table.name), place))?;
            match prep {
                TablePrep::Leave => {}
                TablePrep::Create { key_now } => {
                    // Upserts need the key from the first row on.
                    let key = if key_now { Key::Now } else { Key::AfterLoad };
                    create_table(txn, schema, table, key)
                        .await
                        .context(table_ctx)?;
                }
                TablePrep::Empty => truncate.push(name.clone()),
                TablePrep::Replace => {
                    exec(format!("DROP TABLE {name} CASCADE"))
                        .execute(&mut **txn)
                        .await
                        .context(table_ctx)?;
                    create_table(txn, schema, table, Key::AfterLoad)
                        .await
                        .context(table_ctx)?;
                }
                TablePrep::Restart => self.restart_partial(txn, table).await?,
            }
            // Two-way sync: a table DMP made on this side streams back
            // with full before-images, which the conflict check compares.
            if self.options.conflicts.is_some()
                && matches!(prep, TablePrep::Create { .. } | TablePrep::Replace)
            {
                exec(format!("ALTER TABLE {name} REPLICA IDENTITY FULL"))
                    .execute(&mut **txn)
                    .await
                    .context(table_ctx)?;
            }
        }
        self.keep_tombstones(txn, tables).await?;
        if !truncate.is_empty() {
            exec(format!("TRUNCATE {}", truncate.join(", ")))
                .execute(&mut **txn)
                .await
                .context(|| format!("{place}: emptying the target tables"))?;
        }
        Ok(())
    }

    /// Two-way sync: the tables whose policy orders writes (by a column
    /// or by commit time) remember their deleted rows, and by commit time
    /// the times of the rows DMP wrote (see `conflicts::tombstone_ddl`).
    async fn keep_tombstones(
        &self,
        txn: &mut Transaction<'static, Postgres>,
        tables: &[Arc<TableSchema>],
    ) -> Result<()> {
        let Some(rules) = &self.options.conflicts else {
            return Ok(());
        };
        let by_time: Vec<&str> = tables
            .iter()
            .filter(|t| rules.by_commit_time(&t.name))
            .map(|t| t.name.as_str())
            .collect();
        if let Some(first) = by_time.first() {
            let kept: bool = sqlx::query_scalar(super::conflicts::COMMIT_TIMES)
                .fetch_one(&mut **txn)
                .await
                .context(|| format!("{}: reading track_commit_timestamp", self.place()))?;
            if !kept {
                return Err(Error::Config(format!(
                    "{}: last_writer_wins by commit time (table {first}) reads each row's commit \
                     time, which the server keeps with track_commit_timestamp = on (a restart); \
                     or name a conflict_column that orders the writes",
                    self.place()
                )));
            }
        }
        for table in tables {
            // A table without the column is refused here, by name.
            let named = rules
                .order_column(table)
                .map_err(|e| Error::Config(format!("{}: {e}", self.place())))?;
            let column = match named {
                Some(c) => Some(table.columns[c].name.as_str()),
                None if rules.by_commit_time(&table.name) => None,
                None => continue,
            };
            let ctx = || {
                format!(
                    "{}: keeping the tombstones of table {}'s deleted rows",
                    self.place(),
                    table.name
                )
            };
            let statements = super::conflicts::tombstone_ddl(self.schema(), table, column)
                .map_err(|e| Error::Config(format!("{}: {e}", self.place())))?;
            for statement in statements {
                sqlx::raw_sql(AssertSqlSafe(statement))
                    .execute(&mut **txn)
                    .await
                    .context(ctx)?;
            }
        }
        Ok(())
    }

    /// Two-way sync: after a batch (when the purge is due, see
    /// `PurgeClock`), forgets the expired tombstones of its tables. A failure is only logged: the
    /// tombstones stay until the next purge.
    async fn purge_tombstones(&self, purge: Option<(Vec<String>, i64)>) {
        let (Some(rules), Some((tables, commit_us))) = (&self.options.conflicts, purge) else {
            return;
        };
        for table in tables {
            let sql = super::conflicts::purge_sql(
                self.schema(),
                &table,
                rules.tombstone_retention,
                commit_us,
            );
            if let Err(e) = sqlx::raw_sql(AssertSqlSafe(sql)).execute(&self.pool).await {
                warn!(target_place = %self.place(), table = %table, error = %e,
                    "expired tombstones not forgotten; tried again in a minute");
            }
        }
    }

    /// The pipeline's checkpoints per table, as far as preparing cares.
    async fn checkpointed(&self, txn: &mut Transaction<'static, Postgres>) -> Result<Checkpointed> {
        let checkpoints = qualified(self.schema(), CHECKPOINTS);
        let rows: Vec<(String, bool)> = sqlx::query_as(AssertSqlSafe(format!(
            "SELECT table_name, bool_or(done) FROM {checkpoints} WHERE pipeline = $1 \
             GROUP BY table_name"
        )))
        .bind(&self.options.pipeline)
        .fetch_all(&mut **txn)
        .await
        .context(|| format!("{}: reading the checkpoints", self.place()))?;
        Ok(rows.into_iter().collect())
    }

    /// A table without a primary key that was partly written cannot
    /// continue at a row count under a new snapshot: it is emptied and its
    /// checkpoints forgotten, so it is copied again from the start.
    async fn restart_partial(
        &self,
        txn: &mut Transaction<'static, Postgres>,
        table: &TableSchema,
    ) -> Result<()> {
        let ctx = || format!("{}: restarting target table {}", self.place(), table.name);
        let checkpoints = qualified(self.schema(), CHECKPOINTS);
        if self.options.if_exists == IfExists::Append {
            warn!(
                table = table.name,
                "table without primary key partly copied: emptied to copy it again, rows it had before the run included"
            );
        } else {
            info!(
                table = table.name,
                "table without primary key partly copied: copied again"
            );
        }
        sqlx::raw_sql(AssertSqlSafe(format!(
            "TRUNCATE {}",
            qualified(self.schema(), &table.name)
        )))
        .execute(&mut **txn)
        .await
        .context(ctx)?;
        sqlx::query(AssertSqlSafe(format!(
            "DELETE FROM {checkpoints} WHERE pipeline = $1 AND table_name = $2"
        )))
        .bind(&self.options.pipeline)
        .bind(&table.name)
        .execute(&mut **txn)
        .await
        .context(ctx)?;
        Ok(())
    }

    /// Whether `index` still has to be built: not when an earlier try
    /// built it; an error when something else took its planned name since.
    async fn index_missing(&self, table: &TableSchema, index: &str) -> Result<bool> {
        let ctx = || {
            format!(
                "{}: checking index {index} of table {}",
                self.place(),
                table.name
            )
        };
        let owner: Option<(String, Option<String>)> = sqlx::query_as(
            "SELECT c.relkind::text, t.relname::text FROM pg_class c \
             JOIN pg_namespace n ON n.oid = c.relnamespace \
             LEFT JOIN pg_index i ON i.indexrelid = c.oid LEFT JOIN pg_class t ON t.oid = i.indrelid \
             WHERE n.nspname = $1 AND c.relname = $2",
        )
        .bind(self.schema())
        .bind(index)
        .fetch_optional(&self.pool)
        .await
        .context(ctx)?;
        match owner {
            None => Ok(true),
            Some((kind, Some(on))) if kind == "i" && on == table.name => Ok(false),
            Some((kind, on)) => Err(Error::Config(format!(
                "{}: the name {index}, planned for an index of table {}, is now taken by {} in schema {}; \
                 run with --restart to plan the names again",
                self.place(),
                table.name,
                match (kind.as_str(), on) {
                    ("i", Some(on)) => format!("an index of table {on}"),
                    _ => format!("a relation of kind '{kind}'"),
                },
                self.schema()
            ))),
        }
    }
}

impl PostgresTarget {
    /// Adds the primary key a table was loaded without, unless it has one.
    async fn add_primary_key(&self, table: &TableSchema) -> Result<()> {
        if table.primary_key.is_empty() {
            return Ok(());
        }
        let ctx = || {
            format!(
                "{}: adding the primary key of table {}",
                self.place(),
                table.name
            )
        };
        let has_key: bool = sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM pg_index i JOIN pg_class c ON c.oid = i.indrelid \
             JOIN pg_namespace n ON n.oid = c.relnamespace \
             WHERE n.nspname = $1 AND c.relname = $2 AND i.indisprimary)",
        )
        .bind(self.schema())
        .bind(&table.name)
        .fetch_one(&self.pool)
        .await
        .context(ctx)?;
        if has_key {
            return Ok(());
        }
        let started = std::time::Instant::now();
        self.build_index(&ddl::add_primary_key(self.schema(), table))
            .await
            .context(ctx)?;
        info!(
            table = table.name,
            secs = started.elapsed().as_secs_f64(),
            "primary key built"
        );
        Ok(())
    }

    /// Moves the sequences of identity and serial columns past the largest
    /// value loaded and the source's next value: the application's first
    /// insert without a key gets a new one.
    async fn advance_identities(&self, table: &TableSchema) -> Result<()> {
        for column in table.columns.iter().filter(|c| c.identity.is_some()) {
            let ctx = || {
                format!(
                    "{}: setting the identity of {}.{}",
                    self.place(),
                    table.name,
                    column.name
                )
            };
            let max: Option<i64> = sqlx::query_scalar(AssertSqlSafe(format!(
                "SELECT max({})::bigint FROM {}",
                super::sql::quote_ident(&column.name),
                qualified(self.schema(), &table.name)
            )))
            .fetch_one(&self.pool)
            .await
            .context(ctx)?;
            if let Some(sql) = ddl::advance_identity(self.schema(), &table.name, column, max) {
                sqlx::raw_sql(AssertSqlSafe(sql))
                    .execute(&self.pool)
                    .await
                    .context(ctx)?;
            }
        }
        Ok(())
    }
}

/// Index builds sort with at least this much memory (kB; the server's
/// default is 64 MB): one sort in memory rather than runs spilled to disk.
const INDEX_SORT_KB: i64 = 256 * 1024;

impl PostgresTarget {
    /// Runs an index build (`CREATE INDEX`, `ADD PRIMARY KEY`) with
    /// `maintenance_work_mem` raised to `INDEX_SORT_KB`, never lowered.
    async fn build_index(&self, sql: &str) -> std::result::Result<(), sqlx::Error> {
        let mut txn = self.pool.begin().await?;
        sqlx::query(
            "SELECT set_config('maintenance_work_mem', $1::text || 'kB', true) FROM pg_settings \
             WHERE name = 'maintenance_work_mem' AND setting::int8 < $1",
        )
        .bind(INDEX_SORT_KB)
        .execute(&mut *txn)
        .await?;
        sqlx::raw_sql(AssertSqlSafe(sql.to_string()))
            .execute(&mut *txn)
            .await?;
        txn.commit().await
    }

    /// Creates a view (after what it reads) in one transaction.
    async fn create_view(&self, view: &View) -> Result<()> {
        let ctx = || format!("{}: creating view {}", self.place(), view.name);
        let mut txn = self.pool.begin().await.context(ctx)?;
        sqlx::query("SELECT set_config('search_path', quote_ident($1), true)")
            .bind(self.schema())
            .execute(&mut *txn)
            .await
            .context(ctx)?;
        for sql in objects::create_view(self.schema(), view) {
            sqlx::raw_sql(AssertSqlSafe(sql))
                .execute(&mut *txn)
                .await
                .context(ctx)?;
        }
        txn.commit().await.context(ctx)
    }
}

impl PostgresTarget {
    /// `table` as this side has it, for resolving a conflict at one of its
    /// keys: its primary key decides which row a key names.
    async fn keyed_table(&self, table: &str) -> Result<(Arc<WriteTable>, TableSchema)> {
        let Some(schema) = self.describe(table).await? else {
            return Err(Error::Config(format!(
                "{}: table {}.{table} does not exist",
                self.place(),
                self.schema()
            )));
        };
        if schema.primary_key.is_empty() {
            return Err(Error::Config(format!(
                "{}: table {}.{table} has no primary key: a conflict's key names no row of it",
                self.place(),
                self.schema()
            )));
        }
        Ok((self.write_table(&schema).await?, schema))
    }
}

/// What becomes of a source schema item on a PostgreSQL target (the same
/// functions build the DDL).
fn assess(schema: &str, item: SchemaItem<'_>) -> Carry<String> {
    match item {
        SchemaItem::Column(c) if c.enum_values.is_some() => {
            Carry::Converted(format!("{} with a CHECK of its values", ddl_type(c)))
        }
        SchemaItem::Column(c) => Carry::Carried(ddl_type(c)),
        SchemaItem::PrimaryKey
        | SchemaItem::Index(_)
        | SchemaItem::ForeignKey(_)
        | SchemaItem::ColumnComment(_)
        | SchemaItem::TableComment(_) => Carry::Carried(String::new()),
        SchemaItem::Check(check) => ddl::check_sql(check).map(|sql| format!("CHECK ({sql})")),
        SchemaItem::Default(c) => ddl::default_sql(c)
            .unwrap_or_else(|| Carry::NotCarried("an identity column has no default".into())),
        SchemaItem::Identity(c) => match ddl::identity_sql(schema, c) {
            Some(carry) => carry.map(|identity| match identity {
                ddl::Identity::Generated(clause) => clause,
                ddl::Identity::Serial(sequence) => format!("serial on sequence {sequence}"),
            }),
            None => Carry::NotCarried("no identity".into()),
        },
        SchemaItem::OnUpdate(c) => match ddl::on_update_sql(c) {
            Some(carry) => match carry {
                Carry::Carried(sql) | Carry::Converted(sql) => {
                    Carry::Converted(format!("a BEFORE UPDATE trigger setting {sql}"))
                }
                Carry::NotCarried(why) => Carry::NotCarried(why),
            },
            None => Carry::NotCarried("no ON UPDATE".into()),
        },
        SchemaItem::Collation(_) => {
            Carry::NotCarried("columns take the target database's default collation".into())
        }
        SchemaItem::View(view) => view_carry(view),
        SchemaItem::Sequence(_) => Carry::Carried("at the source's value".into()),
        SchemaItem::Partitioning(p) if p.dialect == Dialect::Postgres => Carry::Carried(format!(
            "PARTITION BY {}: {} partitions",
            p.key,
            p.all_partitions().len()
        )),
        SchemaItem::Partitioning(p) => Carry::NotCarried(format!(
            "{} partitioning is not written on PostgreSQL: the partitions' rows go into one table",
            p.dialect.as_str()
        )),
    }
}

/// When a new table gets its primary key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Key {
    /// With the table (rows arrive as upserts).
    Now,
    /// Once its rows are loaded (`finish_table`): one sorted index build
    /// instead of an index kept up row by row, about twice as fast a load.
    /// The checkpoints, in the batches' transactions, still keep each row
    /// from being written twice.
    AfterLoad,
}

/// Runs the statements that create `table` (see `ddl::create_table`).
async fn create_table(
    txn: &mut Transaction<'static, Postgres>,
    schema: &str,
    table: &TableSchema,
    key: Key,
) -> std::result::Result<(), sqlx::Error> {
    for sql in ddl::create_table(schema, table, key == Key::Now) {
        sqlx::raw_sql(AssertSqlSafe(sql))
            .execute(&mut **txn)
            .await?;
    }
    Ok(())
}

#[async_trait]
impl Target for PostgresTarget {
    fn column_type(&self, column: &Column) -> String {
        ddl_type(column)
    }

    fn assess(&self, _table: Option<&TableSchema>, item: SchemaItem<'_>) -> Carry<String> {
        assess(self.schema(), item)
    }

    async fn prepare_objects(&self, objects: &SchemaObjects) -> Result<()> {
        if self.options.data_only || objects.sequences.is_empty() {
            return Ok(());
        }
        let ctx = || format!("{}: creating sequences", self.place());
        self.config.check_reachable().await?;
        let mut txn = self.pool.begin().await.context(ctx)?;
        sqlx::query("SELECT set_config('search_path', quote_ident($1), true)")
            .bind(self.schema())
            .execute(&mut *txn)
            .await
            .context(ctx)?;
        sqlx::raw_sql(AssertSqlSafe(format!(
            "CREATE SCHEMA IF NOT EXISTS {}",
            super::sql::quote_ident(self.schema())
        )))
        .execute(&mut *txn)
        .await
        .context(ctx)?;
        for sequence in &objects.sequences {
            for sql in objects::create_sequence(self.schema(), sequence) {
                sqlx::raw_sql(AssertSqlSafe(sql))
                    .execute(&mut *txn)
                    .await
                    .context(|| format!("{}: creating sequence {}", self.place(), sequence.name))?;
            }
        }
        txn.commit().await.context(ctx)
    }

    async fn finish_objects(
        &self,
        objects: &SchemaObjects,
        tables: &[Arc<TableSchema>],
    ) -> Result<()> {
        if self.options.data_only {
            return Ok(());
        }
        let mut present: Vec<&str> = tables.iter().map(|t| t.name.as_str()).collect();
        for view in &objects.views {
            if view_carry(view).value().is_none() {
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
            match self.create_view(view).await {
                Ok(()) => {
                    info!(
                        view = view.name,
                        materialized = view.materialized,
                        "view created"
                    );
                    present.push(&view.name);
                }
                Err(e) => warn!(view = view.name, error = %e, "view not created"),
            }
        }
        Ok(())
    }

    async fn describe(&self, table: &str) -> Result<Option<TableSchema>> {
        let found =
            super::catalog::discover(&self.pool, self.schema(), self.place(), None, Some(table))
                .await?;
        Ok(found.into_iter().next().map(|t| t.schema))
    }

    fn name_rules(&self) -> NameRules {
        // Indexes (the primary key's included) share the schema's relation
        // names with tables; constraints are named per table.
        NameRules {
            max_bytes: ddl::MAX_IDENT_BYTES,
            case_insensitive: false,
            index: NameScope::Schema(RELATIONS),
            primary_key: NameScope::Schema(RELATIONS),
            foreign_key: NameScope::Table,
            check: NameScope::Table,
            primary_key_suffix: Some("_pkey"),
        }
    }

    async fn taken_names(&self, tables: &[String]) -> Result<Vec<TakenName>> {
        // The first contact of a plan: an unreachable server is named now,
        // not after the pool's acquire timeout.
        self.config.check_reachable().await?;
        // Relations of the schema, less the named tables and what belongs
        // to them (their indexes, their identity and serial sequences).
        let names: Vec<String> = sqlx::query_scalar(
            "SELECT c.relname::text FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
             WHERE n.nspname = $1 AND NOT (c.relname = ANY($2)) \
             AND NOT EXISTS (SELECT 1 FROM pg_index i JOIN pg_class t ON t.oid = i.indrelid \
                             WHERE i.indexrelid = c.oid AND t.relname = ANY($2)) \
             AND NOT EXISTS (SELECT 1 FROM pg_depend d JOIN pg_class t ON t.oid = d.refobjid \
                             WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid \
                             AND d.refclassid = 'pg_class'::regclass AND d.deptype IN ('a', 'i') \
                             AND t.relnamespace = c.relnamespace AND t.relname = ANY($2))",
        )
        .bind(self.schema())
        .bind(tables)
        .fetch_all(&self.pool)
        .await
        .context(|| {
            format!(
                "{}: reading the names of schema {}",
                self.place(),
                self.schema()
            )
        })?;
        Ok(names
            .into_iter()
            .map(|name| TakenName {
                group: RELATIONS,
                name,
            })
            .collect())
    }

    async fn prepare(&self, tables: &[Arc<TableSchema>], start: Start) -> Result<()> {
        let ctx = || format!("{}: preparing the target", self.place());
        self.config.check_reachable().await?;
        let mut txn = self.pool.begin().await.context(ctx)?;
        self.prepare_in(&mut txn, tables, start).await?;
        txn.commit().await.context(ctx)?;
        // A kept table may lag the source's shape, which a change stream
        // brings it to: its columns are read when first written.
        if start != Start::Keep {
            for table in tables {
                self.load(table).await?;
            }
        }
        Ok(())
    }

    async fn checkpoints(&self) -> Result<Vec<Checkpoint>> {
        let ctx = || format!("{}: reading checkpoints", self.place());
        let rows: Vec<(String, i32, String, i64, bool)> = match sqlx::query_as(AssertSqlSafe(
            format!(
                "SELECT table_name, chunk, position, \"rows\", done FROM {} WHERE pipeline = $1",
                qualified(self.schema(), CHECKPOINTS)
            ),
        ))
        .bind(&self.options.pipeline)
        .fetch_all(&self.pool)
        .await
        {
            Ok(rows) => rows,
            Err(sqlx::Error::Database(db)) if db.code().as_deref() == Some("42P01") => Vec::new(),
            Err(e) => return Err(e).context(ctx),
        };
        rows.into_iter()
            .map(|(table, chunk, position, rows, done)| {
                Ok(Checkpoint {
                    position: serde_json::from_str(&position).context(ctx)?,
                    table,
                    chunk: u32::try_from(chunk).unwrap_or(0),
                    rows: rows.unsigned_abs(),
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
        let table = match self.cached(&batch.table.name) {
            Some(t) => t,
            None => self.load(&batch.table).await?,
        };
        writer::write(
            &self.pool,
            self.schema(),
            &self.options.pipeline,
            &table,
            batch,
            checkpoint,
            rejects,
        )
        .await
        .map_err(|e| match e {
            Error::Driver { context, source } => Error::Driver {
                context: format!("{}: {context}", self.place()),
                source,
            },
            other => other,
        })
    }

    async fn apply(
        &self,
        batch: ChangeBatch,
        checkpoint: Checkpoint,
        rejects: Arc<dyn RejectSink>,
    ) -> Result<u64> {
        let mut tables = Vec::with_capacity(batch.segments.len());
        let mut evolved = Vec::new();
        for segment in &batch.segments {
            match segment {
                // Its DDL runs in the batch; no rows of it follow.
                TableChanges::Evolve { table, .. } => {
                    tables.push(None);
                    evolved.push(table.name.clone());
                }
                _ => tables.push(Some(self.write_table(segment.table()).await?)),
            }
        }
        let replica = self.superuser().await?;
        // What a purge of tombstones after it needs of the batch.
        let purge = (self.options.conflicts.as_ref())
            .filter(|r| r.keeps_tombstones() && self.purge.due(r.tombstone_retention))
            .and_then(|r| tombstone_tables(r, &batch));
        let applied = apply::apply(
            &self.pool,
            self.schema(),
            &self.options.pipeline,
            apply::ApplySession {
                replica,
                origin: self.options.origin.as_deref(),
                conflicts: self.options.conflicts.as_ref(),
            },
            &tables,
            batch,
            checkpoint,
            rejects,
        )
        .await;
        // Columns (and their types) changed: read them again when next
        // written.
        if let Ok(mut cached) = self.tables.lock() {
            for name in &evolved {
                cached.remove(name);
            }
        }
        if applied.is_ok() {
            self.purge_tombstones(purge).await;
        }
        applied.map_err(|e| match e {
            Error::Driver { context, source } => Error::Driver {
                context: format!("{}: {context}", self.place()),
                source,
            },
            other => other,
        })
    }

    async fn takes_wire(&self, table: &TableSchema, format: &WireFormat) -> Result<bool> {
        let write_table = match self.cached(&table.name) {
            Some(t) => t,
            None => self.load(table).await?,
        };
        Ok(super::wire::takes(
            format,
            &write_table.columns,
            &write_table.sql_types,
        ))
    }

    async fn advance_counters(&self, table: &TableSchema) -> Result<()> {
        self.advance_identities(table).await
    }

    async fn finish_table(&self, table: &TableSchema) -> Result<()> {
        self.advance_identities(table).await?;
        if self.options.data_only {
            return Ok(());
        }
        self.add_primary_key(table).await?;
        if let Some(statements) = ddl::on_update_trigger(self.schema(), table) {
            let ctx = || {
                format!(
                    "{}: creating the ON UPDATE trigger of table {}",
                    self.place(),
                    table.name
                )
            };
            let mut txn = self.pool.begin().await.context(ctx)?;
            for sql in statements {
                sqlx::raw_sql(AssertSqlSafe(sql))
                    .execute(&mut *txn)
                    .await
                    .context(ctx)?;
            }
            txn.commit().await.context(ctx)?;
        }
        for index in &table.indexes {
            if ddl::duplicates_primary_key(table, index)
                || !self.index_missing(table, &index.name).await?
            {
                continue;
            }
            let name = &index.name;
            let sql = ddl::create_index(self.schema(), &table.name, name, index);
            let started = std::time::Instant::now();
            self.build_index(&sql).await.context(|| {
                format!(
                    "{}: creating index {name} on table {}",
                    self.place(),
                    table.name
                )
            })?;
            info!(
                table = table.name,
                index = name,
                secs = started.elapsed().as_secs_f64(),
                "index built"
            );
        }
        Ok(())
    }

    async fn conflict_log(&self, sync_id: &str) -> Result<Vec<LoggedConflict>> {
        conflict_log::entries(&self.pool, self.schema(), self.place(), sync_id).await
    }

    async fn read_row(&self, table: &str, key: &str) -> Result<Option<String>> {
        let (write_table, schema) = self.keyed_table(table).await?;
        let key_names = schema.primary_key.clone();
        conflict_log::read_row(&self.pool, &write_table, &key_names, key, self.place()).await
    }

    async fn resolve_conflicts(&self, resolution: &Resolution<'_>) -> Result<u64> {
        let table = match resolution.write {
            RowWrite::Keep => None,
            RowWrite::Upsert(_) | RowWrite::Delete => {
                Some(self.keyed_table(resolution.table).await?)
            }
        };
        let names = table
            .as_ref()
            .map(|(_, schema)| conflict_log::column_names(schema))
            .unwrap_or_default();
        let replica = table.is_some() && self.superuser().await?;
        let written = table
            .as_ref()
            .map(|(write_table, _)| conflict_log::Written {
                table: write_table,
                names: &names,
                replica,
            });
        conflict_log::resolve(&self.pool, self.schema(), self.place(), written, resolution).await
    }

    async fn finish_pipeline(&self, tables: &[Arc<TableSchema>]) -> Result<()> {
        if self.options.data_only {
            return Ok(());
        }
        let schema = self.schema();
        for table in tables {
            for fk in &table.foreign_keys {
                let ctx = || {
                    format!(
                        "{}: adding foreign key {} to table {}",
                        self.place(),
                        fk.name,
                        table.name
                    )
                };
                let (present, parent): (bool, bool) = sqlx::query_as(
                    "SELECT EXISTS (SELECT 1 FROM pg_constraint k JOIN pg_class c ON c.oid = k.conrelid \
                       JOIN pg_namespace n ON n.oid = c.relnamespace \
                       WHERE n.nspname = $1 AND c.relname = $2 AND k.conname = $3), \
                     EXISTS (SELECT 1 FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
                       WHERE n.nspname = $1 AND c.relname = $4 AND c.relkind IN ('r', 'p'))",
                )
                .bind(schema)
                .bind(&table.name)
                .bind(&fk.name)
                .bind(&fk.references)
                .fetch_one(&self.pool)
                .await
                .context(ctx)?;
                if present {
                    continue;
                }
                if !parent {
                    warn!(
                        table = table.name,
                        foreign_key = fk.name,
                        references = fk.references,
                        "foreign key skipped: the referenced table is not on the target"
                    );
                    continue;
                }
                let sql = ddl::add_foreign_key(schema, &table.name, fk, true)?;
                match sqlx::raw_sql(AssertSqlSafe(sql)).execute(&self.pool).await {
                    Ok(_) => {}
                    // Rows refused on the way (dead-lettered parents) leave
                    // orphans: the key is added unchecked for them, and said.
                    Err(sqlx::Error::Database(db)) if db.code().as_deref() == Some("23503") => {
                        warn!(
                            table = table.name,
                            foreign_key = fk.name,
                            error = db.message(),
                            "rows violate the foreign key: added NOT VALID (checked for new rows only)"
                        );
                        let sql = ddl::add_foreign_key(schema, &table.name, fk, false)?;
                        sqlx::raw_sql(AssertSqlSafe(sql))
                            .execute(&self.pool)
                            .await
                            .context(ctx)?;
                    }
                    Err(e) => return Err(e).context(ctx),
                }
            }
        }
        Ok(())
    }
}
