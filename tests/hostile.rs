//! Issue 16's hostile-input acceptance test: 12,000 generated hostile requests across
//! every route of one `omnilog serve`, sent over 32 connections at once.
//!
//! The requests are mutations of real material: canonical events of every type and schema
//! version (`tests/golden/`) and every channel's fixtures (`crates/channels/fixtures/`),
//! given wrong types, control characters, deep nesting, huge strings and arrays, invalid
//! UTF-8, duplicate keys, bad and bombed encodings, oversized and truncated bodies, and odd
//! methods, paths, query strings and headers. Request `n` is made by a generator seeded
//! with `SEED` and `n`, so the run is the same whatever order the answers come in.
//!
//! What must hold: no answer is 5xx; every 4xx is `application/problem+json` with its
//! status in the body; the log grows by exactly the events the 202 answers say were
//! written; the server's resident memory after the run is within 100 MB of before it, and
//! its peak under 500 MB. A few requests that only a raw socket can send (bodies cut short,
//! a chunked body past the limit, malformed HTTP) end the run: each gets a problem too
//! (HTTP that does not parse never reaches the router: the server loop turns hyper's
//! bodiless 400 or 431 into a problem, and closes the connection). `/readyz` is probed
//! throughout, and answers 200: the views fold the run's writes well within the lag a
//! readiness probe allows (`--ready-max-lag-secs`, 5 s), so no answer of the run is 5xx.

mod support;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use support::{Http, Reply, Server, heap_settled_under, log_records, memory_of, wait_ready};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The generator's seed: change it to explore, keep it to reproduce.
const SEED: u64 = 0x0016_4a2d_0b5e_55ed;
/// How many requests the generator makes.
const REQUESTS: usize = 12_000;
/// Connections sending at once.
const CONNECTIONS: usize = 32;
/// The server's body limit (its default, 8 MiB).
const LIMIT: usize = 8 * 1024 * 1024;
/// The secrets of the channels whose signatures are checked in this run.
const VOICE_SECRET: &str = "twilio-auth-token";
const X_SECRET: &str = "x-consumer-secret";

/// One generated request.
#[derive(Debug)]
struct Hostile {
    method: String,
    path: String,
    headers: Vec<(&'static str, Vec<u8>)>,
    body: Vec<u8>,
    /// What the generator did, for a failure's message.
    what: String,
    /// Sent over a raw socket, reading the answer while the body goes out: a body the
    /// server refuses from its headers is answered before it is sent, and hyper's client
    /// reports the closed connection instead of that early answer.
    raw: bool,
}

impl Hostile {
    fn new(method: &str, path: impl Into<String>, what: impl Into<String>) -> Self {
        Hostile {
            method: method.to_owned(),
            path: path.into(),
            headers: Vec::new(),
            body: Vec::new(),
            what: what.into(),
            raw: false,
        }
    }

    fn raw(mut self) -> Self {
        self.raw = true;
        self
    }

    fn header(mut self, name: &'static str, value: impl Into<Vec<u8>>) -> Self {
        self.headers.push((name, value.into()));
        self
    }

    fn body(mut self, body: impl Into<Vec<u8>>) -> Self {
        self.body = body.into();
        self
    }

    fn json(self, body: impl Into<Vec<u8>>) -> Self {
        self.header("content-type", "application/json").body(body)
    }
}

/// A channel fixture: its channel, file name, content type and bytes.
#[derive(Clone, Debug)]
struct Fixture {
    channel: String,
    name: String,
    content_type: String,
    body: Vec<u8>,
}

/// What the requests are made from.
struct Material {
    /// Canonical events, one JSON object each, of every type and schema version.
    events: Vec<Value>,
    fixtures: Vec<Fixture>,
}

impl Material {
    fn load() -> Self {
        let root = concat!(env!("CARGO_MANIFEST_DIR"), "/../..");
        let mut events = Vec::new();
        for version in ["v1", "v2"] {
            let path = format!("{root}/tests/golden/{version}/events.jsonl");
            let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
            events.extend(
                text.lines()
                    .map(|line| serde_json::from_str::<Value>(line).unwrap()),
            );
        }
        let mut fixtures = Vec::new();
        let dir = format!("{root}/crates/channels/fixtures");
        for channel in std::fs::read_dir(&dir).unwrap() {
            let channel = channel.unwrap();
            let name = channel.file_name().to_string_lossy().into_owned();
            for file in std::fs::read_dir(channel.path()).unwrap() {
                let file = file.unwrap().path();
                let file_name = file.file_name().unwrap().to_string_lossy().into_owned();
                if file_name.ends_with(".events.json") {
                    continue;
                }
                let body = std::fs::read(&file).unwrap();
                let content_type = if file_name.ends_with(".form") {
                    "application/x-www-form-urlencoded".to_owned()
                } else if file_name.ends_with(".eml") {
                    "message/rfc822".to_owned()
                } else if file_name.ends_with(".multipart") {
                    let first = body.split(|&b| b == b'\n').next().unwrap();
                    let boundary = String::from_utf8_lossy(&first[2..]).trim().to_owned();
                    format!("multipart/form-data; boundary={boundary}")
                } else {
                    "application/json".to_owned()
                };
                fixtures.push(Fixture {
                    channel: name.clone(),
                    name: file_name,
                    content_type,
                    body,
                });
            }
        }
        fixtures.sort_by(|a, b| (&a.channel, &a.name).cmp(&(&b.channel, &b.name)));
        assert!(events.len() > 500 && fixtures.len() > 30);
        Material { events, fixtures }
    }
}

fn pick<'a, T>(rng: &mut fastrand::Rng, items: &'a [T]) -> &'a T {
    &items[rng.usize(..items.len())]
}

/// Characters a text field must not smuggle in, and some it may but that trip naive code.
const NASTY_CHARS: &[char] = &[
    '\u{0}',
    '\u{1}',
    '\u{7}',
    '\u{8}',
    '\u{b}',
    '\u{c}',
    '\u{1b}',
    '\u{1f}',
    '\u{7f}',
    '\u{85}',
    '\u{2028}',
    '\u{202e}',
    '\u{feff}',
    '\u{fffd}',
    '\u{10ffff}',
];

/// A string of `n` copies of `c`.
fn repeat(c: char, n: usize) -> String {
    std::iter::repeat_n(c, n).collect()
}

/// JSON text of `depth` nested arrays (or objects).
fn deep(depth: usize, objects: bool) -> String {
    if objects {
        format!("{}1{}", "{\"a\":".repeat(depth), "}".repeat(depth))
    } else {
        format!("{}{}", "[".repeat(depth), "]".repeat(depth))
    }
}

/// A hostile JSON value: a wrong type, a control character, something huge or deep.
fn hostile_value(rng: &mut fastrand::Rng, original: &Value) -> Value {
    match rng.u8(..14) {
        0 => json!(rng.i64(..)),
        1 => json!(f64::MAX),
        2 => json!(-0.5),
        3 => json!(u64::MAX),
        4 => json!(rng.bool()),
        5 => Value::Null,
        6 => json!(""),
        7 => {
            // The original text with a nasty character inside.
            let mut text = original.as_str().unwrap_or("x").to_owned();
            let at = (0..=text.len())
                .filter(|&i| text.is_char_boundary(i))
                .nth(rng.usize(..=text.chars().count()))
                .unwrap_or(0);
            text.insert(at, *pick(rng, NASTY_CHARS));
            json!(text)
        }
        8 => json!(repeat(
            *pick(rng, &['a', 'é', '😀', ' ']),
            rng.usize(1_000..200_000)
        )),
        9 => json!(vec!["billing"; rng.usize(1_000..100_000)]),
        10 => {
            let keys: serde_json::Map<String, Value> = (0..rng.usize(100..20_000))
                .map(|i| (format!("k{i}"), json!(i)))
                .collect();
            Value::Object(keys)
        }
        11 => json!([original.clone(), original.clone()]),
        12 => json!({"nested": original.clone()}),
        _ => json!(repeat(' ', rng.usize(1..64))),
    }
}

/// Every JSON pointer into `value` (objects' members and arrays' items).
fn pointers(value: &Value, at: String, out: &mut Vec<String>) {
    match value {
        Value::Object(members) => {
            for (key, member) in members {
                let here = format!("{at}/{}", key.replace('~', "~0").replace('/', "~1"));
                out.push(here.clone());
                pointers(member, here, out);
            }
        }
        Value::Array(items) => {
            for (index, item) in items.iter().enumerate() {
                let here = format!("{at}/{index}");
                out.push(here.clone());
                pointers(item, here, out);
            }
        }
        _ => {}
    }
}

/// `value` with one member replaced by a hostile value, removed, or a stray one added.
fn mutate_json(rng: &mut fastrand::Rng, mut value: Value) -> Value {
    let mut all = Vec::new();
    pointers(&value, String::new(), &mut all);
    if all.is_empty() {
        return hostile_value(rng, &value);
    }
    let pointer = pick(rng, &all).clone();
    match rng.u8(..8) {
        0 => {
            // Remove it.
            let (parent, key) = pointer.rsplit_once('/').unwrap();
            match value.pointer_mut(parent) {
                Some(Value::Object(members)) => {
                    members.remove(&key.replace("~1", "/").replace("~0", "~"));
                }
                Some(Value::Array(items)) => {
                    let index: usize = key.parse().unwrap();
                    items.remove(index);
                }
                _ => {}
            }
        }
        1 => {
            // A stray member beside it.
            let (parent, _) = pointer.rsplit_once('/').unwrap();
            if let Some(Value::Object(members)) = value.pointer_mut(parent) {
                let name = pick(rng, &["colour", "type", "queue", "__proto__", "", "\u{0}"]);
                members.insert((*name).to_owned(), json!("stray"));
            }
        }
        _ => {
            let slot = value.pointer_mut(&pointer).unwrap();
            *slot = hostile_value(rng, slot);
        }
    }
    value
}

/// Mutations of a body's bytes: cut short, flipped, invalid UTF-8, garbage around it.
fn mutate_bytes(rng: &mut fastrand::Rng, mut bytes: Vec<u8>) -> Vec<u8> {
    if bytes.is_empty() {
        return vec![0xff];
    }
    match rng.u8(..8) {
        0 => bytes.truncate(rng.usize(..bytes.len())),
        1 => {
            for _ in 0..rng.usize(1..8) {
                let at = rng.usize(..bytes.len());
                bytes[at] = rng.u8(..);
            }
        }
        2 => {
            let at = rng.usize(..bytes.len());
            let invalid: &[&[u8]] = &[
                b"\xff",
                b"\xc3\x28",
                b"\xed\xa0\x80",
                b"\xf8\x88\x80\x80\x80",
                b"\xc0\xaf",
            ];
            for (i, b) in pick(rng, invalid).iter().enumerate() {
                bytes.insert(at + i, *b);
            }
        }
        3 => {
            let mut prefixed = b"\xef\xbb\xbf".to_vec();
            prefixed.extend(bytes);
            bytes = prefixed;
        }
        4 => {
            let tails: [&[u8]; 5] = [b"]", b"}", b"garbage", b"\0", b"[]"];
            bytes.extend_from_slice(pick::<&[u8]>(rng, &tails));
        }
        5 => {
            // A lone surrogate and other escapes JSON text may not hold.
            let escape = pick(
                rng,
                &[r#""\ud800""#, r#""\u0000""#, r#""\x41""#, "NaN", "Infinity"],
            );
            let at = rng.usize(..bytes.len());
            for (i, b) in escape.bytes().enumerate() {
                bytes.insert(at + i, b);
            }
        }
        6 => {
            // The body twice.
            let copy = bytes.clone();
            bytes.extend(copy);
        }
        _ => bytes = (0..rng.usize(1..512)).map(|_| rng.u8(..)).collect(),
    }
    bytes
}

/// `text` with its first object's first key given twice (the second value wins, silently,
/// in a lax reader).
fn duplicate_a_key(text: &str, rng: &mut fastrand::Rng) -> String {
    let key = pick(
        rng,
        &[
            "type",
            "queue",
            "occurred_at",
            "customer",
            "agent_id",
            "source_event_id",
        ],
    );
    match text.find('{') {
        Some(at) => format!("{}{{\"{key}\":\"first\",{}", &text[..at], &text[at + 1..]),
        None => text.to_owned(),
    }
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    use std::io::Write as _;
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    encoder.write_all(bytes).unwrap();
    encoder.finish().unwrap()
}

/// A percent-encoded path segment that is hostile: control bytes, bad UTF-8, traversal,
/// something very long.
fn hostile_segment(rng: &mut fastrand::Rng) -> String {
    match rng.u8(..9) {
        0 => "%00".to_owned(),
        1 => "%ff%fe".to_owned(),
        2 => "..%2f..%2fetc%2fpasswd".to_owned(),
        3 => "a".repeat(rng.usize(1_000..20_000)),
        4 => "%c3%28".to_owned(),
        5 => "%e2%80%ae".to_owned(),
        6 => "%20".to_owned(),
        7 => format!("{}", rng.u64(..)),
        _ => "%F0%9F%98%80".to_owned(),
    }
}

/// A hostile query string.
fn hostile_query(rng: &mut fastrand::Rng) -> String {
    let parameter = pick(
        rng,
        &[
            "from",
            "to",
            "group_by",
            "now",
            "after",
            "wait_ms",
            "kind",
            "value",
            "partitions",
            "limit",
        ],
    );
    let value = pick(
        rng,
        &[
            "%00",
            "%ff",
            "-1",
            "99999999999999999999999",
            "2026-13-45T99:99:99Z",
            "",
            "none%00",
            "i",
            "i3",
            "x1:1",
            "i3:-1",
            "i3:1;",
            "a0:18446744073709551616",
            "i999:0",
            "a7:0",
            "hour,day",
            "NaN",
            "1e400",
            "%E2%80%AE",
            "queue&group_by=hour",
        ],
    );
    let mut query = format!("{parameter}={value}");
    if rng.bool() {
        query = format!("{query}&{query}");
    }
    if rng.u8(..8) == 0 {
        query = format!("{query}&{}", "x=1&".repeat(rng.usize(100..2_000)));
    }
    query
}

const METHODS: &[&str] = &[
    "GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "TRACE", "HEAD",
];

/// The query routes, with a real parameter where one is needed.
const QUERY_ROUTES: &[&str] = &[
    "/v1/customers/resolve?kind=phone&value=%2B15550001000",
    "/v1/customers/9b2f6c1e-0000-5000-8000-000000000000",
    "/v1/customers/9b2f6c1e-0000-5000-8000-000000000000/journey",
    "/v1/interactions/chat-1",
    "/v1/queues",
    "/v1/queues/billing",
    "/v1/agents",
    "/v1/agents/agent-0001",
    "/v1/reports/summary",
    "/v1/reports/journeys",
    "/v1/reports/topics",
    "/v1/reports/channels",
    "/v1/reports/engagement",
    "/v1/reports/service-levels",
    "/v1/views",
    "/v1/admin/channels",
    "/v1/channels/messenger?hub.mode=subscribe&hub.verify_token=t&hub.challenge=1",
    "/v1/channels/x?crc_token=abc",
    "/v1/internal/partials/queues",
    "/healthz",
    "/readyz",
    "/metrics",
    "/",
    "/console/",
    "/console/app.js",
];

/// Request `n`: made by its own generator, so it does not depend on the others.
fn hostile_request(material: &Material, n: usize) -> Hostile {
    let mut rng = fastrand::Rng::with_seed(SEED ^ (n as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15));
    let rng = &mut rng;
    match n % 20 {
        // Canonical events, as JSON, mutated.
        0..=4 => {
            let count = if rng.u8(..10) == 0 {
                rng.usize(2..400)
            } else {
                1
            };
            let batch: Vec<Value> = (0..count)
                .map(|_| pick(rng, &material.events).clone())
                .collect();
            let which = rng.usize(..count);
            let mut batch = Value::Array(batch);
            let kind = rng.u8(..10);
            let text = match kind {
                // Valid: some must be written, or the log's growth proves nothing.
                0..=1 => batch.to_string(),
                2..=5 => {
                    batch[which] = mutate_json(rng, batch[which].clone());
                    batch.to_string()
                }
                6 => duplicate_a_key(&batch.to_string(), rng),
                7 => {
                    let event = batch[which].as_object_mut().unwrap();
                    let field = pick(
                        rng,
                        &[
                            "interaction_id",
                            "source",
                            "source_event_id",
                            "agent_id",
                            "queue",
                        ],
                    );
                    let mut text = event
                        .get(*field)
                        .and_then(Value::as_str)
                        .unwrap_or("id")
                        .to_owned();
                    text.push(*pick(rng, NASTY_CHARS));
                    event.insert((*field).to_owned(), json!(text));
                    batch.to_string()
                }
                8 => {
                    let depth = rng.usize(200..100_000);
                    batch[which]["attributes"] = json!({"k": "placeholder"});
                    batch
                        .to_string()
                        .replacen("\"placeholder\"", &deep(depth, rng.bool()), 1)
                }
                _ => String::from_utf8_lossy(&mutate_bytes(rng, batch.to_string().into_bytes()))
                    .into_owned(),
            };
            let mut body = text.into_bytes();
            if kind == 9 && rng.bool() {
                // Raw bytes, not always UTF-8 after all.
                body = mutate_bytes(rng, body);
            }
            Hostile::new(
                "POST",
                "/v1/events",
                format!("json events (mutation {kind})"),
            )
            .json(body)
        }
        // Canonical events as protobuf, mutated at the byte level.
        5..=6 => {
            let events: Vec<_> = (0..rng.usize(1..20))
                .filter_map(|_| {
                    let event = pick(rng, &material.events);
                    omnilog_events::parse_event(event.to_string().as_bytes()).ok()
                })
                .collect();
            let mut events = events;
            let kind = rng.u8(..6);
            if kind == 0 {
                for event in &mut events {
                    event.schema_version = rng.u32(..4);
                }
            }
            if kind == 1
                && let Some(event) = events.first_mut()
            {
                event.source_event_id = Some(format!("id{}", pick(rng, NASTY_CHARS)).into());
            }
            let mut body = omnilog_events::encode_batch(&events);
            if kind >= 3 {
                body = mutate_bytes(rng, body);
            }
            let content_type = pick(rng, &["application/x-protobuf", "application/protobuf"]);
            Hostile::new("POST", "/v1/events", format!("protobuf (mutation {kind})"))
                .header("content-type", *content_type)
                .body(body)
        }
        // A channel's own payloads, mutated.
        7..=10 => {
            let fixture = pick(rng, &material.fixtures).clone();
            let kind = rng.u8(..8);
            let body = match kind {
                0 => fixture.body.clone(),
                1..=3 if fixture.content_type == "application/json" => {
                    let value: Value = serde_json::from_slice(&fixture.body).unwrap();
                    mutate_json(rng, value).to_string().into_bytes()
                }
                4 if fixture.content_type.starts_with("application/x-www-form") => {
                    // A form field's value made hostile.
                    let text = String::from_utf8_lossy(&fixture.body).trim().to_owned();
                    let mut pairs: Vec<String> = text.split('&').map(str::to_owned).collect();
                    let at = rng.usize(..pairs.len());
                    let name = pairs[at].split('=').next().unwrap_or_default().to_owned();
                    let value = match rng.u8(..3) {
                        0 => pick(rng, NASTY_CHARS)
                            .to_string()
                            .bytes()
                            .map(|b| format!("%{b:02X}"))
                            .collect(),
                        1 => "9".repeat(rng.usize(1..100_000)),
                        _ => String::new(),
                    };
                    pairs[at] = format!("{name}={value}");
                    pairs.join("&").into_bytes()
                }
                5 => duplicate_a_key(&String::from_utf8_lossy(&fixture.body), rng).into_bytes(),
                _ => mutate_bytes(rng, fixture.body.clone()),
            };
            let channel = if rng.u8(..20) == 0 {
                hostile_segment(rng)
            } else {
                fixture.channel.clone()
            };
            let content_type = match rng.u8(..12) {
                0 => b"text/plain".to_vec(),
                1 => b"application/json; charset=\xff".to_vec(),
                2 => b"multipart/form-data".to_vec(),
                _ => fixture.content_type.clone().into_bytes(),
            };
            let mut request = Hostile::new(
                "POST",
                format!("/v1/channels/{channel}"),
                format!(
                    "channel {} {} (mutation {kind})",
                    fixture.channel, fixture.name
                ),
            )
            .header("content-type", content_type)
            .body(body);
            if fixture.channel == "voice" && rng.bool() {
                request = request.header("x-twilio-signature", b"bm90IGEgc2lnbmF0dXJl".to_vec());
            }
            if fixture.channel == "x" && rng.bool() {
                request =
                    request.header("x-twitter-webhooks-signature", b"sha256=\xff\xfe".to_vec());
            }
            request
        }
        // Encodings: gzip (good, broken, a bomb), and encodings the server does not read.
        11 => {
            let event = pick(rng, &material.events).clone();
            let plain = json!([event]).to_string().into_bytes();
            let kind = rng.u8(..6);
            let (encoding, body): (&[u8], Vec<u8>) = match kind {
                0 => (b"gzip", gzip(&plain)),
                1 => (b"gzip", mutate_bytes(rng, gzip(&plain))),
                2 => (b"gzip", gzip(&vec![b' '; LIMIT + rng.usize(1..LIMIT)])),
                3 => (
                    *pick(
                        rng,
                        &[&b"br"[..], b"zstd", b"deflate", b"compress", b"x-unknown"],
                    ),
                    plain,
                ),
                4 => (b"gzip, gzip", gzip(&gzip(&plain))),
                _ => (b"\xffgzip", plain),
            };
            Hostile::new(
                "POST",
                "/v1/events",
                format!(
                    "encoding {} (mutation {kind})",
                    String::from_utf8_lossy(encoding)
                ),
            )
            .json(body)
            .header("content-encoding", encoding.to_vec())
        }
        // Sizes: bodies past the limit, empty bodies, huge arrays.
        12 => match rng.u8(..4) {
            0 => Hostile::new("POST", "/v1/events", "body past the limit")
                .json(vec![b'['; LIMIT + rng.usize(1..1024)])
                .raw(),
            1 => Hostile::new("POST", "/v1/events", "empty body").json(Vec::new()),
            2 => Hostile::new("POST", "/v1/events", "empty batch").json(b"[]".to_vec()),
            _ => {
                let item = pick(rng, &material.events).to_string();
                // A large valid body (a quarter of the limit): many copies of one event.
                let count = (LIMIT / 4 / item.len()).saturating_sub(rng.usize(1..64));
                let body = format!("[{}]", vec![item; count].join(","));
                Hostile::new("POST", "/v1/events", format!("{count} copies of one event"))
                    .json(body)
            }
        },
        // Query routes with hostile ids and query strings.
        13..=15 => {
            let route = pick(rng, QUERY_ROUTES);
            let (path, _) = route.split_once('?').unwrap_or((route, ""));
            let kind = rng.u8(..5);
            let path = match kind {
                // A well-formed token of a partition the log does not have.
                4 => format!(
                    "{path}?after={}{}:{}",
                    pick(rng, &["i", "a"]),
                    rng.u32(12..=u32::MAX),
                    rng.u64(..)
                ),
                0 if path.matches('/').count() >= 3 => {
                    let (parent, _) = path.rsplit_once('/').unwrap();
                    format!("{parent}/{}", hostile_segment(rng))
                }
                1 => format!("{path}?{}", hostile_query(rng)),
                2 => route.to_string(),
                _ => format!(
                    "{route}{}{}",
                    if route.contains('?') { "&" } else { "?" },
                    hostile_query(rng)
                ),
            };
            let mut request = Hostile::new("GET", path, format!("query (mutation {kind})"));
            if rng.u8(..4) == 0 {
                request = request.header(
                    "omnilog-after",
                    pick(rng, &[&b"\xff"[..], b"i1:x", b"garbage", b""]).to_vec(),
                );
            }
            request
        }
        // The stream and the admin routes, with what they refuse.
        16 => match rng.u8(..4) {
            0 => Hostile::new(
                "GET",
                format!(
                    "/v1/queues/stream?{}",
                    pick(
                        rng,
                        &["after=garbage", "after=i1", "wait_ms=x", "after=%ff"]
                    )
                ),
                "stream with a bad token",
            ),
            1 => Hostile::new(
                pick::<&str>(rng, &["POST", "DELETE", "PUT"]),
                "/v1/queues/stream",
                "stream, other method",
            ),
            2 => Hostile::new(
                "POST",
                format!("/v1/views/{}/rebuild", hostile_segment(rng)),
                "rebuild of no view",
            ),
            _ => Hostile::new(
                "GET",
                format!(
                    "/v1/views/{}/rebuild",
                    pick(rng, &["journey", "queue", "reporting"])
                ),
                "rebuild by GET",
            ),
        },
        // Odd methods and paths.
        17..=18 => {
            let method = match rng.u8(..3) {
                0 => pick(rng, METHODS).to_string(),
                1 => format!("M{}", rng.u32(..)),
                _ => pick(rng, &["get", "PROPFIND", "BREW", "X-HTTP", "POST2"]).to_string(),
            };
            let path = match rng.u8(..6) {
                0 => "//v1//events".to_owned(),
                1 => "/v1/events/".to_owned(),
                2 => "/v1/../v1/events".to_owned(),
                3 => format!("/{}", hostile_segment(rng)),
                4 => format!("/v1/{}/{}", hostile_segment(rng), hostile_segment(rng)),
                _ => pick(rng, QUERY_ROUTES).to_string(),
            };
            let body = if rng.bool() {
                mutate_bytes(rng, b"{}".to_vec())
            } else {
                Vec::new()
            };
            Hostile::new(&method, path, format!("method {method}")).json(body)
        }
        // Headers: bad UTF-8 and nonsense where the server reads headers.
        _ => {
            let event = pick(rng, &material.events).clone();
            let (name, value): (&'static str, &[u8]) = *pick(
                rng,
                &[
                    ("content-type", &b"application/json\xff"[..]),
                    ("content-type", b"application/x-protobuf; proto=\x80"),
                    ("content-type", b""),
                    ("authorization", b"Bearer \xff\xfe"),
                    ("authorization", b"Basic Zm9vOmJhcg=="),
                    ("content-encoding", b"\x80"),
                    ("omnilog-after", b"i0:1,\xff"),
                    ("accept", b"application/\xff"),
                ],
            );
            Hostile::new("POST", "/v1/events", format!("header {name}"))
                .header(name, value.to_vec())
                .body(json!([event]).to_string())
        }
    }
}

/// What the run saw.
#[derive(Debug, Default)]
struct Tally {
    by_status: BTreeMap<u16, usize>,
    /// Events the 202 answers say were written (not duplicates).
    written: u64,
    /// `GET /readyz` answered 200 during the run.
    ready: usize,
    failures: Vec<String>,
}

fn judge(tally: &mut Tally, request: &Hostile, reply: Result<Reply, String>) {
    let what = format!(
        "{} {} ({})",
        request.method,
        request.path.chars().take(120).collect::<String>(),
        request.what
    );
    let reply = match reply {
        Ok(reply) => reply,
        Err(error) => {
            tally.failures.push(format!("{what}: no answer: {error}"));
            return;
        }
    };
    *tally.by_status.entry(reply.status).or_default() += 1;
    if request.method == "GET" && request.path.split('?').next() == Some("/readyz") {
        tally.ready += usize::from(reply.status == 200);
    }
    if reply.status >= 500 {
        tally.failures.push(format!(
            "{what}: {} {}",
            reply.status,
            String::from_utf8_lossy(&reply.body)
                .chars()
                .take(300)
                .collect::<String>()
        ));
    } else if reply.status >= 400 && request.method != "HEAD" {
        let body = reply.json();
        if reply.content_type() != "application/problem+json" || body["status"] != reply.status {
            tally.failures.push(format!(
                "{what}: {} as {:?}: {}",
                reply.status,
                reply.content_type(),
                String::from_utf8_lossy(&reply.body)
                    .chars()
                    .take(300)
                    .collect::<String>()
            ));
        }
    } else if reply.status == 202 {
        let body = reply.json();
        let accepted = body["accepted"].as_u64().unwrap_or_default();
        let new_positions = body["positions"].as_array().map_or(0, |all| {
            all.iter().filter(|p| p["duplicate"] == false).count() as u64
        });
        if accepted != new_positions {
            tally.failures.push(format!(
                "{what}: accepted {accepted} but {new_positions} new positions"
            ));
        }
        tally.written += accepted;
    }
}

/// Sends `head` and then `rest` (if any) on a raw connection while reading the answer:
/// its status (0 when the server closed without one) and its head and body. The writer
/// gives up when the server stops reading; a server that keeps a body waiting answers
/// once its body time is up.
async fn raw_exchange(address: &str, head: &[u8], rest: &[u8]) -> (u16, String) {
    let stream = TcpStream::connect(address).await.unwrap();
    let (mut reader, mut writer) = stream.into_split();
    let mut sent = head.to_vec();
    sent.extend_from_slice(rest);
    let writing = tokio::spawn(async move {
        let _ = writer.write_all(&sent).await;
        // Kept open until the answer is read: a closed half would end the request.
        tokio::time::sleep(Duration::from_secs(30)).await;
    });
    let mut read = Vec::new();
    let mut buffer = [0u8; 4096];
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let text = String::from_utf8_lossy(&read).to_ascii_lowercase();
        if let Some(end) = text.find("\r\n\r\n") {
            let length = text[..end]
                .lines()
                .find_map(|line| line.strip_prefix("content-length:"))
                .and_then(|n| n.trim().parse::<usize>().ok())
                .unwrap_or(0);
            if read.len() >= end + 4 + length {
                break;
            }
        }
        match tokio::time::timeout_at(deadline, reader.read(&mut buffer)).await {
            Ok(Ok(n)) if n > 0 => read.extend_from_slice(&buffer[..n]),
            _ => break,
        }
    }
    writing.abort();
    let text = String::from_utf8_lossy(&read).into_owned();
    let status = text
        .strip_prefix("HTTP/1.1 ")
        .or_else(|| text.strip_prefix("HTTP/1.0 "))
        .and_then(|rest| rest.get(..3))
        .and_then(|code| code.parse().ok())
        .unwrap_or(0);
    (status, text)
}

/// `request` over a raw socket (see [`Hostile::raw`]), its answer read as a [`Reply`].
async fn raw_request(address: &str, request: &Hostile) -> Result<Reply, String> {
    let mut head = format!(
        "{} {} HTTP/1.1\r\nHost: {address}\r\nContent-Length: {}\r\n",
        request.method,
        request.path,
        request.body.len()
    )
    .into_bytes();
    for (name, value) in &request.headers {
        head.extend_from_slice(format!("{name}: ").as_bytes());
        head.extend_from_slice(value);
        head.extend_from_slice(b"\r\n");
    }
    head.extend_from_slice(b"\r\n");
    let (status, text) = raw_exchange(address, &head, &request.body).await;
    if status == 0 {
        return Err(format!("no answer over a raw socket: {text:?}"));
    }
    let (answer_head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let mut headers = hyper::HeaderMap::new();
    for line in answer_head.lines().skip(1) {
        if let Some((name, value)) = line.split_once(':')
            && let (Ok(name), Ok(value)) = (
                hyper::header::HeaderName::from_bytes(name.trim().as_bytes()),
                hyper::header::HeaderValue::from_str(value.trim()),
            )
        {
            headers.append(name, value);
        }
    }
    Ok(Reply {
        status,
        headers,
        body: body.as_bytes().to_vec(),
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn twelve_thousand_hostile_requests_get_no_5xx_only_problems_and_write_only_what_they_say() {
    let material = Arc::new(Material::load());
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(
        dir.path(),
        &[
            "--channel-secret",
            &format!("voice={VOICE_SECRET}"),
            "--channel-secret",
            &format!("x={X_SECRET}"),
            "--body-timeout-secs",
            "5",
            // Readiness as a deployment has it (test servers are strict by default): the
            // probes of the run are judged with the default lag a probe allows.
            "--ready-max-lag-secs",
            "5",
        ],
    );
    let http = Http::default();
    wait_ready(&http, &server).await;
    let pid = server.child.id();
    let records_before = log_records(&http, &server, None).await;
    let before = memory_of(pid);
    let started = Instant::now();

    let next = Arc::new(AtomicUsize::new(0));
    let workers: Vec<_> = (0..CONNECTIONS)
        .map(|_| {
            let (material, next, http, base) = (
                material.clone(),
                next.clone(),
                http.clone(),
                server.base.clone(),
            );
            tokio::spawn(async move {
                let mut tally = Tally::default();
                loop {
                    let n = next.fetch_add(1, Ordering::Relaxed);
                    if n >= REQUESTS {
                        return tally;
                    }
                    let request = hostile_request(&material, n);
                    let headers: Vec<(&str, &[u8])> = request
                        .headers
                        .iter()
                        .map(|(k, v)| (*k, v.as_slice()))
                        .collect();
                    let reply = if request.raw {
                        raw_request(base.trim_start_matches("http://"), &request).await
                    } else {
                        http.request(
                            &request.method,
                            &format!("{base}{}", request.path),
                            &headers,
                            request.body.clone(),
                        )
                        .await
                    };
                    judge(&mut tally, &request, reply);
                }
            })
        })
        .collect();
    let mut tally = Tally::default();
    for worker in workers {
        let done = worker.await.unwrap();
        for (status, count) in done.by_status {
            *tally.by_status.entry(status).or_default() += count;
        }
        tally.written += done.written;
        tally.ready += done.ready;
        tally.failures.extend(done.failures);
    }
    let sent_in = started.elapsed();

    // What only a raw socket sends: bodies cut short, a chunked body past the limit,
    // broken chunking, malformed HTTP. The server answers each with a problem and stays up.
    let address = server.base.trim_start_matches("http://").to_owned();
    let raw: Vec<(&str, Vec<u8>, Vec<u8>)> = vec![
        (
            "body shorter than its length",
            b"POST /v1/events HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 500\r\n\r\n".to_vec(),
            b"[{\"type\":\"hold\"".to_vec(),
        ),
        (
            "chunked body past the limit",
            b"POST /v1/events HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec(),
            {
                let mut body = Vec::new();
                for _ in 0..(LIMIT / 65_536 + 2) {
                    body.extend_from_slice(b"10000\r\n");
                    body.extend(std::iter::repeat_n(b'[', 65_536));
                    body.extend_from_slice(b"\r\n");
                }
                body.extend_from_slice(b"0\r\n\r\n");
                body
            },
        ),
        (
            "broken chunking",
            b"POST /v1/events HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec(),
            b"zz\r\n[]\r\n0\r\n\r\n".to_vec(),
        ),
        (
            "a content length that is not a number",
            b"POST /v1/events HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n".to_vec(),
            Vec::new(),
        ),
        (
            "two content lengths",
            b"POST /v1/events HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\n[]".to_vec(),
            Vec::new(),
        ),
        ("a request line of bad bytes", b"GET /v1/\xff\x00 HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(), Vec::new()),
        ("not HTTP", b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n".to_vec(), Vec::new()),
        (
            "a header of 100 KB",
            format!("GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n", "a".repeat(100_000)).into_bytes(),
            Vec::new(),
        ),
        (
            "a header of 500 KB",
            format!("GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n", "a".repeat(500_000)).into_bytes(),
            Vec::new(),
        ),
        (
            "120 headers",
            format!(
                "GET /healthz HTTP/1.1\r\nHost: x\r\n{}\r\n",
                (0..120).map(|n| format!("X-H{n}: v\r\n")).collect::<String>()
            )
            .into_bytes(),
            Vec::new(),
        ),
        ("HTTP/1.0 without a host", b"GET /v1/queues HTTP/1.0\r\n\r\n".to_vec(), Vec::new()),
    ];
    let mut raw_statuses = Vec::new();
    for (what, head, rest) in &raw {
        let (status, text) = raw_exchange(&address, head, rest).await;
        assert!((200..500).contains(&status), "{what}: {text}");
        let lower = text.to_ascii_lowercase();
        if status >= 400 {
            assert!(
                lower.contains("content-type: application/problem+json"),
                "{what}: {text}"
            );
            let (_, body) = text.split_once("\r\n\r\n").unwrap_or_default();
            let problem: Value = serde_json::from_str(body).unwrap_or_else(|e| {
                panic!("{what}: a problem body that is not JSON ({e}): {text}")
            });
            assert_eq!(problem["status"], status, "{what}: {text}");
        }
        raw_statuses.push((*what, status));
    }
    for (what, status) in [("a header of 500 KB", 431), ("120 headers", 431)] {
        assert!(
            raw_statuses.contains(&(what, status)),
            "{what}: {raw_statuses:?}"
        );
    }
    assert_eq!(
        http.get(&server.url("/healthz")).await.status,
        200,
        "the server is still up"
    );

    wait_ready(&http, &server).await;
    let records_after = log_records(&http, &server, None).await;
    let after = memory_of(pid);
    let total: usize = tally.by_status.values().sum();
    eprintln!(
        "{total} hostile requests in {sent_in:.1?} over {CONNECTIONS} connections; answers by status: {:?}; \
         events written: {}; raw-socket answers: {raw_statuses:?}; RSS {} -> {} KiB (anonymous {} -> {}), peak {} KiB",
        tally.by_status,
        tally.written,
        before.rss_kib,
        after.rss_kib,
        before.anon_kib,
        after.anon_kib,
        after.peak_kib
    );
    let mut kinds = BTreeMap::<String, (usize, &String)>::new();
    for failure in &tally.failures {
        let kind = failure.split(": ").take(2).collect::<Vec<_>>().join(": ");
        let kind: String = kind.chars().take(140).collect();
        kinds.entry(kind).or_insert((0, failure)).0 += 1;
    }
    assert!(
        tally.failures.is_empty(),
        "{} of {total} answers broke the rules; by kind (count, an example):\n{}",
        tally.failures.len(),
        kinds
            .values()
            .map(|(count, example)| format!(
                "{count} x {}",
                example.chars().take(400).collect::<String>()
            ))
            .collect::<Vec<_>>()
            .join("\n")
    );
    assert_eq!(total, REQUESTS);
    assert!(
        tally.ready > 10,
        "too few readiness probes answered ready during the run: {}",
        tally.ready
    );
    assert!(
        tally.written > 100,
        "too few valid requests to prove the log's growth: {}",
        tally.written
    );
    assert!(
        tally
            .by_status
            .keys()
            .filter(|s| (400..500).contains(*s))
            .count()
            >= 5,
        "the refusals are too uniform to prove much: {:?}",
        tally.by_status
    );
    assert_eq!(
        records_after - records_before,
        tally.written,
        "the log grew by other than the events answered 202"
    );
    // Memory the server freed comes back within seconds, not at once (see
    // `heap_settled_under`): what would show a leak is memory that does not.
    let settled =
        heap_settled_under(pid, before.anon_kib + 100 * 1024, Duration::from_secs(20)).await;
    // On failure, what holds the memory: the server's largest mappings by resident size,
    // and its thread count (a thread's allocator heap keeps what it freed until it runs).
    if settled >= before.anon_kib + 100 * 1024 {
        let smaps = std::fs::read_to_string(format!("/proc/{pid}/smaps")).unwrap_or_default();
        let mut maps: Vec<(u64, String)> = Vec::new();
        let mut head = String::new();
        for line in smaps.lines() {
            if line.contains('-') && !line.starts_with(|c: char| c.is_ascii_uppercase()) {
                head = line.to_owned();
            } else if let Some(rss) = line.strip_prefix("Rss:") {
                let kib: u64 = rss
                    .trim()
                    .trim_end_matches(" kB")
                    .trim()
                    .parse()
                    .unwrap_or(0);
                maps.push((kib, head.clone()));
            }
        }
        maps.sort_by_key(|map| std::cmp::Reverse(map.0));
        let threads = std::fs::read_dir(format!("/proc/{pid}/task"))
            .map(|d| d.count())
            .unwrap_or(0);
        eprintln!(
            "the server has {threads} threads; its largest mappings (KiB resident): {:#?}",
            &maps[..maps.len().min(12)]
        );
    }
    assert!(
        settled < before.anon_kib + 100 * 1024,
        "anonymous memory grew from {} to {} KiB right after the requests, and was still {} KiB 20 s later",
        before.anon_kib,
        after.anon_kib,
        settled
    );
    assert!(
        after.peak_kib < 500 * 1024,
        "peak RSS {} KiB",
        after.peak_kib
    );
    server.stop();
}
