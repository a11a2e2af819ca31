//! The canonical JSON of CONTRACT §3, both ways.
//!
//! Reading is two steps: serde reads the text into [`RawEvent`] (every field optional,
//! unknown fields refused, so a typo is an error rather than silently dropped), then
//! [`RawEvent::validate`] applies the contract's rules and yields an [`Event`]. Every
//! error names the field it is about (`[2].customer.handles[0].value`).
//!
//! Writing is one hand-written `Serialize` so the field order is fixed (envelope first,
//! then `type` and its fields) and the output is byte-for-byte stable: the canonical
//! form used by export, by content-derived ids and by the round-trip tests.

use std::borrow::Cow;
use std::collections::BTreeMap;

use chrono::{DateTime, SecondsFormat, Utc};
use serde::ser::SerializeMap;
use serde::{Deserialize, Serialize, Serializer};
use uuid::Uuid;

use crate::error::EventError;
use crate::identity::{
    MAX_CUSTOMER_ID_BYTES, event_id_for_content, event_id_for_source, normalise_handle,
};
use crate::model::{
    AgentStatus, Author, Body, CURRENT_SCHEMA_VERSION, Channel, CompactString, CustomerId,
    CustomerRef, Direction, Event, EventType,
};
use crate::text_rules::trimmed;
use crate::upcast;

/// An event as read from JSON, before validation.
///
/// The fields that validation only parses (the id, the times, the names of the type, the
/// channel and the other enums, a handle as given) borrow from the request's text where
/// it has no escapes, so a well-formed event costs no allocation for them; the fields
/// the event keeps are owned.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawEvent<'a> {
    #[serde(borrow)]
    pub event_id: Option<Cow<'a, str>>,
    #[serde(default, deserialize_with = "optional_whole")]
    pub schema_version: Option<i64>,
    pub source: Option<CompactString>,
    pub source_event_id: Option<CompactString>,
    #[serde(borrow)]
    pub occurred_at: Option<Cow<'a, str>>,
    #[serde(borrow)]
    pub recorded_at: Option<Cow<'a, str>>,
    #[serde(borrow)]
    pub customer: Option<RawCustomer<'a>>,
    pub interaction_id: Option<CompactString>,
    #[serde(borrow)]
    pub channel: Option<Cow<'a, str>>,
    #[serde(rename = "type", borrow)]
    pub event_type: Option<Cow<'a, str>>,
    #[serde(default, deserialize_with = "unique_keys")]
    pub attributes: Option<BTreeMap<String, String>>,
    // Body fields: which of them an event may carry depends on its type.
    #[serde(borrow)]
    pub direction: Option<Cow<'a, str>>,
    pub subject: Option<String>,
    pub self_service: Option<bool>,
    #[serde(borrow)]
    pub author: Option<Cow<'a, str>>,
    pub agent_id: Option<String>,
    pub text: Option<String>,
    pub queue: Option<String>,
    #[serde(default, deserialize_with = "optional_whole")]
    pub priority: Option<i64>,
    pub skills: Option<Vec<String>>,
    pub to_queue: Option<String>,
    pub to_agent: Option<String>,
    pub reason: Option<String>,
    pub resolved: Option<bool>,
    pub disposition: Option<String>,
    pub topics: Option<Vec<String>>,
    #[serde(default, deserialize_with = "optional_whole")]
    pub score: Option<i64>,
    pub from_customer: Option<String>,
    pub into_customer: Option<String>,
    #[serde(borrow)]
    pub state: Option<Cow<'a, str>>,
    #[serde(default, deserialize_with = "unique_keys")]
    pub capacity: Option<BTreeMap<String, Whole>>,
    pub by_handles: Option<bool>,
}

/// The customer part of a [`RawEvent`].
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCustomer<'a> {
    #[serde(borrow)]
    pub id: Option<Cow<'a, str>>,
    #[serde(borrow)]
    pub handles: Option<Vec<RawHandle<'a>>>,
    #[serde(default, deserialize_with = "unique_keys")]
    pub attributes: Option<BTreeMap<String, String>>,
}

/// A handle as given, before normalisation (which makes new strings of it).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawHandle<'a> {
    #[serde(borrow)]
    pub kind: Cow<'a, str>,
    #[serde(borrow)]
    pub value: Cow<'a, str>,
}

/// Reads one event from canonical JSON text.
pub fn parse_event(text: &[u8]) -> Result<Event, EventError> {
    current_event(text).unwrap_or_else(|| parse_event_general(text))
}

/// One event of the current schema through the fast path; `None` for input it does not
/// take (see [`current_raw`]).
fn current_event(text: &[u8]) -> Option<Result<Event, EventError>> {
    current_raw::<OneRaw, _>(text, is_current, |raw| {
        raw.validate_text(TextCheck::of_raw_json(text))
    })
}

/// Whether validation must look for control characters in an event's strings, or its JSON
/// text showed that none can hold one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum TextCheck {
    EveryField,
    /// The raw text holds no escape and no byte of a control character (see
    /// [`TextCheck::of_raw_json`]).
    NotNeeded,
}

impl TextCheck {
    /// Every control character is a byte below 0x20, the byte 0x7F, or 0xC2 then
    /// 0x80..=0x9F in UTF-8, and JSON can write one otherwise only as an escape (`\u0001`,
    /// `\n`). So in text with none of those bytes and no backslash, every string is its
    /// raw bytes and holds no control character: the per-field check
    /// (`text_rules::check_event_text`) would pass every field, and is left out. It was
    /// about 1,750 instructions an event (`valgrind --tool=callgrind omnilog import`), this
    /// scan is a few dozen. JSON's own whitespace between tokens (a tab, a line feed) sends
    /// the text to the per-field check, which refuses only what is inside a string.
    fn of_raw_json(text: &[u8]) -> TextCheck {
        // Chunks folded without a short cut, so the compiler checks each one with vector
        // instructions.
        let suspect = text.chunks(64).any(|chunk| {
            chunk.iter().fold(false, |found, &byte| {
                found | (byte < 0x20) | (byte == 0x7f) | (byte == 0xc2) | (byte == b'\\')
            })
        });
        if suspect {
            TextCheck::EveryField
        } else {
            TextCheck::NotNeeded
        }
    }
}

/// Refuses JSON text in which an object gives a key twice, naming the key by its path:
/// [`serde_json::Value`] would keep the last of them silently, and which of two values a
/// producer meant is not for us to guess.
fn refuse_repeated_keys(text: &[u8]) -> Result<(), EventError> {
    let mut deserializer = serde_json::Deserializer::from_slice(text);
    serde_path_to_error::deserialize::<_, UniqueKeys>(&mut deserializer)
        .map(|_| ())
        .map_err(|e| EventError::json(String::new(), e))
}

/// Any JSON value, read only to check that no object in it gives a key twice.
struct UniqueKeys;

impl<'de> Deserialize<'de> for UniqueKeys {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(UniqueKeysVisitor)
    }
}

struct UniqueKeysVisitor;

impl<'de> serde::de::Visitor<'de> for UniqueKeysVisitor {
    type Value = UniqueKeys;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("JSON")
    }

    fn visit_bool<E>(self, _: bool) -> Result<UniqueKeys, E> {
        Ok(UniqueKeys)
    }

    fn visit_i64<E>(self, _: i64) -> Result<UniqueKeys, E> {
        Ok(UniqueKeys)
    }

    fn visit_u64<E>(self, _: u64) -> Result<UniqueKeys, E> {
        Ok(UniqueKeys)
    }

    fn visit_f64<E>(self, _: f64) -> Result<UniqueKeys, E> {
        Ok(UniqueKeys)
    }

    fn visit_str<E>(self, _: &str) -> Result<UniqueKeys, E> {
        Ok(UniqueKeys)
    }

    fn visit_unit<E>(self) -> Result<UniqueKeys, E> {
        Ok(UniqueKeys)
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<UniqueKeys, A::Error> {
        while seq.next_element::<UniqueKeys>()?.is_some() {}
        Ok(UniqueKeys)
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<UniqueKeys, A::Error> {
        let mut seen = std::collections::HashSet::new();
        while let Some(key) = map.next_key::<String>()? {
            if seen.contains(&key) {
                // Failed while reading the value, so the error's path ends with the key.
                return map.next_value_seed(RepeatedKey);
            }
            map.next_value::<UniqueKeys>()?;
            seen.insert(key);
        }
        Ok(UniqueKeys)
    }
}

/// The value of a key given a second time: always an error.
struct RepeatedKey;

impl<'de> serde::de::DeserializeSeed<'de> for RepeatedKey {
    type Value = UniqueKeys;

    fn deserialize<D: serde::Deserializer<'de>>(self, _: D) -> Result<UniqueKeys, D::Error> {
        Err(serde::de::Error::custom(
            "the key is given twice in one object",
        ))
    }
}

/// [`parse_event`] through a [`serde_json::Value`]: any schema version, named errors.
/// Public for the fuzzer, which checks that the fast path never takes what this refuses
/// nor reads it otherwise.
#[doc(hidden)]
pub fn parse_event_general(text: &[u8]) -> Result<Event, EventError> {
    refuse_repeated_keys(text)?;
    let mut deserializer = serde_json::Deserializer::from_slice(text);
    let value: serde_json::Value = serde_path_to_error::deserialize(&mut deserializer)
        .map_err(|e| EventError::json(String::new(), e))?;
    deserializer
        .end()
        .map_err(|e| EventError::invalid("", e.to_string()))?;
    event_from_value(value).map_err(|e| e.within(""))
}

/// Reads a batch: a JSON array of events (a single object is taken as a batch of one).
/// The first invalid event fails the whole batch, named by its index.
pub fn parse_batch(text: &[u8]) -> Result<Vec<Event>, EventError> {
    match text.iter().find(|byte| !byte.is_ascii_whitespace()) {
        Some(b'[') => {
            let parsed = current_raw::<ManyRaws, _>(
                text,
                |raws| raws.iter().all(is_current),
                |raws| {
                    let check = TextCheck::of_raw_json(text);
                    // Sized once: collected through a `Result`, the events would be moved
                    // into ever larger vectors, about a kilobyte an event.
                    let mut events = Vec::with_capacity(raws.len());
                    for (index, raw) in raws.into_iter().enumerate() {
                        events.push(
                            raw.validate_text(check)
                                .map_err(|e| e.within(&format!("[{index}]")))?,
                        );
                    }
                    Ok(events)
                },
            );
            if let Some(events) = parsed {
                return events;
            }
        }
        Some(b'{') => {
            if let Some(event) = current_event(text) {
                return Ok(vec![event?]);
            }
        }
        _ => {}
    }
    parse_batch_general(text)
}

/// [`parse_batch`] through a [`serde_json::Value`]: any schema version, named errors.
/// Public for the fuzzer (see [`parse_event_general`]).
#[doc(hidden)]
pub fn parse_batch_general(text: &[u8]) -> Result<Vec<Event>, EventError> {
    refuse_repeated_keys(text)?;
    let mut deserializer = serde_json::Deserializer::from_slice(text);
    let value: serde_json::Value = serde_path_to_error::deserialize(&mut deserializer)
        .map_err(|e| EventError::json(String::new(), e))?;
    deserializer
        .end()
        .map_err(|e| EventError::invalid("", e.to_string()))?;
    match value {
        serde_json::Value::Array(items) => items
            .into_iter()
            .enumerate()
            .map(|(index, item)| {
                event_from_value(item).map_err(|e| e.within(&format!("[{index}]")))
            })
            .collect(),
        object @ serde_json::Value::Object(_) => Ok(vec![event_from_value(object)?]),
        _ => Err(EventError::invalid(
            "",
            "expected a JSON array of events".to_owned(),
        )),
    }
}

/// The fast path of well-formed input of the current schema: `text` deserialized straight
/// into raw events, without building a [`serde_json::Value`] first (which costs as much
/// again: `cargo bench --bench codec`), and handed to `finish` (the raw events borrow from
/// a buffer of this thread's, so they are turned into events inside). `None` sends the
/// input down the general path, which upcasts older versions and names the field of a
/// malformed one; for input the fast path takes, both paths give the same events, since
/// the upcast of an event that is already current (or names no version) changes nothing
/// (the fuzzer checks it).
///
/// The fast path parses with simd-json, the general path with serde_json. simd-json finds
/// a text's structure with vector instructions before deserializing, and unescapes
/// strings in place, so it parses a copy of the input. That copy, its padding, simd-json's
/// working buffers and its tape are kept per thread ([`SimdParser`]): made for each call,
/// they cost more than simd-json saves on a body of one event, and on a body of 1,000
/// events the copy and the tape were a fresh 425 KB and about 1 MB each time, with a
/// second copy of the input inside simd-json. An input over [`SIMD_INPUT`] is read by
/// serde_json straight from `text`. `parse_batch` of a 30,000-event history (`cargo run
/// --release -p omnilog-events --example parse_batch`), nanoseconds an event, validation
/// included, three alternated runs: bodies of 1,000 events 1,726 to 1,769 against
/// serde_json's 2,145 to 2,239; bodies of one event 2,001 to 2,064 against 1,903 to 2,049
/// (and a quarter more than serde_json with buffers made for each call).
fn current_raw<P: RawShape, R>(
    text: &[u8],
    all_current: impl for<'a> Fn(&P::Of<'a>) -> bool,
    finish: impl for<'a> FnOnce(P::Of<'a>) -> R,
) -> Option<R> {
    if text.len() > SIMD_INPUT {
        // Checked as UTF-8 once, whole (a fast scan), so that the parser need not check
        // each string again: reading from a `str`, serde_json skips that.
        let parsed: P::Of<'_> = serde_json::from_str(std::str::from_utf8(text).ok()?).ok()?;
        return all_current(&parsed).then(|| finish(parsed));
    }
    SIMD_PARSER.with_borrow_mut(|parser| {
        let SimdParser {
            input,
            buffers,
            tape,
        } = parser;
        input.clear();
        input.extend_from_slice(text);
        input.resize(text.len() + simd_json::INPUT_PADDING, b' ');
        let parsed = parse_padded::<P, R>(input, text.len(), buffers, tape, all_current, finish);
        if tape.0.capacity() > KEPT_TAPE_NODES {
            *tape = simd_json::Tape::null();
        }
        if input.capacity() > KEPT_INPUT_BYTES {
            *input = Vec::new();
        }
        parsed
    })
}

/// [`current_raw`]'s parse of `input[..len]` (padded after), with the kept tape lent for
/// it and given back.
fn parse_padded<P: RawShape, R>(
    input: &mut [u8],
    len: usize,
    buffers: &mut simd_json::Buffers,
    tape: &mut simd_json::Tape<'static>,
    all_current: impl for<'a> Fn(&P::Of<'a>) -> bool,
    finish: impl for<'a> FnOnce(P::Of<'a>) -> R,
) -> Option<R> {
    let mut lent: simd_json::Tape<'_> = std::mem::replace(tape, simd_json::Tape::null()).reset();
    if simd_json::fill_tape_padded(input, len, buffers, &mut lent).is_err() {
        *tape = lent.reset();
        return None;
    }
    let mut deserializer = simd_json::Deserializer::from_tape(lent);
    let parsed = P::Of::deserialize(&mut deserializer);
    *tape = deserializer.into_tape().reset();
    let parsed = parsed.ok()?;
    all_current(&parsed).then(|| finish(parsed))
}

/// What the fast path reads a text as: one raw event, or an array of them.
trait RawShape {
    type Of<'a>: Deserialize<'a>;
}

/// A text of one event.
struct OneRaw;

impl RawShape for OneRaw {
    type Of<'a> = RawEvent<'a>;
}

/// A text of an array of events.
struct ManyRaws;

impl RawShape for ManyRaws {
    type Of<'a> = Vec<RawEvent<'a>>;
}

/// The largest input the fast path parses with simd-json. Its buffers grow to the largest
/// input they served and stay as long as the thread (an HTTP worker's: the server's), and a
/// parse takes several times its input (the copy, the structure's indexes, the tape). For
/// any input, the 8 MiB bodies of `tests/hostile.rs` (huge arrays and strings) raised its
/// server's memory after the burst to 217 to 254 MB (160 to 176 MB before simd-json), and
/// 20 s later it was still 114 and 127 MB over where it started in two of four runs (the
/// test allows 100). Bounded, four runs passed, 166 to 196 MB after the burst. A body of
/// 1,000 events is about 425 KB.
const SIMD_INPUT: usize = 1024 * 1024;

/// The most tape nodes (24 bytes each) a thread keeps between parses. A body of 1,000
/// events of the bench's history takes 38,833 to 41,280; an input of [`SIMD_INPUT`] bytes
/// of tiny values could take ten times that (several MB a thread, for as long as the
/// thread lives), so such a tape is let go. Kept, bigger tapes and copies held the
/// server of `tests/hostile.rs` over its bound (RSS 135 MB 20 s after its burst, against
/// 125 allowed, in one run of eight).
const KEPT_TAPE_NODES: usize = 64 * 1024;

/// The largest input copy a thread keeps between parses: a body of 1,000 events is about
/// 425 KB.
const KEPT_INPUT_BYTES: usize = 512 * 1024 + simd_json::INPUT_PADDING;

/// What a thread keeps for its fast-path parses: the padded copy of the input simd-json
/// unescapes strings in, its working buffers, and its tape (emptied between inputs).
struct SimdParser {
    input: Vec<u8>,
    buffers: simd_json::Buffers,
    tape: simd_json::Tape<'static>,
}

thread_local! {
    /// This thread's [`SimdParser`], for every fast-path parse of an input up to
    /// [`SIMD_INPUT`].
    static SIMD_PARSER: std::cell::RefCell<SimdParser> = std::cell::RefCell::new(SimdParser {
        input: Vec::new(),
        buffers: simd_json::Buffers::new(64 * 1024),
        tape: simd_json::Tape::null(),
    });
}

/// Reads a JSON object (or `null`) into a map, refusing a key given twice (a map's own
/// deserializer keeps the last value silently): the input then goes down the general path,
/// which names the key.
fn unique_keys<'de, D, V>(deserializer: D) -> Result<Option<BTreeMap<String, V>>, D::Error>
where
    D: serde::Deserializer<'de>,
    V: Deserialize<'de>,
{
    Ok(Option::<KeysOnce<V>>::deserialize(deserializer)?.map(|map| map.0))
}

/// Reads an optional whole number (see [`Whole`]).
fn optional_whole<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<i64>, D::Error> {
    Ok(Option::<Whole>::deserialize(deserializer)?.map(|whole| whole.0))
}

/// A whole number field's value. JSON's `-0` is 0: serde_json (the general path) reads it
/// as the float -0.0 to keep its sign, simd-json (the fast path) as the integer 0, and the
/// two paths must agree (the fuzzer found `"capacity":{"ivr":-0}` taken by one, refused by
/// the other). Any other float is refused, as serde's own integers refuse it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Whole(pub i64);

impl<'de> Deserialize<'de> for Whole {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_i64(WholeVisitor)
    }
}

struct WholeVisitor;

impl serde::de::Visitor<'_> for WholeVisitor {
    type Value = Whole;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The phrase of serde's i64, which error.rs words for the contract.
        f.write_str("i64")
    }

    fn visit_i64<E: serde::de::Error>(self, value: i64) -> Result<Whole, E> {
        Ok(Whole(value))
    }

    fn visit_u64<E: serde::de::Error>(self, value: u64) -> Result<Whole, E> {
        i64::try_from(value)
            .map(Whole)
            .map_err(|_| E::invalid_value(serde::de::Unexpected::Unsigned(value), &self))
    }

    fn visit_f64<E: serde::de::Error>(self, value: f64) -> Result<Whole, E> {
        if value == 0.0 && value.is_sign_negative() {
            Ok(Whole(0))
        } else {
            Err(E::invalid_type(serde::de::Unexpected::Float(value), &self))
        }
    }
}

/// A map whose every key was given once.
struct KeysOnce<V>(BTreeMap<String, V>);

impl<'de, V: Deserialize<'de>> Deserialize<'de> for KeysOnce<V> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_map(KeysOnceVisitor(std::marker::PhantomData))
    }
}

struct KeysOnceVisitor<V>(std::marker::PhantomData<V>);

impl<'de, V: Deserialize<'de>> serde::de::Visitor<'de> for KeysOnceVisitor<V> {
    type Value = KeysOnce<V>;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("an object")
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut values = BTreeMap::new();
        while let Some((key, value)) = map.next_entry::<String, V>()? {
            if values.insert(key, value).is_some() {
                return Err(serde::de::Error::custom(
                    "the key is given twice in one object",
                ));
            }
        }
        Ok(KeysOnce(values))
    }
}

/// Whether a raw event is of the current schema (naming no version counts as current).
fn is_current(raw: &RawEvent<'_>) -> bool {
    raw.schema_version
        .is_none_or(|version| version == i64::from(CURRENT_SCHEMA_VERSION))
}

/// Validates one event given as a JSON value, upcasting an older schema version first.
pub fn event_from_value(mut value: serde_json::Value) -> Result<Event, EventError> {
    let object = value
        .as_object_mut()
        .ok_or_else(|| EventError::invalid("", "an event must be a JSON object".to_owned()))?;
    upcast::upcast_json(object)?;
    let raw: RawEvent =
        serde_path_to_error::deserialize(value).map_err(|e| EventError::json(String::new(), e))?;
    raw.validate()
}

/// Checks an event that did not come through JSON (a protobuf `EventBatch`) with exactly
/// the rules of JSON input: normalised handles, required fields, a derived id when its
/// id is nil (absent on the wire).
pub fn revalidate(event: &Event) -> Result<Event, EventError> {
    let mut value = serde_json::to_value(event)
        .map_err(|e| EventError::invalid("", format!("unrepresentable event: {e}")))?;
    if let Some(object) = value.as_object_mut()
        && event.event_id.is_nil()
    {
        object.remove("event_id");
    }
    event_from_value(value)
}

fn parse_time(field: &str, text: &str) -> Result<DateTime<Utc>, EventError> {
    let time = trimmed(text);
    if let Some(time) = canonical_time(time) {
        return Ok(time);
    }
    DateTime::parse_from_rfc3339(time)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| EventError::invalid(field, format!("not an RFC 3339 time ({e}): {text:?}")))
}

/// A time in the form [`format_time`] writes (`2026-03-01T08:00:00Z`, or with 1 to 9
/// fraction digits), read without chrono's general RFC 3339 parser: every event carries one
/// or two, and that parser took about 500 instructions each (`valgrind --tool=callgrind
/// omnilog import`). `None` for anything else, which chrono then reads or refuses with its
/// message; for what this takes, chrono gives the same time (tested).
fn canonical_time(text: &str) -> Option<DateTime<Utc>> {
    let bytes = text.as_bytes();
    if bytes.len() < 20
        || bytes[4] != b'-'
        || bytes[7] != b'-'
        || bytes[10] != b'T'
        || bytes[13] != b':'
        || bytes[16] != b':'
        || bytes[bytes.len() - 1] != b'Z'
    {
        return None;
    }
    let head: &[u8; 19] = bytes[..19].try_into().ok()?;
    // Each digit's value; a byte that is no digit gives 10 or more. Checked all at once,
    // without a short cut, on a fixed array: no bounds check, no branch a digit.
    let digit = |at: usize| u32::from(head[at].wrapping_sub(b'0'));
    const DIGITS: [usize; 14] = [0, 1, 2, 3, 5, 6, 8, 9, 11, 12, 14, 15, 17, 18];
    if DIGITS.iter().fold(false, |bad, &at| bad | (digit(at) > 9)) {
        return None;
    }
    let pair = |at: usize| digit(at) * 10 + digit(at + 1);
    let nanos = match &bytes[19..bytes.len() - 1] {
        [] => 0,
        [b'.', digits @ ..] if (1..=9).contains(&digits.len()) => {
            let mut value = 0u32;
            for &byte in digits {
                let digit = u32::from(byte.wrapping_sub(b'0'));
                if digit > 9 {
                    return None;
                }
                value = value * 10 + digit;
            }
            value * 10u32.pow(9 - digits.len() as u32)
        }
        _ => return None,
    };
    let year = (pair(0) * 100 + pair(2)) as i32;
    let date = chrono::NaiveDate::from_ymd_opt(year, pair(5), pair(8))?;
    // A leap second (`:60`) is left to chrono.
    let (hour, minute, second) = (pair(11), pair(14), pair(17));
    if second > 59 {
        return None;
    }
    Some(
        date.and_hms_nano_opt(hour, minute, second, nanos)?
            .and_utc(),
    )
}

/// The canonical text of a time: UTC, `Z`, and only as many fraction digits as needed
/// (0, 3, 6 or 9).
pub fn format_time(time: &DateTime<Utc>) -> String {
    time.to_rfc3339_opts(SecondsFormat::AutoSi, true)
}

fn parse_named<T>(
    field: &str,
    text: Option<&str>,
    parse: fn(&str) -> Option<T>,
    names: fn() -> String,
) -> Result<T, EventError> {
    let text = text.ok_or_else(|| EventError::missing(field))?;
    parse(text)
        .ok_or_else(|| EventError::invalid(field, format!("{text:?} is not one of {}", names())))
}

fn required_text(field: &str, value: Option<String>) -> Result<String, EventError> {
    match value {
        Some(text) if !trimmed(&text).is_empty() => Ok(text),
        Some(_) => Err(EventError::invalid(field, "must not be empty".to_owned())),
        None => Err(EventError::missing(field)),
    }
}

/// A customer id an event names (a merge's), not empty and no longer than the identity
/// view keeps ([`MAX_CUSTOMER_ID_BYTES`], trimmed), and kept trimmed, as `customer.id` is:
/// the merge is keyed by the id it merges into, and an id padded with white space past the
/// log's longest key was checked short and stored long, and the log refused the whole group
/// its request was written with (every request of it answered 503).
fn customer_id(field: &str, value: Option<String>) -> Result<String, EventError> {
    let id = required_text(field, value)?;
    let kept = trimmed(&id);
    if kept.len() > MAX_CUSTOMER_ID_BYTES {
        return Err(too_long_id(field));
    }
    Ok(if kept.len() == id.len() {
        id
    } else {
        kept.to_owned()
    })
}

/// An agent id, not empty and at most [`MAX_AGENT_ID_BYTES`]: an `agent_state` is keyed
/// by it in the log, whose keys are at most 64 KiB, and an id past that made the log
/// refuse the whole group its request was written with, every request of it answered 503
/// (found by review); no desk names an agent in kilobytes.
fn agent_id(value: Option<String>) -> Result<String, EventError> {
    let id = required_text("agent_id", value)?;
    if id.len() > MAX_AGENT_ID_BYTES {
        return Err(EventError::invalid(
            "agent_id",
            format!("is longer than {MAX_AGENT_ID_BYTES} bytes"),
        ));
    }
    Ok(id)
}

/// The longest agent id, in bytes.
pub const MAX_AGENT_ID_BYTES: usize = 256;

fn too_long_id(field: &str) -> EventError {
    EventError::invalid(
        field,
        format!("is longer than {MAX_CUSTOMER_ID_BYTES} bytes"),
    )
}

fn non_empty<T: AsRef<str>>(field: &str, value: Option<T>) -> Result<Option<T>, EventError> {
    match value {
        Some(text) if is_blank(text.as_ref()) => {
            Err(EventError::invalid(field, "must not be empty".to_owned()))
        }
        other => Ok(other),
    }
}

/// Whether `text` is empty or white space only. An ASCII first byte that is no white
/// space (nearly every value) answers without the Unicode-aware trim.
fn is_blank(text: &str) -> bool {
    match text.as_bytes().first() {
        None => true,
        Some(&first) if first.is_ascii() && !matches!(first, b'\t'..=b'\r' | b' ') => false,
        Some(_) => text.trim().is_empty(),
    }
}

fn words(field: &str, values: Option<Vec<String>>) -> Result<Vec<String>, EventError> {
    let values = values.unwrap_or_default();
    for (index, value) in values.iter().enumerate() {
        if trimmed(value).is_empty() {
            return Err(EventError::invalid(
                &format!("{field}[{index}]"),
                "must not be empty".to_owned(),
            ));
        }
    }
    Ok(values)
}

/// Topics as version 2 stores them ([`crate::model::normalise_topic`]).
fn topics(values: Option<Vec<String>>) -> Result<Vec<String>, EventError> {
    Ok(words("topics", values)?
        .iter()
        .map(|topic| crate::model::normalise_topic(topic))
        .collect())
}

impl RawEvent<'_> {
    /// The body fields that are present, by name.
    fn present_body_fields(&self) -> Vec<&'static str> {
        let mut present = Vec::new();
        let mut note = |name: &'static str, is_set: bool| {
            if is_set {
                present.push(name);
            }
        };
        note("direction", self.direction.is_some());
        note("subject", self.subject.is_some());
        note("self_service", self.self_service.is_some());
        note("author", self.author.is_some());
        note("agent_id", self.agent_id.is_some());
        note("text", self.text.is_some());
        note("queue", self.queue.is_some());
        note("priority", self.priority.is_some());
        note("skills", self.skills.is_some());
        note("to_queue", self.to_queue.is_some());
        note("to_agent", self.to_agent.is_some());
        note("reason", self.reason.is_some());
        note("resolved", self.resolved.is_some());
        note("disposition", self.disposition.is_some());
        note("topics", self.topics.is_some());
        note("score", self.score.is_some());
        note("from_customer", self.from_customer.is_some());
        note("into_customer", self.into_customer.is_some());
        note("state", self.state.is_some());
        note("capacity", self.capacity.is_some());
        note("by_handles", self.by_handles.is_some());
        present
    }

    /// Applies CONTRACT §3's rules and builds the event. Handles are normalised and a
    /// missing `event_id` is derived (see [`crate::identity`]).
    pub fn validate(self) -> Result<Event, EventError> {
        self.validate_text(TextCheck::EveryField)
    }

    /// [`RawEvent::validate`], with the control characters checked as `check` says.
    fn validate_text(mut self, check: TextCheck) -> Result<Event, EventError> {
        let event_type = parse_named(
            "type",
            self.event_type.take().as_deref(),
            EventType::parse,
            EventType::names,
        )?;
        let allowed = body_fields(event_type);
        if let Some(stray) = self
            .present_body_fields()
            .into_iter()
            .find(|field| !allowed.contains(field))
        {
            return Err(EventError::invalid(
                stray,
                format!("does not belong to an event of type {event_type}"),
            ));
        }

        let schema_version = match self.schema_version {
            None => CURRENT_SCHEMA_VERSION,
            Some(v) if v == i64::from(CURRENT_SCHEMA_VERSION) => CURRENT_SCHEMA_VERSION,
            Some(v) => {
                return Err(EventError::invalid(
                    "schema_version",
                    format!(
                        "version {v} is not supported (this build reads 1..={CURRENT_SCHEMA_VERSION})"
                    ),
                ));
            }
        };
        let occurred_at = parse_time(
            "occurred_at",
            self.occurred_at
                .as_deref()
                .ok_or_else(|| EventError::missing("occurred_at"))?,
        )?;
        let recorded_at = self
            .recorded_at
            .as_deref()
            .map(|t| parse_time("recorded_at", t))
            .transpose()?;
        let source = non_empty("source", self.source.take())?;
        let source_event_id = non_empty("source_event_id", self.source_event_id.take())?;
        let customer = self.customer.take().map(validate_customer).transpose()?;
        let attributes = self.attributes.take().unwrap_or_default();
        if event_type == EventType::CustomerProfile {
            // A profile's attributes are the customer's: named as attribute keys are.
            if attributes.is_empty() {
                return Err(EventError::invalid(
                    "attributes",
                    "a customer_profile sets at least one attribute".to_owned(),
                ));
            }
            check_customer_attributes("attributes", &attributes)?;
        }
        let interaction_id = non_empty("interaction_id", self.interaction_id.take())?;
        let channel = self
            .channel
            .take()
            .map(|c| parse_named("channel", Some(&c), Channel::parse, Channel::names))
            .transpose()?;

        if event_type.is_interaction_event() {
            if channel.is_none() {
                return Err(EventError::missing("channel"));
            }
            if interaction_id.is_none() {
                return Err(EventError::missing("interaction_id"));
            }
            match &customer {
                None => return Err(EventError::missing("customer")),
                Some(c) if c.id.is_none() && c.handles.is_empty() => {
                    return Err(EventError::invalid(
                        "customer",
                        "needs an id or at least one handle".to_owned(),
                    ));
                }
                Some(_) => {}
            }
        } else if interaction_id.is_some() && channel.is_none() {
            // The envelope is provenance on the other types (the interaction a link or a
            // profile was made during), and an interaction is only known with its channel.
            return Err(EventError::invalid(
                "channel",
                "is required with interaction_id: the interaction is named by both".to_owned(),
            ));
        }

        let body = self.body(event_type, &customer)?;
        let mut event = Event {
            event_id: Uuid::nil(),
            schema_version,
            source,
            source_event_id,
            occurred_at,
            recorded_at,
            customer: customer.map(std::sync::Arc::new),
            interaction_id,
            channel,
            attributes,
            body,
        };
        if check == TextCheck::EveryField {
            crate::text_rules::check_event_text(&event)?;
        }
        event.event_id = match (self.event_id.as_deref(), event.source_event_id.as_deref()) {
            (Some(id), _) => Uuid::parse_str(trimmed(id))
                .map_err(|e| EventError::invalid("event_id", format!("not a UUID ({e})")))?,
            (None, Some(source_event_id)) => {
                event_id_for_source(event.source.as_deref(), source_event_id)
            }
            (None, None) => {
                // The content id hashes the event as version 1 wrote it, so the same
                // content gets the same id whichever version of the build reads it.
                let without_recording = Event {
                    recorded_at: None,
                    schema_version: 1,
                    ..event.clone()
                };
                event_id_for_content(&to_canonical_json(&without_recording))
            }
        };
        Ok(event)
    }

    fn body(
        &mut self,
        event_type: EventType,
        customer: &Option<CustomerRef>,
    ) -> Result<Body, EventError> {
        let direction = |raw: &Option<Cow<'_, str>>| {
            parse_named(
                "direction",
                raw.as_deref(),
                Direction::parse,
                Direction::names,
            )
        };
        let agent = |raw: &mut Option<String>| agent_id(raw.take());
        Ok(match event_type {
            EventType::InteractionStarted => Body::InteractionStarted {
                direction: direction(&self.direction)?,
                subject: self.subject.take(),
                self_service: self.self_service,
            },
            EventType::Message => Body::Message {
                direction: direction(&self.direction)?,
                author: parse_named(
                    "author",
                    self.author.as_deref(),
                    Author::parse,
                    Author::names,
                )?,
                agent_id: self
                    .agent_id
                    .take()
                    .map(|id| agent_id(Some(id)))
                    .transpose()?,
                text: self.text.take(),
            },
            EventType::Queued => Body::Queued {
                queue: required_text("queue", self.queue.take())?,
                priority: match self.priority {
                    None => 0,
                    Some(p) => i32::try_from(p).map_err(|_| {
                        EventError::invalid("priority", format!("{p} is out of range"))
                    })?,
                },
                skills: words("skills", self.skills.take())?,
            },
            EventType::Offered => Body::Offered {
                agent_id: agent(&mut self.agent_id)?,
            },
            EventType::OfferDeclined => Body::OfferDeclined {
                agent_id: agent(&mut self.agent_id)?,
            },
            EventType::OfferTimedOut => Body::OfferTimedOut {
                agent_id: agent(&mut self.agent_id)?,
            },
            EventType::Assigned => Body::Assigned {
                agent_id: agent(&mut self.agent_id)?,
            },
            EventType::Transferred => {
                let to_queue = non_empty("to_queue", self.to_queue.take())?;
                let to_agent = non_empty("to_agent", self.to_agent.take())?;
                if to_queue.is_none() && to_agent.is_none() {
                    return Err(EventError::invalid(
                        "to_queue",
                        "a transfer needs to_queue or to_agent".to_owned(),
                    ));
                }
                Body::Transferred { to_queue, to_agent }
            }
            EventType::Hold => Body::Hold,
            EventType::Resumed => Body::Resumed,
            EventType::Abandoned => Body::Abandoned,
            EventType::Ended => Body::Ended {
                reason: self.reason.take(),
            },
            EventType::WrappedUp => Body::WrappedUp {
                agent_id: agent(&mut self.agent_id)?,
                resolved: self
                    .resolved
                    .ok_or_else(|| EventError::missing("resolved"))?,
                disposition: self.disposition.take(),
                topics: topics(self.topics.take())?,
            },
            EventType::Csat => {
                let score = self.score.ok_or_else(|| EventError::missing("score"))?;
                if !(1..=5).contains(&score) {
                    return Err(EventError::invalid(
                        "score",
                        format!("{score} is not between 1 and 5"),
                    ));
                }
                Body::Csat { score: score as u8 }
            }
            EventType::Note => Body::Note {
                agent_id: agent(&mut self.agent_id)?,
                text: required_text("text", self.text.take())?,
            },
            EventType::Tagged => {
                let topics = topics(self.topics.take())?;
                if topics.is_empty() {
                    return Err(EventError::missing("topics"));
                }
                Body::Tagged { topics }
            }
            EventType::IdentityLinked => {
                let Some(customer) = customer.as_ref().filter(|c| !c.handles.is_empty()) else {
                    return Err(EventError::invalid(
                        "customer.handles",
                        "identity_linked needs at least one handle (and customer.id, unless the handles alone name the customer)".to_owned(),
                    ));
                };
                // Without an id the handles name the customer ("these handles are one
                // person"); ingest resolves it, and the event keeps saying so.
                Body::IdentityLinked {
                    by_handles: customer.id.is_none() || self.by_handles == Some(true),
                }
            }
            EventType::CustomersMerged => {
                let from_customer = customer_id("from_customer", self.from_customer.take())?;
                let into_customer = customer_id("into_customer", self.into_customer.take())?;
                if from_customer == into_customer {
                    return Err(EventError::invalid(
                        "into_customer",
                        "a customer cannot be merged into itself".to_owned(),
                    ));
                }
                Body::CustomersMerged {
                    from_customer,
                    into_customer,
                }
            }
            EventType::CustomerProfile => {
                match customer {
                    None => return Err(EventError::missing("customer")),
                    Some(c) if c.id.is_none() && c.handles.is_empty() => {
                        return Err(EventError::invalid(
                            "customer",
                            "needs an id or at least one handle".to_owned(),
                        ));
                    }
                    Some(c) if !c.attributes.is_empty() => {
                        return Err(EventError::invalid(
                            "customer.attributes",
                            "a customer_profile gives the customer's attributes in `attributes`"
                                .to_owned(),
                        ));
                    }
                    Some(_) => {}
                }
                Body::CustomerProfile
            }
            EventType::ProactiveNotice => Body::ProactiveNotice {
                reason: required_text("reason", self.reason.take())?,
                text: self.text.take(),
            },
            EventType::AgentState => {
                if customer.is_some() {
                    return Err(EventError::invalid(
                        "customer",
                        "an agent_state event carries no customer".to_owned(),
                    ));
                }
                let capacity = self
                    .capacity
                    .take()
                    .map(|capacity| {
                        capacity
                            .into_iter()
                            .map(|(channel, Whole(n))| {
                                let field = format!("capacity.{channel}");
                                let channel = parse_named(
                                    &field,
                                    Some(&channel),
                                    Channel::parse,
                                    Channel::names,
                                )?;
                                let n = u32::try_from(n).map_err(|_| {
                                    EventError::invalid(&field, format!("{n} is not a count"))
                                })?;
                                Ok((channel, n))
                            })
                            .collect::<Result<BTreeMap<_, _>, EventError>>()
                    })
                    .transpose()?;
                Body::AgentState {
                    agent_id: agent(&mut self.agent_id)?,
                    state: parse_named(
                        "state",
                        self.state.as_deref(),
                        AgentStatus::parse,
                        AgentStatus::names,
                    )?,
                    skills: self
                        .skills
                        .take()
                        .map(|s| words("skills", Some(s)))
                        .transpose()?,
                    capacity,
                }
            }
        })
    }
}

/// The longest attribute key, in bytes.
const ATTRIBUTE_KEY_LIMIT: usize = 64;
/// The longest attribute value, in characters.
const ATTRIBUTE_VALUE_LIMIT: usize = 256;

/// Checks a customer's attributes: each key a name (`segment`, `cost_centre`,
/// `crm.tier`: lower-case ASCII letters, digits, `_`, `-` and `.`, starting with a letter,
/// at most 64 bytes) so that `?group_by=` can name it; each value at most 256 characters
/// (empty removes the key).
fn check_customer_attributes(
    field: &str,
    attributes: &BTreeMap<String, String>,
) -> Result<(), EventError> {
    for (key, value) in attributes {
        let valid_key = key.len() <= ATTRIBUTE_KEY_LIMIT
            && key.starts_with(|c: char| c.is_ascii_lowercase())
            && key.chars().all(|c| {
                c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '_' | '-' | '.')
            });
        if !valid_key {
            return Err(EventError::invalid(
                &format!("{field}.{key}"),
                format!(
                    "an attribute key is lower-case ASCII letters, digits, `_`, `-` and `.`, starting with a letter, at most {ATTRIBUTE_KEY_LIMIT} bytes"
                ),
            ));
        }
        if value.chars().count() > ATTRIBUTE_VALUE_LIMIT {
            return Err(EventError::invalid(
                &format!("{field}.{key}"),
                format!("an attribute value is at most {ATTRIBUTE_VALUE_LIMIT} characters"),
            ));
        }
    }
    Ok(())
}

fn validate_customer(raw: RawCustomer<'_>) -> Result<CustomerRef, EventError> {
    let id = match raw.id.as_deref().map(trimmed) {
        Some("") => {
            return Err(EventError::invalid(
                "customer.id",
                "must not be empty".to_owned(),
            ));
        }
        Some(id) if id.len() > MAX_CUSTOMER_ID_BYTES => return Err(too_long_id("customer.id")),
        id => id.map(CustomerId::from),
    };
    let handles = raw
        .handles
        .unwrap_or_default()
        .into_iter()
        .enumerate()
        .map(|(index, handle)| {
            normalise_handle(&handle.kind, &handle.value).map_err(|problem| {
                EventError::invalid(&format!("customer.handles[{index}]"), problem.to_string())
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let attributes = raw.attributes.unwrap_or_default();
    check_customer_attributes("customer.attributes", &attributes)?;
    Ok(CustomerRef {
        id,
        handles,
        attributes,
        number: crate::CustomerNumber::NONE,
    })
}

/// The body fields an event of each type may carry.
fn body_fields(event_type: EventType) -> &'static [&'static str] {
    match event_type {
        EventType::InteractionStarted => &["direction", "subject", "self_service"],
        EventType::Message => &["direction", "author", "agent_id", "text"],
        EventType::Queued => &["queue", "priority", "skills"],
        EventType::Offered
        | EventType::OfferDeclined
        | EventType::OfferTimedOut
        | EventType::Assigned => &["agent_id"],
        EventType::Transferred => &["to_queue", "to_agent"],
        EventType::Hold
        | EventType::Resumed
        | EventType::Abandoned
        | EventType::CustomerProfile => &[],
        EventType::IdentityLinked => &["by_handles"],
        EventType::Ended => &["reason"],
        EventType::WrappedUp => &["agent_id", "resolved", "disposition", "topics"],
        EventType::Csat => &["score"],
        EventType::Note => &["agent_id", "text"],
        EventType::Tagged => &["topics"],
        EventType::CustomersMerged => &["from_customer", "into_customer"],
        EventType::ProactiveNotice => &["reason", "text"],
        EventType::AgentState => &["agent_id", "state", "skills", "capacity"],
    }
}

/// The canonical JSON text of an event.
pub fn to_canonical_json(event: &Event) -> String {
    // Serializing our own types into a String cannot fail.
    serde_json::to_string(event).unwrap_or_default()
}

struct HandlesJson<'a>(&'a CustomerRef);

impl Serialize for HandlesJson<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let customer = self.0;
        let mut map = serializer.serialize_map(None)?;
        if let Some(id) = &customer.id {
            map.serialize_entry("id", id)?;
        }
        let handles: Vec<BTreeMap<&str, &str>> = customer
            .handles
            .iter()
            .map(|h| BTreeMap::from([("kind", h.kind.as_str()), ("value", h.value.as_str())]))
            .collect();
        map.serialize_entry("handles", &handles)?;
        if !customer.attributes.is_empty() {
            map.serialize_entry("attributes", &customer.attributes)?;
        }
        map.end()
    }
}

impl Serialize for Event {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(None)?;
        map.serialize_entry("event_id", &self.event_id.hyphenated().to_string())?;
        map.serialize_entry("schema_version", &self.schema_version)?;
        if let Some(source) = &self.source {
            map.serialize_entry("source", source)?;
        }
        if let Some(id) = &self.source_event_id {
            map.serialize_entry("source_event_id", id)?;
        }
        map.serialize_entry("occurred_at", &format_time(&self.occurred_at))?;
        if let Some(at) = &self.recorded_at {
            map.serialize_entry("recorded_at", &format_time(at))?;
        }
        if let Some(customer) = &self.customer {
            map.serialize_entry("customer", &HandlesJson(customer))?;
        }
        if let Some(id) = &self.interaction_id {
            map.serialize_entry("interaction_id", id)?;
        }
        if let Some(channel) = self.channel {
            map.serialize_entry("channel", channel.as_str())?;
        }
        map.serialize_entry("type", self.event_type().as_str())?;
        serialize_body(&self.body, &mut map)?;
        if !self.attributes.is_empty() {
            map.serialize_entry("attributes", &self.attributes)?;
        }
        map.end()
    }
}

fn serialize_body<M: SerializeMap>(body: &Body, map: &mut M) -> Result<(), M::Error> {
    fn opt<M: SerializeMap, T: Serialize + ?Sized>(
        map: &mut M,
        key: &str,
        value: Option<&T>,
    ) -> Result<(), M::Error> {
        match value {
            Some(value) => map.serialize_entry(key, value),
            None => Ok(()),
        }
    }
    match body {
        Body::InteractionStarted {
            direction,
            subject,
            self_service,
        } => {
            map.serialize_entry("direction", direction.as_str())?;
            opt(map, "subject", subject.as_ref())?;
            opt(map, "self_service", self_service.as_ref())?;
        }
        Body::Message {
            direction,
            author,
            agent_id,
            text,
        } => {
            map.serialize_entry("direction", direction.as_str())?;
            map.serialize_entry("author", author.as_str())?;
            opt(map, "agent_id", agent_id.as_ref())?;
            opt(map, "text", text.as_ref())?;
        }
        Body::Queued {
            queue,
            priority,
            skills,
        } => {
            map.serialize_entry("queue", queue)?;
            map.serialize_entry("priority", priority)?;
            map.serialize_entry("skills", skills)?;
        }
        Body::Offered { agent_id }
        | Body::OfferDeclined { agent_id }
        | Body::OfferTimedOut { agent_id }
        | Body::Assigned { agent_id } => map.serialize_entry("agent_id", agent_id)?,
        Body::Transferred { to_queue, to_agent } => {
            opt(map, "to_queue", to_queue.as_ref())?;
            opt(map, "to_agent", to_agent.as_ref())?;
        }
        Body::Hold | Body::Resumed | Body::Abandoned | Body::CustomerProfile => {}
        Body::IdentityLinked { by_handles } => {
            if *by_handles {
                map.serialize_entry("by_handles", &true)?;
            }
        }
        Body::Ended { reason } => opt(map, "reason", reason.as_ref())?,
        Body::WrappedUp {
            agent_id,
            resolved,
            disposition,
            topics,
        } => {
            map.serialize_entry("agent_id", agent_id)?;
            map.serialize_entry("resolved", resolved)?;
            opt(map, "disposition", disposition.as_ref())?;
            map.serialize_entry("topics", topics)?;
        }
        Body::Csat { score } => map.serialize_entry("score", score)?,
        Body::Note { agent_id, text } => {
            map.serialize_entry("agent_id", agent_id)?;
            map.serialize_entry("text", text)?;
        }
        Body::Tagged { topics } => map.serialize_entry("topics", topics)?,
        Body::CustomersMerged {
            from_customer,
            into_customer,
        } => {
            map.serialize_entry("from_customer", from_customer)?;
            map.serialize_entry("into_customer", into_customer)?;
        }
        Body::ProactiveNotice { reason, text } => {
            map.serialize_entry("reason", reason)?;
            opt(map, "text", text.as_ref())?;
        }
        Body::AgentState {
            agent_id,
            state,
            skills,
            capacity,
        } => {
            map.serialize_entry("agent_id", agent_id)?;
            map.serialize_entry("state", state.as_str())?;
            opt(map, "skills", skills.as_ref())?;
            if let Some(capacity) = capacity {
                let by_name: BTreeMap<&str, u32> =
                    capacity.iter().map(|(c, n)| (c.as_str(), *n)).collect();
                map.serialize_entry("capacity", &by_name)?;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod fast_path_tests {
    use super::*;

    /// Both paths, as (events or the refused field and message).
    fn both(text: &str) -> [Result<Vec<Event>, String>; 2] {
        let show = |result: Result<Vec<Event>, EventError>| result.map_err(|e| e.to_string());
        [
            show(parse_batch(text.as_bytes())),
            show(parse_batch_general(text.as_bytes())),
        ]
    }

    #[test]
    fn a_thread_keeps_a_tape_of_a_body_of_events_and_lets_a_huge_one_go() {
        let event = r#"{"occurred_at":"2026-03-01T09:00:05Z","customer":{"id":"c1"},"interaction_id":"i1","channel":"chat","type":"tagged","topics":["billing"]}"#;
        let body = format!("[{}]", vec![event; 1_000].join(","));
        let kept = || SIMD_PARSER.with_borrow(|parser| parser.tape.0.capacity());
        assert_eq!(parse_batch(body.as_bytes()).unwrap().len(), 1_000);
        let body_nodes = kept();
        assert!(
            (1_000..=KEPT_TAPE_NODES).contains(&body_nodes),
            "a body of 1,000 events keeps its tape of {body_nodes} nodes"
        );
        // Just under simd-json's bound, all structure: about 450,000 nodes.
        let tiny = format!("[{}0]", "0,".repeat(450_000));
        assert!(tiny.len() <= SIMD_INPUT);
        assert!(parse_batch(tiny.as_bytes()).is_err());
        assert!(kept() < 1_000, "a huge tape is let go");
        assert_eq!(parse_batch(body.as_bytes()).unwrap().len(), 1_000);
        assert_eq!(both(&body)[0], both(&body)[1]);
    }

    #[test]
    fn the_fast_path_gives_what_the_general_path_gives() {
        let event = r#"{"occurred_at":"2026-03-01T09:00:05Z","customer":{"id":"c1"},"interaction_id":"i1","channel":"chat","type":"tagged","topics":[" Refund  Request","BILLING"]"#;
        let texts = [
            format!("[{event}}}]"),
            format!("{event}}}"),
            format!(" \n[{event},\"schema_version\":2}}, {event},\"schema_version\":1}}]"),
            format!("[{event},\"schema_version\":1}}]"),
            format!("[{event},\"schema_version\":3}}]"),
            format!("[{event},\"schema_version\":0}}]"),
            format!("[{event},\"colour\":\"red\"}}]"),
            format!("[{event},\"type\":\"hold\"}}]"),
            format!("[{event}}}, {{\"type\":\"hold\"}}]"),
            format!("[{event}}}] trailing"),
            "[]".to_owned(),
            "42".to_owned(),
            "[{\"type\":\"tagged\",\"occurred_at\":\"not a time\"}]".to_owned(),
        ];
        for text in &texts {
            let [fast, general] = both(text);
            assert_eq!(fast, general, "{text}");
        }
        let [single, _] = both(&texts[0]);
        let Body::Tagged { topics } = &single.unwrap()[0].body else {
            panic!("a tagged event")
        };
        assert_eq!(topics, &["refund-request", "billing"]);
        assert_eq!(
            parse_event(format!("{event}}}").as_bytes()).map_err(|e| e.to_string()),
            parse_event_general(format!("{event}}}").as_bytes()).map_err(|e| e.to_string())
        );
    }

    #[test]
    fn text_on_one_line_still_has_its_control_characters_refused() {
        // On one line, without JSON whitespace: the raw text's scan decides alone whether
        // the fields are checked. Escaped, raw DEL and a raw C1 character are all refused,
        // by the fast path and the general path alike.
        let queued = |queue: &str| {
            format!(
                r#"[{{"occurred_at":"2026-03-02T09:00:00Z","customer":{{"id":"k"}},"interaction_id":"c0","channel":"ivr","type":"queued","queue":"{queue}","skills":[]}}]"#
            )
        };
        for queue in [
            "a\\u0000b",
            "a\\u007fb",
            "a\u{7f}b",
            "a\u{85}b",
            "a\\u0085b",
        ] {
            let body = queued(queue);
            assert_eq!(
                TextCheck::of_raw_json(body.as_bytes()),
                TextCheck::EveryField
            );
            let [fast, general] = both(&body);
            let refused = fast.expect_err(&body);
            assert!(refused.contains("[0].queue"), "{refused}");
            assert_eq!(Err(refused), general);
        }
        // A long clean body (more than one 64-byte chunk) is let through unchecked and
        // read as the general path reads it; a control character in its last chunk is not.
        let clean = queued("billing-and-refunds-for-customers-who-wrote-in-many-times");
        assert_eq!(
            TextCheck::of_raw_json(clean.as_bytes()),
            TextCheck::NotNeeded
        );
        let [fast, general] = both(&clean);
        assert!(fast.is_ok());
        assert_eq!(fast, general);
        let late = clean.replace("\"skills\":[]", "\"skills\":[\"x\u{7f}\"]");
        assert_eq!(
            TextCheck::of_raw_json(late.as_bytes()),
            TextCheck::EveryField
        );
        assert!(
            both(&late)[0]
                .as_ref()
                .is_err_and(|e| e.contains("skills[0]"))
        );
    }

    #[test]
    fn blank_is_what_trims_to_nothing() {
        for text in [
            "",
            " ",
            "\t\n\u{b}\u{c}\r",
            "\u{85}",
            "\u{a0} \u{3000}",
            "x",
            " x",
            "\u{1f}",
            "é",
            "\u{7f}",
            "\u{2028}y",
        ] {
            assert_eq!(is_blank(text), text.trim().is_empty(), "{text:?}");
        }
    }

    #[test]
    fn a_canonical_time_is_read_as_chrono_reads_it() {
        let chrono_reads = |text: &str| {
            DateTime::parse_from_rfc3339(text)
                .map(|t| t.with_timezone(&Utc))
                .ok()
        };
        for text in [
            "2026-03-01T08:00:00Z",
            "2026-03-01T23:59:59.5Z",
            "2024-02-29T00:00:00.123Z",
            "2026-12-31T12:34:56.123456Z",
            "2026-12-31T12:34:56.123456789Z",
            "0001-01-01T00:00:00Z",
            "9999-12-31T23:59:59.999999999Z",
        ] {
            let time = canonical_time(text);
            assert!(time.is_some(), "{text}");
            assert_eq!(time, chrono_reads(text), "{text}");
            assert_eq!(format_time(&time.unwrap()), text.replace(".5Z", ".500Z"));
        }
        // Anything else is left to chrono: other forms it reads, and what it refuses.
        for text in [
            "2026-03-01T08:00:00+02:00",
            "2026-03-01t08:00:00z",
            "2026-03-01 08:00:00Z",
            "2026-03-01T08:00:60Z",
            "2026-03-01T08:00:00.1234567891Z",
            "2026-03-01T08:00:00.Z",
            "2026-02-30T08:00:00Z",
            "2026-13-01T08:00:00Z",
            "2026-03-01T24:00:00Z",
            "2026-03-01T08:60:00Z",
            "2026-03-01T08:00:0xZ",
            "+2026-03-01T08:00:00Z",
            "2026-03-01T08:00:00",
        ] {
            assert_eq!(canonical_time(text), None, "{text}");
        }
        assert_eq!(
            parse_time("t", "2026-03-01T08:00:00+02:00").ok(),
            chrono_reads("2026-03-01T06:00:00Z")
        );
        assert!(parse_time("t", "2026-02-30T08:00:00Z").is_err());
    }
}
