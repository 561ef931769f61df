//! `sim load`: the generated bodies against the server's own decoding and conversion, and whole
//! runs against a small loopback server that counts what it accepts.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use ichnaea_sim::bodies::{BodyPool, geolocate_bodies, geosubmit_bodies, mac_pool};
use ichnaea_sim::{Endpoint, LoadArgs, run_load};
use ichnaea_web::api::body::{BodyLimits, Decoded, decode};
use ichnaea_web::api::convert::{SubmitVersion, convert};
use serde_json::Value;

const NOW: i64 = 1_760_000_000_000;

/// Decodes a wire body exactly as the server's submit endpoints do.
fn server_decode(bytes: &[u8], gzip: bool) -> Value {
    let mut headers = HeaderMap::new();
    headers.insert("content-type", "application/json".parse().unwrap());
    if gzip {
        headers.insert("content-encoding", "gzip".parse().unwrap());
    }
    match decode(&headers, bytes, BodyLimits::default()) {
        Ok(Decoded::Json(v)) => v,
        other => panic!("server refuses the body: {other:?}"),
    }
}

#[test]
fn server_accepts_every_generated_report() {
    for (seed, reports, gzip) in [(1, 50, true), (2, 1, false), (3, 950, true)] {
        let pool = BodyPool::new(geosubmit_bodies(seed, 4, reports, NOW), gzip).unwrap();
        for n in 0..pool.len() {
            let body = pool.get(n).unwrap();
            assert!(body.bytes.len() < BodyLimits::default().max_body);
            let value = server_decode(&body.bytes, gzip);
            assert_eq!(value["items"].as_array().unwrap().len(), reports);
            let converted = convert(&value, SubmitVersion::V2, NOW).unwrap();
            assert_eq!(converted.len(), reports, "no report dropped by the server");
            for (report, item) in converted.iter().zip(value["items"].as_array().unwrap()) {
                assert_eq!(report.source, "gnss");
                // Every Wi-Fi and cell entry survives conversion.
                for member in ["wifiAccessPoints", "cellTowers"] {
                    assert_eq!(
                        report.report[member].as_array().unwrap().len(),
                        item[member].as_array().unwrap().len(),
                        "{member}"
                    );
                }
                assert_eq!(report.report["timestamp"], item["timestamp"]);
            }
        }
    }
}

#[test]
fn geolocate_bodies_decode() {
    let macs = mac_pool(1);
    let pool = BodyPool::new(geolocate_bodies(1, 4, &macs), true).unwrap();
    let value = server_decode(&pool.get(0).unwrap().bytes, true);
    assert_eq!(value["wifiAccessPoints"].as_array().unwrap().len(), 3);
}

#[derive(Clone, Default)]
struct Counts {
    requests: Arc<AtomicU64>,
    reports: Arc<AtomicU64>,
}

async fn geosubmit(State(counts): State<Counts>, headers: HeaderMap, body: Bytes) -> StatusCode {
    let n = counts.requests.fetch_add(1, Ordering::SeqCst);
    // Every fifth request is refused, as an overloaded server would.
    if n % 5 == 4 {
        return StatusCode::SERVICE_UNAVAILABLE;
    }
    let gzip = headers.get("content-encoding").is_some();
    let value = server_decode(&body, gzip);
    let reports = convert(&value, SubmitVersion::V2, NOW).unwrap().len();
    counts.reports.fetch_add(reports as u64, Ordering::SeqCst);
    StatusCode::OK
}

async fn server() -> (SocketAddr, Counts) {
    let counts = Counts::default();
    let app = Router::new()
        .route("/v2/geosubmit", post(geosubmit))
        .with_state(counts.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (addr, counts)
}

fn args(url: String) -> LoadArgs {
    LoadArgs {
        url,
        endpoint: Endpoint::Geosubmit,
        key: None,
        concurrency: 4,
        rate: None,
        duration: Duration::from_secs(20),
        requests: None,
        reports_per_request: 10,
        gzip: true,
        seed: 1,
        mac_pool_seed: 1,
        bodies: 8,
        timeout: Duration::from_secs(10),
        json: false,
        progress: false,
        allow_remote: false,
    }
}

#[tokio::test]
async fn closed_loop_counts_what_the_server_accepted() {
    let (addr, counts) = server().await;
    let mut a = args(format!("http://{addr}"));
    a.requests = Some(50);
    let summary = run_load(&a).await.unwrap();
    assert_eq!(summary.requests, 50);
    assert_eq!(summary.status.get("200"), Some(&40));
    assert_eq!(summary.status.get("503"), Some(&10));
    assert!(summary.errors.is_empty(), "{:?}", summary.first_error);
    assert_eq!(summary.reports_sent, Some(500));
    assert_eq!(summary.reports_accepted, Some(400));
    assert_eq!(counts.reports.load(Ordering::SeqCst), 400);
    assert_eq!(counts.requests.load(Ordering::SeqCst), 50);
    assert!(summary.latency_ms.max >= summary.latency_ms.p50);
    let table = summary.table();
    assert!(table.contains("200: 40, 503: 10"), "{table}");
    let json: Value = serde_json::to_value(&summary).unwrap();
    assert_eq!(json["reports_accepted"], 400);
    assert_eq!(json["endpoint"], "geosubmit");
}

#[tokio::test]
async fn open_loop_keeps_its_rate_and_stops_at_the_deadline() {
    let (addr, counts) = server().await;
    let mut a = args(format!("http://{addr}"));
    a.rate = Some(100.0);
    a.duration = Duration::from_millis(500);
    a.gzip = false;
    let summary = run_load(&a).await.unwrap();
    assert!(
        (30..=51).contains(&summary.requests),
        "{} requests",
        summary.requests
    );
    assert!(summary.elapsed_s < 5.0);
    assert_eq!(counts.requests.load(Ordering::SeqCst), summary.requests);
    assert_eq!(summary.mode, "rate");
}

#[tokio::test]
async fn an_absent_server_is_counted_as_errors() {
    // Bind and drop to get a loopback port nobody listens on.
    let addr = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let mut a = args(format!("http://{addr}"));
    a.requests = Some(5);
    a.concurrency = 1;
    let summary = run_load(&a).await.unwrap();
    assert_eq!(summary.requests, 5);
    assert_eq!(summary.errors.get("connect"), Some(&5));
    assert_eq!(summary.reports_accepted, Some(0));
    assert!(summary.first_error.is_some());
}

#[tokio::test]
async fn remote_targets_are_refused_before_sending() {
    let summary = run_load(&args("http://192.0.2.1:8000".to_string())).await;
    assert!(matches!(
        summary,
        Err(ichnaea_sim::SimError::RemoteTarget { .. })
    ));
}
