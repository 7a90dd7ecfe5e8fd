//! The management API (`/api/v1/...`): JSON over HTTP on the same
//! listener, authorized by the same identities and roles. Every endpoint is
//! a request type of the contract (`berth_manage`); this module serves
//! each through that type, so the server parses exactly what the CLI and
//! the tests send:
//!
//! ```text
//! request → audit → network → auth layers → permission extractor
//!   (access.rs: authenticates, checks ManageRead/ManageWrite/...)
//!   → Contract<E> (query or JSON body, path parameter) → handler
//!   → E::Response as JSON, or ManageError (error.rs) in the envelope
//! ```
//!
//! Handlers live by job: `identities.rs` (settings, owner, admin user,
//! service principals), `tokens.rs` (scope maps, tokens), `roles.rs`,
//! `repositories.rs` (repositories, GC), `network.rs` (rules, endpoints,
//! explain), `logs.rs` (activity, login and repository events).

use std::future::Future;

use axum::extract::{FromRequest, FromRequestParts, Path, Request, State};
use axum::response::{IntoResponse, Response};
use axum::routing::MethodFilter;
use axum::{Json, Router};
use berth_manage::{Access, Endpoint, EndpointInfo, Verb};
use http::StatusCode;

use crate::AppState;

mod access;
mod cache;
mod error;
mod identities;
mod logs;
mod network;
mod repositories;
mod roles;
mod tokens;

pub use access::{
    AssignRoles, DeleteContent, ManageRead, ManageWrite, Manager, Permit, SessionCaller,
};
pub use error::ManageError;

/// Largest management request body.
const BODY_LIMIT: usize = 1 << 20;

/// A contract request, parsed from the query string (`GET`, `DELETE`) or
/// the JSON body (`POST`, `PATCH`), with its path parameter filled in.
pub struct Contract<E>(pub E);

impl<E: Endpoint> FromRequest<AppState> for Contract<E> {
    type Rejection = ManageError;

    async fn from_request(request: Request, state: &AppState) -> Result<Self, ManageError> {
        let (mut parts, body) = request.into_parts();
        let param = if E::PATH.contains('{') {
            let Path(value) = Path::<String>::from_request_parts(&mut parts, state)
                .await
                .map_err(|e| ManageError::validation(e.body_text()))?;
            Some(value)
        } else {
            None
        };
        let mut value: E = if E::VERB.fields_in_query() {
            serde_urlencoded::from_str(parts.uri.query().unwrap_or(""))
                .map_err(|e| ManageError::validation(format!("query: {e}")))?
        } else {
            let bytes = axum::body::to_bytes(body, BODY_LIMIT)
                .await
                .map_err(|e| ManageError::validation(format!("body: {e}")))?;
            let bytes: &[u8] = if bytes.iter().all(u8::is_ascii_whitespace) {
                b"{}"
            } else {
                &bytes
            };
            serde_json::from_slice(bytes)
                .map_err(|e| ManageError::validation(format!("body: {e}")))?
        };
        if let Some(param) = param {
            value.set_path_param(param);
        }
        Ok(Contract(value))
    }
}

fn reply<E: Endpoint>(result: Result<E::Response, ManageError>) -> Response {
    match result {
        Ok(_) if E::STATUS == 204 => StatusCode::NO_CONTENT.into_response(),
        Ok(body) => (
            StatusCode::from_u16(E::STATUS).unwrap_or(StatusCode::OK),
            Json(body),
        )
            .into_response(),
        Err(e) => e.into_response(),
    }
}

/// What the server serves: an endpoint and the permission its handler's
/// extractor checks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Served {
    pub endpoint: EndpointInfo,
    pub checks: Access,
}

/// The route table under construction.
struct Routes {
    router: Router<AppState>,
    served: Vec<Served>,
}

impl Routes {
    /// Serves endpoint `E` with `handler`, whose signature names the
    /// request type and the permission it needs.
    fn serve<E, P, H, F>(mut self, handler: H) -> Self
    where
        E: Endpoint,
        P: Permit + FromRequestParts<AppState, Rejection = ManageError>,
        H: Fn(AppState, P, E) -> F + Clone + Send + Sync + 'static,
        F: Future<Output = Result<E::Response, ManageError>> + Send + 'static,
    {
        let route =
            move |State(state): State<AppState>, permit: P, Contract(request): Contract<E>| {
                let handler = handler.clone();
                async move { reply::<E>(handler(state, permit, request).await) }
            };
        let method = match E::VERB {
            Verb::Get => MethodFilter::GET,
            Verb::Post => MethodFilter::POST,
            Verb::Patch => MethodFilter::PATCH,
            Verb::Delete => MethodFilter::DELETE,
        };
        self.router = self.router.route(E::PATH, axum::routing::on(method, route));
        self.served.push(Served {
            endpoint: EndpointInfo::of::<E>(),
            checks: P::ACCESS,
        });
        self
    }
}

fn routes() -> Routes {
    let routes = Routes {
        router: Router::new(),
        served: Vec::new(),
    };
    let routes = identities::routes(routes);
    let routes = cache::routes(routes);
    let routes = tokens::routes(routes);
    let routes = roles::routes(routes);
    let routes = repositories::routes(routes);
    let routes = network::routes(routes);
    logs::routes(routes)
}

pub fn router() -> Router<AppState> {
    routes().router
}

/// Every endpoint the router serves, for checking against the contract.
pub fn served() -> Vec<Served> {
    routes().served
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_server_serves_exactly_the_contract_with_the_declared_permissions() {
        let mut served: Vec<EndpointInfo> = Vec::new();
        for s in super::served() {
            assert_eq!(
                format!("{:?}", s.checks),
                s.endpoint.access,
                "{} {} checks a different permission than the contract declares",
                s.endpoint.verb,
                s.endpoint.path
            );
            served.push(s.endpoint);
        }
        let mut contract = berth_manage::all();
        served.sort();
        contract.sort();
        assert_eq!(served, contract);
    }
}
