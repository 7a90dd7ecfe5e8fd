//! `berth credential-provider`: the kubelet's image credential provider
//! plugin (`credentialprovider.kubelet.k8s.io/v1`). The kubelet runs it with
//! a `CredentialProviderRequest` on standard input and reads a
//! `CredentialProviderResponse` from standard output.
//!
//! With a service-account token in the request (Kubernetes 1.34's
//! `tokenAttributes`, KEP-4412) the token is exchanged at the registry
//! (RFC 8693 token exchange) for a registry refresh token, which is what
//! the kubelet hands to the container runtime; the service principal
//! federated with that service account decides what may be pulled.
//! Without one (older clusters, or no `tokenAttributes`), the node's own
//! credentials come from `--node-credentials` (a Docker config file), so one
//! plugin serves every node. Errors go to standard error with a non-zero
//! status, which the kubelet logs.

use std::io::Read;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{anyhow, bail, Context};
use berth_client::credentials::{DockerConfig, Lookup, REFRESH_TOKEN_USER};
use berth_client::RegistryAddress;
use clap::Args;
use serde::{Deserialize, Serialize};
use serde_json::json;

const API_VERSION: &str = "credentialprovider.kubelet.k8s.io/v1";
const TOKEN_EXCHANGE: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
const JWT_TYPE: &str = "urn:ietf:params:oauth:token-type:jwt";
/// Seconds before a credential's end that the kubelet stops reusing it.
const MARGIN_SECS: i64 = 30;

#[derive(Debug, Args)]
pub struct CredentialProviderArgs {
    /// CA certificates (PEM) for the registry's HTTPS (SSL_CERT_FILE is read
    /// too).
    #[arg(long, value_name = "FILE")]
    pub ca_file: Option<PathBuf>,
    /// A Docker config file with the node's own credentials, used when the
    /// request carries no service-account token.
    #[arg(long, value_name = "FILE")]
    pub node_credentials: Option<PathBuf>,
    /// How long the kubelet may reuse node credentials (which carry no end
    /// date of their own), e.g. 5m.
    #[arg(long, default_value = "5m", value_parser = humantime::parse_duration)]
    pub node_cache_duration: Duration,
}

/// What the kubelet sends.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Request {
    api_version: String,
    kind: String,
    image: String,
    #[serde(default)]
    service_account_token: Option<String>,
}

#[derive(Debug, Serialize)]
struct AuthConfig {
    username: String,
    password: String,
}

/// The registry host of an image reference (`host[:port]/repo...`).
fn image_host(image: &str) -> anyhow::Result<String> {
    let (host, rest) = image
        .split_once('/')
        .ok_or_else(|| anyhow!("image '{image}' names no registry host"))?;
    if rest.is_empty() || !(host.contains('.') || host.contains(':') || host == "localhost") {
        bail!("image '{image}' names no registry host (expected host[:port]/repository)");
    }
    Ok(host.to_string())
}

/// Go's duration syntax, which the kubelet parses (`90s`).
fn go_duration(seconds: i64) -> String {
    format!("{}s", seconds.max(0))
}

/// The `exp` of a JWT, unverified (ours; only to size the cache).
fn jwt_exp(token: &str) -> Option<i64> {
    use base64::Engine as _;
    let part = token.split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(part)
        .ok()?;
    serde_json::from_slice::<serde_json::Value>(&bytes)
        .ok()?
        .get("exp")?
        .as_i64()
}

pub async fn run(args: &CredentialProviderArgs) -> anyhow::Result<()> {
    let mut input = String::new();
    std::io::stdin()
        .read_to_string(&mut input)
        .context("cannot read the CredentialProviderRequest from standard input")?;
    let request: Request = serde_json::from_str(&input)
        .context("standard input is not a CredentialProviderRequest")?;
    if request.kind != "CredentialProviderRequest" || request.api_version != API_VERSION {
        bail!(
            "expected kind CredentialProviderRequest, apiVersion {API_VERSION}; got kind {}, apiVersion {} (set apiVersion {API_VERSION} in the kubelet's CredentialProviderConfig)",
            request.kind,
            request.api_version
        );
    }
    let host = image_host(&request.image)?;
    let (auth, cache_secs) = match request
        .service_account_token
        .as_deref()
        .filter(|t| !t.is_empty())
    {
        Some(token) => exchange(args, &host, token).await?,
        None => node_credentials(args, &host)?,
    };
    let response = json!({
        "apiVersion": API_VERSION,
        "kind": "CredentialProviderResponse",
        // The kubelet keys its cache by service account on its own when
        // tokenAttributes are configured; per registry otherwise.
        "cacheKeyType": "Registry",
        "cacheDuration": go_duration(cache_secs),
        "auth": { host: auth },
    });
    println!("{response}");
    Ok(())
}

/// The service-account token for a registry refresh token.
async fn exchange(
    args: &CredentialProviderArgs,
    host: &str,
    token: &str,
) -> anyhow::Result<(AuthConfig, i64)> {
    let address: RegistryAddress = host.parse()?;
    let ca_files = berth_client::tls::ca_files(args.ca_file.as_deref());
    let options =
        berth_diagnostics::transport::Options::direct(ca_files.clone(), Duration::from_secs(10));
    let (scheme, _) = berth_diagnostics::transport::choose_scheme(&options, &address).await;
    let tls = berth_client::tls::client_config(&ca_files)?;
    let http = reqwest::Client::builder()
        .use_preconfigured_tls(tls)
        .timeout(Duration::from_secs(20))
        .build()?;
    let url = format!("{}/oauth2/token", address.url(scheme));
    let response = http
        .post(&url)
        .form(&[
            ("grant_type", TOKEN_EXCHANGE),
            ("subject_token_type", JWT_TYPE),
            ("subject_token", token),
            ("service", host),
        ])
        .send()
        .await
        .with_context(|| format!("cannot reach the registry's token endpoint {url}"))?;
    let status = response.status();
    let body: serde_json::Value = response.json().await.unwrap_or_default();
    if !status.is_success() {
        let message = body["errors"][0]["message"]
            .as_str()
            .unwrap_or("no message")
            .to_string();
        bail!("the registry at {host} refused the service-account token ({status}): {message}");
    }
    let refresh = body["refresh_token"]
        .as_str()
        .ok_or_else(|| anyhow!("the registry at {host} answered without a refresh_token"))?
        .to_string();
    let now = berth_util::now();
    let mut until = jwt_exp(&refresh).unwrap_or(now + 60);
    if let Some(subject_exp) = jwt_exp(token) {
        until = until.min(subject_exp);
    }
    Ok((
        AuthConfig {
            username: REFRESH_TOKEN_USER.to_string(),
            password: refresh,
        },
        (until - now - MARGIN_SECS).max(0),
    ))
}

/// The node's own credentials for `host`, from `--node-credentials`.
fn node_credentials(
    args: &CredentialProviderArgs,
    host: &str,
) -> anyhow::Result<(AuthConfig, i64)> {
    let Some(path) = &args.node_credentials else {
        bail!(
            "the request has no service-account token (configure tokenAttributes in the kubelet's CredentialProviderConfig) and no --node-credentials file was given"
        );
    };
    let config = DockerConfig::load(path)?.ok_or_else(|| {
        anyhow!(
            "the node credentials file {} does not exist",
            path.display()
        )
    })?;
    match config.find(host)? {
        (Lookup::Found(c), _) => {
            let (username, password) = c.basic();
            Ok((
                AuthConfig { username, password },
                args.node_cache_duration.as_secs() as i64,
            ))
        }
        (Lookup::NoEntry { hosts }, what) => bail!(
            "{what} has no credentials for {host} (it has: {})",
            if hosts.is_empty() {
                "none".to_string()
            } else {
                hosts.join(", ")
            }
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_and_durations() {
        assert_eq!(
            image_host("registry.example:5000/app/web:v1").expect("host"),
            "registry.example:5000"
        );
        assert_eq!(
            image_host("127.0.0.1:5000/a").expect("host"),
            "127.0.0.1:5000"
        );
        assert!(image_host("nginx").is_err());
        assert!(image_host("library/nginx").is_err());
        assert_eq!(go_duration(90), "90s");
        assert_eq!(go_duration(-5), "0s");
    }
}
