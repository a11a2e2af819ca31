//! Seeded generator of realistic cross-channel histories, for tests, the simulator
//! (`omnilog simulate` / `omnilog demo`) and the benchmarks.
//!
//! The history is a small discrete-event simulation of a service desk: customers with a
//! phone number and an email address raise issues; each issue is a journey of one or more
//! contacts, on whatever channel the customer picks that time (they hang up and chat an hour
//! later, they email the next day); contacts queue, are offered to agents who decline or
//! accept, get transferred, abandoned, wrapped up with topics and a resolution, and rated.
//! Self-service sessions (IVR, chatbot) are contained or escalate into a queue. Agents log
//! in with skills and per-channel capacity and step away now and then.
//!
//! # The desk's waits
//!
//! Waits come from the desk, not from a dice roll: every agent has, per channel it takes,
//! as many slots as its capacity, and a queued contact goes to the skilled slot that is
//! free soonest (first come, first served, offered and accepted at once, as omnilog's router
//! with auto-accept does), where it stays until the contact ends. The customer waits until then, or leaves when their patience runs out
//! first (`abandoned`). Arrivals follow the desk's load through the day ([`load_factor`]:
//! 0.85× to 1.15× of the average, in a wave every four hours), and
//! [`agents_for`] staffs the desk for the average: quiet hours answer at once, peaks queue,
//! breach their service levels and lose some callers, as a real desk does.
//!
//! # Leaving routing to a router
//!
//! With [`HistoryConfig::routed_from`], the generator decides routing only before that
//! time: a contact it would offer (or lose to impatience) at or after it is emitted up to
//! its `queued` event, followed by a [`RoutedContact`] ([`History::next_item`]): what the
//! customer and the agent will do once a router assigns it, for a live player to send
//! (`omnilog simulate --routed`).
//!
//! Invariants: the same configuration gives the same events, byte for byte (all
//! randomness comes from one seeded generator and ids derive from it); events come out in
//! `occurred_at` order; no agent ever holds more contacts on a channel than its capacity;
//! memory stays bounded by the contacts in flight and the agents, not the history, so ten
//! million events stream through without holding them.
//!
//! Segments (seed 000: people in finance, sales, medical and development expect different
//! channels): every customer belongs to one of [`SEGMENTS`], by its number, carried as the
//! `segment` attribute on its first contact, and picks channels with its segment's mix
//! (finance writes, sales calls and chats, medical calls, development chats and messages).
//!
//! Customer ids: a customer's first contact carries both handles (phone first), later
//! contacts only the channel's handle, so identity resolution at ingest links them. With
//! [`HistoryConfig::with_customer_ids`] every event also names the id ingest would
//! resolve (uuid v5 of the phone handle), which writers that bypass ingest need for the
//! partition key.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap};
use std::f64::consts::TAU;

use chrono::{DateTime, TimeDelta, Utc};
use omnilog_events::identity::{customer_id_for_handle, event_id_for_source};
use omnilog_events::{
    AgentStatus, Author, Body, CURRENT_SCHEMA_VERSION, Channel, CustomerRef, Direction, Event,
    Handle,
};

/// The customers' segments (the `segment` attribute), a customer's by its number.
pub const SEGMENTS: [&str; 4] = ["finance", "sales", "medical", "development"];

/// The segment of customer number `customer`.
pub fn segment_of(customer: u64) -> &'static str {
    SEGMENTS[(customer % SEGMENTS.len() as u64) as usize]
}

/// Each segment's channel mix, in percent (the same order as [`SEGMENTS`]). Averaged over
/// the segments (which have as many customers each) it is the desk's overall mix (voice 30,
/// chat 20, email 18, SMS 8, messaging 8, IVR 5, portal 4, chatbot 4, social 2, walk-in 1),
/// for which [`agents_for`] staffs the desk.
const CHANNEL_MIX: [[(Channel, u32); 10]; 4] = [
    // finance: email first, and the portal
    [
        (Channel::Email, 32),
        (Channel::Voice, 24),
        (Channel::Chat, 16),
        (Channel::WebPortal, 8),
        (Channel::Sms, 6),
        (Channel::Ivr, 5),
        (Channel::Messaging, 4),
        (Channel::Chatbot, 3),
        (Channel::Social, 1),
        (Channel::WalkIn, 1),
    ],
    // sales: the phone and chat, on the move
    [
        (Channel::Voice, 38),
        (Channel::Chat, 22),
        (Channel::Email, 10),
        (Channel::Sms, 10),
        (Channel::Messaging, 10),
        (Channel::Ivr, 4),
        (Channel::WebPortal, 2),
        (Channel::Chatbot, 2),
        (Channel::Social, 2),
        (Channel::WalkIn, 0),
    ],
    // medical: the phone, and the desk in person
    [
        (Channel::Voice, 40),
        (Channel::Email, 14),
        (Channel::Chat, 12),
        (Channel::Sms, 10),
        (Channel::Ivr, 8),
        (Channel::Chatbot, 5),
        (Channel::Messaging, 4),
        (Channel::Social, 3),
        (Channel::WebPortal, 2),
        (Channel::WalkIn, 2),
    ],
    // development: chat, messaging and self-service
    [
        (Channel::Chat, 30),
        (Channel::Voice, 18),
        (Channel::Email, 16),
        (Channel::Messaging, 14),
        (Channel::Sms, 6),
        (Channel::Chatbot, 6),
        (Channel::WebPortal, 4),
        (Channel::Ivr, 3),
        (Channel::Social, 2),
        (Channel::WalkIn, 1),
    ],
];

/// The queues of the generated desk, with the topics their issues are about.
pub const QUEUES: [(&str, &[&str]); 4] = [
    ("billing", &["invoice", "refund", "payment-failed"]),
    ("support", &["login", "outage", "bug-report", "how-to"]),
    ("sales", &["upgrade", "pricing", "trial"]),
    ("tech", &["integration", "api-error", "data-export"]),
];

/// The fewest agents a desk has: one of each profile for each home queue, so every
/// channel of every queue has someone skilled for it.
pub const MIN_AGENTS: u32 = 16;

/// Agent-seconds of work a new issue brings on the busiest channels (voice, chat), its
/// follow-ups included, measured on generated days (see the tests): [`agents_for`] divides
/// it by the mean gap between issues for the agents fully busy at the average load.
const AGENT_SECONDS_PER_ISSUE: f64 = 232.0;

/// Safety staffing on top of the fully busy agents, in square roots of their number
/// (square-root staffing: a large desk needs less slack, in proportion, than a small one).
const SAFETY_STAFFING: f64 = 3.5;

/// What to generate.
#[derive(Clone, Debug)]
pub struct HistoryConfig {
    pub seed: u64,
    /// Stop after this many events.
    pub events: u64,
    /// Distinct customers (they come back: issues pick a customer at random).
    pub customers: u64,
    /// Agents on shift: [`agents_for`] sizes them for the arrival rate.
    pub agents: u32,
    /// The event time of the first event.
    pub start: DateTime<Utc>,
    /// Mean time between new issues at the desk's average load (arrivals follow
    /// [`load_factor`] around it).
    pub mean_arrival_gap: TimeDelta,
    /// Set `customer.id` on every event (see the module documentation).
    pub customer_ids: bool,
    /// From this event time on, routing is a router's (see the module documentation).
    pub routed_from: Option<DateTime<Utc>>,
}

impl HistoryConfig {
    /// About `events` events: a new issue every 20 s on average, roughly 40 events a
    /// customer, and the agents that load needs.
    pub fn with_events(seed: u64, events: u64) -> Self {
        let customers = (events / 40).max(10);
        let mean_arrival_gap = TimeDelta::seconds(20);
        HistoryConfig {
            seed,
            events,
            customers,
            agents: agents_for(mean_arrival_gap),
            start: DateTime::from_timestamp(1_772_352_000, 0).unwrap_or_default(), // 2026-03-01T08:00:00Z
            mean_arrival_gap,
            customer_ids: false,
            routed_from: None,
        }
    }

    /// Names the resolved customer id on every event.
    pub fn with_customer_ids(mut self) -> Self {
        self.customer_ids = true;
        self
    }

    pub fn with_customers(mut self, customers: u64) -> Self {
        self.customers = customers.max(1);
        self
    }

    /// A new issue every `gap` on average, and the agents that load needs.
    pub fn with_arrival_gap(mut self, gap: TimeDelta) -> Self {
        self.mean_arrival_gap = gap.max(TimeDelta::microseconds(1));
        self.agents = agents_for(self.mean_arrival_gap);
        self
    }

    /// Leaves routing to a router from `at` on.
    pub fn routed_from(mut self, at: DateTime<Utc>) -> Self {
        self.routed_from = Some(at);
        self
    }
}

/// The agents a desk needs for a new issue every `gap` on average: the agents the average
/// load keeps fully busy plus a safety margin, so the average load is answered within the
/// service levels and the peaks of [`load_factor`] queue; never fewer than [`MIN_AGENTS`].
pub fn agents_for(gap: TimeDelta) -> u32 {
    let seconds = gap.num_microseconds().unwrap_or(i64::MAX).max(1) as f64 / 1e6;
    let busy = AGENT_SECONDS_PER_ISSUE / seconds;
    ((busy + SAFETY_STAFFING * busy.sqrt()).ceil() as u32).clamp(MIN_AGENTS, 20_000)
}

/// The desk's load `since_start` into its day, as a factor of the average: a wave of four
/// hours between 0.85 and 1.15, highest at the start and every four hours after, lowest
/// two hours after each peak. A day of eight hours ends at a peak, so the live traffic
/// after `omnilog demo`'s back-fill of eight hours starts busy.
pub fn load_factor(since_start: TimeDelta) -> f64 {
    let hours = since_start.num_milliseconds() as f64 / 3_600_000.0;
    1.0 + 0.15 * (TAU * hours / 4.0).cos()
}

/// The history as an iterator of events in `occurred_at` order.
pub fn history(config: HistoryConfig) -> History {
    History::new(config)
}

/// One step of a history: an event, or a contact left to a router.
#[derive(Debug)]
pub enum Item {
    Event(Event),
    /// Comes right after the contact's `queued` event.
    Routed(RoutedContact),
}

/// A contact queued for a router to assign (see the module documentation): its events
/// after the assignment, or the customer's leaving when no agent takes it in time.
#[derive(Clone, Debug)]
pub struct RoutedContact {
    pub interaction_id: String,
    pub channel: Channel,
    pub queue: String,
    pub queued_at: DateTime<Utc>,
    /// How long the customer waits for an agent before leaving.
    pub patience: TimeDelta,
    /// What happens once an agent takes it, by time after the assignment; agent fields
    /// are filled in by [`RoutedContact::handled_by`].
    handling: Vec<(TimeDelta, Event)>,
    /// `abandoned`, then `ended`.
    leaving: Vec<(TimeDelta, Event)>,
    /// A transfer to another queue by the first agent, by time after the first
    /// assignment: then `handling` follows the next assignment.
    transfer: Option<(TimeDelta, Event)>,
}

impl RoutedContact {
    /// The first agent's transfer to another queue when the contact has one, `at` being
    /// the first assignment: `handled_by` then follows the next assignment, in that queue.
    pub fn transferred_after(&self, assigned_at: DateTime<Utc>) -> Option<Event> {
        self.transfer.as_ref().map(|(after, event)| {
            let mut event = event.clone();
            event.occurred_at = assigned_at + *after;
            event
        })
    }

    /// The customer's and the agent's events once `agent_id` took the contact at
    /// `assigned_at`, in time order.
    pub fn handled_by(&self, agent_id: &str, assigned_at: DateTime<Utc>) -> Vec<Event> {
        self.handling
            .iter()
            .map(|(after, event)| {
                let mut event = event.clone();
                event.occurred_at = assigned_at + *after;
                match &mut event.body {
                    Body::Message {
                        author: Author::Agent,
                        agent_id: agent,
                        ..
                    } => *agent = Some(agent_id.to_owned()),
                    Body::Note {
                        agent_id: agent, ..
                    }
                    | Body::WrappedUp {
                        agent_id: agent, ..
                    } => *agent = agent_id.to_owned(),
                    _ => {}
                }
                event
            })
            .collect()
    }

    /// The customer's leaving at `at`: `abandoned`, then `ended`.
    pub fn abandoned_at(&self, at: DateTime<Utc>) -> Vec<Event> {
        self.leaving
            .iter()
            .map(|(after, event)| {
                let mut event = event.clone();
                event.occurred_at = at + *after;
                event
            })
            .collect()
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Profile {
    /// Phones only.
    VoiceOnly,
    /// Chat, messaging, SMS and social.
    Digital,
    /// Phones, chat, email, the portal and the front desk, fewer at a time.
    Blended,
}

impl Profile {
    /// Concurrent contacts per channel.
    fn capacity(self) -> &'static [(Channel, u32)] {
        match self {
            Profile::VoiceOnly => &[(Channel::Voice, 1), (Channel::Ivr, 1)],
            Profile::Digital => &[
                (Channel::Chat, 2),
                (Channel::Messaging, 2),
                (Channel::Sms, 2),
                (Channel::Social, 1),
                (Channel::Chatbot, 2),
            ],
            Profile::Blended => &[
                (Channel::Voice, 1),
                (Channel::Ivr, 1),
                (Channel::Chat, 1),
                (Channel::Email, 2),
                (Channel::WebPortal, 1),
                (Channel::WalkIn, 1),
                (Channel::Alert, 2),
            ],
        }
    }
}

#[derive(Debug)]
struct Agent {
    id: String,
    skills: Vec<String>,
    profile: Profile,
    /// Per channel it takes: when each slot of its capacity is free again.
    slots: BTreeMap<Channel, Vec<DateTime<Utc>>>,
    /// The latest start of work it was given (it steps away only after that).
    last_start: DateTime<Utc>,
}

/// A contact waiting to start: a new issue or the follow-up of an unresolved one.
#[derive(Debug, PartialEq, Eq, PartialOrd, Ord)]
struct PendingContact {
    at: DateTime<Utc>,
    seq: u64,
    customer: u64,
    queue: usize,
    /// Contacts of this issue so far.
    attempt: u32,
    /// The channel of the previous contact, if any.
    previous: Option<Channel>,
}

/// A slot that can take a contact: (agent, slot, from when).
type Slot = (usize, usize, DateTime<Utc>);

/// How soon a slot can take a contact: (from when, free since, agent), least first.
type SlotRank = (DateTime<Utc>, DateTime<Utc>, usize);

/// What a contact left to a router needs from the part already generated.
struct Script<'a> {
    interaction_id: String,
    channel: Channel,
    queued_at: DateTime<Utc>,
    patience: TimeDelta,
    text_channel: bool,
    topic: &'a str,
}

/// The generator. See the module documentation.
#[derive(Debug)]
pub struct History {
    config: HistoryConfig,
    rng: fastrand::Rng,
    agents: Vec<Agent>,
    /// (channel, queue index) → the agents who take that channel and have that skill.
    pools: BTreeMap<(Channel, usize), Vec<usize>>,
    emitted: u64,
    sequence: u64,
    next_arrival: DateTime<Utc>,
    /// Customers whose first contact happened (they no longer carry both handles).
    seen_customers: std::collections::BTreeSet<u64>,
    contacts: BinaryHeap<Reverse<PendingContact>>,
    /// Items generated but not yet due, by (time, sequence).
    pending: BTreeMap<(DateTime<Utc>, u64), Item>,
    next_agent_change: DateTime<Utc>,
}

impl History {
    fn new(config: HistoryConfig) -> Self {
        let mut rng = fastrand::Rng::with_seed(config.seed);
        let start = config.start;
        let agents: Vec<Agent> = (0..config.agents.max(1))
            .map(|n| {
                let profile = match n % 4 {
                    0 => Profile::VoiceOnly,
                    1 => Profile::Digital,
                    _ => Profile::Blended,
                };
                // Every agent covers one home queue (every profile has every home queue
                // in each run of sixteen agents); many cover a second.
                let home = (n / 4) as usize % QUEUES.len();
                let mut skills = vec![QUEUES[home].0.to_owned()];
                if rng.bool() {
                    skills.push(
                        QUEUES[(home + 1 + rng.usize(0..3)) % QUEUES.len()]
                            .0
                            .to_owned(),
                    );
                }
                skills.sort();
                let login = start + TimeDelta::seconds(i64::from(n % 30));
                Agent {
                    id: format!("agent-{n:04}"),
                    skills,
                    profile,
                    slots: profile
                        .capacity()
                        .iter()
                        .map(|&(channel, n)| (channel, vec![login; n as usize]))
                        .collect(),
                    last_start: login,
                }
            })
            .collect();
        let mut pools: BTreeMap<(Channel, usize), Vec<usize>> = BTreeMap::new();
        for (index, agent) in agents.iter().enumerate() {
            for channel in agent.slots.keys() {
                for (queue, (name, _)) in QUEUES.iter().enumerate() {
                    if agent.skills.iter().any(|s| s == name) {
                        pools.entry((*channel, queue)).or_default().push(index);
                    }
                }
            }
        }
        let mut history = History {
            config,
            rng,
            agents,
            pools,
            emitted: 0,
            sequence: 0,
            next_arrival: start + TimeDelta::seconds(30),
            seen_customers: Default::default(),
            contacts: BinaryHeap::new(),
            pending: BTreeMap::new(),
            next_agent_change: start + TimeDelta::minutes(10),
        };
        for index in 0..history.agents.len() {
            let at = start + TimeDelta::seconds(index as i64 % 30);
            let event = history.agent_state(index, AgentStatus::Available, at, true);
            history.push(event);
        }
        history
    }

    fn next_seq(&mut self) -> u64 {
        self.sequence += 1;
        self.sequence
    }

    fn push(&mut self, event: Event) {
        let seq = self.next_seq();
        self.pending
            .insert((event.occurred_at, seq), Item::Event(event));
    }

    fn base_event(&mut self, at: DateTime<Utc>, body: Body) -> Event {
        let seq = self.next_seq();
        let source_event_id = format!("{}:{seq}", self.config.seed);
        Event {
            event_id: event_id_for_source(Some("testkit"), &source_event_id),
            schema_version: CURRENT_SCHEMA_VERSION,
            source: Some("testkit".into()),
            source_event_id: Some(source_event_id.into()),
            occurred_at: at,
            recorded_at: None,
            customer: None,
            interaction_id: None,
            channel: None,
            attributes: BTreeMap::new(),
            body,
        }
    }

    fn agent_state(
        &mut self,
        index: usize,
        state: AgentStatus,
        at: DateTime<Utc>,
        with_profile: bool,
    ) -> Event {
        let agent = &self.agents[index];
        let (skills, capacity) = if with_profile {
            let capacity: BTreeMap<Channel, u32> =
                agent.profile.capacity().iter().copied().collect();
            (Some(agent.skills.clone()), Some(capacity))
        } else {
            (None, None)
        };
        let body = Body::AgentState {
            agent_id: agent.id.clone(),
            state,
            skills,
            capacity,
        };
        self.base_event(at, body)
    }

    fn phone(customer: u64) -> Handle {
        Handle::new("phone", format!("+1555{customer:07}"))
    }

    fn email(customer: u64) -> Handle {
        Handle::new("email", format!("customer{customer}@example.com"))
    }

    fn pick_channel(&mut self, customer: u64, previous: Option<Channel>) -> Channel {
        let mix = &CHANNEL_MIX[(customer % SEGMENTS.len() as u64) as usize];
        // A customer who got nowhere often switches channel for the follow-up.
        loop {
            let mut roll = self.rng.u32(0..100);
            let mut chosen = mix[0].0;
            for &(channel, weight) in mix {
                if roll < weight {
                    chosen = channel;
                    break;
                }
                roll -= weight;
            }
            if previous != Some(chosen) || self.rng.u8(0..4) == 0 {
                return chosen;
            }
        }
    }

    /// The skilled slot that can take a `channel` contact of `queue` soonest at or after
    /// `at`: among equals the one free longest (a router's longest-idle agent).
    fn earliest_slot(&self, channel: Channel, queue: usize, at: DateTime<Utc>) -> Option<Slot> {
        let pool = self.pools.get(&(channel, queue))?;
        // (from when, free since, agent) of the best slot so far, and the slot.
        let mut best: Option<(SlotRank, usize)> = None;
        for &index in pool {
            let Some(slots) = self.agents[index].slots.get(&channel) else {
                continue;
            };
            for (slot, &free) in slots.iter().enumerate() {
                let key = (free.max(at), free, index);
                if best.as_ref().is_none_or(|(best, _)| key < *best) {
                    best = Some((key, slot));
                }
            }
        }
        best.map(|((when, _, index), slot)| (index, slot, when))
    }

    /// Gives the slot its work from `start` until `until`.
    fn occupy(
        &mut self,
        (agent, slot, _): Slot,
        channel: Channel,
        start: DateTime<Utc>,
        until: DateTime<Utc>,
    ) {
        let agent = &mut self.agents[agent];
        if let Some(slots) = agent.slots.get_mut(&channel) {
            slots[slot] = until;
        }
        agent.last_start = agent.last_start.max(start);
    }

    /// Another agent able to take the contact, for an offer that is declined.
    fn other_agent(&mut self, channel: Channel, queue: usize, not: usize) -> Option<usize> {
        let pool = self.pools.get(&(channel, queue))?;
        let others: Vec<usize> = pool.iter().copied().filter(|&i| i != not).collect();
        (!others.is_empty()).then(|| others[self.rng.usize(0..others.len())])
    }

    fn seconds(&mut self, low: i64, high: i64) -> TimeDelta {
        TimeDelta::seconds(self.rng.i64(low..=high))
    }

    /// An exponentially distributed duration of mean `mean` seconds, at least `least`.
    fn exponential(&mut self, least: f64, mean: f64) -> TimeDelta {
        let seconds = least - mean * (1.0 - self.rng.f64()).ln();
        TimeDelta::milliseconds((seconds * 1_000.0) as i64)
    }

    /// How long a customer waits for an agent before giving up.
    fn patience(&mut self, channel: Channel) -> TimeDelta {
        match channel {
            Channel::Voice | Channel::Ivr => self.exponential(5.0, 180.0),
            Channel::Chat | Channel::Chatbot => self.exponential(20.0, 480.0),
            Channel::WalkIn => self.exponential(120.0, 1_200.0),
            Channel::Messaging | Channel::Sms | Channel::Social => self.exponential(600.0, 3_600.0),
            _ => self.exponential(3_600.0, 6.0 * 3_600.0),
        }
    }

    /// Generates every event of one contact and schedules its follow-up, if any.
    fn start_contact(&mut self, contact: PendingContact) {
        let customer = contact.customer;
        let channel = self.pick_channel(customer, contact.previous);
        let seq = contact.seq;
        let interaction_id = format!("{}-{}-{seq:08}", channel.as_str(), self.config.seed);
        let first_contact = self.seen_customers.insert(customer);
        let handles = if first_contact {
            vec![Self::phone(customer), Self::email(customer)]
        } else {
            match channel {
                Channel::Voice | Channel::Sms | Channel::Messaging | Channel::Ivr => {
                    vec![Self::phone(customer)]
                }
                _ => vec![Self::email(customer)],
            }
        };
        let customer_ref = std::sync::Arc::new(CustomerRef {
            id: self.config.customer_ids.then(|| {
                customer_id_for_handle(&Self::phone(customer))
                    .as_str()
                    .into()
            }),
            handles,
            // The customer's segment, as a CRM would stamp it on the first contact.
            attributes: if first_contact {
                BTreeMap::from([("segment".to_owned(), segment_of(customer).to_owned())])
            } else {
                BTreeMap::new()
            },
            ..CustomerRef::default()
        });
        let (queue, topics) = QUEUES[contact.queue];
        let topic = topics[self.rng.usize(0..topics.len())];
        let text_channel = !matches!(channel, Channel::Voice | Channel::Ivr | Channel::WalkIn);

        let mut at = contact.at;
        let make = |history: &mut History, at: DateTime<Utc>, body: Body| {
            let mut event = history.base_event(at, body);
            event.customer = Some(customer_ref.clone());
            event.interaction_id = Some(interaction_id.as_str().into());
            event.channel = Some(channel);
            event
        };
        let emit = |history: &mut History, at: DateTime<Utc>, body: Body| {
            let event = make(history, at, body);
            history.push(event);
        };

        emit(
            self,
            at,
            Body::InteractionStarted {
                direction: Direction::Inbound,
                subject: matches!(channel, Channel::Email | Channel::WebPortal)
                    .then(|| format!("Question about {topic}")),
                self_service: matches!(channel, Channel::Ivr | Channel::Chatbot).then_some(true),
            },
        );
        if text_channel {
            at += self.seconds(1, 20);
            emit(
                self,
                at,
                Body::Message {
                    direction: Direction::Inbound,
                    author: Author::Customer,
                    agent_id: None,
                    text: Some(format!("Hi, I need help with {topic} (ref {seq}).")),
                },
            );
        }
        if matches!(channel, Channel::Ivr | Channel::Chatbot) {
            at += self.seconds(20, 180);
            emit(
                self,
                at,
                Body::Tagged {
                    topics: vec![topic.to_owned()],
                },
            );
            // Self-service contains about 40 % of sessions.
            if self.rng.u8(0..10) < 4 {
                at += self.seconds(5, 60);
                emit(
                    self,
                    at,
                    Body::Ended {
                        reason: Some("contained".to_owned()),
                    },
                );
                return;
            }
        }

        at += self.seconds(1, 5);
        let priority = if self.rng.u8(0..10) == 0 { 1 } else { 0 };
        emit(
            self,
            at,
            Body::Queued {
                queue: queue.to_owned(),
                priority,
                skills: vec![queue.to_owned()],
            },
        );
        let queued_at = at;
        let patience = self.patience(channel);

        // The desk's answer: the skilled slot free soonest, offered and accepted at once
        // within a routing round (0-2 s), as a router with auto-accept does; now and then
        // the first agent offered lets it go and it is offered again.
        let slot = self.earliest_slot(channel, contact.queue, queued_at);
        let declined_by = match slot {
            Some((agent, ..)) if self.rng.u8(0..20) == 0 => {
                self.other_agent(channel, contact.queue, agent)
            }
            _ => None,
        };
        let first_offer = slot.map(|(_, _, when)| when + self.seconds(0, 2));
        let (offer_at, decline_at) = match (first_offer, declined_by) {
            (Some(first), Some(_)) => {
                let declined = first + self.seconds(5, 20);
                (Some(declined + self.seconds(1, 10)), Some(declined))
            }
            (first, _) => (first, None),
        };
        let assigned_at = offer_at;
        let abandons = assigned_at.is_none_or(|assigned| queued_at + patience < assigned);
        // The last routing decision the desk makes about it: a router's, from
        // `routed_from` on.
        let decided = if abandons {
            queued_at + patience
        } else {
            assigned_at.unwrap_or(queued_at)
        };

        if self.config.routed_from.is_some_and(|from| decided >= from) {
            let script = Script {
                interaction_id: interaction_id.clone(),
                channel,
                queued_at,
                patience,
                text_channel,
                topic,
            };
            self.route_later(contact, script, &make);
            return;
        }
        if abandons {
            at = queued_at + patience;
            emit(self, at, Body::Abandoned);
            at += TimeDelta::seconds(1);
            emit(
                self,
                at,
                Body::Ended {
                    reason: Some("abandoned".to_owned()),
                },
            );
            self.schedule_follow_up(&contact, channel, at);
            return;
        }
        let (Some(slot), Some(offer_at), Some(assigned_at), Some(first_offer)) =
            (slot, offer_at, assigned_at, first_offer)
        else {
            return;
        };

        if let (Some(other), Some(declined)) = (declined_by, decline_at) {
            let other_id = self.agents[other].id.clone();
            emit(
                self,
                first_offer,
                Body::Offered {
                    agent_id: other_id.clone(),
                },
            );
            let answer = if self.rng.bool() {
                Body::OfferDeclined { agent_id: other_id }
            } else {
                Body::OfferTimedOut { agent_id: other_id }
            };
            emit(self, declined, answer);
        }
        let mut agent = slot.0;
        emit(
            self,
            offer_at,
            Body::Offered {
                agent_id: self.agents[agent].id.clone(),
            },
        );
        at = assigned_at;
        emit(
            self,
            at,
            Body::Assigned {
                agent_id: self.agents[agent].id.clone(),
            },
        );
        let mut holding = (slot, at);

        // A transfer to another queue now and then: the first agent is free at once, and
        // the contact waits for the other queue's next free slot.
        if self.rng.u8(0..12) == 0 {
            let other = (contact.queue + 1 + self.rng.usize(0..3)) % QUEUES.len();
            let transfer_at = at + self.seconds(30, 300);
            let next = self
                .earliest_slot(channel, other, transfer_at + TimeDelta::seconds(5))
                // Routing from `routed_from` on is a router's: no transfer then.
                .filter(|(_, _, when)| {
                    self.config
                        .routed_from
                        .is_none_or(|from| *when + TimeDelta::seconds(4) < from)
                });
            if let Some(next) = next {
                at = transfer_at;
                emit(
                    self,
                    at,
                    Body::Transferred {
                        to_queue: Some(QUEUES[other].0.to_owned()),
                        to_agent: None,
                    },
                );
                self.occupy(slot, channel, holding.1, transfer_at);
                at = next.2 + self.seconds(0, 2);
                agent = next.0;
                emit(
                    self,
                    at,
                    Body::Assigned {
                        agent_id: self.agents[agent].id.clone(),
                    },
                );
                holding = (next, at);
            }
        }
        let agent_id = self.agents[agent].id.clone();
        let (steps, ended, resolved) = self.handling(channel, text_channel, topic, &contact);
        for (after, body) in steps {
            let body = match body {
                Body::Message {
                    direction,
                    author: Author::Agent,
                    text,
                    ..
                } => Body::Message {
                    direction,
                    author: Author::Agent,
                    agent_id: Some(agent_id.clone()),
                    text,
                },
                Body::Note { text, .. } => Body::Note {
                    agent_id: agent_id.clone(),
                    text,
                },
                Body::WrappedUp {
                    resolved,
                    disposition,
                    topics,
                    ..
                } => Body::WrappedUp {
                    agent_id: agent_id.clone(),
                    resolved,
                    disposition,
                    topics,
                },
                other => other,
            };
            emit(self, at + after, body);
        }
        self.occupy(holding.0, channel, holding.1, at + ended);
        let last = at + ended;
        self.after_handling(&contact, channel, resolved, last);
    }

    /// What the agent and the customer do after the assignment, by time after it (agent
    /// fields empty); with when the contact ends (the agent is free then) and whether it
    /// is resolved.
    fn handling(
        &mut self,
        channel: Channel,
        text_channel: bool,
        topic: &str,
        contact: &PendingContact,
    ) -> (Vec<(TimeDelta, Body)>, TimeDelta, bool) {
        let mut steps = Vec::new();
        let mut after = TimeDelta::zero();
        let exchanges = if text_channel {
            self.rng.usize(1..4)
        } else {
            0
        };
        for n in 0..exchanges {
            after += self.seconds(20, 240);
            steps.push((
                after,
                Body::Message {
                    direction: Direction::Outbound,
                    author: Author::Agent,
                    agent_id: None,
                    text: Some(format!("Let me look into your {topic} ({n}).")),
                },
            ));
            after += self.seconds(20, 240);
            steps.push((
                after,
                Body::Message {
                    direction: Direction::Inbound,
                    author: Author::Customer,
                    agent_id: None,
                    text: Some("Thanks, here is what I see.".to_owned()),
                },
            ));
        }
        if channel == Channel::Voice && self.rng.u8(0..8) == 0 {
            after += self.seconds(30, 200);
            steps.push((after, Body::Hold));
            after += self.seconds(20, 180);
            steps.push((after, Body::Resumed));
        }
        after += self.seconds(60, 900);
        if self.rng.u8(0..3) == 0 {
            steps.push((
                after,
                Body::Note {
                    agent_id: String::new(),
                    text: format!("Customer reports {topic}; checked account."),
                },
            ));
        }
        // Follow-ups resolve more often than first contacts.
        let resolved = self.rng.u8(0..10) < 6 + contact.attempt.min(3) as u8;
        steps.push((
            after,
            Body::Ended {
                reason: Some("completed".to_owned()),
            },
        ));
        let ended = after;
        after += self.seconds(10, 180);
        steps.push((
            after,
            Body::WrappedUp {
                agent_id: String::new(),
                resolved,
                disposition: Some(if resolved { "solved" } else { "pending" }.to_owned()),
                topics: vec![topic.to_owned()],
            },
        ));
        if self.rng.u8(0..10) < 3 {
            after += self.seconds(30, 3_600);
            let score = if resolved {
                self.rng.u8(3..=5)
            } else {
                self.rng.u8(1..=3)
            };
            steps.push((after, Body::Csat { score }));
        }
        (steps, ended, resolved)
    }

    /// The contact's script for a router's assignment, emitted right after its `queued`.
    fn route_later(
        &mut self,
        contact: PendingContact,
        script: Script<'_>,
        make: &dyn Fn(&mut History, DateTime<Utc>, Body) -> Event,
    ) {
        let Script {
            interaction_id,
            channel,
            queued_at,
            patience,
            text_channel,
            topic,
        } = script;
        // A transfer now and then, as in the generated past.
        let transfer = (self.rng.u8(0..12) == 0).then(|| {
            let other = (contact.queue + 1 + self.rng.usize(0..3)) % QUEUES.len();
            let after = self.seconds(30, 300);
            let body = Body::Transferred {
                to_queue: Some(QUEUES[other].0.to_owned()),
                to_agent: None,
            };
            (after, make(self, queued_at, body))
        });
        let (steps, ended, resolved) = self.handling(channel, text_channel, topic, &contact);
        let handling = steps
            .into_iter()
            .map(|(after, body)| (after, make(self, queued_at, body)))
            .collect();
        let leaving = vec![
            (TimeDelta::zero(), make(self, queued_at, Body::Abandoned)),
            (
                TimeDelta::seconds(1),
                make(
                    self,
                    queued_at,
                    Body::Ended {
                        reason: Some("abandoned".to_owned()),
                    },
                ),
            ),
        ];
        let routed = RoutedContact {
            interaction_id,
            channel,
            queue: QUEUES[contact.queue].0.to_owned(),
            queued_at,
            patience,
            handling,
            leaving,
            transfer,
        };
        let seq = self.next_seq();
        self.pending.insert((queued_at, seq), Item::Routed(routed));
        // The follow-up as if it were answered about when the desk would have: a customer
        // whose issue stays open comes back either way.
        self.after_handling(&contact, channel, resolved, queued_at + ended);
    }

    /// After a handled contact: a follow-up when unresolved, now and then a repeat contact
    /// when resolved.
    fn after_handling(
        &mut self,
        contact: &PendingContact,
        channel: Channel,
        resolved: bool,
        at: DateTime<Utc>,
    ) {
        if !resolved {
            self.schedule_follow_up(contact, channel, at);
        } else if self.rng.u8(0..10) == 0 {
            // A repeat contact within the reopen window.
            let at = at + self.seconds(3_600, 5 * 86_400);
            let seq = self.next_seq();
            self.contacts.push(Reverse(PendingContact {
                at,
                seq,
                customer: contact.customer,
                queue: contact.queue,
                attempt: contact.attempt + 1,
                previous: Some(channel),
            }));
        }
    }

    fn schedule_follow_up(
        &mut self,
        contact: &PendingContact,
        channel: Channel,
        at: DateTime<Utc>,
    ) {
        if contact.attempt >= 4 || self.rng.u8(0..10) < 2 {
            return;
        }
        // An hour later, or the next day.
        let gap = if self.rng.bool() {
            self.seconds(1_800, 7_200)
        } else {
            self.seconds(50_000, 100_000)
        };
        let seq = self.next_seq();
        self.contacts.push(Reverse(PendingContact {
            at: at + gap,
            seq,
            customer: contact.customer,
            queue: contact.queue,
            attempt: contact.attempt + 1,
            previous: Some(channel),
        }));
    }

    /// Starts every contact (and agent change) due before the earliest pending item.
    fn advance(&mut self) {
        loop {
            let next_item = self.pending.keys().next().map(|(at, _)| *at);
            let next_contact = self.contacts.peek().map(|Reverse(c)| c.at);
            let upcoming = [
                Some(self.next_arrival),
                next_contact,
                Some(self.next_agent_change),
            ]
            .into_iter()
            .flatten()
            .min()
            .unwrap_or(self.next_arrival);
            if next_item.is_some_and(|at| at <= upcoming) {
                return;
            }
            if upcoming == self.next_agent_change {
                self.change_an_agent(upcoming);
            } else if next_contact == Some(upcoming) {
                if let Some(Reverse(contact)) = self.contacts.pop() {
                    self.start_contact(contact);
                }
            } else {
                let seq = self.next_seq();
                let contact = PendingContact {
                    at: upcoming,
                    seq,
                    customer: self.rng.u64(0..self.config.customers),
                    queue: self.rng.usize(0..QUEUES.len()),
                    attempt: 0,
                    previous: None,
                };
                // Arrivals are a Poisson process whose rate follows the desk's day.
                let mean_gap = self
                    .config
                    .mean_arrival_gap
                    .num_microseconds()
                    .unwrap_or(1)
                    .max(1) as f64
                    / load_factor(upcoming - self.config.start);
                let gap = -mean_gap * (1.0 - self.rng.f64()).ln();
                self.next_arrival += TimeDelta::microseconds((gap as i64).max(1));
                self.start_contact(contact);
            }
        }
    }

    /// An agent steps away for a while, once the work it was given has started, and comes
    /// back: about a break every two hours per agent.
    fn change_an_agent(&mut self, at: DateTime<Utc>) {
        let mean_gap = 7_200.0 / self.agents.len() as f64;
        let gap = mean_gap * (0.5 + self.rng.f64());
        self.next_agent_change = at + TimeDelta::milliseconds((gap * 1_000.0).max(1_000.0) as i64);
        let index = self.rng.usize(0..self.agents.len());
        let away_at = at.max(self.agents[index].last_start);
        let back_at = away_at + self.seconds(300, 1_200);
        for slots in self.agents[index].slots.values_mut() {
            for free in slots {
                *free = (*free).max(back_at);
            }
        }
        let away = self.agent_state(index, AgentStatus::Away, away_at, false);
        self.push(away);
        let back = self.agent_state(index, AgentStatus::Available, back_at, false);
        self.push(back);
    }

    /// The next event or routed contact, in time order.
    pub fn next_item(&mut self) -> Option<Item> {
        if self.emitted >= self.config.events {
            return None;
        }
        self.advance();
        let (_, item) = self.pending.pop_first()?;
        if matches!(item, Item::Event(_)) {
            self.emitted += 1;
        }
        Some(item)
    }

    /// The time of the next item, without taking it.
    pub fn peek_time(&mut self) -> Option<DateTime<Utc>> {
        if self.emitted >= self.config.events {
            return None;
        }
        self.advance();
        self.pending.keys().next().map(|(at, _)| *at)
    }
}

impl Iterator for History {
    type Item = Event;

    /// The next event; contacts left to a router are skipped (see [`History::next_item`]).
    fn next(&mut self) -> Option<Event> {
        loop {
            match self.next_item()? {
                Item::Event(event) => return Some(event),
                Item::Routed(_) => continue,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use omnilog_events::{EventType, to_canonical_json};
    use std::collections::BTreeSet;

    fn generate(seed: u64, events: u64) -> Vec<Event> {
        history(HistoryConfig::with_events(seed, events)).collect()
    }

    #[test]
    fn the_same_seed_gives_the_same_events_byte_for_byte() {
        let a: Vec<String> = generate(7, 3_000).iter().map(to_canonical_json).collect();
        let b: Vec<String> = generate(7, 3_000).iter().map(to_canonical_json).collect();
        assert_eq!(a.len(), 3_000);
        assert_eq!(a, b);
        let c: Vec<String> = generate(8, 3_000).iter().map(to_canonical_json).collect();
        assert_ne!(a, c);
    }

    #[test]
    fn every_segment_prefers_its_channel_and_each_customer_says_its_segment_on_its_first_contact() {
        let mut contacts: BTreeMap<&str, BTreeMap<Channel, u64>> = BTreeMap::new();
        let mut stamped: BTreeMap<u64, BTreeSet<String>> = BTreeMap::new();
        for event in generate(3, 60_000) {
            let Some(customer) = event.customer.as_ref() else {
                continue;
            };
            // A customer's number is in its handles (`+1555` then seven digits, or
            // `customer<n>@example.com`); later contacts carry one of them.
            let Some(number) = customer.handles.iter().find_map(|h| match h.kind.as_str() {
                "phone" => h.value[5..].parse::<u64>().ok(),
                _ => h
                    .value
                    .strip_prefix("customer")?
                    .split('@')
                    .next()?
                    .parse()
                    .ok(),
            }) else {
                continue;
            };
            if let Some(segment) = customer.attributes.get("segment") {
                assert_eq!(segment, segment_of(number), "{event:?}");
                let interaction = event
                    .interaction_id
                    .as_deref()
                    .map(str::to_owned)
                    .unwrap_or_default();
                stamped.entry(number).or_default().insert(interaction);
            }
            if matches!(event.body, Body::InteractionStarted { .. }) {
                *contacts
                    .entry(segment_of(number))
                    .or_default()
                    .entry(event.channel.unwrap())
                    .or_default() += 1;
            }
        }
        // Stamped on the events of the first contact only (the one with both handles).
        assert!(stamped.len() > 1_000, "{} customers", stamped.len());
        assert!(stamped.values().all(|interactions| interactions.len() == 1));
        let preferred = |segment: &str| {
            contacts[segment]
                .iter()
                .max_by_key(|(_, n)| **n)
                .map(|(c, _)| *c)
                .unwrap()
        };
        assert_eq!(preferred("finance"), Channel::Email);
        assert_eq!(preferred("sales"), Channel::Voice);
        assert_eq!(preferred("medical"), Channel::Voice);
        assert_eq!(preferred("development"), Channel::Chat);
    }

    #[test]
    fn events_come_in_time_order_with_unique_ids() {
        let events = generate(1, 20_000);
        assert!(
            events
                .windows(2)
                .all(|w| w[0].occurred_at <= w[1].occurred_at)
        );
        let ids: BTreeSet<_> = events.iter().map(|e| e.event_id).collect();
        assert_eq!(ids.len(), events.len());
    }

    #[test]
    fn every_generated_event_passes_the_contracts_validation() {
        for event in generate(3, 5_000) {
            let reparsed = omnilog_events::parse_event(to_canonical_json(&event).as_bytes())
                .unwrap_or_else(|e| panic!("{e}: {}", to_canonical_json(&event)));
            assert_eq!(reparsed, event);
        }
    }

    #[test]
    fn the_history_is_cross_channel_and_covers_the_desk() {
        let events: Vec<Event> =
            history(HistoryConfig::with_events(2, 30_000).with_customer_ids()).collect();
        let types: BTreeSet<EventType> = events.iter().map(Event::event_type).collect();
        for wanted in [
            EventType::InteractionStarted,
            EventType::Message,
            EventType::Queued,
            EventType::Offered,
            EventType::OfferDeclined,
            EventType::OfferTimedOut,
            EventType::Assigned,
            EventType::Transferred,
            EventType::Hold,
            EventType::Abandoned,
            EventType::Ended,
            EventType::WrappedUp,
            EventType::Csat,
            EventType::Note,
            EventType::Tagged,
            EventType::AgentState,
        ] {
            assert!(types.contains(&wanted), "no {wanted} in the history");
        }
        // Customers come back on other channels.
        let mut channels_by_customer: BTreeMap<String, BTreeSet<Channel>> = BTreeMap::new();
        for event in &events {
            if let (Some(customer), Some(channel)) = (event.customer_id(), event.channel) {
                channels_by_customer
                    .entry(customer.to_owned())
                    .or_default()
                    .insert(channel);
            }
        }
        let switchers = channels_by_customer
            .values()
            .filter(|c| c.len() > 1)
            .count();
        assert!(
            switchers > 50,
            "only {switchers} customers used two channels"
        );
    }

    #[test]
    fn customer_ids_when_asked_are_those_of_the_phone_handle() {
        let config = HistoryConfig::with_events(4, 2_000).with_customer_ids();
        for event in history(config) {
            if let Some(customer) = &event.customer {
                let id = customer
                    .id
                    .as_deref()
                    .expect("an id on every interaction event");
                assert_eq!(id.len(), 36);
            }
            assert!(event.partition_key().is_some());
        }
    }

    /// The contract's default service-level thresholds, in seconds.
    fn threshold(channel: Channel) -> i64 {
        match channel {
            Channel::Voice => 20,
            Channel::Chat | Channel::Messaging => 60,
            Channel::Sms | Channel::Social => 300,
            _ => 3_600,
        }
    }

    /// Per (hour since the start, channel) of the queue entry: offered, answered within
    /// the channel's threshold, abandoned (CONTRACT §5's definitions).
    type Figures = BTreeMap<(i64, Channel), (u64, u64, u64)>;

    fn desk_figures(config: HistoryConfig, hours: i64) -> Figures {
        let start = config.start;
        let end = start + TimeDelta::hours(hours);
        let mut entered: BTreeMap<String, DateTime<Utc>> = BTreeMap::new();
        let mut figures = Figures::new();
        for event in history(config).take_while(|e| e.occurred_at < end) {
            let (Some(id), Some(channel)) = (
                event.interaction_id.as_deref().map(str::to_owned),
                event.channel,
            ) else {
                continue;
            };
            let hour_of = |at: DateTime<Utc>| (at - start).num_hours();
            match &event.body {
                Body::Queued { .. }
                | Body::Transferred {
                    to_queue: Some(_), ..
                } => {
                    entered.insert(id, event.occurred_at);
                    figures
                        .entry((hour_of(event.occurred_at), channel))
                        .or_default()
                        .0 += 1;
                }
                Body::Assigned { .. } => {
                    if let Some(since) = entered.remove(&id)
                        && (event.occurred_at - since).num_seconds() <= threshold(channel)
                    {
                        figures.entry((hour_of(since), channel)).or_default().1 += 1;
                    }
                }
                Body::Abandoned => {
                    if let Some(since) = entered.remove(&id) {
                        figures.entry((hour_of(since), channel)).or_default().2 += 1;
                    }
                }
                _ => {}
            }
        }
        figures
    }

    fn sum<'a>(rows: impl Iterator<Item = &'a (u64, u64, u64)>) -> (u64, u64, u64) {
        rows.fold((0, 0, 0), |a, r| (a.0 + r.0, a.1 + r.1, a.2 + r.2))
    }

    #[test]
    fn the_desk_answers_most_contacts_in_time_and_breaches_at_peaks() {
        // A desk of about 140 agents over ten hours (two and a half waves of load).
        let config = HistoryConfig::with_events(42, u64::MAX / 2)
            .with_customers(20_000)
            .with_arrival_gap(TimeDelta::milliseconds(2_200));
        let figures = desk_figures(config, 10);
        let (offered, in_time, abandoned) = sum(figures.values());
        let level = in_time as f64 / offered as f64;
        assert!(
            (0.85..0.99).contains(&level),
            "service level {level:.3} over {offered} entries"
        );
        let voice = |hour: Option<i64>| {
            sum(figures
                .iter()
                .filter(|((h, c), _)| *c == Channel::Voice && hour.is_none_or(|x| x == *h))
                .map(|(_, f)| f))
        };
        let (calls, calls_in_time, calls_lost) = voice(None);
        let voice_level = calls_in_time as f64 / calls as f64;
        assert!(
            (0.75..0.97).contains(&voice_level),
            "voice service level {voice_level:.3}"
        );
        let lost = calls_lost as f64 / calls as f64;
        assert!((0.005..0.08).contains(&lost), "voice abandonment {lost:.3}");
        assert!(abandoned > 0);
        // Hour by hour: the quiet hours answer nearly every call within 20 s, the peaks
        // (four hours apart) fall well short of that.
        let levels: Vec<f64> = (0..10)
            .map(|h| {
                let (o, i, _) = voice(Some(h));
                i as f64 / o.max(1) as f64
            })
            .collect();
        let calm = levels.iter().filter(|&&l| l >= 0.95).count();
        let strained = levels.iter().filter(|&&l| l < 0.85).count();
        assert!(
            calm >= 4 && (1..=4).contains(&strained),
            "voice service level by hour: {levels:.2?}"
        );
    }

    #[test]
    fn no_agent_holds_more_than_its_capacity() {
        let config = HistoryConfig::with_events(5, 60_000).with_customers(3_000);
        let mut capacity: BTreeMap<String, BTreeMap<Channel, u32>> = BTreeMap::new();
        let mut holder: BTreeMap<String, (String, Channel)> = BTreeMap::new();
        let mut load: BTreeMap<(String, Channel), u32> = BTreeMap::new();
        let mut busiest = 0;
        for event in history(config) {
            if let Body::AgentState {
                agent_id,
                capacity: Some(c),
                ..
            } = &event.body
            {
                capacity.insert(agent_id.clone(), c.clone());
            }
            let (Some(id), Some(channel)) = (
                event.interaction_id.as_deref().map(str::to_owned),
                event.channel,
            ) else {
                continue;
            };
            let release = |holder: &mut BTreeMap<String, (String, Channel)>,
                           load: &mut BTreeMap<(String, Channel), u32>| {
                if let Some(key) = holder.remove(&id) {
                    *load.entry(key).or_default() -= 1;
                }
            };
            match &event.body {
                Body::Assigned { agent_id } => {
                    release(&mut holder, &mut load);
                    let key = (agent_id.clone(), channel);
                    let held = load.entry(key.clone()).or_default();
                    *held += 1;
                    let allowed = capacity[agent_id].get(&channel).copied().unwrap_or(0);
                    assert!(
                        *held <= allowed,
                        "{agent_id} holds {held} {channel} contacts, capacity {allowed}, at {}",
                        event.occurred_at
                    );
                    busiest = busiest.max(*held);
                    holder.insert(id, key);
                }
                Body::Ended { .. } | Body::Abandoned | Body::Transferred { .. } => {
                    release(&mut holder, &mut load)
                }
                _ => {}
            }
        }
        assert!(busiest > 1, "agents never held two contacts at once");
    }

    #[test]
    fn from_routed_from_on_routing_is_left_to_a_router() {
        // Busy enough (two new issues a second) that some contacts wait at the hand-over.
        let mut config = HistoryConfig::with_events(6, u64::MAX / 2)
            .with_customers(5_000)
            .with_arrival_gap(TimeDelta::milliseconds(500));
        let from = config.start + TimeDelta::minutes(30);
        config = config.routed_from(from);
        let end = from + TimeDelta::minutes(10);
        let mut generator = history(config);
        let mut queued: BTreeMap<String, DateTime<Utc>> = BTreeMap::new();
        let mut routed = Vec::new();
        let mut routed_ids = BTreeSet::new();
        let mut last = DateTime::<Utc>::MIN_UTC;
        while let Some(item) = generator.next_item() {
            match item {
                Item::Event(event) => {
                    if event.occurred_at >= end {
                        break;
                    }
                    assert!(event.occurred_at >= last, "events in time order");
                    last = event.occurred_at;
                    let id = event
                        .interaction_id
                        .as_deref()
                        .map(str::to_owned)
                        .unwrap_or_default();
                    if matches!(event.event_type(), EventType::Queued) {
                        queued.insert(id.clone(), event.occurred_at);
                    }
                    if matches!(
                        event.event_type(),
                        EventType::Offered
                            | EventType::OfferDeclined
                            | EventType::OfferTimedOut
                            | EventType::Assigned
                            | EventType::Transferred
                            | EventType::Abandoned
                    ) {
                        assert!(
                            event.occurred_at < from,
                            "the generator routed at {} after routed_from: {}",
                            event.occurred_at,
                            to_canonical_json(&event)
                        );
                        assert!(!routed_ids.contains(&id), "{id} was left to a router");
                    }
                    if routed_ids.contains(&id) {
                        panic!("an event of {id} after it was left to a router");
                    }
                }
                Item::Routed(contact) => {
                    // Right after its `queued`.
                    assert_eq!(
                        queued.get(&contact.interaction_id),
                        Some(&contact.queued_at)
                    );
                    assert!(
                        contact.queued_at + contact.patience >= from || contact.queued_at >= from
                    );
                    routed_ids.insert(contact.interaction_id.clone());
                    routed.push(contact);
                }
            }
        }
        assert!(
            routed.len() > 500,
            "{} contacts left to a router",
            routed.len()
        );
        // Some were queued before the hand-over and still waited at it.
        assert!(routed.iter().any(|c| c.queued_at < from));
        let contact = &routed[0];
        let at = contact.queued_at + TimeDelta::seconds(7);
        let handled = contact.handled_by("agent-0042", at);
        assert!(
            handled
                .windows(2)
                .all(|w| w[0].occurred_at <= w[1].occurred_at)
        );
        assert!(handled.iter().all(|e| e.occurred_at > at
            && e.interaction_id.as_deref() == Some(contact.interaction_id.as_str())));
        let wrapped = handled
            .iter()
            .find(|e| e.event_type() == EventType::WrappedUp)
            .expect("a wrap-up");
        assert!(
            matches!(&wrapped.body, Body::WrappedUp { agent_id, .. } if agent_id == "agent-0042")
        );
        assert!(handled.iter().any(|e| e.event_type() == EventType::Ended));
        let left = contact.abandoned_at(at);
        let types: Vec<EventType> = left.iter().map(Event::event_type).collect();
        assert_eq!(types, [EventType::Abandoned, EventType::Ended]);
        // Some are handed on to another queue by their first agent, after the assignment.
        let transfers: Vec<Event> = routed
            .iter()
            .filter_map(|c| c.transferred_after(at))
            .collect();
        assert!(!transfers.is_empty() && transfers.len() < routed.len() / 5);
        assert!(transfers.iter().all(|e| e.occurred_at > at
            && matches!(
                &e.body,
                Body::Transferred {
                    to_queue: Some(_),
                    ..
                }
            )));
        // Every event of the scripts is new.
        let ids: BTreeSet<_> = routed
            .iter()
            .flat_map(|c| {
                c.handled_by("a", c.queued_at)
                    .into_iter()
                    .chain(c.abandoned_at(c.queued_at))
            })
            .map(|e| e.event_id)
            .collect();
        assert!(ids.len() > routed.len() * 4);
    }
}
