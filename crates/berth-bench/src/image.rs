//! OCI images built from generated layers: deterministic bytes, so the
//! static-file ceiling can serve exactly what the registry serves.

use bytes::Bytes;
use serde_json::json;

use crate::client::{OCI_CONFIG, OCI_LAYER, OCI_MANIFEST};
use crate::data::{digest_of, BlobSpec};

/// A layer (or config) with its digest.
#[derive(Debug, Clone)]
pub struct Blob {
    pub bytes: Bytes,
    pub digest: String,
}

impl Blob {
    pub fn new(bytes: Bytes) -> Self {
        let digest = digest_of(&bytes);
        Blob { bytes, digest }
    }

    pub fn generated(spec: BlobSpec) -> Self {
        Blob::new(spec.all())
    }
}

/// An image: its layers, its config and the manifest naming them.
#[derive(Debug, Clone)]
pub struct Image {
    pub layers: Vec<Blob>,
    pub config: Blob,
    pub manifest: Bytes,
}

impl Image {
    /// An image of the given layers (uncompressed tars, so each layer's
    /// digest is also its diff id).
    pub fn new(layers: Vec<Blob>) -> Self {
        let diff_ids: Vec<&str> = layers.iter().map(|l| l.digest.as_str()).collect();
        let config = json!({
            "architecture": "amd64",
            "os": "linux",
            "config": {},
            "rootfs": { "type": "layers", "diff_ids": diff_ids },
        });
        let config = Blob::new(Bytes::from(config.to_string()));
        let descriptors: Vec<_> = layers
            .iter()
            .map(|l| json!({ "mediaType": OCI_LAYER, "digest": l.digest, "size": l.bytes.len() }))
            .collect();
        let manifest = json!({
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": { "mediaType": OCI_CONFIG, "digest": config.digest, "size": config.bytes.len() },
            "layers": descriptors,
        });
        Image {
            layers,
            config,
            manifest: Bytes::from(manifest.to_string()),
        }
    }

    /// The one-layer image of `manifest-get` and `tags-list`.
    pub fn small() -> Self {
        Image::new(vec![Blob::generated(BlobSpec::new(SMALL_IMAGE_SEED, 4096))])
    }
}

const SMALL_IMAGE_SEED: u64 = 4_000;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manifests_are_deterministic_and_name_their_blobs() {
        let a = Image::small();
        let b = Image::small();
        assert_eq!(a.manifest, b.manifest);
        let text = std::str::from_utf8(&a.manifest).expect("utf8");
        assert!(text.contains(&a.config.digest));
        assert!(text.contains(&a.layers[0].digest));
        let parsed: serde_json::Value = serde_json::from_slice(&a.manifest).expect("json");
        assert_eq!(parsed["layers"][0]["size"], 4096);
    }
}
