//! Online garbage collection: no read-only window, one collector at a time
//! across all nodes (a lease row in the metadata database), cost in
//! proportion to what changed (only queued candidates are examined), and
//! resumable (a blob marked as being deleted is finished by the next run).
//!
//! A blob goes in three steps: marked in one transaction that re-checks it
//! is unreferenced and past its grace period (removing its repository
//! links), then its bytes are deleted, then its record. An upload of the
//! same bytes meanwhile waits for the record to go before writing (see
//! `Registry::claim_blob`), so the collector never deletes fresh bytes.

use berth_metadata::GcRunRecord;
use berth_types::Digest;
use berth_util::{now, now_ms};
use uuid::Uuid;

use crate::{Registry, RegistryError, Result};

/// Candidates examined per metadata query; the lease is renewed and the
/// run's progress recorded after each batch.
const BATCH: u32 = 500;
/// Seconds the collector lease lasts without renewal; a crashed node's
/// lease expires and another node takes over.
const LEASE_SECS: i64 = 60;

/// What one collection pass did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct GcReport {
    /// Another node holds the collector lease; this pass did nothing.
    pub skipped: bool,
    pub examined: u64,
    pub blobs_deleted: u64,
    pub bytes_reclaimed: u64,
    pub uploads_purged: u64,
    /// Requests made to the blob store (object store) during the pass.
    pub storage_requests: u64,
}

impl Registry {
    /// One pass, if this node gets the collector lease: purges idle upload
    /// sessions, finishes deletions a crashed run left, then examines the
    /// queued candidates whose grace period has passed.
    pub async fn collect_garbage(&self) -> Result<GcReport> {
        let node = self.config.node_id.clone();
        if !self.metadata.acquire_gc_lease(&node, LEASE_SECS).await? {
            return Ok(GcReport {
                skipped: true,
                ..GcReport::default()
            });
        }
        let mut run = GcRunRecord {
            id: self.metadata.start_gc_run(&node).await?,
            holder: node.clone(),
            state: "running".into(),
            ..GcRunRecord::default()
        };
        let requests_before = self.blobs.requests();
        let started = std::time::Instant::now();
        let result = self.collect_with_lease(&mut run, requests_before).await;
        // Every run, scheduled or asked for (`berth gc run`).
        metrics::histogram!("berth_gc_duration_seconds").record(started.elapsed().as_secs_f64());
        run.storage_requests = self.blobs.requests() - requests_before;
        run.finished_at = Some(now_ms());
        match &result {
            Ok(()) => run.state = "finished".into(),
            Err(e) => {
                run.state = "failed".into();
                run.error = Some(e.to_string());
            }
        }
        self.metadata.update_gc_run(&run).await?;
        self.metadata.release_gc_lease(&node).await?;
        metrics::counter!("berth_gc_runs_total", "state" => run.state.clone()).increment(1);
        metrics::counter!("berth_gc_blobs_examined_total").increment(run.examined);
        metrics::counter!("berth_gc_blobs_deleted_total").increment(run.blobs_deleted);
        metrics::counter!("berth_gc_bytes_reclaimed_total").increment(run.bytes_reclaimed);
        metrics::counter!("berth_gc_uploads_purged_total").increment(run.uploads_purged);
        metrics::gauge!("berth_gc_queue_length").set(self.metadata.gc_queue_length().await? as f64);
        result?;
        Ok(GcReport {
            skipped: false,
            examined: run.examined,
            blobs_deleted: run.blobs_deleted,
            bytes_reclaimed: run.bytes_reclaimed,
            uploads_purged: run.uploads_purged,
            storage_requests: run.storage_requests,
        })
    }

    async fn collect_with_lease(&self, run: &mut GcRunRecord, requests_before: u64) -> Result<()> {
        let upload_cutoff = now() - self.config.upload_ttl.as_secs() as i64;
        for id in self.metadata.stale_uploads(upload_cutoff).await? {
            if let Ok(uuid) = Uuid::parse_str(&id) {
                self.discard_upload(uuid).await?;
            } else {
                self.metadata.delete_upload(&id).await?;
            }
            run.uploads_purged += 1;
        }

        // Deletions an interrupted run marked but did not finish.
        loop {
            let marked = self.metadata.blobs_being_deleted(BATCH).await?;
            if marked.is_empty() {
                break;
            }
            for (digest, size) in marked {
                self.delete_marked(&digest, size, run).await?;
            }
            self.checkpoint(run, requests_before).await?;
        }

        let cutoff = now() - self.config.gc_grace.as_secs() as i64;
        let mut after: Option<String> = None;
        loop {
            let batch = self
                .metadata
                .gc_candidates(cutoff, after.as_deref(), BATCH)
                .await?;
            let Some(last) = batch.last() else { break };
            after = Some(last.to_string());
            for digest in batch {
                run.examined += 1;
                let write = self.cache.write();
                let marked = self.metadata.mark_blob_deleting(&digest, cutoff).await?;
                if marked.is_some() {
                    write.forget_all_links();
                }
                drop(write);
                if let Some(size) = marked {
                    self.delete_marked(&digest, size, run).await?;
                }
            }
            self.checkpoint(run, requests_before).await?;
        }
        Ok(())
    }

    async fn delete_marked(&self, digest: &Digest, size: u64, run: &mut GcRunRecord) -> Result<()> {
        // Absent bytes are fine: a crash may have come after they went.
        self.blobs.delete_blob(digest).await?;
        self.metadata.forget_blob(digest).await?;
        run.blobs_deleted += 1;
        run.bytes_reclaimed += size;
        tracing::debug!(%digest, size, "garbage collected blob");
        Ok(())
    }

    /// Records progress and renews the lease; stops the run if another
    /// node took the lease over (this one stalled past its expiry).
    async fn checkpoint(&self, run: &mut GcRunRecord, requests_before: u64) -> Result<()> {
        run.storage_requests = self.blobs.requests() - requests_before;
        self.metadata.update_gc_run(run).await?;
        if !self
            .metadata
            .acquire_gc_lease(&self.config.node_id, LEASE_SECS)
            .await?
        {
            return Err(RegistryError::Unsupported(
                "another node took over garbage collection; this run stopped".into(),
            ));
        }
        Ok(())
    }
}
