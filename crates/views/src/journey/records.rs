//! The journey view's records.
//!
//! The unit of state is the customer: one [`CustomerRecord`] holds every journey of a
//! customer (its summary, its interactions in start order, its notes) and every
//! interaction (its record and the log offsets of its events). All of a customer's events
//! are in one partition, in order, so the fold of one partition never touches what
//! another partition's fold touches, and the state cannot depend on how partitions
//! interleave. Two derived tables are written blind (never read by the fold): each
//! journey's [`JourneyFacts`], which the journeys report scans, and an index from an
//! interaction id to its customers.
//!
//! | tag | key | record |
//! |---|---|---|
//! | `c` | customer | [`CustomerRecord`] |
//! | `f` | customer, journey seq | [`JourneyFacts`]: what the journeys report needs, nothing else |
//! | `x` | interaction, customer | nothing: finds an interaction by its id alone |
//!
//! On Kafka a journey keeps its timeline as the lines the answer shows (time, type, channel,
//! interaction, the short human summary), rendered when the event is folded, so a journey
//! query reads one record and nothing else: each range of a customer's scattered events
//! would be a seek and a fetch from the broker (docs/benchmarks-journal.md, "2026-12-05,
//! midday"). On the embedded log, which reads an event by position locally, a line is its
//! event's position and interaction only, and a query reads the events and makes the lines
//! from them ([`TimelineForm`]). Either way the lines hold the log offsets of an
//! interaction's events: `GET /v1/interactions/{id}` reads its events from the log, the
//! only copy of them.
//!
//! Times are stored as seconds and nanoseconds. Channels are stored as their declaration
//! index in the events crate (new values are appended there, so stored codes keep their
//! meaning).

use std::borrow::Borrow;
use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use omnilog_events::{Channel, format_time};
use serde::{Deserialize, Serialize};

use super::report::SelfServiceCounts;
use crate::ViewError;
use crate::state::{Id, IdKey, StaleMark};

/// A point in event time, stored compactly and ordered as time.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub(crate) struct Time {
    pub secs: i64,
    pub nanos: u32,
}

impl Time {
    pub fn of(at: &DateTime<Utc>) -> Self {
        Time {
            secs: crate::epoch::seconds(at),
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

/// A customer's journeys and interactions: the journey view's unit of state.
///
/// Stored as a struct of its partition, its journeys, its interactions as a map by id (in
/// the ids' order) and its interaction ids by number ([`StoredCustomerRecord`]): the bytes
/// of the layout before the interactions were kept by number.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct CustomerRecord {
    /// The partition of the customer's events (every event of a customer is in one).
    pub partition: u32,
    /// By sequence: the latest is the last.
    pub journeys: Vec<JourneyRecord>,
    pub interactions: Interactions,
}

/// A customer's interactions, by number (the order they began, what a timeline line names
/// its interaction by), found by id.
///
/// Kept in a map by id, every event's lookup walked the map's node comparing ids, and
/// its keys and records lay apart in memory; a customer's events nearly all belong to its
/// latest interaction, which is the last by number: looked up from the last, most events
/// compare one id. The others are found by a binary search of the numbers in the ids'
/// order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Interactions {
    /// By number.
    ids: Vec<Id>,
    /// By number: `records[n].number == n`.
    records: Vec<InteractionRecord>,
    /// The numbers, in the order of their ids.
    by_id: Vec<u32>,
}

/// The latest interactions a lookup compares one by one before it searches by id.
const LATEST_LOOKED_AT: usize = 4;

impl Interactions {
    /// How many there are: the next interaction's number.
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    /// The id of interaction `number`.
    pub fn id(&self, number: usize) -> Option<&Id> {
        self.ids.get(number)
    }

    /// The number of the interaction `id`.
    pub fn number_of(&self, id: &str) -> Option<usize> {
        let wanted = IdKey::new(id);
        let latest = self.ids.len().saturating_sub(LATEST_LOOKED_AT);
        for (number, known) in self.ids.iter().enumerate().skip(latest).rev() {
            if Borrow::<IdKey>::borrow(known) == wanted {
                return Some(number);
            }
        }
        if latest == 0 {
            return None;
        }
        self.by_id
            .binary_search_by(|&number| {
                Borrow::<IdKey>::borrow(&self.ids[number as usize]).cmp(wanted)
            })
            .ok()
            .map(|at| self.by_id[at] as usize)
    }

    pub fn get(&self, id: &str) -> Option<&InteractionRecord> {
        self.number_of(id).map(|number| &self.records[number])
    }

    /// The record of interaction `number` (from [`Interactions::number_of`]).
    pub fn record_mut(&mut self, number: usize) -> &mut InteractionRecord {
        &mut self.records[number]
    }

    /// Adds an interaction the customer did not have, as the next number (which `record`
    /// holds).
    pub fn push(&mut self, id: Id, record: InteractionRecord) -> &mut InteractionRecord {
        let number = self.ids.len();
        debug_assert_eq!(record.number as usize, number);
        let at = self
            .by_id
            .partition_point(|&known| self.ids[known as usize] < id);
        self.by_id
            .insert(at, u32::try_from(number).unwrap_or(u32::MAX));
        self.ids.push(id);
        self.records.push(record);
        let last = self.records.len() - 1;
        &mut self.records[last]
    }
}

/// How a [`CustomerRecord`] is stored.
#[derive(Serialize)]
#[serde(rename = "CustomerRecord")]
struct StoredCustomerRecordOut<'a> {
    partition: u32,
    journeys: &'a [JourneyRecord],
    interactions: InteractionsById<'a>,
    ids: &'a [Id],
}

/// A customer's interactions as a map by id, in the ids' order.
struct InteractionsById<'a>(&'a Interactions);

impl Serialize for InteractionsById<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let interactions = self.0;
        serializer.collect_map(interactions.by_id.iter().map(|&number| {
            let number = number as usize;
            (&interactions.ids[number], &interactions.records[number])
        }))
    }
}

/// How a [`CustomerRecord`] is stored, read back.
#[derive(Deserialize)]
#[serde(rename = "CustomerRecord")]
struct StoredCustomerRecord {
    partition: u32,
    journeys: Vec<JourneyRecord>,
    interactions: BTreeMap<Id, InteractionRecord>,
    ids: Vec<Id>,
}

impl Serialize for CustomerRecord {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        StoredCustomerRecordOut {
            partition: self.partition,
            journeys: &self.journeys,
            interactions: InteractionsById(&self.interactions),
            ids: &self.interactions.ids,
        }
        .serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for CustomerRecord {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        let stored = StoredCustomerRecord::deserialize(deserializer)?;
        let count = stored.ids.len();
        if stored.interactions.len() != count {
            return Err(D::Error::custom(format!(
                "a customer record of {count} interaction ids holds {} interactions",
                stored.interactions.len()
            )));
        }
        let mut records: Vec<Option<InteractionRecord>> = vec![None; count];
        let mut by_id = Vec::with_capacity(count);
        // The map is read in the ids' order: its numbers are `by_id`.
        for (id, record) in stored.interactions {
            let number = record.number as usize;
            match (stored.ids.get(number), records.get_mut(number)) {
                (Some(named), Some(slot @ None)) if *named == id => {
                    by_id.push(record.number);
                    *slot = Some(record);
                }
                _ => {
                    return Err(D::Error::custom(format!(
                        "the customer record's interaction {id} has number {number}, which names another"
                    )));
                }
            }
        }
        Ok(CustomerRecord {
            partition: stored.partition,
            journeys: stored.journeys,
            interactions: Interactions {
                ids: stored.ids,
                records: records.into_iter().flatten().collect(),
                by_id,
            },
        })
    }
}

/// One journey of a customer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct JourneyRecord {
    pub summary: JourneySummary,
    /// Its interactions, in start order.
    pub path: Vec<PathEntry>,
    /// Its agents' notes, kept whole for the context, by time then log position.
    pub notes: Vec<(Stamp, NoteRecord)>,
    /// Its events as timeline lines: by time then log position ([`TimelineForm::Lines`]),
    /// or in log order ([`TimelineForm::Positions`]).
    pub timeline: Timeline,
    /// Its report facts changed since they were last put in the facts table: not stored.
    #[serde(skip)]
    pub facts_stale: StaleMark,
}

/// Room a timeline makes for the line it appends, about what a line takes: a head (at most
/// 52 bytes) and a summary, whose texts are cut to 80 characters (a longer line still fits:
/// the buffer grows as it needs).
const LINE_ROOM: usize = 256;

/// How a view keeps its journeys' timelines ([`crate::journey::JourneyConfig::timelines_from_log`]
/// chooses): both answer alike, and each is a layout of its own.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) enum TimelineForm {
    /// Each line whole (time, position, interaction, channel, type, summary), in timeline
    /// order: a query reads the record and nothing else (Kafka's, where reading an event
    /// by position is a fetch from a broker).
    #[default]
    Lines,
    /// Each line as its event's position and interaction only, in log order: a query reads
    /// the journey's events from the log and orders them by time (the embedded log's,
    /// which reads an event by position locally). What a replay folds a line into is then
    /// two short varints (four for a late line); lines kept whole without their summaries
    /// (layout 8) cost a 1M
    /// replay about 5 % more CPU (docs/benchmarks-journal.md, "2026-12-07, midday").
    Positions,
}

/// A line of a [`TimelineForm::Positions`] timeline.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Position {
    /// Its event's offset in its customer's partition.
    pub offset: u64,
    /// Its interaction's number ([`Interactions::id`]).
    pub interaction: u32,
    /// For a line stamped before a line appended before it, its time. The lines that are
    /// not late are in timeline order (each at or after every line before it); a late one
    /// goes before some, and keeps its time so that a query finds its place without
    /// reading its event.
    pub late: Option<Time>,
}

/// Room a [`TimelineForm::Positions`] timeline makes when it is full: a line takes two to
/// six bytes, a late one up to about twenty more.
const POSITIONS_ROOM: usize = 64;

/// A journey's timeline: its lines, each encoded (postcard) when its event is folded, one
/// after the other in timeline order, in one buffer; or, in [`TimelineForm::Positions`],
/// its events' positions in log order ([`Timeline::add_position`]).
///
/// Kept as a `Vec<Line>` (a string each), the timeline was most of a customer record:
/// every checkpoint that found the record changed encoded each of its lines again (the
/// customer records' encoding was 7.6 % of the samples of `perf record -F 49 --call-graph
/// dwarf,16384 omnilog replay` of 10M events), a
/// reload decoded each into a string of its own, and letting the record go freed each. As
/// one buffer, a checkpoint and a reload copy it, and it is one allocation. A query
/// decodes the lines it shows (or, of positions, the lines that can be among them).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Timeline {
    /// Of whole lines, the stamp of the last line: a line stamped at or after it is
    /// appended. Of positions, the last line's position and the latest time of any line.
    last: Option<Stamp>,
    #[serde(with = "serde_bytes")]
    encoded: Vec<u8>,
}

impl Timeline {
    /// Puts `line` in its place: after every line stamped at or before it (nearly always
    /// the end; a late event's line is inserted).
    #[cfg(test)]
    pub fn add(&mut self, line: &Line) -> Result<(), ViewError> {
        self.add_with(&line.head(), |out| {
            super::summary::write_verbatim(out, &line.summary)
        })
    }

    /// Puts the line of `head` whose summary `write_summary` appends (UTF-8) in its place,
    /// as [`Timeline::add`] does. The fold writes each event's summary straight into the
    /// timeline this way: built as a string first, every line was allocated, copied and
    /// freed once more (`valgrind --tool=callgrind omnilog replay`, see docs/benchmarks-journal.md).
    pub fn add_with(
        &mut self,
        head: &LineHead,
        write_summary: impl FnOnce(&mut Vec<u8>),
    ) -> Result<(), ViewError> {
        let appended = self.last.is_none_or(|last| last <= head.stamp);
        if appended {
            // Room for a whole line first, at least doubling: grown by what each part of
            // the line needed, the buffer was reallocated (and copied) up to three times a
            // line and ten times a journey (about 200,000 reallocations a 1M replay, a
            // tenth of the journey worker's instructions with its other vectors' growth,
            // in `valgrind --tool=callgrind --separate-threads=yes omnilog replay`).
            let spare = self.encoded.capacity() - self.encoded.len();
            if spare < LINE_ROOM {
                self.encoded.reserve(LINE_ROOM.max(self.encoded.len()));
            }
            head.encode_into(&mut self.encoded);
            encode_text_with(&mut self.encoded, write_summary);
            self.last = Some(head.stamp);
        } else {
            let at = self.place_of(head.stamp)?;
            let mut encoded = Vec::new();
            head.encode_into(&mut encoded);
            encode_text_with(&mut encoded, write_summary);
            self.encoded.splice(at..at, encoded);
        }
        Ok(())
    }

    /// Appends the line of the event at `stamp` of interaction `interaction`, as
    /// [`TimelineForm::Positions`] keeps it ([`Position`]): the offset's difference from the
    /// last line's (zigzag: a customer's events come in log order, so it is never below
    /// zero, but a record must not depend on that to be read), then the interaction's
    /// number and whether the line is late, two varints; a late line's time follows (its
    /// seconds and nanoseconds, two more). Every line of a journey is in its customer's
    /// partition (all of a customer's events are in one).
    ///
    /// `last` keeps the last line's position and the latest time of any line: a line
    /// stamped before that time is late, and comes before lines appended earlier in the
    /// timeline's order.
    pub fn add_position(&mut self, stamp: Stamp, interaction: u32) {
        let (last_offset, latest) = self
            .last
            .map_or((0, None), |last| (last.offset, Some(last.at)));
        let late = latest.is_some_and(|latest| stamp.at < latest);
        let mut line = [0u8; 4 * MAX_VARINT_BYTES];
        let mut at = write_varint(
            &mut line,
            zigzag(stamp.offset.wrapping_sub(last_offset) as i64),
        );
        at += write_varint(
            &mut line[at..],
            (u64::from(interaction) << 1) | u64::from(late),
        );
        if late {
            at += write_varint(&mut line[at..], zigzag(stamp.at.secs));
            at += write_varint(&mut line[at..], u64::from(stamp.at.nanos));
        }
        // Room for some lines at once, at least doubling (a journey's first line makes room
        // for about twenty); the whole buffer appended, then cut to what was written: a copy
        // of a length known when compiling, not a call to `memcpy` (see
        // `LineHead::encode_into`).
        if self.encoded.capacity() - self.encoded.len() < line.len() {
            self.encoded.reserve(POSITIONS_ROOM.max(self.encoded.len()));
        }
        let len = self.encoded.len();
        self.encoded.extend_from_slice(&line);
        self.encoded.truncate(len + at);
        self.last = Some(Stamp {
            at: latest.map_or(stamp.at, |latest| latest.max(stamp.at)),
            ..stamp
        });
    }

    /// The lines of a [`TimelineForm::Positions`] timeline, in log order.
    pub fn positions(&self) -> impl Iterator<Item = Result<Position, ViewError>> + '_ {
        let mut rest = self.encoded.as_slice();
        let mut offset = 0u64;
        std::iter::from_fn(move || {
            if rest.is_empty() {
                return None;
            }
            // What `add_position` wrote is postcard's encoding of (i64, u64), then of a
            // `Time` for a late line: read back by postcard.
            let mut line = || -> Option<(i64, u32, Option<Time>)> {
                let ((delta, tagged), after) =
                    postcard::take_from_bytes::<(i64, u64)>(rest).ok()?;
                rest = after;
                let interaction = u32::try_from(tagged >> 1).ok()?;
                let late = if tagged & 1 == 1 {
                    let (time, after) = postcard::take_from_bytes::<Time>(rest).ok()?;
                    rest = after;
                    Some(time)
                } else {
                    None
                };
                Some((delta, interaction, late))
            };
            let line = line();
            Some(match line {
                Some((delta, interaction, late)) => {
                    offset = offset.wrapping_add(delta as u64);
                    Ok(Position {
                        offset,
                        interaction,
                        late,
                    })
                }
                None => {
                    rest = &[];
                    Err(ViewError::Corrupt {
                        key: "journey timeline".to_owned(),
                        reason: "a line's position is cut short or too long".to_owned(),
                    })
                }
            })
        })
    }

    /// Where a line stamped `stamp` goes: after the last line stamped at or before it.
    /// Each line's stamp is read and its summary passed over, nothing allocated: decoded
    /// whole, each line before the place made a string of its summary, and a customer's
    /// late events (sent newest first, or from a channel that lags) each cost a string per
    /// line of their journey (a fifth of the journey fold in `perf record` of the bench's
    /// single-event stage, which sent events newest first).
    fn place_of(&self, stamp: Stamp) -> Result<usize, ViewError> {
        let mut at = 0;
        for entry in self.entries::<EncodedLine<'_>>() {
            let (line, end) = entry?;
            if line.stamp > stamp {
                break;
            }
            at = end;
        }
        Ok(at)
    }

    /// The lines, in timeline order, each summary rendered as its sentence (summaries in
    /// the view only: queries render them with [`Timeline::encoded_lines`]).
    #[cfg(test)]
    pub fn lines(&self) -> impl Iterator<Item = Result<Line, ViewError>> + '_ {
        self.encoded_lines().map(|line| {
            let line = line?;
            Ok(Line {
                stamp: line.stamp,
                interaction: line.interaction,
                channel: line.channel,
                event_type: line.event_type,
                summary: super::summary::render(line.summary, line.channel)?,
            })
        })
    }

    /// The lines as stored, in timeline order (see [`EncodedLine`]).
    pub fn encoded_lines(&self) -> impl Iterator<Item = Result<EncodedLine<'_>, ViewError>> + '_ {
        self.entries::<EncodedLine<'_>>()
            .map(|entry| entry.map(|(line, _)| line))
    }

    /// The log offsets of the events of the interaction numbered `interaction`, in log
    /// order: its lines' (an interaction's events are in its customer's partition). Read
    /// from the lines, not kept beside them: a vector of offsets in every interaction's
    /// record was one more allocation per interaction and three bytes per event in every
    /// record written.
    pub fn offsets_of(&self, form: TimelineForm, interaction: u32) -> Result<Vec<u64>, ViewError> {
        let mut offsets = Vec::new();
        match form {
            TimelineForm::Lines => {
                for entry in self.entries::<EncodedLine<'_>>() {
                    let (line, _) = entry?;
                    if line.interaction == interaction {
                        offsets.push(line.stamp.offset);
                    }
                }
            }
            TimelineForm::Positions => {
                for line in self.positions() {
                    let line = line?;
                    if line.interaction == interaction {
                        offsets.push(line.offset);
                    }
                }
            }
        }
        offsets.sort_unstable();
        Ok(offsets)
    }

    /// The lines read as `T`, each with where its encoding ends in the buffer; the first
    /// that cannot be read ends them, as an error.
    fn entries<'a, T: Deserialize<'a>>(
        &'a self,
    ) -> impl Iterator<Item = Result<(T, usize), ViewError>> + 'a {
        let mut rest = self.encoded.as_slice();
        std::iter::from_fn(move || {
            if rest.is_empty() {
                return None;
            }
            Some(match postcard::take_from_bytes::<T>(rest) {
                Ok((line, after)) => {
                    rest = after;
                    Ok((line, self.encoded.len() - after.len()))
                }
                Err(error) => {
                    rest = &[];
                    Err(line_error(&error))
                }
            })
        })
    }
}

fn line_error(error: &postcard::Error) -> ViewError {
    ViewError::Corrupt {
        key: "journey timeline".to_owned(),
        reason: error.to_string(),
    }
}

/// One line of a journey's timeline, as the tests read it (stored as an [`EncodedLine`]:
/// the same fields, the summary compact).
#[cfg(test)]
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Line {
    pub stamp: Stamp,
    /// Its interaction's number ([`Interactions::id`]).
    pub interaction: u32,
    pub channel: u8,
    /// The event type's declaration index in the events crate.
    pub event_type: u8,
    /// The sentence (`journey/summary.rs` renders it).
    pub summary: String,
}

/// A [`Line`] as it is stored: its summary in the compact form the fold writes
/// (`journey/summary.rs`), borrowed, so that reading a line's place allocates nothing
/// ([`TimelineForm::Lines`]).
#[derive(Deserialize)]
pub(crate) struct EncodedLine<'a> {
    pub stamp: Stamp,
    pub interaction: u32,
    pub channel: u8,
    pub event_type: u8,
    #[serde(borrow)]
    pub summary: &'a [u8],
}

/// A timeline line's fields but its summary: what the fold knows before it writes the
/// summary.
#[derive(Clone, Copy, Debug)]
pub(crate) struct LineHead {
    pub stamp: Stamp,
    pub interaction: u32,
    pub channel: u8,
    pub event_type: u8,
}

impl LineHead {
    /// Appends the postcard encoding of a [`Line`]'s fields before its summary, written
    /// here field by field: postcard's own writer copied each varint into the vector with
    /// a call to `memcpy`, and encoding lines was a tenth of the journey worker's samples
    /// (`perf record -F 199 --call-graph dwarf omnilog replay` of 1M events).
    fn encode_into(&self, out: &mut Vec<u8>) {
        // Written into a buffer on the stack, then appended in one copy: pushed byte by
        // byte, each push checked the vector's capacity (230 instructions a line in
        // `valgrind --tool=callgrind omnilog replay`).
        // The varints are written in one loop over the one buffer: re-sliced for each value
        // (`write_varint(&mut head[at..], ..)`), a line head took 185 instructions
        // (`valgrind --tool=callgrind omnilog replay` of the 200k history).
        let mut head = [0u8; 5 * MAX_VARINT_BYTES + 2];
        let mut at = 0;
        for mut value in [
            zigzag(self.stamp.at.secs),
            u64::from(self.stamp.at.nanos),
            u64::from(self.stamp.partition),
            self.stamp.offset,
            u64::from(self.interaction),
        ] {
            while value >= 0x80 {
                head[at] = (value as u8) | 0x80;
                value >>= 7;
                at += 1;
            }
            head[at] = value as u8;
            at += 1;
        }
        head[at] = self.channel;
        head[at + 1] = self.event_type;
        at += 2;
        // The whole buffer appended, then cut to what was written: a copy of a length known
        // when compiling is a few vector moves, where the written length's copy was a call
        // to `memcpy` for about twenty bytes (0.6 % of a 1M replay's samples in the journey
        // worker's `memcpy` alone, `perf record --call-graph dwarf`).
        let len = out.len();
        out.extend_from_slice(&head);
        out.truncate(len + at);
    }
}

#[cfg(test)]
impl Line {
    /// Its fields but its summary.
    fn head(&self) -> LineHead {
        LineHead {
            stamp: self.stamp,
            interaction: self.interaction,
            channel: self.channel,
            event_type: self.event_type,
        }
    }

    /// Appends the line's postcard encoding (what [`Timeline::lines`] decodes).
    fn encode_into(&self, out: &mut Vec<u8>) {
        self.head().encode_into(out);
        encode_text_with(out, |out| out.extend_from_slice(self.summary.as_bytes()));
    }
}

/// Appends a string as postcard encodes it (its length's varint, then its bytes), the
/// bytes appended by `write`: a one-byte length is written in place once they are, and a
/// longer one (a text of 128 bytes or more, rare in a timeline) widened in place.
fn encode_text_with(out: &mut Vec<u8>, write: impl FnOnce(&mut Vec<u8>)) {
    let at = out.len();
    out.push(0);
    write(out);
    let len = out.len() - at - 1;
    if len < 0x80 {
        out[at] = len as u8;
    } else {
        let mut varint = [0u8; MAX_VARINT_BYTES];
        let written = write_varint(&mut varint, len as u64);
        out[at] = varint[0];
        out.splice(at + 1..at + 1, varint[1..written].iter().copied());
    }
}

/// The most bytes a varint of a `u64` takes.
pub(super) const MAX_VARINT_BYTES: usize = 10;

/// postcard's encoding of a signed integer: zigzag, so small magnitudes take few bytes.
fn zigzag(value: i64) -> u64 {
    ((value << 1) ^ (value >> 63)) as u64
}

/// Writes postcard's varint of `value` at the start of `out` (seven bits a byte, low bits
/// first, the high bit saying more follow); returns the bytes written.
pub(super) fn write_varint(out: &mut [u8], mut value: u64) -> usize {
    let mut written = 0;
    while value >= 0x80 {
        out[written] = (value as u8) | 0x80;
        value >>= 7;
        written += 1;
    }
    out[written] = value as u8;
    written + 1
}

/// A journey's summary: what every event of the journey updates, all bounded.
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
    pub last_agent: Option<(Stamp, Id)>,
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
            self_service: Vec::new(),
        }
    }
}

impl JourneyRecord {
    /// The journey's report facts: its summary's, and the self-service figures of its
    /// chatbot and IVR sessions (rules in `journey/report.rs`), which need its
    /// interactions' records.
    pub fn facts(&self, interactions: &Interactions) -> JourneyFacts {
        let mut facts = self.summary.facts();
        facts.self_service = self_service_facts(&self.path, interactions);
        facts
    }
}

/// Whether a channel's sessions are self-service ones: chatbot and IVR.
pub(crate) fn is_self_service_channel(code: u8) -> bool {
    code == channel_code(Channel::Chatbot) || code == channel_code(Channel::Ivr)
}

/// How long after a contained session's end another contact counts as coming back.
const CAME_BACK_NANOS: i128 = 24 * 3_600 * 1_000_000_000;

/// The self-service figures of a journey's interactions (`path`, in start order), by
/// channel code in ascending order; empty when it has no chatbot or IVR session.
fn self_service_facts(
    path: &[PathEntry],
    interactions: &Interactions,
) -> Vec<(u8, SelfServiceCounts)> {
    let mut by_channel: Vec<(u8, SelfServiceCounts)> = Vec::new();
    for (index, entry) in path.iter().enumerate() {
        if !is_self_service_channel(entry.channel) {
            continue;
        }
        let Some(session) = interactions.get(&entry.interaction) else {
            continue;
        };
        let escalated = session.escalated();
        let contained = !escalated && session.ended.is_some();
        let came_back = contained
            && session.ended.is_some_and(|ended| {
                let limit = ended.total_nanos() + CAME_BACK_NANOS;
                path[index + 1..].iter().any(|later| {
                    later.started.total_nanos() <= limit
                        && interactions
                            .get(&later.interaction)
                            .is_some_and(|record| !record.outbound)
                })
            });
        let at = match by_channel.binary_search_by_key(&entry.channel, |(code, _)| *code) {
            Ok(at) => at,
            Err(at) => {
                by_channel.insert(at, (entry.channel, SelfServiceCounts::default()));
                at
            }
        };
        let counts = &mut by_channel[at].1;
        counts.sessions += 1;
        counts.escalated += u64::from(escalated);
        counts.contained += u64::from(contained);
        counts.came_back += u64::from(came_back);
    }
    by_channel
}

/// What the journeys report reads of a journey: a few bytes in their own table, so the
/// report's scan over every journey reads nothing else. Written only when one of these
/// facts changes, which is rare next to the events that change a summary.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct JourneyFacts {
    pub opened: Time,
    pub resolved: bool,
    pub reopened: bool,
    pub first_contact_resolution: bool,
    pub channel_count: u8,
    pub path: Vec<u8>,
    pub path_truncated: bool,
    /// The self-service figures of its chatbot and IVR sessions, by channel code.
    pub self_service: Vec<(u8, SelfServiceCounts)>,
}

/// One interaction of a journey, in the order of the journey's interactions.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct PathEntry {
    /// The interaction's start, then the position of its first event: the order key.
    pub started: Time,
    pub partition: u32,
    pub offset: u64,
    pub interaction: Id,
    pub channel: u8,
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
    pub queue: Option<Id>,
    /// Agents that handled it, in order of first handling.
    pub agents: Vec<Id>,
    pub messages: u32,
    pub was_queued: bool,
    pub abandoned: bool,
    /// Ended with reason `contained` (what IVR and chatbot sessions report).
    pub contained: bool,
    /// The latest wrap-up's `resolved`, in log order.
    pub wrapped: Option<bool>,
    pub csat: Option<u8>,
    /// Its number among the customer's interactions ([`Interactions::id`]). Its events'
    /// log offsets are those of its journey's timeline lines of this number
    /// ([`Timeline::offsets_of`]): every event of an interaction adds one.
    pub number: u32,
}

impl InteractionRecord {
    /// The record of an interaction begun by the event stamped `first` (on `channel`, the
    /// desk's doing when `outbound`), in `journey`, the customer's interaction `number`.
    pub fn begun(journey: u32, channel: u8, outbound: bool, first: Stamp, number: u32) -> Self {
        InteractionRecord {
            journey,
            channel,
            outbound,
            self_service: false,
            subject: None,
            started: first.at,
            first_partition: first.partition,
            first_offset: first.offset,
            ended: None,
            status: InteractionStatus::Active,
            queue: None,
            agents: Vec::new(),
            messages: 0,
            was_queued: false,
            abandoned: false,
            contained: false,
            wrapped: None,
            csat: None,
            number,
        }
    }

    /// Whether it reached a queue or an agent: queued, offered, assigned, transferred, or
    /// handled by an agent's message or wrap-up.
    pub fn escalated(&self) -> bool {
        self.was_queued
            || !self.agents.is_empty()
            || matches!(
                self.status,
                InteractionStatus::Queued | InteractionStatus::Assigned | InteractionStatus::OnHold
            )
    }

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

pub(crate) fn event_type_code(event_type: omnilog_events::EventType) -> u8 {
    event_type as u8
}

pub(crate) fn event_type_name(code: u8) -> Result<&'static str, ViewError> {
    omnilog_events::EventType::ALL
        .get(usize::from(code))
        .map(|t| t.as_str())
        .ok_or_else(|| ViewError::Corrupt {
            key: "journey event type".to_owned(),
            reason: format!("unknown event type code {code}"),
        })
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

#[cfg(test)]
mod tests {
    use super::*;

    fn line(secs: i64, offset: u64) -> Line {
        Line {
            stamp: Stamp {
                at: Time { secs, nanos: 0 },
                partition: 0,
                offset,
            },
            interaction: 0,
            channel: 1,
            event_type: 2,
            summary: format!("event at {secs} (offset {offset})"),
        }
    }

    proptest::proptest! {
        #[test]
        fn a_line_is_encoded_as_postcard_encodes_it(
            secs in proptest::num::i64::ANY,
            nanos in proptest::num::u32::ANY,
            partition in proptest::num::u32::ANY,
            offset in proptest::num::u64::ANY,
            interaction in proptest::num::u32::ANY,
            channel in proptest::num::u8::ANY,
            event_type in proptest::num::u8::ANY,
            summary in ".{0,300}",
        ) {
            let line = Line {
                stamp: Stamp { at: Time { secs, nanos }, partition, offset },
                interaction,
                channel,
                event_type,
                summary,
            };
            let mut by_hand = Vec::new();
            line.encode_into(&mut by_hand);
            proptest::prop_assert_eq!(&by_hand, &postcard::to_stdvec(&line).unwrap());
            let decoded: Line = postcard::from_bytes(&by_hand).unwrap();
            proptest::prop_assert_eq!(decoded, line);
        }
    }

    #[test]
    fn a_timeline_gives_its_lines_in_stamp_order_whatever_order_they_were_added_in() {
        let added = [
            (5, 0),
            (7, 1),
            (3, 2),
            (7, 3),
            (6, 4),
            (1, 5),
            (9, 6),
            (5, 7),
        ];
        let mut timeline = Timeline::default();
        for (secs, offset) in added {
            timeline.add(&line(secs, offset)).unwrap();
        }
        let lines: Vec<Line> = timeline.lines().collect::<Result<_, _>>().unwrap();
        let mut expected: Vec<Line> = added.iter().map(|&(s, o)| line(s, o)).collect();
        expected.sort_by_key(|line| line.stamp);
        assert_eq!(lines, expected);

        // Encoded and decoded (a checkpoint and a reload), it is the same timeline, and
        // a line added after appends.
        let bytes = postcard::to_stdvec(&timeline).unwrap();
        let mut reloaded: Timeline = postcard::from_bytes(&bytes).unwrap();
        assert_eq!(reloaded, timeline);
        reloaded.add(&line(2, 8)).unwrap();
        reloaded.add(&line(10, 9)).unwrap();
        let stamps: Vec<i64> = reloaded
            .lines()
            .map(|line| line.unwrap().stamp.at.secs)
            .collect();
        assert_eq!(stamps, [1, 2, 3, 5, 5, 6, 7, 7, 9, 10]);
    }

    proptest::proptest! {
        /// Lines added in any order, summaries long and short (a length of two bytes from
        /// 128 on), come out in stamp order, each line added after those stamped the same.
        #[test]
        fn lines_added_in_any_order_come_out_in_stamp_order(
            added in proptest::collection::vec((0i64..20, 0u64..4, 0usize..300), 0..40),
        ) {
            let mut timeline = Timeline::default();
            let mut expected = Vec::new();
            for (secs, offset, summary_len) in added {
                let mut line = line(secs, offset);
                line.summary = "é".repeat(summary_len / 2);
                timeline.add(&line).unwrap();
                expected.push(line);
            }
            // Stable: of lines stamped the same, the one added first comes first.
            expected.sort_by_key(|line| line.stamp);
            let lines: Vec<Line> = timeline.lines().collect::<Result<_, _>>().unwrap();
            proptest::prop_assert_eq!(lines, expected);
        }
    }

    /// An interaction numbered `number`, begun at `secs`.
    fn interaction(number: u32, secs: i64) -> InteractionRecord {
        let first = Stamp {
            at: Time { secs, nanos: 0 },
            partition: 0,
            offset: u64::from(number),
        };
        InteractionRecord::begun(0, 0, false, first, number)
    }

    /// The layout before interactions were kept by number: what the store holds.
    #[derive(Serialize)]
    struct MappedCustomerRecord {
        partition: u32,
        journeys: Vec<JourneyRecord>,
        interactions: BTreeMap<Id, InteractionRecord>,
        ids: Vec<Id>,
    }

    /// Interactions begun in an order that is not their ids' (more of them than a lookup
    /// compares one by one) are each found by id, are stored as the map by id was, byte for
    /// byte, and are read back the same; a stored record whose numbers disagree with its ids
    /// is an error.
    #[test]
    fn interactions_kept_by_number_are_found_by_id_and_stored_as_a_map_by_id() {
        let ids = [
            "voice-1-00000090",
            "chat-1-00000012",
            "email-1-00000301",
            "chat-1-00000002",
            "sms-1-00000077",
            "chat-1-00000100",
            "voice-1-00000003",
            "web-1-00000040",
        ];
        let mut record = CustomerRecord {
            partition: 3,
            ..CustomerRecord::default()
        };
        let mut mapped = BTreeMap::new();
        for (number, id) in ids.iter().enumerate() {
            let number = number as u32;
            assert!(record.interactions.number_of(id).is_none());
            record
                .interactions
                .push(Id::from(*id), interaction(number, i64::from(number)));
            mapped.insert(Id::from(*id), interaction(number, i64::from(number)));
        }
        for (number, id) in ids.iter().enumerate() {
            assert_eq!(record.interactions.number_of(id), Some(number));
            assert_eq!(
                record.interactions.get(id).map(|r| r.number),
                Some(number as u32)
            );
            assert_eq!(record.interactions.id(number).map(Id::as_str), Some(*id));
        }
        assert!(record.interactions.number_of("chat-1-00000001").is_none());
        assert!(record.interactions.number_of("zz").is_none());

        let stored = postcard::to_stdvec(&record).unwrap();
        let before = MappedCustomerRecord {
            partition: 3,
            journeys: Vec::new(),
            interactions: mapped,
            ids: ids.iter().map(|id| Id::from(*id)).collect(),
        };
        assert_eq!(stored, postcard::to_stdvec(&before).unwrap());
        let read: CustomerRecord = postcard::from_bytes(&stored).unwrap();
        assert_eq!(read, record);
        assert_eq!(read.interactions.number_of("sms-1-00000077"), Some(4));

        let mut swapped = before;
        swapped.ids.swap(0, 1);
        let damaged = postcard::to_stdvec(&swapped).unwrap();
        assert!(postcard::from_bytes::<CustomerRecord>(&damaged).is_err());
    }

    #[test]
    fn a_corrupt_timeline_is_an_error_not_a_panic() {
        let mut timeline = Timeline::default();
        timeline.add(&line(1, 0)).unwrap();
        timeline.encoded.truncate(timeline.encoded.len() - 3);
        assert!(timeline.lines().any(|line| line.is_err()));
        assert!(timeline.add(&line(0, 1)).is_err());
    }

    fn stamp_at(secs: i64, offset: u64) -> Stamp {
        Stamp {
            at: Time { secs, nanos: 0 },
            partition: 3,
            offset,
        }
    }

    #[test]
    fn a_timeline_of_positions_gives_back_each_offset_and_interaction_in_log_order() {
        // (seconds, offset, interaction, late): a line stamped before the latest line
        // appended before it is late, one stamped at that time is not.
        let lines = [
            (10, 0, 0, false),
            (20, 1, 0, false),
            (15, 200, 1, true),
            (20, 70_000, 0, false),
            (5, 70_001, 300, true),
            (30, u64::MAX / 2, 2, false),
        ];
        let mut timeline = Timeline::default();
        for (secs, offset, interaction, _) in lines {
            timeline.add_position(stamp_at(secs, offset), interaction);
        }
        let read: Vec<(i64, u64, u32, bool)> = timeline
            .positions()
            .zip(lines)
            .map(|(line, (secs, ..))| {
                let line = line.unwrap();
                if let Some(at) = line.late {
                    assert_eq!(at, Time { secs, nanos: 0 });
                }
                (secs, line.offset, line.interaction, line.late.is_some())
            })
            .collect();
        assert_eq!(read, lines);
        assert_eq!(
            timeline.offsets_of(TimelineForm::Positions, 0).unwrap(),
            [0, 1, 70_000]
        );
        // Two short varints a line, not a head of about fifteen bytes: the offsets' zigzagged
        // differences take 1, 1, 2, 3, 1 and 10 bytes, the interactions (doubled, the low
        // bit saying late) 1, 1, 1, 1, 2 and 1; the two late lines' times 1 + 1 each.
        assert_eq!(timeline.encoded.len(), 18 + 7 + 4);
        // An offset below the last one's (no fold appends one) is read back all the same.
        timeline.add_position(stamp_at(40, 5), 1);
        let last = timeline.positions().last().unwrap().unwrap();
        assert_eq!((last.offset, last.interaction, last.late), (5, 1, None));
    }

    #[test]
    fn a_corrupt_timeline_of_positions_is_an_error_not_a_panic() {
        let mut timeline = Timeline::default();
        timeline.add_position(stamp_at(0, 1_000_000), 7);
        timeline.encoded.pop();
        timeline.encoded.push(0x80);
        assert!(timeline.positions().any(|line| line.is_err()));
        assert!(timeline.offsets_of(TimelineForm::Positions, 7).is_err());
        timeline.encoded = vec![0xff; 11];
        assert!(timeline.positions().any(|line| line.is_err()));
        // A tenth byte above 1 does not fit 64 bits.
        timeline.encoded = [[0xff; 9].as_slice(), &[0x02, 0x00]].concat();
        assert!(timeline.positions().any(|line| line.is_err()));
    }
}
