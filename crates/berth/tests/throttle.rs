//! Failed-login throttling cannot take a cluster down: failures count per
//! (client address, identity name), and only credential checks wait. A
//! client with a bad secret behind an address shared with others (a
//! cluster's egress) locks out only its own name from that address —
//! anonymous requests, bearer tokens and other identities from the same
//! address carry on. And a burst of identical logins on a cold cache costs
//! one argon2 verification, not one each.

mod common;

use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use common::*;
use serde_json::{json, Value};

/// A client whose connections come from `ip` (an address of 127.0.0.0/8).
fn client_from(ip: [u8; 4]) -> reqwest::Client {
    reqwest::Client::builder()
        .local_address(IpAddr::V4(Ipv4Addr::from(ip)))
        .no_proxy()
        .timeout(Duration::from_secs(120))
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("http client")
}

async fn token(
    client: &reqwest::Client,
    server: &TestServer,
    basic: Option<(&str, &str)>,
) -> reqwest::Response {
    let mut req = client
        .get(format!("{}/oauth2/token", server.url()))
        .query(&[("service", "berth-test"), ("scope", "repository:app:pull")]);
    if let Some((user, password)) = basic {
        req = req.basic_auth(user, Some(password));
    }
    req.send().await.expect("token request")
}

async fn basic_ping(
    client: &reqwest::Client,
    server: &TestServer,
    user: &str,
    password: &str,
) -> reqwest::Response {
    client
        .get(format!("{}/v2/", server.url()))
        .basic_auth(user, Some(password))
        .send()
        .await
        .expect("GET /v2/")
}

#[tokio::test]
async fn failures_lock_out_only_that_name_from_that_address() {
    let dir = tempdir("throttle-pair");
    let server = TestServer::start(&dir.path().join("data"));
    let owner = ("owner", server.owner_password());
    let (status, body) = manage_request(
        &server,
        reqwest::Method::PATCH,
        "/api/v1/registry",
        json!({ "anonymousPullEnabled": true }),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let (status, created) = manage_request(
        &server,
        reqwest::Method::POST,
        "/api/v1/service-principals",
        json!({ "name": "ci", "role": "AcrPull" }),
    )
    .await;
    assert_eq!(status, 201, "{created}");
    let app = created["identity"]["id"]
        .as_str()
        .expect("app id")
        .to_string();
    let secret = created["secrets"][0]["value"]
        .as_str()
        .expect("secret")
        .to_string();

    let shared = client_from([127, 0, 0, 2]);
    let other = client_from([127, 0, 0, 3]);
    // A bearer token issued before the failures, from the shared address.
    let resp = expect_status(token(&shared, &server, Some(owner)).await, 200).await;
    let issued: Value = resp.json().await.expect("token json");
    let bearer = issued["token"].as_str().expect("token").to_string();

    // The pod with the bad secret: Basic on /v2/ and the token endpoint.
    for n in 0..12 {
        let resp = if n % 2 == 0 {
            basic_ping(&shared, &server, &app, "a-stale-secret").await
        } else {
            token(&shared, &server, Some((&app, "a-stale-secret"))).await
        };
        let status = resp.status().as_u16();
        if n < 10 {
            assert_eq!(status, 401, "failure {n}");
        } else {
            assert_eq!(status, 429, "failure {n}: over the limit of 10");
        }
    }

    // (a) anonymous requests from the shared address: not throttled.
    let resp = shared
        .get(format!("{}/v2/", server.url()))
        .send()
        .await
        .expect("anonymous /v2/");
    assert_eq!(resp.status().as_u16(), 401, "anonymous /v2/ is challenged");
    assert!(header(&resp, "www-authenticate").is_some());
    expect_status(token(&shared, &server, None).await, 200).await;
    // (b) the owner's correct login from the shared address works.
    expect_status(basic_ping(&shared, &server, owner.0, owner.1).await, 200).await;
    expect_status(token(&shared, &server, Some(owner)).await, 200).await;
    // (c) the token issued before works from the shared address.
    let resp = shared
        .get(format!("{}/v2/", server.url()))
        .bearer_auth(&bearer)
        .send()
        .await
        .expect("bearer /v2/");
    assert_eq!(resp.status().as_u16(), 200);
    // (d) the same name from another address is not throttled.
    expect_status(basic_ping(&other, &server, &app, &secret).await, 200).await;
    let resp = token(&other, &server, Some((&app, "wrong-from-elsewhere"))).await;
    assert_eq!(resp.status().as_u16(), 401);
    // (e) the same name from the shared address waits — even with the
    // right secret (guessing during a lock-out must learn nothing).
    let resp = token(&shared, &server, Some((&app, &secret))).await;
    let retry: u64 = header(&resp, "retry-after")
        .expect("Retry-After")
        .parse()
        .expect("seconds");
    assert!((1..=60).contains(&retry), "Retry-After {retry}");
    let message = expect_error(resp, 429, "TOOMANYREQUESTS").await;
    assert!(message.contains(&app), "names the identity: {message}");
    assert!(
        message.contains("127.0.0.2"),
        "names the address: {message}"
    );
    assert!(!message.contains(&secret), "no secret in: {message}");
    let resp = basic_ping(&shared, &server, &app, &secret).await;
    assert_eq!(resp.status().as_u16(), 429);
    assert!(header(&resp, "retry-after").is_some());
}

/// `name value` lines of the Prometheus text.
fn metric(text: &str, name: &str) -> u64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.split_once(' '))
        .filter(|(k, _)| *k == name)
        .map(|(_, v)| v.trim().parse::<f64>().expect("metric value") as u64)
        .sum()
}

async fn verifications(server: &TestServer) -> u64 {
    let text = metrics_text(server).await;
    metric(&text, "berth_auth_password_verifications_total")
}

#[tokio::test]
async fn concurrent_identical_logins_on_a_cold_cache_verify_once() {
    let dir = tempdir("throttle-flight");
    let server = TestServer::start(&dir.path().join("data"));
    let before = verifications(&server).await;
    let client = http_client();
    let logins = (0..40).map(|_| {
        let client = client.clone();
        let url = format!("{}/v2/", server.url());
        let password = server.owner_password().to_string();
        async move {
            client
                .get(url)
                .basic_auth("owner", Some(password))
                .send()
                .await
                .expect("GET /v2/")
                .status()
                .as_u16()
        }
    });
    let statuses = futures::future::join_all(logins).await;
    assert!(statuses.iter().all(|s| *s == 200), "{statuses:?}");
    assert_eq!(
        verifications(&server).await - before,
        1,
        "40 concurrent logins with one credential share one argon2 run"
    );
    // A different credential is verified on its own.
    let resp = client
        .get(format!("{}/v2/", server.url()))
        .basic_auth("owner", Some("not-it"))
        .send()
        .await
        .expect("GET /v2/");
    assert_eq!(resp.status().as_u16(), 401);
    assert_eq!(verifications(&server).await - before, 2);
}
