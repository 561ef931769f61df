//! Per-day counters of the web tier: daily API-key request limits and unique users.
//!
//! Every request with a known, allowed API key is counted once per UTC day and per
//! endpoint (the daily limit, api §7.5), and its client IP is recorded as a user
//! of the key (`locate` or `submit`). Two backends implement the same contract:
//! - [`embedded::EmbeddedCounters`] counts in process memory and persists the request
//!   counters to the service's SQLite file, for the single-process deployment;
//! - [`redis::RedisCounters`] uses the exact Redis keys of the original service
//!   (`apilimit:*` counters, `apiuser:*` HyperLogLogs), for the cluster deployment.
//!
//! The same two backends also hold the web tier's short-lived values: the rate-limit
//! windows of the external fallback provider, its answer cache, and the global locate
//! sample rate (Redis keys of api §10; in process memory when embedded).
//!
//! Days are UTC and always taken from the `now` the caller passes, so a new day starts
//! new counters and the counters of earlier days are never incremented again.
//!
//! Sections (§) refer to docs/reference/pipeline.md.

pub mod embedded;
pub mod redis;
mod volatile;

use std::time::Duration;

use chrono::{DateTime, Datelike, NaiveDate, Utc};

use crate::QueueError;

/// Time to live of an `apilimit:*` request counter, refreshed on every increment
/// (25 hours).
pub const REQUESTS_TTL_SECS: u64 = 90_000;

/// Time to live of an `apiuser:*` unique-user set, refreshed on every request
/// (8 days).
pub const USERS_TTL_SECS: u64 = 691_200;

/// Name of the global locate sample rate (a float as text, 0–100; missing means 100).
pub const SAMPLE_RATE_KEY: &str = "global_locate_sample_rate";

/// Per-day counters used by the web tier, on one of the two backends.
///
/// Cloning is cheap and shares the underlying counters or connection.
#[derive(Debug, Clone)]
pub enum Counters {
    /// Exact in-process counters, persisted to SQLite.
    Embedded(embedded::EmbeddedCounters),
    /// Counters in Redis.
    Redis(redis::RedisCounters),
}

impl Counters {
    /// Embedded: exact in-process counters, persisted to the given SQLite pool so a
    /// restart keeps today's counts.
    ///
    /// Creates the `queue_counter` table if it is missing and loads the counters of
    /// the latest stored day and the day before. A background task writes changed
    /// counters back every [`embedded::FLUSH_INTERVAL`]; it stops once every clone of
    /// the returned value is dropped. Call [`Counters::flush`] before shutting down so
    /// the last counts are kept. Must be called inside a Tokio runtime.
    pub async fn embedded(pool: sqlx::SqlitePool) -> Result<Counters, QueueError> {
        Ok(Counters::Embedded(
            embedded::EmbeddedCounters::open(pool).await?,
        ))
    }

    /// Redis, on a connection of its own to `url`; every key starts with `prefix`
    /// (production uses `""`, tests a random prefix).
    ///
    /// To share the connection of an existing Redis queue instead, use
    /// [`Counters::redis_shared`].
    pub async fn redis(url: &str, prefix: &str) -> Result<Counters, QueueError> {
        Ok(Counters::Redis(
            redis::RedisCounters::connect(url, prefix).await?,
        ))
    }

    /// Redis, sharing the connection manager and key prefix of `queue`.
    pub fn redis_shared(queue: &crate::redis::RedisQueue) -> Counters {
        Counters::Redis(redis::RedisCounters::shared(queue))
    }

    /// Name of the backend, for logs: `"sqlite"` or `"redis"`.
    pub fn backend(&self) -> &'static str {
        match self {
            Counters::Embedded(_) => "sqlite",
            Counters::Redis(_) => "redis",
        }
    }

    /// Counts one request of `api_key` on `api_path` (e.g. `"v2.geosubmit"`) today
    /// (UTC, per `now`) and records `client_ip` as a user of `api_type` (`"locate"` |
    /// `"submit"`); returns the counter value AFTER the increment.
    ///
    /// Concurrent calls for the same key and path each get a distinct value.
    pub async fn count_request(
        &self,
        api_key: &str,
        api_path: &str,
        api_type: &str,
        client_ip: &str,
        now: DateTime<Utc>,
    ) -> Result<u64, QueueError> {
        match self {
            Counters::Embedded(c) => {
                Ok(c.count_request(api_key, api_path, api_type, client_ip, now))
            }
            Counters::Redis(c) => {
                c.count_request(api_key, api_path, api_type, client_ip, now)
                    .await
            }
        }
    }

    /// Today's (per `now`) request count of (`api_key`, `api_path`), without
    /// incrementing it (0 if none).
    pub async fn requests(
        &self,
        api_key: &str,
        api_path: &str,
        now: DateTime<Utc>,
    ) -> Result<u64, QueueError> {
        match self {
            Counters::Embedded(c) => Ok(c.requests(api_key, api_path, now)),
            Counters::Redis(c) => c.requests(api_key, api_path, now).await,
        }
    }

    /// Estimated number of distinct client IPs of (`api_type`, `api_key`) on the day
    /// of `now`.
    ///
    /// Redis answers with its HyperLogLog estimate (`PFCOUNT`, about 0.8 % standard
    /// error); the embedded backend is exact up to
    /// [`embedded::EXACT_USERS`] distinct IPs per day and a close estimate above.
    pub async fn unique_users(
        &self,
        api_type: &str,
        api_key: &str,
        now: DateTime<Utc>,
    ) -> Result<u64, QueueError> {
        match self {
            Counters::Embedded(c) => Ok(c.unique_users(api_type, api_key, now)),
            Counters::Redis(c) => c.unique_users(api_type, api_key, now).await,
        }
    }

    /// Sets today's (per `now`) request counter of (`api_key`, `api_path`) to
    /// `value` (admin and test tool, e.g. to preset a counter to 10 as in spec case
    /// 34).
    pub async fn set_requests(
        &self,
        api_key: &str,
        api_path: &str,
        now: DateTime<Utc>,
        value: u64,
    ) -> Result<(), QueueError> {
        match self {
            Counters::Embedded(c) => {
                c.set_requests(api_key, api_path, now, value);
                Ok(())
            }
            Counters::Redis(c) => c.set_requests(api_key, api_path, now, value).await,
        }
    }

    /// Counts one call of the external fallback provider `fallback_name` in the
    /// rate-limit window of `interval_secs` seconds that holds `now`, and returns the
    /// count after the increment (locate §5.6).
    ///
    /// The window is `floor(unix seconds / interval)`; its counter is
    /// `fallback_ratelimit:<name>:<window>` and expires 5 × the interval after its
    /// last increment (an `interval_secs` of 0 is taken as 1).
    pub async fn count_fallback_call(
        &self,
        fallback_name: &str,
        interval_secs: u64,
        now: DateTime<Utc>,
    ) -> Result<u64, QueueError> {
        let interval = interval_secs.max(1);
        let window = u64::try_from(now.timestamp()).unwrap_or(0) / interval;
        let name = format!("fallback_ratelimit:{fallback_name}:{window}");
        let ttl = interval.saturating_mul(5);
        match self {
            Counters::Embedded(c) => Ok(c.count_window(&name, Duration::from_secs(ttl))),
            Counters::Redis(c) => c.count_window(&name, ttl).await,
        }
    }

    /// Reads entries of the web tier's cache (the external fallback's answers) by
    /// binary key; missing or expired entries are `None`. Redis: one `MGET`.
    pub async fn cache_get(&self, keys: &[Vec<u8>]) -> Result<Vec<Option<Vec<u8>>>, QueueError> {
        match self {
            Counters::Embedded(c) => Ok(c.cache_get(keys)),
            Counters::Redis(c) => c.cache_get(keys).await,
        }
    }

    /// Writes entries of the web tier's cache, each living `ttl_secs` seconds
    /// (at least 1). Redis: `SET key value EX ttl` for each, in one pipeline.
    pub async fn cache_set(
        &self,
        entries: &[(Vec<u8>, Vec<u8>)],
        ttl_secs: u64,
    ) -> Result<(), QueueError> {
        match self {
            Counters::Embedded(c) => {
                c.cache_set(entries, Duration::from_secs(ttl_secs.max(1)));
                Ok(())
            }
            Counters::Redis(c) => c.cache_set(entries, ttl_secs).await,
        }
    }

    /// Deletes entries of the web tier's cache (a page-data entry whose source
    /// table was rebuilt). Redis: one `DEL`.
    pub async fn cache_delete(&self, keys: &[Vec<u8>]) -> Result<(), QueueError> {
        match self {
            Counters::Embedded(c) => {
                c.cache_delete(keys);
                Ok(())
            }
            Counters::Redis(c) => c.cache_delete(keys).await,
        }
    }

    /// The global locate sample rate ([`SAMPLE_RATE_KEY`]); `None` when unset or not a
    /// number (callers then use 100).
    pub async fn locate_sample_rate(&self) -> Result<Option<f64>, QueueError> {
        match self {
            Counters::Embedded(c) => Ok(c.locate_sample_rate()),
            Counters::Redis(c) => c.locate_sample_rate().await,
        }
    }

    /// Sets (or, with `None`, removes) the global locate sample rate.
    pub async fn set_locate_sample_rate(&self, rate: Option<f64>) -> Result<(), QueueError> {
        match self {
            Counters::Embedded(c) => {
                c.set_locate_sample_rate(rate);
                Ok(())
            }
            Counters::Redis(c) => c.set_locate_sample_rate(rate).await,
        }
    }

    /// Today's request counters: (api key, api path, requests), for the `api.limit`
    /// gauge. Every key with traffic is listed, not only keys with a limit.
    pub async fn daily_requests(
        &self,
        now: DateTime<Utc>,
    ) -> Result<Vec<(String, String, u64)>, QueueError> {
        let day = compact_day(now.date_naive());
        let mut out = match self {
            Counters::Embedded(c) => c.request_counters(now.date_naive()),
            Counters::Redis(c) => c.request_counters(&day).await?,
        };
        out.retain(|(name, _)| parse_requests_key(name, &day).is_some());
        let mut rows: Vec<(String, String, u64)> = out
            .into_iter()
            .filter_map(|(name, n)| {
                let (key, path) = parse_requests_key(&name, &day)?;
                Some((key.to_string(), path.to_string(), n))
            })
            .collect();
        rows.sort();
        Ok(rows)
    }

    /// Distinct users per (api type, key) today and over the last seven days; in
    /// Redis, user sets older than seven days are deleted on the way (§4.6).
    pub async fn key_usage(&self, now: DateTime<Utc>) -> Result<Vec<KeyUsage>, QueueError> {
        let mut rows = match self {
            Counters::Embedded(c) => c.key_usage(now.date_naive()),
            Counters::Redis(c) => c.key_usage(now.date_naive()).await?,
        };
        rows.sort();
        Ok(rows)
    }

    /// Writes changed embedded counters to SQLite now (and drops old days); does
    /// nothing on Redis, where every increment is already stored.
    pub async fn flush(&self) -> Result<(), QueueError> {
        match self {
            Counters::Embedded(c) => c.flush().await,
            Counters::Redis(_) => Ok(()),
        }
    }
}

/// Name of the daily request counter: `apilimit:<key>:<path>:<YYYYMMDD>` (without
/// prefix).
/// One API key's usage, for the monitoring gauges (pipeline §4.6).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct KeyUsage {
    /// `locate`, `region` or `submit`.
    pub api_type: String,
    /// The key.
    pub api_key: String,
    /// Distinct client IPs today.
    pub users_today: u64,
    /// Distinct client IPs over the last seven days (today included).
    pub users_week: u64,
}

/// Splits `apilimit:<key>:<path>:<YYYYMMDD>` (without prefix) into key and path
/// when the day matches.
fn parse_requests_key<'a>(name: &'a str, day: &str) -> Option<(&'a str, &'a str)> {
    let rest = name
        .strip_prefix("apilimit:")?
        .strip_suffix(day)?
        .strip_suffix(':')?;
    rest.split_once(':')
}

/// Splits `apiuser:<type>:<key>:<YYYY-MM-DD>` (without prefix).
fn parse_users_key(name: &str) -> Option<(&str, &str, NaiveDate)> {
    let rest = name.strip_prefix("apiuser:")?;
    let (rest, day) = rest.rsplit_once(':')?;
    let (api_type, api_key) = rest.split_once(':')?;
    let day = NaiveDate::parse_from_str(day, "%Y-%m-%d").ok()?;
    Some((api_type, api_key, day))
}

/// `YYYYMMDD` of a day.
fn compact_day(day: NaiveDate) -> String {
    format!("{:04}{:02}{:02}", day.year(), day.month(), day.day())
}

fn requests_key(api_key: &str, api_path: &str, now: DateTime<Utc>) -> String {
    let day = now.date_naive();
    format!(
        "apilimit:{api_key}:{api_path}:{:04}{:02}{:02}",
        day.year(),
        day.month(),
        day.day()
    )
}

/// Name of the daily unique-user set: `apiuser:<type>:<key>:<YYYY-MM-DD>` (without
/// prefix).
fn users_key(api_type: &str, api_key: &str, now: DateTime<Utc>) -> String {
    format!("apiuser:{api_type}:{api_key}:{}", iso_day(now.date_naive()))
}

/// A day as `YYYY-MM-DD`.
fn iso_day(day: NaiveDate) -> String {
    format!("{:04}-{:02}-{:02}", day.year(), day.month(), day.day())
}
