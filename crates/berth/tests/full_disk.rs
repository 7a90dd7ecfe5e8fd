//! The data directory fills up: a 48 MiB tmpfs this
//! test mounts (as root, as the whole suite runs) is filled by pushes until
//! blob writes fail, then by a filler file until SQLite's own writes fail.
//! Every push the registry acknowledged must pull back — on the full disk,
//! after space is freed (without a restart), and after a restart — and the
//! refusals must be `507 STORAGE_FULL` with a stable message, leaving no
//! upload bytes behind.

mod common;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;
use serde_json::{json, Value};

struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    fn mount(size: &str) -> Tmpfs {
        let dir = tempdir("berth-full-disk-");
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

/// Fills the filesystem with one file; returns its path.
fn fill(dir: &Path) -> PathBuf {
    let path = dir.join("filler");
    let mut file = std::fs::File::create(&path).expect("create filler");
    let chunk = vec![0x5au8; 64 * 1024];
    while file.write(&chunk).map(|n| n > 0).unwrap_or(false) {}
    while file.write(&[0u8]).map(|n| n == 1).unwrap_or(false) {}
    path
}

/// One pushed image: its tag and manifest digest, and its layer.
#[derive(Debug, Clone)]
struct Pushed {
    tag: String,
    digest: String,
    layer: Vec<u8>,
}

const REPO: &str = "app/full";

/// What a refused write looks like: 507, STORAGE_FULL, a stable message
/// with a correlation id and none of the internal text.
async fn assert_storage_full(resp: reqwest::Response, what: &str) {
    let status = resp.status().as_u16();
    let body = resp.text().await.unwrap_or_default();
    assert_eq!(status, 507, "{what}: expected 507, got {status}: {body}");
    let v: Value = serde_json::from_str(&body).expect("error envelope");
    let error = &v["errors"][0];
    assert_eq!(error["code"], "STORAGE_FULL", "{what}: {body}");
    let message = error["message"].as_str().unwrap_or_default();
    assert!(message.contains("out of space"), "{what}: {message}");
    assert!(message.contains("correlation id"), "{what}: {message}");
    for internal in ["disk is full", "No space left", "os error", "sqlite"] {
        assert!(
            !message.to_lowercase().contains(&internal.to_lowercase()),
            "{what}: internal text {internal:?} reached the client: {message}"
        );
    }
}

fn manifest_for(config: &[u8], layer: &[u8], n: u32) -> Vec<u8> {
    image_manifest(
        OCI_MANIFEST,
        (OCI_CONFIG, config),
        &[(OCI_LAYER, layer)],
        json!({"annotations": {"n": n.to_string()}}),
    )
}

#[tokio::test]
async fn a_full_disk_refuses_pushes_with_507_and_loses_no_acknowledged_push() {
    let fs = Tmpfs::mount("48m");
    // What the operator frees in the end (blobs filled the rest first).
    let reserve = fs.path().join("reserve");
    std::fs::write(&reserve, vec![0u8; 8 * 1024 * 1024]).expect("reserve");
    let data = fs.path().join("data");
    let mut server = TestServer::start(&data);
    let api = Api::new(&server);

    let config = br#"{"architecture":"amd64","os":"linux"}"#.to_vec();
    api.push_blob(REPO, &config).await;
    let mut pushed: Vec<Pushed> = Vec::new();

    // 1. Images of 1 MiB layers until a blob write is refused.
    let mut blob_refusals = 0;
    for n in 0..200u32 {
        let layer = bytes(u64::from(n), 1024 * 1024);
        let digest = sha256(&layer);
        let resp = api
            .http
            .post(api.url(&format!("/v2/{REPO}/blobs/uploads/?digest={digest}")))
            .header("content-type", "application/octet-stream")
            .body(layer.clone())
            .send()
            .await
            .expect("POST blob");
        if resp.status().as_u16() != 201 {
            assert_storage_full(resp, "blob push on a full disk").await;
            blob_refusals += 1;
            break;
        }
        let manifest = manifest_for(&config, &layer, n);
        let tag = format!("v{n}");
        let resp = api.put_manifest(REPO, &tag, OCI_MANIFEST, &manifest).await;
        match resp.status().as_u16() {
            201 => pushed.push(Pushed {
                tag,
                digest: sha256(&manifest),
                layer,
            }),
            _ => assert_storage_full(resp, "manifest push on a full disk").await,
        }
    }
    assert_eq!(blob_refusals, 1, "48 MiB never filled up with blobs");
    assert!(pushed.len() > 10, "only {} images fit", pushed.len());
    assert_eq!(
        upload_files(&data),
        Vec::<String>::new(),
        "a refused single-request upload left its bytes behind"
    );

    // 2. The rest of the space goes to a filler file: now SQLite's own
    // commits fail. Manifests over the blobs already there, until refused,
    // then a few more (before the fix every later one was acknowledged and
    // lost).
    let filler = fill(fs.path());
    let small_layer = pushed[0].layer.clone();
    let mut metadata_refusals = 0;
    for n in 1000..1300u32 {
        let manifest = manifest_for(&config, &small_layer, n);
        let tag = format!("m{n}");
        let resp = api.put_manifest(REPO, &tag, OCI_MANIFEST, &manifest).await;
        if resp.status().as_u16() == 201 {
            pushed.push(Pushed {
                tag,
                digest: sha256(&manifest),
                layer: small_layer.clone(),
            });
        } else {
            assert_storage_full(resp, "manifest push when SQLite cannot commit").await;
            metadata_refusals += 1;
            if metadata_refusals == 20 {
                break;
            }
        }
    }
    assert_eq!(metadata_refusals, 20, "SQLite never refused a commit");

    eprintln!(
        "full disk: {} manifests acknowledged, 1 blob push and {metadata_refusals} manifest pushes refused with 507",
        pushed.len()
    );

    // 3. Reads keep working on the full disk.
    check_all_pull(&api, &pushed, "on the full disk").await;
    let ready = api.get("/readyz").await;
    assert_eq!(ready.status().as_u16(), 200, "reads work: still ready");

    // 4. Space is freed: pushes work again without a restart.
    std::fs::remove_file(&filler).expect("free space");
    std::fs::remove_file(&reserve).expect("free space");
    for n in 2000..2005u32 {
        let layer = bytes(u64::from(n), 64 * 1024);
        api.push_blob(REPO, &layer).await;
        let manifest = manifest_for(&config, &layer, n);
        let tag = format!("after{n}");
        api.push_manifest(REPO, &tag, OCI_MANIFEST, &manifest).await;
        pushed.push(Pushed {
            tag,
            digest: sha256(&manifest),
            layer,
        });
    }
    check_all_pull(&api, &pushed, "after freeing space").await;

    // 5. And every acknowledged push survives a restart.
    server.restart();
    let api = Api::new(&server);
    check_all_pull(&api, &pushed, "after a restart").await;
    server.stop();
}

async fn check_all_pull(api: &Api, pushed: &[Pushed], when: &str) {
    let mut lost = Vec::new();
    for p in pushed {
        let resp = api.get(&format!("/v2/{REPO}/manifests/{}", p.tag)).await;
        let ok = resp.status().as_u16() == 200
            && header(&resp, "docker-content-digest").as_deref() == Some(p.digest.as_str());
        if !ok {
            lost.push(p.tag.clone());
        }
    }
    assert!(
        lost.is_empty(),
        "{when}: {} of {} acknowledged manifests do not pull: {lost:?}",
        lost.len(),
        pushed.len()
    );
    // Layers byte for byte (each distinct one once).
    let mut seen = std::collections::BTreeSet::new();
    for p in pushed {
        let digest = sha256(&p.layer);
        if seen.insert(digest.clone()) {
            assert_eq!(
                api.pull_blob(REPO, &digest).await,
                p.layer,
                "{when}: layer {digest}"
            );
        }
    }
}
