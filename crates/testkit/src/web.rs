//! The web router's state over a test's backends.

use std::sync::Arc;
use std::time::Duration;

use ichnaea_web::api::ApiSettings;
use ichnaea_web::api::keys::ApiKeyCache;
use ichnaea_web::{AppState, FallbackClient};

use crate::backends::Backends;

/// The locate model of test servers: `classic` (the original's answers, on
/// which the exact-number locate tests are written) unless
/// `ICHNAEA_TEST_LOCATE_MODEL` names another, so the behaviour tests (status
/// codes, privacy rules, fallbacks, GeoIP) can be run under the default model
/// too.
pub fn test_locate_model() -> ichnaea_core::locate::LocateModel {
    std::env::var("ICHNAEA_TEST_LOCATE_MODEL")
        .ok()
        .and_then(|m| ichnaea_core::locate::LocateModel::parse(&m))
        .unwrap_or(ichnaea_core::locate::LocateModel::Classic)
}

/// The router's state over `backends`: default API settings, no admin token, no
/// GeoIP database, version `9.9.9` (commit `abc`). Tests change fields with
/// struct update syntax.
pub fn app_state(backends: &Backends) -> AppState {
    AppState {
        store: backends.store.clone(),
        queue: Arc::new(backends.queue.clone()),
        admin_token: None,
        version: Arc::new(serde_json::json!({"version": "9.9.9", "commit": "abc"})),
        geoip: None,
        geoip_configured: false,
        fallback: FallbackClient::new().expect("the fallback client"),
        api_keys: ApiKeyCache::new(Duration::from_secs(300)),
        counters: backends.counters.clone(),
        api: ApiSettings {
            locate_model: test_locate_model(),
            ..ApiSettings::default()
        },
        site: Default::default(),
    }
}
