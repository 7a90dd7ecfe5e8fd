//! Identities: the owner, the admin user, service principals and tokens;
//! their credentials (dates only: a secret's value is shown once, when it
//! is made, as a [`NewSecret`]).

use serde::{Deserialize, Serialize};

use crate::endpoint;

/// What kind of identity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum IdentityKind {
    /// The registry's owner: created on first start, holds `Owner`.
    Owner,
    /// The admin user: one shared login with two passwords, off by default.
    Admin,
    /// A service principal: an app id and a secret, for automation.
    #[serde(rename = "sp")]
    ServicePrincipal,
    /// A repository-scoped token (its permissions are a scope map's).
    Token,
}

impl IdentityKind {
    /// The name on the wire and in the store (`owner`, `admin`, `sp`, `token`).
    pub fn as_str(self) -> &'static str {
        match self {
            IdentityKind::Owner => "owner",
            IdentityKind::Admin => "admin",
            IdentityKind::ServicePrincipal => "sp",
            IdentityKind::Token => "token",
        }
    }

    /// What people call it, in messages.
    pub fn describe(self) -> &'static str {
        match self {
            IdentityKind::Owner => "owner",
            IdentityKind::Admin => "admin user",
            IdentityKind::ServicePrincipal => "service principal",
            IdentityKind::Token => "token",
        }
    }

    pub fn parse(s: &str) -> Option<IdentityKind> {
        [
            IdentityKind::Owner,
            IdentityKind::Admin,
            IdentityKind::ServicePrincipal,
            IdentityKind::Token,
        ]
        .into_iter()
        .find(|k| k.as_str() == s)
    }
}

impl std::fmt::Display for IdentityKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An identity (never a secret).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Identity {
    /// Stable id (a service principal's app id).
    pub id: String,
    pub kind: IdentityKind,
    /// The user name to log in with.
    pub login: String,
    /// The name it was given (unique per kind).
    pub name: String,
    pub enabled: bool,
    /// Exempt from the network rules when they allow trusted services.
    pub trusted_service: bool,
    /// A token's scope map.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope_map: Option<String>,
    pub created_at: String,
}

/// A credential's dates.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Credential {
    /// `secret`, `password`, `password2`.
    pub name: String,
    pub created_at: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<String>,
    pub expired: bool,
}

/// A secret, shown this once.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NewSecret {
    pub name: String,
    pub value: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<String>,
}

/// A new identity and its secrets (shown this once).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CreatedIdentity {
    pub identity: Identity,
    pub secrets: Vec<NewSecret>,
}

/// `GET /api/v1/service-principals`
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListServicePrincipals {}
endpoint!(ListServicePrincipals => Vec<Identity>, Get "/api/v1/service-principals", ManageRead);

/// `POST /api/v1/service-principals`: a new service principal and its
/// secret; with `role`, also a role assignment (which needs `AssignRoles`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CreateServicePrincipal {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    /// The assignment's scope: a repository, `prefix/*`, or the registry
    /// (empty, the default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
    /// Years until the secret expires (1 by default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub years: Option<u32>,
    /// Exact expiry of the secret (RFC 3339), instead of `years`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end_date: Option<String>,
}
endpoint!(CreateServicePrincipal => CreatedIdentity, Post "/api/v1/service-principals", ManageWrite, status 201);

/// `DELETE /api/v1/service-principals/{id}` (app id or name); its role
/// assignments stay, orphaned.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeleteServicePrincipal {
    #[serde(skip)]
    pub id: String,
}
endpoint!(DeleteServicePrincipal => (), Delete "/api/v1/service-principals/{id}", ManageWrite, status 204, param id);

/// `GET /api/v1/service-principals/{id}/credentials`
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListServicePrincipalCredentials {
    #[serde(skip)]
    pub id: String,
}
endpoint!(ListServicePrincipalCredentials => Vec<Credential>, Get "/api/v1/service-principals/{id}/credentials", ManageRead, param id);

/// `POST /api/v1/service-principals/{id}/credentials/reset`: a new secret
/// replaces the old one.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ResetServicePrincipalSecret {
    #[serde(skip)]
    pub id: String,
    /// Years until the new secret expires (1 by default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub years: Option<u32>,
    /// Exact expiry of the new secret (RFC 3339), instead of `years`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end_date: Option<String>,
}
endpoint!(ResetServicePrincipalSecret => NewSecret, Post "/api/v1/service-principals/{id}/credentials/reset", ManageWrite, param id);

/// `GET /api/v1/identities[?kind=sp]`
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ListIdentities {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<IdentityKind>,
}
endpoint!(ListIdentities => Vec<Identity>, Get "/api/v1/identities", ManageRead);

/// `PATCH /api/v1/identities/{id}` (id or name)
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct UpdateIdentity {
    #[serde(skip)]
    pub id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trusted_service: Option<bool>,
}
endpoint!(UpdateIdentity => Identity, Patch "/api/v1/identities/{id}", ManageWrite, param id);
