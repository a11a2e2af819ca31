//! Pure folds of the omnilog log into views.
//!
//! Invariant: nothing here reads a clock, does IO or uses randomness. A view is a
//! function of the events it was given; folded again from offset 0 it is identical.
//! Where the contract leaves an order between partitions open, a fold is written so that
//! the result does not depend on how partitions are interleaved (see each view's notes).
//!
//! Two kinds of view live here:
//! - the identity view ([`identity`]), small and held in memory by ingest, which consults
//!   it to resolve every event's customer;
//! - the projected views ([`View`] implementations: journey, queue, reporting, segments,
//!   engagement),
//!   which fold into typed state in memory ([`state`]): tables whose changed records the
//!   projector writes to disk together with the log positions they came from, and which
//!   the query API reads.

pub mod engagement;
pub mod epoch;
pub mod identity;
pub mod journey;
pub mod queue;
pub mod reporting;
pub mod segments;
pub mod state;

pub use identity::{IdentityView, Resolution};
pub use state::{
    Changes, EncodedChange, EncodingInOrder, Entries, Evictable, MergeInOrder, NoRecords,
    RecordSource, Snapshot, ViewState,
};

use omnilog_events::{Destination, Event};

/// What went wrong while folding or querying a view.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum ViewError {
    /// The state store failed (a disk error); the fold must stop and resume later.
    #[error("view state: {0}")]
    Storage(String),
    /// A stored record does not decode: the store is damaged or from another version.
    #[error("view state record {key:?} is unreadable: {reason}")]
    Corrupt { key: String, reason: String },
    /// An event cannot be applied (it goes to the dead letter with this reason).
    #[error("cannot apply the event: {0}")]
    Unapplicable(String),
    /// A query asked for something malformed (→ 400, naming the parameter).
    #[error("{parameter}: {message}")]
    BadQuery { parameter: String, message: String },
}

/// Where an event sits in the log: the second key of every ordering by event time.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct LogPosition {
    pub partition: u32,
    pub offset: u64,
}

/// A projected view: a pure fold of log events into typed state.
///
/// `apply` must be deterministic: the same state and event give the same state. The
/// runtime calls it once per event, in log order within each partition; partitions may
/// interleave in any order, and the resulting state must not depend on that order.
pub trait View: Send + Sync + std::fmt::Debug + 'static {
    /// The view's state.
    type State: ViewState + std::fmt::Debug;

    /// The view's stable name (`journey`, `queue`, `reporting`): its API path and store.
    fn name(&self) -> &'static str;

    /// The topics this view folds.
    fn topics(&self) -> &'static [Destination];

    /// The layout of the view's state: bumped whenever the fold writes other records, so a
    /// store holding state of another layout is folded again from offset 0 instead of being
    /// misread.
    fn layout(&self) -> u32 {
        1
    }

    /// An empty state.
    fn new_state(&self) -> Self::State;

    /// Whether each record of the state is only ever touched by the events of one
    /// partition (the journey view's records are a customer's, and all of a customer's
    /// events lie in one partition). A replay that has folded a partition then knows its
    /// records are final, and encodes them while it folds the next one.
    fn partition_local(&self) -> bool {
        false
    }

    /// The stored keys of the records the fold of `event` needs that `state` does not hold
    /// in memory: the runtime loads them ([`ViewState::restore`]) before folding, so the
    /// fold never does IO. The runtime asks again after each load (a few rounds), so a
    /// record that names another (found with `CachedTable::peek`) can ask for it once it
    /// is loaded.
    fn missing(
        &self,
        _state: &Self::State,
        _event: &Event,
        _missing: &mut Vec<Vec<u8>>,
    ) -> Result<(), ViewError> {
        Ok(())
    }

    /// Folds one event into the state. An event that cannot be applied is refused with
    /// [`ViewError::Unapplicable`] before anything changes, so it leaves nothing behind
    /// when it goes to the dead letter.
    fn apply(
        &self,
        state: &mut Self::State,
        event: &Event,
        position: LogPosition,
    ) -> Result<(), ViewError>;
}

/// Folds one event into a state held wholly in memory (tests, benchmarks, a state
/// assembled for one query): whatever the fold needs that the state does not hold does not
/// exist, so it is marked absent instead of being read from a store.
pub fn apply_in_memory<V: View>(
    view: &V,
    state: &mut V::State,
    event: &Event,
    position: LogPosition,
) -> Result<(), ViewError> {
    let mut missing = Vec::new();
    view.missing(state, event, &mut missing)?;
    for key in missing {
        state.restore(&key, None)?;
    }
    view.apply(state, event, position)
}
