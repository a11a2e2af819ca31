//! Operating the views: `GET /v1/views` (version, status, position, end and lag per
//! partition, the rebuild in progress), `POST /v1/views/{view}/rebuild`, `/readyz`
//! (ready once every view caught up with the log as it was at start) and `/metrics`.

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
    State(state): State<AppState>,
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
    let mut by_view: std::collections::BTreeMap<&'static str, Value> = Default::default();
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
    State(state): State<AppState>,
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

/// `GET /readyz`: 200 once every view has folded the whole log, 503 before.
pub async fn ready(State(state): State<AppState>) -> Result<impl IntoResponse, ApiError> {
    // Customer lookups and the handles in answers come from the identity view, which on
    // Kafka follows every ingest server's writes: not ready while it is behind.
    if let Some(ingest) = &state.ingest
        && let Some(lag) = ingest.identity_lag().await.map_err(ApiError::from)?
        && lag > 0
    {
        return Err(ApiError::NotReady(format!(
            "the identity view is {lag} records behind the log"
        )));
    }
    if let Some(cluster) = &state.cluster {
        // Ready when this instance's partitions caught up and every view it serves has an
        // owner for every partition.
        let local = cluster.local();
        for runtime in local.values() {
            if !runtime.caught_up().await? {
                return Err(ApiError::NotReady(
                    "this instance's partitions are still catching up; see /v1/views".to_owned(),
                ));
            }
            for view in runtime.names() {
                if cluster.owners(view).is_none() {
                    return Err(ApiError::Rebalancing(format!(
                        "the partitions of the {view} view are moving between instances"
                    )));
                }
            }
        }
        return Ok((StatusCode::OK, "ready\n"));
    }
    let Some(views) = &state.views else {
        return Ok((StatusCode::OK, "ready\n"));
    };
    if views.caught_up().await? {
        Ok((StatusCode::OK, "ready\n"))
    } else {
        Err(ApiError::NotReady(
            "the views are still catching up with the log; see /v1/views".to_owned(),
        ))
    }
}

/// `GET /metrics`: Prometheus text.
pub async fn metrics(
    State(state): State<AppState>,
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
