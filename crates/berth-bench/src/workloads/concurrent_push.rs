//! Workload 6: `--concurrent-pushes` distinct blobs of
//! `--concurrent-blob-size` pushed all at once, each POST + PUT streamed.

use std::collections::BTreeMap;
use std::time::Instant;

use tokio::task::JoinSet;

use super::{seeds, Ctx, Workload};
use crate::data::BlobSpec;
use crate::stats::{Recorder, WorkloadResult};

const REPO: &str = "concurrent";

pub async fn run(ctx: &Ctx) -> anyhow::Result<WorkloadResult> {
    let p = &ctx.params;
    let specs: Vec<BlobSpec> = (0..p.concurrent_pushes as u64)
        .map(|i| BlobSpec::new(seeds::CONCURRENT + i, p.concurrent_blob_size))
        .collect();
    let digests = ctx.digests(&specs).await?;
    let repo = ctx.repo(REPO);
    let meter = ctx.meter();
    let mut tasks = JoinSet::new();
    for (spec, digest) in specs.into_iter().zip(digests) {
        let (client, repo) = (ctx.client.clone(), repo.clone());
        tasks.spawn(async move {
            let start = Instant::now();
            let result = client.push_stream(&repo, spec, &digest).await;
            (start.elapsed(), spec.size, result)
        });
    }
    let mut recorder = Recorder::new();
    while let Some(task) = tasks.join_next().await {
        match task? {
            (latency, size, Ok(())) => recorder.ok(latency, size),
            (_, _, Err(e)) => recorder.error(format!("{e:#}")),
        }
    }
    let details = BTreeMap::from([("concurrency".to_string(), p.concurrent_pushes as f64)]);
    Ok(ctx.finish(meter, Workload::ConcurrentPush, &recorder, details))
}
