//! Registry-wide settings, the owner's and the admin user's credentials,
//! token-signing keys, and where the registry listens.

use serde::{Deserialize, Serialize};

use crate::endpoint;
use crate::identities::{Credential, NewSecret};

/// The registry's settings.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RegistrySettings {
    /// Anyone may pull without credentials.
    pub anonymous_pull_enabled: bool,
    /// The admin user may log in.
    pub admin_user_enabled: bool,
    /// Manifests may name blobs and child manifests the repository does
    /// not hold (an index pushed with only some platforms, say).
    #[serde(default)]
    pub sparse_manifests: bool,
    /// The admin user's passwords, when enabling it created it (shown this
    /// once).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub admin_passwords: Vec<NewSecret>,
}

/// `GET /api/v1/registry`
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GetRegistry {}
endpoint!(GetRegistry => RegistrySettings, Get "/api/v1/registry", ManageRead);

/// `PATCH /api/v1/registry`: the fields given change, the others stay.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct UpdateRegistry {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub anonymous_pull_enabled: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub admin_user_enabled: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sparse_manifests: Option<bool>,
}
endpoint!(UpdateRegistry => RegistrySettings, Patch "/api/v1/registry", ManageWrite);

/// `POST /api/v1/owner/credentials/renew`: a new owner password; the old
/// one stops working.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RenewOwnerPassword {}
endpoint!(RenewOwnerPassword => NewSecret, Post "/api/v1/owner/credentials/renew", AssignRoles);

/// A token-signing key's id.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SigningKey {
    pub kid: String,
}

/// `POST /api/v1/signing-keys/rotate`: new tokens are signed with a new
/// key; tokens signed with older keys stay valid until they expire.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RotateSigningKey {}
endpoint!(RotateSigningKey => SigningKey, Post "/api/v1/signing-keys/rotate", AssignRoles);

/// The admin user's name and its passwords' dates.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AdminCredentials {
    pub username: String,
    pub enabled: bool,
    pub passwords: Vec<Credential>,
}

/// `GET /api/v1/admin/credentials`
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GetAdminCredentials {}
endpoint!(GetAdminCredentials => AdminCredentials, Get "/api/v1/admin/credentials", ManageRead);

/// Which of the admin user's two passwords.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PasswordName {
    #[default]
    Password,
    Password2,
}

impl PasswordName {
    pub fn as_str(self) -> &'static str {
        match self {
            PasswordName::Password => "password",
            PasswordName::Password2 => "password2",
        }
    }
}

/// `POST /api/v1/admin/credentials/renew`: regenerates one admin
/// password; the other keeps working.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RenewAdminPassword {
    pub password_name: PasswordName,
}
endpoint!(RenewAdminPassword => NewSecret, Post "/api/v1/admin/credentials/renew", ManageWrite);

/// Where the registry is reached.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Endpoints {
    /// The public listener's address (what clients log in to).
    #[serde(default)]
    pub login_server: Option<String>,
    pub endpoints: Vec<Listener>,
    pub data_endpoints: Vec<DataEndpoint>,
}

impl Endpoints {
    /// A registry with one public listener at `address`, its login server.
    pub fn public(address: &str) -> Endpoints {
        Endpoints {
            login_server: Some(address.to_string()),
            endpoints: vec![Listener {
                endpoint: "public".into(),
                address: address.to_string(),
            }],
            data_endpoints: Vec::new(),
        }
    }
}

/// One listener: the public endpoint or a private one.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Listener {
    /// `public` or `private:NAME`.
    pub endpoint: String,
    pub address: String,
}

/// A data endpoint: a host per region that serves blobs by redirect.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DataEndpoint {
    pub region: String,
    pub host: String,
}

/// `GET /api/v1/endpoints`
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GetEndpoints {}
endpoint!(GetEndpoints => Endpoints, Get "/api/v1/endpoints", ManageRead);
