//! Failed-login throttling per (client address, identity name presented).
//!
//! After `limit` failed credential checks for one name from one address
//! within `window`, further credential checks *for that name from that
//! address* are refused with 429 until the window ends — even a correct
//! password, so guessing during the lock-out learns nothing and costs the
//! server no argon2 run. Everything else from the address is untouched:
//! anonymous requests, bearer tokens, and other names' credentials. (Keying
//! by address alone let one pod with a bad pull secret behind a cluster's
//! shared egress address lock every node out.)
//!
//! Names are kept as SHA-256 digests, so an entry has a fixed size whatever
//! was sent; memory is bounded by [`MAX_TRACKED`] entries.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use sha2::{Digest as _, Sha256};

type Key = (IpAddr, [u8; 32]);

pub struct Throttle {
    limit: u32,
    window: Duration,
    failures: Mutex<HashMap<Key, (u32, Instant)>>,
}

/// Entries kept at most. When full, expired entries go first, then the
/// oldest; an attacker who wants to push a victim's entry out must first
/// pay this many failed (argon2-verified) logins.
pub const MAX_TRACKED: usize = 100_000;

fn key(ip: IpAddr, name: &str) -> Key {
    (ip, Sha256::digest(name.as_bytes()).into())
}

impl Throttle {
    /// `limit` 0 turns throttling off.
    pub fn new(limit: u32, window: Duration) -> Self {
        Throttle {
            limit,
            window,
            failures: Mutex::new(HashMap::new()),
        }
    }

    /// Seconds `name` must wait before its credentials are checked again
    /// from `ip`, if it is locked out now.
    pub fn retry_after(&self, ip: IpAddr, name: &str) -> Option<u64> {
        self.retry_after_at(ip, name, Instant::now())
    }

    pub fn record_failure(&self, ip: IpAddr, name: &str) {
        self.record_failure_at(ip, name, Instant::now());
    }

    /// A successful check clears the pair's count.
    pub fn record_success(&self, ip: IpAddr, name: &str) {
        let mut map = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        map.remove(&key(ip, name));
    }

    fn retry_after_at(&self, ip: IpAddr, name: &str, now: Instant) -> Option<u64> {
        if self.limit == 0 {
            return None;
        }
        let map = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        let (count, start) = map.get(&key(ip, name))?;
        let elapsed = now.saturating_duration_since(*start);
        if *count < self.limit || elapsed >= self.window {
            return None;
        }
        // Rounded up: a client that waits exactly this long is let in.
        let left = self.window - elapsed;
        Some((left.as_secs() + u64::from(left.subsec_nanos() > 0)).max(1))
    }

    fn record_failure_at(&self, ip: IpAddr, name: &str, now: Instant) {
        if self.limit == 0 {
            return;
        }
        let mut map = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        let key = key(ip, name);
        if map.len() >= MAX_TRACKED && !map.contains_key(&key) {
            let window = self.window;
            map.retain(|_, (_, start)| now.saturating_duration_since(*start) < window);
            if map.len() >= MAX_TRACKED {
                let oldest = map
                    .iter()
                    .min_by_key(|(_, (_, start))| *start)
                    .map(|(k, _)| *k);
                if let Some(oldest) = oldest {
                    map.remove(&oldest);
                }
            }
        }
        let entry = map.entry(key).or_insert((0, now));
        if now.saturating_duration_since(entry.1) >= self.window {
            *entry = (0, now);
        }
        entry.0 = entry.0.saturating_add(1);
    }

    #[cfg(test)]
    fn tracked(&self) -> usize {
        self.failures
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("ip")
    }

    #[test]
    fn locks_out_only_the_pair_over_the_limit() {
        let t = Throttle::new(3, Duration::from_secs(60));
        let t0 = Instant::now();
        let (a, b) = (ip("127.0.0.2"), ip("127.0.0.3"));
        for _ in 0..2 {
            t.record_failure_at(a, "ci", t0);
        }
        assert_eq!(t.retry_after_at(a, "ci", t0), None, "below the limit");
        t.record_failure_at(a, "ci", t0);
        assert_eq!(t.retry_after_at(a, "ci", t0), Some(60));
        // Another name from the same address, the same name from another
        // address: untouched.
        assert_eq!(t.retry_after_at(a, "owner", t0), None);
        assert_eq!(t.retry_after_at(b, "ci", t0), None);
    }

    #[test]
    fn lock_out_ends_with_the_window_and_rounds_up() {
        let t = Throttle::new(2, Duration::from_secs(60));
        let t0 = Instant::now();
        let a = ip("10.0.0.1");
        t.record_failure_at(a, "ci", t0);
        t.record_failure_at(a, "ci", t0 + Duration::from_secs(1));
        let at = |s: u64, ms: u64| t0 + Duration::from_secs(s) + Duration::from_millis(ms);
        assert_eq!(t.retry_after_at(a, "ci", at(30, 500)), Some(30));
        assert_eq!(t.retry_after_at(a, "ci", at(59, 999)), Some(1));
        assert_eq!(t.retry_after_at(a, "ci", at(60, 0)), None);
        // A failure after the window starts a new count.
        t.record_failure_at(a, "ci", at(61, 0));
        assert_eq!(t.retry_after_at(a, "ci", at(61, 0)), None);
    }

    #[test]
    fn success_clears_the_count() {
        let t = Throttle::new(2, Duration::from_secs(60));
        let a = ip("10.0.0.1");
        t.record_failure(a, "ci");
        t.record_success(a, "ci");
        t.record_failure(a, "ci");
        assert_eq!(t.retry_after(a, "ci"), None);
        t.record_failure(a, "ci");
        assert!(t.retry_after(a, "ci").is_some());
    }

    #[test]
    fn limit_zero_is_off() {
        let t = Throttle::new(0, Duration::from_secs(60));
        let a = ip("10.0.0.1");
        for _ in 0..100 {
            t.record_failure(a, "ci");
        }
        assert_eq!(t.retry_after(a, "ci"), None);
        assert_eq!(t.tracked(), 0);
    }

    #[test]
    fn memory_is_bounded() {
        let t = Throttle::new(1, Duration::from_secs(60));
        let t0 = Instant::now();
        let a = ip("10.0.0.1");
        t.record_failure_at(a, "victim", t0);
        for n in 0..MAX_TRACKED + 10 {
            t.record_failure_at(a, &format!("spray-{n}"), t0 + Duration::from_millis(1));
        }
        assert!(t.tracked() <= MAX_TRACKED);
        // The oldest entry went first.
        assert_eq!(t.retry_after_at(a, "victim", t0), None);
    }
}
