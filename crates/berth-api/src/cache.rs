//! The artifact cache's route of a repository: its rule, with the
//! credential-set logins from memory. (That cached repositories are
//! read-only is an access decision, in `auth.rs`; fills and stale serves
//! become events in `audit.rs`; the missing-rule hint is a distribution
//! answer, in `distribution.rs`.)

use berth_cache::{Login, Route};
use berth_types::RepositoryName;

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
