//! The internal exporter's rules (pipeline §2.9–§2.10): a queued report in
//! the geosubmit-v2 shape becomes validated, de-duplicated observations.
//!
//! Deliberate departure from the original (pipeline §2.10.6, §7.3 item 7):
//! an out-of-range `accuracy` or `speed` rejects the report and an out-of-range
//! `age` rejects the entry, instead of being nulled — a null means "unknown" and
//! weighs fully, so the original let a 400 m/s report outweigh a 40 m/s one.
//!
//! Sections (§) refer to docs/reference/pipeline.md.

use serde_json::{Map, Value};

use crate::geo::{MAX_LAT, MAX_LON};
use crate::geocoder::Geocoder;
use crate::observation::{BlueObservation, CellObservation, ObsPosition, WifiObservation};
use crate::radio::Radio;
use crate::source::ReportSource;

/// The observations of one report.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ReportObservations {
    /// Bluetooth observations, de-duplicated by MAC.
    pub blue: Vec<BlueObservation>,
    /// Wi-Fi observations, de-duplicated by MAC.
    pub wifi: Vec<WifiObservation>,
    /// Cell observations, de-duplicated by cell key (radio as validated).
    pub cell: Vec<CellObservation>,
}

impl ReportObservations {
    /// Whether the report produced no observation at all.
    pub fn is_empty(&self) -> bool {
        self.blue.is_empty() && self.wifi.is_empty() && self.cell.is_empty()
    }
}

/// What one report contributed to the exporter's counters (pipeline §2.10.7).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct IngestCounts {
    /// The report was rejected or produced nothing (`data.report.drop`).
    pub report_drop: bool,
    /// Rejected Bluetooth entries.
    pub blue_drop: u64,
    /// Rejected Wi-Fi entries.
    pub wifi_drop: u64,
    /// Rejected cell entries.
    pub cell_drop: u64,
}

/// Result of ingesting one report; `None` from [`ingest_report`] means the report
/// had no network entries at all and is not counted.
#[derive(Clone, Debug, PartialEq)]
pub struct Ingested {
    /// The observations.
    pub observations: ReportObservations,
    /// Counter contributions.
    pub counts: IngestCounts,
    /// The report position, when it produced an observation (feeds the data map).
    pub position: Option<(f64, f64)>,
}

fn num(v: Option<&Value>) -> Option<f64> {
    v.and_then(Value::as_f64).filter(|f| f.is_finite())
}

fn int(v: Option<&Value>) -> Option<i64> {
    let v = v?;
    v.as_i64().or_else(|| {
        v.as_f64()
            .filter(|f| f.is_finite())
            .map(|f| f.trunc() as i64)
    })
}

fn in_range<T: PartialOrd>(v: Option<T>, lo: T, hi: T) -> Option<T> {
    v.filter(|x| *x >= lo && *x <= hi)
}

/// Outcome of a range check that rejects instead of nulling.
enum Checked<T> {
    Absent,
    Ok(T),
    Reject,
}

fn strict<T: PartialOrd>(v: Option<T>, lo: T, hi: T) -> Checked<T> {
    match v {
        None => Checked::Absent,
        Some(x) if x >= lo && x <= hi => Checked::Ok(x),
        Some(_) => Checked::Reject,
    }
}

/// The MAC rule: strip `:`, `-`, `.`, lower-case; 12 hex digits; not all zeros,
/// not broadcast, not the documentation multicast address.
pub fn normalize_mac(text: &str) -> Option<String> {
    let mac: String = text
        .chars()
        .filter(|c| !matches!(c, ':' | '-' | '.'))
        .collect::<String>()
        .to_ascii_lowercase();
    let ok = mac.len() == 12
        && mac.bytes().all(|b| b.is_ascii_hexdigit())
        && !matches!(
            mac.as_str(),
            "000000000000" | "ffffffffffff" | "01005e901000"
        );
    ok.then_some(mac)
}

fn source_code(v: Option<&Value>) -> Option<i16> {
    match v? {
        Value::String(s) => {
            ReportSource::from_name(&s.to_ascii_lowercase()).map(ReportSource::code)
        }
        other => int(Some(other))
            .and_then(ReportSource::from_code)
            .map(ReportSource::code),
    }
}

/// Validates the position part of a report; `None` rejects the report.
fn report_position(
    report: &Map<String, Value>,
    geocoder: &dyn Geocoder,
) -> Option<(ObsPosition, i64)> {
    let empty = Map::new();
    let p = report
        .get("position")
        .and_then(Value::as_object)
        .unwrap_or(&empty);
    let lat = in_range(num(p.get("latitude")), -MAX_LAT, MAX_LAT)?;
    let lon = in_range(num(p.get("longitude")), -MAX_LON, MAX_LON)?;
    if !geocoder.any_region(lat, lon) {
        return None;
    }
    let accuracy = match strict(num(p.get("accuracy")), 0.0, 1_000_000.0) {
        Checked::Reject => return None,
        Checked::Ok(a) => Some(a),
        Checked::Absent => None,
    };
    let speed = match strict(num(p.get("speed")), 0.0, 300.0) {
        Checked::Reject => return None,
        Checked::Ok(s) => Some(s),
        Checked::Absent => None,
    };
    let gps_age = int(p.get("age")).unwrap_or(0);
    let timestamp = int(report.get("timestamp"))
        .filter(|t| *t != 0)
        .map(|t| t - gps_age);
    Some((
        ObsPosition {
            lat,
            lon,
            accuracy,
            altitude: in_range(num(p.get("altitude")), -10_911.0, 100_000.0),
            altitude_accuracy: in_range(num(p.get("altitudeAccuracy")), 0.0, 110_911.0),
            heading: in_range(num(p.get("heading")), 0.0, 360.0),
            pressure: in_range(num(p.get("pressure")), 100.0, 1_200.0),
            speed,
            source: source_code(p.get("source")),
            timestamp: in_range(timestamp, 1_000_000_000_000, 10_000_000_000_000),
        },
        gps_age,
    ))
}

/// The entry's age relative to the position fix; `Err` when out of range.
fn entry_age(entry: &Map<String, Value>, gps_age: i64) -> Result<Option<i64>, ()> {
    let age = int(entry.get("age"));
    let age = if gps_age != 0 {
        Some(age.unwrap_or(0) - gps_age)
    } else {
        age
    };
    match strict(age, -3_600_000, 3_600_000) {
        Checked::Reject => Err(()),
        Checked::Ok(a) => Ok(Some(a)),
        Checked::Absent => Ok(None),
    }
}

/// Members the transform keeps, per network type (§2.9.1); an entry with
/// none of them maps to an empty object and is dropped without being counted.
const BLUE_FIELDS: &[&str] = &["macAddress", "age", "signalStrength"];
const WIFI_FIELDS: &[&str] = &[
    "macAddress",
    "age",
    "channel",
    "frequency",
    "radioType",
    "signalToNoiseRatio",
    "signalStrength",
];
const CELL_FIELDS: &[&str] = &[
    "radioType",
    "mobileCountryCode",
    "mobileNetworkCode",
    "locationAreaCode",
    "cellId",
    "age",
    "asu",
    "primaryScramblingCode",
    "serving",
    "signalStrength",
    "timingAdvance",
];

fn entries<'a>(
    report: &'a Map<String, Value>,
    member: &str,
    kept: &[&str],
) -> Vec<&'a Map<String, Value>> {
    report
        .get(member)
        .and_then(Value::as_array)
        .map(|list| {
            list.iter()
                .filter_map(Value::as_object)
                .filter(|e| kept.iter().any(|k| e.get(*k).is_some_and(|v| !v.is_null())))
                .collect()
        })
        .unwrap_or_default()
}

fn blue_entry(e: &Map<String, Value>, pos: &ObsPosition, gps_age: i64) -> Option<BlueObservation> {
    let mac = normalize_mac(e.get("macAddress")?.as_str()?)?;
    Some(BlueObservation {
        pos: pos.clone(),
        mac,
        age: entry_age(e, gps_age).ok()?,
        signal: in_range(int(e.get("signalStrength")), -127, 0),
    })
}

/// Channel ↔ frequency derivation of pipeline §2.10.4.
fn channel_frequency(channel: Option<i64>, frequency: Option<i64>) -> (Option<i64>, Option<i64>) {
    match (channel, frequency) {
        (Some(c), None) => {
            let f = match c {
                1..=13 => Some(5 * c + 2407),
                14 => Some(2484),
                15..=185 => Some(5 * c + 5000),
                186..=199 => Some(5 * c + 4000),
                _ => None,
            };
            (Some(c), f)
        }
        (None, Some(f)) => {
            let c = match f {
                2412..=2472 => Some((f - 2407) / 5),
                2484 => Some(14),
                4915..=4995 => Some((f - 4000) / 5),
                5075..=5925 => Some((f - 5000) / 5),
                _ => None,
            };
            (c, Some(f))
        }
        other => other,
    }
}

fn wifi_entry(e: &Map<String, Value>, pos: &ObsPosition, gps_age: i64) -> Option<WifiObservation> {
    let mac = normalize_mac(e.get("macAddress")?.as_str()?)?;
    let (channel, frequency) = channel_frequency(
        in_range(int(e.get("channel")), 1, 199),
        in_range(int(e.get("frequency")), 2400, 5999),
    );
    Some(WifiObservation {
        pos: pos.clone(),
        mac,
        age: entry_age(e, gps_age).ok()?,
        channel,
        frequency,
        signal: in_range(int(e.get("signalStrength")), -100, -10),
        snr: in_range(int(e.get("signalToNoiseRatio")), 1, 100),
    })
}

/// Per-radio ranges of cell fields; nr (5G) extends the original's table with the
/// NR limits (36-bit cell ids, 24-bit TACs, PCI 0–1007, SS-RSRP −156…−31 dBm).
struct CellRanges {
    lac: (i64, i64),
    cid: (i64, i64),
    psc: (i64, i64),
    asu: (i64, i64),
    signal: (i64, i64),
    ta: (i64, i64),
    /// signal = asu × a + b.
    asu_to_signal: (i64, i64),
}

fn cell_ranges(radio: Radio) -> CellRanges {
    let legacy = |asu, signal, asu_to_signal| CellRanges {
        lac: (1, 65_533),
        cid: (1, 268_435_455),
        psc: (0, 511),
        asu,
        signal,
        ta: (0, 63),
        asu_to_signal,
    };
    match radio {
        Radio::Gsm => legacy((0, 31), (-113, -51), (2, -113)),
        Radio::Wcdma => legacy((-5, 91), (-121, -25), (1, -116)),
        Radio::Lte => legacy((0, 97), (-140, -43), (1, -140)),
        Radio::Nr => CellRanges {
            lac: (1, (1 << 24) - 2),
            cid: (1, (1 << 36) - 1),
            psc: (0, 1007),
            asu: (0, 127),
            signal: (-156, -31),
            ta: (0, 3846),
            asu_to_signal: (1, -156),
        },
    }
}

fn cell_radio(v: Option<&Value>) -> Option<Radio> {
    match v? {
        Value::String(s) => match s.as_str() {
            "gsm" => Some(Radio::Gsm),
            "wcdma" | "umts" => Some(Radio::Wcdma),
            "lte" => Some(Radio::Lte),
            "nr" => Some(Radio::Nr),
            _ => None,
        },
        other => int(Some(other)).and_then(Radio::from_code),
    }
}

fn cell_entry(
    e: &Map<String, Value>,
    pos: &ObsPosition,
    gps_age: i64,
    geocoder: &dyn Geocoder,
) -> Option<CellObservation> {
    let mut radio = cell_radio(e.get("radioType"))?;
    let mut asu = int(e.get("asu"));
    let mut signal = int(e.get("signalStrength"));
    if asu.is_some_and(|a| a < -5) && signal.is_none_or(|s| s >= 0) {
        signal = asu;
        asu = None;
    }
    let cid = int(e.get("cellId"));
    if radio == Radio::Gsm && cid.is_some_and(|c| c > 65_535) {
        radio = Radio::Wcdma;
    }
    let r = cell_ranges(radio);
    let mut psc = int(e.get("primaryScramblingCode"));
    if radio == Radio::Lte && psc.is_some_and(|p| p > 503) {
        psc = None;
    }
    let mcc = int(e.get("mobileCountryCode")).filter(|m| geocoder.valid_mcc(*m))?;
    let mnc = in_range(int(e.get("mobileNetworkCode")), 0, 999)?;
    let lac = in_range(int(e.get("locationAreaCode")), r.lac.0, r.lac.1)?;
    let cid = in_range(cid, r.cid.0, r.cid.1)?;
    let age = entry_age(e, gps_age).ok()?;
    let wide_asu = if radio == Radio::Nr {
        (0, 127)
    } else {
        (-5, 97)
    };
    let asu = in_range(in_range(asu, wide_asu.0, wide_asu.1), r.asu.0, r.asu.1);
    let wide_signal = if radio == Radio::Nr {
        (-156, -31)
    } else {
        (-140, -25)
    };
    let mut signal = in_range(
        in_range(signal, wide_signal.0, wide_signal.1),
        r.signal.0,
        r.signal.1,
    );
    let ta = if radio == Radio::Wcdma {
        None
    } else {
        in_range(int(e.get("timingAdvance")), r.ta.0, r.ta.1)
    };
    if signal.is_none()
        && let Some(a) = asu
    {
        signal = Some(a * r.asu_to_signal.0 + r.asu_to_signal.1);
    }
    Some(CellObservation {
        pos: pos.clone(),
        radio: radio.code(),
        mcc,
        mnc,
        lac,
        cid,
        psc: in_range(psc, r.psc.0, r.psc.1),
        age,
        asu,
        signal,
        ta,
    })
}

/// "a is better than b" when any comparison field present in both favours a
/// (pipeline §2.10.5: fields checked independently).
fn better(pairs: &[(Option<i64>, Option<i64>, bool)]) -> bool {
    pairs.iter().any(|(a, b, higher_wins)| match (a, b) {
        (Some(a), Some(b)) => {
            if *higher_wins {
                a > b
            } else {
                a < b
            }
        }
        _ => false,
    })
}

/// Keeps one observation per key, in first-seen order: a later one replaces
/// the kept one unless the kept one is better. Linear (a hash of the keys): a
/// report of 300,000 distinct networks took minutes of a worker with a search
/// per entry.
fn dedupe<T, K: Eq + std::hash::Hash>(
    items: Vec<T>,
    key: impl Fn(&T) -> K,
    is_better: impl Fn(&T, &T) -> bool,
) -> Vec<T> {
    let mut out: Vec<T> = Vec::with_capacity(items.len());
    let mut index: std::collections::HashMap<K, usize> =
        std::collections::HashMap::with_capacity(items.len());
    for item in items {
        match index.entry(key(&item)) {
            std::collections::hash_map::Entry::Occupied(at) => {
                let i = *at.get();
                if !is_better(&out[i], &item) {
                    out[i] = item;
                }
            }
            std::collections::hash_map::Entry::Vacant(slot) => {
                slot.insert(out.len());
                out.push(item);
            }
        }
    }
    out
}

/// Turns one queued report (geosubmit-v2 shape) into observations.
pub fn ingest_report(report: &Map<String, Value>, geocoder: &dyn Geocoder) -> Option<Ingested> {
    let (blue, wifi, cell) = (
        entries(report, "bluetoothBeacons", BLUE_FIELDS),
        entries(report, "wifiAccessPoints", WIFI_FIELDS),
        entries(report, "cellTowers", CELL_FIELDS),
    );
    if blue.is_empty() && wifi.is_empty() && cell.is_empty() {
        return None;
    }
    let Some((pos, gps_age)) = report_position(report, geocoder) else {
        return Some(Ingested {
            observations: ReportObservations::default(),
            counts: IngestCounts {
                report_drop: true,
                ..IngestCounts::default()
            },
            position: None,
        });
    };
    let blue_obs: Vec<_> = blue
        .iter()
        .filter_map(|e| blue_entry(e, &pos, gps_age))
        .collect();
    let wifi_obs: Vec<_> = wifi
        .iter()
        .filter_map(|e| wifi_entry(e, &pos, gps_age))
        .collect();
    let cell_obs: Vec<_> = cell
        .iter()
        .filter_map(|e| cell_entry(e, &pos, gps_age, geocoder))
        .collect();
    let counts = IngestCounts {
        report_drop: false,
        blue_drop: (blue.len() - blue_obs.len()) as u64,
        wifi_drop: (wifi.len() - wifi_obs.len()) as u64,
        cell_drop: (cell.len() - cell_obs.len()) as u64,
    };
    let observations = ReportObservations {
        blue: dedupe(
            blue_obs,
            |o| o.mac.clone(),
            |a, b| {
                better(&[
                    (a.signal, b.signal, true),
                    (a.age.map(i64::abs), b.age.map(i64::abs), false),
                ])
            },
        ),
        wifi: dedupe(
            wifi_obs,
            |o| o.mac.clone(),
            |a, b| {
                better(&[
                    (a.signal, b.signal, true),
                    (a.snr, b.snr, true),
                    (a.age.map(i64::abs), b.age.map(i64::abs), false),
                ])
            },
        ),
        cell: dedupe(
            cell_obs,
            |o| (o.radio, o.mcc, o.mnc, o.lac, o.cid),
            |a, b| {
                better(&[
                    (a.ta, b.ta, false),
                    (a.signal, b.signal, true),
                    (a.asu, b.asu, true),
                    (a.age.map(i64::abs), b.age.map(i64::abs), false),
                ])
            },
        ),
    };
    let empty = observations.is_empty();
    Some(Ingested {
        counts: IngestCounts {
            report_drop: empty,
            ..counts
        },
        position: (!empty).then_some((pos.lat, pos.lon)),
        observations,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// Land is the box 40–60° N, −10–30° E; MCC 262 and 234 are valid.
    pub(crate) struct TestGeocoder;
    impl Geocoder for TestGeocoder {
        fn region(&self, lat: f64, lon: f64) -> Option<String> {
            self.any_region(lat, lon).then(|| "DE".to_string())
        }
        fn in_region(&self, lat: f64, lon: f64, code: &str) -> bool {
            code == "DE" && self.any_region(lat, lon)
        }
        fn any_region(&self, lat: f64, lon: f64) -> bool {
            (40.0..=60.0).contains(&lat) && (-10.0..=30.0).contains(&lon)
        }
        fn region_for_cell(&self, lat: f64, lon: f64, _mcc: u16) -> Option<String> {
            self.region(lat, lon)
        }
        fn valid_mcc(&self, mcc: i64) -> bool {
            matches!(mcc, 234 | 262 | 310)
        }
    }

    fn ingest(report: Value) -> Option<Ingested> {
        ingest_report(report.as_object()?, &TestGeocoder)
    }

    #[test]
    fn time_normalisation() {
        let got = ingest(json!({"timestamp": 1_460_700_010_000i64, "position": {"latitude": 51.0, "longitude": 10.0, "age": 2000},
            "wifiAccessPoints": [{"macAddress": "01:23:45:67:89:ab", "age": 1500}, {"macAddress": "01:23:45:67:89:ac", "age": -2500}]}))
        .unwrap();
        let wifi = &got.observations.wifi;
        assert_eq!(wifi[0].pos.timestamp, Some(1_460_700_008_000));
        assert_eq!((wifi[0].age, wifi[1].age), (Some(-500), Some(-4500)));
        assert_eq!(got.position, Some((51.0, 10.0)));
    }

    #[test]
    fn report_rejections() {
        let wifi = json!([{"macAddress": "0123456789ab"}]);
        for position in [
            json!({"latitude": 0.0, "longitude": 0.0}),
            json!({"latitude": 86.0, "longitude": 10.0}),
            json!(null),
            json!({"latitude": 51.0, "longitude": 10.0, "accuracy": -5.0}),
            json!({"latitude": 51.0, "longitude": 10.0, "speed": 400.0}),
        ] {
            let got = ingest(json!({"position": position, "wifiAccessPoints": wifi})).unwrap();
            assert!(got.counts.report_drop, "{position}");
            assert!(got.observations.is_empty());
        }
        assert_eq!(
            ingest(
                json!({"position": {"latitude": 51.0, "longitude": 10.0}, "wifiAccessPoints": [], "cellTowers": [{}]})
            ),
            None
        );
        let ok = ingest(json!({"position": {"latitude": 51.0, "longitude": 10.0, "altitude": 200000.0, "heading": 400.0, "source": "fused"}, "wifiAccessPoints": wifi})).unwrap();
        let p = &ok.observations.wifi[0].pos;
        assert_eq!((p.altitude, p.heading, p.source), (None, None, Some(6)));
    }

    #[test]
    fn mac_rule() {
        assert_eq!(
            normalize_mac("01:23:45:67:89:AB").as_deref(),
            Some("0123456789ab")
        );
        assert_eq!(
            normalize_mac("0123.4567.89ab").as_deref(),
            Some("0123456789ab")
        );
        for bad in [
            "000000000000",
            "ff:ff:ff:ff:ff:ff",
            "01:00:5e:90:10:00",
            "0123456789",
            "0123456789ag",
        ] {
            assert_eq!(normalize_mac(bad), None, "{bad}");
        }
    }

    #[test]
    fn cell_rules() {
        let pos = json!({"latitude": 51.0, "longitude": 10.0});
        let got = ingest(json!({"position": pos, "cellTowers": [
            {"radioType": "gsm", "mobileCountryCode": 262, "mobileNetworkCode": 1, "locationAreaCode": 5, "cellId": 70000, "asu": -70},
            {"radioType": "lte", "mobileCountryCode": 262, "mobileNetworkCode": 1, "locationAreaCode": 5, "cellId": 7, "primaryScramblingCode": 504, "asu": 30, "timingAdvance": 5},
            {"radioType": "nr", "mobileCountryCode": 262, "mobileNetworkCode": 1, "locationAreaCode": 16_777_000, "cellId": 68_719_476_735i64, "primaryScramblingCode": 1007, "signalStrength": -150},
            {"radioType": "cdma", "mobileCountryCode": 262, "mobileNetworkCode": 1, "locationAreaCode": 5, "cellId": 8},
            {"radioType": "lte", "mobileCountryCode": 553, "mobileNetworkCode": 1, "locationAreaCode": 5, "cellId": 9},
            {"radioType": "lte", "mobileCountryCode": 262, "mobileNetworkCode": 1, "locationAreaCode": 65534, "cellId": 9},
            {"radioType": "wcdma", "primaryScramblingCode": 5}
        ]})).unwrap();
        let cells = &got.observations.cell;
        assert_eq!(cells.len(), 3);
        assert_eq!(got.counts.cell_drop, 4);
        assert_eq!(
            (cells[0].radio, cells[0].signal, cells[0].asu),
            (Radio::Wcdma.code(), Some(-70), None),
            "relabelled, asu/signal swapped"
        );
        assert_eq!(
            (cells[1].psc, cells[1].signal, cells[1].ta),
            (None, Some(-110), Some(5)),
            "psc > 503 nulled, signal from asu"
        );
        assert_eq!(
            (cells[2].radio, cells[2].cid, cells[2].psc, cells[2].signal),
            (Radio::Nr.code(), (1 << 36) - 1, Some(1007), Some(-150))
        );
    }

    #[test]
    fn wifi_fields_and_duplicates() {
        let pos = json!({"latitude": 51.0, "longitude": 10.0});
        let got = ingest(json!({"position": pos, "wifiAccessPoints": [
            {"macAddress": "0123456789ab", "signalStrength": -80, "channel": 6},
            {"macAddress": "01-23-45-67-89-AB", "signalStrength": -78, "frequency": 5180},
            {"macAddress": "0123456789ab", "signalStrength": -82},
            {"macAddress": "0123456789ac", "age": 4_000_000},
        ]}))
        .unwrap();
        assert_eq!(got.observations.wifi.len(), 1);
        assert_eq!(
            got.counts.wifi_drop, 1,
            "age out of range rejects the entry"
        );
        let w = &got.observations.wifi[0];
        assert_eq!(
            (w.signal, w.channel, w.frequency),
            (Some(-78), Some(36), Some(5180))
        );
        assert_eq!(channel_frequency(Some(6), None), (Some(6), Some(2437)));
        assert_eq!(channel_frequency(Some(14), None), (Some(14), Some(2484)));
        assert_eq!(channel_frequency(None, Some(4920)), (Some(184), Some(4920)));
    }

    #[test]
    fn large_reports_deduplicate_in_linear_time() {
        // 100,000 distinct MACs, each sent twice: a search per entry took
        // minutes here (5·10⁹ comparisons); the hash takes well under a second.
        let wifi: Vec<Value> = (0..200_000u64)
            .map(|i| json!({"macAddress": format!("02{:010x}", i % 100_000), "signalStrength": -50 - (i / 100_000) as i64}))
            .collect();
        let got = ingest(
            json!({"position": {"latitude": 51.0, "longitude": 10.0}, "wifiAccessPoints": wifi}),
        )
        .unwrap();
        assert_eq!(got.observations.wifi.len(), 100_000);
        assert_eq!(
            got.observations.wifi[7].mac, "020000000007",
            "first-seen order"
        );
        assert_eq!(
            got.observations.wifi[7].signal,
            Some(-50),
            "the stronger one kept"
        );
    }

    #[test]
    fn wire_format_round_trip() {
        let got = ingest(json!({"timestamp": 1_460_000_000_000i64, "position": {"latitude": 51.0, "longitude": 10.0, "accuracy": 5.0},
            "bluetoothBeacons": [{"macAddress": "0123456789ab", "signalStrength": -60}]})).unwrap();
        let text = serde_json::to_string(&got.observations.blue[0]).unwrap();
        assert_eq!(
            text,
            r#"{"lat":51.0,"lon":10.0,"accuracy":5.0,"timestamp":1460000000000,"mac":"0123456789ab","signal":-60}"#
        );
        let back: BlueObservation = serde_json::from_str(&text).unwrap();
        assert_eq!(back, got.observations.blue[0]);
    }
}
