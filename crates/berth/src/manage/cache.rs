//! `berth cache-rule` and `berth credential-set`: the artifact cache's
//! rules (which upstream repositories a local repository caches) and the
//! upstream logins they use (docs/cache.md).

use std::time::Duration;

use clap::Subcommand;

use berth_manage::cache;

use super::json_of;
use crate::cli_error::invalid_argument;
use crate::client::{Client, ClientArgs};
use crate::output::{outln, print, Column};

const RULE: &[Column] = &[
    ("NAME", "/name"),
    ("TARGET", "/target"),
    ("UPSTREAMS", "/upstreams"),
    ("TAG TTL (S)", "/tagTtlSeconds"),
    ("EVICT UNUSED (DAYS)", "/evictUnusedDays"),
    ("UPDATED", "/updatedAt"),
];

const SET: &[Column] = &[
    ("NAME", "/name"),
    ("USERNAME", "/username"),
    ("USED BY", "/usedBy"),
    ("UPDATED", "/updatedAt"),
];

#[derive(Debug, Subcommand)]
pub enum CacheRuleCommand {
    /// Cache an upstream's repositories in a local one (pulls of the target
    /// fetch from the upstreams, in order, on a miss).
    Create {
        /// The rule's name.
        #[arg(long)]
        name: String,
        /// An upstream, `[http://]host[:port]/repository[/*]`, optionally
        /// `@CREDENTIAL_SET`; repeat for more, tried in order. Ends in `/*`
        /// exactly when --target does: `docker.io/library/*@hub`.
        #[arg(
            long = "source",
            required = true,
            value_name = "SOURCE[@CREDENTIAL_SET]"
        )]
        sources: Vec<String>,
        /// The local repository, or `prefix/*`.
        #[arg(long)]
        target: String,
        /// How long a cached tag is served before it is checked upstream
        /// again, e.g. 5m.
        #[arg(long, value_parser = humantime::parse_duration)]
        tag_ttl: Option<Duration>,
        /// Evict cached content nobody pulled for this many days.
        #[arg(long)]
        evict_unused_days: Option<u32>,
    },
    /// List cache rules.
    List,
    /// Show one.
    Show {
        /// The rule's name.
        #[arg(long)]
        name: String,
    },
    /// Change a rule's upstreams, tag TTL or eviction (its target stays).
    Update {
        /// The rule's name.
        #[arg(long)]
        name: String,
        /// Replaces all the upstreams (repeat, in order).
        #[arg(long = "source", value_name = "SOURCE[@CREDENTIAL_SET]")]
        sources: Vec<String>,
        /// A new tag TTL, e.g. 10m.
        #[arg(long, value_parser = humantime::parse_duration)]
        tag_ttl: Option<Duration>,
        /// Evict content unused this many days; 0 turns eviction off.
        #[arg(long)]
        evict_unused_days: Option<u32>,
    },
    /// Delete a rule (what it cached stays, as ordinary content).
    Delete {
        /// The rule's name.
        #[arg(long)]
        name: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum CredentialSetCommand {
    /// Store an upstream login (the password is sealed and never shown).
    Create {
        /// The credential set's name.
        #[arg(long)]
        name: String,
        /// The upstream user name (not `--username`: that is the login to
        /// this registry, as on every command).
        #[arg(long)]
        upstream_username: String,
        /// Read the password from standard input (else --upstream-password).
        #[arg(long, conflicts_with = "upstream_password")]
        password_stdin: bool,
        /// The upstream password or token.
        #[arg(long, hide_env_values = true, env = "BERTH_UPSTREAM_PASSWORD")]
        upstream_password: Option<String>,
    },
    /// List credential sets (names, user names and the rules using them).
    List,
    /// Change a credential set's user name or password.
    Update {
        /// The credential set's name.
        #[arg(long)]
        name: String,
        /// A new upstream user name.
        #[arg(long)]
        upstream_username: Option<String>,
        /// Read a new password from standard input.
        #[arg(long, conflicts_with = "upstream_password")]
        password_stdin: bool,
        /// A new upstream password or token.
        #[arg(long, hide_env_values = true, env = "BERTH_UPSTREAM_PASSWORD")]
        upstream_password: Option<String>,
    },
    /// Delete a credential set no rule uses.
    Delete {
        /// The credential set's name.
        #[arg(long)]
        name: String,
    },
}

/// `SOURCE[@SET]` as an upstream.
fn upstream(spec: &str) -> cache::Upstream {
    match spec.rsplit_once('@') {
        Some((source, set)) if !set.is_empty() => cache::Upstream {
            source: source.to_string(),
            credential_set: Some(set.to_string()),
        },
        _ => cache::Upstream {
            source: spec.to_string(),
            credential_set: None,
        },
    }
}

fn password(stdin: bool, flag: &Option<String>) -> anyhow::Result<Option<String>> {
    if stdin {
        let mut line = String::new();
        std::io::stdin().read_line(&mut line)?;
        return Ok(Some(line.trim_end_matches(['\r', '\n']).to_string()));
    }
    Ok(flag.clone())
}

pub async fn cache_rule(args: &ClientArgs, command: &CacheRuleCommand) -> anyhow::Result<()> {
    let client = Client::new(&args.connection()).await?;
    match command {
        CacheRuleCommand::Create {
            name,
            sources,
            target,
            tag_ttl,
            evict_unused_days,
        } => print(
            &json_of(
                client
                    .send(&cache::CreateCacheRule {
                        name: name.clone(),
                        target: target.clone(),
                        upstreams: sources.iter().map(|s| upstream(s)).collect(),
                        tag_ttl_seconds: tag_ttl.map(|d| d.as_secs()),
                        evict_unused_days: *evict_unused_days,
                    })
                    .await?,
            ),
            RULE,
            args.output,
        ),
        CacheRuleCommand::List => print(
            &json_of(client.send(&cache::ListCacheRules {}).await?),
            RULE,
            args.output,
        ),
        CacheRuleCommand::Show { name } => print(
            &json_of(
                client
                    .send(&cache::GetCacheRule { name: name.clone() })
                    .await?,
            ),
            RULE,
            args.output,
        ),
        CacheRuleCommand::Update {
            name,
            sources,
            tag_ttl,
            evict_unused_days,
        } => print(
            &json_of(
                client
                    .send(&cache::UpdateCacheRule {
                        name: name.clone(),
                        upstreams: (!sources.is_empty())
                            .then(|| sources.iter().map(|s| upstream(s)).collect()),
                        tag_ttl_seconds: tag_ttl.map(|d| d.as_secs()),
                        evict_unused_days: *evict_unused_days,
                    })
                    .await?,
            ),
            RULE,
            args.output,
        ),
        CacheRuleCommand::Delete { name } => {
            client
                .send(&cache::DeleteCacheRule { name: name.clone() })
                .await?;
            outln!("deleted cache rule {name}");
        }
    }
    Ok(())
}

pub async fn credential_set(
    args: &ClientArgs,
    command: &CredentialSetCommand,
) -> anyhow::Result<()> {
    let client = Client::new(&args.connection()).await?;
    match command {
        CredentialSetCommand::Create {
            name,
            upstream_username,
            password_stdin,
            upstream_password,
        } => {
            let Some(password) = password(*password_stdin, upstream_password)? else {
                return Err(invalid_argument(
                    "give the upstream password with --password-stdin or --upstream-password",
                ));
            };
            print(
                &json_of(
                    client
                        .send(&cache::CreateCredentialSet {
                            name: name.clone(),
                            username: upstream_username.clone(),
                            password,
                        })
                        .await?,
                ),
                SET,
                args.output,
            )
        }
        CredentialSetCommand::List => print(
            &json_of(client.send(&cache::ListCredentialSets {}).await?),
            SET,
            args.output,
        ),
        CredentialSetCommand::Update {
            name,
            upstream_username,
            password_stdin,
            upstream_password,
        } => print(
            &json_of(
                client
                    .send(&cache::UpdateCredentialSet {
                        name: name.clone(),
                        username: upstream_username.clone(),
                        password: password(*password_stdin, upstream_password)?,
                    })
                    .await?,
            ),
            SET,
            args.output,
        ),
        CredentialSetCommand::Delete { name } => {
            client
                .send(&cache::DeleteCredentialSet { name: name.clone() })
                .await?;
            outln!("deleted credential set {name}");
        }
    }
    Ok(())
}
