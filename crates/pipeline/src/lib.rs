//! The asynchronous side of ichnaea: the worker that drains the queues — the
//! `update_incoming` multiplexer, the exporters, the station updaters, cell
//! areas and the data map — and the scheduler of periodic tasks.
//!
//! Every stage takes a leased batch and either hands its output on with
//! `Queue::transfer` (queue to queue) or applies it with a store transaction
//! that records the batch id (queue to database), so each accepted report is
//! applied exactly once even if a worker dies at any instant.

pub mod areas;
pub mod cell_export;
pub mod cell_import;
pub mod datamap;
pub mod export;
pub mod incoming;
pub mod monitor;
pub mod periodic;
pub mod rate_control;
pub mod scheduler;
pub mod station_dump;
pub mod stations;
pub mod tiles;
pub mod worker;

use std::sync::Arc;
use std::time::Duration;

use ichnaea_core::geocoder::Geocoder;
use ichnaea_queue::{Counters, Queue};
use ichnaea_store::Store;

/// Batch sizes and timings of the pipeline (pipeline §6.4: the original's
/// hard-coded constants, made configurable).
#[derive(Clone, Debug)]
pub struct PipelineSettings {
    /// Reports taken from `update_incoming` per multiplexer run.
    pub incoming_batch: usize,
    /// Observations per station-updater batch.
    pub station_batch: usize,
    /// Area ids per `update_cellarea` batch.
    pub area_batch: usize,
    /// Grids per `update_datamap_*` batch.
    pub datamap_batch: usize,
    /// Lease of internal stages: an unacknowledged batch is re-delivered after it.
    pub visibility: Duration,
    /// Lease of export batches (remote uploads may be slow).
    pub export_visibility: Duration,
    /// An export queue holding fewer than `batch` reports is sent anyway once its
    /// oldest report is this old.
    pub export_max_age: Duration,
    /// How long an idle worker first waits before looking at the queues again.
    /// Each further idle pass doubles the wait up to `idle_poll_max`; a push
    /// through the worker's own process (the web role beside it) wakes it at
    /// once, so the longer wait only delays work pushed by other processes.
    pub idle_poll: Duration,
    /// The longest wait of an idle worker (and of the remote export loop while
    /// no remote target is configured) between looks at the queues.
    pub idle_poll_max: Duration,
    /// HTTP timeout of the geosubmit exporter.
    pub export_timeout: Duration,
    /// The longest wait between runs of a remote export target that keeps
    /// failing (the back-off starts at 1 s and doubles up to this).
    pub export_backoff_max: Duration,
}

impl Default for PipelineSettings {
    fn default() -> Self {
        PipelineSettings {
            incoming_batch: 5_000,
            station_batch: 500,
            area_batch: 100,
            datamap_batch: 500,
            visibility: Duration::from_secs(60),
            export_visibility: Duration::from_secs(300),
            export_max_age: Duration::from_secs(3600),
            idle_poll: Duration::from_millis(250),
            idle_poll_max: Duration::from_secs(1),
            export_timeout: Duration::from_secs(60),
            export_backoff_max: Duration::from_secs(300),
        }
    }
}

/// What every pipeline task works with.
#[derive(Clone)]
pub struct PipelineContext {
    /// The database.
    pub store: Store,
    /// The queue backend.
    pub queue: Arc<Queue>,
    /// Counters shared with the web tier (the global locate sample rate).
    pub counters: Arc<Counters>,
    /// Regions and mobile country codes.
    pub geocoder: Arc<dyn Geocoder>,
    /// Sizes and timings.
    pub settings: PipelineSettings,
    /// The exporters that talk to other systems.
    pub exporters: Arc<export::Exporters>,
}

/// The current UTC time in whole seconds: the `now` of a task run (spec
/// pipeline §0), as the `DATETIME` columns store it.
pub fn now_seconds() -> chrono::NaiveDateTime {
    let now = chrono::Utc::now().naive_utc();
    now - chrono::Duration::nanoseconds(i64::from(now.and_utc().timestamp_subsec_nanos()))
}

/// Errors of pipeline tasks.
#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    /// The store failed.
    #[error(transparent)]
    Store(#[from] ichnaea_store::StoreError),
    /// The queue backend failed.
    #[error(transparent)]
    Queue(#[from] ichnaea_queue::QueueError),
    /// An export could not be delivered; the batch stays queued.
    #[error("export {name} failed: {message}")]
    Export {
        /// Export target.
        name: String,
        /// Why.
        message: String,
    },
}
