//! Network access policy, evaluated for every request before anything else
//! (distribution API, token service, data endpoints, management API).
//!
//! Order on a public endpoint:
//!
//! | step | condition | result |
//! | --- | --- | --- |
//! | 1 | public network access disabled | deny — unless trusted-service bypass is on and the caller is one |
//! | 2 | default action Allow | allow |
//! | 3 | an IP rule contains the client address | allow |
//! | 4 | a subnet rule's subnet contains it | allow |
//! | 5 | trusted-service bypass on and the caller is one | allow |
//! | 6 | otherwise | deny |
//!
//! Requests on a private endpoint are not subject to any of it.

use std::net::IpAddr;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

/// Most IP rules a rule set may hold.
pub const MAX_IP_RULES: usize = 100;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub enum DefaultAction {
    #[default]
    Allow,
    Deny,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub enum Bypass {
    #[default]
    None,
    TrustedServices,
}

/// The runtime network settings (stored in the metadata store, changed
/// through the management API, audited).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NetworkSettings {
    pub public_network_access: bool,
    pub default_action: DefaultAction,
    pub ip_rules: Vec<IpNet>,
    pub subnet_rules: Vec<String>,
    pub network_rule_bypass_options: Bypass,
    pub data_endpoint_enabled: bool,
}

impl Default for NetworkSettings {
    fn default() -> Self {
        NetworkSettings {
            public_network_access: true,
            default_action: DefaultAction::Allow,
            ip_rules: Vec::new(),
            subnet_rules: Vec::new(),
            network_rule_bypass_options: Bypass::None,
            data_endpoint_enabled: false,
        }
    }
}

/// A subnet declared in configuration (`[[subnet]] name, cidrs`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Subnet {
    pub name: String,
    pub cidrs: Vec<IpNet>,
}

/// Which listener a request arrived on.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub enum Endpoint {
    Public,
    Private(String),
}

impl std::fmt::Display for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Endpoint::Public => f.write_str("public"),
            Endpoint::Private(name) => write!(f, "private:{name}"),
        }
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RuleError {
    #[error(
        "'{0}' is not an IPv4 or IPv6 address or CIDR range (e.g. 203.0.113.0/24, 2001:db8::/48)"
    )]
    InvalidCidr(String),
    #[error("the rule set already has an IP rule for {0}")]
    Duplicate(String),
    #[error("the rule set already has {MAX_IP_RULES} IP rules, the limit")]
    TooMany,
    #[error("subnet '{0}' is not declared in the configuration ([[subnet]] name = \"{0}\")")]
    UnknownSubnet(String),
    #[error("there is no rule for {0}")]
    NoSuchRule(String),
}

/// Parses an address or CIDR; a bare address becomes a host route.
pub fn parse_cidr(s: &str) -> Result<IpNet, RuleError> {
    let s = s.trim();
    if let Ok(net) = s.parse::<IpNet>() {
        return Ok(net.trunc());
    }
    s.parse::<IpAddr>()
        .map(IpNet::from)
        .map_err(|_| RuleError::InvalidCidr(s.to_string()))
}

impl NetworkSettings {
    pub fn add_ip_rule(&mut self, cidr: &str) -> Result<IpNet, RuleError> {
        let net = parse_cidr(cidr)?;
        if self.ip_rules.contains(&net) {
            return Err(RuleError::Duplicate(net.to_string()));
        }
        if self.ip_rules.len() >= MAX_IP_RULES {
            return Err(RuleError::TooMany);
        }
        self.ip_rules.push(net);
        Ok(net)
    }

    pub fn remove_ip_rule(&mut self, cidr: &str) -> Result<IpNet, RuleError> {
        let net = parse_cidr(cidr)?;
        let before = self.ip_rules.len();
        self.ip_rules.retain(|r| *r != net);
        if self.ip_rules.len() == before {
            return Err(RuleError::NoSuchRule(net.to_string()));
        }
        Ok(net)
    }

    pub fn add_subnet_rule(&mut self, name: &str, declared: &[Subnet]) -> Result<(), RuleError> {
        if !declared.iter().any(|s| s.name == name) {
            return Err(RuleError::UnknownSubnet(name.to_string()));
        }
        if self.subnet_rules.iter().any(|s| s == name) {
            return Err(RuleError::Duplicate(format!("subnet {name}")));
        }
        self.subnet_rules.push(name.to_string());
        Ok(())
    }

    pub fn remove_subnet_rule(&mut self, name: &str) -> Result<(), RuleError> {
        let before = self.subnet_rules.len();
        self.subnet_rules.retain(|s| s != name);
        if self.subnet_rules.len() == before {
            return Err(RuleError::NoSuchRule(format!("subnet {name}")));
        }
        Ok(())
    }
}

/// The outcome of evaluating the rules for one request, with the reason in
/// words for the client, the logs and `berth explain`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Decision {
    pub allowed: bool,
    /// Which step decided, e.g. "ip rule 10.0.0.0/8".
    pub rule: String,
    /// For denials: the reason after "is not allowed access: ".
    pub reason: String,
    /// Whether the answer depends on the caller being a trusted service
    /// (so the HTTP layer knows it must identify the caller first).
    pub needs_trusted_caller: bool,
}

impl Decision {
    fn allow(rule: String) -> Decision {
        Decision {
            allowed: true,
            rule,
            reason: String::new(),
            needs_trusted_caller: false,
        }
    }

    fn deny(rule: &str, reason: String, bypassable: bool) -> Decision {
        Decision {
            allowed: false,
            rule: rule.into(),
            reason,
            needs_trusted_caller: bypassable,
        }
    }

    /// The message a denied client sees.
    pub fn message(&self, ip: IpAddr) -> String {
        format!(
            "client with IP '{ip}' is not allowed access: {}",
            self.reason
        )
    }
}

/// Evaluates the rules for a request from `ip` arriving on `endpoint`.
/// `trusted_caller` is `Some(true)` when the caller authenticated as an
/// identity marked as a trusted service, `None` when not yet known.
pub fn evaluate(
    settings: &NetworkSettings,
    subnets: &[Subnet],
    endpoint: &Endpoint,
    ip: IpAddr,
    trusted_caller: Option<bool>,
) -> Decision {
    if let Endpoint::Private(name) = endpoint {
        return Decision::allow(format!("private endpoint '{name}'"));
    }
    let bypass = settings.network_rule_bypass_options == Bypass::TrustedServices;
    let trusted = bypass && trusted_caller == Some(true);
    if !settings.public_network_access {
        if trusted {
            return Decision::allow("trusted-service bypass".into());
        }
        let reason = if settings.subnet_rules.is_empty() {
            "public network access is disabled; use a private endpoint".to_string()
        } else {
            "public network access is disabled, which also disables subnet (service endpoint) access; use a private endpoint".to_string()
        };
        return Decision::deny("publicNetworkAccess Disabled", reason, bypass);
    }
    if settings.default_action == DefaultAction::Allow {
        return Decision::allow("defaultAction Allow".into());
    }
    let ip = canonical(ip);
    if let Some(rule) = settings.ip_rules.iter().find(|r| r.contains(&ip)) {
        return Decision::allow(format!("ip rule {rule}"));
    }
    for name in &settings.subnet_rules {
        if let Some(subnet) = subnets.iter().find(|s| &s.name == name) {
            if subnet.cidrs.iter().any(|c| c.contains(&ip)) {
                return Decision::allow(format!("subnet rule {name}"));
            }
        }
    }
    if trusted {
        return Decision::allow("trusted-service bypass".into());
    }
    Decision::deny(
        "defaultAction Deny",
        format!(
            "no network rule matches (default action Deny, {} IP rule(s), {} subnet rule(s))",
            settings.ip_rules.len(),
            settings.subnet_rules.len()
        ),
        bypass,
    )
}

/// IPv4-mapped IPv6 addresses (`::ffff:a.b.c.d`) are matched as IPv4.
pub fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
        v4 => v4,
    }
}

/// The client address: the socket peer, or — when the peer is a trusted
/// proxy — the right-most `X-Forwarded-For` address that is not itself a
/// trusted proxy.
pub fn client_address(
    peer: IpAddr,
    forwarded_for: Option<&str>,
    trusted_proxies: &[IpNet],
) -> IpAddr {
    let trusted = |ip: &IpAddr| trusted_proxies.iter().any(|p| p.contains(&canonical(*ip)));
    if !trusted(&peer) {
        return canonical(peer);
    }
    let Some(header) = forwarded_for else {
        return canonical(peer);
    };
    let mut client = peer;
    for hop in header.rsplit(',') {
        let Ok(ip) = hop.trim().parse::<IpAddr>() else {
            break;
        };
        client = ip;
        if !trusted(&ip) {
            break;
        }
    }
    canonical(client)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("ip")
    }

    fn deny_all() -> NetworkSettings {
        NetworkSettings {
            default_action: DefaultAction::Deny,
            ..NetworkSettings::default()
        }
    }

    #[test]
    fn evaluation_order() {
        let subnets = vec![Subnet {
            name: "build".into(),
            cidrs: vec!["127.0.1.0/24".parse().expect("net")],
        }];
        let mut s = NetworkSettings::default();
        assert!(evaluate(&s, &subnets, &Endpoint::Public, ip("127.0.0.2"), None).allowed);

        s = deny_all();
        let d = evaluate(&s, &subnets, &Endpoint::Public, ip("127.0.0.2"), None);
        assert!(!d.allowed);
        assert!(d.message(ip("127.0.0.2")).starts_with(
            "client with IP '127.0.0.2' is not allowed access: no network rule matches"
        ));
        s.add_ip_rule("127.0.0.2/32").expect("rule");
        assert!(evaluate(&s, &subnets, &Endpoint::Public, ip("127.0.0.2"), None).allowed);
        assert!(!evaluate(&s, &subnets, &Endpoint::Public, ip("127.0.0.3"), None).allowed);
        assert!(
            evaluate(
                &s,
                &subnets,
                &Endpoint::Private("pe".into()),
                ip("127.0.0.3"),
                None
            )
            .allowed
        );

        s.add_subnet_rule("build", &subnets).expect("subnet");
        assert_eq!(
            evaluate(&s, &subnets, &Endpoint::Public, ip("127.0.1.9"), None).rule,
            "subnet rule build"
        );
        s.public_network_access = false;
        let d = evaluate(&s, &subnets, &Endpoint::Public, ip("127.0.1.9"), None);
        assert!(!d.allowed && d.reason.contains("also disables subnet"));
        assert!(!evaluate(&s, &subnets, &Endpoint::Public, ip("127.0.0.2"), None).allowed);
        assert!(
            evaluate(
                &s,
                &subnets,
                &Endpoint::Private("pe".into()),
                ip("127.0.0.2"),
                None
            )
            .allowed
        );

        s.network_rule_bypass_options = Bypass::TrustedServices;
        let d = evaluate(&s, &subnets, &Endpoint::Public, ip("127.0.0.9"), None);
        assert!(!d.allowed && d.needs_trusted_caller);
        assert!(evaluate(&s, &subnets, &Endpoint::Public, ip("127.0.0.9"), Some(true)).allowed);
        assert!(
            !evaluate(
                &s,
                &subnets,
                &Endpoint::Public,
                ip("127.0.0.9"),
                Some(false)
            )
            .allowed
        );
    }

    #[test]
    fn rules_are_validated() {
        let mut s = deny_all();
        assert_eq!(s.add_ip_rule("::1").expect("v6").to_string(), "::1/128");
        assert!(matches!(
            s.add_ip_rule("::1/128"),
            Err(RuleError::Duplicate(_))
        ));
        assert!(matches!(
            s.add_ip_rule("300.1.1.1"),
            Err(RuleError::InvalidCidr(_))
        ));
        assert!(matches!(
            s.add_ip_rule("10.0.0.0/33"),
            Err(RuleError::InvalidCidr(_))
        ));
        assert_eq!(
            s.add_ip_rule("10.1.2.3/8").expect("trunc").to_string(),
            "10.0.0.0/8"
        );
        for i in 0..98 {
            s.add_ip_rule(&format!("192.168.{i}.0/24")).expect("rule");
        }
        assert_eq!(s.add_ip_rule("172.16.0.0/12"), Err(RuleError::TooMany));
        assert!(matches!(
            s.add_subnet_rule("nope", &[]),
            Err(RuleError::UnknownSubnet(_))
        ));
        assert!(s.remove_ip_rule("10.0.0.0/8").is_ok());
        assert!(matches!(
            s.remove_ip_rule("10.0.0.0/8"),
            Err(RuleError::NoSuchRule(_))
        ));
        assert!(evaluate(&s, &[], &Endpoint::Public, ip("::1"), None).allowed);
        assert!(evaluate(&s, &[], &Endpoint::Public, ip("::ffff:192.168.5.5"), None).allowed);
    }

    #[test]
    fn forwarded_for_only_from_trusted_proxies() {
        let proxies: Vec<IpNet> = vec!["127.0.0.10/32".parse().expect("net")];
        let xff = Some("203.0.113.7, 127.0.0.10");
        assert_eq!(
            client_address(ip("127.0.0.5"), xff, &proxies),
            ip("127.0.0.5")
        );
        assert_eq!(
            client_address(ip("127.0.0.10"), xff, &proxies),
            ip("203.0.113.7")
        );
        assert_eq!(
            client_address(ip("127.0.0.10"), Some("junk"), &proxies),
            ip("127.0.0.10")
        );
        assert_eq!(
            client_address(ip("127.0.0.10"), None, &proxies),
            ip("127.0.0.10")
        );
    }
}
