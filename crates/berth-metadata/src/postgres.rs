//! PostgreSQL backend, for several stateless nodes sharing one database.
//! The statements are the ones SQLite runs (`sql/`); what differs is the
//! pool: one pool of read-write connections serves everything, and
//! PostgreSQL's row locks order concurrent changes from different nodes
//! (see the comments in `sql/registry.rs` on how a manifest push and the
//! collector meet on a blob's row).

use std::str::FromStr;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::PgPool;

use berth_util::now;

use crate::MetadataError;

const CONNECTIONS: u32 = 16;

/// How long a request waits for a connection before it is answered `503`:
/// short, so an outage fails requests fast instead of holding them.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(3);

#[derive(Debug, Clone)]
pub struct PostgresStore {
    writer: PgPool,
    /// The same pool: every connection reads what is committed.
    reader: PgPool,
    /// Connections that hold the artifact cache's fill locks
    /// ([`crate::ContentLocks`]), opened when first needed.
    locks: PgPool,
}

/// Fill locks held (or waited for) at once on one node; past that, a fill
/// waits up to [`ACQUIRE_TIMEOUT`] and then goes ahead unlocked.
const LOCK_CONNECTIONS: u32 = 64;

impl PostgresStore {
    /// Connects to `url` (`postgres://user:password@host:port/database`)
    /// and migrates the schema; several nodes may do this at once (the
    /// migrator takes an advisory lock).
    pub async fn connect(url: &str) -> Result<Self, MetadataError> {
        let options = PgConnectOptions::from_str(url)?;
        let pool = PgPoolOptions::new()
            .max_connections(CONNECTIONS)
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .after_release(crate::release_outside_transaction)
            .connect_with(options.clone())
            .await?;
        crate::schema::postgres_migrator().run(&pool).await?;
        let locks = PgPoolOptions::new()
            .max_connections(LOCK_CONNECTIONS)
            .min_connections(0)
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .idle_timeout(Duration::from_secs(60))
            .connect_lazy_with(options);
        Ok(PostgresStore {
            writer: pool.clone(),
            reader: pool,
            locks,
        })
    }

    pub async fn close(&self) {
        self.locks.close().await;
        self.writer.close().await;
    }

    /// Locks the selected rows until the transaction ends.
    const ROW_LOCK: &'static str = " FOR UPDATE";

    pub fn pool(&self) -> &PgPool {
        &self.writer
    }

    pub(crate) fn lock_pool(&self) -> &PgPool {
        &self.locks
    }

    async fn write_upload_offset(&self, id: &str, offset: u64) -> Result<(), MetadataError> {
        sqlx::query("UPDATE uploads SET length = $1, updated_at = $2 WHERE id = $3")
            .bind(offset as i64)
            .bind(now())
            .bind(id)
            .execute(&self.writer)
            .await?;
        Ok(())
    }
}

crate::sql::registry::impl_metadata_store!(PostgresStore, sqlx::Postgres);
crate::sql::auth::impl_auth_store!(PostgresStore, sqlx::Postgres);
crate::sql::events::impl_event_store!(PostgresStore);
