//! Hostile clients against the real binary: time and memory of
//! huge but valid bodies, trickled and stalled bodies, and hundreds of slow
//! connections held while other clients are served. Bounds are generous
//! (debug build, a shared machine); the release figures are in
//! docs/benchmarks.md.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use ichnaea_testkit::binary::{DataDir, Server, post_bytes};
use serde_json::json;

use super::{data_dir, memory_kb};

fn note(text: &str) {
    let _ = writeln!(std::io::stderr(), "{text}");
}

/// A web-only server with a key `k` allowed to locate.
fn locate_server(dir: &DataDir, env: &[(&str, &str)]) -> Server {
    dir.run(&["apikey", "create", "hostile"]).expect_code(0);
    Server::start_roles(dir, env, "web")
}

fn wifi_query(count: usize) -> String {
    let wifi: Vec<String> = (0..count)
        .map(|i| format!(r#"{{"macAddress":"02{i:010x}","signalStrength":-70}}"#))
        .collect();
    format!(
        r#"{{"considerIp":false,"wifiAccessPoints":[{}]}}"#,
        wifi.join(",")
    )
}

fn cell_query(count: usize) -> String {
    let cells: Vec<String> = (0..count)
        .map(|i| format!(r#"{{"radioType":"lte","mobileCountryCode":262,"mobileNetworkCode":1,"locationAreaCode":{},"cellId":{}}}"#, 1 + i / 60_000, 1 + i))
        .collect();
    format!(
        r#"{{"considerIp":false,"cellTowers":[{}]}}"#,
        cells.join(",")
    )
}

/// 100,000 networks in one query are answered quickly (a quadratic de-duplication once took
/// 17.9 s for 100,000 Wi-Fi networks, 27.7 s on /v1/country, 7.6 s for 50,000
/// cells, in a release build: de-duplication searched per entry).
#[test]
fn a_query_of_100000_networks_is_answered_quickly() {
    let dir = data_dir("hostile-locate");
    let server = locate_server(&dir, &[]);
    for (path, body) in [
        ("/v1/geolocate?key=hostile", wifi_query(100_000)),
        ("/v1/country?key=hostile", wifi_query(100_000)),
        ("/v1/geolocate?key=hostile", cell_query(100_000)),
    ] {
        let started = Instant::now();
        let response = post_bytes(server.port, path, &[], body.as_bytes());
        let elapsed = started.elapsed();
        note(&format!(
            "{path} with {} bytes: {} in {elapsed:?}",
            body.len(),
            response.status
        ));
        assert_eq!(response.status, 404, "{}", response.body);
        assert_eq!(response.json()["error"]["errors"][0]["reason"], "notFound");
        assert!(
            elapsed < Duration::from_secs(2),
            "{path}: answered in {elapsed:?}"
        );
    }
}

/// Growth of resident memory during one request over the resident memory
/// before it, in kB: from the peak (VmHWM) when the request raised it, else
/// from VmRSS sampled every 2 ms while it ran.
fn request_growth_kb(server: &Server, path: &str, body: &[u8], expect: u16) -> u64 {
    let pid = server.child.id();
    let (rss_before, peak_before) = memory_kb(pid);
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let sampler = {
        let done = done.clone();
        std::thread::spawn(move || {
            let mut top = 0;
            while !done.load(std::sync::atomic::Ordering::Relaxed) {
                top = top.max(memory_kb(pid).0);
                std::thread::sleep(Duration::from_millis(2));
            }
            top
        })
    };
    let started = Instant::now();
    let response = post_bytes(server.port, path, &[], body);
    let elapsed = started.elapsed();
    done.store(true, std::sync::atomic::Ordering::Relaxed);
    let sampled = sampler.join().unwrap();
    let (rss_after, peak) = memory_kb(pid);
    assert_eq!(response.status, expect, "{path}: {}", response.body);
    let top = if peak > peak_before { peak } else { sampled };
    let growth = top.saturating_sub(rss_before);
    note(&format!(
        "{path} with {} bytes: {} in {elapsed:?}; RSS {rss_before} kB → {rss_after} kB, highest {top} kB (growth {growth} kB)",
        body.len(),
        response.status
    ));
    growth
}

/// Valid but useless bodies cost about their size: a 10 MB
/// submission of 500,000 `{"cellTowers":[{}]}` reports peaked at about 1 GB,
/// 450,000 tiny but usable reports at 1.4 GB, and 1,000,000 empty Wi-Fi
/// entries on geolocate at 257 MB (83 MB once arrays were capped).
#[test]
fn valid_hostile_bodies_cost_about_their_size() {
    let dir = data_dir("hostile-memory");
    let server = locate_server(&dir, &[]);
    let cells = format!(
        r#"{{"items":[{}]}}"#,
        vec![r#"{"cellTowers":[{}]}"#; 500_000].join(",")
    );
    assert!(cells.len() < 10 * 1024 * 1024, "{} bytes", cells.len());
    let empty_wifi = format!(
        r#"{{"wifiAccessPoints":[{}]}}"#,
        vec!["{}"; 1_000_000].join(",")
    );
    // Warm up both paths (threads, buffers, the allocator's first pages).
    let small = br#"{"items":[{"cellTowers":[{}]}]}"#;
    request_growth_kb(&server, "/v2/geosubmit", small, 200);
    request_growth_kb(&server, "/v1/geolocate?key=hostile", b"{}", 404);

    let body_kb = cells.len() as u64 / 1024;
    let growth = request_growth_kb(&server, "/v2/geosubmit", cells.as_bytes(), 200);
    assert!(
        growth < 3 * body_kb + 16 * 1024,
        "a {body_kb} kB submission grew the peak by {growth} kB"
    );
    // The same size of tiny reports that could be queued: refused past
    // 10,000 reports (1.4 GB before).
    let tiny: Vec<String> = (0..450_000)
        .map(|i| format!(r#"{{"cell":[{{"cid":{}}}]}}"#, i % 10))
        .collect();
    let tiny = format!(r#"{{"items":[{}]}}"#, tiny.join(","));
    let body_kb = tiny.len() as u64 / 1024;
    let growth = request_growth_kb(&server, "/v1/submit", tiny.as_bytes(), 413);
    assert!(
        growth < 3 * body_kb + 16 * 1024,
        "a {body_kb} kB submission of tiny reports grew the peak by {growth} kB"
    );
    let body_kb = empty_wifi.len() as u64 / 1024;
    let growth = request_growth_kb(
        &server,
        "/v1/geolocate?key=hostile",
        empty_wifi.as_bytes(),
        404,
    );
    assert!(
        growth < 3 * body_kb + 16 * 1024,
        "a {body_kb} kB query grew the peak by {growth} kB"
    );
}

/// Opens a connection and sends a request head announcing `length` body bytes.
fn open_upload(port: u16, length: usize) -> TcpStream {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream.set_nodelay(true).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let head = format!(
        "POST /v2/geosubmit HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {length}\r\n\r\n"
    );
    stream.write_all(head.as_bytes()).unwrap();
    stream
}

/// A body trickled a byte at a time costs about its size: 100 connections
/// trickling 300 bytes each grew the peak by about 8 KB per byte received
/// (a network buffer pinned per part) before bodies were copied into one
/// buffer.
#[test]
fn a_trickled_body_costs_its_size() {
    let dir = data_dir("hostile-trickle");
    let server = Server::start_roles(&dir, &[], "web");
    let warm = post_bytes(server.port, "/v2/geosubmit", &[], br#"{"items":[]}"#);
    assert_eq!(warm.status, 200);
    let pid = server.child.id();
    let (rss_before, _) = memory_kb(pid);
    let mut uploads: Vec<TcpStream> = (0..100).map(|_| open_upload(server.port, 1_000)).collect();
    let rounds = 300;
    for _ in 0..rounds {
        for upload in &mut uploads {
            upload.write_all(b" ").unwrap();
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let (rss_during, peak) = memory_kb(pid);
    let received_kb = (uploads.len() * rounds) as u64 / 1024;
    let growth = peak.saturating_sub(rss_before);
    note(&format!(
        "{} connections × {rounds} bytes trickled: RSS {rss_before} kB → {rss_during} kB, peak {peak} kB (growth ≤ {growth} kB for {received_kb} kB received)",
        uploads.len()
    ));
    assert!(
        growth < 16 * 1024,
        "{received_kb} kB trickled grew the peak by {growth} kB"
    );
    drop(uploads);
    assert_eq!(server.get("/__lbheartbeat__").status, 200);
}

/// Reads until the peer closes or `limit` passes; the status of the answer, if any.
fn answer_within(stream: &mut TcpStream, limit: Duration) -> Option<u16> {
    stream.set_read_timeout(Some(limit)).unwrap();
    let mut raw = Vec::new();
    let _ = stream.read_to_end(&mut raw);
    let text = String::from_utf8_lossy(&raw);
    text.strip_prefix("HTTP/1.1 ")?.get(..3)?.parse().ok()
}

/// A body that stalls (10 of 100 bytes, then silence) and an unterminated
/// chunked body are answered 408 once `body_idle_timeout` passes; they stayed
/// open for minutes before.
#[test]
fn stalled_bodies_are_answered_408() {
    let dir = data_dir("hostile-stall");
    let server = Server::start_roles(&dir, &[("ICHNAEA_BODY_IDLE_TIMEOUT", "2")], "web");
    let mut stalled = open_upload(server.port, 100);
    stalled.write_all(b"{\"items\":").unwrap();
    let mut chunked = TcpStream::connect(("127.0.0.1", server.port)).unwrap();
    chunked
        .write_all(
            b"POST /v2/geosubmit HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\n{\"ite\r\n",
        )
        .unwrap();
    let started = Instant::now();
    for (name, stream) in [("stalled", &mut stalled), ("chunked", &mut chunked)] {
        let status = answer_within(stream, Duration::from_secs(20));
        let elapsed = started.elapsed();
        note(&format!("{name} body: {status:?} after {elapsed:?}"));
        assert_eq!(status, Some(408), "{name} body");
        assert!(elapsed < Duration::from_secs(8), "{name}: {elapsed:?}");
    }
}

/// Hundreds of idle, slowloris (a head trickled a byte at a time) and slow-body
/// connections are held against a server that has only 256 file descriptors,
/// while other clients connect and are served within their normal latency.
/// Before connections were bounded, accepting failed with EMFILE and retried
/// every second until the slow connections timed out, so every new client
/// waited for them (header_read_timeout, 30 s).
#[test]
fn slow_and_hostile_clients_do_not_delay_others() {
    let dir = data_dir("hostile-slow");
    dir.run(&["apikey", "create", "hostile"]).expect_code(0);
    let command = dir.command_through("prlimit", &["--nofile=256:256", "--"]);
    let server = Server::start_command(command, &[], "web");
    let port = server.port;
    let query = wifi_query(2);
    let normal = |what: &str| -> Duration {
        let started = Instant::now();
        let response = post_bytes(port, "/v1/geolocate?key=hostile", &[], query.as_bytes());
        assert_eq!(response.status, 404, "{what}: {}", response.body);
        started.elapsed()
    };
    let baseline: Vec<Duration> = (0..10).map(|_| normal("baseline")).collect();

    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut idle = Vec::new();
    let mut slowloris = Vec::new();
    let mut slow_body = Vec::new();
    for _ in 0..100 {
        idle.push(TcpStream::connect(("127.0.0.1", port)).unwrap());
        let mut head = TcpStream::connect(("127.0.0.1", port)).unwrap();
        head.set_nodelay(true).unwrap();
        let _ = head.write_all(b"POST /v2/geosubmit HTTP/1.1\r\nHost: x\r\n");
        slowloris.push(head);
        slow_body.push(open_upload(port, 10_000));
    }
    let trickle = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                for s in &mut slowloris {
                    let _ = s.write_all(b"X");
                }
                for s in &mut slow_body {
                    let _ = s.write_all(b" ");
                }
                std::thread::sleep(Duration::from_millis(200));
            }
            (slowloris, slow_body)
        })
    };
    std::thread::sleep(Duration::from_millis(500));
    let loaded: Vec<Duration> = (0..30).map(|_| normal("under load")).collect();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (slowloris, slow_body) = trickle.join().unwrap();
    let worst = |d: &[Duration]| d.iter().max().copied().unwrap_or_default();
    note(&format!(
        "normal requests: worst {:?} alone, worst {:?} next to {} idle, {} slowloris and {} slow-body connections (256 descriptors)",
        worst(&baseline),
        worst(&loaded),
        idle.len(),
        slowloris.len(),
        slow_body.len()
    ));
    assert!(
        worst(&loaded) < Duration::from_secs(2),
        "a normal client waited {:?}",
        worst(&loaded)
    );
    drop((idle, slowloris, slow_body));
    assert_eq!(server.get("/__lbheartbeat__").status, 200);
}

#[test]
fn hostile_json_is_refused_not_fatal() {
    // Deep nesting, huge numbers, NaN and a wrong type everywhere: documented
    // 400s, and the server keeps serving.
    let dir = data_dir("hostile-json");
    let server = locate_server(&dir, &[]);
    let deep = "[".repeat(100_000) + &"]".repeat(100_000);
    for (path, body, status) in [
        ("/v2/geosubmit", deep.clone(), 400),
        ("/v1/geolocate?key=hostile", deep, 400),
        (
            "/v2/geosubmit",
            r#"{"items":[{"wifiAccessPoints":[{"macAddress":1e999}]}]}"#.to_string(),
            400,
        ),
        (
            "/v1/geolocate?key=hostile",
            json!({"wifiAccessPoints": [{"macAddress": {"a": [1, 2, 3]}}]}).to_string(),
            400,
        ),
    ] {
        let response = post_bytes(server.port, path, &[], body.as_bytes());
        assert_eq!(response.status, status, "{path}: {}", response.body);
        if status == 400 {
            assert_eq!(
                response.json()["error"]["errors"][0]["reason"],
                "parseError"
            );
        }
    }
    assert_eq!(server.get("/__lbheartbeat__").status, 200);
}
