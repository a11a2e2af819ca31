//! The console in a real browser (headless Chromium over WebDriver) against the real
//! binary: each page shows what the API answers for a known history (a customer's
//! timeline found by phone number, every queue's waiting count, a report's offered and
//! ASA per channel, each view's lag), an event posted during the test appears on the
//! wallboard and on the customer page within 2 s, keyboard alone reaches every control,
//! axe-core finds no serious or critical violation at 1280 px and 390 px, and nothing
//! scrolls sideways at either width. With tokens configured the console asks for one,
//! keeps it out of the URL and shows what its scopes allow. Screenshots of every page go
//! to target/console-screenshots/ (printed).

#[path = "support/browser.rs"]
mod browser;
mod support;

use std::time::{Duration, Instant};

use browser::{Browser, screenshot_dir};
use chrono::{DateTime, SecondsFormat, TimeDelta, Utc};
use serde_json::{Value, json};
use support::{Http, Server};

const PHONE: &str = "+15550001111";
const WIDE: (u32, u32) = (1280, 900);
const NARROW: (u32, u32) = (390, 844);
/// How long the console may take to show an event posted while it is open.
const LIVE: Duration = Duration::from_secs(2);
/// How long a page may take to first show its data.
const LOAD: Duration = Duration::from_secs(15);

fn at(time: DateTime<Utc>) -> String {
    time.to_rfc3339_opts(SecondsFormat::Secs, true)
}

fn event(
    interaction: &str,
    channel: &str,
    phone: &str,
    time: DateTime<Utc>,
    kind: &str,
    extra: Value,
) -> Value {
    support::interaction_event(
        interaction,
        channel,
        ("phone", phone),
        &at(time),
        kind,
        extra,
    )
}

fn agent(id: &str, state: &str, time: DateTime<Utc>) -> Value {
    json!({
        "source": "console-test",
        "source_event_id": format!("{id}:{state}:{}", at(time)),
        "occurred_at": at(time),
        "type": "agent_state",
        "agent_id": id,
        "state": state,
        "skills": ["billing", "support"],
        "capacity": {"voice": 1, "chat": 2},
    })
}

/// A morning at a small desk: Alice calls (answered in 12 s, not resolved), continues on
/// chat an hour later (resolved, CSAT 5); Bob's call and Carol's chat still wait.
fn history(now: DateTime<Utc>) -> Vec<Value> {
    let t0 = now - TimeDelta::hours(3);
    let s = TimeDelta::seconds;
    let mut events = vec![
        agent("agent-ann", "available", t0 - s(600)),
        agent("agent-ben", "busy", t0 - s(600)),
        agent("agent-cat", "away", t0 - s(600)),
    ];
    let mut alice =
        |interaction: &str, channel: &str, offset: TimeDelta, kind: &str, extra: Value| {
            events.push(event(interaction, channel, PHONE, t0 + offset, kind, extra));
        };
    alice(
        "call-1",
        "voice",
        s(0),
        "interaction_started",
        json!({"direction": "inbound"}),
    );
    alice(
        "call-1",
        "voice",
        s(5),
        "queued",
        json!({"queue": "billing", "skills": ["billing"]}),
    );
    alice(
        "call-1",
        "voice",
        s(17),
        "assigned",
        json!({"agent_id": "agent-ann"}),
    );
    alice(
        "call-1",
        "voice",
        s(60),
        "note",
        json!({"agent_id": "agent-ann", "text": "Wants a refund for March"}),
    );
    alice("call-1", "voice", s(120), "ended", json!({}));
    alice(
        "call-1",
        "voice",
        s(150),
        "wrapped_up",
        json!({"agent_id": "agent-ann", "resolved": false, "topics": ["refund"]}),
    );
    alice(
        "chat-1",
        "chat",
        s(3600),
        "interaction_started",
        json!({"direction": "inbound", "subject": "my refund"}),
    );
    alice(
        "chat-1",
        "chat",
        s(3601),
        "message",
        json!({"direction": "inbound", "author": "customer", "text": "Any news on my refund?"}),
    );
    alice(
        "chat-1",
        "chat",
        s(3602),
        "queued",
        json!({"queue": "support", "skills": ["support"]}),
    );
    alice(
        "chat-1",
        "chat",
        s(3632),
        "assigned",
        json!({"agent_id": "agent-ann"}),
    );
    alice("chat-1", "chat", s(3900), "ended", json!({}));
    alice(
        "chat-1",
        "chat",
        s(3930),
        "wrapped_up",
        json!({"agent_id": "agent-ann", "resolved": true, "topics": ["refund"]}),
    );
    alice("chat-1", "chat", s(3940), "csat", json!({"score": 5}));
    events.extend([
        event(
            "call-2",
            "voice",
            "+15550002222",
            now - s(120),
            "interaction_started",
            json!({"direction": "inbound"}),
        ),
        event(
            "call-2",
            "voice",
            "+15550002222",
            now - s(117),
            "queued",
            json!({"queue": "billing", "skills": ["billing"]}),
        ),
        event(
            "chat-2",
            "chat",
            "+15550003333",
            now - s(60),
            "interaction_started",
            json!({"direction": "inbound"}),
        ),
        event(
            "chat-2",
            "chat",
            "+15550003333",
            now - s(58),
            "queued",
            json!({"queue": "support", "skills": ["support"]}),
        ),
    ]);
    events
}

async fn api(http: &Http, server: &Server, path: &str) -> Value {
    let answer = http.get(&server.url(path)).await;
    assert_eq!(answer.status, 200, "GET {path}: {:?}", answer.body);
    answer.body
}

/// Opens `#/page` and waits until `ready` (a script) is true.
async fn open(browser: &Browser, server: &Server, page: &str, ready: &str) {
    browser.goto(&server.url(&format!("/#/{page}"))).await;
    browser
        .wait_for(&format!("the {page} page"), ready, LOAD)
        .await;
}

async fn screenshot(browser: &Browser, name: &str) {
    let path = browser
        .screenshot(&screenshot_dir().join(format!("{name}.png")))
        .await;
    eprintln!("screenshot of {name}: {}", path.display());
}

/// Tabs through the page from its start and returns the visible controls never focused.
async fn unreachable_by_keyboard(browser: &Browser) -> Vec<String> {
    browser
        .eval(
            "document.activeElement && document.activeElement.blur();
             for (const e of document.querySelectorAll('[data-tab-seen]')) delete e.dataset.tabSeen;
             for (const e of document.querySelectorAll('[data-tab-id]')) delete e.dataset.tabId;
             window.scrollTo(0, 0); return true;",
            json!([]),
        )
        .await;
    // A date input keeps focus over its parts (day, month, ...), so the walk ends when
    // focus comes back to where it started from elsewhere, not at the first repeat.
    let mut first: Option<Value> = None;
    let mut previous = Value::Null;
    for _ in 0..300 {
        browser.press("\u{E004}").await;
        let focused = browser
            .eval(
                "const e = document.activeElement;
                 if (!e || e === document.body) return null;
                 if (!e.dataset.tabId) e.dataset.tabId = String(Math.random());
                 e.dataset.tabSeen = '1';
                 return e.dataset.tabId;",
                json!([]),
            )
            .await;
        if focused.is_null() {
            continue;
        }
        match &first {
            None => first = Some(focused.clone()),
            Some(start) if *start == focused && previous != focused => break,
            Some(_) => {}
        }
        previous = focused;
    }
    let missing = browser
        .eval(
            "const controls = 'a[href], button:not([disabled]), input:not([disabled]), select:not([disabled]), \
             textarea, summary, [tabindex]:not([tabindex=\"-1\"])';
             return [...document.querySelectorAll(controls)]
               .filter((e) => e.getClientRects().length > 0 && !e.closest('[hidden]'))
               .filter((e) => e.tagName === 'SUMMARY' || !e.closest('details:not([open])'))
               .filter((e) => e.dataset.tabSeen !== '1')
               .map((e) => e.outerHTML.slice(0, 120));",
            json!([]),
        )
        .await;
    serde_json::from_value(missing).unwrap_or_default()
}

/// Accessibility and layout of the page at the browser's current width.
async fn check_page(browser: &Browser, name: &str, width: u32) {
    let violations = browser.serious_accessibility_violations().await;
    assert!(
        violations.is_empty(),
        "axe-core finds serious violations on {name} at {width} px:\n{}",
        violations.join("\n")
    );
    let overflow = browser
        .eval(
            "return document.documentElement.scrollWidth - document.documentElement.clientWidth;",
            json!([]),
        )
        .await;
    assert!(
        overflow.as_i64().unwrap_or(0) <= 0,
        "{name} scrolls sideways at {width} px by {overflow} px"
    );
}

/// The timeline the customer page shows, flattened over journeys.
const SHOWN_TIMELINE: &str = "return [...document.querySelectorAll('.timeline li')].map((li) => ({
    at: li.dataset.at, channel: li.dataset.channel, interaction_id: li.dataset.interaction,
    type: li.dataset.type, summary: li.querySelector('[data-field=summary]').textContent }));";

fn api_timeline(journey: &Value) -> Vec<Value> {
    journey["journeys"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|j| j["timeline"].as_array().cloned().unwrap_or_default())
        .map(|line| {
            json!({
                "at": line["at"], "channel": line["channel"], "interaction_id": line["interaction_id"],
                "type": line["type"], "summary": line["summary"],
            })
        })
        .collect()
}

fn number(value: &Value) -> Option<f64> {
    match value {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.parse().ok(),
        _ => None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_shows_what_the_api_answers_and_follows_it_live() {
    browser::require_chromium();
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]);
    let http = Http::default();
    let now = Utc::now();
    http.post_events(&server, &Value::Array(history(now))).await;
    support::wait_ready(&http, &server).await;
    let browser = Browser::start(WIDE.0, WIDE.1).await;

    // Customer: found by phone number, as a user types it.
    open(
        &browser,
        &server,
        "customer",
        "return !!document.querySelector('#handle-value');",
    )
    .await;
    browser.type_into("#handle-kind", "phone").await;
    browser.type_into("#handle-value", PHONE).await;
    browser.click("#find-customer").await;
    let customer_id = api(
        &http,
        &server,
        &format!("/v1/customers/resolve?kind=phone&value=%2B{}", &PHONE[1..]),
    )
    .await["customer_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let journey = api(
        &http,
        &server,
        &format!("/v1/customers/{customer_id}/journey"),
    )
    .await;
    let expected = api_timeline(&journey);
    assert!(
        expected.len() >= 10,
        "the history has a timeline: {journey}"
    );
    let script = format!(
        "const id = document.querySelector('[data-field=customer_id]');
         return id && id.textContent === {id:?} && document.querySelectorAll('.timeline li').length === {n};",
        id = customer_id,
        n = expected.len()
    );
    browser
        .wait_for("the customer's journey", &script, LOAD)
        .await;
    let shown = browser.eval(SHOWN_TIMELINE, json!([])).await;
    assert_eq!(
        shown,
        Value::Array(expected),
        "the timeline shown is the API's"
    );
    let channels = browser
        .eval(
            "return document.querySelector('[data-field=channels]').textContent;",
            json!([]),
        )
        .await;
    assert_eq!(channels, "voice → chat");
    let last_agent = browser
        .eval(
            "return document.querySelector('[data-field=last_agent]').textContent;",
            json!([]),
        )
        .await;
    assert_eq!(last_agent, journey["context"]["last_agent"]);
    screenshot(&browser, "customer-1280").await;

    // An SMS from Alice while her page is open appears within 2 s.
    let posted = Instant::now();
    http.post_events(
        &server,
        &json!([event(
            "sms-1",
            "sms",
            PHONE,
            Utc::now(),
            "message",
            json!({"direction": "inbound", "author": "customer", "text": "Thanks!"})
        )]),
    )
    .await;
    browser
        .wait_for(
            "the SMS on the customer page",
            "return !!document.querySelector('.timeline li[data-interaction=\"sms-1\"]');",
            LIVE,
        )
        .await;
    eprintln!(
        "the SMS showed on the customer page {:?} after its 202",
        posted.elapsed()
    );

    // Wallboard: every queue's waiting count is the API's.
    open(&browser, &server, "wallboard", "return document.querySelectorAll('[data-queue]').length >= 2 && document.querySelectorAll('[data-agent]').length >= 3;").await;
    let queues = api(&http, &server, "/v1/queues").await;
    for queue in queues["queues"].as_array().unwrap() {
        let name = queue["queue"].as_str().unwrap();
        let script = format!(
            "const e = document.querySelector('[data-queue=\"{name}\"] [data-field=waiting]'); return e && e.textContent;"
        );
        let shown = browser
            .wait_for(&format!("queue {name}"), &script, LOAD)
            .await;
        assert_eq!(shown, queue["waiting"].to_string(), "waiting in {name}");
    }
    let agents = api(&http, &server, "/v1/agents").await;
    for state in ["available", "busy", "away"] {
        let expected = agents["agents"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|a| a["state"] == state)
            .count();
        let shown = browser
            .eval(&format!("return document.querySelector('[data-state={state}] [data-field=count]').textContent;"), json!([]))
            .await;
        assert_eq!(shown, expected.to_string(), "agents {state}");
    }
    // Bob's call has waited about two minutes: over voice's 20 s, said on the card.
    browser
        .wait_for(
            "the billing queue's voice threshold breached",
            "return !!document.querySelector('[data-queue=\"billing\"][data-breached=yes] [data-channel=voice][data-breached=yes]');",
            LOAD,
        )
        .await;
    screenshot(&browser, "wallboard-1280").await;

    // A call queued while the wallboard is open shows within 2 s.
    let before = queues["queues"]
        .as_array()
        .unwrap()
        .iter()
        .find(|q| q["queue"] == "billing")
        .unwrap()["waiting"]
        .as_u64()
        .unwrap();
    let posted = Instant::now();
    let t = Utc::now();
    http.post_events(
        &server,
        &json!([
            event(
                "call-3",
                "voice",
                "+15550004444",
                t,
                "interaction_started",
                json!({"direction": "inbound"})
            ),
            event(
                "call-3",
                "voice",
                "+15550004444",
                t,
                "queued",
                json!({"queue": "billing", "skills": ["billing"]})
            ),
        ]),
    )
    .await;
    browser
        .wait_for(
            "the new call on the wallboard",
            &format!("return document.querySelector('[data-queue=\"billing\"] [data-field=waiting]').textContent === '{}';", before + 1),
            LIVE,
        )
        .await;
    eprintln!(
        "the new call showed on the wallboard {:?} after its 202",
        posted.elapsed()
    );
    let after = api(&http, &server, "/v1/queues/billing").await;
    assert_eq!(after["waiting"], before + 1);

    // Reports: offered and ASA per channel are the API's.
    open(
        &browser,
        &server,
        "reports",
        "return !!document.querySelector('#summary-table tr[data-key=voice]');",
    )
    .await;
    let summary = api(&http, &server, "/v1/reports/summary?group_by=channel").await;
    for row in summary["rows"].as_array().unwrap() {
        let key = row["key"].as_str().unwrap();
        for field in ["offered", "answered", "asa_seconds", "service_level"] {
            let shown = browser
                .eval(
                    &format!("const e = document.querySelector('#summary-table tr[data-key=\"{key}\"] [data-field={field}]'); return e && e.dataset.value;"),
                    json!([]),
                )
                .await;
            assert_eq!(
                number(&shown),
                number(&row[field]),
                "{field} of {key}: shown {shown}, API {}",
                row[field]
            );
        }
    }
    let voice = summary["rows"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["key"] == "voice")
        .unwrap();
    assert_eq!(voice["offered"], 3, "{voice}");
    assert_eq!(number(&voice["asa_seconds"]), Some(12.0), "{voice}");
    let csv_buttons = browser
        .eval(
            "return document.querySelectorAll('[data-csv]').length;",
            json!([]),
        )
        .await;
    assert!(
        csv_buttons.as_u64().unwrap() >= 4,
        "every table downloads as CSV"
    );
    // The summary's CSV holds the API's rows (the download's blob, caught on its way out).
    let csv = browser
        .eval_async(
            "const done = arguments[arguments.length - 1];
             const original = URL.createObjectURL;
             URL.createObjectURL = (blob) => { URL.createObjectURL = original; blob.text().then(done); return original.call(URL, blob); };
             document.querySelector('[data-csv^=summary]').click();",
            json!([]),
        )
        .await;
    let csv = csv.as_str().expect("the CSV text");
    assert!(csv.starts_with("key,offered,answered,abandoned,"), "{csv}");
    let voice_line = csv
        .lines()
        .find(|line| line.starts_with("voice,"))
        .unwrap_or_else(|| panic!("no voice row in {csv}"));
    assert!(
        voice_line.starts_with(&format!("voice,{},", voice["offered"])),
        "{voice_line}"
    );
    screenshot(&browser, "reports-1280").await;

    // Operations: each view's lag and events applied are the API's.
    support::wait_ready(&http, &server).await;
    open(
        &browser,
        &server,
        "operations",
        "return !!document.querySelector('#views-table tr[data-view=journey]');",
    )
    .await;
    let deadline = Instant::now() + LOAD;
    loop {
        let views = api(&http, &server, "/v1/views").await;
        let mut same = true;
        for view in views["views"].as_array().unwrap() {
            let name = view["view"].as_str().unwrap();
            for field in ["lag", "events_applied", "version"] {
                let shown = browser
                    .eval(&format!("const e = document.querySelector('#views-table tr[data-view=\"{name}\"] [data-field={field}]'); return e && e.dataset.value;"), json!([]))
                    .await;
                same &= number(&shown) == number(&view[field]);
            }
        }
        if same {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the operations page does not show /v1/views: {views}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let ready = browser
        .eval(
            "return document.querySelector('#readiness').dataset.ready;",
            json!([]),
        )
        .await;
    assert_eq!(ready, "yes");
    screenshot(&browser, "operations-1280").await;

    // Every page: keyboard, accessibility and layout at both widths.
    let pages = [
        (
            "customer",
            format!("customer/{customer_id}"),
            "return !!document.querySelector('.timeline li');",
        ),
        (
            "wallboard",
            "wallboard".to_owned(),
            "return !!document.querySelector('[data-agent]');",
        ),
        (
            "reports",
            "reports".to_owned(),
            "return !!document.querySelector('#topics-table');",
        ),
        (
            "operations",
            "operations".to_owned(),
            "return !!document.querySelector('#views-table');",
        ),
    ];
    for (name, path, ready) in &pages {
        open(&browser, &server, path, ready).await;
        let missing = unreachable_by_keyboard(&browser).await;
        assert!(
            missing.is_empty(),
            "on {name} the keyboard never reaches:\n{}",
            missing.join("\n")
        );
        check_page(&browser, name, WIDE.0).await;
    }
    browser.set_size(NARROW.0, NARROW.1).await;
    for (name, path, ready) in &pages {
        open(&browser, &server, path, ready).await;
        check_page(&browser, name, NARROW.0).await;
        screenshot(&browser, &format!("{name}-390")).await;
    }
    browser.quit();
    server.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_tokens_the_console_asks_for_one_and_shows_its_scopes() {
    browser::require_chromium();
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(
        dir.path(),
        &[
            "--token",
            "reader-secret=read",
            "--token",
            "admin-secret=admin",
        ],
    );
    let browser = Browser::start(WIDE.0, WIDE.1).await;
    open(
        &browser,
        &server,
        "operations",
        "return !!document.querySelector('#token');",
    )
    .await;
    check_page(&browser, "the sign-in form", WIDE.0).await;
    screenshot(&browser, "sign-in-1280").await;

    browser.type_into("#token", "not-a-token").await;
    browser.press("\u{E007}").await; // Enter submits, keyboard only.
    browser
        .wait_for(
            "the refusal of a wrong token",
            "const e = document.querySelector('.error'); return e && e.textContent.includes('not accepted');",
            LOAD,
        )
        .await;

    browser.type_into("#token", "reader-secret").await;
    browser.press("\u{E007}").await;
    let scopes = browser
        .wait_for("the token's scopes", "const e = document.querySelector('[data-scopes]'); return (e && e.dataset.scopes) || null;", LOAD)
        .await;
    assert_eq!(scopes, "read");
    browser
        .wait_for(
            "the views without a rebuild button",
            "return !!document.querySelector('#views-table tr[data-view=journey]') && document.body.textContent.includes('admin only') && !document.querySelector('button[id^=rebuild-]');",
            LOAD,
        )
        .await;
    let kept = browser
        .eval(
            "return [location.href, sessionStorage.getItem('omnilog.token')];",
            json!([]),
        )
        .await;
    assert!(
        !kept[0].as_str().unwrap().contains("secret"),
        "the token is in the URL: {kept}"
    );
    assert_eq!(
        kept[1], "reader-secret",
        "the token is kept in sessionStorage"
    );
    screenshot(&browser, "operations-read-token-1280").await;

    // An admin token may rebuild.
    browser.click(".access button").await;
    browser
        .wait_for(
            "the sign-in form again",
            "return !!document.querySelector('#token');",
            LOAD,
        )
        .await;
    browser.type_into("#token", "admin-secret").await;
    browser.press("\u{E007}").await;
    browser
        .wait_for(
            "the rebuild button",
            "return !!document.querySelector('#rebuild-journey');",
            LOAD,
        )
        .await;
    browser.click("#rebuild-journey").await;
    browser
        .wait_for(
            "the rebuild's answer",
            "const e = document.querySelector('#rebuild-outcome'); return e && e.textContent.includes('Rebuilding journey');",
            LOAD,
        )
        .await;
    browser.quit();
    server.stop();
}

/// `omnilog demo` shows a working desk at once: within 5 s of its start the console shows
/// queues with waiting items, agents holding work, a report with rows, and the journey the
/// demo names, across at least two channels.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_shows_a_working_desk_within_5_seconds() {
    use std::io::{BufRead as _, BufReader};
    use std::process::{Command, Stdio};

    browser::require_chromium();
    // The browser starts first: its own start-up is not the demo's.
    let browser = Browser::start(WIDE.0, WIDE.1).await;
    let dir = tempfile::tempdir().unwrap();
    let started = Instant::now();
    let mut demo = Command::new(support::BINARY)
        .args(["demo", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir.path())
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("starting omnilog demo");
    // Killed (by its pid, through the handle) however the test ends.
    struct Reap(std::process::Child);
    impl Drop for Reap {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let stdout = demo.stdout.take().unwrap();
    let _demo = Reap(demo);
    let (lines, receive) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if lines.send(line).is_err() {
                return;
            }
        }
    });
    let budget = Duration::from_secs(5);
    let left = |started: Instant| budget.saturating_sub(started.elapsed());
    let first = receive
        .recv_timeout(left(started))
        .expect("the demo's first line");
    let base = first
        .split_whitespace()
        .find(|word| word.starts_with("http://"))
        .map(|url| url.trim_end_matches('/').to_owned())
        .unwrap_or_else(|| panic!("the demo's first line names the console: {first}"));
    assert!(
        first.contains("console"),
        "the console's URL comes first: {first}"
    );

    browser.goto(&format!("{base}/#/wallboard")).await;
    browser
        .wait_for(
            "queues with waiting items and agents holding work",
            "return [...document.querySelectorAll('[data-queue] [data-field=waiting]')].some((e) => Number(e.textContent) > 0)
                && [...document.querySelectorAll('[data-agent] [data-field=assignments]')].some((e) => Number(e.textContent) > 0);",
            left(started),
        )
        .await;
    eprintln!(
        "the demo's wallboard is busy {:?} after its start",
        started.elapsed()
    );
    screenshot(&browser, "demo-wallboard-1280").await;

    browser.goto(&format!("{base}/#/reports")).await;
    browser
        .wait_for(
            "a report with rows",
            "return document.querySelectorAll('#summary-table tbody tr').length > 0;",
            left(started),
        )
        .await;
    eprintln!(
        "the demo's report has rows {:?} after its start",
        started.elapsed()
    );

    let journey_url = loop {
        let line = receive
            .recv_timeout(left(started))
            .expect("the demo names a customer's journey within 5 s");
        if let Some(url) = line
            .split_whitespace()
            .find(|w| w.starts_with("http://") && w.contains("#/customer/"))
        {
            break url.to_owned();
        }
    };
    browser.goto(&journey_url).await;
    let channels = browser
        .wait_for(
            "a journey across two channels",
            "const e = [...document.querySelectorAll('[data-field=channels]')].find((e) => e.textContent.includes('→'));
             return e ? e.textContent : null;",
            left(started),
        )
        .await;
    eprintln!(
        "the demo's journey ({channels}) shows {:?} after its start",
        started.elapsed()
    );
    screenshot(&browser, "demo-customer-1280").await;
    browser.quit();
}
