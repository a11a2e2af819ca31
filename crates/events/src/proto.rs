//! The wire form: conversions between [`Event`] and the prost types of
//! `proto/omnilog/v1/event.proto`, and the encode/decode of log payloads.
//!
//! Encoding never fails. Decoding checks what protobuf cannot (a known enum value, a
//! body present, the fields a type requires), so a corrupt or foreign record becomes a
//! named error (and a dead letter) instead of a wrong fold.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use prost::Message as _;
use uuid::Uuid;

use crate::error::EventError;
use crate::model::{
    AgentStatus, Author, Body, CURRENT_SCHEMA_VERSION, Channel, CompactString, CustomerRef,
    Direction, Event, Handle,
};
use crate::pb;

/// Encodes an event as a protobuf `omnilog.v1.Event` (through the direct encoder,
/// `wire_encode.rs`, which writes prost's bytes without copying the event first).
pub fn encode(event: &Event) -> Vec<u8> {
    crate::wire_encode::encode_canonical(event)
}

/// [`encode`] through prost's generated types: the reference the direct encoder is tested
/// against.
pub fn encode_through_prost(event: &Event) -> Vec<u8> {
    pb::Event::from(event).encode_to_vec()
}

/// Decodes a protobuf `omnilog.v1.Event` and checks it against the contract.
pub fn decode(bytes: &[u8]) -> Result<Event, EventError> {
    decode_sharing(bytes, None)
}

/// [`decode`], with the customers of a batch shared when `customers` is given.
fn decode_sharing(
    bytes: &[u8],
    customers: Option<&mut crate::wire::SharedCustomers>,
) -> Result<Event, EventError> {
    let mut out = Err(EventError::Decode(String::new()));
    decode_sharing_into(bytes, customers, &mut out);
    out
}

/// [`decode_sharing`] into `out` (see [`crate::wire::decode_canonical_into`]).
fn decode_sharing_into(
    bytes: &[u8],
    customers: Option<&mut crate::wire::SharedCustomers>,
    out: &mut Result<Event, EventError>,
) {
    if crate::wire::decode_canonical_into(bytes, customers, out).is_none() {
        *out = decode_through_prost(bytes);
    }
}

/// Decodes the records of one batch as [`decode`] does, and gives the events whose customer
/// bytes are equal one shared customer: decoded once, not once an event. It remembers
/// every customer it decoded, so it lives as long as a batch, not longer.
#[derive(Debug, Default)]
pub struct EventDecoder {
    customers: crate::wire::SharedCustomers,
}

impl EventDecoder {
    pub fn new() -> Self {
        EventDecoder::default()
    }

    /// A decoder that numbers the ids of the customers it decodes with `numbering` (see
    /// [`crate::numbering`]); [`EventDecoder::into_numbering`] gives it back for the next
    /// batch's decoder.
    pub fn with_numbering(numbering: crate::CustomerNumbering) -> Self {
        let mut decoder = EventDecoder::default();
        decoder.customers.numbering = Some(numbering);
        decoder
    }

    /// The numbering it was given, or a new one.
    pub fn into_numbering(self) -> crate::CustomerNumbering {
        self.customers.numbering.unwrap_or_default()
    }

    /// The event in `bytes`, as [`decode`] reads it.
    pub fn decode(&mut self, bytes: &[u8]) -> Result<Event, EventError> {
        decode_sharing(bytes, Some(&mut self.customers))
    }

    /// [`EventDecoder::decode`] into `out`, which it overwrites: decoded in place, the event
    /// is not copied into it afterwards (a replay decodes millions into its batches).
    pub fn decode_into(&mut self, bytes: &[u8], out: &mut Result<Event, EventError>) {
        decode_sharing_into(bytes, Some(&mut self.customers), out);
    }
}

/// [`decode`] through prost's generated types: reads anything the schema allows (unknown
/// fields skipped, repeated messages merged) and names what is wrong. `decode` takes this
/// path for whatever its direct reader (`wire.rs`) leaves to it.
pub fn decode_through_prost(bytes: &[u8]) -> Result<Event, EventError> {
    let message = pb::Event::decode(bytes).map_err(|e| EventError::Decode(e.to_string()))?;
    Event::try_from(message)
}

/// Decodes a protobuf `omnilog.v1.EventBatch` (the ingest API's binary body).
pub fn decode_batch(bytes: &[u8]) -> Result<Vec<Event>, EventError> {
    let batch = pb::EventBatch::decode(bytes).map_err(|e| EventError::Decode(e.to_string()))?;
    batch
        .events
        .into_iter()
        .enumerate()
        .map(|(index, event)| Event::try_from(event).map_err(|e| e.within(&format!("[{index}]"))))
        .collect()
}

/// Encodes events as a protobuf `omnilog.v1.EventBatch`.
pub fn encode_batch(events: &[Event]) -> Vec<u8> {
    pb::EventBatch {
        events: events.iter().map(pb::Event::from).collect(),
    }
    .encode_to_vec()
}

fn timestamp(time: &DateTime<Utc>) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: time.timestamp(),
        nanos: time.timestamp_subsec_nanos() as i32,
    }
}

fn time_from(
    field: &str,
    ts: Option<prost_types::Timestamp>,
) -> Result<Option<DateTime<Utc>>, EventError> {
    ts.map(|ts| {
        u32::try_from(ts.nanos)
            .ok()
            .and_then(|nanos| DateTime::from_timestamp(ts.seconds, nanos))
            .ok_or_else(|| EventError::invalid(field, format!("{ts:?} is not a valid time")))
    })
    .transpose()
}

pub(crate) fn channel_to_pb(channel: Channel) -> pb::Channel {
    match channel {
        Channel::Voice => pb::Channel::Voice,
        Channel::Email => pb::Channel::Email,
        Channel::Chat => pb::Channel::Chat,
        Channel::Sms => pb::Channel::Sms,
        Channel::Social => pb::Channel::Social,
        Channel::Messaging => pb::Channel::Messaging,
        Channel::WebPortal => pb::Channel::WebPortal,
        Channel::WalkIn => pb::Channel::WalkIn,
        Channel::Chatbot => pb::Channel::Chatbot,
        Channel::Ivr => pb::Channel::Ivr,
        Channel::Alert => pb::Channel::Alert,
        Channel::Fax => pb::Channel::Fax,
        Channel::MobileApp => pb::Channel::MobileApp,
    }
}

pub(crate) fn channel_from_pb(value: i32) -> Result<Option<Channel>, EventError> {
    let channel = pb::Channel::try_from(value)
        .map_err(|_| EventError::invalid("channel", format!("unknown channel number {value}")))?;
    Ok(Some(match channel {
        pb::Channel::Unspecified => return Ok(None),
        pb::Channel::Voice => Channel::Voice,
        pb::Channel::Email => Channel::Email,
        pb::Channel::Chat => Channel::Chat,
        pb::Channel::Sms => Channel::Sms,
        pb::Channel::Social => Channel::Social,
        pb::Channel::Messaging => Channel::Messaging,
        pb::Channel::WebPortal => Channel::WebPortal,
        pb::Channel::WalkIn => Channel::WalkIn,
        pb::Channel::Chatbot => Channel::Chatbot,
        pb::Channel::Ivr => Channel::Ivr,
        pb::Channel::Alert => Channel::Alert,
        pb::Channel::Fax => Channel::Fax,
        pb::Channel::MobileApp => Channel::MobileApp,
    }))
}

pub(crate) fn direction_to_pb(direction: Direction) -> i32 {
    match direction {
        Direction::Inbound => pb::Direction::Inbound,
        Direction::Outbound => pb::Direction::Outbound,
    }
    .into()
}

pub(crate) fn direction_from_pb(value: i32) -> Result<Direction, EventError> {
    match pb::Direction::try_from(value) {
        Ok(pb::Direction::Inbound) => Ok(Direction::Inbound),
        Ok(pb::Direction::Outbound) => Ok(Direction::Outbound),
        _ => Err(EventError::invalid(
            "direction",
            format!("unknown direction number {value}"),
        )),
    }
}

pub(crate) fn author_to_pb(author: Author) -> i32 {
    match author {
        Author::Customer => pb::Author::Customer,
        Author::Agent => pb::Author::Agent,
        Author::Bot => pb::Author::Bot,
        Author::System => pb::Author::System,
    }
    .into()
}

pub(crate) fn author_from_pb(value: i32) -> Result<Author, EventError> {
    match pb::Author::try_from(value) {
        Ok(pb::Author::Customer) => Ok(Author::Customer),
        Ok(pb::Author::Agent) => Ok(Author::Agent),
        Ok(pb::Author::Bot) => Ok(Author::Bot),
        Ok(pb::Author::System) => Ok(Author::System),
        _ => Err(EventError::invalid(
            "author",
            format!("unknown author number {value}"),
        )),
    }
}

pub(crate) fn status_to_pb(status: AgentStatus) -> i32 {
    match status {
        AgentStatus::Available => pb::AgentStatus::Available,
        AgentStatus::Busy => pb::AgentStatus::Busy,
        AgentStatus::Away => pb::AgentStatus::Away,
        AgentStatus::Offline => pb::AgentStatus::Offline,
    }
    .into()
}

pub(crate) fn status_from_pb(value: i32) -> Result<AgentStatus, EventError> {
    match pb::AgentStatus::try_from(value) {
        Ok(pb::AgentStatus::Available) => Ok(AgentStatus::Available),
        Ok(pb::AgentStatus::Busy) => Ok(AgentStatus::Busy),
        Ok(pb::AgentStatus::Away) => Ok(AgentStatus::Away),
        Ok(pb::AgentStatus::Offline) => Ok(AgentStatus::Offline),
        _ => Err(EventError::invalid(
            "state",
            format!("unknown agent state number {value}"),
        )),
    }
}

fn body_to_pb(body: &Body) -> pb::event::Body {
    use pb::event::Body as B;
    match body.clone() {
        Body::InteractionStarted {
            direction,
            subject,
            self_service,
        } => B::InteractionStarted(pb::InteractionStarted {
            direction: direction_to_pb(direction),
            subject,
            self_service,
        }),
        Body::Message {
            direction,
            author,
            agent_id,
            text,
        } => B::Message(pb::Message {
            direction: direction_to_pb(direction),
            author: author_to_pb(author),
            agent_id,
            text,
        }),
        Body::Queued {
            queue,
            priority,
            skills,
        } => B::Queued(pb::Queued {
            queue,
            priority,
            skills,
        }),
        Body::Offered { agent_id } => B::Offered(pb::Offered { agent_id }),
        Body::OfferDeclined { agent_id } => B::OfferDeclined(pb::OfferDeclined { agent_id }),
        Body::OfferTimedOut { agent_id } => B::OfferTimedOut(pb::OfferTimedOut { agent_id }),
        Body::Assigned { agent_id } => B::Assigned(pb::Assigned { agent_id }),
        Body::Transferred { to_queue, to_agent } => {
            B::Transferred(pb::Transferred { to_queue, to_agent })
        }
        Body::Hold => B::Hold(pb::Hold {}),
        Body::Resumed => B::Resumed(pb::Resumed {}),
        Body::Abandoned => B::Abandoned(pb::Abandoned {}),
        Body::Ended { reason } => B::Ended(pb::Ended { reason }),
        Body::WrappedUp {
            agent_id,
            resolved,
            disposition,
            topics,
        } => B::WrappedUp(pb::WrappedUp {
            agent_id,
            resolved,
            disposition,
            topics,
        }),
        Body::Csat { score } => B::Csat(pb::Csat {
            score: u32::from(score),
        }),
        Body::Note { agent_id, text } => B::Note(pb::Note { agent_id, text }),
        Body::Tagged { topics } => B::Tagged(pb::Tagged { topics }),
        Body::IdentityLinked { by_handles } => B::IdentityLinked(pb::IdentityLinked { by_handles }),
        Body::CustomerProfile => B::CustomerProfile(pb::CustomerProfile {}),
        Body::CustomersMerged {
            from_customer,
            into_customer,
        } => B::CustomersMerged(pb::CustomersMerged {
            from_customer,
            into_customer,
        }),
        Body::ProactiveNotice { reason, text } => {
            B::ProactiveNotice(pb::ProactiveNotice { reason, text })
        }
        Body::AgentState {
            agent_id,
            state,
            skills,
            capacity,
        } => B::AgentState(pb::AgentState {
            agent_id,
            state: status_to_pb(state),
            skills: skills.map(|skills| pb::SkillSet { skills }),
            capacity: capacity.map(|capacity| pb::Capacity {
                per_channel: capacity
                    .into_iter()
                    .map(|(channel, n)| (channel.as_str().to_owned(), n))
                    .collect(),
            }),
        }),
    }
}

fn required(field: &str, value: String) -> Result<String, EventError> {
    if value.is_empty() {
        Err(EventError::missing(field))
    } else {
        Ok(value)
    }
}

fn body_from_pb(body: pb::event::Body) -> Result<Body, EventError> {
    use pb::event::Body as B;
    Ok(match body {
        B::InteractionStarted(b) => Body::InteractionStarted {
            direction: direction_from_pb(b.direction)?,
            subject: b.subject,
            self_service: b.self_service,
        },
        B::Message(b) => Body::Message {
            direction: direction_from_pb(b.direction)?,
            author: author_from_pb(b.author)?,
            agent_id: b.agent_id,
            text: b.text,
        },
        B::Queued(b) => Body::Queued {
            queue: required("queue", b.queue)?,
            priority: b.priority,
            skills: b.skills,
        },
        B::Offered(b) => Body::Offered {
            agent_id: required("agent_id", b.agent_id)?,
        },
        B::OfferDeclined(b) => Body::OfferDeclined {
            agent_id: required("agent_id", b.agent_id)?,
        },
        B::OfferTimedOut(b) => Body::OfferTimedOut {
            agent_id: required("agent_id", b.agent_id)?,
        },
        B::Assigned(b) => Body::Assigned {
            agent_id: required("agent_id", b.agent_id)?,
        },
        B::Transferred(b) => Body::Transferred {
            to_queue: b.to_queue,
            to_agent: b.to_agent,
        },
        B::Hold(_) => Body::Hold,
        B::Resumed(_) => Body::Resumed,
        B::Abandoned(_) => Body::Abandoned,
        B::Ended(b) => Body::Ended { reason: b.reason },
        B::WrappedUp(b) => Body::WrappedUp {
            agent_id: required("agent_id", b.agent_id)?,
            resolved: b.resolved,
            disposition: b.disposition,
            topics: b.topics,
        },
        B::Csat(b) => Body::Csat {
            score: u8::try_from(b.score)
                .ok()
                .filter(|s| (1..=5).contains(s))
                .ok_or_else(|| {
                    EventError::invalid("score", format!("{} is not between 1 and 5", b.score))
                })?,
        },
        B::Note(b) => Body::Note {
            agent_id: required("agent_id", b.agent_id)?,
            text: b.text,
        },
        B::Tagged(b) => Body::Tagged { topics: b.topics },
        // A record written before `by_handles` existed is an explicit link (false).
        B::IdentityLinked(b) => Body::IdentityLinked {
            by_handles: b.by_handles,
        },
        B::CustomerProfile(_) => Body::CustomerProfile,
        B::CustomersMerged(b) => Body::CustomersMerged {
            from_customer: required("from_customer", b.from_customer)?,
            into_customer: required("into_customer", b.into_customer)?,
        },
        B::ProactiveNotice(b) => Body::ProactiveNotice {
            reason: b.reason,
            text: b.text,
        },
        B::AgentState(b) => Body::AgentState {
            agent_id: required("agent_id", b.agent_id)?,
            state: status_from_pb(b.state)?,
            skills: b.skills.map(|s| s.skills),
            capacity: b
                .capacity
                .map(|c| {
                    c.per_channel
                        .into_iter()
                        .map(|(name, n)| {
                            Channel::parse(&name)
                                .map(|channel| (channel, n))
                                .ok_or_else(|| {
                                    EventError::invalid(
                                        &format!("capacity.{name}"),
                                        "is not a channel".to_owned(),
                                    )
                                })
                        })
                        .collect::<Result<BTreeMap<_, _>, _>>()
                })
                .transpose()?,
        },
    })
}

impl From<&Event> for pb::Event {
    fn from(event: &Event) -> Self {
        pb::Event {
            event_id: event.event_id.hyphenated().to_string(),
            schema_version: event.schema_version,
            source: event.source.as_deref().map(str::to_owned),
            source_event_id: event.source_event_id.as_deref().map(str::to_owned),
            occurred_at: Some(timestamp(&event.occurred_at)),
            recorded_at: event.recorded_at.as_ref().map(timestamp),
            customer: event.customer.as_ref().map(|c| pb::Customer {
                id: c.id.as_deref().unwrap_or_default().to_owned(),
                handles: c
                    .handles
                    .iter()
                    .map(|h| pb::Handle {
                        kind: h.kind.clone(),
                        value: h.value.clone(),
                    })
                    .collect(),
                attributes: c.attributes.clone(),
            }),
            interaction_id: event.interaction_id.as_deref().map(str::to_owned),
            channel: event
                .channel
                .map_or(pb::Channel::Unspecified, channel_to_pb)
                .into(),
            attributes: event.attributes.clone(),
            body: Some(body_to_pb(&event.body)),
        }
    }
}

impl TryFrom<pb::Event> for Event {
    type Error = EventError;

    fn try_from(message: pb::Event) -> Result<Self, EventError> {
        // An empty id is left nil here; ingest derives it (see `json::revalidate`).
        let event_id = if message.event_id.is_empty() {
            Uuid::nil()
        } else {
            Uuid::parse_str(&message.event_id)
                .map_err(|e| EventError::invalid("event_id", format!("not a UUID ({e})")))?
        };
        // Version 0 is protobuf's "unset": a producer that never set it wrote version 1.
        let schema_version = message.schema_version.max(1);
        if schema_version > CURRENT_SCHEMA_VERSION {
            return Err(EventError::invalid(
                "schema_version",
                format!(
                    "version {schema_version} is newer than this build ({CURRENT_SCHEMA_VERSION})"
                ),
            ));
        }
        let occurred_at = time_from("occurred_at", message.occurred_at)?
            .ok_or_else(|| EventError::missing("occurred_at"))?;
        let body = body_from_pb(message.body.ok_or_else(|| EventError::missing("type"))?)?;
        let mut event = Event {
            event_id,
            schema_version,
            source: message.source.map(CompactString::from),
            source_event_id: message.source_event_id.map(CompactString::from),
            occurred_at,
            recorded_at: time_from("recorded_at", message.recorded_at)?,
            customer: message.customer.map(|c| {
                std::sync::Arc::new(CustomerRef {
                    id: Some(c.id)
                        .filter(|id| !id.is_empty())
                        .map(crate::CustomerId::from_string),
                    handles: c
                        .handles
                        .into_iter()
                        .map(|h| Handle {
                            kind: h.kind,
                            value: h.value,
                        })
                        .collect(),
                    attributes: c.attributes,
                    number: crate::CustomerNumber::NONE,
                })
            }),
            interaction_id: message.interaction_id.map(CompactString::from),
            channel: channel_from_pb(message.channel)?,
            attributes: message.attributes,
            body,
        };
        // An older version reads as the current one: the live path and replay alike.
        crate::upcast::upcast_event(&mut event);
        Ok(event)
    }
}
