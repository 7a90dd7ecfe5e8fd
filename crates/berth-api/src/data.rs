//! Dedicated data endpoints. When `dataEndpointEnabled`,
//! a blob GET on the login server is answered with `307` to the data host
//! (`<registry>.<region>.data.<domain>`, from configuration) with a URL
//! signed for one repository, digest and identity, valid for a few minutes.
//! The data host is served by this same process, chosen by the `Host`
//! header, behind the same network rules; the signature replaces
//! authentication there.

use std::time::Duration;

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use berth_types::{Digest, ErrorCode, RepositoryName};
use http::{header, HeaderMap, Method, StatusCode};
use ring::hmac;

use crate::error::ApiError;
use crate::AppState;

/// Signing of data-endpoint URLs, and the hosts they point at.
pub struct DataEndpoints {
    /// `host[:port]` names, lowercase; the first is where redirects go.
    pub hosts: Vec<String>,
    key: hmac::Key,
    pub ttl: Duration,
}

impl DataEndpoints {
    pub fn new(hosts: Vec<String>, secret: &[u8], ttl: Duration) -> Self {
        DataEndpoints {
            hosts: hosts.into_iter().map(|h| h.to_ascii_lowercase()).collect(),
            key: hmac::Key::new(hmac::HMAC_SHA256, secret),
            ttl,
        }
    }

    fn message(repo: &str, digest: &str, identity: &str, exp: i64) -> String {
        format!("{repo}\n{digest}\n{identity}\n{exp}")
    }

    /// The signed path and query for a blob on the data host.
    pub fn signed_path(&self, repo: &RepositoryName, digest: &Digest, identity: &str) -> String {
        let exp = berth_util::now() + self.ttl.as_secs() as i64;
        let sig = hmac::sign(
            &self.key,
            Self::message(repo.as_str(), &digest.to_string(), identity, exp).as_bytes(),
        );
        format!(
            "/data/{repo}/blobs/{digest}?id={}&exp={exp}&sig={}",
            berth_util::percent::encode_component(identity),
            hex::encode(sig.as_ref())
        )
    }

    fn verify(
        &self,
        repo: &str,
        digest: &str,
        identity: &str,
        exp: i64,
        sig: &str,
    ) -> Result<(), String> {
        let Ok(bytes) = hex::decode(sig) else {
            return Err("the signature is malformed".into());
        };
        hmac::verify(
            &self.key,
            Self::message(repo, digest, identity, exp).as_bytes(),
            &bytes,
        )
        .map_err(|_| {
            "the signature does not match (the URL was altered or signed by another registry)"
                .to_string()
        })?;
        if exp < berth_util::now() {
            return Err(
                "the signed URL has expired; request the blob from the login server again".into(),
            );
        }
        Ok(())
    }

    pub fn is_data_host(&self, headers: &HeaderMap) -> bool {
        let Some(host) = headers.get(header::HOST).and_then(|h| h.to_str().ok()) else {
            return false;
        };
        let host = host.to_ascii_lowercase();
        self.hosts.contains(&host)
    }
}

/// The redirect for a blob GET on the login server, when data endpoints are
/// on; `None` means serve it here.
pub fn redirect(
    state: &AppState,
    method: &Method,
    headers: &HeaderMap,
    repo: &RepositoryName,
    digest: &Digest,
    identity: &str,
) -> Option<Response> {
    let data = &state.data;
    if method != Method::GET
        || data.hosts.is_empty()
        || !state.network.settings().data_endpoint_enabled
        || data.is_data_host(headers)
    {
        return None;
    }
    let location = format!(
        "{}://{}{}",
        crate::scheme(),
        data.hosts[0],
        data.signed_path(repo, digest, identity)
    );
    Some(temporary_redirect(&location))
}

/// `307` to `location`: a data host, or a presigned storage URL.
pub(crate) fn temporary_redirect(location: &str) -> Response {
    let mut response = StatusCode::TEMPORARY_REDIRECT.into_response();
    if let Ok(v) = http::HeaderValue::from_str(location) {
        response.headers_mut().insert(header::LOCATION, v);
    }
    response
}

/// Requests addressed to a data host: only signed blob downloads.
pub async fn serve(State(state): State<AppState>, request: Request, next: Next) -> Response {
    if !state.data.is_data_host(request.headers()) {
        return next.run(request).await;
    }
    let (parts, _body) = request.into_parts();
    match data_request(&state, &parts).await {
        Ok(r) => r,
        Err(e) => e.into_response(),
    }
}

async fn data_request(
    state: &AppState,
    request: &http::request::Parts,
) -> Result<Response, ApiError> {
    let denied = |m: String| ApiError::new(ErrorCode::Denied, m);
    let path = request.uri.path();
    let rest = path.strip_prefix("/data/").ok_or_else(|| {
        ApiError::new(
            ErrorCode::NameUnknown,
            "this is a data endpoint: only signed blob URLs are served here",
        )
        .with_status(StatusCode::NOT_FOUND)
    })?;
    let (repo, digest) = rest
        .rsplit_once("/blobs/")
        .ok_or_else(|| denied("malformed data URL".into()))?;
    let repo: RepositoryName = repo.parse()?;
    let digest: Digest = digest.parse().map_err(|e: berth_types::DigestError| {
        ApiError::new(ErrorCode::DigestInvalid, e.to_string())
    })?;
    let params: Vec<(String, String)> =
        serde_urlencoded::from_str(request.uri.query().unwrap_or("")).unwrap_or_default();
    let get = |k: &str| {
        params
            .iter()
            .find(|(key, _)| key == k)
            .map(|(_, v)| v.as_str())
    };
    let (Some(id), Some(exp), Some(sig)) = (get("id"), get("exp"), get("sig")) else {
        return Err(denied(
            "the data URL is not signed (id, exp and sig are required)".into(),
        ));
    };
    let exp: i64 = exp
        .parse()
        .map_err(|_| denied("the data URL's expiry is malformed".into()))?;
    state
        .data
        .verify(repo.as_str(), &digest.to_string(), id, exp, sig)
        .map_err(denied)?;
    crate::distribution::serve_blob(
        &state.registry,
        &repo,
        &digest,
        &request.method,
        &request.headers,
    )
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_bind_repository_digest_identity_and_expiry() {
        let d = DataEndpoints::new(
            vec!["Data.Example:5000".into()],
            b"k",
            Duration::from_secs(60),
        );
        let repo: RepositoryName = "app".parse().expect("repo");
        let digest = Digest::sha256_of(b"x");
        let path = d.signed_path(&repo, &digest, "owner 'owner'");
        let query: Vec<(String, String)> =
            serde_urlencoded::from_str(path.split_once('?').expect("query").1).expect("parse");
        let get = |k: &str| {
            query
                .iter()
                .find(|(key, _)| key == k)
                .map(|(_, v)| v.clone())
                .expect(k)
        };
        let exp: i64 = get("exp").parse().expect("exp");
        assert!(d
            .verify("app", &digest.to_string(), &get("id"), exp, &get("sig"))
            .is_ok());
        assert!(d
            .verify("other", &digest.to_string(), &get("id"), exp, &get("sig"))
            .is_err());
        assert!(d
            .verify("app", &digest.to_string(), "someone", exp, &get("sig"))
            .is_err());
        assert!(d
            .verify("app", &digest.to_string(), &get("id"), exp + 1, &get("sig"))
            .is_err());
        let other = DataEndpoints::new(vec![], b"other", Duration::from_secs(60));
        assert!(other
            .verify("app", &digest.to_string(), &get("id"), exp, &get("sig"))
            .is_err());
        let mut headers = HeaderMap::new();
        headers.insert(header::HOST, "data.example:5000".parse().expect("host"));
        assert!(d.is_data_host(&headers));
    }
}
