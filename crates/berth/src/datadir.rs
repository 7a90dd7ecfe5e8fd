//! The data directory: one owner at a time, and private file modes.
//!
//! `berth serve` (and `berth migrate` on its source) holds an exclusive
//! lock on `<data_dir>/berth.lock` for the process's lifetime, so two
//! servers never write one SQLite database and one blob tree. The lock is
//! advisory: readers that do not ask for it (a future `berth recover`) are
//! not blocked.
//!
//! The directory holds signing keys and password hashes (`berth.db`) and
//! the first owner password, so it is 0700 and those files 0600, created
//! so and repaired at startup on a directory made by an older version.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use anyhow::Context;

/// The lock file's name inside the data directory.
pub const LOCK_FILE: &str = "berth.lock";
/// The embedded metadata database's name inside the data directory.
pub const DATABASE_FILE: &str = "berth.db";
/// Files inside the data directory that hold secrets.
const SECRET_FILES: &[&str] = &[
    DATABASE_FILE,
    "berth.db-wal",
    "berth.db-shm",
    "initial-owner-password",
    LOCK_FILE,
];

/// An exclusive hold on a data directory, released when dropped (or when
/// the process ends, however it ends: the kernel drops the lock).
#[derive(Debug)]
pub struct DataDirLock {
    // Held open: closing the file releases the lock.
    _file: File,
    path: PathBuf,
}

impl DataDirLock {
    /// Takes `<dir>/berth.lock` (creating the directory, 0700, if needed)
    /// and writes this process's pid into it. Fails at once, naming the
    /// holder's pid, if another process holds it.
    pub fn acquire(dir: &Path) -> anyhow::Result<DataDirLock> {
        create_private_dir(dir)?;
        let path = dir.join(LOCK_FILE);
        let mut options = OpenOptions::new();
        // Not truncated before the lock is ours: the holder's pid is in it.
        options.read(true).write(true).create(true).truncate(false);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let mut file = options
            .open(&path)
            .with_context(|| format!("cannot open the lock file {}", path.display()))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                let mut holder = String::new();
                let _ = file.read_to_string(&mut holder);
                let holder = holder.trim();
                let who = if holder.is_empty() {
                    "another berth".to_string()
                } else {
                    format!("another berth (pid {holder})")
                };
                anyhow::bail!("{who} holds {}; stop it first", dir.display());
            }
            Err(std::fs::TryLockError::Error(e)) => {
                return Err(e).with_context(|| format!("cannot lock {}", path.display()));
            }
        }
        file.set_len(0)?;
        file.seek(SeekFrom::Start(0))?;
        writeln!(file, "{}", std::process::id())?;
        file.flush()?;
        Ok(DataDirLock { _file: file, path })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// Creates `dir` (and missing parents) with mode 0700 for the last part.
pub fn create_private_dir(dir: &Path) -> anyhow::Result<()> {
    if dir.is_dir() {
        return Ok(());
    }
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder
        .create(dir)
        .with_context(|| format!("cannot create directory {}", dir.display()))
}

/// Creates the new file `path` with mode 0600.
pub fn create_private_file(path: &Path) -> anyhow::Result<File> {
    let mut options = OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options
        .open(path)
        .with_context(|| format!("cannot create {}", path.display()))
}

/// Makes an existing file 0600 (one another program created).
pub fn secure_file(path: &Path) -> anyhow::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
            .with_context(|| format!("cannot change the mode of {}", path.display()))?;
    }
    #[cfg(not(unix))]
    let _ = path;
    Ok(())
}

/// Creates an empty `berth.db` with mode 0600 if there is none, so SQLite
/// (which creates with 0644 minus the umask) opens a private file.
pub fn precreate_database(dir: &Path) -> anyhow::Result<()> {
    let path = dir.join(DATABASE_FILE);
    let mut options = OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    match options.open(&path) {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(e).with_context(|| format!("cannot create {}", path.display())),
    }
}

/// Makes the directory 0700 and its secret files 0600 where they are more
/// open, logging each change. Returns what was changed.
#[cfg(unix)]
pub fn secure_modes(dir: &Path) -> anyhow::Result<Vec<String>> {
    use std::os::unix::fs::PermissionsExt;
    let mut changed = Vec::new();
    let mut fix = |path: &Path, wanted: u32| -> anyhow::Result<()> {
        let meta = match std::fs::symlink_metadata(path) {
            Ok(m) => m,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(e).with_context(|| format!("cannot inspect {}", path.display())),
        };
        let mode = meta.permissions().mode() & 0o777;
        // Anything open to group or others becomes the private mode.
        if mode & 0o077 != 0 {
            let new = wanted;
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(new))
                .with_context(|| format!("cannot change the mode of {}", path.display()))?;
            tracing::warn!(
                path = %path.display(),
                from = format!("{mode:04o}"),
                to = format!("{new:04o}"),
                "tightened the mode of a data-directory entry"
            );
            changed.push(format!("{} {mode:04o} -> {new:04o}", path.display()));
        }
        Ok(())
    };
    fix(dir, 0o700)?;
    for name in SECRET_FILES {
        fix(&dir.join(name), 0o600)?;
    }
    Ok(changed)
}

#[cfg(not(unix))]
pub fn secure_modes(_dir: &Path) -> anyhow::Result<Vec<String>> {
    Ok(Vec::new())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_lock_names_the_holder_and_a_released_one_is_taken_again() {
        let dir = tempfile::tempdir().expect("tempdir");
        let data = dir.path().join("data");
        let first = DataDirLock::acquire(&data).expect("first lock");
        let pid = std::fs::read_to_string(first.path()).expect("lock file");
        assert_eq!(pid.trim(), std::process::id().to_string());
        let e = DataDirLock::acquire(&data).expect_err("second lock");
        let message = format!("{e:#}");
        assert!(
            message.contains(&format!("pid {}", std::process::id()))
                && message.contains("stop it first"),
            "{message}"
        );
        drop(first);
        DataDirLock::acquire(&data).expect("lock after release");
    }

    #[cfg(unix)]
    #[test]
    fn modes_are_private_when_created_and_tightened_when_not() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("tempdir");
        let data = dir.path().join("data");
        let _lock = DataDirLock::acquire(&data).expect("lock");
        precreate_database(&data).expect("db");
        let mode = |p: &Path| std::fs::metadata(p).expect("meta").permissions().mode() & 0o777;
        assert_eq!(mode(&data), 0o700);
        assert_eq!(mode(&data.join(DATABASE_FILE)), 0o600);
        assert_eq!(mode(&data.join(LOCK_FILE)), 0o600);
        assert!(secure_modes(&data).expect("secure").is_empty());

        let perm = std::fs::Permissions::from_mode;
        std::fs::set_permissions(&data, perm(0o755)).expect("chmod");
        std::fs::set_permissions(data.join(DATABASE_FILE), perm(0o644)).expect("chmod");
        let changed = secure_modes(&data).expect("secure");
        assert_eq!(changed.len(), 2, "{changed:?}");
        assert_eq!(mode(&data), 0o700);
        assert_eq!(mode(&data.join(DATABASE_FILE)), 0o600);
    }
}
