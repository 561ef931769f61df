//! `ichnaea sim`: tools that play the clients of an ichnaea/MLS-compatible server.
//!
//! Today that is `sim load`, a bounded load generator for `/v2/geosubmit` and
//! `/v1/geolocate` that measures what the server sustains (throughput, status codes,
//! latency percentiles). It exists so capacity claims about the service are numbers
//! anyone can reproduce with one command, against any server speaking the API.
//!
//! Load only ever goes to loopback addresses unless `--allow-remote` is given (see
//! [`target`]), and every run stops by itself (`--duration`, `--requests`).

pub mod bodies;
pub mod duration;
pub mod load;
pub mod summary;
pub mod target;

use std::time::Duration;

use clap::{ArgAction, Args, Subcommand, ValueEnum};

pub use load::run_load;
pub use summary::Summary;

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
}

/// `ichnaea sim …`: the simulation subcommands, embedded in the binary's CLI.
#[derive(Debug, Clone, Subcommand)]
pub enum SimCommand {
    /// Send bounded load to /v2/geosubmit or /v1/geolocate and report throughput,
    /// status codes and latency percentiles.
    ///
    /// Only loopback targets (127.0.0.0/8, ::1, localhost) are accepted unless
    /// --allow-remote is given: load against any other address is forbidden in this
    /// workplace, and must never be aimed at a server you do not run yourself.
    /// Redirects are not followed and proxies are ignored, so requests go to the
    /// address given and nowhere else. A run always ends: at --duration (default 30 s)
    /// or after --requests requests, whichever comes first.
    Load(LoadArgs),
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
    /// is answered. With --rate: the most requests in flight at once. Also the size
    /// of the keep-alive connection pool.
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
    /// Print the summary as JSON instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Print a progress line every second on stderr even when it is not a terminal.
    #[arg(long)]
    pub progress: bool,
    /// Allow a target that is not a loopback address. Only for servers you run
    /// yourself and may load; forbidden in this workplace.
    #[arg(long)]
    pub allow_remote: bool,
}

/// Runs one `ichnaea sim` command, printing its summary on stdout.
pub async fn run(command: SimCommand) -> Result<(), SimError> {
    match command {
        SimCommand::Load(args) => {
            let summary = run_load(&args).await?;
            summary.print(args.json)
        }
    }
}
