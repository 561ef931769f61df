//! Exporter `geosubmit` (pipeline §2.7): POSTs a batch of reports as
//! gzip JSON `{"items": [report, …]}` to another geosubmit v2 endpoint.
//!
//! Also home of [`ExportError`], shared with the object-store exporter.

use std::io::Write;
use std::time::{Duration, Instant};

use flate2::Compression;
use flate2::write::GzEncoder;
use reqwest::header::{CONTENT_ENCODING, CONTENT_TYPE};
use serde_json::Value;

/// Gzip level of geosubmit bodies (pipeline §2.7).
const GEOSUBMIT_GZIP_LEVEL: u32 = 5;

/// Why an export attempt failed; every failure leaves the batch queued for a later retry.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    /// The HTTP client could not be built (TLS setup).
    #[error("cannot build the HTTP client: {0}")]
    Client(#[source] reqwest::Error),
    /// The request failed before a response arrived (connection, timeout, …).
    #[error("request to the export target failed: {0}")]
    Request(#[source] reqwest::Error),
    /// The target answered with a status outside 2xx.
    #[error("export target answered HTTP status {0}")]
    Status(u16),
    /// The batch could not be serialised or compressed.
    #[error("cannot encode the export body: {0}")]
    Encode(#[source] std::io::Error),
    /// The target URL or queue name cannot be used.
    #[error("invalid export target: {0}")]
    InvalidTarget(String),
    /// The object store refused or failed the write.
    #[error("object store error: {0}")]
    Store(#[from] object_store::Error),
}

/// Makes ring the process-wide rustls crypto provider unless one is installed.
///
/// reqwest is built with `rustls-no-provider` (no aws-lc), so every
/// `reqwest::Client` in the process — this exporter's, object_store's S3
/// client, any other — needs a provider installed before it is built, or
/// reqwest panics. Cheap and idempotent; the exporters call it themselves, and
/// a binary may call it once at start.
pub fn install_crypto_provider() {
    if rustls::crypto::CryptoProvider::get_default().is_none() {
        // Err means another thread installed one first: that one is used.
        let _ = rustls::crypto::ring::default_provider().install_default();
    }
}

/// Serialises `{"items": reports}` and gzips it at `level`.
pub(crate) fn gzip_items(reports: &[Value], level: u32) -> Result<Vec<u8>, ExportError> {
    let mut enc = GzEncoder::new(Vec::new(), Compression::new(level));
    enc.write_all(b"{\"items\":").map_err(ExportError::Encode)?;
    serde_json::to_writer(&mut enc, reports).map_err(|e| ExportError::Encode(e.into()))?;
    enc.write_all(b"}").map_err(ExportError::Encode)?;
    enc.finish().map_err(ExportError::Encode)
}

/// Sends batches to a geosubmit v2 endpoint, with in-process retries.
pub struct GeosubmitExporter {
    client: reqwest::Client,
    /// Waits between attempts; attempts = `waits.len() + 1`.
    waits: Vec<Duration>,
}

impl GeosubmitExporter {
    /// A client with User-Agent `ichnaea` and the given per-request timeout
    /// (60 s in the original), retrying 3 attempts with waits of 1 s and 2 s.
    pub fn new(timeout: Duration) -> Result<Self, ExportError> {
        install_crypto_provider();
        let client = reqwest::Client::builder()
            .user_agent("ichnaea")
            .timeout(timeout)
            .build()
            .map_err(ExportError::Client)?;
        Ok(GeosubmitExporter {
            client,
            waits: vec![Duration::from_secs(1), Duration::from_secs(2)],
        })
    }

    /// Replaces the waits between attempts: `waits.len() + 1` attempts in
    /// total, no wait after the last one (an empty list means a single attempt).
    pub fn with_backoff(mut self, waits: Vec<Duration>) -> Self {
        self.waits = waits;
        self
    }

    /// POSTs `{"items": reports}` gzip (level 5) to `url` with
    /// `Content-Encoding: gzip` and `Content-Type: application/json`.
    ///
    /// A 2xx answer is success; a non-2xx status or a network error is retried
    /// (see [`GeosubmitExporter::with_backoff`]) and the last error returned.
    /// Each response counts in `data.export.upload` (tags `key:<name>`,
    /// `status:<code>`); each attempt is timed in `data.export.upload.timing`
    /// (milliseconds, tag `key:<name>`).
    pub async fn send(&self, name: &str, url: &str, reports: &[Value]) -> Result<(), ExportError> {
        let body = gzip_items(reports, GEOSUBMIT_GZIP_LEVEL)?;
        let mut attempt = 0;
        loop {
            let result = self.attempt(name, url, body.clone()).await;
            let err = match result {
                Ok(()) => return Ok(()),
                Err(err) => err,
            };
            let Some(wait) = self.waits.get(attempt) else {
                return Err(err);
            };
            attempt += 1;
            tracing::debug!(export = %name, attempt, error = %err, "geosubmit export attempt failed, retrying");
            tokio::time::sleep(*wait).await;
        }
    }

    /// One POST of an already compressed body.
    async fn attempt(&self, name: &str, url: &str, body: Vec<u8>) -> Result<(), ExportError> {
        let start = Instant::now();
        let result = self
            .client
            .post(url)
            .header(CONTENT_ENCODING, "gzip")
            .header(CONTENT_TYPE, "application/json")
            .body(body)
            .send()
            .await;
        metrics::histogram!("data.export.upload.timing", "key" => name.to_string())
            .record(start.elapsed().as_secs_f64() * 1000.0);
        let response = result.map_err(ExportError::Request)?;
        let status = response.status();
        metrics::counter!(
            "data.export.upload",
            "key" => name.to_string(),
            "status" => status.as_u16().to_string()
        )
        .increment(1);
        if status.is_success() {
            Ok(())
        } else {
            Err(ExportError::Status(status.as_u16()))
        }
    }
}
