//! The management API in process: every endpoint of the contract refuses
//! callers without its permission, and the contract's requests get the
//! contract's answers and codes.

mod support;

use berth_manage::identities::*;
use berth_manage::tokens::*;
use berth_manage::Access;
use support::*;

/// Every endpoint's route with its parameter filled in.
fn routes() -> Vec<(&'static str, String, String)> {
    berth_manage::all()
        .into_iter()
        .map(|e| {
            let path = match e.path.find('{') {
                Some(start) => {
                    let end = e.path[start..]
                        .find('}')
                        .map_or(e.path.len(), |i| start + i + 1);
                    format!("{}x{}", &e.path[..start], &e.path[end..])
                }
                None => e.path.to_string(),
            };
            (e.verb, path, e.access)
        })
        .collect()
}

#[tokio::test]
async fn every_endpoint_needs_credentials_and_its_permission() {
    let dir = tempdir("manage-permissions");
    let app = TestApp::embedded(dir.path()).await;
    let owner = app.as_owner();
    let reader = manage::send(
        &owner,
        &CreateServicePrincipal {
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
    let anonymous = app.anonymous();
    let mut checked = 0;
    for (verb, path, access) in routes() {
        let resp = anonymous.request(verb, &path).send().await;
        resp.expect_error(&format!("anonymous {verb} {path}"), 401, "UNAUTHORIZED");
        if access != format!("{:?}", Access::ManageRead) {
            // Refused before the request is even parsed: the body is empty.
            let resp = as_reader.request(verb, &path).send().await;
            let message = resp.expect_error(&format!("Reader {verb} {path}"), 403, "DENIED");
            assert!(message.contains("auditor"), "{message}");
            checked += 1;
        }
    }
    assert!(
        checked >= 20,
        "only {checked} endpoints need more than ManageRead"
    );
}

#[tokio::test]
async fn contract_requests_get_contract_answers_and_codes() {
    let dir = tempdir("manage-contract");
    let app = TestApp::embedded(dir.path()).await;
    let owner = app.as_owner();

    let rules = vec![ScopeRule {
        repository: "app/*".into(),
        actions: vec![ScopeAction::ContentRead],
    }];
    let map = manage::send(
        &owner,
        &CreateScopeMap {
            name: "readers".into(),
            description: String::new(),
            rules: rules.clone(),
        },
    )
    .await;
    assert_eq!(map.rules, rules);
    manage::refused(
        &owner,
        &CreateScopeMap {
            name: "readers".into(),
            description: String::new(),
            rules,
        },
        409,
        "CONFLICT",
    )
    .await;
    let token = manage::send(
        &owner,
        &CreateToken {
            name: "puller".into(),
            scope_map: "readers".into(),
            ..Default::default()
        },
    )
    .await;
    assert_eq!(token.identity.kind, IdentityKind::Token);
    manage::refused(
        &owner,
        &DeleteScopeMap {
            name: "readers".into(),
        },
        409,
        "CONFLICT",
    )
    .await;

    // An unknown action is refused when the request is parsed.
    let resp = owner
        .post("/api/v1/scope-maps")
        .json(&serde_json::json!({
            "name": "bad",
            "rules": [{"repository": "app/*", "actions": ["content/everything"]}],
        }))
        .send()
        .await;
    let message = resp.expect_error("unknown action", 400, "VALIDATION");
    assert!(
        message.contains("content/read"),
        "names the valid ones: {message}"
    );
    // So is a field the contract does not have.
    let resp = owner
        .patch("/api/v1/registry")
        .json(&serde_json::json!({"anonymousPull": true}))
        .send()
        .await;
    let message = resp.expect_error("unknown field", 400, "VALIDATION");
    assert!(message.contains("anonymousPullEnabled"), "{message}");

    // Identities by name; kinds kept apart.
    let sp = manage::send(
        &owner,
        &CreateServicePrincipal {
            name: "ci-bot".into(),
            ..Default::default()
        },
    )
    .await;
    let creds = manage::send(
        &owner,
        &ListServicePrincipalCredentials {
            id: "ci-bot".into(),
        },
    )
    .await;
    assert_eq!(creds.len(), 1);
    manage::refused(
        &owner,
        &DeleteServicePrincipal {
            id: "puller".into(),
        },
        404,
        "IDENTITY_NOT_FOUND",
    )
    .await;
    manage::send(&owner, &DeleteServicePrincipal { id: sp.identity.id }).await;
    let sps = manage::send(&owner, &ListServicePrincipals {}).await;
    assert!(sps.is_empty(), "{sps:?}");
}

#[tokio::test]
async fn tags_and_manifests_are_removed_one_at_a_time() {
    use berth_manage::repositories::*;
    let dir = tempdir("manage-untag");
    let app = TestApp::embedded(dir.path()).await;
    let owner = app.as_owner();
    let image = push_image(&owner, "app/web", "v1", 7, 1000).await;
    owner
        .push_manifest("app/web", "stable", OCI_MANIFEST, &image.manifest)
        .await;
    let tags = |list: Vec<TagInfo>| list.into_iter().map(|t| t.name).collect::<Vec<_>>();
    let listed = manage::send(
        &owner,
        &ListTags {
            repository: "app/web".into(),
        },
    )
    .await;
    assert_eq!(tags(listed), ["stable", "v1"]);

    // Untag: one tag goes, the manifest stays under the other and by digest.
    manage::send(
        &owner,
        &UntagManifest {
            repository: "app/web".into(),
            tag: "v1".into(),
        },
    )
    .await;
    let listed = manage::send(
        &owner,
        &ListTags {
            repository: "app/web".into(),
        },
    )
    .await;
    assert_eq!(tags(listed), ["stable"]);
    let (_, body) = owner.pull_manifest("app/web", &image.digest).await;
    assert_eq!(body, image.manifest);
    manage::refused(
        &owner,
        &UntagManifest {
            repository: "app/web".into(),
            tag: "v1".into(),
        },
        404,
        "NOT_FOUND",
    )
    .await;
    manage::refused(
        &owner,
        &UntagManifest {
            repository: "app/web".into(),
            tag: "not a tag".into(),
        },
        400,
        "VALIDATION",
    )
    .await;

    // Delete by digest: the manifest and its remaining tags go.
    manage::refused(
        &owner,
        &DeleteManifest {
            repository: "app/web".into(),
            digest: "sha256:nope".into(),
        },
        400,
        "VALIDATION",
    )
    .await;
    manage::send(
        &owner,
        &DeleteManifest {
            repository: "app/web".into(),
            digest: image.digest.clone(),
        },
    )
    .await;
    let listed = manage::send(
        &owner,
        &ListTags {
            repository: "app/web".into(),
        },
    )
    .await;
    assert!(listed.is_empty(), "{listed:?}");
    let resp = owner
        .get(&format!("/v2/app/web/manifests/{}", image.digest))
        .send()
        .await;
    expect_error(resp, 404, "MANIFEST_UNKNOWN");
}
