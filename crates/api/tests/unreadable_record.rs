//! A view never fails a query on one bad record: one stored record of the journey view is
//! damaged on disk while the server is down; after the restart, the report that reads every
//! journey answers 200 with the others, a query of the damaged customer answers without a
//! server error, and `GET /v1/views` counts the unreadable record (the store logs it once),
//! which is what tells an operator to rebuild the view.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use http_body_util::BodyExt;
use omnilog_api::metrics::ApiMetrics;
use omnilog_api::{AccessControl, ApiConfig, AppState, router};
use omnilog_channels::Registry;
use omnilog_ingest::{Ingest, IngestConfig};
use omnilog_log::{EmbeddedLog, EventLog, PartitionCounts};
use omnilog_projector::{Projectable, ProjectorConfig, ProjectorMetrics, ViewRuntime};
use omnilog_store::ViewStore;
use omnilog_views::Changes;
use omnilog_views::journey::{JourneyConfig, JourneyView};
use serde_json::{Value, json};
use tower::ServiceExt;

const CUSTOMERS: usize = 8;

/// Retries `open` while the previous server's tasks still hold what it opens (they end
/// moments after it is dropped), for up to ten seconds.
async fn once_free<T, E: std::fmt::Debug>(open: impl Fn() -> Result<T, E>) -> T {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match open() {
            Ok(opened) => return opened,
            Err(error) => assert!(
                Instant::now() < deadline,
                "still held after 10 s: {error:?}"
            ),
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A server's parts over the data dir `dir`: the router, and the runtime to stop.
async fn start(dir: &Path) -> (Router, Arc<ViewRuntime>) {
    let log: Arc<dyn EventLog> = Arc::new(
        once_free(|| EmbeddedLog::open(&dir.join("log"), PartitionCounts::uniform(2))).await,
    );
    let ingest = Ingest::start(log.clone(), IngestConfig::default())
        .await
        .unwrap();
    let store = once_free(|| ViewStore::open(&dir.join("views"))).await;
    let views: Vec<Arc<dyn Projectable>> =
        vec![Arc::new(JourneyView::new(JourneyConfig::default()))];
    let metrics = ProjectorMetrics::default();
    let runtime = ViewRuntime::start(
        log,
        store,
        views,
        ProjectorConfig::default(),
        metrics.clone(),
    )
    .await
    .unwrap();
    let config = ApiConfig {
        max_body_bytes: 1024 * 1024,
        public_url: None,
        channel_secrets: BTreeMap::new(),
        meta_verify_token: None,
        body_timeout: Duration::from_secs(5),
        service_levels: Default::default(),
        ready_max_lag: ApiConfig::default().ready_max_lag,
    };
    let state = AppState::new(
        ingest,
        Arc::new(Registry::standard()),
        Arc::new(AccessControl::open()),
        Arc::new(config),
    )
    .with_views(runtime.clone(), Arc::new(ApiMetrics::new(metrics)));
    (router(state), runtime)
}

/// With the server down: damages the `index`-th of the journey view's records of table
/// `tag` (one per customer, `CUSTOMERS` of them) on disk; returns its stored key.
async fn damage_one(dir: &Path, tag: u8, index: usize) -> Vec<u8> {
    let store = once_free(|| ViewStore::open(&dir.join("views"))).await;
    let version = store.active_version("journey").unwrap().unwrap();
    let table = store.table("journey", version).unwrap();
    let keys: Vec<Vec<u8>> = table
        .dump()
        .unwrap()
        .into_iter()
        .map(|(key, _)| key)
        .filter(|key| key.first() == Some(&tag))
        .collect();
    assert_eq!(
        keys.len(),
        CUSTOMERS,
        "one record of table {tag} per customer"
    );
    let key = keys[index].clone();
    let checkpoint = table.checkpoint().unwrap();
    table
        .commit(
            Changes {
                puts: vec![(key.clone(), vec![0xff; 5])],
                deletes: Vec::new(),
            },
            &checkpoint,
        )
        .unwrap();
    store.flush().unwrap();
    key
}

async fn call(app: &Router, request: Request<Body>) -> (StatusCode, Value) {
    let response = app.clone().oneshot(request).await.unwrap();
    let status = response.status();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

async fn get(app: &Router, path: &str) -> (StatusCode, Value) {
    call(app, Request::get(path).body(Body::empty()).unwrap()).await
}

async fn caught_up(runtime: &ViewRuntime) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !runtime.caught_up().await.unwrap() {
        assert!(
            Instant::now() < deadline,
            "the view did not catch up in 30 s"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn event(customer: usize, kind: &str, at: &str, extra: Value) -> Value {
    let mut event = json!({
        "source": "test",
        "source_event_id": format!("c{customer}:{kind}"),
        "occurred_at": at,
        "customer": {"handles": [{"kind": "phone", "value": format!("+1555000{customer:04}")}]},
        "interaction_id": format!("chat-{customer}"),
        "channel": "chat",
        "type": kind,
    });
    for (key, value) in extra.as_object().cloned().unwrap_or_default() {
        event[key] = value;
    }
    event
}

#[tokio::test]
async fn a_damaged_view_record_is_passed_over_and_counted_not_a_failed_query() {
    let dir = tempfile::tempdir().unwrap();
    {
        let (app, runtime) = start(dir.path()).await;
        let events: Vec<Value> = (0..CUSTOMERS)
            .flat_map(|c| {
                [
                    event(
                        c,
                        "interaction_started",
                        "2026-03-02T09:00:00Z",
                        json!({"direction": "inbound"}),
                    ),
                    event(
                        c,
                        "wrapped_up",
                        "2026-03-02T09:10:00Z",
                        json!({"agent_id": "alice", "resolved": true, "topics": ["billing"]}),
                    ),
                ]
            })
            .collect();
        let request = Request::post("/v1/events")
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(Value::Array(events).to_string()))
            .unwrap();
        let (status, body) = call(&app, request).await;
        assert_eq!(status, StatusCode::ACCEPTED, "{body}");
        caught_up(&runtime).await;
        let (status, report) = get(&app, "/v1/reports/journeys").await;
        assert_eq!(status, StatusCode::OK, "{report}");
        assert_eq!(report["journeys"], CUSTOMERS, "{report}");
        runtime.stop().await.unwrap();
    }

    // The server is down: one journey's facts record (tag `f`) is damaged on disk.
    let damaged_key = damage_one(dir.path(), b'f', 3).await;

    let (app, runtime) = start(dir.path()).await;
    caught_up(&runtime).await;
    let (status, views) = get(&app, "/v1/views").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(views["views"][0]["unreadable_records"], 0, "{views}");

    // The report reads every journey: it answers with the ones it can read...
    for _ in 0..3 {
        let (status, report) = get(&app, "/v1/reports/journeys").await;
        assert_eq!(status, StatusCode::OK, "{report}");
        assert_eq!(report["journeys"], CUSTOMERS - 1, "{report}");
    }
    // ...and says what it passed over, once per record however often it is read.
    let (_, views) = get(&app, "/v1/views").await;
    assert_eq!(views["views"][0]["view"], "journey");
    assert_eq!(views["views"][0]["unreadable_records"], 1, "{views}");

    // The customer whose journey it was: no server error either.
    // The key is the table's tag, then (customer id, journey number) in postcard: the id's
    // length (one byte for an id this short), then its bytes.
    let length = usize::from(damaged_key[1]);
    let customer = std::str::from_utf8(&damaged_key[2..2 + length]).unwrap();
    let (status, body) = get(&app, &format!("/v1/customers/{customer}/journey")).await;
    assert!(!status.is_server_error(), "{status} {body}");
    runtime.stop().await.unwrap();
}

/// The fold side of the same damage: a customer's record is damaged on disk while the
/// server is down, then that customer writes again. The fold that needs the record passes
/// over it (counted, as queries count it) instead of failing and folding the same batch
/// again for ever: the view catches up, and the customer's journey answers with the new
/// event (its earlier history waits for a rebuild).
#[tokio::test]
async fn a_damaged_record_the_fold_needs_is_passed_over_and_the_view_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let post = |app: Router, events: Vec<Value>| async move {
        let request = Request::post("/v1/events")
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(Value::Array(events).to_string()))
            .unwrap();
        let (status, body) = call(&app, request).await;
        assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    };
    {
        let (app, runtime) = start(dir.path()).await;
        let events = (0..CUSTOMERS)
            .map(|c| {
                event(
                    c,
                    "interaction_started",
                    "2026-03-02T09:00:00Z",
                    json!({"direction": "inbound"}),
                )
            })
            .collect();
        post(app.clone(), events).await;
        caught_up(&runtime).await;
        runtime.stop().await.unwrap();
    }

    // The server is down: one customer's record (tag `c`) is damaged on disk.
    let key = damage_one(dir.path(), b'c', 5).await;
    // The key is the tag, then the customer id in postcard: its length, its bytes.
    let length = usize::from(key[1]);
    let customer = std::str::from_utf8(&key[2..2 + length]).unwrap().to_owned();

    let (app, runtime) = start(dir.path()).await;
    caught_up(&runtime).await;
    // Every customer writes again, the damaged one among them: the fold needs its record.
    let events = (0..CUSTOMERS)
        .map(|c| {
            event(
                c,
                "wrapped_up",
                "2026-03-02T09:10:00Z",
                json!({"agent_id": "alice", "resolved": true, "topics": ["billing"]}),
            )
        })
        .collect();
    post(app.clone(), events).await;
    caught_up(&runtime).await;
    let (_, views) = get(&app, "/v1/views").await;
    assert_eq!(views["views"][0]["unreadable_records"], 1, "{views}");
    let (status, journey) = get(&app, &format!("/v1/customers/{customer}/journey")).await;
    assert_eq!(status, StatusCode::OK, "{journey}");
    let text = journey.to_string();
    assert!(text.contains("wrapped up by alice"), "{journey}");
    // The others kept their whole history.
    let (status, report) = get(&app, "/v1/reports/journeys").await;
    assert_eq!(status, StatusCode::OK, "{report}");
    assert_eq!(report["journeys"], CUSTOMERS, "{report}");
    runtime.stop().await.unwrap();
}
