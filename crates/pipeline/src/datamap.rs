//! `update_datamap` (pipeline §4.2.3): marks the data-map grid cells of
//! contributed reports as seen today. Idempotent, so re-delivery is harmless.

use chrono::Utc;
use ichnaea_core::datamap::{DatamapGrid, Quadrant};
use ichnaea_core::queues::update_datamap;

use crate::{PipelineContext, PipelineError};

/// Runs one batch of one quadrant; returns the number of grids taken (0 = empty).
pub async fn run_once(ctx: &PipelineContext, quadrant: Quadrant) -> Result<usize, PipelineError> {
    let queue = update_datamap(quadrant);
    let Some(batch) = ctx
        .queue
        .lease(&queue, ctx.settings.datamap_batch, ctx.settings.visibility)
        .await?
    else {
        return Ok(0);
    };
    let mut grids: Vec<DatamapGrid> = batch
        .items
        .iter()
        .filter_map(|b| DatamapGrid::from_bytes(b))
        .collect();
    grids.sort();
    grids.dedup();
    ctx.store
        .touch_datamap(quadrant, &grids, Utc::now().date_naive())
        .await?;
    ctx.queue.ack(&batch).await?;
    Ok(batch.items.len())
}
