//! The public API: the request pipeline shared by its endpoints (client IP, key,
//! limits, body), the error envelope, and the endpoints themselves.

pub mod body;
pub mod client_ip;
pub mod coerce;
pub mod convert;
pub mod error;
pub mod fallback;
pub mod geoip;
pub mod keys;
pub mod lean;
mod locate;
pub mod locate_schema;
mod submit;
pub mod wire;

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::ConnectInfo;
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodRouter, get};
use chrono::Utc;
use http_body_util::BodyExt;
use ichnaea_core::ApiKey;

use crate::{AppState, SharedState};
use error::{ApiError, ParseDetails, add_cors};

/// Longest wait for a counter, cache or best-effort queue operation of the
/// request path; a backend that does not answer in time counts as failed (so a
/// Redis outage costs a request at most this long per operation, instead of the
/// connection manager's reconnect back-off).
pub(crate) const BACKEND_TIMEOUT: Duration = Duration::from_secs(1);

/// A counter, cache or queue operation that failed or did not answer in time.
#[derive(Debug, thiserror::Error)]
pub(crate) enum BackendError {
    /// The backend answered with an error.
    #[error(transparent)]
    Failed(#[from] ichnaea_queue::QueueError),
    /// No answer within [`BACKEND_TIMEOUT`].
    #[error("no answer within {0:?}")]
    Timeout(Duration),
}

/// Runs `op` with [`BACKEND_TIMEOUT`].
pub(crate) async fn bounded<T>(
    op: impl std::future::Future<Output = Result<T, ichnaea_queue::QueueError>>,
) -> Result<T, BackendError> {
    match tokio::time::timeout(BACKEND_TIMEOUT, op).await {
        Ok(result) => Ok(result?),
        Err(_) => Err(BackendError::Timeout(BACKEND_TIMEOUT)),
    }
}

/// Settings of the public API.
#[derive(Clone, Debug)]
pub struct ApiSettings {
    /// Body size limits.
    pub body: body::BodyLimits,
    /// Items `update_incoming` may hold before submissions are refused with 503.
    pub incoming_queue_max: u64,
    /// Peers whose `X-Forwarded-For` is believed.
    pub trusted_proxies: client_ip::TrustedProxies,
    /// One `info` line per request on the target `ichnaea::access`.
    pub access_log: bool,
}

impl Default for ApiSettings {
    fn default() -> Self {
        ApiSettings {
            body: body::BodyLimits::default(),
            incoming_queue_max: 1_000_000,
            trusted_proxies: client_ip::TrustedProxies::default(),
            access_log: true,
        }
    }
}

/// GET/HEAD/POST served by `handler`, OPTIONS answered as a CORS preflight, any
/// other method 405 without CORS headers (api §1.2).
fn api_methods<H, T>(handler: H) -> MethodRouter<SharedState>
where
    H: axum::handler::Handler<T, SharedState>,
    T: 'static,
{
    get(handler.clone()).post(handler).options(preflight)
}

async fn preflight() -> Response {
    let mut response = StatusCode::OK.into_response();
    add_cors(response.headers_mut());
    response
}

pub(crate) fn routes() -> Router<SharedState> {
    Router::new()
        .route("/v2/geosubmit", api_methods(submit::v2))
        .route("/v1/geosubmit", api_methods(submit::v1))
        .route("/v1/submit", api_methods(submit::v0))
        .route("/v1/geolocate", api_methods(locate::geolocate))
        .route("/v1/country", api_methods(locate::country))
}

/// Reads the whole request body within the configured limits: 413 above the
/// wire size limit; 408 when no part arrives within the idle timeout, or the
/// body arrives slower than the minimum rate once that time has passed.
///
/// Parts are copied into one buffer as they arrive, so a body sent a byte at a
/// time costs its size, not a network buffer per part; a body that arrives in
/// one part is kept as it is.
pub(crate) async fn read_body(state: &AppState, body: Body) -> Result<Bytes, ApiError> {
    let limits = state.api.body;
    let start = tokio::time::Instant::now();
    let mut body = body;
    let mut first: Option<Bytes> = None;
    let mut rest: Vec<u8> = Vec::new();
    let mut len = 0usize;
    loop {
        let frame = match tokio::time::timeout(limits.idle_timeout, body.frame()).await {
            Err(_) => return Err(ApiError::RequestTimeout),
            Ok(None) => break,
            Ok(Some(Err(e))) => {
                return Err(ApiError::Parse(Some(ParseDetails::Decode(format!(
                    "reading the body: {e}"
                )))));
            }
            Ok(Some(Ok(frame))) => frame,
        };
        let Ok(data) = frame.into_data() else {
            continue;
        };
        len += data.len();
        if len > limits.max_body {
            return Err(ApiError::PayloadTooLarge);
        }
        match first.take() {
            None if rest.is_empty() => first = Some(data),
            kept => {
                if let Some(kept) = kept {
                    rest.reserve(kept.len() + data.len() + body_size_hint(&body, limits.max_body));
                    rest.extend_from_slice(&kept);
                }
                rest.extend_from_slice(&data);
            }
        }
        let elapsed = start.elapsed();
        if limits.min_rate > 0
            && elapsed > limits.idle_timeout
            && (len as f64) < limits.min_rate as f64 * elapsed.as_secs_f64()
        {
            return Err(ApiError::RequestTimeout);
        }
    }
    Ok(match first {
        Some(only) => only,
        None => Bytes::from(rest),
    })
}

/// The body's remaining size if it announced one (capped at `max`), else 0.
fn body_size_hint(body: &Body, max: usize) -> usize {
    use axum::body::HttpBody as _;
    body.size_hint()
        .upper()
        .map_or(0, |n| usize::try_from(n).unwrap_or(max).min(max))
}

/// Counts a known key's request on `path` (e.g. `v1.geolocate`) as a user of
/// `api_type` (`locate` / `submit`) and enforces its daily limit (api §7.5);
/// counting failures let the request through (fail open).
pub(crate) async fn check_daily_limit(
    state: &AppState,
    key: &ApiKey,
    caller: &Caller,
    path: &str,
    api_type: &str,
) -> Result<(), ApiError> {
    let counted = bounded(state.counters.count_request(
        &key.valid_key,
        path,
        api_type,
        &caller.ip_text(),
        Utc::now(),
    ))
    .await;
    match counted {
        Ok(count) => match key.maxreq {
            Some(max) if max > 0 && count > max.unsigned_abs() => Err(ApiError::DailyLimitExceeded),
            _ => Ok(()),
        },
        Err(e) => {
            tracing::warn!(error = %e, "usage counting failed, request not limited");
            Ok(())
        }
    }
}

/// Who is asking: the client IP and the API key text.
#[derive(Clone, Debug)]
pub struct Caller {
    /// The client address (see [`client_ip`]); `None` if unknown.
    pub ip: Option<IpAddr>,
    /// A syntactically valid key, if one was sent.
    pub key: Option<String>,
    /// A malformed key, kept only for logging.
    pub invalid_key: Option<String>,
}

impl axum::extract::FromRequestParts<SharedState> for Caller {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &SharedState,
    ) -> Result<Caller, Self::Rejection> {
        Ok(Caller::from_parts(parts, &state.api.trusted_proxies))
    }
}

impl Caller {
    /// Reads the caller from the request head.
    pub fn from_parts(parts: &Parts, proxies: &client_ip::TrustedProxies) -> Caller {
        let peer = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|c| c.0.ip());
        let (key, invalid_key) = keys::key_text(parts.uri.query());
        Caller {
            ip: proxies.client_ip(&parts.headers, peer),
            key,
            invalid_key,
        }
    }

    /// The IP as text for usage counting, `127.0.0.1` when unknown.
    pub fn ip_text(&self) -> String {
        self.ip
            .map_or_else(|| "127.0.0.1".to_string(), |ip| ip.to_string())
    }
}
