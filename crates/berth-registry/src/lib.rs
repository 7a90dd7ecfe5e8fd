//! The registry's behaviour, independent of HTTP: blob reads and links,
//! uploads with streaming digest verification, manifest validation, tags,
//! referrers and garbage collection. It owns a [`BlobStore`] and a
//! [`MetadataStore`] and keeps them consistent: bytes are durable before the
//! metadata that makes them visible, and metadata is removed before bytes.

use std::collections::HashMap;
use std::ops::Range;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use berth_metadata::MetadataStore;
use berth_storage::{BlobRead, BlobStore, ByteStream};
use berth_types::{Digest, RepositoryName};
use bytes::Bytes;

mod cache;
mod error;
mod gc;
mod health;
mod manifests;
pub mod remote;
mod uploads;

pub use error::RegistryError;
pub use gc::GcReport;
pub use health::{BackendStatus, Health};
pub use manifests::{ManifestPut, PushOptions, StoredManifest, MAX_TAGS_PER_PUSH};
pub use uploads::UploadState;

pub type Result<T, E = RegistryError> = std::result::Result<T, E>;

#[derive(Debug, Clone)]
pub struct RegistryConfig {
    /// Largest manifest accepted, in bytes.
    pub max_manifest_bytes: usize,
    /// Smallest chunk but the last that a chunked upload should send
    /// (`OCI-Chunk-Min-Length`). Advice, not enforced: each chunk is one
    /// object in S3 storage, so fewer, larger chunks cost fewer requests.
    pub chunk_min_length: u64,
    /// How long an unreferenced blob is kept after it was last linked, so a
    /// push that uploaded it can still reference it in its manifest.
    pub gc_grace: Duration,
    /// Upload sessions idle for longer than this are discarded.
    pub upload_ttl: Duration,
    /// This node's name in the collector lease and its run records.
    pub node_id: String,
    /// Cache tags, manifests and links in memory from the start. With
    /// shared metadata this is off until the change feed of the other
    /// nodes' writes is followed ([`remote::follow_changes`]).
    pub cache: bool,
    /// Send blob downloads to presigned storage URLs valid this long
    /// (`[storage] redirect = "storage"`); `None` streams them through.
    pub storage_redirect: Option<Duration>,
}

impl Default for RegistryConfig {
    fn default() -> Self {
        RegistryConfig {
            max_manifest_bytes: 4 * 1024 * 1024,
            chunk_min_length: 1024 * 1024,
            gc_grace: Duration::from_secs(3600),
            upload_ttl: Duration::from_secs(24 * 3600),
            node_id: "local".into(),
            cache: true,
            storage_redirect: None,
        }
    }
}

/// What a blob GET serves: stored bytes, or a manifest's bytes when the
/// digest names a manifest of the repository (clients may fetch those through
/// the blobs endpoint).
pub enum BlobContent {
    Stored(BlobRead),
    Inline(Bytes),
}

pub struct Registry {
    blobs: Arc<dyn BlobStore>,
    metadata: Arc<dyn MetadataStore>,
    config: RegistryConfig,
    /// Hash state of uploads in progress on this node, one lock per upload so
    /// two requests never append to the same session at once.
    uploads: Mutex<HashMap<uuid::Uuid, Arc<tokio::sync::Mutex<Option<uploads::HashState>>>>>,
    cache: cache::MetadataCache,
    health: health::HealthCache,
    /// Clean-ups of requests that were cut off (their unacknowledged upload
    /// bytes); waited for at shutdown.
    cleanups: tokio_util::task::TaskTracker,
}

impl Registry {
    pub fn new(
        blobs: Arc<dyn BlobStore>,
        metadata: Arc<dyn MetadataStore>,
        config: RegistryConfig,
    ) -> Self {
        Registry {
            cache: cache::MetadataCache::new(config.cache),
            blobs,
            metadata,
            config,
            uploads: Mutex::new(HashMap::new()),
            health: health::HealthCache::default(),
            cleanups: tokio_util::task::TaskTracker::new(),
        }
    }

    /// At shutdown, after the listeners stopped: waits (up to `deadline`)
    /// for the clean-ups of requests that were cut off. `false` if some
    /// did not finish (their leftovers go when the session expires).
    pub async fn finish_cleanups(&self, deadline: Duration) -> bool {
        self.cleanups.close();
        tokio::time::timeout(deadline, self.cleanups.wait())
            .await
            .is_ok()
    }

    pub fn config(&self) -> &RegistryConfig {
        &self.config
    }

    pub fn metadata(&self) -> &Arc<dyn MetadataStore> {
        &self.metadata
    }

    pub fn blob_store(&self) -> &Arc<dyn BlobStore> {
        &self.blobs
    }

    /// Size of the blob if the repository links it (cached).
    async fn linked_size(
        &self,
        repository: &RepositoryName,
        digest: &Digest,
    ) -> Result<Option<u64>> {
        if let Some(size) = self.cache.link(repository.as_str(), digest) {
            return Ok(Some(size));
        }
        let ticket = self.cache.ticket();
        let size = self.metadata.linked_blob_size(repository, digest).await?;
        if let Some(size) = size {
            self.cache
                .fill_link(ticket, repository.as_str(), digest, size);
        }
        Ok(size)
    }

    fn blob_unknown(repository: &RepositoryName, digest: &Digest) -> RegistryError {
        RegistryError::BlobUnknown {
            repository: repository.to_string(),
            digest: digest.clone(),
        }
    }

    /// Size of a blob the repository holds (or of one of its manifests).
    pub async fn blob_size(&self, repository: &RepositoryName, digest: &Digest) -> Result<u64> {
        if let Some(size) = self.linked_size(repository, digest).await? {
            return Ok(size);
        }
        match self.manifest_by_digest(repository, digest).await? {
            Some(m) => Ok(m.content.len() as u64),
            None => Err(Self::blob_unknown(repository, digest)),
        }
    }

    /// Opens a blob of the repository for streaming, whole or a byte range.
    pub async fn read_blob(
        &self,
        repository: &RepositoryName,
        digest: &Digest,
        range: Option<Range<u64>>,
    ) -> Result<BlobContent> {
        if self.linked_size(repository, digest).await?.is_some() {
            return Ok(BlobContent::Stored(
                self.blobs.read_blob(digest, range).await?,
            ));
        }
        match self.manifest_by_digest(repository, digest).await? {
            Some(m) => Ok(BlobContent::Inline(m.content.clone())),
            None => Err(Self::blob_unknown(repository, digest)),
        }
    }

    /// A presigned storage URL to download a blob the repository links from,
    /// when storage redirects are on (and the storage can sign URLs).
    pub async fn storage_redirect(
        &self,
        repository: &RepositoryName,
        digest: &Digest,
    ) -> Result<Option<String>> {
        let Some(ttl) = self.config.storage_redirect else {
            return Ok(None);
        };
        if self.linked_size(repository, digest).await?.is_none() {
            // A manifest read through the blobs endpoint: served here.
            return Ok(None);
        }
        Ok(self.blobs.presigned_blob_url(digest, ttl).await?)
    }

    /// Removes the repository's link to a blob. The bytes go when the
    /// garbage collector finds nothing else referencing them.
    pub async fn delete_blob(&self, repository: &RepositoryName, digest: &Digest) -> Result<()> {
        let write = self.cache.write();
        let unlinked = self.metadata.unlink_blob(repository, digest).await?;
        write.forget_link(repository.as_str(), digest);
        if unlinked {
            Ok(())
        } else {
            Err(Self::blob_unknown(repository, digest))
        }
    }

    /// Cross-repository mount: links `digest` from `from` into `repository`
    /// without copying. `false` when `from` does not hold it (the caller then
    /// falls back to an upload).
    pub async fn mount_blob(
        &self,
        repository: &RepositoryName,
        digest: &Digest,
        from: &RepositoryName,
    ) -> Result<bool> {
        if self
            .metadata
            .linked_blob_size(from, digest)
            .await?
            .is_none()
        {
            return Ok(false);
        }
        // The bytes must still be there: never link what cannot be served.
        if self.blobs.blob_size(digest).await?.is_none() {
            return Ok(false);
        }
        // False if the collector took the blob meanwhile.
        Ok(self.metadata.link_blob(repository, digest).await?)
    }
}

/// Reads a stream fully into `hasher`, for rebuilding hash state.
async fn hash_stream(
    mut stream: ByteStream,
    hasher: &mut berth_types::DigestHasher,
) -> Result<u64> {
    use futures::StreamExt;
    let mut n = 0u64;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| {
            RegistryError::Storage(berth_storage::StorageError::Io {
                action: "re-read upload".into(),
                source: e,
            })
        })?;
        hasher.update(&chunk);
        n += chunk.len() as u64;
    }
    Ok(n)
}
