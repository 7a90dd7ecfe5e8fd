//! The admin user, its credentials, the owner, service principals and
//! identities of any kind.

use clap::builder::BoolishValueParser;
use clap::Subcommand;

use berth_manage::{identities, registry};

use super::{json_of, CREDENTIAL, IDENTITY};
use crate::client::{Client, ClientArgs};
use crate::output::{outln, print, print_secret, Format};

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
    /// Federated credentials: trust an issuer's tokens (a Kubernetes
    /// service account's, any OIDC issuer's) for one subject and audience,
    /// so pods and nodes pull without a stored secret (docs/kubernetes.md).
    FederatedCredential {
        #[command(subcommand)]
        command: FederatedCommand,
    },
}

#[derive(Debug, Subcommand)]
pub enum FederatedCommand {
    /// Trust an issuer's tokens for a subject and an audience.
    Create {
        /// The service principal's app id (or name).
        #[arg(long)]
        id: String,
        /// A name for this credential (unique for the service principal).
        #[arg(long)]
        name: String,
        /// The issuer URL, exactly as the tokens' `iss` (a cluster's
        /// `--service-account-issuer`).
        #[arg(long)]
        issuer: String,
        /// The tokens' `sub`, e.g. system:serviceaccount:NAMESPACE:NAME.
        #[arg(long)]
        subject: String,
        /// An audience the tokens must be minted for.
        #[arg(long, default_value = "berth")]
        audience: String,
        /// The issuer's keys as a JWKS file, for issuers the registry
        /// cannot reach (`kubectl get --raw /openid/v1/jwks`); without it
        /// keys come from OIDC discovery.
        #[arg(long, value_name = "FILE")]
        jwks_file: Option<std::path::PathBuf>,
        /// CA certificates (PEM) for the issuer's HTTPS.
        #[arg(long, value_name = "FILE")]
        issuer_ca_file: Option<std::path::PathBuf>,
    },
    /// List a service principal's federated credentials.
    List {
        /// The service principal's app id (or name).
        #[arg(long)]
        id: String,
    },
    /// Delete one.
    Delete {
        /// The service principal's app id (or name).
        #[arg(long)]
        id: String,
        /// The credential's name.
        #[arg(long)]
        name: String,
    },
}

const FEDERATED: &[crate::output::Column] = &[
    ("NAME", "/name"),
    ("ISSUER", "/issuer"),
    ("SUBJECT", "/subject"),
    ("AUDIENCE", "/audience"),
    ("KEYS", "/keySource"),
    ("CREATED", "/createdAt"),
];

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

/// Enabling the admin user the first time created it: its name (asked of
/// the server, not assumed) and its two passwords, shown this once.
pub(super) async fn print_admin_created(
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
    let client = Client::new(&args.connection()).await?;
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
        outln!(
            "admin user {}",
            if enabled { "enabled" } else { "disabled" }
        );
    }
    Ok(())
}

pub async fn credential(args: &ClientArgs, command: &CredentialCommand) -> anyhow::Result<()> {
    let client = Client::new(&args.connection()).await?;
    match command {
        CredentialCommand::Show => {
            let answer = client.send(&registry::GetAdminCredentials {}).await?;
            if args.output == Format::Json {
                print(&json_of(&answer), &[], args.output);
            } else {
                outln!(
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
            let password_name = match password_name {
                PasswordName::Password => registry::PasswordName::Password,
                PasswordName::Password2 => registry::PasswordName::Password2,
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
    let client = Client::new(&args.connection()).await?;
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
    let client = Client::new(&args.connection()).await?;
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
                outln!("app id: {}", created.identity.id);
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
            outln!("deleted service principal {id}");
        }
        SpCommand::FederatedCredential { command } => match command {
            FederatedCommand::Create {
                id,
                name,
                issuer,
                subject,
                audience,
                jwks_file,
                issuer_ca_file,
            } => {
                let read = |p: &Option<std::path::PathBuf>| -> anyhow::Result<Option<String>> {
                    p.as_ref()
                        .map(|p| {
                            std::fs::read_to_string(p).map_err(|e| {
                                crate::cli_error::invalid_argument(format!(
                                    "cannot read {}: {e}",
                                    p.display()
                                ))
                            })
                        })
                        .transpose()
                };
                let created = client
                    .send(&berth_manage::federation::CreateFederatedCredential {
                        id: id.clone(),
                        name: name.clone(),
                        issuer: issuer.clone(),
                        subject: subject.clone(),
                        audience: audience.clone(),
                        jwks: read(jwks_file)?,
                        ca_pem: read(issuer_ca_file)?,
                    })
                    .await?;
                print(&json_of(created), FEDERATED, args.output);
            }
            FederatedCommand::List { id } => print(
                &json_of(
                    client
                        .send(&berth_manage::federation::ListFederatedCredentials {
                            id: id.clone(),
                        })
                        .await?,
                ),
                FEDERATED,
                args.output,
            ),
            FederatedCommand::Delete { id, name } => {
                client
                    .send(&berth_manage::federation::DeleteFederatedCredential {
                        id: id.clone(),
                        name: name.clone(),
                    })
                    .await?;
                outln!("deleted federated credential {name} of {id}");
            }
        },
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

pub async fn identity(args: &ClientArgs, command: &IdentityCommand) -> anyhow::Result<()> {
    let client = Client::new(&args.connection()).await?;
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
