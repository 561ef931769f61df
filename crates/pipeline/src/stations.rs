//! The station updaters (pipeline §3): a batch of observations of one shard
//! queue is merged into its station table in one transaction that also records
//! the batch id and the day's counters; cell batches then queue their areas.
//!
//! Sections (§) refer to docs/reference/pipeline.md.

use std::collections::{BTreeMap, HashMap};

use ichnaea_core::cell::CellKey;
use ichnaea_core::locate::estimate::{Estimate, EstimateObs, next_estimate};
use ichnaea_core::mac::Mac;
use ichnaea_core::observation::{BlueObservation, CellObservation, ObsPosition, WifiObservation};
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

/// One decoded observation: its weight for the updater and its input to
/// the calibrated model's station estimate.
type Decoded = (WeightedObs, EstimateObs);

fn estimate_obs(pos: &ObsPosition, signal: Option<i64>, age: Option<i64>) -> EstimateObs {
    EstimateObs {
        lat: pos.lat,
        lon: pos.lon,
        accuracy: pos.accuracy.filter(|a| *a != 0.0),
        signal: signal.filter(|s| *s != 0).map(|s| s as f64),
        age_ms: age,
    }
}

/// Decodes and weighs a batch; observations weighing nothing are dropped
/// (uncounted, §3.1). Groups keep queue order.
fn group(table: StationTable, items: &[Vec<u8>]) -> BTreeMap<StationKey, Vec<Decoded>> {
    let mut groups: BTreeMap<StationKey, Vec<Decoded>> = BTreeMap::new();
    for item in items {
        let weighed = match table {
            StationTable::Blue(_) => serde_json::from_slice::<BlueObservation>(item)
                .ok()
                .and_then(|o| {
                    let e = estimate_obs(&o.pos, o.signal, o.age);
                    Some((
                        StationKey::Mac(Mac::from_hex(&o.mac).ok()?),
                        (weigh_blue(&o), e),
                    ))
                }),
            StationTable::Wifi(_) => serde_json::from_slice::<WifiObservation>(item)
                .ok()
                .and_then(|o| {
                    let e = estimate_obs(&o.pos, o.signal, o.age);
                    Some((
                        StationKey::Mac(Mac::from_hex(&o.mac).ok()?),
                        (weigh_wifi(&o), e),
                    ))
                }),
            StationTable::Cell(_) => serde_json::from_slice::<CellObservation>(item)
                .ok()
                .and_then(|o| {
                    let e = estimate_obs(&o.pos, o.signal, o.age);
                    Some((StationKey::Cell(o.key()?), (weigh_cell(&o)?, e)))
                }),
        };
        match weighed {
            Some((key, obs)) if obs.0.weight > 0.0 => groups.entry(key).or_default().push(obs),
            Some(_) => {}
            None => tracing::error!(table = %table.name(), "undecodable observation dropped"),
        }
    }
    groups
}

/// The signal assumed for an estimate observation without one, dBm.
fn default_signal(kind: StationType) -> f64 {
    match kind {
        StationType::Wifi => -80.0,
        StationType::Blue => -90.0,
        StationType::Cell(_) => -110.0,
    }
}

/// The batch's estimate of one station: from the position-backed
/// observations when there are any (as the updater chooses), else from all.
fn batch_estimate(kind: StationType, obs: &[Decoded]) -> Option<Estimate> {
    let gnss: Vec<EstimateObs> = obs.iter().filter(|o| !o.0.query).map(|o| o.1).collect();
    let chosen: Vec<EstimateObs> = if gnss.is_empty() {
        obs.iter().map(|o| o.1).collect()
    } else {
        gnss
    };
    Estimate::of(&chosen, default_signal(kind))
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

/// Runs one batch of one station queue; returns observations taken (0 = empty,
/// or the table's writer lock is held by another worker: see [`StationRun`]).
pub async fn run_once(
    ctx: &PipelineContext,
    queue: &str,
    table: StationTable,
) -> Result<usize, PipelineError> {
    Ok(match run_batch(ctx, queue, table).await? {
        StationRun::Applied(n) => n,
        StationRun::Empty | StationRun::Busy => 0,
    })
}

/// What [`run_batch`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StationRun {
    /// A batch of this many items was taken and applied (or found applied
    /// before and acknowledged).
    Applied(usize),
    /// The queue had nothing to lease.
    Empty,
    /// Another worker holds the table's writer lock (PostgreSQL): nothing was
    /// leased, so the queue's items wait for the next pass, or for the worker
    /// that holds the lock.
    Busy,
}

/// Runs one batch of one station queue. On PostgreSQL the table's writer
/// lock is taken first, without waiting, and the batch is leased only under
/// it: a worker never holds a lease while it waits for another worker, and
/// one whose table is busy moves on to the next table instead of queueing
/// behind it.
pub async fn run_batch(
    ctx: &PipelineContext,
    queue: &str,
    table: StationTable,
) -> Result<StationRun, PipelineError> {
    let Some(lock) = ctx.store.try_lock_station_table(table).await? else {
        metrics::counter!("worker.station_table_busy", "queue" => queue.to_string()).increment(1);
        return Ok(StationRun::Busy);
    };
    let leased = ctx
        .queue
        .lease(queue, ctx.settings.station_batch, ctx.settings.visibility)
        .await;
    let batch = match leased {
        Ok(Some(batch)) => batch,
        Ok(None) => {
            lock.release().await?;
            return Ok(StationRun::Empty);
        }
        Err(e) => {
            // The lease error is the one to report; the lock goes with the
            // transaction's rollback either way.
            let _ = lock.release().await;
            return Err(e.into());
        }
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
        .apply_station_batch_locked(
            lock,
            queue,
            &batch.id,
            now,
            &keys,
            |stored: &HashMap<StationKey, StoredStation>| {
                let mut writes = StationWrites {
                    day: Some(now.date()),
                    ..StationWrites::default()
                };
                for (key, decoded) in &groups {
                    let obs: Vec<WeightedObs> = decoded.iter().map(|d| d.0.clone()).collect();
                    let existing = stored.get(key).map(|s| (&s.fields, s.psc));
                    let update = update_station(kind, existing, &obs, now, geocoder.as_ref());
                    let old_estimate = stored.get(key).and_then(|s| s.estimate);
                    let estimate =
                        next_estimate(update.action, old_estimate, batch_estimate(kind, decoded));
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
                                estimate,
                            },
                        ));
                    } else if estimate != old_estimate
                        && let Some(s) = stored.get(key)
                    {
                        // A confirm of a station already seen today writes no
                        // row, but its estimate learnt from the observations.
                        writes.rows.push((
                            *key,
                            StoredStation {
                                fields: s.fields.clone(),
                                psc: s.psc,
                                estimate,
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
    let taken = batch.items.len();
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
    Ok(StationRun::Applied(taken))
}
