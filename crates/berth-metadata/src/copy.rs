//! Copies an embedded registry's metadata (SQLite) into PostgreSQL, for
//! `berth migrate`. Table by table in dependency order, each in one
//! transaction, with `ON CONFLICT DO NOTHING`, so an interrupted copy is
//! simply run again. Values are read by the PostgreSQL column's type (the
//! schemas are the same, see [`crate::schema`]), and identity sequences are
//! moved past the copied ids at the end.

use futures::TryStreamExt;
use sqlx::{Column, Row};

const BATCH: u64 = 1000;

use crate::{MetadataError, PostgresStore, SqliteStore};

/// Every table with data worth moving, parents before children. Upload
/// sessions in progress are not moved (their bytes stay behind); the
/// collector's lease and run history start fresh.
pub const TABLES: &[&str] = &[
    "repositories",
    "blobs",
    "repository_blobs",
    "manifests",
    "manifest_blobs",
    "manifest_children",
    "tags",
    "settings",
    "identities",
    "credentials",
    "federated_credentials",
    "scope_maps",
    "role_definitions",
    "role_assignments",
    "signing_keys",
    "activity_log",
    "login_events",
    "repository_events",
    "gc_candidates",
];

/// Tables whose `id` comes from an identity sequence.
const SEQUENCED: &[&str] = &[
    "repositories",
    "activity_log",
    "login_events",
    "repository_events",
    "gc_runs",
];

/// Rows in one table: in the source, and in the target after the copy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableCopy {
    pub table: &'static str,
    pub source_rows: u64,
    pub target_rows: u64,
}

enum Kind {
    Integer,
    Text,
    Bytes,
}

pub async fn copy_to_postgres(
    from: &SqliteStore,
    to: &PostgresStore,
    mut progress: impl FnMut(&TableCopy),
) -> Result<Vec<TableCopy>, MetadataError> {
    let mut report = Vec::new();
    for &table in TABLES {
        let columns: Vec<(String, String)> = sqlx::query_as(
            "SELECT column_name::text, data_type::text FROM information_schema.columns
             WHERE table_schema = current_schema() AND table_name = $1 ORDER BY ordinal_position",
        )
        .bind(table)
        .fetch_all(to.pool())
        .await?;
        let kinds: Vec<(String, Kind)> = columns
            .into_iter()
            .map(|(name, ty)| {
                let kind = match ty.as_str() {
                    "bigint" | "integer" | "smallint" => Ok(Kind::Integer),
                    "text" | "character varying" => Ok(Kind::Text),
                    "bytea" => Ok(Kind::Bytes),
                    other => Err(MetadataError::Corrupt(format!(
                        "{table}.{name} has type {other}, which the copy does not know"
                    ))),
                }?;
                Ok((name, kind))
            })
            .collect::<Result<_, MetadataError>>()?;
        let names: Vec<&str> = kinds.iter().map(|(n, _)| n.as_str()).collect();
        let list = names.join(", ");
        let placeholders: Vec<String> = (1..=names.len()).map(|i| format!("${i}")).collect();
        let insert = format!(
            "INSERT INTO {table} ({list}) VALUES ({}) ON CONFLICT DO NOTHING",
            placeholders.join(", ")
        );
        // Streamed, committed every BATCH rows: event tables can be large.
        let select = format!("SELECT {list} FROM {table}");
        let mut rows = sqlx::query(&select).fetch(from.pool());
        let mut tx = to.pool().begin().await?;
        let mut copied = 0u64;
        while let Some(row) = rows.try_next().await? {
            let mut query = sqlx::query(&insert);
            for (i, (name, kind)) in kinds.iter().enumerate() {
                debug_assert_eq!(row.column(i).name(), name);
                query = match kind {
                    Kind::Integer => query.bind(row.try_get::<Option<i64>, _>(i)?),
                    Kind::Text => query.bind(row.try_get::<Option<String>, _>(i)?),
                    Kind::Bytes => query.bind(row.try_get::<Option<Vec<u8>>, _>(i)?),
                };
            }
            query.execute(&mut *tx).await?;
            copied += 1;
            if copied.is_multiple_of(BATCH) {
                tx.commit().await?;
                tx = to.pool().begin().await?;
            }
        }
        tx.commit().await?;
        let target_rows: i64 = sqlx::query_scalar(&format!("SELECT count(*) FROM {table}"))
            .fetch_one(to.pool())
            .await?;
        let copy = TableCopy {
            table,
            source_rows: copied,
            target_rows: target_rows as u64,
        };
        progress(&copy);
        report.push(copy);
    }
    for table in SEQUENCED {
        sqlx::query(&format!(
            "SELECT setval(pg_get_serial_sequence('{table}', 'id'),
                           GREATEST((SELECT max(id) FROM {table}), 1))"
        ))
        .execute(to.pool())
        .await?;
    }
    Ok(report)
}

/// Every blob the embedded registry stores (digest, size), for copying its
/// bytes before its metadata.
pub async fn stored_blobs(
    from: &SqliteStore,
) -> Result<Vec<(berth_types::Digest, u64)>, MetadataError> {
    let rows: Vec<(String, i64)> =
        sqlx::query_as("SELECT digest, size FROM blobs WHERE deleting = 0 ORDER BY digest")
            .fetch_all(from.pool())
            .await?;
    rows.into_iter()
        .map(|(digest, size)| {
            let digest = digest
                .parse()
                .map_err(|e| MetadataError::Corrupt(format!("blob digest '{digest}': {e}")))?;
            Ok((digest, size as u64))
        })
        .collect()
}
