//! Every event type survives JSON → protobuf → JSON unchanged: a property test over
//! generated events of every type, with every optional field both present and absent.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use omnilog_events::identity::normalise_handle;
use omnilog_events::{
    AgentStatus, Author, Body, CURRENT_SCHEMA_VERSION, Channel, CustomerId, CustomerRef, Direction,
    Event, EventType, decode, decode_batch, decode_through_prost, encode, encode_batch,
    encode_through_prost, parse_event, to_canonical_json,
};
use proptest::collection::{btree_map, vec};
use proptest::option;
use proptest::prelude::*;
use uuid::Uuid;

fn word() -> impl Strategy<Value = String> {
    "[a-z][a-z0-9_.:-]{0,11}"
}

/// A customer id: short, a UUID's length, or longer than the 36 bytes held in place.
fn customer_id_text() -> impl Strategy<Value = String> {
    "[a-z][a-z0-9_.:-]{0,60}"
}

fn free_text() -> impl Strategy<Value = String> {
    "\\PC{0,24}"
}

/// A customer attribute's key, as the contract names them.
fn attribute_key() -> impl Strategy<Value = String> {
    "[a-z][a-z0-9_.-]{0,11}"
}

fn time() -> impl Strategy<Value = DateTime<Utc>> {
    let seconds = 946_684_800i64..4_102_444_800i64;
    let nanos = prop_oneof![
        Just(0u32),
        (0u32..1000).prop_map(|ms| ms * 1_000_000),
        (0u32..1_000_000).prop_map(|us| us * 1000),
        0u32..1_000_000_000,
    ];
    (seconds, nanos).prop_map(|(s, n)| DateTime::from_timestamp(s, n).unwrap())
}

fn pick<T: Copy + std::fmt::Debug + 'static>(all: &'static [T]) -> impl Strategy<Value = T> {
    proptest::sample::select(all)
}

fn handle() -> impl Strategy<Value = omnilog_events::Handle> {
    prop_oneof![
        "[0-9]{6,12}".prop_map(|d| normalise_handle("phone", &format!("+{d}")).unwrap()),
        ("[a-zA-Z0-9.]{1,8}", "[a-z]{1,8}").prop_map(|(u, d)| normalise_handle(
            "email",
            &format!("{u}@{d}.com")
        )
        .unwrap()),
        (
            pick(&["messenger", "whatsapp", "visitor"]),
            "[A-Za-z0-9-]{1,12}"
        )
            .prop_map(|(k, v)| normalise_handle(k, &v).unwrap()),
    ]
}

fn body(event_type: EventType) -> BoxedStrategy<Body> {
    let direction = pick(Direction::ALL);
    match event_type {
        EventType::InteractionStarted => (
            direction,
            option::of(free_text()),
            option::of(any::<bool>()),
        )
            .prop_map(
                |(direction, subject, self_service)| Body::InteractionStarted {
                    direction,
                    subject,
                    self_service,
                },
            )
            .boxed(),
        EventType::Message => (
            direction,
            pick(Author::ALL),
            option::of(word()),
            option::of(free_text()),
        )
            .prop_map(|(direction, author, agent_id, text)| Body::Message {
                direction,
                author,
                agent_id,
                text,
            })
            .boxed(),
        EventType::Queued => (word(), any::<i32>(), vec(word(), 0..4))
            .prop_map(|(queue, priority, skills)| Body::Queued {
                queue,
                priority,
                skills,
            })
            .boxed(),
        EventType::Offered => word()
            .prop_map(|agent_id| Body::Offered { agent_id })
            .boxed(),
        EventType::OfferDeclined => word()
            .prop_map(|agent_id| Body::OfferDeclined { agent_id })
            .boxed(),
        EventType::OfferTimedOut => word()
            .prop_map(|agent_id| Body::OfferTimedOut { agent_id })
            .boxed(),
        EventType::Assigned => word()
            .prop_map(|agent_id| Body::Assigned { agent_id })
            .boxed(),
        EventType::Transferred => (option::of(word()), option::of(word()), word())
            .prop_map(
                |(to_queue, to_agent, fallback)| match (to_queue, to_agent) {
                    (None, None) => Body::Transferred {
                        to_queue: Some(fallback),
                        to_agent: None,
                    },
                    (to_queue, to_agent) => Body::Transferred { to_queue, to_agent },
                },
            )
            .boxed(),
        EventType::Hold => Just(Body::Hold).boxed(),
        EventType::Resumed => Just(Body::Resumed).boxed(),
        EventType::Abandoned => Just(Body::Abandoned).boxed(),
        EventType::Ended => option::of(free_text())
            .prop_map(|reason| Body::Ended { reason })
            .boxed(),
        EventType::WrappedUp => (
            word(),
            any::<bool>(),
            option::of(free_text()),
            vec(word(), 0..4),
        )
            .prop_map(
                |(agent_id, resolved, disposition, topics)| Body::WrappedUp {
                    agent_id,
                    resolved,
                    disposition,
                    topics,
                },
            )
            .boxed(),
        EventType::Csat => (1u8..=5).prop_map(|score| Body::Csat { score }).boxed(),
        EventType::Note => (word(), word())
            .prop_map(|(agent_id, text)| Body::Note { agent_id, text })
            .boxed(),
        EventType::Tagged => vec(word(), 1..4)
            .prop_map(|topics| Body::Tagged { topics })
            .boxed(),
        EventType::IdentityLinked => any::<bool>()
            .prop_map(|by_handles| Body::IdentityLinked { by_handles })
            .boxed(),
        EventType::CustomerProfile => Just(Body::CustomerProfile).boxed(),
        EventType::CustomersMerged => (word(), word())
            .prop_map(|(from, into)| Body::CustomersMerged {
                into_customer: format!("{into}-into"),
                from_customer: from,
            })
            .boxed(),
        EventType::ProactiveNotice => (word(), option::of(free_text()))
            .prop_map(|(reason, text)| Body::ProactiveNotice { reason, text })
            .boxed(),
        EventType::AgentState => (
            word(),
            pick(AgentStatus::ALL),
            option::of(vec(word(), 0..4)),
            option::of(btree_map(pick(Channel::ALL), 0u32..10, 0..4)),
        )
            .prop_map(|(agent_id, state, skills, capacity)| Body::AgentState {
                agent_id,
                state,
                skills,
                capacity,
            })
            .boxed(),
    }
}

fn event() -> impl Strategy<Value = Event> {
    pick(EventType::ALL).prop_flat_map(|event_type| {
        let envelope = (
            any::<u128>(),
            option::of(word()),
            option::of(word()),
            time(),
            option::of(time()),
            (option::of(customer_id_text()), vec(handle(), 0..3)),
            word(),
            pick(Channel::ALL),
            btree_map(word(), free_text(), 0..3),
        );
        let profile = (
            btree_map(attribute_key(), free_text(), 0..3),
            btree_map(attribute_key(), free_text(), 1..3),
            any::<bool>(),
        );
        (envelope, body(event_type), profile).prop_map(move |(envelope, body, profile)| {
            let (
                id,
                source,
                source_event_id,
                occurred_at,
                recorded_at,
                (customer_id, handles),
                interaction_id,
                channel,
                attributes,
            ) = envelope;
            let (carried, profiled, provenance) = profile;
            // Interaction events need the envelope; the others carry it as provenance,
            // or not at all.
            let interaction = event_type.is_interaction_event() || provenance;
            let customer_id = customer_id.map(|id| CustomerId::from(id.as_str()));
            let customer = match &body {
                Body::AgentState { .. } => None,
                Body::CustomersMerged { .. } => None,
                Body::IdentityLinked { by_handles } => Some(CustomerRef {
                    // A link by handles alone may name no customer (ingest resolves it).
                    id: if *by_handles {
                        customer_id
                    } else {
                        Some(customer_id.unwrap_or_else(|| "c-linked".into()))
                    },
                    handles: if handles.is_empty() {
                        vec![normalise_handle("email", "x@y.z").unwrap()]
                    } else {
                        handles
                    },
                    attributes: carried,
                    ..CustomerRef::default()
                }),
                _ => Some(CustomerRef {
                    id: if handles.is_empty() {
                        Some(customer_id.unwrap_or_else(|| "c-1".into()))
                    } else {
                        customer_id
                    },
                    handles,
                    // A profile gives its attributes in `attributes`, not on its customer.
                    attributes: if event_type == EventType::CustomerProfile {
                        BTreeMap::new()
                    } else {
                        carried
                    },
                    ..CustomerRef::default()
                }),
            };
            let attributes = if event_type == EventType::CustomerProfile {
                profiled
            } else {
                attributes.into_iter().collect::<BTreeMap<_, _>>()
            };
            Event {
                event_id: Uuid::from_u128(id),
                schema_version: CURRENT_SCHEMA_VERSION,
                source: source.map(Into::into),
                source_event_id: source_event_id.map(Into::into),
                occurred_at,
                recorded_at,
                customer: customer.map(std::sync::Arc::new),
                interaction_id: interaction.then(|| interaction_id.into()),
                channel: interaction.then_some(channel),
                attributes,
                body,
            }
        })
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn json_to_protobuf_to_json_is_unchanged(event in event()) {
        let json = to_canonical_json(&event);
        let parsed = parse_event(json.as_bytes()).map_err(|e| TestCaseError::fail(format!("{e}: {json}")))?;
        prop_assert_eq!(&parsed, &event);
        let decoded = decode(&encode(&parsed)).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(&decoded, &event);
        prop_assert_eq!(to_canonical_json(&decoded), json);
    }

    #[test]
    fn direct_decoding_equals_prost_decoding(
        event in event(),
        at in any::<proptest::sample::Index>(),
        byte in any::<u8>(),
        damage in 0u8..4,
    ) {
        let mut bytes = encode(&event);
        prop_assert_eq!(decode(&bytes), decode_through_prost(&bytes));
        // The same record damaged: a byte changed, cut short, a byte inserted, or an
        // unknown field appended. Both paths give the same event or the same error.
        let index = at.index(bytes.len());
        match damage {
            0 => bytes[index] = byte,
            1 => bytes.truncate(index),
            2 => bytes.insert(index, byte),
            _ => bytes.extend_from_slice(&[0x98, 0x06, byte & 0x7f]), // field 99, varint
        }
        prop_assert_eq!(decode(&bytes), decode_through_prost(&bytes));
    }

    #[test]
    fn direct_encoding_equals_prost_encoding(event in event()) {
        prop_assert_eq!(encode(&event), encode_through_prost(&event));
    }

    #[test]
    fn a_protobuf_batch_decodes_to_the_same_events(events in vec(event(), 0..8)) {
        let decoded = decode_batch(&encode_batch(&events)).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(decoded, events);
    }
}

#[test]
fn every_event_type_is_generated() {
    // The strategy above draws the type first from EventType::ALL; this pins that list to
    // the contract's twenty types plus agent_state, so a type added later is covered.
    assert_eq!(EventType::ALL.len(), 21);
}
