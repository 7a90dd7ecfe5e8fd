//! Management-API steps: a contract request sent through the router as the
//! typed client sends it (query string for GET/DELETE, JSON body for
//! POST/PATCH, the path parameter in the path), the answer decoded as the
//! endpoint's response type.

use berth_manage::{path_of, Endpoint};

use super::{TestApp, TestResponse};

/// The raw answer to a contract request.
pub async fn call<E: Endpoint>(app: &TestApp, request: &E) -> TestResponse {
    let mut target = path_of(request);
    let fields = serde_json::to_value(request).expect("a contract request serializes");
    if E::VERB.fields_in_query() {
        let query = serde_urlencoded::to_string(request).expect("query");
        if !query.is_empty() {
            target = format!("{target}?{query}");
        }
        app.request(E::VERB.as_str(), &target).send().await
    } else {
        app.request(E::VERB.as_str(), &target)
            .json(&fields)
            .send()
            .await
    }
}

/// The answer to a contract request that must succeed with its declared
/// status, decoded as the endpoint's response type.
pub async fn send<E: Endpoint>(app: &TestApp, request: &E) -> E::Response {
    let resp = call(app, request).await;
    assert_eq!(
        resp.status(),
        E::STATUS,
        "{} {}: {}",
        E::VERB.as_str(),
        E::PATH,
        resp.text()
    );
    let body = if resp.body.is_empty() {
        b"null".to_vec()
    } else {
        resp.body.to_vec()
    };
    serde_json::from_slice(&body).unwrap_or_else(|e| {
        panic!(
            "{} {} answered outside its contract ({e}): {}",
            E::VERB.as_str(),
            E::PATH,
            resp.text()
        )
    })
}

/// The refusal of a contract request: its status and management code;
/// returns the message.
pub async fn refused<E: Endpoint>(app: &TestApp, request: &E, status: u16, code: &str) -> String {
    call(app, request).await.expect_error(E::PATH, status, code)
}
