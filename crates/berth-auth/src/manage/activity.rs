//! The activity log: every management change, with who made it.

use berth_manage::logs::ActivityEntry;
use berth_util::now;

use super::DAY;
use crate::service::AuthService;
use crate::{view, AuthError};

impl AuthService {
    pub async fn activity(&self, since: i64, limit: u32) -> Result<Vec<ActivityEntry>, AuthError> {
        Ok(self
            .store
            .activities(since, limit)
            .await?
            .into_iter()
            .map(view::activity)
            .collect())
    }

    /// Drops activity older than `retention_days`.
    pub async fn purge_activity(&self, retention_days: u32) -> Result<u64, AuthError> {
        Ok(self
            .store
            .purge_activities(now() - i64::from(retention_days) * DAY)
            .await?)
    }
}
