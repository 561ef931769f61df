//! Network positioning (locate §3): per-network inputs and weights, the
//! aggregate position of WiFi / Bluetooth clusters (weighted mean refined by
//! Levenberg–Marquardt), cell clusters and cell areas, and the internal
//! position searches built on them.
//!
//! The web tier reads the station rows of the query's lookups (any rows: the
//! usable ones are picked here, §2.2) and calls [`search_blue`],
//! [`search_wifi`], [`search_cells`] and — only when `search_cells` found
//! nothing and [`Query::effective_areas`] is not empty — [`search_areas`], or
//! [`search_internal`] with everything at once.
//!
//! Sections (§) refer to docs/reference/locate.md.

use std::cmp::Ordering;

use chrono::{NaiveDate, NaiveDateTime};

use crate::cell::{AreaKey, CellKey};
use crate::geo::GeoPoint;
use crate::mac::Mac;
use crate::radio::Radio;
use crate::station::{BlueStation, CellArea, CellStation, StationFields, WifiStation};

use super::cluster::{cluster_cells, cluster_networks};
use super::lm::{Term, refine};
use super::query::Query;
use super::result::{FallbackTag, PositionResult, ResultSource, UsedNetwork};
use super::score::{area_score, area_usable, station_score, station_usable};
use super::{
    BLUE_MAX_ACCURACY, BLUE_MIN_ACCURACY, CELL_MAX_ACCURACY, CELL_MIN_ACCURACY,
    CELLAREA_MAX_ACCURACY, CELLAREA_MIN_ACCURACY, MAX_BLUE_CLUSTER_METERS, MAX_BLUES_IN_CLUSTER,
    MAX_WIFI_CLUSTER_METERS, MAX_WIFIS_IN_CLUSTER, MIN_AGE_MS, MIN_BLUE_SIGNAL, MIN_WIFI_SIGNAL,
    WIFI_MAX_ACCURACY, WIFI_MIN_ACCURACY,
};

/// Default signal of a cell lookup without one (§0), by radio; nr like lte.
pub fn min_cell_signal(radio: Radio) -> i64 {
    match radio {
        Radio::Gsm => -113,
        Radio::Wcdma => -121,
        Radio::Lte | Radio::Nr => -140,
    }
}

/// A stored network matched by a lookup, with the inputs of §3.1.
#[derive(Clone, Debug, PartialEq)]
pub struct Network<K> {
    /// The network's key (MAC, cell or area key).
    pub key: K,
    /// Stored latitude.
    pub lat: f64,
    /// Stored longitude.
    pub lon: f64,
    /// Stored radius (0 if NULL).
    pub radius: f64,
    /// `max(|lookup age or 0|, 1000)` ms.
    pub age: i64,
    /// Lookup signal, or the type default when missing or 0.
    pub signal: i64,
    /// Station or area score.
    pub score: f64,
    /// Row `last_seen >= today`.
    pub seen_today: bool,
}

impl<K> Network<K> {
    /// `min(sqrt(2000 / age), 1)`: 1.0 up to 2 s, 0.5 at 8 s.
    pub fn age_factor(&self) -> f64 {
        (2000.0 / self.age as f64).sqrt().min(1.0)
    }

    /// `score × age_factor / signal²`: the weight of the initial mean.
    pub fn weight(&self) -> f64 {
        let s = self.signal as f64;
        self.score * self.age_factor() / s.powi(2)
    }
}

/// Aggregate of one cluster.
#[derive(Clone, Debug, PartialEq)]
pub struct Aggregate<K> {
    /// Latitude (not rounded).
    pub lat: f64,
    /// Longitude (not rounded).
    pub lon: f64,
    /// Clamped accuracy in metres (not rounded).
    pub accuracy: f64,
    /// Σ score over the whole cluster.
    pub score: f64,
    /// Networks that entered the position (the used networks).
    pub sample: Vec<Network<K>>,
}

fn lookup_age(age: Option<i64>) -> i64 {
    age.unwrap_or(0).saturating_abs().max(MIN_AGE_MS)
}

fn lookup_signal(signal: Option<i64>, default: i64) -> i64 {
    match signal {
        Some(s) if s != 0 => s,
        _ => default,
    }
}

fn seen_today(last_seen: Option<NaiveDate>, today: NaiveDate) -> bool {
    last_seen.is_some_and(|d| d >= today)
}

/// Builds the network of a usable station row; `None` for unusable rows.
fn station_network<K>(
    key: K,
    fields: &StationFields,
    age: Option<i64>,
    signal: i64,
    now: NaiveDateTime,
) -> Option<Network<K>> {
    let today = now.date();
    if !station_usable(fields, today) {
        return None;
    }
    Some(Network {
        key,
        lat: fields.lat?,
        lon: fields.lon?,
        radius: fields.radius.unwrap_or(0) as f64,
        age: lookup_age(age),
        signal,
        score: station_score(fields, now),
        seen_today: seen_today(fields.last_seen, today),
    })
}

/// Usable WiFi rows of the query's lookups as networks, in row order.
pub fn wifi_networks(
    query: &Query,
    stations: &[WifiStation],
    now: NaiveDateTime,
) -> Vec<Network<Mac>> {
    stations
        .iter()
        .filter_map(|s| {
            let lookup = query.wifi.iter().find(|l| l.mac == s.mac)?;
            let signal = lookup_signal(lookup.signal_strength, MIN_WIFI_SIGNAL);
            station_network(s.mac, &s.fields, lookup.age, signal, now)
        })
        .collect()
}

/// Usable Bluetooth rows of the query's lookups as networks, in row order.
pub fn blue_networks(
    query: &Query,
    stations: &[BlueStation],
    now: NaiveDateTime,
) -> Vec<Network<Mac>> {
    stations
        .iter()
        .filter_map(|s| {
            let lookup = query.blue.iter().find(|l| l.mac == s.mac)?;
            let signal = lookup_signal(lookup.signal_strength, MIN_BLUE_SIGNAL);
            station_network(s.mac, &s.fields, lookup.age, signal, now)
        })
        .collect()
}

/// Usable cell rows of the query's cell lookups as networks, in row order.
pub fn cell_networks(
    query: &Query,
    cells: &[CellStation],
    now: NaiveDateTime,
) -> Vec<Network<CellKey>> {
    cells
        .iter()
        .filter_map(|c| {
            let lookup = query.cell.iter().find(|l| l.key == c.key)?;
            let signal = lookup_signal(lookup.signal_strength, min_cell_signal(lookup.key.radio));
            station_network(c.key, &c.fields, lookup.age, signal, now)
        })
        .collect()
}

/// Positioned area rows of the query's effective area lookups, in row order.
pub fn area_networks(
    query: &Query,
    areas: &[CellArea],
    now: NaiveDateTime,
) -> Vec<Network<AreaKey>> {
    let today = now.date();
    areas
        .iter()
        .filter_map(|a| {
            let lookup = query.effective_areas().iter().find(|l| l.key == a.key)?;
            if !area_usable(a) {
                return None;
            }
            Some(Network {
                key: a.key,
                lat: a.lat?,
                lon: a.lon?,
                radius: a.radius.unwrap_or(0) as f64,
                age: lookup_age(lookup.age),
                signal: lookup_signal(lookup.signal_strength, min_cell_signal(lookup.key.radio)),
                score: area_score(a, now),
                seen_today: seen_today(a.last_seen, today),
            })
        })
        .collect()
}

/// NumPy's default percentile (linear interpolation at rank `q/100·(n−1)`,
/// with NumPy's two-sided lerp); 0 for no values.
pub fn percentile(values: &[f64], q: f64) -> f64 {
    let mut sorted: Vec<f64> = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let n = sorted.len();
    if n == 0 {
        return 0.0;
    }
    let rank = (q / 100.0) * (n - 1) as f64;
    let lo = rank.floor();
    let t = rank - lo;
    let lo = lo as usize;
    let hi = (lo + 1).min(n - 1);
    let (a, b) = (sorted[lo], sorted[hi]);
    let diff = b - a;
    if t >= 0.5 {
        b - diff * (1.0 - t)
    } else {
        a + diff * t
    }
}

/// Weighted mean of the positions, summed in order like `numpy.average`.
fn weighted_mean<K>(networks: &[Network<K>]) -> (f64, f64) {
    let (mut lat, mut lon, mut total) = (0.0, 0.0, 0.0);
    for n in networks {
        let w = n.weight();
        lat += n.lat * w;
        lon += n.lon * w;
        total += w;
    }
    (lat / total, lon / total)
}

/// Clamps `x` into `[min, max]` the way the original does (`min(max(x, lo), hi)`).
fn clamp(x: f64, min: f64, max: f64) -> f64 {
    x.max(min).min(max)
}

/// The order of the sample (§3.3 step 1): score ascending, ties by lat, lon,
/// radius, age, signal (NumPy's structured sort).
fn sample_order<K>(a: &Network<K>, b: &Network<K>) -> Ordering {
    a.score
        .total_cmp(&b.score)
        .then(a.lat.total_cmp(&b.lat))
        .then(a.lon.total_cmp(&b.lon))
        .then(a.radius.total_cmp(&b.radius))
        .then(a.age.cmp(&b.age))
        .then(a.signal.cmp(&b.signal))
}

/// Aggregate position of one WiFi / Bluetooth cluster (§3.3): the lowest-scored
/// `max_networks` members [quirk], their weighted mean refined by
/// MINPACK-equivalent least squares, accuracy = 95th percentile of the
/// distances to the sample clamped to `[min_accuracy, max_accuracy]`, score =
/// Σ over the whole cluster.
pub fn aggregate_mac_cluster<K: Clone>(
    cluster: &[Network<K>],
    max_networks: usize,
    min_accuracy: f64,
    max_accuracy: f64,
) -> Aggregate<K> {
    let mut sorted = cluster.to_vec();
    sorted.sort_by(sample_order);
    sorted.truncate(max_networks);
    let sample = sorted;
    let initial = weighted_mean(&sample);
    let terms: Vec<Term> = sample
        .iter()
        .map(|n| Term {
            at: GeoPoint::new(n.lat, n.lon),
            age_factor: n.age_factor(),
            signal: n.signal as f64,
        })
        .collect();
    let (lat, lon) = refine(&terms, initial).unwrap_or(initial);
    let at = GeoPoint::new(lat, lon);
    let distances: Vec<f64> = terms.iter().map(|t| at.distance(&t.at)).collect();
    let accuracy = clamp(percentile(&distances, 95.0), min_accuracy, max_accuracy);
    Aggregate {
        lat,
        lon,
        accuracy,
        score: cluster.iter().map(|n| n.score).sum(),
        sample,
    }
}

/// Aggregate position of one cell cluster or area (§3.4, §3.5): a single
/// member gives its position and clamped radius; several give the weighted
/// mean (no least squares) and the clamped 95th percentile of distances.
pub fn aggregate_cell_cluster<K: Clone>(
    cluster: &[Network<K>],
    min_accuracy: f64,
    max_accuracy: f64,
) -> Aggregate<K> {
    let score = cluster.iter().map(|n| n.score).sum();
    if let [one] = cluster {
        return Aggregate {
            lat: one.lat,
            lon: one.lon,
            accuracy: clamp(one.radius, min_accuracy, max_accuracy),
            score,
            sample: cluster.to_vec(),
        };
    }
    let (lat, lon) = weighted_mean(cluster);
    let at = GeoPoint::new(lat, lon);
    let distances: Vec<f64> = cluster
        .iter()
        .map(|n| at.distance(&GeoPoint::new(n.lat, n.lon)))
        .collect();
    Aggregate {
        lat,
        lon,
        accuracy: clamp(percentile(&distances, 95.0), min_accuracy, max_accuracy),
        score,
        sample: cluster.to_vec(),
    }
}

fn mac_results(
    networks: &[Network<Mac>],
    max_distance: f64,
    max_networks: usize,
    min_accuracy: f64,
    max_accuracy: f64,
    used: fn(Mac, bool) -> UsedNetwork,
) -> Vec<PositionResult> {
    cluster_networks(networks, max_distance)
        .iter()
        .map(|cluster| {
            let agg = aggregate_mac_cluster(cluster, max_networks, min_accuracy, max_accuracy);
            let mut result = PositionResult::new(
                agg.lat,
                agg.lon,
                agg.accuracy,
                agg.score,
                ResultSource::Internal,
                None,
            );
            result.used_networks = agg
                .sample
                .iter()
                .map(|n| used(n.key, n.seen_today))
                .collect();
            result
        })
        .collect()
}

/// WiFi position results (§3.2–§3.3): one per cluster.
pub fn search_wifi(
    query: &Query,
    stations: &[WifiStation],
    now: NaiveDateTime,
) -> Vec<PositionResult> {
    if query.wifi.is_empty() {
        return Vec::new();
    }
    mac_results(
        &wifi_networks(query, stations, now),
        MAX_WIFI_CLUSTER_METERS,
        MAX_WIFIS_IN_CLUSTER,
        WIFI_MIN_ACCURACY,
        WIFI_MAX_ACCURACY,
        |mac, seen_today| UsedNetwork::Wifi { mac, seen_today },
    )
}

/// Bluetooth position results (§3.2–§3.3): one per cluster.
pub fn search_blue(
    query: &Query,
    stations: &[BlueStation],
    now: NaiveDateTime,
) -> Vec<PositionResult> {
    if query.blue.is_empty() {
        return Vec::new();
    }
    mac_results(
        &blue_networks(query, stations, now),
        MAX_BLUE_CLUSTER_METERS,
        MAX_BLUES_IN_CLUSTER,
        BLUE_MIN_ACCURACY,
        BLUE_MAX_ACCURACY,
        |mac, seen_today| UsedNetwork::Blue { mac, seen_today },
    )
}

/// Cell position results (§3.4): one per area of the found cells.
pub fn search_cells(
    query: &Query,
    cells: &[CellStation],
    now: NaiveDateTime,
) -> Vec<PositionResult> {
    let networks = cell_networks(query, cells, now);
    cluster_cells(&networks, CellKey::area)
        .iter()
        .map(|cluster| {
            let agg = aggregate_cell_cluster(cluster, CELL_MIN_ACCURACY, CELL_MAX_ACCURACY);
            let mut result = PositionResult::new(
                agg.lat,
                agg.lon,
                agg.accuracy,
                agg.score,
                ResultSource::Internal,
                None,
            );
            result.used_networks = agg
                .sample
                .iter()
                .map(|n| UsedNetwork::Cell {
                    key: n.key,
                    seen_today: n.seen_today,
                })
                .collect();
            result
        })
        .collect()
}

/// Cell-area position results (§3.5), tagged `lacf`: one per found area.
/// Call only when [`search_cells`] produced nothing.
pub fn search_areas(query: &Query, areas: &[CellArea], now: NaiveDateTime) -> Vec<PositionResult> {
    area_networks(query, areas, now)
        .iter()
        .map(|net| {
            let cluster = std::slice::from_ref(net);
            let agg = aggregate_cell_cluster(cluster, CELLAREA_MIN_ACCURACY, CELLAREA_MAX_ACCURACY);
            let mut result = PositionResult::new(
                agg.lat,
                agg.lon,
                agg.accuracy,
                agg.score,
                ResultSource::Internal,
                Some(FallbackTag::Lacf),
            );
            result.used_networks = vec![UsedNetwork::Area {
                key: net.key,
                seen_today: net.seen_today,
            }];
            result
        })
        .collect()
}

/// The station rows read for a query (any rows; unusable ones are skipped).
#[derive(Clone, Copy, Debug, Default)]
pub struct StationRows<'a> {
    /// Rows of the query's WiFi MACs.
    pub wifi: &'a [WifiStation],
    /// Rows of the query's Bluetooth MACs.
    pub blue: &'a [BlueStation],
    /// Rows of the query's cell keys.
    pub cells: &'a [CellStation],
    /// `cell_area` rows of the query's area keys (only consulted when no cell
    /// was found).
    pub areas: &'a [CellArea],
}

/// The internal position source (§2.1): Bluetooth, WiFi, then cell (or, when
/// no cell was found, cell-area) results, concatenated in that order.
pub fn search_internal(
    query: &Query,
    rows: StationRows<'_>,
    now: NaiveDateTime,
) -> Vec<PositionResult> {
    let mut results = search_blue(query, rows.blue, now);
    results.extend(search_wifi(query, rows.wifi, now));
    if !query.cell.is_empty() || !query.effective_areas().is_empty() {
        let cells = search_cells(query, rows.cells, now);
        if cells.is_empty() {
            results.extend(search_areas(query, rows.areas, now));
        } else {
            results.extend(cells);
        }
    }
    results
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numpy_percentile() {
        assert_eq!(percentile(&[], 95.0), 0.0);
        assert_eq!(percentile(&[3.0], 95.0), 3.0);
        assert_eq!(percentile(&[0.0, 10.0], 95.0), 9.5);
        assert_eq!(percentile(&[4.0, 0.0, 10.0, 2.0], 50.0), 3.0);
        assert_eq!(percentile(&[1.0, 2.0, 3.0, 4.0, 5.0], 95.0), 4.8);
    }

    #[test]
    fn weights() {
        let n = Network {
            key: (),
            lat: 0.0,
            lon: 0.0,
            radius: 0.0,
            age: 8000,
            signal: -50,
            score: 1.0,
            seen_today: false,
        };
        assert_eq!(n.age_factor(), 0.5);
        assert_eq!(n.weight(), 0.5 / 2500.0);
        assert_eq!(lookup_age(None), 1000);
        assert_eq!(lookup_age(Some(-8000)), 8000);
        assert_eq!(lookup_signal(Some(0), -127), -127);
        assert_eq!(lookup_signal(None, -100), -100);
        assert_eq!(min_cell_signal(Radio::Nr), -140);
    }
}
