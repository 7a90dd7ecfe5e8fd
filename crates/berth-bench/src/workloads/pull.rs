//! Workload 3: the big blob pulled whole, then as concurrent `Range` GETs.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use anyhow::ensure;
use tokio::task::JoinSet;

use super::{Ctx, Workload, BLOB_REPO};
use crate::client::Client;
use crate::data::{BlobSpec, Hasher};
use crate::stats::{Recorder, WorkloadResult};

/// `--pull-repeat` full GETs of the big blob, one after the other.
pub async fn full(ctx: &Ctx) -> anyhow::Result<WorkloadResult> {
    let (spec, digest) = ctx.big_blob().await?;
    let url = ctx.client.blob_url(&ctx.repo(BLOB_REPO), &digest)?;
    let mut recorder = Recorder::new();
    let meter = ctx.meter();
    for _ in 0..ctx.params.pull_repeat {
        let start = Instant::now();
        let result = get_whole(&ctx.client, url.clone(), spec, &digest, ctx.params.verify).await;
        recorder.outcome(start, spec.size, result);
    }
    Ok(ctx.finish(meter, Workload::Pull, &recorder, BTreeMap::new()))
}

async fn get_whole(
    client: &Client,
    url: reqwest::Url,
    spec: BlobSpec,
    digest: &str,
    verify: bool,
) -> anyhow::Result<()> {
    let mut response = client.get(url, None).await?;
    let mut received = 0u64;
    let mut hasher = verify.then(Hasher::default);
    while let Some(chunk) = response.chunk().await? {
        received += chunk.len() as u64;
        if let Some(h) = hasher.as_mut() {
            h.update(&chunk);
        }
    }
    ensure!(
        received == spec.size,
        "received {received} bytes of a {}-byte blob",
        spec.size
    );
    if let Some(h) = hasher {
        let got = h.finish();
        ensure!(got == digest, "pulled bytes hash to {got}, not {digest}");
    }
    Ok(())
}

/// `--range-requests` GETs of `--range-size` at consecutive offsets
/// (wrapping), `--range-concurrency` at a time.
pub async fn ranges(ctx: &Ctx) -> anyhow::Result<WorkloadResult> {
    let (spec, digest) = ctx.big_blob().await?;
    let p = &ctx.params;
    let url = ctx.client.blob_url(&ctx.repo(BLOB_REPO), &digest)?;
    let count = p.range_count();
    let range_size = p.range_size.min(spec.size);
    let slots = (spec.size / range_size).max(1);
    let next = Arc::new(AtomicU64::new(0));
    let meter = ctx.meter();
    let mut tasks = JoinSet::new();
    for _ in 0..p.range_concurrency {
        let (client, url, next, verify) = (ctx.client.clone(), url.clone(), next.clone(), p.verify);
        tasks.spawn(async move {
            let mut recorder = Recorder::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= count {
                    break;
                }
                let start_at = (i % slots) * range_size;
                let range = start_at..(start_at + range_size).min(spec.size);
                let start = Instant::now();
                let result = get_range(&client, url.clone(), spec, range.clone(), verify).await;
                recorder.outcome(start, range.end - range.start, result);
            }
            recorder
        });
    }
    let mut recorder = Recorder::new();
    while let Some(task) = tasks.join_next().await {
        recorder.merge(&task?);
    }
    let details = BTreeMap::from([
        ("concurrency".to_string(), p.range_concurrency as f64),
        ("range_bytes".to_string(), range_size as f64),
    ]);
    Ok(ctx.finish(meter, Workload::PullRange, &recorder, details))
}

async fn get_range(
    client: &Client,
    url: reqwest::Url,
    spec: BlobSpec,
    range: std::ops::Range<u64>,
    verify: bool,
) -> anyhow::Result<()> {
    let mut response = client.get(url, Some(range.clone())).await?;
    let want = range.end - range.start;
    let mut received = Vec::new();
    let mut len = 0u64;
    while let Some(chunk) = response.chunk().await? {
        len += chunk.len() as u64;
        if verify {
            received.extend_from_slice(&chunk);
        }
    }
    ensure!(len == want, "range {range:?}: received {len} bytes");
    if verify {
        ensure!(
            received == spec.bytes(range.clone()),
            "range {range:?}: bytes differ from the blob's"
        );
    }
    Ok(())
}
