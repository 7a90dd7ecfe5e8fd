//! Server configuration: built-in defaults, then a TOML file, then
//! `BERTH_*` environment variables (`BERTH_SERVER__LISTEN=...`, `__`
//! separating sections), then command-line flags.
//!
//! Every level is strict: an unknown section or key is an error naming it,
//! so a typo (`[storge]`) cannot silently fall back to the defaults. Other
//! programs' `BERTH_*` variables share the prefix (the client's
//! `BERTH_REGISTRY`, `BERTH_LOG`, a test harness's `BERTH_BIN`), so only
//! variables with a `__` (section keys) or exactly a known top-level key
//! (`BERTH_DATA_DIR`) are configuration; the rest are left alone.

use std::path::{Path, PathBuf};

use anyhow::Context;
use figment::providers::{Env, Format, Serialized, Toml};
use figment::Figment;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::output::outln;

/// Top-level keys that a `BERTH_<KEY>` variable (no `__`) may set.
const TOP_LEVEL_ENV_KEYS: &[&str] = &["DATA_DIR"];

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Directory for embedded storage (blobs and the SQLite database).
    pub data_dir: PathBuf,
    pub server: ServerConfig,
    pub storage: StorageConfig,
    pub metadata: MetadataConfig,
    pub gc: GcConfig,
    pub limits: LimitsConfig,
    pub log: LogConfig,
    pub auth: AuthSection,
    pub audit: AuditSection,
    /// The access log: one JSON line per request; off by default.
    #[serde(default)]
    pub access_log: AccessLogSection,
    /// The web portal under `/`.
    #[serde(default)]
    pub portal: PortalSection,
    /// Extra listeners on private addresses: requests arriving there are not
    /// subject to IP rules and keep working when public access is disabled.
    #[serde(default)]
    pub private_endpoint: Vec<PrivateEndpointConfig>,
    /// Subnets that network rules may name.
    #[serde(default)]
    pub subnet: Vec<SubnetConfig>,
    /// Dedicated data endpoints: host names (`<registry>.<region>.data.<domain>`
    /// style, with the port clients use) served by this process by `Host`.
    #[serde(default)]
    pub data_endpoint: Vec<DataEndpointConfig>,
    /// Whether `data_dir` was given (file, environment or `--data`) rather
    /// than left at its default, which is relative to the working directory.
    #[serde(skip)]
    pub data_dir_given: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DataEndpointConfig {
    /// The region it serves (shown by `berth show-endpoints`).
    #[schemars(example = &"westeurope")]
    pub region: String,
    /// host[:port] as clients address it.
    #[schemars(example = &"registry.westeurope.data.example.com:5000")]
    pub host: String,
}

/// Login and repository events (`berth logs`).
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AuditSection {
    /// Login and repository events older than this are purged.
    pub retention_days: u32,
    /// Also append every event as a JSON line to this file.
    #[schemars(example = &"/var/log/berth/events.jsonl")]
    pub jsonl_path: Option<PathBuf>,
}

/// One JSON line per request (time, method, path with secret query values
/// masked, status, bytes, duration, identity, client address, correlation
/// id, user agent).
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AccessLogSection {
    /// Write the access log.
    #[serde(default)]
    pub enabled: bool,
    /// Append to this file (reopened on SIGHUP, for logrotate); standard
    /// error when unset.
    #[serde(default)]
    #[schemars(example = &"/var/log/berth/access.jsonl")]
    pub path: Option<PathBuf>,
}

/// The web portal: pages under `/` on every listener, for any identity
/// (what it shows and allows follows the identity's roles).
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PortalSection {
    /// Serve the portal.
    #[serde(default = "yes")]
    pub enabled: bool,
    /// A portal session without a request for this long ends.
    #[serde(default = "default_portal_idle")]
    pub idle_timeout_seconds: u64,
    /// A portal session ends this long after sign-in, however busy.
    #[serde(default = "default_portal_lifetime")]
    pub session_lifetime_seconds: u64,
}

impl Default for PortalSection {
    fn default() -> Self {
        PortalSection {
            enabled: true,
            idle_timeout_seconds: default_portal_idle(),
            session_lifetime_seconds: default_portal_lifetime(),
        }
    }
}

fn yes() -> bool {
    true
}

fn default_portal_idle() -> u64 {
    30 * 60
}

fn default_portal_lifetime() -> u64 {
    12 * 3600
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PrivateEndpointConfig {
    /// Its name, as network rules and logs show it.
    #[schemars(example = &"build-vnet")]
    pub name: String,
    /// The private address to listen on.
    #[schemars(example = &"10.1.0.4:5000")]
    pub listen: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SubnetConfig {
    /// The name `berth network-rule add --subnet` takes.
    #[schemars(example = &"build-agents")]
    pub name: String,
    /// Its address ranges.
    #[schemars(example = ["10.1.0.0/24"])]
    pub cidrs: Vec<String>,
}

/// One address or several.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, JsonSchema)]
#[serde(untagged)]
pub enum Listen {
    One(String),
    Many(Vec<String>),
}

impl Listen {
    pub fn addresses(&self) -> Vec<String> {
        match self {
            Listen::One(a) => vec![a.clone()],
            Listen::Many(a) => a.clone(),
        }
    }
}

/// Identities, tokens and logins.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AuthSection {
    /// The registry's name: the admin user's login.
    pub registry_name: String,
    /// Lifetime of access tokens.
    pub token_ttl_seconds: u64,
    /// Lifetime of refresh tokens.
    pub refresh_token_ttl_seconds: u64,
    /// Failed logins from one address before it gets 429.
    pub failed_login_limit: u32,
    /// The window those failures are counted in, and the lockout.
    pub failed_login_window_seconds: u64,
    /// Activity-log entries older than this are purged.
    pub activity_retention_days: u32,
    /// A federated token naming a key the registry has not seen refetches
    /// its issuer's keys at most this often (so made-up key ids cannot make
    /// the registry fetch per request).
    #[serde(default = "default_jwks_refresh")]
    pub jwks_refresh_seconds: u64,
    /// Used only when the owner is first created; otherwise a random
    /// password is generated. Meant for automated setups and tests.
    #[schemars(example = &"change-me")]
    pub initial_owner_password: Option<String>,
}

/// Listeners, TLS and connection limits.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ServerConfig {
    /// Address(es) of the public endpoint: "127.0.0.1:5000" or a list.
    pub listen: Listen,
    /// Proxies whose X-Forwarded-For is believed (addresses or CIDRs).
    #[serde(default)]
    pub trusted_proxies: Vec<String>,
    /// After SIGTERM, how long in-flight requests may take to finish.
    pub shutdown_grace_seconds: u64,
    /// A request body that sends nothing for this long is cut off.
    pub body_idle_timeout_seconds: u64,
    /// Lifetime of signed data-endpoint URLs.
    pub data_url_ttl_seconds: u64,
    /// PEM certificate chain: with `tls_key`, every listener speaks HTTPS.
    /// Reloaded on SIGHUP and when the file changes.
    #[serde(default)]
    #[schemars(example = &"/etc/berth/tls.crt")]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1).
    #[serde(default)]
    #[schemars(example = &"/etc/berth/tls.key")]
    pub tls_key: Option<PathBuf>,
    /// This node's name in garbage-collection records; defaults to
    /// `<hostname>-<pid>`.
    #[serde(default)]
    #[schemars(example = &"node-a")]
    pub node_id: Option<String>,
    /// A new connection must deliver its first request headers (and a
    /// keep-alive connection the rest of a started request's headers)
    /// within this long; it also bounds the TLS handshake.
    pub header_read_timeout_seconds: u64,
    /// A connection with no request in flight and no bytes moving is
    /// closed after this long.
    pub idle_timeout_seconds: u64,
    /// Open connections across all listeners; more are refused (closed
    /// at once) until some finish.
    pub max_connections: usize,
    /// Open connections from one client address (many nodes behind one NAT
    /// share an address: keep it generous).
    pub max_connections_per_ip: usize,
}

/// Where blobs are kept: the filesystem, or an S3-compatible bucket
/// (scale-out).
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct StorageConfig {
    /// "filesystem" (default) or "s3".
    pub kind: String,
    /// Blob directory (filesystem); defaults to `<data_dir>/blobs`.
    #[serde(default)]
    #[schemars(example = &"/srv/berth/blobs")]
    pub path: Option<PathBuf>,
    /// Bucket (s3).
    #[serde(default)]
    #[schemars(example = &"berth")]
    pub bucket: Option<String>,
    /// `http(s)://host:port` of an S3-compatible store; AWS when unset.
    #[serde(default)]
    #[schemars(example = &"http://127.0.0.1:3900")]
    pub endpoint: Option<String>,
    /// The bucket's region (s3).
    #[serde(default)]
    #[schemars(example = &"garage")]
    pub region: Option<String>,
    /// Access key (s3); better set as BERTH_STORAGE__ACCESS_KEY_ID.
    #[serde(default)]
    #[schemars(example = &"GK...")]
    pub access_key_id: Option<String>,
    /// Secret key (s3); better set as BERTH_STORAGE__SECRET_ACCESS_KEY.
    #[serde(default)]
    #[schemars(example = &"...")]
    pub secret_access_key: Option<String>,
    /// Key prefix inside the bucket.
    #[serde(default)]
    #[schemars(example = &"registry-a/")]
    pub prefix: Option<String>,
    /// "none" (default): blobs stream through berth; "storage": blob GETs
    /// are redirected to presigned object-store URLs.
    #[serde(default)]
    #[schemars(example = &"none")]
    pub redirect: Option<String>,
}

/// The metadata database: SQLite in the data directory, or PostgreSQL
/// (scale-out).
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct MetadataConfig {
    /// Database URL; defaults to `sqlite://<data_dir>/berth.db`. With a
    /// password in it, better set as BERTH_METADATA__URL.
    #[schemars(example = &"postgres://berth:secret@127.0.0.1:5432/berth")]
    pub url: Option<String>,
}

/// The garbage collector (online; one node at a time).
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct GcConfig {
    /// Seconds between garbage-collection passes; 0 disables the collector.
    pub interval_seconds: u64,
    /// Unreferenced blobs younger than this are kept.
    pub grace_seconds: u64,
    /// Idle upload sessions older than this are discarded.
    pub upload_ttl_seconds: u64,
}

/// Limits on what clients send.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LimitsConfig {
    /// The largest manifest accepted.
    pub max_manifest_bytes: usize,
    /// Smallest chunk (but the last) a chunked upload should send,
    /// announced as `OCI-Chunk-Min-Length`.
    #[serde(default = "default_chunk_min_length")]
    pub chunk_min_length: u64,
}

fn default_jwks_refresh() -> u64 {
    30
}

fn default_chunk_min_length() -> u64 {
    berth_registry::RegistryConfig::default().chunk_min_length
}

/// The server's own log, on standard error.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LogConfig {
    /// "text" or "json".
    pub format: String,
    /// A tracing filter such as "info" or "berth=debug,info".
    pub level: String,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            data_dir: PathBuf::from("./berth-data"),
            server: ServerConfig {
                listen: Listen::One("127.0.0.1:5000".into()),
                trusted_proxies: Vec::new(),
                shutdown_grace_seconds: 30,
                body_idle_timeout_seconds: 60,
                data_url_ttl_seconds: 300,
                tls_cert: None,
                tls_key: None,
                node_id: None,
                header_read_timeout_seconds: 10,
                idle_timeout_seconds: 60,
                max_connections: 4096,
                max_connections_per_ip: 512,
            },
            storage: StorageConfig {
                kind: "filesystem".into(),
                path: None,
                bucket: None,
                endpoint: None,
                region: None,
                access_key_id: None,
                secret_access_key: None,
                prefix: None,
                redirect: None,
            },
            metadata: MetadataConfig { url: None },
            gc: GcConfig {
                interval_seconds: 3600,
                grace_seconds: 3600,
                upload_ttl_seconds: 24 * 3600,
            },
            limits: LimitsConfig {
                max_manifest_bytes: 4 * 1024 * 1024,
                chunk_min_length: default_chunk_min_length(),
            },
            log: LogConfig {
                format: "text".into(),
                level: "info".into(),
            },
            auth: AuthSection {
                registry_name: "berth".into(),
                token_ttl_seconds: 300,
                refresh_token_ttl_seconds: 3 * 3600,
                failed_login_limit: 10,
                failed_login_window_seconds: 60,
                activity_retention_days: 90,
                jwks_refresh_seconds: default_jwks_refresh(),
                initial_owner_password: None,
            },
            audit: AuditSection {
                retention_days: 90,
                jsonl_path: None,
            },
            access_log: AccessLogSection::default(),
            portal: PortalSection::default(),
            private_endpoint: Vec::new(),
            subnet: Vec::new(),
            data_endpoint: Vec::new(),
            data_dir_given: false,
        }
    }
}

/// Flags that override the configuration.
#[derive(Debug, Default, Serialize)]
pub struct Overrides {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data_dir: Option<PathBuf>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub server: Option<ServerOverrides>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub log: Option<LogOverrides>,
}

#[derive(Debug, Serialize)]
pub struct ServerOverrides {
    pub listen: Listen,
}

#[derive(Debug, Serialize)]
pub struct LogOverrides {
    pub format: String,
}

impl Config {
    /// The configuration of a registry an offline command works on: its
    /// file, or its data directory (embedded defaults); `None` if neither
    /// is given.
    pub fn of_registry(file: Option<&Path>, data: Option<&Path>) -> anyhow::Result<Option<Config>> {
        Ok(match (file, data) {
            (Some(file), _) => Some(Config::load(Some(file), Overrides::default())?),
            (None, Some(dir)) => Some(Config::load(
                None,
                Overrides {
                    data_dir: Some(dir.to_path_buf()),
                    ..Overrides::default()
                },
            )?),
            (None, None) => None,
        })
    }

    pub fn load(file: Option<&Path>, overrides: Overrides) -> anyhow::Result<Config> {
        // What was given, without the defaults under it.
        let mut given = Figment::new();
        if let Some(file) = file {
            anyhow::ensure!(
                file.exists(),
                "config file {} does not exist",
                file.display()
            );
            given = given.merge(Toml::file_exact(file));
        }
        given = given
            .merge(config_env())
            .merge(Serialized::defaults(overrides));
        let data_dir_given = given.find_value("data_dir").is_ok();
        let figment = Figment::from(Serialized::defaults(Config::default())).merge(given);
        let mut config: Config = figment.extract().map_err(|e| {
            // Every error (not only the first), each naming its key and
            // where the value came from (the file or the variable).
            let all = e
                .into_iter()
                .map(|e| e.to_string())
                .collect::<Vec<_>>()
                .join("; ");
            anyhow::anyhow!("invalid configuration: {all}")
        })?;
        let server = &config.server;
        anyhow::ensure!(
            server.header_read_timeout_seconds > 0 && server.idle_timeout_seconds > 0,
            "server.header_read_timeout_seconds and server.idle_timeout_seconds must be at least 1"
        );
        anyhow::ensure!(
            server.max_connections > 0 && server.max_connections_per_ip > 0,
            "server.max_connections and server.max_connections_per_ip must be at least 1"
        );
        let portal = &config.portal;
        anyhow::ensure!(
            portal.idle_timeout_seconds > 0
                && portal.idle_timeout_seconds <= portal.session_lifetime_seconds
                && portal.session_lifetime_seconds <= 366 * 86400,
            "portal.idle_timeout_seconds must be at least 1 and at most portal.session_lifetime_seconds, which is at most a year (366 days)"
        );
        match config.storage.kind.as_str() {
            "filesystem" => {}
            "s3" => anyhow::ensure!(
                config.storage.bucket.is_some(),
                "storage.kind is \"s3\" but storage.bucket is not set"
            ),
            other => anyhow::bail!(
                "storage.kind '{other}' is not supported (use \"filesystem\" or \"s3\")"
            ),
        }
        match config.storage.redirect.as_deref() {
            None | Some("none") => {}
            Some("storage") => anyhow::ensure!(
                config.storage.kind == "s3",
                "storage.redirect = \"storage\" needs storage.kind = \"s3\""
            ),
            Some(other) => {
                anyhow::bail!("storage.redirect '{other}' is not one of \"none\", \"storage\"")
            }
        }
        // Absolute from here on: every path derived from it (the database
        // URL, the log, the lock) names the same directory whatever the
        // process's working directory later is.
        config.data_dir = std::path::absolute(&config.data_dir).with_context(|| {
            format!(
                "data_dir {} cannot be made absolute",
                config.data_dir.display()
            )
        })?;
        if let Some(path) = &config.storage.path {
            config.storage.path = Some(std::path::absolute(path).with_context(|| {
                format!("storage.path {} cannot be made absolute", path.display())
            })?);
        }
        config.data_dir_given = data_dir_given;
        Ok(config)
    }

    /// A copy fit to print: secrets replaced by `***`.
    pub fn masked(&self) -> Config {
        let mut c = self.clone();
        let mask = |v: &mut Option<String>| {
            if v.is_some() {
                *v = Some("***".into());
            }
        };
        mask(&mut c.storage.secret_access_key);
        mask(&mut c.auth.initial_owner_password);
        c.metadata.url = c.metadata.url.as_deref().map(crate::backends::redact);
        c
    }

    pub fn blob_dir(&self) -> PathBuf {
        self.storage
            .path
            .clone()
            .unwrap_or_else(|| self.data_dir.join("blobs"))
    }

    /// Metadata in PostgreSQL: shared with other nodes.
    pub fn shared_metadata(&self) -> bool {
        let url = self.metadata_url();
        url.starts_with("postgres://") || url.starts_with("postgresql://")
    }

    pub fn metadata_url(&self) -> String {
        self.metadata
            .url
            .clone()
            .unwrap_or_else(|| format!("sqlite://{}", self.data_dir.join("berth.db").display()))
    }
}

/// `berth config check`: loads like `berth serve` would and prints the
/// effective configuration, secrets masked.
pub fn check(file: Option<&Path>) -> anyhow::Result<()> {
    let text = effective_toml(file)?;
    let source = file.map_or_else(|| "defaults".to_string(), |f| f.display().to_string());
    outln!("# effective configuration: {source} + BERTH_* environment; secrets masked");
    crate::output::emit(&text);
    Ok(())
}

/// The configuration `berth serve` would run with, as TOML, secrets masked.
fn effective_toml(file: Option<&Path>) -> anyhow::Result<String> {
    let config = Config::load(file, Overrides::default())?;
    toml::to_string(&config.masked()).context("cannot print the configuration")
}

/// `berth config print`: the effective configuration alone, secrets
/// masked, ready to be saved as a file.
pub fn print(file: Option<&Path>) -> anyhow::Result<()> {
    crate::output::emit(&effective_toml(file)?);
    Ok(())
}

/// The `BERTH_*` variables that are configuration (see the module docs).
fn config_env() -> Env {
    Env::prefixed("BERTH_")
        .filter(|key| {
            key.as_str().contains("__")
                || TOP_LEVEL_ENV_KEYS
                    .iter()
                    .any(|k| key.as_str().eq_ignore_ascii_case(k))
        })
        .split("__")
}

#[cfg(test)]
#[allow(clippy::result_large_err)] // figment's test jail fixes the error type
mod tests {
    use super::*;

    #[test]
    fn layers_defaults_file_env_and_flags() {
        figment::Jail::expect_with(|jail| {
            jail.create_file(
                "berth.toml",
                r#"
                data_dir = "/srv/berth"
                [server]
                listen = "0.0.0.0:5000"
                [gc]
                grace_seconds = 60
                "#,
            )?;
            jail.set_env("BERTH_GC__INTERVAL_SECONDS", "5");
            jail.set_env("BERTH_SERVER__LISTEN", "127.0.0.1:6000");
            let c = Config::load(Some(Path::new("berth.toml")), Overrides::default())
                .map_err(|e| e.to_string())?;
            assert_eq!(c.data_dir, PathBuf::from("/srv/berth"));
            assert_eq!(c.server.listen.addresses(), vec!["127.0.0.1:6000"]);
            assert_eq!(c.gc.grace_seconds, 60);
            assert_eq!(c.gc.interval_seconds, 5);
            assert_eq!(c.metadata_url(), "sqlite:///srv/berth/berth.db");
            let c = Config::load(
                None,
                Overrides {
                    server: Some(ServerOverrides {
                        listen: Listen::One("127.0.0.1:7000".into()),
                    }),
                    ..Overrides::default()
                },
            )
            .map_err(|e| e.to_string())?;
            assert_eq!(c.server.listen.addresses(), vec!["127.0.0.1:7000"]);
            Ok(())
        });
    }

    #[test]
    fn private_endpoints_subnets_and_listener_lists() {
        figment::Jail::expect_with(|jail| {
            jail.create_file(
                "berth.toml",
                r#"
                [server]
                listen = ["127.0.0.1:5000", "[::1]:5000"]
                trusted_proxies = ["127.0.0.10"]
                [[private_endpoint]]
                name = "pe1"
                listen = "127.0.0.2:5000"
                [[subnet]]
                name = "build"
                cidrs = ["127.0.1.0/24"]
                "#,
            )?;
            let c = Config::load(Some(Path::new("berth.toml")), Overrides::default())
                .map_err(|e| e.to_string())?;
            assert_eq!(c.server.listen.addresses().len(), 2);
            assert_eq!(c.private_endpoint[0].name, "pe1");
            assert_eq!(c.subnet[0].cidrs, vec!["127.0.1.0/24"]);
            Ok(())
        });
    }

    #[test]
    fn rejects_unknown_keys() {
        figment::Jail::expect_with(|jail| {
            jail.create_file("berth.toml", "[server]\nlisten = \"x\"\nlissten = \"y\"\n")?;
            assert!(Config::load(Some(Path::new("berth.toml")), Overrides::default()).is_err());
            Ok(())
        });
    }

    fn load_error(toml: &str) -> String {
        let mut message = String::new();
        figment::Jail::expect_with(|jail| {
            jail.create_file("berth.toml", toml)?;
            message = match Config::load(Some(Path::new("berth.toml")), Overrides::default()) {
                Ok(_) => String::new(),
                Err(e) => format!("{e:#}"),
            };
            Ok(())
        });
        message
    }

    #[test]
    fn rejects_unknown_sections_and_top_level_keys_naming_them_and_the_file() {
        let e = load_error("[storge]\nkind = \"s3\"\n");
        assert!(e.contains("storge") && e.contains("berth.toml"), "{e}");
        let e = load_error("data_dri = \"/srv\"\n");
        assert!(e.contains("data_dri") && e.contains("berth.toml"), "{e}");
        let e = load_error("[server]\nmax_connections = 0\n");
        assert!(e.contains("max_connections"), "{e}");
    }

    #[test]
    fn only_section_variables_and_known_top_level_keys_are_configuration() {
        figment::Jail::expect_with(|jail| {
            jail.set_env("BERTH_REGISTRY", "http://127.0.0.1:5000");
            jail.set_env("BERTH_PASSWORD", "x");
            jail.set_env("BERTH_LOG", "debug");
            jail.set_env("BERTH_BIN", "/bin/berth");
            jail.set_env("BERTH_DATA_DIR", "/srv/b");
            jail.set_env("BERTH_SERVER__MAX_CONNECTIONS", "7");
            let c = Config::load(None, Overrides::default()).map_err(|e| e.to_string())?;
            assert_eq!(c.data_dir, PathBuf::from("/srv/b"));
            assert_eq!(c.server.max_connections, 7);
            assert_eq!(c.log.level, "info");
            jail.set_env("BERTH_STORGE__KIND", "s3");
            let e = Config::load(None, Overrides::default()).expect_err("unknown section");
            assert!(format!("{e:#}").to_lowercase().contains("storge"), "{e:#}");
            Ok(())
        });
    }

    #[test]
    fn masked_hides_every_secret() {
        let mut c = Config::default();
        c.storage.secret_access_key = Some("s3-secret".into());
        c.auth.initial_owner_password = Some("owner-pw".into());
        c.metadata.url = Some("postgres://berth:db-pw@127.0.0.1/berth".into());
        let text = format!("{:?}", c.masked());
        for secret in ["s3-secret", "owner-pw", "db-pw"] {
            assert!(!text.contains(secret), "{text}");
        }
    }
}
