//! Disk failures a test can make the writer meet, at the very points where a full or
//! failing disk makes them: a frame half written, a sync refused, a new segment created but
//! not written. No unprivileged test can fill a disk at a chosen instant, and none at all can
//! make `fdatasync` fail; yet what the writer does after each of them is what decides whether
//! a full disk needs a restart. Each injected failure is the error the kernel gives for a
//! full disk (`ENOSPC`), or for a failing one (`EIO`) on a read, and the writer meets it on
//! its ordinary path: nothing else differs.

use std::sync::atomic::{AtomicU32, Ordering};

/// Where an injected disk failure strikes (see [`crate::EmbeddedLog::inject_disk_fault`]).
#[doc(hidden)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DiskFault {
    /// Writing a frame: half of it reaches the file, then the disk is full.
    Write,
    /// Syncing: the frame is in the file, `fdatasync` fails (and so does the sync of a
    /// cut-back while faults of this kind remain).
    Sync,
    /// Starting a segment: the file is created, its header cannot be written, and the empty
    /// file stays behind (as after a crash in that instant).
    CreateSegment,
    /// Looking an event id up in the deduplication index, which reads a sealed segment's
    /// run of ids: the read fails (with `EIO`, as a failing disk gives it).
    ReadIds,
    /// Starting a segment: its header is written, then its sync fails.
    SyncNewSegment,
}

/// Failures still to inject, per kind.
#[derive(Debug, Default)]
pub(crate) struct Faults {
    pending: [AtomicU32; 5],
}

fn slot(fault: DiskFault) -> usize {
    match fault {
        DiskFault::Write => 0,
        DiskFault::Sync => 1,
        DiskFault::CreateSegment => 2,
        DiskFault::ReadIds => 3,
        DiskFault::SyncNewSegment => 4,
    }
}

impl Faults {
    /// Makes the next `times` operations of this kind fail.
    pub(crate) fn inject(&self, fault: DiskFault, times: u32) {
        self.pending[slot(fault)].fetch_add(times, Ordering::SeqCst);
    }

    /// How many failures of this kind are still to strike.
    pub(crate) fn left(&self, fault: DiskFault) -> u32 {
        self.pending[slot(fault)].load(Ordering::SeqCst)
    }

    /// Whether this operation is to fail (one injected failure is used up).
    pub(crate) fn strikes(&self, fault: DiskFault) -> bool {
        self.pending[slot(fault)]
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |left| {
                left.checked_sub(1)
            })
            .is_ok()
    }
}

/// The error a failing disk gives a read.
pub(crate) fn io_failure() -> std::io::Error {
    const EIO: i32 = 5;
    std::io::Error::from_raw_os_error(EIO)
}

/// The error a full disk gives.
pub(crate) fn no_space() -> std::io::Error {
    const ENOSPC: i32 = 28;
    std::io::Error::from_raw_os_error(ENOSPC)
}
