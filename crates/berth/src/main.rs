//! The `berth` binary: `berth serve` runs the registry; the other
//! subcommands are clients of a running one (management API), named like
//! `az acr`'s.

use std::path::PathBuf;

use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};

mod backends;
mod backup;
mod cli_docs;
mod cli_error;
mod client;
mod config;
mod config_example;
mod connections;
mod credential_provider;
mod datadir;
mod diagnose;
mod manage;
mod migrate;
mod output;
mod recover;
mod serve;
mod tls;

use client::{ClientArgs, LeadingClientArgs};
use output::Format;

/// `berth --version`: the release and the commit it was built from.
pub const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (commit ",
    env!("BERTH_COMMIT"),
    ")"
);

#[derive(Debug, Parser)]
#[command(
    name = "berth",
    version = VERSION,
    about = "A container registry: the OCI distribution API with embedded storage in one binary",
    long_about = None
)]
struct Cli {
    /// The registry client options may also come before the subcommand
    /// (`berth -o json --registry URL sp list`).
    #[command(flatten)]
    leading: LeadingClientArgs,
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
    /// Check credentials against a registry and store them where Docker
    /// would: the credential helper the Docker config names for the
    /// registry (credHelpers, credsStore), else the config file itself
    /// ($DOCKER_CONFIG/config.json or ~/.docker/config.json, mode 0600).
    Login {
        #[command(flatten)]
        client: ClientArgs,
        #[command(flatten)]
        login: manage::LoginArgs,
    },
    /// Forget the registry's stored credentials (in the Docker config and
    /// its credential helper).
    Logout {
        #[command(flatten)]
        client: ClientArgs,
        #[command(flatten)]
        logout: manage::LogoutArgs,
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
    /// Cache rules: local repositories that cache upstream registries'
    /// (pull-through; docs/cache.md).
    CacheRule {
        #[command(flatten)]
        client: ClientArgs,
        #[command(subcommand)]
        command: manage::CacheRuleCommand,
    },
    /// Credential sets: upstream logins for cache rules (passwords sealed,
    /// never shown).
    CredentialSet {
        #[command(flatten)]
        client: ClientArgs,
        #[command(subcommand)]
        command: manage::CredentialSetCommand,
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
    /// 22 throttled, 23 registry unavailable, 24 token scope map, 25
    /// orphaned role assignment, 26 admin password regenerated,
    /// 27 federated token refused, 28 cache credential set rejected, 29 cache
    /// upstream rate limit, 30 cache upstream unreachable, 31 no cache rule.
    CheckPull(diagnose::CheckPullArgs),
    /// The kubelet's image credential provider plugin
    /// (credentialprovider.kubelet.k8s.io/v1): reads a
    /// CredentialProviderRequest on standard input, exchanges the pod's
    /// service-account token (KEP-4412 tokenAttributes) for registry
    /// credentials — or, without one, uses the node's --node-credentials —
    /// and prints a CredentialProviderResponse. See docs/kubernetes.md.
    CredentialProvider(credential_provider::CredentialProviderArgs),
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
    /// The server's configuration: `check` validates a file, `print` shows
    /// the effective configuration, `example` every key with its default.
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
    /// Backups of an embedded registry: `create` (online, consistent),
    /// `restore` into a new data directory, `verify`.
    Backup {
        #[command(subcommand)]
        command: backup::BackupCommand,
    },
    /// Print a shell completion script for bash, zsh or fish, e.g.
    /// `berth completions bash > /etc/bash_completion.d/berth`.
    Completions {
        /// The shell to complete for.
        #[arg(value_enum, ignore_case = true)]
        shell: cli_docs::Shell,
    },
    /// Print the berth(1) man page (roff), or with --dir write one page per
    /// command (berth.1, berth-serve.1, ...) into a directory.
    Man {
        /// Write every page into this directory instead.
        #[arg(long, value_name = "DIR")]
        dir: Option<PathBuf>,
    },
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
    /// Print the effective configuration (file, then BERTH_*__*
    /// environment, then defaults) as TOML, secrets masked: what `berth
    /// serve --config FILE` would run with.
    Print {
        /// TOML configuration file (without it: defaults and environment).
        #[arg(long, value_name = "FILE")]
        config: Option<PathBuf>,
    },
    /// Print a commented berth.toml listing every key with its default
    /// (the same as packaging/berth.example.toml).
    Example,
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
    /// Log format (overrides [log] format).
    #[arg(long, value_enum, ignore_case = true)]
    log_format: Option<LogFormat>,
}

/// How `berth serve` writes its log on standard error.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Lines for people (coloured only on a terminal, and not with NO_COLOR).
    Text,
    /// One JSON object per line.
    Json,
}

impl LogFormat {
    pub fn as_str(self) -> &'static str {
        match self {
            LogFormat::Text => "text",
            LogFormat::Json => "json",
        }
    }
}

fn main() -> std::process::ExitCode {
    let matches = match Cli::command().try_get_matches() {
        Ok(m) => m,
        Err(e) => return usage_error(e),
    };
    let cli = match Cli::from_arg_matches(&matches) {
        Ok(cli) => cli,
        Err(e) => return usage_error(e.with_cmd(&Cli::command())),
    };
    let json = cli.output() == Format::Json;
    if let Err(e) = check_leading_options(&cli, &matches) {
        return failure(&e, json);
    }
    match run(cli) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => failure(&e, json),
    }
}

/// Reports a failed command: text on standard error, or with `-o json` the
/// error document on standard output (docs/cli.md); exit status 1.
fn failure(e: &anyhow::Error, json: bool) -> std::process::ExitCode {
    if json {
        output::print_json(&cli_error::to_json(e));
    } else {
        // The whole chain of causes, without a backtrace: for people.
        eprintln!("error: {e:#}");
    }
    std::process::ExitCode::FAILURE
}

/// A command line clap refused. With `-o json` (which clap could not hand
/// over, having failed) the error is the JSON document, code
/// `INVALID_ARGUMENT`; help and version requests print as usual.
fn usage_error(e: clap::Error) -> std::process::ExitCode {
    use clap::error::ErrorKind;
    let informational = matches!(
        e.kind(),
        ErrorKind::DisplayHelp
            | ErrorKind::DisplayVersion
            | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
    );
    if informational || !json_requested(std::env::args().skip(1)) {
        e.exit();
    }
    let rendered = e.render().to_string();
    let message = rendered
        .lines()
        .next()
        .unwrap_or_default()
        .trim_start_matches("error: ")
        .to_string();
    output::print_json(&serde_json::json!({
        "error": { "code": cli_error::INVALID_ARGUMENT, "message": message }
    }));
    // clap's status for a usage error.
    std::process::ExitCode::from(2)
}

/// Whether a command line asks for JSON output (`-o json`, `-ojson`,
/// `--output json`, `--output=json`), read without clap.
fn json_requested(args: impl Iterator<Item = String>) -> bool {
    let mut previous_was_flag = false;
    for arg in args {
        if arg == "--" {
            break;
        }
        let value = if previous_was_flag {
            Some(arg.as_str())
        } else {
            arg.strip_prefix("--output=")
                .or_else(|| arg.strip_prefix("-o=").or_else(|| arg.strip_prefix("-o")))
                .filter(|v| !v.is_empty())
        };
        if value.is_some_and(|v| v.eq_ignore_ascii_case("json")) {
            return true;
        }
        previous_was_flag = arg == "-o" || arg == "--output";
    }
    false
}

/// Client options before a subcommand that is no registry client (`berth
/// --registry URL serve`) are refused rather than ignored; `-o` before
/// check-pull and check-health is theirs.
fn check_leading_options(cli: &Cli, matches: &clap::ArgMatches) -> anyhow::Result<()> {
    if cli.command.client().is_some() {
        return Ok(());
    }
    let given = |id: &str| matches.value_source(id) == Some(clap::parser::ValueSource::CommandLine);
    let takes_output = matches!(cli.command, Command::CheckPull(_) | Command::CheckHealth(_));
    for (id, flag) in [
        ("registry", "--registry"),
        ("username", "--username"),
        ("password", "--password"),
        ("output", "--output"),
    ] {
        if given(id) && !(takes_output && id == "output") {
            return Err(cli_error::invalid_argument(format!(
                "{flag} before the subcommand is for registry client commands (sp, token, update, ...); \
                 give this subcommand its own options after its name"
            )));
        }
    }
    Ok(())
}

impl Cli {
    /// The output format the command was asked for.
    fn output(&self) -> Format {
        if let Some(client) = self.command.client() {
            return client.output;
        }
        let own = match &self.command {
            Command::CheckPull(a) => a.output,
            Command::CheckHealth(a) => a.output,
            _ => return Format::Table,
        };
        // `berth -o json check-pull ...`: the leading option counts unless
        // the subcommand's own says otherwise.
        if own == Format::Table {
            self.leading.output
        } else {
            own
        }
    }
}

impl Command {
    /// The client options of a registry client subcommand (merged by clap
    /// with those given before it).
    fn client(&self) -> Option<&ClientArgs> {
        match self {
            Command::Login { client, .. }
            | Command::Logout { client, .. }
            | Command::Admin { client, .. }
            | Command::Credential { client, .. }
            | Command::Owner { client, .. }
            | Command::Sp { client, .. }
            | Command::ScopeMap { client, .. }
            | Command::CacheRule { client, .. }
            | Command::CredentialSet { client, .. }
            | Command::Token { client, .. }
            | Command::Role { client, .. }
            | Command::Update { client, .. }
            | Command::NetworkRule { client, .. }
            | Command::ShowEndpoints { client }
            | Command::Identity { client, .. }
            | Command::Gc { client, .. }
            | Command::Repository { client, .. }
            | Command::Explain { client, .. }
            | Command::Logs { client, .. }
            | Command::Activity { client, .. } => Some(client),
            Command::Serve(_)
            | Command::CheckPull(_)
            | Command::CheckHealth(_)
            | Command::CredentialProvider(_)
            | Command::Migrate(_)
            | Command::Config { .. }
            | Command::Completions { .. }
            | Command::Man { .. }
            | Command::Backup { .. }
            | Command::Recover(_) => None,
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    let output = cli.output();
    if let Command::Serve(args) = cli.command {
        return serve::run(args);
    }
    if let Command::Migrate(args) = cli.command {
        return migrate::run(args);
    }
    if let Command::Config { command } = &cli.command {
        return match command {
            ConfigCommand::Check { config } => config::check(config.as_deref()),
            ConfigCommand::Print { config } => config::print(config.as_deref()),
            ConfigCommand::Example => {
                output::emit(&config_example::example().map_err(anyhow::Error::msg)?);
                Ok(())
            }
        };
    }
    if let Command::Recover(args) = cli.command {
        return recover::run(args);
    }
    if let Command::Backup { command } = cli.command {
        return backup::run(command);
    }
    if let Command::Completions { shell } = cli.command {
        return cli_docs::completions(Cli::command(), shell);
    }
    if let Command::Man { dir } = &cli.command {
        return cli_docs::man(Cli::command(), dir.as_deref());
    }
    if let Command::CheckHealth(args) = &cli.command {
        let code = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?
            .block_on(diagnose::check_health(args, output))?;
        std::process::exit(i32::from(code));
    }
    if let Command::CheckPull(args) = &cli.command {
        let code = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?
            .block_on(diagnose::check_pull(args, output))?;
        std::process::exit(i32::from(code));
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    if let Command::CredentialProvider(args) = &cli.command {
        return runtime.block_on(credential_provider::run(args));
    }
    runtime.block_on(async move {
        match cli.command {
            Command::Serve(_)
            | Command::CheckPull(_)
            | Command::CheckHealth(_)
            | Command::CredentialProvider(_)
            | Command::Migrate(_)
            | Command::Config { .. }
            | Command::Completions { .. }
            | Command::Man { .. }
            | Command::Backup { .. }
            | Command::Recover(_) => Ok(()),
            Command::Login { client, login } => manage::login(&client, &login).await,
            Command::Logout { client, logout } => manage::logout(&client, &logout).await,
            Command::Admin { client, command } => manage::admin(&client, &command).await,
            Command::Credential { client, command } => manage::credential(&client, &command).await,
            Command::Owner { client, command } => manage::owner(&client, &command).await,
            Command::Sp { client, command } => manage::sp(&client, &command).await,
            Command::ScopeMap { client, command } => manage::scope_map(&client, &command).await,
            Command::CacheRule { client, command } => manage::cache_rule(&client, &command).await,
            Command::CredentialSet { client, command } => {
                manage::credential_set(&client, &command).await
            }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_command_line_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    /// Every subcommand says what it does and every flag and positional
    /// argument has a help line, at every depth.
    #[test]
    fn every_subcommand_and_argument_has_help() {
        fn walk(cmd: &clap::Command, path: &str, missing: &mut Vec<String>) {
            for arg in cmd.get_arguments() {
                if arg.get_help().is_none() && arg.get_long_help().is_none() {
                    missing.push(format!("{path}: argument {}", arg.get_id()));
                }
            }
            for sub in cmd.get_subcommands() {
                let sub_path = format!("{path} {}", sub.get_name());
                if sub.get_about().is_none() && sub.get_long_about().is_none() {
                    missing.push(format!("{sub_path}: no about"));
                }
                walk(sub, &sub_path, missing);
            }
        }
        let mut cmd = Cli::command();
        // Global arguments are copied into the subcommands by build().
        cmd.build();
        let mut missing = Vec::new();
        walk(&cmd, "berth", &mut missing);
        assert!(missing.is_empty(), "without help:\n{}", missing.join("\n"));
    }

    fn parse(args: &[&str]) -> Cli {
        Cli::try_parse_from(std::iter::once("berth").chain(args.iter().copied()))
            .unwrap_or_else(|e| panic!("{args:?}: {e}"))
    }

    fn sp_client(cli: &Cli) -> (String, Option<String>, Option<String>, Format) {
        let Command::Sp { client, .. } = &cli.command else {
            panic!("not sp: {cli:?}");
        };
        (
            client.registry.clone(),
            client.username.clone(),
            client.password.clone(),
            client.output,
        )
    }

    #[test]
    fn client_options_before_or_after_the_subcommand() {
        let want = (
            "http://r:1".to_string(),
            Some("u".to_string()),
            Some("p".to_string()),
            Format::Json,
        );
        for args in [
            &[
                "--registry",
                "http://r:1",
                "-u",
                "u",
                "-p",
                "p",
                "-o",
                "json",
                "sp",
                "list",
            ][..],
            &[
                "sp",
                "list",
                "--registry",
                "http://r:1",
                "-u",
                "u",
                "-p",
                "p",
                "-o",
                "json",
            ],
            &[
                "sp",
                "--registry",
                "http://r:1",
                "list",
                "-u",
                "u",
                "-p",
                "p",
                "-o",
                "json",
            ],
            &[
                "-o",
                "json",
                "--registry",
                "http://r:1",
                "sp",
                "list",
                "-u",
                "u",
                "-p",
                "p",
            ],
            &[
                "--registry=http://r:1",
                "sp",
                "list",
                "--username=u",
                "--password=p",
                "--output=JSON",
            ],
        ] {
            assert_eq!(sp_client(&parse(args)), want, "{args:?}");
        }
        // The one nearer the subcommand wins.
        let cli = parse(&[
            "--registry",
            "http://a",
            "sp",
            "list",
            "--registry",
            "http://b",
        ]);
        assert_eq!(sp_client(&cli).0, "http://b");
        let cli = parse(&["-o", "json", "check-pull", "r/x:1"]);
        assert_eq!(cli.output(), Format::Json);
    }

    #[test]
    fn leading_client_options_are_refused_before_other_subcommands() {
        let cmd = Cli::command();
        let matches = cmd
            .try_get_matches_from(["berth", "--registry", "http://x", "serve"])
            .expect("parses");
        let cli = Cli::from_arg_matches(&matches).expect("cli");
        let e = check_leading_options(&cli, &matches).expect_err("refused");
        assert!(e.to_string().contains("--registry"), "{e}");
        let matches = Cli::command()
            .try_get_matches_from(["berth", "-o", "json", "check-health", "--registry", "h:1"])
            .expect("parses");
        let cli = Cli::from_arg_matches(&matches).expect("cli");
        check_leading_options(&cli, &matches).expect("-o is check-health's");
    }

    #[test]
    fn enum_values_ignore_case() {
        for v in ["deny", "Deny", "DENY"] {
            let cli = parse(&["update", "--default-action", v]);
            let Command::Update { update, .. } = cli.command else {
                panic!("not update");
            };
            assert_eq!(update.default_action, Some(manage::DefaultAction::Deny));
        }
        for v in ["Enabled", "enabled"] {
            parse(&["token", "update", "--name", "t", "--status", v]);
        }
        for v in ["TRUE", "true", "False", "yes"] {
            parse(&["update", "--anonymous-pull-enabled", v]);
        }
        parse(&["explain", "--ip", "10.0.0.1", "--action", "PULL"]);
        parse(&["credential", "renew", "--password-name", "Password2"]);
        parse(&["serve", "--log-format", "JSON"]);
        for (args, want) in [
            (&["--trusted-service"][..], true),
            (&["--trusted-service", "true"], true),
            (&["--trusted-service", "False"], false),
            (&[], false),
        ] {
            let mut all = vec!["identity", "update", "--id", "x"];
            all.extend_from_slice(args);
            let Command::Identity {
                command:
                    manage::IdentityCommand::Update {
                        trusted_service, ..
                    },
                ..
            } = parse(&all).command
            else {
                panic!("not identity update");
            };
            assert_eq!(trusted_service, want, "{args:?}");
        }
        assert!(Cli::try_parse_from(["berth", "update", "--default-action", "maybe"]).is_err());
    }

    #[test]
    fn json_is_recognised_without_clap() {
        let yes = |args: &[&str]| json_requested(args.iter().map(|s| s.to_string()));
        assert!(yes(&["sp", "list", "-o", "json"]));
        assert!(yes(&["-ojson", "sp"]));
        assert!(yes(&["--output=JSON", "sp"]));
        assert!(yes(&["--output", "json"]));
        assert!(!yes(&["sp", "list"]));
        assert!(!yes(&["-o", "table", "json"]));
        assert!(!yes(&["--", "-o", "json"]));
    }
}
