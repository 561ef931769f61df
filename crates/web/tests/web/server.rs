//! The web role's HTTP server (`ichnaea_web::server::serve`) over real sockets:
//! the header-read timeout, the peer address, graceful shutdown, and many
//! keep-alive requests with bodies through the real router (each request's
//! body wakes its connection's task; none may be lost).

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::ConnectInfo;
use axum::routing::{get, post};
use ichnaea_core::apikey::ApiKey;
use ichnaea_web::router;
use ichnaea_web::server::{ServerOptions, serve};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;

use crate::{Fx, state};

crate::backend_tests!(
    many_keep_alive_requests_with_bodies_are_all_answered,
    answers_before_the_body_is_read_announce_the_close,
    slow_and_stalled_bodies_are_refused,
    slow_and_idle_clients_do_not_lock_others_out,
);

type Server = (SocketAddr, oneshot::Sender<()>, tokio::task::JoinHandle<()>);

/// Serves `app` on a loopback port; the sender stops the server, and the
/// handle ends when it has stopped.
async fn start(app: Router, header_read_timeout: Option<Duration>) -> Server {
    start_with(
        app,
        ServerOptions {
            header_read_timeout,
            ..ServerOptions::default()
        },
    )
    .await
}

/// [`start`] with every server option.
async fn start_with(app: Router, options: ServerOptions) -> Server {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop_tx, stop_rx) = oneshot::channel::<()>();
    let server = tokio::spawn(serve(listener, app, options, async move {
        let _ = stop_rx.await;
    }));
    (addr, stop_tx, server)
}

/// Reads one HTTP/1.1 response with a Content-Length: (status, body), or
/// `None` when the server closed the connection before a status line.
async fn read_response(stream: &mut TcpStream) -> Option<(u16, Vec<u8>)> {
    read_answer(stream)
        .await
        .map(|(status, _, body)| (status, body))
}

/// [`read_response`] with the head's header lines (lower-cased).
async fn read_answer(stream: &mut TcpStream) -> Option<(u16, String, Vec<u8>)> {
    let mut buf = Vec::new();
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        let mut chunk = [0u8; 4096];
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 {
            assert!(buf.is_empty(), "closed mid-response: {buf:?}");
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8(buf[..head_end].to_vec()).unwrap();
    let status: u16 = head[9..12].parse().unwrap();
    let length: usize = head
        .lines()
        .find_map(|l| {
            let (name, value) = l.split_once(':')?;
            name.eq_ignore_ascii_case("content-length")
                .then(|| value.trim().parse().unwrap())
        })
        .unwrap_or(0);
    let mut body = buf[head_end..].to_vec();
    while body.len() < length {
        let mut chunk = [0u8; 4096];
        let n = stream.read(&mut chunk).await.unwrap();
        assert!(n > 0, "closed mid-body");
        body.extend_from_slice(&chunk[..n]);
    }
    assert_eq!(body.len(), length, "more bytes than announced");
    Some((status, head.to_ascii_lowercase(), body))
}

/// Sends `GET /` on `stream` and reads the answer.
async fn get_root(stream: &mut TcpStream) -> Option<(u16, Vec<u8>)> {
    stream
        .write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    read_response(stream).await
}

/// Waits for the server to close `stream`; the time it took.
async fn closed_after(stream: &mut TcpStream) -> Duration {
    let start = Instant::now();
    let mut chunk = [0u8; 1024];
    let read = tokio::time::timeout(Duration::from_secs(10), stream.read(&mut chunk))
        .await
        .expect("the server kept the connection open");
    // A reset counts as closed too.
    if let Ok(n) = read {
        assert_eq!(n, 0, "unexpected bytes: {:?}", &chunk[..n]);
    }
    start.elapsed()
}

fn hello() -> Router {
    Router::new().route("/", get(|| async { "hello" }))
}

#[tokio::test]
async fn a_client_that_never_finishes_its_head_is_disconnected() {
    let (addr, _stop, _server) = start(hello(), Some(Duration::from_millis(300))).await;
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream
        .write_all(b"GET / HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    let waited = closed_after(&mut stream).await;
    assert!(
        waited >= Duration::from_millis(250),
        "closed after {waited:?}"
    );
    // The server still serves others.
    let mut other = TcpStream::connect(addr).await.unwrap();
    assert_eq!(get_root(&mut other).await, Some((200, b"hello".to_vec())));
}

#[tokio::test]
async fn with_the_timeout_off_a_slow_head_is_still_served() {
    let (addr, _stop, _server) = start(hello(), None).await;
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(b"GET / HTTP/1.1\r\n").await.unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    stream.write_all(b"Host: x\r\n\r\n").await.unwrap();
    assert_eq!(
        read_response(&mut stream).await,
        Some((200, b"hello".to_vec()))
    );
}

#[tokio::test]
async fn an_idle_keep_alive_connection_is_closed_after_the_timeout() {
    let (addr, _stop, _server) = start(hello(), Some(Duration::from_millis(300))).await;
    let mut stream = TcpStream::connect(addr).await.unwrap();
    for _ in 0..2 {
        assert_eq!(get_root(&mut stream).await, Some((200, b"hello".to_vec())));
        // Less than the timeout between requests keeps the connection.
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let waited = closed_after(&mut stream).await;
    assert!(
        waited >= Duration::from_millis(150),
        "closed after {waited:?}"
    );
}

#[tokio::test]
async fn handlers_see_the_peer_address() {
    let app = Router::new().route(
        "/",
        get(|ConnectInfo(peer): ConnectInfo<SocketAddr>| async move { peer.to_string() }),
    );
    let (addr, _stop, _server) = start(app, Some(Duration::from_secs(30))).await;
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let local = stream.local_addr().unwrap();
    assert_eq!(
        get_root(&mut stream).await,
        Some((200, local.to_string().into_bytes()))
    );
}

#[tokio::test]
async fn shutdown_lets_the_request_in_progress_finish() {
    let app = Router::new().route(
        "/slow",
        post(|body: String| async move {
            tokio::time::sleep(Duration::from_millis(400)).await;
            body
        }),
    );
    let (addr, stop, server) = start(app, Some(Duration::from_secs(30))).await;
    let mut busy = TcpStream::connect(addr).await.unwrap();
    let mut idle = TcpStream::connect(addr).await.unwrap();
    busy.write_all(b"POST /slow HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nok")
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    stop.send(()).unwrap();
    // The idle connection is closed at once; the busy one gets its answer.
    assert!(closed_after(&mut idle).await < Duration::from_secs(2));
    assert_eq!(read_response(&mut busy).await, Some((200, b"ok".to_vec())));
    tokio::time::timeout(Duration::from_secs(5), server)
        .await
        .expect("the server did not stop")
        .unwrap();
    assert!(
        TcpStream::connect(addr).await.is_err(),
        "still accepting after shutdown"
    );
}

/// A geolocate query that London's GeoIP answers (its networks are unknown,
/// so the answer is marked `"fallback": "ipf"`).
fn query(i: usize) -> Vec<u8> {
    json!({"wifiAccessPoints": [
        {"macAddress": format!("02:00:00:00:{:02x}:01", i % 256), "signalStrength": -60},
        {"macAddress": format!("02:00:00:00:{:02x}:02", i % 256), "signalStrength": -70},
    ]})
    .to_string()
    .into_bytes()
}

/// 8 keep-alive connections, 50 geolocate queries each, through the real
/// router. Every third body arrives in a second write after a pause, so its
/// connection's task is woken by the socket, not by itself; every answer must
/// come, in order, with the GeoIP position.
async fn many_keep_alive_requests_with_bodies_are_all_answered(fx: Fx) {
    crate::submit::add_key(&fx, ApiKey::new("test")).await;
    let (addr, _stop, _server) =
        start(router(state(&fx, false)), Some(Duration::from_secs(30))).await;
    let mut clients = tokio::task::JoinSet::new();
    for c in 0..8 {
        clients.spawn(async move {
            let mut stream = TcpStream::connect(addr).await.unwrap();
            for i in 0..50 {
                let body = query(c * 50 + i);
                let head = format!(
                    "POST /v1/geolocate?key=test HTTP/1.1\r\nHost: x\r\n\
                     X-Forwarded-For: 81.2.69.192\r\nContent-Type: application/json\r\n\
                     Content-Length: {}\r\n\r\n",
                    body.len()
                );
                if i % 3 == 0 {
                    stream.write_all(head.as_bytes()).await.unwrap();
                    tokio::time::sleep(Duration::from_millis(5)).await;
                    stream.write_all(&body).await.unwrap();
                } else {
                    let mut request = head.into_bytes();
                    request.extend_from_slice(&body);
                    stream.write_all(&request).await.unwrap();
                }
                let (status, answer) =
                    tokio::time::timeout(Duration::from_secs(10), read_response(&mut stream))
                        .await
                        .expect("no answer")
                        .expect("connection closed");
                assert_eq!(status, 200, "{}", String::from_utf8_lossy(&answer));
                let answer: Value = serde_json::from_slice(&answer).unwrap();
                assert_eq!(
                    answer,
                    json!({"location": {"lat": 51.5142, "lng": -0.0931}, "accuracy": 40000.0,
                           "fallback": "ipf"})
                );
            }
        });
    }
    tokio::time::timeout(Duration::from_secs(60), async {
        while let Some(done) = clients.join_next().await {
            done.unwrap();
        }
    })
    .await
    .expect("clients still waiting after 60 s");
}

/// A POST head for `path` announcing `length` bytes of body.
fn post_head(path: &str, length: usize) -> String {
    format!(
        "POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
         Content-Length: {length}\r\n\r\n"
    )
}

/// A request refused before its body is read (here: geolocate without a key)
/// leaves the body's bytes on the connection: the answer says
/// `Connection: close` and the server closes, so the client's next request
/// goes on a new connection instead of failing. A body that is read keeps
/// the connection.
async fn answers_before_the_body_is_read_announce_the_close(fx: Fx) {
    let (addr, _stop, _server) = start(router(state(&fx, false)), None).await;
    let body = vec![b' '; 2_000];
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream
        .write_all(post_head("/v1/geolocate", body.len()).as_bytes())
        .await
        .unwrap();
    stream.write_all(&body).await.unwrap();
    let (status, head, _) = read_answer(&mut stream).await.unwrap();
    assert_eq!(status, 400);
    assert!(head.contains("connection: close"), "{head}");
    assert!(closed_after(&mut stream).await < Duration::from_secs(5));

    // A submission reads its body: the connection stays open for the next one.
    let report = json!({"items": [{"position": {"latitude": 51.5, "longitude": -0.1},
        "wifiAccessPoints": [{"macAddress": "02:00:00:00:00:01"}]}]})
    .to_string();
    let mut stream = TcpStream::connect(addr).await.unwrap();
    for _ in 0..2 {
        let mut request = post_head("/v2/geosubmit", report.len()).into_bytes();
        request.extend_from_slice(report.as_bytes());
        stream.write_all(&request).await.unwrap();
        let (status, head, _) = read_answer(&mut stream).await.unwrap();
        assert_eq!(status, 200);
        assert!(!head.contains("connection: close"), "{head}");
    }
}

/// The state of `fx` with short body timeouts.
fn impatient(fx: &Fx) -> ichnaea_web::AppState {
    let mut st = state(fx, false);
    st.api.body.idle_timeout = Duration::from_millis(300);
    st.api.body.min_rate = 100;
    st
}

/// A body that pauses longer than the idle timeout, or trickles in slower
/// than the minimum rate, is answered 408 with `Connection: close`.
async fn slow_and_stalled_bodies_are_refused(fx: Fx) {
    let (addr, _stop, _server) = start(router(impatient(&fx)), None).await;

    // 10 of 100 bytes, then silence.
    let mut stalled = TcpStream::connect(addr).await.unwrap();
    stalled
        .write_all(post_head("/v2/geosubmit", 100).as_bytes())
        .await
        .unwrap();
    stalled.write_all(b"{\"items\": ").await.unwrap();
    let start = Instant::now();
    let (status, head, body) = read_answer(&mut stalled).await.unwrap();
    assert_eq!(status, 408, "{}", String::from_utf8_lossy(&body));
    assert!(head.contains("connection: close"), "{head}");
    let body: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(
        body["error"]["errors"][0]["reason"],
        json!("requestTimeout")
    );
    assert!(start.elapsed() < Duration::from_secs(5));

    // One byte every 100 ms: never idle for 300 ms, but 10 bytes/s < 100.
    let mut trickle = TcpStream::connect(addr).await.unwrap();
    trickle
        .write_all(post_head("/v2/geosubmit", 1_000).as_bytes())
        .await
        .unwrap();
    let mut sent = 0;
    let status = loop {
        if trickle.write_all(b" ").await.is_err() {
            break read_response(&mut trickle).await.map(|(s, _)| s);
        }
        sent += 1;
        tokio::time::sleep(Duration::from_millis(100)).await;
        let mut peek = [0u8; 1];
        if let Ok(Ok(n)) =
            tokio::time::timeout(Duration::from_millis(1), trickle.peek(&mut peek)).await
            && n > 0
        {
            break read_response(&mut trickle).await.map(|(s, _)| s);
        }
        assert!(sent < 50, "still reading a 10 B/s body after {sent} bytes");
    };
    assert_eq!(status, Some(408));
}

/// With the connection limit reached by idle and slow-header clients, new
/// clients are still served: the oldest connections not serving a request
/// make room. Slow bodies are answered 408 by the body timeouts.
async fn slow_and_idle_clients_do_not_lock_others_out(fx: Fx) {
    let options = ServerOptions {
        header_read_timeout: Some(Duration::from_secs(30)),
        max_connections: 100,
    };
    let (addr, _stop, _server) = start_with(router(impatient(&fx)), options).await;
    let mut held = Vec::new();
    for i in 0..300 {
        let mut stream = TcpStream::connect(addr).await.unwrap();
        match i % 3 {
            // Idle: connected, nothing sent.
            0 => {}
            // Slow header: half a head.
            1 => stream.write_all(b"GET / HTTP/1.1\r\nHost").await.unwrap(),
            // Slow body: a head, then part of the body.
            _ => {
                stream
                    .write_all(post_head("/v2/geosubmit", 1_000).as_bytes())
                    .await
                    .unwrap();
                stream.write_all(b"{").await.unwrap();
            }
        }
        held.push(stream);
    }
    // Ordinary clients, one after another, each on a new connection.
    for _ in 0..20 {
        let started = Instant::now();
        let mut client = TcpStream::connect(addr).await.unwrap();
        client
            .write_all(b"GET /__lbheartbeat__ HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        let answer = tokio::time::timeout(Duration::from_secs(5), read_response(&mut client))
            .await
            .expect("a client was locked out");
        assert_eq!(answer.map(|(s, _)| s), Some(200));
        assert!(started.elapsed() < Duration::from_secs(5));
    }
    drop(held);
}
