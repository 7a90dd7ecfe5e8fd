//! The collector finishes what a crashed run started: a blob marked as
//! being deleted (the state a run leaves if it dies between marking and
//! deleting the bytes) is deleted by the next run, bytes and record, and
//! is counted in that run's record.

use std::sync::Arc;
use std::time::Duration;

use berth_metadata::{MetadataStore, SqliteStore};
use berth_registry::{Registry, RegistryConfig};
use berth_storage::{BlobStore, FilesystemStore};
use berth_types::Digest;
use bytes::Bytes;

#[tokio::test]
async fn a_run_finishes_the_deletions_of_a_crashed_one() {
    let dir = tempfile::tempdir().expect("tempdir");
    let blobs = Arc::new(FilesystemStore::open(dir.path().join("blobs")).expect("blobs"));
    let url = format!("sqlite://{}", dir.path().join("m.db").display());
    let metadata = Arc::new(SqliteStore::connect(&url).await.expect("metadata"));
    let registry = Registry::new(
        blobs.clone(),
        metadata.clone(),
        RegistryConfig {
            gc_grace: Duration::ZERO,
            ..RegistryConfig::default()
        },
    );
    let repo = "crash/gc".parse().expect("name");
    let data = Bytes::from_static(b"bytes a crashed collector left behind");
    let digest = Digest::sha256_of(&data);
    let body = futures::stream::iter([Ok::<_, std::io::Error>(data.clone())]);
    registry
        .upload_blob(&repo, &digest, Some(data.len() as u64), Box::pin(body))
        .await
        .expect("upload");

    // The crashed run: marked (so no one links or re-uploads it meanwhile),
    // bytes not yet deleted, lease abandoned.
    let later = berth_util::now() + 10;
    assert!(metadata
        .mark_blob_deleting(&digest, later)
        .await
        .expect("mark")
        .is_some());
    assert!(metadata
        .acquire_gc_lease("crashed-node", -1)
        .await
        .expect("lease"));
    assert!(blobs.blob_size(&digest).await.expect("stat").is_some());

    let report = registry.collect_garbage().await.expect("collect");
    assert!(!report.skipped, "an expired lease is taken over");
    assert_eq!(report.blobs_deleted, 1);
    assert_eq!(report.bytes_reclaimed, data.len() as u64);
    assert_eq!(blobs.blob_size(&digest).await.expect("stat"), None);
    assert!(metadata
        .blobs_being_deleted(10)
        .await
        .expect("marked")
        .is_empty());
    // The same bytes can be uploaded again afterwards.
    let body = futures::stream::iter([Ok::<_, std::io::Error>(data.clone())]);
    registry
        .upload_blob(&repo, &digest, Some(data.len() as u64), Box::pin(body))
        .await
        .expect("upload again");
    assert_eq!(
        registry.blob_size(&repo, &digest).await.expect("size"),
        data.len() as u64
    );
    let runs = metadata.gc_runs(1).await.expect("runs");
    assert_eq!(
        (runs[0].state.as_str(), runs[0].blobs_deleted),
        ("finished", 1)
    );
}
