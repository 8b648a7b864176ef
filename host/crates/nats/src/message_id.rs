//! `Nats-Msg-Id` of each message, derived from where its change was read,
//! so that JetStream's dedupe window drops a message published twice (a
//! retry after a lost acknowledgement), and a restarted target can tell
//! what the stream holds already.

use sha2::{Digest, Sha256};

use dmp_model::Value;

/// The id of change `index` of the transaction that restarts at change
/// log position `log` (the connector's position text); `part` tells apart
/// the changes a transform made of one source change.
pub fn message_id(pipeline: &str, log: &str, index: u64, part: u32) -> String {
    if part == 0 {
        format!("{pipeline}:{log}:{index}")
    } else {
        format!("{pipeline}:{log}:{index}.{part}")
    }
}

/// The id of a row that has no place in a change log (incremental runs):
/// its table and its whole content, so that the same version of a row
/// read twice is published once.
pub fn row_message_id(pipeline: &str, table: &str, row: &str) -> String {
    let digest = Sha256::digest(format!("{table}\n{row}").as_bytes());
    format!("{pipeline}:row:{}", dmp_model::encode_hex(&digest[..16]))
}

/// The id of a snapshot row of a table without a primary key: its place
/// in the chunk (the rows read before its batch, and its place in the
/// batch's output).
pub fn keyless_message_id(
    pipeline: &str,
    table: &str,
    chunk: u32,
    before: u64,
    index: usize,
) -> String {
    let digest = Sha256::digest(table.as_bytes());
    format!(
        "{pipeline}:snapshot:{chunk}:{}:{before}.{index}",
        dmp_model::encode_hex(&digest[..8])
    )
}

/// The id of a snapshot row: its table, chunk and key. The key, which may
/// be long and hold any character, is hashed (SHA-256, 128 bits kept: no
/// two rows of a run share an id).
pub fn snapshot_message_id(pipeline: &str, table: &str, chunk: u32, key: &[Value]) -> String {
    let key = serde_json::to_string(key).unwrap_or_default();
    let digest = Sha256::digest(format!("{table}\n{key}").as_bytes());
    format!(
        "{pipeline}:snapshot:{chunk}:{}",
        dmp_model::encode_hex(&digest[..16])
    )
}

/// The id of the truncate event a fresh run publishes on a subject it
/// emptied (`pipeline` carries the run's epoch: one per run).
pub fn truncate_message_id(pipeline: &str, table: &str) -> String {
    let digest = Sha256::digest(table.as_bytes());
    format!(
        "{pipeline}:truncate:{}",
        dmp_model::encode_hex(&digest[..16])
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_follow_the_position_and_tell_rows_apart() {
        assert_eq!(message_id("p", "lsn=0/16B3748", 2, 0), "p:lsn=0/16B3748:2");
        assert_eq!(
            message_id("p", "lsn=0/16B3748", 2, 1),
            "p:lsn=0/16B3748:2.1"
        );
        assert_ne!(
            row_message_id("p", "t", "{}"),
            row_message_id("p", "u", "{}")
        );
        assert_ne!(
            keyless_message_id("p", "t", 0, 1, 10),
            keyless_message_id("p", "t", 0, 11, 0)
        );
        let a = snapshot_message_id("p", "t", 0, &[Value::Int(1)]);
        assert_eq!(a, snapshot_message_id("p", "t", 0, &[Value::Int(1)]));
        assert_ne!(a, snapshot_message_id("p", "t", 0, &[Value::Int(2)]));
        assert_ne!(a, snapshot_message_id("p", "u", 0, &[Value::Int(1)]));
        assert_ne!(
            a,
            snapshot_message_id("p", "t", 0, &[Value::Text("1".into())])
        );
        assert!(a.starts_with("p:snapshot:0:") && a.len() == "p:snapshot:0:".len() + 32);
    }
}
