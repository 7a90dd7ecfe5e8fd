//! PostgreSQL backend, for several stateless nodes sharing one database.
//! The statements are the ones SQLite runs (`sql/`); what differs is the
//! pool: one pool of read-write connections serves everything, and
//! PostgreSQL's row locks order concurrent changes from different nodes
//! (see the comments in `sql/registry.rs` on how a manifest push and the
//! collector meet on a blob's row).

use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::postgres::{PgConnectOptions, PgListener, PgPoolOptions};
use sqlx::PgPool;

use berth_util::now;

use crate::changes::{decode_notification, CacheChange, ChangeFeed, ChangeSource, FeedEvent};
use crate::MetadataError;

/// The sequence every announced change takes its generation from.
const GENERATION_SEQUENCE: &str = "berth_cache_generation";

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
        ensure_generation_sequence(&pool).await?;
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

    /// Tells the other nodes' caches what this transaction changed: a
    /// `NOTIFY`, delivered when (and only if) it commits.
    pub(crate) async fn announce(
        tx: &mut sqlx::Transaction<'_, sqlx::Postgres>,
        change: &CacheChange,
    ) -> Result<(), MetadataError> {
        sqlx::query(&format!(
            "SELECT pg_notify($1, nextval('{GENERATION_SEQUENCE}')::text || chr(9) || $2)"
        ))
        .bind(crate::changes::CHANNEL)
        .bind(change.encode())
        .execute(&mut **tx)
        .await?;
        Ok(())
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

/// Several nodes may start at once: `IF NOT EXISTS` still lets two
/// creations race, and the loser's error is no error.
async fn ensure_generation_sequence(pool: &PgPool) -> Result<(), MetadataError> {
    let create = format!("CREATE SEQUENCE IF NOT EXISTS {GENERATION_SEQUENCE}");
    if let Err(e) = sqlx::query(&create).execute(pool).await {
        let exists: Option<String> =
            sqlx::query_scalar("SELECT relname::text FROM pg_class WHERE relname = $1")
                .bind(GENERATION_SEQUENCE)
                .fetch_optional(pool)
                .await?;
        if exists.is_none() {
            return Err(e.into());
        }
    }
    Ok(())
}

/// [`ChangeFeed`] over `LISTEN`; a lost connection is reported as
/// [`FeedEvent::Lost`].
pub struct PgChangeFeed {
    listener: PgListener,
}

#[async_trait]
impl ChangeFeed for PgChangeFeed {
    async fn next(&mut self) -> Result<FeedEvent, MetadataError> {
        Ok(match self.listener.try_recv().await? {
            Some(notification) => decode_notification(notification.payload()),
            None => FeedEvent::Lost,
        })
    }
}

#[async_trait]
impl ChangeSource for PostgresStore {
    /// `LISTEN` on a connection of its own.
    async fn feed(&self) -> Result<Box<dyn ChangeFeed>, MetadataError> {
        let mut listener = PgListener::connect_with(&self.writer).await?;
        // A lost connection is reported at once (not after a reconnect
        // attempt that may wait for the pool): the follower turns its
        // cache off and opens a new feed.
        listener.eager_reconnect(false);
        listener.listen(crate::changes::CHANNEL).await?;
        Ok(Box::new(PgChangeFeed { listener }))
    }

    async fn generation(&self) -> Result<u64, MetadataError> {
        let (last, called): (i64, bool) = sqlx::query_as(&format!(
            "SELECT last_value, is_called FROM {GENERATION_SEQUENCE}"
        ))
        .fetch_one(&self.reader)
        .await?;
        Ok(if called { last as u64 } else { 0 })
    }
}

crate::sql::registry::impl_metadata_store!(PostgresStore, sqlx::Postgres);
crate::sql::auth::impl_auth_store!(PostgresStore, sqlx::Postgres);
crate::sql::events::impl_event_store!(PostgresStore);
