//! History through the real binary: `replay --until T` serves what the live views answered
//! at T; a blue/green rebuild under continuous queries never answers 5xx nor goes back in
//! time; `export` of a million events streams with bounded memory.

mod support;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use omnilog_events::{Event, format_time, to_canonical_json};
use omnilog_ingest::ReadToken;
use omnilog_log::{EmbeddedLog, EventLog, PartitionCounts};
use omnilog_testkit::{HistoryConfig, history};
use serde_json::Value;
use support::{BINARY, Http, Server, run};

/// The body of `POST /v1/events` for `events`.
fn json_array(events: &[Event]) -> Vec<u8> {
    let lines: Vec<String> = events.iter().map(to_canonical_json).collect();
    format!("[{}]", lines.join(",")).into_bytes()
}

/// Posts events as canonical JSON in batches; returns a read token that covers every
/// answer's positions. One answer's token covers only the partitions its own events went
/// to: the last batch may hold no agent event, so its token alone would let a query answer
/// before the agents' earlier events are folded. Tokens joined with commas read back as
/// their union (the highest offset of each partition).
async fn post_all(http: &Http, server: &Server, events: &[Event]) -> String {
    let mut tokens = Vec::new();
    for chunk in events.chunks(250) {
        let answer = http
            .send(
                "POST",
                &server.url("/v1/events"),
                "application/json",
                json_array(chunk),
            )
            .await;
        assert_eq!(answer.status, 202, "{:?}", answer.body);
        tokens.push(answer.body["token"].as_str().unwrap().to_owned());
    }
    let union: ReadToken = tokens.join(",").parse().expect("ingest answers' tokens");
    union.to_string()
}

/// The answers an analyst would compare: journeys of some customers, queues and agents as
/// of `now`, and every report.
async fn answers(
    http: &Http,
    server: &Server,
    customers: &[String],
    now: &str,
    token: &str,
) -> Vec<(String, Value)> {
    let mut paths: Vec<String> = customers
        .iter()
        .map(|id| format!("/v1/customers/{id}/journey"))
        .collect();
    paths.extend([
        format!("/v1/queues?now={now}"),
        "/v1/agents".to_owned(),
        "/v1/reports/summary?group_by=channel".to_owned(),
        "/v1/reports/summary?group_by=hour".to_owned(),
        "/v1/reports/summary?group_by=queue".to_owned(),
        "/v1/reports/journeys".to_owned(),
        "/v1/reports/topics".to_owned(),
    ]);
    let mut answers = Vec::new();
    for path in paths {
        let separator = if path.contains('?') { '&' } else { '?' };
        let url = if token.is_empty() {
            server.url(&path)
        } else {
            server.url(&format!("{path}{separator}after={token}"))
        };
        let answer = http.get(&url).await;
        assert_eq!(answer.status, 200, "GET {path}: {:?}", answer.body);
        answers.push((path, answer.body));
    }
    answers
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_until_t_serves_the_answers_the_live_views_gave_at_t() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let events: Vec<Event> = history(HistoryConfig::with_events(5, 6_000)).collect();
    let t = events[3_000].occurred_at;
    let (before, after): (Vec<Event>, Vec<Event>) =
        events.into_iter().partition(|e| e.occurred_at <= t);
    assert!(!after.is_empty());
    let server = Server::start(&data, &[]);
    let http = Http::default();
    let token = post_all(&http, &server, &before).await;
    // Some customers of the first part, found the way a desk finds them: by a handle.
    let mut customers = Vec::new();
    for event in before
        .iter()
        .filter(|e| e.customer.is_some())
        .step_by(97)
        .take(8)
    {
        let handle = &event.customer.as_ref().unwrap().handles[0];
        let resolved = http
            .get(&server.url(&format!(
                "/v1/customers/resolve?kind={}&value={}",
                handle.kind,
                handle.value.replace('+', "%2B")
            )))
            .await;
        assert_eq!(resolved.status, 200, "{:?}", resolved.body);
        customers.push(resolved.body["customer_id"].as_str().unwrap().to_owned());
    }
    let now = format_time(&t);
    let at_t = answers(&http, &server, &customers, &now, &token).await;
    // History goes on.
    let later = post_all(&http, &server, &after).await;
    let moved = answers(&http, &server, &customers, &now, &later).await;
    assert_ne!(
        at_t, moved,
        "the later events changed nothing: the test would prove nothing"
    );
    server.stop();

    let replayed = dir.path().join("as-of-t");
    run(&[
        "replay",
        "--data-dir",
        data.to_str().unwrap(),
        "--out",
        replayed.to_str().unwrap(),
        "--until",
        &now,
    ]);
    let analyst = Server::start(&replayed, &["--read-only"]);
    let replayed_answers = answers(&http, &analyst, &customers, &now, "").await;
    for ((path, live), (_, replay)) in at_t.iter().zip(&replayed_answers) {
        assert_eq!(
            live, replay,
            "GET {path} differs between live at T and replay --until T"
        );
    }
    analyst.stop();
}

/// Figures that only grow as events are added: an answer that shows less than an earlier
/// one came from a half-built view.
fn growing_figures(journeys: &Value, summary: &Value) -> (u64, u64) {
    (
        journeys["journeys"].as_u64().unwrap(),
        summary["rows"][0]["offered"].as_u64().unwrap(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rebuild_under_query_load_never_fails_nor_goes_back_in_time() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]);
    let http = Http::default();
    let events: Vec<Event> = history(HistoryConfig::with_events(9, 40_000)).collect();
    let (first, rest) = events.split_at(30_000);
    post_all(&http, &server, first).await;
    support::wait_ready(&http, &server).await;

    // Readers: query in a loop throughout, checking every answer.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let reader = {
        let (http, stop) = (http.clone(), stop.clone());
        let journeys_url = server.url("/v1/reports/journeys");
        let summary_url = server.url("/v1/reports/summary?group_by=none");
        let queues_url = server.url("/v1/queues");
        tokio::spawn(async move {
            let mut last = (0, 0);
            let mut reads = 0u64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let journeys = http.get(&journeys_url).await;
                let summary = http.get(&summary_url).await;
                let queues = http.get(&queues_url).await;
                for answer in [&journeys, &summary, &queues] {
                    assert!(
                        answer.status < 500,
                        "a query failed during the rebuild: {answer:?}"
                    );
                    assert_eq!(answer.status, 200, "{answer:?}");
                }
                let figures = growing_figures(&journeys.body, &summary.body);
                assert!(
                    figures.0 >= last.0 && figures.1 >= last.1,
                    "an answer went back in time: {figures:?} after {last:?}"
                );
                last = figures;
                reads += 1;
            }
            reads
        })
    };
    // Writers keep going while the views rebuild.
    let writer = {
        let http = http.clone();
        let url = server.url("/v1/events");
        let rest = rest.to_vec();
        tokio::spawn(async move {
            for chunk in rest.chunks(100) {
                let answer = http
                    .send("POST", &url, "application/json", json_array(chunk))
                    .await;
                assert_eq!(answer.status, 202, "{answer:?}");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
    };
    let mut saw_progress = false;
    for view in ["journey", "queue", "reporting", "segments", "engagement"] {
        let answer = http
            .send(
                "POST",
                &server.url(&format!("/v1/views/{view}/rebuild")),
                "application/json",
                Vec::new(),
            )
            .await;
        assert_eq!(answer.status, 202, "{answer:?}");
    }
    let deadline = Instant::now() + Duration::from_secs(180);
    loop {
        let views = http.get(&server.url("/v1/views")).await.body;
        let views = views["views"].as_array().unwrap().clone();
        saw_progress |= views.iter().any(|v| !v["rebuilding"].is_null());
        if views
            .iter()
            .all(|v| v["version"] == 2 && v["rebuilding"].is_null())
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the rebuilds did not finish: {views:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        saw_progress,
        "GET /v1/views never showed a rebuild in progress"
    );
    writer.await.unwrap();
    support::wait_ready(&http, &server).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let reads = reader.await.unwrap();
    assert!(
        reads >= 5,
        "only {reads} rounds of queries ran during the rebuild"
    );
    server.stop();
}

/// The peak resident memory of a running process, from `/proc` (kB).
fn peak_rss_kb(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))
        .and_then(|value| value.trim().trim_end_matches("kB").trim().parse().ok())
}

/// The bound on export's peak memory for a million events. Measured here: about
/// 190 MB, of which about 110 MB is sled recovering the 800 MB log when it opens (an export
/// of the small agents topic alone peaks there); holding the history in memory would take
/// gigabytes.
const EXPORT_PEAK_BOUND_KB: u64 = 200 * 1024;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exporting_a_million_events_streams_with_bounded_memory() {
    const EVENTS: u64 = 1_000_000;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    {
        let log = EmbeddedLog::open(&data.join("log"), PartitionCounts::default()).unwrap();
        let mut batch = Vec::with_capacity(10_000);
        for event in history(HistoryConfig::with_events(3, EVENTS).with_customer_ids()) {
            batch.push(omnilog_ingest::log_record(&event).expect("events with customer ids"));
            if batch.len() == 10_000 {
                log.append(std::mem::take(&mut batch)).await.unwrap();
            }
        }
        log.append(batch).await.unwrap();
    }
    let mut export = Command::new(BINARY)
        .args([
            "export",
            "--data-dir",
            data.to_str().unwrap(),
            "--topics",
            "all",
        ])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = export.id();
    let stdout = export.stdout.take().unwrap();
    let mut peak = 0;
    let mut lines = 0u64;
    for line in BufReader::new(stdout).lines() {
        let line = line.unwrap();
        assert!(line.starts_with('{'));
        lines += 1;
        if lines.is_multiple_of(10_000) {
            peak = peak.max(peak_rss_kb(pid).unwrap_or(0));
        }
    }
    peak = peak.max(peak_rss_kb(pid).unwrap_or(0));
    assert!(export.wait().unwrap().success());
    assert_eq!(lines, EVENTS);
    eprintln!("export of {EVENTS} events: peak RSS {} MB", peak / 1024);
    assert!(peak > 0, "no memory reading: is /proc mounted?");
    assert!(
        peak < EXPORT_PEAK_BOUND_KB,
        "peak RSS {peak} kB is not under {EXPORT_PEAK_BOUND_KB} kB"
    );
}

/// The views' digests of a data dir, replayed into `out` (from `omnilog inspect`).
fn replayed_digests(data: &std::path::Path, out: &std::path::Path) -> Vec<(String, String)> {
    replayed_digests_with(data, out, &[])
}

/// [`replayed_digests`], with more arguments to `omnilog replay`.
fn replayed_digests_with(
    data: &std::path::Path,
    out: &std::path::Path,
    more: &[&str],
) -> Vec<(String, String)> {
    let mut args = vec![
        "replay",
        "--data-dir",
        data.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ];
    args.extend_from_slice(more);
    run(&args);
    // A replay in several passes spills under --out; nothing of it stays.
    let left: Vec<String> = std::fs::read_dir(out)
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| name.starts_with("spill"))
        .collect();
    assert!(
        left.is_empty(),
        "a replay left {left:?} in {}",
        out.display()
    );
    // The identity view takes its name once the replay has succeeded.
    assert!(out.join("identity.bin").is_file(), "no identity view saved");
    assert!(
        !out.join("identity.bin.partial").exists(),
        "the identity view kept its partial name"
    );
    let inspected: Value =
        serde_json::from_str(&run(&["inspect", "--data-dir", out.to_str().unwrap()])).unwrap();
    inspected["views"]
        .as_array()
        .unwrap()
        .iter()
        .map(|view| {
            (
                view["view"].as_str().unwrap().to_owned(),
                view["sha256"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

/// Carrying a history over: `export` of one data dir, `import` into another gives the same
/// views; importing again stores nothing twice; a bad line stops the import before its
/// batch, naming the line, and importing the fixed file goes on from there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_exported_history_imports_into_the_same_views_and_resumes_after_a_bad_line() {
    let dir = tempfile::tempdir().unwrap();
    let source = dir.path().join("source");
    let events: Vec<Event> = history(HistoryConfig::with_events(41, 3_000)).collect();
    let server = Server::start(&source, &[]);
    post_all(&Http::default(), &server, &events).await;
    server.stop();
    let exported = run(&[
        "export",
        "--data-dir",
        source.to_str().unwrap(),
        "--topics",
        "all",
    ]);
    let lines: Vec<&str> = exported.lines().collect();
    assert_eq!(lines.len(), events.len());
    let file = dir.path().join("history.jsonl");
    std::fs::write(&file, &exported).unwrap();

    let target = dir.path().join("target");
    let output = run(&[
        "import",
        file.to_str().unwrap(),
        "--data-dir",
        target.to_str().unwrap(),
        "--batch",
        "500",
    ]);
    assert!(output.contains("3000 new, 0 already"), "{output}");
    let source_views = replayed_digests(&source, &dir.path().join("source-views"));
    assert_eq!(
        replayed_digests(&target, &dir.path().join("target-views")),
        source_views,
        "the imported history projects to other views"
    );
    // A replay that may keep nothing in memory (it writes and lets go after every batch,
    // and after every partition) builds the same views as one that keeps them all; so does
    // one that reads each partition (about 250 records) in five passes, each folding a fifth
    // of its customers.
    for (out, options, what) in [
        (
            "source-views-no-cache",
            ["--cache-mb", "0", "--batch", "100"],
            "a replay without cache",
        ),
        (
            "source-views-shares",
            ["--pass-records", "60", "--batch", "100"],
            "a replay in passes of a share of the customers",
        ),
    ] {
        assert_eq!(
            replayed_digests_with(&source, &dir.path().join(out), &options),
            source_views,
            "{what} builds other views"
        );
    }
    let again = run(&[
        "import",
        file.to_str().unwrap(),
        "--data-dir",
        target.to_str().unwrap(),
    ]);
    assert!(again.contains("0 new, 3000 already"), "{again}");

    // Line 1,234 broken: the two batches of 500 before it are written, nothing after.
    let mut broken: Vec<String> = lines.iter().map(|l| (*l).to_owned()).collect();
    broken[1_233] = broken[1_233].replace("\"occurred_at\"", "\"occured_at\"");
    let broken_file = dir.path().join("broken.jsonl");
    std::fs::write(&broken_file, broken.join("\n")).unwrap();
    let partial = dir.path().join("partial");
    let failed = Command::new(BINARY)
        .args(["import", broken_file.to_str().unwrap(), "--batch", "500"])
        .arg("--data-dir")
        .arg(&partial)
        .env("RUST_LOG", "warn")
        .output()
        .unwrap();
    assert!(!failed.status.success());
    let message = String::from_utf8_lossy(&failed.stderr);
    assert!(message.contains("line 1234"), "{message}");
    let count = |dir: &std::path::Path| -> u64 {
        let inspected: Value =
            serde_json::from_str(&run(&["inspect", "--data-dir", dir.to_str().unwrap()])).unwrap();
        inspected["log"]["omnilog.interactions"]["records"]
            .as_u64()
            .unwrap()
            + inspected["log"]["omnilog.agents"]["records"]
                .as_u64()
                .unwrap()
    };
    assert_eq!(count(&partial), 1_000);
    let resumed = run(&[
        "import",
        file.to_str().unwrap(),
        "--data-dir",
        partial.to_str().unwrap(),
    ]);
    assert!(resumed.contains("2000 new, 1000 already"), "{resumed}");
    assert_eq!(count(&partial), 3_000);
}

/// Analysts do not stop the desk: `export`, `replay` and `inspect` of the data dir of a
/// running server, while it takes events and answers queries, succeed, and the server
/// answers every request meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn export_replay_and_inspect_read_the_data_dir_of_a_running_server_under_ingest() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let server = Server::start(&data, &[]);
    let http = Http::default();
    let events: Vec<Event> = history(HistoryConfig::with_events(43, 6_000)).collect();
    let (before, during) = events.split_at(2_000);
    post_all(&http, &server, before).await;

    // Ingest and queries go on while the analysts' commands run.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer = {
        let (http, url, during, stop) = (
            http.clone(),
            server.url("/v1/events"),
            during.to_vec(),
            stop.clone(),
        );
        tokio::spawn(async move {
            let mut posted = 0;
            for chunk in during.chunks(100) {
                let answer = http
                    .send("POST", &url, "application/json", json_array(chunk))
                    .await;
                assert_eq!(answer.status, 202, "{:?}", answer.body);
                posted += chunk.len();
                if stop.load(std::sync::atomic::Ordering::Relaxed) {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            posted
        })
    };
    let reader = {
        let (http, url, stop) = (http.clone(), server.url("/v1/queues"), stop.clone());
        tokio::spawn(async move {
            let mut answered = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) && answered < 10_000 {
                let answer = http.get(&url).await;
                assert_eq!(answer.status, 200, "{:?}", answer.body);
                answered += 1;
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            answered
        })
    };

    let data_arg = data.to_str().unwrap().to_owned();
    let out = dir.path().join("replayed");
    let out_arg = out.to_str().unwrap().to_owned();
    let (exported, replayed, inspected) = tokio::task::spawn_blocking(move || {
        let exported = run(&["export", "--data-dir", &data_arg, "--topics", "all"]);
        let replayed = run(&["replay", "--data-dir", &data_arg, "--out", &out_arg]);
        let inspected = run(&["inspect", "--data-dir", &data_arg]);
        (exported, replayed, inspected)
    })
    .await
    .unwrap();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let posted = writer.await.unwrap();
    let answered = reader.await.unwrap();
    assert!(answered > 0);

    // What was acknowledged before the commands started is in what they read.
    let lines = exported.lines().count();
    assert!(
        (before.len()..=before.len() + posted).contains(&lines),
        "{lines} lines exported"
    );
    assert!(replayed.contains("replayed into"), "{replayed}");
    let inspected: Value = serde_json::from_str(&inspected).unwrap();
    assert!(
        inspected["views"]["unavailable"]
            .as_str()
            .unwrap()
            .contains("running server"),
        "{inspected}"
    );
    server.stop();
}
