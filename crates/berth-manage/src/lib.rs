//! The management contract: every endpoint of berth's management API
//! (`/api/v1/...`) as one request type that names its method, path,
//! required permission and response type ([`Endpoint`]).
//!
//! The server serves each endpoint through its request type, the CLI and
//! the tests send it through the same type ([`client`]), so the two sides
//! cannot drift apart. On the wire everything is JSON with camelCase keys,
//! and every time is an RFC 3339 string.
//!
//! Where a request's fields travel: for `GET` and `DELETE` in the query
//! string, for `POST` and `PATCH` as the JSON body. A path parameter
//! (`{id}`, `{name}`) is a field the request carries and the path is
//! built from ([`Endpoint::path_param`]); it never appears in the body.

use serde::de::DeserializeOwned;
use serde::Serialize;

pub mod cache;
#[cfg(feature = "client")]
pub mod client;
mod error;
pub mod explain;
pub mod federation;
pub mod gc;
pub mod identities;
pub mod logs;
pub mod network;
pub mod registry;
pub mod repositories;
pub mod roles;
pub mod storage;
pub mod tokens;

pub use error::{ErrorBody, ErrorEntry, ManageCode};

/// The HTTP method of an endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Verb {
    Get,
    Post,
    Patch,
    Delete,
}

impl Verb {
    pub fn as_str(self) -> &'static str {
        match self {
            Verb::Get => "GET",
            Verb::Post => "POST",
            Verb::Patch => "PATCH",
            Verb::Delete => "DELETE",
        }
    }

    /// Whether the request's fields travel in the query string (else in
    /// the JSON body).
    pub fn fields_in_query(self) -> bool {
        matches!(self, Verb::Get | Verb::Delete)
    }
}

/// What a caller needs, at registry scope, to call an endpoint. The
/// built-in roles that grant it: `Reader` and up for `ManageRead`,
/// `Contributor` and up for `ManageWrite` and `Delete`, `Owner` for
/// `AssignRoles`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Access {
    /// `registries/manage/read`: look at settings, identities, logs.
    ManageRead,
    /// `registries/manage/write`: change settings and identities.
    ManageWrite,
    /// `roleAssignments/write`: grant permissions (roles, owner secrets).
    AssignRoles,
    /// `repositories/content/delete`: delete repositories.
    Delete,
}

/// One management endpoint: implemented by its request type.
pub trait Endpoint: Serialize + DeserializeOwned + Default + Send + Sync + 'static {
    const VERB: Verb;
    /// The route, with at most one `{parameter}`, e.g.
    /// `/api/v1/tokens/{name}`.
    const PATH: &'static str;
    const ACCESS: Access;
    /// The success status: 200, 201 for a creation, 204 when there is no
    /// body (`Response = ()`).
    const STATUS: u16 = 200;
    type Response: Serialize + DeserializeOwned + Send + 'static;

    /// The value of the path's parameter, if it has one.
    fn path_param(&self) -> Option<&str> {
        None
    }

    /// Sets the path parameter's value (the server does, from the path).
    fn set_path_param(&mut self, _value: String) {}
}

/// An endpoint as a row: what the server serves and the contract lists.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct EndpointInfo {
    pub verb: &'static str,
    pub path: &'static str,
    /// The request type's name (`berth_manage::tokens::CreateToken`).
    pub request: &'static str,
    pub response: &'static str,
    pub access: String,
}

impl EndpointInfo {
    pub fn of<E: Endpoint>() -> EndpointInfo {
        EndpointInfo {
            verb: E::VERB.as_str(),
            path: E::PATH,
            request: std::any::type_name::<E>(),
            response: std::any::type_name::<E::Response>(),
            access: format!("{:?}", E::ACCESS),
        }
    }
}

/// Implements [`Endpoint`] for a request type:
/// `endpoint!(Type => Response, Verb "path", Access)`, optionally
/// `, status 201` and `, param field` for a path parameter.
macro_rules! endpoint {
    ($request:ty => $response:ty, $verb:ident $path:literal, $access:ident $(, status $status:literal)? $(, param $field:ident)?) => {
        impl $crate::Endpoint for $request {
            const VERB: $crate::Verb = $crate::Verb::$verb;
            const PATH: &'static str = $path;
            const ACCESS: $crate::Access = $crate::Access::$access;
            $(const STATUS: u16 = $status;)?
            type Response = $response;
            $(
                fn path_param(&self) -> Option<&str> {
                    Some(&self.$field)
                }
                fn set_path_param(&mut self, value: String) {
                    self.$field = value;
                }
            )?
        }
    };
}
pub(crate) use endpoint;

/// Every endpoint of the contract. The server's route table is checked
/// against this list, so an endpoint cannot be served without being in the
/// contract, nor listed without being served.
pub fn all() -> Vec<EndpointInfo> {
    use EndpointInfo as I;
    vec![
        I::of::<registry::GetRegistry>(),
        I::of::<registry::UpdateRegistry>(),
        I::of::<registry::RenewOwnerPassword>(),
        I::of::<registry::RotateSigningKey>(),
        I::of::<registry::GetAdminCredentials>(),
        I::of::<registry::RenewAdminPassword>(),
        I::of::<registry::GetEndpoints>(),
        I::of::<identities::ListServicePrincipals>(),
        I::of::<identities::CreateServicePrincipal>(),
        I::of::<identities::DeleteServicePrincipal>(),
        I::of::<identities::ListServicePrincipalCredentials>(),
        I::of::<identities::ResetServicePrincipalSecret>(),
        I::of::<cache::ListCacheRules>(),
        I::of::<cache::GetCacheRule>(),
        I::of::<cache::CreateCacheRule>(),
        I::of::<cache::UpdateCacheRule>(),
        I::of::<cache::DeleteCacheRule>(),
        I::of::<cache::ListCredentialSets>(),
        I::of::<cache::CreateCredentialSet>(),
        I::of::<cache::UpdateCredentialSet>(),
        I::of::<cache::DeleteCredentialSet>(),
        I::of::<federation::CreateFederatedCredential>(),
        I::of::<federation::ListFederatedCredentials>(),
        I::of::<federation::DeleteFederatedCredential>(),
        I::of::<identities::ListIdentities>(),
        I::of::<identities::UpdateIdentity>(),
        I::of::<tokens::ListScopeMaps>(),
        I::of::<tokens::CreateScopeMap>(),
        I::of::<tokens::UpdateScopeMap>(),
        I::of::<tokens::DeleteScopeMap>(),
        I::of::<tokens::ListTokens>(),
        I::of::<tokens::CreateToken>(),
        I::of::<tokens::UpdateToken>(),
        I::of::<tokens::DeleteToken>(),
        I::of::<tokens::GenerateTokenPassword>(),
        I::of::<roles::ListRoleDefinitions>(),
        I::of::<roles::CreateRoleDefinition>(),
        I::of::<roles::ListRoleAssignments>(),
        I::of::<roles::CreateRoleAssignment>(),
        I::of::<roles::DeleteRoleAssignment>(),
        I::of::<repositories::ListRepositories>(),
        I::of::<repositories::ListRepositorySummaries>(),
        I::of::<repositories::DeleteRepository>(),
        I::of::<repositories::ListTags>(),
        I::of::<repositories::ListManifests>(),
        I::of::<repositories::GetManifest>(),
        I::of::<repositories::UntagManifest>(),
        I::of::<repositories::DeleteManifest>(),
        I::of::<gc::GetGcStatus>(),
        I::of::<gc::RunGc>(),
        I::of::<storage::GetStorageHistory>(),
        I::of::<network::GetNetwork>(),
        I::of::<network::UpdateNetwork>(),
        I::of::<network::ListNetworkRules>(),
        I::of::<network::AddNetworkRule>(),
        I::of::<network::RemoveNetworkRule>(),
        I::of::<explain::Explain>(),
        I::of::<logs::ListActivity>(),
        I::of::<logs::ListLoginEvents>(),
        I::of::<logs::ListRepositoryEvents>(),
        I::of::<logs::GetEventSummary>(),
    ]
}

/// Builds the path of a request: the template with its parameter filled
/// in (percent-encoded as one path segment).
pub fn path_of<E: Endpoint>(request: &E) -> String {
    match (E::PATH.find('{'), request.path_param()) {
        (Some(start), Some(value)) => {
            let end = E::PATH[start..]
                .find('}')
                .map_or(E::PATH.len(), |e| start + e + 1);
            format!(
                "{}{}{}",
                &E::PATH[..start],
                encode_segment(value),
                &E::PATH[end..]
            )
        }
        _ => E::PATH.to_string(),
    }
}

/// One path segment: everything but the unreserved characters is encoded.
const SEGMENT: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

fn encode_segment(value: &str) -> String {
    percent_encoding::utf8_percent_encode(value, SEGMENT).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn every_endpoint_is_listed_once_and_paths_are_well_formed() {
        let all = all();
        let routes: HashSet<_> = all.iter().map(|e| (e.verb, e.path)).collect();
        assert_eq!(
            routes.len(),
            all.len(),
            "a (method, path) pair is listed twice"
        );
        let types: HashSet<_> = all.iter().map(|e| e.request).collect();
        assert_eq!(types.len(), all.len(), "a request type is listed twice");
        for e in &all {
            assert!(e.path.starts_with("/api/v1/"), "{}", e.path);
            assert!(e.path.matches('{').count() <= 1, "{}", e.path);
        }
    }

    #[test]
    fn paths_fill_their_parameter_as_one_segment() {
        let r = tokens::DeleteToken {
            name: "ci bot/1".into(),
        };
        assert_eq!(path_of(&r), "/api/v1/tokens/ci%20bot%2F1");
        let r = identities::ResetServicePrincipalSecret {
            id: "abc".into(),
            ..Default::default()
        };
        assert_eq!(
            path_of(&r),
            "/api/v1/service-principals/abc/credentials/reset"
        );
        assert_eq!(path_of(&gc::RunGc {}), "/api/v1/gc/run");
    }

    #[test]
    fn path_parameters_never_travel_in_the_body() {
        let r = tokens::UpdateToken {
            name: "t".into(),
            enabled: Some(false),
            scope_map: None,
        };
        assert_eq!(
            serde_json::to_value(&r).expect("json"),
            serde_json::json!({"enabled": false})
        );
    }
}
