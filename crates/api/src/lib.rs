//! The HTTP API (CONTRACT §6): axum routers for ingest, channel webhooks and identity
//! queries, with `application/problem+json` errors and bearer-token access control.
//!
//! Handlers translate HTTP to calls on the write path ([`omnilog_ingest::Ingest`]) and
//! the channel registry; they hold no business rules. Every refusal happens before the
//! write path is called, so nothing of a refused request reaches the log.

pub mod admin;
pub mod auth;
pub mod cluster;
pub mod console;
pub mod identity;
pub mod metrics;
pub mod params;
pub mod problem;
pub mod queries;
pub mod read;
pub mod serving;

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::{OriginalUri, Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::{Json, Router};
use bytes::Bytes;
use chrono::Utc;
use omnilog_channels::{ChannelError, Registry, SignatureScheme, WebhookRequest};
use omnilog_events::Event;
use omnilog_ingest::{Ingest, Receipt};
use serde_json::json;

pub use auth::{AccessControl, Scope};
pub use identity::{FrozenIdentities, Identities};
pub use metrics::ApiMetrics;
pub use params::Params;
pub use problem::ApiError;

/// Settings of the HTTP API.
#[derive(Clone, Debug)]
pub struct ApiConfig {
    /// The largest request body accepted (413 above it).
    pub max_body_bytes: usize,
    /// The URL platforms call us at (`https://desk.example.com`), for Twilio's signature,
    /// which signs the full URL. Without it the `Host` header is trusted.
    pub public_url: Option<String>,
    /// Channel path → the platform secret its webhooks are signed with.
    pub channel_secrets: BTreeMap<String, String>,
    /// The verify token of Meta's subscription handshake (`GET` on a Meta channel's URL),
    /// as set in the Meta app dashboard. Without it the handshake is refused.
    pub meta_verify_token: Option<String>,
    /// How long a client may take to send a request's body (408 after it).
    pub body_timeout: std::time::Duration,
    /// The service-level thresholds the server's reporting view measures with, published
    /// at `GET /v1/reports/service-levels` (the console holds queues to them).
    pub service_levels: omnilog_views::reporting::ReportingConfig,
    /// How far behind the log the views may be and `/readyz` still answer ready (see
    /// [`admin::Readiness`]).
    pub ready_max_lag: std::time::Duration,
}

impl Default for ApiConfig {
    fn default() -> Self {
        ApiConfig {
            max_body_bytes: 8 * 1024 * 1024,
            public_url: None,
            meta_verify_token: None,
            channel_secrets: BTreeMap::new(),
            body_timeout: serving::BODY_TIMEOUT,
            service_levels: Default::default(),
            ready_max_lag: admin::READY_MAX_LAG,
        }
    }
}

/// What every handler shares.
#[derive(Clone, Debug)]
pub struct AppState {
    /// The write path; `None` on a read-only server (a replayed store).
    pub ingest: Option<Ingest>,
    /// Customer lookups (ingest's identity view, or a frozen one).
    pub identity: Arc<dyn Identities>,
    pub channels: Arc<Registry>,
    pub access: Arc<AccessControl>,
    pub config: Arc<ApiConfig>,
    /// The projected views this instance serves (none on a pure ingest server).
    pub views: Option<Arc<omnilog_projector::ViewRuntime>>,
    /// In distributed mode: the partitions this instance owns and who owns the others.
    pub cluster: Option<Arc<dyn cluster::Cluster>>,
    pub metrics: Arc<ApiMetrics>,
    /// What `/readyz` remembers between probes.
    pub readiness: Arc<admin::Readiness>,
}

impl AppState {
    /// The write side only: no views, fresh metrics.
    pub fn new(
        ingest: Ingest,
        channels: Arc<Registry>,
        access: Arc<AccessControl>,
        config: Arc<ApiConfig>,
    ) -> Self {
        AppState {
            identity: Arc::new(ingest.clone()),
            ingest: Some(ingest),
            channels,
            access,
            config,
            views: None,
            cluster: None,
            metrics: Arc::new(ApiMetrics::default()),
            readiness: Arc::default(),
        }
    }

    /// A read-only server: queries over `views` and `identity`, no writes.
    pub fn read_only(
        identity: Arc<dyn Identities>,
        access: Arc<AccessControl>,
        config: Arc<ApiConfig>,
        views: Arc<omnilog_projector::ViewRuntime>,
    ) -> Self {
        AppState {
            ingest: None,
            identity,
            channels: Arc::new(Registry::default()),
            access,
            config,
            views: Some(views),
            cluster: None,
            metrics: Arc::new(ApiMetrics::default()),
            readiness: Arc::default(),
        }
    }

    /// Answers queries as one instance of a projector group (distributed mode).
    pub fn with_cluster(
        mut self,
        cluster: Arc<dyn cluster::Cluster>,
        metrics: Arc<ApiMetrics>,
    ) -> Self {
        self.cluster = Some(cluster);
        self.metrics = metrics;
        self
    }

    /// Serves `views` too, with the metrics their projectors write to.
    pub fn with_views(
        mut self,
        views: Arc<omnilog_projector::ViewRuntime>,
        metrics: Arc<ApiMetrics>,
    ) -> Self {
        self.views = Some(views);
        self.metrics = metrics;
        self
    }
}

/// The whole API.
pub fn router(state: AppState) -> Router {
    let metrics = state.metrics.clone();
    Router::new()
        .route("/v1/events", post(post_events))
        .route(
            "/v1/channels/{channel}",
            post(post_channel).get(channel_handshake),
        )
        .route("/v1/customers/resolve", get(resolve_customer))
        .route("/v1/customers/{id}", get(get_customer))
        .route("/v1/customers/{id}/journey", get(queries::customer_journey))
        .route("/v1/interactions/{id}", get(queries::interaction))
        .route("/v1/queues", get(queries::queues))
        .route("/v1/queues/stream", get(queries::queue_stream))
        .route("/v1/queues/{queue}", get(queries::one_queue))
        .route("/v1/agents", get(queries::agents))
        .route("/v1/agents/{id}", get(queries::one_agent))
        .route("/v1/reports/summary", get(queries::report_summary))
        .route("/v1/reports/journeys", get(queries::report_journeys))
        .route("/v1/reports/topics", get(queries::report_topics))
        .route("/v1/reports/service-levels", get(queries::service_levels))
        .route("/v1/reports/channels", get(queries::report_channels))
        .route("/v1/reports/engagement", get(queries::report_engagement))
        .route("/v1/views", get(admin::list_views))
        .route(
            "/v1/internal/partials/{kind}",
            get(cluster::internal_partial),
        )
        .route("/v1/views/{view}/rebuild", post(admin::rebuild_view))
        .route("/v1/admin/channels", get(list_channels))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(admin::ready))
        .route("/metrics", get(admin::metrics))
        .merge(console::routes())
        .fallback(|uri: OriginalUri| async move {
            ApiError::NotFound(format!("no route for {}", uri.0.path()))
        })
        .route_layer(axum::middleware::from_fn_with_state(
            metrics,
            metrics::track,
        ))
        .layer(axum::middleware::from_fn(problem::as_problem))
        // Behind one `Arc`: axum clones the state for every request, and cloning and
        // dropping its nine handles was 1.5 % of a server's samples under one-event
        // requests (`perf record` of `omnilog bench`'s stage d).
        .with_state(Arc::new(state))
}

/// The media type of a request, without parameters, lower-cased.
fn media_type(headers: &HeaderMap) -> Option<String> {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| {
            v.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase()
        })
        .filter(|v| !v.is_empty())
}

/// A gzip body, decompressed within the same limit as a plain one (so a small bomb cannot
/// grow past it).
fn gunzip(compressed: &[u8], limit: usize) -> Result<Bytes, ApiError> {
    use std::io::Read as _;
    let mut plain = Vec::new();
    flate2::read::MultiGzDecoder::new(compressed)
        .take(limit as u64 + 1)
        .read_to_end(&mut plain)
        .map_err(|e| {
            ApiError::invalid("body", format!("the gzip body does not decompress: {e}"))
        })?;
    if plain.len() > limit {
        return Err(ApiError::TooLarge(format!(
            "the body decompresses to more than this server accepts ({limit} bytes)"
        )));
    }
    Ok(Bytes::from(plain))
}

/// Reads a request's body, at most `limit` bytes. Handlers take the body unread and call
/// this only once the request is allowed (its token checked), so an unauthenticated
/// client cannot make the server hold its body; a declared `Content-Length` over the limit
/// is refused before anything is read.
async fn read_body(
    headers: &HeaderMap,
    body: axum::body::Body,
    config: &ApiConfig,
) -> Result<Bytes, ApiError> {
    let limit = config.max_body_bytes;
    let gzipped = match headers
        .get(header::CONTENT_ENCODING)
        .map(|value| {
            String::from_utf8_lossy(value.as_bytes())
                .trim()
                .to_ascii_lowercase()
        })
        .as_deref()
    {
        None | Some("" | "identity") => false,
        Some("gzip" | "x-gzip") => true,
        Some(encoding) => {
            return Err(ApiError::UnsupportedMediaType(format!(
                "content encoding {encoding:?} is not accepted: send the body as gzip or uncompressed"
            )));
        }
    };
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.trim().parse::<u64>().ok());
    if declared.is_some_and(|declared| declared > limit as u64) {
        return Err(ApiError::TooLarge(format!(
            "the body declares {} bytes; this server accepts at most {limit}",
            declared.unwrap_or_default()
        )));
    }
    let reading = http_body_util::BodyExt::collect(http_body_util::Limited::new(body, limit));
    let Ok(read) = tokio::time::timeout(config.body_timeout, reading).await else {
        return Err(ApiError::SlowBody(format!(
            "the body did not arrive within {:.1} s",
            config.body_timeout.as_secs_f64()
        )));
    };
    match read {
        Ok(collected) if gzipped => gunzip(&collected.to_bytes(), limit),
        Ok(collected) => Ok(collected.to_bytes()),
        Err(error) if error.is::<http_body_util::LengthLimitError>() => Err(ApiError::TooLarge(
            format!("the body is larger than this server accepts ({limit} bytes)"),
        )),
        Err(error) => Err(ApiError::invalid(
            "body",
            format!("the body could not be read: {error}"),
        )),
    }
}

/// The JSON of a receipt, serialised straight from the receipt (a request of 1,000 events
/// has 1,000 positions: building a `serde_json::Value` for each cost more than the rest of
/// the answer).
#[derive(serde::Serialize)]
struct ReceiptJson {
    accepted: usize,
    duplicates: usize,
    positions: Vec<PositionJson>,
    token: String,
}

#[derive(serde::Serialize)]
struct PositionJson {
    topic: &'static str,
    partition: u32,
    offset: u64,
    duplicate: bool,
}

fn receipt_json(receipt: &Receipt) -> ReceiptJson {
    ReceiptJson {
        accepted: receipt.accepted,
        duplicates: receipt.duplicates,
        positions: receipt
            .positions
            .iter()
            .map(|p| PositionJson {
                topic: p.topic.name(),
                partition: p.partition,
                offset: p.offset,
                duplicate: p.duplicate,
            })
            .collect(),
        token: receipt.token.to_string(),
    }
}

async fn write(
    state: &AppState,
    events: Vec<Event>,
) -> Result<impl IntoResponse + use<>, ApiError> {
    let ingest = state.ingest.as_ref().ok_or_else(|| {
        ApiError::Forbidden(
            "this instance serves a replayed store read-only and takes no writes".to_owned(),
        )
    })?;
    let receipt = ingest.submit(events).await?;
    Ok((StatusCode::ACCEPTED, Json(receipt_json(&receipt))))
}

/// `POST /v1/events`: a JSON array of canonical events, or a protobuf `EventBatch`.
async fn post_events(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: axum::body::Body,
) -> Result<impl IntoResponse, ApiError> {
    state.access.check(&headers, Scope::Ingest)?;
    let body = read_body(&headers, body, &state.config).await?;
    let events = match media_type(&headers).as_deref() {
        None | Some("application/json") => omnilog_events::parse_batch(&body)?,
        Some("application/x-protobuf" | "application/protobuf") => protobuf_batch(&body)?,
        Some(other) => {
            return Err(ApiError::UnsupportedMediaType(format!(
                "{other} is not accepted here; send application/json or application/x-protobuf"
            )));
        }
    };
    if events.is_empty() {
        return Err(ApiError::invalid("body", "the batch holds no event"));
    }
    write(&state, events).await
}

/// The events of a protobuf `EventBatch`, checked with the rules of JSON input. An event
/// must name its `schema_version`: protobuf cannot tell 0 from absent, and JSON refuses
/// version 0, so a batch of unversioned events is refused rather than read as some
/// version (issue 16: protobuf and JSON refuse the same). Log records keep reading an
/// unset version as 1, as they always have.
fn protobuf_batch(body: &[u8]) -> Result<Vec<Event>, ApiError> {
    use omnilog_events::{CURRENT_SCHEMA_VERSION, EventError, pb};
    let batch = <pb::EventBatch as prost::Message>::decode(body)
        .map_err(|e| EventError::Decode(e.to_string()))?;
    batch
        .events
        .into_iter()
        .enumerate()
        .map(|(index, message)| {
            let at = format!("[{index}]");
            if message.schema_version == 0 {
                return Err(ApiError::from(EventError::invalid(
                    &format!("{at}.schema_version"),
                    format!(
                        "is 0 or absent; a protobuf event names its version \
                         (this build reads 1..={CURRENT_SCHEMA_VERSION})"
                    ),
                )));
            }
            let event = Event::try_from(message).map_err(|e| e.within(&at))?;
            Ok(omnilog_events::revalidate(&event).map_err(|e| e.within(&at))?)
        })
        .collect()
}

/// The URL the platform called, as it signed it.
fn called_url(state: &AppState, headers: &HeaderMap, uri: &axum::http::Uri) -> String {
    let path = uri.path_and_query().map_or("/", |p| p.as_str());
    match &state.config.public_url {
        Some(base) => format!("{}{path}", base.trim_end_matches('/')),
        None => {
            let host = headers
                .get(header::HOST)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("localhost");
            format!("http://{host}{path}")
        }
    }
}

/// `GET /v1/channels/{channel}`: a platform's check of its webhook URL, made before it
/// delivers anything and with no bearer token, answered the way the channel's signature
/// scheme says:
///
/// - Meta (`messenger`, `whatsapp`, `instagram`): the subscription handshake
///   `?hub.mode=subscribe&hub.verify_token=…&hub.challenge=…`, answered with the challenge
///   when the verify token is the configured `meta_verify_token`.
/// - X (`x`): the challenge-response check `?crc_token=T`, answered
///   `{"response_token": "sha256=<base64 HMAC-SHA256 of T>"}` under the channel's secret
///   (X's consumer secret, the one its deliveries are signed with).
async fn channel_handshake(
    State(state): State<Arc<AppState>>,
    Path(channel): Path<String>,
    OriginalUri(uri): OriginalUri,
) -> Result<axum::response::Response, ApiError> {
    let ingestor = state
        .channels
        .get(&channel)
        .ok_or_else(|| ApiError::NotFound(format!("no channel {channel:?}")))?;
    let query = uri.query().unwrap_or("");
    // The platforms' own readers of these fields keep the first or the last of a field
    // given twice; refuse it as every other route does, naming the field.
    params::unique_fields(query)?;
    let refused = |error: ChannelError| match error {
        ChannelError::BadSignature(why) => ApiError::Forbidden(why),
        other => ApiError::from(other),
    };
    match ingestor.signature() {
        SignatureScheme::Meta => {
            let token = state.config.meta_verify_token.as_deref().ok_or_else(|| {
                ApiError::Forbidden(
                    "no Meta verify token is configured (meta_verify_token)".to_owned(),
                )
            })?;
            let challenge =
                omnilog_channels::meta::verify_subscription(query, token).map_err(refused)?;
            Ok(([(header::CONTENT_TYPE, "text/plain")], challenge).into_response())
        }
        SignatureScheme::X => {
            let secret = state.config.channel_secrets.get(&channel).ok_or_else(|| {
                ApiError::Forbidden(format!(
                    "no X consumer secret is configured for channel {channel:?} \
                     (channel_secrets: --channel-secret {channel}=SECRET)"
                ))
            })?;
            let token = omnilog_channels::x::crc_response(query, secret).map_err(refused)?;
            Ok(Json(json!({ "response_token": token })).into_response())
        }
        SignatureScheme::Twilio | SignatureScheme::OmnilogHmac => Err(ApiError::NotFound(format!(
            "channel {channel:?} has no webhook check (only Meta's channels and X have one)"
        ))),
    }
}

/// `POST /v1/channels/{channel}`: a platform's own webhook payload.
async fn post_channel(
    State(state): State<Arc<AppState>>,
    Path(channel): Path<String>,
    OriginalUri(uri): OriginalUri,
    headers: HeaderMap,
    body: axum::body::Body,
) -> Result<impl IntoResponse, ApiError> {
    let ingestor = state.channels.get(&channel).cloned().ok_or_else(|| {
        ApiError::NotFound(format!(
            "no channel {channel:?}; known channels: {}",
            state.channels.names().collect::<Vec<_>>().join(", ")
        ))
    })?;
    let content_type = media_type(&headers);
    if !content_type
        .as_deref()
        .is_some_and(|c| ingestor.content_types().contains(&c))
    {
        return Err(ApiError::UnsupportedMediaType(format!(
            "the {channel} channel takes {}, not {}",
            ingestor.content_types().join(" or "),
            content_type
                .as_deref()
                .unwrap_or("a body without a content type")
        )));
    }
    // A platform cannot send our bearer token; its own signature (over the body)
    // authenticates it. Without a secret the token is checked before the body is read.
    let secret = state.config.channel_secrets.get(&channel);
    if secret.is_none() {
        state.access.check(&headers, Scope::Ingest)?;
    }
    let body = read_body(&headers, body, &state.config).await?;
    let request = WebhookRequest {
        url: called_url(&state, &headers, &uri),
        content_type,
        headers: headers
            .iter()
            .filter_map(|(name, value)| {
                Some((name.as_str().to_owned(), value.to_str().ok()?.to_owned()))
            })
            .collect(),
        body: body.to_vec(),
        received_at: Utc::now(),
    };
    if let Some(secret) = secret {
        ingestor.signature().verify(&request, secret)?;
    }
    let events = ingestor.parse(&request)?;
    write(&state, events).await
}

/// Waits for the identity view to hold what a request's read-your-writes token names
/// (`?after=` or `Omnilog-After`, with `?wait_ms=`, as [`read::Consistency`] reads them): a
/// 504 once the wait runs out, a 400 for a token of a partition the log does not have.
/// Identity answers come from ingest's view, not a projected one, so only the interactions
/// topic's positions count.
pub(crate) async fn identity_after(
    state: &AppState,
    consistency: &read::Consistency,
) -> Result<(), ApiError> {
    let positions: Vec<(u32, u64)> = consistency
        .awaited
        .iter()
        .filter(|awaited| awaited.topic == omnilog_events::Destination::Interactions)
        .map(|awaited| (awaited.partition, awaited.offset))
        .collect();
    match state.identity.after(&positions, consistency.wait).await {
        omnilog_ingest::IdentityReach::Reached => Ok(()),
        omnilog_ingest::IdentityReach::TimedOut => Err(ApiError::Timeout(format!(
            "the identity view has not folded the token's writes after {} ms; retry, or raise wait_ms",
            consistency.wait.as_millis()
        ))),
        omnilog_ingest::IdentityReach::NoSuchPartition {
            partition,
            partitions,
        } => Err(ApiError::invalid(
            "after",
            format!(
                "the token names partition {partition} of interactions, which has {partitions} partitions; pass the token of an ingest answer"
            ),
        )),
    }
}

/// `GET /v1/customers/resolve?kind=K&value=V`.
async fn resolve_customer(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Params(mut query): Params,
) -> Result<impl IntoResponse, ApiError> {
    state.access.check(&headers, Scope::Read)?;
    let kind = query
        .remove("kind")
        .ok_or_else(|| ApiError::invalid("kind", "kind is required"))?;
    let value = query
        .remove("value")
        .ok_or_else(|| ApiError::invalid("value", "value is required"))?;
    omnilog_events::identity::normalise_handle(&kind, &value).map_err(|problem| {
        use omnilog_events::identity::HandleProblem;
        let parameter = match problem {
            HandleProblem::EmptyKind | HandleProblem::KindTooLong => "kind",
            _ => "value",
        };
        ApiError::invalid(parameter, problem.to_string())
    })?;
    identity_after(&state, &read::Consistency::from_request(&query, &headers)?).await?;
    let customer_id = state
        .identity
        .resolve_handle(&kind, &value)
        .ok_or_else(|| {
            ApiError::NotFound(format!("no customer has the {kind} handle {value:?}"))
        })?;
    Ok(Json(json!({ "customer_id": customer_id })))
}

/// `GET /v1/customers/{id}`.
async fn get_customer(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Params(params): Params,
) -> Result<impl IntoResponse, ApiError> {
    state.access.check(&headers, Scope::Read)?;
    identity_after(&state, &read::Consistency::from_request(&params, &headers)?).await?;
    let identity = state
        .identity
        .customer(&id)
        .ok_or_else(|| ApiError::NotFound(format!("no customer {id:?}")))?;
    let mut answer = json!({
        "customer_id": identity.customer_id,
        "handles": identity.handles.iter().map(|h| json!({"kind": h.kind, "value": h.value})).collect::<Vec<_>>(),
        "merged_from": identity.merged_from,
        "merge_candidates": identity.merge_candidates,
    });
    // The profile (attributes, preferred channel) where this instance can read it.
    let members = std::iter::once(identity.customer_id.clone())
        .chain(identity.merged_from.iter().cloned())
        .collect();
    if let Some(profile) = queries::profile_for(&state, &headers, &params, members).await?
        && let Some(object) = answer.as_object_mut()
    {
        object.insert("attributes".to_owned(), json!(profile.attributes));
        object.insert(
            "preferred_channel".to_owned(),
            json!(profile.preferred_channel),
        );
    }
    Ok(Json(answer))
}

/// `GET /v1/admin/channels`: every channel path, what it accepts, how it is signed and
/// whether a secret is configured (never the secret itself).
async fn list_channels(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
) -> Result<impl IntoResponse, ApiError> {
    state.access.check(&headers, Scope::Admin)?;
    let channels: Vec<_> = state
        .channels
        .names()
        .filter_map(|name| state.channels.get(name).map(|ingestor| (name, ingestor)))
        .map(|(name, ingestor)| {
            json!({
                "channel": name,
                "path": format!("/v1/channels/{name}"),
                "content_types": ingestor.content_types(),
                "signature_header": ingestor.signature().header(),
                "secret_configured": state.config.channel_secrets.contains_key(name),
            })
        })
        .collect();
    Ok(Json(json!({ "channels": channels })))
}
