//! Client subcommands: `az acr`-style management of a running registry
//! through its management API. Every command sends a request type of the
//! management contract (`berth_manage`) through `Client::send` and prints
//! the typed answer: a table for people, or `-o json` (the answer itself,
//! camelCase, RFC 3339 times). One file per group of commands.

use anyhow::Context;
use berth_util::now;
use clap::Args;
use serde_json::Value;

use crate::cli_error::invalid_argument;
use crate::client::{registry_host, store_credentials, Client, ClientArgs};
use crate::output::{outln, Column};

mod explain;
mod identities;
mod logs;
mod network;
mod repositories;
mod roles;
mod tokens;

pub use explain::{explain, ExplainArgs};
pub use identities::{
    admin, credential, identity, owner, sp, AdminCommand, CredentialCommand, IdentityCommand,
    OwnerCommand, SpCommand,
};
pub use logs::{activity, logs, ActivityCommand, LogsCommand};
#[cfg(test)]
pub use network::DefaultAction;
pub use network::{network_rule, show_endpoints, update, NetworkRuleCommand, UpdateArgs};
pub use repositories::{gc, repository, GcCommand, RepositoryCommand};
pub use roles::{role, RoleCommand};
pub use tokens::{scope_map, token, ScopeMapCommand, TokenCommand};

#[derive(Debug, Args)]
pub struct LoginArgs {
    /// Read the password from standard input.
    #[arg(long)]
    pub password_stdin: bool,
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

/// A typed answer as JSON, for the table printer and `-o json`.
fn json_of(value: impl serde::Serialize) -> Value {
    serde_json::to_value(value).unwrap_or(Value::Null)
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
