//! Federated credentials of service principals: create, list, delete.

use berth_manage::federation::{CreateFederatedCredential, FederatedCredential, KeySource};
use berth_metadata::FederatedCredentialRecord;
use berth_util::{now, rfc3339};
use serde_json::json;

use super::activity;
use crate::model::Principal;
use crate::service::AuthService;
use crate::AuthError;
use berth_manage::identities::IdentityKind;

fn view(record: &FederatedCredentialRecord, app_id: &str) -> FederatedCredential {
    FederatedCredential {
        name: record.name.clone(),
        app_id: app_id.to_string(),
        issuer: record.issuer.clone(),
        subject: record.subject.clone(),
        audience: record.audience.clone(),
        key_source: if record.jwks.is_some() {
            KeySource::Jwks
        } else {
            KeySource::Discovery
        },
        custom_ca: record.ca_pem.is_some(),
        created_at: rfc3339(record.created_at),
    }
}

/// What the activity log keeps of a credential (no key material).
fn snapshot(r: &FederatedCredentialRecord) -> serde_json::Value {
    json!({
        "name": r.name, "issuer": r.issuer, "subject": r.subject, "audience": r.audience,
        "keySource": if r.jwks.is_some() { "jwks" } else { "discovery" },
    })
}

fn invalid(field: &str, reason: impl std::fmt::Display) -> AuthError {
    AuthError::InvalidRequest(format!("{field}: {reason}"))
}

impl AuthService {
    pub async fn create_federated_credential(
        &self,
        actor: &Principal,
        request: &CreateFederatedCredential,
    ) -> Result<FederatedCredential, AuthError> {
        let sp = self
            .find_kind(&request.id, IdentityKind::ServicePrincipal)
            .await?;
        let name = request.name.trim();
        if name.is_empty()
            || name.len() > 120
            || !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        {
            return Err(invalid(
                "name",
                "give 1 to 120 letters, digits, '-', '_' or '.'",
            ));
        }
        let issuer = request.issuer.trim();
        let parsed = reqwest::Url::parse(issuer).map_err(|e| invalid("issuer", e))?;
        if !matches!(parsed.scheme(), "https" | "http") || parsed.host_str().is_none() {
            return Err(invalid(
                "issuer",
                "an issuer is an https:// URL (a token's 'iss' claim, exactly)",
            ));
        }
        if parsed.scheme() == "http" && request.jwks.is_none() {
            return Err(invalid(
                "issuer",
                "keys are only fetched over https; give the issuer's JWKS (--jwks-file) for an http:// issuer",
            ));
        }
        if request.subject.trim().is_empty() {
            return Err(invalid(
                "subject",
                "give the token's 'sub', e.g. system:serviceaccount:NAMESPACE:NAME",
            ));
        }
        if request.audience.trim().is_empty() {
            return Err(invalid(
                "audience",
                "give the audience the tokens are minted for",
            ));
        }
        if let Some(jwks) = &request.jwks {
            let set: jsonwebtoken::jwk::JwkSet = serde_json::from_str(jwks)
                .map_err(|e| invalid("jwks", format!("not a JWKS: {e}")))?;
            if set.keys.is_empty() {
                return Err(invalid("jwks", "it holds no key"));
            }
            for key in &set.keys {
                jsonwebtoken::DecodingKey::from_jwk(key)
                    .map_err(|e| invalid("jwks", format!("a key is unusable: {e}")))?;
            }
        }
        if let Some(pem) = &request.ca_pem {
            berth_client::tls::client_config_with_pem(Some(pem))
                .map_err(|e| invalid("caPem", e))?;
            if !pem.contains("-----BEGIN CERTIFICATE-----") {
                return Err(invalid("caPem", "it holds no PEM certificate"));
            }
        }
        let record = FederatedCredentialRecord {
            identity_id: sp.id.clone(),
            name: name.to_string(),
            issuer: issuer.to_string(),
            subject: request.subject.trim().to_string(),
            audience: request.audience.trim().to_string(),
            jwks: request.jwks.clone(),
            ca_pem: request.ca_pem.clone(),
            created_at: now(),
        };
        self.store
            .create_federated_credential(
                &record,
                &activity(
                    actor,
                    "create federated credential",
                    &sp.login,
                    None,
                    Some(snapshot(&record)),
                ),
            )
            .await
            .map_err(|e| match e {
                berth_metadata::MetadataError::AlreadyExists(what) => AuthError::Conflict(format!(
                    "{what} already exists on service principal '{}'",
                    sp.display_name
                )),
                other => other.into(),
            })?;
        self.invalidate();
        Ok(view(&record, &sp.login))
    }

    pub async fn federated_credentials(
        &self,
        key: &str,
    ) -> Result<Vec<FederatedCredential>, AuthError> {
        let sp = self.find_kind(key, IdentityKind::ServicePrincipal).await?;
        Ok(self
            .store
            .federated_credentials(Some(&sp.id))
            .await?
            .iter()
            .map(|r| view(r, &sp.login))
            .collect())
    }

    pub async fn delete_federated_credential(
        &self,
        actor: &Principal,
        key: &str,
        name: &str,
    ) -> Result<(), AuthError> {
        let sp = self.find_kind(key, IdentityKind::ServicePrincipal).await?;
        let existing = self
            .store
            .federated_credentials(Some(&sp.id))
            .await?
            .into_iter()
            .find(|r| r.name == name)
            .ok_or_else(|| {
                AuthError::NotFound(format!(
                    "federated credential '{name}' of service principal '{}'",
                    sp.display_name
                ))
            })?;
        self.store
            .delete_federated_credential(
                &sp.id,
                name,
                &activity(
                    actor,
                    "delete federated credential",
                    &sp.login,
                    Some(snapshot(&existing)),
                    None,
                ),
            )
            .await?;
        // Signed-in federated callers are re-checked from now on.
        self.invalidate();
        Ok(())
    }
}
