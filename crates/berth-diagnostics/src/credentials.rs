//! Credentials as clients store them. The resolver is `berth-client`'s,
//! shared with the management commands, so a diagnosis finds exactly the
//! credentials a command (or the kubelet) would use.

pub use berth_client::credentials::*;
