//! berth's HTTP surface. Every `/v2/` request flows through the same
//! pipeline:
//!
//! 1. `route` parses the path once into a [`Route`] (repository, endpoint,
//!    action) and attaches it to the request;
//! 2. the access gate ([`AccessGate`]) decides on the route — this is where
//!    network policy and authentication plug in;
//! 3. `distribution::handle` serves it through the registry layer;
//! 4. any failure becomes the spec's error envelope in `error.rs`.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use berth_registry::Registry;
use http::{HeaderValue, Method};
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::set_header::SetResponseHeaderLayer;
use tower_http::trace::TraceLayer;

pub mod distribution;
pub mod error;
pub mod route;

pub use error::ApiError;
pub use route::{Action, Endpoint, Route};

/// Decides whether a routed request may proceed. Until identities and
/// network rules exist the registry runs open ([`OpenAccess`]).
pub trait AccessGate: Send + Sync + 'static {
    fn check(&self, route: &Route, request: &Request) -> Result<(), ApiError>;
}

/// Lets every request through.
pub struct OpenAccess;

impl AccessGate for OpenAccess {
    fn check(&self, _route: &Route, _request: &Request) -> Result<(), ApiError> {
        Ok(())
    }
}

#[derive(Clone)]
pub struct AppState {
    pub registry: Arc<Registry>,
    pub access: Arc<dyn AccessGate>,
}

/// The complete HTTP application.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(ready))
        .fallback(distribution::handle)
        .layer(middleware::from_fn_with_state(state.clone(), access))
        .layer(middleware::from_fn(route))
        .with_state(state)
        .layer(SetResponseHeaderLayer::overriding(
            http::header::HeaderName::from_static("docker-distribution-api-version"),
            HeaderValue::from_static("registry/2.0"),
        ))
        .layer(TraceLayer::new_for_http())
        .layer(CatchPanicLayer::new())
}

async fn ready(State(state): State<AppState>) -> Response {
    match state.registry.catalog(1, None).await {
        Ok(_) => "ready".into_response(),
        Err(e) => ApiError::from(e).into_response(),
    }
}

/// Step 1: parse a `/v2` path into a [`Route`]; other paths (health,
/// metrics) pass untouched.
async fn route(mut request: Request, next: Next) -> Response {
    let path = request.uri().path();
    if path != "/v2" && !path.starts_with("/v2/") {
        return next.run(request).await;
    }
    match route::parse(request.method(), path) {
        Ok(r) => {
            request.extensions_mut().insert(r);
            next.run(request).await
        }
        Err(e) if request.method() == Method::HEAD => {
            let mut r = e.into_response();
            *r.body_mut() = axum::body::Body::empty();
            r
        }
        Err(e) => e.into_response(),
    }
}

/// Step 2: the access decision.
async fn access(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let Some(route) = request.extensions().get::<Route>().cloned() else {
        return next.run(request).await;
    };
    match state.access.check(&route, &request) {
        Ok(()) => next.run(request).await,
        Err(e) => e.into_response(),
    }
}
