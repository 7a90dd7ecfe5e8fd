//! `upload_blob_notifying` tells its caller the bytes match the digest
//! before the blob is committed (the cache's tee then hands a client its
//! last chunk without waiting for the commit's fsync), and never tells it
//! when they do not match.

use std::sync::Arc;

use berth_metadata::SqliteStore;
use berth_registry::{Registry, RegistryConfig, RegistryError};
use berth_storage::FilesystemStore;
use berth_types::{Digest, RepositoryName};
use bytes::Bytes;
use tokio::sync::oneshot;

async fn registry(dir: &tempfile::TempDir) -> Registry {
    let blobs = Arc::new(FilesystemStore::open(dir.path().join("blobs")).expect("blobs"));
    let url = format!("sqlite://{}", dir.path().join("m.db").display());
    let metadata = Arc::new(SqliteStore::connect(&url).await.expect("metadata"));
    Registry::new(blobs, metadata, RegistryConfig::default())
}

fn body(data: &Bytes) -> berth_storage::ByteStream {
    let chunks: Vec<Result<Bytes, std::io::Error>> = data
        .chunks(4096)
        .map(|c| Ok(Bytes::copy_from_slice(c)))
        .collect();
    Box::pin(futures::stream::iter(chunks))
}

#[tokio::test]
async fn verified_comes_before_the_commit() {
    let dir = tempfile::tempdir().expect("tempdir");
    let registry = registry(&dir).await;
    let repo: RepositoryName = "cache/verified".parse().expect("name");
    let data = Bytes::from(vec![7u8; 100_000]);
    let digest = Digest::sha256_of(&data);
    let (tx, mut verified) = oneshot::channel();
    let upload = registry.upload_blob_notifying(
        &repo,
        &digest,
        Some(data.len() as u64),
        body(&data),
        Some(tx),
    );
    tokio::pin!(upload);
    tokio::select! {
        result = &mut upload => panic!("the upload finished before telling verified: {result:?}"),
        told = &mut verified => told.expect("verified is told"),
    }
    // The upload is not polled again yet, so its commit has not run.
    assert!(matches!(
        registry.blob_size(&repo, &digest).await,
        Err(RegistryError::BlobUnknown { .. })
    ));
    upload.await.expect("upload");
    assert_eq!(
        registry.blob_size(&repo, &digest).await.expect("stored"),
        data.len() as u64
    );
}

#[tokio::test]
async fn wrong_bytes_are_never_verified() {
    let dir = tempfile::tempdir().expect("tempdir");
    let registry = registry(&dir).await;
    let repo: RepositoryName = "cache/verified".parse().expect("name");
    let data = Bytes::from(vec![7u8; 100_000]);
    let digest = Digest::sha256_of(b"other bytes");
    let (tx, verified) = oneshot::channel();
    let result = registry
        .upload_blob_notifying(
            &repo,
            &digest,
            Some(data.len() as u64),
            body(&data),
            Some(tx),
        )
        .await;
    assert!(
        matches!(result, Err(RegistryError::DigestMismatch { .. })),
        "{result:?}"
    );
    assert!(verified.await.is_err(), "wrong bytes were told verified");
    assert!(matches!(
        registry.blob_size(&repo, &digest).await,
        Err(RegistryError::BlobUnknown { .. })
    ));
}
