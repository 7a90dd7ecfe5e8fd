//! The network layer: in front of everything but health checks, it works
//! out the client address (socket peer, or `X-Forwarded-For` from a trusted
//! proxy) and the endpoint the request arrived on, and applies the network
//! rules (`berth-network`). Rules are runtime state in the metadata store;
//! every node re-reads them each second, and a change made here applies to
//! new requests at once.

use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, RwLock};

use axum::extract::{ConnectInfo, Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use berth_auth::AuthService;
use berth_metadata::Activity;
use berth_network::{evaluate, Decision, Endpoint, NetworkSettings, RuleError, Subnet};
use berth_types::ErrorCode;
use ipnet::IpNet;

use crate::error::ApiError;
use crate::manage::ManageError;
use crate::AppState;

/// Compare-and-set rounds before a change gives up.
const CAS_ATTEMPTS: usize = 20;

pub const SETTING_KEY: &str = "networkRuleSet";

/// A request the network rules deny unless its caller turns out to be a
/// trusted service; carries the denial message.
#[derive(Debug, Clone)]
pub struct BypassPending(pub String);

/// The address a request is attributed to (after trusted-proxy handling).
#[derive(Debug, Clone, Copy)]
pub struct ClientAddress(pub IpAddr);

/// Network configuration and the current runtime rules.
pub struct NetworkPolicy {
    pub subnets: Vec<Subnet>,
    pub trusted_proxies: Vec<IpNet>,
    current: RwLock<Arc<NetworkSettings>>,
    updates: tokio::sync::Mutex<()>,
}

impl NetworkPolicy {
    pub fn new(subnets: Vec<Subnet>, trusted_proxies: Vec<IpNet>) -> Self {
        NetworkPolicy {
            subnets,
            trusted_proxies,
            current: RwLock::new(Arc::new(NetworkSettings::default())),
            updates: tokio::sync::Mutex::new(()),
        }
    }

    pub fn settings(&self) -> Arc<NetworkSettings> {
        self.current
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Re-reads the rules from the store.
    pub async fn reload(&self, auth: &AuthService) -> Result<(), ApiError> {
        let (_, settings) = Self::stored(auth).await?;
        *self.current.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(settings);
        Ok(())
    }

    /// The rule set as stored: its JSON (for compare-and-set) and its value.
    async fn stored(auth: &AuthService) -> Result<(Option<String>, NetworkSettings), ApiError> {
        let json = auth
            .store()
            .setting(SETTING_KEY)
            .await
            .map_err(ApiError::store)?;
        let settings = match &json {
            Some(json) => serde_json::from_str(json).map_err(|e| {
                ApiError::internal(format!("stored network rules are unreadable: {e}"))
            })?,
            None => NetworkSettings::default(),
        };
        Ok((json, settings))
    }

    /// Applies `change` to the rules as stored, stores the result with an
    /// activity entry, and makes it current. Across nodes the write is a
    /// compare-and-set: if another node changed the rules meanwhile, the
    /// change is applied again to theirs, so concurrent changes are all kept.
    ///
    /// With `changer`, a change that would refuse the changer's own address
    /// (on the endpoint its request came in on) is refused itself unless
    /// `changer.force`: the management API sits behind these rules, so
    /// applying it would lock the caller out with no way back but
    /// `berth recover` on the server host.
    pub async fn update(
        &self,
        auth: &AuthService,
        actor: &str,
        changer: Option<&Changer>,
        operation: &str,
        change: impl Fn(&mut NetworkSettings, &[Subnet]) -> Result<(), RuleError>,
    ) -> Result<Arc<NetworkSettings>, ManageError> {
        let _serial = self.updates.lock().await;
        let internal = ApiError::store;
        for _ in 0..CAS_ATTEMPTS {
            let (stored, before) = Self::stored(auth).await?;
            let mut after = before.clone();
            change(&mut after, &self.subnets)?;
            if let Some(changer) = changer.filter(|c| !c.force) {
                changer.check(&before, &after, &self.subnets)?;
            }
            let json = serde_json::to_string(&after).map_err(ApiError::internal)?;
            let unchanged = stored.as_deref() == Some(json.as_str());
            let stored_it = unchanged
                || auth
                    .store()
                    .replace_setting(
                        SETTING_KEY,
                        stored.as_deref(),
                        &json,
                        &Activity {
                            actor: actor.to_string(),
                            operation: operation.into(),
                            target: "networkRuleSet".into(),
                            before: serde_json::to_string(&before).ok(),
                            after: Some(json.clone()),
                        },
                    )
                    .await
                    .map_err(internal)?;
            if stored_it {
                let after = Arc::new(after);
                *self.current.write().unwrap_or_else(|p| p.into_inner()) = after.clone();
                return Ok(after);
            }
        }
        Err(ManageError::conflict(
            "the network rules kept changing under this update (other nodes are changing them too); try again",
        ))
    }

    /// The decision for `ip` on `endpoint`, without knowing the caller.
    pub fn decide(&self, endpoint: &Endpoint, ip: IpAddr, trusted: Option<bool>) -> Decision {
        evaluate(&self.settings(), &self.subnets, endpoint, ip, trusted)
    }
}

/// Who is changing the network rules, as the rules see them.
#[derive(Debug, Clone)]
pub struct Changer {
    pub ip: IpAddr,
    pub endpoint: Endpoint,
    pub trusted_service: bool,
    /// Apply even if it locks the changer out.
    pub force: bool,
}

impl Changer {
    /// Refuses (409) a change after which the changer's own requests would
    /// be denied, when they are allowed now.
    fn check(
        &self,
        before: &NetworkSettings,
        after: &NetworkSettings,
        subnets: &[Subnet],
    ) -> Result<(), ManageError> {
        let decide = |s: &NetworkSettings| {
            evaluate(
                s,
                subnets,
                &self.endpoint,
                self.ip,
                Some(self.trusted_service),
            )
        };
        let now = decide(before);
        let then = decide(after);
        if !now.allowed || then.allowed {
            return Ok(());
        }
        let ip = berth_network::canonical(self.ip);
        let fix = if after.public_network_access {
            format!(
                "add a rule for it first (berth network-rule add --ip-address {ip}; API: POST /api/v1/network/rules {{\"ipAddress\": \"{ip}\"}})"
            )
        } else {
            "connect through a private endpoint instead".to_string()
        };
        Err(ManageError::conflict(
            format!(
                "refused: this change would lock you out — your address {ip} (as this registry sees it, on the {} endpoint) would be denied ({}), and the management API is behind the same rules; {fix}, or repeat with --force (API: \"force\": true) to apply it anyway (recovery then needs 'berth recover' on the server host)",
                self.endpoint, then.reason
            ),
        ))
    }
}

fn is_health_check(path: &str) -> bool {
    matches!(path, "/healthz" | "/readyz" | "/metrics")
}

/// The network middleware.
pub async fn guard(State(state): State<AppState>, mut request: Request, next: Next) -> Response {
    let peer = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip())
        .unwrap_or(IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED));
    let forwarded = request
        .headers()
        .get("x-forwarded-for")
        .and_then(|v| v.to_str().ok());
    let policy = &state.network;
    let ip = berth_network::client_address(peer, forwarded, &policy.trusted_proxies);
    request.extensions_mut().insert(ClientAddress(ip));
    if is_health_check(request.uri().path()) {
        return next.run(request).await;
    }
    let endpoint = request
        .extensions()
        .get::<Endpoint>()
        .cloned()
        .unwrap_or(Endpoint::Public);
    let mut decision = policy.decide(&endpoint, ip, None);
    let has_credentials = request.headers().contains_key(http::header::AUTHORIZATION);
    if !decision.allowed && decision.needs_trusted_caller {
        if request.uri().path().starts_with("/oauth2/") {
            // Token requests may carry their credentials in the form body:
            // the token service decides once it knows who is asking.
            request
                .extensions_mut()
                .insert(BypassPending(decision.message(ip)));
            let mut response = next.run(request).await;
            response.extensions_mut().insert(ClientAddress(ip));
            return response;
        }
        if !has_credentials && request.uri().path().starts_with("/v2") {
            // Only a trusted service can pass, and clients send credentials
            // only when challenged: challenge, and decide on the retry.
            let mut response = ApiError::new(
                ErrorCode::Unauthorized,
                format!(
                    "{}; only a trusted service may bypass the rules: authenticate",
                    decision.message(ip)
                ),
            )
            .with_header(
                "www-authenticate",
                &crate::auth::bearer_challenge(request.headers()),
            )
            .into_response();
            response.extensions_mut().insert(ClientAddress(ip));
            return response;
        }
        // Only a trusted service can pass now: find out who is calling.
        if let Ok(caller) =
            crate::auth::identify(&state, request.headers(), request.extensions()).await
        {
            decision = policy.decide(&endpoint, ip, Some(caller.principal.trusted_service));
        }
    } else if !decision.allowed && has_credentials {
        // Name the caller in the login event of the denial.
        let _ = crate::auth::identify(&state, request.headers(), request.extensions()).await;
    }
    if !decision.allowed {
        tracing::info!(%ip, %endpoint, rule = %decision.rule, "network rules denied the request");
        if let Some(slot) = request.extensions().get::<crate::audit::AuditSlot>() {
            slot.update(|i| i.network_denied = true);
        }
        let mut response = ApiError::new(ErrorCode::Denied, decision.message(ip)).into_response();
        response.extensions_mut().insert(ClientAddress(ip));
        return response;
    }
    let mut response = next.run(request).await;
    response.extensions_mut().insert(ClientAddress(ip));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn changer(ip: &str, endpoint: Endpoint) -> Changer {
        Changer {
            ip: ip.parse().expect("ip"),
            endpoint,
            trusted_service: false,
            force: false,
        }
    }

    #[test]
    fn a_change_that_refuses_the_changer_is_refused_naming_the_address() {
        let open = NetworkSettings::default();
        let deny = NetworkSettings {
            default_action: berth_network::DefaultAction::Deny,
            ..NetworkSettings::default()
        };
        let me = changer("203.0.113.7", Endpoint::Public);
        let err = me.check(&open, &deny, &[]).expect_err("lock-out refused");
        assert_eq!(err.status(), http::StatusCode::CONFLICT);
        assert_eq!(err.code(), "CONFLICT");
        assert!(err.message().contains("203.0.113.7"), "{}", err.message());
        assert!(err.message().contains("--force"), "{}", err.message());

        // With a rule for the address (or a range holding it) it is fine.
        let mut ruled = deny.clone();
        ruled.add_ip_rule("203.0.113.0/24").expect("rule");
        assert!(me.check(&open, &ruled, &[]).is_ok());
        // Only a change from allowed to denied is a lock-out.
        assert!(changer("198.51.100.1", Endpoint::Public)
            .check(&ruled, &deny, &[])
            .is_ok());
        // Private endpoints are not subject to the rules.
        assert!(changer("203.0.113.7", Endpoint::Private("vnet".into()))
            .check(&open, &deny, &[])
            .is_ok());
        // Public access off refuses everyone on the public endpoint.
        let closed = NetworkSettings {
            public_network_access: false,
            ..NetworkSettings::default()
        };
        let err = me.check(&open, &closed, &[]).expect_err("refused");
        assert!(
            err.message().contains("private endpoint"),
            "{}",
            err.message()
        );
    }
}
