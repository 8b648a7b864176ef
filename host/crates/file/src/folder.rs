//! The files DMP writes in a folder: every path is a plain entry of the
//! folder (never outside it), and no file is written through a symbolic
//! link someone planted there: new files are created exclusively after
//! whatever stood at their path is removed (the link, never its target),
//! existing ones are opened with `O_NOFOLLOW`, and final names and the
//! checkpoint folder refuse a link outright.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};

use super::table_file;

/// A path DMP will not write to.
#[derive(Debug, thiserror::Error)]
pub enum UnsafePath {
    /// A table (or pipeline) name whose file would not be a plain entry of
    /// the folder; `table_file::encode` makes this impossible, this is the
    /// check that it did.
    #[error("table {table}: its file name `{file}` would not stay inside folder {}", dir.display())]
    Outside {
        table: String,
        file: String,
        dir: PathBuf,
    },
    /// A symbolic link where DMP writes a file or keeps its checkpoints.
    #[error(
        "{} is a symbolic link; DMP does not write through links (remove it, or choose another folder)",
        path.display()
    )]
    Link { path: PathBuf },
}

/// `dir/PREFIX{encoded name}SUFFIX`, checked to be a plain entry of `dir`.
pub(super) fn entry(
    dir: &Path,
    prefix: &str,
    name: &str,
    suffix: &str,
) -> Result<PathBuf, UnsafePath> {
    let file = format!("{prefix}{}{suffix}", table_file::encode(name));
    let plain = !file.is_empty()
        && file != "."
        && file != ".."
        && !file.contains(['/', '\0'])
        && Path::new(&file).file_name() == Some(std::ffi::OsStr::new(&file));
    if !plain {
        return Err(UnsafePath::Outside {
            table: dmp_model::printable(name).into_owned(),
            file,
            dir: dir.to_path_buf(),
        });
    }
    Ok(dir.join(file))
}

impl From<UnsafePath> for crate::error::Error {
    fn from(e: UnsafePath) -> Self {
        crate::error::Error::layer(crate::error::ErrorKind::Fatal, e)
    }
}

/// Refuses `path` when it is a symbolic link (a missing path is fine).
pub(super) fn refuse_link(path: &Path) -> crate::error::Result<()> {
    match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_symlink() => Err(UnsafePath::Link {
            path: path.to_path_buf(),
        }
        .into()),
        _ => Ok(()),
    }
}

/// Creates the folders of `path` below `base` (which must exist or is
/// created as usual), refusing any of them that is a link: a linked
/// checkpoint folder would put checkpoints (and their cuts) elsewhere.
pub(super) fn create_dirs(base: &Path, below: &[&str]) -> crate::error::Result<PathBuf> {
    use crate::error::ResultExt as _;
    std::fs::create_dir_all(base).context(|| format!("creating folder {}", base.display()))?;
    let mut dir = base.to_path_buf();
    for name in below {
        dir.push(name);
        refuse_link(&dir)?;
        match std::fs::create_dir(&dir) {
            Err(e) if e.kind() != io::ErrorKind::AlreadyExists => {
                return Err(e).context(|| format!("creating folder {}", dir.display()));
            }
            _ => {}
        }
    }
    Ok(dir)
}

/// Creates `path` as a new, empty file: what stood there (a file left by an
/// earlier run, or a planted link) is removed first, then the file is
/// created exclusively, so a link is never followed.
pub(super) fn create_fresh(path: &Path) -> io::Result<File> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
        _ => {}
    }
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
}

/// Opens a file DMP wrote earlier for writing (to cut it back or continue
/// it), `create`: or creates it; a link at `path` fails (`ELOOP`).
pub(super) fn open_own(path: &Path, create: bool) -> io::Result<File> {
    OpenOptions::new()
        .write(true)
        .create(create)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
}

/// Opens (or creates) a log DMP appends to; a link at `path` fails.
pub(super) fn open_append(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .append(true)
        .create(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
}

/// An error opening one of DMP's own files: a link says so, naming it.
pub(super) fn open_error(path: &Path, what: &str, e: io::Error) -> crate::error::Error {
    use crate::error::Contextual as _;
    if e.raw_os_error() == Some(libc::ELOOP) {
        return UnsafePath::Link {
            path: path.to_path_buf(),
        }
        .into();
    }
    e.with_context(format!("{what} {}", path.display()))
}

#[cfg(test)]
mod tests {
    use std::io::Write as _;

    use super::*;

    #[test]
    fn names_become_plain_entries_of_the_folder() {
        let dir = Path::new("/out");
        let path = entry(dir, "", "./../../esc2", ".jsonl").unwrap();
        assert_eq!(path, Path::new("/out/%2E%2F..%2F..%2Fesc2.jsonl"));
        let path = entry(dir, ".", "..", ".csv.dmp-partial").unwrap();
        assert_eq!(path.parent(), Some(dir));
        assert_eq!(
            entry(dir, "", "orders", ".csv").unwrap(),
            Path::new("/out/orders.csv")
        );
    }

    #[test]
    fn a_planted_link_is_replaced_and_its_target_kept() {
        let dir = tempfile::tempdir().unwrap();
        let victim = dir.path().join("victim");
        std::fs::write(&victim, "precious").unwrap();
        let path = dir.path().join(".t.jsonl.dmp-partial");
        std::os::unix::fs::symlink(&victim, &path).unwrap();

        let err = open_own(&path, true).unwrap_err();
        let err = open_error(&path, "opening", err);
        assert!(err.to_string().contains("is a symbolic link"), "{err}");
        assert!(refuse_link(&path).is_err());

        let mut file = create_fresh(&path).unwrap();
        file.write_all(b"rows").unwrap();
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "precious");
        assert!(
            !std::fs::symlink_metadata(&path)
                .unwrap()
                .file_type()
                .is_symlink()
        );
    }

    #[test]
    fn a_linked_checkpoint_folder_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let elsewhere = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink(elsewhere.path(), dir.path().join(".dmp-checkpoints")).unwrap();
        let err = create_dirs(dir.path(), &[".dmp-checkpoints", "p"]).unwrap_err();
        assert!(
            err.to_string()
                .contains(".dmp-checkpoints is a symbolic link"),
            "{err}"
        );
    }
}
