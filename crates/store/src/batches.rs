//! `applied_batch`: ids of queue batches whose effects are committed, the
//! bookkeeping that makes re-delivered batches harmless (exactly-once).

use chrono::NaiveDateTime;

use crate::{Result, Store, with_pool};

impl Store {
    /// Records that `batch_id` of `queue` was applied at `now`. Returns false if it
    /// was already recorded (a replay, to be skipped).
    #[cfg(feature = "testing")]
    pub async fn record_applied_batch(
        &self,
        queue: &str,
        batch_id: &str,
        now: NaiveDateTime,
    ) -> Result<bool> {
        let n = with_pool!(self, pool => {
            sqlx::query(
                "INSERT INTO applied_batch (queue, batch_id, applied_at) VALUES ($1, $2, $3) \
                 ON CONFLICT (queue, batch_id) DO NOTHING",
            )
            .bind(queue)
            .bind(batch_id)
            .bind(now)
            .execute(pool)
            .await?
            .rows_affected()
        });
        Ok(n == 1)
    }

    /// Whether `batch_id` of `queue` was applied.
    #[cfg(feature = "testing")]
    pub async fn batch_applied(&self, queue: &str, batch_id: &str) -> Result<bool> {
        with_pool!(self, pool => {
            let row = sqlx::query("SELECT 1 FROM applied_batch WHERE queue = $1 AND batch_id = $2")
                .bind(queue)
                .bind(batch_id)
                .fetch_optional(pool)
                .await?;
            Ok(row.is_some())
        })
    }

    /// Forgets records older than `before` (re-deliveries only happen within a
    /// visibility timeout, so old records are dead weight). Returns rows deleted.
    pub async fn prune_applied_batches(&self, before: NaiveDateTime) -> Result<u64> {
        with_pool!(self, pool => {
            Ok(sqlx::query("DELETE FROM applied_batch WHERE applied_at < $1")
                .bind(before)
                .execute(pool)
                .await?
                .rows_affected())
        })
    }
}
