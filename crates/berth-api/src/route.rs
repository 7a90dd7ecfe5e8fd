//! Parsing `/v2/<name>/...` paths. Repository names contain slashes, so the
//! path is read from its end: the last one or two segments say what is
//! addressed, everything before them is the name. Parsing happens once, in
//! front of every layer that needs to know the repository and the action
//! (access control, audit) and the handler that serves it.

use berth_types::{ErrorCode, RepositoryName};
use http::Method;

use crate::error::ApiError;

/// What a distribution-API request addresses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoint {
    Base,
    Catalog,
    Manifest { reference: String },
    Blob { digest: String },
    UploadStart,
    Upload { id: String },
    Tags,
    Referrers { digest: String },
}

/// What the request would do, for access decisions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// `/v2/` itself: only proves the credentials.
    Ping,
    Pull,
    Push,
    Delete,
    Catalog,
}

#[derive(Debug, Clone)]
pub struct Route {
    pub repository: Option<RepositoryName>,
    pub endpoint: Endpoint,
    pub action: Action,
}

impl Route {
    /// The repository, for endpoints that have one.
    pub fn repository(&self) -> Result<&RepositoryName, ApiError> {
        self.repository
            .as_ref()
            .ok_or_else(|| ApiError::new(ErrorCode::NameInvalid, "no repository in the path"))
    }
}

pub fn parse(method: &Method, path: &str) -> Result<Route, ApiError> {
    let rest = path.strip_prefix("/v2").ok_or_else(|| not_found(path))?;
    let rest = rest.strip_prefix('/').unwrap_or(rest);
    if rest.is_empty() {
        return Ok(Route {
            repository: None,
            endpoint: Endpoint::Base,
            action: Action::Ping,
        });
    }
    if rest == "_catalog" {
        return Ok(Route {
            repository: None,
            endpoint: Endpoint::Catalog,
            action: Action::Catalog,
        });
    }
    let segments: Vec<&str> = rest.split('/').collect();
    let n = segments.len();
    let (name_len, endpoint) = match segments.as_slice() {
        [.., "tags", "list"] if n > 2 => (n - 2, Endpoint::Tags),
        [.., "manifests", reference] if n > 2 => (
            n - 2,
            Endpoint::Manifest {
                reference: (*reference).to_string(),
            },
        ),
        [.., "referrers", digest] if n > 2 => (
            n - 2,
            Endpoint::Referrers {
                digest: (*digest).to_string(),
            },
        ),
        [.., "blobs", "uploads", ""] if n > 3 => (n - 3, Endpoint::UploadStart),
        [.., "blobs", "uploads"] if n > 2 => (n - 2, Endpoint::UploadStart),
        [.., "blobs", digest] if n > 2 && digest.contains(':') => (
            n - 2,
            Endpoint::Blob {
                digest: (*digest).to_string(),
            },
        ),
        [.., "blobs", "uploads", id] if n > 3 => (
            n - 3,
            Endpoint::Upload {
                id: (*id).to_string(),
            },
        ),
        [.., "blobs", digest] if n > 2 => (
            n - 2,
            Endpoint::Blob {
                digest: (*digest).to_string(),
            },
        ),
        _ => return Err(not_found(path)),
    };
    let name = segments[..name_len].join("/");
    let repository: RepositoryName = name.parse()?;
    let action = match (&endpoint, method.as_str()) {
        (_, "DELETE") => Action::Delete,
        (Endpoint::UploadStart | Endpoint::Upload { .. }, _) => Action::Push,
        (Endpoint::Manifest { .. }, "PUT") => Action::Push,
        _ => Action::Pull,
    };
    // Cancelling an upload is part of pushing, not deleting content.
    let action = match (&endpoint, action) {
        (Endpoint::Upload { .. }, Action::Delete) => Action::Push,
        (_, a) => a,
    };
    Ok(Route {
        repository: Some(repository),
        endpoint,
        action,
    })
}

fn not_found(path: &str) -> ApiError {
    ApiError::new(
        ErrorCode::NameUnknown,
        format!(
            "'{}' is not a distribution API path",
            path.chars().take(200).collect::<String>()
        ),
    )
    .with_status(http::StatusCode::NOT_FOUND)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(path: &str) -> Route {
        parse(&Method::GET, path).expect(path)
    }

    #[test]
    fn parses_every_endpoint() {
        assert_eq!(p("/v2/").endpoint, Endpoint::Base);
        assert_eq!(p("/v2").endpoint, Endpoint::Base);
        assert_eq!(p("/v2/_catalog").endpoint, Endpoint::Catalog);
        let r = p("/v2/a/b/manifests/latest");
        assert_eq!(r.repository.expect("repo").as_str(), "a/b");
        assert_eq!(
            r.endpoint,
            Endpoint::Manifest {
                reference: "latest".into()
            }
        );
        // Names may contain the route keywords as components.
        let r = p("/v2/x/manifests/manifests/v1");
        assert_eq!(r.repository.expect("repo").as_str(), "x/manifests");
        let r = p("/v2/x/blobs/uploads/");
        assert_eq!(r.endpoint, Endpoint::UploadStart);
        assert_eq!(r.action, Action::Push);
        let r = p("/v2/x/blobs/uploads/abc");
        assert_eq!(r.endpoint, Endpoint::Upload { id: "abc".into() });
        let r = p("/v2/x/blobs/uploads/blobs/sha256:aa");
        assert_eq!(r.repository.expect("repo").as_str(), "x/blobs/uploads");
        assert_eq!(
            r.endpoint,
            Endpoint::Blob {
                digest: "sha256:aa".into()
            }
        );
        assert_eq!(p("/v2/x/tags/list").endpoint, Endpoint::Tags);
        assert_eq!(
            p("/v2/x/referrers/sha256:aa").endpoint,
            Endpoint::Referrers {
                digest: "sha256:aa".into()
            }
        );
        let d = parse(&Method::DELETE, "/v2/x/manifests/v1").expect("delete");
        assert_eq!(d.action, Action::Delete);
    }

    #[test]
    fn rejects_bad_names_and_paths() {
        for bad in [
            "/v2/../etc/manifests/x",
            "/v2/%2e%2e/manifests/x",
            "/v2/UP/manifests/x",
            "/v2/a//b/manifests/x",
            "/v2/manifests/x",
            "/v2/a/unknown",
            "/v3/a/manifests/x",
        ] {
            assert!(parse(&Method::GET, bad).is_err(), "{bad} accepted");
        }
        let e = parse(&Method::GET, "/v2/UP/manifests/x").expect_err("upper");
        assert_eq!(e.code, ErrorCode::NameInvalid);
    }
}
