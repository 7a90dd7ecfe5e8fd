//! One behaviour suite every blob-storage backend must pass, run against
//! the filesystem store and the S3 store (a real Garage, named by the
//! `BERTH_TEST_S3_*` variables that `scripts/test.sh` exports).

use std::sync::Arc;

use berth_storage::{BlobStore, FilesystemStore, S3Config, S3Store, StorageError};
use berth_types::Digest;
use bytes::Bytes;
use futures::StreamExt;
use uuid::Uuid;

fn filesystem() -> (Arc<dyn BlobStore>, Option<tempfile::TempDir>) {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = FilesystemStore::open(dir.path().join("blobs")).expect("open");
    (Arc::new(store), Some(dir))
}

fn s3() -> (Arc<dyn BlobStore>, Option<tempfile::TempDir>) {
    let var = |name: &str| {
        std::env::var(name).unwrap_or_else(|_| {
            panic!(
                "{name} is not set: run the tests through scripts/test.sh, which starts Garage \
                 (or start it with scripts/scale-out-services.sh and source its env file)"
            )
        })
    };
    let store = S3Store::new(&S3Config {
        bucket: var("BERTH_TEST_S3_BUCKET"),
        endpoint: Some(var("BERTH_TEST_S3_ENDPOINT")),
        region: var("BERTH_TEST_S3_REGION"),
        access_key_id: Some(var("BERTH_TEST_S3_ACCESS_KEY_ID")),
        secret_access_key: Some(var("BERTH_TEST_S3_SECRET_ACCESS_KEY")),
        prefix: format!("driver-test-{}/", Uuid::new_v4()),
    })
    .expect("s3 store");
    (Arc::new(store), None)
}

/// Deterministic bytes that differ from offset to offset.
fn data(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u32).wrapping_mul(2_654_435_761).to_le_bytes()[1] ^ seed)
        .collect()
}

async fn collect(mut s: berth_storage::ByteStream) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(chunk) = s.next().await {
        out.extend_from_slice(&chunk.expect("stream"));
    }
    out
}

/// Writes `bytes` as one request at `offset`, in 64 KiB chunks, without
/// announcing its length (as a chunked transfer encoding would).
async fn append(store: &dyn BlobStore, id: Uuid, offset: u64, bytes: &[u8]) -> u64 {
    append_announced(store, id, offset, bytes, None).await
}

async fn append_announced(
    store: &dyn BlobStore,
    id: Uuid,
    offset: u64,
    bytes: &[u8],
    length: Option<u64>,
) -> u64 {
    let mut writer = store
        .upload_writer(id, offset, length)
        .await
        .expect("writer");
    for chunk in bytes.chunks(64 * 1024) {
        writer
            .write(Bytes::copy_from_slice(chunk))
            .await
            .expect("write");
    }
    writer.finish().await.expect("finish")
}

async fn chunked_upload_commits_to_a_blob(store: Arc<dyn BlobStore>) {
    let id = Uuid::new_v4();
    let a = data(3 * 1024 * 1024, 1);
    let b = data(9 * 1024 * 1024 + 17, 2); // over one S3 part: multipart
    let c = data(5, 3);
    assert_eq!(append(&*store, id, 0, &a).await, a.len() as u64);
    let mid = append_announced(&*store, id, a.len() as u64, &b, Some(b.len() as u64)).await;
    let end = append(&*store, id, mid, &c).await;
    let whole = [a, b, c].concat();
    assert_eq!(end, whole.len() as u64);
    assert_eq!(
        collect(store.read_upload(id, end).await.expect("read")).await,
        whole
    );

    let digest = Digest::sha256_of(&whole);
    assert_eq!(store.blob_size(&digest).await.expect("stat"), None);
    store.commit_upload(id, end, &digest).await.expect("commit");
    assert_eq!(store.blob_size(&digest).await.expect("stat"), Some(end));
    let read = store.read_blob(&digest, None).await.expect("read");
    assert_eq!(read.size, end);
    assert_eq!(Digest::sha256_of(&collect(read.stream).await), digest);
    let range = store
        .read_blob(&digest, Some(1000..2_000_000))
        .await
        .expect("range");
    assert_eq!(range.size, end);
    assert_eq!(collect(range.stream).await, whole[1000..2_000_000]);
    assert!(
        !store.delete_upload(id).await.expect("delete upload"),
        "a committed upload leaves nothing behind"
    );
}

/// More requests at once than the S3 store's part budget holds (each needs
/// three parts, two of them at a time): they wait their turn and all finish
/// with their own bytes, announced length or not.
async fn many_requests_at_once_all_finish(store: Arc<dyn BlobStore>) {
    let body = Arc::new(data(11 * 1024 * 1024, 9));
    let requests = (0..12).map(|i| {
        let store = store.clone();
        let body = body.clone();
        async move {
            let id = Uuid::new_v4();
            let length = (i % 2 == 0).then_some(body.len() as u64);
            let end = append_announced(&*store, id, 0, &body, length).await;
            (id, end)
        }
    });
    let digest = Digest::sha256_of(&body);
    // A writer that waited on a part another one never released would hang.
    let finished = tokio::time::timeout(
        std::time::Duration::from_secs(120),
        futures::future::join_all(requests),
    )
    .await
    .expect("every request finishes: part memory is released as parts are sent");
    for (id, end) in finished {
        assert_eq!(end, body.len() as u64);
        let read = collect(store.read_upload(id, end).await.expect("read")).await;
        assert_eq!(Digest::sha256_of(&read), digest);
        store.delete_upload(id).await.expect("delete upload");
    }
}

async fn unacknowledged_bytes_are_never_read(store: Arc<dyn BlobStore>) {
    let id = Uuid::new_v4();
    let first = data(1000, 4);
    append(&*store, id, 0, &first).await;
    // A request whose bytes were stored but never acknowledged (the
    // durable length stayed at 1000), then the client's retry.
    append(&*store, id, 1000, &data(700, 5)).await;
    let retry = data(300, 6);
    let end = append(&*store, id, 1000, &retry).await;
    assert_eq!(end, 1300);
    let whole = [first.clone(), retry].concat();
    assert!(collect(store.read_upload(id, 1300).await.expect("read")).await == whole);
    // Committing at the durable length ignores anything past it.
    append(&*store, id, 1300, &data(50, 7)).await;
    let digest = Digest::sha256_of(&whole);
    store
        .commit_upload(id, 1300, &digest)
        .await
        .expect("commit");
    let read = store.read_blob(&digest, None).await.expect("read");
    assert_eq!(read.size, 1300);
    assert_eq!(Digest::sha256_of(&collect(read.stream).await), digest);
}

async fn single_request_upload_and_empty_blob(store: Arc<dyn BlobStore>) {
    let id = Uuid::new_v4();
    let bytes = data(4096, 8);
    let end = append(&*store, id, 0, &bytes).await;
    let digest = Digest::sha256_of(&bytes);
    store.commit_upload(id, end, &digest).await.expect("commit");
    assert_eq!(store.blob_size(&digest).await.expect("stat"), Some(4096));
    // The same bytes again (another repository's push): still one blob.
    let again = Uuid::new_v4();
    append(&*store, again, 0, &bytes).await;
    store
        .commit_upload(again, 4096, &digest)
        .await
        .expect("commit again");
    assert_eq!(store.blob_size(&digest).await.expect("stat"), Some(4096));

    let empty = Uuid::new_v4();
    store
        .upload_writer(empty, 0, Some(0))
        .await
        .expect("writer")
        .finish()
        .await
        .expect("finish");
    let digest = Digest::sha256_of(b"");
    store
        .commit_upload(empty, 0, &digest)
        .await
        .expect("commit empty");
    let read = store.read_blob(&digest, None).await.expect("read empty");
    assert_eq!(read.size, 0);
    assert!(collect(read.stream).await.is_empty());
}

async fn missing_things_and_bad_ranges(store: Arc<dyn BlobStore>) {
    let absent = Digest::sha256_of(b"never stored");
    assert_eq!(store.blob_size(&absent).await.expect("stat"), None);
    assert!(matches!(
        store.read_blob(&absent, None).await,
        Err(StorageError::BlobNotFound(_))
    ));
    let id = Uuid::new_v4();
    let bytes = data(100, 9);
    append(&*store, id, 0, &bytes).await;
    let digest = Digest::sha256_of(&bytes);
    store.commit_upload(id, 100, &digest).await.expect("commit");
    for range in [50..101, 100..200] {
        match store.read_blob(&digest, Some(range.clone())).await {
            Err(StorageError::RangeNotSatisfiable { size, .. }) => assert_eq!(size, 100),
            Err(e) => panic!("{range:?}: {e}"),
            Ok(_) => panic!("{range:?} is past the end"),
        }
    }
    let empty = store
        .read_blob(&digest, Some(10..10))
        .await
        .expect("empty range");
    assert!(collect(empty.stream).await.is_empty());

    // An upload that lost bytes is reported, not silently short.
    let short = Uuid::new_v4();
    append(&*store, short, 0, &data(10, 1)).await;
    let read = store.read_upload(short, 20).await;
    let result = match read {
        Ok(stream) => {
            let mut stream = stream;
            let mut n = 0;
            let mut failed = false;
            while let Some(chunk) = stream.next().await {
                match chunk {
                    Ok(c) => n += c.len(),
                    Err(_) => failed = true,
                }
            }
            failed || n != 20
        }
        Err(_) => true,
    };
    assert!(
        result,
        "reading past an upload's stored bytes must not succeed as if complete"
    );

    assert!(store.delete_blob(&digest).await.expect("delete"));
    assert_eq!(store.blob_size(&digest).await.expect("stat"), None);
    assert!(store.delete_upload(short).await.expect("delete upload"));
}

macro_rules! every_backend {
    ($($check:ident),* $(,)?) => {
        mod on_filesystem {
            $(
                #[tokio::test]
                async fn $check() {
                    let (store, _keep) = super::filesystem();
                    super::$check(store).await;
                }
            )*
        }
        mod on_s3 {
            $(
                #[tokio::test]
                async fn $check() {
                    let (store, _keep) = super::s3();
                    super::$check(store).await;
                }
            )*
        }
    };
}

every_backend!(
    chunked_upload_commits_to_a_blob,
    many_requests_at_once_all_finish,
    unacknowledged_bytes_are_never_read,
    single_request_upload_and_empty_blob,
    missing_things_and_bad_ranges,
);
