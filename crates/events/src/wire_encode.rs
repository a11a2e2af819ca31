//! A direct encoder of the log's records: an [`Event`] straight into protobuf
//! `omnilog.v1.Event` bytes, the counterpart of the direct decoder (`wire.rs`).
//!
//! Why not prost alone: prost encodes its generated `pb` types, so every event was first
//! copied into one (each string cloned, the body cloned whole, the id formatted into a new
//! string) and all of it freed once encoded. Every acknowledged event is encoded on the
//! write path, where a profile of `omnilog serve` under a load of 1,000 events a request
//! put that copy and encoding at 7 % of the server's CPU. This encoder writes each field
//! from its place in the event.
//!
//! The bytes are exactly prost's (tested: `direct_encoding_equals_prost_encoding`): the
//! same fields in tag order, proto3's defaults left out (an unset `optional` too, but a set
//! one written even when empty), a message's length before it, maps in key order with a
//! default key or value left out of its entry. So a record's bytes do not depend on which
//! encoder wrote it, and nothing that hangs on them (checksums, golden fixtures) changes.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};

use crate::model::{Body, Channel, CustomerRef, Event, Handle};
use crate::pb;
use crate::proto::{author_to_pb, channel_to_pb, direction_to_pb, status_to_pb};

/// Encodes `event` as protobuf `omnilog.v1.Event`, the bytes prost would write, into a
/// vector of exactly their size.
///
/// Written into this thread's scratch buffer, then copied out once: into a vector of 256
/// bytes, about a quarter of the events grew it (a reallocation and a copy, 826
/// instructions each, in `valgrind --tool=callgrind omnilog import` of 100k events), and a
/// vector with room to spare becomes a `Bytes` record payload only through a second
/// allocation (its shared header), where one of its exact size is taken over as it is.
pub(crate) fn encode_canonical(event: &Event) -> Vec<u8> {
    SCRATCH.with_borrow_mut(|scratch| {
        scratch.clear();
        EventPart(event).write(scratch);
        let encoded = scratch.to_vec();
        if scratch.capacity() > SCRATCH_KEPT_BYTES {
            *scratch = Vec::with_capacity(SCRATCH_BYTES);
        }
        encoded
    })
}

/// The scratch buffer's size: more than nearly every event takes.
const SCRATCH_BYTES: usize = 4 << 10;

/// A scratch buffer grown past this by a large event is not kept.
const SCRATCH_KEPT_BYTES: usize = 64 << 10;

thread_local! {
    static SCRATCH: std::cell::RefCell<Vec<u8>> =
        std::cell::RefCell::new(Vec::with_capacity(SCRATCH_BYTES));
}

/// Where encoded bytes go: the record, or a counter that measures a message's length
/// before the message is written.
trait Sink {
    fn put(&mut self, bytes: &[u8]);
    fn put_byte(&mut self, byte: u8);
}

impl Sink for Vec<u8> {
    fn put(&mut self, bytes: &[u8]) {
        self.extend_from_slice(bytes);
    }

    fn put_byte(&mut self, byte: u8) {
        self.push(byte);
    }
}

/// Counts the bytes a message takes.
struct Length(usize);

impl Sink for Length {
    fn put(&mut self, bytes: &[u8]) {
        self.0 += bytes.len();
    }

    fn put_byte(&mut self, _byte: u8) {
        self.0 += 1;
    }
}

/// A message (or a map entry): written the same way whether measured or encoded.
trait Part {
    fn write<S: Sink>(&self, sink: &mut S);
}

fn varint<S: Sink>(sink: &mut S, mut value: u64) {
    while value >= 0x80 {
        sink.put_byte((value as u8) | 0x80);
        value >>= 7;
    }
    sink.put_byte(value as u8);
}

const VARINT: u64 = 0;
const LENGTH_DELIMITED: u64 = 2;

fn key<S: Sink>(sink: &mut S, field: u32, wire_type: u64) {
    varint(sink, (u64::from(field) << 3) | wire_type);
}

/// A string field that is set (an `optional` one that is `Some`, or an element of a
/// repeated one): written even when empty.
fn string<S: Sink>(sink: &mut S, field: u32, value: &str) {
    key(sink, field, LENGTH_DELIMITED);
    varint(sink, value.len() as u64);
    sink.put(value.as_bytes());
}

/// A plain proto3 string: left out when empty.
fn plain_string<S: Sink>(sink: &mut S, field: u32, value: &str) {
    if !value.is_empty() {
        string(sink, field, value);
    }
}

fn optional_string<S: Sink>(sink: &mut S, field: u32, value: Option<&str>) {
    if let Some(value) = value {
        string(sink, field, value);
    }
}

/// A plain proto3 integer (or enum, or bool): left out when zero. Negative numbers of
/// `int32` and `int64` fields are their 64-bit two's complement, as protobuf says.
fn plain_varint<S: Sink>(sink: &mut S, field: u32, value: u64) {
    if value != 0 {
        key(sink, field, VARINT);
        varint(sink, value);
    }
}

fn message<S: Sink, P: Part>(sink: &mut S, field: u32, part: &P) {
    let mut length = Length(0);
    part.write(&mut length);
    key(sink, field, LENGTH_DELIMITED);
    varint(sink, length.0 as u64);
    part.write(sink);
}

/// `map<string, string>`: one entry message per pair, in key order.
fn string_map<S: Sink>(sink: &mut S, field: u32, map: &BTreeMap<String, String>) {
    for (key, value) in map {
        message(sink, field, &StringEntry(key, value));
    }
}

struct StringEntry<'a>(&'a str, &'a str);

impl Part for StringEntry<'_> {
    fn write<S: Sink>(&self, sink: &mut S) {
        plain_string(sink, 1, self.0);
        plain_string(sink, 2, self.1);
    }
}

struct Timestamp<'a>(&'a DateTime<Utc>);

impl Part for Timestamp<'_> {
    fn write<S: Sink>(&self, sink: &mut S) {
        plain_varint(sink, 1, self.0.timestamp() as u64);
        plain_varint(
            sink,
            2,
            i64::from(self.0.timestamp_subsec_nanos() as i32) as u64,
        );
    }
}

struct HandlePart<'a>(&'a Handle);

impl Part for HandlePart<'_> {
    fn write<S: Sink>(&self, sink: &mut S) {
        plain_string(sink, 1, &self.0.kind);
        plain_string(sink, 2, &self.0.value);
    }
}

struct CustomerPart<'a>(&'a CustomerRef);

impl Part for CustomerPart<'_> {
    fn write<S: Sink>(&self, sink: &mut S) {
        plain_string(sink, 1, self.0.id.as_deref().unwrap_or_default());
        for handle in &self.0.handles {
            message(sink, 2, &HandlePart(handle));
        }
        string_map(sink, 3, &self.0.attributes);
    }
}

/// `SkillSet`: an agent's skills, set (possibly to none) or not given.
struct Skills<'a>(&'a [String]);

impl Part for Skills<'_> {
    fn write<S: Sink>(&self, sink: &mut S) {
        for skill in self.0 {
            string(sink, 1, skill);
        }
    }
}

/// `Capacity`: `map<string, uint32> per_channel = 1`, keyed by the channel's name.
struct Capacity<'a>(&'a BTreeMap<Channel, u32>);

impl Part for Capacity<'_> {
    fn write<S: Sink>(&self, sink: &mut S) {
        // Entries in the order of the names, as prost's map of names writes them (the
        // channels' own order is not their names').
        let mut entries: Vec<(&str, u32)> = self
            .0
            .iter()
            .map(|(channel, count)| (channel.as_str(), *count))
            .collect();
        entries.sort_unstable_by_key(|(name, _)| *name);
        for (name, count) in entries {
            message(sink, 1, &CapacityEntry(name, count));
        }
    }
}

struct CapacityEntry<'a>(&'a str, u32);

impl Part for CapacityEntry<'_> {
    fn write<S: Sink>(&self, sink: &mut S) {
        plain_string(sink, 1, self.0);
        plain_varint(sink, 2, u64::from(self.1));
    }
}

/// The body's own message (its fields; the oneof's field number is the caller's).
struct BodyPart<'a>(&'a Body);

impl Part for BodyPart<'_> {
    fn write<S: Sink>(&self, sink: &mut S) {
        match self.0 {
            Body::InteractionStarted {
                direction,
                subject,
                self_service,
            } => {
                plain_varint(sink, 1, enum_number(direction_to_pb(*direction)));
                optional_string(sink, 2, subject.as_deref());
                if let Some(self_service) = self_service {
                    key(sink, 3, VARINT);
                    varint(sink, u64::from(*self_service));
                }
            }
            Body::Message {
                direction,
                author,
                agent_id,
                text,
            } => {
                plain_varint(sink, 1, enum_number(direction_to_pb(*direction)));
                plain_varint(sink, 2, enum_number(author_to_pb(*author)));
                optional_string(sink, 3, agent_id.as_deref());
                optional_string(sink, 4, text.as_deref());
            }
            Body::Queued {
                queue,
                priority,
                skills,
            } => {
                plain_string(sink, 1, queue);
                plain_varint(sink, 2, i64::from(*priority) as u64);
                for skill in skills {
                    string(sink, 3, skill);
                }
            }
            Body::Offered { agent_id }
            | Body::OfferDeclined { agent_id }
            | Body::OfferTimedOut { agent_id }
            | Body::Assigned { agent_id } => plain_string(sink, 1, agent_id),
            Body::Transferred { to_queue, to_agent } => {
                optional_string(sink, 1, to_queue.as_deref());
                optional_string(sink, 2, to_agent.as_deref());
            }
            Body::Hold | Body::Resumed | Body::Abandoned | Body::CustomerProfile => {}
            Body::Ended { reason } => optional_string(sink, 1, reason.as_deref()),
            Body::WrappedUp {
                agent_id,
                resolved,
                disposition,
                topics,
            } => {
                plain_string(sink, 1, agent_id);
                plain_varint(sink, 2, u64::from(*resolved));
                optional_string(sink, 3, disposition.as_deref());
                for topic in topics {
                    string(sink, 4, topic);
                }
            }
            Body::Csat { score } => plain_varint(sink, 1, u64::from(*score)),
            Body::Note { agent_id, text } => {
                plain_string(sink, 1, agent_id);
                plain_string(sink, 2, text);
            }
            Body::Tagged { topics } => {
                for topic in topics {
                    string(sink, 1, topic);
                }
            }
            Body::IdentityLinked { by_handles } => plain_varint(sink, 1, u64::from(*by_handles)),
            Body::CustomersMerged {
                from_customer,
                into_customer,
            } => {
                plain_string(sink, 1, from_customer);
                plain_string(sink, 2, into_customer);
            }
            Body::ProactiveNotice { reason, text } => {
                plain_string(sink, 1, reason);
                optional_string(sink, 2, text.as_deref());
            }
            Body::AgentState {
                agent_id,
                state,
                skills,
                capacity,
            } => {
                plain_string(sink, 1, agent_id);
                plain_varint(sink, 2, enum_number(status_to_pb(*state)));
                if let Some(skills) = skills {
                    message(sink, 3, &Skills(skills));
                }
                if let Some(capacity) = capacity {
                    message(sink, 4, &Capacity(capacity));
                }
            }
        }
    }
}

/// The number of the `body` oneof's field that carries this body.
fn body_field(body: &Body) -> u32 {
    match body {
        Body::InteractionStarted { .. } => 20,
        Body::Message { .. } => 21,
        Body::Queued { .. } => 22,
        Body::Offered { .. } => 23,
        Body::OfferDeclined { .. } => 24,
        Body::OfferTimedOut { .. } => 25,
        Body::Assigned { .. } => 26,
        Body::Transferred { .. } => 27,
        Body::Hold => 28,
        Body::Resumed => 29,
        Body::Abandoned => 30,
        Body::Ended { .. } => 31,
        Body::WrappedUp { .. } => 32,
        Body::Csat { .. } => 33,
        Body::Note { .. } => 34,
        Body::Tagged { .. } => 35,
        Body::IdentityLinked { .. } => 36,
        Body::CustomersMerged { .. } => 37,
        Body::ProactiveNotice { .. } => 38,
        Body::AgentState { .. } => 39,
        Body::CustomerProfile => 40,
    }
}

struct EventPart<'a>(&'a Event);

impl Part for EventPart<'_> {
    fn write<S: Sink>(&self, sink: &mut S) {
        let event = self.0;
        let mut id = [0u8; uuid::fmt::Hyphenated::LENGTH];
        plain_string(sink, 1, event.event_id.hyphenated().encode_lower(&mut id));
        plain_varint(sink, 2, u64::from(event.schema_version));
        optional_string(sink, 3, event.source.as_deref());
        optional_string(sink, 4, event.source_event_id.as_deref());
        message(sink, 5, &Timestamp(&event.occurred_at));
        if let Some(recorded_at) = &event.recorded_at {
            message(sink, 6, &Timestamp(recorded_at));
        }
        if let Some(customer) = &event.customer {
            message(sink, 7, &CustomerPart(customer));
        }
        optional_string(sink, 8, event.interaction_id.as_deref());
        let channel = event
            .channel
            .map_or(pb::Channel::Unspecified, channel_to_pb);
        plain_varint(sink, 9, enum_number(channel as i32));
        string_map(sink, 10, &event.attributes);
        message(sink, body_field(&event.body), &BodyPart(&event.body));
    }
}

/// An enum's number as protobuf writes it: an `int32` (negative ones as 64-bit two's
/// complement, though no enum of this schema has one).
fn enum_number(value: i32) -> u64 {
    i64::from(value) as u64
}
