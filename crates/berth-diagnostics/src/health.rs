//! `check-health`: the environment, then the connectivity chain to a
//! registry, each step printed as it passes, each failure with a stable
//! code and a fix. Stops at the first error unless told to go on.

use std::net::IpAddr;

use http::{Method, Uri};
use serde::Serialize;

use crate::credentials::Credentials;
use crate::pull::{CredentialSource, ImageRef, PullCheck};
use crate::transport::{self, Failure, Options};

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Finding {
    pub step: String,
    pub ok: bool,
    pub detail: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fix: Option<String>,
}

#[derive(Debug, Clone)]
pub struct HealthCheck {
    /// host[:port] of the login server.
    pub registry: String,
    pub credentials: Option<Credentials>,
    pub plain_http: bool,
    /// Why the scheme is what it is, when it was chosen by falling back.
    pub scheme_note: Option<String>,
    pub options: Options,
    /// Every name must resolve to the private endpoint's address.
    pub expect_private_ip: bool,
    pub image: Option<(String, String)>,
    pub ignore_errors: bool,
}

/// Versions of the container clients installed here.
pub fn client_versions() -> Vec<(String, Option<String>)> {
    let tools: [(&str, &[&str]); 7] = [
        ("docker", &["--version"]),
        ("podman", &["--version"]),
        ("skopeo", &["--version"]),
        ("ctr", &["--version"]),
        ("helm", &["version", "--short"]),
        ("oras", &["version"]),
        ("notation", &["version"]),
    ];
    tools
        .iter()
        .map(|(tool, args)| {
            let version = std::process::Command::new(tool)
                .args(*args)
                .stdin(std::process::Stdio::null())
                .output()
                .ok()
                .filter(|o| o.status.success())
                .map(|o| {
                    String::from_utf8_lossy(&o.stdout)
                        .lines()
                        .next()
                        .unwrap_or("")
                        .trim()
                        .to_string()
                });
            (tool.to_string(), version)
        })
        .collect()
}

fn failure_code(f: &Failure) -> &'static str {
    match f {
        Failure::Dns { .. } => "CONNECTIVITY_DNS_ERROR",
        Failure::Timeout { .. } => "CONNECTIVITY_TIMEOUT_ERROR",
        Failure::Refused { .. } => "CONNECTIVITY_REFUSED_ERROR",
        Failure::Proxy { .. } => "CONNECTIVITY_PROXY_ERROR",
        Failure::Tls { .. } | Failure::Http { .. } => "CONNECTIVITY_SSL_ERROR",
    }
}

impl HealthCheck {
    fn base(&self) -> String {
        format!(
            "{}://{}",
            if self.plain_http { "http" } else { "https" },
            self.registry
        )
    }

    fn host(&self) -> String {
        self.registry
            .rsplit_once(':')
            .filter(|(_, p)| p.chars().all(|c| c.is_ascii_digit()))
            .map(|(h, _)| h.to_string())
            .unwrap_or_else(|| self.registry.clone())
    }

    /// Runs every step, calling `report` as each finishes (so people see
    /// progress), and returns all findings.
    pub async fn run(&self, mut report: impl FnMut(&Finding)) -> Vec<Finding> {
        let mut findings: Vec<Finding> = Vec::new();
        macro_rules! emit {
            ($step:expr, $ok:expr, $detail:expr, $code:expr, $fix:expr) => {{
                let f = Finding {
                    step: $step.to_string(),
                    ok: $ok,
                    detail: $detail,
                    code: $code.map(|c: &str| c.to_string()),
                    fix: $fix.map(|f: String| f),
                };
                report(&f);
                let failed = !f.ok;
                findings.push(f);
                if failed && !self.ignore_errors {
                    return findings;
                }
            }};
        }

        for (tool, version) in client_versions() {
            let detail = version.unwrap_or_else(|| "not installed".into());
            emit!(
                format!("client {tool}"),
                true,
                detail,
                None::<&str>,
                None::<String>
            );
        }
        let host = self.host();
        let proxy = self.options.proxy.as_ref().map(|p| p.to_string());
        let port = self
            .registry
            .rsplit_once(':')
            .and_then(|(_, p)| p.parse().ok())
            .unwrap_or(if self.plain_http { 80 } else { 443 });
        let bypass = !self.options.proxied(&host, port);
        emit!(
            "proxy",
            true,
            match proxy {
                None => "no proxy configured".to_string(),
                Some(p) if bypass => format!("{p}; {host} bypasses it (NO_PROXY)"),
                Some(p) => format!("{p}; {host} goes through it"),
            },
            None::<&str>,
            None::<String>
        );

        let resolved = transport::resolve(&host, &self.options).await;
        match &resolved {
            Ok(ips) => emit!(
                "dns",
                true,
                format!("{host} → {}", ips.iter().map(|i| i.to_string()).collect::<Vec<_>>().join(", ")),
                None::<&str>,
                None::<String>
            ),
            Err(f) => emit!(
                "dns",
                false,
                f.to_string(),
                Some(failure_code(f)),
                Some(format!("check the name '{host}'; with a private endpoint, the private DNS zone must be linked to this network"))
            ),
        }

        let ping: Uri = match format!("{}/v2/", self.base()).parse() {
            Ok(u) => u,
            Err(e) => {
                emit!(
                    "connect",
                    false,
                    e.to_string(),
                    Some("CONNECTIVITY_ERROR"),
                    None::<String>
                );
                return findings;
            }
        };
        if let Some(note) = &self.scheme_note {
            emit!("scheme", true, note.clone(), None::<&str>, None::<String>);
        }
        let r = transport::request(&self.options, Method::GET, &ping, &[], 64 * 1024).await;
        let r = match r {
            Ok(r) => {
                emit!(
                    "connect",
                    true,
                    format!(
                        "{} reachable{}",
                        self.base(),
                        if self.plain_http {
                            ""
                        } else {
                            " (TLS verified)"
                        }
                    ),
                    None::<&str>,
                    None::<String>
                );
                r
            }
            Err(f) => {
                emit!(
                    "connect",
                    false,
                    f.to_string(),
                    Some(failure_code(&f)),
                    Some("allow the registry through firewalls and proxies, and check its certificate".to_string())
                );
                return findings;
            }
        };
        let challenge = r.header("www-authenticate").map(str::to_string);
        match r.status {
            200 => emit!("challenge", true, "GET /v2/ → 200 (no authentication)".to_string(), None::<&str>, None::<String>),
            401 if challenge.as_deref().is_some_and(|c| c.starts_with("Bearer realm=")) => emit!(
                "challenge",
                true,
                format!("GET /v2/ → 401 {}", challenge.clone().unwrap_or_default()),
                None::<&str>,
                None::<String>
            ),
            401 => emit!(
                "challenge",
                false,
                format!("401 with WWW-Authenticate {challenge:?}"),
                Some("CONNECTIVITY_WWW_AUTHENTICATE_ERROR"),
                Some("the registry must answer 401 with a Bearer challenge naming its token realm".to_string())
            ),
            403 => emit!(
                "challenge",
                false,
                r.error_message(),
                Some("CONNECTIVITY_FORBIDDEN_ERROR"),
                Some("the registry's network rules refuse this address: add a rule or use a private endpoint".to_string())
            ),
            429 => emit!("challenge", false, r.error_message(), Some("CONNECTIVITY_TOOMANYREQUESTS_ERROR"), Some("wait for Retry-After".to_string())),
            other => emit!(
                "challenge",
                false,
                format!("GET /v2/ → {other}: {}", r.error_message()),
                Some("CONNECTIVITY_CHALLENGE_ERROR"),
                Some("this does not look like a registry's /v2/ endpoint".to_string())
            ),
        }

        let mut endpoints = berth_manage::registry::Endpoints::default();
        // Data endpoints are checked only when the registry uses them.
        let mut data_enabled = true;
        if let Some(c) = &self.credentials {
            let basic = c.basic_header();
            // Refresh token, then an access token with it.
            let exchange: Uri = format!("{}/oauth2/exchange", self.base())
                .parse()
                .unwrap_or(ping.clone());
            let refresh = transport::request(
                &self.options,
                Method::POST,
                &exchange,
                &[("authorization".into(), basic.clone())],
                64 * 1024,
            )
            .await;
            match refresh {
                Ok(r) if r.status == 200 => emit!("refresh token", true, "obtained".to_string(), None::<&str>, None::<String>),
                Ok(r) => emit!(
                    "refresh token",
                    false,
                    format!("{}: {}", r.status, r.error_message()),
                    Some(if r.status == 429 { "CONNECTIVITY_TOOMANYREQUESTS_ERROR" } else { "CONNECTIVITY_REFRESH_TOKEN_ERROR" }),
                    Some("check the credentials (berth logs login --failed on the registry shows why)".to_string())
                ),
                Err(f) => emit!("refresh token", false, f.to_string(), Some(failure_code(&f)), None::<String>),
            }
            let token_uri: Uri = format!(
                "{}/oauth2/token?service={}&scope=registry:catalog:*",
                self.base(),
                self.registry
            )
            .parse()
            .unwrap_or(ping.clone());
            match transport::request(
                &self.options,
                Method::GET,
                &token_uri,
                &[("authorization".into(), basic.clone())],
                64 * 1024,
            )
            .await
            {
                Ok(r) if r.status == 200 => emit!(
                    "access token",
                    true,
                    "obtained".to_string(),
                    None::<&str>,
                    None::<String>
                ),
                Ok(r) => emit!(
                    "access token",
                    false,
                    format!("{}: {}", r.status, r.error_message()),
                    Some(if r.status == 429 {
                        "CONNECTIVITY_TOOMANYREQUESTS_ERROR"
                    } else {
                        "CONNECTIVITY_ACCESS_TOKEN_ERROR"
                    }),
                    Some("check the credentials and the identity's state".to_string())
                ),
                Err(f) => emit!(
                    "access token",
                    false,
                    f.to_string(),
                    Some(failure_code(&f)),
                    None::<String>
                ),
            }
            let network_uri: Uri = format!("{}/api/v1/network", self.base())
                .parse()
                .unwrap_or(ping.clone());
            if let Ok(r) = transport::request(
                &self.options,
                Method::GET,
                &network_uri,
                &[("authorization".into(), basic.clone())],
                1 << 20,
            )
            .await
            {
                if r.status == 200 {
                    data_enabled =
                        serde_json::from_slice::<berth_manage::network::NetworkSettings>(&r.body)
                            .map(|n| n.data_endpoint_enabled)
                            .unwrap_or(true);
                }
            }
            let endpoints_uri: Uri = format!("{}/api/v1/endpoints", self.base())
                .parse()
                .unwrap_or(ping.clone());
            if let Ok(r) = transport::request(
                &self.options,
                Method::GET,
                &endpoints_uri,
                &[("authorization".into(), basic)],
                1 << 20,
            )
            .await
            {
                if r.status == 200 {
                    endpoints = serde_json::from_slice(&r.body).unwrap_or_default();
                }
            }
        }

        // Data endpoints: each must resolve and answer.
        let mut data_hosts: Vec<String> = endpoints
            .data_endpoints
            .iter()
            .map(|d| d.host.clone())
            .collect();
        if !data_enabled && !data_hosts.is_empty() {
            emit!(
                "data endpoints",
                true,
                format!(
                    "{} configured, not enabled (blobs are served by the login server)",
                    data_hosts.len()
                ),
                None::<&str>,
                None::<String>
            );
            data_hosts.clear();
        }
        for data in &data_hosts {
            let uri: Result<Uri, _> = format!(
                "{}://{data}/data/",
                if self.plain_http { "http" } else { "https" }
            )
            .parse();
            let result = match uri {
                Ok(u) => transport::request(&self.options, Method::GET, &u, &[], 64 * 1024)
                    .await
                    .map(|_| ()),
                Err(e) => Err(Failure::Http {
                    host: data.clone(),
                    reason: e.to_string(),
                }),
            };
            match result {
                Ok(()) => emit!(
                    format!("data endpoint {data}"),
                    true,
                    "resolves and answers".to_string(),
                    None::<&str>,
                    None::<String>
                ),
                Err(f) => emit!(
                    format!("data endpoint {data}"),
                    false,
                    f.to_string(),
                    Some("CONNECTIVITY_DATA_ENDPOINT_ERROR"),
                    Some("allow and resolve every data endpoint, one per region".to_string())
                ),
            }
        }

        if self.expect_private_ip {
            let private: Vec<IpAddr> = endpoints
                .endpoints
                .iter()
                .filter(|e| e.endpoint.starts_with("private:"))
                .filter_map(|e| {
                    e.address
                        .rsplit_once(':')?
                        .0
                        .trim_matches(['[', ']'])
                        .parse()
                        .ok()
                })
                .collect();
            if private.is_empty() {
                emit!(
                    "private dns",
                    false,
                    "the registry lists no private endpoint (or the credentials cannot read its endpoints)".to_string(),
                    Some("CONNECTIVITY_PRIVATE_DNS_ERROR"),
                    Some("give credentials with the Reader role, or declare a [[private_endpoint]]".to_string())
                );
            }
            let mut names = vec![host.clone()];
            names.extend(data_hosts.iter().map(|d| {
                d.rsplit_once(':')
                    .map(|(h, _)| h.to_string())
                    .unwrap_or(d.clone())
            }));
            for name in names {
                let actual = transport::resolve(&name, &self.options)
                    .await
                    .unwrap_or_default();
                let ok = actual.iter().any(|a| private.contains(a));
                emit!(
                    format!("private dns {name}"),
                    ok,
                    format!(
                        "Expect {}, Actual {}",
                        private.iter().map(|i| i.to_string()).collect::<Vec<_>>().join(" or "),
                        if actual.is_empty() { "no address".to_string() } else { actual.iter().map(|i| i.to_string()).collect::<Vec<_>>().join(", ") }
                    ),
                    (!ok).then_some("CONNECTIVITY_PRIVATE_DNS_ERROR"),
                    (!ok).then(|| format!("make '{name}' resolve to the private endpoint's address in the private DNS zone linked to this network"))
                );
            }
        }

        if let Some((repository, tag)) = &self.image {
            let check = PullCheck {
                image: ImageRef {
                    host: self.registry.clone(),
                    repository: repository.clone(),
                    reference: tag.clone(),
                },
                credentials: match &self.credentials {
                    Some(c) => CredentialSource::Explicit(c.clone()),
                    None => CredentialSource::None,
                },
                platform: crate::pull::local_platform(),
                plain_http: self.plain_http,
                scheme_note: None,
                options: self.options.clone(),
            };
            let verdict = check.run().await;
            emit!(
                "image",
                verdict.ok,
                if verdict.ok {
                    format!("{repository}:{tag}: manifest and smallest layer fetched")
                } else {
                    verdict.evidence.clone().unwrap_or_default()
                },
                verdict.code,
                verdict.fix.clone()
            );
        }
        findings
    }
}
