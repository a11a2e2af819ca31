//! The identity view saved where it stands, so that a server starts from it instead of
//! folding the whole log again.
//!
//! Ingest holds the identity view whole and, without this, folds it from offset 0 of every
//! interactions partition whenever it starts: 1.3 s before a 1M-event desk listens, 7.7 s
//! at 10M (`omnilog serve` of the bench's histories: its identity fold, of 7.1 s before it
//! listened), and so on with the history. A clean stop (or a start that folded many events)
//! writes the view to `identity.snapshot` with, per interactions partition, the offset it
//! has folded up to and the event id and payload checksum of the record just before it; a
//! start reads it, checks it against the log, and folds only what lies past those offsets.
//!
//! The log is append-only and its records never change, so a snapshot stays true of the
//! offsets it names for as long as the log keeps them: one from before a crash is simply
//! further behind, and the start folds more. It is taken only where it provably belongs
//! to the log it is read beside: as many partitions, none of its offsets past the log's
//! end, and each partition's record before its offset the one it noted, by event id and by
//! a CRC-32C of its payload (which holds its `recorded_at` and the customer ingest gave it:
//! a log restored from another desk or an older backup, even one refilled with the same
//! events, is not mistaken for this one). A
//! file that fails any check, or that cannot be read, is passed over with a warning and
//! the view folded from offset 0, as before: the snapshot only ever saves time.
//!
//! The file is written aside, synced, renamed over the old one and the directory synced,
//! so a crash leaves the old snapshot or the new one, whole. Its bytes end with a CRC-32C
//! of everything before them. Why a format of its own and not the view store: the identity
//! view is one value that ingest holds whole, written at once, and the layout below is all
//! it needs (the view's own bytes are its saved form, as `identity.bin` holds it).
//!
//! | bytes | what |
//! |---|---|
//! | 8 | `OMNIIDS1` |
//! | 4 | the layout below, `1` (little-endian, as every number here); a build that changes the identity view's fold rules must change it, so that no view folded by the old rules is taken |
//! | 4 | the interactions partitions, `n` |
//! | n × 28 | per partition: the offset folded up to (8), the event id of the record before it (16; nil at offset 0) and a CRC-32C of its payload (4; 0 at offset 0) |
//! | 12 | the latest `recorded_at` folded: seconds (8), nanoseconds (4) |
//! | 8 + m | the view's saved bytes ([`IdentityView::to_saved_bytes`]) and their length |
//! | 4 | CRC-32C of everything above |

use std::io::Write as _;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use omnilog_log::{EventLog, LogRecord, Topic};
use omnilog_views::IdentityView;
use uuid::Uuid;

use crate::IngestError;

/// The file's first bytes.
const MAGIC: &[u8; 8] = b"OMNIIDS1";
/// The layout this build writes and reads.
const LAYOUT: u32 = 1;

/// Where a view stands in one interactions partition: the offset it has folded up to, and
/// the record before it (nil and 0 at offset 0), by which a snapshot is known to be of a
/// log.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct FoldedTo {
    pub offset: u64,
    pub event_id: Uuid,
    pub payload_crc: u32,
}

impl FoldedTo {
    /// Offset 0: nothing folded.
    pub const START: FoldedTo = FoldedTo {
        offset: 0,
        event_id: Uuid::nil(),
        payload_crc: 0,
    };

    /// Folded up to just past `record`.
    pub fn past(record: &LogRecord) -> FoldedTo {
        FoldedTo {
            offset: record.offset + 1,
            event_id: record.event_id,
            payload_crc: crc32c::crc32c(&record.payload),
        }
    }
}

/// The identity view as a snapshot holds it, with where it stands in the log.
#[derive(Debug)]
pub(crate) struct IdentitySnapshot {
    pub view: IdentityView,
    /// Per interactions partition, where the view stands.
    pub folded_to: Vec<FoldedTo>,
    /// The latest `recorded_at` of the events folded: stamps handed out after the start
    /// stay after it.
    pub last_recorded: DateTime<Utc>,
}

impl IdentitySnapshot {
    /// The snapshot's bytes.
    fn encode(&self) -> Result<Vec<u8>, IngestError> {
        let view = self
            .view
            .to_saved_bytes()
            .map_err(|e| snapshot_error(format!("encoding the identity view: {e}")))?;
        let mut bytes = Vec::with_capacity(view.len() + 64 + self.folded_to.len() * 28);
        bytes.extend_from_slice(MAGIC);
        bytes.extend_from_slice(&LAYOUT.to_le_bytes());
        let partitions = u32::try_from(self.folded_to.len())
            .map_err(|_| snapshot_error("too many partitions".to_owned()))?;
        bytes.extend_from_slice(&partitions.to_le_bytes());
        for folded in &self.folded_to {
            bytes.extend_from_slice(&folded.offset.to_le_bytes());
            bytes.extend_from_slice(folded.event_id.as_bytes());
            bytes.extend_from_slice(&folded.payload_crc.to_le_bytes());
        }
        bytes.extend_from_slice(&self.last_recorded.timestamp().to_le_bytes());
        bytes.extend_from_slice(&self.last_recorded.timestamp_subsec_nanos().to_le_bytes());
        bytes.extend_from_slice(&(view.len() as u64).to_le_bytes());
        bytes.extend_from_slice(&view);
        let crc = crc32c::crc32c(&bytes);
        bytes.extend_from_slice(&crc.to_le_bytes());
        Ok(bytes)
    }

    /// Reads a snapshot's bytes, saying what is wrong with them if they are not one this
    /// build wrote whole.
    fn decode(bytes: &[u8]) -> Result<Self, String> {
        let (body, crc) = bytes
            .split_last_chunk::<4>()
            .ok_or("shorter than its checksum")?;
        if crc32c::crc32c(body) != u32::from_le_bytes(*crc) {
            return Err("its checksum does not match its bytes".to_owned());
        }
        let mut rest = body;
        let mut take = |len: usize| -> Result<&[u8], String> {
            if rest.len() < len {
                return Err("it ends early".to_owned());
            }
            let (taken, after) = rest.split_at(len);
            rest = after;
            Ok(taken)
        };
        if take(8)? != MAGIC {
            return Err("it is not an identity snapshot".to_owned());
        }
        let layout = u32::from_le_bytes(take(4)?.try_into().map_err(|_| "layout")?);
        if layout != LAYOUT {
            return Err(format!(
                "it has layout {layout}, and this build reads layout {LAYOUT}"
            ));
        }
        let partitions = u32::from_le_bytes(take(4)?.try_into().map_err(|_| "partitions")?);
        let mut folded_to = Vec::with_capacity(partitions.min(1 << 16) as usize);
        for _ in 0..partitions {
            let offset = u64::from_le_bytes(take(8)?.try_into().map_err(|_| "offset")?);
            let event_id = Uuid::from_slice(take(16)?).map_err(|e| e.to_string())?;
            let payload_crc = u32::from_le_bytes(take(4)?.try_into().map_err(|_| "checksum")?);
            folded_to.push(FoldedTo {
                offset,
                event_id,
                payload_crc,
            });
        }
        let seconds = i64::from_le_bytes(take(8)?.try_into().map_err(|_| "seconds")?);
        let nanos = u32::from_le_bytes(take(4)?.try_into().map_err(|_| "nanoseconds")?);
        let last_recorded = DateTime::from_timestamp(seconds, nanos)
            .ok_or_else(|| format!("its latest stamp ({seconds} s, {nanos} ns) is no time"))?;
        let len = u64::from_le_bytes(take(8)?.try_into().map_err(|_| "length")?);
        let view_bytes = take(usize::try_from(len).map_err(|_| "length")?)?;
        if !rest.is_empty() {
            return Err("it has bytes past its view".to_owned());
        }
        let view = IdentityView::from_saved_bytes(view_bytes).map_err(|e| e.to_string())?;
        Ok(IdentitySnapshot {
            view,
            folded_to,
            last_recorded,
        })
    }

    /// Writes the snapshot to `path` durably: aside, synced, renamed over, the directory
    /// synced.
    pub fn save(&self, path: &Path) -> Result<(), IngestError> {
        let bytes = self.encode()?;
        // One save at a time: the one after a long start may still be writing when a quick
        // stop saves, and both write the same file aside.
        static SAVING: std::sync::Mutex<()> = std::sync::Mutex::new(());
        let _saving = SAVING
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let aside = aside_path(path);
        let written = (|| {
            let mut file = std::fs::File::create(&aside)?;
            file.write_all(&bytes)?;
            file.sync_all()?;
            std::fs::rename(&aside, path)?;
            // A bare file name's directory is the working one.
            let dir = path
                .parent()
                .filter(|dir| !dir.as_os_str().is_empty())
                .unwrap_or(Path::new("."));
            std::fs::File::open(dir)?.sync_all()?;
            Ok::<_, std::io::Error>(())
        })();
        written.map_err(|e| {
            let _ = std::fs::remove_file(&aside);
            snapshot_error(format!("writing {}: {e}", path.display()))
        })
    }

    /// The snapshot at `path` if there is one that belongs to `log` as it is now (see the
    /// module's checks), or `None`, having said why one was passed over.
    pub async fn load_checked(path: &Path, log: &dyn EventLog, ends: &[u64]) -> Option<Self> {
        let bytes = match std::fs::read(path) {
            Ok(bytes) => bytes,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => return None,
            Err(error) => {
                tracing::warn!(path = %path.display(), %error, "could not read the identity snapshot; folding the identity view from the whole log");
                return None;
            }
        };
        let snapshot = match Self::decode(&bytes) {
            Ok(snapshot) => snapshot,
            Err(reason) => {
                tracing::warn!(path = %path.display(), %reason, "passing over an unreadable identity snapshot; folding the identity view from the whole log");
                return None;
            }
        };
        match snapshot.belongs_to(log, ends).await {
            Ok(()) => Some(snapshot),
            Err(reason) => {
                tracing::warn!(path = %path.display(), %reason, "passing over an identity snapshot of another log; folding the identity view from the whole log");
                None
            }
        }
    }

    /// Whether this snapshot is of `log`: as many partitions, no offset past their ends,
    /// and each partition's record before its offset the one it noted.
    async fn belongs_to(&self, log: &dyn EventLog, ends: &[u64]) -> Result<(), String> {
        if self.folded_to.len() != ends.len() {
            return Err(format!(
                "it has {} interactions partitions, the log {}",
                self.folded_to.len(),
                ends.len()
            ));
        }
        for (partition, (noted, &end)) in self.folded_to.iter().zip(ends).enumerate() {
            let offset = noted.offset;
            if offset > end {
                return Err(format!(
                    "it folded partition {partition} up to offset {offset}, past the log's end ({end})"
                ));
            }
            if offset == 0 {
                continue;
            }
            let records = omnilog_log::read_before_end(
                log,
                Topic::Interactions,
                partition as u32,
                offset - 1,
                1,
            )
            .await
            .map_err(|e| {
                format!(
                    "reading partition {partition} at offset {}: {e}",
                    offset - 1
                )
            })?;
            match records.first() {
                Some(record) if record.offset == offset - 1 && FoldedTo::past(record) == *noted => {
                }
                Some(record) => {
                    return Err(format!(
                        "partition {partition} holds another record at offset {} (event {}) than the one it noted (event {})",
                        record.offset, record.event_id, noted.event_id
                    ));
                }
                None => {
                    return Err(format!(
                        "partition {partition} has no record at offset {}",
                        offset - 1
                    ));
                }
            }
        }
        Ok(())
    }
}

/// Where a snapshot is written before it is renamed over `path`.
fn aside_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".writing");
    path.with_file_name(name)
}

fn snapshot_error(message: String) -> IngestError {
    IngestError::Snapshot(message)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snapshot() -> IdentitySnapshot {
        IdentitySnapshot {
            view: IdentityView::new(),
            folded_to: vec![
                FoldedTo::START,
                FoldedTo {
                    offset: 7,
                    event_id: Uuid::from_u128(42),
                    payload_crc: 0xdead_beef,
                },
            ],
            last_recorded: DateTime::from_timestamp(1_800_000_000, 123_456_789).unwrap(),
        }
    }

    #[test]
    fn a_snapshot_reads_back_as_it_was_written() {
        let written = snapshot();
        let read = IdentitySnapshot::decode(&written.encode().unwrap()).unwrap();
        assert_eq!(read.folded_to, written.folded_to);
        assert_eq!(read.last_recorded, written.last_recorded);
        assert_eq!(read.view, written.view);
    }

    #[test]
    fn damaged_or_foreign_bytes_are_refused_with_their_reason() {
        let bytes = snapshot().encode().unwrap();
        let mut flipped = bytes.clone();
        flipped[20] ^= 1;
        assert!(
            IdentitySnapshot::decode(&flipped)
                .unwrap_err()
                .contains("checksum")
        );
        assert!(
            IdentitySnapshot::decode(&bytes[..bytes.len() - 9])
                .unwrap_err()
                .contains("checksum")
        );
        assert!(
            IdentitySnapshot::decode(&[1, 2])
                .unwrap_err()
                .contains("shorter")
        );
        // Another layout, its checksum made to match: named.
        let mut other = bytes[..bytes.len() - 4].to_vec();
        other[8..12].copy_from_slice(&2u32.to_le_bytes());
        let crc = crc32c::crc32c(&other);
        other.extend_from_slice(&crc.to_le_bytes());
        assert!(
            IdentitySnapshot::decode(&other)
                .unwrap_err()
                .contains("layout 2")
        );
    }
}
