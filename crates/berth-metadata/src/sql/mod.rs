//! The SQL both backends run, written once. Each file defines a macro that
//! implements one store trait for a backend's store type; `sqlite.rs` and
//! `postgres.rs` invoke them. The statements use the dialect SQLite and
//! PostgreSQL share: `$n` placeholders, `ON CONFLICT .. DO`, `RETURNING`,
//! `CAST($n AS TEXT) IS NULL` for optional filters, flags as 0/1 integers.
//! A store type provides `writer` and `reader` pools and
//! `write_upload_offset` (the one statement whose durability differs).

pub(crate) mod auth;
pub(crate) mod events;
pub(crate) mod registry;
