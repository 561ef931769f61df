//! The embedded queue backend: queues stored in the service's own SQLite file.
//!
//! Layout (created on open, `IF NOT EXISTS`):
//! - `queue_entry`: one row per push. `items` holds all items of the push as
//!   length-prefixed frames, `item_count` their number, `enqueued_at` the push time in
//!   Unix milliseconds. A leased row carries the `batch_id` of its batch and the
//!   `lease_until` deadline (Unix milliseconds); both are `NULL` while it waits.
//!   Rows are deleted when their batch is acknowledged. Row ids only grow while older
//!   rows exist, so ordering by id is push order.
//! - `queue_stat`: the number of unacknowledged items per queue (rows with zero items
//!   are removed), kept up to date by triggers on `queue_entry`, so `len` and
//!   `queue_names` never scan entries.
//!
//! `push` and `ack` are single statements (one implicit transaction each, so a push
//! costs one `INSERT`). `lease` reads before it writes, so it runs in a
//! `BEGIN IMMEDIATE` transaction: concurrent leases in this or another process are
//! serialised by SQLite's write lock instead of failing on a stale read snapshot.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use sqlx::{Row, SqlitePool};

use crate::{AckHandle, Batch, MAX_BATCH_ENTRIES, QueueError, duration_ms, frame};

/// Statements that create the queue tables; each is idempotent.
const SCHEMA: &[&str] = &[
    "CREATE TABLE IF NOT EXISTS queue_entry (
        id INTEGER PRIMARY KEY,
        queue TEXT NOT NULL,
        item_count INTEGER NOT NULL,
        enqueued_at INTEGER NOT NULL,
        batch_id TEXT,
        lease_until INTEGER,
        -- Last, so reading the other columns never walks the blob's overflow pages.
        items BLOB NOT NULL
    )",
    // Oldest entries of a queue: new leases and oldest_age.
    "CREATE INDEX IF NOT EXISTS queue_entry_queue_id ON queue_entry (queue, id)",
    // Expired leases of a queue; only leased rows are indexed.
    "CREATE INDEX IF NOT EXISTS queue_entry_lease ON queue_entry (queue, lease_until)
        WHERE batch_id IS NOT NULL",
    // The rows of one batch: re-lease and ack.
    "CREATE INDEX IF NOT EXISTS queue_entry_batch ON queue_entry (batch_id)
        WHERE batch_id IS NOT NULL",
    "CREATE TABLE IF NOT EXISTS queue_stat (
        queue TEXT PRIMARY KEY,
        items INTEGER NOT NULL
    ) WITHOUT ROWID",
    // queue_stat follows queue_entry inside the same statement's transaction.
    "CREATE TRIGGER IF NOT EXISTS queue_entry_counted AFTER INSERT ON queue_entry
    BEGIN
        INSERT INTO queue_stat (queue, items) VALUES (NEW.queue, NEW.item_count)
        ON CONFLICT (queue) DO UPDATE SET items = items + excluded.items;
    END",
    "CREATE TRIGGER IF NOT EXISTS queue_entry_uncounted AFTER DELETE ON queue_entry
    BEGIN
        UPDATE queue_stat SET items = items - OLD.item_count WHERE queue = OLD.queue;
        DELETE FROM queue_stat WHERE queue = OLD.queue AND items <= 0;
    END",
];

/// How write transactions start: take the write lock at once.
const BEGIN_IMMEDIATE: &str = "BEGIN IMMEDIATE";

/// Queues kept in a SQLite database; see the module documentation for the layout.
#[derive(Debug, Clone)]
pub struct EmbeddedQueue {
    pool: SqlitePool,
    /// Signalled after each push through this handle or a clone of it.
    pub(crate) pushed: std::sync::Arc<tokio::sync::Notify>,
}

impl EmbeddedQueue {
    /// Creates the queue tables in `pool` if they are missing.
    pub(crate) async fn open(pool: SqlitePool) -> Result<Self, QueueError> {
        let mut tx = pool.begin_with(BEGIN_IMMEDIATE).await?;
        for statement in SCHEMA {
            sqlx::query(*statement).execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(Self {
            pool,
            pushed: Default::default(),
        })
    }

    pub(crate) async fn ping(&self) -> Result<(), QueueError> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    pub(crate) async fn push(&self, queue: &str, items: &[Vec<u8>]) -> Result<(), QueueError> {
        // One statement, so one implicit transaction; a trigger counts the items.
        sqlx::query(
            "INSERT INTO queue_entry (queue, items, item_count, enqueued_at)
             VALUES ($1, $2, $3, $4)",
        )
        .bind(queue)
        .bind(frame::encode(items)?)
        .bind(count_i64(items.len()))
        .bind(now_ms())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub(crate) async fn lease(
        &self,
        queue: &str,
        max_items: usize,
        visibility: Duration,
    ) -> Result<Option<Batch>, QueueError> {
        let now = now_ms();
        let lease_until = now.saturating_add(duration_ms(visibility));
        let mut tx = self.pool.begin_with(BEGIN_IMMEDIATE).await?;

        // An expired lease is handed out again, unchanged.
        let expired: Option<String> = sqlx::query_scalar(
            "SELECT batch_id FROM queue_entry
             WHERE queue = $1 AND batch_id IS NOT NULL AND lease_until < $2
             ORDER BY lease_until LIMIT 1",
        )
        .bind(queue)
        .bind(now)
        .fetch_optional(&mut *tx)
        .await?;

        let (batch_id, rows) = if let Some(batch_id) = expired {
            let rows = sqlx::query(
                "UPDATE queue_entry SET lease_until = $1 WHERE batch_id = $2
                 RETURNING id, items, item_count",
            )
            .bind(lease_until)
            .bind(&batch_id)
            .fetch_all(&mut *tx)
            .await?;
            tracing::warn!(
                queue,
                batch_id,
                "queue lease expired; handing the batch out again"
            );
            (batch_id, rows)
        } else {
            let candidates = sqlx::query(
                "SELECT id, item_count FROM queue_entry
                 WHERE queue = $1 AND batch_id IS NULL
                 ORDER BY id LIMIT $2",
            )
            .bind(queue)
            .bind(count_i64(max_items.clamp(1, MAX_BATCH_ENTRIES)))
            .fetch_all(&mut *tx)
            .await?;
            let Some(range) = batch_range(&candidates, max_items)? else {
                return Ok(None);
            };
            let batch_id = uuid::Uuid::new_v4().simple().to_string();
            // The chosen entries are consecutive among the waiting ones, so the
            // range picks exactly them; leased rows inside it are skipped.
            let rows = sqlx::query(
                "UPDATE queue_entry SET batch_id = $1, lease_until = $2
                 WHERE queue = $3 AND batch_id IS NULL AND id BETWEEN $4 AND $5
                 RETURNING id, items, item_count",
            )
            .bind(&batch_id)
            .bind(lease_until)
            .bind(queue)
            .bind(range.0)
            .bind(range.1)
            .fetch_all(&mut *tx)
            .await?;
            (batch_id, rows)
        };
        tx.commit().await?;

        let mut entries = rows
            .iter()
            .map(|row| -> Result<_, QueueError> {
                let id: i64 = row.try_get("id")?;
                let blob: Vec<u8> = row.try_get("items")?;
                let count: i64 = row.try_get("item_count")?;
                Ok((id, blob, count))
            })
            .collect::<Result<Vec<_>, _>>()?;
        if entries.is_empty() {
            return Ok(None);
        }
        entries.sort_unstable_by_key(|(id, _, _)| *id);
        let mut items = Vec::new();
        for (id, blob, count) in entries {
            let count = usize::try_from(count)
                .map_err(|_| QueueError::Corrupt(format!("entry {id} has item count {count}")))?;
            items.extend(frame::decode(&blob, count)?);
        }
        Ok(Some(Batch {
            queue: queue.to_owned(),
            id: batch_id,
            items,
            handle: AckHandle::Embedded,
        }))
    }

    pub(crate) async fn ack(&self, batch: &Batch) -> Result<(), QueueError> {
        if !matches!(batch.handle, AckHandle::Embedded) {
            return Err(QueueError::ForeignBatch(batch.id.clone()));
        }
        // One statement; a trigger uncounts the items. A second ack deletes nothing.
        // Batch ids are unique across queues, and filtering on the id alone keeps the
        // planner on the batch index.
        sqlx::query("DELETE FROM queue_entry WHERE batch_id = $1")
            .bind(&batch.id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    pub(crate) async fn transfer(
        &self,
        batch: &Batch,
        outputs: &[(String, Vec<Vec<u8>>)],
    ) -> Result<bool, QueueError> {
        if !matches!(batch.handle, AckHandle::Embedded) {
            return Err(QueueError::ForeignBatch(batch.id.clone()));
        }
        let mut tx = self.pool.begin_with(BEGIN_IMMEDIATE).await?;
        let pending: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM queue_entry WHERE batch_id = $1")
                .bind(&batch.id)
                .fetch_one(&mut *tx)
                .await?;
        if pending == 0 {
            tx.rollback().await?;
            return Ok(false);
        }
        let now = now_ms();
        for (queue, items) in outputs.iter().filter(|(_, items)| !items.is_empty()) {
            sqlx::query(
                "INSERT INTO queue_entry (queue, items, item_count, enqueued_at)
                 VALUES ($1, $2, $3, $4)",
            )
            .bind(queue)
            .bind(frame::encode(items)?)
            .bind(count_i64(items.len()))
            .bind(now)
            .execute(&mut *tx)
            .await?;
        }
        sqlx::query("DELETE FROM queue_entry WHERE batch_id = $1")
            .bind(&batch.id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(true)
    }

    /// The pool the queue lives in (the usage counters share it).
    pub fn pool(&self) -> &SqlitePool {
        &self.pool
    }

    pub(crate) async fn len(&self, queue: &str) -> Result<u64, QueueError> {
        let items: Option<i64> =
            sqlx::query_scalar("SELECT items FROM queue_stat WHERE queue = $1")
                .bind(queue)
                .fetch_optional(&self.pool)
                .await?;
        let items = items.unwrap_or(0);
        u64::try_from(items)
            .map_err(|_| QueueError::Corrupt(format!("queue {queue} counts {items} items")))
    }

    pub(crate) async fn oldest_age(&self, queue: &str) -> Result<Option<Duration>, QueueError> {
        let enqueued_at: Option<i64> = sqlx::query_scalar(
            "SELECT enqueued_at FROM queue_entry WHERE queue = $1 ORDER BY id LIMIT 1",
        )
        .bind(queue)
        .fetch_optional(&self.pool)
        .await?;
        Ok(enqueued_at.map(|at| {
            let age = now_ms().saturating_sub(at);
            Duration::from_millis(u64::try_from(age).unwrap_or(0))
        }))
    }

    pub(crate) async fn purge(&self, queue: &str) -> Result<u64, QueueError> {
        let mut tx = self.pool.begin_with(BEGIN_IMMEDIATE).await?;
        let items: i64 = sqlx::query_scalar(
            "SELECT COALESCE(SUM(item_count), 0) FROM queue_entry WHERE queue = $1",
        )
        .bind(queue)
        .fetch_one(&mut *tx)
        .await?;
        // The trigger uncounts the entries and drops the queue_stat row.
        sqlx::query("DELETE FROM queue_entry WHERE queue = $1")
            .bind(queue)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(u64::try_from(items).unwrap_or(0))
    }

    pub(crate) async fn queue_names(&self, prefix: &str) -> Result<Vec<String>, QueueError> {
        let names = sqlx::query_scalar(
            "SELECT queue FROM queue_stat
             WHERE items > 0 AND substr(queue, 1, length($1)) = $1
             ORDER BY queue",
        )
        .bind(prefix)
        .fetch_all(&self.pool)
        .await?;
        Ok(names)
    }
}

/// Picks the first and last row id of a new batch from the oldest waiting entries
/// (`id`, `item_count`, in id order): whole entries while the item total stays within
/// `max_items`, but at least one. `None` if there is no waiting entry.
fn batch_range(
    candidates: &[sqlx::sqlite::SqliteRow],
    max_items: usize,
) -> Result<Option<(i64, i64)>, QueueError> {
    let mut range: Option<(i64, i64)> = None;
    let mut total: u64 = 0;
    for row in candidates {
        let id: i64 = row.try_get("id")?;
        let count: i64 = row.try_get("item_count")?;
        let count = u64::try_from(count).unwrap_or(0);
        if let Some((first, _)) = range {
            if total.saturating_add(count) > max_items as u64 {
                break;
            }
            range = Some((first, id));
        } else {
            range = Some((id, id));
        }
        total = total.saturating_add(count);
    }
    Ok(range)
}

/// The current time in Unix milliseconds.
fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, duration_ms)
}

/// A count as SQLite's integer type (counts never come near `i64::MAX`).
fn count_i64(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}
