//! Prometheus metrics: the process-wide recorder and per-request counters.

use std::sync::OnceLock;
use std::time::Instant;

use axum::extract::{MatchedPath, Request};
use axum::middleware::Next;
use axum::response::Response;
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
            let _ = metrics::set_global_recorder(recorder);
            handle
        })
        .clone()
}

/// Counts every request as `request` and times it as `request_timing` (ms), with
/// the original's tags: `path` (the route with `/` → `.`), `method`, `status`.
/// Unknown paths share the label `unknown`, so scanners cannot blow up the
/// number of series.
pub(crate) async fn track_requests(request: Request, next: Next) -> Response {
    let path = request
        .extensions()
        .get::<MatchedPath>()
        .map(|p| metric_path(p.as_str()))
        .unwrap_or_else(|| "unknown".to_string());
    let method = request.method().as_str().to_ascii_lowercase();
    let start = Instant::now();
    let response = next.run(request).await;
    let status = response.status().as_u16().to_string();
    let labels = [("path", path), ("method", method), ("status", status)];
    metrics::counter!("request", &labels).increment(1);
    metrics::histogram!("request_timing", &labels).record(start.elapsed().as_secs_f64() * 1000.0);
    response
}

/// `/v1/geolocate` → `v1.geolocate`, as the original tagged paths.
fn metric_path(route: &str) -> String {
    route.trim_start_matches('/').replace('/', ".")
}
