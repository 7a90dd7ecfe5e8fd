//! The management API's errors: [`ManageCode`]s in the shared envelope.
//! The one place where management failures become responses.

use axum::response::{IntoResponse, Response};
use berth_auth::AuthError;
use berth_manage::ManageCode;
use berth_network::RuleError;
use berth_registry::RegistryError;
use berth_types::{ErrorCode, NameError};
use http::StatusCode;
use serde_json::json;

use crate::error::ApiError;

#[derive(Debug)]
pub enum ManageError {
    /// Refused, with a code of the management contract.
    Refused { code: ManageCode, message: String },
    /// A failure the layers shared with the distribution API answer
    /// themselves: authentication (401, 429) and backend faults (503, 507,
    /// 500, with a correlation id and the cause in the log).
    Api(ApiError),
}

impl ManageError {
    pub fn new(code: ManageCode, message: impl Into<String>) -> Self {
        ManageError::Refused {
            code,
            message: message.into(),
        }
    }

    pub fn validation(message: impl Into<String>) -> Self {
        ManageError::new(ManageCode::Validation, message)
    }

    pub fn conflict(message: impl Into<String>) -> Self {
        ManageError::new(ManageCode::Conflict, message)
    }

    /// The code as sent.
    pub fn code(&self) -> &'static str {
        match self {
            ManageError::Refused { code, .. } => code.as_str(),
            ManageError::Api(e) => e.code.as_str(),
        }
    }

    pub fn status(&self) -> StatusCode {
        match self {
            ManageError::Refused { code, .. } => {
                StatusCode::from_u16(code.status()).unwrap_or(StatusCode::BAD_REQUEST)
            }
            ManageError::Api(e) => e.status,
        }
    }

    pub fn message(&self) -> &str {
        match self {
            ManageError::Refused { message, .. } => message,
            ManageError::Api(e) => &e.message,
        }
    }
}

impl From<ApiError> for ManageError {
    /// Errors of the registry layer, in the contract's terms; outages,
    /// full disks and internal errors pass through unchanged.
    fn from(e: ApiError) -> Self {
        let code = match e.code {
            ErrorCode::NameUnknown | ErrorCode::ManifestUnknown | ErrorCode::BlobUnknown => {
                ManageCode::NotFound
            }
            ErrorCode::NameInvalid
            | ErrorCode::TagInvalid
            | ErrorCode::DigestInvalid
            | ErrorCode::Unsupported => ManageCode::Validation,
            _ => return ManageError::Api(e),
        };
        ManageError::new(code, e.message)
    }
}

impl From<AuthError> for ManageError {
    fn from(e: AuthError) -> Self {
        match e {
            AuthError::InvalidRequest(m) => ManageError::validation(m),
            AuthError::NotFound(m) => {
                ManageError::new(ManageCode::NotFound, format!("{m} not found"))
            }
            AuthError::IdentityNotFound(m) => ManageError::new(ManageCode::IdentityNotFound, m),
            AuthError::Conflict(m) => ManageError::conflict(m),
            other => ManageError::Api(ApiError::from_auth(other)),
        }
    }
}

impl From<RegistryError> for ManageError {
    fn from(e: RegistryError) -> Self {
        ApiError::from(e).into()
    }
}

impl From<NameError> for ManageError {
    fn from(e: NameError) -> Self {
        ManageError::validation(e.to_string())
    }
}

impl From<berth_metadata::MetadataError> for ManageError {
    fn from(e: berth_metadata::MetadataError) -> Self {
        ManageError::Api(ApiError::store(e))
    }
}

impl From<RuleError> for ManageError {
    fn from(e: RuleError) -> Self {
        let code = match e {
            RuleError::TooMany => ManageCode::LimitExceeded,
            RuleError::Duplicate(_) => ManageCode::Conflict,
            RuleError::NoSuchRule(_) => ManageCode::NotFound,
            _ => ManageCode::Validation,
        };
        ManageError::new(code, e.to_string())
    }
}

impl IntoResponse for ManageError {
    fn into_response(self) -> Response {
        match self {
            ManageError::Api(e) => e.into_response(),
            ManageError::Refused { code, message } => {
                let status = StatusCode::from_u16(code.status()).unwrap_or(StatusCode::BAD_REQUEST);
                let body = json!({
                    "errors": [{ "code": code.as_str(), "message": &message, "detail": null }]
                });
                let mut response = (status, axum::Json(body)).into_response();
                response
                    .extensions_mut()
                    .insert(crate::audit::ErrorMessage(message));
                response
            }
        }
    }
}
