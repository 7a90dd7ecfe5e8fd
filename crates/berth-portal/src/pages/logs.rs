//! The login, repository and activity logs with the CLI's filters (since,
//! failures only, identity, repository), and every event of one
//! correlation id.

use axum::extract::Query;
use axum::response::Response;
use berth_manage::logs::{
    ListActivity, ListLoginEvents, ListRepositoryEvents, LoginEvent, RepositoryEvent,
};
use maud::{html, Markup};
use serde::Deserialize;

use crate::context::Viewer;
use crate::layout::{href, Section};

/// Events shown at most per page (the API's own limit is 10,000).
const SHOWN: u32 = 500;
/// Events of one correlation id shown at most (one request makes a few).
const SEARCHED: u32 = 1_000;

#[derive(Debug, Default, Deserialize)]
pub struct LogQuery {
    /// `login` (the default), `repository` or `activity`.
    #[serde(default)]
    kind: String,
    #[serde(default)]
    failed: String,
    #[serde(default)]
    identity: String,
    #[serde(default)]
    repository: String,
    /// `1h`, `24h` (the default), `7d`, `30d`.
    #[serde(default)]
    since: String,
    #[serde(default)]
    correlation: String,
}

fn opt(s: &str) -> Option<String> {
    let s = s.trim();
    (!s.is_empty()).then(|| s.to_string())
}

/// RFC 3339 for "this long ago".
fn since(viewer: &Viewer, window: &str) -> String {
    let seconds = match window {
        "1h" => 3600,
        "7d" => 7 * 86400,
        "30d" => 30 * 86400,
        _ => 86400,
    };
    berth_util::rfc3339(viewer.portal.now() - seconds)
}

pub async fn page(viewer: Viewer, Query(q): Query<LogQuery>) -> Response {
    if let Some(id) = opt(&q.correlation) {
        return correlation(viewer, &id).await;
    }
    let failed = q.failed == "on";
    let kind = match q.kind.as_str() {
        "repository" | "activity" => q.kind.as_str(),
        _ => "login",
    };
    let window = if q.since.is_empty() {
        "24h"
    } else {
        q.since.as_str()
    };
    let since = Some(since(&viewer, window));
    let table = match kind {
        "repository" => viewer
            .call(&ListRepositoryEvents {
                since,
                failed,
                identity: opt(&q.identity),
                repository: opt(&q.repository),
                correlation_id: None,
                limit: Some(SHOWN),
            })
            .await
            .map(|e| repository_table(&e)),
        "activity" => viewer
            .call(&ListActivity {
                since,
                limit: Some(SHOWN),
            })
            .await
            .map(|a| {
                html! {
                    div class="table-wrap" { table id="activity" {
                        thead { tr { th scope="col" { "Time" } th scope="col" { "Who" } th scope="col" { "Operation" } th scope="col" { "Target" } } }
                        tbody { @for e in &a { tr { td { (e.time) } td { (e.actor) } td { (e.operation) } td { code { (e.target) } } } } }
                    } }
                    @if a.is_empty() { p class="muted" { "No changes in this period." } }
                }
            }),
        _ => viewer
            .call(&ListLoginEvents {
                since,
                failed,
                identity: opt(&q.identity),
                correlation_id: None,
                limit: Some(SHOWN),
            })
            .await
            .map(|e| login_table(&e)),
    };
    let table = match table {
        Ok(t) => t,
        Err(r) => return viewer.refusal(Section::Logs, &r),
    };
    let body = html! {
        form method="get" action="/logs" class="row" aria-label="Filters" {
            label for="kind" { "Log"
                select id="kind" name="kind" {
                    option value="login" selected[kind == "login"] { "Logins" }
                    option value="repository" selected[kind == "repository"] { "Repository events" }
                    option value="activity" selected[kind == "activity"] { "Management changes" }
                }
            }
            label for="since" { "Since"
                select id="since" name="since" {
                    @for (v, label) in [("1h", "the last hour"), ("24h", "the last 24 hours"), ("7d", "the last 7 days"), ("30d", "the last 30 days")] {
                        option value=(v) selected[window == v] { (label) }
                    }
                }
            }
            label for="identity" { "Identity" input type="text" id="identity" name="identity" value=(q.identity); }
            label for="repository" { "Repository" input type="text" id="repository" name="repository" value=(q.repository); }
            label class="check" { input type="checkbox" id="failed" name="failed" checked[failed]; "Failures only" }
            button type="submit" { "Show" }
        }
        (table)
    };
    viewer.page(Section::Logs, "Logs", body)
}

fn correlation_link(id: &str) -> Markup {
    html! { a href=(href("/logs", &[("correlation", id)])) title="Every event of this request" { code { (id.chars().take(8).collect::<String>()) } } }
}

fn login_table(events: &[LoginEvent]) -> Markup {
    html! {
        div class="table-wrap" { table id="logins" {
            thead { tr {
                th scope="col" { "Time" } th scope="col" { "Identity" } th scope="col" { "Address" }
                th scope="col" { "Result" } th scope="col" { "Reason" } th scope="col" { "Request" }
            } }
            tbody { @for e in events { tr {
                td { (e.time_generated) } td { (e.identity) } td { code { (e.caller_ip_address) } }
                td { (e.result_type) } td class="reason" { (e.result_description) } td { (correlation_link(&e.correlation_id)) }
            } } }
        } }
        @if events.is_empty() { p class="muted" { "No logins match." } }
    }
}

fn repository_table(events: &[RepositoryEvent]) -> Markup {
    html! {
        div class="table-wrap" { table id="repository-events" {
            thead { tr {
                th scope="col" { "Time" } th scope="col" { "Operation" } th scope="col" { "Repository" }
                th scope="col" { "Reference" } th scope="col" { "Identity" } th scope="col" { "Result" } th scope="col" { "Request" }
            } }
            tbody { @for e in events { tr {
                td { (e.time_generated) } td { (e.operation_name) } td { (e.repository) }
                td { code { (e.tag.as_deref().or(e.digest.as_deref()).unwrap_or("")) } }
                td { (e.identity) } td { (e.result_type) " " span class="muted" { (e.result_description) } }
                td { (correlation_link(&e.correlation_id)) }
            } } }
        } }
        @if events.is_empty() { p class="muted" { "No repository events match." } }
    }
}

/// Every login and repository event one request produced.
async fn correlation(viewer: Viewer, id: &str) -> Response {
    // Over the whole retention period: a correlation id is one request.
    let logins = viewer
        .call(&ListLoginEvents {
            correlation_id: Some(id.to_string()),
            limit: Some(SEARCHED),
            ..Default::default()
        })
        .await;
    let events = viewer
        .call(&ListRepositoryEvents {
            correlation_id: Some(id.to_string()),
            limit: Some(SEARCHED),
            ..Default::default()
        })
        .await;
    let (logins, events) = match (logins, events) {
        (Ok(l), Ok(e)) => (l, e),
        (Err(r), _) | (_, Err(r)) => return viewer.refusal(Section::Logs, &r),
    };
    let logins: Vec<LoginEvent> = logins
        .into_iter()
        .filter(|e| e.correlation_id == id)
        .collect();
    let events: Vec<RepositoryEvent> = events
        .into_iter()
        .filter(|e| e.correlation_id == id)
        .collect();
    let body = html! {
        p { "Every event recorded for the request with correlation id " code { (id) } ". "
            "The same id is in the server's log and in the " code { "x-correlation-id" } " header the client received." }
        h2 { "Logins" } (login_table(&logins))
        h2 { "Repository events" } (repository_table(&events))
        p { a href="/logs" { "← All logs" } }
    };
    viewer.page(Section::Logs, "One request", body)
}
