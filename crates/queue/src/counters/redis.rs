//! The Redis counters: the keys of the original service, exactly (spec api §7.5, §10).
//!
//! - `<prefix>apilimit:<key>:<path>:<YYYYMMDD>`: string counter of the requests of a
//!   key on one endpoint on one UTC day; its TTL of 90 000 s (25 h) is refreshed on
//!   every increment.
//! - `<prefix>apiuser:<type>:<key>:<YYYY-MM-DD>`: HyperLogLog of the client IPs of a
//!   key's `locate` or `submit` requests on one UTC day; TTL 691 200 s (8 days),
//!   refreshed on every request.
//!
//! A request is counted by one `MULTI`/`EXEC` transaction: `PFADD` + `EXPIRE` of the
//! user set, `INCR` + `EXPIRE` of the counter. The worker's monitoring job reads and
//! prunes these keys, so their names must not change. The two keys of a request hash
//! to different Redis Cluster slots, so the transaction needs a non-cluster Redis, as
//! in the original service.

use ::redis::Client;
use ::redis::aio::ConnectionManager;
use chrono::{DateTime, Utc};

use super::{REQUESTS_TTL_SECS, USERS_TTL_SECS, requests_key, users_key};
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
        let conn = ConnectionManager::new(Client::open(url)?).await?;
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
}
