//! The one place where failures become HTTP responses: the distribution
//! spec's JSON error envelope with its codes and statuses.
//!
//! Backend failures never reach a client as text: the client gets a stable
//! message that names the failing part (metadata database, blob store) and
//! the request's correlation id; the error itself goes to the log under
//! that id. Outages are `503 UNAVAILABLE` with `Retry-After`, a full disk
//! is `507 STORAGE_FULL`, anything else `500 INTERNAL_ERROR`.

use axum::response::{IntoResponse, Response};
use berth_registry::RegistryError;
use berth_types::{ErrorCode, Fault, NameError};
use http::{HeaderName, HeaderValue, StatusCode};
use serde_json::json;

#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: ErrorCode,
    pub message: String,
    /// Extra headers the spec wants on some errors (`Range` on a 416).
    pub headers: Vec<(HeaderName, HeaderValue)>,
    /// What went wrong inside: logged with the correlation id, never sent.
    detail: Option<String>,
    /// The envelope's `detail`, for clients (the artifact cache names the
    /// upstreams that failed and why).
    client_detail: Option<serde_json::Value>,
}

/// Seconds a client is asked to wait after a `503`: backends are probed
/// every second, and a request after that finds one that came back.
pub const RETRY_AFTER_SECONDS: u64 = 2;

impl ApiError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        ApiError {
            status: StatusCode::from_u16(code.status()).unwrap_or(StatusCode::BAD_REQUEST),
            code,
            message: message.into(),
            headers: Vec::new(),
            detail: None,
            client_detail: None,
        }
    }

    /// A backend failure: the client hears what kind (and of which part),
    /// the log gets `detail`.
    pub fn fault(fault: Fault, detail: impl std::fmt::Display) -> Self {
        let message = match fault {
            Fault::Unavailable(backend) => format!(
                "the registry's {backend} is not answering; retry in a few seconds"
            ),
            Fault::Full(backend) => format!(
                "the registry's {backend} is out of space: writes are refused until space is freed; pulls keep working"
            ),
            Fault::Internal => "the registry failed to handle the request".to_string(),
        };
        let mut error = ApiError::new(fault.code(), message);
        error.detail = Some(detail.to_string());
        if matches!(fault, Fault::Unavailable(_)) {
            error = error.with_header("retry-after", &RETRY_AFTER_SECONDS.to_string());
        }
        error
    }

    /// A failure of berth's own (a bug, or a state it cannot handle).
    pub fn internal(detail: impl std::fmt::Display) -> Self {
        ApiError::fault(Fault::Internal, detail)
    }

    /// A metadata-store failure.
    pub fn store(e: berth_metadata::MetadataError) -> Self {
        ApiError::fault(e.fault(), e)
    }

    pub fn with_header(mut self, name: &'static str, value: &str) -> Self {
        if let Ok(v) = HeaderValue::from_str(value) {
            self.headers.push((HeaderName::from_static(name), v));
        }
        self
    }

    pub fn with_status(mut self, status: StatusCode) -> Self {
        self.status = status;
        self
    }
}

impl From<RegistryError> for ApiError {
    fn from(e: RegistryError) -> Self {
        if let Some(fault) = e.fault() {
            return ApiError::fault(fault, e);
        }
        let status = StatusCode::from_u16(e.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        ApiError {
            status,
            code: e.code(),
            message: e.to_string(),
            headers: Vec::new(),
            detail: None,
            client_detail: None,
        }
    }
}

/// A pull-through that no upstream served. The status follows the failure
/// that matters most: `429` with the upstream's `Retry-After` (wait), `502
/// DENIED` for refused credentials (fix the credential set), `502
/// UNAVAILABLE` for an upstream down or broken, `404` only when every
/// upstream said it has no such thing. `detail` lists each upstream's
/// failure, for `berth check-pull` and other tools.
impl From<berth_cache::CacheError> for ApiError {
    fn from(e: berth_cache::CacheError) -> Self {
        use berth_cache::{CacheError, Failure, Kind};
        let (rule, kind, failures) = match &e {
            CacheError::Registry(_) => {
                let CacheError::Registry(inner) = e else {
                    unreachable!("matched above")
                };
                return inner.into();
            }
            CacheError::Stopped => return ApiError::internal(e),
            CacheError::Upstream {
                rule,
                kind,
                failures,
                ..
            } => (rule.clone(), *kind, failures.clone()),
        };
        let mut error = match e.dominant() {
            Some(Failure::RateLimited { retry_after }) => {
                let error = ApiError::new(ErrorCode::TooManyRequests, e.to_string());
                match retry_after {
                    Some(after) => error.with_header("retry-after", after),
                    None => error,
                }
            }
            Some(Failure::CredentialsRejected { .. }) => {
                ApiError::new(ErrorCode::Denied, e.to_string()).with_status(StatusCode::BAD_GATEWAY)
            }
            Some(Failure::NotFound) | None => ApiError::new(
                match kind {
                    Kind::Manifest => ErrorCode::ManifestUnknown,
                    Kind::Blob => ErrorCode::BlobUnknown,
                },
                e.to_string(),
            ),
            Some(_) => ApiError::new(ErrorCode::Unavailable, e.to_string())
                .with_status(StatusCode::BAD_GATEWAY),
        };
        error.client_detail = Some(json!({
            "cacheRule": rule,
            "kind": kind,
            "upstreams": failures,
        }));
        error
    }
}

impl From<NameError> for ApiError {
    fn from(e: NameError) -> Self {
        let code = match e {
            NameError::Digest(_) => ErrorCode::DigestInvalid,
            NameError::InvalidTag(_) => ErrorCode::TagInvalid,
            _ => ErrorCode::NameInvalid,
        };
        ApiError::new(code, e.to_string())
    }
}

impl IntoResponse for ApiError {
    fn into_response(mut self) -> Response {
        if let Some(detail) = &self.detail {
            let correlation = crate::audit::current_correlation_id();
            let id = correlation.as_deref().unwrap_or("-");
            if self.code == ErrorCode::InternalError {
                tracing::error!(correlation_id = id, error = %detail, "request failed");
            } else {
                tracing::warn!(correlation_id = id, code = self.code.as_str(), error = %detail, "request failed");
            }
            if let Some(id) = correlation {
                self.message = format!("{} (correlation id {id})", self.message);
            }
        }
        let body = json!({
            "errors": [{
                "code": self.code.as_str(),
                "message": &self.message,
                "detail": self.client_detail,
            }]
        });
        let mut response = (self.status, axum::Json(body)).into_response();
        response
            .extensions_mut()
            .insert(crate::audit::ErrorMessage(self.message));
        for (name, value) in self.headers {
            response.headers_mut().insert(name, value);
        }
        response
    }
}
