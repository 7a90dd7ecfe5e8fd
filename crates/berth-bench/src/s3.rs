//! `berth-bench run --mode s3`: the blob workloads against an S3 bucket
//! directly, as the reference for a registry that stores its blobs there
//! (berth's scale-out deployment over Garage: bench/scale-out.sh).
//!
//! The requests are the ones berth's S3 storage makes, through the same
//! client (`object_store`): a body of at most one part is one PUT; a larger
//! one is a multipart upload of `--s3-part-size` parts (5 MiB, S3's minimum,
//! as berth) with `--s3-parts-in-flight` (1) sent while the next fills, the
//! payload signed (berth signs too). A pull is a GET of the object, a range
//! a `Range` GET. Bodies are generated a chunk at a time, never whole.
//!
//! Workloads: `push` (`--repeat` objects of `--blob-size`, one after the
//! other), `pull` (`--pull-repeat` GETs of the first), `pull-range`
//! (`--range-requests` GETs of `--range-size`, `--range-concurrency` at a
//! time), `concurrent-push` (`--concurrent-pushes` objects of
//! `--concurrent-blob-size` at once); the registry-only workloads are
//! skipped. Objects go under `--s3-prefix` (so a bucket a registry uses is
//! not touched outside it) and are deleted at the end.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{ensure, Context};
use clap::Args;
use futures::StreamExt;
use object_store::aws::{AmazonS3, AmazonS3Builder};
use object_store::path::Path;
use object_store::{
    BackoffConfig, ClientOptions, GetOptions, GetRange, ObjectStore, PutPayload, RetryConfig,
    WriteMultipart,
};
use tokio::task::JoinSet;

use crate::client::Mode;
use crate::data::{self, BlobSpec, Hasher};
use crate::params::Params;
use crate::procfs::{self, ServerProbe};
use crate::report::{self, Report};
use crate::stats::{Meter, Recorder, WorkloadResult};
use crate::units::{format_size, parse_size, MIB};
use crate::workloads::seeds;
use crate::Workload;

/// berth's part size (`berth-storage`'s S3 store): S3's minimum.
pub const DEFAULT_PART_SIZE: u64 = 5 * MIB;
/// S3 refuses parts under 5 MiB (except the last).
const MIN_PART_SIZE: u64 = 5 * MIB;

/// The workloads that run against a bucket.
pub const WORKLOADS: [Workload; 4] = [
    Workload::Push,
    Workload::Pull,
    Workload::PullRange,
    Workload::ConcurrentPush,
];

/// Where the bucket is and how to write to it.
#[derive(Clone)]
pub struct S3Target {
    /// `http://host:port` of an S3-compatible store; AWS when unset.
    pub endpoint: Option<String>,
    pub bucket: String,
    pub region: String,
    pub access_key_id: Option<String>,
    pub secret_access_key: Option<String>,
    /// Key prefix of every object (`""` or ending in `/`).
    pub prefix: String,
    pub part_size: u64,
    pub parts_in_flight: usize,
}

impl std::fmt::Debug for S3Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Target")
            .field("endpoint", &self.endpoint)
            .field("bucket", &self.bucket)
            .field("region", &self.region)
            .field("access_key_id", &self.access_key_id)
            .field("prefix", &self.prefix)
            .field("part_size", &self.part_size)
            .field("parts_in_flight", &self.parts_in_flight)
            .finish_non_exhaustive()
    }
}

impl S3Target {
    /// The bucket and prefix as a URL, for the report.
    pub fn url(&self) -> String {
        let endpoint = self
            .endpoint
            .as_deref()
            .unwrap_or("https://s3.amazonaws.com")
            .trim_end_matches('/');
        format!("{endpoint}/{}/{}", self.bucket, self.prefix)
    }

    /// Where object `name` of `workload` lives.
    pub fn path(&self, workload: Workload, name: &str) -> Path {
        Path::from(format!("{}{}/{name}", self.prefix, workload.name()))
    }

    fn store(&self, connections: usize) -> anyhow::Result<AmazonS3> {
        let mut builder = AmazonS3Builder::new()
            .with_bucket_name(&self.bucket)
            .with_region(&self.region)
            .with_client_options(
                ClientOptions::new()
                    .with_allow_http(true)
                    .with_timeout_disabled()
                    .with_connect_timeout(Duration::from_secs(10))
                    .with_pool_max_idle_per_host(connections.max(1)),
            )
            // As berth: a few quick retries of transient failures.
            .with_retry(RetryConfig {
                backoff: BackoffConfig {
                    init_backoff: Duration::from_millis(50),
                    max_backoff: Duration::from_millis(500),
                    base: 2.0,
                },
                max_retries: 3,
                retry_timeout: Duration::from_secs(3),
            });
        if let Some(endpoint) = &self.endpoint {
            builder = builder
                .with_endpoint(endpoint)
                .with_virtual_hosted_style_request(false);
        }
        if let Some(key) = &self.access_key_id {
            builder = builder.with_access_key_id(key);
        }
        if let Some(secret) = &self.secret_access_key {
            builder = builder.with_secret_access_key(secret);
        }
        builder.build().context("cannot configure the S3 client")
    }
}

/// `--s3-*` flags of `berth-bench run` (with `--mode s3`).
#[derive(Debug, Clone, Default, Args)]
pub struct S3Args {
    /// With --mode s3: the S3 endpoint, e.g. http://127.0.0.1:3900 (the
    /// URL argument if not given; AWS if neither is).
    #[arg(long, value_name = "URL")]
    pub s3_endpoint: Option<String>,
    /// With --mode s3: the bucket (which must exist).
    #[arg(long, value_name = "BUCKET")]
    pub s3_bucket: Option<String>,
    /// With --mode s3: the bucket's region [us-east-1].
    #[arg(long, value_name = "REGION")]
    pub s3_region: Option<String>,
    /// With --mode s3: the access key.
    #[arg(
        long,
        env = "AWS_ACCESS_KEY_ID",
        hide_env_values = true,
        value_name = "ID"
    )]
    pub s3_access_key_id: Option<String>,
    /// With --mode s3: the secret key.
    #[arg(
        long,
        env = "AWS_SECRET_ACCESS_KEY",
        hide_env_values = true,
        value_name = "SECRET"
    )]
    pub s3_secret_access_key: Option<String>,
    /// With --mode s3: prefix of the objects written (and deleted at the
    /// end) [berth-bench/].
    #[arg(long, value_name = "PREFIX")]
    pub s3_prefix: Option<String>,
    /// With --mode s3: part size of multipart uploads [5MiB, as berth].
    #[arg(long, value_parser = parse_size, value_name = "SIZE")]
    pub s3_part_size: Option<u64>,
    /// With --mode s3: parts sent while the next fills [1, as berth].
    #[arg(long, value_name = "N")]
    pub s3_parts_in_flight: Option<usize>,
}

impl S3Args {
    /// Whether a flag that only --mode s3 uses was given (the keys are
    /// left out: they may come from the environment).
    pub fn any_given(&self) -> bool {
        self.s3_endpoint.is_some()
            || self.s3_bucket.is_some()
            || self.s3_region.is_some()
            || self.s3_prefix.is_some()
            || self.s3_part_size.is_some()
            || self.s3_parts_in_flight.is_some()
    }

    /// The target; `url` (the positional argument) is the endpoint when
    /// `--s3-endpoint` is not given.
    pub fn resolve(&self, url: Option<&str>) -> anyhow::Result<S3Target> {
        let bucket = self
            .s3_bucket
            .clone()
            .filter(|b| !b.is_empty())
            .context("--mode s3 needs --s3-bucket")?;
        let endpoint = match (&self.s3_endpoint, url) {
            (Some(e), Some(u)) if e != u => {
                anyhow::bail!("give the S3 endpoint once: --s3-endpoint {e} or the URL {u}")
            }
            (Some(e), _) => Some(e.clone()),
            (None, u) => u.map(str::to_string),
        };
        let mut prefix = self
            .s3_prefix
            .as_deref()
            .unwrap_or("berth-bench/")
            .trim_start_matches('/')
            .to_string();
        if !prefix.is_empty() && !prefix.ends_with('/') {
            prefix.push('/');
        }
        let part_size = self.s3_part_size.unwrap_or(DEFAULT_PART_SIZE);
        ensure!(
            part_size >= MIN_PART_SIZE,
            "--s3-part-size must be at least 5MiB (S3's minimum part)"
        );
        let parts_in_flight = self.s3_parts_in_flight.unwrap_or(1);
        ensure!(
            parts_in_flight > 0,
            "--s3-parts-in-flight must be at least 1"
        );
        Ok(S3Target {
            endpoint,
            bucket,
            region: self
                .s3_region
                .clone()
                .unwrap_or_else(|| "us-east-1".to_string()),
            access_key_id: self.s3_access_key_id.clone(),
            secret_access_key: self.s3_secret_access_key.clone(),
            prefix,
            part_size,
            parts_in_flight,
        })
    }
}

/// One run against a bucket.
#[derive(Debug, Clone)]
pub struct S3Options {
    pub target: S3Target,
    /// Requested workloads; those [`WORKLOADS`] lacks are skipped.
    pub workloads: Vec<Workload>,
    pub params: Params,
    /// The object store's pid (if local), for its RSS and CPU.
    pub pid: Option<u32>,
    pub label: Option<String>,
    pub progress: bool,
}

/// What the workloads share.
struct Ctx {
    store: Arc<AmazonS3>,
    target: S3Target,
    params: Params,
    server: Option<ServerProbe>,
    /// Every object written, deleted at the end.
    written: std::sync::Mutex<Vec<Path>>,
}

impl Ctx {
    fn wrote(&self, path: &Path) {
        self.written
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(path.clone());
    }

    fn finish(
        &self,
        meter: Meter,
        workload: Workload,
        recorder: &Recorder,
        details: BTreeMap<String, f64>,
    ) -> WorkloadResult {
        meter.finish(
            self.server.as_ref(),
            workload.name(),
            description(workload),
            recorder,
            workload.headline_mib(),
            details,
        )
    }
}

fn description(workload: Workload) -> &'static str {
    match workload {
        Workload::Push => "S3 PUT of one object of --blob-size (multipart above one part)",
        Workload::Pull => "S3 GET of the whole object",
        Workload::PullRange => "S3 Range GETs of --range-size across the object, concurrently",
        Workload::ConcurrentPush => "concurrent S3 PUTs of distinct objects",
        _ => "not run against S3",
    }
}

/// Runs the workloads that apply to a bucket, one after the other, in the
/// report format `compare` and the scripts read.
pub async fn run(options: &S3Options) -> anyhow::Result<Report> {
    let params = &options.params;
    params.validate()?;
    let server = options.pid.map(ServerProbe::new).transpose()?;
    let load_before = procfs::load_average();
    let started_unix_s = u64::try_from(berth_util::now()).unwrap_or(0);
    let connections = params.range_concurrency.max(params.concurrent_pushes);
    let ctx = Ctx {
        store: Arc::new(options.target.store(connections)?),
        target: options.target.clone(),
        params: params.clone(),
        server: server.clone(),
        written: Default::default(),
    };
    let idle_rss_kib = server.as_ref().map(|s| s.rss_kib()).transpose()?;
    let mut results = Vec::new();
    let mut peak_reset = server.is_some();
    for &workload in &options.workloads {
        if !WORKLOADS.contains(&workload) {
            continue;
        }
        if let Some(s) = &server {
            peak_reset &= s.reset_peak().is_ok();
        }
        let outcome = match workload {
            Workload::Push => push(&ctx).await,
            Workload::Pull => pull(&ctx).await,
            Workload::PullRange => pull_range(&ctx).await,
            _ => concurrent_push(&ctx).await,
        };
        let mut result = outcome.unwrap_or_else(|e| crate::failed(workload, &e));
        result.server_peak_rss_kib = server.as_ref().and_then(|s| s.peak_kib().ok());
        if options.progress {
            eprintln!(
                "[{}] {}: {} ops, {} errors, {} {} in {:.2}s, p50 {} ms, p99 {} ms",
                options.label.as_deref().unwrap_or("s3"),
                result.name,
                result.ops,
                result.errors,
                report::num(result.throughput()),
                result.unit,
                result.elapsed_s,
                report::ms(result.latency_ms.p50),
                report::ms(result.latency_ms.p99),
            );
        }
        results.push(result);
    }
    clean_up(&ctx).await;
    Ok(Report {
        tool: "berth-bench".to_string(),
        version: env!("CARGO_PKG_VERSION").to_string(),
        label: options.label.clone(),
        url: options.target.url(),
        // The report format knows registries and static servers; a bucket
        // is read and written like a registry's blobs.
        mode: Mode::Registry,
        started_unix_s,
        params: params.clone(),
        server_pid: options.pid,
        idle_rss_kib,
        peak_rss_kib: results.iter().filter_map(|r| r.server_peak_rss_kib).max(),
        peak_reset_per_workload: peak_reset,
        load_before,
        load_after: procfs::load_average(),
        workloads: results,
    })
}

/// Deletes every object the run wrote (best effort: a failure is printed).
async fn clean_up(ctx: &Ctx) {
    let paths = std::mem::take(&mut *ctx.written.lock().unwrap_or_else(|p| p.into_inner()));
    let mut deletes = futures::stream::iter(paths)
        .map(|path| {
            let store = ctx.store.clone();
            async move { (store.delete(&path).await, path) }
        })
        .buffer_unordered(16);
    while let Some((result, path)) = deletes.next().await {
        if let Err(e) = result {
            eprintln!("berth-bench: cannot delete s3 object {path}: {e}");
        }
    }
}

/// Object name of a blob: its size and seed, so reruns with other sizes
/// never read a stale object.
fn object_name(spec: BlobSpec) -> String {
    format!("{}-{}", spec.size, spec.seed)
}

/// Stores `spec` at `path` as berth stores a request body: one PUT if it
/// fits in a part, else a multipart upload with bounded buffering.
async fn put_object(
    store: &AmazonS3,
    target: &S3Target,
    path: &Path,
    spec: BlobSpec,
) -> anyhow::Result<()> {
    if spec.size <= target.part_size {
        // At most one part (5 MiB by default) in memory, as berth buffers it.
        store
            .put(path, PutPayload::from(spec.all()))
            .await
            .with_context(|| format!("PUT {path}"))?;
        return Ok(());
    }
    let upload = store
        .put_multipart(path)
        .await
        .with_context(|| format!("start a multipart upload to {path}"))?;
    let mut writer = WriteMultipart::new_with_chunk_size(upload, target.part_size as usize);
    let mut body = Box::pin(spec.stream(0..spec.size));
    let sent: anyhow::Result<()> = async {
        while let Some(chunk) = body.next().await {
            writer
                .wait_for_capacity(target.parts_in_flight)
                .await
                .with_context(|| format!("upload a part of {path}"))?;
            writer.put(chunk?);
        }
        Ok(())
    }
    .await;
    match sent {
        Ok(()) => {
            writer
                .finish()
                .await
                .with_context(|| format!("complete the multipart upload to {path}"))?;
            Ok(())
        }
        Err(e) => {
            let _ = writer.abort().await;
            Err(e)
        }
    }
}

/// `--repeat` objects of `--blob-size`, one after the other.
async fn push(ctx: &Ctx) -> anyhow::Result<WorkloadResult> {
    let p = &ctx.params;
    let mut recorder = Recorder::new();
    let meter = Meter::start(ctx.server.as_ref());
    for i in 0..p.repeat as u64 {
        let spec = BlobSpec::new(seeds::PUSH + i, p.blob_size);
        let path = ctx.target.path(Workload::Push, &object_name(spec));
        ctx.wrote(&path);
        let start = Instant::now();
        let result = put_object(&ctx.store, &ctx.target, &path, spec).await;
        recorder.outcome(start, spec.size, result);
    }
    Ok(ctx.finish(meter, Workload::Push, &recorder, part_details(ctx)))
}

fn part_details(ctx: &Ctx) -> BTreeMap<String, f64> {
    BTreeMap::from([
        ("part_bytes".to_string(), ctx.target.part_size as f64),
        (
            "parts_in_flight".to_string(),
            ctx.target.parts_in_flight as f64,
        ),
    ])
}

/// The object the pulls read (the first `push` object), stored untimed if
/// the bucket lacks it.
async fn pull_object(ctx: &Ctx) -> anyhow::Result<(BlobSpec, Path)> {
    let spec = BlobSpec::new(seeds::PUSH, ctx.params.blob_size);
    let path = ctx.target.path(Workload::Push, &object_name(spec));
    match ctx.store.head(&path).await {
        Ok(meta) if meta.size == spec.size => {}
        Ok(_) | Err(object_store::Error::NotFound { .. }) => {
            ctx.wrote(&path);
            put_object(&ctx.store, &ctx.target, &path, spec)
                .await
                .context("cannot store the object for the pull workloads")?;
        }
        Err(e) => return Err(e).with_context(|| format!("HEAD {path}")),
    }
    Ok((spec, path))
}

/// `--pull-repeat` GETs of the whole object.
async fn pull(ctx: &Ctx) -> anyhow::Result<WorkloadResult> {
    let (spec, path) = pull_object(ctx).await?;
    let digest = if ctx.params.verify {
        Some(data::digests(&[spec]).await?.remove(0))
    } else {
        None
    };
    let mut recorder = Recorder::new();
    let meter = Meter::start(ctx.server.as_ref());
    for _ in 0..ctx.params.pull_repeat {
        let start = Instant::now();
        let result = get_whole(&ctx.store, &path, spec, digest.as_deref()).await;
        recorder.outcome(start, spec.size, result);
    }
    Ok(ctx.finish(meter, Workload::Pull, &recorder, BTreeMap::new()))
}

async fn get_whole(
    store: &AmazonS3,
    path: &Path,
    spec: BlobSpec,
    digest: Option<&str>,
) -> anyhow::Result<()> {
    let mut body = store
        .get(path)
        .await
        .with_context(|| format!("GET {path}"))?
        .into_stream();
    let mut received = 0u64;
    let mut hasher = digest.map(|_| Hasher::default());
    while let Some(chunk) = body.next().await {
        let chunk = chunk.with_context(|| format!("GET {path}"))?;
        received += chunk.len() as u64;
        if let Some(h) = hasher.as_mut() {
            h.update(&chunk);
        }
    }
    ensure!(
        received == spec.size,
        "received {received} bytes of a {}-byte object",
        spec.size
    );
    if let (Some(h), Some(digest)) = (hasher, digest) {
        let got = h.finish();
        ensure!(got == digest, "pulled bytes hash to {got}, not {digest}");
    }
    Ok(())
}

/// `--range-requests` GETs of `--range-size` at consecutive offsets
/// (wrapping), `--range-concurrency` at a time: the registry workload's
/// pattern.
async fn pull_range(ctx: &Ctx) -> anyhow::Result<WorkloadResult> {
    let (spec, path) = pull_object(ctx).await?;
    let p = &ctx.params;
    let count = p.range_count();
    let range_size = p.range_size.min(spec.size);
    let slots = (spec.size / range_size).max(1);
    let next = Arc::new(AtomicU64::new(0));
    let meter = Meter::start(ctx.server.as_ref());
    let mut tasks = JoinSet::new();
    for _ in 0..p.range_concurrency {
        let (store, path, next, verify) = (ctx.store.clone(), path.clone(), next.clone(), p.verify);
        tasks.spawn(async move {
            let mut recorder = Recorder::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= count {
                    break;
                }
                let at = (i % slots) * range_size;
                let range = at..(at + range_size).min(spec.size);
                let start = Instant::now();
                let result = get_range(&store, &path, spec, range.clone(), verify).await;
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
    store: &AmazonS3,
    path: &Path,
    spec: BlobSpec,
    range: std::ops::Range<u64>,
    verify: bool,
) -> anyhow::Result<()> {
    let options = GetOptions {
        range: Some(GetRange::Bounded(range.clone())),
        ..GetOptions::default()
    };
    let mut body = store
        .get_opts(path, options)
        .await
        .with_context(|| format!("GET {path} {range:?}"))?
        .into_stream();
    let mut received = Vec::new();
    let mut len = 0u64;
    while let Some(chunk) = body.next().await {
        let chunk = chunk.with_context(|| format!("GET {path} {range:?}"))?;
        len += chunk.len() as u64;
        if verify {
            received.extend_from_slice(&chunk);
        }
    }
    ensure!(
        len == range.end - range.start,
        "range {range:?}: received {len} bytes"
    );
    if verify {
        ensure!(
            received == spec.bytes(range.clone()),
            "range {range:?}: bytes differ from the object's"
        );
    }
    Ok(())
}

/// `--concurrent-pushes` distinct objects of `--concurrent-blob-size`, all
/// at once.
async fn concurrent_push(ctx: &Ctx) -> anyhow::Result<WorkloadResult> {
    let p = &ctx.params;
    let meter = Meter::start(ctx.server.as_ref());
    let mut tasks = JoinSet::new();
    for i in 0..p.concurrent_pushes as u64 {
        let spec = BlobSpec::new(seeds::CONCURRENT + i, p.concurrent_blob_size);
        let path = ctx
            .target
            .path(Workload::ConcurrentPush, &object_name(spec));
        ctx.wrote(&path);
        let (store, target) = (ctx.store.clone(), ctx.target.clone());
        tasks.spawn(async move {
            let start = Instant::now();
            let result = put_object(&store, &target, &path, spec).await;
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
    let mut details = part_details(ctx);
    details.insert("concurrency".to_string(), p.concurrent_pushes as f64);
    Ok(ctx.finish(meter, Workload::ConcurrentPush, &recorder, details))
}

/// One line for the progress output: what a push does against this target.
pub fn summary(target: &S3Target) -> String {
    format!(
        "s3 {}: parts of {}, {} in flight",
        target.url(),
        format_size(target.part_size),
        target.parts_in_flight
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args() -> S3Args {
        S3Args {
            s3_bucket: Some("berth".into()),
            s3_region: Some("garage".into()),
            s3_access_key_id: Some("GK1".into()),
            s3_secret_access_key: Some("secret".into()),
            ..S3Args::default()
        }
    }

    #[test]
    fn flags_resolve_to_a_target() {
        let t = args()
            .resolve(Some("http://127.0.0.1:3900"))
            .expect("target");
        assert_eq!(t.endpoint.as_deref(), Some("http://127.0.0.1:3900"));
        assert_eq!(t.prefix, "berth-bench/");
        assert_eq!((t.part_size, t.parts_in_flight), (5 * MIB, 1));
        assert_eq!(t.url(), "http://127.0.0.1:3900/berth/berth-bench/");
        assert_eq!(
            t.path(Workload::ConcurrentPush, "7-2000").as_ref(),
            "berth-bench/concurrent-push/7-2000"
        );
        assert!(!format!("{t:?}").contains("secret"));
        t.store(4).expect("the client builds");

        let mut a = args();
        a.s3_endpoint = Some("http://e:1".into());
        a.s3_prefix = Some("/direct".into());
        let t = a.resolve(None).expect("target");
        assert_eq!(t.endpoint.as_deref(), Some("http://e:1"));
        assert_eq!(t.prefix, "direct/");
        assert!(a.any_given());
        assert!(a.resolve(Some("http://other:2")).is_err());
        assert!(a.resolve(Some("http://e:1")).is_ok());

        let none = S3Args::default();
        assert!(!none.any_given());
        assert!(none.resolve(Some("http://e:1")).is_err(), "no bucket");
        let small = S3Args {
            s3_part_size: Some(MIB),
            ..args()
        };
        assert!(small.resolve(None).is_err());
        let aws = args().resolve(None).expect("target");
        assert_eq!(aws.url(), "https://s3.amazonaws.com/berth/berth-bench/");
    }

    #[test]
    fn object_names_carry_size_and_seed() {
        assert_eq!(object_name(BlobSpec::new(1, 4 * MIB)), "4194304-1");
        assert!(WORKLOADS.iter().all(|w| w.headline_mib()));
        let t = args().resolve(None).expect("target");
        assert!(summary(&t).contains("parts of 5MiB, 1 in flight"));
        assert_eq!(description(Workload::Layers), "not run against S3");
    }
}
