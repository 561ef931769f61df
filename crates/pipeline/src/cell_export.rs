//! The public cell export (pipeline §4.4): gzip CSV files of the positioned
//! cells in the OpenCellID-compatible layout, hourly (cells changed in the last
//! hour) and daily (cells changed in the last year), written to an `s3://` or
//! `file://` directory (default `<exports_dir>/export`).

use std::io::Write;

use chrono::{NaiveDateTime, Timelike};
use flate2::Compression;
use flate2::write::GzEncoder;
use ichnaea_core::locate::result::round7;
use ichnaea_core::radio::Radio;
use ichnaea_core::station::CellStation;

use crate::{PipelineContext, PipelineError};

/// Rows read per query.
const PAGE: i64 = 25_000;

/// Header of the CSV files.
pub const HEADER: &str =
    "radio,mcc,net,area,cell,unit,lon,lat,range,samples,changeable,created,updated,averageSignal";

/// Which export.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Cells modified in the hour before `now` (truncated to the hour).
    Diff,
    /// Cells modified in the last 365 days.
    Full,
}

/// The file name and the `modified` window of an export at `now`.
pub fn window(kind: Kind, now: NaiveDateTime) -> (String, NaiveDateTime, Option<NaiveDateTime>) {
    match kind {
        Kind::Diff => {
            let end = now.date().and_hms_opt(now.hour(), 0, 0).unwrap_or(now);
            let start = end - chrono::Duration::hours(1);
            (
                format!(
                    "MLS-diff-cell-export-{}T{:02}0000.csv.gz",
                    end.date().format("%Y-%m-%d"),
                    end.hour()
                ),
                start,
                Some(end),
            )
        }
        Kind::Full => {
            let midnight = now.date().and_hms_opt(0, 0, 0).unwrap_or(now);
            (
                format!(
                    "MLS-full-cell-export-{}T000000.csv.gz",
                    now.date().format("%Y-%m-%d")
                ),
                midnight - chrono::Duration::days(365),
                None,
            )
        }
    }
}

fn radio_name(radio: Radio) -> &'static str {
    match radio {
        Radio::Gsm => "GSM",
        Radio::Wcdma => "UMTS",
        Radio::Lte => "LTE",
        Radio::Nr => "NR",
    }
}

/// One CSV line (CRLF-terminated) of a cell.
pub fn csv_line(cell: &CellStation) -> String {
    let f = &cell.fields;
    let opt = |v: Option<String>| v.unwrap_or_default();
    format!(
        "{},{},{},{},{},{},{},{},{},{},1,{},{},\r\n",
        radio_name(cell.key.radio),
        cell.key.mcc,
        cell.key.mnc,
        cell.key.lac,
        cell.key.cid,
        opt(cell.psc.map(|p| p.to_string())),
        opt(f.lon.map(|v| round7(v).to_string())),
        opt(f.lat.map(|v| round7(v).to_string())),
        f.radius.unwrap_or(0),
        f.samples.unwrap_or(0),
        opt(f.created.map(|t| t.and_utc().timestamp().to_string())),
        opt(f.modified.map(|t| t.and_utc().timestamp().to_string())),
    )
}

/// Builds and writes one export; returns (where it was written, cells). A
/// window whose file exists already is left as it is (cells 0).
pub async fn export(
    ctx: &PipelineContext,
    dir_url: &str,
    kind: Kind,
    now: NaiveDateTime,
) -> Result<(String, u64), PipelineError> {
    let (name, from, to) = window(kind, now);
    // A window's file is final once written: a restart does not write it again.
    let export_error = |e: crate::export::geosubmit::ExportError| PipelineError::Export {
        name: "cell_export".into(),
        message: e.to_string(),
    };
    let existing = ctx.exporters.objects.existing_file(dir_url, &name).await;
    if let Some(path) = existing.map_err(export_error)? {
        tracing::debug!(%path, "cell export already written");
        return Ok((path, 0));
    }
    let io = |e: std::io::Error| PipelineError::Export {
        name: "cell_export".into(),
        message: e.to_string(),
    };
    let mut gz = GzEncoder::new(Vec::new(), Compression::new(5));
    gz.write_all(HEADER.as_bytes()).map_err(io)?;
    gz.write_all(b"\r\n").map_err(io)?;
    let mut rows = 0u64;
    for radio in Radio::ALL {
        let mut after: Option<Vec<u8>> = None;
        loop {
            let page = ctx
                .store
                .exportable_cells(radio, from, to, after.as_deref(), PAGE)
                .await?;
            for cell in &page {
                gz.write_all(csv_line(cell).as_bytes()).map_err(io)?;
            }
            rows += page.len() as u64;
            match page.last() {
                Some(last) if page.len() as i64 == PAGE => after = last.key.to_bytes().ok(),
                _ => break,
            }
        }
    }
    let body = gz.finish().map_err(io)?;
    let written = ctx
        .exporters
        .objects
        .put_file(dir_url, &name, body, "application/gzip")
        .await
        .map_err(export_error)?;
    metrics::counter!("data.export.cells", "kind" => if kind == Kind::Diff { "diff" } else { "full" }).increment(rows);
    tracing::info!(path = %written, cells = rows, "cell export written");
    Ok((written, rows))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_windows() {
        let now = chrono::NaiveDate::from_ymd_opt(2024, 1, 12)
            .unwrap()
            .and_hms_opt(14, 3, 10)
            .unwrap();
        let (name, from, to) = window(Kind::Diff, now);
        assert_eq!(name, "MLS-diff-cell-export-2024-01-12T140000.csv.gz");
        assert_eq!(from.to_string(), "2024-01-12 13:00:00");
        assert_eq!(
            to.map(|t| t.to_string()).as_deref(),
            Some("2024-01-12 14:00:00")
        );
        let (name, from, to) = window(Kind::Full, now);
        assert_eq!(name, "MLS-full-cell-export-2024-01-12T000000.csv.gz");
        assert_eq!(from.to_string(), "2023-01-12 00:00:00");
        assert_eq!(to, None);
    }
}
