//! Crash-safe writes: records prepared in the store's staging area and moved into place with
//! one rename, flushed to disk where the record must survive a power loss.

use std::{
    fs,
    io::Write as _,
    path::{Path, PathBuf},
};

use crate::{
    files::TempFile,
    registries::{RegistryError, Result},
};

// The store and its shared helpers (io, invalid, now_ms, …).
use super::*;

pub(super) const STAGING: &str = ".velo-staging.trash";

/// How hard a write holds on: every write survives a killed process (it lands by rename);
/// registry records (models, versions, aliases) are also flushed to disk, with their directory,
/// so that they survive a power loss. Tracking records (runs, params, metrics, artifacts) are
/// left to the page cache, as MLflow's own file store leaves all of them: flushing each of
/// them would make a run's logging ten times slower.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Durability {
    Synced,
    Cached,
}

/// Runs `operation` on `path`; when its parent directory is missing, creates it and tries once
/// more (creating directories up front would cost a system call per write).
pub(super) fn with_parents<T>(
    path: &Path,
    mut operation: impl FnMut() -> std::io::Result<T>,
) -> std::io::Result<T> {
    match operation() {
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            if let Some(parent) = path.parent() {
                fs::create_dir_all(parent)?;
            }
            operation()
        }
        other => other,
    }
}

/// Flushes the directory holding `path`, so that a rename into it is on disk.
pub(super) fn sync_parent(path: &Path) -> Result<()> {
    #[cfg(unix)]
    if let Some(parent) = path.parent() {
        fs::File::open(parent)
            .and_then(|dir| dir.sync_all())
            .map_err(io("flush", parent))?;
    }
    #[cfg(not(unix))]
    let _ = path;
    Ok(())
}

/// Whether a rename failed because its target exists with content (another writer won).
pub(super) fn is_taken(error: &std::io::Error) -> bool {
    matches!(
        error.kind(),
        std::io::ErrorKind::AlreadyExists | std::io::ErrorKind::DirectoryNotEmpty
    )
}

impl FileStore {
    /// Refuses a path that leaves the store or passes through a symbolic link below its root:
    /// every path the store writes (records, aliases, versions, metrics, artifacts) goes
    /// through this check first, so a link planted in the store cannot redirect a write.
    pub(super) fn inside(&self, path: &Path) -> Result<()> {
        let relative = path.strip_prefix(&self.root).map_err(|_| {
            invalid(format!(
                "{} is outside the store {}",
                path.display(),
                self.root.display()
            ))
        })?;
        let mut current = self.root.clone();
        for component in relative.components() {
            let std::path::Component::Normal(part) = component else {
                return Err(invalid(format!(
                    "{} is not a plain path inside the store",
                    path.display()
                )));
            };
            current.push(part);
            match fs::symlink_metadata(&current) {
                Ok(meta) if meta.file_type().is_symlink() => {
                    return Err(invalid(format!(
                        "{} goes through a symbolic link ({}); the store follows none",
                        path.display(),
                        current.display()
                    )));
                }
                Ok(_) => {}
                // What does not exist yet is created as a plain directory or file.
                Err(_) => break,
            }
        }
        Ok(())
    }

    /// Marks one durable step: with the test-only feature `crash-points`, the crash tests
    /// abort here.
    pub(super) fn step(&self) {
        #[cfg(feature = "crash-points")]
        {
            let done = self
                .writes
                .fetch_add(1, std::sync::atomic::Ordering::SeqCst)
                + 1;
            if self.crash_after.is_some_and(|limit| done >= limit) {
                std::process::abort();
            }
        }
    }

    /// Removes what killed processes left in the staging area: entries of processes that no
    /// longer run (by the process id in their name), and any entry untouched for a day (a live
    /// writer never keeps one that long). Best effort: failures are ignored.
    pub(super) fn sweep_staging(&self) {
        let Ok(entries) = fs::read_dir(self.root.join(STAGING)) else {
            return;
        };
        let day = std::time::Duration::from_secs(24 * 3600);
        for entry in entries.flatten() {
            // Staged directories are `PID-NONCE`, staged files `file.PID.NONCE.tmp`.
            let name = entry.file_name();
            let name = name.to_string_lossy();
            let pid = crate::files::temp_file_pid(&name, "file").or_else(|| {
                name.split_once('-')
                    .and_then(|(pid, _)| pid.parse::<u32>().ok())
            });
            let orphan = pid.is_some_and(crate::files::process_is_gone);
            let stale = orphan
                || entry
                    .metadata()
                    .and_then(|meta| meta.modified())
                    .ok()
                    .and_then(|modified| modified.elapsed().ok())
                    .is_some_and(|age| age > day);
            if stale {
                let path = entry.path();
                let _ = if path.is_dir() {
                    fs::remove_dir_all(&path)
                } else {
                    fs::remove_file(&path)
                };
            }
        }
    }

    /// A fresh directory in the staging area.
    pub(super) fn staging_dir(&self) -> Result<PathBuf> {
        let dir = self
            .root
            .join(STAGING)
            .join(format!("{}-{}", std::process::id(), random_hex(8)));
        self.inside(&dir)?;
        with_parents(&dir, || fs::create_dir(&dir)).map_err(io("create", &dir))?;
        Ok(dir)
    }

    /// Writes `bytes` to a new file (flushed to disk when `durability` asks).
    pub(super) fn write_new(
        &self,
        path: &Path,
        bytes: &[u8],
        durability: Durability,
    ) -> Result<()> {
        self.inside(path)?;
        let mut file = with_parents(path, || fs::File::create(path)).map_err(io("create", path))?;
        file.write_all(bytes).map_err(io("write", path))?;
        if durability == Durability::Synced {
            file.sync_all().map_err(io("flush", path))?;
        }
        self.step();
        Ok(())
    }

    /// Replaces `target` with `bytes` atomically: staged, flushed, renamed.
    pub(super) fn write_atomic(
        &self,
        target: &Path,
        bytes: &[u8],
        durability: Durability,
    ) -> Result<()> {
        self.inside(target)?;
        let staging = self.root.join(STAGING);
        self.inside(&staging)?;
        let synced = durability == Durability::Synced;
        let (temp, mut file) = TempFile::within(&staging, target)?;
        file.write_all(bytes).map_err(io("write", target))?;
        temp.seal(file, synced)?;
        self.step();
        temp.rename(synced)?;
        self.step();
        Ok(())
    }

    /// Moves a complete staged directory to `target`. Returns false, leaving `target` alone,
    /// when `target` exists already with content.
    pub(super) fn publish_dir(
        &self,
        staged: &Path,
        target: &Path,
        durability: Durability,
    ) -> Result<bool> {
        if let Err(error) = self.inside(target) {
            let _ = fs::remove_dir_all(staged);
            return Err(error);
        }
        match with_parents(target, || fs::rename(staged, target)) {
            Ok(()) => {
                if durability == Durability::Synced {
                    sync_parent(target)?;
                }
                self.step();
                Ok(true)
            }
            Err(error) if is_taken(&error) => {
                let _ = fs::remove_dir_all(staged);
                Ok(false)
            }
            Err(error) => {
                let _ = fs::remove_dir_all(staged);
                Err(RegistryError::io("move into place", target, error))
            }
        }
    }

    /// Copies a local directory (regular files only; symlinks refused) under `into`.
    pub(super) fn copy_tree(&self, from: &Path, into: &Path) -> Result<()> {
        for (relative, file) in Self::keyed_files_strict(from)? {
            let target = relative
                .split('/')
                .fold(into.to_path_buf(), |path, segment| path.join(segment));
            // `fs::copy` lets the kernel copy (and reflink where the filesystem can).
            with_parents(&target, || fs::copy(&file, &target)).map_err(io("copy", &target))?;
            self.step();
        }
        Ok(())
    }
}
