//! Backend health for `/readyz`: one cheap probe of each backend (a
//! `SELECT 1`, a HEAD or stat), run together with a short timeout and
//! remembered for a second, so a load balancer polling many times a second
//! costs the backends one probe each.

use std::time::{Duration, Instant};

use berth_types::Backend;

use crate::Registry;

/// A probe that takes longer than this counts as a failure.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);
/// How long a result is reused.
const PROBE_TTL: Duration = Duration::from_secs(1);

/// One backend's state as last probed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackendStatus {
    pub backend: Backend,
    /// `None` when it answered; otherwise why not.
    pub error: Option<String>,
}

#[derive(Debug, Clone)]
pub struct Health {
    pub backends: Vec<BackendStatus>,
    pub checked_at: Instant,
}

impl Health {
    pub fn ready(&self) -> bool {
        self.backends.iter().all(|b| b.error.is_none())
    }
}

#[derive(Default)]
pub(crate) struct HealthCache {
    last: tokio::sync::Mutex<Option<Health>>,
}

impl Registry {
    /// Probes the metadata database and the blob store (or returns the
    /// result of a probe less than a second old).
    pub async fn health(&self) -> Health {
        // Held while probing: callers arriving meanwhile wait for this
        // probe's result instead of starting their own.
        let mut last = self.health.last.lock().await;
        if let Some(h) = last.as_ref() {
            if h.checked_at.elapsed() < PROBE_TTL {
                return h.clone();
            }
        }
        let metadata = async {
            match tokio::time::timeout(PROBE_TIMEOUT, self.metadata.ping()).await {
                Ok(Ok(())) => None,
                Ok(Err(e)) => Some(e.to_string()),
                Err(_) => Some(format!("no answer within {PROBE_TIMEOUT:?}")),
            }
        };
        let blobs = async {
            match tokio::time::timeout(PROBE_TIMEOUT, self.blobs.probe()).await {
                Ok(Ok(())) => None,
                Ok(Err(e)) => Some(e.to_string()),
                Err(_) => Some(format!("no answer within {PROBE_TIMEOUT:?}")),
            }
        };
        let (metadata, blobs) = tokio::join!(metadata, blobs);
        let health = Health {
            backends: vec![
                BackendStatus {
                    backend: Backend::Metadata,
                    error: metadata,
                },
                BackendStatus {
                    backend: Backend::Blobs,
                    error: blobs,
                },
            ],
            checked_at: Instant::now(),
        };
        for b in &health.backends {
            if let Some(e) = &b.error {
                tracing::warn!(backend = %b.backend, error = %e, "backend probe failed");
            }
        }
        *last = Some(health.clone());
        health
    }
}
