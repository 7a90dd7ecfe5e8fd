//! Client subcommands: `az acr`-style management of a running registry
//! through its management API.

use anyhow::{bail, Context};
use clap::{Args, Subcommand};
use serde_json::{json, Value};

use berth_manage::{explain, gc, identities, logs, network, registry, repositories, roles, tokens};

use crate::client::{registry_host, store_credentials, Client, Connection};
use crate::output::{print, print_secret, Column, Format};

#[derive(Debug, Args)]
pub struct ClientArgs {
    #[command(flatten)]
    pub connection: Connection,
    /// Output format.
    #[arg(long, short = 'o', value_enum, default_value = "table", global = true)]
    pub output: Format,
}

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

#[derive(Debug, Subcommand)]
pub enum CredentialCommand {
    /// Show the admin user's name and its passwords' dates (values are
    /// never stored, so never shown again).
    Show,
    /// Regenerate one admin password; the other keeps working.
    Renew {
        #[arg(long, value_parser = ["password", "password2"])]
        password_name: String,
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
        /// App id (or name).
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
        #[arg(long)]
        id: String,
    },
    /// Replace the secret with a new one, printed once.
    Reset {
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
        #[arg(long)]
        name: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Create a repository-scoped token; prints both passwords once.
    Create {
        #[arg(long)]
        name: String,
        #[arg(long)]
        scope_map: String,
        /// Create it disabled.
        #[arg(long)]
        disabled: bool,
        /// Days until the passwords expire (default: never).
        #[arg(long)]
        expiration_in_days: Option<u32>,
    },
    /// Enable/disable a token or change its scope map.
    Update {
        #[arg(long)]
        name: String,
        #[arg(long, value_parser = ["enabled", "disabled"])]
        status: Option<String>,
        #[arg(long)]
        scope_map: Option<String>,
    },
    /// List tokens.
    List,
    /// Delete a token.
    Delete {
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
        #[arg(long)]
        name: String,
        #[arg(long, conflicts_with = "password2")]
        password1: bool,
        #[arg(long)]
        password2: bool,
        #[arg(long)]
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
        #[arg(long)]
        name: String,
        /// Comma-separated actions, e.g. registries/pull/read,registries/metadata/read.
        #[arg(long, value_delimiter = ',')]
        actions: Vec<String>,
        #[arg(long, default_value = "")]
        description: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum RoleAssignmentCommand {
    /// Assign a role to an identity (by app id or login).
    Create {
        #[arg(long)]
        assignee: String,
        #[arg(long)]
        role: String,
        /// A repository, `prefix/*`, or empty for the registry.
        #[arg(long, default_value = "")]
        scope: String,
    },
    /// List assignments; orphaned ones (principal deleted) are marked.
    List {
        #[arg(long)]
        assignee: Option<String>,
    },
    /// Delete an assignment.
    Delete {
        #[arg(long)]
        id: String,
    },
}

#[derive(Debug, Args)]
pub struct UpdateArgs {
    /// Let unauthenticated clients pull (never push or list the catalog).
    #[arg(long)]
    pub anonymous_pull_enabled: Option<bool>,
    /// Enable or disable the admin user.
    #[arg(long)]
    pub admin_enabled: Option<bool>,
    /// Public network access (false: only private endpoints work).
    #[arg(long)]
    pub public_network_enabled: Option<bool>,
    /// What happens to public requests no rule matches.
    #[arg(long, value_parser = ["Allow", "Deny"])]
    pub default_action: Option<String>,
    /// Let identities marked as trusted services bypass network rules.
    #[arg(long)]
    pub allow_trusted_services: Option<bool>,
    /// Redirect blob downloads to the dedicated data endpoint.
    #[arg(long)]
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
        #[arg(long)]
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
        #[arg(long)]
        repository: String,
    },
    /// List a repository's manifests with their tags.
    ShowManifests {
        #[arg(long)]
        repository: String,
    },
    /// Delete a repository with all its manifests and tags.
    Delete {
        #[arg(long)]
        repository: String,
        /// Do not ask for confirmation.
        #[arg(long)]
        yes: bool,
    },
}

#[derive(Debug, Args)]
pub struct LogArgs {
    /// How far back, e.g. 24h, 7d, 30m.
    #[arg(long, default_value = "24h")]
    pub since: String,
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
    /// List management changes.
    List {
        /// How far back, e.g. 24h, 7d, 30m.
        #[arg(long, default_value = "24h")]
        since: String,
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

/// Parses `24h`, `7d`, `30m`, `90s` into seconds.
pub fn duration_seconds(s: &str) -> anyhow::Result<i64> {
    let s = s.trim();
    let (number, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let n: i64 = number
        .parse()
        .with_context(|| format!("'{s}' is not a duration like 24h, 7d, 30m"))?;
    let factor = match unit {
        "s" => 1,
        "m" => 60,
        "h" | "" => 3600,
        "d" => 86400,
        other => bail!("unknown duration unit '{other}' (use s, m, h or d)"),
    };
    Ok(n * factor)
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// `--since 24h` as the RFC 3339 time the API takes.
fn since_time(since: &str) -> anyhow::Result<String> {
    Ok(berth_auth::rfc3339(now() - duration_seconds(since)?))
}

/// A typed answer as JSON, for the table printer and `-o json`.
fn json_of(value: impl serde::Serialize) -> Value {
    serde_json::to_value(value).unwrap_or(Value::Null)
}

pub async fn login(args: &ClientArgs, login: &LoginArgs) -> anyhow::Result<()> {
    let mut connection = args.connection.clone();
    if login.password_stdin {
        let mut line = String::new();
        std::io::stdin().read_line(&mut line)?;
        connection.password = Some(line.trim_end_matches(['\r', '\n']).to_string());
    }
    let (Some(username), Some(password)) = (&connection.username, &connection.password) else {
        bail!("give --username and --password (or --password-stdin)");
    };
    let client = Client::new(&connection)?;
    client.check_login().await?;
    let host = registry_host(client.base());
    let path = store_credentials(&host, username, password)?;
    println!(
        "Login succeeded: credentials for {host} stored in {}",
        path.display()
    );
    Ok(())
}

/// Enabling the admin user the first time created it: its name (asked of
/// the server, not assumed) and its two passwords, shown this once.
async fn print_admin_created(
    client: &Client,
    answer: &registry::RegistrySettings,
    format: Format,
) -> anyhow::Result<()> {
    let username = client
        .send(&registry::GetAdminCredentials {})
        .await?
        .username;
    print_secret(
        &format!("The admin user '{username}' was created with these passwords:"),
        &json_of(&answer.admin_passwords),
        format,
    );
    Ok(())
}

pub async fn admin(args: &ClientArgs, command: &AdminCommand) -> anyhow::Result<()> {
    let client = Client::new(&args.connection)?;
    let enabled = matches!(command, AdminCommand::Enable);
    let answer = client
        .send(&registry::UpdateRegistry {
            admin_user_enabled: Some(enabled),
            ..Default::default()
        })
        .await?;
    if !answer.admin_passwords.is_empty() {
        print_admin_created(&client, &answer, args.output).await?;
    } else if args.output == Format::Json {
        print(&json_of(&answer), &[], args.output);
    } else {
        println!(
            "admin user {}",
            if enabled { "enabled" } else { "disabled" }
        );
    }
    Ok(())
}

pub async fn credential(args: &ClientArgs, command: &CredentialCommand) -> anyhow::Result<()> {
    let client = Client::new(&args.connection)?;
    match command {
        CredentialCommand::Show => {
            let answer = client.send(&registry::GetAdminCredentials {}).await?;
            if args.output == Format::Json {
                print(&json_of(&answer), &[], args.output);
            } else {
                println!(
                    "username: {}  (admin user {})",
                    answer.username,
                    if answer.enabled {
                        "enabled"
                    } else {
                        "disabled"
                    }
                );
                print(&json_of(&answer.passwords), CREDENTIAL, args.output);
            }
        }
        CredentialCommand::Renew { password_name } => {
            let password_name = match password_name.as_str() {
                "password2" => registry::PasswordName::Password2,
                _ => registry::PasswordName::Password,
            };
            let secret = client
                .send(&registry::RenewAdminPassword { password_name })
                .await?;
            print_secret("New admin password:", &json_of([secret]), args.output);
        }
    }
    Ok(())
}

pub async fn owner(args: &ClientArgs, command: &OwnerCommand) -> anyhow::Result<()> {
    let client = Client::new(&args.connection)?;
    match command {
        OwnerCommand::RotatePassword => {
            let secret = client.send(&registry::RenewOwnerPassword {}).await?;
            print_secret("New owner password:", &json_of([secret]), args.output);
            // This is a remote client: the server's files are out of reach.
            eprintln!(
                "note: the server's <data>/initial-owner-password file is not updated and still holds an earlier password; \
                 to reset the password and rewrite that file, run 'berth recover --reset-owner-password' on the server host"
            );
        }
        OwnerCommand::RotateSigningKey => {
            let answer = client.send(&registry::RotateSigningKey {}).await?;
            print(
                &json_of(answer),
                &[("NEW SIGNING KEY", "/kid")],
                args.output,
            );
        }
    }
    Ok(())
}

pub async fn sp(args: &ClientArgs, command: &SpCommand) -> anyhow::Result<()> {
    let client = Client::new(&args.connection)?;
    match command {
        SpCommand::Create {
            name,
            role,
            scope,
            years,
            end_date,
        } => {
            let created = client
                .send(&identities::CreateServicePrincipal {
                    name: name.clone(),
                    role: role.clone(),
                    scope: scope.clone(),
                    years: Some(*years),
                    end_date: end_date.clone(),
                })
                .await?;
            if args.output == Format::Json {
                print(&json_of(&created), &[], args.output);
            } else {
                println!("app id: {}", created.identity.id);
                print_secret("secret:", &json_of(&created.secrets), args.output);
            }
        }
        SpCommand::List => print(
            &json_of(client.send(&identities::ListServicePrincipals {}).await?),
            IDENTITY,
            args.output,
        ),
        SpCommand::Delete { id } => {
            client
                .send(&identities::DeleteServicePrincipal { id: id.clone() })
                .await?;
            println!("deleted service principal {id}");
        }
        SpCommand::Credential { command } => match command {
            SpCredentialCommand::List { id } => print(
                &json_of(
                    client
                        .send(&identities::ListServicePrincipalCredentials { id: id.clone() })
                        .await?,
                ),
                CREDENTIAL,
                args.output,
            ),
            SpCredentialCommand::Reset {
                id,
                years,
                end_date,
            } => {
                let secret = client
                    .send(&identities::ResetServicePrincipalSecret {
                        id: id.clone(),
                        years: Some(*years),
                        end_date: end_date.clone(),
                    })
                    .await?;
                print_secret("New secret:", &json_of([secret]), args.output);
            }
        },
    }
    Ok(())
}

fn scope_rules(repositories: &[String]) -> anyhow::Result<Vec<tokens::ScopeRule>> {
    let mut rules = Vec::new();
    for r in repositories {
        let Some((repo, actions)) = r.split_once('=') else {
            bail!("--repository '{r}' must be REPOSITORY=ACTION[,ACTION...], e.g. app/web=content/read,content/write");
        };
        let actions = actions
            .split(',')
            .map(str::trim)
            .filter(|a| !a.is_empty())
            .map(|a| {
                tokens::ScopeAction::parse(a).with_context(|| {
                    format!(
                        "action '{a}' is not a scope-map action; use {}",
                        tokens::ScopeAction::ALL.map(|a| a.as_str()).join(", ")
                    )
                })
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        rules.push(tokens::ScopeRule {
            repository: repo.to_string(),
            actions,
        });
    }
    Ok(rules)
}

const SCOPE_MAP: &[Column] = &[
    ("NAME", "/name"),
    ("DESCRIPTION", "/description"),
    ("RULES", "/rules"),
    ("CREATED", "/createdAt"),
];

pub async fn scope_map(args: &ClientArgs, command: &ScopeMapCommand) -> anyhow::Result<()> {
    let client = Client::new(&args.connection)?;
    let answer = match command {
        ScopeMapCommand::Create(m) => json_of(
            client
                .send(&tokens::CreateScopeMap {
                    name: m.name.clone(),
                    description: m.description.clone(),
                    rules: scope_rules(&m.repositories)?,
                })
                .await?,
        ),
        ScopeMapCommand::Update(m) => json_of(
            client
                .send(&tokens::UpdateScopeMap {
                    name: m.name.clone(),
                    description: m.description.clone(),
                    rules: scope_rules(&m.repositories)?,
                })
                .await?,
        ),
        ScopeMapCommand::List => json_of(client.send(&tokens::ListScopeMaps {}).await?),
        ScopeMapCommand::Delete { name } => {
            client
                .send(&tokens::DeleteScopeMap { name: name.clone() })
                .await?;
            println!("deleted scope map {name}");
            return Ok(());
        }
    };
    print(&answer, SCOPE_MAP, args.output);
    Ok(())
}

pub async fn token(args: &ClientArgs, command: &TokenCommand) -> anyhow::Result<()> {
    let client = Client::new(&args.connection)?;
    match command {
        TokenCommand::Create {
            name,
            scope_map,
            disabled,
            expiration_in_days,
        } => {
            let created = client
                .send(&tokens::CreateToken {
                    name: name.clone(),
                    scope_map: scope_map.clone(),
                    enabled: !disabled,
                    expiry_days: *expiration_in_days,
                })
                .await?;
            if args.output == Format::Json {
                print(&json_of(&created), &[], args.output);
            } else {
                println!("token {name} created (log in with user name '{name}')");
                print_secret("passwords:", &json_of(&created.secrets), args.output);
            }
        }
        TokenCommand::Update {
            name,
            status,
            scope_map,
        } => print(
            &json_of(
                client
                    .send(&tokens::UpdateToken {
                        name: name.clone(),
                        enabled: status.as_deref().map(|s| s.eq_ignore_ascii_case("enabled")),
                        scope_map: scope_map.clone(),
                    })
                    .await?,
            ),
            IDENTITY,
            args.output,
        ),
        TokenCommand::List => print(
            &json_of(client.send(&tokens::ListTokens {}).await?),
            IDENTITY,
            args.output,
        ),
        TokenCommand::Delete { name } => {
            client
                .send(&tokens::DeleteToken { name: name.clone() })
                .await?;
            println!("deleted token {name}");
        }
        TokenCommand::Credential { command } => match command {
            TokenCredentialCommand::Generate {
                name,
                password1: _,
                password2,
                expiration_in_days,
            } => {
                let secret = client
                    .send(&tokens::GenerateTokenPassword {
                        name: name.clone(),
                        password_name: if *password2 {
                            tokens::TokenPasswordName::Password2
                        } else {
                            tokens::TokenPasswordName::Password1
                        },
                        expiry_days: *expiration_in_days,
                    })
                    .await?;
                print_secret("New token password:", &json_of([secret]), args.output);
            }
        },
    }
    Ok(())
}

pub async fn role(args: &ClientArgs, command: &RoleCommand) -> anyhow::Result<()> {
    let client = Client::new(&args.connection)?;
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
                &json_of(client.send(&roles::ListRoleDefinitions {}).await?),
                ROLE,
                args.output,
            ),
            RoleDefinitionCommand::Create {
                name,
                actions,
                description,
            } => print(
                &json_of(
                    client
                        .send(&roles::CreateRoleDefinition {
                            name: name.clone(),
                            description: description.clone(),
                            actions: actions.clone(),
                        })
                        .await?,
                ),
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
                &json_of(
                    client
                        .send(&roles::CreateRoleAssignment {
                            assignee: assignee.clone(),
                            role: role.clone(),
                            scope: scope.clone(),
                        })
                        .await?,
                ),
                ASSIGNMENT,
                args.output,
            ),
            RoleAssignmentCommand::List { assignee } => print(
                &json_of(
                    client
                        .send(&roles::ListRoleAssignments {
                            assignee: assignee.clone(),
                        })
                        .await?,
                ),
                ASSIGNMENT,
                args.output,
            ),
            RoleAssignmentCommand::Delete { id } => {
                client
                    .send(&roles::DeleteRoleAssignment { id: id.clone() })
                    .await?;
                println!("deleted role assignment {id}");
            }
        },
    }
    Ok(())
}

pub async fn update(args: &ClientArgs, update: &UpdateArgs) -> anyhow::Result<()> {
    let client = Client::new(&args.connection)?;
    let default_action = match update.default_action.as_deref() {
        None => None,
        Some(a) if a.eq_ignore_ascii_case("deny") => Some(network::DefaultAction::Deny),
        Some(_) => Some(network::DefaultAction::Allow),
    };
    let network_change = network::UpdateNetwork {
        public_network_access: update.public_network_enabled.map(|e| {
            if e {
                network::PublicNetworkAccess::Enabled
            } else {
                network::PublicNetworkAccess::Disabled
            }
        }),
        default_action,
        network_rule_bypass_options: update.allow_trusted_services.map(|t| {
            if t {
                network::Bypass::TrustedServices
            } else {
                network::Bypass::None
            }
        }),
        data_endpoint_enabled: update.data_endpoint_enabled,
        force: update.force.then_some(true),
    };
    if network_change
        != (network::UpdateNetwork {
            force: network_change.force,
            ..Default::default()
        })
    {
        let answer = client.send(&network_change).await?;
        print_network(&json_of(answer), args.output);
    }
    if update.anonymous_pull_enabled.is_none() && update.admin_enabled.is_none() {
        return Ok(());
    }
    let answer = client
        .send(&registry::UpdateRegistry {
            anonymous_pull_enabled: update.anonymous_pull_enabled,
            admin_user_enabled: update.admin_enabled,
        })
        .await?;
    if !answer.admin_passwords.is_empty() {
        print_admin_created(&client, &answer, args.output).await?;
    }
    print(
        &json_of(&answer),
        &[
            ("ANONYMOUS PULL", "/anonymousPullEnabled"),
            ("ADMIN USER", "/adminUserEnabled"),
        ],
        args.output,
    );
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
    let client = Client::new(&args.connection)?;
    let answer = match command {
        NetworkRuleCommand::Add(t) => {
            client
                .send(&network::AddNetworkRule {
                    ip_address: t.ip_address.clone(),
                    subnet: t.subnet.clone(),
                })
                .await?
        }
        NetworkRuleCommand::Remove { target: t, force } => {
            client
                .send(&network::RemoveNetworkRule {
                    ip_address: t.ip_address.clone(),
                    subnet: t.subnet.clone(),
                    force: force.then_some(true),
                })
                .await?
        }
        NetworkRuleCommand::List => client.send(&network::GetNetwork {}).await?,
    };
    print_network(&json_of(answer), args.output);
    Ok(())
}

pub async fn show_endpoints(args: &ClientArgs) -> anyhow::Result<()> {
    let client = Client::new(&args.connection)?;
    let answer = client.send(&registry::GetEndpoints {}).await?;
    if args.output == Format::Json {
        print(&json_of(&answer), &[], args.output);
        return Ok(());
    }
    println!(
        "login server: {}",
        answer.login_server.as_deref().unwrap_or("(none)")
    );
    print(
        &json_of(&answer.endpoints),
        &[("ENDPOINT", "/endpoint"), ("ADDRESS", "/address")],
        args.output,
    );
    if !answer.data_endpoints.is_empty() {
        print(
            &json_of(&answer.data_endpoints),
            &[("DATA ENDPOINT REGION", "/region"), ("HOST", "/host")],
            args.output,
        );
    }
    Ok(())
}

pub async fn identity(args: &ClientArgs, command: &IdentityCommand) -> anyhow::Result<()> {
    let client = Client::new(&args.connection)?;
    let answer = match command {
        IdentityCommand::List => {
            json_of(client.send(&identities::ListIdentities::default()).await?)
        }
        IdentityCommand::Update {
            id,
            trusted_service,
        } => json_of(
            client
                .send(&identities::UpdateIdentity {
                    id: id.clone(),
                    trusted_service: Some(*trusted_service),
                })
                .await?,
        ),
    };
    print(&answer, IDENTITY, args.output);
    Ok(())
}

const GC_REPORT: &[Column] = &[
    ("EXAMINED", "/examined"),
    ("DELETED", "/blobsDeleted"),
    ("BYTES", "/bytesReclaimed"),
    ("UPLOADS PURGED", "/uploadsPurged"),
    ("STORAGE REQUESTS", "/storageRequests"),
];

pub async fn gc(args: &ClientArgs, command: &GcCommand) -> anyhow::Result<()> {
    let client = Client::new(&args.connection)?;
    match command {
        GcCommand::Status => {
            let status = client.send(&gc::GetGcStatus {}).await?;
            if args.output == Format::Json {
                print(&json_of(&status), &[], args.output);
                return Ok(());
            }
            println!(
                "queued candidates: {} (examined once their grace period of {} s has passed)",
                status.queued_candidates, status.grace_seconds
            );
            let columns: Vec<Column> = [
                ("RUN", "/id"),
                ("NODE", "/node"),
                ("STATE", "/state"),
                ("STARTED", "/startedAt"),
                ("MS", "/durationMs"),
            ]
            .into_iter()
            .chain(GC_REPORT.iter().copied())
            .chain([("ERROR", "/error")])
            .collect();
            print(&json_of(&status.runs), &columns, args.output);
        }
        GcCommand::Run => print(
            &json_of(client.send(&gc::RunGc {}).await?),
            GC_REPORT,
            args.output,
        ),
    }
    Ok(())
}

pub async fn repository(args: &ClientArgs, command: &RepositoryCommand) -> anyhow::Result<()> {
    let client = Client::new(&args.connection)?;
    match command {
        RepositoryCommand::List => {
            let repos = client.send(&repositories::ListRepositories {}).await?;
            if args.output == Format::Json {
                print(&json_of(&repos), &[], args.output);
            } else {
                let rows: Vec<Value> = repos.iter().map(|r| json!({ "name": r })).collect();
                print(&Value::Array(rows), &[("REPOSITORY", "/name")], args.output);
            }
        }
        RepositoryCommand::ShowTags { repository } => print(
            &json_of(
                client
                    .send(&repositories::ListTags {
                        repository: repository.clone(),
                    })
                    .await?,
            ),
            &[
                ("TAG", "/name"),
                ("DIGEST", "/digest"),
                ("MEDIA TYPE", "/mediaType"),
            ],
            args.output,
        ),
        RepositoryCommand::ShowManifests { repository } => print(
            &json_of(
                client
                    .send(&repositories::ListManifests {
                        repository: repository.clone(),
                    })
                    .await?,
            ),
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
                bail!("deleting '{repository}' removes all its manifests and tags; repeat with --yes to confirm");
            }
            let answer = client
                .send(&repositories::DeleteRepository {
                    repository: repository.clone(),
                })
                .await?;
            print(
                &json_of(answer),
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

pub async fn logs(args: &ClientArgs, command: &LogsCommand) -> anyhow::Result<()> {
    let client = Client::new(&args.connection)?;
    match command {
        LogsCommand::Login(a) => {
            let events = client
                .send(&logs::ListLoginEvents {
                    since: Some(since_time(&a.since)?),
                    failed: a.failed,
                    identity: a.identity.clone(),
                    limit: Some(a.limit),
                })
                .await?;
            print(
                &json_of(events),
                &[
                    ("TIME", "/timeGenerated"),
                    ("IDENTITY", "/identity"),
                    ("CALLER IP", "/callerIpAddress"),
                    ("OPERATION", "/operationName"),
                    ("RESULT", "/resultType"),
                    ("DESCRIPTION", "/resultDescription"),
                    ("CORRELATION ID", "/correlationId"),
                ],
                args.output,
            );
        }
        LogsCommand::Repository {
            args: a,
            repository,
        } => {
            let events = client
                .send(&logs::ListRepositoryEvents {
                    since: Some(since_time(&a.since)?),
                    failed: a.failed,
                    identity: a.identity.clone(),
                    repository: repository.clone(),
                    limit: Some(a.limit),
                })
                .await?;
            print(
                &json_of(events),
                &[
                    ("TIME", "/timeGenerated"),
                    ("OPERATION", "/operationName"),
                    ("REPOSITORY", "/repository"),
                    ("TAG", "/tag"),
                    ("DIGEST", "/digest"),
                    ("IDENTITY", "/identity"),
                    ("CALLER IP", "/callerIpAddress"),
                    ("RESULT", "/resultType"),
                    ("DESCRIPTION", "/resultDescription"),
                ],
                args.output,
            );
        }
    }
    Ok(())
}

pub async fn activity(args: &ClientArgs, command: &ActivityCommand) -> anyhow::Result<()> {
    let client = Client::new(&args.connection)?;
    match command {
        ActivityCommand::List { since } => print(
            &json_of(
                client
                    .send(&logs::ListActivity {
                        since: Some(since_time(since)?),
                        limit: None,
                    })
                    .await?,
            ),
            &[
                ("TIME", "/time"),
                ("ACTOR", "/actor"),
                ("OPERATION", "/operation"),
                ("TARGET", "/target"),
                ("BEFORE", "/before"),
                ("AFTER", "/after"),
            ],
            args.output,
        ),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(duration_seconds("24h").expect("24h"), 86400);
        assert_eq!(duration_seconds("7d").expect("7d"), 7 * 86400);
        assert_eq!(duration_seconds("30m").expect("30m"), 1800);
        assert!(duration_seconds("x").is_err());
        assert!(duration_seconds("5w").is_err());
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
    #[arg(long, value_parser = ["pull", "push", "delete", "catalog"])]
    pub action: String,
    #[arg(long)]
    pub repository: Option<String>,
}

/// Asks the registry for its decision trace.
pub async fn explain(args: &ClientArgs, e: &ExplainArgs) -> anyhow::Result<()> {
    let client = Client::new(&args.connection)?;
    let action = match e.action.to_ascii_lowercase().as_str() {
        "push" => explain::ExplainAction::Push,
        "delete" => explain::ExplainAction::Delete,
        "catalog" => explain::ExplainAction::Catalog,
        _ => explain::ExplainAction::Pull,
    };
    let answer = client
        .send(&explain::Explain {
            ip: e.ip.clone(),
            endpoint: Some(e.endpoint.clone()),
            identity: e.identity.clone(),
            action,
            repository: e.repository.clone(),
        })
        .await?;
    if args.output == Format::Json {
        print(&json_of(&answer), &[], args.output);
    } else {
        let a = &answer.access;
        let n = &answer.network;
        println!("verdict:   {}", answer.verdict);
        println!(
            "network:   {} on {} endpoint: {}",
            if n.allowed { "allowed" } else { "DENIED" },
            n.endpoint,
            n.reason.as_deref().unwrap_or(&n.rule)
        );
        let problem = a.identity_problem.as_deref();
        match &a.identity {
            Some(i) => println!(
                "identity:  {} '{}' ({}){}",
                i.kind,
                i.name,
                i.id,
                problem.map(|p| format!(" — {p}")).unwrap_or_default()
            ),
            None => println!("identity:  {}", problem.unwrap_or("anonymous")),
        }
        println!("granted by: {}", a.granted_by.join("; "));
        if !a.other_assignments.is_empty() {
            println!(
                "other grants (not covering this): {}",
                a.other_assignments.join("; ")
            );
        }
        if let Some(missing) = &a.missing {
            println!("missing:   {missing}");
        }
        if !a.orphaned_assignments.is_empty() {
            println!("orphaned assignments (principal deleted; they grant nothing):");
            for o in &a.orphaned_assignments {
                println!(
                    "  {} role {} at {} for deleted principal {}",
                    o.id, o.role, o.scope, o.principal_id
                );
            }
        }
    }
    if !answer.allowed {
        std::process::exit(2);
    }
    Ok(())
}
