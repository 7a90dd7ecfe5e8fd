//! Repositories as the management API shows them.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::endpoint;

/// `GET /api/v1/repositories`: every repository's name.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListRepositories {}
endpoint!(ListRepositories => Vec<String>, Get "/api/v1/repositories", ManageRead);

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeletedRepository {
    pub repository: String,
    pub manifests_deleted: u64,
}

/// `DELETE /api/v1/repositories?repository=NAME`: the repository, its
/// manifests and tags (blobs go when the collector finds them unused).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DeleteRepository {
    pub repository: String,
}
endpoint!(DeleteRepository => DeletedRepository, Delete "/api/v1/repositories", Delete);

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TagInfo {
    pub name: String,
    pub digest: String,
    pub media_type: String,
}

/// `GET /api/v1/repositories/tags?repository=NAME`
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ListTags {
    pub repository: String,
}
endpoint!(ListTags => Vec<TagInfo>, Get "/api/v1/repositories/tags", ManageRead);

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ManifestInfo {
    pub digest: String,
    pub media_type: String,
    #[serde(default)]
    pub artifact_type: Option<String>,
    pub size: u64,
    pub tags: Vec<String>,
    pub created_at: String,
}

/// `GET /api/v1/repositories/manifests?repository=NAME`
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ListManifests {
    pub repository: String,
}
endpoint!(ListManifests => Vec<ManifestInfo>, Get "/api/v1/repositories/manifests", ManageRead);

/// `DELETE /api/v1/repositories/tags?repository=R&tag=T`: removes one tag;
/// the manifest it pointed at stays (by digest, and under its other tags).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct UntagManifest {
    pub repository: String,
    pub tag: String,
}
endpoint!(UntagManifest => (), Delete "/api/v1/repositories/tags", Delete, status 204);

/// `DELETE /api/v1/repositories/manifests?repository=R&digest=D`: the
/// manifest and every tag pointing at it (its blobs go when the collector
/// finds them unused).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DeleteManifest {
    pub repository: String,
    pub digest: String,
}
endpoint!(DeleteManifest => (), Delete "/api/v1/repositories/manifests", Delete, status 204);

/// Content a manifest names (its config, a layer, an index's child, a
/// referrer), as the management API shows it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ContentDescriptor {
    pub digest: String,
    pub media_type: String,
    pub size: u64,
    /// `os/architecture[/variant]`, for an index's children that say.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifact_type: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

/// What a manifest is and what it names.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ManifestDetail {
    pub repository: String,
    pub digest: String,
    pub media_type: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifact_type: Option<String>,
    /// The manifest's own bytes.
    pub size: u64,
    /// Tags pointing at it.
    pub tags: Vec<String>,
    /// `image`, `index` or `artifact`.
    pub kind: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config: Option<ContentDescriptor>,
    pub layers: Vec<ContentDescriptor>,
    /// An index's children, with their platforms.
    pub manifests: Vec<ContentDescriptor>,
    /// What this manifest refers to (a signature's image).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<ContentDescriptor>,
    /// Manifests that name this one as their subject (signatures, SBOMs).
    pub referrers: Vec<ContentDescriptor>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

/// `GET /api/v1/repositories/manifest?repository=R&reference=TAG-OR-DIGEST`
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct GetManifest {
    pub repository: String,
    pub reference: String,
}
endpoint!(GetManifest => ManifestDetail, Get "/api/v1/repositories/manifest", ManageRead);

/// How a repository listing is ordered.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum RepositorySort {
    #[default]
    Name,
    /// Largest first.
    Size,
    /// Most recently pushed first.
    LastPush,
}

/// A repository with its figures.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RepositorySummary {
    pub name: String,
    pub tags: u64,
    pub manifests: u64,
    /// Its blobs (each once) and manifests, in bytes.
    pub size: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_push_at: Option<String>,
}

/// One page of repositories, and how many match in all.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RepositorySummaryPage {
    pub total: u64,
    pub repositories: Vec<RepositorySummary>,
}

/// `GET /api/v1/repositories/summaries?search=S&sort=size&offset=N&limit=M`:
/// repositories whose name contains `search` (any case), `limit` (50 by
/// default, 1,000 at most) from `offset`, in one page whatever the
/// registry holds.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ListRepositorySummaries {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub search: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sort: Option<RepositorySort>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub offset: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<u32>,
}
endpoint!(ListRepositorySummaries => RepositorySummaryPage, Get "/api/v1/repositories/summaries", ManageRead);
