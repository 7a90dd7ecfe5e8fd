//! The real berth binary as a test server: started on a free loopback
//! port with a fresh data directory, killed when the test ends. The binary
//! is `<workspace>/target/debug/berth` (or `$BERTH_BIN`), built beforehand
//! with `cargo build --workspace --bins` (scripts/test.sh does).

#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use berth_bench::Credentials;

/// The server process, killed when the test ends however it ends.
pub struct Server {
    pub child: Child,
    pub url: String,
    pub data: tempfile::TempDir,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn berth_binary() -> PathBuf {
    if let Some(bin) = std::env::var_os("BERTH_BIN") {
        return PathBuf::from(bin);
    }
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/debug/berth")
}

pub fn start_berth() -> Server {
    start_berth_with(None)
}

/// berth with `config` (a TOML file) as its configuration file.
pub fn start_berth_with(config: Option<&Path>) -> Server {
    let bin = berth_binary();
    assert!(
        bin.exists(),
        "{} does not exist: run `cargo build -p berth` first (or set BERTH_BIN)",
        bin.display()
    );
    let data = tempfile::tempdir().expect("temp dir");
    let mut command = Command::new(&bin);
    command
        .args(["serve", "--listen", "127.0.0.1:0", "--data"])
        .arg(data.path());
    if let Some(config) = config {
        command.arg("--config").arg(config);
    }
    let mut child = command
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {}: {e}", bin.display()));
    let stdout = child.stdout.take().expect("stdout is piped");
    let mut stdout = BufReader::new(stdout);
    let mut line = String::new();
    let read = stdout.read_line(&mut line);
    // Keep reading: a server that prints more must not die of a closed pipe.
    std::thread::spawn(move || std::io::copy(&mut stdout, &mut std::io::sink()));
    let mut server = Server {
        child,
        url: String::new(),
        data,
    };
    read.expect("read berth's stdout");
    server.url = line
        .trim()
        .split_once(" listening on ")
        .map(|(_, url)| url.to_string())
        .unwrap_or_else(|| panic!("berth did not say where it listens: {line:?}"));
    server
}

impl Server {
    /// Waits until the server answers, then returns the owner's credentials
    /// if berth created them (a berth with authentication writes them to
    /// `<data>/initial-owner-password` before it serves).
    pub async fn credentials(&self) -> Option<Credentials> {
        // Only to see that it answers: the benchmark client checks the
        // certificate.
        let client = reqwest::Client::builder()
            .no_proxy()
            .danger_accept_invalid_certs(true)
            .build()
            .expect("client");
        for _ in 0..200 {
            if client.get(format!("{}/v2/", self.url)).send().await.is_ok() {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        let file = self.data.path().join("initial-owner-password");
        let password = std::fs::read_to_string(file).ok()?;
        Some(Credentials {
            user: "owner".into(),
            password: password.trim().to_string(),
        })
    }
}
