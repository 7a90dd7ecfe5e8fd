//! Registry metadata: repositories, manifests, tags, per-repository blob
//! links, referrers and upload sessions.
//!
//! [`MetadataStore`] is the seam; [`sqlite`] is the embedded backend and
//! [`postgres`] the scale-out one. Both share one implementation of the SQL
//! (`sql/`, written in the dialect the two have in common) and one schema
//! (`migrations/sqlite`, translated for PostgreSQL by [`schema`]). Every
//! method is one transaction, so the registry layer never sees a
//! half-applied change.

use async_trait::async_trait;
use berth_types::{Algorithm, Backend, Digest, Fault, Reference, RepositoryName, Tag};

pub mod auth;
pub mod backup;
pub mod changes;
pub mod copy;
pub mod events;
pub mod locks;
pub mod postgres;
pub mod schema;
mod sql;
pub mod sqlite;

pub use auth::{
    Activity, ActivityRecord, AuthStore, CredentialRecord, FederatedCredentialRecord,
    IdentityRecord, RoleAssignmentRecord, RoleDefinitionRecord, ScopeMapRecord, SigningKeyRecord,
};
pub use changes::{CacheChange, ChangeFeed, ChangeSource, FeedEvent};
pub use events::{EventFilter, EventStore, HourlyCount, LoginEvent, RepositoryEvent};
pub use locks::{ContentLock, ContentLocks};
pub use postgres::PostgresStore;
pub use sqlite::SqliteStore;

#[derive(Debug, thiserror::Error)]
pub enum MetadataError {
    #[error("the manifest references blobs this repository does not have: {}", list(.0))]
    MissingBlobs(Vec<Digest>),
    #[error("the index references manifests this repository does not have: {}", list(.0))]
    MissingManifests(Vec<Digest>),
    #[error("the metadata database failed: {0}")]
    Database(#[from] sqlx::Error),
    #[error("the metadata database could not be migrated: {0}")]
    Migration(#[from] sqlx::migrate::MigrateError),
    #[error("{0} already exists")]
    AlreadyExists(String),
    #[error("the metadata database holds a value it cannot read back: {0}")]
    Corrupt(String),
}

impl MetadataError {
    /// How a client should hear of this failure (see [`Fault`]): the
    /// database cannot be reached, is shutting down or is overloaded
    /// (`Unavailable`), has no space left (`Full`), or something else went
    /// wrong (`Internal`).
    pub fn fault(&self) -> Fault {
        let MetadataError::Database(e) = self else {
            return Fault::Internal;
        };
        match e {
            sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::WorkerCrashed
            | sqlx::Error::Tls(_)
            | sqlx::Error::Protocol(_) => Fault::Unavailable(Backend::Metadata),
            sqlx::Error::Io(io) if berth_storage_full(io) => Fault::Full(Backend::Metadata),
            sqlx::Error::Io(_) => Fault::Unavailable(Backend::Metadata),
            sqlx::Error::Database(db) => {
                if let Some(sqlite) = db.try_downcast_ref::<sqlx::sqlite::SqliteError>() {
                    // Extended result codes: the primary code is the low byte.
                    let primary = sqlx::error::DatabaseError::code(sqlite)
                        .and_then(|c| c.parse::<i32>().ok())
                        .map(|c| c & 0xff);
                    return match primary {
                        // SQLITE_FULL (also ENOSPC on the WAL), SQLITE_IOERR
                        // whose cause is a full disk is reported as FULL too.
                        Some(13) => Fault::Full(Backend::Metadata),
                        // SQLITE_BUSY, SQLITE_LOCKED, SQLITE_CANTOPEN.
                        Some(5) | Some(6) | Some(14) => Fault::Unavailable(Backend::Metadata),
                        _ => Fault::Internal,
                    };
                }
                match db.code().as_deref() {
                    // PostgreSQL: disk_full; out of memory and too many
                    // connections; the connection-exception class and
                    // admin or crash shutdown.
                    Some("53100") => Fault::Full(Backend::Metadata),
                    Some("53200") | Some("53300") => Fault::Unavailable(Backend::Metadata),
                    Some(code) if code.starts_with("08") || code.starts_with("57P") => {
                        Fault::Unavailable(Backend::Metadata)
                    }
                    _ => Fault::Internal,
                }
            }
            _ => Fault::Internal,
        }
    }
}

/// Pool hook (`after_release`) of every read-write pool: a connection goes
/// back to the pool only if it is outside any transaction.
///
/// When a COMMIT fails (SQLite on a full disk rolls back by itself), sqlx
/// still counts the transaction as open and its ROLLBACK on drop fails too;
/// the connection's next `begin()` would then be a SAVEPOINT whose RELEASE
/// commits nothing, and every later write would be acknowledged and lost.
/// Such a connection is closed instead, and the pool opens a fresh one.
pub(crate) fn release_outside_transaction<'c, C: sqlx::Connection>(
    conn: &'c mut C,
    _: sqlx::pool::PoolConnectionMetadata,
) -> futures::future::BoxFuture<'c, Result<bool, sqlx::Error>> {
    Box::pin(async move { Ok(outside_transaction(conn)) })
}

/// [`release_outside_transaction`] for SQLite, whose connection runs on a
/// worker thread: the ping waits for the rollback a dropped transaction
/// queued there, so the depth read afterwards is settled.
pub(crate) fn release_sqlite_outside_transaction<'c>(
    conn: &'c mut sqlx::SqliteConnection,
    _: sqlx::pool::PoolConnectionMetadata,
) -> futures::future::BoxFuture<'c, Result<bool, sqlx::Error>> {
    Box::pin(async move {
        sqlx::Connection::ping(conn).await?;
        Ok(outside_transaction(conn))
    })
}

fn outside_transaction<C: sqlx::Connection>(conn: &C) -> bool {
    if conn.is_in_transaction() {
        tracing::warn!("a database connection was left inside a failed transaction; replacing it");
        return false;
    }
    true
}

fn berth_storage_full(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::StorageFull | std::io::ErrorKind::QuotaExceeded
    )
}

fn list(digests: &[Digest]) -> String {
    digests
        .iter()
        .map(|d| d.to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

/// A stored manifest, as served.
#[derive(Debug, Clone)]
pub struct ManifestRecord {
    pub digest: Digest,
    pub media_type: String,
    pub content: Vec<u8>,
}

/// Everything `put_manifest` records in one transaction.
#[derive(Debug, Clone)]
pub struct NewManifest<'a> {
    pub repository: &'a RepositoryName,
    pub digest: &'a Digest,
    pub media_type: &'a str,
    pub artifact_type: Option<&'a str>,
    pub subject: Option<&'a Digest>,
    /// The manifest's annotations as JSON, for referrers listings.
    pub annotations_json: Option<String>,
    pub content: &'a [u8],
    /// Config and layers that must be linked in the repository.
    pub blobs: Vec<Digest>,
    /// Every blob it names (required ones and non-distributable layers
    /// that happen to be stored): each is kept alive by this manifest.
    pub references: Vec<Digest>,
    /// Manifests (of an index) that must exist in the repository.
    pub children: Vec<Digest>,
    /// Tags pointed at it, all in the same transaction (none if it fails).
    pub tags: &'a [Tag],
    /// Accept it though some of `blobs` or `children` are not here (the
    /// registry's sparse-manifests setting); the references are recorded
    /// all the same, so content pushed later is kept alive by it.
    pub sparse: bool,
}

/// A manifest that names another as its `subject`.
#[derive(Debug, Clone)]
pub struct Referrer {
    pub digest: Digest,
    pub media_type: String,
    pub artifact_type: Option<String>,
    pub size: u64,
    pub annotations_json: Option<String>,
}

/// A manifest as the management API lists it.
#[derive(Debug, Clone)]
pub struct ManifestSummary {
    pub digest: Digest,
    pub media_type: String,
    pub artifact_type: Option<String>,
    pub size: u64,
    pub created_at: i64,
    pub tags: Vec<String>,
}

/// How [`MetadataStore::repository_summaries`] orders its page.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum RepositoryOrder {
    #[default]
    Name,
    /// Largest first.
    Size,
    /// Most recently pushed first; repositories without manifests last.
    LastPush,
}

/// A repository as the portal lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RepositorySummary {
    pub name: String,
    pub tags: u64,
    pub manifests: u64,
    /// Sum of the sizes of the blobs linked in the repository (each blob
    /// once) plus its manifests' own sizes.
    pub size: u64,
    /// Unix seconds of the newest manifest's push; `None` without manifests.
    pub last_push: Option<i64>,
}

/// One page of repositories and how many match in all.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RepositoryPage {
    pub total: u64,
    pub repositories: Vec<RepositorySummary>,
}

#[derive(Debug, Clone)]
pub struct UploadRecord {
    pub id: String,
    pub repository: String,
    pub offset: u64,
    /// What the session hashes with while its bytes stream in.
    pub algorithm: Algorithm,
    pub created_at: i64,
}

/// The blob records' count and bytes at the start of an hour.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StorageSample {
    /// Unix seconds of the hour's start.
    pub at: i64,
    pub blobs: u64,
    pub bytes: u64,
}

/// One garbage-collection run as recorded in the database (any node's).
#[derive(Debug, Clone, Default)]
pub struct GcRunRecord {
    pub id: i64,
    /// The node that ran it.
    pub holder: String,
    /// Unix milliseconds.
    pub started_at: i64,
    pub finished_at: Option<i64>,
    /// running | finished | failed
    pub state: String,
    pub examined: u64,
    pub blobs_deleted: u64,
    pub bytes_reclaimed: u64,
    pub uploads_purged: u64,
    pub storage_requests: u64,
    pub error: Option<String>,
}

#[async_trait]
pub trait MetadataStore: Send + Sync + 'static {
    /// Announces that the bytes of `digest` are about to be written:
    /// creates the global blob record or restarts its grace period, and
    /// queues it for the collector. `false` while the collector is deleting
    /// that blob (its bytes must not be written until it is gone).
    async fn claim_blob(&self, digest: &Digest, size: u64) -> Result<bool, MetadataError>;

    /// The cheapest round trip to the database (`/readyz`).
    async fn ping(&self) -> Result<(), MetadataError>;

    /// Records that `repository` holds blob `digest`, whose record must
    /// exist (see [`MetadataStore::claim_blob`]); `false` if it does not,
    /// or is being deleted.
    async fn link_blob(
        &self,
        repository: &RepositoryName,
        digest: &Digest,
    ) -> Result<bool, MetadataError>;

    /// The blob's size if `repository` links it.
    async fn linked_blob_size(
        &self,
        repository: &RepositoryName,
        digest: &Digest,
    ) -> Result<Option<u64>, MetadataError>;

    /// Removes a repository's link to a blob; `false` if there was none.
    async fn unlink_blob(
        &self,
        repository: &RepositoryName,
        digest: &Digest,
    ) -> Result<bool, MetadataError>;

    /// Stores a manifest (and moves its tag) after checking, in the same
    /// transaction, that everything it references is present.
    async fn put_manifest(&self, manifest: NewManifest<'_>) -> Result<(), MetadataError>;

    async fn get_manifest(
        &self,
        repository: &RepositoryName,
        reference: &Reference,
    ) -> Result<Option<ManifestRecord>, MetadataError>;

    /// Deletes a manifest and every tag pointing at it.
    async fn delete_manifest(
        &self,
        repository: &RepositoryName,
        digest: &Digest,
    ) -> Result<bool, MetadataError>;

    async fn delete_tag(
        &self,
        repository: &RepositoryName,
        tag: &Tag,
    ) -> Result<bool, MetadataError>;

    async fn repository_exists(&self, repository: &RepositoryName) -> Result<bool, MetadataError>;

    /// Every manifest of a repository with its tags, newest first.
    async fn list_manifests(
        &self,
        repository: &RepositoryName,
    ) -> Result<Vec<ManifestSummary>, MetadataError>;

    /// Deletes a repository with its manifests, tags and blob links;
    /// returns how many manifests it had.
    async fn delete_repository(&self, repository: &RepositoryName) -> Result<u64, MetadataError>;

    /// Tags in lexical order after `last`, at most `limit`; `None` if the
    /// repository is unknown.
    async fn list_tags(
        &self,
        repository: &RepositoryName,
        limit: u32,
        last: Option<&str>,
    ) -> Result<Option<Vec<String>>, MetadataError>;

    /// Repositories holding at least one manifest, in lexical order.
    async fn list_repositories(
        &self,
        limit: u32,
        last: Option<&str>,
    ) -> Result<Vec<String>, MetadataError>;

    /// Repositories whose name contains `search` (case-insensitive, taken
    /// literally: `%` and `_` are no wildcards; empty: all), ordered by
    /// `order` (ties by name), `limit` of them after skipping `offset`, with
    /// how many match in all. Every repository counts, also one holding only
    /// blobs (with no manifests, unlike [`MetadataStore::list_repositories`]).
    /// Two statements (the count and the page), whatever the number of
    /// repositories; the figures of a repository are read from its own rows
    /// only, and only for the page's repositories except what the order
    /// needs (sizes for [`RepositoryOrder::Size`], last pushes for
    /// [`RepositoryOrder::LastPush`]).
    async fn repository_summaries(
        &self,
        search: &str,
        order: RepositoryOrder,
        limit: u32,
        offset: u64,
    ) -> Result<RepositoryPage, MetadataError>;

    /// Records that manifests of `repository` were pulled at `at` (Unix
    /// seconds).
    async fn touch_manifests(
        &self,
        repository: &RepositoryName,
        digests: &[Digest],
        at: i64,
    ) -> Result<(), MetadataError>;

    /// Manifests last pulled (or, never pulled, stored) before `before`, in
    /// repository `target` or, for `prefix/*`, every repository below
    /// `prefix`; at most `limit`.
    async fn unused_manifests(
        &self,
        target: &str,
        before: i64,
        limit: u32,
    ) -> Result<Vec<(RepositoryName, Digest)>, MetadataError>;

    async fn referrers(
        &self,
        repository: &RepositoryName,
        subject: &Digest,
        artifact_type: Option<&str>,
    ) -> Result<Vec<Referrer>, MetadataError>;

    /// Records a new upload session that hashes with `algorithm`.
    async fn create_upload(
        &self,
        id: &str,
        repository: &RepositoryName,
        algorithm: Algorithm,
    ) -> Result<(), MetadataError>;

    async fn get_upload(&self, id: &str) -> Result<Option<UploadRecord>, MetadataError>;

    /// Records the durable length of an upload.
    async fn set_upload_offset(&self, id: &str, offset: u64) -> Result<(), MetadataError>;

    async fn delete_upload(&self, id: &str) -> Result<bool, MetadataError>;

    /// Upload sessions untouched since `before` (unix seconds).
    async fn stale_uploads(&self, before: i64) -> Result<Vec<String>, MetadataError>;

    // --- Garbage collection. Blobs whose references may have dropped
    // (new uploads, unlinks, deleted manifests and repositories) are queued
    // as candidates, so a run costs what changed, not the store's size.

    /// Takes or renews the collector lease for `ttl` seconds; `false` if
    /// another node holds it.
    async fn acquire_gc_lease(&self, holder: &str, ttl: i64) -> Result<bool, MetadataError>;

    async fn release_gc_lease(&self, holder: &str) -> Result<(), MetadataError>;

    /// Queued candidates after `after` (digest order) whose grace period has
    /// passed (`last linked < before`), at most `limit`.
    async fn gc_candidates(
        &self,
        before: i64,
        after: Option<&str>,
        limit: u32,
    ) -> Result<Vec<Digest>, MetadataError>;

    /// How many candidates are queued.
    async fn gc_queue_length(&self) -> Result<u64, MetadataError>;

    /// In one transaction: if the blob is still unreferenced and unlinked
    /// since `before`, marks it as being deleted, removes its repository
    /// links and returns its size; the candidate leaves the queue unless its
    /// grace period has not passed. A manifest or link racing with this
    /// either sees the blob (and it stays) or sees it gone.
    async fn mark_blob_deleting(
        &self,
        digest: &Digest,
        before: i64,
    ) -> Result<Option<u64>, MetadataError>;

    /// Blobs marked as being deleted by a run that did not finish.
    async fn blobs_being_deleted(&self, limit: u32) -> Result<Vec<(Digest, u64)>, MetadataError>;

    /// Removes the record of a blob whose bytes are gone.
    async fn forget_blob(&self, digest: &Digest) -> Result<(), MetadataError>;

    async fn start_gc_run(&self, holder: &str) -> Result<i64, MetadataError>;

    /// Records a run's progress (and, with `state` other than running, its end).
    async fn update_gc_run(&self, run: &GcRunRecord) -> Result<(), MetadataError>;

    /// The latest runs, newest first.
    async fn gc_runs(&self, limit: u32) -> Result<Vec<GcRunRecord>, MetadataError>;

    /// Samples the blob records' count and bytes as the hour of `at` (unix
    /// seconds), unless that hour has its sample already (from this node or
    /// another): `true` when this call took it.
    async fn sample_storage(&self, at: i64) -> Result<bool, MetadataError>;

    /// The samples from the hour of `since` on, oldest first.
    async fn storage_samples(&self, since: i64) -> Result<Vec<StorageSample>, MetadataError>;
}
