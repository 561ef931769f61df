//! `update_incoming`, the multiplexer (pipeline §2.4): every incoming report
//! is copied to the queue of each export target that allows its (api key,
//! source) pair, in batches of the target's size, and the incoming batch is
//! acknowledged in the same atomic step.

use std::collections::BTreeMap;

use ichnaea_core::IncomingItem;
use ichnaea_core::export::{ExportConfig, ExportSchema};
use ichnaea_core::queues::{UPDATE_INCOMING, export_queue};
use ichnaea_core::source::ReportSource;

use crate::{PipelineContext, PipelineError};

/// Export queue entries are at most this many reports when the target's batch is 0.
const UNBATCHED_CHUNK: usize = 1_000;

/// The queue a report goes to for `config`.
pub fn queue_for(config: &ExportConfig, api_key: Option<&str>, source: ReportSource) -> String {
    match config.schema {
        ExportSchema::S3 => export_queue(&config.name, Some((source.name(), api_key))),
        _ => export_queue(&config.name, None),
    }
}

/// Runs one multiplexer batch; returns the number of reports taken (0 = queue empty).
pub async fn run_once(ctx: &PipelineContext) -> Result<usize, PipelineError> {
    let Some(batch) = ctx
        .queue
        .lease(
            UPDATE_INCOMING,
            ctx.settings.incoming_batch,
            ctx.settings.visibility,
        )
        .await?
    else {
        return Ok(0);
    };
    let configs = ctx.store.export_configs().await?;
    let mut outputs: BTreeMap<String, Vec<Vec<u8>>> = BTreeMap::new();
    let mut undecodable = 0u64;
    for item in &batch.items {
        let decoded = IncomingItem::decode(item).and_then(|incoming| {
            let element = incoming.encode_export()?;
            Ok((incoming, element))
        });
        let (incoming, element) = match decoded {
            Ok(pair) => pair,
            Err(e) => {
                // Counted and logged, never re-labelled: without a known source the
                // report cannot be routed or weighed.
                tracing::error!(error = %e, "undecodable item in update_incoming dropped");
                undecodable += 1;
                continue;
            }
        };
        for config in configs
            .iter()
            .filter(|c| c.allowed(incoming.api_key.as_deref(), incoming.source))
        {
            outputs
                .entry(queue_for(
                    config,
                    incoming.api_key.as_deref(),
                    incoming.source,
                ))
                .or_default()
                .push(element.clone());
        }
    }
    if undecodable > 0 {
        metrics::counter!("data.incoming.undecodable").increment(undecodable);
    }
    // Export queue entries no larger than the target's batch, so one export run
    // takes about `batch` reports.
    let mut entries = Vec::new();
    for (queue, items) in outputs {
        let chunk = configs
            .iter()
            .find(|c| {
                queue == export_queue(&c.name, None)
                    || queue.starts_with(&format!("{}:", export_queue(&c.name, None)))
            })
            .map(|c| usize::try_from(c.batch).unwrap_or(0))
            .filter(|b| *b > 0)
            .unwrap_or(UNBATCHED_CHUNK);
        for part in items.chunks(chunk) {
            entries.push((queue.clone(), part.to_vec()));
        }
    }
    let taken = batch.items.len();
    if ctx.queue.transfer(&batch, &entries).await? {
        metrics::counter!("data.incoming.multiplexed").increment(taken as u64);
    }
    Ok(taken)
}
