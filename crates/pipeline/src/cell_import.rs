//! Importing a public cell export (pipeline §4.5, `load_cell_data`): a
//! gzip CSV in the layout of [`crate::cell_export`] (MLS or OpenCellID) is
//! merged into the cell tables, then the affected cell areas and the region
//! statistics are recomputed.
//!
//! Per row: radio `GSM`/`UMTS`/`LTE`/`NR`; an empty radio skips the row; an
//! unknown radio aborts. radius = min(range, 100 000). An existing cell is
//! overwritten (psc, position, radius, samples, created, modified; bounding box
//! and region kept) only when the file's row is newer; a new cell gets its
//! bounding box at the point and the region of its MCC at that point. An empty
//! `unit` stays NULL (the original stored 0).

use std::collections::BTreeSet;
use std::io::BufRead;

use chrono::DateTime;
use ichnaea_core::cell::CellKey;
use ichnaea_core::queues::UPDATE_CELLAREA;
use ichnaea_core::radio::Radio;
use ichnaea_core::station::{CellStation, StationFields};

use crate::{PipelineContext, PipelineError, areas};

/// Rows merged per transaction.
const CHUNK: usize = 1_000;

/// What an import did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ImportReport {
    /// Rows read (header excluded).
    pub rows: u64,
    /// Cells inserted.
    pub inserted: u64,
    /// Cells overwritten by newer rows.
    pub updated: u64,
    /// Rows skipped: empty radio, invalid values, or not newer than the stored cell.
    pub skipped: u64,
}

fn invalid(line: u64, message: impl Into<String>) -> PipelineError {
    PipelineError::Export {
        name: "cell_import".into(),
        message: format!("line {line}: {}", message.into()),
    }
}

/// One parsed row; `Ok(None)` for a row to skip (empty radio).
fn parse_row(line: &str, number: u64) -> Result<Option<CellStation>, PipelineError> {
    let f: Vec<&str> = line.trim_end_matches(['\r', '\n']).split(',').collect();
    if f.len() < 13 {
        return Err(invalid(
            number,
            format!("{} fields, 13 or 14 expected", f.len()),
        ));
    }
    let radio = match f[0] {
        "" => return Ok(None),
        "GSM" => Radio::Gsm,
        "UMTS" => Radio::Wcdma,
        "LTE" => Radio::Lte,
        "NR" => Radio::Nr,
        other => return Err(invalid(number, format!("unknown radio {other:?}"))),
    };
    let int = |i: usize, name: &str| -> Result<i64, PipelineError> {
        f[i].trim()
            .parse::<i64>()
            .map_err(|_| invalid(number, format!("{name} {:?}", f[i])))
    };
    let float = |i: usize, name: &str| -> Result<f64, PipelineError> {
        f[i].trim()
            .parse::<f64>()
            .ok()
            .filter(|v| v.is_finite())
            .ok_or_else(|| invalid(number, format!("{name} {:?}", f[i])))
    };
    let key = CellKey {
        radio,
        mcc: u16::try_from(int(1, "mcc")?).map_err(|_| invalid(number, "mcc"))?,
        mnc: u16::try_from(int(2, "net")?).map_err(|_| invalid(number, "net"))?,
        lac: u32::try_from(int(3, "area")?).map_err(|_| invalid(number, "area"))?,
        cid: u64::try_from(int(4, "cell")?).map_err(|_| invalid(number, "cell"))?,
    };
    key.check_encodable()
        .map_err(|e| invalid(number, e.to_string()))?;
    let psc = if f[5].trim().is_empty() {
        None
    } else {
        Some(i16::try_from(int(5, "unit")?).map_err(|_| invalid(number, "unit"))?)
    };
    let (lon, lat) = (float(6, "lon")?, float(7, "lat")?);
    if !(-ichnaea_core::geo::MAX_LAT..=ichnaea_core::geo::MAX_LAT).contains(&lat)
        || !(-180.0..=180.0).contains(&lon)
    {
        return Err(invalid(number, format!("position {lat}, {lon}")));
    }
    let time = |i: usize, name: &str| -> Result<Option<chrono::NaiveDateTime>, PipelineError> {
        if f[i].trim().is_empty() {
            return Ok(None);
        }
        Ok(DateTime::from_timestamp(int(i, name)?, 0).map(|t| t.naive_utc()))
    };
    Ok(Some(CellStation {
        key,
        psc,
        fields: StationFields {
            lat: Some(lat),
            lon: Some(lon),
            radius: Some(int(8, "range")?.clamp(0, 100_000)),
            samples: Some(int(9, "samples")?.max(0)),
            created: time(11, "created")?,
            modified: time(12, "updated")?,
            ..StationFields::default()
        },
    }))
}

/// Merges a chunk; returns (inserted, updated, skipped) and records touched areas.
async fn merge(
    ctx: &PipelineContext,
    rows: Vec<CellStation>,
    areas_touched: &mut BTreeSet<Vec<u8>>,
) -> Result<(u64, u64, u64), PipelineError> {
    let keys: Vec<CellKey> = rows.iter().map(|r| r.key).collect();
    let stored = ctx.store.cell_stations(&keys).await?;
    let (mut inserted, mut updated, mut skipped) = (0, 0, 0);
    let mut writes = Vec::with_capacity(rows.len());
    for mut row in rows {
        match stored.iter().find(|s| s.key == row.key) {
            Some(old) => {
                if old.fields.modified.is_some() && row.fields.modified <= old.fields.modified {
                    skipped += 1;
                    continue;
                }
                let fields = StationFields {
                    lat: row.fields.lat,
                    lon: row.fields.lon,
                    radius: row.fields.radius,
                    samples: row.fields.samples,
                    created: row.fields.created,
                    modified: row.fields.modified,
                    ..old.fields.clone()
                };
                writes.push(CellStation {
                    key: row.key,
                    psc: row.psc,
                    fields,
                });
                updated += 1;
            }
            None => {
                let (lat, lon) = (row.fields.lat.unwrap_or(0.0), row.fields.lon.unwrap_or(0.0));
                row.fields.max_lat = Some(lat);
                row.fields.min_lat = Some(lat);
                row.fields.max_lon = Some(lon);
                row.fields.min_lon = Some(lon);
                row.fields.region = ctx.geocoder.region_for_cell(lat, lon, row.key.mcc);
                writes.push(row);
                inserted += 1;
            }
        }
    }
    for w in &writes {
        if let Ok(area) = w.key.area().to_bytes() {
            areas_touched.insert(area);
        }
    }
    ctx.store.upsert_cell_stations(&writes).await?;
    Ok((inserted, updated, skipped))
}

/// Imports a gzip CSV (or plain CSV) cell export from `reader`; the header
/// line is optional. The first row must be valid; later invalid rows are skipped
/// with a warning.
pub async fn import(
    ctx: &PipelineContext,
    reader: impl BufRead,
) -> Result<ImportReport, PipelineError> {
    let mut report = ImportReport::default();
    let mut chunk = Vec::with_capacity(CHUNK);
    let mut areas_touched = BTreeSet::new();
    let io = |e: std::io::Error| PipelineError::Export {
        name: "cell_import".into(),
        message: e.to_string(),
    };
    for (i, line) in reader.lines().enumerate() {
        let line = line.map_err(io)?;
        let number = i as u64 + 1;
        if number == 1 && line.starts_with("radio,") {
            continue;
        }
        if number == 1 {
            tracing::warn!("no header line; reading the first line as data");
        }
        if line.trim().is_empty() {
            continue;
        }
        report.rows += 1;
        match parse_row(&line, number) {
            Ok(Some(row)) => chunk.push(row),
            Ok(None) => report.skipped += 1,
            Err(e) if report.rows == 1 => return Err(e),
            Err(e) => {
                tracing::warn!(error = %e, "skipping invalid row");
                report.skipped += 1;
            }
        }
        if chunk.len() == CHUNK {
            let (n, u, s) = merge(ctx, std::mem::take(&mut chunk), &mut areas_touched).await?;
            (report.inserted, report.updated, report.skipped) =
                (report.inserted + n, report.updated + u, report.skipped + s);
        }
    }
    if !chunk.is_empty() {
        let (n, u, s) = merge(ctx, chunk, &mut areas_touched).await?;
        (report.inserted, report.updated, report.skipped) =
            (report.inserted + n, report.updated + u, report.skipped + s);
    }
    let ids: Vec<Vec<u8>> = areas_touched.into_iter().collect();
    for part in ids.chunks(1_000) {
        ctx.queue.push(UPDATE_CELLAREA, part.to_vec()).await?;
        while areas::run_once(ctx).await? > 0 {}
    }
    ctx.store.update_region_stats().await?;
    Ok(report)
}

#[cfg(test)]
mod tests {
    // Test code: a failed unwrap is a failed test.
    #![allow(clippy::unwrap_used)]

    use super::*;
    use proptest::prelude::*;

    const VALID: &str = "LTE,262,1,40503,27263491,112,13.405,52.52,850,12,1,1500000000,1700000000,";

    #[test]
    fn a_valid_row_parses() {
        let row = parse_row(VALID, 2).unwrap().unwrap();
        assert_eq!(
            (row.key.mcc, row.key.cid, row.psc),
            (262, 27_263_491, Some(112))
        );
        assert_eq!(parse_row(",262,1,1,1,,0,0,0,0,0,,", 2).unwrap(), None);
    }

    /// A field value worth trying in any column.
    fn field() -> impl Strategy<Value = String> {
        prop_oneof![
            prop::sample::select(vec![
                "",
                " ",
                "-1",
                "0",
                "65535",
                "65536",
                "4294967296",
                "68719476736",
                "9223372036854775807",
                "-9223372036854775808",
                "99999999999999999999",
                "1e3",
                "NaN",
                "inf",
                "-inf",
                "90.0001",
                "-180",
                "181",
                "0x10",
                "GSM",
                "UMTS",
                "LTE",
                "NR",
                "CDMA",
                "gsm",
                "\u{0}",
                "é",
                "\"1\"",
            ])
            .prop_map(String::from),
            any::<i64>().prop_map(|i| i.to_string()),
            any::<f64>().prop_map(|f| f.to_string()),
            "[ -~]{0,8}",
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig {
            cases: 1024,
            failure_persistence: None,
            ..ProptestConfig::default()
        })]

        /// Any field of a valid row replaced by anything, any number of
        /// fields, or any text: a row, a skip, or an error naming the line —
        /// never a panic, and a parsed row always within the ranges the
        /// store expects.
        #[test]
        fn rows_never_panic_and_stay_in_range(
            replacements in prop::collection::vec((0usize..16, field()), 0..4),
            truncate in 0usize..17,
            line in prop::option::of("[ -~\\r\\n]{0,120}"),
        ) {
            let text = match line {
                Some(line) => line,
                None => {
                    let mut f: Vec<String> = VALID.split(',').map(String::from).collect();
                    for (i, value) in replacements {
                        if i < f.len() {
                            f[i] = value;
                        } else {
                            f.push(value);
                        }
                    }
                    f.truncate(truncate.max(1));
                    f.join(",")
                }
            };
            match parse_row(&text, 7) {
                Ok(Some(row)) => {
                    prop_assert!(row.key.check_encodable().is_ok());
                    let lat = row.fields.lat.unwrap();
                    let lon = row.fields.lon.unwrap();
                    prop_assert!((-90.0..=90.0).contains(&lat) && (-180.0..=180.0).contains(&lon));
                    prop_assert!((0..=100_000).contains(&row.fields.radius.unwrap()));
                    prop_assert!(row.fields.samples.unwrap() >= 0);
                }
                Ok(None) => prop_assert!(text.starts_with(',')),
                Err(e) => prop_assert!(e.to_string().contains("line 7: "), "{e}"),
            }
        }
    }
}
