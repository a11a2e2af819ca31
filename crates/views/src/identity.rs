//! The identity view (CONTRACT §4): which customer each handle belongs to, which
//! customers were merged, and which customers might be the same person.
//!
//! Ingest consults it to resolve the customer of each event, and records its decision in
//! the event (`customer.id`). The fold then only has to remember claims:
//!
//! - every interaction event *claims* its handles for its customer;
//! - a handle belongs to its earliest claim (by `recorded_at`, then `event_id`), unless an
//!   `identity_linked` event linked it explicitly: then the latest link wins;
//! - two customers that claimed the same handle are each other's merge candidates (never
//!   merged on a guess);
//! - `customers_merged` points one customer at another: queries for either answer for
//!   the one merged into (the latest merge of a customer wins).
//!
//! Every rule is a min, a max or a set union, so the view is the same whatever order the
//! partitions' events are folded in; and since ingest stamps `recorded_at` in the order it
//! resolves, the earliest claim is exactly the one ingest saw first.

use std::collections::BTreeSet;

use chrono::{DateTime, Utc};
use omnilog_events::identity::customer_id_for_handle;
use omnilog_events::{Body, CustomerRef, Event, Handle};
use uuid::Uuid;

use crate::state::FastMap;

/// A customer id as written in the log.
pub type CustomerId = String;

/// A small set kept as a sorted vector. A customer carries two or three handles and a handle
/// one or two claimants: a `BTreeSet` would allocate a node of eleven slots for each (about
/// a kilobyte a customer, most of the view's memory at 10M events). Serialised as a
/// sequence in order, exactly as a `BTreeSet` is, so saved views read back unchanged.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(transparent)]
struct SortedSet<T: Ord>(Vec<T>);

impl<T: Ord> Default for SortedSet<T> {
    fn default() -> Self {
        SortedSet(Vec::new())
    }
}

impl<T: Ord> SortedSet<T> {
    fn of(item: T) -> Self {
        SortedSet(vec![item])
    }

    /// Inserts a copy of `item` unless it is there already.
    fn insert_cloned(&mut self, item: &T)
    where
        T: Clone,
    {
        if let Err(at) = self.0.binary_search(item) {
            self.0.insert(at, item.clone());
        }
    }
}

impl<'de, T: Ord + serde::Deserialize<'de>> serde::Deserialize<'de> for SortedSet<T> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let mut items = Vec::<T>::deserialize(deserializer)?;
        items.sort_unstable();
        items.dedup();
        Ok(SortedSet(items))
    }
}

impl<'a, T: Ord> IntoIterator for &'a SortedSet<T> {
    type Item = &'a T;
    type IntoIter = std::slice::Iter<'a, T>;

    fn into_iter(self) -> Self::IntoIter {
        self.0.iter()
    }
}

/// The order of claims: when ingest accepted the event, then its id.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
struct ClaimKey {
    at: DateTime<Utc>,
    event_id: Uuid,
}

impl ClaimKey {
    fn of(event: &Event) -> Self {
        ClaimKey {
            at: event.recorded_at.unwrap_or(event.occurred_at),
            event_id: event.event_id,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
struct HandleState {
    /// The earliest implicit claim.
    first: (ClaimKey, CustomerId),
    /// The latest explicit link, which overrides implicit claims.
    linked: Option<(ClaimKey, CustomerId)>,
    /// Every customer that carried this handle.
    claimants: SortedSet<CustomerId>,
}

impl HandleState {
    fn holder(&self) -> &CustomerId {
        match &self.linked {
            Some((_, linked)) => linked,
            None => &self.first.1,
        }
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
struct CustomerState {
    /// Every handle this customer carried or was linked to.
    handles: SortedSet<Handle>,
    merged_into: Option<(ClaimKey, CustomerId)>,
    merged_from: SortedSet<CustomerId>,
}

/// The customer an event belongs to, as ingest resolved it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Resolution {
    pub customer_id: CustomerId,
    /// No handle of the event was known and it named no id: a new customer.
    pub is_new: bool,
}

/// What `GET /v1/customers/{id}` shows.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CustomerIdentity {
    /// The id queries answer for (the customer merged into, for a merged id).
    pub customer_id: CustomerId,
    /// Handles that resolve to this customer.
    pub handles: Vec<Handle>,
    /// Customers merged into this one, directly or through others.
    pub merged_from: Vec<CustomerId>,
    /// Customers that share a handle with this one and are not merged with it.
    pub merge_candidates: Vec<CustomerId>,
}

/// The identity view. See the module documentation for its rules. It serialises whole,
/// so a replay can save it beside the views it built.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct IdentityView {
    handles: FastMap<Handle, HandleState>,
    customers: FastMap<CustomerId, CustomerState>,
    events_applied: u64,
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
                self.customers
                    .entry(into_customer.clone())
                    .or_default()
                    .merged_from
                    .insert_cloned(from_customer);
                let from = self.customers.entry(from_customer.clone()).or_default();
                let candidate = (key, into_customer.clone());
                if from
                    .merged_into
                    .as_ref()
                    .is_none_or(|current| *current < candidate)
                {
                    from.merged_into = Some(candidate);
                }
            }
            body => {
                let Some(customer) = &event.customer else {
                    return;
                };
                let Some(id) = &customer.id else {
                    return;
                };
                let explicit = matches!(body, Body::IdentityLinked);
                // Known customers are the common case: no key to copy then.
                if !self.customers.contains_key(id) {
                    self.customers.insert(id.clone(), CustomerState::default());
                }
                for handle in &customer.handles {
                    self.claim(handle, id, key, explicit);
                }
            }
        }
    }

    fn claim(&mut self, handle: &Handle, customer: &CustomerId, key: ClaimKey, explicit: bool) {
        // Most events repeat claims already made: compare before copying anything.
        let earlier = |(at, id): &(ClaimKey, CustomerId)| (key, customer) < (*at, id);
        match self.handles.get_mut(handle) {
            Some(state) => {
                if earlier(&state.first) {
                    state.first = (key, customer.clone());
                }
                if explicit
                    && state
                        .linked
                        .as_ref()
                        .is_none_or(|(at, id)| (*at, id) < (key, customer))
                {
                    state.linked = Some((key, customer.clone()));
                }
                state.claimants.insert_cloned(customer);
            }
            None => {
                let claim = (key, customer.clone());
                self.handles.insert(
                    handle.clone(),
                    HandleState {
                        first: claim.clone(),
                        linked: explicit.then_some(claim),
                        claimants: SortedSet::of(customer.clone()),
                    },
                );
            }
        }
        if let Some(state) = self.customers.get_mut(customer) {
            state.handles.insert_cloned(handle);
        }
    }

    /// The id queries for `id` answer for: follows merges. A cycle of merges (which only
    /// contradictory events can make) resolves to the smallest id on it, whatever the
    /// order the merges were folded in.
    pub fn canonical(&self, id: &str) -> CustomerId {
        let mut path: Vec<&str> = vec![id];
        let mut current = id;
        while let Some((_, next)) = self
            .customers
            .get(current)
            .and_then(|c| c.merged_into.as_ref())
        {
            if let Some(start) = path.iter().position(|seen| *seen == next.as_str()) {
                return path[start..]
                    .iter()
                    .min()
                    .map_or_else(|| id.to_owned(), |smallest| (*smallest).to_owned());
            }
            path.push(next);
            current = next;
        }
        current.to_owned()
    }

    /// The customer a handle belongs to now, if any (already normalised handle).
    pub fn owner(&self, handle: &Handle) -> Option<CustomerId> {
        self.handles
            .get(handle)
            .map(|state| self.canonical(state.holder()))
    }

    /// Resolves the customer of an event (CONTRACT §4): its id if it names one; otherwise
    /// the owner of its first known handle; otherwise a new customer whose id is derived
    /// from its first handle.
    pub fn resolve(&self, customer: &CustomerRef) -> Option<Resolution> {
        if let Some(id) = &customer.id {
            return Some(Resolution {
                customer_id: self.canonical(id),
                is_new: !self.customers.contains_key(id),
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
        self.customers.contains_key(id)
    }

    /// The ids merged into `id`, transitively (not including `id`).
    fn merged_group(&self, id: &str) -> BTreeSet<CustomerId> {
        let mut group = BTreeSet::new();
        let mut pending = vec![id.to_owned()];
        while let Some(next) = pending.pop() {
            if let Some(state) = self.customers.get(&next) {
                for from in &state.merged_from {
                    // Only merges still in force: the latest merge of `from` may point elsewhere.
                    if self.canonical(from) == self.canonical(id) && group.insert(from.clone()) {
                        pending.push(from.clone());
                    }
                }
            }
        }
        group.remove(id);
        group
    }

    /// The identity of a customer, answered for the customer `id` was merged into.
    pub fn customer(&self, id: &str) -> Option<CustomerIdentity> {
        if !self.customers.contains_key(id) {
            return None;
        }
        let canonical = self.canonical(id);
        let merged_from = self.merged_group(&canonical);
        let members: Vec<&str> = std::iter::once(canonical.as_str())
            .chain(merged_from.iter().map(String::as_str))
            .collect();
        let mut handles = BTreeSet::new();
        let mut candidates = BTreeSet::new();
        for member in &members {
            let Some(state) = self.customers.get(*member) else {
                continue;
            };
            for handle in &state.handles {
                if self.owner(handle).as_deref() == Some(canonical.as_str()) {
                    handles.insert(handle.clone());
                }
                if let Some(handle_state) = self.handles.get(handle) {
                    for claimant in &handle_state.claimants {
                        let other = self.canonical(claimant);
                        if other != canonical {
                            candidates.insert(other);
                        }
                    }
                }
            }
        }
        Some(CustomerIdentity {
            customer_id: canonical,
            handles: handles.into_iter().collect(),
            merged_from: merged_from.into_iter().collect(),
            merge_candidates: candidates.into_iter().collect(),
        })
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
            customer: Some(CustomerRef {
                id: Some(customer.to_owned()),
                handles,
            }),
            interaction_id: Some(format!("i{n}")),
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
        let mut link = event(2, "crm-42", vec![phone.clone()], Body::IdentityLinked);
        link.interaction_id = None;
        link.channel = None;
        view.apply(&link);
        assert_eq!(view.owner(&phone), Some("crm-42".to_owned()));
        assert_eq!(
            view.customer("crm-42").unwrap().merge_candidates,
            vec![first]
        );
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
                Body::IdentityLinked,
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
        assert_eq!(twice.handles, forward.handles);
        assert_eq!(twice.customers, forward.customers);
    }
}
