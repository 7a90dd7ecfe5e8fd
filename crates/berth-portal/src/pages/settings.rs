//! Registry settings, garbage collection and the artifact cache's rules.

use axum::response::Response;
use berth_manage::cache::ListCacheRules;
use berth_manage::gc::GetGcStatus;
use berth_manage::registry::GetRegistry;
use maud::html;

use crate::context::Viewer;
use crate::layout::{size, Section};

pub async fn page(viewer: Viewer) -> Response {
    let (registry, gc, rules) = match (
        viewer.call(&GetRegistry {}).await,
        viewer.call(&GetGcStatus {}).await,
        viewer.call(&ListCacheRules {}).await,
    ) {
        (Ok(r), Ok(g), Ok(c)) => (r, g, c),
        (Err(r), ..) | (_, Err(r), _) | (.., Err(r)) => {
            return viewer.refusal(Section::Settings, &r)
        }
    };
    let yes = |b: bool| if b { "on" } else { "off" };
    let body = html! {
        h2 { "Registry" }
        dl class="facts" id="registry-settings" {
            dt { "Anonymous pull" } dd { (yes(registry.anonymous_pull_enabled)) }
            dt { "Admin user" } dd { (yes(registry.admin_user_enabled)) }
            dt { "Sparse manifests" } dd { (yes(registry.sparse_manifests)) }
        }
        p class="muted" { "Change these with " code { "berth update" } " (for example " code { "--anonymous-pull-enabled true" } ")." }
        h2 { "Garbage collection" }
        dl class="facts" id="gc-status" {
            dt { "Blobs queued" } dd { (gc.queued_candidates) }
            dt { "Grace period" } dd { (gc.grace_seconds) " s" }
        }
        @if gc.runs.is_empty() { p class="muted" { "No runs yet." } } @else {
            div class="table-wrap" { table id="gc-runs" {
                thead { tr {
                    th scope="col" { "Started" } th scope="col" { "Node" } th scope="col" { "State" }
                    th scope="col" class="num" { "Examined" } th scope="col" class="num" { "Blobs deleted" } th scope="col" class="num" { "Reclaimed" }
                } }
                tbody { @for r in &gc.runs { tr {
                    td { (r.started_at) } td { (r.node) } td { (r.state) @if let Some(e) = &r.error { ": " (e) } }
                    td class="num" { (r.examined) } td class="num" { (r.blobs_deleted) } td class="num" { (size(r.bytes_reclaimed)) }
                } } }
            } }
        }
        h2 { "Artifact cache rules" }
        p class="muted" { "A cache rule serves a local repository from upstream registries, pulled through and kept." }
        @if rules.is_empty() { p class="muted" { "No cache rules." } } @else {
            div class="table-wrap" { table id="cache-rules" {
                thead { tr { th scope="col" { "Name" } th scope="col" { "Target" } th scope="col" { "Upstreams" } } }
                tbody { @for r in &rules { tr {
                    td { (r.name) } td { code { (r.target) } }
                    td { @for u in &r.upstreams { code { (u.source) } br; } }
                } } }
            } }
        }
    };
    viewer.page(Section::Settings, "Settings", body)
}
