//! The overview: what the registry holds, and charts of the last 24 hours
//! (pulls and pushes per hour, failed logins by reason: counted by the
//! database, so exact however busy the registry) and of the stored bytes,
//! drawn as SVG on the server; each chart's numbers are also a table.

use std::collections::BTreeMap;

use axum::response::Response;
use berth_manage::gc::GetGcStatus;
use berth_manage::logs::GetEventSummary;
use berth_manage::repositories::ListRepositorySummaries;
use berth_manage::storage::{GetStorageHistory, StorageSample};
use maud::{html, Markup};

use crate::context::Viewer;
use crate::layout::{self, size, Section};

const HOURS: i64 = 24;
/// Days of storage history the overview draws.
const STORAGE_DAYS: i64 = 30;

pub async fn page(viewer: Viewer) -> Response {
    let now = viewer.portal.now();
    let since = Some(berth_util::rfc3339(now - HOURS * 3600));
    let repositories = viewer
        .call(&ListRepositorySummaries {
            limit: Some(1),
            ..Default::default()
        })
        .await;
    let summary = viewer.call(&GetEventSummary { since }).await;
    let gc = viewer.call(&GetGcStatus {}).await;
    let storage = viewer
        .call(&GetStorageHistory {
            since: Some(berth_util::rfc3339(now - STORAGE_DAYS * 86400)),
        })
        .await;
    let (repositories, summary, gc, storage) = match (repositories, summary, gc, storage) {
        (Ok(r), Ok(e), Ok(g), Ok(s)) => (r, e, g, s),
        (Err(r), ..) | (_, Err(r), ..) | (_, _, Err(r), _) | (.., Err(r)) => {
            return viewer.refusal(Section::Overview, &r)
        }
    };
    // Hour buckets, oldest first.
    let start_hour = now / 3600 - (HOURS - 1);
    let mut pulls = vec![0u64; HOURS as usize];
    let mut pushes = vec![0u64; HOURS as usize];
    for c in &summary.repository_events {
        let Some(ms) = berth_util::parse_rfc3339_ms(&c.hour) else {
            continue;
        };
        let slot = ms / 1000 / 3600 - start_hour;
        if !(0..HOURS).contains(&slot) {
            continue;
        }
        match c.operation.as_str() {
            "Pull" => pulls[slot as usize] += c.count,
            "Push" => pushes[slot as usize] += c.count,
            _ => {}
        }
    }
    let labels: Vec<String> = (0..HOURS)
        .map(|i| {
            let t = berth_util::rfc3339((start_hour + i) * 3600);
            t.get(11..13).unwrap_or("").to_string()
        })
        .collect();
    let mut reasons: BTreeMap<String, u64> = BTreeMap::new();
    for f in &summary.failed_logins {
        *reasons.entry(reason_of(&f.description)).or_default() += f.count;
    }
    let failed_total: u64 = summary.failed_logins.iter().map(|f| f.count).sum();
    let mut reasons: Vec<(String, u64)> = reasons.into_iter().collect();
    reasons.sort_by_key(|r| std::cmp::Reverse(r.1));
    let reclaimed: u64 = gc.runs.iter().map(|r| r.bytes_reclaimed).sum();
    let body = html! {
        div class="cards" {
            div class="card" { h2 { "Repositories" } p class="big" { a href="/repositories" { (repositories.total) } } }
            div class="card" { h2 { "Pulls, 24 h" } p class="big" { (pulls.iter().sum::<u64>()) } }
            div class="card" { h2 { "Pushes, 24 h" } p class="big" { (pushes.iter().sum::<u64>()) } }
            div class="card" { h2 { "Failed logins, 24 h" } p class="big" { a href="/logs?kind=login&failed=on" { (failed_total) } } }
            div class="card" { h2 { "Blobs waiting for the collector" } p class="big" { a href="/settings" { (gc.queued_candidates) } }
                p class="muted" { "The latest runs reclaimed " (size(reclaimed)) "." } }
        }
        h2 id="activity-heading" { "Pulls and pushes per hour (UTC)" }
        (bar_chart("activity-chart", "Pulls and pushes per hour over the last 24 hours", &labels,
            &[("Pulls", "bar", &pulls), ("Pushes", "bar2", &pushes)]))
        h2 { "Stored, last " (STORAGE_DAYS) " days" }
        @if storage.is_empty() { p class="muted" { "No samples yet: berth samples its size once an hour." } } @else {
            (storage_chart(&storage))
        }
        h2 { "Failed logins by reason, last 24 hours" }
        @if reasons.is_empty() { p class="muted" { "No failed logins." } } @else {
            (reason_chart(&reasons))
        }
    };
    viewer.page(Section::Overview, "Overview", body)
}

/// The part of a failure message that names its cause, so failures group
/// by reason rather than by identity ("unknown identity 'x'" and
/// "unknown identity 'y'" are one reason).
fn reason_of(description: &str) -> String {
    let cut = description
        .find(['\'', '"', ':'])
        .unwrap_or(description.len());
    let reason = description[..cut].trim();
    if reason.is_empty() {
        description.to_string()
    } else {
        reason.to_string()
    }
}

/// Vertical bars, one group per label; the numbers also as a table.
fn bar_chart(
    id: &str,
    summary: &str,
    labels: &[String],
    series: &[(&str, &str, &Vec<u64>)],
) -> Markup {
    let max = nice_ceiling(
        series
            .iter()
            .flat_map(|(_, _, v)| v.iter())
            .copied()
            .max()
            .unwrap_or(0),
    );
    let (width, height, left, top, bottom) = (720.0, 232.0, 40.0, 12.0, 24.0);
    let plot = height - top - bottom;
    let group = (width - left) / labels.len().max(1) as f64;
    let bar = (group - 4.0) / series.len().max(1) as f64;
    let mut svg = String::new();
    for i in 0..=4 {
        let y = top + plot * (1.0 - i as f64 / 4.0);
        let value = max * i / 4;
        svg.push_str(&format!(
            r#"<line x1="{left}" x2="{width}" y1="{y:.1}" y2="{y:.1}"/><text x="0" y="{:.1}">{value}</text>"#,
            y + 4.0
        ));
    }
    for (i, label) in labels.iter().enumerate() {
        let x0 = left + i as f64 * group + 2.0;
        for (s, (name, class, values)) in series.iter().enumerate() {
            let v = values.get(i).copied().unwrap_or(0);
            let h = plot * v as f64 / max as f64;
            svg.push_str(&format!(
                r#"<rect class="{class}" x="{:.1}" y="{:.1}" width="{:.1}" height="{h:.1}"><title>{name} at {label}:00: {v}</title></rect>"#,
                x0 + s as f64 * bar,
                top + plot - h,
                bar.max(1.0),
            ));
        }
        if i % 3 == 0 {
            svg.push_str(&format!(
                r#"<text x="{x0:.1}" y="{:.1}">{label}</text>"#,
                height - 6.0
            ));
        }
    }
    html! {
        figure {
            svg class="chart" id=(id) viewBox=(format!("0 0 {width} {height}")) role="img" aria-label=(summary) {
                (layout::raw(svg))
            }
            figcaption {
                @for (name, class, values) in series {
                    span class=(format!("legend {class}")) { (name) ": " (values.iter().sum::<u64>()) } " "
                }
            }
        }
        details {
            summary { "The numbers" }
            div class="table-wrap" { table {
                thead { tr { th scope="col" { "Hour (UTC)" } @for (name, _, _) in series { th scope="col" class="num" { (name) } } } }
                tbody { @for (i, label) in labels.iter().enumerate() { tr {
                    td { (label) ":00" }
                    @for (_, _, values) in series { td class="num" { (values.get(i).copied().unwrap_or(0)) } }
                } } }
            } }
        }
    }
}

/// The axis' top: at least 4 and a multiple of 4, so the four gridlines
/// fall on whole numbers.
fn nice_ceiling(max: u64) -> u64 {
    let mut step = 1;
    while step * 4 < max {
        step = match step.to_string().as_bytes()[0] {
            b'1' => step * 2,
            b'2' => step / 2 * 5,
            _ => step * 2,
        };
    }
    step * 4
}

/// The blob store's bytes over time, one point per hourly sample, with the
/// samples as a table beside it (one row a day: the day's last sample).
fn storage_chart(samples: &[StorageSample]) -> Markup {
    let points: Vec<(i64, u64)> = samples
        .iter()
        .filter_map(|s| Some((berth_util::parse_rfc3339_ms(&s.time)? / 1000, s.bytes)))
        .collect();
    let (first, last) = match (points.first(), points.last()) {
        (Some(f), Some(l)) => (f.0, l.0.max(f.0 + 3600)),
        _ => return html! {},
    };
    let max = nice_ceiling(points.iter().map(|p| p.1).max().unwrap_or(0));
    let (width, height, left, top, bottom) = (720.0, 232.0, 72.0, 12.0, 24.0);
    let plot = height - top - bottom;
    let x = |t: i64| left + (width - left - 8.0) * (t - first) as f64 / (last - first) as f64;
    let y = |b: u64| top + plot * (1.0 - b as f64 / max as f64);
    let mut svg = String::new();
    for i in 0..=4 {
        let value = max * i / 4;
        let gy = y(value);
        svg.push_str(&format!(
            r#"<line x1="{left}" x2="{width}" y1="{gy:.1}" y2="{gy:.1}"/><text x="0" y="{:.1}">{}</text>"#,
            gy + 4.0,
            size(value)
        ));
    }
    let line: Vec<String> = points
        .iter()
        .map(|(t, b)| format!("{:.1},{:.1}", x(*t), y(*b)))
        .collect();
    svg.push_str(&format!(
        r#"<polyline class="line" fill="none" stroke-width="2" points="{}"/>"#,
        line.join(" ")
    ));
    for t in [first, last] {
        let day = berth_util::rfc3339(t);
        svg.push_str(&format!(
            r#"<text x="{:.1}" y="{:.1}" text-anchor="{}">{}</text>"#,
            x(t),
            height - 6.0,
            if t == first { "start" } else { "end" },
            day.get(..10).unwrap_or("")
        ));
    }
    let mut days: BTreeMap<String, &StorageSample> = BTreeMap::new();
    for s in samples {
        days.insert(s.time.get(..10).unwrap_or("").to_string(), s);
    }
    let latest = samples.last().map(|s| s.bytes).unwrap_or(0);
    html! {
        figure {
            svg class="chart" id="storage-chart" viewBox=(format!("0 0 {width} {height}")) role="img"
                aria-label=(format!("Stored bytes over the last {STORAGE_DAYS} days; now {}", size(latest))) {
                (layout::raw(svg))
            }
            figcaption { "Now " (size(latest)) " in " (samples.last().map(|s| s.blobs).unwrap_or(0)) " blobs" }
        }
        details {
            summary { "The numbers" }
            div class="table-wrap" { table id="storage-samples" {
                thead { tr { th scope="col" { "Day (UTC)" } th scope="col" class="num" { "Blobs" } th scope="col" class="num" { "Stored" } } }
                tbody { @for (day, s) in &days { tr {
                    td { (day) } td class="num" { (s.blobs) } td class="num" data-bytes=(s.bytes) { (size(s.bytes)) }
                } } }
            } }
        }
    }
}

/// Horizontal bars, one per reason, with the count written beside it.
fn reason_chart(reasons: &[(String, u64)]) -> Markup {
    let max = reasons.iter().map(|r| r.1).max().unwrap_or(1).max(1);
    html! {
        div class="table-wrap" { table id="failure-reasons" {
            thead { tr { th scope="col" { "Reason" } th scope="col" class="num" { "Failed logins" } th scope="col" { span class="muted" { "Share" } } } }
            tbody { @for (reason, n) in reasons { tr {
                td { (reason) }
                td class="num" { (n) }
                td { svg class="chart" viewBox="0 0 200 12" width="200" height="12" aria-hidden="true" {
                    (layout::raw(format!(r#"<rect class="bar2" x="0" y="0" height="12" width="{:.1}"/>"#, 200.0 * *n as f64 / max as f64)))
                } }
            } } }
        } }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_axis_ends_on_a_round_number_with_whole_gridlines() {
        assert_eq!(nice_ceiling(0), 4);
        assert_eq!(nice_ceiling(3), 4);
        assert_eq!(nice_ceiling(5), 8);
        assert_eq!(nice_ceiling(9), 20);
        assert_eq!(nice_ceiling(41), 80);
        assert_eq!(nice_ceiling(1234), 2000);
    }

    #[test]
    fn failures_group_by_their_cause_not_their_identity() {
        assert_eq!(reason_of("unknown identity 'alice'"), "unknown identity");
        assert_eq!(reason_of("unknown identity 'bob'"), "unknown identity");
        assert_eq!(reason_of("HTTP 401"), "HTTP 401");
    }
}
