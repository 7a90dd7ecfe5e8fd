//! Signing in and out. A sign-in is checked as a Basic login is (the same
//! throttle, the same login event), then the browser holds a session
//! cookie; sign-out clears it.

use std::sync::Arc;

use axum::extract::{Query, Request, State};
use axum::response::{IntoResponse, Redirect, Response};
use axum::Extension;
use berth_api::AppState;
use http::{header, HeaderValue, StatusCode};
use maud::{html, Markup};
use serde::Deserialize;

use crate::context::{same_origin, Change};
use crate::layout::{self, Section};
use crate::session::Session;
use crate::Portal;

#[derive(Debug, Default, Deserialize)]
pub struct SignInQuery {
    #[serde(default)]
    next: String,
    #[serde(default)]
    expired: String,
}

#[derive(Debug, Default, Deserialize)]
pub struct SignInForm {
    #[serde(default)]
    login: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    next: String,
}

/// Only a path on this registry: never another site. Browsers drop tabs
/// and line breaks from URLs and read `\\` as `/`, so `/\t/evil.example`
/// would be `//evil.example`: any such character, and anything that is
/// not a plain path and query, sends the browser to the overview instead.
fn local_target(next: &str) -> &str {
    let plain = next.starts_with('/')
        && !next.starts_with("//")
        && !next.bytes().any(|b| b <= b' ' || b == b'\\' || b == 0x7f)
        && !next.to_ascii_lowercase().contains("%5c")
        && next.parse::<http::uri::PathAndQuery>().is_ok();
    if plain {
        next
    } else {
        "/"
    }
}

/// What a refused sign-in tells the browser: whether a login exists, is
/// disabled or has expired is for the login log (which has the reason),
/// not for anyone who types a name. A lock-out says how long it lasts.
fn refusal_message(e: &berth_api::ApiError) -> String {
    if e.status == StatusCode::TOO_MANY_REQUESTS {
        return e.message.clone();
    }
    if e.status.is_server_error() {
        return e.message.clone();
    }
    "the user name or the password is wrong, or this identity cannot sign in now; \
     an administrator finds the reason in the login log"
        .to_string()
}

fn sign_in_page(login: &str, next: &str, message: Option<Markup>) -> Markup {
    let body = html! {
        @if let Some(m) = message { (m) }
        form method="post" action="/login" class="signin" {
            input type="hidden" name="next" value=(next);
            p {
                label for="login" { "User name" }
                input type="text" id="login" name="login" value=(login) autocomplete="username" required autofocus;
            }
            p {
                label for="password" { "Password or secret" }
                input type="password" id="password" name="password" autocomplete="current-password" required;
            }
            p { button type="submit" { "Sign in" } }
        }
        p class="muted" {
            "Any berth identity can sign in: the owner, the admin user, a service principal "
            "(its application id and secret) or a token (its name and password). "
            "What you see and may change is what your roles allow in the management API."
        }
    };
    layout::page(None, Section::None, "Sign in to berth", body)
}

pub async fn form(Query(q): Query<SignInQuery>) -> Response {
    let message = (!q.expired.is_empty()).then(|| {
        html! { div class="notice warn" role="status" { "Your session ended; sign in again." } }
    });
    sign_in_page("", local_target(&q.next), message).into_response()
}

pub async fn sign_in(
    State(state): State<AppState>,
    Extension(portal): Extension<Arc<Portal>>,
    request: Request,
) -> Response {
    let (parts, body) = request.into_parts();
    let bytes = axum::body::to_bytes(body, 16 << 10)
        .await
        .unwrap_or_default();
    let form: SignInForm = serde_urlencoded::from_bytes(&bytes).unwrap_or_default();
    let next = local_target(&form.next).to_string();
    if !same_origin(&parts.headers) {
        let m = html! { div class="notice error" role="alert" { "This sign-in came from another site's page; it was refused." } };
        return (StatusCode::FORBIDDEN, sign_in_page("", &next, Some(m))).into_response();
    }
    // A refresh token or a federated token lasts minutes; a portal session
    // opened with one would outlive it. They are for clients, not people.
    if form.login == berth_auth::REFRESH_TOKEN_USER
        || form.login == berth_auth::federation::FEDERATED_USER
    {
        let m = html! { div class="notice error" role="alert" {
            "Tokens exchanged by clients (refresh and federated tokens) cannot sign in to the portal; use a password or a service principal's secret."
        } };
        return (StatusCode::UNAUTHORIZED, sign_in_page("", &next, Some(m))).into_response();
    }
    match berth_api::auth::sign_in(&state, &parts.extensions, &form.login, &form.password).await {
        Ok(principal) => {
            let Ok(session) = Session::new(&principal.id, portal.now(), principal.not_after) else {
                let m = html! { div class="notice error" role="alert" { "The server cannot open a session right now (its random source failed); try again." } };
                return (
                    StatusCode::SERVICE_UNAVAILABLE,
                    sign_in_page(&form.login, &next, Some(m)),
                )
                    .into_response();
            };
            let mut response = Redirect::to(&next).into_response();
            if let Ok(v) = HeaderValue::from_str(&portal.cookie(&portal.key.seal(&session))) {
                response.headers_mut().insert(header::SET_COOKIE, v);
            }
            response
        }
        Err(e) => {
            let status = e.status;
            let m = html! {
                div class="notice error" role="alert" {
                    p { strong { "Sign-in refused." } }
                    p class="message" { (refusal_message(&e)) }
                }
            };
            let mut response = (status, sign_in_page(&form.login, &next, Some(m))).into_response();
            response
                .extensions_mut()
                .insert(berth_api::audit::ErrorMessage(e.message.clone()));
            response
        }
    }
}

#[derive(Debug, Default, Deserialize)]
pub struct SignOutForm {}

pub async fn sign_out(Change(viewer, _): Change<SignOutForm>) -> Response {
    let mut response = Redirect::to("/login").into_response();
    if let Ok(v) = HeaderValue::from_str(&viewer.portal.expired_cookie()) {
        response.headers_mut().insert(header::SET_COOKIE, v);
    }
    response
}

#[cfg(test)]
mod tests {
    use super::local_target;

    #[test]
    fn sign_in_returns_only_to_a_plain_path_of_this_registry() {
        assert_eq!(local_target("/network?done=added"), "/network?done=added");
        assert_eq!(
            local_target("/manifest?repository=a%2Fb&reference=v1"),
            "/manifest?repository=a%2Fb&reference=v1"
        );
        for bad in [
            "https://evil.example/",
            "//evil.example",
            "/\\evil.example",
            "/\t/evil.example",
            "/\n/evil.example",
            "/%5C/evil.example",
            "/%5c/x",
            "",
            "evil",
            "/ /x",
        ] {
            assert_eq!(local_target(bad), "/", "{bad:?}");
        }
    }
}
