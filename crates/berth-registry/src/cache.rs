//! Read-through cache of the metadata that every pull asks for: tag →
//! digest, manifest bytes, and repository → blob links. Pulls are far more
//! frequent than pushes, and a manifest GET must not cost a database round
//! trip.
//!
//! Consistency on one node: every write bumps `generation` before and after
//! it changes the store and then invalidates; a reader only fills the cache
//! if the generation did not move during its database read, so a fill can
//! never resurrect a value a concurrent write replaced. With shared
//! metadata (several nodes) the cache is off: another node's write would not
//! bump this node's generation (see docs/scale-out.md).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use berth_types::Digest;
use quick_cache::sync::Cache;
use quick_cache::Weighter;

use crate::manifests::StoredManifest;

const TAG_ENTRIES: usize = 20_000;
const LINK_ENTRIES: usize = 20_000;
/// Manifest bytes kept in memory at most.
const MANIFEST_BYTES: u64 = 16 * 1024 * 1024;

type RepoKey = (String, String);

#[derive(Clone)]
struct ManifestWeight;

impl Weighter<RepoKey, Arc<StoredManifest>> for ManifestWeight {
    fn weight(&self, key: &RepoKey, value: &Arc<StoredManifest>) -> u64 {
        (key.0.len() + key.1.len() + value.content.len() + value.media_type.len() + 64) as u64
    }
}

pub(crate) struct MetadataCache {
    /// Off: nothing is ever filled, so every lookup reads the database.
    enabled: bool,
    generation: AtomicU64,
    tags: Cache<RepoKey, Digest>,
    manifests: Cache<RepoKey, Arc<StoredManifest>, ManifestWeight>,
    links: Cache<RepoKey, u64>,
}

/// A token taken before a database read; filling with it is a no-op if any
/// write happened meanwhile.
#[derive(Clone, Copy)]
pub(crate) struct Ticket(u64);

impl MetadataCache {
    pub(crate) fn new(enabled: bool) -> Self {
        MetadataCache {
            enabled,
            generation: AtomicU64::new(0),
            tags: Cache::new(TAG_ENTRIES),
            manifests: Cache::with_weighter(2_000, MANIFEST_BYTES, ManifestWeight),
            links: Cache::new(LINK_ENTRIES),
        }
    }

    pub(crate) fn ticket(&self) -> Ticket {
        Ticket(self.generation.load(Ordering::Acquire))
    }

    fn valid(&self, ticket: Ticket) -> bool {
        // Writes bump twice (before and after), so an odd value is a write
        // in progress.
        self.enabled
            && ticket.0.is_multiple_of(2)
            && self.generation.load(Ordering::Acquire) == ticket.0
    }

    /// Brackets a write: call before changing the store, and call the
    /// returned guard's `done` (or drop it) afterwards.
    pub(crate) fn write(&self) -> WriteGuard<'_> {
        self.generation.fetch_add(1, Ordering::AcqRel);
        WriteGuard { cache: self }
    }

    pub(crate) fn tag(&self, repo: &str, tag: &str) -> Option<Digest> {
        self.tags.get(&(repo.to_string(), tag.to_string()))
    }

    pub(crate) fn fill_tag(&self, ticket: Ticket, repo: &str, tag: &str, digest: Digest) {
        if self.valid(ticket) {
            self.tags
                .insert((repo.to_string(), tag.to_string()), digest);
        }
    }

    pub(crate) fn manifest(&self, repo: &str, digest: &Digest) -> Option<Arc<StoredManifest>> {
        self.manifests.get(&(repo.to_string(), digest.to_string()))
    }

    pub(crate) fn fill_manifest(&self, ticket: Ticket, repo: &str, manifest: Arc<StoredManifest>) {
        if self.valid(ticket) {
            self.manifests
                .insert((repo.to_string(), manifest.digest.to_string()), manifest);
        }
    }

    pub(crate) fn link(&self, repo: &str, digest: &Digest) -> Option<u64> {
        self.links.get(&(repo.to_string(), digest.to_string()))
    }

    pub(crate) fn fill_link(&self, ticket: Ticket, repo: &str, digest: &Digest, size: u64) {
        if self.valid(ticket) {
            self.links
                .insert((repo.to_string(), digest.to_string()), size);
        }
    }
}

/// Invalidations to apply when a write finishes.
pub(crate) struct WriteGuard<'a> {
    cache: &'a MetadataCache,
}

impl WriteGuard<'_> {
    pub(crate) fn forget_tag(&self, repo: &str, tag: &str) {
        self.cache.tags.remove(&(repo.to_string(), tag.to_string()));
    }

    /// A manifest was deleted: its bytes go, and so may any tag (tags are
    /// few and deletes rare, so all tag entries are dropped).
    pub(crate) fn forget_manifest(&self, repo: &str, digest: &Digest) {
        self.cache
            .manifests
            .remove(&(repo.to_string(), digest.to_string()));
        self.cache.tags.clear();
    }

    pub(crate) fn forget_link(&self, repo: &str, digest: &Digest) {
        self.cache
            .links
            .remove(&(repo.to_string(), digest.to_string()));
    }

    /// A repository went: drop everything (rare).
    pub(crate) fn forget_everything(&self) {
        self.cache.tags.clear();
        self.cache.manifests.clear();
        self.cache.links.clear();
    }

    /// A blob left storage: every repository's link to it is gone.
    pub(crate) fn forget_all_links(&self) {
        self.cache.links.clear();
    }
}

impl Drop for WriteGuard<'_> {
    fn drop(&mut self) {
        self.cache.generation.fetch_add(1, Ordering::AcqRel);
    }
}
