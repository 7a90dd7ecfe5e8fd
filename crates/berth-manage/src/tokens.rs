//! Scope maps (named sets of repository permissions) and the
//! repository-scoped tokens that use them.

use serde::{Deserialize, Serialize};

use crate::endpoint;
use crate::identities::{CreatedIdentity, Identity, NewSecret};

/// What a scope map may grant on a repository.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum ScopeAction {
    /// Pull.
    #[serde(rename = "content/read")]
    ContentRead,
    /// Push.
    #[serde(rename = "content/write")]
    ContentWrite,
    /// Delete manifests and tags.
    #[serde(rename = "content/delete")]
    ContentDelete,
    /// List tags and manifests.
    #[serde(rename = "metadata/read")]
    MetadataRead,
    /// Change tags' and manifests' attributes.
    #[serde(rename = "metadata/write")]
    MetadataWrite,
}

impl ScopeAction {
    pub const ALL: [ScopeAction; 5] = [
        ScopeAction::ContentRead,
        ScopeAction::ContentWrite,
        ScopeAction::ContentDelete,
        ScopeAction::MetadataRead,
        ScopeAction::MetadataWrite,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ScopeAction::ContentRead => "content/read",
            ScopeAction::ContentWrite => "content/write",
            ScopeAction::ContentDelete => "content/delete",
            ScopeAction::MetadataRead => "metadata/read",
            ScopeAction::MetadataWrite => "metadata/write",
        }
    }

    pub fn parse(s: &str) -> Option<ScopeAction> {
        ScopeAction::ALL.into_iter().find(|a| a.as_str() == s)
    }
}

impl std::fmt::Display for ScopeAction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One rule of a scope map: a repository (or `prefix/*`) and its actions.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ScopeRule {
    pub repository: String,
    pub actions: Vec<ScopeAction>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ScopeMap {
    pub name: String,
    pub description: String,
    pub rules: Vec<ScopeRule>,
    pub created_at: String,
}

/// `GET /api/v1/scope-maps`
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListScopeMaps {}
endpoint!(ListScopeMaps => Vec<ScopeMap>, Get "/api/v1/scope-maps", ManageRead);

/// `POST /api/v1/scope-maps`
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CreateScopeMap {
    pub name: String,
    #[serde(default)]
    pub description: String,
    pub rules: Vec<ScopeRule>,
}
endpoint!(CreateScopeMap => ScopeMap, Post "/api/v1/scope-maps", ManageWrite, status 201);

/// `PATCH /api/v1/scope-maps/{name}`: replaces the description and rules.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct UpdateScopeMap {
    #[serde(skip)]
    pub name: String,
    #[serde(default)]
    pub description: String,
    pub rules: Vec<ScopeRule>,
}
endpoint!(UpdateScopeMap => ScopeMap, Patch "/api/v1/scope-maps/{name}", ManageWrite, param name);

/// `DELETE /api/v1/scope-maps/{name}` (refused while a token uses it).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeleteScopeMap {
    #[serde(skip)]
    pub name: String,
}
endpoint!(DeleteScopeMap => (), Delete "/api/v1/scope-maps/{name}", ManageWrite, status 204, param name);

/// `GET /api/v1/tokens`
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListTokens {}
endpoint!(ListTokens => Vec<Identity>, Get "/api/v1/tokens", ManageRead);

fn yes() -> bool {
    true
}

/// `POST /api/v1/tokens`: a token (log in with its name) with two
/// passwords, shown once.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CreateToken {
    pub name: String,
    pub scope_map: String,
    #[serde(default = "yes")]
    pub enabled: bool,
    /// Days until the passwords expire (never, by default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expiry_days: Option<u32>,
}

impl Default for CreateToken {
    fn default() -> Self {
        CreateToken {
            name: String::new(),
            scope_map: String::new(),
            enabled: true,
            expiry_days: None,
        }
    }
}
endpoint!(CreateToken => CreatedIdentity, Post "/api/v1/tokens", ManageWrite, status 201);

/// `PATCH /api/v1/tokens/{name}`
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct UpdateToken {
    #[serde(skip)]
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope_map: Option<String>,
}
endpoint!(UpdateToken => Identity, Patch "/api/v1/tokens/{name}", ManageWrite, param name);

/// `DELETE /api/v1/tokens/{name}`
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeleteToken {
    #[serde(skip)]
    pub name: String,
}
endpoint!(DeleteToken => (), Delete "/api/v1/tokens/{name}", ManageWrite, status 204, param name);

/// Which of a token's two passwords.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TokenPasswordName {
    #[default]
    Password1,
    Password2,
}

impl TokenPasswordName {
    pub fn as_str(self) -> &'static str {
        match self {
            TokenPasswordName::Password1 => "password1",
            TokenPasswordName::Password2 => "password2",
        }
    }
}

/// `POST /api/v1/tokens/{name}/credentials`: (re)generates one password.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct GenerateTokenPassword {
    #[serde(skip)]
    pub name: String,
    pub password_name: TokenPasswordName,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expiry_days: Option<u32>,
}
endpoint!(GenerateTokenPassword => NewSecret, Post "/api/v1/tokens/{name}/credentials", ManageWrite, param name);
