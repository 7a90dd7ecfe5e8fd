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
use crate::client::{docker_config, registry_address, Client, ClientArgs};
use crate::output::{outln, Column};

mod cache;
mod explain;
mod identities;
mod logs;
mod network;
mod repositories;
mod roles;
mod tokens;

pub use cache::{cache_rule, credential_set, CacheRuleCommand, CredentialSetCommand};
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
pub struct LogoutArgs {}

/// `berth logout`: forgets the registry's credentials in the Docker config
/// (and its credential helper, if it names one).
pub async fn logout(args: &ClientArgs, _: &LogoutArgs) -> anyhow::Result<()> {
    let host = registry_address(&args.registry)?.host;
    let mut config = docker_config()?;
    let what = config.what.clone();
    let helper = config.helper_for(&host);
    if config.erase(&host)? {
        match helper {
            Some(h) => outln!("Removed the credentials for {host} (docker-credential-{h}, {what})"),
            None => outln!("Removed the credentials for {host} from {what}"),
        }
    } else {
        outln!("No credentials for {host} were stored ({what})");
    }
    Ok(())
}

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
    let client = Client::new(&connection).await?;
    client.check_login().await?;
    let host = registry_address(&connection.registry)?.host;
    let mut config = docker_config()?;
    let place = config.store(&host, username, password)?;
    outln!("Login succeeded: credentials for {host} stored in {place}");
    Ok(())
}
