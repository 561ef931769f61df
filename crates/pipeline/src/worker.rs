//! The worker: drains every queue of the pipeline in order — incoming, exports,
//! station updaters, cell areas, data map — taking work as soon as it is there,
//! and `drain`, which runs until every queue is empty.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use ichnaea_core::datamap::Quadrant;
use ichnaea_core::export::ExportSchema;
use ichnaea_core::queues::{UPDATE_CELLAREA, UPDATE_INCOMING, update_datamap};
use tokio_util::sync::CancellationToken;

use crate::stations::station_queues;
use crate::{PipelineContext, PipelineError, areas, datamap, export, incoming, stations};

/// Work done by one pass over the queues.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PassReport {
    /// Items taken from queues.
    pub items: usize,
}

/// One pass: every stage runs until its queue is empty (exports: until none is
/// ready). `drain` sends export queues regardless of their batch size and age,
/// remote targets included; otherwise the pass sends to targets inside the
/// service only, and [`run`] sends to remote ones from tasks of their own
/// ([`export::remote`]), so a hanging target never delays this pass.
pub async fn pass(
    ctx: &PipelineContext,
    drain: bool,
    shutdown: &CancellationToken,
) -> Result<PassReport, PipelineError> {
    let mut items = 0;
    macro_rules! until_empty {
        ($e:expr) => {
            loop {
                if shutdown.is_cancelled() {
                    return Ok(PassReport { items });
                }
                let n = $e;
                if n == 0 {
                    break;
                }
                items += n;
            }
        };
    }
    // The queues holding anything, read once (one cheap query of maintained
    // counters): an idle pass costs that query instead of a lease transaction
    // per queue. A stage whose queue was empty at the start is left to the
    // next pass, which follows at once whenever this one took items.
    let waiting = Waiting::new(ctx.queue.queue_names("").await?);
    if waiting.0.is_empty() {
        return Ok(PassReport { items });
    }
    if waiting.has(UPDATE_INCOMING) {
        until_empty!(incoming::run_once(ctx).await?);
    }
    if waiting.has_prefix(ichnaea_core::queues::EXPORT_PREFIX) {
        if drain {
            until_empty!(export::run_once(ctx, drain).await?);
        } else {
            until_empty!(export::run_local(ctx, drain).await?);
        }
    }
    // Workers with a backlog would all start at the same station queue and
    // take turns at its table's lock; each pass starts somewhere else instead
    // (per process and per pass), and a table whose lock another worker holds
    // is skipped for this pass (`Busy`: nothing leased, nothing lost).
    let queues = station_queues();
    let start = station_start(queues.len());
    for (queue, table) in queues.iter().cycle().skip(start).take(queues.len()) {
        if waiting.has(queue) {
            until_empty!(stations::run_once(ctx, queue, *table).await?);
        }
    }
    if waiting.has(UPDATE_CELLAREA) {
        until_empty!(areas::run_once(ctx).await?);
    }
    for q in Quadrant::ALL {
        if waiting.has(&update_datamap(q)) {
            until_empty!(datamap::run_once(ctx, q).await?);
        }
    }
    Ok(PassReport { items })
}

/// Passes started by this process, for [`station_start`].
static PASSES: AtomicUsize = AtomicUsize::new(0);

/// The station queue a pass starts at: different for concurrent passes of
/// one process (a counter) and for processes (their id), so that workers
/// under a backlog spread over the tables rather than meet at the first one.
fn station_start(queues: usize) -> usize {
    let pass = PASSES.fetch_add(1, Ordering::Relaxed);
    let process = std::process::id() as usize;
    // A stride coprime with 36 (the station queues), so that successive
    // passes of one process visit every starting point.
    process.wrapping_mul(7).wrapping_add(pass.wrapping_mul(5)) % queues.max(1)
}

/// The names of the queues that held unacknowledged items when a pass began.
struct Waiting(Vec<String>);

impl Waiting {
    fn new(mut names: Vec<String>) -> Waiting {
        names.sort_unstable();
        Waiting(names)
    }

    fn has(&self, queue: &str) -> bool {
        self.0
            .binary_search_by(|name| name.as_str().cmp(queue))
            .is_ok()
    }

    fn has_prefix(&self, prefix: &str) -> bool {
        self.0.iter().any(|name| name.starts_with(prefix))
    }
}

/// Runs passes until `shutdown`; when a pass found nothing it waits
/// `idle_poll`, doubling up to `idle_poll_max` while nothing comes, or until a
/// push in this process.
/// A failing pass is logged and retried after a pause: leased batches come
/// back after their visibility timeout, so nothing is lost. Remote export
/// targets are served beside the passes by [`export::remote::run`].
pub async fn run(ctx: PipelineContext, shutdown: CancellationToken) {
    let remote = tokio::spawn(export::remote::run(ctx.clone(), shutdown.clone()));
    passes(&ctx, &shutdown).await;
    let _ = remote.await;
}

async fn passes(ctx: &PipelineContext, shutdown: &CancellationToken) {
    let ctx = ctx.clone();
    let first = ctx.settings.idle_poll;
    let longest = ctx.settings.idle_poll_max.max(first);
    let mut idle = first;
    while !shutdown.is_cancelled() {
        let pause = match pass(&ctx, false, shutdown).await {
            Ok(report) if report.items > 0 => {
                idle = first;
                continue;
            }
            Ok(_) => {
                let pause = idle;
                idle = (idle * 2).min(longest);
                pause
            }
            Err(e) => {
                tracing::error!(error = %e, "worker pass failed");
                metrics::counter!("worker.error").increment(1);
                Duration::from_secs(1).max(first)
            }
        };
        // A push in this process (the web role beside the worker) ends the
        // wait at once; work pushed by other processes waits for the timer.
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = tokio::time::sleep(pause) => {}
            _ = ctx.queue.pushed().notified() => idle = first,
        }
    }
}

/// Items still waiting in the queues the pipeline consumes; queues of export
/// targets that no exporter consumes (unknown schema, deleted target) are
/// reported separately, as `drain` cannot empty them.
pub async fn backlog(ctx: &PipelineContext) -> Result<(u64, Vec<(String, u64)>), PipelineError> {
    let configs = ctx.store.export_configs().await?;
    let mut waiting = 0;
    let mut stuck = Vec::new();
    for name in ctx.queue.queue_names("").await? {
        let len = ctx.queue.len(&name).await?;
        let consumed = match name.strip_prefix(ichnaea_core::queues::EXPORT_PREFIX) {
            Some(rest) => {
                let target = rest.split(':').next().unwrap_or(rest);
                configs
                    .iter()
                    .any(|c| c.name == target && !matches!(c.schema, ExportSchema::Unknown(_)))
            }
            None => {
                name == UPDATE_INCOMING
                    || name == UPDATE_CELLAREA
                    || Quadrant::ALL.iter().any(|q| update_datamap(*q) == name)
                    || station_queues().iter().any(|(q, _)| *q == name)
            }
        };
        if consumed {
            waiting += len;
        } else {
            stuck.push((name, len));
        }
    }
    Ok((waiting, stuck))
}

/// Runs the pipeline until every consumed queue is empty. `progress` is called
/// after each pass with the items processed so far and the backlog left.
pub async fn drain(
    ctx: &PipelineContext,
    shutdown: &CancellationToken,
    mut progress: impl FnMut(usize, u64),
) -> Result<(usize, Vec<(String, u64)>), PipelineError> {
    let mut total = 0;
    loop {
        let report = pass(ctx, true, shutdown).await?;
        total += report.items;
        let (waiting, stuck) = backlog(ctx).await?;
        progress(total, waiting);
        if shutdown.is_cancelled() || (report.items == 0 && waiting == 0) {
            return Ok((total, stuck));
        }
        if report.items == 0 {
            // Work is leased by another process (e.g. `serve` running alongside):
            // wait for it to finish or for the leases to expire.
            tokio::time::sleep(ctx.settings.idle_poll).await;
        }
    }
}
