//! The garbage collector: its queue, its runs, and running it now.

use serde::{Deserialize, Serialize};

use crate::endpoint;

/// One collection run, as recorded (by whichever node ran it).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GcRun {
    pub id: i64,
    pub node: String,
    /// `running`, `finished`, `failed`.
    pub state: String,
    pub started_at: String,
    #[serde(default)]
    pub finished_at: Option<String>,
    #[serde(default)]
    pub duration_ms: Option<i64>,
    pub examined: u64,
    pub blobs_deleted: u64,
    pub bytes_reclaimed: u64,
    pub uploads_purged: u64,
    pub storage_requests: u64,
    #[serde(default)]
    pub error: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GcStatus {
    /// Blobs waiting to be examined.
    pub queued_candidates: u64,
    /// How long an unreferenced blob is kept before it may be deleted.
    pub grace_seconds: u64,
    /// The latest runs, newest first.
    pub runs: Vec<GcRun>,
}

/// `GET /api/v1/gc`
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GetGcStatus {}
endpoint!(GetGcStatus => GcStatus, Get "/api/v1/gc", ManageRead);

/// What a run did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GcReport {
    pub examined: u64,
    pub blobs_deleted: u64,
    pub bytes_reclaimed: u64,
    pub uploads_purged: u64,
    pub storage_requests: u64,
}

/// `POST /api/v1/gc/run`: one pass now, on this node (409 `CONFLICT` while
/// another node's collector holds the lease).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunGc {}
endpoint!(RunGc => GcReport, Post "/api/v1/gc/run", ManageWrite);
