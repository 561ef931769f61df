//! The statistics pages: the running totals of the `stat` table, its monthly
//! history for the charts (`/stats_<kind>.json`), and the station counts per
//! region of `region_stat`.

use askama::Template;
use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Json, Response};
use axum::routing::get;
use chrono::{Datelike, NaiveDate, Utc};
use ichnaea_core::region::region_name;
use ichnaea_core::stats::{REGION_STATS_CACHE_KEY, RegionStat, StatKey, StatRow};
use ichnaea_store::StoreError;
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::cache::cached;
use super::page_response;
use super::pages::{Layout, render};
use crate::SharedState;

/// Page-data entries live an hour.
const STATS_TTL: u64 = 3600;
/// Cache entry of the `/stats` tables.
const GLOBAL_STATS_KEY: &str = "cache:stats:5";
/// Days of history in the charts.
const CHART_DAYS: i64 = 365;

/// One line of a metrics table.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub(crate) struct Metric {
    pub name: String,
    /// Millions, truncated to two decimals.
    pub value: String,
}

/// The two tables of `/stats`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub(crate) struct GlobalStats {
    pub metrics1: Vec<Metric>,
    pub metrics2: Vec<Metric>,
}

/// `v` in millions, truncated (not rounded) to two decimals: 3 289 900 → `3.28`.
pub(crate) fn millions(v: i64) -> String {
    let hundredths = v.max(0) / 10_000;
    format!("{}.{:02}", hundredths / 100, hundredths % 100)
}

/// The tables from the latest row of every counter (a counter without rows
/// is 0).
fn global_stats(latest: &[StatRow]) -> GlobalStats {
    let value = |key: StatKey| {
        let v = latest.iter().find(|r| r.key == key).map_or(0, |r| r.value);
        millions(v)
    };
    let metric = |name: &str, key| Metric {
        name: name.into(),
        value: value(key),
    };
    GlobalStats {
        metrics1: vec![
            metric("Bluetooth Networks", StatKey::UniqueBlue),
            metric("Bluetooth Observations", StatKey::Blue),
            metric("Wifi Networks", StatKey::UniqueWifi),
            metric("Wifi Observations", StatKey::Wifi),
        ],
        metrics2: vec![
            metric("Cells", StatKey::UniqueCell),
            metric("Cell Observations", StatKey::Cell),
            metric("5G NR Cells", StatKey::UniqueNr),
            metric("5G NR Cell Observations", StatKey::Nr),
        ],
    }
}

/// A store failure on a page: 503, the page can be retried.
fn unavailable(e: StoreError) -> Response {
    tracing::error!(error = %e, "site page data unavailable");
    (
        StatusCode::SERVICE_UNAVAILABLE,
        Html("<h1>503 Service Unavailable</h1>"),
    )
        .into_response()
}

#[derive(Template)]
#[template(path = "stats.html")]
struct StatsPage<'a> {
    l: Layout<'a>,
    stats: GlobalStats,
}

async fn stats_page(State(state): State<SharedState>) -> Response {
    let store = &state.store;
    let stats = cached(&state.counters, GLOBAL_STATS_KEY, STATS_TTL, || async {
        Ok::<_, StoreError>(global_stats(
            &store.read(|s| Box::pin(s.latest_stats())).await?,
        ))
    })
    .await;
    let stats = match stats {
        Ok(stats) => stats,
        Err(e) => return unavailable(e),
    };
    let site = &state.site;
    let mut l = site.layout("Statistics", "/stats");
    l.css = &["/static/vendor/uplot/uPlot.min.css"];
    l.js = &[
        "/static/vendor/uplot/uPlot.iife.min.js",
        "/static/js/stats.js",
    ];
    render(&StatsPage { l, stats })
}

/// One chart series: its counter, title and cache entry.
#[derive(Clone, Copy)]
struct Series {
    key: StatKey,
    title: &'static str,
    cache_key: &'static str,
}

const BLUE: Series = Series {
    key: StatKey::UniqueBlue,
    title: "Bluetooth networks",
    cache_key: "cache:stats_blue_json:2",
};
const CELL: Series = Series {
    key: StatKey::UniqueCell,
    title: "Cells",
    cache_key: "cache:stats_cell_json:3",
};
const WIFI: Series = Series {
    key: StatKey::UniqueWifi,
    title: "Wi-Fi networks",
    cache_key: "cache:stats_wifi_json:2",
};
const NR: Series = Series {
    key: StatKey::UniqueNr,
    title: "5G NR cells",
    cache_key: "cache:stats_nr_json:1",
};

/// UTC midnight of the first of `day`'s month, in epoch milliseconds.
fn month_start_ms(day: NaiveDate) -> i64 {
    day.with_day(1)
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .map_or(0, |t| t.and_utc().timestamp_millis())
}

/// The largest value of every month, oldest first, from rows in time order.
pub(crate) fn monthly_max(rows: &[StatRow]) -> Vec<[i64; 2]> {
    let mut out: Vec<[i64; 2]> = Vec::new();
    for row in rows {
        let month = month_start_ms(row.time);
        match out.last_mut() {
            Some(last) if last[0] == month => last[1] = last[1].max(row.value),
            _ => out.push([month, row.value]),
        }
    }
    out
}

async fn chart(state: SharedState, series: Series) -> Response {
    let store = &state.store;
    let today = Utc::now().date_naive();
    let data = cached(&state.counters, series.cache_key, STATS_TTL, || async {
        let since = today - chrono::Duration::days(CHART_DAYS);
        let rows = store.read(|s| Box::pin(s.stats(series.key, since))).await?;
        Ok::<_, StoreError>(vec![monthly_max(&rows)])
    })
    .await;
    match data {
        Ok(data) => {
            let points = data.into_iter().next().unwrap_or_default();
            page_response(Json(
                json!({"series": [{"title": series.title, "data": points}]}),
            ))
        }
        Err(e) => unavailable(e),
    }
}

async fn stats_blue(State(state): State<SharedState>) -> Response {
    chart(state, BLUE).await
}

async fn stats_cell(State(state): State<SharedState>) -> Response {
    chart(state, CELL).await
}

async fn stats_wifi(State(state): State<SharedState>) -> Response {
    chart(state, WIFI).await
}

async fn stats_nr(State(state): State<SharedState>) -> Response {
    chart(state, NR).await
}

/// One line of the region table.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub(crate) struct RegionRow {
    pub code: String,
    pub name: String,
    /// Sort key of the name: its first 10 characters in lower-case ASCII.
    pub order: String,
    pub gsm: i64,
    pub wcdma: i64,
    pub lte: i64,
    pub nr: i64,
    /// All cells: gsm + wcdma + lte + nr.
    pub cell: i64,
    pub blue: i64,
    pub wifi: i64,
}

/// `name` folded to lower-case ASCII for sorting; letters with diacritics
/// lose them, typographic apostrophes become `'`, anything else non-ASCII is
/// dropped.
pub(crate) fn order_key(name: &str) -> String {
    let mut out = String::new();
    for c in name.chars() {
        let folded = match c {
            'à' | 'á' | 'â' | 'ã' | 'ä' | 'å' | 'À' | 'Á' | 'Â' | 'Ã' | 'Ä' | 'Å' => {
                'a'
            }
            'ç' | 'Ç' => 'c',
            'è' | 'é' | 'ê' | 'ë' | 'È' | 'É' | 'Ê' | 'Ë' => 'e',
            'ì' | 'í' | 'î' | 'ï' | 'Ì' | 'Í' | 'Î' | 'Ï' => 'i',
            'ñ' | 'Ñ' => 'n',
            'ò' | 'ó' | 'ô' | 'õ' | 'ö' | 'ø' | 'Ò' | 'Ó' | 'Ô' | 'Õ' | 'Ö' | 'Ø' => {
                'o'
            }
            'ù' | 'ú' | 'û' | 'ü' | 'Ù' | 'Ú' | 'Û' | 'Ü' => 'u',
            'ý' | 'ÿ' | 'Ý' => 'y',
            '’' | '‘' | 'ʼ' => '\'',
            c if c.is_ascii() => c,
            _ => continue,
        };
        out.push(folded.to_ascii_lowercase());
    }
    out.chars().take(10).collect()
}

/// The table rows of `stats`, most cells first (ties by name).
pub(crate) fn region_rows(stats: &[RegionStat]) -> Vec<RegionRow> {
    let mut rows: Vec<RegionRow> = stats
        .iter()
        .map(|r| {
            let name = region_name(&r.region).unwrap_or(&r.region).to_string();
            RegionRow {
                code: r.region.clone(),
                order: order_key(&name),
                name,
                gsm: r.gsm,
                wcdma: r.wcdma,
                lte: r.lte,
                nr: r.nr,
                cell: r.gsm + r.wcdma + r.lte + r.nr,
                blue: r.blue,
                wifi: r.wifi,
            }
        })
        .collect();
    rows.sort_by(|a, b| b.cell.cmp(&a.cell).then_with(|| a.order.cmp(&b.order)));
    rows
}

/// `n` with thousands separators.
pub(crate) fn grouped(n: &i64) -> String {
    let digits = n.unsigned_abs().to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    if *n < 0 { format!("-{out}") } else { out }
}

#[derive(Template)]
#[template(path = "regions.html")]
struct RegionsPage<'a> {
    l: Layout<'a>,
    rows: Vec<RegionRow>,
}

impl RegionsPage<'_> {
    fn n(&self, v: &i64) -> String {
        grouped(v)
    }
}

async fn regions_page(State(state): State<SharedState>) -> Response {
    let store = &state.store;
    let rows = cached(
        &state.counters,
        REGION_STATS_CACHE_KEY,
        STATS_TTL,
        || async {
            Ok::<_, StoreError>(region_rows(
                &store.read(|s| Box::pin(s.region_stats())).await?,
            ))
        },
    )
    .await;
    let rows = match rows {
        Ok(rows) => rows,
        Err(e) => return unavailable(e),
    };
    let mut l = state.site.layout("Regions", "/stats/regions");
    l.js = &["/static/js/regions.js"];
    render(&RegionsPage { l, rows })
}

pub(crate) fn routes() -> Router<SharedState> {
    Router::new()
        .route("/stats", get(stats_page))
        .route("/stats_blue.json", get(stats_blue))
        .route("/stats_cell.json", get(stats_cell))
        .route("/stats_wifi.json", get(stats_wifi))
        .route("/stats_nr.json", get(stats_nr))
        .route("/stats/regions", get(regions_page))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn millions_are_truncated() {
        assert_eq!(millions(2_200_000), "2.20");
        assert_eq!(millions(3_289_900), "3.28");
        assert_eq!(millions(2_009_000), "2.00");
        assert_eq!(millions(0), "0.00");
        assert_eq!(millions(-5), "0.00");
        assert_eq!(millions(1_234_567_890), "1234.56");
    }

    #[test]
    fn every_region_name_has_an_ascii_order_key() {
        for region in ichnaea_core::region::all_regions() {
            let name = region_name(region.code).unwrap();
            let key = order_key(name);
            assert!(key.is_ascii(), "{name} → {key}");
            assert!(!key.is_empty(), "{name}");
            assert_eq!(key, key.to_ascii_lowercase());
        }
        assert_eq!(order_key("Côte d’Ivoire"), "cote d'ivo");
        assert_eq!(order_key("Germany"), "germany");
        assert_eq!(order_key("United Kingdom"), "united kin");
    }

    #[test]
    fn thousands_separators() {
        assert_eq!(grouped(&0), "0");
        assert_eq!(grouped(&999), "999");
        assert_eq!(grouped(&1000), "1,000");
        assert_eq!(grouped(&1_234_567), "1,234,567");
        assert_eq!(grouped(&-1234), "-1,234");
    }
}
