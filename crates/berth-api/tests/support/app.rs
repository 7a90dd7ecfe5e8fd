//! [`TestApp`]: berth's application on the embedded backends in a
//! directory, with an owner identity whose password the test knows.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use axum::Router;
use berth_api::app::{AppSettings, Services, Stores};
use berth_api::AppState;
use berth_metadata::SqliteStore;
use berth_storage::FilesystemStore;
use serde_json::json;

/// The `Host` every request names unless it says otherwise (the login
/// server in challenges and token realms).
pub const HOST: &str = "registry.test:5000";

/// The peer address of requests that do not name one.
pub const DEFAULT_PEER: &str = "127.0.0.1:40000";

/// The owner's password in every test application.
pub const OWNER_PASSWORD: &str = "test-owner-password";

/// The application and how a test talks to it. Cheap to clone: clones
/// share the application and differ only in the credentials they send.
#[derive(Clone)]
pub struct TestApp {
    pub(crate) shared: Arc<Shared>,
    /// `Authorization` sent with every request that sets none.
    pub(crate) authorization: Option<String>,
}

pub(crate) struct Shared {
    pub(crate) router: Router,
    pub(crate) state: AppState,
    data_dir: PathBuf,
}

impl TestApp {
    /// The application with `berth serve`'s default settings on a data
    /// directory laid out as `berth serve` lays it out (`blobs/`,
    /// `berth.db`). Requests are anonymous; see [`TestApp::as_owner`].
    pub async fn embedded(data_dir: &Path) -> TestApp {
        Self::embedded_with(data_dir, AppSettings::default()).await
    }

    /// [`TestApp::embedded`] with other settings (limits, subnets, trusted
    /// proxies, collector grace...).
    pub async fn embedded_with(data_dir: &Path, settings: AppSettings) -> TestApp {
        std::fs::create_dir_all(data_dir).expect("data directory");
        let blobs = FilesystemStore::open(data_dir.join("blobs")).expect("blob store");
        let url = format!("sqlite://{}", data_dir.join("berth.db").display());
        let sqlite = SqliteStore::connect(&url).await.expect("SQLite metadata");
        let stores = Stores::embedded(blobs, sqlite);
        let services = Services::open(stores, settings)
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
        TestApp {
            shared: Arc::new(Shared {
                router: berth_api::router(state.clone()),
                state,
                data_dir: data_dir.to_path_buf(),
            }),
            authorization: None,
        }
    }

    /// The same application, sending the owner's Basic credentials.
    pub fn as_owner(&self) -> TestApp {
        self.with_authorization(Some(basic_authorization("owner", OWNER_PASSWORD)))
    }

    /// The same application, sending no credentials.
    pub fn anonymous(&self) -> TestApp {
        self.with_authorization(None)
    }

    /// The same application, sending `authorization` (a whole header value).
    pub fn with_authorization(&self, authorization: Option<String>) -> TestApp {
        TestApp {
            shared: self.shared.clone(),
            authorization,
        }
    }

    pub fn data_dir(&self) -> &Path {
        &self.shared.data_dir
    }

    /// The state the router serves: the registry, the authentication
    /// service, the network policy, for steps no HTTP request takes (a
    /// collector run, say).
    pub fn state(&self) -> &AppState {
        &self.shared.state
    }

    pub fn owner_password(&self) -> &str {
        OWNER_PASSWORD
    }

    /// `Authorization` value with the owner's Basic credentials.
    pub fn owner_authorization(&self) -> String {
        basic_authorization("owner", OWNER_PASSWORD)
    }

    pub fn default_peer() -> SocketAddr {
        DEFAULT_PEER.parse().expect("peer address")
    }
}

/// `Basic base64(user:password)`.
pub fn basic_authorization(user: &str, password: &str) -> String {
    use base64::Engine as _;
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
    )
}

/// A temporary directory under `/tmp` (the path-escape checks search
/// there).
pub fn tempdir(prefix: &str) -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix(prefix)
        .tempdir_in("/tmp")
        .expect("tempdir under /tmp")
}

/// An application served on a loopback port, for a test that needs a real
/// registry at an address (an upstream of the artifact cache). Stopping
/// it (or dropping it) closes the listener and every open connection, as
/// a registry that went down does.
pub struct Served {
    pub addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl Served {
    /// `http://127.0.0.1:PORT`
    pub fn base(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// `127.0.0.1:PORT`
    pub fn host(&self) -> String {
        self.addr.to_string()
    }

    pub fn stop(&self) {
        self.task.abort();
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl TestApp {
    /// Serves the application on `127.0.0.1:0`; `wrap` may put a shim in
    /// front of it (a fault injector, a request counter).
    pub async fn serve(&self, wrap: impl FnOnce(Router) -> Router) -> Served {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind a loopback port");
        let addr = listener.local_addr().expect("local address");
        let router = wrap(self.shared.router.clone())
            .layer(axum::Extension(berth_network::Endpoint::Public));
        let task = tokio::spawn(async move {
            // Connections live in this set: aborting the task ends them.
            let mut connections = tokio::task::JoinSet::new();
            loop {
                let Ok((stream, peer)) = listener.accept().await else {
                    continue;
                };
                let service = router
                    .clone()
                    .layer(axum::Extension(axum::extract::ConnectInfo(peer)));
                connections.spawn(async move {
                    let service = hyper_util::service::TowerToHyperService::new(service);
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                        .await;
                });
                while connections.try_join_next().is_some() {}
            }
        });
        Served { addr, task }
    }
}
