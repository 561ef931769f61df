//! GeoIP results (locate §4.2) from an already looked-up City record:
//! region code mapping, radius rules and scores. Reading the MaxMind database
//! is the web tier's job.
//!
//! Sections (§) refer to docs/reference/locate.md.

use super::result::{FallbackTag, PositionResult, RegionResult, ResultSource, round7};
use crate::region;

/// Default radius of a city hit.
pub const CITY_RADIUS: f64 = 25_000.0;
/// Default radius of a subdivision hit.
pub const SUB_RADIUS: f64 = 400_000.0;
/// Radius when the region is unknown.
pub const REGION_RADIUS: f64 = 5_000_000.0;

/// The fields of a GeoIP2/GeoLite2 City record that locate reads.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct GeoIpRecord {
    /// `country.iso_code`.
    pub country_code: Option<String>,
    /// `location.latitude`.
    pub latitude: Option<f64>,
    /// `location.longitude`.
    pub longitude: Option<f64>,
    /// `location.accuracy_radius` in kilometres.
    pub accuracy_radius_km: Option<f64>,
    /// `city.geoname_id`.
    pub city_geoname_id: Option<u32>,
    /// Whether `subdivisions` has any entry.
    pub has_subdivision: bool,
}

/// A usable GeoIP answer (§4.2 step 6).
#[derive(Clone, Debug, PartialEq)]
pub struct GeoIpLocation {
    /// Latitude, rounded to 7 places.
    pub latitude: f64,
    /// Longitude, rounded to 7 places.
    pub longitude: f64,
    /// Mapped, upper-case region code (may be unknown to the region tables).
    pub region_code: String,
    /// GENC name of the code, if known.
    pub region_name: Option<&'static str>,
    /// Whether the record had a city.
    pub city: bool,
    /// Accuracy of a position result in metres.
    pub radius: f64,
    /// Radius of the region (accuracy of a region result).
    pub region_radius: f64,
    /// Trust score.
    pub score: f64,
}

/// Largest subdivision radius per country (`SUB_RADII`).
const SUB_RADII: &[(&str, f64)] = &[
    ("AU", 1_200_000.0),
    ("BR", 1_000_000.0),
    ("CA", 1_400_000.0),
    ("CD", 500_000.0),
    ("CL", 500_000.0),
    ("CN", 1_000_000.0),
    ("DZ", 600_000.0),
    ("EG", 500_000.0),
    ("GL", 1_600_000.0),
    ("ID", 550_000.0),
    ("KZ", 550_000.0),
    ("LY", 500_000.0),
    ("ML", 600_000.0),
    ("NE", 600_000.0),
    ("RU", 1_200_000.0),
    ("SA", 650_000.0),
    ("SD", 450_000.0),
    ("SO", 500_000.0),
    ("US", 1_200_000.0),
];

/// Radii of large cities by GeoNames id (`CITY_RADII`).
const CITY_RADII: &[(u32, f64)] = &[
    (98_182, 39_000.0),    // Baghdad
    (108_410, 30_000.0),   // Riyadh
    (112_931, 39_000.0),   // Tehran
    (323_786, 27_000.0),   // Ankara
    (360_630, 40_000.0),   // Cairo
    (524_901, 47_000.0),   // Moscow
    (745_044, 48_000.0),   // Istanbul
    (1_172_451, 36_000.0), // Lahore
    (1_185_241, 46_000.0), // Dhaka
    (1_275_339, 50_000.0), // Mumbai
    (1_277_333, 33_000.0), // Bengaluru
    (1_279_233, 28_000.0), // Ahmedabad
    (1_566_083, 27_000.0), // Ho Chi Minh City
    (1_609_350, 33_000.0), // Bangkok
    (1_642_911, 42_000.0), // Jakarta
    (1_668_341, 40_000.0), // Taipei
    (1_701_668, 47_000.0), // Manila
    (1_792_947, 48_000.0), // Tianjin
    (1_796_236, 68_000.0), // Shanghai
    (1_816_670, 49_000.0), // Beijing
    (1_835_848, 46_000.0), // Seoul
    (1_850_147, 42_000.0), // Tokyo
    (1_871_859, 26_000.0), // Pyongyang
    (2_314_302, 40_000.0), // Kinshasa
    (2_643_743, 40_000.0), // London
    (2_950_159, 27_000.0), // Berlin
    (3_117_735, 26_000.0), // Madrid
    (3_435_910, 50_000.0), // Buenos Aires
    (3_448_439, 46_000.0), // São Paulo
    (3_530_597, 50_000.0), // Mexico City
    (3_688_689, 40_000.0), // Bogotá
    (3_871_336, 32_000.0), // Santiago
    (3_936_456, 40_000.0), // Lima
    (5_128_581, 41_000.0), // New York
];

/// Score of a city-level hit by region code (Appendix C); 0.3 otherwise.
pub fn region_score(code: &str) -> f64 {
    const SCORES: &[(f64, &[&str])] = &[
        (0.9, &["AE", "CR", "HK", "LU", "MT", "PR", "QA", "SG"]),
        (
            0.8,
            &[
                "BE", "CA", "CL", "CZ", "DE", "DK", "EC", "EE", "ES", "GB", "HU", "IS", "JP", "LV",
                "NL", "NO", "PE", "PK", "RU", "SI", "TH", "TW", "US", "UY",
            ],
        ),
        (
            0.7,
            &[
                "AR", "AT", "AU", "BG", "BR", "CH", "EG", "FR", "ID", "IL", "KR", "LT", "MY", "PT",
                "RO", "RS", "SA", "SE", "SK", "TR", "UA", "VN", "ZA",
            ],
        ),
        (
            0.6,
            &["CN", "CO", "GR", "HR", "IN", "IT", "MX", "NZ", "PL", "VE"],
        ),
        (0.5, &["FI", "IE", "PH"]),
    ];
    SCORES
        .iter()
        .find(|(_, codes)| codes.contains(&code))
        .map_or(0.3, |(score, _)| *score)
}

/// The GeoIP country code as a region code: AX → FI, PS → XW, SJ → XR,
/// UM → US, upper-cased.
pub fn map_country_code(code: &str) -> String {
    match code {
        "AX" => "FI",
        "PS" => "XW",
        "SJ" => "XR",
        "UM" => "US",
        other => other,
    }
    .to_ascii_uppercase()
}

/// `(radius, region_radius)` of a hit (§4.2 step 4).
pub fn geoip_radius(
    code: &str,
    accuracy_radius_km: Option<f64>,
    has_subdivision: bool,
    city_geoname_id: Option<u32>,
) -> (f64, f64) {
    let region_radius = region::region_max_radius(code).unwrap_or(REGION_RADIUS);
    let mut radius = region_radius;
    if let Some(km) = accuracy_radius_km {
        radius = (km * 1000.0).min(radius);
    }
    if has_subdivision {
        let sub = SUB_RADII
            .iter()
            .find(|(c, _)| *c == code)
            .map_or(SUB_RADIUS, |(_, r)| *r);
        radius = sub.min(radius);
    }
    if let Some(id) = city_geoname_id {
        let city = CITY_RADII
            .iter()
            .find(|(i, _)| *i == id)
            .map_or(CITY_RADIUS, |(_, r)| *r);
        radius = city.min(radius);
    }
    (radius, region_radius)
}

/// Turns a City record into a location (§4.2 steps 2–6); `None` when the
/// latitude or longitude is missing **or exactly 0** [quirk], or the country
/// code is missing.
pub fn geoip_location(record: &GeoIpRecord) -> Option<GeoIpLocation> {
    let lat = record.latitude.filter(|v| *v != 0.0)?;
    let lon = record.longitude.filter(|v| *v != 0.0)?;
    let code = map_country_code(record.country_code.as_deref()?);
    let (radius, region_radius) = geoip_radius(
        &code,
        record.accuracy_radius_km,
        record.has_subdivision,
        record.city_geoname_id,
    );
    let city = record.city_geoname_id.is_some();
    Some(GeoIpLocation {
        latitude: round7(lat),
        longitude: round7(lon),
        region_name: region::region_name(&code),
        score: if city { region_score(&code) } else { 0.9 },
        region_code: code,
        city,
        radius,
        region_radius,
    })
}

fn tag(geoip_only: bool) -> Option<FallbackTag> {
    if geoip_only {
        None
    } else {
        Some(FallbackTag::Ipf)
    }
}

impl GeoIpLocation {
    /// The GeoIP position result: accuracy = `radius`, tagged `ipf` unless the
    /// query is GeoIP-only (§2.6).
    pub fn position_result(&self, geoip_only: bool) -> PositionResult {
        PositionResult::new(
            self.latitude,
            self.longitude,
            self.radius,
            self.score,
            ResultSource::Geoip,
            tag(geoip_only),
        )
    }

    /// The GeoIP region result (accuracy = `region_radius`), if the code is a
    /// known region.
    pub fn region_result(&self, geoip_only: bool) -> Option<RegionResult> {
        let info = region::region_for_code(&self.region_code)?;
        Some(RegionResult {
            code: info.code,
            name: info.name,
            accuracy: self.region_radius,
            score: self.score,
            source: ResultSource::Geoip,
            fallback: tag(geoip_only),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spec_radius_rules() {
        // T-G7
        assert!(geoip_radius("US", Some(1100.0), false, None).0 > 1_000_000.0);
        assert_eq!(geoip_radius("XK", Some(11.0), false, None).0, 11_000.0);
        assert_eq!(geoip_radius("RU", Some(100.0), true, None).0, 100_000.0);
        assert_eq!(
            geoip_radius("GB", Some(1.0), true, Some(2_643_743)).0,
            1_000.0
        );
        assert_eq!(
            geoip_radius("XX", Some(5100.0), false, None),
            (5_000_000.0, 5_000_000.0)
        );
        assert_eq!(geoip_radius("XX", Some(26.0), false, Some(1)).0, 25_000.0);
    }

    fn record(
        code: &str,
        lat: f64,
        lon: f64,
        km: f64,
        city: Option<u32>,
        subs: bool,
    ) -> GeoIpRecord {
        GeoIpRecord {
            country_code: Some(code.into()),
            latitude: Some(lat),
            longitude: Some(lon),
            accuracy_radius_km: Some(km),
            city_geoname_id: city,
            has_subdivision: subs,
        }
    }

    #[test]
    fn spec_test_database_table() {
        // §4.3 (radius, region_radius, score) for the records of the test db.
        let cases = [
            (
                record("GB", 51.5142, -0.0931, 100.0, Some(2_643_743), true),
                40_000.0,
                543_000.0,
                0.8,
            ),
            (
                record("GB", 51.5142, -0.0931, 3.0, Some(2_643_743), true),
                3_000.0,
                543_000.0,
                0.8,
            ),
            (
                record("BT", 27.5, 90.5, 534.0, None, false),
                190_000.0,
                190_000.0,
                0.9,
            ),
            (
                record("GB", 51.75, -1.25, 100.0, Some(2_655_045), true),
                25_000.0,
                543_000.0,
                0.8,
            ),
            (
                record("US", 47.2513, -122.3149, 22.0, Some(5_803_556), true),
                22_000.0,
                2_971_000.0,
                0.8,
            ),
            (
                record("SE", 58.4167, 15.6167, 76.0, Some(2_694_762), true),
                25_000.0,
                789_000.0,
                0.7,
            ),
            (
                record("CN", 43.88, 125.3228, 100.0, Some(2_038_180), true),
                25_000.0,
                2_905_000.0,
                0.6,
            ),
            (
                record("PH", 13.0, 122.0, 121.0, None, false),
                121_000.0,
                848_000.0,
                0.9,
            ),
            (
                record("US", 37.751, -97.822, 1000.0, None, false),
                1_000_000.0,
                2_971_000.0,
                0.9,
            ),
            (
                record("GI", 36.13333, -5.35, 100.0, None, false),
                3_000.0,
                3_000.0,
                0.9,
            ),
            (
                record("JP", 35.68536, 139.75309, 100.0, None, false),
                100_000.0,
                1_004_000.0,
                0.9,
            ),
            (
                record("KR", 37.0, 127.5, 100.0, None, false),
                100_000.0,
                310_000.0,
                0.9,
            ),
        ];
        for (rec, radius, region_radius, score) in cases {
            let loc = geoip_location(&rec).expect("a location");
            assert_eq!(
                (loc.radius, loc.region_radius, loc.score),
                (radius, region_radius, score),
                "{rec:?}"
            );
        }
        let bt = geoip_location(&record("BT", 27.5, 90.5, 534.0, None, false)).expect("bt");
        assert_eq!(bt.region_name, Some("Bhutan"));
        assert!(!bt.city);
    }

    #[test]
    fn missing_or_zero_coordinates() {
        let mut rec = record("GB", 51.5142, -0.0931, 100.0, None, false);
        rec.latitude = Some(0.0);
        assert_eq!(geoip_location(&rec), None);
        rec.latitude = None;
        assert_eq!(geoip_location(&rec), None);
        let mut rec = record("GB", 51.5142, -0.0931, 100.0, None, false);
        rec.country_code = None;
        assert_eq!(geoip_location(&rec), None);
        let rec = record("AX", 60.1, 20.0, 10.0, None, false);
        assert_eq!(
            geoip_location(&rec).map(|l| l.region_code),
            Some("FI".into())
        );
        assert_eq!(map_country_code("PS"), "XW");
        assert_eq!(map_country_code("SJ"), "XR");
        assert_eq!(map_country_code("UM"), "US");
        assert_eq!(map_country_code("gb"), "GB");
    }

    #[test]
    fn results_and_tags() {
        // T-G1: London, GeoIP only → no fallback tag; accuracy 40 km.
        let loc = geoip_location(&record(
            "GB",
            51.5142,
            -0.0931,
            100.0,
            Some(2_643_743),
            true,
        ))
        .expect("london");
        let pos = loc.position_result(true);
        assert_eq!(
            (pos.lat, pos.lon, pos.accuracy, pos.fallback),
            (51.5142, -0.0931, 40_000.0, None)
        );
        assert_eq!(loc.position_result(false).fallback, Some(FallbackTag::Ipf));
        // T-R1
        let region = loc.region_result(true).expect("GB known");
        assert_eq!(
            (region.code, region.name, region.accuracy, region.fallback),
            ("GB", "United Kingdom", 543_000.0, None)
        );
        let unknown = geoip_location(&record("XX", 1.0, 1.0, 10.0, None, false)).expect("xx");
        assert_eq!(unknown.region_result(false), None);
        assert_eq!(unknown.region_name, None);
        assert_eq!(region_score("LU"), 0.9);
        assert_eq!(region_score("FI"), 0.5);
        assert_eq!(region_score("XX"), 0.3);
    }
}
