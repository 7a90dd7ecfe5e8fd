//! Secrets: generated random, stored as argon2id hashes, verified in
//! constant time (argon2's comparison), off the async threads.

use std::sync::OnceLock;

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use base64::Engine;
use rand::RngCore;
use tokio::sync::Semaphore;

use crate::AuthError;

/// argon2id with 7 MiB and 5 passes (one of OWASP's recommended settings):
/// the memory is what each concurrent verification costs the server.
fn argon2() -> Argon2<'static> {
    let params = Params::new(7 * 1024, 5, 1, None).unwrap_or_default();
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
}

/// At most two hashes at once: bounds memory and keeps a burst of logins
/// from starving the rest of the server of CPU.
fn permits() -> &'static Semaphore {
    static PERMITS: OnceLock<Semaphore> = OnceLock::new();
    PERMITS.get_or_init(|| Semaphore::new(2))
}

/// A new random secret: 32 bytes, URL-safe base64 (43 characters).
pub fn generate() -> String {
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// argon2id hash (PHC string) of a secret.
pub async fn hash(secret: String) -> Result<String, AuthError> {
    let _permit = permits()
        .acquire()
        .await
        .map_err(|e| AuthError::Internal(e.to_string()))?;
    tokio::task::spawn_blocking(move || {
        let salt = SaltString::generate(&mut rand::rngs::OsRng);
        argon2()
            .hash_password(secret.as_bytes(), &salt)
            .map(|h| h.to_string())
            .map_err(|e| AuthError::Internal(format!("hashing a secret failed: {e}")))
    })
    .await
    .map_err(|e| AuthError::Internal(format!("hashing task failed: {e}")))?
}

/// Whether `secret` matches the PHC string `hash`.
pub async fn verify(secret: String, hash: String) -> Result<bool, AuthError> {
    let _permit = permits()
        .acquire()
        .await
        .map_err(|e| AuthError::Internal(e.to_string()))?;
    tokio::task::spawn_blocking(move || {
        let parsed = PasswordHash::new(&hash)
            .map_err(|e| AuthError::Internal(format!("stored hash is unreadable: {e}")))?;
        // The parameters come from the stored hash itself.
        Ok(Argon2::default()
            .verify_password(secret.as_bytes(), &parsed)
            .is_ok())
    })
    .await
    .map_err(|e| AuthError::Internal(format!("verification task failed: {e}")))?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn hashes_verify_and_differ() {
        let s = generate();
        assert_eq!(s.len(), 43);
        let h = hash(s.clone()).await.expect("hash");
        assert!(h.starts_with("$argon2id$"));
        assert!(!h.contains(&s));
        assert!(verify(s.clone(), h.clone()).await.expect("verify"));
        assert!(!verify(format!("{s}x"), h).await.expect("verify"));
        assert_ne!(generate(), generate());
    }
}
