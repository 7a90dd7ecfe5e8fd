//! The stylesheet and the script, compiled into the binary: the portal
//! fetches nothing from anywhere else.

use axum::response::{IntoResponse, Response};
use http::header;

pub const CSS_PATH: &str = "/-/portal.css";
pub const JS_PATH: &str = "/-/portal.js";

const CSS: &str = include_str!("../assets/portal.css");
const JS: &str = include_str!("../assets/portal.js");

fn asset(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "public, max-age=300"),
        ],
        body,
    )
        .into_response()
}

pub async fn css() -> Response {
    asset("text/css; charset=utf-8", CSS)
}

pub async fn js() -> Response {
    asset("text/javascript; charset=utf-8", JS)
}
