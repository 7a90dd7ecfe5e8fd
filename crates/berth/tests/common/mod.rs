//! Shared helpers for berth's integration tests: a real `berth serve`
//! process per test (start, kill -9, graceful stop, restart on the same data
//! directory), an HTTP client for the distribution API, a raw HTTP/1.1
//! client for requests a URL library would normalise away (`..`, `%2e%2e`),
//! and small OCI fixtures.
//!
//! Every test binary includes this module and uses a different subset of it.
//!
//! With `BERTH_TEST_SCALE_OUT=1` every server runs on the scale-out
//! backends instead of the embedded ones: a fresh PostgreSQL database and a
//! fresh key prefix in the S3 bucket per data directory (so a restart finds
//! its data again), on the engines named by the `BERTH_TEST_POSTGRES_*` and
//! `BERTH_TEST_S3_*` variables (`scripts/test.sh` starts them and runs the
//! API suites both ways).
#![allow(dead_code)]

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use reqwest::{Response, StatusCode};
use serde_json::{json, Value};
use sha2::{Digest as _, Sha256, Sha512};

pub const BIN: &str = env!("CARGO_BIN_EXE_berth");

pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
pub const OCI_LAYER: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
pub const OCI_EMPTY: &str = "application/vnd.oci.empty.v1+json";
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
pub const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
pub const DOCKER_LAYER: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";

/// How long a server may take to print its address or to stop.
const START_TIMEOUT: Duration = Duration::from_secs(60);
const STOP_TIMEOUT: Duration = Duration::from_secs(60);

// ---------------------------------------------------------------------------
// The server process

fn test_var(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!(
            "BERTH_TEST_SCALE_OUT=1 needs {name}: run the tests through scripts/test.sh, which \
             starts PostgreSQL and Garage (scripts/scale-out-services.sh)"
        )
    })
}

/// The scale-out deployment named after `key` as a TOML configuration file
/// (for commands such as `berth migrate --to`).
pub fn scale_out_config(key: &Path, file: &Path) {
    let mut toml = String::from("[storage]\n");
    let mut metadata = String::new();
    for (var, value) in scale_out_env(key) {
        if let Some(field) = var.strip_prefix("BERTH_STORAGE__") {
            toml.push_str(&format!("{} = {value:?}\n", field.to_lowercase()));
        } else if var == "BERTH_METADATA__URL" {
            metadata = format!("[metadata]\nurl = {value:?}\n");
        }
    }
    toml.push_str(&metadata);
    std::fs::write(file, toml).expect("write config");
}

/// Configuration (as `BERTH_*` variables) putting a server's metadata in a
/// PostgreSQL database and its blobs under an S3 prefix, both named after
/// its data directory and created on first use.
fn scale_out_env(data_dir: &Path) -> Vec<(String, String)> {
    let name = scale_out_name(data_dir);
    let marker = data_dir.join(".scale-out-database");
    if !marker.exists() {
        let admin = test_var("BERTH_TEST_POSTGRES_ADMIN_URL");
        let status = Command::new("psql")
            .args([
                "-q",
                &admin,
                "-c",
                &format!("CREATE DATABASE {name} OWNER berth"),
            ])
            .status()
            .expect("run psql");
        assert!(status.success(), "could not create database {name}");
        std::fs::create_dir_all(data_dir).expect("data dir");
        std::fs::write(&marker, &name).expect("marker");
    }
    let base = test_var("BERTH_TEST_POSTGRES_URL");
    let url = format!("{}/{name}", base.rsplit_once('/').expect("database url").0);
    vec![
        ("BERTH_METADATA__URL".into(), url),
        ("BERTH_STORAGE__KIND".into(), "s3".into()),
        (
            "BERTH_STORAGE__BUCKET".into(),
            test_var("BERTH_TEST_S3_BUCKET"),
        ),
        (
            "BERTH_STORAGE__ENDPOINT".into(),
            test_var("BERTH_TEST_S3_ENDPOINT"),
        ),
        (
            "BERTH_STORAGE__REGION".into(),
            test_var("BERTH_TEST_S3_REGION"),
        ),
        (
            "BERTH_STORAGE__ACCESS_KEY_ID".into(),
            test_var("BERTH_TEST_S3_ACCESS_KEY_ID"),
        ),
        (
            "BERTH_STORAGE__SECRET_ACCESS_KEY".into(),
            test_var("BERTH_TEST_S3_SECRET_ACCESS_KEY"),
        ),
        ("BERTH_STORAGE__PREFIX".into(), format!("{name}/")),
    ]
}
// ---------------------------------------------------------------------------

/// One `berth serve` process on `127.0.0.1:<random port>` over a data
/// directory that outlives restarts. Killed (SIGKILL) on drop; when the test
/// is failing, the server's log is printed. The owner identity gets a known
/// password (`auth.initial_owner_password`) so requests can authenticate.
pub struct TestServer {
    child: Option<Child>,
    data_dir: PathBuf,
    addr: SocketAddr,
    env: Vec<(String, String)>,
    owner_password: String,
    log_dir: tempfile::TempDir,
    starts: usize,
    /// Runs on the scale-out backends named after this directory (another
    /// node's data directory, for several nodes over one deployment).
    backend_of: Option<PathBuf>,
}

impl TestServer {
    /// Starts a server on `data_dir` with the default configuration.
    pub fn start(data_dir: &Path) -> TestServer {
        Self::start_with_env(data_dir, &[])
    }

    /// Starts a server with extra environment (`BERTH_GC__...`). Any other
    /// `BERTH_*` variable of the test's own environment is not passed on.
    pub fn start_with_env(data_dir: &Path, env: &[(&str, &str)]) -> TestServer {
        let password = format!(
            "test-owner-{}",
            hex::encode(bytes(
                std::process::id() as u64 ^ data_dir.as_os_str().len() as u64,
                12
            ))
        );
        Self::launch(data_dir, env, password, None)
    }

    /// Starts another node of `first`'s scale-out deployment (same
    /// PostgreSQL database, same bucket prefix, same owner) on its own data
    /// directory.
    pub fn start_node(data_dir: &Path, first: &TestServer, env: &[(&str, &str)]) -> TestServer {
        let backend = first.backend_key().to_path_buf();
        Self::launch(data_dir, env, first.owner_password.clone(), Some(backend))
    }

    /// Starts the first node of a scale-out deployment, whatever
    /// `BERTH_TEST_SCALE_OUT` says.
    pub fn start_scale_out(data_dir: &Path, env: &[(&str, &str)]) -> TestServer {
        let password = format!(
            "test-owner-{}",
            hex::encode(bytes(std::process::id() as u64, 12))
        );
        Self::start_scale_out_as(data_dir, &password, env)
    }

    /// [`TestServer::start_scale_out`] on a deployment whose owner already
    /// has `owner_password` (one `berth migrate` filled, say).
    pub fn start_scale_out_as(
        data_dir: &Path,
        owner_password: &str,
        env: &[(&str, &str)],
    ) -> TestServer {
        let backend = Some(data_dir.to_path_buf());
        Self::launch(data_dir, env, owner_password.to_string(), backend)
    }

    fn launch(
        data_dir: &Path,
        env: &[(&str, &str)],
        owner_password: String,
        backend_of: Option<PathBuf>,
    ) -> TestServer {
        let mut server = TestServer {
            child: None,
            data_dir: data_dir.to_path_buf(),
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            owner_password,
            log_dir: tempfile::Builder::new()
                .prefix("berth-test-log-")
                .tempdir_in("/tmp")
                .expect("log tempdir"),
            starts: 0,
            backend_of,
        };
        server.spawn();
        server
    }

    fn backend_key(&self) -> &Path {
        self.backend_of.as_deref().unwrap_or(&self.data_dir)
    }

    /// The bucket key prefix of this server's deployment (scale-out only).
    pub fn s3_prefix(&self) -> String {
        format!("{}/", scale_out_name(self.backend_key()))
    }

    fn spawn(&mut self) {
        assert!(self.child.is_none(), "server is already running");
        self.starts += 1;
        let log_path = self.log_path(self.starts);
        let log = std::fs::File::create(&log_path).expect("create server log");
        let mut cmd = Command::new(BIN);
        cmd.arg("serve")
            .arg("--listen")
            .arg("127.0.0.1:0")
            .arg("--data")
            .arg(&self.data_dir)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log));
        for (key, _) in std::env::vars() {
            if key.starts_with("BERTH_") && key != "BERTH_LOG" {
                cmd.env_remove(key);
            }
        }
        cmd.env("NO_COLOR", "1");
        cmd.env("BERTH_AUTH__INITIAL_OWNER_PASSWORD", &self.owner_password);
        if self.backend_of.is_some() || std::env::var("BERTH_TEST_SCALE_OUT").as_deref() == Ok("1")
        {
            cmd.envs(scale_out_env(self.backend_key()));
        }
        cmd.envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        let mut child = cmd.spawn().expect("spawn berth serve");
        let stdout = child.stdout.take().expect("server stdout");

        // Stdout says `berth <version> listening on http://ADDR` once the
        // listener is bound (after a first start, the owner's password comes
        // before it). The rest is drained so the server never blocks on (or
        // dies of) a closed pipe.
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut reader = BufReader::new(stdout);
            let mut seen = String::new();
            for _ in 0..50 {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 {
                    break;
                }
                if line.contains(" listening on http://") {
                    let _ = tx.send(Ok(line));
                    let _ = std::io::copy(&mut reader, &mut std::io::sink());
                    return;
                }
                seen.push_str(&line);
            }
            let _ = tx.send(Err(seen));
        });
        let line = match rx.recv_timeout(START_TIMEOUT) {
            Ok(Ok(line)) => line,
            Ok(Err(seen)) => {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "berth exited or never said where it listens; stdout: {seen:?}\n{}",
                    read_log(&log_path)
                );
            }
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "berth did not print its address within {START_TIMEOUT:?}\n{}",
                    read_log(&log_path)
                );
            }
        };
        let Some(addr) = line
            .trim()
            .strip_prefix("berth ")
            .and_then(|rest| rest.split_once(" listening on http://"))
            .and_then(|(_version, addr)| addr.parse::<SocketAddr>().ok())
        else {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "unexpected address line from berth: {line:?}\n{}",
                read_log(&log_path)
            );
        };
        assert!(addr.ip().is_loopback(), "server listens on {addr}");
        self.addr = addr;
        self.child = Some(child);
    }

    fn log_path(&self, start: usize) -> PathBuf {
        self.log_dir.path().join(format!("server-{start}.log"))
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT` (changes on every restart).
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// The owner's password (fixed for the server's lifetime).
    pub fn owner_password(&self) -> &str {
        &self.owner_password
    }

    /// `Authorization` value with the owner's Basic credentials.
    pub fn authorization(&self) -> String {
        format!(
            "Basic {}",
            base64(format!("owner:{}", self.owner_password).as_bytes())
        )
    }

    /// A raw request as the owner (see [`raw_request`]).
    pub fn raw(
        &self,
        method: &str,
        target: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> RawResponse {
        self.raw_framed(method, target, headers, body, false)
    }

    /// A raw request as the owner (see [`raw_request_framed`]).
    pub fn raw_framed(
        &self,
        method: &str,
        target: &str,
        headers: &[(&str, &str)],
        body: &[u8],
        chunked: bool,
    ) -> RawResponse {
        let auth = self.authorization();
        let mut all = vec![("Authorization", auth.as_str())];
        all.extend_from_slice(headers);
        raw_request_framed(self.addr, method, target, &all, body, chunked)
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("server is running").id()
    }

    /// `kill -9`: no chance to clean up.
    pub fn kill(&mut self) {
        let mut child = self.child.take().expect("server is running");
        child.kill().expect("SIGKILL berth");
        child.wait().expect("reap berth");
    }

    /// SIGTERM and wait for a clean exit (status 0).
    pub fn stop(&mut self) {
        let status = self.terminate();
        assert!(
            status.success(),
            "berth exited with {status} after SIGTERM\n{}",
            self.logs()
        );
    }

    fn terminate(&mut self) -> ExitStatus {
        let mut child = self.child.take().expect("server is running");
        let sent = Command::new("kill")
            .arg("-TERM")
            .arg(child.id().to_string())
            .status()
            .expect("run kill -TERM");
        assert!(sent.success(), "kill -TERM failed");
        let deadline = Instant::now() + STOP_TIMEOUT;
        loop {
            if let Some(status) = child.try_wait().expect("wait for berth") {
                return status;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "berth did not stop within {STOP_TIMEOUT:?} of SIGTERM\n{}",
                    self.logs()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Starts again on the same data directory (a new port). A running
    /// server is stopped gracefully first.
    pub fn restart(&mut self) {
        if self.child.is_some() {
            self.stop();
        }
        self.spawn();
    }

    /// Like [`restart`](Self::restart) with a different extra environment.
    pub fn restart_with_env(&mut self, env: &[(&str, &str)]) {
        self.env = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        self.restart();
    }

    pub fn is_running(&mut self) -> bool {
        match &mut self.child {
            Some(child) => child.try_wait().expect("try_wait").is_none(),
            None => false,
        }
    }

    /// Every run's log (stderr), oldest first.
    pub fn logs(&self) -> String {
        (1..=self.starts)
            .map(|n| format!("--- berth run {n} ---\n{}", read_log(&self.log_path(n))))
            .collect::<Vec<_>>()
            .join("\n")
    }
}

fn read_log(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    // The tail is what explains a failure.
    let keep = 16 * 1024;
    if text.len() > keep {
        let mut start = text.len() - keep;
        while !text.is_char_boundary(start) {
            start += 1;
        }
        format!("[...]{}", &text[start..])
    } else {
        text
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        if std::thread::panicking() {
            eprintln!("{}", self.logs());
        }
    }
}

/// A fresh directory under /tmp for a test's data.
pub fn tempdir(prefix: &str) -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix(prefix)
        .tempdir_in("/tmp")
        .expect("tempdir under /tmp")
}

// ---------------------------------------------------------------------------
// Content
// ---------------------------------------------------------------------------

/// Standard base64 with padding (for Basic credentials).
pub fn base64(data: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for group in data.chunks(3) {
        let b = [
            group[0],
            *group.get(1).unwrap_or(&0),
            *group.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= group.len() {
                out.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

pub fn sha256(data: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(data)))
}

pub fn sha512(data: &[u8]) -> String {
    format!("sha512:{}", hex::encode(Sha512::digest(data)))
}

/// Deterministic pseudo-random bytes (splitmix64), different per seed.
pub fn bytes(seed: u64, len: usize) -> Vec<u8> {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ 0xD1B5_4A32_D192_ED03;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        out.extend_from_slice(&z.to_le_bytes());
    }
    out.truncate(len);
    out
}

/// The S3 key prefix a scale-out test server uses (see `scale_out_env`),
/// or `None` on the embedded backends.
fn scale_out_prefix(data_dir: &Path) -> Option<String> {
    if std::env::var("BERTH_TEST_SCALE_OUT").as_deref() != Ok("1") {
        return None;
    }
    Some(format!("{}/", scale_out_name(data_dir)))
}

fn scale_out_name(data_dir: &Path) -> String {
    format!(
        "it_{}",
        &hex::encode(Sha256::digest(data_dir.as_os_str().as_encoded_bytes()))[..24]
    )
}

/// Runs an object-store request to completion from sync test code (which
/// may itself be inside a runtime).
fn s3_call<T: Send>(
    f: impl FnOnce(&object_store::aws::AmazonS3) -> futures::future::BoxFuture<'_, T> + Send,
) -> T {
    std::thread::scope(|scope| {
        scope
            .spawn(|| {
                let store = object_store::aws::AmazonS3Builder::new()
                    .with_bucket_name(test_var("BERTH_TEST_S3_BUCKET"))
                    .with_endpoint(test_var("BERTH_TEST_S3_ENDPOINT"))
                    .with_region(test_var("BERTH_TEST_S3_REGION"))
                    .with_access_key_id(test_var("BERTH_TEST_S3_ACCESS_KEY_ID"))
                    .with_secret_access_key(test_var("BERTH_TEST_S3_SECRET_ACCESS_KEY"))
                    .with_allow_http(true)
                    .build()
                    .expect("s3 client");
                tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("runtime")
                    .block_on(f(&store))
            })
            .join()
            .expect("s3 thread")
    })
}

/// A management-API request as the owner: (status, JSON body or null).
pub async fn manage_request(
    server: &TestServer,
    method: reqwest::Method,
    path: &str,
    body: Value,
) -> (u16, Value) {
    let resp = http_client()
        .request(method, format!("{}{path}", server.url()))
        .basic_auth("owner", Some(server.owner_password()))
        .json(&body)
        .send()
        .await
        .expect("management request");
    let status = resp.status().as_u16();
    let text = resp.text().await.expect("body");
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

/// Every object key under `prefix`, relative to it.
pub fn s3_keys(prefix: &str) -> Vec<String> {
    use futures::TryStreamExt;
    use object_store::ObjectStore;
    let prefix = prefix.to_string();
    s3_call(move |store| {
        Box::pin(async move {
            let path = object_store::path::Path::from(prefix.as_str());
            let listed: Vec<_> = store.list(Some(&path)).try_collect().await.expect("list");
            listed
                .into_iter()
                .map(|m| {
                    m.location
                        .as_ref()
                        .strip_prefix(prefix.trim_end_matches('/'))
                        .unwrap_or(m.location.as_ref())
                        .trim_start_matches('/')
                        .to_string()
                })
                .collect()
        })
    })
}

/// Size of a stored blob, whichever backend the test servers use.
pub fn stored_blob_size(data_dir: &Path, digest: &str) -> Option<u64> {
    let (alg, hex) = digest.split_once(':').expect("algorithm:hex");
    match scale_out_prefix(data_dir) {
        None => std::fs::metadata(blob_path(data_dir, digest))
            .ok()
            .map(|m| m.len()),
        Some(prefix) => {
            let key = format!("{prefix}blobs/{alg}/{}/{hex}", &hex[..2]);
            s3_call(move |store| {
                Box::pin(async move {
                    use object_store::ObjectStore;
                    match store.head(&object_store::path::Path::from(key)).await {
                        Ok(meta) => Some(meta.size),
                        Err(object_store::Error::NotFound { .. }) => None,
                        Err(e) => panic!("head: {e}"),
                    }
                })
            })
        }
    }
}

pub fn blob_stored(data_dir: &Path, digest: &str) -> bool {
    stored_blob_size(data_dir, digest).is_some()
}

/// Where the filesystem backend keeps a blob.
pub fn blob_path(data_dir: &Path, digest: &str) -> PathBuf {
    let (alg, hex) = digest.split_once(':').expect("algorithm:hex");
    data_dir.join("blobs").join(alg).join(&hex[..2]).join(hex)
}

fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        out.push(path.clone());
        if entry.file_type().map(|t| t.is_dir()).unwrap_or(false) {
            walk(&path, out);
        }
    }
}

/// Every path below `dir`, recursively.
pub fn all_paths(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    walk(dir, &mut out);
    out.sort();
    out
}

/// Committed blob files (`<data>/blobs/<alg>/..`), as paths relative to
/// `<data>/blobs`.
pub fn blob_files(data_dir: &Path) -> BTreeSet<String> {
    if let Some(prefix) = scale_out_prefix(data_dir) {
        return s3_keys(&format!("{prefix}blobs/")).into_iter().collect();
    }
    let root = data_dir.join("blobs");
    all_paths(&root)
        .into_iter()
        .filter(|p| p.is_file())
        .map(|p| {
            p.strip_prefix(&root)
                .expect("below root")
                .to_string_lossy()
                .into_owned()
        })
        .filter(|p| !p.starts_with("_uploads"))
        .collect()
}

/// Files of upload sessions in progress (`<data>/blobs/_uploads/*`).
pub fn upload_files(data_dir: &Path) -> Vec<String> {
    if let Some(prefix) = scale_out_prefix(data_dir) {
        // Upload ids (each may have several part objects).
        let mut ids: Vec<String> = s3_keys(&format!("{prefix}_uploads/"))
            .into_iter()
            .filter_map(|k| k.split('/').next().map(str::to_string))
            .collect();
        ids.dedup();
        return ids;
    }
    all_paths(&data_dir.join("blobs").join("_uploads"))
        .into_iter()
        .map(|p| p.file_name().expect("name").to_string_lossy().into_owned())
        .collect()
}

// ---------------------------------------------------------------------------
// HTTP
// ---------------------------------------------------------------------------

/// A client without credentials.
pub fn http_client() -> reqwest::Client {
    client_with(None)
}

/// A client that sends `authorization` with every request.
pub fn client_with(authorization: Option<&str>) -> reqwest::Client {
    let mut headers = reqwest::header::HeaderMap::new();
    if let Some(value) = authorization {
        headers.insert(
            reqwest::header::AUTHORIZATION,
            value.parse().expect("header value"),
        );
    }
    reqwest::Client::builder()
        .default_headers(headers)
        .no_proxy()
        .timeout(Duration::from_secs(120))
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("http client")
}

/// A value of a response header, as a string.
pub fn header(resp: &Response, name: &str) -> Option<String> {
    resp.headers()
        .get(name)
        .map(|v| v.to_str().expect("ASCII header").to_string())
}

pub fn must_header(resp: &Response, name: &str) -> String {
    header(resp, name).unwrap_or_else(|| {
        panic!(
            "{} {} lacks header {name}: {:?}",
            resp.status(),
            resp.url(),
            resp.headers()
        )
    })
}

/// The Range header an upload with `offset` bytes reports (Docker
/// Distribution's convention: an empty upload is `0-0`).
pub fn upload_range(offset: u64) -> String {
    format!("0-{}", offset.saturating_sub(1))
}

/// Checks the status, returning the response; on a mismatch the body is
/// part of the panic message.
pub async fn expect_status(resp: Response, status: u16) -> Response {
    if resp.status().as_u16() != status {
        let got = resp.status();
        let url = resp.url().clone();
        let headers = format!("{:?}", resp.headers());
        let body = resp.text().await.unwrap_or_default();
        panic!("{url}: expected {status}, got {got}\nheaders: {headers}\nbody: {body}");
    }
    resp
}

/// Asserts a spec error: the status, and a JSON envelope
/// `{"errors":[{"code":..,"message":..}]}` whose first error has `code` and
/// a human-readable message. Returns the message.
pub async fn expect_error(resp: Response, status: u16, code: &str) -> String {
    let url = resp.url().clone();
    let got = resp.status();
    let content_type = header(&resp, "content-type").unwrap_or_default();
    let body = resp.text().await.expect("error body");
    assert_eq!(
        got.as_u16(),
        status,
        "{url}: expected {status} {code}, got {got}: {body}"
    );
    check_envelope(url.as_ref(), &content_type, &body, code)
}

/// The envelope checks of [`expect_error`] on an already-read body.
pub fn check_envelope(what: &str, content_type: &str, body: &str, code: &str) -> String {
    assert!(
        content_type.starts_with("application/json"),
        "{what}: error Content-Type is {content_type:?}, body {body}"
    );
    let value: Value = serde_json::from_str(body)
        .unwrap_or_else(|e| panic!("{what}: error body is not JSON ({e}): {body}"));
    let errors = value["errors"]
        .as_array()
        .unwrap_or_else(|| panic!("{what}: no errors array: {body}"));
    assert!(!errors.is_empty(), "{what}: empty errors array: {body}");
    assert_eq!(
        errors[0]["code"].as_str(),
        Some(code),
        "{what}: wrong error code: {body}"
    );
    let message = errors[0]["message"]
        .as_str()
        .unwrap_or_else(|| panic!("{what}: message is not a string: {body}"))
        .to_string();
    assert_readable(what, &message, code);
    message
}

/// A message for people: a few words of text, not a code or a dump.
pub fn assert_readable(what: &str, message: &str, code: &str) {
    let m = message.trim();
    assert!(m.len() >= 10, "{what}: message too short: {message:?}");
    assert!(
        m.contains(' '),
        "{what}: message is not a sentence: {message:?}"
    );
    assert_ne!(m, code, "{what}: message only repeats the code");
    assert!(
        !m.starts_with('{') && !m.starts_with('['),
        "{what}: message looks like data: {message:?}"
    );
    assert!(
        m.chars().filter(|c| c.is_alphabetic()).count() >= 5,
        "{what}: message has no words: {message:?}"
    );
}

/// The distribution API of one server.
#[derive(Clone)]
pub struct Api {
    pub http: reqwest::Client,
    pub base: String,
}

impl Api {
    /// The API as the owner (Basic credentials on every request).
    pub fn new(server: &TestServer) -> Api {
        Api {
            http: client_with(Some(&server.authorization())),
            base: server.url(),
        }
    }

    /// The API without credentials.
    pub fn anonymous(server: &TestServer) -> Api {
        Api {
            http: http_client(),
            base: server.url(),
        }
    }

    /// The same identity on a fresh client (its own connections).
    pub fn fresh(&self, server: &TestServer) -> Api {
        Api {
            http: client_with(Some(&server.authorization())),
            base: self.base.clone(),
        }
    }

    /// Points at a restarted server.
    pub fn retarget(&mut self, server: &TestServer) {
        self.base = server.url();
    }

    /// An absolute URL for a path or a `Location` header value.
    pub fn url(&self, path_or_url: &str) -> String {
        if path_or_url.starts_with("http://") || path_or_url.starts_with("https://") {
            path_or_url.to_string()
        } else {
            format!("{}{path_or_url}", self.base)
        }
    }

    pub async fn get(&self, path: &str) -> Response {
        self.http.get(self.url(path)).send().await.expect("GET")
    }

    pub async fn head(&self, path: &str) -> Response {
        self.http.head(self.url(path)).send().await.expect("HEAD")
    }

    pub async fn delete(&self, path: &str) -> Response {
        self.http
            .delete(self.url(path))
            .send()
            .await
            .expect("DELETE")
    }

    // -- blobs ------------------------------------------------------------

    /// Single-request upload (`POST ?digest=`); returns the digest.
    pub async fn push_blob(&self, repo: &str, data: &[u8]) -> String {
        let digest = sha256(data);
        let resp = self
            .http
            .post(self.url(&format!("/v2/{repo}/blobs/uploads/?digest={digest}")))
            .header("content-type", "application/octet-stream")
            .body(data.to_vec())
            .send()
            .await
            .expect("POST blob");
        expect_status(resp, 201).await;
        digest
    }

    /// Starts an upload session; returns its (relative) Location.
    pub async fn start_upload(&self, repo: &str) -> String {
        let resp = self
            .http
            .post(self.url(&format!("/v2/{repo}/blobs/uploads/")))
            .send()
            .await
            .expect("POST upload");
        let resp = expect_status(resp, 202).await;
        must_header(&resp, "location")
    }

    /// `PATCH` with `Content-Range: start-end`.
    pub async fn patch_chunk(&self, location: &str, start: u64, data: &[u8]) -> Response {
        let end = start + data.len() as u64 - 1;
        self.http
            .patch(self.url(location))
            .header("content-type", "application/octet-stream")
            .header("content-range", format!("{start}-{end}"))
            .body(data.to_vec())
            .send()
            .await
            .expect("PATCH")
    }

    /// Final `PUT ?digest=` with an optional last chunk.
    pub async fn put_upload(&self, location: &str, digest: &str, body: &[u8]) -> Response {
        let mut req = self
            .http
            .put(with_query(&self.url(location), "digest", digest))
            .header("content-type", "application/octet-stream");
        if !body.is_empty() {
            req = req.body(body.to_vec());
        }
        req.send().await.expect("PUT upload")
    }

    /// GET upload status.
    pub async fn upload_status(&self, location: &str) -> Response {
        self.get(location).await
    }

    /// The offset of an upload session as its status reports it, `None` if
    /// the session is unknown (404 BLOB_UPLOAD_UNKNOWN). An empty session
    /// reports `0-0`, read as 0.
    pub async fn upload_offset(&self, location: &str) -> Option<u64> {
        let resp = self.upload_status(location).await;
        if resp.status() == StatusCode::NOT_FOUND {
            expect_error(resp, 404, "BLOB_UPLOAD_UNKNOWN").await;
            return None;
        }
        let resp = expect_status(resp, 204).await;
        let range = must_header(&resp, "range");
        let end: u64 = range
            .strip_prefix("0-")
            .and_then(|e| e.parse().ok())
            .unwrap_or_else(|| panic!("bad Range {range:?}"));
        Some(if end == 0 { 0 } else { end + 1 })
    }

    pub async fn pull_blob(&self, repo: &str, digest: &str) -> Vec<u8> {
        let resp = self.get(&format!("/v2/{repo}/blobs/{digest}")).await;
        let resp = expect_status(resp, 200).await;
        resp.bytes().await.expect("blob body").to_vec()
    }

    pub async fn blob_exists(&self, repo: &str, digest: &str) -> bool {
        let resp = self.head(&format!("/v2/{repo}/blobs/{digest}")).await;
        match resp.status().as_u16() {
            200 => true,
            404 => false,
            other => panic!("HEAD blob {repo}@{digest}: unexpected {other}"),
        }
    }

    // -- manifests ----------------------------------------------------------

    pub async fn put_manifest(
        &self,
        repo: &str,
        reference: &str,
        media_type: &str,
        body: &[u8],
    ) -> Response {
        self.http
            .put(self.url(&format!("/v2/{repo}/manifests/{reference}")))
            .header("content-type", media_type)
            .body(body.to_vec())
            .send()
            .await
            .expect("PUT manifest")
    }

    /// Pushes a manifest and checks the 201 and its digest headers.
    pub async fn push_manifest(
        &self,
        repo: &str,
        reference: &str,
        media_type: &str,
        body: &[u8],
    ) -> Response {
        let resp = self.put_manifest(repo, reference, media_type, body).await;
        let resp = expect_status(resp, 201).await;
        let digest = sha256(body);
        let expected = if reference.contains(':') {
            reference.to_string()
        } else {
            digest
        };
        assert_eq!(must_header(&resp, "docker-content-digest"), expected);
        assert_eq!(
            must_header(&resp, "location"),
            format!("/v2/{repo}/manifests/{expected}")
        );
        resp
    }

    /// GET a manifest, checking its headers; returns (media type, bytes).
    pub async fn pull_manifest(&self, repo: &str, reference: &str) -> (String, Vec<u8>) {
        let resp = self.get(&format!("/v2/{repo}/manifests/{reference}")).await;
        let resp = expect_status(resp, 200).await;
        let media_type = must_header(&resp, "content-type");
        let digest = must_header(&resp, "docker-content-digest");
        let length = must_header(&resp, "content-length");
        let body = resp.bytes().await.expect("manifest body").to_vec();
        assert_eq!(
            digest,
            sha256(&body),
            "Docker-Content-Digest of {reference}"
        );
        assert_eq!(
            length,
            body.len().to_string(),
            "Content-Length of {reference}"
        );
        (media_type, body)
    }

    /// Status of GET manifest (200 or an error), for "unchanged" checks.
    pub async fn manifest_status(&self, repo: &str, reference: &str) -> u16 {
        self.get(&format!("/v2/{repo}/manifests/{reference}"))
            .await
            .status()
            .as_u16()
    }

    /// Every tag of a repository, `None` if it is unknown (404 NAME_UNKNOWN).
    pub async fn tags(&self, repo: &str) -> Option<Vec<String>> {
        let resp = self.get(&format!("/v2/{repo}/tags/list")).await;
        if resp.status() == StatusCode::NOT_FOUND {
            expect_error(resp, 404, "NAME_UNKNOWN").await;
            return None;
        }
        let resp = expect_status(resp, 200).await;
        let v: Value = resp.json().await.expect("tags JSON");
        assert_eq!(v["name"].as_str(), Some(repo));
        Some(string_list(&v["tags"]))
    }

    pub async fn catalog(&self) -> Vec<String> {
        let resp = expect_status(self.get("/v2/_catalog").await, 200).await;
        let v: Value = resp.json().await.expect("catalog JSON");
        string_list(&v["repositories"])
    }
}

/// A JSON array of strings (`null` reads as empty).
pub fn string_list(v: &Value) -> Vec<String> {
    match v {
        Value::Null => Vec::new(),
        Value::Array(items) => items
            .iter()
            .map(|i| i.as_str().expect("string item").to_string())
            .collect(),
        other => panic!("not a list: {other}"),
    }
}

/// Appends `key=value` to a URL that may already have a query.
pub fn with_query(url: &str, key: &str, value: &str) -> String {
    let sep = if url.contains('?') { '&' } else { '?' };
    format!("{url}{sep}{key}={value}")
}

// ---------------------------------------------------------------------------
// Raw HTTP/1.1 (paths no URL library would send as they are)
// ---------------------------------------------------------------------------

#[derive(Debug)]
pub struct RawResponse {
    pub status: u16,
    /// Lowercased names.
    pub headers: Vec<(String, String)>,
    /// The bytes after the header block, de-chunked if chunked.
    pub body: Vec<u8>,
    /// The bytes after the header block exactly as received.
    pub raw_body: Vec<u8>,
}

impl RawResponse {
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// Asserts status and the spec envelope; returns the message.
    pub fn expect_error(&self, what: &str, status: u16, code: &str) -> String {
        assert_eq!(
            self.status,
            status,
            "{what}: expected {status} {code}, got {}: {}",
            self.status,
            self.text()
        );
        check_envelope(
            what,
            self.header("content-type").unwrap_or(""),
            &self.text(),
            code,
        )
    }
}

/// Sends one request with the target exactly as given and reads the whole
/// response (`Connection: close`).
pub fn raw_request(
    addr: SocketAddr,
    method: &str,
    target: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> RawResponse {
    raw_request_framed(addr, method, target, headers, body, false)
}

/// Like [`raw_request`], optionally with a chunked body. The body is
/// written from another thread while the response is read, and write errors
/// are ignored: a server may answer (413, 400) before it has read the body
/// and close the connection, and the answer must still be seen.
pub fn raw_request_framed(
    addr: SocketAddr,
    method: &str,
    target: &str,
    headers: &[(&str, &str)],
    body: &[u8],
    chunked: bool,
) -> RawResponse {
    let mut stream = TcpStream::connect(addr).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(60)))
        .expect("timeout");
    let mut head = format!("{method} {target} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    if chunked {
        head.push_str("Transfer-Encoding: chunked\r\n");
    } else if !body.is_empty() || matches!(method, "POST" | "PUT" | "PATCH") {
        head.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    head.push_str("\r\n");
    let mut payload = head.into_bytes();
    if chunked {
        for chunk in body.chunks(64 * 1024) {
            payload.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
            payload.extend_from_slice(chunk);
            payload.extend_from_slice(b"\r\n");
        }
        payload.extend_from_slice(b"0\r\n\r\n");
    } else {
        payload.extend_from_slice(body);
    }
    let mut writer = stream.try_clone().expect("clone stream");
    let sender = std::thread::spawn(move || {
        let _ = writer.write_all(&payload);
    });
    let mut raw = Vec::new();
    let mut buf = [0u8; 64 * 1024];
    loop {
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => raw.extend_from_slice(&buf[..n]),
        }
    }
    let _ = stream.shutdown(std::net::Shutdown::Both);
    let _ = sender.join();
    assert!(!raw.is_empty(), "{method} {target}: no response at all");
    parse_raw(&raw)
}

fn parse_raw(raw: &[u8]) -> RawResponse {
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("no header block in {:?}", String::from_utf8_lossy(raw)));
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let raw_body = raw[split + 4..].to_vec();
    let mut lines = head.split("\r\n");
    let status_line = lines.next().expect("status line");
    let status: u16 = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("bad status line {status_line:?}"));
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let chunked = headers
        .iter()
        .any(|(k, v)| k == "transfer-encoding" && v.to_ascii_lowercase().contains("chunked"));
    let body = if chunked {
        dechunk(&raw_body)
    } else {
        raw_body.clone()
    };
    RawResponse {
        status,
        headers,
        body,
        raw_body,
    }
}

fn dechunk(mut data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(eol) = data.windows(2).position(|w| w == b"\r\n") {
        let size_line = String::from_utf8_lossy(&data[..eol]);
        let size = usize::from_str_radix(size_line.split(';').next().unwrap_or("").trim(), 16)
            .unwrap_or(0);
        data = &data[eol + 2..];
        if size == 0 || data.len() < size {
            break;
        }
        out.extend_from_slice(&data[..size]);
        data = &data[(size + 2).min(data.len())..];
    }
    out
}

// ---------------------------------------------------------------------------
// OCI fixtures
// ---------------------------------------------------------------------------

pub fn descriptor(media_type: &str, data: &[u8]) -> Value {
    json!({ "mediaType": media_type, "digest": sha256(data), "size": data.len() })
}

/// An image manifest over a config and layers (their bytes).
pub fn image_manifest(
    media_type: &str,
    config: (&str, &[u8]),
    layers: &[(&str, &[u8])],
    extra: Value,
) -> Vec<u8> {
    let mut m = json!({
        "schemaVersion": 2,
        "mediaType": media_type,
        "config": descriptor(config.0, config.1),
        "layers": layers.iter().map(|(t, d)| descriptor(t, d)).collect::<Vec<_>>(),
    });
    if let (Value::Object(m), Value::Object(extra)) = (&mut m, extra) {
        m.extend(extra);
    }
    serde_json::to_vec(&m).expect("manifest JSON")
}

/// An image pushed to a repository, with everything needed to check that it
/// still pulls byte for byte.
#[derive(Debug, Clone)]
pub struct Image {
    pub repo: String,
    pub tag: String,
    pub manifest: Vec<u8>,
    pub digest: String,
    pub config: Vec<u8>,
    pub layers: Vec<Vec<u8>>,
}

impl Image {
    pub fn config_digest(&self) -> String {
        sha256(&self.config)
    }

    pub fn layer_digests(&self) -> Vec<String> {
        self.layers.iter().map(|l| sha256(l)).collect()
    }

    /// Config and layer digests.
    pub fn blob_digests(&self) -> Vec<String> {
        let mut all = vec![self.config_digest()];
        all.extend(self.layer_digests());
        all
    }
}

/// Uploads a config and `layers` layers of `layer_len` bytes and pushes an
/// OCI manifest under `tag`.
pub async fn push_image(api: &Api, repo: &str, tag: &str, seed: u64, layer_len: usize) -> Image {
    let config = serde_json::to_vec(&json!({
        "architecture": "amd64",
        "os": "linux",
        "rootfs": {"type": "layers", "diff_ids": []},
        "seed": seed,
    }))
    .expect("config JSON");
    let layers: Vec<Vec<u8>> = (0..2)
        .map(|i| bytes(seed * 1000 + i, layer_len + i as usize))
        .collect();
    push_image_from(api, repo, tag, config, layers).await
}

/// Pushes an OCI image made of the given config and layers.
pub async fn push_image_from(
    api: &Api,
    repo: &str,
    tag: &str,
    config: Vec<u8>,
    layers: Vec<Vec<u8>>,
) -> Image {
    api.push_blob(repo, &config).await;
    for layer in &layers {
        api.push_blob(repo, layer).await;
    }
    let layer_refs: Vec<(&str, &[u8])> = layers.iter().map(|l| (OCI_LAYER, l.as_slice())).collect();
    let manifest = image_manifest(OCI_MANIFEST, (OCI_CONFIG, &config), &layer_refs, json!({}));
    api.push_manifest(repo, tag, OCI_MANIFEST, &manifest).await;
    Image {
        repo: repo.to_string(),
        tag: tag.to_string(),
        digest: sha256(&manifest),
        manifest,
        config,
        layers,
    }
}

/// Pulls the image by tag and by digest and compares every byte.
pub async fn assert_image_pulls(api: &Api, image: &Image) {
    for reference in [image.tag.as_str(), image.digest.as_str()] {
        let (media_type, body) = api.pull_manifest(&image.repo, reference).await;
        assert_eq!(media_type, OCI_MANIFEST);
        assert_eq!(body, image.manifest, "manifest {reference} changed");
    }
    assert_eq!(
        api.pull_blob(&image.repo, &image.config_digest()).await,
        image.config
    );
    for layer in &image.layers {
        assert_eq!(
            &api.pull_blob(&image.repo, &sha256(layer)).await,
            layer,
            "layer bytes changed"
        );
    }
}

/// What a client can see of the store (catalog, and for every listed or
/// named repository its tags with their digests, `None` if unknown) and what
/// is on disk (committed blobs, upload files).
/// A repository's tags with their digests, `None` if it is unknown.
pub type TagDigests = Option<Vec<(String, String)>>;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    pub catalog: Vec<String>,
    pub tags: Vec<(String, TagDigests)>,
    pub blob_files: BTreeSet<String>,
    pub upload_files: Vec<String>,
}

pub async fn snapshot(api: &Api, data_dir: &Path, repos: &[&str]) -> Snapshot {
    let catalog = api.catalog().await;
    let mut names = catalog.clone();
    for r in repos {
        if !names.iter().any(|x| x == r) {
            names.push(r.to_string());
        }
    }
    let mut tags = Vec::new();
    for repo in names {
        let listed = match api.tags(&repo).await {
            None => None,
            Some(list) => {
                let mut with_digests = Vec::new();
                for tag in list {
                    let resp = api.head(&format!("/v2/{repo}/manifests/{tag}")).await;
                    let resp = expect_status(resp, 200).await;
                    with_digests.push((tag, must_header(&resp, "docker-content-digest")));
                }
                Some(with_digests)
            }
        };
        tags.push((repo, listed));
    }
    Snapshot {
        catalog,
        tags,
        blob_files: blob_files(data_dir),
        upload_files: upload_files(data_dir),
    }
}
