//! The worked examples of locate §8 that concern the pure locate
//! functions: normalisation → station selection → clustering → aggregate
//! position → result combination, with exact expected values.
//!
//! Sections (§) refer to docs/reference/locate.md.

// Test code: a failed unwrap is a failed test with its message, and test
// helpers are not public API.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use chrono::{Duration, NaiveDate, NaiveDateTime};
use ichnaea_core::cell::{AreaKey, CellKey};
use ichnaea_core::locate::geoip::{GeoIpRecord, geoip_location};
use ichnaea_core::locate::position::{StationRows, search_blue, search_internal, search_wifi};
use ichnaea_core::locate::query::{
    BlueQuery, CellQuery, FallbackMembers, Fallbacks, QueryInput, WifiQuery, normalize,
};
use ichnaea_core::locate::region_search::{
    ambiguous_area_keys, region_search_cells, region_search_wifi,
};
use ichnaea_core::locate::result::{
    PositionResult, RegionResult, ResultSource, UsedNetwork, best_position, best_region, satisfied,
};
use ichnaea_core::locate::{AccuracyClass, ApiType, FallbackTag, Query};
use ichnaea_core::station::{BlueStation, CellArea, CellStation, StationFields, WifiStation};
use ichnaea_core::{Mac, Radio};

const P0: (f64, f64) = (51.5, -0.1);

fn now() -> NaiveDateTime {
    NaiveDate::from_ymd_opt(2024, 6, 15)
        .and_then(|d| d.and_hms_opt(12, 0, 0))
        .expect("valid time")
}

fn today() -> NaiveDate {
    now().date()
}

/// A fresh station: created = modified = now, last_seen today, 1 sample,
/// radius 5 (score 0.05).
fn fresh((lat, lon): (f64, f64)) -> StationFields {
    StationFields {
        lat: Some(lat),
        lon: Some(lon),
        radius: Some(5),
        samples: Some(1),
        created: Some(now()),
        modified: Some(now()),
        last_seen: Some(today()),
        ..Default::default()
    }
}

fn mac(i: usize) -> String {
    format!("0123456789{i:02x}")
}

fn wifi_station(i: usize, fields: StationFields) -> WifiStation {
    WifiStation {
        mac: Mac::from_hex(&mac(i)).expect("valid mac"),
        fields,
    }
}

fn blue_station(i: usize, fields: StationFields) -> BlueStation {
    BlueStation {
        mac: Mac::from_hex(&mac(i)).expect("valid mac"),
        fields,
    }
}

fn wifi_entry(i: usize, signal: Option<i64>, age: Option<i64>) -> WifiQuery {
    WifiQuery {
        mac: mac(i),
        signal_strength: signal,
        age,
        ..Default::default()
    }
}

fn wifi_query(entries: Vec<WifiQuery>) -> Query {
    normalize(&QueryInput {
        wifi: entries,
        ..Default::default()
    })
}

/// Query of WiFi entries 0..n without signal or age.
fn plain_wifi_query(n: usize) -> Query {
    wifi_query((0..n).map(|i| wifi_entry(i, None, None)).collect())
}

fn wifi_stations(points: &[(f64, f64)]) -> Vec<WifiStation> {
    points
        .iter()
        .enumerate()
        .map(|(i, p)| wifi_station(i, fresh(*p)))
        .collect()
}

fn one(results: &[PositionResult]) -> &PositionResult {
    assert_eq!(results.len(), 1, "{results:?}");
    &results[0]
}

fn r4(x: f64) -> f64 {
    (x * 1e4).round() / 1e4
}

// ---- WiFi / Bluetooth positioning -------------------------------------------------

#[test]
fn t_n1_single_known_mac_in_query() {
    let stations = wifi_stations(&[P0, (51.5001, -0.1)]);
    let q = plain_wifi_query(1);
    assert!(q.wifi.is_empty());
    assert!(search_wifi(&q, &stations, now()).is_empty());
}

#[test]
fn t_n2_same_mac_three_times() {
    let stations = wifi_stations(&[P0, (51.5001, -0.1)]);
    let q = wifi_query(vec![
        wifi_entry(0, Some(-90), None),
        wifi_entry(0, Some(-82), None),
        wifi_entry(0, Some(-85), None),
    ]);
    assert!(search_wifi(&q, &stations, now()).is_empty());
    let q = wifi_query(vec![
        wifi_entry(0, Some(-90), None),
        wifi_entry(0, Some(-82), None),
        wifi_entry(1, None, None),
        wifi_entry(0, Some(-85), None),
    ]);
    assert_eq!(q.wifi[0].signal_strength, Some(-82));
    assert_eq!(search_wifi(&q, &stations, now()).len(), 1);
}

#[test]
fn t_n3_mac_spellings_match_the_stored_mac() {
    let stations = vec![
        WifiStation {
            mac: Mac::from_hex("0123456789ab").expect("mac"),
            fields: fresh(P0),
        },
        WifiStation {
            mac: Mac::from_hex("0123456789ac").expect("mac"),
            fields: fresh((51.5001, -0.1)),
        },
    ];
    for spelling in ["01:23:45:67:89:AB", "01-23-45-67-89-ab", "0123.4567.89ab"] {
        let q = wifi_query(vec![
            WifiQuery {
                mac: spelling.into(),
                ..Default::default()
            },
            WifiQuery {
                mac: "0123456789ac".into(),
                ..Default::default()
            },
        ]);
        assert_eq!(search_wifi(&q, &stations, now()).len(), 1, "{spelling}");
    }
}

#[test]
fn t_n5_nomap_ssid_is_used() {
    let stations = wifi_stations(&[P0, (51.5001, -0.1)]);
    let mut entries: Vec<WifiQuery> = (0..2).map(|i| wifi_entry(i, None, None)).collect();
    entries[0].ssid = Some("home_nomap".into());
    assert_eq!(search_wifi(&wifi_query(entries), &stations, now()).len(), 1);
}

#[test]
fn t_n6_invalid_signal_is_nulled_and_defaulted() {
    // −130 → null → default −100: identical to sending no signal.
    let stations = wifi_stations(&[P0, (51.5001, -0.1)]);
    let q = wifi_query(vec![
        wifi_entry(0, Some(-130), None),
        wifi_entry(1, Some(-5), None),
    ]);
    assert_eq!(q.wifi[0].signal_strength, None);
    let r = one(&search_wifi(&q, &stations, now())).clone();
    assert_eq!((r.lat, r.lon, r.accuracy), (51.50005, -0.1, 10.0));
}

#[test]
fn t_w1_two_close_wifi() {
    let stations = wifi_stations(&[P0, (51.5001, -0.1)]);
    let results = search_wifi(&plain_wifi_query(2), &stations, now());
    let r = one(&results);
    assert_eq!((r.lat, r.lon, r.accuracy), (51.50005, -0.1, 10.0));
    assert_eq!(r.fallback, None);
    assert_eq!(r4(r.score), 0.1);
    assert_eq!(r.source, ResultSource::Internal);
    assert_eq!(r.used_networks.len(), 2);
    assert!(matches!(
        r.used_networks[0],
        UsedNetwork::Wifi {
            seen_today: true,
            ..
        }
    ));
}

#[test]
fn t_w2_too_far_apart() {
    let stations = wifi_stations(&[P0, (51.505, -0.1)]);
    assert!(search_wifi(&plain_wifi_query(2), &stations, now()).is_empty());
}

#[test]
fn t_w3_just_inside_the_cluster_distance() {
    let stations = wifi_stations(&[P0, (51.5044, -0.1)]);
    let results = search_wifi(&plain_wifi_query(2), &stations, now());
    let r = one(&results);
    assert_eq!((r.lat, r.lon, r.accuracy), (51.5022, -0.1, 244.7673679));
}

#[test]
fn t_w4_outlier_dropped() {
    let stations = wifi_stations(&[P0, (51.5001, -0.1), (52.5, -0.1)]);
    let results = search_wifi(&plain_wifi_query(3), &stations, now());
    let r = one(&results);
    assert_eq!((r.lat, r.lon, r.accuracy), (51.50005, -0.1, 10.0));
}

#[test]
fn t_w5_four_corners() {
    let stations = wifi_stations(&[P0, (51.5027, -0.1), (51.5, -0.0957), (51.5027, -0.0957)]);
    let results = search_wifi(&plain_wifi_query(4), &stations, now());
    let r = one(&results);
    assert_eq!(
        (r.lat, r.lon, r.accuracy),
        (51.50135, -0.09785, 211.7744926)
    );
    assert_eq!(r4(r.score), 0.2);
}

#[test]
fn t_w6_two_clusters() {
    let stations = wifi_stations(&[
        P0,
        (51.5001, -0.1),
        (48.85, 2.35),
        (48.8501, 2.35),
        (48.8502, 2.35),
    ]);
    let results = search_wifi(&plain_wifi_query(5), &stations, now());
    assert_eq!(results.len(), 2);
    assert_eq!(
        results.iter().map(|r| r4(r.score)).collect::<Vec<_>>(),
        vec![0.1, 0.15]
    );
    let best = best_position(&results).expect("a result");
    assert_eq!(
        (best.lat, best.lon, best.accuracy),
        (48.8501, 2.35, 11.1206834)
    );
}

#[test]
fn t_w7_minpack_fidelity() {
    let stations: Vec<WifiStation> = (0..4)
        .map(|i| {
            let f = i as f64;
            wifi_station(i, fresh((P0.0 + f * 0.0001, P0.1 + f * 0.00012)))
        })
        .collect();
    let q = wifi_query(vec![
        wifi_entry(0, Some(-10), Some(0)),
        wifi_entry(1, Some(-40), Some(8000)),
        wifi_entry(2, Some(-70), Some(16000)),
        wifi_entry(3, Some(-100), None),
    ]);
    let results = search_wifi(&q, &stations, now());
    let r = one(&results);
    assert_eq!((r.lat, r.lon), (51.5000009, -0.0999994));
    assert_eq!((r.accuracy * 100.0).round() / 100.0, 39.51);
    // The initial weighted mean is not the answer.
    assert_ne!((r.lat, r.lon), (51.5000072, -0.0999913));
}

#[test]
fn t_w8_high_scores_and_signals() {
    let a = StationFields {
        samples: Some(50),
        ..fresh(P0)
    };
    let b = StationFields {
        samples: Some(100),
        ..fresh((51.5, -0.09999))
    };
    let stations = vec![wifi_station(0, a), wifi_station(1, b)];
    let q = wifi_query(vec![
        wifi_entry(0, Some(-60), None),
        wifi_entry(1, Some(-80), None),
    ]);
    let results = search_wifi(&q, &stations, now());
    let r = one(&results);
    assert_eq!((r.lat, r.lon, r.accuracy), (51.5, -0.099996, 10.0));
    assert_eq!(r4(r.score), 1.2288);
}

#[test]
fn t_w9_signals_weight_the_position() {
    let stations = wifi_stations(&[P0, (51.50001, -0.1), (51.50002, -0.1)]);
    let q = wifi_query(vec![
        wifi_entry(0, Some(-50), None),
        wifi_entry(1, None, None),
        wifi_entry(2, Some(-130), None),
    ]);
    let results = search_wifi(&q, &stations, now());
    let r = one(&results);
    assert_eq!((r.lat, r.lon, r.accuracy), (51.500005, -0.1, 10.0));
}

#[test]
fn t_w10_blocked_station_is_skipped() {
    let mut stations = wifi_stations(&[P0, (51.5001, -0.1)]);
    stations[1].fields.block_last = Some(today() - Duration::days(1));
    assert!(search_wifi(&plain_wifi_query(2), &stations, now()).is_empty());
}

#[test]
fn t_w11_permanently_blocked_station() {
    let mut stations = wifi_stations(&[P0, (51.5001, -0.1)]);
    stations[1].fields.created = Some(now() - Duration::days(120));
    stations[1].fields.block_last = Some(today() - Duration::days(7));
    stations[1].fields.block_count = Some(4);
    assert!(search_wifi(&plain_wifi_query(2), &stations, now()).is_empty());
    stations[1].fields.block_count = Some(3);
    assert_eq!(search_wifi(&plain_wifi_query(2), &stations, now()).len(), 1);
}

fn blue_query(entries: Vec<(usize, Option<i64>)>) -> Query {
    normalize(&QueryInput {
        blue: entries
            .into_iter()
            .map(|(i, signal)| BlueQuery {
                mac: mac(i),
                signal_strength: signal,
                ..Default::default()
            })
            .collect(),
        ..Default::default()
    })
}

#[test]
fn t_w12_bluetooth() {
    let stations = vec![
        blue_station(0, fresh(P0)),
        blue_station(1, fresh((51.5003, -0.1))),
    ];
    let q = blue_query(vec![(0, None), (1, None)]);
    let results = search_blue(&q, &stations, now());
    let r = one(&results);
    assert_eq!((r.lat, r.lon, r.accuracy), (51.50015, -0.1, 16.6886757));
    assert!(matches!(r.used_networks[0], UsedNetwork::Blue { .. }));
    // 111 m apart: beyond the 100 m Bluetooth cluster limit.
    let stations = vec![
        blue_station(0, fresh(P0)),
        blue_station(1, fresh((51.501, -0.1))),
    ];
    assert!(search_blue(&q, &stations, now()).is_empty());
}

#[test]
fn t_w13_bluetooth_signals() {
    let stations = vec![
        blue_station(0, fresh(P0)),
        blue_station(1, fresh((51.50001, -0.1))),
        blue_station(2, fresh((51.50002, -0.1))),
    ];
    let q = blue_query(vec![(0, Some(-50)), (1, Some(-150)), (2, None)]);
    let results = search_blue(&q, &stations, now());
    let r = one(&results);
    assert_eq!((r.lat, r.lon, r.accuracy), (51.5000035, -0.1, 10.0));
}

#[test]
fn t_w14_large_cluster() {
    let points: Vec<(f64, f64)> = (0..30)
        .map(|i| {
            (
                P0.0 + (i % 6) as f64 * 0.00001,
                P0.1 + (i / 6) as f64 * 0.00001,
            )
        })
        .collect();
    let mut stations = wifi_stations(&points);
    // Give the networks different scores so the sample is a real choice.
    for (i, s) in stations.iter_mut().enumerate() {
        s.fields.samples = Some(1 + i as i64);
    }
    let results = search_wifi(&plain_wifi_query(30), &stations, now());
    let r = one(&results);
    let total: f64 = stations
        .iter()
        .map(|s| ichnaea_core::locate::score::station_score(&s.fields, now()))
        .sum();
    assert_eq!(r.score, total);
    assert_eq!(r.used_networks.len(), 20);
    // The sample holds the 20 lowest-scored networks [quirk].
    let used: Vec<Mac> = r
        .used_networks
        .iter()
        .map(|u| match u {
            UsedNetwork::Wifi { mac, .. } => *mac,
            other => panic!("{other:?}"),
        })
        .collect();
    assert!(used.contains(&stations[0].mac));
    assert!(!used.contains(&stations[29].mac));
}

// ---- Cells ----------------------------------------------------------------------

fn lte_entry(cid: i64, signal: Option<i64>, age: Option<i64>) -> CellQuery {
    CellQuery {
        radio: Some(Radio::Lte),
        mcc: Some(234),
        mnc: Some(30),
        lac: Some(1),
        cid: Some(cid),
        signal_strength: signal,
        age,
        ..Default::default()
    }
}

fn cell_key(cid: i64) -> CellKey {
    CellKey {
        radio: Radio::Lte,
        mcc: 234,
        mnc: 30,
        lac: 1,
        cid: cid as u64,
    }
}

fn cell_station(cid: i64, fields: StationFields) -> CellStation {
    CellStation {
        key: cell_key(cid),
        psc: None,
        fields,
    }
}

fn cell_query(entries: Vec<CellQuery>, lacf: bool) -> Query {
    normalize(&QueryInput {
        cell: entries,
        fallbacks: Fallbacks { lacf, ipf: true },
        ..Default::default()
    })
}

fn cells_only(cells: &[CellStation]) -> StationRows<'_> {
    StationRows {
        cells,
        ..Default::default()
    }
}

#[test]
fn t_c1_single_cell() {
    let q = cell_query(vec![lte_entry(1, None, None)], true);
    for (radius, accuracy) in [(3_000, 3_000.0), (500, 1_000.0), (100_000, 50_000.0)] {
        let cells = [cell_station(
            1,
            StationFields {
                radius: Some(radius),
                ..fresh(P0)
            },
        )];
        let results = search_internal(&q, cells_only(&cells), now());
        let r = one(&results);
        assert_eq!((r.lat, r.lon, r.accuracy), (51.5, -0.1, accuracy));
        assert!(matches!(r.used_networks[0], UsedNetwork::Cell { .. }));
    }
}

#[test]
fn t_c2_two_cells_of_one_area() {
    let q = cell_query(
        vec![lte_entry(1, None, None), lte_entry(2, None, None)],
        true,
    );
    let cells = [
        cell_station(
            1,
            StationFields {
                samples: Some(100),
                ..fresh(P0)
            },
        ),
        cell_station(
            2,
            StationFields {
                samples: Some(10),
                ..fresh((52.5, 0.9))
            },
        ),
    ];
    let results = search_internal(&q, cells_only(&cells), now());
    let r = one(&results);
    assert_eq!(
        (r.lat, r.lon, r.accuracy),
        (51.8333333, 0.2333333, 50_000.0)
    );
    assert_eq!(r4(r.score), 0.9966);
    assert_eq!(r.used_networks.len(), 2);
}

#[test]
fn t_c3_cell_signals() {
    let q = cell_query(
        vec![lte_entry(1, Some(-70), None), lte_entry(2, None, None)],
        true,
    );
    let cells = [
        cell_station(1, fresh(P0)),
        cell_station(2, fresh((51.6, -0.1))),
    ];
    let results = search_internal(&q, cells_only(&cells), now());
    let r = one(&results);
    assert_eq!((r.lat, r.lon, r.accuracy), (51.52, -0.1, 8566.9403507));
}

#[test]
fn t_c4_cell_ages() {
    let q = cell_query(
        vec![lte_entry(1, None, Some(8000)), lte_entry(2, None, None)],
        true,
    );
    let cells = [
        cell_station(1, fresh(P0)),
        cell_station(2, fresh((51.6, -0.1))),
    ];
    let results = search_internal(&q, cells_only(&cells), now());
    let r = one(&results);
    assert_eq!((r.lat, r.accuracy), (51.5666667, 7231.8021031));
}

fn area_row(key: AreaKey, (lat, lon): (f64, f64), radius: i64, num_cells: i64) -> CellArea {
    CellArea {
        key,
        lat: Some(lat),
        lon: Some(lon),
        radius: Some(radius),
        region: Some("GB".into()),
        avg_cell_radius: Some(1000),
        num_cells: Some(num_cells),
        last_seen: Some(today()),
        created: Some(now()),
        modified: Some(now()),
    }
}

#[test]
fn t_c5_c6_area_fallback() {
    let area_key = cell_key(1).area();
    for (radius, accuracy) in [(20_000, 50_000.0), (700_000, 500_000.0)] {
        let areas = [area_row(area_key, P0, radius, 4)];
        let rows = StationRows {
            areas: &areas,
            ..Default::default()
        };
        // T-C5: unknown cell, known area.
        let q = cell_query(vec![lte_entry(1, None, None)], true);
        let results = search_internal(&q, rows, now());
        let r = one(&results);
        assert_eq!((r.lat, r.lon, r.accuracy), (51.5, -0.1, accuracy));
        assert_eq!(r.fallback, Some(FallbackTag::Lacf));
        assert!(matches!(r.used_networks[0], UsedNetwork::Area { .. }));
        // T-C6: lacf false → nothing.
        let q = cell_query(vec![lte_entry(1, None, None)], false);
        assert!(search_internal(&q, rows, now()).is_empty());
    }
}

#[test]
fn t_c7_known_cell_hides_areas() {
    let other = CellQuery {
        lac: Some(2),
        ..lte_entry(5, None, None)
    };
    let q = cell_query(vec![lte_entry(1, None, None), other], true);
    let cells = [cell_station(1, fresh(P0))];
    let other_area = AreaKey {
        lac: 2,
        ..cell_key(1).area()
    };
    let areas = [area_row(other_area, (48.85, 2.35), 20_000, 4)];
    let rows = StationRows {
        cells: &cells,
        areas: &areas,
        ..Default::default()
    };
    let results = search_internal(&q, rows, now());
    let r = one(&results);
    assert_eq!((r.lat, r.lon, r.fallback), (51.5, -0.1, None));
}

#[test]
fn t_c8_cells_of_two_areas() {
    let paris = CellQuery {
        lac: Some(2),
        ..lte_entry(5, None, None)
    };
    let q = cell_query(vec![lte_entry(1, None, None), paris], true);
    let london = cell_station(
        1,
        StationFields {
            created: Some(now() - Duration::days(10)),
            samples: Some(100),
            radius: Some(2000),
            ..fresh(P0)
        },
    );
    let paris_row = CellStation {
        key: CellKey {
            lac: 2,
            ..cell_key(5)
        },
        psc: None,
        fields: StationFields {
            created: Some(now() - Duration::days(10)),
            samples: Some(8),
            radius: Some(2000),
            ..fresh((48.85, 2.35))
        },
    };
    let cells = [london, paris_row];
    let results = search_internal(&q, cells_only(&cells), now());
    assert_eq!(results.len(), 2);
    assert_eq!(r4(results[0].score), 6.6439);
    assert_eq!(r4(results[1].score), 3.0);
    let best = best_position(&results).expect("a result");
    assert_eq!((best.lat, best.lon), (51.5, -0.1));
}

#[test]
fn t_n8_gsm_with_large_cell_id() {
    let entry = CellQuery {
        radio: Some(Radio::Gsm),
        mcc: Some(234),
        mnc: Some(30),
        lac: Some(1),
        cid: Some(70_000),
        ..Default::default()
    };
    let q = cell_query(vec![entry], true);
    let wcdma = CellStation {
        key: CellKey {
            radio: Radio::Wcdma,
            ..cell_key(70_000)
        },
        psc: None,
        fields: StationFields {
            radius: Some(2000),
            ..fresh(P0)
        },
    };
    let results = search_internal(&q, cells_only(std::slice::from_ref(&wcdma)), now());
    assert_eq!(one(&results).accuracy, 2000.0);
    assert_eq!(q.area[0].key.radio, Radio::Gsm);
}

#[test]
fn t_n9_lac_zero_finds_nothing() {
    let q = cell_query(
        vec![CellQuery {
            lac: Some(0),
            ..lte_entry(1, None, None)
        }],
        true,
    );
    assert!(!q.has_networks());
    let cells = [cell_station(1, fresh(P0))];
    assert!(search_internal(&q, cells_only(&cells), now()).is_empty());
}

#[test]
fn t_n10_n12_radio_rules() {
    let cdma = CellQuery {
        radio: None,
        ..lte_entry(2, None, None)
    };
    let q = cell_query(vec![cdma, lte_entry(1, None, None)], true);
    let cells = [
        cell_station(1, fresh(P0)),
        cell_station(2, fresh((48.85, 2.35))),
    ];
    let results = search_internal(&q, cells_only(&cells), now());
    assert_eq!((one(&results).lat, one(&results).lon), (51.5, -0.1));
}

// ---- GeoIP and combination ----------------------------------------------------------

fn london_geoip() -> ichnaea_core::locate::geoip::GeoIpLocation {
    geoip_location(&GeoIpRecord {
        country_code: Some("GB".into()),
        latitude: Some(51.5142),
        longitude: Some(-0.0931),
        accuracy_radius_km: Some(100.0),
        city_geoname_id: Some(2_643_743),
        has_subdivision: true,
    })
    .expect("london")
}

/// The position searcher without the external fallback (§2.1).
fn locate(query: &Query, rows: StationRows<'_>) -> Option<PositionResult> {
    let mut results = Vec::new();
    if query.has_networks() {
        results.extend(search_internal(query, rows, now()));
    }
    if query.geoip_allowed() {
        let geoip = london_geoip();
        results.push(geoip.position_result(query.geoip_only(true)));
    }
    best_position(&results).cloned()
}

fn with_ip(mut q: Query) -> Query {
    q.has_ip = true;
    q
}

#[test]
fn t_g1_empty_body_from_london() {
    let q = with_ip(normalize(&QueryInput::default()));
    let r = locate(&q, StationRows::default()).expect("geoip answer");
    assert_eq!(
        (r.lat, r.lon, r.accuracy, r.fallback),
        (51.5142, -0.0931, 40_000.0, None)
    );
}

#[test]
fn t_g3_consider_ip() {
    let q = normalize(&QueryInput {
        fallbacks: Fallbacks::resolve(Some(false), None),
        has_ip: true,
        ..Default::default()
    });
    assert_eq!(locate(&q, StationRows::default()), None);
    let q = normalize(&QueryInput {
        fallbacks: Fallbacks::resolve(Some(false), Some(FallbackMembers::default())),
        has_ip: true,
        ..Default::default()
    });
    assert!(locate(&q, StationRows::default()).is_some());
}

#[test]
fn t_g4_unknown_wifi_and_geoip() {
    let q = with_ip(plain_wifi_query(2));
    let r = locate(&q, StationRows::default()).expect("geoip answer");
    assert_eq!(
        (r.source, r.fallback),
        (ResultSource::Geoip, Some(FallbackTag::Ipf))
    );
    let q = with_ip(plain_wifi_query(1));
    let r = locate(&q, StationRows::default()).expect("geoip answer");
    assert_eq!((r.source, r.fallback), (ResultSource::Geoip, None));
}

#[test]
fn t_g5_wifi_inside_the_geoip_circle() {
    let stations = wifi_stations(&[P0, (51.5001, -0.1)]);
    let q = with_ip(plain_wifi_query(2));
    let rows = StationRows {
        wifi: &stations,
        ..Default::default()
    };
    let r = locate(&q, rows).expect("answer");
    assert_eq!(
        (r.lat, r.lon, r.accuracy, r.fallback),
        (51.50005, -0.1, 10.0, None)
    );
}

#[test]
fn t_g6_far_wifi_competes_on_score() {
    let paris = [(48.85, 2.35), (48.8501, 2.35)];
    let stations = wifi_stations(&paris);
    let q = with_ip(plain_wifi_query(2));
    let rows = StationRows {
        wifi: &stations,
        ..Default::default()
    };
    let r = locate(&q, rows).expect("answer");
    assert_eq!((r.lat, r.fallback), (51.5142, Some(FallbackTag::Ipf)));
    let strong: Vec<WifiStation> = paris
        .iter()
        .enumerate()
        .map(|(i, p)| {
            wifi_station(
                i,
                StationFields {
                    samples: Some(1000),
                    created: Some(now() - Duration::days(10)),
                    ..fresh(*p)
                },
            )
        })
        .collect();
    let rows = StationRows {
        wifi: &strong,
        ..Default::default()
    };
    let r = locate(&q, rows).expect("answer");
    assert_eq!((r.lat, r.lon, r.fallback), (48.85005, 2.35, None));
}

#[test]
fn t_f6_satisfied_gate() {
    let strong: Vec<WifiStation> = [P0, (51.5001, -0.1)]
        .iter()
        .enumerate()
        .map(|(i, p)| {
            wifi_station(
                i,
                StationFields {
                    samples: Some(1000),
                    created: Some(now() - Duration::days(10)),
                    ..fresh(*p)
                },
            )
        })
        .collect();
    let q = plain_wifi_query(2);
    let expected = q.expected_accuracy(ApiType::Locate);
    assert_eq!(expected, AccuracyClass::High);
    let results = search_wifi(&q, &strong, now());
    assert!(satisfied(&results, expected));
    let weak = wifi_stations(&[P0, (51.5001, -0.1)]);
    let results = search_wifi(&q, &weak, now());
    assert!(!satisfied(&results, expected));
}

// ---- Region API ---------------------------------------------------------------

fn region_answer(
    query: &Query,
    wifi: &[WifiStation],
    areas: &[CellArea],
    geoip: bool,
) -> Option<RegionResult> {
    let mut results = region_search_wifi(query, wifi, now());
    results.extend(region_search_cells(query, areas, now()));
    if geoip && query.geoip_allowed() {
        results.extend(london_geoip().region_result(query.geoip_only(true)));
    }
    best_region(&results).cloned()
}

fn cell_of(radio: Radio, mcc: i64) -> CellQuery {
    CellQuery {
        radio: Some(radio),
        mcc: Some(mcc),
        mnc: Some(1),
        lac: Some(1),
        cid: Some(1),
        ..Default::default()
    }
}

#[test]
fn t_r1_london_ip() {
    let q = with_ip(normalize(&QueryInput::default()));
    let r = region_answer(&q, &[], &[], true).expect("GB");
    assert_eq!(
        serde_json::to_string(&r.response()).ok().as_deref(),
        Some(r#"{"country_code":"GB","country_name":"United Kingdom"}"#)
    );
}

#[test]
fn t_r2_worked_examples() {
    let q = cell_query(vec![cell_of(Radio::Gsm, 262)], true);
    let r = region_answer(&q, &[], &[], true).expect("DE");
    assert_eq!((r.code, r.fallback), ("DE", None));

    let q = cell_query(vec![cell_of(Radio::Gsm, 234)], true);
    assert_eq!(
        region_answer(&q, &[], &[], true).map(|r| r.code),
        Some("GB")
    );

    let q = with_ip(cell_query(vec![cell_of(Radio::Gsm, 310)], true));
    let r = region_answer(&q, &[], &[], true).expect("GB");
    assert_eq!((r.code, r.fallback), ("GB", Some(FallbackTag::Ipf)));

    let q = with_ip(cell_query(
        vec![cell_of(Radio::Gsm, 310), cell_of(Radio::Lte, 311)],
        true,
    ));
    assert_eq!(
        region_answer(&q, &[], &[], true).map(|r| r.code),
        Some("US")
    );

    let us_wifi: Vec<WifiStation> = (0..2)
        .map(|i| {
            wifi_station(
                i,
                StationFields {
                    samples: Some(1000),
                    created: Some(now() - Duration::days(90)),
                    region: Some("US".into()),
                    ..fresh((40.0 + i as f64 * 0.0001, -100.0))
                },
            )
        })
        .collect();
    let mut q = with_ip(normalize(&QueryInput {
        wifi: (0..2).map(|i| wifi_entry(i, None, None)).collect(),
        cell: vec![cell_of(Radio::Gsm, 234)],
        ..Default::default()
    }));
    q.fallbacks.lacf = true;
    let results = region_search_wifi(&q, &us_wifi, now());
    assert_eq!(
        (results[0].code, (results[0].score * 100.0).round() / 100.0),
        ("US", 19.93)
    );
    assert_eq!(
        region_answer(&q, &us_wifi, &[], true).map(|r| r.code),
        Some("US")
    );
}

#[test]
fn t_r4_area_only_lookups() {
    let no_cid = |mcc| CellQuery {
        cid: None,
        ..cell_of(Radio::Gsm, mcc)
    };
    let q = cell_query(vec![no_cid(235)], true);
    let results = region_search_cells(&q, &[], now());
    assert_eq!(results.len(), 1);
    assert_eq!((results[0].code, results[0].score), ("GB", 1.0));
    let q = cell_query(vec![cell_of(Radio::Gsm, 235)], true);
    assert_eq!(region_search_cells(&q, &[], now())[0].score, 2.0);

    let q = cell_query(vec![no_cid(234)], true);
    let keys = ambiguous_area_keys(&q);
    let areas = [area_row(keys[0], P0, 10_000, 10)];
    let results = region_search_cells(&q, &areas, now());
    let score = |code| results.iter().find(|r| r.code == code).map(|r| r.score);
    assert_eq!(score("GG"), Some(0.25));
    assert!(score("GB") > Some(0.25));
    assert_eq!(best_region(&results).map(|r| r.code), Some("GB"));
}

#[test]
fn t_r5_unknown_wifi_without_geoip() {
    let q = plain_wifi_query(2);
    assert_eq!(region_answer(&q, &[], &[], false), None);
}
