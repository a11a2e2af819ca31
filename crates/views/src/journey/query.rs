//! The journey view's per-customer and per-interaction queries: pure functions of the
//! view's state, the store behind it ([`RecordSource`]) and the log ([`EventSource`]),
//! whose answers serialise to exactly the JSON of CONTRACT §6.
//!
//! Answers stay bounded for the biggest customer: [`JourneyLimits`] caps the journeys
//! (the most recent), the interactions and timeline entries per journey (the earliest, in
//! order) and the context's notes. A customer's record is read once; only the events of
//! the journeys shown are read from the log.

use std::collections::BTreeSet;

use omnilog_events::{Event, Handle};
use serde::Serialize;
use uuid::Uuid;

use super::records::{
    CustomerRecord, InteractionRecord, InteractionStatus, JourneyRecord, JourneyStatus,
    JourneySummary, Outcome, Stamp, Time, TimelineForm, channel_name, event_type_code,
    event_type_name,
};
use super::summary::{render, render_event};
use super::{CUSTOMERS, INDEX, JourneyState};
use crate::ViewError;
use crate::state::{Entries, Id, RecordSource, stored_key};

/// The log, as the journey queries read it: an interaction's events are read from it, and
/// a journey's, when the view keeps its timeline lines as positions
/// ([`super::JourneyConfig::timelines_from_log`]; otherwise a journey's timeline is in the
/// view: see `journey/records.rs`).
pub trait EventSource {
    /// The events at `offsets` of the interactions partition `partition`, in the order
    /// asked.
    fn events(&self, partition: u32, offsets: &[u64]) -> Result<Vec<Event>, ViewError>;
}

/// The event source of an instance with no log to read (an answer assembled from other
/// instances' records, a test): every read fails, naming why.
#[derive(Clone, Copy, Debug, Default)]
pub struct NoLog;

impl EventSource for NoLog {
    fn events(&self, _partition: u32, _offsets: &[u64]) -> Result<Vec<Event>, ViewError> {
        Err(ViewError::Storage(
            "this instance has no log to read events from (an interaction's, or a journey's \
             timeline lines')"
                .to_owned(),
        ))
    }
}

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
    state: &JourneyState,
    records: &dyn RecordSource,
    events: &dyn EventSource,
    customer_id: &str,
    merged_from: &[String],
    handles: &[Handle],
) -> Result<Option<JourneyAnswer>, ViewError> {
    customer_journey_with(
        state,
        records,
        events,
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
    state: &JourneyState,
    records: &dyn RecordSource,
    events: &dyn EventSource,
    customer_id: &str,
    merged_from: &[String],
    handles: &[Handle],
    limits: JourneyLimits,
) -> Result<Option<JourneyAnswer>, ViewError> {
    let members: BTreeSet<&str> = std::iter::once(customer_id)
        .chain(merged_from.iter().map(String::as_str))
        .collect();
    let wanted = limits.journeys.max(1);
    let mut customers = Vec::new();
    for member in members {
        if let Some(record) = state.customers.read(member, records)? {
            customers.push((member, record));
        }
    }
    let mut loaded: Vec<Loaded> = Vec::new();
    for (member, record) in &customers {
        let count = record.journeys.len();
        for (seq, journey) in record
            .journeys
            .iter()
            .enumerate()
            .skip(count.saturating_sub(wanted))
        {
            loaded.push(Loaded {
                customer: member,
                record,
                seq: seq as u32,
                latest: seq + 1 == count,
                journey,
            });
        }
    }
    if loaded.is_empty() {
        return Ok(None);
    }
    let context = context(&loaded, limits.notes)?;
    loaded.sort_by(|a, b| {
        (a.journey.summary.opened, a.customer, a.seq).cmp(&(
            b.journey.summary.opened,
            b.customer,
            b.seq,
        ))
    });
    let shown = loaded.len().saturating_sub(wanted);
    let journeys = loaded[shown..]
        .iter()
        .map(|journey| journey_entry(journey, state.timeline_form, limits, events))
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
    record: &'a CustomerRecord,
    seq: u32,
    /// The customer's latest journey: the only one a new interaction can join.
    latest: bool,
    journey: &'a JourneyRecord,
}

impl Loaded<'_> {
    fn recency(&self) -> (Time, &str, u32) {
        (self.journey.summary.last_activity, self.customer, self.seq)
    }
}

fn context(loaded: &[Loaded<'_>], note_limit: usize) -> Result<ContextAnswer, ViewError> {
    let open = loaded
        .iter()
        .filter(|j| j.latest && j.journey.summary.status == JourneyStatus::Open)
        .max_by(|a, b| a.recency().cmp(&b.recency()));
    let focus = open.or_else(|| loaded.iter().max_by(|a, b| a.recency().cmp(&b.recency())));
    let last_contact: Option<(Stamp, u8)> = loaded
        .iter()
        .filter_map(|j| j.journey.summary.last_contact)
        .max();
    let last_agent = loaded
        .iter()
        .filter_map(|j| j.journey.summary.last_agent.as_ref())
        .max_by_key(|(stamp, _)| *stamp);
    let (topics, notes) = match focus {
        None => (Vec::new(), Vec::new()),
        Some(focus) => {
            let notes = focus
                .journey
                .notes
                .iter()
                .take(note_limit)
                .map(|(_, note)| {
                    Ok(NoteAnswer {
                        at: note.at.render()?,
                        text: note.text.clone(),
                        agent: note.agent.clone(),
                    })
                })
                .collect::<Result<Vec<_>, ViewError>>()?;
            (focus.journey.summary.topics.clone(), notes)
        }
    };
    Ok(ContextAnswer {
        open_journey_id: open.map(|j| journey_id(&j.journey.summary)),
        last_channel: last_contact
            .map(|(_, channel)| channel_name(channel).map(str::to_owned))
            .transpose()?,
        last_agent: last_agent.map(|(_, agent)| agent.to_string()),
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

fn missing(what: &str) -> ViewError {
    ViewError::Corrupt {
        key: "journey".to_owned(),
        reason: format!("{what} is missing"),
    }
}

fn journey_entry(
    journey: &Loaded<'_>,
    form: TimelineForm,
    limits: JourneyLimits,
    events: &dyn EventSource,
) -> Result<JourneyEntry, ViewError> {
    let summary = &journey.journey.summary;
    let interactions = journey
        .journey
        .path
        .iter()
        .take(limits.interactions)
        .map(|entry| {
            let record = journey
                .record
                .interactions
                .get(&entry.interaction)
                .ok_or_else(|| missing("an interaction of the journey"))?;
            interaction_summary(&entry.interaction, record)
        })
        .collect::<Result<Vec<_>, ViewError>>()?;
    let timeline = match form {
        TimelineForm::Lines => timeline_of_lines(journey, limits),
        TimelineForm::Positions => timeline_of_positions(journey, limits, events),
    }?;
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

/// The first `limits.timeline` lines of a [`TimelineForm::Lines`] timeline, which holds
/// them whole, in timeline order.
fn timeline_of_lines(
    journey: &Loaded<'_>,
    limits: JourneyLimits,
) -> Result<Vec<TimelineEntry>, ViewError> {
    journey
        .journey
        .timeline
        .encoded_lines()
        .take(limits.timeline)
        .map(|line| {
            let line = line?;
            timeline_entry(
                line.stamp,
                interaction_id_of(journey, line.interaction)?,
                line.channel,
                line.event_type,
                render(line.summary, line.channel)?,
            )
        })
        .collect()
}

/// The first `limits.timeline` lines of a [`TimelineForm::Positions`] timeline, ordered by
/// time then position as a [`TimelineForm::Lines`] timeline keeps them, each line made from
/// its event as the fold makes a line. The lines that can be among the first are the first
/// `limits.timeline` lines that are not late (in timeline order among themselves) and the
/// late ones ([`super::records::Position::late`]), which keep their time: the events of the
/// former are read, which gives their times, the late ones are put in their places by the
/// times they keep, and only the events of the late lines that are among the first are
/// read after (one `events` call each time: a customer's events are all in its partition).
/// A journey of a million events answers in at most twice as many reads as it shows lines.
fn timeline_of_positions(
    journey: &Loaded<'_>,
    limits: JourneyLimits,
    events: &dyn EventSource,
) -> Result<Vec<TimelineEntry>, ViewError> {
    let partition = journey.record.partition;
    let stamp_at = |at: Time, offset: u64| Stamp {
        at,
        partition,
        offset,
    };
    let (mut on_time, mut late) = (Vec::new(), Vec::new());
    for line in journey.journey.timeline.positions() {
        let line = line?;
        match line.late {
            Some(at) => late.push((stamp_at(at, line.offset), line.interaction, None)),
            None if on_time.len() < limits.timeline => on_time.push(line),
            None => {}
        }
    }
    let mut lines: Vec<(Stamp, u32, Option<Event>)> = read_lines(
        events,
        partition,
        &on_time.iter().map(|line| line.offset).collect::<Vec<_>>(),
    )?
    .into_iter()
    .zip(&on_time)
    .map(|(event, line)| {
        let stamp = stamp_at(Time::of(&event.occurred_at), line.offset);
        (stamp, line.interaction, Some(event))
    })
    .collect();
    // Of the late lines, only the first few by time can be shown.
    late.sort_unstable_by_key(|&(stamp, _, _)| stamp);
    late.truncate(limits.timeline);
    lines.extend(late);
    lines.sort_by_key(|&(stamp, _, _)| stamp);
    lines.truncate(limits.timeline);
    let unread: Vec<u64> = lines
        .iter()
        .filter(|(_, _, event)| event.is_none())
        .map(|(stamp, _, _)| stamp.offset)
        .collect();
    // `read_lines` gives one event for each offset, in order.
    let mut late_events = read_lines(events, partition, &unread)?.into_iter();
    lines
        .into_iter()
        .map(|(stamp, interaction, event)| {
            let late = event.is_none();
            let event = event
                .or_else(|| late_events.next())
                .ok_or_else(|| missing("the event of a timeline line"))?;
            let interaction_id = interaction_id_of(journey, interaction)?;
            // The event read must be the line's, as the fold checked it (`check`): were a
            // customer's events ever in two partitions, the record's would hold another's
            // event at this offset, and that is an error, not somebody else's line. A late
            // line's time was kept apart from its event, so it must agree with the event's.
            let channel = match super::check(&event) {
                Ok(Some(checked))
                    if checked.customer == journey.customer
                        && checked.interaction_id == interaction_id.as_str()
                        && (!late || Time::of(&event.occurred_at) == stamp.at) =>
                {
                    checked.channel
                }
                _ => {
                    return Err(ViewError::Corrupt {
                        key: journey.customer.to_owned(),
                        reason: format!(
                            "the event at {}/{} is not the event of its timeline line",
                            stamp.partition, stamp.offset
                        ),
                    });
                }
            };
            let summary = render_event(&event, channel)?;
            timeline_entry(
                stamp,
                interaction_id,
                channel,
                event_type_code(event.event_type()),
                summary,
            )
        })
        .collect()
}

/// The events at `offsets` of `partition`, one for each (none asked, none read).
fn read_lines(
    events: &dyn EventSource,
    partition: u32,
    offsets: &[u64],
) -> Result<Vec<Event>, ViewError> {
    if offsets.is_empty() {
        return Ok(Vec::new());
    }
    let read = events.events(partition, offsets)?;
    if read.len() != offsets.len() {
        return Err(missing("the event of a timeline line"));
    }
    Ok(read)
}

/// The id of the interaction a timeline line names by number.
fn interaction_id_of<'a>(journey: &Loaded<'a>, interaction: u32) -> Result<&'a Id, ViewError> {
    journey
        .record
        .interactions
        .id(interaction as usize)
        .ok_or_else(|| missing("the interaction of a timeline line"))
}

/// The answer's entry of a timeline line.
fn timeline_entry(
    stamp: Stamp,
    interaction_id: &Id,
    channel: u8,
    event_type: u8,
    summary: String,
) -> Result<TimelineEntry, ViewError> {
    Ok(TimelineEntry {
        at: stamp.at.render()?,
        channel: channel_name(channel)?.to_owned(),
        interaction_id: interaction_id.to_string(),
        event_type: event_type_name(event_type)?.to_owned(),
        summary,
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
        queue: record.queue.as_ref().map(Id::to_string),
        agents: record.agents.iter().map(Id::to_string).collect(),
        messages: record.messages,
        outcome: record.outcome(),
    })
}

/// [`interaction_with`] returning at most 10 000 events.
pub fn interaction(
    state: &JourneyState,
    records: &dyn RecordSource,
    events: &dyn EventSource,
    interaction_id: &str,
) -> Result<Option<InteractionAnswer>, ViewError> {
    interaction_with(state, records, events, interaction_id, DEFAULT_EVENT_LIMIT)
}

/// An interaction and its first `event_limit` events in log order. Should ingest have
/// recorded events of one interaction id for several customers, the answer is the
/// customer's whose part started first (then the smallest customer id): each part is an
/// interaction of its own customer's journey.
pub fn interaction_with(
    state: &JourneyState,
    records: &dyn RecordSource,
    events: &dyn EventSource,
    interaction_id: &str,
    event_limit: usize,
) -> Result<Option<InteractionAnswer>, ViewError> {
    let prefix = stored_key(INDEX, &interaction_id.to_owned())?;
    let mut best: Option<(String, CustomerRecord)> = None;
    let order = |customer: &str, record: &CustomerRecord| {
        record.interactions.get(interaction_id).map(|r| {
            (
                r.started,
                r.first_partition,
                r.first_offset,
                customer.to_owned(),
            )
        })
    };
    for ((_, customer), ()) in state
        .index
        .scan(&prefix, records)?
        .into_iter()
        .take(SHARED_INTERACTION_LIMIT)
    {
        let customer = customer.into_string();
        let Some(record) = state.customers.read(customer.as_str(), records)? else {
            return Err(missing("the customer of an indexed interaction"));
        };
        let record = record.into_owned();
        let candidate =
            order(&customer, &record).ok_or_else(|| missing("an indexed interaction"))?;
        if best
            .as_ref()
            .and_then(|(c, r)| order(c, r))
            .is_none_or(|current| candidate < current)
        {
            best = Some((customer, record));
        }
    }
    let Some((customer, record)) = best else {
        return Ok(None);
    };
    let interaction = record
        .interactions
        .get(interaction_id)
        .ok_or_else(|| missing("an indexed interaction"))?;
    let journey = record
        .journeys
        .get(interaction.journey as usize)
        .ok_or_else(|| missing("the journey of an interaction"))?;
    let mut offsets = journey
        .timeline
        .offsets_of(state.timeline_form, interaction.number)?;
    offsets.truncate(event_limit);
    let events = events.events(record.partition, &offsets)?;
    Ok(Some(InteractionAnswer {
        interaction: interaction_summary(interaction_id, interaction)?,
        customer_id: customer.clone(),
        journey_id: journey_id(&journey.summary),
        direction: if interaction.outbound {
            "outbound"
        } else {
            "inbound"
        },
        subject: interaction.subject.clone(),
        self_service: interaction.self_service,
        csat: interaction.csat,
        events,
    }))
}

/// The stored entry of `customer`'s record: what an instance that does not own the
/// customer's partition needs to answer the journey of a customer merged with it.
/// Restored into a [`JourneyState`] of whole lines (`JourneyView::default().new_state()`)
/// beside the other members' entries, it answers [`customer_journey`] exactly as the
/// owner's state would. An error for a state whose timelines are positions
/// ([`super::JourneyConfig::timelines_from_log`]: only its own log can answer them).
pub fn customer_entries(
    state: &JourneyState,
    records: &dyn RecordSource,
    customer: &str,
) -> Result<Entries, ViewError> {
    // Another instance restores these entries into a state of whole lines and answers
    // without a log (a projector group's, whose log is Kafka's); a record whose lines are
    // positions in this instance's log cannot be answered there.
    if state.timeline_form == TimelineForm::Positions {
        return Err(ViewError::Storage(
            "this instance's journeys keep their timelines as positions in its embedded log; \
             another instance cannot answer them"
                .to_owned(),
        ));
    }
    let Some(record) = state.customers.read(customer, records)? else {
        return Ok(Vec::new());
    };
    let stored = stored_key(CUSTOMERS, customer)?;
    let bytes = postcard::to_stdvec(record.as_ref()).map_err(|e| ViewError::Corrupt {
        key: customer.to_owned(),
        reason: format!("cannot encode: {e}"),
    })?;
    Ok(vec![(stored, bytes)])
}
