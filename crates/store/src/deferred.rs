//! A version's keyspace that may still be in the making.
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
//! keyspace itself waits for it.

use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};

use fjall::Keyspace;

use crate::StoreError;

/// What making a keyspace gave: the keyspace, or why it could not be made.
type Made = Result<Keyspace, String>;

/// A keyspace, or the promise of one from the thread making it. Clones share it.
#[derive(Clone)]
pub(crate) struct KeyspaceSlot {
    inner: Arc<Inner>,
}

struct Inner {
    /// The keyspace's name, for errors.
    name: String,
    made: OnceLock<Made>,
    /// Where the maker sends it, until someone waited for it.
    maker: Mutex<Option<Receiver<Made>>>,
}

impl KeyspaceSlot {
    /// A slot holding a keyspace already made.
    pub(crate) fn made(name: String, keyspace: Keyspace) -> Self {
        let made = OnceLock::new();
        let _ = made.set(Ok(keyspace));
        KeyspaceSlot {
            inner: Arc::new(Inner {
                name,
                made,
                maker: Mutex::new(None),
            }),
        }
    }

    /// A slot for a new keyspace another thread makes: it sends it (or why it failed)
    /// through the returned sender.
    pub(crate) fn in_the_making(name: String) -> (Self, SyncSender<Made>) {
        let (sender, receiver) = sync_channel(1);
        let slot = KeyspaceSlot {
            inner: Arc::new(Inner {
                name,
                made: OnceLock::new(),
                maker: Mutex::new(Some(receiver)),
            }),
        };
        (slot, sender)
    }

    /// Whether the slot holds a new keyspace nothing has used yet, which is empty: only a
    /// slot [`KeyspaceSlot::in_the_making`] starts without its keyspace, and every read and
    /// write goes through [`KeyspaceSlot::get`], which takes it. Readers answer for an empty
    /// keyspace then, without waiting for the maker.
    pub(crate) fn is_new_and_untouched(&self) -> bool {
        self.inner.made.get().is_none()
    }

    /// The keyspace, waiting for its maker if need be.
    pub(crate) fn get(&self) -> Result<&Keyspace, StoreError> {
        if self.inner.made.get().is_none() {
            let mut maker = self
                .inner
                .maker
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            // Another thread may have received it while this one waited for the lock.
            if self.inner.made.get().is_none() {
                let made = match maker.take() {
                    Some(receiver) => receiver
                        .recv()
                        .unwrap_or_else(|_| Err("the thread making it stopped".to_owned())),
                    None => Err("it was never made".to_owned()),
                };
                let _ = self.inner.made.set(made);
            }
        }
        match self.inner.made.get() {
            Some(Ok(keyspace)) => Ok(keyspace),
            Some(Err(reason)) => Err(StoreError::Storage(format!(
                "making the keyspace {}: {reason}",
                self.inner.name
            ))),
            None => Err(StoreError::Storage(format!(
                "the keyspace {} was never made",
                self.inner.name
            ))),
        }
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
