//! The public site in a real browser: headless Chromium driven through
//! chromedriver (WebDriver, plus chromedriver's DevTools pass-through) against
//! the real binary. Every page loads without console errors or CSP
//! violations; the map's overlay reaches `/tiles/…`; each statistics chart
//! draws the seeded rows; a header click reorders the region table; a freshly
//! exported file downloads byte-identical; the map still shows the overlay
//! when the base layer's server is gone. Screenshots of every page at
//! 1280×800 and 390×844 go to `target/site-screenshots/`.
//!
//! Skipped with a notice when `chromium` or `chromedriver` is missing
//! (`.ci/run` installs Debian's packages).

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use base64::Engine;
use chrono::{Datelike, Months, Utc};
use ichnaea_core::datamap::DatamapGrid;
use ichnaea_core::stats::{RegionStat, StatKey, StatRow};
use serde_json::{Value, json};

use ichnaea_testkit::binary::free_port;

use super::{Backend, DataDir, Server};

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
/// Longest wait for anything in the browser.
const WAIT: Duration = Duration::from_secs(20);
/// The viewports of the screenshots.
const VIEWPORTS: [(u32, u32); 2] = [(1280, 800), (390, 844)];

/// Records what the page reports as wrong, before any page script runs.
const PROBLEM_RECORDER: &str = r#"
window.__problems = [];
window.addEventListener('securitypolicyviolation', function (e) {
  window.__problems.push('CSP: ' + e.violatedDirective + ' blocked ' + e.blockedURI);
});
window.addEventListener('error', function (e) {
  window.__problems.push('error: ' + (e.message || (e.target && (e.target.src || e.target.href)) || e));
}, true);
window.addEventListener('unhandledrejection', function (e) {
  window.__problems.push('unhandled rejection: ' + e.reason);
});
(function () {
  var original = console.error;
  console.error = function () {
    window.__problems.push('console.error: ' + Array.prototype.join.call(arguments, ' '));
    return original.apply(console, arguments);
  };
}());
"#;

/// A base-layer tile server of the operator's own (any path: a grey tile),
/// which can be stopped to see the map without it.
struct BaseTiles {
    port: u16,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl BaseTiles {
    fn start() -> BaseTiles {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let stop = Arc::new(AtomicBool::new(false));
        let png = grey_tile();
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            for stream in listener.incoming() {
                if flag.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(mut stream) = stream else { continue };
                let mut buf = [0u8; 4096];
                let _ = stream.read(&mut buf);
                let head = format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: image/png\r\nContent-Length: {}\r\nCache-Control: no-store\r\nConnection: close\r\n\r\n",
                    png.len()
                );
                let _ = stream.write_all(head.as_bytes());
                let _ = stream.write_all(&png);
            }
        });
        BaseTiles {
            port,
            stop,
            thread: Some(thread),
        }
    }

    fn stop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(("127.0.0.1", self.port));
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for BaseTiles {
    fn drop(&mut self) {
        self.stop();
    }
}

fn grey_tile() -> Vec<u8> {
    let mut out = Vec::new();
    {
        let mut encoder = png::Encoder::new(&mut out, 256, 256);
        encoder.set_color(png::ColorType::Rgb);
        encoder.set_depth(png::BitDepth::Eight);
        let mut writer = encoder.write_header().unwrap();
        let mut data = vec![0xd4u8; 256 * 256 * 3];
        // A faint grid, to tell the base layer on screenshots.
        for i in 0..256 {
            for j in [0usize, 128] {
                for c in 0..3 {
                    data[(j * 256 + i) * 3 + c] = 0xb0;
                    data[(i * 256 + j) * 3 + c] = 0xb0;
                }
            }
        }
        writer.write_image_data(&data).unwrap();
    }
    out
}

/// One request to chromedriver: `(status, body)`. Its answers carry a
/// `Content-Length` but it keeps the connection open, so the body is read by
/// length.
fn driver_http(
    port: u16,
    method: &str,
    path: &str,
    body: Option<&str>,
) -> std::io::Result<(u16, String)> {
    let mut stream = TcpStream::connect(("127.0.0.1", port))?;
    stream.set_read_timeout(Some(Duration::from_secs(60)))?;
    let body = body.unwrap_or("");
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )?;
    let mut raw = Vec::new();
    let mut buf = [0u8; 65536];
    loop {
        let n = stream.read(&mut buf)?;
        if n == 0 {
            break;
        }
        raw.extend_from_slice(&buf[..n]);
        let Some(split) = raw.windows(4).position(|w| w == b"\r\n\r\n") else {
            continue;
        };
        let head = String::from_utf8_lossy(&raw[..split]).to_ascii_lowercase();
        let length = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length:"))
            .and_then(|v| v.trim().parse::<usize>().ok())
            .unwrap_or(0);
        if raw.len() >= split + 4 + length {
            let status = head
                .split(' ')
                .nth(1)
                .and_then(|s| s.parse().ok())
                .unwrap_or(0);
            let text = String::from_utf8_lossy(&raw[split + 4..split + 4 + length]).to_string();
            return Ok((status, text));
        }
    }
    Err(std::io::Error::other("chromedriver closed the connection"))
}

/// A chromedriver process and one session in it.
struct Browser {
    driver: Child,
    port: u16,
    session: String,
    profile: PathBuf,
}

impl Browser {
    fn start(profile: PathBuf) -> Browser {
        let port = free_port();
        let driver = Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start chromedriver");
        let deadline = Instant::now() + WAIT;
        while driver_http(port, "GET", "/status", None).is_err() {
            assert!(Instant::now() < deadline, "chromedriver did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        let mut browser = Browser {
            driver,
            port,
            session: String::new(),
            profile,
        };
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": CHROMIUM,
                "args": [
                    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic",
                    "--no-first-run", "--disable-background-networking",
                    "--disable-component-update", "--disable-sync",
                    "--disable-dev-shm-usage", "--hide-scrollbars",
                    format!("--user-data-dir={}", browser.profile.display()),
                    "--window-size=1280,800",
                ],
            },
            "goog:loggingPrefs": {"browser": "ALL"},
            "timeouts": {"script": 20000, "pageLoad": 20000},
        }}});
        let created = browser.command("POST", "/session", Some(caps));
        browser.session = created["sessionId"]
            .as_str()
            .expect("a session id")
            .to_string();
        browser.cdp(
            "Page.addScriptToEvaluateOnNewDocument",
            json!({"source": PROBLEM_RECORDER}),
        );
        browser
    }

    fn command(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let body = body.map(|b| b.to_string());
        let (status, text) = driver_http(self.port, method, path, body.as_deref())
            .unwrap_or_else(|e| panic!("webdriver {method} {path}: {e}"));
        let v: Value =
            serde_json::from_str(&text).unwrap_or_else(|e| panic!("webdriver {path}: {e}: {text}"));
        assert_eq!(status, 200, "webdriver {method} {path}: {v}");
        v["value"].clone()
    }

    fn session(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        self.command(
            method,
            &format!("/session/{}{path}", self.session),
            body.or_else(|| (method == "POST").then(|| json!({}))),
        )
    }

    /// A DevTools command through chromedriver.
    fn cdp(&self, cmd: &str, params: Value) -> Value {
        self.session(
            "POST",
            "/goog/cdp/execute",
            Some(json!({"cmd": cmd, "params": params})),
        )
    }

    fn open(&self, url: &str) {
        self.session("POST", "/url", Some(json!({"url": url})));
    }

    fn js(&self, script: &str) -> Value {
        self.session(
            "POST",
            "/execute/sync",
            Some(json!({"script": script, "args": []})),
        )
    }

    /// Runs `script` (which calls `done(value)`) and returns the value.
    fn js_async(&self, script: &str) -> Value {
        let script = format!("var done = arguments[arguments.length - 1];\n{script}");
        self.session(
            "POST",
            "/execute/async",
            Some(json!({"script": script, "args": []})),
        )
    }

    /// Waits until `condition` (a JS expression) is true.
    fn wait_for(&self, condition: &str, what: &str) {
        let deadline = Instant::now() + WAIT;
        loop {
            if self.js(&format!("return !!({condition});")) == json!(true) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{what}: `{condition}` never held; problems: {:?}",
                self.problems()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn click(&self, css: &str) {
        let found = self.session(
            "POST",
            "/element",
            Some(json!({"using": "css selector", "value": css})),
        );
        let id = found
            .as_object()
            .and_then(|o| o.values().next())
            .and_then(Value::as_str)
            .unwrap_or_else(|| panic!("no element {css}"))
            .to_string();
        self.session("POST", &format!("/element/{id}/click"), None);
    }

    /// What went wrong on the page: recorded events and the browser's own
    /// severe log entries (failed loads, CSP reports, uncaught errors).
    fn problems(&self) -> Vec<String> {
        let mut out: Vec<String> = self
            .js("return window.__problems || [];")
            .as_array()
            .map(|a| a.iter().map(|v| v.to_string()).collect())
            .unwrap_or_default();
        let log = self.session("POST", "/se/log", Some(json!({"type": "browser"})));
        for entry in log.as_array().into_iter().flatten() {
            if entry["level"] == "SEVERE" {
                out.push(entry["message"].as_str().unwrap_or("").to_string());
            }
        }
        out
    }

    fn screenshot(&self, dir: &Path, name: &str, (width, height): (u32, u32)) {
        self.cdp(
            "Emulation.setDeviceMetricsOverride",
            json!({"width": width, "height": height, "deviceScaleFactor": 1, "mobile": width < 600}),
        );
        // Let the page re-lay out (charts and the map follow resizes).
        std::thread::sleep(Duration::from_millis(600));
        let data = self.session("GET", "/screenshot", None);
        let png = base64::engine::general_purpose::STANDARD
            .decode(data.as_str().expect("base64 PNG"))
            .expect("valid base64");
        std::fs::write(dir.join(format!("{name}-{width}x{height}.png")), png).unwrap();
        self.cdp("Emulation.clearDeviceMetricsOverride", json!({}));
        std::thread::sleep(Duration::from_millis(200));
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        if !self.session.is_empty() {
            let _ = driver_http(
                self.port,
                "DELETE",
                &format!("/session/{}", self.session),
                None,
            );
        }
        let _ = self.driver.kill();
        let _ = self.driver.wait();
        let _ = std::fs::remove_dir_all(&self.profile);
    }
}

/// Where screenshots go: `target/site-screenshots/`.
fn screenshot_dir() -> PathBuf {
    let binary = PathBuf::from(env!("CARGO_BIN_EXE_ichnaea"));
    let target = binary
        .parent()
        .and_then(Path::parent)
        .expect("target/<profile>/ichnaea");
    let dir = target.join("site-screenshots");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Months of statistics seeded: one row per month, growing.
const MONTHS: u32 = 14;

fn seed(backend: &Backend) {
    let today = Utc::now().date_naive();
    super::with_store(backend, async |store| {
        store.migrate().await.unwrap();
        for m in 0..MONTHS {
            let day = today - Months::new(m);
            let grow = i64::from(MONTHS - m);
            for (key, scale) in [
                (StatKey::UniqueBlue, 40_000),
                (StatKey::UniqueCell, 90_000),
                (StatKey::UniqueNr, 7_000),
                (StatKey::UniqueWifi, 900_000),
                (StatKey::Wifi, 3_000_000),
                (StatKey::Cell, 2_000_000),
                (StatKey::Blue, 100_000),
            ] {
                store
                    .upsert_stat(&StatRow {
                        key,
                        time: day,
                        value: scale * grow,
                    })
                    .await
                    .unwrap();
            }
        }
        let region = |code: &str, gsm, lte, nr, blue, wifi| RegionStat {
            region: code.into(),
            gsm,
            wcdma: 0,
            lte,
            nr,
            blue,
            wifi,
        };
        store
            .replace_region_stats(&[
                region("DE", 900, 1200, 40, 300, 90_000),
                region("FR", 400, 800, 10, 100, 120_000),
                region("BR", 700, 300, 0, 5, 20_000),
                region("CI", 50, 10, 0, 0, 800),
                region("JP", 10, 2000, 300, 50, 40_000),
            ])
            .await
            .unwrap();
        // Contributions around a few cities.
        let mut grids = Vec::new();
        for (lat, lon) in [
            (52.52, 13.40),
            (48.86, 2.35),
            (-23.55, -46.63),
            (35.68, 139.69),
            (40.71, -74.0),
        ] {
            for i in 0..30 {
                for j in 0..30 {
                    grids.push(DatamapGrid::from_position(
                        lat + f64::from(i) * 0.004 * f64::from((i * j) % 3),
                        lon + f64::from(j) * 0.006,
                    ));
                }
            }
        }
        grids.sort();
        grids.dedup();
        for grid in grids {
            store
                .touch_datamap(grid.quadrant(), &[grid], today)
                .await
                .unwrap();
        }
    });
}

fn site_in_a_browser(backend: Backend, dir: DataDir) {
    if !Path::new(CHROMIUM).exists() || !Path::new(CHROMEDRIVER).exists() {
        let _ = writeln!(
            std::io::stderr(),
            "NOTICE: {CHROMIUM} or {CHROMEDRIVER} missing: the browser test is skipped (apt-get install chromium chromium-driver)"
        );
        return;
    }
    std::fs::create_dir_all(&dir.path).unwrap();
    seed(&backend);
    let mut base = BaseTiles::start();
    let base_url = format!("http://127.0.0.1:{}/{{z}}/{{x}}/{{y}}.png", base.port);
    let mut env = backend.env();
    env.extend([
        ("ICHNAEA_SITE_NAME", "Ichnaea Test"),
        ("ICHNAEA_OPERATOR_NAME", "Test Operator"),
        ("ICHNAEA_OPERATOR_EMAIL", "ops@example.org"),
        ("ICHNAEA_MAP_BASE_URL", base_url.as_str()),
        ("ICHNAEA_MAP_BASE_ATTRIBUTION", "Test base layer"),
        ("ICHNAEA_TILES_LIVE_MIN_ZOOM", "0"),
    ]);
    let server = Server::start(&dir, &env);
    let origin = format!("http://127.0.0.1:{}", server.port);

    // The scheduler writes the exports at start.
    let exports = dir.path.join("exports/export");
    let deadline = Instant::now() + WAIT;
    let full = loop {
        let found = std::fs::read_dir(&exports).ok().and_then(|entries| {
            entries
                .filter_map(Result::ok)
                .map(|e| e.file_name().to_string_lossy().to_string())
                .find(|n| n.starts_with("MLS-full-cell-export-"))
        });
        if let Some(name) = found {
            break name;
        }
        assert!(Instant::now() < deadline, "no full export written");
        std::thread::sleep(Duration::from_millis(100));
    };
    let shots = screenshot_dir();
    let browser = Browser::start(dir.path.join("chromium-profile"));
    let started = Instant::now();

    let pages: [(&str, &str, &str); 10] = [
        (
            "home",
            "/",
            "document.querySelector('.map-callout img') && Array.from(document.querySelectorAll('.map-callout img')).every(i => i.complete && i.naturalWidth > 0)",
        ),
        (
            "map",
            "/map",
            "document.querySelectorAll('.coverage-layer img.leaflet-tile-loaded').length > 0",
        ),
        (
            "stats",
            "/stats",
            "document.querySelectorAll('.chart[data-drawn=\"true\"]').length === 3",
        ),
        (
            "regions",
            "/stats/regions",
            "document.querySelectorAll('#region-stats tbody tr').length === 5",
        ),
        (
            "downloads",
            "/downloads",
            "document.querySelectorAll('#full a').length > 0",
        ),
        (
            "api",
            "/api",
            "document.querySelectorAll('.api-op').length > 10",
        ),
        ("privacy", "/privacy", "true"),
        ("terms", "/terms", "true"),
        ("contact", "/contact", "true"),
        ("optout", "/optout", "true"),
    ];
    for (name, path, ready) in pages {
        browser.open(&format!("{origin}{path}"));
        browser.wait_for("document.readyState === 'complete'", name);
        browser.wait_for(ready, name);
        match name {
            "map" => check_map(&browser),
            "stats" => check_stats(&browser),
            "regions" => check_regions(&browser),
            "downloads" => check_download(&browser, &exports, &full),
            _ => {}
        }
        let problems = browser.problems();
        assert!(problems.is_empty(), "{path}: {problems:?}");
        for viewport in VIEWPORTS {
            browser.screenshot(&shots, name, viewport);
        }
        let problems = browser.problems();
        assert!(problems.is_empty(), "{path} after resizing: {problems:?}");
    }

    // Without the base layer's server the overlay still shows.
    base.stop();
    browser.open(&format!("{origin}/map#6/52.5/13.4"));
    browser.wait_for(
        "document.querySelectorAll('.coverage-layer img.leaflet-tile-loaded').length > 0",
        "map without base layer",
    );
    check_map(&browser);
    let base_host = format!("127.0.0.1:{}", base.port);
    let problems = browser.problems();
    // The failed base tiles are reported: the detection works.
    assert!(
        !problems.is_empty(),
        "the base layer's failures went unseen"
    );
    for problem in problems {
        assert!(
            problem.contains(&base_host),
            "only the base layer may fail: {problem}"
        );
    }
    browser.screenshot(&shots, "map-without-base-layer", VIEWPORTS[0]);
    let _ = writeln!(
        std::io::stderr(),
        "browser checks took {:.1} s; screenshots in {}",
        started.elapsed().as_secs_f64(),
        shots.display()
    );
}

/// The overlay's requests reached `/tiles/…` and were answered 200 PNGs.
fn check_map(browser: &Browser) {
    let tiles = browser.js("return performance.getEntriesByType('resource')
            .filter(e => new URL(e.name).pathname.startsWith('/tiles/'))
            .map(e => [e.name, e.responseStatus]);");
    let tiles = tiles.as_array().expect("resource entries");
    assert!(!tiles.is_empty(), "no /tiles/ requests");
    for t in tiles {
        assert_eq!(t[1], json!(200), "{t}");
    }
    let first = tiles[0][0].as_str().unwrap().to_string();
    let kind = browser.js_async(&format!(
        "fetch({first:?}).then(r => done([r.status, r.headers.get('content-type')]));"
    ));
    assert_eq!(kind, json!([200, "image/png"]));
}

/// Each chart drew the seeded months (a year of them: 12 or 13 monthly points).
fn check_stats(browser: &Browser) {
    let charts = browser.js(
        "return Array.from(document.querySelectorAll('.chart')).map(c =>
            [c.id, Number(c.getAttribute('data-series')), Number(c.getAttribute('data-points')),
             c.querySelectorAll('canvas').length]);",
    );
    let charts = charts.as_array().unwrap();
    assert_eq!(charts.len(), 3);
    let today = Utc::now().date_naive();
    let year_ago = today - chrono::Duration::days(365);
    // Months within the last 365 days that got a seeded row.
    let months = (0..MONTHS)
        .map(|m| today - Months::new(m))
        .filter(|d| *d >= year_ago)
        .map(|d| (d.year(), d.month()))
        .collect::<std::collections::BTreeSet<_>>()
        .len() as u64;
    for chart in charts {
        let series = if chart[0] == "cell_chart" { 2 } else { 1 };
        assert_eq!(chart[1], json!(series), "{chart}");
        assert_eq!(chart[2], json!(months * series), "{chart}");
        assert!(chart[3].as_u64().unwrap() >= 1, "a canvas: {chart}");
    }
}

/// A header click sorts the rows by that column.
fn check_regions(browser: &Browser) {
    let names = || -> Vec<String> {
        browser
            .js("return Array.from(document.querySelectorAll('#region-stats tbody tr td:first-child')).map(td => td.textContent);")
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap().to_string())
            .collect()
    };
    let initial = names();
    assert_eq!(initial[0], "Japan", "most cells first: {initial:?}");
    browser.click("#region-stats thead th:first-child button");
    let by_name = names();
    assert_ne!(by_name, initial, "the click reordered the rows");
    assert_eq!(
        by_name,
        ["Brazil", "Côte d’Ivoire", "France", "Germany", "Japan"]
    );
    browser.click("#region-stats thead th:nth-child(8) button");
    assert_eq!(names()[0], "France", "most Wi-Fi first");
    browser.js(
        "var s = document.getElementById('region-search'); s.value = 'ger'; s.dispatchEvent(new Event('input'));",
    );
    let shown = browser.js(
        "return Array.from(document.querySelectorAll('#region-stats tbody tr')).filter(r => !r.hidden).length;",
    );
    assert_eq!(shown, json!(1));
    browser.js(
        "var s = document.getElementById('region-search'); s.value = ''; s.dispatchEvent(new Event('input'));",
    );
}

/// The freshly exported file is listed and its link downloads it unchanged.
fn check_download(browser: &Browser, exports: &Path, name: &str) {
    let links = browser.js(
        "return Array.from(document.querySelectorAll('#full a')).map(a => [a.textContent, a.href]);",
    );
    let link = links
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l[0] == name)
        .unwrap_or_else(|| panic!("{name} not listed: {links}"))[1]
        .as_str()
        .unwrap()
        .to_string();
    let downloaded = browser.js_async(&format!(
        "fetch({link:?}).then(r => r.arrayBuffer()).then(b => {{
            var bytes = new Uint8Array(b), s = '';
            for (var i = 0; i < bytes.length; i++) {{ s += String.fromCharCode(bytes[i]); }}
            done(btoa(s));
        }});"
    ));
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(downloaded.as_str().unwrap())
        .unwrap();
    assert_eq!(
        bytes,
        std::fs::read(exports.join(name)).unwrap(),
        "byte-identical"
    );
}

#[test]
fn the_site_works_in_a_browser() {
    let dir = super::data_dir("browser");
    let backend = Backend::embedded(&dir);
    site_in_a_browser(backend, dir);
}
