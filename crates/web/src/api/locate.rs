//! `/v1/geolocate` and `/v1/country` (api §5, locate §2): key rules, body,
//! the searchers and their sources, result formatting, and the query reports that
//! geolocate feeds into `update_incoming` (api §5.6).
//!
//! Position searcher: internal stations → GeoIP → external fallback (only for keys
//! that may use it, when the query has networks and the results so far do not
//! satisfy it). Region searcher: internal (station regions, cell MCCs) → GeoIP.
//!
//! The region searcher reads the database only for what the MCC and GeoIP cannot
//! decide: the WiFi / Bluetooth stations of the query, and `cell_area` rows only
//! for MCCs shared by several regions. A query of IP and/or cells with single-region
//! MCCs is answered without any station-table access (the key lookup itself is
//! cached per process).
//!
//! Database failures during the search are logged and the affected sub-search
//! yields nothing: GeoIP and the fallback keep answering while the database is down.
//!
//! Sections (§) refer to docs/reference/api.md.

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::State;
use axum::http::HeaderMap;
use chrono::{DateTime, Utc};
use ichnaea_core::locate::calibrated::{DEFAULT_CONFIDENCE, Estimates, search_internal_calibrated};
use ichnaea_core::locate::estimate::Estimate;
use ichnaea_core::locate::position::{
    StationRows, search_areas, search_blue, search_cells, search_wifi,
};
use ichnaea_core::locate::query::{Query, normalize};
use ichnaea_core::locate::region_search::{
    ambiguous_area_keys, region_search_blue, region_search_cells, region_search_wifi,
};
use ichnaea_core::locate::result::{
    PositionResult, RegionResult, ResultSource, UsedNetwork, best_position, best_region, round7,
    satisfied,
};
use ichnaea_core::locate::{ApiType, LocateModel};
use ichnaea_core::queues::UPDATE_INCOMING;
use ichnaea_core::{ApiKey, AreaKey, CellKey, IncomingItem, Mac, ReportSource};
use serde_json::{Map, Value};

use super::body::{decode_text, parse_lean};
use super::error::{ApiError, ApiJson, ParseDetails};
use super::fallback::Provider;
use super::keys::{KeyLookup, KnownKey};
use super::wire::QueryReport;
use super::{Caller, bounded, check_daily_limit, locate_schema, read_body};
use crate::{AppState, SharedState};

/// Whose request this is after the key checks.
enum KeyUse {
    /// A stored, allowed key.
    Known(Arc<KnownKey>),
    /// The key lookup failed: anonymous defaults (api §7.2), no checks.
    Anonymous,
}

impl KeyUse {
    fn key(&self) -> Option<&KnownKey> {
        match self {
            KeyUse::Known(k) => Some(k),
            KeyUse::Anonymous => None,
        }
    }

    /// `store_sample_locate` in percent: NULL → 0, anonymous → 100.
    fn sample_locate(&self) -> i16 {
        self.key()
            .map_or(100, |k| k.store_sample_locate.unwrap_or(0))
    }
}

/// The request after key checks and body parsing.
struct Prepared {
    caller: Caller,
    key: KeyUse,
    query: Query,
    /// `"confidence"` of the body, when given.
    confidence: Option<u8>,
}

/// `/v1/geolocate`.
pub(super) async fn geolocate(
    State(state): State<SharedState>,
    caller: Caller,
    headers: HeaderMap,
    body: Body,
) -> Result<ApiJson, ApiError> {
    let request = prepare(&state, ApiType::Locate, caller, &headers, body).await?;
    search_position(&state, request).await.map(ApiJson)
}

/// `/v1/country`.
pub(super) async fn country(
    State(state): State<SharedState>,
    caller: Caller,
    headers: HeaderMap,
    body: Body,
) -> Result<ApiJson, ApiError> {
    let request = prepare(&state, ApiType::Region, caller, &headers, body).await?;
    search_region(&state, request).await.map(ApiJson)
}

fn metric_path(api: ApiType) -> &'static str {
    match api {
        ApiType::Locate => "v1.geolocate",
        ApiType::Region => "v1.country",
    }
}

fn allowed(key: &ApiKey, api: ApiType) -> bool {
    match api {
        ApiType::Locate => key.allow_locate == Some(true),
        ApiType::Region => key.allow_region == Some(true),
    }
}

/// Key rules (api §7.4), then body decoding and parsing (§2.3, §5.1).
async fn prepare(
    state: &AppState,
    api: ApiType,
    caller: Caller,
    headers: &HeaderMap,
    body: Body,
) -> Result<Prepared, ApiError> {
    let path = metric_path(api);
    let request_metric = match api {
        ApiType::Locate => "locate.request",
        ApiType::Region => "region.request",
    };
    let Some(text) = &caller.key else {
        metrics::counter!(request_metric, "path" => path, "key" => "none").increment(1);
        return Err(ApiError::KeyInvalid);
    };
    let key = match state.api_keys.lookup(&state.store, text).await {
        KeyLookup::Known(key) if allowed(&key, api) => {
            if api == ApiType::Locate {
                check_daily_limit(state, &key, &caller, path, "locate").await?;
            }
            KeyUse::Known(key)
        }
        KeyLookup::Known(_) | KeyLookup::Unknown => {
            metrics::counter!(request_metric, "path" => path, "key" => "invalid").increment(1);
            return Err(ApiError::KeyInvalid);
        }
        KeyLookup::Failed => KeyUse::Anonymous,
    };
    let key_tag = key
        .key()
        .map_or_else(|| "none".to_string(), |k| k.metric_label.clone());
    metrics::counter!(request_metric, "path" => path, "key" => key_tag).increment(1);

    let raw = read_body(state, body).await?;
    let text = decode_text(headers, &raw, state.api.body)?;
    let value = if text.is_empty() {
        // An empty body is `{}` (an IP-only lookup).
        Value::Object(Map::new())
    } else {
        parse_lean(&text, locate_schema::BODY)?
    };
    drop(text);
    drop(raw);
    let parsed = locate_schema::parse(&value)
        .map_err(|errors| ApiError::Parse(Some(ParseDetails::Validation(errors.0))))?;
    let mut input = parsed.input;
    input.has_ip = caller.ip.is_some();
    Ok(Prepared {
        caller,
        key,
        query: normalize(&input),
        confidence: parsed.confidence,
    })
}

/// The GeoIP location of the caller, when GeoIP may run for `query`.
fn geoip_location(
    state: &AppState,
    query: &Query,
    ip: Option<IpAddr>,
) -> Option<ichnaea_core::locate::geoip::GeoIpLocation> {
    if !query.geoip_allowed() {
        return None;
    }
    state.geoip.as_ref()?.locate(ip?)
}

/// Logs a failed station read; the sub-search then yields nothing.
fn rows<T>(result: Result<Vec<T>, ichnaea_store::StoreError>, what: &str) -> Vec<T> {
    result.unwrap_or_else(|e| {
        tracing::warn!(error = %e, table = what, "station lookup failed, continuing without it");
        Vec::new()
    })
}

/// The internal position source of the calibrated model: the stations with
/// their estimates, one fused result (cell areas when nothing is known).
async fn internal_position_calibrated(
    state: &AppState,
    query: &Query,
    now: DateTime<Utc>,
    confidence: u8,
) -> Vec<PositionResult> {
    let now = now.naive_utc();
    let store = &state.store;
    let blue_macs: Vec<Mac> = query.blue.iter().map(|b| b.mac).collect();
    let wifi_macs: Vec<Mac> = query.wifi.iter().map(|w| w.mac).collect();
    let cell_keys: Vec<CellKey> = query.cell.iter().map(|c| c.key).collect();
    let (blue, wifi, cells) = tokio::join!(
        async {
            if blue_macs.is_empty() {
                Ok(Vec::new())
            } else {
                store
                    .read(|s| Box::pin(s.blue_stations_estimated(&blue_macs)))
                    .await
            }
        },
        async {
            if wifi_macs.is_empty() {
                Ok(Vec::new())
            } else {
                store
                    .read(|s| Box::pin(s.wifi_stations_estimated(&wifi_macs)))
                    .await
            }
        },
        async {
            if cell_keys.is_empty() {
                Ok(Vec::new())
            } else {
                store
                    .read(|s| Box::pin(s.cell_stations_estimated(&cell_keys)))
                    .await
            }
        },
    );
    let (blue, blue_est) = split_estimates(rows(blue, "blue"), |s| s.mac);
    let (wifi, wifi_est) = split_estimates(rows(wifi, "wifi"), |s| s.mac);
    let (cells, cell_est) = split_estimates(rows(cells, "cell"), |s| s.key);
    let known = !blue.is_empty() || !wifi.is_empty() || !cells.is_empty();
    let areas = if known {
        Vec::new()
    } else {
        let area_keys: Vec<AreaKey> = query.effective_areas().iter().map(|a| a.key).collect();
        if area_keys.is_empty() {
            Vec::new()
        } else {
            rows(
                store.read(|s| Box::pin(s.cell_areas(&area_keys))).await,
                "cell_area",
            )
        }
    };
    search_internal_calibrated(
        query,
        StationRows {
            wifi: &wifi,
            blue: &blue,
            cells: &cells,
            areas: &areas,
        },
        Estimates {
            wifi: &wifi_est,
            blue: &blue_est,
            cells: &cell_est,
        },
        now,
        confidence,
    )
}

/// Station rows and the estimates of those that have one.
fn split_estimates<S, K>(
    rows: Vec<(S, Option<Estimate>)>,
    key: impl Fn(&S) -> K,
) -> (Vec<S>, Vec<(K, Estimate)>) {
    let mut estimates = Vec::new();
    let stations = rows
        .into_iter()
        .map(|(s, e)| {
            if let Some(e) = e {
                estimates.push((key(&s), e));
            }
            s
        })
        .collect();
    (stations, estimates)
}

/// The internal position source (locate §2.1): Bluetooth, WiFi, then cells
/// or — when no cell is known — cell areas.
async fn internal_position(
    state: &AppState,
    query: &Query,
    now: DateTime<Utc>,
) -> Vec<PositionResult> {
    let now = now.naive_utc();
    let store = &state.store;
    let blue_macs: Vec<Mac> = query.blue.iter().map(|b| b.mac).collect();
    let wifi_macs: Vec<Mac> = query.wifi.iter().map(|w| w.mac).collect();
    let cell_keys: Vec<CellKey> = query.cell.iter().map(|c| c.key).collect();
    let (blue, wifi, cells) = tokio::join!(
        async {
            if blue_macs.is_empty() {
                Ok(Vec::new())
            } else {
                store.read(|s| Box::pin(s.blue_stations(&blue_macs))).await
            }
        },
        async {
            if wifi_macs.is_empty() {
                Ok(Vec::new())
            } else {
                store.read(|s| Box::pin(s.wifi_stations(&wifi_macs))).await
            }
        },
        async {
            if cell_keys.is_empty() {
                Ok(Vec::new())
            } else {
                store.read(|s| Box::pin(s.cell_stations(&cell_keys))).await
            }
        },
    );
    let mut results = search_blue(query, &rows(blue, "blue"), now);
    results.extend(search_wifi(query, &rows(wifi, "wifi"), now));
    if !query.cell.is_empty() || !query.effective_areas().is_empty() {
        let found = search_cells(query, &rows(cells, "cell"), now);
        if found.is_empty() {
            let area_keys: Vec<AreaKey> = query.effective_areas().iter().map(|a| a.key).collect();
            if !area_keys.is_empty() {
                let areas = rows(
                    store.read(|s| Box::pin(s.cell_areas(&area_keys))).await,
                    "cell_area",
                );
                results.extend(search_areas(query, &areas, now));
            }
        } else {
            results.extend(found);
        }
    }
    results
}

/// The position searcher: internal → GeoIP → external fallback.
async fn search_position(state: &AppState, req: Prepared) -> Result<Value, ApiError> {
    let Prepared {
        caller,
        key,
        query,
        confidence,
    } = req;
    let now = Utc::now();
    let expected = query.expected_accuracy(ApiType::Locate);
    let mut results: Vec<PositionResult> = Vec::new();
    let mut internal: Vec<PositionResult> = Vec::new();
    let model = state.api.locate_model;
    if query.has_networks() {
        internal = match model {
            LocateModel::Classic => internal_position(state, &query, now).await,
            LocateModel::Calibrated => {
                let c = confidence.unwrap_or(DEFAULT_CONFIDENCE);
                internal_position_calibrated(state, &query, now, c).await
            }
        };
        results.extend(internal.iter().cloned());
    }
    if let Some(location) = geoip_location(state, &query, caller.ip) {
        results.push(location.position_result(query.geoip_only(true)));
    }
    let provider = key.key().and_then(|k| Provider::of_key(k));
    if let Some(provider) = &provider
        && query.fallback_eligible()
        && !satisfied(&results, expected)
    {
        let found = state
            .fallback
            .search(&state.counters, provider, &query)
            .await;
        results.extend(found);
    }
    let best = best_position(&results);
    record_result(ApiType::Locate, &key, best.map(|b| b.source.name()));

    if let Some(best_internal) = best_position(&internal) {
        store_query_report(state, &key, &query, best_internal).await;
    }
    let best = best.ok_or(ApiError::NotFound)?;
    let mut answer = best.clone();
    // The calibrated fix drew its circle for the confidence asked; other
    // circles (classic, cell areas, GeoIP, fallback) are taken as 95 % ones
    // and scaled like a circular normal error.
    let drawn = model == LocateModel::Calibrated
        && answer.source == ResultSource::Internal
        && answer.fallback.is_none();
    if let Some(c) = confidence
        && !drawn
    {
        answer.accuracy = round7(answer.accuracy * scale_confidence(c));
    }
    let mut value = serde_json::to_value(answer.response()).map_err(|e| {
        tracing::error!(error = %e, "cannot serialise a position");
        ApiError::NotFound
    })?;
    if let (Some(c), Some(object)) = (confidence, value.as_object_mut()) {
        object.insert("confidence".to_string(), Value::from(c));
    }
    Ok(value)
}

/// The factor from a 95 % circle to one of `confidence` percent, for a
/// circular normal error: `√(−2 ln(1 − c)) / √(−2 ln 0.05)`.
fn scale_confidence(confidence: u8) -> f64 {
    let r = |c: f64| (-2.0 * (1.0 - c).ln()).sqrt();
    r(f64::from(confidence) / 100.0) / r(0.95)
}

/// Counts the outcome of a search for known keys.
fn record_result(api: ApiType, key: &KeyUse, source: Option<&'static str>) {
    let Some(k) = key.key() else {
        return;
    };
    let name = match api {
        ApiType::Locate => "locate.result",
        ApiType::Region => "region.result",
    };
    let status = if source.is_some() { "hit" } else { "miss" };
    metrics::counter!(
        name,
        "key" => k.metric_label.clone(),
        "status" => status,
        "source" => source.unwrap_or("none")
    )
    .increment(1);
}

/// The region searcher: internal (stations and MCCs) → GeoIP.
async fn search_region(state: &AppState, req: Prepared) -> Result<Value, ApiError> {
    let Prepared {
        caller, key, query, ..
    } = req;
    let now = Utc::now().naive_utc();
    let mut results: Vec<RegionResult> = Vec::new();
    if query.has_networks() {
        let store = &state.store;
        if !query.blue.is_empty() {
            let macs: Vec<Mac> = query.blue.iter().map(|b| b.mac).collect();
            let stations = rows(
                store.read(|s| Box::pin(s.blue_stations(&macs))).await,
                "blue",
            );
            results.extend(region_search_blue(&query, &stations, now));
        }
        if !query.wifi.is_empty() {
            let macs: Vec<Mac> = query.wifi.iter().map(|w| w.mac).collect();
            let stations = rows(
                store.read(|s| Box::pin(s.wifi_stations(&macs))).await,
                "wifi",
            );
            results.extend(region_search_wifi(&query, &stations, now));
        }
        // Cells count by MCC; only MCCs of several regions need their areas.
        let ambiguous = ambiguous_area_keys(&query);
        let areas = if ambiguous.is_empty() {
            Vec::new()
        } else {
            rows(
                store.read(|s| Box::pin(s.cell_areas(&ambiguous))).await,
                "cell_area",
            )
        };
        results.extend(region_search_cells(&query, &areas, now));
    }
    if let Some(location) = geoip_location(state, &query, caller.ip)
        && let Some(result) = location.region_result(query.geoip_only(true))
    {
        results.push(result);
    }
    let best = best_region(&results);
    record_result(ApiType::Region, &key, best.map(|b| b.source.name()));
    let best = best.ok_or(ApiError::NotFound)?;
    serde_json::to_value(best.response()).map_err(|e| {
        tracing::error!(error = %e, "cannot serialise a region");
        ApiError::NotFound
    })
}

/// A network of a query or of a result, for the "all seen today" comparison.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum NetworkId {
    Area(AreaKey),
    Blue(Mac),
    Cell(CellKey),
    Wifi(Mac),
}

/// Whether every usable network of the query is among the networks the best
/// internal result used that were seen today (api §5.6 condition 2).
fn all_seen_today(query: &Query, best: &PositionResult) -> bool {
    let seen: BTreeSet<NetworkId> = best
        .used_networks
        .iter()
        .filter_map(|n| match n {
            UsedNetwork::Area {
                key,
                seen_today: true,
            } => Some(NetworkId::Area(*key)),
            UsedNetwork::Blue {
                mac,
                seen_today: true,
            } => Some(NetworkId::Blue(*mac)),
            UsedNetwork::Cell {
                key,
                seen_today: true,
            } => Some(NetworkId::Cell(*key)),
            UsedNetwork::Wifi {
                mac,
                seen_today: true,
            } => Some(NetworkId::Wifi(*mac)),
            _ => None,
        })
        .collect();
    let all: BTreeSet<NetworkId> = query
        .effective_areas()
        .iter()
        .map(|a| NetworkId::Area(a.key))
        .chain(query.blue.iter().map(|b| NetworkId::Blue(b.mac)))
        .chain(query.cell.iter().map(|c| NetworkId::Cell(c.key)))
        .chain(query.wifi.iter().map(|w| NetworkId::Wifi(w.mac)))
        .collect();
    seen == all
}

/// The effective query sample rate in [0, ∞): key percent × global percent.
async fn sample_rate(state: &AppState, key: &KeyUse) -> f64 {
    let global = match bounded(state.counters.locate_sample_rate()).await {
        Ok(rate) => rate.unwrap_or(100.0),
        Err(e) => {
            tracing::warn!(error = %e, "global locate sample rate unavailable, using 100");
            100.0
        }
    };
    f64::from(key.sample_locate()) / 100.0 * global / 100.0
}

/// Turns a located query into a `query` report on `update_incoming` when it
/// qualifies (api §5.6); every failure is logged and swallowed.
async fn store_query_report(state: &AppState, key: &KeyUse, query: &Query, best: &PositionResult) {
    if all_seen_today(query, best) {
        return;
    }
    let rate = sample_rate(state, key).await;
    if rate <= 0.0 || rate < fastrand::f64() {
        return;
    }
    match bounded(state.queue.len(UPDATE_INCOMING)).await {
        Ok(backlog) if backlog >= state.api.incoming_queue_max => {
            metrics::counter!("locate.query_report.backpressure").increment(1);
            return;
        }
        Ok(_) => {}
        Err(e) => {
            tracing::warn!(error = %e, "queue unavailable, query report dropped");
            return;
        }
    }
    let report = match serde_json::to_value(QueryReport::new(query, best)) {
        Ok(Value::Object(report)) => report,
        other => {
            tracing::warn!(error = ?other.err(), "cannot serialise a query report");
            return;
        }
    };
    let item = IncomingItem {
        api_key: key.key().map(|k| k.valid_key.clone()),
        source: ReportSource::Query,
        report,
    };
    let bytes = match item.encode() {
        Ok(bytes) => bytes,
        Err(e) => {
            tracing::warn!(error = %e, "cannot serialise a query report");
            return;
        }
    };
    if let Err(e) = bounded(state.queue.push(UPDATE_INCOMING, vec![bytes])).await {
        tracing::warn!(error = %e, "query report not enqueued");
    }
}
