//! Checks on responses: the expected status, and the distribution spec's
//! error envelope with a message written for people.

use reqwest::Response;
use serde_json::Value;

use super::api::header;

/// Checks the status, returning the response; on a mismatch the body is
/// part of the panic message.
pub async fn expect_status(resp: Response, status: u16) -> Response {
    if resp.status().as_u16() != status {
        let got = resp.status();
        let url = resp.url().clone();
        let headers = format!("{:?}", resp.headers());
        let body = resp.text().await.unwrap_or_default();
        panic!("{url}: expected {status}, got {got}\nheaders: {headers}\nbody: {body}");
    }
    resp
}

/// Asserts a spec error: the status, and a JSON envelope
/// `{"errors":[{"code":..,"message":..}]}` whose first error has `code` and
/// a human-readable message. Returns the message.
pub async fn expect_error(resp: Response, status: u16, code: &str) -> String {
    let url = resp.url().clone();
    let got = resp.status();
    let content_type = header(&resp, "content-type").unwrap_or_default();
    let body = resp.text().await.expect("error body");
    assert_eq!(
        got.as_u16(),
        status,
        "{url}: expected {status} {code}, got {got}: {body}"
    );
    check_envelope(url.as_ref(), &content_type, &body, code)
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
