//! What the filesystem blob store holds under a data directory
//! (`<data>/blobs/<alg>/<xx>/<hex>`, sessions in `<data>/blobs/_uploads`).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// Where the filesystem store keeps a blob.
pub fn blob_path(data_dir: &Path, digest: &str) -> PathBuf {
    let (alg, hex) = digest.split_once(':').expect("algorithm:hex");
    data_dir.join("blobs").join(alg).join(&hex[..2]).join(hex)
}

/// Size of a stored blob's file, `None` if there is none.
pub fn stored_blob_size(data_dir: &Path, digest: &str) -> Option<u64> {
    std::fs::metadata(blob_path(data_dir, digest))
        .ok()
        .map(|m| m.len())
}

pub fn blob_stored(data_dir: &Path, digest: &str) -> bool {
    stored_blob_size(data_dir, digest).is_some()
}

fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        out.push(path.clone());
        if entry.file_type().map(|t| t.is_dir()).unwrap_or(false) {
            walk(&path, out);
        }
    }
}

/// Every path below `dir`, recursively.
pub fn all_paths(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    walk(dir, &mut out);
    out.sort();
    out
}

/// Committed blob files, as paths relative to `<data>/blobs`.
pub fn blob_files(data_dir: &Path) -> BTreeSet<String> {
    let root = data_dir.join("blobs");
    all_paths(&root)
        .into_iter()
        .filter(|p| p.is_file())
        .map(|p| {
            p.strip_prefix(&root)
                .expect("below root")
                .to_string_lossy()
                .into_owned()
        })
        .filter(|p| !p.starts_with("_uploads"))
        .collect()
}

/// Files of upload sessions in progress (`<data>/blobs/_uploads/*`).
pub fn upload_files(data_dir: &Path) -> Vec<String> {
    all_paths(&data_dir.join("blobs").join("_uploads"))
        .into_iter()
        .map(|p| p.file_name().expect("name").to_string_lossy().into_owned())
        .collect()
}

/// Moves every blob's last link `seconds` into the past in the embedded
/// database, as if that much time had passed, so a collector run with a
/// grace period shorter than that sees them as old enough (the clock is
/// the database's, in whole seconds).
pub async fn age_blob_links(data_dir: &Path, seconds: i64) {
    use sqlx::Connection;
    let url = format!("sqlite://{}", data_dir.join("berth.db").display());
    let mut db = sqlx::SqliteConnection::connect(&url)
        .await
        .expect("open the embedded database");
    sqlx::query("UPDATE blobs SET last_linked_at = last_linked_at - $1")
        .bind(seconds)
        .execute(&mut db)
        .await
        .expect("age the blob records");
}

/// Moves every manifest's storage and last-pull times `seconds` into the
/// past, as if nobody had pulled anything for that long.
pub async fn age_manifests(data_dir: &Path, seconds: i64) {
    use sqlx::Connection;
    let url = format!("sqlite://{}", data_dir.join("berth.db").display());
    let mut db = sqlx::SqliteConnection::connect(&url)
        .await
        .expect("open the embedded database");
    sqlx::query(
        "UPDATE manifests SET created_at = created_at - $1,
         last_pulled_at = last_pulled_at - $1",
    )
    .bind(seconds)
    .execute(&mut db)
    .await
    .expect("age the manifests");
}
