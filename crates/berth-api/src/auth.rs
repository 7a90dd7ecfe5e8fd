//! Who is calling, and may they: the `Authorization` header becomes a
//! [`Principal`] (Basic credentials, a bearer token, or anonymous), the
//! route's action is checked against it, and failures get the answers the
//! spec and the product contract promise — `401` with a Bearer challenge for
//! missing or bad credentials (with the reason), `403 DENIED` naming the
//! identity, action and repository for a permission the caller lacks, `429`
//! after repeated failed logins for one name from one address. Also the token service endpoints.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use axum::extract::{ConnectInfo, Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use base64::Engine;
use berth_auth::{AuthError, Permission, Principal, RequestedScope};
use berth_types::ErrorCode;
use http::{header, HeaderMap, StatusCode};

use crate::audit::AuditSlot;
use crate::error::ApiError;
use crate::route::{Action, Endpoint, Route};
use crate::AppState;

/// The caller's address, as the network layer established it (socket
/// peer, or X-Forwarded-For from a trusted proxy).
pub fn client_ip(request: &Request) -> IpAddr {
    address_of(request.extensions())
}

/// The client's address as the network rules see it.
pub fn address_of(extensions: &http::Extensions) -> IpAddr {
    if let Some(a) = extensions.get::<crate::network::ClientAddress>() {
        return a.0;
    }
    extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip())
        .unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED))
}

/// The login server as the client addressed it.
fn login_server(headers: &HeaderMap) -> String {
    headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .filter(|h| {
            h.chars()
                .all(|c| c.is_ascii_alphanumeric() || ".:-[]".contains(c))
        })
        .unwrap_or("localhost")
        .to_string()
}

fn challenge(headers: &HeaderMap, scope: Option<String>, insufficient: bool) -> String {
    let host = login_server(headers);
    let scheme = crate::scheme();
    let mut c = format!("Bearer realm=\"{scheme}://{host}/oauth2/token\",service=\"{host}\"");
    if let Some(scope) = scope {
        c.push_str(&format!(",scope=\"{scope}\""));
    }
    if insufficient {
        c.push_str(",error=\"insufficient_scope\"");
    }
    c
}

/// The plain Bearer challenge for this request's host.
pub fn bearer_challenge(headers: &HeaderMap) -> String {
    challenge(headers, None, false)
}

fn unauthorized(headers: &HeaderMap, message: String, scope: Option<String>) -> ApiError {
    ApiError::new(ErrorCode::Unauthorized, message)
        .with_header("www-authenticate", &challenge(headers, scope, false))
}

fn from_auth_error(e: AuthError, headers: &HeaderMap) -> ApiError {
    match e {
        AuthError::Throttled { retry_after, .. } => {
            ApiError::new(ErrorCode::TooManyRequests, e.to_string())
                .with_header("retry-after", &retry_after.to_string())
        }
        e if e.is_authentication_failure() => unauthorized(headers, e.to_string(), None),
        AuthError::InvalidRequest(m) => {
            ApiError::new(ErrorCode::Unsupported, m).with_status(StatusCode::BAD_REQUEST)
        }
        AuthError::NotFound(m) => ApiError::new(ErrorCode::NameUnknown, format!("{m} not found")),
        AuthError::Conflict(m) => {
            ApiError::new(ErrorCode::Denied, m).with_status(StatusCode::CONFLICT)
        }
        AuthError::Store(e) => ApiError::store(e),
        other => ApiError::internal(other),
    }
}

impl ApiError {
    pub fn from_auth(e: AuthError) -> ApiError {
        from_auth_error(e, &HeaderMap::new())
    }
}

/// The caller, as established from the request.
#[derive(Debug, Clone)]
pub struct Caller {
    pub principal: Principal,
    /// For bearer tokens: what was refused at issue time.
    pub token: Option<berth_auth::TokenPrincipal>,
}

fn basic_credentials(value: &str) -> Result<(String, String), AuthError> {
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(value.trim())
        .map_err(|_| {
            AuthError::MalformedAuthorization("Basic credentials are not valid base64".into())
        })?;
    let text = String::from_utf8(decoded)
        .map_err(|_| AuthError::MalformedAuthorization("Basic credentials are not UTF-8".into()))?;
    let (user, pass) = text.split_once(':').ok_or_else(|| {
        AuthError::MalformedAuthorization("Basic credentials must be 'user:password'".into())
    })?;
    Ok((user.to_string(), pass.to_string()))
}

/// The name a login event records for presented credentials: the user, or
/// for a federated token the issuer and subject it claims.
fn login_name(user: &str, secret: &str) -> String {
    if user == berth_auth::federation::FEDERATED_USER {
        berth_auth::federation::claimed_identity(secret)
    } else {
        user.to_string()
    }
}

/// Notes in the audit slot that credentials were presented (a login event).
fn record_login(slot: Option<&AuditSlot>, who: &str, jwt_id: Option<String>) {
    if let Some(slot) = slot {
        slot.update(|i| {
            i.login_attempt = true;
            i.identity = Some(who.to_string());
            i.jwt_id = jwt_id;
        });
    }
}

/// Establishes the caller from the `Authorization` header.
pub async fn identify(
    state: &AppState,
    headers: &HeaderMap,
    extensions: &http::Extensions,
) -> Result<Caller, ApiError> {
    let ip = address_of(extensions);
    let slot = extensions.get::<AuditSlot>();
    // No throttle check here: only credential checks are throttled, per
    // (address, name), inside `authenticate` — anonymous requests and
    // bearer tokens never wait for someone else's failed logins.
    let auth = &state.auth;
    let Some(value) = headers.get(header::AUTHORIZATION) else {
        return Ok(Caller {
            principal: auth.anonymous(),
            token: None,
        });
    };
    let value = value.to_str().map_err(|_| {
        from_auth_error(
            AuthError::MalformedAuthorization("the header is not ASCII".into()),
            headers,
        )
    })?;
    let (scheme, rest) = value.split_once(' ').unwrap_or((value, ""));
    let result = match scheme.to_ascii_lowercase().as_str() {
        "basic" => match basic_credentials(rest) {
            // `Basic Og==` (":"): what some clients send when they have no
            // credentials. It is an anonymous request, not a failed login.
            Ok((user, pass)) if user.is_empty() && pass.is_empty() => Ok(Caller {
                principal: auth.anonymous(),
                token: None,
            }),
            Ok((user, pass)) => {
                record_login(slot, &login_name(&user, &pass), None);
                auth.authenticate(&user, &pass, ip)
                    .await
                    .map(|principal| Caller {
                        principal,
                        token: None,
                    })
            }
            Err(e) => {
                record_login(slot, "(malformed)", None);
                Err(e)
            }
        },
        "bearer" => auth.principal_from_token(rest.trim()).map(|t| Caller {
            principal: t.principal.clone(),
            token: Some(t),
        }),
        _ => Err(AuthError::MalformedAuthorization(format!(
            "scheme '{}' is not supported; use Basic or Bearer",
            scheme.chars().take(20).collect::<String>()
        ))),
    };
    if let (Ok(caller), Some(slot)) = (&result, slot) {
        let jwt_id = caller.token.as_ref().map(|t| t.jwt_id.clone());
        let who = caller.principal.describe();
        slot.update(|i| {
            i.identity = Some(who);
            i.jwt_id = jwt_id;
            i.login_succeeded = true;
        });
    }
    result.map_err(|e| {
        // Bad tokens and malformed headers are not counted towards the
        // throttle: checking them costs no argon2 run and guessing a
        // signature is hopeless. They are still login attempts for audit.
        if matches!(
            e,
            AuthError::InvalidToken(_) | AuthError::MalformedAuthorization(_)
        ) {
            if let Some(slot) = slot {
                slot.update(|i| i.login_attempt = true);
            }
        }
        from_auth_error(e, headers)
    })
}

/// Checks a login and secret typed into a form (the portal's sign-in)
/// exactly as Basic credentials are checked: throttled per address and
/// name, and recorded as a login event of this request.
pub async fn sign_in(
    state: &AppState,
    extensions: &http::Extensions,
    login: &str,
    secret: &str,
) -> Result<Principal, ApiError> {
    let slot = extensions.get::<AuditSlot>();
    record_login(slot, &login_name(login, secret), None);
    match state
        .auth
        .authenticate(login, secret, address_of(extensions))
        .await
    {
        Ok(principal) => {
            if let Some(slot) = slot {
                let who = principal.describe();
                slot.update(|i| {
                    i.identity = Some(who);
                    i.login_succeeded = true;
                });
            }
            Ok(principal)
        }
        Err(e) => Err(from_auth_error(e, &HeaderMap::new())),
    }
}

/// The permission a distribution route needs, and on which repository.
fn needed(route: &Route) -> Option<(Permission, Option<&str>)> {
    let repo = route.repository.as_ref().map(|r| r.as_str());
    match route.action {
        Action::Ping => None,
        Action::Catalog => Some((Permission::CatalogRead, None)),
        Action::Pull => Some((Permission::Pull, repo)),
        Action::Push => Some((Permission::Push, repo)),
        Action::Delete => Some((Permission::Delete, repo)),
    }
}

fn docker_scope(route: &Route) -> Option<String> {
    let repo = route.repository.as_ref()?;
    let actions = match route.action {
        Action::Push => "pull,push",
        Action::Delete => "delete",
        _ => "pull",
    };
    Some(format!("repository:{repo}:{actions}"))
}

/// Whether `caller` may do what `route` does; the error is the answer.
pub fn authorize(caller: &Caller, route: &Route, headers: &HeaderMap) -> Result<(), ApiError> {
    let principal = &caller.principal;
    let Some((permission, repo)) = needed(route) else {
        // `/v2/` proves credentials: anonymous callers get the challenge,
        // but an anonymous *token* (issued because anonymous pull is on) is
        // what the challenge asked for, and passes.
        return if principal.is_anonymous() && caller.token.is_none() {
            Err(unauthorized(
                headers,
                "authentication required: log in, or request a token from the realm in WWW-Authenticate".into(),
                None,
            ))
        } else {
            Ok(())
        };
    };
    let allowed = principal.allows(permission, repo)
        // Listing tags is reading metadata: either grant does.
        || (route.endpoint == Endpoint::Tags && principal.allows(Permission::MetadataRead, repo));
    if allowed {
        return Ok(());
    }
    let target = match repo {
        Some(r) => format!("repository '{r}'"),
        None => "this registry".to_string(),
    };
    if principal.is_anonymous() {
        let reason = if permission == Permission::Pull {
            "anonymous pull is disabled on this registry; log in with an identity that has pull access"
        } else {
            "anonymous clients may only pull; log in"
        };
        return Err(unauthorized(
            headers,
            format!(
                "authentication required to {} {target}: {reason}",
                permission.verb()
            ),
            docker_scope(route),
        ));
    }
    // A token that was never asked for this action: challenge for a wider
    // token rather than deny (Docker token flow).
    if let Some(token) = &caller.token {
        if !token.was_refused(permission, repo) && permission != Permission::CatalogRead {
            return Err(ApiError::new(
                ErrorCode::Unauthorized,
                format!(
                    "the access token does not cover the action '{}' on {target}",
                    permission.as_str()
                ),
            )
            .with_header(
                "www-authenticate",
                &challenge(headers, docker_scope(route), true),
            ));
        }
    }
    Err(ApiError::new(
        ErrorCode::Denied,
        format!(
            "{} is not allowed to {} {target}: it needs a role with '{}' on it (for example {})",
            principal.describe(),
            permission.verb(),
            permission.as_str(),
            match permission {
                Permission::Pull => "AcrPull",
                Permission::Push => "AcrPush",
                Permission::Delete => "AcrDelete",
                Permission::CatalogRead => "Reader",
                _ => "Contributor",
            }
        ),
    ))
}

/// A `403 DENIED` with what the registry knows beyond "it lacks a role":
/// a token's scope map, or the assignments a re-created service principal
/// left on its old app id. Only authenticated callers get here.
async fn explain_denial(state: &AppState, caller: &Caller, route: &Route, e: ApiError) -> ApiError {
    if e.code != ErrorCode::Denied {
        return e;
    }
    let Some((permission, repo)) = needed(route) else {
        return e;
    };
    match state
        .auth
        .explain_denial(&caller.principal, permission, repo)
        .await
    {
        Ok(Some(message)) => ApiError::new(ErrorCode::Denied, message),
        Ok(None) => e,
        Err(err) => {
            tracing::warn!(error = %err, "explaining a denial failed; the plain answer goes out");
            e
        }
    }
}

/// The `/v2` access layer.
pub async fn access(State(state): State<AppState>, mut request: Request, next: Next) -> Response {
    let Some(route) = request.extensions().get::<Route>().cloned() else {
        return next.run(request).await;
    };
    let caller = match identify(&state, request.headers(), request.extensions()).await {
        Ok(c) => c,
        Err(e) => return e.into_response(),
    };
    if let Err(e) = authorize(&caller, &route, request.headers()) {
        return explain_denial(&state, &caller, &route, e)
            .await
            .into_response();
    }
    if matches!(route.action, Action::Push | Action::Delete) {
        if let Some(repo) = &route.repository {
            if let Some(rule) = state.auth.cache_rule_for(repo.as_str()) {
                return refuse_cache_writes(&rule, repo).into_response();
            }
        }
    }
    request.extensions_mut().insert(caller);
    next.run(request).await
}

/// Pushes and deletes in a cached repository are refused: its content is
/// the upstream's.
fn refuse_cache_writes(
    rule: &berth_manage::cache::CacheRule,
    repository: &berth_types::RepositoryName,
) -> ApiError {
    let upstreams = rule
        .upstreams
        .iter()
        .map(|u| u.source.as_str())
        .collect::<Vec<_>>()
        .join(", ");
    ApiError::new(
        ErrorCode::Denied,
        format!(
            "repository '{repository}' is a read-only cache of {upstreams} (cache rule '{}'): push to a repository no cache rule targets, or change the rule (berth cache-rule show --name {})",
            rule.name, rule.name
        ),
    )
}

/// For token requests that only a trusted service may make (see
/// `network::BypassPending`): refuse everyone else with the network denial.
fn check_bypass(extensions: &http::Extensions, principal: &Principal) -> Result<(), ApiError> {
    match extensions.get::<crate::network::BypassPending>() {
        Some(pending) if !principal.trusted_service => {
            if let Some(slot) = extensions.get::<AuditSlot>() {
                slot.update(|i| i.network_denied = true);
            }
            Err(ApiError::new(ErrorCode::Denied, pending.0.clone()))
        }
        _ => Ok(()),
    }
}

fn scopes_of(pairs: &[(String, String)]) -> Result<Vec<RequestedScope>, AuthError> {
    pairs
        .iter()
        .filter(|(k, _)| k == "scope")
        .flat_map(|(_, v)| {
            v.split(' ')
                .filter(|s| !s.is_empty())
                .map(str::to_string)
                .collect::<Vec<_>>()
        })
        .map(|s| RequestedScope::parse(&s))
        .collect()
}

fn param<'a>(pairs: &'a [(String, String)], key: &str) -> Option<&'a str> {
    pairs
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
}

fn token_response(response: &berth_auth::TokenResponse) -> Response {
    let mut r = axum::Json(response).into_response();
    r.headers_mut().insert(
        header::CACHE_CONTROL,
        http::HeaderValue::from_static("no-store"),
    );
    r
}

/// `GET /oauth2/token`: Docker token spec. Basic credentials of any
/// identity, or none for anonymous.
pub async fn get_token(
    State(state): State<AppState>,
    request: Request,
) -> Result<Response, ApiError> {
    let headers = request.headers().clone();
    let pairs: Vec<(String, String)> =
        serde_urlencoded::from_str(request.uri().query().unwrap_or("")).map_err(|e| {
            ApiError::new(ErrorCode::Unsupported, format!("malformed query: {e}"))
                .with_status(StatusCode::BAD_REQUEST)
        })?;
    let scopes = scopes_of(&pairs).map_err(|e| from_auth_error(e, &headers))?;
    let caller = identify(&state, &headers, request.extensions()).await?;
    check_bypass(request.extensions(), &caller.principal)?;
    if caller.token.is_some() {
        return Err(unauthorized(
            &headers,
            "present credentials (Basic), not a token, to obtain a token".into(),
            None,
        ));
    }
    if caller.principal.is_anonymous() && !state.auth.anonymous_pull_enabled() {
        return Err(unauthorized(
            &headers,
            "anonymous access is disabled on this registry: log in with credentials (no credentials were sent)".into(),
            None,
        ));
    }
    let service = param(&pairs, "service")
        .map(str::to_string)
        .unwrap_or_else(|| login_server(&headers));
    let offline = param(&pairs, "offline_token") == Some("true");
    let response = state
        .auth
        .issue(&caller.principal, &service, &scopes, offline)
        .map_err(|e| from_auth_error(e, &headers))?;
    Ok(token_response(&response))
}

type Form = (HeaderMap, http::Extensions, Vec<(String, String)>);

async fn form(request: Request) -> Result<Form, ApiError> {
    let extensions = request.extensions().clone();
    let headers = request.headers().clone();
    let body = http_body_util::BodyExt::collect(http_body_util::Limited::new(
        request.into_body(),
        64 * 1024,
    ))
    .await
    .map_err(|_| {
        ApiError::new(
            ErrorCode::Unsupported,
            "the form body is unreadable or over 64 KiB",
        )
        .with_status(StatusCode::BAD_REQUEST)
    })?
    .to_bytes();
    let pairs: Vec<(String, String)> = serde_urlencoded::from_bytes(&body).map_err(|e| {
        ApiError::new(ErrorCode::Unsupported, format!("malformed form body: {e}"))
            .with_status(StatusCode::BAD_REQUEST)
    })?;
    Ok((headers, extensions, pairs))
}

/// Signs in from form fields, or from a Basic header if there are none.
async fn form_principal(
    state: &AppState,
    headers: &HeaderMap,
    extensions: &http::Extensions,
    pairs: &[(String, String)],
) -> Result<Principal, ApiError> {
    let ip = address_of(extensions);
    let slot = extensions.get::<AuditSlot>();
    match param(pairs, "grant_type") {
        Some("password") => {
            let user = param(pairs, "username").unwrap_or("");
            let pass = param(pairs, "password").unwrap_or("");
            record_login(slot, &login_name(user, pass), None);
            let principal = state
                .auth
                .authenticate(user, pass, ip)
                .await
                .map_err(|e| from_auth_error(e, headers))?;
            record_login(slot, &principal.describe(), None);
            Ok(principal)
        }
        Some("refresh_token") => {
            let token = param(pairs, "refresh_token").unwrap_or("");
            state
                .auth
                .principal_from_refresh(token, ip)
                .await
                .map_err(|e| from_auth_error(e, headers))
        }
        Some(TOKEN_EXCHANGE) => {
            // RFC 8693: an issuer's JWT (a Kubernetes service-account
            // token) for the service principal federated with it.
            match param(pairs, "subject_token_type") {
                Some(JWT_TOKEN_TYPE) | Some(ID_TOKEN_TYPE) | None => {}
                Some(other) => {
                    return Err(ApiError::new(
                        ErrorCode::Unsupported,
                        format!("subject_token_type '{other}' is not supported; use {JWT_TOKEN_TYPE}"),
                    )
                    .with_status(StatusCode::BAD_REQUEST))
                }
            }
            let token = param(pairs, "subject_token").unwrap_or("");
            if token.is_empty() {
                return Err(ApiError::new(
                    ErrorCode::Unsupported,
                    "subject_token is required: the issuer's JWT (a service-account token)",
                )
                .with_status(StatusCode::BAD_REQUEST));
            }
            record_login(slot, &berth_auth::federation::claimed_identity(token), None);
            let principal = state
                .auth
                .authenticate(berth_auth::federation::FEDERATED_USER, token, ip)
                .await
                .map_err(|e| from_auth_error(e, headers))?;
            record_login(slot, &principal.describe(), None);
            Ok(principal)
        }
        Some(other) => Err(ApiError::new(
            ErrorCode::Unsupported,
            format!("grant_type '{other}' is not supported; use 'password', 'refresh_token' or '{TOKEN_EXCHANGE}'"),
        )
        .with_status(StatusCode::BAD_REQUEST)),
        None => {
            let caller = identify(state, headers, extensions).await?;
            if caller.principal.is_anonymous() {
                return Err(unauthorized(headers, "grant_type is required".into(), None));
            }
            Ok(caller.principal)
        }
    }
}

/// RFC 8693's grant type, and the subject token types it accepts.
const TOKEN_EXCHANGE: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
const JWT_TOKEN_TYPE: &str = "urn:ietf:params:oauth:token-type:jwt";
const ID_TOKEN_TYPE: &str = "urn:ietf:params:oauth:token-type:id_token";

/// `POST /oauth2/token`: OAuth2 password, refresh-token and token-exchange
/// grants.
pub async fn post_token(
    State(state): State<AppState>,
    request: Request,
) -> Result<Response, ApiError> {
    let (headers, extensions, pairs) = form(request).await?;
    let scopes = scopes_of(&pairs).map_err(|e| from_auth_error(e, &headers))?;
    let principal = form_principal(&state, &headers, &extensions, &pairs).await?;
    check_bypass(&extensions, &principal)?;
    let service = param(&pairs, "service")
        .map(str::to_string)
        .unwrap_or_else(|| login_server(&headers));
    let with_refresh = matches!(
        param(&pairs, "grant_type"),
        Some("password") | Some(TOKEN_EXCHANGE)
    ) || param(&pairs, "access_type") == Some("offline");
    let mut response = state
        .auth
        .issue(&principal, &service, &scopes, with_refresh)
        .map_err(|e| from_auth_error(e, &headers))?;
    if param(&pairs, "grant_type") == Some("refresh_token") {
        response.refresh_token = param(&pairs, "refresh_token").map(str::to_string);
    }
    if param(&pairs, "grant_type") == Some(TOKEN_EXCHANGE) {
        response.issued_token_type = Some("urn:ietf:params:oauth:token-type:access_token".into());
        response.token_type = Some("Bearer".into());
    }
    Ok(token_response(&response))
}

/// `POST /oauth2/exchange`: credentials (or a refresh token) for a refresh
/// token, usable as a password under the all-zero user name.
pub async fn exchange(
    State(state): State<AppState>,
    request: Request,
) -> Result<Response, ApiError> {
    let (headers, extensions, pairs) = form(request).await?;
    let principal = form_principal(&state, &headers, &extensions, &pairs).await?;
    check_bypass(&extensions, &principal)?;
    let service = param(&pairs, "service")
        .map(str::to_string)
        .unwrap_or_else(|| login_server(&headers));
    let refresh = state
        .auth
        .issue_refresh(&principal, &service)
        .map_err(|e| from_auth_error(e, &headers))?;
    let mut body = HashMap::new();
    body.insert("refresh_token", refresh);
    Ok(axum::Json(body).into_response())
}
