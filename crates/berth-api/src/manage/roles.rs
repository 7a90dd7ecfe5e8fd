//! Role definitions and role assignments.

use berth_manage::roles::*;

use super::{AssignRoles, ManageError, ManageRead, Routes};
use crate::AppState;

type Result<T> = std::result::Result<T, ManageError>;

pub(super) fn routes(r: Routes) -> Routes {
    r.serve(list_roles)
        .serve(create_role)
        .serve(list_assignments)
        .serve(create_assignment)
        .serve(delete_assignment)
}

async fn list_roles(
    s: AppState,
    _: ManageRead,
    _: ListRoleDefinitions,
) -> Result<Vec<RoleDefinition>> {
    Ok(s.auth.role_definitions().await?)
}

async fn create_role(
    s: AppState,
    m: AssignRoles,
    r: CreateRoleDefinition,
) -> Result<RoleDefinition> {
    Ok(s.auth
        .create_role(&m.0.principal, &r.name, &r.description, &r.actions)
        .await?)
}

async fn list_assignments(
    s: AppState,
    _: ManageRead,
    r: ListRoleAssignments,
) -> Result<Vec<RoleAssignment>> {
    Ok(s.auth.assignments(r.assignee.as_deref()).await?)
}

async fn create_assignment(
    s: AppState,
    m: AssignRoles,
    r: CreateRoleAssignment,
) -> Result<RoleAssignment> {
    Ok(s.auth
        .create_assignment(&m.0.principal, &r.assignee, &r.role, &r.scope)
        .await?)
}

async fn delete_assignment(s: AppState, m: AssignRoles, r: DeleteRoleAssignment) -> Result<()> {
    Ok(s.auth.delete_assignment(&m.0.principal, &r.id).await?)
}
