//! `berth serve`: wires configuration, storage, metadata and the HTTP API
//! together and runs until SIGTERM or Ctrl-C.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use berth_api::AppState;
use berth_auth::{AuthConfig, AuthService};
use berth_metadata::SqliteStore;
use berth_registry::{Registry, RegistryConfig};
use berth_storage::FilesystemStore;
use tracing_subscriber::EnvFilter;

use crate::config::{Config, LogOverrides, Overrides, ServerOverrides};
use crate::ServeArgs;

pub fn run(args: ServeArgs) -> anyhow::Result<()> {
    let overrides = Overrides {
        data_dir: args.data,
        server: args.listen.map(|listen| ServerOverrides { listen }),
        log: args.log_format.map(|format| LogOverrides { format }),
    };
    let config = Config::load(args.config.as_deref(), overrides)?;
    init_logging(&config)?;
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("could not start the async runtime")?
        .block_on(serve(config))
}

fn init_logging(config: &Config) -> anyhow::Result<()> {
    let filter = EnvFilter::try_from_env("BERTH_LOG")
        .or_else(|_| EnvFilter::try_new(&config.log.level))
        .context("invalid log level")?;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match config.log.format.as_str() {
        "json" => builder.json().init(),
        "text" => builder.init(),
        other => anyhow::bail!("log.format '{other}' is not supported (use text or json)"),
    }
    Ok(())
}

async fn serve(config: Config) -> anyhow::Result<()> {
    std::fs::create_dir_all(&config.data_dir)
        .with_context(|| format!("cannot create data directory {}", config.data_dir.display()))?;
    let blobs = FilesystemStore::open(config.blob_dir()).with_context(|| {
        format!(
            "cannot open blob storage at {}",
            config.blob_dir().display()
        )
    })?;
    let metadata = SqliteStore::connect(&config.metadata_url())
        .await
        .with_context(|| format!("cannot open metadata database {}", config.metadata_url()))?;
    let registry = Arc::new(Registry::new(
        Arc::new(blobs),
        Arc::new(metadata.clone()),
        RegistryConfig {
            max_manifest_bytes: config.limits.max_manifest_bytes,
            gc_grace: Duration::from_secs(config.gc.grace_seconds),
            upload_ttl: Duration::from_secs(config.gc.upload_ttl_seconds),
        },
    ));
    let auth = Arc::new(
        AuthService::open(
            Arc::new(metadata.clone()),
            AuthConfig {
                token_ttl: Duration::from_secs(config.auth.token_ttl_seconds),
                refresh_ttl: Duration::from_secs(config.auth.refresh_token_ttl_seconds),
                registry_name: config.auth.registry_name.clone(),
                throttle_limit: config.auth.failed_login_limit,
                throttle_window: Duration::from_secs(config.auth.failed_login_window_seconds),
                ..AuthConfig::default()
            },
        )
        .await
        .context("cannot initialise authentication")?,
    );
    if let Some(password) = auth
        .bootstrap_owner(config.auth.initial_owner_password.as_deref())
        .await
        .context("cannot create the owner identity")?
    {
        let file = config.data_dir.join("initial-owner-password");
        write_secret_file(&file, &password)?;
        println!(
            "created the owner identity: user 'owner', password {password}\n  (also in {}, mode 0600; shown only this once)",
            file.display()
        );
    }
    spawn_housekeeping(&config, auth.clone());
    let app = berth_api::router(AppState {
        registry: registry.clone(),
        auth,
        body_idle_timeout: Duration::from_secs(config.server.body_idle_timeout_seconds),
    });

    let listener = tokio::net::TcpListener::bind(&config.server.listen)
        .await
        .with_context(|| format!("cannot listen on {}", config.server.listen))?;
    let addr = listener.local_addr()?;
    // On stdout, for people and for scripts waiting for the port.
    println!(
        "berth {} listening on http://{addr}",
        env!("CARGO_PKG_VERSION")
    );
    tracing::info!(%addr, data = %config.data_dir.display(), "berth started");

    if config.gc.interval_seconds > 0 {
        let registry = registry.clone();
        let every = Duration::from_secs(config.gc.interval_seconds);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.tick().await;
            loop {
                tick.tick().await;
                match registry.collect_garbage().await {
                    Ok(report) => tracing::info!(?report, "garbage collection finished"),
                    Err(e) => tracing::warn!(error = %e, "garbage collection failed"),
                }
            }
        });
    }

    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let server = axum::serve(
        listener,
        app.into_make_service_with_connect_info::<std::net::SocketAddr>(),
    )
    .with_graceful_shutdown(async move {
        shutdown_signal().await;
        let _ = stop_tx.send(true);
    });
    let grace = Duration::from_secs(config.server.shutdown_grace_seconds);
    let mut stopped = stop_rx.clone();
    tokio::select! {
        result = server => result.context("server failed")?,
        _ = async {
            let _ = stopped.wait_for(|s| *s).await;
            tokio::time::sleep(grace).await;
        } => {
            // Uploads cut off here stay resumable: their durable length is
            // recorded after every acknowledged chunk.
            tracing::warn!("in-flight requests did not finish within {grace:?}; stopping anyway");
        }
    }
    metadata.close().await;
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

/// Settings reload (other nodes may change them) and activity retention.
fn spawn_housekeeping(config: &Config, auth: Arc<AuthService>) {
    let retention = config.auth.activity_retention_days;
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        let mut n: u64 = 0;
        loop {
            tick.tick().await;
            if let Err(e) = auth.reload_settings().await {
                tracing::warn!(error = %e, "reloading settings failed");
            }
            if n.is_multiple_of(3600) {
                match auth.purge_activity(retention).await {
                    Ok(0) => {}
                    Ok(purged) => tracing::info!(purged, "purged old activity-log entries"),
                    Err(e) => tracing::warn!(error = %e, "purging the activity log failed"),
                }
            }
            n += 1;
        }
    });
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
