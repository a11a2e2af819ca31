//! A direct decoder of the log's records: protobuf `omnilog.v1.Event` bytes straight into an
//! [`Event`], for the records this build's encoder writes.
//!
//! Why not prost alone: prost decodes into the generated `pb` types, which
//! [`Event::try_from`] then takes apart, and the event id travels as a 36-character string
//! that is allocated, parsed and freed. Every replay and every live fold decodes every
//! event, and a profile of `omnilog replay` put prost's decode and that conversion at a
//! fifth of the whole replay's CPU. This decoder reads each field once into its place in
//! the event (the id parsed from the bytes, strings allocated at their exact length).
//!
//! It reads only what it is sure of: the canonical form, as [`crate::encode`] writes it.
//! Anything else (an unknown field, a field in an unexpected wire type, a repeated
//! singular message, an unknown enum number, a missing required field, an invalid time)
//! makes it answer `None`, and [`crate::decode`] reads the record through prost, which
//! decides, with the same error as ever. So the two paths agree on every input this one
//! accepts, and the slow one keeps the last word on everything else (tested:
//! `direct_decoding_equals_prost_decoding`).

use std::cell::Cell;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use chrono::{DateTime, NaiveDate, NaiveTime, Utc};
use uuid::Uuid;

use crate::model::{
    Body, CURRENT_SCHEMA_VERSION, Channel, CompactString, CustomerRef, Event, Handle,
};
use crate::proto::{author_from_pb, channel_from_pb, direction_from_pb, status_from_pb};

/// One field's value as it is on the wire.
#[derive(Clone, Copy)]
enum Value<'a> {
    Varint(u64),
    Bytes(&'a [u8]),
}

/// Calls `each` with every field of a message, in order; `None` if the bytes are not
/// well-formed protobuf of the wire types this schema uses, or `each` refuses a field.
fn for_each_field<'a>(
    mut bytes: &'a [u8],
    mut each: impl FnMut(u64, Value<'a>) -> Option<()>,
) -> Option<()> {
    while !bytes.is_empty() {
        let key = varint(&mut bytes)?;
        let value = match key & 7 {
            0 => Value::Varint(varint(&mut bytes)?),
            2 => {
                let len = usize::try_from(varint(&mut bytes)?).ok()?;
                if len > bytes.len() {
                    return None;
                }
                let (value, rest) = bytes.split_at(len);
                bytes = rest;
                Value::Bytes(value)
            }
            _ => return None,
        };
        each(key >> 3, value)?;
    }
    Some(())
}

/// A base-128 varint, at most ten bytes; a tenth byte above 1 would overflow 64 bits (prost
/// refuses it too).
#[inline]
fn varint(bytes: &mut &[u8]) -> Option<u64> {
    // One byte is the common case: every field key and nearly every length. Taken apart
    // here it costs a compare; the loop below cost 24 instructions a varint, 31 varints an
    // event (`valgrind --tool=callgrind omnilog replay` of the 200k history).
    if let Some((&byte, rest)) = bytes.split_first()
        && byte < 0x80
    {
        *bytes = rest;
        return Some(u64::from(byte));
    }
    varint_long(bytes)
}

/// A varint of two bytes or more (or none at all).
fn varint_long(bytes: &mut &[u8]) -> Option<u64> {
    let mut value = 0u64;
    for (index, &byte) in bytes.iter().enumerate().take(10) {
        if index == 9 && byte > 1 {
            return None;
        }
        value |= u64::from(byte & 0x7f) << (7 * index);
        if byte < 0x80 {
            *bytes = &bytes[index + 1..];
            return Some(value);
        }
    }
    None
}

fn text(value: Value<'_>) -> Option<String> {
    text_str(value).map(str::to_owned)
}

/// [`text`] as a [`CompactString`]: held inline up to 24 bytes, so a short one (an
/// interaction id, a source) allocates nothing.
fn compact_text(value: Value<'_>) -> Option<CompactString> {
    text_str(value).map(CompactString::from)
}

/// The string in a length-delimited value, if it is UTF-8. Nearly every string of an event
/// is ASCII (ids, handles, names), which a word-at-a-time check confirms in a few
/// instructions; `str::from_utf8` on these short strings took about 100 instructions each,
/// seven strings an event, a quarter of the decoder's instructions (`valgrind
/// --tool=callgrind omnilog replay` of the 200k history).
#[allow(unsafe_code)]
fn text_str(value: Value<'_>) -> Option<&str> {
    match value {
        Value::Bytes(bytes) if bytes.is_ascii() => {
            // SAFETY: ASCII bytes are valid UTF-8.
            Some(unsafe { std::str::from_utf8_unchecked(bytes) })
        }
        Value::Bytes(bytes) => std::str::from_utf8(bytes).ok(),
        Value::Varint(_) => None,
    }
}

fn number(value: Value<'_>) -> Option<u64> {
    match value {
        Value::Varint(n) => Some(n),
        Value::Bytes(_) => None,
    }
}

fn flag(value: Value<'_>) -> Option<bool> {
    match number(value)? {
        0 => Some(false),
        1 => Some(true),
        _ => None,
    }
}

/// An enum field's number (protobuf enums are `int32`).
fn enum_number(value: Value<'_>) -> Option<i32> {
    i32::try_from(number(value)?).ok()
}

fn message(value: Value<'_>) -> Option<&[u8]> {
    match value {
        Value::Bytes(bytes) => Some(bytes),
        Value::Varint(_) => None,
    }
}

/// A string the contract requires (protobuf cannot tell empty from absent).
fn required<Text: std::ops::Deref<Target = str>>(value: Text) -> Option<Text> {
    (!value.is_empty()).then_some(value)
}

fn time(value: Value<'_>) -> Option<DateTime<Utc>> {
    let bytes = message(value)?;
    // As the encoder writes a time (its seconds, then its nanoseconds unless 0), read
    // without the general field loop; any other form (another order, a field repeated or
    // unknown) goes through it.
    let mut rest = bytes;
    // `as`: protobuf's int64 and int32 are the varint's two's complement.
    let (mut seconds, mut nanos) = (0i64, 0i32);
    if let [0x08, after @ ..] = rest {
        rest = after;
        seconds = varint(&mut rest)? as i64;
    }
    if let [0x10, after @ ..] = rest {
        rest = after;
        nanos = varint(&mut rest)? as i32;
    }
    if !rest.is_empty() {
        (seconds, nanos) = (0, 0);
        for_each_field(bytes, |field, value| {
            match field {
                1 => seconds = number(value)? as i64,
                2 => nanos = number(value)? as i32,
                _ => return None,
            }
            Some(())
        })?;
    }
    timestamp(seconds, u32::try_from(nanos).ok()?)
}

thread_local! {
    /// The day of the last time this thread decoded, and its date.
    static LAST_DAY: Cell<Option<(i64, NaiveDate)>> = const { Cell::new(None) };
}

/// `DateTime::from_timestamp`, with the date of the day taken from the last time decoded
/// on this thread when it fell on the same day: a batch's events fall on a few days, and
/// the calendar arithmetic of a day's number, with the general field loop, was a third of
/// a time's decoding (two times an event, 150 instructions each, in `valgrind
/// --tool=callgrind omnilog replay` of the 200k history; docs/benchmarks-journal.md).
fn timestamp(seconds: i64, nanos: u32) -> Option<DateTime<Utc>> {
    let day = seconds.div_euclid(86_400);
    let time = NaiveTime::from_num_seconds_from_midnight_opt(
        u32::try_from(seconds.rem_euclid(86_400)).ok()?,
        nanos,
    )?;
    let date = LAST_DAY.with(|last| match last.get() {
        Some((known, date)) if known == day => Some(date),
        _ => {
            let date = DateTime::from_timestamp(day.checked_mul(86_400)?, 0)?.date_naive();
            last.set(Some((day, date)));
            Some(date)
        }
    })?;
    Some(date.and_time(time).and_utc())
}

fn customer(value: Value<'_>) -> Option<CustomerRef> {
    let mut id = crate::CustomerId::new();
    // A customer carries one or two handles: one allocation, no growth.
    let mut handles = Vec::with_capacity(2);
    let mut attributes = BTreeMap::new();
    for_each_field(message(value)?, |field, value| {
        match field {
            1 => id = crate::CustomerId::from(text_str(value)?),
            2 => {
                let (mut kind, mut handle) = (String::new(), String::new());
                for_each_field(message(value)?, |field, value| {
                    match field {
                        1 => kind = text(value)?,
                        2 => handle = text(value)?,
                        _ => return None,
                    }
                    Some(())
                })?;
                handles.push(Handle {
                    kind,
                    value: handle,
                });
            }
            3 => {
                let (key, entry) = map_entry(value, text)?;
                attributes.insert(key, entry);
            }
            _ => return None,
        }
        Some(())
    })?;
    Some(CustomerRef {
        id: required(id),
        handles,
        attributes,
        number: crate::CustomerNumber::NONE,
    })
}

/// A `map<string, T>` entry.
fn map_entry<T: Default>(
    value: Value<'_>,
    read: impl Fn(Value<'_>) -> Option<T>,
) -> Option<(String, T)> {
    let (mut key, mut entry) = (String::new(), T::default());
    for_each_field(message(value)?, |field, value| {
        match field {
            1 => key = text(value)?,
            2 => entry = read(value)?,
            _ => return None,
        }
        Some(())
    })?;
    Some((key, entry))
}

/// A message whose fields are strings numbered 1 to `N`, each given at most as written
/// (`None` for one absent, which proto3 reads as empty unless the field is `optional`).
fn texts<const N: usize>(bytes: &[u8]) -> Option<[Option<String>; N]> {
    let mut found: [Option<String>; N] = std::array::from_fn(|_| None);
    for_each_field(bytes, |field, value| {
        let slot = found.get_mut(usize::try_from(field).ok()?.checked_sub(1)?)?;
        *slot = Some(text(value)?);
        Some(())
    })?;
    Some(found)
}

/// A body message whose only field is a required `agent_id = 1`.
fn agent_only(bytes: &[u8]) -> Option<String> {
    let [agent] = texts(bytes)?;
    required(agent.unwrap_or_default())
}

/// A body message with no fields.
fn empty(bytes: &[u8], body: Body) -> Option<Body> {
    bytes.is_empty().then_some(body)
}

/// The body oneof's field `field`, as [`crate::proto`]'s conversion reads it.
fn body(field: u64, bytes: &[u8]) -> Option<Body> {
    Some(match field {
        20 => {
            let (mut direction, mut subject, mut self_service) = (0, None, None);
            for_each_field(bytes, |field, value| {
                match field {
                    1 => direction = enum_number(value)?,
                    2 => subject = Some(text(value)?),
                    3 => self_service = Some(flag(value)?),
                    _ => return None,
                }
                Some(())
            })?;
            Body::InteractionStarted {
                direction: direction_from_pb(direction).ok()?,
                subject,
                self_service,
            }
        }
        21 => {
            let (mut direction, mut author, mut agent_id, mut text_) = (0, 0, None, None);
            for_each_field(bytes, |field, value| {
                match field {
                    1 => direction = enum_number(value)?,
                    2 => author = enum_number(value)?,
                    3 => agent_id = Some(text(value)?),
                    4 => text_ = Some(text(value)?),
                    _ => return None,
                }
                Some(())
            })?;
            Body::Message {
                direction: direction_from_pb(direction).ok()?,
                author: author_from_pb(author).ok()?,
                agent_id,
                text: text_,
            }
        }
        22 => {
            let (mut queue, mut priority, mut skills) = (String::new(), 0, Vec::new());
            for_each_field(bytes, |field, value| {
                match field {
                    1 => queue = text(value)?,
                    // `as`: protobuf's int32 is the varint's two's complement.
                    2 => priority = number(value)? as i32,
                    3 => skills.push(text(value)?),
                    _ => return None,
                }
                Some(())
            })?;
            Body::Queued {
                queue: required(queue)?,
                priority,
                skills,
            }
        }
        23 => Body::Offered {
            agent_id: agent_only(bytes)?,
        },
        24 => Body::OfferDeclined {
            agent_id: agent_only(bytes)?,
        },
        25 => Body::OfferTimedOut {
            agent_id: agent_only(bytes)?,
        },
        26 => Body::Assigned {
            agent_id: agent_only(bytes)?,
        },
        27 => {
            let [to_queue, to_agent] = texts(bytes)?;
            Body::Transferred { to_queue, to_agent }
        }
        28 => empty(bytes, Body::Hold)?,
        29 => empty(bytes, Body::Resumed)?,
        30 => empty(bytes, Body::Abandoned)?,
        31 => {
            let [reason] = texts(bytes)?;
            Body::Ended { reason }
        }
        32 => {
            let (mut agent_id, mut resolved, mut disposition, mut topics) =
                (String::new(), false, None, Vec::new());
            for_each_field(bytes, |field, value| {
                match field {
                    1 => agent_id = text(value)?,
                    2 => resolved = flag(value)?,
                    3 => disposition = Some(text(value)?),
                    4 => topics.push(text(value)?),
                    _ => return None,
                }
                Some(())
            })?;
            Body::WrappedUp {
                agent_id: required(agent_id)?,
                resolved,
                disposition,
                topics,
            }
        }
        33 => {
            let mut score = 0;
            for_each_field(bytes, |field, value| {
                (field == 1).then_some(())?;
                score = number(value)?;
                Some(())
            })?;
            let score = u8::try_from(score).ok().filter(|s| (1..=5).contains(s))?;
            Body::Csat { score }
        }
        34 => {
            let [agent_id, note] = texts(bytes)?;
            Body::Note {
                agent_id: required(agent_id.unwrap_or_default())?,
                text: note.unwrap_or_default(),
            }
        }
        35 => {
            let mut topics = Vec::new();
            for_each_field(bytes, |field, value| {
                (field == 1).then_some(())?;
                topics.push(text(value)?);
                Some(())
            })?;
            Body::Tagged { topics }
        }
        36 => {
            let mut by_handles = false;
            for_each_field(bytes, |field, value| {
                (field == 1).then_some(())?;
                by_handles = flag(value)?;
                Some(())
            })?;
            Body::IdentityLinked { by_handles }
        }
        37 => {
            let [from_customer, into_customer] = texts(bytes)?;
            Body::CustomersMerged {
                from_customer: required(from_customer.unwrap_or_default())?,
                into_customer: required(into_customer.unwrap_or_default())?,
            }
        }
        38 => {
            let [reason, notice] = texts(bytes)?;
            Body::ProactiveNotice {
                reason: reason.unwrap_or_default(),
                text: notice,
            }
        }
        39 => agent_state(bytes)?,
        40 => empty(bytes, Body::CustomerProfile)?,
        _ => return None,
    })
}

fn agent_state(bytes: &[u8]) -> Option<Body> {
    let (mut agent_id, mut state) = (String::new(), 0);
    let (mut skills, mut capacity): (Option<Vec<String>>, Option<BTreeMap<Channel, u32>>) =
        (None, None);
    for_each_field(bytes, |field, value| {
        match field {
            1 => agent_id = text(value)?,
            2 => state = enum_number(value)?,
            3 if skills.is_none() => {
                let mut set = Vec::new();
                for_each_field(message(value)?, |field, value| {
                    (field == 1).then_some(())?;
                    set.push(text(value)?);
                    Some(())
                })?;
                skills = Some(set);
            }
            4 if capacity.is_none() => {
                let mut per_channel = BTreeMap::new();
                for_each_field(message(value)?, |field, value| {
                    (field == 1).then_some(())?;
                    // `as`: protobuf's uint32 is the varint's low 32 bits.
                    let (name, n) = map_entry(value, |v| number(v).map(|n| n as u32))?;
                    per_channel.insert(Channel::parse(&name)?, n);
                    Some(())
                })?;
                capacity = Some(per_channel);
            }
            _ => return None,
        }
        Some(())
    })?;
    Some(Body::AgentState {
        agent_id: required(agent_id)?,
        state: status_from_pb(state).ok()?,
        skills,
        capacity,
    })
}

/// The customers decoded so far, by their bytes on the wire. A batch of the log holds runs
/// of one interaction's events, each carrying the same customer (id, handles, attributes):
/// decoded, that was nine allocations an event, and a tenth of a replay's instructions
/// with their frees (`valgrind --tool=callgrind omnilog replay` of the 200k history). Equal
/// bytes decode to equal customers, so sharing one changes nothing anybody can see.
#[derive(Debug, Default)]
pub(crate) struct SharedCustomers {
    by_bytes: HashMap<Box<[u8]>, Arc<CustomerRef>, foldhash::fast::FixedState>,
    /// Numbers the ids of the customers decoded, if given (see [`crate::numbering`]).
    pub(crate) numbering: Option<crate::CustomerNumbering>,
}

impl SharedCustomers {
    /// The customer in `value`, decoded once for all equal bytes.
    fn customer(&mut self, value: Value<'_>) -> Option<Arc<CustomerRef>> {
        let bytes = message(value)?;
        if let Some(shared) = self.by_bytes.get(bytes) {
            return Some(shared.clone());
        }
        let mut decoded = customer(value)?;
        if let (Some(numbering), Some(id)) = (&mut self.numbering, &decoded.id) {
            decoded.number = numbering.number(id);
        }
        let decoded = Arc::new(decoded);
        self.by_bytes.insert(bytes.into(), decoded.clone());
        Some(decoded)
    }
}

/// What a reader that only remembers a record needs of it (ingest's start, for the newest
/// event ids it reads back to answer redeliveries), read without decoding the rest.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RememberedParts {
    pub event_id: Uuid,
    /// `recorded_at`, else `occurred_at`.
    pub stamp: DateTime<Utc>,
}

impl RememberedParts {
    /// The parts of a decoded event: what [`remembered_parts`] reads apart.
    pub fn of(event: &Event) -> RememberedParts {
        RememberedParts {
            event_id: event.event_id,
            stamp: event.recorded_at.unwrap_or(event.occurred_at),
        }
    }
}

/// The [`RememberedParts`] of the event in `bytes`, agreeing with [`crate::decode`]'s event
/// wherever that decodes it; `None` for another schema version (which the whole decode
/// upcasts) or a form this decoder does not read, which the caller decodes whole. The
/// fields it passes over are not checked: a damaged record whose id and stamps read well
/// gets parts here where the whole decode fails (ingest's start then remembers
/// its id, as the embedded log's own index of ids does). A start that reads back the newest
/// million records for their ids decoded each whole: the handles, texts and bodies it then
/// let go were most of its time.
pub fn remembered_parts(bytes: &[u8]) -> Option<RememberedParts> {
    let mut event_id = Uuid::nil();
    let mut schema_version = 0u32;
    let (mut occurred_at, mut recorded_at) = (None, None);
    let mut has_body = false;
    for_each_field(bytes, |field, value| {
        match field {
            1 => event_id = self::event_id(value)?,
            2 => schema_version = number(value)? as u32,
            5 if occurred_at.is_none() => occurred_at = Some(time(value)?),
            6 if recorded_at.is_none() => recorded_at = Some(time(value)?),
            3 | 4 | 7 | 8 | 9 | 10 => {}
            20..=40 if !has_body => has_body = true,
            _ => return None,
        }
        Some(())
    })?;
    // Version 0 is protobuf's "unset" (version 1), as the whole decoder reads it.
    if schema_version.max(1) != CURRENT_SCHEMA_VERSION || !has_body {
        return None;
    }
    let occurred_at = occurred_at?;
    Some(RememberedParts {
        event_id,
        stamp: recorded_at.unwrap_or(occurred_at),
    })
}

/// An event id as the encoder writes it: its 36 characters, or nothing for the nil id.
fn event_id(value: Value<'_>) -> Option<Uuid> {
    let id = message(value)?;
    if id.is_empty() {
        Some(Uuid::nil())
    } else {
        Uuid::try_parse_ascii(id).ok()
    }
}

/// The event in `bytes`, if they are in the canonical form this decoder reads; `None`
/// sends them down prost's path (see the module documentation).
#[cfg(test)]
pub(crate) fn decode_canonical(
    bytes: &[u8],
    customers: Option<&mut SharedCustomers>,
) -> Option<Event> {
    let mut out = Err(crate::EventError::Decode(String::new()));
    decode_canonical_into(bytes, customers, &mut out)?;
    out.ok()
}

/// Decodes the event in `bytes` into `out` if they are in the canonical form this decoder
/// reads; `None` (and `out` as it was) sends them down prost's path. Written in place: an
/// event returned by value was copied whole three times on its way into a replay's batch
/// (`memcpy` from `decode_canonical`, `decode_sharing` and `decode_all_into`, each call a
/// 240-byte event, in `valgrind --tool=callgrind omnilog replay`).
pub(crate) fn decode_canonical_into(
    bytes: &[u8],
    mut customers: Option<&mut SharedCustomers>,
    out: &mut Result<Event, crate::EventError>,
) -> Option<()> {
    let mut event_id = Uuid::nil();
    let mut schema_version = 0u32;
    let (mut source, mut source_event_id, mut interaction_id) = (None, None, None);
    let (mut occurred_at, mut recorded_at) = (None, None);
    let mut customer_ref = None;
    let mut channel = None;
    let mut attributes = BTreeMap::new();
    let mut event_body = None;
    for_each_field(bytes, |field, value| {
        match field {
            1 => event_id = self::event_id(value)?,
            // `as`: protobuf's uint32 is the varint's low 32 bits.
            2 => schema_version = number(value)? as u32,
            3 => source = Some(compact_text(value)?),
            4 => source_event_id = Some(compact_text(value)?),
            5 if occurred_at.is_none() => occurred_at = Some(time(value)?),
            6 if recorded_at.is_none() => recorded_at = Some(time(value)?),
            7 if customer_ref.is_none() => {
                customer_ref = Some(match customers.as_deref_mut() {
                    Some(shared) => shared.customer(value)?,
                    None => Arc::new(customer(value)?),
                });
            }
            8 => interaction_id = Some(compact_text(value)?),
            9 => channel = channel_from_pb(enum_number(value)?).ok()?,
            10 => {
                let (key, entry) = map_entry(value, text)?;
                attributes.insert(key, entry);
            }
            20..=40 if event_body.is_none() => event_body = Some(body(field, message(value)?)?),
            _ => return None,
        }
        Some(())
    })?;
    // Version 0 is protobuf's "unset": a producer that never set it wrote version 1.
    let schema_version = schema_version.max(1);
    if schema_version > CURRENT_SCHEMA_VERSION {
        return None;
    }
    let (occurred_at, body) = (occurred_at?, event_body?);
    *out = Ok(Event {
        event_id,
        schema_version,
        source,
        source_event_id,
        occurred_at,
        recorded_at,
        customer: customer_ref,
        interaction_id,
        channel,
        attributes,
        body,
    });
    if let Ok(event) = out {
        crate::upcast::upcast_event(event);
    }
    Some(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_of_an_older_schema_is_left_to_the_whole_decode() {
        let mut event = crate::parse_event(
            br#"{"occurred_at": "2026-03-02T09:00:00Z", "type": "interaction_started",
                 "direction": "inbound", "customer": {"id": "k"},
                 "interaction_id": "CA1", "channel": "voice"}"#,
        )
        .unwrap();
        assert!(remembered_parts(&crate::encode(&event)).is_some());
        event.schema_version = CURRENT_SCHEMA_VERSION - 1;
        assert_eq!(remembered_parts(&crate::encode(&event)), None);
        assert_eq!(remembered_parts(b"\xff\xff"), None);
    }

    #[test]
    fn records_of_every_type_as_this_build_encodes_them_take_the_direct_path() {
        let envelope = r#""event_id": "0b6c6c2e-3c41-4f5e-9d0e-7d3b1c2a9f10", "source": "voice.twilio",
            "source_event_id": "CA1:q", "occurred_at": "2026-03-02T09:00:00.5Z", "recorded_at": "2026-03-02T09:00:01Z",
            "customer": {"id": "k", "handles": [{"kind": "phone", "value": "+15550000001"}]},
            "interaction_id": "CA1", "channel": "voice", "attributes": {"duration": "12"}"#;
        let bodies = [
            r#""type": "interaction_started", "direction": "inbound", "subject": "s", "self_service": true"#,
            r#""type": "message", "direction": "outbound", "author": "agent", "agent_id": "ann", "text": "t""#,
            r#""type": "queued", "queue": "billing", "priority": -2, "skills": ["billing", "fr"]"#,
            r#""type": "offered", "agent_id": "ann""#,
            r#""type": "offer_declined", "agent_id": "ann""#,
            r#""type": "offer_timed_out", "agent_id": "ann""#,
            r#""type": "assigned", "agent_id": "ann""#,
            r#""type": "transferred", "to_queue": "tech", "to_agent": "bo""#,
            r#""type": "hold""#,
            r#""type": "resumed""#,
            r#""type": "abandoned""#,
            r#""type": "ended", "reason": "hung up""#,
            r#""type": "wrapped_up", "agent_id": "ann", "resolved": true, "disposition": "d", "topics": ["refund"]"#,
            r#""type": "csat", "score": 4"#,
            r#""type": "note", "agent_id": "ann", "text": "called back""#,
            r#""type": "tagged", "topics": ["refund", "invoice"]"#,
            r#""type": "proactive_notice", "reason": "outage", "text": "t""#,
        ];
        let mut events: Vec<Event> = bodies
            .iter()
            .map(|body| {
                crate::parse_event(format!("{{{envelope}, {body}}}").as_bytes())
                    .unwrap_or_else(|e| panic!("{body}: {e}"))
            })
            .collect();
        events.extend(
            crate::parse_batch(
                br#"[
                {"occurred_at": "2026-03-02T09:00:00Z", "type": "identity_linked",
                 "customer": {"id": "k", "handles": [{"kind": "email", "value": "k@example.com"}]}},
                {"occurred_at": "2026-03-02T09:00:00Z", "type": "identity_linked",
                 "customer": {"handles": [{"kind": "email", "value": "k@example.com"}],
                              "attributes": {"segment": "finance", "tier": ""}},
                 "interaction_id": "CA1", "channel": "voice"},
                {"occurred_at": "2026-03-02T09:00:00Z", "type": "customers_merged",
                 "from_customer": "a", "into_customer": "b"},
                {"occurred_at": "2026-03-02T09:00:00Z", "type": "customer_profile",
                 "customer": {"id": "k"}, "attributes": {"segment": "finance", "department": "tax"}},
                {"occurred_at": "2026-03-02T09:00:00Z", "type": "agent_state", "agent_id": "ann",
                 "state": "available", "skills": [], "capacity": {"chat": 3, "voice": 1}}
            ]"#,
            )
            .unwrap(),
        );
        let types: std::collections::BTreeSet<&str> =
            events.iter().map(|e| e.event_type().as_str()).collect();
        assert_eq!(types.len(), crate::EventType::ALL.len(), "{types:?}");
        for event in events {
            let bytes = crate::encode(&event);
            assert_eq!(decode_canonical(&bytes, None).as_ref(), Some(&event));
            // What a reader that only remembers the record takes of it, read apart, agrees.
            assert_eq!(
                remembered_parts(&bytes),
                Some(RememberedParts {
                    event_id: event.event_id,
                    stamp: event.recorded_at.unwrap_or(event.occurred_at),
                }),
                "{event:?}"
            );
            assert_eq!(remembered_parts(&bytes), Some(RememberedParts::of(&event)));
        }
    }

    #[test]
    fn texts_are_read_whether_ascii_or_not_and_invalid_utf8_is_refused() {
        for text in [
            "",
            "crm-42",
            "0190a6f0-7c1e-7c2a-9b3e-6f0a1b2c3d4e",
            "Zoë",
            "日本語のメール",
        ] {
            assert_eq!(
                super::text(Value::Bytes(text.as_bytes())).as_deref(),
                Some(text)
            );
            assert_eq!(
                compact_text(Value::Bytes(text.as_bytes())).as_deref(),
                Some(text)
            );
        }
        for invalid in [&[b'a', 0xff, b'b'][..], &[0xc3]] {
            assert_eq!(text(Value::Bytes(invalid)), None);
            assert_eq!(compact_text(Value::Bytes(invalid)), None);
        }
    }

    #[test]
    fn a_batch_decodes_each_customer_once_and_equal_to_a_lone_decode() {
        let record = |id: &str, customer: &str, segment: &str| {
            crate::encode(
                &crate::parse_event(
                    format!(
                        r#"{{"event_id": "{id}", "occurred_at": "2026-03-02T09:00:00Z",
                        "customer": {{"id": "{customer}", "handles": [{{"kind": "phone", "value": "+15550000001"}}],
                        "attributes": {{"segment": "{segment}"}}}},
                        "interaction_id": "i1", "channel": "chat", "type": "hold"}}"#
                    )
                    .as_bytes(),
                )
                .unwrap(),
            )
        };
        let records = [
            record("0b6c6c2e-3c41-4f5e-9d0e-7d3b1c2a9f10", "k", "retail"),
            record("0b6c6c2e-3c41-4f5e-9d0e-7d3b1c2a9f11", "k", "retail"),
            record("0b6c6c2e-3c41-4f5e-9d0e-7d3b1c2a9f12", "k", "sales"),
            record("0b6c6c2e-3c41-4f5e-9d0e-7d3b1c2a9f13", "m", "retail"),
        ];
        // Decoded in one batch, each event equal to its lone decode.
        let mut decoder = crate::EventDecoder::new();
        let mut decode_alike = |records: &[Vec<u8>]| -> Vec<Event> {
            records
                .iter()
                .map(|bytes| {
                    let event = decoder.decode(bytes).unwrap();
                    assert_eq!(crate::decode(bytes).unwrap(), event);
                    event
                })
                .collect()
        };
        let decoded = decode_alike(&records);
        let customer = |n: usize| decoded[n].customer.as_ref().unwrap();
        assert!(
            Arc::ptr_eq(customer(0), customer(1)),
            "equal bytes, one customer"
        );
        assert!(!Arc::ptr_eq(customer(0), customer(2)), "other attributes");
        assert!(!Arc::ptr_eq(customer(0), customer(3)), "another id");
        assert_eq!(customer(2).attributes["segment"], "sales");
        assert_eq!(customer(3).id.as_deref(), Some("m"));

        // Long ids alike but for their last byte stay apart, equal ones are shared.
        let long = |last: char| format!("{}{last}", "tenant-0001/customer/".repeat(8));
        let records = [
            record("0b6c6c2e-3c41-4f5e-9d0e-7d3b1c2a9f20", &long('a'), "retail"),
            record("0b6c6c2e-3c41-4f5e-9d0e-7d3b1c2a9f21", &long('b'), "retail"),
            record("0b6c6c2e-3c41-4f5e-9d0e-7d3b1c2a9f22", &long('a'), "retail"),
        ];
        let decoded = decode_alike(&records);
        let customer = |n: usize| decoded[n].customer.as_ref().unwrap();
        assert!(Arc::ptr_eq(customer(0), customer(2)), "equal long ids");
        assert!(!Arc::ptr_eq(customer(0), customer(1)), "long ids apart");
        assert_eq!(customer(1).id.as_deref(), Some(long('b').as_str()));

        // One id whose attributes change at every event: each event's customer decodes as
        // alone, and equal bytes seen again are shared.
        let records: Vec<Vec<u8>> = (0..24)
            .map(|n: u32| {
                record(
                    &format!("0b6c6c2e-3c41-4f5e-9d0e-7d3b1c2a{n:04}"),
                    "v",
                    &format!("s{n}"),
                )
            })
            .collect();
        let again = record("0b6c6c2e-3c41-4f5e-9d0e-7d3b1c2affff", "v", "s0");
        let decoded = decode_alike(&[records.clone(), vec![again]].concat());
        assert!(
            Arc::ptr_eq(
                decoded[0].customer.as_ref().unwrap(),
                decoded.last().unwrap().customer.as_ref().unwrap()
            ),
            "equal bytes seen again"
        );
    }

    /// Nanoseconds the conversion must treat as chrono does: none, the extremes of a
    /// second, a leap second's, and too many.
    const NANOS: [u32; 6] = [
        0,
        1,
        999_999_999,
        1_000_000_000,
        1_999_999_999,
        2_000_000_000,
    ];

    #[test]
    fn times_at_the_edges_read_as_chrono_reads_them() {
        let edges = [
            0i64,
            -1,
            59,
            86_399,
            86_400,
            -86_400,
            -86_401,
            1_772_442_059,
        ];
        let far = [i64::MIN, i64::MAX, 8_210_298_412_799, 8_210_298_412_800];
        for second in edges.into_iter().chain(far) {
            for nanos in NANOS {
                assert_eq!(
                    timestamp(second, nanos),
                    DateTime::from_timestamp(second, nanos),
                    "{second} s {nanos} ns"
                );
            }
        }
    }

    proptest::proptest! {
        /// Runs of one day (as a batch's events are), then of days far apart: the day
        /// remembered from the time before never changes an answer.
        #[test]
        fn times_read_as_chrono_reads_them_whatever_came_before(
            near in proptest::collection::vec(1_772_400_000i64..1_772_600_000, 1..64),
            far in proptest::collection::vec(-400_000_000_000i64..400_000_000_000, 1..64),
            nanos in proptest::sample::select(NANOS.to_vec()),
        ) {
            for second in near.into_iter().chain(far) {
                proptest::prop_assert_eq!(
                    timestamp(second, nanos),
                    DateTime::from_timestamp(second, nanos),
                    "{} s {} ns", second, nanos
                );
            }
        }
    }

    #[test]
    fn times_in_any_field_order_read_as_written() {
        let read = |bytes: &[u8]| time(Value::Bytes(bytes));
        let mut canonical = vec![0x08];
        prost::encoding::encode_varint(1_772_442_000, &mut canonical);
        canonical.push(0x10);
        prost::encoding::encode_varint(500_000_000, &mut canonical);
        let expected = DateTime::from_timestamp(1_772_442_000, 500_000_000);
        assert_eq!(read(&canonical), expected);
        // Nanoseconds first, or the seconds repeated (the last wins): the general loop.
        let split = canonical.iter().position(|&b| b == 0x10).unwrap();
        let swapped = [&canonical[split..], &canonical[..split]].concat();
        assert_eq!(read(&swapped), expected);
        let repeated = [&[0x08, 0x01][..], &canonical[..]].concat();
        assert_eq!(read(&repeated), expected);
        assert_eq!(read(&[]), DateTime::from_timestamp(0, 0));
        assert_eq!(read(&[0x08, 0x02]), DateTime::from_timestamp(2, 0));
        let mut before_1970 = vec![0x08];
        prost::encoding::encode_varint(-5i64 as u64, &mut before_1970);
        assert_eq!(read(&before_1970), DateTime::from_timestamp(-5, 0));
        // An unknown field, nanoseconds out of range, a cut varint: refused.
        assert_eq!(read(&[0x18, 0x01]), None);
        let mut too_many = vec![0x10];
        prost::encoding::encode_varint(2_000_000_000, &mut too_many);
        assert_eq!(read(&too_many), None);
        assert_eq!(read(&[0x08, 0x80]), None);
    }

    #[test]
    fn varints_of_every_length_read_and_overlong_ones_do_not() {
        for value in [0u64, 1, 127, 128, 300, u64::from(u32::MAX), u64::MAX] {
            let mut bytes = Vec::new();
            prost::encoding::encode_varint(value, &mut bytes);
            let mut read = bytes.as_slice();
            assert_eq!(varint(&mut read), Some(value));
            assert!(read.is_empty());
        }
        assert_eq!(varint(&mut [0x80u8; 11].as_slice()), None);
        let mut overflowing = [0xffu8; 10];
        overflowing[9] = 0x02;
        assert_eq!(varint(&mut overflowing.as_slice()), None);
        assert_eq!(varint(&mut [0x80u8].as_slice()), None);
    }
}
