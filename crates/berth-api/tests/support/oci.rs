//! Content and OCI fixtures: deterministic bytes, digests, manifests, and
//! images pushed through the API.

use serde_json::{json, Value};
use sha2::{Digest as _, Sha256, Sha512};

use super::app::TestApp;
use super::disk::{blob_files, upload_files};
use super::http::{expect_status, must_header};

pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
pub const OCI_LAYER: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
pub const OCI_EMPTY: &str = "application/vnd.oci.empty.v1+json";
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
pub const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
pub const DOCKER_LAYER: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";

pub fn sha256(data: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(data)))
}

pub fn sha512(data: &[u8]) -> String {
    format!("sha512:{}", hex::encode(Sha512::digest(data)))
}

/// Standard base64 with padding.
pub fn base64(data: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(data)
}

/// Deterministic pseudo-random bytes (splitmix64), different per seed.
pub fn bytes(seed: u64, len: usize) -> Vec<u8> {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ 0xD1B5_4A32_D192_ED03;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        out.extend_from_slice(&z.to_le_bytes());
    }
    out.truncate(len);
    out
}

/// A JSON array of strings (`null` reads as empty).
pub fn string_list(v: &Value) -> Vec<String> {
    match v {
        Value::Null => Vec::new(),
        Value::Array(items) => items
            .iter()
            .map(|i| i.as_str().expect("string item").to_string())
            .collect(),
        other => panic!("not a list: {other}"),
    }
}

pub fn descriptor(media_type: &str, data: &[u8]) -> Value {
    json!({ "mediaType": media_type, "digest": sha256(data), "size": data.len() })
}

/// An image manifest over a config and layers (their bytes).
pub fn image_manifest(
    media_type: &str,
    config: (&str, &[u8]),
    layers: &[(&str, &[u8])],
    extra: Value,
) -> Vec<u8> {
    let mut m = json!({
        "schemaVersion": 2,
        "mediaType": media_type,
        "config": descriptor(config.0, config.1),
        "layers": layers.iter().map(|(t, d)| descriptor(t, d)).collect::<Vec<_>>(),
    });
    if let (Value::Object(m), Value::Object(extra)) = (&mut m, extra) {
        m.extend(extra);
    }
    serde_json::to_vec(&m).expect("manifest JSON")
}

/// An image pushed to a repository, with everything needed to check that it
/// still pulls byte for byte.
#[derive(Debug, Clone)]
pub struct Image {
    pub repo: String,
    pub tag: String,
    pub manifest: Vec<u8>,
    pub digest: String,
    pub config: Vec<u8>,
    pub layers: Vec<Vec<u8>>,
}

impl Image {
    pub fn config_digest(&self) -> String {
        sha256(&self.config)
    }

    pub fn layer_digests(&self) -> Vec<String> {
        self.layers.iter().map(|l| sha256(l)).collect()
    }

    /// Config and layer digests.
    pub fn blob_digests(&self) -> Vec<String> {
        let mut all = vec![self.config_digest()];
        all.extend(self.layer_digests());
        all
    }
}

/// Uploads a config and two layers of about `layer_len` bytes and pushes
/// an OCI manifest under `tag`.
pub async fn push_image(
    api: &TestApp,
    repo: &str,
    tag: &str,
    seed: u64,
    layer_len: usize,
) -> Image {
    let config = serde_json::to_vec(&json!({
        "architecture": "amd64",
        "os": "linux",
        "rootfs": {"type": "layers", "diff_ids": []},
        "seed": seed,
    }))
    .expect("config JSON");
    let layers: Vec<Vec<u8>> = (0..2)
        .map(|i| bytes(seed * 1000 + i, layer_len + i as usize))
        .collect();
    push_image_from(api, repo, tag, config, layers).await
}

/// Pushes an OCI image made of the given config and layers.
pub async fn push_image_from(
    api: &TestApp,
    repo: &str,
    tag: &str,
    config: Vec<u8>,
    layers: Vec<Vec<u8>>,
) -> Image {
    api.push_blob(repo, &config).await;
    for layer in &layers {
        api.push_blob(repo, layer).await;
    }
    let layer_refs: Vec<(&str, &[u8])> = layers.iter().map(|l| (OCI_LAYER, l.as_slice())).collect();
    let manifest = image_manifest(OCI_MANIFEST, (OCI_CONFIG, &config), &layer_refs, json!({}));
    api.push_manifest(repo, tag, OCI_MANIFEST, &manifest).await;
    Image {
        repo: repo.to_string(),
        tag: tag.to_string(),
        digest: sha256(&manifest),
        manifest,
        config,
        layers,
    }
}

/// Pulls the image by tag and by digest and compares every byte.
pub async fn assert_image_pulls(api: &TestApp, image: &Image) {
    for reference in [image.tag.as_str(), image.digest.as_str()] {
        let (media_type, body) = api.pull_manifest(&image.repo, reference).await;
        assert_eq!(media_type, OCI_MANIFEST);
        assert_eq!(body, image.manifest, "manifest {reference} changed");
    }
    assert_eq!(
        api.pull_blob(&image.repo, &image.config_digest()).await,
        image.config
    );
    for layer in &image.layers {
        assert_eq!(
            &api.pull_blob(&image.repo, &sha256(layer)).await,
            layer,
            "layer bytes changed"
        );
    }
}

/// A repository's tags with their digests, `None` if it is unknown.
pub type TagDigests = Option<Vec<(String, String)>>;

/// What a client can see of the store (catalog, and for every listed or
/// named repository its tags with their digests) and what is on disk
/// (committed blobs, upload files).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    pub catalog: Vec<String>,
    pub tags: Vec<(String, TagDigests)>,
    pub blob_files: std::collections::BTreeSet<String>,
    pub upload_files: Vec<String>,
}

pub async fn snapshot(api: &TestApp, data_dir: &std::path::Path, repos: &[&str]) -> Snapshot {
    let catalog = api.catalog().await;
    let mut names = catalog.clone();
    for r in repos {
        if !names.iter().any(|x| x == r) {
            names.push(r.to_string());
        }
    }
    let mut tags = Vec::new();
    for repo in names {
        let listed = match api.tags(&repo).await {
            None => None,
            Some(list) => {
                let mut with_digests = Vec::new();
                for tag in list {
                    let resp = api.head(&format!("/v2/{repo}/manifests/{tag}")).await;
                    let resp = expect_status(resp, 200);
                    with_digests.push((tag, must_header(&resp, "docker-content-digest")));
                }
                Some(with_digests)
            }
        };
        tags.push((repo, listed));
    }
    Snapshot {
        catalog,
        tags,
        blob_files: blob_files(data_dir),
        upload_files: upload_files(data_dir),
    }
}
