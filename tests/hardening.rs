//! Issue 16's findings, each reproduced against the real `omnilog serve` on loopback with
//! the request the issue gives, and shown fixed: one test per finding (5, the full disk, is
//! tested beside its fix in the log and ingest crates).
//!
//! Narrower tests of the same fixes sit beside them: `crates/api/tests/ingest_http.rs`
//! (the router in process), `crates/api/tests/serving.rs` (the server loop's time limits),
//! `crates/events/tests/json_rules.rs` (control characters and duplicate keys) and
//! `crates/api/src/problem.rs` (5xx bodies in words). These tests add what only the whole
//! binary shows: its flags, its memory, its exit on SIGTERM and a log that already holds a
//! poison record.

mod support;

use std::time::{Duration, Instant};

use bytes::Bytes;
use omnilog_log::{AppendRecord, EmbeddedLog, EventLog, PartitionCounts, Topic};
use serde_json::{Value, json};
use support::{Http, Reply, Server, heap_settled_under, log_records, memory_of, wait_ready};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The `host:port` a server listens on.
fn address(server: &Server) -> String {
    server
        .base
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .to_owned()
}

/// Asserts `reply` is a problem of `status` (RFC 9457 body, `application/problem+json`).
fn assert_problem(reply: &Reply, status: u16, what: &str) -> Value {
    assert_eq!(
        reply.status,
        status,
        "{what}: {}",
        String::from_utf8_lossy(&reply.body)
    );
    assert_eq!(reply.content_type(), "application/problem+json", "{what}");
    let body = reply.json();
    assert_eq!(body["status"], status, "{what}: {body}");
    assert!(
        body["type"]
            .as_str()
            .is_some_and(|t| t.starts_with("/problems/")),
        "{what}: {body}"
    );
    assert!(
        body["detail"].as_str().is_some_and(|d| !d.is_empty()),
        "{what}: {body}"
    );
    body
}

async fn post_json(http: &Http, server: &Server, path: &str, body: &str) -> Reply {
    http.request(
        "POST",
        &server.url(path),
        &[("content-type", b"application/json")],
        body.as_bytes().to_vec(),
    )
    .await
    .unwrap_or_else(|e| panic!("POST {path}: {e}"))
}

async fn get(http: &Http, server: &Server, path: &str) -> Reply {
    http.request("GET", &server.url(path), &[], Vec::new())
        .await
        .unwrap_or_else(|e| panic!("GET {path}: {e}"))
}

/// The issue's poisoned `queued` event (finding 1), as it was posted.
const NUL_IN_QUEUE: &str = r#"[{"source":"p","source_event_id":"n0","occurred_at":"2026-03-02T09:00:00Z","customer":{"handles":[{"kind":"phone","value":"+15550000001"}]},"interaction_id":"c0","channel":"ivr","type":"queued","queue":"a\u0000b","priority":0,"skills":[]}]"#;

/// Every grouping of the summary report the issue saw answer 500.
const SUMMARY_GROUPINGS: [&str; 4] = ["none", "queue", "channel", "hour"];

/// Every report a desk reads; each must answer 200.
async fn assert_reports_answer(http: &Http, server: &Server, after: &str) {
    for group_by in SUMMARY_GROUPINGS {
        let reply = get(
            http,
            server,
            &format!("/v1/reports/summary?group_by={group_by}&after={after}"),
        )
        .await;
        assert_eq!(
            reply.status,
            200,
            "summary by {group_by}: {}",
            String::from_utf8_lossy(&reply.body)
        );
    }
    for path in ["/v1/reports/journeys", "/v1/reports/topics", "/v1/queues"] {
        let reply = get(http, server, path).await;
        assert_eq!(
            reply.status,
            200,
            "{path}: {}",
            String::from_utf8_lossy(&reply.body)
        );
    }
}

/// A handle value, a handle kind or a customer id longer than the identity view keeps
/// (`MAX_HANDLE_VALUE_BYTES` and the others, in the events crate) is refused naming the
/// field, and nothing of its request is written: not the clean event before it either.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_handle_or_customer_id_is_refused_and_nothing_of_its_request_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]);
    let http = Http::default();
    let event = |source_event_id: &str, customer: Value| {
        json!({"source": "p", "source_event_id": source_event_id,
               "occurred_at": "2026-03-02T09:00:00Z", "customer": customer,
               "interaction_id": "c0", "channel": "email", "type": "interaction_started",
               "direction": "inbound"})
    };
    let clean = event(
        "e0",
        json!({"handles": [{"kind": "email", "value": "fay@example.com"}]}),
    );
    let long_value = format!("{}@example.com", "f".repeat(501));
    let oversized = [
        (
            json!({"handles": [{"kind": "email", "value": long_value}]}),
            "[1].customer.handles[0]",
            "512 bytes",
        ),
        (
            json!({"handles": [{"kind": "k".repeat(65), "value": "v"}]}),
            "[1].customer.handles[0]",
            "64 bytes",
        ),
        (
            json!({"id": "c".repeat(257)}),
            "[1].customer.id",
            "256 bytes",
        ),
    ];
    for (customer, field, limit) in oversized {
        let body = json!([clean, event("e1", customer)]).to_string();
        let reply = post_json(&http, &server, "/v1/events", &body).await;
        let problem = assert_problem(&reply, 400, field);
        assert_eq!(problem["field"], field);
        assert!(
            problem["detail"]
                .as_str()
                .unwrap_or_default()
                .contains(limit),
            "{problem}"
        );
    }
    let reply = get(
        &http,
        &server,
        "/v1/customers/resolve?kind=email&value=fay@example.com",
    )
    .await;
    assert_eq!(
        reply.status,
        404,
        "{}",
        String::from_utf8_lossy(&reply.body)
    );

    // At the limits, the same events are taken.
    let at_limits = json!([event(
        "e2",
        json!({"id": "c".repeat(256),
               "handles": [{"kind": "k".repeat(64), "value": "v".repeat(512)}]})
    )]);
    let reply = post_json(&http, &server, "/v1/events", &at_limits.to_string()).await;
    assert_eq!(
        reply.status,
        202,
        "{}",
        String::from_utf8_lossy(&reply.body)
    );
}

/// Finding 1: a NUL (or any control character) in a queue, agent or interaction id is
/// refused at the door naming the field, through JSON and a channel alike, so nothing of it
/// reaches the log; the reports keep answering, also after a restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_nul_in_a_queue_agent_or_interaction_is_refused_and_reports_keep_answering() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]);
    let http = Http::default();

    let reply = post_json(&http, &server, "/v1/events", NUL_IN_QUEUE).await;
    assert_eq!(
        assert_problem(&reply, 400, "NUL in queue")["field"],
        "[0].queue"
    );
    let nul_agent = NUL_IN_QUEUE.replace(
        r#""type":"queued","queue":"a\u0000b","priority":0,"skills":[]"#,
        r#""type":"assigned","agent_id":"alice\u0000bob""#,
    );
    let reply = post_json(&http, &server, "/v1/events", &nul_agent).await;
    assert_eq!(
        assert_problem(&reply, 400, "NUL in agent_id")["field"],
        "[0].agent_id"
    );
    let nul_interaction = NUL_IN_QUEUE
        .replace(r#""a\u0000b""#, r#""billing""#)
        .replace(r#""c0""#, r#""c\u00000""#);
    let reply = post_json(&http, &server, "/v1/events", &nul_interaction).await;
    assert_eq!(
        assert_problem(&reply, 400, "NUL in interaction_id")["field"],
        "[0].interaction_id"
    );
    let escape_in_chat = json!({
        "session_id": "s\u{1b}[2J", "visitor_id": "v1", "text": "hello",
        "sent_at": "2026-03-02T09:00:00Z"
    });
    let reply = post_json(
        &http,
        &server,
        "/v1/channels/chat",
        &escape_in_chat.to_string(),
    )
    .await;
    assert_problem(&reply, 400, "escape in a chat session id");

    // The same desk's clean events: an agent, the call queued, then assigned to her.
    let clean = json!([
        {"source": "p", "source_event_id": "s0", "occurred_at": "2026-03-02T08:59:00Z",
         "type": "agent_state", "agent_id": "alice", "state": "available", "skills": ["a"],
         "capacity": {"ivr": 1}},
        {"source": "p", "source_event_id": "n0", "occurred_at": "2026-03-02T09:00:00Z",
         "customer": {"handles": [{"kind": "phone", "value": "+15550000001"}]},
         "interaction_id": "c0", "channel": "ivr", "type": "queued", "queue": "a",
         "priority": 0, "skills": []},
        {"source": "p", "source_event_id": "n1", "occurred_at": "2026-03-02T09:00:30Z",
         "customer": {"handles": [{"kind": "phone", "value": "+15550000001"}]},
         "interaction_id": "c0", "channel": "ivr", "type": "assigned", "agent_id": "alice"}
    ]);
    let receipt = http.post_events(&server, &clean).await;
    let token = receipt["token"].as_str().unwrap().to_owned();
    assert_reports_answer(&http, &server, &token).await;
    let agents = get(&http, &server, &format!("/v1/agents?after={token}")).await;
    assert_eq!(agents.status, 200);
    let agents = agents.json();
    let listed: Vec<Value> = agents
        .as_array()
        .or_else(|| agents["agents"].as_array())
        .cloned()
        .unwrap_or_else(|| panic!("a list of agents: {agents}"));
    assert_eq!(listed.len(), 1, "{agents}");
    assert_eq!(listed[0]["agent_id"], "alice");
    assert_eq!(listed[0]["assignments"], json!(["c0"]));
    assert_eq!(
        log_records(&http, &server, None).await,
        3,
        "only the clean events"
    );

    server.stop();
    let server = Server::start(dir.path(), &[]);
    wait_ready(&http, &server).await;
    assert_reports_answer(&http, &server, "").await;
}

/// An event as an older build wrote it to the log: validated by nothing, so it can carry
/// what the door now refuses.
fn record_as_written_before(json: &Value, customer: &str) -> AppendRecord {
    let mut clean = json.clone();
    for field in ["queue", "agent_id"] {
        if clean.get(field).is_some() {
            clean[field] = json!("placeholder");
        }
    }
    let mut event = omnilog_events::parse_event(clean.to_string().as_bytes()).unwrap();
    if let Some(known) = &mut event.customer {
        std::sync::Arc::make_mut(known).id = Some(customer.into());
    }
    match &mut event.body {
        omnilog_events::Body::Queued { queue, .. } => {
            *queue = json["queue"].as_str().unwrap().to_owned();
        }
        omnilog_events::Body::Assigned { agent_id } => {
            *agent_id = json["agent_id"].as_str().unwrap().to_owned();
        }
        other => panic!("not a poison of this test: {other:?}"),
    }
    AppendRecord {
        topic: Topic::Interactions,
        key: customer.to_owned(),
        event_id: event.event_id,
        payload: Bytes::from(omnilog_events::encode(&event)),
        headers: Vec::new(),
    }
}

/// Finding 1, the other half: a log that already holds the poison (an older build let it
/// in, and a log keeps everything) still serves every report, and an agent id with a NUL
/// is not read as another agent and an assignment.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_poison_already_in_the_log_does_not_stop_the_reports_nor_split_an_agent() {
    let dir = tempfile::tempdir().unwrap();
    {
        let log = EmbeddedLog::open(&dir.path().join("log"), PartitionCounts::default()).unwrap();
        let queued: Value = serde_json::from_str::<Value>(NUL_IN_QUEUE).unwrap()[0].clone();
        let mut assigned = queued.clone();
        for field in ["queue", "priority", "skills"] {
            assigned.as_object_mut().unwrap().remove(field);
        }
        assigned["type"] = json!("assigned");
        assigned["source_event_id"] = json!("n1");
        assigned["occurred_at"] = json!("2026-03-02T09:00:30Z");
        assigned["agent_id"] = json!("alice\u{0}bob");
        log.append(vec![
            record_as_written_before(&queued, "k-poison"),
            record_as_written_before(&assigned, "k-poison"),
        ])
        .await
        .unwrap();
    }
    let server = Server::start(dir.path(), &[]);
    let http = Http::default();
    wait_ready(&http, &server).await;
    assert_reports_answer(&http, &server, "").await;
    let agents = get(&http, &server, "/v1/agents").await;
    assert_eq!(
        agents.status,
        200,
        "{}",
        String::from_utf8_lossy(&agents.body)
    );
    let text = agents.json().to_string();
    assert!(
        !text.contains(r#""agent_id":"alice""#) && !text.contains(r#"["bob"]"#),
        "alice\\0bob was split into an agent and an assignment: {text}"
    );
    server.stop();
    let server = Server::start(dir.path(), &[]);
    wait_ready(&http, &server).await;
    assert_reports_answer(&http, &server, "").await;
}

/// Finding 2: with tokens configured `/metrics` needs the metrics (or admin) scope, and
/// 3,000 requests of made-up methods add no series: they count as `other`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_need_a_scraper_token_and_made_up_methods_do_not_grow_them() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(
        dir.path(),
        &[
            "--token",
            "root=admin",
            "--token",
            "scraper=metrics",
            "--token",
            "reader=read",
        ],
    );
    let http = Http::default();
    let metrics = |token: Option<&'static str>| {
        let http = http.clone();
        let url = server.url("/metrics");
        async move {
            let bearer = token.map(|t| format!("Bearer {t}"));
            let headers: Vec<(&str, &[u8])> = bearer
                .as_deref()
                .map(|b| vec![("authorization", b.as_bytes())])
                .unwrap_or_default();
            http.request("GET", &url, &headers, Vec::new())
                .await
                .unwrap()
        }
    };
    assert_problem(&metrics(None).await, 401, "/metrics without a token");
    assert_problem(
        &metrics(Some("reader")).await,
        403,
        "/metrics with a read token",
    );
    assert_eq!(metrics(Some("root")).await.status, 200);

    let made_up = |from: usize, to: usize| {
        let tasks: Vec<_> = (from..to)
            .collect::<Vec<_>>()
            .chunks(((to - from) / 16).max(1))
            .map(|chunk| {
                let http = http.clone();
                let chunk = chunk.to_vec();
                let base = server.base.clone();
                tokio::spawn(async move {
                    for n in chunk {
                        let path = ["/v1/queues", "/v1/events", "/nowhere", "/metrics"][n % 4];
                        let reply = http
                            .request(
                                &format!("MADEUP{n}"),
                                &format!("{base}{path}"),
                                &[],
                                Vec::new(),
                            )
                            .await
                            .unwrap();
                        assert!((400..500).contains(&reply.status), "{}", reply.status);
                        assert_eq!(reply.content_type(), "application/problem+json");
                    }
                })
            })
            .collect();
        async move {
            for task in tasks {
                task.await.unwrap();
            }
        }
    };
    let pid = server.child.id();
    made_up(0, 8).await;
    let first = metrics(Some("scraper")).await;
    assert_eq!(first.status, 200);
    let before = memory_of(pid);
    made_up(8, 3_000).await;
    let after = metrics(Some("scraper")).await;
    let (first, after) = (
        String::from_utf8(first.body).unwrap(),
        String::from_utf8(after.body).unwrap(),
    );
    assert!(!after.contains("MADEUP"), "a made-up method became a label");
    let series = |text: &str| text.lines().filter(|l| !l.starts_with('#')).count();
    assert_eq!(series(&after), series(&first), "new series:\n{after}");
    // The counts grow by a few digits; the issue saw 6 KB become 125 MB.
    assert!(
        after.len() < first.len() + 4096,
        "{} -> {} bytes",
        first.len(),
        after.len()
    );
    let settled =
        heap_settled_under(pid, before.anon_kib + 64 * 1024, Duration::from_secs(20)).await;
    let grown = settled.saturating_sub(before.anon_kib);
    assert!(
        grown < 64 * 1024,
        "anonymous memory grew by {grown} KiB (20 s after)"
    );
}

/// What a raw HTTP/1.1 exchange got: the status of the first answer (0 if none came
/// before the connection closed or `within` passed).
async fn status_of_answer(stream: &mut TcpStream, within: Duration) -> u16 {
    let mut read = Vec::new();
    let mut buffer = [0u8; 1024];
    let deadline = tokio::time::Instant::now() + within;
    while !read.windows(4).any(|w| w == b"\r\n\r\n") {
        match tokio::time::timeout_at(deadline, stream.read(&mut buffer)).await {
            Ok(Ok(n)) if n > 0 => read.extend_from_slice(&buffer[..n]),
            _ => break,
        }
    }
    let head = String::from_utf8_lossy(&read);
    head.strip_prefix("HTTP/1.1 ")
        .and_then(|rest| rest.get(..3))
        .and_then(|code| code.parse().ok())
        .unwrap_or(0)
}

/// Finding 3: with tokens configured, 200 unauthenticated clients each sending an 8 MiB
/// body are answered 401 from their headers while their bodies are still on the way, and
/// the server's memory does not hold them; a declared `Content-Length: 99999999999999` is
/// 413 at once, with no body sent at all.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodies_are_judged_by_their_headers_before_a_byte_of_them_is_read() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(
        dir.path(),
        &["--token", "writer=ingest", "--token", "reader=read"],
    );
    let http = Http::default();
    wait_ready(&http, &server).await;
    let pid = server.child.id();
    let before = memory_of(pid);
    let address = address(&server);
    const BODY: usize = 8 * 1024 * 1024;
    let chunk = Bytes::from(vec![b' '; 64 * 1024]);
    let clients: Vec<_> = (0..200)
        .map(|n| {
            let address = address.clone();
            let chunk = chunk.clone();
            tokio::spawn(async move {
                let stream = TcpStream::connect(&address).await.unwrap();
                let (mut reader, mut writer) = stream.into_split();
                let path = if n % 2 == 0 {
                    "/v1/events"
                } else {
                    "/v1/channels/chat"
                };
                let head = format!(
                    "POST {path} HTTP/1.1\r\nHost: {address}\r\nContent-Type: application/json\r\n\
                     Content-Length: {BODY}\r\n\r\n"
                );
                writer.write_all(head.as_bytes()).await.unwrap();
                // The body goes out while the answer is awaited; a server that stops
                // reading blocks this writer, which is then dropped.
                let sending = tokio::spawn(async move {
                    let mut sent = 0;
                    while sent < BODY {
                        if writer.write_all(&chunk).await.is_err() {
                            break;
                        }
                        sent += chunk.len();
                    }
                    sent
                });
                let mut read = Vec::new();
                let mut buffer = [0u8; 512];
                let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
                while !read.windows(4).any(|w| w == b"\r\n\r\n") {
                    match tokio::time::timeout_at(deadline, reader.read(&mut buffer)).await {
                        Ok(Ok(n)) if n > 0 => read.extend_from_slice(&buffer[..n]),
                        _ => break,
                    }
                }
                sending.abort();
                String::from_utf8_lossy(&read).into_owned()
            })
        })
        .collect();
    for client in clients {
        let head = client.await.unwrap();
        assert!(head.starts_with("HTTP/1.1 401"), "{head}");
        assert!(
            head.to_ascii_lowercase()
                .contains("content-type: application/problem+json"),
            "{head}"
        );
    }
    let after = memory_of(pid);
    // The issue saw 22 MB become 1.26 GB: 200 bodies held in full. (Freed memory comes back
    // within seconds: `heap_settled_under`.)
    let settled =
        heap_settled_under(pid, before.anon_kib + 100 * 1024, Duration::from_secs(20)).await;
    assert!(
        settled < before.anon_kib + 100 * 1024,
        "anonymous memory {} -> {} KiB ({} KiB 20 s after)",
        before.anon_kib,
        after.anon_kib,
        settled
    );
    assert!(
        after.peak_kib < before.peak_kib + 200 * 1024,
        "peak {} KiB",
        after.peak_kib
    );

    // Allowed, but declaring more than the server takes: 413 before any body is sent.
    for declared in ["99999999999999", "8388609"] {
        let mut stream = TcpStream::connect(&address).await.unwrap();
        let head = format!(
            "POST /v1/events HTTP/1.1\r\nHost: {address}\r\nAuthorization: Bearer writer\r\n\
             Content-Type: application/json\r\nContent-Length: {declared}\r\n\r\n"
        );
        stream.write_all(head.as_bytes()).await.unwrap();
        assert_eq!(
            status_of_answer(&mut stream, Duration::from_secs(5)).await,
            413,
            "Content-Length {declared}"
        );
    }
    assert_eq!(log_records(&http, &server, Some("reader")).await, 0);
}

/// Reads until the server closes the connection; whether it did within `within`, and what
/// it sent.
async fn closed_within(stream: &mut TcpStream, within: Duration) -> (bool, Vec<u8>) {
    let mut read = Vec::new();
    let mut buffer = [0u8; 1024];
    let deadline = tokio::time::Instant::now() + within;
    loop {
        match tokio::time::timeout_at(deadline, stream.read(&mut buffer)).await {
            Ok(Ok(0) | Err(_)) => return (true, read),
            Ok(Ok(n)) => read.extend_from_slice(&buffer[..n]),
            Err(_) => return (false, read),
        }
    }
}

/// How one stalled client of finding 4 behaves.
#[derive(Clone, Copy, Debug)]
enum Stall {
    /// Sends part of its headers, then nothing.
    Headers,
    /// Sends its headers and part of a declared body, then nothing.
    Body,
    /// Connects and sends nothing.
    Idle,
}

async fn stalled_client(address: &str, stall: Stall) -> TcpStream {
    let mut stream = TcpStream::connect(address).await.unwrap();
    let sent: &[u8] = match stall {
        Stall::Headers => b"POST /v1/events HTTP/1.1\r\nHost: x\r\nContent-Ty",
        Stall::Body => {
            b"POST /v1/events HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
              Content-Length: 100\r\n\r\n[{\"type\":"
        }
        Stall::Idle => b"",
    };
    stream.write_all(sent).await.unwrap();
    stream
}

/// Finding 4: 200 clients that send headers slowly, never finish a body, or sit idle are
/// disconnected once the header and body times are up (the body's with a 408 problem),
/// and on SIGTERM the server exits within its drain time though stalled clients remain.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_and_idle_clients_are_cut_off_and_a_stop_does_not_wait_for_them() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(
        dir.path(),
        &[
            "--header-timeout-secs",
            "6",
            "--body-timeout-secs",
            "6",
            "--drain-secs",
            "1",
        ],
    );
    let address = address(&server);
    let stalls = [Stall::Headers, Stall::Body, Stall::Idle];
    let mut clients = Vec::new();
    for n in 0..200 {
        let stall = stalls[n % stalls.len()];
        clients.push((stall, stalled_client(&address, stall).await));
    }
    let started = Instant::now();
    let waits: Vec<_> = clients
        .into_iter()
        .map(|(stall, mut stream)| {
            tokio::spawn(async move {
                let (closed, sent) = closed_within(&mut stream, Duration::from_secs(20)).await;
                (stall, closed, String::from_utf8_lossy(&sent).into_owned())
            })
        })
        .collect();
    for wait in waits {
        let (stall, closed, sent) = wait.await.unwrap();
        assert!(closed, "a {stall:?} client was still connected after 20 s");
        if let Stall::Body = stall {
            assert!(sent.starts_with("HTTP/1.1 408"), "{stall:?}: {sent}");
            assert!(sent.contains("application/problem+json"), "{sent}");
        }
    }
    assert!(
        started.elapsed() >= Duration::from_secs(5),
        "cut off too early"
    );

    // A stop while 50 clients stall mid-headers: exits after the drain time (1 s), not the
    // header time (6 s) nor whenever they leave.
    let mut stalled = Vec::new();
    for _ in 0..50 {
        stalled.push(stalled_client(&address, Stall::Headers).await);
    }
    let stopping = Instant::now();
    server.stop();
    let took = stopping.elapsed();
    assert!(
        took < Duration::from_secs(5),
        "the stop took {took:?} with stalled clients"
    );
    for mut stream in stalled {
        assert!(closed_within(&mut stream, Duration::from_secs(5)).await.0);
    }
}

/// A process manager may send SIGTERM the moment a server says where it listens. The
/// handlers are installed before that line is printed, so such a signal stops the server
/// cleanly (exit 0) instead of killing it with the default action. (CI once saw a read-only
/// server killed by a SIGTERM that came before its handler.)
///
/// The race is microseconds wide, so the order is checked where it happens: under
/// `strace`, the server's `rt_sigaction` for SIGTERM comes before its write of
/// `omnilog listening on`. Then each start is a fresh chance for the race itself: five of
/// a serving server and five of a read-only one.
#[test]
fn a_sigterm_as_soon_as_a_server_says_where_it_listens_stops_it_cleanly() {
    use std::io::BufRead as _;
    use std::process::{Command, Stdio};
    assert!(
        Command::new("strace").arg("-V").output().is_ok(),
        "strace is needed (apt-get install strace; .ci/run installs it)"
    );
    let dir = tempfile::tempdir().unwrap();
    let trace = dir.path().join("trace.txt");
    let mut traced = Command::new("strace")
        .args(["-f", "-s", "64", "-e", "trace=rt_sigaction,write", "-o"])
        .arg(&trace)
        .arg(support::BINARY)
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir.path().join("traced"))
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("starting strace");
    let stdout = traced.stdout.take().unwrap();
    let mut lines = std::io::BufReader::new(stdout).lines();
    let announced = lines
        .by_ref()
        .map_while(Result::ok)
        .any(|line| line.starts_with("omnilog listening on "));
    assert!(announced, "the traced server never said where it listens");
    // The server is strace's child: stop it by its own process id.
    let children = std::fs::read_to_string(format!(
        "/proc/{pid}/task/{pid}/children",
        pid = traced.id()
    ))
    .unwrap();
    let server = children
        .split_whitespace()
        .next()
        .expect("the traced server's pid");
    assert!(
        Command::new("kill")
            .args(["-TERM", server])
            .status()
            .unwrap()
            .success()
    );
    support::wait_exit(&mut traced, "the traced server", Duration::from_secs(30));
    let text = std::fs::read_to_string(&trace).unwrap();
    let position = |what: &str| {
        text.lines()
            .position(|line| line.contains(what))
            .unwrap_or_else(|| {
                panic!(
                    "no {what:?} in the trace:\n{}",
                    &text[..text.len().min(4_000)]
                )
            })
    };
    let handler = position("rt_sigaction(SIGTERM, {sa_handler=0x");
    let announcement = position("omnilog listening on");
    assert!(
        handler < announcement,
        "the SIGTERM handler (trace line {handler}) was installed after the server said where it listens (line {announcement})"
    );

    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    for _ in 0..5 {
        Server::start(&data, &[]).stop();
    }
    let replayed = dir.path().join("replayed");
    support::run(&[
        "replay",
        "--data-dir",
        data.to_str().unwrap(),
        "--out",
        replayed.to_str().unwrap(),
    ]);
    for _ in 0..5 {
        Server::start(&replayed, &["--read-only"]).stop();
    }
}

/// The body of `bytes` gzipped.
fn gzip(bytes: &[u8]) -> Vec<u8> {
    use std::io::Write as _;
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    encoder.write_all(bytes).unwrap();
    encoder.finish().unwrap()
}

/// Finding 6: a key given twice is refused naming it; a `Content-Encoding` the server does
/// not decode is 415 (a real gzip body is read); a protobuf batch with `schema_version` 0
/// is refused as the same event in JSON is.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplicate_keys_unknown_encodings_and_version_zero_are_refused_alike() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]);
    let http = Http::default();
    let event = |id: &str| {
        json!({
            "source": "p", "source_event_id": id, "occurred_at": "2026-03-02T09:00:00Z",
            "customer": {"handles": [{"kind": "phone", "value": "+15550000002"}]},
            "interaction_id": "c6", "channel": "voice", "type": "queued",
            "queue": "billing", "priority": 0, "skills": []
        })
    };
    let twice = json!([event("d0")]).to_string().replace(
        r#""queue":"billing""#,
        r#""queue":"first","queue":"billing""#,
    );
    assert!(twice.contains(r#""queue":"first","queue":"billing""#));
    let reply = post_json(&http, &server, "/v1/events", &twice).await;
    let problem = assert_problem(&reply, 400, "a key twice");
    assert_eq!(problem["field"], "[0].queue");

    let plain = json!([event("d1")]).to_string().into_bytes();
    for encoding in ["br", "zstd", "deflate", "x-unknown"] {
        let reply = http
            .request(
                "POST",
                &server.url("/v1/events"),
                &[
                    ("content-type", b"application/json"),
                    ("content-encoding", encoding.as_bytes()),
                ],
                plain.clone(),
            )
            .await
            .unwrap();
        let problem = assert_problem(&reply, 415, encoding);
        assert!(
            problem["detail"].as_str().unwrap().contains(encoding),
            "{problem}"
        );
    }
    let reply = http
        .request(
            "POST",
            &server.url("/v1/events"),
            &[
                ("content-type", b"application/json"),
                ("content-encoding", b"gzip"),
            ],
            gzip(&plain),
        )
        .await
        .unwrap();
    assert_eq!(
        reply.status,
        202,
        "{}",
        String::from_utf8_lossy(&reply.body)
    );

    let mut zero = event("d2");
    zero["schema_version"] = json!(0);
    let reply = post_json(&http, &server, "/v1/events", &json!([zero]).to_string()).await;
    let json_refusal = assert_problem(&reply, 400, "JSON schema_version 0");
    assert_eq!(json_refusal["field"], "[0].schema_version");
    let mut unset = omnilog_events::parse_event(event("d2").to_string().as_bytes()).unwrap();
    unset.schema_version = 0;
    let reply = http
        .request(
            "POST",
            &server.url("/v1/events"),
            &[("content-type", b"application/x-protobuf")],
            omnilog_events::encode_batch(&[unset]),
        )
        .await
        .unwrap();
    let proto_refusal = assert_problem(&reply, 400, "protobuf schema_version 0");
    assert_eq!(proto_refusal["field"], "[0].schema_version");
    wait_ready(&http, &server).await;
    assert_eq!(
        log_records(&http, &server, None).await,
        1,
        "only the gzip body's event"
    );
}

/// Finding 7: the answers axum gives before a handler runs are problems too: 405 for a
/// method a route does not take (with `Allow`), OPTIONS anywhere, a path that is not
/// UTF-8, a query field given twice (refused naming it, on every route that reads a
/// query), a path that matches nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_before_any_handler_are_problems_too() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]);
    let http = Http::default();
    for (method, path, status) in [
        ("DELETE", "/v1/views", 405),
        ("OPTIONS", "/v1/views", 405),
        ("OPTIONS", "/v1/events", 405),
        ("OPTIONS", "/v1/customers/k/journey", 405),
        ("PUT", "/metrics", 405),
        ("GET", "/v1/interactions/%ff", 400),
        ("GET", "/v1/customers/%c3%28/journey", 400),
        ("GET", "/v1/customers/resolve?kind=phone&kind=email", 400),
        (
            "GET",
            "/v1/reports/summary?group_by=queue&group_by=hour",
            400,
        ),
        (
            "GET",
            "/v1/queues?now=2026-03-02T09:00:00Z&now=2026-03-02T10:00:00Z",
            400,
        ),
        ("GET", "/v1/nothing/here", 404),
    ] {
        let reply = http
            .request(method, &server.url(path), &[], Vec::new())
            .await
            .unwrap();
        let what = format!("{method} {path}");
        let problem = assert_problem(&reply, status, &what);
        if let Some((_, query)) = path.split_once('?') {
            // The field given twice is named (it was read as its last value before).
            let repeated = query.split('&').next().unwrap().split('=').next().unwrap();
            assert_eq!(problem["field"], repeated, "{what}: {problem}");
        }
        if status == 405 {
            assert!(reply.headers.contains_key("allow"), "{what}: no Allow");
        }
    }
}
