//! The view store: where projected views keep their state, over sled.
//!
//! One sled database per data directory holds every view. Each version of a view is its
//! own tree (`view/{name}/v{version}`), so a rebuild folds a new version beside the live
//! one and the swap is one write to the `meta` tree. Inside a view's tree, the view's own
//! keys (ASCII tags, see `omnilog_views::state`) sit beside one reserved key, the
//! checkpoint: the next log offset of every partition the state has folded, and counters.
//!
//! The invariant that makes projection exactly-once in effect: a fold's changes and the
//! checkpoint they lead to are written in ONE sled batch ([`ViewTable::commit`]), which
//! sled applies atomically, also across a crash. After a crash the view restarts from its
//! checkpoint and re-folds what the lost commits had folded: nothing lost, nothing counted
//! twice. Commits are not fsynced one by one (sled flushes in the background and on
//! [`ViewStore::flush`]): a view is rebuildable from the log, so a lost tail only costs a
//! re-fold, never correctness.
//!
//! sled calls block; callers on an async runtime run them on blocking threads.

use std::collections::BTreeMap;
use std::path::Path;

use omnilog_events::Destination;
use omnilog_views::state::Entries;
use omnilog_views::{StateReader, StateStore, ViewError};
use serde::{Deserialize, Serialize};

/// The reserved key of a view's checkpoint. View keys start with an ASCII tag, so a key
/// starting with 0xFF cannot collide with them (and sorts after them all).
const CHECKPOINT_KEY: &[u8] = b"\xffcheckpoint";
/// The reserved key of the layout of a view's state (see [`ViewStore::table_with_layout`]).
const LAYOUT_KEY: &[u8] = b"\xfflayout";
const RESERVED_PREFIX: u8 = 0xff;

/// What went wrong in the store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("view store: {0}")]
    Storage(String),
    #[error("view store record {key:?} is unreadable: {reason}")]
    Corrupt { key: String, reason: String },
    #[error("a view wrote the reserved key {0:?}")]
    ReservedKey(String),
}

impl From<sled::Error> for StoreError {
    fn from(error: sled::Error) -> Self {
        StoreError::Storage(error.to_string())
    }
}

impl From<StoreError> for ViewError {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::Corrupt { key, reason } => ViewError::Corrupt { key, reason },
            other => ViewError::Storage(other.to_string()),
        }
    }
}

fn storage(error: sled::Error) -> ViewError {
    ViewError::Storage(error.to_string())
}

/// How far a view's state has folded the log.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkpoint {
    /// The next offset to fold, per (topic, partition). Absent means 0.
    pub positions: BTreeMap<(Destination, u32), u64>,
    /// Events folded into the state (dead letters included).
    pub events_applied: u64,
    /// Events that could not be decoded or applied and went to the dead letter.
    pub dead_letters: u64,
}

impl Checkpoint {
    /// The next offset to fold in a partition.
    pub fn next_offset(&self, topic: Destination, partition: u32) -> u64 {
        self.positions
            .get(&(topic, partition))
            .copied()
            .unwrap_or(0)
    }
}

/// Every view's state in one data directory.
#[derive(Clone, Debug)]
pub struct ViewStore {
    db: sled::Db,
    meta: sled::Tree,
}

fn tree_name(view: &str, version: u32) -> String {
    format!("view/{view}/v{version}")
}

fn active_key(view: &str) -> String {
    format!("active/{view}")
}

impl ViewStore {
    /// Opens (or creates) the store in `dir`.
    pub fn open(dir: &Path) -> Result<Self, StoreError> {
        let config = sled::Config::new()
            .path(dir)
            .cache_capacity(512 * 1024 * 1024)
            .flush_every_ms(Some(1_000));
        // A store this process just closed may hold its lock a moment longer: dropping a
        // sled database does not wait for its flusher thread. Wait for it, briefly.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(3);
        let db = loop {
            match config.open() {
                Err(sled::Error::Io(error))
                    if error.to_string().contains("could not acquire lock")
                        && std::time::Instant::now() < deadline =>
                {
                    std::thread::sleep(std::time::Duration::from_millis(10));
                }
                opened => break opened?,
            }
        };
        let meta = db.open_tree("meta")?;
        Ok(ViewStore { db, meta })
    }

    /// The version of `view` queries read, if one was activated.
    pub fn active_version(&self, view: &str) -> Result<Option<u32>, StoreError> {
        Ok(self
            .meta
            .get(active_key(view))?
            .and_then(|v| v.as_ref().try_into().ok().map(u32::from_be_bytes)))
    }

    /// Makes `version` the one queries read, durably.
    pub fn set_active(&self, view: &str, version: u32) -> Result<(), StoreError> {
        self.meta
            .insert(active_key(view), version.to_be_bytes().as_slice())?;
        self.meta.flush()?;
        Ok(())
    }

    /// Every version of `view` that has a tree, ascending.
    pub fn versions(&self, view: &str) -> Vec<u32> {
        let prefix = format!("view/{view}/v");
        let mut versions: Vec<u32> = self
            .db
            .tree_names()
            .into_iter()
            .filter_map(|name| {
                std::str::from_utf8(&name)
                    .ok()?
                    .strip_prefix(&prefix)?
                    .parse()
                    .ok()
            })
            .collect();
        versions.sort_unstable();
        versions
    }

    /// The tree of one version of a view (created empty if new).
    pub fn table(&self, view: &str, version: u32) -> Result<ViewTable, StoreError> {
        let tree = self.db.open_tree(tree_name(view, version))?;
        Ok(ViewTable { tree, version })
    }

    /// The tree of one version of a view, to fold state of `layout` into (the view's
    /// [`omnilog_views::View::layout`]). A tree holding state of another layout (written
    /// by a build whose view kept other keys) is cleared, checkpoint and all, so the view
    /// folds again from offset 0: new code reading old records would answer wrongly, or
    /// fail. A tree with state but no layout recorded is layout 1.
    pub fn table_with_layout(
        &self,
        view: &str,
        version: u32,
        layout: u32,
    ) -> Result<ViewTable, StoreError> {
        let table = self.table(view, version)?;
        let stored = table.layout()?;
        let cleared = stored.is_some_and(|stored| stored != layout);
        if cleared {
            tracing::warn!(
                view,
                version,
                stored = stored.unwrap_or(1),
                layout,
                "the stored view state has another layout; folding it again from offset 0"
            );
            table.clear()?;
        }
        if cleared || stored.is_none() {
            table
                .tree
                .insert(LAYOUT_KEY, layout.to_be_bytes().as_slice())?;
        }
        Ok(table)
    }

    /// Removes a version's tree and everything in it.
    pub fn drop_table(&self, view: &str, version: u32) -> Result<(), StoreError> {
        self.db.drop_tree(tree_name(view, version))?;
        Ok(())
    }

    /// Makes every commit so far durable.
    pub fn flush(&self) -> Result<(), StoreError> {
        self.db.flush()?;
        Ok(())
    }

    /// Bytes the store occupies on disk.
    pub fn size_on_disk(&self) -> u64 {
        self.db.size_on_disk().unwrap_or(0)
    }
}

/// One version of one view.
#[derive(Clone, Debug)]
pub struct ViewTable {
    tree: sled::Tree,
    version: u32,
}

impl ViewTable {
    pub fn version(&self) -> u32 {
        self.version
    }

    /// Where the state stands. A new table stands at the start of the log.
    pub fn checkpoint(&self) -> Result<Checkpoint, StoreError> {
        match self.tree.get(CHECKPOINT_KEY)? {
            None => Ok(Checkpoint::default()),
            Some(bytes) => postcard::from_bytes(&bytes).map_err(|e| StoreError::Corrupt {
                key: "checkpoint".to_owned(),
                reason: e.to_string(),
            }),
        }
    }

    /// The layout of the state this tree holds: `None` when it holds none (a new tree).
    pub fn layout(&self) -> Result<Option<u32>, StoreError> {
        if let Some(bytes) = self.tree.get(LAYOUT_KEY)? {
            let bytes: [u8; 4] = bytes.as_ref().try_into().map_err(|_| StoreError::Corrupt {
                key: "layout".to_owned(),
                reason: format!("{} bytes, not 4", bytes.len()),
            })?;
            return Ok(Some(u32::from_be_bytes(bytes)));
        }
        // State written before layouts were recorded is layout 1.
        Ok(self.tree.first()?.map(|_| 1))
    }

    /// Starts a unit of work: the fold writes into the overlay, reading through it.
    pub fn begin(&self) -> Overlay {
        Overlay {
            tree: self.tree.clone(),
            changes: BTreeMap::new(),
            journal: Vec::new(),
        }
    }

    /// Writes the overlay's changes and the checkpoint they lead to, atomically.
    pub fn commit(&self, overlay: Overlay, checkpoint: &Checkpoint) -> Result<(), StoreError> {
        let mut batch = sled::Batch::default();
        for (key, value) in overlay.changes {
            if key.first() == Some(&RESERVED_PREFIX) {
                return Err(StoreError::ReservedKey(
                    String::from_utf8_lossy(&key).into_owned(),
                ));
            }
            match value {
                Some(value) => batch.insert(key, value),
                None => batch.remove(key),
            }
        }
        let encoded = postcard::to_stdvec(checkpoint).map_err(|e| StoreError::Corrupt {
            key: "checkpoint".to_owned(),
            reason: e.to_string(),
        })?;
        batch.insert(CHECKPOINT_KEY, encoded);
        self.tree.apply_batch(batch)?;
        Ok(())
    }

    /// Read access for queries.
    pub fn reader(&self) -> TableReader {
        TableReader {
            tree: self.tree.clone(),
        }
    }

    /// Every state entry (the checkpoint excluded), in key order: the canonical dump two
    /// builds of a view are compared by.
    pub fn dump(&self) -> Result<Entries, StoreError> {
        self.tree
            .iter()
            .filter(|entry| {
                entry
                    .as_ref()
                    .map_or(true, |(key, _)| key.first() != Some(&RESERVED_PREFIX))
            })
            .map(|entry| {
                let (key, value) = entry?;
                Ok((key.to_vec(), value.to_vec()))
            })
            .collect()
    }

    /// Forgets the state and the checkpoint.
    pub fn clear(&self) -> Result<(), StoreError> {
        self.tree.clear()?;
        Ok(())
    }
}

/// Read-only access to one version of a view.
#[derive(Clone, Debug)]
pub struct TableReader {
    tree: sled::Tree,
}

impl StateReader for TableReader {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, ViewError> {
        Ok(self.tree.get(key).map_err(storage)?.map(|v| v.to_vec()))
    }

    fn scan_prefix(&self, prefix: &[u8], limit: usize) -> Result<Entries, ViewError> {
        self.tree
            .scan_prefix(prefix)
            .take(limit)
            .map(|entry| {
                let (key, value) = entry.map_err(storage)?;
                Ok((key.to_vec(), value.to_vec()))
            })
            .collect()
    }
}

/// What a key held in the overlay before a write: `None` if the overlay had not touched it.
type Undo = (Vec<u8>, Option<Option<Vec<u8>>>);

/// A unit of work over a view's tree: writes are buffered, reads see them. The writes of
/// the event being folded can be undone ([`Overlay::undo_event`]), so an event that fails
/// half-way leaves nothing behind when it goes to the dead letter.
#[derive(Debug)]
pub struct Overlay {
    tree: sled::Tree,
    /// `None`: deleted.
    changes: BTreeMap<Vec<u8>, Option<Vec<u8>>>,
    /// Undo entries of the current event, newest last.
    journal: Vec<Undo>,
}

impl Overlay {
    /// Marks the start of an event: [`Overlay::undo_event`] goes back to here.
    pub fn start_event(&mut self) {
        self.journal.clear();
    }

    /// Undoes every write since [`Overlay::start_event`].
    pub fn undo_event(&mut self) {
        while let Some((key, previous)) = self.journal.pop() {
            match previous {
                Some(change) => self.changes.insert(key, change),
                None => self.changes.remove(&key),
            };
        }
    }

    fn record_undo(&mut self, key: &[u8]) {
        let previous = self.changes.get(key).cloned();
        self.journal.push((key.to_vec(), previous));
    }

    /// Keys written or deleted so far.
    pub fn len(&self) -> usize {
        self.changes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.changes.is_empty()
    }
}

impl StateReader for Overlay {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, ViewError> {
        match self.changes.get(key) {
            Some(change) => Ok(change.clone()),
            None => Ok(self.tree.get(key).map_err(storage)?.map(|v| v.to_vec())),
        }
    }

    fn scan_prefix(&self, prefix: &[u8], limit: usize) -> Result<Entries, ViewError> {
        // Merge the stored entries with the buffered changes, the changes winning.
        let mut merged: BTreeMap<Vec<u8>, Vec<u8>> = BTreeMap::new();
        for entry in self.tree.scan_prefix(prefix) {
            let (key, value) = entry.map_err(storage)?;
            merged.insert(key.to_vec(), value.to_vec());
        }
        for (key, change) in self
            .changes
            .range(prefix.to_vec()..)
            .take_while(|(key, _)| key.starts_with(prefix))
        {
            match change {
                Some(value) => merged.insert(key.clone(), value.clone()),
                None => merged.remove(key),
            };
        }
        Ok(merged.into_iter().take(limit).collect())
    }
}

impl StateStore for Overlay {
    fn put(&mut self, key: Vec<u8>, value: Vec<u8>) {
        self.record_undo(&key);
        self.changes.insert(key, Some(value));
    }

    fn delete(&mut self, key: &[u8]) {
        self.record_undo(key);
        self.changes.insert(key.to_vec(), None);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_commit_writes_changes_and_checkpoint_together() {
        let dir = tempfile::tempdir().unwrap();
        let store = ViewStore::open(dir.path()).unwrap();
        let table = store.table("journey", 1).unwrap();
        assert_eq!(table.checkpoint().unwrap(), Checkpoint::default());
        let mut overlay = table.begin();
        overlay.put(b"a1".to_vec(), b"one".to_vec());
        overlay.put(b"a2".to_vec(), b"two".to_vec());
        overlay.delete(b"a2");
        assert_eq!(overlay.get(b"a1").unwrap(), Some(b"one".to_vec()));
        assert_eq!(overlay.scan_prefix(b"a", 10).unwrap().len(), 1);
        let mut checkpoint = Checkpoint::default();
        checkpoint
            .positions
            .insert((Destination::Interactions, 3), 17);
        checkpoint.events_applied = 17;
        table.commit(overlay, &checkpoint).unwrap();
        drop(table);
        drop(store);

        let store = ViewStore::open(dir.path()).unwrap();
        let table = store.table("journey", 1).unwrap();
        assert_eq!(table.checkpoint().unwrap(), checkpoint);
        assert_eq!(
            table.dump().unwrap(),
            vec![(b"a1".to_vec(), b"one".to_vec())]
        );
        assert_eq!(
            table
                .checkpoint()
                .unwrap()
                .next_offset(Destination::Interactions, 3),
            17
        );
        assert_eq!(
            table
                .checkpoint()
                .unwrap()
                .next_offset(Destination::Agents, 3),
            0
        );
    }

    #[test]
    fn the_overlay_scan_merges_stored_and_buffered_entries() {
        let dir = tempfile::tempdir().unwrap();
        let store = ViewStore::open(dir.path()).unwrap();
        let table = store.table("queue", 1).unwrap();
        let mut first = table.begin();
        first.put(b"q\x00a".to_vec(), b"1".to_vec());
        first.put(b"q\x00c".to_vec(), b"3".to_vec());
        table.commit(first, &Checkpoint::default()).unwrap();
        let mut second = table.begin();
        second.put(b"q\x00b".to_vec(), b"2".to_vec());
        second.delete(b"q\x00c");
        let keys: Vec<Vec<u8>> = second
            .scan_prefix(b"q\x00", 10)
            .unwrap()
            .into_iter()
            .map(|(k, _)| k)
            .collect();
        assert_eq!(keys, vec![b"q\x00a".to_vec(), b"q\x00b".to_vec()]);
    }

    #[test]
    fn versions_live_side_by_side_and_the_active_one_is_remembered() {
        let dir = tempfile::tempdir().unwrap();
        let store = ViewStore::open(dir.path()).unwrap();
        assert_eq!(store.active_version("journey").unwrap(), None);
        store.table("journey", 1).unwrap();
        store.table("journey", 2).unwrap();
        store.table("queue", 1).unwrap();
        assert_eq!(store.versions("journey"), vec![1, 2]);
        store.set_active("journey", 2).unwrap();
        store.drop_table("journey", 1).unwrap();
        assert_eq!(store.versions("journey"), vec![2]);
        assert_eq!(store.active_version("journey").unwrap(), Some(2));
    }

    #[test]
    fn undoing_an_event_restores_the_overlay_as_it_was() {
        let dir = tempfile::tempdir().unwrap();
        let store = ViewStore::open(dir.path()).unwrap();
        let table = store.table("journey", 1).unwrap();
        let mut overlay = table.begin();
        overlay.start_event();
        overlay.put(b"k1".to_vec(), b"kept".to_vec());
        overlay.start_event();
        overlay.put(b"k1".to_vec(), b"changed".to_vec());
        overlay.put(b"k2".to_vec(), b"new".to_vec());
        overlay.delete(b"k1");
        overlay.undo_event();
        assert_eq!(overlay.get(b"k1").unwrap(), Some(b"kept".to_vec()));
        assert_eq!(overlay.get(b"k2").unwrap(), None);
        assert_eq!(overlay.len(), 1);
    }

    #[test]
    fn state_of_another_layout_is_cleared_and_the_same_layout_kept() {
        let dir = tempfile::tempdir().unwrap();
        let store = ViewStore::open(dir.path()).unwrap();
        // State written before layouts were recorded counts as layout 1.
        let table = store.table("journey", 1).unwrap();
        assert_eq!(table.layout().unwrap(), None);
        let mut overlay = table.begin();
        overlay.put(b"ev1".to_vec(), b"old".to_vec());
        let checkpoint = Checkpoint {
            events_applied: 1,
            ..Checkpoint::default()
        };
        table.commit(overlay, &checkpoint).unwrap();
        assert_eq!(table.layout().unwrap(), Some(1));
        let kept = store.table_with_layout("journey", 1, 1).unwrap();
        assert_eq!(kept.checkpoint().unwrap(), checkpoint);
        assert_eq!(kept.layout().unwrap(), Some(1));

        let cleared = store.table_with_layout("journey", 1, 2).unwrap();
        assert_eq!(cleared.checkpoint().unwrap(), Checkpoint::default());
        assert!(cleared.dump().unwrap().is_empty());
        assert_eq!(cleared.layout().unwrap(), Some(2));
        let again = store.table_with_layout("journey", 1, 2).unwrap();
        assert_eq!(again.layout().unwrap(), Some(2));
        let fresh = store.table_with_layout("queue", 1, 3).unwrap();
        assert_eq!(fresh.layout().unwrap(), Some(3));
    }

    #[test]
    fn a_view_cannot_overwrite_the_checkpoint() {
        let dir = tempfile::tempdir().unwrap();
        let store = ViewStore::open(dir.path()).unwrap();
        let table = store.table("journey", 1).unwrap();
        let mut overlay = table.begin();
        overlay.put(CHECKPOINT_KEY.to_vec(), b"x".to_vec());
        assert!(matches!(
            table.commit(overlay, &Checkpoint::default()),
            Err(StoreError::ReservedKey(_))
        ));
    }
}
