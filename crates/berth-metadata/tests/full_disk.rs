//! SQLite on a filesystem that fills up (a small tmpfs this test mounts; it
//! runs as root, as the whole suite does). A COMMIT that fails for lack of
//! space must be reported, must not leave the writer connection inside a
//! transaction that swallows later writes, and the store must take writes
//! again as soon as space is freed — every write that returned `Ok` is
//! there after a reopen.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

use berth_metadata::{MetadataStore, NewManifest, SqliteStore};
use berth_types::{Backend, Digest, Fault, Reference, RepositoryName, Tag};

/// A tmpfs of `size` mounted on a fresh directory; unmounted on drop.
struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    fn mount(size: &str) -> Tmpfs {
        let dir = tempfile::tempdir().expect("tempdir");
        let status = Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size},mode=0700"),
                "tmpfs",
            ])
            .arg(dir.path())
            .status()
            .expect("run mount");
        assert!(
            status.success(),
            "mounting a tmpfs failed: the full-disk tests need root (scripts/test.sh runs as root)"
        );
        Tmpfs { dir }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount")
            .arg("-l")
            .arg(self.dir.path())
            .status();
    }
}

/// Writes a file until the filesystem is full; returns its path.
fn fill(dir: &Path) -> PathBuf {
    let path = dir.join("filler");
    let mut file = std::fs::File::create(&path).expect("create filler");
    let chunk = vec![0xabu8; 64 * 1024];
    loop {
        match file.write(&chunk) {
            Ok(0) => break,
            Ok(_) => {}
            Err(e) => {
                assert_eq!(e.kind(), std::io::ErrorKind::StorageFull, "filling: {e}");
                break;
            }
        }
    }
    // Byte by byte for the last partial chunk.
    while file.write(&[0u8]).map(|n| n == 1).unwrap_or(false) {}
    path
}

fn manifest_content(n: u32) -> Vec<u8> {
    // Big enough that each commit needs new WAL pages.
    let padding = "x".repeat(48 * 1024);
    format!("{{\"n\":{n},\"padding\":\"{padding}\"}}").into_bytes()
}

async fn put(store: &SqliteStore, repo: &RepositoryName, n: u32) -> Result<Digest, Fault> {
    let content = manifest_content(n);
    let digest = Digest::sha256_of(&content);
    let tag: Tag = format!("t{n}").parse().expect("tag");
    store
        .put_manifest(NewManifest {
            repository: repo,
            digest: &digest,
            media_type: "application/vnd.oci.image.manifest.v1+json",
            artifact_type: None,
            subject: None,
            annotations_json: None,
            content: &content,
            blobs: Vec::new(),
            references: Vec::new(),
            children: Vec::new(),
            tags: std::slice::from_ref(&tag),
            sparse: false,
        })
        .await
        .map(|()| digest)
        .map_err(|e| e.fault())
}

#[tokio::test]
async fn a_full_disk_refuses_writes_loses_none_and_recovers_when_space_is_freed() {
    let fs = Tmpfs::mount("8m");
    let url = format!("sqlite://{}", fs.path().join("berth.db").display());
    let store = SqliteStore::connect(&url).await.expect("open");
    let repo: RepositoryName = "app/full".parse().expect("repo");

    let mut acknowledged = Vec::new();
    let mut n = 0;
    for _ in 0..5 {
        acknowledged.push((n, put(&store, &repo, n).await.expect("room to write")));
        n += 1;
    }

    let filler = fill(fs.path());
    let mut refused = 0;
    let mut first_refusal = None;
    // Writes until the disk refuses, then twenty more: before the fix the
    // first failed COMMIT left the writer "in a transaction" and every later
    // write was acknowledged and silently discarded.
    let mut after_refusal = 0;
    while after_refusal < 20 && n < 400 {
        match put(&store, &repo, n).await {
            Ok(digest) => acknowledged.push((n, digest)),
            Err(fault) => {
                refused += 1;
                first_refusal.get_or_insert(fault);
            }
        }
        if refused > 0 {
            after_refusal += 1;
        }
        n += 1;
    }
    assert!(refused > 0, "the full disk never refused a write");
    assert_eq!(
        first_refusal,
        Some(Fault::Full(Backend::Metadata)),
        "a full disk is reported as such"
    );

    // Reads keep working on a full disk.
    for (i, digest) in &acknowledged {
        let got = store
            .get_manifest(&repo, &Reference::Digest(digest.clone()))
            .await
            .expect("read on a full disk");
        assert!(got.is_some(), "acknowledged manifest {i} is not readable");
    }

    // Space comes back: writes succeed again, without a restart.
    std::fs::remove_file(&filler).expect("free space");
    for _ in 0..10 {
        let digest = put(&store, &repo, n)
            .await
            .unwrap_or_else(|f| panic!("write {n} after freeing space failed: {f:?}"));
        acknowledged.push((n, digest));
        n += 1;
    }
    store.close().await;

    // Every acknowledged write survives a reopen, with its tag.
    let store = SqliteStore::connect(&url).await.expect("reopen");
    let mut missing = Vec::new();
    for (i, digest) in &acknowledged {
        let tag = Reference::Tag(format!("t{i}").parse().expect("tag"));
        match store.get_manifest(&repo, &tag).await.expect("read") {
            Some(m) if &m.digest == digest => {}
            _ => missing.push(*i),
        }
    }
    assert!(
        missing.is_empty(),
        "{} of {} acknowledged manifests are lost after a reopen: {missing:?}",
        missing.len(),
        acknowledged.len()
    );
    store.close().await;
}
