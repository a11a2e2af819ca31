//! Issue 16, finding 5, against the real binary: a full disk needs no restart, and the
//! tools that read a data dir (`export`, `inspect`, `replay`) work on a read-only one.
//!
//! The full disk is a file-size limit (`RLIMIT_FSIZE`) lowered on the running server with
//! `prlimit` and raised again: the kernel then refuses the log's writes past the limit
//! (`EFBIG`) exactly where a full disk refuses them (`ENOSPC`), on the same write path, with
//! no root and no small file system to mount. (The server is started with `SIGXFSZ`
//! ignored, as the shell's `trap '' XFSZ` leaves it across `exec`: otherwise the kernel
//! kills a process that writes past its limit.) What a full disk does to a sync or to the
//! start of a segment is injected in the log crate's own tests (`crates/log/tests/
//! full_disk.rs`), where no kernel limit reaches.
//!
//! The read-only data dir is a read-only bind mount when the test runs as root (root
//! ignores file modes), and `chmod -R a-w` otherwise: either way any attempt to create or
//! write a file there fails, so a command that succeeds wrote nothing. With `strace` at
//! hand, the commands are also traced, and no open of a data-dir file for writing (nor any
//! creation, removal or renaming there) may appear even as a failed attempt. The data dir's
//! files are compared before and after, byte for byte.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::{Value, json};
use support::{BINARY, Http, Server, wait_ready};

/// `omnilog serve` started through `sh` with `SIGXFSZ` ignored, so a file-size limit makes
/// writes fail instead of killing it; its log goes to `stderr.log` in `logs`.
struct LimitedServer {
    child: Child,
    base: String,
}

impl LimitedServer {
    fn start(data_dir: &Path, logs: &Path) -> Self {
        let stderr = std::fs::File::create(logs.join("stderr.log")).unwrap();
        let mut child = Command::new("sh")
            .args(["-c", "trap '' XFSZ; exec \"$0\" \"$@\""])
            .arg(BINARY)
            .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(data_dir)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .expect("starting omnilog serve through sh");
        let stdout = child.stdout.take().unwrap();
        let (found, receive) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(url) = line.strip_prefix("omnilog listening on ") {
                    let _ = found.send(url.trim().to_owned());
                }
            }
        });
        let base = receive
            .recv_timeout(Duration::from_secs(60))
            .expect("the server did not say where it listens within 60 s");
        LimitedServer { child, base }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Sets the soft file-size limit of the running server (`None`: no limit).
    fn limit_file_size(&self, bytes: Option<u64>) {
        let limit = bytes.map_or_else(|| "unlimited".to_owned(), |b| b.to_string());
        let status = Command::new("prlimit")
            .args(["--pid", &self.child.id().to_string()])
            .arg(format!("--fsize={limit}:"))
            .status()
            .expect("running prlimit (util-linux)");
        assert!(status.success(), "prlimit failed: {status}");
    }

    /// SIGTERM, then waits (bounded) for it to exit.
    fn stop(mut self) {
        let pid = self.child.id().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        support::wait_exit(&mut self.child, "the server", Duration::from_secs(30));
    }
}

impl Drop for LimitedServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn events(from: usize, count: usize) -> Value {
    Value::Array(
        (from..from + count)
            .map(|i| {
                json!({
                    "source": "disk-test",
                    "source_event_id": format!("e{i}"),
                    "occurred_at": "2026-03-02T09:00:00Z",
                    "customer": {"handles": [{"kind": "phone", "value": format!("+1555{i:07}")}]},
                    "interaction_id": format!("chat-{i}"),
                    "channel": "chat",
                    "type": "message",
                    "direction": "inbound",
                    "author": "customer",
                    "text": "x".repeat(200),
                })
            })
            .collect(),
    )
}

fn segment_bytes(data_dir: &Path) -> u64 {
    std::fs::read_dir(data_dir.join("log"))
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|e| e == "seg"))
        .map(|path| std::fs::metadata(path).unwrap().len())
        .sum()
}

/// The `source_event_id`s `omnilog export` finds in a data dir, each with how often.
fn exported(data_dir: &Path) -> BTreeMap<String, usize> {
    let output = Command::new(BINARY)
        .args(["export", "--data-dir"])
        .arg(data_dir)
        .env("RUST_LOG", "warn")
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "export failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let mut found = BTreeMap::new();
    for line in String::from_utf8(output.stdout).unwrap().lines() {
        let event: Value = serde_json::from_str(line).unwrap();
        *found
            .entry(event["source_event_id"].as_str().unwrap().to_owned())
            .or_insert(0) += 1;
    }
    found
}

#[tokio::test]
async fn a_full_disk_refuses_writes_with_retry_after_and_the_next_write_once_there_is_room_succeeds()
 {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("data");
    let server = LimitedServer::start(&data_dir, dir.path());
    let http = Http::default();
    let url = server.url("/v1/events");
    let post = |body: Value| {
        let (http, url) = (http.clone(), url.clone());
        async move {
            http.send(
                "POST",
                &url,
                "application/json",
                body.to_string().into_bytes(),
            )
            .await
        }
    };
    let mut acknowledged = BTreeSet::new();
    for batch in 0..3 {
        let answer = post(events(batch * 20, 20)).await;
        assert_eq!(answer.status, 202, "{:?}", answer.body);
        acknowledged.extend((batch * 20..batch * 20 + 20).map(|i| format!("e{i}")));
    }

    // The disk fills up: 100 bytes of room left in the log, less than a request's frame.
    let before = segment_bytes(&data_dir);
    server.limit_file_size(Some(before + 100));
    for attempt in 0..5 {
        let answer = post(events(100, 20)).await;
        assert_eq!(answer.status, 503, "attempt {attempt}: {:?}", answer.body);
        assert_eq!(answer.content_type, "application/problem+json");
        assert!(answer.retry_after.is_some(), "503 without Retry-After");
        let detail = answer.body["detail"].as_str().unwrap_or_default();
        assert!(
            detail.contains("nothing of this request was written"),
            "{detail}"
        );
        assert!(
            !detail.contains("os error") && !detail.contains("File too large"),
            "internals in the answer: {detail}"
        );
        // What part of the frame fit was cut off again.
        assert_eq!(segment_bytes(&data_dir), before, "attempt {attempt}");
    }

    // Room again: the very request that was refused is accepted, as new, without a restart.
    server.limit_file_size(None);
    let answer = post(events(100, 20)).await;
    assert_eq!(answer.status, 202, "{:?}", answer.body);
    assert_eq!(answer.body["accepted"], 20, "{:?}", answer.body);
    acknowledged.extend((100..120).map(|i| format!("e{i}")));
    let answer = post(events(200, 5)).await;
    assert_eq!(answer.status, 202, "{:?}", answer.body);
    acknowledged.extend((200..205).map(|i| format!("e{i}")));
    server.stop();

    // Every acknowledged event is in the log once, and nothing else is.
    let found = exported(&data_dir);
    assert_eq!(
        found.keys().cloned().collect::<BTreeSet<_>>(),
        acknowledged,
        "the log holds other events than those acknowledged"
    );
    assert!(found.values().all(|&n| n == 1), "an event stored twice");
}

/// Every file under `dir` with its length, modification time and bytes.
fn snapshot(dir: &Path) -> BTreeMap<PathBuf, (u64, std::time::SystemTime, Vec<u8>)> {
    let mut files = BTreeMap::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(at) = pending.pop() {
        for entry in std::fs::read_dir(&at).unwrap() {
            let path = entry.unwrap().path();
            let metadata = std::fs::symlink_metadata(&path).unwrap();
            if metadata.is_dir() {
                pending.push(path);
            } else {
                let bytes = std::fs::read(&path).unwrap();
                files.insert(path, (metadata.len(), metadata.modified().unwrap(), bytes));
            }
        }
    }
    files
}

/// A data dir made read-only for as long as it lives.
enum ReadOnly {
    /// A read-only bind mount of the data dir at this path (as root).
    Mount(PathBuf),
    /// The data dir itself, its write permissions taken away (not root).
    Modes(PathBuf),
}

impl ReadOnly {
    fn make(data_dir: &Path, scratch: &Path) -> Self {
        let uid = Command::new("id").arg("-u").output().unwrap();
        let root = String::from_utf8_lossy(&uid.stdout).trim() == "0";
        if !root {
            let status = Command::new("chmod")
                .args(["-R", "a-w"])
                .arg(data_dir)
                .status()
                .unwrap();
            assert!(status.success());
            return ReadOnly::Modes(data_dir.to_path_buf());
        }
        let at = scratch.join("read-only");
        std::fs::create_dir_all(&at).unwrap();
        let bound = Command::new("mount")
            .arg("--bind")
            .arg(data_dir)
            .arg(&at)
            .status()
            .unwrap();
        assert!(
            bound.success(),
            "running as root without the right to mount: cannot make a read-only data dir here"
        );
        let read_only = ReadOnly::Mount(at.clone());
        let remounted = Command::new("mount")
            .args(["-o", "remount,bind,ro"])
            .arg(&at)
            .status()
            .unwrap();
        assert!(remounted.success(), "could not remount read-only");
        read_only
    }

    fn path(&self) -> &Path {
        match self {
            ReadOnly::Mount(path) | ReadOnly::Modes(path) => path,
        }
    }

    /// Whether writing there really fails.
    fn refuses_writes(&self) -> bool {
        std::fs::write(self.path().join("probe"), b"x").is_err()
    }
}

impl Drop for ReadOnly {
    fn drop(&mut self) {
        match self {
            ReadOnly::Mount(path) => {
                let _ = Command::new("umount").arg(&*path).status();
            }
            ReadOnly::Modes(path) => {
                let _ = Command::new("chmod")
                    .args(["-R", "u+w"])
                    .arg(&*path)
                    .status();
            }
        }
    }
}

/// Runs `omnilog args…`, under `strace` when there is one; returns its stdout and what the
/// trace shows it tried to change under `watched` (empty without strace).
fn run_traced(args: &[&str], watched: &Path, trace: &Path) -> (String, Vec<String>) {
    let traced = Command::new("strace").arg("-V").output().is_ok();
    let mut command = if traced {
        let mut command = Command::new("strace");
        command
            .args(["-f", "-qq", "-o"])
            .arg(trace)
            .args([
                "-e",
                // Links made elsewhere to the data dir's files (the view store's mirror)
                // name it too, but write nothing there: they are not traced.
                "trace=open,openat,openat2,creat,mkdir,mkdirat,unlink,unlinkat,rename,renameat,renameat2,truncate",
            ])
            .arg(BINARY);
        command
    } else {
        eprintln!(
            "no strace here: the read-only mount or modes alone prove the commands write nothing"
        );
        Command::new(BINARY)
    };
    let output = command.args(args).env("RUST_LOG", "warn").output().unwrap();
    assert!(
        output.status.success(),
        "omnilog {args:?} failed on a read-only data dir: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let mut attempts = Vec::new();
    if traced {
        let watched = watched.to_string_lossy();
        for line in std::fs::read_to_string(trace).unwrap().lines() {
            if !line.contains(&*watched) {
                continue;
            }
            let opens = line.contains("open");
            let writes = ["O_WRONLY", "O_RDWR", "O_CREAT", "O_TRUNC"]
                .iter()
                .any(|flag| line.contains(flag));
            // Opening to read is fine; any other traced call there changes the data dir.
            if writes || !opens {
                attempts.push(line.to_owned());
            }
        }
    }
    (String::from_utf8(output.stdout).unwrap(), attempts)
}

#[tokio::test]
async fn export_inspect_and_replay_work_on_a_read_only_data_dir_and_change_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("data");
    let http = Http::default();
    let server = Server::start(&data_dir, &[]);
    let answer = http
        .send(
            "POST",
            &server.url("/v1/events"),
            "application/json",
            events(0, 30).to_string().into_bytes(),
        )
        .await;
    assert_eq!(answer.status, 202, "{:?}", answer.body);
    wait_ready(&http, &server).await;
    // While the server runs, its view store is held: inspect says so, and only then.
    let (inspected, attempts) = run_traced(
        &["inspect", "--data-dir", data_dir.to_str().unwrap()],
        &data_dir,
        &dir.path().join("running.trace"),
    );
    assert!(
        inspected.contains("held by a running server"),
        "{inspected}"
    );
    assert!(attempts.is_empty(), "inspect tried to write: {attempts:#?}");
    server.stop();

    let before = snapshot(&data_dir);
    let read_only = ReadOnly::make(&data_dir, dir.path());
    assert!(
        read_only.refuses_writes(),
        "the data dir still takes writes"
    );
    let ro = read_only.path().to_str().unwrap().to_owned();

    let (out, attempts) = run_traced(
        &["export", "--data-dir", &ro],
        read_only.path(),
        &dir.path().join("export.trace"),
    );
    assert_eq!(out.lines().count(), 30);
    assert!(attempts.is_empty(), "export tried to write: {attempts:#?}");

    let (out, attempts) = run_traced(
        &["inspect", "--data-dir", &ro],
        read_only.path(),
        &dir.path().join("inspect.trace"),
    );
    assert!(attempts.is_empty(), "inspect tried to write: {attempts:#?}");
    let inspected: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(inspected["log"]["omnilog.interactions"]["records"], 30);
    let views = inspected["views"].as_array().expect("the views part");
    assert!(!views.is_empty(), "{inspected}");
    for view in views {
        assert_eq!(view["events_applied"], 30, "{view}");
        assert_eq!(view["sha256"].as_str().map(str::len), Some(64), "{view}");
    }

    let replayed = dir.path().join("replayed");
    let (_, attempts) = run_traced(
        &[
            "replay",
            "--data-dir",
            &ro,
            "--out",
            replayed.to_str().unwrap(),
        ],
        read_only.path(),
        &dir.path().join("replay.trace"),
    );
    assert!(attempts.is_empty(), "replay tried to write: {attempts:#?}");
    assert!(replayed.join("views").is_dir());

    drop(read_only);
    assert!(
        snapshot(&data_dir) == before,
        "the data dir's files changed"
    );
}

#[test]
fn inspect_names_no_running_server_when_the_view_store_is_unreadable_for_another_reason() {
    let dir = tempfile::tempdir().unwrap();
    let views = dir.path().join("views");
    std::fs::create_dir_all(&views).unwrap();
    // A directory that holds no view store at all.
    std::fs::write(views.join("notes.txt"), b"not a store").unwrap();
    let output = Command::new(BINARY)
        .args(["inspect", "--data-dir"])
        .arg(dir.path())
        .env("RUST_LOG", "warn")
        .output()
        .unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(!output.status.success(), "{said}");
    assert!(said.contains("holds no view store"), "{said}");
    assert!(!said.contains("running"), "a misleading hint: {said}");
}
