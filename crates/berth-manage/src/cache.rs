//! The artifact cache's configuration: **cache rules** map repositories of
//! upstream registries to local ones (`docker.io/library/*` → `hub/*`),
//! with several upstreams tried in order, and **credential sets** hold the
//! logins for upstreams. A credential set's password is stored sealed and
//! never returned.

use serde::{Deserialize, Serialize};

use crate::endpoint;

/// One upstream of a rule: `[http://|https://]host[:port]/path`, ending in
/// `/*` when the rule's target does; a credential set to log in with.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Upstream {
    pub source: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credential_set: Option<String>,
}

/// A cache rule.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CacheRule {
    pub name: String,
    /// The local repository, or `prefix/*` for every repository below it.
    pub target: String,
    /// Tried in order on a miss.
    pub upstreams: Vec<Upstream>,
    /// Seconds a cached tag is served before it is checked upstream again.
    pub tag_ttl_seconds: u64,
    /// Cached content unused this many days is evicted (never, if absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub evict_unused_days: Option<u32>,
    pub created_at: String,
    pub updated_at: String,
}

/// `GET /api/v1/cache-rules`
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListCacheRules {}
endpoint!(ListCacheRules => Vec<CacheRule>, Get "/api/v1/cache-rules", ManageRead);

/// `GET /api/v1/cache-rules/{name}`
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GetCacheRule {
    #[serde(skip)]
    pub name: String,
}
endpoint!(GetCacheRule => CacheRule, Get "/api/v1/cache-rules/{name}", ManageRead, param name);

/// `POST /api/v1/cache-rules`: refused when its target overlaps another
/// rule's (the other rule is named).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CreateCacheRule {
    pub name: String,
    pub target: String,
    pub upstreams: Vec<Upstream>,
    /// 300 (five minutes) when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tag_ttl_seconds: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub evict_unused_days: Option<u32>,
}
endpoint!(CreateCacheRule => CacheRule, Post "/api/v1/cache-rules", ManageWrite, status 201);

/// `PATCH /api/v1/cache-rules/{name}`: the fields given change.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct UpdateCacheRule {
    #[serde(skip)]
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upstreams: Option<Vec<Upstream>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tag_ttl_seconds: Option<u64>,
    /// `0` removes the eviction.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub evict_unused_days: Option<u32>,
}
endpoint!(UpdateCacheRule => CacheRule, Patch "/api/v1/cache-rules/{name}", ManageWrite, param name);

/// `DELETE /api/v1/cache-rules/{name}`
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeleteCacheRule {
    #[serde(skip)]
    pub name: String,
}
endpoint!(DeleteCacheRule => (), Delete "/api/v1/cache-rules/{name}", ManageWrite, status 204, param name);

/// A credential set as it is shown: never its password.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CredentialSet {
    pub name: String,
    pub username: String,
    /// The rules whose upstreams log in with it.
    pub used_by: Vec<String>,
    pub created_at: String,
    pub updated_at: String,
}

/// `GET /api/v1/credential-sets`
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListCredentialSets {}
endpoint!(ListCredentialSets => Vec<CredentialSet>, Get "/api/v1/credential-sets", ManageRead);

/// `POST /api/v1/credential-sets`
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CreateCredentialSet {
    pub name: String,
    pub username: String,
    pub password: String,
}
endpoint!(CreateCredentialSet => CredentialSet, Post "/api/v1/credential-sets", ManageWrite, status 201);

/// `PATCH /api/v1/credential-sets/{name}`
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct UpdateCredentialSet {
    #[serde(skip)]
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<String>,
}
endpoint!(UpdateCredentialSet => CredentialSet, Patch "/api/v1/credential-sets/{name}", ManageWrite, param name);

/// `DELETE /api/v1/credential-sets/{name}`: refused while a rule uses it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeleteCredentialSet {
    #[serde(skip)]
    pub name: String,
}
endpoint!(DeleteCredentialSet => (), Delete "/api/v1/credential-sets/{name}", ManageWrite, status 204, param name);
