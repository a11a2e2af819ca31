//! `/metrics`: Prometheus text (OpenMetrics) of the whole process. HTTP requests are
//! counted and timed by route template (never by raw path, so ids cannot explode the
//! series) and by method (a method HTTP does not define counts as `other`, so made-up
//! methods cannot either), the projectors register their own series, and per-partition
//! lag is read from the view runtime at scrape time.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::Response;
use omnilog_projector::{ProjectorMetrics, ViewRuntime};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    method: String,
    route: String,
    status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    method: String,
    route: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct LagLabels {
    view: String,
    topic: String,
    partition: u32,
}

fn latency_histogram() -> Histogram {
    // 50 µs .. ~1.6 s.
    Histogram::new(exponential_buckets(0.000_05, 2.0, 16))
}

/// Every metric of the process and the registry that renders them.
#[derive(Debug)]
pub struct ApiMetrics {
    registry: Mutex<Registry>,
    requests: Family<RequestLabels, Counter>,
    latency: Family<RouteLabels, Histogram, fn() -> Histogram>,
    lag: Family<LagLabels, Gauge>,
    projector: ProjectorMetrics,
}

impl Default for ApiMetrics {
    fn default() -> Self {
        ApiMetrics::new(ProjectorMetrics::default())
    }
}

impl ApiMetrics {
    /// The process's metrics, including the projectors' series.
    pub fn new(projector: ProjectorMetrics) -> Self {
        let mut registry = Registry::with_prefix("omnilog");
        let requests = Family::<RequestLabels, Counter>::default();
        let latency = Family::<RouteLabels, Histogram, fn() -> Histogram>::new_with_constructor(
            latency_histogram,
        );
        let lag = Family::<LagLabels, Gauge>::default();
        registry.register(
            "http_requests",
            "HTTP requests answered, by route template and status",
            requests.clone(),
        );
        registry.register(
            "http_request_seconds",
            "Time to answer an HTTP request, by route template",
            latency.clone(),
        );
        registry.register(
            "view_lag_events",
            "Events in the log a view has not folded yet, per partition",
            lag.clone(),
        );
        projector.register(&mut registry);
        ApiMetrics {
            registry: Mutex::new(registry),
            requests,
            latency,
            lag,
            projector,
        }
    }

    /// The series the projectors write to.
    pub fn projector(&self) -> &ProjectorMetrics {
        &self.projector
    }

    fn observe(&self, method: &str, route: &str, status: u16, started: Instant) {
        self.requests
            .get_or_create(&RequestLabels {
                method: method.to_owned(),
                route: route.to_owned(),
                status,
            })
            .inc();
        self.latency
            .get_or_create(&RouteLabels {
                method: method.to_owned(),
                route: route.to_owned(),
            })
            .observe(started.elapsed().as_secs_f64());
    }

    /// The text exposition, with lag read from `views` now.
    pub async fn render(&self, views: Option<&ViewRuntime>) -> String {
        if let Some(views) = views
            && let Ok(reports) = views.reports().await
        {
            for report in reports {
                for partition in &report.live.partitions {
                    self.lag
                        .get_or_create(&LagLabels {
                            view: report.view.to_owned(),
                            topic: omnilog_projector::topic_of(partition.topic)
                                .name()
                                .to_owned(),
                            partition: partition.partition,
                        })
                        .set(partition.lag() as i64);
                }
            }
        }
        let mut text = String::new();
        let registry = self.registry.lock().unwrap_or_else(PoisonError::into_inner);
        if let Err(error) = prometheus_client::encoding::text::encode(&mut text, &registry) {
            tracing::error!(%error, "encoding the metrics");
        }
        text
    }
}

/// The method as a label: one of HTTP's own, or `other`.
fn method_label(method: &axum::http::Method) -> &'static str {
    use axum::http::Method;
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::PATCH => "PATCH",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        Method::CONNECT => "CONNECT",
        Method::TRACE => "TRACE",
        _ => "other",
    }
}

/// Middleware: counts and times every request by its route template.
pub async fn track(
    State(metrics): State<Arc<ApiMetrics>>,
    request: Request,
    next: Next,
) -> Response {
    let started = Instant::now();
    let method = method_label(request.method()).to_owned();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    let response = next.run(request).await;
    metrics.observe(&method, &route, response.status().as_u16(), started);
    response
}
