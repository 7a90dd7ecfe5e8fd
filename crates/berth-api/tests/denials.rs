//! Refusals that say what the registry knows, in process: a token is told
//! about its scope map (not about roles), a service principal deleted and
//! re-created is shown the assignment left on its old app id with the
//! command for the new one, and a stale admin password is told when each
//! admin password was regenerated and by whom.

mod support;

use berth_manage::identities::*;
use berth_manage::registry::{PasswordName, RenewAdminPassword, UpdateRegistry};
use berth_manage::roles::CreateRoleAssignment;
use berth_manage::tokens::*;
use support::manage::send;
use support::*;

async fn setup(prefix: &str) -> (tempfile::TempDir, TestApp) {
    let dir = tempdir(prefix);
    let app = TestApp::embedded(dir.path()).await;
    (dir, app)
}

#[tokio::test]
async fn a_token_outside_its_scope_map_is_told_about_the_scope_map() {
    let (_dir, app) = setup("berth-deny-token-").await;
    let owner = app.as_owner();
    push_image(&owner, "app/other", "v1", 1, 1000).await;
    send(
        &owner,
        &CreateScopeMap {
            name: "web".into(),
            description: String::new(),
            rules: vec![ScopeRule {
                repository: "app/web".into(),
                actions: vec![ScopeAction::ContentRead, ScopeAction::ContentWrite],
            }],
        },
    )
    .await;
    let token = send(
        &owner,
        &CreateToken {
            name: "web-deployer".into(),
            scope_map: "web".into(),
            ..Default::default()
        },
    )
    .await;
    let password = &token.secrets[0].value;
    let expected_fix = "berth scope-map update --name web --repository 'app/web=content/read,content/write' --repository 'app/other=content/read'";

    // Basic credentials straight on /v2/.
    let as_token = app.with_authorization(Some(basic_authorization("web-deployer", password)));
    let message = expect_error(
        as_token.get("/v2/app/other/manifests/v1").await,
        403,
        "DENIED",
    );
    assert!(message.contains("scope map 'web'"), "{message}");
    assert!(message.contains("not from roles"), "{message}");
    assert!(
        !message.contains("AcrPull"),
        "a token has no roles: {message}"
    );
    assert!(message.contains(expected_fix), "{message}");

    // The token flow: the access token is issued without the refused
    // scope, and the pull it is used for is told the same.
    let resp = app
        .get(&format!(
            "/oauth2/token?service={HOST}&scope=repository:app/other:pull"
        ))
        .basic("web-deployer", password)
        .await;
    let token = expect_status(resp, 200).json()["token"]
        .as_str()
        .expect("token")
        .to_string();
    let resp = app.get("/v2/app/other/manifests/v1").bearer(&token).await;
    let message = expect_error(resp, 403, "DENIED");
    assert!(message.contains(expected_fix), "{message}");
}

#[tokio::test]
async fn a_recreated_service_principal_is_shown_its_orphaned_assignment() {
    let (_dir, app) = setup("berth-deny-orphan-").await;
    let owner = app.as_owner();
    push_image(&owner, "app/web", "v1", 2, 1000).await;
    let old = send(
        &owner,
        &CreateServicePrincipal {
            name: "nodes".into(),
            ..Default::default()
        },
    )
    .await;
    let assignment = send(
        &owner,
        &CreateRoleAssignment {
            assignee: old.identity.id.clone(),
            role: "AcrPull".into(),
            scope: "app/web".into(),
        },
    )
    .await;
    send(
        &owner,
        &DeleteServicePrincipal {
            id: old.identity.id.clone(),
        },
    )
    .await;
    let new = send(
        &owner,
        &CreateServicePrincipal {
            name: "nodes".into(),
            ..Default::default()
        },
    )
    .await;
    assert_ne!(new.identity.id, old.identity.id);

    let as_new = app.with_authorization(Some(basic_authorization(
        &new.identity.id,
        &new.secrets[0].value,
    )));
    let message = expect_error(as_new.get("/v2/app/web/manifests/v1").await, 403, "DENIED");
    assert!(message.contains("orphaned"), "{message}");
    assert!(message.contains(&old.identity.id), "old app id: {message}");
    assert!(message.contains(&assignment.id), "assignment id: {message}");
    assert!(
        message.contains(&format!(
            "berth role assignment create --assignee {} --role AcrPull --scope 'app/web'",
            new.identity.id
        )),
        "{message}"
    );

    // Another principal with another name learns nothing of it.
    let other = send(
        &owner,
        &CreateServicePrincipal {
            name: "ci".into(),
            ..Default::default()
        },
    )
    .await;
    let as_other = app.with_authorization(Some(basic_authorization(
        &other.identity.id,
        &other.secrets[0].value,
    )));
    let message = expect_error(
        as_other.get("/v2/app/web/manifests/v1").await,
        403,
        "DENIED",
    );
    assert!(!message.contains("orphaned"), "{message}");
    assert!(message.contains("AcrPull"), "{message}");
}

#[tokio::test]
async fn a_stale_admin_password_is_told_when_it_was_regenerated() {
    let (_dir, app) = setup("berth-deny-admin-").await;
    let owner = app.as_owner();
    let settings = send(
        &owner,
        &UpdateRegistry {
            admin_user_enabled: Some(true),
            ..Default::default()
        },
    )
    .await;
    let admin = app.state().auth.settings();
    assert!(admin.admin_user_enabled);
    let old = settings
        .admin_passwords
        .iter()
        .find(|p| p.name == "password")
        .expect("the first admin password")
        .value
        .clone();
    let login = "berth"; // the registry name, the admin user's login
    let as_old = app.with_authorization(Some(basic_authorization(login, &old)));
    expect_status(as_old.get("/v2/").await, 200);

    send(
        &owner,
        &RenewAdminPassword {
            password_name: PasswordName::Password,
        },
    )
    .await;
    let message = expect_error(as_old.get("/v2/").await, 401, "UNAUTHORIZED");
    assert!(
        message.contains("'password' was regenerated at 20"),
        "the regeneration time: {message}"
    );
    assert!(
        message.contains("by owner"),
        "who regenerated it: {message}"
    );
    assert!(
        message.contains("'password2' was set at"),
        "the other password's date: {message}"
    );

    // Other identities' wrong passwords say nothing of the kind.
    let message = expect_error(
        app.get("/v2/").basic("owner", "not-the-password").await,
        401,
        "UNAUTHORIZED",
    );
    assert!(!message.contains("regenerated"), "{message}");
}
