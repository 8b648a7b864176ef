//! One consistent snapshot shared by every chunk reader: N sessions each
//! in a `REPEATABLE READ` transaction started `WITH CONSISTENT SNAPSHOT`
//! while a global read lock holds writes still, so they all see the same
//! data, and the binlog position of that moment (where change capture
//! will start). Readers lease a session for a chunk and give it back.
//! A session given up (cut, or stopped in the middle of a result) is
//! replaced by one in a snapshot of its own, taken when needed: the chunks
//! it reads see later data, as those of a resumed run do, and the stream
//! still starts at the first snapshot's position, before all of them.

use std::sync::{Arc, Mutex};

use futures_util::future::try_join_all;
use mysql_async::prelude::Queryable;
use mysql_async::{Conn, Pool, Row};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tracing::{info, warn};

use super::server::Server;
use crate::error::{Error, Result, ResultExt};

pub(super) struct Snapshot {
    conns: Mutex<Vec<Conn>>,
    /// Where replacement sessions come from.
    pool: Pool,
    place: String,
    permits: Arc<Semaphore>,
    /// `file=… pos=… gtid=…`, when the server keeps a binlog.
    pub(super) position: Option<String>,
}

/// A snapshot session lent to one chunk reader.
pub(super) struct Lease {
    conn: Option<Conn>,
    snapshot: Arc<Snapshot>,
    _permit: OwnedSemaphorePermit,
}

impl Lease {
    pub(super) fn conn(&mut self) -> Result<&mut Conn> {
        self.conn
            .as_mut()
            .ok_or_else(|| Error::Data("snapshot session already given up".into()))
    }

    /// Gives the session up instead of returning it: it stopped in the
    /// middle of a result (or broke), and draining that result would read
    /// the rest of the chunk for nothing.
    pub(super) fn discard(mut self) {
        self.conn = None;
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        if let Some(conn) = self.conn.take()
            && let Ok(mut conns) = self.snapshot.conns.lock()
        {
            conns.push(conn);
        }
    }
}

impl Snapshot {
    /// Opens `readers` sessions on one snapshot.
    pub(super) async fn open(
        pool: &Pool,
        server: Server,
        readers: usize,
        place: &str,
    ) -> Result<Self> {
        let ctx = || format!("{place}: opening the snapshot");
        let readers = readers.max(1);
        let mut conns = try_join_all((0..readers).map(|_| pool.get_conn()))
            .await
            .context(ctx)?;
        for conn in &mut conns {
            // Leaving the pool, a session's open transaction must end.
            conn.reset_connection(true);
        }
        let locked = match conns[0].query_drop("FLUSH TABLES WITH READ LOCK").await {
            Ok(()) => true,
            Err(mysql_async::Error::Server(e)) => {
                warn!(
                    code = e.code,
                    error = e.message,
                    "FLUSH TABLES WITH READ LOCK refused (the RELOAD privilege is needed): \
                     the chunk readers' snapshots may differ by the writes made while they start"
                );
                false
            }
            Err(e) => return Err(e).context(ctx),
        };
        let started = try_join_all(conns.iter_mut().map(|conn| async move {
            conn.query_drop("SET SESSION TRANSACTION ISOLATION LEVEL REPEATABLE READ")
                .await?;
            conn.query_drop("START TRANSACTION WITH CONSISTENT SNAPSHOT, READ ONLY")
                .await
        }))
        .await;
        let position = match started {
            Ok(_) => binlog_position(&mut conns[0], server, locked).await,
            Err(e) => Err(e),
        };
        if locked {
            conns[0].query_drop("UNLOCK TABLES").await.context(ctx)?;
        }
        let position = position.context(ctx)?;
        match &position {
            Some(p) => info!(position = p, readers, "snapshot opened"),
            None => info!(readers, "snapshot opened; the server keeps no binlog"),
        }
        Ok(Snapshot {
            conns: Mutex::new(conns),
            pool: pool.clone(),
            place: place.to_string(),
            permits: Arc::new(Semaphore::new(readers)),
            position,
        })
    }

    /// Waits for a free session.
    pub(super) async fn lease(self: &Arc<Self>) -> Result<Lease> {
        let permit = self
            .permits
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| Error::Interrupted)?;
        let idle = self
            .conns
            .lock()
            .map_err(|_| Error::Data("snapshot sessions poisoned by a panic".into()))?
            .pop();
        let conn = match idle {
            Some(conn) => conn,
            None => self.replacement().await?,
        };
        Ok(Lease {
            conn: Some(conn),
            snapshot: self.clone(),
            _permit: permit,
        })
    }

    /// Ends the snapshot's transactions once every chunk is read: open,
    /// they hold the tables' metadata locks, so that the source's next DDL
    /// on them waits, and every statement on those tables queues behind
    /// that DDL (writes the change stream then never sees).
    pub(super) async fn release(&self) {
        let conns: Vec<Conn> = match self.conns.lock() {
            Ok(mut conns) => conns.drain(..).collect(),
            Err(_) => return,
        };
        let count = conns.len();
        for mut conn in conns {
            // A session that cannot commit is dropped: its server side
            // rolls back when the connection goes.
            if conn.query_drop("COMMIT").await.is_err() {
                let _ = conn.disconnect().await;
            }
        }
        if count > 0 {
            info!(sessions = count, "snapshot released");
        }
    }

    /// A session in a consistent snapshot of its own, for one given up.
    async fn replacement(&self) -> Result<Conn> {
        let ctx = || format!("{}: replacing a lost snapshot session", self.place);
        let mut conn = self.pool.get_conn().await.context(ctx)?;
        conn.reset_connection(true);
        conn.query_drop("SET SESSION TRANSACTION ISOLATION LEVEL REPEATABLE READ")
            .await
            .context(ctx)?;
        conn.query_drop("START TRANSACTION WITH CONSISTENT SNAPSHOT, READ ONLY")
            .await
            .context(ctx)?;
        info!("a snapshot session was given up; its replacement reads the data as of now");
        Ok(conn)
    }
}

/// The binlog file, offset and GTID position of the snapshot. Without the
/// read lock, MariaDB still reports the exact position of this session's
/// snapshot (`binlog_snapshot_file/position`).
async fn binlog_position(
    conn: &mut Conn,
    server: Server,
    locked: bool,
) -> std::result::Result<Option<String>, mysql_async::Error> {
    let file_pos = if server.mariadb && !locked {
        let rows: Vec<(String, String)> =
            conn.query("SHOW STATUS LIKE 'binlog_snapshot_%'").await?;
        let get = |name: &str| {
            rows.iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.clone())
        };
        match (get("binlog_snapshot_file"), get("binlog_snapshot_position")) {
            (Some(file), Some(pos)) if !file.is_empty() => Some((file, pos)),
            _ => None,
        }
    } else {
        let status = match conn.query_first::<Row, _>("SHOW MASTER STATUS").await {
            Ok(row) => row,
            // MySQL 8.4 renamed it.
            Err(mysql_async::Error::Server(e)) if e.code == 1064 => {
                conn.query_first::<Row, _>("SHOW BINARY LOG STATUS").await?
            }
            Err(mysql_async::Error::Server(e)) => {
                warn!(
                    code = e.code,
                    error = e.message,
                    "binlog position not readable"
                );
                return Ok(None);
            }
            Err(e) => return Err(e),
        };
        status.and_then(|row| {
            let file: Option<String> = row.get(0);
            let pos: Option<String> = row.get::<u64, _>(1).map(|p| p.to_string());
            file.zip(pos)
        })
    };
    let Some((file, pos)) = file_pos else {
        return Ok(None);
    };
    let gtid_query = if server.mariadb {
        "SELECT @@GLOBAL.gtid_binlog_pos"
    } else {
        "SELECT @@GLOBAL.gtid_executed"
    };
    let gtid: Option<String> = conn.query_first(gtid_query).await.unwrap_or_default();
    Ok(Some(
        match gtid.map(|g| g.replace('\n', "")).filter(|g| !g.is_empty()) {
            Some(gtid) => format!("file={file} pos={pos} gtid={gtid}"),
            None => format!("file={file} pos={pos}"),
        },
    ))
}
