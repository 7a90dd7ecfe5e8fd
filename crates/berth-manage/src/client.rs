//! The typed client: sends a contract request, returns its response type.
//! The CLI, the diagnostics and the tests talk to the management API
//! through it, so they send exactly what the server parses.

use crate::{path_of, Endpoint, ErrorBody, Verb};

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("cannot reach the registry at {base}: {source}")]
    Connect {
        base: String,
        #[source]
        source: reqwest::Error,
    },
    /// The server refused the request; `code` is its error code.
    #[error("{}: {code}: {message}", status_line(*status))]
    Refused {
        status: u16,
        code: String,
        message: String,
    },
    #[error(
        "the registry answered {verb} {path} with something that is not its contract ({detail})"
    )]
    Unexpected {
        verb: &'static str,
        path: String,
        detail: String,
    },
}

/// `409 Conflict`.
fn status_line(status: u16) -> String {
    let reason = reqwest::StatusCode::from_u16(status)
        .ok()
        .and_then(|s| s.canonical_reason())
        .unwrap_or("");
    format!("{status} {reason}").trim_end().to_string()
}

impl ClientError {
    /// The HTTP status, when the server answered.
    pub fn status(&self) -> Option<u16> {
        match self {
            ClientError::Refused { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// The server's error code (`IDENTITY_NOT_FOUND`, ...), when it sent one.
    pub fn code(&self) -> Option<&str> {
        match self {
            ClientError::Refused { code, .. } => Some(code),
            _ => None,
        }
    }
}

/// A connection to one registry's management API.
#[derive(Debug, Clone)]
pub struct ManageClient {
    base: String,
    http: reqwest::Client,
    credentials: Option<(String, String)>,
}

impl ManageClient {
    /// `base` is the registry's URL (`http://127.0.0.1:5000`); credentials
    /// go as Basic auth.
    pub fn new(
        base: &str,
        http: reqwest::Client,
        credentials: Option<(String, String)>,
    ) -> ManageClient {
        ManageClient {
            base: base.trim_end_matches('/').to_string(),
            http,
            credentials,
        }
    }

    pub fn base(&self) -> &str {
        &self.base
    }

    pub fn has_credentials(&self) -> bool {
        self.credentials.is_some()
    }

    /// Sends `request` and decodes its response.
    pub async fn send<E: Endpoint>(&self, request: &E) -> Result<E::Response, ClientError> {
        let path = path_of(request);
        let url = format!("{}{path}", self.base);
        let method = match E::VERB {
            Verb::Get => reqwest::Method::GET,
            Verb::Post => reqwest::Method::POST,
            Verb::Patch => reqwest::Method::PATCH,
            Verb::Delete => reqwest::Method::DELETE,
        };
        let mut builder = self.http.request(method, &url);
        if let Some((user, password)) = &self.credentials {
            builder = builder.basic_auth(user, Some(password));
        }
        builder = if E::VERB.fields_in_query() {
            builder.query(request)
        } else {
            builder.json(request)
        };
        let response = builder
            .send()
            .await
            .map_err(|source| ClientError::Connect {
                base: self.base.clone(),
                source,
            })?;
        let status = response.status().as_u16();
        let body = response
            .bytes()
            .await
            .map_err(|source| ClientError::Connect {
                base: self.base.clone(),
                source,
            })?;
        let unexpected = |detail: String| ClientError::Unexpected {
            verb: E::VERB.as_str(),
            path: path.clone(),
            detail,
        };
        if (200..300).contains(&status) {
            let body: &[u8] = if body.iter().all(u8::is_ascii_whitespace) {
                b"null"
            } else {
                &body
            };
            return serde_json::from_slice(body).map_err(|e| unexpected(e.to_string()));
        }
        match serde_json::from_slice::<ErrorBody>(&body) {
            Ok(ErrorBody { errors }) if !errors.is_empty() => Err(ClientError::Refused {
                status,
                code: errors[0].code.clone(),
                message: errors[0].message.clone(),
            }),
            _ => Err(ClientError::Refused {
                status,
                code: String::new(),
                message: String::from_utf8_lossy(&body).trim().to_string(),
            }),
        }
    }
}
