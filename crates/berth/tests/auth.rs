//! The token service and the error behaviour that real
//! clients cannot easily provoke: expired and foreign tokens, `alg: none`,
//! malformed `Authorization` headers and scopes, scopes that ask for other
//! repositories, expired secrets, permission denials naming identity, action
//! and repository, and throttling.

mod common;

use std::time::Duration;

use common::*;
use serde_json::{json, Value};

async fn token(server: &TestServer, basic: Option<(&str, &str)>, scope: &str) -> reqwest::Response {
    let mut req = http_client()
        .get(format!("{}/oauth2/token", server.url()))
        .query(&[("service", "berth-test"), ("scope", scope)]);
    if let Some((u, p)) = basic {
        req = req.basic_auth(u, Some(p));
    }
    req.send().await.expect("token request")
}

async fn access_token(server: &TestServer, basic: (&str, &str), scope: &str) -> String {
    let resp = expect_status(token(server, Some(basic), scope).await, 200).await;
    let body: Value = resp.json().await.expect("token json");
    assert_eq!(body["token"], body["access_token"]);
    assert!(body["expires_in"].as_u64().is_some());
    body["token"].as_str().expect("token").to_string()
}

fn claims(token: &str) -> Value {
    let payload = token.split('.').nth(1).expect("jwt payload");
    let bytes = base64_url_decode(payload);
    serde_json::from_slice(&bytes).expect("claims json")
}

fn base64_url_decode(s: &str) -> Vec<u8> {
    let alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut bits = 0u32;
    let mut n = 0;
    let mut out = Vec::new();
    for c in s.bytes() {
        let v = alphabet.iter().position(|a| *a == c).expect("base64url") as u32;
        bits = (bits << 6) | v;
        n += 6;
        if n >= 8 {
            n -= 8;
            out.push((bits >> n) as u8);
        }
    }
    out
}

fn base64_url(data: &[u8]) -> String {
    base64(data)
        .trim_end_matches('=')
        .replace('+', "-")
        .replace('/', "_")
}

async fn manage(server: &TestServer, method: reqwest::Method, path: &str, body: Value) -> Value {
    let (status, value) = manage_request(server, method, path, body).await;
    assert!((200..300).contains(&status), "{path}: {status}: {value}");
    value
}

/// A service principal with `role` at `scope`: (app id, secret).
async fn service_principal(
    server: &TestServer,
    name: &str,
    role: &str,
    scope: &str,
) -> (String, String) {
    let created = manage(
        server,
        reqwest::Method::POST,
        "/api/v1/service-principals",
        json!({ "name": name, "role": role, "scope": scope }),
    )
    .await;
    (
        created["identity"]["id"].as_str().expect("id").to_string(),
        created["secrets"][0]["value"]
            .as_str()
            .expect("secret")
            .to_string(),
    )
}

async fn bearer_get(server: &TestServer, token: &str, path: &str) -> reqwest::Response {
    http_client()
        .get(format!("{}{path}", server.url()))
        .bearer_auth(token)
        .send()
        .await
        .expect("request")
}

#[tokio::test]
async fn token_grants_the_intersection_and_denials_name_identity_action_repository() {
    let dir = tempdir("auth-scope");
    let server = TestServer::start(&dir.path().join("data"));
    let owner = Api::new(&server);
    let digest = owner.push_blob("team/app", b"layer").await;
    owner.push_blob("other/app", b"layer").await;
    let (app_id, secret) = service_principal(&server, "puller", "AcrPull", "team/*").await;

    // Asking for push and for another repository is not an error; the token
    // just does not grant them.
    let scope = "repository:team/app:pull,push";
    let t = access_token(&server, (&app_id, &secret), scope).await;
    let c = claims(&t);
    assert_eq!(
        c["access"],
        json!([{ "type": "repository", "name": "team/app", "actions": ["pull"] }])
    );
    assert_eq!(
        c["exp"].as_i64().expect("exp") - c["iat"].as_i64().expect("iat"),
        300
    );
    let resp = bearer_get(&server, &t, &format!("/v2/team/app/blobs/{digest}")).await;
    assert_eq!(resp.status(), 200);

    // Push was asked for and refused: 403 naming identity, action, repository.
    let resp = http_client()
        .post(format!("{}/v2/team/app/blobs/uploads/", server.url()))
        .bearer_auth(&t)
        .send()
        .await
        .expect("post");
    let message = expect_error(resp, 403, "DENIED").await;
    assert!(
        message.contains("puller") && message.contains(&app_id),
        "{message}"
    );
    assert!(
        message.contains("push to repository 'team/app'"),
        "{message}"
    );
    assert!(message.contains("AcrPush"), "{message}");

    // Another repository was never asked for: 401 insufficient_scope.
    let other = access_token(&server, (&app_id, &secret), "repository:other/app:pull").await;
    assert_eq!(claims(&other)["access"][0]["actions"], json!([]));
    let resp = bearer_get(&server, &t, &format!("/v2/other/app/blobs/{digest}")).await;
    let challenge = header(&resp, "www-authenticate").expect("challenge");
    assert!(challenge.contains("insufficient_scope"), "{challenge}");
    expect_error(resp, 401, "UNAUTHORIZED").await;
    // With a token that asked for it and was refused: 403.
    let resp = bearer_get(&server, &other, &format!("/v2/other/app/blobs/{digest}")).await;
    let message = expect_error(resp, 403, "DENIED").await;
    assert!(
        message.contains("pull from repository 'other/app'"),
        "{message}"
    );

    // Basic credentials straight on /v2 get the same answers.
    let basic = client_with(Some(&format!(
        "Basic {}",
        base64(format!("{app_id}:{secret}").as_bytes())
    )));
    let resp = basic
        .delete(format!("{}/v2/team/app/blobs/{digest}", server.url()))
        .send()
        .await
        .expect("delete");
    let message = expect_error(resp, 403, "DENIED").await;
    assert!(
        message.contains("delete from repository 'team/app'"),
        "{message}"
    );
    assert!(
        owner.blob_exists("team/app", &digest).await,
        "nothing was deleted"
    );
}

#[tokio::test]
async fn foreign_expired_and_unsigned_tokens_are_refused() {
    let dir = tempdir("auth-tokens");
    let server = TestServer::start_with_env(
        &dir.path().join("a"),
        &[("BERTH_AUTH__TOKEN_TTL_SECONDS", "1")],
    );
    let other = TestServer::start(&dir.path().join("b"));
    let scope = "repository:x/y:pull";
    let owner = ("owner", server.owner_password());

    // Signed by another registry's key.
    let foreign = access_token(&other, ("owner", other.owner_password()), scope).await;
    let resp = bearer_get(&server, &foreign, "/v2/").await;
    let message = expect_error(resp, 401, "UNAUTHORIZED").await;
    assert!(message.contains("invalid token"), "{message}");

    // alg: none with a plausible payload.
    let good = access_token(&server, owner, scope).await;
    let payload = good.split('.').nth(1).expect("payload");
    let none = format!(
        "{}.{payload}.",
        base64_url(br#"{"alg":"none","typ":"JWT"}"#)
    );
    let message = expect_error(
        bearer_get(&server, &none, "/v2/").await,
        401,
        "UNAUTHORIZED",
    )
    .await;
    assert!(message.contains("invalid token"), "{message}");
    // HS256 "signed" with nothing.
    let hs = format!(
        "{}.{payload}.AAAA",
        base64_url(br#"{"alg":"HS256","typ":"JWT"}"#)
    );
    expect_error(bearer_get(&server, &hs, "/v2/").await, 401, "UNAUTHORIZED").await;
    // Altered payload under a valid signature.
    let mut c = claims(&good);
    c["access"] = json!([{ "type": "repository", "name": "x/y", "actions": ["pull", "push"] }]);
    let parts: Vec<&str> = good.split('.').collect();
    let forged = format!(
        "{}.{}.{}",
        parts[0],
        base64_url(c.to_string().as_bytes()),
        parts[2]
    );
    expect_error(
        bearer_get(&server, &forged, "/v2/").await,
        401,
        "UNAUTHORIZED",
    )
    .await;

    // The genuine token works, then expires (1 s lifetime, 5 s leeway).
    assert_eq!(bearer_get(&server, &good, "/v2/").await.status(), 200);
    tokio::time::sleep(Duration::from_secs(8)).await;
    let message = expect_error(
        bearer_get(&server, &good, "/v2/").await,
        401,
        "UNAUTHORIZED",
    )
    .await;
    assert!(message.contains("expired"), "{message}");
}

#[tokio::test]
async fn malformed_authorization_and_scopes() {
    let dir = tempdir("auth-malformed");
    let server = TestServer::start(&dir.path().join("data"));
    for (value, needle) in [
        ("Basic !!!notbase64", "base64"),
        ("Basic dXNlcm5vY29sb24=", "user:password"),
        ("Digest abc", "scheme"),
        ("Bearer", "invalid token"),
        ("Bearer a.b.c", "invalid token"),
    ] {
        let resp = client_with(Some(value))
            .get(format!("{}/v2/", server.url()))
            .send()
            .await
            .expect("request");
        let challenge = header(&resp, "www-authenticate").unwrap_or_default();
        let message = expect_error(resp, 401, "UNAUTHORIZED").await;
        assert!(message.contains(needle), "{value}: {message}");
        assert!(
            challenge.starts_with("Bearer realm="),
            "{value}: {challenge}"
        );
    }
    let owner = ("owner", server.owner_password());
    for scope in [
        "repository",
        "repository:x",
        "repository:../etc:pull",
        "repository:UP:pull",
        "bogus:x:y",
        "repository:x:",
    ] {
        let resp = token(&server, Some(owner), scope).await;
        let message = expect_error(resp, 400, "UNSUPPORTED").await;
        assert!(message.contains("scope"), "{scope}: {message}");
    }
    // Anonymous token requests while anonymous pull is off: 401 with why.
    let message = expect_error(
        token(&server, None, "repository:x:pull").await,
        401,
        "UNAUTHORIZED",
    )
    .await;
    assert!(
        message.contains("anonymous access is disabled"),
        "{message}"
    );
}

#[tokio::test]
async fn credential_states_are_named() {
    let dir = tempdir("auth-states");
    let server = TestServer::start(&dir.path().join("data"));
    let unknown = expect_error(
        token(&server, Some(("nobody", "x")), "repository:a:pull").await,
        401,
        "UNAUTHORIZED",
    )
    .await;
    assert!(unknown.contains("unknown identity 'nobody'"), "{unknown}");
    let wrong = expect_error(
        token(&server, Some(("owner", "nope")), "repository:a:pull").await,
        401,
        "UNAUTHORIZED",
    )
    .await;
    assert!(wrong.contains("wrong password"), "{wrong}");

    // A service principal whose secret ends in two seconds.
    let end = time_in(2);
    let created = manage(
        &server,
        reqwest::Method::POST,
        "/api/v1/service-principals",
        json!({ "name": "short", "role": "AcrPull", "endDate": end }),
    )
    .await;
    let id = created["identity"]["id"].as_str().expect("id").to_string();
    let secret = created["secrets"][0]["value"]
        .as_str()
        .expect("secret")
        .to_string();
    expect_status(
        token(&server, Some((&id, &secret)), "repository:a:pull").await,
        200,
    )
    .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let expired = expect_error(
        token(&server, Some((&id, &secret)), "repository:a:pull").await,
        401,
        "UNAUTHORIZED",
    )
    .await;
    assert!(expired.contains("client secret expired at"), "{expired}");
    assert!(expired.contains("short"), "{expired}");
    // Listed as expired, and a reset brings it back.
    let creds = manage(
        &server,
        reqwest::Method::GET,
        &format!("/api/v1/service-principals/{id}/credentials"),
        Value::Null,
    )
    .await;
    assert_eq!(creds[0]["expired"], json!(true));
    let reset = manage(
        &server,
        reqwest::Method::POST,
        &format!("/api/v1/service-principals/{id}/credentials/reset"),
        json!({}),
    )
    .await;
    let fresh = reset["value"].as_str().expect("secret");
    expect_status(
        token(&server, Some((&id, fresh)), "repository:a:pull").await,
        200,
    )
    .await;

    // A disabled token.
    manage(
        &server,
        reqwest::Method::POST,
        "/api/v1/scope-maps",
        json!({"name": "m", "rules": [{"repository": "a", "actions": ["content/read"]}]}),
    )
    .await;
    let t = manage(
        &server,
        reqwest::Method::POST,
        "/api/v1/tokens",
        json!({"name": "t1", "scopeMap": "m"}),
    )
    .await;
    let pw = t["secrets"][0]["value"].as_str().expect("pw").to_string();
    expect_status(
        token(&server, Some(("t1", &pw)), "repository:a:pull").await,
        200,
    )
    .await;
    manage(
        &server,
        reqwest::Method::PATCH,
        "/api/v1/tokens/t1",
        json!({"enabled": false}),
    )
    .await;
    let disabled = expect_error(
        token(&server, Some(("t1", &pw)), "repository:a:pull").await,
        401,
        "UNAUTHORIZED",
    )
    .await;
    assert!(disabled.contains("token 't1' is disabled"), "{disabled}");

    // Every change is in the activity log, without secrets.
    let activity = manage(
        &server,
        reqwest::Method::GET,
        "/api/v1/activity",
        Value::Null,
    )
    .await;
    let text = activity.to_string();
    for op in [
        "create service principal",
        "reset service principal credential",
        "create scope map",
        "create token",
        "update token",
    ] {
        assert!(text.contains(op), "activity lacks '{op}': {text}");
    }
    assert!(!text.contains(&secret) && !text.contains(&pw) && !text.contains(fresh));
}

fn time_in(seconds: u64) -> String {
    berth_util::rfc3339(berth_util::now() + seconds as i64)
}

#[tokio::test]
async fn repeated_failures_throttle_that_name_from_that_address() {
    let dir = tempdir("auth-throttle");
    let server = TestServer::start_with_env(
        &dir.path().join("data"),
        &[("BERTH_AUTH__FAILED_LOGIN_LIMIT", "3")],
    );
    for _ in 0..3 {
        expect_error(
            token(&server, Some(("owner", "bad")), "repository:a:pull").await,
            401,
            "UNAUTHORIZED",
        )
        .await;
    }
    // Now even the right password waits (for this name from this address;
    // tests/throttle.rs shows everything else is untouched).
    let resp = token(
        &server,
        Some(("owner", server.owner_password())),
        "repository:a:pull",
    )
    .await;
    let retry: u64 = header(&resp, "retry-after")
        .expect("Retry-After")
        .parse()
        .expect("seconds");
    assert!((1..=60).contains(&retry), "{retry}");
    let message = expect_error(resp, 429, "TOOMANYREQUESTS").await;
    assert!(message.contains("too many failed logins"), "{message}");
}

#[tokio::test]
async fn signing_key_rotation_keeps_issued_tokens_valid() {
    let dir = tempdir("auth-rotate");
    let server = TestServer::start(&dir.path().join("data"));
    let owner = ("owner", server.owner_password());
    let before = access_token(&server, owner, "repository:x/y:pull").await;
    let rotated = manage(
        &server,
        reqwest::Method::POST,
        "/api/v1/signing-keys/rotate",
        json!({}),
    )
    .await;
    let kid = rotated["kid"].as_str().expect("kid").to_string();
    let after = access_token(&server, owner, "repository:x/y:pull").await;
    let header_of = |t: &str| -> Value {
        serde_json::from_slice(&base64_url_decode(t.split('.').next().expect("header")))
            .expect("json")
    };
    assert_ne!(header_of(&before)["kid"], header_of(&after)["kid"]);
    assert_eq!(header_of(&after)["kid"], json!(kid));
    // Both verify: the old key keeps verifying until its tokens expire.
    assert_eq!(bearer_get(&server, &before, "/v2/").await.status(), 200);
    assert_eq!(bearer_get(&server, &after, "/v2/").await.status(), 200);
    // After a restart both keys are loaded from the store.
    let mut server = server;
    server.restart();
    assert_eq!(bearer_get(&server, &before, "/v2/").await.status(), 200);
    assert_eq!(bearer_get(&server, &after, "/v2/").await.status(), 200);
    let activity = manage(
        &server,
        reqwest::Method::GET,
        "/api/v1/activity",
        Value::Null,
    )
    .await;
    assert!(activity.to_string().contains("rotate token signing key"));
}
