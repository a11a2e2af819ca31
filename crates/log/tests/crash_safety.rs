//! Crash safety of the embedded log: a child process (this test binary, re-executed in
//! child mode) appends in a loop with several concurrent appenders and reports every
//! acknowledged append on stdout; it is killed with SIGKILL at a random moment, five rounds
//! over the same directory. After every kill the log reopens, every acknowledged event is
//! in it exactly once at the position its append was given, every stored record is intact,
//! offsets are contiguous from 0, and the deduplication index agrees with the records
//! (appending any stored event again is a `Duplicate` of it).
#![cfg(unix)]

mod common;

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::{Arc, mpsc};
use std::time::{Duration, Instant};

use omnilog_log::{
    AppendOutcome, EmbeddedLog, EventLog, PartitionCounts, Position, Topic, partition_for,
};
use uuid::Uuid;

use common::{PARTITIONS, Rng, event_id, read_partition, record};

/// Set (to the log's directory) in the child only.
const CHILD_DIR: &str = "OMNILOG_LOG_CRASH_CHILD_DIR";
const CHILD_ROUND: &str = "OMNILOG_LOG_CRASH_CHILD_ROUND";
/// SIGKILL's number on every unix (`Child::kill` sends it), without a libc dependency.
const SIGKILL: i32 = 9;
const CHILD_TEST: &str = "crash_child_appends_until_killed";
const ROUNDS: u32 = 5;
/// The child is killed this long (at most) after its first acknowledgement.
const MAX_KILL_DELAY_MS: u64 = 400;
/// Bounds on the child, should the kill never come.
const CHILD_APPENDERS: u64 = 4;
const CHILD_MAX_BATCHES: u64 = 200_000;
const MAX_PADDING: u64 = 2_048;
const CHILD_MAX_RUN: Duration = Duration::from_secs(30);
/// Bound on the parent's wait for the child's first acknowledgement.
const FIRST_ACK_TIMEOUT: Duration = Duration::from_secs(60);

/// The child: appends until killed (or its bounds), printing `ack <event id> <partition>
/// <offset>` for every record once its append returned. Each record's payload is the name
/// its event id derives from, then `|` and padding of `x`, so the parent can check every
/// stored record on its own.
/// Ignored in a normal run: it is the child process of
/// `acknowledged_appends_survive_sigkill_exactly_once`, which runs it with `--ignored`.
#[tokio::test(flavor = "multi_thread")]
#[ignore = "the child process of acknowledged_appends_survive_sigkill_exactly_once"]
async fn crash_child_appends_until_killed() {
    let dir =
        std::env::var_os(CHILD_DIR).expect("run by its parent test, which sets the directory");
    let round: u64 = std::env::var(CHILD_ROUND).unwrap().parse().unwrap();
    let log = Arc::new(EmbeddedLog::open(Path::new(&dir), PartitionCounts::default()).unwrap());
    // Libtest may have left "test … " without a newline; start on a line of our own.
    {
        let mut out = std::io::stdout().lock();
        writeln!(out).unwrap();
        out.flush().unwrap();
    }
    let deadline = Instant::now() + CHILD_MAX_RUN;
    let appenders: Vec<_> = (0..CHILD_APPENDERS)
        .map(|appender| {
            let log = log.clone();
            tokio::spawn(async move {
                let mut rng = Rng::seeded(round * 1_000 + appender);
                for batch in 0..CHILD_MAX_BATCHES {
                    if Instant::now() >= deadline {
                        break;
                    }
                    let size = rng.in_range(1..=32);
                    let records: Vec<_> = (0..size)
                        .map(|n| {
                            let name = format!("crash/{round}/{appender}/{batch}/{n}");
                            let key = format!("customer-{}", rng.in_range(0..=999));
                            // Padding of random length, so groups span sled's segments.
                            let pad = "x".repeat(rng.in_range(0..=MAX_PADDING) as usize);
                            record(key, event_id(&name), format!("{name}|{pad}"))
                        })
                        .collect();
                    let ids: Vec<Uuid> = records.iter().map(|r| r.event_id).collect();
                    let outcomes = log.append(records).await.expect("append");
                    let mut out = std::io::stdout().lock();
                    for (id, outcome) in ids.iter().zip(&outcomes) {
                        let Position { partition, offset } = outcome.position();
                        writeln!(out, "ack {id} {partition} {offset}").unwrap();
                    }
                    out.flush().unwrap();
                }
            })
        })
        .collect();
    for appender in appenders {
        appender.await.unwrap();
    }
}

/// One acknowledgement line of the child, if it is one.
fn parse_ack(line: &str) -> Option<(Uuid, Position)> {
    let mut fields = line.strip_prefix("ack ")?.split(' ');
    let id = fields.next()?.parse().ok()?;
    let partition = fields.next()?.parse().ok()?;
    let offset = fields.next()?.parse().ok()?;
    Some((id, Position { partition, offset }))
}

/// Runs one child over `dir`, kills it at a random moment after its first acknowledgement
/// and returns every acknowledgement it printed in full.
fn run_child_and_kill(dir: &Path, round: u32, rng: &mut Rng) -> Vec<(Uuid, Position)> {
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([CHILD_TEST, "--exact", "--ignored", "--nocapture"])
        .env(CHILD_DIR, dir)
        .env(CHILD_ROUND, round.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (lines, received) = mpsc::channel::<String>();
    let reader = std::thread::spawn(move || {
        let mut stdout = BufReader::new(stdout);
        let mut line = Vec::new();
        loop {
            line.clear();
            match stdout.read_until(b'\n', &mut line) {
                // A line cut by the kill is not a whole acknowledgement: leave it out.
                Ok(_) if line.last() == Some(&b'\n') => {
                    if lines
                        .send(String::from_utf8_lossy(&line).into_owned())
                        .is_err()
                    {
                        break;
                    }
                }
                _ => break,
            }
        }
    });

    // Wait (bounded) for the first acknowledgement: the child is appending from then on.
    let mut acks = Vec::new();
    let waiting = Instant::now();
    while acks.is_empty() {
        let left = FIRST_ACK_TIMEOUT.saturating_sub(waiting.elapsed());
        match received.recv_timeout(left) {
            Ok(line) => acks.extend(parse_ack(line.trim_end())),
            Err(error) => {
                let _ = child.kill();
                let status = child.wait().unwrap();
                panic!("round {round}: no acknowledgement from the child ({error:?}, {status})");
            }
        }
    }
    let delay = Duration::from_millis(rng.in_range(0..=MAX_KILL_DELAY_MS));
    // The random moment of the crash (not a synchronisation).
    std::thread::sleep(delay);
    child.kill().unwrap();
    let status = child.wait().unwrap();
    assert_eq!(
        status.signal(),
        Some(SIGKILL),
        "round {round}: the child ended by itself ({status}) instead of being killed"
    );
    reader.join().unwrap();
    acks.extend(
        received
            .try_iter()
            .filter_map(|line| parse_ack(line.trim_end())),
    );
    eprintln!(
        "round {round}: killed {delay:?} after the first acknowledgement, {} acknowledged",
        acks.len()
    );
    acks
}

/// Reopens the log and checks it against every acknowledgement so far.
async fn assert_log_is_consistent(dir: &Path, acked: &HashMap<Uuid, Position>, round: u32) {
    let log = EmbeddedLog::open(dir, PartitionCounts::default())
        .unwrap_or_else(|e| panic!("round {round}: the log does not reopen after a kill: {e}"));
    let ends = log.end_offsets(Topic::Interactions).await.unwrap();
    let mut stored: HashMap<Uuid, Position> = HashMap::new();
    let mut records = Vec::new();
    for partition in 0..PARTITIONS {
        for (index, r) in read_partition(&log, Topic::Interactions, partition, 5_000)
            .await
            .into_iter()
            .enumerate()
        {
            let position = Position {
                partition,
                offset: r.offset,
            };
            assert_eq!(r.offset, index as u64, "round {round}: offsets have a gap");
            assert_eq!(
                partition_for(&r.key, PARTITIONS),
                partition,
                "round {round}: {position:?} is in the wrong partition"
            );
            let (name, pad) = std::str::from_utf8(&r.payload)
                .ok()
                .and_then(|payload| payload.split_once('|'))
                .unwrap_or_else(|| panic!("round {round}: the payload at {position:?} is torn"));
            assert!(
                pad.bytes().all(|b| b == b'x'),
                "round {round}: the payload at {position:?} is torn"
            );
            assert_eq!(
                r.event_id,
                event_id(name),
                "round {round}: the record at {position:?} is not the one appended"
            );
            if let Some(first) = stored.insert(r.event_id, position) {
                panic!("round {round}: {name} is stored twice, at {first:?} and {position:?}");
            }
            records.push(r);
        }
    }
    for (id, position) in acked {
        assert_eq!(
            stored.get(id),
            Some(position),
            "round {round}: acknowledged event {id} is not where its append said"
        );
    }
    // The deduplication index survived with the records: every stored event is known.
    for chunk in records.chunks(1_000) {
        let batch = chunk
            .iter()
            .map(|r| {
                record(
                    String::from_utf8_lossy(&r.key),
                    r.event_id,
                    r.payload.clone(),
                )
            })
            .collect();
        let outcomes = log.append(batch).await.unwrap();
        for (r, outcome) in chunk.iter().zip(outcomes) {
            assert_eq!(
                outcome,
                AppendOutcome::Duplicate(Position {
                    partition: r.partition,
                    offset: r.offset
                }),
                "round {round}: the deduplication index lost {}",
                r.event_id
            );
        }
    }
    assert_eq!(log.end_offsets(Topic::Interactions).await.unwrap(), ends);
    eprintln!("round {round}: {} records stored", records.len());
    log.close().unwrap();
}

#[test]
fn acknowledged_appends_survive_sigkill_exactly_once() {
    let dir = tempfile::tempdir().unwrap();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut rng = Rng::from_env();
    let mut acked: HashMap<Uuid, Position> = HashMap::new();
    for round in 0..ROUNDS {
        let acks = run_child_and_kill(dir.path(), round, &mut rng);
        assert!(!acks.is_empty());
        for (id, position) in acks {
            if let Some(earlier) = acked.insert(id, position) {
                assert_eq!(earlier, position, "{id} was acknowledged at two positions");
            }
        }
        runtime.block_on(assert_log_is_consistent(dir.path(), &acked, round));
    }
}
