//! Identities, scope maps and tokens, role assignments (orphans marked,
//! with the fix), and creating a service principal, whose secret is shown
//! on the answer to that one request and never again.

use axum::extract::Query;
use axum::response::Response;
use berth_manage::identities::{CreateServicePrincipal, CreatedIdentity, ListIdentities};
use berth_manage::roles::{DeleteRoleAssignment, ListRoleAssignments, RoleAssignment};
use berth_manage::tokens::ListScopeMaps;
use berth_manage::Access;
use http::StatusCode;
use maud::{html, Markup};
use serde::Deserialize;

use crate::context::{Change, Viewer};
use crate::layout::{self, Section};

#[derive(Debug, Default, Deserialize)]
pub struct Notice {
    #[serde(default)]
    done: String,
}

pub async fn page(viewer: Viewer, Query(notice): Query<Notice>) -> Response {
    let identities = match viewer.call(&ListIdentities::default()).await {
        Ok(i) => i,
        Err(r) => return viewer.refusal(Section::Access, &r),
    };
    let assignments = match viewer.call(&ListRoleAssignments::default()).await {
        Ok(a) => a,
        Err(r) => return viewer.refusal(Section::Access, &r),
    };
    let scope_maps = match viewer.call(&ListScopeMaps {}).await {
        Ok(m) => m,
        Err(r) => return viewer.refusal(Section::Access, &r),
    };
    let writer = viewer.can(Access::ManageWrite);
    let assigner = viewer.can(Access::AssignRoles);
    let orphans = assignments.iter().filter(|a| a.orphaned).count();
    let body = html! {
        @if notice.done == "unassigned" { (layout::notice("The role assignment was deleted.")) }
        @if orphans > 0 {
            div class="notice warn" role="status" {
                (orphans) " role assignment(s) name an identity that no longer exists; they grant nothing. "
                "See “Role assignments” below."
            }
        }
        h2 { "Identities" }
        div class="table-wrap" {
            table id="identities" {
                thead { tr {
                    th scope="col" { "Name" } th scope="col" { "Kind" } th scope="col" { "Login" }
                    th scope="col" { "Enabled" } th scope="col" { "Trusted service" } th scope="col" { "Created" }
                } }
                tbody {
                    @for i in &identities {
                        tr {
                            td { (i.name) }
                            td { (i.kind.describe()) @if let Some(m) = &i.scope_map { " (scope map " code { (m) } ")" } }
                            td { code { (i.login) } }
                            td { (if i.enabled { "yes" } else { "no" }) }
                            td { (if i.trusted_service { "yes" } else { "no" }) }
                            td { (i.created_at) }
                        }
                    }
                }
            }
        }
        @if writer {
            h2 { "Create a service principal" }
            p class="muted" { "A service principal is a login for automation: an application id and a secret. Its permissions come from role assignments." }
            form method="post" action="/access/service-principals" class="row" {
                (viewer.csrf_field())
                label for="sp-name" { "Name" input type="text" id="sp-name" name="name" required; }
                @if assigner {
                    label for="sp-role" { "Role (optional)"
                        select id="sp-role" name="role" {
                            option value="" { "none" }
                            @for r in ["AcrPull", "AcrPush", "AcrDelete", "Reader", "Contributor"] { option value=(r) { (r) } }
                        }
                    }
                    label for="sp-scope" { "Scope (a repository, prefix/*, or empty for the registry)" input type="text" id="sp-scope" name="scope"; }
                }
                button type="submit" { "Create" }
            }
        }
        h2 { "Role assignments" }
        p class="muted" { "A role assignment grants a role's permissions to one identity on the registry, a repository, or every repository under a prefix (prefix/*). AcrPull pulls, AcrPush pulls and pushes, Reader sees settings, Contributor changes them, Owner also grants roles." }
        (assignments_view(&viewer, &assignments, assigner))
        h2 { "Scope maps" }
        p class="muted" { "A scope map lists repositories and actions; a token gets exactly what its scope map lists." }
        @if scope_maps.is_empty() { p class="muted" { "No scope maps." } } @else {
            div class="table-wrap" {
                table {
                    thead { tr { th scope="col" { "Name" } th scope="col" { "Rules" } th scope="col" { "Description" } } }
                    tbody {
                        @for m in &scope_maps {
                            tr {
                                td { code { (m.name) } }
                                td { @for r in &m.rules {
                                    code { (r.repository) } ": "
                                    (serde_json::to_string(&r.actions).unwrap_or_default()) br;
                                } }
                                td { (m.description) }
                            }
                        }
                    }
                }
            }
        }
    };
    viewer.page(Section::Access, "Identities & roles", body)
}

fn assignments_view(viewer: &Viewer, assignments: &[RoleAssignment], assigner: bool) -> Markup {
    html! {
        @if assignments.is_empty() { p class="muted" { "No role assignments." } } @else {
            div class="table-wrap" {
                table id="assignments" {
                    thead { tr {
                        th scope="col" { "Principal" } th scope="col" { "Role" } th scope="col" { "Scope" }
                        th scope="col" { "State" } @if assigner { th scope="col" { span class="muted" { "Action" } } }
                    } }
                    tbody {
                        @for a in assignments {
                            tr class=[a.orphaned.then_some("orphaned")] {
                                td { (a.principal.as_deref().unwrap_or("(deleted)")) br; code class="muted" { (a.principal_id) } }
                                td { (a.role) }
                                td { code { (a.scope) } }
                                td {
                                    @if a.orphaned {
                                        span class="badge bad" { "orphaned" }
                                        p class="fix" {
                                            "Its principal no longer exists (deleted, perhaps re-created with a new id), so it grants nothing. "
                                            "Fix: delete this assignment and assign " (a.role) " to the identity's new id — "
                                            code { "berth role assignment delete --id " (a.id) }
                                        }
                                    } @else { "active" }
                                }
                                @if assigner {
                                    td {
                                        form method="post" action="/access/role-assignments/delete" class="inline" {
                                            (viewer.csrf_field())
                                            input type="hidden" name="id" value=(a.id);
                                            button type="submit" class="secondary" aria-label=(format!("Delete the assignment of {} at {}", a.role, a.scope)) { "Delete" }
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

#[derive(Debug, Default, Deserialize)]
pub struct NewServicePrincipal {
    #[serde(default)]
    name: String,
    #[serde(default)]
    role: String,
    #[serde(default)]
    scope: String,
}

/// Shown on the answer to the POST itself (never redirected, never
/// cached): the only time the secret is visible.
pub async fn create_service_principal(
    Change(viewer, form): Change<NewServicePrincipal>,
) -> Response {
    let request = CreateServicePrincipal {
        name: form.name.trim().to_string(),
        role: (!form.role.is_empty()).then(|| form.role.clone()),
        scope: (!form.scope.trim().is_empty()).then(|| form.scope.trim().to_string()),
        ..Default::default()
    };
    match viewer.call(&request).await {
        Ok(created) => {
            let body = created_view(&created);
            viewer.page_with_status(
                StatusCode::CREATED,
                Section::Access,
                "Service principal created",
                body,
            )
        }
        Err(r) => viewer.refusal(Section::Access, &r),
    }
}

fn created_view(created: &CreatedIdentity) -> Markup {
    html! {
        div class="notice warn" role="status" {
            "Copy the secret now: it is shown this once and cannot be shown again (reset it to get a new one)."
        }
        dl class="facts" {
            dt { "Name" } dd { (created.identity.name) }
            dt { "Application id (user name)" } dd { code id="sp-login" { (created.identity.login) } }
            @for s in &created.secrets {
                dt { "Secret" } dd { code class="secret" id="sp-secret" { (s.value) } }
                @if let Some(e) = &s.expires_at { dt { "Expires" } dd { (e) } }
            }
        }
        @for s in &created.secrets {
            (layout::copyable("Secret", &s.value))
        }
        p { a href="/access" { "Back to identities & roles" } }
    }
}

#[derive(Debug, Default, Deserialize)]
pub struct AssignmentForm {
    #[serde(default)]
    id: String,
}

pub async fn delete_assignment(Change(viewer, form): Change<AssignmentForm>) -> Response {
    match viewer.call(&DeleteRoleAssignment { id: form.id }).await {
        Ok(()) => viewer.redirect("/access?done=unassigned"),
        Err(r) => viewer.refusal(Section::Access, &r),
    }
}
