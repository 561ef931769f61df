//! Pipeline tests: reports pushed to `update_incoming` are drained through the
//! real queue and store, on SQLite + the embedded queue, and on PostgreSQL +
//! Redis when `ICHNAEA_TEST_POSTGRES_URL` and `ICHNAEA_TEST_REDIS_URL` are set.

use std::io::Write;
use std::sync::{Arc, Once};
use std::time::Duration;

use chrono::Utc;
use futures_util::FutureExt;
use ichnaea_core::cell::CellKey;
use ichnaea_core::datamap::{DatamapGrid, Quadrant};
use ichnaea_core::export::{ExportConfig, ExportSchema};
use ichnaea_core::geocoder::Geocoder;
use ichnaea_core::mac::Mac;
use ichnaea_core::queues::{UPDATE_INCOMING, update_wifi};
use ichnaea_core::radio::Radio;
use ichnaea_core::source::ReportSource;
use ichnaea_core::stats::StatKey;
use ichnaea_pipeline::export::Exporters;
use ichnaea_pipeline::{PipelineContext, PipelineSettings, worker};
use ichnaea_queue::{Counters, Queue};
use ichnaea_store::{Store, StoreOptions};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

static NOTICE: Once = Once::new();

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

fn unique() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

fn context(store: Store, queue: Queue, counters: Counters) -> PipelineContext {
    PipelineContext {
        store,
        queue: Arc::new(queue),
        counters: Arc::new(counters),
        geocoder: Arc::new(TestGeocoder),
        settings: PipelineSettings {
            visibility: Duration::from_millis(300),
            idle_poll: Duration::from_millis(20),
            ..PipelineSettings::default()
        },
        exporters: Arc::new(Exporters::new(Duration::from_secs(5)).unwrap()),
    }
}

async fn on_embedded<F, Fut>(body: F)
where
    F: FnOnce(PipelineContext) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let dir = std::env::temp_dir().join(format!("ichnaea-pipeline-{}", unique()));
    let store = Store::connect(
        &format!("sqlite://{}/p.db", dir.display()),
        &StoreOptions::default(),
    )
    .await
    .unwrap();
    store.migrate().await.unwrap();
    let queue = Queue::embedded(store.sqlite_pool().unwrap().clone())
        .await
        .unwrap();
    let counters = Counters::embedded(store.sqlite_pool().unwrap().clone())
        .await
        .unwrap();
    let result = std::panic::AssertUnwindSafe(body(context(store.clone(), queue, counters)))
        .catch_unwind()
        .await;
    store.close().await;
    let _ = std::fs::remove_dir_all(&dir);
    if let Err(p) = result {
        std::panic::resume_unwind(p);
    }
}

async fn on_cluster<F, Fut>(body: F)
where
    F: FnOnce(PipelineContext) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let (Ok(pg), Ok(redis_url)) = (
        std::env::var("ICHNAEA_TEST_POSTGRES_URL"),
        std::env::var("ICHNAEA_TEST_REDIS_URL"),
    ) else {
        NOTICE.call_once(|| {
            let _ = writeln!(
                std::io::stderr(),
                "NOTICE: ICHNAEA_TEST_POSTGRES_URL/ICHNAEA_TEST_REDIS_URL unset: PostgreSQL + Redis pipeline tests skipped"
            );
        });
        return;
    };
    let schema = format!("test_{}", unique());
    let options = StoreOptions {
        pg_schema: Some(schema.clone()),
        max_connections: 4,
        ..StoreOptions::default()
    };
    let store = Store::connect(&pg, &options).await.unwrap();
    store.migrate().await.unwrap();
    let prefix = format!("test-{}:", unique());
    let queue = Queue::redis(&redis_url, &prefix).await.unwrap();
    let counters = Counters::redis(&redis_url, &prefix).await.unwrap();
    let result = std::panic::AssertUnwindSafe(body(context(store.clone(), queue, counters)))
        .catch_unwind()
        .await;
    store.drop_pg_schema(&schema).await.unwrap();
    store.close().await;
    let client = redis::Client::open(redis_url.as_str()).unwrap();
    let mut con = client.get_multiplexed_async_connection().await.unwrap();
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{prefix}*"))
        .query_async(&mut con)
        .await
        .unwrap();
    if !keys.is_empty() {
        let _: () = redis::cmd("DEL")
            .arg(keys)
            .query_async(&mut con)
            .await
            .unwrap();
    }
    if let Err(p) = result {
        std::panic::resume_unwind(p);
    }
}

macro_rules! backend_tests {
    ($($name:ident),* $(,)?) => {
        $(
            mod $name {
                #[tokio::test]
                async fn embedded() {
                    super::on_embedded(super::$name).await;
                }
                #[tokio::test]
                async fn cluster() {
                    super::on_cluster(super::$name).await;
                }
            }
        )*
    };
}

backend_tests!(
    reports_become_stations_areas_grids_and_stats,
    moved_network_is_blocklisted,
    replayed_batches_are_applied_once,
    exports_follow_skip_rules_and_partitions,
    rate_control_lowers_the_locate_sample_rate,
);

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
            (StatKey::UniqueBlue, 1)
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
