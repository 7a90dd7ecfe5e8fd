//! Read-through cache of the metadata that every pull asks for: tag →
//! digest, manifest bytes, and repository → blob links. Pulls are far more
//! frequent than pushes, and a manifest GET must not cost a database round
//! trip.
//!
//! Consistency on one node: a write counts itself in `writers` and bumps
//! `generation` when it begins, invalidates what it changed, then bumps
//! `generation` again and leaves `writers` when it ends. A reader takes a
//! ticket (the generation) before its database read and may fill only if
//! no write is in flight and the generation has not moved since: whatever
//! it read is then what the store still holds. (A parity check on the
//! generation alone is not enough: with two writes in flight it is even,
//! and a fill between one writer's invalidation and its end kept the old
//! value — a moved tag served its old digest.) The check and the insert are
//! not one atomic step, so a fill re-checks after inserting and takes its
//! entry back if a write began in between. No lock on the read path: a
//! few atomic loads.
//!
//! With shared metadata (several nodes) another node's write does not pass
//! through here: it arrives as a [`berth_metadata::CacheChange`] and is
//! applied as a write of this node's own ([`crate::remote`]). While that
//! feed is not known to be complete the cache is switched off (nothing is
//! filled, everything read from the database).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
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
    /// Off: nothing is filled, so every lookup reads the database.
    enabled: AtomicBool,
    /// Moves at the start and the end of every write.
    generation: AtomicU64,
    /// Writes in flight (begun, guard not yet dropped).
    writers: AtomicU64,
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
            enabled: AtomicBool::new(enabled),
            generation: AtomicU64::new(0),
            writers: AtomicU64::new(0),
            tags: Cache::new(TAG_ENTRIES),
            manifests: Cache::with_weighter(2_000, MANIFEST_BYTES, ManifestWeight),
            links: Cache::new(LINK_ENTRIES),
        }
    }

    pub(crate) fn ticket(&self) -> Ticket {
        Ticket(self.generation.load(Ordering::SeqCst))
    }

    fn valid(&self, ticket: Ticket) -> bool {
        // SeqCst throughout: a writer's `writers` increment and the reader's
        // loads must be in one order for the re-check in `fill` to work.
        self.enabled.load(Ordering::SeqCst)
            && self.writers.load(Ordering::SeqCst) == 0
            && self.generation.load(Ordering::SeqCst) == ticket.0
    }

    /// Inserts if `ticket` is still valid; if a write began between the
    /// check and the insert, removes the entry again (the write's own
    /// invalidation may already have run).
    fn fill(&self, ticket: Ticket, insert: impl FnOnce(), remove: impl FnOnce()) {
        if !self.valid(ticket) {
            return;
        }
        insert();
        if !self.valid(ticket) {
            remove();
        }
    }

    /// Brackets a write: call before changing the store, and call the
    /// returned guard's `done` (or drop it) afterwards.
    pub(crate) fn write(&self) -> WriteGuard<'_> {
        self.writers.fetch_add(1, Ordering::SeqCst);
        self.generation.fetch_add(1, Ordering::SeqCst);
        WriteGuard { cache: self }
    }

    /// Switches filling on or off; switching off also empties the cache
    /// (as a write, so a fill in flight cannot put an entry back).
    pub(crate) fn set_enabled(&self, enabled: bool) {
        metrics::gauge!("berth_read_cache_enabled").set(if enabled { 1.0 } else { 0.0 });
        if !enabled {
            let write = self.write();
            self.enabled.store(false, Ordering::SeqCst);
            write.forget_everything();
            return;
        }
        self.enabled.store(true, Ordering::SeqCst);
    }

    pub(crate) fn is_enabled(&self) -> bool {
        self.enabled.load(Ordering::SeqCst)
    }

    pub(crate) fn tag(&self, repo: &str, tag: &str) -> Option<Digest> {
        self.tags.get(&(repo.to_string(), tag.to_string()))
    }

    pub(crate) fn fill_tag(&self, ticket: Ticket, repo: &str, tag: &str, digest: Digest) {
        let key = (repo.to_string(), tag.to_string());
        self.fill(
            ticket,
            || self.tags.insert(key.clone(), digest),
            || {
                self.tags.remove(&key);
            },
        );
    }

    pub(crate) fn manifest(&self, repo: &str, digest: &Digest) -> Option<Arc<StoredManifest>> {
        self.manifests.get(&(repo.to_string(), digest.to_string()))
    }

    pub(crate) fn fill_manifest(&self, ticket: Ticket, repo: &str, manifest: Arc<StoredManifest>) {
        let key = (repo.to_string(), manifest.digest.to_string());
        self.fill(
            ticket,
            || self.manifests.insert(key.clone(), manifest),
            || {
                self.manifests.remove(&key);
            },
        );
    }

    pub(crate) fn link(&self, repo: &str, digest: &Digest) -> Option<u64> {
        self.links.get(&(repo.to_string(), digest.to_string()))
    }

    pub(crate) fn fill_link(&self, ticket: Ticket, repo: &str, digest: &Digest, size: u64) {
        let key = (repo.to_string(), digest.to_string());
        self.fill(
            ticket,
            || self.links.insert(key.clone(), size),
            || {
                self.links.remove(&key);
            },
        );
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
        // Generation first: a ticket taken once `writers` is back to zero
        // must not match one taken while this write was in flight.
        self.cache.generation.fetch_add(1, Ordering::SeqCst);
        self.cache.writers.fetch_sub(1, Ordering::SeqCst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn digest(n: u8) -> Digest {
        format!("sha256:{}", hex::encode([n; 32]))
            .parse()
            .expect("digest")
    }

    /// The race the writer count closes, step by step: a ticket taken while
    /// two writes are in flight (generation even), a fill after one
    /// writer's invalidation but before it ends.
    #[test]
    fn fill_between_a_writers_forget_and_its_end_is_refused() {
        let cache = MetadataCache::new(true);
        let (old, new) = (digest(1), digest(2));
        let a = cache.write();
        let b = cache.write();
        let ticket = cache.ticket(); // reader reads the old row after this
        a.forget_tag("app", "stable"); // A moved the tag in the store
        cache.fill_tag(ticket, "app", "stable", old.clone());
        assert_eq!(
            cache.tag("app", "stable"),
            None,
            "stale fill while A is in flight"
        );
        drop(a);
        cache.fill_tag(ticket, "app", "stable", old.clone());
        assert_eq!(cache.tag("app", "stable"), None, "stale fill after A ended");
        drop(b);
        cache.fill_tag(ticket, "app", "stable", old);
        assert_eq!(
            cache.tag("app", "stable"),
            None,
            "ticket from before the writes"
        );
        // A reader that starts now reads the new row and may keep it.
        let fresh = cache.ticket();
        cache.fill_tag(fresh, "app", "stable", new.clone());
        assert_eq!(cache.tag("app", "stable"), Some(new));
    }

    /// The order from the bug report: ticket, A begins, B begins, A
    /// forgets, A ends, the reader fills (B still in flight), B ends.
    #[test]
    fn fill_with_another_writer_still_in_flight_is_refused() {
        let cache = MetadataCache::new(true);
        let ticket = cache.ticket();
        let a = cache.write();
        let b = cache.write();
        a.forget_tag("app", "stable");
        drop(a);
        cache.fill_tag(ticket, "app", "stable", digest(1));
        assert_eq!(cache.tag("app", "stable"), None);
        // Even a ticket taken after A ended, while B is in flight.
        let during_b = cache.ticket();
        cache.fill_tag(during_b, "app", "stable", digest(1));
        assert_eq!(cache.tag("app", "stable"), None);
        b.forget_tag("app", "stable");
        drop(b);
        cache.fill_tag(during_b, "app", "stable", digest(1));
        assert_eq!(cache.tag("app", "stable"), None);
    }

    /// A write that begins between the validity check and the insert: the
    /// fill's re-check takes the entry back.
    #[test]
    fn write_beginning_during_a_fill_takes_the_entry_back() {
        let cache = MetadataCache::new(true);
        let ticket = cache.ticket();
        let key = ("app".to_string(), "stable".to_string());
        let mut writer = None;
        cache.fill(
            ticket,
            || {
                let w = cache.write();
                w.forget_tag("app", "stable"); // runs before the insert
                writer = Some(w);
                cache.tags.insert(key.clone(), digest(1));
            },
            || {
                cache.tags.remove(&key);
            },
        );
        assert_eq!(cache.tag("app", "stable"), None);
        drop(writer);
    }

    #[test]
    fn fills_when_quiet_and_never_when_disabled() {
        let cache = MetadataCache::new(true);
        let ticket = cache.ticket();
        cache.fill_link(ticket, "app", &digest(3), 42);
        assert_eq!(cache.link("app", &digest(3)), Some(42));
        let off = MetadataCache::new(false);
        let ticket = off.ticket();
        off.fill_link(ticket, "app", &digest(3), 42);
        assert_eq!(off.link("app", &digest(3)), None);
    }
}
