//! `check-pull IMAGE`: the kubelet's path, step by step, with one verdict.

use berth_util::percent::encode_component;
use http::{Method, Uri};
use serde_json::Value;

use crate::credentials::{Credentials, Lookup};
use crate::transport::{self, Failure, Options, Response};
use crate::{Cause, Step, Verdict};

const MANIFEST_TYPES: &str = "application/vnd.oci.image.index.v1+json, application/vnd.docker.distribution.manifest.list.v2+json, application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json";

/// An image reference: `host[:port]/repository[:tag|@digest]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageRef {
    pub host: String,
    pub repository: String,
    pub reference: String,
}

impl ImageRef {
    pub fn parse(image: &str) -> Result<ImageRef, String> {
        let (host, rest) = image.split_once('/').ok_or_else(|| {
            format!("'{image}' has no registry host (expected host[:port]/repository[:tag])")
        })?;
        let (repository, reference) = if let Some((r, d)) = rest.split_once('@') {
            (r.to_string(), d.to_string())
        } else {
            match rest.rsplit_once(':') {
                Some((r, t)) if !t.contains('/') => (r.to_string(), t.to_string()),
                _ => (rest.to_string(), "latest".to_string()),
            }
        };
        repository
            .parse::<berth_types::RepositoryName>()
            .map_err(|e| e.to_string())?;
        Ok(ImageRef {
            host: host.to_string(),
            repository,
            reference,
        })
    }
}

/// Where the credentials came from, and what they held for the host.
#[derive(Debug, Clone)]
pub enum CredentialSource {
    None,
    Explicit(Credentials),
    File { what: String, lookup: Lookup },
}

#[derive(Debug, Clone)]
pub struct PullCheck {
    pub image: ImageRef,
    pub credentials: CredentialSource,
    /// `os/arch[/variant]`.
    pub platform: String,
    pub plain_http: bool,
    /// Why the scheme is what it is, when it was chosen by falling back
    /// (see [`transport::choose_scheme`]).
    pub scheme_note: Option<String>,
    pub options: Options,
}

/// The platform of this machine, as an OCI `os/arch`.
pub fn local_platform() -> String {
    let arch = match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        other => other,
    };
    format!("{}/{}", std::env::consts::OS, arch)
}

struct Run {
    steps: Vec<Step>,
}

impl Run {
    fn pass(&mut self, name: &str, detail: impl Into<String>) {
        self.steps.push(Step {
            name: name.into(),
            detail: detail.into(),
        });
    }

    fn fail(self, cause: Cause, evidence: impl Into<String>, fix: impl Into<String>) -> Verdict {
        Verdict::failed(self.steps, cause, evidence.into(), fix.into())
    }
}

fn levenshtein(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let cur = row[j + 1];
            row[j + 1] = (prev + usize::from(ca != *cb)).min(row[j] + 1).min(cur + 1);
            prev = cur;
        }
    }
    row[b.len()]
}

/// The closest names, for "did you mean".
fn suggest(wanted: &str, candidates: &[String]) -> Vec<String> {
    let mut scored: Vec<(usize, &String)> = candidates
        .iter()
        .map(|c| (levenshtein(wanted, c), c))
        .filter(|(d, c)| *d <= (wanted.len().max(c.len()) / 2).max(2))
        .collect();
    scored.sort();
    scored.into_iter().take(3).map(|(_, c)| c.clone()).collect()
}

fn failure_cause(f: &Failure) -> (Cause, String) {
    let fix = match f {
        Failure::Dns { host, .. } => format!(
            "check the registry name '{host}' for typos; if the registry uses a private endpoint, the client's DNS must resolve the name (and each data endpoint name) to the private address — check the private DNS zone is linked to the client's network"
        ),
        Failure::Timeout { .. } => "nothing answered: a firewall, a network security rule, or a missing/disconnected peering drops the traffic; allow the registry's address and port (and the data endpoints) from this client".into(),
        Failure::Refused { .. } => "the address answered but nothing listens on that port: check the port and that the registry is running there".into(),
        Failure::Proxy { .. } => "the HTTPS proxy blocks the registry: allow CONNECT to the registry (and its data endpoints) on the proxy, or add the registry to NO_PROXY; configure both the client and the container daemon".into(),
        Failure::Tls { .. } => "fix the registry's certificate (renew it, include the registry's name, or trust its CA on the client with --ca-file / the daemon's certs.d), or use the right scheme".into(),
        Failure::Http { .. } => "the server did not speak the expected protocol: check the scheme (https vs --plain-http) and the port".into(),
    };
    let cause = match f {
        Failure::Dns { .. } => Cause::DnsError,
        Failure::Timeout { .. } => Cause::ConnectTimeout,
        Failure::Refused { .. } => Cause::ConnectRefused,
        Failure::Proxy { .. } => Cause::ProxyError,
        Failure::Tls { .. } | Failure::Http { .. } => Cause::TlsError,
    };
    (cause, fix)
}

/// The fix for a 401, by the words of the registry's message (first match).
const UNAUTHORIZED_FIXES: &[(&[&str], &str)] = &[
    (&["unknown identity"], "the user name is not an identity of this registry: a service principal deleted and re-created has a new app id — update the pull secret with the current app id and secret"),
    (&["expired"], "the secret has expired: reset it (berth sp credential reset --id APPID) and update the pull secret"),
    (&["disabled"], "the identity is disabled: enable it (berth token update --status enabled) or use another"),
    (&["wrong password"], "the password is wrong or was regenerated (the activity log shows 'regenerate login credentials'): update the pull secret with the current password"),
];

/// The fix for a refused federated (service-account) token.
const FEDERATED_FIXES: &[(&[&str], &str)] = &[
    (&["is not trusted"], "no service principal trusts this issuer: create a federated credential with the token's exact issuer (berth sp federated-credential create --issuer ...), as the cluster's --service-account-issuer says"),
    (&["is not federated"], "the issuer is trusted, but not for this subject: add a federated credential for the service account (--subject system:serviceaccount:NAMESPACE:NAME)"),
    (&["audience mismatch"], "mint the token for the credential's audience (the kubelet's tokenAttributes.serviceAccountTokenAudience, or kubectl create token --audience), or change the credential's --audience"),
    (&["expired", "not valid yet"], "the service-account token is outside its validity: use a fresh projected token, and check the clocks of the cluster and the registry"),
    (&["unknown key", "signature"], "the registry does not have the key that signed the token: the issuer rotated its keys (the registry refetches them within 30 s), or the credential's --jwks-file is stale"),
    (&["unreachable"], "the registry cannot fetch the issuer's keys: let it reach <issuer>/.well-known/openid-configuration and the jwks_uri (and trust its CA with --issuer-ca-file), or give the keys with --jwks-file"),
];

fn fix_for(message: &str, table: &[(&[&str], &str)], otherwise: &str) -> String {
    table
        .iter()
        .find(|(words, _)| words.iter().any(|w| message.contains(w)))
        .map_or(otherwise, |(_, fix)| fix)
        .to_string()
}

/// The shell command a registry message ends a clause with, starting at
/// `prefix` (up to the next `;` or the end).
fn command_in(message: &str, prefix: &str) -> Option<String> {
    let start = message.find(prefix)?;
    let rest = &message[start..];
    let end = [rest.find(';'), rest.find(" [")]
        .into_iter()
        .flatten()
        .min()
        .unwrap_or(rest.len());
    Some(rest[..end].trim_end_matches([' ', '.']).to_string())
}

/// The realm and service of a `Bearer` challenge.
fn challenge(value: &str) -> Option<(String, String)> {
    match berth_client::challenge::parse(value)? {
        berth_client::challenge::Challenge::Bearer { realm, service, .. } => {
            Some((realm, service.unwrap_or_default()))
        }
        berth_client::challenge::Challenge::Basic => None,
    }
}

/// The verdict for a pull that berth's artifact cache could not serve:
/// the error's `detail` names the rule and each upstream's failure.
fn cache_failure(run: &Run, what: &str, message: &str, r: &Response) -> Option<Verdict> {
    let detail = r.error_detail()?;
    let rule = detail.get("cacheRule")?.as_str()?.to_string();
    let upstreams = detail.get("upstreams")?.as_array()?.clone();
    let cause_of = |name: &str| {
        upstreams
            .iter()
            .find(|u| u.get("cause").and_then(|c| c.as_str()) == Some(name))
    };
    let upstream = |u: &serde_json::Value| {
        u.get("upstream")
            .and_then(|x| x.as_str())
            .unwrap_or("?")
            .to_string()
    };
    let run = Run {
        steps: run.steps.clone(),
    };
    if let Some(u) = cause_of("RATE_LIMITED") {
        let after = u
            .get("retryAfter")
            .and_then(|x| x.as_str())
            .map(|a| format!("{a} s"))
            .unwrap_or_else(|| "unknown".into());
        return Some(run.fail(
            Cause::CacheUpstreamRateLimited,
            format!("{what}: {} {message}", r.status),
            format!("upstream {} of cache rule '{rule}' rate-limits the registry (retry after: {after}); cached content is still served. Give the upstream a credential set with a higher limit (berth credential-set create, then berth cache-rule update --name {rule} --source ...@SET), or add a mirror as a further --source", upstream(u)),
        ));
    }
    if let Some(u) = cause_of("CREDENTIALS_REJECTED") {
        let fix = match u.get("credentialSet").and_then(|x| x.as_str()) {
            Some(set) => format!("upstream {} refused credential set '{set}' of cache rule '{rule}': update it with the upstream's current login (berth credential-set update --name {set} --password-stdin)", upstream(u)),
            None => format!("upstream {} wants credentials and cache rule '{rule}' gives it none: create a credential set (berth credential-set create) and name it in the rule's source (SOURCE@SET, berth cache-rule update --name {rule})", upstream(u)),
        };
        return Some(run.fail(
            Cause::CacheCredentialsRejected,
            format!("{what}: {} {message}", r.status),
            fix,
        ));
    }
    let broken = ["UNREACHABLE", "UPSTREAM_ERROR", "INVALID"];
    if let Some(u) = broken.iter().find_map(|c| cause_of(c)) {
        return Some(run.fail(
            Cause::CacheUpstreamUnreachable,
            format!("{what}: {} {message}", r.status),
            format!("no upstream of cache rule '{rule}' could serve content that is not cached yet ({} first): check that the registry's host can reach it (DNS, firewall, proxy), or add another upstream as a fallback (berth cache-rule update --name {rule} --source ... --source ...); what is cached keeps being served", upstream(u)),
        ));
    }
    None
}

impl PullCheck {
    fn base(&self) -> String {
        format!(
            "{}://{}",
            if self.plain_http { "http" } else { "https" },
            self.image.host
        )
    }

    fn uri(&self, path: &str) -> Result<Uri, Verdict> {
        format!("{}{path}", self.base()).parse().map_err(|e| {
            Verdict::failed(
                Vec::new(),
                Cause::Unexpected,
                format!("bad URL: {e}"),
                "check the image name".into(),
            )
        })
    }

    async fn get(
        &self,
        uri: &Uri,
        headers: &[(String, String)],
        max: usize,
    ) -> Result<Response, Failure> {
        transport::request(&self.options, Method::GET, uri, headers, max).await
    }

    fn credentials(&self) -> Option<&Credentials> {
        match &self.credentials {
            CredentialSource::Explicit(c) => Some(c),
            CredentialSource::File {
                lookup: Lookup::Found(c),
                ..
            } => Some(c),
            _ => None,
        }
    }

    /// The verdict for an error answer from the registry.
    fn registry_error(&self, run: Run, what: &str, r: &Response) -> Verdict {
        // Where the server knows more, point at its record of this request.
        let message = match r.header("x-correlation-id") {
            Some(id) => format!(
                "{} [correlation id {id}: `berth logs login --failed` on the registry has this request]",
                r.error_message()
            ),
            None => r.error_message(),
        };
        let repo = &self.image.repository;
        if let Some(verdict) = cache_failure(&run, what, &message, r) {
            return verdict;
        }
        match r.status {
            401 if self.credentials().is_none() => {
                let (evidence, fix) = match &self.credentials {
                    CredentialSource::File { what: file, lookup: Lookup::NoEntry { hosts } } => (
                        format!("{file} has no credentials for '{}' (it has: {}), so the pull went anonymous and the registry answered: {message}", self.image.host, if hosts.is_empty() { "none".to_string() } else { hosts.join(", ") }),
                        format!("add an entry for exactly '{}' to the pull secret (kubectl create secret docker-registry --docker-server={} ...), or fix the image's registry name if it is a typo{}", self.image.host, self.image.host, suggest(&self.image.host, hosts).first().map(|h| format!(" (did you mean {h}?)")).unwrap_or_default()),
                    ),
                    _ => (
                        format!("no credentials were given, so the pull went anonymous: {message}"),
                        "give the node or the pod a pull secret for this registry, or assign the node identity AcrPull (or enable anonymous pull if that is intended)".to_string(),
                    ),
                };
                run.fail(Cause::NoCredentialsForHost, evidence, fix)
            }
            401 if self.credentials().is_some_and(|c| c.username == "federated") => run.fail(
                Cause::FederatedTokenRefused,
                format!("{what}: 401 {message}"),
                fix_for(&message, FEDERATED_FIXES, "see the registry's login events (berth logs login --failed) for this correlation id"),
            ),
            401 if message.contains("admin user's passwords") => run.fail(
                Cause::AdminPasswordRegenerated,
                format!("{what}: 401 {message}"),
                "the admin password in the pull secret is stale: it was regenerated (when and by whom is in the cause); update the pull secret with a current password (berth credential show), or better, give the node a service principal or a token instead of the shared admin user",
            ),
            401 => run.fail(
                Cause::Unauthorized,
                format!("{what}: 401 {message}"),
                fix_for(&message, UNAUTHORIZED_FIXES, "check the credentials in the pull secret"),
            ),
            403 if message.contains("is not allowed access") => run.fail(
                Cause::NetworkDenied,
                format!("{what}: 403 {message}"),
                "the registry's network rules refuse this client's address: add an IP or subnet rule (berth network-rule add), use the private endpoint (and make the registry name resolve to it), or if public access is disabled, connect through a private endpoint",
            ),
            403 if message.contains("scope map") => run.fail(
                Cause::ScopeMapDenied,
                format!("{what}: 403 {message}"),
                command_in(&message, "berth scope-map update").map(|c| format!("tokens get their rights from their scope map, not from roles: {c}")).unwrap_or_else(|| "tokens get their rights from their scope map, not from roles: add the repository with content/read to the token's scope map (berth scope-map update)".into()),
            ),
            403 if message.contains("orphaned") => run.fail(
                Cause::OrphanedRoleAssignment,
                format!("{what}: 403 {message}"),
                command_in(&message, "berth role assignment create").map(|c| format!("the role was assigned to the deleted service principal's old app id: {c} (then delete the orphaned assignment: berth role assignment list shows it)")).unwrap_or_else(|| "assign the role to the current app id (berth role assignment list shows the orphaned one)".into()),
            ),
            403 => run.fail(
                Cause::PermissionDenied,
                format!("{what}: 403 {message}"),
                format!("assign a role that grants pull on '{repo}' (e.g. berth role assignment create --assignee <id> --role AcrPull --scope {repo}); if an assignment exists for a principal that was deleted and re-created, it is orphaned — see berth role assignment list and berth explain"),
            ),
            429 => run.fail(
                Cause::Throttled,
                format!("{what}: 429 {message} (Retry-After: {})", r.header("retry-after").unwrap_or("?")),
                "too many failed logins for this identity from this address: fix the credentials and wait for Retry-After (other identities and tokens are not affected)",
            ),
            503 => run.fail(
                Cause::RegistryUnavailable,
                format!("{what}: 503 {message} (Retry-After: {})", r.header("retry-after").unwrap_or("?")),
                "the registry answers but its metadata database or blob store does not (the message names which): nothing is wrong with this client; retry after Retry-After — operators: GET /readyz shows the failing backend, and the server log has the cause under the correlation id",
            ),
            status => run.fail(
                Cause::Unexpected,
                format!("{what}: HTTP {status} {message}"),
                "see the registry's logs (berth logs login --failed) for this correlation id",
            ),
        }
    }

    pub async fn run(&self) -> Verdict {
        let mut run = Run { steps: Vec::new() };
        match &self.credentials {
            CredentialSource::None => run.pass("credentials", "none given: the pull is anonymous"),
            CredentialSource::Explicit(c) => {
                run.pass("credentials", format!("{} (given)", c.describe()))
            }
            CredentialSource::File {
                what,
                lookup: Lookup::Found(c),
            } => run.pass("credentials", format!("{} from {what}", c.describe())),
            CredentialSource::File {
                what,
                lookup: Lookup::NoEntry { hosts },
            } => run.pass(
                "credentials",
                format!(
                    "{what} has no entry for '{}' (it has: {}): the pull is anonymous",
                    self.image.host,
                    hosts.join(", ")
                ),
            ),
        }
        let (host, port) = match self.image.host.rsplit_once(':') {
            Some((h, p)) if p.chars().all(|c| c.is_ascii_digit()) => {
                (h.to_string(), p.parse().unwrap_or(443))
            }
            _ => (
                self.image.host.clone(),
                if self.plain_http { 80 } else { 443 },
            ),
        };
        if self.options.proxied(&host, port) {
            run.pass(
                "proxy",
                format!(
                    "through {}",
                    self.options
                        .proxy
                        .as_ref()
                        .map(|p| p.to_string())
                        .unwrap_or_default()
                ),
            );
        } else {
            match transport::resolve(&host, &self.options).await {
                Ok(ips) => run.pass(
                    "dns",
                    format!(
                        "{host} → {}",
                        ips.iter()
                            .map(|i| i.to_string())
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                ),
                Err(f) => {
                    let (cause, fix) = failure_cause(&f);
                    return run.fail(cause, f.to_string(), fix);
                }
            }
        }

        // The challenge.
        let ping = match self.uri("/v2/") {
            Ok(u) => u,
            Err(v) => return v,
        };
        let r = match self.get(&ping, &[], 64 * 1024).await {
            Ok(r) => r,
            Err(f) => {
                let (cause, fix) = failure_cause(&f);
                return run.fail(cause, f.to_string(), fix);
            }
        };
        if let Some(note) = &self.scheme_note {
            run.pass("scheme", note.clone());
        }
        run.pass(
            "connect",
            format!("{} answered GET /v2/ with {}", self.base(), r.status),
        );
        let mut auth_header: Vec<(String, String)> = Vec::new();
        match r.status {
            200 => run.pass("challenge", "no authentication required"),
            401 => {
                let Some((realm, service)) = r.header("www-authenticate").and_then(challenge)
                else {
                    return run.fail(
                        Cause::Unexpected,
                        format!("401 without a Bearer challenge: {:?}", r.header("www-authenticate")),
                        "the registry's WWW-Authenticate header is missing or malformed (CONNECTIVITY_WWW_AUTHENTICATE_ERROR)",
                    );
                };
                run.pass(
                    "challenge",
                    format!("Bearer realm {realm}, service {service}"),
                );
                let scope = format!("repository:{}:pull", self.image.repository);
                let token_uri: Uri = match format!(
                    "{realm}?service={}&scope={}",
                    encode_component(&service),
                    encode_component(&scope)
                )
                .parse()
                {
                    Ok(u) => u,
                    Err(e) => {
                        return run.fail(
                            Cause::Unexpected,
                            format!("realm '{realm}': {e}"),
                            "the token realm is not a valid URL",
                        )
                    }
                };
                let t = match self.credentials() {
                    // A refresh token (`identitytoken`) is exchanged as
                    // containerd and Docker exchange it: OAuth2
                    // `grant_type=refresh_token`, a POST to the realm.
                    Some(Credentials {
                        identity_token: Some(refresh),
                        ..
                    }) => {
                        let form = format!(
                            "grant_type=refresh_token&refresh_token={}&service={}&scope={}&client_id=berth-check",
                            encode_component(refresh),
                            encode_component(&service),
                            encode_component(&scope)
                        );
                        let realm_uri: Uri = match realm.parse() {
                            Ok(u) => u,
                            Err(e) => {
                                return run.fail(
                                    Cause::Unexpected,
                                    format!("realm '{realm}': {e}"),
                                    "the token realm is not a valid URL",
                                )
                            }
                        };
                        transport::request_with_body(
                            &self.options,
                            Method::POST,
                            &realm_uri,
                            &[(
                                "content-type".to_string(),
                                "application/x-www-form-urlencoded".to_string(),
                            )],
                            bytes::Bytes::from(form),
                            64 * 1024,
                        )
                        .await
                    }
                    Some(c) => {
                        let headers = [("authorization".to_string(), c.basic_header())];
                        self.get(&token_uri, &headers, 64 * 1024).await
                    }
                    None => self.get(&token_uri, &[], 64 * 1024).await,
                };
                let t = match t {
                    Ok(t) => t,
                    Err(f) => {
                        let (cause, fix) = failure_cause(&f);
                        return run.fail(cause, format!("token endpoint: {f}"), fix);
                    }
                };
                if t.status != 200 {
                    return self.registry_error(run, "token request", &t);
                }
                let token = serde_json::from_slice::<Value>(&t.body).ok().and_then(|v| {
                    v.get("token")
                        .or_else(|| v.get("access_token"))
                        .and_then(Value::as_str)
                        .map(str::to_string)
                });
                let Some(token) = token else {
                    return run.fail(
                        Cause::Unexpected,
                        "the token response has no token",
                        "CONNECTIVITY_ACCESS_TOKEN_ERROR: check the token service",
                    );
                };
                run.pass("token", format!("access token for {scope}"));
                auth_header.push(("authorization".into(), format!("Bearer {token}")));
            }
            _ => return self.registry_error(run, "GET /v2/", &r),
        }

        // The manifest, and the platform.
        let mut headers = auth_header.clone();
        headers.push(("accept".into(), MANIFEST_TYPES.into()));
        let manifest_path = format!(
            "/v2/{}/manifests/{}",
            self.image.repository, self.image.reference
        );
        let m = match self.uri(&manifest_path) {
            Ok(u) => self.get(&u, &headers, 8 << 20).await,
            Err(v) => return v,
        };
        let m = match m {
            Ok(m) => m,
            Err(f) => {
                let (cause, fix) = failure_cause(&f);
                return run.fail(cause, f.to_string(), fix);
            }
        };
        if m.status == 404 {
            return self.not_found(run, &auth_header, &m).await;
        }
        if m.status != 200 {
            return self.registry_error(run, "manifest request", &m);
        }
        let mut manifest: Value = serde_json::from_slice(&m.body).unwrap_or(Value::Null);
        run.pass(
            "manifest",
            format!(
                "{}:{} ({})",
                self.image.repository,
                self.image.reference,
                m.header("content-type").unwrap_or("?")
            ),
        );
        if let Some(list) = manifest.get("manifests").and_then(Value::as_array).cloned() {
            let want: Vec<&str> = self.platform.split('/').collect();
            let found = list.iter().find(|d| {
                let p = &d["platform"];
                p["os"].as_str() == want.first().copied()
                    && p["architecture"].as_str() == want.get(1).copied()
                    && want.get(2).is_none_or(|v| p["variant"].as_str() == Some(v))
            });
            let Some(child) = found else {
                let available: Vec<String> = list
                    .iter()
                    .filter_map(|d| {
                        let p = &d["platform"];
                        Some(format!(
                            "{}/{}{}",
                            p["os"].as_str()?,
                            p["architecture"].as_str()?,
                            p["variant"]
                                .as_str()
                                .map(|v| format!("/{v}"))
                                .unwrap_or_default()
                        ))
                    })
                    .collect();
                let first = available.first().cloned().unwrap_or_default();
                let (os, arch) = first
                    .split_once('/')
                    .map(|(o, a)| (o.to_string(), a.split('/').next().unwrap_or("").to_string()))
                    .unwrap_or_default();
                return run.fail(
                    Cause::NoMatchingPlatform,
                    format!("no match for platform {} in manifest {}: the index has {}", self.platform, m.header("docker-content-digest").unwrap_or("?"), available.join(", ")),
                    format!("schedule the pod on a matching node with nodeSelector {{kubernetes.io/os: {os}, kubernetes.io/arch: {arch}}}, or build and push the image for {}", self.platform),
                );
            };
            let digest = child["digest"].as_str().unwrap_or("").to_string();
            run.pass("platform", format!("{} → {digest}", self.platform));
            let u = match self.uri(&format!("/v2/{}/manifests/{digest}", self.image.repository)) {
                Ok(u) => u,
                Err(v) => return v,
            };
            match self.get(&u, &headers, 8 << 20).await {
                Ok(r) if r.status == 200 => {
                    manifest = serde_json::from_slice(&r.body).unwrap_or(Value::Null)
                }
                Ok(r) => return self.registry_error(run, "platform manifest request", &r),
                Err(f) => {
                    let (cause, fix) = failure_cause(&f);
                    return run.fail(cause, f.to_string(), fix);
                }
            }
        }

        // The smallest layer, following a data-endpoint redirect.
        let layer = manifest
            .get("layers")
            .and_then(Value::as_array)
            .and_then(|l| {
                l.iter()
                    .min_by_key(|d| d["size"].as_u64().unwrap_or(u64::MAX))
                    .cloned()
            });
        let Some(layer) = layer else {
            run.pass("layer", "the manifest has no layers");
            return Verdict::passed(run.steps);
        };
        let digest = layer["digest"].as_str().unwrap_or("").to_string();
        let u = match self.uri(&format!("/v2/{}/blobs/{digest}", self.image.repository)) {
            Ok(u) => u,
            Err(v) => return v,
        };
        let b = match self.get(&u, &auth_header, 1 << 20).await {
            Ok(b) => b,
            Err(f) => {
                let (cause, fix) = failure_cause(&f);
                return run.fail(cause, format!("layer {digest}: {f}"), fix);
            }
        };
        if b.status == 307 || b.status == 302 {
            let location = b.header("location").unwrap_or("").to_string();
            let Ok(target) = location.parse::<Uri>() else {
                return run.fail(
                    Cause::DataEndpointError,
                    format!("redirect to an invalid URL '{location}'"),
                    "check the registry's data endpoint configuration",
                );
            };
            let data_host = target
                .authority()
                .map(|a| a.to_string())
                .unwrap_or_default();
            match self.get(&target, &[], 1 << 20).await {
                Ok(d) if d.status == 200 => {
                    run.pass("layer", format!("{digest} via data endpoint {data_host}"));
                }
                Ok(d) => {
                    return run.fail(
                        Cause::DataEndpointError,
                        format!("data endpoint {data_host} answered {}: {}", d.status, d.error_message()),
                        "the login server works but its data endpoint refuses this client: allow the data endpoint in firewalls, proxies and the registry's network rules",
                    );
                }
                Err(f) => {
                    return run.fail(
                        Cause::DataEndpointError,
                        format!("data endpoint {data_host}: {f}"),
                        format!("the login server works but the data endpoint '{data_host}' is unreachable: it must resolve (to the private address when using private endpoints) and be allowed by firewalls and proxies, one per region"),
                    );
                }
            }
        } else if b.status == 200 {
            run.pass("layer", format!("{digest} ({} bytes)", layer["size"]));
        } else {
            return self.registry_error(run, "layer request", &b);
        }
        Verdict::passed(run.steps)
    }

    /// 404: say which part of the name is wrong, with suggestions.
    async fn not_found(&self, run: Run, auth: &[(String, String)], m: &Response) -> Verdict {
        let message = m.error_message();
        let repo = &self.image.repository;
        if message.contains("no cache rule targets it") {
            let targets = message
                .split("cache rules target: ")
                .nth(1)
                .unwrap_or("?")
                .trim_end_matches(')');
            return run.fail(
                Cause::CacheNoRule,
                format!("repository '{repo}' does not exist on {}: {message}", self.image.host),
                format!("no cache rule targets '{repo}', so nothing is pulled through for it: pull through a cached repository (targets: {targets}), or create a rule for it (berth cache-rule create --target ... --source ...)"),
            );
        }
        if message.contains("NAME_UNKNOWN") {
            // Suggest from the catalog, if we may read it.
            // The catalog needs more than a pull token: ask with the
            // credentials themselves (Basic), as far as they reach.
            let mut basic = Vec::new();
            if let Some(c) = self.credentials() {
                basic.push(("authorization".to_string(), c.basic_header()));
            }
            let mut suggestions = Vec::new();
            if let Ok(u) = self.uri("/v2/_catalog") {
                if let Ok(c) = self.get(&u, &basic, 1 << 20).await {
                    if let Ok(v) = serde_json::from_slice::<Value>(&c.body) {
                        let names: Vec<String> = v["repositories"]
                            .as_array()
                            .map(|a| {
                                a.iter()
                                    .filter_map(|x| x.as_str().map(str::to_string))
                                    .collect()
                            })
                            .unwrap_or_default();
                        suggestions = suggest(repo, &names);
                    }
                }
            }
            return run.fail(
                Cause::NotFound,
                format!(
                    "repository '{repo}' does not exist on {}: {message}",
                    self.image.host
                ),
                if suggestions.is_empty() {
                    "check the repository name and the registry name in the image reference"
                        .to_string()
                } else {
                    format!("did you mean {}?", suggestions.join(", "))
                },
            );
        }
        let mut tags = Vec::new();
        if let Ok(u) = self.uri(&format!("/v2/{repo}/tags/list")) {
            if let Ok(t) = self.get(&u, auth, 1 << 20).await {
                if let Ok(v) = serde_json::from_slice::<Value>(&t.body) {
                    tags = v["tags"]
                        .as_array()
                        .map(|a| {
                            a.iter()
                                .filter_map(|x| x.as_str().map(str::to_string))
                                .collect()
                        })
                        .unwrap_or_default();
                }
            }
        }
        let suggestions = suggest(&self.image.reference, &tags);
        run.fail(
            Cause::NotFound,
            format!(
                "'{}' is not in repository '{repo}': {message}",
                self.image.reference
            ),
            if suggestions.is_empty() {
                format!(
                    "check the tag; the repository has {}",
                    if tags.is_empty() {
                        "no tags".to_string()
                    } else {
                        tags.iter().take(10).cloned().collect::<Vec<_>>().join(", ")
                    }
                )
            } else {
                format!("did you mean {}?", suggestions.join(", "))
            },
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_references() {
        let r = ImageRef::parse("127.0.0.1:5000/app/web:v1").expect("ref");
        assert_eq!(
            (r.host.as_str(), r.repository.as_str(), r.reference.as_str()),
            ("127.0.0.1:5000", "app/web", "v1")
        );
        let r = ImageRef::parse("reg.example/app@sha256:abc").expect("ref");
        assert_eq!(r.reference, "sha256:abc");
        assert_eq!(
            ImageRef::parse("reg.example/app").expect("ref").reference,
            "latest"
        );
        assert!(ImageRef::parse("app").is_err());
    }

    #[test]
    fn suggestions_and_challenges() {
        assert_eq!(
            suggest("v1.0", &["v1.1".into(), "latest".into()]),
            vec!["v1.1"]
        );
        assert_eq!(levenshtein("kitten", "sitting"), 3);
        assert_eq!(
            challenge(r#"Bearer realm="http://h/oauth2/token",service="h""#),
            Some(("http://h/oauth2/token".into(), "h".into()))
        );
    }
}
