//! Dead-letter payloads sealed with a key the user keeps (`[run]
//! dead_letter_key`): AES-256-GCM, a fresh random nonce per value, so the
//! state store's file holds no row or error text in the clear. A sealed
//! value is `dmp-sealed-v1:` and the base64 of nonce and ciphertext; values
//! stored without a key stay readable as they were.

use std::path::{Path, PathBuf};

use aes_gcm::aead::{Aead, AeadCore, KeyInit, OsRng, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;

use super::private::{PrivateFileError, read_private_file};

const PREFIX: &str = "dmp-sealed-v1:";
const KEY_BYTES: usize = 32;
const NONCE_BYTES: usize = 12;

/// Why a dead-letter key cannot be used, or a sealed value not opened.
#[derive(Debug, thiserror::Error)]
pub enum SealError {
    #[error("dead-letter key file {path}: cannot read it")]
    KeyUnreadable {
        path: PathBuf,
        #[source]
        source: PrivateFileError,
    },
    #[error(
        "dead-letter key file {path}: not a key: it must hold 32 bytes, raw or as 64 hex digits or base64 (e.g. `head -c 32 /dev/urandom > {path}`)"
    )]
    KeyMalformed { path: PathBuf },
    #[error(
        "dead-letter row #{id}: its {what} is sealed and no `[run] dead_letter_key` is set to open it"
    )]
    NoKey { id: i64, what: &'static str },
    #[error(
        "dead-letter row #{id}: its {what} does not open with key file {path} (another key sealed it, or it was altered)"
    )]
    WrongKey {
        id: i64,
        what: &'static str,
        path: PathBuf,
    },
    #[error("a dead-letter {what} too large to seal")]
    TooLarge { what: &'static str },
}

impl From<SealError> for crate::error::Error {
    fn from(e: SealError) -> Self {
        crate::error::Error::layer(crate::error::ErrorKind::Config, e)
    }
}

/// What a sealed value is, bound to its ciphertext: a row's seal does not
/// open as an error.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Field {
    Row,
    Error,
}

impl Field {
    fn name(self) -> &'static str {
        match self {
            Field::Row => "row",
            Field::Error => "error",
        }
    }
}

/// The key dead-letter payloads are sealed with.
pub struct DeadLetterKey {
    cipher: Aes256Gcm,
    path: PathBuf,
}

impl std::fmt::Debug for DeadLetterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "DeadLetterKey({})", self.path.display())
    }
}

impl DeadLetterKey {
    /// Reads the key file: 32 bytes, raw, or as hex or base64 text.
    pub fn load(path: &Path) -> Result<Self, SealError> {
        let bytes = read_private_file(path).map_err(|source| SealError::KeyUnreadable {
            path: path.to_path_buf(),
            source,
        })?;
        let key = decode_key(&bytes).ok_or_else(|| SealError::KeyMalformed {
            path: path.to_path_buf(),
        })?;
        Ok(DeadLetterKey {
            cipher: Aes256Gcm::new(&key.into()),
            path: path.to_path_buf(),
        })
    }

    /// Seals `plain`.
    fn seal(&self, what: Field, plain: &str) -> Result<String, SealError> {
        let nonce = Aes256Gcm::generate_nonce(&mut OsRng);
        let payload = Payload {
            msg: plain.as_bytes(),
            aad: what.name().as_bytes(),
        };
        // GCM refuses only messages beyond 64 GiB.
        let sealed = self
            .cipher
            .encrypt(&nonce, payload)
            .map_err(|_| SealError::TooLarge { what: what.name() })?;
        let mut out = Vec::with_capacity(NONCE_BYTES + sealed.len());
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&sealed);
        Ok(format!("{PREFIX}{}", BASE64.encode(out)))
    }

    fn open(&self, what: Field, id: i64, sealed: &str) -> Result<String, SealError> {
        let wrong = || SealError::WrongKey {
            id,
            what: what.name(),
            path: self.path.clone(),
        };
        let bytes = BASE64.decode(sealed).map_err(|_| wrong())?;
        if bytes.len() < NONCE_BYTES {
            return Err(wrong());
        }
        let (nonce, ciphertext) = bytes.split_at(NONCE_BYTES);
        let payload = Payload {
            msg: ciphertext,
            aad: what.name().as_bytes(),
        };
        let plain = self
            .cipher
            .decrypt(Nonce::from_slice(nonce), payload)
            .map_err(|_| wrong())?;
        String::from_utf8(plain).map_err(|_| wrong())
    }
}

/// A stored value as it was written: opened with `key` when sealed.
pub(crate) fn unseal(
    key: Option<&DeadLetterKey>,
    what: Field,
    id: i64,
    stored: String,
) -> Result<String, SealError> {
    let Some(sealed) = stored.strip_prefix(PREFIX) else {
        return Ok(stored);
    };
    match key {
        Some(key) => key.open(what, id, sealed),
        None => Err(SealError::NoKey {
            id,
            what: what.name(),
        }),
    }
}

/// `value` sealed when there is a key.
pub(crate) fn seal(
    key: Option<&DeadLetterKey>,
    what: Field,
    value: &str,
) -> Result<String, SealError> {
    match key {
        Some(key) => key.seal(what, value),
        None => Ok(value.to_string()),
    }
}

fn decode_key(bytes: &[u8]) -> Option<[u8; KEY_BYTES]> {
    if let Ok(raw) = <[u8; KEY_BYTES]>::try_from(bytes) {
        return Some(raw);
    }
    let text = std::str::from_utf8(bytes).ok()?.trim();
    let decoded = match dmp_model::decode_hex(text) {
        Some(raw) if text.len() == 2 * KEY_BYTES => raw,
        _ => BASE64.decode(text).ok()?,
    };
    <[u8; KEY_BYTES]>::try_from(decoded.as_slice()).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key_file(dir: &Path, name: &str, content: &[u8]) -> PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, content).expect("write key");
        path
    }

    #[test]
    fn values_seal_and_open_with_the_same_key_only() {
        let dir = tempfile::tempdir().expect("tempdir");
        let raw = key_file(dir.path(), "raw", &[7u8; 32]);
        let hex = key_file(dir.path(), "hex", "07".repeat(32).as_bytes());
        let other = key_file(dir.path(), "other", &[8u8; 32]);
        let key = DeadLetterKey::load(&raw).expect("raw key");
        let same = DeadLetterKey::load(&hex).expect("hex key");
        let other = DeadLetterKey::load(&other).expect("other key");

        let sealed = seal(Some(&key), Field::Row, r#"{"ssn":"SSN-45"}"#).expect("seals");
        assert!(sealed.starts_with(PREFIX) && !sealed.contains("SSN-45"));
        let opened = unseal(Some(&same), Field::Row, 1, sealed.clone()).expect("opens");
        assert_eq!(opened, r#"{"ssn":"SSN-45"}"#);
        assert!(matches!(
            unseal(Some(&other), Field::Row, 1, sealed.clone()),
            Err(SealError::WrongKey { id: 1, .. })
        ));
        // A row's seal does not pass for an error's.
        assert!(unseal(Some(&key), Field::Error, 1, sealed.clone()).is_err());
        assert!(matches!(
            unseal(None, Field::Row, 2, sealed),
            Err(SealError::NoKey { id: 2, .. })
        ));
        // Values stored without a key stay readable.
        assert_eq!(
            unseal(Some(&key), Field::Row, 3, "{}".into()).expect("plain"),
            "{}"
        );
    }

    #[test]
    fn a_missing_or_short_key_file_is_named() {
        let dir = tempfile::tempdir().expect("tempdir");
        let missing = dir.path().join("nope.key");
        let err = DeadLetterKey::load(&missing).expect_err("missing");
        assert!(err.to_string().contains("nope.key"), "{err}");
        let short = key_file(dir.path(), "short.key", b"abc");
        let err = DeadLetterKey::load(&short).expect_err("short");
        assert!(
            matches!(err, SealError::KeyMalformed { .. }) && err.to_string().contains("short.key"),
            "{err}"
        );
    }
}
