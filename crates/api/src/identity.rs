//! Where the API looks customers up: the identity view ingest keeps (a live server), or a
//! frozen copy of it (a replayed store served read-only). Both answer from the same
//! `IdentityView` rules; this trait only hides which one a server has.

use std::fmt::Debug;

use omnilog_events::identity::normalise_handle;
use omnilog_ingest::Ingest;
use omnilog_views::IdentityView;
use omnilog_views::identity::{CustomerIdText, CustomerIdentity};

/// Customer lookups for queries.
pub trait Identities: Send + Sync + Debug {
    /// The customer a handle resolves to now (the handle is normalised first).
    fn resolve_handle(&self, kind: &str, value: &str) -> Option<CustomerIdText>;
    /// A customer's identity, answered for the customer `id` was merged into.
    fn customer(&self, id: &str) -> Option<CustomerIdentity>;
}

impl Identities for Ingest {
    fn resolve_handle(&self, kind: &str, value: &str) -> Option<CustomerIdText> {
        Ingest::resolve_handle(self, kind, value)
    }

    fn customer(&self, id: &str) -> Option<CustomerIdentity> {
        Ingest::customer(self, id)
    }
}

/// An identity view that no longer changes: the one `omnilog replay` saved with its store.
#[derive(Debug)]
pub struct FrozenIdentities(pub IdentityView);

impl Identities for FrozenIdentities {
    fn resolve_handle(&self, kind: &str, value: &str) -> Option<CustomerIdText> {
        self.0.owner(&normalise_handle(kind, value).ok()?)
    }

    fn customer(&self, id: &str) -> Option<CustomerIdentity> {
        self.0.customer(id)
    }
}
