//! What every page handler starts from: the signed-in identity
//! ([`Viewer`], an extractor that sends a browser without a live session to
//! the sign-in page), and for changes the form checked against the
//! session's CSRF token ([`Change`]).

use std::sync::Arc;

use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::response::{IntoResponse, Redirect, Response};
use berth_api::AppState;
use berth_auth::{Permission, Principal};
use berth_manage::{Access, Endpoint};
use http::{header, Extensions, HeaderMap, HeaderValue, StatusCode};
use maud::Markup;
use serde::de::DeserializeOwned;
use serde::Deserialize;

use crate::contract::{self, Refusal};
use crate::layout::{self, Section};
use crate::session::{self, Session};
use crate::Portal;

/// Largest form the portal accepts.
const FORM_LIMIT: usize = 64 << 10;

/// The signed-in identity and what a page needs to act for it.
pub struct Viewer {
    pub portal: Arc<Portal>,
    pub state: AppState,
    pub principal: Principal,
    session: Session,
    extensions: Extensions,
    /// The `Host` the browser used: the registry's name in copy commands.
    pub host: String,
}

impl Viewer {
    /// Calls the management API as this identity.
    pub async fn call<E: Endpoint>(&self, request: &E) -> Result<E::Response, Refusal> {
        contract::call(
            &self.portal.manage,
            &self.extensions,
            &self.principal,
            request,
        )
        .await
    }

    /// Whether the identity holds `access` at registry scope: decides
    /// which buttons a page shows (the API decides what they do).
    pub fn can(&self, access: Access) -> bool {
        let permission = match access {
            Access::ManageRead => Permission::ManageRead,
            Access::ManageWrite => Permission::ManageWrite,
            Access::AssignRoles => Permission::RoleAssignmentsWrite,
            Access::Delete => Permission::Delete,
        };
        self.principal.allows(permission, None)
    }

    /// The token every form of this session carries.
    pub fn csrf(&self) -> String {
        self.portal.key.csrf(&self.session)
    }

    /// The browser's address as the network rules see it.
    pub fn client_address(&self) -> std::net::IpAddr {
        berth_api::auth::address_of(&self.extensions)
    }

    /// The hidden CSRF field every form of this session carries.
    pub fn csrf_field(&self) -> Markup {
        layout::csrf_field(&self.csrf())
    }

    /// Who is signed in, as the activity log names them.
    pub fn who(&self) -> String {
        self.principal.describe()
    }

    /// A page: the layout around `body`, and the session cookie renewed
    /// (the idle timeout counts from this request).
    pub fn page(&self, section: Section, title: &str, body: Markup) -> Response {
        self.page_with_status(StatusCode::OK, section, title, body)
    }

    pub fn page_with_status(
        &self,
        status: StatusCode,
        section: Section,
        title: &str,
        body: Markup,
    ) -> Response {
        let (who, csrf) = (self.who(), self.csrf());
        let shell = layout::Shell {
            who: &who,
            csrf: &csrf,
        };
        let html = layout::page(Some(shell), section, title, body);
        let mut response = (status, html).into_response();
        self.renew(response.headers_mut());
        response
    }

    /// A refused call as a page: the status, the API's message (which names
    /// what is missing and how to get it) and the request's correlation id.
    pub fn refusal(&self, section: Section, refusal: &Refusal) -> Response {
        let body = layout::refusal(refusal);
        let mut response = self.page_with_status(refusal.status, section, "Refused", body);
        if refusal.status.is_server_error() {
            tracing::warn!(code = %refusal.code, message = %refusal.message, "portal call failed");
        }
        response
            .extensions_mut()
            .insert(berth_api::audit::ErrorMessage(refusal.message.clone()));
        response
    }

    /// After a change: back to `to` (post/redirect/get), session renewed.
    pub fn redirect(&self, to: &str) -> Response {
        let mut response = Redirect::to(to).into_response();
        self.renew(response.headers_mut());
        response
    }

    fn renew(&self, headers: &mut HeaderMap) {
        let mut session = self.session.clone();
        session.last_seen = self.portal.now();
        if let Ok(v) = HeaderValue::from_str(&self.portal.cookie(&self.portal.key.seal(&session))) {
            headers.append(header::SET_COOKIE, v);
        }
    }
}

/// The value of cookie `name` in the request's `Cookie` headers.
pub fn cookie<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

/// Where a browser without a session goes: the sign-in page, then back.
fn to_sign_in(portal: &Portal, parts: &Parts, reason: Option<&str>) -> Response {
    // A change cannot be replayed after sign-in (its form is gone): back to
    // the overview then.
    let next = match parts.method {
        http::Method::GET => parts
            .uri
            .path_and_query()
            .map(|p| p.as_str())
            .unwrap_or("/"),
        _ => "/",
    };
    let mut query = vec![("next", next)];
    if let Some(reason) = reason {
        query.push(("expired", reason));
    }
    let target = format!(
        "/login?{}",
        serde_urlencoded::to_string(&query).unwrap_or_default()
    );
    let mut response = Redirect::to(&target).into_response();
    if let Ok(v) = HeaderValue::from_str(&portal.expired_cookie()) {
        response.headers_mut().insert(header::SET_COOKIE, v);
    }
    response
}

impl FromRequestParts<AppState> for Viewer {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Response> {
        let Some(portal) = parts.extensions.get::<Arc<Portal>>().cloned() else {
            return Err(StatusCode::NOT_FOUND.into_response());
        };
        let Some(value) = cookie(&parts.headers, portal.cookie_name()) else {
            return Err(to_sign_in(&portal, parts, None));
        };
        let session = match portal.key.open(value, portal.now(), portal.lifetimes) {
            Ok(s) => s,
            Err(
                session::SessionError::Idle(_)
                | session::SessionError::Expired(_)
                | session::SessionError::CredentialExpired,
            ) => {
                return Err(to_sign_in(&portal, parts, Some("1")));
            }
            Err(_) => return Err(to_sign_in(&portal, parts, None)),
        };
        let principal = match state.auth.principal_by_id(&session.identity).await {
            Ok(p) => p,
            // Deleted or disabled since sign-in: the session is over.
            Err(e) if e.is_authentication_failure() => {
                return Err(to_sign_in(&portal, parts, None))
            }
            Err(e) => {
                // Also a 503 for a backend outage: the store is the only
                // thing an identity lookup can fail on.
                tracing::warn!(error = %e, "portal: cannot look up the signed-in identity");
                let api = berth_api::ApiError::from_auth(e);
                let refusal = Refusal {
                    status: api.status,
                    code: api.code.as_str().to_string(),
                    message: api.message,
                };
                let body = layout::page(
                    None,
                    Section::None,
                    "Unavailable",
                    layout::refusal(&refusal),
                );
                return Err((refusal.status, body).into_response());
            }
        };
        // The network guard let the request in for the credentials in its
        // headers, if any (a trusted service passes the rules); the portal
        // acts as the session's identity, so the rules decide again for it.
        let endpoint = parts
            .extensions
            .get::<berth_network::Endpoint>()
            .cloned()
            .unwrap_or(berth_network::Endpoint::Public);
        let ip = berth_api::auth::address_of(&parts.extensions);
        let decision = state
            .network
            .decide(&endpoint, ip, Some(principal.trusted_service));
        if !decision.allowed {
            let refusal = Refusal {
                status: StatusCode::FORBIDDEN,
                code: "DENIED".into(),
                message: decision.message(ip),
            };
            let body = layout::page(None, Section::None, "Refused", layout::refusal(&refusal));
            return Err((refusal.status, body).into_response());
        }
        if let Some(slot) = parts.extensions.get::<berth_api::audit::AuditSlot>() {
            let who = principal.describe();
            slot.update(|i| i.identity = Some(who));
        }
        let host = parts
            .headers
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .unwrap_or("localhost")
            .to_string();
        Ok(Viewer {
            portal,
            state: state.clone(),
            principal,
            session,
            extensions: parts.extensions.clone(),
            host,
        })
    }
}

#[derive(Deserialize)]
struct CsrfField {
    #[serde(default)]
    csrf: String,
}

/// A change posted from one of the portal's forms: the signed-in viewer
/// and the form, accepted only with this session's CSRF token and, when
/// the browser names the page's origin, only from this registry's pages.
pub struct Change<T>(pub Viewer, pub T);

impl<T: DeserializeOwned + Send> FromRequest<AppState> for Change<T> {
    type Rejection = Response;

    async fn from_request(request: Request, state: &AppState) -> Result<Self, Response> {
        let (mut parts, body) = request.into_parts();
        let viewer = Viewer::from_request_parts(&mut parts, state).await?;
        if !same_origin(&parts.headers) {
            return Err(forbidden(
                &viewer,
                "this change came from another site's page (its Origin is not this registry); it was not made",
            ));
        }
        let bytes = axum::body::to_bytes(body, FORM_LIMIT)
            .await
            .map_err(|_| forbidden(&viewer, "the form is too large"))?;
        let token: CsrfField = serde_urlencoded::from_bytes(&bytes).unwrap_or(CsrfField {
            csrf: String::new(),
        });
        if !viewer.portal.key.csrf_matches(&viewer.session, &token.csrf) {
            return Err(forbidden(
                &viewer,
                "the form's CSRF token is missing or belongs to another session; reload the page and try again",
            ));
        }
        let form: T = serde_urlencoded::from_bytes(&bytes).map_err(|e| {
            viewer.refusal(
                Section::None,
                &Refusal {
                    status: StatusCode::BAD_REQUEST,
                    code: "VALIDATION".into(),
                    message: format!("the form is not what this page sends: {e}"),
                },
            )
        })?;
        Ok(Change(viewer, form))
    }
}

fn forbidden(viewer: &Viewer, message: &str) -> Response {
    viewer.refusal(
        Section::None,
        &Refusal {
            status: StatusCode::FORBIDDEN,
            code: "DENIED".into(),
            message: message.into(),
        },
    )
}

/// A browser names the page a form was posted from in `Origin`; it must be
/// this registry: the scheme berth serves and the `Host` the request went
/// to (a default port written or not). Without `Origin` (old browsers,
/// scripts) the CSRF token alone decides.
pub fn same_origin(headers: &HeaderMap) -> bool {
    let Some(origin) = headers.get(header::ORIGIN).and_then(|o| o.to_str().ok()) else {
        return true;
    };
    let Some(host) = headers.get(header::HOST).and_then(|h| h.to_str().ok()) else {
        return false;
    };
    let scheme = berth_api::scheme();
    let Some(origin_host) = origin.strip_prefix(&format!("{scheme}://")) else {
        return false;
    };
    let default_port = if scheme == "https" { ":443" } else { ":80" };
    let normal = |h: &str| {
        h.strip_suffix(default_port)
            .unwrap_or(h)
            .to_ascii_lowercase()
    };
    normal(origin_host) == normal(host)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(origin: Option<&str>, host: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::HOST, host.parse().expect("host"));
        if let Some(o) = origin {
            h.insert(header::ORIGIN, o.parse().expect("origin"));
        }
        h
    }

    #[test]
    fn only_this_registrys_own_pages_may_post() {
        // The tests' process serves plain HTTP (berth_api::set_tls unset).
        assert!(same_origin(&headers(
            Some("http://r.test:5000"),
            "r.test:5000"
        )));
        assert!(same_origin(&headers(Some("http://R.test"), "r.test:80")));
        assert!(same_origin(&headers(
            Some("http://[::1]:5000"),
            "[::1]:5000"
        )));
        assert!(same_origin(&headers(None, "r.test:5000")));
        assert!(!same_origin(&headers(
            Some("https://r.test:5000"),
            "r.test:5000"
        )));
        assert!(!same_origin(&headers(Some("http://evil.test"), "r.test")));
        assert!(!same_origin(&headers(Some("null"), "r.test")));
        assert!(!same_origin(&headers(
            Some("http://r.test:5000.evil"),
            "r.test:5000"
        )));
    }
}
