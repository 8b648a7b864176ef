//! Change data capture from MySQL and MariaDB: a reader registered as a
//! replica streams the row binlog (`binlog_format=ROW`), decoded with the
//! snapshot's type mapping. Positions are `file=…;pos=…;gtid=…`: the
//! stream resumes exactly at the file and offset, the GTID state is kept
//! for failover and used when the file is gone. The server keeps its
//! binlogs for its own expiry settings, not for this reader: nothing is
//! created at the source and nothing is acknowledged to it.
//!
//! Schema changes (ALTER / DROP / RENAME / CREATE TABLE) of a streamed
//! table stop the stream with an error naming the statement: the chosen
//! policy, since the target's shape must be changed to match first.
//! `TRUNCATE` is streamed as a truncate.

mod alter;
mod columns;
mod ddl;
mod gtid;
mod jsonb;
#[cfg(test)]
mod live_tests;
mod position;
mod rows;
mod setup;
mod stream;
mod wkt;

use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use mysql_async::{Conn, Pool};
use tokio::sync::{OnceCell, mpsc, watch};
use tracing::{Instrument, info};

use super::config::{MysqlConfig, Role};
use super::server::Server;
use crate::error::{Error, Result, ResultExt};
use dmp_contract::{ChangeFeed, ChangeOptions, ChangeSource, SnapshotStart, StreamLag};
use dmp_model::{Position, TableSchema};
use position::LogPosition;

/// Events the reader may hold ready ahead of the applier.
const CHANNEL_EVENTS: usize = 1024;

pub(crate) struct MysqlChanges {
    config: MysqlConfig,
    options: ChangeOptions,
    /// A session for checks and positions, opened at first use.
    control: OnceCell<(Pool, Server)>,
    /// What the applier of the open stream confirmed last.
    confirmed: Mutex<Option<watch::Receiver<Option<Position>>>>,
}

impl MysqlChanges {
    pub(super) fn new(config: MysqlConfig, options: ChangeOptions) -> Self {
        MysqlChanges {
            config,
            options,
            control: OnceCell::new(),
            confirmed: Mutex::new(None),
        }
    }

    async fn control(&self) -> Result<(Conn, Server)> {
        let (pool, server) = self
            .control
            .get_or_try_init(|| self.config.connect(Role::Source, 1))
            .await?;
        let conn = pool.get_conn().await.context(|| self.config.connecting())?;
        Ok((conn, *server))
    }

    fn server_id(&self) -> u32 {
        self.options
            .server_id
            .unwrap_or_else(|| derived_server_id(&self.options.pipeline))
    }
}

/// A stable server id for a pipeline, away from the small numbers servers
/// are usually given: FNV-1a of the name into 1 000 000 .. 2^31.
fn derived_server_id(pipeline: &str) -> u32 {
    let hash = pipeline.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    });
    const LOW: u64 = 1_000_000;
    const HIGH: u64 = 1 << 31;
    u32::try_from(LOW + hash % (HIGH - LOW)).unwrap_or(u32::MAX)
}

#[async_trait]
impl ChangeSource for MysqlChanges {
    /// Checks the server; the stream then starts at the snapshot's own
    /// binlog position (`Source::snapshot_position`).
    async fn begin_snapshot(
        &self,
        _tables: &[Arc<TableSchema>],
        _fresh: bool,
    ) -> Result<SnapshotStart> {
        let (mut conn, server) = self.control().await?;
        setup::check(&mut conn, server, &self.config.place).await?;
        Ok(SnapshotStart {
            position: None,
            snapshot: None,
        })
    }

    async fn current_position(&self, _tables: &[Arc<TableSchema>]) -> Result<Position> {
        let (mut conn, server) = self.control().await?;
        setup::check(&mut conn, server, &self.config.place).await?;
        let at = setup::current(&mut conn, server, &self.config.place).await?;
        info!(position = %at, "binlog position now");
        Ok(at.to_position())
    }

    async fn position_from_snapshot(&self, snapshot_position: &str) -> Result<Option<Position>> {
        Ok(LogPosition::from_snapshot(snapshot_position).map(|p| p.to_position()))
    }

    async fn open(&self, tables: Vec<Arc<TableSchema>>, from: Position) -> Result<ChangeFeed> {
        let Position::Log { log, .. } = &from else {
            return Err(Error::Data(format!(
                "the MySQL change stream cannot start at {from:?}: not a binlog position"
            )));
        };
        let from = LogPosition::parse(log)?;
        let (mut conn, server) = self.control().await?;
        // The tables as the catalog has them now: the binlog columns
        // (`columns::load`) are read now too, and the two must agree. Rows
        // older than that come with fewer columns, which the reader takes
        // as the older shape they are.
        let mut tables = tables;
        for table in &mut tables {
            let now = super::catalog::discover(
                &mut conn,
                server,
                &self.config.database,
                None,
                Some(&table.name),
            )
            .await?;
            if let Some(found) = now.into_iter().next() {
                *table = Arc::new(found.schema);
            }
        }
        let names: Vec<&str> = tables.iter().map(|t| t.name.as_str()).collect();
        let columns = columns::load(&mut conn, &self.config.database, &names).await?;
        // The source's session settings, on a connection outside the pool:
        // a binlog dump never gives its session back.
        let opts = conn.opts().clone();
        drop(conn);
        let setup = stream::Setup {
            opts,
            server,
            server_id: self.server_id(),
            place: self.config.place.clone(),
            database: self.config.database.clone(),
            tables,
            columns,
            from,
            heartbeat: self.options.heartbeat,
            selection: self.options.selection.clone(),
            skip_flagged: self.options.origin.is_some(),
            origin: self.options.origin.clone(),
        };
        let (tx, rx) = mpsc::channel(CHANNEL_EVENTS);
        let (confirmed, watched) = watch::channel(None);
        if let Ok(mut slot) = self.confirmed.lock() {
            *slot = Some(watched);
        }
        let span = tracing::info_span!("binlog", server_id = setup.server_id);
        Ok(ChangeFeed::spawn(
            rx,
            confirmed,
            stream::run(setup, tx).instrument(span),
        ))
    }

    /// The server's binlog position now and the last one the applier
    /// confirmed. The server keeps no binlog for a reader (its expiry
    /// settings decide), so there is no retained size to report.
    async fn lag(&self) -> Result<StreamLag> {
        let (mut conn, server) = self.control().await?;
        let current = setup::current(&mut conn, server, &self.config.place).await?;
        let confirmed = self
            .confirmed
            .lock()
            .ok()
            .and_then(|slot| slot.as_ref().map(|rx| rx.borrow().clone()))
            .flatten()
            .map(|p| match p {
                Position::Log { log, skip: 0 } => log,
                Position::Log { log, skip } => format!("{log} (+{skip} changes)"),
                other => format!("{other:?}"),
            });
        Ok(StreamLag {
            retained_bytes: None,
            current: Some(current.to_string()),
            confirmed,
        })
    }

    async fn drop_stream(&self) -> Result<()> {
        info!(
            place = self.config.place,
            "nothing to drop at a MySQL source: its binlogs are kept per its own expiry \
             settings (binlog_expire_logs_seconds)"
        );
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_ids_are_stable_and_out_of_the_usual_range() {
        let a = derived_server_id("orders");
        assert_eq!(a, derived_server_id("orders"));
        assert_ne!(a, derived_server_id("orders2"));
        for name in ["", "a", "orders", "a very long pipeline name indeed"] {
            let id = derived_server_id(name);
            assert!((1_000_000..1 << 31).contains(&id), "{id}");
        }
    }
}
