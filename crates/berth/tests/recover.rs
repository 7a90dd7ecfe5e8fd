//! Getting back in after a lock-out (docs/operations.md): a network change
//! that would refuse the caller's own address is refused unless forced;
//! once forced, `berth recover` on the server host — against the running
//! server's store — lets the owner back in, resets the rules, or resets the
//! owner's password (printed once, written to the password file, 0600).
//! Every recovery is in the activity log as done by `recovery`.

mod common;

use std::process::Output;
use std::time::{Duration, Instant};

use common::*;
use common::{berth_command as berth, output_text as text};
use serde_json::{json, Value};

fn recover(server: &TestServer, args: &[&str]) -> Output {
    let data = server.data_dir().to_str().expect("utf-8").to_string();
    let mut all = vec!["recover", "--data", data.as_str()];
    all.extend_from_slice(args);
    let out = berth(&all);
    assert!(out.status.success(), "berth recover failed: {}", text(&out));
    out
}

/// A management request as the owner with `password`: (status, JSON).
async fn as_owner(
    server: &TestServer,
    password: &str,
    method: reqwest::Method,
    path: &str,
    body: Value,
) -> (u16, Value) {
    let mut req = http_client()
        .request(method, format!("{}{path}", server.url()))
        .basic_auth("owner", Some(password));
    if !body.is_null() {
        req = req.json(&body);
    }
    let resp = req.send().await.expect("management request");
    let status = resp.status().as_u16();
    let text = resp.text().await.expect("body");
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

/// Polls every 200 ms until `check` holds; panics after `limit`.
async fn eventually<F, Fut>(what: &str, limit: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let started = Instant::now();
    while !check().await {
        assert!(started.elapsed() < limit, "{what}: not within {limit:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// What the running server takes to pick up a change in its store (1 s
/// reload), with slack for a loaded machine.
const PICKUP: Duration = Duration::from_secs(15);

async fn network_status(server: &TestServer, password: &str) -> u16 {
    as_owner(
        server,
        password,
        reqwest::Method::GET,
        "/api/v1/network",
        Value::Null,
    )
    .await
    .0
}

fn client_args(server: &TestServer) -> Vec<String> {
    vec![
        "--registry".into(),
        server.url(),
        "--username".into(),
        "owner".into(),
        "--password".into(),
        server.owner_password().into(),
    ]
}

fn cli(server: &TestServer, args: &[&str]) -> Output {
    let mut all: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    all.extend(client_args(server));
    let refs: Vec<&str> = all.iter().map(String::as_str).collect();
    berth(&refs)
}

#[tokio::test]
async fn a_lock_out_is_refused_unless_forced_and_recover_undoes_it() {
    let dir = tempdir("recover-network");
    let mut server = TestServer::start(&dir.path().join("data"));
    let password = server.owner_password().to_string();

    // Deny with no rule for 127.0.0.1: refused, and told why.
    let out = cli(&server, &["update", "--default-action", "Deny"]);
    assert!(
        !out.status.success(),
        "a self lock-out was applied: {}",
        text(&out)
    );
    let said = text(&out);
    assert!(said.contains("409"), "{said}");
    assert!(said.contains("CONFLICT"), "the management code: {said}");
    assert!(said.contains("127.0.0.1"), "names the address: {said}");
    assert!(said.contains("--force"), "says how to insist: {said}");
    assert!(
        said.contains("network-rule add"),
        "says what to do first: {said}"
    );
    assert_eq!(network_status(&server, &password).await, 200, "still in");
    let (_, network) = as_owner(
        &server,
        &password,
        reqwest::Method::GET,
        "/api/v1/network",
        Value::Null,
    )
    .await;
    assert_eq!(network["networkRuleSet"]["defaultAction"], "Allow");

    // With a rule for the caller's address the same change is fine; taking
    // that rule away again is the lock-out, refused the same way.
    let out = cli(
        &server,
        &["network-rule", "add", "--ip-address", "127.0.0.1"],
    );
    assert!(out.status.success(), "{}", text(&out));
    let out = cli(&server, &["update", "--default-action", "Deny"]);
    assert!(out.status.success(), "{}", text(&out));
    let out = cli(
        &server,
        &["network-rule", "remove", "--ip-address", "127.0.0.1"],
    );
    assert!(!out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("127.0.0.1"), "{}", text(&out));

    // --force: applied, and the owner is locked out.
    let out = cli(
        &server,
        &[
            "network-rule",
            "remove",
            "--ip-address",
            "127.0.0.1",
            "--force",
        ],
    );
    assert!(out.status.success(), "{}", text(&out));
    let (status, body) = as_owner(
        &server,
        &password,
        reqwest::Method::GET,
        "/api/v1/network",
        Value::Null,
    )
    .await;
    assert_eq!(status, 403, "{body}");
    assert!(body.to_string().contains("DENIED"), "{body}");

    // Recovery on the host, while the server runs.
    let out = recover(&server, &["--allow-ip", "127.0.0.1/32"]);
    assert!(text(&out).contains("127.0.0.1/32"), "{}", text(&out));
    eventually("allowed back in by recover --allow-ip", PICKUP, || async {
        network_status(&server, &password).await == 200
    })
    .await;

    // Lock out again (forced through the API), then reset every rule.
    let (status, body) = as_owner(
        &server,
        &password,
        reqwest::Method::DELETE,
        "/api/v1/network/rules?ipAddress=127.0.0.1/32&force=true",
        Value::Null,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(network_status(&server, &password).await, 403);
    recover(&server, &["--reset-network-rules"]);
    eventually(
        "back in after recover --reset-network-rules",
        PICKUP,
        || async { network_status(&server, &password).await == 200 },
    )
    .await;
    let (_, network) = as_owner(
        &server,
        &password,
        reqwest::Method::GET,
        "/api/v1/network",
        Value::Null,
    )
    .await;
    assert_eq!(network["networkRuleSet"]["defaultAction"], "Allow");
    assert_eq!(network["networkRuleSet"]["ipRules"], json!([]));

    // Public access off (forced), then recovered.
    let (status, body) = as_owner(
        &server,
        &password,
        reqwest::Method::PATCH,
        "/api/v1/network",
        json!({ "publicNetworkAccess": "Disabled" }),
    )
    .await;
    assert_eq!(status, 409, "{body}");
    let (status, body) = as_owner(
        &server,
        &password,
        reqwest::Method::PATCH,
        "/api/v1/network",
        json!({ "publicNetworkAccess": "Disabled", "force": true }),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(network_status(&server, &password).await, 403);
    recover(&server, &["--enable-public-access"]);
    eventually(
        "back in after recover --enable-public-access",
        PICKUP,
        || async { network_status(&server, &password).await == 200 },
    )
    .await;

    // All of it is in the activity log, by `recovery`.
    let (status, activity) = as_owner(
        &server,
        &password,
        reqwest::Method::GET,
        "/api/v1/activity",
        Value::Null,
    )
    .await;
    assert_eq!(status, 200, "{activity}");
    let by_recovery: Vec<String> = activity
        .as_array()
        .expect("activity list")
        .iter()
        .filter(|a| a["actor"] == "recovery")
        .map(|a| a["operation"].as_str().unwrap_or("").to_string())
        .collect();
    for op in [
        "add network rule",
        "reset network rules",
        "enable public network access",
    ] {
        assert!(
            by_recovery.iter().any(|o| o == op),
            "no '{op}' by recovery in {activity}"
        );
    }

    // The owner exists, so the configured initial password is ignored —
    // and the log says so, and what to do instead.
    server.restart();
    // (The log is written in the background: poll it.)
    eventually("the startup warning", PICKUP, || async {
        server.logs().contains("initial_owner_password is ignored")
    })
    .await;
    assert!(
        server
            .logs()
            .contains("berth recover --reset-owner-password"),
        "{}",
        server.logs()
    );
}

#[tokio::test]
async fn recover_resets_the_owner_password_of_a_running_server() {
    let dir = tempdir("recover-owner");
    let server = TestServer::start(&dir.path().join("data"));
    let old = server.owner_password().to_string();
    // Signed in (and cached) with the old password.
    assert_eq!(network_status(&server, &old).await, 200);

    let out = recover(&server, &["--reset-owner-password"]);
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    let new = stdout
        .lines()
        .find(|l| l.starts_with("owner password reset"))
        .and_then(|l| {
            l.rsplit_once("password ")
                .map(|(_, p)| p.trim().to_string())
        })
        .expect("the new password is printed");
    assert!(new.len() >= 32, "{stdout}");
    assert_ne!(new, old);

    let file = server.data_dir().join("initial-owner-password");
    assert_eq!(
        std::fs::read_to_string(&file)
            .expect("password file")
            .trim(),
        new
    );
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&file).expect("stat").permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "password file mode {mode:o}");

    assert_eq!(
        network_status(&server, &new).await,
        200,
        "new password works at once"
    );
    // The old one stops once the server sees the change (its cached
    // sign-in is dropped on the 1 s reload).
    eventually("the old password stops working", PICKUP, || async {
        network_status(&server, &old).await == 401
    })
    .await;

    let (_, activity) = as_owner(
        &server,
        &new,
        reqwest::Method::GET,
        "/api/v1/activity",
        Value::Null,
    )
    .await;
    assert!(
        activity
            .as_array()
            .expect("activity")
            .iter()
            .any(|a| a["actor"] == "recovery" && a["operation"] == "reset owner password"),
        "{activity}"
    );
    assert!(
        !activity.to_string().contains(&new),
        "the activity log never holds the password"
    );

    // Nothing asked for: a usage error, nothing changed.
    let data = server.data_dir().to_str().expect("utf-8").to_string();
    let out = berth(&["recover", "--data", &data]);
    assert!(!out.status.success(), "{}", text(&out));
    let out = berth(&[
        "recover",
        "--data",
        "/nonexistent/berth-data",
        "--reset-owner-password",
    ]);
    assert!(!out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("berth.db"), "{}", text(&out));
}
