//! Repositories, their tags and manifests, and the garbage collector.

use berth_manage::gc::*;
use berth_manage::repositories::*;
use berth_manage::ManageCode;
use berth_types::{Digest, Reference, RepositoryName, Tag};

use super::{DeleteContent, ManageError, ManageRead, ManageWrite, Routes};
use crate::AppState;

type Result<T> = std::result::Result<T, ManageError>;

pub(super) fn routes(r: Routes) -> Routes {
    r.serve(list_repositories)
        .serve(list_repository_summaries)
        .serve(delete_repository)
        .serve(list_tags)
        .serve(list_manifests)
        .serve(get_manifest)
        .serve(untag)
        .serve(delete_manifest)
        .serve(gc_status)
        .serve(gc_run)
        .serve(storage_history)
}

fn repository(name: &str) -> Result<RepositoryName> {
    if name.is_empty() {
        return Err(ManageError::validation(
            "the 'repository' query parameter is required",
        ));
    }
    Ok(name.parse()?)
}

async fn list_repositories(s: AppState, _: ManageRead, _: ListRepositories) -> Result<Vec<String>> {
    Ok(s.registry.catalog(u32::MAX, None).await?)
}

/// Most repositories one summaries page holds.
const SUMMARIES_LIMIT: u32 = 1000;

async fn list_repository_summaries(
    s: AppState,
    _: ManageRead,
    r: ListRepositorySummaries,
) -> Result<RepositorySummaryPage> {
    let limit = r.limit.unwrap_or(50);
    if limit == 0 || limit > SUMMARIES_LIMIT {
        return Err(ManageError::validation(format!(
            "'limit' must be between 1 and {SUMMARIES_LIMIT}"
        )));
    }
    let order = match r.sort.unwrap_or_default() {
        RepositorySort::Name => berth_metadata::RepositoryOrder::Name,
        RepositorySort::Size => berth_metadata::RepositoryOrder::Size,
        RepositorySort::LastPush => berth_metadata::RepositoryOrder::LastPush,
    };
    let page = s
        .registry
        .metadata()
        .repository_summaries(
            r.search.as_deref().unwrap_or(""),
            order,
            limit,
            r.offset.unwrap_or(0),
        )
        .await?;
    Ok(RepositorySummaryPage {
        total: page.total,
        repositories: page
            .repositories
            .into_iter()
            .map(|r| RepositorySummary {
                name: r.name,
                tags: r.tags,
                manifests: r.manifests,
                size: r.size,
                last_push_at: r.last_push.map(berth_util::rfc3339),
            })
            .collect(),
    })
}

async fn delete_repository(
    s: AppState,
    _: DeleteContent,
    r: DeleteRepository,
) -> Result<DeletedRepository> {
    let repo = repository(&r.repository)?;
    let deleted = s.registry.delete_repository(&repo).await?;
    Ok(DeletedRepository {
        repository: repo.as_str().to_string(),
        manifests_deleted: deleted,
    })
}

/// Every tag with its manifest: one listing of the repository's manifests
/// (with their tags), not a lookup per tag.
async fn list_tags(s: AppState, _: ManageRead, r: ListTags) -> Result<Vec<TagInfo>> {
    let repo = repository(&r.repository)?;
    let mut out: Vec<TagInfo> = s
        .registry
        .list_manifests(&repo)
        .await?
        .into_iter()
        .flat_map(|m| {
            let digest = m.digest.to_string();
            let media_type = m.media_type;
            m.tags.into_iter().map(move |name| TagInfo {
                name,
                digest: digest.clone(),
                media_type: media_type.clone(),
            })
        })
        .collect();
    // In the order the distribution API lists them (bytewise).
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

async fn list_manifests(s: AppState, _: ManageRead, r: ListManifests) -> Result<Vec<ManifestInfo>> {
    let repo = repository(&r.repository)?;
    Ok(s.registry
        .list_manifests(&repo)
        .await?
        .into_iter()
        .map(|m| ManifestInfo {
            digest: m.digest.to_string(),
            media_type: m.media_type,
            artifact_type: m.artifact_type,
            size: m.size,
            tags: m.tags,
            created_at: berth_util::rfc3339(m.created_at),
        })
        .collect())
}

/// One manifest with what it names and what names it: two lookups (the
/// manifest, its referrers) and the repository's manifest list for its
/// tags, whatever the manifest's size.
async fn get_manifest(s: AppState, _: ManageRead, r: GetManifest) -> Result<ManifestDetail> {
    let repo = repository(&r.repository)?;
    if r.reference.is_empty() {
        return Err(ManageError::validation(
            "the 'reference' query parameter is required (a tag or a digest)",
        ));
    }
    let reference: Reference = r.reference.parse()?;
    let stored = s.registry.get_manifest(&repo, &reference, &[]).await?;
    let parsed = berth_types::ParsedManifest::parse(&stored.content, Some(&stored.media_type))
        .map_err(|e| ManageError::validation(format!("the stored manifest does not parse: {e}")))?;
    let tags = s
        .registry
        .list_manifests(&repo)
        .await?
        .into_iter()
        .find(|m| m.digest == stored.digest)
        .map(|m| m.tags)
        .unwrap_or_default();
    let referrers = s
        .registry
        .metadata()
        .referrers(&repo, &stored.digest, None)
        .await?
        .into_iter()
        .map(|m| ContentDescriptor {
            digest: m.digest.to_string(),
            media_type: m.media_type,
            size: m.size,
            platform: None,
            artifact_type: m.artifact_type,
            annotations: m
                .annotations_json
                .and_then(|a| serde_json::from_str(&a).ok())
                .unwrap_or_default(),
        })
        .collect();
    // An image's config is an image configuration; anything else is an
    // artifact (a signature, an SBOM, a Helm chart).
    const IMAGE_CONFIGS: [&str; 2] = [
        "application/vnd.oci.image.config.v1+json",
        "application/vnd.docker.container.image.v1+json",
    ];
    let kind = match (&parsed.kind, &parsed.config) {
        (berth_types::ManifestKind::Index, _) => "index",
        (_, Some(c)) if IMAGE_CONFIGS.contains(&c.media_type.as_str()) => "image",
        _ => "artifact",
    };
    Ok(ManifestDetail {
        repository: repo.as_str().to_string(),
        digest: stored.digest.to_string(),
        media_type: stored.media_type,
        artifact_type: parsed.artifact_type.clone(),
        size: stored.content.len() as u64,
        tags,
        kind: kind.into(),
        config: parsed.config.as_ref().map(descriptor),
        layers: parsed.layers.iter().map(descriptor).collect(),
        manifests: parsed.manifests.iter().map(descriptor).collect(),
        subject: parsed.subject.as_ref().map(descriptor),
        referrers,
        annotations: parsed.annotations.clone().unwrap_or_default(),
    })
}

fn descriptor(d: &berth_types::Descriptor) -> ContentDescriptor {
    ContentDescriptor {
        digest: d.digest.to_string(),
        media_type: d.media_type.clone(),
        size: d.size.max(0) as u64,
        platform: d.platform.as_ref().map(|p| {
            let mut s = format!("{}/{}", p.os, p.architecture);
            if let Some(v) = &p.variant {
                s.push('/');
                s.push_str(v);
            }
            s
        }),
        artifact_type: d.artifact_type.clone(),
        annotations: d.annotations.clone().unwrap_or_default(),
    }
}

async fn untag(s: AppState, _: DeleteContent, r: UntagManifest) -> Result<()> {
    let repo = repository(&r.repository)?;
    let tag: Tag = r.tag.parse()?;
    Ok(s.registry
        .delete_manifest(&repo, &Reference::Tag(tag))
        .await?)
}

async fn delete_manifest(s: AppState, _: DeleteContent, r: DeleteManifest) -> Result<()> {
    let repo = repository(&r.repository)?;
    let digest: Digest = r
        .digest
        .parse()
        .map_err(|e: berth_types::DigestError| ManageError::validation(e.to_string()))?;
    Ok(s.registry
        .delete_manifest(&repo, &Reference::Digest(digest))
        .await?)
}

fn gc_run_view(r: &berth_metadata::GcRunRecord) -> GcRun {
    GcRun {
        id: r.id,
        node: r.holder.clone(),
        state: r.state.clone(),
        started_at: berth_util::rfc3339(r.started_at / 1000),
        finished_at: r.finished_at.map(|t| berth_util::rfc3339(t / 1000)),
        duration_ms: r.finished_at.map(|t| t - r.started_at),
        examined: r.examined,
        blobs_deleted: r.blobs_deleted,
        bytes_reclaimed: r.bytes_reclaimed,
        uploads_purged: r.uploads_purged,
        storage_requests: r.storage_requests,
        error: r.error.clone(),
    }
}

/// The collector's queue and its latest runs, on any node.
async fn gc_status(s: AppState, _: ManageRead, _: GetGcStatus) -> Result<GcStatus> {
    let metadata = s.registry.metadata();
    Ok(GcStatus {
        queued_candidates: metadata.gc_queue_length().await?,
        grace_seconds: s.registry.config().gc_grace.as_secs(),
        runs: metadata
            .gc_runs(10)
            .await?
            .iter()
            .map(gc_run_view)
            .collect(),
    })
}

/// A collection pass now, on this node.
async fn gc_run(s: AppState, _: ManageWrite, _: RunGc) -> Result<GcReport> {
    let report = s.registry.collect_garbage().await?;
    if report.skipped {
        return Err(ManageError::new(
            ManageCode::Conflict,
            "another node is collecting garbage right now; see `berth gc status`",
        ));
    }
    Ok(GcReport {
        examined: report.examined,
        blobs_deleted: report.blobs_deleted,
        bytes_reclaimed: report.bytes_reclaimed,
        uploads_purged: report.uploads_purged,
        storage_requests: report.storage_requests,
    })
}

/// The hourly samples of the blob store's size.
async fn storage_history(
    s: AppState,
    _: ManageRead,
    r: berth_manage::storage::GetStorageHistory,
) -> Result<Vec<berth_manage::storage::StorageSample>> {
    let since = match &r.since {
        None => berth_util::now() - 30 * 86400,
        Some(t) => berth_util::parse_rfc3339_ms(t)
            .map(|ms| ms / 1000)
            .ok_or_else(|| {
                ManageError::validation(format!(
                    "'since' must be an RFC 3339 time such as 2026-12-01T00:00:00Z, not '{t}'"
                ))
            })?,
    };
    Ok(s.registry
        .metadata()
        .storage_samples(since)
        .await?
        .into_iter()
        .map(|x| berth_manage::storage::StorageSample {
            time: berth_util::rfc3339(x.at),
            blobs: x.blobs,
            bytes: x.bytes,
        })
        .collect())
}
