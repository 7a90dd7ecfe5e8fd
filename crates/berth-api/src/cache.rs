//! Where the artifact cache meets the HTTP surface: the route of a
//! repository (its rule, with credential-set logins from memory), the
//! read-only rule for cached repositories, and fills and stale serves as
//! repository events.

use berth_cache::{CacheEvent, Login, Observer, Route};
use berth_manage::cache::CacheRule;
use berth_metadata::RepositoryEvent;
use berth_types::{ErrorCode, RepositoryName};

use crate::audit::{current_correlation_id, Event, EventSink};
use crate::error::ApiError;
use crate::AppState;

/// The cache route of `repository`, if a rule targets it.
pub fn route(state: &AppState, repository: &RepositoryName) -> Option<Route> {
    let rule = state.auth.cache_rule_for(repository.as_str())?;
    Route::resolve(&rule, repository.as_str(), |set| {
        state
            .auth
            .cache_login(set)
            .map(|(username, password)| Login {
                credential_set: set.to_string(),
                username,
                password,
            })
    })
}

/// A repository that does not exist, on a registry with cache rules: the
/// message says no rule targets it and which targets there are (a typo in
/// the cache's prefix is the usual cause).
pub fn no_rule_hint(state: &AppState, mut e: ApiError) -> ApiError {
    if e.code != ErrorCode::NameUnknown {
        return e;
    }
    let rules = state.auth.cached_rules();
    if rules.is_empty() {
        return e;
    }
    let targets = rules
        .iter()
        .map(|r| format!("{} (rule {})", r.target, r.name))
        .collect::<Vec<_>>()
        .join(", ");
    e.message = format!(
        "{}; no cache rule targets it (cache rules target: {targets})",
        e.message
    );
    e
}

/// Pushes and deletes in a cached repository are refused: its content is
/// the upstream's.
pub fn refuse_writes(rule: &CacheRule, repository: &RepositoryName) -> ApiError {
    let upstreams = rule
        .upstreams
        .iter()
        .map(|u| u.source.as_str())
        .collect::<Vec<_>>()
        .join(", ");
    ApiError::new(
        ErrorCode::Denied,
        format!(
            "repository '{repository}' is a read-only cache of {upstreams} (cache rule '{}'): push to a repository no cache rule targets, or change the rule (berth cache-rule show --name {})",
            rule.name, rule.name
        ),
    )
}

/// Fills and stale serves become repository events (`CacheFill`,
/// `CacheStale`), beside the pulls that caused them.
pub fn observer(events: EventSink) -> Observer {
    std::sync::Arc::new(move |e: CacheEvent| {
        events.emit(Event::Repository(RepositoryEvent {
            time_generated: berth_util::now_ms(),
            login_server: String::new(),
            operation_name: e.operation.into(),
            repository: e.repository,
            tag: e.tag,
            digest: e.digest,
            media_type: None,
            artifact_type: None,
            size: e.size,
            identity: "cache".into(),
            caller_ip_address: String::new(),
            user_agent: String::new(),
            result_type: 200,
            result_description: e.description,
            duration_ms: 0,
            correlation_id: current_correlation_id().unwrap_or_default(),
        }));
    })
}
