//! The pure rules of the data pipeline, one test per case of pipeline §9
//! ("Behaviours a test should check") that needs no queue or database:
//! validation, weights, routing, the station updater's transitions, cell-area
//! aggregation and the data-map grid. The cases that need queues, the store or
//! exporters are in `crates/pipeline/tests/pipeline.rs`.
//!
//! Unless a test says otherwise, positions are near (51.5, −0.1) (region GB),
//! Wi-Fi observations have accuracy 10 m and signal −80 dBm (weight 1), and `D`
//! is the station type's distance limit (§3.13). Regions come from the
//! bundled OpenStreetMap boundaries ([`RegionGeocoder`]), not the original's
//! Natural Earth shapes; where that matters the test says what the data gives.
//!
//! The station updater is driven as the pipeline drives it
//! (`crates/pipeline/src/stations.rs`): observations are weighed with
//! `weigh_*`, those weighing 0 are discarded before grouping, and
//! [`update_station`] gets the rest of one station key in queue order.
//!
//! Sections (§) refer to docs/reference/pipeline.md.

// Test code: a failed unwrap is a failed test with its message, and test
// helpers are not public API.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use chrono::{Duration, NaiveDate, NaiveDateTime};
use serde_json::{Value, json};

use ichnaea_core::area::aggregate_area;
use ichnaea_core::cell::{AreaKey, CellKey};
use ichnaea_core::datamap::{DatamapGrid, Quadrant};
use ichnaea_core::geo::destination;
use ichnaea_core::ingest::{Ingested, ingest_report, normalize_mac};
use ichnaea_core::mac::Mac;
use ichnaea_core::observation::{CellObservation, ObsPosition, WifiObservation};
use ichnaea_core::queues::{update_blue, update_cell, update_datamap, update_wifi};
use ichnaea_core::radio::Radio;
use ichnaea_core::region::RegionGeocoder;
use ichnaea_core::source::ReportSource;
use ichnaea_core::station::{CellStation, StationFields};
use ichnaea_core::updater::{
    Action, StationType, StationUpdate, WeightedObs, is_blocked, observation_weight,
    update_station, weigh_blue, weigh_cell, weigh_wifi,
};

const LAT: f64 = 51.5;
const LON: f64 = -0.1;

fn geo() -> &'static RegionGeocoder {
    RegionGeocoder::shared().expect("bundled region data")
}

/// `now` of the task run: whole seconds, as the updater takes it.
fn now() -> NaiveDateTime {
    NaiveDate::from_ymd_opt(2024, 1, 12)
        .unwrap()
        .and_hms_opt(12, 0, 0)
        .unwrap()
}

fn today() -> NaiveDate {
    now().date()
}

fn days_ago(days: i64) -> NaiveDateTime {
    now() - Duration::days(days)
}

fn day_ago(days: i64) -> NaiveDate {
    today() - Duration::days(days)
}

/// `x` rounded to `places` decimals, to compare with the spec's printed values.
fn round_to(x: f64, places: i32) -> f64 {
    let f = 10f64.powi(places);
    (x * f).round() / f
}

/// Positions agree to 1e-7 degrees.
#[track_caller]
fn assert_deg(actual: Option<f64>, expected: f64) {
    let a = actual.expect("a position");
    assert!(
        (a - expected).abs() <= 0.5e-7,
        "{a} is not {expected} to 1e-7 degrees"
    );
}

/// Compares two rows: positions to 1e-7 degrees, everything else exactly.
#[track_caller]
fn assert_row(actual: &StationFields, expected: &StationFields) {
    for (name, a, e) in [
        ("lat", actual.lat, expected.lat),
        ("lon", actual.lon, expected.lon),
    ] {
        match (a, e) {
            (Some(a), Some(e)) => assert!((a - e).abs() <= 0.5e-7, "{name}: {a} is not {e}"),
            (a, e) => assert_eq!(a, e, "{name}"),
        }
    }
    let strip = |f: &StationFields| StationFields {
        lat: None,
        lon: None,
        ..f.clone()
    };
    assert_eq!(strip(actual), strip(expected));
}

fn pos(lat: f64, lon: f64) -> ObsPosition {
    ObsPosition {
        lat,
        lon,
        accuracy: Some(10.0),
        ..ObsPosition::default()
    }
}

/// A Wi-Fi observation of weight 1 (accuracy 10 m, signal −80 dBm).
fn wifi_at(lat: f64, lon: f64) -> WifiObservation {
    WifiObservation {
        pos: pos(lat, lon),
        mac: "0123456789ab".into(),
        age: None,
        channel: None,
        frequency: None,
        signal: Some(-80),
        snr: None,
    }
}

fn as_query(mut o: WifiObservation) -> WifiObservation {
    o.pos.source = Some(ReportSource::Query.code());
    o
}

/// Weighs observations and drops those weighing nothing, as the pipeline does
/// before it groups them (§3.1 step 3).
fn weighed(obs: &[WifiObservation]) -> Vec<WeightedObs> {
    obs.iter()
        .map(weigh_wifi)
        .filter(|w| w.weight > 0.0)
        .collect()
}

fn update_wifi_station(existing: Option<&StationFields>, obs: &[WifiObservation]) -> StationUpdate {
    update_station(
        StationType::Wifi,
        existing.map(|row| (row, None)),
        &weighed(obs),
        now(),
        geo(),
    )
}

/// A point `metres` north (bearing 0) or south (180) of (lat, lon).
fn moved(lat: f64, lon: f64, bearing: f64, metres: f64) -> (f64, f64) {
    destination(lat, lon, bearing, metres).expect("destination converges")
}

/// A positioned GNSS station at (lat, lon) as the updater leaves it after one
/// observation, last changed `days` days ago.
fn positioned(lat: f64, lon: f64, days: i64) -> StationFields {
    StationFields {
        lat: Some(lat),
        lon: Some(lon),
        max_lat: Some(lat),
        min_lat: Some(lat),
        max_lon: Some(lon),
        min_lon: Some(lon),
        radius: Some(0),
        region: Some("GB".into()),
        samples: Some(1),
        source: Some(ReportSource::Gnss),
        weight: Some(1.0),
        created: Some(days_ago(days)),
        modified: Some(days_ago(days)),
        last_seen: Some(day_ago(days)),
        ..StationFields::default()
    }
}

fn ingest(report: Value) -> Ingested {
    let report = report.as_object().expect("a report object");
    ingest_report(report, geo()).expect("the report has network entries")
}

fn position() -> Value {
    json!({"latitude": LAT, "longitude": LON, "accuracy": 10.0})
}

fn gsm(cid: i64) -> Value {
    json!({"radioType": "gsm", "mobileCountryCode": 234, "mobileNetworkCode": 30,
           "locationAreaCode": 1, "cellId": cid})
}

fn cells_of(cells: Value) -> Ingested {
    ingest(json!({"position": position(), "cellTowers": cells}))
}

// ---- Validation, weights, routing ----

/// §9 case 1 (§3.2): Wi-Fi accuracy weights. The updater's drop of a 0-weight
/// observation without counting it is `case_01_*` in the pipeline tests.
#[test]
fn case_01_wifi_accuracy_weights() {
    let w = |accuracy: f64| {
        let mut o = wifi_at(LAT, LON);
        o.pos.accuracy = Some(accuracy);
        weigh_wifi(&o).weight
    };
    assert_eq!(w(40.0), 0.5);
    assert_eq!(round_to(w(200.0), 4), 0.2236, "the cut-off is strict");
    assert_eq!(w(200.1), 0.0);
}

/// §9 case 2 (§3.2): cell signal and accuracy weights at accuracy 10 m.
#[test]
fn case_02_cell_weights() {
    let w = |radio: Radio, signal: Option<i64>, accuracy: f64| {
        let mut p = pos(LAT, LON);
        p.accuracy = Some(accuracy);
        observation_weight(StationType::Cell(radio), &p, None, signal)
    };
    assert_eq!(round_to(w(Radio::Gsm, Some(-51), 10.0), 2), 10.17);
    assert_eq!(round_to(w(Radio::Gsm, Some(-51), 10.0), 4), 10.1683);
    assert_eq!(w(Radio::Wcdma, Some(-25), 10.0), 256.0);
    assert_eq!(round_to(w(Radio::Lte, Some(-43), 10.0), 2), 47.96);
    assert_eq!(round_to(w(Radio::Lte, Some(-43), 10.0), 4), 47.9585);
    assert_eq!(round_to(w(Radio::Lte, Some(-140), 10.0), 2), 0.30);
    assert_eq!(round_to(w(Radio::Lte, Some(-140), 10.0), 4), 0.3011);
    assert_eq!(round_to(w(Radio::Gsm, None, 1000.0), 4), 0.1);
    assert_eq!(w(Radio::Gsm, None, 1000.1), 0.0);
}

/// §9 case 3 (§3.2, §2.10.1): age and speed factors. Deliberate departure
/// (ARCHITECTURE.md): a speed of 400 m/s is out of range (0–300) and REJECTS the
/// report, where the original nulled it and weighed it fully (factor 1.0).
#[test]
fn case_03_age_and_speed_factors() {
    let w = |age: Option<i64>, speed: Option<f64>| {
        let mut o = wifi_at(LAT, LON);
        o.age = age;
        o.pos.speed = speed;
        weigh_wifi(&o).weight
    };
    assert_eq!(w(Some(20_001), None), 0.0);
    assert_eq!(w(Some(-8_000), None), 0.5);
    assert_eq!(w(None, Some(20.0)), 0.5);
    assert_eq!(w(None, Some(50.1)), 0.0);

    let got = ingest(json!({
        "position": {"latitude": LAT, "longitude": LON, "accuracy": 10.0, "speed": 400.0},
        "wifiAccessPoints": [{"macAddress": "0123456789ab", "signalStrength": -80}]}));
    assert!(got.counts.report_drop, "speed 400 m/s rejects the report");
    assert!(got.observations.is_empty());
    assert_eq!(got.position, None, "no data-map grid either");
}

/// §9 case 4 (§2.10.3): asu → signal; swapped asu/signal.
#[test]
fn case_04_gsm_signal_from_asu_and_swapped_asu() {
    let mut derived = gsm(100);
    derived["asu"] = json!(15);
    let mut swapped = gsm(101);
    swapped["asu"] = json!(-70);
    let got = cells_of(json!([derived, swapped]));
    let cells = &got.observations.cell;
    assert_eq!(cells.len(), 2);
    assert_eq!((cells[0].signal, cells[0].asu), (Some(-83), Some(15)));
    assert_eq!((cells[1].signal, cells[1].asu), (Some(-70), None));
    assert_eq!(cells[1].radio, Radio::Gsm.code());
}

/// §9 case 5 (§2.10.3, §2.9.2): a GSM cell id above 65 535 is a WCDMA cell and
/// goes to `update_cell_wcdma`. That it is stored in `cell_wcdma` with radio 2 is
/// `case_05_*` in the pipeline tests.
#[test]
fn case_05_large_gsm_cid_is_wcdma() {
    let got = cells_of(json!([gsm(70_000)]));
    let cell = &got.observations.cell[0];
    assert_eq!(cell.radio, 2);
    let key = cell.key().unwrap();
    assert_eq!(key.radio, Radio::Wcdma);
    assert_eq!(key.cid, 70_000);
    assert_eq!(update_cell(key.radio), "update_cell_wcdma");
}

/// §9 case 6 (§2.10.3): LTE psc 504 is nulled; an entry without lac but with a
/// psc is rejected and counted as a cell drop (the metric is checked by
/// `case_06_*` in the pipeline tests).
#[test]
fn case_06_lte_psc_nulled_and_psc_only_entry_rejected() {
    let lte = json!({"radioType": "lte", "mobileCountryCode": 234, "mobileNetworkCode": 30,
                     "locationAreaCode": 1, "cellId": 5, "primaryScramblingCode": 504});
    let psc_only = json!({"radioType": "wcdma", "mobileCountryCode": 234, "mobileNetworkCode": 30,
                          "cellId": 6, "primaryScramblingCode": 20});
    let got = cells_of(json!([lte, psc_only]));
    assert_eq!(got.observations.cell.len(), 1);
    let kept = &got.observations.cell[0];
    assert_eq!(
        (kept.radio, kept.cid, kept.psc),
        (Radio::Lte.code(), 5, None)
    );
    assert_eq!(got.counts.cell_drop, 1);
    assert!(!got.counts.report_drop);
}

/// §9 case 7 (§2.10.3): cdma, mcc −2 and mcc 553 (Tuvalu) are rejected.
#[test]
fn case_07_cdma_and_unknown_mcc_rejected() {
    let mut cdma = gsm(1);
    cdma["radioType"] = json!("cdma");
    let mut negative = gsm(2);
    negative["mobileCountryCode"] = json!(-2);
    let mut tuvalu = gsm(3);
    tuvalu["mobileCountryCode"] = json!(553);
    for (name, entry) in [("cdma", cdma), ("mcc -2", negative), ("mcc 553", tuvalu)] {
        let got = cells_of(json!([entry, gsm(4)]));
        assert_eq!(got.counts.cell_drop, 1, "{name}");
        assert_eq!(got.observations.cell.len(), 1, "{name}");
        assert_eq!(got.observations.cell[0].cid, 4, "{name}");
    }
}

/// §9 case 8 (§2.10.2, §1.5): the MAC rule and the Wi-Fi shard queue.
#[test]
fn case_08_mac_rule_and_wifi_queue() {
    for bad in ["01:00:5e:90:10:00", "000000000000", "ffffffffffff", "abcd"] {
        assert_eq!(normalize_mac(bad), None, "{bad}");
    }
    let got = ingest(json!({"position": position(), "wifiAccessPoints": [
        {"macAddress": "01:00:5e:90:10:00"}, {"macAddress": "000000000000"},
        {"macAddress": "ffffffffffff"}, {"macAddress": "abcd"},
        {"macAddress": "AA-BB-CC-DD-EE-FF"}]}));
    assert_eq!(got.counts.wifi_drop, 4);
    assert_eq!(got.observations.wifi.len(), 1);
    let mac = &got.observations.wifi[0].mac;
    assert_eq!(mac, "aabbccddeeff");
    assert_eq!(
        update_wifi(Mac::from_hex(mac).unwrap().shard()),
        "update_wifi_c"
    );
}

/// §9 case 9 (§1.5): the shard is the fifth hex digit. The table
/// `blue_shard_8` is checked by `case_09_*` in the pipeline tests.
#[test]
fn case_09_bluetooth_shard_is_the_fifth_hex_digit() {
    let mac = Mac::from_hex("3680873e9b83").unwrap();
    assert_eq!(mac.shard(), 8);
    assert_eq!(update_blue(mac.shard()), "update_blue_8");
    assert_eq!(Mac::from_hex("111101123456").unwrap().shard(), 0);
    assert_eq!(Mac::from_hex("0000f0123456").unwrap().shard(), 15);
}

/// §9 case 10, rule part (§2.10.1): a report at (0, 0) is outside every region:
/// counted as uploaded and dropped, no observation, no grid. The metrics are
/// checked by `case_10_*` in the pipeline tests.
#[test]
fn case_10_report_in_the_open_ocean_is_dropped() {
    let got = ingest(json!({"position": {"latitude": 0.0, "longitude": 0.0},
        "wifiAccessPoints": [{"macAddress": "0123456789ab", "signalStrength": -80}]}));
    assert!(got.counts.report_drop);
    assert!(got.observations.is_empty());
    assert_eq!(got.position, None);
}

/// §9 case 11, rule part (§2.10.1): latitude −90.1 rejects the report.
#[test]
fn case_11_latitude_out_of_range_rejects_the_report() {
    let got = ingest(json!({"position": {"latitude": -90.1, "longitude": LON},
        "wifiAccessPoints": [{"macAddress": "0123456789ab"}]}));
    assert!(got.counts.report_drop);
    assert!(got.observations.is_empty());
}

/// §9 case 12 (§2.9.1): time normalisation relative to the position fix.
#[test]
fn case_12_time_normalisation() {
    let got = ingest(json!({"timestamp": 1_460_700_010_000_i64,
        "position": {"latitude": LAT, "longitude": LON, "age": 2000},
        "wifiAccessPoints": [{"macAddress": "0123456789ab", "age": 1500},
                             {"macAddress": "0123456789ac", "age": -2500}]}));
    let wifi = &got.observations.wifi;
    assert_eq!(wifi.len(), 2);
    assert!(
        wifi.iter()
            .all(|w| w.pos.timestamp == Some(1_460_700_008_000))
    );
    assert_eq!((wifi[0].age, wifi[1].age), (Some(-500), Some(-4500)));
}

/// §9 case 13 (§2.10.5): duplicates inside one report keep the best signal;
/// the station then has one sample.
#[test]
fn case_13_duplicate_wifi_in_one_report() {
    let s = -80;
    let got = ingest(json!({"position": position(), "wifiAccessPoints": [
        {"macAddress": "0123456789ab", "signalStrength": s},
        {"macAddress": "0123456789ab", "signalStrength": s + 2},
        {"macAddress": "01:23:45:67:89:AB", "signalStrength": s - 2}]}));
    assert_eq!(got.counts.wifi_drop, 0);
    assert_eq!(got.observations.wifi.len(), 1);
    assert_eq!(got.observations.wifi[0].signal, Some(s + 2));
    let u = update_wifi_station(None, &got.observations.wifi);
    assert_eq!(u.action, Some(Action::New));
    assert_eq!(u.row.unwrap().samples, Some(1));
}

/// §9 case 14 (§2.10.4): channel ↔ frequency derivation.
#[test]
fn case_14_channel_and_frequency() {
    let got = ingest(json!({"position": position(), "wifiAccessPoints": [
        {"macAddress": "0123456789a1", "channel": 186},
        {"macAddress": "0123456789a2", "frequency": 5180},
        {"macAddress": "0123456789a3", "frequency": 2473}]}));
    let w: Vec<(Option<i64>, Option<i64>)> = got
        .observations
        .wifi
        .iter()
        .map(|w| (w.channel, w.frequency))
        .collect();
    assert_eq!(
        w,
        vec![
            (Some(186), Some(4930)),
            (Some(36), Some(5180)),
            (None, Some(2473))
        ]
    );
}

// ---- Station updater ----

/// §9 case 25 (§3.6–§3.8): a station without position (blocked 50 days ago,
/// free again) takes the position of consistent observations.
#[test]
fn case_25_no_position_station_changes() {
    let stored = StationFields {
        created: Some(days_ago(50)),
        modified: Some(days_ago(50)),
        block_first: Some(day_ago(50)),
        block_last: Some(day_ago(50)),
        block_count: Some(1),
        ..StationFields::default()
    };
    assert!(!is_blocked(&stored, today()), "50/30 rounds to 2 > 1 block");
    let obs = vec![wifi_at(LAT, LON); 3];
    let u = update_wifi_station(Some(&stored), &obs);
    assert_eq!(u.action, Some(Action::Change));
    assert_eq!(u.observations, 3);
    let expected = StationFields {
        lat: Some(LAT),
        lon: Some(LON),
        max_lat: Some(LAT),
        min_lat: Some(LAT),
        max_lon: Some(LON),
        min_lon: Some(LON),
        radius: Some(0),
        region: Some("GB".into()),
        samples: Some(3),
        source: Some(ReportSource::Gnss),
        weight: Some(3.0),
        created: Some(days_ago(50)),
        modified: Some(now()),
        last_seen: Some(today()),
        block_first: Some(day_ago(50)),
        block_last: Some(day_ago(50)),
        block_count: Some(1),
    };
    assert_row(&u.row.unwrap(), &expected);
}

/// §9 case 26 (§3.7): the station of case 25 and observations spread (D+10) m
/// each way: no write at all. That no area is queued is `case_26_*` in the
/// pipeline tests.
#[test]
fn case_26_no_position_station_and_spread_observations() {
    let stored = StationFields {
        created: Some(days_ago(50)),
        modified: Some(days_ago(50)),
        block_first: Some(day_ago(50)),
        block_last: Some(day_ago(50)),
        block_count: Some(1),
        ..StationFields::default()
    };
    let d = StationType::Wifi.max_distance();
    let (n_lat, n_lon) = moved(LAT, LON, 0.0, d + 10.0);
    let (s_lat, s_lon) = moved(LAT, LON, 180.0, d + 10.0);
    let obs = vec![
        wifi_at(LAT, LON),
        wifi_at(n_lat, n_lon),
        wifi_at(s_lat, s_lon),
    ];
    let u = update_wifi_station(Some(&stored), &obs);
    assert_eq!((u.action, u.row), (None, None));
    assert_eq!(u.observations, 3, "still counted as observations");
}

/// §9 case 27 (§3.7, §3.8): query data agreeing with a GNSS station only
/// confirms it; a confirm on a station seen today writes nothing. (The
/// `data.station.confirm` metric is `case_27_*` in the pipeline tests.)
#[test]
fn case_27_query_observation_confirms_a_gnss_station() {
    let stored = positioned(LAT, LON, 10);
    let u = update_wifi_station(Some(&stored), &[as_query(wifi_at(LAT, LON))]);
    assert_eq!(u.action, Some(Action::Confirm));
    let expected = StationFields {
        last_seen: Some(today()),
        ..stored.clone()
    };
    let row = u.row.unwrap();
    assert_eq!(row, expected, "only last_seen moves; modified unchanged");

    let seen_today = expected;
    let u = update_wifi_station(Some(&seen_today), &[as_query(wifi_at(LAT, LON))]);
    assert_eq!(u.action, Some(Action::Confirm));
    assert_eq!(u.row, None, "nothing to write");
}

/// §9 case 28 (§3.5, §3.7): observations each within D of the station but
/// spread more than D apart block it.
#[test]
fn case_28_inconsistent_observations_block_a_station() {
    let stored = positioned(LAT, LON, 50);
    let half = 0.5 * (StationType::Wifi.max_distance() + 10.0);
    let (n_lat, n_lon) = moved(LAT, LON, 0.0, half);
    let (s_lat, s_lon) = moved(LAT, LON, 180.0, half);
    let obs = vec![
        wifi_at(LAT, LON),
        wifi_at(n_lat, n_lon),
        wifi_at(s_lat, s_lon),
    ];
    let u = update_wifi_station(Some(&stored), &obs);
    assert_eq!(u.action, Some(Action::Block));
    let expected = StationFields {
        region: Some("GB".into()),
        created: Some(days_ago(50)),
        modified: Some(now()),
        block_first: Some(today()),
        block_last: Some(today()),
        block_count: Some(1),
        ..StationFields::default()
    };
    assert_eq!(u.row.unwrap(), expected);
}

/// §9 case 29 (§3.6, §3.7): a station (D+10) m from consistent observations is
/// blocked when its position is recent, replaced when older than a year.
#[test]
fn case_29_moved_station_blocked_or_replaced_by_age() {
    let (o_lat, o_lon) = moved(LAT, LON, 0.0, StationType::Wifi.max_distance() + 10.0);
    let obs = vec![wifi_at(o_lat, o_lon); 3];

    let recent = positioned(LAT, LON, 50);
    let u = update_wifi_station(Some(&recent), &obs);
    assert_eq!(u.action, Some(Action::Block));
    let blocked = u.row.unwrap();
    assert_eq!(
        (blocked.lat, blocked.block_count, blocked.block_last),
        (None, Some(1), Some(today()))
    );

    // The threshold (§3.6): modified before today − 365 days is old.
    let u = update_wifi_station(Some(&positioned(LAT, LON, 365)), &obs);
    assert_eq!(u.action, Some(Action::Block), "365 days");
    let u = update_wifi_station(Some(&positioned(LAT, LON, 366)), &obs);
    assert_eq!(u.action, Some(Action::Replace), "366 days");

    let old = positioned(LAT, LON, 367);
    let u = update_wifi_station(Some(&old), &obs);
    assert_eq!(u.action, Some(Action::Replace));
    let expected = StationFields {
        lat: Some(o_lat),
        lon: Some(o_lon),
        max_lat: Some(o_lat),
        min_lat: Some(o_lat),
        max_lon: Some(o_lon),
        min_lon: Some(o_lon),
        radius: Some(0),
        region: Some("GB".into()),
        samples: Some(3),
        source: Some(ReportSource::Gnss),
        weight: Some(3.0),
        created: Some(days_ago(367)),
        modified: Some(now()),
        last_seen: Some(today()),
        ..StationFields::default()
    };
    assert_row(&u.row.unwrap(), &expected);
}

/// §9 case 30 (§3.7): GNSS data replaces a query-based station instead of
/// merging with its samples and weight.
#[test]
fn case_30_gnss_replaces_a_query_station() {
    let stored = StationFields {
        source: Some(ReportSource::Query),
        samples: Some(10),
        weight: Some(15.0),
        ..positioned(LAT, LON, 5)
    };
    let u = update_wifi_station(Some(&stored), &vec![wifi_at(LAT, LON); 3]);
    assert_eq!(u.action, Some(Action::Replace));
    let row = u.row.unwrap();
    assert_eq!(
        (row.samples, row.weight, row.source),
        (Some(3), Some(3.0), Some(ReportSource::Gnss))
    );
    assert_eq!(row.created, Some(days_ago(5)));
}

/// §9 case 31 (§3.3): when GNSS observations exist, query observations of the
/// same station are ignored (even one 2·D away) but still counted.
#[test]
fn case_31_query_observations_ignored_beside_gnss() {
    let stored = positioned(LAT, LON, 5);
    let (q_lat, q_lon) = moved(LAT, LON, 0.0, 2.0 * StationType::Wifi.max_distance());
    let obs = vec![
        wifi_at(LAT, LON),
        wifi_at(LAT, LON),
        as_query(wifi_at(q_lat, q_lon)),
    ];
    let u = update_wifi_station(Some(&stored), &obs);
    assert_eq!(u.action, Some(Action::Change));
    assert_eq!(u.observations, 3, "obs counter +3");
    let row = u.row.unwrap();
    assert_deg(row.lat, LAT);
    assert_eq!(
        (row.samples, row.weight, row.radius),
        (Some(3), Some(3.0), Some(0))
    );
    assert_eq!(row.max_lat, Some(LAT), "the query position is not merged");
}

/// §9 case 32 (§3.8.1): the worked Wi-Fi merge example.
#[test]
fn case_32_wifi_merge_vector() {
    let stored = StationFields {
        lat: Some(LAT),
        lon: Some(LON),
        weight: Some(3.0),
        samples: Some(2),
        region: Some("GB".into()),
        source: Some(ReportSource::Gnss),
        created: Some(days_ago(10)),
        modified: Some(days_ago(10)),
        last_seen: Some(day_ago(10)),
        ..StationFields::default()
    };
    let o =
        |dlon: f64, acc: Option<f64>, age: Option<i64>, speed: Option<f64>, signal: Option<i64>| {
            let mut w = wifi_at(LAT, LON + dlon);
            w.pos.accuracy = acc;
            w.pos.speed = speed;
            w.age = age;
            w.signal = signal;
            w
        };
    let obs = vec![
        o(-0.002, Some(20.0), None, None, Some(-30)),
        o(-0.004, Some(40.0), Some(-8000), None, Some(-60)),
        o(-0.006, Some(10.0), Some(1000), None, Some(-90)),
        o(-0.006, Some(10.0), None, Some(20.0), None),
        o(-0.008, None, Some(40_000), None, None),
        o(-0.008, None, None, Some(50.1), None),
        o(-0.010, Some(200.1), None, None, None),
    ];
    assert_eq!(weighed(&obs).len(), 4, "the last three weigh 0");
    let u = update_wifi_station(Some(&stored), &obs);
    assert_eq!(u.action, Some(Action::Change));
    let row = u.row.unwrap();
    assert_deg(row.lon, LON - 0.0019971);
    assert_deg(row.lat, LAT);
    assert_eq!(row.radius, Some(278));
    assert_eq!(row.samples, Some(6));
    assert_eq!(round_to(row.weight.unwrap(), 5), 16.10707);
}

/// §9 case 33 (§3.8.1): the Bluetooth merge vector.
#[test]
fn case_33_bluetooth_merge_vector() {
    let stored = StationFields {
        weight: Some(3.0),
        samples: Some(2),
        ..positioned(LAT, LON, 10)
    };
    let stored = StationFields {
        max_lat: None,
        min_lat: None,
        max_lon: None,
        min_lon: None,
        ..stored
    };
    let o = |dlon: f64, acc: f64, age: Option<i64>| {
        let mut p = pos(LAT, LON + dlon);
        p.accuracy = Some(acc);
        ichnaea_core::observation::BlueObservation {
            pos: p,
            mac: "3680873e9b83".into(),
            age,
            signal: None,
        }
    };
    let obs: Vec<WeightedObs> = [
        o(-0.0001, 20.0, None),
        o(-0.0002, 40.0, Some(-8000)),
        o(-0.0003, 100.1, None),
    ]
    .iter()
    .map(weigh_blue)
    .filter(|w| w.weight > 0.0)
    .collect();
    assert_eq!(obs.len(), 2, "accuracy 100.1 m weighs 0");
    let u = update_station(StationType::Blue, Some((&stored, None)), &obs, now(), geo());
    assert_eq!(u.action, Some(Action::Change));
    let row = u.row.unwrap();
    assert_deg(row.lon, LON - 0.0000305);
    assert_deg(row.lat, LAT);
    assert_eq!(row.radius, Some(12));
    assert_eq!(row.samples, Some(4));
    assert_eq!(round_to(row.weight.unwrap(), 6), 3.957107);
}

/// §9 case 34 (§3.8.1): the GSM merge vector. (The queued areaid of a *change*
/// is checked by `case_39_*` in the pipeline tests.)
#[test]
fn case_34_gsm_merge_vector() {
    let stored = StationFields {
        weight: Some(2.0),
        samples: Some(1),
        ..positioned(LAT, LON, 10)
    };
    let o = |dlon: f64, acc: f64, signal: Option<i64>| CellObservation {
        pos: ObsPosition {
            accuracy: Some(acc),
            ..pos(LAT, LON + dlon)
        },
        radio: Radio::Gsm.code(),
        mcc: 234,
        mnc: 30,
        lac: 1,
        cid: 1,
        psc: None,
        age: None,
        asu: None,
        signal,
        ta: None,
    };
    let obs: Vec<WeightedObs> = [
        o(-0.002, 20.0, Some(-51)),
        o(-0.004, 1000.0, Some(-111)),
        o(-0.004, 1000.1, None),
    ]
    .iter()
    .filter_map(weigh_cell)
    .filter(|w| w.weight > 0.0)
    .collect();
    assert_eq!(obs.len(), 2, "accuracy 1000.1 m weighs 0");
    let u = update_station(
        StationType::Cell(Radio::Gsm),
        Some((&stored, None)),
        &obs,
        now(),
        geo(),
    );
    assert_eq!(u.action, Some(Action::Change));
    let row = u.row.unwrap();
    assert_deg(row.lon, LON - 0.0015793);
    assert_deg(row.lat, LAT);
    assert_eq!(row.radius, Some(168));
    assert_eq!(row.samples, Some(3));
    assert_eq!(round_to(row.weight.unwrap(), 7), 9.2452954);
}

/// §9 case 35 (§3.8.1): the old weight's influence is capped at 10 000, the
/// stored weight is not.
#[test]
fn case_35_old_weight_capped_in_the_average() {
    let stored = StationFields {
        weight: Some(50_000.0),
        samples: Some(100),
        ..positioned(LAT, LON, 10)
    };
    let u = update_wifi_station(Some(&stored), &[wifi_at(LAT, LON + 0.001)]);
    assert_eq!(u.action, Some(Action::Change));
    let row = u.row.unwrap();
    let lon = row.lon.unwrap();
    assert!(
        (lon - (LON + 0.001 / 10_001.0)).abs() < 1e-12,
        "{lon} is not old + 0.001/10 001"
    );
    assert_eq!((row.weight, row.samples), (Some(50_001.0), Some(101)));
}

/// §9 case 36 (§3.8.1, §3.9): a changed station keeps its region while the new
/// centre lies in the region's buffered shape, else it is looked up again.
/// The stored stations have no weight (as the original's test factory), so
/// the new centre is the observations' point. With the OpenStreetMap shapes
/// and the probe approximation of the 0.5° buffer, the answers are the spec's:
/// (46.2884, 6.82) is in France; (46.2884, 7.45) is in Valais, CH, and no probe
/// within 0.5° reaches France.
#[test]
fn case_36_region_kept_inside_the_buffer_else_looked_up() {
    let station = |lon: f64| StationFields {
        lat: Some(46.2884),
        lon: Some(lon),
        region: Some("FR".into()),
        source: Some(ReportSource::Gnss),
        created: Some(days_ago(10)),
        modified: Some(days_ago(10)),
        last_seen: Some(day_ago(10)),
        ..StationFields::default()
    };
    let near = station(6.77);
    let u = update_wifi_station(Some(&near), &vec![wifi_at(46.2884, 6.82); 5]);
    assert_eq!(u.action, Some(Action::Change));
    let row = u.row.unwrap();
    assert_deg(row.lon, 6.82);
    assert_eq!(row.region.as_deref(), Some("FR"));

    // Not in the spec's case, to tell "kept" from "looked up again": 7.05° E
    // is in Switzerland, but within France's buffered shape, so FR is kept.
    let inside_buffer = station(7.0);
    let u = update_wifi_station(Some(&inside_buffer), &vec![wifi_at(46.2884, 7.05); 5]);
    assert_eq!(u.action, Some(Action::Change));
    assert_eq!(geo().region(46.2884, 7.05), Some("CH"));
    assert_eq!(u.row.unwrap().region.as_deref(), Some("FR"));

    let far = station(7.4);
    let u = update_wifi_station(Some(&far), &vec![wifi_at(46.2884, 7.45); 5]);
    assert_eq!(u.action, Some(Action::Change));
    let row = u.row.unwrap();
    assert_deg(row.lon, 7.45);
    assert_eq!(row.region.as_deref(), Some("CH"));
}

/// §9 case 37 (§3.4): the blocked predicate, with half-even month rounding.
#[test]
fn case_37_blocked_predicate() {
    let row = |created: i64, count: Option<i16>, last: Option<i64>| StationFields {
        created: Some(days_ago(created)),
        block_count: count,
        block_last: last.map(day_ago),
        ..StationFields::default()
    };
    assert!(
        is_blocked(&row(100, Some(1), Some(1)), today()),
        "blocked yesterday"
    );
    assert!(!is_blocked(&row(100, Some(1), Some(2)), today()));
    assert!(is_blocked(&row(44, Some(1), Some(10)), today()));
    assert!(!is_blocked(&row(45, Some(1), None), today()));
    assert!(
        is_blocked(&row(75, Some(2), None), today()),
        "75/30 = 2.5 rounds half-even to 2"
    );
}

/// §9 case 38 (§3.8): a cell's psc is the last one observed on a write, and
/// kept on a confirm.
#[test]
fn case_38_cell_psc_follows_the_last_observation() {
    let kind = StationType::Cell(Radio::Wcdma);
    let stored = positioned(LAT, LON, 10);
    let o = |psc: Option<i64>, source: ReportSource| CellObservation {
        pos: ObsPosition {
            source: Some(source.code()),
            ..pos(LAT, LON)
        },
        radio: Radio::Wcdma.code(),
        mcc: 234,
        mnc: 30,
        lac: 1,
        cid: 1,
        psc,
        age: None,
        asu: None,
        signal: None,
        ta: None,
    };
    let gnss: Vec<WeightedObs> = [
        o(Some(20), ReportSource::Gnss),
        o(Some(30), ReportSource::Gnss),
    ]
    .iter()
    .filter_map(weigh_cell)
    .collect();
    let u = update_station(kind, Some((&stored, Some(10))), &gnss, now(), geo());
    assert_eq!((u.action, u.psc), (Some(Action::Change), Some(30)));

    let query: Vec<WeightedObs> = [
        o(Some(20), ReportSource::Query),
        o(Some(30), ReportSource::Query),
    ]
    .iter()
    .filter_map(weigh_cell)
    .collect();
    let u = update_station(kind, Some((&stored, Some(10))), &query, now(), geo());
    assert_eq!(u.action, Some(Action::Confirm));
    assert!(u.row.is_some(), "last_seen moves");
    assert_eq!(u.psc, Some(10));
}

// ---- Cell areas ----

fn area_key(mcc: u16) -> AreaKey {
    AreaKey {
        radio: Radio::Gsm,
        mcc,
        mnc: 1,
        lac: 1,
    }
}

fn member(mcc: u16, cid: u64, lat: f64, lon: f64, region: Option<&str>) -> CellStation {
    CellStation {
        key: CellKey {
            radio: Radio::Gsm,
            mcc,
            mnc: 1,
            lac: 1,
            cid,
        },
        psc: None,
        fields: StationFields {
            lat: Some(lat),
            lon: Some(lon),
            max_lat: Some(lat),
            min_lat: Some(lat),
            max_lon: Some(lon),
            min_lon: Some(lon),
            radius: Some(1_000),
            region: region.map(str::to_string),
            last_seen: Some(day_ago(3)),
            ..StationFields::default()
        },
    }
}

/// §9 case 41 (§4.1): an area of one cell whose bounding box is its point.
#[test]
fn case_41_area_of_one_cell() {
    let cell = member(234, 1, LAT, LON, Some("GB"));
    let area = aggregate_area(area_key(234), &[cell], None, now(), geo()).unwrap();
    assert_deg(area.lat, LAT);
    assert_deg(area.lon, LON);
    assert_eq!(area.radius, Some(0));
    assert_eq!(area.region.as_deref(), Some("GB"));
    assert_eq!(area.avg_cell_radius, Some(1_000));
    assert_eq!(area.num_cells, Some(1));
    assert_eq!(area.last_seen, Some(day_ago(3)));
    assert_eq!((area.created, area.modified), (Some(now()), Some(now())));
}

/// §9 case 42, rule part (§4.1): no positioned member → no area (the row is
/// deleted; see `case_42_*` in the pipeline tests).
#[test]
fn case_42_area_without_positioned_cells_is_none() {
    let mut blocked = member(234, 1, LAT, LON, Some("GB"));
    blocked.fields = StationFields {
        region: Some("GB".into()),
        block_count: Some(1),
        ..StationFields::default()
    };
    assert_eq!(
        aggregate_area(area_key(234), &[blocked], None, now(), geo()),
        None
    );
}

/// §9 case 43 (§4.1): mean member radius and latest `last_seen`.
#[test]
fn case_43_area_average_radius_and_last_seen() {
    let mut a = member(234, 1, LAT, LON, Some("GB"));
    a.fields.radius = Some(200);
    a.fields.last_seen = Some(today());
    let mut b = member(234, 2, LAT, LON, Some("GB"));
    b.fields.radius = Some(300);
    b.fields.last_seen = Some(day_ago(1));
    let area = aggregate_area(area_key(234), &[a, b], None, now(), geo()).unwrap();
    assert_eq!(area.avg_cell_radius, Some(250));
    assert_eq!(area.num_cells, Some(2));
    assert_eq!(area.last_seen, Some(today()));
}

/// §9 case 44 (§4.1): members without position are ignored; NULL bounding-box
/// values are ignored. The radius is derived here (not given by the spec):
/// the box spans 0.0002° of latitude, the centre is 0.0001° (11 m) from its
/// corners.
#[test]
fn case_44_area_ignores_missing_positions_and_bounds() {
    let a = member(234, 1, LAT + 0.0002, LON, Some("GB"));
    let mut b = member(234, 2, LAT, LON, Some("GB"));
    b.fields.lat = None;
    b.fields.lon = None;
    let mut c = member(234, 3, LAT, LON, Some("GB"));
    c.fields.max_lat = None;
    c.fields.min_lon = None;
    let area = aggregate_area(area_key(234), &[a, b, c], None, now(), geo()).unwrap();
    assert_deg(area.lat, LAT + 0.0001);
    assert_deg(area.lon, LON);
    assert_eq!(area.num_cells, Some(2));
    assert_eq!(area.radius, Some(11));
}

/// §9 case 45 (§4.1): the area's region. (32.2, 34.95) lies in Israel in the
/// OpenStreetMap data too, so the {XW, IL} tie for MCC 425 gives IL; {NULL, NL}
/// with a centre in Germany (51.0, 10.0) gives NULL.
#[test]
fn case_45_area_region_majority_and_ties() {
    let region_of = |mcc: u16, lat: f64, lon: f64, regions: &[Option<&str>]| {
        let cells: Vec<CellStation> = regions
            .iter()
            .enumerate()
            .map(|(i, r)| member(mcc, i as u64 + 1, lat, lon, *r))
            .collect();
        aggregate_area(area_key(mcc), &cells, None, now(), geo())
            .unwrap()
            .region
    };
    assert_eq!(
        region_of(425, 32.2, 34.95, &[Some("XW"), Some("IL")]).as_deref(),
        Some("IL")
    );
    assert_eq!(
        region_of(330, 18.4, -66.1, &[Some("PR"), Some("PR"), Some("US")]).as_deref(),
        Some("PR")
    );
    assert_eq!(region_of(234, LAT, LON, &[None, None]), None);
    assert_eq!(region_of(204, 51.0, 10.0, &[None, Some("NL")]), None);
}

// ---- Data map ----

/// §9 case 46 (§4.2.1, §1.13): grid scaling, encoding and quadrants.
#[test]
fn case_46_datamap_grid_and_quadrants() {
    let g = DatamapGrid::from_position(1.234567, 2.345678);
    assert_eq!(
        g,
        DatamapGrid {
            lat: 1235,
            lon: 2346
        }
    );
    assert_eq!(
        g.to_bytes(),
        [0x00, 0x01, 0x64, 0x63, 0x00, 0x02, 0xc8, 0x4a]
    );
    assert_eq!(update_datamap(g.quadrant()), "update_datamap_sw");
    assert_eq!(
        DatamapGrid::from_position(40.0011, 3.0011).quadrant(),
        Quadrant::Nw
    );
    assert_eq!(
        DatamapGrid::from_position(35.9994, 4.9994).quadrant(),
        Quadrant::Sw
    );
    assert_eq!(
        DatamapGrid::from_position(36.0, 5.0).quadrant(),
        Quadrant::Ne
    );
}
