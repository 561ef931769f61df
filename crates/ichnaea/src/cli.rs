//! The command line (`clap`): every subcommand and flag of `ichnaea`.

use std::path::PathBuf;
use std::str::FromStr;

use clap::{Args, Parser, Subcommand, ValueEnum};
use ichnaea_core::export::{parse_sources, split_set};
use ichnaea_core::{ApiKeyPatch, ExportConfigPatch, ExportSchema, ReportSource};

/// ichnaea: a crowd-sourced geolocation service.
#[derive(Debug, Parser)]
#[command(name = "ichnaea", version, about, propagate_version = true)]
pub struct Cli {
    /// TOML configuration file; ICHNAEA_* environment variables override it.
    #[arg(long, global = true, env = "ICHNAEA_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the service (migrates the database first).
    Serve {
        /// Roles of this process, comma-separated.
        #[arg(long, value_delimiter = ',', default_value = "web,worker,scheduler")]
        roles: Vec<Role>,
    },
    /// Apply pending database migrations and exit.
    Migrate,
    /// Run all pipeline work until every queue is empty, then exit (safe while
    /// `serve` runs against the same database and queues).
    Drain,
    /// Import stations from a file, gzip or plain: a public cell export
    /// (MLS/OpenCellID layout) or a file written by `ichnaea dump` (any family).
    /// Stored stations are replaced only by newer rows; the affected cell areas
    /// and the region statistics are recomputed.
    Import {
        /// The `.csv.gz` or `.csv` file.
        file: PathBuf,
        /// Family of a Wi-Fi/Bluetooth dump (`wifi` or `blue`): both share one
        /// layout, so the file cannot say. Cell files are recognised by their header.
        #[arg(long, value_parser = ["wifi", "blue", "cell"])]
        datatype: Option<String>,
    },
    /// Write the stations of one family to a gzip CSV file (refuses existing files).
    Dump {
        /// `blue`, `cell` or `wifi`.
        #[arg(long)]
        datatype: String,
        /// Output file (`.csv.gz`).
        #[arg(long)]
        filename: PathBuf,
        /// Only stations within --radius metres of --lat/--lon.
        #[arg(long, requires_all = ["lon", "radius"], allow_negative_numbers = true)]
        lat: Option<f64>,
        /// Longitude of the centre.
        #[arg(long, requires_all = ["lat", "radius"], allow_negative_numbers = true)]
        lon: Option<f64>,
        /// Radius in metres.
        #[arg(long, requires_all = ["lat", "lon"])]
        radius: Option<f64>,
    },
    /// Benchmark aid: write Wi-Fi stations into the configured database — the
    /// `sim load --endpoint geolocate` MAC pool in one cluster, plus random ones.
    SeedStations {
        /// Total stations to write.
        #[arg(long, default_value_t = 1_000_000)]
        count: usize,
        /// Seed of the MAC pool (as `sim load --mac-pool-seed`).
        #[arg(long, default_value_t = 1)]
        mac_pool_seed: u64,
    },
    /// Benchmark aid: write about --count random data-map grid rows (clustered
    /// around random cities, last seen up to a year ago).
    SeedDatamap {
        /// Grid rows to generate.
        #[arg(long, default_value_t = 1_000_000)]
        count: usize,
        /// Random seed.
        #[arg(long, default_value_t = 1)]
        seed: u64,
    },
    /// Make the coverage-map tiles from the datamap tables (--create) and sync
    /// them to the tile bucket `tiles_url` (--upload); without either flag,
    /// print this help.
    Datamap(crate::datamap::DatamapArgs),
    /// Manage API keys.
    #[command(subcommand)]
    Apikey(ApikeyCommand),
    /// Manage export targets.
    #[command(subcommand, name = "export-config")]
    ExportConfig(ExportCommand),
    /// Inspect the queues; purge the queues of deleted export targets.
    #[command(subcommand)]
    Queues(QueuesCommand),
    /// Simulate clients: bounded load against an ichnaea/MLS API (loopback only
    /// unless --allow-remote).
    #[command(subcommand)]
    Sim(ichnaea_sim::SimCommand),
    /// Print a shell completion script (e.g. `ichnaea completions bash >
    /// /etc/bash_completion.d/ichnaea`).
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
    /// Print the manual page (roff) on stdout, or write one page per command
    /// to --dir (`ichnaea.1`, `ichnaea-serve.1`, …).
    Man {
        /// Directory for all pages.
        #[arg(long, value_name = "DIR")]
        dir: Option<PathBuf>,
    },
}

/// What one `serve` process does.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Role {
    /// Answer HTTP.
    Web,
    /// Drain the queues.
    Worker,
    /// Run the periodic tasks.
    Scheduler,
}

/// `ichnaea apikey …`
#[derive(Debug, Subcommand)]
pub enum ApikeyCommand {
    /// Create a key: unlimited requests, locate and region allowed, no fallback,
    /// every request sampled in, unless flags say otherwise.
    Create {
        /// The key text (4–40 characters of A-Z, a-z, 0-9 and -).
        key: String,
        #[command(flatten)]
        fields: ApiKeyFlags,
        #[command(flatten)]
        output: Output,
    },
    /// List every key.
    List {
        #[command(flatten)]
        output: Output,
    },
    /// Show one key.
    Show {
        /// The key text.
        key: String,
        #[command(flatten)]
        output: Output,
    },
    /// Change columns of a key; columns without a flag stay as they are.
    Update {
        /// The key text.
        key: String,
        #[command(flatten)]
        fields: ApiKeyFlags,
        #[command(flatten)]
        output: Output,
    },
    /// Delete a key.
    Delete {
        /// The key text.
        key: String,
    },
}

/// `ichnaea export-config …`
#[derive(Debug, Subcommand)]
pub enum ExportCommand {
    /// Create an export target.
    Create {
        /// Target name (1–40 characters of A-Z, a-z, 0-9, -, _ and .).
        name: String,
        /// Exporter: dummy, geosubmit, internal or s3.
        #[arg(long, value_parser = parse_schema)]
        schema: ExportSchema,
        #[command(flatten)]
        fields: ExportFlags,
        #[command(flatten)]
        output: Output,
    },
    /// List every export target.
    List {
        #[command(flatten)]
        output: Output,
    },
    /// Show one export target.
    Show {
        /// Target name.
        name: String,
        #[command(flatten)]
        output: Output,
    },
    /// Change columns of a target; columns without a flag stay as they are.
    Update {
        /// Target name.
        name: String,
        /// Exporter: dummy, geosubmit, internal or s3.
        #[arg(long, value_parser = parse_schema)]
        schema: Option<ExportSchema>,
        #[command(flatten)]
        fields: ExportFlags,
        #[command(flatten)]
        output: Output,
    },
    /// Delete an export target. Refused while its queue holds items, unless
    /// `--purge` confirms that they are to be dropped with it.
    Delete {
        /// Target name.
        name: String,
        /// Also delete the target's queued items (they are never exported).
        #[arg(long)]
        purge: bool,
    },
}

/// `ichnaea queues …`: inspect the pipeline's queues and remove orphaned ones.
#[derive(Debug, Subcommand)]
pub enum QueuesCommand {
    /// List every queue that holds items, with its length, the age of its oldest
    /// entry, and whether it is orphaned (an export queue whose target was deleted).
    List {
        #[command(flatten)]
        output: Output,
    },
    /// Delete the items of every orphaned export queue.
    PurgeOrphaned,
}

/// Output format flag.
#[derive(Debug, Args)]
pub struct Output {
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// A flag value that may be `null` (or empty) to store SQL NULL.
#[derive(Clone, Debug, PartialEq)]
pub struct Nullable<T>(pub Option<T>);

fn nullable<T: FromStr>(text: &str) -> Result<Nullable<T>, String>
where
    T::Err: std::fmt::Display,
{
    if text.is_empty() || text == "null" {
        return Ok(Nullable(None));
    }
    text.parse()
        .map(|v| Nullable(Some(v)))
        .map_err(|e: T::Err| e.to_string())
}

/// `true`, `false`, or `null` / empty for NULL: the values the admin API's
/// JSON takes, nothing else.
fn nullable_bool(text: &str) -> Result<Nullable<bool>, String> {
    match text {
        "" | "null" => Ok(Nullable(None)),
        "true" => Ok(Nullable(Some(true))),
        "false" => Ok(Nullable(Some(false))),
        other => Err(format!("{other:?} is not true or false")),
    }
}

fn nullable_text(text: &str) -> Result<Nullable<String>, String> {
    Ok(Nullable(
        (!text.is_empty() && text != "null").then(|| text.to_string()),
    ))
}

fn parse_schema(text: &str) -> Result<ExportSchema, String> {
    match ExportSchema::parse(text) {
        ExportSchema::Unknown(s) => Err(format!(
            "{s:?} is not one of dummy, geosubmit, internal, s3"
        )),
        known => Ok(known),
    }
}

fn parse_skip_keys(text: &str) -> Result<Nullable<Vec<String>>, String> {
    Ok(Nullable(
        (!text.is_empty() && text != "null").then(|| split_set(text)),
    ))
}

fn parse_skip_sources(text: &str) -> Result<Nullable<Vec<ReportSource>>, String> {
    if text.is_empty() || text == "null" {
        return Ok(Nullable(None));
    }
    parse_sources("skip_sources", text)
        .map(|s| Nullable(Some(s)))
        .map_err(|e| e.message)
}

/// One flag per `api_key` column; `null` or an empty value stores NULL.
#[derive(Debug, Default, Args)]
pub struct ApiKeyFlags {
    /// Daily requests per endpoint; 0 or null = unlimited.
    #[arg(long, allow_negative_numbers = true, value_parser = nullable::<i64>)]
    pub maxreq: Option<Nullable<i64>>,
    /// May use /v1/geolocate (true/false).
    #[arg(long, value_parser = nullable_bool)]
    pub allow_locate: Option<Nullable<bool>>,
    /// May use /v1/country (true/false).
    #[arg(long, value_parser = nullable_bool)]
    pub allow_region: Option<Nullable<bool>>,
    /// May use the external fallback provider (true/false).
    #[arg(long, value_parser = nullable_bool)]
    pub allow_fallback: Option<Nullable<bool>>,
    /// Percentage (0–100) of good locate queries kept as reports.
    #[arg(long, allow_negative_numbers = true, value_parser = nullable::<i16>)]
    pub store_sample_locate: Option<Nullable<i16>>,
    /// Percentage (0–100) of submit requests kept.
    #[arg(long, allow_negative_numbers = true, value_parser = nullable::<i16>)]
    pub store_sample_submit: Option<Nullable<i16>>,
    /// Fallback provider name (shares its rate limit).
    #[arg(long, value_parser = nullable_text)]
    pub fallback_name: Option<Nullable<String>>,
    /// Fallback protocol: ichnaea/v1, combain/v1, googlemaps/v1 or unwiredlabs/v1.
    #[arg(long, value_parser = nullable_text)]
    pub fallback_schema: Option<Nullable<String>>,
    /// Fallback provider URL (http or https).
    #[arg(long, value_parser = nullable_text)]
    pub fallback_url: Option<Nullable<String>>,
    /// Provider calls per interval; 0 = no limit.
    #[arg(long, allow_negative_numbers = true, value_parser = nullable::<i64>)]
    pub fallback_ratelimit: Option<Nullable<i64>>,
    /// Rate-limit interval in seconds.
    #[arg(long, allow_negative_numbers = true, value_parser = nullable::<i64>)]
    pub fallback_ratelimit_interval: Option<Nullable<i64>>,
    /// Seconds to cache provider answers; 0 or null = no caching.
    #[arg(long, allow_negative_numbers = true, value_parser = nullable::<i64>)]
    pub fallback_cache_expire: Option<Nullable<i64>>,
}

impl ApiKeyFlags {
    /// The columns given on the command line.
    pub fn patch(&self) -> ApiKeyPatch {
        fn get<T: Clone>(flag: &Option<Nullable<T>>) -> Option<Option<T>> {
            flag.as_ref().map(|n| n.0.clone())
        }
        ApiKeyPatch {
            maxreq: get(&self.maxreq),
            allow_locate: get(&self.allow_locate),
            allow_region: get(&self.allow_region),
            allow_fallback: get(&self.allow_fallback),
            fallback_name: get(&self.fallback_name),
            fallback_schema: get(&self.fallback_schema),
            fallback_url: get(&self.fallback_url),
            fallback_ratelimit: get(&self.fallback_ratelimit),
            fallback_ratelimit_interval: get(&self.fallback_ratelimit_interval),
            fallback_cache_expire: get(&self.fallback_cache_expire),
            store_sample_locate: get(&self.store_sample_locate),
            store_sample_submit: get(&self.store_sample_submit),
        }
    }
}

/// One flag per `export_config` column.
#[derive(Debug, Default, Args)]
pub struct ExportFlags {
    /// Reports per batch; 0 = everything available.
    #[arg(long, allow_negative_numbers = true)]
    pub batch: Option<i64>,
    /// geosubmit: the POST URL; s3: s3://bucket/template or file:///dir/template.
    #[arg(long, value_parser = nullable_text)]
    pub url: Option<Nullable<String>>,
    /// API keys whose reports are not exported here, comma-separated.
    #[arg(long, value_parser = parse_skip_keys)]
    pub skip_keys: Option<Nullable<Vec<String>>>,
    /// Sources (fixed, gnss, fused, query) not exported here, comma-separated.
    #[arg(long, value_parser = parse_skip_sources)]
    pub skip_sources: Option<Nullable<Vec<ReportSource>>>,
}

impl ExportFlags {
    /// The columns given on the command line.
    pub fn patch(&self, schema: Option<ExportSchema>) -> ExportConfigPatch {
        ExportConfigPatch {
            batch: self.batch,
            schema,
            url: self.url.as_ref().map(|n| n.0.clone()),
            skip_keys: self.skip_keys.as_ref().map(|n| n.0.clone()),
            skip_sources: self.skip_sources.as_ref().map(|n| n.0.clone()),
        }
    }
}
