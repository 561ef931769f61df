//! Faults injected on purpose into a running `ichnaea serve` (all
//! roles): the network to PostgreSQL or to Redis cut for 10 s (a TCP proxy the
//! test controls, between the service and the shared servers), a private
//! PostgreSQL or Redis (with its append-only file) stopped for 10 s and
//! started again, and the disk of
//! the embedded database full (a small tmpfs; skipped with a notice where it
//! cannot be mounted). In each case the test submits one report per request
//! before, during and after the fault and checks that
//!
//! - every answer is 200 or 503 (a 200 is a promise: the report is kept);
//! - the service recovers by itself: a 200 again within seconds after the end;
//! - in the end the station samples and the `stat` totals equal exactly the
//!   observations of the reports answered 200.
//!
//! The figures are printed (`-- --nocapture`) and recorded in docs/reliability.md.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use ichnaea_testkit::TcpProxy;
use ichnaea_testkit::binary::{Backend, DataDir, Server};
use serde_json::json;

use super::{berlin_reports, data_dir, with_store};

/// Wi-Fi networks per report.
const PER_REPORT: usize = 5;
/// How long each fault lasts.
const FAULT: Duration = Duration::from_secs(10);

/// What one fault run measured.
#[derive(Debug)]
struct Figures {
    fault: &'static str,
    accepted: usize,
    refused_during_fault: usize,
    accepted_during_fault: usize,
    recovery_secs: f64,
    slowest_during_fault_secs: f64,
    settle_secs: f64,
    samples: i64,
    stat_wifi: i64,
}

/// `host:port` of a URL's authority (default `port` when it has none), and
/// the URL with that authority replaced by `to`.
fn redirect(url: &str, default_port: u16, to: &str) -> (String, String) {
    let scheme_end = url.find("://").expect("a URL") + 3;
    let rest = &url[scheme_end..];
    let end = rest.find(['/', '?']).unwrap_or(rest.len());
    let authority = &rest[..end];
    let host_start = authority.rfind('@').map_or(0, |at| at + 1);
    let host = &authority[host_start..];
    let upstream = if host.contains(':') {
        host.to_string()
    } else {
        format!("{host}:{default_port}")
    };
    let rewritten = format!(
        "{}{}{to}{}",
        &url[..scheme_end],
        &authority[..host_start],
        &rest[end..]
    );
    (upstream, rewritten)
}

/// Posts one report; `None` when the server did not answer at all.
fn submit(port: u16, report: &serde_json::Value) -> Option<u16> {
    let body = json!({"items": [report]}).to_string();
    ichnaea_testkit::binary::try_http(port, "POST", "/v2/geosubmit", &[], Some(&body))
        .ok()
        .map(|r| r.status)
}

/// Submits before, during and after `fault` (called with `true` to start it and
/// `false` to end it), then waits until the pipeline has applied and counted
/// every accepted report.
fn run(
    name: &'static str,
    server: &mut Server,
    backend: &Backend,
    mut fault: impl FnMut(bool),
) -> Figures {
    let reports = berlin_reports(4_000, 200, 20, PER_REPORT, 7);
    let mut next = reports.iter();
    let mut accepted = 0;
    let mut statuses = Vec::new();
    let mut slowest = Duration::ZERO;
    let mut send = |during: bool| -> u16 {
        let report = next.next().expect("enough reports");
        let began = Instant::now();
        let status = submit(server.port, report).unwrap_or(0);
        if during {
            slowest = slowest.max(began.elapsed());
        }
        assert!(
            status == 200 || status == 503,
            "{name}: a submission answered {status} (0: no answer)"
        );
        if status == 200 {
            accepted += 1;
        }
        statuses.push((during, status));
        std::thread::sleep(Duration::from_millis(20));
        status
    };
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(2) {
        assert_eq!(send(false), 200, "{name}: before the fault");
    }
    fault(true);
    let start = Instant::now();
    while start.elapsed() < FAULT {
        send(true);
    }
    fault(false);
    let ended = Instant::now();
    let recovery = loop {
        if send(false) == 200 {
            break ended.elapsed();
        }
        assert!(
            ended.elapsed() < Duration::from_secs(60),
            "{name}: no 200 within 60 s after the fault"
        );
    };
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(2) {
        assert_eq!(send(false), 200, "{name}: after recovering");
    }
    let want = (accepted * PER_REPORT) as i64;
    let waited = Instant::now();
    let (samples, stat_wifi) = loop {
        let (samples, stat_wifi) = with_store(backend, async |store| {
            let (_, samples) = store.station_totals("wifi").await.unwrap();
            let stat = store.latest_stats().await.unwrap();
            let wifi = stat
                .iter()
                .find(|r| r.key == ichnaea_core::stats::StatKey::Wifi)
                .map_or(0, |r| r.value);
            (samples, wifi)
        });
        if (samples, stat_wifi) == (want, want) || waited.elapsed() > Duration::from_secs(90) {
            break (samples, stat_wifi);
        }
        std::thread::sleep(Duration::from_millis(250));
    };
    let during: Vec<u16> = statuses.iter().filter(|s| s.0).map(|s| s.1).collect();
    let figures = Figures {
        fault: name,
        accepted,
        refused_during_fault: during.iter().filter(|s| **s == 503).count(),
        accepted_during_fault: during.iter().filter(|s| **s == 200).count(),
        recovery_secs: recovery.as_secs_f64(),
        slowest_during_fault_secs: slowest.as_secs_f64(),
        settle_secs: waited.elapsed().as_secs_f64(),
        samples,
        stat_wifi,
    };
    let _ = writeln!(
        std::io::stderr(),
        "fault injection | {} | {} accepted | {} answered 503 and {} answered 200 during the fault | \
         slowest answer during it {:.2} s | first 200 {:.2} s after it | applied and counted {:.1} s later | samples {} / stat {} / \
         accepted observations {} | lost {}",
        figures.fault,
        figures.accepted,
        figures.refused_during_fault,
        figures.accepted_during_fault,
        figures.slowest_during_fault_secs,
        figures.recovery_secs,
        figures.settle_secs,
        figures.samples,
        figures.stat_wifi,
        want,
        want - figures.samples.min(figures.stat_wifi),
    );
    if (samples, stat_wifi) != (want, want) {
        let _ = writeln!(
            std::io::stderr(),
            "{name}: server stderr tail:\n{}",
            tail(&server.terminate().1)
        );
    }
    assert_eq!(
        (samples, stat_wifi),
        (want, want),
        "{name}: station samples and stat must equal the accepted observations: {figures:?}"
    );
    figures
}

fn tail(text: &str) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(15)..].join("\n")
}

fn env_with(base: &[(&str, &str)], extra: &[(&'static str, String)]) -> Vec<(String, String)> {
    let mut env: Vec<(String, String)> = base
        .iter()
        .filter(|(k, _)| !extra.iter().any(|(e, _)| e == k))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    env.extend(extra.iter().map(|(k, v)| (k.to_string(), v.clone())));
    for (k, v) in [
        ("ICHNAEA_QUEUE_VISIBILITY", "2"),
        ("ICHNAEA_LOG_LEVEL", "error"),
        ("ICHNAEA_INTERVAL_UPDATE_STATCOUNTER", "1"),
    ] {
        env.push((k.into(), v.into()));
    }
    env
}

/// The `internal` target sends every report at once, so the running worker
/// (not a final `drain`) must apply all of them.
fn internal_batch_of_one(dir: &DataDir, env: &[(String, String)]) {
    dir.run_with(
        &["export-config", "update", "internal", "--batch", "1"],
        &borrowed(env),
    )
    .expect_code(0);
}

fn borrowed(env: &[(String, String)]) -> Vec<(&str, &str)> {
    env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect()
}

/// PostgreSQL and Redis each cut for 10 s under submissions and pipeline load.
#[test]
fn network_cuts_to_postgres_and_redis() {
    for which in ["postgres", "redis"] {
        let Some(backend) = Backend::cluster() else {
            return;
        };
        let dir = data_dir(&format!("fault-{which}"));
        let base = backend.env();
        let var = match which {
            "postgres" => "ICHNAEA_DATABASE_URL",
            _ => "ICHNAEA_REDIS_URL",
        };
        let url = base.iter().find(|(k, _)| *k == var).unwrap().1;
        let default_port = if which == "postgres" { 5432 } else { 6379 };
        let (upstream, _) = redirect(url, default_port, "");
        let proxy = TcpProxy::start(&upstream);
        let (_, proxied) = redirect(url, default_port, &proxy.addr().to_string());
        let env = env_with(&base, &[(var, proxied)]);
        internal_batch_of_one(&dir, &env);
        let mut server = Server::start(&dir, &borrowed(&env));
        let name = if which == "postgres" {
            "PostgreSQL network cut 10 s"
        } else {
            "Redis network cut 10 s"
        };
        let figures = run(name, &mut server, &backend, |on| {
            if on {
                proxy.cut();
            } else {
                proxy.restore();
            }
        });
        if which == "redis" {
            assert!(
                figures.refused_during_fault > 0 && figures.accepted_during_fault == 0,
                "{figures:?}"
            );
            // Refused promptly, not after the client's reconnect attempts.
            assert!(figures.slowest_during_fault_secs < 3.0, "{figures:?}");
        }
        let (status, _) = server.terminate();
        assert_eq!(status.code(), Some(0));
    }
}

/// PostgreSQL (a private server) stopped for 10 s under submissions and
/// pipeline load and started again (`pg_ctl stop -m fast`, then `start`), as
/// an operator's restart does: the service reconnects by itself.
#[test]
fn postgres_restart() {
    let Some(backend) = Backend::cluster() else {
        return;
    };
    let Some(mut postgres) = ichnaea_testkit::PrivatePostgres::start() else {
        return;
    };
    let backend = backend.with_database(postgres.url());
    let dir = data_dir("fault-postgres-restart");
    let env = env_with(&backend.env(), &[]);
    internal_batch_of_one(&dir, &env);
    let mut server = Server::start(&dir, &borrowed(&env));
    let figures = run(
        "PostgreSQL restarted, down 10 s",
        &mut server,
        &backend,
        |on| {
            if on {
                postgres.stop();
            } else {
                postgres.start_again();
            }
        },
    );
    // Submissions only need Redis: they go on being accepted, and the
    // pipeline catches up once the database is back.
    assert!(figures.accepted_during_fault > 0, "{figures:?}");
    let (status, _) = server.terminate();
    assert_eq!(status.code(), Some(0));
}

/// Redis (a private one with the append-only file the service requires)
/// stopped for 10 s under submissions and pipeline load and started again,
/// as an operator's restart does: what it had accepted survives, and the
/// service reconnects by itself.
#[test]
fn redis_restart_with_append_only_file() {
    let Some(backend) = Backend::cluster() else {
        return;
    };
    let dir = data_dir("fault-redis-restart");
    let mut redis = ichnaea_testkit::PrivateRedis::start(&ichnaea_testkit::private_redis::DURABLE);
    let env = env_with(
        &backend.env(),
        &[("ICHNAEA_REDIS_URL", redis.url().to_string())],
    );
    internal_batch_of_one(&dir, &env);
    let mut server = Server::start(&dir, &borrowed(&env));
    let figures = run(
        "Redis restarted (AOF), down 10 s",
        &mut server,
        &backend,
        |on| {
            if on {
                redis.shutdown();
            } else {
                redis.start_again();
            }
        },
    );
    assert!(figures.refused_during_fault > 0, "{figures:?}");
    let (status, _) = server.terminate();
    assert_eq!(status.code(), Some(0));
}

/// A tmpfs of `mb` megabytes at `path`; `None` (with a notice) when this
/// process may not mount.
fn mount_tmpfs(path: &Path, mb: u32) -> Option<Mounted> {
    std::fs::create_dir_all(path).unwrap();
    let ok = Command::new("mount")
        .args(["-t", "tmpfs", "-o", &format!("size={mb}m"), "tmpfs"])
        .arg(path)
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        eprintln!("NOTICE: cannot mount a tmpfs (needs root): disk-full fault test skipped");
        return None;
    }
    Some(Mounted(path.to_path_buf()))
}

struct Mounted(PathBuf);

impl Drop for Mounted {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// Fills the file system of `dir` with `filler` until it is full.
fn fill(filler: &Path) {
    let mut file = std::fs::File::create(filler).unwrap();
    let chunk = vec![0u8; 64 * 1024];
    while file.write_all(&chunk).is_ok() {}
    let _ = file.sync_all();
}

/// The embedded database's disk full for 10 s under submissions and pipeline load.
#[test]
fn embedded_disk_full() {
    let dir = data_dir("fault-disk");
    let mount = std::env::temp_dir().join(format!("ichnaea-fault-disk-{}", std::process::id()));
    let Some(_mounted) = mount_tmpfs(&mount, 64) else {
        return;
    };
    let data = mount.join("data");
    let database_url = format!("sqlite://{}/ichnaea.db", data.display());
    let env = env_with(
        &[],
        &[
            ("ICHNAEA_DATA_DIR", data.display().to_string()),
            ("ICHNAEA_DATABASE_URL", database_url.clone()),
        ],
    );
    let mut backend = Backend::embedded(&dir);
    backend.database_url = database_url;
    internal_batch_of_one(&dir, &env);
    let mut server = Server::start(&dir, &borrowed(&env));
    let filler = mount.join("filler");
    let figures = run("embedded disk full 10 s", &mut server, &backend, |on| {
        if on {
            fill(&filler);
        } else {
            std::fs::remove_file(&filler).unwrap();
        }
    });
    assert!(figures.refused_during_fault > 0, "{figures:?}");
    let (status, _) = server.terminate();
    assert_eq!(status.code(), Some(0));
}
