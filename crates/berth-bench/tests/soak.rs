//! Runs `soak` for a few seconds with tiny sizes against the real berth
//! binary, so the command cannot rot: every kind of operation must run at
//! least once without errors, and RSS must have been sampled (neither times
//! nor an RSS bound are asserted). The binary is
//! `<workspace>/target/debug/berth` (or `$BERTH_BIN`), built beforehand with
//! `cargo build --workspace --bins` (scripts/test.sh builds every binary
//! first).

use std::time::Duration;

use berth_bench::soak::{self, Op, SoakOptions, SoakReport, SoakSettings};

mod support;
use support::start_berth;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_kind_of_operation_runs_without_errors() {
    let server = start_berth();
    let settings = SoakSettings {
        duration: Duration::from_secs(3),
        warm_up: Duration::from_secs(1),
        sample_every: Duration::from_millis(500),
        concurrency: 4,
        blob_size: 256 * 1024 + 13,
        chunk_size: 64 * 1024,
        range_size: 32 * 1024,
        ..SoakSettings::new(Duration::from_secs(3))
    };
    let mut options = SoakOptions::new(&server.url, settings);
    options.pid = Some(server.child.id());
    options.label = Some("berth".into());
    options.credentials = server.credentials().await;
    let report = soak::run(&options).await.expect("soak");
    print!("{}", report.table());

    let names: Vec<&str> = report.operations.iter().map(|o| o.name.as_str()).collect();
    let expected: Vec<&str> = Op::ALL.iter().map(|o| o.name()).collect();
    assert_eq!(names, expected);
    for o in &report.operations {
        assert!(o.ops > 0, "{}: no operation completed", o.name);
        assert_eq!(o.errors, 0, "{}: errors {:?}", o.name, o.error_samples);
    }
    assert_eq!(report.total_errors(), 0);
    assert_eq!(
        report.total.ops,
        report.operations.iter().map(|o| o.ops).sum::<u64>()
    );
    // At the start, at the end of the warm-up, after it, and at the end.
    assert!(report.samples.len() >= 3, "samples: {:?}", report.samples);
    assert!(report.samples.iter().all(|s| s.rss_kib > 0));
    assert!(
        report.sample_errors.is_empty(),
        "{:?}",
        report.sample_errors
    );
    let rss = report.rss.expect("a sample after the warm-up");
    assert!(rss.max_after_warm_up_kib >= rss.warm_up_rss_kib);
    // Whatever the verdict on memory (not asserted), it names no errors.
    assert!(report.failures.iter().all(|f| !f.contains("errors")));

    // The JSON round-trips.
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("soak.json");
    report.write(&path).expect("write");
    let text = std::fs::read_to_string(&path).expect("read");
    let back: SoakReport = serde_json::from_str(&text).expect("parse");
    let rss_of = |r: &SoakReport| r.samples.iter().map(|s| s.rss_kib).collect::<Vec<_>>();
    assert_eq!(rss_of(&back), rss_of(&report));
    assert_eq!(back.settings, report.settings);
}
