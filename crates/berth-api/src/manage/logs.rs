//! The activity log and the audit events (logins, repository requests).
//! Times are RFC 3339 both ways: `since` in the request, every event's
//! time in the answer.

use berth_manage::logs::*;
use berth_metadata::EventFilter;

use super::{ManageError, ManageRead, Routes};
use crate::AppState;

type Result<T> = std::result::Result<T, ManageError>;

/// Most events or entries one answer holds.
const MAX_LIMIT: u32 = 10_000;
const DEFAULT_LIMIT: u32 = 1_000;

pub(super) fn routes(r: Routes) -> Routes {
    r.serve(activity)
        .serve(login_events)
        .serve(repository_events)
        .serve(event_summary)
}

/// The events since a time counted in the database: exact, and one small
/// answer whatever their number (the portal's overview).
async fn event_summary(s: AppState, _: ManageRead, r: GetEventSummary) -> Result<EventSummary> {
    let since = match r.since.as_deref() {
        None => berth_util::now_ms() - 86_400_000,
        Some(t) => since_ms(Some(t))?,
    };
    let hourly = s.event_store.repository_event_counts(since).await?;
    let failed = s.event_store.failed_login_counts(since).await?;
    Ok(EventSummary {
        repository_events: hourly
            .into_iter()
            .map(|c| HourlyCount {
                hour: berth_util::rfc3339(c.hour),
                operation: c.operation,
                count: c.count,
            })
            .collect(),
        failed_logins: failed
            .into_iter()
            .map(|(description, count)| DescriptionCount { description, count })
            .collect(),
    })
}

/// `since` as unix milliseconds (0 when absent).
fn since_ms(since: Option<&str>) -> Result<i64> {
    let Some(since) = since else {
        return Ok(0);
    };
    berth_util::parse_rfc3339_ms(since).ok_or_else(|| {
        ManageError::validation(format!(
            "since '{since}' is not an RFC 3339 time (e.g. 2026-12-01T00:00:00Z)"
        ))
    })
}

fn limit(limit: Option<u32>) -> u32 {
    limit.unwrap_or(DEFAULT_LIMIT).min(MAX_LIMIT)
}

async fn activity(s: AppState, _: ManageRead, r: ListActivity) -> Result<Vec<ActivityEntry>> {
    let since = since_ms(r.since.as_deref())?.div_euclid(1000);
    Ok(s.auth.activity(since, limit(r.limit)).await?)
}

async fn login_events(s: AppState, _: ManageRead, r: ListLoginEvents) -> Result<Vec<LoginEvent>> {
    let filter = EventFilter {
        since: since_ms(r.since.as_deref())?,
        failed_only: r.failed,
        identity: r.identity,
        repository: None,
        correlation_id: r.correlation_id,
        limit: limit(r.limit),
    };
    Ok(s.event_store
        .login_events(&filter)
        .await?
        .into_iter()
        .map(|e| LoginEvent {
            time_generated: berth_util::rfc3339_ms(e.time_generated),
            login_server: e.login_server,
            identity: e.identity,
            caller_ip_address: e.caller_ip_address,
            user_agent: e.user_agent,
            operation_name: e.operation_name,
            result_type: e.result_type,
            result_description: e.result_description,
            duration_ms: e.duration_ms,
            correlation_id: e.correlation_id,
            jwt_id: e.jwt_id,
        })
        .collect())
}

async fn repository_events(
    s: AppState,
    _: ManageRead,
    r: ListRepositoryEvents,
) -> Result<Vec<RepositoryEvent>> {
    let filter = EventFilter {
        since: since_ms(r.since.as_deref())?,
        failed_only: r.failed,
        identity: r.identity,
        repository: r.repository,
        correlation_id: r.correlation_id,
        limit: limit(r.limit),
    };
    Ok(s.event_store
        .repository_events(&filter)
        .await?
        .into_iter()
        .map(|e| RepositoryEvent {
            time_generated: berth_util::rfc3339_ms(e.time_generated),
            login_server: e.login_server,
            operation_name: e.operation_name,
            repository: e.repository,
            tag: e.tag,
            digest: e.digest,
            media_type: e.media_type,
            artifact_type: e.artifact_type,
            size: e.size,
            identity: e.identity,
            caller_ip_address: e.caller_ip_address,
            user_agent: e.user_agent,
            result_type: e.result_type,
            result_description: e.result_description,
            duration_ms: e.duration_ms,
            correlation_id: e.correlation_id,
        })
        .collect())
}
