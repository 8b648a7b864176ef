//! `Nats-Msg-Id` of each message, derived from where its change was read,
//! so that JetStream's dedupe window drops a message published twice (a
//! retry after a lost acknowledgement), and a restarted target can tell
//! what the stream holds already.

use sha2::{Digest, Sha256};

use dmp_model::Value;

/// The id of change `index` (from 0) of the transaction that restarts at
/// change log position `log` (the connector's position text).
pub fn message_id(pipeline: &str, log: &str, index: u64) -> String {
    format!("{pipeline}:{log}:{index}")
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_follow_the_position_and_tell_rows_apart() {
        assert_eq!(message_id("p", "lsn=0/16B3748", 2), "p:lsn=0/16B3748:2");
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
