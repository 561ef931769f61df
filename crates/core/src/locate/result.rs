//! Position and region results, their combination (`best()`, locate
//! §2.4 and §2.7), the fallback gate `satisfied` (§2.5), rounding and the
//! response shapes (§2.8).
//!
//! Sections (§) refer to docs/reference/locate.md.

use serde::Serialize;

use crate::cell::{AreaKey, CellKey};
use crate::geo::distance;
use crate::mac::Mac;

use super::query::AccuracyClass;

/// Python's `round(x, 7)`: correctly rounded from the binary value, exact ties
/// to even. Non-finite values are returned unchanged.
pub fn round7(x: f64) -> f64 {
    round_to(x, 7)
}

/// Python's `round(x, 3)` (see [`round7`]).
pub fn round3(x: f64) -> f64 {
    round_to(x, 3)
}

fn round_to(x: f64, places: usize) -> f64 {
    if !x.is_finite() {
        return x;
    }
    // Rust's `{:.N}` formats the exact binary value rounded half to even,
    // like Python's float rounding; parsing returns the nearest double.
    format!("{x:.places$}").parse().unwrap_or(x)
}

/// Which source produced a result; the numbers order region results (§2.7).
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ResultSource {
    /// Stations of this service.
    Internal = 1,
    /// The external fallback provider.
    Fallback = 2,
    /// GeoIP.
    Geoip = 3,
}

impl ResultSource {
    /// Name used in metric tags.
    pub fn name(self) -> &'static str {
        match self {
            ResultSource::Internal => "internal",
            ResultSource::Fallback => "fallback",
            ResultSource::Geoip => "geoip",
        }
    }
}

/// The `fallback` member of a response (§2.6).
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub enum FallbackTag {
    /// A cell-area (location area) position.
    Lacf,
    /// A GeoIP position.
    Ipf,
}

impl FallbackTag {
    /// The JSON value: `lacf` or `ipf`.
    pub fn name(self) -> &'static str {
        match self {
            FallbackTag::Lacf => "lacf",
            FallbackTag::Ipf => "ipf",
        }
    }
}

/// A network that contributed to an internal result, for the query report
/// (§2.9), with whether its row was seen today.
#[derive(Clone, Debug, PartialEq)]
pub enum UsedNetwork {
    /// A Bluetooth beacon.
    Blue {
        /// Its MAC.
        mac: Mac,
        /// `last_seen >= today`.
        seen_today: bool,
    },
    /// A WiFi access point.
    Wifi {
        /// Its MAC.
        mac: Mac,
        /// `last_seen >= today`.
        seen_today: bool,
    },
    /// A cell.
    Cell {
        /// Its key.
        key: CellKey,
        /// `last_seen >= today`.
        seen_today: bool,
    },
    /// A cell area.
    Area {
        /// Its key.
        key: AreaKey,
        /// `last_seen >= today`.
        seen_today: bool,
    },
}

/// One candidate position (§2.4).
#[derive(Clone, Debug, PartialEq)]
pub struct PositionResult {
    /// Latitude, rounded to 7 places.
    pub lat: f64,
    /// Longitude, rounded to 7 places.
    pub lon: f64,
    /// Accuracy in metres, rounded to 7 places.
    pub accuracy: f64,
    /// Trust score (not rounded).
    pub score: f64,
    /// Producing source.
    pub source: ResultSource,
    /// Fallback tag.
    pub fallback: Option<FallbackTag>,
    /// Networks used (internal results only).
    pub used_networks: Vec<UsedNetwork>,
}

impl PositionResult {
    /// A result with lat, lon and accuracy rounded with [`round7`], as the
    /// original rounds at creation.
    pub fn new(
        lat: f64,
        lon: f64,
        accuracy: f64,
        score: f64,
        source: ResultSource,
        fallback: Option<FallbackTag>,
    ) -> Self {
        Self {
            lat: round7(lat),
            lon: round7(lon),
            accuracy: round7(accuracy),
            score,
            source,
            fallback,
            used_networks: Vec::new(),
        }
    }

    /// Accuracy class of this result.
    pub fn accuracy_class(&self) -> AccuracyClass {
        AccuracyClass::from_number(Some(self.accuracy))
    }

    /// The `/v1/geolocate` response body of this result.
    pub fn response(&self) -> GeolocateResponse {
        GeolocateResponse {
            location: LatLng {
                lat: self.lat,
                lng: self.lon,
            },
            accuracy: self.accuracy,
            fallback: self.fallback.map(FallbackTag::name),
        }
    }
}

/// `{"lat": …, "lng": …}`.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct LatLng {
    /// Latitude.
    pub lat: f64,
    /// Longitude.
    pub lng: f64,
}

/// The `/v1/geolocate` success body: `fallback` only when tagged.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct GeolocateResponse {
    /// The position.
    pub location: LatLng,
    /// Accuracy in metres.
    pub accuracy: f64,
    /// `lacf` / `ipf`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fallback: Option<&'static str>,
}

/// Index of the best cluster of §2.4 steps 2–4 and its members (indices into
/// `results`, sorted by accuracy).
fn best_cluster(results: &[PositionResult]) -> Option<Vec<usize>> {
    if results.is_empty() {
        return None;
    }
    if results.len() == 1 {
        return Some(vec![0]);
    }
    let mut order: Vec<usize> = (0..results.len()).collect();
    order.sort_by(|a, b| results[*a].accuracy.total_cmp(&results[*b].accuracy));
    let mut best: Option<(f64, f64, Vec<usize>)> = None;
    for (pos, &i) in order.iter().enumerate() {
        let ri = &results[i];
        let mut cluster = vec![i];
        for &j in &order[pos + 1..] {
            let rj = &results[j];
            let d = distance(ri.lat, ri.lon, rj.lat, rj.lon);
            if d <= (1.5 * ri.accuracy).max(1.5 * rj.accuracy) {
                cluster.push(j);
            }
        }
        let sum: f64 = cluster.iter().map(|k| results[*k].score).sum();
        let max = cluster
            .iter()
            .map(|k| results[*k].score)
            .fold(f64::NEG_INFINITY, f64::max);
        let better = match &best {
            None => true,
            Some((bs, bm, _)) => sum > *bs || (sum == *bs && max > *bm),
        };
        if better {
            best = Some((sum, max, cluster));
        }
    }
    best.map(|(_, _, cluster)| cluster)
}

/// The answer among position results (§2.4): the best-scored cluster of
/// mutually compatible results, and inside it the most accurate result
/// (ties: higher score, then cluster order).
pub fn best_position(results: &[PositionResult]) -> Option<&PositionResult> {
    let cluster = best_cluster(results)?;
    let mut best: Option<&PositionResult> = None;
    for i in cluster {
        let r = &results[i];
        let better = match best {
            None => true,
            Some(b) => r.accuracy < b.accuracy || (r.accuracy == b.accuracy && r.score > b.score),
        };
        if better {
            best = Some(r);
        }
    }
    best
}

/// Whether the results are good enough to skip the external fallback (§2.5):
/// the best cluster has a total score ≥ 1 and a member whose accuracy class is
/// at least as good as `expected`.
pub fn satisfied(results: &[PositionResult], expected: AccuracyClass) -> bool {
    let Some(cluster) = best_cluster(results) else {
        return false;
    };
    let sum: f64 = cluster.iter().map(|i| results[*i].score).sum();
    let class = cluster
        .iter()
        .map(|i| results[*i].accuracy_class())
        .min()
        .unwrap_or(AccuracyClass::None);
    sum >= 1.0 && class <= expected
}

/// One candidate region (§2.7).
#[derive(Clone, Debug, PartialEq)]
pub struct RegionResult {
    /// GENC code.
    pub code: &'static str,
    /// GENC name.
    pub name: &'static str,
    /// The region's radius in metres.
    pub accuracy: f64,
    /// Score.
    pub score: f64,
    /// Producing source.
    pub source: ResultSource,
    /// Fallback tag (`ipf` for GeoIP unless GeoIP-only).
    pub fallback: Option<FallbackTag>,
}

impl RegionResult {
    /// The `/v1/country` response body of this result.
    pub fn response(&self) -> CountryResponse {
        CountryResponse {
            country_code: self.code,
            country_name: self.name,
            fallback: self.fallback.map(FallbackTag::name),
        }
    }
}

/// The `/v1/country` success body.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct CountryResponse {
    /// GENC code.
    pub country_code: &'static str,
    /// GENC name.
    pub country_name: &'static str,
    /// `ipf` when the answer came from GeoIP alongside other data.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fallback: Option<&'static str>,
}

/// The answer among region results (§2.7): results grouped by code; the
/// group with the largest (Σ score, max accuracy) wins (full ties: first
/// seen); inside it the result with the lowest source value, ties → higher
/// score.
pub fn best_region(results: &[RegionResult]) -> Option<&RegionResult> {
    let mut groups: Vec<(&'static str, Vec<&RegionResult>)> = Vec::new();
    for r in results {
        match groups.iter_mut().find(|(c, _)| *c == r.code) {
            Some((_, g)) => g.push(r),
            None => groups.push((r.code, vec![r])),
        }
    }
    let mut best: Option<(f64, f64, &Vec<&RegionResult>)> = None;
    for (_, group) in &groups {
        let sum: f64 = group.iter().map(|r| r.score).sum();
        let acc = group
            .iter()
            .map(|r| r.accuracy)
            .fold(f64::NEG_INFINITY, f64::max);
        let better = match &best {
            None => true,
            Some((bs, ba, _)) => sum > *bs || (sum == *bs && acc > *ba),
        };
        if better {
            best = Some((sum, acc, group));
        }
    }
    let (_, _, group) = best?;
    let mut pick: Option<&RegionResult> = None;
    for r in group {
        let better = match pick {
            None => true,
            Some(p) => r.source < p.source || (r.source == p.source && r.score > p.score),
        };
        if better {
            pick = Some(r);
        }
    }
    pick
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pos(lat: f64, lon: f64, accuracy: f64, score: f64, source: ResultSource) -> PositionResult {
        PositionResult::new(lat, lon, accuracy, score, source, None)
    }

    #[test]
    fn python_rounding() {
        assert_eq!(round7(51.50005), 51.50005);
        assert_eq!(
            round7(0.00000125),
            0.0000013,
            "binary value is above the tie"
        );
        assert_eq!(round7(1.00000005), 1.0, "binary value is below the tie");
        assert_eq!(round7(244.76736789999), 244.7673679);
        assert_eq!(round7(-0.09999999999), -0.1);
        assert_eq!(round3(0.0625), 0.062, "exact tie goes to even");
        assert_eq!(round3(0.1875), 0.188, "exact tie goes to even");
        assert_eq!(round3(205.5634999), 205.563);
        assert!(round7(f64::NAN).is_nan());
        assert_eq!(round7(f64::INFINITY), f64::INFINITY);
    }

    #[test]
    fn best_of_empty_and_single() {
        assert_eq!(best_position(&[]), None);
        let one = [pos(1.0, 1.0, 10.0, 0.1, ResultSource::Internal)];
        assert_eq!(best_position(&one), Some(&one[0]));
    }

    #[test]
    fn wifi_inside_geoip_circle_wins() {
        // T-G5: WiFi 1.65 km from the GeoIP point, inside its 40 km circle.
        let results = [
            pos(51.50005, -0.1, 10.0, 0.1, ResultSource::Internal),
            PositionResult::new(
                51.5142,
                -0.0931,
                40_000.0,
                0.8,
                ResultSource::Geoip,
                Some(FallbackTag::Ipf),
            ),
        ];
        let best = best_position(&results).expect("a result");
        assert_eq!(best.source, ResultSource::Internal);
        assert_eq!(best.fallback, None);
    }

    #[test]
    fn far_wifi_competes_on_score() {
        // T-G6: Paris WiFi (score 0.1) vs London GeoIP (0.8).
        let geoip = PositionResult::new(
            51.5142,
            -0.0931,
            40_000.0,
            0.8,
            ResultSource::Geoip,
            Some(FallbackTag::Ipf),
        );
        let results = [
            pos(48.85, 2.35, 10.0, 0.1, ResultSource::Internal),
            geoip.clone(),
        ];
        assert_eq!(best_position(&results), Some(&results[1]));
        let results = [pos(48.85, 2.35, 10.0, 20.0, ResultSource::Internal), geoip];
        assert_eq!(best_position(&results), Some(&results[0]));
    }

    #[test]
    fn cluster_ties() {
        // Two far-apart results with equal sums and maxima: the more accurate
        // seed wins.
        let results = [
            pos(10.0, 10.0, 100.0, 0.5, ResultSource::Internal),
            pos(20.0, 20.0, 50.0, 0.5, ResultSource::Internal),
        ];
        assert_eq!(best_position(&results), Some(&results[1]));
        // Same accuracy inside one cluster: the higher score.
        let results = [
            pos(10.0, 10.0, 100.0, 0.5, ResultSource::Internal),
            pos(10.0, 10.0001, 100.0, 0.7, ResultSource::Internal),
        ];
        assert_eq!(best_position(&results), Some(&results[1]));
        // T-C8: London 0.66 vs Paris 0.33.
        let results = [
            pos(51.5, -0.1, 1000.0, 0.66, ResultSource::Internal),
            pos(48.85, 2.35, 1000.0, 0.33, ResultSource::Internal),
        ];
        assert_eq!(best_position(&results), Some(&results[0]));
    }

    #[test]
    fn satisfied_examples() {
        // §2.5 examples.
        let results = [
            pos(51.5, -0.1, 100.0, 0.5, ResultSource::Internal),
            pos(51.5, -0.1, 10_000.0, 0.6, ResultSource::Internal),
        ];
        assert!(satisfied(&results, AccuracyClass::High));
        let results = [pos(51.5, -0.1, 2_500.0, 2.0, ResultSource::Internal)];
        assert!(!satisfied(&results, AccuracyClass::High));
        assert!(satisfied(&results, AccuracyClass::Medium));
        let results = [pos(51.5, -0.1, 40_000.0, 0.8, ResultSource::Geoip)];
        assert!(!satisfied(&results, AccuracyClass::High));
        assert!(!satisfied(&[], AccuracyClass::None));
        // T-F6
        let good = [pos(51.5, -0.1, 500.0, 1.0, ResultSource::Internal)];
        assert!(satisfied(&good, AccuracyClass::High));
        let weak = [pos(51.5, -0.1, 500.0, 0.1, ResultSource::Internal)];
        assert!(!satisfied(&weak, AccuracyClass::High));
    }

    #[test]
    fn response_shapes() {
        let r = PositionResult::new(51.50005, -0.1, 10.0, 0.1, ResultSource::Internal, None);
        assert_eq!(
            serde_json::to_string(&r.response()).ok().as_deref(),
            Some(r#"{"location":{"lat":51.50005,"lng":-0.1},"accuracy":10.0}"#)
        );
        let r = PositionResult::new(
            51.5,
            -0.1,
            50_000.0,
            0.2,
            ResultSource::Internal,
            Some(FallbackTag::Lacf),
        );
        assert_eq!(
            serde_json::to_string(&r.response()).ok().as_deref(),
            Some(r#"{"location":{"lat":51.5,"lng":-0.1},"accuracy":50000.0,"fallback":"lacf"}"#)
        );
        let region = RegionResult {
            code: "GB",
            name: "United Kingdom",
            accuracy: 543_000.0,
            score: 0.8,
            source: ResultSource::Geoip,
            fallback: None,
        };
        assert_eq!(
            serde_json::to_string(&region.response()).ok().as_deref(),
            Some(r#"{"country_code":"GB","country_name":"United Kingdom"}"#)
        );
    }

    fn region(
        code: &'static str,
        accuracy: f64,
        score: f64,
        source: ResultSource,
        fallback: Option<FallbackTag>,
    ) -> RegionResult {
        RegionResult {
            code,
            name: code,
            accuracy,
            score,
            source,
            fallback,
        }
    }

    #[test]
    fn best_region_rules() {
        assert_eq!(best_region(&[]), None);
        // GB tie with GG/IM/JE: largest radius wins.
        let results = [
            region("GB", 543_000.0, 0.5, ResultSource::Internal, None),
            region("GG", 6_000.0, 0.5, ResultSource::Internal, None),
            region("IM", 26_000.0, 0.5, ResultSource::Internal, None),
            region("JE", 10_000.0, 0.5, ResultSource::Internal, None),
        ];
        assert_eq!(best_region(&results).map(|r| r.code), Some("GB"));
        // GB from cells + GB from GeoIP → the internal one (no tag).
        let results = [
            region("GB", 543_000.0, 1.0, ResultSource::Internal, None),
            region(
                "GB",
                543_000.0,
                0.8,
                ResultSource::Geoip,
                Some(FallbackTag::Ipf),
            ),
        ];
        let best = best_region(&results).expect("a result");
        assert_eq!((best.source, best.fallback), (ResultSource::Internal, None));
    }
}
