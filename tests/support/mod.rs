//! What the end-to-end tests share: starting the real `omnilog` binary on a free loopback
//! port and a temporary data dir, talking HTTP to it, and stopping it (gracefully or with
//! SIGKILL). Every wait is bounded in time, so a broken server fails a test instead of
//! hanging it.

#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::{Value, json};

pub const BINARY: &str = env!("CARGO_BIN_EXE_omnilog");

/// A running `omnilog serve`.
pub struct Server {
    pub child: Child,
    pub base: String,
    pub data_dir: PathBuf,
}

impl Server {
    /// Starts `omnilog serve` (plus `extra` flags) on `data_dir`, port chosen by the OS.
    pub fn start(data_dir: &Path, extra: &[&str]) -> Server {
        Server::start_command("serve", data_dir, extra)
    }

    /// Starts `omnilog <command>` (a server command: serve, ingest-server, projector).
    pub fn start_command(command: &str, data_dir: &Path, extra: &[&str]) -> Server {
        let mut child = Command::new(BINARY)
            .arg(command)
            .arg("--data-dir")
            .arg(data_dir)
            .args(["--listen", "127.0.0.1:0"])
            .args(extra)
            // Readiness judged strictly (the views at the log's end at every probe), so
            // [`wait_ready`] is a barrier: every view folded every write answered before
            // it. Through the environment, so a test's own `--ready-max-lag-secs` wins.
            .env("OMNILOG_READY_MAX_LAG_SECS", "0")
            // OMNILOG_TEST_SERVER_LOG (e.g. `info`) makes the servers say more when a
            // test needs to be understood.
            .env(
                "RUST_LOG",
                std::env::var("OMNILOG_TEST_SERVER_LOG").unwrap_or_else(|_| "warn".to_owned()),
            )
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("starting omnilog serve");
        let stdout = child.stdout.take().expect("the server's stdout");
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
        Server {
            child,
            base,
            data_dir: data_dir.to_path_buf(),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// SIGKILL: no shutdown code runs.
    pub fn kill(mut self) {
        self.child.kill().expect("SIGKILL");
        self.child.wait().expect("reaping the server");
    }

    /// SIGTERM, then waits (bounded) for a clean exit.
    pub fn stop(mut self) {
        let pid = self.child.id().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        let status = wait_exit(&mut self.child, "the server", Duration::from_secs(30));
        assert!(status.success(), "omnilog serve exited with {status}");
    }
}

/// Waits for `child` to exit, for at most `limit`; panics naming `what` past it.
#[allow(dead_code)] // Each test binary compiles this module; not all of them call it.
pub fn wait_exit(child: &mut Child, what: &str, limit: Duration) -> std::process::ExitStatus {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().expect("waiting for a child process") {
            return status;
        }
        assert!(
            Instant::now() < deadline,
            "{what} did not stop within {limit:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs the binary to completion and returns its stdout; panics on failure.
pub fn run(args: &[&str]) -> String {
    let output = Command::new(BINARY)
        .args(args)
        .env("RUST_LOG", "warn")
        .output()
        .expect("running omnilog");
    assert!(
        output.status.success(),
        "omnilog {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).expect("utf-8 output")
}

/// An HTTP answer.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub content_type: String,
    pub retry_after: Option<String>,
    pub body: Value,
}

/// A small HTTP client for the tests.
#[derive(Clone)]
pub struct Http {
    client: Client<HttpConnector, Full<Bytes>>,
}

impl Default for Http {
    fn default() -> Self {
        Http {
            client: Client::builder(TokioExecutor::new()).build_http(),
        }
    }
}

impl Http {
    pub async fn send(&self, method: &str, url: &str, content_type: &str, body: Vec<u8>) -> Answer {
        self.try_send(method, url, content_type, body)
            .await
            .unwrap_or_else(|error| panic!("{method} {url}: {error}"))
    }

    /// Like [`Http::send`], but a lost connection is an error, not a panic.
    pub async fn try_send(
        &self,
        method: &str,
        url: &str,
        content_type: &str,
        body: Vec<u8>,
    ) -> Result<Answer, String> {
        let request = hyper::Request::builder()
            .method(method)
            .uri(url)
            .header("content-type", content_type)
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| e.to_string())?;
        let response = tokio::time::timeout(Duration::from_secs(30), self.client.request(request))
            .await
            .map_err(|_| "no answer within 30 s".to_owned())?
            .map_err(|e| e.to_string())?;
        let status = response.status().as_u16();
        let content_type = response
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned();
        let retry_after = response
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let bytes = response
            .into_body()
            .collect()
            .await
            .map_err(|e| e.to_string())?
            .to_bytes();
        let body = serde_json::from_slice(&bytes)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()));
        Ok(Answer {
            status,
            content_type,
            retry_after,
            body,
        })
    }

    pub async fn get(&self, url: &str) -> Answer {
        self.send("GET", url, "application/json", Vec::new()).await
    }

    /// Posts canonical events; asserts 202 and returns the answer.
    pub async fn post_events(&self, server: &Server, events: &Value) -> Value {
        let answer = self
            .send(
                "POST",
                &server.url("/v1/events"),
                "application/json",
                events.to_string().into_bytes(),
            )
            .await;
        assert_eq!(answer.status, 202, "{:?}", answer.body);
        answer.body
    }
}

/// Waits until every view has folded the whole log (`/readyz`, strict on test servers: see
/// [`Server::start_command`]).
pub async fn wait_ready(http: &Http, server: &Server) {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        if http.get(&server.url("/readyz")).await.status == 200 {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the views did not catch up within 120 s"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A canonical interaction event as a producer posts it (`source` `test`), its
/// `source_event_id` made of its interaction, type and time; `extra` adds the fields of its
/// type.
pub fn interaction_event(
    interaction: &str,
    channel: &str,
    handle: (&str, &str),
    at: &str,
    kind: &str,
    extra: Value,
) -> Value {
    let mut event = json!({
        "source": "test",
        "source_event_id": format!("{interaction}:{kind}:{at}"),
        "occurred_at": at,
        "customer": {"handles": [{"kind": handle.0, "value": handle.1}]},
        "interaction_id": interaction,
        "channel": channel,
        "type": kind,
    });
    if let (Some(target), Some(fields)) = (event.as_object_mut(), extra.as_object()) {
        for (key, value) in fields {
            target.insert(key.clone(), value.clone());
        }
    }
    event
}

/// An HTTP answer with its headers and raw body (for answers that may not be JSON, and for
/// checking headers such as `Allow`).
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: hyper::HeaderMap,
    pub body: Vec<u8>,
}

impl Reply {
    /// The `Content-Type` header, or "".
    pub fn content_type(&self) -> &str {
        self.headers
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }

    /// The body as JSON (`Null` when it is not JSON).
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }
}

impl Http {
    /// Sends any request: a method of any name, any headers (values as raw bytes, so they
    /// may be invalid UTF-8), any body. A lost connection or no answer within 30 s is an
    /// error, not a panic.
    pub async fn request(
        &self,
        method: &str,
        url: &str,
        headers: &[(&str, &[u8])],
        body: Vec<u8>,
    ) -> Result<Reply, String> {
        let mut request = hyper::Request::builder().method(method).uri(url);
        for (name, value) in headers {
            request = request.header(
                *name,
                hyper::header::HeaderValue::from_bytes(value).map_err(|e| e.to_string())?,
            );
        }
        let request = request
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| e.to_string())?;
        let response = tokio::time::timeout(Duration::from_secs(30), self.client.request(request))
            .await
            .map_err(|_| "no answer within 30 s".to_owned())?
            .map_err(|e| e.to_string())?;
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let body = tokio::time::timeout(Duration::from_secs(30), response.into_body().collect())
            .await
            .map_err(|_| "no whole body within 30 s".to_owned())?
            .map_err(|e| e.to_string())?
            .to_bytes()
            .to_vec();
        Ok(Reply {
            status,
            headers,
            body,
        })
    }
}

/// Memory of a process as Linux reports it (`/proc/<pid>/status`), in KiB: resident now
/// (`VmRSS`), of it the anonymous part (`RssAnon`: the heap and stacks, not the pages of
/// the binary and libraries), and the peak resident so far (`VmHWM`).
#[derive(Clone, Copy, Debug)]
pub struct Memory {
    pub rss_kib: u64,
    pub anon_kib: u64,
    pub peak_kib: u64,
}

/// The memory of process `pid`; panics when it cannot be read (the process is gone).
pub fn memory_of(pid: u32) -> Memory {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_else(|e| panic!("reading /proc/{pid}/status: {e}"));
    let field = |name: &str| {
        status
            .lines()
            .find_map(|line| line.strip_prefix(name))
            .and_then(|rest| {
                rest.trim()
                    .trim_end_matches("kB")
                    .trim()
                    .parse::<u64>()
                    .ok()
            })
            .unwrap_or_else(|| panic!("no {name} in /proc/{pid}/status"))
    };
    Memory {
        rss_kib: field("VmRSS:"),
        anon_kib: field("RssAnon:"),
        peak_kib: field("VmHWM:"),
    }
}

/// The anonymous resident size of process `pid` (KiB, [`Memory::anon_kib`]) once it is
/// under `bound_kib`, or after `within` if it never gets there. A server keeps memory it
/// freed for a while before giving it back (jemalloc's decay: a second, see
/// `crates/omnilog/src/allocator.rs`; ten by jemalloc's default): a leak is memory that
/// does not come back, so a check of growth gives it that long. The
/// binary's own pages are left out: a debug build's code, paged in as a test reaches more
/// of it, was about 23 MB of `tests/hostile.rs`'s server's growth (its `/proc/PID/smaps`),
/// and no leak.
pub async fn heap_settled_under(pid: u32, bound_kib: u64, within: Duration) -> u64 {
    let deadline = Instant::now() + within;
    loop {
        let rss = memory_of(pid).anon_kib;
        if rss < bound_kib || Instant::now() >= deadline {
            return rss;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// How many records the log holds, as the server reports it (`GET /v1/views`, with
/// `token` as the bearer token if given): per topic and partition the end of the log the
/// views report, the largest where they differ, summed.
pub async fn log_records(http: &Http, server: &Server, token: Option<&str>) -> u64 {
    let bearer = token.map(|token| format!("Bearer {token}"));
    let headers: Vec<(&str, &[u8])> = bearer
        .iter()
        .map(|bearer| ("authorization", bearer.as_bytes()))
        .collect();
    let views = http
        .request("GET", &server.url("/v1/views"), &headers, Vec::new())
        .await
        .expect("GET /v1/views");
    assert_eq!(
        views.status,
        200,
        "{:?}",
        String::from_utf8_lossy(&views.body)
    );
    let views = views.json();
    let mut ends = std::collections::BTreeMap::<(String, u64), u64>::new();
    for view in views["views"].as_array().expect("a list of views") {
        for partition in view["partitions"].as_array().expect("partitions") {
            let key = (
                partition["topic"].as_str().unwrap_or_default().to_owned(),
                partition["partition"].as_u64().unwrap_or_default(),
            );
            let end = partition["end"].as_u64().unwrap_or_default();
            let known = ends.entry(key).or_default();
            *known = (*known).max(end);
        }
    }
    ends.values().sum()
}
