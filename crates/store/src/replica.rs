//! A read replica (cluster mode): a second PostgreSQL pool on a hot standby of
//! the primary, which the locate path and the site's read-only pages read from
//! (through [`Store::read`]) while it is known to be fresh enough. Every write
//! goes to the primary.
//!
//! # How fresh is the replica?
//!
//! A background task checks once per `check_interval`, on connections of its
//! own (so a saturated read pool cannot make the replica look down):
//!
//! 1. at the local instant `t0` it reads the primary's WAL flush position
//!    `pg_current_wal_flush_lsn()` (every transaction acknowledged before `t0`
//!    lies below it) and the primary's clock;
//! 2. then, on the replica, `pg_is_in_recovery()`, the replay position
//!    `pg_last_wal_replay_lsn()` and `pg_last_xact_replay_timestamp()`.
//!
//! The replica holds everything the primary had acknowledged at some instant,
//! its *fresh-as-of* time:
//!
//! - `t0` itself when the replay position has reached the primary's position
//!   read at `t0` (an idle primary: nothing is missing, whatever the age of
//!   the last replayed transaction);
//! - otherwise the latest earlier check whose primary position the replay has
//!   reached (the task keeps the primary positions of the last minute), or the
//!   commit time of the last replayed transaction (on the primary's clock, so
//!   the two hosts' clocks need not agree), whichever is later.
//!
//! The lag is the time since then; it grows between checks, so reads use the
//! replica only until `fresh-as-of + max_lag` (one atomic load per read).
//! Comparing against the primary, rather than the replica's receive position
//! with its replay position, also catches a replica whose WAL receiver lost
//! the primary: it has replayed all it received, but it is not current. A
//! server that is not in recovery (a promoted former replica, or the primary
//! itself) is not used.
//!
//! A read that fails on the replica is retried on the primary; a connection
//! failure also stops replica reads until the next check succeeds.

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{Connection, PgConnection, PgPool};

use crate::{Backend, Result, Store, StoreError};

/// Settings of the read replica (`database_readonly_url` and its companions).
#[derive(Clone, Debug)]
pub struct ReplicaOptions {
    /// `postgres://…` of a hot standby streaming from the primary.
    pub url: String,
    /// Most pooled connections to the replica.
    pub max_connections: u32,
    /// Largest lag at which reads still use the replica; beyond it they go to
    /// the primary.
    pub max_lag: Duration,
    /// Time between two checks of the replica's health and lag.
    pub check_interval: Duration,
    /// How long a replica read waits for a connection (and a check for its
    /// answers) before it gives up and the primary is used.
    pub acquire_timeout: Duration,
}

impl ReplicaOptions {
    /// Options for `url` with the defaults: 8 connections, 5 s of lag at most,
    /// a check every second, 1 s to get a connection.
    pub fn new(url: impl Into<String>) -> ReplicaOptions {
        ReplicaOptions {
            url: url.into(),
            max_connections: 8,
            max_lag: Duration::from_secs(5),
            check_interval: Duration::from_secs(1),
            acquire_timeout: Duration::from_secs(1),
        }
    }
}

/// The replica as its last check (or a failed read since) found it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReplicaState {
    /// Fresh enough: reads use it.
    Ok,
    /// Answering, but behind the primary by more than the allowed lag (or by
    /// an unknown amount): reads use the primary.
    Lagging,
    /// Unreachable, not a standby, or failing: reads use the primary.
    Down,
}

impl ReplicaState {
    /// `"ok"`, `"lagging"` or `"down"`, for the heartbeat.
    pub fn as_str(self) -> &'static str {
        match self {
            ReplicaState::Ok => "ok",
            ReplicaState::Lagging => "lagging",
            ReplicaState::Down => "down",
        }
    }
}

/// What the heartbeat shows of the replica.
#[derive(Clone, Debug)]
pub struct ReplicaStatus {
    /// Whether reads use it right now.
    pub state: ReplicaState,
    /// Upper bound of its lag right now; `None` when unknown (down, or behind
    /// every position the check remembers).
    pub lag: Option<Duration>,
    /// The configured bound.
    pub max_lag: Duration,
    /// Time since the last completed check; `None` before the first.
    pub checked_ago: Option<Duration>,
    /// Why it is down or lagging, when known.
    pub error: Option<String>,
    /// Reads served by the replica since start.
    pub replica_reads: u64,
    /// Reads sent to the primary because the replica was not usable (or a read
    /// on it failed) since start.
    pub primary_reads: u64,
}

/// What one check concluded.
#[derive(Clone, Debug, Default)]
struct Checked {
    /// When the check completed.
    at: Option<Instant>,
    /// The replica holds everything acknowledged by the primary up to this
    /// instant; `None` when unknown.
    fresh_as_of: Option<Instant>,
    /// Down (with the reason) rather than merely lagging.
    down: Option<String>,
    /// Why it lags, when the lag is unknown.
    note: Option<String>,
}

/// The replica's pool, its state, and the handle of its check task.
#[derive(Debug)]
pub(crate) struct Replica {
    /// A store over the replica's pool (no replica of its own).
    store: Store,
    options: ReplicaOptions,
    /// Origin of the millisecond clock of `usable_until`.
    origin: Instant,
    /// Reads use the replica while `origin.elapsed()` in ms is below this.
    usable_until: AtomicU64,
    checked: Mutex<Checked>,
    replica_reads: AtomicU64,
    primary_reads: AtomicU64,
    closed: AtomicBool,
    wake: tokio::sync::Notify,
}

/// A read as [`Store::read`] takes it: a future borrowing the store it is
/// given.
pub type ReadFuture<'s, T> = Pin<Box<dyn Future<Output = Result<T>> + Send + 's>>;

impl Replica {
    fn millis(&self, at: Instant) -> u64 {
        u64::try_from(at.saturating_duration_since(self.origin).as_millis()).unwrap_or(u64::MAX)
    }

    fn usable(&self) -> bool {
        self.millis(Instant::now()) < self.usable_until.load(Ordering::Relaxed)
    }

    /// Stops replica reads until the next check, after a connection failure.
    fn failed(&self, error: &StoreError) {
        self.usable_until.store(0, Ordering::Relaxed);
        let mut checked = self.checked.lock().unwrap_or_else(|e| e.into_inner());
        if checked.down.is_none() {
            tracing::warn!(error = %error, "read replica failed: reading from the primary until it answers again");
        }
        checked.down = Some(format!("read failed: {error}"));
    }

    fn status(&self) -> ReplicaStatus {
        let now = Instant::now();
        let checked = self
            .checked
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let lag = match (&checked.down, checked.fresh_as_of) {
            (None, Some(fresh)) => Some(now.saturating_duration_since(fresh)),
            _ => None,
        };
        let state = if self.usable() {
            ReplicaState::Ok
        } else if checked.down.is_some() || checked.at.is_none() {
            ReplicaState::Down
        } else {
            ReplicaState::Lagging
        };
        let error = match state {
            ReplicaState::Ok => None,
            ReplicaState::Down => Some(
                checked
                    .down
                    .clone()
                    .unwrap_or_else(|| "not checked yet".into()),
            ),
            ReplicaState::Lagging => checked.note.clone(),
        };
        ReplicaStatus {
            state,
            lag,
            max_lag: self.options.max_lag,
            checked_ago: checked.at.map(|at| now.saturating_duration_since(at)),
            error,
            replica_reads: self.replica_reads.load(Ordering::Relaxed),
            primary_reads: self.primary_reads.load(Ordering::Relaxed),
        }
    }

    /// Records a check's outcome and moves the read deadline.
    fn record(&self, outcome: Checked) {
        let until = match (&outcome.down, outcome.fresh_as_of) {
            (None, Some(fresh)) => self
                .millis(fresh)
                .saturating_add(u64::try_from(self.options.max_lag.as_millis()).unwrap_or(u64::MAX))
                .max(1),
            _ => 0,
        };
        let mut checked = self.checked.lock().unwrap_or_else(|e| e.into_inner());
        let was_down = checked.at.map(|_| checked.down.is_some());
        match (&outcome.down, was_down) {
            (Some(reason), None | Some(false)) => {
                tracing::warn!(reason = %reason, "read replica down: reading from the primary")
            }
            (None, Some(true)) => tracing::info!("read replica answers again"),
            _ => {}
        }
        *checked = outcome;
        self.usable_until.store(until, Ordering::Relaxed);
    }
}

/// Whether a failed replica read means the replica cannot be reached (rather
/// than, say, a query cancelled by a recovery conflict).
fn connection_failure(error: &StoreError) -> bool {
    matches!(
        error,
        StoreError::Database(
            sqlx::Error::Io(_)
                | sqlx::Error::Tls(_)
                | sqlx::Error::PoolTimedOut
                | sqlx::Error::PoolClosed
                | sqlx::Error::WorkerCrashed
                | sqlx::Error::Protocol(_)
        )
    )
}

/// How long the check remembers the primary's positions.
const HISTORY: Duration = Duration::from_secs(60);

/// One position of the primary.
#[derive(Clone, Copy, Debug)]
struct Sample {
    at: Instant,
    lsn: i64,
}

/// The check task's connections and memory.
struct Checker {
    primary_options: PgConnectOptions,
    replica_options: PgConnectOptions,
    primary: Option<PgConnection>,
    replica: Option<PgConnection>,
    history: VecDeque<Sample>,
    timeout: Duration,
}

/// What the replica said.
struct ReplicaReading {
    in_recovery: bool,
    replay_lsn: Option<i64>,
    replay_time_ms: Option<f64>,
}

impl Checker {
    async fn connection<'c>(
        slot: &'c mut Option<PgConnection>,
        options: &PgConnectOptions,
    ) -> std::result::Result<&'c mut PgConnection, sqlx::Error> {
        if slot.is_none() {
            *slot = Some(PgConnection::connect_with(options).await?);
        }
        slot.as_mut().ok_or(sqlx::Error::PoolClosed)
    }

    /// The primary's flush position and clock (ms since the epoch).
    async fn primary_sample(&mut self) -> std::result::Result<(i64, f64), String> {
        let (slot, options) = (&mut self.primary, &self.primary_options);
        let query = async move {
            let conn = Self::connection(slot, options).await?;
            sqlx::query_as::<_, (i64, f64)>(
                "SELECT (pg_current_wal_flush_lsn() - '0/0'::pg_lsn)::bigint, \
                 (extract(epoch FROM clock_timestamp()) * 1000)::float8",
            )
            .fetch_one(conn)
            .await
        };
        let answer = tokio::time::timeout(self.timeout, query).await;
        match answer {
            Ok(Ok(sample)) => Ok(sample),
            Ok(Err(e)) => {
                self.primary = None;
                Err(e.to_string())
            }
            Err(_) => {
                self.primary = None;
                Err(format!("no answer within {:?}", self.timeout))
            }
        }
    }

    async fn replica_reading(&mut self) -> std::result::Result<ReplicaReading, String> {
        let (slot, options) = (&mut self.replica, &self.replica_options);
        let query = async move {
            let conn = Self::connection(slot, options).await?;
            sqlx::query_as::<_, (bool, Option<i64>, Option<f64>)>(
                "SELECT pg_is_in_recovery(), (pg_last_wal_replay_lsn() - '0/0'::pg_lsn)::bigint, \
                 (extract(epoch FROM pg_last_xact_replay_timestamp()) * 1000)::float8",
            )
            .fetch_one(conn)
            .await
        };
        let answer = tokio::time::timeout(self.timeout, query).await;
        match answer {
            Ok(Ok((in_recovery, replay_lsn, replay_time_ms))) => Ok(ReplicaReading {
                in_recovery,
                replay_lsn,
                replay_time_ms,
            }),
            Ok(Err(e)) => {
                self.replica = None;
                Err(e.to_string())
            }
            Err(_) => {
                self.replica = None;
                Err(format!("no answer within {:?}", self.timeout))
            }
        }
    }

    /// One check: see the module documentation.
    async fn check(&mut self) -> Checked {
        let t0 = Instant::now();
        let primary = self.primary_sample().await;
        let reading = self.replica_reading().await;
        let at = Instant::now();
        self.history
            .retain(|s| at.saturating_duration_since(s.at) <= HISTORY);
        let outcome = judge(t0, at, &primary, reading, &self.history);
        if let Ok((lsn, _)) = primary {
            self.history.push_back(Sample { at: t0, lsn });
        }
        outcome
    }
}

/// What a check concludes (see the module documentation): `primary` is the
/// primary's flush position and clock (ms since the epoch) read at `t0`,
/// `reading` what the replica said afterwards, `history` the primary's
/// positions at earlier checks (oldest first); `at` is when the check ended.
fn judge(
    t0: Instant,
    at: Instant,
    primary: &std::result::Result<(i64, f64), String>,
    reading: std::result::Result<ReplicaReading, String>,
    history: &VecDeque<Sample>,
) -> Checked {
    let down = |reason: String| Checked {
        at: Some(at),
        down: Some(reason),
        ..Checked::default()
    };
    let reading = match reading {
        Ok(r) => r,
        Err(e) => return down(e),
    };
    if !reading.in_recovery {
        return down("not a standby (pg_is_in_recovery() is false)".into());
    }
    let Some(replay) = reading.replay_lsn else {
        return down("no WAL replayed yet".into());
    };
    let mut note = None;
    let fresh_as_of = match primary {
        // Everything acknowledged before t0 is replayed: current as of t0,
        // however old the last replayed transaction (an idle primary).
        Ok((lsn, _)) if replay >= *lsn => Some(t0),
        other => {
            if let Err(e) = other {
                note = Some(format!("primary position unknown: {e}"));
            }
            let from_history = history.iter().rev().find(|s| s.lsn <= replay).map(|s| s.at);
            // The last replayed commit, on the primary's clock at t0.
            let from_commit = match (other, reading.replay_time_ms) {
                (Ok((_, primary_now)), Some(commit)) => {
                    Duration::try_from_secs_f64(((*primary_now - commit) / 1000.0).max(0.0))
                        .ok()
                        .and_then(|age| t0.checked_sub(age))
                }
                _ => None,
            };
            let fresh = from_history.max(from_commit);
            if fresh.is_none() && note.is_none() {
                note = Some("behind every primary position of the last minute".into());
            }
            fresh
        }
    };
    Checked {
        at: Some(at),
        fresh_as_of,
        down: None,
        note,
    }
}

/// Checks the replica every `check_interval` until the store is closed or
/// dropped.
async fn run_checks(replica: Weak<Replica>, mut checker: Checker, interval: Duration) {
    loop {
        let Some(strong) = replica.upgrade() else {
            return;
        };
        if strong.closed.load(Ordering::Relaxed) {
            return;
        }
        let outcome = checker.check().await;
        strong.record(outcome);
        let sleep = tokio::time::sleep(interval);
        tokio::select! {
            _ = sleep => {}
            _ = strong.wake.notified() => {}
        }
    }
}

impl Store {
    /// Adds a read replica to this PostgreSQL store and starts its check task
    /// (so this needs a Tokio runtime). The replica is connected lazily: a
    /// replica that is down at start only means reads use the primary until
    /// it answers. Fails for a SQLite store or a replica URL that is not
    /// PostgreSQL.
    pub(crate) fn attach_replica(
        mut self,
        options: &ReplicaOptions,
        pg_schema: Option<&str>,
    ) -> Result<Store> {
        let Backend::Postgres(primary) = &self.backend else {
            return Err(StoreError::ReplicaNeedsPostgres);
        };
        if !(options.url.starts_with("postgres:") || options.url.starts_with("postgresql:")) {
            return Err(StoreError::UnsupportedUrl(options.url.clone()));
        }
        let mut connect: PgConnectOptions = options.url.parse()?;
        if connect.get_application_name().is_none() {
            connect = connect.application_name("ichnaea-readonly");
        }
        if let Some(schema) = pg_schema {
            connect = connect.options([("search_path", schema)]);
        }
        let pool: PgPool = PgPoolOptions::new()
            .max_connections(options.max_connections.max(1))
            .acquire_timeout(options.acquire_timeout)
            .connect_lazy_with(connect.clone());
        let replica = Arc::new(Replica {
            store: Store {
                backend: Backend::Postgres(pool),
                reader: None,
                replica: None,
                lock_scope: None,
            },
            options: options.clone(),
            origin: Instant::now(),
            usable_until: AtomicU64::new(0),
            checked: Mutex::new(Checked::default()),
            replica_reads: AtomicU64::new(0),
            primary_reads: AtomicU64::new(0),
            closed: AtomicBool::new(false),
            wake: tokio::sync::Notify::new(),
        });
        let checker = Checker {
            primary_options: (*primary.connect_options()).clone(),
            replica_options: connect,
            primary: None,
            replica: None,
            history: VecDeque::new(),
            timeout: options.acquire_timeout.max(Duration::from_millis(100)),
        };
        let interval = options.check_interval.max(Duration::from_millis(10));
        tokio::spawn(run_checks(Arc::downgrade(&replica), checker, interval));
        self.replica = Some(replica);
        Ok(self)
    }

    /// Runs the read `read` on the replica when one is configured and fresh
    /// enough, else on the primary; a replica read that fails is retried on
    /// the primary. For reads that may be up to `max_lag` behind the primary:
    /// the locate lookups and the site's statistics.
    ///
    /// ```ignore
    /// let rows = store.read(|s| Box::pin(s.wifi_stations(&macs))).await?;
    /// ```
    pub async fn read<'s, T>(&'s self, read: impl Fn(&'s Store) -> ReadFuture<'s, T>) -> Result<T> {
        let Some(replica) = &self.replica else {
            return read(self).await;
        };
        if replica.usable() {
            match read(&replica.store).await {
                Ok(value) => {
                    replica.replica_reads.fetch_add(1, Ordering::Relaxed);
                    return Ok(value);
                }
                Err(e) => {
                    if connection_failure(&e) {
                        replica.failed(&e);
                    } else {
                        tracing::debug!(error = %e, "replica read failed, retrying on the primary");
                    }
                }
            }
        }
        replica.primary_reads.fetch_add(1, Ordering::Relaxed);
        read(self).await
    }

    /// The read replica's state, lag and read counts; `None` without one.
    pub fn replica_status(&self) -> Option<ReplicaStatus> {
        self.replica.as_ref().map(|r| r.status())
    }

    /// Stops the replica's check task and closes its pool.
    pub(crate) async fn close_replica(&self) {
        if let Some(replica) = &self.replica {
            replica.closed.store(true, Ordering::Relaxed);
            replica.wake.notify_one();
            if let Backend::Postgres(pool) = &replica.store.backend {
                pool.close().await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: Duration = Duration::from_secs(1);

    fn reading(replay: i64, commit_ms: Option<f64>) -> std::result::Result<ReplicaReading, String> {
        Ok(ReplicaReading {
            in_recovery: true,
            replay_lsn: Some(replay),
            replay_time_ms: commit_ms,
        })
    }

    /// A clock origin an hour in the past, so instants can be taken before "now".
    fn base() -> Instant {
        Instant::now()
            .checked_sub(Duration::from_secs(3600))
            .unwrap_or_else(Instant::now)
    }

    /// An idle primary: the last transaction is an hour old, but the replica
    /// has replayed up to the primary's position, so it is current.
    #[test]
    fn idle_primary_is_no_lag() {
        let t0 = base() + 3000 * S;
        let now_ms = 1.0e12;
        let c = judge(
            t0,
            t0,
            &Ok((500, now_ms)),
            reading(500, Some(now_ms - 3_600_000.0)),
            &VecDeque::new(),
        );
        assert_eq!(c.fresh_as_of, Some(t0));
        assert!(c.down.is_none());
    }

    /// A busy primary slightly ahead: the last replayed commit (50 ms before
    /// t0) bounds the lag more tightly than the check a second earlier.
    #[test]
    fn busy_primary_lag_is_the_last_commit_age() {
        let t0 = base() + 3000 * S;
        let now_ms = 1.0e12;
        let history = VecDeque::from([Sample {
            at: t0 - S,
            lsn: 400,
        }]);
        let c = judge(
            t0,
            t0,
            &Ok((500, now_ms)),
            reading(490, Some(now_ms - 50.0)),
            &history,
        );
        let lag = t0 - c.fresh_as_of.unwrap();
        assert!(
            lag >= Duration::from_millis(49) && lag <= Duration::from_millis(51),
            "{lag:?}"
        );
    }

    /// Replay paused (or the WAL receiver cut off) while the primary writes:
    /// the replica is as fresh as the last check whose position it reached,
    /// although its own receive and replay positions may agree.
    #[test]
    fn stuck_replica_ages_with_the_primary() {
        let t0 = base() + 3000 * S;
        let now_ms = 1.0e12;
        let history = VecDeque::from([
            Sample {
                at: t0 - 10 * S,
                lsn: 100,
            },
            Sample {
                at: t0 - 9 * S,
                lsn: 200,
            },
            Sample {
                at: t0 - 8 * S,
                lsn: 300,
            },
        ]);
        let c = judge(
            t0,
            t0,
            &Ok((900, now_ms)),
            reading(200, Some(now_ms - 30_000.0)),
            &history,
        );
        assert_eq!(c.fresh_as_of, Some(t0 - 9 * S));
        // Behind every remembered position and no commit time: unknown, not
        // usable.
        let c = judge(t0, t0, &Ok((900, now_ms)), reading(50, None), &history);
        assert_eq!(c.fresh_as_of, None);
        assert!(c.note.is_some());
    }

    /// Not a standby, unreachable, or nothing replayed: down.
    #[test]
    fn down_cases() {
        let t0 = base() + 3000 * S;
        let none = VecDeque::new();
        let not_standby = Ok(ReplicaReading {
            in_recovery: false,
            replay_lsn: None,
            replay_time_ms: None,
        });
        for r in [
            not_standby,
            Err("connection refused".to_string()),
            Ok(ReplicaReading {
                in_recovery: true,
                replay_lsn: None,
                replay_time_ms: None,
            }),
        ] {
            let c = judge(t0, t0, &Ok((1, 0.0)), r, &none);
            assert!(c.down.is_some());
            assert!(c.fresh_as_of.is_none());
        }
    }

    /// The primary unreachable: the remembered positions still bound the lag.
    #[test]
    fn primary_unknown_uses_the_history() {
        let t0 = base() + 3000 * S;
        let history = VecDeque::from([Sample {
            at: t0 - 2 * S,
            lsn: 100,
        }]);
        let c = judge(
            t0,
            t0,
            &Err("timeout".into()),
            reading(100, Some(0.0)),
            &history,
        );
        assert_eq!(c.fresh_as_of, Some(t0 - 2 * S));
        assert!(c.note.is_some());
    }
}
