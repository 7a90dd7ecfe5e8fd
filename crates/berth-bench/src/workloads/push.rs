//! Workloads 1 and 2: the big blob pushed in one PUT, and in PATCHes.

use std::collections::BTreeMap;
use std::time::Instant;

use super::{seeds, Ctx, Workload, BLOB_REPO};
use crate::data::BlobSpec;
use crate::stats::{Recorder, WorkloadResult};

/// `--repeat` distinct blobs of `--blob-size`, one after the other, each
/// POST + PUT with the whole body. The first is the blob the pulls read.
pub async fn monolithic(ctx: &Ctx) -> anyhow::Result<WorkloadResult> {
    let p = &ctx.params;
    let specs: Vec<BlobSpec> = (0..p.repeat as u64)
        .map(|i| BlobSpec::new(seeds::PUSH + i, p.blob_size))
        .collect();
    let digests = ctx.digests(&specs).await?;
    let repo = ctx.repo(BLOB_REPO);
    let mut recorder = Recorder::new();
    let meter = ctx.meter();
    for (spec, digest) in specs.iter().zip(&digests) {
        let start = Instant::now();
        let result = ctx.client.push_stream(&repo, *spec, digest).await;
        recorder.outcome(start, spec.size, result);
    }
    Ok(ctx.finish(meter, Workload::Push, &recorder, BTreeMap::new()))
}

/// `--repeat` distinct blobs of `--blob-size`, each POST, PATCHes of
/// `--chunk-size`, and a final empty PUT.
pub async fn chunked(ctx: &Ctx) -> anyhow::Result<WorkloadResult> {
    let p = &ctx.params;
    let specs: Vec<BlobSpec> = (0..p.repeat as u64)
        .map(|i| BlobSpec::new(seeds::CHUNKED + i, p.blob_size))
        .collect();
    let digests = ctx.digests(&specs).await?;
    let repo = ctx.repo(BLOB_REPO);
    let mut recorder = Recorder::new();
    let mut patches = Recorder::new();
    let meter = ctx.meter();
    for (spec, digest) in specs.iter().zip(&digests) {
        let start = Instant::now();
        let result = ctx
            .client
            .push_chunked(&repo, *spec, digest, p.chunk_size, &mut patches)
            .await;
        recorder.outcome(start, spec.size, result);
    }
    let patch = patches.latency();
    let details = BTreeMap::from([
        ("patches".to_string(), patches.ops as f64),
        ("patch_p50_ms".to_string(), patch.p50),
        ("patch_p99_ms".to_string(), patch.p99),
    ]);
    Ok(ctx.finish(meter, Workload::PushChunked, &recorder, details))
}
