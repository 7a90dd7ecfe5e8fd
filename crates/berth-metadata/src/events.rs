//! Audit events: login events and repository events.

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::MetadataError;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct LoginEvent {
    /// Unix milliseconds.
    pub time_generated: i64,
    pub login_server: String,
    pub identity: String,
    pub caller_ip_address: String,
    pub user_agent: String,
    pub operation_name: String,
    pub result_type: u16,
    pub result_description: String,
    pub duration_ms: u64,
    pub correlation_id: String,
    pub jwt_id: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct RepositoryEvent {
    pub time_generated: i64,
    pub login_server: String,
    pub operation_name: String,
    pub repository: String,
    pub tag: Option<String>,
    pub digest: Option<String>,
    pub media_type: Option<String>,
    pub artifact_type: Option<String>,
    pub size: Option<u64>,
    pub identity: String,
    pub caller_ip_address: String,
    pub user_agent: String,
    pub result_type: u16,
    pub result_description: String,
    pub duration_ms: u64,
    pub correlation_id: String,
}

/// Which events to list.
#[derive(Debug, Clone, Default)]
pub struct EventFilter {
    /// Unix milliseconds.
    pub since: i64,
    pub failed_only: bool,
    pub identity: Option<String>,
    pub repository: Option<String>,
    /// Only the events of this request.
    pub correlation_id: Option<String>,
    pub limit: u32,
}

#[async_trait]
pub trait EventStore: Send + Sync + 'static {
    async fn insert_events(
        &self,
        logins: &[LoginEvent],
        repositories: &[RepositoryEvent],
    ) -> Result<(), MetadataError>;
    async fn login_events(&self, filter: &EventFilter) -> Result<Vec<LoginEvent>, MetadataError>;
    async fn repository_events(
        &self,
        filter: &EventFilter,
    ) -> Result<Vec<RepositoryEvent>, MetadataError>;
    /// Removes events older than `before` (unix milliseconds).
    async fn purge_events(&self, before: i64) -> Result<u64, MetadataError>;

    /// Successful repository events (status below 400) from `since` (unix
    /// milliseconds), counted per hour and operation in the database:
    /// exact whatever their number.
    async fn repository_event_counts(&self, since: i64) -> Result<Vec<HourlyCount>, MetadataError>;

    /// Failed logins (status 400 and up) from `since`, counted per
    /// description, most frequent first.
    async fn failed_login_counts(&self, since: i64) -> Result<Vec<(String, u64)>, MetadataError>;
}

/// How many events of one operation an hour held.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HourlyCount {
    /// Unix seconds of the hour's start.
    pub hour: i64,
    pub operation: String,
    pub count: u64,
}
