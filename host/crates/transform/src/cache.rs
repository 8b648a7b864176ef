//! The on-disk cache of compiled plugins. A cache entry is native code that
//! wasmtime loads without checking it: whoever could write one would run
//! code as the user. So the folder is the user's alone (0700, entries
//! 0600), and every entry carries an HMAC-SHA256 under a per-user random
//! key kept outside the cache; an entry that does not verify (altered, or
//! another plugin's) is never loaded: the plugin is compiled again and the
//! entry overwritten.

use std::path::{Path, PathBuf};

use aes_gcm::aead::OsRng;
use aes_gcm::aead::rand_core::RngCore;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

use dmp_state::{
    PrivateFileError, create_private_once, private_dir, private_file, read_private_file,
    write_private_file,
};

/// What an entry starts with, before its tag.
const MAGIC: &[u8] = b"dmp-cwasm-hmac1\n";
const TAG_BYTES: usize = 32;
const KEY_BYTES: usize = 32;

type Tag = Hmac<Sha256>;

/// Where the cache key lives: in the user's state home
/// (`$XDG_STATE_HOME/dmp`, else `~/.local/state/dmp`), else beside the
/// cache folder. Never inside it: the cache's entries and its key are not
/// kept together.
pub(crate) fn default_key_path(cache_dir: &Path) -> PathBuf {
    let var = |name: &str| {
        std::env::var_os(name)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    var("XDG_STATE_HOME")
        .map(|d| d.join("dmp"))
        .or_else(|| var("HOME").map(|d| d.join(".local/state/dmp")))
        .unwrap_or_else(|| {
            cache_dir
                .parent()
                .map_or_else(PathBuf::new, Path::to_path_buf)
        })
        .join("plugin-cache.key")
}

/// A cache folder this user alone can write, with its key.
pub(crate) struct CompileCache {
    dir: PathBuf,
    key: [u8; KEY_BYTES],
}

impl CompileCache {
    /// The cache in `dir` under the key at `key_path` (created if missing).
    /// `None`, with a warning, when either cannot be made private: plugins
    /// are then compiled on every load.
    pub(crate) fn open(dir: &Path, key_path: &Path) -> Option<Self> {
        let opened = private_dir(dir, true).and_then(|()| load_or_create_key(key_path));
        match opened {
            Ok(key) => Some(CompileCache {
                dir: dir.to_path_buf(),
                key,
            }),
            Err(e) => {
                tracing::warn!(cache = %dir.display(), error = %e, "compiled-plugin cache not used");
                None
            }
        }
    }

    fn entry(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// The entry's tag binds its name (the plugin's content hash and the
    /// engine's) to its bytes. `None` never happens: HMAC takes any key.
    fn tag(&self, name: &str, compiled: &[u8]) -> Option<Tag> {
        let mut mac = <Tag as KeyInit>::new_from_slice(&self.key).ok()?;
        mac.update(name.as_bytes());
        mac.update(&[0]);
        mac.update(compiled);
        Some(mac)
    }

    /// The compiled bytes stored as `name`, if there is an entry and it
    /// verifies. One that does not is reported, never returned.
    pub(crate) fn get(&self, name: &str, place: &str) -> Option<Vec<u8>> {
        let path = self.entry(name);
        let bytes = match read_private_file(&path) {
            Ok(bytes) => bytes,
            Err(PrivateFileError::Io { source, .. })
                if source.kind() == std::io::ErrorKind::NotFound =>
            {
                return None;
            }
            Err(e) => {
                tracing::warn!(plugin = place, error = %e, "compiled plugin cache entry refused; compiling again");
                return None;
            }
        };
        let verified = bytes
            .strip_prefix(MAGIC)
            .filter(|rest| rest.len() >= TAG_BYTES)
            .map(|rest| rest.split_at(TAG_BYTES))
            .filter(|(tag, compiled)| {
                self.tag(name, compiled)
                    .is_some_and(|mac| mac.verify_slice(tag).is_ok())
            });
        match verified {
            Some((_, compiled)) => Some(compiled.to_vec()),
            None => {
                tracing::warn!(
                    plugin = place,
                    entry = %path.display(),
                    "compiled plugin cache entry failed authentication (altered, or not written by this user's dmp); compiling again"
                );
                None
            }
        }
    }

    /// Stores compiled bytes as `name`, tagged, replacing any entry.
    pub(crate) fn put(&self, name: &str, compiled: &[u8], place: &str) {
        let Some(mac) = self.tag(name, compiled) else {
            return;
        };
        let tag = mac.finalize().into_bytes();
        let mut bytes = Vec::with_capacity(MAGIC.len() + TAG_BYTES + compiled.len());
        bytes.extend_from_slice(MAGIC);
        bytes.extend_from_slice(&tag);
        bytes.extend_from_slice(compiled);
        if let Err(e) = write_private_file(&self.entry(name), &bytes) {
            tracing::warn!(plugin = place, error = %e, "could not cache the compiled plugin");
        }
    }
}

/// The cache key: 32 random bytes made on first use, in a 0600 file.
fn load_or_create_key(path: &Path) -> Result<[u8; KEY_BYTES], PrivateFileError> {
    let malformed = || PrivateFileError::Io {
        what: "reading the plugin cache key",
        path: path.to_path_buf(),
        source: std::io::Error::new(std::io::ErrorKind::InvalidData, "not a 32-byte key"),
    };
    private_file(path)?;
    if !path.exists() {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            private_dir(dir, false)?;
        }
        let mut key = [0u8; KEY_BYTES];
        OsRng
            .try_fill_bytes(&mut key)
            .map_err(|e| PrivateFileError::Io {
                what: "drawing a random plugin cache key for",
                path: path.to_path_buf(),
                source: std::io::Error::other(e.to_string()),
            })?;
        // Another dmp may create it at the same moment: its key wins.
        if create_private_once(path, &key)? {
            return Ok(key);
        }
    }
    <[u8; KEY_BYTES]>::try_from(read_private_file(path)?.as_slice()).map_err(|_| malformed())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_verify_only_as_written_and_under_their_own_name() {
        let dir = tempfile::tempdir().expect("tempdir");
        let key = dir.path().join("state/plugin-cache.key");
        let cache = CompileCache::open(&dir.path().join("cache"), &key).expect("cache");
        cache.put("a.cwasm", b"compiled a", "a");
        cache.put("b.cwasm", b"compiled b", "b");
        assert_eq!(
            cache.get("a.cwasm", "a").as_deref(),
            Some(&b"compiled a"[..])
        );
        assert_eq!(cache.get("missing.cwasm", "m"), None);

        // A byte flipped.
        let a = dir.path().join("cache/a.cwasm");
        let mut bytes = std::fs::read(&a).expect("read");
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        std::fs::write(&a, &bytes).expect("write");
        assert_eq!(cache.get("a.cwasm", "a"), None);

        // Another entry, valid for its own name, put in a's place.
        std::fs::copy(dir.path().join("cache/b.cwasm"), &a).expect("copy");
        assert_eq!(cache.get("a.cwasm", "a"), None);

        // The same key is read back by the next process; a new key
        // invalidates every entry.
        let again = CompileCache::open(&dir.path().join("cache"), &key).expect("cache");
        assert_eq!(
            again.get("b.cwasm", "b").as_deref(),
            Some(&b"compiled b"[..])
        );
        std::fs::remove_file(&key).expect("remove key");
        let rekeyed = CompileCache::open(&dir.path().join("cache"), &key).expect("cache");
        assert_eq!(rekeyed.get("b.cwasm", "b"), None);

        use std::os::unix::fs::PermissionsExt;
        let mode = |p: &Path| std::fs::metadata(p).expect("meta").permissions().mode() & 0o777;
        assert_eq!(mode(&dir.path().join("cache")), 0o700);
        assert_eq!(mode(&dir.path().join("cache/b.cwasm")), 0o600);
        assert_eq!(mode(&key), 0o600);
    }
}
