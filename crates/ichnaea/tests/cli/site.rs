//! The site's live coverage tiles through the real binary: a submission at a
//! new place shows on the next request for its tile once the pipeline has run,
//! while an unrelated cached tile is served from the cache (counted through
//! the `tiles_render` and `tiles_request` metrics).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use serde_json::json;

use ichnaea_testkit::binary::decode_chunked;

use super::{Backend, DataDir, Server, post_bytes};

/// Status and body bytes of `GET path` (tiles are binary).
pub(crate) fn get_bytes(port: u16, path: &str) -> (u16, Vec<(String, String)>, Vec<u8>) {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).unwrap();
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a response head");
    let head = String::from_utf8_lossy(&raw[..split]).to_string();
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|s| s.parse().ok())
        .expect("a status");
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let mut body = raw[split + 4..].to_vec();
    if headers
        .iter()
        .any(|(n, v)| n == "transfer-encoding" && v.eq_ignore_ascii_case("chunked"))
    {
        body = decode_chunked(&body).expect("chunked body");
    }
    (status, headers, body)
}

/// The tile of zoom `z` holding a position, and the position's pixel in it.
pub(crate) fn tile_at(lat: f64, lon: f64, z: u32) -> (u32, u32, usize, usize) {
    let n = f64::from(1u32 << z);
    let x = (lon + 180.0) / 360.0 * n;
    let lat = lat.to_radians();
    let y = (1.0 - (lat.tan() + 1.0 / lat.cos()).ln() / std::f64::consts::PI) / 2.0 * n;
    (
        x as u32,
        y as u32,
        (x.fract() * 256.0) as usize,
        (y.fract() * 256.0) as usize,
    )
}

/// The alpha of every pixel of a 256-px tile.
fn alphas(png: &[u8]) -> Vec<u8> {
    let mut decoder = png::Decoder::new(std::io::Cursor::new(png));
    decoder.set_transformations(png::Transformations::EXPAND);
    let mut reader = decoder.read_info().expect("a PNG");
    let mut buf = vec![0; reader.output_buffer_size().unwrap()];
    let info = reader.next_frame(&mut buf).unwrap();
    assert_eq!((info.width, info.height), (256, 256));
    buf.chunks(4).map(|p| p[3]).collect()
}

fn lit_near(alpha: &[u8], px: usize, py: usize) -> bool {
    (py.saturating_sub(3)..(py + 4).min(256))
        .any(|y| (px.saturating_sub(3)..(px + 4).min(256)).any(|x| alpha[y * 256 + x] > 0))
}

/// The value of a Prometheus counter line starting with `series`.
fn counter(metrics: &str, series: &str) -> u64 {
    metrics
        .lines()
        .find(|l| l.starts_with(series))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse::<f64>().ok())
        .map_or(0, |v| v as u64)
}

const PARIS: (f64, f64) = (48.8566, 2.3522);
const NEW_PLACE: (f64, f64) = (52.5163, 13.3777);

fn live_tiles_show_new_contributions(backend: Backend, dir: DataDir) {
    let today = chrono::Utc::now().date_naive();
    std::fs::create_dir_all(&dir.path).unwrap();
    // Earlier data somewhere else.
    super::with_store(&backend, async |store| {
        store.migrate().await.unwrap();
        let grid = ichnaea_core::datamap::DatamapGrid::from_position(PARIS.0, PARIS.1);
        store
            .touch_datamap(grid.quadrant(), &[grid], today)
            .await
            .unwrap();
    });
    let mut env = backend.env();
    // Send every report on at once (not in batches of 100 or after an hour).
    dir.run_with(
        &["export-config", "update", "internal", "--batch", "1"],
        &env,
    )
    .expect_code(0);
    env.extend([("ICHNAEA_TILES_CHANGE_POLL", "1")]);
    let mut server = Server::start(&dir, &env);
    let tile = |lat: f64, lon: f64| {
        let (x, y, px, py) = tile_at(lat, lon, 11);
        let (status, headers, body) = get_bytes(server.port, &format!("/tiles/11/{x}/{y}.png"));
        assert_eq!(status, 200);
        assert!(
            headers
                .iter()
                .any(|(n, v)| n == "content-type" && v == "image/png")
        );
        (alphas(&body), px, py)
    };
    let (paris, ppx, ppy) = tile(PARIS.0, PARIS.1);
    assert!(lit_near(&paris, ppx, ppy), "the earlier data is shown");
    let (before, _, _) = tile(NEW_PLACE.0, NEW_PLACE.1);
    assert!(before.iter().all(|&a| a == 0), "nothing there yet");

    // Contributions at the new place, then the pipeline runs (in the server).
    let reports: Vec<serde_json::Value> = (0..3)
        .map(|i| {
            json!({"position": {"latitude": NEW_PLACE.0 + f64::from(i) * 0.0005, "longitude": NEW_PLACE.1, "accuracy": 10.0},
                   "wifiAccessPoints": [{"macAddress": format!("02000000000{i}")}, {"macAddress": "020000000010"}]})
        })
        .collect();
    let r = post_bytes(
        server.port,
        "/v2/geosubmit",
        &[],
        json!({"items": reports}).to_string().as_bytes(),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    let deadline = Instant::now() + Duration::from_secs(60);
    let (x, y, px, py) = tile_at(NEW_PLACE.0, NEW_PLACE.1, 11);
    loop {
        let (status, _, body) = get_bytes(server.port, &format!("/tiles/11/{x}/{y}.png"));
        assert_eq!(status, 200);
        if lit_near(&alphas(&body), px, py) {
            break;
        }
        assert!(Instant::now() < deadline, "the new place never showed");
        std::thread::sleep(Duration::from_millis(250));
    }
    let (again, _, _) = tile(PARIS.0, PARIS.1);
    assert_eq!(again, paris);
    let metrics = server.metrics().body;
    assert_eq!(
        counter(&metrics, "ichnaea_tiles_render_total "),
        3,
        "Paris once, the new place before and after: {metrics}"
    );
    assert!(counter(&metrics, "ichnaea_tiles_request_total{source=\"memory\"}") >= 1);
    let _ = server.terminate();
}

#[test]
fn live_tiles_show_new_contributions_embedded() {
    let dir = super::data_dir("live-tiles");
    let backend = Backend::embedded(&dir);
    live_tiles_show_new_contributions(backend, dir);
}

#[test]
fn live_tiles_show_new_contributions_cluster() {
    let Some(backend) = Backend::cluster() else {
        return;
    };
    live_tiles_show_new_contributions(backend, super::data_dir("live-tiles-cluster"));
}
