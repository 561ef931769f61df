//! The embedded counters: exact counters in process memory, persisted to SQLite.
//!
//! Request counters live in a map behind one mutex that is held only for the
//! increment itself, so concurrent callers get exactly the values `1..=N`, and a
//! request costs no database write. A background task (and [`Counters::flush`](super::Counters::flush))
//! writes the counters that changed since the last write to the table
//! `queue_counter`, created on open (`IF NOT EXISTS`):
//!
//! ```sql
//! queue_counter (name TEXT PRIMARY KEY, value INTEGER NOT NULL, day TEXT NOT NULL)
//! ```
//!
//! `name` is the Redis key name, `apilimit:<key>:<path>:<YYYYMMDD>`, and `day` the
//! same UTC day as `YYYY-MM-DD`. On open the counters of the latest stored day and the
//! day before are loaded; older rows are deleted.
//!
//! Retention follows the *current day*: the latest UTC day any `count_request` or
//! `set_requests` was called for (or, right after open, the latest stored day). Request
//! counters of days before the day preceding it are dropped, from memory and from the
//! table, on every flush. Unique-user sets are kept for the current day and the seven
//! before it.
//!
//! Unique users are an in-memory set of hashed client IPs per (type, key, day). They
//! are **not persisted**: after a restart the sets start empty. A set is exact up to
//! [`EXACT_USERS`] distinct IPs; beyond that it keeps only the hashes of a sample
//! (adaptive sampling: the fraction kept halves whenever the sample outgrows the cap)
//! and answers `sample size × 2^level`, an estimate with a relative standard error of
//! about 0.5 %, so its memory stays bounded (about 2 MiB per set).
//!
//! The fallback provider's rate-limit windows, its answer cache and the global locate
//! sample rate are kept in process memory only, not persisted.
//!
//! The embedded counters belong to one process: two processes sharing the SQLite file
//! would each count on their own and overwrite each other's rows.

use std::collections::hash_map::RandomState;
use std::collections::{HashMap, HashSet};
use std::hash::BuildHasher;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};
use std::time::Duration;

use chrono::{DateTime, Days, NaiveDate, Utc};
use sqlx::{Row, SqlitePool};

use super::volatile::Volatile;
use super::{iso_day, requests_key, users_key};
use crate::QueueError;

/// How often the background task writes changed counters to SQLite. Counts of at most
/// this long are lost when the process dies without [`Counters::flush`](super::Counters::flush).
pub const FLUSH_INTERVAL: Duration = Duration::from_secs(2);

/// Distinct client IPs per (type, key, day) counted exactly; above this the count is
/// an estimate from a bounded sample.
pub const EXACT_USERS: usize = 100_000;

/// Days before the current day whose request counters are kept (yesterday's).
const REQUEST_DAYS_KEPT: u64 = 1;

/// Days before the current day whose unique-user sets are kept (the `apiuser:*` keys
/// in Redis live for 8 days).
const USER_DAYS_KEPT: u64 = 7;

/// Statements that create the counter table; each is idempotent.
const SCHEMA: &[&str] = &["CREATE TABLE IF NOT EXISTS queue_counter (
        name TEXT PRIMARY KEY,
        value INTEGER NOT NULL,
        day TEXT NOT NULL
    ) WITHOUT ROWID"];

/// How write transactions start: take the write lock at once.
const BEGIN_IMMEDIATE: &str = "BEGIN IMMEDIATE";

/// Exact in-process counters persisted to SQLite; see the module documentation.
///
/// Cloning is cheap and shares the counters. The background flush stops once every
/// clone is dropped.
#[derive(Clone)]
pub struct EmbeddedCounters {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for EmbeddedCounters {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmbeddedCounters").finish_non_exhaustive()
    }
}

/// What all clones share.
struct Inner {
    pool: SqlitePool,
    /// Keys the hashes of client IPs (so the sample cannot be steered from outside).
    hasher: RandomState,
    state: Mutex<State>,
    /// Serialises flushes, so an older snapshot never overwrites a newer one.
    flush_lock: tokio::sync::Mutex<()>,
    /// Rate-limit windows, the fallback cache and the sample rate (not persisted).
    volatile: Volatile,
}

/// The counters of all days kept.
#[derive(Default)]
struct State {
    /// The latest day counted for; retention is relative to it.
    current: Option<NaiveDate>,
    /// Request counters by day, then by name (`apilimit:...`).
    requests: HashMap<NaiveDate, HashMap<String, Counter>>,
    /// Unique-user sets by day, then by name (`apiuser:...`).
    users: HashMap<NaiveDate, HashMap<String, UserSet>>,
    /// Rows of days before this one have been deleted from the table already.
    pruned_before: Option<NaiveDate>,
}

/// One request counter.
struct Counter {
    value: u64,
    /// The value last written to (or read from) SQLite.
    stored: Option<u64>,
}

/// The hashed client IPs of one (type, key, day), sampled above [`EXACT_USERS`].
#[derive(Default)]
struct UserSet {
    /// Only hashes with at least `level` leading zero bits are kept (a `2^-level`
    /// sample); 0 while the count is exact.
    level: u32,
    hashes: HashSet<u64>,
}

impl UserSet {
    fn insert(&mut self, hash: u64) {
        if hash.leading_zeros() < self.level {
            return;
        }
        if self.hashes.insert(hash) && self.hashes.len() > EXACT_USERS {
            while self.hashes.len() > EXACT_USERS && self.level < u64::BITS {
                self.level += 1;
                let level = self.level;
                self.hashes.retain(|h| h.leading_zeros() >= level);
            }
        }
    }

    fn estimate(&self) -> u64 {
        (self.hashes.len() as u64).saturating_mul(1u64 << self.level.min(u64::BITS - 1))
    }
}

impl State {
    /// Notes that `day` is being counted for.
    fn advance(&mut self, day: NaiveDate) {
        if self.current.is_none_or(|current| day > current) {
            self.current = Some(day);
        }
    }

    /// Drops request counters and user sets of days no longer kept; returns the first
    /// day whose request counters are kept.
    fn prune(&mut self) -> Option<NaiveDate> {
        let current = self.current?;
        let keep_requests = current.checked_sub_days(Days::new(REQUEST_DAYS_KEPT))?;
        self.requests.retain(|day, _| *day >= keep_requests);
        if let Some(keep_users) = current.checked_sub_days(Days::new(USER_DAYS_KEPT)) {
            self.users.retain(|day, _| *day >= keep_users);
        }
        Some(keep_requests)
    }
}

impl EmbeddedCounters {
    /// Creates the counter table if it is missing, loads the kept counters and starts
    /// the background flush.
    pub(crate) async fn open(pool: SqlitePool) -> Result<Self, QueueError> {
        let mut tx = pool.begin_with(BEGIN_IMMEDIATE).await?;
        for statement in SCHEMA {
            sqlx::query(*statement).execute(&mut *tx).await?;
        }
        let latest: Option<String> = sqlx::query_scalar("SELECT max(day) FROM queue_counter")
            .fetch_one(&mut *tx)
            .await?;
        let mut state = State::default();
        if let Some(latest) = latest {
            let current = parse_day(&latest)?;
            state.current = Some(current);
            if let Some(keep) = state.prune() {
                sqlx::query("DELETE FROM queue_counter WHERE day < $1")
                    .bind(iso_day(keep))
                    .execute(&mut *tx)
                    .await?;
                state.pruned_before = Some(keep);
            }
            let rows = sqlx::query("SELECT name, value, day FROM queue_counter")
                .fetch_all(&mut *tx)
                .await?;
            for row in rows {
                let name: String = row.try_get("name")?;
                let value: i64 = row.try_get("value")?;
                let day: String = row.try_get("day")?;
                let value = u64::try_from(value).map_err(|_| {
                    QueueError::Corrupt(format!("counter {name} has value {value}"))
                })?;
                state.requests.entry(parse_day(&day)?).or_default().insert(
                    name,
                    Counter {
                        value,
                        stored: Some(value),
                    },
                );
            }
        }
        tx.commit().await?;

        let inner = Arc::new(Inner {
            pool,
            hasher: RandomState::new(),
            state: Mutex::new(state),
            flush_lock: tokio::sync::Mutex::new(()),
            volatile: Volatile::default(),
        });
        tokio::spawn(flush_periodically(Arc::downgrade(&inner)));
        Ok(Self { inner })
    }

    pub(crate) fn count_request(
        &self,
        api_key: &str,
        api_path: &str,
        api_type: &str,
        client_ip: &str,
        now: DateTime<Utc>,
    ) -> u64 {
        let day = now.date_naive();
        let counter_name = requests_key(api_key, api_path, now);
        let users_name = users_key(api_type, api_key, now);
        let ip_hash = self.inner.hasher.hash_one(client_ip);

        let mut state = self.inner.lock();
        state.advance(day);
        state
            .users
            .entry(day)
            .or_default()
            .entry(users_name)
            .or_default()
            .insert(ip_hash);
        let counter = state
            .requests
            .entry(day)
            .or_default()
            .entry(counter_name)
            .or_insert(Counter {
                value: 0,
                stored: None,
            });
        counter.value = counter.value.saturating_add(1);
        counter.value
    }

    pub(crate) fn requests(&self, api_key: &str, api_path: &str, now: DateTime<Utc>) -> u64 {
        let name = requests_key(api_key, api_path, now);
        let state = self.inner.lock();
        state
            .requests
            .get(&now.date_naive())
            .and_then(|day| day.get(&name))
            .map_or(0, |counter| counter.value)
    }

    pub(crate) fn unique_users(&self, api_type: &str, api_key: &str, now: DateTime<Utc>) -> u64 {
        let name = users_key(api_type, api_key, now);
        let state = self.inner.lock();
        state
            .users
            .get(&now.date_naive())
            .and_then(|day| day.get(&name))
            .map_or(0, UserSet::estimate)
    }

    /// Request counter names and values of `day`.
    pub(crate) fn request_counters(&self, day: NaiveDate) -> Vec<(String, u64)> {
        let state = self.inner.lock();
        state
            .requests
            .get(&day)
            .map(|names| {
                names
                    .iter()
                    .map(|(name, c)| (name.clone(), c.value))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Distinct users per (type, key): today's set, and the union of the last
    /// seven days' sets (sampled sets are merged at their coarsest level).
    pub(crate) fn key_usage(&self, today: NaiveDate) -> Vec<super::KeyUsage> {
        let state = self.inner.lock();
        let mut by_key: HashMap<(String, String), (u64, Vec<&UserSet>)> = HashMap::new();
        for (day, sets) in &state.users {
            let age = (today - *day).num_days();
            if !(0..7).contains(&age) {
                continue;
            }
            for (name, set) in sets {
                let Some((api_type, api_key, _)) = super::parse_users_key(name) else {
                    continue;
                };
                let entry = by_key
                    .entry((api_type.to_string(), api_key.to_string()))
                    .or_default();
                if age == 0 {
                    entry.0 = set.estimate();
                }
                entry.1.push(set);
            }
        }
        by_key
            .into_iter()
            .map(|((api_type, api_key), (users_today, sets))| {
                let level = sets.iter().map(|s| s.level).max().unwrap_or(0);
                let union: HashSet<u64> = sets
                    .iter()
                    .flat_map(|s| s.hashes.iter().copied())
                    .filter(|h| h.leading_zeros() >= level)
                    .collect();
                let users_week =
                    (union.len() as u64).saturating_mul(1u64 << level.min(u64::BITS - 1));
                super::KeyUsage {
                    api_type,
                    api_key,
                    users_today,
                    users_week,
                }
            })
            .collect()
    }

    pub(crate) fn set_requests(
        &self,
        api_key: &str,
        api_path: &str,
        now: DateTime<Utc>,
        value: u64,
    ) {
        let day = now.date_naive();
        let name = requests_key(api_key, api_path, now);
        let mut state = self.inner.lock();
        state.advance(day);
        state
            .requests
            .entry(day)
            .or_default()
            .entry(name)
            .or_insert(Counter {
                value: 0,
                stored: None,
            })
            .value = value;
    }

    /// Writes the counters that changed since their last write and drops old days.
    pub(crate) async fn flush(&self) -> Result<(), QueueError> {
        self.inner.flush().await
    }

    pub(crate) fn count_window(&self, name: &str, ttl: Duration) -> u64 {
        self.inner.volatile.increment(name, ttl)
    }

    pub(crate) fn cache_get(&self, keys: &[Vec<u8>]) -> Vec<Option<Vec<u8>>> {
        self.inner.volatile.get(keys)
    }

    pub(crate) fn cache_set(&self, entries: &[(Vec<u8>, Vec<u8>)], ttl: Duration) {
        self.inner.volatile.set(entries, ttl);
    }

    pub(crate) fn cache_delete(&self, keys: &[Vec<u8>]) {
        self.inner.volatile.remove(keys);
    }

    pub(crate) fn locate_sample_rate(&self) -> Option<f64> {
        self.inner.volatile.sample_rate()
    }

    pub(crate) fn set_locate_sample_rate(&self, rate: Option<f64>) {
        self.inner.volatile.set_sample_rate(rate);
    }
}

impl Inner {
    /// The state; a panic while it was held cannot leave it inconsistent (every
    /// change is a single assignment), so a poisoned lock is used as it is.
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    async fn flush(&self) -> Result<(), QueueError> {
        let _flushing = self.flush_lock.lock().await;
        let (writes, prune_before) = {
            let mut state = self.lock();
            let keep = state.prune();
            let prune_before = keep.filter(|keep| state.pruned_before < Some(*keep));
            let mut writes = Vec::new();
            for (day, counters) in &state.requests {
                for (name, counter) in counters {
                    if counter.stored != Some(counter.value) {
                        writes.push((name.clone(), counter.value, *day));
                    }
                }
            }
            (writes, prune_before)
        };
        if writes.is_empty() && prune_before.is_none() {
            return Ok(());
        }

        let mut tx = self.pool.begin_with(BEGIN_IMMEDIATE).await?;
        for (name, value, day) in &writes {
            sqlx::query(
                "INSERT INTO queue_counter (name, value, day) VALUES ($1, $2, $3)
                 ON CONFLICT (name) DO UPDATE SET value = excluded.value, day = excluded.day",
            )
            .bind(name)
            .bind(i64::try_from(*value).unwrap_or(i64::MAX))
            .bind(iso_day(*day))
            .execute(&mut *tx)
            .await?;
        }
        if let Some(keep) = prune_before {
            sqlx::query("DELETE FROM queue_counter WHERE day < $1")
                .bind(iso_day(keep))
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;

        let mut state = self.lock();
        if prune_before.is_some() {
            state.pruned_before = prune_before;
        }
        for (name, value, day) in writes {
            if let Some(counter) = state
                .requests
                .get_mut(&day)
                .and_then(|counters| counters.get_mut(&name))
            {
                counter.stored = Some(value);
            }
        }
        Ok(())
    }
}

/// Flushes every [`FLUSH_INTERVAL`] until the counters are dropped.
async fn flush_periodically(counters: Weak<Inner>) {
    let mut ticker = tokio::time::interval(FLUSH_INTERVAL);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // The first tick completes at once.
    ticker.tick().await;
    loop {
        ticker.tick().await;
        let Some(inner) = counters.upgrade() else {
            return;
        };
        if let Err(err) = inner.flush().await {
            tracing::warn!(error = %err, "flushing the API-key counters to SQLite failed");
        }
    }
}

/// Parses a stored `YYYY-MM-DD` day.
fn parse_day(day: &str) -> Result<NaiveDate, QueueError> {
    NaiveDate::parse_from_str(day, "%Y-%m-%d")
        .map_err(|_| QueueError::Corrupt(format!("counter day {day:?}")))
}

#[cfg(test)]
mod tests {
    use std::hash::BuildHasher;

    use super::{EXACT_USERS, UserSet};

    #[test]
    fn user_set_is_exact_up_to_the_cap_then_estimates() {
        let hasher = std::collections::hash_map::RandomState::new();
        let mut set = UserSet::default();
        for i in 0..EXACT_USERS {
            set.insert(hasher.hash_one(i));
            set.insert(hasher.hash_one(i));
        }
        assert_eq!(set.estimate(), EXACT_USERS as u64);
        assert_eq!(set.level, 0);

        let total = 3 * EXACT_USERS;
        for i in EXACT_USERS..total {
            set.insert(hasher.hash_one(i));
        }
        assert!(set.level > 0);
        assert!(set.hashes.len() <= EXACT_USERS);
        let estimate = set.estimate() as f64;
        let error = (estimate - total as f64).abs() / total as f64;
        assert!(error < 0.03, "estimate {estimate} of {total}");
        // Repeated users do not change the estimate.
        let before = set.estimate();
        for i in 0..total {
            set.insert(hasher.hash_one(i));
        }
        assert_eq!(set.estimate(), before);
    }
}
