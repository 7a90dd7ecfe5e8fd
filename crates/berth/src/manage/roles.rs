//! Role definitions and role assignments.

use clap::Subcommand;

use berth_manage::roles;

use super::json_of;
use crate::client::{Client, ClientArgs};
use crate::output::{outln, print, Column};

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

pub async fn role(args: &ClientArgs, command: &RoleCommand) -> anyhow::Result<()> {
    let client = Client::new(&args.connection()).await?;
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
                outln!("deleted role assignment {id}");
            }
        },
    }
    Ok(())
}
