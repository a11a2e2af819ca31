//! What every query shares: read-your-writes (`?after=TOKEN` or `Omnilog-After`, with
//! `?wait_ms=`), and running a view's query on the live version on a blocking thread.
//!
//! A query takes the live version once and reads only it, so an answer never mixes two
//! versions of a view during a rebuild's swap.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use axum::http::HeaderMap;
use omnilog_events::Destination;
use omnilog_ingest::ReadToken;
use omnilog_log::Topic;
use omnilog_projector::{AwaitedPosition, LiveVersion, ProjectorError, ViewRuntime};
use omnilog_store::TableReader;
use omnilog_views::journey::EventSource;
use omnilog_views::{View, ViewError};

use crate::problem::ApiError;

/// The header form of `?after=`.
pub const AFTER_HEADER: &str = "omnilog-after";
/// How long a query waits for its token by default.
pub const DEFAULT_WAIT: Duration = Duration::from_millis(5_000);
/// The longest wait a client may ask for.
pub const MAX_WAIT: Duration = Duration::from_secs(60);

/// What a query must wait for before it reads.
#[derive(Clone, Debug, Default)]
pub struct Consistency {
    pub awaited: Vec<AwaitedPosition>,
    pub wait: Duration,
}

impl Consistency {
    /// Reads `after` / `wait_ms` from the query string or the `Omnilog-After` header.
    pub fn from_request(
        query: &BTreeMap<String, String>,
        headers: &HeaderMap,
    ) -> Result<Self, ApiError> {
        let token = match query.get("after") {
            Some(token) => Some(token.as_str()),
            None => headers.get(AFTER_HEADER).and_then(|v| v.to_str().ok()),
        };
        let awaited = match token {
            None => Vec::new(),
            Some(text) => text
                .parse::<ReadToken>()
                .map_err(|e| ApiError::invalid("after", e.to_string()))?
                .positions()
                .filter_map(|(topic, partition, offset)| {
                    let topic = match topic {
                        Topic::Interactions => Destination::Interactions,
                        Topic::Agents => Destination::Agents,
                        Topic::DeadLetter => return None,
                    };
                    Some(AwaitedPosition {
                        topic,
                        partition,
                        offset,
                    })
                })
                .collect(),
        };
        let wait = match query.get("wait_ms") {
            None => DEFAULT_WAIT,
            Some(text) => {
                let millis: u64 = text.parse().map_err(|_| {
                    ApiError::invalid(
                        "wait_ms",
                        format!("{text:?} is not a number of milliseconds"),
                    )
                })?;
                Duration::from_millis(millis).min(MAX_WAIT)
            }
        };
        Ok(Consistency { awaited, wait })
    }

    /// The same, with `waited` taken off the wait (one request waiting on two views).
    pub fn waited(mut self, waited: Duration) -> Self {
        self.wait = self.wait.saturating_sub(waited);
        self
    }
}

impl From<ProjectorError> for ApiError {
    fn from(error: ProjectorError) -> Self {
        match error {
            ProjectorError::Timeout(waited) => ApiError::Timeout(format!(
                "the view has not applied the token's writes after {} ms; retry, or raise wait_ms",
                waited.as_millis()
            )),
            ProjectorError::UnknownView(view) => ApiError::NotFound(format!("no view {view:?}")),
            ProjectorError::AlreadyRebuilding(view) => {
                ApiError::Conflict(format!("{view} is already being rebuilt"))
            }
            other => ApiError::Internal(other.to_string()),
        }
    }
}

impl From<ViewError> for ApiError {
    fn from(error: ViewError) -> Self {
        match error {
            ViewError::BadQuery { parameter, message } => ApiError::invalid(parameter, message),
            other => ApiError::Internal(other.to_string()),
        }
    }
}

/// The live version of `view` once it applied what `consistency` asks for.
pub async fn live_version(
    views: &ViewRuntime,
    view: &str,
    consistency: &Consistency,
) -> Result<Arc<LiveVersion>, ApiError> {
    if consistency.awaited.is_empty() {
        return Ok(views.live(view)?);
    }
    // A position in a partition the log does not have is never reached and no ingest
    // answer gives one: refused, instead of waited for until a 504.
    if let Some(log) = views.log() {
        for awaited in &consistency.awaited {
            let topic = omnilog_projector::topic_of(awaited.topic);
            let partitions = log.partitions(topic);
            if awaited.partition >= partitions {
                return Err(ApiError::invalid(
                    "after",
                    format!(
                        "the token names partition {} of {}, which has {partitions} partitions; \
                         pass the token of an ingest answer",
                        awaited.partition,
                        topic.name()
                    ),
                ));
            }
        }
    }
    Ok(views
        .live_after(view, &consistency.awaited, consistency.wait)
        .await?)
}

/// What a query reads besides the state in memory: the store behind it (for records not in
/// memory) and the log (for an interaction's events).
pub struct Reads<'a> {
    pub records: &'a TableReader,
    pub events: &'a dyn EventSource,
}

impl std::fmt::Debug for Reads<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reads").finish_non_exhaustive()
    }
}

/// Runs a query over the live version's state on a blocking thread (records not in memory
/// and an interaction's events are read from disk).
pub async fn query<V: View, T: Send + 'static>(
    views: &ViewRuntime,
    live: Arc<LiveVersion>,
    run: impl FnOnce(&V::State, &Reads<'_>) -> Result<T, ViewError> + Send + 'static,
) -> Result<T, ApiError> {
    let version = live.typed::<V>()?;
    let events = views.events();
    tokio::task::spawn_blocking(move || {
        // The live version stays alive for the query, whatever swaps meanwhile.
        let _held = live;
        let events: &dyn EventSource = match &events {
            Some(events) => events,
            None => &omnilog_views::journey::NoLog,
        };
        version.read(|state, records| run(state, &Reads { records, events }))
    })
    .await
    .map_err(|e| ApiError::Internal(format!("a query task failed: {e}")))?
    .map_err(ApiError::from)
}
