//! Who may call a management endpoint. A handler states what it needs in
//! its signature — `ManageRead`, `ManageWrite`, `AssignRoles`,
//! `DeleteContent` — and the extractor authenticates the caller and checks
//! that permission at registry scope before the handler runs.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use berth_auth::{Permission, Principal};
use berth_manage::{Access, ManageCode};
use berth_types::ErrorCode;

use super::ManageError;
use crate::error::ApiError;
use crate::AppState;

/// An authenticated management caller.
pub struct Manager {
    pub principal: Principal,
    /// Where the request came from, as the network rules see it.
    pub ip: std::net::IpAddr,
    pub endpoint: berth_network::Endpoint,
}

/// A caller the portal has already authenticated from its session (and
/// whose change carried the session's CSRF token). Only code in this
/// process can put an extension on a request, so no client can send one:
/// the portal calls the management handlers with it, and they check the
/// same permissions as for a Basic or bearer caller.
#[derive(Debug, Clone)]
pub struct SessionCaller(pub Principal);

impl Manager {
    async fn authenticate(parts: &mut Parts, state: &AppState) -> Result<Manager, ManageError> {
        let endpoint = parts
            .extensions
            .get::<berth_network::Endpoint>()
            .cloned()
            .unwrap_or(berth_network::Endpoint::Public);
        if let Some(SessionCaller(principal)) = parts.extensions.get::<SessionCaller>() {
            return Ok(Manager {
                principal: principal.clone(),
                ip: crate::auth::address_of(&parts.extensions),
                endpoint,
            });
        }
        let caller = crate::auth::identify(state, &parts.headers, &parts.extensions).await?;
        if caller.principal.is_anonymous() {
            return Err(ManageError::Api(
                ApiError::new(
                    ErrorCode::Unauthorized,
                    "the management API needs credentials (Basic: owner, admin user or service principal)",
                )
                .with_header("www-authenticate", "Basic realm=\"berth\""),
            ));
        }
        Ok(Manager {
            principal: caller.principal,
            ip: crate::auth::address_of(&parts.extensions),
            endpoint,
        })
    }

    /// Refuses (403) a caller without `access` at registry scope, naming
    /// what it lacks and a built-in role that grants it.
    pub fn require(&self, access: Access) -> Result<(), ManageError> {
        let (permission, role) = match access {
            Access::ManageRead => (Permission::ManageRead, "Reader"),
            Access::ManageWrite => (Permission::ManageWrite, "Contributor"),
            Access::AssignRoles => (Permission::RoleAssignmentsWrite, "Owner"),
            Access::Delete => (Permission::Delete, "Contributor"),
        };
        if self.principal.allows(permission, None) {
            return Ok(());
        }
        Err(ManageError::new(
            ManageCode::Denied,
            format!(
                "{} is not allowed to {} this registry: it needs '{}' at registry scope (for example the {role} role)",
                self.principal.describe(),
                permission.verb(),
                permission.as_str(),
            ),
        ))
    }

    /// For network changes: refuse one that would lock this caller out,
    /// unless `force`.
    pub fn changer(&self, force: Option<bool>) -> crate::network::Changer {
        crate::network::Changer {
            ip: self.ip,
            endpoint: self.endpoint.clone(),
            trusted_service: self.principal.trusted_service,
            force: force.unwrap_or(false),
        }
    }
}

/// A permission extractor: the caller, checked for [`Permit::ACCESS`].
pub trait Permit: Send + 'static {
    const ACCESS: Access;
    fn manager(&self) -> &Manager;
}

macro_rules! permit {
    ($(#[$doc:meta])* $name:ident, $access:ident) => {
        $(#[$doc])*
        pub struct $name(pub Manager);

        impl Permit for $name {
            const ACCESS: Access = Access::$access;
            fn manager(&self) -> &Manager {
                &self.0
            }
        }

        impl FromRequestParts<AppState> for $name {
            type Rejection = ManageError;

            async fn from_request_parts(
                parts: &mut Parts,
                state: &AppState,
            ) -> Result<Self, ManageError> {
                let manager = Manager::authenticate(parts, state).await?;
                manager.require(Access::$access)?;
                Ok($name(manager))
            }
        }
    };
}

permit!(
    /// `registries/manage/read` (Reader and up).
    ManageRead,
    ManageRead
);
permit!(
    /// `registries/manage/write` (Contributor and up).
    ManageWrite,
    ManageWrite
);
permit!(
    /// `roleAssignments/write` (Owner).
    AssignRoles,
    AssignRoles
);
permit!(
    /// `repositories/content/delete` at registry scope.
    DeleteContent,
    Delete
);
