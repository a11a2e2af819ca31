//! Inputs the fuzz targets (`fuzz/`, see docs/testing.md) found trouble with, kept under
//! `tests/fuzz_regressions/channel_<channel>/`, run through the same channel parser the
//! way the target runs them: each must be answered (an error is fine) without a panic,
//! and whatever events it makes must pass ingest's validation unchanged.
//!
//! The behaviour each one showed is also pinned by a named test beside its fix (the SMS
//! channel's `NumMedia` count, say).

use std::collections::BTreeMap;
use std::path::Path;

use chrono::DateTime;
use omnilog_channels::{Registry, WebhookRequest};

/// The webhook the fuzz target builds from `body` (fuzz/src/lib.rs): the channel's first
/// content type, or a multipart form whose boundary is its first line's for `fax`.
fn webhook(channel: &str, content_type: &str, body: Vec<u8>) -> WebhookRequest {
    let (content_type, header) = if channel == "fax" && body.starts_with(b"--") {
        let first_line = body.split(|&b| b == b'\n').next().unwrap_or_default();
        let boundary = String::from_utf8_lossy(&first_line[2..]).trim().to_owned();
        (
            "multipart/form-data".to_owned(),
            format!("multipart/form-data; boundary={boundary}"),
        )
    } else {
        (content_type.to_owned(), content_type.to_owned())
    };
    WebhookRequest {
        url: format!("https://desk.example.com/v1/channels/{channel}"),
        content_type: Some(content_type),
        headers: BTreeMap::from([("content-type".to_owned(), header)]),
        body,
        received_at: DateTime::from_timestamp(1_772_442_000, 0).unwrap(),
    }
}

#[test]
fn every_input_the_fuzzer_found_is_answered_without_a_panic() {
    let registry = Registry::standard();
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fuzz_regressions");
    let mut ran = 0;
    for target in std::fs::read_dir(&root).unwrap() {
        let target = target.unwrap();
        let name = target.file_name().to_string_lossy().into_owned();
        let channel = name
            .strip_prefix("channel_")
            .unwrap_or_else(|| panic!("{name}: not a channel target's directory"));
        let ingestor = registry
            .get(channel)
            .unwrap_or_else(|| panic!("{name}: no channel {channel}"));
        for input in std::fs::read_dir(target.path()).unwrap() {
            let input = input.unwrap().path();
            let body = std::fs::read(&input).unwrap();
            let request = webhook(channel, ingestor.content_types()[0], body);
            if let Ok(events) = ingestor.parse(&request) {
                for event in events {
                    let again = omnilog_events::revalidate(&event).unwrap_or_else(|e| {
                        panic!("{}: an event ingest refuses: {e}", input.display())
                    });
                    assert_eq!(again, event, "{}", input.display());
                }
            }
            ran += 1;
        }
    }
    assert!(ran > 0, "no regression inputs under {}", root.display());
}
