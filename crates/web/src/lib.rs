//! The HTTP face of ichnaea: an axum router with the service (operations)
//! endpoints, the admin API, the submit and locate APIs and the public site.
//!
//! Everything a handler needs lives in [`AppState`]; the router is built by
//! [`router`] and tested through `tower::ServiceExt::oneshot` without a socket.

mod access_log;
mod admin;
pub mod api;
mod headers;
pub mod metric_names;
pub mod metrics;
pub mod server;
mod service;
pub mod site;

use std::sync::Arc;

use axum::Router;
use ichnaea_queue::{Counters, Queue};
use ichnaea_store::Store;

pub use api::fallback::FallbackClient;
pub use api::geoip::GeoIp;
pub use service::GeoipStatus;

/// Shared state of every handler; cheap to clone.
#[derive(Clone)]
pub struct AppState {
    /// The database.
    pub store: Store,
    /// The queue backend (embedded SQLite or Redis).
    pub queue: Arc<Queue>,
    /// Bearer token of the admin API; `None` disables `/admin/` entirely.
    pub admin_token: Option<Arc<str>>,
    /// Body of `/__version__`.
    pub version: Arc<serde_json::Value>,
    /// The GeoIP database, when one is configured and could be opened.
    pub geoip: Option<Arc<GeoIp>>,
    /// Whether a GeoIP database was configured: the heartbeat is 503 when one was
    /// configured but is not loaded.
    pub geoip_configured: bool,
    /// HTTP client of the external fallback providers of `/v1/geolocate`.
    pub fallback: FallbackClient,
    /// Per-process cache of API key lookups.
    pub api_keys: api::keys::ApiKeyCache,
    /// Daily request and unique-user counters.
    pub counters: Arc<Counters>,
    /// Limits of the public API.
    pub api: api::ApiSettings,
    /// The public web site: its configuration, texts and tile caches.
    pub site: Arc<site::Site>,
}

/// The state as handlers receive it: one shared allocation, so extracting it
/// per request is one reference-count increment instead of a clone of every
/// member.
pub(crate) type SharedState = Arc<AppState>;

/// Builds the complete router for `state`.
pub fn router(state: AppState) -> Router {
    let state: SharedState = Arc::new(state);
    let mut app = service::routes().merge(api::routes()).merge(site::routes());
    if state.admin_token.is_some() {
        app = app.nest("/admin", admin::routes(state.clone()));
    }
    let mut app = app
        .fallback(service::not_found)
        .layer(axum::middleware::from_fn(metrics::track_requests));
    if state.api.access_log {
        app = app.layer(axum::middleware::from_fn(access_log::log_requests));
    }
    app.layer(axum::middleware::map_response_with_state(
        state.clone(),
        headers::security_headers,
    ))
    .with_state(state)
}

/// The default `/__version__` body: this build's version and, when known, the
/// source URL, commit and build (unknown ones are left out, not empty).
pub fn build_version(source: Option<&str>) -> serde_json::Value {
    let mut version = serde_json::Map::new();
    version.insert("version".into(), env!("CARGO_PKG_VERSION").into());
    let known = [
        ("source", source),
        ("commit", option_env!("ICHNAEA_GIT_COMMIT")),
        ("build", option_env!("ICHNAEA_BUILD")),
    ];
    for (name, value) in known {
        if let Some(value) = value.filter(|v| !v.is_empty()) {
            version.insert(name.into(), value.into());
        }
    }
    serde_json::Value::Object(version)
}
