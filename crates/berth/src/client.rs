//! The CLI's connection to a running registry: where it is
//! (`--registry` / `BERTH_REGISTRY`) and who we are (`--username` /
//! `--password`, `BERTH_USERNAME` / `BERTH_PASSWORD`, or what `berth login`
//! stored in the Docker credential file).

use std::path::PathBuf;

use anyhow::{bail, Context};
use base64::Engine;
use serde_json::Value;

#[derive(Debug, Clone, clap::Args)]
pub struct Connection {
    /// Registry URL, e.g. http://127.0.0.1:5000.
    #[arg(
        long,
        env = "BERTH_REGISTRY",
        default_value = "http://127.0.0.1:5000",
        global = true
    )]
    pub registry: String,
    /// User name (owner, the admin user, a service principal's app id).
    #[arg(long, short = 'u', env = "BERTH_USERNAME", global = true)]
    pub username: Option<String>,
    /// Password or secret.
    #[arg(
        long,
        short = 'p',
        env = "BERTH_PASSWORD",
        global = true,
        hide_env_values = true
    )]
    pub password: Option<String>,
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
                bail!("give both --username and --password (or neither, to use 'berth login' credentials)")
            }
            (None, None) => stored_credentials(&registry_host(&base)),
        };
        let http = reqwest::Client::builder()
            .no_proxy()
            .build()
            .context("cannot create an HTTP client")?;
        Ok(Client {
            base,
            http,
            credentials,
        })
    }

    pub fn base(&self) -> &str {
        &self.base
    }

    /// Sends a request to `path` (with an optional JSON body) and returns
    /// the JSON answer; a failure carries the server's message.
    pub async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> anyhow::Result<Value> {
        let url = format!("{}{path}", self.base);
        let mut request = self.http.request(method.clone(), &url);
        if let Some((u, p)) = &self.credentials {
            request = request.basic_auth(u, Some(p));
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request
            .send()
            .await
            .with_context(|| format!("cannot reach the registry at {}", self.base))?;
        let status = response.status();
        let text = response.text().await.unwrap_or_default();
        if status.is_success() {
            if text.trim().is_empty() {
                return Ok(Value::Null);
            }
            return serde_json::from_str(&text).with_context(|| {
                format!("the registry answered {method} {path} with invalid JSON")
            });
        }
        let message = serde_json::from_str::<Value>(&text)
            .ok()
            .and_then(|v| {
                let e = v.get("errors")?.get(0)?.clone();
                Some(format!(
                    "{}: {}",
                    e.get("code")?.as_str()?,
                    e.get("message")?.as_str()?
                ))
            })
            .unwrap_or(text);
        if status == reqwest::StatusCode::UNAUTHORIZED && self.credentials.is_none() {
            bail!("{status}: {message}\nhint: pass --username/--password, set BERTH_USERNAME/BERTH_PASSWORD, or run 'berth login'");
        }
        bail!("{status}: {message}")
    }

    pub async fn get(&self, path: &str) -> anyhow::Result<Value> {
        self.call(reqwest::Method::GET, path, None).await
    }

    pub async fn post(&self, path: &str, body: Value) -> anyhow::Result<Value> {
        self.call(reqwest::Method::POST, path, Some(body)).await
    }

    pub async fn patch(&self, path: &str, body: Value) -> anyhow::Result<Value> {
        self.call(reqwest::Method::PATCH, path, Some(body)).await
    }

    pub async fn delete(&self, path: &str) -> anyhow::Result<Value> {
        self.call(reqwest::Method::DELETE, path, None).await
    }

    /// Checks credentials against `/v2/` with Basic auth.
    pub async fn check_login(&self) -> anyhow::Result<()> {
        let mut request = self.http.get(format!("{}/v2/", self.base));
        if let Some((u, p)) = &self.credentials {
            request = request.basic_auth(u, Some(p));
        }
        let response = request
            .send()
            .await
            .with_context(|| format!("cannot reach the registry at {}", self.base))?;
        if response.status().is_success() {
            return Ok(());
        }
        let status = response.status();
        let text = response.text().await.unwrap_or_default();
        let message = serde_json::from_str::<Value>(&text)
            .ok()
            .and_then(|v| v["errors"][0]["message"].as_str().map(str::to_string))
            .unwrap_or(text);
        bail!("login failed: {status}: {message}")
    }
}

/// Percent-encodes a query value; '/' stays (repository names).
pub use berth_util::percent::encode_path as query_value;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_and_query_values() {
        assert_eq!(registry_host("http://127.0.0.1:5000/"), "127.0.0.1:5000");
        assert_eq!(registry_host("https://r.example/v2"), "r.example");
        assert_eq!(registry_host("r:5000"), "r:5000");
        assert_eq!(query_value("app/web x"), "app/web%20x");
    }
}
