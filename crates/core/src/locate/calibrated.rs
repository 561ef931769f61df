//! The calibrated locate model (`locate_model = "calibrated"`, the default):
//! one fused fix from every known station the phone heard ([`super::fix`]),
//! with an `accuracy` that is the radius holding the true position with the
//! stated confidence (95 % unless the query asks for another), calibrated per
//! source kind. The classic model ([`super::position`]) stays available
//! unchanged; both read the same station rows.
//!
//! Privacy rules kept: Wi-Fi networks only enter a fix when at least two known
//! networks agree (within [`MAX_WIFI_CLUSTER_METERS`]), so one network's
//! position is never revealed — a `_nomap` or hidden network is never stored,
//! so it can never be the second one; the query itself still needs two Wi-Fi
//! networks ([`super::MIN_WIFIS_IN_QUERY`]). Bluetooth beacons (shops,
//! public places) answer from one known beacon, as cells do.

use chrono::NaiveDateTime;

use crate::cell::CellKey;
use crate::mac::Mac;
use crate::station::{BlueStation, CellStation, StationFields, WifiStation};

use super::estimate::Estimate;

use super::fix::{Anchor, AnchorKind, Fix, solve};
use super::position::{StationRows, min_cell_signal, search_areas};
use super::query::Query;
use super::result::{PositionResult, ResultSource, UsedNetwork};
use super::score::{station_score, station_usable};
use super::{MAX_WIFI_CLUSTER_METERS, MIN_AGE_MS};

/// Confidence of the `accuracy` when the query names none, percent.
pub const DEFAULT_CONFIDENCE: u8 = 95;

/// The source kinds calibrated separately.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SourceKind {
    /// Wi-Fi only.
    Wifi,
    /// Cells only.
    Cell,
    /// Bluetooth only.
    Blue,
    /// Two or more kinds fused.
    Mixed,
}

impl SourceKind {
    /// K: the 95 % radius in units of the fix's one-axis standard deviation.
    /// A circular normal error would need 2.45; the values are larger because
    /// the station positions share errors the fix cannot see (stations learnt
    /// on the same street). Fitted once on the four tuning scenarios of
    /// `crates/sim/scenarios` and checked on the held-back ones
    /// (docs/benchmarks.md).
    fn k95(self) -> f64 {
        match self {
            SourceKind::Wifi => 2.7,
            SourceKind::Blue => 4.5,
            SourceKind::Cell => 2.4,
            SourceKind::Mixed => 2.7,
        }
    }

    /// Smallest radius returned, metres.
    fn floor_m(self) -> f64 {
        match self {
            SourceKind::Wifi | SourceKind::Mixed => 5.0,
            SourceKind::Blue => 3.0,
            SourceKind::Cell => 50.0,
        }
    }
}

/// `√(−2 ln(1 − c))`: the radius of confidence `c` of a circular normal
/// error, in standard deviations per axis.
fn normal_radius(confidence: f64) -> f64 {
    (-2.0 * (1.0 - confidence).ln()).sqrt()
}

/// The radius with `confidence` percent of a fix of `kind`.
pub fn radius(kind: SourceKind, sigma_m: f64, confidence: u8) -> f64 {
    let c = f64::from(confidence.clamp(50, 99)) / 100.0;
    let r95 = kind.k95() * sigma_m;
    (r95 * normal_radius(c) / normal_radius(0.95)).max(kind.floor_m())
}

/// One-axis uncertainty of a station's stored position: the spread of its
/// observations (`radius`, centre to the farthest corner of their box)
/// shrinks with the number of samples, down to a share of the spread that
/// averaging does not remove (stations are learnt from the streets beside
/// them, not from all around).
fn station_sigma(kind: AnchorKind, fields: &StationFields) -> f64 {
    let spread = fields.radius.unwrap_or(0).max(0) as f64;
    let n = fields.samples.unwrap_or(1).max(1) as f64;
    let (bias, floor) = match kind {
        AnchorKind::Wifi => (0.08, 8.0),
        AnchorKind::Blue => (0.1, 4.0),
        AnchorKind::Cell => (0.3, 150.0),
    };
    (spread * (1.0 / n.sqrt()).hypot(bias)).max(floor)
}

/// The stations' estimates (the `estimate` column) of a query's rows; a
/// station without one is used with its classic position.
#[derive(Clone, Copy, Debug, Default)]
pub struct Estimates<'a> {
    /// Wi-Fi.
    pub wifi: &'a [(Mac, Estimate)],
    /// Bluetooth.
    pub blue: &'a [(Mac, Estimate)],
    /// Cells.
    pub cells: &'a [(CellKey, Estimate)],
}

/// Share of an estimate's spread that averaging does not remove, the
/// smallest one-axis uncertainty, and the prior spread used when the query
/// has no well-observed station of the kind, per kind.
fn estimate_bias_floor(kind: AnchorKind) -> (f64, f64, f64) {
    match kind {
        AnchorKind::Wifi => (0.15, 5.0, 60.0),
        AnchorKind::Blue => (0.15, 3.0, 20.0),
        AnchorKind::Cell => (0.3, 100.0, 1500.0),
    }
}

/// The typical spread of well-observed stations (n_eff ≥ 4) among `list`:
/// their median; `default` when there are none.
fn prior_spread<K>(list: &[(K, Estimate)], default: f64) -> f64 {
    let mut spreads: Vec<f64> = list
        .iter()
        .filter(|(_, e)| e.n_eff() >= 4.0)
        .map(|(_, e)| e.spread_m())
        .collect();
    if spreads.is_empty() {
        return default;
    }
    spreads.sort_by(f64::total_cmp);
    spreads[spreads.len() / 2]
}

fn age_trust(age: Option<i64>) -> f64 {
    let age = age.unwrap_or(0).saturating_abs().max(MIN_AGE_MS) as f64;
    (2000.0 / age).sqrt().min(1.0)
}

/// What the fix used, for the result.
struct Entry {
    anchor: Anchor,
    used: UsedNetwork,
    score: f64,
}

fn entry(
    kind: AnchorKind,
    fields: &StationFields,
    estimate: (Option<Estimate>, f64),
    signal: Option<i64>,
    age: Option<i64>,
    now: NaiveDateTime,
    used: UsedNetwork,
) -> Option<Entry> {
    if !station_usable(fields, now.date()) {
        return None;
    }
    let score = station_score(fields, now);
    let (estimate, prior) = estimate;
    let (lat, lon, sigma_m) = match estimate {
        Some(e) => {
            let (bias, floor, _) = estimate_bias_floor(kind);
            (e.lat, e.lon, e.sigma_m(bias, floor, prior))
        }
        None => (fields.lat?, fields.lon?, station_sigma(kind, fields)),
    };
    Some(Entry {
        anchor: Anchor {
            kind,
            lat,
            lon,
            sigma_m,
            signal: signal.filter(|s| *s != 0).map(|s| s as f64),
            trust: score.clamp(0.05, 1.0) * age_trust(age),
        },
        used,
        score,
    })
}

fn seen_today(fields: &StationFields, now: NaiveDateTime) -> bool {
    fields.last_seen.is_some_and(|d| d >= now.date())
}

fn find<K: PartialEq>(list: &[(K, Estimate)], key: &K) -> Option<Estimate> {
    list.iter().find(|(k, _)| k == key).map(|(_, e)| *e)
}

fn wifi_entries(
    query: &Query,
    rows: &[WifiStation],
    est: &[(Mac, Estimate)],
    now: NaiveDateTime,
) -> Vec<Entry> {
    let prior = prior_spread(est, estimate_bias_floor(AnchorKind::Wifi).2);
    let found: Vec<Entry> = rows
        .iter()
        .filter_map(|s| {
            let l = query.wifi.iter().find(|l| l.mac == s.mac)?;
            entry(
                AnchorKind::Wifi,
                &s.fields,
                (find(est, &s.mac), prior),
                l.signal_strength,
                l.age,
                now,
                UsedNetwork::Wifi {
                    mac: s.mac,
                    seen_today: seen_today(&s.fields, now),
                },
            )
        })
        .collect();
    // Privacy: a network only counts with another known one near it.
    let near = |a: &Entry, b: &Entry| {
        crate::geo::distance(a.anchor.lat, a.anchor.lon, b.anchor.lat, b.anchor.lon)
            <= MAX_WIFI_CLUSTER_METERS
    };
    let keep: Vec<bool> = found
        .iter()
        .enumerate()
        .map(|(i, a)| found.iter().enumerate().any(|(j, b)| i != j && near(a, b)))
        .collect();
    found
        .into_iter()
        .zip(keep)
        .filter_map(|(e, k)| k.then_some(e))
        .collect()
}

fn blue_entries(
    query: &Query,
    rows: &[BlueStation],
    est: &[(Mac, Estimate)],
    now: NaiveDateTime,
) -> Vec<Entry> {
    let prior = prior_spread(est, estimate_bias_floor(AnchorKind::Blue).2);
    rows.iter()
        .filter_map(|s| {
            let l = query.blue.iter().find(|l| l.mac == s.mac)?;
            entry(
                AnchorKind::Blue,
                &s.fields,
                (find(est, &s.mac), prior),
                l.signal_strength,
                l.age,
                now,
                UsedNetwork::Blue {
                    mac: s.mac,
                    seen_today: seen_today(&s.fields, now),
                },
            )
        })
        .collect()
}

fn cell_entries(
    query: &Query,
    rows: &[CellStation],
    est: &[(CellKey, Estimate)],
    now: NaiveDateTime,
) -> Vec<Entry> {
    let prior = prior_spread(est, estimate_bias_floor(AnchorKind::Cell).2);
    rows.iter()
        .filter_map(|c| {
            let l = query.cell.iter().find(|l| l.key == c.key)?;
            let signal = l
                .signal_strength
                .filter(|s| *s != 0)
                .or(Some(min_cell_signal(l.key.radio)));
            entry(
                AnchorKind::Cell,
                &c.fields,
                (find(est, &c.key), prior),
                signal,
                l.age,
                now,
                UsedNetwork::Cell {
                    key: c.key,
                    seen_today: seen_today(&c.fields, now),
                },
            )
        })
        .collect()
}

/// The kind a fix is calibrated as, from the anchors it used.
pub fn source_kind(anchors: &[Anchor], fix: &Fix) -> SourceKind {
    let mut kinds = fix.used.iter().map(|&i| anchors[i].kind);
    let first = kinds.next();
    if kinds.any(|k| Some(k) != first) {
        return SourceKind::Mixed;
    }
    match first {
        Some(AnchorKind::Wifi) => SourceKind::Wifi,
        Some(AnchorKind::Blue) => SourceKind::Blue,
        _ => SourceKind::Cell,
    }
}

/// The internal position source of the calibrated model: one fused result
/// from every usable known station (or the classic cell-area result when no
/// station is known), its accuracy the radius of `confidence` percent.
pub fn search_internal_calibrated(
    query: &Query,
    rows: StationRows<'_>,
    estimates: Estimates<'_>,
    now: NaiveDateTime,
    confidence: u8,
) -> Vec<PositionResult> {
    let mut entries = wifi_entries(query, rows.wifi, estimates.wifi, now);
    entries.extend(blue_entries(query, rows.blue, estimates.blue, now));
    entries.extend(cell_entries(query, rows.cells, estimates.cells, now));
    let anchors: Vec<Anchor> = entries.iter().map(|e| e.anchor).collect();
    let Some(fix) = solve(&anchors) else {
        // No known station: cell areas, as the classic model answers them.
        return search_areas(query, rows.areas, now);
    };
    let kind = source_kind(&anchors, &fix);
    let mut result = PositionResult::new(
        fix.lat,
        fix.lon,
        radius(kind, fix.sigma_m, confidence),
        fix.used.iter().map(|&i| entries[i].score).sum(),
        ResultSource::Internal,
        None,
    );
    result.used_networks = fix.used.iter().map(|&i| entries[i].used.clone()).collect();
    vec![result]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn radius_scales_with_confidence() {
        let r95 = radius(SourceKind::Wifi, 10.0, 95);
        assert!((r95 - 27.0).abs() < 1e-9);
        let r68 = radius(SourceKind::Wifi, 10.0, 68);
        assert!((r68 / r95 - 0.6167).abs() < 1e-3, "{r68}");
        assert!(radius(SourceKind::Wifi, 10.0, 99) > r95);
        assert_eq!(radius(SourceKind::Cell, 1.0, 95), 50.0);
    }

    #[test]
    fn station_doubt_shrinks_with_samples_down_to_a_floor() {
        let row = |radius, samples| StationFields {
            radius: Some(radius),
            samples: Some(samples),
            ..StationFields::default()
        };
        let few = station_sigma(AnchorKind::Wifi, &row(150, 2));
        let many = station_sigma(AnchorKind::Wifi, &row(150, 400));
        assert!(few > 100.0 && many < 15.0, "{few} {many}");
        assert_eq!(station_sigma(AnchorKind::Wifi, &row(0, 1)), 8.0);
    }
}
