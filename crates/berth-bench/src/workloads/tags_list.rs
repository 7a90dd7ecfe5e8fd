//! Workload 7: a repository with `--tags` tags, listed with `n=--page-size`
//! and walked through `Link: rel="next"` to the end, `--tag-walks` times.
//! An operation is one page; the first and last `--edge-pages` pages are
//! timed apart, to show whether a page's cost depends on its position.
//!
//! Creating the tags (one manifest PUT per tag, untimed setup) is reported
//! in the details too: it is the registry's manifest PUT rate.

use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{ensure, Context};
use serde::Deserialize;
use tokio::task::JoinSet;

use super::{Ctx, Workload};
use crate::client::{Client, OCI_MANIFEST};
use crate::image::Image;
use crate::stats::{Recorder, WorkloadResult};

#[derive(Deserialize)]
struct TagsPage {
    #[serde(default)]
    tags: Option<Vec<String>>,
}

fn tag_name(i: usize, count: usize) -> String {
    let width = count.saturating_sub(1).to_string().len().max(5);
    format!("t{i:0width$}")
}

pub async fn run(ctx: &Ctx) -> anyhow::Result<WorkloadResult> {
    let p = &ctx.params;
    // A repository per tag count, so that reruns list exactly `tags` tags.
    let repo = ctx.repo(&format!("tags-{}", p.tags));
    let image = Image::small();
    let (puts, puts_wall) = create_tags(ctx, &repo, &image).await?;

    let max_pages = p.tags / p.page_size + 2;
    let url = ctx
        .client
        .url(&format!("v2/{repo}/tags/list?n={}", p.page_size))?;
    let mut recorder = Recorder::new();
    let mut walks: Vec<Vec<Duration>> = Vec::new();
    let mut seen = 0;
    let mut sorted = true;
    let meter = ctx.meter();
    for _ in 0..p.tag_walks {
        match walk(&ctx.client, url.clone(), max_pages, &mut recorder).await {
            Ok((pages, tags)) => {
                seen = tags.len();
                sorted &= tags.windows(2).all(|w| w[0] < w[1]);
                if let Err(e) = check_listing(&tags, p.tags) {
                    recorder.error(e);
                }
                walks.push(pages);
            }
            Err(e) => recorder.error(format!("{e:#}")),
        }
    }
    let pages = walks.first().map_or(0, Vec::len);
    let edge = p.edge_pages.min(pages / 2).max(1);
    let mean_ms = |select: &dyn Fn(&Vec<Duration>) -> &[Duration]| {
        let all: Vec<f64> = walks
            .iter()
            .flat_map(|w| select(w).iter().map(|d| d.as_secs_f64() * 1000.0))
            .collect();
        all.iter().sum::<f64>() / all.len().max(1) as f64
    };
    let first = mean_ms(&|w| &w[..edge.min(w.len())]);
    let last = mean_ms(&|w| &w[w.len().saturating_sub(edge)..]);
    let put = puts.latency();
    let details = BTreeMap::from([
        ("pages_per_walk".to_string(), pages as f64),
        ("tags_listed".to_string(), seen as f64),
        ("sorted".to_string(), f64::from(u8::from(sorted))),
        ("edge_pages".to_string(), edge as f64),
        ("first_pages_ms".to_string(), first),
        ("last_pages_ms".to_string(), last),
        ("last_over_first".to_string(), last / first.max(1e-9)),
        ("tag_puts".to_string(), puts.ops as f64),
        ("tag_put_errors".to_string(), puts.errors as f64),
        (
            "tag_puts_per_s".to_string(),
            puts.ops as f64 / puts_wall.as_secs_f64().max(1e-9),
        ),
        ("tag_put_p50_ms".to_string(), put.p50),
        ("tag_put_p99_ms".to_string(), put.p99),
    ]);
    let mut result = ctx.finish(meter, Workload::TagsList, &recorder, details);
    result.error_samples.extend(puts.error_samples);
    result.errors += puts.errors;
    Ok(result)
}

/// Every tag exactly once (the spec asks for lexical order, but
/// Distribution 2.8 lists in directory order: order is only reported).
fn check_listing(tags: &[String], count: usize) -> Result<(), String> {
    let unique: HashSet<&str> = tags.iter().map(String::as_str).collect();
    let missing = (0..count)
        .map(|i| tag_name(i, count))
        .find(|t| !unique.contains(t.as_str()));
    match missing {
        None if tags.len() == count => Ok(()),
        None => Err(format!(
            "the walk listed {} tags for {count} distinct",
            tags.len()
        )),
        Some(t) => Err(format!("the walk listed {} tags, without {t}", tags.len())),
    }
}

/// Pushes the image once, then PUTs its manifest under every tag,
/// `--tag-put-concurrency` at a time; returns the PUTs' figures and their
/// wall time.
async fn create_tags(ctx: &Ctx, repo: &str, image: &Image) -> anyhow::Result<(Recorder, Duration)> {
    let count = ctx.params.tags;
    ctx.push_image(repo, &tag_name(0, count), image)
        .await
        .context("cannot push the image to tag")?;
    let next = Arc::new(AtomicUsize::new(1));
    let start = Instant::now();
    let mut tasks = JoinSet::new();
    for _ in 0..ctx.params.tag_put_concurrency {
        let (client, next, repo, manifest) = (
            ctx.client.clone(),
            next.clone(),
            repo.to_string(),
            image.manifest.clone(),
        );
        tasks.spawn(async move {
            let mut recorder = Recorder::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= count {
                    break;
                }
                let start = Instant::now();
                let result = client
                    .put_manifest(&repo, &tag_name(i, count), OCI_MANIFEST, manifest.clone())
                    .await;
                recorder.outcome(start, 0, result);
            }
            recorder
        });
    }
    let mut recorder = Recorder::new();
    while let Some(task) = tasks.join_next().await {
        recorder.merge(&task?);
    }
    Ok((recorder, start.elapsed()))
}

/// One walk; returns each page's latency and the tags in order.
async fn walk(
    client: &Client,
    first: reqwest::Url,
    max_pages: usize,
    recorder: &mut Recorder,
) -> anyhow::Result<(Vec<Duration>, Vec<String>)> {
    let mut latencies = Vec::new();
    let mut tags = Vec::new();
    let mut next = Some(first);
    while let Some(url) = next.take() {
        ensure!(
            latencies.len() < max_pages,
            "more than {max_pages} pages: the Link headers do not end"
        );
        let start = Instant::now();
        let (body, link) = client.get_page(url).await?;
        let page: TagsPage = serde_json::from_slice(&body).context("tags page is not JSON")?;
        let latency = start.elapsed();
        recorder.ok(latency, body.len() as u64);
        latencies.push(latency);
        tags.extend(page.tags.unwrap_or_default());
        next = link;
    }
    Ok((latencies, tags))
}
