//! Identity parts: a long replay folds the identity view in parts of bounded size, set
//! aside in a temporary file, and absorbs them into one view at its end.
//!
//! Why: the identity view holds every customer and handle of the history, so folded whole
//! beside the views' passes it was the one state of a replay that grew with the history:
//! 65.6 MB of the 145 MB heap peak of a 10M-event replay, 7.3 MB at 1M (heaptrack, see
//! docs/benchmarks-journal.md). Its rules are mins, maxes and unions, so a view folded from some
//! events that absorbs views folded from the others is the view of all of them
//! ([`IdentityView::absorb_saved_bytes`]). Folded in parts of at most
//! [`crate::replay::ReplayOptions::identity_part_entries`] customers and handles, the
//! whole view is built only once the log is read and the views are written and let go:
//! the two no longer add up. (Built beside the views' last checkpoints instead, the
//! whole view's 79 MB and those checkpoints' merges and ingestions, about 60 MB, made a 10M
//! replay's heap peak of 152.5 MB; docs/benchmarks-journal.md, "2026-12-07, late morning".)
//!
//! The file is unnamed (`tempfile::tempfile_in`), deleted by the system once closed, also
//! when the replay dies; nothing in it is synced: a replay that stops starts over.

use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use omnilog_views::{IdentityView, ViewError};

fn parts_error(doing: &str, error: impl std::fmt::Display) -> ViewError {
    ViewError::Storage(format!("a replay's identity parts file: {doing}: {error}"))
}

/// Parts of an identity view set aside, each as `identity.bin` would hold it.
#[derive(Debug)]
pub(crate) struct IdentityParts {
    dir: PathBuf,
    /// Made at the first part.
    file: Option<BufWriter<File>>,
    /// Each part's length in the file, in the order written.
    lengths: Vec<u64>,
}

impl IdentityParts {
    /// Parts to be written in `dir`, an existing directory.
    pub(crate) fn new(dir: &Path) -> Self {
        IdentityParts {
            dir: dir.to_owned(),
            file: None,
            lengths: Vec::new(),
        }
    }

    /// Sets `part` aside.
    pub(crate) fn write(&mut self, part: &IdentityView) -> Result<(), ViewError> {
        let bytes = part.to_saved_bytes()?;
        let file = match &mut self.file {
            Some(file) => file,
            None => {
                let file = tempfile::tempfile_in(&self.dir)
                    .map_err(|e| parts_error(&format!("creating in {}", self.dir.display()), e))?;
                self.file.insert(BufWriter::with_capacity(1 << 20, file))
            }
        };
        file.write_all(&bytes)
            .map_err(|e| parts_error("writing", e))?;
        self.lengths.push(bytes.len() as u64);
        Ok(())
    }

    /// Parts set aside so far.
    pub(crate) fn len(&self) -> usize {
        self.lengths.len()
    }

    /// Folds every part set aside into `view`, oldest first; the file goes with them.
    pub(crate) fn absorb_into(self, view: &mut IdentityView) -> Result<(), ViewError> {
        let Some(file) = self.file else {
            return Ok(());
        };
        let mut file = file
            .into_inner()
            .map_err(|e| parts_error("writing", e.into_error()))?;
        file.seek(SeekFrom::Start(0))
            .map_err(|e| parts_error("reading", e))?;
        let mut reader = BufReader::with_capacity(1 << 20, file);
        let mut bytes = Vec::new();
        for length in self.lengths {
            bytes.clear();
            (&mut reader)
                .take(length)
                .read_to_end(&mut bytes)
                .map_err(|e| parts_error("reading", e))?;
            if bytes.len() as u64 != length {
                return Err(parts_error(
                    "reading",
                    format!("a part of {length} bytes ends after {}", bytes.len()),
                ));
            }
            view.absorb_saved_bytes(&bytes)?;
        }
        Ok(())
    }
}
