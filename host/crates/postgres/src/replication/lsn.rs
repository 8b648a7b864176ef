//! WAL positions (`0/16B3748`) and the `lsn=…` text they take in stream
//! positions, which checkpoints store and the engine compares as text: one
//! spelling for each position (upper-case hex, as PostgreSQL prints it).

use std::fmt;

use dmp_model::Position;

/// A WAL position: a byte offset in the server's write-ahead log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub(super) struct Lsn(pub(super) u64);

impl Lsn {
    /// Parses PostgreSQL's `hi/lo` hex form.
    pub(super) fn parse(text: &str) -> Option<Lsn> {
        let (hi, lo) = text.trim().split_once('/')?;
        let valid = |part: &str| !part.is_empty() && part.len() <= 8;
        if !valid(hi) || !valid(lo) {
            return None;
        }
        let hi = u32::from_str_radix(hi, 16).ok()?;
        let lo = u32::from_str_radix(lo, 16).ok()?;
        Some(Lsn(u64::from(hi) << 32 | u64::from(lo)))
    }

    /// The LSN of a position text: `lsn=0/16B3748`, possibly followed by
    /// other `key=value` words (`lsn=… snapshot=…`).
    pub(super) fn from_position_text(text: &str) -> Option<Lsn> {
        text.split_whitespace()
            .find_map(|word| word.strip_prefix("lsn="))
            .and_then(Lsn::parse)
    }

    /// The LSN a stream position stands at (for a position inside a
    /// transaction, the start of that transaction).
    pub(super) fn from_position(position: &Position) -> Option<Lsn> {
        match position {
            Position::Log { log, .. } => Lsn::from_position_text(log),
            _ => None,
        }
    }

    /// `lsn=0/16B3748`.
    pub(super) fn log_text(self) -> String {
        format!("lsn={self}")
    }

    /// A stream position at a transaction boundary.
    pub(super) fn position(self) -> Position {
        Position::Log {
            log: self.log_text(),
            skip: 0,
        }
    }
}

impl fmt::Display for Lsn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:X}/{:X}", self.0 >> 32, self.0 & 0xffff_ffff)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lsns_parse_and_print_as_postgres_does() {
        let lsn = Lsn::parse("0/16B3748").unwrap();
        assert_eq!(lsn, Lsn(0x16B_3748));
        assert_eq!(lsn.to_string(), "0/16B3748");
        assert_eq!(Lsn::parse("0/16b3748"), Some(lsn));
        let high = Lsn::parse("1A/0").unwrap();
        assert_eq!(high, Lsn(0x1A_0000_0000));
        assert_eq!(high.to_string(), "1A/0");
        assert_eq!(
            Lsn(u64::MAX).to_string(),
            "FFFFFFFF/FFFFFFFF",
            "the widest position"
        );
        assert!(Lsn(0x1_0000_0000) > Lsn(0xFFFF_FFFF));
        for bad in ["", "0", "/1", "1/", "g/1", "1/2/3", "123456789/0"] {
            assert_eq!(Lsn::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn position_texts() {
        let lsn = Lsn(0x16B_3748);
        assert_eq!(lsn.log_text(), "lsn=0/16B3748");
        assert_eq!(
            lsn.position(),
            Position::Log {
                log: "lsn=0/16B3748".into(),
                skip: 0
            }
        );
        assert_eq!(
            Lsn::from_position_text("lsn=0/16B3748 snapshot=00000003-0000001B-1"),
            Some(lsn)
        );
        assert_eq!(
            Lsn::from_position_text("snapshot=00000003-0000001B-1"),
            None
        );
        assert_eq!(
            Lsn::from_position(&Position::Log {
                log: "lsn=0/16B3748".into(),
                skip: 7
            }),
            Some(lsn)
        );
        assert_eq!(Lsn::from_position(&Position::Start), None);
        assert_eq!(
            Lsn::from_position_text("file=binlog.000001;pos=4"),
            None,
            "a binlog position is no LSN"
        );
    }
}
