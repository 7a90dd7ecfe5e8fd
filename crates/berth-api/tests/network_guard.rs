//! The network guard in process: the peer address and the endpoint each
//! request arrives with (what berth's accept loop and listener layer set)
//! decide what the rules allow.

mod support;

use berth_network::{DefaultAction, Endpoint};
use support::*;

/// Rules that deny by default and allow 127.0.0.1 only.
async fn allow_only_loopback_one(app: &TestApp) {
    app.state()
        .network
        .update(
            &app.state().auth,
            "test",
            None,
            "allow only 127.0.0.1",
            |settings, _| {
                settings.default_action = DefaultAction::Deny;
                settings.add_ip_rule("127.0.0.1")?;
                Ok(())
            },
        )
        .await
        .expect("network rules");
}

#[tokio::test]
async fn rules_decide_by_the_peer_address_and_endpoint() {
    let dir = tempdir("berth-api-network-");
    let app = TestApp::embedded(dir.path()).await.as_owner();
    let image = push_image(&app, "net/app", "v1", 1, 1000).await;
    allow_only_loopback_one(&app).await;

    let path = format!("/v2/net/app/manifests/{}", image.digest);
    expect_status(app.get(&path).from("127.0.0.1").await, 200);
    let message = expect_error(app.get(&path).from("127.0.0.2").await, 403, "DENIED");
    assert!(message.contains("127.0.0.2"), "{message}");
    // Behind an untrusted proxy, X-Forwarded-For changes nothing.
    let resp = app
        .get(&path)
        .from("127.0.0.2")
        .header("x-forwarded-for", "127.0.0.1")
        .await;
    expect_error(resp, 403, "DENIED");
    // Private endpoints are not subject to the public rules.
    let resp = app
        .get(&path)
        .from("127.0.0.2")
        .on_endpoint(Endpoint::Private("vnet".into()))
        .await;
    expect_status(resp, 200);
    // Health checks answer whatever the rules.
    expect_status(app.get("/healthz").from("127.0.0.2").await, 200);
}
