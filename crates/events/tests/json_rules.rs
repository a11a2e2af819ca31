//! The canonical JSON rules of CONTRACT §3: what is accepted, what is refused and how
//! the refusal names the field.

use omnilog_events::{Body, Channel, EventType, parse_batch, parse_event, to_canonical_json};

fn error_field(text: &str) -> String {
    parse_batch(text.as_bytes())
        .expect_err("should be refused")
        .field()
        .unwrap_or_default()
        .to_owned()
}

#[test]
fn the_contract_example_is_accepted_and_gets_a_derived_event_id() {
    let text = r#"{
      "source": "voice.twilio",
      "source_event_id": "CA123:completed",
      "occurred_at": "2026-03-01T09:00:05Z",
      "customer": { "handles": [ { "kind": "phone", "value": "+1 555 123 0001" } ] },
      "interaction_id": "CA123",
      "channel": "voice",
      "type": "queued",
      "queue": "billing", "priority": 0, "skills": ["billing"]
    }"#;
    let event = parse_event(text.as_bytes()).unwrap();
    assert_eq!(event.channel, Some(Channel::Voice));
    assert_eq!(event.event_type(), EventType::Queued);
    assert_eq!(
        event.customer.as_ref().unwrap().handles[0].value,
        "+15551230001"
    );
    assert_eq!(
        event.event_id,
        omnilog_events::identity::event_id_for_source(Some("voice.twilio"), "CA123:completed")
    );
    let again = parse_event(text.as_bytes()).unwrap();
    assert_eq!(event, again);
}

#[test]
fn an_event_without_any_id_gets_the_same_content_derived_id_twice() {
    let text = r#"[{"occurred_at":"2026-03-01T09:00:05Z","type":"agent_state","agent_id":"a1","state":"available"}]"#;
    let first = parse_batch(text.as_bytes()).unwrap();
    let second = parse_batch(text.as_bytes()).unwrap();
    assert_eq!(first[0].event_id, second[0].event_id);
    let other = text.replace("available", "away");
    assert_ne!(
        parse_batch(other.as_bytes()).unwrap()[0].event_id,
        first[0].event_id
    );
}

#[test]
fn missing_required_fields_are_named() {
    assert_eq!(error_field(r#"[{"type":"hold"}]"#), "[0].occurred_at");
    assert_eq!(
        error_field(r#"[{"occurred_at":"2026-03-01T09:00:05Z"}]"#),
        "[0].type"
    );
    let queued_without_queue = r#"[{"occurred_at":"2026-03-01T09:00:05Z","type":"queued","channel":"chat","interaction_id":"c1","customer":{"id":"x"}}]"#;
    assert_eq!(error_field(queued_without_queue), "[0].queue");
    let no_customer = r#"[{"occurred_at":"2026-03-01T09:00:05Z","type":"hold","channel":"chat","interaction_id":"c1"}]"#;
    assert_eq!(error_field(no_customer), "[0].customer");
}

#[test]
fn wrong_types_and_values_are_named() {
    let base = r#"{"occurred_at":"2026-03-01T09:00:05Z","channel":"chat","interaction_id":"c1","customer":{"id":"x"},"type":"queued","queue":"q""#;
    assert_eq!(
        error_field(&format!("[{base},\"priority\":\"high\"}}]")),
        "[0].priority"
    );
    assert_eq!(
        error_field(&format!("[{base},\"skills\":[1]}}]")),
        "[0].skills[0]"
    );
    assert_eq!(
        error_field(
            r#"[{"occurred_at":"yesterday","type":"hold","channel":"chat","interaction_id":"c","customer":{"id":"x"}}]"#
        ),
        "[0].occurred_at"
    );
    assert_eq!(
        error_field(
            r#"[{"occurred_at":"2026-03-01T09:00:05Z","type":"hold","channel":"pigeon","interaction_id":"c","customer":{"id":"x"}}]"#
        ),
        "[0].channel"
    );
    assert_eq!(
        error_field(
            r#"[{"occurred_at":"2026-03-01T09:00:05Z","type":"csat","score":9,"channel":"chat","interaction_id":"c","customer":{"id":"x"}}]"#
        ),
        "[0].score"
    );
    assert_eq!(
        error_field(
            r#"[{"occurred_at":"2026-03-01T09:00:05Z","type":"hold","channel":"chat","interaction_id":"c","customer":{"handles":[{"kind":"phone","value":"n/a"}]}}]"#
        ),
        "[0].customer.handles[0]"
    );
    let long_handle = format!(
        r#"[{{"occurred_at":"2026-03-01T09:00:05Z","type":"hold","channel":"chat","interaction_id":"c","customer":{{"handles":[{{"kind":"visitor","value":"{}"}}]}}}}]"#,
        "v".repeat(513)
    );
    assert_eq!(error_field(&long_handle), "[0].customer.handles[0]");
    let long_id = format!(
        r#"[{{"occurred_at":"2026-03-01T09:00:05Z","type":"hold","channel":"chat","interaction_id":"c","customer":{{"id":"{}"}}}}]"#,
        "c".repeat(257)
    );
    assert_eq!(error_field(&long_id), "[0].customer.id");
    let long_merge = format!(
        r#"[{{"occurred_at":"2026-03-02T10:01:00Z","source":"crm","source_event_id":"merge-1","customer":{{"id":"c-alice"}},"type":"customers_merged","from_customer":"{}","into_customer":"c-alice"}}]"#,
        "c".repeat(257)
    );
    assert_eq!(error_field(&long_merge), "[0].from_customer");
    // Padded past the log's longest key: refused (agent ids) or kept trimmed (customer
    // ids), never stored as sent.
    let long_agent = format!(
        r#"[{{"occurred_at":"2026-03-01T09:00:05Z","type":"agent_state","agent_id":"{}","state":"available"}}]"#,
        "a".repeat(70_000)
    );
    assert_eq!(error_field(&long_agent), "[0].agent_id");
    let long_author = format!(
        r#"[{{"occurred_at":"2026-03-01T09:00:05Z","type":"message","channel":"chat","interaction_id":"c","customer":{{"id":"x"}},"direction":"outbound","author":"agent","agent_id":"{}"}}]"#,
        "a".repeat(257)
    );
    assert_eq!(error_field(&long_author), "[0].agent_id");
    let padded_merge = format!(
        r#"[{{"occurred_at":"2026-03-02T10:01:00Z","source":"crm","source_event_id":"merge-2","type":"customers_merged","from_customer":"c-bob","into_customer":"c-alice{}"}}]"#,
        " ".repeat(70_000)
    );
    let merged = parse_batch(padded_merge.as_bytes()).unwrap();
    assert!(
        matches!(&merged[0].body, Body::CustomersMerged { into_customer, .. } if into_customer == "c-alice"),
        "{:?}",
        merged[0].body
    );
    assert!(
        parse_batch(
            long_merge
                .replace(&"c".repeat(257), &"c".repeat(256))
                .as_bytes()
        )
        .is_ok()
    );
}

#[test]
fn fields_of_another_type_and_unknown_fields_are_refused() {
    let stray = r#"[{"occurred_at":"2026-03-01T09:00:05Z","type":"hold","queue":"q","channel":"chat","interaction_id":"c","customer":{"id":"x"}}]"#;
    assert_eq!(error_field(stray), "[0].queue");
    let unknown = r#"[{"occurred_at":"2026-03-01T09:00:05Z","type":"hold","colour":"red","channel":"chat","interaction_id":"c","customer":{"id":"x"}}]"#;
    let error = parse_batch(unknown.as_bytes()).unwrap_err().to_string();
    assert!(error.contains("colour"), "{error}");
}

#[test]
fn the_second_bad_event_of_a_batch_is_named_by_its_index() {
    let text = r#"[
      {"occurred_at":"2026-03-01T09:00:05Z","type":"agent_state","agent_id":"a1","state":"available"},
      {"occurred_at":"2026-03-01T09:00:05Z","type":"agent_state","agent_id":"a1","state":"sleepy"}
    ]"#;
    assert_eq!(error_field(text), "[1].state");
}

#[test]
fn schema_versions_newer_than_this_build_are_refused() {
    let text = r#"[{"schema_version":99,"occurred_at":"2026-03-01T09:00:05Z","type":"agent_state","agent_id":"a1","state":"away"}]"#;
    assert_eq!(error_field(text), "[0].schema_version");
}

#[test]
fn canonical_output_reads_back_to_the_same_event() {
    let text = r#"{"event_id":"6f2c1a52-8a4c-4a57-9c7d-0d2b8f1f2a10","occurred_at":"2026-03-01T10:00:05.250+01:00","type":"agent_state","agent_id":"a1","state":"available","skills":["billing"],"capacity":{"chat":3,"voice":1}}"#;
    let event = parse_event(text.as_bytes()).unwrap();
    let canonical = to_canonical_json(&event);
    assert!(
        canonical.contains(r#""occurred_at":"2026-03-01T09:00:05.250Z""#),
        "{canonical}"
    );
    assert_eq!(parse_event(canonical.as_bytes()).unwrap(), event);
    match event.body {
        Body::AgentState { capacity, .. } => {
            assert_eq!(capacity.unwrap()[&Channel::Chat], 3);
        }
        other => panic!("unexpected body {other:?}"),
    }
}

#[test]
fn control_characters_in_identifiers_and_text_are_refused_naming_the_field() {
    let queued = |queue: &str, extra: &str| {
        format!(
            r#"[{{"occurred_at":"2026-03-02T09:00:00Z","customer":{{"handles":[{{"kind":"phone","value":"+15550000001"}}]}},
            "interaction_id":"c0","channel":"ivr","type":"queued","queue":{queue},"skills":[]{extra}}}]"#
        )
    };
    assert_eq!(error_field(&queued(r#""a\u0000b""#, "")), "[0].queue");
    assert_eq!(error_field(&queued(r#""a\u001bb""#, "")), "[0].queue");
    assert_eq!(
        error_field(&queued(
            r#""billing""#,
            r#","attributes":{"k":"bell\u0007"}"#
        )),
        "[0].attributes.k"
    );
    assert_eq!(
        error_field(&queued(r#""billing""#, "").replace(r#""c0""#, r#""c\u0000""#)),
        "[0].interaction_id"
    );
    let assigned = r#"{"occurred_at":"2026-03-02T09:00:00Z","customer":{"id":"k"},"interaction_id":"c0",
        "channel":"chat","type":"assigned","agent_id":"alice\u0000bob"}"#;
    assert_eq!(error_field(assigned), "agent_id");
    let handle = r#"{"occurred_at":"2026-03-02T09:00:00Z","customer":{"handles":[{"kind":"email","value":"a\u0000@example.com"}]},
        "interaction_id":"c0","channel":"email","type":"hold"}"#;
    assert_eq!(error_field(handle), "customer.handles[0].value");
    // A message keeps its line breaks and tabs.
    let message = r#"{"occurred_at":"2026-03-02T09:00:00Z","customer":{"id":"k"},"interaction_id":"c0","channel":"email",
        "type":"message","direction":"inbound","author":"customer","text":"Hello,\r\n\tthe invoice is wrong.\n"}"#;
    assert!(parse_event(message.as_bytes()).is_ok());
}

#[test]
fn a_key_given_twice_is_refused_naming_it() {
    let text = r#"[{"occurred_at":"2026-03-02T09:00:00Z","customer":{"id":"k"},"interaction_id":"c0",
        "channel":"chat","type":"queued","queue":"first","queue":"billing"}]"#;
    let error = parse_batch(text.as_bytes()).expect_err("a key given twice");
    assert_eq!(error.field(), Some("[0].queue"), "{error}");
    assert!(error.to_string().contains("twice"), "{error}");
    let nested = r#"{"occurred_at":"2026-03-02T09:00:00Z","customer":{"id":"k","id":"j"},
        "interaction_id":"c0","channel":"chat","type":"hold"}"#;
    assert_eq!(error_field(nested), "customer.id");
}

/// A map's key given twice was kept as its last value by the fast path, while the general
/// path refused it: the fast path now refuses it too, and the general path names it.
#[test]
fn a_key_given_twice_in_a_map_is_refused_naming_it() {
    let attributes = r#"{"occurred_at":"2026-03-02T09:00:00Z","customer":{"id":"k"},"interaction_id":"c0",
        "channel":"chat","type":"hold","attributes":{"tier":"gold","tier":"silver"}}"#;
    assert_eq!(error_field(attributes), "attributes.tier");
    let profile = r#"{"occurred_at":"2026-03-02T09:00:00Z","customer":{"id":"k","attributes":{"segment":"a","segment":"b"}},
        "interaction_id":"c0","channel":"chat","type":"hold"}"#;
    assert_eq!(error_field(profile), "customer.attributes.segment");
    let capacity = r#"{"occurred_at":"2026-03-02T09:00:00Z","type":"agent_state","agent_id":"a1","state":"available",
        "skills":[],"capacity":{"chat":1,"chat":2}}"#;
    assert_eq!(error_field(capacity), "capacity.chat");
    let batch = format!("[{attributes}]");
    assert!(parse_batch(batch.as_bytes()).is_err());
}

/// JSON's `-0` in a whole-number field: the fast path (simd-json) read it as 0 and the
/// general path (serde_json) as the float -0.0, which it refused (a fuzzer finding). Both
/// read it as 0 now; any other fraction stays refused.
#[test]
fn minus_zero_is_zero_in_a_whole_number_field_on_both_paths() {
    let agent = |capacity: &str| {
        format!(
            r#"{{"occurred_at":"2026-03-02T09:00:00Z","type":"agent_state","agent_id":"a1","state":"available","skills":[],"capacity":{{"ivr":{capacity}}}}}"#
        )
    };
    let zero = parse_event(agent("0").as_bytes()).unwrap();
    let minus_zero = agent("-0");
    assert_eq!(parse_event(minus_zero.as_bytes()).unwrap(), zero);
    assert_eq!(
        omnilog_events::parse_event_general(minus_zero.as_bytes()).unwrap(),
        zero
    );
    assert_eq!(error_field(&agent("0.5")), "capacity.ivr");
}
