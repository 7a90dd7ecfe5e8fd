//! Scope maps and repository-scoped tokens.

use berth_manage::identities::{CreatedIdentity, Identity, IdentityKind, NewSecret};
use berth_manage::tokens::*;

use super::{ManageError, ManageRead, ManageWrite, Routes};
use crate::AppState;

type Result<T> = std::result::Result<T, ManageError>;

pub(super) fn routes(r: Routes) -> Routes {
    r.serve(list_scope_maps)
        .serve(create_scope_map)
        .serve(update_scope_map)
        .serve(delete_scope_map)
        .serve(list_tokens)
        .serve(create_token)
        .serve(update_token)
        .serve(delete_token)
        .serve(token_password)
}

async fn list_scope_maps(s: AppState, _: ManageRead, _: ListScopeMaps) -> Result<Vec<ScopeMap>> {
    Ok(s.auth.scope_maps().await?)
}

async fn create_scope_map(s: AppState, m: ManageWrite, r: CreateScopeMap) -> Result<ScopeMap> {
    if r.name.is_empty() {
        return Err(ManageError::validation("a scope map needs a name"));
    }
    Ok(s.auth
        .put_scope_map(&m.0.principal, &r.name, &r.description, r.rules, true)
        .await?)
}

async fn update_scope_map(s: AppState, m: ManageWrite, r: UpdateScopeMap) -> Result<ScopeMap> {
    Ok(s.auth
        .put_scope_map(&m.0.principal, &r.name, &r.description, r.rules, false)
        .await?)
}

async fn delete_scope_map(s: AppState, m: ManageWrite, r: DeleteScopeMap) -> Result<()> {
    Ok(s.auth.delete_scope_map(&m.0.principal, &r.name).await?)
}

async fn list_tokens(s: AppState, _: ManageRead, _: ListTokens) -> Result<Vec<Identity>> {
    Ok(s.auth.identities(Some(IdentityKind::Token)).await?)
}

async fn create_token(s: AppState, m: ManageWrite, r: CreateToken) -> Result<CreatedIdentity> {
    Ok(s.auth
        .create_token(
            &m.0.principal,
            &r.name,
            &r.scope_map,
            r.enabled,
            r.expiry_days,
        )
        .await?)
}

async fn update_token(s: AppState, m: ManageWrite, r: UpdateToken) -> Result<Identity> {
    Ok(s.auth
        .update_token(&m.0.principal, &r.name, r.enabled, r.scope_map.as_deref())
        .await?)
}

async fn delete_token(s: AppState, m: ManageWrite, r: DeleteToken) -> Result<()> {
    Ok(s.auth
        .delete_identity(&m.0.principal, &r.name, IdentityKind::Token)
        .await?)
}

async fn token_password(
    s: AppState,
    m: ManageWrite,
    r: GenerateTokenPassword,
) -> Result<NewSecret> {
    Ok(s.auth
        .generate_token_password(&m.0.principal, &r.name, r.password_name, r.expiry_days)
        .await?)
}
