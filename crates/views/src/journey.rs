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
//!   `agent_state`, `identity_linked` and `customers_merged` change no journey: merges are
//!   answered at query time, by querying the ids merged together (see [`customer_journey`]).
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
//! The key layout is described in `journey/records.rs`. An event reads two small records (its interaction
//! and its journey's summary) and writes them back with the event itself as its timeline
//! entry; a new interaction also reads the customer record and rewrites the
//! journey's interaction list. Everything a customer's events write is keyed under that
//! customer, and all of a customer's events are in one partition, in order: the state is
//! the same however partitions interleave, and the same when folded again from offset 0.
//!
//! # Queries
//!
//! [`customer_journey`] answers `GET /v1/customers/{id}/journey`, [`interaction`]
//! `GET /v1/interactions/{id}` and [`journeys_report`] `GET /v1/reports/journeys`.

mod query;
mod records;
mod report;

pub use query::{
    ContextAnswer, HandleAnswer, InteractionAnswer, InteractionSummary, JourneyAnswer,
    JourneyEntry, JourneyLimits, NoteAnswer, TimelineEntry, customer_entries, customer_journey,
    customer_journey_with, interaction, interaction_with,
};
pub use records::{InteractionStatus, JourneyStatus, Outcome};
pub use report::{JourneyReport, JourneyReportPartial, PathCount, journeys_report};

use chrono::TimeDelta;
use omnilog_events::identity::OMNILOG_NAMESPACE;
use omnilog_events::{Author, Body, Destination, Direction, Event, encode};
use uuid::Uuid;

use crate::state::{StateStore, get_record, put_record};
use crate::{LogPosition, View, ViewError};
use records::{
    CustomerRecord, InteractionRecord, InteractionStatus as Status, JourneyPath, JourneySummary,
    NoteRecord, PATH_LIMIT, PathEntry, Stamp, Time, channel_code, keys,
};

/// The windows of the journey rules (CONTRACT §5).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct JourneyConfig {
    /// A new interaction joins the open journey whose last activity is at most this old.
    pub join_window: TimeDelta,
    /// A new interaction this soon after a resolution reopens the journey.
    pub reopen_window: TimeDelta,
}

impl Default for JourneyConfig {
    fn default() -> Self {
        JourneyConfig {
            join_window: TimeDelta::hours(72),
            reopen_window: TimeDelta::days(7),
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

impl View for JourneyView {
    fn name(&self) -> &'static str {
        "journey"
    }

    fn topics(&self) -> &'static [Destination] {
        &[Destination::Interactions]
    }

    /// 2: the timeline holds the events (layout 1 kept them under `ev` keys beside it).
    fn layout(&self) -> u32 {
        2
    }

    fn apply(
        &self,
        state: &mut dyn StateStore,
        event: &Event,
        position: LogPosition,
    ) -> Result<(), ViewError> {
        match event.body {
            // No journey changes: merges are answered at query time.
            Body::AgentState { .. } | Body::IdentityLinked | Body::CustomersMerged { .. } => {
                return Ok(());
            }
            _ => {}
        }
        let customer = event.customer_id().ok_or_else(|| {
            ViewError::Unapplicable("an interaction event without a resolved customer id".into())
        })?;
        let interaction_id = event.interaction_id.as_deref().ok_or_else(|| {
            ViewError::Unapplicable("an interaction event without an interaction_id".into())
        })?;
        let channel = event.channel.ok_or_else(|| {
            ViewError::Unapplicable("an interaction event without a channel".into())
        })?;
        // Key parts are separated by NUL: an id containing one could alias another's keys.
        for (what, text) in [
            ("customer id", customer),
            ("interaction_id", interaction_id),
        ] {
            if text.contains('\0') {
                return Err(ViewError::Unapplicable(format!(
                    "the {what} contains a NUL character"
                )));
            }
        }
        let stamp = Stamp {
            at: Time::of(&event.occurred_at),
            partition: position.partition,
            offset: position.offset,
        };
        Fold {
            config: &self.config,
            state,
            event,
            stamp,
            customer,
            interaction_id,
            channel: channel_code(channel),
        }
        .run()
    }
}

/// One event's fold, with what every step needs.
struct Fold<'a> {
    config: &'a JourneyConfig,
    state: &'a mut dyn StateStore,
    event: &'a Event,
    stamp: Stamp,
    customer: &'a str,
    interaction_id: &'a str,
    channel: u8,
}

impl Fold<'_> {
    fn run(mut self) -> Result<(), ViewError> {
        let interaction_key = keys::interaction(self.customer, self.interaction_id);
        let existing: Option<InteractionRecord> = get_record(&*self.state, &interaction_key)?;
        let is_new = existing.is_none();
        let (mut record, mut summary) = match existing {
            Some(record) => {
                let summary = self.summary(record.journey, "the journey of a known interaction")?;
                (record, summary)
            }
            None => {
                let (seq, summary) = self.place()?;
                (self.new_interaction(seq), summary)
            }
        };
        let seq = record.journey;
        let started_before = record.started;
        apply_to_interaction(&mut record, self.event, self.stamp.at);
        let mut facts_changed = self.apply_to_summary(&mut summary, &record);
        if is_new || record.started < started_before {
            self.update_path(&mut summary, &record)?;
            facts_changed = true;
        }

        let (customer, interaction_id, stamp, event) =
            (self.customer, self.interaction_id, self.stamp, self.event);
        let state = &mut *self.state;
        state.put(keys::timeline(customer, seq, &stamp), encode(event));
        if let Body::Note { agent_id, text } = &event.body {
            put_record(
                state,
                keys::note(customer, seq, &stamp),
                &NoteRecord {
                    at: stamp.at,
                    agent: agent_id.clone(),
                    text: text.clone(),
                },
            )?;
        }
        if is_new {
            state.put(
                keys::index(interaction_id, customer),
                customer.as_bytes().to_vec(),
            );
        }
        put_record(state, interaction_key, &record)?;
        if facts_changed {
            put_record(state, keys::facts(customer, seq), &summary.facts())?;
        }
        put_record(state, keys::summary(customer, seq), &summary)
    }

    fn summary(&self, seq: u32, what: &str) -> Result<JourneySummary, ViewError> {
        let key = keys::summary(self.customer, seq);
        get_record(&*self.state, &key)?.ok_or_else(|| ViewError::Corrupt {
            key: String::from_utf8_lossy(&key).into_owned(),
            reason: format!("{what} is missing"),
        })
    }

    /// Chooses the journey of a new interaction (see the module's rules) and returns its
    /// sequence number and summary, reopened or freshly opened as the rules say.
    fn place(&mut self) -> Result<(u32, JourneySummary), ViewError> {
        let customer_key = keys::customer(self.customer);
        let mut customer: CustomerRecord =
            get_record(&*self.state, &customer_key)?.unwrap_or_default();
        if let Some(latest) = customer.journeys.checked_sub(1) {
            let mut summary = self.summary(latest, "the customer's latest journey")?;
            let at = self.stamp.at.total_nanos();
            match summary.resolved_at {
                None => {
                    let window = window_nanos(self.config.join_window);
                    if at <= summary.last_activity.total_nanos() + window {
                        return Ok((latest, summary));
                    }
                }
                Some(resolved_at) => {
                    let resolved_at = resolved_at.total_nanos();
                    if at <= resolved_at {
                        return Ok((latest, summary));
                    }
                    if at <= resolved_at + window_nanos(self.config.reopen_window) {
                        if !self.is_outbound() {
                            summary.status = JourneyStatus::Open;
                            summary.resolved_at = None;
                            summary.resolved_by = None;
                            summary.reopened_count += 1;
                        }
                        return Ok((latest, summary));
                    }
                }
            }
        }
        let seq = customer.journeys;
        customer.journeys += 1;
        put_record(&mut *self.state, customer_key, &customer)?;
        let mut name = Vec::with_capacity(
            "journey".len() + self.customer.len() + self.interaction_id.len() + 2,
        );
        name.extend_from_slice(b"journey\0");
        name.extend_from_slice(self.customer.as_bytes());
        name.push(0);
        name.extend_from_slice(self.interaction_id.as_bytes());
        let summary = JourneySummary {
            id: *Uuid::new_v5(&OMNILOG_NAMESPACE, &name).as_bytes(),
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
        };
        Ok((seq, summary))
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
        InteractionRecord {
            journey,
            channel: self.channel,
            outbound: self.is_outbound(),
            self_service: false,
            subject: None,
            started: self.stamp.at,
            first_partition: self.stamp.partition,
            first_offset: self.stamp.offset,
            ended: None,
            status: Status::Active,
            queue: None,
            agents: Vec::new(),
            messages: 0,
            was_queued: false,
            abandoned: false,
            contained: false,
            wrapped: None,
            csat: None,
        }
    }

    /// Folds the event into its journey's summary; true when the report's facts changed.
    fn apply_to_summary(&self, summary: &mut JourneySummary, record: &InteractionRecord) -> bool {
        let stamp = self.stamp;
        let first_event = (record.first_partition, record.first_offset);
        let mut facts_changed = false;
        summary.events += 1;
        summary.last_activity = summary.last_activity.max(stamp.at);
        if is_contact(&self.event.body) {
            let contact = (stamp, self.channel);
            if summary.last_contact.is_none_or(|latest| latest < contact) {
                summary.last_contact = Some(contact);
            }
        }
        if let Some(agent) = handling_agent(&self.event.body) {
            if summary
                .last_agent
                .as_ref()
                .is_none_or(|(latest, _)| *latest < stamp)
            {
                summary.last_agent = Some((stamp, agent.to_owned()));
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
        let topics = match &self.event.body {
            Body::Tagged { topics } | Body::WrappedUp { topics, .. } => topics.as_slice(),
            _ => &[],
        };
        for topic in topics {
            if let Err(at) = summary.topics.binary_search(topic) {
                summary.topics.insert(at, topic.clone());
            }
        }
        if let Body::WrappedUp { resolved: true, .. } = self.event.body {
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
        &mut self,
        summary: &mut JourneySummary,
        record: &InteractionRecord,
    ) -> Result<(), ViewError> {
        let key = keys::path(self.customer, record.journey);
        let mut path: JourneyPath = get_record(&*self.state, &key)?.unwrap_or_default();
        match path
            .entries
            .iter_mut()
            .find(|entry| entry.interaction == self.interaction_id)
        {
            Some(entry) => entry.started = record.started,
            None => path.entries.push(PathEntry {
                started: record.started,
                partition: record.first_partition,
                offset: record.first_offset,
                interaction: self.interaction_id.to_owned(),
                channel: record.channel,
            }),
        }
        // Nearly always already in order (the new interaction is the latest): a stable
        // sort of a sorted list is one linear pass.
        path.entries
            .sort_by_key(|entry| (entry.started, entry.partition, entry.offset));
        derive_channels(summary, &path);
        put_record(&mut *self.state, key, &path)
    }
}

/// The summary's figures that depend on the order of the journey's interactions.
fn derive_channels(summary: &mut JourneySummary, path: &JourneyPath) {
    summary.interactions = u32::try_from(path.entries.len()).unwrap_or(u32::MAX);
    if let Some(first) = path.entries.first() {
        summary.opened = first.started;
    }
    summary.channels.clear();
    summary.path.clear();
    summary.path_truncated = false;
    summary.channel_switches = 0;
    let mut previous: Option<u8> = None;
    for entry in &path.entries {
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
            record.queue = Some(queue.clone());
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
                record.queue = Some(queue.clone());
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
        | Body::IdentityLinked
        | Body::CustomersMerged { .. }
        | Body::AgentState { .. } => {}
    }
    if let Some(agent) = handled_by
        && !record.agents.iter().any(|known| known == agent)
    {
        record.agents.push(agent.to_owned());
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

/// Whether an event is in contact with the customer (not the desk's after-work).
fn is_contact(body: &Body) -> bool {
    !matches!(
        body,
        Body::Note { .. } | Body::Tagged { .. } | Body::WrappedUp { .. } | Body::Csat { .. }
    )
}

/// How long a text may be in a timeline summary, in characters.
const EXCERPT_CHARS: usize = 80;

/// The first [`EXCERPT_CHARS`] characters of a text on one line, with `…` when cut.
fn excerpt(text: &str) -> String {
    let mut out = String::with_capacity(text.len().min(EXCERPT_CHARS * 2));
    let mut count = 0;
    for word in text.split_whitespace() {
        if count > 0 {
            if count == EXCERPT_CHARS {
                out.push('…');
                return out;
            }
            out.push(' ');
            count += 1;
        }
        for c in word.chars() {
            if count == EXCERPT_CHARS {
                out.push('…');
                return out;
            }
            out.push(c);
            count += 1;
        }
    }
    out
}

/// The timeline's short human line for an event.
fn describe(event: &Event) -> String {
    match &event.body {
        Body::InteractionStarted {
            direction,
            subject,
            self_service,
        } => {
            let channel = event.channel.map_or("", |c| c.as_str());
            let kind = if *self_service == Some(true) {
                " self-service"
            } else {
                ""
            };
            match subject.as_deref().map(excerpt) {
                Some(subject) if !subject.is_empty() => {
                    format!("{direction}{kind} {channel} started: {subject}")
                }
                _ => format!("{direction}{kind} {channel} started"),
            }
        }
        Body::Message {
            author,
            agent_id,
            text,
            ..
        } => {
            let who = match (author, agent_id) {
                (Author::Agent, Some(agent)) => agent.as_str(),
                (author, _) => author.as_str(),
            };
            match text.as_deref().map(excerpt) {
                Some(text) if !text.is_empty() => format!("message from {who}: {text}"),
                _ => format!("message from {who}"),
            }
        }
        Body::Queued {
            queue, priority, ..
        } => match priority {
            0 => format!("queued in {queue}"),
            priority => format!("queued in {queue} (priority {priority})"),
        },
        Body::Offered { agent_id } => format!("offered to {agent_id}"),
        Body::OfferDeclined { agent_id } => format!("{agent_id} declined the offer"),
        Body::OfferTimedOut { agent_id } => format!("offer to {agent_id} timed out"),
        Body::Assigned { agent_id } => format!("assigned to {agent_id}"),
        Body::Transferred { to_queue, to_agent } => match (to_queue, to_agent) {
            (Some(queue), Some(agent)) => format!("transferred to {agent} in {queue}"),
            (Some(queue), None) => format!("transferred to queue {queue}"),
            (None, Some(agent)) => format!("transferred to {agent}"),
            (None, None) => "transferred".to_owned(),
        },
        Body::Hold => "put on hold".to_owned(),
        Body::Resumed => "resumed from hold".to_owned(),
        Body::Abandoned => "abandoned while queued".to_owned(),
        Body::Ended { reason } => match reason.as_deref().map(excerpt) {
            Some(reason) if !reason.is_empty() => format!("ended: {reason}"),
            _ => "ended".to_owned(),
        },
        Body::WrappedUp {
            agent_id,
            resolved,
            disposition,
            topics,
        } => {
            let mut line = format!(
                "wrapped up by {agent_id}: {}",
                if *resolved { "resolved" } else { "unresolved" }
            );
            if let Some(disposition) = disposition.as_deref().map(excerpt)
                && !disposition.is_empty()
            {
                line.push_str(&format!(" ({disposition})"));
            }
            if !topics.is_empty() {
                line.push_str(&format!(", topics {}", topics.join(", ")));
            }
            line
        }
        Body::Csat { score } => format!("rated {score}/5"),
        Body::Note { agent_id, text } => format!("note by {agent_id}: {}", excerpt(text)),
        Body::Tagged { topics } => format!("tagged {}", topics.join(", ")),
        Body::ProactiveNotice { reason, text } => match text.as_deref().map(excerpt) {
            Some(text) if !text.is_empty() => format!("proactive notice ({reason}): {text}"),
            _ => format!("proactive notice ({reason})"),
        },
        Body::IdentityLinked | Body::CustomersMerged { .. } | Body::AgentState { .. } => {
            event.event_type().as_str().to_owned()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
