//! The projector runtime against the embedded log: a view projected live equals the same
//! view folded purely in memory; bad records go to the dead letter without stopping the
//! projection or leaving half an event behind; a restart resumes from the checkpoint; a
//! rebuild swaps in an identical new version; state of another layout is folded again from
//! offset 0; read-your-writes waits for a position.

use std::sync::Arc;
use std::time::Duration;

use omnilog_events::{Body, Destination, Event};
use omnilog_log::{AppendRecord, EmbeddedLog, PartitionCounts, SharedLog, Topic};
use omnilog_projector::{AwaitedPosition, ProjectorConfig, ProjectorMetrics, ViewRuntime};
use omnilog_store::ViewStore;
use omnilog_testkit::{HistoryConfig, history};
use omnilog_views::state::{get_record, put_record};
use omnilog_views::{KeyBuilder, LogPosition, MemoryState, StateStore, View, ViewError};

/// Counts events per customer and per type; refuses `tagged` events about "poison" after
/// writing, so the runtime must undo the half-applied event.
#[derive(Debug)]
struct CountingView;

impl View for CountingView {
    fn name(&self) -> &'static str {
        "counting"
    }

    fn topics(&self) -> &'static [Destination] {
        &[Destination::Interactions, Destination::Agents]
    }

    fn apply(
        &self,
        state: &mut dyn StateStore,
        event: &Event,
        _position: LogPosition,
    ) -> Result<(), ViewError> {
        let by_type = KeyBuilder::table("t")
            .text(event.event_type().as_str())
            .build();
        let count: u64 = get_record(state, &by_type)?.unwrap_or(0);
        put_record(state, by_type, &(count + 1))?;
        if let Some(customer) = event.customer_id() {
            let key = KeyBuilder::table("c").text(customer).build();
            let count: u64 = get_record(state, &key)?.unwrap_or(0);
            put_record(state, key, &(count + 1))?;
        }
        if let Body::Tagged { topics } = &event.body
            && topics.iter().any(|t| t == "poison")
        {
            return Err(ViewError::Unapplicable("poisoned topic".to_owned()));
        }
        Ok(())
    }
}

fn record_of(event: &Event) -> AppendRecord {
    let topic = match event.destination() {
        Destination::Interactions => Topic::Interactions,
        Destination::Agents => Topic::Agents,
    };
    AppendRecord {
        topic,
        key: event.partition_key().unwrap().to_owned(),
        event_id: event.event_id,
        payload: omnilog_events::encode(event).into(),
        headers: Vec::new(),
    }
}

async fn append_history(log: &SharedLog, seed: u64, events: u64) -> Vec<Event> {
    let events: Vec<Event> =
        history(HistoryConfig::with_events(seed, events).with_customer_ids()).collect();
    for chunk in events.chunks(1_000) {
        log.append(chunk.iter().map(record_of).collect())
            .await
            .unwrap();
    }
    events
}

/// The pure fold of the log, partition by partition, as a reference.
async fn fold_in_memory(log: &SharedLog, view: &dyn View) -> MemoryState {
    let mut state = MemoryState::new();
    for &destination in view.topics() {
        let topic = omnilog_projector::topic_of(destination);
        for partition in 0..log.partitions(topic) {
            for record in log.read(topic, partition, 0, usize::MAX).await.unwrap() {
                let Ok(event) = omnilog_events::decode(&record.payload) else {
                    continue;
                };
                let mut attempt = state.clone();
                let position = LogPosition {
                    partition,
                    offset: record.offset,
                };
                if view.apply(&mut attempt, &event, position).is_ok() {
                    state = attempt;
                }
            }
        }
    }
    state
}

async fn caught_up(runtime: &ViewRuntime) {
    for _ in 0..600 {
        if runtime.caught_up().await.unwrap() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("the projection did not catch up in 12 s");
}

struct Setup {
    log: SharedLog,
    dir: tempfile::TempDir,
}

fn setup() -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let log: SharedLog =
        Arc::new(EmbeddedLog::open(&dir.path().join("log"), PartitionCounts::uniform(4)).unwrap());
    Setup { log, dir }
}

async fn start(setup: &Setup) -> Arc<ViewRuntime> {
    start_with(setup, Arc::new(CountingView)).await
}

async fn start_with(setup: &Setup, view: Arc<dyn View>) -> Arc<ViewRuntime> {
    let store = ViewStore::open(&setup.dir.path().join("views")).unwrap();
    ViewRuntime::start(
        setup.log.clone(),
        store,
        vec![view],
        ProjectorConfig::default(),
        ProjectorMetrics::default(),
    )
    .await
    .unwrap()
}

fn dump(runtime: &ViewRuntime) -> Vec<(Vec<u8>, Vec<u8>)> {
    runtime.live("counting").unwrap().table().dump().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_live_projection_equals_the_pure_fold_of_the_log() {
    let setup = setup();
    let runtime = start(&setup).await;
    append_history(&setup.log, 11, 20_000).await;
    caught_up(&runtime).await;
    let expected = fold_in_memory(&setup.log, &CountingView).await;
    assert_eq!(
        dump(&runtime),
        expected.entries.into_iter().collect::<Vec<_>>()
    );
    let checkpoint = runtime.live("counting").unwrap().status().checkpoint();
    assert_eq!(checkpoint.events_applied, 20_000);
    runtime.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_record_goes_to_the_dead_letter_and_leaves_nothing_behind() {
    let setup = setup();
    let runtime = start(&setup).await;
    let events = append_history(&setup.log, 12, 500).await;
    // Garbage bytes, and a valid event the view refuses after writing.
    let mut poisoned = events
        .iter()
        .find(|e| e.customer_id().is_some())
        .unwrap()
        .clone();
    poisoned.event_id = uuid::Uuid::from_u128(42);
    poisoned.body = Body::Tagged {
        topics: vec!["poison".to_owned()],
    };
    let garbage = AppendRecord {
        topic: Topic::Interactions,
        key: "someone".to_owned(),
        event_id: uuid::Uuid::from_u128(43),
        payload: bytes::Bytes::from_static(b"\xff\xff not protobuf"),
        headers: Vec::new(),
    };
    setup
        .log
        .append(vec![garbage, record_of(&poisoned)])
        .await
        .unwrap();
    append_history(&setup.log, 13, 200).await;
    caught_up(&runtime).await;
    let checkpoint = runtime.live("counting").unwrap().status().checkpoint();
    assert_eq!(checkpoint.dead_letters, 2);
    assert_eq!(checkpoint.events_applied, 702);
    let dead: u64 = setup
        .log
        .end_offsets(Topic::DeadLetter)
        .await
        .unwrap()
        .iter()
        .sum();
    assert_eq!(dead, 2);
    // The refused event's writes were undone: the state is the fold without it.
    let expected = fold_in_memory(&setup.log, &CountingView).await;
    assert_eq!(
        dump(&runtime),
        expected.entries.into_iter().collect::<Vec<_>>()
    );
    runtime.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_resumes_from_the_checkpoint_without_counting_twice() {
    let setup = setup();
    let runtime = start(&setup).await;
    append_history(&setup.log, 14, 3_000).await;
    caught_up(&runtime).await;
    runtime.stop().await.unwrap();
    drop(runtime);

    append_history(&setup.log, 15, 2_000).await;
    let runtime = start(&setup).await;
    caught_up(&runtime).await;
    let checkpoint = runtime.live("counting").unwrap().status().checkpoint();
    assert_eq!(checkpoint.events_applied, 5_000);
    let expected = fold_in_memory(&setup.log, &CountingView).await;
    assert_eq!(
        dump(&runtime),
        expected.entries.into_iter().collect::<Vec<_>>()
    );
    runtime.stop().await.unwrap();
}

/// The counting view as a later build might keep it: other keys, so another layout.
#[derive(Debug)]
struct RelaidCountingView;

impl View for RelaidCountingView {
    fn name(&self) -> &'static str {
        "counting"
    }

    fn topics(&self) -> &'static [Destination] {
        &[Destination::Interactions, Destination::Agents]
    }

    fn layout(&self) -> u32 {
        2
    }

    fn apply(
        &self,
        state: &mut dyn StateStore,
        event: &Event,
        _position: LogPosition,
    ) -> Result<(), ViewError> {
        let key = KeyBuilder::table("n")
            .text(event.event_type().as_str())
            .build();
        let count: u64 = get_record(state, &key)?.unwrap_or(0);
        put_record(state, key, &(count + 1))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn state_of_another_layout_is_folded_again_from_offset_0() {
    let setup = setup();
    let runtime = start(&setup).await;
    append_history(&setup.log, 17, 2_000).await;
    caught_up(&runtime).await;
    runtime.stop().await.unwrap();
    drop(runtime);

    let runtime = start_with(&setup, Arc::new(RelaidCountingView)).await;
    caught_up(&runtime).await;
    let expected = fold_in_memory(&setup.log, &RelaidCountingView).await;
    assert!(!expected.entries.is_empty());
    assert_eq!(
        dump(&runtime),
        expected.entries.into_iter().collect::<Vec<_>>(),
        "only the new layout's keys, folded from the start"
    );
    runtime.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rebuild_swaps_in_an_identical_new_version() {
    let setup = setup();
    let runtime = start(&setup).await;
    append_history(&setup.log, 16, 5_000).await;
    caught_up(&runtime).await;
    let before = dump(&runtime);
    let version = runtime.rebuild("counting").await.unwrap();
    assert_eq!(version, 2);
    assert!(
        runtime.rebuild("counting").await.is_err(),
        "a second rebuild at once"
    );
    for _ in 0..600 {
        if runtime.live("counting").unwrap().status().version == 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(runtime.live("counting").unwrap().status().version, 2);
    assert_eq!(dump(&runtime), before);
    for _ in 0..200 {
        if runtime.store().versions("counting") == vec![2] {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(runtime.store().versions("counting"), vec![2]);
    runtime.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reader_waits_for_the_position_it_wrote() {
    let setup = setup();
    let runtime = start(&setup).await;
    let events = append_history(&setup.log, 17, 100).await;
    let last = setup
        .log
        .append(vec![record_of(&{
            let mut extra = events[50].clone();
            extra.event_id = uuid::Uuid::from_u128(7);
            extra
        })])
        .await
        .unwrap()[0]
        .position();
    let awaited = [AwaitedPosition {
        topic: Destination::Interactions,
        partition: last.partition,
        offset: last.offset,
    }];
    let live = runtime
        .live_after("counting", &awaited, Duration::from_secs(5))
        .await
        .unwrap();
    assert!(
        live.status()
            .has_applied(Destination::Interactions, last.partition, last.offset)
    );
    let beyond = [AwaitedPosition {
        topic: Destination::Interactions,
        partition: last.partition,
        offset: last.offset + 1_000,
    }];
    assert!(
        runtime
            .live_after("counting", &beyond, Duration::from_millis(200))
            .await
            .is_err()
    );
    runtime.stop().await.unwrap();
}
