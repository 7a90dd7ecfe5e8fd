//! `berth check-pull`: the client side of the diagnostics.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use berth_diagnostics::credentials::{self, Credentials};
use berth_diagnostics::pull::{local_platform, CredentialSource, ImageRef, PullCheck};
use berth_diagnostics::transport::Options;
use clap::Args;

use crate::output::{outln, print_json, Format};

#[derive(Debug, Args)]
pub struct CheckPullArgs {
    /// The image, as a pod spec names it: host[:port]/repository[:tag|@digest].
    pub image: String,
    /// A kubernetes.io/dockerconfigjson Secret (JSON, e.g. `kubectl get
    /// secret -o json`) or its .dockerconfigjson content.
    #[arg(long, value_name = "FILE", conflicts_with_all = ["docker_config", "username"])]
    pub pull_secret: Option<PathBuf>,
    /// A Docker config.json (or the directory holding it).
    #[arg(long, value_name = "PATH", conflicts_with = "username")]
    pub docker_config: Option<PathBuf>,
    /// Login: owner, the admin user, a service principal's app id, a token name.
    #[arg(long, requires = "password")]
    pub username: Option<String>,
    /// Password or secret (write `--password=-x…` if it starts with '-').
    #[arg(long, requires = "username")]
    pub password: Option<String>,
    /// The node's platform, os/arch[/variant]; default: this machine's.
    #[arg(long)]
    pub platform: Option<String>,
    #[command(flatten)]
    pub transport: TransportArgs,
    /// Output format (JSON keys in camelCase).
    #[arg(
        long,
        short = 'o',
        value_enum,
        ignore_case = true,
        default_value = "table"
    )]
    pub output: Format,
}

/// How the checks reach the registry.
#[derive(Debug, Args)]
pub struct TransportArgs {
    /// Speak plain HTTP to the registry (as for an insecure registry).
    #[arg(long)]
    pub plain_http: bool,
    /// Resolve names with this DNS server (IP:PORT) instead of the system's.
    #[arg(long, value_name = "IP:PORT")]
    pub dns_server: Option<SocketAddr>,
    /// Extra CA certificates (PEM) to trust.
    #[arg(long, value_name = "FILE")]
    pub ca_file: Option<PathBuf>,
    /// Seconds to wait for each connection and answer.
    #[arg(long, default_value_t = 5)]
    pub timeout: u64,
}

impl TransportArgs {
    /// Transport options, with the proxy settings of the environment as
    /// container clients read them.
    fn options(&self) -> Options {
        let mut options = Options {
            dns_server: self.dns_server,
            timeout: Duration::from_secs(self.timeout.max(1)),
            ca_file: self.ca_file.clone(),
            proxy: None,
            no_proxy: Vec::new(),
        };
        options.proxy_from_env(!self.plain_http);
        options
    }
}

fn credential_source(args: &CheckPullArgs, host: &str) -> anyhow::Result<CredentialSource> {
    if let (Some(u), Some(p)) = (&args.username, &args.password) {
        return Ok(CredentialSource::Explicit(Credentials {
            username: u.clone(),
            password: p.clone(),
        }));
    }
    let file = match (&args.pull_secret, &args.docker_config) {
        (Some(f), _) => f.clone(),
        (None, Some(p)) if p.is_dir() => p.join("config.json"),
        (None, Some(p)) => p.clone(),
        (None, None) => return Ok(CredentialSource::None),
    };
    let text = std::fs::read_to_string(&file)
        .with_context(|| format!("cannot read {}", file.display()))?;
    let what = file.display().to_string();
    let lookup = credentials::lookup(&text, host, &what)?;
    Ok(CredentialSource::File { what, lookup })
}

/// Runs the check; returns the process exit status.
/// `output` is the format asked for (its own `-o` or one before it).
pub async fn check_pull(args: &CheckPullArgs, output: Format) -> anyhow::Result<u8> {
    let image = ImageRef::parse(&args.image).map_err(|e| anyhow::anyhow!(e))?;
    let options = args.transport.options();
    let check = PullCheck {
        credentials: credential_source(args, &image.host)?,
        image,
        platform: args.platform.clone().unwrap_or_else(local_platform),
        plain_http: args.transport.plain_http,
        options,
    };
    let verdict = check.run().await;
    if output == Format::Json {
        print_json(&serde_json::to_value(&verdict)?);
        return Ok(verdict.exit_code);
    }
    for step in &verdict.steps {
        outln!("  ok  {:<11} {}", step.name, step.detail);
    }
    if verdict.ok {
        outln!("PASS  {} can be pulled", args.image);
    } else {
        outln!(
            "FAIL  {} (exit status {})",
            verdict.code.unwrap_or(""),
            verdict.exit_code
        );
        if let Some(e) = &verdict.evidence {
            outln!("  cause: {e}");
        }
        if let Some(f) = &verdict.fix {
            outln!("  fix:   {f}");
        }
    }
    Ok(verdict.exit_code)
}

#[derive(Debug, Args)]
pub struct CheckHealthArgs {
    /// The login server, host[:port].
    #[arg(long, env = "BERTH_REGISTRY_HOST")]
    pub registry: String,
    /// Login: owner, the admin user, a service principal's app id, a token name.
    #[arg(long, requires = "password")]
    pub username: Option<String>,
    /// Password or secret (write `--password=-x…` if it starts with '-').
    #[arg(long, requires = "username")]
    pub password: Option<String>,
    /// With --image: also fetch this repository's manifest and smallest layer.
    #[arg(long, requires = "image")]
    pub repository: Option<String>,
    /// The tag to check in --repository.
    #[arg(long, requires = "repository")]
    pub image: Option<String>,
    /// Every name (login server, data endpoints) must resolve to a private
    /// endpoint's address.
    #[arg(long)]
    pub expect_private_ip: bool,
    /// Go on after a failed step.
    #[arg(long)]
    pub ignore_errors: bool,
    /// Do not ask before running (there is nothing to confirm; accepted for
    /// scripts written for other health checks).
    #[arg(long)]
    pub yes: bool,
    #[command(flatten)]
    pub transport: TransportArgs,
    /// Output format (JSON keys in camelCase).
    #[arg(
        long,
        short = 'o',
        value_enum,
        ignore_case = true,
        default_value = "table"
    )]
    pub output: Format,
}

/// Runs the health check; exit status 1 when any step failed.
/// `output` is the format asked for (its own `-o` or one before it).
pub async fn check_health(args: &CheckHealthArgs, output: Format) -> anyhow::Result<u8> {
    use berth_diagnostics::health::HealthCheck;
    let registry = args
        .registry
        .trim_start_matches("https://")
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .to_string();
    let options = args.transport.options();
    let check = HealthCheck {
        registry,
        credentials: match (&args.username, &args.password) {
            (Some(u), Some(p)) => Some(Credentials {
                username: u.clone(),
                password: p.clone(),
            }),
            _ => None,
        },
        plain_http: args.transport.plain_http,
        options,
        expect_private_ip: args.expect_private_ip,
        image: args.repository.clone().zip(args.image.clone()),
        ignore_errors: args.ignore_errors,
    };
    let json = output == Format::Json;
    let findings = check
        .run(|f| {
            if json {
                return;
            }
            if f.ok {
                outln!("  ok    {:<22} {}", f.step, f.detail);
            } else {
                outln!(
                    "  FAIL  {:<22} {} {}",
                    f.step,
                    f.code.as_deref().unwrap_or(""),
                    f.detail
                );
                if let Some(fix) = &f.fix {
                    outln!("        fix: {fix}");
                }
            }
        })
        .await;
    let failed = findings.iter().any(|f| !f.ok);
    if json {
        print_json(&serde_json::json!({ "ok": !failed, "findings": findings }));
    } else if failed {
        outln!("FAIL  the registry is not healthy from here");
    } else {
        outln!("PASS  every check passed");
    }
    Ok(u8::from(failed))
}
