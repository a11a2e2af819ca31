//! Who owns which partitions, published on the compacted topic `omnilog.ownership`, so
//! that any instance can send a query to the owner of a customer's partition and gather
//! the partials of a global query from every owner.
//!
//! Every projector instance publishes its [`Claim`] (keyed by instance) when it changes
//! and every second; every instance reads the whole topic. A claim is live while it is
//! recent: a SIGKILLed instance's claim goes stale within [`OwnershipBoard::live_claims`]'s
//! age, by which time Kafka's group has handed its partitions to the survivors. Until then
//! two claims may cover one partition; readers check coverage and answer 503 rather than
//! count a partition twice.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rdkafka::Message;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use rdkafka::types::RDKafkaErrorCode;
use serde::{Deserialize, Serialize};

use crate::{KafkaConfig, KafkaError};

/// The topic of claims: one partition, compacted (the latest claim per instance).
pub const OWNERSHIP_TOPIC: &str = "omnilog.ownership";

/// How long a claim is tried before it is given up: a newer one follows within a second.
pub const CLAIM_DELIVERY_TIMEOUT: Duration = Duration::from_secs(3);

/// What one projector instance says about itself.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claim {
    /// Unique per process.
    pub instance: String,
    /// Where its HTTP API answers.
    pub url: String,
    /// Its Kafka consumer group: instances of one group share the partitions.
    pub group: String,
    /// The views it projects.
    pub views: Vec<String>,
    /// Interactions partitions the group gave it.
    pub assigned: Vec<u32>,
    /// Of those, the ones whose projections have caught up since they were assigned:
    /// the ones it answers for.
    pub ready: Vec<u32>,
    /// The publisher's clock, in milliseconds since the epoch.
    pub at_ms: u64,
    /// Said once when it stops: forget it now.
    pub leaving: bool,
}

/// Milliseconds since the epoch, for claims.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// The claims of every instance, kept current by a reader of the topic.
pub struct OwnershipBoard {
    claims: Arc<RwLock<BTreeMap<String, Claim>>>,
    producer: FutureProducer,
    timeout: Duration,
    stop: Arc<AtomicBool>,
    reader: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for OwnershipBoard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OwnershipBoard").finish_non_exhaustive()
    }
}

impl OwnershipBoard {
    /// Creates the topic when missing and starts reading it from the beginning.
    pub async fn open(config: &KafkaConfig) -> Result<Self, KafkaError> {
        let admin: AdminClient<DefaultClientContext> = config.client().create()?;
        let topic = NewTopic::new(
            OWNERSHIP_TOPIC,
            1,
            TopicReplication::Fixed(config.replication),
        )
        .set("cleanup.policy", "compact");
        let options = AdminOptions::new()
            .operation_timeout(Some(config.request_timeout))
            .request_timeout(Some(config.request_timeout));
        for result in admin.create_topics([&topic], &options).await? {
            match result {
                Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
                Err((topic, code)) => {
                    return Err(KafkaError::CreateTopic {
                        topic,
                        reason: code.to_string(),
                    });
                }
            }
        }
        // A claim is said again every second and readers keep the newest by its time, so
        // a claim that is lost, doubled or late harms nothing. Not idempotent, then: an
        // idempotent producer that loses track of its sequence stops for good, and
        // librdkafka's default message timeout (five minutes) would hold a publisher that
        // long on a broker that does not answer. A claim older than its lifetime is
        // useless, so it is given up after CLAIM_DELIVERY_TIMEOUT.
        let producer: FutureProducer = config
            .client()
            .set("enable.idempotence", "false")
            .set("acks", "all")
            .set(
                "message.timeout.ms",
                CLAIM_DELIVERY_TIMEOUT.as_millis().to_string(),
            )
            .create()?;
        let consumer: BaseConsumer = config
            .client()
            .set("group.id", format!("{}-ownership", config.client_id))
            .set("enable.auto.commit", "false")
            .set("fetch.wait.max.ms", "100")
            .create()?;
        let mut list = TopicPartitionList::new();
        list.add_partition_offset(OWNERSHIP_TOPIC, 0, Offset::Beginning)?;
        consumer.assign(&list)?;
        let claims = Arc::new(RwLock::new(BTreeMap::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let reader = {
            let claims = claims.clone();
            let stop = stop.clone();
            std::thread::Builder::new()
                .name("ownership-reader".to_owned())
                .spawn(move || read_claims(consumer, claims, stop))
                .map_err(|error| {
                    KafkaError::Log(omnilog_log::LogError::Unavailable(error.to_string()))
                })?
        };
        Ok(OwnershipBoard {
            claims,
            producer,
            timeout: config.delivery_timeout,
            stop,
            reader: Some(reader),
        })
    }

    /// Publishes this instance's claim and waits for the broker's confirmation.
    pub async fn publish(&self, claim: &Claim) -> Result<(), KafkaError> {
        let payload = serde_json::to_vec(claim).unwrap_or_default();
        let record = FutureRecord::to(OWNERSHIP_TOPIC)
            .partition(0)
            .key(claim.instance.as_bytes())
            .payload(&payload);
        self.producer
            .send(record, self.timeout.min(CLAIM_DELIVERY_TIMEOUT))
            .await
            .map_err(|(error, _)| KafkaError::Client(error))?;
        // Seen by this instance at once, not only when its reader comes round.
        remember(&self.claims, claim.clone());
        Ok(())
    }

    /// The claims published within `max_age`, by instance.
    pub fn live_claims(&self, max_age: Duration) -> Vec<Claim> {
        let oldest = now_ms().saturating_sub(max_age.as_millis() as u64);
        self.claims
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .values()
            .filter(|claim| claim.at_ms >= oldest)
            .cloned()
            .collect()
    }
}

impl Drop for OwnershipBoard {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(reader) = self.reader.take() {
            let _ = reader.join();
        }
    }
}

fn remember(claims: &RwLock<BTreeMap<String, Claim>>, claim: Claim) {
    let mut claims = claims
        .write()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if claim.leaving {
        claims.remove(&claim.instance);
        return;
    }
    match claims.get(&claim.instance) {
        // The reader may deliver an instance's older claim after its newer own publish.
        Some(known) if known.at_ms > claim.at_ms => {}
        _ => {
            claims.insert(claim.instance.clone(), claim);
        }
    }
}

fn read_claims(
    consumer: BaseConsumer,
    claims: Arc<RwLock<BTreeMap<String, Claim>>>,
    stop: Arc<AtomicBool>,
) {
    while !stop.load(Ordering::Acquire) {
        match consumer.poll(Duration::from_millis(200)) {
            None => {}
            Some(Err(error)) => tracing::debug!(%error, "ownership reader"),
            Some(Ok(message)) => {
                match message
                    .payload()
                    .map(serde_json::from_slice::<Claim>)
                    .transpose()
                {
                    Ok(Some(claim)) => remember(&claims, claim),
                    // A tombstone or a foreign record: nothing to learn.
                    Ok(None) => {}
                    Err(error) => tracing::warn!(%error, "an unreadable ownership claim"),
                }
            }
        }
    }
}
