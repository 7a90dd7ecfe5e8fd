//! The memory upkeep worker of `berth serve`: it runs on its own (no
//! scrape needed) and reports what it gave back on `/metrics`.

mod common;

use std::time::{Duration, Instant};

use common::*;

/// How long the first upkeep may take to show: generous, the machine is
/// shared (the worker ticks every second).
const SETTLE: Duration = Duration::from_secs(30);

#[tokio::test(flavor = "multi_thread")]
async fn the_memory_upkeep_runs_and_is_reported_on_metrics() {
    let dir = tempdir("memory-upkeep");
    let server = TestServer::start(&dir.path().join("data"));
    let api = Api::new(&server);
    // Something to free: a few blobs pushed and pulled.
    for i in 0..4u8 {
        let data = vec![i; 2 * 1024 * 1024];
        let digest = api.push_blob("upkeep/app", &data).await;
        assert_eq!(api.pull_blob("upkeep/app", &digest).await, data);
    }
    let started = Instant::now();
    let metrics = loop {
        let metrics = metrics_text(&server).await;
        if metrics
            .lines()
            .any(|l| l.starts_with("berth_memory_returned_bytes_total "))
        {
            break metrics;
        }
        assert!(
            started.elapsed() < SETTLE,
            "no berth_memory_returned_bytes_total after {SETTLE:?}:\n{metrics}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert!(
        metrics.contains("# HELP berth_memory_returned_bytes_total "),
        "the counter has no HELP line:\n{metrics}"
    );
    let value = metrics
        .lines()
        .find_map(|l| l.strip_prefix("berth_memory_returned_bytes_total "))
        .and_then(|v| v.trim().parse::<f64>().ok());
    assert!(value.is_some(), "not a number:\n{metrics}");
}
