//! Chaos with many processes: 3 web, 3 worker and 2 scheduler processes of the
//! real binary on one PostgreSQL schema and one Redis prefix, under
//! submissions and locates, while a chaos loop SIGKILLs a random process (the
//! scheduler leader included) every few seconds and starts it again. At the
//! end (every process stopped with SIGTERM, the backlog drained) the test
//! checks that
//!
//! - every station's `samples` and the `stat` totals equal the observations
//!   accepted: the reports answered 200, plus those in flight when their web
//!   process was killed whose enqueueing had already happened (each report
//!   carries one network of its own, a tag, so the test can tell): nothing lost,
//!   nothing twice;
//! - a key's daily `maxreq` holds across the three web processes and a kill:
//!   the 200 answers plus the counted requests that a kill left unanswered
//!   equal the limit;
//! - no periodic task ran twice within its interval (the schedulers' JSON logs,
//!   `periodic task started`, of the killed processes too).
//!
//! Figures on stderr (`-- --nocapture`), recorded in docs/reliability.md.

use std::collections::{BTreeMap, HashMap};
use std::io::{Read, Write};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU16, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use ichnaea_testkit::binary::{Backend, DataDir, free_port, try_http};
use serde_json::{Value, json};

use super::{data_dir, with_store};

/// How long the processes are killed at random.
const CHAOS: Duration = Duration::from_secs(60);
/// Time between two kills: this plus up to as much again.
const KILL_EVERY: Duration = Duration::from_secs(3);
/// Places in Berlin, each with networks of its own shared by its reports.
const SITES: u64 = 100;
const PER_SITE: u64 = 20;
/// Shared networks per report; each report also has one network of its own.
const SHARED_PER_REPORT: u64 = 4;
const PER_REPORT: i64 = SHARED_PER_REPORT as i64 + 1;
/// A key with a daily limit, hit through the three web processes.
const LIMITED_KEY: &str = "chaoslimit";
const MAXREQ: u64 = 120;
/// A key without limit for the locates.
const LOCATE_KEY: &str = "chaos";
/// Periodic tasks' intervals (seconds) for this test; the others keep their
/// defaults (daily).
const INTERVALS: [(&str, u64); 4] = [
    ("update_statcounter", 3),
    ("monitor_queue_size", 30),
    ("monitor_api_key_limits", 20),
    ("monitor_api_users", 20),
];

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
enum Role {
    Web,
    Worker,
    Scheduler,
}

impl Role {
    fn name(self) -> &'static str {
        match self {
            Role::Web => "web",
            Role::Worker => "worker",
            Role::Scheduler => "scheduler",
        }
    }
}

/// One `ichnaea serve --roles <role>` process.
struct Proc {
    role: Role,
    child: Child,
    port: u16,
    metrics_port: u16,
    stderr: Option<JoinHandle<String>>,
}

impl Proc {
    fn spawn(dir: &DataDir, env: &[(String, String)], role: Role) -> Proc {
        let port = free_port();
        let metrics_port = free_port();
        let mut child = dir
            .command()
            .args(["serve", "--roles", role.name()])
            .env("ICHNAEA_LISTEN", format!("127.0.0.1:{port}"))
            .env(
                "ICHNAEA_METRICS_LISTEN",
                format!("127.0.0.1:{metrics_port}"),
            )
            .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start `ichnaea serve`");
        let mut pipe = child.stderr.take().expect("piped stderr");
        let stderr = std::thread::spawn(move || {
            let mut text = String::new();
            let _ = pipe.read_to_string(&mut text);
            text
        });
        Proc {
            role,
            child,
            port,
            metrics_port,
            stderr: Some(stderr),
        }
    }

    /// Waits until the process answers (web: `/__lbheartbeat__`, others:
    /// `/metrics`); generous, the machine is slow and shared.
    fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(90);
        let (port, path) = match self.role {
            Role::Web => (self.port, "/__lbheartbeat__"),
            _ => (self.metrics_port, "/metrics"),
        };
        loop {
            if try_http(port, "GET", path, &[], None).is_ok_and(|r| r.status == 200) {
                return;
            }
            if let Some(status) = self.child.try_wait().expect("poll") {
                panic!(
                    "{} exited early with {status}:\n{}",
                    self.role.name(),
                    self.output()
                );
            }
            assert!(
                Instant::now() < deadline,
                "{} not ready within 90 s",
                self.role.name()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Whether its metrics say it holds the scheduler lease.
    fn leads(&self) -> bool {
        try_http(self.metrics_port, "GET", "/metrics", &[], None).is_ok_and(|r| {
            r.body.lines().any(|l| {
                let mut parts = l.split_whitespace();
                parts.next() == Some("ichnaea_scheduler_leader") && parts.next() == Some("1")
            })
        })
    }

    /// SIGKILL; returns the stderr it wrote.
    fn kill(mut self) -> String {
        let _ = self.child.kill();
        self.output()
    }

    /// SIGTERM and wait (up to 120 s); returns whether it exited with 0 and its
    /// stderr.
    fn terminate(mut self) -> (bool, String) {
        if let Some(status) = self.child.try_wait().expect("poll") {
            return (
                false,
                format!("had exited with {status}\n{}", self.output()),
            );
        }
        let pid = self.child.id().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            if let Some(status) = self.child.try_wait().expect("poll") {
                let log = self.output();
                return (status.success(), format!("exited with {status}\n{log}"));
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                return (
                    false,
                    format!("no exit 120 s after SIGTERM\n{}", self.output()),
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn output(&mut self) -> String {
        let _ = self.child.wait();
        self.stderr
            .take()
            .map(|h| h.join().unwrap_or_default())
            .unwrap_or_default()
    }
}

/// A report's network of its own.
fn tag_mac(id: usize) -> String {
    format!("06{id:010x}")
}

fn shared_mac(ap: u64) -> String {
    format!("02{ap:010x}")
}

fn mix(mut x: u64) -> u64 {
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// The MACs of report `id`: its shared networks and its tag.
fn report_macs(id: usize) -> (u64, Vec<String>) {
    let h = mix(id as u64 + 1);
    let site = h % SITES;
    let start = (h >> 20) % PER_SITE;
    let mut macs: Vec<String> = (0..SHARED_PER_REPORT)
        .map(|i| shared_mac(site * PER_SITE + (start + i) % PER_SITE))
        .collect();
    macs.push(tag_mac(id));
    (site, macs)
}

fn site_position(site: u64, jitter: u64) -> (f64, f64) {
    (
        52.45 + (site / 10) as f64 * 0.002 + (jitter % 100) as f64 * 1e-7,
        13.30 + (site % 10) as f64 * 0.003 + ((jitter >> 8) % 100) as f64 * 1e-7,
    )
}

fn report_body(id: usize) -> String {
    let (site, macs) = report_macs(id);
    let (lat, lon) = site_position(site, mix(id as u64 ^ 0x5555));
    let wifi: Vec<Value> = macs
        .iter()
        .map(|m| json!({"macAddress": m, "signalStrength": -65}))
        .collect();
    json!({"items": [{"position": {"latitude": lat, "longitude": lon, "accuracy": 10.0}, "wifiAccessPoints": wifi}]})
        .to_string()
}

/// What a submission got.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Outcome {
    /// 200: accepted.
    Accepted,
    /// 403 daily limit exceeded or 503: not accepted.
    Refused(u16),
    /// The connection was refused: the process was down, nothing sent.
    NotSent,
    /// Sent, but no answer (the process was killed meanwhile): accepted or not.
    NoAnswer,
}

fn classify(result: std::io::Result<u16>) -> Outcome {
    match result {
        Ok(200) => Outcome::Accepted,
        Ok(status) => Outcome::Refused(status),
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => Outcome::NotSent,
        Err(_) => Outcome::NoAnswer,
    }
}

/// Shared state of the client threads.
struct Clients {
    stop: AtomicBool,
    next_id: AtomicUsize,
    /// Current port of each web process.
    ports: [AtomicU16; 3],
    /// Report id → (with the limited key, outcome).
    outcomes: Mutex<HashMap<usize, (bool, Outcome)>>,
    /// Locate answers by status (0: no answer).
    locates: Mutex<BTreeMap<u16, usize>>,
    /// Unexpected answers.
    errors: Mutex<Vec<String>>,
}

impl Clients {
    fn submit_loop(&self, web: usize, limited: bool, pause: Duration) {
        while !self.stop.load(Ordering::SeqCst) {
            let id = self.next_id.fetch_add(1, Ordering::SeqCst);
            let port = self.ports[web].load(Ordering::SeqCst);
            let path = if limited {
                format!("/v2/geosubmit?key={LIMITED_KEY}")
            } else {
                "/v2/geosubmit".to_string()
            };
            let body = report_body(id);
            let outcome =
                classify(try_http(port, "POST", &path, &[], Some(&body)).map(|r| r.status));
            match outcome {
                Outcome::Refused(403) if limited => {}
                Outcome::Refused(503) => {}
                Outcome::Refused(status) => self.errors.lock().unwrap().push(format!(
                    "submit {id} to web {web} (limited key: {limited}) answered {status}"
                )),
                _ => {}
            }
            self.outcomes.lock().unwrap().insert(id, (limited, outcome));
            std::thread::sleep(if outcome == Outcome::NotSent {
                Duration::from_millis(100)
            } else {
                pause
            });
        }
    }

    fn locate_loop(&self) {
        let mut n: u64 = 0;
        while !self.stop.load(Ordering::SeqCst) {
            n += 1;
            let port = self.ports[(n % 3) as usize].load(Ordering::SeqCst);
            let site = mix(n) % SITES;
            let wifi: Vec<Value> = (0..3)
                .map(|i| json!({"macAddress": shared_mac(site * PER_SITE + i), "signalStrength": -70}))
                .collect();
            let body = json!({"wifiAccessPoints": wifi}).to_string();
            let status = try_http(
                port,
                "POST",
                &format!("/v1/geolocate?key={LOCATE_KEY}"),
                &[],
                Some(&body),
            )
            .map_or(0, |r| r.status);
            if !matches!(status, 0 | 200 | 404) {
                self.errors
                    .lock()
                    .unwrap()
                    .push(format!("locate answered {status}"));
            }
            *self.locates.lock().unwrap().entry(status).or_default() += 1;
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// One `periodic task started` line of a scheduler log.
fn task_runs(log: &str, out: &mut Vec<(String, chrono::DateTime<chrono::FixedOffset>)>) {
    for line in log.lines() {
        let Ok(value) = serde_json::from_str::<Value>(line) else {
            continue;
        };
        if value["message"] != "periodic task started" {
            continue;
        }
        let (Some(task), Some(at)) = (value["task"].as_str(), value["timestamp"].as_str()) else {
            continue;
        };
        let at = chrono::DateTime::parse_from_rfc3339(at)
            .unwrap_or_else(|e| panic!("timestamp {at:?}: {e}"));
        out.push((task.to_string(), at));
    }
}

/// 3 web, 3 worker and 2 scheduler processes, one killed at random every few
/// seconds for a minute: nothing lost, nothing twice, the daily limit exact,
/// no periodic task twice within its interval.
#[test]
fn chaos_many_processes_killed_at_random() {
    let Some(backend) = Backend::cluster() else {
        return;
    };
    let began = Instant::now();
    let dir = data_dir("chaos");
    let mut env: Vec<(String, String)> = backend
        .env()
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    for (k, v) in [
        ("ICHNAEA_QUEUE_VISIBILITY", "2"),
        (
            "ICHNAEA_LOG_LEVEL",
            "warn,ichnaea_pipeline::scheduler=debug",
        ),
        // Key changes reach every web process at once.
        ("ICHNAEA_API_KEY_CACHE_TTL", "1"),
    ] {
        env.push((k.into(), v.into()));
    }
    for (task, secs) in INTERVALS {
        env.push((
            format!("ICHNAEA_INTERVAL_{}", task.to_uppercase()),
            secs.to_string(),
        ));
    }
    let borrowed: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    // The running workers apply every report, not a final drain.
    dir.run_with(
        &["export-config", "update", "internal", "--batch", "1"],
        &borrowed,
    )
    .expect_code(0);
    dir.run_with(
        &[
            "apikey",
            "create",
            LIMITED_KEY,
            "--maxreq",
            &MAXREQ.to_string(),
        ],
        &borrowed,
    )
    .expect_code(0);
    // Located queries kept as `query` reports would add observations that
    // count in `stat` but not in `samples`: none are kept.
    dir.run_with(
        &["apikey", "create", LOCATE_KEY, "--store-sample-locate", "0"],
        &borrowed,
    )
    .expect_code(0);

    let roles = [
        Role::Web,
        Role::Web,
        Role::Web,
        Role::Worker,
        Role::Worker,
        Role::Worker,
        Role::Scheduler,
        Role::Scheduler,
    ];
    let mut procs: Vec<Proc> = roles.iter().map(|r| Proc::spawn(&dir, &env, *r)).collect();
    for p in &mut procs {
        p.wait_ready();
    }
    let started_secs = began.elapsed().as_secs_f64();
    let clients = Arc::new(Clients {
        stop: AtomicBool::new(false),
        next_id: AtomicUsize::new(0),
        ports: [
            AtomicU16::new(procs[0].port),
            AtomicU16::new(procs[1].port),
            AtomicU16::new(procs[2].port),
        ],
        outcomes: Mutex::new(HashMap::new()),
        locates: Mutex::new(BTreeMap::new()),
        errors: Mutex::new(Vec::new()),
    });
    let day_before = chrono::Utc::now().date_naive();
    let mut threads = Vec::new();
    for web in 0..3 {
        let c = clients.clone();
        threads.push(std::thread::spawn(move || {
            c.submit_loop(web, false, Duration::from_millis(30));
        }));
        // The limited key: about 7 requests a second in all, so the limit is
        // reached after ~17 s, across the first kills.
        let c = clients.clone();
        threads.push(std::thread::spawn(move || {
            c.submit_loop(web, true, Duration::from_millis(400));
        }));
    }
    {
        let c = clients.clone();
        threads.push(std::thread::spawn(move || c.locate_loop()));
    }

    // The chaos loop.
    let seed = u64::from(std::process::id()) ^ 0x9e37_79b9_7f4a_7c15;
    let mut rng = fastrand::Rng::with_seed(seed);
    let mut killed: BTreeMap<&str, usize> = BTreeMap::new();
    let mut leader_kills = 0;
    let mut scheduler_logs: Vec<String> = Vec::new();
    let chaos_start = Instant::now();
    let mut round = 0usize;
    while chaos_start.elapsed() < CHAOS {
        std::thread::sleep(KILL_EVERY + KILL_EVERY.mul_f64(rng.f64()));
        // The first kill hits a web process while the limited key is being
        // counted; then in turn the scheduler leader (when one leads), a
        // worker and any process.
        let victim = match round % 3 {
            _ if round == 0 => rng.usize(0..3),
            1 => procs
                .iter()
                .position(|p| p.role == Role::Scheduler && p.leads())
                .unwrap_or_else(|| rng.usize(0..procs.len())),
            2 => rng.usize(3..6),
            _ => rng.usize(0..procs.len()),
        };
        round += 1;
        let role = procs[victim].role;
        if role == Role::Scheduler && procs[victim].leads() {
            leader_kills += 1;
        }
        let log = procs.remove(victim).kill();
        procs.insert(victim, Proc::spawn(&dir, &env, role));
        *killed.entry(role.name()).or_default() += 1;
        if role == Role::Scheduler {
            scheduler_logs.push(log);
        }
        if role == Role::Web {
            clients.ports[victim].store(procs[victim].port, Ordering::SeqCst);
        }
    }
    clients.stop.store(true, Ordering::SeqCst);
    for t in threads {
        t.join().expect("client thread");
    }
    let day_after = chrono::Utc::now().date_naive();

    // Every process stopped gracefully: web first, then the pipeline.
    let mut failures = Vec::new();
    for mut p in procs {
        let role = p.role;
        // A process started by the last round may not handle SIGTERM yet
        // (the default action would kill it): wait until it answers.
        p.wait_ready();
        let (ok, log) = p.terminate();
        if !ok {
            failures.push(format!("{}: {}", role.name(), tail(&log)));
        }
        if role == Role::Scheduler {
            scheduler_logs.push(log);
        }
    }
    assert!(
        failures.is_empty(),
        "processes that did not stop cleanly:\n{}",
        failures.join("\n---\n")
    );
    let drain = dir.run_with(&["drain"], &borrowed).expect_code(0);

    let errors = clients.errors.lock().unwrap().clone();
    assert!(errors.is_empty(), "unexpected answers: {errors:?}");
    let outcomes = clients.outcomes.lock().unwrap().clone();
    let locates = clients.locates.lock().unwrap().clone();

    // Which reports were accepted: those answered 200, and those left without
    // an answer whose tag network was stored (enqueued before the kill).
    let all_ids: Vec<usize> = outcomes.keys().copied().collect();
    let mut all_macs: Vec<String> = all_ids.iter().map(|id| tag_mac(*id)).collect();
    all_macs.extend((0..SITES * PER_SITE).map(shared_mac));
    let (stored, (rows, samples), stat_before, stat) = with_store(&backend, async |store| {
        let mut stored: HashMap<String, i64> = HashMap::new();
        for chunk in all_macs.chunks(500) {
            let macs: Vec<ichnaea_core::Mac> = chunk
                .iter()
                .map(|m| ichnaea_core::Mac::from_hex(m).unwrap())
                .collect();
            for s in store.wifi_stations(&macs).await.unwrap() {
                let hex = chunk
                    .iter()
                    .zip(&macs)
                    .find(|(_, m)| **m == s.mac)
                    .map(|(h, _)| h.clone())
                    .unwrap();
                stored.insert(hex, s.fields.samples.unwrap_or(0));
            }
        }
        let totals = |stats: &[ichnaea_core::stats::StatRow]| {
            let get = |key| stats.iter().find(|r| r.key == key).map_or(0, |r| r.value);
            use ichnaea_core::stats::StatKey::{UniqueWifi, Wifi};
            (get(Wifi), get(UniqueWifi))
        };
        let before = totals(&store.latest_stats().await.unwrap());
        // The scheduler's next run: fold what the last batches counted.
        store.fold_stat_counters().await.unwrap();
        let after = totals(&store.latest_stats().await.unwrap());
        (
            stored,
            store.station_totals("wifi").await.unwrap(),
            before,
            after,
        )
    });
    let mut expected: HashMap<String, i64> = HashMap::new();
    let count = |o: Outcome| outcomes.values().filter(|(_, x)| *x == o).count();
    let (answered_200, not_sent, no_answer) = (
        count(Outcome::Accepted),
        count(Outcome::NotSent),
        count(Outcome::NoAnswer),
    );
    let refused = outcomes
        .values()
        .filter(|(_, x)| matches!(x, Outcome::Refused(_)))
        .count();
    let mut applied_without_answer = 0;
    let mut wrongly_applied = Vec::new();
    for (id, (_, outcome)) in &outcomes {
        let tagged = stored.contains_key(&tag_mac(*id));
        let accepted = match outcome {
            Outcome::Accepted => true,
            Outcome::NoAnswer => tagged,
            Outcome::Refused(_) | Outcome::NotSent => {
                if tagged {
                    wrongly_applied.push((*id, *outcome));
                }
                false
            }
        };
        if accepted {
            if *outcome == Outcome::NoAnswer {
                applied_without_answer += 1;
            }
            for mac in report_macs(*id).1 {
                *expected.entry(mac).or_default() += 1;
            }
        }
    }
    let (mut lost, mut duplicates) = (0i64, 0i64);
    for mac in all_macs.iter() {
        let want = expected.get(mac).copied().unwrap_or(0);
        let got = stored.get(mac).copied().unwrap_or(0);
        lost += (want - got).max(0);
        duplicates += (got - want).max(0);
    }
    let accepted_obs: i64 = expected.values().sum();

    // The limited key.
    let limited: Vec<Outcome> = outcomes
        .values()
        .filter(|(l, _)| *l)
        .map(|(_, o)| *o)
        .collect();
    let limit_200 = limited.iter().filter(|o| **o == Outcome::Accepted).count() as u64;
    let limit_403 = limited
        .iter()
        .filter(|o| **o == Outcome::Refused(403))
        .count() as u64;
    let limit_no_answer = limited.iter().filter(|o| **o == Outcome::NoAnswer).count() as u64;
    let limit_applied_no_answer = outcomes
        .iter()
        .filter(|(id, (l, o))| *l && *o == Outcome::NoAnswer && stored.contains_key(&tag_mac(**id)))
        .count() as u64;
    let counted = super::rt().block_on(async {
        let redis_url = &env
            .iter()
            .find(|(k, _)| k == "ICHNAEA_REDIS_URL")
            .unwrap()
            .1;
        let prefix = &env
            .iter()
            .find(|(k, _)| k == "ICHNAEA_REDIS_PREFIX")
            .unwrap()
            .1;
        let counters = ichnaea_queue::Counters::redis(redis_url, prefix)
            .await
            .unwrap();
        counters
            .requests(LIMITED_KEY, "v2.geosubmit", chrono::Utc::now())
            .await
            .unwrap()
    });

    // The periodic tasks' runs, from every scheduler's log.
    let mut runs = Vec::new();
    for log in &scheduler_logs {
        task_runs(log, &mut runs);
    }
    runs.sort_by_key(|(_, at)| *at);
    let mut by_task: BTreeMap<String, Vec<chrono::DateTime<chrono::FixedOffset>>> = BTreeMap::new();
    for (task, at) in runs {
        by_task.entry(task).or_default().push(at);
    }
    let mut twice = Vec::new();
    for (task, times) in &by_task {
        let interval = INTERVALS
            .iter()
            .chain(&[("cell_export_diff", 3600)])
            .find(|(t, _)| t == task)
            .map_or(86_400, |(_, s)| *s);
        // Three seconds of slack: a run is logged just after its claim, by
        // processes on one clock but not at the same instant (a process
        // starved of CPU on this shared machine may log late). The intervals
        // checked are 20 s and more.
        for pair in times.windows(2) {
            let gap = (pair[1] - pair[0]).num_milliseconds();
            if interval >= 20 && gap < (interval as i64 * 1000 - 3000) {
                twice.push(format!(
                    "{task} (every {interval} s) ran at {} and {} ({gap} ms apart)",
                    pair[0], pair[1]
                ));
            }
        }
    }
    let task_counts: Vec<String> = by_task
        .iter()
        .map(|(t, v)| format!("{t} {}", v.len()))
        .collect();

    let _ = writeln!(
        std::io::stderr(),
        "chaos: seed {seed}; 8 processes started in {started_secs:.1} s; {:.0} s of chaos; killed {killed:?} \
         ({leader_kills} scheduler leaders); submissions: {} sent, {answered_200} answered 200, \
         {refused} refused (403/503), {no_answer} without answer ({applied_without_answer} of them applied), \
         {not_sent} not sent (process down); locates by status (0: no answer) {locates:?}; \
         observations accepted {accepted_obs}, applied {samples} in {rows} stations, stat wifi {} \
         (folded by the schedulers: {}), unique_wifi {}; lost {lost}, duplicates {duplicates}; \
         limited key (maxreq {MAXREQ}): {limit_200} answered 200, {limit_403} answered 403, \
         {limit_no_answer} without answer ({limit_applied_no_answer} applied), counter {counted}; \
         task runs: {}; final drain: {}; total {:.0} s",
        chaos_start.elapsed().as_secs_f64(),
        outcomes.len(),
        stat.0,
        stat_before.0,
        stat.1,
        task_counts.join(", "),
        drain.stdout.trim(),
        began.elapsed().as_secs_f64(),
    );

    assert!(
        wrongly_applied.is_empty(),
        "reports refused or never sent were applied: {wrongly_applied:?}"
    );
    assert_eq!(
        (lost, duplicates),
        (0, 0),
        "every accepted observation applied exactly once"
    );
    assert!(answered_200 > 100, "too few reports accepted to mean much");
    assert_eq!(samples, accepted_obs);
    assert_eq!(rows, expected.len() as i64);
    assert_eq!(
        stat,
        (accepted_obs, rows),
        "stat counts every observation once"
    );
    assert_eq!(accepted_obs % PER_REPORT, 0);

    if day_before == day_after {
        // Requests counted past the limit are refused, so the answered 200s
        // never exceed it; the counted requests below it that a kill left
        // without an answer are the only shortfall.
        assert!(limit_403 > 0, "the limit was never reached");
        // The counter counts each answered request once, and at most the
        // requests left without an answer besides.
        assert!(
            counted >= limit_200 + limit_403 && counted - limit_200 - limit_403 <= limit_no_answer,
            "counter {counted}: {limit_200} answered 200, {limit_403} answered 403, \
             {limit_no_answer} without answer"
        );
        let counted_no_answer = counted - limit_200 - limit_403;
        assert!(
            limit_200 + limit_applied_no_answer <= MAXREQ
                && MAXREQ <= limit_200 + counted_no_answer,
            "daily limit: {limit_200} answered 200, {limit_applied_no_answer} applied without \
             answer, {counted_no_answer} counted without answer, maxreq {MAXREQ}"
        );
    } else {
        eprintln!("NOTICE: the test crossed midnight UTC: daily limit not checked");
    }

    assert!(
        by_task
            .get("update_statcounter")
            .is_some_and(|v| v.len() > 3),
        "scheduler logs without task runs: {task_counts:?}"
    );
    assert!(
        twice.is_empty(),
        "periodic tasks ran twice within their interval:\n{}",
        twice.join("\n")
    );
    assert!(
        killed.values().sum::<usize>() >= 10 && killed.len() == 3,
        "{killed:?}"
    );
}

fn tail(text: &str) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(15)..].join("\n")
}
