//! `explain`: the decision trace for a request someone could make — which
//! network rule lets it in or keeps it out, and which role assignment
//! grants the action or what is missing.

use serde::{Deserialize, Serialize};

use crate::endpoint;
use crate::identities::Identity;
use crate::roles::RoleAssignment;

/// What the request would do.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ExplainAction {
    #[default]
    Pull,
    Push,
    Delete,
    Catalog,
}

/// `POST /api/v1/explain`
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Explain {
    /// The caller's address.
    pub ip: String,
    /// `public` (the default) or `private:NAME`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    /// An identity's id or name; none (or `anonymous`) for an anonymous
    /// caller.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identity: Option<String>,
    pub action: ExplainAction,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repository: Option<String>,
}
endpoint!(Explain => Explanation, Post "/api/v1/explain", ManageRead);

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Explanation {
    /// One line: `allowed: ...`, `denied by the network rules: ...`,
    /// `refused at authentication: ...`, `denied by permissions: ...`.
    pub verdict: String,
    pub allowed: bool,
    pub network: NetworkTrace,
    pub access: AccessTrace,
    /// The artifact cache's part, when cache rules exist and a repository
    /// was named.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache: Option<CacheTrace>,
}

/// Whether a cache rule targets the repository, and how its upstreams
/// answer right now.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CacheTrace {
    /// The rule targeting the repository; absent: none does.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rule: Option<String>,
    /// Without a rule: the targets the rules have (a typo is the usual
    /// reason none matches).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub targets: Vec<String>,
    /// Each upstream of the rule, in order, probed now.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub upstreams: Vec<UpstreamProbe>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UpstreamProbe {
    /// `host/repository`.
    pub upstream: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credential_set: Option<String>,
    pub ok: bool,
    /// `CREDENTIALS_REJECTED`, `RATE_LIMITED`, `UNREACHABLE`, `NOT_FOUND`,
    /// `UPSTREAM_ERROR`, `INVALID`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cause: Option<String>,
    /// What the upstream answered, for a person.
    pub detail: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NetworkTrace {
    pub endpoint: String,
    pub ip: String,
    pub allowed: bool,
    /// Which step decided, e.g. `ip rule 10.0.0.0/8`.
    pub rule: String,
    #[serde(default)]
    pub reason: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AccessTrace {
    #[serde(default)]
    pub identity: Option<Identity>,
    /// Why the identity itself would be refused (unknown, disabled,
    /// expired).
    #[serde(default)]
    pub identity_problem: Option<String>,
    pub permission: String,
    #[serde(default)]
    pub repository: Option<String>,
    pub allowed: bool,
    /// What grants it: `role AcrPush at app/*`, `scope map m (app/web:
    /// content/read)`, `owner`, `admin user`, `anonymous pull`.
    pub granted_by: Vec<String>,
    /// Assignments of this identity that do not cover the request.
    pub other_assignments: Vec<String>,
    /// Assignments whose principal no longer exists: shown so a replaced
    /// principal is recognisable.
    pub orphaned_assignments: Vec<RoleAssignment>,
    /// A service principal's federated credentials: the issuers and
    /// subjects whose tokens sign in as it.
    #[serde(default)]
    pub federated_credentials: Vec<crate::federation::FederatedCredential>,
    #[serde(default)]
    pub missing: Option<String>,
}
