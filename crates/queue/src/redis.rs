//! The Redis queue backend: one Redis Stream per queue, read through a consumer group.
//!
//! Keys of a queue `<name>` (all share the hash tag `{<name>}`, so they live in one
//! Redis Cluster slot and the Lua scripts may touch them together):
//! - `<prefix>queue:{<name>}`: the stream, one entry per push with the fields
//!   `items` (all items as length-prefixed frames) and `n` (their number). The entry
//!   id carries the push time. Consumer group `ichnaea`, created on the first lease at
//!   id `0`; each process reads as its own consumer `ichnaea-<uuid>`.
//! - `<prefix>queue:{<name>}:batches`: hash, batch id → `"<first entry id> <last entry
//!   id> <item count>"` for every leased, unacknowledged batch.
//! - `<prefix>queue:{<name>}:leases`: sorted set of the same batch ids, scored by their
//!   lease deadline (Unix ms, Redis clock).
//! - `<prefix>queue:{<name>}:items`: the number of unacknowledged items.
//!
//! and one key for all queues: `<prefix>queues`, the set of queue names ever pushed to.
//!
//! Leasing and acknowledging are Lua scripts (`redis/lease.lua`, `redis/ack.lua`), so
//! each is atomic: an entry is never delivered to the consumer group without being
//! recorded in a batch, an expired batch is re-formed from its record with the same id
//! and entries, and a second ack finds no record and changes nothing. Acknowledged
//! entries are deleted from the stream (`XACK` + `XDEL`); nothing is ever trimmed or
//! expired otherwise.

use std::sync::LazyLock;
use std::time::Duration;

use ::redis::aio::ConnectionManager;
use ::redis::{Client, Script, Value};

use crate::{AckHandle, Batch, MAX_BATCH_ENTRIES, QueueError, duration_ms, frame};

/// The consumer group every process reads through.
const GROUP: &str = "ichnaea";

/// Leases a batch; see the script for its keys and arguments.
static LEASE: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("redis/lease.lua")));

/// Acknowledges a batch; see the script for its keys and arguments.
static ACK: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("redis/ack.lua")));

/// Pushes outputs and acknowledges a batch in one step; see the script.
static TRANSFER: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("redis/transfer.lua")));

/// What `lease.lua` answers for a batch: its id, entry ids, blobs, item counts, and
/// whether it is a re-delivery.
type LeaseReply = (String, Vec<String>, Vec<Vec<u8>>, Vec<i64>, i64);

/// Queues kept in Redis Streams; see the module documentation for the layout.
#[derive(Clone)]
pub struct RedisQueue {
    conn: ConnectionManager,
    prefix: String,
    consumer: String,
    /// Signalled after each push through this handle or a clone of it.
    pub(crate) pushed: std::sync::Arc<tokio::sync::Notify>,
}

impl std::fmt::Debug for RedisQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisQueue")
            .field("prefix", &self.prefix)
            .field("consumer", &self.consumer)
            .finish_non_exhaustive()
    }
}

/// How often a command tries to reconnect to an unreachable Redis before it
/// fails: twice, 100 ms and 200 ms apart. The client's default (six, up to
/// 3.2 s apart) made each submission wait ~6 s for its 503 while Redis was
/// unreachable; callers retry anyway (clients after a 503, the worker's next
/// pass), so failing fast costs nothing.
const RECONNECT_RETRIES: usize = 2;

/// A connection to `url` that reconnects by itself after failures, with the
/// client's timeouts (1 s to connect, 500 ms per response) and
/// [`RECONNECT_RETRIES`].
pub(crate) async fn connection_manager(url: &str) -> Result<ConnectionManager, QueueError> {
    let config = ::redis::aio::ConnectionManagerConfig::new()
        .set_number_of_retries(RECONNECT_RETRIES)
        .set_max_delay(std::time::Duration::from_secs(1));
    Ok(ConnectionManager::new_with_config(Client::open(url)?, config).await?)
}

/// The Redis keys of one queue.
struct Keys {
    stream: String,
    batches: String,
    leases: String,
    items: String,
}

impl RedisQueue {
    /// Connects to `url`; the connection reconnects by itself after failures.
    pub(crate) async fn connect(url: &str, prefix: &str) -> Result<Self, QueueError> {
        let conn = connection_manager(url).await?;
        Ok(Self {
            conn,
            prefix: prefix.to_owned(),
            consumer: format!("ichnaea-{}", uuid::Uuid::new_v4().simple()),
            pushed: Default::default(),
        })
    }

    /// The connection manager, to share it with the Redis counters.
    pub(crate) fn connection(&self) -> &ConnectionManager {
        &self.conn
    }

    /// The prefix of every key.
    pub(crate) fn prefix(&self) -> &str {
        &self.prefix
    }

    fn keys(&self, queue: &str) -> Keys {
        let stream = format!("{}queue:{{{queue}}}", self.prefix);
        Keys {
            batches: format!("{stream}:batches"),
            leases: format!("{stream}:leases"),
            items: format!("{stream}:items"),
            stream,
        }
    }

    fn registry(&self) -> String {
        format!("{}queues", self.prefix)
    }

    pub(crate) async fn ping(&self) -> Result<(), QueueError> {
        let _: String = ::redis::cmd("PING")
            .query_async(&mut self.conn.clone())
            .await?;
        Ok(())
    }

    pub(crate) async fn push(&self, queue: &str, items: &[Vec<u8>]) -> Result<(), QueueError> {
        let blob = frame::encode(items)?;
        let count = items.len();
        let keys = self.keys(queue);
        // One round trip: register the name (its own slot, so outside the transaction),
        // then add the entry and count its items atomically.
        let mut pipe = ::redis::pipe();
        pipe.cmd("SADD").arg(self.registry()).arg(queue).ignore();
        pipe.cmd("MULTI").ignore();
        pipe.cmd("XADD")
            .arg(&keys.stream)
            .arg("*")
            .arg("items")
            .arg(blob)
            .arg("n")
            .arg(count)
            .ignore();
        pipe.cmd("INCRBY").arg(&keys.items).arg(count).ignore();
        pipe.cmd("EXEC");
        // Typed, so that an error inside the transaction surfaces as an error.
        let _: ((String, i64),) = pipe.query_async(&mut self.conn.clone()).await?;
        Ok(())
    }

    pub(crate) async fn lease(
        &self,
        queue: &str,
        max_items: usize,
        visibility: Duration,
    ) -> Result<Option<Batch>, QueueError> {
        let keys = self.keys(queue);
        let new_id = uuid::Uuid::new_v4().simple().to_string();
        let mut invocation = LEASE.prepare_invoke();
        invocation
            .key(&keys.stream)
            .key(&keys.batches)
            .key(&keys.leases)
            .arg(GROUP)
            .arg(&self.consumer)
            .arg(max_items.min(u32::MAX as usize))
            .arg(duration_ms(visibility))
            .arg(&new_id)
            .arg(MAX_BATCH_ENTRIES);
        let reply: Option<LeaseReply> = invocation.invoke_async(&mut self.conn.clone()).await?;
        let Some((id, entry_ids, blobs, counts, redelivered)) = reply else {
            return Ok(None);
        };
        if entry_ids.len() != blobs.len() || entry_ids.len() != counts.len() {
            return Err(QueueError::Corrupt(format!(
                "malformed lease reply for batch {id}"
            )));
        }
        if redelivered != 0 {
            tracing::warn!(
                queue,
                batch_id = id,
                "queue lease expired; handing the batch out again"
            );
        }
        let mut items = Vec::new();
        for ((entry, blob), count) in entry_ids.iter().zip(&blobs).zip(counts) {
            let count = usize::try_from(count).map_err(|_| {
                QueueError::Corrupt(format!("stream entry {entry} of {queue} lacks items or n"))
            })?;
            items.extend(frame::decode(blob, count)?);
        }
        Ok(Some(Batch {
            queue: queue.to_owned(),
            id,
            items,
            handle: AckHandle::Redis(entry_ids),
        }))
    }

    pub(crate) async fn ack(&self, batch: &Batch) -> Result<(), QueueError> {
        let AckHandle::Redis(entry_ids) = &batch.handle else {
            return Err(QueueError::ForeignBatch(batch.id.clone()));
        };
        let keys = self.keys(&batch.queue);
        let mut invocation = ACK.prepare_invoke();
        invocation
            .key(&keys.stream)
            .key(&keys.batches)
            .key(&keys.leases)
            .key(&keys.items)
            .arg(GROUP)
            .arg(&batch.id)
            .arg(entry_ids);
        let _: i64 = invocation.invoke_async(&mut self.conn.clone()).await?;
        Ok(())
    }

    pub(crate) async fn transfer(
        &self,
        batch: &Batch,
        outputs: &[(String, Vec<Vec<u8>>)],
    ) -> Result<bool, QueueError> {
        let AckHandle::Redis(entry_ids) = &batch.handle else {
            return Err(QueueError::ForeignBatch(batch.id.clone()));
        };
        let keys = self.keys(&batch.queue);
        let outputs: Vec<&(String, Vec<Vec<u8>>)> = outputs
            .iter()
            .filter(|(_, items)| !items.is_empty())
            .collect();
        let mut invocation = TRANSFER.prepare_invoke();
        invocation
            .key(&keys.stream)
            .key(&keys.batches)
            .key(&keys.leases)
            .key(&keys.items)
            .key(self.registry());
        for (name, _) in &outputs {
            let out = self.keys(name);
            invocation.key(out.stream).key(out.items);
        }
        invocation.arg(GROUP).arg(&batch.id).arg(outputs.len());
        for (name, items) in &outputs {
            invocation
                .arg(name)
                .arg(items.len())
                .arg(frame::encode(items)?);
        }
        invocation.arg(entry_ids);
        let applied: i64 = invocation.invoke_async(&mut self.conn.clone()).await?;
        Ok(applied == 1)
    }

    pub(crate) async fn len(&self, queue: &str) -> Result<u64, QueueError> {
        let items: Option<i64> = ::redis::cmd("GET")
            .arg(self.keys(queue).items)
            .query_async(&mut self.conn.clone())
            .await?;
        let items = items.unwrap_or(0);
        u64::try_from(items)
            .map_err(|_| QueueError::Corrupt(format!("queue {queue} counts {items} items")))
    }

    pub(crate) async fn oldest_age(&self, queue: &str) -> Result<Option<Duration>, QueueError> {
        let mut pipe = ::redis::pipe();
        pipe.cmd("XRANGE")
            .arg(self.keys(queue).stream)
            .arg("-")
            .arg("+")
            .arg("COUNT")
            .arg(1);
        pipe.cmd("TIME");
        let (first, (secs, micros)): (Vec<(String, Value)>, (u64, u64)) =
            pipe.query_async(&mut self.conn.clone()).await?;
        let Some((entry, _)) = first.first() else {
            return Ok(None);
        };
        let pushed_ms: u64 = entry
            .split_once('-')
            .and_then(|(ms, _)| ms.parse().ok())
            .ok_or_else(|| QueueError::Corrupt(format!("stream entry id {entry}")))?;
        let now_ms = secs.saturating_mul(1000).saturating_add(micros / 1000);
        Ok(Some(Duration::from_millis(
            now_ms.saturating_sub(pushed_ms),
        )))
    }

    pub(crate) async fn purge(&self, queue: &str) -> Result<u64, QueueError> {
        let keys = self.keys(queue);
        // The queue's keys share one hash slot (the tag), so they go in one
        // transaction; the registry lives in another slot and follows after.
        let mut pipe = ::redis::pipe();
        pipe.cmd("MULTI").ignore();
        pipe.cmd("GET").arg(&keys.items).ignore();
        pipe.cmd("DEL")
            .arg(&keys.stream)
            .arg(&keys.batches)
            .arg(&keys.leases)
            .arg(&keys.items)
            .ignore();
        pipe.cmd("EXEC");
        let ((items, _),): ((Option<i64>, i64),) = pipe.query_async(&mut self.conn.clone()).await?;
        let _: i64 = ::redis::cmd("SREM")
            .arg(self.registry())
            .arg(queue)
            .query_async(&mut self.conn.clone())
            .await?;
        Ok(items.and_then(|n| u64::try_from(n).ok()).unwrap_or(0))
    }

    pub(crate) async fn queue_names(&self, prefix: &str) -> Result<Vec<String>, QueueError> {
        let mut conn = self.conn.clone();
        let members: Vec<String> = ::redis::cmd("SMEMBERS")
            .arg(self.registry())
            .query_async(&mut conn)
            .await?;
        let mut names: Vec<String> = members
            .into_iter()
            .filter(|name| name.starts_with(prefix))
            .collect();
        if names.is_empty() {
            return Ok(names);
        }
        names.sort_unstable();
        let counters: Vec<String> = names.iter().map(|name| self.keys(name).items).collect();
        let counts: Vec<Option<i64>> = ::redis::cmd("MGET")
            .arg(counters)
            .query_async(&mut conn)
            .await?;
        Ok(names
            .into_iter()
            .zip(counts)
            .filter(|(_, count)| count.is_some_and(|c| c > 0))
            .map(|(name, _)| name)
            .collect())
    }
}
