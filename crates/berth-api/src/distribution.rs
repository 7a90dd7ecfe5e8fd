//! Handlers of the OCI distribution API. Each takes the parsed [`Route`]
//! and returns a response or an [`ApiError`]; nothing here touches storage
//! directly — the registry layer does.

use std::collections::HashMap;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Query, Request, State};
use axum::response::{IntoResponse, Response};
use berth_cache::{BlobServe, BlobWant};
use berth_registry::{BlobContent, PushOptions, Registry};
use berth_storage::ByteStream;
use berth_types::{Digest, ErrorCode, Reference, RepositoryName, Tag};
use futures::TryStreamExt;
use http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use http_body_util::BodyExt;

use crate::error::ApiError;
use crate::route::{Endpoint, Route};
use crate::AppState;

const DIGEST_HEADER: &str = "docker-content-digest";
const UPLOAD_UUID_HEADER: &str = "docker-upload-uuid";
/// Largest page of tags or repositories served at once.
const MAX_PAGE: u32 = 10_000;

type Params = HashMap<String, String>;

pub async fn handle(
    State(state): State<AppState>,
    Query(params): Query<Params>,
    request: Request,
) -> Result<Response, ApiError> {
    let Some(route) = request.extensions().get::<Route>().cloned() else {
        return Err(ApiError::new(ErrorCode::NameUnknown, "no such endpoint")
            .with_status(StatusCode::NOT_FOUND));
    };
    let registry = state.registry.clone();
    let method = request.method().clone();
    let m = method.as_str();
    match (&route.endpoint, m) {
        (Endpoint::Base, "GET" | "HEAD") => Ok(base()),
        (Endpoint::Catalog, "GET" | "HEAD") => catalog(&registry, &params).await,
        (Endpoint::Manifest { reference }, "GET" | "HEAD") => {
            let repo = route.repository()?;
            let cache_route = crate::cache::route(&state, repo);
            if let Some(cache_route) = &cache_route {
                let parsed: Reference = reference.parse()?;
                state.cache.manifest(cache_route, repo, &parsed).await?;
            }
            get_manifest(
                &registry,
                route.repository()?,
                reference,
                &method,
                request.headers(),
            )
            .await
            .map_err(|e| match cache_route {
                None => no_rule_hint(&state, e),
                Some(_) => e,
            })
        }
        (Endpoint::Manifest { reference }, "PUT") => {
            let options = PushOptions {
                tags: query_tags(request.uri().query())?,
                sparse: state.auth.sparse_manifests_enabled(),
            };
            put_manifest(&registry, route.repository()?, reference, options, request).await
        }
        (Endpoint::Manifest { reference }, "DELETE") => {
            let reference: Reference = reference.parse()?;
            registry
                .delete_manifest(route.repository()?, &reference)
                .await?;
            Ok(StatusCode::ACCEPTED.into_response())
        }
        (Endpoint::Blob { digest }, "GET" | "HEAD") => {
            let repo = route.repository()?;
            let digest = parse_digest(digest)?;
            let identity = request
                .extensions()
                .get::<crate::auth::Caller>()
                .map(|c| c.principal.describe())
                .unwrap_or_else(|| "anonymous".into());
            if let Some(cache_route) = crate::cache::route(&state, repo) {
                let want = if method == Method::HEAD {
                    BlobWant::Head
                } else if request.headers().contains_key(header::RANGE) {
                    BlobWant::Range
                } else {
                    BlobWant::Get
                };
                match state.cache.blob(&cache_route, repo, &digest, want).await? {
                    BlobServe::Local => {}
                    BlobServe::Streaming { size, body } => {
                        return Ok(uncached_blob(&digest, size, Body::from_stream(body)))
                    }
                    BlobServe::Upstream { size } => {
                        return Ok(uncached_blob(&digest, size, Body::empty()))
                    }
                }
            }
            // Existence is checked here, so a redirect never points at nothing.
            registry.blob_size(repo, &digest).await?;
            if let Some(redirect) =
                crate::data::redirect(&state, &method, request.headers(), repo, &digest, &identity)
            {
                return Ok(redirect);
            }
            if method == Method::GET {
                if let Some(url) = registry.storage_redirect(repo, &digest).await? {
                    let mut response = crate::data::temporary_redirect(&url);
                    set(response.headers_mut(), DIGEST_HEADER, &digest.to_string());
                    return Ok(response);
                }
            }
            serve_blob(&registry, repo, &digest, &method, request.headers()).await
        }
        (Endpoint::Blob { digest }, "DELETE") => {
            let digest = parse_digest(digest)?;
            registry.delete_blob(route.repository()?, &digest).await?;
            Ok(StatusCode::ACCEPTED.into_response())
        }
        (Endpoint::UploadStart, "POST") => {
            start_upload(
                &registry,
                route.repository()?,
                &params,
                request,
                state.body_idle_timeout,
            )
            .await
        }
        (Endpoint::Upload { id }, "GET") => {
            let repo = route.repository()?;
            let upload = registry.upload_state(repo, id).await?;
            Ok(upload_response(
                registry.config(),
                StatusCode::NO_CONTENT,
                repo,
                &upload.id.to_string(),
                upload.offset,
            ))
        }
        (Endpoint::Upload { id }, "PATCH") => {
            patch_upload(
                &registry,
                route.repository()?,
                id,
                request,
                state.body_idle_timeout,
            )
            .await
        }
        (Endpoint::Upload { id }, "PUT") => {
            finish_upload(
                &registry,
                route.repository()?,
                id,
                &params,
                request,
                state.body_idle_timeout,
            )
            .await
        }
        (Endpoint::Upload { id }, "DELETE") => {
            registry.cancel_upload(route.repository()?, id).await?;
            Ok(StatusCode::NO_CONTENT.into_response())
        }
        (Endpoint::Tags, "GET" | "HEAD") => tags(&registry, route.repository()?, &params).await,
        (Endpoint::Referrers { digest }, "GET") => {
            let digest = parse_digest(digest)?;
            let artifact_type = params.get("artifactType").filter(|t| !t.is_empty());
            let repo = route.repository()?;
            if let Some(cache_route) = crate::cache::route(&state, repo) {
                // The upstream's referrers, where it has the API; else
                // what is stored here.
                if let Some(index) = state
                    .cache
                    .referrers(&cache_route, &digest, artifact_type.map(|s| s.as_str()))
                    .await
                {
                    return Ok((
                        [(header::CONTENT_TYPE, berth_types::media_type::OCI_INDEX)],
                        index,
                    )
                        .into_response());
                }
            }
            let index = registry
                .referrers(
                    route.repository()?,
                    &digest,
                    artifact_type.map(|s| s.as_str()),
                )
                .await?;
            let mut response = (
                [(header::CONTENT_TYPE, berth_types::media_type::OCI_INDEX)],
                index,
            )
                .into_response();
            if artifact_type.is_some() {
                response.headers_mut().insert(
                    "oci-filters-applied",
                    HeaderValue::from_static("artifactType"),
                );
            }
            Ok(response)
        }
        _ => Err(ApiError::new(
            ErrorCode::Unsupported,
            format!("{m} is not supported on this endpoint"),
        )),
    }
}

fn base() -> Response {
    ([(header::CONTENT_TYPE, "application/json")], "{}").into_response()
}

fn parse_digest(raw: &str) -> Result<Digest, ApiError> {
    raw.parse().map_err(|e: berth_types::DigestError| {
        ApiError::new(ErrorCode::DigestInvalid, e.to_string())
    })
}

fn header_str(headers: &HeaderMap, name: impl header::AsHeaderName) -> Option<&str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

fn content_length(headers: &HeaderMap) -> Option<u64> {
    header_str(headers, header::CONTENT_LENGTH).and_then(|v| v.trim().parse().ok())
}

/// The request body as a byte stream that fails if the client sends
/// nothing for `idle` (a stalled or slow-loris upload must not hold an
/// upload lock and a writer forever).
fn body_stream(body: Body, idle: std::time::Duration) -> ByteStream {
    use futures::StreamExt;
    let inner = TryStreamExt::map_err(body.into_data_stream(), std::io::Error::other);
    Box::pin(futures::stream::unfold(
        Some(inner),
        move |state| async move {
            let mut inner = state?;
            match tokio::time::timeout(idle, inner.next()).await {
                Ok(Some(item)) => Some((item, Some(inner))),
                Ok(None) => None,
                Err(_) => Some((
                    Err(std::io::Error::new(
                        std::io::ErrorKind::TimedOut,
                        format!("no data received for {} seconds", idle.as_secs()),
                    )),
                    None,
                )),
            }
        },
    ))
}

fn set(headers: &mut HeaderMap, name: &'static str, value: &str) {
    if let Ok(v) = HeaderValue::from_str(value) {
        headers.insert(name, v);
    }
}

/// `n` and `last` of a paginated listing.
fn page(params: &Params) -> Result<(Option<u32>, Option<&str>), ApiError> {
    let n = match params.get("n") {
        None => None,
        Some(raw) => Some(raw.parse::<u32>().map_err(|_| {
            ApiError::new(
                ErrorCode::Unsupported,
                format!("page size n='{raw}' is not a non-negative integer"),
            )
            .with_status(StatusCode::BAD_REQUEST)
        })?),
    };
    Ok((
        n.map(|n| n.min(MAX_PAGE)),
        params.get("last").map(|s| s.as_str()),
    ))
}

/// `Link` to the next page, when this one was full.
/// Page size to ask the store for: one more than `n`, to know whether a
/// next page exists without an empty round trip at the end.
fn probe(n: Option<u32>) -> u32 {
    n.map(|n| n.saturating_add(1)).unwrap_or(u32::MAX)
}

/// Trims the probe item and returns the `Link` to the next page, if any.
fn next_link(base: &str, n: Option<u32>, items: &mut Vec<String>) -> Option<String> {
    let n = n?;
    if items.len() as u32 <= n {
        return None;
    }
    items.truncate(n as usize);
    let last = items.last()?;
    Some(format!("<{base}?n={n}&last={last}>; rel=\"next\""))
}

async fn catalog(registry: &Registry, params: &Params) -> Result<Response, ApiError> {
    let (n, last) = page(params)?;
    let mut repositories = registry.catalog(probe(n), last).await?;
    let link = next_link("/v2/_catalog", n, &mut repositories);
    let mut response =
        axum::Json(serde_json::json!({ "repositories": repositories })).into_response();
    if let Some(link) = link {
        set(response.headers_mut(), "link", &link);
    }
    Ok(response)
}

async fn tags(
    registry: &Registry,
    repo: &RepositoryName,
    params: &Params,
) -> Result<Response, ApiError> {
    let (n, last) = page(params)?;
    let mut tags = registry.list_tags(repo, probe(n), last).await?;
    let link = next_link(&format!("/v2/{repo}/tags/list"), n, &mut tags);
    let mut response =
        axum::Json(serde_json::json!({ "name": repo.as_str(), "tags": tags })).into_response();
    if let Some(link) = link {
        set(response.headers_mut(), "link", &link);
    }
    Ok(response)
}

async fn get_manifest(
    registry: &Registry,
    repo: &RepositoryName,
    reference: &str,
    method: &Method,
    headers: &HeaderMap,
) -> Result<Response, ApiError> {
    let reference: Reference = reference.parse()?;
    let accept: Vec<&str> = headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|v| v.split(';').next().unwrap_or("").trim())
        .filter(|v| !v.is_empty())
        .collect();
    let manifest = registry.get_manifest(repo, &reference, &accept).await?;
    let mut response = if method == Method::HEAD {
        Response::new(Body::empty())
    } else {
        Response::new(Body::from(manifest.content.clone()))
    };
    let h = response.headers_mut();
    set(h, "content-type", &manifest.media_type);
    set(h, "content-length", &manifest.content.len().to_string());
    set(h, DIGEST_HEADER, &manifest.digest.to_string());
    set(h, "etag", &format!("\"{}\"", manifest.digest));
    Ok(response)
}

/// The `tag` parameters of a manifest push (`?tag=a&tag=b`), in order.
/// Checked before the body is read: a bad one changes nothing.
fn query_tags(query: Option<&str>) -> Result<Vec<Tag>, ApiError> {
    let pairs: Vec<(String, String)> =
        serde_urlencoded::from_str(query.unwrap_or("")).map_err(|e| {
            ApiError::new(
                ErrorCode::Unsupported,
                format!("the query string cannot be read: {e}"),
            )
            .with_status(StatusCode::BAD_REQUEST)
        })?;
    let tags: Vec<Tag> = pairs
        .into_iter()
        .filter(|(k, _)| k == "tag")
        .map(|(_, v)| v.parse::<Tag>())
        .collect::<Result<_, _>>()?;
    if tags.len() > berth_registry::MAX_TAGS_PER_PUSH {
        return Err(berth_registry::RegistryError::TooManyTags {
            count: tags.len(),
            limit: berth_registry::MAX_TAGS_PER_PUSH,
        }
        .into());
    }
    Ok(tags)
}

async fn put_manifest(
    registry: &Registry,
    repo: &RepositoryName,
    reference: &str,
    options: PushOptions,
    request: Request,
) -> Result<Response, ApiError> {
    let reference: Reference = reference.parse()?;
    let content_type = header_str(request.headers(), header::CONTENT_TYPE).map(str::to_string);
    let limit = registry.config().max_manifest_bytes;
    if content_length(request.headers()).is_some_and(|l| l > limit as u64) {
        return Err(RegistryErrorTooLarge::error(limit));
    }
    let body = http_body_util::Limited::new(request.into_body(), limit)
        .collect()
        .await
        .map_err(|e| {
            if e.is::<http_body_util::LengthLimitError>() {
                RegistryErrorTooLarge::error(limit)
            } else {
                ApiError::new(
                    ErrorCode::ManifestInvalid,
                    format!("could not read the manifest: {e}"),
                )
            }
        })?
        .to_bytes();
    let put = registry
        .put_manifest(repo, &reference, content_type.as_deref(), body, options)
        .await?;
    let mut response = StatusCode::CREATED.into_response();
    let h = response.headers_mut();
    set(
        h,
        "location",
        &format!("/v2/{repo}/manifests/{}", put.digest),
    );
    set(h, DIGEST_HEADER, &put.digest.to_string());
    // One `OCI-Tag` per tag set, so a client knows the `?tag=`s were honoured.
    for tag in &put.tags {
        if let Ok(v) = HeaderValue::from_str(tag.as_str()) {
            h.append("oci-tag", v);
        }
    }
    if let Some(subject) = put.subject {
        set(h, "oci-subject", &subject.to_string());
    }
    Ok(response)
}

struct RegistryErrorTooLarge;

impl RegistryErrorTooLarge {
    fn error(limit: usize) -> ApiError {
        ApiError::new(
            ErrorCode::SizeInvalid,
            format!("manifest is larger than the limit of {limit} bytes"),
        )
        .with_status(StatusCode::PAYLOAD_TOO_LARGE)
    }
}

/// A blob the cache is fetching (streamed as it arrives), or the answer
/// to a `HEAD` of one it has not fetched (the upstream's size).
fn uncached_blob(digest: &Digest, size: Option<u64>, body: Body) -> Response {
    let mut response = Response::new(body);
    let h = response.headers_mut();
    set(h, "content-type", "application/octet-stream");
    if let Some(size) = size {
        set(h, "content-length", &size.to_string());
    }
    set(h, DIGEST_HEADER, &digest.to_string());
    set(h, "etag", &format!("\"{digest}\""));
    response
}

/// Streams a blob (or a `Range` of it), or answers HEAD.
pub(crate) async fn serve_blob(
    registry: &Registry,
    repo: &RepositoryName,
    digest: &Digest,
    method: &Method,
    headers: &HeaderMap,
) -> Result<Response, ApiError> {
    let size = registry.blob_size(repo, digest).await?;
    let range = match header_str(headers, header::RANGE) {
        None => None,
        Some(raw) => {
            match http_range_header::parse_range_header(raw).and_then(|r| r.validate(size)) {
                Ok(ranges) if ranges.len() == 1 => Some(ranges[0].clone()),
                // Several ranges: serve the whole blob, as HTTP allows.
                Ok(_) => None,
                Err(_) => {
                    return Err(ApiError::new(
                        ErrorCode::RangeInvalid,
                        format!("range '{raw}' is not satisfiable for a blob of {size} bytes"),
                    )
                    .with_header("content-range", &format!("bytes */{size}")))
                }
            }
        }
    };
    let (status, length) = match &range {
        Some(r) => (StatusCode::PARTIAL_CONTENT, r.end() - r.start() + 1),
        None => (StatusCode::OK, size),
    };
    let body = if method == Method::HEAD {
        Body::empty()
    } else {
        let byte_range = range.as_ref().map(|r| *r.start()..*r.end() + 1);
        match registry.read_blob(repo, digest, byte_range.clone()).await? {
            BlobContent::Stored(read) => Body::from_stream(read.stream),
            BlobContent::Inline(bytes) => match byte_range {
                Some(r) => Body::from(bytes.slice(r.start as usize..r.end as usize)),
                None => Body::from(bytes),
            },
        }
    };
    let mut response = Response::new(body);
    *response.status_mut() = status;
    let h = response.headers_mut();
    set(h, "content-type", "application/octet-stream");
    set(h, "content-length", &length.to_string());
    set(h, "accept-ranges", "bytes");
    set(h, DIGEST_HEADER, &digest.to_string());
    set(h, "etag", &format!("\"{digest}\""));
    if let Some(r) = range {
        set(
            h,
            "content-range",
            &format!("bytes {}-{}/{size}", r.start(), r.end()),
        );
    }
    Ok(response)
}

fn upload_response(
    config: &berth_registry::RegistryConfig,
    status: StatusCode,
    repo: &RepositoryName,
    id: &str,
    offset: u64,
) -> Response {
    let mut response = status.into_response();
    let h = response.headers_mut();
    set(h, "location", &format!("/v2/{repo}/blobs/uploads/{id}"));
    set(
        h,
        "oci-chunk-min-length",
        &config.chunk_min_length.to_string(),
    );
    // Docker Distribution reports an empty upload as 0-0.
    set(h, "range", &format!("0-{}", offset.saturating_sub(1)));
    set(h, UPLOAD_UUID_HEADER, id);
    set(h, "content-length", "0");
    response
}

fn blob_created(repo: &RepositoryName, digest: &Digest) -> Response {
    let mut response = StatusCode::CREATED.into_response();
    let h = response.headers_mut();
    set(h, "location", &format!("/v2/{repo}/blobs/{digest}"));
    set(h, DIGEST_HEADER, &digest.to_string());
    set(h, "content-length", "0");
    response
}

async fn start_upload(
    registry: &Registry,
    repo: &RepositoryName,
    params: &Params,
    request: Request,
    idle: std::time::Duration,
) -> Result<Response, ApiError> {
    if let (Some(mount), Some(from)) = (params.get("mount"), params.get("from")) {
        let digest = parse_digest(mount)?;
        let from: RepositoryName = from.parse()?;
        if registry.mount_blob(repo, &digest, &from).await? {
            return Ok(blob_created(repo, &digest));
        }
        // Not mountable: the client gets an upload session instead.
    } else if let Some(raw) = params.get("digest") {
        let digest = parse_digest(raw)?;
        let length = content_length(request.headers());
        registry
            .upload_blob(
                repo,
                &digest,
                length,
                body_stream(request.into_body(), idle),
            )
            .await?;
        return Ok(blob_created(repo, &digest));
    }
    let algorithm = match params.get("digest-algorithm") {
        None => berth_types::Algorithm::Sha256,
        Some(raw) => raw.parse().map_err(|e: berth_types::DigestError| {
            ApiError::new(ErrorCode::DigestInvalid, e.to_string())
        })?,
    };
    let upload = registry.start_upload(repo, algorithm).await?;
    Ok(upload_response(
        registry.config(),
        StatusCode::ACCEPTED,
        repo,
        &upload.id.to_string(),
        0,
    ))
}

/// `Content-Range: <start>-<end>` (inclusive), also accepted as `bytes=...`
/// or `bytes ...`. Returns (start, length).
fn content_range(headers: &HeaderMap) -> Result<Option<(u64, u64)>, ApiError> {
    let Some(raw) = header_str(headers, header::CONTENT_RANGE) else {
        return Ok(None);
    };
    let bad = || {
        ApiError::new(
            ErrorCode::RangeInvalid,
            format!("Content-Range '{raw}' is not of the form '<start>-<end>'"),
        )
    };
    let spec = raw
        .trim()
        .trim_start_matches("bytes")
        .trim_start_matches(['=', ' '])
        .split('/')
        .next()
        .unwrap_or("");
    let (start, end) = spec.split_once('-').ok_or_else(bad)?;
    let start: u64 = start.trim().parse().map_err(|_| bad())?;
    let end: u64 = end.trim().parse().map_err(|_| bad())?;
    if end < start {
        return Err(bad());
    }
    Ok(Some((start, end - start + 1)))
}

async fn patch_upload(
    registry: &Registry,
    repo: &RepositoryName,
    id: &str,
    request: Request,
    idle: std::time::Duration,
) -> Result<Response, ApiError> {
    let range = content_range(request.headers())?;
    let length = range
        .map(|(_, l)| l)
        .or_else(|| content_length(request.headers()));
    let result = registry
        .append_upload(
            repo,
            id,
            range.map(|(s, _)| s),
            length,
            body_stream(request.into_body(), idle),
        )
        .await;
    match result {
        Ok(upload) => Ok(upload_response(
            registry.config(),
            StatusCode::ACCEPTED,
            repo,
            &upload.id.to_string(),
            upload.offset,
        )),
        Err(e @ berth_registry::RegistryError::RangeInvalid { current, .. }) => {
            Err(ApiError::from(e)
                .with_header("location", &format!("/v2/{repo}/blobs/uploads/{id}"))
                .with_header("range", &format!("0-{}", current.saturating_sub(1)))
                .with_header(UPLOAD_UUID_HEADER, id))
        }
        Err(e) => Err(e.into()),
    }
}

async fn finish_upload(
    registry: &Registry,
    repo: &RepositoryName,
    id: &str,
    params: &Params,
    request: Request,
    idle: std::time::Duration,
) -> Result<Response, ApiError> {
    let raw = params.get("digest").ok_or_else(|| {
        ApiError::new(
            ErrorCode::DigestInvalid,
            "the digest query parameter is required to complete an upload (PUT ...?digest=sha256:...)",
        )
    })?;
    let digest = parse_digest(raw)?;
    let range = content_range(request.headers())?;
    let length = range
        .map(|(_, l)| l)
        .or_else(|| content_length(request.headers()));
    if let Some((start, _)) = range {
        let upload = registry.upload_state(repo, id).await?;
        if start != upload.offset {
            return Err(ApiError::from(
                berth_registry::RegistryError::RangeInvalid {
                    requested: start,
                    current: upload.offset,
                },
            ));
        }
    }
    let body = match length {
        Some(0) => None,
        _ => Some((length, body_stream(request.into_body(), idle))),
    };
    registry.complete_upload(repo, id, &digest, body).await?;
    Ok(blob_created(repo, &digest))
}

/// Shared handle used by the router.
pub type SharedRegistry = Arc<Registry>;

/// A repository that does not exist, on a registry with cache rules: the
/// message says no rule targets it and which targets there are (a typo in
/// the cache's prefix is the usual cause).
fn no_rule_hint(state: &AppState, mut e: ApiError) -> ApiError {
    if e.code != ErrorCode::NameUnknown {
        return e;
    }
    let rules = state.auth.cached_rules();
    if rules.is_empty() {
        return e;
    }
    let targets = rules
        .iter()
        .map(|r| format!("{} (rule {})", r.target, r.name))
        .collect::<Vec<_>>()
        .join(", ");
    e.message = format!(
        "{}; no cache rule targets it (cache rules target: {targets})",
        e.message
    );
    e
}
