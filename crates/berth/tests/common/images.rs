//! Whole images: pushed through the API, pulled back byte for byte, and
//! snapshots of everything a store holds.

use std::collections::BTreeSet;
use std::path::Path;

use serde_json::json;

use super::api::{must_header, Api};
use super::assertions::expect_status;
use super::content::{bytes, image_manifest, sha256, OCI_CONFIG, OCI_LAYER, OCI_MANIFEST};
use super::store::{blob_files, upload_files};

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

/// Uploads a config and `layers` layers of `layer_len` bytes and pushes an
/// OCI manifest under `tag`.
pub async fn push_image(api: &Api, repo: &str, tag: &str, seed: u64, layer_len: usize) -> Image {
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
    api: &Api,
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
pub async fn assert_image_pulls(api: &Api, image: &Image) {
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
/// named repository its tags with their digests, `None` if unknown) and what
/// is on disk (committed blobs, upload files).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    pub catalog: Vec<String>,
    pub tags: Vec<(String, TagDigests)>,
    pub blob_files: BTreeSet<String>,
    pub upload_files: Vec<String>,
}

pub async fn snapshot(api: &Api, data_dir: &Path, repos: &[&str]) -> Snapshot {
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
                    let resp = expect_status(resp, 200).await;
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
