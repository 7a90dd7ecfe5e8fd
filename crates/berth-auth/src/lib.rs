//! Who a caller is and what it may do: identities and their credentials,
//! roles and scope maps, the token service, failed-login throttling, and the
//! management operations that change them (each recorded in the activity
//! log). The HTTP layer turns an `Authorization` header into a
//! [`Principal`] through [`AuthService`] and asks it whether an action is
//! allowed; nothing here knows about HTTP.

mod cache_config;
mod explain;
pub mod federation;
pub mod manage;
pub mod model;
pub mod secret;
pub mod service;
pub mod throttle;
pub mod token;
pub mod view;

pub use model::{builtin_roles, Grant, IdentityKind, Permission, Principal, Role, Scope};
pub use service::{AuthConfig, AuthService, RequestedScope, TokenPrincipal, TokenResponse};

use berth_metadata::MetadataError;

/// The user name under which a refresh token is presented as a password.
pub const REFRESH_TOKEN_USER: &str = "00000000-0000-0000-0000-000000000000";

#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error(
        "unknown identity '{0}': no owner, admin user, service principal or token has this name"
    )]
    UnknownIdentity(String),
    /// The second field says more where the registry knows more (when
    /// the admin user's passwords were regenerated, and by whom).
    #[error("wrong password or secret for '{0}'{1}")]
    WrongSecret(String, String),
    #[error("{kind} {login}: {credential} expired at {at}; reset the credential and update the clients that use it")]
    Expired {
        kind: &'static str,
        login: String,
        credential: String,
        at: String,
    },
    #[error("{kind} {login} is disabled")]
    Disabled { kind: &'static str, login: String },
    #[error("invalid token: {0}")]
    InvalidToken(String),
    #[error("malformed Authorization header: {0}")]
    MalformedAuthorization(String),
    #[error("too many failed logins for '{name}' from {ip}; retry in {retry_after} seconds (only this name from this address waits)")]
    Throttled {
        ip: String,
        name: String,
        retry_after: u64,
    },
    #[error("{0}")]
    InvalidRequest(String),
    #[error("{0} not found")]
    NotFound(String),
    /// A management lookup by id or name found no identity (the message
    /// says what was looked for).
    #[error("{0}")]
    IdentityNotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    Internal(String),
    #[error(transparent)]
    Federation(#[from] federation::FederationError),
    #[error(transparent)]
    Store(#[from] MetadataError),
}

impl AuthError {
    /// Failures that say the caller's credentials are bad (401), as
    /// opposed to bad requests or server faults.
    pub fn is_authentication_failure(&self) -> bool {
        matches!(
            self,
            AuthError::UnknownIdentity(_)
                | AuthError::WrongSecret(..)
                | AuthError::Federation(_)
                | AuthError::Expired { .. }
                | AuthError::Disabled { .. }
                | AuthError::InvalidToken(_)
                | AuthError::MalformedAuthorization(_)
        )
    }
}

impl AuthError {
    /// A copy, for the errors that carry only text (all but store faults):
    /// what waiters on a shared verification are given.
    pub fn duplicate(&self) -> Option<AuthError> {
        use AuthError::*;
        Some(match self {
            UnknownIdentity(s) => UnknownIdentity(s.clone()),
            WrongSecret(s, d) => WrongSecret(s.clone(), d.clone()),
            Expired {
                kind,
                login,
                credential,
                at,
            } => Expired {
                kind,
                login: login.clone(),
                credential: credential.clone(),
                at: at.clone(),
            },
            Disabled { kind, login } => Disabled {
                kind,
                login: login.clone(),
            },
            InvalidToken(s) => InvalidToken(s.clone()),
            Federation(f) => Federation(f.clone()),
            MalformedAuthorization(s) => MalformedAuthorization(s.clone()),
            Throttled {
                ip,
                name,
                retry_after,
            } => Throttled {
                ip: ip.clone(),
                name: name.clone(),
                retry_after: *retry_after,
            },
            InvalidRequest(s) => InvalidRequest(s.clone()),
            NotFound(s) => NotFound(s.clone()),
            IdentityNotFound(s) => IdentityNotFound(s.clone()),
            Conflict(s) => Conflict(s.clone()),
            Internal(s) => Internal(s.clone()),
            Store(_) => return None,
        })
    }
}
