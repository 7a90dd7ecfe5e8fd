//! Bytes of requests that never got acknowledged do not stay on disk
//!: a PATCH whose body fails midway, a PATCH whose request
//! is dropped (client gone, server shutting down), and a single-request
//! upload cut off before the client learned its session.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use berth_metadata::{MetadataStore, SqliteStore};
use berth_registry::{Registry, RegistryConfig};
use berth_storage::FilesystemStore;
use berth_types::{Digest, RepositoryName};
use bytes::Bytes;
use futures::StreamExt;

struct Setup {
    _dir: tempfile::TempDir,
    uploads: PathBuf,
    registry: Registry,
    metadata: Arc<SqliteStore>,
}

async fn setup() -> Setup {
    let dir = tempfile::tempdir().expect("tempdir");
    let blobs = Arc::new(FilesystemStore::open(dir.path().join("blobs")).expect("blobs"));
    let url = format!("sqlite://{}", dir.path().join("m.db").display());
    let metadata = Arc::new(SqliteStore::connect(&url).await.expect("metadata"));
    let registry = Registry::new(blobs, metadata.clone(), RegistryConfig::default());
    Setup {
        uploads: dir.path().join("blobs").join("_uploads"),
        _dir: dir,
        registry,
        metadata,
    }
}

fn repo() -> RepositoryName {
    "app/interrupted".parse().expect("name")
}

/// Sizes of the upload files on disk.
fn upload_sizes(dir: &Path) -> Vec<u64> {
    let mut sizes: Vec<u64> = std::fs::read_dir(dir)
        .expect("uploads dir")
        .filter_map(|e| e.ok())
        .filter_map(|e| e.metadata().ok())
        .map(|m| m.len())
        .collect();
    sizes.sort();
    sizes
}

fn chunk(n: usize) -> Bytes {
    Bytes::from(vec![7u8; n])
}

/// A body that sends `before` bytes and then fails (the connection broke).
fn failing_body(before: usize) -> berth_storage::ByteStream {
    Box::pin(futures::stream::iter([
        Ok(chunk(before)),
        Err(std::io::Error::new(
            std::io::ErrorKind::ConnectionReset,
            "client went away",
        )),
    ]))
}

/// A body that sends `before` bytes and then never ends.
fn stalled_body(before: usize) -> berth_storage::ByteStream {
    Box::pin(futures::stream::iter([Ok(chunk(before))]).chain(futures::stream::pending()))
}

async fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    for _ in 0..500 {
        if done() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("{what}: not within 5 s");
}

#[tokio::test]
async fn a_failed_patch_leaves_only_the_acknowledged_bytes() {
    let s = setup().await;
    let r = repo();
    let upload = s
        .registry
        .start_upload(&r, berth_types::Algorithm::Sha256)
        .await
        .expect("start");
    let id = upload.id.to_string();
    let body = Box::pin(futures::stream::iter([Ok(chunk(1000))]));
    let state = s
        .registry
        .append_upload(&r, &id, Some(0), Some(1000), body)
        .await
        .expect("first chunk");
    assert_eq!(state.offset, 1000);

    let err = s
        .registry
        .append_upload(&r, &id, Some(1000), Some(500_000), failing_body(300_000))
        .await
        .expect_err("the body broke");
    assert!(err.to_string().contains("ended early"), "{err}");
    assert_eq!(
        upload_sizes(&s.uploads),
        vec![1000],
        "the broken request's bytes are removed at once"
    );
    // The session goes on from the acknowledged length.
    let body = Box::pin(futures::stream::iter([Ok(chunk(24))]));
    let state = s
        .registry
        .append_upload(&r, &id, Some(1000), Some(24), body)
        .await
        .expect("resume");
    assert_eq!(state.offset, 1024);
}

#[tokio::test]
async fn a_dropped_patch_is_trimmed_before_the_session_takes_another_request() {
    let s = setup().await;
    let r = repo();
    let upload = s
        .registry
        .start_upload(&r, berth_types::Algorithm::Sha256)
        .await
        .expect("start");
    let id = upload.id.to_string();
    let body = Box::pin(futures::stream::iter([Ok(chunk(1000))]));
    s.registry
        .append_upload(&r, &id, Some(0), Some(1000), body)
        .await
        .expect("first chunk");

    // The request is dropped while its body is stalled (as the server does
    // when the client goes away or at shutdown).
    let append = s
        .registry
        .append_upload(&r, &id, Some(1000), None, stalled_body(200_000));
    let cut = tokio::time::timeout(Duration::from_millis(300), append).await;
    assert!(cut.is_err(), "the stalled request cannot finish");
    // The next request of the session waits for the trim, then continues
    // from the acknowledged length.
    let body = Box::pin(futures::stream::iter([Ok(chunk(24))]));
    let state = s
        .registry
        .append_upload(&r, &id, Some(1000), Some(24), body)
        .await
        .expect("resume after a dropped request");
    assert_eq!(state.offset, 1024);
    assert_eq!(upload_sizes(&s.uploads), vec![1024]);

    // And with no next request, the trim happens by itself.
    let append = s
        .registry
        .append_upload(&r, &id, Some(1024), None, stalled_body(300_000));
    let _ = tokio::time::timeout(Duration::from_millis(300), append).await;
    let uploads = s.uploads.clone();
    wait_for("trim of a dropped request", || {
        upload_sizes(&uploads) == vec![1024]
    })
    .await;
    assert!(
        s.registry.finish_cleanups(Duration::from_secs(5)).await,
        "clean-ups finish"
    );
}

#[tokio::test]
async fn a_cut_off_single_request_upload_leaves_no_session_and_no_bytes() {
    let s = setup().await;
    let r = repo();
    let digest = Digest::sha256_of(b"never completes");
    let upload = s
        .registry
        .upload_blob(&r, &digest, Some(10_000_000), stalled_body(400_000));
    let cut = tokio::time::timeout(Duration::from_millis(300), upload).await;
    assert!(cut.is_err(), "the stalled request cannot finish");
    assert!(
        s.registry.finish_cleanups(Duration::from_secs(5)).await,
        "clean-ups finish"
    );
    assert_eq!(
        upload_sizes(&s.uploads),
        Vec::<u64>::new(),
        "the bytes of a session nobody knows are removed"
    );
    let stale = s
        .metadata
        .stale_uploads(i64::MAX)
        .await
        .expect("list sessions");
    assert!(stale.is_empty(), "sessions left: {stale:?}");
}
