//! Client-side diagnostics. `check-pull` does what a kubelet does to pull
//! an image — find credentials for the registry host, resolve it, connect
//! (through a proxy if one is configured), negotiate TLS, follow the Bearer
//! challenge, fetch a token, fetch the manifest, pick the platform, fetch a
//! layer (following a data-endpoint redirect) — and stops at the first
//! failure with one [`Cause`]: a stable code, the evidence, and the fix.
//! Each cause has its own exit status, documented in docs/diagnostics.md.

pub mod credentials;
pub mod health;
pub mod pull;
pub mod transport;

use serde::Serialize;

/// Why a pull fails, in the seed documents' terms.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Cause {
    /// The pull secret / config has no credentials for this registry host,
    /// so the pull went anonymous and was refused.
    NoCredentialsForHost,
    DnsError,
    ConnectTimeout,
    ConnectRefused,
    TlsError,
    ProxyError,
    /// 403 from the registry's network rules.
    NetworkDenied,
    /// 401: unknown identity, wrong secret, expired secret, disabled identity.
    Unauthorized,
    /// 403: authenticated but not permitted.
    PermissionDenied,
    /// 403 for a repository-scoped token: its scope map does not cover the
    /// repository (a role would not help: tokens have none).
    ScopeMapDenied,
    /// 403 for a service principal deleted and re-created: its role
    /// assignment still names the old app id.
    OrphanedRoleAssignment,
    /// 401 for the admin user: the password was regenerated since the
    /// client's copy was taken.
    AdminPasswordRegenerated,
    /// 401 for a federated (service-account) token: issuer not trusted,
    /// subject not federated, audience mismatch, expired, unknown key,
    /// issuer unreachable — the evidence names which.
    FederatedTokenRefused,
    /// 404: repository, tag or registry name wrong.
    NotFound,
    NoMatchingPlatform,
    DataEndpointError,
    Throttled,
    /// 503: the registry is up but one of its backends (database, blob
    /// store) is not answering.
    RegistryUnavailable,
    /// A cached repository's upstream refused the rule's credential set
    /// (or wants one the rule does not give).
    CacheCredentialsRejected,
    /// A cached repository's upstream rate-limits the registry, and the
    /// content is not cached yet.
    CacheUpstreamRateLimited,
    /// A cached repository's upstream is down, unreachable or broken, and
    /// the content is not cached yet.
    CacheUpstreamUnreachable,
    /// The repository does not exist, cache rules exist, and none targets
    /// it (a typo in the cache's prefix, usually).
    CacheNoRule,
    /// Something the checker does not recognise.
    Unexpected,
}

impl Cause {
    /// The process exit status for this cause.
    pub fn exit_code(self) -> u8 {
        match self {
            Cause::NoCredentialsForHost => 10,
            Cause::DnsError => 11,
            Cause::ConnectTimeout => 12,
            Cause::ConnectRefused => 13,
            Cause::TlsError => 14,
            Cause::ProxyError => 15,
            Cause::NetworkDenied => 16,
            Cause::Unauthorized => 17,
            Cause::PermissionDenied => 18,
            Cause::NotFound => 19,
            Cause::NoMatchingPlatform => 20,
            Cause::DataEndpointError => 21,
            Cause::Throttled => 22,
            Cause::RegistryUnavailable => 23,
            Cause::ScopeMapDenied => 24,
            Cause::OrphanedRoleAssignment => 25,
            Cause::AdminPasswordRegenerated => 26,
            Cause::FederatedTokenRefused => 27,
            Cause::CacheCredentialsRejected => 28,
            Cause::CacheUpstreamRateLimited => 29,
            Cause::CacheUpstreamUnreachable => 30,
            Cause::CacheNoRule => 31,
            Cause::Unexpected => 1,
        }
    }

    pub fn code(self) -> &'static str {
        match self {
            Cause::NoCredentialsForHost => "NO_CREDENTIALS_FOR_HOST",
            Cause::DnsError => "CONNECTIVITY_DNS_ERROR",
            Cause::ConnectTimeout => "CONNECTIVITY_TIMEOUT_ERROR",
            Cause::ConnectRefused => "CONNECTIVITY_REFUSED_ERROR",
            Cause::TlsError => "CONNECTIVITY_SSL_ERROR",
            Cause::ProxyError => "CONNECTIVITY_PROXY_ERROR",
            Cause::NetworkDenied => "CONNECTIVITY_FORBIDDEN_ERROR",
            Cause::Unauthorized => "UNAUTHORIZED",
            Cause::PermissionDenied => "PERMISSION_DENIED",
            Cause::NotFound => "IMAGE_NOT_FOUND",
            Cause::NoMatchingPlatform => "NO_MATCHING_PLATFORM",
            Cause::DataEndpointError => "CONNECTIVITY_DATA_ENDPOINT_ERROR",
            Cause::Throttled => "CONNECTIVITY_TOOMANYREQUESTS_ERROR",
            Cause::RegistryUnavailable => "REGISTRY_UNAVAILABLE",
            Cause::ScopeMapDenied => "TOKEN_SCOPE_MAP_DENIED",
            Cause::OrphanedRoleAssignment => "ORPHANED_ROLE_ASSIGNMENT",
            Cause::AdminPasswordRegenerated => "ADMIN_PASSWORD_REGENERATED",
            Cause::FederatedTokenRefused => "FEDERATED_TOKEN_REFUSED",
            Cause::CacheCredentialsRejected => "CACHE_CREDENTIALS_REJECTED",
            Cause::CacheUpstreamRateLimited => "CACHE_UPSTREAM_RATE_LIMITED",
            Cause::CacheUpstreamUnreachable => "CACHE_UPSTREAM_UNREACHABLE",
            Cause::CacheNoRule => "CACHE_NO_RULE",
            Cause::Unexpected => "UNEXPECTED",
        }
    }
}

/// One step that passed, for the transcript.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Step {
    pub name: String,
    pub detail: String,
}

/// The outcome of a check (`berth check-pull -o json`: camelCase keys).
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Verdict {
    pub ok: bool,
    pub steps: Vec<Step>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cause: Option<Cause>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub code: Option<&'static str>,
    /// What the registry or the network said.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub evidence: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fix: Option<String>,
    pub exit_code: u8,
}

impl Verdict {
    pub fn failed(steps: Vec<Step>, cause: Cause, evidence: String, fix: String) -> Verdict {
        Verdict {
            ok: false,
            steps,
            cause: Some(cause),
            code: Some(cause.code()),
            evidence: Some(evidence),
            fix: Some(fix),
            exit_code: cause.exit_code(),
        }
    }

    pub fn passed(steps: Vec<Step>) -> Verdict {
        Verdict {
            ok: true,
            steps,
            cause: None,
            code: None,
            evidence: None,
            fix: None,
            exit_code: 0,
        }
    }
}
