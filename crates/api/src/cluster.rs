//! Queries in distributed mode: any projector instance answers any query.
//!
//! An instance folds only the interactions partitions its group gave it, one projector
//! runtime per partition (plus the whole agents topic in each). A query about one customer
//! goes to the owner of that customer's partition; a global query (queues, agents,
//! reports) asks every owner for its *partial* (the views crate's mergeable figures),
//! merges them and finishes the answer here. Owners talk over
//! `GET /v1/internal/partials/{kind}?partitions=...`, with the caller's token and
//! read-your-writes position passed on.
//!
//! Never a wrong answer: the owners of a view must cover every partition exactly once,
//! each with a projection caught up since it was assigned, and each owner checks that it
//! still answers for the partitions it is asked about. Otherwise (a rebalance, a dead
//! instance whose claim has not expired) the answer is 503 with `Retry-After`.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, header};
use axum::response::IntoResponse;
use bytes::Bytes;
use chrono::{DateTime, Utc};
use futures_util::future::join_all;
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use omnilog_events::Destination;
use omnilog_projector::ViewRuntime;
use omnilog_views::engagement::{self, EngagementPartial, EngagementState, EngagementView};
use omnilog_views::journey::{JourneyReportPartial, JourneyState, JourneyView};
use omnilog_views::queue::{AgentsPartial, QueuePartial, QueueState, QueueView, QueuesPartial};
use omnilog_views::reporting::{
    GroupBy, ReportingState, ReportingView, SummaryPartial, TopicsPartial,
};
use omnilog_views::segments::{ChannelsPartial, ProfileAnswer, SegmentsState, SegmentsView};
use omnilog_views::{View, ViewError, ViewState, journey, segments};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use crate::queries::{now_param, time_param};
use crate::read::{Consistency, Reads, live_version, query};
use crate::{ApiError, AppState, Params, Scope};

/// An instance that answers for a set of partitions of a view.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Owner {
    /// Its API's base URL.
    pub url: String,
    pub partitions: Vec<u32>,
    /// This instance itself: asked without HTTP.
    pub local: bool,
}

/// What a distributed projector instance tells its API.
pub trait Cluster: Send + Sync + std::fmt::Debug + 'static {
    /// Partitions of the interactions topic.
    fn partitions(&self) -> u32;
    /// The projector runtimes of the partitions this instance answers for now.
    fn local(&self) -> BTreeMap<u32, Arc<ViewRuntime>>;
    /// The owners of `view`, covering every partition exactly once; `None` while they do
    /// not (a rebalance in progress).
    fn owners(&self, view: &str) -> Option<Vec<Owner>>;
    /// The partition a customer's events are in.
    fn partition_of(&self, customer_id: &str) -> u32;
    /// Who owns what, for `GET /v1/views`.
    fn describe(&self) -> Value;
}

fn rebalancing(view: &str) -> ApiError {
    ApiError::Rebalancing(format!(
        "the partitions of the {view} view are moving between instances; retry in a moment"
    ))
}

/// The query's parameters an owner needs.
#[derive(Clone, Debug, Default)]
pub(crate) struct Ask {
    from: Option<DateTime<Utc>>,
    to: Option<DateTime<Utc>>,
    group_by: Option<GroupBy>,
    /// A queue, an agent, an interaction or a customer, by kind.
    subject: Option<String>,
    /// For a customer's journey: the ids merged into it and its handles (JSON).
    identity: Option<Value>,
    /// The customer attribute the channels report groups by (its `group_by`, passed on as
    /// `attribute`: `group_by` names the summary's groupings).
    attribute: Option<String>,
}

impl Ask {
    /// The asked range, open ends as far as time goes.
    fn since(&self) -> DateTime<Utc> {
        self.from.unwrap_or(DateTime::<Utc>::MIN_UTC)
    }

    fn until(&self) -> DateTime<Utc> {
        self.to.unwrap_or(DateTime::<Utc>::MAX_UTC)
    }

    fn from_params(params: &BTreeMap<String, String>) -> Result<Self, ApiError> {
        Ok(Ask {
            from: time_param(params, "from")?,
            to: time_param(params, "to")?,
            group_by: params
                .get("group_by")
                .map(|g| GroupBy::parse(g))
                .transpose()?,
            subject: params.get("subject").cloned(),
            identity: params
                .get("identity")
                .map(|text| serde_json::from_str(text))
                .transpose()
                .map_err(|e| ApiError::invalid("identity", e.to_string()))?,
            attribute: params
                .get("attribute")
                .map(|text| segments::parse_group_by(Some(text)))
                .transpose()?,
        })
    }

    fn subject(&self) -> &str {
        self.subject.as_deref().unwrap_or_default()
    }
}

/// A partial answer that owners compute over their partitions and the asker merges.
pub(crate) trait Gathered: Serialize + DeserializeOwned + Send + 'static {
    /// The kind in `/v1/internal/partials/{kind}`.
    const KIND: &'static str;
    const VIEW: &'static str;
    /// The view it is computed over.
    type Of: View;
    fn compute(
        state: &<Self::Of as View>::State,
        reads: &Reads<'_>,
        ask: &Ask,
    ) -> Result<Self, ViewError>;
    fn merge(&mut self, other: Self);
}

impl Gathered for QueuesPartial {
    const KIND: &'static str = "queues";
    const VIEW: &'static str = "queue";
    type Of = QueueView;
    fn compute(state: &QueueState, _: &Reads<'_>, _: &Ask) -> Result<Self, ViewError> {
        QueuesPartial::from_state(state)
    }
    fn merge(&mut self, other: Self) {
        QueuesPartial::merge(self, other);
    }
}

/// One queue; `None` where the queue was never named.
#[derive(Debug, Serialize, serde::Deserialize)]
struct OneQueue(Option<QueuePartial>);

impl Gathered for OneQueue {
    const KIND: &'static str = "queue";
    const VIEW: &'static str = "queue";
    type Of = QueueView;
    fn compute(state: &QueueState, _: &Reads<'_>, ask: &Ask) -> Result<Self, ViewError> {
        let known = omnilog_views::queue::queue(state, ask.subject(), Utc::now())?.is_some();
        Ok(OneQueue(
            known
                .then(|| QueuePartial::from_state(state, ask.subject()))
                .transpose()?,
        ))
    }
    fn merge(&mut self, other: Self) {
        match (&mut self.0, other.0) {
            (Some(mine), Some(theirs)) => mine.merge(theirs),
            (mine @ None, theirs) => *mine = theirs,
            (Some(_), None) => {}
        }
    }
}

impl Gathered for AgentsPartial {
    const KIND: &'static str = "agents";
    const VIEW: &'static str = "queue";
    type Of = QueueView;
    fn compute(state: &QueueState, _: &Reads<'_>, ask: &Ask) -> Result<Self, ViewError> {
        match &ask.subject {
            Some(agent) => AgentsPartial::for_agent(state, agent),
            None => AgentsPartial::from_state(state),
        }
    }
    fn merge(&mut self, other: Self) {
        AgentsPartial::merge(self, other);
    }
}

impl Gathered for SummaryPartial {
    const KIND: &'static str = "summary";
    const VIEW: &'static str = "reporting";
    type Of = ReportingView;
    fn compute(state: &ReportingState, _: &Reads<'_>, ask: &Ask) -> Result<Self, ViewError> {
        omnilog_views::reporting::summary(
            state,
            ask.from,
            ask.to,
            ask.group_by.unwrap_or(GroupBy::None),
        )
    }
    fn merge(&mut self, other: Self) {
        SummaryPartial::merge(self, other);
    }
}

impl Gathered for TopicsPartial {
    const KIND: &'static str = "topics";
    const VIEW: &'static str = "reporting";
    type Of = ReportingView;
    fn compute(state: &ReportingState, _: &Reads<'_>, ask: &Ask) -> Result<Self, ViewError> {
        omnilog_views::reporting::topics(state, ask.from, ask.to)
    }
    fn merge(&mut self, other: Self) {
        TopicsPartial::merge(self, other);
    }
}

impl Gathered for JourneyReportPartial {
    const KIND: &'static str = "journeys";
    const VIEW: &'static str = "journey";
    type Of = JourneyView;
    fn compute(state: &JourneyState, reads: &Reads<'_>, ask: &Ask) -> Result<Self, ViewError> {
        journey::journeys_report(state, reads.records, ask.since(), ask.until())
    }
    fn merge(&mut self, other: Self) {
        JourneyReportPartial::merge(self, &other);
    }
}

impl Gathered for ChannelsPartial {
    const KIND: &'static str = "channels";
    const VIEW: &'static str = crate::queries::SEGMENTS;
    type Of = SegmentsView;
    fn compute(state: &SegmentsState, reads: &Reads<'_>, ask: &Ask) -> Result<Self, ViewError> {
        segments::channels_report(
            state,
            reads.records,
            ask.attribute
                .as_deref()
                .unwrap_or(segments::DEFAULT_GROUP_BY),
            ask.since(),
            ask.until(),
        )
    }
    fn merge(&mut self, other: Self) {
        ChannelsPartial::merge(self, other);
    }
}

impl Gathered for EngagementPartial {
    const KIND: &'static str = "engagement";
    const VIEW: &'static str = crate::queries::ENGAGEMENT;
    type Of = EngagementView;
    fn compute(state: &EngagementState, reads: &Reads<'_>, ask: &Ask) -> Result<Self, ViewError> {
        engagement::engagement_report(state, reads.records, ask.since(), ask.until())
    }
    fn merge(&mut self, other: Self) {
        EngagementPartial::merge(self, other);
    }
}

/// One customer's profile record, for the profile of a customer and the ids merged into it.
#[derive(Debug, Default, Serialize, serde::Deserialize)]
struct ProfileEntries(Vec<(Vec<u8>, Vec<u8>)>);

impl Gathered for ProfileEntries {
    const KIND: &'static str = "profile-entries";
    const VIEW: &'static str = crate::queries::SEGMENTS;
    type Of = SegmentsView;
    fn compute(state: &SegmentsState, reads: &Reads<'_>, ask: &Ask) -> Result<Self, ViewError> {
        Ok(ProfileEntries(segments::profile_entries(
            state,
            reads.records,
            ask.subject(),
        )?))
    }
    fn merge(&mut self, other: Self) {
        self.0.extend(other.0);
    }
}

/// An interaction, from whichever partition holds it.
#[derive(Debug, Serialize, serde::Deserialize)]
struct FoundInteraction(Option<Value>);

impl Gathered for FoundInteraction {
    const KIND: &'static str = "interaction";
    const VIEW: &'static str = "journey";
    type Of = JourneyView;
    fn compute(state: &JourneyState, reads: &Reads<'_>, ask: &Ask) -> Result<Self, ViewError> {
        Ok(FoundInteraction(
            journey::interaction(state, reads.records, reads.events, ask.subject())?
                .map(|answer| serde_json::to_value(answer).unwrap_or_default()),
        ))
    }
    fn merge(&mut self, other: Self) {
        if self.0.is_none() {
            self.0 = other.0;
        }
    }
}

/// A customer's journey, from the owner of the customer's partition.
#[derive(Debug, Serialize, serde::Deserialize)]
struct FoundJourney(Option<Value>);

impl Gathered for FoundJourney {
    const KIND: &'static str = "journey";
    const VIEW: &'static str = "journey";
    type Of = JourneyView;
    fn compute(state: &JourneyState, reads: &Reads<'_>, ask: &Ask) -> Result<Self, ViewError> {
        let identity = ask.identity.clone().unwrap_or_default();
        let merged_from: Vec<String> =
            serde_json::from_value(identity["merged_from"].clone()).unwrap_or_default();
        let handles: Vec<omnilog_events::Handle> =
            serde_json::from_value(identity["handles"].clone()).unwrap_or_default();
        Ok(FoundJourney(
            journey::customer_journey(
                state,
                reads.records,
                reads.events,
                ask.subject(),
                &merged_from,
                &handles,
            )?
            .map(|answer| serde_json::to_value(answer).unwrap_or_default()),
        ))
    }
    fn merge(&mut self, other: Self) {
        if self.0.is_none() {
            self.0 = other.0;
        }
    }
}

/// One customer's journey entries, for the journey of customers merged across partitions.
#[derive(Debug, Default, Serialize, serde::Deserialize)]
struct JourneyEntries(Vec<(Vec<u8>, Vec<u8>)>);

impl Gathered for JourneyEntries {
    const KIND: &'static str = "journey-entries";
    const VIEW: &'static str = "journey";
    type Of = JourneyView;
    fn compute(state: &JourneyState, reads: &Reads<'_>, ask: &Ask) -> Result<Self, ViewError> {
        Ok(JourneyEntries(journey::customer_entries(
            state,
            reads.records,
            ask.subject(),
        )?))
    }
    fn merge(&mut self, other: Self) {
        self.0.extend(other.0);
    }
}

/// The part of a read-your-writes wait that concerns one partition's runtime: its
/// interactions partition and the whole agents topic.
fn consistency_for(consistency: &Consistency, partition: u32) -> Consistency {
    Consistency {
        awaited: consistency
            .awaited
            .iter()
            .filter(|p| p.topic == Destination::Agents || p.partition == partition)
            .copied()
            .collect(),
        wait: consistency.wait,
    }
}

/// This instance's partial over `partitions`, each of which it must answer for.
async fn local_partial<T: Gathered>(
    cluster: &dyn Cluster,
    partitions: &[u32],
    ask: &Ask,
    consistency: &Consistency,
) -> Result<Option<T>, ApiError> {
    let local = cluster.local();
    let mut merged: Option<T> = None;
    for &partition in partitions {
        let runtime = local.get(&partition).ok_or_else(|| rebalancing(T::VIEW))?;
        let live = live_version(runtime, T::VIEW, &consistency_for(consistency, partition)).await?;
        let ask = ask.clone();
        let partial = query::<T::Of, _>(runtime, live, move |state, reads| {
            T::compute(state, reads, &ask)
        })
        .await?;
        match &mut merged {
            Some(mine) => mine.merge(partial),
            None => merged = Some(partial),
        }
    }
    Ok(merged)
}

/// The HTTP client owners use to ask each other.
fn client() -> &'static Client<HttpConnector, Empty<Bytes>> {
    static CLIENT: std::sync::OnceLock<Client<HttpConnector, Empty<Bytes>>> =
        std::sync::OnceLock::new();
    CLIENT.get_or_init(|| Client::builder(TokioExecutor::new()).build_http())
}

/// Another owner's partial over `partitions`.
async fn remote_partial<T: Gathered>(
    owner: &Owner,
    params: &BTreeMap<String, String>,
    headers: &HeaderMap,
) -> Result<Option<T>, ApiError> {
    let mut query: Vec<(String, String)> = params
        .iter()
        .filter(|(name, _)| name.as_str() != "partitions")
        .map(|(name, value)| (name.clone(), value.clone()))
        .collect();
    let partitions: Vec<String> = owner.partitions.iter().map(u32::to_string).collect();
    query.push(("partitions".to_owned(), partitions.join(",")));
    let query = serde_urlencoded::to_string(&query).unwrap_or_default();
    let url = format!("{}/v1/internal/partials/{}?{query}", owner.url, T::KIND);
    let mut request = hyper::Request::get(&url);
    for name in [header::AUTHORIZATION.as_str(), crate::read::AFTER_HEADER] {
        if let Some(value) = headers.get(name) {
            request = request.header(name, value);
        }
    }
    let request = request
        .body(Empty::new())
        .map_err(|e| ApiError::Internal(e.to_string()))?;
    let unreachable = |e: String| {
        ApiError::Rebalancing(format!("the owner at {} did not answer: {e}", owner.url))
    };
    let response = tokio::time::timeout(
        std::time::Duration::from_secs(70),
        client().request(request),
    )
    .await
    .map_err(|_| unreachable("no answer within 70 s".to_owned()))?
    .map_err(|e| unreachable(e.to_string()))?;
    let status = response.status();
    let body = response
        .into_body()
        .collect()
        .await
        .map_err(|e| unreachable(e.to_string()))?
        .to_bytes();
    let detail = || {
        serde_json::from_slice::<Value>(&body)
            .ok()
            .and_then(|v| v["detail"].as_str().map(str::to_owned))
            .unwrap_or_else(|| String::from_utf8_lossy(&body).into_owned())
    };
    match status.as_u16() {
        200 => {
            let answer: Value = serde_json::from_slice(&body).map_err(|e| {
                ApiError::Internal(format!("a partial from {} is not JSON: {e}", owner.url))
            })?;
            serde_json::from_value(answer["partial"].clone()).map_err(|e| {
                ApiError::Internal(format!("a partial from {} does not parse: {e}", owner.url))
            })
        }
        400 => Err(ApiError::invalid("", detail())),
        401 => Err(ApiError::Unauthorized(detail())),
        403 => Err(ApiError::Forbidden(detail())),
        503 => Err(ApiError::Rebalancing(detail())),
        504 => Err(ApiError::Timeout(detail())),
        _ => Err(ApiError::Internal(format!(
            "the owner at {} answered {status}: {}",
            owner.url,
            detail()
        ))),
    }
}

/// Gathers `T` from the owners of the `wanted` partitions (all when `None`) and merges.
async fn gather<T: Gathered>(
    cluster: &dyn Cluster,
    params: &BTreeMap<String, String>,
    headers: &HeaderMap,
    ask: &Ask,
    wanted: Option<u32>,
) -> Result<Option<T>, ApiError> {
    let consistency = Consistency::from_request(params, headers)?;
    let owners = cluster
        .owners(T::VIEW)
        .ok_or_else(|| rebalancing(T::VIEW))?;
    let owners: Vec<Owner> = owners
        .into_iter()
        .filter_map(|mut owner| {
            if let Some(partition) = wanted {
                owner.partitions.retain(|&p| p == partition);
            }
            (!owner.partitions.is_empty()).then_some(owner)
        })
        .collect();
    let mut params = params.clone();
    if let Some(subject) = &ask.subject {
        params.insert("subject".to_owned(), subject.clone());
    }
    if let Some(identity) = &ask.identity {
        params.insert("identity".to_owned(), identity.to_string());
    }
    let answers = join_all(owners.iter().map(|owner| {
        let consistency = &consistency;
        let params = &params;
        async move {
            if owner.local {
                local_partial::<T>(cluster, &owner.partitions, ask, consistency).await
            } else {
                remote_partial::<T>(owner, params, headers).await
            }
        }
    }))
    .await;
    let mut merged: Option<T> = None;
    for answer in answers {
        if let Some(partial) = answer? {
            match &mut merged {
                Some(mine) => mine.merge(partial),
                None => merged = Some(partial),
            }
        }
    }
    Ok(merged)
}

fn cluster_of(state: &AppState) -> Result<&Arc<dyn Cluster>, ApiError> {
    state.cluster.as_ref().ok_or_else(|| {
        ApiError::NotFound("this instance is not part of a projector group".to_owned())
    })
}

/// `GET /v1/internal/partials/{kind}?partitions=...`: this instance's partial.
pub async fn internal_partial(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(kind): Path<String>,
    Params(params): Params,
) -> Result<impl IntoResponse, ApiError> {
    state.access.check(&headers, Scope::Read)?;
    let cluster = cluster_of(&state)?;
    let partitions: Vec<u32> = params
        .get("partitions")
        .map(String::as_str)
        .unwrap_or_default()
        .split(',')
        .filter(|p| !p.is_empty())
        .map(|p| {
            p.parse()
                .map_err(|_| ApiError::invalid("partitions", format!("{p:?} is not a partition")))
        })
        .collect::<Result<_, _>>()?;
    let ask = Ask::from_params(&params)?;
    let consistency = Consistency::from_request(&params, &headers)?;
    let cluster = &**cluster;
    async fn one<T: Gathered>(
        cluster: &dyn Cluster,
        partitions: &[u32],
        ask: &Ask,
        consistency: &Consistency,
    ) -> Result<Value, ApiError> {
        let partial = local_partial::<T>(cluster, partitions, ask, consistency).await?;
        Ok(json!({ "partitions": partitions, "partial": partial }))
    }
    let answer = match kind.as_str() {
        QueuesPartial::KIND => {
            one::<QueuesPartial>(cluster, &partitions, &ask, &consistency).await?
        }
        OneQueue::KIND => one::<OneQueue>(cluster, &partitions, &ask, &consistency).await?,
        AgentsPartial::KIND => {
            one::<AgentsPartial>(cluster, &partitions, &ask, &consistency).await?
        }
        SummaryPartial::KIND => {
            one::<SummaryPartial>(cluster, &partitions, &ask, &consistency).await?
        }
        TopicsPartial::KIND => {
            one::<TopicsPartial>(cluster, &partitions, &ask, &consistency).await?
        }
        JourneyReportPartial::KIND => {
            one::<JourneyReportPartial>(cluster, &partitions, &ask, &consistency).await?
        }
        FoundInteraction::KIND => {
            one::<FoundInteraction>(cluster, &partitions, &ask, &consistency).await?
        }
        FoundJourney::KIND => one::<FoundJourney>(cluster, &partitions, &ask, &consistency).await?,
        JourneyEntries::KIND => {
            one::<JourneyEntries>(cluster, &partitions, &ask, &consistency).await?
        }
        ChannelsPartial::KIND => {
            one::<ChannelsPartial>(cluster, &partitions, &ask, &consistency).await?
        }
        ProfileEntries::KIND => {
            one::<ProfileEntries>(cluster, &partitions, &ask, &consistency).await?
        }
        EngagementPartial::KIND => {
            one::<EngagementPartial>(cluster, &partitions, &ask, &consistency).await?
        }
        other => return Err(ApiError::NotFound(format!("no partial of kind {other:?}"))),
    };
    Ok(Json(answer))
}

/// `GET /v1/customers/{id}/journey` in distributed mode.
pub async fn customer_journey(
    state: &AppState,
    headers: &HeaderMap,
    id: &str,
    params: &BTreeMap<String, String>,
) -> Result<Value, ApiError> {
    let cluster = cluster_of(state)?;
    crate::identity_after(state, &Consistency::from_request(params, headers)?).await?;
    let identity = state.identity.customer(id);
    let (customer_id, merged_from, handles) = match identity {
        Some(identity) => (identity.customer_id, identity.merged_from, identity.handles),
        None => (id.to_owned(), Vec::new(), Vec::new()),
    };
    let members: Vec<String> = std::iter::once(customer_id.clone())
        .chain(merged_from.iter().cloned())
        .collect();
    let partition = cluster.partition_of(&customer_id);
    let spread = merged_from
        .iter()
        .any(|member| cluster.partition_of(member) != partition);
    let mut answer = if spread {
        merged_journey(
            &**cluster,
            headers,
            id,
            &customer_id,
            &merged_from,
            &handles,
            params,
        )
        .await?
    } else {
        let ask = Ask {
            subject: Some(customer_id),
            identity: Some(json!({ "merged_from": merged_from, "handles": handles })),
            ..Ask::default()
        };
        gather::<FoundJourney>(&**cluster, params, headers, &ask, Some(partition))
            .await?
            .and_then(|found| found.0)
            .ok_or_else(|| ApiError::NotFound(format!("no journey of customer {id:?}")))?
    };
    if let Some(profile) = customer_profile(state, headers, params, &members).await? {
        crate::queries::attach_profile(&mut answer, profile);
    }
    Ok(answer)
}

/// The profile of a customer and the ids merged into it (`members`) in distributed mode:
/// each member's record from the owner of its partition, loaded side by side and asked as
/// one state. `None` while no owners cover the segments view (it is not projected in this
/// group, or its partitions are moving): a journey is then answered without the profile.
pub async fn customer_profile(
    state: &AppState,
    headers: &HeaderMap,
    params: &BTreeMap<String, String>,
    members: &[String],
) -> Result<Option<ProfileAnswer>, ApiError> {
    let cluster = cluster_of(state)?;
    if cluster.owners(crate::queries::SEGMENTS).is_none() {
        return Ok(None);
    }
    let mut local = SegmentsView::default().new_state();
    for member in members {
        let ask = Ask {
            subject: Some(member.clone()),
            ..Ask::default()
        };
        let entries = gather::<ProfileEntries>(
            &**cluster,
            params,
            headers,
            &ask,
            Some(cluster.partition_of(member)),
        )
        .await?
        .unwrap_or_default();
        for (key, value) in entries.0 {
            local.restore(&key, Some(&value)).map_err(ApiError::from)?;
        }
    }
    Ok(Some(
        segments::customer_profile(&local, &omnilog_views::NoRecords, members)
            .map_err(ApiError::from)?
            .unwrap_or_default(),
    ))
}

/// The journey of customers merged across partitions: every member's entries from the
/// owner of its partition, loaded side by side, asked as one state.
async fn merged_journey(
    cluster: &dyn Cluster,
    headers: &HeaderMap,
    id: &str,
    customer_id: &str,
    merged_from: &[String],
    handles: &[omnilog_events::Handle],
    params: &BTreeMap<String, String>,
) -> Result<Value, ApiError> {
    let mut state = JourneyView::default().new_state();
    for member in std::iter::once(customer_id).chain(merged_from.iter().map(String::as_str)) {
        let ask = Ask {
            subject: Some(member.to_owned()),
            ..Ask::default()
        };
        let entries = gather::<JourneyEntries>(
            cluster,
            params,
            headers,
            &ask,
            Some(cluster.partition_of(member)),
        )
        .await?
        .unwrap_or_default();
        for (key, value) in entries.0 {
            state.restore(&key, Some(&value)).map_err(ApiError::from)?;
        }
    }
    // Each owner's entries hold their timelines' whole lines (a cluster's log is Kafka's: see
    // `JourneyConfig::timelines_from_log`), so no event is read here.
    journey::customer_journey(
        &state,
        &omnilog_views::NoRecords,
        &journey::NoLog,
        customer_id,
        merged_from,
        handles,
    )
    .map_err(ApiError::from)?
    .map(|answer| serde_json::to_value(answer).unwrap_or_default())
    .ok_or_else(|| ApiError::NotFound(format!("no journey of customer {id:?}")))
}

/// `GET /v1/interactions/{id}` in distributed mode: asks every owner.
pub async fn interaction(
    state: &AppState,
    headers: &HeaderMap,
    id: &str,
    params: &BTreeMap<String, String>,
) -> Result<Value, ApiError> {
    let ask = Ask {
        subject: Some(id.to_owned()),
        ..Ask::default()
    };
    gather::<FoundInteraction>(&**cluster_of(state)?, params, headers, &ask, None)
        .await?
        .and_then(|found| found.0)
        .ok_or_else(|| ApiError::NotFound(format!("no interaction {id:?}")))
}

/// `GET /v1/queues` in distributed mode.
pub async fn queues(
    state: &AppState,
    headers: &HeaderMap,
    params: &BTreeMap<String, String>,
) -> Result<Value, ApiError> {
    let now = now_param(params)?;
    let partial = gather::<QueuesPartial>(
        &**cluster_of(state)?,
        params,
        headers,
        &Ask::default(),
        None,
    )
    .await?
    .unwrap_or_default();
    Ok(json!({ "queues": partial.finish(now) }))
}

/// `GET /v1/queues/{queue}` in distributed mode.
pub async fn one_queue(
    state: &AppState,
    headers: &HeaderMap,
    name: &str,
    params: &BTreeMap<String, String>,
) -> Result<Value, ApiError> {
    let now = now_param(params)?;
    let ask = Ask {
        subject: Some(name.to_owned()),
        ..Ask::default()
    };
    let partial = gather::<OneQueue>(&**cluster_of(state)?, params, headers, &ask, None)
        .await?
        .and_then(|found| found.0)
        .ok_or_else(|| ApiError::NotFound(format!("no queue {name:?}")))?;
    Ok(serde_json::to_value(partial.finish(now)).unwrap_or_default())
}

/// `GET /v1/agents` and `GET /v1/agents/{id}` in distributed mode.
pub async fn agents(
    state: &AppState,
    headers: &HeaderMap,
    agent: Option<&str>,
    params: &BTreeMap<String, String>,
) -> Result<Value, ApiError> {
    let ask = Ask {
        subject: agent.map(str::to_owned),
        ..Ask::default()
    };
    let partial = gather::<AgentsPartial>(&**cluster_of(state)?, params, headers, &ask, None)
        .await?
        .unwrap_or_default();
    match agent {
        None => Ok(json!({ "agents": partial.answers() })),
        Some(id) => partial
            .answer_for(id)
            .map(|answer| serde_json::to_value(answer).unwrap_or_default())
            .ok_or_else(|| ApiError::NotFound(format!("no agent {id:?}"))),
    }
}

/// A report that is one [`Gathered`] partial finished: merged from the owners of its
/// view's partitions in distributed mode, computed over the local view otherwise. Both
/// modes compute it with the same [`Gathered::compute`] from the same [`Ask`], so they
/// read the same parameters and give the same answer.
pub(crate) async fn gathered_report<T: Gathered + Default, A: Serialize>(
    state: &AppState,
    headers: &HeaderMap,
    params: &BTreeMap<String, String>,
    finish: impl FnOnce(T) -> A,
) -> Result<Value, ApiError> {
    state.access.check(headers, Scope::Read)?;
    let ask = Ask::from_params(params)?;
    let partial = match &state.cluster {
        Some(cluster) => gather::<T>(&**cluster, params, headers, &ask, None)
            .await?
            .unwrap_or_default(),
        None => {
            let views = crate::queries::views(state)?;
            let consistency = Consistency::from_request(params, headers)?;
            let live = live_version(views, T::VIEW, &consistency).await?;
            query::<T::Of, _>(views, live, move |state, reads| {
                T::compute(state, reads, &ask)
            })
            .await?
        }
    };
    Ok(serde_json::to_value(finish(partial)).unwrap_or_default())
}

/// `GET /v1/reports/summary` in distributed mode.
pub async fn report_summary(
    state: &AppState,
    headers: &HeaderMap,
    params: &BTreeMap<String, String>,
) -> Result<Value, ApiError> {
    let mut ask = Ask::from_params(params)?;
    let group_by = ask.group_by.unwrap_or(GroupBy::None);
    ask.group_by = Some(group_by);
    let partial = gather::<SummaryPartial>(&**cluster_of(state)?, params, headers, &ask, None)
        .await?
        .unwrap_or_else(|| SummaryPartial::empty(group_by));
    Ok(serde_json::to_value(partial.finish()).unwrap_or_default())
}

/// `GET /v1/reports/channels` in distributed mode. The attribute travels to the owners as
/// `attribute` (their `group_by` is the summary's).
pub async fn report_channels(
    state: &AppState,
    headers: &HeaderMap,
    params: &BTreeMap<String, String>,
) -> Result<Value, ApiError> {
    let group_by = segments::parse_group_by(params.get("group_by").map(String::as_str))?;
    let mut forwarded = params.clone();
    forwarded.remove("group_by");
    forwarded.insert("attribute".to_owned(), group_by.clone());
    let ask = Ask::from_params(&forwarded)?;
    let partial = gather::<ChannelsPartial>(&**cluster_of(state)?, &forwarded, headers, &ask, None)
        .await?
        .unwrap_or_else(|| ChannelsPartial {
            group_by,
            groups: Vec::new(),
        });
    Ok(serde_json::to_value(partial.finish()).unwrap_or_default())
}

/// The partitions of `view` covered exactly once by `owners`, checked.
pub fn exact_cover(partitions: u32, owners: &[Owner]) -> bool {
    let mut seen = BTreeSet::new();
    for owner in owners {
        for &p in &owner.partitions {
            if p >= partitions || !seen.insert(p) {
                return false;
            }
        }
    }
    seen.len() as u32 == partitions
}

/// `GET /v1/queues/stream` in distributed mode: every half second, the queues gathered
/// from every owner; a `queue` event for each queue whose stats changed (every queue
/// once at the start). While partitions move, the stream waits and goes on.
pub fn queue_stream(
    state: Arc<AppState>,
    headers: HeaderMap,
    params: BTreeMap<String, String>,
) -> impl futures_util::Stream<Item = Result<axum::response::sse::Event, std::convert::Infallible>>
{
    const TICK: std::time::Duration = std::time::Duration::from_millis(500);
    struct Cursor {
        state: Arc<AppState>,
        headers: HeaderMap,
        params: BTreeMap<String, String>,
        sent: BTreeMap<String, String>,
        pending: Vec<axum::response::sse::Event>,
        first: bool,
    }
    let cursor = Cursor {
        state,
        headers,
        params,
        sent: BTreeMap::new(),
        pending: Vec::new(),
        first: true,
    };
    futures_util::stream::unfold(cursor, |mut cursor| async move {
        loop {
            if let Some(event) = cursor.pending.pop() {
                return Some((Ok(event), cursor));
            }
            if !cursor.first {
                tokio::time::sleep(TICK).await;
            }
            cursor.first = false;
            let Ok(cluster) = cluster_of(&cursor.state) else {
                return None;
            };
            let Ok(Some(partial)) = gather::<QueuesPartial>(
                &**cluster,
                &cursor.params,
                &cursor.headers,
                &Ask::default(),
                None,
            )
            .await
            else {
                continue;
            };
            for answer in partial.finish(Utc::now()) {
                let mut stats = serde_json::to_value(&answer).unwrap_or_default();
                if let Some(object) = stats.as_object_mut() {
                    object.remove("items");
                }
                let fingerprint = crate::queries::stats_fingerprint(&answer);
                if cursor.sent.get(&answer.queue) == Some(&fingerprint) {
                    continue;
                }
                cursor.sent.insert(answer.queue.clone(), fingerprint);
                cursor.pending.push(
                    axum::response::sse::Event::default()
                        .event("queue")
                        .data(stats.to_string()),
                );
            }
        }
    })
}
