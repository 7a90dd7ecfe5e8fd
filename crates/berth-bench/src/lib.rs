//! berth-bench: drives any registry through the OCI distribution API and
//! reports, per workload, throughput, latency percentiles (p50/p99) and the
//! server's peak memory.
//!
//! [`run`] is the whole benchmark against one server; the `berth-bench`
//! binary is a thin CLI over it ([`cli`]), and `compare` joins the reports
//! of several servers into one table ([`compare`]). See
//! docs/performance.md for the workloads and how to read the figures.

use std::path::PathBuf;

use anyhow::Context;

pub mod cli;
pub mod client;
pub mod compare;
pub mod data;
pub mod image;
pub mod params;
pub mod procfs;
pub mod report;
pub mod s3;
pub mod soak;
pub mod stats;
pub mod units;
pub mod workloads;

pub use client::{Credentials, Mode};
pub use params::Params;
pub use report::Report;
pub use stats::WorkloadResult;
pub use workloads::Workload;

use procfs::ServerProbe;
use workloads::Ctx;

/// One run against one server.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// Base URL, e.g. `http://127.0.0.1:5000` (or `https://`).
    pub url: String,
    pub mode: Mode,
    /// Workloads to run, in this order; in static mode the others are skipped.
    pub workloads: Vec<Workload>,
    /// The server's pid, for its memory and CPU.
    pub pid: Option<u32>,
    /// Name of the server in the report.
    pub label: Option<String>,
    /// Repositories are created under this prefix.
    pub repo_prefix: String,
    pub params: Params,
    /// Measure the disk's fsync'd write speed in this directory first.
    pub disk_dir: Option<PathBuf>,
    /// Static mode: write the files to serve into this directory first.
    pub static_dir: Option<PathBuf>,
    /// HTTP Basic credentials for every request (none: anonymous).
    pub credentials: Option<Credentials>,
    /// For an `https://` URL: PEM certificates to trust besides the
    /// system's CAs (a self-signed server certificate, say).
    pub ca_file: Option<PathBuf>,
    /// Print each workload's result to stderr as it finishes.
    pub progress: bool,
}

impl RunOptions {
    pub fn new(url: &str, params: Params) -> Self {
        RunOptions {
            url: url.to_string(),
            mode: Mode::Registry,
            workloads: Workload::ALL.to_vec(),
            pid: None,
            label: None,
            repo_prefix: "bench".to_string(),
            params,
            disk_dir: None,
            static_dir: None,
            credentials: None,
            ca_file: None,
            progress: true,
        }
    }
}

/// Runs the workloads one after the other. A workload that fails outright
/// is reported with its error and the run goes on; only a server that
/// cannot be reached at all (or bad options) fails the run.
pub async fn run(options: &RunOptions) -> anyhow::Result<Report> {
    options.params.validate()?;
    let server = options.pid.map(ServerProbe::new).transpose()?;
    let load_before = procfs::load_average();
    let started_unix_s = u64::try_from(berth_util::now()).unwrap_or(0);
    if let Some(dir) = &options.static_dir {
        let (dir, params, prefix) = (
            dir.clone(),
            options.params.clone(),
            options.repo_prefix.clone(),
        );
        tokio::task::spawn_blocking(move || workloads::write_static_files(&dir, &params, &prefix))
            .await?
            .context("cannot write the static files")?;
    }
    let connections = options
        .params
        .connections
        .max(options.params.range_concurrency)
        .max(options.params.concurrent_pushes);
    let client = client::Client::with_ca_file(
        &options.url,
        options.mode,
        connections,
        options.credentials.as_ref(),
        options.ca_file.as_deref(),
    )?;
    client.check().await?;
    let idle_rss_kib = server.as_ref().map(|s| s.rss_kib()).transpose()?;

    let mut results = Vec::new();
    if let Some(dir) = &options.disk_dir {
        let result = workloads::disk::run(dir, &options.params).await?;
        progress(options, &result);
        results.push(result);
    }
    let ctx = Ctx::new(
        client,
        options.params.clone(),
        server.clone(),
        &options.repo_prefix,
    );
    let mut peak_reset = server.is_some();
    for &workload in &options.workloads {
        if options.mode == Mode::Static && !workload.reads_only() {
            continue;
        }
        if let Some(s) = &server {
            peak_reset &= s.reset_peak().is_ok();
        }
        let mut result = match workload.run(&ctx).await {
            Ok(result) => result,
            Err(e) => failed(workload, &e),
        };
        result.server_peak_rss_kib = server.as_ref().and_then(|s| s.peak_kib().ok());
        progress(options, &result);
        results.push(result);
    }
    Ok(Report {
        tool: "berth-bench".to_string(),
        version: env!("CARGO_PKG_VERSION").to_string(),
        label: options.label.clone(),
        url: options.url.clone(),
        mode: options.mode,
        started_unix_s,
        params: options.params.clone(),
        server_pid: options.pid,
        idle_rss_kib,
        peak_rss_kib: results.iter().filter_map(|r| r.server_peak_rss_kib).max(),
        peak_reset_per_workload: peak_reset,
        load_before,
        load_after: procfs::load_average(),
        workloads: results,
    })
}

fn failed(workload: Workload, error: &anyhow::Error) -> WorkloadResult {
    WorkloadResult {
        name: workload.name().to_string(),
        description: workload.description().to_string(),
        ops: 0,
        errors: 1,
        bytes: 0,
        elapsed_s: 0.0,
        ops_per_s: 0.0,
        mib_per_s: None,
        unit: stats::OPS_PER_S.to_string(),
        latency_ms: stats::Latency::default(),
        server_peak_rss_kib: None,
        server_cpu_s: None,
        client_cpu_s: None,
        details: Default::default(),
        error_samples: vec![format!("{error:#}")],
    }
}

fn progress(options: &RunOptions, r: &WorkloadResult) {
    if options.progress {
        eprintln!(
            "[{}] {}: {} ops, {} errors, {} {} in {:.2}s, p50 {} ms, p99 {} ms",
            options.label.as_deref().unwrap_or("bench"),
            r.name,
            r.ops,
            r.errors,
            report::num(r.throughput()),
            r.unit,
            r.elapsed_s,
            report::ms(r.latency_ms.p50),
            report::ms(r.latency_ms.p99),
        );
    }
}
