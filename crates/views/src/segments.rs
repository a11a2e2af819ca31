//! The segments view: each customer's attributes (its profile: `segment`, `department`, any
//! key) and its use of the channels, for `GET /v1/reports/channels?group_by=ATTRIBUTE`
//! (channel use per segment) and the profile shown with a customer's journey.
//!
//! # Rules of the fold
//!
//! - **Attributes.** A `customer_profile` event sets its `attributes` on its customer; any
//!   event sets the attributes its customer carries (`customer.attributes`). Of the values
//!   of one key the latest wins (by `occurred_at`, then log position, so a late event
//!   cannot undo a newer value); an empty value removes the key (and is remembered with its
//!   time, so an older value folded later does not come back).
//! - **Contacts.** Every interaction event (not `agent_state`, `identity_linked`,
//!   `customers_merged` or `customer_profile`, whose interaction is only provenance) belongs
//!   to a contact: the customer's interaction of that id. Its channel is that of the first
//!   of its events, its start the earliest `occurred_at`. It is *inbound* unless the first
//!   event shows the desk starting it (a `proactive_notice`, an outbound start or message);
//!   an `interaction_started` says which, whatever came first. It was *offered* when it was
//!   queued (the earliest `queued`) and *answered in threshold* when its earliest
//!   `assigned` came within the channel's service-level threshold of that (the thresholds
//!   of the reporting view, [`ReportingConfig`]). It is *resolved* at its latest
//!   `wrapped_up` with `resolved: true`.
//!
//! # The report (`GET /v1/reports/channels`)
//!
//! Customers are grouped by their value of the attribute asked for now (customers without
//! it form the group whose key is `null`); a group's figures count the contacts that
//! started in `[from, to)`, per channel:
//!
//! - `interactions`, `inbound`, and `share` = the channel's interactions / the group's;
//! - `offered`, `answered_in_threshold`, `service_level` = answered in threshold / offered
//!   (one entry per interaction: its first queueing);
//! - `resolved`, `repeat_contacts`, `repeat_contact_rate` = repeat contacts / resolved: a
//!   resolved contact is followed by a repeat contact when the same customer comes back
//!   (an inbound contact on any channel) after the resolution and within
//!   [`REPEAT_WINDOW`] (the journey view's reopen window), so the rate says how often a
//!   resolution on that channel did not hold;
//! - the group's `preferred_channel`: the channel of most of its inbound interactions (a
//!   tie goes to the name first in alphabetical order); `null` without any.
//!
//! A customer's `preferred_channel` ([`customer_profile`]) is the one most used recently:
//! the channel of most of its inbound contacts that started within [`RECENT_WINDOW`] of
//! its latest inbound contact (a tie goes to the channel used last). "Recently" is measured
//! from the customer's own latest contact, never from a clock, so the answer is a pure
//! function of the log.
//!
//! Merged customers: a customer's profile is answered over the ids merged into it (the
//! latest value of each key among them); the report groups each id's contacts by that
//! id's own attributes.
//!
//! # State
//!
//! | tag | key | record |
//! |---|---|---|
//! | `p` | customer | `ProfileRecord`: its attributes and its contacts |
//!
//! One record per customer, folded only from that customer's events, which lie in one
//! partition: the state does not depend on how partitions interleave, and the view is
//! partition-local. Records grow with a customer's history, so the table is cached (a
//! record comes into memory when its customer's next event does).

use std::borrow::Cow;
use std::collections::BTreeMap;

use chrono::{DateTime, TimeDelta, Utc};
use omnilog_events::{Body, Channel, Destination, Direction, Event};
use serde::{Deserialize, Serialize};

use crate::reporting::{ReportingConfig, ThresholdsMs};
use crate::state::{
    CachedTable, Entries, Evictable, Id, IdKey, RecordSource, SmallMap, Snapshot, ViewState,
    changes_of, sorted,
};
use crate::{LogPosition, View, ViewError};

const PROFILES: u8 = b'p';

/// How soon after a resolution a contact of the same customer counts as a repeat (the
/// journey view's reopen window, CONTRACT §5).
pub const REPEAT_WINDOW: TimeDelta = TimeDelta::days(7);

/// How far back from a customer's latest inbound contact its preferred channel looks.
pub const RECENT_WINDOW: TimeDelta = TimeDelta::days(90);

/// The group by which the report groups when `group_by` is not given.
pub const DEFAULT_GROUP_BY: &str = "segment";

/// The segments view. See the module documentation for its rules.
#[derive(Clone, Debug)]
pub struct SegmentsView {
    /// The reporting view's service-level thresholds.
    thresholds_ms: ThresholdsMs,
}

impl SegmentsView {
    /// The view with the reporting view's service-level thresholds (changing them needs a
    /// rebuild of both).
    pub fn new(thresholds: ReportingConfig) -> Self {
        SegmentsView {
            thresholds_ms: ThresholdsMs::of(&thresholds),
        }
    }
}

impl Default for SegmentsView {
    fn default() -> Self {
        SegmentsView::new(ReportingConfig::default())
    }
}

/// An event's place in time and in the log: the order in which attribute values replace
/// each other.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
struct Stamp {
    secs: i64,
    nanos: u32,
    partition: u32,
    offset: u64,
}

/// An attribute's value and when it was set. An empty value is a removal, kept so that an
/// older value folded later does not come back.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct Valued {
    value: String,
    set: Stamp,
}

/// One interaction of the customer, as the report counts it. Times are milliseconds since
/// the epoch.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct Contact {
    /// The channel's declaration index in the events crate (new channels are appended).
    channel: u8,
    started_ms: i64,
    /// Started by the desk: its first event was a `proactive_notice` or an outbound start
    /// or message, or an `interaction_started` said so.
    outbound: bool,
    /// Set once an `interaction_started` said who started it.
    direction_known: bool,
    queued_ms: Option<i64>,
    assigned_ms: Option<i64>,
    resolved_ms: Option<i64>,
    /// Whether the earliest assignment came within the channel's threshold of the earliest
    /// queueing: decided by the fold, which knows the thresholds.
    answered_in_threshold: bool,
}

impl Contact {
    fn inbound(&self) -> bool {
        !self.outbound
    }

    /// Whether the earliest assignment came within `threshold_ms` of the earliest queueing
    /// (an assignment before the queueing, by clocks that disagree, waited 0).
    fn answered_in(&self, threshold_ms: i64) -> bool {
        match (self.queued_ms, self.assigned_ms) {
            (Some(queued), Some(assigned)) => (assigned - queued).max(0) <= threshold_ms,
            _ => false,
        }
    }
}

/// A customer's profile and contacts: the view's unit of state.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProfileRecord {
    attributes: SmallMap<String, Valued>,
    /// By interaction id.
    contacts: SmallMap<Id, Contact>,
}

impl ProfileRecord {
    fn attribute(&self, key: &str) -> Option<&str> {
        self.attributes
            .get(key)
            .map(|valued| valued.value.as_str())
            .filter(|value| !value.is_empty())
    }

    fn set_attribute(&mut self, key: &str, value: &str, set: Stamp) {
        match self.attributes.get_mut(key) {
            Some(current) if current.set >= set => {}
            Some(current) => {
                crate::state::set_text(&mut current.value, value);
                current.set = set;
            }
            None => {
                self.attributes.insert(
                    key.to_owned(),
                    Valued {
                        value: value.to_owned(),
                        set,
                    },
                );
            }
        }
    }
}

/// The segments view's state. See the module documentation.
#[derive(Clone, Debug)]
pub struct SegmentsState {
    profiles: CachedTable<Id, ProfileRecord>,
}

impl Default for SegmentsState {
    fn default() -> Self {
        SegmentsState {
            profiles: CachedTable::new(PROFILES),
        }
    }
}

/// Two states are equal when they hold the same records (their canonical dumps).
impl PartialEq for SegmentsState {
    fn eq(&self, other: &Self) -> bool {
        matches!((self.dump(), other.dump()), (Ok(a), Ok(b)) if a == b)
    }
}

impl ViewState for SegmentsState {
    fn whole_tags(&self) -> Vec<u8> {
        Vec::new()
    }

    fn restore(&mut self, stored: &[u8], value: Option<&[u8]>) -> Result<(), ViewError> {
        match stored.first() {
            Some(&PROFILES) => self.profiles.restore(stored, value),
            _ => Err(ViewError::Corrupt {
                key: String::from_utf8_lossy(stored).into_owned(),
                reason: "not a key of the segments view".to_owned(),
            }),
        }
    }

    fn take_changes(&mut self) -> Result<Snapshot, ViewError> {
        Ok(changes_of([self.profiles.take_changes()]))
    }

    fn evict(&mut self, budget: usize) {
        self.profiles.evict(budget);
    }

    fn cached_tables(&self) -> Vec<&dyn Evictable> {
        vec![&self.profiles]
    }

    fn starts_empty(&mut self) {
        self.profiles.starts_empty();
    }

    fn partition_tables(&mut self) -> Vec<&mut dyn Evictable> {
        vec![&mut self.profiles]
    }

    fn dump(&self) -> Result<Entries, ViewError> {
        let mut entries = Vec::new();
        self.profiles.dump(&mut entries)?;
        Ok(sorted(entries))
    }
}

/// What an event changes in its customer's record, checked before anything changes.
enum Touch<'a> {
    /// Nothing of this view.
    Nothing,
    /// The customer's record: its attributes, and the contact of this interaction (on
    /// this channel) for an interaction event.
    Customer {
        customer: &'a str,
        contact: Option<(&'a str, Channel)>,
    },
}

fn touch(event: &Event) -> Result<Touch<'_>, ViewError> {
    let carries_attributes = event
        .customer
        .as_ref()
        .is_some_and(|customer| !customer.attributes.is_empty());
    if !event.event_type().is_interaction_event() {
        let profiles = matches!(event.body, Body::CustomerProfile) || carries_attributes;
        return Ok(match (event.customer_id(), profiles) {
            (Some(customer), true) => Touch::Customer {
                customer,
                contact: None,
            },
            _ => Touch::Nothing,
        });
    }
    let customer = event.customer_id().ok_or_else(|| {
        ViewError::Unapplicable("an interaction event without a resolved customer id".into())
    })?;
    let interaction = event.interaction_id.as_deref().ok_or_else(|| {
        ViewError::Unapplicable("an interaction event without an interaction_id".into())
    })?;
    let channel = event
        .channel
        .ok_or_else(|| ViewError::Unapplicable("an interaction event without a channel".into()))?;
    Ok(Touch::Customer {
        customer,
        contact: Some((interaction, channel)),
    })
}

impl View for SegmentsView {
    type State = SegmentsState;

    fn name(&self) -> &'static str {
        "segments"
    }

    fn topics(&self) -> &'static [Destination] {
        &[Destination::Interactions]
    }

    fn new_state(&self) -> SegmentsState {
        SegmentsState::default()
    }

    /// A customer's record is folded from that customer's events, which lie in one
    /// partition.
    fn partition_local(&self) -> bool {
        true
    }

    fn missing(
        &self,
        state: &SegmentsState,
        event: &Event,
        missing: &mut Vec<Vec<u8>>,
    ) -> Result<(), ViewError> {
        if let Ok(Touch::Customer { customer, .. }) = touch(event)
            && !state.profiles.is_loaded(customer)
        {
            missing.push(state.profiles.stored_key(customer)?);
        }
        Ok(())
    }

    fn apply(
        &self,
        state: &mut SegmentsState,
        event: &Event,
        position: LogPosition,
    ) -> Result<(), ViewError> {
        let Touch::Customer { customer, contact } = touch(event)? else {
            return Ok(());
        };
        let record = state.profiles.get_or_insert_numbered(
            customer,
            event.customer_number(),
            ProfileRecord::default,
        )?;
        let set = Stamp {
            secs: crate::epoch::seconds(&event.occurred_at),
            nanos: event.occurred_at.timestamp_subsec_nanos(),
            partition: position.partition,
            offset: position.offset,
        };
        if let Some(carried) = &event.customer {
            for (key, value) in &carried.attributes {
                record.set_attribute(key, value, set);
            }
        }
        if matches!(event.body, Body::CustomerProfile) {
            for (key, value) in &event.attributes {
                record.set_attribute(key, value, set);
            }
        }
        if let Some((interaction, channel)) = contact {
            let threshold_ms = self.thresholds_ms.of_channel(channel);
            fold_contact(record, interaction, channel, event, threshold_ms);
        }
        Ok(())
    }
}

/// Folds an interaction event into its contact.
fn fold_contact(
    record: &mut ProfileRecord,
    interaction: &str,
    channel: Channel,
    event: &Event,
    threshold_ms: i64,
) {
    let at = crate::epoch::millis(&event.occurred_at);
    // Looked up by the borrowed id first: nearly every event is of a known contact, and
    // `entry` wants an owned key, copied for every event.
    let contact = match record.contacts.get_mut(IdKey::new(interaction)) {
        Some(contact) => contact,
        None => record
            .contacts
            .entry(Id::from(interaction))
            .or_insert_with(|| Contact {
                channel: channel as u8,
                started_ms: at,
                outbound: match &event.body {
                    Body::ProactiveNotice { .. } => true,
                    Body::InteractionStarted { direction, .. }
                    | Body::Message { direction, .. } => *direction == Direction::Outbound,
                    _ => false,
                },
                direction_known: false,
                queued_ms: None,
                assigned_ms: None,
                resolved_ms: None,
                answered_in_threshold: false,
            }),
    };
    contact.started_ms = contact.started_ms.min(at);
    let earliest = |slot: &mut Option<i64>| *slot = Some(slot.map_or(at, |t| t.min(at)));
    match &event.body {
        Body::InteractionStarted { direction, .. } if !contact.direction_known => {
            contact.outbound = *direction == Direction::Outbound;
            contact.direction_known = true;
        }
        Body::Queued { .. } => earliest(&mut contact.queued_ms),
        Body::Transferred {
            to_queue: Some(_), ..
        } if contact.queued_ms.is_none() => earliest(&mut contact.queued_ms),
        Body::Assigned { .. } => earliest(&mut contact.assigned_ms),
        Body::WrappedUp { resolved: true, .. } => {
            contact.resolved_ms = Some(contact.resolved_ms.map_or(at, |t| t.max(at)));
        }
        _ => {}
    }
    contact.answered_in_threshold = contact.answered_in(threshold_ms);
}

/// One channel's figures in a group: integer counts, which merge exactly.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChannelCounts {
    pub interactions: u64,
    pub inbound: u64,
    pub offered: u64,
    pub answered_in_threshold: u64,
    pub resolved: u64,
    pub repeat_contacts: u64,
}

impl ChannelCounts {
    fn merge(&mut self, other: &ChannelCounts) {
        self.interactions += other.interactions;
        self.inbound += other.inbound;
        self.offered += other.offered;
        self.answered_in_threshold += other.answered_in_threshold;
        self.resolved += other.resolved;
        self.repeat_contacts += other.repeat_contacts;
    }
}

/// One group's counts.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupPartial {
    /// The attribute's value; `None` for the customers without it.
    pub key: Option<String>,
    /// Customers of the group with a contact in the range.
    pub customers: u64,
    /// By channel name.
    pub channels: BTreeMap<String, ChannelCounts>,
}

/// The channels report's counts over some customers: what one instance answers for the
/// partitions it owns. Partials of disjoint partitions merge exactly, in any order.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChannelsPartial {
    pub group_by: String,
    /// In key order, the group without the attribute first.
    pub groups: Vec<GroupPartial>,
}

/// `GET /v1/reports/channels`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ChannelsAnswer {
    pub group_by: String,
    /// In key order, the group without the attribute (`key: null`) last.
    pub groups: Vec<GroupAnswer>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct GroupAnswer {
    pub key: Option<String>,
    pub customers: u64,
    pub interactions: u64,
    pub preferred_channel: Option<String>,
    /// Most interactions first, then by name.
    pub channels: Vec<ChannelAnswer>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ChannelAnswer {
    pub channel: String,
    pub interactions: u64,
    pub inbound: u64,
    pub share: f64,
    pub offered: u64,
    pub answered_in_threshold: u64,
    pub service_level: f64,
    pub resolved: u64,
    pub repeat_contacts: u64,
    pub repeat_contact_rate: f64,
}

fn ratio(part: u64, whole: u64) -> f64 {
    if whole == 0 {
        0.0
    } else {
        part as f64 / whole as f64
    }
}

impl ChannelsPartial {
    /// Adds another partial's counts (of other customers) to this one.
    pub fn merge(&mut self, other: ChannelsPartial) {
        if self.group_by.is_empty() {
            self.group_by = other.group_by;
        }
        let mut groups: BTreeMap<Option<String>, GroupPartial> = std::mem::take(&mut self.groups)
            .into_iter()
            .map(|group| (group.key.clone(), group))
            .collect();
        for theirs in other.groups {
            let mine = groups
                .entry(theirs.key.clone())
                .or_insert_with(|| GroupPartial {
                    key: theirs.key.clone(),
                    ..GroupPartial::default()
                });
            mine.customers += theirs.customers;
            for (channel, counts) in &theirs.channels {
                mine.channels
                    .entry(channel.clone())
                    .or_default()
                    .merge(counts);
            }
        }
        self.groups = groups.into_values().collect();
    }

    /// The report: shares, rates and preferred channels.
    pub fn finish(&self) -> ChannelsAnswer {
        let mut groups: Vec<GroupAnswer> = self
            .groups
            .iter()
            .map(|group| {
                let interactions: u64 = group.channels.values().map(|c| c.interactions).sum();
                let preferred_channel = group
                    .channels
                    .iter()
                    .filter(|(_, counts)| counts.inbound > 0)
                    // The most inbound; of equals, the name first in order (`max_by`
                    // keeps the last of equals, so names compare reversed).
                    .max_by(|(a_name, a), (b_name, b)| {
                        a.inbound.cmp(&b.inbound).then_with(|| b_name.cmp(a_name))
                    })
                    .map(|(name, _)| name.clone());
                let mut channels: Vec<ChannelAnswer> = group
                    .channels
                    .iter()
                    .map(|(name, counts)| ChannelAnswer {
                        channel: name.clone(),
                        interactions: counts.interactions,
                        inbound: counts.inbound,
                        share: ratio(counts.interactions, interactions),
                        offered: counts.offered,
                        answered_in_threshold: counts.answered_in_threshold,
                        service_level: ratio(counts.answered_in_threshold, counts.offered),
                        resolved: counts.resolved,
                        repeat_contacts: counts.repeat_contacts,
                        repeat_contact_rate: ratio(counts.repeat_contacts, counts.resolved),
                    })
                    .collect();
                channels.sort_by(|a, b| {
                    b.interactions
                        .cmp(&a.interactions)
                        .then_with(|| a.channel.cmp(&b.channel))
                });
                GroupAnswer {
                    key: group.key.clone(),
                    customers: group.customers,
                    interactions,
                    preferred_channel,
                    channels,
                }
            })
            .collect();
        // `None` sorts first in the partial; the answer lists it last.
        groups.sort_by(|a, b| match (&a.key, &b.key) {
            (Some(a), Some(b)) => a.cmp(b),
            (None, Some(_)) => std::cmp::Ordering::Greater,
            (Some(_), None) => std::cmp::Ordering::Less,
            (None, None) => std::cmp::Ordering::Equal,
        });
        ChannelsAnswer {
            group_by: self.group_by.clone(),
            groups,
        }
    }
}

/// Checks a `group_by` parameter: an attribute key, as events name them.
pub fn parse_group_by(text: Option<&str>) -> Result<String, ViewError> {
    let text = text.unwrap_or(DEFAULT_GROUP_BY);
    let valid = text.len() <= 64
        && text.starts_with(|c: char| c.is_ascii_lowercase())
        && text
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '_' | '-' | '.'));
    if valid {
        Ok(text.to_owned())
    } else {
        Err(ViewError::BadQuery {
            parameter: "group_by".to_owned(),
            message: format!(
                "{text:?} is not an attribute key (lower-case ASCII letters, digits, `_`, `-` and `.`, starting with a letter, at most 64 bytes), such as `segment` or `department`"
            ),
        })
    }
}

fn channel_name(code: u8) -> Result<&'static str, ViewError> {
    Channel::ALL
        .get(usize::from(code))
        .map(|c| c.as_str())
        .ok_or_else(|| ViewError::Corrupt {
            key: "segments channel".to_owned(),
            reason: format!("unknown channel code {code}"),
        })
}

/// The contacts of a record that are repeat contacts' reasons: for each resolved contact,
/// whether the customer came back (an inbound contact started after the resolution and
/// within [`REPEAT_WINDOW`]).
fn came_back(record: &ProfileRecord, resolved_ms: i64) -> bool {
    let window = REPEAT_WINDOW.num_milliseconds();
    record.contacts.values().any(|other| {
        other.inbound()
            && other.started_ms > resolved_ms
            && other.started_ms <= resolved_ms + window
    })
}

/// The partial report over the customers in `state`: their contacts that started in
/// `[from, to)`, grouped by their value of `group_by` (see the module documentation).
/// Reads every customer's record.
pub fn channels_report(
    state: &SegmentsState,
    records: &dyn RecordSource,
    group_by: &str,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> Result<ChannelsPartial, ViewError> {
    if to < from {
        return Err(ViewError::BadQuery {
            parameter: "to".to_owned(),
            message: "must not be before `from`".to_owned(),
        });
    }
    let (from, to) = (from.timestamp_millis(), to.timestamp_millis());
    let mut groups: BTreeMap<Option<String>, GroupPartial> = BTreeMap::new();
    for (_, record) in state.profiles.scan(&[PROFILES], records)? {
        let mut counted = false;
        let key = record.attribute(group_by).map(str::to_owned);
        let group = groups.entry(key.clone()).or_insert_with(|| GroupPartial {
            key,
            ..GroupPartial::default()
        });
        for contact in record.contacts.values() {
            if contact.started_ms < from || contact.started_ms >= to {
                continue;
            }
            counted = true;
            let counts = group
                .channels
                .entry(channel_name(contact.channel)?.to_owned())
                .or_default();
            counts.interactions += 1;
            counts.inbound += u64::from(contact.inbound());
            counts.offered += u64::from(contact.queued_ms.is_some());
            counts.answered_in_threshold += u64::from(contact.answered_in_threshold);
            if let Some(resolved_ms) = contact.resolved_ms {
                counts.resolved += 1;
                counts.repeat_contacts += u64::from(came_back(&record, resolved_ms));
            }
        }
        group.customers += u64::from(counted);
    }
    Ok(ChannelsPartial {
        group_by: group_by.to_owned(),
        groups: groups
            .into_values()
            .filter(|group| !group.channels.is_empty())
            .collect(),
    })
}

/// A customer's profile: what `GET /v1/customers/{id}/journey` shows beside the journeys.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProfileAnswer {
    /// The customer's attributes now (removed keys are absent).
    pub attributes: BTreeMap<String, String>,
    /// The channel the customer used most recently (see the module documentation).
    pub preferred_channel: Option<String>,
}

/// The profile of a customer and the ids merged into it (`members`): the latest value of
/// each attribute among them, and the preferred channel over all their contacts. `None`
/// when none of them has a record.
pub fn customer_profile(
    state: &SegmentsState,
    records: &dyn RecordSource,
    members: &[String],
) -> Result<Option<ProfileAnswer>, ViewError> {
    let mut found: Vec<Cow<'_, ProfileRecord>> = Vec::new();
    for member in members {
        if let Some(record) = state.profiles.read(member.as_str(), records)? {
            found.push(record);
        }
    }
    if found.is_empty() {
        return Ok(None);
    }
    let mut latest: BTreeMap<&str, &Valued> = BTreeMap::new();
    for record in &found {
        for (key, valued) in &record.attributes {
            let newer = latest
                .get(key.as_str())
                .is_none_or(|current| current.set < valued.set);
            if newer {
                latest.insert(key, valued);
            }
        }
    }
    let attributes = latest
        .into_iter()
        .filter(|(_, valued)| !valued.value.is_empty())
        .map(|(key, valued)| (key.to_owned(), valued.value.clone()))
        .collect();
    let inbound: Vec<&Contact> = found
        .iter()
        .flat_map(|record| record.contacts.values())
        .filter(|contact| contact.inbound())
        .collect();
    let preferred_channel = match inbound.iter().map(|c| c.started_ms).max() {
        None => None,
        Some(latest) => {
            let since = latest - RECENT_WINDOW.num_milliseconds();
            // Per channel: (contacts in the window, the latest start among them).
            let mut used: BTreeMap<u8, (u64, i64)> = BTreeMap::new();
            for contact in inbound.iter().filter(|c| c.started_ms >= since) {
                let entry = used.entry(contact.channel).or_insert((0, i64::MIN));
                entry.0 += 1;
                entry.1 = entry.1.max(contact.started_ms);
            }
            used.into_iter()
                .max_by_key(|(code, (count, last))| (*count, *last, std::cmp::Reverse(*code)))
                .map(|(code, _)| channel_name(code).map(str::to_owned))
                .transpose()?
        }
    };
    Ok(Some(ProfileAnswer {
        attributes,
        preferred_channel,
    }))
}

/// One customer's stored record, as the store holds it (none when it has no record): for
/// the profile of customers merged across partitions, whose records are loaded side by side
/// into one state and asked as one ([`customer_profile`] over [`crate::NoRecords`]).
pub fn profile_entries(
    state: &SegmentsState,
    records: &dyn RecordSource,
    customer: &str,
) -> Result<Entries, ViewError> {
    let Some(record) = state.profiles.read(customer, records)? else {
        return Ok(Vec::new());
    };
    let bytes = postcard::to_stdvec(record.as_ref()).map_err(|e| ViewError::Corrupt {
        key: customer.to_owned(),
        reason: format!("cannot encode: {e}"),
    })?;
    Ok(vec![(state.profiles.stored_key(customer)?, bytes)])
}
