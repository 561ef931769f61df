//! Named FIFO queues with leased batches and stable batch ids.
//!
//! Every stage of the ichnaea pipeline hands work to the next one through a queue
//! (`update_incoming`, `queue_export_<name>`, `update_wifi_<shard>`, ...). A consumer
//! [`lease`](Queue::lease)s a [`Batch`], applies it and then [`ack`](Queue::ack)s it.
//! A batch that is not acknowledged within its visibility timeout is handed out
//! again, with the *same* batch id and the *same* items, so a consumer that records
//! the batch id in the same database transaction as its effects can skip replays and
//! apply every item exactly once.
//!
//! Two backends implement the same contract:
//! - [`embedded::EmbeddedQueue`] keeps the queues in the service's own SQLite file, for
//!   the single-process deployment;
//! - [`redis::RedisQueue`] keeps them in Redis Streams, for the cluster deployment.
//!
//! No data is ever expired: an item leaves a queue only when the batch holding it is
//! acknowledged.
//!
//! The crate also holds the per-day [`Counters`] of the web tier (daily API-key limits
//! and unique users), on the same two backends.

#![warn(missing_docs)]

pub mod counters;
pub mod embedded;
mod frame;
pub mod leader;
pub mod redis;
pub mod redis_check;

use std::time::Duration;

pub use counters::Counters;
pub use leader::LeaderLease;

/// The largest number of entries (pushes) one batch is made of.
///
/// `lease(max_items)` bounds a batch by items; this additionally bounds the number of
/// entries so that a huge `max_items` cannot make one lease read an unbounded amount
/// of data at once.
pub const MAX_BATCH_ENTRIES: usize = 10_000;

/// A set of named FIFO queues, on one of the two backends.
///
/// The backend is chosen once, by configuration, when the service starts; the rest of
/// the program only sees this type. Cloning is cheap and shares the underlying pool or
/// connection.
#[derive(Debug, Clone)]
pub enum Queue {
    /// Queues stored in the service's SQLite file.
    Embedded(embedded::EmbeddedQueue),
    /// Queues stored in Redis Streams.
    Redis(redis::RedisQueue),
}

/// Why a queue operation failed.
#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    /// The SQLite database of the embedded queue failed.
    #[error("sqlite queue: {0}")]
    Sqlite(#[from] sqlx::Error),
    /// The Redis server failed or could not be reached.
    #[error("redis queue: {0}")]
    Redis(#[from] ::redis::RedisError),
    /// Stored queue data does not have the expected shape; it was written by something
    /// else or damaged.
    #[error("corrupt queue data: {0}")]
    Corrupt(String),
    /// A batch was handed to a queue of the other backend than the one it came from.
    #[error("batch {0} was leased from a queue of another backend")]
    ForeignBatch(String),
    /// An item is larger than the storage format can frame (4 GiB).
    #[error("queue item of {len} bytes is too large")]
    ItemTooLarge {
        /// Size of the offending item in bytes.
        len: usize,
    },
}

/// A leased group of items, taken from the front of one queue.
///
/// A batch consists of whole entries (each [`Queue::push`] is one entry), in the order
/// they were pushed. Until it is acknowledged with [`Queue::ack`] its items stay in the
/// queue; once its visibility timeout has elapsed it is handed out again with the same
/// `id` and the same `items`.
#[derive(Debug, Clone)]
pub struct Batch {
    /// Name of the queue the batch was leased from.
    pub queue: String,
    /// Stable identifier of the batch: the same on every re-delivery, never reused
    /// for another batch. Consumers record it to detect replays.
    pub id: String,
    /// The items, in push order.
    pub items: Vec<Vec<u8>>,
    /// Backend-specific data needed to acknowledge the batch.
    handle: AckHandle,
}

/// What a backend needs, beyond the batch id, to acknowledge a batch.
#[derive(Debug, Clone)]
enum AckHandle {
    /// The embedded queue finds the entries by batch id.
    Embedded,
    /// The Redis stream entry ids that make up the batch.
    Redis(Vec<String>),
}

impl Queue {
    /// Opens the embedded queue stored in the given SQLite pool (the service's own
    /// SQLite file, normally in WAL mode).
    ///
    /// Creates the queue tables if they are missing, so opening is idempotent and
    /// entries left by an earlier process are found again.
    pub async fn embedded(pool: sqlx::SqlitePool) -> Result<Queue, QueueError> {
        Ok(Queue::Embedded(embedded::EmbeddedQueue::open(pool).await?))
    }

    /// Connects to the Redis queue at `url`; every key it uses starts with `prefix`
    /// (production uses `""`, tests a random prefix).
    pub async fn redis(url: &str, prefix: &str) -> Result<Queue, QueueError> {
        Ok(Queue::Redis(redis::RedisQueue::connect(url, prefix).await?))
    }

    /// Name of the backend, for logs and the heartbeat: `"sqlite"` or `"redis"`.
    pub fn backend(&self) -> &'static str {
        match self {
            Queue::Embedded(_) => "sqlite",
            Queue::Redis(_) => "redis",
        }
    }

    /// Checks that the backend answers, for health checks.
    pub async fn ping(&self) -> Result<(), QueueError> {
        match self {
            Queue::Embedded(q) => q.ping().await,
            Queue::Redis(q) => q.ping().await,
        }
    }

    /// Appends `items` to `queue` as one entry, atomically (all or nothing).
    ///
    /// Returns only once the entry is durable (SQLite commit, Redis reply), so a caller
    /// may answer its client with success afterwards. Pushing no items does nothing.
    pub async fn push(&self, queue: &str, items: Vec<Vec<u8>>) -> Result<(), QueueError> {
        if items.is_empty() {
            return Ok(());
        }
        match self {
            Queue::Embedded(q) => q.push(queue, &items).await?,
            Queue::Redis(q) => q.push(queue, &items).await?,
        }
        self.pushed().notify_one();
        Ok(())
    }

    /// Signalled after every successful [`Queue::push`] through this queue or
    /// a clone of it (one process): an idle worker of the same process waits
    /// on it, so work submitted there is taken at once while the worker polls
    /// rarely for work pushed by other processes. A push while nobody waits
    /// leaves one permit, so the next wait returns at once.
    pub fn pushed(&self) -> &tokio::sync::Notify {
        match self {
            Queue::Embedded(q) => &q.pushed,
            Queue::Redis(q) => &q.pushed,
        }
    }

    /// Leases the next batch of `queue`, or returns `None` if nothing is available.
    ///
    /// A batch that was leased earlier and whose visibility has elapsed without an ack
    /// is handed out first, with its original id and items. Otherwise a new batch is
    /// formed from whole entries, oldest first, adding entries while the item count
    /// stays within `max_items` — but always at least one entry, even if it alone holds
    /// more than `max_items` items (and at most [`MAX_BATCH_ENTRIES`] entries).
    ///
    /// The batch is invisible to other `lease` calls until it is acknowledged or until
    /// `visibility` has elapsed.
    pub async fn lease(
        &self,
        queue: &str,
        max_items: usize,
        visibility: Duration,
    ) -> Result<Option<Batch>, QueueError> {
        match self {
            Queue::Embedded(q) => q.lease(queue, max_items, visibility).await,
            Queue::Redis(q) => q.lease(queue, max_items, visibility).await,
        }
    }

    /// Removes the batch's entries from the queue for good.
    ///
    /// Acknowledging a batch twice, or after it was re-leased to another consumer, is
    /// not an error and does not disturb the item count.
    pub async fn ack(&self, batch: &Batch) -> Result<(), QueueError> {
        match self {
            Queue::Embedded(q) => q.ack(batch).await,
            Queue::Redis(q) => q.ack(batch).await,
        }
    }

    /// Pushes `outputs` (queue name, items; one entry per queue) and acknowledges
    /// `batch`, atomically. Returns `false` and changes nothing when the batch was
    /// already acknowledged — a re-delivered batch whose work was done — so a
    /// queue-to-queue stage hands every item on exactly once.
    pub async fn transfer(
        &self,
        batch: &Batch,
        outputs: &[(String, Vec<Vec<u8>>)],
    ) -> Result<bool, QueueError> {
        match self {
            Queue::Embedded(q) => q.transfer(batch, outputs).await,
            Queue::Redis(q) => q.transfer(batch, outputs).await,
        }
    }

    /// Number of items (not entries) pushed to `queue` and not yet acknowledged,
    /// leased ones included. Cheap: it reads a maintained counter, for backpressure
    /// checks and gauges.
    pub async fn len(&self, queue: &str) -> Result<u64, QueueError> {
        match self {
            Queue::Embedded(q) => q.len(queue).await,
            Queue::Redis(q) => q.len(queue).await,
        }
    }

    /// Age of the oldest unacknowledged entry of `queue`, or `None` if it is empty.
    ///
    /// Readiness and lag are judged by this age rather than by the time since the last
    /// push.
    pub async fn oldest_age(&self, queue: &str) -> Result<Option<Duration>, QueueError> {
        match self {
            Queue::Embedded(q) => q.oldest_age(queue).await,
            Queue::Redis(q) => q.oldest_age(queue).await,
        }
    }

    /// Deletes every entry of `queue`, leased ones included, and returns the number
    /// of items removed. For the queue of a deleted export target, which nothing
    /// consumes any more; never for a queue that is still in use.
    pub async fn purge(&self, queue: &str) -> Result<u64, QueueError> {
        match self {
            Queue::Embedded(q) => q.purge(queue).await,
            Queue::Redis(q) => q.purge(queue).await,
        }
    }

    /// Names of all queues whose name starts with `prefix` and that hold unacknowledged
    /// items, sorted; for gauges and for finding export partitions such as
    /// `queue_export_backup:gnss:key`.
    pub async fn queue_names(&self, prefix: &str) -> Result<Vec<String>, QueueError> {
        match self {
            Queue::Embedded(q) => q.queue_names(prefix).await,
            Queue::Redis(q) => q.queue_names(prefix).await,
        }
    }
}

/// A duration in whole milliseconds, saturating, as both backends store time in ms.
fn duration_ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}
