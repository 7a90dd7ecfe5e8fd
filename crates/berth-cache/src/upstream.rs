//! Requests to upstream registries with the Docker token flow: the first
//! `401` names a token service (or asks for Basic credentials); the token
//! it hands out, anonymous or for the source's credential set, is kept
//! until shortly before it expires, so a login is not repeated per request.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use berth_client::challenge::{self, Challenge};
use http::{header, Method, StatusCode};
use serde::Serialize;

use crate::route::{Login, Source};

/// How long a connection attempt may take before the upstream counts as
/// unreachable.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long an upstream may send nothing (headers or body bytes).
const READ_TIMEOUT: Duration = Duration::from_secs(30);
/// A token without `expires_in` is good for this long (the spec's default).
const DEFAULT_TOKEN_LIFETIME: Duration = Duration::from_secs(60);

/// Why an upstream did not serve a request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "cause", rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Failure {
    /// `404`: the upstream does not have it.
    NotFound,
    /// `429`, with the upstream's `Retry-After` if it sent one.
    #[serde(rename_all = "camelCase")]
    RateLimited { retry_after: Option<String> },
    /// The upstream refused the credential set (or, without one, wants
    /// credentials): `401`/`403` after the token flow.
    #[serde(rename_all = "camelCase")]
    CredentialsRejected {
        status: u16,
        credential_set: Option<String>,
    },
    /// Refused connection, unknown host, TLS failure or timeout.
    Unreachable { reason: String },
    /// `5xx` or another status the cache cannot use.
    UpstreamError { status: u16 },
    /// The upstream sent content that is not what was asked for.
    Invalid { reason: String },
}

impl Failure {
    /// The label of `berth_cache_upstream_errors_total`.
    pub fn status_label(&self) -> String {
        match self {
            Failure::NotFound => "404".into(),
            Failure::RateLimited { .. } => "429".into(),
            Failure::CredentialsRejected { status, .. } | Failure::UpstreamError { status } => {
                status.to_string()
            }
            Failure::Unreachable { .. } => "unreachable".into(),
            Failure::Invalid { .. } => "invalid".into(),
        }
    }

    pub fn describe(&self) -> String {
        match self {
            Failure::NotFound => "404: not there".into(),
            Failure::RateLimited {
                retry_after: Some(after),
            } => format!("429: rate limited, retry after {after} s"),
            Failure::RateLimited { retry_after: None } => "429: rate limited".into(),
            Failure::CredentialsRejected {
                status,
                credential_set: Some(set),
            } => format!("{status}: refused credential set '{set}'"),
            Failure::CredentialsRejected {
                status,
                credential_set: None,
            } => format!(
                "{status}: wants credentials (the rule gives this upstream no credential set)"
            ),
            Failure::Unreachable { reason } => format!("unreachable: {reason}"),
            Failure::UpstreamError { status } => format!("answered {status}"),
            Failure::Invalid { reason } => format!("sent invalid content: {reason}"),
        }
    }

    /// Failures after which a cached copy is served instead (every one:
    /// a cache exists to outlive its upstream).
    fn from_status(status: StatusCode, response: &reqwest::Response, source: &Source) -> Failure {
        match status.as_u16() {
            404 => Failure::NotFound,
            429 => Failure::RateLimited {
                retry_after: response
                    .headers()
                    .get(header::RETRY_AFTER)
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_string),
            },
            401 | 403 => Failure::CredentialsRejected {
                status: status.as_u16(),
                credential_set: source.login.as_ref().map(|l| l.credential_set.clone()),
            },
            s => Failure::UpstreamError { status: s },
        }
    }
}

fn unreachable(e: &reqwest::Error) -> Failure {
    let mut reason = if e.is_timeout() {
        "timed out".to_string()
    } else if e.is_connect() {
        "cannot connect".to_string()
    } else {
        "the connection failed".to_string()
    };
    // The innermost cause says which (connection refused, DNS, TLS).
    let mut source = std::error::Error::source(e);
    let mut last = None;
    while let Some(s) = source {
        last = Some(s.to_string());
        source = s.source();
    }
    if let Some(last) = last {
        reason = format!("{reason} ({last})");
    }
    Failure::Unreachable { reason }
}

#[derive(Clone, Hash, PartialEq, Eq)]
struct TokenKey {
    base: String,
    repository: String,
    /// The credential set and its user name (the password is not kept in
    /// the key: a changed password shows as a refusal, which drops the
    /// token).
    login: Option<(String, String)>,
}

impl TokenKey {
    fn of(source: &Source) -> TokenKey {
        TokenKey {
            base: source.base.clone(),
            repository: source.repository.clone(),
            login: source
                .login
                .as_ref()
                .map(|l| (l.credential_set.clone(), l.username.clone())),
        }
    }
}

/// The `Authorization` value that worked for a source, until `until`.
#[derive(Clone)]
struct Grant {
    authorization: String,
    until: Instant,
}

pub struct UpstreamClient {
    http: reqwest::Client,
    grants: Mutex<HashMap<TokenKey, Grant>>,
    /// Token requests made (a test checks logins are not repeated).
    logins: std::sync::atomic::AtomicU64,
}

fn basic(login: &Login) -> String {
    use base64::Engine as _;
    let raw = format!("{}:{}", login.username, login.password);
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(raw)
    )
}

impl UpstreamClient {
    pub fn new() -> Result<UpstreamClient, String> {
        let tls = berth_client::tls::client_config(&berth_client::tls::ca_files(None))
            .map_err(|e| e.to_string())?;
        let http = reqwest::Client::builder()
            .use_preconfigured_tls(tls)
            .connect_timeout(CONNECT_TIMEOUT)
            .read_timeout(READ_TIMEOUT)
            .user_agent(concat!("berth-cache/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| e.to_string())?;
        Ok(UpstreamClient {
            http,
            grants: Mutex::new(HashMap::new()),
            logins: std::sync::atomic::AtomicU64::new(0),
        })
    }

    pub fn logins(&self) -> u64 {
        self.logins.load(std::sync::atomic::Ordering::Relaxed)
    }

    fn grant(&self, key: &TokenKey) -> Option<String> {
        let grants = self.grants.lock().unwrap_or_else(|p| p.into_inner());
        grants
            .get(key)
            .filter(|g| g.until > Instant::now())
            .map(|g| g.authorization.clone())
    }

    fn remember(&self, key: TokenKey, authorization: String, lifetime: Duration) {
        // Renewed a little early, so a token never lapses mid-request.
        let until = Instant::now() + lifetime.mul_f32(0.9);
        let mut grants = self.grants.lock().unwrap_or_else(|p| p.into_inner());
        grants.insert(
            key,
            Grant {
                authorization,
                until,
            },
        );
    }

    fn forget(&self, key: &TokenKey) {
        let mut grants = self.grants.lock().unwrap_or_else(|p| p.into_inner());
        grants.remove(key);
    }

    async fn send_once(
        &self,
        method: &Method,
        url: &str,
        accept: Option<&str>,
        authorization: Option<&str>,
    ) -> Result<reqwest::Response, Failure> {
        let mut request = self.http.request(method.clone(), url);
        if let Some(accept) = accept {
            request = request.header(header::ACCEPT, accept);
        }
        if let Some(authorization) = authorization {
            request = request.header(header::AUTHORIZATION, authorization);
        }
        request.send().await.map_err(|e| unreachable(&e))
    }

    /// `GET realm?service=..&scope=repository:<repo>:pull`, as the source's
    /// login or anonymously.
    async fn token(
        &self,
        source: &Source,
        realm: &str,
        service: Option<&str>,
    ) -> Result<(String, Duration), Failure> {
        self.logins
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let scope = format!("repository:{}:pull", source.repository);
        let mut query = vec![("scope", scope.as_str())];
        if let Some(service) = service {
            query.push(("service", service));
        }
        let mut request = self.http.get(realm).query(&query);
        if let Some(login) = &source.login {
            request = request.header(header::AUTHORIZATION, basic(login));
        }
        let response = request.send().await.map_err(|e| unreachable(&e))?;
        let status = response.status();
        if !status.is_success() {
            return Err(Failure::from_status(status, &response, source));
        }
        #[derive(serde::Deserialize)]
        struct TokenResponse {
            token: Option<String>,
            access_token: Option<String>,
            expires_in: Option<u64>,
        }
        let body: TokenResponse = response.json().await.map_err(|e| Failure::Invalid {
            reason: format!(
                "the token service at {realm} answered something else than a token: {e}"
            ),
        })?;
        let Some(token) = body.token.or(body.access_token) else {
            return Err(Failure::Invalid {
                reason: format!("the token service at {realm} sent no token"),
            });
        };
        let lifetime = body
            .expires_in
            .map(Duration::from_secs)
            .unwrap_or(DEFAULT_TOKEN_LIFETIME);
        Ok((format!("Bearer {token}"), lifetime))
    }

    /// Sends `method path` to the source (`path` below
    /// `/v2/<repository>/`), going through the token flow on a `401`.
    /// Answers with any status but `401`/`403` are the caller's to read.
    pub async fn send(
        &self,
        source: &Source,
        method: Method,
        path: &str,
        accept: Option<&str>,
    ) -> Result<reqwest::Response, Failure> {
        let url = format!("{}/v2/{}/{path}", source.base, source.repository);
        let key = TokenKey::of(source);
        let cached = self.grant(&key);
        let response = self
            .send_once(&method, &url, accept, cached.as_deref())
            .await?;
        let status = response.status();
        if status != StatusCode::UNAUTHORIZED {
            if status == StatusCode::FORBIDDEN {
                self.forget(&key);
                return Err(Failure::from_status(status, &response, source));
            }
            return Ok(response);
        }
        // No grant, or one that no longer works: (re)negotiate once.
        self.forget(&key);
        let challenge = response
            .headers()
            .get(header::WWW_AUTHENTICATE)
            .and_then(|v| v.to_str().ok())
            .and_then(challenge::parse);
        let (authorization, lifetime) = match challenge {
            Some(Challenge::Bearer { realm, service, .. }) => {
                self.token(source, &realm, service.as_deref()).await?
            }
            Some(Challenge::Basic) => match &source.login {
                Some(login) => (basic(login), Duration::from_secs(3600)),
                None => return Err(Failure::from_status(status, &response, source)),
            },
            None => return Err(Failure::from_status(status, &response, source)),
        };
        let response = self
            .send_once(&method, &url, accept, Some(&authorization))
            .await?;
        let status = response.status();
        if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN {
            return Err(Failure::from_status(status, &response, source));
        }
        self.remember(key, authorization, lifetime);
        Ok(response)
    }

    /// [`UpstreamClient::send`], with every status but `2xx` a failure.
    pub async fn fetch(
        &self,
        source: &Source,
        method: Method,
        path: &str,
        accept: Option<&str>,
    ) -> Result<reqwest::Response, Failure> {
        let response = self.send(source, method, path, accept).await?;
        let status = response.status();
        if status.is_success() {
            Ok(response)
        } else {
            Err(Failure::from_status(status, &response, source))
        }
    }
}
