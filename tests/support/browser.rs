//! A headless Chromium for the console's tests, driven over the W3C WebDriver protocol
//! (plain HTTP and JSON to `chromedriver`, through the tests' own hyper client: no driver
//! crate, nothing more to compile). Chromium and chromedriver come from Debian's
//! `chromium` and `chromium-driver` packages, which `.ci/run` installs; without them the
//! test fails and says how to install them, it never passes silently.
//!
//! Every wait is bounded, and the browser runs with the background-networking features
//! off, because on a closed network their retries stall page loads.
//!
//! Included by the console tests with `#[path]`, beside `mod support`.

#![allow(dead_code)]

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine as _;
use serde_json::{Value, json};

use crate::support::Http;

/// Where Debian's packages put the browser and its driver.
pub const CHROMIUM: &str = "/usr/bin/chromium";
pub const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

/// The key WebDriver names an element reference with.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

/// Panics with what to install when the browser or its driver is missing.
pub fn require_chromium() {
    for (path, package) in [(CHROMIUM, "chromium"), (CHROMEDRIVER, "chromium-driver")] {
        assert!(
            Path::new(path).exists(),
            "{path} is missing: the console's browser tests need Debian's {package} package \
             (`apt-get install -y chromium chromium-driver`; `bash .ci/run` installs it)"
        );
    }
}

/// A chromedriver process with one browser session.
pub struct Browser {
    driver: Child,
    base: String,
    session: String,
    http: Http,
    _profile: tempfile::TempDir,
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free loopback port")
        .port()
}

/// Starts chromedriver on `port` and waits until it answers ready, still running: its
/// process and base URL; `None` if it exited (the port was taken), so the caller tries
/// another port.
async fn driver_on(port: u16, http: &Http) -> Option<(Child, String)> {
    let mut driver = Command::new(CHROMEDRIVER)
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("starting chromedriver");
    let base = format!("http://127.0.0.1:{port}");
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Ok(Some(status)) = driver.try_wait() {
            eprintln!("chromedriver exited on port {port} ({status}); starting it on another");
            return None;
        }
        if let Ok(answer) = http
            .try_send(
                "GET",
                &format!("{base}/status"),
                "application/json",
                Vec::new(),
            )
            .await
            && answer.body["value"]["ready"] == true
            && matches!(driver.try_wait(), Ok(None))
        {
            return Some((driver, base));
        }
        if Instant::now() >= deadline {
            // Stopped before the test fails: a test stops what it starts.
            let _ = driver.kill();
            let _ = driver.wait();
            panic!("chromedriver did not answer within 20 s");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

impl Browser {
    /// Starts chromedriver and a headless Chromium of `width` × `height`.
    pub async fn start(width: u32, height: u32) -> Browser {
        require_chromium();
        let http = Http::default();
        // The port is free when asked for, not necessarily when chromedriver binds it
        // (another process may take it in between): a chromedriver that exits is started
        // again on another port.
        let mut started = None;
        for _attempt in 0..5 {
            started = driver_on(free_port(), &http).await;
            if started.is_some() {
                break;
            }
        }
        let (driver, base) = started.expect("chromedriver exited at start on five ports");
        let profile = tempfile::tempdir().expect("a browser profile dir");
        let args = [
            "--headless".to_owned(),
            "--no-sandbox".to_owned(),
            "--disable-gpu".to_owned(),
            "--disable-quic".to_owned(),
            "--no-first-run".to_owned(),
            "--disable-background-networking".to_owned(),
            "--disable-component-update".to_owned(),
            "--disable-sync".to_owned(),
            "--disable-dev-shm-usage".to_owned(),
            format!("--user-data-dir={}", profile.path().display()),
            format!("--window-size={width},{height}"),
        ];
        let capabilities = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "pageLoadStrategy": "normal",
            "timeouts": {"script": 30_000, "pageLoad": 30_000, "implicit": 0},
            "goog:chromeOptions": {"binary": CHROMIUM, "args": args},
        }}});
        let mut browser = Browser {
            driver,
            base,
            session: String::new(),
            http,
            _profile: profile,
        };
        let answer = browser.raw("POST", "/session", Some(capabilities)).await;
        browser.session = answer["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no WebDriver session: {answer}"))
            .to_owned();
        browser
    }

    /// One WebDriver command; panics on a WebDriver error, with its message.
    async fn raw(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let url = format!("{}{path}", self.base);
        let body = body.map(|b| b.to_string().into_bytes()).unwrap_or_default();
        let answer = self
            .http
            .try_send(method, &url, "application/json", body)
            .await
            .unwrap_or_else(|error| panic!("WebDriver {method} {path}: {error}"));
        assert!(
            answer.status < 300,
            "WebDriver {method} {path} answered {}: {}",
            answer.status,
            answer.body
        );
        answer.body["value"].clone()
    }

    async fn command(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        self.raw(method, &format!("/session/{}{path}", self.session), body)
            .await
    }

    pub async fn goto(&self, url: &str) {
        self.command("POST", "/url", Some(json!({ "url": url })))
            .await;
    }

    pub async fn set_size(&self, width: u32, height: u32) {
        self.command(
            "POST",
            "/window/rect",
            Some(json!({"width": width, "height": height})),
        )
        .await;
    }

    /// Runs `script` (a function body; `arguments` are `args`) and returns its value.
    pub async fn eval(&self, script: &str, args: Value) -> Value {
        self.command(
            "POST",
            "/execute/sync",
            Some(json!({"script": script, "args": args})),
        )
        .await
    }

    /// Runs an asynchronous script: it calls `arguments[arguments.length - 1]` with its value.
    pub async fn eval_async(&self, script: &str, args: Value) -> Value {
        self.command(
            "POST",
            "/execute/async",
            Some(json!({"script": script, "args": args})),
        )
        .await
    }

    /// Polls `script` until it returns something other than null/false/undefined, at most
    /// `timeout`; returns that value or panics naming `what`.
    pub async fn wait_for(&self, what: &str, script: &str, timeout: Duration) -> Value {
        let deadline = Instant::now() + timeout;
        loop {
            let value = self.eval(script, json!([])).await;
            if !(value.is_null() || value == false) {
                return value;
            }
            if Instant::now() >= deadline {
                // What the page shows instead says most about why.
                let text = self
                    .eval(
                        "return location.href + '\\n' + document.body.innerText.slice(0, 3000);",
                        json!([]),
                    )
                    .await;
                panic!(
                    "the console did not show {what} within {timeout:?}; it shows:\n{}",
                    text.as_str().unwrap_or_default()
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn element(&self, css: &str) -> String {
        let found = self
            .command(
                "POST",
                "/element",
                Some(json!({"using": "css selector", "value": css})),
            )
            .await;
        found[ELEMENT]
            .as_str()
            .unwrap_or_else(|| panic!("no element {css}: {found}"))
            .to_owned()
    }

    /// Types `text` into the element `css` (after clearing it), as a user would.
    pub async fn type_into(&self, css: &str, text: &str) {
        let element = self.element(css).await;
        self.command(
            "POST",
            &format!("/element/{element}/clear"),
            Some(json!({})),
        )
        .await;
        self.command(
            "POST",
            &format!("/element/{element}/value"),
            Some(json!({ "text": text })),
        )
        .await;
    }

    pub async fn click(&self, css: &str) {
        let element = self.element(css).await;
        self.command(
            "POST",
            &format!("/element/{element}/click"),
            Some(json!({})),
        )
        .await;
    }

    /// Presses a key (a WebDriver key code such as `\u{E004}` for Tab) once.
    pub async fn press(&self, key: &str) {
        self.command(
            "POST",
            "/actions",
            Some(
                json!({"actions": [{"type": "key", "id": "keyboard", "actions": [
                    {"type": "keyDown", "value": key}, {"type": "keyUp", "value": key},
                ]}]}),
            ),
        )
        .await;
        self.command("DELETE", "/actions", None).await;
    }

    /// Saves a PNG of the viewport to `path` and returns it.
    pub async fn screenshot(&self, path: &Path) -> PathBuf {
        let encoded = self.command("GET", "/screenshot", None).await;
        let png = base64::engine::general_purpose::STANDARD
            .decode(encoded.as_str().expect("a base64 screenshot"))
            .expect("screenshot is base64");
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).expect("creating the screenshot dir");
        }
        std::fs::write(path, png).expect("writing the screenshot");
        std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf())
    }

    /// Runs axe-core (vendored in tests/fixtures/axe-core) on the page; returns the
    /// violations of impact serious or critical, as `rule: target (summary)` lines.
    pub async fn serious_accessibility_violations(&self) -> Vec<String> {
        let axe = std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/axe-core/axe.min.js"),
        )
        .expect("reading tests/fixtures/axe-core/axe.min.js");
        // Injected through WebDriver, which the page's Content-Security-Policy does not
        // govern: the console itself allows no script but its own.
        self.eval(&format!("{axe}\n;return typeof axe;"), json!([]))
            .await;
        let violations = self
            .eval_async(
                "const done = arguments[arguments.length - 1];
                 axe.run(document, {resultTypes: ['violations']})
                   .then((r) => done(r.violations
                     .filter((v) => v.impact === 'serious' || v.impact === 'critical')
                     .flatMap((v) => v.nodes.map((n) => `${v.id} (${v.impact}): ${n.target.join(' ')}: ${n.failureSummary}`))))
                   .catch((e) => done([`axe failed: ${e}`]));",
                json!([]),
            )
            .await;
        violations
            .as_array()
            .map(|all| {
                all.iter()
                    .map(|v| v.as_str().unwrap_or_default().to_owned())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Ends the session (closing the browser) and the driver.
    pub fn quit(self) {
        drop(self);
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // Chromium outlives a killed chromedriver, so the session is ended first (closing
        // the browser), synchronously, since a failed test drops the browser mid-await.
        if !self.session.is_empty() {
            use std::io::{Read as _, Write as _};
            let address = self.base.trim_start_matches("http://").to_owned();
            if let Ok(mut stream) = std::net::TcpStream::connect(&address) {
                let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
                let _ = write!(
                    stream,
                    "DELETE /session/{} HTTP/1.1\r\nHost: {address}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                    self.session
                );
                let mut ignored = Vec::new();
                let _ = stream.read_to_end(&mut ignored);
            }
        }
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

/// Where the console's screenshots go: `target/console-screenshots/`.
pub fn screenshot_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/console-screenshots")
}
