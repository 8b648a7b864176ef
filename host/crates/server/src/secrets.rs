//! The service's secret key and what it seals: stored pipelines (their
//! URLs carry passwords) are encrypted at rest with AES-256-GCM. The key
//! comes from `DMP_SECRET_KEY` (64 hex digits) or from `secret.key` in the
//! home, created 0600 on first start; each sealed value records the key id
//! so that `dmp secrets rotate` knows what to re-seal.

use std::path::Path;

use aes_gcm::aead::{Aead, AeadCore, KeyInit, OsRng};
use aes_gcm::{Aes256Gcm, Nonce};
use sha2::{Digest, Sha256};

use crate::error::{Result, ServeError};

pub const KEY_ENV: &str = "DMP_SECRET_KEY";
const NONCE_BYTES: usize = 12;

pub struct SecretKey {
    cipher: Aes256Gcm,
    /// The first 16 hex digits of the key's SHA-256: names it, reveals nothing.
    pub id: String,
}

impl SecretKey {
    pub fn from_bytes(bytes: &[u8; 32]) -> Self {
        let digest = Sha256::digest(bytes);
        SecretKey {
            cipher: Aes256Gcm::new(bytes.into()),
            id: dmp_model::encode_hex(&digest[..8]),
        }
    }

    /// A new random key.
    pub fn generate() -> Result<[u8; 32]> {
        let mut bytes = [0u8; 32];
        getrandom::fill(&mut bytes)
            .map_err(|e| ServeError::Home(format!("no randomness for a new key: {e}")))?;
        Ok(bytes)
    }

    /// `DMP_SECRET_KEY` if set, else `file` (created on first use).
    pub fn load(file: &Path) -> Result<Self> {
        if let Ok(hex) = std::env::var(KEY_ENV) {
            return Self::from_hex(hex.trim())
                .ok_or_else(|| ServeError::Home(format!("{KEY_ENV} must be 64 hex digits")));
        }
        let created = dmp_state::create_private_once(
            file,
            dmp_model::encode_hex(&Self::generate()?).as_bytes(),
        )
        .map_err(|e| ServeError::Home(format!("secret key {}: {e}", file.display())))?;
        if created {
            tracing::info!(file = %file.display(), "created the service's secret key");
        }
        let text = dmp_state::read_private_file(file)
            .map_err(|e| ServeError::Home(format!("secret key {}: {e}", file.display())))?;
        let text = String::from_utf8_lossy(&text);
        Self::from_hex(text.trim()).ok_or_else(|| {
            ServeError::Home(format!("secret key {}: not 64 hex digits", file.display()))
        })
    }

    pub fn from_hex(hex: &str) -> Option<Self> {
        let bytes = dmp_model::decode_hex(hex)?;
        let bytes: [u8; 32] = bytes.try_into().ok()?;
        Some(Self::from_bytes(&bytes))
    }

    /// Nonce then ciphertext.
    pub fn seal(&self, plain: &[u8]) -> Result<Vec<u8>> {
        let nonce = Aes256Gcm::generate_nonce(&mut OsRng);
        let mut out = nonce.to_vec();
        let sealed = self
            .cipher
            .encrypt(&nonce, plain)
            .map_err(|_| ServeError::Home("sealing a secret failed".into()))?;
        out.extend_from_slice(&sealed);
        Ok(out)
    }

    pub fn open(&self, sealed: &[u8]) -> Result<Vec<u8>> {
        if sealed.len() < NONCE_BYTES {
            return Err(ServeError::Home("a sealed secret is truncated".into()));
        }
        let (nonce, data) = sealed.split_at(NONCE_BYTES);
        self.cipher
            .decrypt(Nonce::from_slice(nonce), data)
            .map_err(|_| {
                ServeError::Home(format!(
                    "a sealed secret does not open with key {} (was the key changed?)",
                    self.id
                ))
            })
    }
}

/// The key file's name while a rotation is under way.
fn next_key_file(home: &crate::service::Home) -> std::path::PathBuf {
    home.key_file().with_extension("key.next")
}

/// The service's key, finishing a rotation that a crash interrupted: if
/// the store was re-sealed with the next key, that key becomes the key.
pub fn recover_rotation(
    home: &crate::service::Home,
    store: &crate::store::ServiceStore,
) -> Result<SecretKey> {
    let next = next_key_file(home);
    if next.exists() && std::env::var_os(KEY_ENV).is_none() {
        let next_key = SecretKey::load(&next)?;
        if store.sealed_with(&next_key.id)? {
            std::fs::rename(&next, home.key_file())
                .map_err(|e| ServeError::Home(format!("{}: {e}", next.display())))?;
        } else {
            let _ = std::fs::remove_file(&next);
        }
    }
    home.key()
}

/// `dmp secrets rotate`: a new key, every stored secret sealed with it.
/// Returns the number of pipelines re-sealed and the new key's id.
pub fn rotate(home: &crate::service::Home) -> Result<(usize, String)> {
    if std::env::var_os(KEY_ENV).is_some() {
        return Err(ServeError::Home(format!(
            "the key comes from {KEY_ENV}: rotate it where it is kept, or unset it to use the key file"
        )));
    }
    // Not under a running service: it holds the old key.
    let _only_one = home.lock("dmp secrets rotate")?;
    let store = home.store()?;
    let old = recover_rotation(home, &store)?;
    let next = next_key_file(home);
    let _ = std::fs::remove_file(&next);
    let new = SecretKey::load(&next)?;
    // Re-sealed in one transaction, then the new key file takes the old
    // one's place: a crash in between is finished at the next start.
    let count = store.reseal(&old, &new)?;
    std::fs::rename(&next, home.key_file())
        .map_err(|e| ServeError::Home(format!("{}: {e}", next.display())))?;
    Ok((count, new.id))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seals_and_opens_and_refuses_another_key() {
        let key = SecretKey::from_bytes(&[7; 32]);
        let sealed = key.seal(b"postgres://u:hunter2@h/db").expect("seals");
        assert!(!sealed.windows(7).any(|w| w == b"hunter2"));
        assert_eq!(
            key.open(&sealed).expect("opens"),
            b"postgres://u:hunter2@h/db"
        );
        let other = SecretKey::from_bytes(&[8; 32]);
        assert!(other.open(&sealed).is_err());
        assert_ne!(key.id, other.id);
    }
}
