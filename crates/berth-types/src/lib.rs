//! The vocabulary shared by every berth crate: content digests, repository
//! names and references, media types, manifests and the distribution spec's
//! error codes. No I/O happens here.

pub mod digest;
pub mod error_code;
pub mod manifest;
pub mod media_type;
pub mod name;

pub use digest::{Algorithm, Digest, DigestError, DigestHasher};
pub use error_code::{Backend, ErrorCode, Fault};
pub use manifest::{Descriptor, ManifestError, ManifestKind, ParsedManifest, Platform};
pub use name::{NameError, Reference, RepositoryName, Tag};
