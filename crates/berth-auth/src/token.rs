//! Access and refresh tokens: ES256 JWTs signed with keys persisted in the
//! metadata store (so every node shares them). Verification is local: no
//! database round trip. The newest key signs; older keys keep verifying, so
//! rotation never invalidates a token before it expires.

use std::collections::HashMap;
use std::sync::RwLock;

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use ring::signature::{EcdsaKeyPair, KeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};
use serde::{Deserialize, Serialize};

use crate::AuthError;

pub const ISSUER: &str = "berth";

/// One entry of the Docker token spec's `access` claim.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccessEntry {
    #[serde(rename = "type")]
    pub kind: String,
    pub name: String,
    pub actions: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    pub iss: String,
    /// Identity id (empty for anonymous).
    pub sub: String,
    pub aud: String,
    pub exp: i64,
    pub nbf: i64,
    pub iat: i64,
    pub jti: String,
    /// "access" or "refresh".
    pub typ: String,
    /// The identity's login and kind, for messages and audit.
    pub login: String,
    #[serde(default)]
    pub name: String,
    pub kind: String,
    /// Marked as a trusted service (may pass network rules when bypass is on).
    #[serde(default)]
    pub trusted: bool,
    #[serde(default)]
    pub access: Vec<AccessEntry>,
    /// A token identity's scope map, for messages.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope_map: Option<String>,
    /// How the identity signed in, when federated (issuer and subject).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub via: Option<String>,
    /// Actions that were asked for and refused when the token was issued:
    /// a request needing one of them is denied (403), not re-challenged.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub denied: Vec<AccessEntry>,
}

struct Keys {
    signing_kid: String,
    signing: EncodingKey,
    verifying: HashMap<String, DecodingKey>,
}

pub struct KeyRing {
    keys: RwLock<Keys>,
}

/// A new P-256 key as PKCS#8 DER.
pub fn generate_key() -> Result<Vec<u8>, AuthError> {
    let rng = ring::rand::SystemRandom::new();
    EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
        .map(|d| d.as_ref().to_vec())
        .map_err(|_| AuthError::Internal("could not generate a signing key".into()))
}

fn decoding_key(pkcs8: &[u8]) -> Result<DecodingKey, AuthError> {
    let rng = ring::rand::SystemRandom::new();
    let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8, &rng)
        .map_err(|_| AuthError::Internal("a stored signing key is unreadable".into()))?;
    Ok(DecodingKey::from_ec_der(pair.public_key().as_ref()))
}

impl KeyRing {
    /// Builds the ring from `(kid, pkcs8)` pairs, oldest first; the last signs.
    pub fn new(keys: &[(String, Vec<u8>)]) -> Result<KeyRing, AuthError> {
        let (kid, pkcs8) = keys
            .last()
            .ok_or_else(|| AuthError::Internal("no signing key".into()))?;
        let mut verifying = HashMap::new();
        for (k, der) in keys {
            verifying.insert(k.clone(), decoding_key(der)?);
        }
        Ok(KeyRing {
            keys: RwLock::new(Keys {
                signing_kid: kid.clone(),
                signing: EncodingKey::from_ec_der(pkcs8),
                verifying,
            }),
        })
    }

    /// Makes `pkcs8` the signing key; previous keys keep verifying.
    pub fn rotate(&self, kid: String, pkcs8: &[u8]) -> Result<(), AuthError> {
        let verifier = decoding_key(pkcs8)?;
        let mut keys = self.keys.write().unwrap_or_else(|p| p.into_inner());
        keys.verifying.insert(kid.clone(), verifier);
        keys.signing = EncodingKey::from_ec_der(pkcs8);
        keys.signing_kid = kid;
        Ok(())
    }

    /// Key ids this ring verifies.
    pub fn kids(&self) -> Vec<String> {
        let keys = self.keys.read().unwrap_or_else(|p| p.into_inner());
        keys.verifying.keys().cloned().collect()
    }

    pub fn sign(&self, claims: &Claims) -> Result<String, AuthError> {
        let keys = self.keys.read().unwrap_or_else(|p| p.into_inner());
        let mut header = Header::new(Algorithm::ES256);
        header.kid = Some(keys.signing_kid.clone());
        jsonwebtoken::encode(&header, claims, &keys.signing)
            .map_err(|e| AuthError::Internal(format!("signing a token failed: {e}")))
    }

    /// Checks signature (ES256 only: `alg: none` and HMAC are refused),
    /// issuer, expiry and not-before.
    pub fn verify(&self, token: &str) -> Result<Claims, AuthError> {
        let header = jsonwebtoken::decode_header(token)
            .map_err(|e| AuthError::InvalidToken(format!("not a JWT: {e}")))?;
        if header.alg != Algorithm::ES256 {
            return Err(AuthError::InvalidToken(format!(
                "algorithm {:?} is not accepted (tokens are ES256)",
                header.alg
            )));
        }
        let kid = header
            .kid
            .ok_or_else(|| AuthError::InvalidToken("the token has no key id".into()))?;
        let keys = self.keys.read().unwrap_or_else(|p| p.into_inner());
        let key = keys.verifying.get(&kid).ok_or_else(|| {
            AuthError::InvalidToken(
                "the token was signed by a key this registry does not have".into(),
            )
        })?;
        let mut validation = Validation::new(Algorithm::ES256);
        validation.set_issuer(&[ISSUER]);
        validation.validate_aud = false;
        validation.validate_nbf = true;
        validation.leeway = 5;
        jsonwebtoken::decode::<Claims>(token, key, &validation)
            .map(|d| d.claims)
            .map_err(|e| match e.kind() {
                jsonwebtoken::errors::ErrorKind::ExpiredSignature => {
                    AuthError::InvalidToken("the token has expired; request a new one".into())
                }
                jsonwebtoken::errors::ErrorKind::InvalidSignature => AuthError::InvalidToken(
                    "the token's signature does not verify (signed by another key or altered)"
                        .into(),
                ),
                _ => AuthError::InvalidToken(format!("the token is invalid: {e}")),
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims(exp_in: i64) -> Claims {
        let now = berth_util::now();
        Claims {
            iss: ISSUER.into(),
            sub: "id".into(),
            aud: "svc".into(),
            exp: now + exp_in,
            nbf: now - 1,
            iat: now,
            jti: "j".into(),
            typ: "access".into(),
            login: "ci".into(),
            name: "ci".into(),
            kind: "sp".into(),
            trusted: false,
            access: vec![],
            scope_map: None,
            via: None,
            denied: vec![],
        }
    }

    #[test]
    fn signs_verifies_rotates_and_rejects() {
        let k1 = generate_key().expect("key");
        let ring = KeyRing::new(&[("k1".into(), k1)]).expect("ring");
        let old = ring.sign(&claims(300)).expect("sign");
        assert_eq!(ring.verify(&old).expect("verify").login, "ci");

        ring.rotate("k2".into(), &generate_key().expect("key"))
            .expect("rotate");
        let new = ring.sign(&claims(300)).expect("sign");
        assert!(
            ring.verify(&old).is_ok(),
            "old tokens stay valid after rotation"
        );
        assert!(ring.verify(&new).is_ok());

        let other = KeyRing::new(&[("k1".into(), generate_key().expect("key"))]).expect("ring");
        assert!(matches!(
            other.verify(&old),
            Err(AuthError::InvalidToken(_))
        ));
        let expired = ring.sign(&claims(-60)).expect("sign");
        assert!(ring.verify(&expired).is_err());

        // alg: none
        use base64::Engine;
        let b64 = |s: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s);
        let payload = serde_json::to_string(&claims(300)).expect("json");
        let none = format!(
            "{}.{}.",
            b64(r#"{"alg":"none","typ":"JWT"}"#),
            b64(&payload)
        );
        assert!(ring.verify(&none).is_err());
    }
}
