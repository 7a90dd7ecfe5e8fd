//! Records as the management contract shows them (never a secret).

use berth_manage::identities::{Credential, Identity, IdentityKind};
use berth_manage::logs::ActivityEntry;
use berth_metadata::{ActivityRecord, CredentialRecord, IdentityRecord};
use berth_util::now;

use crate::AuthError;
use berth_util::rfc3339;

/// A stored identity's kind; a value berth never writes is a corrupt row,
/// reported as such rather than guessed at.
pub fn kind_of(i: &IdentityRecord) -> Result<IdentityKind, AuthError> {
    IdentityKind::parse(&i.kind).ok_or_else(|| {
        AuthError::Internal(format!(
            "identity '{}' has an unknown kind '{}' in the store",
            i.login, i.kind
        ))
    })
}

pub fn identity(i: &IdentityRecord) -> Result<Identity, AuthError> {
    Ok(Identity {
        id: i.id.clone(),
        kind: kind_of(i)?,
        login: i.login.clone(),
        name: i.display_name.clone(),
        enabled: i.enabled,
        trusted_service: i.trusted_service,
        scope_map: i.scope_map.clone(),
        created_at: rfc3339(i.created_at),
    })
}

pub fn identities(records: &[IdentityRecord]) -> Result<Vec<Identity>, AuthError> {
    records.iter().map(identity).collect()
}

pub fn credential(c: &CredentialRecord) -> Credential {
    Credential {
        name: c.name.clone(),
        created_at: rfc3339(c.created_at),
        expires_at: c.expires_at.map(rfc3339),
        expired: c.expires_at.is_some_and(|e| e <= now()),
    }
}

pub fn activity(r: ActivityRecord) -> ActivityEntry {
    let parse = |s: Option<String>| s.and_then(|s| serde_json::from_str(&s).ok());
    ActivityEntry {
        id: r.id,
        time: rfc3339(r.time),
        actor: r.activity.actor,
        operation: r.activity.operation,
        target: r.activity.target,
        before: parse(r.activity.before),
        after: parse(r.activity.after),
    }
}
