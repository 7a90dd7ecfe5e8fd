//! What happened: the activity log (management changes), login events
//! and repository events (pushes, pulls, deletes).

use serde::{Deserialize, Serialize};

use crate::endpoint;

/// One management change.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ActivityEntry {
    pub id: i64,
    pub time: String,
    /// Who made it, e.g. `owner 'owner'`.
    pub actor: String,
    pub operation: String,
    pub target: String,
    /// The target before and after (never secrets).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub before: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after: Option<serde_json::Value>,
}

/// `GET /api/v1/activity[?since=RFC3339&limit=N]`
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ListActivity {
    /// Only entries at or after this time (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since: Option<String>,
    /// At most this many (1,000 by default, 10,000 at most).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<u32>,
}
endpoint!(ListActivity => Vec<ActivityEntry>, Get "/api/v1/activity", ManageRead);

/// A login: credentials presented, with their result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LoginEvent {
    /// RFC 3339, milliseconds.
    pub time_generated: String,
    pub login_server: String,
    pub identity: String,
    pub caller_ip_address: String,
    pub user_agent: String,
    pub operation_name: String,
    /// The HTTP status.
    pub result_type: u16,
    pub result_description: String,
    pub duration_ms: u64,
    pub correlation_id: String,
    #[serde(default)]
    pub jwt_id: Option<String>,
}

/// A request on a repository.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RepositoryEvent {
    /// RFC 3339, milliseconds.
    pub time_generated: String,
    pub login_server: String,
    pub operation_name: String,
    pub repository: String,
    #[serde(default)]
    pub tag: Option<String>,
    #[serde(default)]
    pub digest: Option<String>,
    #[serde(default)]
    pub media_type: Option<String>,
    #[serde(default)]
    pub artifact_type: Option<String>,
    #[serde(default)]
    pub size: Option<u64>,
    pub identity: String,
    pub caller_ip_address: String,
    pub user_agent: String,
    pub result_type: u16,
    pub result_description: String,
    pub duration_ms: u64,
    pub correlation_id: String,
}

/// `GET /api/v1/logs/login`
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ListLoginEvents {
    /// Only events at or after this time (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since: Option<String>,
    /// Only failures (status 400 and up).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub failed: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identity: Option<String>,
    /// Only the events of the request with this correlation id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub correlation_id: Option<String>,
    /// At most this many (1,000 by default, 10,000 at most).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<u32>,
}
endpoint!(ListLoginEvents => Vec<LoginEvent>, Get "/api/v1/logs/login", ManageRead);

/// `GET /api/v1/logs/repository`
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ListRepositoryEvents {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since: Option<String>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub failed: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identity: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repository: Option<String>,
    /// Only the events of the request with this correlation id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub correlation_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<u32>,
}
endpoint!(ListRepositoryEvents => Vec<RepositoryEvent>, Get "/api/v1/logs/repository", ManageRead);

/// How many events of one operation an hour held.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HourlyCount {
    /// RFC 3339, the hour's start.
    pub hour: String,
    /// `Pull`, `Push`, `Delete`, `Untag`.
    pub operation: String,
    pub count: u64,
}

/// How many failed logins had one description.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DescriptionCount {
    pub description: String,
    pub count: u64,
}

/// Counts of the events since a time, counted by the database (exact,
/// however many there are).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EventSummary {
    /// Successful repository events per hour and operation, oldest first.
    pub repository_events: Vec<HourlyCount>,
    /// Failed logins per description, most frequent first.
    pub failed_logins: Vec<DescriptionCount>,
}

/// `GET /api/v1/logs/summary[?since=RFC3339]` (the last 24 hours by default)
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct GetEventSummary {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since: Option<String>,
}
endpoint!(GetEventSummary => EventSummary, Get "/api/v1/logs/summary", ManageRead);
