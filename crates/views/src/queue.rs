//! The queue view (CONTRACT §5 "Queue"): what waits in which queue, in routing order, and
//! which agents can take it.
//!
//! # Rules of the fold
//!
//! - An interaction waits in a queue from `queued` until `assigned`, `abandoned`, `ended`
//!   or `transferred` away. A `queued` for the queue it already waits in only updates its
//!   priority and skills (a re-sent or corrected event must not reset its place in line);
//!   a `queued` for another queue moves it there.
//! - `transferred` with `to_queue` moves it to that queue: its time in queue restarts at the
//!   transfer while its total wait keeps counting from the first `queued` of the current
//!   stay (the stay ends when the interaction is neither waiting nor held by an agent). The
//!   priority and skills of its last `queued` carry over: a transfer moves the work, it
//!   does not restate what the work needs (a following `queued` for the new queue does).
//!   With `to_agent` as well, the item waits in the new queue reserved for that agent; with
//!   only `to_agent`, the agent holds it directly.
//! - `offered` reserves a waiting item for an agent (it stays in line, shown as reserved);
//!   `offer_declined` / `offer_timed_out` by that same agent free it again (one naming
//!   another agent is stale and ignored).
//! - One agent holds an interaction at a time: `assigned` starts the holding (ending a
//!   previous agent's), and it ends at `ended`, `abandoned`, `wrapped_up` by the holder, a
//!   transfer, or a new `queued`.
//!
//! # Keys (each written by exactly one log partition unless said otherwise)
//!
//! | key | record | written by |
//! |---|---|---|
//! | `qi 0 interaction` | `InteractionRecord`: where the interaction waits, who holds it | its customer's partition |
//! | `qw 0 queue 0 -priority 0 enqueued_ms 0 interaction` | `ItemRecord`: a waiting item; the key order is the routing order | its customer's partition |
//! | `qa 0 queue 0 interaction` | empty: an open assignment that came from the queue | its customer's partition |
//! | `as 0 agent 0 interaction` | `AssignmentRecord`: an open assignment | its customer's partition |
//! | `al 0 agent` | `i64`: the latest end of one of the agent's assignments | every partition: a max, so order-free |
//! | `qn 0 queue` | empty: the queue exists | every partition: the same bytes, a set union |
//! | `ag 0 agent` | `AgentRecord`: presence, skills, capacity | the agents topic |
//!
//! The agents topic and the interaction partitions never write the same key, the only
//! keys several partitions share are a max and a set, so the state after folding does not
//! depend on how partitions interleave. Records hold no floats and no hash maps.
//!
//! Queries live in `query`: the per-queue answers and their mergeable partials, the
//! agents, and the routing inputs.

mod query;
mod routing;

pub use query::{
    AgentAnswer, AgentCandidate, AgentCounts, AgentsPartial, QueueAnswer, QueueItem,
    QueueItemAnswer, QueuePartial, QueuesPartial, RoutableItem, agent, agents, available_agents,
    queue, queues, routable,
};
pub use routing::{Offer, plan_offers, plan_offers_with};

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use omnilog_events::{AgentStatus, Body, Channel, Destination, Event};
use serde::{Deserialize, Serialize};

use crate::state::{KeyBuilder, get_record, put_record};
use crate::{LogPosition, StateStore, View, ViewError};

const INTERACTION: &str = "qi";
const ITEM: &str = "qw";
const QUEUE_ASSIGNED: &str = "qa";
const ASSIGNMENT: &str = "as";
const LAST_END: &str = "al";
const QUEUE_NAME: &str = "qn";
const AGENT: &str = "ag";

/// The queue view. See the module documentation.
#[derive(Clone, Copy, Debug, Default)]
pub struct QueueView;

impl View for QueueView {
    fn name(&self) -> &'static str {
        "queue"
    }

    fn topics(&self) -> &'static [Destination] {
        &[Destination::Interactions, Destination::Agents]
    }

    fn apply(
        &self,
        state: &mut dyn StateStore,
        event: &Event,
        _position: LogPosition,
    ) -> Result<(), ViewError> {
        let at = event.occurred_at.timestamp_millis();
        match &event.body {
            Body::AgentState {
                agent_id,
                state: status,
                skills,
                capacity,
            } => apply_agent_state(
                state,
                agent_id,
                *status,
                skills.as_deref(),
                capacity.as_ref(),
                at,
            ),
            Body::Queued {
                queue,
                priority,
                skills,
            } => {
                let mut fold = Fold::open(state, event, true)?;
                fold.queued(queue, *priority, skills)?;
                fold.save()
            }
            Body::Offered { agent_id } => {
                let mut fold = Fold::open(state, event, false)?;
                fold.reserve(|_| Some(agent_id.clone()))
            }
            Body::OfferDeclined { agent_id } | Body::OfferTimedOut { agent_id } => {
                let mut fold = Fold::open(state, event, false)?;
                fold.reserve(|current| match current {
                    Some(holder) if holder == agent_id => None,
                    other => other.map(str::to_owned),
                })
            }
            Body::Assigned { agent_id } => {
                let mut fold = Fold::open(state, event, true)?;
                fold.assigned(agent_id)?;
                fold.save()
            }
            Body::Transferred { to_queue, to_agent } => {
                let mut fold = Fold::open(state, event, to_queue.is_some() || to_agent.is_some())?;
                fold.transferred(to_queue.as_deref(), to_agent.as_deref())?;
                fold.save()
            }
            Body::Abandoned | Body::Ended { .. } => {
                let mut fold = Fold::open(state, event, false)?;
                fold.leave_queue()?;
                fold.end_assignment()?;
                fold.save()
            }
            Body::WrappedUp { agent_id, .. } => {
                let mut fold = Fold::open(state, event, false)?;
                let holds = fold
                    .record
                    .as_ref()
                    .and_then(|r| r.assignment.as_ref())
                    .is_some_and(|h| &h.agent_id == agent_id);
                if holds {
                    fold.end_assignment()?;
                }
                fold.save()
            }
            _ => Ok(()),
        }
    }
}

/// Where an interaction is, as the queue view sees it: `qi 0 interaction`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct InteractionRecord {
    pub customer_id: Option<String>,
    #[serde(with = "channel_name")]
    pub channel: Channel,
    /// The first `queued` (or transfer into a queue) of the current stay, in ms: the
    /// start of the total wait.
    pub first_queued_ms: Option<i64>,
    /// From the last `queued`: carried over by transfers.
    pub priority: i32,
    pub skills: Vec<String>,
    pub waiting: Option<Waiting>,
    pub assignment: Option<Holder>,
}

/// The queue an interaction waits in.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Waiting {
    pub queue: String,
    pub enqueued_ms: i64,
}

/// The agent holding an interaction, and the queue it came from.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Holder {
    pub agent_id: String,
    pub queue: Option<String>,
}

/// A waiting item: `qw 0 queue 0 -priority 0 enqueued_ms 0 interaction`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct ItemRecord {
    pub interaction_id: String,
    pub customer_id: Option<String>,
    #[serde(with = "channel_name")]
    pub channel: Channel,
    pub priority: i32,
    pub enqueued_ms: i64,
    pub first_queued_ms: i64,
    pub skills: Vec<String>,
    pub reserved_for: Option<String>,
}

/// An open assignment: `as 0 agent 0 interaction`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct AssignmentRecord {
    #[serde(with = "channel_name")]
    pub channel: Channel,
    pub queue: Option<String>,
    pub since_ms: i64,
}

/// An agent from the agents topic: `ag 0 agent`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct AgentRecord {
    #[serde(with = "status_name")]
    pub state: AgentStatus,
    pub skills: Vec<String>,
    /// `None` until the agent declares one: then one of each channel (see `query`).
    #[serde(with = "capacity_map::option")]
    pub capacity: Option<BTreeMap<Channel, u32>>,
    /// When the agent last became available (from another state), in ms.
    pub available_since_ms: Option<i64>,
}

impl Default for AgentRecord {
    fn default() -> Self {
        AgentRecord {
            state: AgentStatus::Offline,
            skills: Vec::new(),
            capacity: None,
            available_since_ms: None,
        }
    }
}

fn interaction_key(interaction: &str) -> Vec<u8> {
    KeyBuilder::table(INTERACTION).text(interaction).build()
}

fn item_key(queue: &str, priority: i32, enqueued_ms: i64, interaction: &str) -> Vec<u8> {
    KeyBuilder::table(ITEM)
        .text(queue)
        .signed(-i64::from(priority))
        .signed(enqueued_ms)
        .text(interaction)
        .build()
}

fn queue_items_prefix(queue: &str) -> Vec<u8> {
    KeyBuilder::table(ITEM).text(queue).prefix()
}

fn queue_assigned_key(queue: &str, interaction: &str) -> Vec<u8> {
    KeyBuilder::table(QUEUE_ASSIGNED)
        .text(queue)
        .text(interaction)
        .build()
}

fn assignment_key(agent: &str, interaction: &str) -> Vec<u8> {
    KeyBuilder::table(ASSIGNMENT)
        .text(agent)
        .text(interaction)
        .build()
}

fn last_end_key(agent: &str) -> Vec<u8> {
    KeyBuilder::table(LAST_END).text(agent).build()
}

fn queue_name_key(queue: &str) -> Vec<u8> {
    KeyBuilder::table(QUEUE_NAME).text(queue).build()
}

fn agent_key(agent: &str) -> Vec<u8> {
    KeyBuilder::table(AGENT).text(agent).build()
}

fn apply_agent_state(
    state: &mut dyn StateStore,
    agent_id: &str,
    status: AgentStatus,
    skills: Option<&[String]>,
    capacity: Option<&BTreeMap<Channel, u32>>,
    at: i64,
) -> Result<(), ViewError> {
    let key = agent_key(agent_id);
    let mut record: AgentRecord = get_record(state, &key)?.unwrap_or_default();
    // Idle time counts from the change to available, not from every re-announcement.
    if status == AgentStatus::Available && record.state != AgentStatus::Available {
        record.available_since_ms = Some(at);
    }
    record.state = status;
    if let Some(skills) = skills {
        let mut skills = skills.to_vec();
        skills.sort();
        skills.dedup();
        record.skills = skills;
    }
    if let Some(capacity) = capacity {
        record.capacity = Some(capacity.clone());
    }
    put_record(state, key, &record)
}

/// One interaction event being folded: the interaction's record, loaded once and saved
/// once.
struct Fold<'a> {
    state: &'a mut dyn StateStore,
    interaction: &'a str,
    customer_id: Option<&'a str>,
    channel: Channel,
    at: i64,
    record: Option<InteractionRecord>,
}

impl<'a> Fold<'a> {
    /// Loads the interaction's record; `create` makes an empty one when there is none
    /// (events that only act on a waiting or held interaction pass `false`).
    fn open(
        state: &'a mut dyn StateStore,
        event: &'a Event,
        create: bool,
    ) -> Result<Self, ViewError> {
        let interaction = event.interaction_id.as_deref().ok_or_else(|| {
            ViewError::Unapplicable("an interaction event without interaction_id".into())
        })?;
        let channel = event.channel.ok_or_else(|| {
            ViewError::Unapplicable("an interaction event without channel".into())
        })?;
        let mut record: Option<InteractionRecord> =
            get_record(state, &interaction_key(interaction))?;
        if record.is_none() && create {
            record = Some(InteractionRecord {
                customer_id: event.customer_id().map(str::to_owned),
                channel,
                first_queued_ms: None,
                priority: 0,
                skills: Vec::new(),
                waiting: None,
                assignment: None,
            });
        }
        Ok(Fold {
            state,
            interaction,
            customer_id: event.customer_id(),
            channel,
            at: event.occurred_at.timestamp_millis(),
            record,
        })
    }

    fn current_item_key(&self) -> Option<Vec<u8>> {
        let record = self.record.as_ref()?;
        let waiting = record.waiting.as_ref()?;
        Some(item_key(
            &waiting.queue,
            record.priority,
            waiting.enqueued_ms,
            self.interaction,
        ))
    }

    fn queued(&mut self, queue: &str, priority: i32, skills: &[String]) -> Result<(), ViewError> {
        let same_queue = self
            .record
            .as_ref()
            .and_then(|r| r.waiting.as_ref())
            .is_some_and(|w| w.queue == queue);
        if same_queue {
            // Already waiting there: keep its place in line and its reservation.
            let Some(old_key) = self.current_item_key() else {
                return Ok(());
            };
            let Some(mut item) = get_record::<ItemRecord>(self.state, &old_key)? else {
                return Ok(());
            };
            if let Some(record) = self.record.as_mut() {
                record.priority = priority;
                record.skills = skills.to_vec();
            }
            item.priority = priority;
            item.skills = skills.to_vec();
            self.state.delete(&old_key);
            let new_key = self.current_item_key().unwrap_or(old_key);
            return put_record(self.state, new_key, &item);
        }
        self.leave_queue()?;
        self.end_assignment()?;
        if let Some(record) = self.record.as_mut() {
            record.priority = priority;
            record.skills = skills.to_vec();
        }
        self.enter_queue(queue, None)
    }

    /// Puts the interaction in `queue` as of now, with its record's priority and skills.
    fn enter_queue(&mut self, queue: &str, reserved_for: Option<&str>) -> Result<(), ViewError> {
        let at = self.at;
        let Some(record) = self.record.as_mut() else {
            return Ok(());
        };
        let first_queued_ms = *record.first_queued_ms.get_or_insert(at);
        record.waiting = Some(Waiting {
            queue: queue.to_owned(),
            enqueued_ms: at,
        });
        let item = ItemRecord {
            interaction_id: self.interaction.to_owned(),
            customer_id: record
                .customer_id
                .clone()
                .or_else(|| self.customer_id.map(str::to_owned)),
            channel: record.channel,
            priority: record.priority,
            enqueued_ms: at,
            first_queued_ms,
            skills: record.skills.clone(),
            reserved_for: reserved_for.map(str::to_owned),
        };
        let key = item_key(queue, record.priority, at, self.interaction);
        put_record(self.state, key, &item)?;
        register_queue(self.state, queue)
    }

    /// Takes the interaction out of the queue it waits in, if any.
    fn leave_queue(&mut self) -> Result<(), ViewError> {
        if let Some(key) = self.current_item_key() {
            self.state.delete(&key);
        }
        if let Some(record) = self.record.as_mut() {
            record.waiting = None;
        }
        Ok(())
    }

    /// Ends the holder's assignment, if any, and notes when for the agent's idle time.
    fn end_assignment(&mut self) -> Result<(), ViewError> {
        let Some(holder) = self.record.as_mut().and_then(|r| r.assignment.take()) else {
            return Ok(());
        };
        self.state
            .delete(&assignment_key(&holder.agent_id, self.interaction));
        if let Some(queue) = &holder.queue {
            self.state
                .delete(&queue_assigned_key(queue, self.interaction));
        }
        let key = last_end_key(&holder.agent_id);
        let latest: Option<i64> = get_record(self.state, &key)?;
        if latest.is_none_or(|latest| latest < self.at) {
            put_record(self.state, key, &self.at)?;
        }
        Ok(())
    }

    /// Starts `agent`'s holding of the interaction, which came from `queue` if any.
    fn start_assignment(&mut self, agent: &str, queue: Option<String>) -> Result<(), ViewError> {
        let channel = self.record.as_ref().map_or(self.channel, |r| r.channel);
        let assignment = AssignmentRecord {
            channel,
            queue: queue.clone(),
            since_ms: self.at,
        };
        put_record(
            self.state,
            assignment_key(agent, self.interaction),
            &assignment,
        )?;
        if let Some(queue) = &queue {
            self.state
                .put(queue_assigned_key(queue, self.interaction), Vec::new());
        }
        if let Some(record) = self.record.as_mut() {
            record.assignment = Some(Holder {
                agent_id: agent.to_owned(),
                queue,
            });
        }
        Ok(())
    }

    fn assigned(&mut self, agent: &str) -> Result<(), ViewError> {
        let Some(record) = self.record.as_ref() else {
            return Ok(());
        };
        let from_queue = record.waiting.as_ref().map(|w| w.queue.clone());
        let same_holder = record
            .assignment
            .as_ref()
            .is_some_and(|h| h.agent_id == agent);
        if from_queue.is_none() && same_holder {
            // A repeated `assigned`: the agent already holds it.
            return Ok(());
        }
        self.leave_queue()?;
        self.end_assignment()?;
        self.start_assignment(agent, from_queue)
    }

    fn transferred(
        &mut self,
        to_queue: Option<&str>,
        to_agent: Option<&str>,
    ) -> Result<(), ViewError> {
        self.leave_queue()?;
        self.end_assignment()?;
        match (to_queue, to_agent) {
            (Some(queue), reserved_for) => self.enter_queue(queue, reserved_for),
            (None, Some(agent)) => self.start_assignment(agent, None),
            (None, None) => Ok(()),
        }
    }

    /// Rewrites the reservation of the waiting item, if the interaction waits.
    fn reserve(
        &mut self,
        change: impl FnOnce(Option<&str>) -> Option<String>,
    ) -> Result<(), ViewError> {
        let Some(key) = self.current_item_key() else {
            return Ok(());
        };
        let Some(mut item) = get_record::<ItemRecord>(self.state, &key)? else {
            return Ok(());
        };
        let reserved_for = change(item.reserved_for.as_deref());
        if reserved_for != item.reserved_for {
            item.reserved_for = reserved_for;
            put_record(self.state, key, &item)?;
        }
        Ok(())
    }

    /// Writes the record back; an interaction neither waiting nor held is forgotten
    /// (its stay is over, so its next `queued` starts a new total wait).
    fn save(self) -> Result<(), ViewError> {
        let key = interaction_key(self.interaction);
        match self.record {
            Some(record) if record.waiting.is_some() || record.assignment.is_some() => {
                put_record(self.state, key, &record)
            }
            Some(_) => {
                self.state.delete(&key);
                Ok(())
            }
            None => Ok(()),
        }
    }
}

fn register_queue(state: &mut dyn StateStore, queue: &str) -> Result<(), ViewError> {
    let key = queue_name_key(queue);
    if state.get(&key)?.is_none() {
        state.put(key, Vec::new());
    }
    Ok(())
}

fn millis_to_time(ms: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(ms).unwrap_or_default()
}

/// Whole seconds from `from_ms` to `now`, zero when `now` is earlier (a `?now=` in the
/// past must not give negative ages).
fn seconds_since(from_ms: i64, now: DateTime<Utc>) -> u64 {
    u64::try_from(now.timestamp_millis().saturating_sub(from_ms)).map_or(0, |ms| ms / 1000)
}

/// A channel as its contract name, in records (stable if channels are added) and answers.
pub(crate) mod channel_name {
    use omnilog_events::Channel;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(channel: &Channel, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(channel.as_str())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Channel, D::Error> {
        let name = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        Channel::parse(&name)
            .ok_or_else(|| serde::de::Error::custom(format!("unknown channel {name:?}")))
    }
}

/// An agent presence as its contract name.
pub(crate) mod status_name {
    use omnilog_events::AgentStatus;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(
        status: &AgentStatus,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(status.as_str())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<AgentStatus, D::Error> {
        let name = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        AgentStatus::parse(&name)
            .ok_or_else(|| serde::de::Error::custom(format!("unknown agent state {name:?}")))
    }
}

/// A per-channel count as a map of contract names (`{"voice": 1, "chat": 3}`).
pub(crate) mod capacity_map {
    use std::collections::BTreeMap;

    use omnilog_events::Channel;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(
        map: &BTreeMap<Channel, u32>,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        serializer.collect_map(map.iter().map(|(channel, n)| (channel.as_str(), *n)))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<BTreeMap<Channel, u32>, D::Error> {
        let named = <BTreeMap<std::borrow::Cow<'de, str>, u32>>::deserialize(deserializer)?;
        named
            .into_iter()
            .map(|(name, n)| {
                Channel::parse(&name)
                    .map(|channel| (channel, n))
                    .ok_or_else(|| serde::de::Error::custom(format!("unknown channel {name:?}")))
            })
            .collect()
    }

    /// The same for an optional map.
    pub mod option {
        use super::*;

        pub fn serialize<S: Serializer>(
            map: &Option<BTreeMap<Channel, u32>>,
            serializer: S,
        ) -> Result<S::Ok, S::Error> {
            match map {
                Some(map) => serializer.serialize_some(&Named(map)),
                None => serializer.serialize_none(),
            }
        }

        pub fn deserialize<'de, D: Deserializer<'de>>(
            deserializer: D,
        ) -> Result<Option<BTreeMap<Channel, u32>>, D::Error> {
            #[derive(Deserialize)]
            struct Wrapped(#[serde(with = "super")] BTreeMap<Channel, u32>);
            Ok(Option::<Wrapped>::deserialize(deserializer)?.map(|w| w.0))
        }

        struct Named<'a>(&'a BTreeMap<Channel, u32>);

        impl serde::Serialize for Named<'_> {
            fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                super::serialize(self.0, serializer)
            }
        }
    }
}
