//! `berth backup create | restore | verify`: online backups of an embedded
//! registry (SQLite + filesystem blobs).
//!
//! A backup directory holds `berth.db` (a consistent snapshot taken while
//! the registry runs, see `berth_metadata::backup`), `blobs/` in the blob
//! store's own layout with every blob that snapshot lists, the first owner
//! password file if there was one, and `backup.json`, written last, which
//! says what was taken (so a directory without it is an interrupted
//! backup). Blobs are content-addressed and never rewritten, so taking them
//! after the snapshot is safe: every blob the snapshot lists was committed
//! before it. They are hard-linked when the backup is on the same file
//! system (instant, no extra space) unless `--copy` is given, and copied
//! otherwise — re-hashed on the way.
//!
//! Scale-out registries (PostgreSQL + a bucket) are backed up with the
//! databases' and object stores' own tools: docs/operations.md.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, ensure, Context};
use berth_metadata::backup::{check_snapshot, snapshot_sqlite, BlobEntry};
use berth_storage::filesystem::blob_relative_path;
use berth_types::{Algorithm, Digest, DigestHasher};
use indicatif::{ProgressBar, ProgressStyle};
use serde::{Deserialize, Serialize};

use crate::config::Config;
use crate::output::reportln;

/// `backup.json`'s format; a newer one is refused rather than misread.
const FORMAT: &str = "berth-backup/1";
const MANIFEST: &str = "backup.json";
const DATABASE: &str = crate::datadir::DATABASE_FILE;
const OWNER_PASSWORD: &str = "initial-owner-password";

#[derive(Debug, clap::Subcommand)]
pub enum BackupCommand {
    /// Take a consistent backup of a running (or stopped) embedded
    /// registry into a new directory, while pushes go on.
    Create {
        /// The backup directory: new, or empty. It gets mode 0700: it holds
        /// the database with password hashes and signing keys.
        #[arg(long, value_name = "DIR")]
        to: PathBuf,
        /// The registry's configuration file.
        #[arg(long, value_name = "FILE", conflicts_with = "data")]
        config: Option<PathBuf>,
        /// Or its data directory (embedded defaults).
        #[arg(long, value_name = "DIR")]
        data: Option<PathBuf>,
        /// Copy every blob (re-hashing it) instead of hard-linking blobs
        /// when the backup is on the same file system.
        #[arg(long)]
        copy: bool,
    },
    /// Restore a backup into a new data directory, checking every blob
    /// on the way; then start it with `berth serve --data NEWDIR`.
    Restore {
        /// The backup directory.
        #[arg(long, value_name = "DIR")]
        from: PathBuf,
        /// The new data directory: new, or empty (an existing registry is
        /// never overwritten).
        #[arg(long, value_name = "NEWDIR")]
        data: PathBuf,
    },
    /// Check a backup: the database's integrity and checksum, every
    /// manifest against its digest, every blob re-hashed, every blob a
    /// manifest references present. Exit status 1 on any problem.
    Verify {
        /// The backup directory.
        #[arg(long, value_name = "DIR")]
        from: PathBuf,
    },
}

/// `backup.json`.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct BackupManifest {
    format: String,
    berth_version: String,
    created_at: String,
    /// The data directory it was taken from.
    source: PathBuf,
    database: DatabaseFile,
    repositories: u64,
    manifests: u64,
    tags: u64,
    blobs: BlobTotals,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct DatabaseFile {
    file: String,
    sha256: String,
    bytes: u64,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct BlobTotals {
    count: u64,
    bytes: u64,
    linked: u64,
    copied: u64,
}

pub fn run(command: BackupCommand) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    match command {
        BackupCommand::Create {
            to,
            config,
            data,
            copy,
        } => {
            let config = Config::of_registry(config.as_deref(), data.as_deref())?
                .context("say which registry to back up: --config FILE or --data DIR")?;
            runtime.block_on(create(&config, &to, copy))
        }
        BackupCommand::Restore { from, data } => runtime.block_on(restore(&from, &data)),
        BackupCommand::Verify { from } => runtime.block_on(verify(&from)),
    }
}

/// A directory that is new or empty, created 0700.
fn fresh_private_dir(dir: &Path, what: &str) -> anyhow::Result<()> {
    if dir.exists() {
        let mut entries =
            std::fs::read_dir(dir).with_context(|| format!("cannot read {}", dir.display()))?;
        ensure!(
            entries.next().is_none(),
            "{} is not empty: give a new or empty directory for the {what}",
            dir.display()
        );
    }
    crate::datadir::create_private_dir(dir)
}

fn progress(total: u64, verb: &str) -> ProgressBar {
    ProgressBar::new(total).with_style(
        ProgressStyle::with_template(&format!(
            "{verb} {{msg}} [{{bar:30}}] {{bytes}}/{{total_bytes}} {{bytes_per_sec}} eta {{eta}}"
        ))
        .unwrap_or_else(|_| ProgressStyle::default_bar()),
    )
}

/// Reads `path` through, hashing it and handing each piece to `sink`;
/// returns what it hashed to and its length.
fn read_hashing(
    path: &Path,
    algorithm: Algorithm,
    bar: &ProgressBar,
    mut sink: impl FnMut(&[u8]) -> anyhow::Result<()>,
) -> anyhow::Result<(Digest, u64)> {
    let mut input =
        std::fs::File::open(path).with_context(|| format!("cannot read {}", path.display()))?;
    let mut hasher = DigestHasher::new(algorithm);
    let mut buffer = vec![0u8; 1 << 20];
    let mut length = 0u64;
    loop {
        let n = input
            .read(&mut buffer)
            .with_context(|| format!("cannot read {}", path.display()))?;
        if n == 0 {
            break;
        }
        hasher.update(&buffer[..n]);
        sink(&buffer[..n])?;
        length += n as u64;
        bar.inc(n as u64);
    }
    Ok((hasher.finish(), length))
}

/// Copies `from` to the new file `to` (mode 0600), hashing it; the copy is
/// on disk when it returns.
fn copy_hashing(
    from: &Path,
    to: &Path,
    algorithm: Algorithm,
    bar: &ProgressBar,
) -> anyhow::Result<(Digest, u64)> {
    let mut output = crate::datadir::create_private_file(to)?;
    let hashed = read_hashing(from, algorithm, bar, |piece| {
        output
            .write_all(piece)
            .with_context(|| format!("cannot write {}", to.display()))
    })?;
    output
        .sync_all()
        .with_context(|| format!("cannot write {}", to.display()))?;
    Ok(hashed)
}

fn hash_file(
    path: &Path,
    algorithm: Algorithm,
    bar: &ProgressBar,
) -> anyhow::Result<(Digest, u64)> {
    read_hashing(path, algorithm, bar, |_| Ok(()))
}

/// A small file copied (mode 0600, on disk when it returns).
fn copy_file(from: &Path, to: &Path) -> anyhow::Result<()> {
    copy_hashing(from, to, Algorithm::Sha256, &ProgressBar::hidden()).map(|_| ())
}

/// `initial-owner-password` from one directory to the other, if there is one.
fn copy_owner_password(from_dir: &Path, to_dir: &Path) -> anyhow::Result<()> {
    let password = from_dir.join(OWNER_PASSWORD);
    if password.exists() {
        copy_file(&password, &to_dir.join(OWNER_PASSWORD))?;
    }
    Ok(())
}

fn sha256_of_file(path: &Path) -> anyhow::Result<(String, u64)> {
    let (digest, length) = hash_file(path, Algorithm::Sha256, &ProgressBar::hidden())?;
    Ok((digest.hex().to_string(), length))
}

/// Makes `to`'s parent directories (0700).
fn parents(to: &Path) -> anyhow::Result<()> {
    if let Some(parent) = to.parent() {
        crate::datadir::create_private_dir(parent)?;
    }
    Ok(())
}

async fn create(config: &Config, to: &Path, copy: bool) -> anyhow::Result<()> {
    ensure!(
        config.storage.kind == "filesystem" && !config.shared_metadata(),
        "berth backup is for embedded registries (filesystem storage, SQLite metadata); \
         back up a scale-out deployment with pg_dump and a copy of its bucket \
         (docs/operations.md, \"Scale-out backups\")"
    );
    let source_db = config.data_dir.join(DATABASE);
    ensure!(
        config.metadata.url.is_some() || source_db.exists(),
        "{} does not exist: is {} an embedded registry's data directory?",
        source_db.display(),
        config.data_dir.display()
    );
    let source_db = match config.metadata_url().strip_prefix("sqlite://") {
        Some(path) => PathBuf::from(path.split('?').next().unwrap_or(path)),
        None => source_db,
    };
    fresh_private_dir(to, "backup")?;
    let started = Instant::now();

    // 1. The metadata, as one moment saw it.
    let db = to.join(DATABASE);
    let summary = snapshot_sqlite(&source_db, &db)
        .await
        .with_context(|| format!("cannot snapshot {}", source_db.display()))?;
    crate::datadir::secure_file(&db)?;
    reportln!(
        "database: {} repositories, {} manifests, {} tags, {} blobs",
        summary.repositories,
        summary.manifests,
        summary.tags,
        summary.blobs.len()
    );

    // 2. Every blob it lists.
    let blob_root = config.blob_dir();
    let total: u64 = summary.blobs.iter().map(|b| b.size).sum();
    let bar = progress(total, "blobs");
    let (mut linked, mut copied) = (0u64, 0u64);
    let mut can_link = !copy;
    for (i, blob) in summary.blobs.iter().enumerate() {
        bar.set_message(format!("{}/{}", i + 1, summary.blobs.len()));
        let relative = blob_relative_path(&blob.digest);
        let from = blob_root.join(&relative);
        let into = to.join("blobs").join(&relative);
        parents(&into)?;
        ensure!(
            from.exists(),
            "blob {} is listed in the registry's database but {} does not exist; \
             the registry is missing it (was the blob directory changed by hand?)",
            blob.digest,
            from.display()
        );
        if can_link {
            match std::fs::hard_link(&from, &into) {
                Ok(()) => {
                    linked += 1;
                    bar.inc(blob.size);
                    continue;
                }
                // Another file system (or one without hard links): copy
                // this and every other blob.
                Err(_) => can_link = false,
            }
        }
        let (digest, length) = copy_hashing(&from, &into, blob.digest.algorithm(), &bar)?;
        ensure!(
            digest == blob.digest && length == blob.size,
            "blob {} of the registry is damaged: {} holds {length} bytes hashing to {digest}; \
             the backup was not finished",
            blob.digest,
            from.display()
        );
        copied += 1;
    }
    bar.finish_and_clear();
    sync_dir(&to.join("blobs"));

    // 3. The first owner password, if the registry still has its file.
    copy_owner_password(&config.data_dir, to)?;

    // 4. What was taken, last: its presence marks a finished backup.
    let (sha256, bytes) = sha256_of_file(&db)?;
    let manifest = BackupManifest {
        format: FORMAT.into(),
        berth_version: crate::VERSION.into(),
        created_at: berth_util::rfc3339_ms(berth_util::now_ms()),
        source: config.data_dir.clone(),
        database: DatabaseFile {
            file: DATABASE.into(),
            sha256,
            bytes,
        },
        repositories: summary.repositories,
        manifests: summary.manifests,
        tags: summary.tags,
        blobs: BlobTotals {
            count: summary.blobs.len() as u64,
            bytes: total,
            linked,
            copied,
        },
    };
    write_manifest(to, &manifest)?;
    reportln!(
        "backup of {} written to {} in {:.1}s: {} blobs ({} bytes; {linked} hard-linked, {copied} copied)",
        config.data_dir.display(),
        to.display(),
        started.elapsed().as_secs_f64(),
        summary.blobs.len(),
        total
    );
    if linked > 0 {
        reportln!(
            "  hard-linked blobs share their disk blocks with the registry: copy the backup \
             elsewhere (or take it with --copy) to survive a disk failure"
        );
    }
    Ok(())
}

fn write_manifest(dir: &Path, manifest: &BackupManifest) -> anyhow::Result<()> {
    let temporary = dir.join(format!("{MANIFEST}.tmp"));
    let mut file = crate::datadir::create_private_file(&temporary)?;
    serde_json::to_writer_pretty(&mut file, manifest)?;
    file.write_all(b"\n")?;
    file.sync_all()?;
    std::fs::rename(&temporary, dir.join(MANIFEST))
        .with_context(|| format!("cannot write {}", dir.join(MANIFEST).display()))?;
    sync_dir(dir);
    Ok(())
}

fn sync_dir(dir: &Path) {
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
}

fn read_manifest(dir: &Path) -> anyhow::Result<BackupManifest> {
    let path = dir.join(MANIFEST);
    let text = std::fs::read_to_string(&path).with_context(|| {
        format!(
            "{} is not a finished berth backup: {} cannot be read (an interrupted backup has none)",
            dir.display(),
            path.display()
        )
    })?;
    let manifest: BackupManifest = serde_json::from_str(&text)
        .with_context(|| format!("{} is not a berth backup manifest", path.display()))?;
    ensure!(
        manifest.format == FORMAT,
        "{} is a backup in format {:?}, which this berth ({}) does not know; use a newer berth",
        dir.display(),
        manifest.format,
        crate::VERSION
    );
    Ok(manifest)
}

/// The database file matches the checksum taken when it was written.
fn check_database(dir: &Path, manifest: &BackupManifest) -> anyhow::Result<PathBuf> {
    let db = dir.join(&manifest.database.file);
    let (sha256, _) = sha256_of_file(&db)?;
    ensure!(
        sha256 == manifest.database.sha256,
        "{} does not match its checksum in {MANIFEST} (sha256 {sha256}, expected {}): \
         the backup's database was changed or damaged",
        db.display(),
        manifest.database.sha256
    );
    Ok(db)
}

async fn verify(dir: &Path) -> anyhow::Result<()> {
    let manifest = read_manifest(dir)?;
    let db = check_database(dir, &manifest)?;
    let check = check_snapshot(&db).await?;
    let mut problems = check.problems;
    let blobs = &check.summary.blobs;
    let total: u64 = blobs.iter().map(|b| b.size).sum();
    let bar = progress(total, "verifying");
    for (i, blob) in blobs.iter().enumerate() {
        bar.set_message(format!("{}/{}", i + 1, blobs.len()));
        if let Some(problem) = check_blob(dir, blob, &bar) {
            bar.suspend(|| eprintln!("  {problem}"));
            problems.push(problem);
        }
    }
    bar.finish_and_clear();
    if !problems.is_empty() {
        for p in &problems {
            reportln!("problem: {p}");
        }
        bail!(
            "the backup in {} has {} problem(s); restore from another backup, or take a new one",
            dir.display(),
            problems.len()
        );
    }
    reportln!(
        "backup {} taken {} is whole: database intact, {} repositories, {} manifests, {} tags, \
         {} blobs ({} bytes) re-hashed{}",
        dir.display(),
        manifest.created_at,
        check.summary.repositories,
        check.summary.manifests,
        check.summary.tags,
        blobs.len(),
        total,
        if check.not_held > 0 {
            format!(
                "; {} references of sparse manifests were not held by the registry either",
                check.not_held
            )
        } else {
            String::new()
        }
    );
    Ok(())
}

/// A problem with one of the backup's blobs, if any.
fn check_blob(dir: &Path, blob: &BlobEntry, bar: &ProgressBar) -> Option<String> {
    let path = dir.join("blobs").join(blob_relative_path(&blob.digest));
    match hash_file(&path, blob.digest.algorithm(), bar) {
        Err(_) if !path.exists() => Some(format!(
            "blob {} is missing ({})",
            blob.digest,
            path.display()
        )),
        Err(e) => Some(format!("blob {}: {e:#}", blob.digest)),
        Ok((_, length)) if length != blob.size => Some(format!(
            "blob {} is {length} bytes, not {} ({})",
            blob.digest,
            blob.size,
            path.display()
        )),
        Ok((digest, _)) if digest != blob.digest => Some(format!(
            "blob {} is damaged: its content hashes to {digest} ({})",
            blob.digest,
            path.display()
        )),
        Ok(_) => None,
    }
}

async fn restore(from: &Path, data: &Path) -> anyhow::Result<()> {
    let manifest = read_manifest(from)?;
    let db = check_database(from, &manifest)?;
    let check = check_snapshot(&db).await?;
    ensure!(
        check.problems.is_empty(),
        "the backup's database has problems (run berth backup verify --from {}): {}",
        from.display(),
        check.problems.join("; ")
    );
    fresh_private_dir(data, "restored registry")?;
    let started = Instant::now();
    let blobs = &check.summary.blobs;
    let total: u64 = blobs.iter().map(|b| b.size).sum();
    let bar = progress(total, "restoring");
    for (i, blob) in blobs.iter().enumerate() {
        bar.set_message(format!("{}/{}", i + 1, blobs.len()));
        let relative = blob_relative_path(&blob.digest);
        let source = from.join("blobs").join(&relative);
        let into = data.join("blobs").join(&relative);
        parents(&into)?;
        let (digest, length) = copy_hashing(&source, &into, blob.digest.algorithm(), &bar)
            .with_context(|| format!("blob {} of the backup", blob.digest))?;
        if digest != blob.digest || length != blob.size {
            bail!(
                "blob {} of the backup is damaged ({length} bytes hashing to {digest}); \
                 {} is incomplete: remove it and restore another backup",
                blob.digest,
                data.display()
            );
        }
    }
    bar.finish_and_clear();
    sync_dir(&data.join("blobs"));
    // The database last: a directory without it is not a registry yet.
    copy_file(&db, &data.join(DATABASE))?;
    copy_owner_password(from, data)?;
    sync_dir(data);
    reportln!(
        "restored the backup taken {} into {} in {:.1}s: {} repositories, {} manifests, {} tags, {} blobs ({} bytes)",
        manifest.created_at,
        data.display(),
        started.elapsed().as_secs_f64(),
        check.summary.repositories,
        check.summary.manifests,
        check.summary.tags,
        blobs.len(),
        total
    );
    reportln!("start it with: berth serve --data {}", data.display());
    Ok(())
}
