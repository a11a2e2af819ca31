//! Errors as `application/problem+json` (RFC 9457): `type`, `title`, `status`, `detail`,
//! and `field` when one field is to blame. Every handler returns [`ApiError`], so no
//! error leaves the server in another shape.

use axum::extract::Request;
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use omnilog_events::error::in_contract_words;
use serde_json::json;

/// An HTTP error answer.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The request body breaks the contract; `field` names what (400).
    #[error("{detail}")]
    Invalid {
        field: Option<String>,
        detail: String,
    },
    /// No or a wrong bearer token, or a bad platform signature (401).
    #[error("{0}")]
    Unauthorized(String),
    /// The token lacks the scope this route needs (403).
    #[error("{0}")]
    Forbidden(String),
    /// Nothing at this path or id (404).
    #[error("{0}")]
    NotFound(String),
    /// The request conflicts with work in progress (409).
    #[error("{0}")]
    Conflict(String),
    /// The client did not send its body in time (408).
    #[error("{0}")]
    SlowBody(String),
    /// The body is larger than the server accepts (413).
    #[error("{0}")]
    TooLarge(String),
    /// The body's content type is not one this route reads (415).
    #[error("{0}")]
    UnsupportedMediaType(String),
    /// The log cannot make writes durable now; nothing was written (503, retry).
    #[error("{0}")]
    Unavailable(String),
    /// The log did not confirm every write of the request; some of it may be stored (503,
    /// retry: what was stored is answered as a duplicate).
    #[error("{0}")]
    Unconfirmed(String),
    /// The server is up but not ready to answer (views or identity behind the log) (503,
    /// retry).
    #[error("{0}")]
    NotReady(String),
    /// Partitions are moving between projector instances (503, retry).
    #[error("{0}")]
    Rebalancing(String),
    /// A read-your-writes wait ran out (504).
    #[error("{0}")]
    Timeout(String),
    /// A bug or an IO failure (500).
    #[error("{0}")]
    Internal(String),
}

impl ApiError {
    fn status(&self) -> StatusCode {
        match self {
            ApiError::Invalid { .. } => StatusCode::BAD_REQUEST,
            ApiError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::SlowBody(_) => StatusCode::REQUEST_TIMEOUT,
            ApiError::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::Unavailable(_)
            | ApiError::Unconfirmed(_)
            | ApiError::NotReady(_)
            | ApiError::Rebalancing(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Timeout(_) => StatusCode::GATEWAY_TIMEOUT,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn slug(&self) -> &'static str {
        match self {
            ApiError::Invalid { .. } => "invalid-request",
            ApiError::Unauthorized(_) => "unauthorized",
            ApiError::Forbidden(_) => "forbidden",
            ApiError::NotFound(_) => "not-found",
            ApiError::Conflict(_) => "conflict",
            ApiError::SlowBody(_) => "body-too-slow",
            ApiError::TooLarge(_) => "body-too-large",
            ApiError::UnsupportedMediaType(_) => "unsupported-media-type",
            ApiError::Unavailable(_) => "log-unavailable",
            ApiError::Unconfirmed(_) => "write-unconfirmed",
            ApiError::NotReady(_) => "not-ready",
            ApiError::Rebalancing(_) => "rebalancing",
            ApiError::Timeout(_) => "wait-timed-out",
            ApiError::Internal(_) => "internal-error",
        }
    }

    /// A 400 naming the field.
    pub fn invalid(field: impl Into<String>, detail: impl Into<String>) -> Self {
        let field = field.into();
        ApiError::Invalid {
            field: (!field.is_empty()).then_some(field),
            detail: detail.into(),
        }
    }
}

/// Numbers the failures whose details only the server's log gets.
static INCIDENTS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

impl ApiError {
    /// What the answer says. A failure of the server's own (a storage error, a bug) is said
    /// in words, with the number under which the log has its details: the raw error names
    /// files, record keys and OS codes, which are for the operator, not the client. A
    /// client's mistake is said in the contract's words: a deserialiser's message naming a
    /// Rust type (`expected struct ...`) is rewritten in JSON's.
    fn public_detail(&self) -> String {
        let words = match self {
            ApiError::Internal(_) => "the server could not answer this request",
            ApiError::Unavailable(_) => {
                "the log cannot take writes now; nothing of this request was written, retry later"
            }
            ApiError::Unconfirmed(_) => {
                "the log did not confirm every write of this request, so some of its events may be stored; send it again: an event already stored is answered as a duplicate, with its position"
            }
            other => return in_contract_words(&other.to_string()),
        };
        let incident = INCIDENTS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        tracing::error!(incident, status = self.status().as_u16(), error = %self, "request failed");
        format!("{words} (incident {incident} in the server's log)")
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        let mut body = json!({
            "type": format!("/problems/{}", self.slug()),
            "title": status.canonical_reason().unwrap_or("Error"),
            "status": status.as_u16(),
            "detail": self.public_detail(),
        });
        if let ApiError::Invalid {
            field: Some(field), ..
        } = &self
        {
            body["field"] = json!(field);
        }
        let mut response = (status, body.to_string()).into_response();
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        match &self {
            ApiError::Unavailable(_)
            | ApiError::Unconfirmed(_)
            | ApiError::NotReady(_)
            | ApiError::Rebalancing(_) => {
                headers.insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            }
            ApiError::Unauthorized(_) => {
                headers.insert(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static("Bearer realm=\"omnilog\""),
                );
            }
            _ => {}
        }
        if status.is_server_error()
            && !matches!(
                self,
                ApiError::Internal(_) | ApiError::Unavailable(_) | ApiError::Unconfirmed(_)
            )
        {
            tracing::warn!(status = status.as_u16(), detail = %self, "request failed");
        }
        response
    }
}

/// The longest text of an answer [`as_problem`] reads to put into a problem's `detail`.
const FOREIGN_DETAIL_BYTES: usize = 2048;

/// Makes every error answer a problem: what the handlers answer already is one, and this
/// rewrites the few that axum answers itself before a handler runs (405 with an empty body
/// for a method a route does not take, a path that is not UTF-8, a query field given
/// twice) into `application/problem+json`, keeping their status and headers (`Allow`).
pub async fn as_problem(request: Request, next: Next) -> Response {
    let response = next.run(request).await;
    let status = response.status();
    let is_problem = response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|value| value.as_bytes().starts_with(b"application/problem+json"));
    if !(status.is_client_error() || status.is_server_error()) || is_problem {
        return response;
    }
    let (mut parts, body) = response.into_parts();
    let text = axum::body::to_bytes(body, FOREIGN_DETAIL_BYTES)
        .await
        .unwrap_or_default();
    let text = String::from_utf8_lossy(&text);
    let title = status.canonical_reason().unwrap_or("Error");
    let detail = match text.trim() {
        "" => title.to_owned(),
        text => in_contract_words(text),
    };
    let slug = match status {
        StatusCode::METHOD_NOT_ALLOWED => "method-not-allowed".to_owned(),
        StatusCode::BAD_REQUEST => "invalid-request".to_owned(),
        other => format!("http-{}", other.as_u16()),
    };
    let body = json!({
        "type": format!("/problems/{slug}"),
        "title": title,
        "status": status.as_u16(),
        "detail": detail,
    });
    parts.headers.remove(header::CONTENT_LENGTH);
    parts.headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/problem+json"),
    );
    Response::from_parts(parts, axum::body::Body::from(body.to_string()))
}

impl From<omnilog_events::EventError> for ApiError {
    fn from(error: omnilog_events::EventError) -> Self {
        match &error {
            omnilog_events::EventError::Invalid { field, message } => ApiError::Invalid {
                field: (!field.is_empty()).then(|| field.clone()),
                detail: if field.is_empty() {
                    message.clone()
                } else {
                    format!("{field}: {message}")
                },
            },
            omnilog_events::EventError::Decode(_) => ApiError::invalid("body", error.to_string()),
        }
    }
}

impl From<omnilog_ingest::IngestError> for ApiError {
    fn from(error: omnilog_ingest::IngestError) -> Self {
        match error {
            omnilog_ingest::IngestError::Invalid(invalid) => invalid.into(),
            omnilog_ingest::IngestError::Unconfirmed(message) => ApiError::Unconfirmed(message),
            other => ApiError::Unavailable(other.to_string()),
        }
    }
}

impl From<omnilog_channels::ChannelError> for ApiError {
    fn from(error: omnilog_channels::ChannelError) -> Self {
        use omnilog_channels::ChannelError;
        match error {
            ChannelError::Malformed { field, message } => ApiError::Invalid {
                detail: format!("{field}: {message}"),
                field: Some(field),
            },
            unsupported @ ChannelError::UnsupportedMediaType { .. } => {
                ApiError::UnsupportedMediaType(unsupported.to_string())
            }
            bad @ ChannelError::BadSignature(_) => ApiError::Unauthorized(bad.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An error's answer: its status, whether it says when to retry, and its body.
    async fn answer_of(error: ApiError) -> (StatusCode, bool, serde_json::Value) {
        let response = error.into_response();
        let status = response.status();
        let retry_after = response.headers().contains_key(header::RETRY_AFTER);
        let body = axum::body::to_bytes(response.into_body(), 4096)
            .await
            .unwrap();
        (status, retry_after, serde_json::from_slice(&body).unwrap())
    }

    async fn detail_of(error: ApiError) -> String {
        let (_, _, body) = answer_of(error).await;
        body["detail"].as_str().unwrap().to_owned()
    }

    #[tokio::test]
    async fn server_failures_are_said_in_words_and_their_internals_go_to_the_log() {
        let internal = detail_of(ApiError::Internal(
            "view state record \"rb\\0x\" is unreadable".to_owned(),
        ))
        .await;
        assert!(!internal.contains("rb"), "{internal}");
        assert!(internal.contains("incident"), "{internal}");
        let full = detail_of(ApiError::Unavailable(
            "storage: IO error: Os { code: 28, kind: StorageFull }".to_owned(),
        ))
        .await;
        assert!(!full.contains("Os {"), "{full}");
        assert!(
            full.contains("nothing of this request was written"),
            "{full}"
        );
        let unconfirmed = detail_of(ApiError::Unconfirmed(
            "kafka reported a record of partition 3 delivered without its offset".to_owned(),
        ))
        .await;
        assert!(!unconfirmed.contains("partition 3"), "{unconfirmed}");
        assert!(
            unconfirmed.contains("some of its events may be stored")
                && unconfirmed.contains("answered as a duplicate"),
            "{unconfirmed}"
        );
        // The client's own mistakes keep their words.
        let invalid = detail_of(ApiError::invalid("[0].queue", "must not be empty")).await;
        assert_eq!(invalid, "must not be empty");
    }

    #[tokio::test]
    async fn not_ready_is_its_own_problem_and_asks_to_retry() {
        let (status, retry_after, body) =
            answer_of(ApiError::NotReady("the views are catching up".to_owned())).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert!(retry_after);
        assert_eq!(body["type"], "/problems/not-ready");
    }

    #[tokio::test]
    async fn an_unconfirmed_write_is_its_own_problem_and_asks_to_retry() {
        let (status, retry_after, body) =
            answer_of(ApiError::from(omnilog_ingest::IngestError::Unconfirmed(
                "kafka did not confirm the delivery: message timed out".to_owned(),
            )))
            .await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert!(retry_after);
        assert_eq!(body["type"], "/problems/write-unconfirmed");
        // A log that refused before writing keeps its own problem.
        let refused = ApiError::from(omnilog_ingest::IngestError::from(
            omnilog_log::LogError::Unavailable("no space left on device".to_owned()),
        ));
        assert!(matches!(refused, ApiError::Unavailable(_)), "{refused:?}");
    }
}
