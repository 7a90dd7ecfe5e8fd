//! Consistent snapshots of the embedded database, for `berth backup`.
//!
//! `VACUUM INTO` copies the database as one read transaction sees it, so
//! the copy is consistent however many pushes commit meanwhile (WAL mode
//! lets them go on), and it is compact. It is SQLite's online copy in one
//! statement, through the same driver as everything else (the C backup
//! API would need a second binding to the same library). Upload sessions
//! are then cleared from the copy (their bytes are not in a backup), and so
//! are blobs the collector was deleting (nothing references them).
//!
//! [`check_snapshot`] is the database half of `berth backup verify`: the
//! file's own integrity, its foreign keys, every manifest's content
//! against its digest, and every blob a manifest names that its repository
//! holds being in the snapshot's blob list (the caller checks the files).

use std::path::Path;
use std::str::FromStr;

use berth_types::{Digest, DigestHasher};
use futures::TryStreamExt;
use sqlx::sqlite::SqliteConnectOptions;
use sqlx::{ConnectOptions, Connection, Row, SqliteConnection};

use crate::MetadataError;

/// A blob the snapshot's metadata says the registry holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlobEntry {
    pub digest: Digest,
    pub size: u64,
}

/// What a snapshot holds.
#[derive(Debug, Clone, Default)]
pub struct SnapshotSummary {
    pub repositories: u64,
    pub manifests: u64,
    pub tags: u64,
    pub blobs: Vec<BlobEntry>,
}

/// Problems [`check_snapshot`] found, each a sentence for people.
#[derive(Debug, Clone, Default)]
pub struct SnapshotCheck {
    pub summary: SnapshotSummary,
    pub problems: Vec<String>,
    /// References a sparse manifest makes to content its repository never
    /// held (pull-through caches, the `sparseManifests` setting): not
    /// problems, since the registry did not have them either.
    pub not_held: u64,
}

async fn open(db: &Path, read_only: bool) -> Result<SqliteConnection, MetadataError> {
    let options = SqliteConnectOptions::from_str(&format!("sqlite://{}", db.display()))?
        .read_only(read_only)
        .busy_timeout(std::time::Duration::from_secs(30));
    Ok(options.connect().await?)
}

/// Copies the live database `source` into the new file `into`
/// (consistently, while others write), drops upload sessions from the
/// copy, and says what it holds.
pub async fn snapshot_sqlite(source: &Path, into: &Path) -> Result<SnapshotSummary, MetadataError> {
    let mut live = open(source, false).await?;
    sqlx::query("VACUUM INTO $1")
        .bind(into.display().to_string())
        .execute(&mut live)
        .await?;
    live.close().await?;
    let mut copy = open(into, false).await?;
    sqlx::query("PRAGMA foreign_keys = ON")
        .execute(&mut copy)
        .await?;
    sqlx::query("DELETE FROM uploads")
        .execute(&mut copy)
        .await?;
    // Blobs the collector was deleting are unreferenced and may be gone
    // from storage by now.
    sqlx::query("DELETE FROM blobs WHERE deleting = 1")
        .execute(&mut copy)
        .await?;
    let summary = summarise(&mut copy).await?;
    copy.close().await?;
    Ok(summary)
}

async fn count(conn: &mut SqliteConnection, table: &str) -> Result<u64, MetadataError> {
    let n: i64 = sqlx::query_scalar(&format!("SELECT COUNT(*) FROM {table}"))
        .fetch_one(&mut *conn)
        .await?;
    Ok(n as u64)
}

async fn summarise(conn: &mut SqliteConnection) -> Result<SnapshotSummary, MetadataError> {
    let mut blobs = Vec::new();
    let mut rows = sqlx::query("SELECT digest, size FROM blobs ORDER BY digest").fetch(&mut *conn);
    while let Some(row) = rows.try_next().await? {
        let text: String = row.try_get(0)?;
        let size: i64 = row.try_get(1)?;
        let digest = Digest::from_str(&text)
            .map_err(|e| MetadataError::Corrupt(format!("blob digest {text:?}: {e}")))?;
        blobs.push(BlobEntry {
            digest,
            size: size as u64,
        });
    }
    drop(rows);
    Ok(SnapshotSummary {
        repositories: count(conn, "repositories").await?,
        manifests: count(conn, "manifests").await?,
        tags: count(conn, "tags").await?,
        blobs,
    })
}

/// Checks a snapshot made by [`snapshot_sqlite`] (read-only).
pub async fn check_snapshot(db: &Path) -> Result<SnapshotCheck, MetadataError> {
    let mut conn = open(db, true).await?;
    let mut problems = Vec::new();
    let integrity: Vec<String> = sqlx::query_scalar("PRAGMA integrity_check")
        .fetch_all(&mut conn)
        .await?;
    if integrity != ["ok"] {
        problems.extend(
            integrity
                .into_iter()
                .map(|p| format!("the database is damaged: {p}")),
        );
        // Nothing else it says can be believed.
        return Ok(SnapshotCheck {
            problems,
            ..SnapshotCheck::default()
        });
    }
    let violations = sqlx::query("PRAGMA foreign_key_check")
        .fetch_all(&mut conn)
        .await?;
    for row in violations {
        let table: String = row.try_get(0).unwrap_or_default();
        let parent: String = row.try_get(2).unwrap_or_default();
        problems.push(format!(
            "a row of {table} refers to a missing row of {parent}"
        ));
    }

    // Each manifest's bytes against its digest.
    let mut rows = sqlx::query(
        "SELECT r.name, m.digest, m.content FROM manifests m
         JOIN repositories r ON r.id = m.repository_id",
    )
    .fetch(&mut conn);
    while let Some(row) = rows.try_next().await? {
        let repository: String = row.try_get(0)?;
        let text: String = row.try_get(1)?;
        let content: Vec<u8> = row.try_get(2)?;
        match Digest::from_str(&text) {
            Ok(digest) => {
                let mut hasher = DigestHasher::new(digest.algorithm());
                hasher.update(&content);
                if hasher.finish() != digest {
                    problems.push(format!(
                        "manifest {repository}@{digest}: its content does not match its digest"
                    ));
                }
            }
            Err(e) => problems.push(format!("manifest {repository}@{text:?}: bad digest ({e})")),
        }
    }
    drop(rows);

    // Blobs a manifest names that its repository holds must be listed.
    let missing = sqlx::query(
        "SELECT r.name, mb.manifest_digest, mb.blob_digest FROM manifest_blobs mb
         JOIN repositories r ON r.id = mb.repository_id
         JOIN repository_blobs rb ON rb.repository_id = mb.repository_id AND rb.digest = mb.blob_digest
         WHERE NOT EXISTS (SELECT 1 FROM blobs b WHERE b.digest = mb.blob_digest)",
    )
    .fetch_all(&mut conn)
    .await?;
    for row in missing {
        let repository: String = row.try_get(0)?;
        let manifest: String = row.try_get(1)?;
        let blob: String = row.try_get(2)?;
        problems.push(format!(
            "manifest {repository}@{manifest} references blob {blob}, which is not in the backup"
        ));
    }
    let not_held_blobs: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM manifest_blobs mb WHERE NOT EXISTS (
             SELECT 1 FROM repository_blobs rb
             WHERE rb.repository_id = mb.repository_id AND rb.digest = mb.blob_digest)",
    )
    .fetch_one(&mut conn)
    .await?;
    let not_held_children: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM manifest_children mc WHERE NOT EXISTS (
             SELECT 1 FROM manifests m
             WHERE m.repository_id = mc.repository_id AND m.digest = mc.child_digest)",
    )
    .fetch_one(&mut conn)
    .await?;
    let summary = summarise(&mut conn).await?;
    conn.close().await?;
    Ok(SnapshotCheck {
        summary,
        problems,
        not_held: (not_held_blobs + not_held_children) as u64,
    })
}
