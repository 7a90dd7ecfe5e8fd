//! Service principals, and identities of any kind: finding them by id or
//! name, deleting them, their credentials, the trusted-service mark.

use berth_manage::identities::{CreatedIdentity, Credential, Identity, IdentityKind, NewSecret};
use berth_metadata::IdentityRecord;
use berth_util::now;
use serde_json::json;

use super::{activity, credential, secret_expiry, snapshot};
use crate::model::Principal;
use crate::service::AuthService;
use crate::{view, AuthError};
use berth_util::rfc3339;

impl AuthService {
    /// Creates a service principal with a secret valid `years` (or until
    /// `end_date`), and optionally a role assignment. Names are unique
    /// among service principals, so a name can stand for the app id.
    pub async fn create_service_principal(
        &self,
        actor: &Principal,
        request: &berth_manage::identities::CreateServicePrincipal,
    ) -> Result<CreatedIdentity, AuthError> {
        let name = request.name.trim();
        let (role, scope) = (request.role.as_deref(), request.scope.as_deref());
        if name.is_empty() {
            return Err(AuthError::InvalidRequest(
                "a service principal needs a name".into(),
            ));
        }
        if self
            .store
            .identities(Some(IdentityKind::ServicePrincipal.as_str()))
            .await?
            .iter()
            .any(|sp| sp.display_name == name)
        {
            return Err(AuthError::Conflict(format!(
                "a service principal named '{name}' already exists; names are unique so they can stand for the app id"
            )));
        }
        if let Some(role) = role {
            self.require_role(role).await?;
        }
        let id = uuid::Uuid::new_v4().to_string();
        let expires = secret_expiry(request.years, request.end_date.as_deref())?;
        let (cred, secret) = credential(&id, "secret", Some(expires)).await?;
        let sp = IdentityRecord {
            id: id.clone(),
            kind: IdentityKind::ServicePrincipal.as_str().into(),
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
            identity: view::identity(&sp)?,
            secrets: vec![secret],
        })
    }

    /// Identities of a kind, or all.
    pub async fn identities(&self, kind: Option<IdentityKind>) -> Result<Vec<Identity>, AuthError> {
        view::identities(
            &self
                .store
                .identities(kind.map(IdentityKind::as_str))
                .await?,
        )
    }

    /// Finds an identity by id, login or name (names are unique per kind;
    /// a name two kinds share is refused as ambiguous).
    pub async fn find_identity(&self, key: &str) -> Result<IdentityRecord, AuthError> {
        if let Some(i) = self.store.identity_by_id(key).await? {
            return Ok(i);
        }
        if let Some(i) = self.store.identity_by_login(key).await? {
            return Ok(i);
        }
        let mut named: Vec<IdentityRecord> = self
            .store
            .identities(None)
            .await?
            .into_iter()
            .filter(|i| i.display_name == key)
            .collect();
        match named.len() {
            0 => Err(AuthError::IdentityNotFound(format!(
                "no identity has the id, login or name '{key}'"
            ))),
            1 => Ok(named.remove(0)),
            _ => Err(AuthError::Conflict(format!(
                "several identities are named '{key}'; give the id instead"
            ))),
        }
    }

    pub(crate) async fn find_kind(
        &self,
        key: &str,
        kind: IdentityKind,
    ) -> Result<IdentityRecord, AuthError> {
        let i = self.find_identity(key).await.map_err(|e| match e {
            AuthError::IdentityNotFound(_) => AuthError::IdentityNotFound(format!(
                "no {} has the id or name '{key}'",
                kind.describe()
            )),
            other => other,
        })?;
        if i.kind != kind.as_str() {
            return Err(AuthError::IdentityNotFound(format!(
                "'{key}' is not a {}",
                kind.describe()
            )));
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
    ) -> Result<Vec<Credential>, AuthError> {
        let i = self.find_kind(key, kind).await?;
        Ok(self
            .store
            .credentials(&i.id)
            .await?
            .iter()
            .map(view::credential)
            .collect())
    }

    /// A new client secret for a service principal (the old one stops
    /// working at once).
    pub async fn reset_sp_secret(
        &self,
        actor: &Principal,
        key: &str,
        years: Option<u32>,
        end_date: Option<&str>,
    ) -> Result<NewSecret, AuthError> {
        let sp = self.find_kind(key, IdentityKind::ServicePrincipal).await?;
        let expires = secret_expiry(years, end_date)?;
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
}
