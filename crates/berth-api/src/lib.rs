//! berth's HTTP surface. Every `/v2/` request flows through the same
//! pipeline:
//!
//! 1. `route` parses the path once into a [`Route`] (repository, endpoint,
//!    action) and attaches it to the request;
//! 2. `auth::access` establishes the caller (Basic, bearer token or
//!    anonymous) and checks the route's action against its grants — network
//!    policy plugs in as a layer in front of it;
//! 3. `distribution::handle` serves it through the registry layer;
//! 4. any failure becomes the spec's error envelope in `error.rs`.
//!
//! Beside `/v2` the same listener serves the token service (`/oauth2/...`),
//! the management API (`/api/v1/...`) and health checks.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use berth_auth::AuthService;
use berth_registry::Registry;
use http::{HeaderValue, Method};
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::set_header::SetResponseHeaderLayer;
use tower_http::trace::TraceLayer;

pub mod access_log;
pub mod app;
pub mod audit;
pub mod auth;
pub mod cache;
pub mod data;
pub mod distribution;
pub mod error;
pub mod manage;
pub mod network;
pub mod route;

pub use error::ApiError;
pub use route::{Action, Endpoint, Route};

static SCHEME: std::sync::OnceLock<&'static str> = std::sync::OnceLock::new();

/// Records that every listener speaks HTTPS, for the URLs berth hands out
/// (token realm, data-endpoint redirects). Process-wide: all listeners
/// share one TLS configuration.
pub fn set_tls(enabled: bool) {
    let _ = SCHEME.set(if enabled { "https" } else { "http" });
}

/// `http` or `https`.
pub fn scheme() -> &'static str {
    SCHEME.get().copied().unwrap_or("http")
}

/// What every handler and middleware layer works with: one `Arc`, so the
/// per-request clones the layers make cost one reference count, not one
/// per service.
#[derive(Clone)]
pub struct AppState(Arc<SharedState>);

impl AppState {
    pub fn new(shared: SharedState) -> AppState {
        AppState(Arc::new(shared))
    }
}

impl std::ops::Deref for AppState {
    type Target = SharedState;

    fn deref(&self) -> &SharedState {
        &self.0
    }
}

/// The services behind [`AppState`].
pub struct SharedState {
    pub registry: Arc<Registry>,
    /// Pull-through for the repositories cache rules target.
    pub cache: berth_cache::PullThrough,
    pub auth: Arc<AuthService>,
    /// An upload body that sends nothing for this long is cut off.
    pub body_idle_timeout: std::time::Duration,
    pub network: Arc<network::NetworkPolicy>,
    /// Listeners and data hosts, for `berth show-endpoints`.
    pub endpoints: Arc<berth_manage::registry::Endpoints>,
    pub events: audit::EventSink,
    pub event_store: Arc<dyn berth_metadata::EventStore>,
    pub data: Arc<data::DataEndpoints>,
    /// Renders `/metrics`.
    pub metrics: Option<metrics_exporter_prometheus::PrometheusHandle>,
    /// One JSON line per request, when configured.
    pub access_log: Option<access_log::AccessLog>,
}

/// The complete HTTP application. Serve it with
/// `into_make_service_with_connect_info::<SocketAddr>()` (access decisions
/// need the client's address), with an `Extension(berth_network::Endpoint)`
/// layer saying which endpoint the listener is (public by default).
pub fn router(state: AppState) -> Router {
    router_with(state, Router::new())
}

/// [`router`] with more routes (the portal's) served behind the same
/// layers: audit, network rules, data hosts.
pub fn router_with(state: AppState, more: Router<AppState>) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(ready))
        .route("/metrics", get(render_metrics))
        .route("/oauth2/token", get(auth::get_token).post(auth::post_token))
        .route("/oauth2/exchange", post(auth::exchange))
        .merge(manage::router())
        .merge(more)
        .fallback(distribution::handle)
        .layer(middleware::from_fn_with_state(state.clone(), auth::access))
        .layer(middleware::from_fn(route))
        .layer(middleware::from_fn_with_state(state.clone(), data::serve))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            network::guard,
        ))
        .layer(middleware::from_fn_with_state(state.clone(), audit::record))
        .with_state(state)
        .layer(SetResponseHeaderLayer::overriding(
            http::header::HeaderName::from_static("docker-distribution-api-version"),
            HeaderValue::from_static("registry/2.0"),
        ))
        .layer(TraceLayer::new_for_http())
        .layer(CatchPanicLayer::new())
}

async fn render_metrics(State(state): State<AppState>) -> Response {
    match &state.metrics {
        Some(handle) => (
            [(http::header::CONTENT_TYPE, "text/plain; version=0.0.4")],
            handle.render(),
        )
            .into_response(),
        None => http::StatusCode::NOT_FOUND.into_response(),
    }
}

/// `/readyz`: 200 while the metadata database and the blob store both
/// answer, else 503 naming the one that does not (probes are cached for a
/// second). The causes go to the log, not to the anonymous caller.
async fn ready(State(state): State<AppState>) -> Response {
    let health = state.registry.health().await;
    let backends: serde_json::Map<String, serde_json::Value> = health
        .backends
        .iter()
        .map(|b| {
            let key = match b.backend {
                berth_types::Backend::Metadata => "metadata",
                berth_types::Backend::Blobs => "blobs",
            };
            let state = if b.error.is_none() {
                "ok"
            } else {
                "unavailable"
            };
            (key.to_string(), serde_json::Value::from(state))
        })
        .collect();
    let failing: Vec<&str> = health
        .backends
        .iter()
        .filter(|b| b.error.is_some())
        .map(|b| b.backend.describe())
        .collect();
    if failing.is_empty() {
        return axum::Json(serde_json::json!({"status": "ready", "backends": backends}))
            .into_response();
    }
    let body = serde_json::json!({
        "status": "unavailable",
        "backends": backends,
        "message": format!("not answering: {}", failing.join(", ")),
    });
    (
        http::StatusCode::SERVICE_UNAVAILABLE,
        [(
            http::header::RETRY_AFTER,
            HeaderValue::from(error::RETRY_AFTER_SECONDS),
        )],
        axum::Json(body),
    )
        .into_response()
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
            request.extensions_mut().insert(r.clone());
            let mut response = next.run(request).await;
            // For the audit layer, which sees only the response.
            response.extensions_mut().insert(r);
            response
        }
        Err(e) if request.method() == Method::HEAD => {
            let mut r = e.into_response();
            *r.body_mut() = axum::body::Body::empty();
            r
        }
        Err(e) => e.into_response(),
    }
}
