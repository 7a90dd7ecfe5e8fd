//! What a server has stored, read from outside it: files under the data
//! directory on the embedded backend, objects in the bucket on the
//! scale-out one.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use super::scale_out::{s3_call, s3_keys, scale_out_prefix};

/// Size of a stored blob, whichever backend the test servers use.
pub fn stored_blob_size(data_dir: &Path, digest: &str) -> Option<u64> {
    let (alg, hex) = digest.split_once(':').expect("algorithm:hex");
    match scale_out_prefix(data_dir) {
        None => std::fs::metadata(blob_path(data_dir, digest))
            .ok()
            .map(|m| m.len()),
        Some(prefix) => {
            let key = format!("{prefix}blobs/{alg}/{}/{hex}", &hex[..2]);
            s3_call(move |store| {
                Box::pin(async move {
                    use object_store::ObjectStore;
                    match store.head(&object_store::path::Path::from(key)).await {
                        Ok(meta) => Some(meta.size),
                        Err(object_store::Error::NotFound { .. }) => None,
                        Err(e) => panic!("head: {e}"),
                    }
                })
            })
        }
    }
}

pub fn blob_stored(data_dir: &Path, digest: &str) -> bool {
    stored_blob_size(data_dir, digest).is_some()
}

/// Where the filesystem backend keeps a blob.
pub fn blob_path(data_dir: &Path, digest: &str) -> PathBuf {
    let (alg, hex) = digest.split_once(':').expect("algorithm:hex");
    data_dir.join("blobs").join(alg).join(&hex[..2]).join(hex)
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

/// Committed blob files (`<data>/blobs/<alg>/..`), as paths relative to
/// `<data>/blobs`.
pub fn blob_files(data_dir: &Path) -> BTreeSet<String> {
    if let Some(prefix) = scale_out_prefix(data_dir) {
        return s3_keys(&format!("{prefix}blobs/")).into_iter().collect();
    }
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
    if let Some(prefix) = scale_out_prefix(data_dir) {
        // Upload ids (each may have several part objects).
        let mut ids: Vec<String> = s3_keys(&format!("{prefix}_uploads/"))
            .into_iter()
            .filter_map(|k| k.split('/').next().map(str::to_string))
            .collect();
        ids.dedup();
        return ids;
    }
    all_paths(&data_dir.join("blobs").join("_uploads"))
        .into_iter()
        .map(|p| p.file_name().expect("name").to_string_lossy().into_owned())
        .collect()
}
