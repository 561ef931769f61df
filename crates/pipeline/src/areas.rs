//! `update_cellarea` (pipeline §4.1): recomputes the `cell_area` rows of
//! queued area ids from their cells. Idempotent, so re-delivery is harmless.

use ichnaea_core::area::aggregate_area;
use ichnaea_core::cell::AreaKey;
use ichnaea_core::queues::UPDATE_CELLAREA;

use crate::{PipelineContext, PipelineError};

/// Runs one batch; returns the number of area ids taken (0 = empty).
pub async fn run_once(ctx: &PipelineContext) -> Result<usize, PipelineError> {
    let Some(batch) = ctx
        .queue
        .lease(
            UPDATE_CELLAREA,
            ctx.settings.area_batch,
            ctx.settings.visibility,
        )
        .await?
    else {
        return Ok(0);
    };
    let mut keys: Vec<AreaKey> = batch
        .items
        .iter()
        .filter_map(|b| AreaKey::from_bytes(b).ok())
        .collect();
    keys.sort();
    keys.dedup();
    let now = crate::now_seconds();
    let existing = ctx.store.cell_areas(&keys).await?;
    let mut upserts = Vec::new();
    let mut deletes = Vec::new();
    for key in &keys {
        let cells = ctx.store.cells_in_area(*key).await?;
        let old = existing.iter().find(|a| a.key == *key);
        match aggregate_area(*key, &cells, old, now, ctx.geocoder.as_ref()) {
            Some(area) => upserts.push(area),
            None => deletes.push(*key),
        }
    }
    ctx.store.upsert_cell_areas(&upserts).await?;
    ctx.store.delete_cell_areas(&deletes).await?;
    ctx.queue.ack(&batch).await?;
    Ok(batch.items.len())
}
