//! Leader election for the scheduler: in a cluster several scheduler processes
//! run (a hot spare), and only the holder of a Redis lease runs periodic tasks.
//! The lease expires unless renewed, so a spare takes over within one lease
//! period after the leader dies. Embedded mode has one process: always leader.

use std::sync::LazyLock;
use std::time::Duration;

use ::redis::Script;
use ::redis::aio::ConnectionManager;

use crate::{Queue, QueueError};

/// Acquires the lease or, if we hold it, extends it; returns 1 when we hold it.
static HOLD: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
        local current = redis.call('GET', KEYS[1])
        if current == ARGV[1] then
            redis.call('PEXPIRE', KEYS[1], ARGV[2])
            return 1
        end
        if not current then
            redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
            return 1
        end
        return 0
        ",
    )
});

/// Gives the lease up if we hold it.
static RELEASE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
        if redis.call('GET', KEYS[1]) == ARGV[1] then
            return redis.call('DEL', KEYS[1])
        end
        return 0
        ",
    )
});

/// Claims a periodic task's run for `ARGV[2]` ms unless a claim is still
/// running: `{1, 0}` when claimed, else `{0, ms left}`.
static CLAIM_RUN: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
        if redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2], 'NX') then
            return {1, 0}
        end
        return {0, redis.call('PTTL', KEYS[1])}
        ",
    )
});

/// A named lease shared by every process of a deployment.
#[derive(Clone, Debug)]
pub enum LeaderLease {
    /// One process: it always leads.
    Local,
    /// A Redis key holding the leader's id with an expiry.
    Redis {
        /// Connection shared with the queue.
        conn: ConnectionManager,
        /// The lease key.
        key: String,
        /// This process's id.
        holder: String,
    },
}

impl LeaderLease {
    /// The lease `name` on the queue's backend.
    pub fn for_queue(queue: &Queue, name: &str) -> LeaderLease {
        match queue {
            Queue::Embedded(_) => LeaderLease::Local,
            Queue::Redis(q) => LeaderLease::Redis {
                conn: q.connection().clone(),
                key: format!("{}leader:{name}", q.prefix()),
                holder: uuid::Uuid::new_v4().simple().to_string(),
            },
        }
    }

    /// Acquires or renews the lease for `ttl`; true while this process leads.
    pub async fn hold(&self, ttl: Duration) -> Result<bool, QueueError> {
        match self {
            LeaderLease::Local => Ok(true),
            LeaderLease::Redis { conn, key, holder } => {
                let ms = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1);
                let held: i64 = HOLD
                    .key(key)
                    .arg(holder)
                    .arg(ms)
                    .invoke_async(&mut conn.clone())
                    .await?;
                Ok(held == 1)
            }
        }
    }

    /// Claims a run of the periodic task `task`, due every `interval`, for the
    /// whole deployment: `None` when no process claimed one within the last
    /// `interval` (this process runs it now), else the time until one may be
    /// claimed. The claim is a key `<lease key>:ran:<task>` expiring after
    /// `interval`, so it survives the leader that made it.
    pub async fn claim_run(
        &self,
        task: &str,
        interval: Duration,
    ) -> Result<Option<Duration>, QueueError> {
        match self {
            LeaderLease::Local => Ok(None),
            LeaderLease::Redis { conn, key, holder } => {
                let ms = u64::try_from(interval.as_millis())
                    .unwrap_or(u64::MAX)
                    .max(1);
                let (claimed, left): (i64, i64) = CLAIM_RUN
                    .key(format!("{key}:ran:{task}"))
                    .arg(holder)
                    .arg(ms)
                    .invoke_async(&mut conn.clone())
                    .await?;
                Ok(if claimed == 1 {
                    None
                } else {
                    // A claim without expiry cannot be made here; wait a
                    // second rather than spin if one is found.
                    let left = u64::try_from(left).unwrap_or(1000).max(1);
                    Some(Duration::from_millis(left))
                })
            }
        }
    }

    /// Gives the lease up (graceful shutdown), so a spare takes over at once.
    pub async fn release(&self) -> Result<(), QueueError> {
        if let LeaderLease::Redis { conn, key, holder } = self {
            let _: i64 = RELEASE
                .key(key)
                .arg(holder)
                .invoke_async(&mut conn.clone())
                .await?;
        }
        Ok(())
    }
}
