//! The artifact cache's configuration in process: cache rules (targets that
//! may not overlap, upstreams checked, credential sets that must exist) and
//! credential sets (passwords sealed at rest, never returned, absent from
//! the activity log), through the management contract.

mod support;

use berth_manage::cache::*;
use support::manage::{refused, send};
use support::*;

const PASSWORD: &str = "upstream-Secret-4f1c9e";

fn upstream(source: &str, set: Option<&str>) -> Upstream {
    Upstream {
        source: source.into(),
        credential_set: set.map(str::to_string),
    }
}

#[tokio::test]
async fn rules_and_credential_sets_are_managed_and_checked() {
    let dir = tempdir("berth-cache-rules-");
    let app = TestApp::embedded(dir.path()).await;
    let owner = app.as_owner();

    let set = send(
        &owner,
        &CreateCredentialSet {
            name: "hub".into(),
            username: "puller".into(),
            password: PASSWORD.into(),
        },
    )
    .await;
    assert_eq!(
        (set.name.as_str(), set.username.as_str()),
        ("hub", "puller")
    );

    let rule = send(
        &owner,
        &CreateCacheRule {
            name: "dockerhub".into(),
            target: "hub/*".into(),
            upstreams: vec![
                upstream("docker.io/library/*", Some("hub")),
                upstream("http://127.0.0.1:5001/mirror/*", None),
            ],
            tag_ttl_seconds: None,
            evict_unused_days: Some(30),
        },
    )
    .await;
    assert_eq!(rule.tag_ttl_seconds, 300, "the default TTL");
    assert_eq!(rule.upstreams.len(), 2);
    assert_eq!(
        send(
            &owner,
            &GetCacheRule {
                name: "dockerhub".into()
            }
        )
        .await,
        rule
    );
    let sets = send(&owner, &ListCredentialSets {}).await;
    assert_eq!(sets[0].used_by, ["dockerhub"]);

    // Refusals, each naming what is wrong; nothing changes.
    let overlapping = CreateCacheRule {
        name: "nginx".into(),
        target: "hub/nginx".into(),
        upstreams: vec![upstream("quay.io/nginx/nginx", None)],
        ..Default::default()
    };
    let message = refused(&owner, &overlapping, 409, "CONFLICT").await;
    assert!(
        message.contains("overlaps cache rule 'dockerhub'"),
        "{message}"
    );
    for (request, words) in [
        (
            CreateCacheRule {
                name: "bad".into(),
                target: "quay/*".into(),
                upstreams: vec![upstream("quay.io/prometheus", None)],
                ..Default::default()
            },
            "ends in /* exactly when the target does",
        ),
        (
            CreateCacheRule {
                name: "bad".into(),
                target: "quay/*".into(),
                upstreams: vec![upstream("quay.io/prometheus/*", Some("nosuch"))],
                ..Default::default()
            },
            "no credential set 'nosuch'",
        ),
        (
            CreateCacheRule {
                name: "bad".into(),
                target: "Quay/*".into(),
                upstreams: vec![upstream("quay.io/prometheus/*", None)],
                ..Default::default()
            },
            "target",
        ),
        (
            CreateCacheRule {
                name: "bad".into(),
                target: "quay/*".into(),
                upstreams: vec![],
                ..Default::default()
            },
            "upstreams",
        ),
    ] {
        let message = refused(&owner, &request, 400, "VALIDATION").await;
        assert!(message.contains(words), "{message}");
    }
    assert_eq!(send(&owner, &ListCacheRules {}).await.len(), 1);

    // A credential set in use cannot go; its password can change.
    let message = refused(
        &owner,
        &DeleteCredentialSet { name: "hub".into() },
        409,
        "CONFLICT",
    )
    .await;
    assert!(message.contains("'dockerhub'"), "{message}");
    send(
        &owner,
        &UpdateCredentialSet {
            name: "hub".into(),
            username: None,
            password: Some("rotated-Secret-77".into()),
        },
    )
    .await;
    let (user, password) = app
        .state()
        .auth
        .credential_set_login("hub")
        .await
        .expect("unseal");
    assert_eq!(
        (user.as_str(), password.as_str()),
        ("puller", "rotated-Secret-77")
    );

    // Updates keep the target; deletion frees the credential set.
    let updated = send(
        &owner,
        &UpdateCacheRule {
            name: "dockerhub".into(),
            upstreams: Some(vec![upstream("docker.io/library/*", None)]),
            tag_ttl_seconds: Some(60),
            evict_unused_days: Some(0),
        },
    )
    .await;
    assert_eq!(
        (
            updated.target.as_str(),
            updated.tag_ttl_seconds,
            updated.evict_unused_days
        ),
        ("hub/*", 60, None)
    );
    send(&owner, &DeleteCredentialSet { name: "hub".into() }).await;
    send(
        &owner,
        &DeleteCacheRule {
            name: "dockerhub".into(),
        },
    )
    .await;
    refused(
        &owner,
        &GetCacheRule {
            name: "dockerhub".into(),
        },
        404,
        "NOT_FOUND",
    )
    .await;

    // No password, in clear, anywhere: not in answers, not in the activity
    // log, not in the database file.
    let activity = send(&owner, &berth_manage::logs::ListActivity::default()).await;
    let text = serde_json::to_string(&activity).expect("json");
    assert!(text.contains("create credential set") && text.contains("update cache rule"));
    assert!(
        !text.contains(PASSWORD) && !text.contains("rotated-Secret-77"),
        "{text}"
    );
    let mut db = std::fs::read(dir.path().join("berth.db")).expect("database");
    for wal in ["berth.db-wal"] {
        if let Ok(more) = std::fs::read(dir.path().join(wal)) {
            db.extend(more);
        }
    }
    for secret in [PASSWORD, "rotated-Secret-77"] {
        assert!(
            !db.windows(secret.len()).any(|w| w == secret.as_bytes()),
            "{secret} is stored in clear"
        );
    }
}

#[tokio::test]
async fn readers_may_look_but_not_change() {
    let dir = tempdir("berth-cache-readers-");
    let app = TestApp::embedded(dir.path()).await;
    let owner = app.as_owner();
    let reader = send(
        &owner,
        &berth_manage::identities::CreateServicePrincipal {
            name: "auditor".into(),
            role: Some("Reader".into()),
            ..Default::default()
        },
    )
    .await;
    let as_reader = app.with_authorization(Some(basic_authorization(
        &reader.identity.id,
        &reader.secrets[0].value,
    )));
    assert!(send(&as_reader, &ListCacheRules {}).await.is_empty());
    refused(
        &as_reader,
        &CreateCredentialSet {
            name: "x".into(),
            username: "u".into(),
            password: "p".into(),
        },
        403,
        "DENIED",
    )
    .await;
}
