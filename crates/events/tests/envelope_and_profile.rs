//! The envelope on every event type (issue 18, item 2) and customer attributes (item 4):
//! `channel` and `interaction_id` are provenance on the types that are not interaction
//! events, an `identity_linked` may name its customer by its handles alone, and a
//! customer's attributes come in a `customer_profile` or on any event's customer.

use omnilog_events::{Body, Channel, EventType, decode, encode, parse_batch, to_canonical_json};
use serde_json::{Value, json};

fn parse_one(value: Value) -> Result<omnilog_events::Event, String> {
    parse_batch(json!([value]).to_string().as_bytes())
        .map(|mut events| events.remove(0))
        .map_err(|e| e.to_string())
}

fn refused_field(value: Value) -> String {
    let error = parse_batch(json!([value]).to_string().as_bytes()).unwrap_err();
    error.field().unwrap_or_default().to_owned()
}

/// The fields besides the envelope an event of each type needs.
fn body_of(event_type: EventType) -> Value {
    match event_type {
        EventType::InteractionStarted => json!({"direction": "inbound"}),
        EventType::Message => json!({"direction": "inbound", "author": "customer", "text": "hi"}),
        EventType::Queued => json!({"queue": "billing"}),
        EventType::Offered
        | EventType::OfferDeclined
        | EventType::OfferTimedOut
        | EventType::Assigned => json!({"agent_id": "ann"}),
        EventType::Transferred => json!({"to_queue": "tech"}),
        EventType::WrappedUp => json!({"agent_id": "ann", "resolved": true}),
        EventType::Csat => json!({"score": 5}),
        EventType::Note => json!({"agent_id": "ann", "text": "called back"}),
        EventType::Tagged => json!({"topics": ["refund"]}),
        EventType::CustomersMerged => json!({"from_customer": "c-old", "into_customer": "c-1"}),
        EventType::ProactiveNotice => json!({"reason": "outage"}),
        EventType::AgentState => json!({"agent_id": "ann", "state": "available"}),
        EventType::CustomerProfile => json!({"attributes": {"segment": "finance"}}),
        EventType::Hold
        | EventType::Resumed
        | EventType::Abandoned
        | EventType::Ended
        | EventType::IdentityLinked => json!({}),
    }
}

#[test]
fn every_event_type_accepts_the_envelope_and_keeps_it_through_protobuf() {
    for &event_type in EventType::ALL {
        let mut value = json!({
            "occurred_at": "2026-03-02T09:00:00Z", "type": event_type.as_str(),
            "source": "desk", "source_event_id": format!("e-{}", event_type.as_str()),
            "interaction_id": "CA1", "channel": "voice",
        });
        // An agent's presence names no customer; every other type may.
        if event_type != EventType::AgentState {
            value["customer"] =
                json!({"id": "c-1", "handles": [{"kind": "phone", "value": "+15550001"}]});
        }
        value
            .as_object_mut()
            .unwrap()
            .extend(body_of(event_type).as_object().unwrap().clone());
        let event = parse_one(value).unwrap_or_else(|e| panic!("{event_type}: {e}"));
        assert_eq!(event.interaction_id.as_deref(), Some("CA1"), "{event_type}");
        assert_eq!(event.channel, Some(Channel::Voice), "{event_type}");
        let decoded = decode(&encode(&event)).unwrap();
        assert_eq!(decoded, event, "{event_type}");
        let again = parse_one(serde_json::from_str(&to_canonical_json(&event)).unwrap()).unwrap();
        assert_eq!(again, event, "{event_type}");
    }
}

#[test]
fn provenance_names_its_interaction_with_both_fields_and_a_presence_still_no_customer() {
    let link = json!({"occurred_at": "2026-03-02T09:00:00Z", "type": "identity_linked",
        "customer": {"id": "c-1", "handles": [{"kind": "phone", "value": "+15550001"}]},
        "interaction_id": "CA1"});
    assert_eq!(refused_field(link), "[0].channel");
    // A channel alone is fine: the channel the link was made on.
    let on_chat = json!({"occurred_at": "2026-03-02T09:00:00Z", "type": "agent_state",
        "agent_id": "ann", "state": "busy", "channel": "chat"});
    assert_eq!(parse_one(on_chat).unwrap().channel, Some(Channel::Chat));
    let with_customer = json!({"occurred_at": "2026-03-02T09:00:00Z", "type": "agent_state",
        "agent_id": "ann", "state": "busy", "customer": {"id": "c-1"}});
    assert_eq!(refused_field(with_customer), "[0].customer");
}

#[test]
fn an_identity_link_without_a_customer_id_is_a_link_by_handles() {
    let handles =
        json!([{"kind": "phone", "value": "+1 555 0001"}, {"kind": "email", "value": "A@x.com"}]);
    let by_handles = parse_one(json!({"occurred_at": "2026-03-02T09:00:00Z",
        "type": "identity_linked", "customer": {"handles": handles}}))
    .unwrap();
    assert_eq!(by_handles.body, Body::IdentityLinked { by_handles: true });
    assert_eq!(by_handles.customer_id(), None);
    let explicit = parse_one(json!({"occurred_at": "2026-03-02T09:00:00Z",
        "type": "identity_linked", "customer": {"id": "crm-42", "handles": handles}}))
    .unwrap();
    assert_eq!(explicit.body, Body::IdentityLinked { by_handles: false });
    // Canonical JSON says so, and reads back the same once ingest named the customer.
    let mut resolved = by_handles.clone();
    std::sync::Arc::make_mut(resolved.customer.as_mut().unwrap()).id = Some("c-resolved".into());
    let text = to_canonical_json(&resolved);
    assert!(text.contains(r#""by_handles":true"#), "{text}");
    assert_eq!(
        parse_one(serde_json::from_str(&text).unwrap()).unwrap(),
        resolved
    );
    assert!(!to_canonical_json(&explicit).contains("by_handles"));
    assert_eq!(decode(&encode(&resolved)).unwrap(), resolved);
    // Still no link without a handle.
    let empty = json!({"occurred_at": "2026-03-02T09:00:00Z", "type": "identity_linked",
        "customer": {"id": "crm-42"}});
    assert_eq!(refused_field(empty), "[0].customer.handles");
}

#[test]
fn a_customer_profile_sets_named_attributes_of_a_customer() {
    let profile = |extra: Value| {
        let mut value = json!({"occurred_at": "2026-03-02T09:00:00Z", "type": "customer_profile",
            "customer": {"handles": [{"kind": "email", "value": "a@x.com"}]}});
        value
            .as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        value
    };
    let event = parse_one(profile(
        json!({"attributes": {"segment": "finance", "department": "", "crm.tier": "gold"}}),
    ))
    .unwrap();
    assert_eq!(event.body, Body::CustomerProfile);
    assert_eq!(event.attributes["segment"], "finance");
    assert_eq!(decode(&encode(&event)).unwrap(), event);
    assert_eq!(refused_field(profile(json!({}))), "[0].attributes");
    assert_eq!(
        refused_field(profile(json!({"attributes": {}}))),
        "[0].attributes"
    );
    assert_eq!(
        refused_field(profile(json!({"attributes": {"Segment": "x"}}))),
        "[0].attributes.Segment"
    );
    assert_eq!(
        refused_field(profile(json!({"attributes": {"segment": "a\u{7}b"}}))),
        "[0].attributes.segment"
    );
    assert_eq!(
        refused_field(profile(json!({"attributes": {"segment": "x".repeat(257)}}))),
        "[0].attributes.segment"
    );
    let no_customer = json!({"occurred_at": "2026-03-02T09:00:00Z", "type": "customer_profile",
        "attributes": {"segment": "finance"}});
    assert_eq!(refused_field(no_customer), "[0].customer");
    let both = json!({"occurred_at": "2026-03-02T09:00:00Z", "type": "customer_profile",
        "customer": {"id": "c-1", "attributes": {"segment": "sales"}},
        "attributes": {"segment": "finance"}});
    assert_eq!(refused_field(both), "[0].customer.attributes");
}

#[test]
fn any_event_may_carry_its_customers_attributes() {
    let event = parse_one(
        json!({"occurred_at": "2026-03-02T09:00:00Z", "type": "queued",
        "queue": "billing", "interaction_id": "CA1", "channel": "voice",
        "customer": {"handles": [{"kind": "phone", "value": "+15550001"}],
                     "attributes": {"segment": "medical", "department": "cardiology"}}}),
    )
    .unwrap();
    let customer = event.customer.as_ref().unwrap();
    assert_eq!(customer.attributes["segment"], "medical");
    assert_eq!(decode(&encode(&event)).unwrap(), event);
    let text = to_canonical_json(&event);
    assert!(
        text.contains(r#""attributes":{"department":"cardiology","segment":"medical"}"#),
        "{text}"
    );
    let bad = json!({"occurred_at": "2026-03-02T09:00:00Z", "type": "hold",
        "interaction_id": "CA1", "channel": "voice",
        "customer": {"id": "c-1", "attributes": {"bad key": "x"}}});
    assert_eq!(refused_field(bad), "[0].customer.attributes.bad key");
}
