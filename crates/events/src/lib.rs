//! The omnilog event: the protobuf wire types generated from `proto/omnilog/v1`, the
//! validated domain model, the canonical JSON of CONTRACT §3 both ways, the stateless
//! identity rules (handle normalisation, deterministic ids) and schema upcasting.
//!
//! Invariant: this crate does no IO. Everything is a pure function of its input.

pub mod error;
pub mod identity;
pub mod json;
pub mod model;
pub mod numbering;
pub mod proto;
pub mod text_rules;
pub mod upcast;
mod wire;
mod wire_encode;

/// The prost types of `omnilog.v1`.
#[allow(missing_docs, clippy::all, unused_qualifications)]
pub mod pb {
    include!(concat!(env!("OUT_DIR"), "/omnilog.v1.rs"));
}

pub use error::EventError;
pub use json::{
    MAX_AGENT_ID_BYTES, format_time, parse_batch, parse_event, revalidate, to_canonical_json,
};
#[doc(hidden)]
pub use json::{parse_batch_general, parse_event_general};
pub use model::{
    AgentStatus, Author, Body, CURRENT_SCHEMA_VERSION, Channel, CompactString, CustomerId,
    CustomerRef, Destination, Direction, Event, EventType, Handle, normalise_topic,
};
pub use numbering::{CustomerNumber, CustomerNumbering};
pub use proto::{
    EventDecoder, decode, decode_batch, decode_through_prost, encode, encode_batch,
    encode_through_prost,
};
pub use wire::{RememberedParts, remembered_parts};
