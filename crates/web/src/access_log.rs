//! The access log: one `info` line per request on the target `ichnaea::access`,
//! with the method, the route (the matched route template, or the path of an
//! unknown one), the status, the duration and the API key's metric label.
//!
//! It never carries the client's IP address, a raw API key or a body: the log
//! is read by more people than the data it describes. Turned off with the
//! configuration `access_log = false`.

use std::time::Instant;

use axum::extract::{MatchedPath, Request};
use axum::middleware::Next;
use axum::response::Response;
use ichnaea_core::apikey::metric_label;

/// Longest unknown path logged; longer ones are cut (they are the client's text; an
/// HTTP path has no control characters, so it cannot break a log line).
const MAX_LOGGED_PATH: usize = 200;

/// Logs one line per request once its answer is ready.
pub(crate) async fn log_requests(request: Request, next: Next) -> Response {
    let start = Instant::now();
    let method = request.method().clone();
    let route = match request.extensions().get::<MatchedPath>() {
        Some(matched) => matched.as_str().to_string(),
        None => {
            let path = request.uri().path();
            let end = path
                .char_indices()
                .nth(MAX_LOGGED_PATH)
                .map_or(path.len(), |(i, _)| i);
            path[..end].to_string()
        }
    };
    let (key, _) = crate::api::keys::key_text(request.uri().query());
    let response = next.run(request).await;
    tracing::info!(
        target: "ichnaea::access",
        method = %method,
        route = %route,
        status = response.status().as_u16(),
        duration_ms = start.elapsed().as_secs_f64() * 1000.0,
        key = key.as_deref().map(metric_label),
        "request"
    );
    response
}
