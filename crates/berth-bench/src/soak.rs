//! `berth-bench soak`: mixed traffic for a long time while the server's
//! resident memory is sampled, to find memory that grows with the work done
//! rather than with the work in flight.
//!
//! `--concurrency` workers each run a closed loop over blobs of their own
//! ([`SLOTS_PER_WORKER`] distinct blobs of `--blob-size`, in one of
//! [`REPOS`] repositories). A round on one blob: push it (monolithic and
//! chunked in turn), pull it whole, [`RANGES_PER_ROUND`] `Range` GETs across
//! it, PUT a manifest naming it under a tag, [`MANIFEST_GETS_PER_ROUND`]
//! GETs of that manifest by tag, one walk of the repository's tag list, then
//! DELETE the manifest and the blob. Every blob comes round again, so the
//! bytes the registry holds stay bounded by workers × slots × blob size
//! whatever the duration (a deleted blob's bytes stay until the registry's
//! garbage collector runs; pushed again, they are stored once), and the tag
//! lists stay short.
//!
//! Everything pulled is checked (full pulls by digest, ranges byte for
//! byte); nothing is held whole in memory (bodies are generated and hashed a
//! chunk at a time, as in the other workloads). Every loop stops at the
//! deadline; a request still running then may finish within [`GRACE`], so
//! the command ends by itself.
//!
//! RSS (`VmRSS` of `--pid`) is read at the start, every `--sample-every`,
//! exactly at the end of the warm-up, and after the last request. The
//! growth is (highest sample from the end of the warm-up on − the sample at
//! the end of the warm-up) / the sample at the end of the warm-up; the soak
//! fails if it is `--max-growth` (10%) or more, or if any operation failed.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{ensure, Context};
use bytes::Bytes;
use clap::Args;
use reqwest::header::{HeaderMap, AUTHORIZATION};
use reqwest::{StatusCode, Url};
use serde::{Deserialize, Serialize};
use serde_json::json;
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::client::{Client, Credentials, Mode, OCI_CONFIG, OCI_LAYER, OCI_MANIFEST};
use crate::data::{self, BlobSpec, Hasher};
use crate::image::Blob;
use crate::params::seconds;
use crate::procfs::{self, ServerProbe};
use crate::report::{mib, ms, num, render_table, write_json};
use crate::stats::{Latency, Meter, Recorder, WorkloadResult, MIB_PER_S, OPS_PER_S};
use crate::units::{format_size, parse_duration, parse_size, MIB};

/// Distinct blobs each worker cycles through.
pub const SLOTS_PER_WORKER: usize = 4;
/// Repositories the workers share (worker `w` uses `soak-{w % REPOS}`).
pub const REPOS: usize = 4;
/// `Range` GETs per round, spread across the blob.
pub const RANGES_PER_ROUND: u64 = 4;
/// Manifest GETs by tag per round.
pub const MANIFEST_GETS_PER_ROUND: usize = 8;
/// Page size (`n`) of the tag-list walk.
const TAGS_PAGE: usize = 10;
/// A tag walk longer than this is an error (Link headers that never end).
const MAX_TAG_PAGES: usize = 1000;
/// Longest one operation may take before it counts as failed.
const OP_TIMEOUT: Duration = Duration::from_secs(120);
/// How long an operation running at the deadline may still take.
pub const GRACE: Duration = Duration::from_secs(30);
/// Seeds of the soak's blobs (apart from the other workloads').
const SEED: u64 = 10_000;

/// The kinds of operation, each counted on its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Push,
    PushChunked,
    Pull,
    PullRange,
    ManifestPut,
    ManifestGet,
    TagsList,
    ManifestDelete,
    BlobDelete,
}

impl Op {
    pub const ALL: [Op; 9] = [
        Op::Push,
        Op::PushChunked,
        Op::Pull,
        Op::PullRange,
        Op::ManifestPut,
        Op::ManifestGet,
        Op::TagsList,
        Op::ManifestDelete,
        Op::BlobDelete,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Op::Push => "push",
            Op::PushChunked => "push-chunked",
            Op::Pull => "pull",
            Op::PullRange => "pull-range",
            Op::ManifestPut => "manifest-put",
            Op::ManifestGet => "manifest-get",
            Op::TagsList => "tags-list",
            Op::ManifestDelete => "manifest-delete",
            Op::BlobDelete => "blob-delete",
        }
    }

    fn description(self) -> &'static str {
        match self {
            Op::Push => "monolithic blob push (POST + PUT of the whole body)",
            Op::PushChunked => "chunked blob push (POST, PATCHes of --chunk-size, PUT)",
            Op::Pull => "full GET of a blob, checked against its digest",
            Op::PullRange => "Range GET of --range-size, checked byte for byte",
            Op::ManifestPut => "manifest PUT by tag",
            Op::ManifestGet => "manifest GET by tag",
            Op::TagsList => "walk of a repository's tag list (n=10)",
            Op::ManifestDelete => "manifest DELETE by digest",
            Op::BlobDelete => "blob DELETE",
        }
    }

    fn moves_payload(self) -> bool {
        matches!(self, Op::Push | Op::PushChunked | Op::Pull | Op::PullRange)
    }
}

/// How long and how hard the soak runs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SoakSettings {
    #[serde(with = "seconds")]
    pub duration: Duration,
    /// The first part of the run, after which memory must stop growing.
    #[serde(with = "seconds")]
    pub warm_up: Duration,
    #[serde(with = "seconds")]
    pub sample_every: Duration,
    /// Workers, each a closed loop.
    pub concurrency: usize,
    pub blob_size: u64,
    /// PATCH size of the chunked pushes.
    pub chunk_size: u64,
    pub range_size: u64,
    /// Growth after the warm-up (percent) at which the soak fails.
    pub max_growth_pct: f64,
}

impl SoakSettings {
    /// The defaults for a run of `duration`.
    pub fn new(duration: Duration) -> Self {
        SoakSettings {
            duration,
            warm_up: default_warm_up(duration),
            sample_every: Duration::from_secs(5),
            concurrency: 16,
            blob_size: 4 * MIB,
            chunk_size: MIB,
            range_size: MIB,
            max_growth_pct: 10.0,
        }
    }

    pub fn validate(&self) -> anyhow::Result<()> {
        ensure!(!self.duration.is_zero(), "--duration must be positive");
        ensure!(
            self.warm_up < self.duration,
            "--warm-up must be shorter than --duration"
        );
        ensure!(
            !self.sample_every.is_zero(),
            "--sample-every must be positive"
        );
        ensure!(self.concurrency > 0, "--concurrency must be at least 1");
        ensure!(
            self.blob_size > 0 && self.chunk_size > 0 && self.range_size > 0,
            "--blob-size, --chunk-size and --range-size must be positive"
        );
        ensure!(
            self.max_growth_pct >= 0.0,
            "--max-growth must not be negative"
        );
        Ok(())
    }
}

/// 10% of the run, at most one minute.
pub fn default_warm_up(duration: Duration) -> Duration {
    (duration / 10).min(Duration::from_secs(60))
}

/// One soak against one server.
#[derive(Debug, Clone)]
pub struct SoakOptions {
    /// Base URL of the registry.
    pub url: String,
    /// The server's pid, for its RSS (without it only errors are judged).
    pub pid: Option<u32>,
    pub label: Option<String>,
    /// Repositories are created under this prefix.
    pub repo_prefix: String,
    /// HTTP Basic credentials for every request.
    pub credentials: Option<Credentials>,
    /// For an `https://` URL: PEM certificates to trust besides the system's.
    pub ca_file: Option<PathBuf>,
    pub settings: SoakSettings,
    /// A progress line on stderr at every sample.
    pub progress: bool,
}

impl SoakOptions {
    pub fn new(url: &str, settings: SoakSettings) -> Self {
        SoakOptions {
            url: url.to_string(),
            pid: None,
            label: None,
            repo_prefix: "bench".to_string(),
            credentials: None,
            ca_file: None,
            settings,
            progress: true,
        }
    }
}

/// The server's RSS at one moment, seconds after the start.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct RssSample {
    pub t_s: f64,
    pub rss_kib: u64,
}

/// What the samples say about growth after the warm-up.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct RssSummary {
    /// The first sample at or after the end of the warm-up.
    pub warm_up_rss_kib: u64,
    /// The highest sample from the end of the warm-up on.
    pub max_after_warm_up_kib: u64,
    /// The last sample (after the last request).
    pub final_rss_kib: u64,
    /// (max after warm-up − at warm-up) / at warm-up, in percent.
    pub growth_pct: f64,
}

/// The summary of `samples` (in time order) for a warm-up of `warm_up_s`;
/// none if no sample was taken at or after its end.
pub fn summarize(samples: &[RssSample], warm_up_s: f64) -> Option<RssSummary> {
    let at = samples.iter().position(|s| s.t_s >= warm_up_s)?;
    let warm = samples[at].rss_kib;
    let max = samples[at..].iter().map(|s| s.rss_kib).max()?;
    let last = samples.last()?.rss_kib;
    Some(RssSummary {
        warm_up_rss_kib: warm,
        max_after_warm_up_kib: max,
        final_rss_kib: last,
        growth_pct: (max as f64 - warm as f64) / (warm.max(1) as f64) * 100.0,
    })
}

/// Why a soak failed: the errors per kind, RSS growth at or over the limit,
/// RSS that could not be read. Empty: it passed.
pub fn verdict(
    operations: &[WorkloadResult],
    rss: Option<&RssSummary>,
    sample_errors: &[String],
    max_growth_pct: f64,
) -> Vec<String> {
    let mut failures = Vec::new();
    let failed: Vec<String> = operations
        .iter()
        .filter(|o| o.errors > 0)
        .map(|o| format!("{} {}", o.name, o.errors))
        .collect();
    if !failed.is_empty() {
        let total: u64 = operations.iter().map(|o| o.errors).sum();
        failures.push(format!("{total} errors ({})", failed.join(", ")));
    }
    if let Some(r) = rss {
        if r.growth_pct >= max_growth_pct {
            failures.push(format!(
                "RSS grew {:.1}% after the warm-up ({} → {}), the limit is {max_growth_pct}%",
                r.growth_pct,
                mib(r.warm_up_rss_kib),
                mib(r.max_after_warm_up_kib)
            ));
        }
    }
    if let Some(e) = sample_errors.first() {
        failures.push(format!(
            "{} RSS samples failed, e.g. {e}",
            sample_errors.len()
        ));
    }
    failures
}

/// Everything one soak measured.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SoakReport {
    pub tool: String,
    pub version: String,
    pub label: Option<String>,
    pub url: String,
    pub started_unix_s: u64,
    pub settings: SoakSettings,
    pub server_pid: Option<u32>,
    /// One row per kind of operation, over the whole run.
    pub operations: Vec<WorkloadResult>,
    /// All kinds together, with the server's and the client's CPU time.
    pub total: WorkloadResult,
    pub samples: Vec<RssSample>,
    pub sample_errors: Vec<String>,
    pub rss: Option<RssSummary>,
    /// Why the soak failed; empty if it passed.
    pub failures: Vec<String>,
    pub load_before: Option<f64>,
    pub load_after: Option<f64>,
}

impl SoakReport {
    pub fn passed(&self) -> bool {
        self.failures.is_empty()
    }

    pub fn total_errors(&self) -> u64 {
        self.operations.iter().map(|o| o.errors).sum()
    }

    pub fn operation(&self, name: &str) -> Option<&WorkloadResult> {
        self.operations.iter().find(|o| o.name == name)
    }

    pub fn write(&self, path: &Path) -> anyhow::Result<()> {
        write_json(path, self)
    }

    /// The human table: operations per kind, the RSS figures, the samples
    /// and the verdict.
    pub fn table(&self) -> String {
        use std::fmt::Write as _;
        let s = &self.settings;
        let mut out = String::new();
        let who = self.label.as_deref().unwrap_or("server");
        let _ = writeln!(
            out,
            "soak of {who} at {}: {}s (warm-up {}s), {} workers, blobs of {} (chunks {}, ranges {})",
            self.url,
            num(s.duration.as_secs_f64()),
            num(s.warm_up.as_secs_f64()),
            s.concurrency,
            format_size(s.blob_size),
            format_size(s.chunk_size),
            format_size(s.range_size),
        );
        let header = [
            "operation",
            "ops",
            "err",
            "op/s",
            "MiB/s",
            "p50 ms",
            "p99 ms",
            "max ms",
        ];
        let rows: Vec<Vec<String>> = self
            .operations
            .iter()
            .chain(std::iter::once(&self.total))
            .map(|o| {
                vec![
                    o.name.clone(),
                    o.ops.to_string(),
                    o.errors.to_string(),
                    num(o.ops_per_s),
                    o.mib_per_s.map_or("-".into(), num),
                    ms(o.latency_ms.p50),
                    ms(o.latency_ms.p99),
                    ms(o.latency_ms.max),
                ]
            })
            .collect();
        out.push_str(&render_table(&header, &rows));
        if let (Some(srv), Some(cli)) = (self.total.server_cpu_s, self.total.client_cpu_s) {
            let _ = writeln!(out, "CPU: server {srv:.1} s, client {cli:.1} s");
        }
        for o in &self.operations {
            for e in &o.error_samples {
                let _ = writeln!(out, "  {} error: {e}", o.name);
            }
        }
        match (&self.rss, self.server_pid) {
            (Some(r), Some(pid)) => {
                let _ = writeln!(
                    out,
                    "server pid {pid}: RSS at end of warm-up {}, max after warm-up {}, final {}, growth {:.1}% (limit {}%)",
                    mib(r.warm_up_rss_kib),
                    mib(r.max_after_warm_up_kib),
                    mib(r.final_rss_kib),
                    r.growth_pct,
                    s.max_growth_pct,
                );
            }
            (None, Some(pid)) => {
                let _ = writeln!(out, "server pid {pid}: no RSS sample after the warm-up");
            }
            (_, None) => {
                let _ = writeln!(out, "no --pid: RSS not sampled");
            }
        }
        if !self.samples.is_empty() {
            let _ = writeln!(out, "RSS samples (s: MiB):");
            for line in self.samples.chunks(6) {
                let cells: Vec<String> = line
                    .iter()
                    .map(|x| format!("{:>7.1}: {:>6.1}", x.t_s, x.rss_kib as f64 / 1024.0))
                    .collect();
                let _ = writeln!(out, " {}", cells.join("  "));
            }
        }
        if self.passed() {
            let _ = writeln!(out, "PASSED: no errors, RSS growth under the limit");
        } else {
            for f in &self.failures {
                let _ = writeln!(out, "FAILED: {f}");
            }
        }
        out
    }
}

/// One recorder per kind of operation.
struct Recorders(Vec<Recorder>);

impl Recorders {
    fn new() -> Self {
        Recorders(Op::ALL.iter().map(|_| Recorder::new()).collect())
    }

    fn get(&mut self, op: Op) -> &mut Recorder {
        &mut self.0[op as usize]
    }

    fn merge(&mut self, other: &Recorders) {
        for (mine, theirs) in self.0.iter_mut().zip(&other.0) {
            mine.merge(theirs);
        }
    }
}

/// What every worker shares.
struct Shared {
    client: Client,
    deleter: Deleter,
    settings: SoakSettings,
    repo_prefix: String,
    deadline: Instant,
    ops: AtomicU64,
    errors: AtomicU64,
}

impl Shared {
    fn over(&self) -> bool {
        Instant::now() >= self.deadline
    }

    /// Runs one operation (none once the deadline has passed) and records
    /// it; its future yields the payload bytes moved. True if it succeeded.
    async fn step(
        &self,
        recorders: &mut Recorders,
        op: Op,
        operation: impl Future<Output = anyhow::Result<u64>>,
    ) -> bool {
        if self.over() {
            return false;
        }
        let start = Instant::now();
        let limit = (start + OP_TIMEOUT).min(self.deadline + GRACE);
        let recorder = recorders.get(op);
        match tokio::time::timeout_at(limit, operation).await {
            Ok(Ok(bytes)) => {
                recorder.ok(start.elapsed(), bytes);
                self.ops.fetch_add(1, Ordering::Relaxed);
                true
            }
            Ok(Err(e)) => {
                recorder.error(format!("{e:#}"));
                self.errors.fetch_add(1, Ordering::Relaxed);
                false
            }
            Err(_) => {
                recorder.error(format!(
                    "no answer within {:.0} s",
                    start.elapsed().as_secs_f64()
                ));
                self.errors.fetch_add(1, Ordering::Relaxed);
                false
            }
        }
    }
}

/// DELETE requests, which the shared client does not make: a client of its
/// own with the same authorization and TLS configuration.
struct Deleter {
    http: reqwest::Client,
}

impl Deleter {
    fn new(client: &Client, connections: usize) -> anyhow::Result<Self> {
        let mut headers = HeaderMap::new();
        if let Some(value) = client.authorization() {
            headers.insert(AUTHORIZATION, value.clone());
        }
        let mut builder = reqwest::Client::builder()
            .default_headers(headers)
            .no_proxy()
            .http1_only()
            .tcp_nodelay(true)
            .pool_max_idle_per_host(connections.max(1))
            .connect_timeout(Duration::from_secs(10))
            .timeout(OP_TIMEOUT);
        if let Some(tls) = client.tls() {
            builder = builder.use_preconfigured_tls((**tls).clone());
        }
        Ok(Deleter {
            http: builder.build().context("cannot build the HTTP client")?,
        })
    }

    /// DELETE, which must answer 202 Accepted.
    async fn delete(&self, url: Url) -> anyhow::Result<u64> {
        let response = self
            .http
            .delete(url.clone())
            .send()
            .await
            .with_context(|| format!("DELETE {}", url.path()))?;
        let status = response.status();
        if status != StatusCode::ACCEPTED {
            let body: String = response
                .text()
                .await
                .unwrap_or_default()
                .chars()
                .take(300)
                .collect();
            anyhow::bail!(
                "DELETE {}: expected 202 Accepted, got {status}: {body}",
                url.path()
            );
        }
        Ok(0)
    }
}

/// A worker's blob: its spec and digest.
type Slot = (BlobSpec, String);

/// Runs the soak: the workers until the deadline, the sampler alongside.
pub async fn run(options: &SoakOptions) -> anyhow::Result<SoakReport> {
    let s = options.settings.clone();
    s.validate()?;
    let server = options.pid.map(ServerProbe::new).transpose()?;
    let load_before = procfs::load_average();
    let started_unix_s = u64::try_from(berth_util::now()).unwrap_or(0);
    let client = Client::with_ca_file(
        &options.url,
        Mode::Registry,
        s.concurrency,
        options.credentials.as_ref(),
        options.ca_file.as_deref(),
    )?;
    client.check().await?;
    let deleter = Deleter::new(&client, s.concurrency)?;

    // Every blob's digest, before the clock starts.
    let specs: Vec<BlobSpec> = (0..(s.concurrency * SLOTS_PER_WORKER) as u64)
        .map(|i| BlobSpec::new(SEED + i, s.blob_size))
        .collect();
    let digests = data::digests(&specs).await?;
    let mut slots: Vec<Slot> = specs.into_iter().zip(digests).collect();

    let meter = Meter::start(server.as_ref());
    let start = Instant::now();
    let shared = Arc::new(Shared {
        client,
        deleter,
        settings: s.clone(),
        repo_prefix: options.repo_prefix.trim_matches('/').to_string(),
        deadline: start + s.duration,
        ops: AtomicU64::new(0),
        errors: AtomicU64::new(0),
    });
    let mut tasks = JoinSet::new();
    for id in (0..s.concurrency).rev() {
        let own = slots.split_off(id * SLOTS_PER_WORKER);
        tasks.spawn(worker(shared.clone(), id, own));
    }

    // Samples until the deadline, then the workers' end, then a last one.
    let mut samples = Vec::new();
    let mut sample_errors = Vec::new();
    let mut sample = |samples: &mut Vec<RssSample>| {
        if let Some(probe) = &server {
            match probe.rss_kib() {
                Ok(rss_kib) => samples.push(RssSample {
                    t_s: start.elapsed().as_secs_f64(),
                    rss_kib,
                }),
                Err(e) => sample_errors.push(format!("{e:#}")),
            }
        }
    };
    let warm_up_at = start + s.warm_up;
    let mut warm_up_taken = false;
    let mut tick = start;
    loop {
        let take_warm_up = !warm_up_taken && warm_up_at <= tick;
        let next = if take_warm_up { warm_up_at } else { tick };
        if next >= shared.deadline {
            break;
        }
        tokio::time::sleep_until(next).await;
        sample(&mut samples);
        warm_up_taken |= take_warm_up;
        if !take_warm_up || tick == warm_up_at {
            tick += s.sample_every;
        }
        if options.progress {
            eprintln!(
                "[{}] soak {:>6.1}s: RSS {}, {} ops, {} errors",
                options.label.as_deref().unwrap_or("soak"),
                start.elapsed().as_secs_f64(),
                samples.last().map_or("-".into(), |x| mib(x.rss_kib)),
                shared.ops.load(Ordering::Relaxed),
                shared.errors.load(Ordering::Relaxed),
            );
        }
    }
    let mut recorders = Recorders::new();
    while let Some(task) = tasks.join_next().await {
        recorders.merge(&task.context("a soak worker failed")?);
    }
    sample(&mut samples);
    let elapsed = start.elapsed().as_secs_f64().max(1e-9);

    let operations: Vec<WorkloadResult> = Op::ALL
        .iter()
        .zip(&recorders.0)
        .map(|(op, r)| kind_result(*op, r, elapsed))
        .collect();
    let mut all = Recorder::new();
    for r in &recorders.0 {
        all.merge(r);
    }
    let total = meter.finish(
        server.as_ref(),
        "all",
        "every operation",
        &all,
        false,
        Default::default(),
    );
    let rss = summarize(&samples, s.warm_up.as_secs_f64());
    let failures = verdict(&operations, rss.as_ref(), &sample_errors, s.max_growth_pct);
    Ok(SoakReport {
        tool: "berth-bench".to_string(),
        version: env!("CARGO_PKG_VERSION").to_string(),
        label: options.label.clone(),
        url: options.url.clone(),
        started_unix_s,
        settings: s,
        server_pid: options.pid,
        operations,
        total,
        samples,
        sample_errors,
        rss,
        failures,
        load_before,
        load_after: procfs::load_average(),
    })
}

fn kind_result(op: Op, r: &Recorder, elapsed_s: f64) -> WorkloadResult {
    WorkloadResult {
        name: op.name().to_string(),
        description: op.description().to_string(),
        ops: r.ops,
        errors: r.errors,
        bytes: r.bytes,
        elapsed_s,
        ops_per_s: r.ops as f64 / elapsed_s,
        mib_per_s: (op.moves_payload() && r.bytes > 0)
            .then(|| r.bytes as f64 / MIB as f64 / elapsed_s),
        unit: if op.moves_payload() {
            MIB_PER_S
        } else {
            OPS_PER_S
        }
        .to_string(),
        latency_ms: if r.ops > 0 {
            r.latency()
        } else {
            Latency::default()
        },
        server_peak_rss_kib: None,
        server_cpu_s: None,
        client_cpu_s: None,
        details: Default::default(),
        error_samples: r.error_samples.clone(),
    }
}

/// One worker's closed loop over its blobs until the deadline.
async fn worker(shared: Arc<Shared>, id: usize, slots: Vec<Slot>) -> Recorders {
    let mut rec = Recorders::new();
    let s = &shared.settings;
    let client = &shared.client;
    let repo = format!("{}/soak-{}", shared.repo_prefix, id % REPOS);
    // The config the manifests name: tiny, pushed once, never deleted.
    let config = Blob::new(Bytes::from(
        json!({
            "architecture": "amd64",
            "os": "linux",
            "config": { "Labels": { "berth-bench.soak.worker": id.to_string() } },
            "rootfs": { "type": "layers", "diff_ids": [] },
        })
        .to_string(),
    ));
    // Its push is setup: only a failure is counted (as a push error).
    let mut setup = Recorders::new();
    let config_pushed = shared
        .step(&mut setup, Op::Push, async {
            if !client.blob_exists(&repo, &config.digest).await? {
                client
                    .push_bytes(&repo, config.bytes.clone(), &config.digest)
                    .await?;
            }
            Ok(config.bytes.len() as u64)
        })
        .await;
    if !config_pushed {
        rec.merge(&setup);
        return rec;
    }
    let mut patches = Recorder::new();
    let mut round = 0usize;
    while !shared.over() {
        let (spec, digest) = &slots[round % slots.len()];
        let (spec, digest) = (*spec, digest.as_str());
        let chunked = round % 2 == 1;
        let tag = format!("w{id}-{}", round % slots.len());
        round += 1;

        let pushed = if chunked {
            shared
                .step(&mut rec, Op::PushChunked, async {
                    client
                        .push_chunked(&repo, spec, digest, s.chunk_size, &mut patches)
                        .await?;
                    Ok(spec.size)
                })
                .await
        } else {
            shared
                .step(&mut rec, Op::Push, async {
                    client.push_stream(&repo, spec, digest).await?;
                    Ok(spec.size)
                })
                .await
        };
        if !pushed {
            continue;
        }
        let blob_url = match client.blob_url(&repo, digest) {
            Ok(url) => url,
            Err(e) => {
                rec.get(Op::Pull).error(format!("{e:#}"));
                continue;
            }
        };
        shared
            .step(
                &mut rec,
                Op::Pull,
                pull_whole(client, blob_url.clone(), spec, digest),
            )
            .await;
        for range in ranges(spec.size, s.range_size) {
            shared
                .step(
                    &mut rec,
                    Op::PullRange,
                    pull_range(client, blob_url.clone(), spec, range),
                )
                .await;
        }
        let manifest = manifest(&config, digest, spec.size);
        let manifest_digest = data::digest_of(&manifest);
        let put = shared
            .step(&mut rec, Op::ManifestPut, async {
                client
                    .put_manifest(&repo, &tag, OCI_MANIFEST, manifest.clone())
                    .await?;
                Ok(0)
            })
            .await;
        if put {
            for _ in 0..MANIFEST_GETS_PER_ROUND {
                shared
                    .step(&mut rec, Op::ManifestGet, async {
                        let got = client.get_manifest(&repo, &tag).await?;
                        ensure!(got == manifest, "GET manifest {tag}: other bytes than PUT");
                        Ok(0)
                    })
                    .await;
            }
            shared
                .step(&mut rec, Op::TagsList, list_tags(client, &repo, &tag))
                .await;
            shared
                .step(&mut rec, Op::ManifestDelete, async {
                    shared
                        .deleter
                        .delete(client.manifest_url(&repo, &manifest_digest)?)
                        .await
                })
                .await;
        }
        shared
            .step(
                &mut rec,
                Op::BlobDelete,
                shared.deleter.delete(blob_url.clone()),
            )
            .await;
    }
    rec
}

/// [`RANGES_PER_ROUND`] ranges of `range_size` (at most the blob) spread
/// evenly from the blob's start to its end.
pub fn ranges(size: u64, range_size: u64) -> Vec<std::ops::Range<u64>> {
    let len = range_size.min(size).max(1);
    let last_start = size.saturating_sub(len);
    (0..RANGES_PER_ROUND)
        .map(|k| {
            let start = if RANGES_PER_ROUND > 1 {
                last_start * k / (RANGES_PER_ROUND - 1)
            } else {
                0
            };
            start..(start + len).min(size)
        })
        .collect()
}

/// A one-layer manifest naming `config` and the layer (never in memory).
fn manifest(config: &Blob, layer_digest: &str, layer_size: u64) -> Bytes {
    Bytes::from(
        json!({
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": { "mediaType": OCI_CONFIG, "digest": config.digest, "size": config.bytes.len() },
            "layers": [{ "mediaType": OCI_LAYER, "digest": layer_digest, "size": layer_size }],
        })
        .to_string(),
    )
}

/// A full GET, hashed as it arrives.
async fn pull_whole(
    client: &Client,
    url: Url,
    spec: BlobSpec,
    digest: &str,
) -> anyhow::Result<u64> {
    let mut response = client.get(url, None).await?;
    let mut hasher = Hasher::default();
    let mut received = 0u64;
    while let Some(chunk) = response.chunk().await? {
        received += chunk.len() as u64;
        hasher.update(&chunk);
    }
    ensure!(
        received == spec.size,
        "received {received} bytes of a {}-byte blob",
        spec.size
    );
    let got = hasher.finish();
    ensure!(got == digest, "pulled bytes hash to {got}, not {digest}");
    Ok(received)
}

/// A `Range` GET, compared byte for byte (a range is at most
/// `--range-size` in memory).
async fn pull_range(
    client: &Client,
    url: Url,
    spec: BlobSpec,
    range: std::ops::Range<u64>,
) -> anyhow::Result<u64> {
    let body = client.get(url, Some(range.clone())).await?.bytes().await?;
    ensure!(
        body == spec.bytes(range.clone()),
        "range {range:?}: {} bytes that differ from the blob's",
        body.len()
    );
    Ok(body.len() as u64)
}

#[derive(Deserialize)]
struct TagsPage {
    #[serde(default)]
    tags: Option<Vec<String>>,
}

/// Walks the tag list page by page; `tag` must be in it.
async fn list_tags(client: &Client, repo: &str, tag: &str) -> anyhow::Result<u64> {
    let mut next = Some(client.url(&format!("v2/{repo}/tags/list?n={TAGS_PAGE}"))?);
    let (mut pages, mut found) = (0, false);
    while let Some(url) = next.take() {
        ensure!(
            pages < MAX_TAG_PAGES,
            "more than {MAX_TAG_PAGES} pages: the Link headers do not end"
        );
        let (body, link) = client.get_page(url).await?;
        let page: TagsPage = serde_json::from_slice(&body).context("tags page is not JSON")?;
        found |= page.tags.unwrap_or_default().iter().any(|t| t == tag);
        pages += 1;
        next = link;
    }
    ensure!(found, "the tag list of {repo} lacks {tag}");
    Ok(0)
}

/// `berth-bench soak`'s flags.
#[derive(Debug, Args)]
pub struct SoakArgs {
    /// Base URL of the registry, e.g. http://127.0.0.1:5000.
    url: String,
    /// Pid of the server process, whose RSS is sampled.
    #[arg(long)]
    pid: Option<u32>,
    /// How long the traffic runs.
    #[arg(long, value_parser = parse_duration, value_name = "DURATION", default_value = "10m")]
    duration: Duration,
    /// The first part of the run, after which RSS must not grow [10% of
    /// --duration, at most 1m].
    #[arg(long, value_parser = parse_duration, value_name = "DURATION")]
    warm_up: Option<Duration>,
    /// Time between RSS samples.
    #[arg(long, value_parser = parse_duration, value_name = "DURATION", default_value = "5s")]
    sample_every: Duration,
    /// Workers, each a closed loop over blobs of its own.
    #[arg(long, value_name = "N", default_value_t = 16)]
    concurrency: usize,
    /// Size of each blob.
    #[arg(long, value_parser = parse_size, value_name = "SIZE", default_value = "4MiB")]
    blob_size: u64,
    /// PATCH size of the chunked pushes.
    #[arg(long, value_parser = parse_size, value_name = "SIZE", default_value = "1MiB")]
    chunk_size: u64,
    /// Size of each Range GET.
    #[arg(long, value_parser = parse_size, value_name = "SIZE", default_value = "1MiB")]
    range_size: u64,
    /// RSS growth after the warm-up, in percent, at which the soak fails.
    #[arg(long, value_name = "PERCENT", default_value_t = 10.0)]
    max_growth: f64,
    /// Name of the server in the report.
    #[arg(long)]
    label: Option<String>,
    /// Repositories are created under this prefix.
    #[arg(long, default_value = "bench")]
    repo_prefix: String,
    /// Also write the report as JSON to this file.
    #[arg(long, value_name = "FILE")]
    json: Option<PathBuf>,
    /// Login for HTTP Basic authentication on every request.
    #[arg(long, requires = "soak_password_source")]
    user: Option<String>,
    /// Password for --user.
    #[arg(
        long,
        env = "BERTH_BENCH_PASSWORD",
        hide_env_values = true,
        group = "soak_password_source"
    )]
    password: Option<String>,
    /// File holding the password for --user.
    #[arg(long, value_name = "FILE", group = "soak_password_source")]
    password_file: Option<PathBuf>,
    /// For an https:// URL: also trust the PEM certificates of this file
    /// (a CA, or the server's self-signed certificate itself).
    #[arg(long, value_name = "PEM")]
    ca_file: Option<PathBuf>,
    /// No progress lines on stderr.
    #[arg(long, short)]
    quiet: bool,
}

/// `berth-bench soak`: exits 1 if the soak failed (errors, or RSS growth).
pub fn main(args: SoakArgs) -> anyhow::Result<ExitCode> {
    let settings = SoakSettings {
        duration: args.duration,
        warm_up: args.warm_up.unwrap_or(default_warm_up(args.duration)),
        sample_every: args.sample_every,
        concurrency: args.concurrency,
        blob_size: args.blob_size,
        chunk_size: args.chunk_size,
        range_size: args.range_size,
        max_growth_pct: args.max_growth,
    };
    settings.validate()?;
    let mut options = SoakOptions::new(&args.url, settings);
    options.pid = args.pid;
    options.label = args.label;
    options.repo_prefix = args.repo_prefix;
    options.ca_file = args.ca_file;
    options.progress = !args.quiet;
    options.credentials = Credentials::from_flags(args.user, args.password, args.password_file)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let report = runtime.block_on(run(&options))?;
    print!("{}", report.table());
    if let Some(path) = &args.json {
        report.write(path)?;
    }
    Ok(if report.passed() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::units::KIB;

    fn sample(t_s: f64, mib: u64) -> RssSample {
        RssSample {
            t_s,
            rss_kib: mib * 1024,
        }
    }

    #[test]
    fn growth_is_measured_from_the_end_of_the_warm_up() {
        let samples = [
            sample(0.0, 10),
            sample(5.0, 30),
            sample(6.0, 40),
            sample(10.0, 42),
            sample(15.0, 44),
            sample(16.0, 41),
        ];
        let r = summarize(&samples, 6.0).expect("summary");
        assert_eq!(r.warm_up_rss_kib, 40 * 1024);
        assert_eq!(r.max_after_warm_up_kib, 44 * 1024);
        assert_eq!(r.final_rss_kib, 41 * 1024);
        assert!((r.growth_pct - 10.0).abs() < 1e-9, "{r:?}");
        // The climb during the warm-up does not count; shrinking is 0%.
        let flat =
            summarize(&[sample(0.0, 5), sample(1.0, 50), sample(2.0, 45)], 1.0).expect("summary");
        assert_eq!(flat.growth_pct, 0.0);
        assert!(summarize(&samples, 20.0).is_none());
        assert!(summarize(&[], 0.0).is_none());

        let ok = kind_result(Op::Pull, &Recorder::new(), 1.0);
        assert!(verdict(std::slice::from_ref(&ok), Some(&flat), &[], 10.0).is_empty());
        // 10% is already too much; errors and sampling failures are named.
        let grown = verdict(std::slice::from_ref(&ok), Some(&r), &[], 10.0);
        assert_eq!(grown.len(), 1);
        assert!(grown[0].contains("10.0%"), "{grown:?}");
        let mut failing = Recorder::new();
        failing.error("boom");
        failing.error("boom");
        let bad = kind_result(Op::BlobDelete, &failing, 1.0);
        let both = verdict(&[ok, bad], Some(&r), &["gone".into()], 11.0);
        assert_eq!(both.len(), 2, "{both:?}");
        assert_eq!(both[0], "2 errors (blob-delete 2)");
        assert!(both[1].contains("gone"));
    }

    #[test]
    fn ranges_cover_the_blob_and_settings_validate() {
        let r = ranges(4 * MIB, MIB);
        assert_eq!(r.len(), RANGES_PER_ROUND as usize);
        assert_eq!(r[0], 0..MIB);
        assert_eq!(r.last().cloned(), Some(3 * MIB..4 * MIB));
        assert!(r.iter().all(|x| x.end - x.start == MIB));
        // A range larger than the blob is the whole blob.
        assert!(ranges(100, MIB).iter().all(|x| *x == (0..100)));
        let odd = ranges(10 * KIB + 3, 4 * KIB);
        assert!(odd
            .iter()
            .all(|x| x.end <= 10 * KIB + 3 && x.end - x.start == 4 * KIB));

        let s = SoakSettings::new(Duration::from_secs(600));
        assert_eq!(s.warm_up, Duration::from_secs(60));
        s.validate().expect("defaults are valid");
        assert_eq!(
            default_warm_up(Duration::from_secs(3)),
            Duration::from_millis(300)
        );
        assert_eq!(
            default_warm_up(Duration::from_secs(3600)),
            Duration::from_secs(60)
        );
        let bad = SoakSettings {
            warm_up: Duration::from_secs(600),
            ..s.clone()
        };
        assert!(bad.validate().is_err());
        let json = serde_json::to_string(&s).expect("json");
        let back: SoakSettings = serde_json::from_str(&json).expect("parse");
        assert_eq!(back, s);
    }
}
