//! Registry settings (`berth update`), network rules and endpoints.

use clap::builder::BoolishValueParser;
use clap::{Args, Subcommand};
use serde_json::{json, Value};

use berth_manage::{network, registry};

use super::identities::print_admin_created;
use super::json_of;
use crate::cli_error::invalid_argument;
use crate::client::{Client, ClientArgs};
use crate::output::print_json;
use crate::output::{outln, print, Column, Format};

/// What happens to public requests no network rule matches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum DefaultAction {
    /// Let them in.
    Allow,
    /// Refuse them.
    Deny,
}

#[derive(Debug, Args)]
pub struct UpdateArgs {
    /// Let unauthenticated clients pull (never push or list the catalog).
    #[arg(long, value_name = "BOOL", value_parser = BoolishValueParser::new())]
    pub anonymous_pull_enabled: Option<bool>,
    /// Accept manifests whose blobs or child manifests are not all in the
    /// repository (an index pushed with only some of its platforms).
    #[arg(long, value_name = "BOOL", value_parser = BoolishValueParser::new())]
    pub sparse_manifests: Option<bool>,
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

const REGISTRY_SETTINGS: &[Column] = &[
    ("ANONYMOUS PULL", "/anonymousPullEnabled"),
    ("ADMIN USER", "/adminUserEnabled"),
    ("SPARSE MANIFESTS", "/sparseManifests"),
];

/// `berth update`: with flags, changes the settings they name and prints
/// the settings as they are now; without, only prints them (registry and
/// network settings; in JSON `{"registry": {...}, "network": {...}}`, as
/// when both kinds of setting were changed; after a change of one kind,
/// that kind's answer alone).
pub async fn update(args: &ClientArgs, update: &UpdateArgs) -> anyhow::Result<()> {
    let client = Client::new(&args.connection()).await?;
    let network_change = network::UpdateNetwork {
        public_network_access: update.public_network_enabled.map(|e| {
            if e {
                network::PublicNetworkAccess::Enabled
            } else {
                network::PublicNetworkAccess::Disabled
            }
        }),
        default_action: update.default_action.map(|a| match a {
            DefaultAction::Allow => network::DefaultAction::Allow,
            DefaultAction::Deny => network::DefaultAction::Deny,
        }),
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
    let change_network = network_change
        != network::UpdateNetwork {
            force: network_change.force,
            ..Default::default()
        };
    let change_registry = update.anonymous_pull_enabled.is_some()
        || update.admin_enabled.is_some()
        || update.sparse_manifests.is_some();
    if !change_network && !change_registry {
        if update.force {
            return Err(invalid_argument(
                "--force goes with a network change (--public-network-enabled, --default-action, ...)",
            ));
        }
        let registry = json_of(client.send(&registry::GetRegistry {}).await?);
        let network = json_of(client.send(&network::GetNetwork {}).await?);
        if args.output == Format::Json {
            print_json(&json!({ "registry": registry, "network": network }));
        } else {
            print(&registry, REGISTRY_SETTINGS, args.output);
            print_network(&network, args.output);
        }
        return Ok(());
    }
    let network_answer = if change_network {
        Some(client.send(&network_change).await?)
    } else {
        None
    };
    let registry_answer = if change_registry {
        Some(
            client
                .send(&registry::UpdateRegistry {
                    anonymous_pull_enabled: update.anonymous_pull_enabled,
                    admin_user_enabled: update.admin_enabled,
                    sparse_manifests: update.sparse_manifests,
                })
                .await?,
        )
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
            (Some(registry), None) => print_json(&json_of(registry)),
            (None, Some(network)) => print_json(&json_of(network)),
            (None, None) => {}
        }
        return Ok(());
    }
    if let Some(answer) = &network_answer {
        print_network(&json_of(answer), args.output);
    }
    if let Some(answer) = &registry_answer {
        if !answer.admin_passwords.is_empty() {
            print_admin_created(&client, answer, args.output).await?;
        }
        print(&json_of(answer), REGISTRY_SETTINGS, args.output);
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
    let client = Client::new(&args.connection()).await?;
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
    let client = Client::new(&args.connection()).await?;
    let answer = client.send(&registry::GetEndpoints {}).await?;
    if args.output == Format::Json {
        print(&json_of(&answer), &[], args.output);
        return Ok(());
    }
    outln!(
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
