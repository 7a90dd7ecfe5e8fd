//! The application with the portal, on the embedded backends in a temporary
//! directory, driven in-process (`tower::ServiceExt::oneshot`) by a
//! [`Browser`] that keeps its cookie as a browser does. The portal's clock
//! is a number the test moves.

// Each test binary uses only part of this module.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

use axum::body::Body;
use axum::Router;
use base64::Engine as _;
use berth_api::app::{AppSettings, Services, Stores};
use berth_api::AppState;
use berth_metadata::{MetadataStore, SqliteStore};
use berth_storage::FilesystemStore;
use http::{header, HeaderMap, Request, StatusCode};
use tower::ServiceExt as _;

pub const OWNER_PASSWORD: &str = "portal-test-owner-password";
pub const HOST: &str = "registry.test:5000";

pub struct TestPortal {
    pub router: Router,
    pub state: AppState,
    clock: Arc<AtomicI64>,
    _dir: tempfile::TempDir,
}

impl TestPortal {
    pub async fn open() -> TestPortal {
        Self::open_with(|m| m).await
    }

    /// With the metadata store wrapped (a call counter).
    pub async fn open_with(
        wrap: impl FnOnce(Arc<dyn MetadataStore>) -> Arc<dyn MetadataStore>,
    ) -> TestPortal {
        let dir = tempfile::Builder::new()
            .prefix("berth-portal-")
            .tempdir_in("/tmp")
            .expect("tempdir");
        let data: &Path = dir.path();
        let blobs = FilesystemStore::open(data.join("blobs")).expect("blob store");
        let url = format!("sqlite://{}", data.join("berth.db").display());
        let sqlite = SqliteStore::connect(&url).await.expect("SQLite metadata");
        let mut stores = Stores::embedded(blobs, sqlite);
        stores.metadata = wrap(stores.metadata);
        let services = Services::open(stores, AppSettings::default())
            .await
            .expect("assemble the application");
        services
            .auth
            .bootstrap_owner(Some(OWNER_PASSWORD))
            .await
            .expect("owner identity");
        let endpoints = berth_manage::registry::Endpoints::public(HOST);
        let state = services
            .into_state(endpoints, None)
            .await
            .expect("application state");
        let clock = Arc::new(AtomicI64::new(berth_util::now()));
        let tick = clock.clone();
        let portal = berth_portal::Portal::open(&state, berth_portal::PortalSettings::default())
            .await
            .expect("portal")
            .with_clock(move || tick.load(Ordering::SeqCst));
        TestPortal {
            router: berth_api::router_with(state.clone(), portal.routes()),
            state,
            clock,
            _dir: dir,
        }
    }

    /// Moves the portal's clock on.
    pub fn advance(&self, seconds: i64) {
        self.clock.fetch_add(seconds, Ordering::SeqCst);
    }

    pub fn browser(&self) -> Browser<'_> {
        Browser {
            portal: self,
            cookie: None,
            origin: None,
        }
    }

    /// A request as a client at 127.0.0.1 sends it.
    pub async fn send(&self, mut request: Request<Body>) -> Page {
        let peer: SocketAddr = "127.0.0.1:40000".parse().expect("peer");
        request
            .extensions_mut()
            .insert(axum::extract::ConnectInfo(peer));
        request
            .extensions_mut()
            .insert(berth_network::Endpoint::Public);
        if !request.headers().contains_key(header::HOST) {
            request
                .headers_mut()
                .insert(header::HOST, HOST.parse().expect("host"));
        }
        let response = self
            .router
            .clone()
            .oneshot(request)
            .await
            .expect("infallible");
        let status = response.status();
        let headers = response.headers().clone();
        let body = axum::body::to_bytes(response.into_body(), 64 << 20)
            .await
            .expect("body");
        Page {
            status,
            headers,
            body: String::from_utf8_lossy(&body).into_owned(),
        }
    }

    /// A management or registry API request with the owner's Basic
    /// credentials.
    pub async fn as_owner(
        &self,
        method: &str,
        uri: &str,
        content_type: &str,
        body: Vec<u8>,
    ) -> Page {
        let request = Request::builder()
            .method(method)
            .uri(uri)
            .header(header::AUTHORIZATION, basic("owner", OWNER_PASSWORD))
            .header(header::CONTENT_TYPE, content_type)
            .body(Body::from(body))
            .expect("request");
        self.send(request).await
    }

    /// Pushes a blob; returns its digest.
    pub async fn push_blob(&self, repository: &str, bytes: &[u8]) -> String {
        let digest = sha256(bytes);
        let page = self
            .as_owner(
                "POST",
                &format!("/v2/{repository}/blobs/uploads/?digest={digest}"),
                "application/octet-stream",
                bytes.to_vec(),
            )
            .await;
        assert_eq!(page.status, StatusCode::CREATED, "{}", page.body);
        digest
    }

    /// Pushes an image with `layers` of the given sizes under `tag`;
    /// returns (manifest digest, manifest bytes).
    pub async fn push_image(
        &self,
        repository: &str,
        tag: &str,
        layers: &[usize],
        platform: (&str, &str),
    ) -> (String, Vec<u8>) {
        let config = serde_json::json!({"architecture": platform.1, "os": platform.0, "rootfs": {"type": "layers", "diff_ids": []}});
        let config = serde_json::to_vec(&config).expect("json");
        let config_digest = self.push_blob(repository, &config).await;
        let mut descriptors = Vec::new();
        for (i, size) in layers.iter().enumerate() {
            let bytes: Vec<u8> = (0..*size).map(|b| (b * 7 + i) as u8).collect();
            let digest = self.push_blob(repository, &bytes).await;
            descriptors.push(serde_json::json!({
                "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                "digest": digest, "size": size
            }));
        }
        let manifest = serde_json::to_vec(&serde_json::json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config_digest, "size": config.len()},
            "layers": descriptors,
        }))
        .expect("json");
        self.put_manifest(
            repository,
            tag,
            "application/vnd.oci.image.manifest.v1+json",
            &manifest,
        )
        .await
    }

    pub async fn put_manifest(
        &self,
        repository: &str,
        reference: &str,
        media_type: &str,
        bytes: &[u8],
    ) -> (String, Vec<u8>) {
        let page = self
            .as_owner(
                "PUT",
                &format!("/v2/{repository}/manifests/{reference}"),
                media_type,
                bytes.to_vec(),
            )
            .await;
        assert_eq!(page.status, StatusCode::CREATED, "{}", page.body);
        (sha256(bytes), bytes.to_vec())
    }
}

pub fn basic(user: &str, password: &str) -> String {
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
    )
}

pub fn sha256(bytes: &[u8]) -> String {
    format!(
        "sha256:{}",
        hex::encode(ring::digest::digest(&ring::digest::SHA256, bytes).as_ref())
    )
}

/// An answer: status, headers, body as text.
#[derive(Debug, Clone)]
pub struct Page {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: String,
}

impl Page {
    pub fn location(&self) -> &str {
        self.headers
            .get(header::LOCATION)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }

    /// The CSRF token of the page's forms.
    pub fn csrf(&self) -> String {
        let marker = "name=\"csrf\" value=\"";
        let start = self.body.find(marker).expect("a form with a CSRF token") + marker.len();
        let end = self.body[start..].find('"').expect("end of the token");
        self.body[start..start + end].to_string()
    }

    pub fn has(&self, text: &str) -> bool {
        self.body.contains(text)
    }
}

/// Keeps the session cookie between requests, as a browser does.
pub struct Browser<'p> {
    portal: &'p TestPortal,
    pub cookie: Option<String>,
    /// `Origin` sent with posts (a browser always sends one).
    pub origin: Option<String>,
}

impl Browser<'_> {
    fn keep_cookie(&mut self, page: &Page) {
        for value in page.headers.get_all(header::SET_COOKIE) {
            let value = value.to_str().unwrap_or("");
            let pair = value.split(';').next().unwrap_or("");
            if let Some(v) = pair.strip_prefix("berth_session=") {
                self.cookie = (!v.is_empty()).then(|| v.to_string());
            }
        }
    }

    pub async fn get(&mut self, uri: &str) -> Page {
        let mut request = Request::builder().method("GET").uri(uri);
        if let Some(c) = &self.cookie {
            request = request.header(header::COOKIE, format!("berth_session={c}"));
        }
        let page = self
            .portal
            .send(request.body(Body::empty()).expect("request"))
            .await;
        self.keep_cookie(&page);
        page
    }

    pub async fn post(&mut self, uri: &str, form: &[(&str, &str)]) -> Page {
        let mut request = Request::builder()
            .method("POST")
            .uri(uri)
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .header(
                header::ORIGIN,
                self.origin
                    .clone()
                    .unwrap_or_else(|| format!("http://{HOST}")),
            );
        if let Some(c) = &self.cookie {
            request = request.header(header::COOKIE, format!("berth_session={c}"));
        }
        let body = serde_urlencoded::to_string(form).expect("form");
        let page = self
            .portal
            .send(request.body(Body::from(body)).expect("request"))
            .await;
        self.keep_cookie(&page);
        page
    }

    pub async fn sign_in(&mut self, login: &str, password: &str) -> Page {
        self.post(
            "/login",
            &[("login", login), ("password", password), ("next", "/")],
        )
        .await
    }
}
