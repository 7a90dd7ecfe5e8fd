//! The management API's errors: the same envelope as the distribution API
//! (`{"errors":[{"code","message","detail"}]}`), with codes of its own.

use serde::{Deserialize, Serialize};

/// A management error's code: stable, for scripts to match on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ManageCode {
    /// 401: no credentials, or wrong ones.
    Unauthorized,
    /// 403: the caller lacks the permission (the message names it).
    Denied,
    /// 400: a field is missing or malformed (the message names it).
    Validation,
    /// 404: no identity (owner, admin user, service principal, token) has
    /// this id or name.
    IdentityNotFound,
    /// 404: no scope map, role, assignment, repository, rule... of this name.
    NotFound,
    /// 409: the change conflicts with what exists (a duplicate name, a
    /// scope map still in use, a lock-out without `force`, another node's
    /// collector running).
    Conflict,
    /// 422: a limit is reached (e.g. 100 IP rules).
    LimitExceeded,
    /// 429: too many failed logins for this name from this address (the
    /// distribution API's spelling, since the same throttle answers both).
    #[serde(rename = "TOOMANYREQUESTS")]
    TooManyRequests,
    /// 503: a backend is not answering; retry (the response says when).
    Unavailable,
    /// 507: a backend is out of space.
    StorageFull,
    /// 500: berth failed; the message carries a correlation id for the log.
    InternalError,
}

impl ManageCode {
    pub fn status(self) -> u16 {
        match self {
            ManageCode::Unauthorized => 401,
            ManageCode::Denied => 403,
            ManageCode::Validation => 400,
            ManageCode::IdentityNotFound | ManageCode::NotFound => 404,
            ManageCode::Conflict => 409,
            ManageCode::LimitExceeded => 422,
            ManageCode::TooManyRequests => 429,
            ManageCode::Unavailable => 503,
            ManageCode::StorageFull => 507,
            ManageCode::InternalError => 500,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            ManageCode::Unauthorized => "UNAUTHORIZED",
            ManageCode::Denied => "DENIED",
            ManageCode::Validation => "VALIDATION",
            ManageCode::IdentityNotFound => "IDENTITY_NOT_FOUND",
            ManageCode::NotFound => "NOT_FOUND",
            ManageCode::Conflict => "CONFLICT",
            ManageCode::LimitExceeded => "LIMIT_EXCEEDED",
            ManageCode::TooManyRequests => "TOOMANYREQUESTS",
            ManageCode::Unavailable => "UNAVAILABLE",
            ManageCode::StorageFull => "STORAGE_FULL",
            ManageCode::InternalError => "INTERNAL_ERROR",
        }
    }
}

/// The error envelope.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    pub errors: Vec<ErrorEntry>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorEntry {
    /// A [`ManageCode`] from the management API; the distribution API's
    /// codes (`DENIED`, `UNAUTHORIZED`, ...) from the layers in front of it.
    pub code: String,
    pub message: String,
    #[serde(default)]
    pub detail: Option<serde_json::Value>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_serialize_as_their_names() {
        for code in [
            ManageCode::Unauthorized,
            ManageCode::Denied,
            ManageCode::Validation,
            ManageCode::IdentityNotFound,
            ManageCode::NotFound,
            ManageCode::Conflict,
            ManageCode::LimitExceeded,
            ManageCode::TooManyRequests,
            ManageCode::Unavailable,
            ManageCode::StorageFull,
            ManageCode::InternalError,
        ] {
            assert_eq!(
                serde_json::to_value(code).expect("json"),
                serde_json::json!(code.as_str())
            );
        }
    }
}
