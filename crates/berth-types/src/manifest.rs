//! Manifest parsing: enough of the OCI image manifest / index and Docker
//! schema 2 formats to validate a push and know what it references.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::digest::Digest;
use crate::media_type;

/// A content descriptor as it appears in manifests and indexes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    pub media_type: String,
    pub digest: Digest,
    pub size: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub urls: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<BTreeMap<String, String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifact_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<Platform>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Platform {
    pub architecture: String,
    pub os: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
    #[serde(
        rename = "os.version",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub os_version: Option<String>,
}

/// The raw shape shared by manifests and indexes; which fields must be
/// present depends on the kind and is checked in [`ParsedManifest::parse`].
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawManifest {
    schema_version: Option<i64>,
    media_type: Option<String>,
    artifact_type: Option<String>,
    config: Option<Descriptor>,
    layers: Option<Vec<Descriptor>>,
    manifests: Option<Vec<Descriptor>>,
    subject: Option<Descriptor>,
    annotations: Option<BTreeMap<String, String>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ManifestKind {
    Image,
    Index,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ManifestError {
    #[error("manifest is not valid JSON: {0}")]
    NotJson(String),
    #[error("manifest does not match its format: {0}")]
    Schema(String),
    #[error("schemaVersion must be 2, got {0:?}")]
    SchemaVersion(Option<i64>),
    #[error(
        "Docker schema 1 manifests are not supported; push with a current client (schema 2 or OCI)"
    )]
    Schema1,
    #[error("manifest media type '{0}' is not a manifest or index type berth accepts")]
    UnknownMediaType(String),
    #[error("the Content-Type header '{header}' disagrees with the manifest's mediaType '{body}'")]
    MediaTypeMismatch { header: String, body: String },
    #[error("an image manifest needs a 'config' descriptor")]
    MissingConfig,
    #[error(
        "an index must not have 'config' or 'layers', and a manifest must not have 'manifests'"
    )]
    MixedKinds,
}

/// A manifest that parsed and passed the structural checks.
#[derive(Debug, Clone)]
pub struct ParsedManifest {
    pub kind: ManifestKind,
    pub media_type: String,
    /// `artifactType`, or for image manifests without one, the config's media
    /// type (as the referrers API reports it).
    pub artifact_type: Option<String>,
    pub config: Option<Descriptor>,
    pub layers: Vec<Descriptor>,
    pub manifests: Vec<Descriptor>,
    pub subject: Option<Descriptor>,
    pub annotations: Option<BTreeMap<String, String>>,
}

impl ParsedManifest {
    /// Parses `body`, using `content_type` (the request's header, if any)
    /// when the body itself has no `mediaType`.
    pub fn parse(body: &[u8], content_type: Option<&str>) -> Result<Self, ManifestError> {
        let content_type = content_type
            .map(|c| c.split(';').next().unwrap_or("").trim())
            .filter(|c| !c.is_empty());
        if matches!(
            content_type,
            Some(media_type::DOCKER_SCHEMA1 | media_type::DOCKER_SCHEMA1_SIGNED)
        ) {
            return Err(ManifestError::Schema1);
        }
        let value: serde_json::Value =
            serde_json::from_slice(body).map_err(|e| ManifestError::NotJson(e.to_string()))?;
        if value.get("schemaVersion").and_then(|v| v.as_i64()) == Some(1) {
            return Err(ManifestError::Schema1);
        }
        let raw: RawManifest =
            serde_json::from_value(value).map_err(|e| ManifestError::Schema(e.to_string()))?;
        if raw.schema_version != Some(2) {
            return Err(ManifestError::SchemaVersion(raw.schema_version));
        }
        let media_type = match (&raw.media_type, content_type) {
            (Some(body), Some(header)) if body != header => {
                return Err(ManifestError::MediaTypeMismatch {
                    header: header.to_string(),
                    body: body.clone(),
                })
            }
            (Some(body), _) => body.clone(),
            (None, Some(header)) => header.to_string(),
            // Neither says: the shape decides (OCI allows omitting mediaType).
            (None, None) if raw.manifests.is_some() => media_type::OCI_INDEX.to_string(),
            (None, None) => media_type::OCI_MANIFEST.to_string(),
        };
        let kind = if media_type::is_index(&media_type) {
            ManifestKind::Index
        } else if media_type::is_image_manifest(&media_type) {
            ManifestKind::Image
        } else {
            return Err(ManifestError::UnknownMediaType(media_type));
        };
        match kind {
            ManifestKind::Image => {
                if raw.manifests.is_some() {
                    return Err(ManifestError::MixedKinds);
                }
                if raw.config.is_none() {
                    return Err(ManifestError::MissingConfig);
                }
            }
            ManifestKind::Index => {
                if raw.config.is_some() || raw.layers.is_some() {
                    return Err(ManifestError::MixedKinds);
                }
            }
        }
        let artifact_type = raw.artifact_type.clone().or_else(|| match kind {
            ManifestKind::Image => raw.config.as_ref().map(|c| c.media_type.clone()),
            ManifestKind::Index => None,
        });
        Ok(ParsedManifest {
            kind,
            media_type,
            artifact_type,
            config: raw.config,
            layers: raw.layers.unwrap_or_default(),
            manifests: raw.manifests.unwrap_or_default(),
            subject: raw.subject,
            annotations: raw.annotations,
        })
    }

    /// Blobs (config and layers) that must exist in the repository for this
    /// manifest to be accepted. Non-distributable layers are exempt.
    pub fn required_blobs(&self) -> impl Iterator<Item = &Descriptor> {
        self.config.iter().chain(
            self.layers
                .iter()
                .filter(|l| !media_type::is_non_distributable(&l.media_type)),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CFG: &str = "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a";

    #[test]
    fn parses_oci_manifest_with_subject() {
        let body = format!(
            r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json",
            "artifactType":"application/vnd.example.sig",
            "config":{{"mediaType":"application/vnd.oci.empty.v1+json","digest":"{CFG}","size":2}},
            "layers":[],"subject":{{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"{CFG}","size":2}}}}"#
        );
        let m = ParsedManifest::parse(body.as_bytes(), None).expect("valid");
        assert_eq!(m.kind, ManifestKind::Image);
        assert_eq!(
            m.artifact_type.as_deref(),
            Some("application/vnd.example.sig")
        );
        assert!(m.subject.is_some());
        assert_eq!(m.required_blobs().count(), 1);
    }

    #[test]
    fn rejects_bad_manifests() {
        assert!(matches!(
            ParsedManifest::parse(b"nope", None),
            Err(ManifestError::NotJson(_))
        ));
        assert!(matches!(
            ParsedManifest::parse(br#"{"schemaVersion":1,"name":"x"}"#, None),
            Err(ManifestError::Schema1)
        ));
        assert!(matches!(
            ParsedManifest::parse(br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","layers":[]}"#, None),
            Err(ManifestError::MissingConfig)
        ));
        assert!(matches!(
            ParsedManifest::parse(
                br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[]}"#,
                Some("application/vnd.oci.image.manifest.v1+json")
            ),
            Err(ManifestError::MediaTypeMismatch { .. })
        ));
        let bad_digest =
            br#"{"schemaVersion":2,"manifests":[{"mediaType":"x","digest":"sha256:zz","size":1}]}"#;
        assert!(matches!(
            ParsedManifest::parse(bad_digest, None),
            Err(ManifestError::Schema(_))
        ));
    }
}
