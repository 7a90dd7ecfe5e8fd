//! `berth check-pull`: the client side of the diagnostics.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use berth_client::credentials::{self as resolver, Source};
use berth_client::{RegistryAddress, Scheme};
use berth_diagnostics::credentials::{Credentials, Lookup};
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
    /// A Docker config.json (or the directory holding it). Without this,
    /// --pull-secret and --username: BERTH_USERNAME/BERTH_PASSWORD, else
    /// the files a kubelet reads (/var/lib/kubelet/config.json, then
    /// $DOCKER_CONFIG/config.json or ~/.docker/config.json, then
    /// /.docker/config.json), with their credential helpers.
    #[arg(long, value_name = "PATH", conflicts_with = "username")]
    pub docker_config: Option<PathBuf>,
    /// Login: owner, the admin user, a service principal's app id, a token name.
    #[arg(long, requires = "password")]
    pub username: Option<String>,
    /// Password or secret (write `--password=-x…` if it starts with '-').
    #[arg(long, requires = "username")]
    pub password: Option<String>,
    /// A service-account token (a file holding the JWT, as projected into
    /// a pod): walks the federated path a credential provider takes.
    #[arg(long, value_name = "FILE", conflicts_with_all = ["username", "pull_secret", "docker_config"])]
    pub service_account_token: Option<PathBuf>,
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
    /// Without it a loopback registry that does not speak TLS is reached
    /// over plain HTTP anyway, as Docker and containerd do (and the
    /// transcript says so).
    #[arg(long)]
    pub plain_http: bool,
    /// Resolve names with this DNS server (IP:PORT) instead of the system's.
    #[arg(long, value_name = "IP:PORT")]
    pub dns_server: Option<SocketAddr>,
    /// Extra CA certificates (PEM) to trust; a self-signed certificate
    /// given here is trusted as itself. SSL_CERT_FILE is read too.
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
            ca_files: berth_client::tls::ca_files(self.ca_file.as_deref()),
            proxy: None,
            no_proxy: Vec::new(),
        };
        options.proxy_from_env(!self.plain_http);
        options
    }
}

/// Where the credentials for `host` come from, in the resolver's order:
/// the flags, the files named on the command line, BERTH_*, then the
/// kubelet's config files.
fn credential_source(args: &CheckPullArgs, host: &str) -> anyhow::Result<CredentialSource> {
    let mut sources = Vec::new();
    if let Some(file) = &args.service_account_token {
        let token = std::fs::read_to_string(file)
            .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", file.display()))?;
        return Ok(CredentialSource::Explicit(Credentials::password(
            berth_client::credentials::FEDERATED_USER,
            token.trim(),
        )));
    }
    if let (Some(u), Some(p)) = (&args.username, &args.password) {
        sources.push(Source::Given {
            credentials: Credentials::password(u, p),
            what: "--username/--password".into(),
        });
    }
    let named = args.pull_secret.as_ref().or(args.docker_config.as_ref());
    if let Some(file) = named {
        if !file.exists() {
            anyhow::bail!("cannot read {}: no such file", file.display());
        }
        sources.push(Source::File(file.clone()));
    } else {
        sources.extend(resolver::environment_source());
        sources.extend(
            resolver::kubelet_config_paths()
                .into_iter()
                .map(Source::File),
        );
    }
    let resolution = resolver::resolve(host, &sources)?;
    Ok(match resolution.found {
        Some((c, what)) if what.starts_with("--") || what.starts_with("BERTH_") => {
            CredentialSource::Explicit(c)
        }
        Some((c, what)) => CredentialSource::File {
            what,
            lookup: Lookup::Found(c),
        },
        None if resolution.searched.is_empty() => CredentialSource::None,
        None => {
            let what = resolution
                .searched
                .iter()
                .map(|(w, _)| w.clone())
                .collect::<Vec<_>>()
                .join(", ");
            let mut hosts: Vec<String> = Vec::new();
            for (_, hs) in resolution.searched {
                for h in hs {
                    if !hosts.contains(&h) {
                        hosts.push(h);
                    }
                }
            }
            CredentialSource::File {
                what,
                lookup: Lookup::NoEntry { hosts },
            }
        }
    })
}

/// The scheme for a registry named without one: `--plain-http`, else
/// HTTPS with the loopback fallback (and the note saying so).
async fn scheme_for(
    transport: &TransportArgs,
    address: &RegistryAddress,
    options: &Options,
) -> (bool, Option<String>) {
    if transport.plain_http || address.scheme == Some(Scheme::Http) {
        return (true, None);
    }
    let (scheme, note) = berth_diagnostics::transport::choose_scheme(options, address).await;
    (scheme == Scheme::Http, note)
}

/// Runs the check; returns the process exit status.
/// `output` is the format asked for (its own `-o` or one before it).
pub async fn check_pull(args: &CheckPullArgs, output: Format) -> anyhow::Result<u8> {
    let image = ImageRef::parse(&args.image).map_err(|e| anyhow::anyhow!(e))?;
    let options = args.transport.options();
    let address = RegistryAddress {
        scheme: None,
        host: image.host.clone(),
    };
    let (plain_http, scheme_note) = scheme_for(&args.transport, &address, &options).await;
    let check = PullCheck {
        credentials: credential_source(args, &image.host)?,
        image,
        platform: args.platform.clone().unwrap_or_else(local_platform),
        plain_http,
        scheme_note,
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
    /// The registry, as every client command takes it: a URL
    /// (https://r.example, http://127.0.0.1:5000) or host[:port] — HTTPS,
    /// falling back to plain HTTP for a loopback host as Docker does.
    #[arg(long, env = "BERTH_REGISTRY")]
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
    let address: RegistryAddress = args.registry.parse()?;
    let options = args.transport.options();
    let (plain_http, scheme_note) = scheme_for(&args.transport, &address, &options).await;
    let check = HealthCheck {
        registry: address.host.clone(),
        scheme_note,
        credentials: match (&args.username, &args.password) {
            (Some(u), Some(p)) => Some(Credentials::password(u, p)),
            _ => None,
        },
        plain_http,
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
