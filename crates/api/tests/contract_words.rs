//! A refusal speaks the contract's words, never the server's Rust types: every event type
//! and every channel's fixtures are posted with each of their fields (and the body as a
//! whole) replaced by a value of the wrong JSON type, and no 4xx detail may name a Rust
//! type (`struct RawCustomer`, `enum`, a `variant`, a path with `::`, `u32`, `a sequence`).
//! Every 4xx is problem+json and names what was wrong.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::http::{Request, header};
use http_body_util::BodyExt;
use omnilog_api::{AccessControl, ApiConfig, AppState, router};
use omnilog_channels::Registry;
use omnilog_ingest::{Ingest, IngestConfig};
use omnilog_log::{EmbeddedLog, EventLog, PartitionCounts};
use serde_json::{Value, json};
use tower::ServiceExt;

async fn app(dir: &std::path::Path) -> Router {
    let log: Arc<dyn EventLog> =
        Arc::new(EmbeddedLog::open(&dir.join("log"), PartitionCounts::uniform(2)).unwrap());
    let ingest = Ingest::start(log, IngestConfig::default()).await.unwrap();
    let config = ApiConfig {
        max_body_bytes: 256 * 1024,
        public_url: Some("https://desk.example.com".to_owned()),
        channel_secrets: BTreeMap::new(),
        meta_verify_token: None,
        body_timeout: std::time::Duration::from_secs(5),
        service_levels: Default::default(),
        ready_max_lag: ApiConfig::default().ready_max_lag,
    };
    router(AppState::new(
        ingest,
        Arc::new(Registry::standard()),
        Arc::new(AccessControl::open()),
        Arc::new(config),
    ))
}

/// The 4xx answers seen: (what was sent, detail).
#[derive(Default)]
struct Refusals {
    seen: Vec<(String, String)>,
    answers: usize,
}

impl Refusals {
    async fn post(&mut self, app: &Router, path: &str, content_type: &str, body: Vec<u8>) {
        let what = format!("{path} {}", String::from_utf8_lossy(&body));
        let request = Request::post(path)
            .header(header::CONTENT_TYPE, content_type)
            .body(Body::from(body))
            .unwrap();
        let response = app.clone().oneshot(request).await.unwrap();
        let status = response.status();
        let kind = response
            .headers()
            .get(header::CONTENT_TYPE)
            .map(|v| v.to_str().unwrap_or_default().to_owned())
            .unwrap_or_default();
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        self.answers += 1;
        assert!(!status.is_server_error(), "{status} for {what}");
        if status.is_client_error() {
            assert_eq!(kind, "application/problem+json", "{status} for {what}");
            let problem: Value = serde_json::from_slice(&bytes).unwrap();
            let detail = problem["detail"].as_str().unwrap_or_default().to_owned();
            assert!(!detail.is_empty(), "a {status} without a detail for {what}");
            self.seen.push((what, detail));
        }
    }

    /// Every detail that names a Rust type, with what was sent.
    fn naming_rust_types(&self) -> Vec<String> {
        self.seen
            .iter()
            .filter_map(|(what, detail)| {
                names_a_rust_type(detail).map(|word| format!("{word:?} in {detail:?} for {what}"))
            })
            .collect()
    }
}

/// What in a detail is a Rust type's (or serde's) word rather than the contract's.
fn names_a_rust_type(detail: &str) -> Option<&'static str> {
    const PHRASES: [&str; 9] = [
        "struct ",
        "enum ",
        "variant",
        "::",
        "a sequence",
        "a map",
        "unit value",
        "Option value",
        "newtype",
    ];
    const WORDS: [&str; 18] = [
        "u8", "u16", "u32", "u64", "u128", "usize", "i8", "i16", "i32", "i64", "i128", "isize",
        "f32", "f64", "Option", "Vec", "String", "BTreeMap",
    ];
    if let Some(phrase) = PHRASES.iter().find(|p| detail.contains(*p)) {
        return Some(phrase);
    }
    detail
        .split(|c: char| !(c.is_alphanumeric() || c == '_'))
        .find_map(|word| {
            WORDS
                .iter()
                .find(|w| **w == word)
                .copied()
                .or_else(|| (word.starts_with("Raw") && word.len() > 3).then_some("Raw…"))
        })
}

/// Values of every JSON type but, for any field, at least one of the wrong type.
fn wrong_values() -> Vec<Value> {
    vec![
        json!(5),
        json!(-1.5),
        json!("text"),
        json!(true),
        Value::Null,
        json!([]),
        json!([5]),
        json!({}),
        json!({"x": 5}),
    ]
}

/// Every path in a JSON value (object keys and array indices), the root excluded.
fn paths(value: &Value) -> Vec<Vec<Value>> {
    let mut found = Vec::new();
    let mut walk = |path: Vec<Value>, child: &Value| {
        let mut below = paths(child);
        for tail in &mut below {
            tail.splice(0..0, path.iter().cloned());
        }
        found.push(path);
        found.extend(below);
    };
    match value {
        Value::Object(fields) => {
            for (key, child) in fields {
                walk(vec![json!(key)], child);
            }
        }
        Value::Array(items) => {
            for (index, child) in items.iter().enumerate() {
                walk(vec![json!(index)], child);
            }
        }
        _ => {}
    }
    found
}

/// `value` with the field at `path` replaced.
fn replaced(value: &Value, path: &[Value], with: &Value) -> Value {
    let mut copy = value.clone();
    let mut at = &mut copy;
    for step in path {
        at = match step {
            Value::String(key) => &mut at[key.as_str()],
            Value::Number(index) => &mut at[index.as_u64().unwrap_or_default() as usize],
            _ => unreachable!("paths are keys and indices"),
        };
    }
    *at = with.clone();
    copy
}

fn envelope(kind: &str, extra: Value) -> Value {
    let mut event = json!({
        "source": "test",
        "source_event_id": format!("words-{kind}"),
        "occurred_at": "2026-03-02T09:00:00Z",
        "customer": {"handles": [{"kind": "phone", "value": "+15550000001"}]},
        "interaction_id": "call-1",
        "channel": "voice",
        "type": kind,
    });
    for (key, value) in extra.as_object().cloned().unwrap_or_default() {
        event[key] = value;
    }
    event
}

/// One valid event of every type of the contract (§3).
fn one_of_each_type() -> Vec<Value> {
    let agent = json!({"agent_id": "alice"});
    vec![
        envelope(
            "interaction_started",
            json!({"direction": "inbound", "subject": "bill", "self_service": false}),
        ),
        envelope(
            "message",
            json!({"direction": "inbound", "author": "customer", "text": "hello"}),
        ),
        envelope(
            "queued",
            json!({"queue": "billing", "priority": 1, "skills": ["billing"]}),
        ),
        envelope("offered", agent.clone()),
        envelope("offer_declined", agent.clone()),
        envelope("offer_timed_out", agent.clone()),
        envelope("assigned", agent.clone()),
        envelope(
            "transferred",
            json!({"to_queue": "tier2", "to_agent": "bob"}),
        ),
        envelope("hold", json!({})),
        envelope("resumed", json!({})),
        envelope("abandoned", json!({})),
        envelope("ended", json!({"reason": "done"})),
        envelope(
            "wrapped_up",
            json!({"agent_id": "alice", "resolved": true, "disposition": "fixed", "topics": ["billing"]}),
        ),
        envelope("csat", json!({"score": 5})),
        envelope("note", json!({"agent_id": "alice", "text": "called back"})),
        envelope("tagged", json!({"topics": ["billing"]})),
        envelope(
            "identity_linked",
            json!({"customer": {"id": "customer-1", "handles": [{"kind": "email", "value": "a@example.com"}]}}),
        ),
        json!({
            "source": "test", "source_event_id": "words-merge", "occurred_at": "2026-03-02T09:00:00Z",
            "type": "customers_merged", "from_customer": "customer-1", "into_customer": "customer-2",
        }),
        envelope(
            "proactive_notice",
            json!({"reason": "outage", "text": "we know"}),
        ),
        envelope(
            "customer_profile",
            json!({"attributes": {"segment": "gold"}}),
        ),
        json!({
            "source": "test", "source_event_id": "words-agent", "occurred_at": "2026-03-02T09:00:00Z",
            "type": "agent_state", "agent_id": "alice", "state": "available",
            "skills": ["billing"], "capacity": {"voice": 1, "chat": 3},
        }),
    ]
}

#[tokio::test]
async fn wrong_types_in_any_event_field_are_refused_in_the_contract_s_words() {
    let dir = tempfile::tempdir().unwrap();
    let app = app(dir.path()).await;
    let mut refusals = Refusals::default();
    for body in [
        json!(5),
        json!("events"),
        json!(null),
        json!([5]),
        json!([[]]),
        json!([null]),
        json!({"events": []}),
    ] {
        refusals
            .post(
                &app,
                "/v1/events",
                "application/json",
                body.to_string().into_bytes(),
            )
            .await;
    }
    for event in one_of_each_type() {
        for path in paths(&event) {
            for wrong in wrong_values() {
                let body = json!([replaced(&event, &path, &wrong)]);
                refusals
                    .post(
                        &app,
                        "/v1/events",
                        "application/json",
                        body.to_string().into_bytes(),
                    )
                    .await;
            }
        }
    }
    assert!(
        refusals.seen.len() > 500,
        "only {} refusals in {} answers: the mutations did not reach the decoder",
        refusals.seen.len(),
        refusals.answers
    );
    let wrong = refusals.naming_rust_types();
    assert!(
        wrong.is_empty(),
        "{} of {} refusals name Rust types, e.g.:\n{}",
        wrong.len(),
        refusals.seen.len(),
        wrong[..wrong.len().min(20)].join("\n")
    );
}

fn fixtures_of(channel: &str) -> Vec<(String, Vec<u8>)> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../channels/fixtures")
        .join(channel);
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return Vec::new();
    };
    let mut fixtures: Vec<(String, Vec<u8>)> = entries
        .map(|entry| entry.unwrap().path())
        .filter(|path| !path.to_string_lossy().ends_with(".events.json"))
        .map(|path| {
            (
                path.file_name().unwrap().to_string_lossy().into_owned(),
                std::fs::read(&path).unwrap(),
            )
        })
        .collect();
    fixtures.sort();
    fixtures
}

#[tokio::test]
async fn wrong_types_in_any_channel_payload_field_are_refused_in_the_contract_s_words() {
    let dir = tempfile::tempdir().unwrap();
    let app = app(dir.path()).await;
    let registry = Registry::standard();
    let mut refusals = Refusals::default();
    let mut channels = 0;
    for channel in registry.names() {
        let path = format!("/v1/channels/{channel}");
        let takes = registry.get(channel).unwrap().content_types();
        channels += 1;
        if takes.contains(&"application/json") {
            for body in [
                json!(5),
                json!("x"),
                json!(null),
                json!([]),
                json!([{}]),
                json!({}),
            ] {
                refusals
                    .post(
                        &app,
                        &path,
                        "application/json",
                        body.to_string().into_bytes(),
                    )
                    .await;
            }
        }
        for (name, bytes) in fixtures_of(channel) {
            if name.ends_with(".json") {
                let payload: Value = serde_json::from_slice(&bytes).unwrap();
                for field in paths(&payload) {
                    for wrong in wrong_values() {
                        let body = replaced(&payload, &field, &wrong).to_string().into_bytes();
                        refusals.post(&app, &path, "application/json", body).await;
                    }
                }
            } else if name.ends_with(".form") {
                // A form's values are all text: wrong ones are empty, not text, or no form.
                let fields: Vec<(String, String)> = serde_urlencoded::from_bytes(&bytes).unwrap();
                for at in 0..fields.len() {
                    for wrong in ["", "%ZZ", "{\"x\":5}", "-1"] {
                        let mut changed = fields.clone();
                        changed[at].1 = wrong.to_owned();
                        let body = serde_urlencoded::to_string(&changed).unwrap().into_bytes();
                        refusals.post(&app, &path, takes[0], body).await;
                    }
                }
                refusals
                    .post(&app, &path, takes[0], b"=&=%ff%fe&&".to_vec())
                    .await;
            } else {
                // A raw message or a multipart form: cut short and emptied.
                let half = bytes[..bytes.len() / 2].to_vec();
                let content_type = if takes[0] == "multipart/form-data" {
                    "multipart/form-data; boundary=x"
                } else {
                    takes[0]
                };
                refusals.post(&app, &path, content_type, half).await;
                refusals.post(&app, &path, content_type, Vec::new()).await;
            }
        }
    }
    assert!(channels >= 14, "{channels} channels");
    assert!(
        refusals.seen.len() > 500,
        "only {} refusals in {} answers",
        refusals.seen.len(),
        refusals.answers
    );
    let wrong = refusals.naming_rust_types();
    assert!(
        wrong.is_empty(),
        "{} of {} refusals name Rust types, e.g.:\n{}",
        wrong.len(),
        refusals.seen.len(),
        wrong[..wrong.len().min(20)].join("\n")
    );
}
