//! The domain model of an omnilog event: what the views fold and the channels produce.
//!
//! These types are the validated form of CONTRACT §3. The protobuf types in [`crate::pb`]
//! are the wire form and the canonical JSON in [`crate::json`] is the human form; both
//! convert to and from these without loss.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use chrono::{DateTime, Utc};
pub use compact_str::CompactString;
use uuid::Uuid;

/// The schema version this build writes. Older versions are upcast on read
/// ([`crate::upcast`]): version 2 stores topics normalised ([`normalise_topic`]).
pub const CURRENT_SCHEMA_VERSION: u32 = 2;

/// A topic as version 2 stores it: trimmed, lower-cased, inner whitespace as one `-`, so
/// `"Refund Request"`, `"refund request "` and `"refund-request"` are one topic in the
/// journey's topics and in the topics report.
pub fn normalise_topic(topic: &str) -> String {
    topic
        .split_whitespace()
        .map(str::to_lowercase)
        .collect::<Vec<_>>()
        .join("-")
}

/// Declares a closed set of names that map to `snake_case` strings, both ways.
macro_rules! named_enum {
    ($(#[$meta:meta])* $name:ident { $($variant:ident => $text:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum $name { $($variant),+ }

        impl $name {
            /// Every value, in declaration order.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            /// The contract's name of this value.
            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $text),+ }
            }

            /// Parses the contract's name; `None` for anything else.
            pub fn parse(text: &str) -> Option<Self> {
                match text { $($text => Some($name::$variant),)+ _ => None }
            }

            /// Every contract name, in declaration order, joined by ", ": what an error
            /// about a value that is none of them lists.
            pub fn names() -> String {
                Self::ALL.iter().map(|value| value.as_str()).collect::<Vec<_>>().join(", ")
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

named_enum!(
    /// A channel a customer reaches the desk through (CONTRACT §3).
    Channel {
        Voice => "voice",
        Email => "email",
        Chat => "chat",
        Sms => "sms",
        Social => "social",
        Messaging => "messaging",
        WebPortal => "web_portal",
        WalkIn => "walk_in",
        Chatbot => "chatbot",
        Ivr => "ivr",
        Alert => "alert",
        Fax => "fax",
        MobileApp => "mobile_app",
    }
);

named_enum!(
    /// Who started an interaction or sent a message, seen from the desk.
    Direction {
        Inbound => "inbound",
        Outbound => "outbound",
    }
);

named_enum!(
    /// The author of a message.
    Author {
        Customer => "customer",
        Agent => "agent",
        Bot => "bot",
        System => "system",
    }
);

named_enum!(
    /// An agent's presence.
    AgentStatus {
        Available => "available",
        Busy => "busy",
        Away => "away",
        Offline => "offline",
    }
);

named_enum!(
    /// The `type` of an event: one per [`Body`] variant.
    EventType {
        InteractionStarted => "interaction_started",
        Message => "message",
        Queued => "queued",
        Offered => "offered",
        OfferDeclined => "offer_declined",
        OfferTimedOut => "offer_timed_out",
        Assigned => "assigned",
        Transferred => "transferred",
        Hold => "hold",
        Resumed => "resumed",
        Abandoned => "abandoned",
        Ended => "ended",
        WrappedUp => "wrapped_up",
        Csat => "csat",
        Note => "note",
        Tagged => "tagged",
        IdentityLinked => "identity_linked",
        CustomersMerged => "customers_merged",
        ProactiveNotice => "proactive_notice",
        AgentState => "agent_state",
        CustomerProfile => "customer_profile",
    }
);

impl EventType {
    /// Interaction events need a channel, an interaction id and a customer; the
    /// others (agent state, the two identity events and the customer's profile) do not,
    /// and carry them only as provenance: the interaction they were made during.
    pub fn is_interaction_event(self) -> bool {
        !matches!(
            self,
            EventType::AgentState
                | EventType::IdentityLinked
                | EventType::CustomersMerged
                | EventType::CustomerProfile
        )
    }
}

/// One way to reach a customer, normalised (see [`crate::identity::normalise_handle`]).
#[derive(
    Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
pub struct Handle {
    /// `phone`, `email`, or a platform's own kind such as `messenger` or `visitor`.
    pub kind: String,
    pub value: String,
}

impl Handle {
    /// A handle from already normalised parts.
    pub fn new(kind: impl Into<String>, value: impl Into<String>) -> Self {
        Handle {
            kind: kind.into(),
            value: value.into(),
        }
    }
}

/// A customer's id, held in place up to 36 bytes (a UUID's text; a longer one is allocated):
/// every view reads the id of every event it folds, and behind a pointer of its own that
/// read waited on memory once more for each event and view (docs/benchmarks-journal.md,
/// "2026-12-07, early morning").
pub type CustomerId = smallstr::SmallString<[u8; 36]>;

/// The customer an event is about: an id, handles, or both.
#[derive(Clone, Debug, Default)]
pub struct CustomerRef {
    /// Set by the producer, or by identity resolution at ingest. Always set in the log.
    pub id: Option<CustomerId>,
    pub handles: Vec<Handle>,
    /// Attributes of the customer carried on the event (`segment`, `department`, any key;
    /// see [`crate::json`] for the rules of keys): folded into the customer's profile, the
    /// latest value of a key winning; an empty value removes the key.
    pub attributes: BTreeMap<String, String>,
    /// The number the decoder gave the id, for the views' folds (see
    /// [`crate::numbering`]); not part of the customer, and equal in every customer.
    pub number: crate::numbering::CustomerNumber,
}

/// Equal customers: equal ids, handles and attributes, whatever numbers their decoders gave
/// them (every field named, so that one added is not left out unawares).
impl PartialEq for CustomerRef {
    fn eq(&self, other: &Self) -> bool {
        let CustomerRef {
            id,
            handles,
            attributes,
            number: _,
        } = self;
        *id == other.id && *handles == other.handles && *attributes == other.attributes
    }
}

impl Eq for CustomerRef {}

/// The type-specific part of an event (CONTRACT §3's table).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Body {
    InteractionStarted {
        direction: Direction,
        subject: Option<String>,
        self_service: Option<bool>,
    },
    Message {
        direction: Direction,
        author: Author,
        agent_id: Option<String>,
        text: Option<String>,
    },
    Queued {
        queue: String,
        /// Higher is served first.
        priority: i32,
        skills: Vec<String>,
    },
    /// A reservation: the item stays in its queue, reserved for the agent.
    Offered {
        agent_id: String,
    },
    OfferDeclined {
        agent_id: String,
    },
    OfferTimedOut {
        agent_id: String,
    },
    /// The agent accepted: the item leaves the queue.
    Assigned {
        agent_id: String,
    },
    Transferred {
        to_queue: Option<String>,
        to_agent: Option<String>,
    },
    Hold,
    Resumed,
    /// The customer left while queued.
    Abandoned,
    Ended {
        reason: Option<String>,
    },
    WrappedUp {
        agent_id: String,
        resolved: bool,
        disposition: Option<String>,
        topics: Vec<String>,
    },
    Csat {
        score: u8,
    },
    Note {
        agent_id: String,
        text: String,
    },
    Tagged {
        topics: Vec<String>,
    },
    /// The event's customer handles become handles of its customer id.
    IdentityLinked {
        /// The producer named no customer ("these handles are one person"): ingest
        /// resolved it from the handles (the first known handle's customer, or a new one),
        /// and the handles are claimed as an interaction's are, never taken from another
        /// customer (the two become merge candidates).
        by_handles: bool,
    },
    CustomersMerged {
        from_customer: String,
        into_customer: String,
    },
    ProactiveNotice {
        reason: String,
        text: Option<String>,
    },
    AgentState {
        agent_id: String,
        state: AgentStatus,
        /// `None`: unchanged.
        skills: Option<Vec<String>>,
        /// `None`: unchanged. Concurrent assignments per channel.
        capacity: Option<BTreeMap<Channel, u32>>,
    },
    /// The customer's attributes are the event's `attributes` (the latest value of each key
    /// wins; an empty value removes the key).
    CustomerProfile,
}

impl Body {
    /// The `type` of this body.
    pub fn event_type(&self) -> EventType {
        match self {
            Body::InteractionStarted { .. } => EventType::InteractionStarted,
            Body::Message { .. } => EventType::Message,
            Body::Queued { .. } => EventType::Queued,
            Body::Offered { .. } => EventType::Offered,
            Body::OfferDeclined { .. } => EventType::OfferDeclined,
            Body::OfferTimedOut { .. } => EventType::OfferTimedOut,
            Body::Assigned { .. } => EventType::Assigned,
            Body::Transferred { .. } => EventType::Transferred,
            Body::Hold => EventType::Hold,
            Body::Resumed => EventType::Resumed,
            Body::Abandoned => EventType::Abandoned,
            Body::Ended { .. } => EventType::Ended,
            Body::WrappedUp { .. } => EventType::WrappedUp,
            Body::Csat { .. } => EventType::Csat,
            Body::Note { .. } => EventType::Note,
            Body::Tagged { .. } => EventType::Tagged,
            Body::IdentityLinked { .. } => EventType::IdentityLinked,
            Body::CustomersMerged { .. } => EventType::CustomersMerged,
            Body::ProactiveNotice { .. } => EventType::ProactiveNotice,
            Body::AgentState { .. } => EventType::AgentState,
            Body::CustomerProfile => EventType::CustomerProfile,
        }
    }
}

/// Where an event is appended (CONTRACT §2).
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
pub enum Destination {
    /// `omnilog.interactions`, keyed by customer id.
    Interactions,
    /// `omnilog.agents`, keyed by agent id.
    Agents,
}

/// An immutable interaction event.
///
/// Its interaction id, source and source event id are [`CompactString`]s: nearly always
/// under 24 bytes ("voice-1-00000049", "testkit", "1:52"), they are held inline, so that
/// decoding an event from the log does not allocate and free three strings (three of the
/// four strings an event of the bench's history decodes: `valgrind --tool=callgrind
/// omnilog replay` of 200k events, see docs/benchmarks-journal.md). They read as `&str`
/// (`as_deref`) and are made from one with `into`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Event {
    pub event_id: Uuid,
    pub schema_version: u32,
    pub source: Option<CompactString>,
    pub source_event_id: Option<CompactString>,
    pub occurred_at: DateTime<Utc>,
    /// Set by the ingest server when it accepts the event.
    pub recorded_at: Option<DateTime<Utc>>,
    /// `None` only for `agent_state` (and a `customers_merged`, which names its customers in
    /// its body). Shared: the events of one batch that carry the same customer bytes are
    /// decoded into one value (see [`crate::EventDecoder`]).
    pub customer: Option<Arc<CustomerRef>>,
    pub interaction_id: Option<CompactString>,
    pub channel: Option<Channel>,
    /// Platform details worth keeping (a call's duration, an email's Message-ID).
    pub attributes: BTreeMap<String, String>,
    pub body: Body,
}

impl Event {
    /// The `type` of this event.
    pub fn event_type(&self) -> EventType {
        self.body.event_type()
    }

    /// The customer id, once identity resolution has set it.
    pub fn customer_id(&self) -> Option<&str> {
        self.customer.as_ref().and_then(|c| c.id.as_deref())
    }

    /// The number the decoder gave the customer's id, if it gave one (see
    /// [`crate::numbering`]).
    pub fn customer_number(&self) -> crate::numbering::CustomerNumber {
        self.customer
            .as_ref()
            .map_or(crate::numbering::CustomerNumber::NONE, |c| c.number)
    }

    /// The topic this event belongs to.
    pub fn destination(&self) -> Destination {
        match self.body {
            Body::AgentState { .. } => Destination::Agents,
            _ => Destination::Interactions,
        }
    }

    /// The partition key: the agent id for agent events, the customer id otherwise.
    /// `None` for an interaction event whose customer is not resolved yet.
    pub fn partition_key(&self) -> Option<&str> {
        match &self.body {
            Body::AgentState { agent_id, .. } => Some(agent_id),
            Body::CustomersMerged { into_customer, .. } => {
                Some(self.customer_id().unwrap_or(into_customer))
            }
            _ => self.customer_id(),
        }
    }
}
