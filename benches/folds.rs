//! Each view's pure fold over a seeded history in memory, and the view store's atomic
//! commit of a checkpoint's changes with its positions (the durable half of projection).

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use omnilog_events::Event;
use omnilog_store::{Checkpoint, ViewStore};
use omnilog_testkit::{HistoryConfig, history};
use omnilog_views::journey::{JourneyConfig, JourneyView};
use omnilog_views::queue::QueueView;
use omnilog_views::reporting::{ReportingConfig, ReportingView};
use omnilog_views::{Changes, LogPosition, View, apply_in_memory};

fn fold<V: View>(view: &V, events: &[Event]) -> V::State {
    let mut state = view.new_state();
    for (offset, event) in events.iter().enumerate() {
        if view.topics().contains(&event.destination()) {
            let position = LogPosition {
                partition: 0,
                offset: offset as u64,
            };
            apply_in_memory(view, &mut state, event, position).expect("applies");
        }
    }
    state
}

fn folds(c: &mut Criterion) {
    let events: Vec<Event> =
        history(HistoryConfig::with_events(1, 20_000).with_customer_ids()).collect();
    let mut group = c.benchmark_group("fold");
    group.throughput(Throughput::Elements(events.len() as u64));
    group.sample_size(10);
    let journey = JourneyView::new(JourneyConfig::default());
    group.bench_function("journey", |b| {
        b.iter(|| std::hint::black_box(fold(&journey, &events)))
    });
    group.bench_function("queue", |b| {
        b.iter(|| std::hint::black_box(fold(&QueueView, &events)))
    });
    let reporting = ReportingView::new(ReportingConfig::default());
    group.bench_function("reporting", |b| {
        b.iter(|| std::hint::black_box(fold(&reporting, &events)))
    });
    group.finish();

    // The store: one atomic commit of 1,000 changed records and the checkpoint.
    let dir = tempfile::tempdir().expect("a scratch dir");
    let store = ViewStore::open(dir.path()).expect("opens");
    let table = store.table("bench", 1).expect("a table");
    let mut round = 0u64;
    let mut group = c.benchmark_group("store");
    group.throughput(Throughput::Elements(1_000));
    group.bench_function("commit 1000 records with the checkpoint", |b| {
        b.iter_batched(
            || {
                round += 1;
                Changes {
                    puts: (0..1_000u64)
                        .map(|key| {
                            (
                                format!("c{:08}{key:04}", round % 64).into_bytes(),
                                vec![round as u8; 120],
                            )
                        })
                        .collect(),
                    deletes: Vec::new(),
                }
            },
            |changes| {
                table
                    .commit(changes, &Checkpoint::default())
                    .expect("commits")
            },
            BatchSize::SmallInput,
        )
    });
    group.finish();
}

criterion_group!(benches, folds);
criterion_main!(benches);
