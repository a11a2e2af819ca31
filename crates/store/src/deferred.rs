//! What may still be in the making: a version's keyspace, or a replay store's database.
//!
//! fjall makes keyspaces one at a time (each is registered in its own meta keyspace, which
//! writes a disk table and a new version of that tree: about twenty `fsync`s a keyspace). A
//! replay makes one for each of its six views: about 50 ms on this machine's disk, during
//! which the views' workers waited and the log's reader stopped once their queues were full
//! (`perf record -e sched:sched_switch omnilog replay` of 200,000 events: the workers slept
//! 10 to 52 ms in `ViewStore::table`, and the first 40 ms ran a quarter of a core). A replay
//! folds in memory and writes nothing to a table until its last checkpoint, so its tables
//! are made on a thread of their own while it folds ([`crate::ViewStore::new_tables_in_background`]):
//! the slot answers for a new, empty keyspace until then, and the first use that needs the
//! keyspace itself waits for it. A replay's store is itself created that way
//! ([`crate::ViewStore::open_for_replay`]): fjall's database, its journal and the store's
//! meta keyspace took another 27 `fsync`s, 6 to 10 ms before a worker started.

use std::sync::mpsc::{Receiver, SyncSender, TryRecvError, sync_channel};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};

use fjall::Keyspace;

use crate::StoreError;

/// What making a `T` gave: it, or why it could not be made.
pub(crate) type Made<T> = Result<T, String>;

/// A keyspace, or the promise of one from the thread making it.
pub(crate) type KeyspaceSlot = Deferred<Keyspace>;

/// A `T`, or the promise of one from the thread making it. Clones share it.
pub(crate) struct Deferred<T> {
    inner: Arc<Inner<T>>,
}

impl<T> Clone for Deferred<T> {
    fn clone(&self) -> Self {
        Deferred {
            inner: self.inner.clone(),
        }
    }
}

struct Inner<T> {
    /// What it is (`the keyspace view-journey-v1`), for errors.
    what: String,
    made: OnceLock<Made<T>>,
    /// Where the maker sends it, until someone waited for it.
    maker: Mutex<Option<Receiver<Made<T>>>>,
}

impl<T> Deferred<T> {
    /// A slot holding what was already made.
    pub(crate) fn made(what: String, value: T) -> Self {
        let made = OnceLock::new();
        let _ = made.set(Ok(value));
        Deferred {
            inner: Arc::new(Inner {
                what,
                made,
                maker: Mutex::new(None),
            }),
        }
    }

    /// A slot for what another thread makes: it sends it (or why it failed) through the
    /// returned sender.
    pub(crate) fn in_the_making(what: String) -> (Self, SyncSender<Made<T>>) {
        let (sender, receiver) = sync_channel(1);
        let slot = Deferred {
            inner: Arc::new(Inner {
                what,
                made: OnceLock::new(),
                maker: Mutex::new(Some(receiver)),
            }),
        };
        (slot, sender)
    }

    /// Whether nothing has waited for it yet: a new keyspace in the making is empty, so
    /// readers answer for an empty keyspace then, without waiting for the maker (only a slot
    /// [`Deferred::in_the_making`] starts without its value, and every read and write goes
    /// through [`Deferred::get`], which takes it).
    pub(crate) fn is_new_and_untouched(&self) -> bool {
        self.inner.made.get().is_none()
    }

    /// Without waiting: an error if its making failed, `Ok` if it is made or still in the
    /// making. A replay asks this at each pass's end, so that a store that could not be
    /// created fails it then, not after every pass was folded.
    pub(crate) fn failed(&self) -> Result<(), StoreError> {
        match self.settle(false) {
            Some(Err(reason)) => Err(self.error(reason)),
            _ => Ok(()),
        }
    }

    /// It, waiting for its maker if need be.
    pub(crate) fn get(&self) -> Result<&T, StoreError> {
        match self.settle(true) {
            Some(Ok(value)) => Ok(value),
            Some(Err(reason)) => Err(self.error(reason)),
            None => Err(self.error("it was never made")),
        }
    }

    /// What its maker gave, received from the maker if nobody has yet: waiting for it, or
    /// (`wait` false) only if it was sent; `None` while it is still in the making.
    fn settle(&self, wait: bool) -> Option<&Made<T>> {
        if self.inner.made.get().is_none() {
            let mut maker = self
                .inner
                .maker
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            // Another thread may have received it while this one waited for the lock.
            if self.inner.made.get().is_none() {
                let received = match maker.as_ref() {
                    Some(receiver) if wait => Some(receiver.recv().map_err(|_| ())),
                    Some(receiver) => match receiver.try_recv() {
                        Ok(made) => Some(Ok(made)),
                        Err(TryRecvError::Empty) => None,
                        Err(TryRecvError::Disconnected) => Some(Err(())),
                    },
                    None => Some(Ok(Err("it was never made".to_owned()))),
                };
                if let Some(received) = received {
                    maker.take();
                    let made = received
                        .unwrap_or_else(|()| Err("the thread making it stopped".to_owned()));
                    let _ = self.inner.made.set(made);
                }
            }
        }
        self.inner.made.get()
    }

    fn error(&self, reason: &str) -> StoreError {
        StoreError::Storage(format!("making {}: {reason}", self.inner.what))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keyspace(dir: &std::path::Path) -> Keyspace {
        let db = fjall::Database::builder(dir).open().unwrap();
        db.keyspace("k", fjall::KeyspaceCreateOptions::default)
            .unwrap()
    }

    #[test]
    fn a_slot_waits_for_its_maker_once_and_shares_the_keyspace() {
        let dir = tempfile::tempdir().unwrap();
        let (slot, sender) = KeyspaceSlot::in_the_making("k".to_owned());
        let copy = slot.clone();
        assert!(slot.is_new_and_untouched());
        let made = keyspace(dir.path());
        let maker = std::thread::spawn(move || sender.send(Ok(made)).unwrap());
        copy.get().unwrap().insert(b"a", b"1").unwrap();
        maker.join().unwrap();
        assert!(!slot.is_new_and_untouched());
        assert_eq!(
            slot.get().unwrap().get(b"a").unwrap().as_deref(),
            Some(&b"1"[..])
        );
    }

    #[test]
    fn a_keyspace_that_could_not_be_made_is_an_error_naming_it_at_each_use() {
        let (slot, sender) = KeyspaceSlot::in_the_making("view-x-v1".to_owned());
        sender.send(Err("the disk is full".to_owned())).unwrap();
        for _ in 0..2 {
            let Err(error) = slot.get().map(|_| ()) else {
                panic!("a keyspace that was not made");
            };
            let error = error.to_string();
            assert!(error.contains("view-x-v1"), "{error}");
            assert!(error.contains("the disk is full"), "{error}");
        }
    }

    #[test]
    fn a_failure_is_seen_without_waiting_and_a_making_under_way_is_none() {
        let (slot, sender) = KeyspaceSlot::in_the_making("the keyspace view-z-v1".to_owned());
        // Still in the making: no failure, and nothing waited for.
        slot.failed().unwrap();
        assert!(slot.is_new_and_untouched());
        sender
            .send(Err("no space left on device".to_owned()))
            .unwrap();
        let error = slot.failed().unwrap_err().to_string();
        assert!(
            error.contains("view-z-v1") && error.contains("no space"),
            "{error}"
        );
        // Seen once, it stays.
        assert!(slot.get().is_err());
        let (made, sender) = KeyspaceSlot::in_the_making("k".to_owned());
        let dir = tempfile::tempdir().unwrap();
        sender.send(Ok(keyspace(dir.path()))).unwrap();
        made.failed().unwrap();
        made.get().unwrap();
    }

    #[test]
    fn a_maker_that_stopped_without_sending_is_an_error() {
        let (slot, sender) = KeyspaceSlot::in_the_making("view-y-v1".to_owned());
        drop(sender);
        let Err(error) = slot.get().map(|_| ()) else {
            panic!("a keyspace that was not made");
        };
        let error = error.to_string();
        assert!(error.contains("stopped"), "{error}");
    }
}
