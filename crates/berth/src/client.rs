//! The CLI's connection to a running registry: where it is
//! (`--registry` / `BERTH_REGISTRY`) and who we are (`--username` /
//! `--password`, `BERTH_USERNAME` / `BERTH_PASSWORD`, or what `berth login`
//! stored in the Docker credential file).

use std::path::PathBuf;

use anyhow::Context;
use base64::Engine;
use berth_manage::client::{ClientError, ManageClient};
use berth_manage::Endpoint;
use serde_json::Value;

use crate::cli_error::{chain, invalid_argument, CliError, CONNECTION_FAILED, INVALID_RESPONSE};
use crate::output::Format;

/// Where the registry is and who we are, as the client subcommands take it.
#[derive(Debug, Clone)]
pub struct Connection {
    pub registry: String,
    pub username: Option<String>,
    pub password: Option<String>,
}

/// The options every registry client subcommand takes. Defined twice by
/// this macro with the same ids: once on the top-level command (`berth
/// --registry URL sp list`, not global there, so that `berth serve` and the
/// offline commands do not list them) and once, global, on each client
/// subcommand (`berth sp list --registry URL`). clap merges the values of a
/// global argument along the path from the top-level command down to the
/// used subcommand, the more specific source winning (a command line over an
/// environment variable over a default), so both spellings give the client
/// subcommand the same values.
macro_rules! client_args {
    ($(#[$meta:meta])* $name:ident, global = $global:literal) => {
        $(#[$meta])*
        #[derive(Debug, Clone, clap::Args)]
        #[command(next_help_heading = "Registry client options")]
        pub struct $name {
            /// Registry URL, e.g. http://127.0.0.1:5000.
            #[arg(
                long,
                env = "BERTH_REGISTRY",
                default_value = "http://127.0.0.1:5000",
                global = $global
            )]
            pub registry: String,
            /// User name (owner, the admin user, a service principal's app id).
            #[arg(long, short = 'u', env = "BERTH_USERNAME", global = $global)]
            pub username: Option<String>,
            /// Password or secret.
            #[arg(
                long,
                short = 'p',
                env = "BERTH_PASSWORD",
                global = $global,
                hide_env_values = true
            )]
            pub password: Option<String>,
            /// Output format: a table for people, or the API's JSON (errors
            /// too, as {"error": {...}} on standard output).
            #[arg(
                long,
                short = 'o',
                value_enum,
                ignore_case = true,
                default_value = "table",
                global = $global
            )]
            pub output: Format,
        }

    };
}

client_args!(
    /// The client options of a client subcommand (global below it).
    ClientArgs,
    global = true
);
client_args!(
    /// The same options before the subcommand (`berth -o json sp list`).
    LeadingClientArgs,
    global = false
);

impl ClientArgs {
    pub fn connection(&self) -> Connection {
        Connection {
            registry: self.registry.clone(),
            username: self.username.clone(),
            password: self.password.clone(),
        }
    }
}

/// The host[:port] a URL names, as Docker credential files key it.
pub fn registry_host(url: &str) -> String {
    let rest = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"))
        .unwrap_or(url);
    rest.split('/').next().unwrap_or(rest).to_string()
}

/// `$DOCKER_CONFIG/config.json`, else `~/.docker/config.json`.
pub fn docker_config_path() -> PathBuf {
    if let Some(dir) = std::env::var_os("DOCKER_CONFIG") {
        return PathBuf::from(dir).join("config.json");
    }
    let home = std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_default();
    home.join(".docker").join("config.json")
}

/// Credentials stored for `host` in a Docker config file.
pub fn stored_credentials(host: &str) -> Option<(String, String)> {
    let text = std::fs::read_to_string(docker_config_path()).ok()?;
    let config: Value = serde_json::from_str(&text).ok()?;
    let auth = config.get("auths")?.get(host)?.get("auth")?.as_str()?;
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(auth)
        .ok()?;
    let (u, p) = std::str::from_utf8(&decoded).ok()?.split_once(':')?;
    Some((u.to_string(), p.to_string()))
}

/// Adds or replaces `host`'s entry, keeping everything else in the file.
pub fn store_credentials(host: &str, username: &str, password: &str) -> anyhow::Result<PathBuf> {
    let path = docker_config_path();
    let mut config: Value = match std::fs::read_to_string(&path) {
        Ok(text) => serde_json::from_str(&text)
            .with_context(|| format!("{} is not valid JSON", path.display()))?,
        Err(_) => serde_json::json!({}),
    };
    let auth = base64::engine::general_purpose::STANDARD.encode(format!("{username}:{password}"));
    if !config.get("auths").is_some_and(Value::is_object) {
        config["auths"] = serde_json::json!({});
    }
    config["auths"][host] = serde_json::json!({ "auth": auth });
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options
        .open(&path)
        .with_context(|| format!("cannot write {}", path.display()))?;
    std::io::Write::write_all(&mut file, serde_json::to_string_pretty(&config)?.as_bytes())?;
    Ok(path)
}

pub struct Client {
    base: String,
    http: reqwest::Client,
    credentials: Option<(String, String)>,
    manage: ManageClient,
}

impl Client {
    pub fn new(connection: &Connection) -> anyhow::Result<Client> {
        let base = connection.registry.trim_end_matches('/').to_string();
        let base = if base.contains("://") {
            base
        } else {
            format!("http://{base}")
        };
        let credentials = match (&connection.username, &connection.password) {
            (Some(u), Some(p)) => Some((u.clone(), p.clone())),
            (Some(_), None) | (None, Some(_)) => {
                return Err(invalid_argument(
                    "give both --username and --password (or neither, to use 'berth login' credentials)",
                ))
            }
            (None, None) => stored_credentials(&registry_host(&base)),
        };
        let http = reqwest::Client::builder()
            .no_proxy()
            .build()
            .context("cannot create an HTTP client")?;
        Ok(Client {
            manage: ManageClient::new(&base, http.clone(), credentials.clone()),
            base,
            http,
            credentials,
        })
    }

    pub fn base(&self) -> &str {
        &self.base
    }

    /// Sends a management request (a type of the contract) and returns its
    /// typed answer; a refusal carries the server's code and message.
    pub async fn send<E: Endpoint>(&self, request: &E) -> anyhow::Result<E::Response> {
        self.manage
            .send(request)
            .await
            .map_err(|e| self.cli_error(e))
    }

    /// The error for a request that got no answer.
    fn unreachable(&self, e: &reqwest::Error) -> anyhow::Error {
        let message = format!("cannot reach the registry at {}: {}", self.base, chain(e));
        CliError::new(CONNECTION_FAILED, message).into()
    }

    /// A typed client's failure as the CLI reports it (text or `-o json`).
    fn cli_error(&self, e: ClientError) -> anyhow::Error {
        match e {
            ClientError::Connect { ref source, .. } => CliError::new(
                CONNECTION_FAILED,
                format!(
                    "cannot reach the registry at {}: {}",
                    self.base,
                    chain(source)
                ),
            )
            .into(),
            ClientError::Refused {
                status,
                ref code,
                ref message,
            } => {
                let mut text = e.to_string();
                if status == 401 && self.credentials.is_none() {
                    text.push_str(
                        "
hint: pass --username/--password, set BERTH_USERNAME/BERTH_PASSWORD, or run 'berth login'",
                    );
                }
                CliError {
                    code: if code.is_empty() {
                        INVALID_RESPONSE.to_string()
                    } else {
                        code.clone()
                    },
                    message: message.clone(),
                    status: Some(status),
                    text,
                }
                .into()
            }
            ClientError::Unexpected { .. } => CliError::new(INVALID_RESPONSE, e.to_string()).into(),
        }
    }

    /// Checks credentials against `/v2/` with Basic auth.
    pub async fn check_login(&self) -> anyhow::Result<()> {
        let mut request = self.http.get(format!("{}/v2/", self.base));
        if let Some((u, p)) = &self.credentials {
            request = request.basic_auth(u, Some(p));
        }
        let response = request.send().await.map_err(|e| self.unreachable(&e))?;
        if response.status().is_success() {
            return Ok(());
        }
        let status = response.status();
        let text = response.text().await.unwrap_or_default();
        let body = serde_json::from_str::<Value>(&text).ok();
        let field = |name: &str| {
            body.as_ref()
                .and_then(|v| v["errors"][0][name].as_str())
                .map(str::to_string)
        };
        let message = field("message").unwrap_or(text);
        Err(CliError {
            code: field("code").unwrap_or_else(|| INVALID_RESPONSE.to_string()),
            text: format!("login failed: {status}: {message}"),
            message: format!("login failed: {message}"),
            status: Some(status.as_u16()),
        }
        .into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts() {
        assert_eq!(registry_host("http://127.0.0.1:5000/"), "127.0.0.1:5000");
        assert_eq!(registry_host("https://r.example/v2"), "r.example");
        assert_eq!(registry_host("r:5000"), "r:5000");
    }
}
