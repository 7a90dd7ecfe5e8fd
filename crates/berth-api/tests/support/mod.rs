//! The in-process test harness: berth's HTTP application — the same state
//! and middleware stack `berth serve` runs (audit → network → route → auth
//! → handler), assembled by `berth_api::app` — on the embedded backends (a
//! filesystem blob store and SQLite in a temporary directory), driven with
//! `tower::ServiceExt::oneshot` instead of a socket.
//!
//! - [`app`]: [`TestApp`], the application and its owner identity;
//! - [`http`]: requests ([`TestRequest`]: headers, bodies, credentials,
//!   peer address, endpoint) and collected responses ([`TestResponse`]),
//!   with [`expect_status`] and [`expect_error`] for the spec's error
//!   envelope;
//! - [`registry`]: distribution-API steps (push a blob, upload in chunks,
//!   push and pull manifests, list tags);
//! - [`manage`]: management-API steps with the contract's types;
//! - [`oci`]: content and OCI fixtures;
//! - [`disk`]: what the filesystem store holds.
//!
//! Every test binary includes this module and uses a different subset.
#![allow(dead_code, unused_imports)]

pub mod app;
pub mod disk;
pub mod http;
pub mod manage;
pub mod oci;
pub mod registry;

pub use app::*;
pub use disk::*;
pub use http::*;
pub use oci::*;
pub use registry::*;
