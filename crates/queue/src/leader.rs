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
