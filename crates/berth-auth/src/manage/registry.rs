//! The owner, the registry-wide settings and the admin user.

use berth_manage::identities::{IdentityKind, NewSecret};
use berth_manage::registry::{AdminCredentials, PasswordName, RegistrySettings};
use berth_metadata::{Activity, IdentityRecord};
use berth_util::now;
use serde_json::json;

use super::{activity, credential, snapshot};
use crate::model::Principal;
use crate::service::{
    AuthService, SETTING_ADMIN_ENABLED, SETTING_ANONYMOUS_PULL, SETTING_SPARSE_MANIFESTS,
};
use crate::{secret, view, AuthError};

impl AuthService {
    /// First start: creates the owner and returns its password (once):
    /// `initial` if given, else a random one.
    pub async fn bootstrap_owner(
        &self,
        initial: Option<&str>,
    ) -> Result<Option<String>, AuthError> {
        if !self
            .store
            .identities(Some(IdentityKind::Owner.as_str()))
            .await?
            .is_empty()
        {
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
            kind: IdentityKind::Owner.as_str().into(),
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
        self.new_owner_password(activity(
            actor,
            "regenerate owner password",
            "owner",
            None,
            None,
        ))
        .await
    }

    /// `berth recover --reset-owner-password`: a new random owner password,
    /// recorded as done by `actor` — recovery is not an identity (it works
    /// when no one can sign in). A running server drops its cached
    /// sign-ins when it sees the activity entry (within a second).
    pub async fn reset_owner_password(&self, actor: &str) -> Result<NewSecret, AuthError> {
        self.new_owner_password(Activity {
            actor: actor.into(),
            operation: "reset owner password".into(),
            target: "owner".into(),
            before: None,
            after: None,
        })
        .await
    }

    /// Replaces the owner's password with a random one, recording `entry`.
    async fn new_owner_password(&self, entry: Activity) -> Result<NewSecret, AuthError> {
        let owner = self
            .store
            .identities(Some(IdentityKind::Owner.as_str()))
            .await?
            .into_iter()
            .next()
            .ok_or_else(|| AuthError::NotFound("owner".into()))?;
        let (cred, secret) = credential(&owner.id, "password", None).await?;
        self.store.put_credential(&cred, &entry).await?;
        self.invalidate();
        Ok(secret)
    }

    pub fn settings(&self) -> RegistrySettings {
        RegistrySettings {
            anonymous_pull_enabled: self.anonymous_pull_enabled(),
            admin_user_enabled: self.admin_enabled(),
            sparse_manifests: self.sparse_manifests_enabled(),
            admin_passwords: Vec::new(),
        }
    }

    pub async fn set_anonymous_pull(
        &self,
        actor: &Principal,
        enabled: bool,
    ) -> Result<(), AuthError> {
        let before = self.anonymous_pull_enabled();
        self.set_flag(actor, SETTING_ANONYMOUS_PULL, before, enabled)
            .await
    }

    /// Turns the `sparseManifests` setting on or off.
    pub async fn set_sparse_manifests(
        &self,
        actor: &Principal,
        enabled: bool,
    ) -> Result<(), AuthError> {
        let before = self.sparse_manifests_enabled();
        self.set_flag(actor, SETTING_SPARSE_MANIFESTS, before, enabled)
            .await
    }

    /// Stores a boolean registry setting, audited with its old and new value.
    async fn set_flag(
        &self,
        actor: &Principal,
        name: &str,
        before: bool,
        enabled: bool,
    ) -> Result<(), AuthError> {
        self.store
            .set_setting(
                name,
                if enabled { "true" } else { "false" },
                &activity(
                    actor,
                    "update registry",
                    name,
                    Some(json!({ name: before })),
                    Some(json!({ name: enabled })),
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
                kind: IdentityKind::Admin.as_str().into(),
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
            .identities(Some(IdentityKind::Admin.as_str()))
            .await?
            .into_iter()
            .next())
    }

    /// The admin user's name and password metadata (values are never stored).
    pub async fn admin_credentials(&self) -> Result<AdminCredentials, AuthError> {
        let admin = self.admin_identity().await?.ok_or_else(|| {
            AuthError::NotFound("admin user (enable it with 'berth admin enable')".into())
        })?;
        let creds = self.store.credentials(&admin.id).await?;
        Ok(AdminCredentials {
            username: admin.login,
            enabled: self.admin_enabled(),
            passwords: creds.iter().map(view::credential).collect(),
        })
    }

    /// Regenerates one admin password; the other keeps working.
    pub async fn renew_admin_password(
        &self,
        actor: &Principal,
        name: PasswordName,
    ) -> Result<NewSecret, AuthError> {
        let name = name.as_str();
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
}
