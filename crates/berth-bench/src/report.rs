//! The result of one run: JSON for machines, a table for people.

use std::fmt::Write as _;
use std::path::Path;

use anyhow::Context;
use serde::{Deserialize, Serialize};

use crate::client::Mode;
use crate::params::Params;
use crate::stats::WorkloadResult;

/// Everything one run against one server measured.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Report {
    pub tool: String,
    pub version: String,
    pub label: Option<String>,
    pub url: String,
    pub mode: Mode,
    /// Seconds since the epoch when the run started.
    pub started_unix_s: u64,
    pub params: Params,
    pub server_pid: Option<u32>,
    /// The server's VmRSS before the first workload.
    pub idle_rss_kib: Option<u64>,
    /// The highest VmHWM over the workloads.
    pub peak_rss_kib: Option<u64>,
    /// Whether the peak was reset before each workload (else every
    /// workload's peak is the peak since the server started).
    pub peak_reset_per_workload: bool,
    /// The machine's 1-minute load average before and after the run: on a
    /// shared machine, how much else was running.
    #[serde(default)]
    pub load_before: Option<f64>,
    #[serde(default)]
    pub load_after: Option<f64>,
    pub workloads: Vec<WorkloadResult>,
}

impl Report {
    pub fn workload(&self, name: &str) -> Option<&WorkloadResult> {
        self.workloads.iter().find(|w| w.name == name)
    }

    pub fn total_errors(&self) -> u64 {
        self.workloads.iter().map(|w| w.errors).sum()
    }

    pub fn read(path: &Path) -> anyhow::Result<Report> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        serde_json::from_str(&text).with_context(|| format!("{} is not a report", path.display()))
    }

    pub fn write(&self, path: &Path) -> anyhow::Result<()> {
        write_json(path, self)
    }

    /// The human table.
    pub fn table(&self) -> String {
        let mut out = String::new();
        let who = self.label.as_deref().unwrap_or("server");
        let _ = writeln!(out, "{who} at {} ({:?} mode)", self.url, self.mode);
        let _ = writeln!(out, "params: {}", self.params.summary());
        if let (Some(before), Some(after)) = (self.load_before, self.load_after) {
            let _ = writeln!(
                out,
                "load average (1 min): {before:.2} before, {after:.2} after, on {} cores",
                std::thread::available_parallelism().map_or(0, |n| n.get())
            );
        }
        if let Some(idle) = self.idle_rss_kib {
            let _ = writeln!(
                out,
                "server pid {}: idle RSS {}, peak RSS {}{}",
                self.server_pid.unwrap_or(0),
                mib(idle),
                self.peak_rss_kib.map_or("-".into(), mib),
                if self.peak_reset_per_workload {
                    ""
                } else {
                    " (peak could not be reset per workload: each is since start)"
                }
            );
        }
        let header = [
            "workload",
            "ops",
            "err",
            "time s",
            "throughput",
            "p50 ms",
            "p99 ms",
            "max ms",
            "peak RSS",
            "srv CPU s",
            "cli CPU s",
        ];
        let rows: Vec<Vec<String>> = self
            .workloads
            .iter()
            .map(|w| {
                vec![
                    w.name.clone(),
                    w.ops.to_string(),
                    w.errors.to_string(),
                    format!("{:.2}", w.elapsed_s),
                    format!("{} {}", num(w.throughput()), w.unit),
                    ms(w.latency_ms.p50),
                    ms(w.latency_ms.p99),
                    ms(w.latency_ms.max),
                    w.server_peak_rss_kib.map_or("-".into(), mib),
                    w.server_cpu_s.map_or("-".into(), |c| format!("{c:.2}")),
                    w.client_cpu_s.map_or("-".into(), |c| format!("{c:.2}")),
                ]
            })
            .collect();
        out.push_str(&render_table(&header, &rows));
        for w in &self.workloads {
            if !w.details.is_empty() {
                let details: Vec<String> = w
                    .details
                    .iter()
                    .map(|(k, v)| format!("{k}={}", num(*v)))
                    .collect();
                let _ = writeln!(out, "  {}: {}", w.name, details.join(" "));
            }
            for e in &w.error_samples {
                let _ = writeln!(out, "  {} error: {e}", w.name);
            }
        }
        out
    }
}

pub fn write_json<T: Serialize>(path: &Path, value: &T) -> anyhow::Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    let json = serde_json::to_string_pretty(value)?;
    std::fs::write(path, json + "\n").with_context(|| format!("cannot write {}", path.display()))
}

/// KiB as MiB with one decimal.
pub fn mib(kib: u64) -> String {
    format!("{:.1} MiB", kib as f64 / 1024.0)
}

/// Milliseconds with precision that suits their size.
pub fn ms(v: f64) -> String {
    if v >= 100.0 {
        format!("{v:.0}")
    } else if v >= 1.0 {
        format!("{v:.2}")
    } else {
        format!("{v:.3}")
    }
}

/// A number for people: integers as such, others to about four digits.
pub fn num(v: f64) -> String {
    if (v.fract() == 0.0 && v.abs() < 1e15) || v.abs() >= 1000.0 {
        format!("{v:.0}")
    } else if v.abs() >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.3}")
    }
}

/// A plain-text table, left-aligned first column, right-aligned others.
pub fn render_table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            if let Some(w) = widths.get_mut(i) {
                *w = (*w).max(cell.chars().count());
            }
        }
    }
    let line = |cells: Vec<&str>| {
        let mut s = String::new();
        for (i, (cell, w)) in cells.iter().zip(&widths).enumerate() {
            if i == 0 {
                let _ = write!(s, "{cell:<w$}");
            } else {
                let _ = write!(s, "  {cell:>w$}");
            }
        }
        s.trim_end().to_string() + "\n"
    };
    let mut out = line(header.to_vec());
    out += &line(
        widths
            .iter()
            .map(|w| "-".repeat(*w))
            .collect::<Vec<_>>()
            .iter()
            .map(String::as_str)
            .collect(),
    );
    for row in rows {
        out += &line(row.iter().map(String::as_str).collect());
    }
    out
}

/// The same table as Markdown, for docs.
pub fn render_markdown(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut out = format!("| {} |\n", header.join(" | "));
    out += &format!("|{}\n", " --- |".repeat(header.len()));
    for row in rows {
        out += &format!("| {} |\n", row.join(" | "));
    }
    out
}
