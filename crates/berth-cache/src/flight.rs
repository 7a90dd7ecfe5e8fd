//! Single flight on one node: the first request for a key leads (fetches),
//! the others wait for it to finish and then read what it stored.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::watch;

#[derive(Default)]
pub(crate) struct Flights {
    running: Arc<Mutex<HashMap<String, watch::Receiver<()>>>>,
}

pub(crate) enum Joined {
    Leader(FlightGuard),
    /// Resolves when the leader is done (whatever its outcome).
    Follower(watch::Receiver<()>),
}

/// Held by the leader; dropping it lets the followers go.
pub(crate) struct FlightGuard {
    running: Arc<Mutex<HashMap<String, watch::Receiver<()>>>>,
    key: String,
    _done: watch::Sender<()>,
}

impl Drop for FlightGuard {
    fn drop(&mut self) {
        let mut running = self.running.lock().unwrap_or_else(|p| p.into_inner());
        running.remove(&self.key);
    }
}

impl Flights {
    pub(crate) fn join(&self, key: &str) -> Joined {
        let mut running = self.running.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(rx) = running.get(key) {
            return Joined::Follower(rx.clone());
        }
        let (tx, rx) = watch::channel(());
        running.insert(key.to_string(), rx);
        Joined::Leader(FlightGuard {
            running: self.running.clone(),
            key: key.to_string(),
            _done: tx,
        })
    }
}

/// Waits for the leader to drop its guard.
pub(crate) async fn wait(mut rx: watch::Receiver<()>) {
    // Err once the sender is gone: that is the signal.
    while rx.changed().await.is_ok() {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn followers_wait_for_the_leader_and_the_key_is_free_after() {
        let flights = Flights::default();
        let Joined::Leader(guard) = flights.join("k") else {
            panic!("first is the leader")
        };
        let Joined::Follower(rx) = flights.join("k") else {
            panic!("second follows")
        };
        assert!(matches!(flights.join("other"), Joined::Leader(_)));
        let waiter = tokio::spawn(wait(rx));
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished());
        drop(guard);
        waiter.await.expect("follower released");
        assert!(matches!(flights.join("k"), Joined::Leader(_)));
    }
}
