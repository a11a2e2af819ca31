//! The router through the real binary: it routes by skill, channel capacity and presence,
//! offers time out and return the item to its place, its decisions are events in the log
//! (a rebuild of the queue view from the log equals the live one), and the queue stream
//! shows a queue's new stats within a second of the ingest answer.

mod support;

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use support::{Http, Server, run};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

fn agent(id: &str, state: &str, capacity: Value) -> Value {
    json!({
        "source": "test.agents",
        "source_event_id": format!("{id}:{state}"),
        "occurred_at": "2026-03-02T08:00:00Z",
        "type": "agent_state",
        "agent_id": id,
        "state": state,
        "skills": ["support"],
        "capacity": capacity,
    })
}

fn contact(interaction: &str, channel: &str, kind: &str, fields: Value) -> Value {
    let mut event = json!({
        "source": "test",
        "source_event_id": format!("{interaction}:{kind}"),
        "occurred_at": "2026-03-02T09:00:00Z",
        "customer": {"handles": [{"kind": "email", "value": format!("{interaction}@example.com")}]},
        "interaction_id": interaction,
        "channel": channel,
        "type": kind,
    });
    if let (Some(target), Some(extra)) = (event.as_object_mut(), fields.as_object()) {
        target.extend(extra.clone());
    }
    event
}

fn queued(interaction: &str, channel: &str, priority: i32) -> Value {
    contact(
        interaction,
        channel,
        "queued",
        json!({"queue": "support", "priority": priority, "skills": ["support"]}),
    )
}

/// Polls `GET path` until `done` holds for the answer (or panics after `within`).
async fn eventually(
    http: &Http,
    server: &Server,
    path: &str,
    within: Duration,
    done: impl Fn(&Value) -> bool,
) -> Value {
    let deadline = Instant::now() + within;
    loop {
        let answer = http.get(&server.url(path)).await;
        if answer.status == 200 && done(&answer.body) {
            return answer.body;
        }
        assert!(
            Instant::now() < deadline,
            "GET {path} did not reach the expected state within {within:?}: {:?}",
            answer.body
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn assignments(agent: &Value) -> Vec<String> {
    agent["assignments"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_router_routes_by_skill_capacity_and_presence_and_a_rebuild_equals_the_live_queue() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let server = Server::start(&data, &["--route", "auto-accept"]);
    let http = Http::default();
    http.post_events(
        &server,
        &json!([
            agent("chat-agent", "available", json!({"chat": 3})),
            agent("voice-agent", "available", json!({"voice": 1})),
            agent(
                "away-agent",
                "away",
                json!({"chat": 3, "email": 1, "voice": 1})
            ),
        ]),
    )
    .await;
    http.post_events(
        &server,
        &json!([
            queued("chat1", "chat", 0),
            queued("chat2", "chat", 0),
            queued("mail1", "email", 2),
            queued("chat3", "chat", 0),
            queued("chat4", "chat", 0),
        ]),
    )
    .await;
    let within = Duration::from_secs(15);
    let chat_agent = eventually(&http, &server, "/v1/agents/chat-agent", within, |a| {
        assignments(a).len() == 3
    })
    .await;
    assert_eq!(assignments(&chat_agent), ["chat1", "chat2", "chat3"]);
    // Nothing more happens: the fourth chat waits, the email has no agent.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let queue = http.get(&server.url("/v1/queues/support")).await.body;
    let waiting: Vec<&str> = queue["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["interaction_id"].as_str().unwrap())
        .collect();
    assert_eq!(waiting, ["mail1", "chat4"], "{queue}");
    assert_eq!(queue["assigned"], 3);
    for idle in ["voice-agent", "away-agent"] {
        let answer = http
            .get(&server.url(&format!("/v1/agents/{idle}")))
            .await
            .body;
        assert!(assignments(&answer).is_empty(), "{idle}: {answer}");
        assert!(
            answer["offers"].as_array().unwrap().is_empty(),
            "{idle}: {answer}"
        );
    }
    // A call goes to the voice agent; the abandoned email leaves the queue.
    http.post_events(
        &server,
        &json!([
            queued("call1", "voice", 0),
            contact("mail1", "email", "abandoned", json!({})),
        ]),
    )
    .await;
    eventually(&http, &server, "/v1/agents/voice-agent", within, |a| {
        assignments(a) == ["call1"]
    })
    .await;
    eventually(&http, &server, "/v1/queues/support", within, |q| {
        q["waiting"] == 1 && q["items"][0]["interaction_id"] == "chat4"
    })
    .await;
    // A chat ends: the fourth is routed.
    http.post_events(
        &server,
        &json!([contact("chat1", "chat", "ended", json!({}))]),
    )
    .await;
    eventually(&http, &server, "/v1/agents/chat-agent", within, |a| {
        assignments(a) == ["chat2", "chat3", "chat4"]
    })
    .await;
    // The decisions are in the log: the interaction shows the router's events.
    let chat4 = http.get(&server.url("/v1/interactions/chat4")).await.body;
    let kinds: Vec<&str> = chat4["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["type"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["queued", "offered", "assigned"], "{chat4}");
    assert_eq!(chat4["events"][1]["source"], "omnilog.router");
    support::wait_ready(&http, &server).await;
    server.stop();

    // Rebuilt from the log, the queue view (routing decisions included) equals the live one.
    let data_arg = data.to_str().unwrap();
    let rebuilt = dir.path().join("rebuilt");
    run(&[
        "replay",
        "--data-dir",
        data_arg,
        "--out",
        rebuilt.to_str().unwrap(),
        "--view",
        "queue",
    ]);
    let live: Value = serde_json::from_str(&run(&["inspect", "--data-dir", data_arg])).unwrap();
    let clean: Value =
        serde_json::from_str(&run(&["inspect", "--data-dir", rebuilt.to_str().unwrap()])).unwrap();
    let digest = |inspected: &Value| {
        inspected["views"]
            .as_array()
            .unwrap()
            .iter()
            .find(|v| v["view"] == "queue")
            .map(|v| v["sha256"].clone())
            .expect("the queue view")
    };
    assert_eq!(digest(&live), digest(&clean));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unanswered_offer_times_out_and_the_item_is_offered_again() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(
        dir.path(),
        &["--route", "offer", "--offer-timeout-secs", "1"],
    );
    let http = Http::default();
    http.post_events(
        &server,
        &json!([
            agent("a1", "available", json!({"chat": 1})),
            queued("chat1", "chat", 0)
        ]),
    )
    .await;
    let within = Duration::from_secs(20);
    let kinds = |interaction: &Value| -> Vec<String> {
        interaction["events"]
            .as_array()
            .map(|events| {
                events
                    .iter()
                    .map(|e| e["type"].as_str().unwrap().to_owned())
                    .collect()
            })
            .unwrap_or_default()
    };
    let seen = eventually(&http, &server, "/v1/interactions/chat1", within, |i| {
        kinds(i).len() >= 4
    })
    .await;
    assert_eq!(
        kinds(&seen)[..4],
        ["queued", "offered", "offer_timed_out", "offered"]
    );
    // While offered, the item keeps its place in its queue, reserved for the agent.
    let queue = http.get(&server.url("/v1/queues/support")).await.body;
    assert_eq!(queue["waiting"], 1);
    // The agent declines: the item is free again and (being the only agent) re-offered.
    let declined = contact("chat1", "chat", "offer_declined", json!({"agent_id": "a1"}));
    let mut declined = declined;
    declined["source_event_id"] = json!("chat1:declined-by-agent");
    http.post_events(&server, &json!([declined])).await;
    let after = eventually(&http, &server, "/v1/interactions/chat1", within, |i| {
        kinds(i).iter().any(|k| k == "offer_declined")
    })
    .await;
    assert!(kinds(&after).contains(&"offer_declined".to_owned()));
    server.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_queue_stream_shows_new_stats_within_a_second_of_the_ingest_answer() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]);
    let http = Http::default();
    let address = server.base.trim_start_matches("http://").to_owned();
    let mut stream = tokio::net::TcpStream::connect(&address).await.unwrap();
    stream
        .write_all(
            format!("GET /v1/queues/stream HTTP/1.1\r\nHost: {address}\r\nAccept: text/event-stream\r\n\r\n")
                .as_bytes(),
        )
        .await
        .unwrap();
    let mut lines = BufReader::new(stream).lines();
    // The answer's head: 200 and an event stream.
    let status = lines.next_line().await.unwrap().unwrap();
    assert!(status.contains("200"), "{status}");
    for round in 1..=3 {
        let interaction = format!("stream{round}");
        http.post_events(&server, &json!([queued(&interaction, "chat", 0)]))
            .await;
        let answered = Instant::now();
        let wanted = round;
        let seen = tokio::time::timeout(Duration::from_secs(1), async {
            while let Some(line) = lines.next_line().await.unwrap() {
                let Some(data) = line.strip_prefix("data: ").or(line.strip_prefix("data:")) else {
                    continue;
                };
                let Ok(stats) = serde_json::from_str::<Value>(data) else {
                    continue;
                };
                if stats["queue"] == "support" && stats["waiting"] == wanted {
                    return stats;
                }
            }
            panic!("the stream ended");
        })
        .await
        .unwrap_or_else(|_| panic!("round {round}: no stats with {wanted} waiting within 1 s"));
        assert!(answered.elapsed() <= Duration::from_secs(1));
        assert!(seen.get("items").is_none(), "stats, not items: {seen}");
    }
    drop(lines);
    server.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_declined_item_goes_to_the_next_agent_not_back_to_the_one_who_declined() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(
        dir.path(),
        &["--route", "offer", "--offer-timeout-secs", "60"],
    );
    let http = Http::default();
    let mut later = agent("second", "available", json!({"chat": 1}));
    later["occurred_at"] = json!("2026-03-02T08:30:00Z");
    http.post_events(
        &server,
        &json!([
            agent("first", "available", json!({"chat": 1})),
            later,
            queued("chat1", "chat", 0)
        ]),
    )
    .await;
    let within = Duration::from_secs(15);
    let offered_to = |queue: &Value| {
        queue["items"][0]["reserved_for"]
            .as_str()
            .map(str::to_owned)
    };
    let queue = eventually(&http, &server, "/v1/queues/support", within, |q| {
        offered_to(q).is_some()
    })
    .await;
    assert_eq!(
        offered_to(&queue).as_deref(),
        Some("first"),
        "longest idle first"
    );
    let mut declined = contact(
        "chat1",
        "chat",
        "offer_declined",
        json!({"agent_id": "first"}),
    );
    declined["source_event_id"] = json!("chat1:declined-by-first");
    http.post_events(&server, &json!([declined])).await;
    eventually(&http, &server, "/v1/queues/support", within, |q| {
        offered_to(q).as_deref() == Some("second")
    })
    .await;
    server.stop();
}
