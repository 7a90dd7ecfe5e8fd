//! The cache configuration as the pull path reads it: in memory, so a
//! pull costs no database read to learn whether its repository is cached.

/// What the pull path needs of the cache configuration, kept in memory
/// (reloaded with the other settings, and at once after a change through
/// `manage::cache`).
#[derive(Default)]
pub(crate) struct CacheSnapshot {
    pub(crate) raw_rules: Option<String>,
    pub(crate) raw_sets: Option<String>,
    pub(crate) rules: Vec<berth_manage::cache::CacheRule>,
    /// Credential set → (user name, password), unsealed.
    pub(crate) logins: std::collections::HashMap<String, (String, String)>,
}
