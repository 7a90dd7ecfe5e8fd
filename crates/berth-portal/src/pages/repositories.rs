//! Repositories, a repository's tags and manifests, and one manifest:
//! its platforms, layers with sizes, config, referrers, and the commands
//! that copy it.

use axum::extract::Query;
use axum::response::Response;
use berth_manage::repositories::{
    ContentDescriptor, GetManifest, ListManifests, ListRepositorySummaries, ManifestDetail,
    RepositorySort,
};
use maud::{html, Markup};
use serde::Deserialize;

use crate::context::Viewer;
use crate::layout::{self, href, short_digest, size, Section};

/// Repositories per page.
const PAGE: u64 = 50;

#[derive(Debug, Default, Deserialize)]
pub struct ListQuery {
    #[serde(default)]
    q: String,
    /// `name` (the default), `size` or `pushed`.
    #[serde(default)]
    sort: String,
    #[serde(default)]
    page: Option<u64>,
}

/// One page of repositories, found, ordered and cut by the database: the
/// page costs the same for ten repositories or a hundred thousand.
pub async fn list(viewer: Viewer, Query(query): Query<ListQuery>) -> Response {
    let (sort, sort_key) = match query.sort.as_str() {
        "size" => (RepositorySort::Size, "size"),
        "pushed" => (RepositorySort::LastPush, "pushed"),
        _ => (RepositorySort::Name, "name"),
    };
    // Past any real page: the last page is fetched below.
    let page = query.page.unwrap_or(1).clamp(1, u64::MAX / PAGE);
    let search = query.q.trim();
    let request = |page: u64| ListRepositorySummaries {
        search: (!search.is_empty()).then(|| search.to_string()),
        sort: Some(sort),
        offset: Some((page - 1).saturating_mul(PAGE)),
        limit: Some(PAGE as u32),
    };
    let mut found = match viewer.call(&request(page)).await {
        Ok(n) => n,
        Err(r) => return viewer.refusal(Section::Repositories, &r),
    };
    let pages = found.total.div_ceil(PAGE).max(1);
    let page = if page > pages {
        // Past the end (the registry shrank, or a hand-made link): the last page.
        match viewer.call(&request(pages)).await {
            Ok(n) => found = n,
            Err(r) => return viewer.refusal(Section::Repositories, &r),
        }
        pages
    } else {
        page
    };
    let link = |sort: &str, p: u64| {
        href(
            "/repositories",
            &[
                ("q", query.q.as_str()),
                ("sort", sort),
                ("page", &p.to_string()),
            ],
        )
    };
    let column = |key: &str, label: &str, class: &str| {
        let current = key == sort_key;
        html! {
            th scope="col" class=(class) aria-sort=[current.then_some(if key == "name" { "ascending" } else { "descending" })] {
                @if current { (label) } @else { a href=(link(key, 1)) { (label) } }
            }
        }
    };
    let body = html! {
        form method="get" action="/repositories" class="row" role="search" {
            label for="q" { "Search repositories" input type="search" id="q" name="q" value=(query.q); }
            input type="hidden" name="sort" value=(sort_key);
            button type="submit" { "Search" }
        }
        p class="muted" id="repository-count" {
            (found.total) " repositories"
            @if !search.is_empty() { " match “" (search) "”" }
        }
        @if found.repositories.is_empty() {
            p { "No repository matches. Push one with "
                code { "skopeo copy … docker://" (viewer.host) "/NAME:TAG" } "." }
        } @else {
            div class="table-wrap" {
                table id="repositories" {
                    caption class="muted" { "Page " (page) " of " (pages) "; choose a column to order by it" }
                    thead { tr {
                        (column("name", "Repository", ""))
                        th scope="col" class="num" { "Tags" }
                        th scope="col" class="num" { "Manifests" }
                        (column("size", "Size", "num"))
                        (column("pushed", "Last push", ""))
                    } }
                    tbody {
                        @for r in &found.repositories {
                            tr {
                                td { a href=(href("/repository", &[("name", r.name.as_str())])) { (r.name) } }
                                td class="num" { (r.tags) }
                                td class="num" { (r.manifests) }
                                td class="num" data-bytes=(r.size) { (size(r.size)) }
                                td { (r.last_push_at.as_deref().unwrap_or("never")) }
                            }
                        }
                    }
                }
            }
            nav class="pager" aria-label="Pages" {
                @if page > 1 { a href=(link(sort_key, page - 1)) rel="prev" { "← Previous" } }
                span { "Page " (page) " of " (pages) }
                @if page < pages { a href=(link(sort_key, page + 1)) rel="next" { "Next →" } }
            }
        }
    };
    viewer.page(Section::Repositories, "Repositories", body)
}

#[derive(Debug, Default, Deserialize)]
pub struct RepositoryQuery {
    #[serde(default)]
    name: String,
    /// Only tags containing this.
    #[serde(default)]
    tag: String,
    #[serde(default)]
    page: Option<usize>,
}

/// Tags per page of a repository.
const TAGS_PAGE: usize = 100;

pub async fn repository(viewer: Viewer, Query(query): Query<RepositoryQuery>) -> Response {
    let manifests = match viewer
        .call(&ListManifests {
            repository: query.name.clone(),
        })
        .await
    {
        Ok(m) => m,
        Err(r) => return viewer.refusal(Section::Repositories, &r),
    };
    let needle = query.tag.trim();
    let mut tags: Vec<(&str, &berth_manage::repositories::ManifestInfo)> = manifests
        .iter()
        .flat_map(|m| m.tags.iter().map(move |t| (t.as_str(), m)))
        .filter(|(t, _)| t.contains(needle))
        .collect();
    tags.sort_by(|a, b| a.0.cmp(b.0));
    let tag_count: usize = manifests.iter().map(|m| m.tags.len()).sum();
    let pages = tags.len().div_ceil(TAGS_PAGE).max(1);
    let page = query.page.unwrap_or(1).clamp(1, pages);
    let shown: Vec<_> = tags
        .iter()
        .skip((page - 1) * TAGS_PAGE)
        .take(TAGS_PAGE)
        .collect();
    let page_link = |p: usize| {
        href(
            "/repository",
            &[
                ("name", query.name.as_str()),
                ("tag", needle),
                ("page", &p.to_string()),
            ],
        )
    };
    let untagged: Vec<_> = manifests.iter().filter(|m| m.tags.is_empty()).collect();
    let total: u64 = manifests.iter().map(|m| m.size).sum();
    let link = |reference: &str| {
        href(
            "/manifest",
            &[
                ("repository", query.name.as_str()),
                ("reference", reference),
            ],
        )
    };
    let body = html! {
        p { a href="/repositories" { "← All repositories" } }
        p class="muted" {
            (tag_count) " tags, " (manifests.len()) " manifests (" (size(total)) " of manifests)"
        }
        h2 { "Tags" }
        form method="get" action="/repository" class="row" role="search" {
            input type="hidden" name="name" value=(query.name);
            label for="tag" { "Tags containing" input type="search" id="tag" name="tag" value=(needle); }
            button type="submit" { "Filter" }
        }
        @if tags.is_empty() { p { "No tags." } } @else {
            div class="table-wrap" {
                table {
                    thead { tr {
                        th scope="col" { "Tag" } th scope="col" { "Digest" }
                        th scope="col" { "Type" } th scope="col" { "Pushed" }
                    } }
                    caption class="muted" { (tags.len()) " tags; page " (page) " of " (pages) }
                    tbody {
                        @for (tag, m) in &shown {
                            tr {
                                td { a href=(link(tag)) { (tag) } }
                                td { (short_digest(&m.digest)) }
                                td { (kind_of(&m.media_type, m.artifact_type.as_deref())) }
                                td { (m.created_at) }
                            }
                        }
                    }
                }
            }
            @if pages > 1 {
                nav class="pager" aria-label="Pages of tags" {
                    @if page > 1 { a href=(page_link(page - 1)) rel="prev" { "← Previous" } }
                    span { "Page " (page) " of " (pages) }
                    @if page < pages { a href=(page_link(page + 1)) rel="next" { "Next →" } }
                }
            }
        }
        @if !untagged.is_empty() {
            h2 { "Untagged manifests" }
            div class="table-wrap" {
                table {
                    thead { tr { th scope="col" { "Digest" } th scope="col" { "Type" } th scope="col" { "Pushed" } } }
                    tbody {
                        @for m in &untagged {
                            tr {
                                td { a href=(link(&m.digest)) { (short_digest(&m.digest)) } }
                                td { (kind_of(&m.media_type, m.artifact_type.as_deref())) }
                                td { (m.created_at) }
                            }
                        }
                    }
                }
            }
        }
    };
    viewer.page(Section::Repositories, &query.name, body)
}

/// A media type as a word people use.
fn kind_of(media_type: &str, artifact_type: Option<&str>) -> String {
    let base = if media_type.contains("index") || media_type.contains("manifest.list") {
        "index"
    } else {
        "manifest"
    };
    match artifact_type {
        Some(a)
            if !a.starts_with("application/vnd.oci.image.config")
                && !a.starts_with("application/vnd.docker.container.image") =>
        {
            format!("{base} ({a})")
        }
        _ => base.to_string(),
    }
}

#[derive(Debug, Default, Deserialize)]
pub struct ManifestQuery {
    #[serde(default)]
    repository: String,
    #[serde(default)]
    reference: String,
}

pub async fn manifest(viewer: Viewer, Query(query): Query<ManifestQuery>) -> Response {
    let detail = match viewer
        .call(&GetManifest {
            repository: query.repository.clone(),
            reference: query.reference.clone(),
        })
        .await
    {
        Ok(d) => d,
        Err(r) => return viewer.refusal(Section::Repositories, &r),
    };
    let title = format!("{}@{}", detail.repository, short(&detail.digest));
    let body = manifest_body(&viewer, &detail);
    viewer.page(Section::Repositories, &title, body)
}

fn short(digest: &str) -> String {
    digest.chars().take(19).collect()
}

fn manifest_body(viewer: &Viewer, d: &ManifestDetail) -> Markup {
    let pinned = format!("{}/{}@{}", viewer.host, d.repository, d.digest);
    let layers_total: u64 = d.layers.iter().map(|l| l.size).sum();
    let link = |digest: &str| {
        href(
            "/manifest",
            &[("repository", d.repository.as_str()), ("reference", digest)],
        )
    };
    html! {
        p { a href=(href("/repository", &[("name", d.repository.as_str())])) { "← " (d.repository) } }
        dl class="facts" {
            dt { "Digest" } dd { code { (d.digest) } }
            dt { "Kind" } dd { (d.kind) }
            dt { "Media type" } dd { code { (d.media_type) } }
            @if let Some(a) = &d.artifact_type { dt { "Artifact type" } dd { code { (a) } } }
            dt { "Manifest size" } dd { (size(d.size)) }
            @if !d.layers.is_empty() { dt { "Layers in total" } dd { (size(layers_total)) } }
            dt { "Tags" } dd {
                @if d.tags.is_empty() { span class="muted" { "none" } }
                @for t in &d.tags { code { (t) } " " }
            }
        }
        h2 { "Copy it" }
        (layout::copyable("docker", &format!("docker pull {pinned}")))
        (layout::copyable("skopeo", &format!("skopeo copy --all docker://{pinned} docker://DESTINATION/{}:TAG", d.repository)))
        @if !d.manifests.is_empty() {
            h2 { "Platforms" }
            div class="table-wrap" {
                table id="platforms" {
                    thead { tr { th scope="col" { "Platform" } th scope="col" { "Manifest" } th scope="col" class="num" { "Size" } } }
                    tbody {
                        @for m in &d.manifests {
                            tr {
                                td { (m.platform.as_deref().unwrap_or("(not stated)")) }
                                td { a href=(link(&m.digest)) { (short_digest(&m.digest)) } }
                                td class="num" { (size(m.size)) }
                            }
                        }
                    }
                }
            }
        }
        @if let Some(c) = &d.config {
            h2 { "Config" }
            (descriptors("config", std::slice::from_ref(c)))
        }
        @if !d.layers.is_empty() {
            h2 { "Layers" }
            (descriptors("layers", &d.layers))
        }
        @if let Some(s) = &d.subject {
            h2 { "Subject" }
            p { "This manifest refers to " a href=(link(&s.digest)) { (short_digest(&s.digest)) } "." }
        }
        h2 { "Referrers" }
        @if d.referrers.is_empty() {
            p class="muted" { "No signatures, SBOMs or other artifacts refer to this manifest." }
        } @else {
            div class="table-wrap" {
                table id="referrers" {
                    thead { tr { th scope="col" { "Artifact type" } th scope="col" { "Manifest" } th scope="col" class="num" { "Size" } } }
                    tbody {
                        @for r in &d.referrers {
                            tr {
                                td { code { (r.artifact_type.as_deref().unwrap_or(&r.media_type)) } }
                                td { a href=(link(&r.digest)) { (short_digest(&r.digest)) } }
                                td class="num" { (size(r.size)) }
                            }
                        }
                    }
                }
            }
        }
        @if !d.annotations.is_empty() {
            h2 { "Annotations" }
            dl class="facts" {
                @for (k, v) in &d.annotations { dt { code { (k) } } dd { (v) } }
            }
        }
    }
}

fn descriptors(id: &str, items: &[ContentDescriptor]) -> Markup {
    html! {
        div class="table-wrap" {
            table id=(id) {
                thead { tr { th scope="col" { "Digest" } th scope="col" { "Media type" } th scope="col" class="num" { "Size" } } }
                tbody {
                    @for l in items {
                        tr {
                            td { (short_digest(&l.digest)) }
                            td { code { (l.media_type) } }
                            td class="num" data-bytes=(l.size) { (size(l.size)) }
                        }
                    }
                }
            }
        }
    }
}
