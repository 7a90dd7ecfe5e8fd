//! Runs every workload in `--smoke` mode against the real berth binary, so
//! the benchmark cannot rot: each workload must complete operations without
//! errors (times are never asserted). The binary is
//! `<workspace>/target/debug/berth` (or `$BERTH_BIN`), built beforehand with
//! `cargo build -p berth` (scripts/test.sh builds every binary first).
//! The TLS tests make a self-signed certificate with the openssl command
//! (installed by scripts/install-test-deps.sh).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;

use berth_bench::compare::Runs;
use berth_bench::params::ManifestAuth;
use berth_bench::{Mode, Params, RunOptions, Workload};
use tokio::io::{AsyncRead, AsyncWrite};

mod support;
use support::{start_berth, start_berth_with};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_workload_completes_against_berth() {
    let server = start_berth();
    let disk = tempfile::tempdir().expect("temp dir");
    let mut options = RunOptions::new(&server.url, Params::smoke());
    options.pid = Some(server.child.id());
    options.label = Some("berth".into());
    options.disk_dir = Some(disk.path().to_path_buf());
    options.credentials = server.credentials().await;
    let report = berth_bench::run(&options).await.expect("run");
    print!("{}", report.table());

    let names: Vec<&str> = report.workloads.iter().map(|w| w.name.as_str()).collect();
    let mut expected = vec!["disk-write"];
    expected.extend(Workload::ALL.iter().map(|w| w.name()));
    assert_eq!(names, expected);
    for w in &report.workloads {
        assert!(w.ops > 0, "{}: no operations completed", w.name);
        assert_eq!(w.errors, 0, "{}: errors {:?}", w.name, w.error_samples);
    }
    let tags = report.workload("tags-list").expect("tags-list");
    assert_eq!(tags.details["tags_listed"], Params::smoke().tags as f64);
    assert!(
        tags.details["pages_per_walk"] > 1.0,
        "the tag list was not paged"
    );
    assert!(report.idle_rss_kib.is_some_and(|k| k > 0));
    assert!(report.peak_rss_kib.is_some_and(|k| k > 0));

    // The JSON round-trips and the comparison renders every row.
    let json = serde_json::to_string(&report).expect("json");
    let back: berth_bench::Report = serde_json::from_str(&json).expect("parse");
    let comparison = Runs {
        berth: report,
        distribution: Some(back),
        nginx: None,
        berth_tls: None,
        nginx_tls: None,
        berth_bearer: None,
    }
    .compare();
    assert!(comparison.rows.iter().any(|r| r.ratio == Some(1.0)));
    assert!(comparison.table().contains("manifest-get"));
}

/// A minimal static file server (GET/HEAD, one `Range`, keep-alive) over
/// `root`, standing in for nginx; over TLS with `tls`.
async fn serve_files(
    listener: tokio::net::TcpListener,
    root: PathBuf,
    tls: Option<tokio_rustls::TlsAcceptor>,
) {
    loop {
        let Ok((socket, _)) = listener.accept().await else {
            return;
        };
        let (root, tls) = (root.clone(), tls.clone());
        tokio::spawn(async move {
            match tls {
                None => serve_connection(socket, root).await,
                Some(acceptor) => {
                    if let Ok(stream) = acceptor.accept(socket).await {
                        serve_connection(stream, root).await;
                    }
                }
            }
        });
    }
}

async fn serve_connection<S: AsyncRead + AsyncWrite + Unpin>(mut socket: S, root: PathBuf) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut buf = Vec::new();
    loop {
        while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
            let mut chunk = [0u8; 4096];
            match socket.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
        let end = buf
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .expect("found")
            + 4;
        let head = String::from_utf8_lossy(&buf[..end]).to_string();
        buf.drain(..end);
        let mut lines = head.lines();
        let request: Vec<&str> = lines.next().unwrap_or("").split(' ').collect();
        let (method, path) = (request[0], request.get(1).copied().unwrap_or("/"));
        let range = lines.find_map(|l| {
            let (k, v) = l.split_once(':')?;
            let (a, b) = k
                .eq_ignore_ascii_case("range")
                .then(|| v.trim().strip_prefix("bytes="))??
                .split_once('-')?;
            Some((a.parse::<usize>().ok()?, b.parse::<usize>().ok()?))
        });
        let file = std::fs::read(root.join(path.trim_start_matches('/')));
        let response = match (file, range) {
            (Err(_), _) => b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n".to_vec(),
            (Ok(bytes), None) => {
                let mut r = format!("HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n", bytes.len())
                    .into_bytes();
                if method != "HEAD" {
                    r.extend_from_slice(&bytes);
                }
                r
            }
            (Ok(bytes), Some((a, b))) => {
                let body = &bytes[a..=b.min(bytes.len() - 1)];
                let mut r = format!(
                    "HTTP/1.1 206 Partial Content\r\ncontent-length: {}\r\n\r\n",
                    body.len()
                )
                .into_bytes();
                r.extend_from_slice(body);
                r
            }
        };
        if socket.write_all(&response).await.is_err() || socket.flush().await.is_err() {
            return;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn static_mode_reads_the_files_it_wrote() {
    let root = tempfile::tempdir().expect("temp dir");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    tokio::spawn(serve_files(listener, root.path().to_path_buf(), None));

    let mut options = RunOptions::new(&url, Params::smoke());
    options.mode = Mode::Static;
    options.static_dir = Some(root.path().to_path_buf());
    options.label = Some("static".into());
    let report = berth_bench::run(&options).await.expect("run");
    print!("{}", report.table());
    let names: Vec<&str> = report.workloads.iter().map(|w| w.name.as_str()).collect();
    assert_eq!(names, ["pull", "pull-range", "manifest-get"]);
    for w in &report.workloads {
        assert!(w.ops > 0, "{}: no operations completed", w.name);
        assert_eq!(w.errors, 0, "{}: errors {:?}", w.name, w.error_samples);
    }
}

/// A self-signed certificate for 127.0.0.1 (what `openssl req -x509`
/// makes: CA:TRUE, trusted as itself through `--ca-file`) and its key.
fn self_signed(dir: &Path) -> (PathBuf, PathBuf) {
    let (cert, key) = (dir.join("tls.crt"), dir.join("tls.key"));
    let status = Command::new("openssl")
        .args(["req", "-x509", "-newkey", "ec", "-pkeyopt"])
        .args(["ec_paramgen_curve:P-256", "-nodes", "-days", "2"])
        .args([
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
        ])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .stderr(Stdio::null())
        .status()
        .expect("openssl runs (scripts/install-test-deps.sh installs it)");
    assert!(status.success(), "openssl req failed");
    (cert, key)
}

fn assert_clean(report: &berth_bench::Report, expected: &[&str]) {
    print!("{}", report.table());
    let names: Vec<&str> = report.workloads.iter().map(|w| w.name.as_str()).collect();
    assert_eq!(names, expected);
    for w in &report.workloads {
        assert!(w.ops > 0, "{}: no operations completed", w.name);
        assert_eq!(w.errors, 0, "{}: errors {:?}", w.name, w.error_samples);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_workloads_complete_against_berth_over_tls() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (cert, key) = self_signed(dir.path());
    let config = dir.path().join("berth.toml");
    std::fs::write(
        &config,
        format!(
            "[server]\ntls_cert = {:?}\ntls_key = {:?}\n",
            cert.display().to_string(),
            key.display().to_string()
        ),
    )
    .expect("write the config");
    let server = start_berth_with(Some(&config));
    assert!(
        server.url.starts_with("https://"),
        "berth does not serve TLS: {}",
        server.url
    );
    let credentials = server.credentials().await;

    let mut options = RunOptions::new(&server.url, Params::smoke());
    options.workloads = vec![Workload::Pull, Workload::PullRange, Workload::ManifestGet];
    options.pid = Some(server.child.id());
    options.label = Some("berth-tls".into());
    options.ca_file = Some(cert.clone());
    options.credentials = credentials.clone();
    let report = berth_bench::run(&options).await.expect("run over TLS");
    assert_clean(&report, &["pull", "pull-range", "manifest-get"]);

    // The manifest GET loop with a bearer token from the token service,
    // over TLS too.
    if credentials.is_some() {
        options.workloads = vec![Workload::ManifestGet];
        options.params.manifest_auth = ManifestAuth::Bearer;
        options.label = Some("berth-tls-bearer".into());
        let report = berth_bench::run(&options)
            .await
            .expect("bearer run over TLS");
        assert_clean(&report, &["manifest-get"]);
    }

    // Without the certificate trusted, nothing gets through.
    options.ca_file = None;
    options.params.manifest_auth = ManifestAuth::Basic;
    let error = berth_bench::run(&options)
        .await
        .expect_err("an untrusted certificate is refused");
    assert!(
        format!("{error:#}").contains("certificate"),
        "not refused for its certificate: {error:#}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn static_mode_reads_over_tls() {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};

    let dir = tempfile::tempdir().expect("temp dir");
    let (cert, key) = self_signed(dir.path());
    let chain = CertificateDer::pem_file_iter(&cert)
        .expect("cert file")
        .collect::<Result<Vec<_>, _>>()
        .expect("certs");
    let key = PrivateKeyDer::from_pem_file(&key).expect("key");
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .expect("server config");
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));

    let root = dir.path().join("root");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("https://{}", listener.local_addr().expect("addr"));
    tokio::spawn(serve_files(listener, root.clone(), Some(acceptor)));

    let mut options = RunOptions::new(&url, Params::smoke());
    options.mode = Mode::Static;
    options.static_dir = Some(root);
    options.ca_file = Some(cert);
    options.label = Some("static-tls".into());
    let report = berth_bench::run(&options).await.expect("run");
    assert_clean(&report, &["pull", "pull-range", "manifest-get"]);
}
