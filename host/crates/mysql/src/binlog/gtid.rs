//! GTID states as the two servers write them: MariaDB's list of the last
//! `domain-server-seq` of each replication domain, MySQL's set of executed
//! `uuid:interval` ranges. Both are recorded with every stream position so
//! that a replica of another server (failover), or a server whose binlog
//! file is gone, can still be asked for the changes after it.

use std::collections::BTreeMap;
use std::fmt;

use mysql_async::{GnoInterval, Sid};
use uuid::Uuid;

/// The transactions a position has seen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Gtid {
    /// MariaDB `@@gtid_binlog_pos`: per domain, the last transaction.
    Maria(BTreeMap<u32, (u32, u64)>),
    /// MySQL `@@gtid_executed`: per source uuid (and tag), the executed
    /// transaction numbers as inclusive ranges, sorted and disjoint.
    Mysql(BTreeMap<(Uuid, String), Vec<(u64, u64)>>),
}

impl Gtid {
    /// Reads `0-1-57,1-2-9` (MariaDB) or `3e11fa47-…:1-5:7,…` (MySQL, with
    /// optional `:tag:` parts).
    pub(super) fn parse(text: &str) -> Result<Gtid, String> {
        let text: String = text.chars().filter(|c| !c.is_whitespace()).collect();
        if text.contains(':') {
            parse_mysql(&text).map(Gtid::Mysql)
        } else {
            parse_maria(&text).map(Gtid::Maria)
        }
    }

    /// MariaDB: the transaction `domain-server-seq` was applied.
    pub(super) fn add_maria(&mut self, domain: u32, server: u32, seq: u64) {
        if let Gtid::Maria(domains) = self {
            domains.insert(domain, (server, seq));
        }
    }

    /// MySQL: the transaction `uuid[:tag]:gno` was applied.
    pub(super) fn add_mysql(&mut self, uuid: Uuid, tag: &str, gno: u64) {
        let Gtid::Mysql(sets) = self else {
            return;
        };
        let ranges = sets.entry((uuid, tag.to_string())).or_default();
        ranges.push((gno, gno));
        normalize(ranges);
    }

    /// The sets to send with `COM_BINLOG_DUMP_GTID` (MySQL only). Tagged
    /// sets cannot be sent through mysql_async: they are left out (the
    /// server then sends those transactions again) and counted.
    pub(super) fn mysql_sids(&self) -> (Vec<Sid<'static>>, usize) {
        let Gtid::Mysql(sets) = self else {
            return (Vec::new(), 0);
        };
        let mut sids = Vec::new();
        let mut tagged = 0;
        for ((uuid, tag), ranges) in sets {
            if !tag.is_empty() {
                tagged += 1;
                continue;
            }
            let intervals = ranges
                .iter()
                .map(|&(start, end)| GnoInterval::new(start, end.saturating_add(1)))
                .collect();
            sids.push(Sid::new(*uuid.as_bytes()).with_intervals(intervals));
        }
        (sids, tagged)
    }
}

impl fmt::Display for Gtid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Gtid::Maria(domains) => {
                for (i, (domain, (server, seq))) in domains.iter().enumerate() {
                    if i > 0 {
                        f.write_str(",")?;
                    }
                    write!(f, "{domain}-{server}-{seq}")?;
                }
                Ok(())
            }
            Gtid::Mysql(sets) => {
                // MySQL's own form: each uuid once, its untagged ranges
                // first, then each tag with its ranges.
                let mut last: Option<Uuid> = None;
                for ((uuid, tag), ranges) in sets {
                    if last == Some(*uuid) {
                        f.write_str(":")?;
                    } else {
                        if last.is_some() {
                            f.write_str(",")?;
                        }
                        write!(f, "{}:", uuid.hyphenated())?;
                        last = Some(*uuid);
                    }
                    if !tag.is_empty() {
                        write!(f, "{tag}:")?;
                    }
                    for (i, (start, end)) in ranges.iter().enumerate() {
                        if i > 0 {
                            f.write_str(":")?;
                        }
                        if start == end {
                            write!(f, "{start}")?;
                        } else {
                            write!(f, "{start}-{end}")?;
                        }
                    }
                }
                Ok(())
            }
        }
    }
}

fn parse_maria(text: &str) -> Result<BTreeMap<u32, (u32, u64)>, String> {
    let mut domains = BTreeMap::new();
    for part in text.split(',').filter(|p| !p.is_empty()) {
        let mut numbers = part.split('-');
        let (Some(d), Some(s), Some(n), None) = (
            numbers.next(),
            numbers.next(),
            numbers.next(),
            numbers.next(),
        ) else {
            return Err(format!(
                "MariaDB GTID `{part}` is not domain-server-sequence"
            ));
        };
        let bad = || format!("MariaDB GTID `{part}` has a part that is not a number");
        let domain: u32 = d.parse().map_err(|_| bad())?;
        let server: u32 = s.parse().map_err(|_| bad())?;
        let seq: u64 = n.parse().map_err(|_| bad())?;
        domains.insert(domain, (server, seq));
    }
    Ok(domains)
}

type MysqlSets = BTreeMap<(Uuid, String), Vec<(u64, u64)>>;

fn parse_mysql(text: &str) -> Result<MysqlSets, String> {
    let mut sets: MysqlSets = BTreeMap::new();
    for part in text.split(',').filter(|p| !p.is_empty()) {
        let mut pieces = part.split(':');
        let uuid = pieces
            .next()
            .and_then(|u| Uuid::parse_str(u).ok())
            .ok_or_else(|| format!("MySQL GTID set `{part}` does not start with a uuid"))?;
        let mut tag = String::new();
        for piece in pieces {
            if piece.starts_with(|c: char| c.is_ascii_digit()) {
                let (start, end) = match piece.split_once('-') {
                    Some((a, b)) => (a.parse(), b.parse()),
                    None => (piece.parse(), piece.parse()),
                };
                let (Ok(start), Ok(end)) = (start, end) else {
                    return Err(format!("MySQL GTID interval `{piece}` is not n or n-m"));
                };
                if start == 0 || end < start {
                    return Err(format!("MySQL GTID interval `{piece}` is empty"));
                }
                sets.entry((uuid, tag.clone()))
                    .or_default()
                    .push((start, end));
            } else {
                tag = piece.to_ascii_lowercase();
            }
        }
    }
    for ranges in sets.values_mut() {
        normalize(ranges);
    }
    Ok(sets)
}

/// Sorts ranges and merges those that overlap or touch.
fn normalize(ranges: &mut Vec<(u64, u64)>) {
    ranges.sort_unstable();
    let mut merged: Vec<(u64, u64)> = Vec::with_capacity(ranges.len());
    for &(start, end) in ranges.iter() {
        match merged.last_mut() {
            Some(last) if start <= last.1.saturating_add(1) => last.1 = last.1.max(end),
            _ => merged.push((start, end)),
        }
    }
    *ranges = merged;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mariadb_lists_keep_the_last_transaction_of_each_domain() {
        let mut g = Gtid::parse("1-2-9,0-1-57").unwrap();
        assert_eq!(g.to_string(), "0-1-57,1-2-9");
        g.add_maria(0, 3, 58);
        g.add_maria(5, 1, 1);
        assert_eq!(g.to_string(), "0-3-58,1-2-9,5-1-1");
        assert!(Gtid::parse("0-1").is_err());
        assert!(Gtid::parse("0-x-1").is_err());
        assert_eq!(Gtid::parse("").unwrap(), Gtid::Maria(BTreeMap::new()));
    }

    #[test]
    fn mysql_sets_merge_transactions_into_ranges() {
        let a = "3e11fa47-71ca-11e1-9e33-c80aa9429562";
        let b = "4e11fa47-71ca-11e1-9e33-c80aa9429562";
        let mut g = Gtid::parse(&format!("{b}:1-3,\n{a}:1-5:7:9-10")).unwrap();
        assert_eq!(g.to_string(), format!("{a}:1-5:7:9-10,{b}:1-3"));
        g.add_mysql(Uuid::parse_str(a).unwrap(), "", 6);
        g.add_mysql(Uuid::parse_str(a).unwrap(), "", 8);
        assert_eq!(g.to_string(), format!("{a}:1-10,{b}:1-3"));
        g.add_mysql(Uuid::parse_str(b).unwrap(), "", 5);
        assert_eq!(g.to_string(), format!("{a}:1-10,{b}:1-3:5"));
        let (sids, tagged) = g.mysql_sids();
        assert_eq!(tagged, 0);
        assert_eq!(sids.len(), 2);
        assert_eq!(sids[0].intervals()[0].end(), 11);
        assert!(Gtid::parse(&format!("{a}:0-3")).is_err());
        assert!(Gtid::parse("nope:1-3").is_err());
    }

    #[test]
    fn mysql_tagged_sets_follow_their_uuid() {
        let a = "3e11fa47-71ca-11e1-9e33-c80aa9429562";
        let mut g = Gtid::parse(&format!("{a}:1-5:Batch:1-2")).unwrap();
        assert_eq!(g.to_string(), format!("{a}:1-5:batch:1-2"));
        g.add_mysql(Uuid::parse_str(a).unwrap(), "batch", 3);
        assert_eq!(g.to_string(), format!("{a}:1-5:batch:1-3"));
        let (sids, tagged) = g.mysql_sids();
        assert_eq!((sids.len(), tagged), (1, 1));
    }
}
