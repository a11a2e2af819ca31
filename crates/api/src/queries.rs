//! The query API (CONTRACT §6): customers' journeys, interactions, queues, agents,
//! reports, and the queue stream. Each handler checks the `read` scope, waits for the
//! request's read token, takes the live version of its view once, and runs the view's own
//! query function on a blocking thread. The answers' shapes and rules live in the views
//! crate; here is only HTTP.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::IntoResponse;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use chrono::{DateTime, Utc};
use futures_util::StreamExt as _;
use futures_util::stream;
use omnilog_projector::ViewRuntime;
use omnilog_views::engagement::EngagementPartial;
use omnilog_views::journey::{JourneyReportPartial, JourneyView};
use omnilog_views::queue::QueueView;
use omnilog_views::reporting::{ReportingView, TopicsPartial};
use omnilog_views::segments::{ProfileAnswer, SegmentsView};
use omnilog_views::{journey, queue, reporting, segments};
use serde_json::json;

use crate::read::{Consistency, live_version, query};
use crate::{ApiError, AppState, Params, Scope, cluster};

/// The views' names (their `View::name`), as the runtime knows them.
const JOURNEY: &str = "journey";
const QUEUE: &str = "queue";
const REPORTING: &str = "reporting";
pub(crate) const SEGMENTS: &str = "segments";
pub(crate) const ENGAGEMENT: &str = "engagement";

pub(crate) fn views(state: &AppState) -> Result<&Arc<ViewRuntime>, ApiError> {
    state.views.as_ref().ok_or_else(|| {
        ApiError::NotFound("this instance serves no views (it is an ingest server)".to_owned())
    })
}

pub(crate) fn time_param(
    params: &BTreeMap<String, String>,
    name: &str,
) -> Result<Option<DateTime<Utc>>, ApiError> {
    params
        .get(name)
        .map(|text| {
            DateTime::parse_from_rfc3339(text.trim())
                .map(|t| t.with_timezone(&Utc))
                .map_err(|e| {
                    ApiError::invalid(name, format!("not an RFC 3339 time ({e}): {text:?}"))
                })
        })
        .transpose()
}

/// `?now=` or the wall clock: the only clock of the read side, read here, at the edge.
pub(crate) fn now_param(params: &BTreeMap<String, String>) -> Result<DateTime<Utc>, ApiError> {
    Ok(time_param(params, "now")?.unwrap_or_else(Utc::now))
}

/// Checks the scope and waits for the read token; returns the view runtime.
fn prepare<'a>(
    state: &'a AppState,
    headers: &HeaderMap,
    params: &BTreeMap<String, String>,
) -> Result<(&'a Arc<ViewRuntime>, Consistency), ApiError> {
    state.access.check(headers, Scope::Read)?;
    let consistency = Consistency::from_request(params, headers)?;
    Ok((views(state)?, consistency))
}

/// `GET /v1/customers/{id}/journey`: answered for the customer `id` was merged into,
/// with every merged history in one timeline.
pub async fn customer_journey(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Params(params): Params,
) -> Result<impl IntoResponse, ApiError> {
    if state.cluster.is_some() {
        state.access.check(&headers, Scope::Read)?;
        return Ok(
            Json(cluster::customer_journey(&state, &headers, &id, &params).await?).into_response(),
        );
    }
    let (views, consistency) = prepare(&state, &headers, &params)?;
    // The merges that name the customer's other histories come from the identity view,
    // which the token holds for too; the journey view gets what is left of the wait.
    let started = std::time::Instant::now();
    crate::identity_after(&state, &consistency).await?;
    let consistency = consistency.waited(started.elapsed());
    let live = live_version(views, JOURNEY, &consistency).await?;
    let identity = state.identity.customer(&id);
    let (customer_id, merged_from, handles) = match identity {
        Some(identity) => (identity.customer_id, identity.merged_from, identity.handles),
        None => (id.clone(), Vec::new(), Vec::new()),
    };
    let members: Vec<String> = std::iter::once(customer_id.clone())
        .chain(merged_from.iter().cloned())
        .collect();
    let answer = query::<JourneyView, _>(views, live, move |state, reads| {
        journey::customer_journey(
            state,
            reads.records,
            reads.events,
            &customer_id,
            &merged_from,
            &handles,
        )
    })
    .await?
    .ok_or_else(|| ApiError::NotFound(format!("no journey of customer {id:?}")))?;
    let mut answer = serde_json::to_value(answer).unwrap_or_default();
    if let Some(profile) = local_profile(views, &consistency, members).await? {
        attach_profile(&mut answer, profile);
    }
    Ok(Json(answer).into_response())
}

/// The profile of a customer and the ids merged into it from this instance's segments
/// view; `None` when this instance does not project that view (a projector started for
/// other views), so a journey is still answered, without the profile.
pub(crate) async fn local_profile(
    views: &Arc<ViewRuntime>,
    consistency: &Consistency,
    members: Vec<String>,
) -> Result<Option<ProfileAnswer>, ApiError> {
    match views.live(SEGMENTS) {
        Err(omnilog_projector::ProjectorError::UnknownView(_)) => return Ok(None),
        Err(other) => return Err(other.into()),
        Ok(_) => {}
    }
    let live = live_version(views, SEGMENTS, consistency).await?;
    let profile = query::<SegmentsView, _>(views, live, move |state, reads| {
        segments::customer_profile(state, reads.records, &members)
    })
    .await?;
    Ok(Some(profile.unwrap_or_default()))
}

/// The profile of a customer and the ids merged into it (`members`, the customer first),
/// wherever this deployment keeps it: this instance's segments view, the owners of the
/// members' partitions (distributed mode), or nowhere (an ingest server: `None`).
pub(crate) async fn profile_for(
    state: &AppState,
    headers: &HeaderMap,
    params: &BTreeMap<String, String>,
    members: Vec<String>,
) -> Result<Option<ProfileAnswer>, ApiError> {
    if state.cluster.is_some() {
        return cluster::customer_profile(state, headers, params, &members).await;
    }
    match &state.views {
        None => Ok(None),
        Some(views) => {
            let consistency = Consistency::from_request(params, headers)?;
            local_profile(views, &consistency, members).await
        }
    }
}

/// Adds a customer's profile to a journey answer: its `attributes` beside the journeys,
/// its `preferred_channel` in the context an agent reads first.
pub(crate) fn attach_profile(answer: &mut serde_json::Value, profile: ProfileAnswer) {
    if let Some(object) = answer.as_object_mut() {
        object.insert("attributes".to_owned(), json!(profile.attributes));
        if let Some(context) = object
            .get_mut("context")
            .and_then(serde_json::Value::as_object_mut)
        {
            context.insert(
                "preferred_channel".to_owned(),
                json!(profile.preferred_channel),
            );
        }
    }
}

/// `GET /v1/interactions/{id}`: the interaction and its events.
pub async fn interaction(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Params(params): Params,
) -> Result<impl IntoResponse, ApiError> {
    if state.cluster.is_some() {
        state.access.check(&headers, Scope::Read)?;
        return Ok(
            Json(cluster::interaction(&state, &headers, &id, &params).await?).into_response(),
        );
    }
    let (views, consistency) = prepare(&state, &headers, &params)?;
    let live = live_version(views, JOURNEY, &consistency).await?;
    let wanted = id.clone();
    let answer = query::<JourneyView, _>(views, live, move |state, reads| {
        journey::interaction(state, reads.records, reads.events, &wanted)
    })
    .await?
    .ok_or_else(|| ApiError::NotFound(format!("no interaction {id:?}")))?;
    Ok(Json(answer).into_response())
}

/// `GET /v1/queues`: every queue, items in routing order.
pub async fn queues(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Params(params): Params,
) -> Result<impl IntoResponse, ApiError> {
    if state.cluster.is_some() {
        state.access.check(&headers, Scope::Read)?;
        return Ok(Json(cluster::queues(&state, &headers, &params).await?).into_response());
    }
    let (views, consistency) = prepare(&state, &headers, &params)?;
    let now = now_param(&params)?;
    let live = live_version(views, QUEUE, &consistency).await?;
    let answer =
        query::<QueueView, _>(views, live, move |state, _| queue::queues(state, now)).await?;
    Ok(Json(json!({ "queues": answer })).into_response())
}

/// `GET /v1/queues/{queue}`.
pub async fn one_queue(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(name): Path<String>,
    Params(params): Params,
) -> Result<impl IntoResponse, ApiError> {
    if state.cluster.is_some() {
        state.access.check(&headers, Scope::Read)?;
        return Ok(
            Json(cluster::one_queue(&state, &headers, &name, &params).await?).into_response(),
        );
    }
    let (views, consistency) = prepare(&state, &headers, &params)?;
    let now = now_param(&params)?;
    let live = live_version(views, QUEUE, &consistency).await?;
    let wanted = name.clone();
    let answer = query::<QueueView, _>(views, live, move |state, _| {
        queue::queue(state, &wanted, now)
    })
    .await?
    .ok_or_else(|| ApiError::NotFound(format!("no queue {name:?}")))?;
    Ok(Json(answer).into_response())
}

/// `GET /v1/agents`.
pub async fn agents(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Params(params): Params,
) -> Result<impl IntoResponse, ApiError> {
    if state.cluster.is_some() {
        state.access.check(&headers, Scope::Read)?;
        return Ok(Json(cluster::agents(&state, &headers, None, &params).await?).into_response());
    }
    let (views, consistency) = prepare(&state, &headers, &params)?;
    let live = live_version(views, QUEUE, &consistency).await?;
    let answer = query::<QueueView, _>(views, live, |state, _| queue::agents(state)).await?;
    Ok(Json(json!({ "agents": answer })).into_response())
}

/// `GET /v1/agents/{id}`.
pub async fn one_agent(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Params(params): Params,
) -> Result<impl IntoResponse, ApiError> {
    if state.cluster.is_some() {
        state.access.check(&headers, Scope::Read)?;
        return Ok(
            Json(cluster::agents(&state, &headers, Some(&id), &params).await?).into_response(),
        );
    }
    let (views, consistency) = prepare(&state, &headers, &params)?;
    let live = live_version(views, QUEUE, &consistency).await?;
    let wanted = id.clone();
    let answer = query::<QueueView, _>(views, live, move |state, _| queue::agent(state, &wanted))
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("no agent {id:?}")))?;
    Ok(Json(answer).into_response())
}

/// `GET /v1/reports/summary?from&to&group_by=`.
pub async fn report_summary(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Params(params): Params,
) -> Result<impl IntoResponse, ApiError> {
    if state.cluster.is_some() {
        state.access.check(&headers, Scope::Read)?;
        return Ok(Json(cluster::report_summary(&state, &headers, &params).await?).into_response());
    }
    let (views, consistency) = prepare(&state, &headers, &params)?;
    let from = time_param(&params, "from")?;
    let to = time_param(&params, "to")?;
    let group_by =
        reporting::GroupBy::parse(params.get("group_by").map_or("none", String::as_str))?;
    let live = live_version(views, REPORTING, &consistency).await?;
    let partial = query::<ReportingView, _>(views, live, move |state, _| {
        reporting::summary(state, from, to, group_by)
    })
    .await?;
    Ok(Json(partial.finish()).into_response())
}

/// `GET /v1/reports/topics?from&to`.
pub async fn report_topics(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Params(params): Params,
) -> Result<impl IntoResponse, ApiError> {
    let answer = cluster::gathered_report(&state, &headers, &params, TopicsPartial::finish).await?;
    Ok(Json(answer))
}

/// `GET /v1/reports/journeys?from&to`: over journeys opened in the range.
pub async fn report_journeys(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Params(params): Params,
) -> Result<impl IntoResponse, ApiError> {
    let answer = cluster::gathered_report(&state, &headers, &params, |p: JourneyReportPartial| {
        p.finish()
    })
    .await?;
    Ok(Json(answer))
}

/// `GET /v1/reports/channels?from&to&group_by=ATTRIBUTE`: channel use per segment (or any
/// customer attribute), over the interactions started in the range.
pub async fn report_channels(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Params(params): Params,
) -> Result<impl IntoResponse, ApiError> {
    if state.cluster.is_some() {
        state.access.check(&headers, Scope::Read)?;
        return Ok(
            Json(cluster::report_channels(&state, &headers, &params).await?).into_response(),
        );
    }
    let (views, consistency) = prepare(&state, &headers, &params)?;
    let group_by = segments::parse_group_by(params.get("group_by").map(String::as_str))?;
    let from = time_param(&params, "from")?.unwrap_or(DateTime::<Utc>::MIN_UTC);
    let to = time_param(&params, "to")?.unwrap_or(DateTime::<Utc>::MAX_UTC);
    let live = live_version(views, SEGMENTS, &consistency).await?;
    let partial = query::<SegmentsView, _>(views, live, move |state, reads| {
        segments::channels_report(state, reads.records, &group_by, from, to)
    })
    .await?;
    Ok(Json(partial.finish()).into_response())
}

/// `GET /v1/reports/engagement?from&to`: the reactors' notices by reason and how many
/// notified customers contacted the desk within 24 h, against the held-out ones, over the
/// decisions due in the range.
pub async fn report_engagement(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Params(params): Params,
) -> Result<impl IntoResponse, ApiError> {
    let answer =
        cluster::gathered_report(&state, &headers, &params, |p: EngagementPartial| p.finish())
            .await?;
    Ok(Json(answer))
}

/// How often the queue stream looks for changes at most.
const STREAM_TICK: Duration = Duration::from_millis(100);

/// The part of a queue's stats whose change is news (ages move by themselves, every
/// second, and would make every tick an event).
pub(crate) fn stats_fingerprint(answer: &queue::QueueAnswer) -> String {
    json!({
        "waiting": answer.waiting,
        "oldest": answer.oldest_interaction_id,
        "assigned": answer.assigned,
        "by_channel": answer.by_channel,
        "agents": answer.agents,
    })
    .to_string()
}

/// `GET /v1/queues/stream`: server-sent events, one `queue` event with a queue's stats
/// (its answer without the items) each time they change; every queue once at the start.
pub async fn queue_stream(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Params(params): Params,
) -> Result<impl IntoResponse, ApiError> {
    if state.cluster.is_some() {
        state.access.check(&headers, Scope::Read)?;
        let events = cluster::queue_stream(state, headers, params);
        return Ok(Sse::new(events.boxed())
            .keep_alive(KeepAlive::default())
            .into_response());
    }
    let (views, _) = prepare(&state, &headers, &params)?;
    let views = views.clone();
    struct Cursor {
        views: Arc<ViewRuntime>,
        sent: BTreeMap<String, String>,
        pending: Vec<SseEvent>,
        last_version: Option<(u32, u64)>,
    }
    let cursor = Cursor {
        views,
        sent: BTreeMap::new(),
        pending: Vec::new(),
        last_version: None,
    };
    let events = stream::unfold(cursor, |mut cursor| async move {
        loop {
            if let Some(event) = cursor.pending.pop() {
                return Some((Ok::<_, Infallible>(event), cursor));
            }
            let Ok(live) = cursor.views.live(QUEUE) else {
                return None;
            };
            let status = live.status().clone();
            let mut changes = status.subscribe();
            let applied = changes.borrow_and_update().events_applied;
            if cursor.last_version == Some((status.version, applied)) {
                // Nothing new: wait for the next commit (or a swap, checked each second).
                let _ = tokio::time::timeout(Duration::from_secs(1), changes.changed()).await;
                tokio::time::sleep(STREAM_TICK).await;
                continue;
            }
            cursor.last_version = Some((status.version, applied));
            let now = Utc::now();
            let answered = query::<QueueView, _>(&cursor.views, live, move |state, _| {
                queue::queues(state, now)
            })
            .await;
            let Ok(answers) = answered else {
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            };
            for mut answer in answers {
                let fingerprint = stats_fingerprint(&answer);
                if cursor.sent.get(&answer.queue) == Some(&fingerprint) {
                    continue;
                }
                cursor.sent.insert(answer.queue.clone(), fingerprint);
                answer.items.clear();
                let mut stats = serde_json::to_value(&answer).unwrap_or_default();
                if let Some(object) = stats.as_object_mut() {
                    object.remove("items");
                }
                cursor
                    .pending
                    .push(SseEvent::default().event("queue").data(stats.to_string()));
            }
        }
    });
    Ok(Sse::new(events.boxed())
        .keep_alive(KeepAlive::default())
        .into_response())
}

/// `GET /v1/reports/service-levels`: the answer-time threshold of every channel, in
/// seconds, that `service_level` counts against, as this server is configured
/// (`--service-level`). Configuration, not a view: any instance answers from its own.
pub async fn service_levels(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
) -> Result<impl IntoResponse, ApiError> {
    state.access.check(&headers, Scope::Read)?;
    let levels = &state.config.service_levels;
    let thresholds: serde_json::Map<String, serde_json::Value> = omnilog_events::Channel::ALL
        .iter()
        .map(|&channel| {
            (
                channel.as_str().to_owned(),
                json!(levels.threshold(channel)),
            )
        })
        .collect();
    Ok(Json(json!({ "thresholds": thresholds })))
}
