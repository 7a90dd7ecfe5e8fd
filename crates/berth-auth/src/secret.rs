//! Secrets: generated random, stored as argon2id hashes, verified in
//! constant time (argon2's comparison), off the async threads.

use std::sync::{Mutex, OnceLock};

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use base64::Engine;
use rand::RngCore;
use tokio::sync::{mpsc, oneshot};

use crate::AuthError;

/// argon2id with 7 MiB and 5 passes (one of OWASP's recommended settings):
/// the memory is what each concurrent verification costs the server.
fn argon2() -> Argon2<'static> {
    let params = Params::new(7 * 1024, 5, 1, None).unwrap_or_default();
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
}

/// Threads that run argon2. Two, and always the same two: bounds the CPU a
/// burst of logins can take, and the memory — each verification needs
/// 7 MiB, and the allocator keeps what a thread used for that thread.
const HASH_THREADS: usize = 2;

type Job = Box<dyn FnOnce() + Send>;

fn hash_pool() -> &'static mpsc::UnboundedSender<Job> {
    static POOL: OnceLock<mpsc::UnboundedSender<Job>> = OnceLock::new();
    POOL.get_or_init(|| {
        let (tx, rx) = mpsc::unbounded_channel::<Job>();
        let rx = std::sync::Arc::new(Mutex::new(rx));
        for n in 0..HASH_THREADS {
            let rx = rx.clone();
            let _ = std::thread::Builder::new()
                .name(format!("berth-argon2-{n}"))
                .spawn(move || loop {
                    let job = rx.lock().unwrap_or_else(|p| p.into_inner()).blocking_recv();
                    match job {
                        Some(job) => job(),
                        None => return,
                    }
                });
        }
        tx
    })
}

/// Runs `work` on the argon2 threads and waits for its result.
async fn on_hash_thread<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, AuthError> + Send + 'static,
) -> Result<T, AuthError> {
    let (tx, rx) = oneshot::channel();
    hash_pool()
        .send(Box::new(move || {
            let _ = tx.send(work());
        }))
        .map_err(|_| AuthError::Internal("the hashing threads stopped".into()))?;
    rx.await
        .map_err(|_| AuthError::Internal("a hashing job was dropped".into()))?
}

/// A new random secret: 32 bytes, URL-safe base64 (43 characters).
pub fn generate() -> String {
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// argon2id hash (PHC string) of a secret.
pub async fn hash(secret: String) -> Result<String, AuthError> {
    on_hash_thread(move || {
        let salt = SaltString::generate(&mut rand::rngs::OsRng);
        argon2()
            .hash_password(secret.as_bytes(), &salt)
            .map(|h| h.to_string())
            .map_err(|e| AuthError::Internal(format!("hashing a secret failed: {e}")))
    })
    .await
}

/// Whether `secret` matches the PHC string `hash`.
pub async fn verify(secret: String, hash: String) -> Result<bool, AuthError> {
    on_hash_thread(move || {
        let parsed = PasswordHash::new(&hash)
            .map_err(|e| AuthError::Internal(format!("stored hash is unreadable: {e}")))?;
        // The parameters come from the stored hash itself.
        Ok(Argon2::default()
            .verify_password(secret.as_bytes(), &parsed)
            .is_ok())
    })
    .await
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
