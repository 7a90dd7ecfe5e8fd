//! The CLI's connection to a running registry: where it is
//! (`--registry` / `BERTH_REGISTRY`: a URL, or `host[:port]` — HTTPS, with
//! the plain-HTTP fallback Docker applies to loopback registries), whom it
//! trusts (`--ca-file`, `SSL_CERT_FILE`), and who we are (`--username` /
//! `--password`, `BERTH_USERNAME` / `BERTH_PASSWORD`, else the Docker
//! config file: its credential helper, or what `berth login` / `docker
//! login` stored there, a refresh token included). See `berth-client`.

use std::path::PathBuf;

use anyhow::Context;
use berth_client::credentials::{self, Credentials, DockerConfig, Lookup};
use berth_client::RegistryAddress;
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
    pub ca_file: Option<PathBuf>,
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
            /// The registry: a URL (http://127.0.0.1:5000, https://r.example)
            /// or host[:port] — HTTPS, falling back to plain HTTP for a
            /// loopback host as Docker does.
            #[arg(
                long,
                env = "BERTH_REGISTRY",
                default_value = "http://127.0.0.1:5000",
                global = $global
            )]
            pub registry: String,
            /// User name (owner, the admin user, a service principal's app
            /// id, a token name). Without it: the Docker config's
            /// credentials for the registry (helper, auth or identitytoken).
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
            /// Extra CA certificates (PEM) to trust for an HTTPS registry; a
            /// self-signed certificate given here is trusted as itself.
            /// SSL_CERT_FILE is read too.
            #[arg(long, value_name = "FILE", global = $global)]
            pub ca_file: Option<PathBuf>,
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
            ca_file: self.ca_file.clone(),
        }
    }
}

/// The registry address a connection names.
pub fn registry_address(registry: &str) -> anyhow::Result<RegistryAddress> {
    registry
        .parse::<RegistryAddress>()
        .map_err(|e| invalid_argument(e.to_string()))
}

/// The Docker config file the CLI reads and writes (empty if absent).
pub fn docker_config() -> anyhow::Result<DockerConfig> {
    let path = credentials::docker_config_path();
    Ok(DockerConfig::load(&path)?.unwrap_or_else(|| DockerConfig::empty(&path)))
}

/// An HTTP client trusting the system's CAs and `ca_file` (+ SSL_CERT_FILE).
pub fn http_client(ca_file: Option<&std::path::Path>) -> anyhow::Result<reqwest::Client> {
    let tls = berth_client::tls::client_config(&berth_client::tls::ca_files(ca_file))
        .map_err(|e| invalid_argument(e.to_string()))?;
    reqwest::Client::builder()
        .no_proxy()
        .use_preconfigured_tls(tls)
        .connect_timeout(std::time::Duration::from_secs(10))
        .build()
        .context("cannot create an HTTP client")
}

pub struct Client {
    base: String,
    http: reqwest::Client,
    credentials: Option<(String, String)>,
    manage: ManageClient,
}

impl Client {
    /// Connects (for a bare loopback `host[:port]`, finds out whether the
    /// registry speaks HTTPS or plain HTTP first).
    pub async fn new(connection: &Connection) -> anyhow::Result<Client> {
        let address = registry_address(&connection.registry)?;
        let credentials = match (&connection.username, &connection.password) {
            (Some(u), Some(p)) => Some(Credentials::password(u, p)),
            (Some(_), None) | (None, Some(_)) => {
                return Err(invalid_argument(
                    "give both --username and --password (or neither, to use the Docker config's credentials for the registry)",
                ))
            }
            (None, None) => match docker_config()?.find(&address.host)? {
                (Lookup::Found(c), _) => Some(c),
                (Lookup::NoEntry { .. }, _) => None,
            },
        };
        let http = http_client(connection.ca_file.as_deref())?;
        // A bare loopback host:port: HTTPS unless the registry does not
        // speak TLS (a certificate problem stays an HTTPS error).
        let options = berth_diagnostics::transport::Options::direct(
            berth_client::tls::ca_files(connection.ca_file.as_deref()),
            std::time::Duration::from_secs(5),
        );
        let (scheme, _) = berth_diagnostics::transport::choose_scheme(&options, &address).await;
        let base = address.url(scheme);
        let basic = credentials.as_ref().map(Credentials::basic);
        Ok(Client {
            manage: ManageClient::new(&base, http.clone(), basic.clone()),
            base,
            http,
            credentials: basic,
        })
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
