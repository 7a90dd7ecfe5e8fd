use berth_metadata::MetadataError;
use berth_storage::StorageError;
use berth_types::{Digest, ErrorCode, Fault, ManifestError, NameError};

/// Everything that can go wrong in a registry operation. Each variant knows
/// its distribution-spec code; the HTTP layer turns that into a response.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error(transparent)]
    InvalidName(NameError),
    #[error(transparent)]
    InvalidTag(NameError),
    #[error("repository '{0}' is not known to this registry")]
    NameUnknown(String),
    #[error("manifest '{reference}' is not in repository '{repository}'")]
    ManifestUnknown {
        repository: String,
        reference: String,
    },
    #[error("blob {digest} is not in repository '{repository}'")]
    BlobUnknown { repository: String, digest: Digest },
    #[error("upload session '{0}' does not exist (it was completed, cancelled or has expired); start a new upload with POST /v2/<name>/blobs/uploads/")]
    UploadUnknown(String),
    #[error("invalid digest: {0}")]
    DigestInvalid(String),
    #[error("content does not match digest {expected}: the uploaded bytes hash to {actual}")]
    DigestMismatch { expected: Digest, actual: Digest },
    #[error("{0}")]
    UploadInvalid(String),
    #[error("chunk starts at byte {requested} but the upload has {current} bytes; resume from byte {current}")]
    RangeInvalid { requested: u64, current: u64 },
    #[error("{0}")]
    SizeInvalid(String),
    #[error("manifest is {size} bytes; the limit is {limit}")]
    ManifestTooLarge { size: usize, limit: usize },
    #[error("manifest invalid: {0}")]
    ManifestInvalid(String),
    #[error("manifest references content this repository does not have: {}", .0.iter().map(|d| d.to_string()).collect::<Vec<_>>().join(", "))]
    ManifestBlobUnknown(Vec<Digest>),
    #[error("the push names {count} tags; at most {limit} may be set at once: push the manifest again with fewer ?tag= parameters, or tag the rest with further pushes")]
    TooManyTags { count: usize, limit: usize },
    #[error("{0}")]
    Unsupported(String),
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error(transparent)]
    Metadata(MetadataError),
}

impl From<MetadataError> for RegistryError {
    fn from(e: MetadataError) -> Self {
        match e {
            MetadataError::MissingBlobs(d) | MetadataError::MissingManifests(d) => {
                RegistryError::ManifestBlobUnknown(d)
            }
            other => RegistryError::Metadata(other),
        }
    }
}

impl From<ManifestError> for RegistryError {
    fn from(e: ManifestError) -> Self {
        match e {
            ManifestError::UnknownMediaType(_) => RegistryError::ManifestInvalid(e.to_string()),
            other => RegistryError::ManifestInvalid(other.to_string()),
        }
    }
}

impl RegistryError {
    /// The HTTP status: the code's own, except where the spec asks for a
    /// more specific one.
    pub fn status(&self) -> u16 {
        match self {
            RegistryError::ManifestTooLarge { .. } => 413,
            RegistryError::TooManyTags { .. } => 414,
            _ => self.code().status(),
        }
    }

    pub fn code(&self) -> ErrorCode {
        match self {
            RegistryError::InvalidName(_) => ErrorCode::NameInvalid,
            RegistryError::InvalidTag(NameError::Digest(_)) => ErrorCode::DigestInvalid,
            RegistryError::InvalidTag(_) | RegistryError::TooManyTags { .. } => {
                ErrorCode::TagInvalid
            }
            RegistryError::NameUnknown(_) => ErrorCode::NameUnknown,
            RegistryError::ManifestUnknown { .. } => ErrorCode::ManifestUnknown,
            RegistryError::BlobUnknown { .. } => ErrorCode::BlobUnknown,
            RegistryError::UploadUnknown(_) => ErrorCode::BlobUploadUnknown,
            RegistryError::DigestInvalid(_) | RegistryError::DigestMismatch { .. } => {
                ErrorCode::DigestInvalid
            }
            RegistryError::UploadInvalid(_) => ErrorCode::BlobUploadInvalid,
            RegistryError::RangeInvalid { .. } => ErrorCode::RangeInvalid,
            RegistryError::SizeInvalid(_) => ErrorCode::SizeInvalid,
            RegistryError::ManifestInvalid(_) => ErrorCode::ManifestInvalid,
            RegistryError::ManifestTooLarge { .. } => ErrorCode::SizeInvalid,
            RegistryError::ManifestBlobUnknown(_) => ErrorCode::ManifestBlobUnknown,
            RegistryError::Unsupported(_) => ErrorCode::Unsupported,
            RegistryError::Storage(StorageError::BlobNotFound(_)) => ErrorCode::BlobUnknown,
            RegistryError::Storage(StorageError::UploadNotFound(_)) => ErrorCode::BlobUploadUnknown,
            RegistryError::Storage(StorageError::RangeNotSatisfiable { .. }) => {
                ErrorCode::RangeInvalid
            }
            RegistryError::Storage(StorageError::UploadIncomplete { .. }) => {
                ErrorCode::BlobUploadInvalid
            }
            RegistryError::Storage(e) => e.fault().code(),
            RegistryError::Metadata(e) => e.fault().code(),
        }
    }

    /// For backend failures, what kind of failure it is (`None` for
    /// errors that are the client's: they carry their own message).
    pub fn fault(&self) -> Option<Fault> {
        match self {
            RegistryError::Storage(
                StorageError::BlobNotFound(_)
                | StorageError::UploadNotFound(_)
                | StorageError::RangeNotSatisfiable { .. }
                | StorageError::UploadIncomplete { .. },
            ) => None,
            RegistryError::Storage(e) => Some(e.fault()),
            RegistryError::Metadata(e) => Some(e.fault()),
            _ => None,
        }
    }
}
