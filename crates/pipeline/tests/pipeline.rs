//! Pipeline tests: reports pushed to `update_incoming` are drained through the
//! real queue and store, on SQLite + the embedded queue, and on PostgreSQL +
//! Redis when `ICHNAEA_TEST_POSTGRES_URL` and `ICHNAEA_TEST_REDIS_URL` are set.
//!
//! Sections (§) refer to docs/reference/pipeline.md.

// Test code: a failed unwrap is a failed test with its message, and test
// helpers are not public API.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{Datelike, NaiveDate, NaiveDateTime, Utc};
use ichnaea_core::apikey::metric_label;
use ichnaea_core::cell::{AreaKey, CellKey};
use ichnaea_core::datamap::{DatamapGrid, Quadrant};
use ichnaea_core::export::{ExportConfig, ExportSchema};
use ichnaea_core::geocoder::Geocoder;
use ichnaea_core::mac::Mac;
use ichnaea_core::observation::{CellObservation, ObsPosition, WifiObservation};
use ichnaea_core::queues::{
    UPDATE_CELLAREA, UPDATE_INCOMING, update_cell, update_datamap, update_wifi,
};
use ichnaea_core::radio::Radio;
use ichnaea_core::region::RegionGeocoder;
use ichnaea_core::source::ReportSource;
use ichnaea_core::station::{BlueStation, CellArea, CellStation, StationFields, WifiStation};
use ichnaea_core::stats::{RegionStat, StatKey, StatRow};
use ichnaea_core::updater::{StationType, update_station, weigh_wifi};
use ichnaea_pipeline::export::Exporters;
use ichnaea_pipeline::export::geosubmit::GeosubmitExporter;
use ichnaea_pipeline::export::s3::ObjectExporter;
use ichnaea_pipeline::{PipelineContext, PipelineSettings, areas, stations, worker};
use ichnaea_store::{DatamapRow, StationKey, StationTable, StationWrites, StoredStation};
use ichnaea_testkit::backends::{self, Backends};
use ichnaea_testkit::{FakeHttp, TempDir, files, gunzip_json, is_object_name};
use metrics::{Counter, Gauge, Histogram, Key, KeyName, Metadata, SharedString, Unit};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

/// Land is 40–60° N, −10–30° E (region "DE"), plus 30–40° N, 0–30° E ("IT").
struct TestGeocoder;

impl Geocoder for TestGeocoder {
    fn region(&self, lat: f64, lon: f64) -> Option<String> {
        if (40.0..=60.0).contains(&lat) && (-10.0..=30.0).contains(&lon) {
            Some("DE".into())
        } else if (30.0..40.0).contains(&lat) && (0.0..=30.0).contains(&lon) {
            Some("IT".into())
        } else {
            None
        }
    }
    fn in_region(&self, lat: f64, lon: f64, code: &str) -> bool {
        self.region(lat, lon).as_deref() == Some(code)
    }
    fn any_region(&self, lat: f64, lon: f64) -> bool {
        self.region(lat, lon).is_some()
    }
    fn region_for_cell(&self, lat: f64, lon: f64, _mcc: u16) -> Option<String> {
        self.region(lat, lon)
    }
    fn valid_mcc(&self, mcc: i64) -> bool {
        matches!(mcc, 222 | 262)
    }
}

fn context(backends: Backends) -> PipelineContext {
    PipelineContext {
        store: backends.store,
        queue: Arc::new(backends.queue),
        counters: backends.counters,
        geocoder: Arc::new(TestGeocoder),
        settings: PipelineSettings {
            visibility: Duration::from_millis(300),
            idle_poll: Duration::from_millis(20),
            ..PipelineSettings::default()
        },
        exporters: Arc::new(Exporters::new(Duration::from_secs(5)).unwrap()),
    }
}

/// Runs `body` on a pipeline over SQLite and the embedded queue.
async fn on_embedded(body: impl AsyncFnOnce(PipelineContext)) {
    backends::on_embedded(async move |b| body(context(b)).await).await;
}

/// Runs `body` on a pipeline over PostgreSQL and Redis, when both are configured.
async fn on_cluster(body: impl AsyncFnOnce(PipelineContext)) {
    backends::on_cluster(async move |b| body(context(b)).await).await;
}

/// Generates one test per backend for each `async fn name(ctx)`; attributes
/// written before a name (e.g. `#[ignore = "…"]`) apply to both.
macro_rules! backend_tests {
    ($($(#[$attr:meta])* $name:ident),* $(,)?) => {
        ichnaea_testkit::backend_tests!(
            embedded => crate::on_embedded, cluster => crate::on_cluster;
            $($(#[$attr])* $name),*
        );
    };
}

backend_tests!(
    reports_become_stations_areas_grids_and_stats,
    moved_network_is_blocklisted,
    replayed_batches_are_applied_once,
    exports_follow_skip_rules_and_partitions,
    rate_control_lowers_the_locate_sample_rate,
    monitor_tasks_report_api_usage,
    public_cell_export_writes_gzip_csv,
    case_55_full_cell_export,
    case_56_diff_cell_export_window,
    case_60_monitor_api_users_gauges,
    cell_import_merges_a_public_export,
    case_01_zero_weight_observation_is_dropped_uncounted,
    case_05_large_gsm_cid_is_stored_as_wcdma,
    case_06_rejected_cell_entry_counts_an_observation_drop,
    case_09_bluetooth_mac_goes_to_blue_shard_8,
    case_10_ocean_report_is_counted_and_dropped,
    case_10_metrics_tag_only_known_api_keys,
    case_11_invalid_report_does_not_stop_its_batch,
    undecodable_incoming_items_are_counted_and_logged,
    case_15_multiplexer_fills_export_queues_by_skip_rules,
    case_16_geosubmit_export_posts_one_batch,
    case_17_s3_export_writes_one_object_per_partition,
    case_18_failed_export_is_retried_after_its_lease,
    case_19_export_failing_three_times_stays_queued,
    case_20_export_readiness_by_oldest_report_age,
    internal_target_goes_once_incoming_is_empty,
    hanging_export_target_does_not_stall_the_pipeline,
    case_21_new_station_from_five_observations,
    case_22_new_station_from_five_query_observations,
    case_23_spread_observations_create_a_blocked_station,
    case_24_blocked_station_is_skipped_but_counted,
    case_26_no_write_and_no_area_for_spread_observations,
    case_27_confirm_writes_last_seen_once_a_day,
    case_39_areas_queued_for_every_action_but_confirm,
    case_40_replayed_station_batch_is_not_applied_twice,
    case_42_area_without_positioned_cells_is_deleted,
    case_47_datamap_grids_are_touched_once_a_day,
    case_48_cleanup_removes_datamap_grids_after_a_year,
    case_50_statcounter_folds_into_todays_row,
    case_51_statcounter_carries_an_older_total_forward,
    case_52_statcounter_folds_yesterday_before_today,
    case_53_cleanup_stat_keeps_730_days,
    case_54_update_statregion,
    case_57_rate_controller_backlog_and_rates,
    case_58_rate_controller_needs_a_target,
    concurrent_passes_apply_every_observation_once,
);

/// The metric label of the API key `test` (SHA-256 "9f86d081884c…").
const KEY_LABEL: &str = "k9f86d081884c";

async fn submit(ctx: &PipelineContext, api_key: Option<&str>, source: &str, reports: Vec<Value>) {
    let items: Vec<Vec<u8>> = reports
        .into_iter()
        .map(|r| {
            serde_json::to_vec(&json!({"api_key": api_key, "source": source, "report": r})).unwrap()
        })
        .collect();
    ctx.queue.push(UPDATE_INCOMING, items).await.unwrap();
}

fn wifi_report(lat: f64, lon: f64, macs: &[&str]) -> Value {
    let wifi: Vec<Value> = macs
        .iter()
        .map(|m| json!({"macAddress": m, "signalStrength": -80}))
        .collect();
    json!({"timestamp": Utc::now().timestamp_millis(), "position": {"latitude": lat, "longitude": lon, "accuracy": 10.0},
           "wifiAccessPoints": wifi, "cellTowers": [], "bluetoothBeacons": []})
}

async fn drain(ctx: &PipelineContext) -> usize {
    let (items, stuck) = worker::drain(ctx, &CancellationToken::new(), |_, _| {})
        .await
        .unwrap();
    assert!(stuck.is_empty(), "{stuck:?}");
    items
}

async fn reports_become_stations_areas_grids_and_stats(ctx: PipelineContext) {
    let cell = json!({"radioType": "lte", "mobileCountryCode": 262, "mobileNetworkCode": 1, "locationAreaCode": 7, "cellId": 100, "signalStrength": -90});
    let nr = json!({"radioType": "nr", "mobileCountryCode": 262, "mobileNetworkCode": 1, "locationAreaCode": 70000, "cellId": 68_719_476_735i64, "primaryScramblingCode": 1000});
    let mut reports = vec![];
    for i in 0..4 {
        let mut r = wifi_report(
            51.0 + i as f64 * 0.0001,
            10.0,
            &["0123f456789a", "01:23:f4:56:78:9b"],
        );
        r["cellTowers"] = json!([cell, nr]);
        r["bluetoothBeacons"] = json!([{"macAddress": "aabbcc000001"}]);
        reports.push(r);
    }
    // Rejected: in the open ocean; and a report without networks.
    reports.push(wifi_report(0.0, 0.0, &["0123f456789c"]));
    submit(&ctx, None, "gnss", reports).await;
    assert!(drain(&ctx).await > 0);

    let macs = [
        Mac::from_hex("0123f456789a").unwrap(),
        Mac::from_hex("0123f456789b").unwrap(),
        Mac::from_hex("0123f456789c").unwrap(),
    ];
    let wifi = ctx.store.wifi_stations(&macs).await.unwrap();
    assert_eq!(wifi.len(), 2, "the ocean report was rejected");
    for w in &wifi {
        assert_eq!(w.fields.samples, Some(4));
        assert!(
            (w.fields.lat.unwrap() - 51.00015).abs() < 1e-9,
            "{:?}",
            w.fields.lat
        );
        assert_eq!(w.fields.lon, Some(10.0));
        assert_eq!(w.fields.radius, Some(17), "half the 33 m spread, rounded");
        assert_eq!(w.fields.region.as_deref(), Some("DE"));
        assert_eq!(w.fields.source, Some(ReportSource::Gnss));
        assert_eq!(w.fields.weight, Some(4.0));
    }
    let blue = ctx
        .store
        .blue_stations(&[Mac::from_hex("aabbcc000001").unwrap()])
        .await
        .unwrap();
    assert_eq!(blue[0].fields.samples, Some(4));
    let lte = CellKey {
        radio: Radio::Lte,
        mcc: 262,
        mnc: 1,
        lac: 7,
        cid: 100,
    };
    let nr_key = CellKey {
        radio: Radio::Nr,
        mcc: 262,
        mnc: 1,
        lac: 70_000,
        cid: (1 << 36) - 1,
    };
    let cells = ctx.store.cell_stations(&[lte, nr_key]).await.unwrap();
    assert_eq!(cells.len(), 2);
    assert_eq!(
        cells.iter().find(|c| c.key == nr_key).unwrap().psc,
        Some(1000)
    );
    let areas = ctx
        .store
        .cell_areas(&[lte.area(), nr_key.area()])
        .await
        .unwrap();
    assert_eq!(areas.len(), 2);
    assert!(
        areas
            .iter()
            .all(|a| a.num_cells == Some(1) && a.region.as_deref() == Some("DE"))
    );
    let grids = ctx
        .store
        .datamap_rows(Quadrant::Ne, &[DatamapGrid::from_position(51.0, 10.0)])
        .await
        .unwrap();
    assert_eq!(grids.len(), 1);
    let today = Utc::now().date_naive();
    let mut counters = ctx.store.stat_counters(today).await.unwrap();
    counters.sort();
    assert_eq!(
        counters,
        vec![
            (StatKey::Cell, 8),
            (StatKey::UniqueCell, 2),
            (StatKey::Wifi, 8),
            (StatKey::UniqueWifi, 2),
            (StatKey::Blue, 4),
            (StatKey::UniqueBlue, 1),
            (StatKey::Nr, 4),
            (StatKey::UniqueNr, 1)
        ]
    );
    assert_eq!(ctx.queue.len(UPDATE_INCOMING).await.unwrap(), 0);
}

async fn moved_network_is_blocklisted(ctx: PipelineContext) {
    let mac = Mac::from_hex("0123f456789a").unwrap();
    submit(
        &ctx,
        None,
        "gnss",
        vec![wifi_report(51.0, 10.0, &["0123f456789a", "0123f456789b"])],
    )
    .await;
    drain(&ctx).await;
    assert!(
        ctx.store.wifi_stations(&[mac]).await.unwrap()[0]
            .fields
            .lat
            .is_some()
    );
    // Seen 100 km away: the access point moved.
    submit(
        &ctx,
        None,
        "gnss",
        vec![wifi_report(51.9, 10.0, &["0123f456789a"])],
    )
    .await;
    drain(&ctx).await;
    let moved = &ctx.store.wifi_stations(&[mac]).await.unwrap()[0].fields;
    assert_eq!(
        (moved.lat, moved.samples, moved.block_count),
        (None, None, Some(1))
    );
    assert_eq!(moved.block_last, Some(Utc::now().date_naive()));
    assert_eq!(moved.region.as_deref(), Some("DE"), "region kept");
    // While blocked, further observations change nothing.
    submit(
        &ctx,
        None,
        "gnss",
        vec![wifi_report(51.9, 10.0, &["0123f456789a"])],
    )
    .await;
    drain(&ctx).await;
    assert_eq!(
        ctx.store.wifi_stations(&[mac]).await.unwrap()[0].fields,
        *moved
    );
}

async fn replayed_batches_are_applied_once(ctx: PipelineContext) {
    // Simulate a worker that applied a station batch and died before acking it.
    let queue = update_wifi(Mac::from_hex("0123f456789a").unwrap().shard());
    submit(
        &ctx,
        None,
        "gnss",
        vec![wifi_report(51.0, 10.0, &["0123f456789a"])],
    )
    .await;
    ichnaea_pipeline::incoming::run_once(&ctx).await.unwrap();
    ichnaea_pipeline::export::run_once(&ctx, true)
        .await
        .unwrap();
    let batch = ctx
        .queue
        .lease(&queue, 500, Duration::from_millis(200))
        .await
        .unwrap()
        .unwrap();
    let now = Utc::now().naive_utc();
    let key = ichnaea_store::StationKey::Mac(Mac::from_hex("0123f456789a").unwrap());
    let table = ichnaea_store::StationTable::Wifi(Mac::from_hex("0123f456789a").unwrap().shard());
    // The crashed worker's effects: the batch id is recorded with its rows.
    assert!(
        ctx.store
            .apply_station_batch(table, &queue, &batch.id, now, &[key], |_| Default::default(
            ))
            .await
            .unwrap()
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    // The batch comes back; the next worker sees it is done and only acks it.
    ichnaea_pipeline::stations::run_once(&ctx, &queue, table)
        .await
        .unwrap();
    assert!(
        ctx.store
            .wifi_stations(&[Mac::from_hex("0123f456789a").unwrap()])
            .await
            .unwrap()
            .is_empty(),
        "not applied twice"
    );
    assert_eq!(ctx.queue.len(&queue).await.unwrap(), 0);
    // Whole-pipeline replays of queue-to-queue stages: re-run everything.
    submit(
        &ctx,
        None,
        "gnss",
        vec![wifi_report(51.0, 10.0, &["0123f456789b"])],
    )
    .await;
    drain(&ctx).await;
    let b = ctx
        .store
        .wifi_stations(&[Mac::from_hex("0123f456789b").unwrap()])
        .await
        .unwrap();
    assert_eq!(b[0].fields.samples, Some(1));
}

async fn exports_follow_skip_rules_and_partitions(ctx: PipelineContext) {
    let mut dummy = ExportConfig::new("dummy", ExportSchema::Dummy);
    dummy.skip_sources = Some(vec![ReportSource::Query]);
    ctx.store.insert_export_config(&dummy).await.unwrap();
    let mut s3 = ExportConfig::new("bk", ExportSchema::S3);
    s3.url = Some("file:///nonexistent/{source}".into());
    s3.skip_keys = Some(vec!["partner".into()]);
    ctx.store.insert_export_config(&s3).await.unwrap();
    let odd = ExportConfig::new("odd", ExportSchema::parse("ftp"));
    ctx.store.insert_export_config(&odd).await.unwrap();
    let r = || vec![wifi_report(51.0, 10.0, &["0123f456789a"])];
    submit(&ctx, None, "gnss", r()).await;
    submit(&ctx, Some("test"), "query", r()).await;
    submit(&ctx, Some("partner"), "fused", r()).await;
    ichnaea_pipeline::incoming::run_once(&ctx).await.unwrap();
    let q = &ctx.queue;
    assert_eq!(q.len("queue_export_internal").await.unwrap(), 3);
    assert_eq!(
        q.len("queue_export_dummy").await.unwrap(),
        2,
        "query skipped"
    );
    assert_eq!(q.len("queue_export_odd").await.unwrap(), 3);
    assert_eq!(
        q.queue_names("queue_export_bk:").await.unwrap(),
        vec![
            "queue_export_bk:gnss:no_key".to_string(),
            "queue_export_bk:query:test".to_string()
        ]
    );
    // Dummy and internal exports drain; the unknown schema keeps its reports.
    ichnaea_pipeline::export::run_once(&ctx, true)
        .await
        .unwrap();
    assert_eq!(q.len("queue_export_dummy").await.unwrap(), 0);
    assert_eq!(q.len("queue_export_internal").await.unwrap(), 0);
    assert_eq!(q.len("queue_export_odd").await.unwrap(), 3);
    let (_, stuck) = worker::backlog(&ctx).await.unwrap();
    assert_eq!(stuck, vec![("queue_export_odd".to_string(), 3)]);
}

async fn rate_control_lowers_the_locate_sample_rate(ctx: PipelineContext) {
    use ichnaea_pipeline::rate_control::{PidState, RateControl, run};
    let params = RateControl::new(10.0).unwrap();
    let state = std::sync::Mutex::new(PidState::default());
    run(ctx.clone(), params, &state).await.unwrap();
    assert_eq!(
        ctx.counters.locate_sample_rate().await.unwrap(),
        Some(100.0),
        "empty queues"
    );
    // 9 reports waiting (target 10): 8 * (10 - 9) / 10 -> 80 %.
    let items: Vec<Vec<u8>> = (0..9).map(|_| b"{}".to_vec()).collect();
    ctx.queue.push(UPDATE_INCOMING, items).await.unwrap();
    run(ctx.clone(), params, &state).await.unwrap();
    assert_eq!(ctx.counters.locate_sample_rate().await.unwrap(), Some(80.0));
    ctx.queue
        .push(UPDATE_INCOMING, vec![b"{}".to_vec(); 5])
        .await
        .unwrap();
    run(ctx.clone(), params, &state).await.unwrap();
    assert_eq!(
        ctx.counters.locate_sample_rate().await.unwrap(),
        Some(0.0),
        "above the target"
    );
}

// ---- pipeline §9: "Behaviours a test should check" ----
//
// One test per case that needs queues, the store or exporters, named after the
// case number; the pure rules are in `crates/core/tests/pipeline_rules.rs`.
// Where the project deliberately departs from the original (ARCHITECTURE.md),
// the test asserts the project's behaviour and says so.

/// Counters recorded on the current thread. `#[tokio::test]` runs each test on a
/// current-thread runtime, so a thread-local recorder sees exactly the metrics
/// of its own test, whatever else runs in parallel.
#[derive(Default)]
struct TestMetrics {
    counters: Slots,
    gauges: Slots,
}

/// A metric name with its labels, sorted.
type MetricId = (String, Vec<(String, String)>);

/// Recorded values by metric.
type Slots = Mutex<BTreeMap<MetricId, Arc<AtomicU64>>>;

fn metric_id(name: &str, labels: impl Iterator<Item = (String, String)>) -> MetricId {
    let mut labels: Vec<(String, String)> = labels.collect();
    labels.sort();
    (name.to_string(), labels)
}

/// The value recorded for `name` with exactly `labels` (in any order).
fn recorded(slots: &Slots, name: &str, labels: &[(&str, &str)]) -> Option<u64> {
    let id = metric_id(
        name,
        labels.iter().map(|(k, v)| (k.to_string(), v.to_string())),
    );
    slots
        .lock()
        .unwrap()
        .get(&id)
        .map(|c| c.load(Ordering::SeqCst))
}

/// The slot of the metric `key`, made on first use.
fn slot(slots: &Slots, key: &Key) -> Arc<AtomicU64> {
    let labels = key
        .labels()
        .map(|l| (l.key().to_string(), l.value().to_string()));
    slots
        .lock()
        .unwrap()
        .entry(metric_id(key.name(), labels))
        .or_default()
        .clone()
}

impl TestMetrics {
    /// The counter with exactly these labels (in any order); 0 if never counted.
    fn counter(&self, name: &str, labels: &[(&str, &str)]) -> u64 {
        recorded(&self.counters, name, labels).unwrap_or(0)
    }

    /// The gauge with exactly these labels; `None` if never set.
    fn gauge(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        recorded(&self.gauges, name, labels).map(f64::from_bits)
    }

    /// The sum of a counter over all its label sets.
    fn total(&self, name: &str) -> u64 {
        self.counters
            .lock()
            .unwrap()
            .iter()
            .filter(|((n, _), _)| n == name)
            .map(|(_, c)| c.load(Ordering::SeqCst))
            .sum()
    }
}

impl metrics::Recorder for TestMetrics {
    fn describe_counter(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_gauge(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_histogram(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}

    fn register_counter(&self, key: &Key, _: &Metadata<'_>) -> Counter {
        Counter::from_arc(slot(&self.counters, key))
    }

    fn register_gauge(&self, key: &Key, _: &Metadata<'_>) -> Gauge {
        Gauge::from_arc(slot(&self.gauges, key))
    }

    fn register_histogram(&self, _: &Key, _: &Metadata<'_>) -> Histogram {
        Histogram::noop()
    }
}

/// The context with the bundled OpenStreetMap regions instead of the test
/// geocoder, for the cases whose positions are near (51.5, −0.1), region GB.
fn with_regions(mut ctx: PipelineContext) -> PipelineContext {
    ctx.geocoder = Arc::new(RegionGeocoder::new().unwrap());
    ctx
}

/// `now` truncated to whole seconds, as the tasks take it.
fn now_s() -> NaiveDateTime {
    let now = Utc::now().naive_utc();
    now - chrono::Duration::nanoseconds(i64::from(now.and_utc().timestamp_subsec_nanos()))
}

fn today() -> NaiveDate {
    Utc::now().date_naive()
}

const LAT: f64 = 51.5;
const LON: f64 = -0.1;

/// Positions agree to 1e-7 degrees.
#[track_caller]
fn assert_deg(actual: Option<f64>, expected: f64) {
    let a = actual.expect("a position");
    assert!(
        (a - expected).abs() <= 0.5e-7,
        "{a} is not {expected} to 1e-7 degrees"
    );
}

/// A point `metres` away from (lat, lon) along `bearing` degrees.
fn moved(lat: f64, lon: f64, bearing: f64, metres: f64) -> (f64, f64) {
    ichnaea_core::geo::destination(lat, lon, bearing, metres).unwrap()
}

fn obs_pos(lat: f64, lon: f64, source: ReportSource) -> ObsPosition {
    ObsPosition {
        lat,
        lon,
        accuracy: Some(10.0),
        source: Some(source.code()),
        ..ObsPosition::default()
    }
}

/// A queued Wi-Fi observation of weight 1 (accuracy 10 m, signal −80 dBm).
fn wifi_obs(mac: &str, lat: f64, lon: f64, source: ReportSource) -> Vec<u8> {
    serde_json::to_vec(&WifiObservation {
        pos: obs_pos(lat, lon, source),
        mac: mac.into(),
        age: None,
        channel: None,
        frequency: None,
        signal: Some(-80),
        snr: None,
    })
    .unwrap()
}

/// A queued cell observation of weight 1 (accuracy 10 m, median signal).
fn cell_obs(key: CellKey, lat: f64, lon: f64, source: ReportSource) -> Vec<u8> {
    serde_json::to_vec(&CellObservation {
        pos: obs_pos(lat, lon, source),
        radio: key.radio.code(),
        mcc: key.mcc.into(),
        mnc: key.mnc.into(),
        lac: key.lac.into(),
        cid: key.cid as i64,
        psc: None,
        age: None,
        asu: None,
        signal: None,
        ta: None,
    })
    .unwrap()
}

fn gsm_cell(lac: u32, cid: u64) -> CellKey {
    CellKey {
        radio: Radio::Gsm,
        mcc: 234,
        mnc: 30,
        lac,
        cid,
    }
}

/// Runs one Wi-Fi station batch of the shard of `mac`.
async fn run_wifi(ctx: &PipelineContext, mac: &str, items: Vec<Vec<u8>>) {
    let shard = Mac::from_hex(mac).unwrap().shard();
    let queue = update_wifi(shard);
    ctx.queue.push(&queue, items).await.unwrap();
    stations::run_once(ctx, &queue, StationTable::Wifi(shard))
        .await
        .unwrap();
    assert_eq!(ctx.queue.len(&queue).await.unwrap(), 0);
}

/// Runs one GSM station batch.
async fn run_gsm(ctx: &PipelineContext, items: Vec<Vec<u8>>) {
    let queue = update_cell(Radio::Gsm);
    ctx.queue.push(&queue, items).await.unwrap();
    stations::run_once(ctx, &queue, StationTable::Cell(Radio::Gsm))
        .await
        .unwrap();
    assert_eq!(ctx.queue.len(&queue).await.unwrap(), 0);
}

async fn wifi_row(ctx: &PipelineContext, mac: &str) -> Option<StationFields> {
    ctx.store
        .wifi_stations(&[Mac::from_hex(mac).unwrap()])
        .await
        .unwrap()
        .pop()
        .map(|s| s.fields)
}

async fn cell_row(ctx: &PipelineContext, key: CellKey) -> Option<CellStation> {
    ctx.store.cell_stations(&[key]).await.unwrap().pop()
}

/// Takes everything queued in `update_cellarea` (sorted area ids).
async fn queued_areas(ctx: &PipelineContext) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    while let Some(batch) = ctx
        .queue
        .lease(UPDATE_CELLAREA, 1000, Duration::from_secs(60))
        .await
        .unwrap()
    {
        out.extend(batch.items.iter().cloned());
        ctx.queue.ack(&batch).await.unwrap();
    }
    out.sort();
    out
}

async fn counters_today(ctx: &PipelineContext) -> Vec<(StatKey, i64)> {
    let mut c = ctx.store.stat_counters(today()).await.unwrap();
    c.sort();
    c
}

/// Runs the multiplexer and every ready export until nothing is left to do.
async fn multiplex_and_export(ctx: &PipelineContext, drain: bool) {
    while ichnaea_pipeline::incoming::run_once(ctx).await.unwrap() > 0 {}
    while ichnaea_pipeline::export::run_once(ctx, drain)
        .await
        .unwrap()
        > 0
    {}
}

fn position(lat: f64, lon: f64) -> Value {
    json!({"latitude": lat, "longitude": lon, "accuracy": 10.0})
}

/// §9 case 1 (§2.10.6, §3.1): an observation with accuracy 200.1 m is valid, so
/// it is queued, but weighs 0: the updater drops it without any counter.
async fn case_01_zero_weight_observation_is_dropped_uncounted(ctx: PipelineContext) {
    let metrics = TestMetrics::default();
    let _guard = metrics::set_default_local_recorder(&metrics);
    let mac = "0123f456789a";
    let report = json!({"position": {"latitude": 51.0, "longitude": 10.0, "accuracy": 200.1},
                        "wifiAccessPoints": [{"macAddress": mac, "signalStrength": -80}]});
    submit(&ctx, None, "gnss", vec![report]).await;
    multiplex_and_export(&ctx, true).await;
    let queue = update_wifi(Mac::from_hex(mac).unwrap().shard());
    assert_eq!(ctx.queue.len(&queue).await.unwrap(), 1, "queued");
    assert_eq!(
        metrics.counter("data.observation.upload", &[("type", "wifi")]),
        1
    );
    drain(&ctx).await;
    assert_eq!(ctx.queue.len(&queue).await.unwrap(), 0, "taken");
    assert_eq!(wifi_row(&ctx, mac).await, None);
    assert_eq!(counters_today(&ctx).await, vec![]);
    for name in [
        "data.observation.insert",
        "data.station.new",
        "data.station.confirm",
        "data.station.blocklist",
    ] {
        assert_eq!(metrics.total(name), 0, "{name}");
    }
}

/// A `LogCapture` collects what the code under test logs, for assertions.
#[derive(Clone, Default)]
struct LogCapture(Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for LogCapture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl LogCapture {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

/// Items on `update_incoming` without a known source (or not items at all) are
/// counted in `data.incoming.undecodable` and logged, and never routed as GNSS
/// reports; the valid item of the same batch goes on.
async fn undecodable_incoming_items_are_counted_and_logged(ctx: PipelineContext) {
    let metrics = TestMetrics::default();
    let _guard = metrics::set_default_local_recorder(&metrics);
    let logs = LogCapture::default();
    let writer = logs.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .finish();
    let _log_guard = tracing::subscriber::set_default(subscriber);

    let report = wifi_report(51.0, 10.0, &["0123f456789a", "0123f456789b"]);
    let items: Vec<Vec<u8>> = [
        json!({"api_key": null, "source": "gps", "report": report}),
        json!({"api_key": null, "report": report}),
        json!({"api_key": null, "source": "gnss", "report": report}),
    ]
    .iter()
    .map(|v| serde_json::to_vec(v).unwrap())
    .chain([b"not json".to_vec()])
    .collect();
    ctx.queue.push(UPDATE_INCOMING, items).await.unwrap();
    // The multiplexer only: the internal target would take the item at once.
    while ichnaea_pipeline::incoming::run_once(&ctx).await.unwrap() > 0 {}

    assert_eq!(ctx.queue.len(UPDATE_INCOMING).await.unwrap(), 0);
    assert_eq!(metrics.total("data.incoming.undecodable"), 3);
    assert_eq!(metrics.total("data.incoming.multiplexed"), 4);
    assert_eq!(
        ctx.queue
            .len(&ichnaea_core::queues::export_queue("internal", None))
            .await
            .unwrap(),
        1,
        "only the item with a known source reaches the export queue"
    );
    let text = logs.text();
    assert_eq!(
        text.matches("undecodable item in update_incoming dropped")
            .count(),
        3,
        "{text}"
    );
    assert!(text.contains("unknown variant `gps`"), "{text}");
    assert!(text.contains("missing field `source`"), "{text}");
}

/// §9 case 5 (§2.9.2): a GSM cell with cid 70 000 is routed to
/// `update_cell_wcdma` and stored in `cell_wcdma` with radio 2.
async fn case_05_large_gsm_cid_is_stored_as_wcdma(ctx: PipelineContext) {
    let report = json!({"position": position(51.0, 10.0), "cellTowers": [
        {"radioType": "gsm", "mobileCountryCode": 262, "mobileNetworkCode": 1,
         "locationAreaCode": 5, "cellId": 70_000}]});
    submit(&ctx, None, "gnss", vec![report]).await;
    multiplex_and_export(&ctx, true).await;
    assert_eq!(ctx.queue.len(&update_cell(Radio::Wcdma)).await.unwrap(), 1);
    assert_eq!(ctx.queue.len(&update_cell(Radio::Gsm)).await.unwrap(), 0);
    drain(&ctx).await;
    let key = CellKey {
        radio: Radio::Wcdma,
        mcc: 262,
        mnc: 1,
        lac: 5,
        cid: 70_000,
    };
    let cell = cell_row(&ctx, key).await.expect("stored as wcdma");
    assert_eq!(cell.key.radio.code(), 2);
    assert_eq!(ctx.store.row_count("cell_wcdma").await.unwrap(), Some(1));
    assert_eq!(ctx.store.row_count("cell_gsm").await.unwrap(), Some(0));
}

/// §9 case 6 (§2.10.3, §2.10.7): LTE psc 504 is stored as NULL; an entry with a
/// psc but no lac is rejected and counted in `data.observation.drop{type:cell}`.
async fn case_06_rejected_cell_entry_counts_an_observation_drop(ctx: PipelineContext) {
    let metrics = TestMetrics::default();
    let _guard = metrics::set_default_local_recorder(&metrics);
    let report = json!({"position": position(51.0, 10.0), "cellTowers": [
        {"radioType": "lte", "mobileCountryCode": 262, "mobileNetworkCode": 1,
         "locationAreaCode": 5, "cellId": 9, "primaryScramblingCode": 504},
        {"radioType": "wcdma", "mobileCountryCode": 262, "mobileNetworkCode": 1,
         "cellId": 10, "primaryScramblingCode": 20}]});
    submit(&ctx, None, "gnss", vec![report]).await;
    drain(&ctx).await;
    assert_eq!(
        metrics.counter("data.observation.drop", &[("type", "cell")]),
        1
    );
    assert_eq!(
        metrics.counter("data.observation.upload", &[("type", "cell")]),
        1
    );
    assert_eq!(metrics.total("data.report.drop"), 0);
    let key = CellKey {
        radio: Radio::Lte,
        mcc: 262,
        mnc: 1,
        lac: 5,
        cid: 9,
    };
    let cell = cell_row(&ctx, key).await.unwrap();
    assert_eq!(cell.psc, None);
    assert_eq!(ctx.store.row_count("cell_wcdma").await.unwrap(), Some(0));
}

/// §9 case 9 (§1.5): MAC `3680873e9b83` → queue `update_blue_8`, table
/// `blue_shard_8`.
async fn case_09_bluetooth_mac_goes_to_blue_shard_8(ctx: PipelineContext) {
    let report = json!({"position": position(51.0, 10.0),
                        "bluetoothBeacons": [{"macAddress": "3680873e9b83"}]});
    submit(&ctx, None, "gnss", vec![report]).await;
    multiplex_and_export(&ctx, true).await;
    assert_eq!(ctx.queue.len("update_blue_8").await.unwrap(), 1);
    drain(&ctx).await;
    assert_eq!(ctx.store.row_count("blue_shard_8").await.unwrap(), Some(1));
    let blue = ctx
        .store
        .blue_stations(&[Mac::from_hex("3680873e9b83").unwrap()])
        .await
        .unwrap();
    assert_eq!(blue[0].fields.samples, Some(1));
}

/// §9 case 10 (§2.9, §2.10.7): a report at (0, 0) counts in `data.report.upload`
/// and `data.report.drop` and produces no observation and no data-map grid.
async fn case_10_ocean_report_is_counted_and_dropped(ctx: PipelineContext) {
    let metrics = TestMetrics::default();
    let _guard = metrics::set_default_local_recorder(&metrics);
    let report = json!({"position": position(0.0, 0.0),
                        "wifiAccessPoints": [{"macAddress": "0123f456789a", "signalStrength": -80}]});
    submit(&ctx, None, "gnss", vec![report]).await;
    multiplex_and_export(&ctx, true).await;
    assert_eq!(metrics.counter("data.report.upload", &[]), 1);
    assert_eq!(metrics.counter("data.report.drop", &[]), 1);
    assert_eq!(metrics.total("data.observation.upload"), 0);
    assert_eq!(
        ctx.queue.queue_names("update_").await.unwrap(),
        Vec::<String>::new(),
        "no observation, no grid"
    );
}

/// §2.9 step 2 and §2.10.7 (with §9 case 10's metrics): the internal
/// exporter's counters carry a `key` tag only for api keys that exist in
/// `api_key`; reports of unknown keys are counted without one.
async fn case_10_metrics_tag_only_known_api_keys(ctx: PipelineContext) {
    let metrics = TestMetrics::default();
    let _guard = metrics::set_default_local_recorder(&metrics);
    ctx.store
        .insert_api_key(&ichnaea_core::ApiKey::new("test"))
        .await
        .unwrap();
    let report = || {
        json!({"position": position(51.0, 10.0),
               "wifiAccessPoints": [{"macAddress": "0123f456789a", "signalStrength": -80}]})
    };
    submit(&ctx, Some("test"), "gnss", vec![report()]).await;
    submit(&ctx, Some("not-a-key"), "gnss", vec![report(), report()]).await;
    multiplex_and_export(&ctx, true).await;
    assert_eq!(
        metrics.counter("data.report.upload", &[("key", KEY_LABEL)]),
        1
    );
    assert_eq!(
        metrics.counter("data.report.upload", &[("key", "test")]),
        0,
        "never the key itself"
    );
    assert_eq!(
        metrics.counter(
            "data.observation.upload",
            &[("key", KEY_LABEL), ("type", "wifi")]
        ),
        1
    );
    assert_eq!(
        metrics.counter("data.report.upload", &[("key", &metric_label("not-a-key"))]),
        0,
        "an unknown key is not a tag"
    );
    assert_eq!(metrics.counter("data.report.upload", &[]), 2);
    assert_eq!(
        metrics.counter("data.observation.upload", &[("type", "wifi")]),
        2
    );
}

/// §9 case 11 (§2.10.1): a report at latitude −90.1 is dropped; the other
/// report of the same batch is processed normally.
async fn case_11_invalid_report_does_not_stop_its_batch(ctx: PipelineContext) {
    let metrics = TestMetrics::default();
    let _guard = metrics::set_default_local_recorder(&metrics);
    let bad = json!({"position": position(-90.1, 10.0),
                     "wifiAccessPoints": [{"macAddress": "0123f456789a", "signalStrength": -80}]});
    let good = json!({"position": position(51.0, 10.0),
                      "wifiAccessPoints": [{"macAddress": "0123f456789b", "signalStrength": -80}]});
    submit(&ctx, None, "gnss", vec![bad, good]).await;
    drain(&ctx).await;
    assert_eq!(wifi_row(&ctx, "0123f456789a").await, None);
    assert_eq!(
        wifi_row(&ctx, "0123f456789b").await.unwrap().samples,
        Some(1)
    );
    assert_eq!(ctx.store.station_totals("wifi").await.unwrap(), (1, 1));
    assert_eq!(metrics.counter("data.report.upload", &[]), 2);
    assert_eq!(metrics.counter("data.report.drop", &[]), 1);
}

async fn dummy_export(
    ctx: &PipelineContext,
    name: &str,
    batch: i64,
    skip_keys: Option<&[&str]>,
    skip_sources: Option<Vec<ReportSource>>,
) {
    let mut config = ExportConfig::new(name, ExportSchema::Dummy);
    config.batch = batch;
    config.skip_keys = skip_keys.map(|k| k.iter().map(|s| s.to_string()).collect());
    config.skip_sources = skip_sources;
    ctx.store.insert_export_config(&config).await.unwrap();
}

/// §9 case 15 (§2.4, §2.5): the multiplexer copies each report to every export
/// that allows its (api key, source) pair, and each export sends whole batches
/// while its queue holds one.
async fn case_15_multiplexer_fills_export_queues_by_skip_rules(ctx: PipelineContext) {
    let metrics = TestMetrics::default();
    let _guard = metrics::set_default_local_recorder(&metrics);
    assert!(ctx.store.delete_export_config("internal").await.unwrap());
    dummy_export(&ctx, "test", 3, Some(&["export_source"]), None).await;
    dummy_export(&ctx, "everything", 5, None, None).await;
    dummy_export(&ctx, "no_test", 2, Some(&["test", "test_1"]), None).await;
    dummy_export(&ctx, "query", 2, None, Some(vec![ReportSource::Gnss])).await;
    let r = |n: usize| vec![wifi_report(51.0, 10.0, &["0123f456789a"]); n];
    submit(&ctx, Some("test"), "gnss", r(4)).await;
    submit(&ctx, Some("test2"), "gnss", r(1)).await;
    submit(&ctx, None, "gnss", r(2)).await;
    submit(&ctx, Some("test"), "query", r(1)).await;
    multiplex_and_export(&ctx, false).await;
    let q = &ctx.queue;
    assert_eq!(q.len("queue_export_test").await.unwrap(), 2);
    assert_eq!(q.len("queue_export_everything").await.unwrap(), 3);
    assert_eq!(q.len("queue_export_no_test").await.unwrap(), 1);
    assert_eq!(q.len("queue_export_query").await.unwrap(), 1);
    assert_eq!(q.len(UPDATE_INCOMING).await.unwrap(), 0);
    for (name, batches) in [("test", 2), ("everything", 1), ("no_test", 1), ("query", 0)] {
        assert_eq!(
            metrics.counter("data.export.batch", &[("key", name)]),
            batches,
            "{name}"
        );
    }
}

/// Exporters whose geosubmit retries wait 5 ms instead of 1 s and 2 s.
fn fast_exporters() -> Arc<Exporters> {
    Arc::new(Exporters {
        geosubmit: GeosubmitExporter::new(Duration::from_secs(5))
            .unwrap()
            .with_backoff(vec![Duration::from_millis(5), Duration::from_millis(5)]),
        objects: ObjectExporter::new(),
    })
}

async fn geosubmit_export(ctx: &PipelineContext, base: &str, batch: i64) {
    let mut config = ExportConfig::new("test", ExportSchema::Geosubmit);
    config.batch = batch;
    config.url = Some(format!("{base}/v2/geosubmit?key=test"));
    ctx.store.insert_export_config(&config).await.unwrap();
}

fn four_reports() -> Vec<Value> {
    (0..4)
        .map(|i| wifi_report(51.0 + f64::from(i) * 0.001, 10.0, &["0123f456789a"]))
        .collect()
}

/// §9 case 16 (§2.7): a geosubmit export with batch 4 and 4 queued reports
/// makes exactly one POST of the gzip JSON `{"items": [4 reports]}`.
async fn case_16_geosubmit_export_posts_one_batch(mut ctx: PipelineContext) {
    let metrics = TestMetrics::default();
    let _guard = metrics::set_default_local_recorder(&metrics);
    ctx.exporters = fast_exporters();
    assert!(ctx.store.delete_export_config("internal").await.unwrap());
    let fake = FakeHttp::start(&[]).await;
    let base = fake.url();
    geosubmit_export(&ctx, base, 4).await;
    let reports = four_reports();
    submit(&ctx, None, "gnss", reports.clone()).await;
    multiplex_and_export(&ctx, false).await;
    let seen = fake.requests();
    assert_eq!(seen.len(), 1, "exactly one POST");
    assert_eq!(seen[0].path, "/v2/geosubmit");
    assert_eq!(seen[0].gunzip_json(), json!({"items": reports}));
    assert_eq!(seen[0].header("content-encoding"), "gzip");
    assert_eq!(seen[0].header("content-type"), "application/json");
    assert_eq!(seen[0].header("user-agent"), "ichnaea");
    assert_eq!(metrics.counter("data.export.batch", &[("key", "test")]), 1);
    assert_eq!(
        metrics.counter("data.export.upload", &[("key", "test"), ("status", "200")]),
        1
    );
    assert_eq!(ctx.queue.len("queue_export_test").await.unwrap(), 0);
}

/// §9 case 17 (§2.4, §2.8): an s3 export (here a `file://` URL into a temporary
/// directory; the S3 wire format is tested in `tests/exporters.rs`) writes one
/// object per (source, api key) partition.
async fn case_17_s3_export_writes_one_object_per_partition(ctx: PipelineContext) {
    assert!(ctx.store.delete_export_config("internal").await.unwrap());
    let tmp = TempDir::new("pipeline-export");
    let mut config = ExportConfig::new("backup", ExportSchema::S3);
    config.batch = 3;
    config.url = Some(format!(
        "file://{}/backups/{{source}}/{{api_key}}/{{year}}/{{month}}/{{day}}",
        tmp.as_str()
    ));
    ctx.store.insert_export_config(&config).await.unwrap();
    let pairs: [(&str, Option<&str>); 5] = [
        ("gnss", Some("test")),
        ("gnss", Some("e5444-794")),
        ("fused", Some("e5444-794")),
        ("gnss", None),
        ("gnss", Some("no-position")),
    ];
    let mut sent = BTreeMap::new();
    for (i, (source, key)) in pairs.iter().enumerate() {
        let reports: Vec<Value> = (0..3)
            .map(|j| wifi_report(51.0 + (i * 3 + j) as f64 * 0.001, 10.0, &["0123f456789a"]))
            .collect();
        submit(&ctx, *key, source, reports.clone()).await;
        sent.insert(
            format!("{source}/{}", key.unwrap_or("no_key")),
            json!({"items": reports}),
        );
    }
    multiplex_and_export(&ctx, false).await;
    let day = today();
    let found = files(tmp.path());
    assert_eq!(found.len(), 5, "{found:?}");
    let mut got = BTreeMap::new();
    for file in &found {
        let rel = file.strip_prefix(tmp.path()).unwrap().to_str().unwrap();
        let segments: Vec<&str> = rel.split('/').collect();
        assert_eq!(segments.len(), 7, "{rel}");
        assert_eq!(segments[0], "backups");
        assert_eq!(
            segments[3..6],
            [
                day.year().to_string(),
                day.month().to_string(),
                day.day().to_string()
            ],
            "unpadded date"
        );
        assert!(is_object_name(segments[6]), "{rel}");
        got.insert(
            format!("{}/{}", segments[1], segments[2]),
            gunzip_json(&std::fs::read(file).unwrap()),
        );
    }
    assert_eq!(got, sent);
    assert!(
        ctx.queue
            .queue_names("queue_export_backup")
            .await
            .unwrap()
            .is_empty()
    );
}

/// §9 case 18 (§2.5): an export whose first attempt fails with an I/O error
/// succeeds on the second; the batch is counted once. The dummy exporter
/// cannot fail here, so the export is an s3 one to a `file://` directory that
/// cannot be created at first (a regular file is in its way). Deliberate
/// departure (ARCHITECTURE.md, exactly-once rules): the failed batch is not
/// retried in-process nor discarded; it stays queued and is sent again once its
/// lease expires.
async fn case_18_failed_export_is_retried_after_its_lease(mut ctx: PipelineContext) {
    let metrics = TestMetrics::default();
    let _guard = metrics::set_default_local_recorder(&metrics);
    ctx.settings.export_visibility = Duration::from_millis(300);
    assert!(ctx.store.delete_export_config("internal").await.unwrap());
    let tmp = TempDir::new("pipeline-export");
    let blocker = tmp.join("out");
    std::fs::write(&blocker, b"not a directory").unwrap();
    let mut config = ExportConfig::new("test", ExportSchema::S3);
    config.batch = 2;
    config.url = Some(format!("file://{}/out/{{source}}", tmp.as_str()));
    ctx.store.insert_export_config(&config).await.unwrap();
    let reports = vec![
        wifi_report(51.0, 10.0, &["0123f456789a"]),
        wifi_report(51.1, 10.0, &["0123f456789a"]),
    ];
    submit(&ctx, None, "gnss", reports.clone()).await;
    multiplex_and_export(&ctx, false).await;
    let queue = "queue_export_test:gnss:no_key";
    assert_eq!(metrics.counter("data.export.batch", &[("key", "test")]), 0);
    assert_eq!(
        metrics.counter("data.export.failure", &[("key", "test")]),
        1
    );
    assert_eq!(
        metrics.counter(
            "data.export.upload",
            &[("key", "test"), ("status", "failure")]
        ),
        1
    );
    assert_eq!(ctx.queue.len(queue).await.unwrap(), 2, "still queued");

    std::fs::remove_file(&blocker).unwrap();
    tokio::time::sleep(Duration::from_millis(400)).await;
    multiplex_and_export(&ctx, false).await;
    assert_eq!(metrics.counter("data.export.batch", &[("key", "test")]), 1);
    assert_eq!(ctx.queue.len(queue).await.unwrap(), 0);
    let found = files(tmp.path());
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(found[0].starts_with(tmp.join("out/gnss")));
    assert_eq!(
        gunzip_json(&std::fs::read(&found[0]).unwrap()),
        json!({"items": reports})
    );
}

/// §9 case 19 (§2.5): an export whose send fails 3 times. Deliberate departure
/// (ARCHITECTURE.md): the original discarded the batch; here it is not
/// counted as exported, stays queued, and is sent — the same batch — once its
/// lease has expired and the target answers again.
async fn case_19_export_failing_three_times_stays_queued(mut ctx: PipelineContext) {
    let metrics = TestMetrics::default();
    let _guard = metrics::set_default_local_recorder(&metrics);
    ctx.exporters = fast_exporters();
    ctx.settings.export_visibility = Duration::from_millis(300);
    assert!(ctx.store.delete_export_config("internal").await.unwrap());
    let fake = FakeHttp::start(&[500, 500, 500]).await;
    let base = fake.url();
    geosubmit_export(&ctx, base, 4).await;
    let reports = four_reports();
    submit(&ctx, None, "gnss", reports.clone()).await;
    multiplex_and_export(&ctx, false).await;
    assert_eq!(fake.requests().len(), 3, "three attempts");
    assert_eq!(metrics.counter("data.export.batch", &[("key", "test")]), 0);
    assert_eq!(
        metrics.counter("data.export.upload", &[("key", "test"), ("status", "500")]),
        3
    );
    assert_eq!(ctx.queue.len("queue_export_test").await.unwrap(), 4);

    tokio::time::sleep(Duration::from_millis(400)).await;
    multiplex_and_export(&ctx, false).await;
    let seen = fake.requests();
    assert_eq!(seen.len(), 4);
    assert_eq!(seen[3].gunzip_json(), json!({"items": reports}));
    assert_eq!(metrics.counter("data.export.batch", &[("key", "test")]), 1);
    assert_eq!(ctx.queue.len("queue_export_test").await.unwrap(), 0);
}

/// §9 case 20 (§2.1): an export queue below its batch size is sent once its data
/// is old enough. Deliberate departure (ARCHITECTURE.md): readiness is judged by
/// the age of the OLDEST queued report, not by the time since the last push.
/// The 3 600 s limit is `export_max_age`; the test scales it down to 1 s
/// rather than wait an hour, and pushes a fresh report right before the check,
/// so the original's rule ("last push 0 s ago") would say "not ready".
async fn case_20_export_readiness_by_oldest_report_age(mut ctx: PipelineContext) {
    assert!(ctx.store.delete_export_config("internal").await.unwrap());
    dummy_export(&ctx, "test", 5, None, None).await;
    assert_eq!(ctx.settings.export_max_age, Duration::from_secs(3600));
    submit(
        &ctx,
        None,
        "gnss",
        vec![wifi_report(51.0, 10.0, &["0123f456789a"])],
    )
    .await;
    multiplex_and_export(&ctx, false).await;
    assert_eq!(
        ctx.queue.len("queue_export_test").await.unwrap(),
        1,
        "1 < 5 reports, oldest younger than 3 600 s: not ready"
    );

    ctx.settings.export_max_age = Duration::from_secs(1);
    multiplex_and_export(&ctx, false).await;
    assert_eq!(
        ctx.queue.len("queue_export_test").await.unwrap(),
        1,
        "oldest younger than the scaled limit: not ready"
    );
    tokio::time::sleep(Duration::from_millis(1100)).await;
    submit(
        &ctx,
        None,
        "gnss",
        vec![wifi_report(51.1, 10.0, &["0123f456789a"])],
    )
    .await;
    multiplex_and_export(&ctx, false).await;
    assert_eq!(
        ctx.queue.len("queue_export_test").await.unwrap(),
        0,
        "the oldest report is old enough: both are sent"
    );
}

/// A submission reaches the station queues on the next pass although the
/// `internal` target's batch (100) is not full: its batch size only groups what
/// streams in, and the queue goes as soon as `update_incoming` is empty.
async fn internal_target_goes_once_incoming_is_empty(ctx: PipelineContext) {
    let internal = ctx.store.export_config("internal").await.unwrap().unwrap();
    assert_eq!(internal.batch, 100);
    submit(
        &ctx,
        None,
        "gnss",
        vec![wifi_report(51.0, 10.0, &["0123f456789a", "0123f456789b"])],
    )
    .await;
    // While update_incoming still holds reports, the partial batch waits.
    while ichnaea_pipeline::incoming::run_once(&ctx).await.unwrap() > 0 {}
    submit(
        &ctx,
        None,
        "gnss",
        vec![wifi_report(51.0, 10.0, &["0123f456789c"])],
    )
    .await;
    assert_eq!(
        ichnaea_pipeline::export::run_once(&ctx, false)
            .await
            .unwrap(),
        0
    );
    assert_eq!(ctx.queue.len("queue_export_internal").await.unwrap(), 1);
    // Once it is empty, what is there goes.
    multiplex_and_export(&ctx, false).await;
    assert_eq!(ctx.queue.len("queue_export_internal").await.unwrap(), 0);
    let observations: u64 = {
        let mut n = 0;
        for q in ctx.queue.queue_names("update_wifi_").await.unwrap() {
            n += ctx.queue.len(&q).await.unwrap();
        }
        n
    };
    assert_eq!(observations, 3);
}

/// An idle worker's pass leases nothing: with every queue empty it reads the
/// queues' counters and stops, so an idle server neither spends CPU on a
/// lease per queue nor takes SQLite's write lock. Shown on SQLite by holding
/// the write lock on another connection: an idle pass still answers (a lease
/// would wait for the lock and fail), and a pass with work cannot.
#[tokio::test]
async fn idle_pass_takes_no_write_lock() {
    on_embedded(async |ctx: PipelineContext| {
        let pool = ctx.store.sqlite_pool().unwrap().clone();
        let mut writer = pool.acquire().await.unwrap();
        sqlx::query("BEGIN IMMEDIATE")
            .execute(&mut *writer)
            .await
            .unwrap();
        let stop = CancellationToken::new();
        let idle = tokio::time::timeout(Duration::from_secs(60), worker::pass(&ctx, false, &stop))
            .await
            .expect("an idle pass does not wait for the write lock");
        assert_eq!(idle.unwrap().items, 0);
        sqlx::query("ROLLBACK").execute(&mut *writer).await.unwrap();

        // With a report waiting, the pass needs the lock to lease it.
        submit(
            &ctx,
            None,
            "gnss",
            vec![wifi_report(51.0, 10.0, &["0123f456789a", "0123f456789b"])],
        )
        .await;
        sqlx::query("BEGIN IMMEDIATE")
            .execute(&mut *writer)
            .await
            .unwrap();
        let busy =
            tokio::time::timeout(Duration::from_millis(300), worker::pass(&ctx, false, &stop))
                .await;
        assert!(
            !matches!(busy, Ok(Ok(r)) if r.items > 0),
            "work cannot be leased while another connection writes"
        );
        sqlx::query("ROLLBACK").execute(&mut *writer).await.unwrap();
        let report = worker::pass(&ctx, false, &stop).await.unwrap();
        assert!(report.items > 0, "{report:?}");
    })
    .await;
}

/// An idle worker polls rarely, but a push through its own process (the web
/// role beside it) wakes it at once: with both waits set to a minute, a
/// submission made while the worker sleeps is still applied within seconds.
#[tokio::test]
async fn a_push_in_the_same_process_wakes_the_idle_worker() {
    on_embedded(async |mut ctx: PipelineContext| {
        ctx.settings.idle_poll = Duration::from_secs(60);
        ctx.settings.idle_poll_max = Duration::from_secs(60);
        let shutdown = CancellationToken::new();
        let worker = tokio::spawn(worker::run(ctx.clone(), shutdown.clone()));
        // Let the worker find nothing and start its minute of waiting.
        tokio::time::sleep(Duration::from_millis(500)).await;
        submit(
            &ctx,
            None,
            "gnss",
            vec![wifi_report(51.0, 10.0, &["0123f456789a", "0123f456789b"])],
        )
        .await;
        let began = std::time::Instant::now();
        let mut applied = 0;
        while began.elapsed() < Duration::from_secs(30) {
            applied = ctx.store.station_totals("wifi").await.unwrap().1;
            if applied == 2 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        shutdown.cancel();
        worker.await.unwrap();
        assert_eq!(applied, 2, "the push did not wake the worker");
    })
    .await;
}

/// One observation for each of the Wi-Fi shards `shards`, queued in their
/// station queues; returns how many.
async fn queue_wifi_shards(
    ctx: &PipelineContext,
    shards: std::ops::Range<u8>,
    per_shard: usize,
) -> i64 {
    let mut n = 0;
    for shard in shards {
        let items: Vec<Vec<u8>> = (0..per_shard)
            .map(|i| {
                let mac = format!("0caa{shard:x}0{i:06x}");
                assert_eq!(Mac::from_hex(&mac).unwrap().shard(), shard);
                wifi_obs(&mac, LAT, LON, ReportSource::Gnss)
            })
            .collect();
        n += items.len() as i64;
        ctx.queue.push(&update_wifi(shard), items).await.unwrap();
    }
    n
}

fn counted(counters: &[(StatKey, i64)], key: StatKey) -> i64 {
    counters
        .iter()
        .filter(|(k, _)| *k == key)
        .map(|(_, n)| n)
        .sum()
}

/// Passes running at once (two workers) share a backlog over many station
/// tables: every observation is applied exactly once and the queues end empty.
async fn concurrent_passes_apply_every_observation_once(mut ctx: PipelineContext) {
    ctx.settings.station_batch = 7;
    let queued = queue_wifi_shards(&ctx, 0..16, 40).await;
    let stop = CancellationToken::new();
    loop {
        let (a, b) = tokio::join!(
            worker::pass(&ctx, false, &stop),
            worker::pass(&ctx, false, &stop)
        );
        if a.unwrap().items + b.unwrap().items == 0 {
            break;
        }
    }
    for shard in 0..16 {
        assert_eq!(ctx.queue.len(&update_wifi(shard)).await.unwrap(), 0);
    }
    assert_eq!(counted(&counters_today(&ctx).await, StatKey::Wifi), queued);
    assert_eq!(
        counted(&counters_today(&ctx).await, StatKey::UniqueWifi),
        queued
    );
}

/// On PostgreSQL, a worker does not wait for a station table whose writer
/// lock another worker holds: it leases nothing from that table's queue and
/// applies the other tables (two passes at once, both finishing while the
/// lock is held). The skipped items are not lost and not stuck behind a
/// lease: once the lock is free the next pass applies them at once (the
/// visibility timeout is 10 minutes), and every observation counts once.
/// Before, the passes waited on `pg_advisory_xact_lock` as long as the lock
/// was held.
#[tokio::test]
async fn busy_station_table_is_skipped_not_waited_for() {
    on_cluster(async |mut ctx: PipelineContext| {
        ctx.settings.visibility = Duration::from_secs(600);
        let queued = queue_wifi_shards(&ctx, 0..4, 3).await;
        let held = ctx
            .store
            .try_lock_station_table(StationTable::Wifi(0))
            .await
            .unwrap()
            .expect("the lock is free");
        assert!(
            ctx.store
                .try_lock_station_table(StationTable::Wifi(0))
                .await
                .unwrap()
                .is_none(),
            "a second writer does not get the lock"
        );
        let stop = CancellationToken::new();
        let (a, b) = tokio::time::timeout(Duration::from_secs(30), async {
            tokio::join!(
                worker::pass(&ctx, false, &stop),
                worker::pass(&ctx, false, &stop)
            )
        })
        .await
        .expect("passes do not wait for a table another worker holds");
        let (a, b) = (a.unwrap().items, b.unwrap().items);
        assert_eq!(a + b, 9, "shards 1–3 applied: {a} + {b}");
        assert_eq!(ctx.queue.len(&update_wifi(0)).await.unwrap(), 3);
        for shard in 1..4 {
            assert_eq!(ctx.queue.len(&update_wifi(shard)).await.unwrap(), 0);
        }
        assert_eq!(counted(&counters_today(&ctx).await, StatKey::Wifi), 9);

        held.release().await.unwrap();
        let report =
            tokio::time::timeout(Duration::from_secs(30), worker::pass(&ctx, false, &stop))
                .await
                .unwrap()
                .unwrap();
        assert_eq!(report.items, 3, "shard 0 applied without a lease to expire");
        assert_eq!(ctx.queue.len(&update_wifi(0)).await.unwrap(), 0);
        assert_eq!(counted(&counters_today(&ctx).await, StatKey::Wifi), queued);
    })
    .await;
}

/// A remote export target that hangs (answers after an hour; the
/// exporter's timeout is the production 60 s with three attempts) delays
/// neither the station updates, nor a second `update_incoming` entry, nor the
/// other targets; a target that keeps failing backs off and says so in its
/// gauges and in the health record the heartbeat shows. The old worker ran
/// every export inline in its pass and stalled here for minutes.
async fn hanging_export_target_does_not_stall_the_pipeline(mut ctx: PipelineContext) {
    use ichnaea_core::export::{ExportHealth, export_health_key};
    let metrics = TestMetrics::default();
    let _guard = metrics::set_default_local_recorder(&metrics);
    ctx.exporters = Arc::new(Exporters::new(Duration::from_secs(60)).unwrap());
    // Every queued report is ready at once (as under load), the internal one too.
    ctx.settings.export_max_age = Duration::ZERO;
    let hanging = FakeHttp::start(&[]).await;
    hanging.delay(Duration::from_secs(3600));
    let failing = FakeHttp::start(&[]).await;
    failing.answer(500, "");
    for (name, fake) in [("hang", &hanging), ("broken", &failing)] {
        let mut config = ExportConfig::new(name, ExportSchema::Geosubmit);
        config.batch = 1;
        config.url = Some(format!("{}/v2/geosubmit", fake.url()));
        ctx.store.insert_export_config(&config).await.unwrap();
    }
    let tmp = TempDir::new("pipeline-hang");
    let mut backup = ExportConfig::new("backup", ExportSchema::S3);
    backup.batch = 1;
    backup.url = Some(format!("file://{}/out/{{source}}", tmp.as_str()));
    ctx.store.insert_export_config(&backup).await.unwrap();

    let shutdown = CancellationToken::new();
    let worker = tokio::spawn(worker::run(ctx.clone(), shutdown.clone()));
    let mac = Mac::from_hex("0123f456789a").unwrap();
    let start = std::time::Instant::now();
    for expected in [1, 2] {
        submit(
            &ctx,
            None,
            "gnss",
            vec![wifi_report(51.0, 10.0, &["0123f456789a"])],
        )
        .await;
        loop {
            let rows = ctx.store.wifi_stations(&[mac]).await.unwrap();
            if rows.first().and_then(|r| r.fields.samples) == Some(expected) {
                break;
            }
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "report {expected} not applied after {:?}: the pipeline waits on the hanging target",
                start.elapsed()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    // The file target got both reports, the hanging one is still waiting.
    while files(tmp.path()).len() < 2 {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "file export stalled"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(hanging.count(), 1, "one request in flight, not retried yet");
    // The failing target backs off: 3 attempts per run, then 1 s, 2 s, … of rest.
    let health = loop {
        let got = ctx
            .counters
            .cache_get(&[export_health_key("broken")])
            .await
            .unwrap();
        if let Some(json) = &got[0] {
            break serde_json::from_slice::<ExportHealth>(json).unwrap();
        }
        assert!(
            start.elapsed() < Duration::from_secs(15),
            "no health record"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(!health.up, "{health:?}");
    assert!(health.consecutive_failures >= 1, "{health:?}");
    assert!(health.retry_in_seconds <= 1, "{health:?}");
    assert_eq!(
        health.last_error.as_deref(),
        Some("export broken failed: export target answered HTTP status 500")
    );
    assert!(metrics.gauge("data.export.consecutive_failures", &[("key", "broken")]) >= Some(1.0));
    let attempts = failing.count();
    assert_eq!(attempts % 3, 0, "whole runs of three attempts: {attempts}");
    shutdown.cancel();
    tokio::time::timeout(Duration::from_secs(5), worker)
        .await
        .expect("the worker stops at once, abandoning the hanging send")
        .unwrap();
}

/// Cases 21 and 22: five observations of an unknown Wi-Fi station.
async fn new_station_from_five(ctx: &PipelineContext, metrics: &TestMetrics, source: ReportSource) {
    let mac = "0123f456789a";
    let offsets = [
        (0.0, 0.0),
        (0.0001, 0.0),
        (-0.0003, 0.0),
        (0.0, 0.0002),
        (0.0, -0.0004),
    ];
    let items = offsets
        .iter()
        .map(|(dlat, dlon)| wifi_obs(mac, LAT + dlat, LON + dlon, source))
        .collect();
    let before = now_s();
    run_wifi(ctx, mac, items).await;
    let after = now_s();
    let row = wifi_row(ctx, mac).await.expect("created");
    assert_deg(row.lat, LAT - 0.00004);
    assert_deg(row.lon, LON - 0.00004);
    assert_eq!(
        (row.max_lat, row.min_lat, row.max_lon, row.min_lon),
        (
            Some(LAT + 0.0001),
            Some(LAT - 0.0003),
            Some(LON + 0.0002),
            Some(LON - 0.0004)
        )
    );
    assert_eq!(row.radius, Some(38));
    assert_eq!(row.samples, Some(5));
    assert_eq!(row.weight, Some(5.0));
    assert_eq!(row.region.as_deref(), Some("GB"));
    assert_eq!(row.source, Some(source));
    let created = row.created.unwrap();
    assert!(before <= created && created <= after, "{created}");
    assert_eq!(row.modified, row.created);
    assert_eq!(row.last_seen, Some(created.date()));
    assert_eq!(
        (row.block_first, row.block_last, row.block_count),
        (None, None, None)
    );
    assert_eq!(
        counters_today(ctx).await,
        vec![(StatKey::Wifi, 5), (StatKey::UniqueWifi, 1)]
    );
    assert_eq!(metrics.counter("data.station.new", &[("type", "wifi")]), 1);
    assert_eq!(
        metrics.counter("data.observation.insert", &[("type", "wifi")]),
        5
    );
    assert_eq!(metrics.total("data.station.confirm"), 0);
    assert_eq!(metrics.total("data.station.blocklist"), 0);
}

/// §9 case 21 (§3.5, §3.8, §3.11): a new station from five GNSS observations.
/// Counters are `stat_counter` rows (the original's Redis `statcounter_*`).
async fn case_21_new_station_from_five_observations(ctx: PipelineContext) {
    let metrics = TestMetrics::default();
    let _guard = metrics::set_default_local_recorder(&metrics);
    new_station_from_five(&with_regions(ctx), &metrics, ReportSource::Gnss).await;
}

/// §9 case 22: as case 21 with query observations: source query (9).
async fn case_22_new_station_from_five_query_observations(ctx: PipelineContext) {
    let metrics = TestMetrics::default();
    let _guard = metrics::set_default_local_recorder(&metrics);
    new_station_from_five(&with_regions(ctx), &metrics, ReportSource::Query).await;
}

/// §9 case 23 (§3.7, §3.8, §3.11): observations spread (D+10) m north and south
/// of a centre create the station blocked; a cell's areaid is queued.
async fn case_23_spread_observations_create_a_blocked_station(ctx: PipelineContext) {
    let metrics = TestMetrics::default();
    let _guard = metrics::set_default_local_recorder(&metrics);
    let ctx = with_regions(ctx);
    let spread = |d: f64| {
        let (n_lat, n_lon) = moved(LAT, LON, 0.0, d + 10.0);
        let (s_lat, s_lon) = moved(LAT, LON, 180.0, d + 10.0);
        [(LAT, LON), (n_lat, n_lon), (s_lat, s_lon)]
    };
    let before = now_s();
    let mac = "0123f456789a";
    let items = spread(5_000.0)
        .iter()
        .map(|(lat, lon)| wifi_obs(mac, *lat, *lon, ReportSource::Gnss))
        .collect();
    run_wifi(&ctx, mac, items).await;
    let cell = gsm_cell(1, 1);
    let items = spread(100_000.0)
        .iter()
        .map(|(lat, lon)| cell_obs(cell, *lat, *lon, ReportSource::Gnss))
        .collect();
    run_gsm(&ctx, items).await;
    let after = now_s();

    let wifi = wifi_row(&ctx, mac).await.unwrap();
    let stored = cell_row(&ctx, cell).await.unwrap();
    assert_eq!(stored.psc, None);
    for row in [wifi, stored.fields] {
        let created = row.created.unwrap();
        assert!(before <= created && created <= after);
        let expected = StationFields {
            created: Some(created),
            modified: Some(created),
            block_first: Some(created.date()),
            block_last: Some(created.date()),
            block_count: Some(1),
            ..StationFields::default()
        };
        assert_eq!(row, expected, "position, region, last_seen NULL");
    }
    for t in ["wifi", "cell"] {
        assert_eq!(metrics.counter("data.station.new", &[("type", t)]), 1);
        assert_eq!(metrics.counter("data.station.blocklist", &[("type", t)]), 1);
        assert_eq!(
            metrics.counter("data.observation.insert", &[("type", t)]),
            3
        );
    }
    assert_eq!(
        queued_areas(&ctx).await,
        vec![cell.area().to_bytes().unwrap()]
    );
    assert_eq!(
        counters_today(&ctx).await,
        vec![
            (StatKey::Cell, 3),
            (StatKey::UniqueCell, 1),
            (StatKey::Wifi, 3),
            (StatKey::UniqueWifi, 1)
        ]
    );
}

/// §9 case 24 (§3.3, §3.4): a stored blocked station is skipped, but its
/// observation is counted; two unknown stations are created.
async fn case_24_blocked_station_is_skipped_but_counted(ctx: PipelineContext) {
    let metrics = TestMetrics::default();
    let _guard = metrics::set_default_local_recorder(&metrics);
    let ctx = with_regions(ctx);
    let macs = ["0123f456789a", "0123f456789b", "0123f456789c"];
    let blocked = StationFields {
        created: Some(now_s()),
        modified: Some(now_s()),
        block_first: Some(today()),
        block_last: Some(today()),
        block_count: Some(1),
        ..StationFields::default()
    };
    ctx.store
        .upsert_wifi_stations(&[WifiStation {
            mac: Mac::from_hex(macs[0]).unwrap(),
            fields: blocked.clone(),
        }])
        .await
        .unwrap();
    let items = macs
        .iter()
        .map(|m| wifi_obs(m, LAT, LON, ReportSource::Gnss))
        .collect();
    run_wifi(&ctx, macs[0], items).await;
    assert_eq!(wifi_row(&ctx, macs[0]).await, Some(blocked), "unchanged");
    for mac in &macs[1..] {
        let row = wifi_row(&ctx, mac).await.unwrap();
        assert_eq!((row.samples, row.weight), (Some(1), Some(1.0)));
    }
    assert_eq!(
        counters_today(&ctx).await,
        vec![(StatKey::Wifi, 3), (StatKey::UniqueWifi, 2)]
    );
    assert_eq!(metrics.counter("data.station.new", &[("type", "wifi")]), 2);
    assert_eq!(
        metrics.counter("data.observation.insert", &[("type", "wifi")]),
        3
    );
}

/// A cell without position, created and blocked 50 days ago (free again).
fn unpositioned_cell(now: NaiveDateTime) -> StationFields {
    let then = now - chrono::Duration::days(50);
    StationFields {
        created: Some(then),
        modified: Some(then),
        block_first: Some(then.date()),
        block_last: Some(then.date()),
        block_count: Some(1),
        ..StationFields::default()
    }
}

/// §9 case 26 (§3.7): a station without position and spread observations: no
/// write at all (`modified` stays 50 days ago) and no area queued; the
/// observations still count.
async fn case_26_no_write_and_no_area_for_spread_observations(ctx: PipelineContext) {
    let metrics = TestMetrics::default();
    let _guard = metrics::set_default_local_recorder(&metrics);
    let ctx = with_regions(ctx);
    let cell = gsm_cell(1, 1);
    let stored = CellStation {
        key: cell,
        psc: Some(7),
        fields: unpositioned_cell(now_s()),
    };
    ctx.store
        .upsert_cell_stations(std::slice::from_ref(&stored))
        .await
        .unwrap();
    let (n_lat, n_lon) = moved(LAT, LON, 0.0, 100_010.0);
    let (s_lat, s_lon) = moved(LAT, LON, 180.0, 100_010.0);
    run_gsm(
        &ctx,
        vec![
            cell_obs(cell, LAT, LON, ReportSource::Gnss),
            cell_obs(cell, n_lat, n_lon, ReportSource::Gnss),
            cell_obs(cell, s_lat, s_lon, ReportSource::Gnss),
        ],
    )
    .await;
    assert_eq!(cell_row(&ctx, cell).await, Some(stored), "no write");
    assert_eq!(queued_areas(&ctx).await, Vec::<Vec<u8>>::new());
    assert_eq!(counters_today(&ctx).await, vec![(StatKey::Cell, 3)]);
    assert_eq!(
        metrics.counter("data.observation.insert", &[("type", "cell")]),
        3
    );
    assert_eq!(metrics.total("data.station.blocklist"), 0);
}

/// A positioned GNSS Wi-Fi station at (LAT, LON), changed and seen `days` ago.
fn positioned_wifi(days: i64) -> StationFields {
    let then = now_s() - chrono::Duration::days(days);
    StationFields {
        lat: Some(LAT),
        lon: Some(LON),
        max_lat: Some(LAT),
        min_lat: Some(LAT),
        max_lon: Some(LON),
        min_lon: Some(LON),
        radius: Some(0),
        region: Some("GB".into()),
        samples: Some(1),
        source: Some(ReportSource::Gnss),
        weight: Some(1.0),
        created: Some(then),
        modified: Some(then),
        last_seen: Some(then.date()),
        ..StationFields::default()
    }
}

/// §9 case 27 (§3.7, §3.8, §3.11): a query observation agreeing with a GNSS
/// station only moves `last_seen` (and counts in `data.station.confirm`); on a
/// station already seen today it writes nothing and is not counted.
async fn case_27_confirm_writes_last_seen_once_a_day(ctx: PipelineContext) {
    let metrics = TestMetrics::default();
    let _guard = metrics::set_default_local_recorder(&metrics);
    let ctx = with_regions(ctx);
    let mac = "0123f456789a";
    let stored = positioned_wifi(10);
    ctx.store
        .upsert_wifi_stations(&[WifiStation {
            mac: Mac::from_hex(mac).unwrap(),
            fields: stored.clone(),
        }])
        .await
        .unwrap();
    run_wifi(
        &ctx,
        mac,
        vec![wifi_obs(mac, LAT, LON, ReportSource::Query)],
    )
    .await;
    let confirmed = StationFields {
        last_seen: Some(today()),
        ..stored
    };
    assert_eq!(wifi_row(&ctx, mac).await, Some(confirmed.clone()));
    assert_eq!(
        metrics.counter("data.station.confirm", &[("type", "wifi")]),
        1
    );

    run_wifi(
        &ctx,
        mac,
        vec![wifi_obs(mac, LAT, LON, ReportSource::Query)],
    )
    .await;
    assert_eq!(wifi_row(&ctx, mac).await, Some(confirmed));
    assert_eq!(
        metrics.counter("data.station.confirm", &[("type", "wifi")]),
        1,
        "a confirm that writes nothing is not counted"
    );
    assert_eq!(
        metrics.counter("data.observation.insert", &[("type", "wifi")]),
        2
    );
}

/// §9 case 39 (§3.11): the areas of cells that were created, created blocked,
/// changed, replaced or blocked are queued; a batch of only confirms queues
/// nothing.
async fn case_39_areas_queued_for_every_action_but_confirm(ctx: PipelineContext) {
    let metrics = TestMetrics::default();
    let _guard = metrics::set_default_local_recorder(&metrics);
    let ctx = with_regions(ctx);
    let now = now_s();
    let ten_days_ago = now - chrono::Duration::days(10);
    let gnss_at = |key: CellKey| CellStation {
        key,
        psc: None,
        fields: StationFields {
            lat: Some(LAT),
            lon: Some(LON),
            max_lat: Some(LAT),
            min_lat: Some(LAT),
            max_lon: Some(LON),
            min_lon: Some(LON),
            radius: Some(0),
            region: Some("GB".into()),
            samples: Some(1),
            source: Some(ReportSource::Gnss),
            weight: Some(1.0),
            created: Some(ten_days_ago),
            modified: Some(ten_days_ago),
            last_seen: Some(ten_days_ago.date()),
            ..StationFields::default()
        },
    };
    let (new, new_block, change, replace, block, confirm, confirm_only) = (
        gsm_cell(1, 1),
        gsm_cell(2, 1),
        gsm_cell(3, 1),
        gsm_cell(4, 1),
        gsm_cell(5, 1),
        gsm_cell(6, 1),
        gsm_cell(7, 1),
    );
    let mut query_station = gsm_cell_station_source(gnss_at(replace), ReportSource::Query);
    query_station.fields.samples = Some(4);
    ctx.store
        .upsert_cell_stations(&[
            gnss_at(change),
            query_station,
            gnss_at(block),
            gnss_at(confirm),
            gnss_at(confirm_only),
        ])
        .await
        .unwrap();
    let (far_lat, far_lon) = moved(LAT, LON, 0.0, 100_010.0);
    run_gsm(
        &ctx,
        vec![
            cell_obs(new, LAT, LON, ReportSource::Gnss),
            cell_obs(new_block, LAT, LON, ReportSource::Gnss),
            cell_obs(new_block, far_lat, far_lon, ReportSource::Gnss),
            cell_obs(change, LAT, LON, ReportSource::Gnss),
            cell_obs(replace, LAT, LON, ReportSource::Gnss),
            cell_obs(block, far_lat, far_lon, ReportSource::Gnss),
            cell_obs(confirm, LAT, LON, ReportSource::Query),
        ],
    )
    .await;
    let mut expected: Vec<Vec<u8>> = [new, new_block, change, replace, block]
        .iter()
        .map(|c| c.area().to_bytes().unwrap())
        .collect();
    expected.sort();
    assert_eq!(queued_areas(&ctx).await, expected);
    // The actions were the intended ones.
    let row = |key| {
        let ctx = ctx.clone();
        async move { cell_row(&ctx, key).await.unwrap().fields }
    };
    assert_eq!(row(new).await.samples, Some(1));
    assert_eq!(row(new_block).await.block_count, Some(1));
    assert_eq!(row(change).await.samples, Some(2));
    let replaced = row(replace).await;
    assert_eq!(
        (replaced.samples, replaced.source),
        (Some(1), Some(ReportSource::Gnss))
    );
    assert_eq!(row(block).await.block_count, Some(1));
    assert_eq!(row(confirm).await.last_seen, Some(today()));
    assert_eq!(metrics.counter("data.station.new", &[("type", "cell")]), 2);
    assert_eq!(
        metrics.counter("data.station.confirm", &[("type", "cell")]),
        3
    );
    assert_eq!(
        metrics.counter("data.station.blocklist", &[("type", "cell")]),
        2
    );

    run_gsm(
        &ctx,
        vec![cell_obs(confirm_only, LAT, LON, ReportSource::Query)],
    )
    .await;
    assert_eq!(row(confirm_only).await.last_seen, Some(today()));
    assert_eq!(ctx.queue.len(UPDATE_CELLAREA).await.unwrap(), 0);
}

fn gsm_cell_station_source(mut station: CellStation, source: ReportSource) -> CellStation {
    station.fields.source = Some(source);
    station
}

/// §9 case 40 (§3.10). Deliberate departure (ARCHITECTURE.md): there are no
/// MySQL deadlock retries — writers of a station table are serialised — and
/// the failure that matters is a worker dying after its transaction committed
/// and before it acknowledged the batch. The re-delivered batch (same id, same
/// observations) must not be applied again: the final state equals a clean
/// run's and the counters are not doubled.
async fn case_40_replayed_station_batch_is_not_applied_twice(ctx: PipelineContext) {
    let metrics = TestMetrics::default();
    let _guard = metrics::set_default_local_recorder(&metrics);
    let ctx = with_regions(ctx);
    let five = |mac: &str| -> Vec<Vec<u8>> {
        (0..5)
            .map(|i| wifi_obs(mac, LAT + f64::from(i) * 0.0001, LON, ReportSource::Gnss))
            .collect()
    };
    // A clean run, for comparison.
    let clean_mac = "0123f456789b";
    run_wifi(&ctx, clean_mac, five(clean_mac)).await;

    // The crashed worker: leases the batch, commits its effects, dies unacked.
    let mac = Mac::from_hex("0123f456789a").unwrap();
    let queue = update_wifi(mac.shard());
    let table = StationTable::Wifi(mac.shard());
    ctx.queue.push(&queue, five("0123f456789a")).await.unwrap();
    let batch = ctx
        .queue
        .lease(&queue, 500, Duration::from_millis(300))
        .await
        .unwrap()
        .unwrap();
    let obs: Vec<_> = batch
        .items
        .iter()
        .map(|i| weigh_wifi(&serde_json::from_slice::<WifiObservation>(i).unwrap()))
        .collect();
    let key = StationKey::Mac(mac);
    let now = now_s();
    let geocoder = ctx.geocoder.clone();
    let applied = ctx
        .store
        .apply_station_batch(table, &queue, &batch.id, now, &[key], |stored| {
            let existing = stored.get(&key).map(|s| (&s.fields, s.psc));
            let update = update_station(StationType::Wifi, existing, &obs, now, geocoder.as_ref());
            StationWrites {
                rows: vec![(
                    key,
                    StoredStation {
                        fields: update.row.unwrap(),
                        psc: None,
                        estimate: None,
                    },
                )],
                stats: vec![(StatKey::Wifi, 5), (StatKey::UniqueWifi, 1)],
                day: Some(now.date()),
            }
        })
        .await
        .unwrap();
    assert!(applied);
    let after_crash = wifi_row(&ctx, "0123f456789a").await.unwrap();

    // The lease expires; the next worker gets the same batch and only acks it.
    tokio::time::sleep(Duration::from_millis(400)).await;
    let taken = stations::run_once(&ctx, &queue, table).await.unwrap();
    assert_eq!(taken, 5, "the same batch came back");
    assert_eq!(ctx.queue.len(&queue).await.unwrap(), 0);
    let replayed = wifi_row(&ctx, "0123f456789a").await.unwrap();
    assert_eq!(replayed, after_crash, "not applied twice");
    assert_eq!(replayed.samples, Some(5));
    let clean = wifi_row(&ctx, clean_mac).await.unwrap();
    let timeless = |f: &StationFields| StationFields {
        created: None,
        modified: None,
        ..f.clone()
    };
    assert_eq!(timeless(&replayed), timeless(&clean), "as a clean run");
    assert_eq!(
        counters_today(&ctx).await,
        vec![(StatKey::Wifi, 10), (StatKey::UniqueWifi, 2)],
        "5 + 5, not 5 + 10"
    );
    assert_eq!(
        metrics.counter("data.batch.replayed", &[("queue", &queue)]),
        1
    );
    assert_eq!(
        metrics.counter("data.observation.insert", &[("type", "wifi")]),
        5,
        "only the clean run's"
    );
}

/// §9 case 42 (§4.1): an area whose cells all lost their position is deleted.
async fn case_42_area_without_positioned_cells_is_deleted(ctx: PipelineContext) {
    let ctx = with_regions(ctx);
    let cells: Vec<CellStation> = [1, 2]
        .iter()
        .map(|cid| CellStation {
            key: gsm_cell(1, *cid),
            psc: None,
            fields: StationFields {
                lat: Some(LAT),
                lon: Some(LON),
                max_lat: Some(LAT),
                min_lat: Some(LAT),
                max_lon: Some(LON),
                min_lon: Some(LON),
                radius: Some(100),
                region: Some("GB".into()),
                ..StationFields::default()
            },
        })
        .collect();
    ctx.store.upsert_cell_stations(&cells).await.unwrap();
    let area = gsm_cell(1, 1).area();
    ctx.queue
        .push(UPDATE_CELLAREA, vec![area.to_bytes().unwrap()])
        .await
        .unwrap();
    areas::run_once(&ctx).await.unwrap();
    let stored = ctx.store.cell_areas(&[area]).await.unwrap();
    assert_eq!(stored[0].num_cells, Some(2));

    let blocked: Vec<CellStation> = cells
        .into_iter()
        .map(|mut c| {
            c.fields = StationFields {
                region: Some("GB".into()),
                block_count: Some(1),
                block_last: Some(today()),
                ..StationFields::default()
            };
            c
        })
        .collect();
    ctx.store.upsert_cell_stations(&blocked).await.unwrap();
    ctx.queue
        .push(UPDATE_CELLAREA, vec![area.to_bytes().unwrap()])
        .await
        .unwrap();
    areas::run_once(&ctx).await.unwrap();
    assert_eq!(ctx.store.cell_areas(&[area]).await.unwrap(), vec![]);
}

/// §9 case 47 (§4.2.3): grids seen today stay as they are, older ones move to
/// today, unknown ones are created today; duplicates make one row.
async fn case_47_datamap_grids_are_touched_once_a_day(ctx: PipelineContext) {
    let today = today();
    let long_ago = today - chrono::Duration::days(30);
    let yesterday = today - chrono::Duration::days(1);
    let grid = |dlat: f64| DatamapGrid::from_position(LAT + dlat, LON);
    let (seen_today, seen_yesterday, unknown) = (grid(0.0), grid(0.01), grid(0.02));
    let q = Quadrant::Nw;
    assert_eq!(seen_today.quadrant(), q);
    ctx.store
        .touch_datamap(q, &[seen_today], long_ago)
        .await
        .unwrap();
    ctx.store
        .touch_datamap(q, &[seen_today], today)
        .await
        .unwrap();
    ctx.store
        .touch_datamap(q, &[seen_yesterday], yesterday)
        .await
        .unwrap();
    let bytes = |g: DatamapGrid| g.to_bytes().to_vec();
    ctx.queue
        .push(
            &update_datamap(q),
            vec![
                bytes(seen_today),
                bytes(seen_yesterday),
                bytes(unknown),
                bytes(unknown),
            ],
        )
        .await
        .unwrap();
    ichnaea_pipeline::datamap::run_once(&ctx, q).await.unwrap();
    let mut rows = ctx
        .store
        .datamap_rows(q, &[seen_today, seen_yesterday, unknown])
        .await
        .unwrap();
    rows.sort_by_key(|r| r.grid);
    let row = |grid, created, modified| DatamapRow {
        grid,
        created: Some(created),
        modified: Some(modified),
    };
    let mut expected = vec![
        row(seen_today, long_ago, today),
        row(seen_yesterday, yesterday, today),
        row(unknown, today, today),
    ];
    expected.sort_by_key(|r| r.grid);
    assert_eq!(rows, expected);
    assert_eq!(ctx.store.row_count("datamap_nw").await.unwrap(), Some(3));
    assert_eq!(ctx.queue.len(&update_datamap(q)).await.unwrap(), 0);
}

/// §9 case 48 (§4.2.4): the daily clean-up deletes grids last seen more than
/// 365 days ago, in each of the four tables.
async fn case_48_cleanup_removes_datamap_grids_after_a_year(ctx: PipelineContext) {
    let today = today();
    let ago = |d: i64| today - chrono::Duration::days(d);
    for (lat, lon) in [(50.0, 10.0), (50.0, 0.0), (30.0, 10.0), (30.0, 0.0)] {
        let grids: Vec<DatamapGrid> = (0..3)
            .map(|i| DatamapGrid::from_position(lat + f64::from(i) * 0.01, lon))
            .collect();
        let q = grids[0].quadrant();
        for (grid, day) in grids.iter().zip([ago(366), ago(365), today]) {
            ctx.store.touch_datamap(q, &[*grid], day).await.unwrap();
        }
        ichnaea_pipeline::periodic::cleanup(ctx.clone())
            .await
            .unwrap();
        let mut left: Vec<DatamapGrid> = ctx
            .store
            .datamap_rows(q, &grids)
            .await
            .unwrap()
            .into_iter()
            .map(|r| r.grid)
            .collect();
        left.sort();
        let mut kept = grids[1..].to_vec();
        kept.sort();
        assert_eq!(left, kept, "{}", q.table());
    }
    for q in Quadrant::ALL {
        assert_eq!(ctx.store.row_count(q.table()).await.unwrap(), Some(2));
    }
}

/// Adds `n` to the day counter of `key` as a station batch does.
async fn count(ctx: &PipelineContext, key: StatKey, day: NaiveDate, n: i64) {
    let applied = ctx
        .store
        .apply_station_batch(
            StationTable::Cell(Radio::Gsm),
            "update_cell_gsm",
            &ichnaea_testkit::unique(),
            day.and_hms_opt(12, 0, 0).unwrap(),
            &[],
            |_| StationWrites {
                rows: vec![],
                stats: vec![(key, n)],
                day: Some(day),
            },
        )
        .await
        .unwrap();
    assert!(applied);
}

async fn stat_rows(ctx: &PipelineContext, key: StatKey) -> Vec<(NaiveDate, i64)> {
    ctx.store
        .stats(key, NaiveDate::from_ymd_opt(2000, 1, 1).unwrap())
        .await
        .unwrap()
        .into_iter()
        .map(|r| (r.time, r.value))
        .collect()
}

async fn stat_row(ctx: &PipelineContext, key: StatKey, time: NaiveDate, value: i64) {
    ctx.store
        .upsert_stat(&StatRow { key, time, value })
        .await
        .unwrap();
}

/// §9 case 50 (§4.3.1): `update_statcounter` adds today's counter to the
/// running total. The project keeps the counters in `stat_counter` rows (not
/// Redis `statcounter_*` keys); a folded counter is deleted, i.e. becomes 0.
async fn case_50_statcounter_folds_into_todays_row(ctx: PipelineContext) {
    let today = today();
    let yesterday = today - chrono::Duration::days(1);
    count(&ctx, StatKey::Cell, today, 4).await;
    stat_row(&ctx, StatKey::Cell, yesterday, 5).await;
    ichnaea_pipeline::periodic::update_statcounter(ctx.clone())
        .await
        .unwrap();
    assert_eq!(
        stat_rows(&ctx, StatKey::Cell).await,
        vec![(yesterday, 5), (today, 9)]
    );
    assert_eq!(counters_today(&ctx).await, vec![], "counter back to 0");
    count(&ctx, StatKey::Cell, today, 3).await;
    ichnaea_pipeline::periodic::update_statcounter(ctx.clone())
        .await
        .unwrap();
    assert_eq!(
        stat_rows(&ctx, StatKey::Cell).await,
        vec![(yesterday, 5), (today, 12)]
    );
}

/// §9 case 51 (§4.3.1): the running total is carried forward across a gap.
async fn case_51_statcounter_carries_an_older_total_forward(ctx: PipelineContext) {
    let today = today();
    let week_ago = today - chrono::Duration::days(7);
    count(&ctx, StatKey::Cell, today, 3).await;
    stat_row(&ctx, StatKey::Cell, week_ago, 7).await;
    ichnaea_pipeline::periodic::update_statcounter(ctx.clone())
        .await
        .unwrap();
    assert_eq!(
        stat_rows(&ctx, StatKey::Cell).await,
        vec![(week_ago, 7), (today, 10)]
    );
}

/// §9 case 52 (§4.3.1): yesterday's counter is folded before today's row is
/// created from yesterday's total.
async fn case_52_statcounter_folds_yesterday_before_today(ctx: PipelineContext) {
    let today = today();
    let yesterday = today - chrono::Duration::days(1);
    let two_days_ago = today - chrono::Duration::days(2);
    count(&ctx, StatKey::Cell, today, 7).await;
    count(&ctx, StatKey::Cell, yesterday, 5).await;
    stat_row(&ctx, StatKey::Cell, two_days_ago, 1).await;
    stat_row(&ctx, StatKey::Cell, yesterday, 3).await;
    ichnaea_pipeline::periodic::update_statcounter(ctx.clone())
        .await
        .unwrap();
    assert_eq!(
        stat_rows(&ctx, StatKey::Cell).await,
        vec![(two_days_ago, 1), (yesterday, 8), (today, 15)]
    );
}

/// §9 case 53 (§4.3.1): `cleanup_stat` deletes rows older than 730 days.
async fn case_53_cleanup_stat_keeps_730_days(ctx: PipelineContext) {
    let today = today();
    let ago = |d: i64| today - chrono::Duration::days(d);
    for (d, v) in [(731, 1), (730, 2), (366, 3)] {
        stat_row(&ctx, StatKey::Wifi, ago(d), v).await;
    }
    ichnaea_pipeline::periodic::cleanup(ctx.clone())
        .await
        .unwrap();
    assert_eq!(
        stat_rows(&ctx, StatKey::Wifi).await,
        vec![(ago(730), 2), (ago(366), 3)]
    );
}

/// §9 case 54 (§4.3.2): the `update_statregion` example; it also drops the
/// region page's cache entry (`REGION_STATS_CACHE_KEY`).
async fn case_54_update_statregion(ctx: PipelineContext) {
    let xx = RegionStat {
        region: "XX".into(),
        gsm: 1,
        wcdma: 1,
        lte: 1,
        nr: 0,
        blue: 1,
        wifi: 1,
    };
    ctx.store
        .replace_region_stats(std::slice::from_ref(&xx))
        .await
        .unwrap();
    ichnaea_pipeline::periodic::update_statregion(ctx.clone())
        .await
        .unwrap();
    assert_eq!(
        ctx.store.region_stats().await.unwrap(),
        vec![xx],
        "no stations at all: table untouched"
    );

    let mut n = 0u32;
    let mut mac = || {
        n += 1;
        // Spread over the shards: the fifth hex digit varies.
        Mac::from_hex(&format!("0000{:x}{:07x}", n % 16, n)).unwrap()
    };
    let region = |r: &str| StationFields {
        region: Some(r.into()),
        ..StationFields::default()
    };
    let blue: Vec<BlueStation> = ["CA", "CA", "GB", "GB", "GB"]
        .iter()
        .map(|r| BlueStation {
            mac: mac(),
            fields: region(r),
        })
        .collect();
    let wifi: Vec<WifiStation> = std::iter::repeat_n("DE", 5)
        .chain(std::iter::repeat_n("US", 6))
        .map(|r| WifiStation {
            mac: mac(),
            fields: region(r),
        })
        .collect();
    ctx.store.upsert_blue_stations(&blue).await.unwrap();
    ctx.store.upsert_wifi_stations(&wifi).await.unwrap();
    let area = |radio, lac, region: &str, num_cells| CellArea {
        key: AreaKey {
            radio,
            mcc: 262,
            mnc: 1,
            lac,
        },
        lat: Some(51.0),
        lon: Some(10.0),
        radius: Some(0),
        region: Some(region.into()),
        avg_cell_radius: Some(0),
        num_cells: Some(num_cells),
        last_seen: None,
        created: None,
        modified: None,
    };
    ctx.store
        .upsert_cell_areas(&[
            area(Radio::Gsm, 1, "DE", 1),
            area(Radio::Gsm, 2, "DE", 2),
            area(Radio::Gsm, 3, "CA", 2),
            area(Radio::Wcdma, 1, "DE", 3),
            area(Radio::Lte, 1, "CA", 4),
        ])
        .await
        .unwrap();
    let page = ichnaea_core::stats::REGION_STATS_CACHE_KEY
        .as_bytes()
        .to_vec();
    ctx.counters
        .cache_set(&[(page.clone(), b"[]".to_vec())], 3600)
        .await
        .unwrap();
    ichnaea_pipeline::periodic::update_statregion(ctx.clone())
        .await
        .unwrap();
    assert_eq!(
        ctx.counters.cache_get(&[page]).await.unwrap(),
        vec![None],
        "the region page's cached rows are dropped"
    );
    let r = |region: &str, gsm, wcdma, lte, blue, wifi| RegionStat {
        region: region.into(),
        gsm,
        wcdma,
        lte,
        nr: 0,
        blue,
        wifi,
    };
    assert_eq!(
        ctx.store.region_stats().await.unwrap(),
        vec![
            r("CA", 2, 0, 4, 2, 0),
            r("DE", 3, 3, 0, 0, 5),
            r("GB", 0, 0, 0, 3, 0),
            r("US", 0, 0, 0, 0, 6),
        ],
        "XX, without stations, deleted"
    );
}

/// §9 case 57 (§4.7.2): the P-only controller (target 1 000, Kp 8) and what
/// counts as backlog: the station queues, not the export, area or data-map
/// queues. Deliberate departure (`rate_control.rs`, §7.3 item 6):
/// `update_incoming` counts too.
async fn case_57_rate_controller_backlog_and_rates(ctx: PipelineContext) {
    use ichnaea_pipeline::rate_control::{PidState, RateControl, backlog, step};
    let params = RateControl::new(1000.0).unwrap();
    assert_eq!((params.kp, params.ki, params.kd), (8.0, 0.0, 0.0));
    for (queued, rate) in [(0.0, 100.0), (900.0, 80.0), (950.0, 40.0), (1200.0, 0.0)] {
        let got = step(
            &params,
            &mut PidState::default(),
            queued,
            std::time::Instant::now(),
        );
        assert!((got - rate).abs() < 1e-9, "backlog {queued}: {got}");
    }
    let items = |n: usize| vec![b"{}".to_vec(); n];
    for queue in [
        UPDATE_CELLAREA,
        "update_datamap_ne",
        "queue_export_internal",
    ] {
        ctx.queue.push(queue, items(1)).await.unwrap();
    }
    assert_eq!(backlog(&ctx).await.unwrap(), 0.0);
    ctx.queue.push("update_blue_1", items(2)).await.unwrap();
    ctx.queue.push("update_cell_lte", items(1)).await.unwrap();
    ctx.queue.push("update_wifi_0", items(3)).await.unwrap();
    assert_eq!(backlog(&ctx).await.unwrap(), 6.0);
    ctx.queue.push(UPDATE_INCOMING, items(4)).await.unwrap();
    assert_eq!(backlog(&ctx).await.unwrap(), 10.0);
}

/// §9 case 58 (§4.7.2). Deliberate departure (`rate_control.rs`): the
/// parameters come from configuration, not Redis strings; a controller without
/// a (positive) target is refused when it is configured, so no rate-control
/// task runs and the global locate sample rate is left alone.
async fn case_58_rate_controller_needs_a_target(ctx: PipelineContext) {
    use ichnaea_pipeline::periodic::{Intervals, tasks};
    use ichnaea_pipeline::rate_control::RateControl;
    assert_eq!(RateControl::new(0.0), None);
    let names: Vec<&str> = tasks(&Intervals::default())
        .iter()
        .map(|t| t.name)
        .collect();
    assert!(!names.contains(&"rate_control"), "{names:?}");
    ichnaea_pipeline::monitor::monitor_queue_size(ctx.clone())
        .await
        .unwrap();
    assert_eq!(ctx.counters.locate_sample_rate().await.unwrap(), None);
}

/// §4.6 `monitor_api_key_limits` and `monitor_api_users`: gauges of today's
/// requests per key and path, and of distinct users per key.
async fn monitor_tasks_report_api_usage(ctx: PipelineContext) {
    let metrics = TestMetrics::default();
    let _guard = metrics::set_default_local_recorder(&metrics);
    let now = Utc::now();
    for ip in ["10.0.0.1", "10.0.0.2", "10.0.0.1"] {
        ctx.counters
            .count_request("test", "v1.geolocate", "locate", ip, now)
            .await
            .unwrap();
    }
    ctx.counters
        .count_request("test", "v2.geosubmit", "submit", "10.0.0.3", now)
        .await
        .unwrap();
    ichnaea_pipeline::monitor::monitor_api_key_limits(ctx.clone())
        .await
        .unwrap();
    ichnaea_pipeline::monitor::monitor_api_users(ctx.clone())
        .await
        .unwrap();
    for (name, tag, value, want) in [
        ("api.limit", "path", "v1.geolocate", 3.0),
        ("api.limit", "path", "v2.geosubmit", 1.0),
        ("locate.user", "interval", "1d", 2.0),
        ("locate.user", "interval", "7d", 2.0),
        ("submit.user", "interval", "7d", 1.0),
    ] {
        assert_eq!(
            metrics.gauge(name, &[("key", KEY_LABEL), (tag, value)]),
            Some(want),
            "{name} {tag}={value}"
        );
    }
}

/// §4.4: the public cell export writes the positioned cells changed in the
/// window as gzip CSV with CRLF lines, in the OpenCellID-compatible layout.
async fn public_cell_export_writes_gzip_csv(ctx: PipelineContext) {
    use ichnaea_core::station::{CellStation, StationFields};
    use ichnaea_pipeline::cell_export::{Kind, export};
    let now = Utc::now().naive_utc();
    let modified = now - chrono::Duration::minutes(90);
    let cell = |radio, cid, lat: Option<f64>, psc| CellStation {
        key: CellKey {
            radio,
            mcc: 262,
            mnc: 1,
            lac: 7,
            cid,
        },
        psc,
        fields: StationFields {
            lat,
            lon: lat.map(|_| 13.123456789),
            radius: Some(1500),
            samples: Some(4),
            created: Some(modified),
            modified: Some(modified),
            ..StationFields::default()
        },
    };
    ctx.store
        .upsert_cell_stations(&[
            cell(Radio::Wcdma, 5, Some(52.5), Some(12)),
            cell(Radio::Nr, 1 << 35, Some(52.6), None),
            cell(Radio::Lte, 9, None, None),
        ])
        .await
        .unwrap();
    let dir = TempDir::new("cells");
    let url = format!("file://{}", dir.path().display());
    let (path, rows) = export(&ctx, &url, Kind::Full, now).await.unwrap();
    assert_eq!(rows, 2, "the blocked cell without a position is left out");
    assert!(
        path.ends_with(&format!(
            "MLS-full-cell-export-{}T000000.csv.gz",
            now.date().format("%Y-%m-%d")
        )),
        "{path}"
    );
    let mut text = String::new();
    std::io::Read::read_to_string(
        &mut flate2::read::GzDecoder::new(std::fs::File::open(&path).unwrap()),
        &mut text,
    )
    .unwrap();
    let ts = modified.and_utc().timestamp();
    assert_eq!(
        text,
        format!(
            "radio,mcc,net,area,cell,unit,lon,lat,range,samples,changeable,created,updated,averageSignal\r\n\
             UMTS,262,1,7,5,12,13.1234568,52.5,1500,4,1,{ts},{ts},\r\n\
             NR,262,1,7,34359738368,,13.1234568,52.6,1500,4,1,{ts},{ts},\r\n"
        )
    );
    // The hourly diff covers the previous full hour only.
    let (_, diff_rows) = export(&ctx, &url, Kind::Diff, now + chrono::Duration::hours(3))
        .await
        .unwrap();
    assert_eq!(diff_rows, 0);
}

fn exported_lines(path: &str) -> Vec<String> {
    let mut text = String::new();
    std::io::Read::read_to_string(
        &mut flate2::read::GzDecoder::new(std::fs::File::open(path).unwrap()),
        &mut text,
    )
    .unwrap();
    assert!(
        text.ends_with("\r\n") && !text.replace("\r\n", "").contains('\n'),
        "CRLF line ends"
    );
    text.split("\r\n")
        .filter(|l| !l.is_empty())
        .map(str::to_string)
        .collect()
}

fn export_cell(
    cid: u64,
    lat: Option<f64>,
    modified: chrono::NaiveDateTime,
) -> ichnaea_core::station::CellStation {
    ichnaea_core::station::CellStation {
        key: CellKey {
            radio: Radio::Wcdma,
            mcc: 234,
            mnc: 10,
            lac: 5,
            cid,
        },
        psc: None,
        fields: ichnaea_core::station::StationFields {
            lat,
            lon: lat.map(|_| -0.1234567891),
            created: Some(modified),
            modified: Some(modified),
            ..Default::default()
        },
    }
}

/// §9 case 55: a full export holds the positioned cells changed in the last
/// 365 days: 10 data lines, radio UMTS, 7 decimals, CRLF, the spec's file name
/// under `export/`.
async fn case_55_full_cell_export(ctx: PipelineContext) {
    let now = Utc::now().naive_utc();
    let mut cells: Vec<_> = (1..=10)
        .map(|cid| {
            export_cell(
                cid,
                Some(51.5 + cid as f64 * 1e-3),
                now - chrono::Duration::days(2),
            )
        })
        .collect();
    cells.push(export_cell(11, None, now));
    cells.push(export_cell(
        12,
        Some(51.4),
        now - chrono::Duration::days(367),
    ));
    ctx.store.upsert_cell_stations(&cells).await.unwrap();
    let dir = TempDir::new("case55");
    let url = format!("file://{}/export", dir.path().display());
    let (path, rows) = ichnaea_pipeline::cell_export::export(
        &ctx,
        &url,
        ichnaea_pipeline::cell_export::Kind::Full,
        now,
    )
    .await
    .unwrap();
    assert_eq!(rows, 10);
    assert_eq!(
        path,
        format!(
            "{}/export/MLS-full-cell-export-{}T000000.csv.gz",
            dir.path().display(),
            now.date().format("%Y-%m-%d")
        )
    );
    let lines = exported_lines(&path);
    assert_eq!(lines.len(), 11, "header + 10 cells");
    assert!(
        lines[1..]
            .iter()
            .all(|l| l.starts_with("UMTS,234,10,5,") && l.contains(",-0.1234568,")),
        "{lines:?}"
    );
    // The day's file is final: running again (a restart) does not rewrite it,
    // even with a cell changed since.
    let before = std::fs::read(&path).unwrap();
    ctx.store
        .upsert_cell_stations(&[export_cell(13, Some(51.6), now)])
        .await
        .unwrap();
    let (again, rows) = ichnaea_pipeline::cell_export::export(
        &ctx,
        &url,
        ichnaea_pipeline::cell_export::Kind::Full,
        now,
    )
    .await
    .unwrap();
    assert_eq!((again, rows), (path.clone(), 0));
    assert_eq!(std::fs::read(&path).unwrap(), before);
}

/// §9 case 56: the diff export run at 14:03 is named `…T140000.csv.gz` and holds
/// exactly the cells with 13:00 ≤ modified < 14:00.
async fn case_56_diff_cell_export_window(ctx: PipelineContext) {
    let day = Utc::now().date_naive() - chrono::Duration::days(1);
    let at = |h, m, s| day.and_hms_opt(h, m, s).unwrap();
    ctx.store
        .upsert_cell_stations(&[
            export_cell(1, Some(51.5), at(12, 59, 59)),
            export_cell(2, Some(51.5), at(13, 0, 0)),
            export_cell(3, Some(51.5), at(13, 59, 59)),
            export_cell(4, Some(51.5), at(14, 0, 0)),
        ])
        .await
        .unwrap();
    let dir = TempDir::new("case56");
    let url = format!("file://{}/export", dir.path().display());
    let (path, rows) = ichnaea_pipeline::cell_export::export(
        &ctx,
        &url,
        ichnaea_pipeline::cell_export::Kind::Diff,
        at(14, 3, 0),
    )
    .await
    .unwrap();
    assert!(
        path.ends_with(&format!(
            "MLS-diff-cell-export-{}T140000.csv.gz",
            day.format("%Y-%m-%d")
        )),
        "{path}"
    );
    assert_eq!(rows, 2);
    let cids: Vec<String> = exported_lines(&path)[1..]
        .iter()
        .map(|l| l.split(',').nth(4).unwrap().to_string())
        .collect();
    assert_eq!(cids, vec!["2", "3"]);
}

/// §9 case 60: user sets of today {ip1, ip2}, six days ago {ip1, ip2, ip3} and
/// seven days ago {ip2} → `submit.user` 2 for one day and 3 for seven; the
/// seven-day-old set is not counted (and deleted in Redis).
async fn case_60_monitor_api_users_gauges(ctx: PipelineContext) {
    let metrics = TestMetrics::default();
    let _guard = metrics::set_default_local_recorder(&metrics);
    let now = Utc::now();
    for (ip, days) in [
        ("1.1.1.1", 0),
        ("2.2.2.2", 0),
        ("1.1.1.1", 6),
        ("2.2.2.2", 6),
        ("3.3.3.3", 6),
        ("2.2.2.2", 7),
    ] {
        ctx.counters
            .count_request(
                "test",
                "v2.geosubmit",
                "submit",
                ip,
                now - chrono::Duration::days(days),
            )
            .await
            .unwrap();
    }
    ichnaea_pipeline::monitor::monitor_api_users(ctx.clone())
        .await
        .unwrap();
    assert_eq!(
        metrics.gauge("submit.user", &[("key", KEY_LABEL), ("interval", "1d")]),
        Some(2.0)
    );
    assert_eq!(
        metrics.gauge("submit.user", &[("key", KEY_LABEL), ("interval", "7d")]),
        Some(3.0)
    );
}

/// §4.5 `load_cell_data`: new cells are inserted with a point bounding box and
/// their MCC's region, newer rows overwrite, older rows and empty radios are
/// skipped, areas and region stats are recomputed; an unknown radio on the first
/// row aborts.
async fn cell_import_merges_a_public_export(ctx: PipelineContext) {
    use ichnaea_pipeline::cell_import::import;
    let ctx = with_regions(ctx);
    let old = Utc::now().naive_utc() - chrono::Duration::days(3);
    let mut stored = export_cell(1, Some(51.5), old);
    stored.key.mcc = 234;
    stored.fields.region = Some("GB".into());
    stored.fields.max_lat = Some(51.6);
    ctx.store
        .upsert_cell_stations(&[stored.clone(), export_cell(2, Some(51.5), old)])
        .await
        .unwrap();
    let newer = (old + chrono::Duration::days(1)).and_utc().timestamp();
    let older = (old - chrono::Duration::days(1)).and_utc().timestamp();
    let csv = format!(
        "radio,mcc,net,area,cell,unit,lon,lat,range,samples,changeable,created,updated,averageSignal\r\n\
         UMTS,234,10,5,1,7,-0.12,51.51,200000,9,1,{older},{newer},\r\n\
         UMTS,234,10,5,2,,-0.2,51.4,300,9,1,{older},{older},\r\n\
         ,234,10,5,3,,-0.2,51.4,300,9,1,{older},{older},\r\n\
         NR,234,10,70000,68719476735,1007,-0.1,51.5,500,3,1,{older},{newer},\r\n"
    );
    let report = import(&ctx, std::io::BufReader::new(csv.as_bytes()))
        .await
        .unwrap();
    assert_eq!(
        (report.rows, report.inserted, report.updated, report.skipped),
        (4, 1, 1, 2)
    );
    let key = |radio, lac, cid| CellKey {
        radio,
        mcc: 234,
        mnc: 10,
        lac,
        cid,
    };
    let cells = ctx
        .store
        .cell_stations(&[
            key(Radio::Wcdma, 5, 1),
            key(Radio::Wcdma, 5, 2),
            key(Radio::Nr, 70_000, (1 << 36) - 1),
        ])
        .await
        .unwrap();
    let get = |k: CellKey| cells.iter().find(|c| c.key == k).unwrap().clone();
    let updated = get(key(Radio::Wcdma, 5, 1));
    assert_eq!(
        (
            updated.fields.lat,
            updated.fields.radius,
            updated.fields.samples,
            updated.psc
        ),
        (Some(51.51), Some(100_000), Some(9), Some(7))
    );
    assert_eq!(
        (updated.fields.max_lat, updated.fields.region.as_deref()),
        (Some(51.6), Some("GB")),
        "bbox and region kept"
    );
    assert_eq!(
        get(key(Radio::Wcdma, 5, 2)).fields.lat,
        Some(51.5),
        "an older row does not overwrite"
    );
    let nr = get(key(Radio::Nr, 70_000, (1 << 36) - 1));
    assert_eq!(
        (nr.fields.min_lat, nr.fields.region.as_deref(), nr.psc),
        (Some(51.5), Some("GB"), Some(1007))
    );
    let areas = ctx
        .store
        .cell_areas(&[key(Radio::Wcdma, 5, 1).area(), nr.key.area()])
        .await
        .unwrap();
    assert_eq!(areas.len(), 2);
    assert!(
        ctx.store
            .region_stats()
            .await
            .unwrap()
            .iter()
            .any(|r| r.region == "GB" && r.wcdma == 2 && r.nr == 1)
    );
    let err = import(
        &ctx,
        std::io::BufReader::new("CDMA,1,1,1,1,,0,0,1,1,1,0,0,\r\n".as_bytes()),
    )
    .await;
    assert!(err.is_err(), "an unknown radio on the first row aborts");
}

#[path = "pipeline/tiles.rs"]
mod tiles;
