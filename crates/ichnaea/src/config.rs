//! Configuration: defaults, an optional TOML file, then `ICHNAEA_*` environment
//! variables, each overriding the one before.

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// Log output format.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Text when stderr is a terminal (a person reads it), JSON otherwise (a
    /// log collector does).
    Auto,
    /// One JSON object per line (for log collectors).
    Json,
    /// Human-readable lines.
    Text,
}

impl LogFormat {
    /// `Json` or `Text`: what `Auto` means for this process.
    pub fn resolved(self) -> LogFormat {
        match self {
            LogFormat::Auto if std::io::IsTerminal::is_terminal(&std::io::stderr()) => {
                LogFormat::Text
            }
            LogFormat::Auto => LogFormat::Json,
            other => other,
        }
    }
}

impl FromStr for LogFormat {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "auto" => Ok(LogFormat::Auto),
            "json" => Ok(LogFormat::Json),
            "text" => Ok(LogFormat::Text),
            other => Err(format!("{other:?} is not auto, json or text")),
        }
    }
}

/// The effective configuration of one process.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Directory for the embedded database and exports (`ICHNAEA_DATA_DIR`).
    pub data_dir: PathBuf,
    /// `sqlite://PATH` or `postgres://…`; default `sqlite://<data_dir>/ichnaea.db`.
    pub database_url: Option<String>,
    /// `postgres://…` of a hot standby of `database_url` (as the original's
    /// read-only database URI): the web role's locate reads and statistics
    /// pages read from it while it lags by at most
    /// `database_readonly_max_lag_ms`; unset = every read uses the primary.
    /// Refused with a SQLite `database_url`.
    pub database_readonly_url: Option<String>,
    /// Largest replica lag, in milliseconds, at which reads still use it.
    pub database_readonly_max_lag_ms: u64,
    /// Milliseconds between two checks of the replica's health and lag.
    pub database_readonly_check_ms: u64,
    /// Replica connections per process.
    pub database_readonly_max_connections: u32,
    /// Redis for queues, counters and caches (cluster mode); unset = embedded.
    pub redis_url: Option<String>,
    /// Prefix of every Redis key the deployment uses: queues, counters, rate
    /// limits, caches and locks (several deployments can share a Redis); the
    /// counters keep the spec's key names after it.
    pub redis_prefix: String,
    /// Start even when Redis cannot lose nothing (no AOF, `appendfsync no`, an
    /// evicting `maxmemory-policy`) or its settings cannot be read: accepted
    /// reports may then be lost when Redis restarts or runs out of memory.
    pub redis_allow_volatile: bool,
    /// Seconds a leased pipeline batch stays invisible before it is handed out
    /// again (a worker that died mid-batch loses nothing; it is re-delivered).
    pub queue_visibility: u64,
    /// Address the web role listens on.
    pub listen: String,
    /// Most connections the web role keeps open; at the limit the oldest
    /// connection not serving a request is closed for a new one (0 = no limit).
    pub max_connections: usize,
    /// Seconds a request body may pause between parts; also the grace period
    /// before `body_min_rate` applies.
    pub body_idle_timeout: u64,
    /// Slowest average rate in bytes per second a request body may arrive at
    /// once `body_idle_timeout` has passed (0 = no minimum).
    pub body_min_rate: u64,
    /// Address of the Prometheus metrics listener (`GET /metrics`), for every
    /// role; empty or `off` = no metrics listener.
    pub metrics_listen: String,
    /// Addresses and CIDR networks of reverse proxies whose `X-Forwarded-For`
    /// is believed; a request from any other peer is located at the peer's
    /// address. Default: loopback only.
    pub trusted_proxies: Vec<String>,
    /// Seconds a client may take to send a request head (from its first byte,
    /// or from the previous answer on a keep-alive connection) before the web
    /// role closes the connection; 0 = no limit.
    pub header_read_timeout: u64,
    /// MaxMind GeoIP2/GeoLite2 City or Country database; unset = no GeoIP source.
    pub geoip_path: Option<PathBuf>,
    /// Bearer token enabling the `/admin/` API; unset = no admin API.
    pub admin_token: Option<String>,
    /// Base of relative `file://dir` export URLs (absolute ones are used as
    /// written); default `<data_dir>/exports`.
    pub exports_dir: Option<PathBuf>,
    /// Directory of the public cell export (`file:///dir` or `s3://bucket/prefix`);
    /// default `<exports_dir>/export`; `off` disables it.
    pub cell_export_url: Option<String>,
    /// Tile bucket of `ichnaea datamap --upload` (`file:///dir` or
    /// `s3://bucket/prefix`; tiles go under `tiles/`); default
    /// `file://<data_dir>/datamap`.
    pub tiles_url: Option<String>,
    /// Seconds an API key lookup is cached per process.
    pub api_key_cache_ttl: u64,
    /// Most items `update_incoming` may hold before submissions get 503.
    pub incoming_queue_max: u64,
    /// Largest request body accepted on the wire, in bytes.
    pub max_body_bytes: usize,
    /// Largest request body after gunzip, in bytes (bounds gzip bombs).
    pub max_decoded_bytes: usize,
    /// Database connections per process.
    pub db_max_connections: u32,
    /// Embedded mode: milliseconds a locate request's station reads may take,
    /// lock waits included, before it falls back (0: read inline on the
    /// runtime thread, ~12 µs CPU cheaper per lookup set but unbounded).
    pub locate_read_timeout_ms: u64,
    /// `auto` (text on a terminal, JSON otherwise), `json` or `text`.
    pub log_format: LogFormat,
    /// A tracing filter, e.g. `info` or `ichnaea=debug,info`.
    pub log_level: String,
    /// One `info` line per request (method, route, status, duration, the key's
    /// metric label; never the IP, a raw key or a body).
    pub access_log: bool,
    /// Locate model of `/v1/geolocate`: `calibrated` (default: fused fix,
    /// circles of a stated confidence) or `classic` (the original's answers).
    pub locate_model: String,
    /// Seconds to wait for in-flight work at shutdown.
    pub shutdown_timeout: u64,
    /// Backlog (queued reports and observations) the rate controller steers
    /// towards by lowering the locate sample rate; unset = controller off.
    pub rate_control_target: Option<f64>,
    /// Seconds between runs of periodic tasks, by task name (e.g.
    /// `update_statcounter = 600`); `ICHNAEA_INTERVAL_<TASK>` overrides one.
    pub intervals: std::collections::BTreeMap<String, u64>,
    /// Rate controller gains (pipeline §4.7.2).
    pub rate_control_kp: f64,
    /// Integral gain.
    pub rate_control_ki: f64,
    /// Derivative gain.
    pub rate_control_kd: f64,
    /// Dockerflow `version.json` served at `/__version__`; unset = build info.
    pub version_file: Option<PathBuf>,
    /// Name of this instance in the site's titles, header and texts.
    pub site_name: String,
    /// Who runs this instance (contact page, footer); unset = not published.
    pub operator_name: Option<String>,
    /// The operator's contact e-mail address.
    pub operator_email: Option<String>,
    /// The operator's web site.
    pub operator_url: Option<String>,
    /// Where the source code this instance runs is published; shown on the
    /// site, in `/__version__` and `/contribute.json`. Unset: not shown.
    pub source_url: Option<String>,
    /// The operator's postal address for formal notices.
    pub operator_address: Option<String>,
    /// Directory whose `home.html`, `privacy.html`, `terms.html`,
    /// `contact.html`, `optout.html` replace those pages' default texts.
    pub site_content_dir: Option<PathBuf>,
    /// URL template of the map's base layer; empty turns the maps off.
    pub map_base_url: String,
    /// Attribution (HTML) of the map's base layer.
    pub map_base_attribution: String,
    /// Public HTTP base of the asset bucket: the map then loads the coverage
    /// tiles from `<asset_url>/tiles/`; unset = live tiles from this server.
    pub asset_url: Option<String>,
    /// Coarsest zoom of the live coverage tiles; coarser ones come from the
    /// scheduled `datamap` task's output in `tiles_url`.
    pub tiles_live_min_zoom: u8,
    /// Most data-map rows one live tile may read (bounds its time and
    /// memory); a denser tile is taken from the `datamap` output.
    pub tiles_live_max_rows: usize,
    /// Bytes of coverage tiles cached in memory by the web role.
    pub tiles_cache_bytes: u64,
    /// On-disk cache of live tiles; default `<data_dir>/tile-cache`.
    pub tiles_cache_dir: Option<PathBuf>,
    /// Seconds between reads of the data-map change log (how soon new
    /// contributions reach cached tiles).
    pub tiles_change_poll: u64,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            data_dir: PathBuf::from("data"),
            database_url: None,
            database_readonly_url: None,
            database_readonly_max_lag_ms: 5_000,
            database_readonly_check_ms: 1_000,
            database_readonly_max_connections: 8,
            redis_url: None,
            redis_prefix: String::new(),
            redis_allow_volatile: false,
            queue_visibility: 60,
            listen: "127.0.0.1:8000".into(),
            header_read_timeout: 30,
            max_connections: 1_024,
            body_idle_timeout: 10,
            body_min_rate: 1_024,
            metrics_listen: "127.0.0.1:8001".into(),
            trusted_proxies: vec!["127.0.0.0/8".into(), "::1".into()],
            geoip_path: None,
            admin_token: None,
            exports_dir: None,
            cell_export_url: None,
            tiles_url: None,
            api_key_cache_ttl: 300,
            incoming_queue_max: 1_000_000,
            max_body_bytes: 10 * 1024 * 1024,
            max_decoded_bytes: 10 * 1024 * 1024,
            db_max_connections: 8,
            locate_read_timeout_ms: 500,
            log_format: LogFormat::Auto,
            log_level: "info".into(),
            access_log: true,
            locate_model: "calibrated".into(),
            shutdown_timeout: 30,
            intervals: Default::default(),
            rate_control_target: None,
            rate_control_kp: 8.0,
            rate_control_ki: 0.0,
            rate_control_kd: 0.0,
            version_file: None,
            site_name: "ichnaea".into(),
            operator_name: None,
            operator_email: None,
            operator_url: None,
            source_url: None,
            operator_address: None,
            site_content_dir: None,
            map_base_url: ichnaea_web::site::OSM_TILES.into(),
            map_base_attribution: ichnaea_web::site::OSM_ATTRIBUTION.into(),
            asset_url: None,
            tiles_live_min_zoom: 5,
            tiles_live_max_rows: 500_000,
            tiles_cache_bytes: 64 * 1024 * 1024,
            tiles_cache_dir: None,
            tiles_change_poll: 10,
        }
    }
}

/// A configuration value that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read {path}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not valid TOML for [`Config`].
    #[error("invalid configuration file {path}: {message}")]
    File {
        /// The file.
        path: PathBuf,
        /// The parser's message.
        message: String,
    },
    /// A setting that cannot be used with the others.
    #[error("invalid {key}: {message}")]
    Invalid {
        /// The setting.
        key: String,
        /// Why.
        message: String,
    },
    /// An environment variable has a value of the wrong type.
    #[error("invalid {var}: {message}")]
    Env {
        /// The variable.
        var: String,
        /// Why.
        message: String,
    },
}

fn parse<T: FromStr>(var: &str, value: &str) -> Result<T, ConfigError>
where
    T::Err: fmt::Display,
{
    value.trim().parse().map_err(|e: T::Err| ConfigError::Env {
        var: var.to_string(),
        message: e.to_string(),
    })
}

fn optional(value: &str) -> Option<String> {
    (!value.is_empty()).then(|| value.to_string())
}

impl Config {
    /// Loads defaults, then `file` (if given), then every `ICHNAEA_*` variable of
    /// `env`. Variables the service does not know are returned for a warning;
    /// `ICHNAEA_TEST_*` (test settings) and `ICHNAEA_CONFIG` (the file's name,
    /// read by the command line) are not settings and are skipped.
    pub fn load(
        file: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<(Config, Vec<String>), ConfigError> {
        let mut config = match file {
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                    path: path.to_path_buf(),
                    source,
                })?;
                toml::from_str(&text).map_err(|e| ConfigError::File {
                    path: path.to_path_buf(),
                    message: e.to_string(),
                })?
            }
            None => Config::default(),
        };
        let mut unknown = Vec::new();
        for (var, value) in env {
            let Some(key) = var.strip_prefix("ICHNAEA_") else {
                continue;
            };
            // TEST_*: test settings; CONFIG: the file itself, read by the
            // command line (`--config`), not a setting.
            if key.starts_with("TEST_") || key == "CONFIG" {
                continue;
            }
            if !config.set(&key.to_ascii_lowercase(), &var, &value)? {
                unknown.push(var);
            }
        }
        Ok((config, unknown))
    }

    /// Sets one field from its environment text; false for an unknown key.
    fn set(&mut self, key: &str, var: &str, value: &str) -> Result<bool, ConfigError> {
        match key {
            "data_dir" => self.data_dir = PathBuf::from(value),
            "database_url" => self.database_url = optional(value),
            "database_readonly_url" => self.database_readonly_url = optional(value),
            "database_readonly_max_lag_ms" => {
                self.database_readonly_max_lag_ms = parse(var, value)?
            }
            "database_readonly_check_ms" => self.database_readonly_check_ms = parse(var, value)?,
            "database_readonly_max_connections" => {
                self.database_readonly_max_connections = parse(var, value)?
            }
            "redis_url" => self.redis_url = optional(value),
            "redis_prefix" => self.redis_prefix = value.to_string(),
            "redis_allow_volatile" => self.redis_allow_volatile = parse(var, value)?,
            "queue_visibility" => self.queue_visibility = parse(var, value)?,
            "listen" => self.listen = value.to_string(),
            "header_read_timeout" => self.header_read_timeout = parse(var, value)?,
            "metrics_listen" => self.metrics_listen = value.trim().to_string(),
            "max_connections" => self.max_connections = parse(var, value)?,
            "body_idle_timeout" => self.body_idle_timeout = parse(var, value)?,
            "body_min_rate" => self.body_min_rate = parse(var, value)?,
            "trusted_proxies" => {
                self.trusted_proxies = value
                    .split(',')
                    .map(str::trim)
                    .filter(|v| !v.is_empty())
                    .map(str::to_string)
                    .collect()
            }
            "geoip_path" => self.geoip_path = optional(value).map(PathBuf::from),
            "admin_token" => self.admin_token = optional(value),
            "exports_dir" => self.exports_dir = optional(value).map(PathBuf::from),
            "cell_export_url" => self.cell_export_url = optional(value),
            "tiles_url" => self.tiles_url = optional(value),
            "api_key_cache_ttl" => self.api_key_cache_ttl = parse(var, value)?,
            "incoming_queue_max" => self.incoming_queue_max = parse(var, value)?,
            "max_body_bytes" => self.max_body_bytes = parse(var, value)?,
            "max_decoded_bytes" => self.max_decoded_bytes = parse(var, value)?,
            "db_max_connections" => self.db_max_connections = parse(var, value)?,
            "locate_read_timeout_ms" => self.locate_read_timeout_ms = parse(var, value)?,
            "log_format" => self.log_format = parse(var, value)?,
            "log_level" => self.log_level = value.to_string(),
            "access_log" => self.access_log = parse(var, value)?,
            "locate_model" => self.locate_model = value.trim().to_string(),
            "shutdown_timeout" => self.shutdown_timeout = parse(var, value)?,
            "rate_control_target" => {
                self.rate_control_target = optional(value).map(|v| parse(var, &v)).transpose()?
            }
            "rate_control_kp" => self.rate_control_kp = parse(var, value)?,
            "rate_control_ki" => self.rate_control_ki = parse(var, value)?,
            "rate_control_kd" => self.rate_control_kd = parse(var, value)?,
            "version_file" => self.version_file = optional(value).map(PathBuf::from),
            "site_name" => self.site_name = value.to_string(),
            "operator_name" => self.operator_name = optional(value),
            "operator_email" => self.operator_email = optional(value),
            "operator_url" => self.operator_url = optional(value),
            "source_url" => self.source_url = optional(value),
            "operator_address" => self.operator_address = optional(value),
            "site_content_dir" => self.site_content_dir = optional(value).map(PathBuf::from),
            "map_base_url" => self.map_base_url = value.to_string(),
            "map_base_attribution" => self.map_base_attribution = value.to_string(),
            "asset_url" => self.asset_url = optional(value),
            "tiles_live_min_zoom" => self.tiles_live_min_zoom = parse(var, value)?,
            "tiles_live_max_rows" => self.tiles_live_max_rows = parse(var, value)?,
            "tiles_cache_bytes" => self.tiles_cache_bytes = parse(var, value)?,
            "tiles_cache_dir" => self.tiles_cache_dir = optional(value).map(PathBuf::from),
            "tiles_change_poll" => self.tiles_change_poll = parse(var, value)?,
            task if task.starts_with("interval_") => {
                let name = task.trim_start_matches("interval_").to_string();
                self.intervals.insert(name, parse(var, value)?);
            }
            _ => return Ok(false),
        }
        Ok(true)
    }

    /// The database URL in effect.
    pub fn database_url(&self) -> String {
        self.database_url
            .clone()
            .unwrap_or_else(|| format!("sqlite://{}", self.data_dir.join("ichnaea.db").display()))
    }

    /// The read replica's settings: `None` when `database_readonly_url` is
    /// unset; an error when it is set but the database is SQLite (embedded
    /// mode has no replicas; ignoring the key would hide a mistake).
    pub fn readonly_replica(&self) -> Result<Option<ichnaea_store::ReplicaOptions>, ConfigError> {
        let Some(url) = &self.database_readonly_url else {
            return Ok(None);
        };
        let database = self.database_url();
        let postgres = |u: &str| u.starts_with("postgres:") || u.starts_with("postgresql:");
        if !postgres(&database) {
            return Err(ConfigError::Invalid {
                key: "database_readonly_url".into(),
                message:
                    "read replicas need a PostgreSQL database_url (cluster mode); the embedded \
                          SQLite database has none: unset database_readonly_url"
                        .into(),
            });
        }
        if !postgres(url) {
            return Err(ConfigError::Invalid {
                key: "database_readonly_url".into(),
                message: format!("{:?} is not a postgres:// URL", redact_url(url)),
            });
        }
        Ok(Some(ichnaea_store::ReplicaOptions {
            max_connections: self.database_readonly_max_connections.max(1),
            max_lag: std::time::Duration::from_millis(self.database_readonly_max_lag_ms),
            check_interval: std::time::Duration::from_millis(
                self.database_readonly_check_ms.max(10),
            ),
            ..ichnaea_store::ReplicaOptions::new(url.clone())
        }))
    }

    /// The export root in effect.
    pub fn exports_dir(&self) -> PathBuf {
        self.exports_dir
            .clone()
            .unwrap_or_else(|| self.data_dir.join("exports"))
    }

    /// The web role's header-read timeout in effect; `None` when turned off (0).
    pub fn header_read_timeout(&self) -> Option<std::time::Duration> {
        (self.header_read_timeout > 0)
            .then(|| std::time::Duration::from_secs(self.header_read_timeout))
    }

    /// The public cell export directory in effect; `None` when turned off.
    pub fn cell_export_url(&self) -> Option<String> {
        match self.cell_export_url.as_deref() {
            Some("off") => None,
            Some(url) => Some(url.to_string()),
            None => {
                let dir = self.exports_dir().join("export");
                let dir = std::path::absolute(&dir).unwrap_or(dir);
                Some(format!("file://{}", dir.display()))
            }
        }
    }

    /// The metrics listener's address; `None` when turned off.
    pub fn metrics_listen(&self) -> Option<&str> {
        match self.metrics_listen.as_str() {
            "" | "off" => None,
            address => Some(address),
        }
    }

    /// The tile bucket in effect.
    pub fn tiles_url(&self) -> String {
        match self.tiles_url.as_deref() {
            Some(url) => url.to_string(),
            None => {
                let dir = self.data_dir.join("datamap");
                let dir = std::path::absolute(&dir).unwrap_or(dir);
                format!("file://{}", dir.display())
            }
        }
    }

    /// The on-disk tile cache in effect.
    pub fn tiles_cache_dir(&self) -> PathBuf {
        self.tiles_cache_dir
            .clone()
            .unwrap_or_else(|| self.data_dir.join("tile-cache"))
    }

    /// The effective configuration as JSON with secrets hidden, for the start-up log.
    pub fn redacted(&self) -> serde_json::Value {
        let mut value = serde_json::json!({
            "data_dir": self.data_dir,
            "database_url": redact_url(&self.database_url()),
            "database_readonly_url": self.database_readonly_url.as_deref().map(redact_url),
            "database_readonly_max_lag_ms": self.database_readonly_max_lag_ms,
            "database_readonly_check_ms": self.database_readonly_check_ms,
            "database_readonly_max_connections": self.database_readonly_max_connections,
            "redis_url": self.redis_url.as_deref().map(redact_url),
            "redis_prefix": self.redis_prefix,
            "redis_allow_volatile": self.redis_allow_volatile,
            "queue_visibility": self.queue_visibility,
            "listen": self.listen,
            "header_read_timeout": self.header_read_timeout,
            "max_connections": self.max_connections,
            "body_idle_timeout": self.body_idle_timeout,
            "body_min_rate": self.body_min_rate,
            "metrics_listen": self.metrics_listen,
            "trusted_proxies": self.trusted_proxies,
            "geoip_path": self.geoip_path,
            "admin_token": self.admin_token.as_ref().map(|_| "<redacted>"),
            "exports_dir": self.exports_dir(),
            "cell_export_url": self.cell_export_url(),
            "tiles_url": self.tiles_url(),
            "api_key_cache_ttl": self.api_key_cache_ttl,
            "incoming_queue_max": self.incoming_queue_max,
            "max_body_bytes": self.max_body_bytes,
            "max_decoded_bytes": self.max_decoded_bytes,
            "db_max_connections": self.db_max_connections,
            "locate_read_timeout_ms": self.locate_read_timeout_ms,
            "log_format": self.log_format,
            "log_level": self.log_level,
            "access_log": self.access_log,
            "locate_model": self.locate_model,
            "shutdown_timeout": self.shutdown_timeout,
            "intervals": self.intervals,
            "rate_control_target": self.rate_control_target,
            "rate_control_kp": self.rate_control_kp,
            "rate_control_ki": self.rate_control_ki,
            "rate_control_kd": self.rate_control_kd,
            "version_file": self.version_file,
        });
        // The site's settings (their own object: one json! would be too deep).
        let site = serde_json::json!({
            "site_name": self.site_name,
            "operator_name": self.operator_name,
            "operator_email": self.operator_email,
            "operator_url": self.operator_url,
            "source_url": self.source_url,
            "operator_address": self.operator_address,
            "site_content_dir": self.site_content_dir,
            "map_base_url": self.map_base_url,
            "map_base_attribution": self.map_base_attribution,
            "asset_url": self.asset_url,
            "tiles_live_min_zoom": self.tiles_live_min_zoom,
            "tiles_live_max_rows": self.tiles_live_max_rows,
            "tiles_cache_bytes": self.tiles_cache_bytes,
            "tiles_cache_dir": self.tiles_cache_dir(),
            "tiles_change_poll": self.tiles_change_poll,
        });
        if let (Some(all), serde_json::Value::Object(site)) = (value.as_object_mut(), site) {
            all.extend(site);
        }
        value
    }
}

/// Hides the password of `scheme://user:password@host/…`.
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let (authority, path) = match rest.find('/') {
        Some(i) => rest.split_at(i),
        None => (rest, ""),
    };
    match authority.rsplit_once('@') {
        Some((userinfo, host)) => {
            let user = userinfo.split(':').next().unwrap_or("");
            let hidden = if userinfo.contains(':') {
                format!("{user}:<redacted>")
            } else {
                user.to_string()
            };
            format!("{scheme}://{hidden}@{host}{path}")
        }
        None => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn header_read_timeout_zero_turns_it_off() {
        let (c, _) = Config::load(None, env(&[])).unwrap();
        assert_eq!(
            c.header_read_timeout(),
            Some(std::time::Duration::from_secs(30))
        );
        let (c, _) = Config::load(None, env(&[("ICHNAEA_HEADER_READ_TIMEOUT", "5")])).unwrap();
        assert_eq!(
            c.header_read_timeout(),
            Some(std::time::Duration::from_secs(5))
        );
        let (c, _) = Config::load(None, env(&[("ICHNAEA_HEADER_READ_TIMEOUT", "0")])).unwrap();
        assert_eq!(c.header_read_timeout(), None);
    }

    #[test]
    fn trusted_proxies_from_env_and_file() {
        let (c, _) = Config::load(None, env(&[])).unwrap();
        assert_eq!(c.trusted_proxies, ["127.0.0.0/8", "::1"]);
        let (c, _) = Config::load(
            None,
            env(&[("ICHNAEA_TRUSTED_PROXIES", "10.0.0.0/8, 192.0.2.7 ,")]),
        )
        .unwrap();
        assert_eq!(c.trusted_proxies, ["10.0.0.0/8", "192.0.2.7"]);
        let (c, _) = Config::load(None, env(&[("ICHNAEA_TRUSTED_PROXIES", "")])).unwrap();
        assert!(c.trusted_proxies.is_empty(), "empty: no proxy trusted");
        let file = std::env::temp_dir().join(format!("ichnaea-config-{}.toml", std::process::id()));
        std::fs::write(&file, "trusted_proxies = [\"fd00::/8\"]\n").unwrap();
        let (c, _) = Config::load(Some(&file), env(&[])).unwrap();
        let _ = std::fs::remove_file(&file);
        assert_eq!(c.trusted_proxies, ["fd00::/8"]);
    }

    #[test]
    fn defaults_need_nothing() {
        let (c, unknown) = Config::load(None, env(&[("PATH", "/bin")])).unwrap();
        assert!(unknown.is_empty());
        assert_eq!(c.database_url(), "sqlite://data/ichnaea.db");
        assert_eq!(c.exports_dir(), PathBuf::from("data/exports"));
        assert_eq!(c.listen, "127.0.0.1:8000");
        assert_eq!(c.redis_url, None);
    }

    #[test]
    fn env_overrides_file() {
        let dir = std::env::temp_dir().join(format!("ichnaea-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("ichnaea.toml");
        std::fs::write(
            &file,
            "listen = \"0.0.0.0:9000\"\nincoming_queue_max = 5\ndata_dir = \"/srv\"\n",
        )
        .unwrap();
        let (c, unknown) = Config::load(
            Some(&file),
            env(&[
                ("ICHNAEA_INCOMING_QUEUE_MAX", "7"),
                ("ICHNAEA_ADMIN_TOKEN", "12345678"),
                ("ICHNAEA_REDIS_URL", ""),
                ("ICHNAEA_TEST_POSTGRES_URL", "postgres://x"),
                ("ICHNAEA_CONFIG", "/etc/ichnaea.toml"),
                ("ICHNAEA_BOGUS", "1"),
            ]),
        )
        .unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(c.listen, "0.0.0.0:9000");
        assert_eq!(c.incoming_queue_max, 7);
        assert_eq!(c.admin_token.as_deref(), Some("12345678"));
        assert_eq!(c.redis_url, None);
        assert_eq!(c.database_url(), "sqlite:///srv/ichnaea.db");
        assert_eq!(unknown, vec!["ICHNAEA_BOGUS".to_string()]);
    }

    #[test]
    fn tiles_url_defaults_to_the_data_dir() {
        let (c, _) = Config::load(None, env(&[("ICHNAEA_DATA_DIR", "/srv/ich")])).unwrap();
        assert_eq!(c.tiles_url(), "file:///srv/ich/datamap");
        let (c, _) = Config::load(None, env(&[("ICHNAEA_TILES_URL", "s3://assets/")])).unwrap();
        assert_eq!(c.tiles_url(), "s3://assets/");
        assert_eq!(c.redacted()["tiles_url"], "s3://assets/");
    }

    #[test]
    fn task_intervals_from_file_and_env() {
        let dir = std::env::temp_dir().join(format!("ichnaea-intervals-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("ichnaea.toml");
        std::fs::write(
            &file,
            "[intervals]\nupdate_statcounter = 60\ncleanup = 3600\n",
        )
        .unwrap();
        let (c, unknown) =
            Config::load(Some(&file), env(&[("ICHNAEA_INTERVAL_CLEANUP", "7200")])).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        assert!(unknown.is_empty());
        assert_eq!(c.intervals.get("update_statcounter"), Some(&60));
        assert_eq!(c.intervals.get("cleanup"), Some(&7200));
    }

    #[test]
    fn bad_values_name_the_variable() {
        let err = Config::load(None, env(&[("ICHNAEA_SHUTDOWN_TIMEOUT", "soon")])).unwrap_err();
        assert!(
            err.to_string().contains("ICHNAEA_SHUTDOWN_TIMEOUT"),
            "{err}"
        );
        let err = Config::load(None, env(&[("ICHNAEA_LOG_FORMAT", "xml")])).unwrap_err();
        assert!(err.to_string().contains("ICHNAEA_LOG_FORMAT"), "{err}");
    }

    #[test]
    fn readonly_replica_needs_postgres() {
        let (c, _) = Config::load(None, env(&[])).unwrap();
        assert!(c.readonly_replica().unwrap().is_none());
        let (c, _) = Config::load(
            None,
            env(&[(
                "ICHNAEA_DATABASE_READONLY_URL",
                "postgres://u:pw@replica/db",
            )]),
        )
        .unwrap();
        let err = c.readonly_replica().unwrap_err().to_string();
        assert!(
            err.contains("database_readonly_url") && err.contains("SQLite"),
            "{err}"
        );
        let (c, _) = Config::load(
            None,
            env(&[
                ("ICHNAEA_DATABASE_URL", "postgres://u@primary/db"),
                (
                    "ICHNAEA_DATABASE_READONLY_URL",
                    "postgres://u:pw@replica/db",
                ),
                ("ICHNAEA_DATABASE_READONLY_MAX_LAG_MS", "2500"),
                ("ICHNAEA_DATABASE_READONLY_MAX_CONNECTIONS", "3"),
            ]),
        )
        .unwrap();
        let replica = c.readonly_replica().unwrap().unwrap();
        assert_eq!(replica.max_lag, std::time::Duration::from_millis(2500));
        assert_eq!(replica.max_connections, 3);
        assert_eq!(replica.check_interval, std::time::Duration::from_secs(1));
        assert_eq!(
            c.redacted()["database_readonly_url"],
            "postgres://u:<redacted>@replica/db"
        );
        let (c, _) = Config::load(
            None,
            env(&[
                ("ICHNAEA_DATABASE_URL", "postgres://u@primary/db"),
                ("ICHNAEA_DATABASE_READONLY_URL", "mysql://replica/db"),
            ]),
        )
        .unwrap();
        assert!(c.readonly_replica().is_err());
    }

    #[test]
    fn secrets_are_redacted() {
        assert_eq!(
            redact_url("postgres://u:secret@db:5432/ichnaea"),
            "postgres://u:<redacted>@db:5432/ichnaea"
        );
        assert_eq!(
            redact_url("redis://:pw@127.0.0.1:6379/0"),
            "redis://:<redacted>@127.0.0.1:6379/0"
        );
        assert_eq!(
            redact_url("sqlite://data/ichnaea.db"),
            "sqlite://data/ichnaea.db"
        );
        let c = Config {
            admin_token: Some("t0ps3cret".into()),
            ..Config::default()
        };
        assert!(!c.redacted().to_string().contains("t0ps3cret"));
    }
}
