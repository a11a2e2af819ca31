//! Replay: folds a view from offset 0 to the end the log has now, into a fresh table,
//! optionally as of a point in event time (`until`): what analysts run to rebuild views
//! offline or to ask what was true last March.
//!
//! It is the live projection's fold and commit, driven to a fixed end instead of tailing:
//! the same code, so a replayed view equals the live one folded to the same positions.
//! The source log is only read: records that cannot be decoded or applied are counted
//! (`dead_letters`), not appended anywhere.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use omnilog_log::SharedLog;
use omnilog_store::{Checkpoint, ViewTable};
use omnilog_views::View;

use crate::ProjectorError;
use crate::projection::{fold, topic_of};

/// How far a replay has come.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReplayProgress {
    /// Records read so far.
    pub read: u64,
    /// Records to read in all.
    pub total: u64,
}

/// Folds `view` into `table` up to the log's current end; returns the final checkpoint.
pub async fn replay(
    log: SharedLog,
    table: ViewTable,
    view: Arc<dyn View>,
    until: Option<DateTime<Utc>>,
    batch: usize,
    mut on_progress: impl FnMut(ReplayProgress) + Send,
) -> Result<Checkpoint, ProjectorError> {
    let reading = table.clone();
    let mut checkpoint = tokio::task::spawn_blocking(move || reading.checkpoint())
        .await
        .map_err(|e| ProjectorError::Task(e.to_string()))??;
    let mut ends = Vec::new();
    for &destination in view.topics() {
        let topic = topic_of(destination);
        for (partition, end) in log.end_offsets(topic).await?.into_iter().enumerate() {
            ends.push((destination, partition as u32, end));
        }
    }
    let total: u64 = ends.iter().map(|(_, _, end)| end).sum();
    let progress = |checkpoint: &Checkpoint| ReplayProgress {
        read: ends
            .iter()
            .map(|&(topic, partition, end)| checkpoint.next_offset(topic, partition).min(end))
            .sum(),
        total,
    };
    on_progress(progress(&checkpoint));
    let batch = batch.max(1);
    // Once the ends are reached, one more look beyond each: a broker may report an end
    // short of what is readable (tansu's ListOffsets leaves out the last batch), and a
    // replay must not stop before what a live projection has already folded.
    let mut beyond_ends = false;
    // Bounds the look beyond on a log still being written: it catches a short end, it
    // does not follow the writers.
    let mut passes_beyond = 0;
    loop {
        let mut records = Vec::new();
        for &(destination, partition, end) in &ends {
            let from = checkpoint.next_offset(destination, partition);
            if from < end || beyond_ends {
                let wanted = if from < end {
                    batch.min((end - from) as usize)
                } else {
                    batch
                };
                let topic = topic_of(destination);
                records.extend(if from < end {
                    omnilog_log::read_before_end(&*log, topic, partition, from, wanted).await?
                } else {
                    log.read(topic, partition, from, wanted).await?
                });
            }
        }
        if records.is_empty() || passes_beyond > 16 {
            if beyond_ends {
                break;
            }
            beyond_ends = true;
            continue;
        }
        if beyond_ends {
            passes_beyond += 1;
        }
        let (table_now, view_now) = (table.clone(), view.clone());
        let start = checkpoint.clone();
        let folded = tokio::task::spawn_blocking(move || {
            let folded = fold(&table_now, &*view_now, start, records, until)?;
            let checkpoint = folded.checkpoint.clone();
            table_now.commit(folded.overlay, &checkpoint)?;
            Ok::<_, ProjectorError>(checkpoint)
        })
        .await
        .map_err(|e| ProjectorError::Task(e.to_string()))??;
        checkpoint = folded;
        on_progress(progress(&checkpoint));
    }
    Ok(checkpoint)
}
