//! Locks every node on one database sees: the artifact cache holds one
//! while it fetches a piece of content from an upstream, so N nodes with
//! M clients each cause one upstream fetch. On PostgreSQL it is a
//! session advisory lock on a connection of a pool of its own (a fill may
//! take minutes and must not starve requests of connections); SQLite has
//! one node, whose own single flight is enough.

use async_trait::async_trait;
use sha2::{Digest as _, Sha256};

use crate::MetadataError;

#[async_trait]
pub trait ContentLocks: Send + Sync + 'static {
    /// Waits until this node holds `key`, held until the guard is
    /// released or dropped (or this process dies: the database then
    /// frees it).
    async fn lock(&self, key: &str) -> Result<ContentLock, MetadataError>;
}

/// A held lock. [`ContentLock::release`] frees it and keeps the
/// connection; dropping it closes the connection, which frees it too.
#[must_use]
pub struct ContentLock {
    held: Option<(sqlx::pool::PoolConnection<sqlx::Postgres>, i64)>,
}

impl ContentLock {
    /// A lock nobody else can contend for (one node).
    pub fn local() -> ContentLock {
        ContentLock { held: None }
    }

    pub async fn release(mut self) {
        if let Some((mut conn, key)) = self.held.take() {
            let unlocked = sqlx::query("SELECT pg_advisory_unlock($1)")
                .bind(key)
                .execute(&mut *conn)
                .await;
            if unlocked.is_err() {
                drop(conn.detach());
            }
        }
    }
}

impl Drop for ContentLock {
    fn drop(&mut self) {
        if let Some((conn, _)) = self.held.take() {
            // Never back into the pool still locked.
            drop(conn.detach());
        }
    }
}

/// The advisory-lock key of `key`: the first 8 bytes of its SHA-256.
fn lock_key(key: &str) -> i64 {
    let hash = Sha256::digest(key.as_bytes());
    let mut bytes = [0u8; 8];
    bytes.copy_from_slice(&hash[..8]);
    i64::from_be_bytes(bytes)
}

#[async_trait]
impl ContentLocks for crate::SqliteStore {
    async fn lock(&self, _key: &str) -> Result<ContentLock, MetadataError> {
        Ok(ContentLock::local())
    }
}

#[async_trait]
impl ContentLocks for crate::PostgresStore {
    async fn lock(&self, key: &str) -> Result<ContentLock, MetadataError> {
        let key = lock_key(key);
        let mut conn = self.lock_pool().acquire().await?;
        sqlx::query("SELECT pg_advisory_lock($1)")
            .bind(key)
            .execute(&mut *conn)
            .await?;
        Ok(ContentLock {
            held: Some((conn, key)),
        })
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn keys_are_stable_and_distinct() {
        assert_eq!(super::lock_key("a"), super::lock_key("a"));
        assert_ne!(super::lock_key("a"), super::lock_key("b"));
    }
}
