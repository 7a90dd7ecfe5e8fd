//! Client subcommands: `az acr`-style management of a running registry
//! through its management API.

use anyhow::Context;
use clap::builder::BoolishValueParser;
use clap::{Args, Subcommand};
use serde_json::{json, Value};

use crate::cli_error::invalid_argument;
use crate::client::{query_value, registry_host, store_credentials, Client, ClientArgs};
use crate::output::{outln, print, print_json, print_secret, summarise_change, Column, Format};

#[derive(Debug, Args)]
pub struct LoginArgs {
    /// Read the password from standard input.
    #[arg(long)]
    pub password_stdin: bool,
}

#[derive(Debug, Subcommand)]
pub enum AdminCommand {
    /// Enable the admin user (created with two passwords the first time).
    Enable,
    /// Disable the admin user: its passwords stop working.
    Disable,
}

/// One of the two passwords of the admin user or of a token.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum PasswordName {
    /// The first password.
    Password,
    /// The second password.
    Password2,
}

impl PasswordName {
    fn as_str(self) -> &'static str {
        match self {
            PasswordName::Password => "password",
            PasswordName::Password2 => "password2",
        }
    }
}

#[derive(Debug, Subcommand)]
pub enum CredentialCommand {
    /// Show the admin user's name and its passwords' dates (values are
    /// never stored, so never shown again).
    Show,
    /// Regenerate one admin password; the other keeps working.
    Renew {
        /// Which password to regenerate.
        #[arg(long, value_enum, ignore_case = true)]
        password_name: PasswordName,
    },
}

#[derive(Debug, Subcommand)]
pub enum OwnerCommand {
    /// Generate a new owner password (the old one stops working).
    RotatePassword,
    /// Sign new tokens with a new key; tokens signed with the old keys stay
    /// valid until they expire (every node picks the new key up within a
    /// second).
    RotateSigningKey,
}

#[derive(Debug, Subcommand)]
pub enum SpCommand {
    /// Create a service principal; prints its app id and secret once.
    Create {
        /// The service principal's name (unique; shown in logs and lists).
        #[arg(long)]
        name: String,
        /// Role to assign at once (AcrPull, AcrPush, ... or a custom role).
        #[arg(long)]
        role: Option<String>,
        /// Scope of that assignment: a repository, `prefix/*`, or the registry (default).
        #[arg(long)]
        scope: Option<String>,
        /// Years until the secret expires.
        #[arg(long, default_value_t = 1, conflicts_with = "end_date")]
        years: u32,
        /// Exact expiry of the secret (RFC 3339, e.g. 2027-01-31T00:00:00Z).
        #[arg(long)]
        end_date: Option<String>,
    },
    /// List service principals.
    List,
    /// Delete a service principal (its role assignments stay, orphaned).
    Delete {
        /// The service principal's app id (or name).
        #[arg(long)]
        id: String,
    },
    /// Service-principal credentials.
    Credential {
        #[command(subcommand)]
        command: SpCredentialCommand,
    },
}

#[derive(Debug, Subcommand)]
pub enum SpCredentialCommand {
    /// Show a service principal's secret dates (end dates included).
    List {
        /// The service principal's app id (or name).
        #[arg(long)]
        id: String,
    },
    /// Replace the secret with a new one, printed once.
    Reset {
        /// The service principal's app id (or name).
        #[arg(long)]
        id: String,
        /// Years until the new secret expires.
        #[arg(long, default_value_t = 1, conflicts_with = "end_date")]
        years: u32,
        /// Exact expiry of the new secret (RFC 3339).
        #[arg(long)]
        end_date: Option<String>,
    },
}

#[derive(Debug, Args)]
pub struct ScopeMapArgs {
    /// The scope map's name.
    #[arg(long)]
    pub name: String,
    /// A repository (or `prefix/*`) and its comma-separated actions, as
    /// REPOSITORY=ACTION[,ACTION...]; actions are content/read,
    /// content/write, content/delete, metadata/read, metadata/write.
    /// Repeat for more repositories.
    #[arg(
        long = "repository",
        value_name = "REPOSITORY=ACTIONS",
        required = true
    )]
    pub repositories: Vec<String>,
    /// A description for people.
    #[arg(long, default_value = "")]
    pub description: String,
}

#[derive(Debug, Subcommand)]
pub enum ScopeMapCommand {
    /// Create a scope map.
    Create(ScopeMapArgs),
    /// Replace a scope map's rules.
    Update(ScopeMapArgs),
    /// List scope maps.
    List,
    /// Delete a scope map no token uses.
    Delete {
        /// The scope map's name.
        #[arg(long)]
        name: String,
    },
}

/// Whether a token may be used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum TokenStatus {
    /// Its passwords work.
    Enabled,
    /// Its passwords are refused.
    Disabled,
}

#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Create a repository-scoped token; prints both passwords once.
    Create {
        /// The token's name, which is also its user name for logins.
        #[arg(long)]
        name: String,
        /// The scope map naming the repositories and actions it may use.
        #[arg(long)]
        scope_map: String,
        /// Create it disabled.
        #[arg(long)]
        disabled: bool,
        /// Days until the passwords expire (default: never).
        #[arg(long, value_name = "DAYS")]
        expiration_in_days: Option<u32>,
    },
    /// Enable/disable a token or change its scope map.
    Update {
        /// The token's name.
        #[arg(long)]
        name: String,
        /// Enable or disable the token.
        #[arg(long, value_enum, ignore_case = true)]
        status: Option<TokenStatus>,
        /// Give the token this scope map instead.
        #[arg(long)]
        scope_map: Option<String>,
    },
    /// List tokens.
    List,
    /// Delete a token.
    Delete {
        /// The token's name.
        #[arg(long)]
        name: String,
    },
    /// Token passwords.
    Credential {
        #[command(subcommand)]
        command: TokenCredentialCommand,
    },
}

#[derive(Debug, Subcommand)]
pub enum TokenCredentialCommand {
    /// Generate password1 or password2 of a token, printed once.
    Generate {
        /// The token's name.
        #[arg(long)]
        name: String,
        /// Generate password1 (the default).
        #[arg(long, conflicts_with = "password2")]
        password1: bool,
        /// Generate password2.
        #[arg(long)]
        password2: bool,
        /// Days until the new password expires (default: never).
        #[arg(long, value_name = "DAYS")]
        expiration_in_days: Option<u32>,
    },
}

#[derive(Debug, Subcommand)]
pub enum RoleCommand {
    /// Role definitions (built-in and custom).
    Definition {
        #[command(subcommand)]
        command: RoleDefinitionCommand,
    },
    /// Role assignments.
    Assignment {
        #[command(subcommand)]
        command: RoleAssignmentCommand,
    },
}

#[derive(Debug, Subcommand)]
pub enum RoleDefinitionCommand {
    /// List roles and their actions.
    List,
    /// Create a custom role from action strings.
    Create {
        /// The role's name (used by `role assignment create --role`).
        #[arg(long)]
        name: String,
        /// Comma-separated actions, e.g. registries/pull/read,registries/metadata/read.
        #[arg(long, value_delimiter = ',')]
        actions: Vec<String>,
        /// A description for people.
        #[arg(long, default_value = "")]
        description: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum RoleAssignmentCommand {
    /// Assign a role to an identity (by app id or login).
    Create {
        /// The identity: a service principal's app id, a token name or a login.
        #[arg(long)]
        assignee: String,
        /// The role: AcrPull, AcrPush, AcrDelete, Reader, Contributor, Owner,
        /// or a custom role's name.
        #[arg(long)]
        role: String,
        /// A repository, `prefix/*`, or empty for the registry.
        #[arg(long, default_value = "")]
        scope: String,
    },
    /// List assignments; orphaned ones (principal deleted) are marked.
    List {
        /// Only this identity's assignments (app id, token name or login).
        #[arg(long)]
        assignee: Option<String>,
    },
    /// Delete an assignment.
    Delete {
        /// The assignment's id (from `role assignment list`).
        #[arg(long)]
        id: String,
    },
}

/// What happens to public requests no network rule matches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum DefaultAction {
    /// Let them in.
    Allow,
    /// Refuse them.
    Deny,
}

impl DefaultAction {
    /// As the management API spells it.
    fn as_str(self) -> &'static str {
        match self {
            DefaultAction::Allow => "Allow",
            DefaultAction::Deny => "Deny",
        }
    }
}

#[derive(Debug, Args)]
pub struct UpdateArgs {
    /// Let unauthenticated clients pull (never push or list the catalog).
    #[arg(long, value_name = "BOOL", value_parser = BoolishValueParser::new())]
    pub anonymous_pull_enabled: Option<bool>,
    /// Enable or disable the admin user.
    #[arg(long, value_name = "BOOL", value_parser = BoolishValueParser::new())]
    pub admin_enabled: Option<bool>,
    /// Public network access (false: only private endpoints work).
    #[arg(long, value_name = "BOOL", value_parser = BoolishValueParser::new())]
    pub public_network_enabled: Option<bool>,
    /// What happens to public requests no rule matches.
    #[arg(long, value_enum, ignore_case = true)]
    pub default_action: Option<DefaultAction>,
    /// Let identities marked as trusted services bypass network rules.
    #[arg(long, value_name = "BOOL", value_parser = BoolishValueParser::new())]
    pub allow_trusted_services: Option<bool>,
    /// Redirect blob downloads to the dedicated data endpoint.
    #[arg(long, value_name = "BOOL", value_parser = BoolishValueParser::new())]
    pub data_endpoint_enabled: Option<bool>,
    /// Apply a network change even if it refuses this client's own address
    /// (without it the registry refuses such a change and says why; with it
    /// you are locked out until `berth recover` is run on the server host).
    #[arg(long)]
    pub force: bool,
}

#[derive(Debug, Args)]
pub struct RuleTarget {
    /// An IPv4/IPv6 address or CIDR range.
    #[arg(long, conflicts_with = "subnet", required_unless_present = "subnet")]
    pub ip_address: Option<String>,
    /// A subnet declared in the server's configuration ([[subnet]]).
    #[arg(long)]
    pub subnet: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum NetworkRuleCommand {
    /// Allow an IP range or a declared subnet.
    Add(RuleTarget),
    /// Remove a rule.
    Remove {
        #[command(flatten)]
        target: RuleTarget,
        /// Remove it even if that refuses this client's own address (see
        /// `berth update --force`).
        #[arg(long)]
        force: bool,
    },
    /// Show the rule set.
    List,
}

#[derive(Debug, Subcommand)]
pub enum IdentityCommand {
    /// List every identity (owner, admin user, service principals, tokens).
    List,
    /// Mark an identity as a trusted service (network-rule bypass).
    Update {
        /// App id, token name or login.
        #[arg(long)]
        id: String,
        /// Mark it as a trusted service (`--trusted-service` or
        /// `--trusted-service true`), or unmark it (`--trusted-service
        /// false`, or without the flag).
        #[arg(
            long,
            value_name = "BOOL",
            num_args = 0..=1,
            default_value = "false",
            default_missing_value = "true",
            value_parser = BoolishValueParser::new()
        )]
        trusted_service: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum GcCommand {
    /// Candidates waiting for the collector and the latest runs (from any
    /// node), with their progress.
    Status,
    /// Run a collection pass now on the node this command talks to.
    Run,
}

#[derive(Debug, Subcommand)]
pub enum RepositoryCommand {
    /// List repositories.
    List,
    /// List a repository's tags.
    ShowTags {
        /// The repository, e.g. app/web.
        #[arg(long)]
        repository: String,
    },
    /// List a repository's manifests with their tags.
    ShowManifests {
        /// The repository, e.g. app/web.
        #[arg(long)]
        repository: String,
    },
    /// Delete a repository with all its manifests and tags.
    Delete {
        /// The repository, e.g. app/web.
        #[arg(long)]
        repository: String,
        /// Do not ask for confirmation.
        #[arg(long)]
        yes: bool,
    },
}

/// `--since`: how far back (a duration) or from when (a time).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Since {
    /// This long before now.
    Ago(std::time::Duration),
    /// From this time on (unix seconds).
    At(i64),
}

const SINCE_FORMS: &str =
    "a duration such as 30m, 24h, 7d or 1h30m, or an RFC 3339 time such as 2026-12-01T00:00:00Z";

/// Parses `--since`: a duration (humantime: `24h`, `7d`, `1h30m`, `90s`)
/// or an RFC 3339 time (`2026-12-01T00:00:00Z`, `2026-12-01T01:00:00+01:00`).
pub fn parse_since(s: &str) -> Result<Since, String> {
    let s = s.trim();
    if let Ok(d) = humantime::parse_duration(s) {
        return Ok(Since::Ago(d));
    }
    if let Ok(t) = time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339) {
        return Ok(Since::At(t.unix_timestamp()));
    }
    Err(format!("'{s}' is not {SINCE_FORMS}"))
}

impl Since {
    /// The start as unix seconds, `now` being unix seconds.
    pub fn unix_seconds(self, now: i64) -> i64 {
        match self {
            Since::Ago(d) => now.saturating_sub(i64::try_from(d.as_secs()).unwrap_or(i64::MAX)),
            Since::At(t) => t,
        }
    }
}

#[derive(Debug, Args)]
pub struct LogArgs {
    /// How far back (24h, 7d, 30m, 1h30m) or since when (RFC 3339, e.g.
    /// 2026-12-01T00:00:00Z).
    #[arg(long, default_value = "24h", value_parser = parse_since)]
    pub since: Since,
    /// Only failures (status 400 and above).
    #[arg(long)]
    pub failed: bool,
    /// Only this identity (as the events name it).
    #[arg(long)]
    pub identity: Option<String>,
    /// At most this many events, newest first.
    #[arg(long, default_value_t = 100)]
    pub limit: u32,
}

#[derive(Debug, Subcommand)]
pub enum LogsCommand {
    /// Login events: every token request, Basic login and network denial.
    Login(LogArgs),
    /// Repository events: push, pull, delete, untag.
    Repository {
        #[command(flatten)]
        args: LogArgs,
        /// Only this repository.
        #[arg(long)]
        repository: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
pub enum ActivityCommand {
    /// List management changes (the table shows what changed; `-o json`
    /// has the whole before and after).
    List {
        /// How far back (24h, 7d, 30m, 1h30m) or since when (RFC 3339, e.g.
        /// 2026-12-01T00:00:00Z).
        #[arg(long, default_value = "24h", value_parser = parse_since)]
        since: Since,
    },
}

const IDENTITY: &[Column] = &[
    ("NAME", "/name"),
    ("APP ID / LOGIN", "/login"),
    ("KIND", "/kind"),
    ("ENABLED", "/enabled"),
    ("TRUSTED SERVICE", "/trustedService"),
    ("SCOPE MAP", "/scopeMap"),
    ("CREATED", "/createdAt"),
];
const CREDENTIAL: &[Column] = &[
    ("NAME", "/name"),
    ("CREATED", "/createdAt"),
    ("EXPIRES", "/expiresAt"),
    ("EXPIRED", "/expired"),
];

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

pub async fn login(args: &ClientArgs, login: &LoginArgs) -> anyhow::Result<()> {
    let mut connection = args.connection();
    if login.password_stdin {
        let mut line = String::new();
        std::io::stdin()
            .read_line(&mut line)
            .context("cannot read the password from standard input")?;
        connection.password = Some(line.trim_end_matches(['\r', '\n']).to_string());
    }
    let (Some(username), Some(password)) = (&connection.username, &connection.password) else {
        return Err(invalid_argument(
            "give --username and --password (or --password-stdin)",
        ));
    };
    let client = Client::new(&connection)?;
    client.check_login().await?;
    let host = registry_host(client.base());
    let path = store_credentials(&host, username, password)?;
    outln!(
        "Login succeeded: credentials for {host} stored in {}",
        path.display()
    );
    Ok(())
}

pub async fn admin(args: &ClientArgs, command: &AdminCommand) -> anyhow::Result<()> {
    let client = Client::new(&args.connection())?;
    let enabled = matches!(command, AdminCommand::Enable);
    let answer = client
        .patch("/api/v1/registry", json!({ "adminUserEnabled": enabled }))
        .await?;
    if let Some(passwords) = answer.get("adminPasswords") {
        print_secret(
            "The admin user 'berth' was created with these passwords:",
            passwords,
            args.output,
        );
    } else if args.output == Format::Json {
        print_json(&answer);
    } else {
        outln!(
            "admin user {}",
            if enabled { "enabled" } else { "disabled" }
        );
    }
    Ok(())
}

pub async fn credential(args: &ClientArgs, command: &CredentialCommand) -> anyhow::Result<()> {
    let client = Client::new(&args.connection())?;
    match command {
        CredentialCommand::Show => {
            let answer = client.get("/api/v1/admin/credentials").await?;
            if args.output == Format::Json {
                print_json(&answer);
            } else {
                outln!(
                    "username: {}  (admin user {})",
                    answer["username"].as_str().unwrap_or(""),
                    if answer["enabled"] == json!(true) {
                        "enabled"
                    } else {
                        "disabled"
                    }
                );
                print(&answer["passwords"], CREDENTIAL, args.output);
            }
        }
        CredentialCommand::Renew { password_name } => {
            let secret = client
                .post(
                    "/api/v1/admin/credentials/renew",
                    json!({ "passwordName": password_name.as_str() }),
                )
                .await?;
            print_secret("New admin password:", &json!([secret]), args.output);
        }
    }
    Ok(())
}

pub async fn owner(args: &ClientArgs, command: &OwnerCommand) -> anyhow::Result<()> {
    let client = Client::new(&args.connection())?;
    match command {
        OwnerCommand::RotatePassword => {
            let secret = client
                .post("/api/v1/owner/credentials/renew", json!({}))
                .await?;
            print_secret("New owner password:", &json!([secret]), args.output);
            // This is a remote client: the server's files are out of reach.
            eprintln!(
                "note: the server's <data>/initial-owner-password file is not updated and still holds an earlier password; \
                 to reset the password and rewrite that file, run 'berth recover --reset-owner-password' on the server host"
            );
        }
        OwnerCommand::RotateSigningKey => {
            let answer = client
                .post("/api/v1/signing-keys/rotate", json!({}))
                .await?;
            print(&answer, &[("NEW SIGNING KEY", "/kid")], args.output);
        }
    }
    Ok(())
}

pub async fn sp(args: &ClientArgs, command: &SpCommand) -> anyhow::Result<()> {
    let client = Client::new(&args.connection())?;
    match command {
        SpCommand::Create {
            name,
            role,
            scope,
            years,
            end_date,
        } => {
            let created = client
                .post(
                    "/api/v1/service-principals",
                    json!({ "name": name, "role": role, "scope": scope, "years": years, "endDate": end_date }),
                )
                .await?;
            if args.output == Format::Json {
                print_json(&created);
            } else {
                outln!(
                    "app id: {}",
                    created["identity"]["id"].as_str().unwrap_or("")
                );
                print_secret("secret:", &created["secrets"], args.output);
            }
        }
        SpCommand::List => print(
            &client.get("/api/v1/service-principals").await?,
            IDENTITY,
            args.output,
        ),
        SpCommand::Delete { id } => {
            client
                .delete(&format!("/api/v1/service-principals/{}", query_value(id)))
                .await?;
            outln!("deleted service principal {id}");
        }
        SpCommand::Credential { command } => match command {
            SpCredentialCommand::List { id } => print(
                &client
                    .get(&format!(
                        "/api/v1/service-principals/{}/credentials",
                        query_value(id)
                    ))
                    .await?,
                CREDENTIAL,
                args.output,
            ),
            SpCredentialCommand::Reset {
                id,
                years,
                end_date,
            } => {
                let secret = client
                    .post(
                        &format!(
                            "/api/v1/service-principals/{}/credentials/reset",
                            query_value(id)
                        ),
                        json!({ "years": years, "endDate": end_date }),
                    )
                    .await?;
                print_secret("New secret:", &json!([secret]), args.output);
            }
        },
    }
    Ok(())
}

fn scope_rules(repositories: &[String]) -> anyhow::Result<Value> {
    let mut rules = Vec::new();
    for r in repositories {
        let Some((repo, actions)) = r.split_once('=') else {
            return Err(invalid_argument(format!(
                "--repository '{r}' must be REPOSITORY=ACTION[,ACTION...], e.g. app/web=content/read,content/write"
            )));
        };
        let actions: Vec<&str> = actions
            .split(',')
            .map(str::trim)
            .filter(|a| !a.is_empty())
            .collect();
        rules.push(json!({ "repository": repo, "actions": actions }));
    }
    Ok(Value::Array(rules))
}

const SCOPE_MAP: &[Column] = &[
    ("NAME", "/name"),
    ("DESCRIPTION", "/description"),
    ("RULES", "/rules"),
    ("CREATED", "/createdAt"),
];

pub async fn scope_map(args: &ClientArgs, command: &ScopeMapCommand) -> anyhow::Result<()> {
    let client = Client::new(&args.connection())?;
    match command {
        ScopeMapCommand::Create(m) => {
            let body = json!({ "name": m.name, "description": m.description, "rules": scope_rules(&m.repositories)? });
            print(
                &client.post("/api/v1/scope-maps", body).await?,
                SCOPE_MAP,
                args.output,
            );
        }
        ScopeMapCommand::Update(m) => {
            let body =
                json!({ "description": m.description, "rules": scope_rules(&m.repositories)? });
            print(
                &client
                    .patch(
                        &format!("/api/v1/scope-maps/{}", query_value(&m.name)),
                        body,
                    )
                    .await?,
                SCOPE_MAP,
                args.output,
            );
        }
        ScopeMapCommand::List => print(
            &client.get("/api/v1/scope-maps").await?,
            SCOPE_MAP,
            args.output,
        ),
        ScopeMapCommand::Delete { name } => {
            client
                .delete(&format!("/api/v1/scope-maps/{}", query_value(name)))
                .await?;
            outln!("deleted scope map {name}");
        }
    }
    Ok(())
}

pub async fn token(args: &ClientArgs, command: &TokenCommand) -> anyhow::Result<()> {
    let client = Client::new(&args.connection())?;
    match command {
        TokenCommand::Create {
            name,
            scope_map,
            disabled,
            expiration_in_days,
        } => {
            let created = client
                .post(
                    "/api/v1/tokens",
                    json!({ "name": name, "scopeMap": scope_map, "enabled": !disabled, "expiryDays": expiration_in_days }),
                )
                .await?;
            if args.output == Format::Json {
                print_json(&created);
            } else {
                outln!("token {name} created (log in with user name '{name}')");
                print_secret("passwords:", &created["secrets"], args.output);
            }
        }
        TokenCommand::Update {
            name,
            status,
            scope_map,
        } => {
            let body = json!({
                "enabled": status.map(|s| s == TokenStatus::Enabled),
                "scopeMap": scope_map,
            });
            print(
                &client
                    .patch(&format!("/api/v1/tokens/{}", query_value(name)), body)
                    .await?,
                IDENTITY,
                args.output,
            );
        }
        TokenCommand::List => print(&client.get("/api/v1/tokens").await?, IDENTITY, args.output),
        TokenCommand::Delete { name } => {
            client
                .delete(&format!("/api/v1/tokens/{}", query_value(name)))
                .await?;
            outln!("deleted token {name}");
        }
        TokenCommand::Credential { command } => match command {
            TokenCredentialCommand::Generate {
                name,
                password1: _,
                password2,
                expiration_in_days,
            } => {
                let password_name = if *password2 { "password2" } else { "password1" };
                let secret = client
                    .post(
                        &format!("/api/v1/tokens/{}/credentials", query_value(name)),
                        json!({ "passwordName": password_name, "expiryDays": expiration_in_days }),
                    )
                    .await?;
                print_secret("New token password:", &json!([secret]), args.output);
            }
        },
    }
    Ok(())
}

pub async fn role(args: &ClientArgs, command: &RoleCommand) -> anyhow::Result<()> {
    let client = Client::new(&args.connection())?;
    const ROLE: &[Column] = &[
        ("NAME", "/name"),
        ("BUILT-IN", "/builtin"),
        ("ACTIONS", "/actions"),
        ("DESCRIPTION", "/description"),
    ];
    const ASSIGNMENT: &[Column] = &[
        ("ID", "/id"),
        ("PRINCIPAL", "/principal"),
        ("PRINCIPAL ID", "/principalId"),
        ("ROLE", "/role"),
        ("SCOPE", "/scope"),
        ("ORPHANED", "/orphaned"),
        ("CREATED", "/createdAt"),
    ];
    match command {
        RoleCommand::Definition { command } => match command {
            RoleDefinitionCommand::List => print(
                &client.get("/api/v1/role-definitions").await?,
                ROLE,
                args.output,
            ),
            RoleDefinitionCommand::Create {
                name,
                actions,
                description,
            } => print(
                &client
                    .post(
                        "/api/v1/role-definitions",
                        json!({ "name": name, "actions": actions, "description": description }),
                    )
                    .await?,
                ROLE,
                args.output,
            ),
        },
        RoleCommand::Assignment { command } => match command {
            RoleAssignmentCommand::Create {
                assignee,
                role,
                scope,
            } => print(
                &client
                    .post(
                        "/api/v1/role-assignments",
                        json!({ "assignee": assignee, "role": role, "scope": scope }),
                    )
                    .await?,
                ASSIGNMENT,
                args.output,
            ),
            RoleAssignmentCommand::List { assignee } => {
                let path = match assignee {
                    Some(a) => format!("/api/v1/role-assignments?assignee={}", query_value(a)),
                    None => "/api/v1/role-assignments".to_string(),
                };
                print(&client.get(&path).await?, ASSIGNMENT, args.output)
            }
            RoleAssignmentCommand::Delete { id } => {
                client
                    .delete(&format!("/api/v1/role-assignments/{}", query_value(id)))
                    .await?;
                outln!("deleted role assignment {id}");
            }
        },
    }
    Ok(())
}

const REGISTRY_SETTINGS: &[Column] = &[
    ("ANONYMOUS PULL", "/anonymousPullEnabled"),
    ("ADMIN USER", "/adminUserEnabled"),
];

/// `berth update`: with flags, changes the settings they name and prints
/// the settings as they are now; without, only prints them (registry and
/// network settings; in JSON `{"registry": {...}, "network": {...}}`, as
/// when both kinds of setting were changed; after a change of one kind,
/// that kind's answer alone).
pub async fn update(args: &ClientArgs, update: &UpdateArgs) -> anyhow::Result<()> {
    let client = Client::new(&args.connection())?;
    let mut network = json!({
        "publicNetworkAccess": update.public_network_enabled.map(|e| if e { "Enabled" } else { "Disabled" }),
        "defaultAction": update.default_action.map(DefaultAction::as_str),
        "networkRuleBypassOptions": update.allow_trusted_services.map(|t| if t { "TrustedServices" } else { "None" }),
        "dataEndpointEnabled": update.data_endpoint_enabled,
    });
    let change_network = network
        .as_object()
        .is_some_and(|o| o.values().any(|v| !v.is_null()));
    let change_registry = update.anonymous_pull_enabled.is_some() || update.admin_enabled.is_some();
    if !change_network && !change_registry {
        if update.force {
            return Err(invalid_argument(
                "--force goes with a network change (--public-network-enabled, --default-action, ...)",
            ));
        }
        let registry = client.get("/api/v1/registry").await?;
        let network = client.get("/api/v1/network").await?;
        if args.output == Format::Json {
            print_json(&json!({ "registry": registry, "network": network }));
        } else {
            print(&registry, REGISTRY_SETTINGS, args.output);
            print_network(&network, args.output);
        }
        return Ok(());
    }
    let network_answer = if change_network {
        if update.force {
            network["force"] = json!(true);
        }
        Some(client.patch("/api/v1/network", network).await?)
    } else {
        None
    };
    let registry_answer = if change_registry {
        let body = json!({
            "anonymousPullEnabled": update.anonymous_pull_enabled,
            "adminUserEnabled": update.admin_enabled,
        });
        Some(client.patch("/api/v1/registry", body).await?)
    } else {
        None
    };
    if args.output == Format::Json {
        // One document: the passwords of a new admin user are in the
        // registry answer (`adminPasswords`).
        match (registry_answer, network_answer) {
            (Some(registry), Some(network)) => {
                print_json(&json!({ "registry": registry, "network": network }))
            }
            (Some(one), None) | (None, Some(one)) => print_json(&one),
            (None, None) => {}
        }
        return Ok(());
    }
    if let Some(answer) = &network_answer {
        print_network(answer, args.output);
    }
    if let Some(answer) = &registry_answer {
        if let Some(passwords) = answer.get("adminPasswords") {
            print_secret(
                "The admin user 'berth' was created with these passwords:",
                passwords,
                args.output,
            );
        }
        print(answer, REGISTRY_SETTINGS, args.output);
    }
    Ok(())
}

fn print_network(answer: &Value, format: Format) {
    print(
        answer,
        &[
            ("PUBLIC NETWORK ACCESS", "/publicNetworkAccess"),
            ("DEFAULT ACTION", "/networkRuleSet/defaultAction"),
            ("IP RULES", "/networkRuleSet/ipRules"),
            ("SUBNET RULES", "/networkRuleSet/subnetRules"),
            ("BYPASS", "/networkRuleBypassOptions"),
            ("DATA ENDPOINT", "/dataEndpointEnabled"),
        ],
        format,
    );
}

pub async fn network_rule(args: &ClientArgs, command: &NetworkRuleCommand) -> anyhow::Result<()> {
    let client = Client::new(&args.connection())?;
    let answer = match command {
        NetworkRuleCommand::Add(t) => {
            client
                .post(
                    "/api/v1/network/rules",
                    json!({ "ipAddress": t.ip_address, "subnet": t.subnet }),
                )
                .await?
        }
        NetworkRuleCommand::Remove { target: t, force } => {
            let mut query = match (&t.ip_address, &t.subnet) {
                (Some(ip), _) => format!("ipAddress={}", query_value(ip)),
                (_, Some(subnet)) => format!("subnet={}", query_value(subnet)),
                _ => return Err(invalid_argument("give --ip-address or --subnet")),
            };
            if *force {
                query.push_str("&force=true");
            }
            client
                .delete(&format!("/api/v1/network/rules?{query}"))
                .await?
        }
        NetworkRuleCommand::List => client.get("/api/v1/network").await?,
    };
    print_network(&answer, args.output);
    Ok(())
}

pub async fn show_endpoints(args: &ClientArgs) -> anyhow::Result<()> {
    let client = Client::new(&args.connection())?;
    let answer = client.get("/api/v1/endpoints").await?;
    if args.output == Format::Json {
        print_json(&answer);
        return Ok(());
    }
    outln!(
        "login server: {}",
        answer["loginServer"].as_str().unwrap_or("(none)")
    );
    print(
        &answer["endpoints"],
        &[("ENDPOINT", "/endpoint"), ("ADDRESS", "/address")],
        args.output,
    );
    if answer["dataEndpoints"]
        .as_array()
        .is_some_and(|a| !a.is_empty())
    {
        print(
            &answer["dataEndpoints"],
            &[("DATA ENDPOINT REGION", "/region"), ("HOST", "/host")],
            args.output,
        );
    }
    Ok(())
}

pub async fn identity(args: &ClientArgs, command: &IdentityCommand) -> anyhow::Result<()> {
    let client = Client::new(&args.connection())?;
    match command {
        IdentityCommand::List => print(
            &client.get("/api/v1/identities").await?,
            IDENTITY,
            args.output,
        ),
        IdentityCommand::Update {
            id,
            trusted_service,
        } => print(
            &client
                .patch(
                    &format!("/api/v1/identities/{}", query_value(id)),
                    json!({ "trustedService": trusted_service }),
                )
                .await?,
            IDENTITY,
            args.output,
        ),
    }
    Ok(())
}

pub async fn gc(args: &ClientArgs, command: &GcCommand) -> anyhow::Result<()> {
    let client = Client::new(&args.connection())?;
    match command {
        GcCommand::Status => {
            let status = client.get("/api/v1/gc").await?;
            if args.output == Format::Json {
                print_json(&status);
                return Ok(());
            }
            outln!(
                "queued candidates: {} (examined once their grace period of {} s has passed)",
                status["queuedCandidates"],
                status["graceSeconds"]
            );
            print(
                &status["runs"],
                &[
                    ("RUN", "/id"),
                    ("NODE", "/node"),
                    ("STATE", "/state"),
                    ("STARTED", "/startedAt"),
                    ("MS", "/durationMs"),
                    ("EXAMINED", "/examined"),
                    ("DELETED", "/blobsDeleted"),
                    ("BYTES", "/bytesReclaimed"),
                    ("UPLOADS PURGED", "/uploadsPurged"),
                    ("STORAGE REQUESTS", "/storageRequests"),
                    ("ERROR", "/error"),
                ],
                args.output,
            );
        }
        GcCommand::Run => print(
            &client.post("/api/v1/gc/run", json!({})).await?,
            &[
                ("EXAMINED", "/examined"),
                ("DELETED", "/blobsDeleted"),
                ("BYTES", "/bytesReclaimed"),
                ("UPLOADS PURGED", "/uploadsPurged"),
                ("STORAGE REQUESTS", "/storageRequests"),
            ],
            args.output,
        ),
    }
    Ok(())
}

pub async fn repository(args: &ClientArgs, command: &RepositoryCommand) -> anyhow::Result<()> {
    let client = Client::new(&args.connection())?;
    match command {
        RepositoryCommand::List => {
            let repos = client.get("/api/v1/repositories").await?;
            let rows: Vec<Value> = repos
                .as_array()
                .map(|a| a.iter().map(|r| json!({ "name": r })).collect())
                .unwrap_or_default();
            if args.output == Format::Json {
                print_json(&repos);
            } else {
                print(&Value::Array(rows), &[("REPOSITORY", "/name")], args.output);
            }
        }
        RepositoryCommand::ShowTags { repository } => print(
            &client
                .get(&format!(
                    "/api/v1/repositories/tags?repository={}",
                    query_value(repository)
                ))
                .await?,
            &[
                ("TAG", "/name"),
                ("DIGEST", "/digest"),
                ("MEDIA TYPE", "/mediaType"),
            ],
            args.output,
        ),
        RepositoryCommand::ShowManifests { repository } => print(
            &client
                .get(&format!(
                    "/api/v1/repositories/manifests?repository={}",
                    query_value(repository)
                ))
                .await?,
            &[
                ("DIGEST", "/digest"),
                ("TAGS", "/tags"),
                ("MEDIA TYPE", "/mediaType"),
                ("ARTIFACT TYPE", "/artifactType"),
                ("SIZE", "/size"),
                ("CREATED", "/createdAt"),
            ],
            args.output,
        ),
        RepositoryCommand::Delete { repository, yes } => {
            if !yes {
                return Err(invalid_argument(format!(
                    "deleting '{repository}' removes all its manifests and tags; repeat with --yes to confirm"
                )));
            }
            let answer = client
                .delete(&format!(
                    "/api/v1/repositories?repository={}",
                    query_value(repository)
                ))
                .await?;
            print(
                &answer,
                &[
                    ("REPOSITORY", "/repository"),
                    ("MANIFESTS DELETED", "/manifestsDeleted"),
                ],
                args.output,
            );
        }
    }
    Ok(())
}

fn log_query(args: &LogArgs, repository: Option<&str>) -> anyhow::Result<String> {
    let since_ms = args.since.unix_seconds(now()).saturating_mul(1000);
    let mut q = format!("since={since_ms}&limit={}", args.limit);
    if args.failed {
        q.push_str("&failed=true");
    }
    if let Some(i) = &args.identity {
        q.push_str(&format!("&identity={}", query_value(i)));
    }
    if let Some(r) = repository {
        q.push_str(&format!("&repository={}", query_value(r)));
    }
    Ok(q)
}

/// Event times are unix milliseconds; people read RFC 3339.
fn with_readable_times(mut events: Value) -> Value {
    if let Some(list) = events.as_array_mut() {
        for e in list {
            // Already RFC 3339 from a server that sends it so.
            let time = match &e["TimeGenerated"] {
                Value::Number(ms) => ms.as_i64().map(|ms| berth_auth::rfc3339(ms / 1000)),
                Value::String(t) => Some(t.clone()),
                _ => None,
            };
            if let Some(time) = time {
                e["Time"] = json!(time);
            }
        }
    }
    events
}

pub async fn logs(args: &ClientArgs, command: &LogsCommand) -> anyhow::Result<()> {
    let client = Client::new(&args.connection())?;
    match command {
        LogsCommand::Login(a) => {
            let events = client
                .get(&format!("/api/v1/logs/login?{}", log_query(a, None)?))
                .await?;
            print(
                &with_readable_times(events),
                &[
                    ("TIME", "/Time"),
                    ("IDENTITY", "/Identity"),
                    ("CALLER IP", "/CallerIpAddress"),
                    ("OPERATION", "/OperationName"),
                    ("RESULT", "/ResultType"),
                    ("DESCRIPTION", "/ResultDescription"),
                    ("CORRELATION ID", "/CorrelationId"),
                ],
                args.output,
            );
        }
        LogsCommand::Repository {
            args: a,
            repository,
        } => {
            let events = client
                .get(&format!(
                    "/api/v1/logs/repository?{}",
                    log_query(a, repository.as_deref())?
                ))
                .await?;
            print(
                &with_readable_times(events),
                &[
                    ("TIME", "/Time"),
                    ("OPERATION", "/OperationName"),
                    ("REPOSITORY", "/Repository"),
                    ("TAG", "/Tag"),
                    ("DIGEST", "/Digest"),
                    ("IDENTITY", "/Identity"),
                    ("CALLER IP", "/CallerIpAddress"),
                    ("RESULT", "/ResultType"),
                    ("DESCRIPTION", "/ResultDescription"),
                ],
                args.output,
            );
        }
    }
    Ok(())
}

pub async fn activity(args: &ClientArgs, command: &ActivityCommand) -> anyhow::Result<()> {
    let client = Client::new(&args.connection())?;
    match command {
        ActivityCommand::List { since } => {
            let since = since.unix_seconds(now());
            let mut entries = client
                .get(&format!("/api/v1/activity?since={since}"))
                .await?;
            if args.output == Format::Json {
                print_json(&entries);
                return Ok(());
            }
            // Whole before/after snapshots make rows hundreds of columns
            // wide: the table shows what changed.
            if let Some(list) = entries.as_array_mut() {
                for e in list {
                    e["changes"] = json!(summarise_change(e.get("before"), e.get("after")));
                }
            }
            print(
                &entries,
                &[
                    ("TIME", "/time"),
                    ("ACTOR", "/actor"),
                    ("OPERATION", "/operation"),
                    ("TARGET", "/target"),
                    ("CHANGES", "/changes"),
                ],
                args.output,
            );
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn since_takes_durations_and_times() {
        let ago = |s: &str| parse_since(s).map(|v| v.unix_seconds(1_000_000));
        assert_eq!(ago("24h"), Ok(1_000_000 - 86400));
        assert_eq!(ago("7d"), Ok(1_000_000 - 7 * 86400));
        assert_eq!(ago("30m"), Ok(1_000_000 - 1800));
        assert_eq!(ago("1h30m"), Ok(1_000_000 - 5400));
        assert_eq!(ago(" 90s "), Ok(1_000_000 - 90));
        assert_eq!(
            parse_since("2026-12-01T00:00:00Z"),
            Ok(Since::At(1_796_083_200))
        );
        assert_eq!(
            parse_since("2026-12-01T01:00:00+01:00"),
            Ok(Since::At(1_796_083_200))
        );
        for bad in ["x", "24", "5 parsecs", "2026-12-01", "yesterday"] {
            let e = parse_since(bad).expect_err(bad);
            assert!(
                e.contains("24h") && e.contains("RFC 3339") && e.contains(bad),
                "{e}"
            );
        }
    }
}

#[derive(Debug, Args)]
pub struct ExplainArgs {
    /// The client address to evaluate.
    #[arg(long)]
    pub ip: String,
    /// `public` or `private:NAME`.
    #[arg(long, default_value = "public")]
    pub endpoint: String,
    /// App id, token name or login (omit for anonymous).
    #[arg(long)]
    pub identity: Option<String>,
    /// What the request would do.
    #[arg(long, value_enum, ignore_case = true)]
    pub action: ExplainAction,
    /// The repository the request is for (all actions but catalog).
    #[arg(long)]
    pub repository: Option<String>,
}

/// The kind of request `explain` evaluates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ExplainAction {
    /// Pull a manifest or blob.
    Pull,
    /// Push a manifest or blob.
    Push,
    /// Delete a manifest, tag or blob.
    Delete,
    /// List the catalog of repositories.
    Catalog,
}

impl ExplainAction {
    /// As the management API spells it.
    fn as_str(self) -> &'static str {
        match self {
            ExplainAction::Pull => "pull",
            ExplainAction::Push => "push",
            ExplainAction::Delete => "delete",
            ExplainAction::Catalog => "catalog",
        }
    }
}

/// Asks the registry for its decision trace.
pub async fn explain(args: &ClientArgs, e: &ExplainArgs) -> anyhow::Result<()> {
    let client = Client::new(&args.connection())?;
    let answer = client
        .post(
            "/api/v1/explain",
            json!({
                "ip": e.ip,
                "endpoint": e.endpoint,
                "identity": e.identity,
                "action": e.action.as_str(),
                "repository": e.repository,
            }),
        )
        .await?;
    if args.output == Format::Json {
        print_json(&answer);
    } else {
        let a = &answer["access"];
        let list = |v: &Value| {
            v.as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|x| x.as_str())
                        .collect::<Vec<_>>()
                        .join("; ")
                })
                .unwrap_or_default()
        };
        outln!("verdict:   {}", answer["verdict"].as_str().unwrap_or(""));
        outln!(
            "network:   {} on {} endpoint: {}",
            if answer["network"]["allowed"] == json!(true) {
                "allowed"
            } else {
                "DENIED"
            },
            answer["network"]["endpoint"].as_str().unwrap_or(""),
            answer["network"]["reason"]
                .as_str()
                .or(answer["network"]["rule"].as_str())
                .unwrap_or("")
        );
        match a["identity"].as_object() {
            Some(i) => outln!(
                "identity:  {} '{}' ({}){}",
                i.get("kind").and_then(Value::as_str).unwrap_or(""),
                i.get("name").and_then(Value::as_str).unwrap_or(""),
                i.get("id").and_then(Value::as_str).unwrap_or(""),
                a["identityProblem"]
                    .as_str()
                    .map(|p| format!(" — {p}"))
                    .unwrap_or_default()
            ),
            None => outln!(
                "identity:  {}",
                a["identityProblem"].as_str().unwrap_or("anonymous")
            ),
        }
        outln!("granted by: {}", list(&a["grantedBy"]));
        if a["otherAssignments"]
            .as_array()
            .is_some_and(|x| !x.is_empty())
        {
            outln!(
                "other grants (not covering this): {}",
                list(&a["otherAssignments"])
            );
        }
        if let Some(missing) = a["missing"].as_str() {
            outln!("missing:   {missing}");
        }
        if let Some(orphans) = a["orphanedAssignments"]
            .as_array()
            .filter(|o| !o.is_empty())
        {
            outln!("orphaned assignments (principal deleted; they grant nothing):");
            for o in orphans {
                outln!(
                    "  {} role {} at {} for deleted principal {}",
                    o["id"].as_str().unwrap_or(""),
                    o["role"].as_str().unwrap_or(""),
                    o["scope"].as_str().unwrap_or(""),
                    o["principalId"].as_str().unwrap_or("")
                );
            }
        }
    }
    if answer["allowed"] != json!(true) {
        std::process::exit(2);
    }
    Ok(())
}
