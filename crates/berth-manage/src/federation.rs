//! Federated credentials: a service principal trusts the tokens an issuer
//! signs for one subject and audience — a Kubernetes service account's
//! projected token, say — so a pod or a node pulls without a stored secret.
//! Such a token is exchanged at `POST /oauth2/token`
//! (`grant_type=urn:ietf:params:oauth:grant-type:token-exchange`) or given
//! as the password of the user `federated`.

use serde::{Deserialize, Serialize};

use crate::endpoint;

/// Where the issuer's signing keys come from.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum KeySource {
    /// OIDC discovery: `<issuer>/.well-known/openid-configuration` names
    /// the `jwks_uri` (a Kubernetes API server serves both).
    #[default]
    Discovery,
    /// A JWKS given when the credential was created, for issuers the
    /// registry cannot reach.
    Jwks,
}

/// One federated credential of a service principal.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FederatedCredential {
    /// Its name, unique for the service principal.
    pub name: String,
    /// The service principal's app id.
    pub app_id: String,
    /// The `iss` a token must carry (exactly).
    pub issuer: String,
    /// The `sub` a token must carry, e.g. `system:serviceaccount:NS:NAME`.
    pub subject: String,
    /// An `aud` the token must include.
    pub audience: String,
    pub key_source: KeySource,
    /// Whether CA certificates were given for the issuer's HTTPS (else the
    /// system's are trusted).
    pub custom_ca: bool,
    pub created_at: String,
}

/// `POST /api/v1/service-principals/{id}/federated-credentials`
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CreateFederatedCredential {
    /// The service principal: app id or name.
    #[serde(skip)]
    pub id: String,
    pub name: String,
    pub issuer: String,
    pub subject: String,
    pub audience: String,
    /// A JWKS document (JSON text) to verify tokens with instead of
    /// discovery.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jwks: Option<String>,
    /// CA certificates (PEM text) for the issuer's HTTPS.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_pem: Option<String>,
}
endpoint!(CreateFederatedCredential => FederatedCredential, Post "/api/v1/service-principals/{id}/federated-credentials", ManageWrite, status 201, param id);

/// `GET /api/v1/service-principals/{id}/federated-credentials`
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListFederatedCredentials {
    #[serde(skip)]
    pub id: String,
}
endpoint!(ListFederatedCredentials => Vec<FederatedCredential>, Get "/api/v1/service-principals/{id}/federated-credentials", ManageRead, param id);

/// `DELETE /api/v1/service-principals/{id}/federated-credentials?name=N`
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeleteFederatedCredential {
    #[serde(skip)]
    pub id: String,
    pub name: String,
}
endpoint!(DeleteFederatedCredential => (), Delete "/api/v1/service-principals/{id}/federated-credentials", ManageWrite, status 204, param id);
