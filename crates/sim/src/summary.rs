//! What a load run measured, and its two renderings: a table for people and JSON
//! for scripts (benchmark tables, CI comparisons).

use std::collections::BTreeMap;
use std::io::Write;

use hdrhistogram::Histogram;
use serde::Serialize;

use crate::{Endpoint, SimError};

/// Latency percentiles of the answered requests, in milliseconds.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Latency {
    /// Median.
    pub p50: f64,
    /// 90th percentile.
    pub p90: f64,
    /// 99th percentile.
    pub p99: f64,
    /// 99.9th percentile.
    pub p999: f64,
    /// Slowest request.
    pub max: f64,
    /// Arithmetic mean.
    pub mean: f64,
}

impl Latency {
    /// Reads the percentiles from a histogram of microseconds.
    pub fn from_micros(h: &Histogram<u64>) -> Latency {
        let ms = |us: u64| us as f64 / 1000.0;
        if h.is_empty() {
            return Latency::default();
        }
        Latency {
            p50: ms(h.value_at_quantile(0.50)),
            p90: ms(h.value_at_quantile(0.90)),
            p99: ms(h.value_at_quantile(0.99)),
            p999: ms(h.value_at_quantile(0.999)),
            max: ms(h.max()),
            mean: h.mean() / 1000.0,
        }
    }

    /// The percentiles as one table row.
    fn row(&self) -> String {
        format!(
            "p50 {:.2}  p90 {:.2}  p99 {:.2}  p99.9 {:.2}  max {:.2}  mean {:.2}",
            self.p50, self.p90, self.p99, self.p999, self.max, self.mean
        )
    }
}

/// The result of one `sim load` run.
#[derive(Clone, Debug, Serialize)]
pub struct Summary {
    /// The URL the requests went to.
    pub url: String,
    /// The endpoint loaded.
    pub endpoint: Endpoint,
    /// `closed` (workers wait for answers) or `rate` (fixed start rate).
    pub mode: &'static str,
    /// Workers (closed loop) or the in-flight limit (rate).
    pub concurrency: usize,
    /// Requests per second asked for, in rate mode.
    pub rate: Option<f64>,
    /// Whether bodies were gzip-compressed.
    pub gzip: bool,
    /// Seed of the bodies.
    pub seed: u64,
    /// Reports per geosubmit request.
    pub reports_per_request: Option<usize>,
    /// Distinct bodies cycled through.
    pub bodies: usize,
    /// Mean body size on the wire, bytes.
    pub body_bytes_mean: f64,
    /// Mean uncompressed JSON size, bytes.
    pub json_bytes_mean: f64,
    /// Wall-clock time from the first request to the last answer, seconds.
    pub elapsed_s: f64,
    /// Requests completed (answered or failed).
    pub requests: u64,
    /// `requests / elapsed_s`.
    pub requests_per_s: f64,
    /// geosubmit: reports in all completed requests.
    pub reports_sent: Option<u64>,
    /// geosubmit: reports in requests answered 200, i.e. accepted by the server.
    pub reports_accepted: Option<u64>,
    /// geosubmit: `reports_accepted / elapsed_s`.
    pub reports_per_s: Option<f64>,
    /// Answers by HTTP status code.
    pub status: BTreeMap<String, u64>,
    /// Requests without an answer, by kind (connect, timeout, body, request, other).
    pub errors: BTreeMap<String, u64>,
    /// The first transport error seen, for diagnosis.
    pub first_error: Option<String>,
    /// Latency of every completed request (answered or failed), milliseconds:
    /// in rate mode from its due time, so it includes the generator's lateness.
    pub latency_ms: Latency,
    /// Rate mode: how late each request was sent after its due time, ms. On a
    /// machine shared with the server this is the generator waiting for a CPU
    /// (or for a free in-flight slot), which a separate client would not.
    pub send_delay_ms: Option<Latency>,
    /// Rate mode: from each request's send to its answer, ms; `latency_ms` less
    /// the send delay, request by request.
    pub service_ms: Option<Latency>,
}

impl Summary {
    /// Writes the summary to stdout: JSON when `json`, else a table.
    pub fn print(&self, json: bool) -> Result<(), SimError> {
        let text = if json {
            let mut text = serde_json::to_string_pretty(self)?;
            text.push('\n');
            text
        } else {
            self.table()
        };
        let mut out = std::io::stdout().lock();
        out.write_all(text.as_bytes())
            .and_then(|()| out.flush())
            .map_err(SimError::Output)
    }

    /// The summary as an aligned two-column table.
    pub fn table(&self) -> String {
        let mut rows: Vec<(&str, String)> = Vec::new();
        rows.push(("target", format!("POST {}", self.url)));
        let mode = match self.rate {
            Some(rate) => format!(
                "open loop at {rate} req/s, at most {} in flight",
                self.concurrency
            ),
            None => format!("closed loop, {} workers", self.concurrency),
        };
        rows.push(("mode", mode));
        let mut body = format!(
            "{} distinct, {:.0} B on the wire{}",
            self.bodies,
            self.body_bytes_mean,
            if self.gzip {
                format!(" (gzip of {:.0} B JSON)", self.json_bytes_mean)
            } else {
                String::new()
            }
        );
        if let Some(n) = self.reports_per_request {
            body = format!("{n} reports each, {body}");
        }
        rows.push(("bodies", body));
        rows.push(("elapsed", format!("{:.2} s", self.elapsed_s)));
        rows.push((
            "requests",
            format!("{} ({:.1} req/s)", self.requests, self.requests_per_s),
        ));
        if let (Some(sent), Some(accepted), Some(per_s)) =
            (self.reports_sent, self.reports_accepted, self.reports_per_s)
        {
            rows.push((
                "reports",
                format!("{accepted} accepted of {sent} sent ({per_s:.0} reports/s accepted)"),
            ));
        }
        let status = if self.status.is_empty() {
            "none".to_string()
        } else {
            join_counts(&self.status)
        };
        rows.push(("status", status));
        let errors = if self.errors.is_empty() {
            "none".to_string()
        } else {
            join_counts(&self.errors)
        };
        rows.push(("errors", errors));
        if let Some(e) = &self.first_error {
            rows.push(("first error", e.clone()));
        }
        rows.push(("latency ms", self.latency_ms.row()));
        if let Some(l) = &self.send_delay_ms {
            rows.push(("  send delay", l.row()));
        }
        if let Some(l) = &self.service_ms {
            rows.push(("  service", l.row()));
        }
        let width = rows.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
        rows.iter()
            .map(|(k, v)| format!("{k:<width$}  {v}\n"))
            .collect()
    }
}

fn join_counts(counts: &BTreeMap<String, u64>) -> String {
    counts
        .iter()
        .map(|(k, v)| format!("{k}: {v}"))
        .collect::<Vec<_>>()
        .join(", ")
}
