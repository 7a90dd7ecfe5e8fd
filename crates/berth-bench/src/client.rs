//! The distribution-API calls the workloads make, over reqwest (HTTP/1.1,
//! no proxy, no auth). The hot small-request loop of `manifest-get` uses
//! hyper directly instead (see `workloads::manifest_get`).
//!
//! An `https://` URL is spoken over rustls, trusting the system's CAs,
//! `SSL_CERT_FILE` and `--ca-file` (a self-signed certificate named there is
//! trusted as itself, as berth's own client commands do). An `http://` URL
//! gets no TLS layer at all.

use std::ops::Range;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use bytes::Bytes;
use reqwest::header::{
    HeaderMap, HeaderValue, ACCEPT, AUTHORIZATION, CONTENT_LENGTH, CONTENT_RANGE, CONTENT_TYPE,
    LOCATION, RANGE,
};
use reqwest::{Body, Response, StatusCode, Url};
use rustls::pki_types::ServerName;
use serde::{Deserialize, Serialize};

use crate::data::BlobSpec;
use crate::stats::Recorder;

pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
pub const OCI_LAYER: &str = "application/vnd.oci.image.layer.v1.tar";
pub const MANIFEST_ACCEPT: &str =
    "application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json";
const OCTET_STREAM: &str = "application/octet-stream";

/// Longest any one request may take (a 1 GiB upload to a slow server included).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(900);

/// What is at the URL.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Mode {
    /// A registry speaking the distribution API.
    Registry,
    /// A static file server holding the same bytes at the same paths
    /// (the HTTP ceiling); only GET workloads run.
    Static,
}

/// A login and its password, sent as HTTP Basic on every request.
#[derive(Clone)]
pub struct Credentials {
    pub user: String,
    pub password: String,
}

impl Credentials {
    /// From `--user` with `--password` or `--password-file` (the file
    /// trimmed); none without `--user`.
    pub fn from_flags(
        user: Option<String>,
        password: Option<String>,
        password_file: Option<std::path::PathBuf>,
    ) -> anyhow::Result<Option<Credentials>> {
        let Some(user) = user else {
            return Ok(None);
        };
        let password = match (password, password_file) {
            (Some(p), _) => p,
            (None, Some(file)) => std::fs::read_to_string(&file)
                .with_context(|| format!("cannot read {}", file.display()))?
                .trim()
                .to_string(),
            (None, None) => bail!("--user needs --password or --password-file"),
        };
        Ok(Some(Credentials { user, password }))
    }
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("user", &self.user)
            .finish_non_exhaustive()
    }
}

#[derive(Clone)]
pub struct Client {
    http: reqwest::Client,
    base: Url,
    authorization: Option<HeaderValue>,
    /// The TLS configuration of an `https://` URL (none for `http://`).
    tls: Option<Arc<rustls::ClientConfig>>,
    pub mode: Mode,
}

impl Client {
    /// A client for `base`; an `https://` URL trusts the system's CAs and
    /// `SSL_CERT_FILE`.
    pub fn new(
        base: &str,
        mode: Mode,
        connections: usize,
        credentials: Option<&Credentials>,
    ) -> anyhow::Result<Self> {
        Self::with_ca_file(base, mode, connections, credentials, None)
    }

    /// The same, an `https://` URL also trusting the PEM certificates of
    /// `ca_file` (ignored for `http://`).
    pub fn with_ca_file(
        base: &str,
        mode: Mode,
        connections: usize,
        credentials: Option<&Credentials>,
        ca_file: Option<&Path>,
    ) -> anyhow::Result<Self> {
        let mut base = Url::parse(base).with_context(|| format!("'{base}' is not a URL"))?;
        let tls = match base.scheme() {
            "http" => None,
            "https" => Some(Arc::new(tls_config(ca_file)?)),
            _ => bail!("only http:// and https:// URLs are supported, not {base}"),
        };
        if !base.path().ends_with('/') {
            let path = format!("{}/", base.path());
            base.set_path(&path);
        }
        let authorization = credentials
            .map(|c| basic_authorization(&base, c))
            .transpose()?;
        let mut headers = HeaderMap::new();
        if let Some(value) = &authorization {
            headers.insert(AUTHORIZATION, value.clone());
        }
        let mut builder = reqwest::Client::builder()
            .default_headers(headers)
            .no_proxy()
            .http1_only()
            .tcp_nodelay(true)
            .pool_max_idle_per_host(connections.max(1))
            .connect_timeout(Duration::from_secs(10))
            .timeout(REQUEST_TIMEOUT);
        if let Some(config) = &tls {
            builder = builder.use_preconfigured_tls(config.as_ref().clone());
        }
        let http = builder.build().context("cannot build the HTTP client")?;
        Ok(Client {
            http,
            base,
            authorization,
            tls,
            mode,
        })
    }

    /// The TLS configuration for raw connections, if the URL is `https://`.
    pub fn tls(&self) -> Option<&Arc<rustls::ClientConfig>> {
        self.tls.as_ref()
    }

    /// The name the server's certificate must hold: the URL's host.
    pub fn server_name(&self) -> anyhow::Result<ServerName<'static>> {
        let host = self.base.host_str().context("the URL has no host")?;
        let bare = host.trim_start_matches('[').trim_end_matches(']');
        Ok(match bare.parse::<std::net::IpAddr>() {
            Ok(ip) => ServerName::IpAddress(ip.into()),
            Err(_) => ServerName::try_from(host.to_string())
                .with_context(|| format!("'{host}' is not a TLS server name"))?,
        })
    }

    /// The `Authorization` header every request carries, if any.
    pub fn authorization(&self) -> Option<&HeaderValue> {
        self.authorization.as_ref()
    }

    /// A bearer token for pulling `repo`, from the registry's token service
    /// (Docker token spec), obtained with the client's credentials.
    pub async fn bearer_token(&self, repo: &str) -> anyhow::Result<HeaderValue> {
        let url = self
            .base
            .join("oauth2/token")
            .context("token service URL")?;
        let mut request = self.http.get(url).query(&[
            ("service", self.authority()?),
            ("scope", format!("repository:{repo}:pull")),
        ]);
        if let Some(value) = &self.authorization {
            request = request.header(AUTHORIZATION, value.clone());
        }
        let response = request.send().await.context("token request")?;
        let status = response.status();
        let body: serde_json::Value = response.json().await.context("token response")?;
        anyhow::ensure!(
            status.is_success(),
            "token service answered {status}: {body}"
        );
        let token = body["token"]
            .as_str()
            .context("the token response has no token")?;
        HeaderValue::from_str(&format!("Bearer {token}")).context("token header")
    }

    pub fn base(&self) -> &Url {
        &self.base
    }

    /// `host:port` to open raw connections to.
    pub fn authority(&self) -> anyhow::Result<String> {
        let host = self.base.host_str().context("the URL has no host")?;
        let port = self
            .base
            .port_or_known_default()
            .context("the URL has no port")?;
        Ok(if host.contains(':') && !host.starts_with('[') {
            format!("[{host}]:{port}")
        } else {
            format!("{host}:{port}")
        })
    }

    pub fn url(&self, path: &str) -> anyhow::Result<Url> {
        self.base
            .join(path.trim_start_matches('/'))
            .with_context(|| format!("bad path {path}"))
    }

    pub fn blob_url(&self, repo: &str, digest: &str) -> anyhow::Result<Url> {
        self.url(&format!("v2/{repo}/blobs/{digest}"))
    }

    pub fn manifest_url(&self, repo: &str, reference: &str) -> anyhow::Result<Url> {
        self.url(&format!("v2/{repo}/manifests/{reference}"))
    }

    /// `GET /v2/` must answer 200 (a registry needing auth is not supported).
    pub async fn check(&self) -> anyhow::Result<()> {
        if self.mode == Mode::Static {
            return Ok(());
        }
        let url = self.url("v2/")?;
        let response = self
            .http
            .get(url.clone())
            .send()
            .await
            .with_context(|| format!("cannot reach {url}"))?;
        expect(response, StatusCode::OK, "GET /v2/").await?;
        Ok(())
    }

    pub async fn blob_exists(&self, repo: &str, digest: &str) -> anyhow::Result<bool> {
        let response = self.http.head(self.blob_url(repo, digest)?).send().await?;
        match response.status() {
            StatusCode::OK => Ok(true),
            StatusCode::NOT_FOUND => Ok(false),
            other => bail!("HEAD blob {digest}: unexpected status {other}"),
        }
    }

    /// `POST /v2/<repo>/blobs/uploads/`; returns the session's URL.
    pub async fn start_upload(&self, repo: &str) -> anyhow::Result<Url> {
        Ok(self.open_upload(repo).await?.0)
    }

    /// POST to open an upload session: its Location and the registry's
    /// `OCI-Chunk-Min-Length`, if it sent one.
    async fn open_upload(&self, repo: &str) -> anyhow::Result<(Url, Option<u64>)> {
        let response = self
            .http
            .post(self.url(&format!("v2/{repo}/blobs/uploads/"))?)
            .header(CONTENT_LENGTH, "0")
            .send()
            .await
            .context("POST upload")?;
        let response = expect(response, StatusCode::ACCEPTED, "POST upload").await?;
        let min_chunk = response
            .headers()
            .get("oci-chunk-min-length")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse().ok());
        Ok((self.location(&response)?, min_chunk))
    }

    /// Monolithic push: POST, then one PUT with the whole blob streamed.
    pub async fn push_stream(
        &self,
        repo: &str,
        spec: BlobSpec,
        digest: &str,
    ) -> anyhow::Result<()> {
        let url = with_digest(self.start_upload(repo).await?, digest);
        let response = self
            .http
            .put(url)
            .header(CONTENT_TYPE, OCTET_STREAM)
            .header(CONTENT_LENGTH, spec.size)
            .body(Body::wrap_stream(spec.stream(0..spec.size)))
            .send()
            .await
            .context("PUT blob")?;
        expect(response, StatusCode::CREATED, "PUT blob").await?;
        Ok(())
    }

    /// Monolithic push of bytes in memory.
    pub async fn push_bytes(&self, repo: &str, bytes: Bytes, digest: &str) -> anyhow::Result<()> {
        let url = with_digest(self.start_upload(repo).await?, digest);
        let response = self
            .http
            .put(url)
            .header(CONTENT_TYPE, OCTET_STREAM)
            .header(CONTENT_LENGTH, bytes.len())
            .body(bytes)
            .send()
            .await
            .context("PUT blob")?;
        expect(response, StatusCode::CREATED, "PUT blob").await?;
        Ok(())
    }

    /// Chunked push: POST, a PATCH per `chunk` bytes (each following the
    /// previous response's Location), then a PUT with no body. Chunks are
    /// never smaller than the registry's `OCI-Chunk-Min-Length`. PATCH
    /// latencies go to `patches`.
    pub async fn push_chunked(
        &self,
        repo: &str,
        spec: BlobSpec,
        digest: &str,
        chunk: u64,
        patches: &mut Recorder,
    ) -> anyhow::Result<()> {
        let (mut url, min_chunk) = self.open_upload(repo).await?;
        let chunk = chunk.max(min_chunk.unwrap_or(1)).max(1);
        let mut offset = 0;
        while offset < spec.size {
            let end = (offset + chunk).min(spec.size);
            let start = Instant::now();
            let response = self
                .http
                .patch(url.clone())
                .header(CONTENT_TYPE, OCTET_STREAM)
                .header(CONTENT_LENGTH, end - offset)
                .header(CONTENT_RANGE, format!("{offset}-{}", end - 1))
                .body(Body::wrap_stream(spec.stream(offset..end)))
                .send()
                .await
                .with_context(|| format!("PATCH at {offset}"))?;
            let response = expect(response, StatusCode::ACCEPTED, "PATCH upload").await?;
            patches.ok(start.elapsed(), end - offset);
            url = self.location(&response)?;
            offset = end;
        }
        let response = self
            .http
            .put(with_digest(url, digest))
            .header(CONTENT_LENGTH, "0")
            .send()
            .await
            .context("PUT to complete the upload")?;
        expect(response, StatusCode::CREATED, "PUT to complete the upload").await?;
        Ok(())
    }

    pub async fn put_manifest(
        &self,
        repo: &str,
        reference: &str,
        media_type: &str,
        body: Bytes,
    ) -> anyhow::Result<()> {
        let response = self
            .http
            .put(self.manifest_url(repo, reference)?)
            .header(CONTENT_TYPE, media_type)
            .body(body)
            .send()
            .await
            .with_context(|| format!("PUT manifest {reference}"))?;
        expect(response, StatusCode::CREATED, "PUT manifest").await?;
        Ok(())
    }

    /// GET of a manifest's bytes.
    pub async fn get_manifest(&self, repo: &str, reference: &str) -> anyhow::Result<Bytes> {
        let response = self
            .http
            .get(self.manifest_url(repo, reference)?)
            .header(ACCEPT, MANIFEST_ACCEPT)
            .send()
            .await?;
        let response = expect(response, StatusCode::OK, "GET manifest").await?;
        Ok(response.bytes().await?)
    }

    /// GET of a URL, optionally a byte range; the status is checked (200 or
    /// 206), the body left to the caller.
    pub async fn get(&self, url: Url, range: Option<Range<u64>>) -> anyhow::Result<Response> {
        let mut request = self.http.get(url);
        let status = match &range {
            Some(r) => {
                request = request.header(RANGE, format!("bytes={}-{}", r.start, r.end - 1));
                StatusCode::PARTIAL_CONTENT
            }
            None => StatusCode::OK,
        };
        let response = request.send().await?;
        expect(response, status, "GET").await
    }

    /// A GET of a JSON document (a tags page), with its `Link: rel="next"`
    /// resolved against the base URL.
    pub async fn get_page(&self, url: Url) -> anyhow::Result<(Bytes, Option<Url>)> {
        let response = self.http.get(url).send().await?;
        let response = expect(response, StatusCode::OK, "GET tags page").await?;
        let next = match response.headers().get(reqwest::header::LINK) {
            Some(value) => {
                let value = value.to_str().context("Link header is not text")?;
                next_link(value)
                    .map(|target| self.base.join(target))
                    .transpose()
                    .with_context(|| format!("bad Link header {value}"))?
            }
            None => None,
        };
        Ok((response.bytes().await?, next))
    }

    fn location(&self, response: &Response) -> anyhow::Result<Url> {
        let value = response
            .headers()
            .get(LOCATION)
            .context("the response has no Location")?
            .to_str()
            .context("Location is not text")?;
        self.base
            .join(value)
            .with_context(|| format!("bad Location {value}"))
    }
}

/// rustls trusting the system's CAs, `SSL_CERT_FILE` and `ca_file`,
/// offering HTTP/1.1 only (the workloads speak HTTP/1.1 over TLS as over
/// plain TCP).
fn tls_config(ca_file: Option<&Path>) -> anyhow::Result<rustls::ClientConfig> {
    let files = berth_client::tls::ca_files(ca_file);
    let mut config =
        berth_client::tls::client_config(&files).context("cannot set up the TLS client")?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

/// `Basic <base64(user:password)>`, as reqwest encodes it.
fn basic_authorization(base: &Url, c: &Credentials) -> anyhow::Result<HeaderValue> {
    let request = reqwest::Client::new()
        .get(base.clone())
        .basic_auth(&c.user, Some(&c.password))
        .build()?;
    let mut value = request
        .headers()
        .get(AUTHORIZATION)
        .cloned()
        .context("reqwest set no Authorization header")?;
    value.set_sensitive(true);
    Ok(value)
}

fn with_digest(mut url: Url, digest: &str) -> Url {
    url.query_pairs_mut().append_pair("digest", digest);
    url
}

/// The target of the `rel="next"` link of a `Link` header.
fn next_link(header: &str) -> Option<&str> {
    header.split(',').find_map(|link| {
        let (target, params) = link.trim().split_once(';')?;
        let is_next = params
            .split(';')
            .any(|p| p.trim().replace(' ', "") == "rel=\"next\"" || p.trim() == "rel=next");
        is_next.then(|| target.trim().trim_start_matches('<').trim_end_matches('>'))
    })
}

/// Checks the status; on a mismatch the error carries the start of the body.
async fn expect(response: Response, status: StatusCode, what: &str) -> anyhow::Result<Response> {
    if response.status() == status {
        return Ok(response);
    }
    let got = response.status();
    let body = response.text().await.unwrap_or_default();
    let body: String = body.chars().take(300).collect();
    bail!("{what}: expected {status}, got {got}: {body}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_link_headers() {
        assert_eq!(
            next_link("</v2/a/tags/list?n=100&last=t1>; rel=\"next\""),
            Some("/v2/a/tags/list?n=100&last=t1")
        );
        assert_eq!(next_link("<x>; rel=\"prev\""), None);
        assert_eq!(next_link("<a>; rel=\"prev\", <b>; rel=\"next\""), Some("b"));
    }

    #[test]
    fn builds_urls() {
        let c = Client::new("http://127.0.0.1:5000", Mode::Registry, 1, None).expect("client");
        assert!(c.authorization().is_none());
        assert_eq!(c.authority().expect("authority"), "127.0.0.1:5000");
        assert_eq!(
            c.blob_url("bench/blob", "sha256:ab").expect("url").as_str(),
            "http://127.0.0.1:5000/v2/bench/blob/blobs/sha256:ab"
        );
        let u = with_digest(
            c.url("/v2/x/blobs/uploads/1?_state=a").expect("url"),
            "sha256:ab",
        );
        assert_eq!(u.query(), Some("_state=a&digest=sha256%3Aab"));
        assert!(c.tls().is_none());
        assert!(Client::new("ftp://x", Mode::Registry, 1, None).is_err());
        let tls = Client::new("https://127.0.0.1:5443", Mode::Registry, 1, None).expect("client");
        assert!(tls.tls().is_some());
        assert_eq!(tls.authority().expect("authority"), "127.0.0.1:5443");
        assert_eq!(
            tls.server_name().expect("name"),
            ServerName::try_from("127.0.0.1").expect("ip")
        );
        let named = Client::new("https://registry.example", Mode::Registry, 1, None).expect("c");
        assert_eq!(
            named.authority().expect("authority"),
            "registry.example:443"
        );
        let missing = Path::new("/nonexistent/ca.pem");
        assert!(Client::with_ca_file("https://x", Mode::Registry, 1, None, Some(missing)).is_err());
        assert!(Client::with_ca_file("http://x", Mode::Registry, 1, None, Some(missing)).is_ok());
        let creds = Credentials {
            user: "owner".into(),
            password: "pw".into(),
        };
        let c = Client::new("http://h:1", Mode::Registry, 1, Some(&creds)).expect("client");
        assert_eq!(
            c.authorization().expect("auth").to_str().expect("text"),
            "Basic b3duZXI6cHc="
        );
        assert!(!format!("{creds:?}").contains("pw"));
    }
}
