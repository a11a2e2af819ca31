//! The identity view (CONTRACT §4): which customer each handle belongs to, which
//! customers were merged, and which customers might be the same person.
//!
//! Ingest consults it to resolve the customer of each event, and records its decision in
//! the event (`customer.id`). The fold then only has to remember claims:
//!
//! - every interaction event *claims* its handles for its customer;
//! - a handle belongs to its earliest claim (by `recorded_at`, then `event_id`), unless an
//!   `identity_linked` event linked it explicitly: then the latest link wins. A link by
//!   handles alone (`by_handles`: the producer named no customer, ingest resolved it like
//!   any event's) claims its handles implicitly, like an interaction event;
//! - two customers that claimed the same handle are each other's merge candidates (never
//!   merged on a guess);
//! - `customers_merged` points one customer at another: queries for either answer for
//!   the one merged into (the latest merge of a customer wins).
//!
//! Every rule is a min, a max or a set union, so the view is the same whatever order the
//! partitions' events are folded in; and since ingest stamps `recorded_at` in the order it
//! resolves, the earliest claim is exactly the one ingest saw first.
//!
//! The view holds every customer and handle of the history, in every server's ingest and in
//! every replay, so it is kept compact: each customer id and each handle is stored once and
//! named everywhere else by its index (a `u32`); ids that are UUIDs (those derived from a
//! handle all are) are kept as their 16 bytes; sets of one or two indices are kept inline.
//! Indices depend on the order events were folded in, so equality compares what the view
//! says (ids and handles as text), never the indices.

use std::cmp::Ordering;
use std::collections::{BTreeMap, BTreeSet};
use std::hash::{BuildHasher, Hash};
use std::sync::Arc;

use chrono::{DateTime, Utc};
use hashbrown::HashTable;
use omnilog_events::identity::customer_id_for_handle;
use omnilog_events::{Body, CustomerRef, Event, Handle};
use smallvec::SmallVec;
use uuid::Uuid;

use crate::state::FastMap;

/// A customer id as the identity view answers it, an owned string (an event holds the same
/// text in place, as an [`omnilog_events::CustomerId`]).
pub type CustomerIdText = String;

/// A customer's index in the view.
type CustomerIx = u32;
/// A handle's index in the view.
type HandleIx = u32;

/// The handles of a remembered customer an event copies to the stack to claim them; a
/// customer with more (rare) is copied to the heap.
const COPIED_HANDLES: usize = 4;

/// A set of indices, sorted, inline up to two (a customer carries two or three handles, a
/// handle one or two claimants).
type Indices = SmallVec<[u32; 2]>;

fn insert_sorted(set: &mut Indices, index: u32) {
    if let Err(at) = set.binary_search(&index) {
        set.insert(at, index);
    }
}

/// A customer id as stored: a UUID written the way `Uuid::to_string` writes it (lower case,
/// hyphenated) is kept as its 16 bytes; anything else as its text.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
enum StoredId {
    Uuid(Uuid),
    Text(Box<str>),
}

/// A customer id as looked up, borrowed; hashes the same as the [`StoredId`] it matches.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum IdRef<'a> {
    Uuid(Uuid),
    Text(&'a str),
}

/// Whether `hex`, hexadecimal digits and hyphens only, holds a capital `A` to `F`: the
/// only bytes among those with bit 6 set and bit 5 clear (digits and `-` have bit 6 clear,
/// `a` to `f` both set), tested eight bytes at a time. A byte-by-byte test was 140
/// instructions an event in the identity fold (`valgrind --tool=callgrind omnilog replay`).
fn has_hex_capital(hex: &[u8]) -> bool {
    const BIT_6: u64 = u64::from_ne_bytes([0x40; 8]);
    let capital = |word: u64| word & !(word << 1) & BIT_6 != 0;
    let (words, rest) = hex.as_chunks::<8>();
    words.iter().any(|word| capital(u64::from_ne_bytes(*word)))
        || rest.iter().any(u8::is_ascii_uppercase)
}

impl<'a> IdRef<'a> {
    fn of(id: &'a str) -> Self {
        // Of 36 characters, the parser takes only the hyphenated form; it is the one
        // `Uuid::to_string` writes when it has no capital letter (checked rather than
        // writing the id again to compare, on every event).
        if id.len() == uuid::fmt::Hyphenated::LENGTH
            && let Ok(uuid) = Uuid::try_parse(id)
            && !has_hex_capital(id.as_bytes())
        {
            return IdRef::Uuid(uuid);
        }
        IdRef::Text(id)
    }

    fn to_stored(self) -> StoredId {
        match self {
            IdRef::Uuid(uuid) => StoredId::Uuid(uuid),
            IdRef::Text(text) => StoredId::Text(text.into()),
        }
    }
}

impl StoredId {
    fn as_ref(&self) -> IdRef<'_> {
        match self {
            StoredId::Uuid(uuid) => IdRef::Uuid(*uuid),
            StoredId::Text(text) => IdRef::Text(text),
        }
    }

    fn to_text(&self) -> CustomerIdText {
        match self {
            StoredId::Uuid(uuid) => uuid.to_string(),
            StoredId::Text(text) => text.to_string(),
        }
    }

    /// Orders ids as their text orders, whichever way each is stored. Two UUIDs compare by
    /// their bytes: lower-case hexadecimal with hyphens in fixed places orders as they do.
    fn cmp_text(&self, other: &StoredId) -> Ordering {
        match (self, other) {
            (StoredId::Uuid(a), StoredId::Uuid(b)) => a.as_bytes().cmp(b.as_bytes()),
            (StoredId::Text(a), StoredId::Text(b)) => a.cmp(b),
            _ => self.to_text().cmp(&other.to_text()),
        }
    }
}

/// A handle as stored: its kind's index among the kinds seen, and where its value lies
/// in the view's [`HandleTexts`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct StoredHandle {
    kind: u32,
    text: TextAt,
}

/// A handle as saved: its kind's index, and its value.
#[derive(serde::Serialize, serde::Deserialize)]
struct SavedHandleValue<V = Box<str>> {
    kind: u32,
    value: V,
}

/// Where a handle's value lies in [`HandleTexts`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct TextAt {
    chunk: u32,
    start: u32,
    len: u32,
}

/// The values of a view's handles, packed one after the other in chunks that are never
/// grown past the capacity they were made with, so none moves. An allocation a value (a
/// `Box<str>` beside its kind: 24 bytes, and the value's allocation rounded up to its size
/// class) was about a quarter of the view's heap; packed, a handle costs its bytes and a
/// 12-byte [`TextAt`]. Values are only ever added, or cut off from the newest on by a
/// rollback ([`IdentityView::rollback_to`]).
#[derive(Clone, Debug, Default)]
struct HandleTexts {
    chunks: Vec<String>,
}

impl HandleTexts {
    /// A chunk's capacity; a longer value gets a chunk of its own size.
    const CHUNK_BYTES: usize = 64 << 10;

    fn push(&mut self, value: &str) -> TextAt {
        let fits = self
            .chunks
            .last()
            .is_some_and(|chunk| chunk.capacity() - chunk.len() >= value.len());
        if !fits {
            self.chunks
                .push(String::with_capacity(value.len().max(Self::CHUNK_BYTES)));
        }
        let chunk = self.chunks.len() - 1;
        let text = &mut self.chunks[chunk];
        let start = text.len();
        text.push_str(value);
        TextAt {
            chunk: u32::try_from(chunk).expect("fewer than 2^32 chunks of handles"),
            start: u32::try_from(start).expect("a chunk of handles under 4 GiB"),
            len: u32::try_from(value.len()).expect("a handle under 4 GiB"),
        }
    }

    fn get(&self, at: TextAt) -> &str {
        let start = at.start as usize;
        &self.chunks[at.chunk as usize][start..start + at.len as usize]
    }

    /// Forgets the value at `at` and every value added after it.
    fn truncate_to(&mut self, at: TextAt) {
        self.chunks.truncate(at.chunk as usize + 1);
        if let Some(chunk) = self.chunks.last_mut() {
            chunk.truncate(at.start as usize);
        }
    }
}

/// Values stored once, found by value through a table of their indices (the values are
/// not stored a second time as keys).
#[derive(Clone, Debug)]
struct Interned<T> {
    indices: HashTable<u32>,
    values: Vec<T>,
}

impl<T> Default for Interned<T> {
    fn default() -> Self {
        Interned {
            indices: HashTable::new(),
            values: Vec::new(),
        }
    }
}

impl<T> Interned<T> {
    fn find(&self, hash: u64, is: impl Fn(&T) -> bool) -> Option<u32> {
        self.indices
            .find(hash, |&index| is(&self.values[index as usize]))
            .copied()
    }

    /// Adds a value not there yet; `hash_of` hashes stored values when the table grows.
    fn push(&mut self, hash: u64, value: T, hash_of: impl Fn(&T) -> u64) -> u32 {
        let index = u32::try_from(self.values.len()).expect("fewer than 2^32 identities");
        self.values.push(value);
        let values = &self.values;
        self.indices
            .insert_unique(hash, index, |&at| hash_of(&values[at as usize]));
        index
    }

    fn get(&self, index: u32) -> &T {
        &self.values[index as usize]
    }

    /// Forgets the values from index `len` on (the newest), and their table entries.
    fn truncate(&mut self, len: usize, hash_of: impl Fn(&T) -> u64) {
        while self.values.len() > len {
            let index = (self.values.len() - 1) as u32;
            let hash = hash_of(&self.values[index as usize]);
            if let Ok(entry) = self.indices.find_entry(hash, |&at| at == index) {
                entry.remove();
            }
            self.values.pop();
        }
    }

    fn len(&self) -> usize {
        self.values.len()
    }
}

/// The order of claims: when ingest accepted the event, then its id.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
struct ClaimKey {
    #[serde(with = "claim_time")]
    at: DateTime<Utc>,
    event_id: Uuid,
}

/// A claim's time as saved: seconds and nanoseconds since the epoch. chrono saves a time
/// as its RFC 3339 text, through the formatting machinery: 2 % of the instructions of
/// `valgrind --tool=callgrind omnilog replay` of 200,000 events went to writing the claims
/// of `identity.bin` that way.
mod claim_time {
    use chrono::{DateTime, Utc};
    use serde::{Deserialize, Deserializer, Serialize, Serializer, de::Error};

    pub fn serialize<S: Serializer>(at: &DateTime<Utc>, serializer: S) -> Result<S::Ok, S::Error> {
        (at.timestamp(), at.timestamp_subsec_nanos()).serialize(serializer)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<DateTime<Utc>, D::Error> {
        let (secs, nanos) = <(i64, u32)>::deserialize(deserializer)?;
        DateTime::from_timestamp(secs, nanos)
            .ok_or_else(|| D::Error::custom(format!("{secs} s {nanos} ns is not a time")))
    }
}

impl ClaimKey {
    fn of(event: &Event) -> Self {
        ClaimKey {
            at: event.recorded_at.unwrap_or(event.occurred_at),
            event_id: event.event_id,
        }
    }
}

/// A claim of a handle (or a merge) by a customer, ordered by its key, then by the
/// customer's id as text.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
struct Claim {
    key: ClaimKey,
    customer: CustomerIx,
}

/// No entry of a side table ([`HandleState::extra`], [`CustomerState::merges`]).
const NONE: u32 = u32::MAX;

/// Adds `entry` to a side table; answers its index there.
fn push_side<T>(table: &mut Vec<T>, entry: T) -> u32 {
    let index = u32::try_from(table.len()).expect("fewer than 2^32 side entries");
    table.push(entry);
    index
}

/// A handle's state, as held for every handle of the history: its earliest claim. Nearly
/// every handle was only ever carried by that claim's customer and never linked; the few
/// others keep the rest in a [`HandleExtra`] of their own. Held whole for every handle
/// (88 bytes with a link and a set of claimants, against 36; a customer's state was 80
/// bytes with its merges, against 32), the identity view was about a tenth of a 10M-event
/// replay's peak heap (`heaptrack omnilog replay`, see docs/benchmarks-journal.md).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct HandleState {
    /// The earliest implicit claim.
    first: Claim,
    /// Its [`HandleExtra`] in `handle_extras`, or [`NONE`]: then the handle is not linked,
    /// and the first claim's customer is its only claimant.
    extra: u32,
}

/// What a handle holds beyond its first claim, once it was linked or carried by a second
/// customer.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct HandleExtra {
    /// The latest explicit link, which overrides implicit claims.
    linked: Option<Claim>,
    /// Every customer that carried this handle.
    claimants: Indices,
}

/// A customer's state: its handles. The few customers in a merge keep it in a [`Merges`]
/// of their own.
#[derive(Clone, Debug, PartialEq, Eq)]
struct CustomerState {
    /// Every handle this customer carried or was linked to.
    handles: Indices,
    /// Its [`Merges`] in `merges`, or [`NONE`].
    merges: u32,
}

impl Default for CustomerState {
    fn default() -> Self {
        CustomerState {
            handles: Indices::new(),
            merges: NONE,
        }
    }
}

/// The merges a customer is in.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct Merges {
    merged_into: Option<Claim>,
    merged_from: Indices,
}

/// The customer an event belongs to, as ingest resolved it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Resolution {
    pub customer_id: CustomerIdText,
    /// No handle of the event was known and it named no id: a new customer.
    pub is_new: bool,
}

/// What `GET /v1/customers/{id}` shows.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CustomerIdentity {
    /// The id queries answer for (the customer merged into, for a merged id).
    pub customer_id: CustomerIdText,
    /// Handles that resolve to this customer.
    pub handles: Vec<Handle>,
    /// Customers merged into this one, directly or through others.
    pub merged_from: Vec<CustomerIdText>,
    /// Customers that share a handle with this one and are not merged with it.
    pub merge_candidates: Vec<CustomerIdText>,
}

/// A state as it was before a change made while [`IdentityView::mark`] records.
#[derive(Clone, Debug)]
enum Undo {
    Customer(CustomerIx, CustomerState),
    Handle(HandleIx, HandleState),
    Merges(u32, Merges),
    HandleExtra(u32, HandleExtra),
}

/// A point the view can be rolled back to: see [`IdentityView::mark`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Mark {
    undo: usize,
    customers: usize,
    handles: usize,
    merges: usize,
    handle_extras: usize,
    kinds: usize,
    events_applied: u64,
}

/// What a view records while marked: the earlier state of every customer and handle it
/// changes (those it adds are simply cut off), so a rollback costs what the folds since
/// the mark changed, not the whole view.
#[derive(Clone, Debug, Default)]
struct Journal {
    undo: Vec<Undo>,
    /// Records dropped from the front of `undo` by [`IdentityView::commit_before`]: a
    /// mark's `undo` counts every record since recording started.
    kept: usize,
    /// The sizes at the latest mark: a state at an index past them was added since, and
    /// any rollback cuts it off, so its changes need no record.
    floor: Option<Mark>,
}

impl Journal {
    /// Records `table[index]` as it is, to be put back by a rollback, before it changes:
    /// only while a mark is open, and only for an entry that was there at the mark (`len`
    /// gives the table's size then); one added since is cut off by the rollback instead.
    fn record<T: Clone>(
        &mut self,
        table: &[T],
        index: u32,
        len: impl FnOnce(&Mark) -> usize,
        undo: impl FnOnce(u32, T) -> Undo,
    ) {
        if let Some(floor) = &self.floor
            && (index as usize) < len(floor)
        {
            self.undo.push(undo(index, table[index as usize].clone()));
        }
    }
}

/// A decoded customer folded lately, and the indices its id and handles resolved to.
#[derive(Clone, Debug)]
struct Remembered {
    /// Held so that its address, the key it is remembered by, is not reused by another
    /// customer while it is remembered.
    customer: Arc<CustomerRef>,
    index: CustomerIx,
    handles: SmallVec<[HandleIx; 4]>,
    /// The claim key its handles were claimed with when it was remembered: each of its
    /// handles' first claims is at or before it since (a first claim only ever moves
    /// earlier), and the customer is among their claimants.
    since: ClaimKey,
}

/// Decoded customers folded lately, by the address of their `Arc`. The events of a batch
/// that carry the same customer bytes share one decoded customer
/// (`omnilog_events::EventDecoder`: about 14 events each in the bench's history), so an
/// event whose customer is remembered claims its handles without looking its id and
/// handles up again (hashing them, parsing the id as a UUID). Ingest's events each have a
/// customer of their own, and are never found here.
#[derive(Clone, Debug, Default)]
struct RecentCustomers {
    by_address: FastMap<usize, Remembered>,
}

impl RecentCustomers {
    /// About two batches' worth of customers: held, not freed, until forgotten.
    const CAPACITY: usize = 4096;

    /// The customer remembered at `customer`'s address: `customer` itself, since a
    /// remembered `Arc` is held, and no other can be made at its address meanwhile.
    fn get(&self, customer: &Arc<CustomerRef>) -> Option<&Remembered> {
        self.by_address.get(&(Arc::as_ptr(customer) as usize))
    }

    fn remember(&mut self, remembered: Remembered) {
        if self.by_address.len() >= Self::CAPACITY {
            self.by_address.clear();
        }
        let address = Arc::as_ptr(&remembered.customer) as usize;
        self.by_address.insert(address, remembered);
    }

    fn forget(&mut self) {
        self.by_address.clear();
    }
}

/// The identity view. See the module documentation for its rules. It serialises whole,
/// so a replay can save it beside the views it built.
#[derive(Clone, Debug, Default)]
pub struct IdentityView {
    /// Set between [`IdentityView::mark`] and [`IdentityView::commit`] (ingest: while a
    /// group's append is pending); never saved nor compared.
    journal: Journal,
    hasher: foldhash::fast::RandomState,
    customers: Interned<StoredId>,
    /// By customer index.
    customer_states: Vec<CustomerState>,
    kinds: Vec<Box<str>>,
    kind_indices: FastMap<Box<str>, u32>,
    handles: Interned<StoredHandle>,
    /// The handles' values.
    handle_texts: HandleTexts,
    /// By handle index.
    handle_states: Vec<HandleState>,
    /// The merges of the customers in one (see [`CustomerState::merges`]).
    merges: Vec<Merges>,
    /// Links and further claimants of the handles that have them (see
    /// [`HandleState::extra`]).
    handle_extras: Vec<HandleExtra>,
    events_applied: u64,
    /// Never saved nor compared: indices of this view's own making (see
    /// [`RecentCustomers`]).
    recent: RecentCustomers,
}

impl IdentityView {
    /// An empty view.
    pub fn new() -> Self {
        Self::default()
    }

    /// Events folded so far.
    pub fn events_applied(&self) -> u64 {
        self.events_applied
    }

    /// Known customers (merged ones included).
    pub fn customer_count(&self) -> usize {
        self.customers.len()
    }

    /// Known handles.
    pub fn handle_count(&self) -> usize {
        self.handles.len()
    }

    /// The view as `identity.bin` holds it (its `Serialize` with postcard), which
    /// [`Self::from_saved_bytes`] and [`Self::absorb_saved_bytes`] read.
    pub fn to_saved_bytes(&self) -> Result<Vec<u8>, crate::ViewError> {
        postcard::to_stdvec(self)
            .map_err(|e| crate::ViewError::Storage(format!("saving the identity view: {e}")))
    }

    fn hash_id(&self, id: IdRef<'_>) -> u64 {
        self.hasher.hash_one(id)
    }

    fn hash_handle(&self, kind: u32, value: &str) -> u64 {
        self.hasher.hash_one((kind, value))
    }

    fn customer_index(&self, id: &str) -> Option<CustomerIx> {
        let id = IdRef::of(id);
        self.customers
            .find(self.hash_id(id), |stored| stored.as_ref() == id)
    }

    fn customer_index_or_insert(&mut self, id: &str) -> CustomerIx {
        self.customer_ref_index_or_insert(IdRef::of(id))
    }

    fn customer_ref_index_or_insert(&mut self, id: IdRef<'_>) -> CustomerIx {
        let hash = self.hash_id(id);
        if let Some(index) = self.customers.find(hash, |stored| stored.as_ref() == id) {
            return index;
        }
        let hasher = &self.hasher;
        let index = self.customers.push(hash, id.to_stored(), |stored| {
            hasher.hash_one(stored.as_ref())
        });
        self.customer_states.push(CustomerState::default());
        index
    }

    fn handle_index(&self, handle: &Handle) -> Option<HandleIx> {
        let kind = *self.kind_indices.get(handle.kind.as_str())?;
        self.handle_index_of(kind, &handle.value)
    }

    fn handle_index_of(&self, kind: u32, value: &str) -> Option<HandleIx> {
        self.handles.find(self.hash_handle(kind, value), |stored| {
            stored.kind == kind && self.handle_texts.get(stored.text) == value
        })
    }

    /// Adds a handle not known yet, without its state.
    fn intern_handle(&mut self, kind: u32, value: &str) -> HandleIx {
        let hash = self.hash_handle(kind, value);
        let text = self.handle_texts.push(value);
        let (hasher, texts) = (&self.hasher, &self.handle_texts);
        self.handles
            .push(hash, StoredHandle { kind, text }, |stored| {
                hasher.hash_one((stored.kind, texts.get(stored.text)))
            })
    }

    /// Adds a handle not known yet, first claimed by `first`.
    fn push_handle(&mut self, kind: u32, value: &str, first: Claim) -> HandleIx {
        let index = self.intern_handle(kind, value);
        self.handle_states.push(HandleState { first, extra: NONE });
        index
    }

    fn customer_text(&self, customer: CustomerIx) -> CustomerIdText {
        self.customers.get(customer).to_text()
    }

    fn handle_value(&self, handle: HandleIx) -> Handle {
        let stored = self.handles.get(handle);
        Handle::new(
            &*self.kinds[stored.kind as usize],
            self.handle_texts.get(stored.text),
        )
    }

    fn cmp_customers(&self, a: CustomerIx, b: CustomerIx) -> Ordering {
        if a == b {
            return Ordering::Equal;
        }
        self.customers.get(a).cmp_text(self.customers.get(b))
    }

    /// Whether claim `a` comes before claim `b`.
    fn before(&self, a: &Claim, b: &Claim) -> bool {
        a.key
            .cmp(&b.key)
            .then_with(|| self.cmp_customers(a.customer, b.customer))
            .is_lt()
    }

    fn customer_state(&mut self, customer: CustomerIx) -> &mut CustomerState {
        self.journal.record(
            &self.customer_states,
            customer,
            |floor| floor.customers,
            Undo::Customer,
        );
        &mut self.customer_states[customer as usize]
    }

    fn handle_state(&mut self, handle: HandleIx) -> &mut HandleState {
        self.journal.record(
            &self.handle_states,
            handle,
            |floor| floor.handles,
            Undo::Handle,
        );
        &mut self.handle_states[handle as usize]
    }

    /// The merges of `customer`, made (empty) if it has none yet.
    fn merges_mut(&mut self, customer: CustomerIx) -> &mut Merges {
        let mut index = self.customer_states[customer as usize].merges;
        if index == NONE {
            index = push_side(&mut self.merges, Merges::default());
            self.customer_state(customer).merges = index;
        } else {
            self.journal
                .record(&self.merges, index, |floor| floor.merges, Undo::Merges);
        }
        &mut self.merges[index as usize]
    }

    /// The link and claimants of `handle`, made if it has none yet (with the first claim's
    /// customer as its only claimant, which it was).
    fn handle_extra_mut(&mut self, handle: HandleIx) -> &mut HandleExtra {
        let state = self.handle_states[handle as usize];
        let mut index = state.extra;
        if index == NONE {
            index = push_side(
                &mut self.handle_extras,
                HandleExtra {
                    linked: None,
                    claimants: SmallVec::from_slice(&[state.first.customer]),
                },
            );
            self.handle_state(handle).extra = index;
        } else {
            self.journal.record(
                &self.handle_extras,
                index,
                |floor| floor.handle_extras,
                Undo::HandleExtra,
            );
        }
        &mut self.handle_extras[index as usize]
    }

    fn customer_merges(&self, customer: CustomerIx) -> Option<&Merges> {
        match self.customer_states[customer as usize].merges {
            NONE => None,
            index => Some(&self.merges[index as usize]),
        }
    }

    /// The latest merge of `customer` into another.
    fn merged_into(&self, customer: CustomerIx) -> Option<Claim> {
        self.customer_merges(customer)
            .and_then(|merges| merges.merged_into)
    }

    /// The customers merged into `customer` (directly).
    fn merged_from(&self, customer: CustomerIx) -> &[CustomerIx] {
        self.customer_merges(customer)
            .map_or(&[], |merges| &merges.merged_from)
    }

    /// The latest explicit link of `handle`.
    fn linked(&self, handle: HandleIx) -> Option<Claim> {
        match self.handle_states[handle as usize].extra {
            NONE => None,
            index => self.handle_extras[index as usize].linked,
        }
    }

    /// Every customer that carried `handle`, sorted.
    fn claimants(&self, handle: HandleIx) -> &[CustomerIx] {
        let state = &self.handle_states[handle as usize];
        match state.extra {
            NONE => std::slice::from_ref(&state.first.customer),
            index => &self.handle_extras[index as usize].claimants,
        }
    }

    /// The customer `handle` is held by before merges: its link's, or its first claim's.
    fn holder(&self, handle: HandleIx) -> CustomerIx {
        self.linked(handle).map_or(
            self.handle_states[handle as usize].first.customer,
            |linked| linked.customer,
        )
    }

    /// Starts recording (or, if it already does, notes where it is), so the view can be
    /// rolled back to here by [`Self::rollback_to`]: ingest folds a request's events before
    /// the log has them, and takes them back if the log refuses them. Marks nest: a
    /// rollback to an earlier one takes back the later ones too. Recording costs a copy of
    /// each state changed until [`Self::commit`].
    pub fn mark(&mut self) -> Mark {
        let mark = Mark {
            undo: self.journal.kept + self.journal.undo.len(),
            customers: self.customers.len(),
            handles: self.handles.len(),
            merges: self.merges.len(),
            handle_extras: self.handle_extras.len(),
            kinds: self.kinds.len(),
            events_applied: self.events_applied,
        };
        self.journal.floor = Some(mark);
        mark
    }

    /// Whether the view records changes (between a [`Self::mark`] and a [`Self::commit`]).
    pub fn is_marked(&self) -> bool {
        self.journal.floor.is_some()
    }

    /// Takes back every fold since `mark`: the view is then what it was at the mark.
    /// Recording goes on (from `mark`) until [`Self::commit`].
    pub fn rollback_to(&mut self, mark: Mark) {
        // A customer remembered may be one the rollback takes away.
        self.recent.forget();
        // States first, newest change first, while every index they name still exists.
        debug_assert!(
            mark.undo >= self.journal.kept,
            "a rollback past what was kept"
        );
        while self.journal.kept + self.journal.undo.len() > mark.undo {
            match self.journal.undo.pop() {
                Some(Undo::Customer(at, before)) => self.customer_states[at as usize] = before,
                Some(Undo::Handle(at, before)) => self.handle_states[at as usize] = before,
                Some(Undo::Merges(at, before)) => self.merges[at as usize] = before,
                Some(Undo::HandleExtra(at, before)) => self.handle_extras[at as usize] = before,
                None => break,
            }
        }
        let hasher = &self.hasher;
        self.customers
            .truncate(mark.customers, |stored| hasher.hash_one(stored.as_ref()));
        self.customer_states.truncate(mark.customers);
        // The values' bytes last: the table hashes values as it lets them go.
        let first_cut = self
            .handles
            .values
            .get(mark.handles)
            .map(|stored| stored.text);
        let texts = &self.handle_texts;
        self.handles.truncate(mark.handles, |stored| {
            hasher.hash_one((stored.kind, texts.get(stored.text)))
        });
        if let Some(at) = first_cut {
            self.handle_texts.truncate_to(at);
        }
        self.handle_states.truncate(mark.handles);
        self.merges.truncate(mark.merges);
        self.handle_extras.truncate(mark.handle_extras);
        for kind in self.kinds.drain(mark.kinds..) {
            self.kind_indices.remove(&kind);
        }
        self.events_applied = mark.events_applied;
        self.journal.floor = Some(mark);
    }

    /// Keeps every fold since the first mark and stops recording.
    pub fn commit(&mut self) {
        self.journal.undo.clear();
        self.journal.kept = 0;
        self.journal.floor = None;
    }

    /// Keeps every fold before `mark` (nothing can take them back any more) and goes on
    /// recording those after it: ingest's oldest group is durable while a later one,
    /// marked at `mark`, still waits for the log.
    pub fn commit_before(&mut self, mark: Mark) {
        let settled = mark.undo.saturating_sub(self.journal.kept);
        self.journal
            .undo
            .drain(..settled.min(self.journal.undo.len()));
        self.journal.kept = self.journal.kept.max(mark.undo);
    }

    /// Folds one event. Idempotent: applying an event twice changes nothing more.
    pub fn apply(&mut self, event: &Event) {
        self.events_applied += 1;
        let key = ClaimKey::of(event);
        match &event.body {
            Body::AgentState { .. } => {}
            Body::CustomersMerged {
                from_customer,
                into_customer,
            } => {
                let into = self.customer_index_or_insert(into_customer);
                let from = self.customer_index_or_insert(from_customer);
                self.add_merged_from(into, from);
                self.merge_into(
                    from,
                    Claim {
                        key,
                        customer: into,
                    },
                );
            }
            body => {
                let Some(customer) = &event.customer else {
                    return;
                };
                let Some(id) = &customer.id else {
                    return;
                };
                // A link by handles alone names no customer of its own: its handles are
                // claimed as an interaction's are, so it never takes a handle from another
                // customer (the two become merge candidates instead).
                let explicit = matches!(body, Body::IdentityLinked { by_handles: false });
                if let Some(remembered) = self.recent.get(customer) {
                    // Claimed no earlier than when it was remembered, and not a link, the
                    // claims change nothing: no first claim is later than it, and the
                    // customer claims its handles already. A replay's events of one customer
                    // nearly all come this way: claimed one by one, they were a third of
                    // the identity view's fold (`valgrind --tool=callgrind
                    // --separate-threads=yes omnilog replay` of the 200k history,
                    // docs/benchmarks-journal.md).
                    if !explicit && key >= remembered.since {
                        return;
                    }
                    let claim = Claim {
                        key,
                        customer: remembered.index,
                    };
                    // Copied out (the claims change the view that holds them) into an
                    // array on the stack: a customer has a handle or two. As a `SmallVec`
                    // (made, iterated by value and dropped), the copy took about 100
                    // instructions an event (`valgrind --tool=callgrind omnilog replay` of
                    // the 200k history, docs/benchmarks-journal.md).
                    let count = remembered.handles.len();
                    let mut inline = [0; COPIED_HANDLES];
                    let spilled: Vec<HandleIx>;
                    let handles: &[HandleIx] = if count <= COPIED_HANDLES {
                        inline[..count].copy_from_slice(&remembered.handles);
                        &inline[..count]
                    } else {
                        spilled = remembered.handles.to_vec();
                        &spilled
                    };
                    for &index in handles {
                        self.claim_known(index, claim, explicit);
                    }
                    return;
                }
                let customer_index = self.customer_index_or_insert(id);
                let claim = Claim {
                    key,
                    customer: customer_index,
                };
                let handles = customer
                    .handles
                    .iter()
                    .map(|handle| self.claim(handle, claim, explicit))
                    .collect();
                // A customer no other event holds (each of ingest's, one alone in its batch)
                // cannot come again: remembering it would only cost.
                if Arc::strong_count(customer) > 1 {
                    self.recent.remember(Remembered {
                        customer: customer.clone(),
                        index: customer_index,
                        handles,
                        since: key,
                    });
                }
            }
        }
    }

    /// Claims `handle` for the claim's customer; answers the handle's index.
    fn claim(&mut self, handle: &Handle, claim: Claim, explicit: bool) -> HandleIx {
        match self.handle_index(handle) {
            Some(index) => {
                self.claim_known(index, claim, explicit);
                index
            }
            None => {
                let kind = self.kind_index_or_insert(&handle.kind);
                let index = self.push_handle(kind, &handle.value, claim);
                if explicit {
                    self.handle_extra_mut(index).linked = Some(claim);
                }
                self.add_customer_handle(claim.customer, index);
                index
            }
        }
    }

    /// Claims the known handle `index` for the claim's customer.
    fn claim_known(&mut self, index: HandleIx, claim: Claim, explicit: bool) {
        self.merge_handle(index, claim, explicit.then_some(claim), &[claim.customer]);
        self.add_customer_handle(claim.customer, index);
    }

    /// Folds claims of the known handle `index` into its state: `first` if it is earlier
    /// than its first claim, `linked` if it is later than its link, and every claimant.
    fn merge_handle(
        &mut self,
        index: HandleIx,
        first: Claim,
        linked: Option<Claim>,
        claimants: &[CustomerIx],
    ) {
        let earlier = self.before(&first, &self.handle_states[index as usize].first);
        let relinks = linked.is_some_and(|linked| {
            self.linked(index)
                .is_none_or(|current| self.before(&current, &linked))
        });
        let known = self.claimants(index);
        let new_claimants = claimants
            .iter()
            .any(|claimant| known.binary_search(claimant).is_err());
        // The extra first, while the first claim still names the customer it takes as the
        // only claimant so far. Nothing that does not change is recorded for a rollback.
        if relinks || new_claimants {
            let extra = self.handle_extra_mut(index);
            if relinks {
                extra.linked = linked;
            }
            for &claimant in claimants {
                insert_sorted(&mut extra.claimants, claimant);
            }
        }
        if earlier {
            self.handle_state(index).first = first;
        }
    }

    /// Adds `handle` to the handles of `customer`, unless it is there already (then nothing
    /// is recorded for a rollback).
    fn add_customer_handle(&mut self, customer: CustomerIx, handle: HandleIx) {
        if self.customer_states[customer as usize]
            .handles
            .binary_search(&handle)
            .is_err()
        {
            insert_sorted(&mut self.customer_state(customer).handles, handle);
        }
    }

    /// Notes that `from` was merged into `into`.
    fn add_merged_from(&mut self, into: CustomerIx, from: CustomerIx) {
        if self.merged_from(into).binary_search(&from).is_err() {
            insert_sorted(&mut self.merges_mut(into).merged_from, from);
        }
    }

    /// Points `from` at the merge `candidate`'s customer, if it is its latest merge.
    fn merge_into(&mut self, from: CustomerIx, candidate: Claim) {
        let later = self
            .merged_into(from)
            .is_none_or(|current| self.before(&current, &candidate));
        if later {
            self.merges_mut(from).merged_into = Some(candidate);
        }
    }

    fn kind_index_or_insert(&mut self, kind: &str) -> u32 {
        if let Some(index) = self.kind_indices.get(kind) {
            return *index;
        }
        let index = u32::try_from(self.kinds.len()).expect("fewer than 2^32 handle kinds");
        self.kinds.push(kind.into());
        self.kind_indices.insert(kind.into(), index);
        index
    }

    /// Folds in a view saved through its `Serialize` with postcard: afterwards this view
    /// is what one fold of both views' events would be. Every rule is a min, a max or a set
    /// union (see the module documentation), so a view folded from one part of a history
    /// and then absorbing views folded from the other parts, in any order, equals the view
    /// folded from the whole: a long replay folds its identity view in parts and absorbs
    /// them at its end, so that the whole view is held only once the views' passes are done
    /// (`omnilog_projector::replay`).
    pub fn absorb_saved_bytes(&mut self, bytes: &[u8]) -> Result<(), crate::ViewError> {
        let saved = read_saved(bytes)?;
        check_saved(&saved).map_err(unreadable_saved)?;
        let kinds: Vec<u32> = saved
            .kinds
            .iter()
            .map(|kind| self.kind_index_or_insert(kind))
            .collect();
        let customers: Vec<CustomerIx> = saved
            .customers
            .iter()
            .map(|id| self.customer_ref_index_or_insert(id.as_ref()))
            .collect();
        let to_claim = |claim: Claim| Claim {
            key: claim.key,
            customer: customers[claim.customer as usize],
        };
        let to_customers = |indices: &Indices| -> Indices {
            let mut mapped: Indices = indices.iter().map(|c| customers[*c as usize]).collect();
            mapped.sort_unstable();
            mapped.dedup();
            mapped
        };
        let mut handles = Vec::with_capacity(saved.handles.len());
        for (handle, state) in saved.handles.iter().zip(&saved.handle_states) {
            let kind = kinds[handle.kind as usize];
            let first = to_claim(state.first);
            let linked = state.linked.map(to_claim);
            let claimants = to_customers(&state.claimants);
            let index = match self.handle_index_of(kind, &handle.value) {
                Some(index) => {
                    self.merge_handle(index, first, linked, &claimants);
                    index
                }
                None => {
                    let index = self.push_handle(kind, &handle.value, first);
                    if !is_plain(&first, linked.as_ref(), &claimants) {
                        let extra = self.handle_extra_mut(index);
                        extra.linked = linked;
                        extra.claimants = claimants;
                    }
                    index
                }
            };
            handles.push(index);
        }
        for (&customer, state) in customers.iter().zip(&saved.customer_states) {
            for &handle in &state.handles {
                self.add_customer_handle(customer, handles[handle as usize]);
            }
            if let Some(into) = state.merged_into.map(to_claim) {
                self.merge_into(customer, into);
            }
            for &from in &state.merged_from {
                self.add_merged_from(customer, customers[from as usize]);
            }
        }
        self.events_applied += saved.events_applied;
        Ok(())
    }

    /// The customer queries for `customer` answer for: follows merges. A cycle of merges
    /// (which only contradictory events can make) resolves to the smallest id on it,
    /// whatever the order the merges were folded in.
    fn canonical_index(&self, customer: CustomerIx) -> CustomerIx {
        let Some(first) = self.merged_into(customer) else {
            return customer;
        };
        let mut path = vec![customer];
        let mut next = first.customer;
        loop {
            if let Some(start) = path.iter().position(|seen| *seen == next) {
                return path[start..]
                    .iter()
                    .copied()
                    .min_by(|a, b| self.cmp_customers(*a, *b))
                    .unwrap_or(customer);
            }
            path.push(next);
            match self.merged_into(next) {
                Some(merge) => next = merge.customer,
                None => return next,
            }
        }
    }

    /// The id queries for `id` answer for: follows merges (see [`Self::canonical_index`]).
    pub fn canonical(&self, id: &str) -> CustomerIdText {
        self.canonical_of(id, self.customer_index(id))
    }

    /// [`Self::canonical`] of `id`, found at `customer` (`None`: not known). A customer
    /// merged into no other is answered with `id` itself, which is its text: an id is held
    /// as a uuid only when it is one's own text ([`IdRef::of`]), so this writes no uuid
    /// out again.
    fn canonical_of(&self, id: &str, customer: Option<CustomerIx>) -> CustomerIdText {
        match customer.map(|customer| (customer, self.canonical_index(customer))) {
            Some((customer, canonical)) if canonical != customer => self.customer_text(canonical),
            _ => id.to_owned(),
        }
    }

    fn owner_index(&self, handle: HandleIx) -> CustomerIx {
        self.canonical_index(self.holder(handle))
    }

    /// The customer a handle belongs to now, if any (already normalised handle).
    pub fn owner(&self, handle: &Handle) -> Option<CustomerIdText> {
        self.handle_index(handle)
            .map(|handle| self.customer_text(self.owner_index(handle)))
    }

    /// Resolves the customer of an event (CONTRACT §4): its id if it names one; otherwise
    /// the owner of its first known handle; otherwise a new customer whose id is derived
    /// from its first handle.
    pub fn resolve(&self, customer: &CustomerRef) -> Option<Resolution> {
        if let Some(id) = &customer.id {
            // One lookup for both answers: ingest resolves every event, and parsing the
            // id and probing for it twice was about 1 % of a server's samples under
            // batched ingest (`perf record` of `benches/serve_load.py`).
            let known = self.customer_index(id);
            return Some(Resolution {
                customer_id: self.canonical_of(id, known),
                is_new: known.is_none(),
            });
        }
        if let Some(owner) = customer.handles.iter().find_map(|h| self.owner(h)) {
            return Some(Resolution {
                customer_id: owner,
                is_new: false,
            });
        }
        customer.handles.first().map(|first| Resolution {
            customer_id: customer_id_for_handle(first),
            is_new: true,
        })
    }

    /// Whether a customer id is known (directly or as a merged id).
    pub fn knows(&self, id: &str) -> bool {
        self.customer_index(id).is_some()
    }

    /// The customers merged into `customer` and still in force, transitively (not
    /// including `customer`).
    fn merged_group(&self, customer: CustomerIx) -> BTreeSet<CustomerIx> {
        let canonical = self.canonical_index(customer);
        let mut group = BTreeSet::new();
        let mut pending = vec![customer];
        while let Some(next) = pending.pop() {
            for &from in self.merged_from(next) {
                // Only merges still in force: the latest merge of `from` may point elsewhere.
                if self.canonical_index(from) == canonical && group.insert(from) {
                    pending.push(from);
                }
            }
        }
        group.remove(&customer);
        group
    }

    /// The identity of a customer, answered for the customer `id` was merged into.
    pub fn customer(&self, id: &str) -> Option<CustomerIdentity> {
        let canonical = self.canonical_index(self.customer_index(id)?);
        let merged_from = self.merged_group(canonical);
        let mut handles = BTreeSet::new();
        let mut candidates = BTreeSet::new();
        for &member in std::iter::once(&canonical).chain(&merged_from) {
            for &handle in &self.customer_states[member as usize].handles {
                if self.owner_index(handle) == canonical {
                    handles.insert(self.handle_value(handle));
                }
                for &claimant in self.claimants(handle) {
                    let other = self.canonical_index(claimant);
                    if other != canonical {
                        candidates.insert(self.customer_text(other));
                    }
                }
            }
        }
        let merged_from: BTreeSet<CustomerIdText> = merged_from
            .into_iter()
            .map(|customer| self.customer_text(customer))
            .collect();
        Some(CustomerIdentity {
            customer_id: self.customer_text(canonical),
            handles: handles.into_iter().collect(),
            merged_from: merged_from.into_iter().collect(),
            merge_candidates: candidates.into_iter().collect(),
        })
    }

    /// What the view says, in text and in order, whatever the indices: what equality
    /// compares.
    fn described(&self) -> Described {
        let claim = |claim: &Claim| (claim.key, self.customer_text(claim.customer));
        let texts = |indices: &[CustomerIx]| -> BTreeSet<CustomerIdText> {
            indices.iter().map(|c| self.customer_text(*c)).collect()
        };
        let customers = (0..self.customers.len() as u32)
            .map(|customer| {
                let state = &self.customer_states[customer as usize];
                let handles: BTreeSet<Handle> = state
                    .handles
                    .iter()
                    .map(|h| self.handle_value(*h))
                    .collect();
                (
                    self.customer_text(customer),
                    (
                        handles,
                        self.merged_into(customer).as_ref().map(claim),
                        texts(self.merged_from(customer)),
                    ),
                )
            })
            .collect();
        let handles = (0..self.handles.len() as u32)
            .map(|handle| {
                let state = &self.handle_states[handle as usize];
                (
                    self.handle_value(handle),
                    (
                        claim(&state.first),
                        self.linked(handle).as_ref().map(claim),
                        texts(self.claimants(handle)),
                    ),
                )
            })
            .collect();
        Described { customers, handles }
    }
}

type DescribedClaim = (ClaimKey, CustomerIdText);
/// A customer in text: its handles, the merge it is in, the customers merged into it.
type DescribedCustomer = (
    BTreeSet<Handle>,
    Option<DescribedClaim>,
    BTreeSet<CustomerIdText>,
);
/// A handle in text: its first claim, its link, its claimants.
type DescribedHandle = (
    DescribedClaim,
    Option<DescribedClaim>,
    BTreeSet<CustomerIdText>,
);

/// The view in text: see [`IdentityView::described`].
#[derive(PartialEq, Eq, serde::Serialize)]
struct Described {
    customers: BTreeMap<CustomerIdText, DescribedCustomer>,
    handles: BTreeMap<Handle, DescribedHandle>,
}

impl IdentityView {
    /// What the view says, in text and in order, whatever the indices (what equality
    /// compares), with the events folded, encoded: equal views give equal bytes, so
    /// their digests compare views however they were folded (`omnilog inspect`).
    pub fn canonical_bytes(&self) -> Result<Vec<u8>, crate::ViewError> {
        postcard::to_stdvec(&(self.events_applied, self.described()))
            .map_err(|e| crate::ViewError::Storage(format!("describing the identity view: {e}")))
    }
}

impl PartialEq for IdentityView {
    fn eq(&self, other: &Self) -> bool {
        self.events_applied == other.events_applied && self.described() == other.described()
    }
}

impl Eq for IdentityView {}

/// The layout of a saved view (`identity.bin` beside replayed views). Its first field is
/// [`SAVED_FORMAT`], so a file of another layout is refused with a clear error rather than
/// misread.
#[derive(serde::Serialize)]
struct SavedRef<'a> {
    format: u32,
    customers: &'a [StoredId],
    customer_states: SavedCustomers<'a>,
    kinds: &'a [Box<str>],
    handles: SavedHandleValues<'a>,
    handle_states: SavedHandles<'a>,
    events_applied: u64,
}

#[derive(serde::Deserialize)]
struct Saved {
    format: u32,
    customers: Vec<StoredId>,
    customer_states: Vec<SavedCustomer>,
    kinds: Vec<Box<str>>,
    handles: Vec<SavedHandleValue>,
    handle_states: Vec<SavedHandle>,
    events_applied: u64,
}

/// A customer's state as saved: whole, with its merges (empty for most customers).
#[derive(serde::Serialize, serde::Deserialize)]
struct SavedCustomer<H = Indices> {
    handles: H,
    merged_into: Option<Claim>,
    merged_from: H,
}

/// A handle's state as saved: whole, with its link and claimants.
#[derive(serde::Serialize, serde::Deserialize)]
struct SavedHandle<C = Indices> {
    first: Claim,
    linked: Option<Claim>,
    claimants: C,
}

/// Every customer's state, saved one at a time from the view's tables.
struct SavedCustomers<'a>(&'a IdentityView);

impl serde::Serialize for SavedCustomers<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let view = self.0;
        serializer.collect_seq((0..view.customer_states.len() as u32).map(|customer| {
            SavedCustomer {
                handles: view.customer_states[customer as usize].handles.as_slice(),
                merged_into: view.merged_into(customer),
                merged_from: view.merged_from(customer),
            }
        }))
    }
}

/// Every handle's kind and value, saved one at a time from the view's tables.
struct SavedHandleValues<'a>(&'a IdentityView);

impl serde::Serialize for SavedHandleValues<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let view = self.0;
        serializer.collect_seq(view.handles.values.iter().map(|stored| SavedHandleValue {
            kind: stored.kind,
            value: view.handle_texts.get(stored.text),
        }))
    }
}

/// Every handle's state, saved one at a time from the view's tables.
struct SavedHandles<'a>(&'a IdentityView);

impl serde::Serialize for SavedHandles<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let view = self.0;
        serializer.collect_seq(
            (0..view.handle_states.len() as u32).map(|handle| SavedHandle {
                first: view.handle_states[handle as usize].first,
                linked: view.linked(handle),
                claimants: view.claimants(handle),
            }),
        )
    }
}

/// The layout [`SavedRef`] writes: 3 since claims' times are seconds and nanoseconds (2
/// wrote them as text; 2 stored ids and handles once; 1 was a map of strings, without this
/// field).
const SAVED_FORMAT: u32 = 3;

impl serde::Serialize for IdentityView {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        SavedRef {
            format: SAVED_FORMAT,
            customers: &self.customers.values,
            customer_states: SavedCustomers(self),
            kinds: &self.kinds,
            handles: SavedHandleValues(self),
            handle_states: SavedHandles(self),
            events_applied: self.events_applied,
        }
        .serialize(serializer)
    }
}

impl<'de> serde::Deserialize<'de> for IdentityView {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let saved = Saved::deserialize(deserializer)?;
        IdentityView::from_saved(saved).map_err(serde::de::Error::custom)
    }
}

impl IdentityView {
    /// Reads a view saved through its `Serialize` with postcard (`identity.bin`), saying
    /// what is wrong with a file it cannot read (postcard's own errors carry no detail).
    pub fn from_saved_bytes(bytes: &[u8]) -> Result<Self, crate::ViewError> {
        Self::from_saved(read_saved(bytes)?).map_err(unreadable_saved)
    }

    /// Rebuilds a saved view, checking every index it holds.
    fn from_saved(saved: Saved) -> Result<Self, String> {
        check_saved(&saved)?;
        let customers = saved.customers.len();
        let handles = saved.handles.len();
        let mut view = IdentityView {
            events_applied: saved.events_applied,
            ..IdentityView::default()
        };
        view.customer_states.reserve_exact(customers);
        // A side entry only for what differs from the common case, as the fold makes them.
        for state in saved.customer_states {
            let merged = state.merged_into.is_some() || !state.merged_from.is_empty();
            let merges = if merged {
                let entry = Merges {
                    merged_into: state.merged_into,
                    merged_from: state.merged_from,
                };
                push_side(&mut view.merges, entry)
            } else {
                NONE
            };
            view.customer_states.push(CustomerState {
                handles: state.handles,
                merges,
            });
        }
        view.handle_states.reserve_exact(handles);
        for state in saved.handle_states {
            let extra = if is_plain(&state.first, state.linked.as_ref(), &state.claimants) {
                NONE
            } else {
                let entry = HandleExtra {
                    linked: state.linked,
                    claimants: state.claimants,
                };
                push_side(&mut view.handle_extras, entry)
            };
            view.handle_states.push(HandleState {
                first: state.first,
                extra,
            });
        }
        for kind in saved.kinds {
            let index = view.kinds.len() as u32;
            if view.kind_indices.insert(kind.clone(), index).is_some() {
                return Err(format!(
                    "a saved identity view lists the kind {kind:?} twice"
                ));
            }
            view.kinds.push(kind);
        }
        for id in saved.customers {
            let hash = view.hash_id(id.as_ref());
            if view.customers.find(hash, |stored| *stored == id).is_some() {
                return Err(format!(
                    "a saved identity view lists {} twice",
                    id.to_text()
                ));
            }
            let hasher = &view.hasher;
            view.customers
                .push(hash, id, |stored| hasher.hash_one(stored.as_ref()));
        }
        for handle in saved.handles {
            if view.handle_index_of(handle.kind, &handle.value).is_some() {
                return Err("a saved identity view lists a handle twice".to_owned());
            }
            view.intern_handle(handle.kind, &handle.value);
        }
        Ok(view)
    }
}

/// Whether a handle's state is the common case, held without a [`HandleExtra`]: never
/// linked, and its first claim's customer its only claimant.
fn is_plain(first: &Claim, linked: Option<&Claim>, claimants: &[CustomerIx]) -> bool {
    linked.is_none() && claimants == [first.customer]
}

fn unreadable_saved(reason: String) -> crate::ViewError {
    crate::ViewError::Corrupt {
        key: "the saved identity view".to_owned(),
        reason,
    }
}

/// Decodes a view saved through its `Serialize` with postcard, saying what is wrong with
/// bytes it cannot read (postcard's own errors carry no detail).
fn read_saved(bytes: &[u8]) -> Result<Saved, crate::ViewError> {
    let (format, _) = postcard::take_from_bytes::<u32>(bytes)
        .map_err(|e| unreadable_saved(format!("no layout number: {e}")))?;
    if format != SAVED_FORMAT {
        return Err(unreadable_saved(format!(
            "written in layout {format}, and this build reads layout {SAVED_FORMAT}: \
             it comes from another version of omnilog, so run the replay again"
        )));
    }
    postcard::from_bytes(bytes).map_err(|e| unreadable_saved(format!("cut short or damaged: {e}")))
}

/// Checks that a saved view's parts agree and that every index it holds names a customer,
/// a handle or a kind it holds.
fn check_saved(saved: &Saved) -> Result<(), String> {
    if saved.format != SAVED_FORMAT {
        return Err(format!(
            "a saved identity view of layout {} (this build reads {SAVED_FORMAT}); run the replay again",
            saved.format
        ));
    }
    let customers = saved.customers.len();
    let handles = saved.handles.len();
    if saved.customer_states.len() != customers || saved.handle_states.len() != handles {
        return Err("a saved identity view whose parts disagree in length".to_owned());
    }
    let customer_ok = |c: &u32| (*c as usize) < customers;
    let claim_ok = |claim: &Claim| customer_ok(&claim.customer);
    let states_ok = saved.customer_states.iter().all(|state| {
        state.handles.iter().all(|h| (*h as usize) < handles)
            && state.merged_into.as_ref().is_none_or(claim_ok)
            && state.merged_from.iter().all(customer_ok)
    }) && saved.handle_states.iter().all(|state| {
        claim_ok(&state.first)
            && state.linked.as_ref().is_none_or(claim_ok)
            && state.claimants.iter().all(customer_ok)
    }) && saved
        .handles
        .iter()
        .all(|h| (h.kind as usize) < saved.kinds.len());
    if states_ok {
        Ok(())
    } else {
        Err("a saved identity view names a customer or handle it does not hold".to_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use omnilog_events::identity::normalise_handle;
    use omnilog_events::{CURRENT_SCHEMA_VERSION, Channel};

    fn handle(kind: &str, value: &str) -> Handle {
        normalise_handle(kind, value).unwrap()
    }

    fn event(n: u128, customer: &str, handles: Vec<Handle>, body: Body) -> Event {
        let at = DateTime::from_timestamp(1_772_000_000 + n as i64, 0).unwrap();
        Event {
            event_id: Uuid::from_u128(n),
            schema_version: CURRENT_SCHEMA_VERSION,
            source: None,
            source_event_id: None,
            occurred_at: at,
            recorded_at: Some(at),
            customer: Some(Arc::new(CustomerRef {
                id: Some(customer.into()),
                handles,
                ..CustomerRef::default()
            })),
            interaction_id: Some(format!("i{n}").into()),
            channel: Some(Channel::Chat),
            attributes: Default::default(),
            body,
        }
    }

    fn merge(n: u128, from: &str, into: &str) -> Event {
        let mut merged = event(
            n,
            into,
            vec![],
            Body::CustomersMerged {
                from_customer: from.to_owned(),
                into_customer: into.to_owned(),
            },
        );
        merged.interaction_id = None;
        merged.channel = None;
        merged
    }

    /// Ingest's loop: resolve, stamp the customer, fold.
    fn ingest(view: &mut IdentityView, n: u128, handles: Vec<Handle>) -> Resolution {
        let resolution = view
            .resolve(&CustomerRef {
                id: None,
                handles: handles.clone(),
                ..CustomerRef::default()
            })
            .unwrap();
        view.apply(&event(n, &resolution.customer_id, handles, Body::Hold));
        resolution
    }

    #[test]
    fn a_call_then_an_sms_from_the_same_number_is_one_customer() {
        let mut view = IdentityView::new();
        let phone = handle("phone", "+1 555 123 0001");
        let call = ingest(&mut view, 1, vec![phone.clone()]);
        assert!(call.is_new);
        assert_eq!(call.customer_id, customer_id_for_handle(&phone));
        let sms = ingest(&mut view, 2, vec![handle("phone", "+15551230001")]);
        assert_eq!(
            sms,
            Resolution {
                customer_id: call.customer_id,
                is_new: false
            }
        );
    }

    #[test]
    fn a_chat_visitor_who_gives_an_email_is_found_by_that_email_later() {
        let mut view = IdentityView::new();
        let chat = ingest(
            &mut view,
            1,
            vec![
                handle("visitor", "v-77"),
                handle("email", "alice@example.com"),
            ],
        );
        let email = ingest(&mut view, 2, vec![handle("email", "Alice@Example.com")]);
        assert_eq!(email.customer_id, chat.customer_id);
    }

    #[test]
    fn handles_of_two_customers_go_to_the_first_and_both_become_candidates() {
        let mut view = IdentityView::new();
        let alice = ingest(&mut view, 1, vec![handle("phone", "+15550000001")]).customer_id;
        let bob = ingest(&mut view, 2, vec![handle("email", "bob@example.com")]).customer_id;
        let both = ingest(
            &mut view,
            3,
            vec![
                handle("phone", "+15550000001"),
                handle("email", "bob@example.com"),
            ],
        );
        assert_eq!(both.customer_id, alice);
        assert_eq!(
            view.customer(&alice).unwrap().merge_candidates,
            vec![bob.clone()]
        );
        assert_eq!(
            view.customer(&bob).unwrap().merge_candidates,
            vec![alice.clone()]
        );
        // Never merged on a guess: the email still belongs to Bob.
        assert_eq!(view.owner(&handle("email", "bob@example.com")), Some(bob));
    }

    #[test]
    fn a_merge_answers_for_either_id_with_both_handles() {
        let mut view = IdentityView::new();
        let alice = ingest(&mut view, 1, vec![handle("phone", "+15550000001")]).customer_id;
        let bob = ingest(&mut view, 2, vec![handle("email", "bob@example.com")]).customer_id;
        view.apply(&merge(3, &bob, &alice));
        let merged = view.customer(&bob).unwrap();
        assert_eq!(merged.customer_id, alice);
        assert_eq!(merged.merged_from, vec![bob.clone()]);
        assert_eq!(merged.handles.len(), 2);
        assert_eq!(
            view.owner(&handle("email", "bob@example.com")),
            Some(alice.clone())
        );
        assert_eq!(view.customer(&alice).unwrap(), merged);
    }

    #[test]
    fn an_explicit_link_moves_a_handle() {
        let mut view = IdentityView::new();
        let phone = handle("phone", "+15550000009");
        let first = ingest(&mut view, 1, vec![phone.clone()]).customer_id;
        let mut link = event(
            2,
            "crm-42",
            vec![phone.clone()],
            Body::IdentityLinked { by_handles: false },
        );
        link.interaction_id = None;
        link.channel = None;
        view.apply(&link);
        assert_eq!(view.owner(&phone), Some("crm-42".to_owned()));
        assert_eq!(
            view.customer("crm-42").unwrap().merge_candidates,
            vec![first]
        );
    }

    /// Ingest's loop for a link by handles alone: resolve, stamp, fold.
    fn link_by_handles(view: &mut IdentityView, n: u128, handles: Vec<Handle>) -> Resolution {
        let resolution = view
            .resolve(&CustomerRef {
                id: None,
                handles: handles.clone(),
                ..CustomerRef::default()
            })
            .unwrap();
        let mut link = event(
            n,
            &resolution.customer_id,
            handles,
            Body::IdentityLinked { by_handles: true },
        );
        link.interaction_id = None;
        link.channel = None;
        view.apply(&link);
        resolution
    }

    #[test]
    fn a_link_by_handles_joins_new_handles_to_the_first_known_handles_customer() {
        let mut view = IdentityView::new();
        let phone = handle("phone", "+15550000001");
        let alice = ingest(&mut view, 1, vec![phone.clone()]).customer_id;
        let email = handle("email", "alice@example.com");
        let link = link_by_handles(&mut view, 2, vec![email.clone(), phone.clone()]);
        assert_eq!(
            link,
            Resolution {
                customer_id: alice.clone(),
                is_new: false
            }
        );
        assert_eq!(view.owner(&email), Some(alice.clone()));
        let identity = view.customer(&alice).unwrap();
        assert_eq!(identity.handles, vec![email.clone(), phone]);
        assert!(identity.merge_candidates.is_empty());
        // A later contact by the email alone is Alice's.
        assert_eq!(ingest(&mut view, 3, vec![email]).customer_id, alice);
    }

    #[test]
    fn a_link_by_handles_of_unknown_handles_makes_one_new_customer() {
        let mut view = IdentityView::new();
        let (phone, email) = (
            handle("phone", "+15550000002"),
            handle("email", "new@example.com"),
        );
        let link = link_by_handles(&mut view, 1, vec![phone.clone(), email.clone()]);
        assert!(link.is_new);
        assert_eq!(link.customer_id, customer_id_for_handle(&phone));
        assert_eq!(view.owner(&email), Some(link.customer_id.clone()));
        assert_eq!(view.owner(&phone), Some(link.customer_id));
    }

    #[test]
    fn a_link_by_handles_never_merges_two_known_customers() {
        let mut view = IdentityView::new();
        let phone = handle("phone", "+15550000003");
        let email = handle("email", "bob@example.com");
        let alice = ingest(&mut view, 1, vec![phone.clone()]).customer_id;
        let bob = ingest(&mut view, 2, vec![email.clone()]).customer_id;
        let link = link_by_handles(&mut view, 3, vec![phone.clone(), email.clone()]);
        assert_eq!(link.customer_id, alice);
        // Bob keeps his email; the two are candidates, as after any event naming both.
        assert_eq!(view.owner(&email), Some(bob.clone()));
        assert_eq!(view.owner(&phone), Some(alice.clone()));
        assert_eq!(
            view.customer(&alice).unwrap().merge_candidates,
            vec![bob.clone()]
        );
        assert_eq!(view.customer(&bob).unwrap().merge_candidates, vec![alice]);
    }

    #[test]
    fn merge_cycles_resolve_to_the_smallest_id() {
        let mut view = IdentityView::new();
        view.apply(&merge(1, "b", "a"));
        view.apply(&merge(2, "a", "b"));
        assert_eq!(view.canonical("a"), "a");
        assert_eq!(view.canonical("b"), "a");
    }

    #[test]
    fn the_fold_does_not_depend_on_the_order_of_events() {
        let events = [
            event(1, "x", vec![handle("phone", "+1555")], Body::Hold),
            event(
                2,
                "y",
                vec![handle("phone", "+1555"), handle("email", "y@e.com")],
                Body::Hold,
            ),
            merge(3, "y", "x"),
            merge(4, "y", "z"),
            event(
                5,
                "z",
                vec![handle("email", "y@e.com")],
                Body::IdentityLinked { by_handles: false },
            ),
            event(6, "x", vec![handle("email", "x@e.com")], Body::Hold),
        ];
        let mut forward = IdentityView::new();
        events.iter().for_each(|e| forward.apply(e));
        let mut backward = IdentityView::new();
        events.iter().rev().for_each(|e| backward.apply(e));
        assert_eq!(forward, backward);
        let mut twice = forward.clone();
        events.iter().for_each(|e| twice.apply(e));
        assert!(twice.described() == forward.described());
    }

    /// Events whose customer is one shared `Arc` (as a batch decoder hands them out) with
    /// this customer's events.
    fn sharing_customers(events: &[Event]) -> Vec<Event> {
        let mut shared: Vec<Event> = Vec::new();
        for event in events {
            let mut event = event.clone();
            if let Some(same) = shared.iter().rev().find(|e| e.customer == event.customer) {
                event.customer = same.customer.clone();
            }
            shared.push(event);
        }
        shared
    }

    #[test]
    fn events_that_share_one_decoded_customer_fold_as_events_that_do_not() {
        let x = vec![handle("phone", "+1555"), handle("email", "x@e.com")];
        let y = vec![handle("phone", "+1555"), handle("email", "y@e.com")];
        let events = [
            event(1, "x", x.clone(), Body::Hold),
            event(2, "x", x.clone(), Body::Hold),
            event(3, "y", y.clone(), Body::Hold),
            event(4, "x", x.clone(), Body::Hold),
            event(
                5,
                "y",
                y.clone(),
                Body::IdentityLinked { by_handles: false },
            ),
            event(6, "y", y.clone(), Body::Hold),
            merge(7, "y", "x"),
            event(
                8,
                "x",
                x.clone(),
                Body::IdentityLinked { by_handles: false },
            ),
            event(9, "x", x, Body::Hold),
        ];
        // Each event with a customer of its own: none is remembered.
        let mut alone = IdentityView::new();
        events.iter().for_each(|e| alone.apply(e));
        assert!(alone.recent.by_address.is_empty());
        let shared = sharing_customers(&events);
        assert!(Arc::ptr_eq(
            shared[0].customer.as_ref().unwrap(),
            shared[8].customer.as_ref().unwrap()
        ));
        let mut together = IdentityView::new();
        shared.iter().for_each(|e| together.apply(e));
        // The two shared customers were remembered.
        assert_eq!(together.recent.by_address.len(), 2);
        assert_eq!(together, alone);
        assert_eq!(together.customer("y"), alone.customer("y"));
        // Backwards, the later claims come first and the earlier ones still win.
        let mut backward = IdentityView::new();
        shared.iter().rev().for_each(|e| backward.apply(e));
        assert_eq!(backward, alone);
    }

    #[test]
    fn a_rollback_forgets_the_customer_it_took_away() {
        let mut view = IdentityView::new();
        view.apply(&event(1, "x", vec![handle("phone", "+1555")], Body::Hold));
        let before = view.clone();
        let new = event(2, "n", vec![handle("email", "n@e.com")], Body::Hold);
        // The same decoded customer again, in an event the log will take: its id and
        // handle are new again, not the indices the rollback cut off.
        let mut again = event(3, "n", vec![handle("email", "n@e.com")], Body::Hold);
        again.customer = new.customer.clone();
        let mark = view.mark();
        view.apply(&new);
        view.rollback_to(mark);
        view.commit();
        view.apply(&again);
        let mut expected = before;
        expected.apply(&again);
        assert_eq!(view, expected);
        assert_eq!(view.customer("n"), expected.customer("n"));
        assert_eq!(
            view.owner(&handle("email", "n@e.com")).as_deref(),
            Some("n")
        );
    }

    #[test]
    fn a_saved_view_reads_back_the_same_and_another_layout_is_refused() {
        let mut view = IdentityView::new();
        let alice = ingest(&mut view, 1, vec![handle("phone", "+15550000001")]).customer_id;
        ingest(&mut view, 2, vec![handle("email", "bob@example.com")]);
        view.apply(&merge(3, "crm-bob", &alice));
        let bytes = postcard::to_stdvec(&view).unwrap();
        let read: IdentityView = postcard::from_bytes(&bytes).unwrap();
        assert_eq!(read, view);
        assert_eq!(read.customer("crm-bob"), view.customer(&alice));
        assert_eq!(
            read.owner(&handle("email", "bob@example.com")),
            view.owner(&handle("email", "bob@example.com"))
        );
        // The first field is the layout: a file of another layout is refused, not misread.
        assert_eq!(IdentityView::from_saved_bytes(&bytes).unwrap(), view);
        let mut other = bytes.clone();
        other[0] = 1;
        let error = IdentityView::from_saved_bytes(&other).unwrap_err();
        assert!(error.to_string().contains("layout 1"), "{error}");
        let error = IdentityView::from_saved_bytes(&bytes[..bytes.len() / 2]).unwrap_err();
        assert!(error.to_string().contains("cut short"), "{error}");
    }

    #[test]
    fn handle_values_pack_into_chunks_and_a_rollback_cuts_them_back() {
        let mut texts = HandleTexts::default();
        let long = "x".repeat(HandleTexts::CHUNK_BYTES + 5);
        let values: Vec<String> = (0..5_000)
            .map(|n| format!("customer{n}@example.com"))
            .chain([long.clone(), "after-the-long-one".to_owned()])
            .collect();
        let at: Vec<TextAt> = values.iter().map(|v| texts.push(v)).collect();
        for (value, at) in values.iter().zip(&at) {
            assert_eq!(texts.get(*at), value);
        }
        // Over 100 KB of values: more than one chunk, and the long one in a chunk of its own.
        assert!(texts.chunks.len() >= 3, "{} chunks", texts.chunks.len());
        assert!(
            texts
                .chunks
                .iter()
                .all(|chunk| chunk.len() <= chunk.capacity())
        );
        // Cut back to the 4,000th value: the earlier ones stay, and new ones go after them.
        texts.truncate_to(at[4_000]);
        for (value, at) in values.iter().zip(&at).take(4_000) {
            assert_eq!(texts.get(*at), value);
        }
        let again = texts.push("new@example.com");
        assert_eq!(
            (again.chunk, again.start),
            (at[4_000].chunk, at[4_000].start)
        );
        assert_eq!(texts.get(again), "new@example.com");
        assert_eq!(texts.get(at[3_999]), values[3_999]);
    }

    /// The states held for every customer and handle of the history stay small: what a
    /// customer or handle needs beyond its handles or first claim lives in side tables.
    #[test]
    fn every_customer_and_handle_holds_a_compact_state() {
        assert!(
            size_of::<StoredHandle>() <= 16,
            "{}",
            size_of::<StoredHandle>()
        );
        assert!(
            size_of::<HandleState>() <= 36,
            "{}",
            size_of::<HandleState>()
        );
        assert!(
            size_of::<CustomerState>() <= 32,
            "{}",
            size_of::<CustomerState>()
        );
        let mut view = IdentityView::new();
        let alice = ingest(&mut view, 1, vec![handle("phone", "+15550000001")]).customer_id;
        ingest(&mut view, 2, vec![handle("email", "bob@example.com")]);
        // Nobody linked, merged or shared a handle: nothing in the side tables.
        assert!(view.merges.is_empty() && view.handle_extras.is_empty());
        view.apply(&merge(3, "crm-bob", &alice));
        let mut shared = event(
            4,
            "crm-carol",
            vec![handle("phone", "+15550000001")],
            Body::Hold,
        );
        shared.recorded_at = shared
            .recorded_at
            .map(|at| at + chrono::TimeDelta::hours(1));
        view.apply(&shared);
        // Two customers in a merge, one handle with a second claimant.
        assert_eq!(view.merges.len(), 2);
        assert_eq!(view.handle_extras.len(), 1);
        assert_eq!(
            view.customer(&alice).unwrap().merge_candidates,
            vec!["crm-carol".to_owned()]
        );
    }

    #[test]
    fn a_claims_time_is_saved_to_the_nanosecond() {
        for at in [
            DateTime::from_timestamp(1_772_000_000, 123_456_789).unwrap(),
            DateTime::from_timestamp(-1, 999_999_999).unwrap(),
            // A leap second, as chrono keeps one.
            DateTime::from_timestamp(1_483_228_799, 1_500_000_000).unwrap(),
        ] {
            let key = ClaimKey {
                at,
                event_id: Uuid::from_u128(7),
            };
            let bytes = postcard::to_stdvec(&key).unwrap();
            assert_eq!(postcard::from_bytes::<ClaimKey>(&bytes).unwrap(), key);
        }
        let not_a_time = postcard::to_stdvec(&(i64::MAX, 0u32, Uuid::nil())).unwrap();
        assert!(postcard::from_bytes::<ClaimKey>(&not_a_time).is_err());
    }

    #[test]
    fn ids_that_only_look_like_uuids_are_kept_as_text() {
        let lower = "0190a6f0-7c1e-7c2a-9b3e-6f0a1b2c3d4e";
        assert!(matches!(IdRef::of(lower), IdRef::Uuid(_)));
        for text in [
            "0190A6F0-7C1E-7C2A-9B3E-6F0A1B2C3D4E",
            "0190a6f0-7c1e-7c2a-9b3e-6f0a1B2c3d4e",
            "0190a6f07c1e7c2a9b3e6f0a1b2c3d4e",
            "crm-42",
        ] {
            assert_eq!(IdRef::of(text), IdRef::Text(text));
        }
        // One capital anywhere, in the words tested eight bytes at a time or in the rest.
        let letters = "abcdef0a-bcde-fabc-defa-bcdefabcdefa";
        assert!(matches!(IdRef::of(letters), IdRef::Uuid(_)));
        for at in (0..letters.len()).filter(|&i| letters.as_bytes()[i].is_ascii_alphabetic()) {
            let mut bytes = letters.as_bytes().to_vec();
            bytes[at] = bytes[at].to_ascii_uppercase();
            let text = String::from_utf8(bytes).unwrap();
            assert_eq!(IdRef::of(&text), IdRef::Text(&text), "capital at {at}");
        }
        let mut view = IdentityView::new();
        view.apply(&merge(1, "0190A6F0-7C1E-7C2A-9B3E-6F0A1B2C3D4E", lower));
        assert_eq!(
            view.canonical("0190A6F0-7C1E-7C2A-9B3E-6F0A1B2C3D4E"),
            lower
        );
        assert!(!view.knows("0190a6f07c1e7c2a9b3e6f0a1b2c3d4e"));
    }

    mod properties {
        use super::*;
        use proptest::prelude::*;

        /// One step of a history over a few customers and handles, so that claims collide.
        fn step() -> impl Strategy<Value = (u8, u8, Vec<u8>, u8)> {
            (
                0u8..5,
                0u8..6,
                proptest::collection::vec(0u8..6, 0..3),
                0u8..6,
            )
        }

        /// Customer ids of both kinds: UUIDs (stored as bytes) and text.
        fn customer(n: u8) -> String {
            match n % 3 {
                0 => format!("crm-{n}"),
                _ => Uuid::from_u128(u128::from(n) << 100 | 7).to_string(),
            }
        }

        /// Handles of two kinds, so that views that met them in different orders hold
        /// the kinds under different indices.
        fn numbered_handle(n: u8) -> Handle {
            match n % 2 {
                0 => handle("email", &format!("p{n}@example.com")),
                _ => handle("phone", &format!("+1555000000{n}")),
            }
        }

        /// Both views answer alike for every customer and handle the histories name.
        fn same_answers(a: &IdentityView, b: &IdentityView) -> Result<(), TestCaseError> {
            for n in 0..6 {
                let id = customer(n);
                prop_assert_eq!(a.customer(&id), b.customer(&id));
                prop_assert_eq!(a.canonical(&id), b.canonical(&id));
                prop_assert_eq!(a.knows(&id), b.knows(&id));
                let h = numbered_handle(n);
                prop_assert_eq!(a.owner(&h), b.owner(&h));
            }
            Ok(())
        }

        fn history(steps: &[(u8, u8, Vec<u8>, u8)]) -> Vec<Event> {
            steps
                .iter()
                .enumerate()
                .map(|(n, (kind, who, handles, other))| {
                    let n = n as u128 + 1;
                    let handles: Vec<Handle> =
                        handles.iter().map(|h| numbered_handle(*h)).collect();
                    match kind {
                        0 => merge(n, &customer(*who), &customer(*other)),
                        1 | 2 => {
                            let by_handles = *kind == 2;
                            let mut link = event(
                                n,
                                &customer(*who),
                                handles,
                                Body::IdentityLinked { by_handles },
                            );
                            link.interaction_id = None;
                            link.channel = None;
                            link
                        }
                        _ => event(n, &customer(*who), handles, Body::Hold),
                    }
                })
                .collect()
        }

        proptest! {
            /// The fold's rules are mins, maxes and unions: any order of the same events
            /// gives the same view, answers included, and a saved view reads back equal.
            #[test]
            fn any_order_gives_the_same_view(
                steps in proptest::collection::vec(step(), 1..40),
                seed in any::<u64>(),
            ) {
                let events = history(&steps);
                let mut shuffled = events.clone();
                let mut rng = seed;
                for i in (1..shuffled.len()).rev() {
                    rng = rng.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                    shuffled.swap(i, (rng >> 33) as usize % (i + 1));
                }
                let mut forward = IdentityView::new();
                events.iter().for_each(|e| forward.apply(e));
                let mut other = IdentityView::new();
                shuffled.iter().for_each(|e| other.apply(e));
                prop_assert!(forward == other);
                same_answers(&forward, &other)?;
                let read: IdentityView =
                    postcard::from_bytes(&postcard::to_stdvec(&forward).unwrap()).unwrap();
                prop_assert!(read == forward);
            }

            /// A view folded from one part of a history that absorbs the saved views of the
            /// other parts equals the view folded from the whole, answers included: how a
            /// long replay folds its identity view.
            #[test]
            fn absorbing_the_parts_of_a_history_gives_the_view_of_the_whole(
                steps in proptest::collection::vec(step(), 1..40),
                seed in any::<u64>(),
                parts in 1usize..5,
            ) {
                let events = history(&steps);
                let mut whole = IdentityView::new();
                events.iter().for_each(|e| whole.apply(e));
                // Each event to a part picked at random: parts are not stretches of the
                // history, as a replay's are not (a pass reads a share of a partition's
                // customers, and partitions interleave in no order of time).
                let mut rng = seed;
                let mut folded: Vec<IdentityView> = (0..parts).map(|_| IdentityView::new()).collect();
                for event in &events {
                    rng = rng.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                    folded[(rng >> 33) as usize % parts].apply(event);
                }
                let mut absorbed = folded.remove(0);
                for part in folded.iter().rev() {
                    let bytes = postcard::to_stdvec(part).unwrap();
                    absorbed.absorb_saved_bytes(&bytes).unwrap();
                }
                prop_assert!(absorbed == whole);
                prop_assert_eq!(absorbed.events_applied(), whole.events_applied());
                same_answers(&absorbed, &whole)?;
            }

            /// Folds rolled back to a mark leave the view exactly as it was at the mark
            /// (what it says, its count of events, its lookups), whatever they changed, and
            /// the same folds made again give the view a fold without the rollback gives.
            #[test]
            fn a_rollback_gives_back_the_view_of_its_mark(
                steps in proptest::collection::vec(step(), 2..40),
                split in any::<prop::sample::Index>(),
                inner in any::<prop::sample::Index>(),
            ) {
                let events = history(&steps);
                let split = split.index(events.len());
                let (before, after) = events.split_at(split);
                let mut view = IdentityView::new();
                before.iter().for_each(|e| view.apply(e));
                let at_mark = view.clone();
                let mark = view.mark();
                let inner = inner.index(after.len().max(1)).min(after.len());
                after[..inner].iter().for_each(|e| view.apply(e));
                // A nested mark, and a handle of a kind the view has not seen.
                let _nested = view.mark();
                after[inner..].iter().for_each(|e| view.apply(e));
                let fax = handle("fax", "+15550009999");
                view.apply(&event(999, &customer(1), vec![fax.clone()], Body::Hold));
                view.rollback_to(mark);
                view.commit();
                prop_assert!(!view.is_marked());
                prop_assert!(view == at_mark);
                prop_assert_eq!(view.owner(&fax), None);
                same_answers(&view, &at_mark)?;
                let mut whole = IdentityView::new();
                events.iter().for_each(|e| whole.apply(e));
                after.iter().for_each(|e| view.apply(e));
                prop_assert!(view == whole);
                same_answers(&view, &whole)?;
            }

            /// Ingest's pipeline: the first group's folds are kept while the second's stay
            /// staged. Rolling back to the second's mark then leaves the view as it was
            /// after the first group alone, whatever the second changed (including states
            /// the first added), and recording goes on.
            #[test]
            fn a_rollback_past_a_kept_group_keeps_it(
                steps in proptest::collection::vec(step(), 3..40),
                first_end in any::<prop::sample::Index>(),
                second_end in any::<prop::sample::Index>(),
            ) {
                let events = history(&steps);
                let first_end = first_end.index(events.len());
                let second_end = first_end + second_end.index(events.len() - first_end + 1);
                let mut view = IdentityView::new();
                view.mark();
                events[..first_end].iter().for_each(|e| view.apply(e));
                let after_first = view.clone();
                let second = view.mark();
                events[first_end..second_end].iter().for_each(|e| view.apply(e));
                view.commit_before(second);
                // A third group, staged once the first is kept: the second's refusal
                // takes it back too.
                view.mark();
                events[second_end..].iter().for_each(|e| view.apply(e));
                view.rollback_to(second);
                prop_assert!(view.is_marked());
                prop_assert!(view == after_first);
                same_answers(&view, &after_first)?;
                view.commit();
                events[first_end..].iter().for_each(|e| view.apply(e));
                let mut whole = IdentityView::new();
                events.iter().for_each(|e| whole.apply(e));
                prop_assert!(view == whole);
            }

            /// Two UUIDs stored as bytes order as their text does.
            #[test]
            fn uuids_order_as_their_text(a in any::<u128>(), b in any::<u128>()) {
                let (a, b) = (Uuid::from_u128(a), Uuid::from_u128(b));
                prop_assert_eq!(
                    StoredId::Uuid(a).cmp_text(&StoredId::Uuid(b)),
                    a.to_string().cmp(&b.to_string())
                );
                prop_assert_eq!(
                    StoredId::Uuid(a).cmp_text(&StoredId::Text("crm-1".into())),
                    a.to_string().as_str().cmp("crm-1")
                );
            }
        }
    }
}
