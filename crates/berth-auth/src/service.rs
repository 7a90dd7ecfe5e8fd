//! Authentication and the token service.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine as _;
use berth_metadata::{AuthStore, IdentityRecord, SigningKeyRecord};
use berth_util::{now, rfc3339};
use quick_cache::sync::Cache;
use serde::Serialize;
use sha2::{Digest as _, Sha256};

use crate::model::{builtin_roles, Grant, IdentityKind, Permission, Principal, Role, Scope};
use crate::throttle::Throttle;
use crate::token::{AccessEntry, Claims, KeyRing, ISSUER};
use crate::{secret, AuthError, REFRESH_TOKEN_USER};

pub const SETTING_ANONYMOUS_PULL: &str = "anonymousPullEnabled";
pub const SETTING_ADMIN_ENABLED: &str = "adminUserEnabled";
pub const SETTING_SPARSE_MANIFESTS: &str = "sparseManifests";

#[derive(Debug, Clone)]
pub struct AuthConfig {
    /// Lifetime of access tokens.
    pub token_ttl: Duration,
    /// Lifetime of refresh tokens.
    pub refresh_ttl: Duration,
    /// The admin user's login name.
    pub registry_name: String,
    /// How long a verified Basic credential is trusted without re-hashing.
    pub basic_cache_ttl: Duration,
    pub throttle_limit: u32,
    pub throttle_window: Duration,
    /// A token naming a key the cache lacks refetches an issuer's keys at
    /// most this often.
    pub jwks_refresh_interval: Duration,
    /// How long an issuer may take to answer.
    pub issuer_timeout: Duration,
}

impl Default for AuthConfig {
    fn default() -> Self {
        AuthConfig {
            token_ttl: Duration::from_secs(300),
            refresh_ttl: Duration::from_secs(3 * 3600),
            registry_name: "berth".into(),
            basic_cache_ttl: Duration::from_secs(60),
            throttle_limit: 10,
            throttle_window: Duration::from_secs(60),
            jwks_refresh_interval: Duration::from_secs(30),
            issuer_timeout: Duration::from_secs(5),
        }
    }
}

/// One `scope` parameter of a token request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestedScope {
    /// "repository" or "registry".
    pub kind: String,
    pub name: String,
    pub actions: Vec<String>,
}

impl RequestedScope {
    /// `repository:<name>:<actions>` or `registry:catalog:*`. Names may hold
    /// `:` only in the legacy `repository(plugin)` class form, which is
    /// accepted and ignored.
    pub fn parse(s: &str) -> Result<RequestedScope, AuthError> {
        let bad = || {
            AuthError::InvalidRequest(format!(
                "scope '{}' is malformed: expected 'repository:<name>:<actions>' or 'registry:catalog:*'",
                s.chars().take(200).collect::<String>()
            ))
        };
        let (kind, rest) = s.split_once(':').ok_or_else(bad)?;
        let (name, actions) = rest.rsplit_once(':').ok_or_else(bad)?;
        let kind = kind.split('(').next().unwrap_or(kind);
        let actions: Vec<String> = actions
            .split(',')
            .map(str::trim)
            .filter(|a| !a.is_empty())
            .map(str::to_string)
            .collect();
        match kind {
            "repository" => {
                name.parse::<berth_types::RepositoryName>()
                    .map_err(|e| AuthError::InvalidRequest(format!("scope '{s}': {e}")))?;
            }
            "registry" if name == "catalog" => {}
            _ => return Err(bad()),
        }
        if actions.is_empty() {
            return Err(bad());
        }
        Ok(RequestedScope {
            kind: kind.to_string(),
            name: name.to_string(),
            actions,
        })
    }
}

/// What a verified access token stands for.
#[derive(Debug, Clone)]
pub struct TokenPrincipal {
    pub principal: Principal,
    /// Asked for and refused at issue time: needing one of these is a 403.
    pub refused: Vec<(Permission, Option<String>)>,
    pub jwt_id: String,
}

impl TokenPrincipal {
    pub fn was_refused(&self, permission: Permission, repository: Option<&str>) -> bool {
        self.refused
            .iter()
            .any(|(p, r)| *p == permission && r.as_deref() == repository)
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct TokenResponse {
    pub token: String,
    pub access_token: String,
    pub expires_in: u64,
    pub issued_at: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refresh_token: Option<String>,
    /// RFC 8693 answers (token exchange): what `access_token` is.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub issued_token_type: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token_type: Option<String>,
}

pub struct AuthService {
    pub(crate) store: Arc<dyn AuthStore>,
    keys: KeyRing,
    pub(crate) config: AuthConfig,
    /// Issuers' signing keys, for federated credentials.
    pub(crate) issuer_keys: crate::federation::KeyCache,
    /// sha256(login, secret) → principal, so repeated Basic requests do not
    /// pay an argon2 verification each.
    /// Each entry is trusted until its deadline: the cache lifetime, or the
    /// credential's expiry if that comes first.
    basic_cache: Cache<[u8; 32], (Principal, Instant)>,
    /// Newest activity-log id seen by [`AuthService::reload_settings`].
    seen_activity: std::sync::atomic::AtomicI64,
    /// Verified access tokens by signature, until they expire: an ES256
    /// verification costs more than serving a cached manifest.
    token_cache: Cache<[u8; 32], (TokenPrincipal, i64)>,
    throttle: Throttle,
    /// Verifications running now, by [`cache_key`]: see
    /// [`AuthService::verify_single_flight`].
    in_flight: Mutex<HashMap<[u8; 32], Arc<Flight>>>,
    verifications: AtomicU64,
    anonymous_pull: AtomicBool,
    admin_enabled: AtomicBool,
    sparse_manifests: AtomicBool,
    /// Cache rules and unsealed credential-set logins, as last read.
    pub(crate) cache_config: std::sync::RwLock<Arc<crate::cache_config::CacheSnapshot>>,
}

fn cache_key(login: &str, secret: &str) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(login.as_bytes());
    h.update([0]);
    h.update(secret.as_bytes());
    h.finalize().into()
}

/// One shared verification: the principal, or the failure if every waiter
/// may be given a copy of it (`None`: verify again yourself).
type Flight = tokio::sync::OnceCell<Result<Principal, Option<AuthError>>>;

/// Takes a flight out of the in-flight map when its last waiter leaves —
/// landed, or every waiter cancelled (a dropped request) before it did.
struct LeaveFlight<'a> {
    map: &'a Mutex<HashMap<[u8; 32], Arc<Flight>>>,
    key: [u8; 32],
    cell: Arc<Flight>,
}

impl Drop for LeaveFlight<'_> {
    fn drop(&mut self) {
        let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(current) = map.get(&self.key) {
            // Clones are only taken under this lock: a count of 2 (the map
            // and this guard) means no one else is waiting.
            if Arc::ptr_eq(current, &self.cell)
                && (self.cell.initialized() || Arc::strong_count(&self.cell) <= 2)
            {
                map.remove(&self.key);
            }
        }
    }
}

/// The name a credential check is throttled under: the login, or for a
/// refresh token its (unverified) subject — a forged subject only picks
/// the forger's own bucket, as any Basic user name would.
fn throttle_name(login: &str, secret: &str) -> String {
    // A JWT's claims, unverified: only to pick the bucket.
    let claim = |name: &str| {
        secret
            .split('.')
            .nth(1)
            .and_then(|p| {
                base64::engine::general_purpose::URL_SAFE_NO_PAD
                    .decode(p)
                    .ok()
            })
            .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
            .and_then(|v| v.get(name).and_then(|s| s.as_str()).map(str::to_string))
            .unwrap_or_default()
    };
    if login == crate::federation::FEDERATED_USER {
        // Per issuer and subject: one broken federation does not lock out
        // the others behind the same address (a node's pods, say).
        return format!("federated/{}/{}", claim("iss"), claim("sub"));
    }
    if login != REFRESH_TOKEN_USER {
        return login.to_string();
    }
    format!("{REFRESH_TOKEN_USER}/{}", claim("sub"))
}

/// A caller-chosen name, safe and short enough for a message.
fn printable(name: &str) -> String {
    name.chars().filter(|c| !c.is_control()).take(100).collect()
}

/// `'name'`, or `'name' (app id ...)` for service principals, whose login
/// is an opaque id.
fn quoted_name(identity: &IdentityRecord) -> String {
    if identity.kind == "sp" {
        format!("'{}' (app id {})", identity.display_name, identity.login)
    } else {
        format!("'{}'", identity.login)
    }
}

/// A valid argon2id hash of nothing in particular: unknown logins are
/// verified against it so they take as long as known ones.
const DUMMY_HASH: &str =
    "$argon2id$v=19$m=7168,t=5,p=1$c29tZXNhbHRzb21lc2FsdA$6ZtGLEAo0WmFu4TdbKBH2eBw2SMFzKpxq9ffI0M8NnI";

impl AuthService {
    /// Loads (or on first start creates) the token signing key and the
    /// runtime settings.
    pub async fn open(store: Arc<dyn AuthStore>, config: AuthConfig) -> Result<Self, AuthError> {
        let mut keys = store.signing_keys().await?;
        if keys.is_empty() {
            let key = SigningKeyRecord {
                kid: uuid::Uuid::new_v4().simple().to_string(),
                pkcs8: crate::token::generate_key()?,
                created_at: now(),
            };
            store.add_signing_key(&key).await?;
            keys.push(key);
        }
        let ring = KeyRing::new(
            &keys
                .into_iter()
                .map(|k| (k.kid, k.pkcs8))
                .collect::<Vec<_>>(),
        )?;
        let service = AuthService {
            store,
            keys: ring,
            throttle: Throttle::new(config.throttle_limit, config.throttle_window),
            issuer_keys: crate::federation::KeyCache::new(
                config.jwks_refresh_interval,
                config.issuer_timeout,
            ),
            config,
            basic_cache: Cache::new(2_000),
            seen_activity: std::sync::atomic::AtomicI64::new(0),
            token_cache: Cache::new(2_000),
            in_flight: Mutex::new(HashMap::new()),
            verifications: AtomicU64::new(0),
            anonymous_pull: AtomicBool::new(false),
            admin_enabled: AtomicBool::new(false),
            sparse_manifests: AtomicBool::new(false),
            cache_config: Default::default(),
        };
        service.reload_settings().await?;
        Ok(service)
    }

    /// Re-reads runtime settings (another node may have changed them).
    pub async fn reload_settings(&self) -> Result<(), AuthError> {
        // Any change anywhere (identities, credentials, roles) since the
        // last look: cached sign-ins may be stale.
        let last = self.store.last_activity_id().await?;
        if self.seen_activity.swap(last, Ordering::AcqRel) != last {
            self.invalidate();
        }
        let flag = |v: Option<String>| v.as_deref() == Some("true");
        self.anonymous_pull.store(
            flag(self.store.setting(SETTING_ANONYMOUS_PULL).await?),
            Ordering::Release,
        );
        self.admin_enabled.store(
            flag(self.store.setting(SETTING_ADMIN_ENABLED).await?),
            Ordering::Release,
        );
        self.sparse_manifests.store(
            flag(self.store.setting(SETTING_SPARSE_MANIFESTS).await?),
            Ordering::Release,
        );
        self.reload_cache_config().await?;
        // A key another node created signs from now on here too; the old
        // ones keep verifying.
        let known = self.keys.kids();
        for key in self.store.signing_keys().await? {
            if !known.contains(&key.kid) {
                self.keys.rotate(key.kid, &key.pkcs8)?;
            }
        }
        Ok(())
    }

    /// Creates a new signing key: new tokens are signed with it, tokens
    /// signed with the previous keys stay valid until they expire.
    pub async fn rotate_signing_key(&self, actor: &Principal) -> Result<String, AuthError> {
        let key = SigningKeyRecord {
            kid: uuid::Uuid::new_v4().simple().to_string(),
            pkcs8: crate::token::generate_key()?,
            created_at: now(),
        };
        self.store.add_signing_key(&key).await?;
        self.keys.rotate(key.kid.clone(), &key.pkcs8)?;
        // For the activity log: which key signs from now on (never the key).
        self.store
            .set_setting(
                "signingKeyCurrent",
                &key.kid,
                &berth_metadata::Activity {
                    actor: actor.describe(),
                    operation: "rotate token signing key".into(),
                    target: "signing keys".into(),
                    before: None,
                    after: Some(serde_json::json!({ "kid": key.kid }).to_string()),
                },
            )
            .await?;
        tracing::info!(kid = %key.kid, actor = %actor.describe(), "token signing key rotated");
        Ok(key.kid)
    }

    /// The store, for other runtime settings (network rules) kept beside
    /// identities and audited the same way.
    pub fn store(&self) -> &Arc<dyn AuthStore> {
        &self.store
    }

    pub fn anonymous_pull_enabled(&self) -> bool {
        self.anonymous_pull.load(Ordering::Acquire)
    }

    pub fn admin_enabled(&self) -> bool {
        self.admin_enabled.load(Ordering::Acquire)
    }

    /// Manifests may name blobs and child manifests the repository does
    /// not hold (the `sparseManifests` setting).
    pub fn sparse_manifests_enabled(&self) -> bool {
        self.sparse_manifests.load(Ordering::Acquire)
    }

    pub fn anonymous(&self) -> Principal {
        Principal::anonymous(self.anonymous_pull_enabled())
    }

    /// Drops cached verifications: called after every management change.
    pub(crate) fn invalidate(&self) {
        self.basic_cache.clear();
    }

    /// Signs in with a login and a secret (password, SP secret, token
    /// password, or a refresh token under [`REFRESH_TOKEN_USER`]).
    pub async fn authenticate(
        &self,
        login: &str,
        secret: &str,
        ip: IpAddr,
    ) -> Result<Principal, AuthError> {
        // Only this name from this address waits: anonymous requests, bearer
        // tokens and other names are never held up by someone's failures.
        // Checked before the credential, so a lock-out refuses even the
        // right password — guessing during it learns nothing (see
        // docs/auth.md).
        let name = throttle_name(login, secret);
        if let Some(retry_after) = self.throttle.retry_after(ip, &name) {
            return Err(AuthError::Throttled {
                ip: ip.to_string(),
                name: printable(login),
                retry_after,
            });
        }
        let key = cache_key(login, secret);
        if let Some((principal, deadline)) = self.basic_cache.get(&key) {
            if Instant::now() < deadline {
                return Ok(principal);
            }
        }
        match self.verify_single_flight(key, login, secret).await {
            Ok(principal) => {
                self.throttle.record_success(ip, &name);
                Ok(principal)
            }
            Err(e) => {
                if e.is_authentication_failure() {
                    self.throttle.record_failure(ip, &name);
                }
                Err(e)
            }
        }
    }

    /// Concurrent checks of the same (login, secret) share one verification:
    /// a burst of identical logins on a cold cache costs one argon2 run, not
    /// one each. Keyed by [`cache_key`], never by the secret itself.
    async fn verify_single_flight(
        &self,
        key: [u8; 32],
        login: &str,
        secret: &str,
    ) -> Result<Principal, AuthError> {
        // The guard holds the only reference outside the map: see its Drop.
        let flight = {
            let mut map = self.in_flight.lock().unwrap_or_else(|p| p.into_inner());
            LeaveFlight {
                map: &self.in_flight,
                key,
                cell: map.entry(key).or_default().clone(),
            }
        };
        // Errors only the runner sees (store faults): the others verify
        // for themselves rather than share an error they cannot copy.
        let mut own_error = None;
        let own = &mut own_error;
        let shared = flight
            .cell
            .get_or_init(|| async move {
                match self.authenticate_uncached(login, secret).await {
                    Ok((principal, expires_at)) => {
                        let mut ttl = self.config.basic_cache_ttl;
                        if let Some(expires) = expires_at {
                            let left = Duration::from_secs((expires - now()).max(0) as u64);
                            ttl = ttl.min(left);
                        }
                        // Filled before the flight lands, so later arrivals
                        // hit the cache instead of starting a new flight.
                        self.basic_cache
                            .insert(key, (principal.clone(), Instant::now() + ttl));
                        Ok(principal)
                    }
                    Err(e) => {
                        let copy = e.duplicate();
                        *own = Some(e);
                        Err(copy)
                    }
                }
            })
            .await;
        if let Some(e) = own_error {
            return Err(e);
        }
        match shared {
            Ok(principal) => Ok(principal.clone()),
            Err(Some(e)) => Err(e
                .duplicate()
                .unwrap_or_else(|| AuthError::Internal(e.to_string()))),
            Err(None) => self
                .authenticate_uncached(login, secret)
                .await
                .map(|(principal, _)| principal),
        }
    }

    /// Password (argon2) verifications this service has run, including
    /// the dummy one for unknown logins: what single flight and the cache
    /// save is visible here (and as `berth_auth_password_verifications_total`).
    pub fn password_verifications(&self) -> u64 {
        self.verifications.load(Ordering::Relaxed)
    }

    async fn verify_password(&self, secret: &str, hash: String) -> Result<bool, AuthError> {
        self.verifications.fetch_add(1, Ordering::Relaxed);
        metrics::counter!("berth_auth_password_verifications_total").increment(1);
        secret::verify(secret.to_string(), hash).await
    }

    /// Verifies credentials; also returns when the matched credential
    /// expires, so a cached verification never outlives it.
    async fn authenticate_uncached(
        &self,
        login: &str,
        secret: &str,
    ) -> Result<(Principal, Option<i64>), AuthError> {
        if login == REFRESH_TOKEN_USER {
            let claims = self.keys.verify(secret)?;
            if claims.typ != "refresh" {
                return Err(AuthError::InvalidToken(
                    "an access token was presented where a refresh token is expected".into(),
                ));
            }
            let identity = self
                .store
                .identity_by_id(&claims.sub)
                .await?
                .ok_or_else(|| AuthError::UnknownIdentity(claims.login.clone()))?;
            self.ensure_enabled(&identity)?;
            let mut principal = self.principal_of(&identity).await?;
            // What is issued for a refresh token never outlives it.
            principal.not_after = Some(claims.exp);
            principal.via = claims.via;
            return Ok((principal, Some(claims.exp)));
        }
        if login == crate::federation::FEDERATED_USER {
            return self.authenticate_federated(secret).await;
        }
        let Some(identity) = self.store.identity_by_login(login).await? else {
            // Same cost as a real check, so timing does not reveal logins.
            let _ = self.verify_password(secret, DUMMY_HASH.to_string()).await;
            return Err(AuthError::UnknownIdentity(login.to_string()));
        };
        let kind = IdentityKind::parse(&identity.kind)
            .ok_or_else(|| AuthError::Internal(format!("identity kind '{}'", identity.kind)))?;
        let credentials = self.store.credentials(&identity.id).await?;
        let mut matched = None;
        for c in credentials {
            if self.verify_password(secret, c.hash.clone()).await? {
                matched = Some(c);
                break;
            }
        }
        let Some(credential) = matched else {
            let detail = match kind {
                IdentityKind::Admin => self.admin_password_history(&identity).await,
                _ => String::new(),
            };
            return Err(AuthError::WrongSecret(login.to_string(), detail));
        };
        if let Some(expires) = credential.expires_at {
            if expires <= now() {
                return Err(AuthError::Expired {
                    kind: kind.describe(),
                    login: quoted_name(&identity),
                    credential: match kind {
                        IdentityKind::ServicePrincipal => "client secret".to_string(),
                        _ => credential.name.clone(),
                    },
                    at: rfc3339(expires),
                });
            }
        }
        self.ensure_enabled(&identity)?;
        Ok((self.principal_of(&identity).await?, credential.expires_at))
    }

    /// For a failed admin login: when each admin password was last set and
    /// by whom (the activity log), so a client with stale credentials
    /// learns they were regenerated. The admin user's name is the
    /// registry's and its passwords are shared by design; the dates and the
    /// actor's name are what `berth credential show` and the activity log
    /// show any reader.
    async fn admin_password_history(&self, admin: &IdentityRecord) -> String {
        let Ok(credentials) = self.store.credentials(&admin.id).await else {
            return String::new();
        };
        let since = credentials.iter().map(|c| c.created_at).min().unwrap_or(0);
        let log = self
            .store
            .activities(since.saturating_sub(5), 10_000)
            .await
            .unwrap_or_default();
        let mut parts = Vec::new();
        let mut credentials = credentials;
        credentials.sort_by(|a, b| a.name.cmp(&b.name));
        for c in &credentials {
            let regenerated = log.iter().rev().find(|r| {
                r.activity.operation == "regenerate login credentials"
                    && r.activity.target == admin.login
                    && r.activity.after.as_deref().is_some_and(|a| {
                        serde_json::from_str::<serde_json::Value>(a)
                            .ok()
                            .and_then(|v| v["passwordName"].as_str().map(|n| n == c.name))
                            .unwrap_or(false)
                    })
            });
            parts.push(match regenerated {
                Some(r) => format!(
                    "'{}' was regenerated at {} by {}",
                    c.name,
                    rfc3339(r.time),
                    r.activity.actor
                ),
                None => format!(
                    "'{}' was set at {} when the admin user was created",
                    c.name,
                    rfc3339(c.created_at)
                ),
            });
        }
        if parts.is_empty() {
            return String::new();
        }
        format!(
            " (the admin user's passwords: {}); use a current one — `berth credential show` prints them",
            parts.join(", ")
        )
    }

    /// An issuer's token (a Kubernetes service-account token, say) for the
    /// service principal whose federated credential trusts it.
    async fn authenticate_federated(
        &self,
        token: &str,
    ) -> Result<(Principal, Option<i64>), AuthError> {
        let issuer = crate::federation::issuer_of(token)?;
        let credentials = self.store.federated_credentials_of_issuer(&issuer).await?;
        let subject = crate::federation::verify(&self.issuer_keys, token, &credentials).await?;
        let identity = self
            .store
            .identity_by_id(&subject.identity_id)
            .await?
            .ok_or_else(|| AuthError::UnknownIdentity(subject.identity_id.clone()))?;
        self.ensure_enabled(&identity)?;
        let mut principal = self.principal_of(&identity).await?;
        principal.not_after = Some(subject.expires_at);
        principal.via = Some(subject.describe());
        Ok((principal, Some(subject.expires_at)))
    }

    /// Fetches of issuers' keys so far.
    pub fn issuer_key_fetches(&self) -> u64 {
        self.issuer_keys.fetches()
    }

    /// A disabled identity (or the admin user while it is switched off)
    /// gets nothing, however it presents itself.
    pub(crate) fn ensure_enabled(&self, identity: &IdentityRecord) -> Result<(), AuthError> {
        let kind = IdentityKind::parse(&identity.kind)
            .ok_or_else(|| AuthError::Internal(format!("identity kind '{}'", identity.kind)))?;
        if !identity.enabled || (kind == IdentityKind::Admin && !self.admin_enabled()) {
            return Err(AuthError::Disabled {
                kind: kind.describe(),
                login: quoted_name(identity),
            });
        }
        Ok(())
    }

    /// The identity with this id as it is now, for a session that proved
    /// its credentials earlier (the portal's): a deleted or disabled
    /// identity gets nothing, and a changed role assignment counts at once.
    pub async fn principal_by_id(&self, id: &str) -> Result<Principal, AuthError> {
        let identity = self
            .store
            .identity_by_id(id)
            .await?
            .ok_or_else(|| AuthError::UnknownIdentity(id.to_string()))?;
        self.ensure_enabled(&identity)?;
        self.principal_of(&identity).await
    }

    /// The identity with everything it may do.
    pub async fn principal_of(&self, identity: &IdentityRecord) -> Result<Principal, AuthError> {
        let kind = IdentityKind::parse(&identity.kind)
            .ok_or_else(|| AuthError::Internal(format!("identity kind '{}'", identity.kind)))?;
        let registry = |ps: &[Permission]| {
            ps.iter()
                .map(|p| Grant {
                    permission: *p,
                    scope: Scope::Registry,
                })
                .collect::<Vec<_>>()
        };
        let mut grants = match kind {
            IdentityKind::Owner => registry(&Permission::ALL),
            IdentityKind::Admin => registry(&[
                Permission::Pull,
                Permission::Push,
                Permission::Delete,
                Permission::MetadataRead,
                Permission::MetadataWrite,
                Permission::CatalogRead,
            ]),
            IdentityKind::Token => self.scope_map_grants(identity.scope_map.as_deref()).await?,
            IdentityKind::ServicePrincipal | IdentityKind::Anonymous => Vec::new(),
        };
        if kind != IdentityKind::Token {
            grants.extend(self.assigned_grants(&identity.id).await?);
        }
        Ok(Principal {
            id: identity.id.clone(),
            kind,
            login: identity.login.clone(),
            name: identity.display_name.clone(),
            trusted_service: identity.trusted_service,
            grants,
            scope_map: identity
                .scope_map
                .clone()
                .filter(|_| kind == IdentityKind::Token),
            not_after: None,
            via: None,
        })
    }

    async fn scope_map_grants(&self, name: Option<&str>) -> Result<Vec<Grant>, AuthError> {
        let Some(name) = name else {
            return Ok(Vec::new());
        };
        let Some(map) = self.store.scope_map(name).await? else {
            return Ok(Vec::new());
        };
        let rules: Vec<berth_manage::tokens::ScopeRule> = serde_json::from_str(&map.rules_json)
            .map_err(|e| AuthError::Internal(format!("scope map '{name}' is unreadable: {e}")))?;
        let mut grants = Vec::new();
        for rule in rules {
            let Ok(scope) = Scope::parse(&rule.repository) else {
                continue;
            };
            for action in &rule.actions {
                if let Some(permission) = Permission::from_token_action(action.as_str()) {
                    grants.push(Grant {
                        permission,
                        scope: scope.clone(),
                    });
                }
            }
        }
        Ok(grants)
    }

    async fn assigned_grants(&self, principal_id: &str) -> Result<Vec<Grant>, AuthError> {
        let assignments = self.store.role_assignments(Some(principal_id)).await?;
        if assignments.is_empty() {
            return Ok(Vec::new());
        }
        let roles = self.roles().await?;
        let mut grants = Vec::new();
        for a in assignments {
            let Some(role) = roles.iter().find(|r| r.name == a.role) else {
                continue;
            };
            let Ok(scope) = Scope::parse(&a.scope) else {
                continue;
            };
            grants.extend(role.permissions.iter().map(|p| Grant {
                permission: *p,
                scope: scope.clone(),
            }));
        }
        Ok(grants)
    }

    /// Built-in and custom roles. A custom role whose stored actions do not
    /// parse is an error, not a role that silently grants nothing.
    pub async fn roles(&self) -> Result<Vec<Role>, AuthError> {
        let mut roles: Vec<Role> = builtin_roles()
            .into_iter()
            .map(|(n, d, p)| Role {
                name: n.to_string(),
                description: d.to_string(),
                builtin: true,
                permissions: p,
            })
            .collect();
        for custom in self.store.role_definitions().await? {
            let unreadable = |why: String| {
                AuthError::Internal(format!(
                    "custom role '{}' is unreadable: {why}",
                    custom.name
                ))
            };
            let actions: Vec<String> = serde_json::from_str(&custom.actions_json)
                .map_err(|e| unreadable(e.to_string()))?;
            let permissions = actions
                .iter()
                .map(|a| {
                    Permission::parse(a).ok_or_else(|| unreadable(format!("unknown action '{a}'")))
                })
                .collect::<Result<Vec<_>, _>>()?;
            roles.push(Role {
                name: custom.name,
                description: custom.description,
                builtin: false,
                permissions,
            });
        }
        Ok(roles)
    }

    /// Verifies an access token and returns the principal it stands for:
    /// exactly the access the token grants.
    /// Verifies an access token; returns its principal and the
    /// (permission, repository) pairs refused when it was issued.
    pub fn principal_from_token(&self, token: &str) -> Result<TokenPrincipal, AuthError> {
        let key: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        if let Some((principal, exp)) = self.token_cache.get(&key) {
            if exp > now() {
                return Ok(principal);
            }
        }
        let claims = self.keys.verify(token)?;
        let exp = claims.exp;
        let principal = self.token_principal(claims)?;
        self.token_cache.insert(key, (principal.clone(), exp));
        Ok(principal)
    }

    fn token_principal(&self, claims: Claims) -> Result<TokenPrincipal, AuthError> {
        if claims.typ != "access" {
            return Err(AuthError::InvalidToken(
                "a refresh token cannot be used as an access token; exchange it at /oauth2/token"
                    .into(),
            ));
        }
        let kind = IdentityKind::parse(&claims.kind).unwrap_or(IdentityKind::Anonymous);
        let mut grants = Vec::new();
        for entry in &claims.access {
            let scope = match entry.kind.as_str() {
                "repository" => Scope::Repository(entry.name.clone()),
                _ => Scope::Registry,
            };
            for action in &entry.actions {
                let permissions: &[Permission] = match (entry.kind.as_str(), action.as_str()) {
                    ("repository", "pull") => &[Permission::Pull, Permission::MetadataRead],
                    ("repository", "push") => &[Permission::Push],
                    ("repository", "delete") => &[Permission::Delete],
                    ("registry", "*") => &[Permission::CatalogRead],
                    _ => &[],
                };
                grants.extend(permissions.iter().map(|p| Grant {
                    permission: *p,
                    scope: scope.clone(),
                }));
            }
        }
        let mut refused = Vec::new();
        for entry in &claims.denied {
            for action in &entry.actions {
                let permission = match action.as_str() {
                    "pull" => Permission::Pull,
                    "push" => Permission::Push,
                    "delete" => Permission::Delete,
                    _ => Permission::CatalogRead,
                };
                let repo = (entry.kind == "repository").then(|| entry.name.clone());
                refused.push((permission, repo));
            }
        }
        Ok(TokenPrincipal {
            principal: Principal {
                id: claims.sub,
                kind,
                login: claims.login,
                name: claims.name,
                trusted_service: claims.trusted,
                grants,
                scope_map: claims.scope_map,
                not_after: Some(claims.exp),
                via: claims.via,
            },
            refused,
            jwt_id: claims.jti,
        })
    }

    /// Issues an access token carrying the requested scopes intersected
    /// with what `principal` may do (Docker token spec semantics: asking
    /// for more is not an error, the token just does not grant it).
    pub fn issue(
        &self,
        principal: &Principal,
        service: &str,
        scopes: &[RequestedScope],
        with_refresh: bool,
    ) -> Result<TokenResponse, AuthError> {
        let mut access = Vec::new();
        let mut denied = Vec::new();
        for scope in scopes {
            let granted: Vec<String> = match scope.kind.as_str() {
                "repository" => {
                    let repo = Some(scope.name.as_str());
                    let mut actions = Vec::new();
                    for (name, permission) in [
                        ("pull", Permission::Pull),
                        ("push", Permission::Push),
                        ("delete", Permission::Delete),
                    ] {
                        let asked = scope.actions.iter().any(|a| a == name || a == "*");
                        if asked && principal.allows(permission, repo) {
                            actions.push(name.to_string());
                        }
                    }
                    actions
                }
                _ if principal.allows(Permission::CatalogRead, None) => vec!["*".to_string()],
                _ => Vec::new(),
            };
            let refused: Vec<String> = scope
                .actions
                .iter()
                .filter(|a| !granted.contains(a) && a.as_str() != "*")
                .cloned()
                .collect();
            if !refused.is_empty() {
                denied.push(AccessEntry {
                    kind: scope.kind.clone(),
                    name: scope.name.clone(),
                    actions: refused,
                });
            }
            access.push(AccessEntry {
                kind: scope.kind.clone(),
                name: scope.name.clone(),
                actions: granted,
            });
        }
        let issued = now();
        let token = self.sign(
            principal,
            service,
            (access, denied),
            "access",
            self.config.token_ttl,
            issued,
        )?;
        let refresh_token = if with_refresh && !principal.is_anonymous() {
            Some(self.sign(
                principal,
                service,
                Default::default(),
                "refresh",
                self.config.refresh_ttl,
                issued,
            )?)
        } else {
            None
        };
        let mut expires_in = self.config.token_ttl.as_secs() as i64;
        if let Some(limit) = principal.not_after {
            expires_in = expires_in.min(limit - issued).max(0);
        }
        Ok(TokenResponse {
            token: token.clone(),
            access_token: token,
            expires_in: expires_in as u64,
            issued_at: rfc3339(issued),
            refresh_token,
            issued_token_type: None,
            token_type: None,
        })
    }

    /// A refresh token alone (`/oauth2/exchange`).
    pub fn issue_refresh(&self, principal: &Principal, service: &str) -> Result<String, AuthError> {
        self.sign(
            principal,
            service,
            Default::default(),
            "refresh",
            self.config.refresh_ttl,
            now(),
        )
    }

    fn sign(
        &self,
        principal: &Principal,
        service: &str,
        (access, denied): (Vec<AccessEntry>, Vec<AccessEntry>),
        typ: &str,
        ttl: Duration,
        issued: i64,
    ) -> Result<String, AuthError> {
        // Never past what the caller's own credential allows (a federated
        // token's expiry, a refresh token's).
        let mut exp = issued + ttl.as_secs() as i64;
        if let Some(limit) = principal.not_after {
            exp = exp.min(limit);
        }
        self.keys.sign(&Claims {
            iss: ISSUER.into(),
            sub: principal.id.clone(),
            aud: service.to_string(),
            exp,
            nbf: issued - 1,
            iat: issued,
            jti: uuid::Uuid::new_v4().to_string(),
            typ: typ.into(),
            login: principal.login.clone(),
            name: principal.name.clone(),
            kind: principal.kind.as_str().into(),
            trusted: principal.trusted_service,
            access,
            scope_map: principal.scope_map.clone(),
            via: principal.via.clone(),
            denied,
        })
    }

    /// Verifies a refresh token (`grant_type=refresh_token`) and returns its
    /// identity as it is now: a deleted or disabled identity gets nothing.
    /// Throttled like a password, under the token's subject.
    pub async fn principal_from_refresh(
        &self,
        token: &str,
        ip: IpAddr,
    ) -> Result<Principal, AuthError> {
        self.authenticate(REFRESH_TOKEN_USER, token, ip).await
    }

    /// Seconds until credentials for `login` are checked again from `ip`,
    /// if that pair is locked out.
    pub fn throttled(&self, ip: IpAddr, login: &str) -> Option<u64> {
        self.throttle.retry_after(ip, login)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PASSWORD: &str = "the-owner-password";

    async fn service(dir: &std::path::Path, throttle_limit: u32) -> Arc<AuthService> {
        let url = format!("sqlite://{}", dir.join("berth.db").display());
        let store = berth_metadata::SqliteStore::connect(&url)
            .await
            .expect("sqlite");
        let config = AuthConfig {
            throttle_limit,
            ..AuthConfig::default()
        };
        let auth = AuthService::open(Arc::new(store), config)
            .await
            .expect("auth service");
        auth.bootstrap_owner(Some(PASSWORD))
            .await
            .expect("owner")
            .expect("created");
        Arc::new(auth)
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("ip")
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn concurrent_logins_with_one_credential_verify_once() {
        let dir = tempfile::tempdir().expect("tempdir");
        let auth = service(dir.path(), 10).await;
        let mut tasks = tokio::task::JoinSet::new();
        for _ in 0..64 {
            let auth = auth.clone();
            tasks.spawn(async move { auth.authenticate("owner", PASSWORD, ip("10.0.0.1")).await });
        }
        while let Some(result) = tasks.join_next().await {
            let principal = result.expect("task").expect("signed in");
            assert_eq!(principal.login, "owner");
        }
        // Whoever came later than the one run found the cache it filled.
        assert_eq!(auth.password_verifications(), 1);
        assert!(auth.in_flight.lock().expect("lock").is_empty());

        // A different secret is a different flight.
        let wrong = auth.authenticate("owner", "wrong", ip("10.0.0.1")).await;
        assert!(
            matches!(wrong, Err(AuthError::WrongSecret(..))),
            "{wrong:?}"
        );
        assert_eq!(auth.password_verifications(), 2);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn concurrent_wrong_secrets_all_fail_with_the_reason() {
        let dir = tempfile::tempdir().expect("tempdir");
        let auth = service(dir.path(), 1000).await;
        let mut tasks = tokio::task::JoinSet::new();
        for _ in 0..32 {
            let auth = auth.clone();
            tasks.spawn(async move { auth.authenticate("owner", "nope", ip("10.0.0.1")).await });
        }
        while let Some(result) = tasks.join_next().await {
            let result = result.expect("task");
            assert!(
                matches!(result, Err(AuthError::WrongSecret(..))),
                "{result:?}"
            );
        }
        assert!(auth.password_verifications() <= 32);
        assert!(auth.in_flight.lock().expect("lock").is_empty());
    }

    #[tokio::test]
    async fn failures_throttle_only_their_name_and_address() {
        let dir = tempfile::tempdir().expect("tempdir");
        let auth = service(dir.path(), 3).await;
        let (a, b) = (ip("127.0.0.2"), ip("127.0.0.3"));
        let owner = auth
            .authenticate("owner", PASSWORD, a)
            .await
            .expect("owner");
        let refresh = auth.issue_refresh(&owner, "svc").expect("refresh token");
        for _ in 0..3 {
            let r = auth.authenticate("ci", "guess", a).await;
            assert!(matches!(r, Err(AuthError::UnknownIdentity(_))), "{r:?}");
        }
        let before = auth.password_verifications();
        let r = auth.authenticate("ci", "guess", a).await;
        match r {
            Err(AuthError::Throttled {
                ref name,
                retry_after,
                ..
            }) => {
                assert_eq!(name, "ci");
                assert!((1..=60).contains(&retry_after), "{retry_after}");
            }
            other => panic!("not throttled: {other:?}"),
        }
        assert_eq!(
            auth.password_verifications(),
            before,
            "a locked-out check costs no argon2 run"
        );
        assert!(auth.throttled(a, "ci").is_some());
        // Another name from that address, that name from another address,
        // and a refresh token from that address are all checked as usual.
        auth.authenticate("owner", PASSWORD, a)
            .await
            .expect("owner from a");
        let r = auth.authenticate("ci", "guess", b).await;
        assert!(matches!(r, Err(AuthError::UnknownIdentity(_))), "{r:?}");
        auth.principal_from_refresh(&refresh, a)
            .await
            .expect("refresh from a");

        // The owner's own lock-out refuses even the right password.
        for _ in 0..3 {
            let r = auth.authenticate("owner", "wrong", b).await;
            assert!(matches!(r, Err(AuthError::WrongSecret(..))), "{r:?}");
        }
        let r = auth.authenticate("owner", PASSWORD, b).await;
        assert!(matches!(r, Err(AuthError::Throttled { .. })), "{r:?}");
        auth.authenticate("owner", PASSWORD, a)
            .await
            .expect("still fine from a");
    }

    #[test]
    fn parses_scopes() {
        let s = RequestedScope::parse("repository:app/web:pull,push").expect("scope");
        assert_eq!(s.name, "app/web");
        assert_eq!(s.actions, vec!["pull", "push"]);
        assert!(RequestedScope::parse("registry:catalog:*").is_ok());
        assert!(RequestedScope::parse("repository(plugin):app:pull").is_ok());
        for bad in [
            "",
            "repository",
            "repository:app",
            "repository:../x:pull",
            "repository:app:",
            "foo:bar:baz",
        ] {
            assert!(RequestedScope::parse(bad).is_err(), "{bad} accepted");
        }
    }
}
