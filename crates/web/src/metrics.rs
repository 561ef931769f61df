//! Prometheus metrics: the process-wide recorder, per-request counters, and the
//! router of the separate metrics listener.
//!
//! Metrics are served on their own address (`metrics_listen`, loopback by
//! default), never on the public port: they name export targets and count
//! traffic per key. Every label has a bounded set of values: unknown paths and
//! methods fold into one value, and API keys appear only as
//! [`ichnaea_core::apikey::metric_label`] digests.

use std::sync::OnceLock;
use std::time::Instant;

use axum::Router;
use axum::extract::{MatchedPath, Request};
use axum::http::{Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use metrics::{Label, SharedString};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// The process's Prometheus handle, installing the global recorder on first use
/// (every part of the process then records into it through the `metrics` macros).
pub fn prometheus_handle() -> PrometheusHandle {
    HANDLE
        .get_or_init(|| {
            let recorder = PrometheusBuilder::new().build_recorder();
            let handle = recorder.handle();
            // Fails only if another recorder is already installed; metrics from
            // the macros then go there, and this handle renders what it has.
            if metrics::set_global_recorder(crate::metric_names::PrometheusNames::new(recorder))
                .is_ok()
            {
                crate::metric_names::describe_all();
            }
            handle
        })
        .clone()
}

/// Counts every request as `request` and times it as `request_timing` (ms;
/// exposed as `ichnaea_request_total` and `ichnaea_request_duration_seconds`), with
/// the original's tags: `path` (the route with `/` → `.`), `method`, `status`.
/// Unknown paths (404s), static files and the small files browsers and robots
/// fetch (icons, `robots.txt`) are not counted, as in the original; so
/// scanners cannot blow up the number of series either.
pub(crate) async fn track_requests(request: Request, next: Next) -> Response {
    let Some(route) = request.extensions().get::<MatchedPath>() else {
        return next.run(request).await;
    };
    if untracked(route.as_str()) {
        return next.run(request).await;
    }
    let path: SharedString = metric_path(route.as_str());
    let method = method_label(request.method());
    let start = Instant::now();
    let response = next.run(request).await;
    let status = status_label(response.status());
    let labels = vec![
        Label::new("path", path),
        Label::new("method", method),
        Label::new("status", status),
    ];
    metrics::counter!("request", labels.clone()).increment(1);
    metrics::histogram!("request_timing", labels).record(start.elapsed().as_secs_f64() * 1000.0);
    response
}

/// Routes without request metrics.
fn untracked(route: &str) -> bool {
    matches!(
        route,
        "/favicon.ico" | "/robots.txt" | "/apple-touch-icon-precomposed.png" | "/static/{*path}"
    )
}

/// `/v1/geolocate` → `v1.geolocate`, as the original tagged paths; the API
/// routes are spelled out so the hot paths build no string.
fn metric_path(route: &str) -> SharedString {
    match route {
        "/v1/geolocate" => SharedString::const_str("v1.geolocate"),
        "/v1/country" => SharedString::const_str("v1.country"),
        "/v2/geosubmit" => SharedString::const_str("v2.geosubmit"),
        "/v1/geosubmit" => SharedString::const_str("v1.geosubmit"),
        "/v1/submit" => SharedString::const_str("v1.submit"),
        other => SharedString::from_owned(other.trim_start_matches('/').replace('/', ".")),
    }
}

/// The request method in lower case; methods outside HTTP's standard set are
/// `other` (a client can invent any number of them).
fn method_label(method: &Method) -> SharedString {
    SharedString::const_str(match *method {
        Method::GET => "get",
        Method::POST => "post",
        Method::HEAD => "head",
        Method::OPTIONS => "options",
        Method::PUT => "put",
        Method::PATCH => "patch",
        Method::DELETE => "delete",
        Method::CONNECT => "connect",
        Method::TRACE => "trace",
        _ => "other",
    })
}

/// The router of the metrics listener: `GET /metrics` renders every metric of
/// this process in the Prometheus text format.
pub fn router(handle: PrometheusHandle) -> Router {
    Router::new().route(
        "/metrics",
        get(move || {
            let handle = handle.clone();
            async move {
                (
                    [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
                    handle.render(),
                )
                    .into_response()
            }
        }),
    )
}

/// The status code as text (`200`).
fn status_label(status: StatusCode) -> SharedString {
    match status.as_u16() {
        200 => SharedString::const_str("200"),
        400 => SharedString::const_str("400"),
        403 => SharedString::const_str("403"),
        404 => SharedString::const_str("404"),
        429 => SharedString::const_str("429"),
        code => SharedString::from_owned(code.to_string()),
    }
}
