//! Keys and rows of the `stat` and `region_stat` tables.

use chrono::NaiveDate;
use serde::{Deserialize, Serialize};

/// Counter kinds of the daily `stat` table (the original's integer codes).
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StatKey {
    /// Cell observations processed.
    Cell,
    /// Cells created.
    UniqueCell,
    /// Wi-Fi observations processed.
    Wifi,
    /// Wi-Fi stations created.
    UniqueWifi,
    /// Bluetooth observations processed.
    Blue,
    /// Bluetooth stations created.
    UniqueBlue,
    /// 5G NR cell observations processed (also counted in `Cell`).
    Nr,
    /// 5G NR cells created (also counted in `UniqueCell`).
    UniqueNr,
}

impl StatKey {
    /// Every key in ascending code order (the order `update_statcounter` folds them).
    pub const ALL: [StatKey; 8] = [
        StatKey::Cell,
        StatKey::UniqueCell,
        StatKey::Wifi,
        StatKey::UniqueWifi,
        StatKey::Blue,
        StatKey::UniqueBlue,
        StatKey::Nr,
        StatKey::UniqueNr,
    ];

    /// Stored integer code.
    pub fn code(self) -> i16 {
        match self {
            StatKey::Cell => 1,
            StatKey::UniqueCell => 2,
            StatKey::Wifi => 3,
            StatKey::UniqueWifi => 4,
            StatKey::Blue => 8,
            StatKey::UniqueBlue => 9,
            StatKey::Nr => 10,
            StatKey::UniqueNr => 11,
        }
    }

    /// Inverse of [`StatKey::code`]; retired codes give `None`.
    pub fn from_code(code: i64) -> Option<StatKey> {
        StatKey::ALL
            .into_iter()
            .find(|k| i64::from(k.code()) == code)
    }

    /// Name used in counter keys (`statcounter_<name>_<YYYYMMDD>`).
    pub fn name(self) -> &'static str {
        match self {
            StatKey::Cell => "cell",
            StatKey::UniqueCell => "unique_cell",
            StatKey::Wifi => "wifi",
            StatKey::UniqueWifi => "unique_wifi",
            StatKey::Blue => "blue",
            StatKey::UniqueBlue => "unique_blue",
            StatKey::Nr => "nr",
            StatKey::UniqueNr => "unique_nr",
        }
    }
}

/// Page-data cache entry of the region statistics page: `update_statregion`
/// deletes it after rebuilding `region_stat`, so the page shows the new counts.
pub const REGION_STATS_CACHE_KEY: &str = "cache:stats_regions:5";

/// One row of `stat`: the cumulative total of `key` up to and including `time`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatRow {
    /// Counter kind.
    pub key: StatKey,
    /// Day.
    pub time: NaiveDate,
    /// Running total.
    pub value: i64,
}

/// One row of `region_stat`: station counts of a region.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegionStat {
    /// Region code (ISO 3166 alpha-2 style).
    pub region: String,
    /// Positioned GSM cells in the region's cell areas.
    pub gsm: i64,
    /// Positioned WCDMA cells.
    pub wcdma: i64,
    /// Positioned LTE cells.
    pub lte: i64,
    /// Positioned NR cells.
    pub nr: i64,
    /// Bluetooth stations (blocked ones included).
    pub blue: i64,
    /// Wi-Fi stations (blocked ones included).
    pub wifi: i64,
}
