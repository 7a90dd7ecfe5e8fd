//! Counting operations and their latencies, and the result of one workload.

use std::collections::BTreeMap;
use std::fmt::Display;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

use crate::procfs::{self, ServerProbe};

/// Longest latency the histograms hold, in microseconds (one hour).
const MAX_LATENCY_US: u64 = 3_600_000_000;
pub const MIB_PER_S: &str = "MiB/s";
pub const OPS_PER_S: &str = "op/s";

/// Error messages kept per workload, to show what went wrong.
const ERROR_SAMPLES: usize = 5;

/// Operations, bytes, errors and a latency histogram (µs) of one task or of
/// a whole workload.
#[derive(Clone)]
pub struct Recorder {
    hist: Histogram<u64>,
    pub ops: u64,
    pub errors: u64,
    pub bytes: u64,
    pub error_samples: Vec<String>,
}

impl Default for Recorder {
    fn default() -> Self {
        Recorder::new()
    }
}

impl Recorder {
    pub fn new() -> Self {
        Recorder {
            // Bounds and precision are constants that hdrhistogram accepts.
            hist: Histogram::new_with_bounds(1, MAX_LATENCY_US, 3)
                .expect("constant histogram bounds are valid"),
            ops: 0,
            errors: 0,
            bytes: 0,
            error_samples: Vec::new(),
        }
    }

    /// One successful operation that took `latency` and moved `bytes`.
    pub fn ok(&mut self, latency: Duration, bytes: u64) {
        let us = (latency.as_micros() as u64).clamp(1, MAX_LATENCY_US);
        // Cannot fail: the value is clamped to the histogram's range.
        let _ = self.hist.record(us);
        self.ops += 1;
        self.bytes += bytes;
    }

    /// One failed operation; the first few messages are kept.
    pub fn error(&mut self, error: impl Display) {
        self.errors += 1;
        if self.error_samples.len() < ERROR_SAMPLES {
            self.error_samples.push(format!("{error:#}"));
        }
    }

    /// Records the outcome of an operation started at `start`.
    pub fn outcome<T>(&mut self, start: Instant, bytes: u64, result: anyhow::Result<T>) {
        match result {
            Ok(_) => self.ok(start.elapsed(), bytes),
            Err(e) => self.error(format!("{e:#}")),
        }
    }

    pub fn merge(&mut self, other: &Recorder) {
        // Same bounds on both sides, so adding cannot fail.
        let _ = self.hist.add(&other.hist);
        self.ops += other.ops;
        self.errors += other.errors;
        self.bytes += other.bytes;
        for e in &other.error_samples {
            if self.error_samples.len() < ERROR_SAMPLES {
                self.error_samples.push(e.clone());
            }
        }
    }

    pub fn latency(&self) -> Latency {
        if self.ops == 0 {
            return Latency::default();
        }
        let ms = |us: u64| us as f64 / 1000.0;
        Latency {
            p50: ms(self.hist.value_at_quantile(0.50)),
            p99: ms(self.hist.value_at_quantile(0.99)),
            max: ms(self.hist.max()),
            mean: self.hist.mean() / 1000.0,
        }
    }
}

/// Latency percentiles in milliseconds.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq)]
pub struct Latency {
    pub p50: f64,
    pub p99: f64,
    pub max: f64,
    pub mean: f64,
}

/// What one workload measured.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct WorkloadResult {
    pub name: String,
    pub description: String,
    /// Operations that succeeded (what an operation is depends on the workload).
    pub ops: u64,
    pub errors: u64,
    /// Payload bytes moved by the successful operations.
    pub bytes: u64,
    /// Wall time of the timed part.
    pub elapsed_s: f64,
    pub ops_per_s: f64,
    /// Payload throughput, when payload moved.
    pub mib_per_s: Option<f64>,
    /// The headline figure's unit: `MiB/s` or `op/s`.
    pub unit: String,
    /// Latency of one operation.
    pub latency_ms: Latency,
    /// The server's VmHWM over the workload (including its untimed setup);
    /// since the server started if the peak could not be reset.
    pub server_peak_rss_kib: Option<u64>,
    /// Server CPU time (user + system) during the timed part.
    pub server_cpu_s: Option<f64>,
    /// This client's CPU time during the timed part.
    pub client_cpu_s: Option<f64>,
    /// Workload-specific figures.
    pub details: BTreeMap<String, f64>,
    pub error_samples: Vec<String>,
}

impl WorkloadResult {
    /// The headline throughput: payload MiB/s or op/s.
    pub fn throughput(&self) -> f64 {
        match (self.unit.as_str(), self.mib_per_s) {
            (MIB_PER_S, Some(m)) => m,
            _ => self.ops_per_s,
        }
    }
}

/// Clock and CPU counters at the start of a timed part.
pub struct Meter {
    start: Instant,
    client_cpu: Option<f64>,
    server_cpu: Option<f64>,
}

impl Meter {
    pub fn start(server: Option<&ServerProbe>) -> Meter {
        Meter {
            client_cpu: procfs::self_cpu_seconds().ok(),
            server_cpu: server.and_then(|s| s.cpu_seconds().ok()),
            start: Instant::now(),
        }
    }

    pub fn elapsed(&self) -> Duration {
        self.start.elapsed()
    }

    /// Ends the timed part and assembles the result; `headline_mib` says
    /// whether MiB/s (else op/s) is the headline figure.
    pub fn finish(
        self,
        server: Option<&ServerProbe>,
        name: &str,
        description: &str,
        recorder: &Recorder,
        headline_mib: bool,
        details: BTreeMap<String, f64>,
    ) -> WorkloadResult {
        let elapsed = self.start.elapsed().as_secs_f64().max(1e-9);
        let client_cpu = procfs::self_cpu_seconds().ok();
        let server_cpu = server.and_then(|s| s.cpu_seconds().ok());
        WorkloadResult {
            name: name.to_string(),
            description: description.to_string(),
            ops: recorder.ops,
            errors: recorder.errors,
            bytes: recorder.bytes,
            elapsed_s: elapsed,
            ops_per_s: recorder.ops as f64 / elapsed,
            mib_per_s: (recorder.bytes > 0)
                .then(|| recorder.bytes as f64 / (1024.0 * 1024.0) / elapsed),
            unit: if headline_mib { MIB_PER_S } else { OPS_PER_S }.to_string(),
            latency_ms: recorder.latency(),
            server_peak_rss_kib: None,
            server_cpu_s: server_cpu.zip(self.server_cpu).map(|(b, a)| b - a),
            client_cpu_s: client_cpu.zip(self.client_cpu).map(|(b, a)| b - a),
            details,
            error_samples: recorder.error_samples.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_and_merge() {
        let mut a = Recorder::new();
        for ms in 1..=100 {
            a.ok(Duration::from_millis(ms), 10);
        }
        let mut b = Recorder::new();
        b.error("boom");
        b.ok(Duration::from_secs(1), 0);
        a.merge(&b);
        assert_eq!((a.ops, a.errors, a.bytes), (101, 1, 1000));
        let l = a.latency();
        assert!((l.p50 - 51.0).abs() < 1.0, "{l:?}");
        assert!((l.p99 - 100.0).abs() < 1.0, "{l:?}");
        assert!((l.max - 1000.0).abs() < 1.0, "{l:?}");
        assert_eq!(a.error_samples, vec!["boom".to_string()]);
        assert_eq!(Recorder::new().latency(), Latency::default());
    }
}
