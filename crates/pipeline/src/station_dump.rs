//! The station dump layout: one CSV row per learnt station, written by
//! `ichnaea dump` and read back by `ichnaea import`, so an operator can back up
//! or move what the service has learnt.
//!
//! The layout is the original's `location_dump` (pipeline §4.5):
//!
//! - Wi-Fi and Bluetooth: `mac,lat,lon,max_lat,min_lat,max_lon,min_lon,radius,region,samples,source,weight,created,modified,last_seen,block_first,block_last,block_count`
//!   (the two families share it, so `import` is told which one a file holds);
//! - cells: `radio,mcc,mnc,lac,cid,psc,` followed by the same columns after `mac`,
//!   radio `GSM`, `WCDMA`, `LTE` or `NR`.
//!
//! Coordinates carry 7 decimals; an unknown value is empty, except radius,
//! samples, weight and block_count, written `0`; times and days are Unix
//! seconds (days at midnight UTC). `source` is the stored code (0 fixed,
//! 3 gnss, 6 fused, 9 query).
//!
//! Importing a dump merges it: a station not stored yet is inserted as written,
//! a stored one is replaced only when the file's `modified` is newer, so
//! importing the same dump twice changes nothing. Cell areas of touched cells
//! and the region statistics are recomputed afterwards.

use std::collections::BTreeSet;
use std::io::BufRead;

use chrono::{DateTime, NaiveDate, NaiveDateTime};
use ichnaea_core::cell::CellKey;
use ichnaea_core::locate::result::round7;
use ichnaea_core::mac::Mac;
use ichnaea_core::queues::UPDATE_CELLAREA;
use ichnaea_core::radio::Radio;
use ichnaea_core::source::ReportSource;
use ichnaea_core::station::{BlueStation, CellStation, StationFields, WifiStation};

use crate::cell_import::ImportReport;
use crate::{PipelineContext, PipelineError, areas};

/// Header of a Wi-Fi or Bluetooth dump.
pub const MAC_HEADER: &str = "mac,lat,lon,max_lat,min_lat,max_lon,min_lon,radius,region,samples,source,weight,created,modified,last_seen,block_first,block_last,block_count";

/// Header of a cell dump.
pub const CELL_HEADER: &str = "radio,mcc,mnc,lac,cid,psc,lat,lon,max_lat,min_lat,max_lon,min_lon,radius,region,samples,source,weight,created,modified,last_seen,block_first,block_last,block_count";

/// Columns after the key (shared by every family).
const COMMON_COLUMNS: usize = 17;

/// Rows merged per transaction.
const CHUNK: usize = 1_000;

/// The station family a dump holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DumpKind {
    /// Wi-Fi access points.
    Wifi,
    /// Bluetooth beacons.
    Blue,
    /// Cells of every radio.
    Cell,
}

impl DumpKind {
    /// Parses the `--datatype` names `wifi`, `blue` and `cell`.
    pub fn parse(name: &str) -> Option<DumpKind> {
        match name {
            "wifi" => Some(DumpKind::Wifi),
            "blue" => Some(DumpKind::Blue),
            "cell" => Some(DumpKind::Cell),
            _ => None,
        }
    }
}

fn opt<T: ToString>(v: Option<T>) -> String {
    v.map(|v| v.to_string()).unwrap_or_default()
}

/// The dump's name of a radio (the MLS export says `UMTS` for WCDMA instead).
pub fn radio_name(radio: Radio) -> &'static str {
    match radio {
        Radio::Gsm => "GSM",
        Radio::Wcdma => "WCDMA",
        Radio::Lte => "LTE",
        Radio::Nr => "NR",
    }
}

/// The columns shared by every family, in [`MAC_HEADER`] order after the key.
fn format_common(f: &StationFields) -> String {
    let coord = |v: Option<f64>| opt(v.map(round7));
    let secs = |t: Option<NaiveDateTime>| opt(t.map(|t| t.and_utc().timestamp()));
    let day = |d: Option<NaiveDate>| {
        opt(d
            .and_then(|d| d.and_hms_opt(0, 0, 0))
            .map(|t| t.and_utc().timestamp()))
    };
    format!(
        "{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{}",
        coord(f.lat),
        coord(f.lon),
        coord(f.max_lat),
        coord(f.min_lat),
        coord(f.max_lon),
        coord(f.min_lon),
        f.radius.unwrap_or(0),
        opt(f.region.clone()),
        f.samples.unwrap_or(0),
        opt(f.source.map(|s| s.code())),
        f.weight.unwrap_or(0.0),
        secs(f.created),
        secs(f.modified),
        day(f.last_seen),
        day(f.block_first),
        day(f.block_last),
        f.block_count.unwrap_or(0),
    )
}

/// One Wi-Fi or Bluetooth row (no line end).
pub fn format_mac_row(mac: &Mac, fields: &StationFields) -> String {
    format!("{mac},{}", format_common(fields))
}

/// One cell row (no line end).
pub fn format_cell_row(key: &CellKey, psc: Option<i16>, fields: &StationFields) -> String {
    format!(
        "{},{},{},{},{},{},{}",
        radio_name(key.radio),
        key.mcc,
        key.mnc,
        key.lac,
        key.cid,
        opt(psc),
        format_common(fields)
    )
}

fn invalid(line: u64, message: impl Into<String>) -> PipelineError {
    PipelineError::Export {
        name: "station_import".into(),
        message: format!("line {line}: {}", message.into()),
    }
}

/// Reads the columns after the key (`f` holds exactly [`COMMON_COLUMNS`]).
/// Columns a dump does not carry keep their defaults (the update is not needless
/// once the station rows grow).
#[allow(clippy::needless_update)]
fn parse_common(f: &[&str], line: u64) -> Result<StationFields, PipelineError> {
    let text = |i: usize| f[i].trim();
    let float = |i: usize, name: &str| -> Result<Option<f64>, PipelineError> {
        if text(i).is_empty() {
            return Ok(None);
        }
        text(i)
            .parse::<f64>()
            .ok()
            .filter(|v| v.is_finite())
            .map(Some)
            .ok_or_else(|| invalid(line, format!("{name} {:?}", f[i])))
    };
    let int = |i: usize, name: &str| -> Result<Option<i64>, PipelineError> {
        if text(i).is_empty() {
            return Ok(None);
        }
        text(i)
            .parse::<i64>()
            .map(Some)
            .map_err(|_| invalid(line, format!("{name} {:?}", f[i])))
    };
    let time = |i: usize, name: &str| -> Result<Option<NaiveDateTime>, PipelineError> {
        match int(i, name)? {
            None => Ok(None),
            Some(s) => DateTime::from_timestamp(s, 0)
                .map(|t| Some(t.naive_utc()))
                .ok_or_else(|| invalid(line, format!("{name} {s}"))),
        }
    };
    let day = |i: usize, name: &str| -> Result<Option<NaiveDate>, PipelineError> {
        Ok(time(i, name)?.map(|t| t.date()))
    };
    let lat = float(0, "lat")?;
    let lon = float(1, "lon")?;
    let in_range = |lat: Option<f64>, lon: Option<f64>| {
        lat.is_none_or(|v| (-90.0..=90.0).contains(&v))
            && lon.is_none_or(|v| (-180.0..=180.0).contains(&v))
    };
    if !in_range(lat, lon) || !in_range(float(2, "max_lat")?, float(4, "max_lon")?) {
        return Err(invalid(line, "coordinates out of range"));
    }
    let source = match int(9, "source")? {
        None => None,
        Some(code) => Some(
            ReportSource::from_code(code).ok_or_else(|| invalid(line, format!("source {code}")))?,
        ),
    };
    let region = Some(text(7).to_string()).filter(|r| !r.is_empty());
    if region.as_ref().is_some_and(|r| r.len() > 2) {
        return Err(invalid(line, format!("region {:?}", f[7])));
    }
    Ok(StationFields {
        lat,
        lon,
        max_lat: float(2, "max_lat")?,
        min_lat: float(3, "min_lat")?,
        max_lon: float(4, "max_lon")?,
        min_lon: float(5, "min_lon")?,
        radius: int(6, "radius")?.map(|r| r.max(0)),
        region,
        samples: int(8, "samples")?.map(|s| s.max(0)),
        source,
        weight: float(10, "weight")?.map(|w| w.max(0.0)),
        created: time(11, "created")?,
        modified: time(12, "modified")?,
        last_seen: day(13, "last_seen")?,
        block_first: day(14, "block_first")?,
        block_last: day(15, "block_last")?,
        block_count: int(16, "block_count")?.map(|c| i16::try_from(c.clamp(0, 255)).unwrap_or(255)),
        ..StationFields::default()
    })
}

/// Parses one Wi-Fi or Bluetooth row.
pub fn parse_mac_row(line: &str, number: u64) -> Result<(Mac, StationFields), PipelineError> {
    let f: Vec<&str> = line.trim_end_matches(['\r', '\n']).split(',').collect();
    if f.len() != 1 + COMMON_COLUMNS {
        return Err(invalid(
            number,
            format!("{} fields, {} expected", f.len(), 1 + COMMON_COLUMNS),
        ));
    }
    let mac: Mac = f[0]
        .trim()
        .parse()
        .map_err(|_| invalid(number, format!("mac {:?}", f[0])))?;
    Ok((mac, parse_common(&f[1..], number)?))
}

/// Parses one cell row.
pub fn parse_cell_row(line: &str, number: u64) -> Result<CellStation, PipelineError> {
    let f: Vec<&str> = line.trim_end_matches(['\r', '\n']).split(',').collect();
    if f.len() != 6 + COMMON_COLUMNS {
        return Err(invalid(
            number,
            format!("{} fields, {} expected", f.len(), 6 + COMMON_COLUMNS),
        ));
    }
    let radio = match f[0].trim() {
        "GSM" => Radio::Gsm,
        "WCDMA" | "UMTS" => Radio::Wcdma,
        "LTE" => Radio::Lte,
        "NR" => Radio::Nr,
        other => return Err(invalid(number, format!("unknown radio {other:?}"))),
    };
    let num = |i: usize, name: &str| -> Result<u64, PipelineError> {
        f[i].trim()
            .parse::<u64>()
            .map_err(|_| invalid(number, format!("{name} {:?}", f[i])))
    };
    let key = CellKey {
        radio,
        mcc: u16::try_from(num(1, "mcc")?).map_err(|_| invalid(number, "mcc"))?,
        mnc: u16::try_from(num(2, "mnc")?).map_err(|_| invalid(number, "mnc"))?,
        lac: u32::try_from(num(3, "lac")?).map_err(|_| invalid(number, "lac"))?,
        cid: num(4, "cid")?,
    };
    key.check_encodable()
        .map_err(|e| invalid(number, e.to_string()))?;
    let psc = match f[5].trim() {
        "" => None,
        text => Some(
            text.parse::<i16>()
                .map_err(|_| invalid(number, format!("psc {text:?}")))?,
        ),
    };
    Ok(CellStation {
        key,
        psc,
        fields: parse_common(&f[6..], number)?,
    })
}

/// True when `header` is the first line of a dump (of any family).
pub fn is_dump_header(header: &str) -> bool {
    let header = header.trim_end_matches(['\r', '\n']);
    header == MAC_HEADER || header == CELL_HEADER
}

/// Whether a file row replaces the stored station.
fn newer(file: &StationFields, stored: Option<&StationFields>) -> bool {
    match stored {
        None => true,
        Some(stored) => match (file.modified, stored.modified) {
            (Some(file), Some(stored)) => file > stored,
            (Some(_), None) => true,
            (None, _) => false,
        },
    }
}

/// Rows of one family collected for one transaction.
enum Chunk {
    Mac(Vec<(Mac, StationFields)>),
    Cell(Vec<CellStation>),
}

impl Chunk {
    fn len(&self) -> usize {
        match self {
            Chunk::Mac(rows) => rows.len(),
            Chunk::Cell(rows) => rows.len(),
        }
    }
}

/// Merges a chunk; returns (inserted, updated, skipped).
async fn merge(
    ctx: &PipelineContext,
    kind: DumpKind,
    chunk: Chunk,
    areas_touched: &mut BTreeSet<Vec<u8>>,
) -> Result<(u64, u64, u64), PipelineError> {
    let total = chunk.len() as u64;
    let (inserted, updated) = match chunk {
        Chunk::Mac(rows) => {
            let macs: Vec<Mac> = rows.iter().map(|(m, _)| *m).collect();
            let stored: Vec<(Mac, StationFields)> = match kind {
                DumpKind::Blue => ctx
                    .store
                    .blue_stations(&macs)
                    .await?
                    .into_iter()
                    .map(|s| (s.mac, s.fields))
                    .collect(),
                _ => ctx
                    .store
                    .wifi_stations(&macs)
                    .await?
                    .into_iter()
                    .map(|s| (s.mac, s.fields))
                    .collect(),
            };
            let (mut inserted, mut updated) = (0, 0);
            let mut keep = Vec::with_capacity(rows.len());
            for (mac, fields) in rows {
                let old = stored.iter().find(|(m, _)| *m == mac).map(|(_, f)| f);
                if newer(&fields, old) {
                    if old.is_some() {
                        updated += 1;
                    } else {
                        inserted += 1;
                    }
                    keep.push((mac, fields));
                }
            }
            match kind {
                DumpKind::Blue => {
                    let rows: Vec<BlueStation> = keep
                        .into_iter()
                        .map(|(mac, fields)| BlueStation { mac, fields })
                        .collect();
                    ctx.store.upsert_blue_stations(&rows).await?;
                }
                _ => {
                    let rows: Vec<WifiStation> = keep
                        .into_iter()
                        .map(|(mac, fields)| WifiStation { mac, fields })
                        .collect();
                    ctx.store.upsert_wifi_stations(&rows).await?;
                }
            }
            (inserted, updated)
        }
        Chunk::Cell(rows) => {
            let keys: Vec<CellKey> = rows.iter().map(|r| r.key).collect();
            let stored = ctx.store.cell_stations(&keys).await?;
            let (mut inserted, mut updated) = (0, 0);
            let mut keep = Vec::with_capacity(rows.len());
            for row in rows {
                let old = stored.iter().find(|s| s.key == row.key).map(|s| &s.fields);
                if newer(&row.fields, old) {
                    if old.is_some() {
                        updated += 1;
                    } else {
                        inserted += 1;
                    }
                    if let Ok(area) = row.key.area().to_bytes() {
                        areas_touched.insert(area);
                    }
                    keep.push(row);
                }
            }
            ctx.store.upsert_cell_stations(&keep).await?;
            (inserted, updated)
        }
    };
    Ok((inserted, updated, total - inserted - updated))
}

/// Imports a dump of `kind` from `reader`, whose first line must be the dump
/// header of that family. The first data row must be valid; later invalid rows
/// are skipped with a warning.
pub async fn import(
    ctx: &PipelineContext,
    kind: DumpKind,
    reader: impl BufRead,
) -> Result<ImportReport, PipelineError> {
    let mut report = ImportReport::default();
    let mut areas_touched = BTreeSet::new();
    let fresh = || match kind {
        DumpKind::Cell => Chunk::Cell(Vec::with_capacity(CHUNK)),
        _ => Chunk::Mac(Vec::with_capacity(CHUNK)),
    };
    let mut chunk = fresh();
    let io = |e: std::io::Error| PipelineError::Export {
        name: "station_import".into(),
        message: e.to_string(),
    };
    let expected = match kind {
        DumpKind::Cell => CELL_HEADER,
        _ => MAC_HEADER,
    };
    for (i, line) in reader.lines().enumerate() {
        let line = line.map_err(io)?;
        let number = i as u64 + 1;
        if number == 1 {
            if line.trim_end_matches('\r') != expected {
                return Err(invalid(
                    1,
                    format!("not a {kind:?} dump: header {expected:?} expected"),
                ));
            }
            continue;
        }
        if line.trim().is_empty() {
            continue;
        }
        report.rows += 1;
        let parsed = match &mut chunk {
            Chunk::Mac(rows) => parse_mac_row(&line, number).map(|row| rows.push(row)),
            Chunk::Cell(rows) => parse_cell_row(&line, number).map(|row| rows.push(row)),
        };
        match parsed {
            Ok(()) => {}
            Err(e) if report.rows == 1 => return Err(e),
            Err(e) => {
                tracing::warn!(error = %e, "skipping invalid row");
                report.skipped += 1;
            }
        }
        if chunk.len() == CHUNK {
            let full = std::mem::replace(&mut chunk, fresh());
            let (n, u, s) = merge(ctx, kind, full, &mut areas_touched).await?;
            report.inserted += n;
            report.updated += u;
            report.skipped += s;
        }
    }
    if chunk.len() > 0 {
        let (n, u, s) = merge(ctx, kind, chunk, &mut areas_touched).await?;
        report.inserted += n;
        report.updated += u;
        report.skipped += s;
    }
    let ids: Vec<Vec<u8>> = areas_touched.into_iter().collect();
    for part in ids.chunks(1_000) {
        ctx.queue.push(UPDATE_CELLAREA, part.to_vec()).await?;
        while areas::run_once(ctx).await? > 0 {}
    }
    ctx.store.update_region_stats().await?;
    Ok(report)
}
