//! One table from the runs against berth, Distribution and the static-file
//! ceiling: per workload the figures, the ratio berth / Distribution, the
//! reference (nginx or the disk), and whether berth meets its target.
//!
//! Optional extra runs add rows: berth and nginx over TLS (`(TLS)` rows:
//! berth over TLS against berth in plain HTTP, nginx over TLS as the
//! reference) and berth's manifest GET with a bearer token (`(bearer)`).

use serde::{Deserialize, Serialize};

use crate::report::{mib, ms, num, render_markdown, render_table, Report};
use crate::workloads::disk;

/// The reports to compare; only berth's is required.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Runs {
    pub berth: Report,
    pub distribution: Option<Report>,
    pub nginx: Option<Report>,
    /// berth over TLS (the read workloads), same run.
    #[serde(default)]
    pub berth_tls: Option<Report>,
    /// nginx over TLS, same run.
    #[serde(default)]
    pub nginx_tls: Option<Report>,
    /// berth's `manifest-get` with a bearer token, same run.
    #[serde(default)]
    pub berth_bearer: Option<Report>,
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
    /// Whether the target is met; `None` for a figure shown as information.
    ok: Option<bool>,
    text: String,
}

fn at_least(
    value: Option<f64>,
    bound: Option<f64>,
    text: impl Fn(f64, f64) -> String,
) -> Option<Check> {
    let (v, b) = (value?, bound?);
    Some(Check {
        ok: Some(v >= b),
        text: text(v, b),
    })
}

fn at_most(value: Option<f64>, bound: f64, text: impl Fn(f64) -> String) -> Option<Check> {
    at_most_of(value, Some(bound), |v, _| text(v))
}

fn at_most_of(
    value: Option<f64>,
    bound: Option<f64>,
    text: impl Fn(f64, f64) -> String,
) -> Option<Check> {
    let (v, b) = (value?, bound?);
    Some(Check {
        ok: Some(v <= b),
        text: text(v, b),
    })
}

/// A figure for the note that judges nothing.
fn info(text: Option<String>) -> Option<Check> {
    Some(Check {
        ok: None,
        text: text?,
    })
}

/// `part` as a percentage of `whole`.
fn percent(part: Option<f64>, whole: Option<f64>) -> Option<f64> {
    let (p, w) = (part?, whole?);
    (w > 0.0).then(|| 100.0 * p / w)
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
        let bt = |w, m| figure(self.berth_tls.as_ref(), w, m);
        let nt = |w, m| figure(self.nginx_tls.as_ref(), w, m);
        let bb = |w, m| figure(self.berth_bearer.as_ref(), w, m);
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
        let mg = "manifest-get";
        rows.push(self.row(
            mg,
            "req/s",
            t,
            n(mg, t),
            "≥60% of nginx",
            vec![at_least(b(mg, t), n(mg, t).map(|x| 0.6 * x), |v, bound| {
                format!("{:.0}% of nginx", 100.0 * v / (bound / 0.6))
            })],
        ));
        rows.push(self.row(
            mg,
            "p99 ms ↓",
            Metric::P99,
            n(mg, Metric::P99),
            "≤2× nginx p99",
            vec![at_most_of(
                b(mg, Metric::P99),
                n(mg, Metric::P99).map(|x| 2.0 * x),
                |v, bound| format!("{:.2}× nginx p99", v / (bound / 2.0)),
            )],
        ));
        let no_bearer = self
            .berth_bearer
            .is_none()
            .then(|| "no bearer run (bench/compare.sh, berth with auth)".to_string());
        rows.push(row(
            "manifest-get (bearer)",
            "req/s",
            bb(mg, t),
            None,
            n(mg, t),
            "≥60% of nginx",
            vec![
                at_least(bb(mg, t), n(mg, t).map(|x| 0.6 * x), |v, bound| {
                    format!("{:.0}% of nginx", 100.0 * v / (bound / 0.6))
                }),
                info(percent(bb(mg, t), b(mg, t)).map(|p| format!("{p:.0}% of Basic"))),
                info(no_bearer),
            ],
        ));
        let no_tls = self
            .berth_tls
            .is_none()
            .then(|| "no TLS run (bench/compare.sh --tls)".to_string());
        for w in ["pull", "pull-range"] {
            rows.push(row(
                &format!("{w} (TLS)"),
                "MiB/s",
                bt(w, t),
                None,
                nt(w, t),
                "≥70% of plain HTTP",
                vec![
                    at_least(bt(w, t), b(w, t).map(|x| 0.7 * x), |v, bound| {
                        format!("{:.0}% of plain", 100.0 * v / (bound / 0.7))
                    }),
                    info(percent(bt(w, t), nt(w, t)).map(|p| format!("{p:.0}% of nginx TLS"))),
                    info(no_tls.clone()),
                ],
            ));
        }
        rows.push(row(
            "manifest-get (TLS)",
            "req/s",
            bt(mg, t),
            None,
            nt(mg, t),
            "",
            vec![
                info(percent(bt(mg, t), b(mg, t)).map(|p| format!("{p:.0}% of plain"))),
                info(percent(bt(mg, t), nt(mg, t)).map(|p| format!("{p:.0}% of nginx TLS"))),
            ],
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
    let judged: Vec<bool> = checks.iter().filter_map(|c| c.ok).collect();
    let status = if judged.is_empty() {
        "-"
    } else if judged.iter().all(|ok| *ok) {
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
            ("berth TLS", self.runs.berth_tls.as_ref()),
            ("nginx TLS", self.runs.nginx_tls.as_ref()),
            ("berth bearer", self.runs.berth_bearer.as_ref()),
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::Mode;
    use crate::params::Params;
    use crate::stats::{Latency, WorkloadResult, MIB_PER_S, OPS_PER_S};

    /// A workload that ran: `throughput` in MiB/s for the blob workloads,
    /// op/s for the others.
    fn result(name: &str, throughput: f64, p99: f64) -> WorkloadResult {
        let mib = name.starts_with("pull") || name.contains("push");
        WorkloadResult {
            name: name.to_string(),
            description: String::new(),
            ops: 100,
            errors: 0,
            bytes: 0,
            elapsed_s: 1.0,
            ops_per_s: throughput,
            mib_per_s: mib.then_some(throughput),
            unit: if mib { MIB_PER_S } else { OPS_PER_S }.to_string(),
            latency_ms: Latency {
                p50: p99 / 2.0,
                p99,
                max: p99,
                mean: p99 / 2.0,
            },
            server_peak_rss_kib: None,
            server_cpu_s: None,
            client_cpu_s: None,
            details: Default::default(),
            error_samples: Vec::new(),
        }
    }

    fn report(label: &str, workloads: &[(&str, f64, f64)]) -> Report {
        Report {
            tool: "berth-bench".into(),
            version: "0".into(),
            label: Some(label.into()),
            url: "http://127.0.0.1:1".into(),
            mode: Mode::Registry,
            started_unix_s: 0,
            params: Params::smoke(),
            server_pid: None,
            idle_rss_kib: None,
            peak_rss_kib: None,
            peak_reset_per_workload: false,
            load_before: None,
            load_after: None,
            workloads: workloads
                .iter()
                .map(|(n, t, p)| result(n, *t, *p))
                .collect(),
        }
    }

    fn runs(berth: Report) -> Runs {
        Runs {
            berth,
            distribution: None,
            nginx: None,
            berth_tls: None,
            nginx_tls: None,
            berth_bearer: None,
        }
    }

    /// The row of `workload`/`metric` whose target is `target`.
    fn find<'a>(c: &'a Comparison, workload: &str, metric: &str, target: &str) -> &'a Row {
        c.rows
            .iter()
            .find(|r| r.workload == workload && r.metric == metric && r.target == target)
            .unwrap_or_else(|| panic!("no row {workload} / {metric} / {target}"))
    }

    fn status<'a>(c: &'a Comparison, workload: &str, metric: &str, target: &str) -> &'a str {
        &find(c, workload, metric, target).status
    }

    const NGINX: &[(&str, f64, f64)] = &[
        ("pull", 2000.0, 10.0),
        ("pull-range", 1600.0, 8.0),
        ("manifest-get", 50_000.0, 2.0),
    ];

    #[test]
    fn manifest_get_against_nginx() {
        // 31000/s is 62% of nginx's 50000/s; p99 3.9 ms is under 2 × 2 ms.
        let mut r = runs(report("berth", &[("manifest-get", 31_000.0, 3.9)]));
        r.nginx = Some(report("nginx", NGINX));
        let c = r.compare();
        assert_eq!(status(&c, "manifest-get", "req/s", "≥60% of nginx"), "met");
        assert_eq!(status(&c, "manifest-get", "req/s", "≥30000/s"), "met");
        assert_eq!(
            status(&c, "manifest-get", "p99 ms ↓", "≤2× nginx p99"),
            "met"
        );
        assert_eq!(status(&c, "manifest-get", "p99 ms ↓", "≤10 ms"), "met");
        let row = find(&c, "manifest-get", "req/s", "≥60% of nginx");
        assert_eq!(row.note, "62% of nginx");
        assert_eq!(row.reference, Some(50_000.0));

        // 29000/s is 58% of nginx; p99 4.1 ms is over 2 × 2 ms but under 10 ms.
        let mut r = runs(report("berth", &[("manifest-get", 29_000.0, 4.1)]));
        r.nginx = Some(report("nginx", NGINX));
        let c = r.compare();
        assert_eq!(
            status(&c, "manifest-get", "req/s", "≥60% of nginx"),
            "MISSED"
        );
        assert_eq!(status(&c, "manifest-get", "req/s", "≥30000/s"), "MISSED");
        assert_eq!(
            status(&c, "manifest-get", "p99 ms ↓", "≤2× nginx p99"),
            "MISSED"
        );
        assert_eq!(status(&c, "manifest-get", "p99 ms ↓", "≤10 ms"), "met");
        assert_eq!(
            find(&c, "manifest-get", "p99 ms ↓", "≤2× nginx p99").note,
            "2.05× nginx p99"
        );

        // Without nginx there is nothing to judge.
        let c = runs(report("berth", &[("manifest-get", 31_000.0, 3.9)])).compare();
        assert_eq!(status(&c, "manifest-get", "req/s", "≥60% of nginx"), "-");
        assert_eq!(status(&c, "manifest-get", "p99 ms ↓", "≤2× nginx p99"), "-");
    }

    #[test]
    fn pull_over_tls_against_plain_pull() {
        let plain = [("pull", 1000.0, 10.0), ("pull-range", 1000.0, 10.0)];
        let mut r = runs(report("berth", &plain));
        // pull over TLS at 75% of plain: met; pull-range at 65%: missed.
        r.berth_tls = Some(report(
            "berth-tls",
            &[("pull", 750.0, 12.0), ("pull-range", 650.0, 12.0)],
        ));
        r.nginx_tls = Some(report(
            "nginx-tls",
            &[
                ("pull", 1500.0, 10.0),
                ("pull-range", 1300.0, 10.0),
                ("manifest-get", 40_000.0, 2.0),
            ],
        ));
        let c = r.compare();
        let pull = find(&c, "pull (TLS)", "MiB/s", "≥70% of plain HTTP");
        assert_eq!(pull.status, "met");
        assert_eq!(pull.berth, Some(750.0));
        assert_eq!(pull.reference, Some(1500.0));
        assert_eq!(pull.note, "75% of plain; 50% of nginx TLS");
        let range = find(&c, "pull-range (TLS)", "MiB/s", "≥70% of plain HTTP");
        assert_eq!(range.status, "MISSED");
        assert_eq!(range.note, "65% of plain; 50% of nginx TLS");
        // Information only: no target, whatever the figures.
        assert_eq!(status(&c, "manifest-get (TLS)", "req/s", ""), "-");
        // The nginx TLS figures alone judge nothing (info is not a target).
        let mut r = runs(report("berth", &plain));
        r.berth_tls = Some(report("berth-tls", &[("pull", 1000.0, 12.0)]));
        let c = r.compare();
        assert_eq!(
            status(&c, "pull (TLS)", "MiB/s", "≥70% of plain HTTP"),
            "met"
        );
        assert_eq!(
            find(&c, "pull (TLS)", "MiB/s", "≥70% of plain HTTP").note,
            "100% of plain"
        );

        // No TLS run: the rows say so and judge nothing.
        let c = runs(report("berth", &plain)).compare();
        let pull = find(&c, "pull (TLS)", "MiB/s", "≥70% of plain HTTP");
        assert_eq!(pull.status, "-");
        assert!(pull.note.contains("--tls"), "{}", pull.note);
    }

    #[test]
    fn manifest_get_with_a_bearer_token_against_nginx() {
        let berth = [("manifest-get", 40_000.0, 2.0)];
        let mut r = runs(report("berth", &berth));
        r.nginx = Some(report("nginx", NGINX));
        r.berth_bearer = Some(report("berth-bearer", &[("manifest-get", 30_500.0, 3.0)]));
        let c = r.compare();
        let row = find(&c, "manifest-get (bearer)", "req/s", "≥60% of nginx");
        assert_eq!(row.status, "met");
        assert_eq!(row.berth, Some(30_500.0));
        assert_eq!(row.note, "61% of nginx; 76% of Basic");

        let mut r = runs(report("berth", &berth));
        r.nginx = Some(report("nginx", NGINX));
        r.berth_bearer = Some(report("berth-bearer", &[("manifest-get", 29_500.0, 3.0)]));
        let c = r.compare();
        assert_eq!(
            status(&c, "manifest-get (bearer)", "req/s", "≥60% of nginx"),
            "MISSED"
        );

        let mut r = runs(report("berth", &berth));
        r.nginx = Some(report("nginx", NGINX));
        let c = r.compare();
        let row = find(&c, "manifest-get (bearer)", "req/s", "≥60% of nginx");
        assert_eq!(row.status, "-");
        assert!(row.note.contains("no bearer run"), "{}", row.note);
    }

    #[test]
    fn existing_pull_targets_still_judge_against_nginx() {
        let mut r = runs(report(
            "berth",
            &[("pull", 1600.0, 10.0), ("pull-range", 1100.0, 9.0)],
        ));
        r.nginx = Some(report("nginx", NGINX));
        let c = r.compare();
        let target = "≥1.3× Distribution, ≥75% of nginx";
        // 1600 of 2000 is 80%; 1100 of 1600 is 69%.
        assert_eq!(status(&c, "pull", "MiB/s", target), "met");
        assert_eq!(status(&c, "pull-range", "MiB/s", target), "MISSED");
    }

    #[test]
    fn an_older_comparison_without_the_extra_runs_still_loads() {
        let c = runs(report("berth", &[("pull", 1.0, 1.0)])).compare();
        let mut json: serde_json::Value = serde_json::to_value(&c).expect("json");
        let object = json.as_object_mut().expect("object");
        for key in ["berth_tls", "nginx_tls", "berth_bearer"] {
            assert!(object.remove(key).is_some(), "{key} is serialised");
        }
        let back: Comparison = serde_json::from_value(json).expect("parses");
        assert!(back.runs.berth_tls.is_none());
        let table = back.runs.compare().table();
        assert!(table.contains("pull (TLS)"));
        assert!(table.contains("manifest-get (bearer)"));
    }
}
