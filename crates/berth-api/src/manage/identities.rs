//! Registry settings, the owner, the admin user, service principals and
//! identities of any kind.

use berth_manage::identities::*;
use berth_manage::registry::*;
use berth_manage::Access;

use super::{AssignRoles, ManageError, ManageRead, ManageWrite, Routes};
use crate::AppState;

type Result<T> = std::result::Result<T, ManageError>;

pub(super) fn routes(r: Routes) -> Routes {
    r.serve(get_registry)
        .serve(update_registry)
        .serve(renew_owner)
        .serve(rotate_signing_key)
        .serve(admin_credentials)
        .serve(renew_admin)
        .serve(list_sps)
        .serve(create_sp)
        .serve(delete_sp)
        .serve(sp_credentials)
        .serve(reset_sp)
        .serve(create_federated)
        .serve(list_federated)
        .serve(delete_federated)
        .serve(list_identities)
        .serve(update_identity)
}

async fn get_registry(s: AppState, _: ManageRead, _: GetRegistry) -> Result<RegistrySettings> {
    Ok(s.auth.settings())
}

async fn update_registry(
    s: AppState,
    m: ManageWrite,
    r: UpdateRegistry,
) -> Result<RegistrySettings> {
    let actor = &m.0.principal;
    if let Some(v) = r.anonymous_pull_enabled {
        s.auth.set_anonymous_pull(actor, v).await?;
    }
    if let Some(v) = r.sparse_manifests {
        s.auth.set_sparse_manifests(actor, v).await?;
    }
    let mut created = Vec::new();
    if let Some(v) = r.admin_user_enabled {
        created = s.auth.set_admin_enabled(actor, v).await?;
    }
    Ok(RegistrySettings {
        admin_passwords: created,
        ..s.auth.settings()
    })
}

async fn renew_owner(s: AppState, m: AssignRoles, _: RenewOwnerPassword) -> Result<NewSecret> {
    Ok(s.auth.rotate_owner(&m.0.principal).await?)
}

async fn rotate_signing_key(
    s: AppState,
    m: AssignRoles,
    _: RotateSigningKey,
) -> Result<SigningKey> {
    let kid = s.auth.rotate_signing_key(&m.0.principal).await?;
    Ok(SigningKey { kid })
}

async fn admin_credentials(
    s: AppState,
    _: ManageRead,
    _: GetAdminCredentials,
) -> Result<AdminCredentials> {
    Ok(s.auth.admin_credentials().await?)
}

async fn renew_admin(s: AppState, m: ManageWrite, r: RenewAdminPassword) -> Result<NewSecret> {
    Ok(s.auth
        .renew_admin_password(&m.0.principal, r.password_name)
        .await?)
}

async fn list_sps(s: AppState, _: ManageRead, _: ListServicePrincipals) -> Result<Vec<Identity>> {
    Ok(s.auth
        .identities(Some(IdentityKind::ServicePrincipal))
        .await?)
}

async fn create_sp(
    s: AppState,
    m: ManageWrite,
    r: CreateServicePrincipal,
) -> Result<CreatedIdentity> {
    if r.role.is_some() {
        m.0.require(Access::AssignRoles)?;
    }
    Ok(s.auth.create_service_principal(&m.0.principal, &r).await?)
}

async fn delete_sp(s: AppState, m: ManageWrite, r: DeleteServicePrincipal) -> Result<()> {
    Ok(s.auth
        .delete_identity(&m.0.principal, &r.id, IdentityKind::ServicePrincipal)
        .await?)
}

async fn sp_credentials(
    s: AppState,
    _: ManageRead,
    r: ListServicePrincipalCredentials,
) -> Result<Vec<Credential>> {
    Ok(s.auth
        .credentials_of(&r.id, IdentityKind::ServicePrincipal)
        .await?)
}

async fn reset_sp(
    s: AppState,
    m: ManageWrite,
    r: ResetServicePrincipalSecret,
) -> Result<NewSecret> {
    Ok(s.auth
        .reset_sp_secret(&m.0.principal, &r.id, r.years, r.end_date.as_deref())
        .await?)
}

async fn create_federated(
    s: AppState,
    m: ManageWrite,
    r: berth_manage::federation::CreateFederatedCredential,
) -> Result<berth_manage::federation::FederatedCredential> {
    Ok(s.auth
        .create_federated_credential(&m.0.principal, &r)
        .await?)
}

async fn list_federated(
    s: AppState,
    _: ManageRead,
    r: berth_manage::federation::ListFederatedCredentials,
) -> Result<Vec<berth_manage::federation::FederatedCredential>> {
    Ok(s.auth.federated_credentials(&r.id).await?)
}

async fn delete_federated(
    s: AppState,
    m: ManageWrite,
    r: berth_manage::federation::DeleteFederatedCredential,
) -> Result<()> {
    Ok(s.auth
        .delete_federated_credential(&m.0.principal, &r.id, &r.name)
        .await?)
}

async fn list_identities(s: AppState, _: ManageRead, r: ListIdentities) -> Result<Vec<Identity>> {
    Ok(s.auth.identities(r.kind).await?)
}

async fn update_identity(s: AppState, m: ManageWrite, r: UpdateIdentity) -> Result<Identity> {
    if let Some(trusted) = r.trusted_service {
        s.auth
            .set_trusted_service(&m.0.principal, &r.id, trusted)
            .await?;
    }
    let identity = s.auth.find_identity(&r.id).await?;
    Ok(berth_auth::view::identity(&identity)?)
}
