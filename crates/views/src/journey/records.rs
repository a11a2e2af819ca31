//! The journey view's stored records and their keys.
//!
//! Every key but one starts with a table tag and the customer id, so everything a
//! customer's events write lies under that customer: the fold of one partition never
//! reads or writes what another partition's fold touches, and the state cannot depend on
//! how partitions interleave. The exception, the interaction index `ix`, is a set of
//! `(interaction, customer)` pairs with empty meaning, which any order of inserts builds
//! alike.
//!
//! | tag | key parts | value |
//! |---|---|---|
//! | `cu` | customer | [`CustomerRecord`]: how many journeys the customer has |
//! | `js` | customer, journey seq | [`JourneySummary`]: the journey's small, hot summary |
//! | `jf` | customer, journey seq | [`JourneyFacts`]: what the journeys report needs, nothing else |
//! | `jp` | customer, journey seq | [`JourneyPath`]: the journey's interactions in start order |
//! | `ii` | customer, interaction | [`InteractionRecord`] |
//! | `ix` | interaction, customer | the customer id: finds an interaction by its id alone |
//! | `tl` | customer, journey seq, occurred_at, partition, offset | the event, protobuf-encoded |
//! | `nt` | customer, journey seq, occurred_at, partition, offset | [`NoteRecord`] |
//!
//! The timeline holds the events themselves, in their protobuf form (the log's own
//! payload, which maps to the canonical JSON field for field and round-trips exactly): 2
//! to 3 times smaller than the JSON text and cheaper to write. A query renders a timeline
//! line from its event, and finds an interaction's events in its journey's timeline (an
//! interaction's events all belong to its one journey), in log order by the position the
//! key ends with. One key per event, not a timeline line and a copy of the event: new keys
//! are what a sled insert costs most (each can split a tree node and copy its parent), and
//! the second key halved the durable projection's rate (`omnilog bench`: 21,000 against
//! 41,000 to 47,000 journey events/s without it).
//!
//! Keys are laid out exactly as [`crate::state::KeyBuilder`] lays them out (a tag, then each part after a
//! `0x00`, numbers big-endian), but built in one allocation of the right size, because
//! every event builds several.
//!
//! Times are stored as seconds and nanoseconds (`occurred_at` keys as a signed number
//! then a number, so keys sort by time, negative years included). Channels and event types
//! are stored as their declaration index in the events crate (new values are appended
//! there, so stored codes keep their meaning).

use chrono::{DateTime, Utc};
use omnilog_events::{Channel, format_time};
use serde::{Deserialize, Serialize};

use crate::ViewError;

/// A point in event time, stored compactly and ordered as time.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub(crate) struct Time {
    pub secs: i64,
    pub nanos: u32,
}

impl Time {
    pub fn of(at: &DateTime<Utc>) -> Self {
        Time {
            secs: at.timestamp(),
            nanos: at.timestamp_subsec_nanos(),
        }
    }

    /// Nanoseconds since the epoch; `i128` so no event time can overflow it.
    pub fn total_nanos(self) -> i128 {
        i128::from(self.secs) * 1_000_000_000 + i128::from(self.nanos)
    }

    /// The RFC 3339 text of the contract.
    pub fn render(self) -> Result<String, ViewError> {
        DateTime::<Utc>::from_timestamp(self.secs, self.nanos)
            .map(|at| format_time(&at))
            .ok_or_else(|| ViewError::Corrupt {
                key: "journey time".to_owned(),
                reason: format!(
                    "{}s {}ns is not a representable time",
                    self.secs, self.nanos
                ),
            })
    }
}

/// An event's place in the order the contract gives timelines: `occurred_at`, then log
/// position. Also the tie-breaker wherever two events compete (last agent, first
/// resolution), so that every choice is a deterministic min or max.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub(crate) struct Stamp {
    pub at: Time,
    pub partition: u32,
    pub offset: u64,
}

/// The journey fields a status can take.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JourneyStatus {
    Open,
    Resolved,
}

/// Where an interaction stands. Follows the events in log order, except that `ended`
/// and `wrapped_up` are final: a late `queued` cannot bring a finished call back.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum InteractionStatus {
    /// Started, not (yet) in a queue or with an agent: self-service, a bot, a notice.
    Active,
    /// Waiting in a queue (an offer to an agent is still waiting).
    Queued,
    /// With an agent.
    Assigned,
    /// With an agent, on hold.
    OnHold,
    /// Over (hung up, closed, or abandoned by the customer).
    Ended,
    /// The agent's after-contact work is done.
    WrappedUp,
}

/// How an interaction turned out.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Wrapped up with `resolved: true`.
    Resolved,
    /// Wrapped up with `resolved: false`.
    Unresolved,
    /// The customer left while queued.
    Abandoned,
    /// A self-service session that ended without a queue or an agent.
    Contained,
}

/// Per customer: the number of journeys, so the latest is `journeys - 1`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct CustomerRecord {
    pub journeys: u32,
}

/// A journey's summary: read and written by every event of the journey, so it holds
/// only bounded things (the interaction list lives in [`JourneyPath`], the timeline and
/// notes in their own keys).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct JourneySummary {
    /// uuid v5 of (customer, first interaction).
    pub id: [u8; 16],
    /// The earliest start among its interactions.
    pub opened: Time,
    pub status: JourneyStatus,
    /// The latest resolution, while resolved.
    pub resolved_at: Option<Time>,
    /// The earliest resolving wrap-up since the last reopening, and its interaction.
    pub resolved_by: Option<(Stamp, FirstEvent)>,
    pub reopened_count: u32,
    /// The latest `occurred_at` of any of its events: the join window counts from here.
    pub last_activity: Time,
    /// The latest event in contact with the customer, and its channel code.
    pub last_contact: Option<(Stamp, u8)>,
    /// The latest agent to handle it.
    pub last_agent: Option<(Stamp, String)>,
    /// The earliest agent-handled event and its interaction: FCR's "first agent-handled
    /// interaction".
    pub first_agent: Option<(Stamp, FirstEvent)>,
    /// Sorted, distinct.
    pub topics: Vec<String>,
    /// Distinct channel codes, in order of first use.
    pub channels: Vec<u8>,
    pub channel_switches: u32,
    /// Channel codes of consecutive interactions, repeats collapsed, at most
    /// [`PATH_LIMIT`] of them.
    pub path: Vec<u8>,
    pub path_truncated: bool,
    pub interactions: u32,
    pub events: u64,
}

/// An interaction named by the log position (partition, offset) of its first event: unique,
/// and cheaper to keep in the hot summary than its id.
pub(crate) type FirstEvent = (u32, u64);

/// The longest channel path a journey keeps for the report's `top_paths`; a longer one
/// ends in `>…`. Bounds the summary whatever a journey's length.
pub(crate) const PATH_LIMIT: usize = 12;

impl JourneySummary {
    /// FCR: resolved, never reopened, and resolved on its first agent-handled interaction.
    pub fn first_contact_resolution(&self) -> bool {
        self.status == JourneyStatus::Resolved
            && self.reopened_count == 0
            && match (&self.resolved_by, &self.first_agent) {
                (Some((_, resolving)), Some((_, first))) => resolving == first,
                _ => false,
            }
    }

    pub fn facts(&self) -> JourneyFacts {
        JourneyFacts {
            opened: self.opened,
            resolved: self.status == JourneyStatus::Resolved,
            reopened: self.reopened_count > 0,
            first_contact_resolution: self.first_contact_resolution(),
            channel_count: u8::try_from(self.channels.len()).unwrap_or(u8::MAX),
            path: self.path.clone(),
            path_truncated: self.path_truncated,
        }
    }
}

/// What the journeys report reads of a journey: a few bytes under their own prefix, so
/// the report's scan over every journey reads nothing else. Written only when one of
/// these facts changes, which is rare next to the events that change a summary.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct JourneyFacts {
    pub opened: Time,
    pub resolved: bool,
    pub reopened: bool,
    pub first_contact_resolution: bool,
    pub channel_count: u8,
    pub path: Vec<u8>,
    pub path_truncated: bool,
}

/// One interaction of a journey, in the order of the journey's interactions.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct PathEntry {
    /// The interaction's start, then the position of its first event: the order key.
    pub started: Time,
    pub partition: u32,
    pub offset: u64,
    pub interaction: String,
    pub channel: u8,
}

/// A journey's interactions, ordered by start: written only when an interaction joins or
/// its start moves earlier, so its size does not weigh on ordinary events.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct JourneyPath {
    pub entries: Vec<PathEntry>,
}

/// An interaction, per customer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct InteractionRecord {
    pub journey: u32,
    pub channel: u8,
    pub outbound: bool,
    pub self_service: bool,
    pub subject: Option<String>,
    /// The earliest `occurred_at` of its events.
    pub started: Time,
    /// The position of the first event folded: with `started`, its order in the journey.
    pub first_partition: u32,
    pub first_offset: u64,
    pub ended: Option<Time>,
    pub status: InteractionStatus,
    /// The latest queue it was put in.
    pub queue: Option<String>,
    /// Agents that handled it, in order of first handling.
    pub agents: Vec<String>,
    pub messages: u32,
    pub was_queued: bool,
    pub abandoned: bool,
    /// Ended with reason `contained` (what IVR and chatbot sessions report).
    pub contained: bool,
    /// The latest wrap-up's `resolved`, in log order.
    pub wrapped: Option<bool>,
    pub csat: Option<u8>,
}

impl InteractionRecord {
    pub fn outcome(&self) -> Option<Outcome> {
        match self.wrapped {
            Some(true) => Some(Outcome::Resolved),
            Some(false) => Some(Outcome::Unresolved),
            None if self.abandoned => Some(Outcome::Abandoned),
            None if self.ended.is_some()
                && !self.was_queued
                && self.agents.is_empty()
                && (self.self_service || self.contained) =>
            {
                Some(Outcome::Contained)
            }
            None => None,
        }
    }
}

/// An agent's note, kept whole for the journey's context.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct NoteRecord {
    pub at: Time,
    pub agent: String,
    pub text: String,
}

pub(crate) fn channel_code(channel: Channel) -> u8 {
    channel as u8
}

pub(crate) fn channel_name(code: u8) -> Result<&'static str, ViewError> {
    Channel::ALL
        .get(usize::from(code))
        .map(|c| c.as_str())
        .ok_or_else(|| ViewError::Corrupt {
            key: "journey channel".to_owned(),
            reason: format!("unknown channel code {code}"),
        })
}

pub(crate) mod keys {
    //! The key builders of the tables above.

    use super::Stamp;

    /// A key being built: [`crate::state::KeyBuilder`]'s layout, in one allocation.
    struct Key(Vec<u8>);

    impl Key {
        fn new(tag: &str, capacity: usize) -> Self {
            let mut bytes = Vec::with_capacity(tag.len() + capacity);
            bytes.extend_from_slice(tag.as_bytes());
            Key(bytes)
        }

        fn text(mut self, part: &str) -> Self {
            self.0.push(0);
            self.0.extend_from_slice(part.as_bytes());
            self
        }

        fn number(mut self, part: u64) -> Self {
            self.0.push(0);
            self.0.extend_from_slice(&part.to_be_bytes());
            self
        }

        fn signed(self, part: i64) -> Self {
            self.number((part as u64) ^ (1 << 63))
        }

        fn prefix(mut self) -> Vec<u8> {
            self.0.push(0);
            self.0
        }
    }

    pub fn customer(customer: &str) -> Vec<u8> {
        Key::new("cu", 1 + customer.len()).text(customer).0
    }

    fn per_journey(tag: &str, customer: &str, seq: u32) -> Key {
        Key::new(tag, 10 + customer.len())
            .text(customer)
            .number(u64::from(seq))
    }

    pub fn summary(customer: &str, seq: u32) -> Vec<u8> {
        per_journey("js", customer, seq).0
    }

    pub fn facts(customer: &str, seq: u32) -> Vec<u8> {
        per_journey("jf", customer, seq).0
    }

    /// Every journey's facts: the report's scan.
    pub fn all_facts() -> Vec<u8> {
        Key::new("jf", 1).prefix()
    }

    pub fn path(customer: &str, seq: u32) -> Vec<u8> {
        per_journey("jp", customer, seq).0
    }

    pub fn interaction(customer: &str, interaction: &str) -> Vec<u8> {
        Key::new("ii", 2 + customer.len() + interaction.len())
            .text(customer)
            .text(interaction)
            .0
    }

    pub fn index(interaction: &str, customer: &str) -> Vec<u8> {
        Key::new("ix", 2 + customer.len() + interaction.len())
            .text(interaction)
            .text(customer)
            .0
    }

    pub fn index_prefix(interaction: &str) -> Vec<u8> {
        Key::new("ix", 2 + interaction.len())
            .text(interaction)
            .prefix()
    }

    fn ordered(tag: &str, customer: &str, seq: u32, stamp: &Stamp) -> Vec<u8> {
        Key::new(tag, 46 + customer.len())
            .text(customer)
            .number(u64::from(seq))
            .signed(stamp.at.secs)
            .number(u64::from(stamp.at.nanos))
            .number(u64::from(stamp.partition))
            .number(stamp.offset)
            .0
    }

    pub fn timeline(customer: &str, seq: u32, stamp: &Stamp) -> Vec<u8> {
        ordered("tl", customer, seq, stamp)
    }

    pub fn timeline_prefix(customer: &str, seq: u32) -> Vec<u8> {
        per_journey("tl", customer, seq).prefix()
    }

    pub fn note(customer: &str, seq: u32, stamp: &Stamp) -> Vec<u8> {
        ordered("nt", customer, seq, stamp)
    }

    pub fn notes_prefix(customer: &str, seq: u32) -> Vec<u8> {
        per_journey("nt", customer, seq).prefix()
    }

    /// The log position (partition, offset) a timeline or note key ends with.
    pub fn position_of(key: &[u8]) -> Option<(u32, u64)> {
        let offset = key.len().checked_sub(8)?;
        let partition = offset.checked_sub(9)?;
        Some((
            u32::try_from(u64::from_be_bytes(
                key[partition..partition + 8].try_into().ok()?,
            ))
            .ok()?,
            u64::from_be_bytes(key[offset..].try_into().ok()?),
        ))
    }

    #[cfg(test)]
    mod tests {
        use super::super::Time;
        use super::*;
        use crate::state::KeyBuilder;

        #[test]
        fn keys_have_the_layout_of_the_key_builder() {
            let stamp = Stamp {
                at: Time { secs: -5, nanos: 7 },
                partition: 3,
                offset: 9,
            };
            assert_eq!(
                timeline("c", 2, &stamp),
                KeyBuilder::table("tl")
                    .text("c")
                    .number(2)
                    .signed(-5)
                    .number(7)
                    .number(3)
                    .number(9)
                    .build()
            );
            assert_eq!(position_of(&timeline("c", 2, &stamp)), Some((3, 9)));
            assert_eq!(customer("c"), KeyBuilder::table("cu").text("c").build());
            assert_eq!(all_facts(), KeyBuilder::table("jf").prefix());
        }
    }
}
