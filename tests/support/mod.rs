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
            .env("RUST_LOG", "warn")
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
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = self.child.try_wait().expect("waiting for the server") {
                assert!(status.success(), "omnilog serve exited with {status}");
                return;
            }
            assert!(
                Instant::now() < deadline,
                "the server did not stop within 30 s"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
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

/// Waits until every view has folded the whole log (`/readyz`).
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
