//! `berth serve`: wires configuration, storage, metadata, authentication,
//! network policy and the HTTP API together, serves every listener (public
//! and private endpoints), and runs until SIGTERM or Ctrl-C.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use axum::Extension;
use berth_api::access_log::{AccessLog, AccessLogTarget};
use berth_api::app::{AppSettings, Services};
use berth_api::network::NetworkPolicy;
use berth_auth::{AuthConfig, AuthService};
use berth_metadata::EventStore;
use berth_network::{parse_cidr, Endpoint, Subnet};
use berth_registry::{Registry, RegistryConfig};
use tokio::net::TcpListener;
use tracing_subscriber::EnvFilter;

use crate::config::{Config, Listen, LogOverrides, Overrides, ServerOverrides};
use crate::ServeArgs;

/// Prints a line on stdout for people and scripts; a closed stdout (the
/// reader went away) must not stop the server.
macro_rules! say {
    ($($arg:tt)*) => {{
        use std::io::Write;
        let _ = writeln!(std::io::stdout(), $($arg)*);
    }};
}

pub fn run(args: ServeArgs) -> anyhow::Result<()> {
    let overrides = Overrides {
        data_dir: args.data,
        server: args.listen.map(|listen| ServerOverrides {
            listen: Listen::One(listen),
        }),
        log: args.log_format.map(|format| LogOverrides {
            format: format.as_str().to_string(),
        }),
    };
    let config = Config::load(args.config.as_deref(), overrides)?;
    init_logging(&config)?;
    let new_registry =
        !config.shared_metadata() && !config.data_dir.join(crate::datadir::DATABASE_FILE).exists();

    // Held until the process ends: one server per data directory.
    let lock = crate::datadir::DataDirLock::acquire(&config.data_dir)?;
    tracing::debug!(lock = %lock.path().display(), "holding the data directory");
    crate::datadir::secure_modes(&config.data_dir)?;
    crate::connections::check_fd_limit(config.server.max_connections);
    berth_util::memory::return_large_blocks();
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("could not start the async runtime")?
        .block_on(serve(config, new_registry))?;
    drop(lock);
    Ok(())
}

/// A new embedded registry is said out loud: started from another
/// directory, the default `./berth-data` would otherwise silently be a new,
/// empty registry beside the real one.
fn announce_new_registry(config: &Config) {
    let dir = config.data_dir.display();
    if config.data_dir_given {
        say!("creating a new registry in {dir}");
    } else {
        say!(
            "no data directory was given: creating a new, empty registry in {dir} \
             (./berth-data is relative to the working directory; give --data DIR, \
             BERTH_DATA_DIR or data_dir to use a fixed one)"
        );
        tracing::warn!(data = %dir, "no data directory was given; using ./berth-data in the working directory");
    }
}

fn init_logging(config: &Config) -> anyhow::Result<()> {
    let filter = EnvFilter::try_from_env("BERTH_LOG")
        .or_else(|_| EnvFilter::try_new(&config.log.level))
        .context("invalid log level")?
        // PostgreSQL's notices ("relation already exists, skipping") are noise.
        .add_directive("sqlx::postgres::notice=warn".parse()?);
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(log_colours(
            std::io::IsTerminal::is_terminal(&std::io::stderr()),
            std::env::var_os("NO_COLOR").as_deref(),
        ));
    match config.log.format.as_str() {
        "json" => builder.json().init(),
        "text" => builder.init(),
        other => anyhow::bail!("log.format '{other}' is not supported (use text or json)"),
    }
    Ok(())
}

/// Whether the text log is coloured: only on a terminal, and not when
/// `NO_COLOR` is set to anything but the empty string (no-color.org). A log
/// file or a log collector gets plain text.
fn log_colours(stderr_is_terminal: bool, no_color: Option<&std::ffi::OsStr>) -> bool {
    stderr_is_terminal && no_color.is_none_or(|v| v.is_empty())
}

/// What the configuration decides about the application.
fn app_settings(config: &Config) -> anyhow::Result<AppSettings> {
    let mut subnets = Vec::new();
    for s in &config.subnet {
        let cidrs = s
            .cidrs
            .iter()
            .map(|c| parse_cidr(c))
            .collect::<Result<Vec<_>, _>>()
            .with_context(|| format!("subnet '{}'", s.name))?;
        subnets.push(Subnet {
            name: s.name.clone(),
            cidrs,
        });
    }
    let trusted_proxies = config
        .server
        .trusted_proxies
        .iter()
        .map(|p| parse_cidr(p))
        .collect::<Result<Vec<_>, _>>()
        .context("server.trusted_proxies")?;
    Ok(AppSettings {
        registry: RegistryConfig {
            max_manifest_bytes: config.limits.max_manifest_bytes,
            chunk_min_length: config.limits.chunk_min_length,
            gc_grace: Duration::from_secs(config.gc.grace_seconds),
            upload_ttl: Duration::from_secs(config.gc.upload_ttl_seconds),
            node_id: crate::backends::node_id(config),
            // Shared metadata: on once the other nodes' changes are
            // followed (berth_registry::remote).
            cache: !config.shared_metadata(),
            storage_redirect: (config.storage.redirect.as_deref() == Some("storage"))
                .then(|| Duration::from_secs(config.server.data_url_ttl_seconds)),
        },
        auth: AuthConfig {
            token_ttl: Duration::from_secs(config.auth.token_ttl_seconds),
            refresh_ttl: Duration::from_secs(config.auth.refresh_token_ttl_seconds),
            registry_name: config.auth.registry_name.clone(),
            throttle_limit: config.auth.failed_login_limit,
            throttle_window: Duration::from_secs(config.auth.failed_login_window_seconds),
            jwks_refresh_interval: Duration::from_secs(config.auth.jwks_refresh_seconds),
            ..AuthConfig::default()
        },
        body_idle_timeout: Duration::from_secs(config.server.body_idle_timeout_seconds),
        subnets,
        trusted_proxies,
        data_hosts: config
            .data_endpoint
            .iter()
            .map(|d| d.host.clone())
            .collect(),
        data_url_ttl: Duration::from_secs(config.server.data_url_ttl_seconds),
        audit_jsonl: config.audit.jsonl_path.clone(),
        access_log: config
            .access_log
            .enabled
            .then(|| match &config.access_log.path {
                Some(path) => AccessLogTarget::File(path.clone()),
                None => AccessLogTarget::Stderr,
            }),
    })
}

async fn bind(address: &str) -> anyhow::Result<(TcpListener, SocketAddr)> {
    let listener = TcpListener::bind(address)
        .await
        .with_context(|| format!("cannot listen on {address}"))?;
    let local = listener.local_addr()?;
    Ok((listener, local))
}

async fn serve(config: Config, new_registry: bool) -> anyhow::Result<()> {
    // Before anything else: SIGHUP's default action ends the process.
    let hangup = hangup_signal()?;
    let backends = crate::backends::open(&config).await?;
    let services = Services::open(backends.stores(), app_settings(&config)?).await?;
    let auth = services.auth.clone();
    let network = services.network.clone();
    let registry = services.registry.clone();

    let (tls, certificates) = crate::tls::server_config(&config)?.unzip();
    berth_api::set_tls(tls.is_some());
    let scheme = berth_api::scheme();

    // Bind everything first, so a bad address fails the start cleanly.
    let mut listeners = Vec::new();
    for address in config.server.listen.addresses() {
        let (listener, local) = bind(&address).await?;
        listeners.push((listener, local, Endpoint::Public));
    }
    for pe in &config.private_endpoint {
        let (listener, local) = bind(&pe.listen)
            .await
            .with_context(|| format!("private endpoint '{}'", pe.name))?;
        listeners.push((listener, local, Endpoint::Private(pe.name.clone())));
    }
    let endpoints = berth_manage::registry::Endpoints {
        login_server: listeners
            .iter()
            .find(|l| l.2 == Endpoint::Public)
            .map(|l| l.1.to_string()),
        endpoints: listeners
            .iter()
            .map(|(_, local, endpoint)| berth_manage::registry::Listener {
                endpoint: endpoint.to_string(),
                address: local.to_string(),
            })
            .collect(),
        data_endpoints: config
            .data_endpoint
            .iter()
            .map(|d| berth_manage::registry::DataEndpoint {
                region: d.region.clone(),
                host: d.host.clone(),
            })
            .collect(),
    };
    // On stdout, for people and for scripts waiting for the port: the
    // public endpoint's line comes first.
    for (_, local, endpoint) in &listeners {
        match endpoint {
            Endpoint::Public => say!(
                "berth {} listening on {scheme}://{local}",
                env!("CARGO_PKG_VERSION")
            ),
            Endpoint::Private(name) => {
                say!("private endpoint '{name}' listening on {scheme}://{local}")
            }
        }
    }
    // After the listening lines, which scripts read first.
    if new_registry {
        announce_new_registry(&config);
    }

    if let Some(password) = auth
        .bootstrap_owner(config.auth.initial_owner_password.as_deref())
        .await
        .context("cannot create the owner identity")?
    {
        let file = config.data_dir.join("initial-owner-password");
        write_secret_file(&file, &password)?;
        say!(
            "created the owner identity: user 'owner', password {password}\n  (also in {}, mode 0600; shown only this once)",
            file.display()
        );
    } else if config
        .auth
        .initial_owner_password
        .as_deref()
        .is_some_and(|p| !p.is_empty())
    {
        tracing::warn!("auth.initial_owner_password is ignored: the owner already exists (it applies on first start only); to reset the owner's password run 'berth recover --reset-owner-password' on this host");
    }
    spawn_housekeeping(
        &config,
        auth.clone(),
        network.clone(),
        backends.events.clone(),
    );
    spawn_storage_sampling(registry.metadata().clone());
    spawn_collector(&config, registry.clone());

    let metrics = metrics_exporter_prometheus::PrometheusBuilder::new()
        .install_recorder()
        .map_err(|e| tracing::warn!(error = %e, "metrics are unavailable"))
        .ok();
    berth_cache::describe_metrics();
    spawn_memory_upkeep(metrics.clone());
    berth_registry::remote::describe_metrics();
    registry.set_cache_enabled(!config.shared_metadata());
    let state = services.into_state(endpoints, metrics).await?;
    spawn_cache_eviction(state.cache.clone(), state.auth.clone());
    let events = state.events.clone();
    let access_log = state.access_log.clone();
    let portal = if config.portal.enabled {
        let settings = berth_portal::PortalSettings {
            lifetimes: berth_portal::Lifetimes {
                idle: Duration::from_secs(config.portal.idle_timeout_seconds),
                longest: Duration::from_secs(config.portal.session_lifetime_seconds),
            },
            secure_cookie: berth_api::scheme() == "https",
        };
        berth_portal::Portal::open(&state, settings).await?.routes()
    } else {
        axum::Router::new()
    };
    let app = berth_api::router_with(state, portal);
    let server = &config.server;
    let limits = crate::connections::Limits {
        header_read_timeout: Duration::from_secs(server.header_read_timeout_seconds),
        idle_timeout: Duration::from_secs(server.idle_timeout_seconds),
        max_connections: server.max_connections,
        max_connections_per_ip: server.max_connections_per_ip,
    };
    tracing::info!(
        listeners = %listeners
            .iter()
            .map(|(_, local, endpoint)| format!("{endpoint} {scheme}://{local}"))
            .collect::<Vec<_>>()
            .join(", "),
        storage = %crate::backends::describe_storage(&config),
        metadata = %crate::backends::describe_metadata(&config),
        data = %config.data_dir.display(),
        version = crate::VERSION,
        max_connections = limits.max_connections,
        max_connections_per_ip = limits.max_connections_per_ip,
        header_read_timeout_seconds = server.header_read_timeout_seconds,
        idle_timeout_seconds = server.idle_timeout_seconds,
        "berth started"
    );

    let gate = crate::connections::Gate::new(&limits);
    let acceptor = tls.map(tokio_rustls::TlsAcceptor::from);
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut servers = tokio::task::JoinSet::new();
    for (listener, _, endpoint) in listeners {
        // Handlers read their endpoint from this extension and the peer
        // from ConnectInfo, which the accept loop adds per connection.
        let app = app.clone().layer(Extension(endpoint));
        servers.spawn(crate::connections::serve(
            listener,
            acceptor.clone(),
            app,
            gate.clone(),
            limits.clone(),
            stop_rx.clone(),
        ));
    }

    if let Some(certificates) = &certificates {
        crate::tls::spawn_watch(certificates.clone(), stop_rx.clone());
    }
    if let Some(source) = backends.change_source() {
        tokio::spawn(berth_registry::remote::follow_changes(
            registry.clone(),
            source,
            stop_rx.clone(),
        ));
    }
    spawn_reload_on_hangup(hangup, certificates.clone(), access_log.clone());

    shutdown_signal().await;
    let _ = stop_tx.send(true);
    let grace = Duration::from_secs(config.server.shutdown_grace_seconds);
    let drained = tokio::time::timeout(grace, async {
        // The accept loops end at once; then every connection finishes.
        while servers.join_next().await.is_some() {}
        gate.drained().await;
    })
    .await;
    if drained.is_err() {
        // Uploads cut off here stay resumable: their durable length is
        // recorded after every acknowledged chunk.
        tracing::warn!("in-flight requests did not finish within {grace:?}; stopping anyway");
        // Dropping the cut-off requests starts their clean-ups.
        gate.abort_all(Duration::from_secs(5)).await;
    }
    // Background work that must finish while the database is still open:
    // trimming the bytes of cut-off uploads, then every accepted event.
    if !registry.finish_cleanups(Duration::from_secs(10)).await {
        tracing::warn!(
            "clean-ups of interrupted uploads did not finish; the expiry removes what is left"
        );
    }
    events.close(Duration::from_secs(10)).await;
    if let Some(log) = access_log {
        let _ = tokio::task::spawn_blocking(move || log.close()).await;
    }
    backends.close().await;
    tracing::info!("berth stopped");
    Ok(())
}

/// Writes a secret to a file only its owner can read.
fn write_secret_file(path: &std::path::Path, secret: &str) -> anyhow::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options
        .open(path)
        .with_context(|| format!("cannot write {}", path.display()))?;
    writeln!(file, "{secret}")?;
    Ok(())
}

/// Runtime settings reload each second (another node may change them) and
/// activity-log retention hourly.
fn spawn_housekeeping(
    config: &Config,
    auth: Arc<AuthService>,
    network: Arc<NetworkPolicy>,
    events: Arc<dyn EventStore>,
) {
    let retention = config.auth.activity_retention_days;
    let event_retention = Duration::from_secs(u64::from(config.audit.retention_days) * 86400);
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        let mut n: u64 = 0;
        loop {
            tick.tick().await;
            if let Err(e) = auth.reload_settings().await {
                tracing::warn!(error = %e, "reloading settings failed");
            }
            if let Err(e) = network.reload(&auth).await {
                tracing::warn!(error = %e.message, "reloading network rules failed");
            }
            if n.is_multiple_of(3600) {
                match auth.purge_activity(retention).await {
                    Ok(0) => {}
                    Ok(purged) => tracing::info!(purged, "purged old activity-log entries"),
                    Err(e) => tracing::warn!(error = %e, "purging the activity log failed"),
                }
                match events
                    .purge_events(berth_api::audit::purge_before(event_retention))
                    .await
                {
                    Ok(0) => {}
                    Ok(purged) => tracing::info!(purged, "purged old audit events"),
                    Err(e) => tracing::warn!(error = %e, "purging audit events failed"),
                }
            }
            n += 1;
        }
    });
}

/// Every minute: the hour's storage sample (count and bytes of the blob
/// records), unless a node already took it; the portal charts them.
fn spawn_storage_sampling(metadata: Arc<dyn berth_metadata::MetadataStore>) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(60));
        loop {
            tick.tick().await;
            if let Err(e) = metadata.sample_storage(berth_util::now()).await {
                tracing::warn!(error = %e, "sampling the storage size failed");
            }
        }
    });
}

/// Hourly (first a minute after start): evicts cached content that no
/// one pulled for its cache rule's `evict_unused_days`. Every node runs
/// it; deleting what another node already evicted is a no-op.
fn spawn_cache_eviction(cache: berth_cache::PullThrough, auth: Arc<AuthService>) {
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_secs(60)).await;
        let mut tick = tokio::time::interval(Duration::from_secs(3600));
        loop {
            tick.tick().await;
            let rules = auth.cached_rules();
            match cache.evict(&rules, berth_util::now()).await {
                Ok(0) => {}
                Ok(evicted) => tracing::info!(evicted, "evicted unused cached content"),
                Err(e) => tracing::warn!(error = %e, "cache eviction failed"),
            }
        }
    });
}

/// How often the memory upkeep runs.
const UPKEEP_EVERY: Duration = Duration::from_secs(1);

/// Every second: folds the latency samples recorded since the last time
/// into the metrics' summaries (the Prometheus recorder keeps every sample
/// until then, so without a scrape they piled up without bound: ~1 MiB per
/// 500,000 requests in a soak), then gives the free pages inside glibc's
/// arenas back to the system, so RSS follows the live heap instead of
/// keeping the pages of every buffer freed in the middle of an arena
/// (concurrent-push peak 61 -> 55 MiB, no throughput cost;
/// docs/performance.md).
fn spawn_memory_upkeep(metrics: Option<metrics_exporter_prometheus::PrometheusHandle>) {
    metrics::describe_counter!(
        "berth_memory_returned_bytes_total",
        metrics::Unit::Bytes,
        "Free memory inside the allocator given back to the system (RSS before minus after each trim)."
    );
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(UPKEEP_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            if let Some(metrics) = &metrics {
                metrics.run_upkeep();
            }
            let returned = tokio::task::spawn_blocking(berth_util::memory::give_back_free_pages)
                .await
                .unwrap_or(0);
            metrics::counter!("berth_memory_returned_bytes_total").increment(returned);
        }
    });
}

fn spawn_collector(config: &Config, registry: Arc<Registry>) {
    if config.gc.interval_seconds == 0 {
        return;
    }
    let every = Duration::from_secs(config.gc.interval_seconds);
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        tick.tick().await;
        loop {
            tick.tick().await;
            match registry.collect_garbage().await {
                Ok(report) if report.skipped => {
                    tracing::debug!("another node holds the collector lease")
                }
                Ok(report) => tracing::info!(?report, "garbage collection finished"),
                Err(e) => tracing::warn!(error = %e, "garbage collection failed"),
            }
        }
    });
}

#[cfg(unix)]
type Hangup = tokio::signal::unix::Signal;
#[cfg(not(unix))]
type Hangup = ();

fn hangup_signal() -> anyhow::Result<Hangup> {
    #[cfg(unix)]
    return tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
        .context("cannot handle SIGHUP");
    #[cfg(not(unix))]
    Ok(())
}

/// SIGHUP (`systemctl reload berth`) reloads the TLS certificate and
/// reopens the access log file.
fn spawn_reload_on_hangup(
    hangup: Hangup,
    certificates: Option<Arc<crate::tls::Certificates>>,
    access_log: Option<AccessLog>,
) {
    #[cfg(unix)]
    tokio::spawn(async move {
        let mut hangup = hangup;
        while hangup.recv().await.is_some() {
            if let Some(log) = &access_log {
                log.reopen();
            }
            match &certificates {
                Some(c) => {
                    let c = c.clone();
                    let _ = tokio::task::spawn_blocking(move || c.reload("SIGHUP")).await;
                }
                None => {
                    tracing::info!("SIGHUP: no TLS certificate is configured, nothing to reload")
                }
            }
        }
    });
    #[cfg(not(unix))]
    let _ = (hangup, certificates, access_log);
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        if let Ok(mut s) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        {
            s.recv().await;
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
    tracing::info!("shutdown requested; finishing in-flight requests");
}

#[cfg(test)]
mod tests {
    use std::ffi::OsStr;

    #[test]
    fn colours_only_on_a_terminal_without_no_color() {
        assert!(super::log_colours(true, None));
        assert!(super::log_colours(true, Some(OsStr::new(""))));
        assert!(!super::log_colours(true, Some(OsStr::new("1"))));
        assert!(!super::log_colours(false, None));
        assert!(!super::log_colours(false, Some(OsStr::new(""))));
    }
}
