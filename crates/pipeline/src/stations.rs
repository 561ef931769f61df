//! The station updaters (pipeline §3): a batch of observations of one shard
//! queue is merged into its station table in one transaction that also records
//! the batch id and the day's counters; cell batches then queue their areas.
//!
//! Sections (§) refer to docs/reference/pipeline.md.

use std::collections::{BTreeMap, HashMap};

use ichnaea_core::cell::CellKey;
use ichnaea_core::mac::Mac;
use ichnaea_core::observation::{BlueObservation, CellObservation, WifiObservation};
use ichnaea_core::queues::{UPDATE_CELLAREA, update_blue, update_cell, update_wifi};
use ichnaea_core::radio::Radio;
use ichnaea_core::stats::StatKey;
use ichnaea_core::updater::{
    Action, StationType, WeightedObs, update_station, weigh_blue, weigh_cell, weigh_wifi,
};
use ichnaea_store::{StationKey, StationTable, StationWrites, StoredStation};

use crate::{PipelineContext, PipelineError};

/// Every station queue with its table.
pub fn station_queues() -> Vec<(String, StationTable)> {
    let mut out = Vec::new();
    for shard in 0..16u8 {
        out.push((update_blue(shard), StationTable::Blue(shard)));
        out.push((update_wifi(shard), StationTable::Wifi(shard)));
    }
    for radio in Radio::ALL {
        out.push((update_cell(radio), StationTable::Cell(radio)));
    }
    out
}

fn station_type(table: StationTable) -> StationType {
    match table {
        StationTable::Blue(_) => StationType::Blue,
        StationTable::Wifi(_) => StationType::Wifi,
        StationTable::Cell(radio) => StationType::Cell(radio),
    }
}

/// Decodes and weighs a batch; observations weighing nothing are dropped
/// (uncounted, §3.1). Groups keep queue order.
fn group(table: StationTable, items: &[Vec<u8>]) -> BTreeMap<StationKey, Vec<WeightedObs>> {
    let mut groups: BTreeMap<StationKey, Vec<WeightedObs>> = BTreeMap::new();
    for item in items {
        let weighed = match table {
            StationTable::Blue(_) => serde_json::from_slice::<BlueObservation>(item)
                .ok()
                .and_then(|o| Some((StationKey::Mac(Mac::from_hex(&o.mac).ok()?), weigh_blue(&o)))),
            StationTable::Wifi(_) => serde_json::from_slice::<WifiObservation>(item)
                .ok()
                .and_then(|o| Some((StationKey::Mac(Mac::from_hex(&o.mac).ok()?), weigh_wifi(&o)))),
            StationTable::Cell(_) => serde_json::from_slice::<CellObservation>(item)
                .ok()
                .and_then(|o| Some((StationKey::Cell(o.key()?), weigh_cell(&o)?))),
        };
        match weighed {
            Some((key, obs)) if obs.weight > 0.0 => groups.entry(key).or_default().push(obs),
            Some(_) => {}
            None => tracing::error!(table = %table.name(), "undecodable observation dropped"),
        }
    }
    groups
}

/// Tallies of one batch (§3.11).
#[derive(Default, Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tally {
    /// Weighted observations.
    pub obs: i64,
    /// Stations created (new and new-blocked).
    pub new: i64,
    /// change, replace and writing confirms.
    pub confirm: i64,
    /// block and new-blocked.
    pub block: i64,
}

/// Runs one batch of one station queue; returns observations taken (0 = empty).
pub async fn run_once(
    ctx: &PipelineContext,
    queue: &str,
    table: StationTable,
) -> Result<usize, PipelineError> {
    let Some(batch) = ctx
        .queue
        .lease(queue, ctx.settings.station_batch, ctx.settings.visibility)
        .await?
    else {
        return Ok(0);
    };
    let kind = station_type(table);
    let groups = group(table, &batch.items);
    let keys: Vec<StationKey> = groups.keys().copied().collect();
    let now = crate::now_seconds();
    let geocoder = ctx.geocoder.clone();
    let mut tally = Tally::default();
    let mut touched_areas = Vec::new();
    let applied = ctx
        .store
        .apply_station_batch(
            table,
            queue,
            &batch.id,
            now,
            &keys,
            |stored: &HashMap<StationKey, StoredStation>| {
                let mut writes = StationWrites {
                    day: Some(now.date()),
                    ..StationWrites::default()
                };
                for (key, obs) in &groups {
                    let existing = stored.get(key).map(|s| (&s.fields, s.psc));
                    let update = update_station(kind, existing, obs, now, geocoder.as_ref());
                    tally.obs += update.observations as i64;
                    match update.action {
                        Some(Action::New) => tally.new += 1,
                        Some(Action::NewBlock) => {
                            tally.new += 1;
                            tally.block += 1;
                        }
                        Some(Action::Block) => tally.block += 1,
                        Some(Action::Change | Action::Replace) => tally.confirm += 1,
                        Some(Action::Confirm) if update.row.is_some() => tally.confirm += 1,
                        _ => {}
                    }
                    if let (StationKey::Cell(cell), Some(action)) = (key, update.action)
                        && action != Action::Confirm
                    {
                        touched_areas.push(*cell);
                    }
                    if let Some(row) = update.row {
                        writes.rows.push((
                            *key,
                            StoredStation {
                                fields: row,
                                psc: update.psc,
                            },
                        ));
                    }
                }
                let (obs_key, unique_key) = match kind {
                    StationType::Blue => (StatKey::Blue, StatKey::UniqueBlue),
                    StationType::Wifi => (StatKey::Wifi, StatKey::UniqueWifi),
                    StationType::Cell(_) => (StatKey::Cell, StatKey::UniqueCell),
                };
                writes.stats = vec![(obs_key, tally.obs), (unique_key, tally.new)];
                if kind == StationType::Cell(Radio::Nr) {
                    // NR cells are cells too, and also have their own counters.
                    writes
                        .stats
                        .extend([(StatKey::Nr, tally.obs), (StatKey::UniqueNr, tally.new)]);
                }
                writes
            },
        )
        .await?;
    if let StationTable::Cell(_) = table {
        // Areas are recomputed from the cells, so queueing one twice is harmless;
        // a replay re-queues every area of the batch, as its actions are unknown.
        let cells: Vec<CellKey> = if applied {
            touched_areas
        } else {
            keys.iter()
                .filter_map(|k| match k {
                    StationKey::Cell(c) => Some(*c),
                    StationKey::Mac(_) => None,
                })
                .collect()
        };
        let mut areas: Vec<Vec<u8>> = cells
            .iter()
            .filter_map(|c| c.area().to_bytes().ok())
            .collect();
        areas.sort();
        areas.dedup();
        if !areas.is_empty() {
            ctx.queue.push(UPDATE_CELLAREA, areas).await?;
        }
    }
    ctx.queue.ack(&batch).await?;
    if applied {
        let t = kind.stat_name();
        for (name, n) in [
            ("data.observation.insert", tally.obs),
            ("data.station.new", tally.new),
            ("data.station.confirm", tally.confirm),
            ("data.station.blocklist", tally.block),
        ] {
            if n > 0 {
                metrics::counter!(name, "type" => t).increment(n as u64);
            }
        }
    } else {
        metrics::counter!("data.batch.replayed", "queue" => queue.to_string()).increment(1);
    }
    Ok(batch.items.len())
}
