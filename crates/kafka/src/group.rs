//! Membership of a projector group: which partitions of the interactions topic this
//! instance owns, decided by a Kafka consumer group.
//!
//! The group's consumer never hands records to anyone: as soon as partitions are assigned
//! they are paused, and the projectors read them through their own positioned readers
//! from the positions stored with their state. The consumer exists for Kafka's group
//! protocol: spreading partitions over instances, noticing a dead one (session timeout),
//! and giving its partitions to the survivors. Progress is committed to the group only so
//! that Kafka's tools show the projectors' lag; it is never read back.

use std::collections::BTreeSet;
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::Duration;

use omnilog_log::Topic;
use rdkafka::ClientContext;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use tokio::sync::watch;

use crate::{KafkaConfig, KafkaError};

/// How fast a dead instance's partitions move: Kafka's session timeout.
const SESSION_TIMEOUT: Duration = Duration::from_secs(6);

enum Command {
    Commit(Vec<(u32, u64)>),
    Leave,
}

/// This instance's seat in a group.
#[derive(Debug)]
pub struct GroupMembership {
    owned: watch::Receiver<Option<BTreeSet<u32>>>,
    commands: mpsc::Sender<Command>,
    thread: Option<JoinHandle<()>>,
}

impl GroupMembership {
    /// Joins `group`; `member` names this instance in Kafka's group listings.
    pub fn join(config: &KafkaConfig, group: &str, member: &str) -> Result<Self, KafkaError> {
        let (publish, owned) = watch::channel(None);
        let consumer: BaseConsumer<Seat> = config
            .client()
            .set("group.id", group)
            .set("client.id", member)
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set(
                "session.timeout.ms",
                SESSION_TIMEOUT.as_millis().to_string(),
            )
            .set("heartbeat.interval.ms", "1000")
            // Nothing is consumed, so a slow projector never makes the member look stuck.
            .set("max.poll.interval.ms", "300000")
            .set("queued.max.messages.kbytes", "1024")
            .create_with_context(Seat { publish })?;
        consumer.subscribe(&[Topic::Interactions.name()])?;
        let (commands, receive) = mpsc::channel();
        let thread = std::thread::Builder::new()
            .name(format!("group-{group}"))
            .spawn(move || run(consumer, receive))
            .map_err(|error| {
                KafkaError::Log(omnilog_log::LogError::Unavailable(error.to_string()))
            })?;
        Ok(GroupMembership {
            owned,
            commands,
            thread: Some(thread),
        })
    }

    /// The partitions owned now; `None` until the first assignment. Changes on every
    /// rebalance.
    pub fn owned(&self) -> watch::Receiver<Option<BTreeSet<u32>>> {
        self.owned.clone()
    }

    /// Reports the projectors' positions to the group (for lag in Kafka's tools).
    pub fn report_progress(&self, positions: Vec<(u32, u64)>) {
        let _ = self.commands.send(Command::Commit(positions));
    }

    /// Leaves the group at once, so the others get the partitions without waiting for the
    /// session timeout.
    pub fn leave(mut self) {
        self.stop();
    }

    fn stop(&mut self) {
        let _ = self.commands.send(Command::Leave);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for GroupMembership {
    fn drop(&mut self) {
        self.stop();
    }
}

fn partitions_of(list: &TopicPartitionList) -> BTreeSet<u32> {
    list.elements()
        .iter()
        .filter(|element| element.topic() == Topic::Interactions.name())
        .map(|element| element.partition() as u32)
        .collect()
}

/// Hears the group's decisions. The protocol is eager: a rebalance first revokes every
/// partition (this instance then owns nothing, and says so), then assigns the new set.
struct Seat {
    publish: watch::Sender<Option<BTreeSet<u32>>>,
}

impl ClientContext for Seat {}

impl ConsumerContext for Seat {
    fn post_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Assign(list) => {
                // Nothing is consumed through the group: pause before any fetch starts.
                if list.count() > 0
                    && let Err(error) = consumer.pause(list)
                {
                    tracing::warn!(%error, "cannot pause the group's partitions");
                }
                let owned = partitions_of(list);
                tracing::info!(partitions = ?owned, "group assignment");
                let _ = self.publish.send(Some(owned));
            }
            Rebalance::Revoke(list) => {
                tracing::info!(partitions = ?partitions_of(list), "group revoked partitions");
                let _ = self.publish.send(Some(BTreeSet::new()));
            }
            Rebalance::Error(error) => tracing::warn!(%error, "group rebalance failed"),
        }
    }
}

fn run(consumer: BaseConsumer<Seat>, commands: mpsc::Receiver<Command>) {
    loop {
        match commands.try_recv() {
            Ok(Command::Leave) | Err(mpsc::TryRecvError::Disconnected) => break,
            Ok(Command::Commit(positions)) => {
                let mut list = TopicPartitionList::new();
                for (partition, offset) in positions {
                    let _ = list.add_partition_offset(
                        Topic::Interactions.name(),
                        partition as i32,
                        Offset::Offset(offset as i64),
                    );
                }
                if list.count() > 0
                    && let Err(error) = consumer.commit(&list, CommitMode::Async)
                {
                    tracing::debug!(%error, "could not report progress to the group");
                }
            }
            Err(mpsc::TryRecvError::Empty) => {}
        }
        // Serves the group protocol: joins, rebalances (the callbacks run in here).
        if let Some(Err(error)) = consumer.poll(Duration::from_millis(100)) {
            tracing::debug!(%error, "group consumer");
        }
    }
    // Closing the consumer leaves the group (librdkafka sends LeaveGroup).
    consumer.unsubscribe();
    drop(consumer);
}
