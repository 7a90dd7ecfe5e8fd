//! Roles (named sets of permissions: the built-in `AcrPull`, `AcrPush`,
//! `Reader`, `Contributor`, `Owner`... and custom ones) and their
//! assignments to identities at a scope.

use serde::{Deserialize, Serialize};

use crate::endpoint;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RoleDefinition {
    pub name: String,
    pub description: String,
    pub builtin: bool,
    /// Permissions, e.g. `repositories/content/read`.
    pub actions: Vec<String>,
}

/// `GET /api/v1/role-definitions`
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListRoleDefinitions {}
endpoint!(ListRoleDefinitions => Vec<RoleDefinition>, Get "/api/v1/role-definitions", ManageRead);

/// `POST /api/v1/role-definitions`: a custom role.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CreateRoleDefinition {
    pub name: String,
    #[serde(default)]
    pub description: String,
    pub actions: Vec<String>,
}
endpoint!(CreateRoleDefinition => RoleDefinition, Post "/api/v1/role-definitions", AssignRoles, status 201);

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RoleAssignment {
    pub id: String,
    pub principal_id: String,
    /// The principal's name, while it exists.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub principal: Option<String>,
    pub role: String,
    /// A repository, `prefix/*`, or `registry`.
    pub scope: String,
    /// The principal no longer exists (deleted, perhaps re-created with a
    /// new id): this assignment grants nothing.
    pub orphaned: bool,
    pub created_at: String,
}

/// `GET /api/v1/role-assignments[?assignee=ID-OR-NAME]`
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ListRoleAssignments {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub assignee: Option<String>,
}
endpoint!(ListRoleAssignments => Vec<RoleAssignment>, Get "/api/v1/role-assignments", ManageRead);

/// `POST /api/v1/role-assignments`
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CreateRoleAssignment {
    /// An identity's id or name.
    pub assignee: String,
    pub role: String,
    /// A repository, `prefix/*`, or the registry (empty, the default).
    #[serde(default)]
    pub scope: String,
}
endpoint!(CreateRoleAssignment => RoleAssignment, Post "/api/v1/role-assignments", AssignRoles, status 201);

/// `DELETE /api/v1/role-assignments/{id}`
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeleteRoleAssignment {
    #[serde(skip)]
    pub id: String,
}
endpoint!(DeleteRoleAssignment => (), Delete "/api/v1/role-assignments/{id}", AssignRoles, status 204, param id);
