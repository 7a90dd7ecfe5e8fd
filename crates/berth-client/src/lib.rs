//! What every berth client command shares — the management commands,
//! `login`/`logout`, `check-pull` and `check-health`:
//!
//! - [`address`]: `--registry` as a URL or `host[:port]`, one meaning
//!   everywhere, with the loopback plain-HTTP fallback Docker and
//!   containerd apply;
//! - [`tls`]: the trust store (system CAs, `--ca-file`, `SSL_CERT_FILE`),
//!   accepting a self-signed certificate named there as Go's clients do;
//! - [`credentials`]: one resolver for flags, `BERTH_*`, Docker config
//!   files (with `identitytoken`), credential helpers and the kubelet's
//!   config locations;
//! - [`challenge`]: `WWW-Authenticate` challenges (Bearer and Basic).

pub mod address;
pub mod challenge;
pub mod credentials;
pub mod tls;

pub use address::{RegistryAddress, Scheme};
pub use credentials::{Credentials, Lookup};
