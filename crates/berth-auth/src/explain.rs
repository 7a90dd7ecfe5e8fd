//! Why an identity may or may not do something: the trace `explain`
//! returns (the identity's state, the grants that apply, what is missing).

use berth_manage::explain::AccessTrace;
use berth_util::now;

use crate::model::{IdentityKind, Permission, Scope};
use crate::service::AuthService;
use crate::{view, AuthError};
use berth_util::rfc3339;

impl AuthService {
    /// Why `identity` may or may not do `permission` on `repository`: the
    /// identity's state, the grants that apply, what is missing, and any
    /// orphaned assignments (of deleted principals) in the registry.
    pub async fn explain(
        &self,
        identity: Option<&str>,
        permission: Permission,
        repository: Option<&str>,
    ) -> Result<AccessTrace, AuthError> {
        let mut trace = AccessTrace {
            identity: None,
            identity_problem: None,
            permission: permission.as_str().to_string(),
            repository: repository.map(str::to_string),
            allowed: false,
            granted_by: Vec::new(),
            other_assignments: Vec::new(),
            orphaned_assignments: self
                .assignments(None)
                .await?
                .into_iter()
                .filter(|a| a.orphaned)
                .collect(),
            missing: None,
        };
        let principal = match identity {
            None | Some("") | Some("anonymous") => {
                let anonymous = self.anonymous();
                if anonymous.allows(permission, repository) {
                    trace.granted_by.push("anonymous pull is enabled".into());
                }
                anonymous
            }
            Some(key) => {
                let record = match self.find_identity(key).await {
                    Ok(r) => r,
                    Err(AuthError::IdentityNotFound(_)) => {
                        trace.identity_problem = Some(format!(
                            "no identity '{key}' exists (deleted, or never created); a pull with it fails with 401 unknown identity"
                        ));
                        trace.missing = Some("an existing identity".into());
                        return Ok(trace);
                    }
                    Err(e) => return Err(e),
                };
                trace.identity = Some(view::identity(&record)?);
                if let Err(e) = self.ensure_enabled(&record) {
                    trace.identity_problem = Some(e.to_string());
                }
                let expired: Vec<String> = self
                    .store
                    .credentials(&record.id)
                    .await?
                    .iter()
                    .filter(|c| c.expires_at.is_some_and(|e| e <= now()))
                    .map(|c| {
                        format!(
                            "{} expired at {}",
                            c.name,
                            rfc3339(c.expires_at.unwrap_or(0))
                        )
                    })
                    .collect();
                if !expired.is_empty() && trace.identity_problem.is_none() {
                    trace.identity_problem = Some(format!("credentials: {}", expired.join("; ")));
                }
                let principal = self.principal_of(&record).await?;
                match principal.kind {
                    IdentityKind::Owner => trace.granted_by.push("owner: every action".into()),
                    IdentityKind::Admin if principal.allows(permission, repository) => trace
                        .granted_by
                        .push("admin user: push, pull, delete".into()),
                    IdentityKind::Token => {
                        for g in &principal.grants {
                            let line = format!(
                                "scope map '{}': {} on {}",
                                record.scope_map.clone().unwrap_or_default(),
                                g.permission.as_str(),
                                g.scope
                            );
                            if g.permission == permission && g.scope.covers(repository) {
                                trace.granted_by.push(line);
                            } else {
                                trace.other_assignments.push(line);
                            }
                        }
                    }
                    _ => {}
                }
                if principal.kind != IdentityKind::Token {
                    let roles = self.roles().await?;
                    for a in self.store.role_assignments(Some(&record.id)).await? {
                        let scope = Scope::parse(&a.scope).map_err(AuthError::Internal)?;
                        let grants = roles
                            .iter()
                            .find(|r| r.name == a.role)
                            .is_some_and(|r| r.permissions.contains(&permission));
                        let line = format!("role {} at {}", a.role, scope);
                        if grants && scope.covers(repository) {
                            trace.granted_by.push(line);
                        } else {
                            trace.other_assignments.push(line);
                        }
                    }
                }
                principal
            }
        };
        trace.allowed =
            principal.allows(permission, repository) && trace.identity_problem.is_none();
        if !principal.allows(permission, repository) {
            let role = crate::model::builtin_roles()
                .into_iter()
                .find(|r| r.2.contains(&permission))
                .map(|r| r.0)
                .unwrap_or("Owner");
            trace.missing = Some(match principal.kind {
                IdentityKind::Token => format!(
                    "the token's scope map needs an action granting '{}' on {}",
                    permission.as_str(),
                    repository.unwrap_or("the registry")
                ),
                IdentityKind::Anonymous => "credentials (anonymous pull is disabled)".to_string(),
                _ => format!(
                    "a role assignment granting '{}' on {} (for example {role})",
                    permission.as_str(),
                    repository.unwrap_or("the registry")
                ),
            });
        }
        Ok(trace)
    }
}
