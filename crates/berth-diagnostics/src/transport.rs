//! One HTTP request at a time over a fresh connection, with every stage
//! done by hand — resolve, connect, proxy tunnel, TLS, HTTP — so a failure
//! says exactly which stage broke and why.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Method, Request, Uri};
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

/// How a request failed, by stage.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Failure {
    #[error("DNS lookup of '{host}' failed: {reason}")]
    Dns { host: String, reason: String },
    #[error("connecting to {addr} timed out after {seconds} s (i/o timeout: nothing answered)")]
    Timeout { addr: String, seconds: u64 },
    #[error("connecting to {addr} was refused: {reason}")]
    Refused { addr: String, reason: String },
    #[error("proxy {proxy}: {reason}")]
    Proxy { proxy: String, reason: String },
    #[error("TLS with {host}: {reason}")]
    Tls { host: String, reason: String },
    #[error("HTTP exchange with {host} failed: {reason}")]
    Http { host: String, reason: String },
}

impl Failure {
    /// The TLS handshake failed because the server does not speak TLS
    /// (it answered in plain HTTP, or hung up on the ClientHello) — not
    /// because of its certificate.
    pub fn is_not_tls(&self) -> bool {
        match self {
            Failure::Tls { reason, .. } => {
                let r = reason.to_ascii_lowercase();
                r.contains("did not answer with tls")
                    || r.contains("eof")
                    || r.contains("reset by peer")
                    || r.contains("corrupt message")
            }
            _ => false,
        }
    }
}

#[derive(Debug, Clone)]
pub struct Options {
    /// Resolve names with this DNS server instead of the system resolver.
    pub dns_server: Option<SocketAddr>,
    pub timeout: Duration,
    /// Extra PEM CA certificates to trust (`--ca-file`, `SSL_CERT_FILE`);
    /// a self-signed certificate in them is trusted as itself.
    pub ca_files: Vec<PathBuf>,
    /// `HTTPS_PROXY`-style proxy URL, and the hosts that bypass it.
    pub proxy: Option<Uri>,
    pub no_proxy: Vec<String>,
}

impl Options {
    /// Straight to the registry (no proxy, the system resolver), trusting
    /// `ca_files`: how the CLI's own clients probe a registry.
    pub fn direct(ca_files: Vec<PathBuf>, timeout: Duration) -> Options {
        Options {
            dns_server: None,
            timeout,
            ca_files,
            proxy: None,
            no_proxy: Vec::new(),
        }
    }

    /// Proxy settings from the environment, as container clients read them.
    pub fn proxy_from_env(&mut self, https: bool) {
        let var = |names: &[&str]| {
            names
                .iter()
                .find_map(|n| std::env::var(n).ok().filter(|v| !v.is_empty()))
        };
        let proxy = if https {
            var(&["HTTPS_PROXY", "https_proxy"])
        } else {
            var(&["HTTP_PROXY", "http_proxy"])
        };
        self.proxy = proxy.and_then(|p| p.parse().ok());
        self.no_proxy = var(&["NO_PROXY", "no_proxy"])
            .map(|v| {
                v.split(',')
                    .map(|s| s.trim().to_string())
                    .filter(|s| !s.is_empty())
                    .collect()
            })
            .unwrap_or_default();
    }

    /// Whether `host:port` goes through the proxy. `NO_PROXY` entries are
    /// read as Go's HTTP stack (and so containerd and docker) reads them:
    /// `*`, a domain (`.example.com` for subdomains only, `example.com` for
    /// it and its subdomains), `host:port`, an IP address or a CIDR range.
    pub fn proxied(&self, host: &str, port: u16) -> bool {
        if self.proxy.is_none() {
            return false;
        }
        let bare = host.trim_start_matches('[').trim_end_matches(']');
        let ip = bare.parse::<IpAddr>().ok();
        !self.no_proxy.iter().any(|entry| {
            let entry = entry.trim();
            if entry == "*" {
                return true;
            }
            if let Ok(net) = entry.parse::<ipnet::IpNet>() {
                return ip.is_some_and(|ip| net.contains(&ip));
            }
            if let Ok(addr) = entry.parse::<IpAddr>() {
                return ip == Some(addr);
            }
            let (name, entry_port) = match entry.rsplit_once(':') {
                Some((n, p)) if p.chars().all(|c| c.is_ascii_digit()) => (n, p.parse::<u16>().ok()),
                _ => (entry, None),
            };
            if entry_port.is_some_and(|p| p != port) {
                return false;
            }
            let name = name.trim_start_matches('[').trim_end_matches(']');
            match name.strip_prefix('.') {
                Some(domain) => bare.ends_with(&format!(".{domain}")),
                None => bare == name || bare.ends_with(&format!(".{name}")),
            }
        })
    }
}

#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The message of a distribution-spec error envelope, or the body.
    /// The first error's `detail`, where the registry sent one (berth's
    /// artifact cache names the upstreams that failed there).
    pub fn error_detail(&self) -> Option<serde_json::Value> {
        let v = serde_json::from_slice::<serde_json::Value>(&self.body).ok()?;
        let detail = v.get("errors")?.get(0)?.get("detail")?;
        (!detail.is_null()).then(|| detail.clone())
    }

    pub fn error_message(&self) -> String {
        serde_json::from_slice::<serde_json::Value>(&self.body)
            .ok()
            .and_then(|v| {
                let e = v.get("errors")?.get(0)?;
                Some(format!(
                    "{}: {}",
                    e.get("code")?.as_str()?,
                    e.get("message")?.as_str()?
                ))
            })
            .unwrap_or_else(|| {
                String::from_utf8_lossy(&self.body)
                    .chars()
                    .take(300)
                    .collect()
            })
    }
}

/// Resolves `host` (an IP literal resolves to itself).
pub async fn resolve(host: &str, options: &Options) -> Result<Vec<IpAddr>, Failure> {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    if let Ok(ip) = bare.parse::<IpAddr>() {
        return Ok(vec![ip]);
    }
    let fail = |reason: String| Failure::Dns {
        host: host.to_string(),
        reason,
    };
    match options.dns_server {
        Some(server) => {
            use hickory_resolver::config::{NameServerConfigGroup, ResolverConfig, ResolverOpts};
            let group = NameServerConfigGroup::from_ips_clear(&[server.ip()], server.port(), true);
            let mut opts = ResolverOpts::default();
            opts.timeout = options.timeout;
            opts.attempts = 1;
            let resolver = hickory_resolver::TokioAsyncResolver::tokio(
                ResolverConfig::from_parts(None, vec![], group),
                opts,
            );
            let found = resolver.lookup_ip(format!("{bare}.")).await.map_err(|e| {
                use hickory_resolver::error::ResolveErrorKind;
                match e.kind() {
                    ResolveErrorKind::NoRecordsFound { .. } => fail(format!(
                        "no such host (the DNS server {server} has no address for it)"
                    )),
                    ResolveErrorKind::Timeout => {
                        fail(format!("the DNS server {server} did not answer"))
                    }
                    _ => fail(e.to_string()),
                }
            })?;
            let ips: Vec<IpAddr> = found.iter().collect();
            if ips.is_empty() {
                return Err(fail("no addresses".into()));
            }
            Ok(ips)
        }
        None => {
            let found = tokio::time::timeout(options.timeout, tokio::net::lookup_host((bare, 0)))
                .await
                .map_err(|_| fail("the lookup timed out".into()))?
                .map_err(|e| fail(e.to_string()))?;
            Ok(found.map(|a| a.ip()).collect())
        }
    }
}

trait Stream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Stream for T {}

async fn connect(addr: SocketAddr, options: &Options) -> Result<TcpStream, Failure> {
    match tokio::time::timeout(options.timeout, TcpStream::connect(addr)).await {
        Err(_) => Err(Failure::Timeout {
            addr: addr.to_string(),
            seconds: options.timeout.as_secs(),
        }),
        Ok(Err(e)) if e.kind() == std::io::ErrorKind::TimedOut => Err(Failure::Timeout {
            addr: addr.to_string(),
            seconds: options.timeout.as_secs(),
        }),
        Ok(Err(e)) => Err(Failure::Refused {
            addr: addr.to_string(),
            reason: e.to_string(),
        }),
        Ok(Ok(s)) => Ok(s),
    }
}

/// Tries each address in turn, as Go's dialer does; the last failure is
/// the answer if none connects.
async fn connect_any(ips: &[IpAddr], port: u16, options: &Options) -> Result<TcpStream, Failure> {
    let mut last = Failure::Refused {
        addr: format!("port {port}"),
        reason: "no addresses".into(),
    };
    for ip in ips {
        match connect(SocketAddr::new(*ip, port), options).await {
            Ok(stream) => return Ok(stream),
            Err(e) => last = e,
        }
    }
    Err(last)
}

/// Opens a CONNECT tunnel to `host:port` through the proxy.
async fn tunnel(
    proxy: &Uri,
    host: &str,
    port: u16,
    options: &Options,
) -> Result<TcpStream, Failure> {
    let name = proxy.to_string();
    let fail = |reason: String| Failure::Proxy {
        proxy: name.clone(),
        reason,
    };
    let phost = proxy
        .host()
        .ok_or_else(|| fail("the proxy URL has no host".into()))?;
    let pport = proxy.port_u16().unwrap_or(80);
    let ips = resolve(phost, options)
        .await
        .map_err(|e| fail(e.to_string()))?;
    let mut stream = connect_any(&ips, pport, options)
        .await
        .map_err(|e| fail(e.to_string()))?;
    let request = format!("CONNECT {host}:{port} HTTP/1.1\r\nHost: {host}:{port}\r\n\r\n");
    stream
        .write_all(request.as_bytes())
        .await
        .map_err(|e| fail(e.to_string()))?;
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        let n = tokio::time::timeout(options.timeout, stream.read(&mut byte))
            .await
            .map_err(|_| fail("no answer to CONNECT".into()))?
            .map_err(|e| fail(e.to_string()))?;
        if n == 0 {
            return Err(fail(
                "proxyconnect tcp: EOF (the proxy closed the connection)".into(),
            ));
        }
        head.push(byte[0]);
        if head.len() > 16 * 1024 {
            return Err(fail("the proxy's answer is too long".into()));
        }
    }
    let status_line = String::from_utf8_lossy(&head);
    let status_line = status_line.lines().next().unwrap_or("").to_string();
    let code = status_line.split_whitespace().nth(1).unwrap_or("");
    if code != "200" {
        return Err(fail(format!(
            "the proxy refused CONNECT {host}:{port}: {status_line}"
        )));
    }
    Ok(stream)
}

fn tls_config(options: &Options) -> Result<rustls::ClientConfig, String> {
    berth_client::tls::client_config(&options.ca_files).map_err(|e| e.to_string())
}

/// Words for a rustls failure: expiry, name mismatch, unknown issuer, or a
/// server that is not speaking TLS at all.
fn describe_tls(e: &std::io::Error) -> String {
    let inner = e.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>());
    match inner {
        Some(rustls::Error::InvalidCertificate(c)) => match c {
            rustls::CertificateError::Expired | rustls::CertificateError::ExpiredContext { .. } => {
                "the server's certificate has expired".into()
            }
            rustls::CertificateError::NotValidForName
            | rustls::CertificateError::NotValidForNameContext { .. } => {
                "the certificate's names do not match the registry host (name mismatch)".into()
            }
            rustls::CertificateError::UnknownIssuer => {
                "the certificate is signed by an unknown issuer (not in the trusted CAs)".into()
            }
            other => format!("the certificate is not acceptable: {other:?}"),
        },
        Some(rustls::Error::InvalidMessage(_))
        | Some(rustls::Error::InappropriateMessage { .. }) => {
            "the server did not answer with TLS (is it plain HTTP on this port?)".into()
        }
        Some(other) => other.to_string(),
        None => e.to_string(),
    }
}

/// Sends one request to `uri` and reads the answer (at most `max_body`
/// bytes of body).
pub async fn request(
    options: &Options,
    method: Method,
    uri: &Uri,
    headers: &[(String, String)],
    max_body: usize,
) -> Result<Response, Failure> {
    request_with_body(options, method, uri, headers, Bytes::new(), max_body).await
}

/// For a registry named without a scheme: HTTPS, or for a loopback host
/// that does not speak TLS, plain HTTP — what containerd does for
/// localhost — with a note saying so. A failure that is not about TLS (nothing
/// listens, say) keeps HTTPS, for the check itself to report.
pub async fn choose_scheme(
    options: &Options,
    address: &berth_client::RegistryAddress,
) -> (berth_client::Scheme, Option<String>) {
    use berth_client::Scheme;
    let schemes = address.schemes();
    if schemes.len() == 1 {
        return (schemes[0], None);
    }
    let Ok(uri) = format!("{}/v2/", address.url(Scheme::Https)).parse::<Uri>() else {
        return (Scheme::Https, None);
    };
    match request(options, Method::GET, &uri, &[], 64 * 1024).await {
        // Only a server that does not speak TLS: a bad certificate is a
        // TLS problem to report, not a reason to drop TLS.
        Err(f) if f.is_not_tls() => (
            Scheme::Http,
            Some(format!(
                "HTTPS to {} failed ({f}); it is a loopback registry, so plain HTTP is used, as Docker and containerd do (give https:// or http:// to choose)",
                address.host
            )),
        ),
        _ => (Scheme::Https, None),
    }
}

/// [`request`] with a body (a token request's form, say).
pub async fn request_with_body(
    options: &Options,
    method: Method,
    uri: &Uri,
    headers: &[(String, String)],
    body: Bytes,
    max_body: usize,
) -> Result<Response, Failure> {
    let https = uri.scheme_str() == Some("https");
    let host = uri.host().unwrap_or("").to_string();
    let port = uri.port_u16().unwrap_or(if https { 443 } else { 80 });
    let authority = uri
        .authority()
        .map(|a| a.as_str().to_string())
        .unwrap_or_else(|| host.clone());
    let tcp = match (&options.proxy, options.proxied(&host, port)) {
        (Some(proxy), true) => tunnel(proxy, &host, port, options).await?,
        _ => connect_any(&resolve(&host, options).await?, port, options).await?,
    };
    let stream: Box<dyn Stream> = if https {
        let config = tls_config(options).map_err(|reason| Failure::Tls {
            host: host.clone(),
            reason,
        })?;
        let name = rustls::pki_types::ServerName::try_from(
            host.trim_start_matches('[')
                .trim_end_matches(']')
                .to_string(),
        )
        .map_err(|e| Failure::Tls {
            host: host.clone(),
            reason: e.to_string(),
        })?;
        let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
        let tls = tokio::time::timeout(options.timeout, connector.connect(name, tcp))
            .await
            .map_err(|_| Failure::Tls {
                host: host.clone(),
                reason: "the TLS handshake timed out".into(),
            })?
            .map_err(|e| Failure::Tls {
                host: host.clone(),
                reason: describe_tls(&e),
            })?;
        Box::new(tls)
    } else {
        Box::new(tcp)
    };
    let http_fail = |reason: String| Failure::Http {
        host: authority.clone(),
        reason,
    };
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| http_fail(e.to_string()))?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    let path = uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
    let mut builder = Request::builder()
        .method(method)
        .uri(path)
        .header("host", &authority)
        .header(
            "user-agent",
            concat!("berth-check/", env!("CARGO_PKG_VERSION")),
        );
    for (k, v) in headers {
        builder = builder.header(k.as_str(), v.as_str());
    }
    let req = builder
        .body(Full::new(body))
        .map_err(|e| http_fail(e.to_string()))?;
    let response = tokio::time::timeout(options.timeout, sender.send_request(req))
        .await
        .map_err(|_| http_fail("no response within the timeout".into()))?
        .map_err(|e| {
            if https {
                http_fail(e.to_string())
            } else {
                http_fail(format!("{e} (does the server expect TLS on this port?)"))
            }
        })?;
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let body = match Limited::new(response.into_body(), max_body).collect().await {
        Ok(b) => b.to_bytes(),
        // A layer larger than we care to read: the status is what matters.
        Err(_) => Bytes::new(),
    };
    Ok(Response {
        status,
        headers,
        body,
    })
}
