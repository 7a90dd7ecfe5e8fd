//! Network rules: public access, the default action, IP and subnet rules,
//! the trusted-services bypass and the data endpoints' switch.

use serde::{Deserialize, Serialize};

pub use berth_network::{Bypass, DefaultAction, Subnet};

use crate::endpoint;

/// Whether the public endpoint accepts requests at all.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum PublicNetworkAccess {
    #[default]
    Enabled,
    Disabled,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NetworkRuleSet {
    /// What happens to an address no rule names.
    pub default_action: DefaultAction,
    /// Allowed addresses and CIDR ranges.
    pub ip_rules: Vec<String>,
    /// Allowed declared subnets, by name.
    pub subnet_rules: Vec<String>,
}

/// The network settings and the subnets the configuration declares.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NetworkSettings {
    pub public_network_access: PublicNetworkAccess,
    pub network_rule_set: NetworkRuleSet,
    /// `TrustedServices`: identities marked as trusted services pass the
    /// rules.
    pub network_rule_bypass_options: Bypass,
    pub data_endpoint_enabled: bool,
    pub declared_subnets: Vec<Subnet>,
}

/// `GET /api/v1/network`
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GetNetwork {}
endpoint!(GetNetwork => NetworkSettings, Get "/api/v1/network", ManageRead);

/// `GET /api/v1/network/rules` (the same answer as `GET /api/v1/network`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListNetworkRules {}
endpoint!(ListNetworkRules => NetworkSettings, Get "/api/v1/network/rules", ManageRead);

/// `PATCH /api/v1/network`: the fields given change. A change that would
/// lock the caller's own address out is refused (409 `CONFLICT`) unless
/// `force`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct UpdateNetwork {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub public_network_access: Option<PublicNetworkAccess>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_action: Option<DefaultAction>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network_rule_bypass_options: Option<Bypass>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data_endpoint_enabled: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub force: Option<bool>,
}
endpoint!(UpdateNetwork => NetworkSettings, Patch "/api/v1/network", ManageWrite);

/// `POST /api/v1/network/rules`: one of `ipAddress` (an address or CIDR)
/// or `subnet` (a declared subnet's name).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AddNetworkRule {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip_address: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subnet: Option<String>,
}
endpoint!(AddNetworkRule => NetworkSettings, Post "/api/v1/network/rules", ManageWrite);

/// `DELETE /api/v1/network/rules?ipAddress=...|subnet=...[&force=true]`
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RemoveNetworkRule {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip_address: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subnet: Option<String>,
    /// Remove even if it locks the caller's own address out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub force: Option<bool>,
}
endpoint!(RemoveNetworkRule => NetworkSettings, Delete "/api/v1/network/rules", ManageWrite);
