//! `ichnaea dump`: writes a station family to a gzip CSV file (pipeline
//! §4.5, `location_dump`), optionally only the stations within a distance of a
//! point. For moving data between instances, backups and analysis; the layout
//! is [`ichnaea_pipeline::station_dump`], which `ichnaea import` reads back.

use std::io::Write;
use std::path::Path;

use flate2::Compression;
use flate2::write::GzEncoder;
use ichnaea_core::geo::bbox;
use ichnaea_core::radio::Radio;
use ichnaea_pipeline::station_dump::{CELL_HEADER, MAC_HEADER, format_cell_row, format_mac_row};
use ichnaea_store::{BoundingBox, StationKey, StationTable, Store};

/// Rows read per query.
const PAGE: i64 = 25_000;

/// Writes the dump; refuses to overwrite an existing file. Returns rows written.
pub async fn dump(
    store: &Store,
    datatype: &str,
    file: &Path,
    around: Option<(f64, f64, f64)>,
) -> anyhow::Result<u64> {
    let tables: Vec<StationTable> = match datatype {
        "wifi" => (0..16).map(StationTable::Wifi).collect(),
        "blue" => (0..16).map(StationTable::Blue).collect(),
        "cell" => Radio::ALL.into_iter().map(StationTable::Cell).collect(),
        other => anyhow::bail!("unknown datatype {other:?}: use blue, cell or wifi"),
    };
    let area = around.map(|(lat, lon, radius)| {
        let (max_lat, min_lat, max_lon, min_lon) = bbox(lat, lon, radius);
        let r5 = |x: f64| (x * 1e5).round() / 1e5;
        BoundingBox {
            min_lat: r5(min_lat),
            max_lat: r5(max_lat),
            min_lon: r5(min_lon),
            max_lon: r5(max_lon),
        }
    });
    let out = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(file)
        .map_err(|e| {
            let why = match e.kind() {
                std::io::ErrorKind::AlreadyExists => "it exists, and dump never overwrites a file",
                std::io::ErrorKind::NotFound => "its directory does not exist",
                _ => "cannot create it",
            };
            anyhow::Error::new(e).context(format!("{}: {why}", file.display()))
        })?;
    let mut gz = GzEncoder::new(out, Compression::default());
    let header = if datatype == "cell" {
        CELL_HEADER
    } else {
        MAC_HEADER
    };
    writeln!(gz, "{header}")?;
    let progress = crate::progress::Progress::spinner("dump");
    let mut rows = 0u64;
    for table in tables {
        let mut after: Option<Vec<u8>> = None;
        loop {
            let page = store
                .station_page(table, after.as_deref(), PAGE, area)
                .await?;
            for (key, station) in &page {
                let line = match key {
                    StationKey::Mac(mac) => format_mac_row(mac, &station.fields),
                    StationKey::Cell(k) => format_cell_row(
                        k,
                        station.psc.and_then(|p| i16::try_from(p).ok()),
                        &station.fields,
                    ),
                };
                writeln!(gz, "{line}")?;
            }
            rows += page.len() as u64;
            progress.set_message(format!("{rows} stations written"));
            match page.last() {
                Some((StationKey::Mac(mac), _)) if page.len() as i64 == PAGE => {
                    after = Some(mac.bytes().to_vec())
                }
                Some((StationKey::Cell(k), _)) if page.len() as i64 == PAGE => {
                    after = k.to_bytes().ok()
                }
                _ => break,
            }
        }
    }
    gz.finish()?.flush()?;
    Ok(rows)
}
