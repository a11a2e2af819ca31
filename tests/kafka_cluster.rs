//! The distributed mode end to end, on a real Kafka-compatible broker (tansu, memory
//! storage, on loopback): two ingest servers and three projector instances of one group;
//! 100,000 events through the event API (two seeded simulators, one per ingest server) and
//! through channel webhooks, and merges of customers whose partitions differ; one projector SIGKILLed mid-way and a fourth one added later.
//! Once the group settles, every view answers through every live instance exactly what a
//! read-only server over `omnilog replay` of the same topics answers: every customer's
//! journey, every report, the queues and the agents.
//!
//! tansu must be installed (`cargo install tansu --locked --features dynostore`; `.ci/run`
//! does it); `OMNILOG_TANSU` may name the binary.

mod support;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use omnilog_kafka::{KafkaConfig, KafkaLog};
use omnilog_log::{EventLog, LogRecord, PartitionCounts, Topic};
use serde_json::Value;
use support::{BINARY, Http, Server};

const PARTITIONS: u32 = 12;
const EVENTS_PER_SIMULATOR: u64 = 50_000;

/// The tansu binary: `OMNILOG_TANSU`, else on the PATH, else cargo's bin directory.
fn tansu() -> PathBuf {
    if let Some(path) = std::env::var_os("OMNILOG_TANSU") {
        return PathBuf::from(path);
    }
    let mut candidates: Vec<PathBuf> = std::env::var_os("PATH")
        .map(|paths| {
            std::env::split_paths(&paths)
                .map(|dir| dir.join("tansu"))
                .collect()
        })
        .unwrap_or_default();
    if let Some(home) = std::env::var_os("CARGO_HOME").or_else(|| {
        std::env::var_os("HOME").map(|home| Path::new(&home).join(".cargo").into_os_string())
    }) {
        candidates.push(Path::new(&home).join("bin").join("tansu"));
    }
    candidates
        .into_iter()
        .find(|path| path.is_file())
        .expect("tansu is not installed: cargo install tansu --locked --features dynostore (bash .ci/run installs it)")
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|addr| addr.port())
        .expect("a free port")
}

/// A tansu broker with memory storage; killed when dropped.
struct Broker {
    child: Child,
    address: String,
}

impl Broker {
    /// Starts tansu on a free port. The port is free when asked for, not necessarily when
    /// tansu binds it (another process may take it in between): a tansu that exits is
    /// started again on another port, and one is only taken once it listens and still runs
    /// (a connection that succeeds to a port tansu lost would reach whatever took it).
    fn start() -> Broker {
        (0..5)
            .find_map(|_attempt| Broker::start_on(free_port()))
            .expect("tansu exited at start on five ports")
    }

    /// Starts tansu on `port` and waits until it listens, still running; `None` if it
    /// exited (the port was taken), so the caller tries another port.
    fn start_on(port: u16) -> Option<Broker> {
        let address = format!("127.0.0.1:{port}");
        let url = format!("tcp://{address}");
        let mut child = Command::new(tansu())
            .args([
                "broker",
                "--listener-url",
                &url,
                "--advertised-listener-url",
                &url,
            ])
            .args(["--storage-engine", "memory://tansu/"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting tansu");
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                eprintln!("tansu exited on port {port} ({status}); starting it on another");
                return None;
            }
            if std::net::TcpStream::connect(&address).is_ok()
                && matches!(child.try_wait(), Ok(None))
            {
                return Some(Broker { child, address });
            }
            if Instant::now() >= deadline {
                // Stopped before the test fails: a test stops what it starts.
                let _ = child.kill();
                let _ = child.wait();
                panic!("tansu did not listen within 30 s");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn open_log(brokers: &str) -> KafkaLog {
    let mut config = KafkaConfig::new(brokers);
    config.partitions = PartitionCounts::uniform(PARTITIONS);
    config.client_id = "e2e-test-reader".to_owned();
    KafkaLog::open(config).await.expect("open the Kafka log")
}

async fn total_events(log: &KafkaLog) -> u64 {
    let mut total = 0;
    for topic in [Topic::Interactions, Topic::Agents] {
        total += log
            .end_offsets(topic)
            .await
            .map(|ends| ends.iter().sum::<u64>())
            .unwrap_or(0);
    }
    total
}

/// Reads a whole topic (past its reported end: tansu reports ends short of the last
/// batch); returns the number of records and their keys.
async fn read_all(log: &KafkaLog, topic: Topic) -> (u64, BTreeSet<String>) {
    let mut keys = BTreeSet::new();
    let mut count = 0;
    let ends = log.end_offsets(topic).await.expect("ends");
    let mut next = vec![0; ends.len()];
    // Takes the records read from a partition's `next` on: true when some came.
    let mut take = |records: Vec<LogRecord>, next: &mut u64| {
        let read_some = !records.is_empty();
        for record in records {
            assert_eq!(record.offset, *next, "offsets are contiguous");
            *next = record.offset + 1;
            count += 1;
            keys.insert(String::from_utf8_lossy(&record.key).into_owned());
        }
        read_some
    };
    // Below the reported ends records are there: `read_before_end` asks again while a
    // fetch is on its way (for up to `DELIVERY_PATIENCE`, then fails the read).
    for (partition, &end) in ends.iter().enumerate() {
        while next[partition] < end {
            let records =
                omnilog_log::read_before_end(log, topic, partition as u32, next[partition], 5_000)
                    .await
                    .expect("read");
            take(records, &mut next[partition]);
        }
    }
    // Past the reported ends, a read answers with what has been fetched so far, which may
    // be nothing yet while a last batch is on its way: the topic is read through once reads
    // of every partition past its end have come back empty for a second.
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut quiet_since = Instant::now();
    while quiet_since.elapsed() < Duration::from_secs(1) {
        assert!(Instant::now() < deadline, "{topic:?} kept growing");
        let mut read_some = false;
        for (partition, next) in next.iter_mut().enumerate() {
            let records = log
                .read(topic, partition as u32, *next, 5_000)
                .await
                .expect("read");
            read_some |= take(records, next);
        }
        if read_some {
            quiet_since = Instant::now();
        } else {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    (count, keys)
}

fn simulator(target: &str, seed: u64, events: u64) -> Child {
    Command::new(BINARY)
        .args(["simulate", "--target", target, "--quiet"])
        .args(["--events", &events.to_string(), "--seed", &seed.to_string()])
        .args(["--rate", "1000000", "--batch", "100", "--concurrency", "4"])
        .args(["--customers", "3000", "--start", "2026-03-02T08:00:00Z"])
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .spawn()
        .expect("starting a simulator")
}

/// Posts every channel fixture to the ingest servers in turn; returns the events written.
async fn post_channel_fixtures(http: &Http, servers: &[&Server]) -> u64 {
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("../channels/fixtures");
    let mut written = 0;
    let mut turn = 0;
    let mut channels: Vec<_> = std::fs::read_dir(&fixtures)
        .expect("fixtures")
        .flatten()
        .collect();
    channels.sort_by_key(|entry| entry.file_name());
    for channel in channels {
        let name = channel.file_name().to_string_lossy().into_owned();
        let mut files: Vec<_> = std::fs::read_dir(channel.path())
            .expect("a channel's fixtures")
            .flatten()
            .collect();
        files.sort_by_key(|entry| entry.file_name());
        for file in files {
            let file_name = file.file_name().to_string_lossy().into_owned();
            if file_name.ends_with(".events.json") {
                continue;
            }
            let body = std::fs::read(file.path()).expect("a fixture");
            let content_type = if file_name.ends_with(".form") {
                "application/x-www-form-urlencoded".to_owned()
            } else if file_name.ends_with(".eml") {
                "message/rfc822".to_owned()
            } else if file_name.ends_with(".multipart") {
                // The body's first line is its first delimiter: `--` and the boundary.
                let first_line = body.split(|b| *b == b'\r').next().unwrap_or_default();
                let boundary = String::from_utf8_lossy(first_line.get(2..).unwrap_or_default());
                format!("multipart/form-data; boundary={boundary}")
            } else {
                "application/json".to_owned()
            };
            let server = servers[turn % servers.len()];
            turn += 1;
            let answer = http
                .send(
                    "POST",
                    &server.url(&format!("/v1/channels/{name}")),
                    &content_type,
                    body,
                )
                .await;
            assert_eq!(answer.status, 202, "{name}/{file_name}: {:?}", answer.body);
            written += answer.body["accepted"].as_u64().unwrap_or(0);
        }
    }
    written
}

/// Waits until a child process exits; asserts success.
fn wait_success(mut child: Child, what: &str, limit: Duration) {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().expect("waiting") {
            assert!(status.success(), "{what} exited with {status}");
            return;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("{what} did not finish within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Each instance's process state, readiness and ownership, for a failure's message.
async fn what_instances_say(http: &Http, instances: &[&Server]) -> String {
    let mut said = String::new();
    for instance in instances {
        let pid = instance.child.id();
        let state = std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .ok()
            .and_then(|stat| {
                let after_name = stat.rsplit_once(')')?.1;
                after_name.split_whitespace().next().map(str::to_owned)
            })
            .unwrap_or_else(|| "gone".to_owned());
        let ready = http.get(&instance.url("/readyz")).await;
        let views = http.get(&instance.url("/v1/views")).await;
        said.push_str(&format!(
            "{} (pid {pid}, state {state}): /readyz {} {}; ownership {}\n",
            instance.base, ready.status, ready.body, views.body["ownership"]
        ));
    }
    said
}

/// Waits until every instance is ready and answers a global query of each view.
async fn settle(http: &Http, instances: &[&Server]) {
    let deadline = Instant::now() + Duration::from_secs(240);
    'again: loop {
        if Instant::now() >= deadline {
            panic!(
                "the projector group did not settle within 240 s:\n{}",
                what_instances_say(http, instances).await
            );
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
        for instance in instances {
            for path in [
                "/readyz",
                "/v1/reports/journeys",
                "/v1/queues",
                "/v1/reports/summary",
                "/v1/reports/channels",
            ] {
                if http.get(&instance.url(path)).await.status != 200 {
                    continue 'again;
                }
            }
            let views = http.get(&instance.url("/v1/views")).await;
            let lagging = views.body["views"]
                .as_array()
                .is_none_or(|views| views.iter().any(|v| v["lag"].as_u64() != Some(0)));
            if lagging {
                continue 'again;
            }
        }
        return;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_projector_group_that_loses_and_gains_instances_answers_what_replay_answers() {
    let broker = Broker::start();
    let brokers = broker.address.clone();
    let dir = tempfile::tempdir().unwrap();
    let partitions = PARTITIONS.to_string();
    let kafka = [
        "--brokers",
        brokers.as_str(),
        "--partitions",
        partitions.as_str(),
    ];
    let with_group = |extra: &[&'static str]| -> Vec<String> {
        kafka
            .iter()
            .map(|s| s.to_string())
            .chain(extra.iter().map(|s| s.to_string()))
            .collect()
    };
    let start = |command: &str, name: &str, flags: &[String]| {
        let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
        Server::start_command(command, &dir.path().join(name), &flags)
    };
    // The topics exist before anyone writes (the first server creates them).
    let ingest_a = start("ingest-server", "ingest-a", &with_group(&[]));
    let ingest_b = start("ingest-server", "ingest-b", &with_group(&[]));
    let projector_flags = with_group(&["--group", "e2e"]);
    let p1 = start("projector", "p1", &projector_flags);
    let p2 = start("projector", "p2", &projector_flags);
    let p3 = start("projector", "p3", &projector_flags);
    let http = Http::default();
    let log = open_log(&brokers).await;

    let sim_a = simulator(&ingest_a.base, 1, EVENTS_PER_SIMULATOR);
    let sim_b = simulator(&ingest_b.base, 2, EVENTS_PER_SIMULATOR);
    let from_channels = post_channel_fixtures(&http, &[&ingest_a, &ingest_b]).await;

    // SIGKILL a projector mid-way.
    let deadline = Instant::now() + Duration::from_secs(600);
    while total_events(&log).await < EVENTS_PER_SIMULATOR {
        assert!(Instant::now() < deadline, "ingest made no progress");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    p3.kill();
    // A fourth instance joins later, while writes still come.
    while total_events(&log).await < EVENTS_PER_SIMULATOR * 3 / 2 {
        assert!(Instant::now() < deadline, "ingest made no progress");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let p4 = start("projector", "p4", &projector_flags);
    wait_success(sim_a, "the first simulator", Duration::from_secs(600));
    wait_success(sim_b, "the second simulator", Duration::from_secs(600));
    // Merge a few customers whose partitions differ: their journeys then span owners.
    let (_, before_merges) = read_all(&log, Topic::Interactions).await;
    let ids: Vec<&String> = before_merges.iter().collect();
    let mut merges = Vec::new();
    for pair in ids.chunks(2).take(40) {
        let [from, into] = pair else { continue };
        let partition = |id: &str| omnilog_log::partition_for(id.as_bytes(), PARTITIONS);
        if partition(from) != partition(into) && merges.len() < 5 {
            merges.push(serde_json::json!({
                "occurred_at": "2026-03-02T12:00:00Z",
                "type": "customers_merged",
                "from_customer": from,
                "into_customer": into,
            }));
        }
    }
    assert_eq!(merges.len(), 5, "five merges across partitions");
    let merged = http.post_events(&ingest_a, &Value::Array(merges)).await;
    assert_eq!(merged["accepted"], 5, "{merged:?}");

    let (interactions, customers) = read_all(&log, Topic::Interactions).await;
    let (agents, _) = read_all(&log, Topic::Agents).await;
    assert_eq!(
        interactions + agents,
        2 * EVENTS_PER_SIMULATOR + from_channels + 5,
        "every acknowledged event is in the log once"
    );
    assert!(interactions + agents >= 100_000);

    let instances = [&p1, &p2, &p4];
    settle(&http, &instances).await;

    // The same topics replayed into a fresh store, served read-only.
    let replayed = dir.path().join("replayed");
    support::run(&[
        "replay",
        "--brokers",
        &brokers,
        "--partitions",
        &partitions,
        "--out",
        replayed.to_str().unwrap(),
    ]);
    let reference = Server::start(&replayed, &["--read-only"]);

    assert!(customers.len() > 1_000, "{} customers", customers.len());
    for (n, customer) in customers.iter().enumerate() {
        let path = format!("/v1/customers/{customer}/journey");
        let expected: Value = http.get(&reference.url(&path)).await.body;
        let instance = instances[n % instances.len()];
        let answer = http.get(&instance.url(&path)).await;
        assert_eq!(
            answer.status, 200,
            "{path} on {}: {:?}",
            instance.base, answer.body
        );
        assert_eq!(
            answer.body,
            expected,
            "{path} on {} (partition {}; ownership {})",
            instance.base,
            omnilog_log::partition_for(customer.as_bytes(), PARTITIONS),
            http.get(&instance.url("/v1/views")).await.body["ownership"]
        );
    }
    let mut paths: Vec<String> = vec![
        "/v1/reports/journeys".to_owned(),
        "/v1/reports/topics".to_owned(),
        "/v1/reports/channels?group_by=segment".to_owned(),
        "/v1/reports/engagement".to_owned(),
        "/v1/queues?now=2026-03-03T00:00:00Z".to_owned(),
        "/v1/agents".to_owned(),
    ];
    for group_by in ["none", "channel", "queue", "hour", "day"] {
        paths.push(format!("/v1/reports/summary?group_by={group_by}"));
    }
    for path in &paths {
        let expected = http.get(&reference.url(path)).await;
        assert_eq!(expected.status, 200, "{path}: {:?}", expected.body);
        for instance in instances {
            let answer = http.get(&instance.url(path)).await;
            assert_eq!(
                answer.status, 200,
                "{path} on {}: {:?}",
                instance.base, answer.body
            );
            assert_eq!(answer.body, expected.body, "{path} on {}", instance.base);
        }
    }
    reference.stop();
    for server in [p1, p2, p4, ingest_a, ingest_b] {
        server.stop();
    }
    drop(broker);
}
