//! `explain` as a form: who, from where, doing what, on which repository;
//! the answer is the decision trace `berth explain` prints. Reading only,
//! so the form is a GET (the contract's call is a POST that changes
//! nothing, under ManageRead).

use axum::extract::Query;
use axum::response::Response;
use berth_manage::explain::{Explain, ExplainAction, Explanation};
use maud::{html, Markup};
use serde::Deserialize;

use crate::context::Viewer;
use crate::layout::Section;

#[derive(Debug, Default, Deserialize)]
pub struct ExplainQuery {
    #[serde(default)]
    ip: String,
    #[serde(default)]
    endpoint: String,
    #[serde(default)]
    identity: String,
    #[serde(default)]
    action: String,
    #[serde(default)]
    repository: String,
}

fn action_of(s: &str) -> ExplainAction {
    match s {
        "push" => ExplainAction::Push,
        "delete" => ExplainAction::Delete,
        "catalog" => ExplainAction::Catalog,
        _ => ExplainAction::Pull,
    }
}

pub async fn page(viewer: Viewer, Query(q): Query<ExplainQuery>) -> Response {
    let asked = !q.ip.trim().is_empty();
    let ip = if asked {
        q.ip.trim().to_string()
    } else {
        viewer.client_address().to_string()
    };
    let answer = if asked {
        let request = Explain {
            ip: ip.clone(),
            endpoint: (!q.endpoint.trim().is_empty()).then(|| q.endpoint.trim().to_string()),
            identity: (!q.identity.trim().is_empty()).then(|| q.identity.trim().to_string()),
            action: action_of(&q.action),
            repository: (!q.repository.trim().is_empty()).then(|| q.repository.trim().to_string()),
        };
        match viewer.call(&request).await {
            Ok(e) => Some(trace(&e)),
            Err(r) => return viewer.refusal(Section::Explain, &r),
        }
    } else {
        None
    };
    let action = q.action.as_str();
    let body = html! {
        p class="muted" { "Why would a request be let in or refused? Name the caller and what it would do; berth answers with every rule and role it checks, in order." }
        form method="get" action="/explain" class="row" {
            label for="ip" { "Client address" input type="text" id="ip" name="ip" value=(ip) required; }
            label for="endpoint" { "Endpoint (public or private:NAME)" input type="text" id="endpoint" name="endpoint" value=(q.endpoint) placeholder="public"; }
            label for="identity" { "Identity (name or id; empty: anonymous)" input type="text" id="identity" name="identity" value=(q.identity); }
            label for="action" { "Action"
                select id="action" name="action" {
                    @for a in ["pull", "push", "delete", "catalog"] { option value=(a) selected[action == a] { (a) } }
                }
            }
            label for="repository" { "Repository" input type="text" id="repository" name="repository" value=(q.repository); }
            button type="submit" { "Explain" }
        }
        @if let Some(a) = answer { (a) }
    };
    viewer.page(Section::Explain, "Explain", body)
}

fn trace(e: &Explanation) -> Markup {
    let class = if e.allowed {
        "notice ok"
    } else {
        "notice error"
    };
    html! {
        section aria-labelledby="verdict-heading" {
            h2 id="verdict-heading" { "Verdict" }
            div class=(class) id="verdict" role="status" { (e.verdict) }
            h2 { "1. Network" }
            dl class="facts" id="network-trace" {
                dt { "Endpoint" } dd { (e.network.endpoint) }
                dt { "Address" } dd { code { (e.network.ip) } }
                dt { "Decided by" } dd { (e.network.rule) }
                dt { "Let in" } dd { (if e.network.allowed { "yes" } else { "no" }) }
                @if let Some(r) = &e.network.reason { dt { "Why" } dd { (r) } }
            }
            h2 { "2. Identity and permissions" }
            dl class="facts" id="access-trace" {
                dt { "Identity" } dd { (e.access.identity.as_ref().map(|i| format!("{} '{}'", i.kind.describe(), i.name)).unwrap_or_else(|| "anonymous".into())) }
                @if let Some(p) = &e.access.identity_problem { dt { "Problem" } dd { (p) } }
                dt { "Needs" } dd { code { (e.access.permission) } @if let Some(r) = &e.access.repository { " on " code { (r) } } }
                dt { "Granted by" } dd {
                    @if e.access.granted_by.is_empty() { "nothing" }
                    @for g in &e.access.granted_by { (g) br; }
                }
                @if !e.access.other_assignments.is_empty() {
                    dt { "Other assignments" } dd { @for g in &e.access.other_assignments { (g) br; } }
                }
                @if !e.access.orphaned_assignments.is_empty() {
                    dt { "Orphaned assignments" } dd { @for a in &e.access.orphaned_assignments {
                        (a.role) " at " code { (a.scope) } " for a deleted principal " code { (a.principal_id) } br;
                    } }
                }
                @if let Some(m) = &e.access.missing { dt { "Missing" } dd { (m) } }
            }
            @if let Some(c) = &e.cache {
                h2 { "3. Artifact cache" }
                dl class="facts" {
                    dt { "Rule" } dd { (c.rule.as_deref().unwrap_or("none targets this repository")) }
                    @for u in &c.upstreams {
                        dt { code { (u.upstream) } } dd { (if u.ok { "answers" } else { u.cause.as_deref().unwrap_or("fails") }) ": " (u.detail) }
                    }
                }
            }
        }
    }
}
