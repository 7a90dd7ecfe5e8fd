//! The registry's size over time.

use serde::{Deserialize, Serialize};

use crate::endpoint;

/// The blob store's content at the start of an hour.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StorageSample {
    /// RFC 3339, the hour's start.
    pub time: String,
    pub blobs: u64,
    pub bytes: u64,
}

/// `GET /api/v1/storage[?since=RFC3339]`: one sample an hour, oldest first
/// (the last 30 days by default). berth takes a sample each hour it runs.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct GetStorageHistory {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since: Option<String>,
}
endpoint!(GetStorageHistory => Vec<StorageSample>, Get "/api/v1/storage", ManageRead);
