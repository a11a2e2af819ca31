//! Where the API looks customers up: the identity view ingest keeps (a live server), or a
//! frozen copy of it (a replayed store served read-only). Both answer from the same
//! `IdentityView` rules; this trait only hides which one a server has.

use std::fmt::Debug;
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use omnilog_events::identity::normalise_handle;
use omnilog_ingest::{IdentityReach, Ingest};
use omnilog_views::IdentityView;
use omnilog_views::identity::{CustomerIdText, CustomerIdentity};

/// Customer lookups for queries.
pub trait Identities: Send + Sync + Debug {
    /// The customer a handle resolves to now (the handle is normalised first).
    fn resolve_handle(&self, kind: &str, value: &str) -> Option<CustomerIdText>;
    /// A customer's identity, answered for the customer `id` was merged into.
    fn customer(&self, id: &str) -> Option<CustomerIdentity>;
    /// Waits up to `wait` until the view holds the interaction events at `positions`
    /// (partition, offset: a read-your-writes token's).
    fn after<'a>(
        &'a self,
        positions: &'a [(u32, u64)],
        wait: Duration,
    ) -> Pin<Box<dyn Future<Output = IdentityReach> + Send + 'a>>;
}

impl Identities for Ingest {
    fn resolve_handle(&self, kind: &str, value: &str) -> Option<CustomerIdText> {
        Ingest::resolve_handle(self, kind, value)
    }

    fn customer(&self, id: &str) -> Option<CustomerIdentity> {
        Ingest::customer(self, id)
    }

    fn after<'a>(
        &'a self,
        positions: &'a [(u32, u64)],
        wait: Duration,
    ) -> Pin<Box<dyn Future<Output = IdentityReach> + Send + 'a>> {
        Box::pin(self.identity_after(positions, wait))
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

    /// Frozen as the replay left it, which keeps no log positions to hold a token against
    /// (the views of a read-only server do, and answer 504 for a token past them): it holds
    /// all it will ever hold, so a token is answered at once.
    fn after<'a>(
        &'a self,
        _positions: &'a [(u32, u64)],
        _wait: Duration,
    ) -> Pin<Box<dyn Future<Output = IdentityReach> + Send + 'a>> {
        Box::pin(std::future::ready(IdentityReach::Reached))
    }
}
