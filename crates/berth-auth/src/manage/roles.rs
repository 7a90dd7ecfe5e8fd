//! Custom role definitions and role assignments.

use std::collections::HashMap;

use berth_manage::identities::IdentityKind;
use berth_manage::roles::{RoleAssignment, RoleDefinition};
use berth_metadata::{RoleAssignmentRecord, RoleDefinitionRecord};
use berth_util::now;
use serde_json::json;

use super::activity;
use crate::model::{Permission, Principal, Scope};
use crate::service::AuthService;
use crate::AuthError;
use berth_util::rfc3339;

impl AuthService {
    pub(crate) async fn require_role(&self, role: &str) -> Result<(), AuthError> {
        if self.roles().await?.iter().any(|r| r.name == role) {
            Ok(())
        } else {
            Err(AuthError::NotFound(format!(
                "role '{role}' (see 'berth role definition list')"
            )))
        }
    }

    pub async fn role_definitions(&self) -> Result<Vec<RoleDefinition>, AuthError> {
        Ok(self
            .roles()
            .await?
            .into_iter()
            .map(|r| RoleDefinition {
                name: r.name,
                description: r.description,
                builtin: r.builtin,
                actions: r
                    .permissions
                    .iter()
                    .map(|p| p.as_str().to_string())
                    .collect(),
            })
            .collect())
    }

    pub async fn create_role(
        &self,
        actor: &Principal,
        name: &str,
        description: &str,
        actions: &[String],
    ) -> Result<RoleDefinition, AuthError> {
        if crate::model::builtin_roles().iter().any(|r| r.0 == name) {
            return Err(AuthError::Conflict(format!("'{name}' is a built-in role")));
        }
        if actions.is_empty() {
            return Err(AuthError::InvalidRequest(
                "a role needs at least one action".into(),
            ));
        }
        for a in actions {
            if Permission::parse(a).is_none() {
                return Err(AuthError::InvalidRequest(format!(
                    "'{a}' is not an action; use {}",
                    Permission::ALL.map(|p| p.as_str()).join(", ")
                )));
            }
        }
        let record = RoleDefinitionRecord {
            name: name.into(),
            description: description.into(),
            actions_json: serde_json::to_string(actions)
                .map_err(|e| AuthError::Internal(e.to_string()))?,
            created_at: now(),
        };
        self.store
            .put_role_definition(
                &record,
                &activity(
                    actor,
                    "create role definition",
                    name,
                    None,
                    Some(json!({"actions": actions})),
                ),
            )
            .await?;
        self.invalidate();
        Ok(RoleDefinition {
            name: name.into(),
            description: description.into(),
            builtin: false,
            actions: actions.to_vec(),
        })
    }

    /// Assigns `role` to an identity (by id or login) at `scope`.
    pub async fn create_assignment(
        &self,
        actor: &Principal,
        assignee: &str,
        role: &str,
        scope: &str,
    ) -> Result<RoleAssignment, AuthError> {
        self.require_role(role).await?;
        let scope = Scope::parse(scope).map_err(AuthError::InvalidRequest)?;
        let principal = self.find_identity(assignee).await?;
        if principal.kind == IdentityKind::Token.as_str() {
            return Err(AuthError::InvalidRequest(
                "tokens get their access from scope maps, not role assignments".into(),
            ));
        }
        let record = RoleAssignmentRecord {
            id: uuid::Uuid::new_v4().to_string(),
            principal_id: principal.id.clone(),
            role: role.into(),
            scope: scope.to_string().trim_start_matches('/').to_string(),
            created_at: now(),
        };
        let after = json!({"principalId": principal.id, "principal": principal.login, "role": role, "scope": scope.to_string()});
        self.store
            .create_role_assignment(
                &record,
                &activity(
                    actor,
                    "create role assignment",
                    &principal.login,
                    None,
                    Some(after),
                ),
            )
            .await?;
        self.invalidate();
        Ok(RoleAssignment {
            id: record.id,
            principal_id: principal.id,
            principal: Some(principal.display_name),
            role: record.role,
            scope: scope.to_string(),
            orphaned: false,
            created_at: rfc3339(record.created_at),
        })
    }

    /// Assignments, with orphaned ones (principal gone) marked.
    pub async fn assignments(
        &self,
        assignee: Option<&str>,
    ) -> Result<Vec<RoleAssignment>, AuthError> {
        let principal_id = match assignee {
            Some(a) => Some(match self.find_identity(a).await {
                Ok(i) => i.id,
                // A deleted principal's id still finds its orphaned assignments.
                Err(AuthError::IdentityNotFound(_)) => a.to_string(),
                Err(e) => return Err(e),
            }),
            None => None,
        };
        // One read of the identities, not one per assignment.
        let names: HashMap<String, String> = self
            .store
            .identities(None)
            .await?
            .into_iter()
            .map(|i| (i.id, i.display_name))
            .collect();
        let mut out = Vec::new();
        for a in self.store.role_assignments(principal_id.as_deref()).await? {
            let principal = names.get(&a.principal_id).cloned();
            out.push(RoleAssignment {
                orphaned: principal.is_none(),
                principal,
                scope: Scope::parse(&a.scope)
                    .map(|s| s.to_string())
                    .unwrap_or(a.scope),
                id: a.id,
                principal_id: a.principal_id,
                role: a.role,
                created_at: rfc3339(a.created_at),
            });
        }
        Ok(out)
    }

    pub async fn delete_assignment(&self, actor: &Principal, id: &str) -> Result<(), AuthError> {
        if !self
            .store
            .delete_role_assignment(
                id,
                &activity(actor, "delete role assignment", id, None, None),
            )
            .await?
        {
            return Err(AuthError::NotFound(format!("role assignment '{id}'")));
        }
        self.invalidate();
        Ok(())
    }
}
