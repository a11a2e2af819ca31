//! Each view's pure fold over a seeded history in memory, and the view store's atomic
//! commit of a batch of changes with its checkpoint (the durable half of projection).

use std::sync::Arc;

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use omnilog_events::Event;
use omnilog_store::{Checkpoint, ViewStore};
use omnilog_testkit::{HistoryConfig, history};
use omnilog_views::journey::{JourneyConfig, JourneyView};
use omnilog_views::queue::QueueView;
use omnilog_views::reporting::{ReportingConfig, ReportingView};
use omnilog_views::{LogPosition, MemoryState, StateStore, View};

fn fold(view: &dyn View, events: &[Event]) -> MemoryState {
    let mut state = MemoryState::new();
    for (offset, event) in events.iter().enumerate() {
        let topics = view.topics();
        if topics.contains(&event.destination()) {
            let position = LogPosition {
                partition: 0,
                offset: offset as u64,
            };
            view.apply(&mut state, event, position).expect("applies");
        }
    }
    state
}

fn folds(c: &mut Criterion) {
    let events: Vec<Event> =
        history(HistoryConfig::with_events(1, 20_000).with_customer_ids()).collect();
    let views: Vec<Arc<dyn View>> = vec![
        Arc::new(JourneyView::new(JourneyConfig::default())),
        Arc::new(QueueView),
        Arc::new(ReportingView::new(ReportingConfig::default())),
    ];
    let mut group = c.benchmark_group("fold");
    group.throughput(Throughput::Elements(events.len() as u64));
    group.sample_size(10);
    for view in &views {
        group.bench_function(view.name(), |b| {
            b.iter(|| std::hint::black_box(fold(view.as_ref(), &events)))
        });
    }
    group.finish();

    // The store: one atomic commit of 1,000 changed keys and the checkpoint.
    let dir = tempfile::tempdir().expect("a scratch dir");
    let store = ViewStore::open(dir.path()).expect("opens");
    let table = store.table("bench", 1).expect("a table");
    let mut round = 0u64;
    let mut group = c.benchmark_group("store");
    group.throughput(Throughput::Elements(1_000));
    group.bench_function("commit 1000 keys with the checkpoint", |b| {
        b.iter_batched(
            || {
                round += 1;
                let mut overlay = table.begin();
                for key in 0..1_000u64 {
                    overlay.put(
                        format!("jk{:08}{key:04}", round % 64).into_bytes(),
                        vec![round as u8; 120],
                    );
                }
                overlay
            },
            |overlay| {
                table
                    .commit(overlay, &Checkpoint::default())
                    .expect("commits")
            },
            BatchSize::SmallInput,
        )
    });
    group.finish();
}

criterion_group!(benches, folds);
criterion_main!(benches);
