//! Atomic file replacement: write a temporary file beside the target, fsync, rename over it.

use std::{
    fs::{File, OpenOptions},
    path::{Path, PathBuf},
    sync::atomic::{AtomicU64, Ordering},
};

use super::DatasetError;

/// A temporary file in the target's directory, removed on drop unless [renamed] into place.
///
/// [renamed]: TempFile::rename
#[derive(Debug)]
pub(crate) struct TempFile {
    target: PathBuf,
    temp: PathBuf,
    done: bool,
}

/// Distinguishes temporary files created by one process.
static COUNTER: AtomicU64 = AtomicU64::new(0);

impl TempFile {
    /// Creates the target's parent directories and a fresh temporary file beside the target.
    pub(crate) fn create(target: &Path) -> Result<(Self, File), DatasetError> {
        let dir = parent_of(target);
        std::fs::create_dir_all(&dir).map_err(|source| DatasetError::Io {
            action: "create directory",
            path: dir.clone(),
            source,
        })?;
        let name = target
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .ok_or_else(|| DatasetError::InvalidOptions {
                path: target.to_path_buf(),
                message: "the path does not name a file".to_owned(),
            })?;
        let mut attempt = 0;
        loop {
            let nanos = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.subsec_nanos());
            let nonce = (COUNTER.fetch_add(1, Ordering::Relaxed) << 32) | u64::from(nanos);
            let temp = dir.join(format!(".{name}.{}.{nonce:016x}.tmp", std::process::id()));
            match OpenOptions::new().write(true).create_new(true).open(&temp) {
                Ok(file) => {
                    let guard = Self {
                        target: target.to_path_buf(),
                        temp,
                        done: false,
                    };
                    return Ok((guard, file));
                }
                Err(error) if error.kind() == std::io::ErrorKind::AlreadyExists && attempt < 8 => {
                    attempt += 1;
                }
                Err(source) => {
                    return Err(DatasetError::Io {
                        action: "create",
                        path: temp,
                        source,
                    });
                }
            }
        }
    }

    /// The target path.
    pub(crate) fn target(&self) -> &Path {
        &self.target
    }

    /// Flushes `file` to disk, closes it and returns its size: the file is then ready to be
    /// [renamed](Self::rename) into place.
    pub(crate) fn seal(&self, file: File) -> Result<u64, DatasetError> {
        let io = |action, source| DatasetError::Io {
            action,
            path: self.target.clone(),
            source,
        };
        file.sync_all().map_err(|source| io("flush", source))?;
        let bytes = file
            .metadata()
            .map_err(|source| io("inspect", source))?
            .len();
        drop(file);
        Ok(bytes)
    }

    /// Renames the sealed temporary file over the target.
    pub(crate) fn rename(mut self) -> Result<(), DatasetError> {
        std::fs::rename(&self.temp, &self.target).map_err(|source| DatasetError::Io {
            action: "rename into place",
            path: self.target.clone(),
            source,
        })?;
        self.done = true;
        sync_dir(&parent_of(&self.target));
        Ok(())
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        if !self.done {
            // Best effort: the temporary file may not exist any more.
            let _ = std::fs::remove_file(&self.temp);
        }
    }
}

/// The directory holding `path` (`.` for a bare file name).
fn parent_of(path: &Path) -> PathBuf {
    match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// Makes a rename durable by syncing its directory, where the platform allows it.
fn sync_dir(dir: &Path) {
    #[cfg(unix)]
    if let Ok(handle) = File::open(dir) {
        // Best effort: some file systems refuse to sync directories.
        let _ = handle.sync_all();
    }
    #[cfg(not(unix))]
    let _ = dir;
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    fn entries(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .expect("dir")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    #[test]
    fn persist_replaces_the_target_and_drop_leaves_it_untouched() {
        let dir = tempfile::tempdir().expect("tempdir");
        let target = dir.path().join("sub/out.txt");
        let (guard, mut file) = TempFile::create(&target).expect("create");
        file.write_all(b"first").expect("write");
        assert_eq!(guard.seal(file).expect("seal"), 5);
        guard.rename().expect("rename");
        assert_eq!(std::fs::read(&target).expect("read"), b"first");

        let (guard, mut file) = TempFile::create(&target).expect("create");
        file.write_all(b"second, abandoned").expect("write");
        drop(file);
        drop(guard);
        assert_eq!(std::fs::read(&target).expect("read"), b"first");
        assert_eq!(entries(&dir.path().join("sub")), vec!["out.txt".to_owned()]);
    }
}
