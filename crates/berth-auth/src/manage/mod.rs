//! Management operations on identities, credentials, scope maps, roles and
//! settings, one file per job. Each records an activity entry (actor,
//! operation, target, before/after without secrets) in the same
//! transaction as the change, and returns a new secret at most once: it is
//! never stored in clear. What they return is the management contract's
//! types (`berth_manage`), built from records in `crate::view`.

use berth_manage::identities::NewSecret;
use berth_metadata::{Activity, CredentialRecord, IdentityRecord};
use berth_util::now;

use crate::model::Principal;
use crate::{secret, view, AuthError};
use berth_util::rfc3339;

mod activity;
mod cache;
mod federation;
mod identities;
mod registry;
mod roles;
mod tokens;

const YEAR: i64 = 365 * 24 * 3600;
const DAY: i64 = 24 * 3600;

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

/// An identity as the activity log records it (never a secret).
fn snapshot(i: &IdentityRecord) -> serde_json::Value {
    view::identity(i)
        .ok()
        .and_then(|v| serde_json::to_value(v).ok())
        .unwrap_or_default()
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

/// When a service principal's secret expires: `years` from now (1 by
/// default), or at an explicit end date (RFC 3339), which must be in the
/// future.
fn secret_expiry(years: Option<u32>, end_date: Option<&str>) -> Result<i64, AuthError> {
    if let Some(end) = end_date {
        let at = time::OffsetDateTime::parse(end, &time::format_description::well_known::Rfc3339)
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
    Ok(now() + i64::from(years.unwrap_or(1).max(1)) * YEAR)
}
