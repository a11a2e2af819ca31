//! Operating the views: `GET /v1/views` (version, status, position, end and lag per
//! partition, the rebuild in progress), `POST /v1/views/{view}/rebuild`, `/readyz`
//! (see [`Readiness`]) and `/metrics`.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::IntoResponse;
use omnilog_projector::{Phase, VersionReport, topic_of};
use serde_json::{Value, json};

use crate::{ApiError, AppState, Scope};

fn phase_text(phase: &Phase) -> (&'static str, Option<&str>) {
    match phase {
        Phase::Running => ("running", None),
        Phase::Failing(reason) => ("failing", Some(reason)),
        Phase::Stopped => ("stopped", None),
    }
}

fn version_json(report: &VersionReport) -> Value {
    let (status, error) = phase_text(&report.phase);
    let lag = report.lag();
    let position: u64 = report.partitions.iter().map(|p| p.position).sum();
    let end: u64 = report.partitions.iter().map(|p| p.end).sum();
    json!({
        "version": report.version,
        "status": if status == "running" && lag > 0 { "catching_up" } else { status },
        "error": error,
        "events_applied": report.events_applied,
        "dead_letters": report.dead_letters,
        "lag": lag,
        "progress": if end == 0 { 1.0 } else { position as f64 / end as f64 },
        "partitions": report.partitions.iter().map(|p| json!({
            "topic": topic_of(p.topic).name(),
            "partition": p.partition,
            "position": p.position,
            "end": p.end,
            "lag": p.lag(),
        })).collect::<Vec<_>>(),
    })
}

/// Stored records of a view's live version that queries could not decode and passed over
/// (each logged once by the store): a number above zero asks for a rebuild.
fn unreadable_records(views: &omnilog_projector::ViewRuntime, view: &str) -> u64 {
    views
        .live(view)
        .map_or(0, |live| live.table().unreadable_records())
}

/// `GET /v1/views`.
pub async fn list_views(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
) -> Result<impl IntoResponse, ApiError> {
    state.access.check(&headers, Scope::Read)?;
    if let Some(cluster) = &state.cluster {
        return Ok(Json(cluster_views(&**cluster).await?));
    }
    let Some(views) = &state.views else {
        return Ok(Json(json!({ "views": [] })));
    };
    let reports = views.reports().await?;
    let answer: Vec<Value> = reports
        .iter()
        .map(|report| {
            let mut entry = version_json(&report.live);
            entry["view"] = json!(report.view);
            entry["unreadable_records"] = json!(unreadable_records(views, report.view));
            entry["rebuilding"] = match &report.rebuilding {
                Some(rebuild) => version_json(rebuild),
                None => Value::Null,
            };
            entry
        })
        .collect();
    Ok(Json(json!({ "views": answer })))
}

/// `GET /v1/views` of a projector group's instance: per view, the partitions this instance
/// folds (its interactions partitions, and the agents topic once), and who owns what.
async fn cluster_views(cluster: &dyn crate::cluster::Cluster) -> Result<Value, ApiError> {
    let mut by_view: BTreeMap<&'static str, Value> = Default::default();
    for (partition, runtime) in cluster.local() {
        for report in runtime.reports().await? {
            let mut version = version_json(&report.live);
            let entry = by_view.entry(report.view).or_insert_with(|| {
                json!({
                    "view": report.view,
                    "version": version["version"],
                    "status": "running",
                    "events_applied": 0,
                    "lag": 0,
                    "partitions": [],
                })
            });
            // Each runtime folds one interactions partition and the whole agents topic:
            // show its own partition, and the agents topic once.
            let shown_agents = entry["partitions"]
                .as_array()
                .is_some_and(|all| all.iter().any(|p| p["topic"] == "omnilog.agents"));
            let parts: Vec<Value> = version["partitions"]
                .as_array_mut()
                .map(std::mem::take)
                .unwrap_or_default()
                .into_iter()
                .filter(|p| {
                    (p["topic"] == "omnilog.interactions" && p["partition"] == partition)
                        || (p["topic"] == "omnilog.agents" && !shown_agents)
                })
                .collect();
            let lag: u64 = parts.iter().filter_map(|p| p["lag"].as_u64()).sum();
            entry["lag"] = json!(entry["lag"].as_u64().unwrap_or(0) + lag);
            entry["unreadable_records"] = json!(
                entry["unreadable_records"].as_u64().unwrap_or(0)
                    + unreadable_records(&runtime, report.view)
            );
            entry["events_applied"] =
                json!(entry["events_applied"].as_u64().unwrap_or(0) + report.live.events_applied);
            if version["status"] != "running" {
                entry["status"] = version["status"].clone();
            } else if lag > 0 && entry["status"] == "running" {
                entry["status"] = json!("catching_up");
            }
            if let Some(all) = entry["partitions"].as_array_mut() {
                all.extend(parts);
            }
        }
    }
    Ok(json!({
        "views": by_view.into_values().collect::<Vec<_>>(),
        "ownership": cluster.describe(),
    }))
}

/// `POST /v1/views/{view}/rebuild`: 202 with the version being built.
pub async fn rebuild_view(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(view): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    state.access.check(&headers, Scope::Admin)?;
    let views = state
        .views
        .as_ref()
        .ok_or_else(|| ApiError::NotFound("this instance serves no views".to_owned()))?;
    let version = views.rebuild(&view).await?;
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({
            "view": view,
            "version": version,
            "status": "rebuilding",
            "follow": "/v1/views",
        })),
    ))
}

/// How far behind the log a view (or the identity view) may be and the server still ready:
/// see [`Readiness`].
pub const READY_MAX_LAG: Duration = Duration::from_secs(5);

/// What folds one partition of the log, for readiness: a view (of this instance, or of one
/// of its partition runtimes) or the identity view, the topic and the partition.
type Folder = (String, &'static str, u32);

/// One partition as a readiness probe sees it.
struct Progress {
    folder: Folder,
    /// What the folder has folded up to (the next offset it reads).
    position: u64,
    /// The log's end now.
    end: u64,
}

/// The readiness rule of `GET /readyz`, and what it remembers between probes.
///
/// A view folds what was appended a moment ago, so under a steady stream of writes its lag
/// is rarely 0 at the instant of a probe: "ready when the lag is 0" would take a healthy
/// server out of its load balancer over and over. So the rule is about time: the server
/// is ready while every view has folded everything the log held `max_lag` ago
/// ([`READY_MAX_LAG`], 5 s by default: `--ready-max-lag-secs`). Each probe notes the log's
/// ends (at most a few notes per `max_lag`), and is judged against the newest note at
/// least `max_lag` old; until there is one (a server just started), against the oldest,
/// so a server starting up is ready only once its views have caught up with the log as
/// its first probe saw it. With `max_lag` 0 every probe wants the views at the log's end.
#[derive(Debug, Default)]
pub struct Readiness {
    notes: Mutex<VecDeque<(Instant, BTreeMap<Folder, u64>)>>,
}

/// The most notes kept, whatever the probes' rate.
const READINESS_NOTES: usize = 64;

impl Readiness {
    /// The first partition whose folder has not reached what the log held `max_lag` before
    /// `now`: the folder, its position and the offset it should have reached.
    fn behind(
        &self,
        now: Instant,
        progress: &[Progress],
        max_lag: Duration,
    ) -> Option<(Folder, u64, u64)> {
        let mut notes = self.notes.lock().unwrap_or_else(PoisonError::into_inner);
        // A note per eighth of the allowed lag is enough to judge by; more would only
        // grow with the probes' rate.
        let note_due = notes
            .back()
            .is_none_or(|(at, _)| now.saturating_duration_since(*at) >= max_lag / 8);
        if note_due {
            let ends = progress.iter().map(|p| (p.folder.clone(), p.end)).collect();
            notes.push_back((now, ends));
            if notes.len() > READINESS_NOTES {
                notes.pop_front();
            }
        }
        let reference = notes
            .iter()
            .rposition(|(at, _)| now.saturating_duration_since(*at) >= max_lag)
            .unwrap_or(0);
        // Older notes than the one judged by are never needed again.
        notes.drain(..reference);
        let (_, wanted) = notes.front()?;
        progress.iter().find_map(|p| {
            let wanted = wanted.get(&p.folder).copied().unwrap_or(0);
            (p.position < wanted).then(|| (p.folder.clone(), p.position, wanted))
        })
    }
}

/// Every live view's partitions in `views`, named "`view` view`label`".
async fn progress_of(
    views: &omnilog_projector::ViewRuntime,
    label: &str,
    into: &mut Vec<Progress>,
) -> Result<(), ApiError> {
    for report in views.reports().await? {
        for partition in &report.live.partitions {
            into.push(Progress {
                folder: (
                    format!("{} view{label}", report.view),
                    topic_of(partition.topic).name(),
                    partition.partition,
                ),
                position: partition.position,
                end: partition.end,
            });
        }
    }
    Ok(())
}

/// `GET /readyz`: 200 while the views (and, on Kafka, the identity view) are less than the
/// allowed lag behind the log ([`Readiness`]), 503 `/problems/not-ready` otherwise.
pub async fn ready(State(state): State<Arc<AppState>>) -> Result<impl IntoResponse, ApiError> {
    let mut progress = Vec::new();
    // Customer lookups and the handles in answers come from the identity view, which on
    // Kafka follows every ingest server's writes.
    if let Some(ingest) = &state.ingest
        && let Some(partitions) = ingest.identity_progress().await.map_err(ApiError::from)?
    {
        for (partition, (folded, end)) in partitions.into_iter().enumerate() {
            progress.push(Progress {
                folder: (
                    "identity view".to_owned(),
                    omnilog_log::Topic::Interactions.name(),
                    partition as u32,
                ),
                position: folded,
                end,
            });
        }
    }
    if let Some(cluster) = &state.cluster {
        // This instance's partitions, each a runtime of its own; and every view it serves
        // must have an owner for every partition (the owners' partitions are ready only
        // once folded up to the ends seen at their assignment).
        for (partition, runtime) in cluster.local() {
            progress_of(
                &runtime,
                &format!(" of partition {partition}"),
                &mut progress,
            )
            .await?;
            for view in runtime.names() {
                if cluster.owners(view).is_none() {
                    return Err(ApiError::Rebalancing(format!(
                        "the partitions of the {view} view are moving between instances"
                    )));
                }
            }
        }
    } else if let Some(views) = &state.views {
        progress_of(views, "", &mut progress).await?;
    }
    let max_lag = state.config.ready_max_lag;
    match state.readiness.behind(Instant::now(), &progress, max_lag) {
        None => Ok((StatusCode::OK, "ready\n")),
        Some(((folder, topic, partition), position, wanted)) => {
            let behind = if max_lag.is_zero() {
                "behind the log".to_owned()
            } else {
                format!("more than {:.0} s behind the log", max_lag.as_secs_f64())
            };
            Err(ApiError::NotReady(format!(
                "the {folder} is {behind}: it has folded {topic} partition {partition} up to \
                 offset {position}, and the log reached offset {wanted} there then; see /v1/views"
            )))
        }
    }
}

/// `GET /metrics`: Prometheus text.
pub async fn metrics(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
) -> Result<impl IntoResponse, ApiError> {
    // Series name views, queues and partitions: with tokens configured, a scraper needs
    // the `metrics` scope (or `admin`) like any other reader.
    state.access.check(&headers, Scope::Metrics)?;
    let text = state.metrics.render(state.views.as_deref()).await;
    Ok((
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/openmetrics-text; version=1.0.0; charset=utf-8"),
        )],
        text,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(position: u64, end: u64) -> Vec<Progress> {
        vec![Progress {
            folder: ("queue view".to_owned(), "omnilog.interactions", 0),
            position,
            end,
        }]
    }

    #[test]
    fn a_starting_server_is_ready_once_its_views_reach_what_the_first_probe_saw() {
        let readiness = Readiness::default();
        let start = Instant::now();
        let lag = Duration::from_secs(5);
        assert!(readiness.behind(start, &at(10, 100), lag).is_some());
        let second = start + Duration::from_secs(1);
        assert_eq!(
            readiness.behind(second, &at(90, 300), lag),
            Some((
                ("queue view".to_owned(), "omnilog.interactions", 0),
                90,
                100
            ))
        );
        assert!(readiness.behind(second, &at(100, 300), lag).is_none());
    }

    #[test]
    fn a_view_that_keeps_up_with_a_steady_stream_stays_ready_and_one_that_stops_does_not() {
        let readiness = Readiness::default();
        let start = Instant::now();
        let lag = Duration::from_secs(5);
        // Always a little behind the end, never more than a second's worth of writes.
        for second in 0..30u64 {
            let now = start + Duration::from_secs(second);
            let end = 1_000 * second;
            assert!(
                readiness
                    .behind(now, &at(end.saturating_sub(900), end), lag)
                    .is_none(),
                "second {second}"
            );
        }
        // It stops at 29,100 while the writes go on: ready until the log's end of five
        // seconds ago passes it, not after.
        let stopped = 29_100;
        let mut verdicts = Vec::new();
        for second in 30..40u64 {
            let now = start + Duration::from_secs(second);
            verdicts.push(
                readiness
                    .behind(now, &at(stopped, 1_000 * second), lag)
                    .is_none(),
            );
        }
        assert_eq!(
            verdicts,
            [
                true, true, true, true, true, false, false, false, false, false
            ]
        );
        assert!(readiness.notes.lock().unwrap().len() <= 10);
    }

    #[test]
    fn no_allowed_lag_wants_the_views_at_the_end_at_every_probe() {
        let readiness = Readiness::default();
        let start = Instant::now();
        assert!(
            readiness
                .behind(start, &at(99, 100), Duration::ZERO)
                .is_some()
        );
        assert!(
            readiness
                .behind(start, &at(100, 100), Duration::ZERO)
                .is_none()
        );
        assert_eq!(readiness.notes.lock().unwrap().len(), 1);
    }
}
