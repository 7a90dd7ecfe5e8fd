//! Online garbage collection. No read-only window: each blob is removed by a
//! conditional delete in the metadata store that re-checks, in the same
//! transaction, that no manifest references it and no repository linked it
//! within the grace period. Only then are its bytes deleted.

use berth_metadata::now;
use berth_types::Digest;
use uuid::Uuid;

use crate::{Registry, Result};

/// Blobs examined per metadata query.
const BATCH: u32 = 500;

/// What one collection pass did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct GcReport {
    pub blobs_deleted: u64,
    pub bytes_reclaimed: u64,
    pub uploads_purged: u64,
}

impl Registry {
    /// One pass: purges idle upload sessions, then unreferenced blobs whose
    /// grace period has passed.
    pub async fn collect_garbage(&self) -> Result<GcReport> {
        let mut report = GcReport::default();
        let upload_cutoff = now() - self.config.upload_ttl.as_secs() as i64;
        for id in self.metadata.stale_uploads(upload_cutoff).await? {
            if let Ok(uuid) = Uuid::parse_str(&id) {
                self.discard_upload(uuid).await?;
            } else {
                self.metadata.delete_upload(&id).await?;
            }
            report.uploads_purged += 1;
        }

        let cutoff = now() - self.config.gc_grace.as_secs() as i64;
        let mut skipped: Vec<Digest> = Vec::new();
        loop {
            let candidates = self.metadata.unreferenced_blobs(cutoff, BATCH).await?;
            let fresh: Vec<Digest> = candidates
                .into_iter()
                .filter(|d| !skipped.contains(d))
                .collect();
            if fresh.is_empty() {
                break;
            }
            for digest in fresh {
                let _gate = self.gc_gate.write().await;
                // Re-checked and removed in one transaction; a concurrent
                // link or manifest wins and the blob stays.
                let write = self.cache.write();
                let forgotten = self
                    .metadata
                    .forget_blob_if_unreferenced(&digest, cutoff)
                    .await?;
                write.forget_all_links();
                drop(write);
                if !forgotten {
                    skipped.push(digest);
                    continue;
                }
                let size = self.blobs.blob_size(&digest).await?.unwrap_or(0);
                if self.blobs.delete_blob(&digest).await? {
                    report.blobs_deleted += 1;
                    report.bytes_reclaimed += size;
                }
                tracing::debug!(%digest, size, "garbage collected blob");
            }
        }
        Ok(report)
    }
}
