//! Monitoring tasks: queue backlog gauges and housekeeping of the exactly-once
//! bookkeeping.

use ichnaea_core::apikey::metric_label;
use std::collections::BTreeSet;
use std::sync::Mutex;
use std::time::Duration;

use chrono::Utc;

use crate::{PipelineContext, PipelineError};

/// How long applied-batch records are kept. A re-delivery can only happen within
/// a lease's visibility timeout (minutes), so a week is ample.
pub const APPLIED_BATCH_RETENTION: Duration = Duration::from_secs(7 * 24 * 3600);

/// Sets the `queue` gauge (items waiting, tag `queue:<name>`) and the
/// `queue_oldest_age` gauge (seconds) for every non-empty queue, export queues
/// included, and zeroes queues that emptied since the last run.
pub async fn monitor_queue_size(ctx: PipelineContext) -> Result<(), PipelineError> {
    static REPORTED: Mutex<BTreeSet<String>> = Mutex::new(BTreeSet::new());
    let names: BTreeSet<String> = ctx.queue.queue_names("").await?.into_iter().collect();
    for name in &names {
        let len = ctx.queue.len(name).await?;
        let age = ctx.queue.oldest_age(name).await?.unwrap_or_default();
        metrics::gauge!("queue", "queue" => name.clone()).set(len as f64);
        metrics::gauge!("queue_oldest_age", "queue" => name.clone()).set(age.as_secs_f64());
    }
    let mut reported = REPORTED.lock().unwrap_or_else(|e| e.into_inner());
    for gone in reported.difference(&names) {
        metrics::gauge!("queue", "queue" => gone.clone()).set(0.0);
        metrics::gauge!("queue_oldest_age", "queue" => gone.clone()).set(0.0);
    }
    *reported = names;
    Ok(())
}

/// Deletes applied-batch records older than [`APPLIED_BATCH_RETENTION`].
pub async fn prune_applied_batches(ctx: PipelineContext) -> Result<(), PipelineError> {
    let retention =
        chrono::Duration::from_std(APPLIED_BATCH_RETENTION).unwrap_or(chrono::Duration::days(7));
    let before = (Utc::now() - retention).naive_utc();
    let n = ctx.store.prune_applied_batches(before).await?;
    if n > 0 {
        tracing::info!(rows = n, "pruned applied-batch records");
    }
    Ok(())
}

/// `monitor_api_key_limits`: gauge `api.limit` (tags `key`, `path`) with today's
/// request count of every key with traffic (pipeline §4.6).
pub async fn monitor_api_key_limits(ctx: PipelineContext) -> Result<(), PipelineError> {
    for (key, path, count) in ctx.counters.daily_requests(Utc::now()).await? {
        metrics::gauge!("api.limit", "key" => metric_label(&key), "path" => path).set(count as f64);
    }
    Ok(())
}

/// `monitor_api_users`: gauge `<api type>.user` (tags `key`, `interval:1d|7d`)
/// with distinct client IPs today and over seven days; older user sets are
/// deleted on the way (pipeline §4.6).
pub async fn monitor_api_users(ctx: PipelineContext) -> Result<(), PipelineError> {
    for usage in ctx.counters.key_usage(Utc::now()).await? {
        let name = format!("{}.user", usage.api_type);
        let key = metric_label(&usage.api_key);
        metrics::gauge!(name.clone(), "key" => key.clone(), "interval" => "1d")
            .set(usage.users_today as f64);
        metrics::gauge!(name, "key" => key, "interval" => "7d").set(usage.users_week as f64);
    }
    Ok(())
}
