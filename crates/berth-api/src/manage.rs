//! The management API (`/api/v1/...`): JSON over HTTP on the same listener,
//! authorized by the same identities and roles — `registries/manage/read`
//! to look, `registries/manage/write` to change, `roleAssignments/write` to
//! assign roles. The `berth` CLI is a client of this API.

use axum::extract::{FromRequestParts, Path, Query, State};
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use berth_auth::manage::{ScopeRule, SecretValidity};
use berth_auth::{IdentityKind, Permission, Principal};
use berth_registry::RegistryError;
use berth_types::{ErrorCode, Reference, RepositoryName};
use http::StatusCode;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::error::ApiError;
use crate::AppState;

/// An authenticated management caller.
pub struct Manager {
    pub principal: Principal,
    /// Where the request came from, as the network rules see it.
    pub ip: std::net::IpAddr,
    pub endpoint: berth_network::Endpoint,
}

impl Manager {
    /// For network changes: refuse one that would lock this caller out,
    /// unless `force`.
    fn changer(&self, force: Option<bool>) -> crate::network::Changer {
        crate::network::Changer {
            ip: self.ip,
            endpoint: self.endpoint.clone(),
            trusted_service: self.principal.trusted_service,
            force: force.unwrap_or(false),
        }
    }

    fn require(&self, permission: Permission) -> Result<(), ApiError> {
        if self.principal.allows(permission, None) {
            Ok(())
        } else {
            Err(ApiError::new(
                ErrorCode::Denied,
                format!(
                    "{} is not allowed to {} this registry: it needs '{}' at registry scope (for example the {} role)",
                    self.principal.describe(),
                    permission.verb(),
                    permission.as_str(),
                    match permission {
                        Permission::ManageRead => "Reader",
                        Permission::RoleAssignmentsWrite => "Owner",
                        _ => "Contributor",
                    }
                ),
            ))
        }
    }
}

impl FromRequestParts<AppState> for Manager {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let caller = crate::auth::identify(state, &parts.headers, &parts.extensions).await?;
        if caller.principal.is_anonymous() {
            return Err(ApiError::new(
                ErrorCode::Unauthorized,
                "the management API needs credentials (Basic: owner, admin user or service principal)",
            )
            .with_header("www-authenticate", "Basic realm=\"berth\""));
        }
        Ok(Manager {
            principal: caller.principal,
            ip: crate::auth::address_of(&parts.extensions),
            endpoint: parts
                .extensions
                .get::<berth_network::Endpoint>()
                .cloned()
                .unwrap_or(berth_network::Endpoint::Public),
        })
    }
}

type ApiResult = Result<Response, ApiError>;

fn ok(value: impl serde::Serialize) -> ApiResult {
    Ok(Json(value).into_response())
}

fn created(value: impl serde::Serialize) -> ApiResult {
    Ok((StatusCode::CREATED, Json(value)).into_response())
}

fn auth_err(e: berth_auth::AuthError) -> ApiError {
    ApiError::from_auth(e)
}

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/v1/registry", get(get_registry).patch(update_registry))
        .route("/api/v1/owner/credentials/renew", post(renew_owner))
        .route("/api/v1/signing-keys/rotate", post(rotate_signing_key))
        .route("/api/v1/admin/credentials", get(admin_credentials))
        .route("/api/v1/admin/credentials/renew", post(renew_admin))
        .route("/api/v1/service-principals", get(list_sps).post(create_sp))
        .route("/api/v1/service-principals/{id}", delete(delete_sp))
        .route(
            "/api/v1/service-principals/{id}/credentials",
            get(sp_credentials),
        )
        .route(
            "/api/v1/service-principals/{id}/credentials/reset",
            post(reset_sp),
        )
        .route("/api/v1/identities", get(list_identities))
        .route(
            "/api/v1/identities/{id}",
            axum::routing::patch(update_identity),
        )
        .route(
            "/api/v1/scope-maps",
            get(list_scope_maps).post(create_scope_map),
        )
        .route(
            "/api/v1/scope-maps/{name}",
            axum::routing::patch(update_scope_map).delete(delete_scope_map),
        )
        .route("/api/v1/tokens", get(list_tokens).post(create_token))
        .route(
            "/api/v1/tokens/{name}",
            axum::routing::patch(update_token).delete(delete_token),
        )
        .route("/api/v1/tokens/{name}/credentials", post(token_credential))
        .route(
            "/api/v1/role-definitions",
            get(list_roles).post(create_role),
        )
        .route(
            "/api/v1/role-assignments",
            get(list_assignments).post(create_assignment),
        )
        .route("/api/v1/role-assignments/{id}", delete(delete_assignment))
        .route(
            "/api/v1/repositories",
            get(list_repositories).delete(delete_repository),
        )
        .route("/api/v1/repositories/tags", get(repository_tags))
        .route("/api/v1/repositories/manifests", get(repository_manifests))
        .route("/api/v1/activity", get(activity))
        .route("/api/v1/gc", get(gc_status))
        .route("/api/v1/gc/run", post(gc_run))
        .route("/api/v1/network", get(get_network).patch(update_network))
        .route(
            "/api/v1/network/rules",
            get(get_network).post(add_rule).delete(remove_rule),
        )
        .route("/api/v1/endpoints", get(endpoints))
        .route("/api/v1/explain", post(explain))
        .route("/api/v1/logs/login", get(login_logs))
        .route("/api/v1/logs/repository", get(repository_logs))
}

#[derive(Deserialize)]
struct LogQuery {
    /// Unix milliseconds.
    since: Option<i64>,
    #[serde(default)]
    failed: bool,
    identity: Option<String>,
    repository: Option<String>,
    limit: Option<u32>,
}

impl LogQuery {
    fn filter(&self) -> berth_metadata::EventFilter {
        berth_metadata::EventFilter {
            since: self.since.unwrap_or(0),
            failed_only: self.failed,
            identity: self.identity.clone(),
            repository: self.repository.clone(),
            limit: self.limit.unwrap_or(1000).min(10_000),
        }
    }
}

fn store_err(e: berth_metadata::MetadataError) -> ApiError {
    ApiError::store(e)
}

async fn login_logs(State(s): State<AppState>, m: Manager, Query(q): Query<LogQuery>) -> ApiResult {
    m.require(Permission::ManageRead)?;
    ok(s.event_store
        .login_events(&q.filter())
        .await
        .map_err(store_err)?)
}

async fn repository_logs(
    State(s): State<AppState>,
    m: Manager,
    Query(q): Query<LogQuery>,
) -> ApiResult {
    m.require(Permission::ManageRead)?;
    ok(s.event_store
        .repository_events(&q.filter())
        .await
        .map_err(store_err)?)
}

fn network_view(s: &AppState) -> Value {
    let settings = s.network.settings();
    json!({
        "publicNetworkAccess": if settings.public_network_access { "Enabled" } else { "Disabled" },
        "networkRuleSet": {
            "defaultAction": settings.default_action,
            "ipRules": settings.ip_rules.iter().map(|r| r.to_string()).collect::<Vec<_>>(),
            "subnetRules": settings.subnet_rules,
        },
        "networkRuleBypassOptions": settings.network_rule_bypass_options,
        "dataEndpointEnabled": settings.data_endpoint_enabled,
        "declaredSubnets": s.network.subnets,
    })
}

async fn get_network(State(s): State<AppState>, m: Manager) -> ApiResult {
    m.require(Permission::ManageRead)?;
    s.network.reload(&s.auth).await?;
    ok(network_view(&s))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct NetworkUpdate {
    /// "Enabled" | "Disabled"
    public_network_access: Option<String>,
    default_action: Option<berth_network::DefaultAction>,
    network_rule_bypass_options: Option<berth_network::Bypass>,
    data_endpoint_enabled: Option<bool>,
    /// Apply even if it locks the caller's own address out.
    force: Option<bool>,
}

async fn update_network(
    State(s): State<AppState>,
    m: Manager,
    Json(u): Json<NetworkUpdate>,
) -> ApiResult {
    m.require(Permission::ManageWrite)?;
    let public = match u.public_network_access.as_deref() {
        None => None,
        Some("Enabled") => Some(true),
        Some("Disabled") => Some(false),
        Some(other) => {
            return Err(ApiError::new(
                ErrorCode::Unsupported,
                format!("publicNetworkAccess '{other}' must be Enabled or Disabled"),
            )
            .with_status(StatusCode::BAD_REQUEST))
        }
    };
    s.network
        .update(
            &s.auth,
            &m.principal.describe(),
            Some(&m.changer(u.force)),
            "update network rule set",
            |n, _| {
                if let Some(p) = public {
                    n.public_network_access = p;
                }
                if let Some(a) = u.default_action {
                    n.default_action = a;
                }
                if let Some(b) = u.network_rule_bypass_options {
                    n.network_rule_bypass_options = b;
                }
                if let Some(d) = u.data_endpoint_enabled {
                    n.data_endpoint_enabled = d;
                }
                Ok(())
            },
        )
        .await?;
    ok(network_view(&s))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RuleTarget {
    ip_address: Option<String>,
    subnet: Option<String>,
    /// Removal only: apply even if it locks the caller's own address out.
    force: Option<bool>,
}

fn one_target(t: &RuleTarget) -> Result<(), ApiError> {
    if t.ip_address.is_some() == t.subnet.is_some() {
        return Err(ApiError::new(
            ErrorCode::Unsupported,
            "give exactly one of ipAddress (an address or CIDR) or subnet (a declared subnet's name)",
        )
        .with_status(StatusCode::BAD_REQUEST));
    }
    Ok(())
}

async fn add_rule(State(s): State<AppState>, m: Manager, Json(t): Json<RuleTarget>) -> ApiResult {
    m.require(Permission::ManageWrite)?;
    one_target(&t)?;
    s.network
        .update(
            &s.auth,
            &m.principal.describe(),
            None, // adding a rule only ever lets more in
            "add network rule",
            |n, subnets| match (&t.ip_address, &t.subnet) {
                (Some(ip), _) => n.add_ip_rule(ip).map(|_| ()),
                (_, Some(subnet)) => n.add_subnet_rule(subnet, subnets),
                _ => Ok(()),
            },
        )
        .await?;
    ok(network_view(&s))
}

async fn remove_rule(
    State(s): State<AppState>,
    m: Manager,
    Query(t): Query<RuleTarget>,
) -> ApiResult {
    m.require(Permission::ManageWrite)?;
    one_target(&t)?;
    s.network
        .update(
            &s.auth,
            &m.principal.describe(),
            Some(&m.changer(t.force)),
            "remove network rule",
            |n, _| match (&t.ip_address, &t.subnet) {
                (Some(ip), _) => n.remove_ip_rule(ip).map(|_| ()),
                (_, Some(subnet)) => n.remove_subnet_rule(subnet),
                _ => Ok(()),
            },
        )
        .await?;
    ok(network_view(&s))
}

async fn endpoints(State(s): State<AppState>, m: Manager) -> ApiResult {
    m.require(Permission::ManageRead)?;
    ok((*s.endpoints).clone())
}

async fn get_registry(State(s): State<AppState>, m: Manager) -> ApiResult {
    m.require(Permission::ManageRead)?;
    ok(s.auth.settings())
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RegistryUpdate {
    anonymous_pull_enabled: Option<bool>,
    admin_user_enabled: Option<bool>,
}

async fn update_registry(
    State(s): State<AppState>,
    m: Manager,
    Json(u): Json<RegistryUpdate>,
) -> ApiResult {
    m.require(Permission::ManageWrite)?;
    if let Some(v) = u.anonymous_pull_enabled {
        s.auth
            .set_anonymous_pull(&m.principal, v)
            .await
            .map_err(auth_err)?;
    }
    let mut secrets = Vec::new();
    if let Some(v) = u.admin_user_enabled {
        secrets = s
            .auth
            .set_admin_enabled(&m.principal, v)
            .await
            .map_err(auth_err)?;
    }
    let mut body = s.auth.settings();
    if !secrets.is_empty() {
        body["adminPasswords"] = json!(secrets);
    }
    ok(body)
}

async fn renew_owner(State(s): State<AppState>, m: Manager) -> ApiResult {
    m.require(Permission::RoleAssignmentsWrite)?;
    ok(s.auth.rotate_owner(&m.principal).await.map_err(auth_err)?)
}

async fn rotate_signing_key(State(s): State<AppState>, m: Manager) -> ApiResult {
    m.require(Permission::RoleAssignmentsWrite)?;
    let kid = s
        .auth
        .rotate_signing_key(&m.principal)
        .await
        .map_err(auth_err)?;
    ok(json!({ "kid": kid }))
}

async fn admin_credentials(State(s): State<AppState>, m: Manager) -> ApiResult {
    m.require(Permission::ManageRead)?;
    let (username, enabled, passwords) = s.auth.admin_credentials().await.map_err(auth_err)?;
    ok(json!({"username": username, "enabled": enabled, "passwords": passwords}))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RenewRequest {
    password_name: String,
}

async fn renew_admin(
    State(s): State<AppState>,
    m: Manager,
    Json(r): Json<RenewRequest>,
) -> ApiResult {
    m.require(Permission::ManageWrite)?;
    ok(s.auth
        .renew_admin_password(&m.principal, &r.password_name)
        .await
        .map_err(auth_err)?)
}

async fn list_sps(State(s): State<AppState>, m: Manager) -> ApiResult {
    m.require(Permission::ManageRead)?;
    ok(s.auth.identities(Some("sp")).await.map_err(auth_err)?)
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct CreateSp {
    name: String,
    role: Option<String>,
    scope: Option<String>,
    #[serde(flatten)]
    validity: SecretValidity,
}

async fn create_sp(State(s): State<AppState>, m: Manager, Json(r): Json<CreateSp>) -> ApiResult {
    m.require(Permission::ManageWrite)?;
    if r.role.is_some() {
        m.require(Permission::RoleAssignmentsWrite)?;
    }
    created(
        s.auth
            .create_service_principal(
                &m.principal,
                &r.name,
                r.role.as_deref(),
                r.scope.as_deref(),
                r.validity,
            )
            .await
            .map_err(auth_err)?,
    )
}

async fn delete_sp(State(s): State<AppState>, m: Manager, Path(id): Path<String>) -> ApiResult {
    m.require(Permission::ManageWrite)?;
    s.auth
        .delete_identity(&m.principal, &id, IdentityKind::ServicePrincipal)
        .await
        .map_err(auth_err)?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn sp_credentials(
    State(s): State<AppState>,
    m: Manager,
    Path(id): Path<String>,
) -> ApiResult {
    m.require(Permission::ManageRead)?;
    ok(s.auth
        .credentials_of(&id, IdentityKind::ServicePrincipal)
        .await
        .map_err(auth_err)?)
}

async fn reset_sp(
    State(s): State<AppState>,
    m: Manager,
    Path(id): Path<String>,
    body: Option<Json<SecretValidity>>,
) -> ApiResult {
    m.require(Permission::ManageWrite)?;
    let validity = body.map(|b| b.0).unwrap_or_default();
    ok(s.auth
        .reset_sp_secret(&m.principal, &id, validity)
        .await
        .map_err(auth_err)?)
}

#[derive(Deserialize)]
struct KindFilter {
    kind: Option<String>,
}

async fn list_identities(
    State(s): State<AppState>,
    m: Manager,
    Query(f): Query<KindFilter>,
) -> ApiResult {
    m.require(Permission::ManageRead)?;
    ok(s.auth
        .identities(f.kind.as_deref())
        .await
        .map_err(auth_err)?)
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct IdentityUpdate {
    trusted_service: Option<bool>,
}

async fn update_identity(
    State(s): State<AppState>,
    m: Manager,
    Path(id): Path<String>,
    Json(u): Json<IdentityUpdate>,
) -> ApiResult {
    m.require(Permission::ManageWrite)?;
    if let Some(t) = u.trusted_service {
        s.auth
            .set_trusted_service(&m.principal, &id, t)
            .await
            .map_err(auth_err)?;
    }
    let i = s.auth.find_identity(&id).await.map_err(auth_err)?;
    ok(berth_auth::manage::IdentityView::from(&i))
}

async fn list_scope_maps(State(s): State<AppState>, m: Manager) -> ApiResult {
    m.require(Permission::ManageRead)?;
    ok(s.auth.scope_maps().await.map_err(auth_err)?)
}

#[derive(Deserialize)]
struct ScopeMapBody {
    name: Option<String>,
    #[serde(default)]
    description: String,
    rules: Vec<ScopeRule>,
}

async fn create_scope_map(
    State(s): State<AppState>,
    m: Manager,
    Json(b): Json<ScopeMapBody>,
) -> ApiResult {
    m.require(Permission::ManageWrite)?;
    let name = b.name.unwrap_or_default();
    if name.is_empty() {
        return Err(
            ApiError::new(ErrorCode::Unsupported, "a scope map needs a name")
                .with_status(StatusCode::BAD_REQUEST),
        );
    }
    created(
        s.auth
            .put_scope_map(&m.principal, &name, &b.description, b.rules, true)
            .await
            .map_err(auth_err)?,
    )
}

async fn update_scope_map(
    State(s): State<AppState>,
    m: Manager,
    Path(name): Path<String>,
    Json(b): Json<ScopeMapBody>,
) -> ApiResult {
    m.require(Permission::ManageWrite)?;
    ok(s.auth
        .put_scope_map(&m.principal, &name, &b.description, b.rules, false)
        .await
        .map_err(auth_err)?)
}

async fn delete_scope_map(
    State(s): State<AppState>,
    m: Manager,
    Path(name): Path<String>,
) -> ApiResult {
    m.require(Permission::ManageWrite)?;
    s.auth
        .delete_scope_map(&m.principal, &name)
        .await
        .map_err(auth_err)?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn list_tokens(State(s): State<AppState>, m: Manager) -> ApiResult {
    m.require(Permission::ManageRead)?;
    ok(s.auth.identities(Some("token")).await.map_err(auth_err)?)
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct CreateToken {
    name: String,
    scope_map: String,
    #[serde(default = "yes")]
    enabled: bool,
    expiry_days: Option<u32>,
}

fn yes() -> bool {
    true
}

async fn create_token(
    State(s): State<AppState>,
    m: Manager,
    Json(b): Json<CreateToken>,
) -> ApiResult {
    m.require(Permission::ManageWrite)?;
    created(
        s.auth
            .create_token(
                &m.principal,
                &b.name,
                &b.scope_map,
                b.enabled,
                b.expiry_days,
            )
            .await
            .map_err(auth_err)?,
    )
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct UpdateToken {
    enabled: Option<bool>,
    scope_map: Option<String>,
}

async fn update_token(
    State(s): State<AppState>,
    m: Manager,
    Path(name): Path<String>,
    Json(b): Json<UpdateToken>,
) -> ApiResult {
    m.require(Permission::ManageWrite)?;
    ok(s.auth
        .update_token(&m.principal, &name, b.enabled, b.scope_map.as_deref())
        .await
        .map_err(auth_err)?)
}

async fn delete_token(
    State(s): State<AppState>,
    m: Manager,
    Path(name): Path<String>,
) -> ApiResult {
    m.require(Permission::ManageWrite)?;
    s.auth
        .delete_identity(&m.principal, &name, IdentityKind::Token)
        .await
        .map_err(auth_err)?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct TokenCredential {
    password_name: String,
    expiry_days: Option<u32>,
}

async fn token_credential(
    State(s): State<AppState>,
    m: Manager,
    Path(name): Path<String>,
    Json(b): Json<TokenCredential>,
) -> ApiResult {
    m.require(Permission::ManageWrite)?;
    ok(s.auth
        .generate_token_password(&m.principal, &name, &b.password_name, b.expiry_days)
        .await
        .map_err(auth_err)?)
}

async fn list_roles(State(s): State<AppState>, m: Manager) -> ApiResult {
    m.require(Permission::ManageRead)?;
    ok(s.auth.role_views().await.map_err(auth_err)?)
}

#[derive(Deserialize)]
struct CreateRole {
    name: String,
    #[serde(default)]
    description: String,
    actions: Vec<String>,
}

async fn create_role(
    State(s): State<AppState>,
    m: Manager,
    Json(b): Json<CreateRole>,
) -> ApiResult {
    m.require(Permission::RoleAssignmentsWrite)?;
    created(
        s.auth
            .create_role(&m.principal, &b.name, &b.description, &b.actions)
            .await
            .map_err(auth_err)?,
    )
}

#[derive(Deserialize)]
struct AssigneeFilter {
    assignee: Option<String>,
}

async fn list_assignments(
    State(s): State<AppState>,
    m: Manager,
    Query(f): Query<AssigneeFilter>,
) -> ApiResult {
    m.require(Permission::ManageRead)?;
    ok(s.auth
        .assignments(f.assignee.as_deref())
        .await
        .map_err(auth_err)?)
}

#[derive(Deserialize)]
struct CreateAssignment {
    assignee: String,
    role: String,
    #[serde(default)]
    scope: String,
}

async fn create_assignment(
    State(s): State<AppState>,
    m: Manager,
    Json(b): Json<CreateAssignment>,
) -> ApiResult {
    m.require(Permission::RoleAssignmentsWrite)?;
    created(
        s.auth
            .create_assignment(&m.principal, &b.assignee, &b.role, &b.scope)
            .await
            .map_err(auth_err)?,
    )
}

async fn delete_assignment(
    State(s): State<AppState>,
    m: Manager,
    Path(id): Path<String>,
) -> ApiResult {
    m.require(Permission::RoleAssignmentsWrite)?;
    s.auth
        .delete_assignment(&m.principal, &id)
        .await
        .map_err(auth_err)?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

#[derive(Deserialize)]
struct RepositoryQuery {
    repository: Option<String>,
}

fn repository_param(q: &RepositoryQuery) -> Result<RepositoryName, ApiError> {
    let raw = q.repository.as_deref().ok_or_else(|| {
        ApiError::new(
            ErrorCode::NameInvalid,
            "the 'repository' query parameter is required",
        )
    })?;
    Ok(raw.parse()?)
}

async fn list_repositories(State(s): State<AppState>, m: Manager) -> ApiResult {
    m.require(Permission::ManageRead)?;
    ok(s.registry.catalog(u32::MAX, None).await?)
}

async fn repository_tags(
    State(s): State<AppState>,
    m: Manager,
    Query(q): Query<RepositoryQuery>,
) -> ApiResult {
    m.require(Permission::ManageRead)?;
    let repo = repository_param(&q)?;
    let tags = s.registry.list_tags(&repo, u32::MAX, None).await?;
    let mut out = Vec::new();
    for tag in tags {
        let reference: Reference = tag.parse()?;
        let manifest = s.registry.get_manifest(&repo, &reference, &[]).await?;
        out.push(json!({"name": tag, "digest": manifest.digest, "mediaType": manifest.media_type}));
    }
    ok(out)
}

async fn repository_manifests(
    State(s): State<AppState>,
    m: Manager,
    Query(q): Query<RepositoryQuery>,
) -> ApiResult {
    m.require(Permission::ManageRead)?;
    let repo = repository_param(&q)?;
    let manifests = s.registry.list_manifests(&repo).await?;
    ok(manifests
        .into_iter()
        .map(|m| {
            json!({
                "digest": m.digest,
                "mediaType": m.media_type,
                "artifactType": m.artifact_type,
                "size": m.size,
                "tags": m.tags,
                "createdAt": berth_auth::rfc3339(m.created_at),
            })
        })
        .collect::<Vec<Value>>())
}

async fn delete_repository(
    State(s): State<AppState>,
    m: Manager,
    Query(q): Query<RepositoryQuery>,
) -> ApiResult {
    m.require(Permission::Delete)?;
    let repo = repository_param(&q)?;
    let deleted = s.registry.delete_repository(&repo).await?;
    ok(json!({"repository": repo.as_str(), "manifestsDeleted": deleted}))
}

fn gc_run_json(r: &berth_metadata::GcRunRecord) -> Value {
    json!({
        "id": r.id,
        "node": r.holder,
        "state": r.state,
        "startedAt": berth_auth::rfc3339(r.started_at / 1000),
        "finishedAt": r.finished_at.map(|t| berth_auth::rfc3339(t / 1000)),
        "durationMs": r.finished_at.map(|t| t - r.started_at),
        "examined": r.examined,
        "blobsDeleted": r.blobs_deleted,
        "bytesReclaimed": r.bytes_reclaimed,
        "uploadsPurged": r.uploads_purged,
        "storageRequests": r.storage_requests,
        "error": r.error,
    })
}

/// The collector's queue and its latest runs, on any node.
async fn gc_status(State(s): State<AppState>, m: Manager) -> ApiResult {
    m.require(Permission::ManageRead)?;
    let metadata = s.registry.metadata();
    let queued = metadata
        .gc_queue_length()
        .await
        .map_err(RegistryError::from)?;
    let runs = metadata.gc_runs(10).await.map_err(RegistryError::from)?;
    ok(json!({
        "queuedCandidates": queued,
        "graceSeconds": s.registry.config().gc_grace.as_secs(),
        "runs": runs.iter().map(gc_run_json).collect::<Vec<_>>(),
    }))
}

/// Runs a collection pass now, on this node (409 if another node's
/// collector holds the lease).
async fn gc_run(State(s): State<AppState>, m: Manager) -> ApiResult {
    m.require(Permission::ManageWrite)?;
    let report = s.registry.collect_garbage().await?;
    if report.skipped {
        return Err(ApiError::new(
            ErrorCode::Denied,
            "another node is collecting garbage right now; see `berth gc status`",
        )
        .with_status(StatusCode::CONFLICT));
    }
    ok(json!({
        "examined": report.examined,
        "blobsDeleted": report.blobs_deleted,
        "bytesReclaimed": report.bytes_reclaimed,
        "uploadsPurged": report.uploads_purged,
        "storageRequests": report.storage_requests,
    }))
}

#[derive(Deserialize)]
struct ActivityQuery {
    /// Unix seconds.
    since: Option<i64>,
    limit: Option<u32>,
}

async fn activity(
    State(s): State<AppState>,
    m: Manager,
    Query(q): Query<ActivityQuery>,
) -> ApiResult {
    m.require(Permission::ManageRead)?;
    ok(s.auth
        .activity(q.since.unwrap_or(0), q.limit.unwrap_or(1000).min(10_000))
        .await
        .map_err(auth_err)?)
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct ExplainRequest {
    ip: String,
    /// "public" (default) or "private:NAME".
    endpoint: Option<String>,
    identity: Option<String>,
    /// pull | push | delete | catalog
    action: String,
    repository: Option<String>,
}

/// The decision trace for a hypothetical request: which network rule
/// allows or denies it, and which role assignment grants the action or
/// what is missing.
async fn explain(
    State(s): State<AppState>,
    m: Manager,
    Json(r): Json<ExplainRequest>,
) -> ApiResult {
    m.require(Permission::ManageRead)?;
    let bad = |msg: String| {
        ApiError::new(ErrorCode::Unsupported, msg).with_status(StatusCode::BAD_REQUEST)
    };
    let ip: std::net::IpAddr =
        r.ip.parse()
            .map_err(|_| bad(format!("'{}' is not an IP address", r.ip)))?;
    let endpoint = match r.endpoint.as_deref() {
        None | Some("public") => berth_network::Endpoint::Public,
        Some(e) => match e.strip_prefix("private:") {
            Some(name) => berth_network::Endpoint::Private(name.to_string()),
            None => {
                return Err(bad(format!(
                    "endpoint '{e}' must be 'public' or 'private:NAME'"
                )))
            }
        },
    };
    let permission = match r.action.as_str() {
        "pull" => Permission::Pull,
        "push" => Permission::Push,
        "delete" => Permission::Delete,
        "catalog" => Permission::CatalogRead,
        other => {
            return Err(bad(format!(
                "action '{other}' must be pull, push, delete or catalog"
            )))
        }
    };
    if let Some(repo) = &r.repository {
        repo.parse::<RepositoryName>()?;
    }
    s.network.reload(&s.auth).await?;
    let trusted = match r.identity.as_deref() {
        Some(i) if !i.is_empty() && i != "anonymous" => s
            .auth
            .find_identity(i)
            .await
            .map(|id| id.trusted_service)
            .unwrap_or(false),
        _ => false,
    };
    let network = s.network.decide(&endpoint, ip, Some(trusted));
    let access = s
        .auth
        .explain(r.identity.as_deref(), permission, r.repository.as_deref())
        .await
        .map_err(auth_err)?;
    let verdict = if !network.allowed {
        format!("denied by the network rules: {}", network.message(ip))
    } else if let Some(problem) = &access.identity_problem {
        format!("refused at authentication: {problem}")
    } else if !access.allowed {
        format!(
            "denied by permissions: missing {}",
            access.missing.clone().unwrap_or_default()
        )
    } else {
        format!(
            "allowed: network ({}) and {}",
            network.rule,
            access.granted_by.join(", ")
        )
    };
    ok(json!({
        "verdict": verdict,
        "allowed": network.allowed && access.allowed,
        "network": {
            "endpoint": endpoint.to_string(),
            "ip": ip.to_string(),
            "allowed": network.allowed,
            "rule": network.rule,
            "reason": if network.allowed { None } else { Some(network.message(ip)) },
        },
        "access": access,
    }))
}
