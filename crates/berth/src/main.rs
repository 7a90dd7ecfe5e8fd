//! The `berth` binary: `berth serve` runs the registry; the other
//! subcommands are clients of a running one (management API), named like
//! `az acr`'s.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

mod backends;
mod client;
mod config;
mod connections;
mod datadir;
mod diagnose;
mod manage;
mod migrate;
mod output;
mod recover;
mod serve;

use manage::ClientArgs;

#[derive(Debug, Parser)]
#[command(
    name = "berth",
    version,
    about = "A container registry: the OCI distribution API with embedded storage in one binary",
    long_about = None
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the registry server.
    ///
    /// With no options it listens on 127.0.0.1:5000 and keeps blobs under
    /// ./berth-data/blobs and metadata in ./berth-data/berth.db. On first
    /// start it creates the owner identity and prints its password (also
    /// written to <data>/initial-owner-password). Every configuration key
    /// can also be set by environment, e.g. BERTH_SERVER__LISTEN=0.0.0.0:5000.
    Serve(ServeArgs),
    /// Check credentials against a registry and store them in the Docker
    /// credential file ($DOCKER_CONFIG/config.json or ~/.docker/config.json).
    Login {
        #[command(flatten)]
        client: ClientArgs,
        #[command(flatten)]
        login: manage::LoginArgs,
    },
    /// Enable or disable the admin user.
    Admin {
        #[command(flatten)]
        client: ClientArgs,
        #[command(subcommand)]
        command: manage::AdminCommand,
    },
    /// The admin user's credentials.
    Credential {
        #[command(flatten)]
        client: ClientArgs,
        #[command(subcommand)]
        command: manage::CredentialCommand,
    },
    /// The owner identity.
    Owner {
        #[command(flatten)]
        client: ClientArgs,
        #[command(subcommand)]
        command: manage::OwnerCommand,
    },
    /// Service principals.
    Sp {
        #[command(flatten)]
        client: ClientArgs,
        #[command(subcommand)]
        command: manage::SpCommand,
    },
    /// Scope maps for repository-scoped tokens.
    ScopeMap {
        #[command(flatten)]
        client: ClientArgs,
        #[command(subcommand)]
        command: manage::ScopeMapCommand,
    },
    /// Repository-scoped tokens.
    Token {
        #[command(flatten)]
        client: ClientArgs,
        #[command(subcommand)]
        command: manage::TokenCommand,
    },
    /// Role definitions and assignments.
    Role {
        #[command(flatten)]
        client: ClientArgs,
        #[command(subcommand)]
        command: manage::RoleCommand,
    },
    /// Change registry settings (anonymous pull, admin user, network access).
    Update {
        #[command(flatten)]
        client: ClientArgs,
        #[command(flatten)]
        update: manage::UpdateArgs,
    },
    /// Network rules (IP ranges and subnets).
    NetworkRule {
        #[command(flatten)]
        client: ClientArgs,
        #[command(subcommand)]
        command: manage::NetworkRuleCommand,
    },
    /// The login server and endpoints with their addresses.
    ShowEndpoints {
        #[command(flatten)]
        client: ClientArgs,
    },
    /// All identities; marking trusted services.
    Identity {
        #[command(flatten)]
        client: ClientArgs,
        #[command(subcommand)]
        command: manage::IdentityCommand,
    },
    /// Garbage collection: its queue, its runs, and running it now.
    Gc {
        #[command(flatten)]
        client: ClientArgs,
        #[command(subcommand)]
        command: manage::GcCommand,
    },
    /// Repositories, their tags and manifests.
    Repository {
        #[command(flatten)]
        client: ClientArgs,
        #[command(subcommand)]
        command: manage::RepositoryCommand,
    },
    /// Ask the registry why a request from an address, as an identity,
    /// would be allowed or denied (network rule, role assignment, what is
    /// missing). Exit status 2 when it would be denied.
    Explain {
        #[command(flatten)]
        client: ClientArgs,
        #[command(flatten)]
        explain: manage::ExplainArgs,
    },
    /// Do what a kubelet does to pull IMAGE and name the cause of any
    /// failure with its fix. Exit status per cause (docs/diagnostics.md):
    /// 10 no credentials for the host, 11 DNS, 12 connect timeout, 13
    /// refused, 14 TLS, 15 proxy, 16 network rule, 17 unauthorized, 18
    /// permission, 19 not found, 20 no matching platform, 21 data endpoint,
    /// 22 throttled.
    CheckPull(diagnose::CheckPullArgs),
    /// Check this machine's environment (container clients, proxy) and its
    /// path to a registry step by step: DNS, connect, TLS, challenge,
    /// tokens, data endpoints, private DNS, optionally an image. Every
    /// failure has a code and a fix (docs/diagnostics.md); exit status 1.
    CheckHealth(diagnose::CheckHealthArgs),
    /// Move an embedded registry (filesystem + SQLite) into a scale-out
    /// deployment (S3-compatible bucket + PostgreSQL) without losing
    /// anything: blobs (re-hashed on the way), then metadata, then a check
    /// that every row arrived. Safe to run again after an interruption.
    Migrate(migrate::MigrateArgs),
    /// The server's configuration: `berth config check` validates it.
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
    },
    /// Recovery without the network, on the server host: reset the owner's
    /// password or the network rules directly in the registry's store
    /// (--data DIR, or --config FILE for scale-out). Works on a stopped or
    /// a running registry, which applies the change within about a second.
    /// Every change is in the activity log as done by 'recovery'.
    Recover(recover::RecoverArgs),
    /// Login and repository events.
    Logs {
        #[command(flatten)]
        client: ClientArgs,
        #[command(subcommand)]
        command: manage::LogsCommand,
    },
    /// The activity log of management changes.
    Activity {
        #[command(flatten)]
        client: ClientArgs,
        #[command(subcommand)]
        command: manage::ActivityCommand,
    },
}

#[derive(Debug, Subcommand)]
enum ConfigCommand {
    /// Validate a configuration file together with the BERTH_*__* environment
    /// (unknown sections and keys are errors) and print the effective
    /// configuration as TOML, secrets masked. Exit status 1 when invalid.
    Check {
        /// TOML configuration file (without it: defaults and environment).
        #[arg(long, value_name = "FILE")]
        config: Option<PathBuf>,
    },
}

#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    /// TOML configuration file.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Address to listen on (overrides [server] listen); port 0 picks a free port.
    #[arg(long, value_name = "ADDR")]
    listen: Option<String>,
    /// Data directory for embedded storage (overrides data_dir).
    #[arg(long, value_name = "DIR")]
    data: Option<PathBuf>,
    /// Log format: text or json (overrides [log] format).
    #[arg(long, value_name = "FORMAT", value_parser = ["text", "json"])]
    log_format: Option<String>,
}

fn main() -> std::process::ExitCode {
    match run(Cli::parse()) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            // The whole chain of causes, without a backtrace: for people.
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    if let Command::Serve(args) = cli.command {
        return serve::run(args);
    }
    if let Command::Migrate(args) = cli.command {
        return migrate::run(args);
    }
    if let Command::Config {
        command: ConfigCommand::Check { config },
    } = &cli.command
    {
        return config::check(config.as_deref());
    }
    if let Command::Recover(args) = cli.command {
        return recover::run(args);
    }
    if let Command::CheckHealth(args) = &cli.command {
        let code = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?
            .block_on(diagnose::check_health(args))?;
        std::process::exit(i32::from(code));
    }
    if let Command::CheckPull(args) = &cli.command {
        let code = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?
            .block_on(diagnose::check_pull(args))?;
        std::process::exit(i32::from(code));
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        match cli.command {
            Command::Serve(_)
            | Command::CheckPull(_)
            | Command::CheckHealth(_)
            | Command::Migrate(_)
            | Command::Config { .. }
            | Command::Recover(_) => Ok(()),
            Command::Login { client, login } => manage::login(&client, &login).await,
            Command::Admin { client, command } => manage::admin(&client, &command).await,
            Command::Credential { client, command } => manage::credential(&client, &command).await,
            Command::Owner { client, command } => manage::owner(&client, &command).await,
            Command::Sp { client, command } => manage::sp(&client, &command).await,
            Command::ScopeMap { client, command } => manage::scope_map(&client, &command).await,
            Command::Token { client, command } => manage::token(&client, &command).await,
            Command::Role { client, command } => manage::role(&client, &command).await,
            Command::Update { client, update } => manage::update(&client, &update).await,
            Command::NetworkRule { client, command } => {
                manage::network_rule(&client, &command).await
            }
            Command::ShowEndpoints { client } => manage::show_endpoints(&client).await,
            Command::Identity { client, command } => manage::identity(&client, &command).await,
            Command::Repository { client, command } => manage::repository(&client, &command).await,
            Command::Gc { client, command } => manage::gc(&client, &command).await,
            Command::Logs { client, command } => manage::logs(&client, &command).await,
            Command::Explain { client, explain } => manage::explain(&client, &explain).await,
            Command::Activity { client, command } => manage::activity(&client, &command).await,
        }
    })
}
