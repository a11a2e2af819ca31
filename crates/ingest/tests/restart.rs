//! After a restart, ingest remembers the newest event ids of every partition, so that a
//! redelivery of a recent event is answered as a duplicate on a log that keeps no index of
//! event ids (Kafka). Folding the log partition after partition and remembering every id,
//! it kept those read last: the last partitions' ids, none of the first ones' newest.

mod common;

use std::sync::Arc;

use common::LikeKafka;
use omnilog_ingest::{Ingest, IngestConfig};
use omnilog_log::EventLog;
use serde_json::json;

fn event(n: usize) -> omnilog_events::Event {
    omnilog_events::parse_event(
        json!({
            "source": "test", "source_event_id": format!("e{n}"),
            "occurred_at": "2026-03-02T09:00:00Z",
            "customer": {"handles": [{"kind": "phone", "value": format!("+1555000{n:04}")}]},
            "interaction_id": format!("chat-{n}"), "channel": "chat",
            "type": "interaction_started", "direction": "inbound",
        })
        .to_string()
        .as_bytes(),
    )
    .unwrap()
}

#[tokio::test]
async fn after_a_restart_the_newest_events_of_every_partition_are_known() {
    let log = Arc::new(LikeKafka::default());
    // Room for 8 ids: 2 for each of the 4 partitions.
    let config = IngestConfig {
        remembered_event_ids: 8,
        ..IngestConfig::default()
    };
    let ingest = Ingest::start(log.clone() as Arc<dyn EventLog>, config.clone())
        .await
        .unwrap();
    let mut newest_of = std::collections::BTreeMap::new();
    for n in 0..40 {
        let receipt = ingest.submit(vec![event(n)]).await.unwrap();
        newest_of.insert(receipt.positions[0].partition, n);
    }
    assert_eq!(newest_of.len(), 4, "every partition holds events");
    drop(ingest);
    let restarted = Ingest::start(log.clone() as Arc<dyn EventLog>, config)
        .await
        .unwrap();
    for (partition, n) in newest_of {
        let again = restarted.submit(vec![event(n)]).await.unwrap();
        assert_eq!(
            (again.accepted, again.duplicates),
            (0, 1),
            "the newest event of partition {partition}, sent again after a restart"
        );
    }
    assert!(log.copies().values().all(|&copies| copies == 1));
}
