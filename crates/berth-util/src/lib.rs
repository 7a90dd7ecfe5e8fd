//! Small helpers that several berth crates need, kept in one place: the
//! wall clock as Unix seconds or milliseconds, RFC 3339 text for those
//! instants, percent-encoding of URL components, and the allocator's
//! return of memory. It depends on no other
//! berth crate, so any of them can use it.

mod clock;
pub mod memory;
pub mod percent;

pub use clock::{now, now_ms, parse_rfc3339_ms, rfc3339, rfc3339_ms};
