//! The browser console's routes: `/` answers the console's page and `/console/{file}` its
//! embedded files (crate omnilog-console). They are public static files, like any web
//! app's: every data call the console makes carries the user's bearer token and is checked
//! by the API as usual, so serving the files themselves needs no token (and the sign-in
//! form could not load otherwise).

use axum::Router;
use axum::extract::Path;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use crate::ApiError;

/// The console's routes, merged into the API's router (they read no state).
pub fn routes<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new()
        .route("/", get(index))
        .route("/console", get(index))
        .route("/console/", get(index))
        .route("/console/{*file}", get(file))
}

fn answer(asset: omnilog_console::Asset) -> Response {
    (
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static(asset.content_type),
            ),
            // Revalidate each time: the files are small, and a new binary's console must
            // not run beside an old cached module.
            (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
            (
                header::X_CONTENT_TYPE_OPTIONS,
                HeaderValue::from_static("nosniff"),
            ),
            // Only our own scripts, styles and API: nothing from another origin, no inline
            // script, no framing by another site.
            (
                header::CONTENT_SECURITY_POLICY,
                HeaderValue::from_static(
                    "default-src 'self'; img-src 'self' data: blob:; style-src 'self' 'unsafe-inline'; \
                     frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
                ),
            ),
        ],
        asset.bytes,
    )
        .into_response()
}

/// `GET /`: the console's page.
async fn index() -> Response {
    answer(omnilog_console::index())
}

/// `GET /console/{file}`: one of the console's files, or a 404 problem.
async fn file(Path(file): Path<String>) -> Result<Response, ApiError> {
    omnilog_console::asset(&file)
        .map(answer)
        .ok_or_else(|| ApiError::NotFound(format!("the console has no file {file:?}")))
}

#[cfg(test)]
mod tests {
    use axum::body::Body;
    use axum::http::{Request, StatusCode};
    use tower::ServiceExt as _;

    use super::*;

    async fn get_path(path: &str) -> (StatusCode, String, String) {
        let app: Router = routes();
        let response = app
            .oneshot(Request::get(path).body(Body::empty()).unwrap())
            .await
            .unwrap();
        let status = response.status();
        let content_type = response
            .headers()
            .get(header::CONTENT_TYPE)
            .map(|v| v.to_str().unwrap().to_owned())
            .unwrap_or_default();
        let body = http_body_util::BodyExt::collect(response.into_body())
            .await
            .unwrap()
            .to_bytes();
        (
            status,
            content_type,
            String::from_utf8_lossy(&body).into_owned(),
        )
    }

    #[tokio::test]
    async fn serves_the_page_and_its_files_without_a_token() {
        let (status, content_type, body) = get_path("/").await;
        assert_eq!(status, StatusCode::OK);
        assert!(content_type.starts_with("text/html"));
        assert!(body.contains("/console/app.js"));
        let (status, content_type, _) = get_path("/console/app.js").await;
        assert_eq!(status, StatusCode::OK);
        assert!(content_type.starts_with("text/javascript"));
        let (status, _, _) = get_path("/console/../Cargo.toml").await;
        assert_eq!(status, StatusCode::NOT_FOUND);
    }
}
