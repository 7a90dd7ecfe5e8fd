//! One `berth serve` process per test, over a data directory that outlives
//! restarts.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use super::content::{base64, bytes};
use super::scale_out::{scale_out_env, scale_out_name};

pub const BIN: &str = env!("CARGO_BIN_EXE_berth");

/// How long a server may take to print its address or to stop.
const START_TIMEOUT: Duration = Duration::from_secs(60);
const STOP_TIMEOUT: Duration = Duration::from_secs(60);

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

    /// Starts a server on a data directory whose owner already has
    /// `owner_password` (a restored backup, say).
    pub fn start_as(data_dir: &Path, owner_password: &str, env: &[(&str, &str)]) -> TestServer {
        Self::launch(data_dir, env, owner_password.to_string(), None)
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

    /// The PostgreSQL URL of this server's deployment (scale-out only).
    pub fn database_url(&self) -> String {
        scale_out_env(self.backend_key())
            .into_iter()
            .find(|(k, _)| k == "BERTH_METADATA__URL")
            .map(|(_, v)| v)
            .expect("a scale-out server")
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
