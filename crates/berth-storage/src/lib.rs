//! Blob storage: the one seam between berth and where bytes live.
//!
//! [`BlobStore`] is deliberately thin: content-addressed blobs, and upload
//! areas that become blobs by an atomic commit. Digest verification, upload
//! sessions and metadata are the registry layer's business, so a backend only
//! moves bytes. One file per backend: [`filesystem`] (embedded) and [`s3`]
//! (S3-compatible object stores, for several nodes).

use std::ops::Range;
use std::pin::Pin;

use async_trait::async_trait;
use berth_types::{Backend, Digest, Fault};
use bytes::Bytes;
use futures::Stream;
use uuid::Uuid;

pub mod filesystem;
pub mod s3;

pub use filesystem::FilesystemStore;
pub use s3::{S3Config, S3Store};

#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("blob {0} is not in storage")]
    BlobNotFound(Digest),
    #[error("upload {0} has no data in storage")]
    UploadNotFound(Uuid),
    #[error("requested range {start}-{end} is outside the blob's {size} bytes")]
    RangeNotSatisfiable { start: u64, end: u64, size: u64 },
    #[error("upload {id} is missing the bytes from offset {at} (of {len}) in storage; start the upload again")]
    UploadIncomplete { id: Uuid, at: u64, len: u64 },
    #[error("the object store failed while trying to {action}: {source}")]
    Remote {
        action: String,
        #[source]
        source: Box<object_store::Error>,
    },
    #[error("storage I/O failed while trying to {action}: {source}")]
    Io {
        action: String,
        #[source]
        source: std::io::Error,
    },
}

/// Refuses a byte range that does not lie within a blob of `size` bytes
/// (every backend answers the same way).
pub(crate) fn check_range(range: &Range<u64>, size: u64) -> Result<(), StorageError> {
    if range.start > range.end || range.end > size {
        return Err(StorageError::RangeNotSatisfiable {
            start: range.start,
            end: range.end,
            size,
        });
    }
    Ok(())
}

impl StorageError {
    /// How a client should hear of this failure: a full disk (`ENOSPC`,
    /// a quota) is [`Fault::Full`]; a remote store that cannot be reached
    /// or answers with a server error is [`Fault::Unavailable`]. Errors
    /// with a distribution code of their own (not found, range) are not
    /// faults and answer `Internal` here; callers map those first.
    pub fn fault(&self) -> Fault {
        match self {
            StorageError::Io { source, .. } if is_disk_full(source) => Fault::Full(Backend::Blobs),
            StorageError::Remote { source, .. } => match source.as_ref() {
                object_store::Error::NotFound { .. }
                | object_store::Error::AlreadyExists { .. }
                | object_store::Error::Precondition { .. }
                | object_store::Error::NotModified { .. }
                | object_store::Error::NotImplemented
                | object_store::Error::InvalidPath { .. } => Fault::Internal,
                // Connection refused or reset, timeouts, 5xx after the
                // client's retries, credentials the store refuses: all
                // things an operator fixes on the store's side.
                _ => Fault::Unavailable(Backend::Blobs),
            },
            _ => Fault::Internal,
        }
    }

    pub(crate) fn io(action: impl Into<String>) -> impl FnOnce(std::io::Error) -> StorageError {
        let action = action.into();
        move |source| StorageError::Io { action, source }
    }
}

/// `ENOSPC` or `EDQUOT`: the filesystem (or the user's quota) is full.
pub fn is_disk_full(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::StorageFull | std::io::ErrorKind::QuotaExceeded
    )
}

pub type ByteStream = Pin<Box<dyn Stream<Item = Result<Bytes, std::io::Error>> + Send>>;

/// A blob, or a range of one, ready to stream.
pub struct BlobRead {
    /// Total size of the blob (not of the range).
    pub size: u64,
    pub stream: ByteStream,
}

/// Receives one request's worth of upload bytes. Dropping it without
/// [`UploadWriter::finish`] leaves the upload at its last durable length.
#[async_trait]
pub trait UploadWriter: Send {
    async fn write(&mut self, chunk: Bytes) -> Result<(), StorageError>;
    /// Hands everything written to the storage (it survives a crash of this
    /// process) and returns the upload's total length. Only after this may
    /// the caller acknowledge the bytes. Power-loss durability comes with
    /// [`BlobStore::commit_upload`].
    async fn finish(self: Box<Self>) -> Result<u64, StorageError>;
}

#[async_trait]
pub trait BlobStore: Send + Sync + 'static {
    /// Size of a stored blob, or `None` if it is not stored.
    async fn blob_size(&self, digest: &Digest) -> Result<Option<u64>, StorageError>;

    /// Streams a blob, or the byte range `range` of it.
    async fn read_blob(
        &self,
        digest: &Digest,
        range: Option<Range<u64>>,
    ) -> Result<BlobRead, StorageError>;

    /// Removes a blob; `false` if it was not there.
    async fn delete_blob(&self, digest: &Digest) -> Result<bool, StorageError>;

    /// Opens an upload for appending at `offset`: creates it when `offset` is
    /// 0, and discards anything past `offset` (bytes of a request that was
    /// never acknowledged). `length` is how many bytes the request
    /// announced, when it did (a backend that buffers reserves no more).
    async fn upload_writer(
        &self,
        id: Uuid,
        offset: u64,
        length: Option<u64>,
    ) -> Result<Box<dyn UploadWriter>, StorageError>;

    /// Streams the first `len` bytes of an upload (to rebuild hash state).
    async fn read_upload(&self, id: Uuid, len: u64) -> Result<ByteStream, StorageError>;

    /// Atomically turns an upload into the blob `digest`. The caller has
    /// verified the digest; after this returns the blob is durable, power
    /// loss included.
    async fn commit_upload(&self, id: Uuid, len: u64, digest: &Digest) -> Result<(), StorageError>;

    /// Discards an upload's data; `false` if it had none.
    async fn delete_upload(&self, id: Uuid) -> Result<bool, StorageError>;

    /// Discards whatever an upload holds past `len`: the bytes of a request
    /// that failed or was cut off before it was acknowledged, so they do not
    /// sit on disk until the session expires.
    async fn trim_upload(&self, id: Uuid, len: u64) -> Result<(), StorageError>;

    /// A cheap request that shows the store answers (`/readyz`).
    async fn probe(&self) -> Result<(), StorageError>;

    /// Requests made to a remote store so far (the garbage collector
    /// reports its cost with it); 0 for local storage.
    fn requests(&self) -> u64 {
        0
    }

    /// A URL the client can fetch the blob from directly, valid for
    /// `expires_in`; `None` if this storage has no such URLs.
    async fn presigned_blob_url(
        &self,
        _digest: &Digest,
        _expires_in: std::time::Duration,
    ) -> Result<Option<String>, StorageError> {
        Ok(None)
    }
}
