//! The engagement view (issue 18 item 3): the facts the reactors decide on, and the
//! engagement report (`GET /v1/reports/engagement`) over the decisions they made.
//!
//! The view only folds facts; it knows no rule. The reactors (crate `omnilog-reactor`) read
//! it, decide which notices are due at a given time, and append their decisions as events
//! of source [`REACTOR_SOURCE`], which this view folds like any other event: so a replay
//! sees what the live reactors did, and a reactor that starts again sees what it decided.
//!
//! # Rules of the fold
//!
//! Per customer (the events' `customer.id`; merged customers are counted per id):
//!
//! - **Contacts.** An inbound `interaction_started`, an inbound `message` from the
//!   customer, or a `queued`, of an interaction, is the customer contacting the desk; the
//!   interaction's contact time is the earliest of them. Events of [`REACTOR_SOURCE`] and
//!   of the `alert` channel (a monitoring system's, not a customer's) are never contacts.
//! - **Abandonments.** An `abandoned` records its interaction, its channel and its time
//!   (the earliest, if repeated).
//! - **Waiting for an agent.** A contact event (as above) is customer activity, except a
//!   chatbot's or IVR's start or message (the bot answers those; the session's `queued`,
//!   its escalation, is customer activity); an `assigned`, an agent's `message`, a `note`,
//!   a `wrapped_up`, or an outbound `interaction_started` not of the reactor is agent
//!   activity. The customer *waits since* the earliest customer activity later than the
//!   latest agent activity (none: not waiting). Only the times after the latest agent
//!   activity are kept.
//! - **Attributes.** The latest value of each customer attribute (a `customer_profile`'s or
//!   those carried on `customer.attributes`), by `occurred_at` then log position, an empty
//!   value removing the key: the reactors' segments.
//! - **The last channel.** The channel of the customer's latest interaction event, by
//!   `occurred_at` then log position: where a notice without a configured channel goes.
//! - **Decisions.** A `proactive_notice` of [`REACTOR_SOURCE`] is a notice sent under the
//!   rule named by its `reason`, for the trigger in its attribute [`TRIGGER_ATTRIBUTE`];
//!   a `customer_profile` of [`REACTOR_SOURCE`] setting [`HOLDOUT_PREFIX`]`<reason>` to a
//!   trigger is that trigger held out (the customer is in the rule's control group, so no
//!   notice was sent; the profile shows it). Both at their `occurred_at`, the time the
//!   notice was (or would have been) due.
//!
//! Per alert: an `interaction_started` on channel `alert` is an alert firing at its
//! `occurred_at`, with its event's `attributes` (an Alertmanager alert carries its
//! `segment` label there): the alert fires *for* the customers whose attribute of a rule's
//! key equals the alert's attribute of that key.
//!
//! # The report
//!
//! Over the decisions whose time is in `[from, to)`, per reason: `notices`, `customers`
//! (distinct customers notified), `contacted_within_24h` (notices after which the customer
//! contacted the desk: an interaction whose contact time is after the notice and at most
//! [`CONTACT_WINDOW`] after it), `contact_rate`; and the same for the held-out triggers
//! (`held_out`, `held_out_contacted_within_24h`, `held_out_contact_rate`): comparable
//! customers, since a held-out customer met the same trigger of the same rule and was kept
//! out by a hash of the rule and the customer alone. `uplift` = contact rate − held-out
//! contact rate, `null` while either has no decision.
//!
//! # State
//!
//! | tag | key | record |
//! |---|---|---|
//! | `c` | customer | [`CustomerFacts`] |
//! | `d` | hour, customer | `true`: the customer has an open trigger in that hour |
//! | `a` | alert interaction | [`AlertFact`] |
//!
//! `d` indexes the customers by the hours of their open triggers (an abandonment not
//! followed by a contact, the start of a wait for an agent), so that a reactor reads only
//! the customers whose trigger falls in the hours its rules can act on
//! ([`triggered`]), never every customer. An entry goes when its trigger closes; one of a
//! trigger that never closes stays on disk, unread once its hour has passed.
//!
//! A customer's records (`c`, `d`) are folded only from that customer's events, which lie
//! in one partition; an alert's record only from its interaction's events. The customers'
//! records grow with the history and are cached; the alerts (few) are a whole table.
//! Neither depends on how partitions interleave.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, TimeDelta, Utc};
use omnilog_events::{Author, Body, Channel, Destination, Direction, Event};
use serde::{Deserialize, Serialize};

use crate::state::{
    CachedTable, Entries, Evictable, Id, IdKey, RecordSource, SmallMap, Snapshot, StaleMark, Table,
    ViewState, changes_of, evict_together, sorted, stored_key,
};
use crate::{LogPosition, View, ViewError};

/// The `source` of the reactors' decisions.
pub const REACTOR_SOURCE: &str = "omnilog.reactor";

/// The attribute of a reactor's notice that names its trigger.
pub const TRIGGER_ATTRIBUTE: &str = "trigger";

/// The prefix of the customer attribute a held-out trigger sets (`holdout.<reason>`).
pub const HOLDOUT_PREFIX: &str = "holdout.";

/// How long after a notice a contact counts as the customer's answer to it.
pub const CONTACT_WINDOW: TimeDelta = TimeDelta::hours(24);

const CUSTOMERS: u8 = b'c';
const TRIGGERS: u8 = b'd';
const ALERTS: u8 = b'a';

const HOUR_MS: i64 = 3_600_000;

/// The engagement view. See the module documentation for its rules.
#[derive(Clone, Copy, Debug, Default)]
pub struct EngagementView;

/// An event's place in time and in the log: the order in which values replace each other.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
struct Stamp {
    ms: i64,
    partition: u32,
    offset: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct Valued {
    value: String,
    set: Stamp,
}

/// An abandoned interaction.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Abandonment {
    pub at_ms: i64,
    pub channel: Option<String>,
}

/// What the view knows of one customer. Times are milliseconds since the epoch.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CustomerFacts {
    attributes: SmallMap<String, Valued>,
    /// Interaction → its contact time (the earliest contact event).
    contacts: SmallMap<Id, i64>,
    /// Interaction → its abandonment.
    abandoned: SmallMap<Id, Abandonment>,
    /// The latest agent activity.
    last_agent_ms: Option<i64>,
    /// Customer activity later than `last_agent_ms`, ascending.
    waiting: Vec<i64>,
    /// The channel of the latest interaction event.
    last_channel: Option<(Stamp, String)>,
    /// (reason, trigger) → when the notice was due.
    notices: SmallMap<(String, String), i64>,
    /// (reason, trigger) → when the held-out notice would have been due.
    held_out: SmallMap<(String, String), i64>,
    /// The hours under which the `d` index lists the customer.
    indexed: Vec<i64>,
    /// Its open triggers may have moved since `indexed` was brought in step: not stored.
    #[serde(skip)]
    triggers_stale: StaleMark,
}

impl CustomerFacts {
    /// The customer's value of attribute `key`, if it has one.
    pub fn attribute(&self, key: &str) -> Option<&str> {
        self.attributes
            .get(key)
            .map(|valued| valued.value.as_str())
            .filter(|value| !value.is_empty())
    }

    /// Every abandoned interaction of the customer and its abandonment.
    pub fn abandonments(&self) -> impl Iterator<Item = (&str, &Abandonment)> {
        self.abandoned.iter().map(|(id, a)| (id.as_str(), a))
    }

    /// Whether the customer contacted the desk after `after_ms` on an interaction other
    /// than `except`.
    pub fn contacted_after(&self, after_ms: i64, except: &str) -> bool {
        self.contacts
            .iter()
            .any(|(interaction, &at)| at > after_ms && interaction != except)
    }

    /// Since when the customer waits for an agent (see the module documentation).
    pub fn waiting_since(&self) -> Option<i64> {
        self.waiting.first().copied()
    }

    /// The channel of the customer's latest interaction event.
    pub fn last_channel(&self) -> Option<&str> {
        self.last_channel.as_ref().map(|(_, c)| c.as_str())
    }

    /// Whether the reactors already decided on `trigger` of rule `reason` (a notice or a
    /// hold-out).
    pub fn decided(&self, reason: &str, trigger: &str) -> bool {
        let key = (reason.to_owned(), trigger.to_owned());
        self.notices.contains_key(&key) || self.held_out.contains_key(&key)
    }

    /// The latest contact, and the latest of another interaction than its: enough to
    /// answer [`Self::contacted_after`] for every abandonment at once. Asked of each contact
    /// for each abandonment, it was quadratic in a customer's history (every contact
    /// compared by id for every abandonment, on every contact event).
    fn latest_contacts(&self) -> LatestContacts<'_> {
        let mut latest: Option<(&str, i64)> = None;
        let mut other: Option<i64> = None;
        for (interaction, &at) in self.contacts.iter() {
            // Each interaction is in the map once: a contact that is not the latest is of
            // another interaction than the latest's.
            match latest {
                Some((_, best)) if at <= best => other = Some(other.map_or(at, |o| o.max(at))),
                Some((_, best)) => {
                    other = Some(other.map_or(best, |o| o.max(best)));
                    latest = Some((interaction.as_str(), at));
                }
                None => latest = Some((interaction.as_str(), at)),
            }
        }
        LatestContacts { latest, other }
    }

    /// The hours of the customer's open triggers, ascending.
    fn open_hours(&self) -> Vec<i64> {
        let contacts = self.latest_contacts();
        let mut hours: Vec<i64> = self
            .abandoned
            .iter()
            .filter(|(interaction, a)| !contacts.after(a.at_ms, interaction))
            .map(|(_, a)| a.at_ms)
            .chain(self.waiting_since())
            .map(|ms| ms.div_euclid(HOUR_MS))
            .collect();
        hours.sort_unstable();
        hours.dedup();
        hours
    }

    fn contacted_within(&self, at_ms: i64) -> bool {
        let until = at_ms + CONTACT_WINDOW.num_milliseconds();
        self.contacts.values().any(|&t| t > at_ms && t <= until)
    }
}

/// A customer's latest contact and the latest of any other interaction (see
/// [`CustomerFacts::latest_contacts`]).
struct LatestContacts<'a> {
    latest: Option<(&'a str, i64)>,
    other: Option<i64>,
}

impl LatestContacts<'_> {
    /// What [`CustomerFacts::contacted_after`] answers: a contact after `after_ms` on an
    /// interaction other than `except`.
    fn after(&self, after_ms: i64, except: &str) -> bool {
        match self.latest {
            None => false,
            Some((id, at)) if id != except => at > after_ms,
            Some(_) => self.other.is_some_and(|at| at > after_ms),
        }
    }
}

/// An alert that fired.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AlertFact {
    pub at_ms: i64,
    /// The attributes of the alert's `interaction_started` (e.g. `segment`, `severity`).
    pub attributes: BTreeMap<String, String>,
}

/// The engagement view's state. See the module documentation.
#[derive(Clone, Debug)]
pub struct EngagementState {
    customers: CachedTable<Id, CustomerFacts>,
    /// (hour, customer) → the customer has an open trigger in that hour.
    triggers: CachedTable<(i64, Id), bool>,
    /// Customers whose open triggers may have moved since their `d` entries were brought
    /// in step (each marked [`CustomerFacts::triggers_stale`], so listed once): their
    /// entries are brought in step when the changes are taken, once a customer, not once an
    /// event. Their records are changed, so in memory until then.
    stale_triggers: Vec<Id>,
    alerts: Table<String, AlertFact>,
}

impl Default for EngagementState {
    fn default() -> Self {
        EngagementState {
            customers: CachedTable::new(CUSTOMERS),
            triggers: CachedTable::new(TRIGGERS),
            stale_triggers: Vec::new(),
            alerts: Table::new(ALERTS),
        }
    }
}

/// Brings the `d` entries of `stale` customers in step with their open triggers.
fn index_triggers(
    customers: &mut CachedTable<Id, CustomerFacts>,
    triggers: &mut CachedTable<(i64, Id), bool>,
    stale: &[Id],
) -> Result<(), ViewError> {
    for customer in stale {
        let record = customers
            .get_mut(customer.as_str())?
            .ok_or_else(|| ViewError::Corrupt {
                key: customer.to_string(),
                reason: "a customer whose triggers moved is not in memory".to_owned(),
            })?;
        record.triggers_stale.clear();
        let hours = record.open_hours();
        if hours == record.indexed {
            continue;
        }
        for &hour in &record.indexed {
            if hours.binary_search(&hour).is_err() {
                triggers.remove(&(hour, customer.clone()));
            }
        }
        for &hour in &hours {
            if record.indexed.binary_search(&hour).is_err() {
                triggers.insert((hour, customer.clone()), true);
            }
        }
        record.indexed = hours;
    }
    Ok(())
}

/// Two states are equal when they hold the same records (their canonical dumps).
impl PartialEq for EngagementState {
    fn eq(&self, other: &Self) -> bool {
        matches!((self.dump(), other.dump()), (Ok(a), Ok(b)) if a == b)
    }
}

impl ViewState for EngagementState {
    fn whole_tags(&self) -> Vec<u8> {
        vec![ALERTS]
    }

    fn restore(&mut self, stored: &[u8], value: Option<&[u8]>) -> Result<(), ViewError> {
        match stored.first() {
            Some(&CUSTOMERS) => self.customers.restore(stored, value),
            Some(&TRIGGERS) => self.triggers.restore(stored, value),
            Some(&ALERTS) => self.alerts.restore(
                stored,
                value.ok_or_else(|| {
                    ViewError::Storage("a whole table's record without a value".into())
                })?,
            ),
            _ => Err(ViewError::Corrupt {
                key: String::from_utf8_lossy(stored).into_owned(),
                reason: "not a key of the engagement view".to_owned(),
            }),
        }
    }

    fn take_changes(&mut self) -> Result<Snapshot, ViewError> {
        // Before the customers' changes are taken: changing a record afterwards would copy
        // it, then shared with the snapshot.
        let stale = std::mem::take(&mut self.stale_triggers);
        index_triggers(&mut self.customers, &mut self.triggers, &stale)?;
        Ok(changes_of([
            self.customers.take_changes(),
            self.triggers.take_changes(),
            self.alerts.take_changes(),
        ]))
    }

    fn evict(&mut self, budget: usize) {
        evict_together(budget, &mut [&mut self.customers, &mut self.triggers]);
    }

    fn cached_tables(&self) -> Vec<&dyn Evictable> {
        vec![&self.customers, &self.triggers]
    }

    fn starts_empty(&mut self) {
        self.customers.starts_empty();
        self.triggers.starts_empty();
    }

    fn partition_tables(&mut self) -> Vec<&mut dyn Evictable> {
        vec![&mut self.customers, &mut self.triggers]
    }

    fn dump(&self) -> Result<Entries, ViewError> {
        let mut entries = Vec::new();
        if self.stale_triggers.is_empty() {
            self.customers.dump(&mut entries)?;
            self.triggers.dump(&mut entries)?;
        } else {
            // As the changes will be taken: the stale customers' entries brought in step.
            let (mut customers, mut triggers) = (self.customers.clone(), self.triggers.clone());
            index_triggers(&mut customers, &mut triggers, &self.stale_triggers)?;
            customers.dump(&mut entries)?;
            triggers.dump(&mut entries)?;
        }
        self.alerts.dump(&mut entries)?;
        Ok(sorted(entries))
    }
}

fn is_reactor(event: &Event) -> bool {
    event.source.as_deref() == Some(REACTOR_SOURCE)
}

/// Whether the event is the customer contacting the desk.
fn is_contact(event: &Event) -> bool {
    // An alert is logged by a monitoring system, not a customer reaching out.
    if is_reactor(event) || event.channel == Some(Channel::Alert) {
        return false;
    }
    match &event.body {
        Body::InteractionStarted { direction, .. } => *direction == Direction::Inbound,
        Body::Message {
            direction, author, ..
        } => *direction == Direction::Inbound && *author == Author::Customer,
        Body::Queued { .. } => true,
        _ => false,
    }
}

/// Whether a contact event leaves the customer waiting for an agent: a self-service
/// session (chatbot, IVR) does only once it reaches a queue, since the bot answers it.
fn waits_for_agent(event: &Event) -> bool {
    let self_service = matches!(event.channel, Some(Channel::Chatbot | Channel::Ivr));
    !self_service || matches!(event.body, Body::Queued { .. })
}

/// Whether the event is the desk's people acting on the customer's behalf.
fn is_agent_activity(event: &Event) -> bool {
    if is_reactor(event) {
        return false;
    }
    match &event.body {
        Body::Assigned { .. } | Body::Note { .. } | Body::WrappedUp { .. } => true,
        Body::Message { author, .. } => *author == Author::Agent,
        Body::InteractionStarted { direction, .. } => *direction == Direction::Outbound,
        _ => false,
    }
}

/// A reactor's decision carried by `event`: (reason, trigger, is a notice).
fn decision(event: &Event) -> Option<(String, String, bool)> {
    if !is_reactor(event) {
        return None;
    }
    match &event.body {
        Body::ProactiveNotice { reason, .. } => event
            .attributes
            .get(TRIGGER_ATTRIBUTE)
            .map(|trigger| (reason.clone(), trigger.clone(), true)),
        Body::CustomerProfile => event.attributes.iter().find_map(|(key, trigger)| {
            key.strip_prefix(HOLDOUT_PREFIX)
                .filter(|reason| !reason.is_empty() && !trigger.is_empty())
                .map(|reason| (reason.to_owned(), trigger.clone(), false))
        }),
        _ => None,
    }
}

impl View for EngagementView {
    type State = EngagementState;

    fn name(&self) -> &'static str {
        "engagement"
    }

    fn topics(&self) -> &'static [Destination] {
        &[Destination::Interactions]
    }

    /// A customer's facts and trigger entries are its own events' doing, and an alert's
    /// record its own interaction's: all in one partition. A replay writes them and lets
    /// them go once that partition is folded, instead of holding them until the view's
    /// budget fills (a 10M-event replay of this view alone peaked at 626 MB instead of 929).
    fn partition_local(&self) -> bool {
        true
    }

    fn new_state(&self) -> EngagementState {
        EngagementState::default()
    }

    fn missing(
        &self,
        state: &EngagementState,
        event: &Event,
        missing: &mut Vec<Vec<u8>>,
    ) -> Result<(), ViewError> {
        if let Some(customer) = event.customer_id()
            && !state.customers.is_loaded(customer)
        {
            missing.push(state.customers.stored_key(customer)?);
        }
        Ok(())
    }

    fn apply(
        &self,
        state: &mut EngagementState,
        event: &Event,
        position: LogPosition,
    ) -> Result<(), ViewError> {
        let at = crate::epoch::millis(&event.occurred_at);
        let stamp = Stamp {
            ms: at,
            partition: position.partition,
            offset: position.offset,
        };
        if event.channel == Some(Channel::Alert)
            && matches!(event.body, Body::InteractionStarted { .. })
            && let Some(interaction) = event.interaction_id.as_deref()
        {
            let fact = AlertFact {
                at_ms: at,
                attributes: event.attributes.clone(),
            };
            // The earliest firing wins; of equal times the smaller attributes, so the
            // record does not depend on the order two partitions are folded in.
            let replace = state.alerts.get(interaction).is_none_or(|current| {
                (fact.at_ms, &fact.attributes) < (current.at_ms, &current.attributes)
            });
            if replace {
                state.alerts.insert(interaction.to_owned(), fact);
            }
        }
        let Some(customer) = event.customer_id() else {
            return Ok(());
        };
        let record = state.customers.get_or_insert_numbered(
            customer,
            event.customer_number(),
            CustomerFacts::default,
        )?;
        fold_customer(record, event, stamp);
        // Only contacts, agent activity and abandonments open or close triggers.
        let moves =
            is_contact(event) || is_agent_activity(event) || matches!(event.body, Body::Abandoned);
        if !moves {
            return Ok(());
        }
        // The index of open triggers is brought in step when the changes are taken (blind
        // writes: nothing to load), once a customer: brought in step at every event, it was
        // a fifth of the view's fold (196M instructions against 153M, `valgrind
        // --tool=callgrind omnilog replay` of 200k events).
        if record.triggers_stale.set() {
            state.stale_triggers.push(Id::from(customer));
        }
        Ok(())
    }
}

/// Folds `event` into its customer's record.
fn fold_customer(record: &mut CustomerFacts, event: &Event, stamp: Stamp) {
    let at = stamp.ms;
    let mut set = |key: &str, value: &str| match record.attributes.get_mut(key) {
        Some(current) if current.set >= stamp => {}
        Some(current) => {
            crate::state::set_text(&mut current.value, value);
            current.set = stamp;
        }
        None => {
            record.attributes.insert(
                key.to_owned(),
                Valued {
                    value: value.to_owned(),
                    set: stamp,
                },
            );
        }
    };
    if let Some(carried) = event.customer.as_ref().map(|c| &c.attributes) {
        for (key, value) in carried {
            set(key, value);
        }
    }
    if matches!(event.body, Body::CustomerProfile) {
        for (key, value) in &event.attributes {
            set(key, value);
        }
    }
    if let Some((reason, trigger, notice)) = decision(event) {
        let decided = if notice {
            &mut record.notices
        } else {
            &mut record.held_out
        };
        let due = decided.entry((reason, trigger)).or_insert(at);
        *due = (*due).min(at);
    }
    if !event.event_type().is_interaction_event() {
        return;
    }
    if let Some(channel) = event.channel {
        let newer = record
            .last_channel
            .as_ref()
            .is_none_or(|(seen, _)| *seen < stamp);
        if newer {
            // Nearly always the same channel as before: moved on without a new string.
            match &mut record.last_channel {
                Some((seen, name)) if name == channel.as_str() => *seen = stamp,
                last => *last = Some((stamp, channel.as_str().to_owned())),
            }
        }
    }
    let Some(interaction) = &event.interaction_id else {
        return;
    };
    if is_contact(event) {
        // Looked up before inserting: most contacts are of a known interaction, and the
        // map's entry would copy the id for each of them.
        match record.contacts.get_mut(IdKey::new(interaction.as_str())) {
            Some(contact) => *contact = (*contact).min(at),
            None => {
                record.contacts.insert(Id::from(interaction.as_str()), at);
            }
        }
        if waits_for_agent(event) && record.last_agent_ms.is_none_or(|agent| at > agent) {
            let place = record.waiting.partition_point(|&t| t < at);
            record.waiting.insert(place, at);
        }
    }
    if is_agent_activity(event) {
        let latest = record.last_agent_ms.map_or(at, |t| t.max(at));
        record.last_agent_ms = Some(latest);
        record.waiting.retain(|&t| t > latest);
    }
    if matches!(event.body, Body::Abandoned) {
        let abandonment = record
            .abandoned
            .entry(Id::from(interaction.as_str()))
            .or_insert_with(|| Abandonment {
                at_ms: at,
                channel: event.channel.map(|c| c.as_str().to_owned()),
            });
        abandonment.at_ms = abandonment.at_ms.min(at);
    }
}

/// Every customer's facts (from memory and the store), in stored-key order: what the
/// reactors decide on.
pub fn customers(
    state: &EngagementState,
    records: &dyn RecordSource,
) -> Result<Vec<(String, CustomerFacts)>, ViewError> {
    Ok(state
        .customers
        .scan(&[CUSTOMERS], records)?
        .into_iter()
        .map(|(customer, facts)| (customer.into_string(), facts))
        .collect())
}

/// The customers with an open trigger (an abandonment not followed by a contact, or the
/// start of a wait for an agent) in an hour of `[from, to]`, with their facts, in key
/// order: read through the `d` index, so only those customers' records are read.
pub fn triggered(
    state: &EngagementState,
    records: &dyn RecordSource,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> Result<Vec<(String, CustomerFacts)>, ViewError> {
    let (first, last) = (
        from.timestamp_millis().div_euclid(HOUR_MS),
        to.timestamp_millis().div_euclid(HOUR_MS),
    );
    let mut found: BTreeSet<String> = BTreeSet::new();
    for hour in first..=last {
        // A tuple's key is its elements' encodings one after the other, and an integer's
        // encoding is self-delimiting: the hour's encoding prefixes exactly its entries.
        let prefix = stored_key(TRIGGERS, &hour)?;
        for ((_, customer), _) in state.triggers.scan(&prefix, records)? {
            found.insert(customer.into_string());
        }
    }
    // Customers whose triggers moved since their entries were written: as they are now.
    for customer in &state.stale_triggers {
        let in_range = state
            .customers
            .peek(customer.as_str())
            .is_some_and(|record| {
                record
                    .open_hours()
                    .iter()
                    .any(|hour| (first..=last).contains(hour))
            });
        if in_range {
            found.insert(customer.to_string());
        } else {
            found.remove(customer.as_str());
        }
    }
    let mut customers = Vec::with_capacity(found.len());
    for customer in found {
        if let Some(facts) = state.customers.read(customer.as_str(), records)? {
            customers.push((customer, facts.into_owned()));
        }
    }
    Ok(customers)
}

/// Every alert that fired, by interaction id.
pub fn alerts(state: &EngagementState) -> impl Iterator<Item = (&String, &AlertFact)> {
    state.alerts.iter()
}

/// One reason's counts: integers, which merge exactly.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReasonCounts {
    pub notices: u64,
    pub customers: u64,
    pub contacted_within_24h: u64,
    pub held_out: u64,
    pub held_out_contacted_within_24h: u64,
}

impl ReasonCounts {
    fn merge(&mut self, other: &ReasonCounts) {
        self.notices += other.notices;
        self.customers += other.customers;
        self.contacted_within_24h += other.contacted_within_24h;
        self.held_out += other.held_out;
        self.held_out_contacted_within_24h += other.held_out_contacted_within_24h;
    }
}

/// The engagement report's counts over some customers; partials of disjoint partitions
/// merge exactly, in any order.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EngagementPartial {
    /// By reason.
    pub reasons: BTreeMap<String, ReasonCounts>,
}

/// `GET /v1/reports/engagement`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EngagementAnswer {
    /// In reason order.
    pub rows: Vec<EngagementRow>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EngagementRow {
    pub reason: String,
    pub notices: u64,
    pub customers: u64,
    pub contacted_within_24h: u64,
    pub contact_rate: f64,
    pub held_out: u64,
    pub held_out_contacted_within_24h: u64,
    pub held_out_contact_rate: f64,
    /// `contact_rate − held_out_contact_rate`; `null` while either has no decision.
    pub uplift: Option<f64>,
}

fn ratio(part: u64, whole: u64) -> f64 {
    if whole == 0 {
        0.0
    } else {
        part as f64 / whole as f64
    }
}

impl EngagementPartial {
    /// Adds another partial's counts (of other customers) to this one.
    pub fn merge(&mut self, other: EngagementPartial) {
        for (reason, counts) in &other.reasons {
            self.reasons
                .entry(reason.clone())
                .or_default()
                .merge(counts);
        }
    }

    /// The report: rates and uplift.
    pub fn finish(&self) -> EngagementAnswer {
        let rows = self
            .reasons
            .iter()
            .map(|(reason, c)| {
                let contact_rate = ratio(c.contacted_within_24h, c.notices);
                let held_out_contact_rate = ratio(c.held_out_contacted_within_24h, c.held_out);
                EngagementRow {
                    reason: reason.clone(),
                    notices: c.notices,
                    customers: c.customers,
                    contacted_within_24h: c.contacted_within_24h,
                    contact_rate,
                    held_out: c.held_out,
                    held_out_contacted_within_24h: c.held_out_contacted_within_24h,
                    held_out_contact_rate,
                    uplift: (c.notices > 0 && c.held_out > 0)
                        .then_some(contact_rate - held_out_contact_rate),
                }
            })
            .collect();
        EngagementAnswer { rows }
    }
}

/// The partial report over the customers in `state`: the decisions due in `[from, to)`
/// (see the module documentation). Reads every customer's record.
pub fn engagement_report(
    state: &EngagementState,
    records: &dyn RecordSource,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> Result<EngagementPartial, ViewError> {
    if to < from {
        return Err(ViewError::BadQuery {
            parameter: "to".to_owned(),
            message: "must not be before `from`".to_owned(),
        });
    }
    let (from, to) = (from.timestamp_millis(), to.timestamp_millis());
    let within = |at: i64| at >= from && at < to;
    let mut partial = EngagementPartial::default();
    for (_, facts) in customers(state, records)? {
        let mut notified: BTreeSet<&str> = BTreeSet::new();
        for ((reason, _), &at) in &facts.notices {
            if !within(at) {
                continue;
            }
            let counts = partial.reasons.entry(reason.clone()).or_default();
            counts.notices += 1;
            counts.contacted_within_24h += u64::from(facts.contacted_within(at));
            if notified.insert(reason) {
                counts.customers += 1;
            }
        }
        for ((reason, _), &at) in &facts.held_out {
            if !within(at) {
                continue;
            }
            let counts = partial.reasons.entry(reason.clone()).or_default();
            counts.held_out += 1;
            counts.held_out_contacted_within_24h += u64::from(facts.contacted_within(at));
        }
    }
    Ok(partial)
}

#[cfg(test)]
mod tests {
    use super::*;

    proptest::proptest! {
        /// The latest contacts answer for every abandonment what asking each contact does.
        #[test]
        fn the_latest_contacts_answer_as_every_contact_does(
            contacts in proptest::collection::vec((0u8..12, -5i64..40), 0..10),
            asked in proptest::collection::vec((0u8..14, -6i64..42), 1..10),
        ) {
            let mut facts = CustomerFacts::default();
            for (interaction, at) in contacts {
                facts.contacts.insert(Id::from(format!("i{interaction}").as_str()), at);
            }
            let latest = facts.latest_contacts();
            for (except, after) in asked {
                let except = format!("i{except}");
                proptest::prop_assert_eq!(
                    latest.after(after, &except),
                    facts.contacted_after(after, &except),
                    "after {} except {}", after, except
                );
            }
        }
    }
}
