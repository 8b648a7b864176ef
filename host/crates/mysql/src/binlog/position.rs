//! Stream positions as text: `file=binlog.000003;pos=1234;gtid=0-1-57`.
//! The file and offset are where the stream resumes (exactly); the GTID
//! state of that point is kept for failover and for a server that no
//! longer has the file.

use std::fmt;

use super::gtid::Gtid;
use crate::error::{Error, Result};
use dmp_model::Position;

/// A point between two binlog events.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct LogPosition {
    pub(super) file: String,
    pub(super) pos: u64,
    pub(super) gtid: Option<Gtid>,
}

impl LogPosition {
    /// Reads the text `Display` writes.
    pub(super) fn parse(text: &str) -> Result<LogPosition> {
        let bad = |why: &str| {
            Error::Data(format!(
                "MySQL binlog position `{text}` {why} (expected file=…;pos=…[;gtid=…])"
            ))
        };
        let mut file = None;
        let mut pos = None;
        let mut gtid = None;
        for part in text.split(';').filter(|p| !p.trim().is_empty()) {
            let (key, value) = part
                .split_once('=')
                .ok_or_else(|| bad("has a part without `=`"))?;
            match key.trim() {
                "file" => file = Some(value.trim().to_string()),
                "pos" => {
                    pos = Some(
                        value
                            .trim()
                            .parse::<u64>()
                            .map_err(|_| bad("has a pos that is not a number"))?,
                    )
                }
                "gtid" if value.trim().is_empty() => {}
                "gtid" => gtid = Some(Gtid::parse(value).map_err(|e| bad(&e))?),
                _ => return Err(bad("has an unknown part")),
            }
        }
        match (file, pos) {
            (Some(file), Some(pos)) if !file.is_empty() => Ok(LogPosition { file, pos, gtid }),
            _ => Err(bad("lacks the file or the pos")),
        }
    }

    /// Reads the snapshot position the MySQL source records
    /// (`file=binlog.000003 pos=1234 gtid=0-1-57`, space separated).
    pub(super) fn from_snapshot(text: &str) -> Option<LogPosition> {
        let mut file = None;
        let mut pos = None;
        let mut gtid = None;
        for part in text.split_whitespace() {
            let (key, value) = part.split_once('=')?;
            match key {
                "file" => file = Some(value.to_string()),
                "pos" => pos = value.parse::<u64>().ok(),
                "gtid" if value.is_empty() => {}
                "gtid" => gtid = Some(Gtid::parse(value).ok()?),
                _ => return None,
            }
        }
        Some(LogPosition {
            file: file.filter(|f| !f.is_empty())?,
            pos: pos?,
            gtid,
        })
    }

    /// As a stream position at a transaction boundary.
    pub(super) fn to_position(&self) -> Position {
        Position::Log {
            log: self.to_string(),
            skip: 0,
        }
    }
}

impl fmt::Display for LogPosition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "file={};pos={}", self.file, self.pos)?;
        match &self.gtid {
            Some(gtid) => write!(f, ";gtid={gtid}"),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_read_back_what_they_write() {
        for text in [
            "file=binlog.000003;pos=1234;gtid=0-1-57",
            "file=binlog.000003;pos=4",
            "file=mysql-bin.000001;pos=157;gtid=3e11fa47-71ca-11e1-9e33-c80aa9429562:1-5",
        ] {
            let p = LogPosition::parse(text).unwrap();
            assert_eq!(p.to_string(), text);
        }
        let p = LogPosition::parse("file=binlog.000003;pos=1234;gtid=").unwrap();
        assert_eq!(p.gtid, None);
        assert!(LogPosition::parse("file=binlog.000003").is_err());
        assert!(LogPosition::parse("file=b;pos=x").is_err());
        assert!(LogPosition::parse("lsn=0/16B3748").is_err());
        assert!(LogPosition::parse("file=b;pos=4;gtid=0-1").is_err());
    }

    #[test]
    fn snapshot_positions_become_stream_positions() {
        let p = LogPosition::from_snapshot("file=binlog.000002 pos=328 gtid=0-1-4").unwrap();
        assert_eq!(p.to_string(), "file=binlog.000002;pos=328;gtid=0-1-4");
        let p = LogPosition::from_snapshot("file=binlog.000002 pos=328").unwrap();
        assert_eq!(p.to_string(), "file=binlog.000002;pos=328");
        let uuid = "3e11fa47-71ca-11e1-9e33-c80aa9429562";
        let p = LogPosition::from_snapshot(&format!("file=b.1 pos=9 gtid={uuid}:1-5,{uuid}:7"))
            .unwrap();
        assert_eq!(p.to_string(), format!("file=b.1;pos=9;gtid={uuid}:1-5:7"));
        assert_eq!(LogPosition::from_snapshot("lsn=0/16B3748"), None);
        assert_eq!(LogPosition::from_snapshot("file=b pos=x"), None);
    }
}
