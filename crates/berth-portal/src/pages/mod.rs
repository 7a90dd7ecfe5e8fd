//! The pages, one file per part of the navigation. Each page reads
//! through the management contract as the signed-in identity; each change
//! is a form posted with the session's CSRF token, made through the
//! contract, then a redirect back (post/redirect/get).

use axum::routing::{get, post};
use axum::Router;
use berth_api::AppState;

pub mod access;
pub mod explain;
pub mod logs;
pub mod network;
pub mod overview;
pub mod repositories;
pub mod settings;
pub mod signin;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/", get(overview::page))
        .route("/repositories", get(repositories::list))
        .route("/repository", get(repositories::repository))
        .route("/manifest", get(repositories::manifest))
        .route("/network", get(network::page))
        .route("/network/rules/add", post(network::add_rule))
        .route("/network/rules/remove", post(network::remove_rule))
        .route("/network/settings", post(network::update))
        .route("/access", get(access::page))
        .route(
            "/access/service-principals",
            post(access::create_service_principal),
        )
        .route(
            "/access/role-assignments/delete",
            post(access::delete_assignment),
        )
        .route("/logs", get(logs::page))
        .route("/explain", get(explain::page))
        .route("/settings", get(settings::page))
}
