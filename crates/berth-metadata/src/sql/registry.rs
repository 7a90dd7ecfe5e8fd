//! [`MetadataStore`] for both SQL backends, written once (see `sql/auth.rs`
//! for the dialect). Every method is one transaction.

macro_rules! impl_metadata_store {
    ($store:ty, $db:ty) => {
        const _: () = {
            use async_trait::async_trait;
            use berth_types::{Algorithm, Digest, Reference, RepositoryName, Tag};
            use sqlx::{Row, Transaction};
            use berth_util::{now, now_ms};
            use $crate::{
                CacheChange, GcRunRecord, ManifestRecord, ManifestSummary, MetadataError,
                MetadataStore, NewManifest, Referrer, RepositoryOrder, RepositoryPage,
                RepositorySummary, StorageSample, UploadRecord,
            };

            type Db = $db;
            type DbRow = <$db as sqlx::Database>::Row;

fn digest_of(row: &DbRow, column: &str) -> Result<Digest, MetadataError> {
    let raw: String = row.try_get(column)?;
    raw.parse()
        .map_err(|e| MetadataError::Corrupt(format!("{column} '{raw}': {e}")))
}

async fn ensure_repository(
    tx: &mut Transaction<'_, Db>,
    repository: &RepositoryName,
) -> Result<i64, MetadataError> {
    sqlx::query(
        "INSERT INTO repositories (name, created_at) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING",
    )
    .bind(repository.as_str())
    .bind(now())
    .execute(&mut **tx)
    .await?;
    let id: i64 = sqlx::query_scalar("SELECT id FROM repositories WHERE name = $1")
        .bind(repository.as_str())
        .fetch_one(&mut **tx)
        .await?;
    Ok(id)
}

async fn repository_id(
    pool: &sqlx::Pool<Db>,
    repository: &RepositoryName,
) -> Result<Option<i64>, MetadataError> {
    Ok(
        sqlx::query_scalar("SELECT id FROM repositories WHERE name = $1")
            .bind(repository.as_str())
            .fetch_optional(pool)
            .await?,
    )
}

/// `text` for a LIKE pattern with `ESCAPE '\'`: its wildcards and the
/// escape character itself match literally.
fn like_literal(text: &str) -> String {
    text.replace('\\', "\\\\")
        .replace('%', "\\%")
        .replace('_', "\\_")
}

// `repository_summaries`: the figures of one repository `r`, each a
// correlated subquery over that repository's rows only (the primary keys
// of tags and repository_blobs, and manifests_summary on manifests, all
// led by repository_id), so a page costs its own repositories'.
const TAGS_OF_R: &str = "(SELECT count(*) FROM tags t WHERE t.repository_id = r.id)";
const MANIFESTS_OF_R: &str = "(SELECT count(*) FROM manifests m WHERE m.repository_id = r.id)";
/// Each linked blob once (the link's key is repository and digest), plus
/// the manifests' own bytes. SUM is NUMERIC on PostgreSQL: cast back.
const SIZE_OF_R: &str = "CAST(
      (SELECT COALESCE(SUM(m.size), 0) FROM manifests m WHERE m.repository_id = r.id)
    + (SELECT COALESCE(SUM(b.size), 0) FROM repository_blobs rb
       JOIN blobs b ON b.digest = rb.digest WHERE rb.repository_id = r.id)
    AS BIGINT)";
const LAST_PUSH_OF_R: &str =
    "(SELECT MAX(m.created_at) FROM manifests m WHERE m.repository_id = r.id)";
/// `$1` is `%<like_literal(search)>%`; names are lower-case by the
/// grammar, the search need not be.
const NAME_MATCHES: &str = "LOWER(r.name) LIKE LOWER($1) ESCAPE '\\'";

/// Queues a blob for the collector.
async fn queue_candidate(tx: &mut Transaction<'_, Db>, digest: &str) -> Result<(), MetadataError> {
    sqlx::query(
        "INSERT INTO gc_candidates (digest, queued_at) VALUES ($1, $2) ON CONFLICT (digest) DO NOTHING",
    )
    .bind(digest)
    .bind(now())
    .execute(&mut **tx)
    .await?;
    Ok(())
}

#[async_trait]
impl MetadataStore for $store {
    async fn ping(&self) -> Result<(), MetadataError> {
        sqlx::query("SELECT 1").execute(&self.reader).await?;
        Ok(())
    }

    async fn claim_blob(&self, digest: &Digest, size: u64) -> Result<bool, MetadataError> {
        let now = now();
        let mut tx = self.writer.begin().await?;
        let claimed = sqlx::query(
            "INSERT INTO blobs (digest, size, created_at, last_linked_at) VALUES ($1, $2, $3, $4)
             ON CONFLICT (digest) DO UPDATE SET last_linked_at = excluded.last_linked_at
             WHERE blobs.deleting = 0",
        )
        .bind(digest.to_string())
        .bind(size as i64)
        .bind(now)
        .bind(now)
        .execute(&mut *tx)
        .await?
        .rows_affected()
            > 0;
        if claimed {
            queue_candidate(&mut tx, &digest.to_string()).await?;
        }
        tx.commit().await?;
        Ok(claimed)
    }

    async fn link_blob(
        &self,
        repository: &RepositoryName,
        digest: &Digest,
    ) -> Result<bool, MetadataError> {
        let now = now();
        let mut tx = self.writer.begin().await?;
        // Restarts the grace period and, on PostgreSQL, locks the record
        // against a collector deciding about it at the same moment.
        let present = sqlx::query(
            "UPDATE blobs SET last_linked_at = $1 WHERE digest = $2 AND deleting = 0",
        )
        .bind(now)
        .bind(digest.to_string())
        .execute(&mut *tx)
        .await?
        .rows_affected()
            > 0;
        if !present {
            return Ok(false);
        }
        let repo = ensure_repository(&mut tx, repository).await?;
        sqlx::query(
            "INSERT INTO repository_blobs (repository_id, digest, linked_at) VALUES ($1, $2, $3)
             ON CONFLICT (repository_id, digest) DO UPDATE SET linked_at = excluded.linked_at",
        )
        .bind(repo)
        .bind(digest.to_string())
        .bind(now)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(true)
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
             WHERE r.name = $1 AND rb.digest = $2",
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
        let mut tx = self.writer.begin().await?;
        let done = sqlx::query(
            "DELETE FROM repository_blobs
             WHERE repository_id = (SELECT id FROM repositories WHERE name = $1) AND digest = $2",
        )
        .bind(repository.as_str())
        .bind(digest.to_string())
        .execute(&mut *tx)
        .await?;
        if done.rows_affected() > 0 {
            queue_candidate(&mut tx, &digest.to_string()).await?;
            <$store>::announce(&mut tx, &CacheChange::Link {
                repository: repository.to_string(),
                digest: digest.to_string(),
            })
            .await?;
        }
        tx.commit().await?;
        Ok(done.rows_affected() > 0)
    }

    async fn put_manifest(&self, m: NewManifest<'_>) -> Result<(), MetadataError> {
        let now = now();
        let mut tx = self.writer.begin().await?;
        let repo = ensure_repository(&mut tx, m.repository).await?;

        // Each required blob must be linked here and not being collected.
        // The update restarts its grace period and (PostgreSQL) locks its
        // record until this commits, so a collector either finished with it
        // before (and it is missing) or sees it referenced after. Sorted, so
        // concurrent pushes sharing layers lock in one order.
        let mut required: Vec<&Digest> = m.blobs.iter().collect();
        required.sort();
        required.dedup();
        let mut missing = Vec::new();
        for blob in required {
            let held = sqlx::query(
                "UPDATE blobs SET last_linked_at = $1
                 WHERE digest = $2 AND deleting = 0 AND EXISTS (
                   SELECT 1 FROM repository_blobs rb WHERE rb.repository_id = $3 AND rb.digest = $4)",
            )
            .bind(now)
            .bind(blob.to_string())
            .bind(repo)
            .bind(blob.to_string())
            .execute(&mut *tx)
            .await?
            .rows_affected();
            if held == 0 {
                missing.push(blob.clone());
            }
        }
        if !missing.is_empty() && !m.sparse {
            return Err(MetadataError::MissingBlobs(missing));
        }
        missing.clear();
        for child in &m.children {
            let present: Option<String> = sqlx::query_scalar(
                "SELECT digest FROM manifests WHERE repository_id = $1 AND digest = $2",
            )
            .bind(repo)
            .bind(child.to_string())
            .fetch_optional(&mut *tx)
            .await?;
            if present.is_none() && !missing.contains(child) {
                missing.push(child.clone());
            }
        }
        if !missing.is_empty() && !m.sparse {
            return Err(MetadataError::MissingManifests(missing));
        }

        let digest = m.digest.to_string();
        sqlx::query(
            "INSERT INTO manifests (repository_id, digest, media_type, artifact_type, subject_digest,
                                    annotations, size, content, created_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
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
        let mut references: Vec<String> = m
            .blobs
            .iter()
            .chain(&m.references)
            .map(|d| d.to_string())
            .collect();
        references.sort();
        references.dedup();
        for blob in &references {
            sqlx::query(
                "INSERT INTO manifest_blobs (repository_id, manifest_digest, blob_digest)
                 VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
            )
            .bind(repo)
            .bind(&digest)
            .bind(blob)
            .execute(&mut *tx)
            .await?;
        }
        for child in &m.children {
            sqlx::query(
                "INSERT INTO manifest_children (repository_id, manifest_digest, child_digest)
                 VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
            )
            .bind(repo)
            .bind(&digest)
            .bind(child.to_string())
            .execute(&mut *tx)
            .await?;
        }
        for tag in m.tags {
            // One statement: two nodes moving the same tag leave one winner.
            sqlx::query(
                "INSERT INTO tags (repository_id, name, manifest_digest, updated_at) VALUES ($1, $2, $3, $4)
                 ON CONFLICT (repository_id, name)
                 DO UPDATE SET manifest_digest = excluded.manifest_digest, updated_at = excluded.updated_at",
            )
            .bind(repo)
            .bind(tag.as_str())
            .bind(&digest)
            .bind(now)
            .execute(&mut *tx)
            .await?;
            <$store>::announce(&mut tx, &CacheChange::Tag {
                repository: m.repository.to_string(),
                tag: tag.to_string(),
            })
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
                     WHERE r.name = $1 AND t.name = $2",
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
                     WHERE r.name = $1 AND m.digest = $2",
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
        let mut tx = self.writer.begin().await?;
        // Its blobs may now be unreferenced: queue them for the collector.
        sqlx::query(
            "INSERT INTO gc_candidates (digest, queued_at)
             SELECT mb.blob_digest, $1 FROM manifest_blobs mb
             JOIN repositories r ON r.id = mb.repository_id
             WHERE r.name = $2 AND mb.manifest_digest = $3
             ON CONFLICT (digest) DO NOTHING",
        )
        .bind(now())
        .bind(repository.as_str())
        .bind(digest.to_string())
        .execute(&mut *tx)
        .await?;
        let done = sqlx::query(
            "DELETE FROM manifests
             WHERE repository_id = (SELECT id FROM repositories WHERE name = $1) AND digest = $2",
        )
        .bind(repository.as_str())
        .bind(digest.to_string())
        .execute(&mut *tx)
        .await?;
        if done.rows_affected() > 0 {
            <$store>::announce(&mut tx, &CacheChange::Manifest {
                repository: repository.to_string(),
                digest: digest.to_string(),
            })
            .await?;
        }
        tx.commit().await?;
        Ok(done.rows_affected() > 0)
    }

    async fn delete_tag(
        &self,
        repository: &RepositoryName,
        tag: &Tag,
    ) -> Result<bool, MetadataError> {
        let mut tx = self.writer.begin().await?;
        let done = sqlx::query(
            "DELETE FROM tags
             WHERE repository_id = (SELECT id FROM repositories WHERE name = $1) AND name = $2",
        )
        .bind(repository.as_str())
        .bind(tag.as_str())
        .execute(&mut *tx)
        .await?;
        if done.rows_affected() > 0 {
            <$store>::announce(&mut tx, &CacheChange::Tag {
                repository: repository.to_string(),
                tag: tag.to_string(),
            })
            .await?;
        }
        tx.commit().await?;
        Ok(done.rows_affected() > 0)
    }

    async fn repository_exists(&self, repository: &RepositoryName) -> Result<bool, MetadataError> {
        Ok(repository_id(&self.reader, repository).await?.is_some())
    }


    async fn list_manifests(
        &self,
        repository: &RepositoryName,
    ) -> Result<Vec<ManifestSummary>, MetadataError> {
        let Some(repo) = repository_id(&self.reader, repository).await? else {
            return Ok(Vec::new());
        };
        let rows = sqlx::query(
            "SELECT digest, media_type, artifact_type, size, created_at FROM manifests
             WHERE repository_id = $1 ORDER BY created_at DESC, digest",
        )
        .bind(repo)
        .fetch_all(&self.reader)
        .await?;
        let tag_rows = sqlx::query(
            "SELECT manifest_digest, name FROM tags WHERE repository_id = $1 ORDER BY name",
        )
        .bind(repo)
        .fetch_all(&self.reader)
        .await?;
        let mut tags: std::collections::HashMap<String, Vec<String>> = Default::default();
        for row in &tag_rows {
            tags.entry(row.try_get("manifest_digest")?)
                .or_default()
                .push(row.try_get("name")?);
        }
        rows.iter()
            .map(|row| {
                let digest: String = row.try_get("digest")?;
                Ok(ManifestSummary {
                    tags: tags.remove(&digest).unwrap_or_default(),
                    digest: digest_of(row, "digest")?,
                    media_type: row.try_get("media_type")?,
                    artifact_type: row.try_get("artifact_type")?,
                    size: row.try_get::<i64, _>("size")? as u64,
                    created_at: row.try_get("created_at")?,
                })
            })
            .collect()
    }

    async fn delete_repository(&self, repository: &RepositoryName) -> Result<u64, MetadataError> {
        let mut tx = self.writer.begin().await?;
        let Some(repo): Option<i64> = sqlx::query_scalar("SELECT id FROM repositories WHERE name = $1")
            .bind(repository.as_str())
            .fetch_optional(&mut *tx)
            .await?
        else {
            return Ok(0);
        };
        let count: i64 =
            sqlx::query_scalar("SELECT count(*) FROM manifests WHERE repository_id = $1")
                .bind(repo)
                .fetch_one(&mut *tx)
                .await?;
        // Everything it linked or referenced may now be garbage.
        for source in [
            "SELECT digest, $1 FROM repository_blobs WHERE repository_id = $2",
            "SELECT blob_digest, $1 FROM manifest_blobs WHERE repository_id = $2",
        ] {
            sqlx::query(&format!(
                "INSERT INTO gc_candidates (digest, queued_at) {source} ON CONFLICT (digest) DO NOTHING"
            ))
            .bind(now())
            .bind(repo)
            .execute(&mut *tx)
            .await?;
        }
        // Cascades to manifests, their references, tags and blob links.
        for table in ["manifest_blobs", "manifest_children", "tags"] {
            sqlx::query(&format!("DELETE FROM {table} WHERE repository_id = $1"))
                .bind(repo)
                .execute(&mut *tx)
                .await?;
        }
        sqlx::query("DELETE FROM repositories WHERE id = $1")
            .bind(repo)
            .execute(&mut *tx)
            .await?;
        <$store>::announce(&mut tx, &CacheChange::Repository {
            repository: repository.to_string(),
        })
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
            "SELECT name FROM tags WHERE repository_id = $1 AND name > $2 ORDER BY name LIMIT $3",
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
             WHERE name > $1 AND EXISTS (SELECT 1 FROM manifests m WHERE m.repository_id = r.id)
             ORDER BY name LIMIT $2",
        )
        .bind(last.unwrap_or(""))
        .bind(i64::from(limit))
        .fetch_all(&self.reader)
        .await?)
    }

    async fn repository_summaries(
        &self,
        search: &str,
        order: RepositoryOrder,
        limit: u32,
        offset: u64,
    ) -> Result<RepositoryPage, MetadataError> {
        let pattern = format!("%{}%", like_literal(search));
        let total: i64 = sqlx::query_scalar(&format!(
            "SELECT count(*) FROM repositories r WHERE {NAME_MATCHES}"
        ))
        .bind(&pattern)
        .fetch_one(&self.reader)
        .await?;
        // The page is chosen first, computing only what its order needs
        // (nothing for names: the name index is read in order, and skipped
        // repositories cost no subquery); then the page's figures. DESC puts
        // NULL first on PostgreSQL, last on SQLite: NULLS LAST says which.
        let (key, inner_order, outer_order) = match order {
            RepositoryOrder::Name => (String::new(), "r.name", "r.name"),
            RepositoryOrder::Size => (
                format!(", {SIZE_OF_R} AS sort_key"),
                "sort_key DESC, r.name",
                "r.sort_key DESC, r.name",
            ),
            RepositoryOrder::LastPush => (
                format!(", {LAST_PUSH_OF_R} AS sort_key"),
                "sort_key DESC NULLS LAST, r.name",
                "r.sort_key DESC NULLS LAST, r.name",
            ),
        };
        let rows = sqlx::query(&format!(
            "SELECT r.name, {TAGS_OF_R} AS tags, {MANIFESTS_OF_R} AS manifests,
                    {SIZE_OF_R} AS size, {LAST_PUSH_OF_R} AS last_push
             FROM (SELECT r.id, r.name{key} FROM repositories r WHERE {NAME_MATCHES}
                   ORDER BY {inner_order} LIMIT $2 OFFSET $3) r
             ORDER BY {outer_order}"
        ))
        .bind(&pattern)
        .bind(i64::from(limit))
        .bind(i64::try_from(offset).unwrap_or(i64::MAX))
        .fetch_all(&self.reader)
        .await?;
        let repositories = rows
            .iter()
            .map(|row| {
                let n = |c: &str| row.try_get::<i64, _>(c).map(|v| v as u64);
                Ok(RepositorySummary {
                    name: row.try_get("name")?,
                    tags: n("tags")?,
                    manifests: n("manifests")?,
                    size: n("size")?,
                    last_push: row.try_get("last_push")?,
                })
            })
            .collect::<Result<Vec<_>, MetadataError>>()?;
        Ok(RepositoryPage {
            total: total as u64,
            repositories,
        })
    }

    async fn touch_manifests(
        &self,
        repository: &RepositoryName,
        digests: &[Digest],
        at: i64,
    ) -> Result<(), MetadataError> {
        let Some(repo) = repository_id(&self.writer, repository).await? else {
            return Ok(());
        };
        let mut tx = self.writer.begin().await?;
        for digest in digests {
            sqlx::query(
                "UPDATE manifests SET last_pulled_at = $1 WHERE repository_id = $2 AND digest = $3",
            )
            .bind(at)
            .bind(repo)
            .bind(digest.to_string())
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn unused_manifests(
        &self,
        target: &str,
        before: i64,
        limit: u32,
    ) -> Result<Vec<(RepositoryName, Digest)>, MetadataError> {
        // `prefix/*` matches names below the prefix; LIKE's wildcards in
        // the prefix itself are escaped.
        let (exact, pattern) = match target.strip_suffix("/*") {
            Some(prefix) => (
                String::new(),
                format!("{}/%", like_literal(prefix)),
            ),
            None => (target.to_string(), String::new()),
        };
        let rows = sqlx::query(
            "SELECT r.name, m.digest FROM manifests m
             JOIN repositories r ON r.id = m.repository_id
             WHERE (r.name = $1 OR r.name LIKE $2 ESCAPE '\\')
               AND COALESCE(m.last_pulled_at, m.created_at) < $3
             ORDER BY r.name, m.digest LIMIT $4",
        )
        .bind(exact)
        .bind(pattern)
        .bind(before)
        .bind(i64::from(limit))
        .fetch_all(&self.reader)
        .await?;
        rows.iter()
            .map(|row| {
                let name: String = row.try_get("name")?;
                let repository = name
                    .parse::<RepositoryName>()
                    .map_err(|e| MetadataError::Corrupt(format!("repository '{name}': {e}")))?;
                Ok((repository, digest_of(row, "digest")?))
            })
            .collect()
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
             WHERE r.name = $1 AND m.subject_digest = $2 AND (CAST($3 AS TEXT) IS NULL OR m.artifact_type = $4)
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
        algorithm: Algorithm,
    ) -> Result<(), MetadataError> {
        let now = now();
        sqlx::query(
            "INSERT INTO uploads (id, repository, length, created_at, updated_at, algorithm)
             VALUES ($1, $2, 0, $3, $4, $5)",
        )
        .bind(id)
        .bind(repository.as_str())
        .bind(now)
        .bind(now)
        .bind(algorithm.as_str())
        .execute(&self.writer)
        .await?;
        Ok(())
    }

    async fn get_upload(&self, id: &str) -> Result<Option<UploadRecord>, MetadataError> {
        // From the writer: a session's next request must see its last update.
        let row =
            sqlx::query("SELECT id, repository, length, algorithm, created_at FROM uploads WHERE id = $1")
                .bind(id)
                .fetch_optional(&self.writer)
                .await?;
        row.map(|row| {
            Ok(UploadRecord {
                id: row.try_get("id")?,
                repository: row.try_get("repository")?,
                offset: row.try_get::<i64, _>("length")? as u64,
                algorithm: row
                    .try_get::<String, _>("algorithm")?
                    .parse()
                    .map_err(|e| MetadataError::Corrupt(format!("upload algorithm: {e}")))?,
                created_at: row.try_get("created_at")?,
            })
        })
        .transpose()
    }


    async fn set_upload_offset(&self, id: &str, offset: u64) -> Result<(), MetadataError> {
        self.write_upload_offset(id, offset).await
    }

    async fn delete_upload(&self, id: &str) -> Result<bool, MetadataError> {
        let done = sqlx::query("DELETE FROM uploads WHERE id = $1")
            .bind(id)
            .execute(&self.writer)
            .await?;
        Ok(done.rows_affected() > 0)
    }

    async fn stale_uploads(&self, before: i64) -> Result<Vec<String>, MetadataError> {
        Ok(
            sqlx::query_scalar("SELECT id FROM uploads WHERE updated_at < $1")
                .bind(before)
                .fetch_all(&self.reader)
                .await?,
        )
    }


    async fn acquire_gc_lease(&self, holder: &str, ttl: i64) -> Result<bool, MetadataError> {
        let now = now();
        let taken = sqlx::query(
            "INSERT INTO gc_lease (id, holder, expires_at) VALUES (1, $1, $2)
             ON CONFLICT (id) DO UPDATE SET holder = excluded.holder, expires_at = excluded.expires_at
             WHERE gc_lease.holder = $3 OR gc_lease.expires_at < $4",
        )
        .bind(holder)
        .bind(now + ttl)
        .bind(holder)
        .bind(now)
        .execute(&self.writer)
        .await?;
        Ok(taken.rows_affected() > 0)
    }

    async fn release_gc_lease(&self, holder: &str) -> Result<(), MetadataError> {
        sqlx::query("DELETE FROM gc_lease WHERE id = 1 AND holder = $1")
            .bind(holder)
            .execute(&self.writer)
            .await?;
        Ok(())
    }

    async fn gc_candidates(
        &self,
        before: i64,
        after: Option<&str>,
        limit: u32,
    ) -> Result<Vec<Digest>, MetadataError> {
        let rows = sqlx::query(
            "SELECT c.digest FROM gc_candidates c LEFT JOIN blobs b ON b.digest = c.digest
             WHERE c.digest > $1 AND (b.digest IS NULL OR (b.last_linked_at < $2 AND b.deleting = 0))
             ORDER BY c.digest LIMIT $3",
        )
        .bind(after.unwrap_or(""))
        .bind(before)
        .bind(i64::from(limit))
        .fetch_all(&self.writer)
        .await?;
        rows.iter().map(|r| digest_of(r, "digest")).collect()
    }

    async fn gc_queue_length(&self) -> Result<u64, MetadataError> {
        let n: i64 = sqlx::query_scalar("SELECT count(*) FROM gc_candidates")
            .fetch_one(&self.reader)
            .await?;
        Ok(n as u64)
    }

    async fn mark_blob_deleting(
        &self,
        digest: &Digest,
        before: i64,
    ) -> Result<Option<u64>, MetadataError> {
        let digest = digest.to_string();
        let mut tx = self.writer.begin().await?;
        // Lock the record first (PostgreSQL): a manifest push that holds it
        // commits before the check below runs, and that check (a new
        // statement) then sees the push's references.
        sqlx::query(&format!(
            "SELECT digest FROM blobs WHERE digest = $1{}",
            <$store>::ROW_LOCK
        ))
        .bind(&digest)
        .fetch_optional(&mut *tx)
        .await?;
        let size: Option<i64> = sqlx::query_scalar(
            "UPDATE blobs SET deleting = 1
             WHERE digest = $1 AND deleting = 0 AND last_linked_at < $2
               AND NOT EXISTS (SELECT 1 FROM manifest_blobs mb WHERE mb.blob_digest = $3)
             RETURNING size",
        )
        .bind(&digest)
        .bind(before)
        .bind(&digest)
        .fetch_optional(&mut *tx)
        .await?;
        if size.is_some() {
            sqlx::query("DELETE FROM repository_blobs WHERE digest = $1")
                .bind(&digest)
                .execute(&mut *tx)
                .await?;
            <$store>::announce(&mut tx, &CacheChange::BlobDeleted {
                digest: digest.clone(),
            })
            .await?;
        }
        // Referenced (or already gone): off the queue; its references
        // dropping later queues it again. Still in its grace period: stays.
        sqlx::query(
            "DELETE FROM gc_candidates WHERE digest = $1
             AND NOT EXISTS (SELECT 1 FROM blobs b WHERE b.digest = $2 AND b.last_linked_at >= $3)",
        )
        .bind(&digest)
        .bind(&digest)
        .bind(before)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(size.map(|s| s as u64))
    }

    async fn blobs_being_deleted(&self, limit: u32) -> Result<Vec<(Digest, u64)>, MetadataError> {
        let rows = sqlx::query("SELECT digest, size FROM blobs WHERE deleting = 1 LIMIT $1")
            .bind(i64::from(limit))
            .fetch_all(&self.writer)
            .await?;
        rows.iter()
            .map(|r| Ok((digest_of(r, "digest")?, r.try_get::<i64, _>("size")? as u64)))
            .collect()
    }

    async fn forget_blob(&self, digest: &Digest) -> Result<(), MetadataError> {
        sqlx::query("DELETE FROM blobs WHERE digest = $1 AND deleting = 1")
            .bind(digest.to_string())
            .execute(&self.writer)
            .await?;
        Ok(())
    }

    async fn start_gc_run(&self, holder: &str) -> Result<i64, MetadataError> {
        Ok(sqlx::query_scalar(
            "INSERT INTO gc_runs (holder, started_at, state) VALUES ($1, $2, 'running') RETURNING id",
        )
        .bind(holder)
        .bind(now_ms())
        .fetch_one(&self.writer)
        .await?)
    }

    async fn update_gc_run(&self, run: &GcRunRecord) -> Result<(), MetadataError> {
        sqlx::query(
            "UPDATE gc_runs SET finished_at = $1, state = $2, examined = $3, blobs_deleted = $4,
               bytes_reclaimed = $5, uploads_purged = $6, storage_requests = $7, error = $8
             WHERE id = $9",
        )
        .bind(run.finished_at)
        .bind(&run.state)
        .bind(run.examined as i64)
        .bind(run.blobs_deleted as i64)
        .bind(run.bytes_reclaimed as i64)
        .bind(run.uploads_purged as i64)
        .bind(run.storage_requests as i64)
        .bind(&run.error)
        .bind(run.id)
        .execute(&self.writer)
        .await?;
        Ok(())
    }

    async fn sample_storage(&self, at: i64) -> Result<bool, MetadataError> {
        let hour = at.div_euclid(3600);
        // The sum over every blob record is not free: skip it when the
        // hour is already sampled (by this node or another).
        let taken: Option<i64> =
            sqlx::query_scalar("SELECT hour FROM storage_samples WHERE hour = $1")
                .bind(hour)
                .fetch_optional(&self.reader)
                .await?;
        if taken.is_some() {
            return Ok(false);
        }
        let (blobs, bytes): (i64, i64) = sqlx::query_as(
            "SELECT count(*), CAST(COALESCE(SUM(size), 0) AS BIGINT) FROM blobs",
        )
        .fetch_one(&self.reader)
        .await?;
        let inserted = sqlx::query(
            "INSERT INTO storage_samples (hour, blobs, bytes) VALUES ($1, $2, $3)
             ON CONFLICT (hour) DO NOTHING",
        )
        .bind(hour)
        .bind(blobs)
        .bind(bytes)
        .execute(&self.writer)
        .await?;
        Ok(inserted.rows_affected() == 1)
    }

    async fn storage_samples(&self, since: i64) -> Result<Vec<StorageSample>, MetadataError> {
        let rows: Vec<(i64, i64, i64)> = sqlx::query_as(
            "SELECT hour, blobs, bytes FROM storage_samples WHERE hour >= $1 ORDER BY hour",
        )
        .bind(since.div_euclid(3600))
        .fetch_all(&self.reader)
        .await?;
        Ok(rows
            .into_iter()
            .map(|(hour, blobs, bytes)| StorageSample {
                at: hour * 3600,
                blobs: blobs.max(0) as u64,
                bytes: bytes.max(0) as u64,
            })
            .collect())
    }

    async fn gc_runs(&self, limit: u32) -> Result<Vec<GcRunRecord>, MetadataError> {
        let rows = sqlx::query(
            "SELECT id, holder, started_at, finished_at, state, examined, blobs_deleted,
                    bytes_reclaimed, uploads_purged, storage_requests, error
             FROM gc_runs ORDER BY id DESC LIMIT $1",
        )
        .bind(i64::from(limit))
        .fetch_all(&self.reader)
        .await?;
        rows.iter()
            .map(|r| {
                let n = |c: &str| r.try_get::<i64, _>(c).map(|v| v as u64);
                Ok(GcRunRecord {
                    id: r.try_get("id")?,
                    holder: r.try_get("holder")?,
                    started_at: r.try_get("started_at")?,
                    finished_at: r.try_get("finished_at")?,
                    state: r.try_get("state")?,
                    examined: n("examined")?,
                    blobs_deleted: n("blobs_deleted")?,
                    bytes_reclaimed: n("bytes_reclaimed")?,
                    uploads_purged: n("uploads_purged")?,
                    storage_requests: n("storage_requests")?,
                    error: r.try_get("error")?,
                })
            })
            .collect()
    }
}
        };
    };
}

pub(crate) use impl_metadata_store;
