//! S3-compatible object storage (AWS S3, Garage, MinIO, ...) through
//! `object_store`, for several stateless nodes sharing one bucket.
//!
//! Layout under the configured prefix:
//!
//! - `blobs/<algorithm>/<xx>/<hex>`: committed blobs, content-addressed;
//! - `_uploads/<uuid>/<offset>`: one object per request of an upload
//!   (offset zero-padded to 20 digits, so listing sorts them).
//!
//! Nothing about an upload lives on a node: its parts are in the bucket and
//! its durable length in the metadata store, so any node can append to it,
//! re-read it or commit it. A part is only reachable by walking from offset
//! 0 through part lengths up to the durable length, so the bytes of a
//! request that was never acknowledged (a part past the length, or one
//! overwritten by a retry) are never read. Retries with backoff on
//! transient errors are `object_store`'s.

use std::ops::Range;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use berth_types::Digest;
use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use object_store::aws::{AmazonS3, AmazonS3Builder};
use object_store::path::Path;
use object_store::signer::Signer;
use object_store::{
    BackoffConfig, ClientOptions, GetOptions, GetRange, MultipartUpload, ObjectStore, PutPayload,
    RetryConfig,
};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use uuid::Uuid;

use crate::{BlobRead, BlobStore, ByteStream, StorageError, UploadWriter};

/// Size of the parts of a multipart upload: S3's minimum, because each part
/// is buffered in memory before it is sent (S3 wants its length up front). A
/// request body smaller than this is stored with one PUT.
const PART_SIZE: usize = 5 * 1024 * 1024;
/// Parts of one request in flight while the next one fills: a request holds
/// at most about two parts (10 MiB), whatever the blob's size.
const PARTS_IN_FLIGHT: usize = 1;
/// Part bytes held in memory by all requests of this node together (eight
/// whole parts). A part is reserved whole before it fills, so every holder
/// can finish its part with the body bytes alone and release it: no
/// request waits on another one's part. Past the budget a request waits
/// (its client is slowed by TCP), which is how 32 concurrent pushes stay
/// in bounded memory.
const PART_BUDGET: usize = 8 * PART_SIZE;

/// Connecting to the store: loopback or a LAN answers in milliseconds.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// How long one request keeps retrying transient failures.
const RETRY_TIMEOUT: Duration = Duration::from_secs(3);

/// Where the bucket is and how to reach it (`[storage]` with `kind = "s3"`).
#[derive(Debug, Clone, Default)]
pub struct S3Config {
    pub bucket: String,
    /// `http://host:port` of an S3-compatible store; AWS when unset.
    pub endpoint: Option<String>,
    pub region: String,
    pub access_key_id: Option<String>,
    pub secret_access_key: Option<String>,
    /// Key prefix inside the bucket (`""` or ending in `/`), so several
    /// registries can share one bucket.
    pub prefix: String,
}

#[derive(Debug, Clone)]
pub struct S3Store {
    store: Arc<AmazonS3>,
    prefix: String,
    requests: Arc<AtomicU64>,
    /// [`PART_BUDGET`] in KiB permits, shared by every writer of this node.
    part_budget: Arc<Semaphore>,
}

impl S3Store {
    pub fn new(config: &S3Config) -> Result<Self, StorageError> {
        let mut builder = AmazonS3Builder::new()
            .with_bucket_name(&config.bucket)
            .with_region(&config.region)
            // Streams of large blobs may take long; only connecting is
            // bounded (the client is the one waiting).
            .with_client_options(
                ClientOptions::new()
                    .with_allow_http(true)
                    .with_timeout_disabled()
                    .with_connect_timeout(CONNECT_TIMEOUT),
            )
            // A store that is down fails requests within seconds (503 to
            // the client) instead of holding them through minutes of
            // retries; a blip of a few hundred milliseconds is retried.
            .with_retry(RetryConfig {
                backoff: BackoffConfig {
                    init_backoff: Duration::from_millis(50),
                    max_backoff: Duration::from_millis(500),
                    base: 2.0,
                },
                max_retries: 3,
                retry_timeout: RETRY_TIMEOUT,
            });
        if let Some(endpoint) = &config.endpoint {
            // S3-compatible stores are addressed by path, not by a
            // bucket-named host (which would need DNS for every bucket).
            builder = builder
                .with_endpoint(endpoint)
                .with_virtual_hosted_style_request(false);
        }
        if let Some(key) = &config.access_key_id {
            builder = builder.with_access_key_id(key);
        }
        if let Some(secret) = &config.secret_access_key {
            builder = builder.with_secret_access_key(secret);
        }
        let store = builder.build().map_err(remote("configure the S3 client"))?;
        let mut prefix = config.prefix.trim_start_matches('/').to_string();
        if !prefix.is_empty() && !prefix.ends_with('/') {
            prefix.push('/');
        }
        Ok(S3Store {
            store: Arc::new(store),
            prefix,
            requests: Arc::new(AtomicU64::new(0)),
            part_budget: Arc::new(Semaphore::new(PART_BUDGET / 1024)),
        })
    }

    fn count(&self, n: u64) {
        self.requests.fetch_add(n, Ordering::Relaxed);
    }

    fn blob_path(&self, digest: &Digest) -> Path {
        let hex = digest.hex();
        Path::from(format!(
            "{}blobs/{}/{}/{}",
            self.prefix,
            digest.algorithm().as_str(),
            &hex[..2],
            hex
        ))
    }

    fn upload_dir(&self, id: Uuid) -> Path {
        Path::from(format!("{}_uploads/{id}", self.prefix))
    }

    fn part_path(&self, id: Uuid, offset: u64) -> Path {
        Path::from(format!("{}_uploads/{id}/{offset:020}", self.prefix))
    }

    /// Every stored part of an upload: (offset, size, path), by offset.
    async fn parts(&self, id: Uuid) -> Result<Vec<(u64, u64, Path)>, StorageError> {
        self.count(1);
        let listed: Vec<_> = self
            .store
            .list(Some(&self.upload_dir(id)))
            .try_collect()
            .await
            .map_err(remote(format!("list the parts of upload {id}")))?;
        let mut parts: Vec<(u64, u64, Path)> = listed
            .into_iter()
            .filter_map(|meta| {
                let offset = meta.location.filename()?.parse::<u64>().ok()?;
                Some((offset, meta.size, meta.location))
            })
            .collect();
        parts.sort_by_key(|p| p.0);
        Ok(parts)
    }

    /// The parts (and the byte range of each) that make up the first `len`
    /// bytes of an upload.
    async fn chain(&self, id: Uuid, len: u64) -> Result<Vec<(Path, Range<u64>)>, StorageError> {
        let parts = self.parts(id).await?;
        Self::chain_of(&parts, id, len)
    }

    fn chain_of(
        parts: &[(u64, u64, Path)],
        id: Uuid,
        len: u64,
    ) -> Result<Vec<(Path, Range<u64>)>, StorageError> {
        let mut chain = Vec::new();
        let mut at = 0u64;
        while at < len {
            let Some((_, size, path)) = parts.iter().find(|p| p.0 == at && p.1 > 0) else {
                return Err(StorageError::UploadIncomplete { id, at, len });
            };
            let take = (*size).min(len - at);
            chain.push((path.clone(), 0..take));
            at += take;
        }
        Ok(chain)
    }

    /// Streams byte ranges of several objects one after another.
    fn concat(&self, pieces: Vec<(Path, Range<u64>)>) -> ByteStream {
        let store = self.store.clone();
        let requests = self.requests.clone();
        futures::stream::iter(pieces)
            .then(move |(path, range)| {
                let store = store.clone();
                requests.fetch_add(1, Ordering::Relaxed);
                async move {
                    let got = store
                        .get_opts(
                            &path,
                            GetOptions {
                                range: Some(GetRange::Bounded(range)),
                                ..GetOptions::default()
                            },
                        )
                        .await
                        .map_err(std::io::Error::other)?;
                    Ok::<_, std::io::Error>(got.into_stream().map_err(std::io::Error::other))
                }
            })
            .try_flatten()
            .boxed()
    }
}

fn remote(action: impl Into<String>) -> impl FnOnce(object_store::Error) -> StorageError {
    let action = action.into();
    move |source| StorageError::Remote {
        action,
        source: Box::new(source),
    }
}

#[async_trait]
impl BlobStore for S3Store {
    async fn probe(&self) -> Result<(), StorageError> {
        // One HEAD of a key that is never written: "not found" means the
        // store answered and the bucket and credentials are good.
        self.count(1);
        let path = Path::from(format!("{}_probe", self.prefix));
        match self.store.head(&path).await {
            Ok(_) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(remote("reach the bucket")(e)),
        }
    }

    async fn blob_size(&self, digest: &Digest) -> Result<Option<u64>, StorageError> {
        self.count(1);
        match self.store.head(&self.blob_path(digest)).await {
            Ok(meta) => Ok(Some(meta.size)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(remote(format!("look up blob {digest}"))(e)),
        }
    }

    async fn read_blob(
        &self,
        digest: &Digest,
        range: Option<Range<u64>>,
    ) -> Result<BlobRead, StorageError> {
        let path = self.blob_path(digest);
        let whole_size = || async {
            self.blob_size(digest)
                .await?
                .ok_or_else(|| StorageError::BlobNotFound(digest.clone()))
        };
        if let Some(r) = &range {
            if r.start >= r.end {
                // S3 has no empty ranges; nothing to fetch but the size.
                let size = whole_size().await?;
                crate::check_range(r, size)?;
                return Ok(BlobRead {
                    size,
                    stream: futures::stream::empty().boxed(),
                });
            }
        }
        let options = GetOptions {
            range: range.clone().map(GetRange::Bounded),
            ..GetOptions::default()
        };
        self.count(1);
        match self.store.get_opts(&path, options).await {
            Ok(got) => {
                let size = got.meta.size;
                if let Some(r) = &range {
                    crate::check_range(r, size)?;
                }
                Ok(BlobRead {
                    size,
                    stream: got.into_stream().map_err(std::io::Error::other).boxed(),
                })
            }
            Err(object_store::Error::NotFound { .. }) => {
                Err(StorageError::BlobNotFound(digest.clone()))
            }
            Err(e) => match range {
                // A range past the end is refused by the store; say so
                // with the blob's size.
                Some(r) => {
                    crate::check_range(&r, whole_size().await?)?;
                    Err(remote(format!("read blob {digest}"))(e))
                }
                None => Err(remote(format!("read blob {digest}"))(e)),
            },
        }
    }

    async fn delete_blob(&self, digest: &Digest) -> Result<bool, StorageError> {
        // S3 deletes are idempotent and do not say whether the key existed.
        self.count(1);
        self.store
            .delete(&self.blob_path(digest))
            .await
            .map_err(remote(format!("delete blob {digest}")))?;
        Ok(true)
    }

    async fn upload_writer(
        &self,
        id: Uuid,
        offset: u64,
        length: Option<u64>,
    ) -> Result<Box<dyn UploadWriter>, StorageError> {
        Ok(Box::new(PartWriter::new(
            self.clone(),
            self.part_path(id, offset),
            offset,
            length,
        )))
    }

    async fn read_upload(&self, id: Uuid, len: u64) -> Result<ByteStream, StorageError> {
        let chain = self.chain(id, len).await?;
        Ok(self.concat(chain))
    }

    async fn commit_upload(&self, id: Uuid, len: u64, digest: &Digest) -> Result<(), StorageError> {
        let target = self.blob_path(digest);
        let parts = self.parts(id).await?;
        if self.blob_size(digest).await? == Some(len) {
            // Same content already stored (content-addressed): keep it.
            self.delete_parts(id, &parts).await?;
            return Ok(());
        }
        let chain = Self::chain_of(&parts, id, len)?;
        let whole_part = |path: &Path| parts.iter().any(|p| &p.2 == path && p.1 == len);
        match chain.as_slice() {
            [] => {
                self.count(1);
                self.store
                    .put(&target, PutPayload::default())
                    .await
                    .map_err(remote(format!("store empty blob {digest}")))?;
            }
            // One whole part: a server-side copy, no bytes through here.
            [(path, range)] if range.start == 0 && whole_part(path) => {
                self.count(1);
                self.store
                    .copy(path, &target)
                    .await
                    .map_err(remote(format!("copy upload {id} to blob {digest}")))?;
            }
            _ => {
                // Several parts: streamed into one object (multipart when
                // longer than a part), within the node's part budget.
                let mut stream = self.concat(chain);
                let mut writer = PartWriter::new(self.clone(), target, 0, Some(len));
                while let Some(chunk) = stream.next().await {
                    let chunk = chunk.map_err(StorageError::io(format!("read upload {id}")))?;
                    writer.write(chunk).await?;
                }
                Box::new(writer).finish().await?;
            }
        }
        self.delete_parts(id, &parts).await
    }

    async fn trim_upload(&self, _id: Uuid, _len: u64) -> Result<(), StorageError> {
        // Nothing to do: a part object exists only once its request's bytes
        // are all stored (a single PUT, or a completed multipart upload), and
        // parts past the durable length are never read; an interrupted
        // multipart upload leaves no object (the bucket's lifecycle rules
        // remove its parts).
        Ok(())
    }

    async fn delete_upload(&self, id: Uuid) -> Result<bool, StorageError> {
        let parts = self.parts(id).await?;
        self.delete_parts(id, &parts).await?;
        Ok(!parts.is_empty())
    }
    fn requests(&self) -> u64 {
        self.requests.load(Ordering::Relaxed)
    }

    async fn presigned_blob_url(
        &self,
        digest: &Digest,
        expires_in: Duration,
    ) -> Result<Option<String>, StorageError> {
        let url = self
            .store
            .signed_url(http::Method::GET, &self.blob_path(digest), expires_in)
            .await
            .map_err(remote(format!("sign a URL for blob {digest}")))?;
        Ok(Some(url.to_string()))
    }
}

impl S3Store {
    async fn delete_parts(&self, id: Uuid, parts: &[(u64, u64, Path)]) -> Result<(), StorageError> {
        for (_, _, path) in parts {
            self.count(1);
            self.store
                .delete(path)
                .await
                .map_err(remote(format!("delete a part of upload {id}")))?;
        }
        Ok(())
    }

    /// Reserves memory for a part of `bytes` from the node's budget.
    async fn reserve_part(&self, bytes: usize) -> Result<OwnedSemaphorePermit, StorageError> {
        let kib = bytes.div_ceil(1024).clamp(1, PART_BUDGET / 1024) as u32;
        self.part_budget
            .clone()
            .acquire_many_owned(kib)
            .await
            .map_err(|_| {
                StorageError::io("reserve memory for a part")(std::io::Error::other(
                    "the part budget was closed",
                ))
            })
    }
}

/// Bytes written to one object: a single PUT when they fit in
/// [`PART_SIZE`], else a multipart upload of whole parts (the last may be
/// shorter). Each part is reserved from the node's [`PART_BUDGET`] before
/// it fills and released when its upload ends.
struct PartWriter {
    store: S3Store,
    path: Path,
    /// Where these bytes start in the upload (what `finish` adds to).
    offset: u64,
    /// How many bytes the request announced: a short body reserves only
    /// what it needs.
    expected: Option<u64>,
    /// Bytes handed to part uploads so far.
    sent: u64,
    part: Vec<Bytes>,
    part_len: usize,
    permit: Option<OwnedSemaphorePermit>,
    multipart: Option<Parts>,
}

/// A multipart upload under way and its parts in flight.
struct Parts {
    upload: Box<dyn MultipartUpload>,
    in_flight: std::collections::VecDeque<tokio::task::JoinHandle<object_store::Result<()>>>,
}

impl Drop for Parts {
    /// A request that died mid-body stops sending its parts (freeing their
    /// memory); the bucket's lifecycle rules remove what was sent.
    fn drop(&mut self) {
        for part in &self.in_flight {
            part.abort();
        }
    }
}

impl PartWriter {
    fn new(store: S3Store, path: Path, offset: u64, expected: Option<u64>) -> Self {
        PartWriter {
            store,
            path,
            offset,
            expected,
            sent: 0,
            part: Vec::new(),
            part_len: 0,
            permit: None,
            multipart: None,
        }
    }

    fn written(&self) -> u64 {
        self.sent + self.part_len as u64
    }

    /// The memory the part now starting needs: a whole part, or what is
    /// left of an announced length.
    fn next_part_size(&self) -> usize {
        match self.expected {
            Some(expected) => (expected.saturating_sub(self.sent) as usize).min(PART_SIZE),
            None => PART_SIZE,
        }
    }

    /// Hands the filled part to an upload of its own, then waits until at
    /// most [`PARTS_IN_FLIGHT`] are in flight.
    async fn send_part(&mut self) -> Result<(), StorageError> {
        if self.multipart.is_none() {
            self.store.count(1);
            let upload = self
                .store
                .store
                .put_multipart(&self.path)
                .await
                .map_err(remote(format!("start a multipart upload to {}", self.path)))?;
            self.multipart = Some(Parts {
                upload,
                in_flight: Default::default(),
            });
        }
        let Some(parts) = self.multipart.as_mut() else {
            return Ok(());
        };
        self.store.count(1);
        let payload = PutPayload::from_iter(std::mem::take(&mut self.part));
        let permit = self.permit.take();
        let upload = parts.upload.put_part(payload);
        parts.in_flight.push_back(tokio::spawn(async move {
            let sent = upload.await;
            drop(permit);
            sent
        }));
        self.sent += self.part_len as u64;
        self.part_len = 0;
        while parts.in_flight.len() > PARTS_IN_FLIGHT {
            if let Some(oldest) = parts.in_flight.pop_front() {
                join_part(oldest, &self.path).await?;
            }
        }
        Ok(())
    }
}

async fn join_part(
    part: tokio::task::JoinHandle<object_store::Result<()>>,
    path: &Path,
) -> Result<(), StorageError> {
    match part.await {
        Ok(sent) => sent.map_err(remote(format!("write {path}"))),
        Err(e) => Err(StorageError::io(format!("write {path}"))(
            std::io::Error::other(e),
        )),
    }
}

#[async_trait]
impl UploadWriter for PartWriter {
    async fn write(&mut self, mut chunk: Bytes) -> Result<(), StorageError> {
        while !chunk.is_empty() {
            if self.permit.is_none() {
                let size = self.next_part_size();
                self.permit = Some(self.store.reserve_part(size).await?);
            }
            let piece = chunk.split_to((PART_SIZE - self.part_len).min(chunk.len()));
            self.part_len += piece.len();
            self.part.push(piece);
            if self.part_len == PART_SIZE {
                self.send_part().await?;
            }
        }
        Ok(())
    }

    async fn finish(mut self: Box<Self>) -> Result<u64, StorageError> {
        let written = self.written();
        if self.multipart.is_none() {
            // An empty request adds no part.
            if written > 0 {
                self.store.count(1);
                let payload = PutPayload::from_iter(std::mem::take(&mut self.part));
                self.store
                    .store
                    .put(&self.path, payload)
                    .await
                    .map_err(remote(format!("store {}", self.path)))?;
            }
            return Ok(self.offset + written);
        }
        if self.part_len > 0 {
            self.send_part().await?;
        }
        let path = self.path.clone();
        if let Some(parts) = self.multipart.as_mut() {
            while let Some(part) = parts.in_flight.pop_front() {
                join_part(part, &path).await?;
            }
            self.store.count(1);
            parts
                .upload
                .complete()
                .await
                .map_err(remote(format!("complete {path}")))?;
        }
        Ok(self.offset + written)
    }
}
