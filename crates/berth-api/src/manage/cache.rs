//! Cache rules and credential sets.

use berth_manage::cache::*;

use super::{ManageError, ManageRead, ManageWrite, Routes};
use crate::AppState;

type Result<T> = std::result::Result<T, ManageError>;

pub(super) fn routes(r: Routes) -> Routes {
    r.serve(list_rules)
        .serve(get_rule)
        .serve(create_rule)
        .serve(update_rule)
        .serve(delete_rule)
        .serve(list_sets)
        .serve(create_set)
        .serve(update_set)
        .serve(delete_set)
}

async fn list_rules(s: AppState, _: ManageRead, _: ListCacheRules) -> Result<Vec<CacheRule>> {
    Ok(s.auth.cache_rules().await?)
}

async fn get_rule(s: AppState, _: ManageRead, r: GetCacheRule) -> Result<CacheRule> {
    Ok(s.auth.cache_rule(&r.name).await?)
}

async fn create_rule(s: AppState, m: ManageWrite, r: CreateCacheRule) -> Result<CacheRule> {
    Ok(s.auth.create_cache_rule(&m.0.principal, &r).await?)
}

async fn update_rule(s: AppState, m: ManageWrite, r: UpdateCacheRule) -> Result<CacheRule> {
    Ok(s.auth.update_cache_rule(&m.0.principal, &r).await?)
}

async fn delete_rule(s: AppState, m: ManageWrite, r: DeleteCacheRule) -> Result<()> {
    Ok(s.auth.delete_cache_rule(&m.0.principal, &r.name).await?)
}

async fn list_sets(
    s: AppState,
    _: ManageRead,
    _: ListCredentialSets,
) -> Result<Vec<CredentialSet>> {
    Ok(s.auth.credential_sets().await?)
}

async fn create_set(s: AppState, m: ManageWrite, r: CreateCredentialSet) -> Result<CredentialSet> {
    Ok(s.auth.create_credential_set(&m.0.principal, &r).await?)
}

async fn update_set(s: AppState, m: ManageWrite, r: UpdateCredentialSet) -> Result<CredentialSet> {
    Ok(s.auth.update_credential_set(&m.0.principal, &r).await?)
}

async fn delete_set(s: AppState, m: ManageWrite, r: DeleteCredentialSet) -> Result<()> {
    Ok(s.auth
        .delete_credential_set(&m.0.principal, &r.name)
        .await?)
}
