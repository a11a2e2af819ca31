//! The journey view (CONTRACT §5): a customer's interactions grouped into journeys
//! (cases), with each journey's interactions, timeline and notes, the customer's context
//! for an agent, and the cross-channel journeys report.
//!
//! # Rules of the fold
//!
//! - **Interactions.** An interaction is a `(customer, interaction_id)` pair. Whatever
//!   event of an interaction comes first starts it (a `queued` or a `message` may arrive
//!   before the `interaction_started` of the same call); its channel and direction are
//!   those of that first event, and only that first event decides which journey the
//!   interaction joins. Its start is the earliest `occurred_at` of its events.
//! - **Joining.** A new interaction at time `t` looks only at the customer's latest
//!   journey: it joins it when the journey is open and `t` is within `join_window` (72 h)
//!   of the journey's last activity (the latest `occurred_at` of any of its events); a late
//!   interaction that started before that activity joins too, because the fold never
//!   reshuffles journeys it has formed. Otherwise a new journey opens.
//! - **Resolution and reopening.** A `wrapped_up` with `resolved: true` resolves the
//!   journey of its interaction (whichever journey that is). A new interaction within
//!   `reopen_window` (7 days) after the resolution reopens the journey (`reopened_count`
//!   +1, a repeat contact; status back to open, `resolved_at` cleared until the next
//!   resolution). An interaction that started at or before the resolution belongs to the
//!   resolved case and joins without reopening it. An *outbound* interaction (a
//!   `proactive_notice`, or one first seen as an outbound start or message) is the desk's
//!   doing, not a repeat contact: it joins a resolved journey within the reopen window
//!   without reopening it. A `wrapped_up` with `resolved: false` never unresolves a
//!   journey: only a new interaction reopens one.
//! - **A superseded journey.** A journey that was never resolved when a newer one opened
//!   keeps status `open` (nobody resolved it) but can no longer be joined; the context's
//!   `open_journey_id` only ever names a customer's latest journey.
//! - **Event types.** Every interaction event is in the timeline and counts as activity.
//!   `note` is kept whole for the context's notes; `tagged` and a wrap-up's `topics` add to
//!   the journey's topics; `csat` is shown on its interaction; `transferred` moves the
//!   interaction to its queue or agent; `proactive_notice` starts an outbound interaction.
//!   `agent_state` changes no journey. `identity_linked`, `customers_merged` and
//!   `customer_profile` change none either, unless they carry an interaction (its
//!   `interaction_id` and `channel`: provenance, the interaction they were made during):
//!   then they are lines of that interaction's timeline, under the event's customer (the
//!   customer linked to, merged into, or profiled), starting the interaction there if it is
//!   the first event of it the customer has. They are the desk's doing, not a contact:
//!   they reopen no journey and are not the last contact. Merges themselves are answered
//!   at query time, by querying the ids merged together (see [`customer_journey`]).
//! - **Agents.** An agent handles an interaction by `assigned`, by a `transferred` to them,
//!   by a message they author, or by its `wrapped_up` (an `offered` is only a reservation,
//!   a `note` may be anyone's). The context's last agent is the latest such event; FCR's
//!   "first agent-handled interaction" is the interaction of the earliest.
//! - **Contact.** `last_contact_at` and `last_channel` come from the latest event in
//!   contact with the customer: every event but the desk's own after-work (`note`,
//!   `tagged`, `wrapped_up`, `csat`).
//!
//! "Latest" and "earliest" compare `occurred_at`, then log position, so every choice is a
//! deterministic min or max.
//!
//! # State
//!
//! The records are described in `journey/records.rs`: one record per customer, holding its
//! journeys and interactions, brought into memory before the fold needs it
//! ([`View::missing`]) and let go once written when memory is short. An event changes its
//! customer's record in place, adds its line to its journey's timeline (on the embedded log,
//! the event's position and interaction only: a query reads the events from the log, see
//! [`JourneyConfig::timelines_from_log`]); a new
//! interaction also notes its id in the interaction index, and a journey whose report facts
//! change writes them to the facts table. Everything a customer's events write is keyed
//! under that customer, and all of a customer's events are in one partition, in order: the
//! state is the same however partitions interleave, and the same when folded again from
//! offset 0.
//!
//! # Queries
//!
//! [`customer_journey`] answers `GET /v1/customers/{id}/journey`, [`interaction`]
//! `GET /v1/interactions/{id}` and [`journeys_report`] `GET /v1/reports/journeys`. An
//! interaction's events, and a journey's where its lines are kept as positions, are read
//! from the log through an [`EventSource`].

mod query;
mod records;
mod report;
mod summary;

pub use query::{
    ContextAnswer, EventSource, HandleAnswer, InteractionAnswer, InteractionSummary, JourneyAnswer,
    JourneyEntry, JourneyLimits, NoLog, NoteAnswer, TimelineEntry, customer_entries,
    customer_journey, customer_journey_with, interaction, interaction_with,
};
pub use records::{InteractionStatus, JourneyStatus, Outcome};
pub use report::{
    JourneyReport, JourneyReportPartial, PathCount, SelfServiceCounts, SelfServiceFigures,
    SelfServiceReport, journeys_report,
};

use std::borrow::Cow;

use chrono::TimeDelta;
use omnilog_events::identity::omnilog_uuid;
use omnilog_events::{Author, Body, Destination, Direction, Event};

use crate::state::{
    BlindTable, CachedTable, Entries, Evictable, Id, Snapshot, StaleMark, ViewState, changes_of,
    sorted,
};
use crate::{LogPosition, View, ViewError};
use records::{
    CustomerRecord, InteractionRecord, InteractionStatus as Status, JourneyFacts, JourneyRecord,
    JourneySummary, LineHead, NoteRecord, PATH_LIMIT, PathEntry, Stamp, Time, Timeline,
    TimelineForm, channel_code, event_type_code, is_self_service_channel,
};

/// The windows of the journey rules (CONTRACT §5), and how a journey's timeline is kept.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct JourneyConfig {
    /// A new interaction joins the open journey whose last activity is at most this old.
    pub join_window: TimeDelta,
    /// A new interaction this soon after a resolution reopens the journey.
    pub reopen_window: TimeDelta,
    /// Whether a timeline line keeps only its event's position and interaction, and a query
    /// reads the journey's events from the log by position ([`EventSource`]), orders them by
    /// time and renders each line from its event ([`TimelineForm::Positions`]). For a log
    /// that reads an event by position locally (the embedded log: an index lookup and one
    /// read): the line's time, type, channel and summary are then not written at every
    /// event, nor held, encoded and stored with every record (the summary was about a tenth
    /// of a replay's CPU, docs/benchmarks-journal.md, "2026-12-06, evening"; the rest of the
    /// line about 5 % more, "2026-12-07, midday"). Not for Kafka, where each position is a
    /// fetch from a broker and a customer's events lie far apart: the agent desktop's main
    /// query would wait on a round trip per event ("2026-12-05, midday"). The two keep
    /// different records (the view's layout says which), and answer alike.
    pub timelines_from_log: bool,
}

impl JourneyConfig {
    /// How the journeys' timelines are kept under this configuration.
    pub(crate) fn timeline_form(&self) -> TimelineForm {
        if self.timelines_from_log {
            TimelineForm::Positions
        } else {
            TimelineForm::Lines
        }
    }
}

impl Default for JourneyConfig {
    fn default() -> Self {
        JourneyConfig {
            join_window: TimeDelta::hours(72),
            reopen_window: TimeDelta::days(7),
            timelines_from_log: false,
        }
    }
}

/// The journey view. See the module documentation for its rules.
#[derive(Clone, Debug, Default)]
pub struct JourneyView {
    config: JourneyConfig,
}

impl JourneyView {
    pub fn new(config: JourneyConfig) -> Self {
        JourneyView { config }
    }

    pub fn config(&self) -> &JourneyConfig {
        &self.config
    }
}

const CUSTOMERS: u8 = b'c';
const FACTS: u8 = b'f';
const INDEX: u8 = b'x';

/// A journey's facts under its key (customer, journey sequence).
type JourneyFactsEntry = ((Id, u32), JourneyFacts);

/// The journey view's state. See the module documentation.
#[derive(Clone, Debug)]
pub struct JourneyState {
    customers: CachedTable<Id, CustomerRecord>,
    /// Written blind, read only by the journeys report (through the store).
    facts: BlindTable<(Id, u32), JourneyFacts>,
    /// Journeys whose facts changed since their facts were last put in `facts` (each
    /// marked [`JourneyRecord::facts_stale`], so listed once): their facts are derived
    /// from their customer's record when the changes are taken, once a journey, not once
    /// an event (derived and written at every change: the journey worker's instructions
    /// 485M against 470M, `valgrind --tool=callgrind omnilog replay` of 200k events).
    /// Their customers' records are changed, so in memory until then.
    stale_facts: Vec<(Id, u32)>,
    /// Interaction id → customers: written blind, read only by [`interaction`].
    index: BlindTable<(Id, Id), ()>,
    /// How the journeys' timelines are kept (the view's configuration chose, when it made
    /// the state): the fold writes and the queries read that form.
    timeline_form: TimelineForm,
}

impl Default for JourneyState {
    fn default() -> Self {
        JourneyState {
            customers: CachedTable::new(CUSTOMERS),
            facts: BlindTable::new(FACTS),
            stale_facts: Vec::new(),
            index: BlindTable::new(INDEX),
            timeline_form: TimelineForm::default(),
        }
    }
}

impl JourneyState {
    /// An empty state whose timelines are kept as `config` says.
    fn for_config(config: &JourneyConfig) -> Self {
        JourneyState {
            timeline_form: config.timeline_form(),
            ..JourneyState::default()
        }
    }

    /// Customers in memory.
    pub fn customers_in_memory(&self) -> usize {
        self.customers.len()
    }

    /// Puts the facts of the journeys whose facts changed in the facts table.
    fn put_stale_facts(&mut self) -> Result<(), ViewError> {
        for (customer, seq) in std::mem::take(&mut self.stale_facts) {
            let record = self
                .customers
                .get_mut(customer.as_str())?
                .ok_or_else(|| stale_without_record(&customer))?;
            let CustomerRecord {
                journeys,
                interactions,
                ..
            } = record;
            let journey = journeys
                .get_mut(seq as usize)
                .ok_or_else(|| stale_without_record(&customer))?;
            journey.facts_stale.clear();
            let facts = journey.facts(interactions);
            self.facts.insert((customer, seq), facts);
        }
        Ok(())
    }

    /// The facts of the journeys whose facts changed, as the facts table will hold them:
    /// for readers that cannot wait for the changes to be taken (queries, dumps).
    fn stale_facts_now(&self) -> Result<Vec<JourneyFactsEntry>, ViewError> {
        self.stale_facts
            .iter()
            .map(|(customer, seq)| {
                let record = self
                    .customers
                    .peek(customer.as_str())
                    .ok_or_else(|| stale_without_record(customer))?;
                let journey = record
                    .journeys
                    .get(*seq as usize)
                    .ok_or_else(|| stale_without_record(customer))?;
                Ok((
                    (customer.clone(), *seq),
                    journey.facts(&record.interactions),
                ))
            })
            .collect()
    }

    /// Every journey's facts, the changed ones' as they are now (see
    /// [`JourneyState::stale_facts`]).
    fn all_facts(
        &self,
        records: &dyn crate::state::RecordSource,
    ) -> Result<Vec<JourneyFactsEntry>, ViewError> {
        let mut all = self.facts.scan(&[FACTS], records)?;
        if !self.stale_facts.is_empty() {
            // The few changed journeys' entries replaced, not every journey's facts sorted
            // into a map (a live server nearly always has some changed between checkpoints).
            let changed: std::collections::HashSet<&(Id, u32)> = self.stale_facts.iter().collect();
            all.retain(|(key, _)| !changed.contains(key));
            all.extend(self.stale_facts_now()?);
        }
        Ok(all)
    }
}

fn stale_without_record(customer: &str) -> ViewError {
    ViewError::Corrupt {
        key: customer.to_owned(),
        reason: "a journey whose facts changed is not in memory".to_owned(),
    }
}

/// Two states are equal when they hold the same records (their canonical dumps).
impl PartialEq for JourneyState {
    fn eq(&self, other: &Self) -> bool {
        matches!((self.dump(), other.dump()), (Ok(a), Ok(b)) if a == b)
    }
}

impl ViewState for JourneyState {
    fn whole_tags(&self) -> Vec<u8> {
        Vec::new()
    }

    fn restore(&mut self, stored: &[u8], value: Option<&[u8]>) -> Result<(), ViewError> {
        match stored.first() {
            Some(&CUSTOMERS) => self.customers.restore(stored, value),
            Some(&FACTS) => self.facts.restore(stored, value),
            Some(&INDEX) => self.index.restore(stored, value),
            _ => Err(ViewError::Corrupt {
                key: String::from_utf8_lossy(stored).into_owned(),
                reason: "not a key of the journey view".to_owned(),
            }),
        }
    }

    fn take_changes(&mut self) -> Result<Snapshot, ViewError> {
        // Before the customers' changes are taken: clearing a journey's mark afterwards
        // would copy its record, then shared with the snapshot.
        self.put_stale_facts()?;
        Ok(changes_of([
            self.customers.take_changes(),
            self.facts.take_changes(),
            self.index.take_changes(),
        ]))
    }

    fn evict(&mut self, budget: usize) {
        // Facts and index entries are never read by the fold: once written they can go.
        self.facts.evict(0);
        self.index.evict(0);
        self.customers.evict(budget);
    }

    fn cached_tables(&self) -> Vec<&dyn Evictable> {
        vec![&self.customers, &self.facts, &self.index]
    }

    fn starts_empty(&mut self) {
        self.customers.starts_empty();
    }

    fn partition_tables(&mut self) -> Vec<&mut dyn Evictable> {
        vec![&mut self.customers, &mut self.facts, &mut self.index]
    }

    fn dump(&self) -> Result<Entries, ViewError> {
        let mut entries = Vec::new();
        self.customers.dump(&mut entries)?;
        if self.stale_facts.is_empty() {
            self.facts.dump(&mut entries)?;
        } else {
            let mut facts = self.facts.clone();
            for (key, value) in self.stale_facts_now()? {
                facts.insert(key, value);
            }
            facts.dump(&mut entries)?;
        }
        self.index.dump(&mut entries)?;
        Ok(sorted(entries))
    }
}

/// What an event must name to be folded into a journey: checked before anything changes,
/// so an event that cannot be applied leaves nothing behind.
struct Checked<'a> {
    customer: &'a str,
    interaction_id: &'a str,
    channel: u8,
}

fn check(event: &Event) -> Result<Option<Checked<'_>>, ViewError> {
    match event.body {
        Body::AgentState { .. } => return Ok(None),
        // Provenance only: on the timeline of the interaction they were made during, if
        // they name one; merges themselves are answered at query time.
        Body::IdentityLinked { .. } | Body::CustomersMerged { .. } | Body::CustomerProfile => {
            let (Some(customer), Some(interaction_id), Some(channel)) = (
                event.customer_id(),
                event.interaction_id.as_deref(),
                event.channel,
            ) else {
                return Ok(None);
            };
            return Ok(Some(Checked {
                customer,
                interaction_id,
                channel: channel_code(channel),
            }));
        }
        _ => {}
    }
    let customer = event.customer_id().ok_or_else(|| {
        ViewError::Unapplicable("an interaction event without a resolved customer id".into())
    })?;
    let interaction_id = event.interaction_id.as_deref().ok_or_else(|| {
        ViewError::Unapplicable("an interaction event without an interaction_id".into())
    })?;
    let channel = event
        .channel
        .ok_or_else(|| ViewError::Unapplicable("an interaction event without a channel".into()))?;
    Ok(Some(Checked {
        customer,
        interaction_id,
        channel: channel_code(channel),
    }))
}

impl View for JourneyView {
    type State = JourneyState;

    fn name(&self) -> &'static str {
        "journey"
    }

    fn topics(&self) -> &'static [Destination] {
        &[Destination::Interactions]
    }

    /// 4: a customer's journeys in one record, the timeline as rendered lines naming
    /// their interaction by number. 5: a journey's facts carry its self-service figures.
    /// 6: a journey's timeline lines are encoded in one buffer. 8 was 7 with each line's
    /// summary left to be read from the log ([`JourneyConfig::timelines_from_log`]); 9 kept
    /// only each line's position and interaction instead ([`TimelineForm::Positions`]), and
    /// 10 keeps a late line's time too. The two settings are two layouts, and a change of
    /// the records must move both past every number used before (11 and 12 next), so no
    /// store is read as the other's.
    fn layout(&self) -> u32 {
        if self.config.timelines_from_log {
            10
        } else {
            7
        }
    }

    fn new_state(&self) -> JourneyState {
        JourneyState::for_config(&self.config)
    }

    /// A customer's record, its journeys' facts and its interactions' index entries are
    /// all folded from that customer's events, which lie in one partition.
    fn partition_local(&self) -> bool {
        true
    }

    fn missing(
        &self,
        state: &JourneyState,
        event: &Event,
        missing: &mut Vec<Vec<u8>>,
    ) -> Result<(), ViewError> {
        if let Ok(Some(checked)) = check(event)
            && !state.customers.is_loaded(checked.customer)
        {
            missing.push(state.customers.stored_key(checked.customer)?);
        }
        Ok(())
    }

    fn apply(
        &self,
        state: &mut JourneyState,
        event: &Event,
        position: LogPosition,
    ) -> Result<(), ViewError> {
        let Some(checked) = check(event)? else {
            return Ok(());
        };
        let stamp = Stamp {
            at: Time::of(&event.occurred_at),
            partition: position.partition,
            offset: position.offset,
        };
        // The form the state was made with: what its queries read back.
        let timeline_form = state.timeline_form;
        let customer = state.customers.get_or_insert_numbered(
            checked.customer,
            event.customer_number(),
            || CustomerRecord {
                partition: position.partition,
                ..CustomerRecord::default()
            },
        )?;
        let outcome = Fold {
            config: &self.config,
            customer,
            event,
            stamp,
            interaction_id: checked.interaction_id,
            channel: checked.channel,
            timeline_form,
        }
        .run()?;
        if outcome.new_interaction {
            state.index.insert(
                (Id::from(checked.interaction_id), Id::from(checked.customer)),
                (),
            );
        }
        if let Some(seq) = outcome.facts_now_stale {
            state.stale_facts.push((Id::from(checked.customer), seq));
        }
        Ok(())
    }
}

/// What one event's fold did beyond its customer's record.
struct FoldOutcome {
    new_interaction: bool,
    /// The journey whose report facts changed, if they had not changed since they were
    /// last put in the facts table.
    facts_now_stale: Option<u32>,
}

/// One event's fold into its customer's record.
struct Fold<'a> {
    config: &'a JourneyConfig,
    customer: &'a mut CustomerRecord,
    event: &'a Event,
    stamp: Stamp,
    interaction_id: &'a str,
    channel: u8,
    timeline_form: TimelineForm,
}

impl Fold<'_> {
    fn run(mut self) -> Result<FoldOutcome, ViewError> {
        let (stamp, event) = (self.stamp, self.event);
        // One lookup for a known interaction (nearly every event, and nearly always the
        // customer's latest: see `Interactions`).
        let (record, is_new) = match self.customer.interactions.number_of(self.interaction_id) {
            Some(number) => (self.customer.interactions.record_mut(number), false),
            None => {
                let seq = self.place();
                let record = self.new_interaction(seq);
                let record = self
                    .customer
                    .interactions
                    .push(Id::from(self.interaction_id), record);
                (record, true)
            }
        };
        let seq = record.journey;
        let interaction_number = record.number;
        let started_before = record.started;
        apply_to_interaction(record, event, stamp.at);
        let record = record.clone_for_journey();
        let journey_index = seq as usize;
        let Some(journey) = self.customer.journeys.get_mut(journey_index) else {
            return Ok(FoldOutcome {
                new_interaction: is_new,
                facts_now_stale: None,
            });
        };
        let mut facts_changed =
            apply_to_summary(&mut journey.summary, &record, event, stamp, self.channel);
        if is_new || record.started < started_before {
            update_path(journey, self.interaction_id, &record, is_new);
            facts_changed = true;
        }
        // A chatbot or IVR session's escalation or end changes the self-service facts.
        facts_changed |= is_self_service_channel(record.channel)
            && matches!(
                event.body,
                Body::Queued { .. }
                    | Body::Offered { .. }
                    | Body::Assigned { .. }
                    | Body::Transferred { .. }
                    | Body::Ended { .. }
                    | Body::Abandoned
                    | Body::WrappedUp { .. }
                    | Body::Message {
                        author: Author::Agent,
                        ..
                    }
            );
        // A start can make another interaction outbound, which is no contact after a session.
        facts_changed |= matches!(event.body, Body::InteractionStarted { .. })
            && journey
                .summary
                .channels
                .iter()
                .any(|code| is_self_service_channel(*code));
        match self.timeline_form {
            TimelineForm::Lines => {
                let line = LineHead {
                    stamp,
                    interaction: interaction_number,
                    channel: self.channel,
                    event_type: event_type_code(event.event_type()),
                };
                journey
                    .timeline
                    .add_with(&line, |out| summary::write_parts(event, out))?;
            }
            TimelineForm::Positions => journey.timeline.add_position(stamp, interaction_number),
        }
        if let Body::Note { agent_id, text } = &event.body {
            let note = NoteRecord {
                at: stamp.at,
                agent: agent_id.clone(),
                text: text.clone(),
            };
            if journey.notes.last().is_none_or(|(last, _)| *last <= stamp) {
                journey.notes.push((stamp, note));
            } else {
                let at = journey.notes.partition_point(|(s, _)| *s <= stamp);
                journey.notes.insert(at, (stamp, note));
            }
        }
        Ok(FoldOutcome {
            new_interaction: is_new,
            facts_now_stale: (facts_changed && journey.facts_stale.set()).then_some(seq),
        })
    }

    /// Chooses the journey of a new interaction (see the module's rules): its sequence
    /// number, the latest journey reopened or joined, or a new one.
    fn place(&mut self) -> u32 {
        let at = self.stamp.at.total_nanos();
        // The desk's doing (an outbound start, a link or profile made during a call) is
        // not a repeat contact.
        let outbound = self.is_outbound() || is_provenance(&self.event.body);
        let count = self.customer.journeys.len();
        if let Some(latest) = self.customer.journeys.last_mut() {
            let seq = (count - 1) as u32;
            let summary = &mut latest.summary;
            match summary.resolved_at {
                None => {
                    let window = window_nanos(self.config.join_window);
                    if at <= summary.last_activity.total_nanos() + window {
                        return seq;
                    }
                }
                Some(resolved_at) => {
                    let resolved_at = resolved_at.total_nanos();
                    if at <= resolved_at {
                        return seq;
                    }
                    if at <= resolved_at + window_nanos(self.config.reopen_window) {
                        if !outbound {
                            summary.status = JourneyStatus::Open;
                            summary.resolved_at = None;
                            summary.resolved_by = None;
                            summary.reopened_count += 1;
                        }
                        return seq;
                    }
                }
            }
        }
        let seq = self.customer.journeys.len() as u32;
        let mut name = Vec::with_capacity("journey".len() + 64 + self.interaction_id.len() + 2);
        name.extend_from_slice(b"journey\0");
        // The customer id is the record's key; the event names it.
        name.extend_from_slice(self.event.customer_id().unwrap_or_default().as_bytes());
        name.push(0);
        name.extend_from_slice(self.interaction_id.as_bytes());
        self.customer.journeys.push(JourneyRecord {
            summary: JourneySummary {
                id: *omnilog_uuid(&name).as_bytes(),
                opened: self.stamp.at,
                status: JourneyStatus::Open,
                resolved_at: None,
                resolved_by: None,
                reopened_count: 0,
                last_activity: self.stamp.at,
                last_contact: None,
                last_agent: None,
                first_agent: None,
                topics: Vec::new(),
                channels: Vec::new(),
                channel_switches: 0,
                path: Vec::new(),
                path_truncated: false,
                interactions: 0,
                events: 0,
            },
            path: Vec::new(),
            notes: Vec::new(),
            timeline: Timeline::default(),
            facts_stale: StaleMark::default(),
        });
        seq
    }

    /// Whether the interaction this event starts is the desk's doing.
    fn is_outbound(&self) -> bool {
        match &self.event.body {
            Body::ProactiveNotice { .. } => true,
            Body::InteractionStarted { direction, .. } | Body::Message { direction, .. } => {
                *direction == Direction::Outbound
            }
            _ => false,
        }
    }

    fn new_interaction(&self, journey: u32) -> InteractionRecord {
        let number = u32::try_from(self.customer.interactions.len()).unwrap_or(u32::MAX);
        InteractionRecord::begun(
            journey,
            self.channel,
            self.is_outbound(),
            self.stamp,
            number,
        )
    }
}

/// What the summary of a journey needs of an interaction: its order and identity.
struct InteractionView {
    started: Time,
    first_partition: u32,
    first_offset: u64,
    channel: u8,
}

impl InteractionRecord {
    fn clone_for_journey(&self) -> InteractionView {
        InteractionView {
            started: self.started,
            first_partition: self.first_partition,
            first_offset: self.first_offset,
            channel: self.channel,
        }
    }
}

/// Folds the event into its journey's summary; true when the report's facts changed.
fn apply_to_summary(
    summary: &mut JourneySummary,
    record: &InteractionView,
    event: &Event,
    stamp: Stamp,
    channel: u8,
) -> bool {
    let first_event = (record.first_partition, record.first_offset);
    let mut facts_changed = false;
    summary.events += 1;
    summary.last_activity = summary.last_activity.max(stamp.at);
    if is_contact(&event.body) {
        let contact = (stamp, channel);
        if summary.last_contact.is_none_or(|latest| latest < contact) {
            summary.last_contact = Some(contact);
        }
    }
    if let Some(agent) = handling_agent(&event.body) {
        match &mut summary.last_agent {
            // The same agent again (an agent's messages, then the wrap-up): only the stamp
            // moves, the id is not copied again.
            Some((latest, last)) if *latest < stamp => {
                *latest = stamp;
                if last.as_str() != agent {
                    *last = Id::from(agent);
                }
            }
            Some(_) => {}
            None => summary.last_agent = Some((stamp, Id::from(agent))),
        }
        if summary
            .first_agent
            .as_ref()
            .is_none_or(|(earliest, _)| stamp < *earliest)
        {
            summary.first_agent = Some((stamp, first_event));
            facts_changed = true;
        }
    }
    let topics = match &event.body {
        Body::Tagged { topics } | Body::WrappedUp { topics, .. } => topics.as_slice(),
        _ => &[],
    };
    for topic in topics {
        if let Err(at) = summary.topics.binary_search(topic) {
            summary.topics.insert(at, topic.clone());
        }
    }
    if let Body::WrappedUp { resolved: true, .. } = event.body {
        facts_changed = true;
        match summary.resolved_at {
            None => {
                summary.status = JourneyStatus::Resolved;
                summary.resolved_at = Some(stamp.at);
                summary.resolved_by = Some((stamp, first_event));
            }
            Some(resolved_at) => {
                // Resolved again without a reopening (two interactions of the case were
                // wrapped up resolved): the reopen window counts from the latest, FCR
                // looks at the earliest.
                summary.resolved_at = Some(resolved_at.max(stamp.at));
                if summary
                    .resolved_by
                    .as_ref()
                    .is_none_or(|(earliest, _)| stamp < *earliest)
                {
                    summary.resolved_by = Some((stamp, first_event));
                }
            }
        }
    }
    facts_changed
}

/// Puts the interaction in its place in the journey's interaction list and derives the
/// summary's channel figures from the list.
fn update_path(
    journey: &mut JourneyRecord,
    interaction_id: &str,
    record: &InteractionView,
    is_new: bool,
) {
    // A new interaction is in no journey's list yet: not searched for (the search read
    // every entry's id, most of them from memory the fold had not touched for a while).
    let known = if is_new {
        None
    } else {
        journey
            .path
            .iter_mut()
            .find(|entry| entry.interaction == interaction_id)
    };
    match known {
        Some(entry) => entry.started = record.started,
        None => journey.path.push(PathEntry {
            started: record.started,
            partition: record.first_partition,
            offset: record.first_offset,
            interaction: Id::from(interaction_id),
            channel: record.channel,
        }),
    }
    // Nearly always already in order (the new interaction is the latest): a stable sort of
    // a sorted list is one linear pass.
    journey
        .path
        .sort_by_key(|entry| (entry.started, entry.partition, entry.offset));
    derive_channels(&mut journey.summary, &journey.path);
}

/// The summary's figures that depend on the order of the journey's interactions.
fn derive_channels(summary: &mut JourneySummary, path: &[PathEntry]) {
    summary.interactions = u32::try_from(path.len()).unwrap_or(u32::MAX);
    if let Some(first) = path.first() {
        summary.opened = first.started;
    }
    summary.channels.clear();
    summary.path.clear();
    summary.path_truncated = false;
    summary.channel_switches = 0;
    let mut previous: Option<u8> = None;
    for entry in path {
        if !summary.channels.contains(&entry.channel) {
            summary.channels.push(entry.channel);
        }
        if previous == Some(entry.channel) {
            continue;
        }
        if previous.is_some() {
            summary.channel_switches += 1;
        }
        previous = Some(entry.channel);
        if summary.path.len() < PATH_LIMIT {
            summary.path.push(entry.channel);
        } else {
            summary.path_truncated = true;
        }
    }
}

fn window_nanos(window: TimeDelta) -> i128 {
    window.num_nanoseconds().map_or_else(
        || i128::from(window.num_seconds()) * 1_000_000_000,
        i128::from,
    )
}

/// Folds an event into its interaction's record.
fn apply_to_interaction(record: &mut InteractionRecord, event: &Event, at: Time) {
    record.started = record.started.min(at);
    // `ended` and `wrapped_up` are final: a late event cannot bring a finished call back.
    fn settle(current: &mut Status, status: Status) {
        if !matches!(*current, Status::Ended | Status::WrappedUp) {
            *current = status;
        }
    }
    let mut handled_by: Option<&str> = None;
    match &event.body {
        Body::InteractionStarted {
            direction,
            subject,
            self_service,
        } => {
            // The explicit start says who started it, whatever came first.
            record.outbound = *direction == Direction::Outbound;
            if subject.is_some() {
                record.subject.clone_from(subject);
            }
            if *self_service == Some(true) {
                record.self_service = true;
            }
        }
        Body::Message {
            author, agent_id, ..
        } => {
            record.messages = record.messages.saturating_add(1);
            if *author == Author::Agent {
                handled_by = agent_id.as_deref();
            }
        }
        Body::Queued { queue, .. } => {
            record.queue = Some(Id::from(queue));
            record.was_queued = true;
            settle(&mut record.status, Status::Queued);
        }
        Body::Offered { .. } | Body::OfferDeclined { .. } | Body::OfferTimedOut { .. } => {
            // The item stays in its queue while offered, and is free there again after.
            if record.status == Status::Active {
                settle(&mut record.status, Status::Queued);
            }
        }
        Body::Assigned { agent_id } => {
            handled_by = Some(agent_id);
            settle(&mut record.status, Status::Assigned);
        }
        Body::Transferred { to_queue, to_agent } => {
            if let Some(queue) = to_queue {
                record.queue = Some(Id::from(queue));
                record.was_queued = true;
            }
            if let Some(agent) = to_agent {
                handled_by = Some(agent);
                settle(&mut record.status, Status::Assigned);
            } else if to_queue.is_some() {
                settle(&mut record.status, Status::Queued);
            }
        }
        Body::Hold => {
            if record.status == Status::Assigned {
                settle(&mut record.status, Status::OnHold);
            }
        }
        Body::Resumed => {
            if record.status == Status::OnHold {
                settle(&mut record.status, Status::Assigned);
            }
        }
        Body::Abandoned => {
            record.abandoned = true;
            record.ended = Some(record.ended.map_or(at, |ended| ended.max(at)));
            settle(&mut record.status, Status::Ended);
        }
        Body::Ended { reason } => {
            record.ended = Some(record.ended.map_or(at, |ended| ended.max(at)));
            if reason.as_deref() == Some("contained") {
                record.contained = true;
            }
            settle(&mut record.status, Status::Ended);
        }
        Body::WrappedUp {
            agent_id, resolved, ..
        } => {
            handled_by = Some(agent_id);
            record.wrapped = Some(*resolved);
            record.status = Status::WrappedUp;
        }
        Body::Csat { score } => record.csat = Some(*score),
        Body::Note { .. }
        | Body::Tagged { .. }
        | Body::ProactiveNotice { .. }
        | Body::IdentityLinked { .. }
        | Body::CustomersMerged { .. }
        | Body::CustomerProfile
        | Body::AgentState { .. } => {}
    }
    if let Some(agent) = handled_by
        && !record.agents.iter().any(|known| known == agent)
    {
        record.agents.push(Id::from(agent));
    }
}

/// The agent an event shows handling the interaction (see the module's rules).
fn handling_agent(body: &Body) -> Option<&str> {
    match body {
        Body::Assigned { agent_id } | Body::WrappedUp { agent_id, .. } => Some(agent_id),
        Body::Transferred { to_agent, .. } => to_agent.as_deref(),
        Body::Message {
            author: Author::Agent,
            agent_id,
            ..
        } => agent_id.as_deref(),
        _ => None,
    }
}

/// Whether an event is in contact with the customer (not the desk's after-work, nor the
/// provenance of a link, merge or profile).
fn is_contact(body: &Body) -> bool {
    !matches!(
        body,
        Body::Note { .. } | Body::Tagged { .. } | Body::WrappedUp { .. } | Body::Csat { .. }
    ) && !is_provenance(body)
}

/// Whether an event is in a timeline only as provenance (see the module's rules).
fn is_provenance(body: &Body) -> bool {
    matches!(
        body,
        Body::IdentityLinked { .. } | Body::CustomersMerged { .. } | Body::CustomerProfile
    )
}

/// How long a text may be in a timeline summary, in characters.
const EXCERPT_CHARS: usize = 80;

/// The first [`EXCERPT_CHARS`] characters of a text on one line, with `…` when cut.
fn excerpt(text: &str) -> Cow<'_, str> {
    // Most texts are short single lines already: nothing to collapse or cut.
    if is_plain(text) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len().min(EXCERPT_CHARS * 2));
    let mut count = 0;
    for word in text.split_whitespace() {
        if count > 0 {
            if count == EXCERPT_CHARS {
                out.push('…');
                return Cow::Owned(out);
            }
            out.push(' ');
            count += 1;
        }
        for c in word.chars() {
            if count == EXCERPT_CHARS {
                out.push('…');
                return Cow::Owned(out);
            }
            out.push(c);
            count += 1;
        }
    }
    Cow::Owned(out)
}

/// Whether `text` is its own excerpt: at most [`EXCERPT_CHARS`] bytes, all ASCII, no space
/// at either end or next to another, no tab, line feed, form feed or carriage return.
///
/// Read eight bytes at a time, each word tested for all of it at once: as one test after
/// another over the text (`contains("  ")`, `is_ascii`, ...), excerpts took 29.9M
/// instructions of the journey's worker instead of 17.0M (`valgrind --tool=callgrind
/// --separate-threads=yes omnilog replay` of the 200k history; `docs/benchmarks-journal.md`). A
/// plain loop over the bytes was slower than those tests (the same docs).
fn is_plain(text: &str) -> bool {
    const HIGH: u64 = 0x8080_8080_8080_8080;
    const LOW: u64 = 0x7f7f_7f7f_7f7f_7f7f;
    const SPACES: u64 = 0x2020_2020_2020_2020;
    const CONTROL_BITS: u64 = 0x6060_6060_6060_6060;
    /// The high bit of each zero byte of `word`, whose bytes are all below 0x80.
    fn zero_bytes(word: u64) -> u64 {
        !(((word & LOW) + LOW) | word | LOW)
    }
    let bytes = text.as_bytes();
    if bytes.len() > EXCERPT_CHARS || bytes.first() == Some(&b' ') || bytes.last() == Some(&b' ') {
        return false;
    }
    let mut space_before = false;
    let mut chunks = bytes.chunks_exact(8);
    for chunk in &mut chunks {
        let mut word = [0; 8];
        word.copy_from_slice(chunk);
        let word = u64::from_le_bytes(word);
        if word & HIGH != 0 {
            return false;
        }
        // A byte below 0x20 has neither of bits 5 and 6: a control character, which only
        // the four whitespace ones make not plain; rare, so looked at byte by byte.
        if zero_bytes(word & CONTROL_BITS) != 0 && chunk.iter().any(|&b| is_line_space(b)) {
            return false;
        }
        let spaces = zero_bytes(word ^ SPACES);
        // Two spaces in the word (byte i and byte i + 1), or one across from the last.
        if spaces & (spaces >> 8) != 0 || (space_before && spaces & 0x80 != 0) {
            return false;
        }
        space_before = spaces >> 63 != 0;
    }
    for &byte in chunks.remainder() {
        let space = byte == b' ';
        if !byte.is_ascii() || is_line_space(byte) || (space && space_before) {
            return false;
        }
        space_before = space;
    }
    true
}

/// ASCII whitespace other than the space (what [`u8::is_ascii_whitespace`] adds to it).
fn is_line_space(byte: u8) -> bool {
    byte != b' ' && byte.is_ascii_whitespace()
}

#[cfg(test)]
mod tests {
    use super::*;

    use summary::tests::{rendered as describe, test_event};

    #[test]
    fn timeline_lines_describe_each_event_in_words() {
        let event = |body: serde_json::Value| test_event("email", body).unwrap();
        let cases = [
            (
                serde_json::json!({"type": "interaction_started", "direction": "inbound",
                    "self_service": true, "subject": "  Invoice\n wrong "}),
                "inbound self-service email started: Invoice wrong",
            ),
            (
                serde_json::json!({"type": "interaction_started", "direction": "outbound"}),
                "outbound email started",
            ),
            (
                serde_json::json!({"type": "message", "direction": "outbound", "author": "agent",
                    "agent_id": "ann", "text": ""}),
                "message from ann",
            ),
            (
                serde_json::json!({"type": "queued", "queue": "billing", "priority": 3}),
                "queued in billing (priority 3)",
            ),
            (
                serde_json::json!({"type": "queued", "queue": "billing"}),
                "queued in billing",
            ),
            (
                serde_json::json!({"type": "transferred", "to_queue": "tech", "to_agent": "bo"}),
                "transferred to bo in tech",
            ),
            (
                serde_json::json!({"type": "wrapped_up", "agent_id": "ann", "resolved": false,
                    "disposition": "callback", "topics": ["refund", "invoice"]}),
                "wrapped up by ann: unresolved (callback), topics refund, invoice",
            ),
            (
                serde_json::json!({"type": "tagged", "topics": ["refund", "invoice"]}),
                "tagged refund, invoice",
            ),
            (serde_json::json!({"type": "csat", "score": 4}), "rated 4/5"),
            (
                serde_json::json!({"type": "ended", "reason": "hung up"}),
                "ended: hung up",
            ),
            (
                serde_json::json!({"type": "proactive_notice", "reason": "outage"}),
                "proactive notice (outage)",
            ),
        ];
        for (body, line) in cases {
            assert_eq!(describe(&event(body)), line);
        }
    }

    #[test]
    fn facts_that_changed_since_the_last_take_are_dumped_and_taken_as_they_are_now() {
        let event = |at: &str, interaction: &str, body: serde_json::Value| {
            let mut value = serde_json::json!({
                "occurred_at": at, "customer": {"id": "k"},
                "interaction_id": interaction, "channel": "chat",
            });
            value
                .as_object_mut()
                .unwrap()
                .extend(body.as_object().unwrap().clone());
            omnilog_events::json::event_from_value(value).unwrap()
        };
        let view = JourneyView::default();
        let mut state = view.new_state();
        let events = [
            event(
                "2026-03-02T09:00:00Z",
                "c1",
                serde_json::json!({"type": "interaction_started", "direction": "inbound"}),
            ),
            event(
                "2026-03-02T09:05:00Z",
                "c1",
                serde_json::json!({"type": "assigned", "agent_id": "ann"}),
            ),
            event(
                "2026-03-02T09:10:00Z",
                "c1",
                serde_json::json!({"type": "wrapped_up", "agent_id": "ann", "resolved": true}),
            ),
        ];
        for (offset, event) in events.iter().enumerate() {
            let position = LogPosition {
                partition: 0,
                offset: offset as u64,
            };
            crate::apply_in_memory(&view, &mut state, event, position).unwrap();
        }
        // Three changes of one journey's facts, listed once.
        assert_eq!(state.stale_facts.len(), 1);
        let facts_of = |entries: &Entries| -> Vec<JourneyFacts> {
            entries
                .iter()
                .filter(|(key, _)| key.first() == Some(&FACTS))
                .map(|(key, value)| crate::state::decode_value(key, value).unwrap())
                .collect()
        };
        let before = state.dump().unwrap();
        let dumped = facts_of(&before);
        assert_eq!(dumped.len(), 1);
        assert!(dumped[0].resolved && dumped[0].first_contact_resolution);

        let taken = state.take_changes().unwrap().encode().unwrap();
        assert!(state.stale_facts.is_empty());
        assert_eq!(facts_of(&taken.puts), dumped);
        assert_eq!(state.dump().unwrap(), before);

        // A later change lists the journey again, and only then.
        let late = event(
            "2026-03-02T09:20:00Z",
            "c2",
            serde_json::json!({"type": "interaction_started", "direction": "inbound"}),
        );
        let position = LogPosition {
            partition: 0,
            offset: 3,
        };
        crate::apply_in_memory(&view, &mut state, &late, position).unwrap();
        assert_eq!(state.stale_facts.len(), 1);
        let taken = state.take_changes().unwrap().encode().unwrap();
        let now = facts_of(&taken.puts);
        assert_eq!(now.len(), 1);
        assert!(now[0].reopened);
    }

    proptest::proptest! {
        /// The word-at-a-time test says what the tests of the whole text say, whatever the
        /// text's spaces, control characters and non-ASCII bytes and wherever a word ends.
        #[test]
        fn a_text_is_plain_as_its_tests_one_by_one_say(
            text in "[ a-c\t\n\x0b\x0c\r\x01é]{0,90}"
        ) {
            let plain = text.len() <= EXCERPT_CHARS
                && !text.starts_with(' ')
                && !text.ends_with(' ')
                && !text.contains("  ")
                && !text.bytes().any(|b| b.is_ascii_whitespace() && b != b' ')
                && text.is_ascii();
            proptest::prop_assert_eq!(is_plain(&text), plain);
        }
    }

    #[test]
    fn an_excerpt_keeps_eighty_characters_on_one_line() {
        assert_eq!(excerpt("  hello\n  world "), "hello world");
        let long = "x".repeat(100);
        let cut = excerpt(&long);
        assert_eq!(cut.chars().count(), EXCERPT_CHARS + 1);
        assert!(cut.ends_with('…'));
        assert_eq!(excerpt(&"é".repeat(80)), "é".repeat(80));
    }
}
