//! Crash consistency of `omnilog serve`: while 200,000 simulated events are ingested and
//! projected, the server is killed with SIGKILL at random moments, ten times, and started
//! again on the same data dir; the client re-sends the batch whose answer it lost (event
//! ids are stable, so the log keeps it once). After the last restart:
//! - every event acknowledged with 202 is in the log exactly once, and no event twice;
//! - every view equals a clean rebuild from the log (`omnilog replay`), compared by the
//!   digest of its full canonical dump (`omnilog inspect`).

mod support;

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use omnilog_testkit::{HistoryConfig, history};
use serde_json::Value;
use support::{Http, Server, run};

const EVENTS: u64 = 200_000;
const BATCH: usize = 500;
const KILLS: usize = 10;

fn batches() -> Vec<(Vec<String>, String)> {
    let events: Vec<String> = history(HistoryConfig::with_events(99, EVENTS))
        .map(|event| omnilog_events::to_canonical_json(&event))
        .collect();
    events
        .chunks(BATCH)
        .map(|chunk| {
            (
                chunk.iter().map(|e| id_of(e)).collect(),
                format!("[{}]", chunk.join(",")),
            )
        })
        .collect()
}

fn id_of(canonical: &str) -> String {
    let value: Value = serde_json::from_str(canonical).unwrap();
    value["event_id"].as_str().unwrap().to_owned()
}

/// SIGKILL by pid, from another task while a request is in flight.
fn kill_now(pid: u32) {
    let _ = std::process::Command::new("kill")
        .args(["-KILL", &pid.to_string()])
        .status();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkilled_ten_times_while_ingesting_it_loses_nothing_and_views_equal_a_rebuild() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let batches = batches();
    let mut rng = fastrand::Rng::with_seed(2026);
    // Ten distinct batches, spread over the run, during which the server dies.
    let mut kill_at: Vec<usize> = Vec::new();
    while kill_at.len() < KILLS {
        let at = rng.usize(1..batches.len() - 1);
        if !kill_at.contains(&at) {
            kill_at.push(at);
        }
    }
    kill_at.sort_unstable();

    let http = Http::default();
    let mut server = Server::start(&data, &[]);
    let mut acknowledged: HashSet<String> = HashSet::new();
    let mut index = 0;
    let mut kills = 0;
    while index < batches.len() {
        let (ids, body) = &batches[index];
        let url = server.url("/v1/events");
        if kill_at.get(kills) == Some(&index) {
            // Kill at a random moment around this request: before, during or after it.
            let pid = server.child.id();
            let delay = Duration::from_micros(rng.u64(0..30_000));
            let killer = tokio::spawn(async move {
                tokio::time::sleep(delay).await;
                kill_now(pid);
            });
            let answer = http
                .try_send("POST", &url, "application/json", body.clone().into_bytes())
                .await;
            killer.await.unwrap();
            if let Ok(answer) = answer
                && answer.status == 202
            {
                acknowledged.extend(ids.iter().cloned());
            }
            server.kill();
            kills += 1;
            server = Server::start(&data, &[]);
            // The fate of this batch is unknown to the client: send it again.
            let answer = http
                .send(
                    "POST",
                    &server.url("/v1/events"),
                    "application/json",
                    body.clone().into_bytes(),
                )
                .await;
            assert_eq!(answer.status, 202, "{:?}", answer.body);
            acknowledged.extend(ids.iter().cloned());
        } else {
            let answer = http
                .send("POST", &url, "application/json", body.clone().into_bytes())
                .await;
            assert_eq!(answer.status, 202, "{:?}", answer.body);
            acknowledged.extend(ids.iter().cloned());
        }
        index += 1;
    }
    assert_eq!(kills, KILLS);
    support::wait_ready(&http, &server).await;
    server.stop();

    // Every acknowledged event is in the log exactly once.
    let data_arg = data.to_str().unwrap();
    let exported = run(&["export", "--data-dir", data_arg, "--topics", "all"]);
    let mut stored: HashMap<String, usize> = HashMap::new();
    for line in exported.lines() {
        *stored.entry(id_of(line)).or_default() += 1;
    }
    assert_eq!(acknowledged.len() as u64, EVENTS);
    for id in &acknowledged {
        assert_eq!(stored.get(id), Some(&1), "event {id}");
    }
    assert!(stored.values().all(|&n| n == 1), "an event is stored twice");

    // The live views equal a clean rebuild from the log, byte for byte.
    let rebuilt = dir.path().join("rebuilt");
    run(&[
        "replay",
        "--data-dir",
        data_arg,
        "--out",
        rebuilt.to_str().unwrap(),
    ]);
    let live: Value = serde_json::from_str(&run(&["inspect", "--data-dir", data_arg])).unwrap();
    let clean: Value =
        serde_json::from_str(&run(&["inspect", "--data-dir", rebuilt.to_str().unwrap()])).unwrap();
    let views = live["views"].as_array().unwrap();
    assert_eq!(views.len(), 5);
    for (live, clean) in views.iter().zip(clean["views"].as_array().unwrap()) {
        assert_eq!(live["view"], clean["view"]);
        assert_eq!(
            live["sha256"], clean["sha256"],
            "{} differs from its rebuild",
            live["view"]
        );
        assert_eq!(live["entries"], clean["entries"]);
    }
    assert_eq!(
        live["log"]["omnilog.interactions"]["records"]
            .as_u64()
            .unwrap()
            + live["log"]["omnilog.agents"]["records"].as_u64().unwrap(),
        EVENTS
    );
}
