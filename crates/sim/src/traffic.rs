//! `sim traffic`: sends the stumblers' uploads ([`crate::track`]) to
//! `/v2/geosubmit`, gzip-compressed like NeoStumbler's, at a target rate of
//! reports per second, and reports what the server accepted. With `--dry-run`
//! it writes the uncompressed bodies as JSON lines instead of sending them, so
//! the byte identity of a seed's reports can be checked from the command line.

use std::collections::BTreeMap;
use std::io::{IsTerminal, Write};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use reqwest::header::{CONTENT_ENCODING, CONTENT_TYPE};
use reqwest::{Client, Url};
use serde::Serialize;
use tokio::sync::{Semaphore, mpsc};
use tokio::task::JoinSet;

use crate::bodies::gzip_bytes;
use crate::track::{Batch, Traffic};
use crate::wire::Upload;
use crate::world::World;
use crate::{Endpoint, SimError, TrafficArgs, target};

/// One serialised upload.
#[derive(Clone, Debug)]
pub struct Body {
    /// gzip of the JSON.
    pub gzip: Vec<u8>,
    /// The JSON.
    pub json: Vec<u8>,
    /// Reports in it.
    pub reports: u64,
    /// Networks in it: Wi-Fi, cell, Bluetooth entries.
    pub entries: [u64; 3],
    /// Reports made after the move time.
    pub after_move: u64,
    /// Simulated second of its last report.
    pub last_t_s: f64,
}

/// Serialises a batch as the JSON body `{"items": [...]}`.
pub fn upload_json(batch: &Batch) -> Result<Vec<u8>, SimError> {
    Ok(serde_json::to_vec(&Upload {
        items: &batch.items,
    })?)
}

fn body(batch: &Batch, move_at_s: f64) -> Result<Body, SimError> {
    let json = upload_json(batch)?;
    let gzip = gzip_bytes(&json)?;
    let mut entries = [0u64; 3];
    for item in &batch.items {
        entries[0] += item.wifi_access_points.len() as u64;
        entries[1] += item.cell_towers.len() as u64;
        entries[2] += item.bluetooth_beacons.len() as u64;
    }
    Ok(Body {
        gzip,
        json,
        reports: batch.items.len() as u64,
        entries,
        after_move: batch.truth.iter().filter(|p| p.t_s >= move_at_s).count() as u64,
        last_t_s: batch.truth.last().map_or(0.0, |p| p.t_s),
    })
}

/// What a traffic run did.
#[derive(Clone, Debug, Default, Serialize)]
pub struct TrafficSummary {
    /// Where the uploads went (or `dry-run`).
    pub url: String,
    /// World seed.
    pub seed: u64,
    /// Stumblers.
    pub stumblers: usize,
    /// Unix ms of simulated second 0.
    pub start_ms: i64,
    /// Uploads sent.
    pub uploads: u64,
    /// Reports sent.
    pub reports_sent: u64,
    /// Reports in uploads answered 200.
    pub reports_accepted: u64,
    /// Wi-Fi entries sent.
    pub wifi_entries: u64,
    /// Cell entries sent.
    pub cell_entries: u64,
    /// Bluetooth entries sent.
    pub blue_entries: u64,
    /// Reports made after the access points moved.
    pub reports_after_move: u64,
    /// Simulated time covered, seconds.
    pub simulated_s: f64,
    /// Mean upload size on the wire (gzip), bytes.
    pub upload_bytes_mean: f64,
    /// Wall-clock time, seconds.
    pub elapsed_s: f64,
    /// `reports_accepted / elapsed_s`.
    pub reports_per_s: f64,
    /// Answers by status code.
    pub status: BTreeMap<String, u64>,
    /// Uploads without an answer.
    pub errors: u64,
    /// The first transport error.
    pub first_error: Option<String>,
}

impl TrafficSummary {
    fn add(&mut self, b: &Body) {
        self.uploads += 1;
        self.reports_sent += b.reports;
        self.wifi_entries += b.entries[0];
        self.cell_entries += b.entries[1];
        self.blue_entries += b.entries[2];
        self.reports_after_move += b.after_move;
        self.simulated_s = self.simulated_s.max(b.last_t_s);
        self.upload_bytes_mean += b.gzip.len() as f64;
    }

    /// The summary as an aligned table.
    pub fn table(&self) -> String {
        let per = |n: u64| {
            if self.reports_sent > 0 {
                n as f64 / self.reports_sent as f64
            } else {
                0.0
            }
        };
        let rows = [
            ("target", format!("POST {}", self.url)),
            (
                "world",
                format!("seed {}, {} stumblers", self.seed, self.stumblers),
            ),
            (
                "uploads",
                format!(
                    "{} ({:.0} B gzip on average)",
                    self.uploads, self.upload_bytes_mean
                ),
            ),
            (
                "reports",
                format!(
                    "{} accepted of {} sent, {} after the move, {:.0} simulated s",
                    self.reports_accepted,
                    self.reports_sent,
                    self.reports_after_move,
                    self.simulated_s
                ),
            ),
            (
                "per report",
                format!(
                    "{:.1} Wi-Fi, {:.2} cells, {:.2} Bluetooth",
                    per(self.wifi_entries),
                    per(self.cell_entries),
                    per(self.blue_entries)
                ),
            ),
            (
                "elapsed",
                format!(
                    "{:.1} s ({:.0} reports/s accepted)",
                    self.elapsed_s, self.reports_per_s
                ),
            ),
            (
                "status",
                if self.status.is_empty() {
                    "none".to_string()
                } else {
                    self.status
                        .iter()
                        .map(|(k, v)| format!("{k}: {v}"))
                        .collect::<Vec<_>>()
                        .join(", ")
                },
            ),
            ("errors", self.errors.to_string()),
        ];
        let width = rows.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
        let mut out: String = rows
            .iter()
            .map(|(k, v)| format!("{k:<width$}  {v}\n"))
            .collect();
        if let Some(e) = &self.first_error {
            out.push_str(&format!("{:<width$}  {e}\n", "first error"));
        }
        out
    }
}

/// Refuses flag values outside their ranges.
pub fn validate(args: &TrafficArgs) -> Result<(), SimError> {
    let invalid = |flag, reason: &str| {
        Err(SimError::InvalidOption {
            flag,
            reason: reason.to_string(),
        })
    };
    args.world.params()?;
    if !(1..=10_000).contains(&args.stumblers) {
        return invalid("--stumblers", "must be 1 to 10000");
    }
    if args.reports == 0 {
        return invalid("--reports", "must be at least 1");
    }
    if let Some(rate) = args.rate
        && !(rate.is_finite() && rate > 0.0)
    {
        return invalid("--rate", "must be more than 0");
    }
    if !(1..=256).contains(&args.concurrency) {
        return invalid("--concurrency", "must be 1 to 256");
    }
    Ok(())
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// The Unix ms of simulated second 0: `--start-ms`, or now minus the expected
/// simulated span (so the newest reports are about as old as a real upload's).
pub fn start_ms(args: &TrafficArgs) -> i64 {
    args.start_ms.unwrap_or_else(|| {
        let span = Traffic::expected_span_s(args.stumblers, args.reports);
        (now_ms() - (span * 1000.0) as i64) / 1000 * 1000
    })
}

/// Runs `sim traffic`.
pub async fn run_traffic(args: &TrafficArgs) -> Result<TrafficSummary, SimError> {
    validate(args)?;
    let params = args.world.params()?;
    let start = start_ms(args);
    if args.dry_run {
        return dry_run(args, start);
    }
    let url = target::endpoint_url(
        &args.url,
        Endpoint::Geosubmit,
        args.key.as_deref(),
        args.allow_remote,
    )?;

    let client = crate::target::http_client(args.timeout, args.concurrency)?;

    // Generation runs on its own thread, a few uploads ahead of the sender.
    let (tx, mut rx) = mpsc::channel::<Result<Body, SimError>>(8);
    let (stumblers, reports, move_at) = (args.stumblers, args.reports, params.move_at_s);
    let generator = std::thread::spawn(move || {
        let world = World::generate(&params);
        for batch in Traffic::new(&world, stumblers, reports, start) {
            if tx.blocking_send(body(&batch, move_at)).is_err() {
                break;
            }
        }
    });

    let summary = Arc::new(Mutex::new(TrafficSummary {
        url: url.to_string(),
        seed: args.world.seed,
        stumblers: args.stumblers,
        start_ms: start,
        ..TrafficSummary::default()
    }));
    let slots = Arc::new(Semaphore::new(args.concurrency));
    let began = Instant::now();
    let deadline = args.duration.map(|d| began + d);
    let progress = (args.progress || std::io::stderr().is_terminal())
        .then(|| tokio::spawn(progress(Arc::clone(&summary), began)));
    let mut set = JoinSet::new();
    let mut scheduled = 0u64;
    let mut failure = None;
    while let Some(next) = rx.recv().await {
        let b = match next {
            Ok(b) => b,
            Err(e) => {
                failure = Some(e);
                break;
            }
        };
        if let Some(rate) = args.rate {
            let due = began + Duration::from_secs_f64(scheduled as f64 / rate);
            tokio::time::sleep_until(due.into()).await;
        }
        if deadline.is_some_and(|d| Instant::now() >= d) {
            break;
        }
        {
            // Nothing answered after many tries: the server is not there (or
            // refuses everything); stop instead of spinning through the run.
            let s = summary.lock().unwrap_or_else(PoisonError::into_inner);
            if s.errors >= 20 && s.status.is_empty() {
                break;
            }
        }
        scheduled += b.reports;
        let Ok(slot) = Arc::clone(&slots).acquire_owned().await else {
            break;
        };
        summary
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .add(&b);
        let (client, url, summary) = (client.clone(), url.clone(), Arc::clone(&summary));
        set.spawn(async move {
            let outcome = send(&client, &url, b.gzip).await;
            let mut s = summary.lock().unwrap_or_else(PoisonError::into_inner);
            match outcome {
                Ok(status) => {
                    *s.status.entry(status.to_string()).or_default() += 1;
                    if status == 200 {
                        s.reports_accepted += b.reports;
                    }
                }
                Err(e) => {
                    s.errors += 1;
                    if s.first_error.is_none() {
                        s.first_error = Some(e);
                    }
                }
            }
            drop(slot);
        });
        while set.try_join_next().is_some() {}
    }
    drop(rx);
    while set.join_next().await.is_some() {}
    let _ = generator.join();
    if let Some(p) = progress {
        p.abort();
    }
    if let Some(e) = failure {
        return Err(e);
    }
    let mut s = summary
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .clone();
    s.elapsed_s = began.elapsed().as_secs_f64();
    s.reports_per_s = if s.elapsed_s > 0.0 {
        s.reports_accepted as f64 / s.elapsed_s
    } else {
        0.0
    };
    if s.uploads > 0 {
        s.upload_bytes_mean /= s.uploads as f64;
    }
    Ok(s)
}

async fn send(client: &Client, url: &Url, gzip: Vec<u8>) -> Result<u16, String> {
    let response = client
        .post(url.clone())
        .header(CONTENT_TYPE, "application/json")
        .header(CONTENT_ENCODING, "gzip")
        .body(gzip)
        .send()
        .await
        .map_err(|e| crate::error_chain(&e))?;
    let status = response.status().as_u16();
    response.bytes().await.map_err(|e| crate::error_chain(&e))?;
    Ok(status)
}

async fn progress(summary: Arc<Mutex<TrafficSummary>>, began: Instant) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.tick().await;
    loop {
        tick.tick().await;
        let (sent, accepted, errors) = {
            let s = summary.lock().unwrap_or_else(PoisonError::into_inner);
            (s.reports_sent, s.reports_accepted, s.errors)
        };
        eprintln!(
            "[{:>6.1}s] {sent} reports sent, {accepted} accepted, {errors} errors",
            began.elapsed().as_secs_f64()
        );
    }
}

/// `--dry-run`: one JSON line per upload on stdout, nothing sent.
fn dry_run(args: &TrafficArgs, start: i64) -> Result<TrafficSummary, SimError> {
    let params = args.world.params()?;
    let world = World::generate(&params);
    let mut summary = TrafficSummary {
        url: "dry-run".to_string(),
        seed: args.world.seed,
        stumblers: args.stumblers,
        start_ms: start,
        ..TrafficSummary::default()
    };
    let mut out = std::io::stdout().lock();
    for batch in Traffic::new(&world, args.stumblers, args.reports, start) {
        let b = body(&batch, params.move_at_s)?;
        summary.add(&b);
        out.write_all(&b.json)
            .and_then(|()| out.write_all(b"\n"))
            .map_err(SimError::Output)?;
    }
    out.flush().map_err(SimError::Output)?;
    if summary.uploads > 0 {
        summary.upload_bytes_mean /= summary.uploads as f64;
    }
    Ok(summary)
}
