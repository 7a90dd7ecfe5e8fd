//! Requests to a [`TestApp`] and their collected responses.
//!
//! A request goes to the router with what berth's accept loop and hyper
//! would give it: the target exactly as written (no normalisation of `..`
//! or `%2e`, as on the wire), a `Host`, the peer address as
//! `ConnectInfo`, the endpoint extension, and a `Content-Length` for a
//! body as an HTTP client sends one (none for a [`TestRequest::chunked`]
//! body, which arrives in pieces of unknown total length).

use std::future::{Future, IntoFuture};
use std::net::SocketAddr;
use std::pin::Pin;

use axum::body::Body;
use axum::extract::ConnectInfo;
use berth_network::Endpoint;
use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode};
use http_body_util::BodyExt;
use serde_json::Value;
use tower::ServiceExt;

use super::app::{basic_authorization, TestApp, HOST};

/// Methods whose empty body an HTTP client still announces
/// (`Content-Length: 0`).
fn announces_empty_body(method: &Method) -> bool {
    matches!(method.as_str(), "POST" | "PUT" | "PATCH")
}

/// One request being put together; `.await` (or [`TestRequest::send`])
/// sends it.
pub struct TestRequest {
    app: TestApp,
    method: Method,
    target: String,
    headers: HeaderMap,
    body: RequestBody,
    peer: SocketAddr,
    endpoint: Endpoint,
}

enum RequestBody {
    None,
    Whole(Bytes),
    /// Streamed in pieces of this size, without a Content-Length.
    Chunked(Bytes, usize),
}

impl TestApp {
    /// A request with the target exactly as given (path and query).
    pub fn request(&self, method: &str, target: &str) -> TestRequest {
        let mut headers = HeaderMap::new();
        if let Some(authorization) = &self.authorization {
            headers.insert(
                http::header::AUTHORIZATION,
                HeaderValue::from_str(authorization).expect("authorization value"),
            );
        }
        TestRequest {
            app: self.clone(),
            method: Method::from_bytes(method.as_bytes()).expect("method"),
            target: target.to_string(),
            headers,
            body: RequestBody::None,
            peer: TestApp::default_peer(),
            endpoint: Endpoint::Public,
        }
    }

    /// A request as a raw HTTP/1.1 client would send it: the target as
    /// written, these headers, and the body with its Content-Length (on
    /// POST, PUT and PATCH even when empty).
    pub async fn raw(
        &self,
        method: &str,
        target: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> TestResponse {
        self.raw_framed(method, target, headers, body, false).await
    }

    /// [`TestApp::raw`], optionally with a chunked body.
    pub async fn raw_framed(
        &self,
        method: &str,
        target: &str,
        headers: &[(&str, &str)],
        body: &[u8],
        chunked: bool,
    ) -> TestResponse {
        let mut request = self.request(method, target);
        for (name, value) in headers {
            request = request.header(name, value);
        }
        if chunked {
            request = request.chunked(body.to_vec());
        } else if !body.is_empty() {
            request = request.body(body.to_vec());
        }
        request.await
    }

    pub fn get(&self, target: &str) -> TestRequest {
        self.request("GET", target)
    }

    pub fn head(&self, target: &str) -> TestRequest {
        self.request("HEAD", target)
    }

    pub fn put(&self, target: &str) -> TestRequest {
        self.request("PUT", target)
    }

    pub fn post(&self, target: &str) -> TestRequest {
        self.request("POST", target)
    }

    pub fn patch(&self, target: &str) -> TestRequest {
        self.request("PATCH", target)
    }

    pub fn delete(&self, target: &str) -> TestRequest {
        self.request("DELETE", target)
    }
}

impl TestRequest {
    /// Sets a header (replacing one of the same name).
    pub fn header(mut self, name: &str, value: impl AsRef<str>) -> Self {
        self.headers.insert(
            HeaderName::from_bytes(name.as_bytes()).expect("header name"),
            HeaderValue::from_str(value.as_ref()).expect("header value"),
        );
        self
    }

    /// Basic credentials (replacing the app's default).
    pub fn basic(self, user: &str, password: &str) -> Self {
        self.header("authorization", basic_authorization(user, password))
    }

    pub fn bearer(self, token: &str) -> Self {
        self.header("authorization", format!("Bearer {token}"))
    }

    /// Sends no `Authorization`, whatever the app's default.
    pub fn without_credentials(mut self) -> Self {
        self.headers.remove(http::header::AUTHORIZATION);
        self
    }

    /// The whole body, with its `Content-Length`.
    pub fn body(mut self, body: impl Into<Bytes>) -> Self {
        self.body = RequestBody::Whole(body.into());
        self
    }

    /// A JSON body with its Content-Type.
    pub fn json(self, value: &Value) -> Self {
        self.header("content-type", "application/json")
            .body(serde_json::to_vec(value).expect("JSON body"))
    }

    /// The body in 64 KiB pieces without a `Content-Length`, as a chunked
    /// transfer delivers it.
    pub fn chunked(mut self, body: impl Into<Bytes>) -> Self {
        self.body = RequestBody::Chunked(body.into(), 64 * 1024);
        self
    }

    /// The client's socket address (`"127.0.0.2"` or `"127.0.0.2:1234"`).
    pub fn from(mut self, peer: &str) -> Self {
        self.peer = peer
            .parse()
            .or_else(|_| {
                peer.parse::<std::net::IpAddr>()
                    .map(|ip| SocketAddr::new(ip, 40000))
            })
            .expect("peer address");
        self
    }

    /// The listener the request arrives on (public unless said).
    pub fn on_endpoint(mut self, endpoint: Endpoint) -> Self {
        self.endpoint = endpoint;
        self
    }

    pub async fn send(self) -> TestResponse {
        let (response, body) = self.send_streaming().await;
        let what = response.what.clone();
        let body = body.unwrap_or_else(|e| panic!("{what}: response body failed: {e}"));
        TestResponse { body, ..response }
    }

    /// Sends the request; the body is whatever arrived before it ended,
    /// or the error that cut it off (the response's own `body` is empty).
    pub async fn send_streaming(self) -> (TestResponse, Result<Bytes, String>) {
        let what = format!("{} {}", self.method, self.target);
        let mut builder = http::Request::builder()
            .method(self.method.clone())
            .uri(&self.target);
        let mut headers = self.headers;
        if !headers.contains_key(http::header::HOST) {
            headers.insert(http::header::HOST, HeaderValue::from_static(HOST));
        }
        let body = match self.body {
            RequestBody::None => {
                if announces_empty_body(&self.method) {
                    headers.insert(http::header::CONTENT_LENGTH, HeaderValue::from(0));
                }
                Body::empty()
            }
            RequestBody::Whole(bytes) => {
                headers.insert(http::header::CONTENT_LENGTH, HeaderValue::from(bytes.len()));
                Body::from(bytes)
            }
            RequestBody::Chunked(bytes, piece) => {
                headers.insert(
                    http::header::TRANSFER_ENCODING,
                    HeaderValue::from_static("chunked"),
                );
                let pieces: Vec<Result<Bytes, std::io::Error>> = (0..bytes.len())
                    .step_by(piece)
                    .map(|start| Ok(bytes.slice(start..(start + piece).min(bytes.len()))))
                    .collect();
                Body::from_stream(futures::stream::iter(pieces))
            }
        };
        if let Some(h) = builder.headers_mut() {
            *h = headers;
        }
        let mut request = builder
            .body(body)
            .unwrap_or_else(|e| panic!("{what}: cannot build the request: {e}"));
        // What berth's accept loop and listener layer add.
        request.extensions_mut().insert(ConnectInfo(self.peer));
        request.extensions_mut().insert(self.endpoint);
        let response = match self.app.shared.router.clone().oneshot(request).await {
            Ok(response) => response,
            Err(never) => match never {},
        };
        let (parts, body) = response.into_parts();
        let body = body
            .collect()
            .await
            .map(|b| b.to_bytes())
            .map_err(|e| e.to_string());
        (
            TestResponse {
                what,
                status: parts.status,
                headers: parts.headers,
                body: Bytes::new(),
            },
            body,
        )
    }
}

impl IntoFuture for TestRequest {
    type Output = TestResponse;
    type IntoFuture = Pin<Box<dyn Future<Output = TestResponse> + Send>>;

    fn into_future(self) -> Self::IntoFuture {
        Box::pin(self.send())
    }
}

/// A response with its whole body.
#[derive(Debug, Clone)]
pub struct TestResponse {
    /// `METHOD target`, for messages.
    pub what: String,
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl TestResponse {
    pub fn status(&self) -> u16 {
        self.status.as_u16()
    }

    /// A header's value as a string (`None` if absent).
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers
            .get(name)
            .map(|v| v.to_str().expect("ASCII header").to_string())
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// Asserts status and the spec envelope (like [`expect_error`]),
    /// naming the request `what` in failures; returns the message.
    pub fn expect_error(self, what: &str, status: u16, code: &str) -> String {
        let body = self.text();
        assert_eq!(
            self.status(),
            status,
            "{what}: expected {status} {code}, got {}: {body}",
            self.status
        );
        check_envelope(
            what,
            &self.header("content-type").unwrap_or_default(),
            &body,
            code,
        )
    }

    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("{}: body is not JSON ({e}): {}", self.what, self.text()))
    }
}

/// A response header's value (`None` if absent).
pub fn header(resp: &TestResponse, name: &str) -> Option<String> {
    resp.header(name)
}

pub fn must_header(resp: &TestResponse, name: &str) -> String {
    resp.header(name).unwrap_or_else(|| {
        panic!(
            "{} -> {} lacks header {name}: {:?}",
            resp.what, resp.status, resp.headers
        )
    })
}

/// Checks the status, returning the response; on a mismatch the body is
/// part of the panic message.
pub fn expect_status(resp: TestResponse, status: u16) -> TestResponse {
    assert_eq!(
        resp.status(),
        status,
        "{}: expected {status}, got {}\nheaders: {:?}\nbody: {}",
        resp.what,
        resp.status,
        resp.headers,
        resp.text()
    );
    resp
}

/// Asserts a spec error: the status, and a JSON envelope
/// `{"errors":[{"code":..,"message":..,"detail":..}]}` whose first error
/// has `code` and a human-readable message. Returns the message.
pub fn expect_error(resp: TestResponse, status: u16, code: &str) -> String {
    let body = resp.text();
    assert_eq!(
        resp.status(),
        status,
        "{}: expected {status} {code}, got {}: {body}",
        resp.what,
        resp.status
    );
    check_envelope(
        &resp.what,
        &resp.header("content-type").unwrap_or_default(),
        &body,
        code,
    )
}

/// The envelope checks of [`expect_error`] on an already-read body.
pub fn check_envelope(what: &str, content_type: &str, body: &str, code: &str) -> String {
    assert!(
        content_type.starts_with("application/json"),
        "{what}: error Content-Type is {content_type:?}, body {body}"
    );
    let value: Value = serde_json::from_str(body)
        .unwrap_or_else(|e| panic!("{what}: error body is not JSON ({e}): {body}"));
    let errors = value["errors"]
        .as_array()
        .unwrap_or_else(|| panic!("{what}: no errors array: {body}"));
    assert!(!errors.is_empty(), "{what}: empty errors array: {body}");
    assert_eq!(
        errors[0]["code"].as_str(),
        Some(code),
        "{what}: wrong error code: {body}"
    );
    let message = errors[0]["message"]
        .as_str()
        .unwrap_or_else(|| panic!("{what}: message is not a string: {body}"))
        .to_string();
    assert_readable(what, &message, code);
    message
}

/// A message for people: a few words of text, not a code or a dump.
pub fn assert_readable(what: &str, message: &str, code: &str) {
    let m = message.trim();
    assert!(m.len() >= 10, "{what}: message too short: {message:?}");
    assert!(
        m.contains(' '),
        "{what}: message is not a sentence: {message:?}"
    );
    assert_ne!(m, code, "{what}: message only repeats the code");
    assert!(
        !m.starts_with('{') && !m.starts_with('['),
        "{what}: message looks like data: {message:?}"
    );
    assert!(
        m.chars().filter(|c| c.is_alphabetic()).count() >= 5,
        "{what}: message has no words: {message:?}"
    );
}

/// Appends `key=value` to a target that may already have a query.
pub fn with_query(target: &str, key: &str, value: &str) -> String {
    let sep = if target.contains('?') { '&' } else { '?' };
    format!("{target}{sep}{key}={value}")
}
