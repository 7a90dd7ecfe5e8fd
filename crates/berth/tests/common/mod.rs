//! Shared helpers for berth's integration tests, one module per job:
//!
//! - [`server`]: a real `berth serve` process per test (start, kill -9,
//!   graceful stop, restart on the same data directory);
//! - [`api`]: HTTP clients for the distribution and management APIs;
//! - [`assertions`]: status and error-envelope checks on responses;
//! - [`cli`]: `berth` run as a command on the host;
//! - [`content`]: media types, digests, deterministic bytes, manifests;
//! - [`images`]: whole images pushed and pulled back, store snapshots;
//! - [`store`]: what a server has stored, read from outside it;
//! - [`scale_out`]: the PostgreSQL database and S3 prefix of a scale-out
//!   server;
//! - [`raw_http`]: a hand-written HTTP/1.1 client for the requests a URL
//!   library would refuse or normalise away.
//!
//! Everything is re-exported here, so a test file needs only
//! `use common::*;`. Every test binary includes this module and uses a
//! different subset of it.
//!
//! With `BERTH_TEST_SCALE_OUT=1` every server runs on the scale-out
//! backends instead of the embedded ones: a fresh PostgreSQL database and a
//! fresh key prefix in the S3 bucket per data directory (so a restart finds
//! its data again), on the engines named by the `BERTH_TEST_POSTGRES_*` and
//! `BERTH_TEST_S3_*` variables (`scripts/test.sh` starts them and runs the
//! API suites both ways).
#![allow(dead_code)]

mod api;
mod assertions;
mod cli;
mod content;
mod images;
mod raw_http;
mod scale_out;
mod server;
mod store;

// Each test binary uses a different subset, so some of these go unused in
// every one of them.
#[allow(unused_imports)]
pub use self::{
    api::*, assertions::*, cli::*, content::*, images::*, raw_http::*, scale_out::*, server::*,
    store::*,
};
