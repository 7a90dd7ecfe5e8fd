//! SQLite backend (the embedded default). One writer connection serialises
//! every change, so check-then-write transactions need no retry loop and
//! never see `SQLITE_BUSY`; a small pool of read-only connections serves
//! lookups concurrently (WAL mode).

use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use berth_types::{Digest, Reference, RepositoryName, Tag};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteRow, SqliteSynchronous,
};
use sqlx::{Row, Sqlite, SqlitePool, Transaction};

use crate::{
    now, ManifestRecord, ManifestSummary, MetadataError, MetadataStore, NewManifest, Referrer,
    UploadRecord,
};

mod auth;
mod events;

const READERS: u32 = 8;

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
            .connect_with(options.clone())
            .await?;
        sqlx::migrate!("./migrations/sqlite").run(&writer).await?;
        let reader = SqlitePoolOptions::new()
            .max_connections(READERS)
            .connect_with(options.read_only(true))
            .await?;
        Ok(SqliteStore { writer, reader })
    }

    pub async fn close(&self) {
        self.reader.close().await;
        self.writer.close().await;
    }
}

fn digest_of(row: &SqliteRow, column: &str) -> Result<Digest, MetadataError> {
    let raw: String = row.try_get(column)?;
    raw.parse()
        .map_err(|e| MetadataError::Corrupt(format!("{column} '{raw}': {e}")))
}

async fn ensure_repository(
    tx: &mut Transaction<'_, Sqlite>,
    repository: &RepositoryName,
) -> Result<i64, MetadataError> {
    sqlx::query(
        "INSERT INTO repositories (name, created_at) VALUES (?, ?) ON CONFLICT (name) DO NOTHING",
    )
    .bind(repository.as_str())
    .bind(now())
    .execute(&mut **tx)
    .await?;
    let id: i64 = sqlx::query_scalar("SELECT id FROM repositories WHERE name = ?")
        .bind(repository.as_str())
        .fetch_one(&mut **tx)
        .await?;
    Ok(id)
}

async fn repository_id(
    pool: &SqlitePool,
    repository: &RepositoryName,
) -> Result<Option<i64>, MetadataError> {
    Ok(
        sqlx::query_scalar("SELECT id FROM repositories WHERE name = ?")
            .bind(repository.as_str())
            .fetch_optional(pool)
            .await?,
    )
}

#[async_trait]
impl MetadataStore for SqliteStore {
    async fn link_blob(
        &self,
        repository: &RepositoryName,
        digest: &Digest,
        size: u64,
    ) -> Result<(), MetadataError> {
        let now = now();
        let mut tx = self.writer.begin().await?;
        let repo = ensure_repository(&mut tx, repository).await?;
        sqlx::query(
            "INSERT INTO blobs (digest, size, created_at, last_linked_at) VALUES (?, ?, ?, ?)
             ON CONFLICT (digest) DO UPDATE SET last_linked_at = excluded.last_linked_at",
        )
        .bind(digest.to_string())
        .bind(size as i64)
        .bind(now)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "INSERT INTO repository_blobs (repository_id, digest, linked_at) VALUES (?, ?, ?)
             ON CONFLICT (repository_id, digest) DO UPDATE SET linked_at = excluded.linked_at",
        )
        .bind(repo)
        .bind(digest.to_string())
        .bind(now)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn linked_blob_size(
        &self,
        repository: &RepositoryName,
        digest: &Digest,
    ) -> Result<Option<u64>, MetadataError> {
        let size: Option<i64> = sqlx::query_scalar(
            "SELECT b.size FROM repository_blobs rb
             JOIN repositories r ON r.id = rb.repository_id
             JOIN blobs b ON b.digest = rb.digest
             WHERE r.name = ? AND rb.digest = ?",
        )
        .bind(repository.as_str())
        .bind(digest.to_string())
        .fetch_optional(&self.reader)
        .await?;
        Ok(size.map(|s| s as u64))
    }

    async fn unlink_blob(
        &self,
        repository: &RepositoryName,
        digest: &Digest,
    ) -> Result<bool, MetadataError> {
        let done = sqlx::query(
            "DELETE FROM repository_blobs
             WHERE repository_id = (SELECT id FROM repositories WHERE name = ?) AND digest = ?",
        )
        .bind(repository.as_str())
        .bind(digest.to_string())
        .execute(&self.writer)
        .await?;
        Ok(done.rows_affected() > 0)
    }

    async fn put_manifest(&self, m: NewManifest<'_>) -> Result<(), MetadataError> {
        let now = now();
        let mut tx = self.writer.begin().await?;
        let repo = ensure_repository(&mut tx, m.repository).await?;

        let mut missing = Vec::new();
        for blob in &m.blobs {
            let linked: Option<i64> = sqlx::query_scalar(
                "SELECT 1 FROM repository_blobs WHERE repository_id = ? AND digest = ?",
            )
            .bind(repo)
            .bind(blob.to_string())
            .fetch_optional(&mut *tx)
            .await?;
            if linked.is_none() && !missing.contains(blob) {
                missing.push(blob.clone());
            }
        }
        if !missing.is_empty() {
            return Err(MetadataError::MissingBlobs(missing));
        }
        for child in &m.children {
            let present: Option<i64> = sqlx::query_scalar(
                "SELECT 1 FROM manifests WHERE repository_id = ? AND digest = ?",
            )
            .bind(repo)
            .bind(child.to_string())
            .fetch_optional(&mut *tx)
            .await?;
            if present.is_none() && !missing.contains(child) {
                missing.push(child.clone());
            }
        }
        if !missing.is_empty() {
            return Err(MetadataError::MissingManifests(missing));
        }

        let digest = m.digest.to_string();
        sqlx::query(
            "INSERT INTO manifests (repository_id, digest, media_type, artifact_type, subject_digest,
                                    annotations, size, content, created_at)
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
             ON CONFLICT (repository_id, digest) DO NOTHING",
        )
        .bind(repo)
        .bind(&digest)
        .bind(m.media_type)
        .bind(m.artifact_type)
        .bind(m.subject.map(|s| s.to_string()))
        .bind(&m.annotations_json)
        .bind(m.content.len() as i64)
        .bind(m.content)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        for blob in m.blobs.iter().chain(&m.references) {
            sqlx::query(
                "INSERT INTO manifest_blobs (repository_id, manifest_digest, blob_digest)
                 VALUES (?, ?, ?) ON CONFLICT DO NOTHING",
            )
            .bind(repo)
            .bind(&digest)
            .bind(blob.to_string())
            .execute(&mut *tx)
            .await?;
        }
        for child in &m.children {
            sqlx::query(
                "INSERT INTO manifest_children (repository_id, manifest_digest, child_digest)
                 VALUES (?, ?, ?) ON CONFLICT DO NOTHING",
            )
            .bind(repo)
            .bind(&digest)
            .bind(child.to_string())
            .execute(&mut *tx)
            .await?;
        }
        if let Some(tag) = m.tag {
            sqlx::query(
                "INSERT INTO tags (repository_id, name, manifest_digest, updated_at) VALUES (?, ?, ?, ?)
                 ON CONFLICT (repository_id, name)
                 DO UPDATE SET manifest_digest = excluded.manifest_digest, updated_at = excluded.updated_at",
            )
            .bind(repo)
            .bind(tag.as_str())
            .bind(&digest)
            .bind(now)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn get_manifest(
        &self,
        repository: &RepositoryName,
        reference: &Reference,
    ) -> Result<Option<ManifestRecord>, MetadataError> {
        let row = match reference {
            Reference::Tag(tag) => {
                sqlx::query(
                    "SELECT m.digest, m.media_type, m.content FROM tags t
                     JOIN repositories r ON r.id = t.repository_id
                     JOIN manifests m ON m.repository_id = t.repository_id AND m.digest = t.manifest_digest
                     WHERE r.name = ? AND t.name = ?",
                )
                .bind(repository.as_str())
                .bind(tag.as_str())
                .fetch_optional(&self.reader)
                .await?
            }
            Reference::Digest(digest) => {
                sqlx::query(
                    "SELECT m.digest, m.media_type, m.content FROM manifests m
                     JOIN repositories r ON r.id = m.repository_id
                     WHERE r.name = ? AND m.digest = ?",
                )
                .bind(repository.as_str())
                .bind(digest.to_string())
                .fetch_optional(&self.reader)
                .await?
            }
        };
        row.map(|row| {
            Ok(ManifestRecord {
                digest: digest_of(&row, "digest")?,
                media_type: row.try_get("media_type")?,
                content: row.try_get("content")?,
            })
        })
        .transpose()
    }

    async fn delete_manifest(
        &self,
        repository: &RepositoryName,
        digest: &Digest,
    ) -> Result<bool, MetadataError> {
        let done = sqlx::query(
            "DELETE FROM manifests
             WHERE repository_id = (SELECT id FROM repositories WHERE name = ?) AND digest = ?",
        )
        .bind(repository.as_str())
        .bind(digest.to_string())
        .execute(&self.writer)
        .await?;
        Ok(done.rows_affected() > 0)
    }

    async fn delete_tag(
        &self,
        repository: &RepositoryName,
        tag: &Tag,
    ) -> Result<bool, MetadataError> {
        let done = sqlx::query(
            "DELETE FROM tags
             WHERE repository_id = (SELECT id FROM repositories WHERE name = ?) AND name = ?",
        )
        .bind(repository.as_str())
        .bind(tag.as_str())
        .execute(&self.writer)
        .await?;
        Ok(done.rows_affected() > 0)
    }

    async fn repository_exists(&self, repository: &RepositoryName) -> Result<bool, MetadataError> {
        Ok(repository_id(&self.reader, repository).await?.is_some())
    }

    async fn list_manifests(
        &self,
        repository: &RepositoryName,
    ) -> Result<Vec<ManifestSummary>, MetadataError> {
        let rows = sqlx::query(
            "SELECT m.digest, m.media_type, m.artifact_type, m.size, m.created_at,
                    (SELECT group_concat(t.name, ',') FROM tags t
                      WHERE t.repository_id = m.repository_id AND t.manifest_digest = m.digest) AS tags
             FROM manifests m JOIN repositories r ON r.id = m.repository_id
             WHERE r.name = ? ORDER BY m.created_at DESC, m.digest",
        )
        .bind(repository.as_str())
        .fetch_all(&self.reader)
        .await?;
        rows.iter()
            .map(|row| {
                let tags: Option<String> = row.try_get("tags")?;
                Ok(ManifestSummary {
                    digest: digest_of(row, "digest")?,
                    media_type: row.try_get("media_type")?,
                    artifact_type: row.try_get("artifact_type")?,
                    size: row.try_get::<i64, _>("size")? as u64,
                    created_at: row.try_get("created_at")?,
                    tags: tags
                        .map(|t| t.split(',').map(str::to_string).collect())
                        .unwrap_or_default(),
                })
            })
            .collect()
    }

    async fn delete_repository(&self, repository: &RepositoryName) -> Result<u64, MetadataError> {
        let mut tx = self.writer.begin().await?;
        let count: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM manifests m JOIN repositories r ON r.id = m.repository_id WHERE r.name = ?",
        )
        .bind(repository.as_str())
        .fetch_one(&mut *tx)
        .await?;
        // Cascades to manifests, their references, tags and blob links.
        sqlx::query(
            "DELETE FROM manifest_blobs WHERE repository_id = (SELECT id FROM repositories WHERE name = ?)",
        )
        .bind(repository.as_str())
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "DELETE FROM manifest_children WHERE repository_id = (SELECT id FROM repositories WHERE name = ?)",
        )
        .bind(repository.as_str())
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "DELETE FROM tags WHERE repository_id = (SELECT id FROM repositories WHERE name = ?)",
        )
        .bind(repository.as_str())
        .execute(&mut *tx)
        .await?;
        sqlx::query("DELETE FROM repositories WHERE name = ?")
            .bind(repository.as_str())
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(count as u64)
    }

    async fn list_tags(
        &self,
        repository: &RepositoryName,
        limit: u32,
        last: Option<&str>,
    ) -> Result<Option<Vec<String>>, MetadataError> {
        let Some(repo) = repository_id(&self.reader, repository).await? else {
            return Ok(None);
        };
        let tags = sqlx::query_scalar(
            "SELECT name FROM tags WHERE repository_id = ? AND name > ? ORDER BY name LIMIT ?",
        )
        .bind(repo)
        .bind(last.unwrap_or(""))
        .bind(i64::from(limit))
        .fetch_all(&self.reader)
        .await?;
        Ok(Some(tags))
    }

    async fn list_repositories(
        &self,
        limit: u32,
        last: Option<&str>,
    ) -> Result<Vec<String>, MetadataError> {
        Ok(sqlx::query_scalar(
            "SELECT name FROM repositories r
             WHERE name > ? AND EXISTS (SELECT 1 FROM manifests m WHERE m.repository_id = r.id)
             ORDER BY name LIMIT ?",
        )
        .bind(last.unwrap_or(""))
        .bind(i64::from(limit))
        .fetch_all(&self.reader)
        .await?)
    }

    async fn referrers(
        &self,
        repository: &RepositoryName,
        subject: &Digest,
        artifact_type: Option<&str>,
    ) -> Result<Vec<Referrer>, MetadataError> {
        let rows = sqlx::query(
            "SELECT m.digest, m.media_type, m.artifact_type, m.size, m.annotations FROM manifests m
             JOIN repositories r ON r.id = m.repository_id
             WHERE r.name = ? AND m.subject_digest = ? AND (? IS NULL OR m.artifact_type = ?)
             ORDER BY m.created_at, m.digest",
        )
        .bind(repository.as_str())
        .bind(subject.to_string())
        .bind(artifact_type)
        .bind(artifact_type)
        .fetch_all(&self.reader)
        .await?;
        rows.iter()
            .map(|row| {
                Ok(Referrer {
                    digest: digest_of(row, "digest")?,
                    media_type: row.try_get("media_type")?,
                    artifact_type: row.try_get("artifact_type")?,
                    size: row.try_get::<i64, _>("size")? as u64,
                    annotations_json: row.try_get("annotations")?,
                })
            })
            .collect()
    }

    async fn create_upload(
        &self,
        id: &str,
        repository: &RepositoryName,
    ) -> Result<(), MetadataError> {
        let now = now();
        sqlx::query(
            "INSERT INTO uploads (id, repository, length, created_at, updated_at) VALUES (?, ?, 0, ?, ?)",
        )
        .bind(id)
        .bind(repository.as_str())
        .bind(now)
        .bind(now)
        .execute(&self.writer)
        .await?;
        Ok(())
    }

    async fn get_upload(&self, id: &str) -> Result<Option<UploadRecord>, MetadataError> {
        // From the writer: a session's next request must see its last update.
        let row =
            sqlx::query("SELECT id, repository, length, created_at FROM uploads WHERE id = ?")
                .bind(id)
                .fetch_optional(&self.writer)
                .await?;
        row.map(|row| {
            Ok(UploadRecord {
                id: row.try_get("id")?,
                repository: row.try_get("repository")?,
                offset: row.try_get::<i64, _>("length")? as u64,
                created_at: row.try_get("created_at")?,
            })
        })
        .transpose()
    }

    async fn set_upload_offset(&self, id: &str, offset: u64) -> Result<(), MetadataError> {
        // An upload's length has the durability of its chunks: it survives
        // a process crash, not a power loss (see docs/decisions.md). So this
        // commit skips the WAL fsync (`synchronous=NORMAL` for this one
        // statement); the next FULL commit makes it durable anyway.
        let mut conn = self.writer.acquire().await?;
        sqlx::query("PRAGMA synchronous = NORMAL")
            .execute(&mut *conn)
            .await?;
        let updated = sqlx::query("UPDATE uploads SET length = ?, updated_at = ? WHERE id = ?")
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

    async fn delete_upload(&self, id: &str) -> Result<bool, MetadataError> {
        let done = sqlx::query("DELETE FROM uploads WHERE id = ?")
            .bind(id)
            .execute(&self.writer)
            .await?;
        Ok(done.rows_affected() > 0)
    }

    async fn stale_uploads(&self, before: i64) -> Result<Vec<String>, MetadataError> {
        Ok(
            sqlx::query_scalar("SELECT id FROM uploads WHERE updated_at < ?")
                .bind(before)
                .fetch_all(&self.reader)
                .await?,
        )
    }

    async fn unreferenced_blobs(
        &self,
        before: i64,
        limit: u32,
    ) -> Result<Vec<Digest>, MetadataError> {
        let rows = sqlx::query(
            "SELECT digest FROM blobs b WHERE last_linked_at < ?
             AND NOT EXISTS (SELECT 1 FROM manifest_blobs mb WHERE mb.blob_digest = b.digest)
             LIMIT ?",
        )
        .bind(before)
        .bind(i64::from(limit))
        .fetch_all(&self.reader)
        .await?;
        rows.iter().map(|r| digest_of(r, "digest")).collect()
    }

    async fn forget_blob_if_unreferenced(
        &self,
        digest: &Digest,
        before: i64,
    ) -> Result<bool, MetadataError> {
        let done = sqlx::query(
            "DELETE FROM blobs WHERE digest = ? AND last_linked_at < ?
             AND NOT EXISTS (SELECT 1 FROM manifest_blobs mb WHERE mb.blob_digest = blobs.digest)",
        )
        .bind(digest.to_string())
        .bind(before)
        .execute(&self.writer)
        .await?;
        Ok(done.rows_affected() > 0)
    }
}
