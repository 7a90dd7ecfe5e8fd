//! One table from the runs against berth, Distribution and the static-file
//! ceiling: per workload the figures, the ratio berth / Distribution, the
//! reference (nginx or the disk), and whether berth meets its target.

use serde::{Deserialize, Serialize};

use crate::report::{mib, ms, num, render_markdown, render_table, Report};
use crate::workloads::disk;

/// The reports to compare; only berth's is required.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Runs {
    pub berth: Report,
    pub distribution: Option<Report>,
    pub nginx: Option<Report>,
}

/// One line of the comparison.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Row {
    pub workload: String,
    pub metric: String,
    pub berth: Option<f64>,
    pub distribution: Option<f64>,
    /// berth / Distribution.
    pub ratio: Option<f64>,
    /// nginx for reads, the disk for pushes.
    pub reference: Option<f64>,
    pub target: String,
    /// `met`, `MISSED`, or `-` when there is no target or nothing to judge.
    pub status: String,
    /// How far from the target, in words.
    pub note: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Comparison {
    #[serde(flatten)]
    pub runs: Runs,
    pub rows: Vec<Row>,
}

#[derive(Clone, Copy)]
enum Metric {
    Throughput,
    P99,
    LastOverFirst,
}

fn figure(report: Option<&Report>, workload: &str, metric: Metric) -> Option<f64> {
    let w = report?.workload(workload)?;
    if w.ops == 0 {
        return None;
    }
    match metric {
        Metric::Throughput => Some(w.throughput()),
        Metric::P99 => Some(w.latency_ms.p99),
        Metric::LastOverFirst => w.details.get("last_over_first").copied(),
    }
}

struct Check {
    ok: bool,
    text: String,
}

fn at_least(
    value: Option<f64>,
    bound: Option<f64>,
    text: impl Fn(f64, f64) -> String,
) -> Option<Check> {
    let (v, b) = (value?, bound?);
    Some(Check {
        ok: v >= b,
        text: text(v, b),
    })
}

fn at_most(value: Option<f64>, bound: f64, text: impl Fn(f64) -> String) -> Option<Check> {
    let v = value?;
    Some(Check {
        ok: v <= bound,
        text: text(v),
    })
}

impl Runs {
    fn row(
        &self,
        workload: &str,
        metric_name: &str,
        metric: Metric,
        reference: Option<f64>,
        target: &str,
        checks: Vec<Option<Check>>,
    ) -> Row {
        let berth = figure(Some(&self.berth), workload, metric);
        let distribution = figure(self.distribution.as_ref(), workload, metric);
        row(
            workload,
            metric_name,
            berth,
            distribution,
            reference,
            target,
            checks,
        )
    }

    /// The disk's fsync'd write speed, from whichever run measured it.
    fn disk(&self) -> Option<f64> {
        [
            Some(&self.berth),
            self.distribution.as_ref(),
            self.nginx.as_ref(),
        ]
        .into_iter()
        .flatten()
        .find_map(|r| figure(Some(r), disk::NAME, Metric::Throughput))
    }

    pub fn compare(self) -> Comparison {
        let b = |w, m| figure(Some(&self.berth), w, m);
        let d = |w, m| figure(self.distribution.as_ref(), w, m);
        let n = |w, m| figure(self.nginx.as_ref(), w, m);
        let ratio = |w, m| Some(b(w, m)? / d(w, m)?);
        let t = Metric::Throughput;
        let disk = self.disk();
        let mut rows = vec![
            self.row(
                "push",
                "MiB/s",
                t,
                disk,
                "≥2× Distribution, ≥80% of disk",
                vec![
                    at_least(ratio("push", t), Some(2.0), |v, _| {
                        format!("{v:.2}× Distribution")
                    }),
                    at_least(b("push", t), disk.map(|x| 0.8 * x), |v, bound| {
                        format!("{:.0}% of disk", 100.0 * v / (bound / 0.8))
                    }),
                ],
            ),
            self.row(
                "push-chunked",
                "MiB/s",
                t,
                disk,
                "≥90% of monolithic push",
                vec![at_least(
                    b("push-chunked", t),
                    b("push", t).map(|p| 0.9 * p),
                    |v, bound| format!("{:.0}% of push", 100.0 * v / (bound / 0.9)),
                )],
            ),
        ];
        for w in ["pull", "pull-range"] {
            rows.push(self.row(
                w,
                "MiB/s",
                t,
                n(w, t),
                "≥1.3× Distribution, ≥75% of nginx",
                vec![
                    at_least(ratio(w, t), Some(1.3), |v, _| {
                        format!("{v:.2}× Distribution")
                    }),
                    at_least(b(w, t), n(w, t).map(|x| 0.75 * x), |v, bound| {
                        format!("{:.0}% of nginx", 100.0 * v / (bound / 0.75))
                    }),
                ],
            ));
        }
        rows.push(self.row(
            "pull-range",
            "p99 ms ↓",
            Metric::P99,
            n("pull-range", Metric::P99),
            "",
            vec![],
        ));
        rows.push(self.row(
            "manifest-get",
            "req/s",
            t,
            n("manifest-get", t),
            "≥30000/s",
            vec![at_least(b("manifest-get", t), Some(30_000.0), |v, _| {
                format!("{:.0}% of 30000/s", v / 300.0)
            })],
        ));
        rows.push(self.row(
            "manifest-get",
            "p99 ms ↓",
            Metric::P99,
            n("manifest-get", Metric::P99),
            "≤10 ms",
            vec![at_most(b("manifest-get", Metric::P99), 10.0, |v| {
                format!("p99 {v:.1} ms")
            })],
        ));
        rows.push(self.row("layers", "layers/s", t, None, "", vec![]));
        rows.push(self.row("layers", "p99 ms ↓", Metric::P99, None, "", vec![]));
        rows.push(self.row("concurrent-push", "MiB/s", t, disk, "", vec![]));
        rows.push(self.row("concurrent-push", "p99 ms ↓", Metric::P99, None, "", vec![]));
        rows.push(self.row("tags-list", "pages/s", t, None, "", vec![]));
        rows.push(self.row(
            "tags-list",
            "last/first page ↓",
            Metric::LastOverFirst,
            None,
            "≈1 (≤1.5)",
            vec![at_most(b("tags-list", Metric::LastOverFirst), 1.5, |v| {
                format!("last pages {v:.2}× the first")
            })],
        ));
        let rss = |r: Option<&Report>, idle: bool| {
            r.and_then(|r| if idle { r.idle_rss_kib } else { r.peak_rss_kib })
                .map(|k| k as f64 / 1024.0)
        };
        for (idle, name, bound) in [
            (false, "peak RSS MiB ↓", 64.0),
            (true, "idle RSS MiB ↓", 20.0),
        ] {
            let berth = rss(Some(&self.berth), idle);
            rows.push(row(
                "server memory",
                name,
                berth,
                rss(self.distribution.as_ref(), idle),
                None,
                &format!("≤{bound} MiB"),
                vec![at_most(berth, bound, |v| format!("{v:.1} MiB"))],
            ));
        }
        rows.push(row(
            disk::NAME,
            "MiB/s",
            None,
            None,
            disk,
            "reference",
            vec![],
        ));
        Comparison { runs: self, rows }
    }
}

fn row(
    workload: &str,
    metric: &str,
    berth: Option<f64>,
    distribution: Option<f64>,
    reference: Option<f64>,
    target: &str,
    checks: Vec<Option<Check>>,
) -> Row {
    let checks: Vec<Check> = checks.into_iter().flatten().collect();
    let status = if checks.is_empty() {
        "-"
    } else if checks.iter().all(|c| c.ok) {
        "met"
    } else {
        "MISSED"
    };
    Row {
        workload: workload.to_string(),
        metric: metric.to_string(),
        berth,
        distribution,
        ratio: berth.zip(distribution).map(|(b, d)| b / d),
        reference,
        target: target.to_string(),
        status: status.to_string(),
        note: checks
            .iter()
            .map(|c| c.text.as_str())
            .collect::<Vec<_>>()
            .join("; "),
    }
}

impl Comparison {
    const HEADER: [&'static str; 9] = [
        "workload",
        "metric",
        "berth",
        "distribution",
        "berth/dist",
        "nginx / disk",
        "target",
        "status",
        "berth vs target",
    ];

    fn cells(&self) -> Vec<Vec<String>> {
        let opt = |v: Option<f64>| v.map_or("-".to_string(), num);
        self.rows
            .iter()
            .map(|r| {
                vec![
                    r.workload.clone(),
                    r.metric.clone(),
                    opt(r.berth),
                    opt(r.distribution),
                    r.ratio.map_or("-".into(), |x| format!("{x:.2}×")),
                    opt(r.reference),
                    r.target.clone(),
                    r.status.clone(),
                    r.note.clone(),
                ]
            })
            .collect()
    }

    pub fn table(&self) -> String {
        let mut out = render_table(&Self::HEADER, &self.cells());
        out += &self.footnotes("  ");
        out
    }

    pub fn markdown(&self) -> String {
        let mut out = render_markdown(&Self::HEADER, &self.cells());
        out += "\n";
        out += &self.footnotes("- ");
        out
    }

    fn footnotes(&self, bullet: &str) -> String {
        let mut notes = Vec::new();
        for (name, report) in [
            ("berth", Some(&self.runs.berth)),
            ("distribution", self.runs.distribution.as_ref()),
            ("nginx", self.runs.nginx.as_ref()),
        ] {
            let Some(report) = report else { continue };
            if let Some(w) = report.workload("tags-list") {
                let pages = w.details.get("pages_per_walk").copied().unwrap_or(0.0);
                let puts = w.details.get("tag_puts_per_s").copied().unwrap_or(0.0);
                notes.push(format!(
                    "{name}: tags-list walked {} page(s) per walk; creating the tags ran at {} manifest PUT/s",
                    pages,
                    num(puts)
                ));
            }
            if let Some(w) = report.workload("manifest-get") {
                notes.push(format!(
                    "{name}: manifest-get p50 {} ms, p99 {} ms",
                    ms(w.latency_ms.p50),
                    ms(w.latency_ms.p99)
                ));
            }
            if let (Some(before), Some(after)) = (report.load_before, report.load_after) {
                notes.push(format!(
                    "{name}: load average {before:.1} before, {after:.1} after its run"
                ));
            }
            let errors = report.total_errors();
            if errors > 0 {
                notes.push(format!(
                    "{name}: {errors} failed operation(s), see its report"
                ));
            }
            if let (Some(idle), Some(peak)) = (report.idle_rss_kib, report.peak_rss_kib) {
                notes.push(format!(
                    "{name}: idle RSS {}, peak RSS {}",
                    mib(idle),
                    mib(peak)
                ));
            }
        }
        notes.iter().map(|n| format!("{bullet}{n}\n")).collect()
    }
}
