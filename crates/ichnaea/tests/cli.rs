//! End-to-end tests of the `ichnaea` binary: every test runs the real executable
//! in its own temporary data directory, configured only through `ICHNAEA_*`
//! environment variables, and talks HTTP to `serve` over a plain TCP socket.

// Test code: a failed unwrap is a failed test with its message, and test
// helpers are not public API.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};

const ADMIN_TOKEN: &str = "e2e-admin-t0ken-5b1d9c";
const READY_TIMEOUT: Duration = Duration::from_secs(20);
const EXIT_TIMEOUT: Duration = Duration::from_secs(15);
const POLL: Duration = Duration::from_millis(50);

// ---------------------------------------------------------------------------
// Data directory and CLI runs

struct DataDir {
    path: PathBuf,
}

impl DataDir {
    /// A unique, not yet existing directory: the binary must create it.
    fn new(test: &str) -> DataDir {
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let path = std::env::temp_dir().join(format!(
            "ichnaea-e2e-{test}-{}-{}-{nanos}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::SeqCst),
        ));
        let _ = std::fs::remove_dir_all(&path);
        DataDir { path }
    }

    fn command(&self) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_ichnaea"));
        command.env_clear();
        if let Some(path) = std::env::var_os("PATH") {
            command.env("PATH", path);
        }
        command
            .env("ICHNAEA_DATA_DIR", &self.path)
            .env("ICHNAEA_LOG_FORMAT", "json")
            // Parallel servers must not compete for the default metrics port.
            .env("ICHNAEA_METRICS_LISTEN", "127.0.0.1:0")
            .stdin(Stdio::null());
        command
    }

    fn run(&self, args: &[&str]) -> Run {
        self.run_with(args, &[])
    }

    fn run_with(&self, args: &[&str], env: &[(&str, &str)]) -> Run {
        let output = self
            .command()
            .args(args)
            .envs(env.iter().copied())
            .output()
            .expect("cannot start the ichnaea binary");
        Run {
            args: args.join(" "),
            code: output.status.code(),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }
    }

    /// Runs a command that must succeed and print JSON.
    fn json(&self, args: &[&str]) -> Value {
        self.run(args).expect_code(0).json()
    }

    /// Runs a command that must be refused with status 2, mention `needle` on
    /// stderr, print nothing on stdout and leave `listing` unchanged.
    fn assert_refused(&self, listing: &[&str], args: &[&str], needle: &str) {
        let before = self.json(listing);
        let run = self.run(args).expect_code(2);
        assert!(
            run.stderr.contains(needle),
            "`ichnaea {}`: stderr should mention {needle:?}:\n{}",
            run.args,
            run.stderr
        );
        assert_eq!(run.stdout, "", "`ichnaea {}` printed to stdout", run.args);
        assert_eq!(
            self.json(listing),
            before,
            "`ichnaea {}` changed the database",
            run.args
        );
    }
}

impl Drop for DataDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

struct Run {
    args: String,
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

impl Run {
    fn expect_code(self, code: i32) -> Run {
        assert_eq!(
            self.code,
            Some(code),
            "`ichnaea {}` exit status\n--- stdout:\n{}\n--- stderr:\n{}",
            self.args,
            self.stdout,
            self.stderr
        );
        self
    }

    fn json(&self) -> Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| {
            panic!(
                "`ichnaea {}` did not print JSON ({e}):\n{}",
                self.args, self.stdout
            )
        })
    }
}

// ---------------------------------------------------------------------------
// Minimal HTTP/1.1 client

struct HttpResponse {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl HttpResponse {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn json(&self) -> Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("response body is not JSON ({e}):\n{}", self.body))
    }
}

fn try_http(
    port: u16,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&str>,
) -> std::io::Result<HttpResponse> {
    let mut stream = TcpStream::connect(("127.0.0.1", port))?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    stream.set_write_timeout(Some(Duration::from_secs(10)))?;
    let mut request =
        format!("{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n");
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    if let Some(body) = body {
        request.push_str(&format!(
            "Content-Type: application/json\r\nContent-Length: {}\r\n",
            body.len()
        ));
    }
    request.push_str("\r\n");
    request.push_str(body.unwrap_or(""));
    stream.write_all(request.as_bytes())?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw)?;
    parse_response(&raw)
        .ok_or_else(|| std::io::Error::other(format!("malformed HTTP response: {raw:?}")))
}

fn parse_response(raw: &[u8]) -> Option<HttpResponse> {
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = std::str::from_utf8(&raw[..split]).ok()?;
    let mut lines = head.split("\r\n");
    let status_line = lines.next()?;
    let mut parts = status_line.splitn(3, ' ');
    if !parts.next()?.starts_with("HTTP/1.") {
        return None;
    }
    let status = parts.next()?.parse().ok()?;
    let headers: Vec<(String, String)> = lines
        .map(|line| {
            let (name, value) = line.split_once(':')?;
            Some((name.trim().to_ascii_lowercase(), value.trim().to_string()))
        })
        .collect::<Option<_>>()?;
    let mut body = raw[split + 4..].to_vec();
    let chunked = headers
        .iter()
        .any(|(n, v)| n == "transfer-encoding" && v.eq_ignore_ascii_case("chunked"));
    if chunked {
        body = decode_chunked(&body)?;
    }
    Some(HttpResponse {
        status,
        headers,
        body: String::from_utf8(body).ok()?,
    })
}

fn decode_chunked(mut data: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let line_end = data.windows(2).position(|w| w == b"\r\n")?;
        let size_text = std::str::from_utf8(&data[..line_end]).ok()?;
        let size = usize::from_str_radix(size_text.split(';').next()?.trim(), 16).ok()?;
        data = &data[line_end + 2..];
        if size == 0 {
            return Some(out);
        }
        out.extend_from_slice(data.get(..size)?);
        data = data.get(size + 2..)?;
    }
}

// ---------------------------------------------------------------------------
// A running `ichnaea serve`

fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral port");
    listener.local_addr().expect("local address").port()
}

struct Server {
    child: Child,
    port: u16,
    metrics_port: u16,
    stderr: Option<JoinHandle<String>>,
}

impl Server {
    fn start(dir: &DataDir, env: &[(&str, &str)]) -> Server {
        Server::start_roles(dir, env, "web,worker,scheduler")
    }

    fn start_roles(dir: &DataDir, env: &[(&str, &str)], roles: &str) -> Server {
        let port = free_port();
        let metrics_port = free_port();
        let mut command = dir.command();
        command
            .args(["serve", "--roles", roles])
            .env("ICHNAEA_LISTEN", format!("127.0.0.1:{port}"))
            .env(
                "ICHNAEA_METRICS_LISTEN",
                format!("127.0.0.1:{metrics_port}"),
            )
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let mut child = command.spawn().expect("cannot start `ichnaea serve`");
        let mut pipe = child.stderr.take().expect("piped stderr");
        let stderr = std::thread::spawn(move || {
            let mut text = String::new();
            let _ = pipe.read_to_string(&mut text);
            text
        });
        let mut server = Server {
            child,
            port,
            metrics_port,
            stderr: Some(stderr),
        };
        server.wait_until_ready();
        server
    }

    fn wait_until_ready(&mut self) {
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if let Ok(response) = try_http(self.port, "GET", "/__lbheartbeat__", &[], None)
                && response.status == 200
            {
                return;
            }
            if let Some(status) = self.child.try_wait().expect("poll the server") {
                panic!(
                    "`ichnaea serve` exited early with {status}:\n{}",
                    self.collect_stderr()
                );
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                panic!(
                    "`ichnaea serve` did not answer /__lbheartbeat__ within {READY_TIMEOUT:?}:\n{}",
                    self.collect_stderr()
                );
            }
            std::thread::sleep(POLL);
        }
    }

    fn http(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<&str>,
    ) -> HttpResponse {
        try_http(self.port, method, path, headers, body)
            .unwrap_or_else(|e| panic!("{method} {path}: {e}"))
    }

    fn get(&self, path: &str) -> HttpResponse {
        self.http("GET", path, &[], None)
    }

    /// `GET /metrics` from the metrics listener.
    fn metrics(&self) -> HttpResponse {
        try_http(self.metrics_port, "GET", "/metrics", &[], None)
            .unwrap_or_else(|e| panic!("GET /metrics: {e}"))
    }

    /// Sends SIGTERM and waits for the exit; returns the status and all of stderr.
    fn terminate(&mut self) -> (ExitStatus, String) {
        let pid = self.child.id().to_string();
        let kill = Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .expect("run kill");
        assert!(kill.success(), "kill -TERM {pid} failed");
        let deadline = Instant::now() + EXIT_TIMEOUT;
        loop {
            if let Some(status) = self.child.try_wait().expect("poll the server") {
                return (status, self.collect_stderr());
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                panic!(
                    "`ichnaea serve` did not exit within {EXIT_TIMEOUT:?} of SIGTERM:\n{}",
                    self.collect_stderr()
                );
            }
            std::thread::sleep(POLL);
        }
    }

    /// Joins the stderr reader; the process must have exited (or been killed).
    fn collect_stderr(&mut self) -> String {
        let _ = self.child.wait();
        self.stderr
            .take()
            .map(|h| h.join().unwrap_or_default())
            .unwrap_or_default()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}

// ---------------------------------------------------------------------------
// apikey

#[test]
fn apikey_create_show_update_list_delete() {
    let dir = DataDir::new("apikey");

    let created = dir
        .run(&["apikey", "create", "test", "--maxreq", "5"])
        .expect_code(0);
    assert!(created.stdout.contains("test"), "{}", created.stdout);

    let table = dir.run(&["apikey", "show", "test"]).expect_code(0);
    assert!(
        table
            .stdout
            .lines()
            .any(|l| l.split_whitespace().eq(["metric_label", "k9f86d081884c"])),
        "{}",
        table.stdout
    );
    let shown = dir.json(&["apikey", "show", "test", "--json"]);
    assert_eq!(
        shown,
        json!({
            "valid_key": "test",
            "maxreq": 5,
            "allow_locate": true,
            "allow_region": true,
            "allow_fallback": false,
            "fallback_name": null,
            "fallback_schema": null,
            "fallback_url": null,
            "fallback_ratelimit": null,
            "fallback_ratelimit_interval": null,
            "fallback_cache_expire": null,
            "store_sample_locate": 100,
            "store_sample_submit": 100,
        })
    );

    dir.run(&[
        "apikey",
        "update",
        "test",
        "--maxreq",
        "10",
        "--allow-fallback",
        "true",
        "--fallback-name",
        "p",
        "--store-sample-submit",
        "0",
    ])
    .expect_code(0);
    let updated = json!({
        "valid_key": "test",
        "maxreq": 10,
        "allow_locate": true,
        "allow_region": true,
        "allow_fallback": true,
        "fallback_name": "p",
        "fallback_schema": null,
        "fallback_url": null,
        "fallback_ratelimit": null,
        "fallback_ratelimit_interval": null,
        "fallback_cache_expire": null,
        "store_sample_locate": 100,
        "store_sample_submit": 0,
    });
    assert_eq!(dir.json(&["apikey", "show", "test", "--json"]), updated);
    assert_eq!(dir.json(&["apikey", "list", "--json"]), json!([updated]));

    let table = dir.run(&["apikey", "list"]).expect_code(0).stdout;
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(lines.len(), 2, "header and one row:\n{table}");
    assert!(lines[0].starts_with("valid_key "), "header:\n{table}");
    assert!(lines[1].starts_with("test "), "row:\n{table}");
    assert_eq!(
        lines[1].split_whitespace().collect::<Vec<_>>(),
        ["test", "10", "true", "true", "true", "100", "0", "p", "-"],
        "row:\n{table}"
    );

    let deleted = dir.run(&["apikey", "delete", "test"]).expect_code(0);
    assert_eq!(deleted.stdout, "deleted api key test\n");
    let missing = dir.run(&["apikey", "show", "test"]).expect_code(1);
    assert!(missing.stderr.contains("not found"), "{}", missing.stderr);
    assert_eq!(missing.stdout, "");
    let again = dir.run(&["apikey", "delete", "test"]).expect_code(1);
    assert!(again.stderr.contains("not found"), "{}", again.stderr);
    assert_eq!(dir.json(&["apikey", "list", "--json"]), json!([]));
}

#[test]
fn apikey_invalid_input_exits_2_and_changes_nothing() {
    let dir = DataDir::new("apikey-invalid");
    let list = ["apikey", "list", "--json"];
    dir.run(&["apikey", "create", "keep", "--maxreq", "7"])
        .expect_code(0);

    dir.assert_refused(&list, &["apikey", "create", "x_y"], "valid_key");
    dir.assert_refused(&list, &["apikey", "create", "abc"], "valid_key");
    dir.assert_refused(
        &list,
        &["apikey", "create", "test", "--store-sample-submit", "101"],
        "store_sample_submit",
    );
    dir.assert_refused(
        &list,
        &["apikey", "create", "test", "--store-sample-locate=-1"],
        "store_sample_locate",
    );
    // Without `=`, clap takes `-1` for a flag: still status 2, nothing written.
    dir.assert_refused(
        &list,
        &["apikey", "create", "test", "--store-sample-locate", "-1"],
        "-1",
    );
    dir.assert_refused(
        &list,
        &["apikey", "create", "test", "--fallback-url", "ftp://x"],
        "fallback_url",
    );
    dir.assert_refused(
        &list,
        &["apikey", "create", "test", "--fallback-schema", "bogus/v1"],
        "fallback_schema",
    );
    dir.assert_refused(
        &list,
        &["apikey", "create", "test", "--maxreq", "abc"],
        "--maxreq",
    );
    assert_eq!(
        dir.json(&list)
            .as_array()
            .map(|rows| rows.iter().map(|r| r["valid_key"].clone()).collect()),
        Some(vec![json!("keep")])
    );

    let before = dir.json(&["apikey", "show", "keep", "--json"]);
    assert_eq!(before["maxreq"], json!(7));
    for (args, field) in [
        (
            &[
                "apikey",
                "update",
                "keep",
                "--maxreq",
                "1",
                "--store-sample-submit",
                "101",
            ][..],
            "store_sample_submit",
        ),
        (
            &["apikey", "update", "keep", "--fallback-url", "ftp://x"][..],
            "fallback_url",
        ),
        (&["apikey", "update", "keep", "--maxreq=-3"][..], "maxreq"),
    ] {
        dir.assert_refused(&list, args, field);
        assert_eq!(
            dir.json(&["apikey", "show", "keep", "--json"]),
            before,
            "`ichnaea {}` changed the row",
            args.join(" ")
        );
    }
}

// ---------------------------------------------------------------------------
// export-config

#[test]
fn export_config_lifecycle_and_validation() {
    let dir = DataDir::new("export");
    let list = ["export-config", "list", "--json"];
    let internal = json!({
        "name": "internal",
        "batch": 100,
        "schema": "internal",
        "url": null,
        "skip_keys": null,
        "skip_sources": null,
    });
    assert_eq!(dir.json(&list), json!([internal]));

    dir.run(&[
        "export-config",
        "create",
        "bk",
        "--schema",
        "s3",
        "--url",
        "file:///tmp/x/{source}",
        "--skip-keys",
        "a,b",
        "--skip-sources",
        "query,fused",
        "--batch",
        "10",
    ])
    .expect_code(0);
    let bk = json!({
        "name": "bk",
        "batch": 10,
        "schema": "s3",
        "url": "file:///tmp/x/{source}",
        "skip_keys": ["a", "b"],
        "skip_sources": ["fused", "query"],
    });
    assert_eq!(dir.json(&["export-config", "show", "bk", "--json"]), bk);
    let rows = dir.json(&list);
    let rows = rows.as_array().expect("an array");
    assert_eq!(rows.len(), 2, "{rows:?}");
    assert!(rows.contains(&internal) && rows.contains(&bk), "{rows:?}");

    dir.assert_refused(
        &list,
        &["export-config", "create", "x", "--schema", "ftp"],
        "--schema",
    );
    dir.assert_refused(
        &list,
        &["export-config", "create", "x", "--schema", "geosubmit"],
        "url",
    );
    // A second internal target would apply every report twice.
    dir.assert_refused(
        &list,
        &["export-config", "create", "x", "--schema", "internal"],
        "schema",
    );
    dir.assert_refused(
        &list,
        &["export-config", "update", "bk", "--schema", "internal"],
        "schema",
    );
    dir.assert_refused(
        &list,
        &[
            "export-config",
            "create",
            "x",
            "--schema",
            "dummy",
            "--skip-sources",
            "gps",
        ],
        "--skip-sources",
    );
    dir.assert_refused(
        &list,
        &["export-config", "update", "bk", "--url", "http://not-s3"],
        "url",
    );

    dir.run(&["export-config", "update", "bk", "--skip-keys", ""])
        .expect_code(0);
    let mut expected = bk.clone();
    expected["skip_keys"] = Value::Null;
    assert_eq!(
        dir.json(&["export-config", "show", "bk", "--json"]),
        expected
    );

    let deleted = dir
        .run(&["export-config", "delete", "internal"])
        .expect_code(0);
    assert_eq!(deleted.stdout, "deleted export config internal\n");
    let again = dir
        .run(&["export-config", "delete", "internal"])
        .expect_code(1);
    assert!(again.stderr.contains("not found"), "{}", again.stderr);
    assert_eq!(dir.json(&list), json!([expected]));
}

// ---------------------------------------------------------------------------
// serve

fn log_lines(stderr: &str) -> Vec<Value> {
    stderr
        .lines()
        .filter(|line| !line.trim().is_empty())
        .map(|line| {
            let value: Value = serde_json::from_str(line)
                .unwrap_or_else(|e| panic!("stderr line is not JSON ({e}): {line}"));
            assert!(value.is_object(), "log line is not an object: {line}");
            value
        })
        .collect()
}

fn has_message(lines: &[Value], text: &str) -> bool {
    lines
        .iter()
        .any(|l| l["message"].as_str().is_some_and(|m| m.contains(text)))
}

#[test]
fn serve_operations_admin_api_and_sigterm() {
    let dir = DataDir::new("serve");
    let mut server = Server::start(&dir, &[("ICHNAEA_ADMIN_TOKEN", ADMIN_TOKEN)]);
    let bearer = format!("Bearer {ADMIN_TOKEN}");
    let auth = [("Authorization", bearer.as_str())];

    assert!(
        dir.path.join("ichnaea.db").is_file(),
        "{} missing",
        dir.path.join("ichnaea.db").display()
    );

    let lb = server.get("/__lbheartbeat__");
    assert_eq!(lb.status, 200);
    assert_eq!(lb.json(), json!({"status": "OK"}));

    let heartbeat = server.get("/__heartbeat__");
    assert_eq!(heartbeat.status, 200, "{}", heartbeat.body);
    let beat = heartbeat.json();
    assert_eq!(beat["database"]["up"], json!(true), "{beat}");
    assert_eq!(beat["queue"]["up"], json!(true), "{beat}");
    assert_eq!(beat["geoip"]["configured"], json!(false), "{beat}");

    let version = server.get("/__version__");
    assert_eq!(version.status, 200);
    let version = version.json();
    assert!(version["version"].is_string(), "{version}");

    let nope = server.get("/nope");
    assert_eq!(nope.status, 404);

    let robots = server.get("/robots.txt");
    assert_eq!(robots.status, 200);
    assert!(
        robots
            .header("content-type")
            .is_some_and(|t| t.starts_with("text/plain")),
        "{:?}",
        robots.headers
    );
    assert!(robots.body.contains("Disallow: /v1/"), "{}", robots.body);

    let metrics = server.metrics();
    assert_eq!(metrics.status, 200);
    assert!(
        metrics
            .body
            .contains(r#"request{path="__heartbeat__",method="get",status="200"} 1"#),
        "{}",
        metrics.body
    );
    assert!(
        !metrics.body.contains(r#"path="unknown""#),
        "404s are not counted: {}",
        metrics.body
    );
    assert!(
        !metrics.body.contains(r#"status="404""#),
        "{}",
        metrics.body
    );
    assert_eq!(server.get("/metrics").status, 404, "not on the public port");

    // Admin API: token required.
    let anonymous = server.get("/admin/api-keys");
    assert_eq!(anonymous.status, 401, "{}", anonymous.body);
    assert_eq!(anonymous.header("www-authenticate"), Some("Bearer"));
    let wrong = server.http(
        "GET",
        "/admin/api-keys",
        &[("Authorization", "Bearer not-the-token")],
        None,
    );
    assert_eq!(wrong.status, 401);
    let empty = server.http("GET", "/admin/api-keys", &auth, None);
    assert_eq!(empty.status, 200, "{}", empty.body);
    assert_eq!(empty.json(), json!([]));

    let created = server.http(
        "POST",
        "/admin/api-keys",
        &auth,
        Some(r#"{"valid_key":"web1","maxreq":3}"#),
    );
    assert_eq!(created.status, 201, "{}", created.body);
    assert_eq!(created.json()["valid_key"], json!("web1"));
    assert_eq!(created.json()["maxreq"], json!(3));

    // The CLI sees the row while the server is running on the same database.
    let shown = dir.json(&["apikey", "show", "web1", "--json"]);
    assert_eq!(shown["maxreq"], json!(3), "{shown}");
    assert_eq!(shown["store_sample_locate"], json!(100), "{shown}");

    let patched = server.http(
        "PATCH",
        "/admin/api-keys/web1",
        &auth,
        Some(r#"{"store_sample_locate":200}"#),
    );
    assert_eq!(patched.status, 400, "{}", patched.body);
    assert_eq!(
        patched.json()["error"]["field"],
        json!("store_sample_locate")
    );
    let unchanged = server.http("GET", "/admin/api-keys/web1", &auth, None);
    assert_eq!(unchanged.status, 200);
    assert_eq!(unchanged.json(), shown);

    let deleted = server.http("DELETE", "/admin/api-keys/web1", &auth, None);
    assert_eq!(deleted.status, 204, "{}", deleted.body);
    assert_eq!(deleted.body, "");
    let gone = server.http("GET", "/admin/api-keys/web1", &auth, None);
    assert_eq!(gone.status, 404);
    assert_eq!(
        server.http("GET", "/admin/api-keys", &auth, None).json(),
        json!([])
    );

    let (status, stderr) = server.terminate();
    assert_eq!(status.code(), Some(0), "exit status {status}:\n{stderr}");
    let lines = log_lines(&stderr);
    assert!(!lines.is_empty(), "no log lines on stderr");
    assert!(
        has_message(&lines, "SIGTERM received"),
        "no SIGTERM log line:\n{stderr}"
    );
    assert!(
        has_message(&lines, "shut down"),
        "no shutdown line:\n{stderr}"
    );
    let config = lines
        .iter()
        .find(|l| l["message"] == json!("effective configuration"))
        .unwrap_or_else(|| panic!("no configuration line:\n{stderr}"));
    assert!(
        config["config"]
            .as_str()
            .is_some_and(|c| c.contains(r#""admin_token":"<redacted>""#)),
        "{config}"
    );
    assert!(
        !stderr.contains(ADMIN_TOKEN),
        "the admin token leaked into the log:\n{stderr}"
    );
}

#[test]
fn serve_without_admin_token_has_no_admin_api() {
    let dir = DataDir::new("serve-noadmin");
    let mut server = Server::start(&dir, &[]);
    let auth = [("Authorization", "Bearer anything")];
    assert_eq!(server.get("/admin/api-keys").status, 404);
    assert_eq!(
        server.http("GET", "/admin/api-keys", &auth, None).status,
        404
    );
    assert_eq!(
        server
            .http(
                "POST",
                "/admin/api-keys",
                &auth,
                Some(r#"{"valid_key":"web1"}"#)
            )
            .status,
        404
    );
    assert_eq!(dir.json(&["apikey", "list", "--json"]), json!([]));

    let (status, stderr) = server.terminate();
    assert_eq!(status.code(), Some(0), "exit status {status}:\n{stderr}");
    assert!(
        has_message(&log_lines(&stderr), "SIGTERM received"),
        "{stderr}"
    );
}

#[test]
fn serve_fails_cleanly_when_the_port_is_taken() {
    let dir = DataDir::new("serve-busy");
    let taken = TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral port");
    let address = taken.local_addr().expect("local address").to_string();
    let run = dir.run_with(&["serve"], &[("ICHNAEA_LISTEN", &address)]);
    let run = run.expect_code(1);
    assert!(
        run.stderr.contains(&format!("listening on {address}")),
        "{}",
        run.stderr
    );
    drop(taken);
}

// A client that never finishes its request must not keep a SIGTERMed server
// alive past ICHNAEA_SHUTDOWN_TIMEOUT.
#[test]
fn sigterm_honours_the_shutdown_timeout() {
    let dir = DataDir::new("serve-stall");
    let mut server = Server::start(&dir, &[("ICHNAEA_SHUTDOWN_TIMEOUT", "1")]);
    let mut stalled = TcpStream::connect(("127.0.0.1", server.port)).expect("connect");
    stalled
        .write_all(b"GET /__heartbeat__ HTTP/1.1\r\nHost: x\r\n")
        .expect("send a partial request");
    let started = Instant::now();
    let (status, stderr) = server.terminate();
    assert_eq!(status.code(), Some(0), "exit status {status}:\n{stderr}");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "took {:?} to exit:\n{stderr}",
        started.elapsed()
    );
    drop(stalled);
}

// ---------------------------------------------------------------------------
// migrate

#[test]
fn migrate_is_idempotent() {
    let dir = DataDir::new("migrate");
    let first = dir.run(&["migrate"]).expect_code(0);
    assert_eq!(first.stdout, "database schema at version 3\n");
    assert!(dir.path.join("ichnaea.db").is_file());
    let second = dir.run(&["migrate"]).expect_code(0);
    assert_eq!(second.stdout, "database schema at version 3\n");
}

// ---------------------------------------------------------------------------
// submit: gzip bombs

/// `(VmRSS, VmHWM)` of a process in kB.
fn memory_kb(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("read /proc status");
    let field = |name: &str| -> u64 {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or_else(|| panic!("{name} missing in /proc/{pid}/status"))
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// About 1 MB of gzip that inflates to 1 GiB: 1,024 gzip members, each 1 MiB of
/// zeros (multi-member streams are valid gzip and are decoded whole).
fn gzip_bomb() -> Vec<u8> {
    let mut member = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    member.write_all(&vec![0u8; 1 << 20]).expect("compress");
    let member = member.finish().expect("finish gzip");
    member.repeat(1024)
}

fn post_bytes(port: u16, path: &str, headers: &[(&str, &str)], body: &[u8]) -> HttpResponse {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .expect("timeout");
    let mut head = format!(
        "POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes()).expect("send head");
    // The server may answer and close before reading everything.
    let _ = stream.write_all(body);
    let mut raw = Vec::new();
    let _ = stream.read_to_end(&mut raw);
    parse_response(&raw)
        .unwrap_or_else(|| panic!("malformed response: {}", String::from_utf8_lossy(&raw)))
}

#[test]
fn gzip_bomb_is_refused_without_inflating_it() {
    let dir = DataDir::new("gzip-bomb");
    // The web role alone: the worker and scheduler would open database
    // connections (each with its page cache) while memory is measured.
    let mut server = Server::start_roles(&dir, &[], "web");
    let bomb = gzip_bomb();
    assert!(bomb.len() < 1_100_000, "bomb is {} bytes", bomb.len());
    // Warm up the request path, including a large legitimate gzip upload (~5 MB
    // of JSON), so one-time allocations of buffers and threads are not counted.
    let warm = post_bytes(server.port, "/v2/geosubmit", &[], br#"{"items": []}"#);
    assert_eq!(warm.status, 200);
    let big = json!({"items": vec![json!({"note": "x".repeat(4_000)}); 1_200]}).to_string();
    let warm = post_bytes(
        server.port,
        "/v2/geosubmit",
        &[("Content-Encoding", "gzip")],
        &gzip(big.as_bytes()),
    );
    assert_eq!(warm.status, 200, "{}", warm.body);
    let pid = server.child.id();
    let (rss_before, _) = memory_kb(pid);
    let started = Instant::now();
    let response = post_bytes(
        server.port,
        "/v2/geosubmit",
        &[("Content-Encoding", "gzip")],
        &bomb,
    );
    let elapsed = started.elapsed();
    let (rss_after, peak) = memory_kb(pid);
    assert_eq!(response.status, 413, "{}", response.body);
    assert_eq!(response.json()["error"]["code"], json!(413));
    assert_eq!(response.header("access-control-allow-origin"), Some("*"));
    let growth_kb = peak.saturating_sub(rss_before);
    let _ = writeln!(
        std::io::stderr(),
        "gzip bomb ({} bytes → 1 GiB): refused in {elapsed:?}; RSS {rss_before} kB → {rss_after} kB, peak {peak} kB (growth ≤ {growth_kb} kB)",
        bomb.len()
    );
    assert!(
        growth_kb < 20 * 1024,
        "resident memory grew by {growth_kb} kB"
    );
    // The server still serves.
    assert_eq!(server.get("/__lbheartbeat__").status, 200);
    let (status, _) = server.terminate();
    assert_eq!(status.code(), Some(0));
}

// ---------------------------------------------------------------------------
// pipeline: submit over HTTP, drain, inspect the stored stations

/// Backend environment of a binary run, with its database for inspection.
struct Backend {
    env: Vec<(String, String)>,
    database_url: String,
    pg_schema: Option<String>,
    redis: Option<(String, String)>,
}

impl Backend {
    fn embedded(dir: &DataDir) -> Backend {
        Backend {
            env: vec![],
            database_url: format!("sqlite://{}/ichnaea.db", dir.path.display()),
            pg_schema: None,
            redis: None,
        }
    }

    /// PostgreSQL (own schema) + Redis (own prefix), or `None` with a notice.
    fn cluster(test: &str) -> Option<Backend> {
        let (Ok(pg), Ok(redis)) = (
            std::env::var("ICHNAEA_TEST_POSTGRES_URL"),
            std::env::var("ICHNAEA_TEST_REDIS_URL"),
        ) else {
            let _ = writeln!(
                std::io::stderr(),
                "NOTICE: ICHNAEA_TEST_POSTGRES_URL/ICHNAEA_TEST_REDIS_URL unset: {test} on PostgreSQL + Redis skipped"
            );
            return None;
        };
        let _ = writeln!(
            std::io::stderr(),
            "NOTICE: {test} runs against PostgreSQL and Redis"
        );
        let schema = format!("e2e_{}_{}", test.replace('-', "_"), std::process::id());
        let sep = if pg.contains('?') { '&' } else { '?' };
        let database_url = format!("{pg}{sep}options=-c%20search_path%3D{schema}");
        let prefix = format!("{schema}:");
        rt().block_on(async {
            let options = ichnaea_store::StoreOptions {
                pg_schema: Some(schema.clone()),
                ..Default::default()
            };
            let store = ichnaea_store::Store::connect(&pg, &options)
                .await
                .expect("connect to PostgreSQL");
            store
                .drop_pg_schema(&schema)
                .await
                .expect("drop old schema");
            store.close().await;
            let store = ichnaea_store::Store::connect(&pg, &options)
                .await
                .expect("create schema");
            store.close().await;
        });
        Some(Backend {
            env: vec![
                ("ICHNAEA_DATABASE_URL".into(), database_url.clone()),
                ("ICHNAEA_REDIS_URL".into(), redis.clone()),
                ("ICHNAEA_REDIS_PREFIX".into(), prefix.clone()),
            ],
            database_url,
            pg_schema: Some(schema),
            redis: Some((redis, prefix)),
        })
    }

    fn env(&self) -> Vec<(&str, &str)> {
        self.env
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect()
    }

    fn store<T>(&self, f: impl AsyncFnOnce(&ichnaea_store::Store) -> T) -> T {
        rt().block_on(async {
            let store = ichnaea_store::Store::connect(&self.database_url, &Default::default())
                .await
                .expect("open the database");
            let out = f(&store).await;
            store.close().await;
            out
        })
    }
}

impl Drop for Backend {
    fn drop(&mut self) {
        let (schema, redis) = (self.pg_schema.take(), self.redis.take());
        let pg = std::env::var("ICHNAEA_TEST_POSTGRES_URL").ok();
        rt().block_on(async move {
            if let (Some(schema), Some(pg)) = (schema, pg)
                && let Ok(store) = ichnaea_store::Store::connect(&pg, &Default::default()).await
            {
                let _ = store.drop_pg_schema(&schema).await;
                store.close().await;
            }
            if let Some((url, prefix)) = redis {
                let _ = std::process::Command::new("sh")
                    .arg("-c")
                    .arg(format!("redis-cli -u '{url}' --scan --pattern '{prefix}*' | xargs -r redis-cli -u '{url}' DEL >/dev/null"))
                    .status();
            }
        });
    }
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime")
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(data).expect("gzip");
    e.finish().expect("gzip")
}

/// Reports at `sites` places in Berlin, each with `per_site` access points of
/// its own; every report sees `per_report` of them from within a few metres, so
/// every observation is consistent and counts in `samples`.
fn berlin_reports(
    count: usize,
    sites: usize,
    per_site: usize,
    per_report: usize,
    seed: u64,
) -> Vec<Value> {
    let mut state = seed;
    let mut next = move || {
        state = state
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        state >> 33
    };
    (0..count)
        .map(|_| {
            let site = (next() % sites as u64) as usize;
            let lat = 52.45 + (site / 100) as f64 * 0.002 + (next() % 100) as f64 * 1e-7;
            let lon = 13.30 + (site % 100) as f64 * 0.003 + (next() % 100) as f64 * 1e-7;
            let start = (next() % per_site as u64) as usize;
            let wifi: Vec<Value> = (0..per_report)
                .map(|i| {
                    let ap = site * per_site + (start + i) % per_site;
                    json!({"macAddress": format!("02{:010x}", ap), "signalStrength": -60 - (next() % 30) as i64})
                })
                .collect();
            json!({"position": {"latitude": lat, "longitude": lon, "accuracy": 10.0}, "wifiAccessPoints": wifi})
        })
        .collect()
}

fn submit_all(server: &Server, reports: &[Value], per_request: usize) -> usize {
    let mut accepted = 0;
    for chunk in reports.chunks(per_request) {
        let body = gzip(json!({"items": chunk}).to_string().as_bytes());
        let r = post_bytes(
            server.port,
            "/v2/geosubmit",
            &[("Content-Encoding", "gzip")],
            &body,
        );
        assert_eq!(r.status, 200, "{}", r.body);
        accepted += chunk.len();
    }
    accepted
}

fn pipeline_end_to_end(backend: Backend, dir: DataDir) {
    let env = backend.env();
    let mut web = Server::start(
        &dir,
        &env.iter()
            .copied()
            .chain([("ICHNAEA_LOG_LEVEL", "warn")])
            .collect::<Vec<_>>(),
    );
    // A network seen in two places 20 km apart becomes blocklisted.
    let first = json!({"items": [{"position": {"latitude": 52.52, "longitude": 13.40}, "wifiAccessPoints": [{"macAddress": "0a0000000001"}, {"macAddress": "0a0000000002"}]}]});
    assert_eq!(
        post_bytes(web.port, "/v2/geosubmit", &[], first.to_string().as_bytes()).status,
        200
    );
    dir.run_with(&["drain"], &env).expect_code(0);
    let moved = json!({"items": [{"position": {"latitude": 52.70, "longitude": 13.40}, "wifiAccessPoints": [{"macAddress": "0a0000000001"}]}]});
    assert_eq!(
        post_bytes(web.port, "/v2/geosubmit", &[], moved.to_string().as_bytes()).status,
        200
    );
    let reports = berlin_reports(200, 20, 10, 5, 7);
    let accepted = submit_all(&web, &reports, 50);
    let run = dir.run_with(&["drain"], &env).expect_code(0);
    assert!(run.stdout.starts_with("drained "), "{}", run.stdout);
    let (stations, samples, blocked, kept) = backend.store(async |store| {
        let (rows, samples) = store.station_totals("wifi").await.unwrap();
        let macs = [
            ichnaea_core::Mac::from_hex("0a0000000001").unwrap(),
            ichnaea_core::Mac::from_hex("0a0000000002").unwrap(),
        ];
        let found = store.wifi_stations(&macs).await.unwrap();
        let get = |m| {
            found
                .iter()
                .find(|s| s.mac == m)
                .map(|s| s.fields.clone())
                .unwrap()
        };
        (rows, samples, get(macs[0]), get(macs[1]))
    });
    assert_eq!(
        (blocked.lat, blocked.samples, blocked.block_count),
        (None, None, Some(1))
    );
    assert_eq!(kept.samples, Some(1));
    assert!((kept.lat.unwrap() - 52.52).abs() < 1e-9);
    assert_eq!(kept.region.as_deref(), Some("DE"));
    assert_eq!(kept.radius, Some(0));
    // 200 reports × 5 access points, plus the second network's one sample.
    assert_eq!(samples, (accepted * 5 + 1) as i64);
    let distinct: std::collections::HashSet<&str> = reports
        .iter()
        .flat_map(|r| {
            r["wifiAccessPoints"]
                .as_array()
                .unwrap()
                .iter()
                .map(|w| w["macAddress"].as_str().unwrap())
        })
        .collect();
    assert_eq!(stations, distinct.len() as i64 + 2);
    let (status, _) = web.terminate();
    assert_eq!(status.code(), Some(0));
}

#[test]
fn pipeline_end_to_end_embedded() {
    let dir = DataDir::new("pipeline");
    pipeline_end_to_end(Backend::embedded(&dir), dir);
}

#[test]
fn pipeline_end_to_end_cluster() {
    if let Some(backend) = Backend::cluster("pipeline-e2e") {
        pipeline_end_to_end(backend, DataDir::new("pipeline-cluster"));
    }
}

// ---------------------------------------------------------------------------
// crash test: SIGKILL the worker at random moments; nothing lost, nothing twice

fn crash_test(backend: Backend, dir: DataDir) {
    const REPORTS: usize = 10_000;
    const PER_REPORT: usize = 10;
    let mut env = backend.env();
    env.push(("ICHNAEA_QUEUE_VISIBILITY", "2"));
    env.push(("ICHNAEA_LOG_LEVEL", "warn"));
    let mut web = Server::start(&dir, &env);
    let reports = berlin_reports(REPORTS, 500, 40, PER_REPORT, 42);
    let accepted = submit_all(&web, &reports, 500);
    assert_eq!(accepted, REPORTS);
    let (status, _) = web.terminate();
    assert_eq!(status.code(), Some(0));

    let mut seed: u64 = 0x9e37_79b9_7f4a_7c15 ^ u64::from(std::process::id());
    let mut kills = 0;
    for _ in 0..8 {
        seed = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
        let wait = Duration::from_millis(200 + (seed >> 33) % 1500);
        let mut worker = dir
            .command()
            .args(["serve", "--roles", "worker,scheduler"])
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start a worker");
        std::thread::sleep(wait);
        if worker.try_wait().expect("poll worker").is_none() {
            worker.kill().expect("SIGKILL the worker");
            kills += 1;
        }
        let _ = worker.wait();
    }
    let run = dir.run_with(&["drain"], &env).expect_code(0);
    let (rows, samples) = backend.store(async |store| store.station_totals("wifi").await.unwrap());
    let _ = writeln!(
        std::io::stderr(),
        "crash test: {kills} SIGKILLs; {} observations accepted; {rows} stations, sum(samples) = {samples}; final drain: {}",
        REPORTS * PER_REPORT,
        run.stdout.trim()
    );
    assert_eq!(
        samples,
        (REPORTS * PER_REPORT) as i64,
        "every accepted observation applied exactly once"
    );
    assert!(rows > 0 && rows <= 500 * 40);
}

#[test]
fn crash_test_embedded() {
    let dir = DataDir::new("crash");
    crash_test(Backend::embedded(&dir), dir);
}

#[test]
fn crash_test_cluster() {
    if let Some(backend) = Backend::cluster("crash-test") {
        crash_test(backend, DataDir::new("crash-cluster"));
    }
}

// ---------------------------------------------------------------------------
// exports: a geosubmit target receives gzip JSON; a file:// s3 target writes objects

/// A one-thread HTTP server that records every request (head, body) and answers 200.
/// Requests seen by [`recording_server`]: (head, body).
type Recorded = std::sync::Arc<std::sync::Mutex<Vec<(String, Vec<u8>)>>>;

fn recording_server() -> (u16, Recorded) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let log = seen.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut raw = Vec::new();
            let mut buf = [0u8; 8192];
            let head_end = loop {
                let Ok(n) = stream.read(&mut buf) else {
                    break None;
                };
                if n == 0 {
                    break None;
                }
                raw.extend_from_slice(&buf[..n]);
                if let Some(i) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
                    break Some(i + 4);
                }
            };
            let Some(head_end) = head_end else { continue };
            let head = String::from_utf8_lossy(&raw[..head_end]).to_string();
            let length: usize = head
                .lines()
                .find_map(|l| {
                    l.to_ascii_lowercase()
                        .strip_prefix("content-length:")
                        .map(|v| v.trim().to_string())
                })
                .and_then(|v| v.parse().ok())
                .unwrap_or(0);
            while raw.len() < head_end + length {
                let Ok(n) = stream.read(&mut buf) else { break };
                if n == 0 {
                    break;
                }
                raw.extend_from_slice(&buf[..n]);
            }
            let body = raw[head_end..].to_vec();
            log.lock()
                .unwrap_or_else(|e| e.into_inner())
                .push((head, body));
            let _ = stream
                .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
        }
    });
    (port, seen)
}

fn gunzip(data: &[u8]) -> Value {
    let mut text = String::new();
    flate2::read::GzDecoder::new(data)
        .read_to_string(&mut text)
        .expect("gunzip");
    serde_json::from_str(&text).expect("JSON")
}

#[test]
fn exports_reach_a_geosubmit_server_and_object_files() {
    let dir = DataDir::new("exports");
    let (port, seen) = recording_server();
    let target = format!("http://127.0.0.1:{port}/v2/geosubmit?key=partner");
    dir.run(&[
        "export-config",
        "create",
        "up",
        "--schema",
        "geosubmit",
        "--url",
        &target,
    ])
    .expect_code(0);
    let objects = dir.path.join("objects");
    let template = format!(
        "file://{}/backups/{{source}}/{{api_key}}/{{year}}/{{month}}/{{day}}",
        objects.display()
    );
    dir.run(&[
        "export-config",
        "create",
        "bk",
        "--schema",
        "s3",
        "--url",
        &template,
        "--batch",
        "5",
    ])
    .expect_code(0);
    let mut web = Server::start(&dir, &[("ICHNAEA_LOG_LEVEL", "warn")]);
    let reports = berlin_reports(3, 3, 4, 2, 3);
    submit_all(&web, &reports, 10);
    let (status, _) = web.terminate();
    assert_eq!(status.code(), Some(0));
    dir.run(&["drain"]).expect_code(0);

    let requests = seen.lock().unwrap_or_else(|e| e.into_inner()).clone();
    assert_eq!(requests.len(), 1, "one batch");
    let (head, body) = &requests[0];
    assert!(
        head.starts_with("POST /v2/geosubmit?key=partner HTTP/1.1"),
        "{head}"
    );
    let lower = head.to_ascii_lowercase();
    assert!(
        lower.contains("content-encoding: gzip")
            && lower.contains("content-type: application/json")
            && lower.contains("user-agent: ichnaea"),
        "{head}"
    );
    let sent = gunzip(body);
    assert_eq!(sent["items"].as_array().unwrap().len(), 3);
    assert_eq!(sent["items"][0]["position"], reports[0]["position"]);
    assert_eq!(
        sent["items"][0]["wifiAccessPoints"],
        reports[0]["wifiAccessPoints"]
    );

    let today = chrono::Utc::now().date_naive();
    use chrono::Datelike;
    let folder = objects.join(format!(
        "backups/gnss/no_key/{}/{}/{}",
        today.year(),
        today.month(),
        today.day()
    ));
    let files: Vec<PathBuf> = std::fs::read_dir(&folder)
        .unwrap_or_else(|e| panic!("{}: {e}", folder.display()))
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(files.len(), 1, "{files:?}");
    let name = files[0].file_name().unwrap().to_string_lossy().to_string();
    let stem = name
        .strip_suffix(".json.gz")
        .expect("named <32 hex>.json.gz");
    assert!(
        stem.len() == 32
            && stem
                .bytes()
                .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()),
        "{name}"
    );
    let stored = gunzip(&std::fs::read(&files[0]).unwrap());
    assert_eq!(stored["items"].as_array().unwrap().len(), 3);
}

#[path = "cli/browser.rs"]
mod browser;
#[path = "cli/datamap.rs"]
mod datamap;
#[path = "cli/site.rs"]
mod site;
