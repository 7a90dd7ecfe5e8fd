//! Manifests, tags, the catalog and the referrers API.

use std::sync::Arc;

use berth_metadata::NewManifest;
use berth_types::{
    media_type, Algorithm, Digest, ManifestKind, ParsedManifest, Reference, RepositoryName, Tag,
};
use bytes::Bytes;
use serde_json::{json, Value};

use crate::{Registry, RegistryError, Result};

/// Most tags one push may set with `?tag=` (the spec asks for at least 10).
pub const MAX_TAGS_PER_PUSH: usize = 100;

/// How a manifest push goes beyond the reference it names.
#[derive(Debug, Clone, Default)]
pub struct PushOptions {
    /// Tags set by the same push (`?tag=`), all or none.
    pub tags: Vec<Tag>,
    /// Accept the manifest though blobs or child manifests it names are not
    /// in the repository (the `sparseManifests` setting).
    pub sparse: bool,
}

/// The outcome of a manifest push.
#[derive(Debug, Clone)]
pub struct ManifestPut {
    pub digest: Digest,
    /// Every tag that now points at it.
    pub tags: Vec<Tag>,
    /// The `subject` it names, reported back in `OCI-Subject`.
    pub subject: Option<Digest>,
}

#[derive(Debug, Clone)]
pub struct StoredManifest {
    pub digest: Digest,
    pub media_type: String,
    pub content: Bytes,
}

fn manifest_unknown(repository: &RepositoryName, reference: &Reference) -> RegistryError {
    RegistryError::ManifestUnknown {
        repository: repository.to_string(),
        reference: reference.to_string(),
    }
}

impl Registry {
    pub async fn put_manifest(
        &self,
        repository: &RepositoryName,
        reference: &Reference,
        content_type: Option<&str>,
        body: Bytes,
        options: PushOptions,
    ) -> Result<ManifestPut> {
        if body.len() > self.config.max_manifest_bytes {
            return Err(RegistryError::ManifestTooLarge {
                size: body.len(),
                limit: self.config.max_manifest_bytes,
            });
        }
        let parsed = ParsedManifest::parse(&body, content_type)?;
        let digest = match reference {
            Reference::Digest(expected) => {
                let actual = Digest::of(expected.algorithm(), &body);
                if &actual != expected {
                    return Err(RegistryError::DigestMismatch {
                        expected: expected.clone(),
                        actual,
                    });
                }
                actual
            }
            Reference::Tag(_) => Digest::of(Algorithm::Sha256, &body),
        };
        let mut tags = options.tags;
        if let Reference::Tag(t) = reference {
            tags.insert(0, t.clone());
        }
        let mut seen = std::collections::HashSet::new();
        tags.retain(|t| seen.insert(t.as_str().to_string()));
        if tags.len() > MAX_TAGS_PER_PUSH {
            return Err(RegistryError::TooManyTags {
                count: tags.len(),
                limit: MAX_TAGS_PER_PUSH,
            });
        }
        // Non-distributable layers need not be here, but when they are,
        // this manifest keeps them alive like any other layer.
        let references = parsed
            .config
            .iter()
            .chain(&parsed.layers)
            .map(|d| d.digest.clone())
            .collect();
        let (blobs, children) = match parsed.kind {
            ManifestKind::Image => (
                parsed.required_blobs().map(|d| d.digest.clone()).collect(),
                Vec::new(),
            ),
            ManifestKind::Index => (
                Vec::new(),
                parsed.manifests.iter().map(|d| d.digest.clone()).collect(),
            ),
        };
        let annotations_json = parsed
            .annotations
            .as_ref()
            .filter(|a| !a.is_empty())
            .map(|a| serde_json::to_string(a).unwrap_or_default());
        let subject = parsed.subject.as_ref().map(|s| s.digest.clone());
        let write = self.cache.write();
        let stored = self
            .metadata
            .put_manifest(NewManifest {
                repository,
                digest: &digest,
                media_type: &parsed.media_type,
                artifact_type: parsed.artifact_type.as_deref(),
                subject: subject.as_ref(),
                annotations_json,
                content: &body,
                blobs,
                references,
                children,
                tags: &tags,
                sparse: options.sparse,
            })
            .await;
        for tag in &tags {
            write.forget_tag(repository.as_str(), tag.as_str());
        }
        drop(write);
        stored?;
        Ok(ManifestPut {
            digest,
            tags,
            subject,
        })
    }

    /// Fetches a manifest. `accept` lists the media types the client takes;
    /// a client that takes image manifests but not indexes gets the
    /// linux/amd64 image of an index, as Docker Distribution does.
    pub async fn get_manifest(
        &self,
        repository: &RepositoryName,
        reference: &Reference,
        accept: &[&str],
    ) -> Result<StoredManifest> {
        let Some(stored) = self.find_manifest(repository, reference).await? else {
            if !self.metadata.repository_exists(repository).await? {
                return Err(RegistryError::NameUnknown(repository.to_string()));
            }
            return Err(manifest_unknown(repository, reference));
        };
        let takes = |t: &str| accept.iter().any(|a| *a == t || *a == "*/*");
        let wants_image_only = !accept.is_empty()
            && media_type::is_index(&stored.media_type)
            && !takes(&stored.media_type)
            && (takes(media_type::OCI_MANIFEST) || takes(media_type::DOCKER_MANIFEST));
        if !wants_image_only {
            return Ok(stored);
        }
        let parsed = ParsedManifest::parse(&stored.content, Some(&stored.media_type))?;
        let child = parsed
            .manifests
            .iter()
            .find(|d| {
                d.platform
                    .as_ref()
                    .is_some_and(|p| p.os == "linux" && p.architecture == "amd64")
            })
            .or(parsed.manifests.first());
        match child {
            Some(child) if takes(&child.media_type) => {
                Box::pin(self.get_manifest(
                    repository,
                    &Reference::Digest(child.digest.clone()),
                    accept,
                ))
                .await
            }
            _ => Ok(stored),
        }
    }

    /// A manifest by tag or digest as stored (no index resolution),
    /// through the cache; `None` if the repository does not hold it.
    pub async fn find_manifest(
        &self,
        repository: &RepositoryName,
        reference: &Reference,
    ) -> Result<Option<StoredManifest>> {
        let repo = repository.as_str();
        let digest = match reference {
            Reference::Digest(d) => d.clone(),
            Reference::Tag(tag) => match self.cache.tag(repo, tag.as_str()) {
                Some(d) => d,
                None => {
                    let ticket = self.cache.ticket();
                    let Some(record) = self.metadata.get_manifest(repository, reference).await?
                    else {
                        return Ok(None);
                    };
                    self.cache
                        .fill_tag(ticket, repo, tag.as_str(), record.digest.clone());
                    let stored = Arc::new(StoredManifest {
                        digest: record.digest,
                        media_type: record.media_type,
                        content: Bytes::from(record.content),
                    });
                    self.cache.fill_manifest(ticket, repo, stored.clone());
                    return Ok(Some(stored.as_ref().clone()));
                }
            },
        };
        Ok(self
            .manifest_by_digest(repository, &digest)
            .await?
            .map(|m| m.as_ref().clone()))
    }

    /// A manifest by digest, through the cache.
    pub(crate) async fn manifest_by_digest(
        &self,
        repository: &RepositoryName,
        digest: &Digest,
    ) -> Result<Option<Arc<StoredManifest>>> {
        let repo = repository.as_str();
        if let Some(m) = self.cache.manifest(repo, digest) {
            return Ok(Some(m));
        }
        let ticket = self.cache.ticket();
        let Some(record) = self
            .metadata
            .get_manifest(repository, &Reference::Digest(digest.clone()))
            .await?
        else {
            return Ok(None);
        };
        let stored = Arc::new(StoredManifest {
            digest: record.digest,
            media_type: record.media_type,
            content: Bytes::from(record.content),
        });
        self.cache.fill_manifest(ticket, repo, stored.clone());
        Ok(Some(stored))
    }

    /// Deletes a manifest (by digest, with all its tags) or a tag.
    pub async fn delete_manifest(
        &self,
        repository: &RepositoryName,
        reference: &Reference,
    ) -> Result<()> {
        let write = self.cache.write();
        let deleted = match reference {
            Reference::Digest(d) => {
                let deleted = self.metadata.delete_manifest(repository, d).await;
                write.forget_manifest(repository.as_str(), d);
                deleted?
            }
            Reference::Tag(t) => {
                let deleted = self.metadata.delete_tag(repository, t).await;
                write.forget_tag(repository.as_str(), t.as_str());
                deleted?
            }
        };
        drop(write);
        if deleted {
            Ok(())
        } else if !self.metadata.repository_exists(repository).await? {
            Err(RegistryError::NameUnknown(repository.to_string()))
        } else {
            Err(manifest_unknown(repository, reference))
        }
    }

    pub async fn list_manifests(
        &self,
        repository: &RepositoryName,
    ) -> Result<Vec<berth_metadata::ManifestSummary>> {
        if !self.metadata.repository_exists(repository).await? {
            return Err(RegistryError::NameUnknown(repository.to_string()));
        }
        Ok(self.metadata.list_manifests(repository).await?)
    }

    /// Deletes a whole repository; blobs go with the next collection.
    pub async fn delete_repository(&self, repository: &RepositoryName) -> Result<u64> {
        if !self.metadata.repository_exists(repository).await? {
            return Err(RegistryError::NameUnknown(repository.to_string()));
        }
        let write = self.cache.write();
        let deleted = self.metadata.delete_repository(repository).await;
        write.forget_everything();
        drop(write);
        Ok(deleted?)
    }

    pub async fn list_tags(
        &self,
        repository: &RepositoryName,
        limit: u32,
        last: Option<&str>,
    ) -> Result<Vec<String>> {
        self.metadata
            .list_tags(repository, limit, last)
            .await?
            .ok_or_else(|| RegistryError::NameUnknown(repository.to_string()))
    }

    pub async fn catalog(&self, limit: u32, last: Option<&str>) -> Result<Vec<String>> {
        Ok(self.metadata.list_repositories(limit, last).await?)
    }

    /// The referrers of `subject` as an OCI image index.
    pub async fn referrers(
        &self,
        repository: &RepositoryName,
        subject: &Digest,
        artifact_type: Option<&str>,
    ) -> Result<Bytes> {
        let referrers = self
            .metadata
            .referrers(repository, subject, artifact_type)
            .await?;
        let manifests: Vec<Value> = referrers
            .into_iter()
            .map(|r| {
                let mut d = json!({
                    "mediaType": r.media_type,
                    "digest": r.digest,
                    "size": r.size,
                });
                if let Some(t) = r.artifact_type {
                    d["artifactType"] = json!(t);
                }
                if let Some(a) = r
                    .annotations_json
                    .and_then(|a| serde_json::from_str::<Value>(&a).ok())
                {
                    d["annotations"] = a;
                }
                d
            })
            .collect();
        let index = json!({
            "schemaVersion": 2,
            "mediaType": media_type::OCI_INDEX,
            "manifests": manifests,
        });
        Ok(Bytes::from(serde_json::to_vec(&index).unwrap_or_default()))
    }
}
