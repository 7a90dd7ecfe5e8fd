//! Federated credentials in process: a service principal trusts an
//! issuer's tokens for one subject and audience; such a token is exchanged
//! at `POST /oauth2/token` (RFC 8693) or given as the password of the user
//! `federated`, what is issued for it never outlives it, and every refusal
//! names its cause. The keys here are a JWKS stored with the credential
//! (ES256 keys the test generates); OIDC discovery over HTTPS, key rotation
//! and an unreachable issuer are in `tests/e2e/test_federation.py`.

mod support;

use base64::Engine as _;
use berth_manage::federation::*;
use berth_manage::identities::{CreateServicePrincipal, DeleteServicePrincipal};
use ring::signature::{EcdsaKeyPair, KeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};
use serde_json::{json, Value};
use support::manage::{refused, send};
use support::*;

const ISSUER: &str = "https://cluster.example/issuer";
const SUBJECT: &str = "system:serviceaccount:shop:puller";
const AUDIENCE: &str = "berth";
const TOKEN_EXCHANGE: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
const JWT_TYPE: &str = "urn:ietf:params:oauth:token-type:jwt";

fn b64(data: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(data)
}

/// An ES256 signing key and its public JWK.
struct Key {
    kid: String,
    pkcs8: Vec<u8>,
    jwk: Value,
}

impl Key {
    fn new(kid: &str) -> Key {
        let rng = ring::rand::SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
            .expect("P-256 key")
            .as_ref()
            .to_vec();
        let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &pkcs8, &rng)
            .expect("key pair");
        let public = pair.public_key().as_ref(); // 0x04 || x || y
        let jwk = json!({
            "kty": "EC", "crv": "P-256", "alg": "ES256", "use": "sig", "kid": kid,
            "x": b64(&public[1..33]), "y": b64(&public[33..65]),
        });
        Key {
            kid: kid.into(),
            pkcs8,
            jwk,
        }
    }

    /// A JWT with `claims`, signed by this key under `kid`.
    fn sign(&self, kid: &str, claims: &Value) -> String {
        let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES256);
        header.kid = Some(kid.into());
        jsonwebtoken::encode(
            &header,
            claims,
            &jsonwebtoken::EncodingKey::from_ec_der(&self.pkcs8),
        )
        .expect("sign")
    }

    fn token(&self, claims: &Value) -> String {
        self.sign(&self.kid, claims)
    }
}

fn jwks(keys: &[&Key]) -> String {
    json!({ "keys": keys.iter().map(|k| k.jwk.clone()).collect::<Vec<_>>() }).to_string()
}

/// A service-account token as a Kubernetes API server mints it.
fn claims(exp_in: i64) -> Value {
    let now = berth_util::now();
    json!({
        "iss": ISSUER, "sub": SUBJECT, "aud": [AUDIENCE],
        "exp": now + exp_in, "iat": now, "nbf": now,
        "kubernetes.io": {
            "namespace": "shop",
            "serviceaccount": {"name": "puller", "uid": "5f0e-sa"},
            "pod": {"name": "web-7d4b9", "uid": "9a1c-pod"},
        },
    })
}

fn payload(jwt: &str) -> Value {
    let part = jwt.split('.').nth(1).expect("a JWT");
    serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(part)
            .expect("base64url"),
    )
    .expect("JSON claims")
}

struct Setup {
    _dir: tempfile::TempDir,
    app: TestApp,
    owner: TestApp,
    key: Key,
    app_id: String,
}

/// A registry with `shop/web:v1`, a service principal (AcrPull when
/// `pull`) and a federated credential trusting `key` for SUBJECT.
async fn setup(prefix: &str, pull: bool) -> Setup {
    let dir = tempdir(prefix);
    // The refusal cases fail many logins for one subject on purpose.
    let mut settings = berth_api::app::AppSettings::default();
    settings.auth.throttle_limit = 1000;
    let app = TestApp::embedded_with(dir.path(), settings).await;
    let owner = app.as_owner();
    push_image(&owner, "shop/web", "v1", 1, 1000).await;
    let sp = send(
        &owner,
        &CreateServicePrincipal {
            name: "shop-puller".into(),
            role: pull.then(|| "AcrPull".to_string()),
            ..Default::default()
        },
    )
    .await;
    let key = Key::new("key-1");
    let created = send(
        &owner,
        &CreateFederatedCredential {
            id: sp.identity.id.clone(),
            name: "shop".into(),
            issuer: ISSUER.into(),
            subject: SUBJECT.into(),
            audience: AUDIENCE.into(),
            jwks: Some(jwks(&[&key])),
            ca_pem: None,
        },
    )
    .await;
    assert_eq!(created.key_source, KeySource::Jwks);
    assert_eq!(created.app_id, sp.identity.id);
    Setup {
        _dir: dir,
        app,
        owner,
        key,
        app_id: sp.identity.id,
    }
}

async fn exchange(app: &TestApp, token: &str) -> TestResponse {
    let form = serde_urlencoded::to_string([
        ("grant_type", TOKEN_EXCHANGE),
        ("subject_token_type", JWT_TYPE),
        ("subject_token", token),
        ("service", HOST),
        ("scope", "repository:shop/web:pull"),
    ])
    .expect("form");
    app.post("/oauth2/token")
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form)
        .await
}

#[tokio::test]
async fn a_federated_token_is_exchanged_and_nothing_issued_outlives_it() {
    let s = setup("berth-fed-exchange-", true).await;
    let subject_token = s.key.token(&claims(120));
    let subject_exp = payload(&subject_token)["exp"].as_i64().expect("exp");

    let answer = expect_status(exchange(&s.app, &subject_token).await, 200).json();
    assert_eq!(
        answer["issued_token_type"],
        "urn:ietf:params:oauth:token-type:access_token"
    );
    assert_eq!(answer["token_type"], "Bearer");
    let access = answer["access_token"].as_str().expect("access token");
    let refresh = answer["refresh_token"].as_str().expect("refresh token");
    assert!(answer["expires_in"].as_i64().expect("expires_in") <= 120);
    for token in [access, refresh] {
        let exp = payload(token)["exp"].as_i64().expect("exp");
        assert!(
            exp <= subject_exp,
            "issued until {exp}, past the subject token's {subject_exp}"
        );
    }
    // The access token pulls.
    let resp = s.app.get("/v2/shop/web/manifests/v1").bearer(access).await;
    expect_status(resp, 200);
    // The refresh token stands for the principal, and what it yields is
    // bounded by it too.
    let resp = s
        .app
        .get(&format!(
            "/oauth2/token?service={HOST}&scope=repository:shop/web:pull"
        ))
        .basic(berth_auth::REFRESH_TOKEN_USER, refresh)
        .await;
    let again = expect_status(resp, 200).json();
    let exp = payload(again["token"].as_str().expect("token"))["exp"]
        .as_i64()
        .expect("exp");
    assert!(exp <= subject_exp);

    // The same JWT as the password of `federated`: Basic straight on /v2/,
    // and grant_type=password.
    let resp = s
        .app
        .get("/v2/shop/web/manifests/v1")
        .basic("federated", &subject_token)
        .await;
    expect_status(resp, 200);
    let form = serde_urlencoded::to_string([
        ("grant_type", "password"),
        ("username", "federated"),
        ("password", subject_token.as_str()),
        ("service", HOST),
        ("scope", "repository:shop/web:pull"),
    ])
    .expect("form");
    let resp = s
        .app
        .post("/oauth2/token")
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form)
        .await;
    expect_status(resp, 200);
}

#[tokio::test]
async fn every_refusal_is_named() {
    let s = setup("berth-fed-refusals-", true).await;
    let other_key = Key::new("key-1");
    let now = berth_util::now();
    let with = |patch: Value| {
        let mut c = claims(300);
        if let (Value::Object(c), Value::Object(p)) = (&mut c, patch) {
            c.extend(p);
        }
        c
    };
    let cases: Vec<(&str, String, &str)> = vec![
        (
            "issuer not trusted",
            s.key
                .token(&with(json!({"iss": "https://elsewhere.example"}))),
            "issuer 'https://elsewhere.example' is not trusted",
        ),
        (
            "subject not federated",
            s.key
                .token(&with(json!({"sub": "system:serviceaccount:shop:other"}))),
            "subject 'system:serviceaccount:shop:other' is not federated",
        ),
        (
            "audience mismatch",
            s.key.token(&with(json!({"aud": ["kubernetes"]}))),
            "audience mismatch",
        ),
        (
            "expired",
            s.key.token(&with(
                json!({"exp": now - 3600, "iat": now - 7200, "nbf": now - 7200}),
            )),
            "expired at",
        ),
        (
            "not yet valid",
            s.key.token(&with(json!({"nbf": now + 3600}))),
            "not valid yet",
        ),
        (
            "unknown key",
            s.key.sign("key-9", &with(json!({}))),
            "signing key 'key-9' is not among",
        ),
        (
            "bad signature",
            // Signed with another key under the trusted key's kid.
            other_key.token(&with(json!({}))),
            "signature does not verify",
        ),
        ("not a JWT", "not-a-jwt".to_string(), "not a JWT"),
    ];
    for (what, token, words) in cases {
        let message = expect_error(exchange(&s.app, &token).await, 401, "UNAUTHORIZED");
        assert!(message.contains(words), "{what}: {message}");
        let message = expect_error(
            s.app
                .get("/v2/shop/web/manifests/v1")
                .basic("federated", &token)
                .await,
            401,
            "UNAUTHORIZED",
        );
        assert!(message.contains(words), "{what} (Basic): {message}");
    }
    // An unsupported subject token type is a bad request, not a login.
    let form = serde_urlencoded::to_string([
        ("grant_type", TOKEN_EXCHANGE),
        (
            "subject_token_type",
            "urn:ietf:params:oauth:token-type:saml2",
        ),
        ("subject_token", "x"),
    ])
    .expect("form");
    let resp = s
        .app
        .post("/oauth2/token")
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form)
        .await;
    expect_error(resp, 400, "UNSUPPORTED");

    // Once the principal is gone, so is its federated credential.
    send(
        &s.owner,
        &DeleteServicePrincipal {
            id: s.app_id.clone(),
        },
    )
    .await;
    let message = expect_error(
        exchange(&s.app, &s.key.token(&claims(300))).await,
        401,
        "UNAUTHORIZED",
    );
    assert!(message.contains("is not trusted"), "{message}");
}

#[tokio::test]
async fn roles_apply_to_a_federated_principal_as_to_any_other() {
    let s = setup("berth-fed-roles-", false).await;
    let answer = expect_status(exchange(&s.app, &s.key.token(&claims(300))).await, 200).json();
    let access = answer["access_token"].as_str().expect("access token");
    let message = expect_error(
        s.app.get("/v2/shop/web/manifests/v1").bearer(access).await,
        403,
        "DENIED",
    );
    assert!(message.contains("shop-puller"), "{message}");
    assert!(
        message.contains("via federated credential 'shop'") && message.contains(SUBJECT),
        "the denial names how it signed in: {message}"
    );
}

#[tokio::test]
async fn federated_credentials_are_managed_and_checked_on_the_way_in() {
    let s = setup("berth-fed-manage-", true).await;
    let listed = send(
        &s.owner,
        &ListFederatedCredentials {
            id: "shop-puller".into(),
        },
    )
    .await;
    assert_eq!(listed.len(), 1);
    assert_eq!(
        (listed[0].issuer.as_str(), listed[0].subject.as_str()),
        (ISSUER, SUBJECT)
    );
    let bad = |patch: fn(&mut CreateFederatedCredential)| {
        let mut r = CreateFederatedCredential {
            id: s.app_id.clone(),
            name: "second".into(),
            issuer: ISSUER.into(),
            subject: SUBJECT.into(),
            audience: AUDIENCE.into(),
            jwks: None,
            ca_pem: None,
        };
        patch(&mut r);
        r
    };
    for (request, words) in [
        (bad(|r| r.issuer = "not a url".into()), "issuer"),
        (
            bad(|r| r.issuer = "http://cluster.example".into()),
            "only fetched over https",
        ),
        (bad(|r| r.subject = String::new()), "subject"),
        (bad(|r| r.jwks = Some("{\"keys\": 1}".into())), "not a JWKS"),
        (bad(|r| r.name = "shop".into()), "already exists"),
    ] {
        let status = if words == "already exists" { 409 } else { 400 };
        let code = if status == 409 {
            "CONFLICT"
        } else {
            "VALIDATION"
        };
        let message = refused(&s.owner, &request, status, code).await;
        assert!(message.contains(words), "{message}");
    }
    send(
        &s.owner,
        &DeleteFederatedCredential {
            id: s.app_id.clone(),
            name: "shop".into(),
        },
    )
    .await;
    let message = expect_error(
        exchange(&s.app, &s.key.token(&claims(300))).await,
        401,
        "UNAUTHORIZED",
    );
    assert!(message.contains("is not trusted"), "{message}");
    refused(
        &s.owner,
        &DeleteFederatedCredential {
            id: s.app_id.clone(),
            name: "shop".into(),
        },
        404,
        "NOT_FOUND",
    )
    .await;
    // The activity log has both changes, without key material.
    let activity = send(&s.owner, &berth_manage::logs::ListActivity::default()).await;
    let text = serde_json::to_string(&activity).expect("json");
    assert!(text.contains("create federated credential"), "{text}");
    assert!(text.contains("delete federated credential"), "{text}");
    assert!(
        !text.contains(s.key.jwk["x"].as_str().expect("x")),
        "{text}"
    );
}
