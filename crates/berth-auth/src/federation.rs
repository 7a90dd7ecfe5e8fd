//! Federated credentials: tokens an outside issuer signed (a Kubernetes
//! service account's projected token, any OIDC issuer's JWT) stand for a
//! service principal that trusts that issuer for the token's subject and
//! audience.
//!
//! Keys come from OIDC discovery (`<issuer>/.well-known/openid-configuration`
//! → `jwks_uri`, what a Kubernetes API server serves) or from a JWKS stored
//! with the credential. Fetched keys are cached per issuer; a token naming
//! an unknown `kid` refetches them, at most once per refresh interval, so a
//! stream of made-up `kid`s cannot make the registry fetch per request. An
//! issuer that cannot be reached is served from the cache when it has one.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use base64::Engine;
use jsonwebtoken::jwk::{Jwk, JwkSet};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;

use berth_metadata::FederatedCredentialRecord;
use berth_util::{now, rfc3339};

/// The user name under which an issuer's token is presented as a password
/// (Basic, `grant_type=password`).
pub const FEDERATED_USER: &str = "federated";

/// Clock skew tolerated on `exp`, `nbf` and `iat`.
const SKEW_SECS: i64 = 60;
/// How long fetched keys are used before they are fetched again.
const KEYS_MAX_AGE: Duration = Duration::from_secs(3600);
/// Answers larger than this from an issuer are refused.
const MAX_DOCUMENT: usize = 256 * 1024;

/// Why an issuer's token was refused; every message names the cause.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FederationError {
    #[error("the federated token is not a JWT: {0}")]
    Malformed(String),
    #[error("the federated token's issuer '{0}' is not trusted: no service principal has a federated credential for it")]
    IssuerNotTrusted(String),
    /// The subjects that are federated are not listed: a token holder
    /// learns only that this one is not.
    #[error("subject '{subject}' is not federated: no federated credential for issuer '{issuer}' names it")]
    SubjectNotFederated { issuer: String, subject: String },
    #[error("audience mismatch: the federated token is for {got}, but federated credential '{name}' requires audience '{want}'")]
    AudienceMismatch {
        name: String,
        got: String,
        want: String,
    },
    #[error("the federated token expired at {0}")]
    Expired(String),
    #[error("the federated token is not valid yet: not before {0}")]
    NotYetValid(String),
    #[error("the federated token's signing key '{kid}' is not among issuer '{issuer}''s keys (unknown key)")]
    UnknownKey { issuer: String, kid: String },
    #[error(
        "the federated token's signature does not verify with issuer '{issuer}''s key '{kid}'"
    )]
    BadSignature { issuer: String, kid: String },
    #[error("the federated token is signed with {0}, which is not accepted (RS256, RS384, RS512, ES256, ES384, PS256)")]
    Algorithm(String),
    #[error("issuer '{issuer}' is unreachable: its keys could not be fetched ({reason})")]
    IssuerUnreachable { issuer: String, reason: String },
    #[error("federated credential '{name}': {reason}")]
    BadCredential { name: String, reason: String },
}

/// What a verified token says about who sent it (for the login event).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FederatedSubject {
    pub credential: String,
    pub identity_id: String,
    pub issuer: String,
    pub subject: String,
    /// When the token (and so everything issued for it) stops being valid.
    pub expires_at: i64,
    /// `kubernetes.io` claims, when the issuer is a cluster.
    pub namespace: Option<String>,
    pub service_account: Option<String>,
    pub pod: Option<String>,
}

impl FederatedSubject {
    /// For the login event and messages.
    pub fn describe(&self) -> String {
        let mut s = format!(
            "federated credential '{}' (issuer {}, subject {}",
            self.credential, self.issuer, self.subject
        );
        if let Some(pod) = &self.pod {
            s.push_str(&format!(", pod {pod}"));
        }
        s.push(')');
        s
    }
}

#[derive(Debug, Deserialize)]
struct UnverifiedClaims {
    #[serde(default)]
    iss: String,
    #[serde(default)]
    sub: String,
    #[serde(default)]
    aud: Audience,
    exp: Option<i64>,
    nbf: Option<i64>,
    iat: Option<i64>,
    #[serde(default, rename = "kubernetes.io")]
    kubernetes: Option<serde_json::Value>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(untagged)]
enum Audience {
    One(String),
    Many(Vec<String>),
    #[default]
    None,
}

impl Audience {
    fn contains(&self, want: &str) -> bool {
        match self {
            Audience::One(a) => a == want,
            Audience::Many(all) => all.iter().any(|a| a == want),
            Audience::None => false,
        }
    }

    fn describe(&self) -> String {
        match self {
            Audience::One(a) => format!("audience '{a}'"),
            Audience::Many(all) if !all.is_empty() => format!("audiences {}", all.join(", ")),
            _ => "no audience".into(),
        }
    }
}

struct CachedKeys {
    keys: JwkSet,
    fetched: Instant,
}

/// Fetched issuer keys and when each issuer was last asked.
pub struct KeyCache {
    refresh_interval: Duration,
    timeout: Duration,
    entries: Mutex<HashMap<String, CachedKeys>>,
    /// When each issuer was last fetched (successfully or not).
    attempts: Mutex<HashMap<String, Instant>>,
    fetches: std::sync::atomic::AtomicU64,
}

impl KeyCache {
    pub fn new(refresh_interval: Duration, timeout: Duration) -> KeyCache {
        KeyCache {
            refresh_interval,
            timeout,
            entries: Mutex::new(HashMap::new()),
            attempts: Mutex::new(HashMap::new()),
            fetches: std::sync::atomic::AtomicU64::new(0),
        }
    }

    /// Fetches from issuers so far (for tests and metrics).
    pub fn fetches(&self) -> u64 {
        self.fetches.load(std::sync::atomic::Ordering::Relaxed)
    }

    fn cached(&self, key: &str) -> Option<(JwkSet, Instant)> {
        let map = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        map.get(key).map(|c| (c.keys.clone(), c.fetched))
    }

    /// May this issuer be asked again now?
    fn may_fetch(&self, key: &str) -> bool {
        let mut map = self.attempts.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        match map.get(key) {
            Some(last) if now.duration_since(*last) < self.refresh_interval => false,
            _ => {
                map.insert(key.to_string(), now);
                true
            }
        }
    }

    /// The keys for `credential`, fetching (or refetching, when
    /// `want_kid` is not among the cached ones) as the rules allow.
    async fn keys_for(
        &self,
        credential: &FederatedCredentialRecord,
        want_kid: Option<&str>,
    ) -> Result<JwkSet, FederationError> {
        if let Some(jwks) = &credential.jwks {
            return serde_json::from_str(jwks).map_err(|e| FederationError::BadCredential {
                name: credential.name.clone(),
                reason: format!("its JWKS is unreadable: {e}"),
            });
        }
        let key = format!(
            "{}\n{}",
            credential.issuer,
            credential.ca_pem.as_deref().unwrap_or("")
        );
        let cached = self.cached(&key);
        let has_kid = |set: &JwkSet| match want_kid {
            Some(kid) => set.find(kid).is_some(),
            None => !set.keys.is_empty(),
        };
        if let Some((set, fetched)) = &cached {
            if has_kid(set) && fetched.elapsed() < KEYS_MAX_AGE {
                return Ok(set.clone());
            }
        }
        if !self.may_fetch(&key) {
            // Asked too recently: what is cached is the answer.
            return match cached {
                Some((set, _)) => Ok(set),
                None => Err(FederationError::IssuerUnreachable {
                    issuer: credential.issuer.clone(),
                    reason: "its keys were fetched moments ago and failed; retrying shortly".into(),
                }),
            };
        }
        match self.fetch(credential).await {
            Ok(set) => {
                let mut map = self.entries.lock().unwrap_or_else(|p| p.into_inner());
                map.insert(
                    key,
                    CachedKeys {
                        keys: set.clone(),
                        fetched: Instant::now(),
                    },
                );
                Ok(set)
            }
            Err(e) => match cached {
                // Unreachable now, but known: keep verifying with what we had.
                Some((set, _)) => {
                    tracing::warn!(issuer = %credential.issuer, error = %e, "issuer unreachable; verifying with its cached keys");
                    Ok(set)
                }
                None => Err(e),
            },
        }
    }

    async fn fetch(&self, c: &FederatedCredentialRecord) -> Result<JwkSet, FederationError> {
        self.fetches
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let unreachable = |reason: String| FederationError::IssuerUnreachable {
            issuer: c.issuer.clone(),
            reason,
        };
        let tls = berth_client::tls::client_config_with_pem(c.ca_pem.as_deref())
            .map_err(|e| unreachable(e.to_string()))?;
        let http = reqwest::Client::builder()
            .use_preconfigured_tls(tls)
            .timeout(self.timeout)
            .redirect(reqwest::redirect::Policy::limited(3))
            .build()
            .map_err(|e| unreachable(e.to_string()))?;
        let discovery = format!(
            "{}/.well-known/openid-configuration",
            c.issuer.trim_end_matches('/')
        );
        let document = get_json(&http, &discovery).await.map_err(unreachable)?;
        let jwks_uri = document
            .get("jwks_uri")
            .and_then(|v| v.as_str())
            .ok_or_else(|| unreachable(format!("{discovery} names no jwks_uri")))?
            .to_string();
        let keys = get_json(&http, &jwks_uri).await.map_err(unreachable)?;
        serde_json::from_value(keys)
            .map_err(|e| unreachable(format!("{jwks_uri} is not a JWKS: {e}")))
    }
}

async fn get_json(http: &reqwest::Client, url: &str) -> Result<serde_json::Value, String> {
    let response = http
        .get(url)
        .header("accept", "application/json")
        .send()
        .await
        .map_err(|e| format!("GET {url}: {}", chain(&e)))?;
    let status = response.status();
    if !status.is_success() {
        return Err(format!("GET {url}: {status}"));
    }
    let body = response
        .bytes()
        .await
        .map_err(|e| format!("GET {url}: {e}"))?;
    if body.len() > MAX_DOCUMENT {
        return Err(format!(
            "GET {url}: the answer is over {MAX_DOCUMENT} bytes"
        ));
    }
    serde_json::from_slice(&body).map_err(|e| format!("GET {url}: not JSON: {e}"))
}

fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut source = e.source();
    while let Some(inner) = source {
        s.push_str(": ");
        s.push_str(&inner.to_string());
        source = inner.source();
    }
    s
}

fn accepted(alg: Algorithm) -> bool {
    matches!(
        alg,
        Algorithm::RS256
            | Algorithm::RS384
            | Algorithm::RS512
            | Algorithm::PS256
            | Algorithm::ES256
            | Algorithm::ES384
    )
}

/// The claims of `token`, before its signature is checked: only to find
/// which credential (and so which keys) to check it with.
fn peek(token: &str) -> Result<UnverifiedClaims, FederationError> {
    let payload = token
        .split('.')
        .nth(1)
        .ok_or_else(|| FederationError::Malformed("it does not have three parts".into()))?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .map_err(|_| FederationError::Malformed("its payload is not base64url".into()))?;
    serde_json::from_slice(&bytes)
        .map_err(|e| FederationError::Malformed(format!("its claims are not JSON: {e}")))
}

/// Verifies `token` against the federated credentials trusting its issuer
/// (`credentials`: every one for that issuer).
pub async fn verify(
    cache: &KeyCache,
    token: &str,
    credentials: &[FederatedCredentialRecord],
) -> Result<FederatedSubject, FederationError> {
    let header = jsonwebtoken::decode_header(token)
        .map_err(|e| FederationError::Malformed(e.to_string()))?;
    let claims = peek(token)?;
    if credentials.is_empty() {
        return Err(FederationError::IssuerNotTrusted(printable(&claims.iss)));
    }
    let for_subject: Vec<&FederatedCredentialRecord> = credentials
        .iter()
        .filter(|c| c.subject == claims.sub)
        .collect();
    if for_subject.is_empty() {
        return Err(FederationError::SubjectNotFederated {
            issuer: claims.iss.clone(),
            subject: printable(&claims.sub),
        });
    }
    let Some(credential) = for_subject
        .iter()
        .find(|c| claims.aud.contains(&c.audience))
    else {
        return Err(FederationError::AudienceMismatch {
            name: for_subject[0].name.clone(),
            got: claims.aud.describe(),
            want: for_subject[0].audience.clone(),
        });
    };
    let now = now();
    let exp = claims
        .exp
        .ok_or_else(|| FederationError::Malformed("it has no exp claim".into()))?;
    if exp + SKEW_SECS < now {
        return Err(FederationError::Expired(rfc3339(exp)));
    }
    if let Some(nbf) = claims.nbf {
        if nbf - SKEW_SECS > now {
            return Err(FederationError::NotYetValid(rfc3339(nbf)));
        }
    }
    if let Some(iat) = claims.iat {
        if iat - SKEW_SECS > now {
            return Err(FederationError::NotYetValid(rfc3339(iat)));
        }
    }
    if !accepted(header.alg) {
        return Err(FederationError::Algorithm(format!("{:?}", header.alg)));
    }
    let keys = cache.keys_for(credential, header.kid.as_deref()).await?;
    let candidates: Vec<&Jwk> = match &header.kid {
        Some(kid) => keys.find(kid).into_iter().collect(),
        None => keys.keys.iter().collect(),
    };
    let kid = header.kid.clone().unwrap_or_else(|| "(none)".into());
    if candidates.is_empty() {
        return Err(FederationError::UnknownKey {
            issuer: credential.issuer.clone(),
            kid,
        });
    }
    let mut validation = Validation::new(header.alg);
    validation.set_audience(&[credential.audience.as_str()]);
    validation.set_issuer(&[credential.issuer.as_str()]);
    validation.leeway = SKEW_SECS as u64;
    validation.validate_nbf = true;
    validation.set_required_spec_claims(&["exp", "iss", "sub", "aud"]);
    let mut last = None;
    for jwk in candidates {
        let Ok(key) = DecodingKey::from_jwk(jwk) else {
            continue;
        };
        match jsonwebtoken::decode::<serde_json::Value>(token, &key, &validation) {
            Ok(_) => {
                let k8s = claims.kubernetes.as_ref();
                let field = |path: &[&str]| {
                    let mut v = k8s?;
                    for p in path {
                        v = v.get(*p)?;
                    }
                    v.as_str().map(str::to_string)
                };
                return Ok(FederatedSubject {
                    credential: credential.name.clone(),
                    identity_id: credential.identity_id.clone(),
                    issuer: credential.issuer.clone(),
                    subject: claims.sub.clone(),
                    expires_at: exp,
                    namespace: field(&["namespace"]),
                    service_account: field(&["serviceaccount", "name"]),
                    pod: field(&["pod", "name"]),
                });
            }
            Err(e) => last = Some(e),
        }
    }
    match last.map(|e| e.into_kind()) {
        Some(jsonwebtoken::errors::ErrorKind::ExpiredSignature) => {
            Err(FederationError::Expired(rfc3339(exp)))
        }
        Some(jsonwebtoken::errors::ErrorKind::ImmatureSignature) => Err(
            FederationError::NotYetValid(rfc3339(claims.nbf.unwrap_or(now))),
        ),
        _ => Err(FederationError::BadSignature {
            issuer: credential.issuer.clone(),
            kid,
        }),
    }
}

/// A claim value fit for a message (bounded, no control characters).
fn printable(s: &str) -> String {
    s.chars().filter(|c| !c.is_control()).take(200).collect()
}

/// Who a federated token says it is, before it is checked — for the login
/// event of a refused one: `federated (issuer X, subject Y)`.
pub fn claimed_identity(token: &str) -> String {
    match peek(token) {
        Ok(c) => format!(
            "{FEDERATED_USER} (issuer {}, subject {})",
            printable(&c.iss),
            printable(&c.sub)
        ),
        Err(_) => format!("{FEDERATED_USER} (not a JWT)"),
    }
}

/// The issuer a token names, for looking up the credentials that trust it.
pub fn issuer_of(token: &str) -> Result<String, FederationError> {
    Ok(peek(token)?.iss)
}
