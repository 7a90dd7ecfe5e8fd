//! Other nodes' writes, applied to this node's read cache (scale-out).
//!
//! [`follow_changes`] listens to the changes every node announces
//! (`berth_metadata::changes`) and applies each as if this node had made
//! it: the entries it names are forgotten, and fills that raced with it
//! are refused by the cache's generation check. The cache is on only
//! while the feed is followed, and it is emptied whenever something may
//! have been missed:
//!
//! - when the feed (re)connects: changes committed while it was down were
//!   not heard;
//! - when a poll of the shared generation sequence, every [`POLL`], finds a
//!   generation taken before the previous poll that was never heard (a
//!   notification lost; a rolled-back write also leaves such a gap, which
//!   costs one empty cache and nothing else).
//!
//! And it is off while the feed's connection is lost, or a poll does not
//! answer within half a second (the database is down or unreachable from
//! this node, whatever other nodes can still do).
//!
//! So another node's change reaches this node's answers as soon as its
//! notification arrives (milliseconds), and if it never arrives, within
//! [`STALE_BOUND`] of its commit.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use berth_metadata::{CacheChange, ChangeSource, FeedEvent};
use berth_types::Digest;
use tokio::sync::watch;

use crate::Registry;

/// How often the shared generation is compared with what was heard.
pub const POLL: Duration = Duration::from_secs(1);
/// A poll that takes longer than this (the database is unreachable or
/// overloaded) turns the cache off until one answers again.
const POLL_TIMEOUT: Duration = Duration::from_millis(500);
/// The longest another node's committed change can go unseen here when
/// its notification is lost: the poll after the commit reads its
/// generation, the next one finds it missing.
pub const STALE_BOUND: Duration = Duration::from_secs(2);

/// HELP lines for the metrics below.
pub fn describe_metrics() {
    metrics::describe_gauge!(
        "berth_read_cache_enabled",
        "1 while the node's read cache of tags, manifests and blob links is in use; 0 while it is off (scale-out: the other nodes' changes are not being followed)"
    );
    metrics::describe_counter!(
        "berth_cache_resets_total",
        "Times the read cache was emptied because other nodes' changes may have been missed, by reason (missed, reconnected, unreadable, unknown)"
    );
}

impl Registry {
    /// Applies a change another node committed, as a write of this node's.
    pub fn apply_change(&self, change: &CacheChange) {
        let write = self.cache.write();
        match change {
            CacheChange::Tag { repository, tag } => write.forget_tag(repository, tag),
            CacheChange::Manifest { repository, digest } => match digest.parse::<Digest>() {
                Ok(digest) => write.forget_manifest(repository, &digest),
                Err(_) => write.forget_everything(),
            },
            CacheChange::Link { repository, digest } => match digest.parse::<Digest>() {
                Ok(digest) => write.forget_link(repository, &digest),
                Err(_) => write.forget_everything(),
            },
            CacheChange::BlobDeleted { .. } => write.forget_all_links(),
            CacheChange::Repository { .. } => write.forget_everything(),
        }
    }

    /// Turns the read cache on, or off (emptying it).
    pub fn set_cache_enabled(&self, enabled: bool) {
        self.cache.set_enabled(enabled);
    }

    pub fn cache_enabled(&self) -> bool {
        self.cache.is_enabled()
    }

    /// Empties the cache and keeps it on.
    fn reset_cache(&self, reason: &str) {
        self.cache.set_enabled(false);
        self.cache.set_enabled(true);
        metrics::counter!("berth_cache_resets_total", "reason" => reason.to_string()).increment(1);
        tracing::debug!(reason, "emptied the read cache");
    }
}

/// The generations heard and not yet checked against a poll.
#[derive(Default)]
struct Heard {
    /// Everything up to here is accounted for.
    floor: u64,
    above: BTreeSet<u64>,
}

impl Heard {
    fn restart_at(&mut self, generation: u64) {
        self.floor = generation;
        self.above.clear();
    }

    fn hear(&mut self, generation: u64) {
        if generation > self.floor {
            self.above.insert(generation);
        }
    }

    /// Whether every generation up to `polled` was heard; accounts for them
    /// either way.
    fn complete_up_to(&mut self, polled: u64) -> bool {
        if polled <= self.floor {
            return true;
        }
        let heard = self.above.range(..=polled).count() as u64;
        let complete = heard == polled - self.floor;
        self.above = self.above.split_off(&(polled + 1));
        self.floor = polled;
        complete
    }
}

/// Follows `source` until `stop` is set (see the module docs). The cache
/// is off until the first connection and whenever the feed is down.
pub async fn follow_changes(
    registry: Arc<Registry>,
    source: Arc<dyn ChangeSource>,
    mut stop: watch::Receiver<bool>,
) {
    registry.set_cache_enabled(false);
    let heard = Arc::new(Mutex::new(Heard::default()));
    let feed_up = Arc::new(AtomicBool::new(false));
    let poller = tokio::spawn(poll_generation(
        registry.clone(),
        source.clone(),
        heard.clone(),
        feed_up.clone(),
        stop.clone(),
    ));
    let mut down_since_logged = false;
    'connect: loop {
        if *stop.borrow() {
            break;
        }
        let feed = match source.feed().await {
            Ok(feed) => feed,
            Err(e) => {
                registry.set_cache_enabled(false);
                if !down_since_logged {
                    tracing::warn!(error = %e, "cannot follow the other nodes' changes; the read cache is off until it can");
                    down_since_logged = true;
                }
                if wait_or_stop(&mut stop, POLL).await {
                    break;
                }
                continue;
            }
        };
        let mut feed = feed;
        // Listening from here on: start from an empty cache.
        feed_up.store(true, Ordering::SeqCst);
        if !resync(&registry, source.as_ref(), &heard).await {
            feed_up.store(false, Ordering::SeqCst);
            if wait_or_stop(&mut stop, POLL).await {
                break;
            }
            continue;
        }
        if down_since_logged {
            tracing::info!("following the other nodes' changes again; the read cache is on");
            down_since_logged = false;
        }
        loop {
            let event = tokio::select! {
                event = feed.next() => event,
                _ = stop.changed() => break 'connect,
            };
            match event {
                Ok(FeedEvent::Changed { generation, change }) => {
                    registry.apply_change(&change);
                    lock(&heard).hear(generation);
                }
                Ok(FeedEvent::Unreadable) => registry.reset_cache("unreadable"),
                // What is sent until a new feed listens is lost: off now,
                // and on again (emptied) once a new feed is followed.
                Ok(FeedEvent::Lost) => {
                    feed_up.store(false, Ordering::SeqCst);
                    registry.set_cache_enabled(false);
                    metrics::counter!("berth_cache_resets_total", "reason" => "reconnected")
                        .increment(1);
                    continue 'connect;
                }
                Err(e) => {
                    feed_up.store(false, Ordering::SeqCst);
                    registry.set_cache_enabled(false);
                    tracing::warn!(error = %e, "lost the other nodes' changes; the read cache is off until they are followed again");
                    down_since_logged = true;
                    continue 'connect;
                }
            }
        }
    }
    registry.set_cache_enabled(false);
    poller.abort();
}

fn lock(heard: &Mutex<Heard>) -> std::sync::MutexGuard<'_, Heard> {
    heard.lock().unwrap_or_else(|p| p.into_inner())
}

/// Empties the cache, accounts for every generation taken so far, and
/// turns the cache on; `false` (cache off) if the generation is unknown.
async fn resync(registry: &Registry, source: &dyn ChangeSource, heard: &Mutex<Heard>) -> bool {
    registry.set_cache_enabled(false);
    match source.generation().await {
        Ok(generation) => {
            lock(heard).restart_at(generation);
            registry.set_cache_enabled(true);
            true
        }
        Err(e) => {
            tracing::warn!(error = %e, "cannot read the change generation; the read cache stays off");
            false
        }
    }
}

async fn poll_generation(
    registry: Arc<Registry>,
    source: Arc<dyn ChangeSource>,
    heard: Arc<Mutex<Heard>>,
    feed_up: Arc<AtomicBool>,
    mut stop: watch::Receiver<bool>,
) {
    let mut previous: Option<u64> = None;
    let mut failing = false;
    loop {
        if wait_or_stop(&mut stop, POLL).await {
            return;
        }
        let polled = tokio::time::timeout(POLL_TIMEOUT, source.generation()).await;
        let generation = match polled {
            Ok(Ok(generation)) => generation,
            Ok(Err(_)) | Err(_) => {
                // Nothing to compare with: stale answers cannot be ruled out.
                if !failing {
                    tracing::warn!("the change generation does not answer; the read cache is off until it does");
                    failing = true;
                }
                registry.set_cache_enabled(false);
                previous = None;
                continue;
            }
        };
        if failing {
            failing = false;
            if feed_up.load(Ordering::SeqCst) {
                // Off while the poll failed: on again, empty, from here.
                lock(&heard).restart_at(generation);
                registry.set_cache_enabled(true);
                tracing::info!("the change generation answers again; the read cache is on");
            }
            previous = Some(generation);
            continue;
        }
        if !registry.cache_enabled() {
            previous = None;
            continue;
        }
        if let Some(previous) = previous {
            if !lock(&heard).complete_up_to(previous) {
                registry.reset_cache("missed");
            }
        }
        previous = Some(generation);
    }
}

/// Sleeps `delay`; `true` if `stop` was set meanwhile.
async fn wait_or_stop(stop: &mut watch::Receiver<bool>, delay: Duration) -> bool {
    if *stop.borrow() {
        return true;
    }
    tokio::select! {
        _ = tokio::time::sleep(delay) => *stop.borrow(),
        _ = stop.changed() => true,
    }
}

#[cfg(test)]
mod tests {
    use super::Heard;

    #[test]
    fn a_generation_never_heard_is_found_by_the_next_poll() {
        let mut heard = Heard::default();
        heard.restart_at(10);
        for g in [11, 12, 13] {
            heard.hear(g);
        }
        assert!(heard.complete_up_to(13));
        // 14 is lost, 15 arrives: the maximum heard hides the gap, the count does not.
        heard.hear(15);
        assert!(!heard.complete_up_to(15));
        // Accounted for: the same gap is not reported twice.
        assert!(heard.complete_up_to(15));
        // Generations beyond the poll wait for the next one.
        heard.hear(16);
        heard.hear(18);
        assert!(heard.complete_up_to(16));
        heard.hear(17);
        assert!(heard.complete_up_to(18));
        // Old or repeated generations change nothing.
        heard.hear(3);
        assert!(heard.complete_up_to(18));
    }
}
