//! Regions (locate §6): GENC region codes and names, the MCC → regions
//! table, region radii, and a reverse geocoder from coordinates to region codes.
//!
//! The MCC table (Appendix A) and the GENC names (Appendix B) are static tables
//! generated from the spec. The original's Natural Earth region files are not
//! available here, so:
//!
//! * **Shapes** come from the `country-boundaries` crate (OpenStreetMap data
//!   bundled in the binary, ODbL — credit "© OpenStreetMap contributors"). Its
//!   ISO 3166 ids are mapped to GENC codes ([`genc_code`]): AX → FI, PS → XW,
//!   SJ → XR, AC/TA → SH, DG → IO, EA/IC → ES; ids that are not GENC regions
//!   (BV, CP, UM, subdivisions such as `US-TX`) are ignored. OSM nests
//!   territories in their countries (a point in Puerto Rico is in both `PR`
//!   and `US`); the *smallest* enclosing GENC region is the precise region of
//!   a point, which is what the spec's disjoint subunit shapes give.
//! * The OSM data has **no Antarctica**: every point south of 61° S is `AQ`
//!   (ISO `AQ` is the land south of 60° S; the line is a degree further south
//!   so that, with the buffer below, open sea at 60° S stays outside, as in
//!   the spec's example (−60, 11) → none).
//! * The OSM shapes follow the **land** (no sea areas). The spec's *buffered*
//!   shapes (grown by 0.5°) are approximated by probing: when the point itself
//!   is in no region, points on rings of 0.05°, 0.1°, 0.2°, 0.3°, 0.4° and 0.5°
//!   (16 directions each, in degree space like the original's buffer) are
//!   looked up, and the nearest ring that hits decides. Islands smaller than
//!   the gap between probes on the outer rings (about 20 km) may be missed.
//! * **Radii** are the spec's where it lists them (§6.1, §4.3); the others were
//!   computed with the spec's formula from Natural Earth 1:10m admin-0 shapes
//!   (`tools/gen_region_radii.py`), so they differ from the original's by a few
//!   percent.
//!
//! Because the boundaries differ from Natural Earth's, answers near borders can
//! differ from the original: (42.83256, 20.34221) is in Montenegro in the OSM
//! data (the original said RS) and (46.2130, 6.1290) is Geneva, CH (the
//! original's coarse shape said FR).
//!
//! Sections (§) refer to docs/reference/locate.md.

mod mcc;
mod names;
mod radii;

use std::sync::OnceLock;

use country_boundaries::{BOUNDARIES_ODBL_360X180, CountryBoundaries, LatLon};

/// A region the service knows: code, GENC name and radius.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RegionInfo {
    /// GENC code, e.g. `GB`.
    pub code: &'static str,
    /// GENC name, e.g. `United Kingdom`, as returned by `/v1/country`.
    pub name: &'static str,
    /// Radius of the region in metres: accuracy of region results and the cap
    /// of GeoIP radii.
    pub radius: f64,
}

/// The bundled boundary data could not be read.
#[derive(Debug, thiserror::Error)]
#[error("cannot read the bundled region boundaries: {0}")]
pub struct RegionDataError(String);

/// The GENC name of a known region code (case-sensitive, upper case).
pub fn region_name(code: &str) -> Option<&'static str> {
    names::REGION_NAMES
        .binary_search_by(|(c, _)| (*c).cmp(code))
        .ok()
        .map(|i| names::REGION_NAMES[i].1)
}

/// Whether `code` is one of the 247 known GENC region codes.
pub fn is_known_region(code: &str) -> bool {
    region_name(code).is_some()
}

/// The radius of a known region in metres (spec `region_max_radius`); `None`
/// for unknown codes, including lower-case ones.
pub fn region_max_radius(code: &str) -> Option<f64> {
    radii::REGION_RADII
        .binary_search_by(|(c, _)| (*c).cmp(code))
        .ok()
        .map(|i| f64::from(radii::REGION_RADII[i].1))
}

/// Code, name and radius of a known region (spec `region_for_code`).
pub fn region_for_code(code: &str) -> Option<RegionInfo> {
    let i = names::REGION_NAMES
        .binary_search_by(|(c, _)| (*c).cmp(code))
        .ok()?;
    let (code, name) = names::REGION_NAMES[i];
    Some(RegionInfo {
        code,
        name,
        radius: region_max_radius(code)?,
    })
}

/// Every known region, sorted by code.
pub fn all_regions() -> impl Iterator<Item = RegionInfo> {
    names::REGION_NAMES
        .iter()
        .filter_map(|(code, _)| region_for_code(code))
}

/// The regions of a mobile country code (§6.3, Appendix A), in code order;
/// empty for an unknown MCC.
pub fn regions_for_mcc(mcc: i64) -> &'static [&'static str] {
    let Ok(mcc) = u16::try_from(mcc) else {
        return &[];
    };
    mcc::MCC_REGIONS
        .binary_search_by_key(&mcc, |(m, _)| *m)
        .map_or(&[], |i| mcc::MCC_REGIONS[i].1)
}

/// Whether `mcc` is in the valid-MCC set of §1.6 (234 values; 553 excluded).
pub fn valid_mcc(mcc: i64) -> bool {
    !regions_for_mcc(mcc).is_empty()
}

/// Maps an id of the boundary data to a GENC region code, or `None` for ids
/// that are not GENC regions.
pub fn genc_code(id: &str) -> Option<&'static str> {
    let mapped = match id {
        "AX" => "FI",
        "PS" => "XW",
        "SJ" => "XR",
        "AC" | "TA" => "SH",
        "DG" => "IO",
        "EA" | "IC" => "ES",
        other => other,
    };
    names::REGION_NAMES
        .binary_search_by(|(c, _)| (*c).cmp(mapped))
        .ok()
        .map(|i| names::REGION_NAMES[i].0)
}

/// Radii in degrees of the probe rings approximating the 0.5° buffered shapes.
const PROBE_RINGS: [f64; 6] = [0.05, 0.1, 0.2, 0.3, 0.4, 0.5];
/// Directions probed on each ring.
const PROBE_DIRECTIONS: usize = 16;
/// Latitude south of which every point is Antarctica (`AQ`).
const ANTARCTIC_LAT: f64 = -61.0;

/// Reverse geocoder over the bundled OpenStreetMap boundaries (§6.2).
///
/// Loading parses about 1 MB of bundled data; use [`RegionGeocoder::shared`]
/// to do it once per process.
pub struct RegionGeocoder {
    boundaries: CountryBoundaries,
}

impl std::fmt::Debug for RegionGeocoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RegionGeocoder")
    }
}

static SHARED: OnceLock<Result<RegionGeocoder, String>> = OnceLock::new();

impl RegionGeocoder {
    /// Parses the bundled boundary data.
    pub fn new() -> Result<Self, RegionDataError> {
        let boundaries = CountryBoundaries::from_reader(BOUNDARIES_ODBL_360X180)
            .map_err(|e| RegionDataError(e.to_string()))?;
        Ok(Self { boundaries })
    }

    /// The process-wide geocoder, loaded on first use.
    pub fn shared() -> Result<&'static RegionGeocoder, RegionDataError> {
        SHARED
            .get_or_init(|| RegionGeocoder::new().map_err(|e| e.0))
            .as_ref()
            .map_err(|e| RegionDataError(e.clone()))
    }

    /// The precise region at a point: the smallest enclosing GENC region of the
    /// boundary data (or `AQ` south of 61° S).
    fn precise(&self, lat: f64, lon: f64) -> Option<&'static str> {
        if !(lat.is_finite() && lon.is_finite()) {
            return None;
        }
        if lat < ANTARCTIC_LAT {
            return Some("AQ");
        }
        let pos = LatLon::new(lat.clamp(-90.0, 90.0), wrap_lon(lon)).ok()?;
        // `ids` is sorted by area ascending: the first GENC id is the smallest.
        self.boundaries.ids(pos).into_iter().find_map(genc_code)
    }

    /// Points of probe ring `radius` (degrees) around (lat, lon).
    fn ring(lat: f64, lon: f64, radius: f64) -> impl Iterator<Item = (f64, f64)> {
        (0..PROBE_DIRECTIONS).map(move |i| {
            let angle = std::f64::consts::TAU * i as f64 / PROBE_DIRECTIONS as f64;
            (lat + radius * angle.cos(), lon + radius * angle.sin())
        })
    }

    /// Region codes of the nearest probe ring that hits anything, with hit
    /// counts, in first-hit order.
    fn nearest_ring_hits(&self, lat: f64, lon: f64) -> Vec<(&'static str, usize)> {
        for radius in PROBE_RINGS {
            let mut hits: Vec<(&'static str, usize)> = Vec::new();
            for (la, lo) in Self::ring(lat, lon, radius) {
                if let Some(code) = self.precise(la, lo) {
                    match hits.iter_mut().find(|(c, _)| *c == code) {
                        Some(entry) => entry.1 += 1,
                        None => hits.push((code, 1)),
                    }
                }
            }
            if !hits.is_empty() {
                return hits;
            }
        }
        Vec::new()
    }

    /// The region of a position (spec `region(lat, lon)`): the precise region
    /// if the point lies in one, else the region hit most often on the nearest
    /// probe ring (ties: the larger region), else none.
    pub fn region(&self, lat: f64, lon: f64) -> Option<&'static str> {
        if let Some(code) = self.precise(lat, lon) {
            return Some(code);
        }
        let hits = self.nearest_ring_hits(lat, lon);
        let mut best: Option<(&'static str, usize, f64)> = None;
        for (code, count) in hits {
            let radius = region_max_radius(code).unwrap_or(0.0);
            let better = match best {
                None => true,
                Some((_, c, r)) => count > c || (count == c && radius > r),
            };
            if better {
                best = Some((code, count, radius));
            }
        }
        best.map(|(code, _, _)| code)
    }

    /// Whether the point lies in some region's buffered shape (spec `any_region`).
    pub fn any_region(&self, lat: f64, lon: f64) -> bool {
        self.precise(lat, lon).is_some() || !self.nearest_ring_hits(lat, lon).is_empty()
    }

    /// Whether the point lies in the buffered shape of region `code` (spec
    /// `in_region`); false for unknown codes.
    pub fn in_region(&self, lat: f64, lon: f64, code: &str) -> bool {
        if !is_known_region(code) {
            return false;
        }
        if self.precise(lat, lon) == Some(code) {
            return true;
        }
        PROBE_RINGS.iter().any(|radius| {
            Self::ring(lat, lon, *radius).any(|(la, lo)| self.precise(la, lo) == Some(code))
        })
    }

    /// Whether the point lies in the buffered shape of any region of `mcc`
    /// (spec `in_region_mcc`).
    pub fn in_region_mcc(&self, lat: f64, lon: f64, mcc: i64) -> bool {
        regions_for_mcc(mcc)
            .iter()
            .any(|code| self.in_region(lat, lon, code))
    }

    /// The region of a cell of `mcc` at this position (spec `region_for_cell`):
    /// the MCC's regions whose buffered shape holds the point; one → it,
    /// several → [`RegionGeocoder::region`], none → none.
    pub fn region_for_cell(&self, lat: f64, lon: f64, mcc: i64) -> Option<&'static str> {
        let candidates: Vec<&'static str> = regions_for_mcc(mcc)
            .iter()
            .copied()
            .filter(|code| self.in_region(lat, lon, code))
            .collect();
        match candidates.as_slice() {
            [] => None,
            [one] => Some(one),
            _ => self.region(lat, lon),
        }
    }
}

/// Longitude wrapped into [-180, 180).
fn wrap_lon(lon: f64) -> f64 {
    if (-180.0..180.0).contains(&lon) {
        lon
    } else {
        (lon + 180.0).rem_euclid(360.0) - 180.0
    }
}

impl crate::geocoder::Geocoder for RegionGeocoder {
    fn region(&self, lat: f64, lon: f64) -> Option<String> {
        RegionGeocoder::region(self, lat, lon).map(str::to_string)
    }

    fn in_region(&self, lat: f64, lon: f64, code: &str) -> bool {
        RegionGeocoder::in_region(self, lat, lon, code)
    }

    fn any_region(&self, lat: f64, lon: f64) -> bool {
        RegionGeocoder::any_region(self, lat, lon)
    }

    fn region_for_cell(&self, lat: f64, lon: f64, mcc: u16) -> Option<String> {
        RegionGeocoder::region_for_cell(self, lat, lon, i64::from(mcc)).map(str::to_string)
    }

    fn valid_mcc(&self, mcc: i64) -> bool {
        valid_mcc(mcc)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn geo() -> &'static RegionGeocoder {
        RegionGeocoder::shared().expect("bundled data")
    }

    #[test]
    fn tables_are_complete_and_sorted() {
        assert_eq!(names::REGION_NAMES.len(), 247);
        assert_eq!(radii::REGION_RADII.len(), 247);
        assert_eq!(mcc::MCC_REGIONS.len(), 234);
        assert!(names::REGION_NAMES.windows(2).all(|w| w[0].0 < w[1].0));
        assert!(radii::REGION_RADII.windows(2).all(|w| w[0].0 < w[1].0));
        assert!(mcc::MCC_REGIONS.windows(2).all(|w| w[0].0 < w[1].0));
        for ((a, _), (b, _)) in names::REGION_NAMES.iter().zip(radii::REGION_RADII) {
            assert_eq!(a, b);
        }
        for (_, regions) in mcc::MCC_REGIONS {
            assert!(regions.iter().all(|r| is_known_region(r)), "{regions:?}");
        }
        assert_eq!(all_regions().count(), 247);
    }

    #[test]
    fn mcc_regions() {
        // T-M2
        assert_eq!(regions_for_mcc(244), &["FI"]);
        assert!(regions_for_mcc(1).is_empty());
        assert_eq!(regions_for_mcc(234), &["GB", "GG", "IM", "JE"]);
        assert_eq!(regions_for_mcc(310), &["BM", "GU", "MP", "PR", "US", "VI"]);
        assert_eq!(regions_for_mcc(425), &["IL", "XW"]);
        assert!(valid_mcc(262) && valid_mcc(995) && valid_mcc(221));
        assert!(!valid_mcc(553) && !valid_mcc(999) && !valid_mcc(0) && !valid_mcc(-262));
        assert!(!valid_mcc(70_000));
    }

    #[test]
    fn names_and_radii() {
        // T-M2
        assert_eq!(region_max_radius("US"), Some(2_971_000.0));
        assert_eq!(region_max_radius("LI"), Some(14_000.0));
        assert_eq!(region_max_radius("VA"), Some(1_000.0));
        assert_eq!(region_max_radius("us"), None);
        assert_eq!(region_max_radius("XX"), None);
        assert_eq!(region_max_radius("GB"), Some(543_000.0));
        assert_eq!(region_max_radius("BT"), Some(190_000.0));
        assert_eq!(region_name("GB"), Some("United Kingdom"));
        assert_eq!(region_name("CI"), Some("Côte d’Ivoire"));
        assert_eq!(region_name("KR"), Some("Korea, South"));
        assert_eq!(region_name("XW"), Some("West Bank"));
        let gi = region_for_code("GI").expect("known");
        assert_eq!((gi.name, gi.radius), ("Gibraltar", 3_000.0));
        assert_eq!(region_for_code("UM"), None);
    }

    #[test]
    fn spec_geocoder_examples() {
        // T-M2, §6.2
        let g = geo();
        assert_eq!(g.region(51.5142, -0.0931), Some("GB"));
        assert_eq!(g.region(60.1, 20.0), Some("FI"), "Åland maps to FI");
        assert_eq!(g.region(31.522, 34.455), Some("XW"), "Palestine maps to XW");
        // The spec (Natural Earth 1:50m) says RS; the OSM boundaries put this
        // point near the RS/ME/XK tripoint on the Montenegrin side, and a few
        // kilometres east is Kosovo.
        assert_eq!(g.region(42.83256, 20.34221), Some("ME"));
        assert_eq!(g.region(42.83256, 20.4), Some("XK"));
        assert_eq!(g.region(49.7089, 6.0741), Some("LU"));
        // Spec: FR (a coarse border); the OSM data puts Geneva in CH. Either
        // way a cell of MCC 228 there is CH.
        assert_eq!(g.region(46.2130, 6.1290), Some("CH"));
        assert_eq!(g.region_for_cell(46.2130, 6.1290, 228), Some("CH"));
        assert_eq!(
            g.region_for_cell(46.2130, 6.1290, 208),
            Some("FR"),
            "FR within 0.5°"
        );
        assert_eq!(g.region(0.0, 0.0), None);
        assert_eq!(g.region(-60.0, 11.0), None);
        assert_eq!(g.region(48.3, -7.0), None);
        assert!(!g.any_region(48.3, -7.0));
    }

    #[test]
    fn nested_territories_and_buffers() {
        let g = geo();
        assert_eq!(g.region(78.2, 15.6), Some("XR"), "Svalbard");
        assert_eq!(g.region(22.3, 114.17), Some("HK"));
        assert_eq!(g.region(18.4, -66.1), Some("PR"));
        assert_eq!(g.region(-21.1, 55.5), Some("RE"));
        assert_eq!(g.region(28.1, -15.4), Some("ES"), "Canary Islands");
        assert_eq!(g.region(-75.0, 0.0), Some("AQ"));
        // Off the coast (the Thames estuary, ~15 km from land): buffered.
        assert!(g.any_region(51.5, 1.6));
        assert_eq!(g.region(51.5, 1.6), Some("GB"));
        assert!(g.in_region(51.5, 1.6, "GB"));
        assert!(!g.in_region(51.5142, -0.0931, "FR"));
        assert!(!g.in_region(51.5142, -0.0931, "gb"));
        assert!(g.in_region_mcc(51.5142, -0.0931, 234));
        assert!(!g.in_region_mcc(51.5142, -0.0931, 262));
        assert_eq!(g.region_for_cell(51.5142, -0.0931, 262), None);
        assert_eq!(g.region(f64::NAN, 0.0), None);
        assert_eq!(g.region(10.0, 360.0), g.region(10.0, 0.0));
    }

    #[test]
    fn geocoder_trait() {
        let g: &dyn crate::geocoder::Geocoder = geo();
        assert_eq!(g.region(51.5142, -0.0931).as_deref(), Some("GB"));
        assert_eq!(
            g.region_for_cell(46.2130, 6.1290, 228).as_deref(),
            Some("CH")
        );
        assert!(g.valid_mcc(234) && !g.valid_mcc(553));
    }
}
