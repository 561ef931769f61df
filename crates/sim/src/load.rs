//! The load loop: closed (N workers, each sending when its previous request is
//! answered) or open (a fixed start rate paced on a timerfd, bounded
//! in-flight), each worker over its own HTTP/1.1 keep-alive connection
//! ([`crate::conn`]), recording every request's latency in an HDR histogram.
//!
//! Every run is bounded: it stops starting requests at the deadline or when the
//! request budget is spent, and each request is bounded by `--timeout`.

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::os::fd::{AsFd, AsRawFd, RawFd};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use hdrhistogram::Histogram;
use nix::sys::time::TimeSpec;
use nix::sys::timerfd::{ClockId, Expiration, TimerFd, TimerFlags, TimerSetTimeFlags};
use reqwest::Url;
use tokio::io::Interest;
use tokio::io::unix::AsyncFd;
use tokio::sync::mpsc;
use tokio::task::JoinSet;

use crate::bodies::{Body, BodyPool, geolocate_bodies, geosubmit_bodies, mac_pool};
use crate::conn::{Client, RequestError, Target};
use crate::summary::{Latency, Summary};
use crate::{Endpoint, LoadArgs, SimError, target};

/// Largest accepted `--concurrency`: far beyond what one client process drives.
pub const MAX_CONCURRENCY: usize = 10_000;
/// Largest accepted `--reports-per-request`; the server refuses bodies over 10 MB.
pub const MAX_REPORTS_PER_REQUEST: usize = 5_000;
/// Largest accepted `--bodies`.
pub const MAX_BODIES: usize = 4_096;
/// Largest accepted `--threads`.
pub const MAX_THREADS: usize = 64;
/// Largest accepted `--rate`, requests per second.
pub const MAX_RATE: f64 = 1_000_000.0;
/// Latencies above this (one hour, in microseconds) are recorded as this.
const MAX_LATENCY_US: u64 = 3_600_000_000;

/// Refuses flag values outside their ranges before anything is generated or sent.
pub fn validate(args: &LoadArgs) -> Result<(), SimError> {
    let invalid = |flag, reason: String| Err(SimError::InvalidOption { flag, reason });
    if !(1..=MAX_CONCURRENCY).contains(&args.concurrency) {
        return invalid("--concurrency", format!("must be 1 to {MAX_CONCURRENCY}"));
    }
    if args.endpoint == Endpoint::Geosubmit
        && !(1..=MAX_REPORTS_PER_REQUEST).contains(&args.reports_per_request)
    {
        return invalid(
            "--reports-per-request",
            format!("must be 1 to {MAX_REPORTS_PER_REQUEST}"),
        );
    }
    if !(1..=MAX_BODIES).contains(&args.bodies) {
        return invalid("--bodies", format!("must be 1 to {MAX_BODIES}"));
    }
    if !(1..=MAX_THREADS).contains(&args.threads) {
        return invalid("--threads", format!("must be 1 to {MAX_THREADS}"));
    }
    if args.requests == Some(0) {
        return invalid("--requests", "must be at least 1".to_string());
    }
    if let Some(rate) = args.rate
        && !(rate.is_finite() && rate > 0.0 && rate <= MAX_RATE)
    {
        return invalid(
            "--rate",
            format!("must be more than 0 and at most {MAX_RATE}"),
        );
    }
    if args.timeout.is_zero() || args.timeout > crate::duration::MAX {
        return invalid(
            "--timeout",
            "must be more than 0 and at most 24h".to_string(),
        );
    }
    if args.duration.is_zero() || args.duration > crate::duration::MAX {
        return invalid(
            "--duration",
            "must be more than 0 and at most 24h".to_string(),
        );
    }
    Ok(())
}

/// Generates the bodies of a run (once, before the first request).
pub fn build_pool(args: &LoadArgs) -> Result<BodyPool, SimError> {
    match args.endpoint {
        Endpoint::Geosubmit => {
            let now_ms = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
            BodyPool::new(
                geosubmit_bodies(args.seed, args.bodies, args.reports_per_request, now_ms),
                args.gzip,
            )
        }
        Endpoint::Geolocate => {
            let macs = mac_pool(args.mac_pool_seed);
            BodyPool::new(geolocate_bodies(args.seed, args.bodies, &macs), args.gzip)
        }
    }
}

/// How one request ended.
enum Outcome {
    /// The server answered with this status and the whole body was read.
    Answered(u16),
    /// No (complete) answer.
    Failed(RequestError),
}

impl From<Result<u16, RequestError>> for Outcome {
    fn from(result: Result<u16, RequestError>) -> Outcome {
        match result {
            Ok(status) => Outcome::Answered(status),
            Err(e) => Outcome::Failed(e),
        }
    }
}

/// Counters of a run, shared by the workers under one short-held lock.
struct Stats {
    latency_us: Histogram<u64>,
    /// Open loop: how late each request left, from its due time to its send.
    send_delay_us: Histogram<u64>,
    /// Open loop: from each request's send to its answer.
    service_us: Histogram<u64>,
    requests: u64,
    status: BTreeMap<u16, u64>,
    errors: BTreeMap<&'static str, u64>,
    first_error: Option<String>,
    reports_sent: u64,
    reports_accepted: u64,
}

/// A worker's wait after connection failures: 10 ms after the first, doubling
/// up to 1 s, reset by any answer. Without it a closed port is refused in
/// microseconds and the run reports tens of thousands of "requests" a second.
#[derive(Default)]
struct Backoff {
    failures: u32,
}

impl Backoff {
    /// How long to wait after `outcome`, if at all.
    fn after(&mut self, outcome: &Outcome) -> Option<Duration> {
        match outcome {
            Outcome::Failed(e) if e.kind() == "connect" => {
                self.failures = self.failures.saturating_add(1);
                let ms = 10u64 << (self.failures - 1).min(7);
                Some(Duration::from_millis(ms.min(1000)))
            }
            _ => {
                self.failures = 0;
                None
            }
        }
    }
}

/// The error with its causes, `a: b: c`.
fn error_chain(e: &RequestError) -> String {
    let mut text = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

/// The request budget of `--requests`.
struct Budget {
    limit: Option<u64>,
    taken: AtomicU64,
}

impl Budget {
    /// Takes one request from the budget; false once it is spent.
    fn take(&self) -> bool {
        match self.limit {
            None => true,
            Some(limit) => self.taken.fetch_add(1, Ordering::Relaxed) < limit,
        }
    }
}

/// What every worker needs.
struct Shared {
    target: Target,
    url: Url,
    pool: BodyPool,
    stats: Mutex<Stats>,
    budget: Budget,
    deadline: Instant,
}

/// The two parts of an open-loop request's latency.
struct Split {
    /// From the due time to the send: the load generator's own lateness (its
    /// pacer or worker not run on time, or no free in-flight slot).
    send_delay: Duration,
    /// From the send to the answer.
    service: Duration,
}

/// Records a duration in a microsecond histogram, clamped to its bounds.
fn record_us(h: &mut Histogram<u64>, d: Duration) {
    let us = u64::try_from(d.as_micros()).unwrap_or(MAX_LATENCY_US);
    h.saturating_record(us.clamp(1, MAX_LATENCY_US));
}

impl Shared {
    fn record(&self, latency: Duration, split: Option<Split>, body: &Body, outcome: Outcome) {
        let mut stats = self.stats.lock().unwrap_or_else(PoisonError::into_inner);
        record_us(&mut stats.latency_us, latency);
        if let Some(split) = split {
            record_us(&mut stats.send_delay_us, split.send_delay);
            record_us(&mut stats.service_us, split.service);
        }
        stats.requests += 1;
        stats.reports_sent += body.reports;
        match outcome {
            Outcome::Answered(status) => {
                *stats.status.entry(status).or_default() += 1;
                if status == 200 {
                    stats.reports_accepted += body.reports;
                }
            }
            Outcome::Failed(e) => {
                *stats.errors.entry(e.kind()).or_default() += 1;
                if stats.first_error.is_none() {
                    stats.first_error = Some(error_chain(&e));
                }
            }
        }
    }

    /// (requests, 2xx answers, other answers, errors, reports accepted) so far.
    fn snapshot(&self) -> (u64, u64, u64, u64, u64) {
        let stats = self.stats.lock().unwrap_or_else(PoisonError::into_inner);
        let ok: u64 = stats.status.range(200..300).map(|(_, n)| n).sum();
        let answered: u64 = stats.status.values().sum();
        let errors: u64 = stats.errors.values().sum();
        (
            stats.requests,
            ok,
            answered - ok,
            errors,
            stats.reports_accepted,
        )
    }
}

/// Closed loop: `workers` tasks, each with its own connection, sending its next
/// request when the previous one is answered. Worker `w` sends bodies `w`,
/// `w + workers`, … of the pool.
async fn closed_loop(shared: Arc<Shared>, workers: usize) {
    let mut set = JoinSet::new();
    for w in 0..workers {
        let shared = Arc::clone(&shared);
        set.spawn(async move {
            let mut client = Client::new(&shared.target);
            let mut backoff = Backoff::default();
            let mut n = w;
            let mut now = Instant::now();
            while now < shared.deadline && shared.budget.take() {
                let Some(body) = shared.pool.get(n) else {
                    break;
                };
                n = n.wrapping_add(workers);
                let start = Instant::now();
                let outcome: Outcome = client.send(&body.bytes).await.into();
                let wait = backoff.after(&outcome);
                now = Instant::now();
                shared.record(now - start, None, body, outcome);
                if let Some(wait) = wait {
                    tokio::time::sleep(wait.min(shared.deadline.saturating_duration_since(now)))
                        .await;
                    now = Instant::now();
                }
            }
        });
    }
    while set.join_next().await.is_some() {}
}

/// One request of the open loop: its index (which body) and when it was due.
struct Job {
    index: u64,
    due: Instant,
}

/// Open loop: request `i` is due at `start + i / rate`, whatever the answers, with
/// at most `max_in_flight` outstanding (a due request waits for a free worker).
/// Latency is measured from the due time, so a slow server cannot hide its delay
/// by slowing the client down (coordinated omission).
///
/// A pacing loop sleeps until each due time on a timerfd watched by the load
/// runtime's reactor (the runtime's own timer has a 1 ms resolution and would
/// send in bursts) and hands the request to an idle worker task, which owns one
/// keep-alive connection. Pacer and workers share the runtime: no hand-off
/// between threads per request.
async fn open_loop(shared: Arc<Shared>, rate: f64, max_in_flight: usize) -> Result<(), SimError> {
    let timer = PreciseTimer::new().map_err(SimError::Runtime)?;
    let idle = Arc::new(Idle {
        workers: Mutex::new((0..max_in_flight).rev().collect()),
        freed: tokio::sync::Notify::new(),
    });
    let mut set = JoinSet::new();
    let mut senders = Vec::with_capacity(max_in_flight);
    for w in 0..max_in_flight {
        let (tx, mut rx) = mpsc::channel::<Job>(1);
        senders.push(tx);
        let shared = Arc::clone(&shared);
        let idle = Arc::clone(&idle);
        set.spawn(async move {
            let mut client = Client::new(&shared.target);
            let mut backoff = Backoff::default();
            while let Some(job) = client.idle(rx.recv()).await {
                let Some(body) = shared.pool.get(job.index as usize) else {
                    break;
                };
                let sent = Instant::now();
                let outcome: Outcome = client.send(&body.bytes).await.into();
                let wait = backoff.after(&outcome);
                let answered = Instant::now();
                let split = Split {
                    send_delay: sent.saturating_duration_since(job.due),
                    service: answered - sent,
                };
                shared.record(answered - job.due, Some(split), body, outcome);
                if let Some(wait) = wait {
                    let left = shared.deadline.saturating_duration_since(Instant::now());
                    tokio::time::sleep(wait.min(left)).await;
                }
                idle.give_back(w);
            }
        });
    }
    let paced = pace(&shared, rate, &timer, &idle, &senders).await;
    // The workers end once their channels are closed and their job is done.
    drop(senders);
    while set.join_next().await.is_some() {}
    paced.map_err(SimError::Runtime)
}

/// The open loop's idle workers, taken by the pacer and given back by the
/// workers.
struct Idle {
    /// Idle worker ids, the most recently freed last (taken first: its
    /// connection is open, so a slow rate needs few connections).
    workers: Mutex<Vec<usize>>,
    /// Signals a worker given back (a permit is kept if the pacer is not
    /// waiting yet, so none is missed).
    freed: tokio::sync::Notify,
}

impl Idle {
    /// An idle worker, waiting for one if none is.
    async fn take(&self) -> usize {
        loop {
            if let Some(w) = self.lock().pop() {
                return w;
            }
            self.freed.notified().await;
        }
    }

    /// Worker `w` is idle again.
    fn give_back(&self, w: usize) {
        self.lock().push(w);
        self.freed.notify_one();
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<usize>> {
        self.workers.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The shortest sleep of the open-loop pacer. Each wake-up of the pacer costs
/// the shared CPU about as much as a request (a context switch, in a VM a
/// cross-CPU wake-up), so at high rates one wake-up sends the few requests
/// that fell due meanwhile instead of waking once per request.
const PACE_QUANTUM: Duration = Duration::from_micros(200);

/// The pacing loop of the open loop, until the deadline or the budget.
async fn pace(
    shared: &Shared,
    rate: f64,
    timer: &PreciseTimer,
    idle: &Idle,
    workers: &[mpsc::Sender<Job>],
) -> std::io::Result<()> {
    let start = Instant::now();
    let deadline = tokio::time::Instant::from_std(shared.deadline);
    for i in 0u64.. {
        let due = start + Duration::from_secs_f64(i as f64 / rate);
        if due >= shared.deadline || !shared.budget.take() {
            break;
        }
        // When behind, the due requests go out at once, with no sleep between.
        // A sleep lasts at least PACE_QUANTUM (late by at most the quantum,
        // which the requests' latency includes).
        let now = Instant::now();
        if due > now {
            let wait = (due - now).max(PACE_QUANTUM);
            timer
                .sleep(wait.min(shared.deadline.saturating_duration_since(now)))
                .await?;
        }
        let Ok(w) = tokio::time::timeout_at(deadline, idle.take()).await else {
            break;
        };
        if Instant::now() >= shared.deadline {
            break;
        }
        let sent = workers.get(w).map(|tx| tx.try_send(Job { index: i, due }));
        if !matches!(sent, Some(Ok(()))) {
            break;
        }
    }
    Ok(())
}

/// Sleeps with microsecond resolution on a Linux timerfd watched by the
/// runtime's reactor (tokio's own timer rounds to whole milliseconds).
struct PreciseTimer {
    fd: AsyncFd<RawTimerFd>,
}

/// A timerfd as tokio's `AsyncFd` wants it (`AsRawFd`).
struct RawTimerFd(TimerFd);

impl AsRawFd for RawTimerFd {
    fn as_raw_fd(&self) -> RawFd {
        self.0.as_fd().as_raw_fd()
    }
}

impl PreciseTimer {
    fn new() -> std::io::Result<PreciseTimer> {
        let fd = TimerFd::new(
            ClockId::CLOCK_MONOTONIC,
            TimerFlags::TFD_NONBLOCK | TimerFlags::TFD_CLOEXEC,
        )?;
        // The project's one `unsafe` block: tokio made registering a raw
        // descriptor unsafe.
        // SAFETY: `RawTimerFd` owns the timerfd, which stays open until the
        // `AsyncFd` (its only owner) is dropped, and `as_raw_fd` always returns
        // that same descriptor.
        #[allow(unsafe_code)]
        let fd = unsafe { AsyncFd::register_with_interest(RawTimerFd(fd), Interest::READABLE) }
            .map_err(std::io::Error::from)?;
        Ok(PreciseTimer { fd })
    }

    /// Returns after `d` (at once for zero).
    async fn sleep(&self, d: Duration) -> std::io::Result<()> {
        if d.is_zero() {
            return Ok(());
        }
        self.fd.get_ref().0.set(
            Expiration::OneShot(TimeSpec::from_duration(d)),
            TimerSetTimeFlags::empty(),
        )?;
        loop {
            let mut ready = self.fd.readable().await?;
            // Reading the expiry count clears the timer's readiness.
            match ready.try_io(|fd| {
                nix::unistd::read(&fd.get_ref().0, &mut [0u8; 8]).map_err(std::io::Error::from)
            }) {
                Ok(read) => return read.map(drop),
                Err(_would_block) => continue,
            }
        }
    }
}

/// One line per second on stderr until aborted.
async fn progress(shared: Arc<Shared>, start: Instant, reports: bool) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    let (mut last_requests, mut last_reports) = (0, 0);
    loop {
        tick.tick().await;
        let (requests, ok, other, errors, accepted) = shared.snapshot();
        let mut line = format!(
            "[{:>5.1}s] {requests} requests ({} req/s), {ok} 2xx, {other} other, {errors} errors",
            start.elapsed().as_secs_f64(),
            requests - last_requests,
        );
        if reports {
            line.push_str(&format!(", {} reports/s", accepted - last_reports));
        }
        eprintln!("{line}");
        (last_requests, last_reports) = (requests, accepted);
    }
}

/// Runs `ichnaea sim load` with `args` and returns what it measured. Refuses
/// non-loopback targets without `--allow-remote` before sending anything.
///
/// The load runs on its own thread(s) and async runtime (`--threads`), apart from
/// the caller's runtime, so the caller's worker threads stay idle meanwhile.
pub async fn run_load(args: &LoadArgs) -> Result<Summary, SimError> {
    validate(args)?;
    let url = target::endpoint_url(
        &args.url,
        args.endpoint,
        args.key.as_deref(),
        args.allow_remote,
    )?;
    let target = Target::new(&url, args.gzip, args.timeout)?;
    let pool = build_pool(args)?;
    let latency_us =
        Histogram::new_with_bounds(1, MAX_LATENCY_US, 3).map_err(SimError::Histogram)?;
    let send_delay_us = latency_us.clone();
    let service_us = latency_us.clone();
    let (done_tx, done_rx) = tokio::sync::oneshot::channel();
    let run_args = args.clone();
    std::thread::Builder::new()
        .name("sim-load".to_string())
        .spawn(move || {
            let result = runtime(run_args.threads).and_then(|rt| {
                rt.block_on(async {
                    let start = Instant::now();
                    let shared = Arc::new(Shared {
                        target,
                        url,
                        pool,
                        stats: Mutex::new(Stats {
                            latency_us,
                            send_delay_us,
                            service_us,
                            requests: 0,
                            status: BTreeMap::new(),
                            errors: BTreeMap::new(),
                            first_error: None,
                            reports_sent: 0,
                            reports_accepted: 0,
                        }),
                        budget: Budget {
                            limit: run_args.requests,
                            taken: AtomicU64::new(0),
                        },
                        deadline: start + run_args.duration,
                    });
                    run(shared, &run_args, start).await
                })
            });
            let _ = done_tx.send(result);
        })
        .map_err(SimError::Runtime)?;
    done_rx.await.map_err(|_| {
        SimError::Runtime(std::io::Error::other(
            "the load thread ended without a result",
        ))
    })?
}

/// The load generator's runtime: one thread, or `threads` worker threads.
fn runtime(threads: usize) -> Result<tokio::runtime::Runtime, SimError> {
    let mut builder = if threads <= 1 {
        tokio::runtime::Builder::new_current_thread()
    } else {
        let mut b = tokio::runtime::Builder::new_multi_thread();
        b.worker_threads(threads);
        b
    };
    builder
        .enable_all()
        .thread_name("sim-load")
        .build()
        .map_err(SimError::Runtime)
}

/// The run itself, inside the load runtime.
async fn run(shared: Arc<Shared>, args: &LoadArgs, start: Instant) -> Result<Summary, SimError> {
    let geosubmit = args.endpoint == Endpoint::Geosubmit;
    let progress = (args.progress || std::io::stderr().is_terminal())
        .then(|| tokio::spawn(progress(Arc::clone(&shared), start, geosubmit)));
    let ran = match args.rate {
        None => {
            closed_loop(Arc::clone(&shared), args.concurrency).await;
            Ok(())
        }
        Some(rate) => open_loop(Arc::clone(&shared), rate, args.concurrency).await,
    };
    let elapsed = start.elapsed().as_secs_f64();
    if let Some(progress) = progress {
        progress.abort();
    }
    ran?;

    let stats = shared.stats.lock().unwrap_or_else(PoisonError::into_inner);
    let per_s = |n: u64| {
        if elapsed > 0.0 {
            n as f64 / elapsed
        } else {
            0.0
        }
    };
    Ok(Summary {
        url: shared.url.to_string(),
        endpoint: args.endpoint,
        mode: if args.rate.is_some() {
            "rate"
        } else {
            "closed"
        },
        concurrency: args.concurrency,
        rate: args.rate,
        gzip: args.gzip,
        seed: args.seed,
        reports_per_request: geosubmit.then_some(args.reports_per_request),
        bodies: shared.pool.len(),
        body_bytes_mean: shared.pool.mean_wire_len(),
        json_bytes_mean: shared.pool.mean_json_len(),
        elapsed_s: elapsed,
        requests: stats.requests,
        requests_per_s: per_s(stats.requests),
        reports_sent: geosubmit.then_some(stats.reports_sent),
        reports_accepted: geosubmit.then_some(stats.reports_accepted),
        reports_per_s: geosubmit.then_some(per_s(stats.reports_accepted)),
        status: stats
            .status
            .iter()
            .map(|(k, v)| (k.to_string(), *v))
            .collect(),
        errors: stats
            .errors
            .iter()
            .map(|(k, v)| (k.to_string(), *v))
            .collect(),
        first_error: stats.first_error.clone(),
        latency_ms: Latency::from_micros(&stats.latency_us),
        send_delay_ms: args
            .rate
            .map(|_| Latency::from_micros(&stats.send_delay_us)),
        service_ms: args.rate.map(|_| Latency::from_micros(&stats.service_us)),
    })
}
