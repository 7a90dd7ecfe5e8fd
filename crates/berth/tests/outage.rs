//! Backend outages under load: PostgreSQL stopped and
//! started, Garage killed and restarted, while a client keeps pulling and
//! pushing. This test runs its own PostgreSQL and Garage
//! (`scripts/scale-out-services.sh start` on a private directory), since it
//! stops them. What must hold:
//! - requests fail fast with `503 UNAVAILABLE`, `Retry-After` and a stable
//!   message naming the backend and a correlation id, never internal text;
//! - `/readyz` turns 503 naming the backend, and 200 once it is back;
//! - requests succeed again right after the backend returns;
//! - nothing acknowledged is lost, and the audit events of the outage are
//!   stored once the database is back (retried, not dropped).

mod common;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;
use serde_json::Value;

/// Generous bounds: the machine is shared. Requests wait at most 3 s for a
/// database connection and object-store requests retry for at most 3 s.
const FAIL_WITHIN: Duration = Duration::from_secs(15);
const RECOVER_WITHIN: Duration = Duration::from_secs(20);

struct Engines {
    dir: tempfile::TempDir,
    env: HashMap<String, String>,
}

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/scale-out-services.sh")
}

impl Engines {
    fn start() -> Engines {
        let dir = tempdir("berth-outage-engines-");
        let status = Command::new("bash")
            .arg(script())
            .arg("start")
            .arg(dir.path())
            .status()
            .expect("run scale-out-services.sh");
        assert!(
            status.success(),
            "could not start PostgreSQL and Garage (scripts/install-test-deps.sh installs them)"
        );
        let env = std::fs::read_to_string(dir.path().join("env"))
            .expect("engines env file")
            .lines()
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Engines { dir, env }
    }

    fn ctl(&self, action: &str) {
        let status = Command::new("bash")
            .arg(script())
            .arg(action)
            .arg(self.dir.path())
            .status()
            .expect("run scale-out-services.sh");
        assert!(status.success(), "scale-out-services.sh {action} failed");
    }

    fn var(&self, name: &str) -> String {
        self.env
            .get(name)
            .cloned()
            .unwrap_or_else(|| panic!("{name} missing from the engines' env file"))
    }

    fn server_env(&self) -> Vec<(String, String)> {
        vec![
            (
                "BERTH_METADATA__URL".into(),
                self.var("BERTH_TEST_POSTGRES_URL"),
            ),
            ("BERTH_STORAGE__KIND".into(), "s3".into()),
            (
                "BERTH_STORAGE__BUCKET".into(),
                self.var("BERTH_TEST_S3_BUCKET"),
            ),
            (
                "BERTH_STORAGE__ENDPOINT".into(),
                self.var("BERTH_TEST_S3_ENDPOINT"),
            ),
            (
                "BERTH_STORAGE__REGION".into(),
                self.var("BERTH_TEST_S3_REGION"),
            ),
            (
                "BERTH_STORAGE__ACCESS_KEY_ID".into(),
                self.var("BERTH_TEST_S3_ACCESS_KEY_ID"),
            ),
            (
                "BERTH_STORAGE__SECRET_ACCESS_KEY".into(),
                self.var("BERTH_TEST_S3_SECRET_ACCESS_KEY"),
            ),
            ("BERTH_STORAGE__PREFIX".into(), "outage/".into()),
            ("BERTH_GC__INTERVAL_SECONDS".into(), "0".into()),
        ]
    }
}

impl Drop for Engines {
    fn drop(&mut self) {
        let _ = Command::new("bash")
            .arg(script())
            .arg("stop")
            .arg(self.dir.path())
            .status();
    }
}

const REPO: &str = "app/outage";

/// What a client sees during an outage of `backend`.
async fn assert_unavailable(resp: reqwest::Response, backend: &str, what: &str) {
    let status = resp.status().as_u16();
    let retry_after = header(&resp, "retry-after");
    let body = resp.text().await.unwrap_or_default();
    assert_eq!(status, 503, "{what}: expected 503, got {status}: {body}");
    assert!(
        retry_after
            .as_deref()
            .and_then(|v| v.parse::<u64>().ok())
            .is_some(),
        "{what}: 503 without Retry-After"
    );
    let v: Value = serde_json::from_str(&body).expect("error envelope");
    assert_eq!(v["errors"][0]["code"], "UNAVAILABLE", "{what}: {body}");
    let message = v["errors"][0]["message"].as_str().unwrap_or_default();
    assert!(message.contains(backend), "{what}: {message}");
    assert!(message.contains("correlation id"), "{what}: {message}");
    for internal in [
        "refused",
        "reset",
        "pool",
        "timed out",
        "Generic",
        "error sending",
    ] {
        assert!(
            !message.contains(internal),
            "{what}: internal text {internal:?} reached the client: {message}"
        );
    }
}

/// Polls `/readyz` until `done` says so; returns its last body.
async fn readyz_until(api: &Api, within: Duration, done: impl Fn(u16, &Value) -> bool) -> Value {
    let deadline = Instant::now() + within;
    loop {
        let resp = api.get("/readyz").await;
        let status = resp.status().as_u16();
        let body: Value = resp.json().await.unwrap_or(Value::Null);
        if done(status, &body) {
            return body;
        }
        assert!(
            Instant::now() < deadline,
            "/readyz did not change within {within:?}: {status} {body}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The blobs the server acknowledged (201) during the load.
type Acknowledged = Arc<Mutex<Vec<Vec<u8>>>>;

/// Pulls and pushes in a loop until stopped; remembers every blob push the
/// server acknowledged.
fn start_load(api: Api, stop: Arc<AtomicBool>) -> (tokio::task::JoinHandle<()>, Acknowledged) {
    let acknowledged = Arc::new(Mutex::new(Vec::new()));
    let acked = acknowledged.clone();
    let task = tokio::spawn(async move {
        let deadline = Instant::now() + Duration::from_secs(240);
        let mut n = 0u64;
        while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
            n += 1;
            let data = bytes(10_000 + n, 32 * 1024);
            let digest = sha256(&data);
            let resp = api
                .http
                .post(api.url(&format!("/v2/{REPO}/blobs/uploads/?digest={digest}")))
                .header("content-type", "application/octet-stream")
                .body(data.clone())
                .send()
                .await;
            if let Ok(resp) = resp {
                if resp.status().as_u16() == 201 {
                    acked.lock().unwrap_or_else(|p| p.into_inner()).push(data);
                }
            }
            let _ = api.get(&format!("/v2/{REPO}/manifests/v1")).await;
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    });
    (task, acknowledged)
}

#[tokio::test]
async fn outages_of_postgresql_and_garage_fail_fast_and_recover() {
    let engines = Engines::start();
    let data = tempdir("berth-outage-data-");
    let env = engines.server_env();
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let mut server = TestServer::start_with_env(data.path(), &env);
    let api = Api::new(&server);

    let config = br#"{"architecture":"amd64","os":"linux"}"#.to_vec();
    let layer = bytes(1, 100_000);
    api.push_blob(REPO, &config).await;
    let layer_digest = api.push_blob(REPO, &layer).await;
    let manifest = image_manifest(
        OCI_MANIFEST,
        (OCI_CONFIG, &config),
        &[(OCI_LAYER, &layer)],
        Value::Null,
    );
    api.push_manifest(REPO, "v1", OCI_MANIFEST, &manifest).await;
    let ready = readyz_until(&api, RECOVER_WITHIN, |s, _| s == 200).await;
    assert_eq!(ready["backends"]["metadata"], "ok");
    assert_eq!(ready["backends"]["blobs"], "ok");

    let stop = Arc::new(AtomicBool::new(false));
    let (load, acknowledged) = start_load(api.fresh(&server), stop.clone());
    tokio::time::sleep(Duration::from_millis(500)).await;

    // --- PostgreSQL goes away.
    engines.ctl("pg-stop");
    let body = readyz_until(&api, FAIL_WITHIN, |s, _| s == 503).await;
    assert_eq!(body["backends"]["metadata"], "unavailable", "{body}");
    assert_eq!(body["backends"]["blobs"], "ok", "{body}");
    assert!(
        body["message"]
            .as_str()
            .unwrap_or_default()
            .contains("metadata database"),
        "{body}"
    );
    let started = Instant::now();
    let resp = api.get(&format!("/v2/{REPO}/manifests/v1")).await;
    assert!(
        started.elapsed() < FAIL_WITHIN,
        "a pull during the outage took {:?}",
        started.elapsed()
    );
    eprintln!(
        "outage: a pull without PostgreSQL was answered in {:?}",
        started.elapsed()
    );
    assert_unavailable(
        resp,
        "metadata database",
        "manifest pull without PostgreSQL",
    )
    .await;
    // A push is refused the same way (and nothing of it is acknowledged).
    let resp = api
        .http
        .post(api.url(&format!("/v2/{REPO}/blobs/uploads/")))
        .send()
        .await
        .expect("POST upload");
    assert_unavailable(resp, "metadata database", "upload start without PostgreSQL").await;
    // check-pull names the cause from the client's side.
    let out = Command::new(BIN)
        .args([
            "check-pull",
            &format!("{}/{REPO}:v1", server.addr()),
            "--plain-http",
        ])
        .args(["--username", "owner", "--password", server.owner_password()])
        .args(["--output", "json"])
        .env_remove("BERTH_REGISTRY")
        .output()
        .expect("run check-pull");
    let verdict: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
    assert_eq!(
        out.status.code(),
        Some(23),
        "check-pull during the outage: {verdict} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(verdict["code"], "REGISTRY_UNAVAILABLE", "{verdict}");
    tokio::time::sleep(Duration::from_secs(2)).await;

    // --- PostgreSQL is back: ready again, and the next request works.
    engines.ctl("pg-start");
    let pg_back = Instant::now();
    readyz_until(&api, RECOVER_WITHIN, |s, _| s == 200).await;
    eprintln!(
        "outage: /readyz said ready {:?} after pg-start returned",
        pg_back.elapsed()
    );
    let resp = api.get(&format!("/v2/{REPO}/manifests/v1")).await;
    assert_eq!(
        resp.status().as_u16(),
        200,
        "the first pull after /readyz said ready ({:?} after PostgreSQL returned) failed",
        pg_back.elapsed()
    );

    // --- Garage goes away: blobs fail, manifests still serve.
    engines.ctl("garage-stop");
    let body = readyz_until(&api, FAIL_WITHIN, |s, _| s == 503).await;
    assert_eq!(body["backends"]["blobs"], "unavailable", "{body}");
    assert_eq!(body["backends"]["metadata"], "ok", "{body}");
    let started = Instant::now();
    let resp = api.get(&format!("/v2/{REPO}/blobs/{layer_digest}")).await;
    assert!(
        started.elapsed() < FAIL_WITHIN,
        "a blob pull took {:?}",
        started.elapsed()
    );
    eprintln!(
        "outage: a blob pull without Garage was answered 503 in {:?}",
        started.elapsed()
    );
    assert_unavailable(resp, "blob store", "blob pull without Garage").await;
    let resp = api
        .http
        .post(api.url(&format!(
            "/v2/{REPO}/blobs/uploads/?digest={}",
            sha256(b"during the outage")
        )))
        .header("content-type", "application/octet-stream")
        .body(b"during the outage".to_vec())
        .send()
        .await
        .expect("POST blob");
    assert_unavailable(resp, "blob store", "blob push without Garage").await;
    assert_eq!(
        api.get(&format!("/v2/{REPO}/manifests/v1"))
            .await
            .status()
            .as_u16(),
        200,
        "manifests come from the database: they still serve"
    );
    tokio::time::sleep(Duration::from_secs(2)).await;

    // --- Garage is back.
    engines.ctl("garage-start");
    readyz_until(&api, RECOVER_WITHIN, |s, _| s == 200).await;
    let deadline = Instant::now() + RECOVER_WITHIN;
    loop {
        let resp = api.get(&format!("/v2/{REPO}/blobs/{layer_digest}")).await;
        if resp.status().as_u16() == 200 {
            assert_eq!(resp.bytes().await.expect("body").to_vec(), layer);
            break;
        }
        assert!(
            Instant::now() < deadline,
            "blob pulls did not recover: {}",
            resp.status()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    stop.store(true, Ordering::Relaxed);
    load.await.expect("load task");

    // Nothing acknowledged is lost.
    let acknowledged = acknowledged
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clone();
    assert!(
        acknowledged.len() > 5,
        "the load pushed only {} blobs",
        acknowledged.len()
    );
    for data in &acknowledged {
        assert_eq!(&api.pull_blob(REPO, &sha256(data)).await, data);
    }

    // The failed pulls of the PostgreSQL outage were recorded once it was
    // back: events are retried, not dropped.
    let deadline = Instant::now() + RECOVER_WITHIN;
    loop {
        let (status, events) = manage_request(
            &server,
            reqwest::Method::GET,
            &format!("/api/v1/logs/repository?repository={REPO}&failed=true"),
            Value::Null,
        )
        .await;
        assert_eq!(status, 200, "{events}");
        let outage_pulls = events
            .as_array()
            .map(|a| {
                a.iter()
                    .filter(|e| e["ResultType"] == 503 || e["resultType"] == 503)
                    .count()
            })
            .unwrap_or(0);
        if outage_pulls > 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no 503 pull of the outage reached the audit log: {events}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    server.stop();
}
