//! The periodic tasks of the scheduler (pipeline §5): statistics, region
//! statistics, retention, monitoring.

use std::time::Duration;

use chrono::Utc;
use ichnaea_core::datamap::Quadrant;

use crate::scheduler::PeriodicTask;
use crate::{PipelineContext, PipelineError};

/// `stat` rows are kept this many days.
pub const STAT_RETENTION_DAYS: i64 = 730;
/// Data-map grids not seen for this many days are removed.
pub const DATAMAP_RETENTION_DAYS: i64 = 365;

/// `update_statcounter`: folds the day counters into the cumulative `stat` rows.
pub async fn update_statcounter(ctx: PipelineContext) -> Result<(), PipelineError> {
    let days = ctx.store.fold_stat_counters().await?;
    if !days.is_empty() {
        tracing::debug!(?days, "folded stat counters");
    }
    Ok(())
}

/// `update_statregion`: recomputes `region_stat`.
pub async fn update_statregion(ctx: PipelineContext) -> Result<(), PipelineError> {
    let rows = ctx.store.update_region_stats().await?;
    tracing::info!(regions = rows.len(), "region statistics updated");
    // The region page shows the new counts at once; if the cache cannot be
    // reached, its entry expires within the hour.
    let key = ichnaea_core::stats::REGION_STATS_CACHE_KEY
        .as_bytes()
        .to_vec();
    if let Err(e) = ctx.counters.cache_delete(&[key]).await {
        tracing::warn!(error = %e, "cannot drop the cached region statistics page");
    }
    Ok(())
}

/// `cleanup_stat` and `cleanup_datamap`: retention of statistics and the data map.
pub async fn cleanup(ctx: PipelineContext) -> Result<(), PipelineError> {
    let today = Utc::now().date_naive();
    ctx.store
        .prune_stats(today - chrono::Duration::days(STAT_RETENTION_DAYS))
        .await?;
    for q in Quadrant::ALL {
        ctx.store
            .prune_datamap(q, today - chrono::Duration::days(DATAMAP_RETENTION_DAYS))
            .await?;
    }
    // Web processes poll the change log every few seconds and drop cached
    // tiles at midnight anyway: two days of it are plenty.
    let before = Utc::now() - chrono::Duration::days(2);
    ctx.store
        .prune_datamap_tile_changes(before.timestamp_millis())
        .await?;
    Ok(())
}

/// Intervals of the periodic tasks.
#[derive(Clone, Debug)]
pub struct Intervals {
    /// `update_statcounter` (original: 600 s).
    pub statcounter: Duration,
    /// `update_statregion` (original: daily).
    pub statregion: Duration,
    /// Retention tasks (original: daily).
    pub cleanup: Duration,
    /// Queue gauges and the rate controller (original: 60 s).
    pub monitor: Duration,
    /// API key usage gauges (original: 600 s).
    pub usage: Duration,
    /// Directory URL of the public cell export (`file://…` or `s3://…`); `None`
    /// disables `cell_export_diff` / `cell_export_full`.
    pub cell_export: Option<String>,
    /// The rate controller, when enabled (off by default).
    pub rate_control: Option<crate::rate_control::RateControl>,
    /// The coverage tiles' batch render and upload (`datamap`), when set.
    pub datamap: Option<DatamapJob>,
}

/// Where the scheduled `datamap` task renders and uploads the tiles.
#[derive(Clone, Debug)]
pub struct DatamapJob {
    /// The tile bucket (`tiles_url`).
    pub tiles_url: String,
    /// Working directory of the render (replaced on every run).
    pub work_dir: std::path::PathBuf,
    /// Render threads.
    pub threads: usize,
    /// Time between runs (default daily).
    pub interval: Duration,
}

impl Default for Intervals {
    fn default() -> Self {
        Intervals {
            statcounter: Duration::from_secs(600),
            statregion: Duration::from_secs(86_400),
            cleanup: Duration::from_secs(86_400),
            monitor: Duration::from_secs(60),
            usage: Duration::from_secs(600),
            cell_export: None,
            rate_control: None,
            datamap: None,
        }
    }
}

/// Every periodic task of the service.
pub fn tasks(intervals: &Intervals) -> Vec<PeriodicTask> {
    let mut tasks = vec![
        PeriodicTask::new(
            "update_statcounter",
            intervals.statcounter,
            update_statcounter,
        ),
        PeriodicTask::new("update_statregion", intervals.statregion, update_statregion)
            .at(Duration::from_secs(7 * 60)),
        PeriodicTask::new("cleanup", intervals.cleanup, cleanup).at(Duration::from_secs(17 * 60)),
        PeriodicTask::new(
            "monitor_queue_size",
            intervals.monitor,
            crate::monitor::monitor_queue_size,
        ),
        PeriodicTask::new(
            "prune_applied_batches",
            intervals.cleanup,
            crate::monitor::prune_applied_batches,
        ),
        PeriodicTask::new(
            "monitor_api_key_limits",
            intervals.usage,
            crate::monitor::monitor_api_key_limits,
        ),
        PeriodicTask::new(
            "monitor_api_users",
            intervals.usage,
            crate::monitor::monitor_api_users,
        ),
    ];
    if let Some(url) = &intervals.cell_export {
        for (name, every, kind) in [
            (
                "cell_export_diff",
                Duration::from_secs(3600),
                crate::cell_export::Kind::Diff,
            ),
            (
                "cell_export_full",
                Duration::from_secs(86_400),
                crate::cell_export::Kind::Full,
            ),
        ] {
            let url = url.clone();
            tasks.push(PeriodicTask::new(name, every, move |ctx| {
                let url = url.clone();
                async move {
                    let now = Utc::now().naive_utc();
                    crate::cell_export::export(&ctx, &url, kind, now).await?;
                    // The downloads page lists the new file at once.
                    let key = ichnaea_core::export::DOWNLOADS_CACHE_KEY
                        .as_bytes()
                        .to_vec();
                    if let Err(e) = ctx.counters.cache_delete(&[key]).await {
                        tracing::warn!(error = %e, "cannot drop the cached downloads page");
                    }
                    Ok(())
                }
            }));
        }
    }
    if let Some(job) = &intervals.datamap {
        // First run at start, so a new instance has its coarse tiles at once.
        let job = job.clone();
        tasks.push(PeriodicTask::new("datamap", job.interval, move |ctx| {
            let job = job.clone();
            async move {
                let (created, synced) =
                    crate::tiles::scheduled(&ctx.store, &job.tiles_url, &job.work_dir, job.threads)
                        .await
                        .map_err(|e| PipelineError::Export {
                            name: "datamap".into(),
                            message: e.to_string(),
                        })?;
                tracing::info!(
                    grid_rows = created.grid_rows,
                    tile_count = created.tile_count,
                    tile_new = synced.tile_new,
                    tile_changed = synced.tile_changed,
                    tile_deleted = synced.tile_deleted,
                    render_secs = created.render_secs,
                    "coverage tiles rendered and uploaded"
                );
                Ok(())
            }
        }));
    }
    if let Some(params) = intervals.rate_control {
        let state = std::sync::Arc::new(std::sync::Mutex::new(
            crate::rate_control::PidState::default(),
        ));
        tasks.push(PeriodicTask::new(
            "rate_control",
            intervals.monitor,
            move |ctx| {
                let state = state.clone();
                async move { crate::rate_control::run(ctx, params, &state).await }
            },
        ));
    }
    tasks
}
