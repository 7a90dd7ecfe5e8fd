//! The portal reads and changes through the management contract, as the
//! CLI does, but in-process: each call is a request to the management
//! router carrying the signed-in identity as a [`SessionCaller`]. The
//! handler and its permission check are the same ones a Basic or bearer
//! caller meets, so a page can never do more than the API would let the
//! same identity do.

use axum::body::Body;
use axum::Router;
use berth_api::manage::SessionCaller;
use berth_auth::Principal;
use berth_manage::{path_of, Endpoint, ErrorBody, Verb};
use http::{Extensions, Method, Request, StatusCode};
use tower::ServiceExt as _;

/// Largest management answer the portal reads.
const ANSWER_LIMIT: usize = 64 << 20;

/// The management API refused a call, or answered outside its contract.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub status: StatusCode,
    /// The contract's error code (`DENIED`, `CONFLICT`, ...).
    pub code: String,
    pub message: String,
}

impl Refusal {
    fn internal(message: impl Into<String>) -> Refusal {
        Refusal {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            code: "INTERNAL_ERROR".into(),
            message: message.into(),
        }
    }
}

/// Sends `request` to the management router as `principal`, with the
/// page request's extensions (client address, endpoint, audit slot).
pub async fn call<E: Endpoint>(
    manage: &Router,
    extensions: &Extensions,
    principal: &Principal,
    request: &E,
) -> Result<E::Response, Refusal> {
    let mut uri = path_of(request);
    let (method, body) = match E::VERB {
        Verb::Get | Verb::Delete => {
            let query = serde_urlencoded::to_string(request)
                .map_err(|e| Refusal::internal(format!("cannot encode the request: {e}")))?;
            if !query.is_empty() {
                uri.push('?');
                uri.push_str(&query);
            }
            let method = if E::VERB == Verb::Get {
                Method::GET
            } else {
                Method::DELETE
            };
            (method, Body::empty())
        }
        Verb::Post | Verb::Patch => {
            let json = serde_json::to_vec(request)
                .map_err(|e| Refusal::internal(format!("cannot encode the request: {e}")))?;
            let method = if E::VERB == Verb::Post {
                Method::POST
            } else {
                Method::PATCH
            };
            (method, Body::from(json))
        }
    };
    let mut inner = Request::builder()
        .method(method)
        .uri(&uri)
        .header(http::header::CONTENT_TYPE, "application/json")
        .body(body)
        .map_err(|e| Refusal::internal(format!("cannot build the request: {e}")))?;
    *inner.extensions_mut() = extensions.clone();
    inner
        .extensions_mut()
        .insert(SessionCaller(principal.clone()));
    let response = match manage.clone().oneshot(inner).await {
        Ok(r) => r,
        Err(never) => match never {},
    };
    let status = response.status();
    let bytes = axum::body::to_bytes(response.into_body(), ANSWER_LIMIT)
        .await
        .map_err(|e| Refusal::internal(format!("cannot read the answer: {e}")))?;
    if status.is_success() {
        let bytes: &[u8] = if bytes.iter().all(u8::is_ascii_whitespace) {
            b"null"
        } else {
            &bytes
        };
        return serde_json::from_slice(bytes)
            .map_err(|e| Refusal::internal(format!("{uri} answered outside its contract: {e}")));
    }
    match serde_json::from_slice::<ErrorBody>(&bytes) {
        Ok(ErrorBody { errors }) if !errors.is_empty() => Err(Refusal {
            status,
            code: errors[0].code.clone(),
            message: errors[0].message.clone(),
        }),
        _ => Err(Refusal {
            status,
            code: String::new(),
            message: String::from_utf8_lossy(&bytes).trim().to_string(),
        }),
    }
}
