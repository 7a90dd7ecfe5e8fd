//! Portal sessions: a signed cookie, so that every node of a scale-out
//! registry accepts it (the key is a shared setting) and nothing is stored
//! per session.
//!
//! The cookie names the identity, a random session id and two times: when
//! the session began and when it was last used. A session ends after
//! [`Lifetimes::idle`] without a request, or [`Lifetimes::longest`] after
//! sign-in whatever the use. The identity is looked up again on every
//! request, so deleting or disabling it, or taking a role away, counts at
//! once. The CSRF token of every form is a MAC of the session id, so it
//! cannot be made without the key and changes with every sign-in.

use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use ring::hmac;
use serde::{Deserialize, Serialize};

/// The session cookie's name over plain HTTP.
pub const COOKIE: &str = "berth_session";
/// Its name over HTTPS: browsers accept a `__Host-` cookie only when it is
/// `Secure`, has `Path=/` and no `Domain`, so a neighbouring subdomain
/// cannot plant one.
pub const SECURE_COOKIE: &str = "__Host-berth_session";

/// How far a node's clock may run ahead of the one that signed a cookie.
const CLOCK_SKEW: i64 = 60;

/// How long a session lasts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lifetimes {
    /// Without a request for this long, the session ends.
    pub idle: Duration,
    /// After this long since sign-in, the session ends anyway.
    pub longest: Duration,
}

impl Default for Lifetimes {
    fn default() -> Self {
        Lifetimes {
            idle: Duration::from_secs(30 * 60),
            longest: Duration::from_secs(12 * 3600),
        }
    }
}

/// One signed-in browser.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Session {
    /// The identity's id.
    #[serde(rename = "i")]
    pub identity: String,
    /// Random, per sign-in.
    #[serde(rename = "s")]
    pub id: String,
    /// Unix seconds of the sign-in.
    #[serde(rename = "t")]
    pub signed_in: i64,
    /// Unix seconds of the latest request.
    #[serde(rename = "l")]
    pub last_seen: i64,
    /// Unix seconds after which the session ends whatever else: the end
    /// of the credential it was opened with, when that comes sooner.
    #[serde(rename = "u", default, skip_serializing_if = "Option::is_none")]
    pub until: Option<i64>,
}

/// The system's random source failed: no session can be opened.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the system's random source failed")]
pub struct NoRandomness;

impl Session {
    pub fn new(identity: &str, now: i64, until: Option<i64>) -> Result<Session, NoRandomness> {
        use ring::rand::SecureRandom as _;
        let mut random = [0u8; 16];
        ring::rand::SystemRandom::new()
            .fill(&mut random)
            .map_err(|_| NoRandomness)?;
        Ok(Session {
            identity: identity.to_string(),
            id: hex::encode(random),
            signed_in: now,
            last_seen: now,
            until,
        })
    }
}

/// Why a cookie does not open a session.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SessionError {
    #[error("the session cookie is malformed")]
    Malformed,
    #[error("the session cookie's signature does not match")]
    BadSignature,
    #[error("the session was idle for longer than {0} seconds")]
    Idle(u64),
    #[error("the session began more than {0} seconds ago")]
    Expired(u64),
    #[error("the credential the session was opened with has expired")]
    CredentialExpired,
    #[error("the session's times lie in the future")]
    FromTheFuture,
}

/// Signs and checks session cookies and CSRF tokens.
pub struct SessionKey(hmac::Key);

impl SessionKey {
    pub fn new(secret: &[u8]) -> SessionKey {
        SessionKey(hmac::Key::new(hmac::HMAC_SHA256, secret))
    }

    /// The cookie value for `session`.
    pub fn seal(&self, session: &Session) -> String {
        // Serialising a struct of strings and integers cannot fail.
        let payload = serde_json::to_vec(session).unwrap_or_default();
        let tag = hmac::sign(&self.0, &payload);
        format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(&payload),
            URL_SAFE_NO_PAD.encode(tag.as_ref())
        )
    }

    /// The session a cookie value carries, if it is signed by this key
    /// and still alive at `now`.
    pub fn open(
        &self,
        value: &str,
        now: i64,
        lifetimes: Lifetimes,
    ) -> Result<Session, SessionError> {
        let (payload, tag) = value.split_once('.').ok_or(SessionError::Malformed)?;
        let payload = URL_SAFE_NO_PAD
            .decode(payload)
            .map_err(|_| SessionError::Malformed)?;
        let tag = URL_SAFE_NO_PAD
            .decode(tag)
            .map_err(|_| SessionError::Malformed)?;
        hmac::verify(&self.0, &payload, &tag).map_err(|_| SessionError::BadSignature)?;
        let session: Session =
            serde_json::from_slice(&payload).map_err(|_| SessionError::Malformed)?;
        let seconds = |d: Duration| i64::try_from(d.as_secs()).unwrap_or(i64::MAX);
        if session.signed_in > now + CLOCK_SKEW || session.last_seen > now + CLOCK_SKEW {
            return Err(SessionError::FromTheFuture);
        }
        if now.saturating_sub(session.last_seen) > seconds(lifetimes.idle) {
            return Err(SessionError::Idle(lifetimes.idle.as_secs()));
        }
        if now.saturating_sub(session.signed_in) > seconds(lifetimes.longest) {
            return Err(SessionError::Expired(lifetimes.longest.as_secs()));
        }
        if session.until.is_some_and(|until| now > until) {
            return Err(SessionError::CredentialExpired);
        }
        Ok(session)
    }

    /// The CSRF token of every form shown in `session`.
    pub fn csrf(&self, session: &Session) -> String {
        hex::encode(hmac::sign(&self.0, format!("csrf\0{}", session.id).as_bytes()).as_ref())
    }

    /// Whether `token` is `session`'s CSRF token (compared in constant time).
    pub fn csrf_matches(&self, session: &Session, token: &str) -> bool {
        let Ok(tag) = hex::decode(token) else {
            return false;
        };
        hmac::verify(&self.0, format!("csrf\0{}", session.id).as_bytes(), &tag).is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIFETIMES: Lifetimes = Lifetimes {
        idle: Duration::from_secs(600),
        longest: Duration::from_secs(3600),
    };

    #[test]
    fn a_sealed_session_opens_with_the_same_key_only() {
        let key = SessionKey::new(b"one key");
        let session = Session::new("identity-1", 1_000, None).expect("random");
        let cookie = key.seal(&session);
        assert_eq!(key.open(&cookie, 1_000, LIFETIMES), Ok(session));
        let other = SessionKey::new(b"another key");
        assert_eq!(
            other.open(&cookie, 1_000, LIFETIMES),
            Err(SessionError::BadSignature)
        );
    }

    #[test]
    fn a_changed_identity_is_refused() {
        let key = SessionKey::new(b"k");
        let cookie = key.seal(&Session::new("reader", 1_000, None).expect("random"));
        let (payload, tag) = cookie.split_once('.').expect("payload.tag");
        let mut json = URL_SAFE_NO_PAD.decode(payload).expect("base64");
        let text = String::from_utf8(json.clone())
            .expect("utf-8")
            .replace("reader", "owner!");
        json = text.into_bytes();
        let forged = format!("{}.{tag}", URL_SAFE_NO_PAD.encode(json));
        assert_eq!(
            key.open(&forged, 1_000, LIFETIMES),
            Err(SessionError::BadSignature)
        );
        assert_eq!(
            key.open("garbage", 1_000, LIFETIMES),
            Err(SessionError::Malformed)
        );
    }

    #[test]
    fn an_idle_session_ends_and_a_used_one_lasts_until_its_longest() {
        let key = SessionKey::new(b"k");
        let mut session = Session::new("id", 1_000, None).expect("random");
        let cookie = key.seal(&session);
        assert!(key.open(&cookie, 1_600, LIFETIMES).is_ok());
        assert_eq!(
            key.open(&cookie, 1_601, LIFETIMES),
            Err(SessionError::Idle(600))
        );
        // Used every 500 s: alive until an hour after sign-in.
        for now in (1_500..=4_500).step_by(500) {
            session = key
                .open(&key.seal(&session), now, LIFETIMES)
                .expect("alive");
            session.last_seen = now;
        }
        assert_eq!(
            key.open(&key.seal(&session), 4_700, LIFETIMES),
            Err(SessionError::Expired(3600))
        );
    }

    #[test]
    fn a_session_ends_with_its_credential_and_never_starts_in_the_future() {
        let key = SessionKey::new(b"k");
        let session = Session::new("id", 1_000, Some(1_100)).expect("random");
        let cookie = key.seal(&session);
        assert!(key.open(&cookie, 1_100, LIFETIMES).is_ok());
        assert_eq!(
            key.open(&cookie, 1_101, LIFETIMES),
            Err(SessionError::CredentialExpired)
        );
        // Signed by a node whose clock ran far ahead: refused, not stretched.
        assert_eq!(
            key.open(&cookie, 1_000 - 61, LIFETIMES),
            Err(SessionError::FromTheFuture)
        );
        assert!(key.open(&cookie, 1_000 - 60, LIFETIMES).is_ok());
        let huge = Lifetimes {
            idle: Duration::from_secs(u64::MAX),
            longest: Duration::from_secs(u64::MAX),
        };
        assert!(key
            .open(
                &key.seal(&Session::new("id", 0, None).expect("random")),
                i64::MAX / 2,
                huge
            )
            .is_ok());
    }

    #[test]
    fn the_csrf_token_belongs_to_one_session() {
        let key = SessionKey::new(b"k");
        let a = Session::new("id", 1, None).expect("random");
        let b = Session::new("id", 1, None).expect("random");
        let token = key.csrf(&a);
        assert!(key.csrf_matches(&a, &token));
        assert!(!key.csrf_matches(&b, &token));
        assert!(!key.csrf_matches(&a, ""));
        assert!(!key.csrf_matches(&a, "not hex"));
    }
}
