//! Opens the storage and metadata backends the configuration names: the
//! embedded pair (filesystem + SQLite) or the scale-out pair (an
//! S3-compatible bucket + PostgreSQL), or a mix.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use berth_metadata::{
    AuthStore, ContentLocks, EventStore, MetadataStore, PostgresStore, SqliteStore,
};
use berth_storage::{BlobStore, FilesystemStore, S3Config, S3Store};

use crate::config::Config;

pub struct Backends {
    pub blobs: Arc<dyn BlobStore>,
    pub metadata: Arc<dyn MetadataStore>,
    pub auth: Arc<dyn AuthStore>,
    pub events: Arc<dyn EventStore>,
    pub locks: Arc<dyn ContentLocks>,
    database: Database,
}

enum Database {
    Sqlite(SqliteStore),
    Postgres(PostgresStore),
}

impl Backends {
    /// The stores, for the application.
    pub fn stores(&self) -> berth_api::app::Stores {
        berth_api::app::Stores {
            blobs: self.blobs.clone(),
            metadata: self.metadata.clone(),
            auth: self.auth.clone(),
            events: self.events.clone(),
            locks: self.locks.clone(),
        }
    }

    /// Where other nodes' changes are announced: PostgreSQL (scale-out);
    /// none for SQLite, whose only writer is this node.
    pub fn change_source(&self) -> Option<Arc<dyn berth_metadata::ChangeSource>> {
        match &self.database {
            Database::Sqlite(_) => None,
            Database::Postgres(p) => Some(Arc::new(p.clone())),
        }
    }

    /// Closes the database connections (SQLite checkpoints its log).
    pub async fn close(&self) {
        match &self.database {
            Database::Sqlite(s) => s.close().await,
            Database::Postgres(p) => p.close().await,
        }
    }
}

pub fn open_blob_store(config: &Config) -> anyhow::Result<Arc<dyn BlobStore>> {
    let storage = &config.storage;
    if storage.kind == "s3" {
        let s3 = S3Config {
            bucket: storage.bucket.clone().unwrap_or_default(),
            endpoint: storage.endpoint.clone(),
            region: storage.region.clone().unwrap_or_else(|| "us-east-1".into()),
            access_key_id: storage.access_key_id.clone(),
            secret_access_key: storage.secret_access_key.clone(),
            prefix: storage.prefix.clone().unwrap_or_default(),
        };
        let store = S3Store::new(&s3).with_context(|| {
            format!(
                "cannot configure S3 storage (bucket {}, endpoint {})",
                s3.bucket,
                s3.endpoint.as_deref().unwrap_or("AWS")
            )
        })?;
        return Ok(Arc::new(store));
    }
    crate::datadir::create_private_dir(&config.data_dir)?;
    let store = FilesystemStore::open(config.blob_dir()).with_context(|| {
        format!(
            "cannot open blob storage at {}",
            config.blob_dir().display()
        )
    })?;
    Ok(Arc::new(store))
}

/// How long startup waits for a configured backend to answer.
const STARTUP_PROBE: Duration = Duration::from_secs(5);

pub async fn open(config: &Config) -> anyhow::Result<Backends> {
    // Always: the first owner password is written there, whatever the backends.
    crate::datadir::create_private_dir(&config.data_dir)?;
    let blobs = open_blob_store(config)?;
    if config.storage.kind == "s3" {
        probe_object_store(config, blobs.as_ref()).await?;
    }
    let url = config.metadata_url();
    if config.shared_metadata() {
        let store = connect_postgres(&url).await?;
        return Ok(Backends {
            blobs,
            metadata: Arc::new(store.clone()),
            auth: Arc::new(store.clone()),
            events: Arc::new(store.clone()),
            locks: Arc::new(store.clone()),
            database: Database::Postgres(store),
        });
    }
    if config.metadata.url.is_none() {
        // SQLite gives its -wal and -shm files the database file's mode.
        crate::datadir::precreate_database(&config.data_dir)?;
    }
    let store = SqliteStore::connect(&url)
        .await
        .with_context(|| format!("cannot open metadata database {url}"))?;
    crate::datadir::secure_modes(&config.data_dir)?;
    Ok(Backends {
        blobs,
        metadata: Arc::new(store.clone()),
        auth: Arc::new(store.clone()),
        events: Arc::new(store.clone()),
        locks: Arc::new(store.clone()),
        database: Database::Sqlite(store),
    })
}

/// A request for a key that is never stored: NotFound means the bucket
/// answered; anything else (refused, timed out, denied) stops the start.
async fn probe_object_store(config: &Config, blobs: &dyn BlobStore) -> anyhow::Result<()> {
    let endpoint = config.storage.endpoint.as_deref().unwrap_or("AWS S3");
    let bucket = config.storage.bucket.as_deref().unwrap_or_default();
    let probe = berth_types::Digest::sha256_of(b"berth startup probe: never stored");
    match tokio::time::timeout(STARTUP_PROBE, blobs.blob_size(&probe)).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => Err(anyhow::anyhow!(
            "cannot reach the object store at {endpoint} (bucket {bucket}): {e}"
        )),
        Err(_) => Err(anyhow::anyhow!(
            "cannot reach the object store at {endpoint} (bucket {bucket}): no answer within {}s",
            STARTUP_PROBE.as_secs()
        )),
    }
}

/// Connects to PostgreSQL, failing within seconds when it cannot be
/// reached: the pool would retry an unreachable server for its whole
/// acquire timeout, so a TCP probe first names the cause (refused,
/// unresolvable, no answer). The connect itself is not cut short: it runs
/// the schema migrations, which may take their time.
async fn connect_postgres(url: &str) -> anyhow::Result<PostgresStore> {
    let shown = redact(url);
    if let Ok(parsed) = url::Url::parse(url) {
        // A host-less URL uses a Unix socket: nothing to probe.
        if let Some(host) = parsed.host_str().filter(|h| !h.is_empty()) {
            let host = host.trim_start_matches('[').trim_end_matches(']');
            let port = parsed.port().unwrap_or(5432);
            match tokio::time::timeout(STARTUP_PROBE, tokio::net::TcpStream::connect((host, port)))
                .await
            {
                Ok(Ok(_)) => {}
                Ok(Err(e)) => anyhow::bail!("cannot reach the metadata database at {shown}: {e}"),
                Err(_) => anyhow::bail!(
                    "cannot reach the metadata database at {shown}: no answer within {}s",
                    STARTUP_PROBE.as_secs()
                ),
            }
        }
    }
    PostgresStore::connect(url)
        .await
        .with_context(|| format!("cannot open metadata database {shown}"))
}

/// The storage backend, for the startup log and `config check`.
pub fn describe_storage(config: &Config) -> String {
    let s = &config.storage;
    if s.kind == "s3" {
        format!(
            "s3 bucket {} at {}{}",
            s.bucket.as_deref().unwrap_or_default(),
            s.endpoint.as_deref().unwrap_or("AWS S3"),
            s.prefix
                .as_deref()
                .filter(|p| !p.is_empty())
                .map(|p| format!(" (prefix {p})"))
                .unwrap_or_default()
        )
    } else {
        format!("filesystem {}", config.blob_dir().display())
    }
}

/// The metadata backend, password redacted.
pub fn describe_metadata(config: &Config) -> String {
    let url = config.metadata_url();
    if config.shared_metadata() {
        format!("postgres {}", redact(&url))
    } else {
        format!("sqlite {}", url.trim_start_matches("sqlite://"))
    }
}

/// A database URL without its password, for messages.
pub fn redact(raw: &str) -> String {
    match url::Url::parse(raw) {
        Ok(mut parsed) if parsed.password().is_some() => {
            let _ = parsed.set_password(Some("***"));
            parsed.to_string()
        }
        _ => raw.to_string(),
    }
}

/// This node's name in collector records.
pub fn node_id(config: &Config) -> String {
    config.server.node_id.clone().unwrap_or_else(|| {
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().to_string())
            .unwrap_or_else(|_| "node".into());
        format!("{host}-{}", std::process::id())
    })
}

#[cfg(test)]
mod tests {
    use super::redact;

    #[test]
    fn database_passwords_never_reach_messages() {
        assert_eq!(
            redact("postgres://berth:s3cret@127.0.0.1:5432/berth"),
            "postgres://berth:***@127.0.0.1:5432/berth"
        );
        assert_eq!(redact("sqlite:///srv/berth.db"), "sqlite:///srv/berth.db");
    }
}
