//! Records of the security model: identities and their hashed credentials,
//! scope maps, role definitions and assignments, token signing keys,
//! runtime settings, and the activity log. Every change carries an
//! [`Activity`] written in the same transaction, so the log cannot miss a
//! change or record one that did not happen.

use async_trait::async_trait;

use crate::MetadataError;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdentityRecord {
    pub id: String,
    /// owner | admin | sp | token
    pub kind: String,
    /// The user name clients log in with.
    pub login: String,
    pub display_name: String,
    pub enabled: bool,
    pub trusted_service: bool,
    pub scope_map: Option<String>,
    pub created_at: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CredentialRecord {
    pub identity_id: String,
    pub name: String,
    /// argon2id PHC string.
    pub hash: String,
    pub created_at: i64,
    pub expires_at: Option<i64>,
}

/// A service principal's trust in an issuer's tokens for one subject and
/// audience.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FederatedCredentialRecord {
    pub identity_id: String,
    pub name: String,
    pub issuer: String,
    pub subject: String,
    pub audience: String,
    /// A static JWKS (JSON), used instead of OIDC discovery.
    pub jwks: Option<String>,
    /// CA certificates (PEM) trusted for the issuer's HTTPS.
    pub ca_pem: Option<String>,
    pub created_at: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScopeMapRecord {
    pub name: String,
    pub description: String,
    /// JSON `[{"repository": "...", "actions": ["content/read", ...]}]`.
    pub rules_json: String,
    pub created_at: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoleDefinitionRecord {
    pub name: String,
    pub description: String,
    /// JSON array of action strings.
    pub actions_json: String,
    pub created_at: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoleAssignmentRecord {
    pub id: String,
    pub principal_id: String,
    pub role: String,
    pub scope: String,
    pub created_at: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SigningKeyRecord {
    pub kid: String,
    pub pkcs8: Vec<u8>,
    pub created_at: i64,
}

/// One management change, for the activity log. `before`/`after` are JSON
/// snapshots and never contain a secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Activity {
    pub actor: String,
    pub operation: String,
    pub target: String,
    pub before: Option<String>,
    pub after: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActivityRecord {
    pub id: i64,
    pub time: i64,
    pub activity: Activity,
}

#[async_trait]
pub trait AuthStore: Send + Sync + 'static {
    async fn setting(&self, key: &str) -> Result<Option<String>, MetadataError>;
    async fn set_setting(
        &self,
        key: &str,
        value: &str,
        activity: &Activity,
    ) -> Result<(), MetadataError>;

    /// Replaces a setting only if it still holds `expected` (`None`: absent);
    /// `false` if another writer changed it first (read again and retry).
    /// Several nodes changing one setting at once then lose no change.
    async fn replace_setting(
        &self,
        key: &str,
        expected: Option<&str>,
        value: &str,
        activity: &Activity,
    ) -> Result<bool, MetadataError>;

    /// Id of the newest activity-log entry (0 if none): every change to
    /// identities, credentials, roles and settings writes one, so a node
    /// seeing it move knows another node changed something.
    async fn last_activity_id(&self) -> Result<i64, MetadataError>;

    async fn identity_by_login(&self, login: &str)
        -> Result<Option<IdentityRecord>, MetadataError>;
    async fn identity_by_id(&self, id: &str) -> Result<Option<IdentityRecord>, MetadataError>;
    async fn identities(&self, kind: Option<&str>) -> Result<Vec<IdentityRecord>, MetadataError>;
    /// Creates an identity with its credentials; fails if the login is taken.
    async fn create_identity(
        &self,
        identity: &IdentityRecord,
        credentials: &[CredentialRecord],
        activity: &Activity,
    ) -> Result<(), MetadataError>;
    async fn update_identity(
        &self,
        identity: &IdentityRecord,
        activity: &Activity,
    ) -> Result<(), MetadataError>;
    /// Deletes an identity and its credentials (its role assignments stay,
    /// orphaned, until someone deletes them).
    async fn delete_identity(&self, id: &str, activity: &Activity) -> Result<bool, MetadataError>;

    async fn credentials(&self, identity_id: &str) -> Result<Vec<CredentialRecord>, MetadataError>;
    async fn put_credential(
        &self,
        credential: &CredentialRecord,
        activity: &Activity,
    ) -> Result<(), MetadataError>;

    /// Federated credentials of one identity, or of all.
    async fn federated_credentials(
        &self,
        identity_id: Option<&str>,
    ) -> Result<Vec<FederatedCredentialRecord>, MetadataError>;
    /// Every federated credential trusting `issuer`.
    async fn federated_credentials_of_issuer(
        &self,
        issuer: &str,
    ) -> Result<Vec<FederatedCredentialRecord>, MetadataError>;
    /// Adds one; `AlreadyExists` if the identity has one of that name.
    async fn create_federated_credential(
        &self,
        credential: &FederatedCredentialRecord,
        activity: &Activity,
    ) -> Result<(), MetadataError>;
    async fn delete_federated_credential(
        &self,
        identity_id: &str,
        name: &str,
        activity: &Activity,
    ) -> Result<bool, MetadataError>;

    async fn scope_map(&self, name: &str) -> Result<Option<ScopeMapRecord>, MetadataError>;
    async fn scope_maps(&self) -> Result<Vec<ScopeMapRecord>, MetadataError>;
    async fn put_scope_map(
        &self,
        map: &ScopeMapRecord,
        activity: &Activity,
    ) -> Result<(), MetadataError>;
    /// Deletes the scope map unless a token uses it (checked in the same
    /// statement); false if nothing was deleted.
    async fn delete_scope_map(
        &self,
        name: &str,
        activity: &Activity,
    ) -> Result<bool, MetadataError>;

    async fn role_definitions(&self) -> Result<Vec<RoleDefinitionRecord>, MetadataError>;
    async fn put_role_definition(
        &self,
        role: &RoleDefinitionRecord,
        activity: &Activity,
    ) -> Result<(), MetadataError>;

    async fn role_assignments(
        &self,
        principal_id: Option<&str>,
    ) -> Result<Vec<RoleAssignmentRecord>, MetadataError>;
    async fn create_role_assignment(
        &self,
        assignment: &RoleAssignmentRecord,
        activity: &Activity,
    ) -> Result<(), MetadataError>;
    async fn delete_role_assignment(
        &self,
        id: &str,
        activity: &Activity,
    ) -> Result<bool, MetadataError>;

    async fn signing_keys(&self) -> Result<Vec<SigningKeyRecord>, MetadataError>;
    async fn add_signing_key(&self, key: &SigningKeyRecord) -> Result<(), MetadataError>;

    async fn activities(
        &self,
        since: i64,
        limit: u32,
    ) -> Result<Vec<ActivityRecord>, MetadataError>;
    /// Removes activity entries older than `before`; returns how many.
    async fn purge_activities(&self, before: i64) -> Result<u64, MetadataError>;
}
