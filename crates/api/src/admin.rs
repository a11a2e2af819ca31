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

/// `GET /v1/views`.
pub async fn list_views(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<impl IntoResponse, ApiError> {
    state.access.check(&headers, Scope::Read)?;
    let Some(views) = &state.views else {
        return Ok(Json(json!({ "views": [] })));
    };
    let reports = views.reports().await?;
    let answer: Vec<Value> = reports
        .iter()
        .map(|report| {
            let mut entry = version_json(&report.live);
            entry["view"] = json!(report.view);
            entry["rebuilding"] = match &report.rebuilding {
                Some(rebuild) => version_json(rebuild),
                None => Value::Null,
            };
            entry
        })
        .collect();
    Ok(Json(json!({ "views": answer })))
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
    let Some(views) = &state.views else {
        return Ok((StatusCode::OK, "ready\n"));
    };
    if views.caught_up().await? {
        Ok((StatusCode::OK, "ready\n"))
    } else {
        Err(ApiError::Unavailable(
            "the views are still catching up with the log; see /v1/views".to_owned(),
        ))
    }
}

/// `GET /metrics`: Prometheus text.
pub async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    let text = state.metrics.render(state.views.as_deref()).await;
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/openmetrics-text; version=1.0.0; charset=utf-8"),
        )],
        text,
    )
}
