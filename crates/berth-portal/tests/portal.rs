//! The portal in-process: sessions, CSRF, permissions, and what the pages
//! show, against the real application on temporary embedded stores.

mod support;

use http::StatusCode;
use support::app::{TestPortal, HOST, OWNER_PASSWORD};

/// A service principal with `role` at registry scope: (login, secret).
async fn service_principal(portal: &TestPortal, name: &str, role: &str) -> (String, String) {
    let body = serde_json::json!({"name": name, "role": role});
    let page = portal
        .as_owner(
            "POST",
            "/api/v1/service-principals",
            "application/json",
            serde_json::to_vec(&body).expect("json"),
        )
        .await;
    assert_eq!(page.status, StatusCode::CREATED, "{}", page.body);
    let created: serde_json::Value = serde_json::from_str(&page.body).expect("json");
    (
        created["identity"]["login"]
            .as_str()
            .expect("login")
            .to_string(),
        created["secrets"][0]["value"]
            .as_str()
            .expect("secret")
            .to_string(),
    )
}

async fn delete_service_principal(portal: &TestPortal, login: &str) {
    let deleted = portal
        .as_owner(
            "DELETE",
            &format!("/api/v1/service-principals/{login}"),
            "application/json",
            Vec::new(),
        )
        .await;
    assert_eq!(deleted.status, StatusCode::NO_CONTENT, "{}", deleted.body);
}

#[tokio::test]
async fn a_browser_without_a_session_is_sent_to_sign_in_and_back() {
    let portal = TestPortal::open().await;
    let mut browser = portal.browser();
    let page = browser.get("/network?done=added").await;
    assert_eq!(page.status, StatusCode::SEE_OTHER);
    assert_eq!(page.location(), "/login?next=%2Fnetwork%3Fdone%3Dadded");
    let form = browser.get(page.location()).await;
    assert_eq!(form.status, StatusCode::OK);
    assert!(
        form.has("name=\"next\" value=\"/network?done=added\""),
        "{}",
        form.body
    );

    let signed_in = browser
        .post(
            "/login",
            &[
                ("login", "owner"),
                ("password", OWNER_PASSWORD),
                ("next", "/network"),
            ],
        )
        .await;
    assert_eq!(signed_in.status, StatusCode::SEE_OTHER);
    assert_eq!(signed_in.location(), "/network");
    let cookie = signed_in
        .headers
        .get("set-cookie")
        .and_then(|v| v.to_str().ok())
        .expect("a session cookie");
    assert!(cookie.contains("HttpOnly"), "{cookie}");
    assert!(cookie.contains("SameSite=Strict"), "{cookie}");
    assert!(cookie.contains("Path=/"), "{cookie}");
    assert!(
        !cookie.contains("Secure"),
        "plain HTTP: not Secure ({cookie})"
    );
    let network = browser.get("/network").await;
    assert_eq!(network.status, StatusCode::OK);
    assert!(network.has("Signed in as"), "{}", network.body);
}

#[tokio::test]
async fn sign_in_only_goes_back_to_a_page_of_this_registry() {
    let portal = TestPortal::open().await;
    let mut browser = portal.browser();
    for next in [
        "https://evil.example/",
        "//evil.example/x",
        "/\\evil.example",
    ] {
        let page = browser
            .post(
                "/login",
                &[
                    ("login", "owner"),
                    ("password", OWNER_PASSWORD),
                    ("next", next),
                ],
            )
            .await;
        assert_eq!(page.location(), "/", "next={next}");
    }
}

#[tokio::test]
async fn a_wrong_password_is_refused_with_the_reason_and_no_session() {
    let portal = TestPortal::open().await;
    let mut browser = portal.browser();
    let page = browser.sign_in("owner", "wrong").await;
    assert_eq!(page.status, StatusCode::UNAUTHORIZED, "{}", page.body);
    assert!(page.has("Sign-in refused"), "{}", page.body);
    assert!(browser.cookie.is_none());
    assert!(!page.body.contains("wrong\""), "the password is not echoed");
}

#[tokio::test]
async fn a_change_without_the_sessions_csrf_token_is_refused_and_changes_nothing() {
    let portal = TestPortal::open().await;
    let mut browser = portal.browser();
    browser.sign_in("owner", OWNER_PASSWORD).await;
    let missing = browser
        .post("/network/rules/add", &[("ip", "10.9.0.0/16")])
        .await;
    assert_eq!(missing.status, StatusCode::FORBIDDEN, "{}", missing.body);
    assert!(missing.has("CSRF token"), "{}", missing.body);

    // The token of another session does not do either.
    let mut other = portal.browser();
    other.sign_in("owner", OWNER_PASSWORD).await;
    let foreign = other.get("/network").await.csrf();
    let wrong = browser
        .post(
            "/network/rules/add",
            &[("ip", "10.9.0.0/16"), ("csrf", &foreign)],
        )
        .await;
    assert_eq!(wrong.status, StatusCode::FORBIDDEN);

    let page = browser.get("/network").await;
    assert!(!page.has("10.9.0.0/16"), "{}", page.body);

    // With its own token the same change is made.
    let csrf = page.csrf();
    let made = browser
        .post(
            "/network/rules/add",
            &[("ip", "10.9.0.0/16"), ("csrf", &csrf)],
        )
        .await;
    assert_eq!(made.status, StatusCode::SEE_OTHER, "{}", made.body);
    assert!(browser.get("/network").await.has("10.9.0.0/16"));
}

#[tokio::test]
async fn a_change_posted_from_another_sites_page_is_refused() {
    let portal = TestPortal::open().await;
    let mut browser = portal.browser();
    browser.sign_in("owner", OWNER_PASSWORD).await;
    let csrf = browser.get("/network").await.csrf();
    browser.origin = Some("https://evil.example".into());
    let page = browser
        .post(
            "/network/rules/add",
            &[("ip", "10.8.0.0/16"), ("csrf", &csrf)],
        )
        .await;
    assert_eq!(page.status, StatusCode::FORBIDDEN, "{}", page.body);
    browser.origin = None;
    assert!(!browser.get("/network").await.has("10.8.0.0/16"));
}

#[tokio::test]
async fn a_reader_sees_no_change_buttons_and_its_posts_are_refused_by_the_api() {
    let portal = TestPortal::open().await;
    let (login, secret) = service_principal(&portal, "auditor", "Reader").await;
    let mut reader = portal.browser();
    let signed_in = reader.sign_in(&login, &secret).await;
    assert_eq!(
        signed_in.status,
        StatusCode::SEE_OTHER,
        "{}",
        signed_in.body
    );

    let network = reader.get("/network").await;
    assert_eq!(network.status, StatusCode::OK, "{}", network.body);
    assert!(
        !network.has("action=\"/network/rules/add\""),
        "{}",
        network.body
    );
    assert!(!network.has("action=\"/network/settings\""));
    assert!(network.has("id=\"read-only\""));
    let access = reader.get("/access").await;
    assert!(!access.has("action=\"/access/service-principals\""));
    assert!(!access.has("action=\"/access/role-assignments/delete\""));

    // The forms are absent, and posting them anyway is refused by the
    // management API's own permission check.
    let csrf = network.csrf();
    let page = reader
        .post(
            "/network/rules/add",
            &[("ip", "10.7.0.0/16"), ("csrf", &csrf)],
        )
        .await;
    assert_eq!(page.status, StatusCode::FORBIDDEN, "{}", page.body);
    assert!(page.has("registries/manage/write"), "{}", page.body);
    let page = reader
        .post(
            "/access/service-principals",
            &[("name", "sneaky"), ("csrf", &csrf)],
        )
        .await;
    assert_eq!(page.status, StatusCode::FORBIDDEN, "{}", page.body);

    let mut owner = portal.browser();
    owner.sign_in("owner", OWNER_PASSWORD).await;
    assert!(!owner.get("/network").await.has("10.7.0.0/16"));
    assert!(!owner.get("/access").await.has("sneaky"));
}

#[tokio::test]
async fn an_idle_session_ends_and_a_used_one_goes_on() {
    let portal = TestPortal::open().await;
    let mut browser = portal.browser();
    browser.sign_in("owner", OWNER_PASSWORD).await;
    // Used every 20 minutes: alive after an hour.
    for _ in 0..3 {
        portal.advance(20 * 60);
        assert_eq!(browser.get("/settings").await.status, StatusCode::OK);
    }
    portal.advance(31 * 60);
    let page = browser.get("/settings").await;
    assert_eq!(page.status, StatusCode::SEE_OTHER);
    assert_eq!(page.location(), "/login?next=%2Fsettings&expired=1");
    assert!(browser.cookie.is_none(), "the cookie is cleared");
    assert!(browser
        .get("/login?expired=1")
        .await
        .has("Your session ended"));
}

#[tokio::test]
async fn a_session_ends_when_its_identity_is_deleted_or_signs_out() {
    let portal = TestPortal::open().await;
    let (login, secret) = service_principal(&portal, "temp", "Reader").await;
    let mut browser = portal.browser();
    browser.sign_in(&login, &secret).await;
    assert_eq!(browser.get("/settings").await.status, StatusCode::OK);
    delete_service_principal(&portal, &login).await;
    assert_eq!(browser.get("/settings").await.status, StatusCode::SEE_OTHER);

    let mut owner = portal.browser();
    owner.sign_in("owner", OWNER_PASSWORD).await;
    let csrf = owner.get("/settings").await.csrf();
    let out = owner.post("/logout", &[("csrf", &csrf)]).await;
    assert_eq!(out.status, StatusCode::SEE_OTHER);
    assert!(owner.cookie.is_none());
    assert_eq!(owner.get("/settings").await.status, StatusCode::SEE_OTHER);
}

#[tokio::test]
async fn a_new_service_principals_secret_is_shown_once() {
    let portal = TestPortal::open().await;
    let mut browser = portal.browser();
    browser.sign_in("owner", OWNER_PASSWORD).await;
    let csrf = browser.get("/access").await.csrf();
    let page = browser
        .post(
            "/access/service-principals",
            &[
                ("name", "ci"),
                ("role", "AcrPush"),
                ("scope", "apps/*"),
                ("csrf", &csrf),
            ],
        )
        .await;
    assert_eq!(page.status, StatusCode::CREATED, "{}", page.body);
    let marker = "id=\"sp-secret\">";
    let start = page.body.find(marker).expect("the secret") + marker.len();
    let secret = &page.body[start..start + page.body[start..].find('<').expect("end")];
    assert!(secret.len() >= 20, "{secret}");
    assert_eq!(
        page.headers
            .get("cache-control")
            .and_then(|v| v.to_str().ok()),
        Some("no-store")
    );
    let access = browser.get("/access").await;
    assert!(access.has(">ci<"), "{}", access.body);
    assert!(access.has("AcrPush"));
    assert!(!access.has(secret), "the secret is never shown again");
}

#[tokio::test]
async fn an_orphaned_role_assignment_is_marked_with_its_fix() {
    let portal = TestPortal::open().await;
    let (login, _) = service_principal(&portal, "gone", "AcrPull").await;
    delete_service_principal(&portal, &login).await;
    let mut browser = portal.browser();
    browser.sign_in("owner", OWNER_PASSWORD).await;
    let page = browser.get("/access").await;
    // Deleting a principal leaves its assignments behind, granting nothing.
    assert!(page.has("class=\"badge bad\">orphaned"), "{}", page.body);
    assert!(
        page.has("berth role assignment delete --id"),
        "{}",
        page.body
    );
}

#[tokio::test]
async fn a_manifest_page_shows_its_layers_with_sizes_and_an_index_its_platforms() {
    let portal = TestPortal::open().await;
    let (amd, amd_bytes) = portal
        .push_image("team/app", "amd", &[1000, 250_000], ("linux", "amd64"))
        .await;
    let (arm, arm_bytes) = portal
        .push_image("team/app", "arm", &[2000], ("linux", "arm64"))
        .await;
    let index = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [
            {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": amd, "size": amd_bytes.len(), "platform": {"os": "linux", "architecture": "amd64"}},
            {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": arm, "size": arm_bytes.len(), "platform": {"os": "linux", "architecture": "arm64", "variant": "v8"}},
        ]
    }))
    .expect("json");
    let (index_digest, _) = portal
        .put_manifest(
            "team/app",
            "1.0",
            "application/vnd.oci.image.index.v1+json",
            &index,
        )
        .await;

    let mut browser = portal.browser();
    browser.sign_in("owner", OWNER_PASSWORD).await;
    let repos = browser.get("/repositories?q=TEAM").await;
    assert!(
        repos.has("href=\"/repository?name=team%2Fapp\""),
        "{}",
        repos.body
    );
    let repo = browser.get("/repository?name=team%2Fapp").await;
    assert!(
        repo.has(">1.0<") && repo.has(">amd<") && repo.has(">arm<"),
        "{}",
        repo.body
    );

    let page = browser
        .get("/manifest?repository=team%2Fapp&reference=1.0")
        .await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    assert!(
        page.has("linux/amd64") && page.has("linux/arm64/v8"),
        "{}",
        page.body
    );
    assert!(
        page.has(&format!("docker pull {HOST}/team/app@{index_digest}")),
        "{}",
        page.body
    );

    let image = browser
        .get(&format!("/manifest?repository=team%2Fapp&reference={amd}"))
        .await;
    assert!(image.has("data-bytes=\"250000\""), "{}", image.body);
    assert!(image.has("244.1 KiB"), "{}", image.body);
    assert!(image.has("data-bytes=\"1000\""));
    assert!(image.has("id=\"config\""));

    let missing = browser
        .get("/manifest?repository=team%2Fapp&reference=nope")
        .await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND, "{}", missing.body);
}

#[tokio::test]
async fn explain_shows_the_decision_trace() {
    let portal = TestPortal::open().await;
    let mut browser = portal.browser();
    browser.sign_in("owner", OWNER_PASSWORD).await;
    let page = browser
        .get("/explain?ip=10.1.2.3&identity=&action=push&repository=team%2Fapp")
        .await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    assert!(page.has("id=\"verdict\""), "{}", page.body);
    assert!(page.has("id=\"network-trace\"") && page.has("id=\"access-trace\""));
    assert!(
        page.has("repositories/content/write") || page.has("denied"),
        "{}",
        page.body
    );
}

#[tokio::test]
async fn pages_are_never_cached_framed_or_scripted_from_elsewhere() {
    let portal = TestPortal::open().await;
    let mut browser = portal.browser();
    browser.sign_in("owner", OWNER_PASSWORD).await;
    let page = browser.get("/").await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    let csp = page
        .headers
        .get("content-security-policy")
        .and_then(|v| v.to_str().ok())
        .expect("CSP");
    assert!(
        csp.contains("script-src 'self'") && csp.contains("frame-ancestors 'none'"),
        "{csp}"
    );
    assert!(
        !page.body.contains("http://") && !page.body.contains("https://"),
        "nothing fetched from elsewhere: {}",
        page.body
    );
    let css = browser.get("/-/portal.css").await;
    assert_eq!(css.status, StatusCode::OK);
    assert!(css.has("prefers-color-scheme: dark"));
}

#[tokio::test]
async fn the_overview_draws_the_hourly_storage_samples() {
    let portal = TestPortal::open().await;
    let mut browser = portal.browser();
    browser.sign_in("owner", OWNER_PASSWORD).await;
    assert!(browser.get("/").await.has("No samples yet"));

    let metadata = portal.state.registry.metadata().clone();
    let now = berth_util::now();
    metadata
        .sample_storage(now - 2 * 86400)
        .await
        .expect("sample");
    portal
        .push_image("sized/app", "v1", &[300_000], ("linux", "amd64"))
        .await;
    metadata.sample_storage(now).await.expect("sample");
    let page = browser.get("/").await;
    assert!(page.has("id=\"storage-chart\""), "{}", page.body);
    assert!(page.has("<polyline"), "{}", page.body);
    // Two days, each with its sample; today's holds the pushed layer.
    let table = &page.body[page.body.find("id=\"storage-samples\"").expect("the table")..];
    assert_eq!(table.matches("data-bytes=").count(), 2, "{table}");
    assert!(table.contains("data-bytes=\"0\""), "{table}");
    let today = table.rsplit("data-bytes=\"").next().expect("today");
    let bytes: u64 = today[..today.find('"').expect("end")]
        .parse()
        .expect("bytes");
    assert!(bytes > 300_000, "{bytes}");
}

#[tokio::test]
async fn the_network_rules_guard_the_portal_as_they_guard_the_api() {
    let portal = TestPortal::open().await;
    let mut browser = portal.browser();
    browser.sign_in("owner", OWNER_PASSWORD).await;
    assert_eq!(browser.get("/").await.status, StatusCode::OK);
    // Deny every address but 10.0.0.0/8: the browser (127.0.0.1) is out.
    let rule = portal
        .as_owner(
            "POST",
            "/api/v1/network/rules",
            "application/json",
            br#"{"ipAddress": "10.0.0.0/8"}"#.to_vec(),
        )
        .await;
    assert_eq!(rule.status, StatusCode::OK, "{}", rule.body);
    let deny = portal
        .as_owner(
            "PATCH",
            "/api/v1/network",
            "application/json",
            br#"{"defaultAction": "Deny", "force": true}"#.to_vec(),
        )
        .await;
    assert_eq!(deny.status, StatusCode::OK, "{}", deny.body);
    for path in ["/", "/login", "/-/portal.css"] {
        let page = browser.get(path).await;
        assert_eq!(page.status, StatusCode::FORBIDDEN, "{path}: {}", page.body);
        assert!(!page.has("Overview"), "{path}");
    }
}

#[tokio::test]
async fn a_trusted_services_credentials_do_not_carry_someone_elses_session_past_the_rules() {
    let portal = TestPortal::open().await;
    let (login, secret) = service_principal(&portal, "scanner", "AcrPull").await;
    let trusted = portal
        .as_owner(
            "PATCH",
            &format!("/api/v1/identities/{login}"),
            "application/json",
            br#"{"trustedService": true}"#.to_vec(),
        )
        .await;
    assert_eq!(trusted.status, StatusCode::OK, "{}", trusted.body);
    let mut browser = portal.browser();
    browser.sign_in("owner", OWNER_PASSWORD).await;
    for (method, uri, body) in [
        (
            "PATCH",
            "/api/v1/network",
            r#"{"networkRuleBypassOptions": "TrustedServices"}"#,
        ),
        (
            "POST",
            "/api/v1/network/rules",
            r#"{"ipAddress": "10.0.0.0/8"}"#,
        ),
        (
            "PATCH",
            "/api/v1/network",
            r#"{"defaultAction": "Deny", "force": true}"#,
        ),
    ] {
        let page = portal
            .as_owner(method, uri, "application/json", body.as_bytes().to_vec())
            .await;
        assert_eq!(page.status, StatusCode::OK, "{uri}: {}", page.body);
    }
    // The trusted service passes the rules with its own credentials...
    let ping = portal
        .send(
            http::Request::builder()
                .uri("/v2/")
                .header("authorization", support::app::basic(&login, &secret))
                .body(axum::body::Body::empty())
                .expect("request"),
        )
        .await;
    assert_eq!(ping.status, StatusCode::OK, "{}", ping.body);
    // ...but sent beside the owner's session cookie they do not let the
    // owner's session in from a refused address.
    let cookie = browser.cookie.clone().expect("a session");
    let page = portal
        .send(
            http::Request::builder()
                .uri("/network")
                .header("authorization", support::app::basic(&login, &secret))
                .header("cookie", format!("berth_session={cookie}"))
                .body(axum::body::Body::empty())
                .expect("request"),
        )
        .await;
    assert_eq!(page.status, StatusCode::FORBIDDEN, "{}", page.body);
    assert!(!page.has("Add a rule"));
}

#[tokio::test]
async fn a_refused_sign_in_does_not_say_whether_the_login_exists_and_tokens_cannot_sign_in() {
    let portal = TestPortal::open().await;
    let message = |page: &support::app::Page| {
        let start = page.body.find("class=\"message\">").expect("a message");
        page.body[start..start + page.body[start..].find("</p>").expect("end")].to_string()
    };
    let mut browser = portal.browser();
    let unknown = browser.sign_in("nobody", "secret").await;
    let wrong = browser.sign_in("owner", "wrong").await;
    assert_eq!(unknown.status, StatusCode::UNAUTHORIZED);
    assert_eq!(wrong.status, StatusCode::UNAUTHORIZED);
    assert_eq!(message(&unknown), message(&wrong));
    assert!(!unknown.has("nobody'"), "{}", unknown.body);

    let refresh = browser
        .sign_in(berth_auth::REFRESH_TOKEN_USER, "eyJhbGciOi.x.y")
        .await;
    assert_eq!(refresh.status, StatusCode::UNAUTHORIZED);
    assert!(
        refresh.has("cannot sign in to the portal"),
        "{}",
        refresh.body
    );
    assert!(browser.cookie.is_none());
}

#[tokio::test]
async fn a_change_posted_after_the_session_ended_signs_in_to_the_overview() {
    let portal = TestPortal::open().await;
    let mut browser = portal.browser();
    browser.sign_in("owner", OWNER_PASSWORD).await;
    let csrf = browser.get("/network").await.csrf();
    portal.advance(31 * 60);
    let page = browser
        .post(
            "/network/rules/add",
            &[("ip", "10.6.0.0/16"), ("csrf", &csrf)],
        )
        .await;
    assert_eq!(page.status, StatusCode::SEE_OTHER);
    assert_eq!(page.location(), "/login?next=%2F&expired=1");
}

#[tokio::test]
async fn the_overview_counts_every_event_of_a_busy_day() {
    let portal = TestPortal::open().await;
    let now = berth_util::now_ms();
    let pull = |i: i64| berth_metadata::RepositoryEvent {
        time_generated: now - i,
        login_server: HOST.into(),
        operation_name: "Pull".into(),
        repository: "busy/app".into(),
        tag: None,
        digest: None,
        media_type: None,
        artifact_type: None,
        size: None,
        identity: "owner".into(),
        caller_ip_address: "127.0.0.1".into(),
        user_agent: "test".into(),
        result_type: 200,
        result_description: "success".into(),
        duration_ms: 1,
        correlation_id: format!("c{i}"),
    };
    // More than the event listings return at once (10,000).
    let pulls: Vec<_> = (0..12_000).map(pull).collect();
    let failed = |who: &str, i: i64| berth_metadata::LoginEvent {
        time_generated: now - i,
        login_server: HOST.into(),
        identity: who.into(),
        caller_ip_address: "127.0.0.1".into(),
        user_agent: "test".into(),
        operation_name: "Login".into(),
        result_type: 401,
        result_description: format!("unknown identity '{who}': no such login"),
        duration_ms: 1,
        correlation_id: format!("l{i}"),
        jwt_id: None,
    };
    let logins = [failed("a", 1), failed("b", 2), failed("c", 3)];
    portal
        .state
        .event_store
        .insert_events(&logins, &pulls)
        .await
        .expect("events");
    let mut browser = portal.browser();
    browser.sign_in("owner", OWNER_PASSWORD).await;
    let page = browser.get("/").await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    assert!(
        page.has("Pulls, 24 h</h2><p class=\"big\">12000<"),
        "{}",
        page.body
    );
    // The three failures are one reason, whatever the names.
    assert!(
        page.has("<td>unknown identity</td><td class=\"num\">3</td>"),
        "{}",
        page.body
    );
}
