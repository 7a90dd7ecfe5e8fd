//! Blob uploads. Bytes are hashed as they stream through to storage, so
//! completing an upload never re-reads it. The durable length lives in the
//! metadata store and is advanced only after storage has fsync'd the bytes;
//! hash state is kept in memory and rebuilt from storage after a restart.
//! A session hashes with the algorithm it was started with
//! (`?digest-algorithm=`, sha256 by default).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use berth_storage::ByteStream;
use berth_types::{Algorithm, Digest, DigestHasher, RepositoryName};
use futures::StreamExt;
use uuid::Uuid;

use crate::{hash_stream, Registry, RegistryError, Result};

/// Below this announced length a body is hashed inline; above (or when the
/// length is unknown) on its own thread, overlapping receiving and writing
/// (while there are fewer such threads than cores, see [`PIPELINED`]).
const PIPELINE_FROM: u64 = 1024 * 1024;

/// Hashing threads running at once. Past one per core a thread per upload
/// adds no parallelism (the cores are busy with the bodies already) but
/// costs a thread, its stack and its share of the allocator's arenas, so
/// further bodies are hashed inline.
static PIPELINED: AtomicUsize = AtomicUsize::new(0);

/// One of the hashing threads [`PIPELINED`] counts; given back on drop.
struct PipelineSlot;

impl PipelineSlot {
    fn take() -> Option<PipelineSlot> {
        let limit = std::thread::available_parallelism().map_or(2, |n| n.get());
        PIPELINED
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < limit).then_some(n + 1)
            })
            .ok()
            .map(|_| PipelineSlot)
    }
}

impl Drop for PipelineSlot {
    fn drop(&mut self) {
        PIPELINED.fetch_sub(1, Ordering::AcqRel);
    }
}

/// How often a commit retries claiming a blob the collector is deleting
/// (200 ms apart).
const CLAIM_ATTEMPTS: u32 = 150;

/// Hashing of one request body, inline or pipelined.
enum Hashing {
    Inline(Box<DigestHasher>),
    Pipelined {
        chunks: tokio::sync::mpsc::Sender<bytes::Bytes>,
        thread: tokio::task::JoinHandle<DigestHasher>,
        _slot: PipelineSlot,
    },
}

impl Hashing {
    fn start(hasher: DigestHasher, length: Option<u64>) -> Hashing {
        if length.is_some_and(|l| l < PIPELINE_FROM) {
            return Hashing::Inline(Box::new(hasher));
        }
        let Some(slot) = PipelineSlot::take() else {
            return Hashing::Inline(Box::new(hasher));
        };
        let (chunks, mut rx) = tokio::sync::mpsc::channel::<bytes::Bytes>(2);
        let thread = tokio::task::spawn_blocking(move || {
            let mut hasher = hasher;
            while let Some(chunk) = rx.blocking_recv() {
                hasher.update(&chunk);
            }
            hasher
        });
        Hashing::Pipelined {
            chunks,
            thread,
            _slot: slot,
        }
    }

    async fn update(&mut self, chunk: bytes::Bytes) -> Result<()> {
        match self {
            Hashing::Inline(h) => {
                h.update(&chunk);
                Ok(())
            }
            Hashing::Pipelined { chunks, .. } => chunks
                .send(chunk)
                .await
                .map_err(|_| RegistryError::UploadInvalid("the hashing thread stopped".into())),
        }
    }

    async fn finish(self) -> Result<DigestHasher> {
        match self {
            Hashing::Inline(h) => Ok(*h),
            Hashing::Pipelined { chunks, thread, .. } => {
                drop(chunks);
                thread
                    .await
                    .map_err(|e| RegistryError::UploadInvalid(format!("hashing failed: {e}")))
            }
        }
    }
}

/// Hash state of the bytes an upload holds so far.
pub(crate) struct HashState {
    offset: u64,
    hasher: DigestHasher,
}

/// Where an upload session stands.
#[derive(Debug, Clone)]
pub struct UploadState {
    pub id: Uuid,
    /// Bytes received and durable.
    pub offset: u64,
}

type UploadLock = Arc<tokio::sync::Mutex<Option<HashState>>>;
type HeldUpload = tokio::sync::OwnedMutexGuard<Option<HashState>>;

/// Holds an upload's lock while a request appends to it. If the request
/// ends without [`AppendGuard::release`] — it failed, or its future was
/// dropped because the client went away or the server is shutting down —
/// the bytes it wrote past the durable length are removed before the lock
/// is let go, so the next request of the session starts from clean storage
/// and nothing unacknowledged stays on disk.
struct AppendGuard {
    held: Option<HeldUpload>,
    /// Stands in for the lock's state once `held` is gone (never while the
    /// guard is in use: `release` and `trim` consume it).
    spare: Option<HashState>,
    id: Uuid,
    blobs: Arc<dyn berth_storage::BlobStore>,
    metadata: Arc<dyn berth_metadata::MetadataStore>,
    cleanups: tokio_util::task::TaskTracker,
}

impl AppendGuard {
    fn state(&mut self) -> &mut Option<HashState> {
        match self.held.as_deref_mut() {
            Some(state) => state,
            None => &mut self.spare,
        }
    }

    /// The request's bytes were acknowledged: nothing to remove.
    fn release(mut self) {
        self.held = None;
    }

    /// The request failed: remove its bytes now, then let go of the lock.
    async fn trim(mut self) {
        if let Some(held) = self.held.take() {
            trim_to_durable(self.blobs.clone(), self.metadata.clone(), self.id).await;
            drop(held);
        }
    }
}

impl Drop for AppendGuard {
    fn drop(&mut self) {
        let Some(held) = self.held.take() else {
            return;
        };
        let (blobs, metadata, id) = (self.blobs.clone(), self.metadata.clone(), self.id);
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            self.cleanups.spawn_on(
                async move {
                    trim_to_durable(blobs, metadata, id).await;
                    drop(held);
                },
                &runtime,
            );
        }
    }
}

/// Cuts an upload's storage back to the length the metadata records as
/// durable (read again: a cancelled request may have recorded its bytes
/// just before it was dropped).
async fn trim_to_durable(
    blobs: Arc<dyn berth_storage::BlobStore>,
    metadata: Arc<dyn berth_metadata::MetadataStore>,
    id: Uuid,
) {
    let durable = match metadata.get_upload(&id.to_string()).await {
        Ok(Some(record)) => record.offset,
        // Completed, cancelled or expired meanwhile: its bytes are gone
        // or about to be.
        Ok(None) => return,
        Err(e) => {
            tracing::warn!(upload = %id, error = %e, "cannot read the durable length of an upload to trim it; the next request or the expiry will");
            return;
        }
    };
    if let Err(e) = blobs.trim_upload(id, durable).await {
        tracing::warn!(upload = %id, error = %e, "trimming the unacknowledged bytes of an upload failed");
    }
}

/// Discards a single-request upload whose request never finished (the
/// client never learned the session, so nothing else will).
struct DiscardOnDrop<'a> {
    registry: &'a Registry,
    id: Option<Uuid>,
}

impl Drop for DiscardOnDrop<'_> {
    fn drop(&mut self) {
        let Some(id) = self.id.take() else {
            return;
        };
        let (blobs, metadata) = (self.registry.blobs.clone(), self.registry.metadata.clone());
        self.registry.forget_upload_lock(id);
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            self.registry.cleanups.spawn_on(
                async move {
                    if let Err(e) = blobs.delete_upload(id).await {
                        tracing::warn!(upload = %id, error = %e, "discarding an interrupted upload's bytes failed");
                    }
                    if let Err(e) = metadata.delete_upload(&id.to_string()).await {
                        tracing::warn!(upload = %id, error = %e, "discarding an interrupted upload's session failed");
                    }
                },
                &runtime,
            );
        }
    }
}

impl Registry {
    fn upload_lock(&self, id: Uuid) -> UploadLock {
        let mut map = self.uploads.lock().unwrap_or_else(|p| p.into_inner());
        map.entry(id).or_default().clone()
    }

    /// Takes an upload's lock for a request that appends to it.
    async fn lock_for_append(&self, id: Uuid) -> AppendGuard {
        AppendGuard {
            held: Some(self.upload_lock(id).lock_owned().await),
            spare: None,
            id,
            blobs: self.blobs.clone(),
            metadata: self.metadata.clone(),
            cleanups: self.cleanups.clone(),
        }
    }

    fn forget_upload_lock(&self, id: Uuid) {
        let mut map = self.uploads.lock().unwrap_or_else(|p| p.into_inner());
        map.remove(&id);
    }

    /// Looks up a session of `repository`; unknown ids, ids of another
    /// repository and malformed ids are all "unknown upload".
    async fn upload_record(
        &self,
        repository: &RepositoryName,
        id: &str,
    ) -> Result<(Uuid, u64, Algorithm)> {
        let unknown = || RegistryError::UploadUnknown(id.chars().take(64).collect());
        let uuid = Uuid::parse_str(id).map_err(|_| unknown())?;
        let record = self
            .metadata
            .get_upload(&uuid.to_string())
            .await?
            .ok_or_else(unknown)?;
        if record.repository != repository.as_str() {
            return Err(unknown());
        }
        Ok((uuid, record.offset, record.algorithm))
    }

    /// Opens an upload session that hashes with `algorithm` as bytes arrive.
    pub async fn start_upload(
        &self,
        repository: &RepositoryName,
        algorithm: Algorithm,
    ) -> Result<UploadState> {
        let id = Uuid::new_v4();
        // Storage first: a session the metadata knows always has its file.
        self.blobs
            .upload_writer(id, 0, Some(0))
            .await?
            .finish()
            .await?;
        self.metadata
            .create_upload(&id.to_string(), repository, algorithm)
            .await?;
        Ok(UploadState { id, offset: 0 })
    }

    pub async fn upload_state(&self, repository: &RepositoryName, id: &str) -> Result<UploadState> {
        let (id, offset, _) = self.upload_record(repository, id).await?;
        Ok(UploadState { id, offset })
    }

    /// Appends a chunk. `start` is where the client says the chunk begins
    /// (`Content-Range`), `length` how long it says it is.
    pub async fn append_upload(
        &self,
        repository: &RepositoryName,
        id: &str,
        start: Option<u64>,
        length: Option<u64>,
        body: ByteStream,
    ) -> Result<UploadState> {
        let (uuid, ..) = self.upload_record(repository, id).await?;
        let mut guard = self.lock_for_append(uuid).await;
        let (_, offset, algorithm) = self.upload_record(repository, id).await?;
        if let Some(start) = start {
            if start != offset {
                guard.release();
                return Err(RegistryError::RangeInvalid {
                    requested: start,
                    current: offset,
                });
            }
        }
        let hashed = self
            .take_hash_state(uuid, offset, algorithm, guard.state())
            .await?;
        match self.append_locked(uuid, hashed, length, body).await {
            Ok(appended) => {
                let offset = appended.offset;
                *guard.state() = Some(appended);
                guard.release();
                Ok(UploadState { id: uuid, offset })
            }
            Err(e) => {
                guard.trim().await;
                Err(e)
            }
        }
    }

    /// Finishes an upload: appends the final chunk if any, checks the digest,
    /// and makes the blob visible in the repository.
    pub async fn complete_upload(
        &self,
        repository: &RepositoryName,
        id: &str,
        digest: &Digest,
        body: Option<(Option<u64>, ByteStream)>,
    ) -> Result<()> {
        self.complete_upload_notifying(repository, id, digest, body, None)
            .await
    }

    /// [`Self::complete_upload`], telling `verified` as soon as the bytes
    /// are known to match the digest, before they are made durable and
    /// visible (a streaming reader can then be handed its last bytes).
    async fn complete_upload_notifying(
        &self,
        repository: &RepositoryName,
        id: &str,
        digest: &Digest,
        body: Option<(Option<u64>, ByteStream)>,
        verified: Option<tokio::sync::oneshot::Sender<()>>,
    ) -> Result<()> {
        let (uuid, ..) = self.upload_record(repository, id).await?;
        let mut guard = self.lock_for_append(uuid).await;
        let (_, offset, algorithm) = self.upload_record(repository, id).await?;
        let mut hashed = self
            .take_hash_state(uuid, offset, algorithm, guard.state())
            .await?;
        if let Some((length, body)) = body {
            hashed = match self.append_locked(uuid, hashed, length, body).await {
                Ok(hashed) => hashed,
                Err(e) => {
                    guard.trim().await;
                    return Err(e);
                }
            };
        }
        let size = hashed.offset;
        let actual = match digest.algorithm() {
            a if a == hashed.hasher.algorithm() => hashed.hasher.finish(),
            // Completed with another algorithm than the session was started
            // with: rare enough to pay one re-read.
            other => {
                let mut hasher = DigestHasher::new(other);
                hash_stream(self.blobs.read_upload(uuid, size).await?, &mut hasher).await?;
                hasher.finish()
            }
        };
        if &actual != digest {
            self.discard_upload(uuid).await?;
            return Err(RegistryError::DigestMismatch {
                expected: digest.clone(),
                actual,
            });
        }
        if let Some(verified) = verified {
            let _ = verified.send(());
        }
        // Claim before writing: the collector never deletes a claimed blob,
        // and a blob it is deleting is waited for, not overwritten.
        self.claim_blob(digest, size).await?;
        self.blobs.commit_upload(uuid, size, digest).await?;
        if !self.metadata.link_blob(repository, digest).await? {
            return Err(RegistryError::UploadInvalid(format!(
                "blob {digest} was removed while the upload completed; push it again"
            )));
        }
        self.metadata.delete_upload(&uuid.to_string()).await?;
        guard.release();
        self.forget_upload_lock(uuid);
        Ok(())
    }

    /// A whole blob in one request (`POST ...?digest=` or `PUT` after `POST`).
    pub async fn upload_blob(
        &self,
        repository: &RepositoryName,
        digest: &Digest,
        length: Option<u64>,
        body: ByteStream,
    ) -> Result<()> {
        self.upload_blob_notifying(repository, digest, length, body, None)
            .await
    }

    /// [`Self::upload_blob`], telling `verified` once the bytes match the
    /// digest, before the commit's fsync: the cache's tee releases the
    /// client's last chunk then instead of after the disk write.
    pub async fn upload_blob_notifying(
        &self,
        repository: &RepositoryName,
        digest: &Digest,
        length: Option<u64>,
        body: ByteStream,
        verified: Option<tokio::sync::oneshot::Sender<()>>,
    ) -> Result<()> {
        let upload = self.start_upload(repository, digest.algorithm()).await?;
        let mut unfinished = DiscardOnDrop {
            registry: self,
            id: Some(upload.id),
        };
        let id = upload.id.to_string();
        let result = self
            .complete_upload_notifying(repository, &id, digest, Some((length, body)), verified)
            .await;
        unfinished.id = None;
        if result.is_err() {
            // Nothing of a failed single-request upload is kept.
            self.discard_upload(upload.id).await?;
        }
        result
    }

    /// Claims the blob record, waiting while the collector finishes
    /// deleting an earlier copy of the same bytes (seconds at most).
    async fn claim_blob(&self, digest: &Digest, size: u64) -> Result<()> {
        for _ in 0..CLAIM_ATTEMPTS {
            if self.metadata.claim_blob(digest, size).await? {
                return Ok(());
            }
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        }
        Err(RegistryError::UploadInvalid(format!(
            "blob {digest} is being garbage collected and the collector has not finished; retry the upload in a minute"
        )))
    }

    pub async fn cancel_upload(&self, repository: &RepositoryName, id: &str) -> Result<()> {
        let (uuid, ..) = self.upload_record(repository, id).await?;
        let lock = self.upload_lock(uuid);
        let _state = lock.lock().await;
        self.discard_upload(uuid).await
    }

    pub(crate) async fn discard_upload(&self, id: Uuid) -> Result<()> {
        // Bytes first: a crash in between leaves a session record without
        // bytes (purged when it goes stale), never bytes nothing points at.
        self.blobs.delete_upload(id).await?;
        self.metadata.delete_upload(&id.to_string()).await?;
        self.forget_upload_lock(id);
        Ok(())
    }

    /// The hash state at `offset`: the cached one if it is current, else
    /// rebuilt by re-reading the durable bytes (after a restart, or on a
    /// node that did not receive the previous chunk).
    async fn take_hash_state(
        &self,
        id: Uuid,
        offset: u64,
        algorithm: Algorithm,
        cached: &mut Option<HashState>,
    ) -> Result<HashState> {
        if let Some(state) = cached.take() {
            if state.offset == offset && state.hasher.algorithm() == algorithm {
                return Ok(state);
            }
        }
        let mut hasher = DigestHasher::new(algorithm);
        let read = hash_stream(self.blobs.read_upload(id, offset).await?, &mut hasher).await?;
        if read != offset {
            return Err(RegistryError::UploadInvalid(format!(
                "upload {id} should hold {offset} bytes but storage has {read}; start the upload again"
            )));
        }
        Ok(HashState { offset, hasher })
    }

    /// Streams `body` into the upload, hashing as it goes. On any failure
    /// the returned error leaves the durable length where it was.
    async fn append_locked(
        &self,
        id: Uuid,
        mut state: HashState,
        length: Option<u64>,
        mut body: ByteStream,
    ) -> Result<HashState> {
        let mut writer = self.blobs.upload_writer(id, state.offset, length).await?;
        let mut hasher = Hashing::start(state.hasher, length);
        let mut received = 0u64;
        while let Some(chunk) = body.next().await {
            let chunk = chunk.map_err(|e| {
                RegistryError::UploadInvalid(format!(
                    "the request body ended early after {received} bytes: {e}"
                ))
            })?;
            received += chunk.len() as u64;
            if let Some(expected) = length {
                if received > expected {
                    return Err(RegistryError::UploadInvalid(format!(
                        "the chunk is longer than the {expected} bytes its Content-Range or Content-Length announced"
                    )));
                }
            }
            hasher.update(chunk.clone()).await?;
            writer.write(chunk).await?;
        }
        state.hasher = hasher.finish().await?;
        if let Some(expected) = length {
            if received != expected {
                return Err(RegistryError::UploadInvalid(format!(
                    "the chunk has {received} bytes but its Content-Range or Content-Length announced {expected}"
                )));
            }
        }
        let total = writer.finish().await?;
        if total != state.offset + received {
            return Err(RegistryError::UploadInvalid(format!(
                "upload {id} has {total} bytes in storage, expected {}",
                state.offset + received
            )));
        }
        self.metadata
            .set_upload_offset(&id.to_string(), total)
            .await?;
        state.offset = total;
        Ok(state)
    }
}
