//! The Redis counters: the keys of the original service, exactly (api §7.5, §10).
//!
//! - `<prefix>apilimit:<key>:<path>:<YYYYMMDD>`: string counter of the requests of a
//!   key on one endpoint on one UTC day; its TTL of 90 000 s (25 h) is refreshed on
//!   every increment.
//! - `<prefix>apiuser:<type>:<key>:<YYYY-MM-DD>`: HyperLogLog of the client IPs of a
//!   key's `locate` or `submit` requests on one UTC day; TTL 691 200 s (8 days),
//!   refreshed on every request.
//!
//! - `<prefix>fallback_ratelimit:<name>:<window>`: calls of an external fallback
//!   provider in one rate-limit window, `INCR` + `EXPIRE` (5 × the interval).
//! - `<prefix>cache:fallback:...`: binary keys of the fallback answer cache, written
//!   with `SET ... EX` in one pipeline and read with `MGET`.
//! - `<prefix>global_locate_sample_rate`: the global locate sample rate (a float as
//!   text), read by the web tier.
//!
//! A request is counted by one `MULTI`/`EXEC` transaction: `PFADD` + `EXPIRE` of the
//! user set, `INCR` + `EXPIRE` of the counter. The worker's monitoring job reads and
//! prunes these keys, so their names must not change. The two keys of a request hash
//! to different Redis Cluster slots, so the transaction needs a non-cluster Redis, as
//! in the original service.
//!
//! Sections (§) refer to docs/reference/pipeline.md.

use ::redis::aio::ConnectionManager;
use chrono::{DateTime, NaiveDate, Utc};

use super::{REQUESTS_TTL_SECS, SAMPLE_RATE_KEY, USERS_TTL_SECS, requests_key, users_key};
use crate::QueueError;

/// Per-day counters in Redis; see the module documentation for the keys.
#[derive(Clone)]
pub struct RedisCounters {
    conn: ConnectionManager,
    prefix: String,
}

impl std::fmt::Debug for RedisCounters {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisCounters")
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

impl RedisCounters {
    /// Connects to `url`; the connection reconnects by itself after failures.
    pub(crate) async fn connect(url: &str, prefix: &str) -> Result<Self, QueueError> {
        let conn = crate::redis::connection_manager(url).await?;
        Ok(Self {
            conn,
            prefix: prefix.to_owned(),
        })
    }

    /// Uses the connection and key prefix of a Redis queue.
    pub(crate) fn shared(queue: &crate::redis::RedisQueue) -> Self {
        Self {
            conn: queue.connection().clone(),
            prefix: queue.prefix().to_owned(),
        }
    }

    pub(crate) async fn count_request(
        &self,
        api_key: &str,
        api_path: &str,
        api_type: &str,
        client_ip: &str,
        now: DateTime<Utc>,
    ) -> Result<u64, QueueError> {
        let users = format!("{}{}", self.prefix, users_key(api_type, api_key, now));
        let counter = format!("{}{}", self.prefix, requests_key(api_key, api_path, now));
        let mut pipe = ::redis::pipe();
        pipe.atomic();
        pipe.cmd("PFADD").arg(&users).arg(client_ip).ignore();
        pipe.cmd("EXPIRE").arg(&users).arg(USERS_TTL_SECS).ignore();
        pipe.cmd("INCR").arg(&counter);
        pipe.cmd("EXPIRE")
            .arg(&counter)
            .arg(REQUESTS_TTL_SECS)
            .ignore();
        // Typed, so that an error inside the transaction surfaces as an error.
        let (value,): (i64,) = pipe.query_async(&mut self.conn.clone()).await?;
        u64::try_from(value)
            .map_err(|_| QueueError::Corrupt(format!("counter {counter} is {value}")))
    }

    pub(crate) async fn requests(
        &self,
        api_key: &str,
        api_path: &str,
        now: DateTime<Utc>,
    ) -> Result<u64, QueueError> {
        let counter = format!("{}{}", self.prefix, requests_key(api_key, api_path, now));
        let value: Option<i64> = ::redis::cmd("GET")
            .arg(&counter)
            .query_async(&mut self.conn.clone())
            .await?;
        let value = value.unwrap_or(0);
        u64::try_from(value)
            .map_err(|_| QueueError::Corrupt(format!("counter {counter} is {value}")))
    }

    pub(crate) async fn unique_users(
        &self,
        api_type: &str,
        api_key: &str,
        now: DateTime<Utc>,
    ) -> Result<u64, QueueError> {
        let users = format!("{}{}", self.prefix, users_key(api_type, api_key, now));
        let count: u64 = ::redis::cmd("PFCOUNT")
            .arg(&users)
            .query_async(&mut self.conn.clone())
            .await?;
        Ok(count)
    }

    /// Keys under the prefix matching `pattern`, by SCAN (never the blocking KEYS).
    async fn scan(&self, pattern: &str) -> Result<Vec<String>, QueueError> {
        let mut conn = self.conn.clone();
        let mut cursor: u64 = 0;
        let mut out = Vec::new();
        loop {
            let (next, keys): (u64, Vec<String>) = ::redis::cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg(format!("{}{pattern}", self.prefix))
                .arg("COUNT")
                .arg(500)
                .query_async(&mut conn)
                .await?;
            out.extend(
                keys.into_iter()
                    .filter_map(|k| k.strip_prefix(&self.prefix).map(str::to_string)),
            );
            if next == 0 {
                return Ok(out);
            }
            cursor = next;
        }
    }

    /// Request counter names (without prefix) and values of `day` (`YYYYMMDD`).
    pub(crate) async fn request_counters(
        &self,
        day: &str,
    ) -> Result<Vec<(String, u64)>, QueueError> {
        let names = self.scan(&format!("apilimit:*:{day}")).await?;
        let mut out = Vec::with_capacity(names.len());
        for name in names {
            let value: Option<i64> = ::redis::cmd("GET")
                .arg(format!("{}{name}", self.prefix))
                .query_async(&mut self.conn.clone())
                .await?;
            if let Some(v) = value.and_then(|v| u64::try_from(v).ok()) {
                out.push((name, v));
            }
        }
        Ok(out)
    }

    /// Distinct users per (type, key) today and over seven days (PFCOUNT of the
    /// union); user sets older than seven days are deleted.
    pub(crate) async fn key_usage(
        &self,
        today: NaiveDate,
    ) -> Result<Vec<super::KeyUsage>, QueueError> {
        let mut by_key: std::collections::BTreeMap<(String, String), Vec<(NaiveDate, String)>> =
            Default::default();
        for name in self.scan("apiuser:*").await? {
            let Some((api_type, api_key, day)) = super::parse_users_key(&name) else {
                continue;
            };
            let age = (today - day).num_days();
            if !(0..7).contains(&age) {
                let _: i64 = ::redis::cmd("DEL")
                    .arg(format!("{}{name}", self.prefix))
                    .query_async(&mut self.conn.clone())
                    .await?;
                continue;
            }
            by_key
                .entry((api_type.to_string(), api_key.to_string()))
                .or_default()
                .push((day, format!("{}{name}", self.prefix)));
        }
        let mut out = Vec::with_capacity(by_key.len());
        for ((api_type, api_key), days) in by_key {
            let today_key = days
                .iter()
                .find(|(d, _)| *d == today)
                .map(|(_, k)| k.clone());
            let users_today = match today_key {
                Some(k) => {
                    ::redis::cmd("PFCOUNT")
                        .arg(k)
                        .query_async(&mut self.conn.clone())
                        .await?
                }
                None => 0,
            };
            let keys: Vec<String> = days.into_iter().map(|(_, k)| k).collect();
            let users_week: u64 = ::redis::cmd("PFCOUNT")
                .arg(keys)
                .query_async(&mut self.conn.clone())
                .await?;
            out.push(super::KeyUsage {
                api_type,
                api_key,
                users_today,
                users_week,
            });
        }
        Ok(out)
    }

    pub(crate) async fn set_requests(
        &self,
        api_key: &str,
        api_path: &str,
        now: DateTime<Utc>,
        value: u64,
    ) -> Result<(), QueueError> {
        let counter = format!("{}{}", self.prefix, requests_key(api_key, api_path, now));
        let () = ::redis::cmd("SET")
            .arg(&counter)
            .arg(value)
            .arg("EX")
            .arg(REQUESTS_TTL_SECS)
            .query_async(&mut self.conn.clone())
            .await?;
        Ok(())
    }

    /// The prefixed name of `key` as bytes.
    fn binary_key(&self, key: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.prefix.len() + key.len());
        out.extend_from_slice(self.prefix.as_bytes());
        out.extend_from_slice(key);
        out
    }

    pub(crate) async fn count_window(&self, name: &str, ttl_secs: u64) -> Result<u64, QueueError> {
        let key = format!("{}{name}", self.prefix);
        let mut pipe = ::redis::pipe();
        pipe.atomic();
        pipe.cmd("INCR").arg(&key);
        pipe.cmd("EXPIRE").arg(&key).arg(ttl_secs).ignore();
        let (value,): (i64,) = pipe.query_async(&mut self.conn.clone()).await?;
        u64::try_from(value).map_err(|_| QueueError::Corrupt(format!("counter {key} is {value}")))
    }

    pub(crate) async fn cache_get(
        &self,
        keys: &[Vec<u8>],
    ) -> Result<Vec<Option<Vec<u8>>>, QueueError> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let mut cmd = ::redis::cmd("MGET");
        for key in keys {
            cmd.arg(self.binary_key(key));
        }
        let values: Vec<Option<Vec<u8>>> = cmd.query_async(&mut self.conn.clone()).await?;
        Ok(values)
    }

    pub(crate) async fn cache_set(
        &self,
        entries: &[(Vec<u8>, Vec<u8>)],
        ttl_secs: u64,
    ) -> Result<(), QueueError> {
        if entries.is_empty() {
            return Ok(());
        }
        let mut pipe = ::redis::pipe();
        for (key, value) in entries {
            pipe.cmd("SET")
                .arg(self.binary_key(key))
                .arg(value.as_slice())
                .arg("EX")
                .arg(ttl_secs.max(1))
                .ignore();
        }
        let () = pipe.query_async(&mut self.conn.clone()).await?;
        Ok(())
    }

    pub(crate) async fn cache_delete(&self, keys: &[Vec<u8>]) -> Result<(), QueueError> {
        if keys.is_empty() {
            return Ok(());
        }
        let mut cmd = ::redis::cmd("DEL");
        for key in keys {
            cmd.arg(self.binary_key(key));
        }
        let _: i64 = cmd.query_async(&mut self.conn.clone()).await?;
        Ok(())
    }

    pub(crate) async fn locate_sample_rate(&self) -> Result<Option<f64>, QueueError> {
        let key = format!("{}{SAMPLE_RATE_KEY}", self.prefix);
        let value: Option<String> = ::redis::cmd("GET")
            .arg(&key)
            .query_async(&mut self.conn.clone())
            .await?;
        Ok(value.and_then(|v| v.trim().parse::<f64>().ok()))
    }

    pub(crate) async fn set_locate_sample_rate(&self, rate: Option<f64>) -> Result<(), QueueError> {
        let key = format!("{}{SAMPLE_RATE_KEY}", self.prefix);
        let mut conn = self.conn.clone();
        match rate {
            Some(rate) => {
                let () = ::redis::cmd("SET")
                    .arg(&key)
                    .arg(rate.to_string())
                    .query_async(&mut conn)
                    .await?;
            }
            None => {
                let () = ::redis::cmd("DEL").arg(&key).query_async(&mut conn).await?;
            }
        }
        Ok(())
    }
}
