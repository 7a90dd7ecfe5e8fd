//! Anonymous clients as the distribution spec's clients behave: an
//! anonymous token passes the `/v2/` base check when anonymous pull is on,
//! and empty Basic credentials (`Basic Og==`) are anonymous, not a failed
//! login.

mod support;

use berth_manage::registry::UpdateRegistry;
use support::*;

async fn with_anonymous_pull(dir: &std::path::Path) -> TestApp {
    let app = TestApp::embedded(dir).await;
    manage::send(
        &app.as_owner(),
        &UpdateRegistry {
            anonymous_pull_enabled: Some(true),
            ..Default::default()
        },
    )
    .await;
    app
}

async fn anonymous_token(app: &TestApp, authorization: Option<&str>) -> TestResponse {
    let mut request = app
        .anonymous()
        .get("/oauth2/token?service=registry.test:5000&scope=repository:app/web:pull");
    if let Some(value) = authorization {
        request = request.header("authorization", value);
    }
    request.send().await
}

#[tokio::test]
async fn an_anonymous_token_passes_the_base_check_when_anonymous_pull_is_on() {
    let dir = tempdir("anonymous-base");
    let app = with_anonymous_pull(dir.path()).await;
    // Without credentials, /v2/ still answers with the challenge.
    let resp = app.anonymous().get("/v2/").send().await;
    assert_eq!(resp.status(), 401, "{}", resp.text());
    assert!(header(&resp, "www-authenticate").is_some());

    let resp = expect_status(anonymous_token(&app, None).await, 200);
    let token = resp.json()["token"].as_str().expect("token").to_string();
    let resp = app.anonymous().get("/v2/").bearer(&token).send().await;
    assert_eq!(
        resp.status(),
        200,
        "anonymous token at /v2/: {}",
        resp.text()
    );
    // And it still may not push.
    let resp = app
        .anonymous()
        .post("/v2/app/web/blobs/uploads/")
        .bearer(&token)
        .send()
        .await;
    assert_eq!(resp.status(), 401, "{}", resp.text());
}

#[tokio::test]
async fn empty_basic_credentials_are_anonymous_not_a_failed_login() {
    let dir = tempdir("anonymous-empty-basic");
    let app = with_anonymous_pull(dir.path()).await;
    let empty = format!("Basic {}", "Og==");
    // Many times over: a failed login would be throttled after ten.
    for _ in 0..15 {
        let resp = anonymous_token(&app, Some(&empty)).await;
        assert_eq!(resp.status(), 200, "{}", resp.text());
    }
    let resp = app
        .anonymous()
        .get("/v2/app/web/tags/list")
        .header("authorization", &empty)
        .send()
        .await;
    // An anonymous pull of a repository that does not exist: 404, not 401.
    expect_error(resp, 404, "NAME_UNKNOWN");

    // With anonymous pull off, empty credentials get what no credentials get.
    manage::send(
        &app.as_owner(),
        &UpdateRegistry {
            anonymous_pull_enabled: Some(false),
            ..Default::default()
        },
    )
    .await;
    let resp = anonymous_token(&app, Some(&empty)).await;
    let message = resp.expect_error("empty Basic, anonymous pull off", 401, "UNAUTHORIZED");
    assert!(
        message.contains("anonymous access is disabled"),
        "{message}"
    );
}
