//! Assembles the application from opened stores and settings: the one
//! wiring that `berth serve` and the in-process test harness share, so a
//! test drives exactly the state and middleware stack the server runs.
//!
//! Two steps, because `berth serve` binds its listeners in between (the
//! state names their addresses): [`Services::open`] builds the registry,
//! the authentication service and the network policy with the stored rules
//! loaded; [`Services::into_state`] starts the audit writer and the
//! data-endpoint signing, and yields the [`AppState`] for [`crate::router`].

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use berth_auth::{AuthConfig, AuthService};
use berth_metadata::{AuthStore, ContentLocks, EventStore, MetadataError, MetadataStore};
use berth_network::Subnet;
use berth_registry::{Registry, RegistryConfig};
use berth_storage::BlobStore;
use ipnet::IpNet;

use crate::audit::EventSink;
use crate::data::DataEndpoints;
use crate::network::NetworkPolicy;
use crate::AppState;

/// The opened backends the application runs on.
#[derive(Clone)]
pub struct Stores {
    pub blobs: Arc<dyn BlobStore>,
    pub metadata: Arc<dyn MetadataStore>,
    pub auth: Arc<dyn AuthStore>,
    pub events: Arc<dyn EventStore>,
    /// Fill locks of the artifact cache, shared by every node.
    pub locks: Arc<dyn ContentLocks>,
}

impl Stores {
    /// The embedded backends: blobs on the filesystem, everything else in
    /// one SQLite database.
    pub fn embedded(
        blobs: berth_storage::FilesystemStore,
        sqlite: berth_metadata::SqliteStore,
    ) -> Stores {
        Stores {
            blobs: Arc::new(blobs),
            metadata: Arc::new(sqlite.clone()),
            auth: Arc::new(sqlite.clone()),
            events: Arc::new(sqlite.clone()),
            locks: Arc::new(sqlite),
        }
    }
}

/// What configuration decides about the application.
#[derive(Debug, Clone)]
pub struct AppSettings {
    pub registry: RegistryConfig,
    pub auth: AuthConfig,
    /// An upload body that sends nothing for this long is cut off.
    pub body_idle_timeout: Duration,
    /// Named subnets the network rules may refer to.
    pub subnets: Vec<Subnet>,
    /// Proxies whose `X-Forwarded-For` is believed.
    pub trusted_proxies: Vec<IpNet>,
    /// Data endpoint hosts (`host[:port]`); the first is where redirects go.
    pub data_hosts: Vec<String>,
    /// How long a signed data-endpoint URL is valid.
    pub data_url_ttl: Duration,
    /// Where audit events are also appended as JSON lines.
    pub audit_jsonl: Option<PathBuf>,
    /// One JSON line per request there; none when `None`.
    pub access_log: Option<crate::access_log::AccessLogTarget>,
}

impl Default for AppSettings {
    /// The defaults of `berth serve` without a configuration file.
    fn default() -> Self {
        AppSettings {
            registry: RegistryConfig::default(),
            auth: AuthConfig::default(),
            body_idle_timeout: Duration::from_secs(60),
            subnets: Vec::new(),
            trusted_proxies: Vec::new(),
            data_hosts: Vec::new(),
            data_url_ttl: Duration::from_secs(300),
            audit_jsonl: None,
            access_log: None,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum AssemblyError {
    #[error("cannot initialise authentication: {0}")]
    Auth(#[from] berth_auth::AuthError),
    #[error("cannot load network rules: {0}")]
    NetworkRules(String),
    #[error("cannot set up a shared key: {0}")]
    SharedKey(#[from] MetadataError),
    #[error("the shared key '{0}' vanished right after it was stored")]
    SharedKeyVanished(String),
    #[error("cannot set up the artifact cache's upstream client: {0}")]
    Cache(String),
    #[error("cannot open the access log {target}: {source}")]
    AccessLog {
        target: String,
        source: std::io::Error,
    },
}

/// The registry, authentication and network policy, ready to serve.
pub struct Services {
    pub registry: Arc<Registry>,
    pub auth: Arc<AuthService>,
    pub network: Arc<NetworkPolicy>,
    pub stores: Stores,
    settings: AppSettings,
}

impl Services {
    pub async fn open(stores: Stores, settings: AppSettings) -> Result<Services, AssemblyError> {
        let registry = Arc::new(Registry::new(
            stores.blobs.clone(),
            stores.metadata.clone(),
            settings.registry.clone(),
        ));
        let auth = Arc::new(AuthService::open(stores.auth.clone(), settings.auth.clone()).await?);
        let network = Arc::new(NetworkPolicy::new(
            settings.subnets.clone(),
            settings.trusted_proxies.clone(),
        ));
        network
            .reload(&auth)
            .await
            .map_err(|e| AssemblyError::NetworkRules(e.message))?;
        Ok(Services {
            registry,
            auth,
            network,
            stores,
            settings,
        })
    }

    /// The state the router serves. `endpoints` describes the listeners
    /// (for `berth show-endpoints`); `metrics` renders `/metrics`.
    pub async fn into_state(
        self,
        endpoints: berth_manage::registry::Endpoints,
        metrics: Option<metrics_exporter_prometheus::PrometheusHandle>,
    ) -> Result<AppState, AssemblyError> {
        let event_store = self.stores.events.clone();
        let events = EventSink::start(event_store.clone(), self.settings.audit_jsonl.clone());
        let data = DataEndpoints::new(
            self.settings.data_hosts.clone(),
            shared_key(&self.auth, "dataEndpointKey", "data endpoint signing key")
                .await?
                .as_bytes(),
            self.settings.data_url_ttl,
        );
        let cache = berth_cache::PullThrough::new(
            self.registry.clone(),
            self.stores.locks.clone(),
            crate::audit::cache_observer(events.clone()),
        )
        .map_err(AssemblyError::Cache)?;
        let access_log = match &self.settings.access_log {
            None => None,
            Some(target) => Some(crate::access_log::AccessLog::start(target.clone()).map_err(
                |source| AssemblyError::AccessLog {
                    target: match target {
                        crate::access_log::AccessLogTarget::Stderr => "(stderr)".into(),
                        crate::access_log::AccessLogTarget::File(p) => p.display().to_string(),
                    },
                    source,
                },
            )?),
        };
        Ok(AppState::new(crate::SharedState {
            access_log,
            cache,
            registry: self.registry,
            auth: self.auth,
            body_idle_timeout: self.settings.body_idle_timeout,
            network: self.network,
            endpoints: Arc::new(endpoints),
            events,
            event_store,
            data: Arc::new(data),
            metrics,
        }))
    }
}

/// A secret every node shares through the metadata store (the key that
/// signs data-endpoint URLs, the portal's session key): made by the first
/// node that needs it, read by the others.
pub async fn shared_key(
    auth: &AuthService,
    name: &str,
    what: &str,
) -> Result<String, AssemblyError> {
    if let Some(key) = auth.store().setting(name).await? {
        return Ok(key);
    }
    let key = berth_auth::secret::generate();
    // Another node may be doing the same: only the first one stored counts.
    auth.store()
        .replace_setting(
            name,
            None,
            &key,
            &berth_metadata::Activity {
                actor: "system".into(),
                operation: format!("create {what}"),
                target: name.into(),
                before: None,
                after: None,
            },
        )
        .await?;
    auth.store()
        .setting(name)
        .await?
        .ok_or_else(|| AssemblyError::SharedKeyVanished(name.into()))
}
