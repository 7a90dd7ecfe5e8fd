//! The portal's pages must render within a bounded number of database
//! queries whatever the registry holds (no query per repository or tag);
//! tests count the metadata store's calls through this wrapper.

// Each test binary uses only part of this module.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use async_trait::async_trait;
use berth_metadata::{
    GcRunRecord, ManifestRecord, ManifestSummary, MetadataError, MetadataStore, NewManifest,
    Referrer, RepositoryOrder, RepositoryPage, StorageSample, UploadRecord,
};
use berth_types::{Algorithm, Digest, Reference, RepositoryName, Tag};

/// A MetadataStore that counts every call made through it, delegating to an inner store.
pub struct CountingMetadata {
    inner: Arc<dyn MetadataStore>,
    calls: AtomicU64,
    by_method: Mutex<BTreeMap<&'static str, u64>>,
}

impl CountingMetadata {
    pub fn new(inner: Arc<dyn MetadataStore>) -> Arc<CountingMetadata> {
        Arc::new(CountingMetadata {
            inner,
            calls: AtomicU64::new(0),
            by_method: Mutex::new(BTreeMap::new()),
        })
    }

    /// Calls so far.
    pub fn calls(&self) -> u64 {
        self.calls.load(Ordering::SeqCst)
    }

    /// Calls so far, by method name (for failure messages).
    pub fn by_method(&self) -> BTreeMap<&'static str, u64> {
        self.methods().clone()
    }

    pub fn reset(&self) {
        let mut methods = self.methods();
        self.calls.store(0, Ordering::SeqCst);
        methods.clear();
    }

    fn count(&self, method: &'static str) {
        let mut methods = self.methods();
        self.calls.fetch_add(1, Ordering::SeqCst);
        *methods.entry(method).or_default() += 1;
    }

    fn methods(&self) -> MutexGuard<'_, BTreeMap<&'static str, u64>> {
        self.by_method.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Implements every method of [`MetadataStore`] as: count it, then call the
/// inner store's own implementation with the same arguments.
macro_rules! counted {
    ($(fn $name:ident($($arg:ident: $ty:ty),*) -> $ret:ty;)*) => {
        #[async_trait]
        impl MetadataStore for CountingMetadata {
            $(
                async fn $name(&self, $($arg: $ty),*) -> $ret {
                    self.count(stringify!($name));
                    self.inner.$name($($arg),*).await
                }
            )*
        }
    };
}

counted! {
    fn claim_blob(digest: &Digest, size: u64) -> Result<bool, MetadataError>;
    fn ping() -> Result<(), MetadataError>;
    fn link_blob(repository: &RepositoryName, digest: &Digest) -> Result<bool, MetadataError>;
    fn linked_blob_size(repository: &RepositoryName, digest: &Digest) -> Result<Option<u64>, MetadataError>;
    fn unlink_blob(repository: &RepositoryName, digest: &Digest) -> Result<bool, MetadataError>;
    fn put_manifest(manifest: NewManifest<'_>) -> Result<(), MetadataError>;
    fn get_manifest(repository: &RepositoryName, reference: &Reference) -> Result<Option<ManifestRecord>, MetadataError>;
    fn delete_manifest(repository: &RepositoryName, digest: &Digest) -> Result<bool, MetadataError>;
    fn delete_tag(repository: &RepositoryName, tag: &Tag) -> Result<bool, MetadataError>;
    fn repository_exists(repository: &RepositoryName) -> Result<bool, MetadataError>;
    fn list_manifests(repository: &RepositoryName) -> Result<Vec<ManifestSummary>, MetadataError>;
    fn delete_repository(repository: &RepositoryName) -> Result<u64, MetadataError>;
    fn list_tags(repository: &RepositoryName, limit: u32, last: Option<&str>) -> Result<Option<Vec<String>>, MetadataError>;
    fn list_repositories(limit: u32, last: Option<&str>) -> Result<Vec<String>, MetadataError>;
    fn repository_summaries(search: &str, order: RepositoryOrder, limit: u32, offset: u64) -> Result<RepositoryPage, MetadataError>;
    fn touch_manifests(repository: &RepositoryName, digests: &[Digest], at: i64) -> Result<(), MetadataError>;
    fn unused_manifests(target: &str, before: i64, limit: u32) -> Result<Vec<(RepositoryName, Digest)>, MetadataError>;
    fn referrers(repository: &RepositoryName, subject: &Digest, artifact_type: Option<&str>) -> Result<Vec<Referrer>, MetadataError>;
    fn create_upload(id: &str, repository: &RepositoryName, algorithm: Algorithm) -> Result<(), MetadataError>;
    fn get_upload(id: &str) -> Result<Option<UploadRecord>, MetadataError>;
    fn set_upload_offset(id: &str, offset: u64) -> Result<(), MetadataError>;
    fn delete_upload(id: &str) -> Result<bool, MetadataError>;
    fn stale_uploads(before: i64) -> Result<Vec<String>, MetadataError>;
    fn acquire_gc_lease(holder: &str, ttl: i64) -> Result<bool, MetadataError>;
    fn release_gc_lease(holder: &str) -> Result<(), MetadataError>;
    fn gc_candidates(before: i64, after: Option<&str>, limit: u32) -> Result<Vec<Digest>, MetadataError>;
    fn gc_queue_length() -> Result<u64, MetadataError>;
    fn mark_blob_deleting(digest: &Digest, before: i64) -> Result<Option<u64>, MetadataError>;
    fn blobs_being_deleted(limit: u32) -> Result<Vec<(Digest, u64)>, MetadataError>;
    fn forget_blob(digest: &Digest) -> Result<(), MetadataError>;
    fn start_gc_run(holder: &str) -> Result<i64, MetadataError>;
    fn update_gc_run(run: &GcRunRecord) -> Result<(), MetadataError>;
    fn gc_runs(limit: u32) -> Result<Vec<GcRunRecord>, MetadataError>;
    fn sample_storage(at: i64) -> Result<bool, MetadataError>;
    fn storage_samples(since: i64) -> Result<Vec<StorageSample>, MetadataError>;
}
