//! `sim load`: the generated bodies against the server's own decoding and conversion, and whole
//! runs against a small loopback server that counts what it accepts.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use axum::serve::ListenerExt;
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
                assert_eq!(report.source.name(), "gnss");
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
    /// TCP connections accepted.
    connections: Arc<AtomicU64>,
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

/// Serves `app` on a loopback port, counting accepted connections in `counts`.
async fn serve(app: Router, counts: &Counts) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let connections = Arc::clone(&counts.connections);
    let listener = listener.tap_io(move |_| {
        connections.fetch_add(1, Ordering::SeqCst);
    });
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    addr
}

async fn server() -> (SocketAddr, Counts) {
    let counts = Counts::default();
    let app = Router::new()
        .route("/v2/geosubmit", post(geosubmit))
        .with_state(counts.clone());
    (serve(app, &counts).await, counts)
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
        threads: 1,
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

#[tokio::test]
async fn each_worker_keeps_one_connection() {
    for threads in [1, 2] {
        let (addr, counts) = server().await;
        let mut a = args(format!("http://{addr}"));
        a.requests = Some(200);
        a.threads = threads;
        let summary = run_load(&a).await.unwrap();
        assert_eq!(summary.requests, 200, "threads {threads}");
        assert_eq!(counts.requests.load(Ordering::SeqCst), 200);
        assert_eq!(summary.status.get("200"), Some(&160));
        assert_eq!(summary.status.get("503"), Some(&40));
        assert!(summary.errors.is_empty(), "{:?}", summary.first_error);
        let connections = counts.connections.load(Ordering::SeqCst);
        assert!(
            (1..=4).contains(&connections),
            "{connections} connections for 4 workers"
        );
    }
}

/// What the hand-written server does with the `n`-th request it reads.
fn raw_reply(n: u64) -> &'static [u8] {
    match n % 4 {
        0 => b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok",
        1 => b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok",
        // Fewer body bytes than announced, then the connection closes.
        2 => b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nok",
        // No answer at all: the connection closes after the request.
        _ => b"",
    }
}

/// Reads one request (head and Content-Length body); false at end of stream.
async fn read_request(stream: &mut TcpStream, buf: &mut Vec<u8>) -> bool {
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
            let length: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .map_or(0, |v| v.trim().parse().unwrap());
            if buf.len() >= end + 4 + length {
                buf.drain(..end + 4 + length);
                return true;
            }
        }
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => return false,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

/// A minimal HTTP/1.1 server answering as [`raw_reply`] says.
async fn raw_server() -> (SocketAddr, Counts) {
    let counts = Counts::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let c = counts.clone();
    tokio::spawn(async move {
        loop {
            let (mut stream, _) = listener.accept().await.unwrap();
            c.connections.fetch_add(1, Ordering::SeqCst);
            let c = c.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                while read_request(&mut stream, &mut buf).await {
                    let n = c.requests.fetch_add(1, Ordering::SeqCst);
                    let reply = raw_reply(n);
                    stream.write_all(reply).await.unwrap();
                    if n % 4 != 0 {
                        return;
                    }
                }
            });
        }
    });
    (addr, counts)
}

#[tokio::test]
async fn closed_connections_are_counted_and_reopened() {
    let (addr, counts) = raw_server().await;
    let mut a = args(format!("http://{addr}"));
    a.requests = Some(20);
    a.concurrency = 1;
    let summary = run_load(&a).await.unwrap();
    assert_eq!(summary.requests, 20);
    // Requests a closed connection never sent went again on a new one: the
    // server saw each request once.
    assert_eq!(counts.requests.load(Ordering::SeqCst), 20);
    assert_eq!(summary.status.get("200"), Some(&10), "{:?}", summary.errors);
    assert_eq!(summary.errors.get("body"), Some(&5));
    assert_eq!(summary.errors.get("request"), Some(&5));
    assert_eq!(summary.errors.len(), 2, "{:?}", summary.errors);
    assert!(summary.first_error.is_some());
    // A new connection after each close but the last.
    assert_eq!(counts.connections.load(Ordering::SeqCst), 15);
}

async fn slow_first(State(counts): State<Counts>) -> StatusCode {
    if counts.requests.fetch_add(1, Ordering::SeqCst) == 0 {
        tokio::time::sleep(Duration::from_secs(5)).await;
    }
    StatusCode::OK
}

#[tokio::test]
async fn a_late_answer_is_a_timeout_and_the_next_request_reconnects() {
    let counts = Counts::default();
    let app = Router::new()
        .route("/v2/geosubmit", post(slow_first))
        .with_state(counts.clone());
    let addr = serve(app, &counts).await;
    let mut a = args(format!("http://{addr}"));
    a.requests = Some(3);
    a.concurrency = 1;
    a.timeout = Duration::from_millis(300);
    let summary = run_load(&a).await.unwrap();
    assert_eq!(summary.requests, 3);
    assert_eq!(summary.errors.get("timeout"), Some(&1));
    assert_eq!(summary.status.get("200"), Some(&2));
    assert_eq!(counts.connections.load(Ordering::SeqCst), 2);
    assert!(
        summary.elapsed_s < 5.0,
        "the run waited for the late answer"
    );
}

#[tokio::test]
async fn open_loop_paces_its_rate_on_few_connections() {
    let (addr, counts) = server().await;
    let mut a = args(format!("http://{addr}"));
    a.rate = Some(200.0);
    a.duration = Duration::from_secs(1);
    a.concurrency = 8;
    a.gzip = false;
    let summary = run_load(&a).await.unwrap();
    // 200 are due before the deadline; a loaded machine may fall a little behind.
    assert!(
        (150..=200).contains(&summary.requests),
        "{} requests",
        summary.requests
    );
    assert_eq!(counts.requests.load(Ordering::SeqCst), summary.requests);
    let connections = counts.connections.load(Ordering::SeqCst);
    assert!(
        (1..=8).contains(&connections),
        "{connections} connections for 8 slots"
    );
    assert!(summary.elapsed_s < 5.0);
}

async fn slow(State(counts): State<Counts>) -> StatusCode {
    counts.requests.fetch_add(1, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(50)).await;
    StatusCode::OK
}

#[tokio::test]
async fn open_loop_splits_latency_into_send_delay_and_service() {
    let counts = Counts::default();
    let app = Router::new()
        .route("/v2/geosubmit", post(slow))
        .with_state(counts.clone());
    let addr = serve(app, &counts).await;
    let mut a = args(format!("http://{addr}"));
    // One slot, a request due every 25 ms, answers after 50 ms: the n-th
    // request leaves about 25·n ms late, waiting for the slot.
    a.rate = Some(40.0);
    a.concurrency = 1;
    a.duration = Duration::from_millis(600);
    a.gzip = false;
    let summary = run_load(&a).await.unwrap();
    assert!(summary.requests >= 6, "{} requests", summary.requests);
    let (delay, service) = (
        summary.send_delay_ms.clone().unwrap(),
        summary.service_ms.clone().unwrap(),
    );
    let latency = &summary.latency_ms;
    assert!(service.p50 >= 50.0, "service {service:?}");
    assert!(delay.max >= 100.0, "send delay {delay:?}");
    assert!(
        latency.max >= delay.max && latency.max >= service.max,
        "{latency:?} {delay:?} {service:?}"
    );
    // Request by request, latency = send delay + service.
    let sum_of_means = delay.mean + service.mean;
    assert!(
        (latency.mean - sum_of_means).abs() < 0.5,
        "mean {} against {sum_of_means}",
        latency.mean
    );
    let table = summary.table();
    assert!(table.contains("send delay"), "{table}");
    let json: Value = serde_json::to_value(&summary).unwrap();
    assert!(json["service_ms"]["p99"].as_f64().unwrap() >= 50.0);
}

#[tokio::test]
async fn closed_loop_has_no_send_delay() {
    let (addr, _counts) = server().await;
    let mut a = args(format!("http://{addr}"));
    a.requests = Some(5);
    let summary = run_load(&a).await.unwrap();
    assert_eq!(summary.requests, 5);
    assert!(summary.send_delay_ms.is_none() && summary.service_ms.is_none());
    assert!(!summary.table().contains("send delay"));
}

#[tokio::test]
async fn invalid_threads_are_refused() {
    let mut a = args("http://127.0.0.1:9".to_string());
    a.threads = 0;
    assert!(matches!(
        run_load(&a).await,
        Err(ichnaea_sim::SimError::InvalidOption {
            flag: "--threads",
            ..
        })
    ));
}
