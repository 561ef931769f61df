//! Reading columns the same way from SQLite and PostgreSQL rows.

use chrono::{NaiveDate, NaiveDateTime};
use ichnaea_core::source::ReportSource;
use ichnaea_core::station::StationFields;
use sqlx::Row;
use sqlx::postgres::PgRow;
use sqlx::sqlite::SqliteRow;

use crate::{Result, StoreError};

/// Typed column access implemented for both backends' rows, so row decoders are
/// written once.
pub(crate) trait SqlRow {
    fn f64_opt(&self, col: &str) -> Result<Option<f64>>;
    fn i64_opt(&self, col: &str) -> Result<Option<i64>>;
    fn bool_opt(&self, col: &str) -> Result<Option<bool>>;
    fn str_opt(&self, col: &str) -> Result<Option<String>>;
    fn bytes(&self, col: &str) -> Result<Vec<u8>>;
    fn bytes_opt(&self, col: &str) -> Result<Option<Vec<u8>>>;
    fn date_opt(&self, col: &str) -> Result<Option<NaiveDate>>;
    fn datetime_opt(&self, col: &str) -> Result<Option<NaiveDateTime>>;

    fn i64(&self, col: &str) -> Result<i64> {
        self.i64_opt(col)?
            .ok_or_else(|| corrupt("?", format!("{col} is NULL")))
    }

    fn string(&self, col: &str) -> Result<String> {
        self.str_opt(col)?
            .ok_or_else(|| corrupt("?", format!("{col} is NULL")))
    }
}

macro_rules! impl_sql_row {
    ($row:ty) => {
        impl SqlRow for $row {
            fn f64_opt(&self, col: &str) -> Result<Option<f64>> {
                Ok(self.try_get(col)?)
            }
            fn i64_opt(&self, col: &str) -> Result<Option<i64>> {
                Ok(self.try_get(col)?)
            }
            fn bool_opt(&self, col: &str) -> Result<Option<bool>> {
                Ok(self.try_get(col)?)
            }
            fn str_opt(&self, col: &str) -> Result<Option<String>> {
                Ok(self.try_get(col)?)
            }
            fn bytes(&self, col: &str) -> Result<Vec<u8>> {
                Ok(self.try_get(col)?)
            }
            fn bytes_opt(&self, col: &str) -> Result<Option<Vec<u8>>> {
                Ok(self.try_get(col)?)
            }
            fn date_opt(&self, col: &str) -> Result<Option<NaiveDate>> {
                Ok(self.try_get(col)?)
            }
            fn datetime_opt(&self, col: &str) -> Result<Option<NaiveDateTime>> {
                Ok(self.try_get(col)?)
            }
        }
    };
}
impl_sql_row!(SqliteRow);
impl_sql_row!(PgRow);

pub(crate) fn corrupt(table: &str, message: impl Into<String>) -> StoreError {
    StoreError::Corrupt {
        table: table.to_string(),
        message: message.into(),
    }
}

/// Columns of [`StationFields`] in the order used by inserts.
pub(crate) const STATION_COLUMNS: [&str; 17] = [
    "lat",
    "lon",
    "max_lat",
    "min_lat",
    "max_lon",
    "min_lon",
    "radius",
    "region",
    "samples",
    "source",
    "weight",
    "created",
    "modified",
    "last_seen",
    "block_first",
    "block_last",
    "block_count",
];

/// Decodes the common station columns.
pub(crate) fn station_fields(row: &impl SqlRow, table: &str) -> Result<StationFields> {
    let source = match row.i64_opt("source")? {
        None => None,
        Some(code) => Some(
            ReportSource::from_code(code)
                .ok_or_else(|| corrupt(table, format!("unknown source {code}")))?,
        ),
    };
    let block_count = row
        .i64_opt("block_count")?
        .map(|c| i16::try_from(c).map_err(|_| corrupt(table, format!("block_count {c}"))))
        .transpose()?;
    Ok(StationFields {
        lat: row.f64_opt("lat")?,
        lon: row.f64_opt("lon")?,
        max_lat: row.f64_opt("max_lat")?,
        min_lat: row.f64_opt("min_lat")?,
        max_lon: row.f64_opt("max_lon")?,
        min_lon: row.f64_opt("min_lon")?,
        radius: row.i64_opt("radius")?,
        region: row.str_opt("region")?,
        samples: row.i64_opt("samples")?,
        source,
        weight: row.f64_opt("weight")?,
        created: row.datetime_opt("created")?,
        modified: row.datetime_opt("modified")?,
        last_seen: row.date_opt("last_seen")?,
        block_first: row.date_opt("block_first")?,
        block_last: row.date_opt("block_last")?,
        block_count,
    })
}

/// Binds the common station columns in [`STATION_COLUMNS`] order.
macro_rules! bind_station_fields {
    ($query:expr, $f:expr) => {
        $query
            .bind($f.lat)
            .bind($f.lon)
            .bind($f.max_lat)
            .bind($f.min_lat)
            .bind($f.max_lon)
            .bind($f.min_lon)
            .bind($f.radius)
            .bind($f.region.as_deref())
            .bind($f.samples)
            .bind($f.source.map(|s| i64::from(s.code())))
            .bind($f.weight)
            .bind($f.created)
            .bind($f.modified)
            .bind($f.last_seen)
            .bind($f.block_first)
            .bind($f.block_last)
            .bind($f.block_count.map(i64::from))
    };
}
pub(crate) use bind_station_fields;
