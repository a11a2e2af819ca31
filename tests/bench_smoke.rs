//! `omnilog bench` end to end on a tiny history: every stage runs (the replay in a child
//! process included), the table shows each one, and the JSON results hold the same rows.
//! How fast anything is, is the bench's business, not this test's.

mod support;

use support::run;

#[test]
fn the_bench_runs_every_stage_and_writes_its_table_and_json() {
    let dir = tempfile::tempdir().unwrap();
    let results = dir.path().join("results.json");
    let table = run(&[
        "bench",
        "--events",
        "2000",
        "--ingest-events",
        "500",
        "--single-requests",
        "40",
        "--clients",
        "4",
        "--latency-rate",
        "40",
        "--latency-seconds",
        "1",
        "--out",
        results.to_str().unwrap(),
    ]);
    for row in [
        "| a | read the log and decode every event",
        "| b | fold the journey view in memory",
        "| b | fold the queue view in memory",
        "| b | fold the reporting view in memory",
        "| b | fold the segments view in memory",
        "| b | fold the engagement view in memory",
        "| b | fold all 5 views in memory, one after the other",
        "| b | fold all 5 views and the identity view in memory, each event decoded once, on one thread",
        "(c) can be at most about twice the views' folds on one thread",
        "| c | durable projection of all views and the identity view at once",
        "| c | `omnilog replay` of all views",
        "| d | ingest over HTTP, 1,000 events a request",
        "| d | ingest over HTTP, 1 event a request",
        "| e | ingest-to-visible latency",
        "| e | of which the POST, until its durable answer",
        "| f | peak RSS of `omnilog replay` of the 2000 events",
    ] {
        assert!(table.contains(row), "no row {row:?} in:\n{table}");
    }
    let results: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&results).unwrap()).unwrap();
    let stages = results["stages"].as_array().unwrap();
    assert!(stages.len() >= 10, "{results}");
    for stage in stages {
        assert!(stage["per_second"].as_f64().unwrap() > 0.0, "{stage}");
    }
    // Every event of the history went through the replay in the child process.
    let replay = stages
        .iter()
        .find(|s| s["what"].as_str().unwrap().contains("`omnilog replay`"))
        .unwrap();
    assert_eq!(replay["count"], 2000);
    assert!(results["replay_peak_rss_mb"].as_f64().unwrap() > 0.0);
    // One sample per interaction event of the 40 offered (agent events have no journey).
    let samples = results["latency"]["samples"].as_u64().unwrap();
    assert!((1..=40).contains(&samples), "{samples} samples");
    // The POST is part of each sample: its answer comes no later than the whole.
    let latency = &results["latency"];
    let (answered, whole) = (
        latency["answered_p50_ms"].as_f64().unwrap(),
        latency["p50_ms"].as_f64().unwrap(),
    );
    assert!(answered > 0.0 && answered <= whole, "{latency}");
}
