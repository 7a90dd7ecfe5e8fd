//! Distribution-API steps on a [`TestApp`]: each request checks what a
//! step must answer, so a test reads as the steps it takes.

use http::StatusCode;
use serde_json::Value;

use super::app::TestApp;
use super::http::{expect_error, expect_status, must_header, with_query, TestResponse};
use super::oci::{sha256, string_list};

/// The Range header an upload with `offset` bytes reports (Docker
/// Distribution's convention: an empty upload is `0-0`).
pub fn upload_range(offset: u64) -> String {
    format!("0-{}", offset.saturating_sub(1))
}

impl TestApp {
    // -- blobs ------------------------------------------------------------

    /// Single-request upload (`POST ?digest=`); returns the digest.
    pub async fn push_blob(&self, repo: &str, data: &[u8]) -> String {
        let digest = sha256(data);
        let resp = self
            .post(&format!("/v2/{repo}/blobs/uploads/?digest={digest}"))
            .header("content-type", "application/octet-stream")
            .body(data.to_vec())
            .await;
        expect_status(resp, 201);
        digest
    }

    /// Starts an upload session; returns its (relative) Location.
    pub async fn start_upload(&self, repo: &str) -> String {
        let resp = self.post(&format!("/v2/{repo}/blobs/uploads/")).await;
        let resp = expect_status(resp, 202);
        must_header(&resp, "location")
    }

    /// `PATCH` with `Content-Range: start-end`.
    pub async fn patch_chunk(&self, location: &str, start: u64, data: &[u8]) -> TestResponse {
        let end = start + data.len() as u64 - 1;
        self.patch(location)
            .header("content-type", "application/octet-stream")
            .header("content-range", format!("{start}-{end}"))
            .body(data.to_vec())
            .await
    }

    /// Final `PUT ?digest=` with an optional last chunk.
    pub async fn put_upload(&self, location: &str, digest: &str, body: &[u8]) -> TestResponse {
        let mut req = self
            .put(&with_query(location, "digest", digest))
            .header("content-type", "application/octet-stream");
        if !body.is_empty() {
            req = req.body(body.to_vec());
        }
        req.await
    }

    /// GET upload status.
    pub async fn upload_status(&self, location: &str) -> TestResponse {
        self.get(location).await
    }

    /// The offset of an upload session as its status reports it, `None` if
    /// the session is unknown (404 BLOB_UPLOAD_UNKNOWN). An empty session
    /// reports `0-0`, read as 0.
    pub async fn upload_offset(&self, location: &str) -> Option<u64> {
        let resp = self.upload_status(location).await;
        if resp.status == StatusCode::NOT_FOUND {
            expect_error(resp, 404, "BLOB_UPLOAD_UNKNOWN");
            return None;
        }
        let resp = expect_status(resp, 204);
        let range = must_header(&resp, "range");
        let end: u64 = range
            .strip_prefix("0-")
            .and_then(|e| e.parse().ok())
            .unwrap_or_else(|| panic!("bad Range {range:?}"));
        Some(if end == 0 { 0 } else { end + 1 })
    }

    pub async fn pull_blob(&self, repo: &str, digest: &str) -> Vec<u8> {
        let resp = self.get(&format!("/v2/{repo}/blobs/{digest}")).await;
        expect_status(resp, 200).body.to_vec()
    }

    pub async fn blob_exists(&self, repo: &str, digest: &str) -> bool {
        let resp = self.head(&format!("/v2/{repo}/blobs/{digest}")).await;
        match resp.status() {
            200 => true,
            404 => false,
            other => panic!("HEAD blob {repo}@{digest}: unexpected {other}"),
        }
    }

    // -- manifests ----------------------------------------------------------

    pub async fn put_manifest(
        &self,
        repo: &str,
        reference: &str,
        media_type: &str,
        body: &[u8],
    ) -> TestResponse {
        self.put(&format!("/v2/{repo}/manifests/{reference}"))
            .header("content-type", media_type)
            .body(body.to_vec())
            .await
    }

    /// Pushes a manifest and checks the 201 and its digest headers.
    pub async fn push_manifest(
        &self,
        repo: &str,
        reference: &str,
        media_type: &str,
        body: &[u8],
    ) -> TestResponse {
        let resp = self.put_manifest(repo, reference, media_type, body).await;
        let resp = expect_status(resp, 201);
        let digest = sha256(body);
        let expected = if reference.contains(':') {
            reference.to_string()
        } else {
            digest
        };
        assert_eq!(must_header(&resp, "docker-content-digest"), expected);
        assert_eq!(
            must_header(&resp, "location"),
            format!("/v2/{repo}/manifests/{expected}")
        );
        resp
    }

    /// GET a manifest, checking its headers; returns (media type, bytes).
    pub async fn pull_manifest(&self, repo: &str, reference: &str) -> (String, Vec<u8>) {
        let resp = self.get(&format!("/v2/{repo}/manifests/{reference}")).await;
        let resp = expect_status(resp, 200);
        let media_type = must_header(&resp, "content-type");
        let digest = must_header(&resp, "docker-content-digest");
        let length = must_header(&resp, "content-length");
        let body = resp.body.to_vec();
        assert_eq!(
            digest,
            sha256(&body),
            "Docker-Content-Digest of {reference}"
        );
        assert_eq!(
            length,
            body.len().to_string(),
            "Content-Length of {reference}"
        );
        (media_type, body)
    }

    /// Status of GET manifest (200 or an error), for "unchanged" checks.
    pub async fn manifest_status(&self, repo: &str, reference: &str) -> u16 {
        self.get(&format!("/v2/{repo}/manifests/{reference}"))
            .await
            .status()
    }

    /// Every tag of a repository, `None` if it is unknown (404 NAME_UNKNOWN).
    pub async fn tags(&self, repo: &str) -> Option<Vec<String>> {
        let resp = self.get(&format!("/v2/{repo}/tags/list")).await;
        if resp.status == StatusCode::NOT_FOUND {
            expect_error(resp, 404, "NAME_UNKNOWN");
            return None;
        }
        let v: Value = expect_status(resp, 200).json();
        assert_eq!(v["name"].as_str(), Some(repo));
        Some(string_list(&v["tags"]))
    }

    pub async fn catalog(&self) -> Vec<String> {
        let v = expect_status(self.get("/v2/_catalog").await, 200).json();
        string_list(&v["repositories"])
    }
}
