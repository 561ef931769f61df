//! Prometheus names for the service's metrics.
//!
//! The code records metrics under the original's dotted names (`request`,
//! `data.export.upload`, `request_timing` in milliseconds …), which are also what
//! the pipeline tests observe. Between the `metrics` macros and the Prometheus
//! recorder, [`PrometheusNames`] turns them into Prometheus conventions: every
//! name starts with `ichnaea_`, dots become underscores, counters end in
//! `_total`, timings become `_duration_seconds` histograms recorded in seconds,
//! and ages end in `_seconds`. [`describe_all`] gives every known metric its
//! `# HELP` line.

use std::sync::Arc;

use metrics::{
    Counter, Gauge, Histogram, HistogramFn, Key, KeyName, Metadata, Recorder, SharedString, Unit,
};

/// Every metric of the service: (recorded name, kind, help text).
const KNOWN: &[(&str, Kind, &str)] = &[
    (
        "request",
        Kind::Counter,
        "HTTP requests by route, method and status.",
    ),
    (
        "request_timing",
        Kind::Timing,
        "HTTP request duration by route, method and status.",
    ),
    (
        "locate.request",
        Kind::Counter,
        "Geolocate requests by key.",
    ),
    ("region.request", Kind::Counter, "Country requests by key."),
    ("submit.request", Kind::Counter, "Submit requests by key."),
    (
        "locate.result",
        Kind::Counter,
        "Geolocate answers by key, hit or miss and source.",
    ),
    (
        "region.result",
        Kind::Counter,
        "Country answers by key, hit or miss and source.",
    ),
    (
        "locate.query",
        Kind::Counter,
        "Geolocate queries by key and the networks they carried.",
    ),
    (
        "region.query",
        Kind::Counter,
        "Country queries by key and the networks they carried.",
    ),
    (
        "locate.source",
        Kind::Counter,
        "Geolocate answers by key, source and accuracy class.",
    ),
    (
        "region.source",
        Kind::Counter,
        "Country answers by key, source and accuracy class.",
    ),
    (
        "locate.fallback.cache",
        Kind::Counter,
        "Fallback-provider cache lookups by outcome.",
    ),
    (
        "locate.fallback.lookup",
        Kind::Counter,
        "Fallback-provider calls by provider and status.",
    ),
    (
        "locate.fallback.lookup.timing",
        Kind::Timing,
        "Fallback-provider call duration.",
    ),
    (
        "locate.fallback.ratelimit",
        Kind::Counter,
        "Fallback-provider calls refused by the rate limit.",
    ),
    (
        "locate.query_report.backpressure",
        Kind::Counter,
        "Query reports dropped because the incoming queue was full.",
    ),
    (
        "submit.backpressure",
        Kind::Counter,
        "Submissions refused because the incoming queue was full.",
    ),
    (
        "data.batch.upload",
        Kind::Counter,
        "Submitted batches by key.",
    ),
    (
        "data.report.upload",
        Kind::Counter,
        "Submitted reports by key.",
    ),
    (
        "data.report.drop",
        Kind::Counter,
        "Submitted reports dropped as unusable, by key.",
    ),
    (
        "data.batch.replayed",
        Kind::Counter,
        "Pipeline batches handed out again after their lease ran out.",
    ),
    (
        "data.incoming.multiplexed",
        Kind::Counter,
        "Reports fanned out to export targets.",
    ),
    (
        "data.incoming.undecodable",
        Kind::Counter,
        "Incoming queue items that could not be decoded (logged, dropped).",
    ),
    (
        "data.export.batch",
        Kind::Counter,
        "Export batches by target.",
    ),
    (
        "data.export.upload",
        Kind::Counter,
        "Export uploads by target and status.",
    ),
    (
        "data.export.upload.timing",
        Kind::Timing,
        "Export upload duration by target.",
    ),
    (
        "data.export.failure",
        Kind::Counter,
        "Export attempts that failed, by target.",
    ),
    (
        "data.export.undecodable",
        Kind::Counter,
        "Export queue items that could not be decoded (logged, dropped).",
    ),
    (
        "data.export.cells",
        Kind::Counter,
        "Public cell export files written, by kind.",
    ),
    (
        "data.observation.upload",
        Kind::Counter,
        "Observations submitted, by key and type.",
    ),
    (
        "data.observation.insert",
        Kind::Counter,
        "Station observations applied, by type.",
    ),
    (
        "data.observation.drop",
        Kind::Counter,
        "Submitted observations dropped as unusable, by key and type.",
    ),
    (
        "data.station.new",
        Kind::Counter,
        "Stations created, by type.",
    ),
    (
        "data.station.blocklist",
        Kind::Counter,
        "Stations blocklisted, by type.",
    ),
    (
        "data.station.confirm",
        Kind::Counter,
        "Stations confirmed at their position, by type.",
    ),
    (
        "http.connection.fd_exhausted",
        Kind::Counter,
        "Accepts that failed for lack of file descriptors (idle connections were shed).",
    ),
    (
        "http.connection.limit_reached",
        Kind::Counter,
        "Connections shed or delayed at max_connections.",
    ),
    (
        "site.cache",
        Kind::Counter,
        "Site page-data cache lookups by page and outcome.",
    ),
    ("tiles.render", Kind::Counter, "Coverage tiles drawn."),
    (
        "tiles.request",
        Kind::Counter,
        "Coverage tile requests by where the tile came from.",
    ),
    ("task", Kind::Timing, "Scheduler task duration by task."),
    (
        "task_error",
        Kind::Counter,
        "Scheduler task runs that failed, by task.",
    ),
    (
        "worker.error",
        Kind::Counter,
        "Worker passes that failed, by stage.",
    ),
    ("queue", Kind::Gauge, "Items waiting in each queue."),
    (
        "queue_oldest_age",
        Kind::Age,
        "Age of the oldest waiting entry of each queue.",
    ),
    (
        "api.limit",
        Kind::Gauge,
        "Requests today per key and path, for keys with a daily limit.",
    ),
    (
        "rate_control.locate",
        Kind::Gauge,
        "Share of geolocate queries turned into query reports.",
    ),
    (
        "rate_control.locate.target",
        Kind::Gauge,
        "Target backlog of the locate sample-rate controller.",
    ),
    (
        "rate_control.locate.backlog",
        Kind::Gauge,
        "Backlog the locate sample-rate controller sees.",
    ),
    (
        "scheduler_leader",
        Kind::Gauge,
        "1 while this process is the scheduler leader.",
    ),
    (
        "locate.user",
        Kind::Gauge,
        "Distinct geolocate users per interval.",
    ),
    (
        "region.user",
        Kind::Gauge,
        "Distinct country users per interval.",
    ),
    (
        "submit.user",
        Kind::Gauge,
        "Distinct submitting users per interval.",
    ),
];

/// How a recorded metric is exposed.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Kind {
    Counter,
    Gauge,
    /// A gauge in seconds.
    Age,
    /// A histogram recorded in milliseconds, exposed in seconds.
    Timing,
}

/// The Prometheus name of a metric recorded as `name` with the given kind.
fn prometheus_name(name: &str, kind: Kind) -> String {
    let base = name
        .strip_suffix(".timing")
        .or_else(|| name.strip_suffix("_timing"))
        .unwrap_or(name)
        .replace('.', "_");
    match kind {
        Kind::Counter => format!("ichnaea_{base}_total"),
        Kind::Gauge => format!("ichnaea_{base}"),
        Kind::Age => format!("ichnaea_{base}_seconds"),
        Kind::Timing => format!("ichnaea_{base}_duration_seconds"),
    }
}

/// The kind a histogram name is exposed as: every histogram of the service is a
/// timing in milliseconds.
fn kind_of(name: &str, registered: Kind) -> Kind {
    KNOWN
        .iter()
        .find(|(n, _, _)| *n == name)
        .map(|(_, kind, _)| *kind)
        .unwrap_or(registered)
}

fn renamed(key: &Key, kind: Kind) -> Key {
    let name = prometheus_name(key.name(), kind);
    Key::from_parts(name, key.labels().cloned().collect::<Vec<_>>())
}

/// Records milliseconds as seconds.
struct Seconds(Histogram);

impl HistogramFn for Seconds {
    fn record(&self, value: f64) {
        self.0.record(value / 1000.0);
    }
}

/// A recorder that renames metrics to Prometheus conventions before handing
/// them to `inner`; see the module documentation.
pub struct PrometheusNames<R> {
    inner: R,
}

impl<R> PrometheusNames<R> {
    /// Wraps `inner`.
    pub fn new(inner: R) -> Self {
        PrometheusNames { inner }
    }
}

impl<R: Recorder> Recorder for PrometheusNames<R> {
    fn describe_counter(&self, key: KeyName, unit: Option<Unit>, description: SharedString) {
        let name = prometheus_name(key.as_str(), Kind::Counter);
        self.inner.describe_counter(name.into(), unit, description);
    }

    fn describe_gauge(&self, key: KeyName, unit: Option<Unit>, description: SharedString) {
        let name = prometheus_name(key.as_str(), kind_of(key.as_str(), Kind::Gauge));
        self.inner.describe_gauge(name.into(), unit, description);
    }

    fn describe_histogram(&self, key: KeyName, unit: Option<Unit>, description: SharedString) {
        let name = prometheus_name(key.as_str(), Kind::Timing);
        self.inner
            .describe_histogram(name.into(), unit, description);
    }

    fn register_counter(&self, key: &Key, metadata: &Metadata<'_>) -> Counter {
        self.inner
            .register_counter(&renamed(key, Kind::Counter), metadata)
    }

    fn register_gauge(&self, key: &Key, metadata: &Metadata<'_>) -> Gauge {
        let kind = kind_of(key.name(), Kind::Gauge);
        self.inner.register_gauge(&renamed(key, kind), metadata)
    }

    fn register_histogram(&self, key: &Key, metadata: &Metadata<'_>) -> Histogram {
        let inner = self
            .inner
            .register_histogram(&renamed(key, Kind::Timing), metadata);
        Histogram::from_arc(Arc::new(Seconds(inner)))
    }
}

/// Gives every known metric its `# HELP` line (call once the recorder is
/// installed).
pub fn describe_all() {
    for (name, kind, help) in KNOWN {
        let name = KeyName::from_const_str(name);
        let help = SharedString::const_str(help);
        match kind {
            Kind::Counter => metrics::with_recorder(|r| r.describe_counter(name, None, help)),
            Kind::Gauge => metrics::with_recorder(|r| r.describe_gauge(name, None, help)),
            Kind::Age => {
                metrics::with_recorder(|r| r.describe_gauge(name, Some(Unit::Seconds), help))
            }
            Kind::Timing => {
                metrics::with_recorder(|r| r.describe_histogram(name, Some(Unit::Seconds), help))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_prometheus_conventions() {
        assert_eq!(
            prometheus_name("request", Kind::Counter),
            "ichnaea_request_total"
        );
        assert_eq!(
            prometheus_name("request_timing", Kind::Timing),
            "ichnaea_request_duration_seconds"
        );
        assert_eq!(
            prometheus_name("data.export.upload.timing", Kind::Timing),
            "ichnaea_data_export_upload_duration_seconds"
        );
        assert_eq!(
            prometheus_name("task", Kind::Timing),
            "ichnaea_task_duration_seconds"
        );
        assert_eq!(
            prometheus_name("queue_oldest_age", kind_of("queue_oldest_age", Kind::Gauge)),
            "ichnaea_queue_oldest_age_seconds"
        );
        assert_eq!(
            prometheus_name("api.limit", Kind::Gauge),
            "ichnaea_api_limit"
        );
        for (name, _, help) in KNOWN {
            assert!(!help.is_empty() && help.ends_with('.'), "{name}");
        }
    }
}
