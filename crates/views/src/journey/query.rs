//! The journey view's per-customer and per-interaction queries: pure functions of the
//! view's state whose answers serialise to exactly the JSON of CONTRACT §6.
//!
//! Answers stay bounded for the biggest customer: [`JourneyLimits`] caps the journeys
//! (the most recent), the interactions and timeline entries per journey (the earliest, in
//! order) and the context's notes. Only the journeys shown are read, each by its key; a
//! customer's older history is never touched.

use std::collections::BTreeSet;

use omnilog_events::{Event, Handle, decode, format_time};
use serde::Serialize;
use uuid::Uuid;

use super::records::{
    CustomerRecord, InteractionRecord, InteractionStatus, JourneyPath, JourneyStatus,
    JourneySummary, NoteRecord, Outcome, Stamp, Time, channel_name, keys,
};
use crate::ViewError;
use crate::state::{StateReader, get_record, scan_records};

/// How much a journey answer may hold.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct JourneyLimits {
    /// The most recent journeys shown, over the customer and the ids merged into it.
    pub journeys: usize,
    /// The first interactions shown per journey, in start order.
    pub interactions: usize,
    /// The first timeline entries shown per journey, in timeline order.
    pub timeline: usize,
    /// The first notes shown in the context, in time order.
    pub notes: usize,
}

impl Default for JourneyLimits {
    fn default() -> Self {
        JourneyLimits {
            journeys: 100,
            interactions: 500,
            timeline: 500,
            notes: 100,
        }
    }
}

/// `GET /v1/customers/{id}/journey`.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct JourneyAnswer {
    pub customer_id: String,
    pub handles: Vec<HandleAnswer>,
    pub context: ContextAnswer,
    /// Ordered by `opened_at`.
    pub journeys: Vec<JourneyEntry>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct HandleAnswer {
    pub kind: String,
    pub value: String,
}

/// What an agent needs first: the case in progress and who last dealt with it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ContextAnswer {
    /// The latest journey still open, if any.
    pub open_journey_id: Option<String>,
    pub last_channel: Option<String>,
    pub last_agent: Option<String>,
    pub last_contact_at: Option<String>,
    /// The topics of the open journey (or, with none open, of the latest).
    pub topics: Vec<String>,
    /// The agents' notes on the open journey (or, with none open, on the latest).
    pub notes: Vec<NoteAnswer>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct NoteAnswer {
    pub text: String,
    pub agent: String,
    pub at: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct JourneyEntry {
    pub journey_id: String,
    pub status: JourneyStatus,
    pub opened_at: String,
    pub resolved_at: Option<String>,
    /// Distinct channels, in order of first use.
    pub channels: Vec<String>,
    pub channel_switches: u32,
    pub reopened_count: u32,
    pub topics: Vec<String>,
    /// In start order.
    pub interactions: Vec<InteractionSummary>,
    /// By `occurred_at`, then log position.
    pub timeline: Vec<TimelineEntry>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct InteractionSummary {
    pub interaction_id: String,
    pub channel: String,
    pub started_at: String,
    pub ended_at: Option<String>,
    pub status: InteractionStatus,
    /// The latest queue it was put in.
    pub queue: Option<String>,
    /// Agents that handled it, in order of first handling.
    pub agents: Vec<String>,
    /// How many `message` events it has.
    pub messages: u32,
    pub outcome: Option<Outcome>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct TimelineEntry {
    pub at: String,
    pub channel: String,
    pub interaction_id: String,
    #[serde(rename = "type")]
    pub event_type: String,
    pub summary: String,
}

/// `GET /v1/interactions/{id}`: the interaction's summary, where it belongs, and its events.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct InteractionAnswer {
    #[serde(flatten)]
    pub interaction: InteractionSummary,
    /// The customer the events were recorded for (before any merge).
    pub customer_id: String,
    pub journey_id: String,
    pub direction: &'static str,
    pub subject: Option<String>,
    pub self_service: bool,
    pub csat: Option<u8>,
    /// Its events in log order, as canonical JSON objects.
    pub events: Vec<Event>,
}

/// The most events [`interaction`] returns.
const DEFAULT_EVENT_LIMIT: usize = 10_000;

/// Customers that can share one interaction id (ingest resolved its events to different
/// customers); more than a handful would be a broken producer.
const SHARED_INTERACTION_LIMIT: usize = 64;

/// [`customer_journey_with`] with the default [`JourneyLimits`].
pub fn customer_journey(
    state: &dyn StateReader,
    customer_id: &str,
    merged_from: &[String],
    handles: &[Handle],
) -> Result<Option<JourneyAnswer>, ViewError> {
    customer_journey_with(
        state,
        customer_id,
        merged_from,
        handles,
        JourneyLimits::default(),
    )
}

/// The journeys of `customer_id` and of the ids merged into it (`merged_from`, from the
/// identity view) in one answer, ordered by `opened_at`, with the context computed over
/// all of them. `handles` are the customer's handles as the identity view knows them.
/// `None` when no interaction of any of these ids has been folded.
pub fn customer_journey_with(
    state: &dyn StateReader,
    customer_id: &str,
    merged_from: &[String],
    handles: &[Handle],
    limits: JourneyLimits,
) -> Result<Option<JourneyAnswer>, ViewError> {
    let members: BTreeSet<&str> = std::iter::once(customer_id)
        .chain(merged_from.iter().map(String::as_str))
        .collect();
    let wanted = u32::try_from(limits.journeys.max(1)).unwrap_or(u32::MAX);
    let mut loaded: Vec<Loaded> = Vec::new();
    for member in members {
        let Some(customer) = get_record::<CustomerRecord>(state, &keys::customer(member))? else {
            continue;
        };
        for seq in customer.journeys.saturating_sub(wanted)..customer.journeys {
            let key = keys::summary(member, seq);
            let summary =
                get_record::<JourneySummary>(state, &key)?.ok_or_else(|| ViewError::Corrupt {
                    key: String::from_utf8_lossy(&key).into_owned(),
                    reason: "a journey of the customer is missing".to_owned(),
                })?;
            loaded.push(Loaded {
                customer: member,
                seq,
                latest: seq + 1 == customer.journeys,
                summary,
            });
        }
    }
    if loaded.is_empty() {
        return Ok(None);
    }
    let context = context(state, &loaded, limits.notes)?;
    loaded.sort_by(|a, b| {
        (a.summary.opened, a.customer, a.seq).cmp(&(b.summary.opened, b.customer, b.seq))
    });
    let shown = loaded.len().saturating_sub(limits.journeys.max(1));
    let journeys = loaded[shown..]
        .iter()
        .map(|journey| journey_entry(state, journey, limits))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Some(JourneyAnswer {
        customer_id: customer_id.to_owned(),
        handles: handles
            .iter()
            .map(|h| HandleAnswer {
                kind: h.kind.clone(),
                value: h.value.clone(),
            })
            .collect(),
        context,
        journeys,
    }))
}

/// A journey read for an answer.
struct Loaded<'a> {
    customer: &'a str,
    seq: u32,
    /// The customer's latest journey: the only one a new interaction can join.
    latest: bool,
    summary: JourneySummary,
}

impl Loaded<'_> {
    fn recency(&self) -> (Time, &str, u32) {
        (self.summary.last_activity, self.customer, self.seq)
    }
}

fn context(
    state: &dyn StateReader,
    loaded: &[Loaded<'_>],
    note_limit: usize,
) -> Result<ContextAnswer, ViewError> {
    let open = loaded
        .iter()
        .filter(|j| j.latest && j.summary.status == JourneyStatus::Open)
        .max_by(|a, b| a.recency().cmp(&b.recency()));
    let focus = open.or_else(|| loaded.iter().max_by(|a, b| a.recency().cmp(&b.recency())));
    let last_contact: Option<(Stamp, u8)> =
        loaded.iter().filter_map(|j| j.summary.last_contact).max();
    let last_agent = loaded
        .iter()
        .filter_map(|j| j.summary.last_agent.as_ref())
        .max_by_key(|(stamp, _)| *stamp);
    let (topics, notes) = match focus {
        None => (Vec::new(), Vec::new()),
        Some(focus) => {
            let notes = scan_records::<NoteRecord>(
                state,
                &keys::notes_prefix(focus.customer, focus.seq),
                note_limit,
            )?
            .into_iter()
            .map(|(_, note)| {
                Ok(NoteAnswer {
                    at: note.at.render()?,
                    text: note.text,
                    agent: note.agent,
                })
            })
            .collect::<Result<Vec<_>, ViewError>>()?;
            (focus.summary.topics.clone(), notes)
        }
    };
    Ok(ContextAnswer {
        open_journey_id: open.map(|j| journey_id(&j.summary)),
        last_channel: last_contact
            .map(|(_, channel)| channel_name(channel).map(str::to_owned))
            .transpose()?,
        last_agent: last_agent.map(|(_, agent)| agent.clone()),
        last_contact_at: last_contact
            .map(|(stamp, _)| stamp.at.render())
            .transpose()?,
        topics,
        notes,
    })
}

fn journey_id(summary: &JourneySummary) -> String {
    Uuid::from_bytes(summary.id).hyphenated().to_string()
}

fn journey_entry(
    state: &dyn StateReader,
    journey: &Loaded<'_>,
    limits: JourneyLimits,
) -> Result<JourneyEntry, ViewError> {
    let summary = &journey.summary;
    let path: JourneyPath =
        get_record(state, &keys::path(journey.customer, journey.seq))?.unwrap_or_default();
    let interactions = path
        .entries
        .iter()
        .take(limits.interactions)
        .map(|entry| {
            let key = keys::interaction(journey.customer, &entry.interaction);
            let record = get_record::<InteractionRecord>(state, &key)?.ok_or_else(|| {
                ViewError::Corrupt {
                    key: String::from_utf8_lossy(&key).into_owned(),
                    reason: "an interaction of the journey is missing".to_owned(),
                }
            })?;
            interaction_summary(&entry.interaction, &record)
        })
        .collect::<Result<Vec<_>, ViewError>>()?;
    let timeline = state
        .scan_prefix(
            &keys::timeline_prefix(journey.customer, journey.seq),
            limits.timeline,
        )?
        .into_iter()
        .map(|(key, bytes)| {
            let event = timeline_event(&key, &bytes)?;
            let channel = event.channel.ok_or_else(|| ViewError::Corrupt {
                key: String::from_utf8_lossy(&key).into_owned(),
                reason: "a timeline event without a channel".to_owned(),
            })?;
            Ok(TimelineEntry {
                at: format_time(&event.occurred_at),
                channel: channel.as_str().to_owned(),
                interaction_id: event.interaction_id.clone().unwrap_or_default(),
                event_type: event.event_type().as_str().to_owned(),
                summary: super::describe(&event),
            })
        })
        .collect::<Result<Vec<_>, ViewError>>()?;
    Ok(JourneyEntry {
        journey_id: journey_id(summary),
        status: summary.status,
        opened_at: summary.opened.render()?,
        resolved_at: summary.resolved_at.map(Time::render).transpose()?,
        channels: summary
            .channels
            .iter()
            .map(|code| channel_name(*code).map(str::to_owned))
            .collect::<Result<_, _>>()?,
        channel_switches: summary.channel_switches,
        reopened_count: summary.reopened_count,
        topics: summary.topics.clone(),
        interactions,
        timeline,
    })
}

fn interaction_summary(
    id: &str,
    record: &InteractionRecord,
) -> Result<InteractionSummary, ViewError> {
    Ok(InteractionSummary {
        interaction_id: id.to_owned(),
        channel: channel_name(record.channel)?.to_owned(),
        started_at: record.started.render()?,
        ended_at: record.ended.map(Time::render).transpose()?,
        status: record.status,
        queue: record.queue.clone(),
        agents: record.agents.clone(),
        messages: record.messages,
        outcome: record.outcome(),
    })
}

/// Decodes the event a timeline entry holds.
fn timeline_event(key: &[u8], bytes: &[u8]) -> Result<Event, ViewError> {
    decode(bytes).map_err(|e| ViewError::Corrupt {
        key: String::from_utf8_lossy(key).into_owned(),
        reason: e.to_string(),
    })
}

/// [`interaction_with`] returning at most 10 000 events.
pub fn interaction(
    state: &dyn StateReader,
    interaction_id: &str,
) -> Result<Option<InteractionAnswer>, ViewError> {
    interaction_with(state, interaction_id, DEFAULT_EVENT_LIMIT)
}

/// An interaction and its first `event_limit` events in log order. Should ingest have
/// recorded events of one interaction id for several customers, the answer is the
/// customer's whose part started first (then the smallest customer id): each part is an
/// interaction of its own customer's journey.
pub fn interaction_with(
    state: &dyn StateReader,
    interaction_id: &str,
    event_limit: usize,
) -> Result<Option<InteractionAnswer>, ViewError> {
    let mut best: Option<(String, InteractionRecord)> = None;
    for (key, value) in state.scan_prefix(
        &keys::index_prefix(interaction_id),
        SHARED_INTERACTION_LIMIT,
    )? {
        let customer = String::from_utf8(value).map_err(|e| ViewError::Corrupt {
            key: String::from_utf8_lossy(&key).into_owned(),
            reason: e.to_string(),
        })?;
        let record_key = keys::interaction(&customer, interaction_id);
        let Some(record) = get_record::<InteractionRecord>(state, &record_key)? else {
            return Err(ViewError::Corrupt {
                key: String::from_utf8_lossy(&record_key).into_owned(),
                reason: "an indexed interaction is missing".to_owned(),
            });
        };
        let order = |c: &str, r: &InteractionRecord| {
            (r.started, r.first_partition, r.first_offset, c.to_owned())
        };
        if best
            .as_ref()
            .is_none_or(|(c, r)| order(&customer, &record) < order(c, r))
        {
            best = Some((customer, record));
        }
    }
    let Some((customer, record)) = best else {
        return Ok(None);
    };
    let summary_key = keys::summary(&customer, record.journey);
    let summary =
        get_record::<JourneySummary>(state, &summary_key)?.ok_or_else(|| ViewError::Corrupt {
            key: String::from_utf8_lossy(&summary_key).into_owned(),
            reason: "the journey of an interaction is missing".to_owned(),
        })?;
    // The interaction's events are in its journey's timeline, in time order; the answer
    // lists them in log order, by the position each key ends with.
    let mut events = Vec::new();
    for (key, bytes) in state.scan_prefix(
        &keys::timeline_prefix(&customer, record.journey),
        usize::MAX,
    )? {
        let event = timeline_event(&key, &bytes)?;
        if event.interaction_id.as_deref() == Some(interaction_id) {
            let position = keys::position_of(&key).ok_or_else(|| ViewError::Corrupt {
                key: String::from_utf8_lossy(&key).into_owned(),
                reason: "a timeline key without a log position".to_owned(),
            })?;
            events.push((position, event));
        }
    }
    events.sort_unstable_by_key(|(position, _)| *position);
    let events: Vec<Event> = events
        .into_iter()
        .take(event_limit)
        .map(|(_, event)| event)
        .collect();
    Ok(Some(InteractionAnswer {
        interaction: interaction_summary(interaction_id, &record)?,
        customer_id: customer,
        journey_id: journey_id(&summary),
        direction: if record.outbound {
            "outbound"
        } else {
            "inbound"
        },
        subject: record.subject.clone(),
        self_service: record.self_service,
        csat: record.csat,
        events,
    }))
}

/// Every entry of the journey state that belongs to `customer` (its record, journeys,
/// interactions, timeline and notes; not the raw events): what an instance that does not
/// own the customer's partition needs to answer the journey of a customer merged with it.
/// Loaded into a [`crate::MemoryState`] beside the other members' entries, it answers
/// [`customer_journey`] exactly as the whole state would.
pub fn customer_entries(
    state: &dyn StateReader,
    customer: &str,
) -> Result<crate::state::Entries, ViewError> {
    let mut entries = Vec::new();
    let record = keys::customer(customer);
    if let Some(value) = state.get(&record)? {
        entries.push((record, value));
    }
    for tag in ["js", "jf", "jp", "ii", "tl", "nt"] {
        let prefix = crate::state::KeyBuilder::table(tag).text(customer).prefix();
        entries.extend(state.scan_prefix(&prefix, usize::MAX)?);
    }
    Ok(entries)
}
