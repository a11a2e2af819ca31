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
//! Invariants: the same configuration gives the same events, byte for byte (all
//! randomness comes from one seeded generator and ids derive from it); events come out in
//! `occurred_at` order; memory stays bounded by the contacts in flight, not the history, so
//! ten million events stream through without holding them.
//!
//! Customer ids: a customer's first contact carries both handles (phone first), later
//! contacts only the channel's handle, so identity resolution at ingest links them. With
//! [`HistoryConfig::with_customer_ids`] every event also names the id ingest would
//! resolve (uuid v5 of the phone handle), which writers that bypass ingest need for the
//! partition key.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap};

use chrono::{DateTime, TimeDelta, Utc};
use omnilog_events::identity::{customer_id_for_handle, event_id_for_source};
use omnilog_events::{
    AgentStatus, Author, Body, CURRENT_SCHEMA_VERSION, Channel, CustomerRef, Direction, Event,
    Handle,
};

/// The queues of the generated desk, with the topics their issues are about.
pub const QUEUES: [(&str, &[&str]); 4] = [
    ("billing", &["invoice", "refund", "payment-failed"]),
    ("support", &["login", "outage", "bug-report", "how-to"]),
    ("sales", &["upgrade", "pricing", "trial"]),
    ("tech", &["integration", "api-error", "data-export"]),
];

/// What to generate.
#[derive(Clone, Debug)]
pub struct HistoryConfig {
    pub seed: u64,
    /// Stop after this many events.
    pub events: u64,
    /// Distinct customers (they come back: issues pick a customer at random).
    pub customers: u64,
    pub agents: u32,
    /// The event time of the first event.
    pub start: DateTime<Utc>,
    /// Mean time between new issues.
    pub mean_arrival_gap: TimeDelta,
    /// Set `customer.id` on every event (see the module documentation).
    pub customer_ids: bool,
}

impl HistoryConfig {
    /// About `events` events over customers and agents scaled to fit (roughly 40 events
    /// a customer, 150 customers an agent, at least 8 agents).
    pub fn with_events(seed: u64, events: u64) -> Self {
        let customers = (events / 40).max(10);
        HistoryConfig {
            seed,
            events,
            customers,
            agents: (customers / 150).clamp(8, 2_000) as u32,
            start: DateTime::from_timestamp(1_772_352_000, 0).unwrap_or_default(), // 2026-03-01T08:00:00Z
            mean_arrival_gap: TimeDelta::seconds(20),
            customer_ids: false,
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
}

/// The history as an iterator of events in `occurred_at` order.
pub fn history(config: HistoryConfig) -> History {
    History::new(config)
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Profile {
    /// Phones only.
    VoiceOnly,
    /// Chat, messaging, SMS and social.
    Digital,
    /// Everything, fewer at a time.
    Blended,
}

#[derive(Debug)]
struct Agent {
    id: String,
    skills: Vec<String>,
    profile: Profile,
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

/// The generator. See the module documentation.
#[derive(Debug)]
pub struct History {
    config: HistoryConfig,
    rng: fastrand::Rng,
    agents: Vec<Agent>,
    emitted: u64,
    sequence: u64,
    next_arrival: DateTime<Utc>,
    /// Customers whose first contact happened (they no longer carry both handles).
    seen_customers: std::collections::BTreeSet<u64>,
    contacts: BinaryHeap<Reverse<PendingContact>>,
    /// Events generated but not yet due, by (time, sequence).
    events: BTreeMap<(DateTime<Utc>, u64), Event>,
    next_agent_change: DateTime<Utc>,
}

impl History {
    fn new(config: HistoryConfig) -> Self {
        let mut rng = fastrand::Rng::with_seed(config.seed);
        let agents = (0..config.agents.max(1))
            .map(|n| {
                let profile = match n % 4 {
                    0 => Profile::VoiceOnly,
                    1 => Profile::Digital,
                    _ => Profile::Blended,
                };
                // Every agent covers one home queue; many cover a second.
                let home = n as usize % QUEUES.len();
                let mut skills = vec![QUEUES[home].0.to_owned()];
                if rng.bool() {
                    skills.push(
                        QUEUES[(home + 1 + rng.usize(0..3)) % QUEUES.len()]
                            .0
                            .to_owned(),
                    );
                }
                skills.sort();
                Agent {
                    id: format!("agent-{n:04}"),
                    skills,
                    profile,
                }
            })
            .collect();
        let start = config.start;
        let mut history = History {
            config,
            rng,
            agents,
            emitted: 0,
            sequence: 0,
            next_arrival: start + TimeDelta::seconds(30),
            seen_customers: Default::default(),
            contacts: BinaryHeap::new(),
            events: BTreeMap::new(),
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
        self.events.insert((event.occurred_at, seq), event);
    }

    fn base_event(&mut self, at: DateTime<Utc>, body: Body) -> Event {
        let seq = self.next_seq();
        let source_event_id = format!("{}:{seq}", self.config.seed);
        Event {
            event_id: event_id_for_source(Some("testkit"), &source_event_id),
            schema_version: CURRENT_SCHEMA_VERSION,
            source: Some("testkit".to_owned()),
            source_event_id: Some(source_event_id),
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
            let capacity: BTreeMap<Channel, u32> = match agent.profile {
                Profile::VoiceOnly => [(Channel::Voice, 1), (Channel::Ivr, 1)].into(),
                Profile::Digital => [
                    (Channel::Chat, 3),
                    (Channel::Messaging, 3),
                    (Channel::Sms, 3),
                    (Channel::Social, 2),
                    (Channel::Chatbot, 3),
                ]
                .into(),
                Profile::Blended => [
                    (Channel::Voice, 1),
                    (Channel::Ivr, 1),
                    (Channel::Chat, 2),
                    (Channel::Email, 5),
                    (Channel::WebPortal, 5),
                    (Channel::WalkIn, 1),
                    (Channel::Alert, 3),
                ]
                .into(),
            };
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

    fn pick_channel(&mut self, previous: Option<Channel>) -> Channel {
        // A customer who got nowhere often switches channel for the follow-up.
        const MIX: [(Channel, u32); 10] = [
            (Channel::Voice, 30),
            (Channel::Chat, 20),
            (Channel::Email, 18),
            (Channel::Sms, 8),
            (Channel::Messaging, 8),
            (Channel::WebPortal, 4),
            (Channel::Ivr, 5),
            (Channel::Chatbot, 4),
            (Channel::Social, 2),
            (Channel::WalkIn, 1),
        ];
        loop {
            let mut roll = self.rng.u32(0..100);
            let mut chosen = Channel::Voice;
            for (channel, weight) in MIX {
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

    /// An agent who can take `channel` in `queue`, or any agent able to take the channel.
    fn pick_agent(&mut self, channel: Channel, queue: &str) -> usize {
        let able = |agent: &Agent| match agent.profile {
            Profile::VoiceOnly => matches!(channel, Channel::Voice | Channel::Ivr),
            Profile::Digital => matches!(
                channel,
                Channel::Chat
                    | Channel::Messaging
                    | Channel::Sms
                    | Channel::Social
                    | Channel::Chatbot
            ),
            Profile::Blended => !matches!(
                channel,
                Channel::Messaging | Channel::Sms | Channel::Social | Channel::Chatbot
            ),
        };
        let skilled: Vec<usize> = (0..self.agents.len())
            .filter(|&i| able(&self.agents[i]) && self.agents[i].skills.iter().any(|s| s == queue))
            .collect();
        if !skilled.is_empty() {
            return skilled[self.rng.usize(0..skilled.len())];
        }
        let any: Vec<usize> = (0..self.agents.len())
            .filter(|&i| able(&self.agents[i]))
            .collect();
        if any.is_empty() {
            self.rng.usize(0..self.agents.len())
        } else {
            any[self.rng.usize(0..any.len())]
        }
    }

    fn seconds(&mut self, low: i64, high: i64) -> TimeDelta {
        TimeDelta::seconds(self.rng.i64(low..=high))
    }

    /// Generates every event of one contact and schedules its follow-up, if any.
    fn start_contact(&mut self, contact: PendingContact) {
        let customer = contact.customer;
        let channel = self.pick_channel(contact.previous);
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
        let customer_ref = CustomerRef {
            id: self
                .config
                .customer_ids
                .then(|| customer_id_for_handle(&Self::phone(customer))),
            handles,
        };
        let (queue, topics) = QUEUES[contact.queue];
        let topic = topics[self.rng.usize(0..topics.len())];
        let text_channel = !matches!(channel, Channel::Voice | Channel::Ivr | Channel::WalkIn);

        let mut at = contact.at;
        let emit = |history: &mut History, at: DateTime<Utc>, body: Body| {
            let mut event = history.base_event(at, body);
            event.customer = Some(customer_ref.clone());
            event.interaction_id = Some(interaction_id.clone());
            event.channel = Some(channel);
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
        let patience = match channel {
            Channel::Voice | Channel::Ivr => self.seconds(10, 400),
            Channel::Chat | Channel::Chatbot => self.seconds(30, 900),
            _ => self.seconds(600, 20_000),
        };
        let wait = match channel {
            Channel::Voice | Channel::Ivr => self.seconds(2, 240),
            Channel::Chat | Channel::Chatbot | Channel::Messaging => self.seconds(5, 400),
            _ => self.seconds(60, 14_400),
        };
        if patience < wait && self.rng.u8(0..3) == 0 {
            at += patience;
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

        at += wait;
        let mut agent = self.pick_agent(channel, queue);
        if self.rng.u8(0..20) == 0 {
            emit(
                self,
                at,
                Body::Offered {
                    agent_id: self.agents[agent].id.clone(),
                },
            );
            at += self.seconds(5, 20);
            let declined = if self.rng.bool() {
                Body::OfferDeclined {
                    agent_id: self.agents[agent].id.clone(),
                }
            } else {
                Body::OfferTimedOut {
                    agent_id: self.agents[agent].id.clone(),
                }
            };
            emit(self, at, declined);
            agent = self.pick_agent(channel, queue);
            at += self.seconds(1, 30);
        }
        emit(
            self,
            at,
            Body::Offered {
                agent_id: self.agents[agent].id.clone(),
            },
        );
        at += self.seconds(1, 8);
        emit(
            self,
            at,
            Body::Assigned {
                agent_id: self.agents[agent].id.clone(),
            },
        );

        // A transfer to another queue now and then.
        if self.rng.u8(0..12) == 0 {
            at += self.seconds(30, 300);
            let other = QUEUES[(contact.queue + 1 + self.rng.usize(0..3)) % QUEUES.len()].0;
            emit(
                self,
                at,
                Body::Transferred {
                    to_queue: Some(other.to_owned()),
                    to_agent: None,
                },
            );
            at += self.seconds(5, 120);
            agent = self.pick_agent(channel, other);
            emit(
                self,
                at,
                Body::Assigned {
                    agent_id: self.agents[agent].id.clone(),
                },
            );
        }
        let agent_id = self.agents[agent].id.clone();
        let exchanges = if text_channel {
            self.rng.usize(1..4)
        } else {
            0
        };
        for n in 0..exchanges {
            at += self.seconds(20, 240);
            emit(
                self,
                at,
                Body::Message {
                    direction: Direction::Outbound,
                    author: Author::Agent,
                    agent_id: Some(agent_id.clone()),
                    text: Some(format!("Let me look into your {topic} ({n}).")),
                },
            );
            at += self.seconds(20, 240);
            emit(
                self,
                at,
                Body::Message {
                    direction: Direction::Inbound,
                    author: Author::Customer,
                    agent_id: None,
                    text: Some("Thanks, here is what I see.".to_owned()),
                },
            );
        }
        if channel == Channel::Voice && self.rng.u8(0..8) == 0 {
            at += self.seconds(30, 200);
            emit(self, at, Body::Hold);
            at += self.seconds(20, 180);
            emit(self, at, Body::Resumed);
        }
        at += self.seconds(60, 900);
        if self.rng.u8(0..3) == 0 {
            emit(
                self,
                at,
                Body::Note {
                    agent_id: agent_id.clone(),
                    text: format!("Customer reports {topic}; checked account."),
                },
            );
        }
        // Follow-ups resolve more often than first contacts.
        let resolved = self.rng.u8(0..10) < 6 + contact.attempt.min(3) as u8;
        emit(
            self,
            at,
            Body::Ended {
                reason: Some("completed".to_owned()),
            },
        );
        at += self.seconds(10, 180);
        emit(
            self,
            at,
            Body::WrappedUp {
                agent_id,
                resolved,
                disposition: Some(if resolved { "solved" } else { "pending" }.to_owned()),
                topics: vec![topic.to_owned()],
            },
        );
        if self.rng.u8(0..10) < 3 {
            at += self.seconds(30, 3_600);
            let score = if resolved {
                self.rng.u8(3..=5)
            } else {
                self.rng.u8(1..=3)
            };
            emit(self, at, Body::Csat { score });
        }
        if !resolved {
            self.schedule_follow_up(&contact, channel, at);
        } else if self.rng.u8(0..10) == 0 {
            // A repeat contact within the reopen window.
            let at = at + self.seconds(3_600, 5 * 86_400);
            let seq = self.next_seq();
            self.contacts.push(Reverse(PendingContact {
                at,
                seq,
                customer,
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

    /// Starts every contact (and agent change) due before the earliest pending event.
    fn advance(&mut self) {
        loop {
            let next_event = self.events.keys().next().map(|(at, _)| *at);
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
            if next_event.is_some_and(|at| at <= upcoming) {
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
                let gap_us = self
                    .config
                    .mean_arrival_gap
                    .num_microseconds()
                    .unwrap_or(1)
                    .max(1) as u64;
                self.next_arrival += TimeDelta::microseconds(self.rng.u64(1..=2 * gap_us) as i64);
                self.start_contact(contact);
            }
        }
    }

    /// An agent steps away for a while (and comes back).
    fn change_an_agent(&mut self, at: DateTime<Utc>) {
        self.next_agent_change = at + self.seconds(300, 1_200);
        let index = self.rng.usize(0..self.agents.len());
        let away = self.agent_state(index, AgentStatus::Away, at, false);
        self.push(away);
        let back_at = at + self.seconds(300, 1_800);
        let back = self.agent_state(index, AgentStatus::Available, back_at, false);
        self.push(back);
    }
}

impl Iterator for History {
    type Item = Event;

    fn next(&mut self) -> Option<Event> {
        if self.emitted >= self.config.events {
            return None;
        }
        self.advance();
        let (_, event) = self.events.pop_first()?;
        self.emitted += 1;
        Some(event)
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
            EventType::Assigned,
            EventType::Transferred,
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
}
