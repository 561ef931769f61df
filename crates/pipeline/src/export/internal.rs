//! The `internal` exporter (pipeline §2.9): reports become observations on
//! the station queues and grids on the data-map queues, handed on atomically
//! with the acknowledgement of the export batch.
//!
//! Sections (§) refer to docs/reference/pipeline.md.

use std::collections::{BTreeMap, BTreeSet};

use ichnaea_core::ExportItem;
use ichnaea_core::apikey::metric_label;
use ichnaea_core::datamap::DatamapGrid;
use ichnaea_core::ingest::ingest_report;
use ichnaea_core::mac::Mac;
use ichnaea_core::queues::{update_blue, update_cell, update_datamap, update_wifi};
use ichnaea_core::radio::Radio;

use crate::PipelineContext;

/// Counters of one export batch, per api key (pipeline §2.10.7).
#[derive(Default)]
struct Counts {
    report_upload: u64,
    report_drop: u64,
    upload: [u64; 3],
    drop: [u64; 3],
}

const TYPES: [&str; 3] = ["blue", "cell", "wifi"];

/// Entries for other queues: (queue name, items), as `Queue::transfer` takes them.
pub type QueueOutputs = Vec<(String, Vec<Vec<u8>>)>;

/// Counters of one batch by api key, for [`emit`].
pub struct BatchCounts(BTreeMap<Option<String>, Counts>);

/// The queue entries produced from one batch of export elements
/// (`{"api_key", "report"}`), and the counters they imply.
pub fn observations_for(
    ctx: &PipelineContext,
    elements: &[Vec<u8>],
) -> (QueueOutputs, BatchCounts) {
    let mut outputs: BTreeMap<String, Vec<Vec<u8>>> = BTreeMap::new();
    let mut grids: BTreeSet<DatamapGrid> = BTreeSet::new();
    let mut counts: BTreeMap<Option<String>, Counts> = BTreeMap::new();
    for element in elements {
        let ExportItem { api_key, report } = match ExportItem::decode(element) {
            Ok(item) => item,
            Err(e) => {
                tracing::error!(error = %e, "undecodable export item dropped");
                metrics::counter!("data.export.undecodable").increment(1);
                continue;
            }
        };
        let Some(ingested) = ingest_report(&report, ctx.geocoder.as_ref()) else {
            continue;
        };
        let c = counts.entry(api_key).or_default();
        c.report_upload += 1;
        c.report_drop += u64::from(ingested.counts.report_drop);
        c.drop[0] += ingested.counts.blue_drop;
        c.drop[1] += ingested.counts.cell_drop;
        c.drop[2] += ingested.counts.wifi_drop;
        let obs = ingested.observations;
        c.upload[0] += obs.blue.len() as u64;
        c.upload[1] += obs.cell.len() as u64;
        c.upload[2] += obs.wifi.len() as u64;
        for o in &obs.blue {
            if let (Ok(mac), Ok(bytes)) = (Mac::from_hex(&o.mac), serde_json::to_vec(o)) {
                outputs
                    .entry(update_blue(mac.shard()))
                    .or_default()
                    .push(bytes);
            }
        }
        for o in &obs.wifi {
            if let (Ok(mac), Ok(bytes)) = (Mac::from_hex(&o.mac), serde_json::to_vec(o)) {
                outputs
                    .entry(update_wifi(mac.shard()))
                    .or_default()
                    .push(bytes);
            }
        }
        for o in &obs.cell {
            if let (Some(radio), Ok(bytes)) =
                (Radio::from_code(o.radio.into()), serde_json::to_vec(o))
            {
                outputs.entry(update_cell(radio)).or_default().push(bytes);
            }
        }
        if let Some((lat, lon)) = ingested.position {
            grids.insert(DatamapGrid::from_position(lat, lon));
        }
    }
    for grid in grids {
        outputs
            .entry(update_datamap(grid.quadrant()))
            .or_default()
            .push(grid.to_bytes().to_vec());
    }
    (outputs.into_iter().collect(), BatchCounts(counts))
}

/// Emits the exporter's counters (§2.10.7); only keys that exist in
/// `api_key` become a `key` tag, looked up once per distinct key of the batch.
pub async fn emit(ctx: &PipelineContext, counts: BatchCounts) {
    let mut known = std::collections::HashSet::new();
    for key in counts.0.keys().flatten() {
        if let Ok(Some(row)) = ctx.store.api_key(key).await {
            known.insert(row.valid_key);
        }
    }
    for (key, c) in counts.0 {
        let key = key.filter(|k| known.contains(k));
        let tags: Vec<(&'static str, String)> = key
            .map(|k| vec![("key", metric_label(&k))])
            .unwrap_or_default();
        let counter = |name: &'static str, n: u64, extra: Option<&'static str>| {
            if n == 0 {
                return;
            }
            let mut labels = tags.clone();
            if let Some(t) = extra {
                labels.push(("type", t.to_string()));
            }
            metrics::counter!(name, &labels).increment(n);
        };
        counter("data.report.upload", c.report_upload, None);
        counter("data.report.drop", c.report_drop, None);
        for (i, t) in TYPES.iter().enumerate() {
            counter("data.observation.upload", c.upload[i], Some(t));
            counter("data.observation.drop", c.drop[i], Some(t));
        }
    }
}
