//! Network rules, the endpoints the registry listens on, and `explain`.

use berth_manage::explain::*;
use berth_manage::network::*;
use berth_manage::registry::{Endpoints, GetEndpoints};
use berth_types::RepositoryName;

use super::{ManageError, ManageRead, ManageWrite, Routes};
use crate::AppState;

type Result<T> = std::result::Result<T, ManageError>;

pub(super) fn routes(r: Routes) -> Routes {
    r.serve(get_network)
        .serve(list_rules)
        .serve(update_network)
        .serve(add_rule)
        .serve(remove_rule)
        .serve(endpoints)
        .serve(explain)
}

/// The settings as the contract shows them.
fn network_view(s: &AppState) -> NetworkSettings {
    let settings = s.network.settings();
    NetworkSettings {
        public_network_access: if settings.public_network_access {
            PublicNetworkAccess::Enabled
        } else {
            PublicNetworkAccess::Disabled
        },
        network_rule_set: NetworkRuleSet {
            default_action: settings.default_action,
            ip_rules: settings.ip_rules.iter().map(|r| r.to_string()).collect(),
            subnet_rules: settings.subnet_rules.clone(),
        },
        network_rule_bypass_options: settings.network_rule_bypass_options,
        data_endpoint_enabled: settings.data_endpoint_enabled,
        declared_subnets: s.network.subnets.clone(),
    }
}

async fn get_network(s: AppState, _: ManageRead, _: GetNetwork) -> Result<NetworkSettings> {
    s.network.reload(&s.auth).await?;
    Ok(network_view(&s))
}

async fn list_rules(s: AppState, _: ManageRead, _: ListNetworkRules) -> Result<NetworkSettings> {
    s.network.reload(&s.auth).await?;
    Ok(network_view(&s))
}

async fn update_network(s: AppState, m: ManageWrite, u: UpdateNetwork) -> Result<NetworkSettings> {
    s.network
        .update(
            &s.auth,
            &m.0.principal.describe(),
            Some(&m.0.changer(u.force)),
            "update network rule set",
            |n, _| {
                if let Some(p) = u.public_network_access {
                    n.public_network_access = p == PublicNetworkAccess::Enabled;
                }
                if let Some(a) = u.default_action {
                    n.default_action = a;
                }
                if let Some(b) = u.network_rule_bypass_options {
                    n.network_rule_bypass_options = b;
                }
                if let Some(d) = u.data_endpoint_enabled {
                    n.data_endpoint_enabled = d;
                }
                Ok(())
            },
        )
        .await?;
    Ok(network_view(&s))
}

/// One of an IP rule or a subnet rule.
enum Target<'a> {
    Ip(&'a str),
    Subnet(&'a str),
}

fn one_target<'a>(ip: &'a Option<String>, subnet: &'a Option<String>) -> Result<Target<'a>> {
    match (ip, subnet) {
        (Some(ip), None) => Ok(Target::Ip(ip)),
        (None, Some(subnet)) => Ok(Target::Subnet(subnet)),
        _ => Err(ManageError::validation(
            "give exactly one of ipAddress (an address or CIDR) or subnet (a declared subnet's name)",
        )),
    }
}

async fn add_rule(s: AppState, m: ManageWrite, r: AddNetworkRule) -> Result<NetworkSettings> {
    let target = one_target(&r.ip_address, &r.subnet)?;
    s.network
        .update(
            &s.auth,
            &m.0.principal.describe(),
            None, // adding a rule only ever lets more in
            "add network rule",
            |n, subnets| match target {
                Target::Ip(ip) => n.add_ip_rule(ip).map(|_| ()),
                Target::Subnet(subnet) => n.add_subnet_rule(subnet, subnets),
            },
        )
        .await?;
    Ok(network_view(&s))
}

async fn remove_rule(s: AppState, m: ManageWrite, r: RemoveNetworkRule) -> Result<NetworkSettings> {
    let target = one_target(&r.ip_address, &r.subnet)?;
    s.network
        .update(
            &s.auth,
            &m.0.principal.describe(),
            Some(&m.0.changer(r.force)),
            "remove network rule",
            |n, _| match target {
                Target::Ip(ip) => n.remove_ip_rule(ip).map(|_| ()),
                Target::Subnet(subnet) => n.remove_subnet_rule(subnet),
            },
        )
        .await?;
    Ok(network_view(&s))
}

async fn endpoints(s: AppState, _: ManageRead, _: GetEndpoints) -> Result<Endpoints> {
    Ok((*s.endpoints).clone())
}

/// The decision trace for a hypothetical request: which network rule
/// allows or denies it, and which role assignment grants the action or
/// what is missing.
async fn explain(s: AppState, _: ManageRead, r: Explain) -> Result<Explanation> {
    let ip: std::net::IpAddr =
        r.ip.parse()
            .map_err(|_| ManageError::validation(format!("'{}' is not an IP address", r.ip)))?;
    let endpoint = match r.endpoint.as_deref() {
        None | Some("public") => berth_network::Endpoint::Public,
        Some(e) => match e.strip_prefix("private:") {
            Some(name) => berth_network::Endpoint::Private(name.to_string()),
            None => {
                return Err(ManageError::validation(format!(
                    "endpoint '{e}' must be 'public' or 'private:NAME'"
                )))
            }
        },
    };
    let permission = match r.action {
        ExplainAction::Pull => berth_auth::Permission::Pull,
        ExplainAction::Push => berth_auth::Permission::Push,
        ExplainAction::Delete => berth_auth::Permission::Delete,
        ExplainAction::Catalog => berth_auth::Permission::CatalogRead,
    };
    if let Some(repo) = &r.repository {
        repo.parse::<RepositoryName>()?;
    }
    s.network.reload(&s.auth).await?;
    let trusted = match r.identity.as_deref() {
        Some(i) if !i.is_empty() && i != "anonymous" => s
            .auth
            .find_identity(i)
            .await
            .map(|id| id.trusted_service)
            .unwrap_or(false),
        _ => false,
    };
    let network = s.network.decide(&endpoint, ip, Some(trusted));
    let access = s
        .auth
        .explain(r.identity.as_deref(), permission, r.repository.as_deref())
        .await?;
    let cache = explain_cache(&s, r.repository.as_deref()).await;
    let read_only = matches!(r.action, ExplainAction::Push | ExplainAction::Delete)
        && cache.as_ref().is_some_and(|c| c.rule.is_some());
    let verdict = if !network.allowed {
        format!("denied by the network rules: {}", network.message(ip))
    } else if let Some(problem) = &access.identity_problem {
        format!("refused at authentication: {problem}")
    } else if !access.allowed {
        format!(
            "denied by permissions: missing {}",
            access.missing.clone().unwrap_or_default()
        )
    } else if read_only {
        format!(
            "denied: the repository is a read-only cache (cache rule '{}')",
            cache
                .as_ref()
                .and_then(|c| c.rule.clone())
                .unwrap_or_default()
        )
    } else {
        format!(
            "allowed: network ({}) and {}",
            network.rule,
            access.granted_by.join(", ")
        )
    };
    Ok(Explanation {
        verdict,
        allowed: network.allowed && access.allowed && !read_only,
        cache,
        network: NetworkTrace {
            endpoint: endpoint.to_string(),
            ip: ip.to_string(),
            allowed: network.allowed,
            reason: (!network.allowed).then(|| network.message(ip)),
            rule: network.rule,
        },
        access,
    })
}

/// The cache's part of an explanation: the rule that targets the
/// repository with a live probe of each upstream, or the targets there are
/// when none does (nothing when there are no rules).
async fn explain_cache(
    s: &AppState,
    repository: Option<&str>,
) -> Option<berth_manage::explain::CacheTrace> {
    use berth_manage::explain::{CacheTrace, UpstreamProbe};
    let repository: RepositoryName = repository?.parse().ok()?;
    let rules = s.auth.cached_rules();
    if rules.is_empty() {
        return None;
    }
    let Some(route) = crate::cache::route(s, &repository) else {
        return Some(CacheTrace {
            rule: None,
            targets: rules.iter().map(|r| r.target.clone()).collect(),
            upstreams: Vec::new(),
        });
    };
    let upstreams = s
        .cache
        .probe(&route)
        .await
        .into_iter()
        .map(|(source, result)| {
            let cause = result.as_ref().err().map(|f| {
                serde_json::to_value(f)
                    .ok()
                    .and_then(|v| v.get("cause").and_then(|c| c.as_str()).map(str::to_string))
                    .unwrap_or_default()
            });
            UpstreamProbe {
                upstream: source.display(),
                credential_set: source.credential_set.clone(),
                ok: result.is_ok(),
                cause,
                detail: match &result {
                    Ok(()) => "answers".into(),
                    Err(f) => f.describe(),
                },
            }
        })
        .collect();
    Some(CacheTrace {
        rule: Some(route.rule),
        targets: Vec::new(),
        upstreams,
    })
}
