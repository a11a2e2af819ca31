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
//! # State (each table written by exactly one log partition unless said otherwise)
//!
//! | tag | key | record | written by |
//! |---|---|---|---|
//! | `i` | interaction | `InteractionRecord`: where the interaction waits, who holds it | its customer's partition |
//! | `w` | queue, -priority, enqueued_ms, interaction | `ItemRecord`: a waiting item; the key order is the routing order | its customer's partition |
//! | `a` | queue, interaction | nothing: an open assignment that came from the queue | its customer's partition |
//! | `s` | agent, interaction | `AssignmentRecord`: an open assignment | its customer's partition |
//! | `l` | agent | `i64`: the latest end of one of the agent's assignments | every partition: a max, so order-free |
//! | `n` | queue | nothing: the queue exists | every partition: a set union |
//! | `g` | agent | `AgentRecord`: presence, skills, capacity | the agents topic |
//!
//! Every table is wholly in memory: they hold what waits and who holds it now, and the
//! agents, which the desk bounds, not the history (an interaction's records go once it is
//! neither waiting nor held). The agents topic and the interaction partitions never write
//! the same key, the only keys several partitions share are a max and a set, so the state
//! after folding does not depend on how partitions interleave. Records hold no floats and
//! no hash maps.
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

use crate::state::{Entries, HashedTable, Id, Snapshot, Table, ViewState, changes_of, sorted};
use crate::{LogPosition, View, ViewError};

const INTERACTION: u8 = b'i';
const ITEM: u8 = b'w';
const QUEUE_ASSIGNED: u8 = b'a';
const ASSIGNMENT: u8 = b's';
const LAST_END: u8 = b'l';
const QUEUE_NAME: u8 = b'n';
const AGENT: u8 = b'g';

/// A waiting item's key: (queue, -priority, enqueued_ms, interaction). Its order is the
/// routing order within a queue.
/// Queue names and interaction ids inline ([`Id`]): an item's key is made for every
/// lookup of it, and two `String`s allocated and freed each time were a third of the
/// queue fold's instructions (`valgrind --tool=callgrind omnilog replay`).
pub(crate) type ItemKey = (Id, i64, i64, Id);

/// The queue view's state. See the module documentation.
///
/// Its records hold ids inline ([`Id`]) too (customers, queues, agents, skills): a
/// queueing, an assignment and an item's end each made and freed up to five `String`s,
/// and `valgrind --tool=callgrind omnilog replay` of the 200k history counted 8M
/// instructions fewer in all without them (2,008.9M against 2,000.9M). `Id` encodes as
/// a `String` does, so the stored records are unchanged.
#[derive(Clone, Debug)]
pub struct QueueState {
    interactions: HashedTable<Id, InteractionRecord>,
    items: Table<ItemKey, ItemRecord>,
    // Hashed: these are looked up by whole key as interactions are assigned and end, and
    // queries read them whole (they hold what is assigned now, and one entry an agent). In
    // B-trees of two inline ids a key, starting and ending an assignment took 1,800 and
    // 770 instructions, a third of the queue worker's (`valgrind --tool=callgrind
    // --separate-threads=yes omnilog replay` of 1M events).
    queue_assigned: HashedTable<(Id, Id), ()>,
    assignments: HashedTable<(Id, Id), AssignmentRecord>,
    last_end: HashedTable<Id, i64>,
    queue_names: Table<String, ()>,
    agents: Table<String, AgentRecord>,
}

impl Default for QueueState {
    fn default() -> Self {
        QueueState {
            interactions: HashedTable::new(INTERACTION),
            items: Table::new(ITEM),
            queue_assigned: HashedTable::new(QUEUE_ASSIGNED),
            assignments: HashedTable::new(ASSIGNMENT),
            last_end: HashedTable::new(LAST_END),
            queue_names: Table::new(QUEUE_NAME),
            agents: Table::new(AGENT),
        }
    }
}

/// Two states are equal when they hold the same records (their canonical dumps).
impl PartialEq for QueueState {
    fn eq(&self, other: &Self) -> bool {
        matches!((self.dump(), other.dump()), (Ok(a), Ok(b)) if a == b)
    }
}

impl QueueState {
    /// Interaction entries in memory, live or awaiting a checkpoint: bounded by the open
    /// interactions, not by the history (for tests and memory checks).
    pub fn interactions_held(&self) -> usize {
        self.interactions.held()
    }
}

impl ViewState for QueueState {
    fn whole_tags(&self) -> Vec<u8> {
        vec![
            INTERACTION,
            ITEM,
            QUEUE_ASSIGNED,
            ASSIGNMENT,
            LAST_END,
            QUEUE_NAME,
            AGENT,
        ]
    }

    fn restore(&mut self, stored: &[u8], value: Option<&[u8]>) -> Result<(), ViewError> {
        let value = value
            .ok_or_else(|| ViewError::Storage("a whole table's record without a value".into()))?;
        match stored.first() {
            Some(&INTERACTION) => self.interactions.restore(stored, value),
            Some(&ITEM) => self.items.restore(stored, value),
            Some(&QUEUE_ASSIGNED) => self.queue_assigned.restore(stored, value),
            Some(&ASSIGNMENT) => self.assignments.restore(stored, value),
            Some(&LAST_END) => self.last_end.restore(stored, value),
            Some(&QUEUE_NAME) => self.queue_names.restore(stored, value),
            Some(&AGENT) => self.agents.restore(stored, value),
            _ => Err(ViewError::Corrupt {
                key: String::from_utf8_lossy(stored).into_owned(),
                reason: "not a key of the queue view".to_owned(),
            }),
        }
    }

    fn take_changes(&mut self) -> Result<Snapshot, ViewError> {
        Ok(changes_of([
            self.interactions.take_changes(),
            self.items.take_changes(),
            self.queue_assigned.take_changes(),
            self.assignments.take_changes(),
            self.last_end.take_changes(),
            self.queue_names.take_changes(),
            self.agents.take_changes(),
        ]))
    }

    fn dump(&self) -> Result<Entries, ViewError> {
        let mut entries = Vec::new();
        self.interactions.dump(&mut entries)?;
        self.items.dump(&mut entries)?;
        self.queue_assigned.dump(&mut entries)?;
        self.assignments.dump(&mut entries)?;
        self.last_end.dump(&mut entries)?;
        self.queue_names.dump(&mut entries)?;
        self.agents.dump(&mut entries)?;
        Ok(sorted(entries))
    }
}

/// The queue view. See the module documentation.
#[derive(Clone, Copy, Debug, Default)]
pub struct QueueView;

impl View for QueueView {
    type State = QueueState;

    fn name(&self) -> &'static str {
        "queue"
    }

    fn topics(&self) -> &'static [Destination] {
        &[Destination::Interactions, Destination::Agents]
    }

    /// 2: typed tables (layout 1 was a key-value state).
    fn layout(&self) -> u32 {
        2
    }

    fn new_state(&self) -> QueueState {
        QueueState::default()
    }

    fn apply(
        &self,
        state: &mut QueueState,
        event: &Event,
        _position: LogPosition,
    ) -> Result<(), ViewError> {
        let at = crate::epoch::millis(&event.occurred_at);
        let over = match &event.body {
            Body::AgentState {
                agent_id,
                state: status,
                skills,
                capacity,
            } => {
                apply_agent_state(
                    state,
                    agent_id,
                    *status,
                    skills.as_deref(),
                    capacity.as_ref(),
                    at,
                );
                return Ok(());
            }
            Body::Queued {
                queue,
                priority,
                skills,
            } => {
                let mut fold = Fold::open(state, event, true)?;
                fold.queued(queue, *priority, skills);
                fold.finish()
            }
            Body::Offered { agent_id } => {
                let mut fold = Fold::open(state, event, false)?;
                fold.reserve(|_| Some(Id::from(agent_id.as_str())));
                fold.finish()
            }
            Body::OfferDeclined { agent_id } | Body::OfferTimedOut { agent_id } => {
                let mut fold = Fold::open(state, event, false)?;
                fold.reserve(|current| match current {
                    Some(holder) if holder == agent_id => None,
                    other => other.map(Id::from),
                });
                fold.finish()
            }
            Body::Assigned { agent_id } => {
                let mut fold = Fold::open(state, event, true)?;
                fold.assigned(agent_id);
                fold.finish()
            }
            Body::Transferred { to_queue, to_agent } => {
                let mut fold = Fold::open(state, event, to_queue.is_some() || to_agent.is_some())?;
                fold.transferred(to_queue.as_deref(), to_agent.as_deref());
                fold.finish()
            }
            Body::Abandoned | Body::Ended { .. } => {
                let mut fold = Fold::open(state, event, false)?;
                fold.leave_queue();
                fold.end_assignment();
                fold.finish()
            }
            Body::WrappedUp { agent_id, .. } => {
                let mut fold = Fold::open(state, event, false)?;
                let holds = fold
                    .record
                    .as_deref()
                    .and_then(|r| r.assignment.as_ref())
                    .is_some_and(|h| &h.agent_id == agent_id);
                if holds {
                    fold.end_assignment();
                }
                fold.finish()
            }
            _ => return Ok(()),
        };
        if over {
            forget(state, event);
        }
        Ok(())
    }
}

/// Where an interaction is, as the queue view sees it: `i interaction`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct InteractionRecord {
    pub customer_id: Option<Id>,
    #[serde(with = "channel_name")]
    pub channel: Channel,
    /// The first `queued` (or transfer into a queue) of the current stay, in ms: the
    /// start of the total wait.
    pub first_queued_ms: Option<i64>,
    /// From the last `queued`: carried over by transfers.
    pub priority: i32,
    pub skills: Vec<Id>,
    pub waiting: Option<Waiting>,
    pub assignment: Option<Holder>,
}

/// The queue an interaction waits in.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Waiting {
    pub queue: Id,
    pub enqueued_ms: i64,
}

/// The agent holding an interaction, and the queue it came from.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Holder {
    pub agent_id: Id,
    pub queue: Option<Id>,
}

/// A waiting item: `w queue -priority enqueued_ms interaction`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct ItemRecord {
    pub interaction_id: Id,
    pub customer_id: Option<Id>,
    #[serde(with = "channel_name")]
    pub channel: Channel,
    pub priority: i32,
    pub enqueued_ms: i64,
    pub first_queued_ms: i64,
    pub skills: Vec<Id>,
    pub reserved_for: Option<Id>,
}

/// An open assignment: `s agent interaction`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct AssignmentRecord {
    #[serde(with = "channel_name")]
    pub channel: Channel,
    pub queue: Option<Id>,
    pub since_ms: i64,
}

/// An agent from the agents topic: `g agent`.
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

fn item_key(queue: &str, priority: i32, enqueued_ms: i64, interaction: &str) -> ItemKey {
    (
        Id::from(queue),
        -i64::from(priority),
        enqueued_ms,
        Id::from(interaction),
    )
}

/// Skills as the records keep them: inline ids, one allocation for the list, none for each
/// skill.
fn ids(texts: &[String]) -> Vec<Id> {
    texts.iter().map(|text| Id::from(text.as_str())).collect()
}

fn apply_agent_state(
    state: &mut QueueState,
    agent_id: &str,
    status: AgentStatus,
    skills: Option<&[String]>,
    capacity: Option<&BTreeMap<Channel, u32>>,
    at: i64,
) {
    let record = state
        .agents
        .get_or_insert_with(agent_id.to_owned(), AgentRecord::default);
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
}

/// The queue state's tables but the interactions', which a [`Fold`] changes while it holds
/// an interaction's record.
struct Others<'a> {
    items: &'a mut Table<ItemKey, ItemRecord>,
    queue_assigned: &'a mut HashedTable<(Id, Id), ()>,
    assignments: &'a mut HashedTable<(Id, Id), AssignmentRecord>,
    last_end: &'a mut HashedTable<Id, i64>,
    queue_names: &'a mut Table<String, ()>,
}

/// One interaction event being folded: the interaction's record, changed in place in its
/// table (found once), and the other tables. [`Fold::finish`], which every event that opens a
/// fold calls, says whether the record is to be forgotten.
struct Fold<'a> {
    state: Others<'a>,
    interaction: &'a str,
    customer_id: Option<&'a str>,
    channel: Channel,
    at: i64,
    record: Option<&'a mut InteractionRecord>,
}

impl<'a> Fold<'a> {
    /// Checks the event and loads the interaction's record; `create` makes an empty one
    /// when there is none (events that only act on a waiting or held interaction pass
    /// `false`). An event that cannot be applied is refused here, before anything changes.
    fn open(state: &'a mut QueueState, event: &'a Event, create: bool) -> Result<Self, ViewError> {
        let interaction = event.interaction_id.as_deref().ok_or_else(|| {
            ViewError::Unapplicable("an interaction event without interaction_id".into())
        })?;
        let channel = event.channel.ok_or_else(|| {
            ViewError::Unapplicable("an interaction event without channel".into())
        })?;
        let QueueState {
            interactions,
            items,
            queue_assigned,
            assignments,
            last_end,
            queue_names,
            agents: _,
        } = state;
        let record = if create {
            Some(
                interactions.get_or_insert_with_borrowed(interaction, || InteractionRecord {
                    customer_id: event.customer_id().map(Id::from),
                    channel,
                    first_queued_ms: None,
                    priority: 0,
                    skills: Vec::new(),
                    waiting: None,
                    assignment: None,
                }),
            )
        } else {
            interactions.get_mut(interaction)
        };
        Ok(Fold {
            state: Others {
                items,
                queue_assigned,
                assignments,
                last_end,
                queue_names,
            },
            interaction,
            customer_id: event.customer_id(),
            channel,
            at: crate::epoch::millis(&event.occurred_at),
            record,
        })
    }

    fn current_item_key(&self) -> Option<ItemKey> {
        let record = self.record.as_deref()?;
        let waiting = record.waiting.as_ref()?;
        Some(item_key(
            &waiting.queue,
            record.priority,
            waiting.enqueued_ms,
            self.interaction,
        ))
    }

    fn queued(&mut self, queue: &str, priority: i32, skills: &[String]) {
        let same_queue = self
            .record
            .as_ref()
            .and_then(|r| r.waiting.as_ref())
            .is_some_and(|w| w.queue == queue);
        if same_queue {
            // Already waiting there: keep its place in line and its reservation.
            let Some(old_key) = self.current_item_key() else {
                return;
            };
            let Some(mut item) = self.state.items.remove(&old_key) else {
                return;
            };
            if let Some(record) = self.record.as_deref_mut() {
                record.priority = priority;
                record.skills = ids(skills);
            }
            item.priority = priority;
            item.skills = ids(skills);
            let new_key = self.current_item_key().unwrap_or(old_key);
            self.state.items.insert(new_key, item);
            return;
        }
        self.leave_queue();
        self.end_assignment();
        if let Some(record) = self.record.as_deref_mut() {
            record.priority = priority;
            record.skills = ids(skills);
        }
        self.enter_queue(queue, None);
    }

    /// Puts the interaction in `queue` as of now, with its record's priority and skills.
    fn enter_queue(&mut self, queue: &str, reserved_for: Option<&str>) {
        let at = self.at;
        let Some(record) = self.record.as_deref_mut() else {
            return;
        };
        let first_queued_ms = *record.first_queued_ms.get_or_insert(at);
        record.waiting = Some(Waiting {
            queue: Id::from(queue),
            enqueued_ms: at,
        });
        let item = ItemRecord {
            interaction_id: Id::from(self.interaction),
            customer_id: record
                .customer_id
                .clone()
                .or_else(|| self.customer_id.map(Id::from)),
            channel: record.channel,
            priority: record.priority,
            enqueued_ms: at,
            first_queued_ms,
            skills: record.skills.clone(),
            reserved_for: reserved_for.map(Id::from),
        };
        let key = item_key(queue, record.priority, at, self.interaction);
        self.state.items.insert(key, item);
        if !self.state.queue_names.contains(queue) {
            self.state.queue_names.insert(queue.to_owned(), ());
        }
    }

    /// Takes the interaction out of the queue it waits in, if any.
    fn leave_queue(&mut self) {
        if let Some(key) = self.current_item_key() {
            self.state.items.remove(&key);
        }
        if let Some(record) = self.record.as_deref_mut() {
            record.waiting = None;
        }
    }

    /// Ends the holder's assignment, if any, and notes when for the agent's idle time.
    fn end_assignment(&mut self) {
        let Some(holder) = self.record.as_deref_mut().and_then(|r| r.assignment.take()) else {
            return;
        };
        self.state
            .assignments
            .remove(&(holder.agent_id.clone(), Id::from(self.interaction)));
        if let Some(queue) = &holder.queue {
            self.state
                .queue_assigned
                .remove(&(queue.clone(), Id::from(self.interaction)));
        }
        let at = self.at;
        let latest = self.state.last_end.get(&holder.agent_id).copied();
        if latest.is_none_or(|latest| latest < at) {
            self.state.last_end.insert(holder.agent_id, at);
        }
    }

    /// Starts `agent`'s holding of the interaction, which came from `queue` if any.
    fn start_assignment(&mut self, agent: &str, queue: Option<Id>) {
        let channel = self.record.as_deref().map_or(self.channel, |r| r.channel);
        let assignment = AssignmentRecord {
            channel,
            queue: queue.clone(),
            since_ms: self.at,
        };
        self.state
            .assignments
            .insert((Id::from(agent), Id::from(self.interaction)), assignment);
        if let Some(queue) = &queue {
            self.state
                .queue_assigned
                .insert((queue.clone(), Id::from(self.interaction)), ());
        }
        if let Some(record) = self.record.as_deref_mut() {
            record.assignment = Some(Holder {
                agent_id: Id::from(agent),
                queue,
            });
        }
    }

    fn assigned(&mut self, agent: &str) {
        let Some(record) = self.record.as_deref() else {
            return;
        };
        let from_queue = record.waiting.as_ref().map(|w| w.queue.clone());
        let same_holder = record
            .assignment
            .as_ref()
            .is_some_and(|h| h.agent_id == agent);
        if from_queue.is_none() && same_holder {
            // A repeated `assigned`: the agent already holds it.
            return;
        }
        self.leave_queue();
        self.end_assignment();
        self.start_assignment(agent, from_queue);
    }

    fn transferred(&mut self, to_queue: Option<&str>, to_agent: Option<&str>) {
        self.leave_queue();
        self.end_assignment();
        match (to_queue, to_agent) {
            (Some(queue), reserved_for) => self.enter_queue(queue, reserved_for),
            (None, Some(agent)) => self.start_assignment(agent, None),
            (None, None) => {}
        }
    }

    /// Rewrites the reservation of the waiting item, if the interaction waits.
    fn reserve(&mut self, change: impl FnOnce(Option<&str>) -> Option<Id>) {
        let Some(key) = self.current_item_key() else {
            return;
        };
        let Some(item) = self.state.items.get(&key) else {
            return;
        };
        let reserved_for = change(item.reserved_for.as_deref());
        if reserved_for != item.reserved_for
            && let Some(item) = self.state.items.get_mut(&key)
        {
            item.reserved_for = reserved_for;
        }
    }

    /// Ends the fold: whether the interaction's record is to be forgotten, being neither
    /// waiting nor held (its stay is over, so its next `queued` starts a new total wait).
    /// The caller removes it ([`forget`]) once the fold no longer holds the record.
    fn finish(self) -> bool {
        self.record
            .is_some_and(|record| record.waiting.is_none() && record.assignment.is_none())
    }
}

/// Forgets the record of the event's interaction (see [`Fold::finish`]): a record the store
/// never held leaves nothing behind, one it held is deleted at the next checkpoint.
fn forget(state: &mut QueueState, event: &Event) {
    if let Some(interaction) = event.interaction_id.as_deref() {
        state.interactions.remove(interaction);
    }
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
