//! The projectors' Prometheus metrics: events applied and dead letters per view, and the
//! histograms of batch sizes and fold-and-commit latency that show how batching adapts.

use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// The label of every projector metric.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ViewLabel {
    pub view: String,
}

type HistogramFamily = Family<ViewLabel, Histogram, fn() -> Histogram>;

fn batch_histogram() -> Histogram {
    // 1 event .. 32k events.
    Histogram::new(exponential_buckets(1.0, 2.0, 16))
}

fn latency_histogram() -> Histogram {
    // 100 µs .. ~3 s.
    Histogram::new(exponential_buckets(0.0001, 2.0, 16))
}

/// Handles to the projector metrics; clones share the same series.
#[derive(Clone, Debug)]
pub struct ProjectorMetrics {
    events_applied: Family<ViewLabel, Counter>,
    dead_letters: Family<ViewLabel, Counter>,
    batch_events: HistogramFamily,
    fold_seconds: HistogramFamily,
}

impl Default for ProjectorMetrics {
    fn default() -> Self {
        ProjectorMetrics {
            events_applied: Family::default(),
            dead_letters: Family::default(),
            batch_events: Family::new_with_constructor(batch_histogram),
            fold_seconds: Family::new_with_constructor(latency_histogram),
        }
    }
}

impl ProjectorMetrics {
    /// Adds every series to `registry` (names get the `omnilog_` prefix there).
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "projector_events_applied",
            "Events folded into a view (dead letters included)",
            self.events_applied.clone(),
        );
        registry.register(
            "projector_dead_letters",
            "Events a view could not decode or apply, sent to omnilog.dead-letter",
            self.dead_letters.clone(),
        );
        registry.register(
            "projector_batch_events",
            "Events per committed batch",
            self.batch_events.clone(),
        );
        registry.register(
            "projector_fold_seconds",
            "Time to fold and commit one batch",
            self.fold_seconds.clone(),
        );
    }

    fn label(view: &str) -> ViewLabel {
        ViewLabel {
            view: view.to_owned(),
        }
    }

    pub(crate) fn batch(&self, view: &str, events: usize, took: Duration) {
        let label = Self::label(view);
        self.events_applied
            .get_or_create(&label)
            .inc_by(events as u64);
        self.batch_events
            .get_or_create(&label)
            .observe(events as f64);
        self.fold_seconds
            .get_or_create(&label)
            .observe(took.as_secs_f64());
    }

    pub(crate) fn dead_letter(&self, view: &str, count: u64) {
        self.dead_letters
            .get_or_create(&Self::label(view))
            .inc_by(count);
    }
}
