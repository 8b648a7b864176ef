//! Files only their owner may read: the state store (dead-letter rows hold
//! whole source rows), its keys, and the compiled-plugin cache (whoever can
//! write it runs native code). Folders are made 0700 and files 0600; ones
//! found looser are tightened with a warning, ones owned by another user
//! are refused.

use std::fs::{DirBuilder, File, OpenOptions, Permissions};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// Why a private file or folder cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum PrivateFileError {
    #[error("{path} belongs to user {owner}, not to this user ({me}): dmp will not use it")]
    NotOurs { path: PathBuf, owner: u32, me: u32 },
    #[error("{path} is a symbolic link or not a {expected}: dmp will not use it")]
    WrongKind {
        path: PathBuf,
        expected: &'static str,
    },
    #[error("{what} {path}")]
    Io {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

const PRIVATE_DIR: u32 = 0o700;
const PRIVATE_FILE: u32 = 0o600;

impl From<PrivateFileError> for crate::error::Error {
    fn from(e: PrivateFileError) -> Self {
        let kind = match e {
            // The user fixes the owner or the kind of the file.
            PrivateFileError::NotOurs { .. } | PrivateFileError::WrongKind { .. } => {
                crate::error::ErrorKind::Config
            }
            _ => crate::error::ErrorKind::Fatal,
        };
        crate::error::Error::layer(kind, e)
    }
}

fn io(what: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> PrivateFileError {
    let path = path.to_path_buf();
    move |source| PrivateFileError::Io { what, path, source }
}

/// The effective user of this process: the owner of its `/proc` entry.
/// `None` where there is no `/proc`; ownership is then not checked.
fn me() -> Option<u32> {
    std::fs::metadata("/proc/self").ok().map(|m| m.uid())
}

/// Refuses what another user owns, and tightens what others may read or
/// write (`mode`: 0700 for a folder, 0600 for a file).
fn check(path: &Path, meta: &std::fs::Metadata, mode: u32) -> Result<(), PrivateFileError> {
    if let Some(me) = me()
        && meta.uid() != me
    {
        return Err(PrivateFileError::NotOurs {
            path: path.to_path_buf(),
            owner: meta.uid(),
            me,
        });
    }
    if meta.mode() & 0o077 != 0 {
        tracing::warn!(
            path = %path.display(),
            mode = format!("{:o}", meta.mode() & 0o777),
            "others could read this dmp file; made it private to its owner"
        );
        std::fs::set_permissions(path, Permissions::from_mode(mode))
            .map_err(io("making private", path))?;
    }
    Ok(())
}

/// Creates `dir` (0700) if missing; when it exists, it must belong to this
/// user, and with `tighten` it is made 0700 if looser.
pub fn private_dir(dir: &Path, tighten: bool) -> Result<(), PrivateFileError> {
    match std::fs::symlink_metadata(dir) {
        Ok(meta) if meta.is_dir() => {
            if tighten {
                check(dir, &meta, PRIVATE_DIR)
            } else {
                Ok(())
            }
        }
        Ok(_) => Err(PrivateFileError::WrongKind {
            path: dir.to_path_buf(),
            expected: "folder",
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => DirBuilder::new()
            .recursive(true)
            .mode(PRIVATE_DIR)
            .create(dir)
            .map_err(io("creating folder", dir)),
        Err(e) => Err(io("reading", dir)(e)),
    }
}

/// Makes an existing file private (0600, owned by this user); a missing one
/// is fine.
pub fn private_file(path: &Path) -> Result<(), PrivateFileError> {
    match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.is_file() => check(path, &meta, PRIVATE_FILE),
        Ok(_) => Err(PrivateFileError::WrongKind {
            path: path.to_path_buf(),
            expected: "file",
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(io("reading", path)(e)),
    }
}

/// Creates `path` empty and 0600 unless it exists (then makes it private,
/// without opening it: it may be on a read-only file system).
pub fn create_private_file(path: &Path) -> Result<(), PrivateFileError> {
    if std::fs::symlink_metadata(path).is_ok() {
        return private_file(path);
    }
    let created = OpenOptions::new()
        .create_new(true)
        .write(true)
        .mode(PRIVATE_FILE)
        .open(path);
    match created {
        Ok(_) => Ok(()),
        // Another process made it meanwhile.
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => private_file(path),
        Err(e) => Err(io("creating", path)(e)),
    }
}

/// Writes `bytes` to `path` atomically (a 0600 temporary file renamed over
/// it): a reader sees the old content or the new, never a part.
pub fn write_private_file(path: &Path, bytes: &[u8]) -> Result<(), PrivateFileError> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(format!(".{}.tmp", std::process::id()));
    let tmp = PathBuf::from(tmp);
    let written = OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(true)
        .mode(PRIVATE_FILE)
        .open(&tmp)
        .and_then(|mut file: File| {
            file.write_all(bytes)?;
            file.sync_all()
        })
        .and_then(|()| std::fs::rename(&tmp, path));
    if let Err(e) = written {
        let _ = std::fs::remove_file(&tmp);
        return Err(io("writing", path)(e));
    }
    Ok(())
}

/// Creates `path` holding `bytes` (0600) unless it exists, atomically: a
/// reader never sees it half written, and of two processes creating it at
/// once one wins and the other sees its content. Returns whether it was
/// created.
pub fn create_private_once(path: &Path, bytes: &[u8]) -> Result<bool, PrivateFileError> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(format!(".{}.new", std::process::id()));
    let tmp = PathBuf::from(tmp);
    write_private_file(&tmp, bytes)?;
    let linked = std::fs::hard_link(&tmp, path);
    let _ = std::fs::remove_file(&tmp);
    match linked {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(false),
        Err(e) => Err(io("creating", path)(e)),
    }
}

/// Reads a file that must be private (tightened if looser).
pub fn read_private_file(path: &Path) -> Result<Vec<u8>, PrivateFileError> {
    private_file(path)?;
    std::fs::read(path).map_err(io("reading", path))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mode(path: &Path) -> u32 {
        std::fs::metadata(path).expect("metadata").mode() & 0o777
    }

    #[test]
    fn folders_and_files_are_created_private_and_tightened_when_loose() {
        let dir = tempfile::tempdir().expect("tempdir");
        let home = dir.path().join("a/b");
        private_dir(&home, true).expect("create");
        assert_eq!(mode(&home), 0o700);
        std::fs::set_permissions(&home, Permissions::from_mode(0o755)).expect("chmod");
        private_dir(&home, false).expect("left");
        assert_eq!(mode(&home), 0o755);
        private_dir(&home, true).expect("tighten");
        assert_eq!(mode(&home), 0o700);

        let file = home.join("key");
        write_private_file(&file, b"secret").expect("write");
        assert_eq!(mode(&file), 0o600);
        std::fs::set_permissions(&file, Permissions::from_mode(0o644)).expect("chmod");
        assert_eq!(read_private_file(&file).expect("read"), b"secret");
        assert_eq!(mode(&file), 0o600);

        let db = home.join("db");
        create_private_file(&db).expect("create");
        assert_eq!(mode(&db), 0o600);
    }

    #[test]
    fn a_symbolic_link_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let target = dir.path().join("real");
        std::fs::write(&target, b"x").expect("write");
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&target, &link).expect("symlink");
        assert!(matches!(
            private_file(&link),
            Err(PrivateFileError::WrongKind { .. })
        ));
    }
}
