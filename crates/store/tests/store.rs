//! Store tests: every table round-trips through SQLite always, and through
//! PostgreSQL when `ICHNAEA_TEST_POSTGRES_URL` is set (each test in its own schema).

// Test code: a failed unwrap is a failed test with its message, and test
// helpers are not public API.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::sync::Arc;

use chrono::{NaiveDate, NaiveDateTime};
use ichnaea_core::cell::{AreaKey, CellKey};
use ichnaea_core::datamap::{DatamapGrid, Quadrant};
use ichnaea_core::export::{ExportConfig, ExportSchema};
use ichnaea_core::mac::Mac;
use ichnaea_core::radio::Radio;
use ichnaea_core::source::ReportSource;
use ichnaea_core::station::{BlueStation, CellArea, CellStation, StationFields, WifiStation};
use ichnaea_core::stats::{RegionStat, StatKey, StatRow};
use ichnaea_core::{ApiKey, ExportConfigPatch};
use ichnaea_store::{
    BoundingBox, DatamapRow, StationKey, StationTable, StationWrites, Store, StoreError,
    StoredStation,
};
use ichnaea_testkit::store::{on_postgres, on_sqlite};

ichnaea_testkit::backend_tests!(
    sqlite => on_sqlite, postgres => on_postgres;
    migrations_are_idempotent_and_seed_internal_export,
    station_estimates_are_written_and_read_with_the_rows,
    admin_changes_raise_the_generation,
    api_keys_round_trip,
    export_configs_round_trip,
    wifi_and_blue_stations_round_trip_by_shard,
    cells_round_trip_for_every_radio,
    cell_areas_round_trip,
    stats_round_trip,
    region_stats_are_replaced,
    datamap_grids_are_touched,
    datamap_pages_follow_grid_order,
    applied_batches_detect_replays,
    station_batches_apply_once_with_their_counters,
    cells_in_area_scan_the_prefix,
    stat_counters_fold_into_running_totals,
    stat_counters_fold_concurrently_loses_nothing,
    region_stats_count_areas_and_stations,
    station_pages_follow_key_order_and_area,
);

fn day(y: i32, m: u32, d: u32) -> NaiveDate {
    NaiveDate::from_ymd_opt(y, m, d).unwrap()
}

fn at(y: i32, m: u32, d: u32, hh: u32, mm: u32, ss: u32) -> NaiveDateTime {
    day(y, m, d).and_hms_opt(hh, mm, ss).unwrap()
}

/// Every column set, with edge values.
fn full_fields() -> StationFields {
    StationFields {
        lat: Some(85.051),
        lon: Some(-179.999999),
        max_lat: Some(85.051),
        min_lat: Some(-85.051),
        max_lon: Some(180.0),
        min_lon: Some(-180.0),
        radius: Some(20_000_000),
        region: Some("XK".into()),
        samples: Some(u32::MAX as i64),
        source: Some(ReportSource::Query),
        weight: Some(1_000_000_000.0),
        created: Some(at(2024, 1, 12, 23, 59, 59)),
        modified: Some(at(2024, 2, 29, 0, 0, 0)),
        last_seen: Some(day(2024, 2, 29)),
        block_first: Some(day(2000, 1, 1)),
        block_last: Some(day(2099, 12, 31)),
        block_count: Some(255),
    }
}

async fn migrations_are_idempotent_and_seed_internal_export(store: Store) {
    assert_eq!(store.schema_version().await.unwrap(), 5);
    let again = store.migrate().await.unwrap();
    assert!(again.applied.is_empty());
    assert_eq!(again.version, 5);
    let configs = store.export_configs().await.unwrap();
    assert_eq!(configs, vec![ExportConfig::default_internal()]);
    store.ping().await.unwrap();
    assert_eq!(store.row_count("wifi_shard_f").await.unwrap(), Some(0));
    assert_eq!(store.row_count("no_such_table; --").await.unwrap(), None);
}

/// Every change to `api_key` or `export_config` raises the admin generation
/// (running servers follow it); reads and failed changes do not.
async fn admin_changes_raise_the_generation(store: Store) {
    let start = store.admin_generation().await.unwrap();
    let mut key = ApiKey::new("gen-key");
    store.insert_api_key(&key).await.unwrap();
    assert_eq!(store.admin_generation().await.unwrap(), start + 1);
    key.maxreq = Some(5);
    assert!(store.update_api_key(&key).await.unwrap());
    assert!(
        !store
            .update_api_key(&ApiKey::new("no-such-key"))
            .await
            .unwrap()
    );
    store.api_key("gen-key").await.unwrap();
    assert_eq!(store.admin_generation().await.unwrap(), start + 2);
    assert!(store.delete_api_key("gen-key").await.unwrap());
    let config = ExportConfig::new("gen", ichnaea_core::ExportSchema::Dummy);
    store.insert_export_config(&config).await.unwrap();
    assert!(store.update_export_config(&config).await.unwrap());
    assert!(store.delete_export_config("gen").await.unwrap());
    assert_eq!(store.admin_generation().await.unwrap(), start + 6);
}

async fn api_keys_round_trip(store: Store) {
    let defaults = ApiKey::new("test");
    store.insert_api_key(&defaults).await.unwrap();
    assert_eq!(store.api_key("test").await.unwrap(), Some(defaults.clone()));

    let full = ApiKey {
        valid_key: "0d9e1f6c-7A2B-4c3d-8e9f-0a1b2c3d4e5f".into(),
        maxreq: Some(i64::from(i32::MAX)),
        allow_locate: Some(false),
        allow_region: Some(false),
        allow_fallback: Some(true),
        fallback_name: Some("f".repeat(40)),
        fallback_schema: Some("unwiredlabs/v1".into()),
        fallback_url: Some("https://fallback.example/v2/process.php#TOKEN".into()),
        fallback_ratelimit: Some(0),
        fallback_ratelimit_interval: Some(60),
        fallback_cache_expire: Some(86_400),
        store_sample_locate: Some(0),
        store_sample_submit: Some(100),
    };
    store.insert_api_key(&full).await.unwrap();
    let nulls = ApiKey {
        valid_key: "nulls".into(),
        maxreq: None,
        allow_locate: None,
        allow_region: None,
        allow_fallback: None,
        fallback_name: None,
        fallback_schema: None,
        fallback_url: None,
        fallback_ratelimit: None,
        fallback_ratelimit_interval: None,
        fallback_cache_expire: None,
        store_sample_locate: None,
        store_sample_submit: None,
    };
    store.insert_api_key(&nulls).await.unwrap();

    // Case-insensitive lookup returns the stored spelling.
    let found = store
        .api_key("0D9E1F6C-7a2b-4C3D-8E9F-0A1B2C3D4E5F")
        .await
        .unwrap();
    assert_eq!(found, Some(full.clone()));
    assert_eq!(store.api_key("nulls").await.unwrap(), Some(nulls.clone()));
    assert_eq!(store.api_key("missing").await.unwrap(), None);

    // Duplicates, also in another case, are refused and change nothing.
    assert!(matches!(
        store.insert_api_key(&ApiKey::new("TEST")).await,
        Err(StoreError::Duplicate(_))
    ));
    let keys: Vec<String> = store
        .api_keys()
        .await
        .unwrap()
        .into_iter()
        .map(|k| k.valid_key)
        .collect();
    assert_eq!(
        keys,
        vec![
            full.valid_key.clone(),
            "nulls".to_string(),
            "test".to_string()
        ]
    );

    let mut changed = defaults.clone();
    changed.maxreq = Some(5);
    changed.store_sample_submit = None;
    assert!(store.update_api_key(&changed).await.unwrap());
    assert_eq!(store.api_key("test").await.unwrap(), Some(changed));
    assert!(!store.update_api_key(&ApiKey::new("absent")).await.unwrap());

    assert!(store.delete_api_key("TEST").await.unwrap());
    assert!(!store.delete_api_key("test").await.unwrap());
    assert_eq!(store.api_key("test").await.unwrap(), None);
}

async fn export_configs_round_trip(store: Store) {
    let s3 = ExportConfig {
        name: "backup".into(),
        batch: 1_000_000,
        schema: ExportSchema::S3,
        url: Some("s3://bucket/backups/{source}/{api_key}/{year}/{month}/{day}".into()),
        skip_keys: Some(vec!["partner-a".into(), "partner-b".into()]),
        skip_sources: Some(vec![ReportSource::Fused, ReportSource::Query]),
    };
    let empty_sets = ExportConfig {
        name: "empty".into(),
        batch: 0,
        schema: ExportSchema::Dummy,
        url: None,
        skip_keys: Some(vec![]),
        skip_sources: Some(vec![]),
    };
    store.insert_export_config(&s3).await.unwrap();
    store.insert_export_config(&empty_sets).await.unwrap();
    assert_eq!(
        store.export_config("backup").await.unwrap(),
        Some(s3.clone())
    );
    assert_eq!(
        store.export_config("empty").await.unwrap(),
        Some(empty_sets.clone())
    );
    assert!(matches!(
        store.insert_export_config(&s3).await,
        Err(StoreError::Duplicate(_))
    ));

    let mut changed = s3.clone();
    ExportConfigPatch {
        batch: Some(5),
        skip_keys: Some(None),
        ..Default::default()
    }
    .apply(&mut changed);
    assert!(store.update_export_config(&changed).await.unwrap());
    let got = store.export_config("backup").await.unwrap().unwrap();
    assert_eq!(got.batch, 5);
    assert_eq!(got.skip_keys, None);
    assert_eq!(got.skip_sources, s3.skip_sources);

    let names: Vec<String> = store
        .export_configs()
        .await
        .unwrap()
        .into_iter()
        .map(|c| c.name)
        .collect();
    assert_eq!(names, vec!["backup", "empty", "internal"]);
    assert!(store.delete_export_config("internal").await.unwrap());
    assert!(!store.delete_export_config("internal").await.unwrap());
    assert_eq!(store.export_config("internal").await.unwrap(), None);
}

async fn wifi_and_blue_stations_round_trip_by_shard(store: Store) {
    let macs: Vec<Mac> = [
        "000000000000",
        "ffffffffffff",
        "0000f0123456",
        "3680873e9b83",
        "11110f000000",
        "111110000000",
    ]
    .iter()
    .map(|m| Mac::from_hex(m).unwrap())
    .collect();
    let wifi: Vec<WifiStation> = macs
        .iter()
        .enumerate()
        .map(|(i, mac)| WifiStation {
            mac: *mac,
            fields: if i % 2 == 0 {
                full_fields()
            } else {
                StationFields::default()
            },
        })
        .collect();
    store.upsert_wifi_stations(&wifi).await.unwrap();

    // Each MAC sits in the table of its fifth hex digit.
    let expect = [
        ("wifi_shard_0", 2),
        ("wifi_shard_f", 2),
        ("wifi_shard_8", 1),
        ("wifi_shard_1", 1),
        ("wifi_shard_2", 0),
    ];
    for (table, n) in expect {
        assert_eq!(store.row_count(table).await.unwrap(), Some(n), "{table}");
    }
    let mut got = store.wifi_stations(&macs).await.unwrap();
    got.sort_by_key(|s| s.mac);
    let mut want = wifi.clone();
    want.sort_by_key(|s| s.mac);
    assert_eq!(got, want);
    assert!(
        store
            .wifi_stations(&[Mac::from_hex("123456789abc").unwrap()])
            .await
            .unwrap()
            .is_empty()
    );

    // An upsert replaces the whole row, e.g. blocking a station nulls its position.
    let mut blocked = wifi[0].clone();
    blocked.fields = StationFields {
        region: Some("DE".into()),
        block_count: Some(3),
        ..StationFields::default()
    };
    store
        .upsert_wifi_stations(std::slice::from_ref(&blocked))
        .await
        .unwrap();
    assert_eq!(
        store.wifi_stations(&[blocked.mac]).await.unwrap(),
        vec![blocked.clone()]
    );

    // Bluetooth uses its own shards; Wi-Fi rows are not visible there.
    let blue = BlueStation {
        mac: macs[1],
        fields: full_fields(),
    };
    store
        .upsert_blue_stations(std::slice::from_ref(&blue))
        .await
        .unwrap();
    assert_eq!(store.blue_stations(&macs).await.unwrap(), vec![blue]);
    assert_eq!(store.row_count("blue_shard_f").await.unwrap(), Some(1));
}

async fn cells_round_trip_for_every_radio(store: Store) {
    let cells = vec![
        CellStation {
            key: CellKey {
                radio: Radio::Gsm,
                mcc: 1,
                mnc: 0,
                lac: 1,
                cid: 1,
            },
            psc: None,
            fields: StationFields::default(),
        },
        CellStation {
            key: CellKey {
                radio: Radio::Gsm,
                mcc: 999,
                mnc: 999,
                lac: 65535,
                cid: u32::MAX.into(),
            },
            psc: Some(0),
            fields: full_fields(),
        },
        CellStation {
            key: CellKey {
                radio: Radio::Wcdma,
                mcc: 262,
                mnc: 2,
                lac: 65533,
                cid: 268_435_455,
            },
            psc: Some(511),
            fields: full_fields(),
        },
        CellStation {
            key: CellKey {
                radio: Radio::Lte,
                mcc: 262,
                mnc: 1,
                lac: 123,
                cid: 4567,
            },
            psc: Some(503),
            fields: full_fields(),
        },
        CellStation {
            key: CellKey {
                radio: Radio::Nr,
                mcc: 310,
                mnc: 410,
                lac: (1 << 24) - 1,
                cid: (1 << 36) - 1,
            },
            psc: Some(1007),
            fields: full_fields(),
        },
    ];
    store.upsert_cell_stations(&cells).await.unwrap();
    for (table, n) in [
        ("cell_gsm", 2),
        ("cell_wcdma", 1),
        ("cell_lte", 1),
        ("cell_nr", 1),
    ] {
        assert_eq!(store.row_count(table).await.unwrap(), Some(n), "{table}");
    }
    let keys: Vec<CellKey> = cells.iter().map(|c| c.key).collect();
    let mut got = store.cell_stations(&keys).await.unwrap();
    got.sort_by_key(|c| c.key);
    assert_eq!(got, cells);

    // Same numbers under another radio are another cell.
    let other = CellKey {
        radio: Radio::Lte,
        ..cells[0].key
    };
    assert!(store.cell_stations(&[other]).await.unwrap().is_empty());
    // Keys the encoding cannot hold are refused, not truncated.
    let too_big = CellKey {
        radio: Radio::Lte,
        mcc: 1,
        mnc: 1,
        lac: 70_000,
        cid: 1,
    };
    assert!(matches!(
        store.cell_stations(&[too_big]).await,
        Err(StoreError::Key(_))
    ));
}

async fn cell_areas_round_trip(store: Store) {
    let areas = vec![
        CellArea {
            key: AreaKey {
                radio: Radio::Gsm,
                mcc: 310,
                mnc: 1,
                lac: 0,
            },
            lat: None,
            lon: None,
            radius: None,
            region: None,
            avg_cell_radius: None,
            num_cells: None,
            last_seen: None,
            created: None,
            modified: None,
        },
        CellArea {
            key: AreaKey {
                radio: Radio::Nr,
                mcc: 999,
                mnc: 999,
                lac: (1 << 24) - 1,
            },
            lat: Some(-85.051),
            lon: Some(180.0),
            radius: Some(20_000_000),
            region: Some("PR".into()),
            avg_cell_radius: Some(4_294_967_295),
            num_cells: Some(4_294_967_295),
            last_seen: Some(day(2024, 1, 12)),
            created: Some(at(2024, 1, 1, 0, 0, 0)),
            modified: Some(at(2024, 1, 12, 12, 30, 1)),
        },
    ];
    store.upsert_cell_areas(&areas).await.unwrap();
    let keys: Vec<AreaKey> = areas.iter().map(|a| a.key).collect();
    let mut got = store.cell_areas(&keys).await.unwrap();
    got.sort_by_key(|a| a.key);
    assert_eq!(got, areas);
    assert_eq!(store.delete_cell_areas(&keys[..1]).await.unwrap(), 1);
    assert_eq!(store.delete_cell_areas(&keys[..1]).await.unwrap(), 0);
    assert_eq!(
        store.cell_areas(&keys).await.unwrap(),
        vec![areas[1].clone()]
    );
}

async fn stats_round_trip(store: Store) {
    let rows = [
        StatRow {
            key: StatKey::UniqueWifi,
            time: day(2024, 1, 11),
            value: 0,
        },
        StatRow {
            key: StatKey::UniqueWifi,
            time: day(2024, 1, 12),
            value: i64::MAX,
        },
        StatRow {
            key: StatKey::Blue,
            time: day(2024, 1, 12),
            value: 7,
        },
    ];
    for r in &rows {
        store.upsert_stat(r).await.unwrap();
    }
    store
        .upsert_stat(&StatRow {
            key: StatKey::Blue,
            time: day(2024, 1, 12),
            value: 9,
        })
        .await
        .unwrap();
    assert_eq!(
        store
            .stats(StatKey::UniqueWifi, day(2024, 1, 1))
            .await
            .unwrap(),
        rows[..2].to_vec()
    );
    assert_eq!(
        store
            .stats(StatKey::UniqueWifi, day(2024, 1, 12))
            .await
            .unwrap(),
        rows[1..2].to_vec()
    );
    assert_eq!(
        store.stats(StatKey::Blue, day(2024, 1, 1)).await.unwrap(),
        vec![StatRow {
            key: StatKey::Blue,
            time: day(2024, 1, 12),
            value: 9
        }]
    );
    assert!(
        store
            .stats(StatKey::Cell, day(2000, 1, 1))
            .await
            .unwrap()
            .is_empty()
    );
}

async fn region_stats_are_replaced(store: Store) {
    let r = |region: &str, n: i64| RegionStat {
        region: region.into(),
        gsm: n,
        wcdma: n + 1,
        lte: n + 2,
        nr: n + 3,
        blue: n + 4,
        wifi: i64::MAX - n,
    };
    store
        .replace_region_stats(&[r("CA", 1), r("DE", 2)])
        .await
        .unwrap();
    assert_eq!(
        store.region_stats().await.unwrap(),
        vec![r("CA", 1), r("DE", 2)]
    );
    store
        .replace_region_stats(&[r("DE", 5), r("US", 0)])
        .await
        .unwrap();
    assert_eq!(
        store.region_stats().await.unwrap(),
        vec![r("DE", 5), r("US", 0)]
    );
    store.replace_region_stats(&[]).await.unwrap();
    assert!(store.region_stats().await.unwrap().is_empty());
}

async fn datamap_grids_are_touched(store: Store) {
    let grids = [
        DatamapGrid {
            lat: 36_000,
            lon: 5_000,
        },
        DatamapGrid {
            lat: 85_051,
            lon: 180_000,
        },
        DatamapGrid {
            lat: 90_000,
            lon: -180_000,
        },
    ];
    assert_eq!(
        store
            .touch_datamap(Quadrant::Ne, &grids, day(2024, 1, 10))
            .await
            .unwrap(),
        3
    );
    assert_eq!(
        store
            .touch_datamap(Quadrant::Ne, &grids[..1], day(2024, 1, 10))
            .await
            .unwrap(),
        0
    );
    assert_eq!(
        store
            .touch_datamap(Quadrant::Ne, &grids[..1], day(2024, 1, 12))
            .await
            .unwrap(),
        1
    );
    assert_eq!(
        store
            .touch_datamap(Quadrant::Ne, &grids[1..2], day(2024, 1, 1))
            .await
            .unwrap(),
        0,
        "never backwards"
    );
    let mut got = store.datamap_rows(Quadrant::Ne, &grids).await.unwrap();
    got.sort_by_key(|r| r.grid);
    let mut want = vec![
        DatamapRow {
            grid: grids[0],
            created: Some(day(2024, 1, 10)),
            modified: Some(day(2024, 1, 12)),
        },
        DatamapRow {
            grid: grids[1],
            created: Some(day(2024, 1, 10)),
            modified: Some(day(2024, 1, 10)),
        },
        DatamapRow {
            grid: grids[2],
            created: Some(day(2024, 1, 10)),
            modified: Some(day(2024, 1, 10)),
        },
    ];
    want.sort_by_key(|r| r.grid);
    assert_eq!(got, want);
    assert!(
        store
            .datamap_rows(Quadrant::Sw, &grids)
            .await
            .unwrap()
            .is_empty()
    );
}

async fn datamap_pages_follow_grid_order(store: Store) {
    // Negative and positive coordinates: the offset key must sort as (lat, lon).
    let mut grids = vec![];
    for lat in [-1, 0, 1, -50_000] {
        for lon in [-2, 7, -170_000, 150_000] {
            grids.push(DatamapGrid { lat, lon });
        }
    }
    store
        .touch_datamap(Quadrant::Sw, &grids, day(2024, 1, 10))
        .await
        .unwrap();
    let mut seen = vec![];
    let mut after = None;
    let mut pages = 0;
    loop {
        let page = store.datamap_page(Quadrant::Sw, after, 5).await.unwrap();
        if page.is_empty() {
            break;
        }
        assert!(page.len() <= 5);
        pages += 1;
        after = page.last().map(|r| r.grid);
        seen.extend(page.into_iter().map(|r| {
            assert_eq!(r.modified, Some(day(2024, 1, 10)));
            r.grid
        }));
    }
    grids.sort();
    assert_eq!(seen, grids, "every row once, in (lat, lon) order");
    assert_eq!(store.datamap_count(Quadrant::Sw).await.unwrap(), 16);
    assert_eq!(store.datamap_count(Quadrant::Nw).await.unwrap(), 0);
    assert_eq!(pages, 4);
    assert!(
        store
            .datamap_page(Quadrant::Ne, None, 5)
            .await
            .unwrap()
            .is_empty()
    );
}

async fn applied_batches_detect_replays(store: Store) {
    let t0 = at(2024, 1, 12, 10, 0, 0);
    assert!(
        store
            .record_applied_batch("update_wifi_0", "b1", t0)
            .await
            .unwrap()
    );
    assert!(
        !store
            .record_applied_batch("update_wifi_0", "b1", t0)
            .await
            .unwrap()
    );
    assert!(
        store
            .record_applied_batch("update_wifi_1", "b1", t0)
            .await
            .unwrap()
    );
    assert!(store.batch_applied("update_wifi_0", "b1").await.unwrap());
    assert!(!store.batch_applied("update_wifi_0", "b2").await.unwrap());
    assert_eq!(
        store
            .prune_applied_batches(at(2024, 1, 12, 10, 0, 1))
            .await
            .unwrap(),
        2
    );
    assert!(!store.batch_applied("update_wifi_0", "b1").await.unwrap());
}

/// The calibrated model's `estimate` column: written by a station batch next
/// to the original's columns (which read back unchanged), read by the
/// estimated lookups, absent (`None`) for rows written without one.
async fn station_estimates_are_written_and_read_with_the_rows(store: Store) {
    use ichnaea_core::locate::estimate::{Estimate, EstimateObs};
    let now = at(2024, 1, 12, 10, 0, 0);
    let estimate = Estimate::of(
        &[
            EstimateObs {
                lat: 52.5,
                lon: 13.4,
                accuracy: Some(5.0),
                signal: Some(-60.0),
                age_ms: None,
            },
            EstimateObs {
                lat: 52.5002,
                lon: 13.4001,
                accuracy: Some(8.0),
                signal: Some(-75.0),
                age_ms: Some(1500),
            },
        ],
        -80.0,
    )
    .unwrap();
    let with = Mac::from_hex("0a0000000001").unwrap();
    let without = Mac::from_hex("0a0000000002").unwrap();
    let cell = CellKey {
        radio: Radio::Lte,
        mcc: 262,
        mnc: 1,
        lac: 3,
        cid: 77,
    };
    for (i, (table, keys)) in [
        (
            StationTable::Wifi(with.shard()),
            vec![StationKey::Mac(with)],
        ),
        (
            StationTable::Wifi(without.shard()),
            vec![StationKey::Mac(without)],
        ),
        (StationTable::Cell(Radio::Lte), vec![StationKey::Cell(cell)]),
    ]
    .into_iter()
    .enumerate()
    {
        let est = (keys[0] != StationKey::Mac(without)).then_some(estimate);
        let applied = store
            .apply_station_batch(table, "q", &format!("estimate-{i}"), now, &keys, |stored| {
                assert!(stored.is_empty());
                StationWrites {
                    rows: vec![(
                        keys[0],
                        StoredStation {
                            fields: full_fields(),
                            psc: None,
                            estimate: est,
                        },
                    )],
                    ..StationWrites::default()
                }
            })
            .await
            .unwrap();
        assert!(applied);
    }
    let wifi = store
        .wifi_stations_estimated(&[with, without])
        .await
        .unwrap();
    assert_eq!(wifi.len(), 2);
    for (station, e) in &wifi {
        assert_eq!(station.fields, full_fields());
        let expected = (station.mac == with).then_some(estimate);
        assert_eq!(*e, expected, "{:?}", station.mac);
    }
    let cells = store.cell_stations_estimated(&[cell]).await.unwrap();
    assert_eq!(cells.len(), 1);
    assert_eq!(cells[0].0.fields, full_fields());
    assert_eq!(cells[0].1, Some(estimate));
    // The classic reads are unchanged.
    assert_eq!(
        store.wifi_stations(&[with]).await.unwrap()[0].fields,
        full_fields()
    );
    // A second batch sees the stored estimate.
    let key = StationKey::Mac(with);
    store
        .apply_station_batch(
            StationTable::Wifi(with.shard()),
            "q",
            "again",
            now,
            &[key],
            |stored| {
                assert_eq!(stored[&key].estimate, Some(estimate));
                StationWrites::default()
            },
        )
        .await
        .unwrap();
}

async fn station_batches_apply_once_with_their_counters(store: Store) {
    let mac = Mac::from_hex("0123f456789a").unwrap();
    let key = StationKey::Mac(mac);
    let now = at(2024, 1, 12, 10, 0, 0);
    let write = |seen: &std::collections::HashMap<StationKey, StoredStation>, samples: i64| {
        let before = seen.get(&key).and_then(|s| s.fields.samples).unwrap_or(0);
        StationWrites {
            rows: vec![(
                key,
                StoredStation {
                    fields: StationFields {
                        samples: Some(before + samples),
                        ..full_fields()
                    },
                    psc: None,
                    estimate: None,
                },
            )],
            stats: vec![
                (StatKey::Wifi, samples),
                (StatKey::UniqueWifi, if before == 0 { 1 } else { 0 }),
            ],
            day: Some(now.date()),
        }
    };
    let table = StationTable::Wifi(mac.shard());
    assert!(
        store
            .apply_station_batch(table, "update_wifi_f", "b1", now, &[key], |s| write(s, 3))
            .await
            .unwrap()
    );
    assert!(
        store
            .apply_station_batch(table, "update_wifi_f", "b2", now, &[key], |s| write(s, 2))
            .await
            .unwrap()
    );
    // A re-delivered batch changes nothing.
    let mut called = false;
    let replay = store
        .apply_station_batch(table, "update_wifi_f", "b1", now, &[key], |s| {
            called = true;
            write(s, 3)
        })
        .await
        .unwrap();
    assert!(!replay);
    assert!(!called, "a replay does not even compute");
    let stored = store.wifi_stations(&[mac]).await.unwrap();
    assert_eq!(stored[0].fields.samples, Some(5));
    assert_eq!(
        store.stat_counters(now.date()).await.unwrap(),
        vec![(StatKey::Wifi, 5), (StatKey::UniqueWifi, 1)]
    );

    let cell = CellKey {
        radio: Radio::Nr,
        mcc: 262,
        mnc: 1,
        lac: 70_000,
        cid: 1 << 35,
    };
    let ck = StationKey::Cell(cell);
    let table = StationTable::Cell(Radio::Nr);
    assert!(
        store
            .apply_station_batch(table, "update_cell_nr", "c1", now, &[ck], |_| {
                StationWrites {
                    rows: vec![(
                        ck,
                        StoredStation {
                            fields: full_fields(),
                            psc: Some(1007),
                            estimate: None,
                        },
                    )],
                    ..StationWrites::default()
                }
            })
            .await
            .unwrap()
    );
    let cells = store.cell_stations(&[cell]).await.unwrap();
    assert_eq!(
        (cells[0].psc, cells[0].fields.samples),
        (Some(1007), full_fields().samples)
    );
}

async fn cells_in_area_scan_the_prefix(store: Store) {
    let mk = |radio, lac, cid| CellStation {
        key: CellKey {
            radio,
            mcc: 262,
            mnc: 1,
            lac,
            cid,
        },
        psc: None,
        fields: StationFields::default(),
    };
    let cells = vec![
        mk(Radio::Lte, 5, 1),
        mk(Radio::Lte, 5, u32::MAX.into()),
        mk(Radio::Lte, 6, 1),
        mk(Radio::Lte, 4, 9),
        mk(Radio::Nr, 5, 7),
        mk(Radio::Nr, 65_541, 7),
    ];
    store.upsert_cell_stations(&cells).await.unwrap();
    let got = store
        .cells_in_area(AreaKey {
            radio: Radio::Lte,
            mcc: 262,
            mnc: 1,
            lac: 5,
        })
        .await
        .unwrap();
    let cids: Vec<u64> = got.iter().map(|c| c.key.cid).collect();
    assert_eq!(cids, vec![1, u64::from(u32::MAX)]);
    let nr = store
        .cells_in_area(AreaKey {
            radio: Radio::Nr,
            mcc: 262,
            mnc: 1,
            lac: 5,
        })
        .await
        .unwrap();
    assert_eq!(nr.len(), 1);
}

async fn stat_counters_fold_into_running_totals(store: Store) {
    let (d1, d2, d3) = (day(2024, 1, 10), day(2024, 1, 11), day(2024, 1, 12));
    store
        .upsert_stat(&StatRow {
            key: StatKey::Wifi,
            time: d1,
            value: 100,
        })
        .await
        .unwrap();
    let add = |d: NaiveDate, n: i64, batch: &'static str| {
        let store = store.clone();
        async move {
            let mac = Mac::from_hex("0123f456789a").unwrap();
            store
                .apply_station_batch(
                    StationTable::Wifi(mac.shard()),
                    "q",
                    batch,
                    d.and_hms_opt(1, 0, 0).unwrap(),
                    &[],
                    |_| StationWrites {
                        rows: vec![],
                        stats: vec![(StatKey::Wifi, n)],
                        day: Some(d),
                    },
                )
                .await
                .unwrap();
        }
    };
    add(d3, 7, "x3").await;
    add(d2, 5, "x2").await;
    add(d2, 1, "x2b").await;
    assert_eq!(store.fold_stat_counters().await.unwrap(), vec![d2, d3]);
    let rows: Vec<(NaiveDate, i64)> = store
        .stats(StatKey::Wifi, d1)
        .await
        .unwrap()
        .into_iter()
        .map(|r| (r.time, r.value))
        .collect();
    assert_eq!(rows, vec![(d1, 100), (d2, 106), (d3, 113)]);
    assert!(store.stat_counters(d3).await.unwrap().is_empty());
    assert!(
        store.fold_stat_counters().await.unwrap().is_empty(),
        "nothing folded twice"
    );
    add(d3, 2, "x4").await;
    store.fold_stat_counters().await.unwrap();
    assert_eq!(store.stats(StatKey::Wifi, d3).await.unwrap()[0].value, 115);
    assert_eq!(store.prune_stats(d2).await.unwrap(), 1);
}

/// Station batches add to `stat_counter` while the scheduler folds it: every
/// increment lands in `stat` exactly once, however the two interleave.
async fn stat_counters_fold_concurrently_loses_nothing(store: Store) {
    const WRITERS: u8 = 3;
    const BATCHES: i64 = 150;
    let d = day(2024, 2, 1);
    let done = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut writers = Vec::new();
    for w in 0..WRITERS {
        let (store, done) = (store.clone(), done.clone());
        writers.push(tokio::spawn(async move {
            for b in 0..BATCHES {
                let batch = format!("w{w}-{b}");
                store
                    .apply_station_batch(
                        StationTable::Wifi(w),
                        "q",
                        &batch,
                        d.and_hms_opt(1, 0, 0).unwrap(),
                        &[],
                        |_| StationWrites {
                            rows: vec![],
                            // Not in key order: the store orders its increments.
                            stats: vec![(StatKey::UniqueWifi, 2), (StatKey::Wifi, 1)],
                            day: Some(d),
                        },
                    )
                    .await
                    .unwrap();
            }
            done.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        }));
    }
    let mut folds = 0;
    while done.load(std::sync::atomic::Ordering::SeqCst) < usize::from(WRITERS) {
        store.fold_stat_counters().await.unwrap();
        folds += 1;
    }
    for w in writers {
        w.await.unwrap();
    }
    store.fold_stat_counters().await.unwrap();
    let total = |key| {
        let store = store.clone();
        async move { store.stats(key, d).await.unwrap()[0].value }
    };
    let expected = i64::from(WRITERS) * BATCHES;
    assert_eq!(total(StatKey::Wifi).await, expected, "after {folds} folds");
    assert_eq!(total(StatKey::UniqueWifi).await, 2 * expected);
    assert!(store.stat_counters(d).await.unwrap().is_empty());
}

async fn region_stats_count_areas_and_stations(store: Store) {
    let area = |radio, lac, region: &str, n| CellArea {
        key: AreaKey {
            radio,
            mcc: 262,
            mnc: 1,
            lac,
        },
        lat: Some(1.0),
        lon: Some(1.0),
        radius: Some(1),
        region: Some(region.into()),
        avg_cell_radius: None,
        num_cells: Some(n),
        last_seen: None,
        created: None,
        modified: None,
    };
    store
        .upsert_cell_areas(&[
            area(Radio::Gsm, 1, "DE", 1),
            area(Radio::Gsm, 2, "DE", 2),
            area(Radio::Gsm, 3, "CA", 2),
            area(Radio::Wcdma, 1, "DE", 3),
            area(Radio::Lte, 1, "CA", 4),
            area(Radio::Nr, 1, "CA", 9),
        ])
        .await
        .unwrap();
    let station = |mac: &str, region: &str| BlueStation {
        mac: Mac::from_hex(mac).unwrap(),
        fields: StationFields {
            region: Some(region.into()),
            ..StationFields::default()
        },
    };
    store
        .upsert_blue_stations(&[
            station("000000100000", "CA"),
            station("0000001a0000", "CA"),
            station("000000200000", "GB"),
        ])
        .await
        .unwrap();
    store
        .upsert_wifi_stations(&[WifiStation {
            mac: Mac::from_hex("0000002b0000").unwrap(),
            fields: StationFields {
                region: Some("US".into()),
                ..StationFields::default()
            },
        }])
        .await
        .unwrap();
    let rows = store.update_region_stats().await.unwrap();
    let r = |region: &str, gsm, wcdma, lte, nr, blue, wifi| RegionStat {
        region: region.into(),
        gsm,
        wcdma,
        lte,
        nr,
        blue,
        wifi,
    };
    let want = vec![
        r("CA", 2, 0, 4, 9, 2, 0),
        r("DE", 3, 3, 0, 0, 0, 0),
        r("GB", 0, 0, 0, 0, 1, 0),
        r("US", 0, 0, 0, 0, 0, 1),
    ];
    assert_eq!(rows, want);
    assert_eq!(store.region_stats().await.unwrap(), want);
}

async fn station_pages_follow_key_order_and_area(store: Store) {
    let at = |mac: &str, lat: f64| WifiStation {
        mac: Mac::from_hex(mac).unwrap(),
        fields: StationFields {
            lat: Some(lat),
            lon: Some(10.0),
            ..StationFields::default()
        },
    };
    store
        .upsert_wifi_stations(&[
            at("000000000003", 50.0),
            at("000000000001", 51.0),
            at("000000000002", 52.0),
        ])
        .await
        .unwrap();
    let table = StationTable::Wifi(0);
    let first = store.station_page(table, None, 2, None).await.unwrap();
    let macs = |page: &[(StationKey, ichnaea_store::StoredStation)]| -> Vec<String> {
        page.iter()
            .map(|(k, _)| match k {
                StationKey::Mac(m) => m.to_string(),
                StationKey::Cell(_) => unreachable!(),
            })
            .collect()
    };
    assert_eq!(macs(&first), vec!["000000000001", "000000000002"]);
    let after = Mac::from_hex("000000000002").unwrap();
    let rest = store
        .station_page(table, Some(after.bytes()), 2, None)
        .await
        .unwrap();
    assert_eq!(macs(&rest), vec!["000000000003"]);
    let area = BoundingBox {
        min_lat: 50.5,
        max_lat: 51.5,
        min_lon: 9.0,
        max_lon: 11.0,
    };
    let inside = store
        .station_page(table, None, 10, Some(area))
        .await
        .unwrap();
    assert_eq!(macs(&inside), vec!["000000000001"]);
}
