//! Faults on Kafka, injected with librdkafka's mock cluster (in this test process, on
//! loopback) under the real `omnilog ingest-server`:
//! - every broker down: requests get 503 with `Retry-After`; once the brokers are back
//!   the client's retries land, and the log holds every acknowledged event exactly once,
//!   even after the client sends acknowledged events again;
//! - injected produce errors and round-trip latency: every request is acknowledged and
//!   the idempotent producer's retries store no event twice;
//! - a record the producer reports delivered by inference, without an offset, is refused
//!   rather than acknowledged at a position that does not exist.

mod support;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use omnilog_kafka::{KafkaConfig, KafkaLog};
use omnilog_log::{
    AppendOutcome, AppendRecord, EventLog, LogError, PartitionCounts, RecordFate, Topic,
};
use rdkafka::mocking::MockCluster;
use rdkafka::producer::DefaultProducerContext;
use rdkafka::types::{RDKafkaApiKey, RDKafkaRespErr};
use serde_json::{Value, json};
use support::{Http, Server};

const PARTITIONS: i32 = 6;
const BROKERS: i32 = 3;

fn cluster() -> MockCluster<'static, DefaultProducerContext> {
    let cluster = MockCluster::new(BROKERS).expect("mock cluster");
    // The mock brokers do not implement CreateTopics; make the topics as an operator would.
    for topic in Topic::ALL {
        cluster
            .create_topic(topic.name(), PARTITIONS, 1)
            .expect("create topic");
    }
    cluster
}

fn ingest_server(
    cluster: &MockCluster<'_, DefaultProducerContext>,
    dir: &std::path::Path,
    delivery_timeout_ms: u64,
) -> Server {
    Server::start_command(
        "ingest-server",
        dir,
        &[
            "--brokers",
            &cluster.bootstrap_servers(),
            "--partitions",
            &PARTITIONS.to_string(),
            "--delivery-timeout-ms",
            &delivery_timeout_ms.to_string(),
        ],
    )
}

fn event(n: usize) -> Value {
    json!({
        "event_id": uuid::Uuid::from_u128(0xfa17_0000 + n as u128).to_string(),
        "source": "test",
        "source_event_id": format!("fault-{n}"),
        "occurred_at": "2026-03-02T09:00:00Z",
        "customer": {"handles": [{"kind": "email", "value": format!("customer{}@example.com", n % 17)}]},
        "interaction_id": format!("chat-{n}"),
        "channel": "chat",
        "type": "interaction_started",
        "direction": "inbound"
    })
}

async fn post(http: &Http, server: &Server, n: usize) -> Result<support::Answer, String> {
    http.try_send(
        "POST",
        &server.url("/v1/events"),
        "application/json",
        json!([event(n)]).to_string().into_bytes(),
    )
    .await
}

/// How many times each event id is stored in the interactions topic.
async fn stored_copies(
    cluster: &MockCluster<'_, DefaultProducerContext>,
) -> BTreeMap<uuid::Uuid, usize> {
    let mut copies = BTreeMap::new();
    for (_, id) in stored_events(cluster).await {
        *copies.entry(id).or_insert(0) += 1;
    }
    copies
}

/// The event id stored at each position (partition, offset) of the interactions topic.
async fn stored_events(
    cluster: &MockCluster<'_, DefaultProducerContext>,
) -> BTreeMap<(u32, u64), uuid::Uuid> {
    let mut config = KafkaConfig::new(cluster.bootstrap_servers());
    config.partitions = PartitionCounts::uniform(PARTITIONS as u32);
    config.client_id = "fault-test-reader".to_owned();
    let log = KafkaLog::open(config)
        .await
        .expect("open the log to check it");
    let mut stored = BTreeMap::new();
    let ends = log
        .end_offsets(Topic::Interactions)
        .await
        .expect("end offsets");
    for (partition, &end) in ends.iter().enumerate() {
        let mut from = 0;
        let deadline = Instant::now() + Duration::from_secs(30);
        while from < end {
            assert!(
                Instant::now() < deadline,
                "could not read partition {partition} back"
            );
            for record in log
                .read(Topic::Interactions, partition as u32, from, 1_000)
                .await
                .expect("read")
            {
                from = record.offset + 1;
                stored.insert((partition as u32, record.offset), record.event_id);
            }
        }
    }
    stored
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn brokers_down_give_503_and_after_recovery_every_acknowledged_event_is_stored_once() {
    let cluster = cluster();
    let dir = tempfile::tempdir().unwrap();
    // A short delivery timeout: the 503 comes quickly while the brokers are down.
    let server = ingest_server(&cluster, dir.path(), 2_000);
    let http = Http::default();
    let mut acknowledged = Vec::new();
    for n in 0..40 {
        let answer = post(&http, &server, n).await.expect("an answer");
        assert_eq!(answer.status, 202, "{:?}", answer.body);
        acknowledged.push(n);
    }

    for broker in 1..=BROKERS {
        cluster.broker_down(broker).expect("broker down");
    }
    let mut refused = Vec::new();
    // Ten clients at once, as a desk's traffic would keep coming.
    let attempts: Vec<_> = (40..50)
        .map(|n| {
            let http = http.clone();
            let url = server.url("/v1/events");
            tokio::spawn(async move {
                let body = json!([event(n)]).to_string().into_bytes();
                (
                    n,
                    http.try_send("POST", &url, "application/json", body).await,
                )
            })
        })
        .collect();
    for attempt in attempts {
        let (n, answer) = attempt.await.expect("client task");
        let answer = answer.expect("an answer");
        match answer.status {
            202 => acknowledged.push(n),
            503 => {
                assert_eq!(answer.content_type, "application/problem+json");
                assert!(answer.retry_after.is_some(), "503 without Retry-After");
                // Its records were handed to the producer and not confirmed: stored or
                // not, nobody knows, and the answer says so.
                assert_eq!(
                    answer.body["type"], "/problems/write-unconfirmed",
                    "{:?}",
                    answer.body
                );
                refused.push(n);
            }
            other => panic!("brokers down gave {other}: {:?}", answer.body),
        }
    }
    assert!(
        refused.len() >= 8,
        "with every broker down, requests must be refused (refused {refused:?})"
    );

    for broker in 1..=BROKERS {
        cluster.broker_up(broker).expect("broker up");
    }
    // The client retries what was refused, as Retry-After tells it to.
    let deadline = Instant::now() + Duration::from_secs(60);
    for n in refused {
        loop {
            let answer = post(&http, &server, n).await.expect("an answer");
            if answer.status == 202 {
                acknowledged.push(n);
                break;
            }
            assert_eq!(answer.status, 503, "{:?}", answer.body);
            assert!(Instant::now() < deadline, "the retries never landed");
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    // A client that never saw its answers sends some acknowledged events again: they are
    // answered as duplicates and not stored twice (ingest knows what the log holds).
    for n in [0, 1, 2, 39, 45] {
        let answer = post(&http, &server, n).await.expect("an answer");
        assert_eq!(answer.status, 202, "{:?}", answer.body);
        assert_eq!(
            answer.body["duplicates"], 1,
            "event {n} again: {:?}",
            answer.body
        );
        assert_eq!(answer.body["accepted"], 0);
    }

    let copies = stored_copies(&cluster).await;
    for n in &acknowledged {
        let id = uuid::Uuid::from_u128(0xfa17_0000 + *n as u128);
        assert_eq!(
            copies.get(&id),
            Some(&1),
            "event {n} is stored {:?} times",
            copies.get(&id)
        );
    }
    assert_eq!(
        copies.len(),
        acknowledged.len(),
        "nothing but the acknowledged events"
    );
    server.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn injected_produce_errors_and_latency_store_no_event_twice() {
    let cluster = cluster();
    let dir = tempfile::tempdir().unwrap();
    // Room for the producer's retries with backoff under 150 ms round trips.
    let server = ingest_server(&cluster, dir.path(), 20_000);
    let http = Http::default();
    // Warm up: the producer has its producer id and connections.
    assert_eq!(post(&http, &server, 0).await.expect("answer").status, 202);

    cluster.request_errors(
        RDKafkaApiKey::Produce,
        &[
            RDKafkaRespErr::RD_KAFKA_RESP_ERR_NOT_ENOUGH_REPLICAS,
            RDKafkaRespErr::RD_KAFKA_RESP_ERR_REQUEST_TIMED_OUT,
            RDKafkaRespErr::RD_KAFKA_RESP_ERR_NOT_ENOUGH_REPLICAS_AFTER_APPEND,
            RDKafkaRespErr::RD_KAFKA_RESP_ERR_LEADER_NOT_AVAILABLE,
            RDKafkaRespErr::RD_KAFKA_RESP_ERR_REQUEST_TIMED_OUT,
        ],
    );
    for broker in 1..=BROKERS {
        cluster
            .broker_round_trip_time(broker, Duration::from_millis(150))
            .expect("latency");
    }
    // Concurrent clients, so produce requests carry several records each.
    let mut clients = Vec::new();
    for client in 0..8 {
        let http = http.clone();
        let url = server.url("/v1/events");
        clients.push(tokio::spawn(async move {
            let mut statuses = Vec::new();
            for i in 0..15 {
                let n = 1 + client * 15 + i;
                // A record the producer reports stored by inference, not by the broker, is
                // refused (503): the client sends it again, as clients do.
                let mut attempts = 0;
                // The problem type of every refusal before the answer.
                let mut refusals = Vec::new();
                let answer = loop {
                    attempts += 1;
                    let answer = http
                        .try_send(
                            "POST",
                            &url,
                            "application/json",
                            json!([event(n)]).to_string().into_bytes(),
                        )
                        .await
                        .expect("an answer");
                    if answer.status != 503 || attempts == 5 {
                        break answer;
                    }
                    eprintln!("event {n} refused, sent again: {:?}", answer.body);
                    refusals.push(answer.body["type"].as_str().unwrap_or("").to_owned());
                    tokio::time::sleep(Duration::from_millis(200)).await;
                };
                statuses.push((n, answer, refusals));
            }
            statuses
        }));
    }
    let mut acknowledged = vec![0];
    // What each event's request was answered: named when an event is not read back, to tell
    // an event stored and lost from one the server took for a duplicate.
    let mut answers = BTreeMap::new();
    for client in clients {
        for (n, answer, refusals) in client.await.expect("client task") {
            assert_eq!(
                answer.status, 202,
                "event {n}: injected errors are retried by the producer, or the request refused and sent again"
            );
            // A request refused because the producer reported its record delivered by
            // inference may still have reached the broker (CI saw it: the record was at
            // offset 0 of its partition): sent again, it is then a duplicate, with the
            // position the log holds it at. Stored once either way (checked below). Every
            // refusal said so: its problem is an unconfirmed write, not "nothing written".
            assert!(
                refusals
                    .iter()
                    .all(|problem| problem == "/problems/write-unconfirmed"),
                "event {n} refused as {refusals:?}"
            );
            let duplicate_of_a_refused_request = !refusals.is_empty()
                && answer.body["duplicates"] == 1
                && answer.body["positions"][0]["duplicate"] == true;
            assert!(
                answer.body["accepted"] == 1 || duplicate_of_a_refused_request,
                "event {n}, stored by none of its requests before (or, sent again after a refusal, \
                 by the refused one), is taken as new: {:?}",
                answer.body
            );
            acknowledged.push(n);
            answers.insert(n, answer.body);
        }
    }
    let mut copies = stored_copies(&cluster).await;
    // Once in several runs under load (CI, and two busy loops here), one acknowledged event
    // was not among those read back (120 of 121): its answer named offset 2^64 - 1001, a
    // record librdkafka reported delivered by inference (see `delivered_position` in
    // omnilog-kafka), which the mock cluster had not stored. Such records are refused now.
    // A record visible late is still told from one never stored: read again for a while.
    let id_of = |n: usize| uuid::Uuid::from_u128(0xfa17_0000 + n as u128);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let missing: Vec<usize> = acknowledged
            .iter()
            .copied()
            .filter(|n| !copies.contains_key(&id_of(*n)))
            .collect();
        if missing.is_empty() || Instant::now() >= deadline {
            break;
        }
        eprintln!("acknowledged events {missing:?} not read back yet; reading again");
        tokio::time::sleep(Duration::from_millis(500)).await;
        copies = stored_copies(&cluster).await;
    }
    let missing: Vec<_> = acknowledged
        .iter()
        .filter(|n| !copies.contains_key(&id_of(**n)))
        .collect();
    if !missing.is_empty() {
        // What the positions the server answered hold now: another event's record (the
        // broker acknowledged a write it did not keep), or nothing.
        let stored = stored_events(&cluster).await;
        let told: Vec<_> = missing
            .iter()
            .map(|n| {
                let answer = answers.get(*n);
                let position = answer.map(|body| {
                    let at = &body["positions"][0];
                    (at["partition"].as_u64(), at["offset"].as_u64())
                });
                let holds = position.and_then(|(partition, offset)| {
                    stored.get(&(partition? as u32, offset?)).copied()
                });
                (n, answer, holds)
            })
            .collect();
        panic!(
            "acknowledged but not stored (event, its answer, what its position holds): {told:?}"
        );
    }
    assert_eq!(copies.len(), acknowledged.len());
    let twice: Vec<_> = copies.iter().filter(|(_, count)| **count != 1).collect();
    assert!(twice.is_empty(), "stored more than once: {twice:?}");
    server.stop();
}

/// librdkafka's idempotent producer reports a record delivered, without an offset, when a
/// request of it failed with an uncertain outcome and a later request to the same partition
/// succeeded ("implicit ack"). The mock brokers do not check producer sequences, so there
/// the record was never stored: the append must be refused, not answered with offset 2^64 -
/// 1001. Two appends to one partition, the second sent inside the first's round trip, the
/// first failing with a timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_record_acknowledged_only_by_inference_is_refused() {
    let cluster = cluster();
    let mut config = KafkaConfig::new(cluster.bootstrap_servers());
    config.partitions = PartitionCounts::uniform(PARTITIONS as u32);
    config.client_id = "implicit-ack-test".to_owned();
    config.delivery_timeout = Duration::from_secs(20);
    let log = std::sync::Arc::new(KafkaLog::open(config).await.expect("open the log"));
    let record = |n: u128| AppendRecord {
        topic: Topic::Interactions,
        key: "one-customer".to_owned(),
        event_id: uuid::Uuid::from_u128(0x1a7e_0000 + n),
        payload: bytes::Bytes::from_static(b"payload"),
        headers: Vec::new(),
    };
    // Warm up: the producer has its producer id and connections.
    log.append(vec![record(0)]).await.expect("the first append");
    for broker in 1..=BROKERS {
        cluster
            .broker_round_trip_time(broker, Duration::from_millis(150))
            .expect("latency");
    }
    let mut refused = 0;
    for round in 0..3u128 {
        cluster.request_errors(
            RDKafkaApiKey::Produce,
            &[RDKafkaRespErr::RD_KAFKA_RESP_ERR_REQUEST_TIMED_OUT],
        );
        let first = tokio::spawn({
            let log = log.clone();
            async move { log.append(vec![record(1 + 2 * round)]).await }
        });
        tokio::time::sleep(Duration::from_millis(30)).await;
        let second = log.append(vec![record(2 + 2 * round)]).await;
        let first = first.await.expect("append task");
        for (which, outcome, n) in [
            ("first", first, 1 + 2 * round),
            ("second", second, 2 + 2 * round),
        ] {
            match outcome {
                Ok(outcomes) => {
                    for outcome in outcomes {
                        let AppendOutcome::Appended(position) = outcome else {
                            panic!("the {which} record of round {round} is new: {outcome:?}");
                        };
                        assert!(
                            position.offset < 1 << 32,
                            "the {which} record of round {round} is acknowledged at a real offset: {position:?}"
                        );
                    }
                }
                // Refused as unconfirmed, not unavailable: the record may be stored.
                Err(LogError::Unconfirmed { message, fates }) => {
                    assert!(
                        message.contains("without its offset"),
                        "the {which} record of round {round}: {message}"
                    );
                    // The record is in doubt in its key's partition, from where that
                    // partition ended before it was sent: no copy of it lies below.
                    let [RecordFate::InDoubt { partition, from }] = fates.as_slice() else {
                        panic!("the {which} record of round {round}: {fates:?}");
                    };
                    assert_eq!(
                        *partition,
                        omnilog_log::partition_for(b"one-customer", PARTITIONS as u32)
                    );
                    let below = if *from == 0 {
                        Vec::new()
                    } else {
                        omnilog_log::read_before_end(
                            &*log,
                            Topic::Interactions,
                            *partition,
                            0,
                            *from as usize,
                        )
                        .await
                        .expect("the records below the doubt")
                    };
                    assert!(
                        below
                            .iter()
                            .filter(|stored| stored.offset < *from)
                            .all(|stored| stored.event_id != record(n).event_id),
                        "the {which} record of round {round} is stored below {from}, where it is in doubt from"
                    );
                    assert!(*from > 0, "the warm-up record lies below every doubt");
                    refused += 1;
                }
                Err(error) => panic!("the {which} record of round {round}: {error}"),
            }
        }
    }
    assert!(
        refused > 0,
        "no record was acknowledged by inference in three rounds: the test tested nothing"
    );
}
