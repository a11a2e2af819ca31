//! Queries of the queue view: the answers of `GET /v1/queues` and `GET /v1/agents`
//! (CONTRACT §6), their mergeable partials for distributed mode, and the inputs of a router.
//!
//! Every query is pure: the caller passes `now` (from `?now=` or its clock) and the ages in
//! the answers are whole seconds from the event times to `now`, never negative.
//!
//! # Distributed mode
//!
//! Interactions are partitioned by customer, so an instance knows only the items and
//! assignments of the partitions it owns, while the agents table is global (every instance
//! folds the whole agents topic). A partial therefore carries its instance's items and
//! assignments, which merge by union, and the agent table, which is the same on every
//! instance: agent counts merge by a field-wise max and agent records by the union of ids.
//!
//! # Which agents a queue counts
//!
//! `agents` of a queue counts the agents having a skill equal to the queue's name; when no
//! agent declares any skill, every agent counts (a desk without skills routes anyone
//! anywhere). The counts are by declared presence: an available agent whose capacity is
//! full still counts as available here; [`available_agents`] gives who can take work.
//!
//! # Capacity
//!
//! An agent that never declared a capacity takes one interaction of each channel at a
//! time (TaskRouter's default); one that declared `{"voice": 1}` takes voice only. An
//! agent's spare capacity on a channel is its capacity less its open assignments and its
//! pending offers on that channel, so a router never offers more than an agent can take.

use std::cmp::Reverse;
use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use omnilog_events::{AgentStatus, Channel, format_time};
use serde::{Deserialize, Serialize, Serializer};

use super::{
    AgentRecord, ItemRecord, QueueState, capacity_map, channel_name, millis_to_time, seconds_since,
    status_name,
};
use crate::ViewError;
use crate::state::Id;

/// One item of a queue as an instance holds it: the raw times, so partials merge before
/// ages are computed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueueItem {
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

impl From<ItemRecord> for QueueItem {
    fn from(item: ItemRecord) -> Self {
        QueueItem {
            interaction_id: item.interaction_id.into_string(),
            customer_id: item.customer_id.map(Id::into_string),
            channel: item.channel,
            priority: item.priority,
            enqueued_ms: item.enqueued_ms,
            first_queued_ms: item.first_queued_ms,
            skills: item.skills.into_iter().map(Id::into_string).collect(),
            reserved_for: item.reserved_for.map(Id::into_string),
        }
    }
}

impl QueueItem {
    /// The routing order: priority descending, then enqueue time (first come, first
    /// served), then interaction id so equal times still order the same everywhere.
    fn routing_key(&self) -> (Reverse<i32>, i64, &str) {
        (
            Reverse(self.priority),
            self.enqueued_ms,
            &self.interaction_id,
        )
    }
}

/// Agents by presence.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentCounts {
    pub available: u64,
    pub busy: u64,
    pub away: u64,
    pub offline: u64,
}

impl AgentCounts {
    fn count(&mut self, status: AgentStatus) {
        match status {
            AgentStatus::Available => self.available += 1,
            AgentStatus::Busy => self.busy += 1,
            AgentStatus::Away => self.away += 1,
            AgentStatus::Offline => self.offline += 1,
        }
    }

    /// Field-wise max: the agent table is global, so two instances count the same.
    fn merge(&mut self, other: AgentCounts) {
        self.available = self.available.max(other.available);
        self.busy = self.busy.max(other.busy);
        self.away = self.away.max(other.away);
        self.offline = self.offline.max(other.offline);
    }
}

/// A queue's figures as one instance sees them; [`QueuePartial::merge`] the instances',
/// then [`QueuePartial::finish`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueuePartial {
    pub queue: String,
    pub items: Vec<QueueItem>,
    /// Open assignments that came from this queue.
    pub assigned: u64,
    pub agents: AgentCounts,
}

impl QueuePartial {
    /// This instance's figures for `queue` (empty ones for a queue it has not seen).
    pub fn from_state(state: &QueueState, queue: &str) -> Result<Self, ViewError> {
        let table = AgentTable::load(state);
        Self::with_agents(state, queue, &table)
    }

    fn with_agents(state: &QueueState, queue: &str, table: &AgentTable) -> Result<Self, ViewError> {
        let items = items_of(state, queue)
            .map(|item| QueueItem::from(item.clone()))
            .collect();
        let assigned = state
            .queue_assigned
            .iter()
            .filter(|((q, _), _)| q == queue)
            .count() as u64;
        Ok(QueuePartial {
            queue: queue.to_owned(),
            items,
            assigned,
            agents: table.counts_for(queue),
        })
    }

    /// Adds another instance's figures for the same queue.
    pub fn merge(&mut self, other: QueuePartial) {
        self.items.extend(other.items);
        self.assigned += other.assigned;
        self.agents.merge(other.agents);
    }

    /// The answer as of `now`, items in routing order.
    pub fn finish(mut self, now: DateTime<Utc>) -> QueueAnswer {
        self.items
            .sort_by(|a, b| a.routing_key().cmp(&b.routing_key()));
        // The oldest by time in this queue, whatever its priority.
        let oldest = self.items.iter().min_by(|a, b| {
            (a.enqueued_ms, &a.interaction_id).cmp(&(b.enqueued_ms, &b.interaction_id))
        });
        let longest_wait_seconds = oldest.map_or(0, |item| seconds_since(item.enqueued_ms, now));
        let oldest_interaction_id = oldest.map(|item| item.interaction_id.clone());
        let mut by_channel = BTreeMap::new();
        for item in &self.items {
            *by_channel
                .entry(item.channel.as_str().to_owned())
                .or_insert(0) += 1;
        }
        let reserved = self
            .items
            .iter()
            .filter(|item| item.reserved_for.is_some())
            .count() as u64;
        let items = self
            .items
            .into_iter()
            .map(|item| QueueItemAnswer {
                wait_seconds: seconds_since(item.enqueued_ms, now),
                total_wait_seconds: seconds_since(item.first_queued_ms, now),
                enqueued_at: format_time(&millis_to_time(item.enqueued_ms)),
                interaction_id: item.interaction_id,
                customer_id: item.customer_id,
                channel: item.channel,
                priority: item.priority,
                skills: item.skills,
                reserved_for: item.reserved_for,
            })
            .collect::<Vec<_>>();
        QueueAnswer {
            queue: self.queue,
            waiting: items.len() as u64,
            longest_wait_seconds,
            oldest_interaction_id,
            assigned: self.assigned,
            by_channel,
            agents: self.agents,
            reserved,
            items,
        }
    }
}

/// Every queue's figures as one instance sees them.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueuesPartial {
    pub queues: BTreeMap<String, QueuePartial>,
}

impl QueuesPartial {
    pub fn from_state(state: &QueueState) -> Result<Self, ViewError> {
        let table = AgentTable::load(state);
        let mut queues = BTreeMap::new();
        for name in queue_names(state) {
            let partial = QueuePartial::with_agents(state, &name, &table)?;
            queues.insert(name, partial);
        }
        Ok(QueuesPartial { queues })
    }

    pub fn merge(&mut self, other: QueuesPartial) {
        for (name, partial) in other.queues {
            match self.queues.get_mut(&name) {
                Some(mine) => mine.merge(partial),
                None => {
                    self.queues.insert(name, partial);
                }
            }
        }
    }

    /// The answers as of `now`, by queue name.
    pub fn finish(self, now: DateTime<Utc>) -> Vec<QueueAnswer> {
        self.queues
            .into_values()
            .map(|partial| partial.finish(now))
            .collect()
    }
}

/// `GET /v1/queues/{queue}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct QueueAnswer {
    pub queue: String,
    pub waiting: u64,
    /// Time in this queue of the item that has been in it longest; 0 when none waits.
    pub longest_wait_seconds: u64,
    pub oldest_interaction_id: Option<String>,
    /// Interactions from this queue that an agent holds now.
    pub assigned: u64,
    /// Waiting items per channel.
    pub by_channel: BTreeMap<String, u64>,
    pub agents: AgentCounts,
    /// Waiting items reserved for an agent by an offer.
    pub reserved: u64,
    /// In routing order.
    pub items: Vec<QueueItemAnswer>,
}

/// One waiting item of a [`QueueAnswer`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct QueueItemAnswer {
    pub interaction_id: String,
    pub customer_id: Option<String>,
    #[serde(serialize_with = "channel_name::serialize")]
    pub channel: Channel,
    pub priority: i32,
    pub enqueued_at: String,
    /// Time in this queue (restarts on a transfer).
    pub wait_seconds: u64,
    /// Time since the first `queued` of the stay (keeps counting across transfers).
    pub total_wait_seconds: u64,
    pub skills: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reserved_for: Option<String>,
}

/// Every queue the view has seen, by name.
pub fn queues(state: &QueueState, now: DateTime<Utc>) -> Result<Vec<QueueAnswer>, ViewError> {
    Ok(QueuesPartial::from_state(state)?.finish(now))
}

/// One queue; `None` for a queue no event ever named.
pub fn queue(
    state: &QueueState,
    name: &str,
    now: DateTime<Utc>,
) -> Result<Option<QueueAnswer>, ViewError> {
    if !state.queue_names.contains(&name.to_owned()) {
        return Ok(None);
    }
    Ok(Some(QueuePartial::from_state(state, name)?.finish(now)))
}

fn queue_names(state: &QueueState) -> Vec<String> {
    state
        .queue_names
        .iter()
        .map(|(name, ())| name.clone())
        .collect()
}

/// The waiting items of a queue, in routing order.
fn items_of<'a>(state: &'a QueueState, queue: &'a str) -> impl Iterator<Item = &'a ItemRecord> {
    state
        .items
        .range((Id::from(queue), i64::MIN, i64::MIN, Id::new())..)
        .take_while(move |((q, _, _, _), _)| q == queue)
        .map(|(_, item)| item)
}

/// The global agent table.
struct AgentTable {
    agents: BTreeMap<String, AgentRecord>,
    /// Whether any agent declares skills (else every agent serves every queue).
    anyone_skilled: bool,
}

impl AgentTable {
    fn load(state: &QueueState) -> Self {
        let agents: BTreeMap<String, AgentRecord> = state
            .agents
            .iter()
            .map(|(id, record)| (id.clone(), record.clone()))
            .collect();
        let anyone_skilled = agents.values().any(|a| !a.skills.is_empty());
        AgentTable {
            agents,
            anyone_skilled,
        }
    }

    fn counts_for(&self, queue: &str) -> AgentCounts {
        let mut counts = AgentCounts::default();
        for agent in self.agents.values() {
            if !self.anyone_skilled || agent.skills.iter().any(|s| s == queue) {
                counts.count(agent.state);
            }
        }
        counts
    }
}

/// An agent's open assignment or pending offer.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
struct Open {
    agent_id: String,
    interaction_id: String,
    #[serde(with = "channel_name")]
    channel: Channel,
}

/// The agents as one instance sees them: the global table plus the assignments and
/// offers of the partitions it owns. [`AgentsPartial::merge`] the instances', then ask.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentsPartial {
    agents: BTreeMap<String, AgentRecord>,
    assignments: Vec<Open>,
    offers: Vec<Open>,
    /// Latest end of an assignment, in ms.
    last_end_ms: BTreeMap<String, i64>,
}

impl AgentsPartial {
    /// Every agent this instance knows of.
    pub fn from_state(state: &QueueState) -> Result<Self, ViewError> {
        Ok(Self::load(state, None))
    }

    /// One agent only.
    pub fn for_agent(state: &QueueState, agent_id: &str) -> Result<Self, ViewError> {
        Ok(Self::load(state, Some(agent_id)))
    }

    fn load(state: &QueueState, only: Option<&str>) -> Self {
        let mut partial = AgentsPartial::default();
        let wanted = |agent: &str| only.is_none_or(|only| only == agent);
        for (id, record) in state.agents.iter() {
            if wanted(id) {
                partial.agents.insert(id.clone(), record.clone());
            }
        }
        // The assignments open now (not the history's): read whole, then put in order.
        for ((agent_id, interaction_id), record) in state.assignments.iter() {
            if wanted(agent_id) {
                partial.assignments.push(Open {
                    agent_id: agent_id.to_string(),
                    interaction_id: interaction_id.to_string(),
                    channel: record.channel,
                });
            }
        }
        partial.assignments.sort();
        for (id, at) in state.last_end.iter() {
            if wanted(id) {
                partial.last_end_ms.insert(id.to_string(), *at);
            }
        }
        // Offers sit on the waiting items, which are few (the queue, not the history).
        for (_, item) in state.items.iter() {
            if let Some(agent_id) = &item.reserved_for
                && wanted(agent_id)
            {
                partial.offers.push(Open {
                    agent_id: agent_id.to_string(),
                    interaction_id: item.interaction_id.to_string(),
                    channel: item.channel,
                });
            }
        }
        partial.offers.sort();
        partial
    }

    /// Adds another instance's view of the agents.
    pub fn merge(&mut self, other: AgentsPartial) {
        for (id, record) in other.agents {
            self.agents.entry(id).or_insert(record);
        }
        self.assignments.extend(other.assignments);
        self.assignments.sort();
        self.assignments.dedup();
        self.offers.extend(other.offers);
        self.offers.sort();
        self.offers.dedup();
        for (id, at) in other.last_end_ms {
            let mine = self.last_end_ms.entry(id).or_insert(at);
            *mine = (*mine).max(at);
        }
    }

    /// Every agent known from the agents topic or from an assignment (open or ended), by
    /// id.
    pub fn answers(&self) -> Vec<AgentAnswer> {
        let mut ids: Vec<&str> = self.agents.keys().map(String::as_str).collect();
        ids.extend(self.assignments.iter().map(|o| o.agent_id.as_str()));
        ids.extend(self.last_end_ms.keys().map(String::as_str));
        ids.sort_unstable();
        ids.dedup();
        ids.into_iter().map(|id| self.answer(id)).collect()
    }

    /// One agent; `None` if neither the agents topic nor an assignment names it.
    pub fn answer_for(&self, agent_id: &str) -> Option<AgentAnswer> {
        let known = self.agents.contains_key(agent_id)
            || self.last_end_ms.contains_key(agent_id)
            || self.assignments.iter().any(|o| o.agent_id == agent_id);
        known.then(|| self.answer(agent_id))
    }

    fn answer(&self, agent_id: &str) -> AgentAnswer {
        // An agent seen only through an assignment never logged in: offline, no skills.
        let fallback = AgentRecord::default();
        let record = self.agents.get(agent_id).unwrap_or(&fallback);
        let mut load = BTreeMap::new();
        let mut assignments = Vec::new();
        for open in self.assignments.iter().filter(|o| o.agent_id == agent_id) {
            *load.entry(open.channel).or_insert(0) += 1;
            assignments.push(open.interaction_id.clone());
        }
        let offers = self
            .offers
            .iter()
            .filter(|o| o.agent_id == agent_id)
            .map(|o| o.interaction_id.clone())
            .collect();
        AgentAnswer {
            agent_id: agent_id.to_owned(),
            state: record.state,
            skills: record.skills.clone(),
            capacity: effective_capacity(record),
            assignments,
            load,
            offers,
            idle_since: self.idle_since(agent_id, record).map(|t| format_time(&t)),
        }
    }

    /// When an available agent last had nothing new: the later of becoming available and
    /// the end of their last assignment. `None` unless available.
    fn idle_since(&self, agent_id: &str, record: &AgentRecord) -> Option<DateTime<Utc>> {
        if record.state != AgentStatus::Available {
            return None;
        }
        let since = record.available_since_ms?;
        let last_end = self.last_end_ms.get(agent_id).copied().unwrap_or(i64::MIN);
        Some(millis_to_time(since.max(last_end)))
    }

    /// The agents that can take work now: available, with spare capacity on at least one
    /// channel; longest idle first, then by id.
    pub fn candidates(&self) -> Vec<AgentCandidate> {
        let mut used: BTreeMap<(&str, Channel), u32> = BTreeMap::new();
        for open in self.assignments.iter().chain(&self.offers) {
            *used
                .entry((open.agent_id.as_str(), open.channel))
                .or_insert(0) += 1;
        }
        let mut candidates: Vec<AgentCandidate> = self
            .agents
            .iter()
            .filter(|(_, record)| record.state == AgentStatus::Available)
            .filter_map(|(id, record)| {
                let spare: BTreeMap<Channel, u32> = effective_capacity(record)
                    .into_iter()
                    .filter_map(|(channel, capacity)| {
                        let taken = used.get(&(id.as_str(), channel)).copied().unwrap_or(0);
                        let spare = capacity.saturating_sub(taken);
                        (spare > 0).then_some((channel, spare))
                    })
                    .collect();
                if spare.is_empty() {
                    return None;
                }
                Some(AgentCandidate {
                    agent_id: id.clone(),
                    skills: record.skills.clone(),
                    spare,
                    idle_since: self.idle_since(id, record).unwrap_or_default(),
                })
            })
            .collect();
        candidates.sort_by(|a, b| (a.idle_since, &a.agent_id).cmp(&(b.idle_since, &b.agent_id)));
        candidates
    }
}

/// Declared capacity, or one of each channel for an agent that declared none.
fn effective_capacity(record: &AgentRecord) -> BTreeMap<Channel, u32> {
    match &record.capacity {
        Some(capacity) => capacity.clone(),
        None => Channel::ALL.iter().map(|&channel| (channel, 1)).collect(),
    }
}

/// `GET /v1/agents/{id}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct AgentAnswer {
    pub agent_id: String,
    #[serde(serialize_with = "status_name::serialize")]
    pub state: AgentStatus,
    pub skills: Vec<String>,
    /// Concurrent interactions per channel (see the module notes for the default).
    #[serde(serialize_with = "capacity_map::serialize")]
    pub capacity: BTreeMap<Channel, u32>,
    /// Interactions the agent holds now.
    pub assignments: Vec<String>,
    /// Open assignments per channel.
    #[serde(serialize_with = "capacity_map::serialize")]
    pub load: BTreeMap<Channel, u32>,
    /// Waiting items offered to the agent and not yet accepted.
    pub offers: Vec<String>,
    /// For an available agent: since when it has had nothing new (longest idle first).
    pub idle_since: Option<String>,
}

/// Every agent.
pub fn agents(state: &QueueState) -> Result<Vec<AgentAnswer>, ViewError> {
    Ok(AgentsPartial::from_state(state)?.answers())
}

/// One agent; `None` for an agent no event named.
pub fn agent(state: &QueueState, agent_id: &str) -> Result<Option<AgentAnswer>, ViewError> {
    Ok(AgentsPartial::for_agent(state, agent_id)?.answer_for(agent_id))
}

/// An agent a router may offer work to.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct AgentCandidate {
    pub agent_id: String,
    pub skills: Vec<String>,
    /// Channels with spare capacity, and how much (assignments and offers deducted).
    #[serde(serialize_with = "capacity_map::serialize")]
    pub spare: BTreeMap<Channel, u32>,
    /// The later of the change to available and the end of the last assignment.
    #[serde(serialize_with = "time_text")]
    pub idle_since: DateTime<Utc>,
}

/// Available agents with spare capacity, longest idle first.
pub fn available_agents(state: &QueueState) -> Result<Vec<AgentCandidate>, ViewError> {
    Ok(AgentsPartial::from_state(state)?.candidates())
}

/// A waiting item a router may offer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct RoutableItem {
    pub queue: String,
    pub interaction_id: String,
    pub customer_id: Option<String>,
    #[serde(serialize_with = "channel_name::serialize")]
    pub channel: Channel,
    pub priority: i32,
    /// Skills an agent needs, all of them.
    pub skills: Vec<String>,
    #[serde(serialize_with = "time_text")]
    pub enqueued_at: DateTime<Utc>,
    pub wait_seconds: u64,
}

/// The unreserved waiting items of every queue, the heads first: by priority descending,
/// then enqueue time, then queue and interaction id. Each queue's items keep their
/// routing order; a router walks the list and skips items no candidate can take, so an
/// item needing a rare skill does not hold up the items behind it.
pub fn routable(state: &QueueState, now: DateTime<Utc>) -> Result<Vec<RoutableItem>, ViewError> {
    let mut items = Vec::new();
    for ((queue, _, _, _), item) in state.items.iter() {
        if item.reserved_for.is_some() {
            continue;
        }
        items.push(RoutableItem {
            queue: queue.to_string(),
            wait_seconds: seconds_since(item.enqueued_ms, now),
            enqueued_at: millis_to_time(item.enqueued_ms),
            interaction_id: item.interaction_id.to_string(),
            customer_id: item.customer_id.as_deref().map(str::to_owned),
            channel: item.channel,
            priority: item.priority,
            skills: item.skills.iter().map(|skill| skill.to_string()).collect(),
        });
    }
    items.sort_by(|a, b| {
        (
            Reverse(a.priority),
            a.enqueued_at,
            &a.queue,
            &a.interaction_id,
        )
            .cmp(&(
                Reverse(b.priority),
                b.enqueued_at,
                &b.queue,
                &b.interaction_id,
            ))
    });
    Ok(items)
}

fn time_text<S: Serializer>(time: &DateTime<Utc>, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(&format_time(time))
}
