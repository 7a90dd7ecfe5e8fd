//! The one place where failures become HTTP responses: the distribution
//! spec's JSON error envelope with its codes and statuses.

use axum::response::{IntoResponse, Response};
use berth_registry::RegistryError;
use berth_types::{ErrorCode, NameError};
use http::{HeaderName, HeaderValue, StatusCode};
use serde_json::json;

#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: ErrorCode,
    pub message: String,
    /// Extra headers the spec wants on some errors (`Range` on a 416).
    pub headers: Vec<(HeaderName, HeaderValue)>,
}

impl ApiError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        ApiError {
            status: StatusCode::from_u16(code.status()).unwrap_or(StatusCode::BAD_REQUEST),
            code,
            message: message.into(),
            headers: Vec::new(),
        }
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
        let code = e.code();
        let status = StatusCode::from_u16(e.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        if code == ErrorCode::InternalError {
            // The details stay in the server log; clients get a stable message.
            tracing::error!(error = %e, "request failed");
        }
        ApiError {
            status,
            code,
            message: e.to_string(),
            headers: Vec::new(),
        }
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
    fn into_response(self) -> Response {
        let body = json!({
            "errors": [{
                "code": self.code.as_str(),
                "message": &self.message,
                "detail": null,
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
