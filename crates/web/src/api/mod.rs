//! The public API: the request pipeline shared by its endpoints (client IP, key,
//! limits, body), the error envelope, and the endpoints themselves.

pub mod body;
pub mod coerce;
pub mod convert;
pub mod error;
pub mod keys;
mod submit;

use std::net::{IpAddr, SocketAddr};

use axum::Router;
use axum::extract::ConnectInfo;
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodRouter, get};

use crate::AppState;
use error::add_cors;

/// Settings of the public API.
#[derive(Clone, Copy, Debug)]
pub struct ApiSettings {
    /// Body size limits.
    pub body: body::BodyLimits,
    /// Items `update_incoming` may hold before submissions are refused with 503.
    pub incoming_queue_max: u64,
}

impl Default for ApiSettings {
    fn default() -> Self {
        ApiSettings {
            body: body::BodyLimits::default(),
            incoming_queue_max: 1_000_000,
        }
    }
}

/// GET/HEAD/POST served by `handler`, OPTIONS answered as a CORS preflight, any
/// other method 405 without CORS headers (spec api §1.2).
fn api_methods<H, T>(handler: H) -> MethodRouter<AppState>
where
    H: axum::handler::Handler<T, AppState>,
    T: 'static,
{
    get(handler.clone()).post(handler).options(preflight)
}

async fn preflight() -> Response {
    let mut response = StatusCode::OK.into_response();
    add_cors(response.headers_mut());
    response
}

pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/v2/geosubmit", api_methods(submit::v2))
        .route("/v1/geosubmit", api_methods(submit::v1))
        .route("/v1/submit", api_methods(submit::v0))
}

/// Who is asking: the client IP (spec api §2.1) and the API key text (§2.2).
#[derive(Clone, Debug)]
pub struct Caller {
    /// First `X-Forwarded-For` element, else the peer; `None` if unparsable.
    pub ip: Option<IpAddr>,
    /// A syntactically valid key, if one was sent.
    pub key: Option<String>,
    /// A malformed key, kept only for logging.
    pub invalid_key: Option<String>,
}

impl Caller {
    /// Reads the caller from the request head.
    pub fn from_parts(parts: &Parts) -> Caller {
        let peer = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|c| c.0.ip());
        let (key, invalid_key) = keys::key_text(parts.uri.query());
        Caller {
            ip: client_ip(&parts.headers, peer),
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

fn client_ip(headers: &HeaderMap, peer: Option<IpAddr>) -> Option<IpAddr> {
    match headers.get("x-forwarded-for") {
        Some(value) => value
            .to_str()
            .ok()
            .and_then(|v| v.split(',').next())
            .and_then(|first| first.trim().parse().ok()),
        None => peer,
    }
}
