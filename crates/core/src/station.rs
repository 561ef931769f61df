//! Rows of the station tables (`wifi_shard_*`, `blue_shard_*`, `cell_*`) and of
//! `cell_area`, as plain data shared by the store, the pipeline and locate.

use chrono::{NaiveDate, NaiveDateTime};

use crate::cell::{AreaKey, CellKey};
use crate::mac::Mac;
use crate::source::ReportSource;

/// The columns every station table has (pipeline §1.4). `None` is SQL NULL.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct StationFields {
    /// Weighted centre latitude; NULL while blocked.
    pub lat: Option<f64>,
    /// Weighted centre longitude; NULL while blocked.
    pub lon: Option<f64>,
    /// Bounding box of the merged observations.
    pub max_lat: Option<f64>,
    /// Bounding box of the merged observations.
    pub min_lat: Option<f64>,
    /// Bounding box of the merged observations.
    pub max_lon: Option<f64>,
    /// Bounding box of the merged observations.
    pub min_lon: Option<f64>,
    /// Metres from the centre to the farthest bounding-box corner.
    pub radius: Option<i64>,
    /// Region code, kept while blocked.
    pub region: Option<String>,
    /// Observations merged since the last new/replace (saturates at u32::MAX).
    pub samples: Option<i64>,
    /// Source class the position is based on.
    pub source: Option<ReportSource>,
    /// Sum of observation weights (saturates at 1e9).
    pub weight: Option<f64>,
    /// When the row was inserted.
    pub created: Option<NaiveDateTime>,
    /// When the position or block state last changed.
    pub modified: Option<NaiveDateTime>,
    /// Last day seen consistent with the stored position.
    pub last_seen: Option<NaiveDate>,
    /// Day of the first block.
    pub block_first: Option<NaiveDate>,
    /// Day of the latest block.
    pub block_last: Option<NaiveDate>,
    /// Number of blocks so far, 0–255 (saturating).
    pub block_count: Option<i16>,
}

/// A Wi-Fi access point row (`wifi_shard_<h>`).
#[derive(Clone, Debug, PartialEq)]
pub struct WifiStation {
    /// Primary key; its shard selects the table.
    pub mac: Mac,
    /// Common station columns.
    pub fields: StationFields,
}

/// A Bluetooth beacon row (`blue_shard_<h>`).
#[derive(Clone, Debug, PartialEq)]
pub struct BlueStation {
    /// Primary key; its shard selects the table.
    pub mac: Mac,
    /// Common station columns.
    pub fields: StationFields,
}

/// A cell row (`cell_<radio>`).
#[derive(Clone, Debug, PartialEq)]
pub struct CellStation {
    /// Identity; its radio selects the table.
    pub key: CellKey,
    /// Primary scrambling code (WCDMA) or physical cell id (LTE 0–503, NR 0–1007).
    pub psc: Option<i16>,
    /// Common station columns.
    pub fields: StationFields,
}

/// A `cell_area` row: the aggregate of positioned cells sharing an area key.
#[derive(Clone, Debug, PartialEq)]
pub struct CellArea {
    /// Identity (radio, mcc, mnc, lac).
    pub key: AreaKey,
    /// Unweighted mean of member centres.
    pub lat: Option<f64>,
    /// Unweighted mean of member centres.
    pub lon: Option<f64>,
    /// Metres from centre to the farthest corner of the members' bounding box.
    pub radius: Option<i64>,
    /// Majority region of the members.
    pub region: Option<String>,
    /// Rounded mean of member radii.
    pub avg_cell_radius: Option<i64>,
    /// Number of positioned member cells.
    pub num_cells: Option<i64>,
    /// Latest member `last_seen`.
    pub last_seen: Option<NaiveDate>,
    /// Insert time.
    pub created: Option<NaiveDateTime>,
    /// Last update time.
    pub modified: Option<NaiveDateTime>,
}
