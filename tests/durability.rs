//! Acknowledged means synced: under `strace`, every `202` that `omnilog serve` writes for
//! `POST /v1/events` comes after a write to a segment file of its log and an `fdatasync` of
//! that file that completed before the answer started. Requests are sent one at a time, so
//! the write and the sync between two answers can only be the ones of the later request.
//!
//! What this sees is the order of system calls, which is what a power cut respects: the
//! SIGKILL tests cannot tell a page-cache write from a synced one, this test can. It needs
//! `strace` (`.ci/run` installs it).
#![cfg(target_os = "linux")]

mod support;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::json;
use support::{Http, Server};

const REQUESTS: usize = 40;

fn event(n: usize) -> serde_json::Value {
    json!([{
        "source": "durability-test",
        "source_event_id": format!("n{n}"),
        "occurred_at": "2026-03-02T09:00:00Z",
        "customer": {"handles": [{"kind": "phone", "value": format!("+1555000{n:04}")}]},
        "interaction_id": format!("call-{n}"),
        "channel": "voice",
        "type": "interaction_started",
        "direction": "inbound"
    }])
}

/// One line of the trace, reduced to what the check needs.
#[derive(Debug, PartialEq, Eq)]
enum Seen {
    /// A write into a segment of the log began (its line is printed at entry or exit,
    /// either way after it began).
    SegmentWrite,
    /// An fdatasync or fsync of a segment file returned.
    SegmentSynced,
    /// An answer `202 Accepted` began to be written to a socket.
    Accepted,
}

/// Reads the trace in order. A sync interrupted by another thread's call shows as two
/// lines, `PID fdatasync(FD</path> <unfinished ...>` and later `PID <... fdatasync resumed>)
/// = 0`: it counts when it returns, and only if it was a segment's.
fn classify(text: &str) -> Vec<Seen> {
    let mut seen = Vec::new();
    let mut pending_segment_syncs = std::collections::HashSet::new();
    for line in text.lines() {
        let (pid, call) = line.split_once(' ').unwrap_or(("", line));
        let call = call.trim_start();
        // `-y` prints each descriptor with its path: `pwrite64(7</tmp/…/log/0000000001.seg>, …`.
        let on_segment = call.contains(".seg>");
        let sync = call.starts_with("fdatasync(") || call.starts_with("fsync(");
        if on_segment && (call.starts_with("pwrite64(") || call.starts_with("pwritev(")) {
            seen.push(Seen::SegmentWrite);
        } else if on_segment && sync && call.contains("<unfinished") {
            pending_segment_syncs.insert(pid.to_owned());
        } else if call.ends_with("= 0") && {
            let resumed = call.starts_with("<... fdatasync resumed>")
                || call.starts_with("<... fsync resumed>");
            (on_segment && sync) || (resumed && pending_segment_syncs.remove(pid))
        } {
            seen.push(Seen::SegmentSynced);
        } else if (call.starts_with("write(")
            || call.starts_with("writev(")
            || call.starts_with("sendto(")
            || call.starts_with("sendmsg("))
            && call.contains("HTTP/1.1 202")
        {
            seen.push(Seen::Accepted);
        }
    }
    seen
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_202_follows_an_fdatasync_of_the_segment_holding_its_events() {
    assert!(
        Command::new("strace").arg("-V").output().is_ok(),
        "strace is needed (apt-get install strace; .ci/run installs it)"
    );
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let server = Server::start(&data, &[]);
    let http = Http::default();
    // One request before tracing, so the segment is open and the projectors idle.
    http.post_events(&server, &event(0)).await;

    let trace = dir.path().join("trace.txt");
    // -f: every thread; -y: paths of descriptors; -s: enough of a buffer to see the status line.
    let mut strace = Command::new("strace")
        .args(["-f", "-y", "-s", "24", "-e"])
        .arg("trace=pwrite64,pwritev,fdatasync,fsync,write,writev,sendto,sendmsg")
        .arg("-o")
        .arg(&trace)
        .arg("-p")
        .arg(server.child.id().to_string())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starting strace");
    // strace says so on stderr once it is attached to the server's threads.
    let stderr = strace.stderr.take().unwrap();
    let (attached, receive) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if line.contains("attached") {
                let _ = attached.send(());
            }
        }
    });
    receive
        .recv_timeout(Duration::from_secs(30))
        .expect("strace did not attach within 30 s");
    // Attaching to every thread takes a moment after the first one.
    tokio::time::sleep(Duration::from_millis(500)).await;

    for n in 1..=REQUESTS {
        let answer = http.post_events(&server, &event(n)).await;
        assert_eq!(answer["accepted"], 1, "{answer}");
    }
    server.stop();
    // The traced process is gone; strace ends with it (bounded wait).
    support::wait_exit(
        &mut strace,
        "strace (ending with the server)",
        Duration::from_secs(30),
    );

    let text = std::fs::read_to_string(&trace).unwrap();
    let seen = classify(&text);
    let accepted = seen.iter().filter(|s| **s == Seen::Accepted).count();
    assert!(
        accepted >= REQUESTS,
        "the trace shows {accepted} answers 202, fewer than the {REQUESTS} requests sent: is it tracing the server?\n{}",
        &text[..text.len().min(4_000)]
    );
    // Between two answers (from the start of tracing to the first), the later request's
    // events must have been written to a segment and that segment synced.
    let mut wrote = false;
    let mut synced_after_write = false;
    let mut checked = 0;
    for step in &seen {
        match step {
            Seen::SegmentWrite => {
                wrote = true;
                synced_after_write = false;
            }
            Seen::SegmentSynced if wrote => synced_after_write = true,
            Seen::SegmentSynced => {}
            Seen::Accepted => {
                assert!(
                    wrote && synced_after_write,
                    "answer {} (202) was written before its events were synced to a segment (wrote: {wrote}, synced after: {synced_after_write})",
                    checked + 1
                );
                checked += 1;
                wrote = false;
                synced_after_write = false;
            }
        }
    }
    assert_eq!(checked, accepted);
}
