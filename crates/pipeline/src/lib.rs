//! The asynchronous side of ichnaea: the scheduler of periodic tasks and the
//! worker that drains the queues into exporters and station tables.
//!
//! This crate depends on the core domain, the store and the queue; the binary
//! wires it up for the `worker` and `scheduler` roles of `ichnaea serve`.

pub mod monitor;
pub mod scheduler;

use std::sync::Arc;

use ichnaea_queue::Queue;
use ichnaea_store::Store;

/// What every pipeline task works with.
#[derive(Clone)]
pub struct PipelineContext {
    /// The database.
    pub store: Store,
    /// The queue backend.
    pub queue: Arc<Queue>,
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
}
