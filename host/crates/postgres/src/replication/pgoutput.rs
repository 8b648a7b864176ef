//! The bytes of a logical replication stream: the walsender's CopyData
//! messages (XLogData, primary keepalive; our standby status update) and
//! the `pgoutput` messages of protocol version 1 inside XLogData. Pure
//! decoding: no I/O, no model types.

use bytes::{Buf, Bytes};

use super::lsn::Lsn;

/// Microseconds from 1970-01-01 to PostgreSQL's epoch, 2000-01-01 UTC.
pub(super) const PG_EPOCH_UNIX_MICROS: i64 = 946_684_800_000_000;

/// A CopyData message from the walsender.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum WalMessage {
    /// `w`: a piece of the output plugin's stream.
    XLogData {
        start: Lsn,
        /// Where the server's WAL stands.
        wal_end: Lsn,
        data: Bytes,
    },
    /// `k`: the server's position; `reply` asks for a status update now.
    Keepalive { wal_end: Lsn, reply: bool },
}

/// A `pgoutput` message (protocol version 1).
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Message {
    Begin {
        /// Where the transaction's commit record is.
        final_lsn: Lsn,
        /// Microseconds since 2000-01-01.
        commit_time: i64,
        xid: u32,
    },
    Commit {
        commit_lsn: Lsn,
        /// Just after the commit record: where a stream resumes after it.
        end_lsn: Lsn,
        commit_time: i64,
    },
    Relation(Relation),
    Insert {
        relation: u32,
        new: Tuple,
    },
    Update {
        relation: u32,
        old: Option<OldTuple>,
        new: Tuple,
    },
    Delete {
        relation: u32,
        old: OldTuple,
    },
    Truncate {
        relations: Vec<u32>,
    },
    /// `M`: a logical decoding message (sent with `messages 'true'`).
    Logical {
        /// Written in a transaction (else on its own).
        transactional: bool,
        prefix: String,
        content: Bytes,
    },
    /// Origin, Type and logical decoding messages: nothing to act on.
    Other(u8),
}

/// The `REPLICA IDENTITY` of a relation (`pg_class.relreplident`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Identity {
    /// The primary key (none without one).
    Default,
    Nothing,
    Full,
    /// A unique index's columns.
    Index,
}

#[derive(Debug, Clone, PartialEq)]
pub(super) struct Relation {
    pub(super) oid: u32,
    /// Empty for `pg_catalog`.
    pub(super) namespace: String,
    pub(super) name: String,
    pub(super) identity: Identity,
    pub(super) columns: Vec<RelationColumn>,
}

#[derive(Debug, Clone, PartialEq)]
pub(super) struct RelationColumn {
    /// Part of the replica identity.
    pub(super) key: bool,
    pub(super) name: String,
    pub(super) type_oid: u32,
    pub(super) typmod: i32,
}

/// The old image of an updated or deleted row.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct OldTuple {
    /// `K`: only the identity columns (the others null); `O`: the whole
    /// row (`REPLICA IDENTITY FULL`).
    pub(super) full: bool,
    pub(super) tuple: Tuple,
}

/// A row's columns in the relation's column order.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Tuple(pub(super) Vec<Datum>);

#[derive(Debug, Clone, PartialEq)]
pub(super) enum Datum {
    Null,
    /// A TOASTed value the update did not change: not sent.
    Unchanged,
    /// The type's output function's text.
    Text(Bytes),
    /// The type's send function's bytes (`binary 'true'`).
    Binary(Bytes),
}

/// Reads big-endian fields off a message, failing on truncation.
struct Reader {
    buf: Bytes,
    what: &'static str,
}

impl Reader {
    fn need(&self, n: usize) -> Result<(), String> {
        if self.buf.remaining() < n {
            Err(format!("a truncated {} message", self.what))
        } else {
            Ok(())
        }
    }

    fn u8(&mut self) -> Result<u8, String> {
        self.need(1)?;
        Ok(self.buf.get_u8())
    }

    fn i16(&mut self) -> Result<i16, String> {
        self.need(2)?;
        Ok(self.buf.get_i16())
    }

    fn i32(&mut self) -> Result<i32, String> {
        self.need(4)?;
        Ok(self.buf.get_i32())
    }

    fn u32(&mut self) -> Result<u32, String> {
        self.need(4)?;
        Ok(self.buf.get_u32())
    }

    fn i64(&mut self) -> Result<i64, String> {
        self.need(8)?;
        Ok(self.buf.get_i64())
    }

    fn lsn(&mut self) -> Result<Lsn, String> {
        self.need(8)?;
        Ok(Lsn(self.buf.get_u64()))
    }

    fn bytes(&mut self, n: usize) -> Result<Bytes, String> {
        self.need(n)?;
        Ok(self.buf.split_to(n))
    }

    /// A NUL-terminated string.
    fn string(&mut self) -> Result<String, String> {
        let end = self
            .buf
            .iter()
            .position(|b| *b == 0)
            .ok_or_else(|| format!("an unterminated string in a {} message", self.what))?;
        let text = String::from_utf8(self.buf[..end].to_vec())
            .map_err(|_| format!("a name that is not UTF-8 in a {} message", self.what))?;
        self.buf.advance(end + 1);
        Ok(text)
    }

    fn tuple(&mut self) -> Result<Tuple, String> {
        let count = self.i16()?;
        let count = usize::try_from(count)
            .map_err(|_| format!("{count} columns in a {} message", self.what))?;
        let mut datums = Vec::with_capacity(count);
        for _ in 0..count {
            datums.push(match self.u8()? {
                b'n' => Datum::Null,
                b'u' => Datum::Unchanged,
                kind @ (b't' | b'b') => {
                    let len = self.i32()?;
                    let len = usize::try_from(len)
                        .map_err(|_| format!("a value of {len} bytes in a {}", self.what))?;
                    let bytes = self.bytes(len)?;
                    if kind == b't' {
                        Datum::Text(bytes)
                    } else {
                        Datum::Binary(bytes)
                    }
                }
                other => {
                    return Err(format!(
                        "unknown column kind `{}` in a {} message",
                        char::from(other).escape_default(),
                        self.what
                    ));
                }
            });
        }
        Ok(Tuple(datums))
    }
}

/// Parses a CopyData payload of the replication stream.
pub(super) fn parse_wal_message(mut data: Bytes) -> Result<WalMessage, String> {
    let Some(&kind) = data.first() else {
        return Err("an empty replication message".into());
    };
    data.advance(1);
    let mut r = Reader {
        buf: data,
        what: "replication",
    };
    match kind {
        b'w' => {
            let start = r.lsn()?;
            let wal_end = r.lsn()?;
            let _send_time = r.i64()?;
            Ok(WalMessage::XLogData {
                start,
                wal_end,
                data: r.buf,
            })
        }
        b'k' => {
            let wal_end = r.lsn()?;
            let _send_time = r.i64()?;
            let reply = r.u8()? != 0;
            Ok(WalMessage::Keepalive { wal_end, reply })
        }
        other => Err(format!(
            "unknown replication message `{}`",
            char::from(other).escape_default()
        )),
    }
}

/// A standby status update: WAL received (`write`), durably stored
/// (`flush`) and applied up to these positions; `now` in microseconds
/// since 2000-01-01; `reply` asks the server for a keepalive at once.
pub(super) fn status_update(position: Lsn, now: i64, reply: bool) -> [u8; 34] {
    let mut out = [0u8; 34];
    out[0] = b'r';
    out[1..9].copy_from_slice(&position.0.to_be_bytes());
    out[9..17].copy_from_slice(&position.0.to_be_bytes());
    out[17..25].copy_from_slice(&position.0.to_be_bytes());
    out[25..33].copy_from_slice(&now.to_be_bytes());
    out[33] = u8::from(reply);
    out
}

/// Parses one `pgoutput` message.
pub(super) fn parse_message(mut data: Bytes) -> Result<Message, String> {
    let Some(&kind) = data.first() else {
        return Err("an empty pgoutput message".into());
    };
    data.advance(1);
    let what = match kind {
        b'B' => "Begin",
        b'C' => "Commit",
        b'R' => "Relation",
        b'I' => "Insert",
        b'U' => "Update",
        b'D' => "Delete",
        b'T' => "Truncate",
        b'M' => "Message",
        other => return Ok(Message::Other(other)),
    };
    let mut r = Reader { buf: data, what };
    Ok(match kind {
        b'M' => {
            let transactional = r.u8()? & 1 == 1;
            let _lsn = r.lsn()?;
            let prefix = r.string()?;
            let length = usize::try_from(r.u32()?).map_err(|e| e.to_string())?;
            Message::Logical {
                transactional,
                prefix,
                content: r.bytes(length)?,
            }
        }
        b'B' => Message::Begin {
            final_lsn: r.lsn()?,
            commit_time: r.i64()?,
            xid: r.u32()?,
        },
        b'C' => {
            let _flags = r.u8()?;
            Message::Commit {
                commit_lsn: r.lsn()?,
                end_lsn: r.lsn()?,
                commit_time: r.i64()?,
            }
        }
        b'R' => {
            let oid = r.u32()?;
            let namespace = r.string()?;
            let name = r.string()?;
            let identity = match r.u8()? {
                b'd' => Identity::Default,
                b'n' => Identity::Nothing,
                b'f' => Identity::Full,
                b'i' => Identity::Index,
                other => {
                    return Err(format!(
                        "unknown replica identity `{}` of relation {name}",
                        char::from(other).escape_default()
                    ));
                }
            };
            let count = r.i16()?;
            let mut columns = Vec::with_capacity(usize::try_from(count).unwrap_or(0));
            for _ in 0..count {
                columns.push(RelationColumn {
                    key: r.u8()? & 1 != 0,
                    name: r.string()?,
                    type_oid: r.u32()?,
                    typmod: r.i32()?,
                });
            }
            Message::Relation(Relation {
                oid,
                namespace,
                name,
                identity,
                columns,
            })
        }
        b'I' => {
            let relation = r.u32()?;
            match r.u8()? {
                b'N' => Message::Insert {
                    relation,
                    new: r.tuple()?,
                },
                other => return Err(bad_marker(other, what)),
            }
        }
        b'U' => {
            let relation = r.u32()?;
            let (old, marker) = match r.u8()? {
                kind @ (b'K' | b'O') => {
                    let tuple = r.tuple()?;
                    (
                        Some(OldTuple {
                            full: kind == b'O',
                            tuple,
                        }),
                        r.u8()?,
                    )
                }
                marker => (None, marker),
            };
            if marker != b'N' {
                return Err(bad_marker(marker, what));
            }
            Message::Update {
                relation,
                old,
                new: r.tuple()?,
            }
        }
        b'D' => {
            let relation = r.u32()?;
            let full = match r.u8()? {
                b'K' => false,
                b'O' => true,
                other => return Err(bad_marker(other, what)),
            };
            Message::Delete {
                relation,
                old: OldTuple {
                    full,
                    tuple: r.tuple()?,
                },
            }
        }
        _ => {
            let count = r.i32()?;
            let _options = r.u8()?;
            let mut relations = Vec::with_capacity(usize::try_from(count).unwrap_or(0));
            for _ in 0..count {
                relations.push(r.u32()?);
            }
            Message::Truncate { relations }
        }
    })
}

fn bad_marker(marker: u8, what: &str) -> String {
    format!(
        "unexpected tuple marker `{}` in a {what} message",
        char::from(marker).escape_default()
    )
}

/// A pgoutput timestamp (µs since 2000-01-01) as µs since the Unix epoch.
pub(super) fn unix_micros(pg_micros: i64) -> Option<i64> {
    pg_micros.checked_add(PG_EPOCH_UNIX_MICROS)
}

#[cfg(test)]
pub(super) mod fixtures {
    //! Builders of pgoutput bytes, as the server would send them.

    use super::*;

    pub(crate) fn cstr(out: &mut Vec<u8>, s: &str) {
        out.extend_from_slice(s.as_bytes());
        out.push(0);
    }

    pub(crate) fn tuple(out: &mut Vec<u8>, datums: &[Datum]) {
        out.extend_from_slice(&i16::try_from(datums.len()).unwrap().to_be_bytes());
        for d in datums {
            match d {
                Datum::Null => out.push(b'n'),
                Datum::Unchanged => out.push(b'u'),
                Datum::Text(b) | Datum::Binary(b) => {
                    out.push(if matches!(d, Datum::Text(_)) {
                        b't'
                    } else {
                        b'b'
                    });
                    out.extend_from_slice(&i32::try_from(b.len()).unwrap().to_be_bytes());
                    out.extend_from_slice(b);
                }
            }
        }
    }

    pub(crate) fn text(s: &str) -> Datum {
        Datum::Text(Bytes::copy_from_slice(s.as_bytes()))
    }

    pub(crate) fn begin(final_lsn: u64, time: i64, xid: u32) -> Bytes {
        let mut out = vec![b'B'];
        out.extend_from_slice(&final_lsn.to_be_bytes());
        out.extend_from_slice(&time.to_be_bytes());
        out.extend_from_slice(&xid.to_be_bytes());
        out.into()
    }

    pub(crate) fn commit(commit_lsn: u64, end_lsn: u64, time: i64) -> Bytes {
        let mut out = vec![b'C', 0];
        out.extend_from_slice(&commit_lsn.to_be_bytes());
        out.extend_from_slice(&end_lsn.to_be_bytes());
        out.extend_from_slice(&time.to_be_bytes());
        out.into()
    }

    /// `columns`: (key, name, type oid).
    pub(crate) fn relation(
        oid: u32,
        namespace: &str,
        name: &str,
        identity: u8,
        columns: &[(bool, &str, u32)],
    ) -> Bytes {
        let mut out = vec![b'R'];
        out.extend_from_slice(&oid.to_be_bytes());
        cstr(&mut out, namespace);
        cstr(&mut out, name);
        out.push(identity);
        out.extend_from_slice(&i16::try_from(columns.len()).unwrap().to_be_bytes());
        for (key, name, type_oid) in columns {
            out.push(u8::from(*key));
            cstr(&mut out, name);
            out.extend_from_slice(&type_oid.to_be_bytes());
            out.extend_from_slice(&(-1i32).to_be_bytes());
        }
        out.into()
    }

    pub(crate) fn insert(relation: u32, new: &[Datum]) -> Bytes {
        let mut out = vec![b'I'];
        out.extend_from_slice(&relation.to_be_bytes());
        out.push(b'N');
        tuple(&mut out, new);
        out.into()
    }

    /// `old`: (`K` or `O`, datums).
    pub(crate) fn update(relation: u32, old: Option<(u8, &[Datum])>, new: &[Datum]) -> Bytes {
        let mut out = vec![b'U'];
        out.extend_from_slice(&relation.to_be_bytes());
        if let Some((kind, datums)) = old {
            out.push(kind);
            tuple(&mut out, datums);
        }
        out.push(b'N');
        tuple(&mut out, new);
        out.into()
    }

    pub(crate) fn delete(relation: u32, kind: u8, old: &[Datum]) -> Bytes {
        let mut out = vec![b'D'];
        out.extend_from_slice(&relation.to_be_bytes());
        out.push(kind);
        tuple(&mut out, old);
        out.into()
    }

    pub(crate) fn truncate(relations: &[u32]) -> Bytes {
        let mut out = vec![b'T'];
        out.extend_from_slice(&i32::try_from(relations.len()).unwrap().to_be_bytes());
        out.push(0);
        for r in relations {
            out.extend_from_slice(&r.to_be_bytes());
        }
        out.into()
    }
}

#[cfg(test)]
mod tests {
    use super::fixtures::*;
    use super::*;

    #[test]
    fn transaction_frames() {
        assert_eq!(
            parse_message(begin(0x0194_6388, 764_262_913_000_000, 737)).unwrap(),
            Message::Begin {
                final_lsn: Lsn(0x0194_6388),
                commit_time: 764_262_913_000_000,
                xid: 737
            }
        );
        assert_eq!(
            parse_message(commit(0x0194_6388, 0x0194_63B8, 5)).unwrap(),
            Message::Commit {
                commit_lsn: Lsn(0x0194_6388),
                end_lsn: Lsn(0x0194_63B8),
                commit_time: 5
            }
        );
        assert_eq!(unix_micros(0), Some(946_684_800_000_000));
        assert!(parse_message(Bytes::from_static(b"B\0\0")).is_err());
    }

    #[test]
    fn relations_and_row_changes() {
        let rel = relation(
            16389,
            "public",
            "t",
            b'd',
            &[(true, "id", 23), (false, "v", 25)],
        );
        let Message::Relation(r) = parse_message(rel).unwrap() else {
            panic!()
        };
        assert_eq!(r.oid, 16389);
        assert_eq!((r.namespace.as_str(), r.name.as_str()), ("public", "t"));
        assert_eq!(r.identity, Identity::Default);
        assert_eq!(r.columns.len(), 2);
        assert!(r.columns[0].key && !r.columns[1].key);
        assert_eq!(r.columns[1].type_oid, 25);
        assert_eq!(r.columns[1].typmod, -1);

        assert_eq!(
            parse_message(insert(16389, &[text("1"), Datum::Null])).unwrap(),
            Message::Insert {
                relation: 16389,
                new: Tuple(vec![text("1"), Datum::Null])
            }
        );
        let binary = Datum::Binary(Bytes::from_static(&[0, 0, 0, 1]));
        assert_eq!(
            parse_message(update(
                16389,
                Some((b'K', &[text("1"), Datum::Null])),
                &[binary.clone(), Datum::Unchanged]
            ))
            .unwrap(),
            Message::Update {
                relation: 16389,
                old: Some(OldTuple {
                    full: false,
                    tuple: Tuple(vec![text("1"), Datum::Null])
                }),
                new: Tuple(vec![binary, Datum::Unchanged])
            }
        );
        assert_eq!(
            parse_message(update(16389, None, &[text("2"), text("x")])).unwrap(),
            Message::Update {
                relation: 16389,
                old: None,
                new: Tuple(vec![text("2"), text("x")])
            }
        );
        assert_eq!(
            parse_message(delete(16389, b'O', &[text("2"), text("x")])).unwrap(),
            Message::Delete {
                relation: 16389,
                old: OldTuple {
                    full: true,
                    tuple: Tuple(vec![text("2"), text("x")])
                }
            }
        );
        assert_eq!(
            parse_message(truncate(&[1, 2])).unwrap(),
            Message::Truncate {
                relations: vec![1, 2]
            }
        );
        assert_eq!(
            parse_message(Bytes::from_static(b"Yabc")).unwrap(),
            Message::Other(b'Y')
        );
        // A value longer than the message.
        let mut broken = insert(1, &[text("hello")]).to_vec();
        broken.truncate(broken.len() - 2);
        assert!(parse_message(broken.into()).is_err());
        let mut bad_kind = insert(1, &[text("1")]).to_vec();
        bad_kind[8] = b'x';
        assert!(parse_message(bad_kind.into()).is_err());
    }

    #[test]
    fn walsender_messages() {
        let mut w = vec![b'w'];
        w.extend_from_slice(&0x10u64.to_be_bytes());
        w.extend_from_slice(&0x20u64.to_be_bytes());
        w.extend_from_slice(&0i64.to_be_bytes());
        w.extend_from_slice(b"B...");
        assert_eq!(
            parse_wal_message(w.into()).unwrap(),
            WalMessage::XLogData {
                start: Lsn(0x10),
                wal_end: Lsn(0x20),
                data: Bytes::from_static(b"B...")
            }
        );
        let mut k = vec![b'k'];
        k.extend_from_slice(&0x30u64.to_be_bytes());
        k.extend_from_slice(&0i64.to_be_bytes());
        k.push(1);
        assert_eq!(
            parse_wal_message(k.into()).unwrap(),
            WalMessage::Keepalive {
                wal_end: Lsn(0x30),
                reply: true
            }
        );
        assert!(parse_wal_message(Bytes::from_static(b"k\0")).is_err());
        let status = status_update(Lsn(0x0102), 7, true);
        assert_eq!(status[0], b'r');
        assert_eq!(&status[1..9], &0x0102u64.to_be_bytes());
        assert_eq!(&status[9..17], &0x0102u64.to_be_bytes());
        assert_eq!(&status[17..25], &0x0102u64.to_be_bytes());
        assert_eq!(&status[25..33], &7i64.to_be_bytes());
        assert_eq!(status[33], 1);
    }
}
