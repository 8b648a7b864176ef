//! Writes SQLite tables: one transaction per batch (or batch of changes,
//! see `apply`) holding the rows and the checkpoint in `_dmp_checkpoints`,
//! so a crash leaves both or neither. SQLite has one writer at a time, so writes share one connection.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use rusqlite::{Connection, ErrorCode, OptionalExtension, Transaction, params};

use super::apply;
use super::quote;
use super::types::{Bind, declared_type};
use crate::error::{Error, Result, ResultExt};
use dmp_contract::Endpoint;
use dmp_contract::prepare::{Checkpointed, TablePrep, decide};
use dmp_contract::{
    NameRules, NameScope, RELATIONS, RejectSink, SchemaItem, Start, TakenName, Target,
    TargetOptions,
};
use dmp_model::{
    Batch, Carry, Change, ChangeBatch, Checkpoint, Column, DataType, Dialect, Fence, Reject,
    RejectStage, Row, TableSchema, Value, json::row_to_json,
};

/// SQLite's default limit on bound parameters per statement.
const MAX_PARAMS: usize = 32_766;
/// Rows per INSERT statement: past this the gain is gone.
const MAX_ROWS_PER_INSERT: usize = 256;

pub struct SqliteTarget {
    path: PathBuf,
    /// Opened on first use, so that `dmp plan` and a failing config leave
    /// no file behind.
    conn: Arc<Mutex<Option<Connection>>>,
    options: TargetOptions,
    place: String,
}

fn connect(path: &Path) -> Result<Connection> {
    let ctx = || format!("opening SQLite target {}", path.display());
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).context(ctx)?;
    }
    let conn = Connection::open(path).context(ctx)?;
    // WAL + NORMAL: a process crash never loses a commit; a power loss
    // may roll back the last ones, together with their checkpoints.
    conn.pragma_update(None, "journal_mode", "WAL")
        .context(ctx)?;
    conn.pragma_update(None, "synchronous", "NORMAL")
        .context(ctx)?;
    conn.busy_timeout(std::time::Duration::from_secs(30))
        .context(ctx)?;
    // Tables load in parallel and in any order: a child row may arrive
    // before its parent.
    conn.pragma_update(None, "foreign_keys", "OFF")
        .context(ctx)?;
    conn.execute_batch(
        "CREATE TABLE IF NOT EXISTS _dmp_checkpoints (
            pipeline TEXT NOT NULL, table_name TEXT NOT NULL, chunk INTEGER NOT NULL,
            position TEXT NOT NULL, rows INTEGER NOT NULL, done INTEGER NOT NULL,
            epoch INTEGER NOT NULL DEFAULT 0,
            PRIMARY KEY (pipeline, table_name, chunk)) WITHOUT ROWID",
    )
    .context(ctx)?;
    // Made by a DMP before the epoch (a stream holder's fence) was kept.
    let has_epoch: bool = conn
        .query_row(
            "SELECT count(*) > 0 FROM pragma_table_info('_dmp_checkpoints') WHERE name = 'epoch'",
            [],
            |r| r.get(0),
        )
        .context(ctx)?;
    if !has_epoch {
        conn.execute_batch(
            "ALTER TABLE _dmp_checkpoints ADD COLUMN epoch INTEGER NOT NULL DEFAULT 0",
        )
        .context(ctx)?;
    }
    Ok(conn)
}

impl SqliteTarget {
    pub fn open(endpoint: &Endpoint, options: TargetOptions) -> Result<Self> {
        let path = super::config::database_path(endpoint)?;
        Ok(SqliteTarget {
            place: path.display().to_string(),
            path,
            conn: Arc::new(Mutex::new(None)),
            options,
        })
    }

    async fn blocking<T: Send + 'static>(
        &self,
        work: impl FnOnce(&mut Connection) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let conn = self.conn.clone();
        let path = self.path.clone();
        tokio::task::spawn_blocking(move || {
            let mut guard = conn
                .lock()
                .map_err(|_| Error::Data("SQLite target connection poisoned by a panic".into()))?;
            if guard.is_none() {
                *guard = Some(connect(&path)?);
            }
            match guard.as_mut() {
                Some(conn) => work(conn),
                None => Err(Error::Data("SQLite target connection missing".into())),
            }
        })
        .await
        .context(|| "SQLite target task".to_string())?
    }
}

/// The pipeline's checkpoints per table, as far as preparing cares.
fn checkpointed(txn: &rusqlite::Transaction<'_>, pipeline: &str) -> rusqlite::Result<Checkpointed> {
    let mut stmt = txn.prepare(
        "SELECT table_name, max(done) FROM _dmp_checkpoints WHERE pipeline = ?1 GROUP BY table_name",
    )?;
    let rows = stmt.query_map([pipeline], |r| {
        Ok((r.get::<_, String>(0)?, r.get::<_, bool>(1)?))
    })?;
    rows.collect()
}

fn table_exists(conn: &Connection, name: &str) -> rusqlite::Result<bool> {
    conn.query_row(
        "SELECT count(*) FROM sqlite_schema WHERE type = 'table' AND name = ?1",
        [name],
        |r| r.get::<_, i64>(0),
    )
    .map(|n| n > 0)
}

fn literal(value: &Value) -> String {
    match value {
        Value::Null => "NULL".into(),
        Value::Bool(b) => i64::from(*b).to_string(),
        Value::Int(i) => i.to_string(),
        Value::Float(f) => format!("{f:?}"),
        Value::Bytes(b) => format!("X'{}'", dmp_model::encode_hex(b)),
        other => format!("'{}'", other.to_text().replace('\'', "''")),
    }
}

fn create_table_sql(table: &TableSchema) -> String {
    let rowid_alias = table.primary_key.len() == 1;
    let autoincrement = autoincrement_column(table);
    let mut parts: Vec<String> = table
        .columns
        .iter()
        .map(|c| {
            if autoincrement == Some(c.name.as_str()) {
                return format!("{} INTEGER PRIMARY KEY AUTOINCREMENT", quote(&c.name));
            }
            let alias = rowid_alias && table.primary_key[0] == c.name;
            let mut def = format!("{} {}", quote(&c.name), declared_type(c, alias));
            if !c.nullable {
                def.push_str(" NOT NULL");
            }
            if let Some(default) = default_sql(c).and_then(Carry::value) {
                def.push_str(" DEFAULT ");
                def.push_str(&default);
            }
            if let Some(values) = &c.enum_values {
                let values: Vec<String> = values
                    .iter()
                    .map(|v| literal(&Value::Text(v.clone())))
                    .collect();
                def.push_str(&format!(
                    " CHECK ({} IN ({}))",
                    quote(&c.name),
                    values.join(", ")
                ));
            }
            def
        })
        .collect();
    if !table.primary_key.is_empty() && autoincrement.is_none() {
        let keys: Vec<String> = table.primary_key.iter().map(|k| quote(k)).collect();
        parts.push(format!("PRIMARY KEY ({})", keys.join(", ")));
    }
    for check in &table.checks {
        if let Some(expr) = check.expr.for_dialect(Dialect::Sqlite).value() {
            parts.push(format!("CONSTRAINT {} CHECK ({expr})", quote(&check.name)));
        }
    }
    // SQLite cannot add a foreign key later, and does not enforce them
    // unless asked (PRAGMA foreign_keys), so declaring them here does not
    // constrain the load order.
    for fk in &table.foreign_keys {
        let list = |cols: &[String]| cols.iter().map(|c| quote(c)).collect::<Vec<_>>().join(", ");
        parts.push(format!(
            "CONSTRAINT {} FOREIGN KEY ({}) REFERENCES {} ({}) ON DELETE {} ON UPDATE {}",
            quote(&fk.name),
            list(&fk.columns),
            quote(&fk.references),
            list(&fk.referenced_columns),
            fk.on_delete,
            fk.on_update
        ));
    }
    format!(
        "CREATE TABLE IF NOT EXISTS {} ({})",
        quote(&table.name),
        parts.join(", ")
    )
}

/// A column as `ADD COLUMN` adds it.
pub(super) fn column_def(c: &Column) -> String {
    let mut def = format!("{} {}", quote(&c.name), declared_type(c, false));
    // SQLite adds a NOT NULL column only with a default for the rows
    // there.
    let default = default_sql(c).and_then(Carry::value);
    if !c.nullable && default.is_some() {
        def.push_str(" NOT NULL");
    }
    if let Some(default) = default {
        def.push_str(" DEFAULT ");
        def.push_str(&default);
    }
    def
}

/// The column that becomes `INTEGER PRIMARY KEY AUTOINCREMENT`: an
/// integer identity that is the whole primary key.
fn autoincrement_column(table: &TableSchema) -> Option<&str> {
    let [key] = table.primary_key.as_slice() else {
        return None;
    };
    let column = table.columns.iter().find(|c| &c.name == key)?;
    (column.identity.is_some()
        && matches!(
            column.data_type,
            DataType::Int16 | DataType::Int32 | DataType::Int64
        ))
    .then_some(column.name.as_str())
}

/// A column's default here: a constant, or an expression SQLite has (in
/// parentheses, but for its clock keywords).
fn default_sql(column: &Column) -> Option<Carry<String>> {
    if let Some(value) = &column.default {
        return Some(Carry::Carried(literal(value)));
    }
    let expr = column.default_expr.as_ref()?;
    if column.identity.is_some() {
        return None;
    }
    Some(expr.for_dialect(Dialect::Sqlite).map(|sql| {
        if matches!(
            sql.as_str(),
            "CURRENT_TIMESTAMP" | "CURRENT_DATE" | "CURRENT_TIME"
        ) || sql.starts_with('(')
        {
            sql
        } else {
            format!("({sql})")
        }
    }))
}

/// The trigger that sets ON UPDATE columns (to the current time) when a row
/// changes and the update leaves them as they were.
fn on_update_sql(table: &TableSchema) -> Vec<String> {
    let mut statements = Vec::new();
    for column in &table.columns {
        let Some(Carry::Carried(expr) | Carry::Converted(expr)) = column
            .on_update
            .as_ref()
            .map(|e| e.for_dialect(Dialect::Sqlite))
        else {
            continue;
        };
        let col = quote(&column.name);
        let changed: Vec<String> = table
            .columns
            .iter()
            .filter(|c| c.name != column.name)
            .map(|c| format!("NEW.{0} IS NOT OLD.{0}", quote(&c.name)))
            .collect();
        if changed.is_empty() {
            continue;
        }
        let name = quote(&format!("{}_{}_on_update", table.name, column.name));
        statements.push(format!("DROP TRIGGER IF EXISTS {name}"));
        statements.push(format!(
            "CREATE TRIGGER {name} AFTER UPDATE ON {table} FOR EACH ROW \
             WHEN NEW.{col} IS OLD.{col} AND ({changed}) \
             BEGIN UPDATE {table} SET {col} = {expr} WHERE rowid = NEW.rowid; END",
            table = quote(&table.name),
            changed = changed.join(" OR ")
        ));
    }
    statements
}

/// What becomes of a source schema item on a SQLite target (the same
/// functions build the DDL).
fn assess(table: Option<&TableSchema>, item: SchemaItem<'_>) -> Carry<String> {
    match item {
        SchemaItem::Column(c) if c.enum_values.is_some() => Carry::Converted(format!(
            "{} with a CHECK of its values",
            declared_type(c, false)
        )),
        SchemaItem::Column(c) => Carry::Carried(declared_type(c, false)),
        SchemaItem::PrimaryKey | SchemaItem::Index(_) | SchemaItem::ForeignKey(_) => {
            Carry::Carried(String::new())
        }
        SchemaItem::Check(check) => check
            .expr
            .for_dialect(Dialect::Sqlite)
            .map(|sql| format!("CHECK ({sql})")),
        SchemaItem::Default(c) => {
            default_sql(c).unwrap_or_else(|| Carry::NotCarried("no default".into()))
        }
        SchemaItem::Identity(c) => match table.and_then(autoincrement_column) {
            Some(name) if name == c.name => {
                Carry::Converted("INTEGER PRIMARY KEY AUTOINCREMENT".into())
            }
            _ => Carry::NotCarried(
                "SQLite numbers rows only through an INTEGER PRIMARY KEY of one column".into(),
            ),
        },
        SchemaItem::OnUpdate(c) => {
            match c.on_update.as_ref().map(|e| e.for_dialect(Dialect::Sqlite)) {
                Some(Carry::Carried(sql) | Carry::Converted(sql)) => {
                    Carry::Converted(format!("an AFTER UPDATE trigger setting {sql}"))
                }
                Some(Carry::NotCarried(why)) => Carry::NotCarried(why),
                None => Carry::NotCarried("no ON UPDATE".into()),
            }
        }
        SchemaItem::ColumnComment(_) | SchemaItem::TableComment(_) => {
            Carry::NotCarried("SQLite keeps no comments".into())
        }
        SchemaItem::Collation(_) => {
            Carry::NotCarried("text columns compare by SQLite's BINARY collation".into())
        }
        SchemaItem::View(_) => {
            Carry::NotCarried("views are carried between PostgreSQL or MySQL databases only".into())
        }
        SchemaItem::Sequence(_) => Carry::NotCarried("SQLite has no sequences".into()),
        SchemaItem::Partitioning(_) => Carry::NotCarried(
            "SQLite has no partitions: the partitions' rows go into one table".into(),
        ),
    }
}

fn insert_sql(table: &TableSchema, rows: usize) -> String {
    let cols: Vec<String> = table.columns.iter().map(|c| quote(&c.name)).collect();
    let one = format!("({})", vec!["?"; cols.len()].join(","));
    format!(
        "INSERT INTO {} ({}) VALUES {}",
        quote(&table.name),
        cols.join(", "),
        vec![one.as_str(); rows].join(",")
    )
}

/// Writes `checkpoint` in `txn`, replacing the chunk's previous one.
pub(super) fn upsert_checkpoint(
    txn: &Transaction<'_>,
    pipeline: &str,
    checkpoint: &Checkpoint,
) -> Result<()> {
    let ctx = || format!("writing the checkpoint of table {}", checkpoint.table);
    let position = serde_json::to_string(&checkpoint.position).context(ctx)?;
    // A chunk write fenced on rows moves the checkpoint only from the rows
    // it was read at (`?7`); a stream's apply fenced on an epoch only over
    // an epoch no larger (`?8`). Unfenced, both are NULL: no check.
    let (rows_fence, epoch_fence) = match checkpoint.fence {
        Some(Fence::Rows(rows)) => (Some(i64::try_from(rows).unwrap_or(i64::MAX)), None),
        Some(Fence::Epoch(epoch)) => (None, Some(i64::try_from(epoch).unwrap_or(i64::MAX))),
        None => (None, None),
    };
    let written = txn
        .execute(
            "INSERT INTO _dmp_checkpoints (pipeline, table_name, chunk, position, rows, done, epoch)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, coalesce(?8, 0))
             ON CONFLICT (pipeline, table_name, chunk) DO UPDATE SET
             position = excluded.position, rows = excluded.rows, done = excluded.done,
             epoch = coalesce(?8, epoch)
             WHERE (?7 IS NULL OR (rows = ?7 AND NOT done)) AND (?8 IS NULL OR epoch <= ?8)",
            params![
                pipeline,
                checkpoint.table,
                checkpoint.chunk,
                position,
                i64::try_from(checkpoint.rows).unwrap_or(i64::MAX),
                checkpoint.done,
                rows_fence,
                epoch_fence
            ],
        )
        .context(ctx)?;
    if written == 0 {
        return Err(dmp_contract::deposed(checkpoint));
    }
    Ok(())
}

/// Errors that belong to the rows, not to the connection: such a row is
/// refused and the batch goes on.
pub(super) fn is_row_error(e: &rusqlite::Error) -> bool {
    matches!(
        e.sqlite_error_code(),
        Some(ErrorCode::ConstraintViolation | ErrorCode::TypeMismatch | ErrorCode::TooBig)
    )
}

struct BatchWriter<'a> {
    txn: &'a Transaction<'a>,
    table: &'a TableSchema,
    rejected: Vec<Reject>,
    position: &'a dmp_model::Position,
}

impl BatchWriter<'_> {
    fn ctx(&self) -> String {
        format!("writing table {}", self.table.name)
    }

    /// Inserts rows with multi-row statements; a statement that fails on a
    /// row's data is redone row by row so only the bad rows are refused.
    fn insert(&mut self, rows: &[&Row]) -> Result<u64> {
        let ncols = self.table.columns.len().max(1);
        let per_stmt = (MAX_PARAMS / ncols).clamp(1, MAX_ROWS_PER_INSERT);
        let mut written = 0;
        for group in rows.chunks(per_stmt) {
            match self.execute_insert(group) {
                Ok(()) => written += group.len() as u64,
                Err(e) if is_row_error(&e) && group.len() > 1 => {
                    for row in group {
                        match self.execute_insert(std::slice::from_ref(row)) {
                            Ok(()) => written += 1,
                            Err(e) if is_row_error(&e) => self.refuse(row, &e),
                            Err(e) => return Err(e).context(|| self.ctx()),
                        }
                    }
                }
                Err(e) if is_row_error(&e) => self.refuse(group[0], &e),
                Err(e) => return Err(e).context(|| self.ctx()),
            }
        }
        Ok(written)
    }

    fn execute_insert(&self, rows: &[&Row]) -> rusqlite::Result<()> {
        let mut stmt = self
            .txn
            .prepare_cached(&insert_sql(self.table, rows.len()))?;
        let mut index = 1;
        for row in rows {
            for value in &row.0 {
                stmt.raw_bind_parameter(index, Bind(value))?;
                index += 1;
            }
        }
        stmt.raw_execute().map(|_| ())
    }

    fn refuse(&mut self, row: &Row, e: &rusqlite::Error) {
        self.rejected.push(Reject {
            stage: RejectStage::Target,
            error: e.to_string(),
            row: row_to_json(self.table, row),
            position: self.position.clone(),
        });
    }

    /// Deletes the row matching `row`'s key (all columns when there is no
    /// primary key: one matching row).
    fn delete(&mut self, row: &Row) -> Result<()> {
        let keys: Vec<usize> = match self.table.primary_key_indices() {
            k if k.is_empty() => (0..self.table.columns.len()).collect(),
            k => k,
        };
        let cond: Vec<String> = keys
            .iter()
            .map(|&i| format!("{} IS ?", quote(&self.table.columns[i].name)))
            .collect();
        let name = quote(&self.table.name);
        let sql = format!(
            "DELETE FROM {name} WHERE rowid IN (SELECT rowid FROM {name} WHERE {} LIMIT 1)",
            cond.join(" AND ")
        );
        let values: Vec<Bind<'_>> = keys.iter().map(|&i| Bind(&row.0[i])).collect();
        self.txn
            .prepare_cached(&sql)
            .and_then(|mut s| s.execute(rusqlite::params_from_iter(values)))
            .context(|| self.ctx())?;
        Ok(())
    }
}

#[async_trait]
impl Target for SqliteTarget {
    fn column_type(&self, column: &Column) -> String {
        declared_type(column, false)
    }

    fn assess(&self, table: Option<&TableSchema>, item: SchemaItem<'_>) -> Carry<String> {
        assess(table, item)
    }

    async fn describe(&self, table: &str) -> Result<Option<TableSchema>> {
        if !self.path.exists() {
            return Ok(None);
        }
        let table = table.to_string();
        self.blocking(move |conn| {
            if !table_exists(conn, &table).context(|| format!("looking for table {table}"))? {
                return Ok(None);
            }
            super::source::discover_table(conn, &table).map(Some)
        })
        .await
    }

    fn name_rules(&self) -> NameRules {
        // One namespace for tables, indexes, views and triggers; names
        // compare without case.
        NameRules {
            max_bytes: usize::MAX,
            case_insensitive: true,
            index: NameScope::Schema(RELATIONS),
            primary_key: NameScope::Table,
            foreign_key: NameScope::Table,
            check: NameScope::Table,
            primary_key_suffix: None,
        }
    }

    async fn taken_names(&self, tables: &[String]) -> Result<Vec<TakenName>> {
        if !self.path.exists() {
            // Nothing there yet (and `dmp plan` creates no file).
            return Ok(Vec::new());
        }
        let tables = tables.to_vec();
        self.blocking(move |conn| {
            let mut stmt = conn
                .prepare("SELECT name, tbl_name FROM sqlite_schema")
                .context(|| "reading the target's names".to_string())?;
            let rows = stmt
                .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))
                .and_then(Iterator::collect::<rusqlite::Result<Vec<_>>>)
                .context(|| "reading the target's names".to_string())?;
            let ours = |name: &str| tables.iter().any(|t| t.eq_ignore_ascii_case(name));
            Ok(rows
                .into_iter()
                .filter(|(name, table)| !ours(name) && !ours(table))
                .map(|(name, _)| TakenName {
                    group: RELATIONS,
                    name,
                })
                .collect())
        })
        .await
    }

    async fn prepare(&self, tables: &[Arc<TableSchema>], start: Start) -> Result<()> {
        let tables = tables.to_vec();
        let options = self.options.clone();
        let place = self.place.clone();
        self.blocking(move |conn| {
            let ctx = || format!("preparing SQLite target {place}");
            let txn = conn.transaction().context(ctx)?;
            if start == Start::Fresh {
                txn.execute(
                    "DELETE FROM _dmp_checkpoints WHERE pipeline = ?1",
                    [&options.pipeline],
                )
                .context(ctx)?;
            }
            let checkpointed = checkpointed(&txn, &options.pipeline).context(ctx)?;
            for table in &tables {
                let name = quote(&table.name);
                let exists = table_exists(&txn, &table.name).context(ctx)?;
                let prep = decide(start, table, exists, &checkpointed, &options)
                    .map_err(|refusal| refusal.error(&table.name, &place))?;
                let statements = match prep {
                    TablePrep::Leave => vec![],
                    // SQLite tables get their key with them.
                    TablePrep::Create { .. } => vec![create_table_sql(table)],
                    TablePrep::Empty => vec![format!("DELETE FROM {name}")],
                    TablePrep::Replace => {
                        vec![format!("DROP TABLE {name}"), create_table_sql(table)]
                    }
                    // In the same transaction as forgetting its checkpoints.
                    TablePrep::Restart => vec![format!("DELETE FROM {name}")],
                };
                for statement in statements {
                    txn.execute(&statement, []).context(ctx)?;
                }
                if prep == TablePrep::Restart {
                    txn.execute(
                        "DELETE FROM _dmp_checkpoints WHERE pipeline = ?1 AND table_name = ?2",
                        [&options.pipeline, &table.name],
                    )
                    .context(ctx)?;
                }
            }
            txn.commit().context(ctx)
        })
        .await
    }

    async fn checkpoints(&self) -> Result<Vec<Checkpoint>> {
        let pipeline = self.options.pipeline.clone();
        self.blocking(move |conn| {
            let ctx = || "reading checkpoints from the SQLite target".to_string();
            let mut stmt = conn
                .prepare("SELECT table_name, chunk, position, rows, done FROM _dmp_checkpoints WHERE pipeline = ?1")
                .context(ctx)?;
            let rows: Vec<(String, u32, String, i64, bool)> = stmt
                .query_map([&pipeline], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)))
                .and_then(|rows| rows.collect())
                .context(ctx)?;
            rows.into_iter()
                .map(|(table, chunk, position, rows, done)| {
                    Ok(Checkpoint {
                        position: serde_json::from_str(&position).context(ctx)?,
                        table,
                        chunk,
                        rows: rows.unsigned_abs(),
                        done,
                        fence: None,
                    })
                })
                .collect()
        })
        .await
    }

    async fn write(
        &self,
        batch: Batch,
        checkpoint: Checkpoint,
        rejects: Arc<dyn RejectSink>,
    ) -> Result<u64> {
        let pipeline = self.options.pipeline.clone();
        self.blocking(move |conn| {
            let table = &*batch.table;
            let ctx = || format!("writing table {} chunk {}", table.name, batch.chunk);
            let txn = conn.transaction().context(ctx)?;
            let mut writer = BatchWriter {
                txn: &txn,
                table,
                rejected: Vec::new(),
                position: &batch.position,
            };
            let mut written = 0;
            let mut pending: Vec<&Row> = Vec::new();
            for change in &batch.changes {
                if let Change::Insert(row) = change {
                    pending.push(row);
                    continue;
                }
                written += writer.insert(&pending)?;
                pending.clear();
                match change {
                    Change::Update { before, after } => {
                        writer.delete(before.as_ref().unwrap_or(after))?;
                        written += writer.insert(&[after])?;
                    }
                    Change::Delete(row) => {
                        writer.delete(row)?;
                        written += 1;
                    }
                    Change::Insert(_) => {}
                }
            }
            written += writer.insert(&pending)?;
            let refused = std::mem::take(&mut writer.rejected);
            upsert_checkpoint(&txn, &pipeline, &checkpoint)?;
            if !refused.is_empty() {
                rejects.reject(table, refused)?;
            }
            txn.commit().context(ctx)?;
            Ok(written)
        })
        .await
    }

    async fn apply(
        &self,
        batch: ChangeBatch,
        checkpoint: Checkpoint,
        rejects: Arc<dyn RejectSink>,
    ) -> Result<u64> {
        let pipeline = self.options.pipeline.clone();
        self.blocking(move |conn| apply::apply(conn, &pipeline, &batch, &checkpoint, &*rejects))
            .await
    }

    async fn finish_table(&self, table: &TableSchema) -> Result<()> {
        if self.options.data_only {
            return Ok(());
        }
        let table = table.clone();
        self.blocking(move |conn| {
            let ctx = || format!("finishing table {}", table.name);
            for sql in on_update_sql(&table) {
                conn.execute(&sql, []).context(ctx)?;
            }
            if let Some(next) = autoincrement_column(&table)
                .and_then(|name| table.columns.iter().find(|c| c.name == name))
                .and_then(|c| c.identity.as_ref()?.next)
            {
                // AUTOINCREMENT hands out past the largest number it has
                // seen; the source's counter may be further on.
                let updated = conn
                    .execute(
                        "UPDATE sqlite_sequence SET seq = ?2 WHERE name = ?1 AND seq < ?2",
                        params![table.name, next - 1],
                    )
                    .context(ctx)?;
                let known: bool = conn
                    .query_row(
                        "SELECT count(*) > 0 FROM sqlite_sequence WHERE name = ?1",
                        [&table.name],
                        |r| r.get(0),
                    )
                    .context(ctx)?;
                if updated == 0 && !known {
                    conn.execute(
                        "INSERT INTO sqlite_sequence (name, seq) VALUES (?1, ?2)",
                        params![table.name, next - 1],
                    )
                    .context(ctx)?;
                }
            }
            for index in &table.indexes {
                // Names were planned unique; one taken since is an error,
                // not an index silently left out by IF NOT EXISTS.
                let owner: Option<(String, String)> = conn
                    .query_row(
                        "SELECT type, tbl_name FROM sqlite_schema WHERE name = ?1 COLLATE NOCASE",
                        [&index.name],
                        |r| Ok((r.get(0)?, r.get(1)?)),
                    )
                    .optional()
                    .context(|| format!("checking index {} of table {}", index.name, table.name))?;
                match owner {
                    None => {}
                    Some((kind, on)) if kind == "index" && on.eq_ignore_ascii_case(&table.name) => {
                        continue;
                    }
                    Some((kind, on)) => {
                        return Err(Error::Config(format!(
                            "the name {}, planned for an index of table {}, is now taken by the {kind} {on}; \
                             run with --restart to plan the names again",
                            index.name, table.name
                        )));
                    }
                }
                let cols: Vec<String> = index.columns.iter().map(|c| quote(c)).collect();
                let sql = format!(
                    "CREATE {}INDEX IF NOT EXISTS {} ON {} ({})",
                    if index.unique { "UNIQUE " } else { "" },
                    quote(&index.name),
                    quote(&table.name),
                    cols.join(", ")
                );
                conn.execute(&sql, [])
                    .context(|| format!("creating index {} on table {}", index.name, table.name))?;
            }
            Ok(())
        })
        .await
    }
}
