//! Client subcommands: `az acr`-style management of a running registry
//! through its management API.

use anyhow::{bail, Context};
use clap::{Args, Subcommand};
use serde_json::{json, Value};

use crate::client::{query_value, registry_host, store_credentials, Client, Connection};
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

pub async fn admin(args: &ClientArgs, command: &AdminCommand) -> anyhow::Result<()> {
    let client = Client::new(&args.connection)?;
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
        print(&answer, &[], args.output);
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
            let answer = client.get("/api/v1/admin/credentials").await?;
            if args.output == Format::Json {
                print(&answer, &[], args.output);
            } else {
                println!(
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
                    json!({ "passwordName": password_name }),
                )
                .await?;
            print_secret("New admin password:", &json!([secret]), args.output);
        }
    }
    Ok(())
}

pub async fn owner(args: &ClientArgs, command: &OwnerCommand) -> anyhow::Result<()> {
    let client = Client::new(&args.connection)?;
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
                .post(
                    "/api/v1/service-principals",
                    json!({ "name": name, "role": role, "scope": scope, "years": years, "endDate": end_date }),
                )
                .await?;
            if args.output == Format::Json {
                print(&created, &[], args.output);
            } else {
                println!(
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
            println!("deleted service principal {id}");
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
            bail!("--repository '{r}' must be REPOSITORY=ACTION[,ACTION...], e.g. app/web=content/read,content/write");
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
    let client = Client::new(&args.connection)?;
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
            println!("deleted scope map {name}");
        }
    }
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
                .post(
                    "/api/v1/tokens",
                    json!({ "name": name, "scopeMap": scope_map, "enabled": !disabled, "expiryDays": expiration_in_days }),
                )
                .await?;
            if args.output == Format::Json {
                print(&created, &[], args.output);
            } else {
                println!("token {name} created (log in with user name '{name}')");
                print_secret("passwords:", &created["secrets"], args.output);
            }
        }
        TokenCommand::Update {
            name,
            status,
            scope_map,
        } => {
            let body = json!({
                "enabled": status.as_deref().map(|s| s == "enabled"),
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
            println!("deleted token {name}");
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
                println!("deleted role assignment {id}");
            }
        },
    }
    Ok(())
}

pub async fn update(args: &ClientArgs, update: &UpdateArgs) -> anyhow::Result<()> {
    let client = Client::new(&args.connection)?;
    let mut network = json!({
        "publicNetworkAccess": update.public_network_enabled.map(|e| if e { "Enabled" } else { "Disabled" }),
        "defaultAction": update.default_action,
        "networkRuleBypassOptions": update.allow_trusted_services.map(|t| if t { "TrustedServices" } else { "None" }),
        "dataEndpointEnabled": update.data_endpoint_enabled,
    });
    if network
        .as_object()
        .is_some_and(|o| o.values().any(|v| !v.is_null()))
    {
        if update.force {
            network["force"] = json!(true);
        }
        let answer = client.patch("/api/v1/network", network).await?;
        print_network(&answer, args.output);
    }
    if update.anonymous_pull_enabled.is_none() && update.admin_enabled.is_none() {
        return Ok(());
    }
    let body = json!({
        "anonymousPullEnabled": update.anonymous_pull_enabled,
        "adminUserEnabled": update.admin_enabled,
    });
    let answer = client.patch("/api/v1/registry", body).await?;
    if let Some(passwords) = answer.get("adminPasswords") {
        print_secret(
            "The admin user 'berth' was created with these passwords:",
            passwords,
            args.output,
        );
    }
    print(
        &answer,
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
                _ => bail!("give --ip-address or --subnet"),
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
    let client = Client::new(&args.connection)?;
    let answer = client.get("/api/v1/endpoints").await?;
    if args.output == Format::Json {
        print(&answer, &[], args.output);
        return Ok(());
    }
    println!(
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
    let client = Client::new(&args.connection)?;
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
    let client = Client::new(&args.connection)?;
    match command {
        GcCommand::Status => {
            let status = client.get("/api/v1/gc").await?;
            if args.output == Format::Json {
                print(&status, &[], args.output);
                return Ok(());
            }
            println!(
                "queued candidates: {} (examined once their grace period of {} s has passed)",
                status["queuedCandidates"], status["graceSeconds"]
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
    let client = Client::new(&args.connection)?;
    match command {
        RepositoryCommand::List => {
            let repos = client.get("/api/v1/repositories").await?;
            let rows: Vec<Value> = repos
                .as_array()
                .map(|a| a.iter().map(|r| json!({ "name": r })).collect())
                .unwrap_or_default();
            if args.output == Format::Json {
                print(&repos, &[], args.output);
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
                bail!("deleting '{repository}' removes all its manifests and tags; repeat with --yes to confirm");
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
    let since_ms = (now() - duration_seconds(&args.since)?) * 1000;
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
            if let Some(ms) = e["TimeGenerated"].as_i64() {
                e["Time"] = json!(berth_auth::rfc3339(ms / 1000));
            }
        }
    }
    events
}

pub async fn logs(args: &ClientArgs, command: &LogsCommand) -> anyhow::Result<()> {
    let client = Client::new(&args.connection)?;
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
    let client = Client::new(&args.connection)?;
    match command {
        ActivityCommand::List { since } => {
            let since = now() - duration_seconds(since)?;
            print(
                &client
                    .get(&format!("/api/v1/activity?since={since}"))
                    .await?,
                &[
                    ("TIME", "/time"),
                    ("ACTOR", "/actor"),
                    ("OPERATION", "/operation"),
                    ("TARGET", "/target"),
                    ("BEFORE", "/before"),
                    ("AFTER", "/after"),
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
    let answer = client
        .post(
            "/api/v1/explain",
            json!({
                "ip": e.ip,
                "endpoint": e.endpoint,
                "identity": e.identity,
                "action": e.action,
                "repository": e.repository,
            }),
        )
        .await?;
    if args.output == Format::Json {
        print(&answer, &[], args.output);
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
        println!("verdict:   {}", answer["verdict"].as_str().unwrap_or(""));
        println!(
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
            Some(i) => println!(
                "identity:  {} '{}' ({}){}",
                i.get("kind").and_then(Value::as_str).unwrap_or(""),
                i.get("name").and_then(Value::as_str).unwrap_or(""),
                i.get("id").and_then(Value::as_str).unwrap_or(""),
                a["identityProblem"]
                    .as_str()
                    .map(|p| format!(" — {p}"))
                    .unwrap_or_default()
            ),
            None => println!(
                "identity:  {}",
                a["identityProblem"].as_str().unwrap_or("anonymous")
            ),
        }
        println!("granted by: {}", list(&a["grantedBy"]));
        if a["otherAssignments"]
            .as_array()
            .is_some_and(|x| !x.is_empty())
        {
            println!(
                "other grants (not covering this): {}",
                list(&a["otherAssignments"])
            );
        }
        if let Some(missing) = a["missing"].as_str() {
            println!("missing:   {missing}");
        }
        if let Some(orphans) = a["orphanedAssignments"]
            .as_array()
            .filter(|o| !o.is_empty())
        {
            println!("orphaned assignments (principal deleted; they grant nothing):");
            for o in orphans {
                println!(
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
