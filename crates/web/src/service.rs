//! Service (operations) endpoints: load-balancer and deep heartbeats, version,
//! contribute.json, robots.txt, and the plain 404 for unknown paths. (Metrics
//! have their own listener: see [`crate::metrics`].)

use std::future::Future;
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{Html, IntoResponse, Json, Response};
use axum::routing::{MethodRouter, get};
use serde_json::{Value, json};

use ichnaea_core::export::{ExportHealth, export_health_key};

use crate::{AppState, SharedState};

/// How long one heartbeat check may take before it counts as down.
const CHECK_TIMEOUT: Duration = Duration::from_secs(3);

/// GeoIP as the heartbeat reports it.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct GeoipStatus {
    /// A GeoIP database path was configured.
    pub configured: bool,
    /// A database is loaded and answering.
    pub loaded: bool,
    /// Build time of the loaded database, `YYYY-MM-DDTHH:MM:SSZ`.
    pub version: Option<String>,
    /// Days since that build time.
    pub age_in_days: Option<i64>,
}

impl GeoipStatus {
    /// The status of the state's GeoIP database at `now` (not loaded: `configured`
    /// only).
    pub fn of(state: &AppState, now: chrono::DateTime<chrono::Utc>) -> GeoipStatus {
        match &state.geoip {
            Some(db) => db.status(now),
            None => GeoipStatus {
                configured: state.geoip_configured,
                ..GeoipStatus::default()
            },
        }
    }
}

/// GET, HEAD (GET without body) and POST served alike; any other method is 405.
fn any_read<H, T>(handler: H) -> MethodRouter<SharedState>
where
    H: axum::handler::Handler<T, SharedState>,
    T: 'static,
{
    get(handler.clone()).post(handler)
}

pub(crate) fn routes() -> Router<SharedState> {
    Router::new()
        .route("/__lbheartbeat__", any_read(lbheartbeat))
        .route("/__heartbeat__", any_read(heartbeat))
        .route("/__version__", any_read(version))
        .route("/contribute.json", any_read(contribute))
        .route("/robots.txt", get(robots))
}

async fn lbheartbeat() -> Json<Value> {
    Json(json!({"status": "OK"}))
}

/// Runs one check with a time limit: `(up, milliseconds)`.
async fn timed<F, E>(check: F) -> (bool, u128)
where
    F: Future<Output = Result<(), E>>,
    E: std::fmt::Display,
{
    let start = Instant::now();
    match tokio::time::timeout(CHECK_TIMEOUT, check).await {
        Ok(Ok(())) => (true, start.elapsed().as_millis()),
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "heartbeat check failed");
            (false, 0)
        }
        Err(_) => {
            tracing::warn!("heartbeat check timed out");
            (false, 0)
        }
    }
}

async fn heartbeat(State(state): State<SharedState>) -> Response {
    let store = &state.store;
    let ((db_up, db_time), (queue_up, queue_time)) = tokio::join!(
        timed(async {
            store.ping().await?;
            store.schema_version().await.map(|_| ())
        }),
        timed(state.queue.ping()),
    );
    let schema_version = if db_up {
        store
            .schema_version()
            .await
            .map(|v| v.to_string())
            .unwrap_or_else(|_| "unknown".into())
    } else {
        "unknown".into()
    };
    let geoip = &GeoipStatus::of(&state, chrono::Utc::now());
    let geoip_ok = !geoip.configured || geoip.loaded;
    let queue_key = if state.queue.backend() == "redis" {
        "redis"
    } else {
        "queue"
    };
    let mut body = json!({
        "database": {"up": db_up, "time": db_time, "backend": store.backend_name(), "alembic_version": schema_version},
        queue_key: {"up": queue_up, "time": queue_time, "backend": state.queue.backend()},
        "geoip": {
            "up": geoip.loaded,
            "configured": geoip.configured,
            "time": 0,
            "age_in_days": geoip.age_in_days.unwrap_or(-1),
            "version": geoip.version,
        },
    });
    if db_up && let Some(exports) = export_health(&state).await {
        body["exports"] = exports;
    }
    if let Some(replica) = store.replica_status() {
        body["database_readonly"] = replica_health(&replica);
    }
    let status = if db_up && queue_up && geoip_ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(body)).into_response()
}

/// The read replica as its background check last found it. Informative
/// only: a lagging or unreachable replica leaves the heartbeat at 200, since
/// reads then use the primary (which the `database` member covers).
fn replica_health(status: &ichnaea_store::ReplicaStatus) -> Value {
    let millis = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
    let mut member = json!({
        "status": status.state.as_str(),
        "up": status.state != ichnaea_store::ReplicaState::Down,
        "lag_ms": status.lag.map(millis),
        "max_lag_ms": millis(status.max_lag),
        "checked_ms_ago": status.checked_ago.map(millis),
        "reads": {"replica": status.replica_reads, "primary": status.primary_reads},
    });
    if let Some(error) = &status.error {
        member["error"] = json!(error);
    }
    member
}

/// The remote export targets as the worker last recorded them (`None` when
/// there are none, so the body keeps its original members). A failing target
/// is shown, not an outage of this service: the heartbeat stays 200 for it,
/// since taking web nodes out of a load balancer would not help the target.
/// A target without a record was not tried yet (or the record expired).
async fn export_health(state: &AppState) -> Option<Value> {
    let configs = tokio::time::timeout(CHECK_TIMEOUT, state.store.export_configs())
        .await
        .ok()?
        .ok()?;
    let names: Vec<String> = configs
        .into_iter()
        .filter(|c| c.schema.is_remote())
        .map(|c| c.name)
        .collect();
    if names.is_empty() {
        return None;
    }
    let keys: Vec<Vec<u8>> = names.iter().map(|n| export_health_key(n)).collect();
    let records = tokio::time::timeout(CHECK_TIMEOUT, state.counters.cache_get(&keys))
        .await
        .ok()
        .and_then(Result::ok)
        .unwrap_or_else(|| vec![None; names.len()]);
    let mut exports = serde_json::Map::new();
    for (name, record) in names.into_iter().zip(records) {
        let health = record
            .and_then(|json| serde_json::from_slice::<ExportHealth>(&json).ok())
            .and_then(|h| serde_json::to_value(h).ok())
            .unwrap_or_else(|| json!({"up": null}));
        exports.insert(name, health);
    }
    Some(Value::Object(exports))
}

async fn version(State(state): State<SharedState>) -> Json<Value> {
    Json((*state.version).clone())
}

/// Project metadata (the contribute.json convention); the repository URL and
/// bug list only when the operator configured where the source is
/// (`source_url`), never as empty strings.
async fn contribute(State(state): State<SharedState>) -> Json<Value> {
    let mut body = json!({
        "name": "ichnaea",
        "description": "A crowd-sourced geolocation service: it learns where Wi-Fi access points, cell towers and Bluetooth beacons are from stumbler submissions, and answers where a device is from the networks it sees.",
        "repository": {
            "license": "Apache 2.0",
            "tests": "cargo test --workspace",
        },
        "participate": {"docs": "README.md"},
        "keywords": ["geolocation", "rust", "wifi", "cell", "bluetooth"],
    });
    if let Some(url) = state.site.config.source_url.as_deref() {
        body["repository"]["url"] = json!(url);
        body["bugs"] = json!({"list": url});
        body["urls"] = json!({"source": url});
    }
    Json(body)
}

const ROBOTS: &str = "User-agent: *\nDisallow: /downloads\nDisallow: /static/\nDisallow: /v1/\nDisallow: /v2/\nDisallow: /__heartbeat__\nDisallow: /__lbheartbeat__\nDisallow: /__version__\n";

async fn robots() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/plain; charset=utf-8"),
            (header::CACHE_CONTROL, "max-age=86400, public"),
        ],
        ROBOTS,
    )
        .into_response()
}

/// Unknown paths: a small HTML 404, never the JSON `notFound` error (api §1.1).
pub(crate) async fn not_found() -> Response {
    not_found_page()
}

/// The body of [`not_found`], for handlers that find nothing under a known route.
pub(crate) fn not_found_page() -> Response {
    (StatusCode::NOT_FOUND, Html("<h1>404 Not Found</h1>")).into_response()
}
