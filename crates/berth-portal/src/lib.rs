//! The portal: server-rendered pages under `/` on the registry's own
//! listeners, behind the same layers as the API (audit, network rules).
//!
//! ```text
//! browser → audit → network guard → portal route
//!   → Viewer (session cookie → the identity as it is now)   context.rs
//!   → Change<Form> for a change (CSRF token, Origin)        context.rs
//!   → contract::call::<E>(..) as that identity              contract.rs
//!        → the management handler and its permission check (berth-api)
//!   → HTML (maud), session cookie renewed                    layout.rs, pages/
//! ```
//!
//! Nothing is fetched at runtime: the stylesheet and the one small script
//! are compiled in (`assets.rs`). Every page reads with JavaScript off;
//! the script only adds copy buttons and confirmations.

use std::sync::Arc;

use axum::extract::Request;
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::{get, post};
use axum::{Extension, Router};
use berth_api::AppState;
use http::{header, HeaderValue};

mod assets;
pub mod context;
pub mod contract;
pub mod layout;
mod pages;
pub mod session;

pub use session::Lifetimes;

/// What configuration decides about the portal.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PortalSettings {
    pub lifetimes: Lifetimes,
    /// The listeners speak TLS: the cookie is `Secure`.
    pub secure_cookie: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum PortalError {
    #[error("cannot set up the portal's session key: {0}")]
    Key(#[from] berth_api::app::AssemblyError),
}

/// The portal's own state beside the application's.
pub struct Portal {
    key: session::SessionKey,
    pub lifetimes: Lifetimes,
    secure_cookie: bool,
    /// The management routes the pages call, with the application's state.
    manage: Router,
    /// Unix seconds; tests move it.
    clock: Box<dyn Fn() -> i64 + Send + Sync>,
}

impl Portal {
    /// The portal for `state`: its session key is a shared setting, made
    /// by the first node that starts.
    pub async fn open(state: &AppState, settings: PortalSettings) -> Result<Portal, PortalError> {
        let key = berth_api::app::shared_key(&state.auth, "portalSessionKey", "portal session key")
            .await?;
        Ok(Portal {
            key: session::SessionKey::new(key.as_bytes()),
            lifetimes: settings.lifetimes,
            secure_cookie: settings.secure_cookie,
            manage: berth_api::manage::router().with_state(state.clone()),
            clock: Box::new(berth_util::now),
        })
    }

    /// The same portal reading time from `clock` (tests).
    pub fn with_clock(mut self, clock: impl Fn() -> i64 + Send + Sync + 'static) -> Portal {
        self.clock = Box::new(clock);
        self
    }

    pub fn now(&self) -> i64 {
        (self.clock)()
    }

    /// A `Set-Cookie` value carrying `value` as the session. The browser
    /// keeps it for the session's longest life; the server ends it sooner
    /// when idle, and can then say so on the sign-in page.
    fn cookie(&self, value: &str) -> String {
        let secure = if self.secure_cookie { "; Secure" } else { "" };
        format!(
            "{}={value}; Path=/; HttpOnly; SameSite=Strict; Max-Age={}{secure}",
            self.cookie_name(),
            self.lifetimes.longest.as_secs()
        )
    }

    /// The session cookie's name (`__Host-` prefixed over HTTPS).
    fn cookie_name(&self) -> &'static str {
        if self.secure_cookie {
            session::SECURE_COOKIE
        } else {
            session::COOKIE
        }
    }

    /// A `Set-Cookie` value that clears the session cookie.
    fn expired_cookie(&self) -> String {
        let secure = if self.secure_cookie { "; Secure" } else { "" };
        format!(
            "{}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0{secure}",
            self.cookie_name()
        )
    }

    /// The routes to merge into the application (`berth_api::router_with`).
    pub fn routes(self) -> Router<AppState> {
        pages::routes()
            .route(assets::CSS_PATH, get(assets::css))
            .route(assets::JS_PATH, get(assets::js))
            .route(
                "/login",
                get(pages::signin::form).post(pages::signin::sign_in),
            )
            .route("/logout", post(pages::signin::sign_out))
            .layer(middleware::from_fn(security_headers))
            .layer(Extension(Arc::new(self)))
    }
}

/// Pages are never cached, never framed, and run only the portal's own
/// script and style.
async fn security_headers(request: Request, next: Next) -> Response {
    let is_asset = request.uri().path().starts_with("/-/");
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
             form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        ),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    if !is_asset {
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    response
}
