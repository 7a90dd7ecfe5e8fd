//! Management operations on identities, credentials, scope maps, roles and
//! settings. Each records an activity entry (actor, operation, target,
//! before/after without secrets) in the same transaction as the change, and
//! returns a new secret at most once: it is never stored in clear.

use berth_metadata::{
    now, Activity, ActivityRecord, CredentialRecord, IdentityRecord, RoleAssignmentRecord,
    RoleDefinitionRecord, ScopeMapRecord,
};
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::model::{IdentityKind, Permission, Principal, Scope, TOKEN_ACTIONS};
use crate::service::{AuthService, SETTING_ADMIN_ENABLED, SETTING_ANONYMOUS_PULL};
use crate::{rfc3339, secret, AuthError};

const YEAR: i64 = 365 * 24 * 3600;
const DAY: i64 = 24 * 3600;

/// One rule of a scope map.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScopeRule {
    pub repository: String,
    pub actions: Vec<String>,
}

/// An identity as the management API shows it (never a secret).
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct IdentityView {
    pub id: String,
    pub kind: String,
    pub login: String,
    pub name: String,
    pub enabled: bool,
    pub trusted_service: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scope_map: Option<String>,
    pub created_at: String,
}

impl From<&IdentityRecord> for IdentityView {
    fn from(i: &IdentityRecord) -> Self {
        IdentityView {
            id: i.id.clone(),
            kind: i.kind.clone(),
            login: i.login.clone(),
            name: i.display_name.clone(),
            enabled: i.enabled,
            trusted_service: i.trusted_service,
            scope_map: i.scope_map.clone(),
            created_at: rfc3339(i.created_at),
        }
    }
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CredentialView {
    pub name: String,
    pub created_at: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<String>,
    pub expired: bool,
}

impl From<&CredentialRecord> for CredentialView {
    fn from(c: &CredentialRecord) -> Self {
        CredentialView {
            name: c.name.clone(),
            created_at: rfc3339(c.created_at),
            expires_at: c.expires_at.map(rfc3339),
            expired: c.expires_at.is_some_and(|e| e <= now()),
        }
    }
}

/// A secret, shown this once.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct NewSecret {
    pub name: String,
    pub value: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CreatedIdentity {
    pub identity: IdentityView,
    pub secrets: Vec<NewSecret>,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RoleView {
    pub name: String,
    pub description: String,
    pub builtin: bool,
    pub actions: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AssignmentView {
    pub id: String,
    pub principal_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub principal: Option<String>,
    pub role: String,
    pub scope: String,
    /// The principal no longer exists (deleted, perhaps re-created with a
    /// new id): this assignment grants nothing.
    pub orphaned: bool,
    pub created_at: String,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ScopeMapView {
    pub name: String,
    pub description: String,
    pub rules: Vec<ScopeRule>,
    pub created_at: String,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ActivityView {
    pub id: i64,
    pub time: String,
    pub actor: String,
    pub operation: String,
    pub target: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub before: Option<serde_json::Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub after: Option<serde_json::Value>,
}

impl From<ActivityRecord> for ActivityView {
    fn from(r: ActivityRecord) -> Self {
        let parse = |s: Option<String>| s.and_then(|s| serde_json::from_str(&s).ok());
        ActivityView {
            id: r.id,
            time: rfc3339(r.time),
            actor: r.activity.actor,
            operation: r.activity.operation,
            target: r.activity.target,
            before: parse(r.activity.before),
            after: parse(r.activity.after),
        }
    }
}

fn activity(
    actor: &Principal,
    operation: &str,
    target: &str,
    before: Option<serde_json::Value>,
    after: Option<serde_json::Value>,
) -> Activity {
    Activity {
        actor: actor.describe(),
        operation: operation.into(),
        target: target.into(),
        before: before.map(|v| v.to_string()),
        after: after.map(|v| v.to_string()),
    }
}

fn snapshot(i: &IdentityRecord) -> serde_json::Value {
    serde_json::to_value(IdentityView::from(i)).unwrap_or_default()
}

async fn credential(
    identity_id: &str,
    name: &str,
    expires_at: Option<i64>,
) -> Result<(CredentialRecord, NewSecret), AuthError> {
    let value = secret::generate();
    let record = CredentialRecord {
        identity_id: identity_id.into(),
        name: name.into(),
        hash: secret::hash(value.clone()).await?,
        created_at: now(),
        expires_at,
    };
    Ok((
        record,
        NewSecret {
            name: name.into(),
            value,
            expires_at: expires_at.map(rfc3339),
        },
    ))
}

/// How long a service principal's secret lives: `years` from now, or until
/// an explicit end date (RFC 3339), which must be in the future.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SecretValidity {
    pub years: Option<u32>,
    pub end_date: Option<String>,
}

impl SecretValidity {
    fn expires_at(&self) -> Result<i64, AuthError> {
        if let Some(end) = &self.end_date {
            let at =
                time::OffsetDateTime::parse(end, &time::format_description::well_known::Rfc3339)
                    .map_err(|e| {
                        AuthError::InvalidRequest(format!(
                            "end date '{end}' is not RFC 3339 (e.g. 2027-01-31T00:00:00Z): {e}"
                        ))
                    })?
                    .unix_timestamp();
            if at <= now() {
                return Err(AuthError::InvalidRequest(format!(
                    "end date '{end}' is in the past"
                )));
            }
            return Ok(at);
        }
        Ok(now() + i64::from(self.years.unwrap_or(1).max(1)) * YEAR)
    }
}

fn validate_token_actions(rules: &[ScopeRule]) -> Result<(), AuthError> {
    if rules.is_empty() {
        return Err(AuthError::InvalidRequest(
            "a scope map needs at least one repository rule".into(),
        ));
    }
    for rule in rules {
        Scope::parse(&rule.repository).map_err(AuthError::InvalidRequest)?;
        if rule.actions.is_empty() {
            return Err(AuthError::InvalidRequest(format!(
                "repository '{}' has no actions",
                rule.repository
            )));
        }
        for a in &rule.actions {
            if !TOKEN_ACTIONS.contains(&a.as_str()) {
                return Err(AuthError::InvalidRequest(format!(
                    "action '{a}' is not a scope-map action; use {}",
                    TOKEN_ACTIONS.join(", ")
                )));
            }
        }
    }
    Ok(())
}

impl AuthService {
    /// First start: creates the owner and returns its password (once):
    /// `initial` if given, else a random one.
    pub async fn bootstrap_owner(
        &self,
        initial: Option<&str>,
    ) -> Result<Option<String>, AuthError> {
        if !self.store.identities(Some("owner")).await?.is_empty() {
            return Ok(None);
        }
        let id = uuid::Uuid::new_v4().to_string();
        let (mut cred, mut secret) = credential(&id, "password", None).await?;
        if let Some(initial) = initial.filter(|p| !p.is_empty()) {
            cred.hash = secret::hash(initial.to_string()).await?;
            secret.value = initial.to_string();
        }
        let owner = IdentityRecord {
            id,
            kind: "owner".into(),
            login: "owner".into(),
            display_name: "owner".into(),
            enabled: true,
            trusted_service: false,
            scope_map: None,
            created_at: now(),
        };
        let system = Activity {
            actor: "system".into(),
            operation: "bootstrap owner".into(),
            target: "owner".into(),
            before: None,
            after: Some(snapshot(&owner).to_string()),
        };
        match self.store.create_identity(&owner, &[cred], &system).await {
            Ok(()) => {}
            // Another node of the deployment, starting at the same moment,
            // created it first: its password is the one.
            Err(berth_metadata::MetadataError::AlreadyExists(_)) => return Ok(None),
            Err(e) => return Err(e.into()),
        }
        Ok(Some(secret.value))
    }

    /// A new owner password (the old one stops working at once).
    pub async fn rotate_owner(&self, actor: &Principal) -> Result<NewSecret, AuthError> {
        let owner = self
            .store
            .identities(Some("owner"))
            .await?
            .into_iter()
            .next()
            .ok_or_else(|| AuthError::NotFound("owner".into()))?;
        let (cred, secret) = credential(&owner.id, "password", None).await?;
        self.store
            .put_credential(
                &cred,
                &activity(actor, "regenerate owner password", "owner", None, None),
            )
            .await?;
        self.invalidate();
        Ok(secret)
    }

    /// `berth recover --reset-owner-password`: a new random owner password,
    /// recorded as done by `actor` — recovery is not an identity (it works
    /// when no one can sign in). A running server drops its cached
    /// sign-ins when it sees the activity entry (within a second).
    pub async fn reset_owner_password(&self, actor: &str) -> Result<NewSecret, AuthError> {
        let owner = self
            .store
            .identities(Some("owner"))
            .await?
            .into_iter()
            .next()
            .ok_or_else(|| AuthError::NotFound("owner".into()))?;
        let (cred, secret) = credential(&owner.id, "password", None).await?;
        self.store
            .put_credential(
                &cred,
                &Activity {
                    actor: actor.into(),
                    operation: "reset owner password".into(),
                    target: "owner".into(),
                    before: None,
                    after: None,
                },
            )
            .await?;
        self.invalidate();
        Ok(secret)
    }

    pub fn settings(&self) -> serde_json::Value {
        json!({
            "anonymousPullEnabled": self.anonymous_pull_enabled(),
            "adminUserEnabled": self.admin_enabled(),
        })
    }

    pub async fn set_anonymous_pull(
        &self,
        actor: &Principal,
        enabled: bool,
    ) -> Result<(), AuthError> {
        let before = json!({ SETTING_ANONYMOUS_PULL: self.anonymous_pull_enabled() });
        let after = json!({ SETTING_ANONYMOUS_PULL: enabled });
        self.store
            .set_setting(
                SETTING_ANONYMOUS_PULL,
                if enabled { "true" } else { "false" },
                &activity(
                    actor,
                    "update registry",
                    "anonymousPullEnabled",
                    Some(before),
                    Some(after),
                ),
            )
            .await?;
        self.reload_settings().await?;
        self.invalidate();
        Ok(())
    }

    /// Enables or disables the admin user. Enabling it the first time
    /// creates it with two passwords, returned once.
    pub async fn set_admin_enabled(
        &self,
        actor: &Principal,
        enabled: bool,
    ) -> Result<Vec<NewSecret>, AuthError> {
        let mut secrets = Vec::new();
        if enabled && self.admin_identity().await?.is_none() {
            let id = uuid::Uuid::new_v4().to_string();
            let (c1, s1) = credential(&id, "password", None).await?;
            let (c2, s2) = credential(&id, "password2", None).await?;
            let admin = IdentityRecord {
                id,
                kind: "admin".into(),
                login: self.config.registry_name.clone(),
                display_name: "admin user".into(),
                enabled: true,
                trusted_service: false,
                scope_map: None,
                created_at: now(),
            };
            self.store
                .create_identity(
                    &admin,
                    &[c1, c2],
                    &activity(
                        actor,
                        "create admin user",
                        &admin.login,
                        None,
                        Some(snapshot(&admin)),
                    ),
                )
                .await?;
            secrets = vec![s1, s2];
        }
        let before = json!({ SETTING_ADMIN_ENABLED: self.admin_enabled() });
        self.store
            .set_setting(
                SETTING_ADMIN_ENABLED,
                if enabled { "true" } else { "false" },
                &activity(
                    actor,
                    "update registry",
                    "adminUserEnabled",
                    Some(before),
                    Some(json!({ SETTING_ADMIN_ENABLED: enabled })),
                ),
            )
            .await?;
        self.reload_settings().await?;
        self.invalidate();
        Ok(secrets)
    }

    async fn admin_identity(&self) -> Result<Option<IdentityRecord>, AuthError> {
        Ok(self
            .store
            .identities(Some("admin"))
            .await?
            .into_iter()
            .next())
    }

    /// The admin user's name and password metadata (values are never stored).
    pub async fn admin_credentials(
        &self,
    ) -> Result<(String, bool, Vec<CredentialView>), AuthError> {
        let admin = self.admin_identity().await?.ok_or_else(|| {
            AuthError::NotFound("admin user (enable it with 'berth admin enable')".into())
        })?;
        let creds = self.store.credentials(&admin.id).await?;
        Ok((
            admin.login,
            self.admin_enabled(),
            creds.iter().map(CredentialView::from).collect(),
        ))
    }

    /// Regenerates one admin password; the other keeps working.
    pub async fn renew_admin_password(
        &self,
        actor: &Principal,
        name: &str,
    ) -> Result<NewSecret, AuthError> {
        if name != "password" && name != "password2" {
            return Err(AuthError::InvalidRequest(format!(
                "password name '{name}' is not 'password' or 'password2'"
            )));
        }
        let admin = self
            .admin_identity()
            .await?
            .ok_or_else(|| AuthError::NotFound("admin user".into()))?;
        let (cred, secret) = credential(&admin.id, name, None).await?;
        self.store
            .put_credential(
                &cred,
                &activity(
                    actor,
                    "regenerate login credentials",
                    &admin.login,
                    None,
                    Some(json!({"passwordName": name})),
                ),
            )
            .await?;
        self.invalidate();
        Ok(secret)
    }

    /// Creates a service principal with a secret valid until `validity`, and
    /// optionally a registry-scope role assignment.
    pub async fn create_service_principal(
        &self,
        actor: &Principal,
        name: &str,
        role: Option<&str>,
        scope: Option<&str>,
        validity: SecretValidity,
    ) -> Result<CreatedIdentity, AuthError> {
        if name.trim().is_empty() {
            return Err(AuthError::InvalidRequest(
                "a service principal needs a name".into(),
            ));
        }
        if let Some(role) = role {
            self.require_role(role).await?;
        }
        let id = uuid::Uuid::new_v4().to_string();
        let expires = validity.expires_at()?;
        let (cred, secret) = credential(&id, "secret", Some(expires)).await?;
        let sp = IdentityRecord {
            id: id.clone(),
            kind: "sp".into(),
            login: id.clone(),
            display_name: name.into(),
            enabled: true,
            trusted_service: false,
            scope_map: None,
            created_at: now(),
        };
        self.store
            .create_identity(
                &sp,
                &[cred],
                &activity(
                    actor,
                    "create service principal",
                    name,
                    None,
                    Some(snapshot(&sp)),
                ),
            )
            .await?;
        if let Some(role) = role {
            self.create_assignment(actor, &id, role, scope.unwrap_or(""))
                .await?;
        }
        self.invalidate();
        Ok(CreatedIdentity {
            identity: IdentityView::from(&sp),
            secrets: vec![secret],
        })
    }

    /// Identities of a kind (owner, admin, sp, token), or all.
    pub async fn identities(&self, kind: Option<&str>) -> Result<Vec<IdentityView>, AuthError> {
        Ok(self
            .store
            .identities(kind)
            .await?
            .iter()
            .map(IdentityView::from)
            .collect())
    }

    /// Finds an identity by id or login.
    pub async fn find_identity(&self, key: &str) -> Result<IdentityRecord, AuthError> {
        if let Some(i) = self.store.identity_by_id(key).await? {
            return Ok(i);
        }
        self.store
            .identity_by_login(key)
            .await?
            .ok_or_else(|| AuthError::NotFound(format!("identity '{key}'")))
    }

    async fn find_kind(&self, key: &str, kind: IdentityKind) -> Result<IdentityRecord, AuthError> {
        let i = self.find_identity(key).await?;
        if i.kind != kind.as_str() {
            return Err(AuthError::NotFound(format!("{} '{key}'", kind.describe())));
        }
        Ok(i)
    }

    pub async fn delete_identity(
        &self,
        actor: &Principal,
        key: &str,
        kind: IdentityKind,
    ) -> Result<(), AuthError> {
        let i = self.find_kind(key, kind).await?;
        self.store
            .delete_identity(
                &i.id,
                &activity(
                    actor,
                    &format!("delete {}", kind.describe()),
                    &i.login,
                    Some(snapshot(&i)),
                    None,
                ),
            )
            .await?;
        self.invalidate();
        Ok(())
    }

    pub async fn credentials_of(
        &self,
        key: &str,
        kind: IdentityKind,
    ) -> Result<Vec<CredentialView>, AuthError> {
        let i = self.find_kind(key, kind).await?;
        Ok(self
            .store
            .credentials(&i.id)
            .await?
            .iter()
            .map(CredentialView::from)
            .collect())
    }

    /// A new client secret for a service principal (the old one stops
    /// working at once).
    pub async fn reset_sp_secret(
        &self,
        actor: &Principal,
        key: &str,
        validity: SecretValidity,
    ) -> Result<NewSecret, AuthError> {
        let sp = self.find_kind(key, IdentityKind::ServicePrincipal).await?;
        let expires = validity.expires_at()?;
        let (cred, secret) = credential(&sp.id, "secret", Some(expires)).await?;
        self.store
            .put_credential(
                &cred,
                &activity(
                    actor,
                    "reset service principal credential",
                    &sp.display_name,
                    None,
                    Some(json!({"appId": sp.id, "expiresAt": rfc3339(expires)})),
                ),
            )
            .await?;
        self.invalidate();
        Ok(secret)
    }

    /// Marks an identity as a trusted service (network-rule bypass).
    pub async fn set_trusted_service(
        &self,
        actor: &Principal,
        key: &str,
        trusted: bool,
    ) -> Result<(), AuthError> {
        let before = self.find_identity(key).await?;
        let mut after = before.clone();
        after.trusted_service = trusted;
        self.store
            .update_identity(
                &after,
                &activity(
                    actor,
                    "update identity",
                    &after.login,
                    Some(snapshot(&before)),
                    Some(snapshot(&after)),
                ),
            )
            .await?;
        self.invalidate();
        Ok(())
    }

    pub async fn put_scope_map(
        &self,
        actor: &Principal,
        name: &str,
        description: &str,
        rules: Vec<ScopeRule>,
        create: bool,
    ) -> Result<ScopeMapView, AuthError> {
        validate_token_actions(&rules)?;
        let existing = self.store.scope_map(name).await?;
        match (&existing, create) {
            (Some(_), true) => {
                return Err(AuthError::Conflict(format!(
                    "scope map '{name}' already exists"
                )))
            }
            (None, false) => return Err(AuthError::NotFound(format!("scope map '{name}'"))),
            _ => {}
        }
        let rules_json =
            serde_json::to_string(&rules).map_err(|e| AuthError::Internal(e.to_string()))?;
        let record = ScopeMapRecord {
            name: name.into(),
            description: description.into(),
            rules_json: rules_json.clone(),
            created_at: existing.as_ref().map(|e| e.created_at).unwrap_or_else(now),
        };
        let before = existing.map(|e| json!({"rules": serde_json::from_str::<serde_json::Value>(&e.rules_json).unwrap_or_default()}));
        self.store
            .put_scope_map(
                &record,
                &activity(
                    actor,
                    if create {
                        "create scope map"
                    } else {
                        "update scope map"
                    },
                    name,
                    before,
                    Some(json!({"rules": rules})),
                ),
            )
            .await?;
        self.invalidate();
        Ok(ScopeMapView {
            name: record.name,
            description: record.description,
            rules,
            created_at: rfc3339(record.created_at),
        })
    }

    pub async fn scope_maps(&self) -> Result<Vec<ScopeMapView>, AuthError> {
        Ok(self
            .store
            .scope_maps()
            .await?
            .into_iter()
            .map(|m| ScopeMapView {
                rules: serde_json::from_str(&m.rules_json).unwrap_or_default(),
                name: m.name,
                description: m.description,
                created_at: rfc3339(m.created_at),
            })
            .collect())
    }

    pub async fn delete_scope_map(&self, actor: &Principal, name: &str) -> Result<(), AuthError> {
        let users: Vec<String> = self
            .store
            .identities(Some("token"))
            .await?
            .into_iter()
            .filter(|t| t.scope_map.as_deref() == Some(name))
            .map(|t| t.login)
            .collect();
        if !users.is_empty() {
            return Err(AuthError::Conflict(format!(
                "scope map '{name}' is used by tokens {}; delete or update them first",
                users.join(", ")
            )));
        }
        if !self
            .store
            .delete_scope_map(name, &activity(actor, "delete scope map", name, None, None))
            .await?
        {
            return Err(AuthError::NotFound(format!("scope map '{name}'")));
        }
        Ok(())
    }

    /// Creates a repository-scoped token with both passwords.
    pub async fn create_token(
        &self,
        actor: &Principal,
        name: &str,
        scope_map: &str,
        enabled: bool,
        expiry_days: Option<u32>,
    ) -> Result<CreatedIdentity, AuthError> {
        if self.store.scope_map(scope_map).await?.is_none() {
            return Err(AuthError::NotFound(format!("scope map '{scope_map}'")));
        }
        if name.is_empty()
            || name.len() > 50
            || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        {
            return Err(AuthError::InvalidRequest(format!(
                "token name '{name}' must be 1-50 letters, digits or '-'"
            )));
        }
        let id = uuid::Uuid::new_v4().to_string();
        let expires = expiry_days.map(|d| now() + i64::from(d) * DAY);
        let (c1, s1) = credential(&id, "password1", expires).await?;
        let (c2, s2) = credential(&id, "password2", expires).await?;
        let token = IdentityRecord {
            id,
            kind: "token".into(),
            login: name.into(),
            display_name: name.into(),
            enabled,
            trusted_service: false,
            scope_map: Some(scope_map.into()),
            created_at: now(),
        };
        self.store
            .create_identity(
                &token,
                &[c1, c2],
                &activity(actor, "create token", name, None, Some(snapshot(&token))),
            )
            .await
            .map_err(|e| match e {
                berth_metadata::MetadataError::AlreadyExists(_) => {
                    AuthError::Conflict(format!("the name '{name}' is already taken"))
                }
                other => other.into(),
            })?;
        self.invalidate();
        Ok(CreatedIdentity {
            identity: IdentityView::from(&token),
            secrets: vec![s1, s2],
        })
    }

    pub async fn update_token(
        &self,
        actor: &Principal,
        name: &str,
        enabled: Option<bool>,
        scope_map: Option<&str>,
    ) -> Result<IdentityView, AuthError> {
        let before = self.find_kind(name, IdentityKind::Token).await?;
        let mut after = before.clone();
        if let Some(e) = enabled {
            after.enabled = e;
        }
        if let Some(m) = scope_map {
            if self.store.scope_map(m).await?.is_none() {
                return Err(AuthError::NotFound(format!("scope map '{m}'")));
            }
            after.scope_map = Some(m.into());
        }
        self.store
            .update_identity(
                &after,
                &activity(
                    actor,
                    "update token",
                    name,
                    Some(snapshot(&before)),
                    Some(snapshot(&after)),
                ),
            )
            .await?;
        self.invalidate();
        Ok(IdentityView::from(&after))
    }

    /// Regenerates password1 or password2 of a token.
    pub async fn generate_token_password(
        &self,
        actor: &Principal,
        name: &str,
        password_name: &str,
        expiry_days: Option<u32>,
    ) -> Result<NewSecret, AuthError> {
        if password_name != "password1" && password_name != "password2" {
            return Err(AuthError::InvalidRequest(format!(
                "password name '{password_name}' is not 'password1' or 'password2'"
            )));
        }
        let token = self.find_kind(name, IdentityKind::Token).await?;
        let expires = expiry_days.map(|d| now() + i64::from(d) * DAY);
        let (cred, secret) = credential(&token.id, password_name, expires).await?;
        self.store
            .put_credential(
                &cred,
                &activity(
                    actor,
                    "generate token password",
                    name,
                    None,
                    Some(json!({"passwordName": password_name})),
                ),
            )
            .await?;
        self.invalidate();
        Ok(secret)
    }

    async fn require_role(&self, role: &str) -> Result<(), AuthError> {
        if self.roles().await?.iter().any(|r| r.0 == role) {
            Ok(())
        } else {
            Err(AuthError::NotFound(format!(
                "role '{role}' (see 'berth role definition list')"
            )))
        }
    }

    pub async fn role_views(&self) -> Result<Vec<RoleView>, AuthError> {
        let builtin: Vec<&str> = crate::model::builtin_roles().iter().map(|r| r.0).collect();
        Ok(self
            .roles()
            .await?
            .into_iter()
            .map(|(name, description, permissions)| RoleView {
                builtin: builtin.contains(&name.as_str()),
                name,
                description,
                actions: permissions.iter().map(|p| p.as_str().to_string()).collect(),
            })
            .collect())
    }

    pub async fn create_role(
        &self,
        actor: &Principal,
        name: &str,
        description: &str,
        actions: &[String],
    ) -> Result<RoleView, AuthError> {
        if crate::model::builtin_roles().iter().any(|r| r.0 == name) {
            return Err(AuthError::Conflict(format!("'{name}' is a built-in role")));
        }
        if actions.is_empty() {
            return Err(AuthError::InvalidRequest(
                "a role needs at least one action".into(),
            ));
        }
        for a in actions {
            if Permission::parse(a).is_none() {
                return Err(AuthError::InvalidRequest(format!(
                    "'{a}' is not an action; use {}",
                    Permission::ALL.map(|p| p.as_str()).join(", ")
                )));
            }
        }
        let record = RoleDefinitionRecord {
            name: name.into(),
            description: description.into(),
            actions_json: serde_json::to_string(actions)
                .map_err(|e| AuthError::Internal(e.to_string()))?,
            created_at: now(),
        };
        self.store
            .put_role_definition(
                &record,
                &activity(
                    actor,
                    "create role definition",
                    name,
                    None,
                    Some(json!({"actions": actions})),
                ),
            )
            .await?;
        self.invalidate();
        Ok(RoleView {
            name: name.into(),
            description: description.into(),
            builtin: false,
            actions: actions.to_vec(),
        })
    }

    /// Assigns `role` to an identity (by id or login) at `scope`.
    pub async fn create_assignment(
        &self,
        actor: &Principal,
        assignee: &str,
        role: &str,
        scope: &str,
    ) -> Result<AssignmentView, AuthError> {
        self.require_role(role).await?;
        let scope = Scope::parse(scope).map_err(AuthError::InvalidRequest)?;
        let principal = self.find_identity(assignee).await?;
        if principal.kind == "token" {
            return Err(AuthError::InvalidRequest(
                "tokens get their access from scope maps, not role assignments".into(),
            ));
        }
        let record = RoleAssignmentRecord {
            id: uuid::Uuid::new_v4().to_string(),
            principal_id: principal.id.clone(),
            role: role.into(),
            scope: scope.to_string().trim_start_matches('/').to_string(),
            created_at: now(),
        };
        let after = json!({"principalId": principal.id, "principal": principal.login, "role": role, "scope": scope.to_string()});
        self.store
            .create_role_assignment(
                &record,
                &activity(
                    actor,
                    "create role assignment",
                    &principal.login,
                    None,
                    Some(after),
                ),
            )
            .await?;
        self.invalidate();
        Ok(AssignmentView {
            id: record.id,
            principal_id: principal.id,
            principal: Some(principal.display_name),
            role: record.role,
            scope: scope.to_string(),
            orphaned: false,
            created_at: rfc3339(record.created_at),
        })
    }

    /// Assignments, with orphaned ones (principal gone) marked.
    pub async fn assignments(
        &self,
        assignee: Option<&str>,
    ) -> Result<Vec<AssignmentView>, AuthError> {
        let principal_id = match assignee {
            Some(a) => Some(match self.find_identity(a).await {
                Ok(i) => i.id,
                // A deleted principal's id still finds its orphaned assignments.
                Err(AuthError::NotFound(_)) => a.to_string(),
                Err(e) => return Err(e),
            }),
            None => None,
        };
        let mut out = Vec::new();
        for a in self.store.role_assignments(principal_id.as_deref()).await? {
            let principal = self.store.identity_by_id(&a.principal_id).await?;
            out.push(AssignmentView {
                orphaned: principal.is_none(),
                principal: principal.map(|p| p.display_name),
                scope: Scope::parse(&a.scope)
                    .map(|s| s.to_string())
                    .unwrap_or(a.scope),
                id: a.id,
                principal_id: a.principal_id,
                role: a.role,
                created_at: rfc3339(a.created_at),
            });
        }
        Ok(out)
    }

    pub async fn delete_assignment(&self, actor: &Principal, id: &str) -> Result<(), AuthError> {
        if !self
            .store
            .delete_role_assignment(
                id,
                &activity(actor, "delete role assignment", id, None, None),
            )
            .await?
        {
            return Err(AuthError::NotFound(format!("role assignment '{id}'")));
        }
        self.invalidate();
        Ok(())
    }

    pub async fn activity(&self, since: i64, limit: u32) -> Result<Vec<ActivityView>, AuthError> {
        Ok(self
            .store
            .activities(since, limit)
            .await?
            .into_iter()
            .map(ActivityView::from)
            .collect())
    }

    /// Drops activity older than `retention_days`.
    pub async fn purge_activity(&self, retention_days: u32) -> Result<u64, AuthError> {
        Ok(self
            .store
            .purge_activities(now() - i64::from(retention_days) * DAY)
            .await?)
    }
}

/// One step of an authorization trace.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AccessTrace {
    pub identity: Option<IdentityView>,
    pub identity_problem: Option<String>,
    pub permission: String,
    pub repository: Option<String>,
    pub allowed: bool,
    /// What grants it: "role AcrPush at app/*", "scope map m (app/web: content/read)",
    /// "owner", "admin user", "anonymous pull".
    pub granted_by: Vec<String>,
    /// Assignments of this identity that do not cover the request.
    pub other_assignments: Vec<String>,
    /// Assignments whose principal no longer exists but that carry the same
    /// name-less id shape: shown so a replaced principal is recognisable.
    pub orphaned_assignments: Vec<AssignmentView>,
    pub missing: Option<String>,
}

impl AuthService {
    /// Why `identity` may or may not do `permission` on `repository`: the
    /// identity's state, the grants that apply, what is missing, and any
    /// orphaned assignments (of deleted principals) in the registry.
    pub async fn explain(
        &self,
        identity: Option<&str>,
        permission: Permission,
        repository: Option<&str>,
    ) -> Result<AccessTrace, AuthError> {
        let mut trace = AccessTrace {
            identity: None,
            identity_problem: None,
            permission: permission.as_str().to_string(),
            repository: repository.map(str::to_string),
            allowed: false,
            granted_by: Vec::new(),
            other_assignments: Vec::new(),
            orphaned_assignments: self
                .assignments(None)
                .await?
                .into_iter()
                .filter(|a| a.orphaned)
                .collect(),
            missing: None,
        };
        let principal = match identity {
            None | Some("") | Some("anonymous") => {
                let anonymous = self.anonymous();
                if anonymous.allows(permission, repository) {
                    trace.granted_by.push("anonymous pull is enabled".into());
                }
                anonymous
            }
            Some(key) => {
                let record = match self.find_identity(key).await {
                    Ok(r) => r,
                    Err(AuthError::NotFound(_)) => {
                        trace.identity_problem = Some(format!(
                            "no identity '{key}' exists (deleted, or never created); a pull with it fails with 401 unknown identity"
                        ));
                        trace.missing = Some("an existing identity".into());
                        return Ok(trace);
                    }
                    Err(e) => return Err(e),
                };
                trace.identity = Some(IdentityView::from(&record));
                if let Err(e) = self.ensure_enabled(&record) {
                    trace.identity_problem = Some(e.to_string());
                }
                let expired: Vec<String> = self
                    .store
                    .credentials(&record.id)
                    .await?
                    .iter()
                    .filter(|c| c.expires_at.is_some_and(|e| e <= now()))
                    .map(|c| {
                        format!(
                            "{} expired at {}",
                            c.name,
                            rfc3339(c.expires_at.unwrap_or(0))
                        )
                    })
                    .collect();
                if !expired.is_empty() && trace.identity_problem.is_none() {
                    trace.identity_problem = Some(format!("credentials: {}", expired.join("; ")));
                }
                let principal = self.principal_of(&record).await?;
                match principal.kind {
                    IdentityKind::Owner => trace.granted_by.push("owner: every action".into()),
                    IdentityKind::Admin if principal.allows(permission, repository) => trace
                        .granted_by
                        .push("admin user: push, pull, delete".into()),
                    IdentityKind::Token => {
                        for g in &principal.grants {
                            let line = format!(
                                "scope map '{}': {} on {}",
                                record.scope_map.clone().unwrap_or_default(),
                                g.permission.as_str(),
                                g.scope
                            );
                            if g.permission == permission && g.scope.covers(repository) {
                                trace.granted_by.push(line);
                            } else {
                                trace.other_assignments.push(line);
                            }
                        }
                    }
                    _ => {}
                }
                if principal.kind != IdentityKind::Token {
                    let roles = self.roles().await?;
                    for a in self.store.role_assignments(Some(&record.id)).await? {
                        let scope = Scope::parse(&a.scope).map_err(AuthError::Internal)?;
                        let grants = roles
                            .iter()
                            .find(|r| r.0 == a.role)
                            .is_some_and(|r| r.2.contains(&permission));
                        let line = format!("role {} at {}", a.role, scope);
                        if grants && scope.covers(repository) {
                            trace.granted_by.push(line);
                        } else {
                            trace.other_assignments.push(line);
                        }
                    }
                }
                principal
            }
        };
        trace.allowed =
            principal.allows(permission, repository) && trace.identity_problem.is_none();
        if !principal.allows(permission, repository) {
            let role = crate::model::builtin_roles()
                .into_iter()
                .find(|r| r.2.contains(&permission))
                .map(|r| r.0)
                .unwrap_or("Owner");
            trace.missing = Some(match principal.kind {
                IdentityKind::Token => format!(
                    "the token's scope map needs an action granting '{}' on {}",
                    permission.as_str(),
                    repository.unwrap_or("the registry")
                ),
                IdentityKind::Anonymous => "credentials (anonymous pull is disabled)".to_string(),
                _ => format!(
                    "a role assignment granting '{}' on {} (for example {role})",
                    permission.as_str(),
                    repository.unwrap_or("the registry")
                ),
            });
        }
        Ok(trace)
    }
}
