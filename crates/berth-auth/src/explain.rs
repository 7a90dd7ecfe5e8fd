//! Why an identity may or may not do something: the trace `explain`
//! returns (the identity's state, the grants that apply, what is missing).

use berth_manage::explain::AccessTrace;
use berth_util::now;

use crate::model::{IdentityKind, Permission, Principal, Scope};
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
            federated_credentials: Vec::new(),
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
                if record.kind == IdentityKind::ServicePrincipal.as_str() {
                    trace.federated_credentials = self.federated_credentials(&record.id).await?;
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

/// A role assignment left behind by a deleted service principal that had
/// the same name as the caller: what a principal deleted and re-created
/// (with a new app id) has lost.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrphanedFor {
    pub assignment_id: String,
    /// The deleted principal's app id.
    pub old_app_id: String,
    pub role: String,
    pub scope: String,
    /// When it was deleted (RFC 3339), from the activity log.
    pub deleted_at: String,
}

impl AuthService {
    /// Says why `principal` may not do `permission` on `repository` where
    /// the registry knows more than "it lacks a role": a token is governed
    /// by its scope map (and the fix is a scope-map change, not a role),
    /// and a service principal deleted and re-created under the same name
    /// left its assignments behind on the old app id. `None` when there is
    /// nothing more to say.
    pub async fn explain_denial(
        &self,
        principal: &Principal,
        permission: Permission,
        repository: Option<&str>,
    ) -> Result<Option<String>, AuthError> {
        let target = match repository {
            Some(r) => format!("repository '{r}'"),
            None => "this registry".to_string(),
        };
        match principal.kind {
            IdentityKind::Token => {
                let Some(action) = scope_action(permission) else {
                    return Ok(None);
                };
                let Some(map_name) = &principal.scope_map else {
                    return Ok(Some(format!(
                        "{} is not allowed to {} {target}: a token's rights come from its scope map, not from roles, and this token has none",
                        principal.describe(),
                        permission.verb()
                    )));
                };
                let rules = self
                    .scope_maps()
                    .await?
                    .into_iter()
                    .find(|m| &m.name == map_name)
                    .map(|m| m.rules)
                    .unwrap_or_default();
                let granted = if rules.is_empty() {
                    "nothing".to_string()
                } else {
                    rules.iter().map(rule_text).collect::<Vec<_>>().join(", ")
                };
                let Some(repo) = repository else {
                    return Ok(Some(format!(
                        "{} is not allowed to {} {target}: a token's rights come from its scope map '{map_name}' (which grants {granted}), and scope maps grant repository actions only",
                        principal.describe(),
                        permission.verb()
                    )));
                };
                let mut flags: Vec<String> = rules
                    .iter()
                    .map(|r| format!("--repository '{}'", rule_text(r)))
                    .collect();
                flags.push(format!("--repository '{repo}={action}'"));
                Ok(Some(format!(
                    "{} is not allowed to {} {target}: a token's rights come from its scope map, not from roles, and scope map '{map_name}' grants {granted} — nothing with '{action}' on '{repo}'. Add it to the scope map: berth scope-map update --name {map_name} {}",
                    principal.describe(),
                    permission.verb(),
                    flags.join(" ")
                )))
            }
            IdentityKind::ServicePrincipal => {
                let orphans = self.orphaned_for_name(&principal.name).await?;
                if orphans.is_empty() {
                    return Ok(None);
                }
                let lines: Vec<String> = orphans
                    .iter()
                    .map(|o| {
                        format!(
                            "role assignment {} gives {} at scope '{}' to app id {}, the service principal '{}' deleted at {} — it is orphaned; give the role to the current app id: berth role assignment create --assignee {} --role {} --scope '{}'",
                            o.assignment_id,
                            o.role,
                            o.scope,
                            o.old_app_id,
                            principal.name,
                            o.deleted_at,
                            principal.login,
                            o.role,
                            o.scope
                        )
                    })
                    .collect();
                Ok(Some(format!(
                    "{} is not allowed to {} {target}: it has no role that grants '{}' there. This service principal was deleted and re-created: {}",
                    principal.describe(),
                    permission.verb(),
                    permission.as_str(),
                    lines.join("; ")
                )))
            }
            _ => Ok(None),
        }
    }

    /// Orphaned assignments whose deleted principal bore `name`.
    pub async fn orphaned_for_name(&self, name: &str) -> Result<Vec<OrphanedFor>, AuthError> {
        let orphans: Vec<_> = self
            .assignments(None)
            .await?
            .into_iter()
            .filter(|a| a.orphaned)
            .collect();
        if orphans.is_empty() {
            return Ok(Vec::new());
        }
        // Who each orphan was: the deletion's record in the activity log
        // holds the identity as it was.
        let mut deleted: Vec<(String, String, String, i64)> = Vec::new();
        for record in self.store().activities(0, 100_000).await? {
            if record.activity.operation != "delete service principal" {
                continue;
            }
            let Some(before) = record
                .activity
                .before
                .as_deref()
                .and_then(|b| serde_json::from_str::<serde_json::Value>(b).ok())
            else {
                continue;
            };
            let field = |k: &str| before[k].as_str().unwrap_or_default().to_string();
            deleted.push((field("id"), field("login"), field("name"), record.time));
        }
        Ok(orphans
            .into_iter()
            .filter_map(|a| {
                let (_, login, _, time) = deleted
                    .iter()
                    .rev()
                    .find(|(id, _, n, _)| id == &a.principal_id && n == name)?;
                Some(OrphanedFor {
                    assignment_id: a.id,
                    old_app_id: login.clone(),
                    role: a.role,
                    scope: a.scope,
                    deleted_at: rfc3339(*time),
                })
            })
            .collect())
    }
}

/// The scope-map action that grants `permission`, if one does.
fn scope_action(permission: Permission) -> Option<&'static str> {
    Some(match permission {
        Permission::Pull => "content/read",
        Permission::Push => "content/write",
        Permission::Delete => "content/delete",
        Permission::MetadataRead => "metadata/read",
        Permission::MetadataWrite => "metadata/write",
        _ => return None,
    })
}

fn rule_text(rule: &berth_manage::tokens::ScopeRule) -> String {
    format!(
        "{}={}",
        rule.repository,
        rule.actions
            .iter()
            .map(|a| a.as_str())
            .collect::<Vec<_>>()
            .join(",")
    )
}
