//! File-system helpers shared by the datasets and the embedded store: `file://` URIs and
//! atomic replacement of a file (write a temporary file, flush, rename over the target).
//!
//! Both the dataset writers and [`FileStore`](crate::registries::FileStore) write through
//! [`TempFile`]: the writers keep the temporary file beside its target, the store keeps it in
//! its staging area (so that MLflow never lists it as a record); either way the target is
//! replaced whole by one rename, or left as it was.

use std::{
    fs::{File, OpenOptions},
    path::{Path, PathBuf},
    sync::atomic::{AtomicU64, Ordering},
};

/// The absolute `file://` URI of a path (resolving symbolic links when the file exists).
pub(crate) fn file_uri(path: &Path) -> String {
    let absolute = std::fs::canonicalize(path)
        .or_else(|_| std::path::absolute(path))
        .unwrap_or_else(|_| path.to_path_buf());
    let text = absolute.to_string_lossy().replace('\\', "/");
    // Windows verbatim prefixes (`//?/C:/…`) are not part of a URI.
    let text = text.strip_prefix("//?/").unwrap_or(&text);
    let mut uri = String::from("file://");
    if !text.starts_with('/') {
        uri.push('/');
    }
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || b"/-._~:".contains(&byte) {
            uri.push(char::from(byte));
        } else {
            uri.push_str(&format!("%{byte:02X}"));
        }
    }
    uri
}

/// A file-system operation that failed: what was attempted, on which path.
#[derive(Debug)]
pub(crate) struct FileError {
    /// What was attempted: `create`, `flush`, `rename into place`, …
    pub(crate) action: &'static str,
    /// The file or directory.
    pub(crate) path: PathBuf,
    /// The cause.
    pub(crate) source: std::io::Error,
}

impl FileError {
    fn new(action: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> Self {
        let path = path.to_path_buf();
        move |source| Self {
            action,
            path,
            source,
        }
    }
}

/// A temporary file that replaces `target` when [renamed](TempFile::rename), and is removed on
/// drop otherwise.
#[derive(Debug)]
pub(crate) struct TempFile {
    target: PathBuf,
    temp: PathBuf,
    done: bool,
}

/// Distinguishes temporary files created by one process.
static COUNTER: AtomicU64 = AtomicU64::new(0);

impl TempFile {
    /// A fresh temporary file beside `target` (`.NAME.PID.NONCE.tmp`), creating the target's
    /// parent directories.
    ///
    /// Temporary files of the same target left by processes that no longer run (killed while
    /// writing) are removed first.
    pub(crate) fn beside(target: &Path) -> Result<(Self, File), FileError> {
        let dir = parent_of(target);
        std::fs::create_dir_all(&dir).map_err(FileError::new("create directory", &dir))?;
        let name = target
            .file_name()
            .map_or_else(|| "file".to_owned(), |n| n.to_string_lossy().into_owned());
        let stem = format!(".{name}");
        // A set published by a process that was killed is completed before its temporary
        // files could be taken for orphans.
        recover(&dir).map_err(FileError::new(
            "complete the interrupted publication in",
            &dir,
        ))?;
        sweep_orphans(&dir, &stem);
        Self::create(target, &dir, &stem)
    }

    /// A fresh temporary file in the existing directory `dir` that will replace `target`.
    pub(crate) fn within(dir: &Path, target: &Path) -> Result<(Self, File), FileError> {
        Self::create(target, dir, "file")
    }

    fn create(target: &Path, dir: &Path, stem: &str) -> Result<(Self, File), FileError> {
        let mut attempt = 0;
        loop {
            let nanos = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.subsec_nanos());
            let nonce = (COUNTER.fetch_add(1, Ordering::Relaxed) << 32) | u64::from(nanos);
            let temp = dir.join(format!("{stem}.{}.{nonce:016x}.tmp", std::process::id()));
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
                    return Err(FileError {
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

    /// Closes `file`, flushing it to disk first when `sync` asks, and returns its size: the
    /// file is then ready to be [renamed](Self::rename) into place.
    pub(crate) fn seal(&self, file: File, sync: bool) -> Result<u64, FileError> {
        if sync {
            file.sync_all()
                .map_err(FileError::new("flush", &self.target))?;
        }
        let bytes = file
            .metadata()
            .map_err(FileError::new("inspect", &self.target))?
            .len();
        drop(file);
        Ok(bytes)
    }

    /// Renames the sealed temporary file over the target, creating the target's directory when
    /// it is missing; with `sync`, the directory is flushed so that the rename is on disk.
    pub(crate) fn rename(mut self, sync: bool) -> Result<(), FileError> {
        let rename = || std::fs::rename(&self.temp, &self.target);
        let renamed = match rename() {
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
                std::fs::create_dir_all(parent_of(&self.target)).and_then(|()| rename())
            }
            other => other,
        };
        renamed.map_err(FileError::new("rename into place", &self.target))?;
        self.done = true;
        if sync {
            sync_dir(&parent_of(&self.target));
        }
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

/// The journal of a set of files being published together, in their directory.
pub(crate) const JOURNAL: &str = ".velo-publish.journal";

/// Publishes sealed temporary files together, all in `dir`: a journal naming each temporary
/// file and its target is written and flushed first, then the files are renamed one by one,
/// then the journal is removed. A process killed in between leaves the journal, and whoever
/// touches the directory next ([`recover`]: every dataset read and write does) completes the
/// renames first, so a reader sees the whole old set or the whole new one, never a mix.
pub(crate) fn publish_set(dir: &Path, files: Vec<TempFile>) -> Result<(), FileError> {
    let mut journal = String::new();
    let mut pairs = Vec::with_capacity(files.len());
    for mut file in files {
        file.done = true;
        let (Some(temp), Some(target)) = (file.temp.file_name(), file.target.file_name()) else {
            return Err(FileError {
                action: "publish",
                path: file.target.clone(),
                source: std::io::Error::other("a file of the set has no name"),
            });
        };
        if parent_of(&file.target) != dir || parent_of(&file.temp) != dir {
            return Err(FileError {
                action: "publish",
                path: file.target.clone(),
                source: std::io::Error::other("the files of a set must share one directory"),
            });
        }
        journal.push_str(&format!(
            "{}\t{}\n",
            temp.to_string_lossy(),
            target.to_string_lossy()
        ));
        pairs.push((file.temp.clone(), file.target.clone()));
    }
    let staged = dir.join(format!("{JOURNAL}.{}.tmp", std::process::id()));
    let path = dir.join(JOURNAL);
    std::fs::write(&staged, journal).map_err(FileError::new("write", &staged))?;
    File::open(&staged)
        .and_then(|file| file.sync_all())
        .map_err(FileError::new("flush", &staged))?;
    std::fs::rename(&staged, &path).map_err(FileError::new("rename into place", &path))?;
    sync_dir(dir);
    for (temp, target) in pairs {
        std::fs::rename(&temp, &target).map_err(FileError::new("rename into place", &target))?;
    }
    sync_dir(dir);
    std::fs::remove_file(&path).map_err(FileError::new("remove", &path))?;
    sync_dir(dir);
    Ok(())
}

/// Completes a publication that a killed process left in `dir` (see [`publish_set`]): renames
/// the temporary files its journal names that are still there, then removes the journal.
/// Nothing to do (one failed `stat`) in a directory without a journal.
pub(crate) fn recover(dir: &Path) -> std::io::Result<()> {
    let path = dir.join(JOURNAL);
    let journal = match std::fs::read_to_string(&path) {
        Ok(journal) => journal,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(error) => return Err(error),
    };
    for line in journal.lines() {
        let Some((temp, target)) = line.split_once('\t') else {
            continue;
        };
        // Names only: a journal never moves files out of its directory.
        if [temp, target]
            .iter()
            .any(|name| name.contains('/') || name.contains('\\') || name.starts_with(".."))
        {
            continue;
        }
        match std::fs::rename(dir.join(temp), dir.join(target)) {
            Ok(()) => {}
            // Renamed already, by the killed process or another reader.
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
            Err(error) => return Err(error),
        }
    }
    sync_dir(dir);
    match std::fs::remove_file(&path) {
        Err(error) if error.kind() != std::io::ErrorKind::NotFound => Err(error),
        _ => Ok(()),
    }
}

/// The process id written in a temporary file's name (`STEM.PID.NONCE.tmp`).
pub(crate) fn temp_file_pid(name: &str, stem: &str) -> Option<u32> {
    let rest = name
        .strip_prefix(stem)?
        .strip_prefix('.')?
        .strip_suffix(".tmp")?;
    let (pid, nonce) = rest.split_once('.')?;
    (nonce.len() == 16 && nonce.bytes().all(|b| b.is_ascii_hexdigit()))
        .then(|| pid.parse().ok())
        .flatten()
}

/// Whether the process `pid` has ended, where the platform can tell (`/proc` on Linux);
/// `false` when it runs or cannot be known.
pub(crate) fn process_is_gone(pid: u32) -> bool {
    if pid == std::process::id() {
        return false;
    }
    let proc = Path::new("/proc");
    proc.join("self").exists() && !proc.join(pid.to_string()).exists()
}

/// Removes the temporary files `STEM.PID.NONCE.tmp` in `dir` whose process has ended (best
/// effort: a file that cannot be removed stays).
fn sweep_orphans(dir: &Path, stem: &str) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let orphan = name
            .to_str()
            .and_then(|name| temp_file_pid(name, stem))
            .is_some_and(process_is_gone);
        if orphan {
            let _ = std::fs::remove_file(entry.path());
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
pub(crate) fn sync_dir(dir: &Path) {
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
    fn rename_replaces_the_target_and_drop_leaves_it_untouched() {
        let dir = tempfile::tempdir().expect("tempdir");
        let target = dir.path().join("sub/out.txt");
        let (guard, mut file) = TempFile::beside(&target).expect("create");
        file.write_all(b"first").expect("write");
        assert_eq!(guard.seal(file, true).expect("seal"), 5);
        guard.rename(true).expect("rename");
        assert_eq!(std::fs::read(&target).expect("read"), b"first");

        let (guard, mut file) = TempFile::beside(&target).expect("create");
        file.write_all(b"second, abandoned").expect("write");
        drop(file);
        drop(guard);
        assert_eq!(std::fs::read(&target).expect("read"), b"first");
        assert_eq!(entries(&dir.path().join("sub")), vec!["out.txt".to_owned()]);
    }

    #[test]
    fn a_file_staged_elsewhere_lands_in_a_new_directory() {
        let dir = tempfile::tempdir().expect("tempdir");
        let staging = dir.path().join("staging");
        std::fs::create_dir(&staging).expect("staging");
        let target = dir.path().join("a/b/record");
        let (guard, mut file) = TempFile::within(&staging, &target).expect("create");
        file.write_all(b"record").expect("write");
        guard.seal(file, false).expect("seal");
        guard.rename(false).expect("rename");
        assert_eq!(std::fs::read(&target).expect("read"), b"record");
        assert!(entries(&staging).is_empty(), "nothing left in staging");
    }

    #[test]
    fn temporary_files_of_ended_processes_are_swept_at_the_next_write() {
        let dir = tempfile::tempdir().expect("tempdir");
        let target = dir.path().join("out.parquet");
        // pid_max is at most 4,194,304: this process never ran.
        let orphan = dir
            .path()
            .join(".out.parquet.999999999.00000000000000ab.tmp");
        let mine = dir.path().join(format!(
            ".out.parquet.{}.00000000000000cd.tmp",
            std::process::id()
        ));
        let other = dir
            .path()
            .join(".other.parquet.999999999.00000000000000ab.tmp");
        for file in [&orphan, &mine, &other] {
            std::fs::write(file, b"partial").expect("write");
        }
        let (guard, file) = TempFile::beside(&target).expect("create");
        guard.seal(file, false).expect("seal");
        guard.rename(false).expect("rename");
        if Path::new("/proc/self").exists() {
            assert!(!orphan.exists(), "the ended writer's file is swept");
        }
        assert!(mine.exists(), "a running writer's file stays");
        assert!(other.exists(), "another target's files stay");
        assert_eq!(temp_file_pid(".a.7.00000000000000ff.tmp", ".a"), Some(7));
        assert_eq!(temp_file_pid(".a.7.xyz.tmp", ".a"), None);
    }

    /// Temporary files of a set, sealed with `contents`, for targets `names` in `dir`.
    fn sealed(dir: &Path, names: &[&str], contents: &[u8]) -> Vec<TempFile> {
        names
            .iter()
            .map(|name| {
                let (guard, mut file) = TempFile::beside(&dir.join(name)).expect("create");
                file.write_all(contents).expect("write");
                guard.seal(file, false).expect("seal");
                guard
            })
            .collect()
    }

    #[test]
    fn a_set_is_published_whole_and_an_interrupted_one_is_completed() {
        let dir = tempfile::tempdir().expect("tempdir");
        let names = ["a.parquet", "b.parquet", "c.parquet", "d.parquet"];
        publish_set(dir.path(), sealed(dir.path(), &names, b"old")).expect("publish");
        assert_eq!(entries(dir.path()), names.map(str::to_owned));
        // A killed publication: journal written, `renamed` files moved, then nothing.
        for renamed in 0..=names.len() {
            let set = sealed(dir.path(), &names, b"new");
            let mut journal = String::new();
            let mut pairs = Vec::new();
            for mut file in set {
                file.done = true;
                journal.push_str(&format!(
                    "{}\t{}\n",
                    file.temp.file_name().unwrap().to_string_lossy(),
                    file.target.file_name().unwrap().to_string_lossy()
                ));
                pairs.push((file.temp.clone(), file.target.clone()));
            }
            std::fs::write(dir.path().join(JOURNAL), journal).expect("journal");
            for (temp, target) in &pairs[..renamed] {
                std::fs::rename(temp, target).expect("rename");
            }
            recover(dir.path()).expect("recover");
            for name in names {
                assert_eq!(std::fs::read(dir.path().join(name)).expect("read"), b"new");
            }
            assert_eq!(
                entries(dir.path()),
                names.map(str::to_owned),
                "after {renamed}"
            );
            publish_set(dir.path(), sealed(dir.path(), &names, b"old")).expect("publish");
        }
        // A journal naming paths out of its directory moves nothing.
        std::fs::write(dir.path().join(JOURNAL), "../x\t../y\n").expect("journal");
        recover(dir.path()).expect("recover");
        assert_eq!(entries(dir.path()), names.map(str::to_owned));
    }

    #[test]
    fn file_uris_are_absolute_and_escaped() {
        let uri = file_uri(Path::new("/tmp/a b/c%.parquet"));
        assert_eq!(uri, "file:///tmp/a%20b/c%25.parquet");
        assert!(file_uri(Path::new("relative.parquet")).starts_with("file:///"));
    }
}
