//! SQLite backend (the embedded default). One writer connection serialises
//! every change, so check-then-write transactions need no retry loop and
//! never see `SQLITE_BUSY`; a small pool of read-only connections serves
//! lookups concurrently (WAL mode).

use std::str::FromStr;
use std::time::Duration;

use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::SqlitePool;

use berth_util::now;

use crate::MetadataError;

const READERS: u32 = 8;
/// Page cache of each reader connection (the writer keeps SQLite's 2 MiB).
const READER_CACHE_KIB: u32 = 256;

#[derive(Debug, Clone)]
pub struct SqliteStore {
    writer: SqlitePool,
    reader: SqlitePool,
}

impl SqliteStore {
    /// Opens (creating and migrating if needed) the database at `url`
    /// (`sqlite://path/berth.db`).
    pub async fn connect(url: &str) -> Result<Self, MetadataError> {
        let options = SqliteConnectOptions::from_str(url)?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            // FULL: a commit is on disk before the client hears about it.
            .synchronous(SqliteSynchronous::Full)
            .foreign_keys(true)
            .busy_timeout(Duration::from_secs(10));
        let writer = SqlitePoolOptions::new()
            .max_connections(1)
            .after_release(crate::release_sqlite_outside_transaction)
            .connect_with(options.clone())
            .await?;
        crate::schema::sqlite_migrator().run(&writer).await?;
        // Readers keep a small page cache each: what they read is mostly
        // cached above them (manifests, tags) and in the OS page cache
        // below, and SQLite's default (2 MiB per connection) across eight
        // of them grew RSS for minutes as the database grew.
        let reader = SqlitePoolOptions::new()
            .max_connections(READERS)
            .connect_with(
                options
                    .read_only(true)
                    .pragma("cache_size", format!("-{READER_CACHE_KIB}")),
            )
            .await?;
        Ok(SqliteStore { writer, reader })
    }

    pub async fn close(&self) {
        self.reader.close().await;
        self.writer.close().await;
    }

    /// One writer serialises transactions: no row locks needed.
    const ROW_LOCK: &'static str = "";

    /// The pool that sees every committed change (for `berth migrate`).
    pub fn pool(&self) -> &SqlitePool {
        &self.writer
    }

    /// One node: its writes invalidate its cache directly, so nothing is
    /// announced.
    pub(crate) async fn announce(
        _tx: &mut sqlx::Transaction<'_, sqlx::Sqlite>,
        _change: &crate::CacheChange,
    ) -> Result<(), MetadataError> {
        Ok(())
    }

    async fn write_upload_offset(&self, id: &str, offset: u64) -> Result<(), MetadataError> {
        // An upload's length has the durability of its chunks: it survives
        // a process crash, not a power loss (see docs/decisions.md). So this
        // commit skips the WAL fsync (`synchronous=NORMAL` for this one
        // statement); the next FULL commit makes it durable anyway.
        let mut conn = self.writer.acquire().await?;
        sqlx::query("PRAGMA synchronous = NORMAL")
            .execute(&mut *conn)
            .await?;
        let updated = sqlx::query("UPDATE uploads SET length = $1, updated_at = $2 WHERE id = $3")
            .bind(offset as i64)
            .bind(now())
            .bind(id)
            .execute(&mut *conn)
            .await;
        let restored = sqlx::query("PRAGMA synchronous = FULL")
            .execute(&mut *conn)
            .await;
        if restored.is_err() {
            // Never hand a connection that skips fsyncs back to the pool.
            conn.detach();
        }
        updated?;
        restored?;
        Ok(())
    }
}

crate::sql::registry::impl_metadata_store!(SqliteStore, sqlx::Sqlite);
crate::sql::auth::impl_auth_store!(SqliteStore, sqlx::Sqlite);
crate::sql::events::impl_event_store!(SqliteStore);
