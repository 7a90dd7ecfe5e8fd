//! HTTP clients (reqwest) for a server's distribution and management APIs.

use std::time::Duration;

use reqwest::{Response, StatusCode};
use serde_json::Value;

use super::assertions::{expect_error, expect_status};
use super::content::sha256;
use super::server::TestServer;

/// A client without credentials.
pub fn http_client() -> reqwest::Client {
    client_with(None)
}

/// A client that sends `authorization` with every request.
pub fn client_with(authorization: Option<&str>) -> reqwest::Client {
    let mut headers = reqwest::header::HeaderMap::new();
    if let Some(value) = authorization {
        headers.insert(
            reqwest::header::AUTHORIZATION,
            value.parse().expect("header value"),
        );
    }
    reqwest::Client::builder()
        .default_headers(headers)
        .no_proxy()
        .timeout(Duration::from_secs(120))
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("http client")
}

/// A value of a response header, as a string.
/// The server's `/metrics` page.
pub async fn metrics_text(server: &TestServer) -> String {
    http_client()
        .get(format!("{}/metrics", server.url()))
        .send()
        .await
        .expect("GET /metrics")
        .text()
        .await
        .expect("metrics text")
}

pub fn header(resp: &Response, name: &str) -> Option<String> {
    resp.headers()
        .get(name)
        .map(|v| v.to_str().expect("ASCII header").to_string())
}

pub fn must_header(resp: &Response, name: &str) -> String {
    header(resp, name).unwrap_or_else(|| {
        panic!(
            "{} {} lacks header {name}: {:?}",
            resp.status(),
            resp.url(),
            resp.headers()
        )
    })
}

/// The Range header an upload with `offset` bytes reports (Docker
/// Distribution's convention: an empty upload is `0-0`).
pub fn upload_range(offset: u64) -> String {
    format!("0-{}", offset.saturating_sub(1))
}

/// A management-API request as the owner: (status, JSON body or null).
pub async fn manage_request(
    server: &TestServer,
    method: reqwest::Method,
    path: &str,
    body: Value,
) -> (u16, Value) {
    let resp = http_client()
        .request(method, format!("{}{path}", server.url()))
        .basic_auth("owner", Some(server.owner_password()))
        .json(&body)
        .send()
        .await
        .expect("management request");
    let status = resp.status().as_u16();
    let text = resp.text().await.expect("body");
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

/// The distribution API of one server.
#[derive(Clone)]
pub struct Api {
    pub http: reqwest::Client,
    pub base: String,
}

impl Api {
    /// The API as the owner (Basic credentials on every request).
    pub fn new(server: &TestServer) -> Api {
        Api {
            http: client_with(Some(&server.authorization())),
            base: server.url(),
        }
    }

    /// The API without credentials.
    pub fn anonymous(server: &TestServer) -> Api {
        Api {
            http: http_client(),
            base: server.url(),
        }
    }

    /// The same identity on a fresh client (its own connections).
    pub fn fresh(&self, server: &TestServer) -> Api {
        Api {
            http: client_with(Some(&server.authorization())),
            base: self.base.clone(),
        }
    }

    /// Points at a restarted server.
    pub fn retarget(&mut self, server: &TestServer) {
        self.base = server.url();
    }

    /// An absolute URL for a path or a `Location` header value.
    pub fn url(&self, path_or_url: &str) -> String {
        if path_or_url.starts_with("http://") || path_or_url.starts_with("https://") {
            path_or_url.to_string()
        } else {
            format!("{}{path_or_url}", self.base)
        }
    }

    pub async fn get(&self, path: &str) -> Response {
        self.http.get(self.url(path)).send().await.expect("GET")
    }

    pub async fn head(&self, path: &str) -> Response {
        self.http.head(self.url(path)).send().await.expect("HEAD")
    }

    pub async fn delete(&self, path: &str) -> Response {
        self.http
            .delete(self.url(path))
            .send()
            .await
            .expect("DELETE")
    }

    // -- blobs ------------------------------------------------------------

    /// Single-request upload (`POST ?digest=`); returns the digest.
    pub async fn push_blob(&self, repo: &str, data: &[u8]) -> String {
        let digest = sha256(data);
        let resp = self
            .http
            .post(self.url(&format!("/v2/{repo}/blobs/uploads/?digest={digest}")))
            .header("content-type", "application/octet-stream")
            .body(data.to_vec())
            .send()
            .await
            .expect("POST blob");
        expect_status(resp, 201).await;
        digest
    }

    /// Starts an upload session; returns its (relative) Location.
    pub async fn start_upload(&self, repo: &str) -> String {
        let resp = self
            .http
            .post(self.url(&format!("/v2/{repo}/blobs/uploads/")))
            .send()
            .await
            .expect("POST upload");
        let resp = expect_status(resp, 202).await;
        must_header(&resp, "location")
    }

    /// `PATCH` with `Content-Range: start-end`.
    pub async fn patch_chunk(&self, location: &str, start: u64, data: &[u8]) -> Response {
        let end = start + data.len() as u64 - 1;
        self.http
            .patch(self.url(location))
            .header("content-type", "application/octet-stream")
            .header("content-range", format!("{start}-{end}"))
            .body(data.to_vec())
            .send()
            .await
            .expect("PATCH")
    }

    /// Final `PUT ?digest=` with an optional last chunk.
    pub async fn put_upload(&self, location: &str, digest: &str, body: &[u8]) -> Response {
        let mut req = self
            .http
            .put(with_query(&self.url(location), "digest", digest))
            .header("content-type", "application/octet-stream");
        if !body.is_empty() {
            req = req.body(body.to_vec());
        }
        req.send().await.expect("PUT upload")
    }

    /// GET upload status.
    pub async fn upload_status(&self, location: &str) -> Response {
        self.get(location).await
    }

    /// The offset of an upload session as its status reports it, `None` if
    /// the session is unknown (404 BLOB_UPLOAD_UNKNOWN). An empty session
    /// reports `0-0`, read as 0.
    pub async fn upload_offset(&self, location: &str) -> Option<u64> {
        let resp = self.upload_status(location).await;
        if resp.status() == StatusCode::NOT_FOUND {
            expect_error(resp, 404, "BLOB_UPLOAD_UNKNOWN").await;
            return None;
        }
        let resp = expect_status(resp, 204).await;
        let range = must_header(&resp, "range");
        let end: u64 = range
            .strip_prefix("0-")
            .and_then(|e| e.parse().ok())
            .unwrap_or_else(|| panic!("bad Range {range:?}"));
        Some(if end == 0 { 0 } else { end + 1 })
    }

    pub async fn pull_blob(&self, repo: &str, digest: &str) -> Vec<u8> {
        let resp = self.get(&format!("/v2/{repo}/blobs/{digest}")).await;
        let resp = expect_status(resp, 200).await;
        resp.bytes().await.expect("blob body").to_vec()
    }

    pub async fn blob_exists(&self, repo: &str, digest: &str) -> bool {
        let resp = self.head(&format!("/v2/{repo}/blobs/{digest}")).await;
        match resp.status().as_u16() {
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
    ) -> Response {
        self.http
            .put(self.url(&format!("/v2/{repo}/manifests/{reference}")))
            .header("content-type", media_type)
            .body(body.to_vec())
            .send()
            .await
            .expect("PUT manifest")
    }

    /// Pushes a manifest and checks the 201 and its digest headers.
    pub async fn push_manifest(
        &self,
        repo: &str,
        reference: &str,
        media_type: &str,
        body: &[u8],
    ) -> Response {
        let resp = self.put_manifest(repo, reference, media_type, body).await;
        let resp = expect_status(resp, 201).await;
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
        let resp = expect_status(resp, 200).await;
        let media_type = must_header(&resp, "content-type");
        let digest = must_header(&resp, "docker-content-digest");
        let length = must_header(&resp, "content-length");
        let body = resp.bytes().await.expect("manifest body").to_vec();
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
            .as_u16()
    }

    /// Every tag of a repository, `None` if it is unknown (404 NAME_UNKNOWN).
    pub async fn tags(&self, repo: &str) -> Option<Vec<String>> {
        let resp = self.get(&format!("/v2/{repo}/tags/list")).await;
        if resp.status() == StatusCode::NOT_FOUND {
            expect_error(resp, 404, "NAME_UNKNOWN").await;
            return None;
        }
        let resp = expect_status(resp, 200).await;
        let v: Value = resp.json().await.expect("tags JSON");
        assert_eq!(v["name"].as_str(), Some(repo));
        Some(string_list(&v["tags"]))
    }

    pub async fn catalog(&self) -> Vec<String> {
        let resp = expect_status(self.get("/v2/_catalog").await, 200).await;
        let v: Value = resp.json().await.expect("catalog JSON");
        string_list(&v["repositories"])
    }
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

/// Appends `key=value` to a URL that may already have a query.
pub fn with_query(url: &str, key: &str, value: &str) -> String {
    let sep = if url.contains('?') { '&' } else { '?' };
    format!("{url}{sep}{key}={value}")
}
