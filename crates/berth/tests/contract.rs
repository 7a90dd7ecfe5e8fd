//! The management contract end to end: the typed client (what the CLI
//! sends) against the real server, endpoint group by endpoint group — the
//! answers decode as their contract types, refusals carry the contract's
//! codes, identities are found by id or name, times are RFC 3339.

mod common;

use berth_manage::client::{ClientError, ManageClient};
use berth_manage::identities::*;
use berth_manage::logs::*;
use berth_manage::network::*;
use berth_manage::registry::*;
use berth_manage::repositories::*;
use berth_manage::roles::*;
use berth_manage::tokens::*;
use berth_manage::{explain, gc, Endpoint};
use common::*;

fn owner(server: &TestServer) -> ManageClient {
    ManageClient::new(
        &server.url(),
        reqwest::Client::new(),
        Some(("owner".into(), server.owner_password().into())),
    )
}

/// The refusal `request` must get: its status and contract code.
async fn refused<E: Endpoint>(
    client: &ManageClient,
    request: &E,
    status: u16,
    code: &str,
) -> String {
    match client.send(request).await {
        Err(ClientError::Refused {
            status: s,
            code: c,
            message,
        }) => {
            assert_eq!((s, c.as_str()), (status, code), "{message}");
            message
        }
        Err(other) => panic!("{} {}: {other}", E::VERB.as_str(), E::PATH),
        Ok(_) => panic!("{} {} was accepted", E::VERB.as_str(), E::PATH),
    }
}

/// An RFC 3339 UTC time as the contract sends it.
fn assert_rfc3339(what: &str, time: &str) {
    assert!(
        berth_util::parse_rfc3339_ms(time).is_some() && time.ends_with('Z'),
        "{what}: '{time}' is not an RFC 3339 UTC time"
    );
}

#[tokio::test]
async fn identities_are_found_by_id_or_name_and_refusals_carry_contract_codes() {
    let dir = tempdir("contract-identities");
    let server = TestServer::start(dir.path());
    let api = owner(&server);

    let created = api
        .send(&CreateServicePrincipal {
            name: "ci-bot".into(),
            role: Some("AcrPull".into()),
            ..Default::default()
        })
        .await
        .expect("create sp");
    assert_eq!(created.identity.kind, IdentityKind::ServicePrincipal);
    assert_eq!(created.identity.name, "ci-bot");
    assert_rfc3339("createdAt", &created.identity.created_at);
    let expires = created.secrets[0].expires_at.as_deref().expect("expiry");
    assert_rfc3339("expiresAt", expires);

    // Names are unique among service principals, so a name is an address.
    let message = refused(
        &api,
        &CreateServicePrincipal {
            name: "ci-bot".into(),
            ..Default::default()
        },
        409,
        "CONFLICT",
    )
    .await;
    assert!(message.contains("ci-bot"), "{message}");
    let by_name = api
        .send(&ListServicePrincipalCredentials {
            id: "ci-bot".into(),
        })
        .await
        .expect("credentials by name");
    let by_id = api
        .send(&ListServicePrincipalCredentials {
            id: created.identity.id.clone(),
        })
        .await
        .expect("credentials by id");
    assert_eq!(by_name, by_id);
    assert_eq!(by_name.len(), 1);
    let assigned = api
        .send(&ListRoleAssignments {
            assignee: Some("ci-bot".into()),
        })
        .await
        .expect("assignments");
    assert_eq!(assigned.len(), 1);
    assert_eq!(
        (assigned[0].role.as_str(), assigned[0].principal.as_deref()),
        ("AcrPull", Some("ci-bot"))
    );

    // Unknown identities, bad fields, wrong kinds: each its own code.
    refused(
        &api,
        &DeleteServicePrincipal {
            id: "nobody".into(),
        },
        404,
        "IDENTITY_NOT_FOUND",
    )
    .await;
    refused(
        &api,
        &DeleteServicePrincipal { id: "owner".into() },
        404,
        "IDENTITY_NOT_FOUND",
    )
    .await;
    refused(
        &api,
        &CreateServicePrincipal {
            name: "late".into(),
            end_date: Some("yesterday".into()),
            ..Default::default()
        },
        400,
        "VALIDATION",
    )
    .await;
    refused(
        &api,
        &DeleteScopeMap {
            name: "missing".into(),
        },
        404,
        "NOT_FOUND",
    )
    .await;

    api.send(&DeleteServicePrincipal {
        id: "ci-bot".into(),
    })
    .await
    .expect("delete by name");
    let left = api
        .send(&ListIdentities {
            kind: Some(IdentityKind::ServicePrincipal),
        })
        .await
        .expect("list");
    assert!(left.is_empty(), "{left:?}");
    // Its assignment stays, orphaned, under the old id.
    let orphaned = api
        .send(&ListRoleAssignments {
            assignee: Some(created.identity.id.clone()),
        })
        .await
        .expect("orphans");
    assert!(orphaned.len() == 1 && orphaned[0].orphaned, "{orphaned:?}");
}

#[tokio::test]
async fn scope_maps_tokens_roles_and_the_permission_each_endpoint_needs() {
    let dir = tempdir("contract-tokens");
    let server = TestServer::start(dir.path());
    let api = owner(&server);

    let rules = vec![ScopeRule {
        repository: "app/*".into(),
        actions: vec![ScopeAction::ContentRead, ScopeAction::MetadataRead],
    }];
    api.send(&CreateScopeMap {
        name: "readers".into(),
        description: "pull app/*".into(),
        rules: rules.clone(),
    })
    .await
    .expect("scope map");
    let token = api
        .send(&CreateToken {
            name: "puller".into(),
            scope_map: "readers".into(),
            ..Default::default()
        })
        .await
        .expect("token");
    assert_eq!(token.identity.scope_map.as_deref(), Some("readers"));
    assert_eq!(token.secrets.len(), 2);

    // A scope map in use cannot go; the token keeps working.
    let message = refused(
        &api,
        &DeleteScopeMap {
            name: "readers".into(),
        },
        409,
        "CONFLICT",
    )
    .await;
    assert!(message.contains("puller"), "{message}");
    assert_eq!(
        api.send(&ListScopeMaps {}).await.expect("maps")[0].rules,
        rules
    );
    api.send(&DeleteToken {
        name: "puller".into(),
    })
    .await
    .expect("delete token");
    api.send(&DeleteScopeMap {
        name: "readers".into(),
    })
    .await
    .expect("delete unused map");

    // A custom role with an unknown action is refused; a good one is listed.
    refused(
        &api,
        &CreateRoleDefinition {
            name: "weird".into(),
            actions: vec!["registries/everything".into()],
            ..Default::default()
        },
        400,
        "VALIDATION",
    )
    .await;
    api.send(&CreateRoleDefinition {
        name: "Lister".into(),
        actions: vec!["registries/catalog/read".into()],
        ..Default::default()
    })
    .await
    .expect("custom role");
    let roles = api.send(&ListRoleDefinitions {}).await.expect("roles");
    assert!(roles.iter().any(|r| r.name == "Lister" && !r.builtin));
    assert!(roles.iter().any(|r| r.name == "AcrPull" && r.builtin));

    // A Reader may look but not change, and is told what it lacks.
    let reader = api
        .send(&CreateServicePrincipal {
            name: "auditor".into(),
            role: Some("Reader".into()),
            ..Default::default()
        })
        .await
        .expect("reader");
    let as_reader = ManageClient::new(
        &server.url(),
        reqwest::Client::new(),
        Some((reader.identity.id.clone(), reader.secrets[0].value.clone())),
    );
    as_reader
        .send(&GetRegistry {})
        .await
        .expect("a Reader reads settings");
    let message = refused(
        &as_reader,
        &UpdateRegistry {
            anonymous_pull_enabled: Some(true),
            ..Default::default()
        },
        403,
        "DENIED",
    )
    .await;
    assert!(message.contains("registries/manage/write"), "{message}");
    refused(
        &as_reader,
        &CreateRoleAssignment {
            assignee: "auditor".into(),
            role: "Owner".into(),
            scope: String::new(),
        },
        403,
        "DENIED",
    )
    .await;
    assert!(
        !api.send(&GetRegistry {})
            .await
            .expect("settings")
            .anonymous_pull_enabled
    );

    // No credentials at all: 401 with the distribution API's code.
    let anonymous = ManageClient::new(&server.url(), reqwest::Client::new(), None);
    refused(&anonymous, &GetRegistry {}, 401, "UNAUTHORIZED").await;
}

#[tokio::test]
async fn network_logs_gc_and_explain_answer_in_contract_types() {
    let dir = tempdir("contract-network");
    let server = TestServer::start(dir.path());
    let api = owner(&server);

    let before = api.send(&GetNetwork {}).await.expect("network");
    assert_eq!(before.public_network_access, PublicNetworkAccess::Enabled);
    let added = api
        .send(&AddNetworkRule {
            ip_address: Some("10.1.0.0/16".into()),
            subnet: None,
        })
        .await
        .expect("add rule");
    assert_eq!(added.network_rule_set.ip_rules, vec!["10.1.0.0/16"]);
    refused(
        &api,
        &AddNetworkRule {
            ip_address: Some("10.1.0.0/16".into()),
            subnet: None,
        },
        409,
        "CONFLICT",
    )
    .await;
    refused(
        &api,
        &RemoveNetworkRule {
            ip_address: Some("192.0.2.0/24".into()),
            ..Default::default()
        },
        404,
        "NOT_FOUND",
    )
    .await;
    // Denying by default would lock this caller (127.0.0.1) out.
    refused(
        &api,
        &UpdateNetwork {
            default_action: Some(DefaultAction::Deny),
            ..Default::default()
        },
        409,
        "CONFLICT",
    )
    .await;
    assert_eq!(
        api.send(&ListNetworkRules {}).await.expect("rules"),
        added,
        "refusals change nothing"
    );

    // The management changes and the logins are in the logs, in RFC 3339.
    let since = berth_util::rfc3339(0);
    let activity = api
        .send(&ListActivity {
            since: Some(since.clone()),
            limit: None,
        })
        .await
        .expect("activity");
    let add = activity
        .iter()
        .find(|a| a.operation == "add network rule")
        .expect("the rule change is logged");
    assert_rfc3339("activity time", &add.time);
    refused(
        &api,
        &ListActivity {
            since: Some("yesterday".into()),
            limit: None,
        },
        400,
        "VALIDATION",
    )
    .await;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    let logins = loop {
        let logins = api
            .send(&ListLoginEvents {
                since: Some(since.clone()),
                ..Default::default()
            })
            .await
            .expect("login events");
        if !logins.is_empty() || std::time::Instant::now() > deadline {
            break logins;
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    };
    let login = logins.first().expect("a login event within 15 s");
    assert_rfc3339("timeGenerated", &login.time_generated);
    assert!(
        login.time_generated.contains('.'),
        "milliseconds: {login:?}"
    );

    let status = api.send(&gc::GetGcStatus {}).await.expect("gc status");
    assert!(status.runs.iter().all(|r| r.started_at.ends_with('Z')));
    api.send(&gc::RunGc {}).await.expect("gc run");
    assert!(!api
        .send(&gc::GetGcStatus {})
        .await
        .expect("gc")
        .runs
        .is_empty());

    let trace = api
        .send(&explain::Explain {
            ip: "10.1.2.3".into(),
            identity: Some("owner".into()),
            action: explain::ExplainAction::Push,
            repository: Some("app/web".into()),
            ..Default::default()
        })
        .await
        .expect("explain");
    assert!(trace.allowed, "{trace:?}");
    assert_eq!(trace.network.ip, "10.1.2.3");
    refused(
        &api,
        &explain::Explain {
            ip: "not-an-ip".into(),
            ..Default::default()
        },
        400,
        "VALIDATION",
    )
    .await;

    assert!(api
        .send(&ListRepositories {})
        .await
        .expect("repositories")
        .is_empty());
    refused(
        &api,
        &ListTags {
            repository: "Bad Name".into(),
        },
        400,
        "VALIDATION",
    )
    .await;
    let endpoints = api.send(&GetEndpoints {}).await.expect("endpoints");
    assert_eq!(
        endpoints.login_server.as_deref(),
        Some(server.addr().to_string().as_str())
    );
}
