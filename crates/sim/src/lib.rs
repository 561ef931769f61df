//! `ichnaea sim`: tools that play the clients of an ichnaea/MLS-compatible server.
//!
//! `sim load` is a bounded load generator for `/v2/geosubmit` and `/v1/geolocate`
//! that measures what the server sustains (throughput, status codes, latency
//! percentiles). `sim world`, `sim traffic` and `sim accuracy` measure what it
//! learns: a synthetic city with ground truth ([`world`]), stumblers submitting
//! what they see along its streets ([`track`], [`traffic`]), and the positioning
//! error per data type against the truth ([`accuracy`]). They exist so capacity
//! and accuracy claims about the service are numbers anyone can reproduce with
//! one command, against any server speaking the API.
//!
//! Requests only ever go to loopback addresses unless `--allow-remote` is given
//! (see [`target`]), and every run stops by itself.

pub mod accuracy;
pub mod bodies;
mod conn;
pub mod duration;
pub mod geo;
pub mod load;
pub mod radio;
pub mod rng;
pub mod scan;
pub mod scenario;
pub mod streets;
pub mod summary;
pub mod target;
pub mod track;
pub mod traffic;
pub mod wire;
pub mod world;

use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use clap::{ArgAction, Args, Subcommand, ValueEnum};

pub use accuracy::run_accuracy;
pub use load::run_load;
pub use summary::Summary;
pub use traffic::run_traffic;
pub use world::{World, WorldParams};

/// Everything that can stop a simulation before or while it runs; the binary turns
/// it into a message and a non-zero exit status.
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    /// `--url` is not an absolute `http://` URL.
    #[error("invalid --url {url:?}: {reason}")]
    InvalidUrl {
        /// The URL as given.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The target is not a loopback address and `--allow-remote` was not given.
    #[error(
        "refusing to send load to {host:?}: only loopback targets (127.0.0.0/8, ::1, localhost) \
         are allowed without --allow-remote"
    )]
    RemoteTarget {
        /// The host part of the URL.
        host: String,
    },
    /// A flag has a value outside its range.
    #[error("invalid {flag}: {reason}")]
    InvalidOption {
        /// The flag, e.g. `--concurrency`.
        flag: &'static str,
        /// Why the value is refused.
        reason: String,
    },
    /// The HTTP client could not be set up.
    #[error("cannot build the HTTP client: {0}")]
    Client(#[source] reqwest::Error),
    /// The load generator's thread or async runtime could not be started, or
    /// ended without a result.
    #[error("cannot run the load generator: {0}")]
    Runtime(#[source] std::io::Error),
    /// The latency histogram could not be created.
    #[error("cannot create the latency histogram: {0}")]
    Histogram(#[source] hdrhistogram::CreationError),
    /// A request body could not be serialised.
    #[error("cannot serialise a request body: {0}")]
    Serialize(#[from] serde_json::Error),
    /// A request body could not be gzip-compressed.
    #[error("cannot compress a request body: {0}")]
    Compress(#[source] std::io::Error),
    /// The summary could not be written to stdout.
    #[error("cannot write the summary: {0}")]
    Output(#[source] std::io::Error),
    /// The run ended without a single success (every request failed): the
    /// summary was printed, and the command exits non-zero.
    #[error("sim {command}: nothing succeeded: {cause}")]
    NothingSucceeded {
        /// `load`, `traffic` or `accuracy`.
        command: &'static str,
        /// The first failure with its causes.
        cause: String,
    },
    /// `--out` could not be written.
    #[error("cannot write {path}: {source}")]
    WriteFile {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

/// An error with its causes, `a: b: c` (reqwest's own message is only "error
/// sending request"; the cause, e.g. "Connection refused", is in the chain).
pub(crate) fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let next = s.to_string();
        if !text.ends_with(&next) {
            text.push_str(": ");
            text.push_str(&next);
        }
        source = s.source();
    }
    text
}

/// `ichnaea sim …`: the simulation subcommands, embedded in the binary's CLI.
#[derive(Debug, Clone, Subcommand)]
pub enum SimCommand {
    /// Send bounded load to /v2/geosubmit or /v1/geolocate and report throughput,
    /// status codes and latency percentiles.
    ///
    /// Only loopback targets (127.0.0.0/8, ::1, localhost) are accepted unless
    /// --allow-remote is given, and load must never be aimed at a server you do
    /// not run yourself.
    /// Redirects are not followed and proxies are ignored, so requests go to the
    /// address given and nowhere else. A run always ends: at --duration (default 30 s)
    /// or after --requests requests, whichever comes first.
    Load(LoadArgs),
    /// Generate the synthetic city (streets, Wi-Fi access points, cells, Bluetooth
    /// beacons, access points that move) as JSON; the same seed gives the same bytes.
    World(WorldCmdArgs),
    /// Stumblers walking, cycling and driving the streets of the world, uploading
    /// gzip /v2/geosubmit batches of 50-100 reports at a target rate.
    ///
    /// Loopback targets only unless --allow-remote. The world is regenerated from
    /// --seed (and the other world flags), so no file is needed.
    Traffic(TrafficArgs),
    /// Query /v1/geolocate at true positions of the world, per data type (Wi-Fi,
    /// cell, Bluetooth, mixed), and report the share answered, the error
    /// percentiles and the calibration of the returned accuracy.
    ///
    /// Run it after `sim traffic` with the same world flags and `ichnaea drain`.
    Accuracy(AccuracyArgs),
}

/// The flags that define the world; `traffic` and `accuracy` take the same ones
/// and regenerate the same world in memory.
#[derive(Debug, Clone, Args)]
pub struct WorldArgs {
    /// Seed of the world (and of the traffic and queries made in it).
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Side of the square city, km (0.5 to 40).
    #[arg(long, default_value_t = 8.0)]
    pub size_km: f64,
    /// Latitude of the centre (default: Berlin).
    #[arg(long, default_value_t = 52.52, allow_negative_numbers = true)]
    pub lat: f64,
    /// Longitude of the centre.
    #[arg(long, default_value_t = 13.405, allow_negative_numbers = true)]
    pub lon: f64,
    /// Mobile country code of the three operators (MNC 1, 2, 3).
    #[arg(long, default_value_t = 262)]
    pub mcc: u16,
    /// Share of Wi-Fi access points that move several km during the simulation.
    #[arg(long, default_value_t = 0.02)]
    pub move_share: f64,
    /// Simulated time at which they move (e.g. 30m, 1800s).
    #[arg(long, default_value = "30m", value_parser = duration::parse)]
    pub move_at: Duration,
    /// Scenario file (TOML): densities, radio models, GNSS noise, stumbler mix;
    /// its `[city]` and `[moves]` members override the flags above. See
    /// `crates/sim/scenarios/` for examples.
    #[arg(long)]
    pub scenario: Option<PathBuf>,
}

impl WorldArgs {
    /// The checked world parameters.
    pub fn params(&self) -> Result<WorldParams, SimError> {
        let invalid = |flag, reason: &str| {
            Err(SimError::InvalidOption {
                flag,
                reason: reason.to_string(),
            })
        };
        let file = match &self.scenario {
            Some(path) => scenario::ScenarioFile::read(path)?,
            None => scenario::ScenarioFile::default(),
        };
        let scenario = file.scenario()?;
        let size_km = file.city.size_km.unwrap_or(self.size_km);
        let lat = file.city.lat.unwrap_or(self.lat);
        let lon = file.city.lon.unwrap_or(self.lon);
        let mcc = file.city.mcc.unwrap_or(self.mcc);
        let move_share = file.moves.share.unwrap_or(self.move_share);
        let move_at_s = file.moves.at_s.unwrap_or(self.move_at.as_secs_f64());
        if !(move_at_s.is_finite() && move_at_s >= 0.0) {
            return invalid("--move-at", "must be 0 or more seconds");
        }
        if !(size_km.is_finite() && (0.5..=40.0).contains(&size_km)) {
            return invalid("--size-km", "must be 0.5 to 40");
        }
        if !(lat.is_finite() && (-80.0..=80.0).contains(&lat)) {
            return invalid("--lat", "must be -80 to 80");
        }
        if !(lon.is_finite() && (-180.0..=180.0).contains(&lon)) {
            return invalid("--lon", "must be -180 to 180");
        }
        if !(1..=999).contains(&mcc) {
            return invalid("--mcc", "must be 1 to 999");
        }
        if !(move_share.is_finite() && (0.0..=0.5).contains(&move_share)) {
            return invalid("--move-share", "must be 0 to 0.5");
        }
        Ok(WorldParams {
            seed: self.seed,
            size_km,
            lat,
            lon,
            mcc,
            move_share,
            move_at_s,
            scenario,
        })
    }
}

/// The flags of `ichnaea sim world`.
#[derive(Debug, Clone, Args)]
pub struct WorldCmdArgs {
    /// The world.
    #[command(flatten)]
    pub world: WorldArgs,
    /// Write the JSON to this file instead of stdout.
    #[arg(long)]
    pub out: Option<PathBuf>,
}

/// The flags of `ichnaea sim traffic`.
#[derive(Debug, Clone, Args)]
pub struct TrafficArgs {
    /// The world.
    #[command(flatten)]
    pub world: WorldArgs,
    /// Base URL of the server (http only); /v2/geosubmit is appended.
    #[arg(long, default_value = "http://127.0.0.1:8000")]
    pub url: String,
    /// API key sent as ?key=K (none by default).
    #[arg(long)]
    pub key: Option<String>,
    /// Stumblers moving through the city at the same time.
    #[arg(long, default_value_t = 40)]
    pub stumblers: usize,
    /// Reports to make in all.
    #[arg(long, default_value_t = 50_000)]
    pub reports: u64,
    /// Target rate, reports per second (uploads are paced to it); unset: as
    /// fast as the server answers.
    #[arg(long)]
    pub rate: Option<f64>,
    /// Stop sending after this long even if reports remain.
    #[arg(long, value_parser = duration::parse)]
    pub duration: Option<Duration>,
    /// Uploads in flight at once.
    #[arg(long, default_value_t = 4)]
    pub concurrency: usize,
    /// Unix time in ms of simulated second 0 (default: now minus the expected
    /// simulated span). Fixing it makes the bodies byte-identical across runs.
    #[arg(long)]
    pub start_ms: Option<i64>,
    /// Write the uncompressed bodies as JSON lines to stdout instead of sending
    /// them (the summary goes to stderr).
    #[arg(long)]
    pub dry_run: bool,
    /// Give up on an upload after this long.
    #[arg(long, default_value = "120s", value_parser = duration::parse)]
    pub timeout: Duration,
    /// Print the summary as JSON.
    #[arg(long)]
    pub json: bool,
    /// Print a progress line every second on stderr even when it is not a terminal.
    #[arg(long)]
    pub progress: bool,
    /// Allow a target that is not a loopback address (servers you run yourself only).
    #[arg(long)]
    pub allow_remote: bool,
}

/// The flags of `ichnaea sim accuracy`.
#[derive(Debug, Clone, Args)]
pub struct AccuracyArgs {
    /// The world.
    #[command(flatten)]
    pub world: WorldArgs,
    /// Base URL of the server (http only); /v1/geolocate is appended.
    #[arg(long, default_value = "http://127.0.0.1:8000")]
    pub url: String,
    /// API key sent as ?key=K (the key needs allow_locate).
    #[arg(long)]
    pub key: Option<String>,
    /// True positions to probe (four queries each at most).
    #[arg(long, default_value_t = 1000)]
    pub positions: usize,
    /// Queries in flight at once.
    #[arg(long, default_value_t = 8)]
    pub concurrency: usize,
    /// Give up on a query after this long (counted as failed).
    #[arg(long, default_value = "30s", value_parser = duration::parse)]
    pub timeout: Duration,
    /// Print the report as JSON instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Allow a target that is not a loopback address (servers you run yourself only).
    #[arg(long)]
    pub allow_remote: bool,
}

/// Which API endpoint the load goes to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Endpoint {
    /// `POST /v2/geosubmit`: batches of stumbler reports.
    Geosubmit,
    /// `POST /v1/geolocate`: one Wi-Fi based position query per request.
    Geolocate,
}

impl Endpoint {
    /// The path of the endpoint on the server.
    pub fn path(self) -> &'static str {
        match self {
            Endpoint::Geosubmit => "/v2/geosubmit",
            Endpoint::Geolocate => "/v1/geolocate",
        }
    }
}

/// The flags of `ichnaea sim load`.
#[derive(Debug, Clone, Args)]
pub struct LoadArgs {
    /// Base URL of the server (http only); the endpoint path is appended.
    #[arg(long, default_value = "http://127.0.0.1:8000")]
    pub url: String,
    /// Endpoint to load.
    #[arg(long, value_enum, default_value_t = Endpoint::Geosubmit)]
    pub endpoint: Endpoint,
    /// API key sent as ?key=K (none by default: anonymous requests).
    #[arg(long)]
    pub key: Option<String>,
    /// Closed loop: workers, each sending its next request when the previous one
    /// is answered. With --rate: the most requests in flight at once. Each worker
    /// (in-flight slot) has its own keep-alive connection, opened on first use.
    #[arg(long, default_value_t = 32)]
    pub concurrency: usize,
    /// Open loop: start this many requests per second whatever the answers;
    /// latency is then measured from each request's scheduled start.
    #[arg(long)]
    pub rate: Option<f64>,
    /// Stop after this long (e.g. 30s, 500ms, 2m).
    #[arg(long, default_value = "30s", value_parser = duration::parse)]
    pub duration: Duration,
    /// Stop after this many requests (whichever of --duration and --requests
    /// comes first).
    #[arg(long)]
    pub requests: Option<u64>,
    /// geosubmit: reports per request (NeoStumbler sends up to 950).
    #[arg(long, default_value_t = 50)]
    pub reports_per_request: usize,
    /// Send bodies gzip-compressed with Content-Encoding: gzip (true/false).
    #[arg(long, default_value_t = true, action = ArgAction::Set)]
    pub gzip: bool,
    /// Seed of the generated bodies: the same seed gives the same bodies.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// geolocate: seed of the pool of MAC addresses the queries draw from.
    #[arg(long, default_value_t = 1)]
    pub mac_pool_seed: u64,
    /// Distinct bodies generated up front and sent in turn.
    #[arg(long, default_value_t = 64)]
    pub bodies: usize,
    /// Give up on a request after this long (counted as a timeout error).
    #[arg(long, default_value = "30s", value_parser = duration::parse)]
    pub timeout: Duration,
    /// Threads of the load generator's own async runtime. One thread drives all
    /// connections at the least CPU per request, leaving the rest of the machine
    /// to the server being measured; raise it when one client thread saturates.
    /// With --rate, the requests are paced by a task on this same runtime,
    /// sleeping on a timerfd.
    #[arg(long, default_value_t = 1)]
    pub threads: usize,
    /// Print the summary as JSON instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Print a progress line every second on stderr even when it is not a terminal.
    #[arg(long)]
    pub progress: bool,
    /// Allow a target that is not a loopback address. Only for servers you run
    /// yourself and may load.
    #[arg(long)]
    pub allow_remote: bool,
}

/// Runs one `ichnaea sim` command, printing its summary on stdout.
pub async fn run(command: SimCommand) -> Result<(), SimError> {
    match command {
        SimCommand::Load(args) => {
            let summary = run_load(&args).await?;
            summary.print(args.json)?;
            if summary.requests > 0 && summary.status.is_empty() {
                return Err(SimError::NothingSucceeded {
                    command: "load",
                    cause: summary
                        .first_error
                        .unwrap_or_else(|| "no request was answered".to_string()),
                });
            }
            Ok(())
        }
        SimCommand::World(args) => write_world(&args),
        SimCommand::Traffic(args) => {
            let summary = run_traffic(&args).await?;
            let text = if args.json {
                let mut t = serde_json::to_string_pretty(&summary)?;
                t.push('\n');
                t
            } else {
                summary.table()
            };
            if args.dry_run {
                let mut err = std::io::stderr().lock();
                err.write_all(text.as_bytes()).map_err(SimError::Output)?;
            } else {
                let mut out = std::io::stdout().lock();
                out.write_all(text.as_bytes())
                    .and_then(|()| out.flush())
                    .map_err(SimError::Output)?;
            }
            if !args.dry_run && summary.uploads > 0 && summary.reports_accepted == 0 {
                let cause = summary.first_error.clone().unwrap_or_else(|| {
                    format!("no upload was accepted (status {:?})", summary.status)
                });
                return Err(SimError::NothingSucceeded {
                    command: "traffic",
                    cause,
                });
            }
            Ok(())
        }
        SimCommand::Accuracy(args) => {
            let report = run_accuracy(&args).await?;
            report.print(args.json)?;
            if report.nothing_succeeded() {
                return Err(SimError::NothingSucceeded {
                    command: "accuracy",
                    cause: report
                        .first_failure
                        .unwrap_or_else(|| "every query failed".to_string()),
                });
            }
            Ok(())
        }
    }
}

/// `sim world`: the JSON on stdout or in `--out`, the counts on stderr.
fn write_world(args: &WorldCmdArgs) -> Result<(), SimError> {
    let world = World::generate(&args.world.params()?);
    let json = world.to_json()?;
    match &args.out {
        Some(path) => std::fs::write(path, &json).map_err(|source| SimError::WriteFile {
            path: path.clone(),
            source,
        })?,
        None => {
            let mut out = std::io::stdout().lock();
            out.write_all(&json)
                .and_then(|()| out.flush())
                .map_err(SimError::Output)?;
        }
    }
    let s = world.summary();
    eprintln!(
        "world: {} km of streets, {} Wi-Fi access points ({} moving, {} hidden or _nomap), \
         cells gsm {} wcdma {} lte {} nr {}, {} Bluetooth beacons",
        s.street_km,
        s.wifi,
        s.wifi_moving,
        s.wifi_not_submitted,
        s.cells[0],
        s.cells[1],
        s.cells[2],
        s.cells[3],
        s.blue
    );
    Ok(())
}
