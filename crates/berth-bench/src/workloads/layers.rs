//! Workload 5: an image of `--layers` small layers pushed with
//! `--layer-parallelism` uploads at a time (each POST + PUT), then its
//! config and manifest. Latency is per layer upload; the elapsed time runs
//! to the manifest's 201.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

use tokio::task::JoinSet;

use super::{seeds, Ctx, Workload};
use crate::client::OCI_MANIFEST;
use crate::data::BlobSpec;
use crate::image::{Blob, Image};
use crate::stats::{Recorder, WorkloadResult};

const REPO: &str = "layers";
const TAG: &str = "v1";

pub async fn run(ctx: &Ctx) -> anyhow::Result<WorkloadResult> {
    let p = &ctx.params;
    // Small enough to hold in memory: generated and hashed before the clock.
    let layers: Vec<Blob> = (0..p.layers as u64)
        .map(|i| Blob::generated(BlobSpec::new(seeds::LAYERS + i, p.layer_size)))
        .collect();
    let image = Arc::new(Image::new(layers));
    let repo = ctx.repo(REPO);
    let next = Arc::new(AtomicUsize::new(0));
    let meter = ctx.meter();
    let mut tasks = JoinSet::new();
    for _ in 0..p.layer_parallelism {
        let (client, image, next, repo) = (
            ctx.client.clone(),
            image.clone(),
            next.clone(),
            repo.clone(),
        );
        tasks.spawn(async move {
            let mut recorder = Recorder::new();
            while let Some(layer) = image.layers.get(next.fetch_add(1, Ordering::Relaxed)) {
                let start = Instant::now();
                let result = client
                    .push_bytes(&repo, layer.bytes.clone(), &layer.digest)
                    .await;
                recorder.outcome(start, layer.bytes.len() as u64, result);
            }
            recorder
        });
    }
    let mut recorder = Recorder::new();
    while let Some(task) = tasks.join_next().await {
        recorder.merge(&task?);
    }
    let manifest_start = Instant::now();
    let config = &image.config;
    let finish = async {
        ctx.client
            .push_bytes(&repo, config.bytes.clone(), &config.digest)
            .await?;
        ctx.client
            .put_manifest(&repo, TAG, OCI_MANIFEST, image.manifest.clone())
            .await
    };
    if let Err(e) = finish.await {
        recorder.error(format!("config and manifest: {e:#}"));
    }
    let details = BTreeMap::from([
        ("layers".to_string(), p.layers as f64),
        ("parallelism".to_string(), p.layer_parallelism as f64),
        (
            "config_and_manifest_ms".to_string(),
            manifest_start.elapsed().as_secs_f64() * 1000.0,
        ),
    ]);
    Ok(ctx.finish(meter, Workload::Layers, &recorder, details))
}
