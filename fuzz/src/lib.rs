//! What the fuzz targets share: a webhook built from the fuzzer's bytes for a channel's
//! parser, and the checks every decoder's result must pass.
//!
//! A target must never panic, whatever the bytes. What a decoder accepts must also be what
//! the rest of the system can take: events a channel makes pass the ingest API's own
//! validation unchanged, and every accepted event survives the log's protobuf encoding.

use std::sync::OnceLock;

use chrono::{DateTime, Utc};
use omnilog_channels::{Registry, WebhookRequest};
use omnilog_events::Event;

fn registry() -> &'static Registry {
    static REGISTRY: OnceLock<Registry> = OnceLock::new();
    REGISTRY.get_or_init(Registry::standard)
}

/// A fixed receive time: a target must be deterministic, so a finding reproduces.
fn received_at() -> DateTime<Utc> {
    DateTime::from_timestamp(1_772_442_000, 0).expect("a valid time")
}

/// The webhook of `body` at channel `name`, sent with the channel's first content type. A
/// multipart body (one starting with `--`) names its boundary after the dashes of its first
/// line, as a platform's `Content-Type` would.
fn webhook(name: &str, content_type: &str, body: &[u8]) -> WebhookRequest {
    let mut content_type = content_type.to_owned();
    let mut header = content_type.clone();
    if name == "fax" && body.starts_with(b"--") {
        let first_line = body.split(|&b| b == b'\n').next().unwrap_or_default();
        let boundary = String::from_utf8_lossy(&first_line[2..]).trim().to_owned();
        content_type = "multipart/form-data".to_owned();
        header = format!("multipart/form-data; boundary={boundary}");
    }
    WebhookRequest {
        url: format!("https://desk.example.com/v1/channels/{name}"),
        content_type: Some(content_type),
        headers: [("content-type".to_owned(), header)].into_iter().collect(),
        body: body.to_vec(),
        received_at: received_at(),
    }
}

/// Runs channel `name`'s parser over `body`; checks what it makes.
pub fn channel(name: &str, body: &[u8]) {
    let ingestor = registry()
        .get(name)
        .unwrap_or_else(|| panic!("no channel {name}"));
    let request = webhook(name, ingestor.content_types()[0], body);
    if let Ok(events) = ingestor.parse(&request) {
        for event in &events {
            // The same rules as POST /v1/events: a channel cannot write what they refuse.
            let again = omnilog_events::revalidate(event)
                .unwrap_or_else(|e| panic!("channel {name} made an event ingest refuses: {e}"));
            assert_eq!(&again, event, "revalidating changed an event of {name}");
            survives_the_log(event);
        }
    }
}

/// An accepted event reads back from its log record as itself.
pub fn survives_the_log(event: &Event) {
    let record = omnilog_events::encode(event);
    let read = omnilog_events::decode(&record)
        .unwrap_or_else(|e| panic!("an accepted event's record does not decode: {e}"));
    assert_eq!(&read, event, "an event changed through its log record");
}

/// The canonical JSON decoder: a batch (`POST /v1/events`) and a single event (a line of
/// `omnilog export`, `omnilog import`'s input) from the same bytes.
pub fn canonical_json(bytes: &[u8]) {
    if let Ok(events) = omnilog_events::parse_batch(bytes) {
        // The fast path (simd-json) takes nothing the general path (serde_json) refuses,
        // and reads it the same.
        match omnilog_events::parse_batch_general(bytes) {
            Ok(general) => assert_eq!(events, general, "the two paths read a batch differently"),
            Err(e) => panic!("the fast path took a batch the general path refuses ({e})"),
        }
        for event in &events {
            survives_the_log(event);
        }
    }
    if let Ok(event) = omnilog_events::parse_event(bytes) {
        match omnilog_events::parse_event_general(bytes) {
            Ok(general) => assert_eq!(event, general, "the two paths read an event differently"),
            Err(e) => panic!("the fast path took an event the general path refuses ({e})"),
        }
        survives_the_log(&event);
        // What `export` writes, `import` reads back as the same event.
        let text = omnilog_events::to_canonical_json(&event);
        let read = omnilog_events::parse_event(text.as_bytes())
            .unwrap_or_else(|e| panic!("canonical JSON does not read back ({e}): {text}"));
        assert_eq!(
            read, event,
            "an event changed through its canonical JSON: {text}"
        );
    }
}

/// The protobuf decoders: a log record (the direct reader, prost behind it) and an
/// `EventBatch` (`POST /v1/events` as `application/x-protobuf`) from the same bytes.
pub fn protobuf(bytes: &[u8]) {
    let direct = omnilog_events::decode(bytes);
    let through_prost = omnilog_events::decode_through_prost(bytes);
    match (&direct, &through_prost) {
        (Ok(a), Ok(b)) => assert_eq!(a, b, "the direct reader and prost disagree"),
        (Ok(event), Err(e)) => panic!("the direct reader took what prost refuses ({e}): {event:?}"),
        (Err(_), Ok(_)) | (Err(_), Err(_)) => {}
    }
    if let Ok(event) = direct {
        survives_the_log(&event);
    }
    if let Ok(events) = omnilog_events::decode_batch(bytes) {
        for event in &events {
            // Ingest checks a protobuf batch with the JSON rules; that check must not panic.
            let _ = omnilog_events::revalidate(event);
        }
    }
}
