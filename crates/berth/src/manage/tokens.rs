//! Scope maps and repository-scoped tokens.

use anyhow::Context;
use clap::{Args, Subcommand};

use berth_manage::tokens;

use super::{json_of, IDENTITY};
use crate::cli_error::invalid_argument;
use crate::client::{Client, ClientArgs};
use crate::output::{outln, print, print_secret, Column, Format};

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

const SCOPE_MAP: &[Column] = &[
    ("NAME", "/name"),
    ("DESCRIPTION", "/description"),
    ("RULES", "/rules"),
    ("CREATED", "/createdAt"),
];

fn scope_rules(repositories: &[String]) -> anyhow::Result<Vec<tokens::ScopeRule>> {
    let mut rules = Vec::new();
    for r in repositories {
        let Some((repo, actions)) = r.split_once('=') else {
            return Err(invalid_argument(format!("--repository '{r}' must be REPOSITORY=ACTION[,ACTION...], e.g. app/web=content/read,content/write")));
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

pub async fn scope_map(args: &ClientArgs, command: &ScopeMapCommand) -> anyhow::Result<()> {
    let client = Client::new(&args.connection()).await?;
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
            outln!("deleted scope map {name}");
            return Ok(());
        }
    };
    print(&answer, SCOPE_MAP, args.output);
    Ok(())
}

pub async fn token(args: &ClientArgs, command: &TokenCommand) -> anyhow::Result<()> {
    let client = Client::new(&args.connection()).await?;
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
                outln!("token {name} created (log in with user name '{name}')");
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
                        enabled: status.map(|s| s == TokenStatus::Enabled),
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
            outln!("deleted token {name}");
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
