//! `berth recover`: gets the owner back in without the network. It opens
//! the registry's metadata store directly — the same configuration or data
//! directory the server uses — and changes the owner password or the
//! network rules there. It takes no lock: it works on a stopped registry
//! and on a running one (SQLite serialises the writes; PostgreSQL is shared
//! anyway), which applies the change within its one-second reload of
//! settings and rules. Every change is in the activity log as done by the
//! actor `recovery`.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{ensure, Context};
use berth_api::network::NetworkPolicy;
use berth_auth::{AuthConfig, AuthService};
use berth_metadata::{AuthStore, PostgresStore, SqliteStore};
use berth_network::DefaultAction;

use crate::config::Config;
use crate::output::reportln;

/// The actor recoveries are recorded under in the activity log.
pub const ACTOR: &str = "recovery";

#[derive(Debug, clap::Args)]
#[command(group(
    clap::ArgGroup::new("recovery")
        .required(true)
        .multiple(true)
        .args(["reset_owner_password", "allow_ip", "reset_network_rules", "enable_public_access"]),
))]
pub struct RecoverArgs {
    /// The registry's configuration file (for scale-out: the PostgreSQL
    /// database it names is changed, for every node).
    #[arg(long, value_name = "FILE", conflicts_with = "data")]
    config: Option<PathBuf>,
    /// Or the data directory of an embedded registry (default
    /// configuration otherwise).
    #[arg(long, value_name = "DIR")]
    data: Option<PathBuf>,
    /// Give the owner a new random password: printed once, and written to
    /// <data>/initial-owner-password (mode 0600). The old one stops
    /// working, on a running server within about a second.
    #[arg(long)]
    reset_owner_password: bool,
    /// Add an IP rule allowing this address or CIDR range (e.g.
    /// 203.0.113.7 or 10.0.0.0/8); may be repeated.
    #[arg(long, value_name = "CIDR")]
    allow_ip: Vec<String>,
    /// Remove every IP and subnet rule and set the default action to Allow
    /// (public network access is left as it is; see
    /// --enable-public-access).
    #[arg(long)]
    reset_network_rules: bool,
    /// Turn public network access back on (requests on the public endpoint
    /// are then judged by the rules again).
    #[arg(long)]
    enable_public_access: bool,
}

enum Store {
    Sqlite(SqliteStore),
    Postgres(PostgresStore),
}

impl Store {
    fn auth(&self) -> Arc<dyn AuthStore> {
        match self {
            Store::Sqlite(s) => Arc::new(s.clone()),
            Store::Postgres(p) => Arc::new(p.clone()),
        }
    }

    async fn close(&self) {
        match self {
            Store::Sqlite(s) => s.close().await,
            Store::Postgres(p) => p.close().await,
        }
    }
}

pub fn run(args: RecoverArgs) -> anyhow::Result<()> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?
        .block_on(recover(args))
}

async fn open(config: &Config) -> anyhow::Result<Store> {
    let url = config.metadata_url();
    if config.shared_metadata() {
        let store = PostgresStore::connect(&url)
            .await
            .with_context(|| format!("cannot open {}", crate::backends::redact(&url)))?;
        return Ok(Store::Postgres(store));
    }
    let db = config.data_dir.join("berth.db");
    ensure!(
        config.metadata.url.is_some() || db.exists(),
        "{} does not exist: is {} a registry's data directory? (for scale-out give --config FILE)",
        db.display(),
        config.data_dir.display()
    );
    let store = SqliteStore::connect(&url)
        .await
        .with_context(|| format!("cannot open {url}"))?;
    Ok(Store::Sqlite(store))
}

async fn recover(args: RecoverArgs) -> anyhow::Result<()> {
    let config = Config::of_registry(args.config.as_deref(), args.data.as_deref())?
        .context("say which registry to recover: --data DIR or --config FILE")?;
    let store = open(&config).await?;
    let result = apply(&args, &config, store.auth()).await;
    store.close().await;
    result
}

async fn apply(
    args: &RecoverArgs,
    config: &Config,
    store: Arc<dyn AuthStore>,
) -> anyhow::Result<()> {
    let auth = AuthService::open(store, AuthConfig::default())
        .await
        .context("cannot read the registry's identities")?;
    // Subnets are not needed: recovery only removes subnet rules.
    let network = NetworkPolicy::new(Vec::new(), Vec::new());
    let mut changed = false;

    if args.reset_network_rules {
        let after = network
            .update(&auth, ACTOR, None, "reset network rules", |n, _| {
                n.ip_rules.clear();
                n.subnet_rules.clear();
                n.default_action = DefaultAction::Allow;
                Ok(())
            })
            .await
            .map_err(|e| anyhow::anyhow!("cannot reset the network rules: {}", e.message()))?;
        reportln!("network rules: all removed, default action Allow");
        if !after.public_network_access {
            reportln!(
                "  public network access is still disabled: add --enable-public-access to turn it on"
            );
        }
        changed = true;
    }
    for cidr in &args.allow_ip {
        let net = berth_network::parse_cidr(cidr)?;
        let after = network
            .update(&auth, ACTOR, None, "add network rule", |n, _| {
                if n.ip_rules.contains(&net) {
                    return Ok(());
                }
                n.add_ip_rule(&net.to_string()).map(|_| ())
            })
            .await
            .map_err(|e| anyhow::anyhow!("cannot add a rule for {net}: {}", e.message()))?;
        ensure!(
            after.ip_rules.contains(&net),
            "the rule for {net} was not stored"
        );
        reportln!("network rules: {net} allowed");
        if after.default_action == DefaultAction::Allow {
            reportln!("  (the default action is Allow: every address is let in anyway)");
        }
        if !after.public_network_access {
            reportln!(
                "  public network access is disabled, so rules do not apply: add --enable-public-access"
            );
        }
        changed = true;
    }
    if args.enable_public_access {
        network
            .update(
                &auth,
                ACTOR,
                None,
                "enable public network access",
                |n, _| {
                    n.public_network_access = true;
                    Ok(())
                },
            )
            .await
            .map_err(|e| anyhow::anyhow!("cannot enable public network access: {}", e.message()))?;
        reportln!("public network access: enabled");
        changed = true;
    }
    if args.reset_owner_password {
        let secret = auth
            .reset_owner_password(ACTOR)
            .await
            .context("cannot reset the owner's password")?;
        let file = config.data_dir.join("initial-owner-password");
        write_password_file(&file, &secret.value)?;
        reportln!(
            "owner password reset: user 'owner', password {}\n  (also in {}, mode 0600; shown only this once)",
            secret.value,
            file.display()
        );
        changed = true;
    }
    if changed {
        reportln!(
            "recorded in the activity log as done by '{ACTOR}'; a running registry applies it within about a second"
        );
    }
    Ok(())
}

/// Replaces the password file atomically (a reader never sees half of
/// it), mode 0600 from the start, whatever mode an old file had.
fn write_password_file(path: &Path, password: &str) -> anyhow::Result<()> {
    use std::io::Write;
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let tmp = dir.join(format!(".initial-owner-password.{}", std::process::id()));
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let written = (|| -> std::io::Result<()> {
        let mut file = options.open(&tmp)?;
        writeln!(file, "{password}")?;
        file.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if let Err(e) = written {
        let _ = std::fs::remove_file(&tmp);
        return Err(e).with_context(|| format!("cannot write {}", path.display()));
    }
    Ok(())
}
