//! Scope maps and the repository-scoped tokens that use them.

use berth_manage::identities::{CreatedIdentity, Identity, IdentityKind, NewSecret};
use berth_manage::tokens::{ScopeMap, ScopeRule, TokenPasswordName};
use berth_metadata::{IdentityRecord, ScopeMapRecord};
use berth_util::now;
use serde_json::json;

use super::{activity, credential, snapshot, DAY};
use crate::model::{Principal, Scope};
use crate::service::AuthService;
use crate::{view, AuthError};
use berth_util::rfc3339;

/// A scope map must grant something, on repositories named validly.
/// (Actions are typed: the contract refuses an unknown one when the
/// request is parsed.)
fn validate_rules(rules: &[ScopeRule]) -> Result<(), AuthError> {
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
    }
    Ok(())
}

fn stored_rules(m: &ScopeMapRecord) -> Result<Vec<ScopeRule>, AuthError> {
    serde_json::from_str(&m.rules_json)
        .map_err(|e| AuthError::Internal(format!("scope map '{}' is unreadable: {e}", m.name)))
}

impl AuthService {
    pub async fn put_scope_map(
        &self,
        actor: &Principal,
        name: &str,
        description: &str,
        rules: Vec<ScopeRule>,
        create: bool,
    ) -> Result<ScopeMap, AuthError> {
        validate_rules(&rules)?;
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
        let before = match &existing {
            Some(e) => Some(json!({ "rules": stored_rules(e)? })),
            None => None,
        };
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
        Ok(ScopeMap {
            name: record.name,
            description: record.description,
            rules,
            created_at: rfc3339(record.created_at),
        })
    }

    pub async fn scope_maps(&self) -> Result<Vec<ScopeMap>, AuthError> {
        self.store
            .scope_maps()
            .await?
            .into_iter()
            .map(|m| {
                Ok(ScopeMap {
                    rules: stored_rules(&m)?,
                    name: m.name,
                    description: m.description,
                    created_at: rfc3339(m.created_at),
                })
            })
            .collect()
    }

    /// Deletes a scope map no token uses. The store checks for users in
    /// the delete itself; when it deletes nothing, the users (or the map's
    /// absence) are read back for the message.
    pub async fn delete_scope_map(&self, actor: &Principal, name: &str) -> Result<(), AuthError> {
        if self
            .store
            .delete_scope_map(name, &activity(actor, "delete scope map", name, None, None))
            .await?
        {
            return Ok(());
        }
        let users: Vec<String> = self
            .store
            .identities(Some(IdentityKind::Token.as_str()))
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
        Err(AuthError::NotFound(format!("scope map '{name}'")))
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
            kind: IdentityKind::Token.as_str().into(),
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
            identity: view::identity(&token)?,
            secrets: vec![s1, s2],
        })
    }

    pub async fn update_token(
        &self,
        actor: &Principal,
        name: &str,
        enabled: Option<bool>,
        scope_map: Option<&str>,
    ) -> Result<Identity, AuthError> {
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
        view::identity(&after)
    }

    /// Regenerates password1 or password2 of a token.
    pub async fn generate_token_password(
        &self,
        actor: &Principal,
        name: &str,
        password_name: TokenPasswordName,
        expiry_days: Option<u32>,
    ) -> Result<NewSecret, AuthError> {
        let password_name = password_name.as_str();
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
}
