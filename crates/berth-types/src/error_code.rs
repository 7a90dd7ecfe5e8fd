//! The error codes of the OCI distribution spec (and Docker's registry API),
//! each with the HTTP status it travels with.

use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ErrorCode {
    BlobUnknown,
    BlobUploadInvalid,
    BlobUploadUnknown,
    DigestInvalid,
    ManifestBlobUnknown,
    ManifestInvalid,
    ManifestUnknown,
    NameInvalid,
    NameUnknown,
    SizeInvalid,
    TagInvalid,
    Unauthorized,
    Denied,
    Unsupported,
    #[serde(rename = "TOOMANYREQUESTS")]
    TooManyRequests,
    RangeInvalid,
    /// Docker's code for a service that cannot answer right now (a backend
    /// is down); sent with `503` and `Retry-After`.
    Unavailable,
    /// Not in the spec: the blob store or the database has no space left.
    /// Sent with `507`; pulls keep working.
    StorageFull,
    /// Not in the spec: berth's code for failures of its own (storage, database).
    InternalError,
}

impl ErrorCode {
    /// The HTTP status the spec pairs with this code.
    pub fn status(self) -> u16 {
        match self {
            ErrorCode::BlobUnknown
            | ErrorCode::BlobUploadUnknown
            | ErrorCode::ManifestUnknown
            | ErrorCode::NameUnknown => 404,
            ErrorCode::BlobUploadInvalid
            | ErrorCode::DigestInvalid
            | ErrorCode::ManifestBlobUnknown
            | ErrorCode::ManifestInvalid
            | ErrorCode::NameInvalid
            | ErrorCode::SizeInvalid
            | ErrorCode::TagInvalid => 400,
            ErrorCode::Unauthorized => 401,
            ErrorCode::Denied => 403,
            ErrorCode::Unsupported => 405,
            ErrorCode::TooManyRequests => 429,
            ErrorCode::RangeInvalid => 416,
            ErrorCode::Unavailable => 503,
            ErrorCode::StorageFull => 507,
            ErrorCode::InternalError => 500,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::BlobUnknown => "BLOB_UNKNOWN",
            ErrorCode::BlobUploadInvalid => "BLOB_UPLOAD_INVALID",
            ErrorCode::BlobUploadUnknown => "BLOB_UPLOAD_UNKNOWN",
            ErrorCode::DigestInvalid => "DIGEST_INVALID",
            ErrorCode::ManifestBlobUnknown => "MANIFEST_BLOB_UNKNOWN",
            ErrorCode::ManifestInvalid => "MANIFEST_INVALID",
            ErrorCode::ManifestUnknown => "MANIFEST_UNKNOWN",
            ErrorCode::NameInvalid => "NAME_INVALID",
            ErrorCode::NameUnknown => "NAME_UNKNOWN",
            ErrorCode::SizeInvalid => "SIZE_INVALID",
            ErrorCode::TagInvalid => "TAG_INVALID",
            ErrorCode::Unauthorized => "UNAUTHORIZED",
            ErrorCode::Denied => "DENIED",
            ErrorCode::Unsupported => "UNSUPPORTED",
            ErrorCode::TooManyRequests => "TOOMANYREQUESTS",
            ErrorCode::RangeInvalid => "RANGE_INVALID",
            ErrorCode::Unavailable => "UNAVAILABLE",
            ErrorCode::StorageFull => "STORAGE_FULL",
            ErrorCode::InternalError => "INTERNAL_ERROR",
        }
    }
}

/// The part of berth a backend failure is in, named in messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum Backend {
    /// The metadata database (SQLite or PostgreSQL).
    Metadata,
    /// The blob store (the filesystem or an S3-compatible bucket).
    Blobs,
}

impl Backend {
    pub fn describe(self) -> &'static str {
        match self {
            Backend::Metadata => "metadata database",
            Backend::Blobs => "blob store",
        }
    }
}

impl std::fmt::Display for Backend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.describe())
    }
}

/// What kind of failure a backend error is, which decides what a client is
/// told: an outage (`503`, retry), a full disk (`507`), or a fault of
/// berth's own (`500`). The error's text itself only goes to the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    Unavailable(Backend),
    Full(Backend),
    Internal,
}

impl Fault {
    pub fn code(self) -> ErrorCode {
        match self {
            Fault::Unavailable(_) => ErrorCode::Unavailable,
            Fault::Full(_) => ErrorCode::StorageFull,
            Fault::Internal => ErrorCode::InternalError,
        }
    }
}
