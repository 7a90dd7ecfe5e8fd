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

/// The session cookie's name.
pub const COOKIE: &str = "berth_session";

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
}

impl Session {
    pub fn new(identity: &str, now: i64) -> Session {
        let random: [u8; 16] = rand_bytes();
        Session {
            identity: identity.to_string(),
            id: hex::encode(random),
            signed_in: now,
            last_seen: now,
        }
    }
}

fn rand_bytes<const N: usize>() -> [u8; N] {
    use ring::rand::SecureRandom as _;
    let mut bytes = [0u8; N];
    // The system's random source failing is not something a page can
    // recover from; an all-zero id would still be unguessable only with
    // the key, which is why the MAC, not the id, protects the session.
    let _ = ring::rand::SystemRandom::new().fill(&mut bytes);
    bytes
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
        if now - session.last_seen > lifetimes.idle.as_secs() as i64 {
            return Err(SessionError::Idle(lifetimes.idle.as_secs()));
        }
        if now - session.signed_in > lifetimes.longest.as_secs() as i64 {
            return Err(SessionError::Expired(lifetimes.longest.as_secs()));
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
        let session = Session::new("identity-1", 1_000);
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
        let cookie = key.seal(&Session::new("reader", 1_000));
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
        let mut session = Session::new("id", 1_000);
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
    fn the_csrf_token_belongs_to_one_session() {
        let key = SessionKey::new(b"k");
        let a = Session::new("id", 1);
        let b = Session::new("id", 1);
        let token = key.csrf(&a);
        assert!(key.csrf_matches(&a, &token));
        assert!(!key.csrf_matches(&b, &token));
        assert!(!key.csrf_matches(&a, ""));
        assert!(!key.csrf_matches(&a, "not hex"));
    }
}
