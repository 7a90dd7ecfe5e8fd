//! Opens the storage and metadata backends the configuration names: the
//! embedded pair (filesystem + SQLite) or the scale-out pair (an
//! S3-compatible bucket + PostgreSQL), or a mix.

use std::sync::Arc;

use anyhow::Context;
use berth_metadata::{AuthStore, EventStore, MetadataStore, PostgresStore, SqliteStore};
use berth_storage::{BlobStore, FilesystemStore, S3Config, S3Store};

use crate::config::Config;

pub struct Backends {
    pub blobs: Arc<dyn BlobStore>,
    pub metadata: Arc<dyn MetadataStore>,
    pub auth: Arc<dyn AuthStore>,
    pub events: Arc<dyn EventStore>,
    database: Database,
}

enum Database {
    Sqlite(SqliteStore),
    Postgres(PostgresStore),
}

impl Backends {
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
    std::fs::create_dir_all(&config.data_dir)
        .with_context(|| format!("cannot create data directory {}", config.data_dir.display()))?;
    let store = FilesystemStore::open(config.blob_dir()).with_context(|| {
        format!(
            "cannot open blob storage at {}",
            config.blob_dir().display()
        )
    })?;
    Ok(Arc::new(store))
}

pub async fn open(config: &Config) -> anyhow::Result<Backends> {
    // Always: the first owner password is written there, whatever the backends.
    std::fs::create_dir_all(&config.data_dir)
        .with_context(|| format!("cannot create data directory {}", config.data_dir.display()))?;
    let blobs = open_blob_store(config)?;
    let url = config.metadata_url();
    if config.shared_metadata() {
        let store = PostgresStore::connect(&url)
            .await
            .with_context(|| format!("cannot open metadata database {}", redact(&url)))?;
        return Ok(Backends {
            blobs,
            metadata: Arc::new(store.clone()),
            auth: Arc::new(store.clone()),
            events: Arc::new(store.clone()),
            database: Database::Postgres(store),
        });
    }
    let store = SqliteStore::connect(&url)
        .await
        .with_context(|| format!("cannot open metadata database {url}"))?;
    Ok(Backends {
        blobs,
        metadata: Arc::new(store.clone()),
        auth: Arc::new(store.clone()),
        events: Arc::new(store.clone()),
        database: Database::Sqlite(store),
    })
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
