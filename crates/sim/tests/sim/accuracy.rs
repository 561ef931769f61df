//! `sim accuracy` end to end: traffic through the real router into SQLite and
//! the embedded queue, a pipeline drain, then queries at true positions.

use std::sync::Arc;
use std::time::Duration;

use ichnaea_core::ApiKey;
use ichnaea_core::region::RegionGeocoder;
use ichnaea_pipeline::export::Exporters;
use ichnaea_pipeline::{PipelineContext, PipelineSettings, worker};
use ichnaea_sim::{AccuracyArgs, TrafficArgs, WorldArgs, run_accuracy, run_traffic};
use ichnaea_testkit::backends::{Backends, on_embedded};
use ichnaea_testkit::serve;
use ichnaea_testkit::web::app_state;
use ichnaea_web::router;
use tokio_util::sync::CancellationToken;

fn world_args() -> WorldArgs {
    WorldArgs {
        seed: 11,
        size_km: 1.5,
        lat: 52.52,
        lon: 13.405,
        mcc: 262,
        move_share: 0.02,
        move_at: Duration::from_secs(300),
        scenario: None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wifi_answers_are_mostly_within_100_m_after_traffic_and_drain() {
    on_embedded(async |backends| {
        backends
            .store
            .insert_api_key(&ApiKey::new("sim-accuracy"))
            .await
            .unwrap();
        let url = serve(router(app_state(&backends))).await;
        check_accuracy(backends, url).await;
    })
    .await;
}

/// Traffic to the server at `url`, a pipeline drain, then the accuracy run.
async fn check_accuracy(backends: Backends, url: String) {
    let traffic = run_traffic(&TrafficArgs {
        world: world_args(),
        url: url.clone(),
        key: None,
        stumblers: 12,
        reports: 2500,
        rate: None,
        duration: None,
        concurrency: 2,
        start_ms: None,
        dry_run: false,
        timeout: Duration::from_secs(60),
        json: false,
        progress: false,
        allow_remote: false,
    })
    .await
    .unwrap();
    assert_eq!(traffic.reports_sent, 2500);
    assert_eq!(traffic.reports_accepted, 2500, "{:?}", traffic.first_error);
    assert_eq!(traffic.status.get("200").copied(), Some(traffic.uploads));
    assert!(traffic.reports_after_move > 0);

    let settings = PipelineSettings::default();
    let ctx = PipelineContext {
        store: backends.store.clone(),
        queue: Arc::new(backends.queue),
        counters: backends.counters,
        geocoder: Arc::new(RegionGeocoder::new().unwrap()),
        exporters: Arc::new(Exporters::new(settings.export_timeout).unwrap()),
        settings,
    };
    let (drained, stuck) = worker::drain(&ctx, &CancellationToken::new(), |_, _| {})
        .await
        .unwrap();
    assert!(drained > 2500, "{drained}");
    assert!(stuck.is_empty(), "{stuck:?}");

    let report = run_accuracy(&AccuracyArgs {
        world: world_args(),
        url,
        key: Some("sim-accuracy".to_string()),
        positions: 200,
        concurrency: 4,
        timeout: Duration::from_secs(30),
        json: true,
        allow_remote: false,
    })
    .await
    .unwrap();

    let table = report.table();
    eprintln!("{table}");
    assert_eq!(report.first_failure, None);
    let kinds: Vec<&str> = report.kinds.iter().map(|k| k.kind).collect();
    assert_eq!(kinds, ["wifi", "cell", "blue", "mixed"]);
    let wifi = &report.kinds[0];
    assert_eq!(wifi.positions, 200);
    assert!(wifi.answered_share > 0.8, "{table}");
    // Mostly within 100 m: the median well inside, the tail not far beyond.
    assert!(wifi.error_m.as_ref().unwrap().median < 60.0, "{table}");
    assert!(wifi.error_m.as_ref().unwrap().p90 < 200.0, "{table}");
    let cell = &report.kinds[1];
    assert!(cell.answered_share > 0.9, "{table}");
    assert!(cell.error_m.as_ref().unwrap().median < 2000.0, "{table}");
    let mixed = &report.kinds[3];
    assert!(mixed.answered_share >= wifi.answered_share, "{table}");
    // The JSON form has the same figures.
    let json = serde_json::to_value(&report).unwrap();
    assert_eq!(json["kinds"][0]["kind"], "wifi");
    assert_eq!(json["kinds"][0]["answered"], wifi.answered);
    assert!(table.contains("in circle"));
}
