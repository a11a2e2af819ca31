//! The log as the journey queries read it: events by position, for the interaction's events
//! that `GET /v1/interactions/{id}` shows and the journey view does not copy into its state
//! (`omnilog_views::journey::EventSource`).
//!
//! Queries run on blocking threads, so the log's async reads are driven from there with the
//! runtime's handle. Offsets close together are read as one range (one read of the embedded
//! log, one fetch from Kafka) and the wanted ones picked out.

use std::collections::BTreeMap;

use omnilog_events::Event;
use omnilog_log::{SharedLog, Topic};
use omnilog_views::ViewError;
use omnilog_views::journey::EventSource;

/// Offsets at most this far apart are read in one range.
const RANGE_GAP: u64 = 64;

/// The interactions topic of a log, as an [`EventSource`]. Use it on a blocking thread of a
/// tokio runtime (where queries run).
#[derive(Clone, Debug)]
pub struct LogEvents {
    log: SharedLog,
    runtime: tokio::runtime::Handle,
}

impl LogEvents {
    /// Must be created inside the tokio runtime whose blocking threads will use it.
    pub fn new(log: SharedLog) -> Self {
        LogEvents {
            log,
            runtime: tokio::runtime::Handle::current(),
        }
    }
}

impl EventSource for LogEvents {
    fn events(&self, partition: u32, offsets: &[u64]) -> Result<Vec<Event>, ViewError> {
        let mut wanted: Vec<u64> = offsets.to_vec();
        wanted.sort_unstable();
        wanted.dedup();
        // A position at or past the partition's end (a damaged record's) is no record at
        // all: refused at once, where a read from it would wait out the log's patience for
        // records it was told are there (`read_before_end`).
        if let Some(&beyond) = wanted.last() {
            let end = self
                .runtime
                .block_on(self.log.end_offsets_of(Topic::Interactions, partition))
                .map_err(|e| ViewError::Storage(format!("reading an interaction's events: {e}")))?;
            if beyond >= end {
                return Err(ViewError::Corrupt {
                    key: format!("{}/{partition}@{beyond}", Topic::Interactions.name()),
                    reason: format!("a position past the partition's end ({end})"),
                });
            }
        }
        let mut found: BTreeMap<u64, Event> = BTreeMap::new();
        let mut at = 0;
        while at < wanted.len() {
            let first = wanted[at];
            let mut last = first;
            let mut next = at + 1;
            while next < wanted.len() && wanted[next] - last <= RANGE_GAP {
                last = wanted[next];
                next += 1;
            }
            let range = &wanted[at..next];
            let mut from = first;
            // A remote log may deliver less than asked: read on until the range is covered.
            while from <= last {
                let count = usize::try_from(last - from + 1).unwrap_or(usize::MAX);
                let records = self
                    .runtime
                    .block_on(omnilog_log::read_before_end(
                        &*self.log,
                        Topic::Interactions,
                        partition,
                        from,
                        count,
                    ))
                    .map_err(|e| {
                        ViewError::Storage(format!("reading an interaction's events: {e}"))
                    })?;
                let Some(end) = records.last().map(|r| r.offset) else {
                    break;
                };
                for record in records {
                    if range.binary_search(&record.offset).is_ok() {
                        let event = omnilog_events::decode(&record.payload).map_err(|e| {
                            ViewError::Corrupt {
                                key: format!(
                                    "{}/{partition}@{}",
                                    Topic::Interactions.name(),
                                    record.offset
                                ),
                                reason: e.to_string(),
                            }
                        })?;
                        found.insert(record.offset, event);
                    }
                }
                // Below the partition's end, so `end + 1` is at most that end.
                from = end + 1;
            }
            at = next;
        }
        offsets
            .iter()
            .map(|offset| {
                found.get(offset).cloned().ok_or_else(|| {
                    ViewError::Storage(format!(
                        "the event at {}/{partition}@{offset} is not in the log",
                        Topic::Interactions.name()
                    ))
                })
            })
            .collect()
    }
}
