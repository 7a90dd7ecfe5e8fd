//! The `berth-bench` command line.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};

use crate::compare::{Comparison, Runs};
use crate::params::ParamArgs;
use crate::report::{write_json, Report};
use crate::{Mode, RunOptions, Workload};

#[derive(Debug, Parser)]
#[command(
    name = "berth-bench",
    version,
    about = "Benchmark any OCI distribution registry: throughput, p50/p99 latency and server memory per workload"
)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the workloads against one server and print a table.
    ///
    /// Workloads: push, push-chunked, pull, pull-range, manifest-get,
    /// layers, concurrent-push, tags-list (see docs/performance.md).
    /// Exits 1 if any operation failed.
    Run(Box<RunArgs>),
    /// Join the reports of berth, Distribution and nginx (and, optionally,
    /// berth and nginx over TLS and berth with a bearer token) into one
    /// table with the ratio berth / Distribution and berth's targets, each
    /// met or MISSED.
    Compare(Box<CompareArgs>),
    /// Mixed traffic for a long time (pushes, pulls, ranges, manifests, tag
    /// lists, deletes) while the server's RSS is sampled.
    ///
    /// Exits 1 if any operation failed or RSS grew by --max-growth (10%) or
    /// more after the warm-up (see docs/performance.md, "Soak").
    Soak(Box<crate::soak::SoakArgs>),
}

/// What serves the URL of `run`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum RunMode {
    /// A registry speaking the distribution API.
    Registry,
    /// A static file server holding the same bytes at the same paths.
    Static,
    /// An S3 bucket, driven directly (the --s3-* flags).
    S3,
}

#[derive(Debug, Args)]
struct RunArgs {
    /// Base URL of the registry (or static server), e.g. http://127.0.0.1:5000
    /// (with --mode s3: the S3 endpoint, or --s3-endpoint).
    #[arg(required_unless_present = "s3_bucket")]
    url: Option<String>,
    /// What serves the URL: a registry, or a static file server holding the
    /// same bytes at the same paths (see --static-dir); only the GET
    /// workloads run against a static server. With s3, the blob workloads
    /// (push, pull, pull-range, concurrent-push) run against an S3 bucket
    /// directly, as berth's S3 storage makes the requests: the reference
    /// for a registry storing its blobs there.
    #[arg(long, value_enum, default_value = "registry")]
    mode: RunMode,
    /// Comma-separated workloads to run [all].
    #[arg(long, value_enum, value_delimiter = ',')]
    workloads: Vec<Workload>,
    /// Pid of the server process, for its idle/peak RSS and CPU time.
    #[arg(long)]
    pid: Option<u32>,
    /// Name of the server in the report.
    #[arg(long)]
    label: Option<String>,
    /// Repositories are created under this prefix.
    #[arg(long, default_value = "bench")]
    repo_prefix: String,
    /// Also write the report as JSON to this file.
    #[arg(long, value_name = "FILE")]
    json: Option<PathBuf>,
    /// First measure the fsync'd write speed of the filesystem of this
    /// directory (a reference row).
    #[arg(long, value_name = "DIR")]
    disk_dir: Option<PathBuf>,
    /// With --mode static: first write the files to serve into this
    /// directory (the static server's root).
    #[arg(long, value_name = "DIR")]
    static_dir: Option<PathBuf>,
    /// Login for HTTP Basic authentication on every request.
    #[arg(long, requires = "password_source")]
    user: Option<String>,
    /// Password for --user.
    #[arg(
        long,
        env = "BERTH_BENCH_PASSWORD",
        hide_env_values = true,
        group = "password_source"
    )]
    password: Option<String>,
    /// File holding the password for --user (e.g. berth's
    /// <data>/initial-owner-password).
    #[arg(long, value_name = "FILE", group = "password_source")]
    password_file: Option<PathBuf>,
    /// For an https:// URL: also trust the PEM certificates of this file
    /// (a CA, or the server's self-signed certificate itself); the system's
    /// CAs and SSL_CERT_FILE are trusted too.
    #[arg(long, value_name = "PEM")]
    ca_file: Option<PathBuf>,
    /// No progress lines on stderr.
    #[arg(long, short)]
    quiet: bool,
    #[command(flatten)]
    params: ParamArgs,
    #[command(flatten)]
    s3: crate::s3::S3Args,
}

#[derive(Debug, Args)]
struct CompareArgs {
    /// berth's report.
    #[arg(long, value_name = "FILE", required_unless_present = "from")]
    berth: Option<PathBuf>,
    /// Distribution's report.
    #[arg(long, value_name = "FILE")]
    distribution: Option<PathBuf>,
    /// The static-file ceiling's report.
    #[arg(long, value_name = "FILE")]
    nginx: Option<PathBuf>,
    /// berth's report over TLS (https://), for pull over TLS vs plain pull.
    #[arg(long, value_name = "FILE")]
    berth_tls: Option<PathBuf>,
    /// nginx's report over TLS, the ceiling of the TLS rows.
    #[arg(long, value_name = "FILE")]
    nginx_tls: Option<PathBuf>,
    /// berth's manifest-get report with a bearer token (--manifest-auth bearer).
    #[arg(long, value_name = "FILE")]
    berth_bearer: Option<PathBuf>,
    /// Recompute the table from the reports inside an earlier comparison's
    /// JSON (bench/results/*.json) instead of --berth/--distribution/--nginx.
    #[arg(
        long,
        value_name = "FILE",
        conflicts_with_all = ["berth", "distribution", "nginx", "berth_tls", "nginx_tls", "berth_bearer"]
    )]
    from: Option<PathBuf>,
    /// Write the reports and the comparison as one JSON file.
    #[arg(long, value_name = "FILE")]
    json: Option<PathBuf>,
    /// Write the table as Markdown to this file.
    #[arg(long, value_name = "FILE")]
    markdown: Option<PathBuf>,
}

/// Parses the command line and runs it.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    match execute(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("berth-bench: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn execute(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Run(args) => run(*args),
        Command::Compare(args) => compare(*args),
        Command::Soak(args) => crate::soak::main(*args),
    }
}

fn run(args: RunArgs) -> anyhow::Result<ExitCode> {
    let mode = match args.mode {
        RunMode::Registry => Mode::Registry,
        RunMode::Static => Mode::Static,
        RunMode::S3 => return run_s3(args),
    };
    anyhow::ensure!(!args.s3.any_given(), "the --s3-* flags need --mode s3");
    let url = args.url.as_deref().context("give the URL of the server")?;
    let params = args.params.resolve()?;
    let mut options = RunOptions::new(url, params);
    options.mode = mode;
    if !args.workloads.is_empty() {
        options.workloads = args.workloads;
    }
    options.pid = args.pid;
    options.label = args.label;
    options.repo_prefix = args.repo_prefix;
    options.disk_dir = args.disk_dir;
    options.static_dir = args.static_dir;
    options.ca_file = args.ca_file;
    options.progress = !args.quiet;
    options.credentials =
        crate::Credentials::from_flags(args.user, args.password, args.password_file)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let report = runtime.block_on(crate::run(&options))?;
    print!("{}", report.table());
    if let Some(path) = &args.json {
        report.write(path)?;
    }
    Ok(if report.total_errors() == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// `run --mode s3`: the blob workloads against a bucket.
fn run_s3(args: RunArgs) -> anyhow::Result<ExitCode> {
    anyhow::ensure!(
        args.user.is_none() && args.disk_dir.is_none() && args.static_dir.is_none(),
        "--user, --disk-dir and --static-dir do not apply to --mode s3"
    );
    let target = args.s3.resolve(args.url.as_deref())?;
    let options = crate::s3::S3Options {
        target,
        workloads: if args.workloads.is_empty() {
            Workload::ALL.to_vec()
        } else {
            args.workloads
        },
        params: args.params.resolve()?,
        pid: args.pid,
        label: args.label,
        progress: !args.quiet,
    };
    if options.progress {
        eprintln!(
            "[{}] {}",
            options.label.as_deref().unwrap_or("s3"),
            crate::s3::summary(&options.target)
        );
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let report = runtime.block_on(crate::s3::run(&options))?;
    print!("{}", report.table());
    if let Some(path) = &args.json {
        report.write(path)?;
    }
    Ok(if report.total_errors() == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn compare(args: CompareArgs) -> anyhow::Result<ExitCode> {
    let read = |p: &Option<PathBuf>| p.as_deref().map(Report::read).transpose();
    let runs = match (&args.from, &args.berth) {
        (Some(from), _) => {
            let text = std::fs::read_to_string(from)
                .with_context(|| format!("cannot read {}", from.display()))?;
            serde_json::from_str::<Comparison>(&text)
                .with_context(|| format!("{} is not a comparison", from.display()))?
                .runs
        }
        (None, Some(berth)) => Runs {
            berth: Report::read(berth)?,
            distribution: read(&args.distribution)?,
            nginx: read(&args.nginx)?,
            berth_tls: read(&args.berth_tls)?,
            nginx_tls: read(&args.nginx_tls)?,
            berth_bearer: read(&args.berth_bearer)?,
        },
        (None, None) => anyhow::bail!("give --berth FILE or --from FILE"),
    };
    let comparison = runs.compare();
    print!("{}", comparison.table());
    if let Some(path) = &args.json {
        write_json(path, &comparison)?;
    }
    if let Some(path) = &args.markdown {
        std::fs::write(path, comparison.markdown())
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    Ok(ExitCode::SUCCESS)
}
