//! End-to-end tests of the `ichnaea` binary: every test runs the real executable
//! in its own temporary data directory, configured only through `ICHNAEA_*`
//! environment variables, and talks HTTP to `serve` over a plain TCP socket.

// Test code: a failed unwrap is a failed test with its message, and test
// helpers are not public API.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::io::Write;
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use ichnaea_testkit::binary::{Backend, DataDir, Server, post_bytes};
use ichnaea_testkit::{FakeHttp, gunzip_json, gzip, is_object_name};
use serde_json::{Value, json};

const ADMIN_TOKEN: &str = "e2e-admin-t0ken-5b1d9c";

/// A data directory of its own for runs of this crate's binary.
fn data_dir(test: &str) -> DataDir {
    DataDir::new(env!("CARGO_BIN_EXE_ichnaea"), test)
}

// ---------------------------------------------------------------------------
// apikey

#[test]
fn apikey_create_show_update_list_delete() {
    let dir = data_dir("apikey");

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
    let dir = data_dir("apikey-invalid");
    let list = ["apikey", "list", "--json"];
    dir.run(&["apikey", "create", "keep", "--maxreq", "7"])
        .expect_code(0);

    for (args, needle) in [
        (&["x_y"][..], "valid_key"),
        (&["abc"], "valid_key"),
        (
            &["test", "--store-sample-submit", "101"],
            "store_sample_submit",
        ),
        (&["test", "--store-sample-locate=-1"], "store_sample_locate"),
        // Without `=`, clap takes `-1` for a flag: still status 2, nothing written.
        (&["test", "--store-sample-locate", "-1"], "-1"),
        (&["test", "--fallback-url", "ftp://x"], "fallback_url"),
        (
            &["test", "--fallback-schema", "bogus/v1"],
            "fallback_schema",
        ),
        (&["test", "--maxreq", "abc"], "--maxreq"),
        // Booleans are true or false (or null), as in the admin API's JSON.
        (&["test", "--allow-locate", "yes"], "--allow-locate"),
        // A taken key is refused input like any other (status 2).
        (&["keep"], "already exists"),
        (&["KEEP"], "already exists"),
    ] {
        let create = [&["apikey", "create"][..], args].concat();
        dir.assert_refused(&list, &create, needle);
    }
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
    let dir = data_dir("export");
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

    for (args, needle) in [
        (&["create", "x", "--schema", "ftp"][..], "--schema"),
        (&["create", "x", "--schema", "geosubmit"], "url"),
        // A second internal target would apply every report twice.
        (&["create", "x", "--schema", "internal"], "schema"),
        (&["update", "bk", "--schema", "internal"], "schema"),
        (
            &["create", "x", "--schema", "dummy", "--skip-sources", "gps"],
            "--skip-sources",
        ),
        (&["update", "bk", "--url", "http://not-s3"], "url"),
        (
            &["create", "x", "--schema", "dummy", "--skip-keys", "a b"],
            "skip_keys",
        ),
        (&["create", "bk", "--schema", "dummy"], "already exists"),
    ] {
        let command = [&["export-config"][..], args].concat();
        dir.assert_refused(&list, &command, needle);
    }

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
    let dir = data_dir("serve");
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
            .contains(r#"ichnaea_request_total{path="__heartbeat__",method="get",status="200"} 1"#),
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
    let unknown_key = server.http(
        "POST",
        "/v1/country?key=not-a-stored-key",
        &[("X-Forwarded-For", "198.51.100.23")],
        Some("{}"),
    );
    assert_eq!(unknown_key.status, 400);

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
    // The configuration as fields of the line, not a JSON string inside JSON.
    assert_eq!(
        config["config"]["admin_token"],
        json!("<redacted>"),
        "{config}"
    );
    assert_eq!(config["config"]["log_format"], json!("json"), "{config}");
    assert!(config["config"]["listen"].is_string(), "{config}");
    assert!(
        !stderr.contains(ADMIN_TOKEN),
        "the admin token leaked into the log:\n{stderr}"
    );
    // The access log: a line per request, with the route template and the
    // key's label, never the IP, the key itself or the body.
    let access: Vec<&Value> = lines
        .iter()
        .filter(|l| l["target"] == json!("ichnaea::access"))
        .collect();
    assert!(
        access
            .iter()
            .any(|l| l["route"] == json!("/admin/api-keys/{key}")
                && l["method"] == json!("DELETE")
                && l["status"] == json!(204)),
        "{access:?}"
    );
    let country = access
        .iter()
        .find(|l| l["route"] == json!("/v1/country"))
        .unwrap_or_else(|| panic!("no access line for /v1/country: {access:?}"));
    assert_eq!(country["status"], json!(400));
    assert_eq!(
        country["key"],
        json!(ichnaea_core::apikey::metric_label("not-a-stored-key"))
    );
    assert!(country["duration_ms"].as_f64().is_some(), "{country}");
    assert!(!stderr.contains("not-a-stored-key"), "a raw key in the log");
    assert!(!stderr.contains("198.51.100.23"), "a client IP in the log");
    assert!(
        !stderr.contains("store_sample_locate\":200"),
        "a body in the log"
    );
}

/// At debug level an idle server logs little: sqlx's statement lines (the
/// worker polls the queues many times a second) stay off unless the filter
/// names sqlx.
#[test]
fn debug_logs_of_an_idle_server_leave_out_sqlx_statements() {
    let sqlx_lines = |level: &str| {
        let dir = data_dir("debug-logs");
        let mut server = Server::start(&dir, &[("ICHNAEA_LOG_LEVEL", level)]);
        std::thread::sleep(Duration::from_secs(2));
        let (status, stderr) = server.terminate();
        assert_eq!(status.code(), Some(0), "{stderr}");
        log_lines(&stderr)
            .iter()
            .filter(|l| l["target"].as_str().is_some_and(|t| t.starts_with("sqlx")))
            .count()
    };
    assert_eq!(sqlx_lines("debug"), 0);
    assert!(sqlx_lines("debug,sqlx=debug") > 0, "named, they are logged");
}

#[test]
fn serve_without_admin_token_has_no_admin_api() {
    let dir = data_dir("serve-noadmin");
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
    let dir = data_dir("serve-busy");
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
    let dir = data_dir("serve-stall");
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
// completions and manual pages

#[test]
fn completions_and_manual_pages_come_from_the_command_line() {
    let dir = data_dir("manual");
    for (shell, marker) in [
        ("bash", "_ichnaea()"),
        ("zsh", "#compdef ichnaea"),
        ("fish", "complete -c ichnaea"),
    ] {
        let run = dir.run(&["completions", shell]).expect_code(0);
        assert!(run.stdout.contains(marker), "{shell}: {}", run.stdout);
        assert!(run.stdout.contains("export-config"), "{shell}");
    }
    dir.run(&["completions", "tcsh"]).expect_code(2);

    let page = dir.run(&["man"]).expect_code(0);
    assert!(page.stdout.contains(".TH ichnaea 1"), "{}", page.stdout);
    assert!(page.stdout.contains("crowd"), "{}", page.stdout);
    let pages = dir.path.join("man");
    let pages_arg = pages.display().to_string();
    dir.run(&["man", "--dir", &pages_arg]).expect_code(0);
    for name in ["ichnaea.1", "ichnaea-serve.1", "ichnaea-apikey-create.1"] {
        let text = std::fs::read_to_string(pages.join(name)).expect(name);
        assert!(text.starts_with(".ie"), "{name}");
    }
}

// ---------------------------------------------------------------------------
// migrate

#[test]
fn file_errors_say_what_is_wrong_once() {
    let dir = data_dir("file-errors");
    let run = dir
        .run(&["--config", "/nonexistent/ichnaea.toml", "migrate"])
        .expect_code(1);
    assert_eq!(
        run.stderr.matches("No such file or directory").count(),
        1,
        "{}",
        run.stderr
    );
    let missing = dir.path.join("no-such-dir/wifi.csv.gz");
    let run = dir
        .run(&[
            "dump",
            "--datatype",
            "wifi",
            "--filename",
            &missing.display().to_string(),
        ])
        .expect_code(1);
    assert!(
        run.stderr.contains("its directory does not exist"),
        "{}",
        run.stderr
    );
    let taken = dir.path.join("taken.csv.gz");
    std::fs::write(&taken, b"keep me").unwrap();
    let run = dir
        .run(&[
            "dump",
            "--datatype",
            "wifi",
            "--filename",
            &taken.display().to_string(),
        ])
        .expect_code(1);
    assert!(
        run.stderr.contains("dump never overwrites a file"),
        "{}",
        run.stderr
    );
    assert_eq!(std::fs::read(&taken).unwrap(), b"keep me");
}

#[test]
fn migrate_is_idempotent() {
    let dir = data_dir("migrate");
    let first = dir.run(&["migrate"]).expect_code(0);
    assert_eq!(first.stdout, "database schema at version 5\n");
    assert!(dir.path.join("ichnaea.db").is_file());
    let second = dir.run(&["migrate"]).expect_code(0);
    assert_eq!(second.stdout, "database schema at version 5\n");
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

#[test]
fn gzip_bomb_is_refused_without_inflating_it() {
    let dir = data_dir("gzip-bomb");
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

// Each runs once per backend: SQLite + the embedded queue, and PostgreSQL + Redis
// when both are configured.
ichnaea_testkit::backend_tests!(
    sync embedded => on_embedded, cluster => on_cluster;
    pipeline_end_to_end,
    crash_test,
    admin_changes_reach_a_running_server,
);

/// A key created, changed or deleted by the CLI (another process) takes effect
/// in a running server within seconds, although the server had cached its
/// earlier state.
fn admin_changes_reach_a_running_server(backend: Backend, dir: DataDir) {
    let env = backend.env();
    let server = Server::start(&dir, &env);
    let path = "/v1/country?key=late";
    let status = |server: &Server| {
        server
            .http(
                "POST",
                path,
                &[("X-Forwarded-For", "203.0.113.9")],
                Some("{}"),
            )
            .status
    };
    // Unknown: 400 keyInvalid, now cached by the server.
    assert_eq!(status(&server), 400);
    let within = |server: &Server, want: u16, what: &str| {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let got = status(server);
            if got == want {
                return Instant::now();
            }
            assert!(Instant::now() < deadline, "{what}: still {got} after 5 s");
            std::thread::sleep(Duration::from_millis(100));
        }
    };
    dir.run_with(&["apikey", "create", "late"], &env)
        .expect_code(0);
    let created = Instant::now();
    // Known, no GeoIP database: 404 notFound instead of 400.
    let seen = within(&server, 404, "created key");
    assert!(
        seen - created < Duration::from_secs(3),
        "{:?}",
        seen - created
    );
    dir.run_with(
        &["apikey", "update", "late", "--allow-region", "false"],
        &env,
    )
    .expect_code(0);
    within(&server, 400, "region no longer allowed");
    dir.run_with(
        &["apikey", "update", "late", "--allow-region", "true"],
        &env,
    )
    .expect_code(0);
    within(&server, 404, "region allowed again");
    dir.run_with(&["apikey", "delete", "late"], &env)
        .expect_code(0);
    within(&server, 400, "deleted key");
}

/// Runs `body` on SQLite and the embedded queue in a data directory of its own.
fn on_embedded(body: fn(Backend, DataDir)) {
    let dir = data_dir("embedded");
    body(Backend::embedded(&dir), dir);
}

/// Runs `body` on PostgreSQL and Redis (own schema and prefix) when both are
/// configured.
fn on_cluster(body: fn(Backend, DataDir)) {
    if let Some(backend) = Backend::cluster() {
        body(backend, data_dir("cluster"));
    }
}

/// Opens the database of `backend` to inspect what the runs wrote.
fn with_store<T>(backend: &Backend, f: impl AsyncFnOnce(&ichnaea_store::Store) -> T) -> T {
    rt().block_on(async {
        let store = ichnaea_store::Store::connect(&backend.database_url, &Default::default())
            .await
            .expect("open the database");
        let out = f(&store).await;
        store.close().await;
        out
    })
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime")
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
    let (stations, samples, blocked, kept) = with_store(&backend, async |store| {
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

// ---------------------------------------------------------------------------
// crash test: SIGKILL the worker at random moments; nothing lost, nothing twice

fn crash_test(backend: Backend, dir: DataDir) {
    const REPORTS: usize = 10_000;
    const PER_REPORT: usize = 10;
    let mut env = backend.env();
    env.push(("ICHNAEA_QUEUE_VISIBILITY", "2"));
    env.push(("ICHNAEA_LOG_LEVEL", "warn"));
    // The scheduler folds stat_counter into stat every second, so kills also
    // land in and around its folds.
    env.push(("ICHNAEA_INTERVAL_UPDATE_STATCOUNTER", "1"));
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
    let totals = |stats: &[ichnaea_core::stats::StatRow]| {
        let get = |key| stats.iter().find(|r| r.key == key).map_or(0, |r| r.value);
        use ichnaea_core::stats::StatKey::{UniqueWifi, Wifi};
        (get(Wifi), get(UniqueWifi))
    };
    let (rows, samples, folded_before, stat) = with_store(&backend, async |store| {
        let folded_before = totals(&store.latest_stats().await.unwrap());
        // The scheduler's next run: fold what the last batches counted.
        store.fold_stat_counters().await.unwrap();
        let (rows, samples) = store.station_totals("wifi").await.unwrap();
        (
            rows,
            samples,
            folded_before,
            totals(&store.latest_stats().await.unwrap()),
        )
    });
    let _ = writeln!(
        std::io::stderr(),
        "crash test: {kills} SIGKILLs; {} observations accepted; {rows} stations, sum(samples) = {samples}; \
         stat wifi/unique_wifi = {}/{} (folded by the killed schedulers: {}/{}); final drain: {}",
        REPORTS * PER_REPORT,
        stat.0,
        stat.1,
        folded_before.0,
        folded_before.1,
        run.stdout.trim()
    );
    assert_eq!(
        samples,
        (REPORTS * PER_REPORT) as i64,
        "every accepted observation applied exactly once"
    );
    assert!(rows > 0 && rows <= 500 * 40);
    assert_eq!(
        stat,
        ((REPORTS * PER_REPORT) as i64, rows),
        "stat counts every accepted observation and every station exactly once"
    );
}

// ---------------------------------------------------------------------------
// exports: a geosubmit target receives gzip JSON; a file:// s3 target writes objects

#[test]
fn exports_reach_a_geosubmit_server_and_object_files() {
    let dir = data_dir("exports");
    let partner = FakeHttp::start_in_thread(&[]);
    let target = format!("{}/v2/geosubmit?key=partner", partner.url());
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

    let requests = partner.requests();
    assert_eq!(requests.len(), 1, "one batch");
    let r = &requests[0];
    assert_eq!(
        (r.method.as_str(), r.path.as_str(), r.query.as_deref()),
        ("POST", "/v2/geosubmit", Some("key=partner")),
        "{r:?}"
    );
    assert_eq!(format!("{:?}", r.version), "HTTP/1.1");
    assert_eq!(
        (
            r.header("content-encoding"),
            r.header("content-type"),
            r.header("user-agent")
        ),
        ("gzip", "application/json", "ichnaea"),
        "{r:?}"
    );
    let sent = r.gunzip_json();
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
    assert!(is_object_name(&name), "{name}");
    let stored = gunzip_json(&std::fs::read(&files[0]).unwrap());
    assert_eq!(stored["items"].as_array().unwrap().len(), 3);
}

#[path = "cli/browser.rs"]
mod browser;
#[path = "cli/chaos.rs"]
mod chaos;
#[path = "cli/datamap.rs"]
mod datamap;
#[path = "cli/deploy.rs"]
mod deploy;
#[path = "cli/faults.rs"]
mod faults;
#[path = "cli/hostile.rs"]
mod hostile;
#[path = "cli/readme.rs"]
mod readme;
#[path = "cli/redis.rs"]
mod redis;
#[path = "cli/sim.rs"]
mod sim;
#[path = "cli/site.rs"]
mod site;

// ---------------------------------------------------------------------------
// dump → import round trip

ichnaea_testkit::backend_tests!(
    sync embedded => on_embedded, cluster => on_cluster;
    dump_and_import_round_trip,
);

/// Reports at ten places in Berlin with Wi-Fi, Bluetooth, LTE and WCDMA cells,
/// plus one access point that moves 20 km (so block columns are filled too).
fn mixed_reports() -> Vec<Value> {
    let mut reports: Vec<Value> = (0..40)
        .map(|i| {
            let site = i % 10;
            let lat = 52.45 + site as f64 * 0.002 + (i / 10) as f64 * 1e-5;
            let lon = 13.30 + site as f64 * 0.003;
            json!({
                "position": {"latitude": lat, "longitude": lon, "accuracy": 10.0},
                "wifiAccessPoints": [
                    {"macAddress": format!("02aa000000{site:02x}"), "signalStrength": -60},
                    {"macAddress": format!("02aa000001{site:02x}"), "signalStrength": -70},
                ],
                "bluetoothBeacons": [
                    {"macAddress": format!("02bb000000{site:02x}"), "signalStrength": -80},
                ],
                "cellTowers": [
                    {"radioType": "lte", "mobileCountryCode": 262, "mobileNetworkCode": 1,
                     "locationAreaCode": 100 + site, "cellId": 5000 + site, "primaryScramblingCode": 17},
                    {"radioType": "wcdma", "mobileCountryCode": 262, "mobileNetworkCode": 2,
                     "locationAreaCode": 200, "cellId": 70000 + site},
                ],
            })
        })
        .collect();
    reports.push(json!({
        "position": {"latitude": 52.70, "longitude": 13.30, "accuracy": 10.0},
        "wifiAccessPoints": [{"macAddress": "02aa00000000"}, {"macAddress": "02aa0000ffff"}],
    }));
    reports
}

fn gunzip_text(path: &std::path::Path) -> String {
    use std::io::Read;
    let mut text = String::new();
    flate2::read::GzDecoder::new(std::fs::File::open(path).unwrap())
        .read_to_string(&mut text)
        .unwrap();
    text
}

/// What `ichnaea dump` writes, `ichnaea import` reads back: dumping every family,
/// importing the files into an empty database and dumping again gives the same
/// files; importing a dump over the data it came from changes nothing.
fn dump_and_import_round_trip(backend: Backend, dir: DataDir) {
    let env = backend.env();
    let mut web = Server::start_roles(&dir, &env, "web");
    let reports = mixed_reports();
    let (first, moved) = reports.split_at(reports.len() - 1);
    submit_all(&web, first, 20);
    web.terminate();
    dir.run_with(&["drain"], &env).expect_code(0);
    let web = Server::start_roles(&dir, &env, "web");
    submit_all(&web, moved, 1);
    drop(web);
    dir.run_with(&["drain"], &env).expect_code(0);

    // The target: an empty database of the same kind.
    let target_dir = data_dir("import-target");
    let target = if backend.database_url.starts_with("sqlite") {
        Backend::embedded(&target_dir)
    } else {
        Backend::cluster().expect("cluster backend")
    };
    let target_env = target.env();
    // Cluster runs keep nothing in the data directory, so it may not exist yet.
    std::fs::create_dir_all(&dir.path).unwrap();
    let path = |name: &str| dir.path.join(name);
    for kind in ["wifi", "blue", "cell"] {
        let first = path(&format!("{kind}-1.csv.gz"));
        let second = path(&format!("{kind}-2.csv.gz"));
        let written = dir
            .run_with(
                &[
                    "dump",
                    "--datatype",
                    kind,
                    "--filename",
                    first.to_str().unwrap(),
                ],
                &env,
            )
            .expect_code(0);
        assert!(written.stdout.starts_with("wrote "), "{}", written.stdout);
        let text = gunzip_text(&first);
        let rows = text.lines().count() - 1;
        assert!(rows >= 10, "{kind}: only {rows} rows\n{text}");
        let mut args = vec!["import", first.to_str().unwrap()];
        if kind != "cell" {
            args.extend(["--datatype", kind]);
        }
        let run = target_dir.run_with(&args, &target_env).expect_code(0);
        assert!(
            run.stdout.starts_with(&format!("read {rows} rows: "))
                && run.stdout.contains(&format!(" {rows} ")),
            "{kind}: {}",
            run.stdout
        );
        target_dir
            .run_with(
                &[
                    "dump",
                    "--datatype",
                    kind,
                    "--filename",
                    second.to_str().unwrap(),
                ],
                &target_env,
            )
            .expect_code(0);
        assert_eq!(text, gunzip_text(&second), "{kind}: the dumps differ");
        // The same file over the data it came from: nothing newer, nothing changed.
        let again = dir.run_with(&args, &env).expect_code(0);
        assert!(
            again
                .stdout
                .ends_with(&format!("0 updated, {rows} skipped\n")),
            "{kind}: {}",
            again.stdout
        );
    }
    let wifi = gunzip_text(&path("wifi-1.csv.gz"));
    let blocked = wifi
        .lines()
        .find(|l| l.starts_with("02aa00000000,"))
        .unwrap();
    assert!(
        blocked.ends_with(",1"),
        "block_count of the moved network: {blocked}"
    );
    assert!(gunzip_text(&path("cell-1.csv.gz")).contains("\nWCDMA,262,2,200,70000,"));

    // A Wi-Fi/Bluetooth dump needs to be told its family; a wrong one is refused.
    let wifi_file = path("wifi-1.csv.gz");
    let run = target_dir
        .run_with(&["import", wifi_file.to_str().unwrap()], &target_env)
        .expect_code(2);
    assert!(
        run.stderr.contains("--datatype wifi or --datatype blue"),
        "{}",
        run.stderr
    );
    let cell_file = path("cell-1.csv.gz");
    target_dir
        .run_with(
            &["import", cell_file.to_str().unwrap(), "--datatype", "wifi"],
            &target_env,
        )
        .expect_code(2);
}

// ---------------------------------------------------------------------------
// queues of deleted export targets

/// Deleting a target with a backlog needs `--purge`; `queues list` marks the
/// queues of deleted targets and `queues purge-orphaned` empties them.
#[test]
fn deleted_targets_leave_no_queue_behind() {
    let dir = data_dir("orphans");
    dir.run(&["export-config", "create", "bk", "--schema", "dummy"])
        .expect_code(0);
    let backend = Backend::embedded(&dir);
    with_store(&backend, async |store| {
        let queue = ichnaea_queue::Queue::embedded(store.sqlite_pool().unwrap().clone())
            .await
            .unwrap();
        let items = |n: usize| (0..n).map(|i| vec![i as u8]).collect::<Vec<_>>();
        queue.push("queue_export_bk", items(3)).await.unwrap();
        queue
            .push("queue_export_gone:gnss:no_key", items(2))
            .await
            .unwrap();
        queue.push("update_incoming", items(1)).await.unwrap();
    });
    let refused = dir.run(&["export-config", "delete", "bk"]).expect_code(2);
    assert!(
        refused.stderr.contains("3 queued items") && refused.stderr.contains("--purge"),
        "{}",
        refused.stderr
    );
    assert_eq!(
        dir.json(&["export-config", "list", "--json"])
            .as_array()
            .unwrap()
            .len(),
        2
    );
    let listed = dir.json(&["queues", "list", "--json"]);
    let rows: Vec<(String, u64, bool)> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["queue"].as_str().unwrap().to_string(),
                r["items"].as_u64().unwrap(),
                r["orphaned"].as_bool().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        rows,
        vec![
            ("queue_export_bk".to_string(), 3, false),
            ("queue_export_gone:gnss:no_key".to_string(), 2, true),
            ("update_incoming".to_string(), 1, false),
        ]
    );
    let deleted = dir
        .run(&["export-config", "delete", "bk", "--purge"])
        .expect_code(0);
    assert_eq!(
        deleted.stdout,
        "deleted export config bk\npurged 3 queued items\n"
    );
    let purged = dir.run(&["queues", "purge-orphaned"]).expect_code(0);
    assert_eq!(purged.stdout, "purged 2 items from 1 orphaned queues\n");
    let left = dir.json(&["queues", "list", "--json"]);
    assert_eq!(left.as_array().unwrap().len(), 1, "{left}");
    assert_eq!(left[0]["queue"], "update_incoming");
}

// ---------------------------------------------------------------------------
// learning without `drain`

ichnaea_testkit::backend_tests!(
    sync embedded => on_embedded, cluster => on_cluster;
    submissions_are_learnt_within_seconds,
);

/// One submitted report is answered from by geolocate within seconds, with all
/// roles running and no `drain`, although it is far from the internal target's
/// batch of 100.
fn submissions_are_learnt_within_seconds(backend: Backend, dir: DataDir) {
    let env = backend.env();
    dir.run_with(&["apikey", "create", "learn"], &env)
        .expect_code(0);
    let server = Server::start(&dir, &env);
    let wifi = json!([
        {"macAddress": "3a:00:00:00:00:01", "signalStrength": -60},
        {"macAddress": "3a:00:00:00:00:02", "signalStrength": -65},
        {"macAddress": "3a:00:00:00:00:03", "signalStrength": -70},
    ]);
    let report = json!({"items": [{"position": {"latitude": 48.8566, "longitude": 2.3522, "accuracy": 5.0},
                                   "wifiAccessPoints": wifi}]});
    let query = json!({"considerIp": false, "wifiAccessPoints": wifi}).to_string();
    let locate = || {
        post_bytes(
            server.port,
            "/v1/geolocate?key=learn",
            &[],
            query.as_bytes(),
        )
    };
    assert_eq!(locate().status, 404);
    let submitted = Instant::now();
    let r = post_bytes(
        server.port,
        "/v2/geosubmit",
        &[],
        report.to_string().as_bytes(),
    );
    assert_eq!(r.status, 200);
    loop {
        let r = locate();
        if r.status == 200 {
            let body = r.json();
            assert!(
                (body["location"]["lat"].as_f64().unwrap() - 48.8566).abs() < 0.001,
                "{body}"
            );
            break;
        }
        assert_eq!(r.status, 404, "{}", r.body);
        assert!(
            submitted.elapsed() < Duration::from_secs(10),
            "not learnt 10 s after the submission"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    eprintln!("learnt after {:?}", submitted.elapsed());
}
