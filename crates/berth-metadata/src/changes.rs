//! Changes other nodes' read caches must hear about, for scale-out.
//!
//! Every write that can make a cached answer wrong (a tag moved or
//! removed, a manifest or repository deleted, a blob link dropped)
//! announces a [`CacheChange`] in its own transaction. On PostgreSQL that
//! is a `NOTIFY` on [`CHANNEL`], delivered to every listening node when the
//! transaction commits and never if it rolls back; each carries the next
//! value of the `berth_cache_generation` sequence. A node follows them
//! through a [`ChangeFeed`] and compares the sequence, polled, with the
//! generations it has heard: a generation that never arrived (a
//! notification lost with a connection) empties its cache. So a missed
//! notification can cost misses, never a stale answer for longer than the
//! follower's bound (see berth-registry's `remote.rs`). SQLite (one node)
//! announces nothing: its writes invalidate the cache directly.

use async_trait::async_trait;

use crate::MetadataError;

/// The PostgreSQL notification channel.
pub const CHANNEL: &str = "berth_cache";

/// What a write changed, as a read cache needs to know it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CacheChange {
    /// A tag was set, moved or removed.
    Tag { repository: String, tag: String },
    /// A manifest was deleted (with its tags).
    Manifest { repository: String, digest: String },
    /// A repository dropped its link to a blob.
    Link { repository: String, digest: String },
    /// A blob left storage: every repository's link to it is gone.
    BlobDeleted { digest: String },
    /// A repository was deleted.
    Repository { repository: String },
}

impl CacheChange {
    /// `kind \t repository \t key`: names and tags cannot hold a tab.
    pub fn encode(&self) -> String {
        match self {
            CacheChange::Tag { repository, tag } => format!("tag\t{repository}\t{tag}"),
            CacheChange::Manifest { repository, digest } => {
                format!("manifest\t{repository}\t{digest}")
            }
            CacheChange::Link { repository, digest } => format!("link\t{repository}\t{digest}"),
            CacheChange::BlobDeleted { digest } => format!("blob\t\t{digest}"),
            CacheChange::Repository { repository } => format!("repository\t{repository}\t"),
        }
    }

    pub fn decode(text: &str) -> Option<CacheChange> {
        let mut parts = text.splitn(3, '\t');
        let (kind, repository, key) = (parts.next()?, parts.next()?, parts.next()?);
        let (repository, key) = (repository.to_string(), key.to_string());
        Some(match kind {
            "tag" => CacheChange::Tag {
                repository,
                tag: key,
            },
            "manifest" => CacheChange::Manifest {
                repository,
                digest: key,
            },
            "link" => CacheChange::Link {
                repository,
                digest: key,
            },
            "blob" => CacheChange::BlobDeleted { digest: key },
            "repository" => CacheChange::Repository { repository },
            _ => return None,
        })
    }
}

/// What a [`ChangeFeed`] hands over next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FeedEvent {
    /// A committed change, with its generation.
    Changed {
        generation: u64,
        change: CacheChange,
    },
    /// A notification that cannot be read: treat as "anything changed".
    Unreadable,
    /// The feed's connection was lost and is being re-established:
    /// changes may have been missed.
    Lost,
}

/// The changes other nodes commit, in commit order.
#[async_trait]
pub trait ChangeFeed: Send {
    /// Waits for the next event. An error means the feed is down for now
    /// (the caller stops trusting its cache, waits and calls again).
    async fn next(&mut self) -> Result<FeedEvent, MetadataError>;
}

/// Where a node follows the others' changes from.
#[async_trait]
pub trait ChangeSource: Send + Sync {
    /// A feed of the changes committed from now on.
    async fn feed(&self) -> Result<Box<dyn ChangeFeed>, MetadataError>;
    /// The newest generation any write has taken (committed or not): what
    /// a follower compares with the generations it heard.
    async fn generation(&self) -> Result<u64, MetadataError>;
}

/// `generation \t change`, as notified.
pub fn decode_notification(payload: &str) -> FeedEvent {
    let parsed = payload.split_once('\t').and_then(|(generation, change)| {
        Some((generation.parse().ok()?, CacheChange::decode(change)?))
    });
    match parsed {
        Some((generation, change)) => FeedEvent::Changed { generation, change },
        None => FeedEvent::Unreadable,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_change_survives_the_wire() {
        for change in [
            CacheChange::Tag {
                repository: "team/app".into(),
                tag: "v1.2".into(),
            },
            CacheChange::Manifest {
                repository: "app".into(),
                digest: "sha256:ab".into(),
            },
            CacheChange::Link {
                repository: "app".into(),
                digest: "sha256:cd".into(),
            },
            CacheChange::BlobDeleted {
                digest: "sha256:ef".into(),
            },
            CacheChange::Repository {
                repository: "gone".into(),
            },
        ] {
            let payload = format!("42\t{}", change.encode());
            assert_eq!(
                decode_notification(&payload),
                FeedEvent::Changed {
                    generation: 42,
                    change
                }
            );
        }
        assert_eq!(decode_notification("x\ttag\ta\tb"), FeedEvent::Unreadable);
        assert_eq!(decode_notification("7\tnonsense"), FeedEvent::Unreadable);
    }
}
