//! The artifact cache (pull-through). A repository that a cache rule
//! targets is filled from the rule's upstreams, tried in order, when a pull
//! asks for something it does not hold:
//!
//! - a manifest is fetched whole (it is small), its digest checked, and
//!   stored as a sparse manifest (its blobs and children come when pulled);
//! - a blob is streamed to the client **while** it is stored: the upstream
//!   body is teed into an upload and to the client, and the client's last
//!   chunk is held back until the digest is verified (not until the
//!   commit's fsync), so a failed fetch cuts the connection instead of
//!   completing a wrong body, and leaves nothing visible;
//! - each piece is fetched once: one request per node leads (the others
//!   wait for it and then read the stored copy), and the leader holds a
//!   database-wide lock ([`berth_metadata::ContentLocks`]) so other nodes
//!   wait for it too;
//! - a cached tag is checked upstream (`HEAD`) once its TTL passed; if no
//!   upstream answers, the cached copy is served and the staleness
//!   recorded (event, metric, log). Digests never change: never re-fetched.
//!
//! The cache knows nothing of HTTP serving or authorisation: the API layer
//! resolves the [`Route`], calls in before its usual local read, and maps
//! [`CacheError`] to responses.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use berth_metadata::{ContentLock, ContentLocks};
use berth_registry::{PushOptions, Registry, RegistryError};
use berth_storage::ByteStream;
use berth_types::{media_type, Digest, Reference, RepositoryName, Tag};
use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use http::{header, Method};
use serde::Serialize;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

mod flight;
mod route;
mod upstream;

pub use route::{target_match, Login, Route, Source};
pub use upstream::{Failure, UpstreamClient};

use flight::{Flights, Joined};

/// What upstream manifest requests accept: every manifest type berth
/// stores.
const MANIFEST_ACCEPT: &str = "application/vnd.oci.image.index.v1+json, application/vnd.docker.distribution.manifest.list.v2+json, application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json";
/// Chunks of a blob in flight between the fill and a slow client.
const TEE_CHUNKS: usize = 16;
/// After a failed revalidation, the stale copy is served without asking
/// the upstream again for this long (or the tag TTL, if shorter), so a
/// dead upstream does not cost every pull a timeout.
const STALE_BACKOFF: Duration = Duration::from_secs(30);
/// A cached manifest's last pull is written at most this often per node
/// (eviction counts in days; pulls must stay reads).
const TOUCH_EVERY: Duration = Duration::from_secs(3600);
/// Manifests evicted per rule and pass at most (the next pass goes on).
const EVICT_BATCH: u32 = 1000;

/// Which kind of content a failure was about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    Manifest,
    Blob,
}

/// One upstream's failure.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SourceFailure {
    /// `host/repository`.
    pub upstream: String,
    #[serde(flatten)]
    pub failure: Failure,
}

#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    #[error("{kind:?} {reference} is not in the cache, and no upstream of cache rule '{rule}' served it: {}", describe(.failures))]
    Upstream {
        rule: String,
        kind: Kind,
        reference: String,
        failures: Vec<SourceFailure>,
    },
    #[error(transparent)]
    Registry(#[from] RegistryError),
    /// The fill's task ended without a word (the runtime is shutting down).
    #[error("the cache fill stopped before it finished")]
    Stopped,
}

fn describe(failures: &[SourceFailure]) -> String {
    failures
        .iter()
        .map(|f| format!("{} {}", f.upstream, f.failure.describe()))
        .collect::<Vec<_>>()
        .join("; ")
}

impl CacheError {
    fn upstream(
        route: &Route,
        kind: Kind,
        reference: String,
        failures: Vec<SourceFailure>,
    ) -> Self {
        CacheError::Upstream {
            rule: route.rule.clone(),
            kind,
            reference,
            failures,
        }
    }

    /// The failure that decides the answer: a rate limit (the client
    /// should wait), then refused credentials (an operator must act), then
    /// an upstream down; `NotFound` only when every upstream said so.
    pub fn dominant(&self) -> Option<&Failure> {
        let CacheError::Upstream { failures, .. } = self else {
            return None;
        };
        let rank = |f: &Failure| match f {
            Failure::RateLimited { .. } => 0,
            Failure::CredentialsRejected { .. } => 1,
            Failure::Unreachable { .. } | Failure::UpstreamError { .. } => 2,
            Failure::Invalid { .. } => 3,
            Failure::NotFound => 4,
        };
        failures.iter().map(|f| &f.failure).min_by_key(|f| rank(f))
    }
}

/// What a manifest pull found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Served {
    /// Cached, and fresh.
    Hit,
    /// Fetched from an upstream just now.
    Filled,
    /// Cached, but no upstream could confirm it.
    Stale,
}

/// How a blob request is to be answered.
pub enum BlobServe {
    /// The repository holds it: serve it as any other.
    Local,
    /// Being fetched: the body streams as it arrives (`size` from the
    /// upstream's `Content-Length`).
    Streaming { size: Option<u64>, body: ByteStream },
    /// A `HEAD` of an uncached blob, answered from the upstream's.
    Upstream { size: Option<u64> },
}

/// What a blob request wants.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlobWant {
    Head,
    Get,
    /// A byte range: the blob is filled whole first.
    Range,
}

/// A fill or a stale serve, for the repository events.
#[derive(Debug, Clone)]
pub struct CacheEvent {
    /// `CacheFill` or `CacheStale`.
    pub operation: &'static str,
    pub repository: String,
    pub tag: Option<String>,
    pub digest: Option<String>,
    pub size: Option<u64>,
    pub description: String,
}

pub type Observer = Arc<dyn Fn(CacheEvent) + Send + Sync>;

/// The metrics, with their help texts (called once at start-up).
pub fn describe_metrics() {
    metrics::describe_counter!(
        "berth_cache_hits_total",
        "Pulls from cached repositories served from the cache, by rule and kind (manifest, blob)."
    );
    metrics::describe_counter!(
        "berth_cache_misses_total",
        "Pulls from cached repositories that went to an upstream, by rule and kind."
    );
    metrics::describe_counter!(
        "berth_cache_upstream_bytes_total",
        "Bytes fetched from upstream registries, by upstream host."
    );
    metrics::describe_counter!(
        "berth_cache_upstream_errors_total",
        "Failed upstream requests, by upstream host and status (an HTTP status, unreachable or invalid)."
    );
    metrics::describe_counter!(
        "berth_cache_evictions_total",
        "Cached manifests evicted because nobody pulled them for their rule's days, by rule."
    );
    metrics::describe_counter!(
        "berth_cache_stale_serves_total",
        "Cached tags served although no upstream could confirm them, by rule."
    );
}

#[derive(Clone, Copy)]
struct TagCheck {
    at: Instant,
    /// An upstream confirmed the tag (else every upstream failed).
    confirmed: bool,
}

struct Inner {
    registry: Arc<Registry>,
    locks: Arc<dyn ContentLocks>,
    upstream: UpstreamClient,
    flights: Flights,
    /// When each cached tag was last checked upstream, on this node.
    checks: Mutex<HashMap<(String, String), TagCheck>>,
    /// When this node last recorded a pull of each cached manifest.
    touched: Mutex<HashMap<(String, Digest), Instant>>,
    observer: Observer,
}

#[derive(Clone)]
pub struct PullThrough {
    inner: Arc<Inner>,
}

enum Msg {
    Chunk(Bytes),
    Done(Result<(), String>),
}

fn hit(route: &Route, kind: &'static str) {
    metrics::counter!("berth_cache_hits_total", "rule" => route.rule.clone(), "kind" => kind)
        .increment(1);
}

fn miss(route: &Route, kind: &'static str) {
    metrics::counter!("berth_cache_misses_total", "rule" => route.rule.clone(), "kind" => kind)
        .increment(1);
}

fn upstream_error(source: &Source, failure: &Failure) {
    metrics::counter!(
        "berth_cache_upstream_errors_total",
        "upstream" => source.host().to_string(),
        "status" => failure.status_label()
    )
    .increment(1);
}

impl PullThrough {
    pub fn new(
        registry: Arc<Registry>,
        locks: Arc<dyn ContentLocks>,
        observer: Observer,
    ) -> Result<PullThrough, String> {
        Ok(PullThrough {
            inner: Arc::new(Inner {
                registry,
                locks,
                upstream: UpstreamClient::new()?,
                flights: Flights::default(),
                checks: Mutex::new(HashMap::new()),
                touched: Mutex::new(HashMap::new()),
                observer,
            }),
        })
    }

    /// Token requests made to upstreams so far.
    pub fn upstream_logins(&self) -> u64 {
        self.inner.upstream.logins()
    }

    fn check(&self, repo: &RepositoryName, tag: &Tag) -> Option<TagCheck> {
        let checks = self.inner.checks.lock().unwrap_or_else(|p| p.into_inner());
        checks.get(&(repo.to_string(), tag.to_string())).copied()
    }

    fn record_check(&self, repo: &RepositoryName, tag: &Tag, confirmed: bool) {
        let mut checks = self.inner.checks.lock().unwrap_or_else(|p| p.into_inner());
        checks.insert(
            (repo.to_string(), tag.to_string()),
            TagCheck {
                at: Instant::now(),
                confirmed,
            },
        );
    }

    /// The database-wide lock of `key`; `None` (go ahead unlocked, at the
    /// cost of a duplicate fetch) if the database cannot give one now.
    async fn lock(&self, key: &str) -> Option<ContentLock> {
        match self.inner.locks.lock(key).await {
            Ok(lock) => Some(lock),
            Err(e) => {
                tracing::warn!(key, error = %e, "cache fill lock unavailable; fetching without it");
                None
            }
        }
    }

    /// Makes sure the manifest `reference` of `repo` is stored and, for a
    /// tag, current (within the rule's TTL); the caller then serves it
    /// from the registry as usual.
    pub async fn manifest(
        &self,
        route: &Route,
        repo: &RepositoryName,
        reference: &Reference,
    ) -> Result<Served, CacheError> {
        let served = self.ensure_manifest(route, repo, reference).await?;
        if served != Served::Filled {
            self.touch(repo, reference).await;
        }
        Ok(served)
    }

    /// Records the pull of a cached manifest for eviction (at most every
    /// [`TOUCH_EVERY`]); a failure only costs eviction accuracy.
    async fn touch(&self, repo: &RepositoryName, reference: &Reference) {
        let digest = match self.inner.registry.find_manifest(repo, reference).await {
            Ok(Some(m)) => m.digest,
            _ => return,
        };
        let key = (repo.to_string(), digest.clone());
        {
            let mut touched = self.inner.touched.lock().unwrap_or_else(|p| p.into_inner());
            if touched
                .get(&key)
                .is_some_and(|at| at.elapsed() < TOUCH_EVERY)
            {
                return;
            }
            if touched.len() > 100_000 {
                touched.clear();
            }
            touched.insert(key, Instant::now());
        }
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or(0);
        if let Err(e) = self
            .inner
            .registry
            .metadata()
            .touch_manifests(repo, &[digest], now)
            .await
        {
            tracing::warn!(repository = %repo, error = %e, "recording a cached manifest's pull failed");
        }
    }

    /// Evicts the cached manifests of `rules` that nobody pulled for the
    /// rule's `evict_unused_days` (their tags go with them; the collector
    /// then reclaims blobs nothing references). Returns how many went.
    pub async fn evict(
        &self,
        rules: &[berth_manage::cache::CacheRule],
        now: i64,
    ) -> Result<u64, CacheError> {
        let mut evicted = 0;
        for rule in rules {
            let Some(days) = rule.evict_unused_days.filter(|d| *d > 0) else {
                continue;
            };
            let before = now - i64::from(days) * 86_400;
            let unused = self
                .inner
                .registry
                .metadata()
                .unused_manifests(&rule.target, before, EVICT_BATCH)
                .await
                .map_err(RegistryError::from)?;
            for (repo, digest) in unused {
                match self
                    .inner
                    .registry
                    .delete_manifest(&repo, &Reference::Digest(digest.clone()))
                    .await
                {
                    Ok(()) => {
                        evicted += 1;
                        tracing::info!(rule = %rule.name, repository = %repo, digest = %digest, days, "evicted cached content nobody pulled");
                        metrics::counter!("berth_cache_evictions_total", "rule" => rule.name.clone())
                            .increment(1);
                    }
                    // Another node evicted it first.
                    Err(RegistryError::ManifestUnknown { .. }) => {}
                    Err(e) => return Err(e.into()),
                }
            }
        }
        Ok(evicted)
    }

    async fn ensure_manifest(
        &self,
        route: &Route,
        repo: &RepositoryName,
        reference: &Reference,
    ) -> Result<Served, CacheError> {
        let key = format!("manifest:{repo}:{reference}");
        for attempt in 0..2 {
            let cached = self
                .inner
                .registry
                .find_manifest(repo, reference)
                .await?
                .map(|m| m.digest);
            let tag = match reference {
                Reference::Tag(tag) => Some(tag),
                Reference::Digest(_) => None,
            };
            match (&cached, tag) {
                (Some(_), None) => {
                    hit(route, "manifest");
                    return Ok(Served::Hit);
                }
                (Some(_), Some(tag)) => {
                    if let Some(check) = self.check(repo, tag) {
                        let age = check.at.elapsed();
                        if check.confirmed && age < route.tag_ttl {
                            hit(route, "manifest");
                            return Ok(Served::Hit);
                        }
                        if !check.confirmed && age < route.tag_ttl.min(STALE_BACKOFF) {
                            self.stale(route, repo, tag, "the upstreams failed moments ago");
                            return Ok(Served::Stale);
                        }
                    }
                }
                (None, _) => {}
            }
            match self.inner.flights.join(&key) {
                Joined::Follower(rx) if attempt == 0 => {
                    flight::wait(rx).await;
                    continue;
                }
                Joined::Follower(_) => {}
                Joined::Leader(_guard) => {
                    let lock = self.lock(&key).await;
                    let result = match (cached, tag) {
                        (Some(digest), Some(tag)) => {
                            self.revalidate(route, repo, tag, &digest).await
                        }
                        _ => {
                            // Another node may have filled it meanwhile.
                            let now = self.inner.registry.find_manifest(repo, reference).await?;
                            if now.is_some() {
                                if let Some(tag) = tag {
                                    self.record_check(repo, tag, true);
                                }
                                hit(route, "manifest");
                                Ok(Served::Hit)
                            } else {
                                miss(route, "manifest");
                                self.fill_manifest(route, repo, reference)
                                    .await
                                    .map(|_| Served::Filled)
                            }
                        }
                    };
                    if let Some(lock) = lock {
                        lock.release().await;
                    }
                    return result;
                }
            }
        }
        // The leader we waited for did not store it; answer from what is
        // here (the registry's own "unknown" if nothing).
        Ok(Served::Hit)
    }

    fn stale(&self, route: &Route, repo: &RepositoryName, tag: &Tag, why: &str) {
        metrics::counter!("berth_cache_stale_serves_total", "rule" => route.rule.clone())
            .increment(1);
        tracing::warn!(rule = %route.rule, repository = %repo, tag = %tag, why, "serving a cached tag no upstream confirmed");
        (self.inner.observer)(CacheEvent {
            operation: "CacheStale",
            repository: repo.to_string(),
            tag: Some(tag.to_string()),
            digest: None,
            size: None,
            description: format!("served stale (rule {}): {why}", route.rule),
        });
    }

    /// `HEAD` upstream: the same digest confirms the cached tag; another
    /// one is fetched; no answer serves the cached copy.
    async fn revalidate(
        &self,
        route: &Route,
        repo: &RepositoryName,
        tag: &Tag,
        cached: &Digest,
    ) -> Result<Served, CacheError> {
        let mut failures = Vec::new();
        let path = format!("manifests/{tag}");
        for source in &route.sources {
            let upstream = self
                .inner
                .upstream
                .fetch(source, Method::HEAD, &path, Some(MANIFEST_ACCEPT))
                .await;
            let response = match upstream {
                Ok(r) => r,
                Err(failure) => {
                    upstream_error(source, &failure);
                    failures.push(SourceFailure {
                        upstream: source.display(),
                        failure,
                    });
                    continue;
                }
            };
            let digest = response
                .headers()
                .get("docker-content-digest")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse::<Digest>().ok());
            if digest.as_ref() == Some(cached) {
                self.record_check(repo, tag, true);
                hit(route, "manifest");
                return Ok(Served::Hit);
            }
            miss(route, "manifest");
            match self
                .fill_from(route, source, repo, &Reference::Tag(tag.clone()))
                .await?
            {
                Ok(()) => return Ok(Served::Filled),
                Err(failure) => failures.push(SourceFailure {
                    upstream: source.display(),
                    failure,
                }),
            }
        }
        self.record_check(repo, tag, false);
        self.stale(route, repo, tag, &describe(&failures));
        Ok(Served::Stale)
    }

    async fn fill_manifest(
        &self,
        route: &Route,
        repo: &RepositoryName,
        reference: &Reference,
    ) -> Result<(), CacheError> {
        let mut failures = Vec::new();
        for source in &route.sources {
            match self.fill_from(route, source, repo, reference).await? {
                Ok(()) => return Ok(()),
                Err(failure) => failures.push(SourceFailure {
                    upstream: source.display(),
                    failure,
                }),
            }
        }
        Err(CacheError::upstream(
            route,
            Kind::Manifest,
            reference.to_string(),
            failures,
        ))
    }

    /// Fetches one manifest from one source and stores it. The outer error
    /// is ours (storage); the inner one the upstream's.
    async fn fill_from(
        &self,
        route: &Route,
        source: &Source,
        repo: &RepositoryName,
        reference: &Reference,
    ) -> Result<Result<(), Failure>, CacheError> {
        let fetched = self.fetch_manifest(source, reference).await;
        let (content_type, body) = match fetched {
            Ok(m) => m,
            Err(failure) => {
                upstream_error(source, &failure);
                return Ok(Err(failure));
            }
        };
        let size = body.len() as u64;
        let options = PushOptions {
            tags: Vec::new(),
            // Cached indexes and manifests hold only what was pulled.
            sparse: true,
        };
        let stored = self
            .inner
            .registry
            .put_manifest(repo, reference, content_type.as_deref(), body, options)
            .await;
        let put = match stored {
            Ok(put) => put,
            Err(e) if e.fault().is_none() => {
                let failure = Failure::Invalid {
                    reason: e.to_string(),
                };
                upstream_error(source, &failure);
                return Ok(Err(failure));
            }
            Err(e) => return Err(e.into()),
        };
        metrics::counter!("berth_cache_upstream_bytes_total", "upstream" => source.host().to_string())
            .increment(size);
        if let Reference::Tag(tag) = reference {
            self.record_check(repo, tag, true);
        }
        tracing::info!(rule = %route.rule, repository = %repo, reference = %reference, digest = %put.digest, upstream = %source.display(), "cache filled a manifest");
        (self.inner.observer)(CacheEvent {
            operation: "CacheFill",
            repository: repo.to_string(),
            tag: match reference {
                Reference::Tag(t) => Some(t.to_string()),
                Reference::Digest(_) => None,
            },
            digest: Some(put.digest.to_string()),
            size: Some(size),
            description: format!("filled from {} (rule {})", source.display(), route.rule),
        });
        Ok(Ok(()))
    }

    async fn fetch_manifest(
        &self,
        source: &Source,
        reference: &Reference,
    ) -> Result<(Option<String>, Bytes), Failure> {
        let path = format!("manifests/{reference}");
        let response = self
            .inner
            .upstream
            .fetch(source, Method::GET, &path, Some(MANIFEST_ACCEPT))
            .await?;
        let content_type = response
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(|v| v.split(';').next().unwrap_or(v).trim().to_string());
        let announced = response
            .headers()
            .get("docker-content-digest")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<Digest>().ok());
        // Manifests are small (the registry refuses large ones); a
        // Content-Length past 8 MiB is refused unread.
        if response.content_length().is_some_and(|l| l > 8 << 20) {
            return Err(Failure::Invalid {
                reason: "the manifest is larger than 8 MiB".into(),
            });
        }
        let body = response.bytes().await.map_err(|e| Failure::Unreachable {
            reason: format!("the manifest body broke off: {e}"),
        })?;
        let expected = match reference {
            Reference::Digest(d) => Some(d.clone()),
            Reference::Tag(_) => announced,
        };
        if let Some(expected) = expected {
            let actual = Digest::of(expected.algorithm(), &body);
            if actual != expected {
                return Err(Failure::Invalid {
                    reason: format!("the manifest's digest is {actual}, not {expected}"),
                });
            }
        }
        let content_type = content_type
            .filter(|t| t != "application/octet-stream" && t != "text/plain" && !t.is_empty());
        if content_type.is_none() && body.first() != Some(&b'{') {
            return Err(Failure::Invalid {
                reason: "the manifest is not JSON".into(),
            });
        }
        Ok((content_type, body))
    }

    /// Makes a blob of `repo` servable: already held ([`BlobServe::Local`]),
    /// or fetched now and streamed while it is stored.
    pub async fn blob(
        &self,
        route: &Route,
        repo: &RepositoryName,
        digest: &Digest,
        want: BlobWant,
    ) -> Result<BlobServe, CacheError> {
        match self.inner.registry.blob_size(repo, digest).await {
            Ok(_) => {
                hit(route, "blob");
                return Ok(BlobServe::Local);
            }
            Err(RegistryError::BlobUnknown { .. }) => {}
            Err(e) => return Err(e.into()),
        }
        if want == BlobWant::Head {
            return self.head_blob(route, digest).await;
        }
        let key = format!("blob:{digest}");
        for attempt in 0..2 {
            match self.inner.flights.join(&key) {
                Joined::Follower(rx) => {
                    flight::wait(rx).await;
                    if self.inner.registry.blob_size(repo, digest).await.is_ok() {
                        hit(route, "blob");
                        return Ok(BlobServe::Local);
                    }
                    if attempt == 1 {
                        break;
                    }
                }
                Joined::Leader(guard) => {
                    let lock = self.lock(&key).await;
                    // Another node (or a leader before us) may have it now.
                    if self.inner.registry.blob_size(repo, digest).await.is_ok() {
                        if let Some(lock) = lock {
                            lock.release().await;
                        }
                        hit(route, "blob");
                        return Ok(BlobServe::Local);
                    }
                    miss(route, "blob");
                    let (source, response) = match self.open_blob(route, digest).await {
                        Ok(opened) => opened,
                        Err(e) => {
                            if let Some(lock) = lock {
                                lock.release().await;
                            }
                            return Err(e);
                        }
                    };
                    let size = response.content_length();
                    let (done_tx, done_rx) = oneshot::channel();
                    let (tx, rx) = match want {
                        BlobWant::Get => {
                            let (tx, rx) = mpsc::channel(TEE_CHUNKS);
                            (Some(tx), Some(rx))
                        }
                        _ => (None, None),
                    };
                    let fill = Fill {
                        cache: self.clone(),
                        rule: route.rule.clone(),
                        source,
                        repo: repo.clone(),
                        digest: digest.clone(),
                        size,
                    };
                    tokio::spawn(fill.run(response, tx, done_tx, lock, guard));
                    return match rx {
                        Some(rx) => Ok(BlobServe::Streaming {
                            size,
                            body: held_back(rx),
                        }),
                        None => match done_rx.await {
                            Ok(Ok(())) => Ok(BlobServe::Local),
                            Ok(Err(reason)) => Err(CacheError::upstream(
                                route,
                                Kind::Blob,
                                digest.to_string(),
                                vec![SourceFailure {
                                    upstream: String::new(),
                                    failure: Failure::Invalid { reason },
                                }],
                            )),
                            Err(_) => Err(CacheError::Stopped),
                        },
                    };
                }
            }
        }
        Err(RegistryError::BlobUnknown {
            repository: repo.to_string(),
            digest: digest.clone(),
        }
        .into())
    }

    async fn head_blob(&self, route: &Route, digest: &Digest) -> Result<BlobServe, CacheError> {
        let path = format!("blobs/{digest}");
        let (_, response) = self
            .first_answer(route, Method::HEAD, &path, Kind::Blob, digest)
            .await?;
        Ok(BlobServe::Upstream {
            size: response.content_length(),
        })
    }

    /// The first upstream that answers `200` to the blob's `GET`.
    async fn open_blob(
        &self,
        route: &Route,
        digest: &Digest,
    ) -> Result<(Source, reqwest::Response), CacheError> {
        let path = format!("blobs/{digest}");
        self.first_answer(route, Method::GET, &path, Kind::Blob, digest)
            .await
    }

    /// The first of the route's upstreams to answer `2xx` to `method
    /// path`; else every upstream's failure.
    async fn first_answer(
        &self,
        route: &Route,
        method: Method,
        path: &str,
        kind: Kind,
        reference: &Digest,
    ) -> Result<(Source, reqwest::Response), CacheError> {
        let mut failures = Vec::new();
        for source in &route.sources {
            match self
                .inner
                .upstream
                .fetch(source, method.clone(), path, None)
                .await
            {
                Ok(response) => return Ok((source.clone(), response)),
                Err(failure) => {
                    upstream_error(source, &failure);
                    failures.push(SourceFailure {
                        upstream: source.display(),
                        failure,
                    });
                }
            }
        }
        Err(CacheError::upstream(
            route,
            kind,
            reference.to_string(),
            failures,
        ))
    }

    /// Asks each upstream of the route for the repository's tag list now
    /// (through the token flow, with the credential set): whether it
    /// answers, and if not, why. For `berth explain`.
    pub async fn probe(&self, route: &Route) -> Vec<(Source, Result<(), Failure>)> {
        let mut out = Vec::new();
        for source in &route.sources {
            let result = self
                .inner
                .upstream
                .fetch(source, Method::GET, "tags/list?n=1", None)
                .await
                .map(|_| ());
            out.push((source.clone(), result));
        }
        out
    }

    /// The upstream's referrers of `digest` (an OCI index), where one of
    /// the upstreams serves the referrers API; `None` otherwise (the
    /// caller then answers from what is stored here).
    pub async fn referrers(
        &self,
        route: &Route,
        digest: &Digest,
        artifact_type: Option<&str>,
    ) -> Option<Bytes> {
        let mut path = format!("referrers/{digest}");
        if let Some(t) = artifact_type {
            path.push_str("?artifactType=");
            path.push_str(&percent_encode(t));
        }
        for source in &route.sources {
            match self
                .inner
                .upstream
                .fetch(source, Method::GET, &path, Some(media_type::OCI_INDEX))
                .await
            {
                Ok(response) => {
                    let is_index = response
                        .headers()
                        .get(header::CONTENT_TYPE)
                        .and_then(|v| v.to_str().ok())
                        .is_some_and(|t| t.starts_with(media_type::OCI_INDEX));
                    if let (true, Ok(body)) = (is_index, response.bytes().await) {
                        return Some(body);
                    }
                }
                Err(failure) => upstream_error(source, &failure),
            }
        }
        None
    }
}

fn percent_encode(value: &str) -> String {
    value
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            b => format!("%{b:02X}"),
        })
        .collect()
}

/// The client's side of a tee: every chunk but the last as it arrives;
/// the last only once the fill reports the bytes verified, and
/// an error instead if it failed (the server then cuts the connection, so
/// the client never holds a complete body with wrong bytes).
fn held_back(rx: mpsc::Receiver<Msg>) -> ByteStream {
    let stream = futures::stream::unfold(
        (rx, None::<Bytes>, false),
        |(mut rx, mut pending, finished)| async move {
            if finished {
                return None;
            }
            loop {
                match rx.recv().await {
                    Some(Msg::Chunk(chunk)) => match pending.replace(chunk) {
                        Some(previous) => return Some((Ok(previous), (rx, pending, false))),
                        None => continue,
                    },
                    Some(Msg::Done(Ok(()))) => {
                        return pending.map(|last| (Ok(last), (rx, None, true)));
                    }
                    Some(Msg::Done(Err(reason))) => {
                        let e = std::io::Error::other(format!("cache fill failed: {reason}"));
                        return Some((Err(e), (rx, None, true)));
                    }
                    None => {
                        let e = std::io::Error::other("cache fill stopped");
                        return Some((Err(e), (rx, None, true)));
                    }
                }
            }
        },
    );
    Box::pin(stream)
}

/// One blob being fetched and stored; runs on its own task, so it goes on
/// (for the other waiting pulls) when the client that started it leaves.
struct Fill {
    cache: PullThrough,
    rule: String,
    source: Source,
    repo: RepositoryName,
    digest: Digest,
    size: Option<u64>,
}

impl Fill {
    async fn run(
        self,
        response: reqwest::Response,
        tx: Option<mpsc::Sender<Msg>>,
        done: oneshot::Sender<Result<(), String>>,
        lock: Option<ContentLock>,
        guard: flight::FlightGuard,
    ) {
        let host = self.source.host().to_string();
        let tee = tx.clone();
        let body = response
            .bytes_stream()
            .map_err(std::io::Error::other)
            .then(move |item| {
                let tee = tee.clone();
                let host = host.clone();
                async move {
                    if let Ok(chunk) = &item {
                        metrics::counter!("berth_cache_upstream_bytes_total", "upstream" => host)
                            .increment(chunk.len() as u64);
                        if let Some(tee) = &tee {
                            // A client that left makes this fail: the fill
                            // goes on for the others.
                            let _ = tee.send(Msg::Chunk(chunk.clone())).await;
                        }
                    }
                    item
                }
            });
        let registry = self.cache.inner.registry.clone();
        let (verified_tx, mut verified) = oneshot::channel();
        let upload = registry.upload_blob_notifying(
            &self.repo,
            &self.digest,
            self.size,
            Box::pin(body),
            Some(verified_tx),
        );
        tokio::pin!(upload);
        // The client's last chunk goes out once the digest matches, not
        // after the commit's fsync: the fsync of a large layer would
        // otherwise double the first pull's time. A commit that fails
        // after that only means the next pull fetches again.
        let mut tx = tx;
        let result = tokio::select! {
            result = &mut upload => result,
            Ok(()) = &mut verified => {
                if let Some(tx) = tx.take() {
                    let _ = tx.send(Msg::Done(Ok(()))).await;
                }
                upload.await
            }
        };
        let outcome = match &result {
            Ok(()) => {
                tracing::info!(rule = %self.rule, repository = %self.repo, digest = %self.digest, upstream = %self.source.display(), "cache filled a blob");
                (self.cache.inner.observer)(CacheEvent {
                    operation: "CacheFill",
                    repository: self.repo.to_string(),
                    tag: None,
                    digest: Some(self.digest.to_string()),
                    size: self.size,
                    description: format!(
                        "filled from {} (rule {})",
                        self.source.display(),
                        self.rule
                    ),
                });
                Ok(())
            }
            Err(e) => {
                tracing::warn!(rule = %self.rule, repository = %self.repo, digest = %self.digest, upstream = %self.source.display(), error = %e, "cache fill failed; nothing was kept");
                upstream_error(
                    &self.source,
                    &Failure::Invalid {
                        reason: e.to_string(),
                    },
                );
                Err(format!("{} from {}", e, self.source.display()))
            }
        };
        if let Some(tx) = tx {
            let _ = tx.send(Msg::Done(outcome.clone())).await;
        }
        let _ = done.send(outcome);
        if let Some(lock) = lock {
            lock.release().await;
        }
        drop(guard);
    }
}
