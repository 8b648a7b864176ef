//! What the server must offer a binlog reader, checked before a run
//! relies on it, and where its binlog stands now.

use mysql_async::prelude::Queryable;
use mysql_async::{Conn, Row};
use tracing::{info, warn};

use super::super::server::Server;
use super::gtid::Gtid;
use super::position::LogPosition;
use crate::error::{Error, Result, ResultExt};

/// The privileges a reader needs, for messages.
pub(super) const PRIVILEGES: &str =
    "REPLICATION SLAVE and REPLICATION CLIENT (MariaDB 10.5+: BINLOG MONITOR)";

/// Refuses a server whose binlog cannot feed a row stream; warns about
/// settings that lose data in some cases.
pub(super) async fn check(conn: &mut Conn, server: Server, place: &str) -> Result<()> {
    let ctx = || format!("{place}: reading the binlog settings");
    let settings: Option<(Option<String>, Option<String>, Option<String>)> = conn
        .query_first("SELECT @@GLOBAL.log_bin, @@GLOBAL.binlog_format, @@GLOBAL.binlog_row_image")
        .await
        .context(ctx)?;
    let (log_bin, format, image) = settings.unwrap_or_default();
    if !matches!(log_bin.as_deref(), Some("1" | "ON")) {
        return Err(Error::Config(format!(
            "{place}: the {} server keeps no binary log; start it with log_bin (and \
             binlog_format=ROW) to stream its changes",
            server.name()
        )));
    }
    let format = format.unwrap_or_default();
    if !format.eq_ignore_ascii_case("ROW") {
        return Err(Error::Config(format!(
            "{place}: binlog_format is {format}; change data capture needs ROW \
             (SET GLOBAL binlog_format = 'ROW', and in the server's configuration)"
        )));
    }
    let image = image.unwrap_or_default();
    if !image.eq_ignore_ascii_case("FULL") {
        warn!(
            binlog_row_image = image,
            "binlog_row_image is not FULL: deleted and updated rows come with their key \
             only, and an update that does not log every column is refused (dead-lettered)"
        );
    }
    // Named in MySQL 8.0.1+ and MariaDB 10.5+; older servers log no names.
    let metadata: Option<String> = conn
        .query_first("SELECT @@GLOBAL.binlog_row_metadata")
        .await
        .unwrap_or_default();
    if !metadata
        .as_deref()
        .is_some_and(|m| m.eq_ignore_ascii_case("FULL"))
    {
        info!(
            binlog_row_metadata = metadata.as_deref().unwrap_or("unknown"),
            "the binlog carries no column names: columns are matched by position"
        );
    }
    if server.mariadb {
        let compressed: Option<String> = conn
            .query_first("SELECT @@GLOBAL.log_bin_compress")
            .await
            .unwrap_or_default();
        if matches!(compressed.as_deref(), Some("1" | "ON")) {
            return Err(Error::Config(format!(
                "{place}: log_bin_compress is ON; compressed binlog events cannot be \
                 decoded: turn it off"
            )));
        }
    }
    check_grants(conn, place).await
}

/// `SHOW GRANTS` of the current user should name the replication
/// privileges; roles can grant them too, so a miss only warns (the dump
/// itself then fails with a clear message).
async fn check_grants(conn: &mut Conn, place: &str) -> Result<()> {
    let grants: Vec<String> = conn
        .query("SHOW GRANTS")
        .await
        .context(|| format!("{place}: reading the user's privileges"))?;
    let all = grants.join("\n").to_ascii_uppercase();
    let global = |what: &str| {
        all.lines()
            .any(|g| g.contains(" ON *.* ") && (g.contains(what) || g.contains("ALL PRIVILEGES")))
    };
    let slave = global("REPLICATION SLAVE") || global("REPLICATION REPLICA");
    let client = global("REPLICATION CLIENT") || global("BINLOG MONITOR") || global("SUPER");
    if !(slave && client) {
        warn!(
            "the user's grants do not show {PRIVILEGES} on *.*; streaming fails unless a role grants them"
        );
    }
    Ok(())
}

/// The end of the server's binlog and its GTID state there.
pub(super) async fn current(conn: &mut Conn, server: Server, place: &str) -> Result<LogPosition> {
    let ctx = || format!("{place}: reading the binlog position");
    let status = match conn.query_first::<Row, _>("SHOW MASTER STATUS").await {
        Ok(row) => row,
        // MySQL 8.4 renamed it.
        Err(mysql_async::Error::Server(e)) if e.code == 1064 => conn
            .query_first::<Row, _>("SHOW BINARY LOG STATUS")
            .await
            .context(ctx)?,
        Err(mysql_async::Error::Server(e)) if e.code == 1227 => {
            return Err(Error::Config(format!(
                "{place}: the user may not read the binlog position ({}); grant {PRIVILEGES}",
                e.message
            )));
        }
        Err(e) => return Err(e).context(ctx),
    };
    let Some(row) = status else {
        return Err(Error::Config(format!(
            "{place}: the server reports no binlog position; start it with log_bin"
        )));
    };
    let file: Option<String> = row.get_opt(0).and_then(|r| r.ok());
    let pos: Option<u64> = row.get_opt(1).and_then(|r| r.ok());
    let (Some(file), Some(pos)) = (file, pos) else {
        return Err(Error::Data(format!(
            "{place}: SHOW MASTER STATUS gave no file and position"
        )));
    };
    let gtid_text: Option<String> = if server.mariadb {
        // The GTID state of exactly this file and offset.
        conn.exec_first("SELECT BINLOG_GTID_POS(?, ?)", (&file, pos))
            .await
            .context(ctx)?
    } else {
        // Read in the same statement as the position.
        row.get_opt::<Option<String>, usize>(4)
            .and_then(|r| r.ok())
            .flatten()
    };
    let gtid = gtid_text
        .map(|g| g.replace(['\n', ' '], ""))
        .filter(|g| !g.is_empty())
        .map(|g| Gtid::parse(&g))
        .transpose()
        .map_err(|e| Error::Data(format!("{place}: the server's GTID state: {e}")))?;
    Ok(LogPosition { file, pos, gtid })
}
